/*
 * csv.c — the RFC 4180 tokenizer and the generic CSV/TSV formats.
 *
 * The tokenizer copies each field, unquoted and NUL-terminated, into one
 * buffer sized for the worst case (every byte a field), so a split does at
 * most one allocation and fields can be handed to the store as C strings.
 *
 * The generic formats start with a header row. For events it names columns
 * from {type,user,item,ts,value,request_id,position,context,id}; for users
 * and items it is `id` plus declared attribute names (plus `hidden`). A bad
 * header is remembered and fails every later record with the same message,
 * because no row of such a file could be imported correctly.
 */
#include <string.h>

#include "io_int.h"

const char *const rk__io_event_cols[RK__EV_NCOLS] = {
    "type", "user", "item", "ts", "value", "request_id", "position",
    "context", "id"};

void rk_csv_init(rk_csv *c, char sep, int quotes)
{
    memset(c, 0, sizeof *c);
    c->sep = sep;
    c->quotes = quotes;
}

void rk_csv_free(rk_csv *c)
{
    rk_free(c->buf);
    rk_free(c->f);
    rk_free(c->len);
    c->buf = NULL;
    c->f = NULL;
    c->len = NULL;
    c->n = c->cap = c->bufcap = 0;
}

static int push_field(rk_csv *c, char *start, size_t len, rk_err *err)
{
    if (c->n == c->cap) {
        if (c->cap >= RK_IO_MAX_FIELDS)
            return rk_err_set(err, RK_EPARSE, "more than %d fields",
                              RK_IO_MAX_FIELDS);
        size_t ncap = c->cap ? c->cap * 2 : 64;
        if (ncap > RK_IO_MAX_FIELDS) ncap = RK_IO_MAX_FIELDS;
        char **nf = rk_realloc(c->f, ncap * sizeof *nf);
        if (!nf) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
        c->f = nf;
        size_t *nl = rk_realloc(c->len, ncap * sizeof *nl);
        if (!nl) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
        c->len = nl;
        c->cap = ncap;
    }
    start[len] = '\0';
    c->f[c->n] = start;
    c->len[c->n] = len;
    c->n++;
    return 0;
}

int rk_csv_split(rk_csv *c, const char *s, size_t n, rk_err *err)
{
    /* Worst case: n bytes of data plus one NUL per field (<= n + 1). */
    size_t need = 2 * n + 2;
    if (need > c->bufcap) {
        char *nb = rk_realloc(c->buf, need);
        if (!nb) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
        c->buf = nb;
        c->bufcap = need;
    }
    c->n = 0;
    char *out = c->buf;
    size_t i = 0;
    for (;;) {
        char *start = out;
        if (c->quotes && i < n && s[i] == '"') {
            size_t open = i++;
            for (;;) {
                if (i >= n)
                    return rk_err_set(err, RK_EPARSE,
                                      "unterminated quoted field (field %zu, "
                                      "opened at byte %zu)",
                                      c->n + 1, open + 1);
                /* Copy the run up to the next quote in one go. */
                const char *q = memchr(s + i, '"', n - i);
                size_t run = q ? (size_t)(q - (s + i)) : n - i;
                memcpy(out, s + i, run);
                out += run;
                i += run;
                if (i >= n) continue;
                if (i + 1 < n && s[i + 1] == '"') {
                    *out++ = '"';
                    i += 2;
                    continue;
                }
                i++; /* closing quote */
                break;
            }
            if (i < n && s[i] != c->sep)
                return rk_err_set(err, RK_EPARSE,
                                  "unexpected character after closing quote "
                                  "(field %zu, byte %zu)",
                                  c->n + 1, i + 1);
        } else {
            const char *e = i < n ? memchr(s + i, c->sep, n - i) : NULL;
            size_t run = e ? (size_t)(e - (s + i)) : n - i;
            memcpy(out, s + i, run);
            out += run;
            i += run;
        }
        int rc = push_field(c, start, (size_t)(out - start), err);
        if (rc) return rc;
        out++; /* past the NUL */
        if (i >= n) break;
        i++; /* separator; a trailing one makes a final empty field */
        if (i == n) {
            rc = push_field(c, out, 0, err);
            if (rc) return rc;
            break;
        }
    }
    return 0;
}

/* ---- generic CSV/TSV -------------------------------------------------- */

static int header_fail(rk_io_parser *p, rk_err *err, const char *msg)
{
    snprintf(p->header_msg, sizeof p->header_msg, "header: %.400s", msg);
    p->header_bad = 1;
    return rk_err_set(err, RK_EINVAL, "%s", p->header_msg);
}

static void trim(const char **s, size_t *n)
{
    while (*n && ((*s)[0] == ' ')) {
        (*s)++;
        (*n)--;
    }
    while (*n && (*s)[*n - 1] == ' ') (*n)--;
}

static int events_header(rk_io_parser *p, rk_err *err)
{
    char show[48];
    for (int k = 0; k < RK__EV_NCOLS; k++) p->evcol[k] = -1;
    for (size_t i = 0; i < p->csv.n; i++) {
        const char *name = p->csv.f[i];
        size_t n = p->csv.len[i];
        trim(&name, &n);
        int k = 0;
        while (k < RK__EV_NCOLS && !rk__io_eq(name, n, rk__io_event_cols[k]))
            k++;
        char msg[200];
        if (k == RK__EV_NCOLS) {
            snprintf(msg, sizeof msg,
                     "unknown column '%s' (expected columns from type, user, "
                     "item, ts, value, request_id, position, context, id)",
                     rk__io_show(name, n, show));
            return header_fail(p, err, msg);
        }
        if (p->evcol[k] >= 0) {
            snprintf(msg, sizeof msg, "duplicate column '%s'",
                     rk__io_event_cols[k]);
            return header_fail(p, err, msg);
        }
        p->evcol[k] = (int)i;
    }
    static const int required[] = {RK__EV_TYPE, RK__EV_USER, RK__EV_ITEM,
                                   RK__EV_TS};
    for (size_t r = 0; r < sizeof required / sizeof required[0]; r++) {
        if (p->evcol[required[r]] < 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "missing required column '%s'",
                     rk__io_event_cols[required[r]]);
            return header_fail(p, err, msg);
        }
    }
    p->ncols = p->csv.n;
    return 0;
}

static int entity_header(rk_io_parser *p, rk_err *err)
{
    char show[48];
    rk_free(p->cols);
    p->ncols = 0;
    p->cols = rk_malloc(p->csv.n * sizeof *p->cols);
    if (!p->cols) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
    p->ncols = p->csv.n;
    int have_id = 0;
    const char *ename = rk_entity_name(p->entity);
    for (size_t i = 0; i < p->csv.n; i++) {
        const char *name = p->csv.f[i];
        size_t n = p->csv.len[i];
        trim(&name, &n);
        int role;
        uint32_t idx;
        if (rk__io_eq(name, n, "id")) {
            role = RK__COL_ID;
        } else if (rk__io_eq(name, n, "hidden")) {
            role = RK__COL_HIDDEN;
        } else if (rk_schema_find_attr(p->schema, p->entity, name, n, &idx) ==
                   0) {
            role = (int)idx;
        } else {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "unknown attribute '%s' for %s (declare it under "
                     "entities.%s.attributes)",
                     rk__io_show(name, n, show), ename, ename);
            return header_fail(p, err, msg);
        }
        for (size_t j = 0; j < i; j++) {
            if (p->cols[j] == role) {
                char msg[96];
                snprintf(msg, sizeof msg, "duplicate column '%s'",
                         rk__io_show(name, n, show));
                return header_fail(p, err, msg);
            }
        }
        if (role == RK__COL_ID) have_id = 1;
        p->cols[i] = role;
    }
    if (!have_id) return header_fail(p, err, "missing required column 'id'");
    return 0;
}

static int csv_event(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_event_in *ev = rk_arena_alloc(&p->arena, sizeof *ev);
    if (!ev) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
    memset(ev, 0, sizeof *ev);
    ev->position = -1;
    const char *v[RK__EV_NCOLS];
    size_t n[RK__EV_NCOLS];
    for (int k = 0; k < RK__EV_NCOLS; k++) {
        int c = p->evcol[k];
        v[k] = c >= 0 ? p->csv.f[c] : "";
        n[k] = c >= 0 ? p->csv.len[c] : 0;
    }
    int rc;
    char show[48];
    if (n[RK__EV_TYPE] == 0)
        return rk_err_set(err, RK_EPARSE, "column 'type': empty");
    if (p->schema) {
        uint32_t idx;
        if (rk_schema_find_event_type(p->schema, v[RK__EV_TYPE], n[RK__EV_TYPE],
                                      &idx) != 0)
            return rk_err_set(err, RK_EPARSE,
                              "column 'type': unknown event type '%s' "
                              "(declare it under events:)",
                              rk__io_show(v[RK__EV_TYPE], n[RK__EV_TYPE], show));
    }
    if ((rc = rk__io_id(p, "type", v[RK__EV_TYPE], n[RK__EV_TYPE], &ev->type,
                        err)) ||
        (rc = rk__io_id(p, "user", v[RK__EV_USER], n[RK__EV_USER], &ev->user,
                        err)) ||
        (rc = rk__io_id(p, "item", v[RK__EV_ITEM], n[RK__EV_ITEM], &ev->item,
                        err)))
        return rc;
    if (n[RK__EV_TS] == 0)
        return rk_err_set(err, RK_EPARSE, "column 'ts': empty");
    if ((rc = rk__io_time("ts", v[RK__EV_TS], n[RK__EV_TS], &ev->ts_ms, err)))
        return rc;
    if (ev->ts_ms < 0)
        return rk_err_set(err, RK_EPARSE, "column 'ts': before 1970");
    if (n[RK__EV_VALUE]) {
        if ((rc = rk__io_f64("value", v[RK__EV_VALUE], n[RK__EV_VALUE],
                             &ev->value, err)))
            return rc;
        ev->has_value = 1;
    }
    if (n[RK__EV_POSITION]) {
        int64_t pos;
        if ((rc = rk__io_i64("position", v[RK__EV_POSITION],
                             n[RK__EV_POSITION], &pos, err)))
            return rc;
        if (pos < 0 || pos > INT32_MAX)
            return rk_err_set(err, RK_EPARSE,
                              "column 'position': out of range '%s'",
                              rk__io_show(v[RK__EV_POSITION],
                                          n[RK__EV_POSITION], show));
        ev->position = (int32_t)pos;
    }
    if (n[RK__EV_REQUEST_ID] &&
        (rc = rk__io_id(p, "request_id", v[RK__EV_REQUEST_ID],
                        n[RK__EV_REQUEST_ID], &ev->request_id, err)))
        return rc;
    if (n[RK__EV_CONTEXT] &&
        (rc = rk__io_context(p, "context", v[RK__EV_CONTEXT],
                             n[RK__EV_CONTEXT], &ev->context,
                             &ev->context_len, err)))
        return rc;
    if (n[RK__EV_ID] &&
        (rc = rk__io_id(p, "id", v[RK__EV_ID], n[RK__EV_ID], &ev->id, err)))
        return rc;
    out->type = RK_IO_REC_EVENTS;
    out->events = ev;
    out->nevents = 1;
    return 0;
}

static int parse_bool(const char *col, const char *s, size_t n, int *out,
                      rk_err *err)
{
    char show[48];
    if (rk__io_eq(s, n, "1") || rk__io_eq(s, n, "true") ||
        rk__io_eq(s, n, "yes"))
        *out = 1;
    else if (rk__io_eq(s, n, "0") || rk__io_eq(s, n, "false") ||
             rk__io_eq(s, n, "no"))
        *out = 0;
    else
        return rk_err_set(err, RK_EPARSE,
                          "column '%s': expected true or false, got '%s'", col,
                          rk__io_show(s, n, show));
    return 0;
}

static int csv_entity(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_attr_in *attrs = rk_arena_alloc(&p->arena, p->ncols * sizeof *attrs + 1);
    if (!attrs) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
    rk_io_entity *e = &out->entity;
    memset(e, 0, sizeof *e);
    e->entity = p->entity;
    e->hidden = -1;
    size_t na = 0;
    int rc;
    for (size_t i = 0; i < p->ncols; i++) {
        const char *s = p->csv.f[i];
        size_t n = p->csv.len[i];
        int role = p->cols[i];
        if (role == RK__COL_ID) {
            if ((rc = rk__io_id(p, "id", s, n, &e->id, err))) return rc;
            continue;
        }
        if (n == 0) continue; /* empty cell: attribute absent */
        if (role == RK__COL_HIDDEN) {
            if ((rc = parse_bool("hidden", s, n, &e->hidden, err))) return rc;
            continue;
        }
        const rk_attr_def *d = rk_schema_attr(p->schema, p->entity,
                                              (uint32_t)role);
        rk_attr_in *a = &attrs[na];
        memset(a, 0, sizeof *a);
        a->name = d->name;
        a->type = d->type;
        switch (d->type) {
        case RK_ATTR_NUMERIC:
            rc = rk__io_f64(d->name, s, n, &a->num, err);
            break;
        case RK_ATTR_CATEGORICAL:
        case RK_ATTR_TEXT:
            rc = rk__io_text(p, d->name, s, n, RK_MAX_TEXT, &a->str, err);
            a->len = n;
            break;
        case RK_ATTR_CATEGORICAL_LIST:
            rc = rk__io_list(p, d->name, s, n, '|', &a->list, &a->list_lens,
                             &a->n, err);
            break;
        case RK_ATTR_TIMESTAMP:
            rc = rk__io_time(d->name, s, n, &a->ts_ms, err);
            break;
        case RK_ATTR_VECTOR:
            rc = rk__io_vector(p, d->name, s, n, d->dim, &a->vec, err);
            a->dim = d->dim;
            break;
        default:
            rc = rk_err_set(err, RK_EPARSE, "column '%s': unsupported type",
                            d->name);
        }
        if (rc) return rc;
        na++;
    }
    e->attrs = attrs;
    e->nattrs = na;
    out->type = RK_IO_REC_ENTITY;
    return 0;
}

/* ---- rows ---------------------------------------------------------------- */

/* Is column `name` (or, by position, `pos`) in the comma-separated list? */
static int in_list(const char *list, const char *name, size_t n, size_t pos)
{
    if (!list) return 0;
    char num[24];
    int nl = snprintf(num, sizeof num, "%zu", pos);
    for (const char *s = list; *s;) {
        const char *e = strchr(s, ',');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        const char *t = s;
        trim(&t, &l);
        if ((name && l == n && memcmp(t, name, n) == 0) ||
            (l == (size_t)nl && memcmp(t, num, l) == 0))
            return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

/* Assigns every column its role from the header (or positions). */
static int rows_header(rk_io_parser *p, int named, rk_err *err)
{
    rk_free(p->cols);
    p->ncols = 0;
    p->cols = rk_malloc(p->csv.n * sizeof *p->cols);
    if (!p->cols) return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
    p->ncols = p->csv.n;
    const char *label = p->rows_label ? p->rows_label : named ? "label" : "0";
    int all_cat = p->rows_cat && strcmp(p->rows_cat, "all") == 0;
    int have_label = 0, have_group = 0;
    for (size_t i = 0; i < p->csv.n; i++) {
        const char *name = named ? p->csv.f[i] : NULL;
        size_t n = named ? p->csv.len[i] : 0;
        if (name) trim(&name, &n);
        int role;
        if (in_list(label, name, n, i) && !have_label) {
            role = RK__ROWCOL_LABEL;
            have_label = 1;
        } else if (p->rows_group && in_list(p->rows_group, name, n, i) &&
                   !have_group) {
            role = RK__ROWCOL_GROUP;
            have_group = 1;
        } else if (in_list(p->rows_ignore, name, n, i)) {
            role = RK__ROWCOL_SKIP;
        } else if (all_cat || in_list(p->rows_cat, name, n, i)) {
            role = RK__ROWCOL_CAT;
        } else {
            role = RK__ROWCOL_NUM;
        }
        p->cols[i] = role;
    }
    char msg[200];
    if (!have_label) {
        snprintf(msg, sizeof msg, "no label column '%s' (use --label)", label);
        return header_fail(p, err, msg);
    }
    if (p->rows_group && !have_group) {
        snprintf(msg, sizeof msg, "no group column '%s'", p->rows_group);
        return header_fail(p, err, msg);
    }
    return 0;
}

static int csv_row(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_row_in *r = &out->row;
    size_t nf = p->csv.n;
    uint32_t *ni = rk_arena_alloc(&p->arena, nf * sizeof *ni);
    double *nv = rk_arena_alloc(&p->arena, nf * sizeof *nv);
    uint32_t *ci = rk_arena_alloc(&p->arena, nf * sizeof *ci);
    const char **cv = rk_arena_alloc(&p->arena, nf * sizeof *cv);
    size_t *cl = rk_arena_alloc(&p->arena, nf * sizeof *cl);
    if (!ni || !nv || !ci || !cv || !cl)
        return rk_err_set(err, RK_ENOMEM, "csv: out of memory");
    memset(r, 0, sizeof *r);
    char col[24];
    for (size_t i = 0; i < nf; i++) {
        const char *v = p->csv.f[i];
        size_t n = p->csv.len[i];
        trim(&v, &n);
        snprintf(col, sizeof col, "%zu", i);
        int rc = 0;
        switch (p->cols[i]) {
        case RK__ROWCOL_LABEL:
            if (n >= 2 && v[0] == '\'' && v[n - 1] == '\'') {
                v++;
                n -= 2;
            }
            rc = rk__io_f64(col, v, n, &r->label, err);
            break;
        case RK__ROWCOL_GROUP:
            rc = rk__io_id(p, col, v, n, &r->group, err);
            if (!rc) r->group_len = n;
            break;
        case RK__ROWCOL_NUM:
            if (n == 0) break; /* missing */
            rc = rk__io_f64(col, v, n, &nv[r->nnum], err);
            if (!rc) ni[r->nnum++] = (uint32_t)i;
            break;
        case RK__ROWCOL_CAT:
            if (n == 0) break;
            rc = rk__io_text(p, col, v, n, 1024, &cv[r->ncat], err);
            if (!rc) {
                cl[r->ncat] = n;
                ci[r->ncat++] = (uint32_t)i;
            }
            break;
        default: break;
        }
        if (rc) return rc;
    }
    r->num_idx = ni;
    r->num_val = nv;
    r->cat_idx = ci;
    r->cat_val = cv;
    r->cat_len = cl;
    out->type = RK_IO_REC_ROW;
    return 0;
}

int rk__io_parse_csv(rk_io_parser *p, const char *rec, size_t len,
                     rk_io_record *out, rk_err *err)
{
    if (p->header_bad)
        return rk_err_set(err, RK_EINVAL, "%s", p->header_msg);
    if (len == 0) return 0; /* blank line */
    int rc = rk_csv_split(&p->csv, rec, len, err);
    if (!p->have_header) {
        if (rc) {
            char msg[RK_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", rk_err_msg(err));
            return header_fail(p, err, msg);
        }
        p->have_header = 1;
        if (p->kind == RK_KIND_ROWS) {
            /* Without a header the first record is data: its field count
             * fixes the columns. */
            if ((rc = rows_header(p, !p->rows_no_header, err))) return rc;
            if (!p->rows_no_header) return 0;
        } else {
            return p->kind == RK_KIND_EVENTS ? events_header(p, err)
                                             : entity_header(p, err);
        }
    }
    if (rc) return rc;
    if (p->csv.n != p->ncols)
        return rk_err_set(err, RK_EPARSE, "expected %zu fields, got %zu",
                          p->ncols, p->csv.n);
    if (p->kind == RK_KIND_ROWS) return csv_row(p, out, err);
    return p->kind == RK_KIND_EVENTS ? csv_event(p, out, err)
                                     : csv_entity(p, out, err);
}
