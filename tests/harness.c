/*
 * harness.c — runner behind tests/test.h: runs each case, checks that
 * rankd's allocator is back to where it was (leak check that works without
 * sanitizers), and prints the per-binary summary line.
 */
#include "test.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

int rk__test_failed;
const char *rk__test_argv0;

int rk_test_run_all(int argc, char **argv, const rk_test_case *cases, size_t n)
{
    size_t passed = 0, failed = 0;
    rk__test_argv0 = argv[0];
    for (size_t i = 0; i < n; i++) {
        /* Optional filter: run only the cases named on the command line. */
        if (argc > 1) {
            int want = 0;
            for (int a = 1; a < argc; a++)
                if (strcmp(argv[a], cases[i].name) == 0) want = 1;
            if (!want) continue;
        }
        rk_mem_stats before, after;
        rk_mem_hook_libraries();
        rk_mem_fail_at(0, 0);
        rk_mem_set_limit(0);
        rk_mem_get_stats(&before);
        rk__test_failed = 0;
        cases[i].fn();
        rk_mem_fail_at(0, 0);
        rk_mem_set_limit(0);
        rk_mem_get_stats(&after);
        if (!rk__test_failed && after.in_use != before.in_use) {
            fprintf(stderr, "  leak: %zu bytes still allocated after test\n",
                    after.in_use - before.in_use);
            rk__test_failed = 1;
        }
        printf("%s %s\n", rk__test_failed ? "FAIL" : "ok  ", cases[i].name);
        fflush(stdout);
        if (rk__test_failed) failed++; else passed++;
    }
    printf("# %zu passed, %zu failed\n", passed, failed);
    return failed ? 1 : 0;
}

const char *rk_test_tmpdir(const char *tag)
{
    static char path[512];
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(path, sizeof path, "%s/rk-test-%s-%ld", base, tag, (long)getpid());
    rk_test_rmdir(path);
    if (mkdir(path, 0700) != 0) {
        perror(path);
        abort();
    }
    return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void rk_test_rmdir(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *rk_test_shared_data(void)
{
    static const char *cands[] = {"../shared/data", "../../shared/data", NULL};
    const char *env = getenv("RK_SHARED_DATA");
    struct stat st;
    if (env && stat(env, &st) == 0) return env;
    for (int i = 0; cands[i]; i++)
        if (stat(cands[i], &st) == 0 && S_ISDIR(st.st_mode)) return cands[i];
    return NULL;
}
