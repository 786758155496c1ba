/*
 * fuzz_gbdt_model.c — libFuzzer target for GBDT model loading: XGBoost's
 * JSON model (rk_gbdt_from_xgb_json) and rankd's saved format
 * (rk_gbdt_load).
 *
 * Each input is tried as XGBoost JSON, as saved bytes as they are (which
 * usually stop at the magic or the checksum), and as saved bytes with a
 * correct header: the input's own payload with length and checksum
 * recomputed when it starts with the magic, the whole input wrapped in a
 * fresh header otherwise, so mutations reach the JSON validation through
 * both entry points. A refusal must come with a code and a message and no
 * model. Whatever loads is exercised: predictions on rows of zeros, NaN,
 * infinities and the model's own thresholds must agree bit for bit between
 * the reference and the blocked kernel (a validation gap that lets a bad
 * child index through shows up as a sanitizer report there), and a save
 * and reload must give the same bytes and predictions. Nothing may leak:
 * rk_malloc's bytes in use must be back where they started. Seeds in
 * fuzz/corpus/gbdt_model/ are written by gbdt_test's fuzz_seeds case
 * (RK_GBDT_WRITE_CORPUS=dir).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/rank_int.h"
#include "rk_rank.h"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

#define MAGIC "RKGBDT\r\n"
#define HEADER 32
#define MAX_PROBE_FEATURES 4096 /* wider models: info only */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Rows of a model's width: zeros, NaN, +-inf, huge values, and values on
 * the model's thresholds. */
static float *probe_rows(const rk_gbdt *m, size_t nf, size_t nrows)
{
    float *x = calloc(nrows * (nf ? nf : 1), sizeof *x);
    FZ_ASSERT(x);
    const rk__rank_forest *f = rk__rank_gbdt_forest(m);
    size_t nn = f->tree_off[f->ntrees];
    for (size_t r = 0; r < nrows; r++)
        for (size_t j = 0; j < nf; j++) {
            float *v = &x[r * nf + j];
            switch (r % 6) {
            case 0: *v = 0; break;
            case 1: *v = NAN; break;
            case 2: *v = (j & 1) ? INFINITY : -INFINITY; break;
            case 3: *v = (j & 1) ? 3e38f : -3e38f; break;
            default:
                if (nn) {
                    const rk__rank_gbdt_node *n = &f->nodes[(r * 131 + j * 17) % nn];
                    *v = isnan(n->thr) ? NAN : n->thr;
                }
                break;
            }
        }
    return x;
}

static void exercise(rk_gbdt *m)
{
    rk_gbdt_info info;
    rk_gbdt_info_get(m, &info);
    FZ_ASSERT(info.objective && info.kernels);
    FZ_ASSERT(info.max_depth <= info.nodes);
    if (info.nfeatures > MAX_PROBE_FEATURES) return;
    size_t nf = info.nfeatures, nrows = 19;
    double *imp = malloc((nf ? nf : 1) * sizeof *imp);
    FZ_ASSERT(imp);
    for (int t = 0; t < 3; t++)
        FZ_ASSERT(rk_gbdt_importance(m, (rk_gbdt_importance_type)t, imp, nf) == 0);
    free(imp);

    float *x = probe_rows(m, nf, nrows);
    float a[19], b[19], c[19];
    rk_dmat dm = {x, nrows, nf, nf};
    FZ_ASSERT(rk_gbdt_predict(m, &dm, a, RK_GBDT_MARGIN) == 0);
    rk__rank_gbdt_kernels_ref.margins(rk__rank_gbdt_forest(m), x, nf, nrows, b);
    FZ_ASSERT(memcmp(a, b, sizeof a) == 0);
    FZ_ASSERT(rk_gbdt_predict(m, &dm, c, 0) == 0);

    /* Save and reload: same bytes, same predictions. */
    rk_buf s1, s2;
    rk_buf_init(&s1, 0);
    rk_buf_init(&s2, 0);
    FZ_ASSERT(rk_gbdt_save(m, &s1) == 0);
    rk_gbdt *l = NULL;
    rk_err err = {0};
    FZ_ASSERT(rk_gbdt_load(&l, s1.data, s1.len, &err) == 0);
    FZ_ASSERT(rk_gbdt_save(l, &s2) == 0);
    FZ_ASSERT(s1.len == s2.len && memcmp(s1.data, s2.data, s1.len) == 0);
    FZ_ASSERT(rk_gbdt_predict(l, &dm, b, RK_GBDT_MARGIN) == 0);
    FZ_ASSERT(memcmp(a, b, sizeof a) == 0);
    rk_gbdt_destroy(l);
    rk_buf_free(&s1);
    rk_buf_free(&s2);
    free(x);
}

typedef int (*load_fn)(rk_gbdt **, const void *, size_t, rk_err *);

static int from_json(rk_gbdt **out, const void *p, size_t n, rk_err *err)
{
    return rk_gbdt_from_xgb_json(out, p, n, err);
}

static void try_one(load_fn fn, const void *p, size_t n)
{
    rk_gbdt *m = (rk_gbdt *)1;
    rk_err err = {0};
    int rc = fn(&m, p, n, &err);
    if (rc != 0) {
        FZ_ASSERT(m == NULL);
        FZ_ASSERT(rc < 0 && err.code == rc && err.msg[0]);
        return;
    }
    FZ_ASSERT(m != NULL);
    exercise(m);
    rk_gbdt_destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_mem_stats before, after;
    rk_mem_get_stats(&before);

    try_one(from_json, data, size);
    try_one(rk_gbdt_load, data, size);

    /* A consistent header around the payload. */
    int saved = size >= HEADER && memcmp(data, MAGIC, 8) == 0;
    const uint8_t *payload = saved ? data + HEADER : data;
    size_t plen = saved ? size - HEADER : size;
    unsigned char *buf = malloc(HEADER + plen + 1);
    FZ_ASSERT(buf);
    if (saved) memcpy(buf, data, HEADER);
    else {
        memcpy(buf, MAGIC, 8);
        put_le(buf + 8, 1, 4);
        put_le(buf + 12, HEADER, 4);
    }
    put_le(buf + 16, plen, 8);
    put_le(buf + 24, rk_hash64(payload, plen, 0), 8);
    if (plen) memcpy(buf + HEADER, payload, plen);
    try_one(rk_gbdt_load, buf, HEADER + plen);
    free(buf);

    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    return 0;
}
