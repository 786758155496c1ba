/*
 * import.c — the import driver: file -> records -> batches -> store.
 *
 * Invariants:
 *  - a record reaches the store whole or not at all. A record that is one
 *    op goes straight into the batch (a failed add leaves the batch as it
 *    was). A record of several ops (a MIND impression, an upsert plus a
 *    hide) is first added to a scratch batch, which validates every op; only
 *    then is it added to the real batch, which is flushed first when the
 *    record would not fit. Both batches encode identically, so the size
 *    check is exact.
 *  - every batch is written with one rk_store_write: all or nothing.
 *  - strict mode never writes anything from a file with a bad record: it
 *    validates the whole file first (same parser, same batch checks, the
 *    scratch batch never written), then reads it again to write.
 */
#include <string.h>

#include "io_int.h"

#define BATCH_MAX_BYTES (64u << 20)

typedef struct imp {
    rk_store *s;
    const char *path;
    const rk_import_opts *o;
    rk_import_stats *st;
    rk_io_reader *rd;
    rk_io_parser *ps;
    rk_batch *b;          /* records go here */
    rk_batch *scratch;    /* multi-op records are tried here first */
    const char *dataset;
    char dataset_buf[RK_NAME_MAX + 1];
    int validating;       /* strict mode's first pass: never write */
    size_t pending;       /* records in b */
    uint64_t shown;
    rk__io_progress pg;
} imp;

void rk_import_opts_default(rk_import_opts *o)
{
    memset(o, 0, sizeof *o);
    o->format = RK_FMT_AUTO;
    o->kind = RK_KIND_EVENTS;
    o->batch_rows = 10000;
    o->max_errors_shown = 20;
}

/* Reports a rejected record; in strict mode's validation pass it is fatal
 * and becomes the call's error. */
static int reject(imp *im, uint64_t line, const char *reason, rk_err *err)
{
    im->st->rejected++;
    if (im->validating)
        return rk_err_set(err, RK_EPARSE, "%s:%llu: %s", im->path,
                          (unsigned long long)line, reason);
    if (im->shown < im->o->max_errors_shown) {
        im->shown++;
        char msg[RK_ERR_MSG_MAX + 300];
        snprintf(msg, sizeof msg, "%s:%llu: %s", im->path,
                 (unsigned long long)line, reason);
        if (im->o->on_error)
            im->o->on_error(im->o->on_error_arg, msg);
        else
            rk_log(im->o->log, RK_LOG_WARN, "import", "%s", msg);
    }
    return 0;
}

static int flush(imp *im, rk_err *err)
{
    if (rk_batch_count(im->b) == 0) {
        im->st->imported += im->pending;
        im->pending = 0;
        return 0;
    }
    if (im->validating) {
        rk_batch_clear(im->b);
        im->pending = 0;
        return 0;
    }
    rk_write_result res;
    memset(&res, 0, sizeof res);
    int rc = rk_store_write(im->s, im->b, &res, err);
    if (rc) return rk_err_prefix(err, "%s: write failed: ", im->path);
    im->st->events += res.events;
    im->st->duplicates += res.duplicates;
    im->st->entities += res.entities;
    im->st->rows += res.rows;
    im->st->imported += im->pending;
    im->pending = 0;
    rk_batch_clear(im->b);
    return 0;
}

/* Adds every op of a record to batch b. */
static int emit(imp *im, rk_batch *b, const rk_io_record *r, rk_err *err)
{
    int rc = 0;
    switch (r->type) {
    case RK_IO_REC_EVENTS:
        for (size_t i = 0; i < r->nevents && !rc; i++)
            rc = rk_batch_event(b, &r->events[i], err);
        return rc;
    case RK_IO_REC_ENTITY: {
        const rk_io_entity *e = &r->entity;
        /* A deleted entity is upserted first so that a delete of an id
         * this store has never seen still leaves its tombstone: exporting
         * and re-importing a store must reproduce deleted ids too. */
        if (e->deleted) {
            rc = rk_batch_upsert(b, e->entity, e->id, NULL, 0, 0, err);
            return rc ? rc : rk_batch_delete(b, e->entity, e->id, err);
        }
        rc = rk_batch_upsert(b, e->entity, e->id, e->attrs, e->nattrs, 0, err);
        if (!rc && e->hidden >= 0)
            rc = rk_batch_hide(b, e->entity, e->id, e->hidden, err);
        return rc;
    }
    case RK_IO_REC_ROW:
        return rk_batch_row(b, r->dataset ? r->dataset : im->dataset, &r->row,
                            err);
    default:
        return 0;
    }
}

static size_t record_ops(const rk_io_record *r)
{
    if (r->type == RK_IO_REC_EVENTS) return r->nevents;
    if (r->type == RK_IO_REC_ENTITY)
        return r->entity.deleted ? 2 : 1 + (r->entity.hidden >= 0);
    return 1;
}

/* Adds one record to the batch whole, or reports why not. Returns 0 when
 * the record was added or rejected, a negative code when the import must
 * stop. */
static int add_record(imp *im, const rk_io_record *r, uint64_t line,
                      rk_err *err)
{
    rk_err e;
    rk_err_clear(&e);
    int rc;
    if (record_ops(r) <= 1) {
        rc = emit(im, im->b, r, &e);
        if (rc == RK_ELIMIT && rk_batch_count(im->b) > 0) {
            if ((rc = flush(im, err))) return rc;
            rk_err_clear(&e);
            rc = emit(im, im->b, r, &e);
        }
    } else {
        rk_batch_clear(im->scratch);
        rc = emit(im, im->scratch, r, &e);
        if (rc == 0 && rk_batch_bytes(im->b) + rk_batch_bytes(im->scratch) >
                           BATCH_MAX_BYTES) {
            if ((rc = flush(im, err))) return rc;
        }
        if (rc == 0) {
            rc = emit(im, im->b, r, &e);
            if (rc) {
                /* Cannot happen after the scratch run; if it ever does, the
                 * batch may hold part of the record, so stop rather than
                 * write half of it. */
                return rk_err_set(err, RK_EINTERNAL,
                                  "%s:%llu: record passed validation but not "
                                  "the batch (%s)",
                                  im->path, (unsigned long long)line,
                                  rk_err_msg(&e));
            }
        }
    }
    if (rc == RK_ENOMEM) return rk_err_set(err, rc, "%s", rk_err_msg(&e));
    if (rc == RK_ELIMIT)
        return reject(im, line, "record too large for one batch", err);
    if (rc) return reject(im, line, rk_err_msg(&e), err);
    im->pending++;
    if (im->pending >= im->o->batch_rows) return flush(im, err);
    return 0;
}

/* One pass over the file. */
static int pass(imp *im, rk_err *err)
{
    const char *rec;
    size_t len;
    uint64_t line;
    rk_io_record r;
    rk_err e;
    uint64_t n = 0;
    const char *phase = im->validating ? "checking" : "importing";
    for (;;) {
        rk_err_clear(&e);
        int rc = rk_io_reader_next(im->rd, &rec, &len, &line, &e);
        if (rc == 0) break;
        if (rc == RK_ELIMIT) {
            im->st->records++;
            if ((rc = reject(im, line, rk_err_msg(&e), err))) return rc;
            continue;
        }
        if (rc < 0) {
            rk_err_set(err, rc, "%s: %s", im->path, rk_err_msg(&e));
            return rc;
        }
        rc = rk_io_parse(im->ps, rec, len, &r, &e);
        if (rc == RK_EINVAL || rc == RK_ENOMEM) /* bad header: stop */
            return rk_err_set(err, rc, "%s:%llu: %s", im->path,
                              (unsigned long long)line, rk_err_msg(&e));
        if (rc == 0 && r.type == RK_IO_REC_SKIP) continue;
        im->st->records++;
        if (rc) {
            if ((rc = reject(im, line, rk_err_msg(&e), err))) return rc;
        } else if ((rc = add_record(im, &r, line, err))) {
            return rc;
        }
        if ((++n & 4095) == 0)
            rk__io_progress_update(&im->pg, rk_io_reader_offset(im->rd),
                                   rk_io_reader_size(im->rd), im->st->records,
                                   im->st->rejected, phase);
    }
    return flush(im, err);
}

/* Declares the attributes a known format writes and checks its event
 * types, before any record is read. */
static int prepare_schema(imp *im, rk_import_format f, rk_err *err)
{
    size_t n;
    const rk_io_attr_need *need = rk_io_format_attrs(f, &n);
    for (size_t i = 0; i < n; i++) {
        int rc = rk_store_declare_attr(im->s, need[i].entity, need[i].name,
                                       need[i].type, 0, err);
        if (rc)
            return rk_err_prefix(err,
                                 "%s: format %s needs %s attribute '%s' "
                                 "(%s): ",
                                 im->path, rk_import_format_name(f),
                                 rk_entity_name(need[i].entity), need[i].name,
                                 rk_attr_type_name(need[i].type));
    }
    const char *const *types = rk_io_format_event_types(f, &n);
    const rk_schema *sc = rk_store_schema(im->s);
    for (size_t i = 0; i < n; i++) {
        uint32_t idx;
        if (rk_schema_find_event_type(sc, types[i], strlen(types[i]), &idx))
            return rk_err_set(err, RK_ECONFIG,
                              "%s: format %s writes events of type '%s', "
                              "which the schema does not declare (add it "
                              "under events: in the config)",
                              im->path, rk_import_format_name(f), types[i]);
    }
    return 0;
}

/* Default dataset: "criteo" for Criteo files, else the file's base name
 * without its extension ("vali" for Fold1/vali.txt). */
static void default_dataset(imp *im, rk_import_format f)
{
    if (im->o->dataset) {
        im->dataset = im->o->dataset;
        return;
    }
    if (f == RK_FMT_CRITEO) {
        im->dataset = "criteo";
        return;
    }
    const char *base = strrchr(im->path, '/');
    base = base ? base + 1 : im->path;
    snprintf(im->dataset_buf, sizeof im->dataset_buf, "%s", base);
    char *dot = strchr(im->dataset_buf, '.');
    if (dot && dot != im->dataset_buf) *dot = '\0';
    if (!im->dataset_buf[0]) snprintf(im->dataset_buf, sizeof im->dataset_buf,
                                      "rows");
    im->dataset = im->dataset_buf;
}

static int detect(const char *path, rk_import_format *f, rk_err *err)
{
    char head[4096];
    size_t n = 0;
    FILE *fp = fopen(path, "rb");
    if (fp) {
        n = fread(head, 1, sizeof head, fp);
        fclose(fp);
    }
    return rk_import_detect(path, head, n, f, err);
}

int rk_import_file(rk_store *s, const char *path, const rk_import_opts *o,
                   rk_import_stats *st, rk_err *err)
{
    rk_import_opts dflt;
    rk_import_stats st_local;
    if (!o) {
        rk_import_opts_default(&dflt);
        o = &dflt;
    }
    if (!st) st = &st_local;
    memset(st, 0, sizeof *st);
    if (!s || !path) return rk_err_set(err, RK_EINVAL, "import: no store or path");
    rk_import_opts opts = *o;
    if (opts.batch_rows == 0) opts.batch_rows = 10000;
    uint64_t t0 = rk_clock_mono_ns();

    imp im;
    memset(&im, 0, sizeof im);
    im.s = s;
    im.path = path;
    im.o = &opts;
    im.st = st;
    int rc = rk_io_reader_open(&im.rd, path, err);
    if (rc) return rc;
    rk_import_format f = opts.format;
    if (f == RK_FMT_AUTO && (rc = detect(path, &f, err))) goto out;
    st->format = f;
    rk_import_kind kind = rk_import_format_kind(f, opts.kind);
    default_dataset(&im, f);
    if ((rc = prepare_schema(&im, f, err))) goto out;
    if ((rc = rk_io_parser_create(&im.ps, f, kind, rk_store_schema(s), err))) {
        rk_err_prefix(err, "%s: ", path);
        goto out;
    }
    if (opts.rows && kind == RK_KIND_ROWS && (f == RK_FMT_CSV || f == RK_FMT_TSV) &&
        (rc = rk_io_parser_set_rows(im.ps, opts.rows, err)))
        goto out;
    rk_io_reader_set_csv(im.rd, rk__io_join_sep(f));
    if ((rc = rk_batch_create(&im.b, s, BATCH_MAX_BYTES)) ||
        (rc = rk_batch_create(&im.scratch, s, BATCH_MAX_BYTES))) {
        rk_err_set(err, rc, "import: out of memory");
        goto out;
    }
    rk__io_progress_start(&im.pg, opts.progress, path);
    if (opts.strict) {
        im.validating = 1;
        rc = pass(&im, err);
        if (rc) goto out;
        im.validating = 0;
        if ((rc = rk_io_reader_rewind(im.rd, err))) goto out;
        rk_io_parser_reset(im.ps);
        memset(st, 0, sizeof *st);
        st->format = f;
        rc = pass(&im, err);
    } else {
        rc = pass(&im, err);
    }
out:
    rk__io_progress_end(&im.pg);
    if (im.rd) st->bytes = rk_io_reader_offset(im.rd);
    st->seconds = (double)(rk_clock_mono_ns() - t0) / 1e9;
    st->records_per_sec =
        st->seconds > 0 ? (double)st->records / st->seconds : 0;
    rk_batch_destroy(im.b);
    rk_batch_destroy(im.scratch);
    rk_io_parser_destroy(im.ps);
    rk_io_reader_close(im.rd);
    return rc;
}
