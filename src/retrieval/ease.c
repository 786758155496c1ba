/*
 * ease.c — EASE (Steck 2019), the closed-form item-item model.
 *
 * B = -P / diag(P) with P = (X^T X + lambda I)^-1 and diag(B) = 0, over the
 * items that have at least one interaction ("active" items), numbered
 * 0..n-1 in increasing catalog id. One dense n x n float buffer goes through
 * every stage in place: the Gram matrix (upper triangle, accumulated user by
 * user from the sparse rows), its Cholesky factor (LAPACK spotrf), the
 * inverse (spotri), and finally B. The buffer is row-major; LAPACK is called
 * column-major on the transposed triangle, which for a symmetric matrix is
 * the same data, so LAPACKE makes no transposed copy.
 *
 * Memory is the whole story for EASE: 4 n^2 bytes, which is why training
 * refuses more than max_items active items before allocating anything.
 */
#include <math.h>
#include <string.h>

#include <lapacke.h>

#include "factor_int.h"
#include "rk_retrieval.h"

#define NO_POS UINT32_MAX
/* Tile of the in-place transposition (mirroring the inverse's triangle). */
#define TILE 64

struct rk_ease_model {
    uint32_t nitems; /* catalog */
    uint32_t n;      /* active items */
    double lambda;
    uint32_t *items; /* n: active index -> catalog id, increasing */
    uint32_t *pos;   /* nitems: catalog id -> active index or NO_POS */
    float *B;        /* n x n, row-major */
};

void rk_ease_opts_default(rk_ease_opts *o)
{
    o->lambda = 200.0;
    o->max_items = 50000;
}

void rk_ease_free(rk_ease_model *md)
{
    if (!md) return;
    rk_free(md->items);
    rk_free(md->pos);
    rk_free(md->B);
    rk_free(md);
}

static rk_ease_model *model_new(uint32_t nitems, uint32_t n)
{
    rk_ease_model *md = rk_calloc(1, sizeof *md);
    if (!md) return NULL;
    md->nitems = nitems;
    md->n = n;
    md->items = rk_malloc(sizeof(uint32_t) * ((size_t)n + 1));
    md->pos = rk_malloc(sizeof(uint32_t) * ((size_t)nitems + 1));
    md->B = rk_malloc(sizeof(float) * ((size_t)n * n + 1));
    if (!md->items || !md->pos || !md->B) {
        rk_ease_free(md);
        return NULL;
    }
    return md;
}

/* pos from items; 0 or RK_ECORRUPT when items are not increasing ids of the
 * catalog (only possible for a loaded file). */
static int build_pos(rk_ease_model *md)
{
    for (uint32_t i = 0; i < md->nitems; i++) md->pos[i] = NO_POS;
    for (uint32_t a = 0; a < md->n; a++) {
        if (md->items[a] >= md->nitems || (a > 0 && md->items[a] <= md->items[a - 1]))
            return RK_ECORRUPT;
        md->pos[md->items[a]] = a;
    }
    return 0;
}

/* Mirrors the upper triangle of the row-major n x n matrix into the lower
 * one, tile by tile so both sides stay in cache. */
static void mirror_upper(float *P, size_t n)
{
    for (size_t i0 = 0; i0 < n; i0 += TILE)
        for (size_t j0 = i0; j0 < n; j0 += TILE) {
            size_t i1 = i0 + TILE < n ? i0 + TILE : n;
            size_t j1 = j0 + TILE < n ? j0 + TILE : n;
            for (size_t i = i0; i < i1; i++)
                for (size_t j = j0 > i + 1 ? j0 : i + 1; j < j1; j++)
                    P[j * n + i] = P[i * n + j];
        }
}

int rk_ease_train(const rk_interactions *m, const rk_ease_opts *o,
                  rk_ease_model **out, rk_err *err)
{
    rk_ease_opts dflt;
    if (!o) {
        rk_ease_opts_default(&dflt);
        o = &dflt;
    }
    *out = NULL;
    if (!(o->lambda > 0) || !isfinite(o->lambda))
        return rk_err_set(err, RK_EINVAL, "ease: lambda must be > 0, got %g",
                          o->lambda);
    /* Active items first: the limit is checked before the n^2 buffer. */
    uint32_t *cnt = rk_calloc((size_t)m->nitems + 1, sizeof(uint32_t));
    if (!cnt) return rk_err_set(err, RK_ENOMEM, "ease: out of memory");
    for (uint64_t e = 0; e < m->nnz; e++) cnt[m->items[e]] = 1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->nitems; i++) n += cnt[i];
    if (n > o->max_items) {
        rk_free(cnt);
        return rk_err_set(err, RK_ELIMIT,
                          "ease: %u items with interactions exceed max_items "
                          "%u (the dense item-item matrix would take %.1f GB: "
                          "4 bytes x n^2)",
                          n, o->max_items, 4.0 * n * n / 1e9);
    }
    rk_ease_model *md = model_new(m->nitems, n);
    if (!md) {
        rk_free(cnt);
        return rk_err_set(err, RK_ENOMEM,
                          "ease: out of memory for %u x %u items (%.1f GB)", n,
                          n, 4.0 * n * n / 1e9);
    }
    md->lambda = o->lambda;
    for (uint32_t i = 0, a = 0; i < m->nitems; i++)
        if (cnt[i]) md->items[a++] = i;
    rk_free(cnt);
    build_pos(md);

    /* G = X^T X + lambda I, upper triangle (row a <= column b). A user's
     * items are increasing, so their active indices are too. */
    const size_t N = n;
    float *G = md->B;
    memset(G, 0, sizeof(float) * N * N);
    for (uint32_t u = 0; u < m->nusers; u++) {
        uint64_t b0 = m->user_ptr[u], b1 = m->user_ptr[u + 1];
        for (uint64_t p = b0; p < b1; p++) {
            size_t a = md->pos[m->items[p]];
            float wa = m->weight[p];
            float *row = G + a * N;
            for (uint64_t q = p; q < b1; q++)
                row[md->pos[m->items[q]]] += wa * m->weight[q];
        }
    }
    for (size_t a = 0; a < N; a++) G[a * N + a] += (float)o->lambda;

    /* Row-major upper == column-major lower. */
    if (n > 0) {
        lapack_int info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n,
                                              G, (lapack_int)n);
        if (info == 0)
            info = LAPACKE_spotri_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, G,
                                       (lapack_int)n);
        if (info != 0) {
            rk_ease_free(md);
            return rk_err_set(err, RK_EINTERNAL,
                              "ease: LAPACK inversion failed (info %d): "
                              "X^T X + lambda I not positive definite in "
                              "single precision; raise lambda",
                              (int)info);
        }
    }
    float *P = G;
    mirror_upper(P, N);
    /* B_ij = -P_ij / P_jj: scale column j by -1 / P_jj, zero the diagonal.
     * The reciprocals are taken once, in the (already computed) diagonal's
     * place, so the loop over each row is a plain vector multiply. */
    float *inv = rk_malloc(sizeof(float) * (N + 1));
    if (!inv) {
        rk_ease_free(md);
        return rk_err_set(err, RK_ENOMEM, "ease: out of memory");
    }
    for (size_t j = 0; j < N; j++) inv[j] = -1.0f / P[j * N + j];
    for (size_t i = 0; i < N; i++) {
        float *row = P + i * N;
        for (size_t j = 0; j < N; j++) row[j] *= inv[j];
        row[i] = 0;
    }
    rk_free(inv);
    *out = md;
    return 0;
}

int rk_ease_score(const rk_ease_model *md, const uint32_t *items,
                  const float *weights, size_t n, float *scores_out,
                  rk_err *err)
{
    for (size_t h = 0; h < n; h++)
        if (items[h] >= md->nitems)
            return rk_err_set(err, RK_EINVAL,
                              "ease: item %u outside the model's %u items",
                              items[h], md->nitems);
    memset(scores_out, 0, sizeof(float) * md->nitems);
    const size_t N = md->n;
    const int identity = md->n == md->nitems;
    for (size_t h = 0; h < n; h++) {
        uint32_t a = md->pos[items[h]];
        if (a == NO_POS) continue;
        float w = weights ? weights[h] : 1.0f;
        const float *row = md->B + (size_t)a * N;
        if (identity) {
            for (size_t b = 0; b < N; b++) scores_out[b] += w * row[b];
        } else {
            for (size_t b = 0; b < N; b++) scores_out[md->items[b]] += w * row[b];
        }
    }
    return 0;
}

uint32_t rk_ease_nitems(const rk_ease_model *md) { return md->nitems; }

void rk_ease_matrix(const rk_ease_model *md, uint32_t *n,
                    const uint32_t **items, const float **B)
{
    *n = md->n;
    *items = md->items;
    *B = md->B;
}

/* ---- file ------------------------------------------------------------------ */

static const char EASE_MAGIC[8] = {'R', 'K', 'E', 'A', 'S', 'E', '\0', '\1'};
#define EASE_VERSION 1u

typedef struct ease_header {
    char magic[8];
    uint32_t version, header_size, bom, nitems;
    uint32_t n, reserved0;
    double lambda;
    uint8_t reserved[64 - 40];
} ease_header;

_Static_assert(sizeof(ease_header) == 64, "ease header is 64 bytes");

int rk_ease_save(const rk_ease_model *md, const char *path, rk_err *err)
{
    ease_header hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, EASE_MAGIC, 8);
    hd.version = EASE_VERSION;
    hd.header_size = sizeof hd;
    hd.bom = RK__FF_BOM;
    hd.nitems = md->nitems;
    hd.n = md->n;
    hd.lambda = md->lambda;
    rk__ff_part parts[3] = {
        {&hd, sizeof hd},
        {md->items, sizeof(uint32_t) * md->n},
        {md->B, sizeof(float) * (size_t)md->n * md->n},
    };
    return rk__ff_write(path, parts, 3, err);
}

int rk_ease_load(const char *path, rk_ease_model **out, rk_err *err)
{
    *out = NULL;
    rk__ff_reader r;
    ease_header hd;
    int rc = rk__ff_open(&r, path, EASE_MAGIC, "EASE model", &hd, sizeof hd,
                         err);
    if (rc) return rc;
    rk_ease_model *md = NULL;
    if (hd.version > EASE_VERSION || hd.version == 0) {
        rc = rk_err_set(err, RK_EVERSION,
                        "%s: EASE model version %u, this build reads 1..%u",
                        path, hd.version, EASE_VERSION);
        goto fail;
    }
    if (hd.bom != RK__FF_BOM || hd.header_size != sizeof hd ||
        hd.n > hd.nitems || !(hd.lambda > 0)) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: corrupted EASE header", path);
        goto fail;
    }
    uint64_t is = (uint64_t)hd.n * sizeof(uint32_t);
    uint64_t bs = (uint64_t)hd.n * hd.n * sizeof(float);
    if ((rc = rk__ff_expect(&r, sizeof hd + is + bs, err)) != 0) goto fail;
    md = model_new(hd.nitems, hd.n);
    if (!md) {
        rc = rk_err_set(err, RK_ENOMEM, "%s: out of memory loading EASE model",
                        path);
        goto fail;
    }
    md->lambda = hd.lambda;
    if ((rc = rk__ff_read(&r, md->items, is, err)) != 0 ||
        (rc = rk__ff_read(&r, md->B, bs, err)) != 0 ||
        (rc = rk__ff_finish(&r, err)) != 0)
        goto fail;
    if (build_pos(md) != 0) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: EASE item list corrupted", path);
        goto fail;
    }
    rk__ff_close(&r);
    *out = md;
    return 0;
fail:
    rk__ff_close(&r);
    rk_ease_free(md);
    return rc;
}
