/*
 * gbdt_kernels.c — the blocked tree evaluator, and the choice of kernel.
 *
 * A tree walk is a chain of dependent loads (node -> feature value -> next
 * node), so one row at a time leaves the core waiting on load latency.
 * Walking a block of BLOCK rows through the same tree level by level gives
 * the CPU BLOCK independent chains to overlap, the tree's nodes stay in L1
 * while the block goes through it, and the branch-free step (leaves loop on
 * themselves, see rank_int.h) has no mispredicted "is this a leaf" branch.
 *
 * The block's rows are first copied into doubled, transposed form:
 * xt[c * BLOCK + r] is column c of row r's doubled row (rank_int.h), so the
 * step needs no NaN test and no row pointer, only the node and one value:
 *     pos = n.left + (xt[n.col * BLOCK + r] >= n.thr).
 * The copy costs 2 * nfeatures stores per row, little next to one step per
 * tree level. Models with more than MAX_T_FEATURES features would need too
 * large a buffer on the stack; they take the direct path, which reads the
 * caller's rows and tests for NaN in the step.
 *
 * Choice: the blocked kernel is the default. RK_KERNELS (the variable the
 * other modules' kernels read) set to "ref" forces the plain reference, for
 * tests and for comparing speed; "scalar", "avx2" and "auto" all mean the
 * blocked kernel, since no SIMD tree kernel beat it (see rank_int.h). The
 * choice is stored in each model when it is built, so the environment is
 * read per load, never per prediction, and there is no global mutable
 * state.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rank/rank_int.h"

/* A node's feature and whether missing values go right, from its column. */
static inline uint32_t feature_of(uint32_t col, uint32_t nf, uint32_t *right)
{
    *right = col >= nf;
    return *right ? col - nf : col;
}

/* Rows per block: 16 independent walks keep enough loads in flight, and
 * unrolled, the 16 positions live in registers. 8 and 32 measured no
 * faster. */
#define BLOCK 16
/* 2 * 256 columns * 16 rows * 4 bytes = 32 KiB of stack. */
#define MAX_T_FEATURES 256

/* Copies nb <= BLOCK rows into the transposed doubled block (lanes nb..
 * zero). Without branches: a fifth of the values may be missing, at random,
 * which a branch would mispredict. */
static void transpose_block(const float *x, size_t stride, size_t nb, uint32_t nf, float *xt)
{
    for (uint32_t j = 0; j < nf; j++) {
        float *lo = xt + (size_t)j * BLOCK, *hi = xt + (size_t)(nf + j) * BLOCK;
        for (size_t r = 0; r < nb; r++) {
            float v = x[r * stride + j];
            uint32_t b, miss, lb, hb;
            memcpy(&b, &v, 4);
            miss = 0u - (uint32_t)(v != v);
            lb = (b & ~miss) | (0xff800000u & miss); /* -inf */
            hb = (b & ~miss) | (0x7f800000u & miss); /* +inf */
            memcpy(&lo[r], &lb, 4);
            memcpy(&hi[r], &hb, 4);
        }
        for (size_t r = nb; r < BLOCK; r++) lo[r] = hi[r] = 0;
    }
}

/* Walks one block of nb <= BLOCK rows through every tree using the
 * transposed doubled rows; lanes nb.. are computed but not written out. */
static void block_transposed(const rk__rank_forest *f, const float *x, size_t stride,
                             size_t nb, float *out)
{
    float xt[2 * MAX_T_FEATURES * BLOCK];
    transpose_block(x, stride, nb, f->nfeatures, xt);
    float acc[BLOCK];
    uint32_t pos[BLOCK];
    for (size_t r = 0; r < BLOCK; r++) acc[r] = f->base_margin;
    for (size_t t = 0; t < f->ntrees; t++) {
        uint32_t depth = f->tree_depth[t];
        for (size_t r = 0; r < BLOCK; r++) pos[r] = 0;
        if (f->complete_off[t] != RK__GBDT_GENERAL) {
            /* Complete layout: 8-byte nodes, children by arithmetic. */
            const rk__rank_gbdt_cnode *cn = f->cnodes + f->complete_off[t];
            for (uint32_t d = 0; d < depth; d++) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
                for (size_t r = 0; r < BLOCK; r++) {
                    const rk__rank_gbdt_cnode *n = cn + pos[r];
                    pos[r] = 2 * pos[r] + 1 +
                             (uint32_t)(xt[(size_t)n->col * BLOCK + r] >= n->thr);
                }
            }
            /* Leaves sit at heap positions 2^depth - 1 and up. */
            const float *lv = f->cleaves + f->cleaf_off[t];
            uint32_t first = (1u << depth) - 1;
            for (size_t r = 0; r < BLOCK; r++) acc[r] += lv[pos[r] - first];
        } else {
            const rk__rank_gbdt_node *nd = f->nodes + f->tree_off[t];
            for (uint32_t d = 0; d < depth; d++) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
                for (size_t r = 0; r < BLOCK; r++) {
                    const rk__rank_gbdt_node *n = nd + pos[r];
                    /* A leaf's NaN threshold compares false: it stays put. */
                    pos[r] = n->left + (uint32_t)(xt[(size_t)n->col * BLOCK + r] >= n->thr);
                }
            }
            for (size_t r = 0; r < BLOCK; r++) acc[r] += nd[pos[r]].value;
        }
    }
    for (size_t r = 0; r < nb; r++) out[r] = acc[r];
}

/* The same walk on the caller's rows, for wide models. */
static void block_direct(const rk__rank_forest *f, const float *x, size_t stride,
                         size_t nb, float *out)
{
    const float *rows[BLOCK];
    float acc[BLOCK];
    uint32_t pos[BLOCK], nf = f->nfeatures;
    for (size_t r = 0; r < nb; r++) {
        rows[r] = x + r * stride;
        acc[r] = f->base_margin;
    }
    for (size_t t = 0; t < f->ntrees; t++) {
        const rk__rank_gbdt_node *nd = f->nodes + f->tree_off[t];
        uint32_t depth = f->tree_depth[t];
        for (size_t r = 0; r < nb; r++) pos[r] = 0;
        for (uint32_t d = 0; d < depth; d++) {
            for (size_t r = 0; r < nb; r++) {
                const rk__rank_gbdt_node *n = nd + pos[r];
                uint32_t dright, c = feature_of(n->col, nf, &dright);
                float v = rows[r][c];
                uint32_t right = (uint32_t)(v >= n->thr) | ((uint32_t)(v != v) & dright);
                pos[r] = n->left + right;
            }
        }
        for (size_t r = 0; r < nb; r++) acc[r] += nd[pos[r]].value;
    }
    for (size_t r = 0; r < nb; r++) out[r] = acc[r];
}

static void scalar_margins(const rk__rank_forest *f, const float *x, size_t stride,
                           size_t nrows, float *out)
{
    void (*walk)(const rk__rank_forest *, const float *, size_t, size_t, float *) =
        f->nfeatures <= MAX_T_FEATURES ? block_transposed : block_direct;
    for (size_t i = 0; i < nrows; i += BLOCK)
        walk(f, x + i * stride, stride, nrows - i < BLOCK ? nrows - i : BLOCK, out + i);
}

const rk__rank_gbdt_kernels rk__rank_gbdt_kernels_scalar = {"scalar", scalar_margins};

int rk__rank_gbdt_kernels_select(const rk__rank_gbdt_kernels **out, rk_err *err)
{
    const char *env = getenv("RK_KERNELS");
    *out = &rk__rank_gbdt_kernels_scalar;
    if (!env || !*env || strcmp(env, "auto") == 0 || strcmp(env, "scalar") == 0 ||
        strcmp(env, "avx2") == 0)
        return 0;
    if (strcmp(env, "ref") == 0) {
        *out = &rk__rank_gbdt_kernels_ref;
        return 0;
    }
    return rk_err_set(err, RK_EINVAL, "RK_KERNELS=%s: expected ref, scalar, avx2 or auto", env);
}
