/*
 * publish.c — writing a trained model where servers can find it.
 *
 * Layout: <models>/<name>/<version>/ holds the model's files and
 * meta.json; <models>/<name>/current is a symlink to the newest version.
 * A version is written into a hidden temporary directory, every file and
 * the directory fsync'd, then renamed into place, and only then is
 * `current` switched — by renaming a fresh symlink over it, which is
 * atomic — so a reader that follows `current` sees either the old model or
 * the new one, never a mix. Older versions beyond `keep` are removed so
 * retraining does not fill the disk. The model registry of a later issue
 * builds on this layout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_int.h"

#define PATH_LEN 4096

static int io_err(rk_err *err, const char *what, const char *path)
{
    return rk_err_set(err, RK_EIO, "%s %s: %s", what, path, strerror(errno));
}

static int fsync_path(const char *path, int dir, rk_err *err)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return io_err(err, "cannot open", path);
    int rc = fsync(fd);
    close(fd);
    return rc ? io_err(err, "cannot fsync", path) : 0;
}

int rk__train_write_file(const char *dir, const char *name, const void *data,
                         size_t n, rk_err *err)
{
    char path[PATH_LEN];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return rk_err_set(err, RK_EINVAL, "path too long: %s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return io_err(err, "cannot create", path);
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int rc = io_err(err, "cannot write", path);
            close(fd);
            return rc;
        }
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int rc = io_err(err, "cannot fsync", path);
        close(fd);
        return rc;
    }
    if (close(fd) != 0) return io_err(err, "cannot close", path);
    return 0;
}

static int mkdir_p(const char *path, rk_err *err)
{
    char buf[PATH_LEN];
    size_t n = strlen(path);
    if (n >= sizeof buf) return rk_err_set(err, RK_EINVAL, "path too long");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return io_err(err, "cannot create directory", buf);
        buf[i] = c;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* rm -rf; a missing path is fine. */
static int rm_rf(const char *path)
{
    if (access(path, F_OK) != 0) return 0;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A version directory name: digits only, no leading zero. */
static uint32_t version_of(const char *s)
{
    if (!*s || *s == '0' || strlen(s) > 9) return 0;
    uint32_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (uint32_t)(*s - '0');
    }
    return v;
}

static int cmp_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x > y ? -1 : x < y;
}

int rk_train_publish(const rk_eval_model *m, const char *models_dir,
                     const char *meta_json, unsigned keep, uint32_t *version,
                     rk_err *err)
{
    const char *name = rk_eval_model_name(m);
    if (!*name || name[0] == '.' || strspn(name, "abcdefghijklmnopqrstuvwxyz"
                                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                 "0123456789_.-") != strlen(name))
        return rk_err_set(err, RK_EINVAL,
                          "model name '%s': use letters, digits, '_', '.' "
                          "and '-'", name);
    if (keep == 0) keep = 3;
    char dir[PATH_LEN], tmp[PATH_LEN], fin[PATH_LEN], link[PATH_LEN],
        target[32];
    if (snprintf(dir, sizeof dir, "%s/%s", models_dir, name) >= (int)sizeof dir)
        return rk_err_set(err, RK_EINVAL, "path too long: %s", models_dir);
    int rc = mkdir_p(dir, err);
    if (rc) return rc;

    /* The versions present: the next one is one above the newest. */
    uint32_t vers[1024], nv = 0, next = 1;
    DIR *dh = opendir(dir);
    if (!dh) return io_err(err, "cannot read", dir);
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        uint32_t v = version_of(de->d_name);
        if (!v) continue;
        if (v >= next) next = v + 1;
        if (nv < sizeof vers / sizeof vers[0]) vers[nv++] = v;
    }
    closedir(dh);

    snprintf(tmp, sizeof tmp, "%s/.tmp-%u", dir, next);
    snprintf(fin, sizeof fin, "%s/%u", dir, next);
    snprintf(target, sizeof target, "%u", next);
    /* A leftover of a publisher killed half-way is garbage. */
    if (rm_rf(tmp) != 0) return io_err(err, "cannot remove", tmp);
    if (mkdir(tmp, 0755) != 0) return io_err(err, "cannot create directory", tmp);
    if ((rc = rk_eval_model_save(m, tmp, err)) ||
        (rc = rk__train_write_file(tmp, "meta.json", meta_json,
                                   strlen(meta_json), err)) ||
        (rc = fsync_path(tmp, 1, err))) {
        rm_rf(tmp);
        return rc;
    }
    if (rename(tmp, fin) != 0) {
        rc = io_err(err, "cannot rename", tmp);
        rm_rf(tmp);
        return rc;
    }
    snprintf(link, sizeof link, "%s/.current.tmp", dir);
    unlink(link);
    char cur[PATH_LEN];
    snprintf(cur, sizeof cur, "%s/current", dir);
    if (symlink(target, link) != 0) return io_err(err, "cannot create", link);
    if (rename(link, cur) != 0) return io_err(err, "cannot rename", link);
    if ((rc = fsync_path(dir, 1, err))) return rc;

    /* Keep the newest `keep` versions, this one included. */
    vers[nv < sizeof vers / sizeof vers[0] ? nv++ : nv - 1] = next;
    qsort(vers, nv, sizeof vers[0], cmp_u32_desc);
    for (uint32_t i = keep; i < nv; i++) {
        char old[PATH_LEN];
        snprintf(old, sizeof old, "%s/%u", dir, vers[i]);
        if (rm_rf(old) != 0) return io_err(err, "cannot remove", old);
    }
    if (version) *version = next;
    return 0;
}
