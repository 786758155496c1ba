/*
 * rk_features.h — declared features computed by one code path online and
 * offline, their online state, the feature log and training sets.
 *
 *  - feature vectors (rk_fvec): what every feature computation produces and
 *    every ranker consumes: a dense block (numeric features after their
 *    transforms, NaN = missing) and a sparse block of hashed coordinates
 *    (categoricals, crosses, text tokens) in [0, 2^hash_bits);
 *  - feature definitions from the config, transforms and the compute
 *    function (rk_feat_*);
 *  - online aggregate state and point-in-time replay;
 *  - the feature log (what was served, keyed by request_id), label joins
 *    and training sets.
 *
 * Conventions as in rk_core.h: 0 or a negative RK_E* code, details in an
 * rk_err; opaque handles with create/destroy, destroy(NULL) is a no-op.
 */
#ifndef RK_FEATURES_H
#define RK_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "rk_core.h"
#include "rk_rank.h"
#include "rk_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Feature vectors                                                           */
/* ======================================================================== */
/*
 * dense[0..ndense) holds one value per dense column (NaN = missing);
 * idx/val[0..nsparse) are hashed coordinates in [0, 2^hash_bits), any
 * order, val 1 for a plain categorical. The vector owns its arrays (from
 * rk_malloc); a zeroed rk_fvec is a valid empty vector. Not thread-safe.
 */
typedef struct rk_fvec {
    uint32_t ndense;
    float *dense;
    uint32_t nsparse, cap;
    uint32_t *idx;
    float *val;
} rk_fvec;

/* Sets the dense width to ndense, all NaN, and empties the sparse block,
 * keeping capacity. RK_ENOMEM. */
int rk_fvec_reset(rk_fvec *v, uint32_t ndense);
/* Appends one sparse coordinate. RK_ENOMEM, RK_ELIMIT (more than
 * RK_FVEC_MAX_SPARSE coordinates). */
#define RK_FVEC_MAX_SPARSE (1u << 20)
int rk_fvec_push(rk_fvec *v, uint32_t idx, float val);
/* Deep copy into dst (its old arrays reused or freed). RK_ENOMEM. */
int rk_fvec_copy(rk_fvec *dst, const rk_fvec *src);
void rk_fvec_free(rk_fvec *v);

/* The vector as one sparse example for a linear model over
 * dim = ndense + 2^hash_bits coordinates: dense column j (when not NaN) is
 * coordinate j, hashed coordinate h is ndense + h. idx_buf/val_buf must
 * hold ndense + nsparse entries; out borrows them. */
void rk_fvec_as_sparse(const rk_fvec *v, uint32_t *idx_buf, float *val_buf,
                       rk_sparse *out);

/* Compact binary encoding (little-endian, self-delimiting) for the feature
 * log and training-set files; rk_fvec_decode validates every length and
 * returns RK_ECORRUPT with what is wrong, consuming *used bytes. */
int rk_fvec_encode(const rk_fvec *v, rk_buf *out);
int rk_fvec_decode(rk_fvec *v, const void *p, size_t n, size_t *used,
                   rk_err *err);

/* ======================================================================== */
/* Feature definitions and computation                                       */
/* ======================================================================== */

/* ======================================================================== */
/* Online aggregate state and point-in-time replay                           */
/* ======================================================================== */

/* ======================================================================== */
/* Training sets                                                             */
/* ======================================================================== */
/*
 * Labelled feature rows in memory, bounded by max_bytes: the input of every
 * ranker's training. A row carries its features, label (0/1 for
 * classification, a graded relevance for ranking), importance weight,
 * query group (request or query id; 0 = none) and timestamp (epoch ms).
 */
typedef struct rk_trainset rk_trainset;

/* A row as read: x borrows the set's memory, valid until the set is
 * changed or destroyed. */
typedef struct rk_trow {
    rk_fvec x;
    float label, weight;
    uint64_t group;
    int64_t ts_ms;
} rk_trow;

/* ndense and hash_bits describe every row's vector (rows with another
 * dense width are refused with RK_EINVAL). max_bytes 0 = 1 GiB. */
int rk_trainset_create(rk_trainset **out, uint32_t ndense, uint32_t hash_bits,
                       size_t max_bytes);
void rk_trainset_destroy(rk_trainset *t);
/* Appends a copy of x. RK_EINVAL (dense width, non-finite label or weight
 * <= 0), RK_ELIMIT (max_bytes), RK_ENOMEM. */
int rk_trainset_add(rk_trainset *t, const rk_fvec *x, float label,
                    float weight, uint64_t group, int64_t ts_ms);
size_t rk_trainset_rows(const rk_trainset *t);
/* Row i < rk_trainset_rows(t). */
void rk_trainset_get(const rk_trainset *t, size_t i, rk_trow *out);

/* ======================================================================== */
/* Feature log and label join                                                */
/* ======================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* RK_FEATURES_H */
