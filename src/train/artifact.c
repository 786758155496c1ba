/*
 * artifact.c — the model artifact file: a fixed header naming the format
 * version and the model kind, the model's own bytes, and an xxh3-64
 * checksum of everything before it (layout in rk_train.h).
 *
 * Writing goes through a temporary name in the target directory, fsync,
 * rename and a directory fsync, so the final name only ever holds a
 * complete file. Reading checks, in this order, the magic, the format
 * version, the length (truncated or trailing bytes), and only then the
 * checksum, so each kind of damage gets its own message; nothing from the
 * header is trusted to size an allocation before the file's real size
 * has confirmed it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "train_int.h"

static const char magic[8] = {'R', 'K', 'M', 'O', 'D', 'E', 'L', '\0'};

/* Single write() calls stay below 2 GiB (Linux caps them there). */
#define IO_CHUNK ((size_t)1 << 26)

static const char *const kind_names[RK_MODEL_KIND_COUNT] = {
    "unknown", "gbdt", "ftrl", "fm", "ials", "ease", "popularity", "covis",
    "calibration"};

const char *rk_model_kind_name(uint32_t kind)
{
    return kind < RK_MODEL_KIND_COUNT ? kind_names[kind] : "unknown";
}

int rk_model_kind_parse(const char *s, rk_model_kind *out, rk_err *err)
{
    for (int k = 1; k < RK_MODEL_KIND_COUNT; k++)
        if (strcmp(s, kind_names[k]) == 0) {
            *out = (rk_model_kind)k;
            return 0;
        }
    return rk_err_set(err, RK_EINVAL, "unknown model kind '%s' (expected "
                      "gbdt, ftrl, fm, ials, ease, popularity, covis or "
                      "calibration)", s);
}





static void header(unsigned char h[RK_ARTIFACT_HEADER], uint32_t kind,
                   uint64_t len)
{
    memcpy(h, magic, sizeof magic);
    rk_put_u32(h + 8, RK_ARTIFACT_VERSION);
    rk_put_u32(h + 12, kind);
    rk_put_u64(h + 16, len);
}

static uint64_t checksum(const unsigned char *hdr, const void *payload,
                         size_t len)
{
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset_withSeed(&st, 0);
    XXH3_64bits_update(&st, hdr, RK_ARTIFACT_HEADER);
    if (len) XXH3_64bits_update(&st, payload, len);
    return XXH3_64bits_digest(&st);
}

int rk_artifact_encode(rk_model_kind kind, const void *payload, size_t len,
                       rk_buf *out)
{
    unsigned char h[RK_ARTIFACT_HEADER], t[RK_ARTIFACT_TRAILER];
    header(h, (uint32_t)kind, len);
    rk_put_u64(t, checksum(h, payload, len));
    int rc = rk_buf_reserve(out, sizeof h + len + sizeof t);
    rc = rc ? rc : rk_buf_append(out, h, sizeof h);
    rc = rc ? rc : rk_buf_append(out, payload, len);
    return rc ? rc : rk_buf_append(out, t, sizeof t);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n < IO_CHUNK ? n : IO_CHUNK);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int rk__artifact_write(const char *dir, const char *name, rk_model_kind kind,
                       const void *payload, size_t len, uint64_t *sum_out,
                       uint64_t *bytes, rk_err *err)
{
    if (!*name || name[0] == '.' || strchr(name, '/'))
        return rk_err_set(err, RK_EINVAL, "artifact name '%s': no '/' and "
                          "no leading '.'", name);
    char path[4096], tmp[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%ld", dir, name,
                 (long)getpid()) >= (int)sizeof tmp)
        return rk_err_set(err, RK_EINVAL, "%s/%s: path too long", dir, name);
    unsigned char h[RK_ARTIFACT_HEADER], t[RK_ARTIFACT_TRAILER];
    header(h, (uint32_t)kind, len);
    uint64_t sum = checksum(h, payload, len);
    rk_put_u64(t, sum);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rk_err_set(err, RK_EIO, "cannot create %s: %s", tmp,
                          strerror(errno));
    const char *what = "write";
    if (write_all(fd, h, sizeof h) || write_all(fd, payload, len) ||
        write_all(fd, t, sizeof t))
        goto fail;
    what = "fsync";
    if (fsync(fd) != 0) goto fail;
    what = "close";
    int c = close(fd);
    fd = -1;
    if (c != 0) goto fail;
    what = "rename";
    if (rename(tmp, path) != 0) goto fail;
    /* The rename is durable only once the directory is. */
    int rc = rk__train_fsync_path(dir, 1, err);
    if (rc) return rc;
    if (sum_out) *sum_out = sum;
    if (bytes) *bytes = (uint64_t)len + RK_ARTIFACT_HEADER + RK_ARTIFACT_TRAILER;
    return 0;
fail:
    rc = rk_err_set(err, RK_EIO, "cannot %s %s: %s", what, tmp,
                    strerror(errno));
    if (fd >= 0) close(fd);
    unlink(tmp);
    return rc;
}

int rk_artifact_write(const char *dir, const char *name, rk_model_kind kind,
                      const void *payload, size_t len, rk_err *err)
{
    return rk__artifact_write(dir, name, kind, payload, len, NULL, NULL, err);
}

/* Header checks shared by read and parse. have = bytes available (the
 * file size); out->len gets the payload length. */
static int check_header(const unsigned char *p, uint64_t have,
                        const char *what, rk_artifact *out, rk_err *err)
{
    size_t cmp = have < sizeof magic ? (size_t)have : sizeof magic;
    if (memcmp(p, magic, cmp) != 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: bad magic: not a rankd model "
                          "artifact", what);
    uint64_t least = RK_ARTIFACT_HEADER + RK_ARTIFACT_TRAILER;
    if (have < RK_ARTIFACT_HEADER)
        return rk_err_set(err, RK_ECORRUPT, "%s: truncated: %llu of at least "
                          "%llu bytes", what, (unsigned long long)have,
                          (unsigned long long)least);
    out->version = rk_get_u32(p + 8);
    out->kind = rk_get_u32(p + 12);
    uint64_t len = rk_get_u64(p + 16);
    if (out->version != RK_ARTIFACT_VERSION)
        return rk_err_set(err, RK_EVERSION, "%s: artifact format version %u; "
                          "this build reads version %u", what, out->version,
                          RK_ARTIFACT_VERSION);
    if (len > (uint64_t)SIZE_MAX - least || len > UINT64_MAX - least)
        return rk_err_set(err, RK_ECORRUPT, "%s: payload length %llu is "
                          "impossible", what, (unsigned long long)len);
    uint64_t want = len + least;
    if (have < want)
        return rk_err_set(err, RK_ECORRUPT, "%s: truncated: %llu of %llu "
                          "bytes", what, (unsigned long long)have,
                          (unsigned long long)want);
    if (have > want)
        return rk_err_set(err, RK_ECORRUPT, "%s: %llu trailing bytes after "
                          "the %llu bytes of the artifact", what,
                          (unsigned long long)(have - want),
                          (unsigned long long)want);
    out->len = (size_t)len;
    return 0;
}

static int check_sum(const unsigned char *p, const char *what,
                     rk_artifact *out, rk_err *err)
{
    uint64_t stored = rk_get_u64(p + RK_ARTIFACT_HEADER + out->len);
    uint64_t sum = checksum(p, p + RK_ARTIFACT_HEADER, out->len);
    if (stored != sum)
        return rk_err_set(err, RK_ECORRUPT, "%s: checksum mismatch (stored "
                          "%016llx, computed %016llx)", what,
                          (unsigned long long)stored, (unsigned long long)sum);
    out->checksum = sum;
    out->payload = p + RK_ARTIFACT_HEADER;
    return 0;
}

int rk_artifact_parse(const void *buf, size_t n, const char *what,
                      rk_artifact *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    if (!what) what = "artifact";
    int rc = check_header(buf, n, what, out, err);
    if (!rc) rc = check_sum(buf, what, out, err);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

int rk_artifact_read(const char *path, rk_artifact *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rk_err_set(err, errno == ENOENT ? RK_ENOTFOUND : RK_EIO,
                          "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    unsigned char *mem = NULL;
    int rc;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = rk_err_set(err, RK_EIO, "%s: not a readable file", path);
        goto done;
    }
    /* The header first: its length must agree with the file's size before
     * the whole file is read into memory. */
    unsigned char h[RK_ARTIFACT_HEADER] = {0};
    uint64_t size = (uint64_t)st.st_size;
    ssize_t got = pread(fd, h, sizeof h, 0);
    if (got < 0) {
        rc = rk_err_set(err, RK_EIO, "cannot read %s: %s", path,
                        strerror(errno));
        goto done;
    }
    /* A short read of the first bytes of a longer file left zeros in h,
     * which fail the magic check like any other damage. */
    if ((rc = check_header(h, size, path, out, err))) goto done;
    if (!(mem = rk_malloc((size_t)size))) {
        rc = rk_err_set(err, RK_ENOMEM, "%s: %llu bytes: out of memory", path,
                        (unsigned long long)size);
        goto done;
    }
    for (size_t off = 0; off < size;) {
        size_t want = size - off < IO_CHUNK ? (size_t)(size - off) : IO_CHUNK;
        ssize_t r = pread(fd, mem + off, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            /* The file shrank under us (or the disk failed). */
            rc = r < 0 ? rk_err_set(err, RK_EIO, "cannot read %s: %s", path,
                                    strerror(errno))
                       : rk_err_set(err, RK_ECORRUPT, "%s: truncated: %zu of "
                                    "%llu bytes", path, off,
                                    (unsigned long long)size);
            goto done;
        }
        off += (size_t)r;
    }
    if ((rc = check_header(mem, size, path, out, err)) ||
        (rc = check_sum(mem, path, out, err)))
        goto done;
    out->mem = mem;
    mem = NULL;
done:
    close(fd);
    rk_free(mem);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

void rk_artifact_free(rk_artifact *a)
{
    if (!a) return;
    rk_free(a->mem);
    memset(a, 0, sizeof *a);
}
