/*
 * batch.c — building write batches on the producer's thread.
 *
 * Every op is validated against the schema here, before it is queued, so
 * the writer thread only ever sees well-formed ops and a batch can fail as
 * a whole only for storage reasons (full, I/O). A rejected op leaves the
 * batch exactly as it was: the buffer is truncated back to its old length.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "store_int.h"

#define BATCH_DEFAULT_MAX (64u << 20)
#define REQUEST_ID_MAX 128
#define LIST_MAX 1024
#define ROW_FEATURES_MAX 100000
#define CAT_VALUE_MAX 1024

int rk_batch_create(rk_batch **out, const rk_store *s, size_t max_bytes)
{
    rk_batch *b = rk_calloc(1, sizeof *b);
    if (!b) return RK_ENOMEM;
    b->schema = rk_store_schema(s);
    rk_buf_init(&b->buf, max_bytes ? max_bytes : BATCH_DEFAULT_MAX);
    *out = b;
    return 0;
}

void rk_batch_destroy(rk_batch *b)
{
    if (!b) return;
    rk_buf_free(&b->buf);
    rk_free(b);
}

void rk_batch_clear(rk_batch *b)
{
    rk_buf_reset(&b->buf);
    b->count = 0;
}

size_t rk_batch_count(const rk_batch *b) { return b->count; }
size_t rk_batch_bytes(const rk_batch *b) { return b->buf.len; }

int rk_batch_rewind(rk_batch *b, size_t count, size_t bytes)
{
    if (count > b->count || bytes > b->buf.len) return RK_EINVAL;
    b->count = count;
    b->buf.len = bytes;
    if (b->buf.data) b->buf.data[bytes] = '\0';
    return 0;
}

/* External ids: 1..RK_ID_MAX bytes of valid UTF-8 without control chars. */
static int check_id(const char *what, const char *id, size_t len, rk_err *err)
{
    if (!id || len == 0)
        return rk_err_set(err, RK_EINVAL, "%s: missing id", what);
    if (len > RK_ID_MAX)
        return rk_err_set(err, RK_EINVAL, "%s: id longer than %d bytes", what,
                          RK_ID_MAX);
    if (rk_utf8_valid_prefix(id, len) != len)
        return rk_err_set(err, RK_EINVAL, "%s: id is not valid UTF-8", what);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x20)
            return rk_err_set(err, RK_EINVAL,
                              "%s: id contains a control character", what);
    return 0;
}

/* check_id for a NUL-terminated id in one pass: measures it (up to
 * RK_ID_MAX + 1 bytes, enough to know it is too long) while looking for
 * control characters and non-ASCII bytes; only the latter need the UTF-8
 * validator. Same checks, same order, same messages as check_id; on success
 * *len is the id's length. This is on the ingest hot path (two ids per
 * event), where strlen + validate + scan cost three passes. */
static int scan_id(const char *what, const char *id, size_t *len, rk_err *err)
{
    if (!id || !*id) return rk_err_set(err, RK_EINVAL, "%s: missing id", what);
    size_t n = 0;
    unsigned high = 0, ctl = 0;
    for (; id[n] && n <= RK_ID_MAX; n++) {
        unsigned char c = (unsigned char)id[n];
        high |= c & 0x80u;
        ctl |= c < 0x20;
    }
    if (n > RK_ID_MAX)
        return rk_err_set(err, RK_EINVAL, "%s: id longer than %d bytes", what,
                          RK_ID_MAX);
    if (high && rk_utf8_valid_prefix(id, n) != n)
        return rk_err_set(err, RK_EINVAL, "%s: id is not valid UTF-8", what);
    if (ctl)
        return rk_err_set(err, RK_EINVAL,
                          "%s: id contains a control character", what);
    *len = n;
    return 0;
}

static int put_str16(rk_buf *b, const char *s, size_t n)
{
    int rc = rk__wr_u16(b, (uint16_t)n);
    return rc ? rc : rk_buf_append(b, s, n);
}

/* Writes a u16 length and the bytes at p (room reserved by the caller);
 * returns the end. Same bytes as put_str16. */
static unsigned char *put16(unsigned char *p, const char *s, size_t n)
{
    uint16_t n16 = (uint16_t)n;
    memcpy(p, &n16, 2);
    if (n) memcpy(p + 2, s, n);
    return p + 2 + n;
}

/* Finishes an op: counts it, or rolls the buffer back on failure and maps
 * buffer errors to the documented codes. */
static int finish(rk_batch *b, size_t mark, int rc, rk_err *err)
{
    if (rc == 0) {
        b->count++;
        return 0;
    }
    b->buf.len = mark;
    if (b->buf.data) b->buf.data[mark] = '\0';
    if (rc == RK_ELIMIT)
        return rk_err_set(err, RK_ELIMIT, "batch is full (%zu bytes)",
                          b->buf.max);
    if (rc == RK_ENOMEM) return rk_err_set(err, RK_ENOMEM, "batch: out of memory");
    return rc;
}

int rk_batch_event(rk_batch *b, const rk_event_in *ev, rk_err *err)
{
    uint32_t type;
    if (!ev->type || rk_schema_find_event_type(b->schema, ev->type,
                                               strlen(ev->type), &type) != 0)
        return rk_err_set(err, RK_EINVAL, "unknown event type '%.64s'",
                          ev->type ? ev->type : "");
    size_t ulen = 0, ilen = 0;
    int rc = scan_id("event user", ev->user, &ulen, err);
    if (rc) return rc;
    if ((rc = scan_id("event item", ev->item, &ilen, err))) return rc;
    /* Years 1970..9999: anything else is a unit mistake (ns, us, negative). */
    if (ev->ts_ms < 0 || ev->ts_ms > 253402300799999LL)
        return rk_err_set(err, RK_EINVAL,
                          "event timestamp %lld ms is outside 1970..9999",
                          (long long)ev->ts_ms);
    if (ev->has_value && !isfinite(ev->value))
        return rk_err_set(err, RK_EINVAL, "event value is not a finite number");
    if (ev->position < -1)
        return rk_err_set(err, RK_EINVAL, "event position %d is negative",
                          (int)ev->position);
    size_t rlen = ev->request_id ? strlen(ev->request_id) : 0;
    if (ev->request_id && (rc = check_id("event request_id", ev->request_id,
                                         rlen, err)))
        return rc;
    if (rlen > REQUEST_ID_MAX)
        return rk_err_set(err, RK_EINVAL, "request_id longer than %d bytes",
                          REQUEST_ID_MAX);
    if (ev->context) {
        if (ev->context_len > RK_MAX_CONTEXT)
            return rk_err_set(err, RK_EINVAL,
                              "event context larger than %d bytes",
                              RK_MAX_CONTEXT);
        json_error_t jerr;
        json_t *j = json_loadb(ev->context, ev->context_len,
                               JSON_REJECT_DUPLICATES, &jerr);
        int is_obj = j && json_is_object(j);
        json_decref(j);
        if (!is_obj)
            return rk_err_set(err, RK_EINVAL,
                              "event context is not a JSON object%s%s",
                              j ? "" : ": ", j ? "" : jerr.text);
    }
    size_t idlen = ev->id ? strlen(ev->id) : 0;
    if (ev->id && (rc = check_id("event id", ev->id, idlen, err))) return rc;

    uint8_t flags = 0;
    if (ev->has_value) flags |= RK__EV_VALUE;
    if (ev->position >= 0) flags |= RK__EV_POSITION;
    if (ev->request_id && rlen) flags |= RK__EV_REQUEST;
    if (ev->context) flags |= RK__EV_CONTEXT;
    if (ev->id) flags |= RK__EV_ID;

    /* Size the op, reserve once, then copy the fields in: one capacity
     * check per event instead of one per field. Layout (store_int.h): op,
     * type, flags, u16+user, u16+item, ts, [value], [position],
     * [u16+request id], [u16+context], [u16+id, id hash]. */
    size_t size = 3 + 2 + ulen + 2 + ilen + 8;
    if (flags & RK__EV_VALUE) size += 8;
    if (flags & RK__EV_POSITION) size += 4;
    if (flags & RK__EV_REQUEST) size += 2 + rlen;
    if (flags & RK__EV_CONTEXT) size += 2 + ev->context_len;
    if (flags & RK__EV_ID) size += 2 + idlen + 16;
    size_t mark = b->buf.len;
    if ((rc = rk_buf_reserve(&b->buf, size))) return finish(b, mark, rc, err);
    unsigned char *p = (unsigned char *)b->buf.data + mark;
    *p++ = RK__OP_EVENT;
    *p++ = (uint8_t)type;
    *p++ = flags;
    p = put16(p, ev->user, ulen);
    p = put16(p, ev->item, ilen);
    uint64_t ts = (uint64_t)ev->ts_ms;
    memcpy(p, &ts, 8);
    p += 8;
    if (flags & RK__EV_VALUE) {
        memcpy(p, &ev->value, 8);
        p += 8;
    }
    if (flags & RK__EV_POSITION) {
        uint32_t pos = (uint32_t)ev->position;
        memcpy(p, &pos, 4);
        p += 4;
    }
    if (flags & RK__EV_REQUEST) p = put16(p, ev->request_id, rlen);
    if (flags & RK__EV_CONTEXT) p = put16(p, ev->context, ev->context_len);
    if (flags & RK__EV_ID) {
        p = put16(p, ev->id, idlen);
        rk__event_id_hash(ev->id, idlen, p);
        p += 16;
    }
    b->buf.len = (size_t)((char *)p - b->buf.data);
    b->buf.data[b->buf.len] = '\0';
    return finish(b, mark, 0, err);
}

static int check_text(const char *name, const char *s, size_t len, size_t max,
                      rk_err *err)
{
    if (len > max)
        return rk_err_set(err, RK_EINVAL, "attribute '%s': longer than %zu "
                          "bytes", name, max);
    if (len && !s)
        return rk_err_set(err, RK_EINVAL, "attribute '%s': missing value", name);
    if (rk_utf8_valid_prefix(s, len) != len)
        return rk_err_set(err, RK_EINVAL, "attribute '%s': not valid UTF-8",
                          name);
    return 0;
}

/* Validates one attribute against its declaration and fills v. */
static int attr_value(const rk_schema *s, rk_entity e, const rk_attr_in *in,
                      rk_attr_val *v, uint32_t *lens, rk_err *err)
{
    uint32_t idx;
    if (!in->name ||
        rk_schema_find_attr(s, e, in->name, strlen(in->name), &idx) != 0)
        return rk_err_set(err, RK_EINVAL,
                          "unknown attribute '%.64s' for %s (declare it under "
                          "entities.%s.attributes)",
                          in->name ? in->name : "", rk_entity_name(e),
                          rk_entity_name(e));
    const rk_attr_def *d = rk_schema_attr(s, e, idx);
    if (d->type != in->type)
        return rk_err_set(err, RK_EINVAL,
                          "attribute '%s' is %s, got a %s value", d->name,
                          rk_attr_type_name(d->type),
                          rk_attr_type_name(in->type));
    memset(v, 0, sizeof *v);
    v->attr = idx;
    v->type = d->type;
    switch (d->type) {
    case RK_ATTR_NUMERIC:
        if (!isfinite(in->num))
            return rk_err_set(err, RK_EINVAL,
                              "attribute '%s': not a finite number", d->name);
        v->num = in->num;
        return 0;
    case RK_ATTR_TIMESTAMP:
        v->ts_ms = in->ts_ms;
        return 0;
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT: {
        size_t max = d->type == RK_ATTR_TEXT ? RK_MAX_TEXT : CAT_VALUE_MAX;
        int rc = check_text(d->name, in->str, in->len, max, err);
        if (rc) return rc;
        v->str = in->str;
        v->len = (uint32_t)in->len;
        return 0;
    }
    case RK_ATTR_CATEGORICAL_LIST:
        if (in->n > LIST_MAX)
            return rk_err_set(err, RK_EINVAL, "attribute '%s': more than %d "
                              "values", d->name, LIST_MAX);
        for (size_t i = 0; i < in->n; i++) {
            size_t len = in->list_lens ? in->list_lens[i]
                                       : (in->list[i] ? strlen(in->list[i]) : 0);
            int rc = check_text(d->name, in->list[i], len, CAT_VALUE_MAX, err);
            if (rc) return rc;
            lens[i] = (uint32_t)len;
        }
        v->list = in->list;
        v->list_lens = lens;
        v->n = (uint32_t)in->n;
        return 0;
    case RK_ATTR_VECTOR:
        if (in->dim != d->dim || !in->vec)
            return rk_err_set(err, RK_EINVAL,
                              "attribute '%s': expected %u values, got %u",
                              d->name, d->dim, in->dim);
        for (uint32_t i = 0; i < in->dim; i++)
            if (!isfinite(in->vec[i]))
                return rk_err_set(err, RK_EINVAL,
                                  "attribute '%s': element %u is not finite",
                                  d->name, i);
        v->vec = in->vec;
        v->dim = in->dim;
        return 0;
    }
    return rk_err_set(err, RK_EINVAL, "attribute '%s': bad type", d->name);
}

static int check_entity(rk_entity e, rk_err *err)
{
    if ((unsigned)e >= RK_ENTITY_COUNT)
        return rk_err_set(err, RK_EINVAL, "bad entity type %d", (int)e);
    return 0;
}

int rk_batch_upsert(rk_batch *b, rk_entity e, const char *id,
                    const rk_attr_in *attrs, size_t nattrs, unsigned flags,
                    rk_err *err)
{
    int rc = check_entity(e, err);
    size_t idlen = id ? strlen(id) : 0;
    if (rc || (rc = check_id(rk_entity_name(e), id, idlen, err))) return rc;
    if (nattrs > RK_MAX_ATTRS)
        return rk_err_set(err, RK_EINVAL, "more than %d attributes",
                          RK_MAX_ATTRS);
    size_t mark = b->buf.len;
    rc = rk__wr_u8(&b->buf, RK__OP_UPSERT);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)e);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)(flags & RK_UPSERT_REPLACE));
    rc = rc ? rc : put_str16(&b->buf, id, idlen);
    rc = rc ? rc : rk__wr_u16(&b->buf, (uint16_t)nattrs);
    size_t len_at = b->buf.len;
    rc = rc ? rc : rk__wr_u32(&b->buf, 0); /* attrs byte length, patched */
    uint32_t seen[(RK_MAX_ATTRS + 31) / 32] = {0};
    uint32_t lens[LIST_MAX];
    for (size_t i = 0; !rc && i < nattrs; i++) {
        rk_attr_val v;
        rc = attr_value(b->schema, e, &attrs[i], &v, lens, err);
        if (rc) break;
        if (seen[v.attr / 32] & (1u << (v.attr % 32))) {
            rc = rk_err_set(err, RK_EINVAL, "attribute '%s' given twice",
                            attrs[i].name);
            break;
        }
        seen[v.attr / 32] |= 1u << (v.attr % 32);
        rc = rk__attr_encode(&b->buf, &v);
    }
    if (!rc) {
        uint32_t n = (uint32_t)(b->buf.len - len_at - 4);
        memcpy(b->buf.data + len_at, &n, 4);
    }
    return finish(b, mark, rc, err);
}

int rk_batch_hide(rk_batch *b, rk_entity e, const char *id, int hidden,
                  rk_err *err)
{
    int rc = check_entity(e, err);
    size_t idlen = id ? strlen(id) : 0;
    if (rc || (rc = check_id(rk_entity_name(e), id, idlen, err))) return rc;
    size_t mark = b->buf.len;
    rc = rk__wr_u8(&b->buf, RK__OP_HIDE);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)e);
    rc = rc ? rc : rk__wr_u8(&b->buf, hidden ? 1 : 0);
    rc = rc ? rc : put_str16(&b->buf, id, idlen);
    return finish(b, mark, rc, err);
}

int rk_batch_delete(rk_batch *b, rk_entity e, const char *id, rk_err *err)
{
    int rc = check_entity(e, err);
    size_t idlen = id ? strlen(id) : 0;
    if (rc || (rc = check_id(rk_entity_name(e), id, idlen, err))) return rc;
    size_t mark = b->buf.len;
    rc = rk__wr_u8(&b->buf, RK__OP_DELETE);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)e);
    rc = rc ? rc : put_str16(&b->buf, id, idlen);
    return finish(b, mark, rc, err);
}

int rk_batch_row(rk_batch *b, const char *dataset, const rk_row_in *row,
                 rk_err *err)
{
    size_t dlen = dataset ? strlen(dataset) : 0;
    int rc = check_id("dataset", dataset, dlen, err);
    if (rc) return rc;
    if (dlen > RK_NAME_MAX)
        return rk_err_set(err, RK_EINVAL, "dataset name longer than %d bytes",
                          RK_NAME_MAX);
    if (!isfinite(row->label))
        return rk_err_set(err, RK_EINVAL, "row label is not finite");
    if (row->group && (rc = check_id("row group", row->group, row->group_len,
                                     err)))
        return rc;
    if (row->nnum > ROW_FEATURES_MAX || row->ncat > ROW_FEATURES_MAX)
        return rk_err_set(err, RK_EINVAL, "row has more than %d features",
                          ROW_FEATURES_MAX);
    for (uint32_t i = 0; i < row->nnum; i++)
        if (!isfinite(row->num_val[i]))
            return rk_err_set(err, RK_EINVAL,
                              "row feature %u is not finite", row->num_idx[i]);
    for (uint32_t i = 0; i < row->ncat; i++) {
        size_t len = row->cat_len ? row->cat_len[i] : strlen(row->cat_val[i]);
        if (len > CAT_VALUE_MAX)
            return rk_err_set(err, RK_EINVAL, "row categorical %u longer "
                              "than %d bytes", row->cat_idx[i], CAT_VALUE_MAX);
    }
    size_t mark = b->buf.len;
    rc = rk__wr_u8(&b->buf, RK__OP_ROW);
    rc = rc ? rc : put_str16(&b->buf, dataset, dlen);
    size_t len_at = b->buf.len;
    rc = rc ? rc : rk__wr_u32(&b->buf, 0);
    rc = rc ? rc : rk__row_encode(&b->buf, row);
    if (!rc) {
        uint32_t n = (uint32_t)(b->buf.len - len_at - 4);
        memcpy(b->buf.data + len_at, &n, 4);
    }
    return finish(b, mark, rc, err);
}

int rk__batch_declare(rk_batch *b, rk_entity e, const char *name,
                      rk_attr_type type, uint32_t dim)
{
    size_t n = strlen(name);
    size_t mark = b->buf.len;
    int rc = rk__wr_u8(&b->buf, RK__OP_DECLARE);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)e);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)type);
    rc = rc ? rc : rk__wr_u32(&b->buf, dim);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)n);
    rc = rc ? rc : rk_buf_append(&b->buf, name, n);
    return finish(b, mark, rc, NULL);
}

/* ---- key-value ops ------------------------------------------------------ */

static int kv_op(rk_batch *b, int op, unsigned table, const void *key,
                 size_t klen, const void *val, size_t vlen, rk_err *err)
{
    if (table == 0 || table >= RK_KV_TABLES)
        return rk_err_set(err, RK_EINVAL, "key-value table %u out of range 1..%d",
                          table, RK_KV_TABLES - 1);
    if (klen == 0 || klen > RK_KV_KEY_MAX)
        return rk_err_set(err, RK_EINVAL, "key-value key of %zu bytes (1..%d allowed)",
                          klen, RK_KV_KEY_MAX);
    if (vlen > RK_KV_VAL_MAX)
        return rk_err_set(err, RK_EINVAL, "key-value value of %zu bytes (at most %u)",
                          vlen, RK_KV_VAL_MAX);
    size_t mark = b->buf.len;
    int rc = rk__wr_u8(&b->buf, (uint8_t)op);
    rc = rc ? rc : rk__wr_u8(&b->buf, (uint8_t)table);
    rc = rc ? rc : put_str16(&b->buf, key, klen);
    if (op != RK__OP_KV_DEL) {
        rc = rc ? rc : rk__wr_u32(&b->buf, (uint32_t)vlen);
        rc = rc ? rc : rk_buf_append(&b->buf, val, vlen);
    }
    return finish(b, mark, rc, err);
}

int rk_batch_kv_put(rk_batch *b, unsigned table, const void *key, size_t klen,
                    const void *val, size_t vlen, rk_err *err)
{
    return kv_op(b, RK__OP_KV_PUT, table, key, klen, val, vlen, err);
}

int rk_batch_kv_del(rk_batch *b, unsigned table, const void *key, size_t klen,
                    rk_err *err)
{
    return kv_op(b, RK__OP_KV_DEL, table, key, klen, NULL, 0, err);
}

int rk_batch_kv_merge(rk_batch *b, unsigned table, const void *key,
                      size_t klen, const void *operand, size_t olen,
                      rk_err *err)
{
    return kv_op(b, RK__OP_KV_MERGE, table, key, klen, operand, olen, err);
}
