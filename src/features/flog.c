/*
 * flog.c — the feature log: what was served, with the exact features and
 * scores, keyed by request id, plus a time index for joins and retention.
 *
 * Entry encoding (little-endian), version 1:
 *   u8 version, i64 ts, u32 model_version,
 *   5 strings (request id, user, model, experiment, arm) as u16 len + bytes,
 *   u32 context len + bytes, u32 nitems,
 *   per item: u16 len + item id, i32 position, f32 score, then the vector
 *             in rk_fvec_encode's layout (u32 ndense, u32 nsparse, ndense
 *             f32, nsparse (u32 idx, f32 val)),
 *   u64 xxh3 of all bytes before it.
 * Every length is checked against the bytes left before it is used, so
 * decoding hostile bytes can fail but never reads out of bounds; the
 * checksum catches silent corruption of stored entries.
 *
 * Time keys are 8 bytes of big-endian ts with the sign bit flipped (so
 * byte order is numeric order, negatives included) followed by the request
 * id; LMDB's key order then is time order.
 */
#include <math.h>
#include <string.h>

#include "rk_features.h"

#define FLOG_VERSION 1u
#define MAX_STR RK_ID_MAX
#define MAX_DENSE (1u << 16)
#define EXPIRE_BATCH 1024

/* ------------------------------------------------------------------------ */
/* Byte helpers                                                              */
/* ------------------------------------------------------------------------ */

static void put_le(unsigned char *p, uint64_t x, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(x >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t x = 0;
    for (int i = 0; i < n; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

static uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

static float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static void time_key(unsigned char k[8], int64_t ts)
{
    uint64_t u = (uint64_t)ts ^ (1ull << 63);
    for (int i = 0; i < 8; i++) k[i] = (unsigned char)(u >> (56 - 8 * i));
}

static int64_t time_of_key(const unsigned char k[8])
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | k[i];
    return (int64_t)(u ^ (1ull << 63));
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */
/* ------------------------------------------------------------------------ */

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

static int put_str(rk_buf *b, const char *s, size_t n)
{
    unsigned char h[2];
    put_le(h, n, 2);
    int rc = rk_buf_append(b, h, 2);
    return rc ? rc : rk_buf_append(b, s ? s : "", n);
}

/* Encoded size of e, or 0 with err set when a field is invalid. Computing
 * it first lets the limit be checked before any byte is written. */
static size_t encoded_size(const rk_flog_entry *e, rk_err *err, int *rc)
{
    static const char *const names[] = {"request_id", "user", "model",
                                        "experiment", "arm"};
    const char *strs[] = {e->request_id, e->user, e->model, e->experiment, e->arm};
    size_t n = 1 + 8 + 4 + 4 + 4 + 8;
    *rc = RK_EINVAL;
    for (int i = 0; i < 5; i++) {
        size_t l = slen(strs[i]);
        if (l > MAX_STR) {
            rk_err_set(err, RK_EINVAL, "feature log: %s of %zu bytes (at most %d)",
                       names[i], l, MAX_STR);
            return 0;
        }
        n += 2 + l;
    }
    if (slen(e->request_id) == 0) {
        rk_err_set(err, RK_EINVAL, "feature log: empty request_id");
        return 0;
    }
    if (e->ts_ms < 0) {
        rk_err_set(err, RK_EINVAL, "feature log: negative timestamp %lld",
                   (long long)e->ts_ms);
        return 0;
    }
    if (e->context_len > RK_MAX_CONTEXT || (e->context_len && !e->context)) {
        rk_err_set(err, RK_EINVAL, "feature log: context of %zu bytes (at most %d)",
                   e->context_len, RK_MAX_CONTEXT);
        return 0;
    }
    n += e->context_len;
    if (e->nitems > RK_FLOG_MAX_ITEMS) {
        *rc = RK_ELIMIT;
        rk_err_set(err, RK_ELIMIT, "feature log: %u items in one request (at most %d)",
                   e->nitems, RK_FLOG_MAX_ITEMS);
        return 0;
    }
    if (e->nitems && !e->items) {
        rk_err_set(err, RK_EINVAL, "feature log: %u items but no item array", e->nitems);
        return 0;
    }
    for (uint32_t i = 0; i < e->nitems; i++) {
        const rk_flog_item *it = &e->items[i];
        size_t l = slen(it->item);
        if (l == 0 || l > MAX_STR) {
            rk_err_set(err, RK_EINVAL, "feature log: item %u: id of %zu bytes (1..%d)",
                       i, l, MAX_STR);
            return 0;
        }
        if (!isfinite(it->score)) {
            rk_err_set(err, RK_EINVAL, "feature log: item %u: non-finite score", i);
            return 0;
        }
        if (it->x.ndense > MAX_DENSE || it->x.nsparse > RK_FVEC_MAX_SPARSE) {
            *rc = RK_ELIMIT;
            rk_err_set(err, RK_ELIMIT, "feature log: item %u: vector too large", i);
            return 0;
        }
        n += 2 + l + 4 + 4 + 8 + 4 * (size_t)it->x.ndense + 8 * (size_t)it->x.nsparse;
        /* Check as we go so the sum cannot overflow. */
        if (n > RK_FLOG_MAX_BYTES) {
            *rc = RK_ELIMIT;
            rk_err_set(err, RK_ELIMIT,
                       "feature log: entry of request '%s' exceeds %u bytes at item %u",
                       e->request_id, RK_FLOG_MAX_BYTES, i);
            return 0;
        }
    }
    *rc = 0;
    return n;
}

int rk_flog_encode(const rk_flog_entry *e, rk_buf *out, rk_err *err)
{
    int rc;
    size_t n = encoded_size(e, err, &rc);
    if (rc) return rc;
    size_t start = out->len;
    if ((rc = rk_buf_reserve(out, n)))
        return rk_err_set(err, rc, "feature log: %s for an entry of %zu bytes",
                          rc == RK_ELIMIT ? "buffer limit" : "out of memory", n);
    /* Capacity is reserved: the appends below cannot fail. */
    unsigned char h[13];
    h[0] = FLOG_VERSION;
    put_le(h + 1, (uint64_t)e->ts_ms, 8);
    put_le(h + 9, e->model_version, 4);
    rk_buf_append(out, h, 13);
    put_str(out, e->request_id, slen(e->request_id));
    put_str(out, e->user, slen(e->user));
    put_str(out, e->model, slen(e->model));
    put_str(out, e->experiment, slen(e->experiment));
    put_str(out, e->arm, slen(e->arm));
    put_le(h, e->context_len, 4);
    rk_buf_append(out, h, 4);
    if (e->context_len) rk_buf_append(out, e->context, e->context_len);
    put_le(h, e->nitems, 4);
    rk_buf_append(out, h, 4);
    for (uint32_t i = 0; i < e->nitems; i++) {
        const rk_flog_item *it = &e->items[i];
        put_str(out, it->item, strlen(it->item));
        put_le(h, (uint32_t)it->position, 4);
        put_le(h + 4, f32_bits(it->score), 4);
        rk_buf_append(out, h, 8);
        rk_fvec_encode(&it->x, out);
    }
    put_le(h, rk_hash64(out->data + start, out->len - start, 0), 8);
    rk_buf_append(out, h, 8);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct cur {
    const unsigned char *p;
    size_t n, pos;
    rk_err *err;
} cur;

static int need(cur *c, size_t k, const char *what)
{
    if (c->n - c->pos >= k) return 0;
    return rk_err_set(c->err, RK_ECORRUPT,
                      "feature log entry truncated at byte %zu: %s needs %zu bytes, %zu left",
                      c->pos, what, k, c->n - c->pos);
}

static int get_str(cur *c, rk_arena *a, const char **out, int nonempty,
                   const char *what)
{
    int rc = need(c, 2, what);
    if (rc) return rc;
    size_t l = (size_t)get_le(c->p + c->pos, 2);
    c->pos += 2;
    if (l > MAX_STR || (nonempty && l == 0))
        return rk_err_set(c->err, RK_ECORRUPT, "feature log entry: %s of %zu bytes",
                          what, l);
    if ((rc = need(c, l, what))) return rc;
    /* Strings are handed out NUL-terminated: an embedded NUL would make
     * the id read back shorter than it was stored. */
    if (memchr(c->p + c->pos, 0, l))
        return rk_err_set(c->err, RK_ECORRUPT, "feature log entry: NUL byte in %s", what);
    char *s = rk_arena_strndup(a, (const char *)c->p + c->pos, l);
    if (!s) return rk_err_set(c->err, RK_ENOMEM, "feature log entry: out of memory");
    c->pos += l;
    *out = s;
    return 0;
}

static int get_vec(cur *c, rk_arena *a, rk_fvec *v, uint32_t item)
{
    int rc = need(c, 8, "vector header");
    if (rc) return rc;
    uint32_t nd = (uint32_t)get_le(c->p + c->pos, 4);
    uint32_t ns = (uint32_t)get_le(c->p + c->pos + 4, 4);
    c->pos += 8;
    if (nd > MAX_DENSE || ns > RK_FVEC_MAX_SPARSE)
        return rk_err_set(c->err, RK_ECORRUPT,
                          "feature log entry: item %u: %u dense / %u sparse values", item,
                          nd, ns);
    if ((rc = need(c, 4 * (size_t)nd + 8 * (size_t)ns, "vector"))) return rc;
    memset(v, 0, sizeof *v);
    v->ndense = nd;
    v->nsparse = v->cap = ns;
    v->dense = rk_arena_alloc(a, 4 * (size_t)nd);
    v->idx = rk_arena_alloc(a, 4 * (size_t)ns);
    v->val = rk_arena_alloc(a, 4 * (size_t)ns);
    if (!v->dense || !v->idx || !v->val)
        return rk_err_set(c->err, RK_ENOMEM, "feature log entry: out of memory");
    const unsigned char *p = c->p + c->pos;
    for (uint32_t j = 0; j < nd; j++, p += 4) v->dense[j] = bits_f32((uint32_t)get_le(p, 4));
    for (uint32_t s = 0; s < ns; s++, p += 8) {
        v->idx[s] = (uint32_t)get_le(p, 4);
        v->val[s] = bits_f32((uint32_t)get_le(p + 4, 4));
    }
    c->pos = (size_t)(p - c->p);
    return 0;
}

int rk_flog_decode(const void *data, size_t n, rk_arena *a, rk_flog_entry *out,
                   rk_err *err)
{
    memset(out, 0, sizeof *out);
    cur c = {data, n, 0, err};
    int rc = need(&c, 13 + 8, "header");
    if (rc) return rc;
    /* Check the checksum first: a corrupt entry is reported as such rather
     * than by whichever length happens to be wrong. */
    uint64_t want = get_le(c.p + n - 8, 8);
    if (rk_hash64(c.p, n - 8, 0) != want) {
        if (c.p[0] != FLOG_VERSION)
            return rk_err_set(err, RK_EVERSION, "feature log entry version %u, this build reads %u",
                              c.p[0], FLOG_VERSION);
        return rk_err_set(err, RK_ECORRUPT, "feature log entry checksum mismatch");
    }
    c.n = n - 8;
    if (c.p[0] != FLOG_VERSION)
        return rk_err_set(err, RK_EVERSION, "feature log entry version %u, this build reads %u",
                          c.p[0], FLOG_VERSION);
    out->ts_ms = (int64_t)get_le(c.p + 1, 8);
    out->model_version = (uint32_t)get_le(c.p + 9, 4);
    c.pos = 13;
    if (out->ts_ms < 0)
        return rk_err_set(err, RK_ECORRUPT, "feature log entry: negative timestamp");
    if ((rc = get_str(&c, a, &out->request_id, 1, "request_id")) ||
        (rc = get_str(&c, a, &out->user, 0, "user")) ||
        (rc = get_str(&c, a, &out->model, 0, "model")) ||
        (rc = get_str(&c, a, &out->experiment, 0, "experiment")) ||
        (rc = get_str(&c, a, &out->arm, 0, "arm")) || (rc = need(&c, 4, "context length")))
        return rc;
    size_t cl = (size_t)get_le(c.p + c.pos, 4);
    c.pos += 4;
    if (cl > RK_MAX_CONTEXT)
        return rk_err_set(err, RK_ECORRUPT, "feature log entry: context of %zu bytes", cl);
    if ((rc = need(&c, cl, "context"))) return rc;
    if (cl) {
        char *ctx = rk_arena_strndup(a, (const char *)c.p + c.pos, cl);
        if (!ctx) return rk_err_set(err, RK_ENOMEM, "feature log entry: out of memory");
        out->context = ctx;
        out->context_len = cl;
    }
    c.pos += cl;
    if ((rc = need(&c, 4, "item count"))) return rc;
    uint32_t ni = (uint32_t)get_le(c.p + c.pos, 4);
    c.pos += 4;
    /* Each item takes at least 2 + 1 + 8 + 8 bytes: bound the count by the
     * bytes left before allocating the array. */
    if (ni > RK_FLOG_MAX_ITEMS || ni > (c.n - c.pos) / 19)
        return rk_err_set(err, RK_ECORRUPT, "feature log entry: %u items in %zu bytes", ni,
                          c.n - c.pos);
    rk_flog_item *items = rk_arena_alloc(a, (ni ? ni : 1) * sizeof *items);
    if (!items) return rk_err_set(err, RK_ENOMEM, "feature log entry: out of memory");
    for (uint32_t i = 0; i < ni; i++) {
        rk_flog_item *it = &items[i];
        if ((rc = get_str(&c, a, &it->item, 1, "item id")) ||
            (rc = need(&c, 8, "item position and score")))
            return rc;
        it->position = (int32_t)(uint32_t)get_le(c.p + c.pos, 4);
        it->score = bits_f32((uint32_t)get_le(c.p + c.pos + 4, 4));
        c.pos += 8;
        if ((rc = get_vec(&c, a, &it->x, i))) return rc;
    }
    if (c.pos != c.n)
        return rk_err_set(err, RK_ECORRUPT, "feature log entry: %zu bytes after the last item",
                          c.n - c.pos);
    out->nitems = ni;
    out->items = items;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Store                                                                     */
/* ------------------------------------------------------------------------ */

int rk_flog_record(rk_batch *b, const rk_flog_entry *e, rk_err *err)
{
    rk_buf buf;
    rk_buf_init(&buf, RK_FLOG_MAX_BYTES);
    int rc = rk_flog_encode(e, &buf, err);
    if (rc) {
        rk_buf_free(&buf);
        return rc;
    }
    size_t rl = strlen(e->request_id);
    unsigned char key[8 + MAX_STR];
    time_key(key, e->ts_ms);
    memcpy(key + 8, e->request_id, rl);
    /* The time key goes first: should the entry then not fit in the batch,
     * the lone time key is harmless (scans skip keys without an entry and
     * expiry removes them), whereas an entry without a time key would never
     * be joined nor expired. */
    rc = rk_batch_kv_put(b, RK_KV_FLOG_TIME, key, 8 + rl, "", 0, err);
    if (rc == 0)
        rc = rk_batch_kv_put(b, RK_KV_FLOG, e->request_id, rl, buf.data, buf.len, err);
    rk_buf_free(&buf);
    return rc;
}

int rk_flog_get(rk_reader *r, const char *request_id, size_t len, rk_arena *a,
                rk_flog_entry *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    if (len == 0 || len > MAX_STR)
        return rk_err_set(err, RK_EINVAL, "feature log: request id of %zu bytes", len);
    const void *v;
    size_t vl;
    int rc = rk_reader_kv_get(r, RK_KV_FLOG, request_id, len, &v, &vl);
    if (rc == RK_ENOTFOUND)
        return rk_err_set(err, rc, "feature log: no entry for request '%.*s'", (int)len,
                          request_id);
    if (rc) return rk_err_set(err, rc, "feature log: %s", rk_reader_errmsg(r));
    rc = rk_flog_decode(v, vl, a, out, err);
    if (rc) rk_err_prefix(err, "request '%.*s': ", (int)len, request_id);
    return rc;
}

typedef struct key_scan {
    int64_t to_ts;
    rk_flog_key_fn fn;
    void *arg;
    int stopped;      /* the range ended (not an error) */
    int from_cb;      /* the scan's result is fn's, which set its own error */
} key_scan;

static int key_cb(void *arg, const void *key, size_t klen, const void *val,
                  size_t vlen)
{
    key_scan *ks = arg;
    (void)val;
    (void)vlen;
    /* A key without a request id cannot come from rk_flog_record; skip it
     * rather than fail every join over it. */
    if (klen <= 8) return 0;
    int64_t ts = time_of_key(key);
    if (ts >= ks->to_ts) {
        ks->stopped = 1;
        return 1;
    }
    int rc = ks->fn(ks->arg, (const char *)key + 8, klen - 8, ts);
    ks->from_cb = rc != 0;
    return rc;
}

int rk_flog_scan_keys(rk_reader *r, int64_t from_ts, int64_t to_ts,
                      rk_flog_key_fn fn, void *arg, rk_err *err)
{
    if (from_ts >= to_ts) return 0;
    unsigned char start[8];
    time_key(start, from_ts);
    key_scan ks = {to_ts, fn, arg, 0, 0};
    int rc = rk_reader_kv_scan(r, RK_KV_FLOG_TIME, NULL, 0, start, 8, key_cb, &ks);
    if (ks.stopped) return 0;
    if (rc < 0 && !ks.from_cb)
        rk_err_set(err, rc, "feature log scan: %s", rk_reader_errmsg(r));
    return rc;
}

typedef struct entry_scan {
    rk_reader *r;
    rk_arena arena;
    rk_flog_fn fn;
    void *arg;
    rk_err *err;
} entry_scan;

static int entry_cb(void *arg, const char *rid, size_t len, int64_t ts)
{
    entry_scan *es = arg;
    const void *v;
    size_t vl;
    int rc = rk_reader_kv_get(es->r, RK_KV_FLOG, rid, len, &v, &vl);
    if (rc == RK_ENOTFOUND) return 0; /* stale time key */
    if (rc) return rk_err_set(es->err, rc, "feature log scan: %s", rk_reader_errmsg(es->r));
    rk_arena_reset(&es->arena);
    rk_flog_entry e;
    if ((rc = rk_flog_decode(v, vl, &es->arena, &e, es->err)))
        return rk_err_prefix(es->err, "request '%.*s': ", (int)len, rid);
    /* Re-recorded request: this time key is the old one. */
    if (e.ts_ms != ts) return 0;
    return es->fn(es->arg, &e);
}

int rk_flog_scan(rk_reader *r, int64_t from_ts, int64_t to_ts, rk_flog_fn fn,
                 void *arg, rk_err *err)
{
    entry_scan es = {r, {0}, fn, arg, err};
    /* The arena is bounded by the largest entry a record can produce (plus
     * per-allocation overhead), so a scan holds one entry at a time. */
    rk_arena_init(&es.arena, 64 << 10, 0);
    int rc = rk_flog_scan_keys(r, from_ts, to_ts, entry_cb, &es, err);
    rk_arena_free(&es.arena);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Retention                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct expire_scan {
    rk_reader *r;
    rk_batch *b;
    rk_err *err;
    size_t n;         /* time keys deleted in this round */
    uint64_t entries; /* entries deleted in this round */
} expire_scan;

static int expire_cb(void *arg, const char *rid, size_t len, int64_t ts)
{
    expire_scan *x = arg;
    unsigned char key[8 + MAX_STR];
    if (len > MAX_STR) len = MAX_STR; /* cannot happen for recorded keys */
    time_key(key, ts);
    memcpy(key + 8, rid, len);
    const void *v;
    size_t vl;
    int rc = rk_reader_kv_get(x->r, RK_KV_FLOG, rid, len, &v, &vl);
    if (rc && rc != RK_ENOTFOUND) return rk_err_set(x->err, rc, "feature log expiry: %s",
                                                    rk_reader_errmsg(x->r));
    /* Delete the entry only when this key is its current time key: a
     * re-recorded request keeps its newer entry. The ts sits at byte 1 of
     * the encoding; a corrupt entry is deleted with its key. */
    if (rc == 0 && (vl < 9 || (int64_t)get_le((const unsigned char *)v + 1, 8) == ts ||
                    ((const unsigned char *)v)[0] != FLOG_VERSION)) {
        if ((rc = rk_batch_kv_del(x->b, RK_KV_FLOG, rid, len, x->err))) return rc;
        x->entries++;
    }
    if ((rc = rk_batch_kv_del(x->b, RK_KV_FLOG_TIME, key, 8 + len, x->err))) return rc;
    return ++x->n >= EXPIRE_BATCH ? 1 : 0;
}

int rk_flog_expire(rk_store *s, int64_t before_ts, uint64_t *deleted,
                   rk_err *err)
{
    if (deleted) *deleted = 0;
    rk_batch *b = NULL;
    int rc = rk_batch_create(&b, s, 0);
    if (rc) return rk_err_set(err, rc, "feature log expiry: out of memory");
    for (;;) {
        rk_reader *r = NULL;
        if ((rc = rk_store_reader(s, &r, err))) break;
        expire_scan x = {r, b, err, 0, 0};
        rc = rk_flog_scan_keys(r, INT64_MIN, before_ts, expire_cb, &x, err);
        rk_reader_close(r);
        if (rc < 0) break;
        if (x.n == 0) {
            rc = 0;
            break;
        }
        /* Reader closed before writing: expiry never pins an old snapshot
         * while the writer commits. */
        if ((rc = rk_store_write(s, b, NULL, err))) break;
        rk_batch_clear(b);
        if (deleted) *deleted += x.entries;
        if (x.n < EXPIRE_BATCH) break;
    }
    rk_batch_destroy(b);
    return rc < 0 ? rc : 0;
}
