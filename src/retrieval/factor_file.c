/*
 * factor_file.c — the model file discipline shared by iALS and EASE.
 *
 * Writing: a temporary file next to the target, every byte hashed as it is
 * written, the checksum appended, fsync, rename over the target, fsync of
 * the directory, so a crash leaves either the old or the new model and
 * never a torn one. Reading: sizes are validated against the header before
 * any large allocation, the payload is read straight into the model's
 * buffers while it is hashed, and the checksum is compared at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "factor_int.h"

#define IO_CHUNK ((size_t)1 << 26) /* keep single writes/reads below 2 GiB */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        size_t want = n < IO_CHUNK ? n : IO_CHUNK;
        ssize_t w = write(fd, c, want);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The directory part of path ("." when none), for its fsync. */
static void dir_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
    } else if (slash == path) {
        snprintf(out, cap, "/");
    } else {
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
    }
}

int rk__ff_write(const char *path, const rk__ff_part *parts, size_t nparts,
                 rk_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >=
        (int)sizeof tmp)
        return rk_err_set(err, RK_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rk_err_set(err, RK_EIO, "%s: cannot create: %s", tmp,
                          strerror(errno));
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset_withSeed(&st, 0);
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].n == 0) continue;
        XXH3_64bits_update(&st, parts[i].p, parts[i].n);
        if (write_all(fd, parts[i].p, parts[i].n) != 0) goto io;
    }
    uint64_t sum = XXH3_64bits_digest(&st);
    if (write_all(fd, &sum, sizeof sum) != 0 || fsync(fd) != 0) goto io;
    if (close(fd) != 0) {
        fd = -1;
        goto io;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto io;
    {
        char dir[4096];
        dir_of(path, dir, sizeof dir);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) { /* best effort: the file itself is already durable */
            (void)fsync(dfd);
            close(dfd);
        }
    }
    return 0;
io:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    return rk_err_set(err, RK_EIO, "%s: cannot write: %s", path, strerror(e));
}

static int raw_read(rk__ff_reader *r, void *dst, size_t n, rk_err *err)
{
    char *c = dst;
    while (n > 0) {
        size_t want = n < IO_CHUNK ? n : IO_CHUNK;
        ssize_t got = read(r->fd, c, want);
        if (got < 0) {
            if (errno == EINTR) continue;
            return rk_err_set(err, RK_EIO, "%s: read: %s", r->path,
                              strerror(errno));
        }
        if (got == 0)
            return rk_err_set(err, RK_ECORRUPT, "%s: %s truncated", r->path,
                              r->what);
        c += got;
        n -= (size_t)got;
        r->pos += (uint64_t)got;
    }
    return 0;
}

int rk__ff_open(rk__ff_reader *r, const char *path, const char magic[8],
                const char *what, void *hdr, size_t hdr_size, rk_err *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->what = what;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return rk_err_set(err, errno == ENOENT ? RK_ENOTFOUND : RK_EIO,
                          "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(r->fd, &sb) != 0) {
        int e = errno;
        rk__ff_close(r);
        return rk_err_set(err, RK_EIO, "%s: stat: %s", path, strerror(e));
    }
    r->size = (uint64_t)sb.st_size;
    XXH3_INITSTATE(&r->st);
    XXH3_64bits_reset_withSeed(&r->st, 0);
    if (r->size < hdr_size + 8) {
        /* Too short for a header and a checksum: tell a foreign file from
         * a truncated model by the magic when there are 8 bytes. */
        char m[8];
        int rc = r->size >= 8 ? raw_read(r, m, 8, NULL) : RK_ECORRUPT;
        rk__ff_close(r);
        if (rc == 0 && memcmp(m, magic, 8) != 0)
            return rk_err_set(err, RK_EPARSE, "%s: not a rankd %s file (bad magic)",
                              path, what);
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: %s truncated (%llu bytes)", path, what,
                          (unsigned long long)r->size);
    }
    int rc = raw_read(r, hdr, hdr_size, err);
    if (rc) {
        rk__ff_close(r);
        return rc;
    }
    if (memcmp(hdr, magic, 8) != 0) {
        rk__ff_close(r);
        return rk_err_set(err, RK_EPARSE, "%s: not a rankd %s file (bad magic)",
                          path, what);
    }
    XXH3_64bits_update(&r->st, hdr, hdr_size);
    return 0;
}

int rk__ff_expect(rk__ff_reader *r, uint64_t bytes, rk_err *err)
{
    if (r->size != bytes + 8)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: %s is %llu bytes, its header implies %llu "
                          "(truncated or corrupted)",
                          r->path, r->what, (unsigned long long)r->size,
                          (unsigned long long)(bytes + 8));
    return 0;
}

int rk__ff_read(rk__ff_reader *r, void *dst, size_t n, rk_err *err)
{
    if (n == 0) return 0;
    if (r->pos + n + 8 > r->size)
        return rk_err_set(err, RK_ECORRUPT, "%s: %s truncated", r->path,
                          r->what);
    int rc = raw_read(r, dst, n, err);
    if (rc) return rc;
    XXH3_64bits_update(&r->st, dst, n);
    return 0;
}

int rk__ff_finish(rk__ff_reader *r, rk_err *err)
{
    uint64_t want;
    if (r->pos + 8 != r->size)
        return rk_err_set(err, RK_ECORRUPT, "%s: %s has trailing bytes",
                          r->path, r->what);
    int rc = raw_read(r, &want, sizeof want, err);
    if (rc) return rc;
    if (want != XXH3_64bits_digest(&r->st))
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: %s checksum mismatch (corrupted)", r->path,
                          r->what);
    return 0;
}

void rk__ff_close(rk__ff_reader *r)
{
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
}
