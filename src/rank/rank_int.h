/*
 * rank_int.h — internals shared by the ranking module's files.
 *
 * GBDT serving layout. Every tree of a model is flattened into 16-byte
 * nodes, stored breadth first so that the two children of a node are
 * adjacent (right = left + 1) and a child always comes after its parent.
 * A leaf points to itself and has a NaN threshold, so "one more step" from
 * a leaf stays on it: the evaluator can walk every row of a block through
 * exactly `depth` steps with no per-row test for "reached a leaf", which is
 * what lets it interleave many rows and keep the loads in flight.
 *
 * A node names its column in a "doubled row" of 2 * nfeatures values:
 * column f holds feature f with a missing value read as -inf, column
 * nfeatures + f holds it with a missing value read as +inf. A node whose
 * missing values go left (XGBoost's default_left) reads column f, one
 * whose missing values go right reads nfeatures + f. With thresholds
 * always finite, one step is then a single comparison,
 *     next = n.left + (row2[n.col] >= n.thr),
 * and matches XGBoost's rule exactly: left iff value < threshold, a missing
 * value follows the default direction (real infinities compare the same in
 * both halves). Kernels either build the doubled rows of a block first or
 * decode (feature, default) from col and test for NaN themselves.
 *
 * Two kernels evaluate this layout: the plain reference (one row, one tree
 * at a time) and the blocked kernel every model uses by default; see
 * rk__rank_gbdt_kernels_select.
 */
#ifndef RK_RANK_INT_H
#define RK_RANK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "rk_rank.h"

typedef struct rk__rank_gbdt_node {
    uint32_t col;   /* feature, + nfeatures when missing goes right; 0 for a leaf */
    float thr;      /* split threshold, finite; NaN for a leaf */
    uint32_t left;  /* left child's index within the tree; a leaf's own */
    float value;    /* leaf value (0 for internal nodes) */
} rk__rank_gbdt_node;

/* The same trees, complete: tree t of depth D stored as a full binary tree
 * in heap order (children of position p at 2p + 1 and 2p + 2), 2^D - 1
 * internal nodes then 2^D leaf values. A leaf shallower than D is padded
 * with pseudo-nodes whose leaves all carry its value, so every walk takes
 * D steps, next = 2p + 1 + (row2[col] >= thr), and needs neither a child
 * index nor a leaf test. Built for trees up to RK__GBDT_COMPLETE_MAX deep
 * (padding grows as 2^D); deeper trees use the general layout. */
#define RK__GBDT_COMPLETE_MAX 10
#define RK__GBDT_GENERAL UINT32_MAX /* complete_off of a tree without one */

typedef struct rk__rank_gbdt_cnode {
    uint32_t col; /* as in rk__rank_gbdt_node; 0 for a pseudo-node */
    float thr;
} rk__rank_gbdt_cnode;

/* What a kernel needs: the forest in serving layout. Node indices are
 * relative to the tree's first node, nodes + tree_off[t]. Tree t needs
 * exactly tree_depth[t] steps from its root to reach a leaf on any row. */
typedef struct rk__rank_forest {
    const rk__rank_gbdt_node *nodes;
    const uint32_t *tree_off;   /* ntrees + 1 entries */
    const uint32_t *tree_depth; /* ntrees entries */
    size_t ntrees;
    const rk__rank_gbdt_cnode *cnodes;  /* complete layout */
    const float *cleaves;
    const uint32_t *complete_off; /* ntrees: tree t's first cnode, or
                                     RK__GBDT_GENERAL */
    const uint32_t *cleaf_off;    /* ntrees: its first leaf value */
    uint32_t nfeatures;         /* columns of an input row */
    float base_margin;          /* start value of every row's sum */
} rk__rank_forest;

/* Margins of nrows rows: out[i] = base_margin + the leaf values of every
 * tree, added in float in tree order (the order XGBoost's CPU predictor
 * uses, so results agree bit for bit). Row i is x + i * stride and has
 * nfeatures columns (stride >= nfeatures). */
typedef void (*rk__rank_gbdt_fn)(const rk__rank_forest *f, const float *x,
                                 size_t stride, size_t nrows, float *out);

typedef struct rk__rank_gbdt_kernels {
    const char *name; /* "ref" or "scalar" */
    rk__rank_gbdt_fn margins;
} rk__rank_gbdt_kernels;

/* Plain reference: one row at a time, each tree walked until its leaf. */
extern const rk__rank_gbdt_kernels rk__rank_gbdt_kernels_ref;
/* Portable C: blocks of rows walked through each tree in lock step. */
extern const rk__rank_gbdt_kernels rk__rank_gbdt_kernels_scalar;

/* The kernel set for new models: the blocked one, unless RK_KERNELS=ref
 * asks for the plain reference. There is no AVX2 tree kernel: a version
 * with gathers measured slower than the blocked scalar one (bench/README.md),
 * so RK_KERNELS=avx2, scalar and auto all select the blocked kernel.
 * RK_EINVAL for other values. */
int rk__rank_gbdt_kernels_select(const rk__rank_gbdt_kernels **out,
                                 rk_err *err);

/* The model's forest, for tests and benches that call kernels directly. */
const rk__rank_forest *rk__rank_gbdt_forest(const rk_gbdt *m);
/* The kernel set a model chose at load time. */
const rk__rank_gbdt_kernels *rk__rank_gbdt_kernels_of(const rk_gbdt *m);

#endif /* RK_RANK_INT_H */
