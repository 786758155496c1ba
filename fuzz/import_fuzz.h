/*
 * import_fuzz.h — the body shared by the fuzz_import_<fmt>.c targets.
 *
 * Splits the input into records with the same reader the import driver
 * uses (so BOM, CRLF, quoted newlines and overlong lines are exercised),
 * parses every record, and checks what must hold for any input: a parse
 * either fails with RK_EPARSE and a message, stops on a bad header with
 * RK_EINVAL, or yields a record whose every string is NUL-terminated valid
 * UTF-8 within the store's limits and whose arrays can be read in full (so
 * sanitizers see any dangling pointer). Nothing may leak: rk_malloc's
 * bytes in use must be back where they started. Then the run is repeated
 * with one allocation failing, chosen from the input, to walk the
 * out-of-memory paths. A broken expectation aborts; libFuzzer reports it.
 */
#ifndef RK_IMPORT_FUZZ_H
#define RK_IMPORT_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_io.h"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

static inline void fz_str(const char *s, size_t max)
{
    FZ_ASSERT(s);
    size_t n = strlen(s);
    FZ_ASSERT(n <= max);
    FZ_ASSERT(rk_utf8_valid_prefix(s, n) == n);
}

static inline void fz_check_record(const rk_io_record *r)
{
    volatile double sink = 0;
    switch (r->type) {
    case RK_IO_REC_SKIP:
        break;
    case RK_IO_REC_EVENTS:
        FZ_ASSERT(r->nevents > 0);
        for (size_t i = 0; i < r->nevents; i++) {
            const rk_event_in *e = &r->events[i];
            fz_str(e->type, RK_NAME_MAX);
            fz_str(e->user, RK_ID_MAX);
            fz_str(e->item, RK_ID_MAX);
            FZ_ASSERT(e->ts_ms >= -1);
            FZ_ASSERT(e->position >= -1);
            if (e->request_id) fz_str(e->request_id, RK_ID_MAX);
            if (e->id) fz_str(e->id, RK_ID_MAX);
            if (e->context) {
                FZ_ASSERT(e->context_len <= RK_MAX_CONTEXT);
                FZ_ASSERT(e->context[0] == '{');
            }
            sink += e->value;
        }
        break;
    case RK_IO_REC_ENTITY: {
        const rk_io_entity *e = &r->entity;
        fz_str(e->id, RK_ID_MAX);
        for (size_t i = 0; i < e->nattrs; i++) {
            const rk_attr_in *a = &e->attrs[i];
            fz_str(a->name, RK_NAME_MAX);
            switch (a->type) {
            case RK_ATTR_CATEGORICAL:
            case RK_ATTR_TEXT:
                FZ_ASSERT(a->len <= RK_MAX_TEXT);
                FZ_ASSERT(rk_utf8_valid_prefix(a->str, a->len) == a->len);
                break;
            case RK_ATTR_CATEGORICAL_LIST:
                for (size_t k = 0; k < a->n; k++) fz_str(a->list[k], RK_MAX_TEXT);
                break;
            case RK_ATTR_VECTOR:
                for (uint32_t k = 0; k < a->dim; k++) sink += a->vec[k];
                break;
            default:
                sink += a->num + (double)a->ts_ms;
            }
        }
        break;
    }
    case RK_IO_REC_ROW: {
        const rk_row_in *w = &r->row;
        if (w->group) fz_str(w->group, RK_ID_MAX);
        for (uint32_t i = 0; i < w->nnum; i++) {
            if (i) FZ_ASSERT(w->num_idx[i] > w->num_idx[i - 1]);
            sink += w->num_val[i];
        }
        for (uint32_t i = 0; i < w->ncat; i++) {
            FZ_ASSERT(strlen(w->cat_val[i]) == w->cat_len[i]);
            sink += w->cat_idx[i];
        }
        break;
    }
    default:
        FZ_ASSERT(0);
    }
    (void)sink;
}

/* A schema with one attribute of every type for the generic entity
 * formats; NULL on allocation failure. */
static inline rk_schema *fz_schema(void)
{
    rk_schema *s = NULL;
    rk_err err = {0};
    if (rk_schema_create(&s)) return NULL;
    static const char *const names[] = {"num", "cat", "tags", "text", "ts",
                                        "emb"};
    int rc = rk_schema_add_event_type(s, "click", RK_ROLE_POSITIVE, 1, &err);
    for (int e = 0; e < 2 && !rc; e++)
        for (int t = 0; t < 6 && !rc; t++)
            rc = rk_schema_add_attr(s, (rk_entity)e, names[t],
                                    (rk_attr_type)t, t == 5 ? 3 : 0, &err);
    if (rc) {
        rk_schema_destroy(s);
        return NULL;
    }
    return s;
}

/* Returns 0 when the parser ran to the end of the input. */
static inline int fz_run(rk_import_format f, rk_import_kind k, const char *data,
                  size_t size, int check)
{
    rk_err err = {0};
    rk_schema *sc = fz_schema();
    rk_io_parser *p = NULL;
    rk_io_reader *rd = NULL;
    int rc = 0;
    if (!sc || rk_io_parser_create(&p, f, k, sc, &err) ||
        rk_io_reader_open_mem(&rd, data, size, &err)) {
        rc = -1;
        goto out;
    }
    char sep = 0;
    if (f == RK_FMT_CSV || f == RK_FMT_ML_RATINGS || f == RK_FMT_ML_MOVIES)
        sep = ',';
    else if (f == RK_FMT_TSV)
        sep = '\t';
    rk_io_reader_set_csv(rd, sep);
    const char *rec;
    size_t len;
    uint64_t line, last = 0;
    for (;;) {
        rk_err_clear(&err);
        int r = rk_io_reader_next(rd, &rec, &len, &line, &err);
        if (r == 0) break;
        if (check) FZ_ASSERT(line > last || line == 0);
        last = line;
        if (r < 0) {
            if (check) FZ_ASSERT(r == RK_ELIMIT && err.msg[0]);
            continue;
        }
        if (check) FZ_ASSERT(len <= RK_IO_MAX_LINE);
        rk_io_record out;
        r = rk_io_parse(p, rec, len, &out, &err);
        if (r == RK_ENOMEM) {
            rc = -1;
            break;
        }
        if (check) {
            FZ_ASSERT(r == 0 || r == RK_EPARSE || r == RK_EINVAL);
            if (r) FZ_ASSERT(err.code == r && err.msg[0]);
            else fz_check_record(&out);
        }
    }
out:
    rk_io_reader_close(rd);
    rk_io_parser_destroy(p);
    rk_schema_destroy(sc);
    return rc;
}

/* The whole check for one format: a normal run, then one with the Nth
 * allocation failing, both leaving no bytes allocated. */
static inline void fz_import_one(rk_import_format f, rk_import_kind k,
                          const uint8_t *data, size_t size)
{
    rk_mem_stats before, after;
    rk_mem_get_stats(&before);
    FZ_ASSERT(fz_run(f, k, (const char *)data, size, 1) == 0);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    uint64_t n = size ? 1 + data[size - 1] % 32 : 1;
    rk_mem_fail_at(n, 0);
    fz_run(f, k, (const char *)data, size, 0);
    rk_mem_fail_at(0, 0);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
}

/* Uses the first byte of the input to pick one of n variants, so one
 * target explores several related formats. */
static inline unsigned fz_pick(const uint8_t **data, size_t *size, unsigned n)
{
    if (*size == 0) return 0;
    unsigned v = (*data)[0] % n;
    (*data)++;
    (*size)--;
    return v;
}

#endif /* RK_IMPORT_FUZZ_H */
