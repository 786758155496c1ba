/*
 * gbdt_kernels_ref.c — the plain reference tree evaluator.
 *
 * One row at a time, each tree walked until its leaf, with XGBoost's rule
 * written out literally: a missing value follows the node's default
 * direction, any other goes left iff value < threshold. It defines the
 * results: the blocked kernel (gbdt_kernels.c) must match it exactly, since
 * both add the same leaf values in the same order. It runs under
 * RK_KERNELS=ref.
 */
#include <math.h>

#include "rank/rank_int.h"

/* A node's feature and whether missing values go right, from its column. */
static uint32_t feature_of(uint32_t col, uint32_t nf, uint32_t *right)
{
    *right = col >= nf;
    return *right ? col - nf : col;
}

static void ref_margins(const rk__rank_forest *f, const float *x, size_t stride,
                        size_t nrows, float *out)
{
    for (size_t i = 0; i < nrows; i++) {
        const float *row = x + i * stride;
        float sum = f->base_margin;
        for (size_t t = 0; t < f->ntrees; t++) {
            const rk__rank_gbdt_node *nd = f->nodes + f->tree_off[t];
            uint32_t k = 0;
            while (nd[k].left != k) {
                uint32_t dright;
                float v = row[feature_of(nd[k].col, f->nfeatures, &dright)];
                int left;
                if (isnan(v)) left = !dright;
                else left = v < nd[k].thr;
                k = nd[k].left + (left ? 0u : 1u);
            }
            sum += nd[k].value;
        }
        out[i] = sum;
    }
}

const rk__rank_gbdt_kernels rk__rank_gbdt_kernels_ref = {"ref", ref_margins};
