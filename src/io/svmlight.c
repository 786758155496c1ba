/*
 * svmlight.c — SVMlight / LETOR text: `label [qid:Q] idx:val ... [# c]`.
 *
 * Each line becomes one dataset row: the label, the query id as the row's
 * group (rows of one query are contiguous in LETOR files) and the features
 * as sparse numeric values keyed by their index exactly as written (LETOR
 * counts from 1). Indexes must be strictly increasing, as SVMlight
 * requires; a repeated or unordered index is almost always a broken file.
 * Everything after '#' is a comment and ignored; blank and comment-only
 * lines are skipped.
 */
#include <string.h>

#include "io_int.h"

static int is_space(char c) { return c == ' ' || c == '\t'; }

int rk__io_parse_svmlight(rk_io_parser *p, const char *rec, size_t len,
                          rk_io_record *out, rk_err *err)
{
    const char *hash = len ? memchr(rec, '#', len) : NULL;
    size_t n = hash ? (size_t)(hash - rec) : len;
    size_t i = 0;
    while (i < n && is_space(rec[i])) i++;
    if (i == n) return 0; /* blank or comment */

    /* Count tokens first so the arrays are allocated once. */
    size_t ntok = 0;
    for (size_t j = i; j < n;) {
        while (j < n && is_space(rec[j])) j++;
        if (j == n) break;
        ntok++;
        while (j < n && !is_space(rec[j])) j++;
    }
    uint32_t *idx = rk_arena_alloc(&p->arena, ntok * sizeof *idx);
    double *val = rk_arena_alloc(&p->arena, ntok * sizeof *val);
    if (!idx || !val)
        return rk_err_set(err, RK_ENOMEM, "svmlight: out of memory");

    char show[48];
    rk_row_in *row = &out->row;
    uint32_t nf = 0;
    int first = 1;
    while (i < n) {
        while (i < n && is_space(rec[i])) i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && !is_space(rec[j])) j++;
        const char *t = rec + i;
        size_t tn = j - i;
        i = j;
        if (first) {
            first = 0;
            int rc = rk__io_f64("label", t, tn, &row->label, err);
            if (rc) return rc;
            continue;
        }
        const char *colon = memchr(t, ':', tn);
        if (!colon)
            return rk_err_set(err, RK_EPARSE,
                              "expected index:value, got '%s'",
                              rk__io_show(t, tn, show));
        size_t kn = (size_t)(colon - t);
        const char *v = colon + 1;
        size_t vn = tn - kn - 1;
        if (kn == 3 && memcmp(t, "qid", 3) == 0) {
            if (nf > 0 || row->group)
                return rk_err_set(err, RK_EPARSE,
                                  "qid must come once, before the features");
            int rc = rk__io_id(p, "qid", v, vn, &row->group, err);
            if (rc) return rc;
            row->group_len = vn;
            continue;
        }
        uint64_t k;
        if (rk_parse_u64(t, kn, &k) != 0 || k > UINT32_MAX)
            return rk_err_set(err, RK_EPARSE, "bad feature index '%s'",
                              rk__io_show(t, kn, show));
        if (nf > 0 && k <= idx[nf - 1])
            return rk_err_set(err, RK_EPARSE,
                              "feature index %llu not above the previous %u",
                              (unsigned long long)k, idx[nf - 1]);
        double d;
        if (rk_parse_f64(v, vn, &d) != 0)
            return rk_err_set(err, RK_EPARSE,
                              "feature %llu: bad number '%s'",
                              (unsigned long long)k, rk__io_show(v, vn, show));
        idx[nf] = (uint32_t)k;
        val[nf++] = d;
    }
    row->nnum = nf;
    row->num_idx = idx;
    row->num_val = val;
    out->type = RK_IO_REC_ROW;
    return 0;
}
