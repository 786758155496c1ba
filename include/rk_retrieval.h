/*
 * rk_retrieval.h — the retrieval stage: from millions of items to a few
 * hundred candidates per request.
 *
 *  - interactions: the users x items matrix of implicit-feedback weights
 *    built from the event log (the input of every generator);
 *  - ANN: the HNSW index (float32 and int8), with an exact flat index;
 *  - factor models: iALS (CG or Cholesky) with real-time fold-in, EASE;
 *  - heuristic generators: co-visitation, trending/popular, fresh, content;
 *  - the merger: quotas, dedupe, exclusions, attribute filters.
 *
 * Dense user and item ids are the store's (rk_store.h). Conventions as in
 * rk_core.h: 0 or a negative RK_E* code, details in an rk_err.
 */
#ifndef RK_RETRIEVAL_H
#define RK_RETRIEVAL_H

#include "rk_core.h"
#include "rk_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Interactions                                                              */
/* ======================================================================== */
/*
 * A compressed sparse row matrix: for user u, its items are
 * items[user_ptr[u] .. user_ptr[u+1]) in increasing item id, each with the
 * summed weight of the user's positive events on it and the time of the
 * first and last of them. Immutable after building; thread-safe to read.
 */
typedef struct rk_interactions {
    uint32_t nusers, nitems;
    uint64_t nnz;
    uint64_t *user_ptr;   /* nusers + 1 */
    uint32_t *items;      /* nnz */
    float *weight;        /* nnz, > 0 */
    int64_t *first_ts;    /* nnz, epoch ms */
    int64_t *last_ts;     /* nnz, epoch ms */
} rk_interactions;

/* How events become weights. Exposure events never count. */
typedef struct rk_inter_opts {
    int64_t from_ts, to_ts;    /* events with from_ts <= ts < to_ts */
    /* Valued events (rating, watch) count when value >= valued_min; their
     * weight is the type weight, times the value if value_as_weight. */
    double valued_min;
    int value_as_weight;
    /* Negative events remove the pair (its weight becomes 0, dropped). */
    int negatives_remove;
} rk_inter_opts;

/* Defaults: all time, valued_min = -inf, value_as_weight = 0,
 * negatives_remove = 1. */
void rk_inter_opts_default(rk_inter_opts *o);

/* Builds from the store's event log (one read snapshot). nusers/nitems are
 * the store's id counts, so every dense id fits. Errors: store errors,
 * RK_ENOMEM. */
int rk_interactions_from_store(rk_interactions **out, rk_store *s,
                               const rk_inter_opts *o, rk_err *err);
/* Builds from triplets (tests, synthetic data): duplicates are summed. */
int rk_interactions_from_triplets(rk_interactions **out, uint32_t nusers,
                                  uint32_t nitems, const uint32_t *users,
                                  const uint32_t *items, const float *weights,
                                  const int64_t *ts /* may be NULL */,
                                  size_t n, rk_err *err);
/* The item-major transpose (nusers and nitems swapped). */
int rk_interactions_transpose(const rk_interactions *m, rk_interactions **out,
                              rk_err *err);
void rk_interactions_free(rk_interactions *m);

/* ======================================================================== */
/* ANN index (HNSW, flat)                                     [ann section] */
/* ======================================================================== */

/* ======================================================================== */
/* Factor models: iALS, EASE, fold-in                       [factor section] */
/* ======================================================================== */

/* ======================================================================== */
/* Heuristic generators and the merger                   [generators section] */
/* ======================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* RK_RETRIEVAL_H */
