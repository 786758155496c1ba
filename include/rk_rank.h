/*
 * rk_rank.h — the ranking stage's models: GBDT (trained through XGBoost's
 * C API, served by rankd's own tree evaluator), FTRL-Proximal logistic
 * regression on hashed sparse features, a second-order factorization
 * machine, and probability calibration (down-sampling correction, Platt,
 * isotonic).
 *
 * Inputs come in two shapes, both produced by the features module
 * (rk_features.h) from one code path online and offline:
 *  - dense: a row-major matrix of floats, NaN meaning "missing" (GBDT);
 *  - sparse: (index, value) pairs in a hashed space of `dim` coordinates
 *    (FTRL, FM).
 * Every model serialises to bytes (rk_buf) and loads from bytes with full
 * validation; the registry (rk_train.h) wraps those bytes in a versioned,
 * checksummed artifact.
 *
 * Conventions as in rk_core.h: 0 or a negative RK_E* code, details in an
 * rk_err; opaque handles with create/destroy, destroy(NULL) is a no-op.
 */
#ifndef RK_RANK_H
#define RK_RANK_H

#include <stddef.h>
#include <stdint.h>

#include "rk_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Inputs                                                                    */
/* ======================================================================== */

/* A dense matrix: row i is x[i * stride .. i * stride + ncols), NaN is a
 * missing value. Borrowed by every function that takes it. */
typedef struct rk_dmat {
    const float *x;
    size_t nrows, ncols, stride;
} rk_dmat;

/* One sparse example: n (index, value) pairs, indices < the model's dim,
 * any order, duplicates add up. val == NULL means every value is 1
 * (one-hot / hashed categorical features). Borrowed. */
typedef struct rk_sparse {
    const uint32_t *idx;
    const float *val;
    uint32_t n;
} rk_sparse;

/* ======================================================================== */
/* GBDT                                                                      */
/* ======================================================================== */

/* ======================================================================== */
/* FTRL-Proximal logistic regression                                         */
/* ======================================================================== */

/* ======================================================================== */
/* Factorization machine                                                     */
/* ======================================================================== */

/* ======================================================================== */
/* Calibration                                                               */
/* ======================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* RK_RANK_H */
