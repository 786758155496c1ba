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
/*
 * Gradient-boosted trees. Training goes through XGBoost's C API (its hist,
 * approx or exact tree builders); serving uses rankd's own evaluator, which
 * reads XGBoost's JSON model and computes exactly what XGBoost's CPU
 * predictor computes (same comparisons, same default directions for NaN,
 * leaf values summed in float in tree order), several times faster.
 *
 * A model is immutable once built: any number of threads may predict with
 * one model at once. The model keeps the XGBoost JSON it was built from,
 * so saved models can be inspected and handed back to XGBoost.
 */
typedef struct rk_gbdt rk_gbdt;

typedef enum rk_gbdt_objective {
    RK_GBDT_BINARY = 0,     /* binary:logistic, labels in [0, 1]; output P */
    RK_GBDT_RANK_NDCG = 1,  /* rank:ndcg (LambdaMART) over query groups */
    RK_GBDT_REGRESSION = 2  /* reg:squarederror */
} rk_gbdt_objective;

typedef enum rk_gbdt_tree_method {
    RK_GBDT_HIST = 0,   /* histogram, max_bin bins per feature (default) */
    RK_GBDT_APPROX = 1, /* per-iteration quantile sketch */
    RK_GBDT_EXACT = 2   /* exact greedy (slow, small data only) */
} rk_gbdt_tree_method;

typedef enum rk_gbdt_metric {
    RK_GBDT_METRIC_DEFAULT = 0, /* objective's own: logloss, ndcg@k, rmse */
    RK_GBDT_METRIC_LOGLOSS = 1, /* lower is better */
    RK_GBDT_METRIC_AUC = 2,     /* higher is better */
    RK_GBDT_METRIC_NDCG = 3,    /* ndcg@eval_at, higher is better */
    RK_GBDT_METRIC_MAP = 4,     /* map@eval_at, higher is better */
    RK_GBDT_METRIC_RMSE = 5     /* lower is better */
} rk_gbdt_metric;

/* Training parameters; rk_gbdt_params_default fills XGBoost's defaults
 * (shown after each field) except where noted. Names follow XGBoost's. */
typedef struct rk_gbdt_params {
    rk_gbdt_objective objective;   /* RK_GBDT_BINARY */
    uint32_t ntrees;               /* boosting rounds: 100 */
    uint32_t max_depth;            /* 6; 1..30 */
    double eta;                    /* learning rate 0.3; (0, 1] */
    double min_child_weight;       /* 1; >= 0 */
    double subsample;              /* row sampling per tree 1; (0, 1] */
    double colsample_bytree;       /* column sampling per tree 1; (0, 1] */
    double lambda;                 /* L2 on leaf weights 1; >= 0 */
    double alpha;                  /* L1 on leaf weights 0; >= 0 */
    double gamma;                  /* minimum split gain 0; >= 0 */
    double scale_pos_weight;       /* weight of positives (binary) 1; > 0 */
    double base_score;             /* NaN: XGBoost's default (0.5); for
                                      binary a probability in (0, 1) */
    uint32_t max_bin;              /* hist bins 256; 2..65535 */
    rk_gbdt_tree_method tree_method; /* RK_GBDT_HIST */
    uint32_t nthread;              /* 0 = XGBoost's default (all cores) */
    uint32_t seed;                 /* 0; drives subsample and colsample */
    /* Early stopping: stop when the validation metric has not improved
     * for this many rounds and keep the rounds up to the best one. 0 = off
     * (the default); needs a validation set. */
    uint32_t early_stopping_rounds;
    rk_gbdt_metric eval_metric;    /* RK_GBDT_METRIC_DEFAULT */
    uint32_t eval_at;              /* k of ndcg@k, map@k: 10; 0 = all */
    /* Receives one INFO line per round with the validation metric (when
     * there is a validation set). NULL = quiet. Borrowed during training. */
    const rk_logger *log;
} rk_gbdt_params;

void rk_gbdt_params_default(rk_gbdt_params *p);

/* One data set: features, labels and optional weights and query groups.
 * All borrowed for the duration of the call.
 *  - y: nrows finite labels; binary needs 0 <= y <= 1, rank:ndcg takes
 *    graded relevance in [0, 31] (XGBoost's gain is 2^y - 1);
 *  - groups: query-group sizes in row order (consecutive rows), summing
 *    to nrows. Used (and required) by rank:ndcg, and on the validation set
 *    by the ndcg/map metrics; ignored otherwise;
 *  - w: optional weights, finite and >= 0: one per group where groups are
 *    used (XGBoost weighs whole groups), one per row otherwise. Weights
 *    with the ndcg/map metric under another objective are refused. */
typedef struct rk_gbdt_data {
    rk_dmat x;
    const float *y;
    const float *w;
    const uint32_t *groups;
    size_t ngroups;
} rk_gbdt_data;

/*
 * Trains a model on `train`, optionally watching `valid` (same number of
 * columns; needed for early stopping, else only reported through p->log).
 * With early stopping the model keeps the rounds up to the best iteration.
 * Deterministic: the same data, parameters and thread count give the same
 * model bytes. *out is a new model owned by the caller (rk_gbdt_destroy),
 * NULL on error.
 * Errors: RK_EINVAL for bad parameters or data (message names the field,
 * or carries XGBoost's own text), RK_EINTERNAL when XGBoost fails
 * otherwise, RK_ENOMEM. XGBoost's allocations are its own (not counted by
 * rk_malloc); its worker threads are its OpenMP pool.
 * Thread-safe for different models.
 */
int rk_gbdt_train(rk_gbdt **out, const rk_gbdt_data *train,
                  const rk_gbdt_data *valid, const rk_gbdt_params *p,
                  rk_err *err);

/*
 * Builds a model from XGBoost's JSON model format (XGBoosterSaveModel to
 * "*.json", or XGBoosterSaveModelToBuffer with {"format":"json"}), as
 * written by XGBoost 1.x: a gbtree booster with objective binary:logistic,
 * reg:logistic, binary:logitraw, reg:squarederror, rank:ndcg, rank:pairwise
 * or rank:map, numerical splits, one output. Everything is validated:
 * array lengths, child indices (every node reachable from the root once),
 * feature indices below num_feature, finite thresholds and leaf values.
 * Nodes XGBoost pruned (unreachable) are ignored. json need not be NUL
 * terminated; it is copied. Errors: RK_EPARSE (not JSON, or members
 * missing or of the wrong type), RK_ECORRUPT (values that contradict each
 * other; the message names the tree and node), RK_EUNSUPPORTED
 * (categorical splits, multi-class or multi-target, dart or gblinear,
 * another objective), RK_ENOMEM. Memory: a few times the input, plus up
 * to 12 KiB per tree for the evaluator's complete-tree copy of trees up to
 * depth 10. Thread-safe.
 */
int rk_gbdt_from_xgb_json(rk_gbdt **out, const char *json, size_t n,
                          rk_err *err);

/* rk_gbdt_predict flags. */
#define RK_GBDT_MARGIN 1u /* raw sum before the objective's transform */

/*
 * Scores x->nrows rows into out[0..nrows). By default the output is what
 * XGBoost's predict returns: a probability for binary:logistic and
 * reg:logistic, the raw score otherwise; RK_GBDT_MARGIN gives the raw
 * margin for every objective. NaN is a missing value; x->ncols must equal
 * the model's feature count and x->stride >= x->ncols. Needs no
 * allocation. Returns 0, or RK_EINVAL (column count, NULL pointers,
 * unknown flags). Thread-safe: many threads may share one model.
 */
int rk_gbdt_predict(const rk_gbdt *m, const rk_dmat *x, float *out,
                    unsigned flags);

/*
 * Appends the model to out (whatever out held is kept). Format, version 1,
 * little-endian: "RKGBDT\r\n" magic, u32 version, u32 header size (32),
 * u64 JSON length, u64 rk_hash64(JSON, seed 0), then XGBoost's JSON model
 * itself, so a saved model stays readable by XGBoost and by people.
 * RK_ENOMEM / RK_ELIMIT from the buffer. Thread-safe (out is the caller's).
 */
int rk_gbdt_save(const rk_gbdt *m, rk_buf *out);

/*
 * Loads what rk_gbdt_save wrote from [p, p + n) (copied; p is not kept).
 * Checks magic, version, length and checksum before the JSON goes through
 * rk_gbdt_from_xgb_json's validation. Errors: RK_ECORRUPT (bad magic,
 * truncated, checksum mismatch, invalid model), RK_EVERSION (a format
 * version this build does not know), and those of rk_gbdt_from_xgb_json.
 * Thread-safe.
 */
int rk_gbdt_load(rk_gbdt **out, const void *p, size_t n, rk_err *err);

/* The XGBoost JSON model; borrowed, valid until rk_gbdt_destroy. Give it
 * to XGBoosterLoadModelFromBuffer to continue training or to inspect. */
const char *rk_gbdt_xgb_json(const rk_gbdt *m, size_t *len);

typedef struct rk_gbdt_info {
    size_t ntrees;          /* trees evaluated per row */
    size_t nfeatures;       /* columns a row must have */
    size_t nodes;           /* reachable nodes over all trees */
    uint32_t max_depth;     /* deepest tree */
    const char *objective;  /* XGBoost's name, e.g. "rank:ndcg" (static) */
    float base_score;       /* as XGBoost stores it (a probability for
                               the logistic objectives) */
    /* Rounds are ntrees / num_parallel_tree. best_iteration is the 0-based
     * round kept by early stopping, or the last round when the model has
     * no such record; best_score its validation metric, NaN if unknown. */
    int64_t best_iteration;
    double best_score;
    const char *kernels;    /* evaluator: "scalar" (blocked, the default)
                               or "ref" (RK_KERNELS=ref); static */
} rk_gbdt_info;

/* Fills *out. Never fails; thread-safe. */
void rk_gbdt_info_get(const rk_gbdt *m, rk_gbdt_info *out);

typedef enum rk_gbdt_importance_type {
    RK_GBDT_IMP_SPLITS = 0, /* number of splits on the feature ("weight") */
    RK_GBDT_IMP_GAIN = 1,   /* total loss reduction of those splits
                               (XGBoost's "total_gain") */
    RK_GBDT_IMP_COVER = 2   /* total hessian sum at those splits
                               ("total_cover") */
} rk_gbdt_importance_type;

/* Writes the importance of each feature to out[0..nfeatures); n is out's
 * capacity. Features never used get 0. Divide gain by splits for XGBoost's
 * average "gain". RK_EINVAL when n < nfeatures or the type is unknown.
 * Thread-safe. */
int rk_gbdt_importance(const rk_gbdt *m, rk_gbdt_importance_type type,
                       double *out, size_t n);

/* Frees the model. NULL is a no-op. */
void rk_gbdt_destroy(rk_gbdt *m);

/* ======================================================================== */
/* FTRL-Proximal logistic regression                                         */
/* ======================================================================== */
/*
 * Online logistic regression trained by FTRL-Proximal (McMahan et al.,
 * "Ad Click Prediction: a View from the Trenches", KDD 2013, Algorithm 1)
 * over `dim` hashed coordinates. Coordinate i keeps z_i and n_i (the sum of
 * its squared gradients); its weight is a function of them:
 *
 *   w_i = 0                                              if |z_i| <= l1
 *   w_i = -(z_i - sgn(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)  else
 *
 * so L1 produces exact zeros, and p(x) = sigmoid(w . x + b). The intercept
 * b (on by default) is one more coordinate with value 1 in every example,
 * trained by the same rule but without L1 or L2, since shrinking the base
 * rate towards 1/2 only hurts calibration.
 *
 * State is float, 16 bytes per coordinate (z, sqrt(n), the cached w and a
 * scratch word), allocated at create time: 64 MiB for dim = 2^22. Training
 * the same examples in the same order gives the same bytes on every CPU:
 * the AVX2 update kernel does exactly the reference's arithmetic, and the
 * sigmoid does not depend on the C library.
 *
 * Threads: predict, nnz, coord and save only read and may run at the same
 * time as each other; update and train write, and must not overlap with
 * anything else on the same model.
 */
typedef struct rk_ftrl rk_ftrl;

/* Labelled sparse examples for the batch trainers (FTRL and FM): example
 * i is x[i] with label y[i] in [0, 1] (soft labels allowed) and importance
 * weight w[i] >= 0, finite (w NULL = all 1). Borrowed for the call. */
typedef struct rk_sparse_set {
    const rk_sparse *x;
    const float *y;
    const float *w;
    size_t n;
} rk_sparse_set;

/* Hyper-parameters; defaults from rk_ftrl_params_default, tuned on the
 * Criteo sample (docs/ranking.md). */
typedef struct rk_ftrl_params {
    double alpha; /* learning-rate scale, > 0: 0.05 */
    double beta;  /* learning-rate smoothing, >= 0: 1 */
    double l1;    /* L1 strength, >= 0: 1 */
    double l2;    /* L2 strength, >= 0: 1 */
    int bias;     /* nonzero: keep an unregularised intercept (1) */
} rk_ftrl_params;

void rk_ftrl_params_default(rk_ftrl_params *p);

/* The largest dim a model accepts. */
#define RK_FTRL_MAX_DIM (1u << 30)

/* A fresh model (all state zero, so every weight is 0 and p = 1/2) over
 * coordinates [0, dim), 1 <= dim <= RK_FTRL_MAX_DIM. p NULL = defaults.
 * RK_EINVAL (bad dim or parameter), RK_ENOMEM. */
int rk_ftrl_create(rk_ftrl **out, uint32_t dim, const rk_ftrl_params *p,
                   rk_err *err);
void rk_ftrl_destroy(rk_ftrl *m);
uint32_t rk_ftrl_dim(const rk_ftrl *m);
void rk_ftrl_get_params(const rk_ftrl *m, rk_ftrl_params *out);

/* *p = P(y = 1 | x) with the current weights. RK_EINVAL when an index is
 * >= dim or a value is not finite (*p untouched). Read-only. */
int rk_ftrl_predict(const rk_ftrl *m, const rk_sparse *x, float *p);

/* One step of Algorithm 1 on example x with label y in [0, 1]: predicts,
 * then moves z and n of x's coordinates (and the intercept) with the
 * gradient weight * (p - y) * x_i. p_before (may be NULL) receives the
 * prediction made before the step, the "progressive validation" estimate.
 * A coordinate repeated in x is one coordinate whose value is the sum.
 * weight 0 predicts and changes nothing. RK_EINVAL (index >= dim,
 * non-finite value, y outside [0, 1], weight negative or not finite) with
 * the model unchanged; RK_ENOMEM only for an example whose repeated
 * coordinates need merging and that has more than 256 entries. */
int rk_ftrl_update(rk_ftrl *m, const rk_sparse *x, float y, float weight,
                   float *p_before);

typedef struct rk_ftrl_train_opts {
    uint32_t epochs; /* passes over the data, >= 1: 1 */
    int shuffle;     /* 0: the given (time) order, the default; else a new
                        permutation per epoch drawn from seed */
    uint64_t seed;   /* 1 */
} rk_ftrl_train_opts;

void rk_ftrl_train_opts_default(rk_ftrl_train_opts *o);

/* Forgets part of what the per-coordinate learning rates have seen: the
 * squared-gradient sum n of every coordinate (and the intercept's) becomes
 * keep * n, and z is rescaled so that every weight stays what it was. The
 * model predicts exactly as before, but the next updates move it as if
 * only that fraction of the past examples had been seen: a learner that
 * has converged on an old concept adapts to a new one at a younger
 * learning rate. keep in (0, 1]; 1 changes nothing. RK_EINVAL otherwise.
 * O(dim). */
int rk_ftrl_forget(rk_ftrl *m, double keep);

/* rk_ftrl_update over every example of data, epochs times, with the next
 * examples' state prefetched, which makes it several times faster than a
 * loop of updates over data larger than the caches. logloss (may be NULL)
 * receives the weighted mean progressive log loss of the last epoch
 * (each example scored before its own update). o NULL = defaults.
 * An invalid example stops training with RK_EINVAL and a message naming
 * it; the examples before it stay learned. RK_ENOMEM (shuffle order). */
int rk_ftrl_train(rk_ftrl *m, const rk_sparse_set *data,
                  const rk_ftrl_train_opts *o, double *logloss, rk_err *err);

/* Coordinates with a nonzero weight (the intercept not counted). O(dim). */
size_t rk_ftrl_nnz(const rk_ftrl *m);
/* State of coordinate i < dim, or of the intercept for i == dim: z, n and
 * the weight w (any pointer may be NULL). RK_EINVAL for i > dim, or
 * i == dim on a model without intercept. */
int rk_ftrl_coord(const rk_ftrl *m, uint32_t i, float *z, float *n,
                  float *w);

/* Appends the model to out: the parameters and the (z, n) state of every
 * coordinate that has been updated, little-endian, with magic, version
 * and a checksum (layout in docs/ranking.md). Deterministic.
 * RK_ENOMEM, RK_ELIMIT (out's maximum; out keeps its old content). */
int rk_ftrl_save(const rk_ftrl *m, rk_buf *out, rk_err *err);
/* A model from bytes written by rk_ftrl_save; everything is validated
 * before use. RK_ECORRUPT (not an FTRL model, truncated, checksum, bad
 * field; the message says which), RK_EVERSION (written by a newer
 * format), RK_ENOMEM. *out is NULL on failure. */
int rk_ftrl_load(rk_ftrl **out, const void *p, size_t n, rk_err *err);

/* ======================================================================== */
/* Factorization machine                                                     */
/* ======================================================================== */
/*
 * Second-order factorization machine (Rendle, ICDM 2010) for binary labels:
 *
 *   f(x) = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j
 *   p(x) = sigmoid(f(x))
 *
 * with k factors per coordinate, computed in O(k n) as
 * w0 + sum_i w_i x_i + 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2].
 * Trained on weighted log loss by SGD or AdaGrad, one example at a time,
 * with L2 on w and V applied to the coordinates an example touches (the
 * usual lazy form); w0 is not regularised. A coordinate repeated in one
 * example is one coordinate whose value is the sum, as everywhere.
 *
 * V starts at uniform noise of standard deviation init_std that is a
 * function of (seed, coordinate, factor) only, so a saved model stores
 * just the coordinates training has touched and load regenerates the rest.
 * Memory: 4 (k + 1) bytes and a bit per coordinate, allocated at create
 * time; AdaGrad doubles the bytes.
 *
 * Threads: predict and save only read and may run concurrently; update
 * and train must not overlap with anything else on the same model.
 */
typedef struct rk_fm rk_fm;

typedef enum rk_fm_optimizer {
    RK_FM_SGD = 0,     /* theta -= lr * g */
    RK_FM_ADAGRAD = 1  /* theta -= lr * g / (sqrt(sum of g^2) + 1e-7) */
} rk_fm_optimizer;

typedef struct rk_fm_params {
    uint32_t k;                /* factors, 1..RK_FM_MAX_K: 8 */
    rk_fm_optimizer optimizer; /* RK_FM_ADAGRAD */
    double lr;                 /* step size, > 0: 0.05 */
    double l2_w;               /* L2 on w, >= 0: 1e-5 */
    double l2_v;               /* L2 on V, >= 0: 1e-5 */
    double init_std;           /* V's initial spread, >= 0: 0.01 */
    uint64_t seed;             /* V's initial values: 1 */
} rk_fm_params;

#define RK_FM_MAX_K 256u
#define RK_FM_MAX_DIM (1u << 30)

void rk_fm_params_default(rk_fm_params *p);

/* A fresh model over coordinates [0, dim), 1 <= dim <= RK_FM_MAX_DIM;
 * p NULL = defaults. RK_EINVAL (bad dim or parameter), RK_ENOMEM. */
int rk_fm_create(rk_fm **out, uint32_t dim, const rk_fm_params *p,
                 rk_err *err);
void rk_fm_destroy(rk_fm *m);
uint32_t rk_fm_dim(const rk_fm *m);
void rk_fm_get_params(const rk_fm *m, rk_fm_params *out);

/* *p = P(y = 1 | x). RK_EINVAL (index >= dim, non-finite value) with *p
 * untouched; RK_ENOMEM only for an x of more than 256 entries (finding
 * and merging repeated coordinates in it may need memory). Read-only. */
int rk_fm_predict(const rk_fm *m, const rk_sparse *x, float *p);

/* One optimizer step on x with label y in [0, 1] and importance weight
 * (which scales the gradient). p_before (may be NULL) receives the
 * prediction before the step. Errors as rk_fm_predict, plus RK_EINVAL for
 * y or weight out of range; the model is unchanged on error. */
int rk_fm_update(rk_fm *m, const rk_sparse *x, float y, float weight,
                 float *p_before);

/* As rk_ftrl_forget for the AdaGrad sums: every one becomes keep times
 * itself (the weights are unchanged), so the next steps are larger. A
 * model trained with plain SGD has no sums and is unchanged. keep in
 * (0, 1]; RK_EINVAL otherwise. */
int rk_fm_forget(rk_fm *m, double keep);

typedef struct rk_fm_train_opts {
    uint32_t epochs;   /* maximum passes, >= 1: 10 */
    /* With a validation set: stop after this many epochs without a lower
     * validation log loss and restore the weights of the best epoch (the
     * AdaGrad sums keep their latest values). 0 = never stop early, but
     * the best epoch is still restored. 2 */
    uint32_t patience;
    int shuffle;       /* a new order per epoch drawn from seed: 1 */
    uint64_t seed;     /* 1 */
} rk_fm_train_opts;

void rk_fm_train_opts_default(rk_fm_train_opts *o);

typedef struct rk_fm_train_report {
    uint32_t epochs_run;   /* epochs trained */
    uint32_t best_epoch;   /* 1-based epoch whose weights the model has */
    double train_logloss;  /* weighted progressive log loss, last epoch */
    double valid_logloss;  /* best epoch's validation log loss; NaN if none */
} rk_fm_train_report;

/* Trains on `train` for up to o->epochs epochs; `valid` (may be NULL)
 * drives early stopping. o NULL = defaults; report may be NULL.
 * RK_EINVAL (an invalid example, named in the message; the model keeps
 * what was learned before it), RK_ENOMEM (order or best-epoch copy,
 * checked before training starts). */
int rk_fm_train(rk_fm *m, const rk_sparse_set *train,
                const rk_sparse_set *valid, const rk_fm_train_opts *o,
                rk_fm_train_report *report, rk_err *err);

/* Weighted mean log loss of the model on data (probabilities clamped to
 * [1e-7, 1 - 1e-7]). Errors as rk_fm_predict, naming the example. */
int rk_fm_logloss(const rk_fm *m, const rk_sparse_set *data, double *out,
                  rk_err *err);

/* Like rk_ftrl_save / rk_ftrl_load: parameters, w0, and w, V (and the
 * AdaGrad sums) of every touched coordinate. RK_ECORRUPT, RK_EVERSION,
 * RK_ENOMEM, RK_ELIMIT as there. */
int rk_fm_save(const rk_fm *m, rk_buf *out, rk_err *err);
int rk_fm_load(rk_fm **out, const void *p, size_t n, rk_err *err);

/* ======================================================================== */
/* Calibration                                                               */
/* ======================================================================== */
/*
 * Turning a model's score q in [0, 1] into a calibrated probability, in
 * two stages:
 *
 *  1. Down-sampling correction. A model trained after keeping only a
 *     fraction r of the negatives sees odds inflated by 1/r; the true
 *     probability is p = q / (q + (1 - q) / r). (DESIGN.md writes w for
 *     r: w is the sampling rate, not the negatives' importance weight 1/r.)
 *  2. Optionally a fitted map on a validation window: Platt scaling,
 *     p' = sigmoid(a logit(p) + b), or isotonic regression (weighted
 *     pool-adjacent-violators) applied as a step function or by linear
 *     interpolation, clipped to its end values outside the fitted range.
 *
 * The validation window's labels must follow the true distribution: if
 * its negatives were down-sampled too, give them weight 1/r.
 */

/* The down-sampling correction, q and the result in [0, 1], rate in
 * (0, 1] (1 leaves q unchanged). Thread-safe. */
double rk_calib_downsample(double q, double rate);

/* Platt scaling: fits a, b of p' = sigmoid(a logit(p) + b) on n points
 * (p[i] clamped to [1e-7, 1 - 1e-7], label y[i] in [0, 1], weight w[i] >= 0;
 * w NULL = all 1) by Newton's method with backtracking on the weighted log
 * loss (Lin, Lin and Weng 2007). smooth: Platt's targets (N+ + 1)/(N+ + 2)
 * and 1/(N- + 2) instead of 1 and 0, with N+- the weighted class totals.
 * RK_EINVAL (n = 0, zero total weight, bad values). Thread-safe. */
int rk_calib_platt_fit(const float *p, const float *y, const float *w,
                       size_t n, int smooth, double *a, double *b,
                       rk_err *err);

/* Isotonic regression by weighted pool-adjacent-violators: the
 * non-decreasing step function of x closest to y in weighted least
 * squares (ties in x pooled first). Writes its breakpoints: blocks in
 * increasing x, each as the points (first x, value) and, when the block
 * spans several x, (last x, value); adjacent blocks with equal values are
 * one block. out_x and out_y are allocated with rk_malloc (caller frees)
 * and hold *npts <= 2n points. RK_EINVAL (n = 0, zero total weight, bad
 * values), RK_ENOMEM. Thread-safe. */
int rk_calib_isotonic_fit(const float *x, const float *y, const float *w,
                          size_t n, float **out_x, float **out_y,
                          size_t *npts, rk_err *err);

typedef enum rk_calib_method {
    RK_CALIB_NONE = 0,     /* the down-sampling correction only */
    RK_CALIB_PLATT = 1,
    RK_CALIB_ISOTONIC = 2
} rk_calib_method;

typedef struct rk_calib_params {
    double neg_rate;        /* fraction of negatives kept, (0, 1]: 1 */
    rk_calib_method method; /* RK_CALIB_NONE */
    int platt_smooth;       /* Platt's target smoothing: 1 */
    int iso_step;           /* isotonic as a step function (1) or linear
                               interpolation between points (0, default) */
} rk_calib_params;

void rk_calib_params_default(rk_calib_params *p);

typedef struct rk_calib rk_calib;

/* An unfitted calibrator: it applies the down-sampling correction and,
 * until fitted, the identity for Platt or isotonic. p NULL = defaults.
 * RK_EINVAL, RK_ENOMEM. */
int rk_calib_create(rk_calib **out, const rk_calib_params *p, rk_err *err);
void rk_calib_destroy(rk_calib *c);
void rk_calib_get_params(const rk_calib *c, rk_calib_params *out);

/* Fits the method on n validation points: raw model scores q, labels y in
 * [0, 1], weights w (NULL = all 1), after the down-sampling correction.
 * Replaces a previous fit only on success. Errors as the fit functions. */
int rk_calib_fit(rk_calib *c, const float *q, const float *y, const float *w,
                 size_t n, rk_err *err);

/* The calibrated probability of raw score q (NaN gives NaN). Read-only:
 * any number of threads may apply one calibrator at once. apply_many does
 * n scores; p may be q (in place). */
float rk_calib_apply(const rk_calib *c, float q);
void rk_calib_apply_many(const rk_calib *c, const float *q, float *p,
                         size_t n);

/* The fitted Platt coefficients (1, 0 before a fit). */
void rk_calib_platt_coef(const rk_calib *c, double *a, double *b);
/* The fitted isotonic points, borrowed until the next fit or destroy
 * (*n = 0 before a fit). */
void rk_calib_isotonic_points(const rk_calib *c, const float **x,
                              const float **y, size_t *n);

/* Save and load, like rk_ftrl_save / rk_ftrl_load. */
int rk_calib_save(const rk_calib *c, rk_buf *out, rk_err *err);
int rk_calib_load(rk_calib **out, const void *p, size_t n, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_RANK_H */
