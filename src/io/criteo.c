/*
 * criteo.c — Criteo display-advertising TSV: label, 13 integer features
 * I1..I13 and 26 hashed categorical features C1..C26, 40 TAB-separated
 * fields with an empty field meaning "missing".
 *
 * Each line becomes one dataset row: label 0 or 1, numeric features at
 * indexes 0..12 and categorical features at indexes 0..25, a missing value
 * simply absent from the row. The line must have exactly 40 fields; a copy
 * whose trailing empty fields were trimmed is rejected rather than guessed
 * at, because a shifted column would silently train on the wrong feature.
 */
#include <string.h>

#include "io_int.h"

#define CRITEO_NUM 13
#define CRITEO_CAT 26
#define CRITEO_FIELDS (1 + CRITEO_NUM + CRITEO_CAT)

/* Column names for messages; a table because formatting them per field
 * would cost more than parsing the line. */
static const char *const num_names[CRITEO_NUM] = {
    "I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "I9", "I10", "I11", "I12",
    "I13"};
static const char *const cat_names[CRITEO_CAT] = {
    "C1",  "C2",  "C3",  "C4",  "C5",  "C6",  "C7",  "C8",  "C9",
    "C10", "C11", "C12", "C13", "C14", "C15", "C16", "C17", "C18",
    "C19", "C20", "C21", "C22", "C23", "C24", "C25", "C26"};

int rk__io_parse_criteo(rk_io_parser *p, const char *rec, size_t len,
                        rk_io_record *out, rk_err *err)
{
    if (len == 0) return 0;
    rk_csv *c = &p->csv;
    int rc = rk_csv_split(c, rec, len, err);
    if (rc) return rc;
    if (c->n != CRITEO_FIELDS)
        return rk_err_set(err, RK_EPARSE,
                          "expected %d tab-separated fields (label, I1..I13, "
                          "C1..C26), got %zu",
                          CRITEO_FIELDS, c->n);
    char show[48];
    if (c->len[0] != 1 || (c->f[0][0] != '0' && c->f[0][0] != '1'))
        return rk_err_set(err, RK_EPARSE,
                          "column 'label': expected 0 or 1, got '%s'",
                          rk__io_show(c->f[0], c->len[0], show));
    rk_row_in *row = &out->row;
    row->label = c->f[0][0] == '1';
    uint32_t *ni = rk_arena_alloc(&p->arena, CRITEO_NUM * sizeof *ni);
    double *nv = rk_arena_alloc(&p->arena, CRITEO_NUM * sizeof *nv);
    uint32_t *ci = rk_arena_alloc(&p->arena, CRITEO_CAT * sizeof *ci);
    const char **cv = rk_arena_alloc(&p->arena, CRITEO_CAT * sizeof *cv);
    size_t *cl = rk_arena_alloc(&p->arena, CRITEO_CAT * sizeof *cl);
    if (!ni || !nv || !ci || !cv || !cl)
        return rk_err_set(err, RK_ENOMEM, "criteo: out of memory");
    uint32_t nn = 0, nc = 0;
    for (int k = 0; k < CRITEO_NUM; k++) {
        size_t fi = 1 + (size_t)k;
        if (c->len[fi] == 0) continue;
        int64_t v;
        if ((rc = rk__io_i64(num_names[k], c->f[fi], c->len[fi], &v, err))) return rc;
        ni[nn] = (uint32_t)k;
        nv[nn++] = (double)v;
    }
    for (int k = 0; k < CRITEO_CAT; k++) {
        size_t fi = 1 + CRITEO_NUM + (size_t)k;
        if (c->len[fi] == 0) continue;
        if ((rc = rk__io_id(p, cat_names[k], c->f[fi], c->len[fi], &cv[nc], err)))
            return rc;
        ci[nc] = (uint32_t)k;
        cl[nc++] = c->len[fi];
    }
    row->nnum = nn;
    row->num_idx = ni;
    row->num_val = nv;
    row->ncat = nc;
    row->cat_idx = ci;
    row->cat_val = cv;
    row->cat_len = cl;
    out->type = RK_IO_REC_ROW;
    return 0;
}
