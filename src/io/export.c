/*
 * export.c — writes events, users, items or dataset rows as JSON lines that
 * the jsonl importer reads back.
 *
 * Everything comes from one reader snapshot, so an export is consistent
 * even while imports run. Lines are built in a buffer and written in large
 * chunks; numbers use the shortest text that reads back to the same value
 * and times the exact "YYYY-MM-DDTHH:MM:SS.mmmZ" form, which is what makes
 * export -> import -> export byte-identical.
 */
#include <string.h>

#include "io_int.h"

#define FLUSH_AT (1u << 20)

typedef struct exp_ctx {
    rk_reader *r;
    const rk_schema *schema;
    FILE *out;
    rk_buf b;
    rk_entity entity;
    const char *dataset;   /* rows: written as "dataset" when set */
    int rc;
    rk_err *err;
} exp_ctx;

static int put_str(rk_buf *b, const char *s, size_t n)
{
    return rk_buf_put_json_str(b, s, n);
}

static int put_key(rk_buf *b, const char *k, int first)
{
    int rc = first ? 0 : rk_buf_putc(b, ',');
    rc = rc ? rc : put_str(b, k, strlen(k));
    return rc ? rc : rk_buf_putc(b, ':');
}

static int put_time(rk_buf *b, int64_t ms)
{
    char t[32];
    rk_format_time_ms(ms, t);
    return put_str(b, t, strlen(t));
}

/* Ends a line and writes the buffer out when it is large. */
static int end_line(exp_ctx *x)
{
    int rc = rk_buf_puts(&x->b, "}\n");
    if (rc) return rk_err_set(x->err, rc, "export: out of memory");
    if (x->b.len >= FLUSH_AT) {
        if (fwrite(x->b.data, 1, x->b.len, x->out) != x->b.len)
            return rk_err_set(x->err, RK_EIO, "export: write failed");
        rk_buf_reset(&x->b);
    }
    return 0;
}

static int external(exp_ctx *x, rk_entity e, uint32_t id)
{
    const char *s;
    size_t n;
    int rc = rk_reader_external(x->r, e, id, &s, &n);
    if (rc)
        return rk_err_set(x->err, rc, "export: no external id for %s %u: %s",
                          rk_entity_name(e), id, rk_reader_errmsg(x->r));
    return put_str(&x->b, s, n);
}

static int on_event(void *arg, const rk_event *ev)
{
    exp_ctx *x = arg;
    rk_buf *b = &x->b;
    const rk_event_type_def *t = rk_schema_event_type(x->schema, ev->type);
    if (!t) {
        x->rc = rk_err_set(x->err, RK_ECORRUPT,
                           "export: event %llu has unknown type %u",
                           (unsigned long long)ev->seq, ev->type);
        return 1;
    }
    int rc = rk_buf_putc(b, '{');
    rc = rc ? rc : put_key(b, "type", 1);
    rc = rc ? rc : put_str(b, t->name, strlen(t->name));
    rc = rc ? rc : put_key(b, "user", 0);
    rc = rc ? rc : external(x, RK_ENTITY_USER, ev->user);
    rc = rc ? rc : put_key(b, "item", 0);
    rc = rc ? rc : external(x, RK_ENTITY_ITEM, ev->item);
    rc = rc ? rc : put_key(b, "ts", 0);
    rc = rc ? rc : put_time(b, ev->ts_ms);
    if (ev->has_value) {
        rc = rc ? rc : put_key(b, "value", 0);
        rc = rc ? rc : rk__io_put_double(b, ev->value);
    }
    if (ev->position >= 0) {
        rc = rc ? rc : put_key(b, "position", 0);
        rc = rc ? rc : rk_buf_printf(b, "%d", (int)ev->position);
    }
    if (ev->request_id) {
        rc = rc ? rc : put_key(b, "request_id", 0);
        rc = rc ? rc : put_str(b, ev->request_id, ev->request_id_len);
    }
    if (ev->context) {
        /* Stored compacted by the importer, so it is copied verbatim. */
        rc = rc ? rc : put_key(b, "context", 0);
        rc = rc ? rc : rk_buf_append(b, ev->context, ev->context_len);
    }
    if (ev->id) {
        /* The dedup id travels along, so importing an export into a store
         * that already holds those events adds nothing. */
        rc = rc ? rc : put_key(b, "id", 0);
        rc = rc ? rc : put_str(b, ev->id, ev->id_len);
    }
    if (rc) {
        x->rc = x->err && x->err->code ? x->err->code
                                       : rk_err_set(x->err, rc, "export: %s",
                                                    rk_strerror(rc));
        return 1;
    }
    if ((x->rc = end_line(x))) return 1;
    return 0;
}

static int put_attr(rk_buf *b, const rk_attr_val *a)
{
    int rc = 0;
    switch (a->type) {
    case RK_ATTR_NUMERIC:
        return rk__io_put_double(b, a->num);
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT:
        return put_str(b, a->str, a->len);
    case RK_ATTR_CATEGORICAL_LIST:
        rc = rk_buf_putc(b, '[');
        for (uint32_t i = 0; i < a->n && !rc; i++) {
            if (i) rc = rk_buf_putc(b, ',');
            rc = rc ? rc : put_str(b, a->list[i], a->list_lens[i]);
        }
        return rc ? rc : rk_buf_putc(b, ']');
    case RK_ATTR_TIMESTAMP:
        return put_time(b, a->ts_ms);
    case RK_ATTR_VECTOR:
        rc = rk_buf_putc(b, '[');
        for (uint32_t i = 0; i < a->dim && !rc; i++) {
            if (i) rc = rk_buf_putc(b, ',');
            rc = rc ? rc : rk__io_put_float(b, a->vec[i]);
        }
        return rc ? rc : rk_buf_putc(b, ']');
    }
    return RK_EINTERNAL;
}

static int on_entity(void *arg, const rk_entity_view *v)
{
    exp_ctx *x = arg;
    rk_buf *b = &x->b;
    int rc = rk_buf_putc(b, '{');
    rc = rc ? rc : put_key(b, "id", 1);
    rc = rc ? rc : external(x, x->entity, v->id);
    if (v->flags & RK_ENTITY_DELETED) {
        rc = rc ? rc : put_key(b, "deleted", 0);
        rc = rc ? rc : rk_buf_puts(b, "true");
    } else {
        if (v->flags & RK_ENTITY_HIDDEN) {
            rc = rc ? rc : put_key(b, "hidden", 0);
            rc = rc ? rc : rk_buf_puts(b, "true");
        }
        rc = rc ? rc : put_key(b, "attributes", 0);
        rc = rc ? rc : rk_buf_putc(b, '{');
        for (uint32_t i = 0; i < v->nattrs && !rc; i++) {
            const rk_attr_def *d =
                rk_schema_attr(x->schema, x->entity, v->attrs[i].attr);
            if (!d) {
                rc = RK_ECORRUPT;
                break;
            }
            rc = put_key(b, d->name, i == 0);
            rc = rc ? rc : put_attr(b, &v->attrs[i]);
        }
        rc = rc ? rc : rk_buf_putc(b, '}');
    }
    if (rc) {
        x->rc = x->err && x->err->code ? x->err->code
                                       : rk_err_set(x->err, rc, "export: %s",
                                                    rk_strerror(rc));
        return 1;
    }
    if ((x->rc = end_line(x))) return 1;
    return 0;
}

static int on_row(void *arg, const rk_row *row)
{
    exp_ctx *x = arg;
    rk_buf *b = &x->b;
    int rc = rk_buf_putc(b, '{');
    int first = 1;
    if (x->dataset) {
        rc = rc ? rc : put_key(b, "dataset", 1);
        rc = rc ? rc : put_str(b, x->dataset, strlen(x->dataset));
        first = 0;
    }
    rc = rc ? rc : put_key(b, "label", first);
    rc = rc ? rc : rk__io_put_double(b, row->label);
    if (row->group) {
        rc = rc ? rc : put_key(b, "group", 0);
        rc = rc ? rc : put_str(b, row->group, row->group_len);
    }
    if (row->nnum) {
        rc = rc ? rc : put_key(b, "num", 0);
        rc = rc ? rc : rk_buf_putc(b, '{');
        for (uint32_t i = 0; i < row->nnum && !rc; i++) {
            rc = rk_buf_printf(b, "%s\"%u\":", i ? "," : "", row->num_idx[i]);
            rc = rc ? rc : rk__io_put_double(b, row->num_val[i]);
        }
        rc = rc ? rc : rk_buf_putc(b, '}');
    }
    if (row->ncat) {
        rc = rc ? rc : put_key(b, "cat", 0);
        rc = rc ? rc : rk_buf_putc(b, '{');
        for (uint32_t i = 0; i < row->ncat && !rc; i++) {
            rc = rk_buf_printf(b, "%s\"%u\":", i ? "," : "", row->cat_idx[i]);
            rc = rc ? rc : put_str(b, row->cat_val[i], row->cat_len[i]);
        }
        rc = rc ? rc : rk_buf_putc(b, '}');
    }
    if (rc) {
        x->rc = rk_err_set(x->err, rc, "export: %s", rk_strerror(rc));
        return 1;
    }
    if ((x->rc = end_line(x))) return 1;
    return 0;
}

typedef RK_VEC(char *) name_vec;

static int on_dataset(void *arg, const char *name, uint64_t rows)
{
    (void)rows;
    name_vec *v = arg;
    char *d = rk_strdup(name);
    if (!d || rk_vec_push(v, d)) {
        rk_free(d);
        return RK_ENOMEM;
    }
    return 0;
}

int rk_export_jsonl(rk_store *s, const char *what, const char *dataset,
                    FILE *out, rk_err *err)
{
    int kind;
    if (!what) what = "";
    if (strcmp(what, "events") == 0) kind = 0;
    else if (strcmp(what, "users") == 0) kind = 1;
    else if (strcmp(what, "items") == 0) kind = 2;
    else if (strcmp(what, "rows") == 0) kind = 3;
    else
        return rk_err_set(err, RK_EINVAL,
                          "export: unknown '%s' (expected events, users, "
                          "items or rows)",
                          what);
    exp_ctx x;
    memset(&x, 0, sizeof x);
    x.out = out;
    x.err = err;
    x.schema = rk_store_schema(s);
    rk_buf_init(&x.b, 0);
    int rc = rk_store_reader(s, &x.r, err);
    if (rc) return rc;
    if (err) rk_err_clear(err);
    switch (kind) {
    case 0:
        rc = rk_reader_scan_events(x.r, 0, on_event, &x);
        break;
    case 1:
    case 2:
        x.entity = kind == 1 ? RK_ENTITY_USER : RK_ENTITY_ITEM;
        rc = rk_reader_scan_entities(x.r, x.entity, on_entity, &x);
        break;
    default:
        if (dataset) {
            rc = rk_reader_scan_rows(x.r, dataset, on_row, &x);
            if (rc == RK_ENOTFOUND && !x.rc)
                rc = rk_err_set(err, RK_ENOTFOUND,
                                "export: no dataset '%s'", dataset);
        } else {
            /* Names first: a scan inside another scan's callback would
             * share the reader's cursors. */
            name_vec names = {0};
            rc = rk_reader_scan_datasets(x.r, on_dataset, &names);
            for (size_t i = 0; i < names.n && !rc && !x.rc; i++) {
                x.dataset = names.v[i];
                rc = rk_reader_scan_rows(x.r, names.v[i], on_row, &x);
            }
            for (size_t i = 0; i < names.n; i++) rk_free(names.v[i]);
            rk_vec_free(&names);
            if (rc == RK_ENOMEM && !x.rc)
                rc = rk_err_set(err, RK_ENOMEM, "export: out of memory");
        }
        break;
    }
    if (x.rc) {
        rc = x.rc;
    } else if (rc == 1) {
        rc = rk_err_set(err, RK_EINTERNAL, "export: scan stopped");
    } else if (rc < 0 && (!err || !err->code)) {
        rk_err_set(err, rc, "export: %s", rk_reader_errmsg(x.r));
    }
    if (!rc && x.b.len && fwrite(x.b.data, 1, x.b.len, out) != x.b.len)
        rc = rk_err_set(err, RK_EIO, "export: write failed");
    if (!rc && fflush(out) != 0)
        rc = rk_err_set(err, RK_EIO, "export: write failed");
    rk_buf_free(&x.b);
    rk_reader_close(x.r);
    return rc;
}
