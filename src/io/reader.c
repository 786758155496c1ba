/*
 * reader.c — splits a file or a memory buffer into records with a bounded
 * buffer.
 *
 * Physical lines are found with memchr in one read buffer of
 * RK_IO_MAX_LINE + 64 KiB bytes, refilled by sliding the unread tail to the
 * front, so a record is returned without copying in the common case. A line
 * that does not fit is skipped up to its newline and reported once as
 * RK_ELIMIT, never truncated: a truncated record could import as something
 * else. For CSV, a record whose quoted field is still open at a line break
 * continues on the next line; those records are joined in a second bounded
 * buffer, tracking quote state incrementally so joining stays linear.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "io_int.h"

#define RD_CHUNK (64u * 1024u)

/* Quote-scanner states, shared with rk_csv_open_quote. */
enum { Q_START, Q_PLAIN, Q_QUOTED, Q_QUOTE_IN_QUOTED };

struct rk_io_reader {
    FILE *f;                 /* NULL in memory mode */
    char *buf;               /* file mode: owned read buffer */
    const char *mem;         /* memory mode: borrowed input */
    size_t cap, pos, end;    /* buf window [pos, end) is unread */
    int eof;
    int skipping;            /* discarding the rest of an overlong line */
    uint64_t lineno;         /* physical lines returned or skipped */
    uint64_t consumed;       /* bytes consumed (for progress) */
    uint64_t size;
    int bom_checked;
    char csv_sep;
    rk_buf join;             /* joined multi-line CSV records */
};

/* Advances the quote state machine over [s, s+n). Only a quote at the
 * start of a field opens a quoted field (RFC 4180); "" inside one is an
 * escaped quote. */
static int quote_scan(int st, const char *s, size_t n, char sep)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (st) {
        case Q_START:
            st = c == '"' ? Q_QUOTED : c == sep ? Q_START : Q_PLAIN;
            break;
        case Q_PLAIN:
            if (c == sep) st = Q_START;
            break;
        case Q_QUOTED:
            if (c == '"') st = Q_QUOTE_IN_QUOTED;
            break;
        case Q_QUOTE_IN_QUOTED:
            /* "" continues the quoted field; anything else closes it. */
            st = c == '"' ? Q_QUOTED : c == sep ? Q_START : Q_PLAIN;
            break;
        }
    }
    return st;
}

int rk_csv_open_quote(const char *s, size_t n, char sep)
{
    return quote_scan(Q_START, s, n, sep) == Q_QUOTED;
}

static int reader_new(rk_io_reader **out, rk_err *err)
{
    rk_io_reader *r = rk_calloc(1, sizeof *r);
    if (!r) return rk_err_set(err, RK_ENOMEM, "reader: out of memory");
    rk_buf_init(&r->join, RK_IO_MAX_LINE + 1);
    *out = r;
    return 0;
}

int rk_io_reader_open(rk_io_reader **out, const char *path, rk_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rk_err_set(err, RK_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return rk_err_set(err, RK_EIO, "%s: %s", path, strerror(EISDIR));
    }
    rk_io_reader *r = NULL;
    int rc = reader_new(&r, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    r->f = f;
    r->size = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    r->cap = RK_IO_MAX_LINE + RD_CHUNK;
    r->buf = rk_malloc(r->cap);
    if (!r->buf) {
        rk_io_reader_close(r);
        return rk_err_set(err, RK_ENOMEM, "reader: out of memory");
    }
    *out = r;
    return 0;
}

int rk_io_reader_open_mem(rk_io_reader **out, const char *buf, size_t len,
                          rk_err *err)
{
    *out = NULL;
    rk_io_reader *r = NULL;
    int rc = reader_new(&r, err);
    if (rc) return rc;
    r->mem = buf ? buf : "";
    r->end = buf ? len : 0;
    r->cap = r->end;
    r->size = r->end;
    r->eof = 1;
    *out = r;
    return 0;
}

void rk_io_reader_set_csv(rk_io_reader *r, char csv_sep)
{
    r->csv_sep = csv_sep;
}

uint64_t rk_io_reader_offset(const rk_io_reader *r) { return r->consumed; }
uint64_t rk_io_reader_size(const rk_io_reader *r) { return r->size; }

int rk_io_reader_rewind(rk_io_reader *r, rk_err *err)
{
    if (r->f) {
        if (fseek(r->f, 0, SEEK_SET) != 0)
            return rk_err_set(err, RK_EIO, "rewind: %s", strerror(errno));
        clearerr(r->f);
        r->pos = r->end = 0;
        r->eof = 0;
    } else {
        r->pos = 0;
    }
    r->skipping = 0;
    r->lineno = 0;
    r->consumed = 0;
    r->bom_checked = 0;
    rk_buf_reset(&r->join);
    return 0;
}

void rk_io_reader_close(rk_io_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    rk_free(r->buf);
    rk_buf_free(&r->join);
    rk_free(r);
}

static const char *data(const rk_io_reader *r)
{
    return r->f ? r->buf : r->mem;
}

/* Refills the file buffer, sliding unread bytes to the front. */
static int refill(rk_io_reader *r, rk_err *err)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->end -= r->pos;
        r->pos = 0;
    }
    size_t want = r->cap - r->end;
    if (want == 0) return 0;
    size_t got = fread(r->buf + r->end, 1, want, r->f);
    r->end += got;
    if (got < want) {
        if (ferror(r->f))
            return rk_err_set(err, RK_EIO, "read: %s", strerror(errno));
        r->eof = 1;
    }
    return 0;
}

/* One physical line: 1 with [*s, *s+*n) (no "\n", one trailing "\r"
 * removed), 0 at the end, RK_ELIMIT for an overlong line (skipped), RK_EIO. */
static int phys_next(rk_io_reader *r, const char **s, size_t *n, rk_err *err)
{
    for (;;) {
        const char *d = data(r);
        size_t avail = r->end - r->pos;
        const char *nl = avail ? memchr(d + r->pos, '\n', avail) : NULL;
        if (nl) {
            size_t len = (size_t)(nl - (d + r->pos));
            const char *start = d + r->pos;
            r->pos += len + 1;
            r->consumed += len + 1;
            r->lineno++;
            if (r->skipping) {
                r->skipping = 0;
                return RK_ELIMIT;
            }
            if (len > RK_IO_MAX_LINE) return RK_ELIMIT; /* memory mode */
            if (len && start[len - 1] == '\r') len--;
            *s = start;
            *n = len;
            return 1;
        }
        if (r->eof) {
            if (avail == 0) {
                if (r->skipping) { /* overlong last line without "\n" */
                    r->skipping = 0;
                    return RK_ELIMIT;
                }
                return 0;
            }
            /* Last line without a newline. */
            const char *start = d + r->pos;
            r->pos = r->end;
            r->consumed += avail;
            r->lineno++;
            if (r->skipping) {
                r->skipping = 0;
                return RK_ELIMIT;
            }
            if (avail > RK_IO_MAX_LINE) return RK_ELIMIT;
            if (start[avail - 1] == '\r') avail--;
            *s = start;
            *n = avail;
            return 1;
        }
        if (avail == r->cap) {
            /* A full buffer without a newline: drop it and keep skipping
             * until the line ends. The count is not advanced yet. */
            r->consumed += avail;
            r->pos = r->end = 0;
            r->skipping = 1;
        }
        int rc = refill(r, err);
        if (rc) return rc;
    }
}

int rk_io_reader_next(rk_io_reader *r, const char **rec, size_t *len,
                      uint64_t *line, rk_err *err)
{
    const char *s;
    size_t n;
    int rc = phys_next(r, &s, &n, err);
    *line = r->lineno;
    if (rc == RK_ELIMIT)
        return rk_err_set(err, RK_ELIMIT, "line too long (more than %u bytes)",
                          RK_IO_MAX_LINE);
    if (rc <= 0) return rc;
    if (!r->bom_checked) {
        r->bom_checked = 1;
        if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            n -= 3;
        }
    }
    if (!r->csv_sep) goto done;
    int st = quote_scan(Q_START, s, n, r->csv_sep);
    if (st != Q_QUOTED) goto done;

    /* The record goes on past this line break: join lines until the
     * quoted field closes. The first line is copied because reading more
     * may move the buffer under it. */
    uint64_t first = r->lineno;
    int too_long = 0;
    rk_buf_reset(&r->join);
    if (rk_buf_append(&r->join, s, n)) too_long = 1;
    while (st == Q_QUOTED) {
        rc = phys_next(r, &s, &n, err);
        if (rc == 0) break; /* EOF inside quotes: the tokenizer reports it */
        if (rc == RK_ELIMIT) {
            too_long = 1;
            continue;
        }
        if (rc < 0) return rc;
        st = quote_scan(st, "\n", 1, r->csv_sep);
        st = quote_scan(st, s, n, r->csv_sep);
        if (!too_long && (rk_buf_putc(&r->join, '\n') ||
                          rk_buf_append(&r->join, s, n)))
            too_long = 1;
    }
    *line = first;
    if (too_long || r->join.len > RK_IO_MAX_LINE)
        return rk_err_set(err, RK_ELIMIT, "line too long (more than %u bytes)",
                          RK_IO_MAX_LINE);
    *rec = r->join.data;
    *len = r->join.len;
    return 1;
done:
    *rec = s;
    *len = n;
    return 1;
}
