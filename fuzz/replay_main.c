/*
 * replay_main.c — runs a libFuzzer target over saved inputs without
 * libFuzzer, so every build (and `make test`, under any compiler) replays
 * each target's corpus and past crashers.
 *
 * Arguments are files or directories; a directory's regular files are
 * replayed, and so are those of its immediate subdirectories (one level,
 * e.g. corpus/<name>/crashers/). Files run in name order so a failure is
 * reproducible. A crash or sanitizer report ends the process, which the
 * test runner counts as a failure; otherwise the summary is
 * "# <n> passed, 0 failed" and the exit status 0. A missing or empty
 * corpus is not an error: it replays nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds one file to the target; returns 1 if it ran. The buffer has exactly
 * the file's size so sanitizers catch a target reading past the input. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return 0;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        free(buf);
        return 0;
    }
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 0;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays a directory's files (sorted), descending `levels` more levels
 * into subdirectories. Returns the number of inputs run. */
static size_t replay_dir(const char *dir, int levels)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return 0;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", hidden files */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) break;
            names = nn;
            cap = ncap;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n]) break;
        snprintf(names[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0) {
            if (S_ISREG(st.st_mode))
                ran += (size_t)replay_file(names[i]);
            else if (S_ISDIR(st.st_mode) && levels > 0)
                ran += replay_dir(names[i], levels - 1);
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    size_t ran = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s (no inputs)\n", argv[i],
                    strerror(errno));
            continue;
        }
        if (S_ISDIR(st.st_mode))
            ran += replay_dir(argv[i], 1);
        else
            ran += (size_t)replay_file(argv[i]);
    }
    if (ran == 0) fprintf(stderr, "replay: no inputs found\n");
    printf("# %zu passed, 0 failed\n", ran);
    return 0;
}
