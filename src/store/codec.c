/*
 * codec.c — the binary layout of stored records and batch ops.
 *
 * Everything is little-endian and length-prefixed, and every decoder checks
 * each length against the bytes it was given: a corrupted or truncated
 * record decodes to RK_ECORRUPT, never to a read past its end. Values in
 * LMDB are only 2-byte aligned, so multi-byte fields are read with memcpy
 * and vectors are copied into aligned memory from the caller's arena.
 */
#include <math.h>
#include <string.h>

#include "store_int.h"

/* ---- primitive readers/writers ------------------------------------------ */

const void *rk__rd_bytes(rk__rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const void *p = r->p;
    r->p += n;
    return p;
}

#define RD_FIXED(name, T)                                                  \
    T name(rk__rd *r)                                                      \
    {                                                                      \
        T v = 0;                                                           \
        const void *p = rk__rd_bytes(r, sizeof v);                         \
        if (p) memcpy(&v, p, sizeof v);                                    \
        return v;                                                          \
    }
RD_FIXED(rk__rd_u8, uint8_t)
RD_FIXED(rk__rd_u16, uint16_t)
RD_FIXED(rk__rd_u32, uint32_t)
RD_FIXED(rk__rd_u64, uint64_t)
RD_FIXED(rk__rd_f64, double)

int rk__wr_u8(rk_buf *b, uint8_t v) { return rk_buf_append(b, &v, 1); }
int rk__wr_u16(rk_buf *b, uint16_t v) { return rk_buf_append(b, &v, 2); }
int rk__wr_u32(rk_buf *b, uint32_t v) { return rk_buf_append(b, &v, 4); }
int rk__wr_u64(rk_buf *b, uint64_t v) { return rk_buf_append(b, &v, 8); }
int rk__wr_f64(rk_buf *b, double v) { return rk_buf_append(b, &v, 8); }

void rk__event_id_hash(const char *id, size_t len, uint8_t out[16])
{
    rk_hash128(id, len, out);
}

/* ---- events ------------------------------------------------------------- */
/* u8 flags, u8 type, u32 user, u32 item, i64 ts, [f64 value], [i32 pos],
 * [u16 len + request id], [u16 len + context], [u16 len + dedup id]. The
 * id is kept in the record so an export can be re-imported idempotently. */

/* Writes a u16 length and the bytes; the caller reserved the room. */
static unsigned char *put16(unsigned char *p, const void *s, uint16_t n)
{
    memcpy(p, &n, 2);
    if (n) memcpy(p + 2, s, n);
    return p + 2 + n;
}

int rk__event_encode(rk_buf *b, const rk__event_op *op, uint32_t user,
                     uint32_t item)
{
    /* The writer encodes every event it stores: size the record, reserve
     * once and copy the fields in, rather than one append per field. */
    uint8_t flags = op->flags;
    size_t size = 1 + 1 + 4 + 4 + 8;
    if (flags & RK__EV_VALUE) size += 8;
    if (flags & RK__EV_POSITION) size += 4;
    if (flags & RK__EV_REQUEST) size += 2 + (size_t)op->request_id_len;
    if (flags & RK__EV_CONTEXT) size += 2 + (size_t)op->context_len;
    if (flags & RK__EV_ID) size += 2 + (size_t)op->id_len;
    int rc = rk_buf_reserve(b, size);
    if (rc) return rc;
    unsigned char *p = (unsigned char *)b->data + b->len;
    uint64_t ts = (uint64_t)op->ts_ms;
    *p++ = flags;
    *p++ = op->type;
    memcpy(p, &user, 4);
    memcpy(p + 4, &item, 4);
    memcpy(p + 8, &ts, 8);
    p += 16;
    if (flags & RK__EV_VALUE) {
        memcpy(p, &op->value, 8);
        p += 8;
    }
    if (flags & RK__EV_POSITION) {
        uint32_t pos = (uint32_t)op->position;
        memcpy(p, &pos, 4);
        p += 4;
    }
    if (flags & RK__EV_REQUEST) p = put16(p, op->request_id, op->request_id_len);
    if (flags & RK__EV_CONTEXT) p = put16(p, op->context, op->context_len);
    if (flags & RK__EV_ID) p = put16(p, op->id, op->id_len);
    b->len += size;
    b->data[b->len] = '\0';
    return 0;
}

int rk__event_decode(const void *p, size_t n, uint64_t seq, rk_event *ev)
{
    rk__rd r = {p, (const unsigned char *)p + n, 0};
    memset(ev, 0, sizeof *ev);
    ev->seq = seq;
    uint8_t flags = rk__rd_u8(&r);
    ev->type = rk__rd_u8(&r);
    ev->user = rk__rd_u32(&r);
    ev->item = rk__rd_u32(&r);
    ev->ts_ms = (int64_t)rk__rd_u64(&r);
    ev->position = -1;
    if (flags & RK__EV_VALUE) {
        ev->value = rk__rd_f64(&r);
        ev->has_value = 1;
    }
    if (flags & RK__EV_POSITION) ev->position = (int32_t)rk__rd_u32(&r);
    if (flags & RK__EV_REQUEST) {
        ev->request_id_len = rk__rd_u16(&r);
        ev->request_id = rk__rd_bytes(&r, ev->request_id_len);
    }
    if (flags & RK__EV_CONTEXT) {
        ev->context_len = rk__rd_u16(&r);
        ev->context = rk__rd_bytes(&r, ev->context_len);
    }
    if (flags & RK__EV_ID) {
        ev->id_len = rk__rd_u16(&r);
        ev->id = rk__rd_bytes(&r, ev->id_len);
    }
    if (r.bad || r.p != r.end || (flags & ~0x1f)) return RK_ECORRUPT;
    return 0;
}

/* ---- attributes and entity records --------------------------------------- */
/* attr: u16 index, u8 type, payload (numeric f64 | timestamp i64 |
 * categorical/text u32 len + bytes | list u32 n, (u32 len + bytes)* |
 * vector u32 dim, f32*). */

int rk__attr_encode(rk_buf *b, const rk_attr_val *v)
{
    int rc = rk__wr_u16(b, (uint16_t)v->attr);
    rc = rc ? rc : rk__wr_u8(b, (uint8_t)v->type);
    if (rc) return rc;
    switch (v->type) {
    case RK_ATTR_NUMERIC: return rk__wr_f64(b, v->num);
    case RK_ATTR_TIMESTAMP: return rk__wr_u64(b, (uint64_t)v->ts_ms);
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT:
        rc = rk__wr_u32(b, v->len);
        return rc ? rc : rk_buf_append(b, v->str, v->len);
    case RK_ATTR_CATEGORICAL_LIST:
        rc = rk__wr_u32(b, v->n);
        for (uint32_t i = 0; !rc && i < v->n; i++) {
            rc = rk__wr_u32(b, v->list_lens[i]);
            rc = rc ? rc : rk_buf_append(b, v->list[i], v->list_lens[i]);
        }
        return rc;
    case RK_ATTR_VECTOR:
        rc = rk__wr_u32(b, v->dim);
        return rc ? rc : rk_buf_append(b, v->vec, (size_t)v->dim * 4);
    }
    return RK_EINVAL;
}

int rk__attrs_decode(rk__rd *r, uint16_t n, rk_attr_val *vals, rk_arena *a)
{
    if (n > RK_MAX_ATTRS) return RK_ECORRUPT;
    for (uint16_t i = 0; i < n; i++) {
        rk_attr_val *v = &vals[i];
        memset(v, 0, sizeof *v);
        v->attr = rk__rd_u16(r);
        v->type = (rk_attr_type)rk__rd_u8(r);
        if (r->bad) return RK_ECORRUPT;
        switch (v->type) {
        case RK_ATTR_NUMERIC: v->num = rk__rd_f64(r); break;
        case RK_ATTR_TIMESTAMP: v->ts_ms = (int64_t)rk__rd_u64(r); break;
        case RK_ATTR_CATEGORICAL:
        case RK_ATTR_TEXT:
            v->len = rk__rd_u32(r);
            v->str = rk__rd_bytes(r, v->len);
            break;
        case RK_ATTR_CATEGORICAL_LIST: {
            v->n = rk__rd_u32(r);
            /* Each element needs at least its 4-byte length. */
            if (r->bad || v->n > (size_t)(r->end - r->p) / 4) return RK_ECORRUPT;
            const char **list = rk_arena_alloc(a, sizeof(char *) * (v->n + 1));
            uint32_t *lens = rk_arena_alloc(a, sizeof(uint32_t) * (v->n + 1));
            if (!list || !lens) return RK_ENOMEM;
            for (uint32_t k = 0; k < v->n; k++) {
                lens[k] = rk__rd_u32(r);
                list[k] = rk__rd_bytes(r, lens[k]);
            }
            v->list = list;
            v->list_lens = lens;
            break;
        }
        case RK_ATTR_VECTOR: {
            v->dim = rk__rd_u32(r);
            if (r->bad || v->dim > RK_MAX_VECTOR_DIM) return RK_ECORRUPT;
            const void *src = rk__rd_bytes(r, (size_t)v->dim * 4);
            if (!src) return RK_ECORRUPT;
            v->vec = rk_arena_memdup(a, src, (size_t)v->dim * 4);
            if (!v->vec && v->dim) return RK_ENOMEM;
            break;
        }
        default: return RK_ECORRUPT;
        }
        if (r->bad) return RK_ECORRUPT;
    }
    return 0;
}

int rk__entity_decode(const void *p, size_t n, uint32_t id,
                      rk_entity_view *view, rk_attr_val *vals, rk_arena *a)
{
    rk__rd r = {p, (const unsigned char *)p + n, 0};
    memset(view, 0, sizeof *view);
    view->id = id;
    view->flags = rk__rd_u32(&r);
    view->updated_ms = (int64_t)rk__rd_u64(&r);
    uint16_t na = rk__rd_u16(&r);
    if (r.bad) return RK_ECORRUPT;
    int rc = rk__attrs_decode(&r, na, vals, a);
    if (rc) return rc;
    if (r.p != r.end) return RK_ECORRUPT;
    view->nattrs = na;
    view->attrs = vals;
    return 0;
}

static int write_record(rk_buf *out, uint32_t flags, int64_t now_ms,
                        const rk_attr_val *vals, uint16_t n)
{
    int rc = rk__wr_u32(out, flags);
    rc = rc ? rc : rk__wr_u64(out, (uint64_t)now_ms);
    rc = rc ? rc : rk__wr_u16(out, n);
    for (uint16_t i = 0; !rc && i < n; i++) rc = rk__attr_encode(out, &vals[i]);
    return rc;
}

int rk__entity_merge(rk_buf *out, const void *old, size_t old_n,
                     const void *attrs, size_t attrs_n, uint16_t nattrs,
                     int replace, int64_t now_ms, rk_arena *a)
{
    rk_attr_val *merged = rk_arena_alloc(a, sizeof(rk_attr_val) * RK_MAX_ATTRS * 2);
    rk_attr_val *fresh = merged + RK_MAX_ATTRS;
    if (!merged) return RK_ENOMEM;
    uint16_t nm = 0;
    uint32_t flags = 0;
    if (old && !replace) {
        rk_entity_view v;
        int rc = rk__entity_decode(old, old_n, 0, &v, merged, a);
        if (rc) return rc;
        nm = (uint16_t)v.nattrs;
        flags = v.flags;
    } else if (old) {
        rk__rd r = {old, (const unsigned char *)old + old_n, 0};
        flags = rk__rd_u32(&r);
        if (r.bad) return RK_ECORRUPT;
    }
    /* An upsert brings a deleted entity back to life. */
    flags &= ~RK_ENTITY_DELETED;
    rk__rd r = {attrs, (const unsigned char *)attrs + attrs_n, 0};
    int rc = rk__attrs_decode(&r, nattrs, fresh, a);
    if (rc) return rc;
    for (uint16_t i = 0; i < nattrs; i++) {
        uint16_t k = 0;
        while (k < nm && merged[k].attr != fresh[i].attr) k++;
        if (k == nm) {
            if (nm >= RK_MAX_ATTRS) return RK_ECORRUPT;
            nm++;
        }
        merged[k] = fresh[i];
    }
    /* Keep attributes ordered by index so records are canonical. */
    for (uint16_t i = 1; i < nm; i++) {
        rk_attr_val t = merged[i];
        uint16_t j = i;
        while (j > 0 && merged[j - 1].attr > t.attr) {
            merged[j] = merged[j - 1];
            j--;
        }
        merged[j] = t;
    }
    return write_record(out, flags, now_ms, merged, nm);
}

int rk__entity_set_flags(rk_buf *out, const void *old, size_t old_n,
                         uint32_t set, uint32_t clear, int drop_attrs,
                         int64_t now_ms)
{
    uint32_t flags = 0;
    const unsigned char *rest = NULL;
    size_t rest_n = 0;
    if (old) {
        rk__rd r = {old, (const unsigned char *)old + old_n, 0};
        flags = rk__rd_u32(&r);
        rk__rd_u64(&r);
        if (r.bad) return RK_ECORRUPT;
        rest = r.p;
        rest_n = (size_t)(r.end - r.p);
    }
    flags = (flags | set) & ~clear;
    int rc = rk__wr_u32(out, flags);
    rc = rc ? rc : rk__wr_u64(out, (uint64_t)now_ms);
    if (rc) return rc;
    if (drop_attrs || !rest) return rk__wr_u16(out, 0);
    return rk_buf_append(out, rest, rest_n);
}

/* ---- rows ----------------------------------------------------------------- */

int rk__row_encode(rk_buf *b, const rk_row_in *row)
{
    int rc = rk__wr_f64(b, row->label);
    rc = rc ? rc : rk__wr_u16(b, (uint16_t)(row->group ? row->group_len : 0));
    if (!rc && row->group) rc = rk_buf_append(b, row->group, row->group_len);
    rc = rc ? rc : rk__wr_u32(b, row->nnum);
    for (uint32_t i = 0; !rc && i < row->nnum; i++) {
        rc = rk__wr_u32(b, row->num_idx[i]);
        rc = rc ? rc : rk__wr_f64(b, row->num_val[i]);
    }
    rc = rc ? rc : rk__wr_u32(b, row->ncat);
    for (uint32_t i = 0; !rc && i < row->ncat; i++) {
        size_t len = row->cat_len ? row->cat_len[i] : strlen(row->cat_val[i]);
        rc = rk__wr_u32(b, row->cat_idx[i]);
        rc = rc ? rc : rk__wr_u32(b, (uint32_t)len);
        rc = rc ? rc : rk_buf_append(b, row->cat_val[i], len);
    }
    return rc;
}

int rk__row_decode(const void *p, size_t n, uint64_t seq, rk_row *row,
                   rk_arena *a)
{
    rk__rd r = {p, (const unsigned char *)p + n, 0};
    memset(row, 0, sizeof *row);
    row->seq = seq;
    row->label = rk__rd_f64(&r);
    row->group_len = rk__rd_u16(&r);
    row->group = row->group_len ? rk__rd_bytes(&r, row->group_len) : NULL;
    row->nnum = rk__rd_u32(&r);
    if (r.bad || row->nnum > (size_t)(r.end - r.p) / 12) return RK_ECORRUPT;
    uint32_t *ni = rk_arena_alloc(a, sizeof(uint32_t) * (row->nnum + 1));
    double *nv = rk_arena_alloc(a, sizeof(double) * (row->nnum + 1));
    if (!ni || !nv) return RK_ENOMEM;
    for (uint32_t i = 0; i < row->nnum; i++) {
        ni[i] = rk__rd_u32(&r);
        nv[i] = rk__rd_f64(&r);
    }
    row->num_idx = ni;
    row->num_val = nv;
    row->ncat = rk__rd_u32(&r);
    if (r.bad || row->ncat > (size_t)(r.end - r.p) / 8) return RK_ECORRUPT;
    uint32_t *ci = rk_arena_alloc(a, sizeof(uint32_t) * (row->ncat + 1));
    uint32_t *cl = rk_arena_alloc(a, sizeof(uint32_t) * (row->ncat + 1));
    const char **cv = rk_arena_alloc(a, sizeof(char *) * (row->ncat + 1));
    if (!ci || !cl || !cv) return RK_ENOMEM;
    for (uint32_t i = 0; i < row->ncat; i++) {
        ci[i] = rk__rd_u32(&r);
        cl[i] = rk__rd_u32(&r);
        cv[i] = rk__rd_bytes(&r, cl[i]);
    }
    row->cat_idx = ci;
    row->cat_len = cl;
    row->cat_val = cv;
    if (r.bad || r.p != r.end) return RK_ECORRUPT;
    return 0;
}
