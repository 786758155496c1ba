/*
 * jsonl.c — the generic JSON-lines formats: one object per line holding an
 * event, a user or item, or a dataset row. This is also what rk_export_jsonl
 * writes, so every field export emits is accepted here.
 *
 *   events: {"type","user","item","ts", optional "value","position",
 *            "request_id","context" (an object),"id"}
 *           ts is an ISO-8601 string or a number: seconds when below 1e11,
 *           milliseconds otherwise.
 *   users/items: {"id", optional "hidden", "deleted", "attributes":{...}}
 *           where attributes may also appear as top-level keys.
 *   rows:   {"label", optional "group", "num":{"<idx>":x}, "cat":{"<idx>":
 *           "v"}, "dataset"}
 *
 * Unknown keys are errors, not ignored: a misspelt "timestamp" silently
 * dropped would import every event at the wrong time.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "io_int.h"

static int bad(rk_err *err, const char *key, const char *what)
{
    return rk_err_set(err, RK_EPARSE, "field '%s': %s", key, what);
}

/* An id from a string or an integer (numeric ids are common in exports). */
static int json_id(rk_io_parser *p, const char *key, json_t *v,
                   const char **out, rk_err *err)
{
    if (json_is_string(v))
        return rk__io_id(p, key, json_string_value(v), json_string_length(v),
                         out, err);
    if (json_is_integer(v)) {
        char *s = rk_arena_sprintf(&p->arena, "%lld",
                                   (long long)json_integer_value(v));
        if (!s) return rk_err_set(err, RK_ENOMEM, "jsonl: out of memory");
        *out = s;
        return 0;
    }
    return bad(err, key, "expected a string");
}

int rk_io_json_time(const char *key, const struct json_t *cv, int64_t *out,
                    rk_err *err)
{
    json_t *v = (json_t *)cv; /* jansson's getters take non-const */
    if (json_is_string(v))
        return rk__io_time(key, json_string_value(v), json_string_length(v),
                           out, err);
    if (json_is_integer(v)) {
        json_int_t t = json_integer_value(v);
        if (t > -100000000000LL && t < 100000000000LL) {
            *out = (int64_t)t * 1000;
        } else {
            *out = (int64_t)t;
        }
        return 0;
    }
    if (json_is_real(v)) {
        double t = json_real_value(v);
        if (fabs(t) < 1e11) t *= 1000;
        if (!(fabs(t) < 9e18)) return bad(err, key, "out of range");
        *out = (int64_t)llround(t);
        return 0;
    }
    return bad(err, key, "expected a number or a time string");
}

static int json_num(const char *key, json_t *v, double *out, rk_err *err)
{
    if (!json_is_number(v)) return bad(err, key, "expected a number");
    *out = json_number_value(v);
    if (!isfinite(*out)) return bad(err, key, "not a finite number");
    return 0;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return rk_buf_append((rk_buf *)data, buf, size) ? -1 : 0;
}

static int json_context(rk_io_parser *p, json_t *v, const char **out,
                        size_t *len, rk_err *err)
{
    if (!json_is_object(v)) return bad(err, "context", "expected an object");
    rk_buf b;
    rk_buf_init(&b, RK_MAX_CONTEXT + 1);
    int rc = json_dump_callback(v, dump_cb, &b, JSON_COMPACT);
    if (rc != 0 || b.len > RK_MAX_CONTEXT) {
        rk_buf_free(&b);
        return rk_err_set(err, RK_EPARSE, "field 'context': longer than %d "
                                          "bytes", RK_MAX_CONTEXT);
    }
    rc = rk__io_dup(p, b.data ? b.data : "", b.len, out, err);
    *len = b.len;
    rk_buf_free(&b);
    return rc;
}

static int event(rk_io_parser *p, json_t *o, rk_io_record *out, rk_err *err)
{
    rk_event_in *ev = rk_arena_alloc(&p->arena, sizeof *ev);
    if (!ev) return rk_err_set(err, RK_ENOMEM, "jsonl: out of memory");
    memset(ev, 0, sizeof *ev);
    ev->position = -1;
    int seen[RK__EV_NCOLS] = {0};
    const char *key;
    json_t *v;
    char show[48];
    json_object_foreach(o, key, v) {
        int k = 0;
        while (k < RK__EV_NCOLS && strcmp(key, rk__io_event_cols[k]) != 0) k++;
        if (k == RK__EV_NCOLS)
            return rk_err_set(err, RK_EPARSE,
                              "unknown field '%s' (expected type, user, item, "
                              "ts, value, request_id, position, context, id)",
                              rk__io_show(key, strlen(key), show));
        if (json_is_null(v)) continue; /* null = absent */
        seen[k] = 1;
        int rc = 0;
        switch (k) {
        case RK__EV_TYPE:
            if (!json_is_string(v)) return bad(err, key, "expected a string");
            if (p->schema) {
                uint32_t idx;
                if (rk_schema_find_event_type(p->schema, json_string_value(v),
                                              json_string_length(v), &idx))
                    return rk_err_set(err, RK_EPARSE,
                                      "field 'type': unknown event type '%s' "
                                      "(declare it under events:)",
                                      rk__io_show(json_string_value(v),
                                                  json_string_length(v), show));
            }
            rc = rk__io_id(p, key, json_string_value(v), json_string_length(v),
                           &ev->type, err);
            break;
        case RK__EV_USER: rc = json_id(p, key, v, &ev->user, err); break;
        case RK__EV_ITEM: rc = json_id(p, key, v, &ev->item, err); break;
        case RK__EV_TS:
            rc = rk_io_json_time(key, v, &ev->ts_ms, err);
            if (!rc && ev->ts_ms < 0) rc = bad(err, key, "before 1970");
            break;
        case RK__EV_VALUE:
            rc = json_num(key, v, &ev->value, err);
            ev->has_value = 1;
            break;
        case RK__EV_POSITION:
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT32_MAX)
                return bad(err, key, "expected an integer >= 0");
            ev->position = (int32_t)json_integer_value(v);
            break;
        case RK__EV_REQUEST_ID:
            rc = json_id(p, key, v, &ev->request_id, err);
            break;
        case RK__EV_CONTEXT:
            rc = json_context(p, v, &ev->context, &ev->context_len, err);
            break;
        case RK__EV_ID: rc = json_id(p, key, v, &ev->id, err); break;
        }
        if (rc) return rc;
    }
    static const int required[] = {RK__EV_TYPE, RK__EV_USER, RK__EV_ITEM,
                                   RK__EV_TS};
    for (size_t r = 0; r < 4; r++)
        if (!seen[required[r]])
            return rk_err_set(err, RK_EPARSE, "missing field '%s'",
                              rk__io_event_cols[required[r]]);
    out->type = RK_IO_REC_EVENTS;
    out->events = ev;
    out->nevents = 1;
    return 0;
}

/* Converts one attribute value by its declared type. */
static int attr_value(rk_io_parser *p, const rk_attr_def *d, json_t *v,
                      rk_attr_in *a, rk_err *err)
{
    const char *key = d->name;
    a->name = d->name;
    a->type = d->type;
    switch (d->type) {
    case RK_ATTR_NUMERIC:
        return json_num(key, v, &a->num, err);
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT:
        if (json_is_integer(v) && d->type == RK_ATTR_CATEGORICAL) {
            int rc = json_id(p, key, v, &a->str, err);
            a->len = rc ? 0 : strlen(a->str);
            return rc;
        }
        if (!json_is_string(v)) return bad(err, key, "expected a string");
        a->len = json_string_length(v);
        return rk__io_text(p, key, json_string_value(v), a->len, RK_MAX_TEXT,
                           &a->str, err);
    case RK_ATTR_CATEGORICAL_LIST: {
        if (!json_is_array(v)) return bad(err, key, "expected an array");
        size_t n = json_array_size(v);
        const char **l = rk_arena_alloc(&p->arena, (n + 1) * sizeof *l);
        size_t *ll = rk_arena_alloc(&p->arena, (n + 1) * sizeof *ll);
        if (!l || !ll) return rk_err_set(err, RK_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_string(e))
                return bad(err, key, "expected an array of strings");
            ll[i] = json_string_length(e);
            int rc = rk__io_text(p, key, json_string_value(e), ll[i],
                                 RK_MAX_TEXT, &l[i], err);
            if (rc) return rc;
        }
        a->list = l;
        a->list_lens = ll;
        a->n = n;
        return 0;
    }
    case RK_ATTR_TIMESTAMP:
        return rk_io_json_time(key, v, &a->ts_ms, err);
    case RK_ATTR_VECTOR: {
        if (!json_is_array(v)) return bad(err, key, "expected an array");
        size_t n = json_array_size(v);
        if (n != d->dim)
            return rk_err_set(err, RK_EPARSE,
                              "field '%s': expected %u numbers, got %zu", key,
                              d->dim, n);
        float *f = rk_arena_alloc(&p->arena, (n + 1) * sizeof *f);
        if (!f) return rk_err_set(err, RK_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            double x;
            int rc = json_num(key, json_array_get(v, i), &x, err);
            if (rc) return rc;
            if (fabs(x) > 3.4e38) return bad(err, key, "out of float range");
            f[i] = (float)x;
        }
        a->vec = f;
        a->dim = d->dim;
        return 0;
    }
    }
    return bad(err, key, "unsupported type");
}

static int entity_attr(rk_io_parser *p, const char *key, json_t *v,
                       rk_attr_in *attrs, size_t *na, rk_err *err)
{
    char show[48];
    const char *ename = rk_entity_name(p->entity);
    uint32_t idx;
    if (rk_schema_find_attr(p->schema, p->entity, key, strlen(key), &idx) != 0)
        return rk_err_set(err, RK_EPARSE,
                          "unknown attribute '%s' for %s (declare it under "
                          "entities.%s.attributes)",
                          rk__io_show(key, strlen(key), show), ename, ename);
    const rk_attr_def *d = rk_schema_attr(p->schema, p->entity, idx);
    for (size_t i = 0; i < *na; i++)
        if (attrs[i].name == d->name)
            return rk_err_set(err, RK_EPARSE, "attribute '%s' given twice",
                              d->name);
    if (json_is_null(v)) return 0;
    rk_attr_in *a = &attrs[*na];
    memset(a, 0, sizeof *a);
    int rc = attr_value(p, d, v, a, err);
    if (rc) return rc;
    (*na)++;
    return 0;
}

static int entity(rk_io_parser *p, json_t *o, rk_io_record *out, rk_err *err)
{
    json_t *attrs_obj = json_object_get(o, "attributes");
    size_t cap = json_object_size(o) +
                 (json_is_object(attrs_obj) ? json_object_size(attrs_obj) : 0);
    rk_attr_in *attrs = rk_arena_alloc(&p->arena, (cap + 1) * sizeof *attrs);
    if (!attrs) return rk_err_set(err, RK_ENOMEM, "jsonl: out of memory");
    rk_io_entity *e = &out->entity;
    e->entity = p->entity;
    e->hidden = -1;
    size_t na = 0;
    const char *key;
    json_t *v;
    int rc;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "id") == 0) {
            rc = json_id(p, key, v, &e->id, err);
        } else if (strcmp(key, "hidden") == 0 || strcmp(key, "deleted") == 0) {
            if (json_is_null(v)) continue;
            if (!json_is_boolean(v)) return bad(err, key, "expected a boolean");
            if (key[0] == 'h') e->hidden = json_is_true(v);
            else e->deleted = json_is_true(v);
            rc = 0;
        } else if (strcmp(key, "attributes") == 0) {
            if (json_is_null(v)) continue;
            if (!json_is_object(v)) return bad(err, key, "expected an object");
            const char *k2;
            json_t *v2;
            rc = 0;
            json_object_foreach(v, k2, v2) {
                if ((rc = entity_attr(p, k2, v2, attrs, &na, err))) break;
            }
        } else {
            rc = entity_attr(p, key, v, attrs, &na, err);
        }
        if (rc) return rc;
    }
    if (!e->id) return rk_err_set(err, RK_EPARSE, "missing field 'id'");
    if (e->deleted && (na || e->hidden >= 0))
        return rk_err_set(err, RK_EPARSE,
                          "a deleted %s cannot carry attributes or hidden",
                          rk_entity_name(p->entity));
    e->attrs = attrs;
    e->nattrs = na;
    out->type = RK_IO_REC_ENTITY;
    return 0;
}

/* {"<idx>": value, ...} with strictly increasing indexes. */
static int sparse(rk_io_parser *p, const char *key, json_t *v, int cat,
                  rk_row_in *row, rk_err *err)
{
    if (!json_is_object(v)) return bad(err, key, "expected an object");
    size_t n = json_object_size(v);
    uint32_t *idx = rk_arena_alloc(&p->arena, (n + 1) * sizeof *idx);
    double *nv = cat ? NULL : rk_arena_alloc(&p->arena, (n + 1) * sizeof *nv);
    const char **cv = cat ? rk_arena_alloc(&p->arena, (n + 1) * sizeof *cv) : NULL;
    size_t *cl = cat ? rk_arena_alloc(&p->arena, (n + 1) * sizeof *cl) : NULL;
    if (!idx || (!cat && !nv) || (cat && (!cv || !cl)))
        return rk_err_set(err, RK_ENOMEM, "jsonl: out of memory");
    char show[48];
    size_t k = 0;
    const char *ik;
    json_t *iv;
    json_object_foreach(v, ik, iv) {
        uint64_t i;
        if (rk_parse_u64(ik, strlen(ik), &i) != 0 || i > UINT32_MAX)
            return rk_err_set(err, RK_EPARSE, "field '%s': bad index '%s'", key,
                              rk__io_show(ik, strlen(ik), show));
        if (k && i <= idx[k - 1])
            return rk_err_set(err, RK_EPARSE,
                              "field '%s': indexes must increase", key);
        idx[k] = (uint32_t)i;
        int rc;
        if (cat) {
            if (!json_is_string(iv)) return bad(err, key, "expected strings");
            cl[k] = json_string_length(iv);
            rc = rk__io_id(p, key, json_string_value(iv), cl[k], &cv[k], err);
        } else {
            rc = json_num(key, iv, &nv[k], err);
        }
        if (rc) return rc;
        k++;
    }
    if (cat) {
        row->ncat = (uint32_t)k;
        row->cat_idx = idx;
        row->cat_val = cv;
        row->cat_len = cl;
    } else {
        row->nnum = (uint32_t)k;
        row->num_idx = idx;
        row->num_val = nv;
    }
    return 0;
}

static int row(rk_io_parser *p, json_t *o, rk_io_record *out, rk_err *err)
{
    rk_row_in *r = &out->row;
    int have_label = 0;
    const char *key;
    json_t *v;
    char show[48];
    json_object_foreach(o, key, v) {
        int rc;
        if (json_is_null(v)) continue;
        if (strcmp(key, "label") == 0) {
            rc = json_num(key, v, &r->label, err);
            have_label = 1;
        } else if (strcmp(key, "group") == 0) {
            rc = json_id(p, key, v, &r->group, err);
            if (!rc) r->group_len = strlen(r->group);
        } else if (strcmp(key, "dataset") == 0) {
            rc = json_id(p, key, v, &out->dataset, err);
        } else if (strcmp(key, "num") == 0) {
            rc = sparse(p, key, v, 0, r, err);
        } else if (strcmp(key, "cat") == 0) {
            rc = sparse(p, key, v, 1, r, err);
        } else {
            return rk_err_set(err, RK_EPARSE,
                              "unknown field '%s' (expected label, group, num, "
                              "cat, dataset)",
                              rk__io_show(key, strlen(key), show));
        }
        if (rc) return rc;
    }
    if (!have_label) return rk_err_set(err, RK_EPARSE, "missing field 'label'");
    out->type = RK_IO_REC_ROW;
    return 0;
}

static int parse_object(rk_io_parser *p, json_t *o, rk_io_record *out,
                        rk_err *err)
{
    if (!json_is_object(o))
        return rk_err_set(err, RK_EPARSE, "expected a JSON object");
    switch (p->kind) {
    case RK_KIND_EVENTS: return event(p, o, out, err);
    case RK_KIND_ROWS: return row(p, o, out, err);
    default: return entity(p, o, out, err);
    }
}

int rk_io_parse_json(rk_io_parser *p, const struct json_t *obj,
                     rk_io_record *out, rk_err *err)
{
    if (!p || !obj || !out || p->fmt != RK_FMT_JSONL)
        return rk_err_set(err, RK_EINVAL, "parse_json: needs a jsonl parser");
    rk_arena_reset(&p->arena);
    memset(out, 0, sizeof *out);
    p->nrec++;
    /* jansson's accessors take non-const pointers; nothing is modified. */
    return parse_object(p, (json_t *)obj, out, err);
}

int rk__io_parse_jsonl(rk_io_parser *p, const char *rec, size_t len,
                       rk_io_record *out, rk_err *err)
{
    size_t i = 0;
    while (i < len && (rec[i] == ' ' || rec[i] == '\t')) i++;
    if (i == len) return 0; /* blank line */
    json_error_t jerr;
    json_t *o = json_loadb(rec, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return rk_err_set(err, RK_EPARSE, "bad JSON at column %d: %s",
                          jerr.column, jerr.text);
    int rc = parse_object(p, o, out, err);
    json_decref(o);
    return rc;
}
