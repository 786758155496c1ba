/*
 * rk_train.h — offline evaluation of retrieval models and the artifacts
 * `rankd train` writes.
 *
 *  - metrics: Recall/NDCG/MAP/HitRate@K of one ranked list, catalog
 *    coverage and mean popularity of a set of lists (exact definitions
 *    below and in docs/retrieval.md, "Evaluation");
 *  - data: the positive-feedback events of a store (or of an array, for
 *    tests), read once and split many times;
 *  - protocols: held-out users (Liang et al. 2018), temporal,
 *    leave-last-one-out and impressions; each turns the data into one or
 *    more splits (a training matrix plus test cases);
 *  - models: a small interface the harness drives (train on an
 *    rk_interactions, score a user folded in from some items), with the
 *    popularity baseline here and adapters over the retrieval module's
 *    factor models;
 *  - the harness: every model on every split, full ranking over the whole
 *    catalog (never sampled negatives), a report printed as a table or
 *    written as JSON;
 *  - publishing: a trained model's files written under
 *    <data>/models/<name>/<version>/ and switched by atomic rename.
 *
 * Conventions as in rk_core.h: 0 or a negative RK_E* code, details in an
 * rk_err. Dense user and item ids are the store's.
 */
#ifndef RK_TRAIN_H
#define RK_TRAIN_H

#include "rk_core.h"
#include "rk_retrieval.h"
#include "rk_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Metrics                                                                   */
/* ======================================================================== */
/*
 * For one user, with R the relevant (held-out) items, |R| = nrel, the
 * ranking r_1, r_2, ... (best first) and rel_i = 1 when r_i is in R:
 *
 *   Recall@K  = |{i <= K : rel_i}| / min(K, |R|)          (Liang et al. 2018)
 *   NDCG@K    = DCG@K / IDCG@K, DCG@K = sum_{i<=K} rel_i / log2(i + 1),
 *               IDCG@K = sum_{i <= min(K, |R|)} 1 / log2(i + 1)
 *   MAP@K     = (1 / min(K, |R|)) sum_{i<=K} rel_i * Precision@i
 *   HitRate@K = 1 if any rel_i with i <= K, else 0
 *
 * A ranking shorter than K counts as padded with misses. With |R| = 0
 * every metric is 0 (the harness never scores such users). Across users
 * the harness averages these means.
 */
typedef struct rk_metrics_at {
    double recall, ndcg, map, hit;
} rk_metrics_at;

/* Metrics at cutoff k of one ranked list. ranked[0..nranked) are distinct
 * item ids, best first. rel[0..nrel_listed) are the relevant ids the
 * ranking can contain, sorted increasing and distinct; nrel >= nrel_listed
 * is |R|, which may also count relevant items no ranking can contain
 * (outside the catalog) — they are misses that still weigh in the
 * normalisations. Pure, thread-safe. */
void rk_metrics_at_k(const uint32_t *ranked, size_t nranked,
                     const uint32_t *rel, size_t nrel_listed, size_t nrel,
                     size_t k, rk_metrics_at *out);

/* Catalog coverage: the number of distinct ids among ids[0..n) that are
 * below nitems, divided by nitems (0 when nitems is 0). ids is typically
 * every top-K list concatenated. RK_ENOMEM (a bitmap of nitems bits). */
int rk_metrics_coverage(const uint32_t *ids, size_t n, uint32_t nitems,
                        double *out);

/* Mean popularity: the mean of pop[ids[i]] over i < n (0 when n is 0);
 * pop[j] is item j's number of training interactions. Thread-safe. */
double rk_metrics_mean_popularity(const uint32_t *ids, size_t n,
                                  const float *pop);

/* ======================================================================== */
/* Data                                                                      */
/* ======================================================================== */
/*
 * The feedback events of a dataset, kept raw so that every protocol can
 * cut them its own way. An event's weight is > 0 for feedback (its type's
 * weight, times the value when value_as_weight) and -1 for a negative
 * event, which resets the pair as in rk_interactions_from_triplets.
 * Immutable after building; thread-safe to read.
 */
typedef struct rk_eval_data rk_eval_data;

#define RK_EVAL_NO_REQUEST UINT32_MAX

/* One event given directly (tests, synthetic data). */
typedef struct rk_eval_event {
    uint32_t user, item;
    int64_t ts;          /* epoch ms */
    float weight;        /* > 0 feedback, < 0 negative */
    uint32_t request;    /* dense request id, or RK_EVAL_NO_REQUEST */
} rk_eval_event;

typedef struct rk_eval_data_opts {
    /* Which store events are feedback, as in rk_inter_opts: positive-role
     * events always; valued events (ratings, watch time) when value >=
     * valued_min; negative events reset the pair when negatives_remove.
     * Exposures never count. */
    double valued_min;     /* default 4 (MovieLens: ratings 4 and 5) */
    int value_as_weight;   /* default 0: weights are the type weights */
    int negatives_remove;  /* default 1 */
} rk_eval_data_opts;

void rk_eval_data_opts_default(rk_eval_data_opts *o);

/* Reads every event of the store once (one snapshot). Events with a
 * request_id keep it as a dense request number (first appearance order),
 * for the impressions protocol. Errors: store errors, RK_ENOMEM. */
int rk_eval_data_from_store(rk_eval_data **out, rk_store *s,
                            const rk_eval_data_opts *o, rk_err *err);
/* Copies n events; ids must be below nusers / nitems (RK_EINVAL). */
int rk_eval_data_from_events(rk_eval_data **out, uint32_t nusers,
                             uint32_t nitems, const rk_eval_event *ev,
                             size_t n, rk_err *err);
void rk_eval_data_free(rk_eval_data *d);

uint32_t rk_eval_data_nusers(const rk_eval_data *d);
uint32_t rk_eval_data_nitems(const rk_eval_data *d);
uint64_t rk_eval_data_nevents(const rk_eval_data *d);
/* All events collapsed into one matrix: the distinct positive
 * (user, item) pairs. Borrowed, valid until rk_eval_data_free. */
const rk_interactions *rk_eval_data_matrix(const rk_eval_data *d);

/* ======================================================================== */
/* Protocols and splits                                                      */
/* ======================================================================== */

typedef enum rk_eval_protocol {
    /* K folds over users with >= min_positives positive items; each test
     * user's items are shuffled (seeded), the last max(1, floor(
     * test_fraction * n)) are scored and the rest folded in; the model is
     * trained on the other folds' users only. */
    RK_EVAL_HELDOUT = 0,
    /* Train on events before split_ts; score each training user's
     * positive items from events at or after it that are not already in
     * their training history. */
    RK_EVAL_TEMPORAL,
    /* For each user with >= min_positives positive items, the one with
     * the latest time (ties broken by a seeded hash) is scored; everything
     * else, all users, is training. */
    RK_EVAL_LOO,
    /* Train on every event without a request id (for MIND: the users'
     * histories) and on the events of requests before split_ts; each
     * request at or after split_ts with a positive event (an impression
     * with a click) is a case whose scored items are its positive items
     * and whose fold-in is the user's training history. split_ts
     * INT64_MIN = the split_quantile of the request events' times; a
     * split_ts of 0 makes every request a case, trained on histories
     * only. */
    RK_EVAL_IMPRESSIONS,
    RK_EVAL_PROTOCOL_COUNT
} rk_eval_protocol;

/* "heldout", "temporal", "loo", "impressions"; never NULL. */
const char *rk_eval_protocol_name(rk_eval_protocol p);
/* RK_EINVAL listing the names otherwise. */
int rk_eval_protocol_parse(const char *s, rk_eval_protocol *out, rk_err *err);

#define RK_EVAL_MAX_K 16

typedef struct rk_eval_opts {
    rk_eval_protocol protocol;   /* default heldout */
    uint32_t folds;              /* heldout: default 5 (>= 2) */
    uint64_t seed;               /* default 42 */
    double test_fraction;        /* heldout: default 0.2, in (0, 1) */
    /* Users need this many distinct positive items to be evaluated; 0 =
     * the protocol's default: heldout 5, loo 2, temporal and impressions
     * 1 (counted in training). */
    uint32_t min_positives;
    /* temporal: events with ts < split_ts train. INT64_MIN (default) =
     * the split_quantile of the feedback event times: with the n times
     * sorted, split_ts = t[floor(q * n)] (0-based, clamped). impressions:
     * the same over the times of feedback events that carry a request. */
    int64_t split_ts;
    double split_quantile;       /* default 0.8 */
    /* Scored items outside the catalog (items with no training
     * interaction): 1 drops them (Liang et al.), 0 keeps them as relevant
     * items no ranking can contain. -1 (default) = the protocol's default:
     * 1 except for impressions, whose recall counts every click. */
    int restrict_catalog;
    uint32_t ks[RK_EVAL_MAX_K];  /* cutoffs, increasing; default 20 50 100 */
    size_t nks;
    unsigned threads;            /* 0 = one per CPU */
    const char *data_name;       /* recorded in the report (borrowed) */
    const rk_logger *log;        /* progress lines; may be NULL */
} rk_eval_opts;

void rk_eval_opts_default(rk_eval_opts *o);
/* Checks the options; RK_EINVAL with the reason. */
int rk_eval_opts_check(const rk_eval_opts *o, rk_err *err);
/* Number of splits the protocol makes (folds for heldout, else 1). */
uint32_t rk_eval_nsplits(const rk_eval_opts *o);

/*
 * One split. The training matrix is compact: its rows are the training
 * users (train_users[row] is the dense user id) and its columns the
 * catalog, the items with at least one training interaction
 * (catalog[col] is the dense item id, increasing). Test cases use
 * catalog columns too. Each case's fold-in items are excluded from its
 * ranking. Immutable; freed with rk_eval_split_free.
 */
typedef struct rk_eval_split {
    uint32_t index;              /* fold number */
    int64_t split_ts;            /* temporal: the time used, else 0 */
    rk_interactions *train;
    uint32_t *train_users;       /* train->nusers dense user ids */
    uint32_t *catalog;           /* train->nitems dense item ids */
    float *popularity;           /* per column: training users with it */
    uint32_t ncases;
    uint32_t *case_user;         /* dense user id of each case */
    uint64_t *foldin_ptr;        /* ncases + 1 */
    uint32_t *foldin_items;      /* columns, increasing per case */
    float *foldin_weight;
    uint64_t *scored_ptr;        /* ncases + 1 */
    uint32_t *scored_items;      /* columns, increasing per case */
    uint32_t *scored_total;      /* per case |R|: listed + outside catalog */
    uint64_t scored_in_catalog;  /* over all cases, before any restriction */
    uint64_t scored_all;
} rk_eval_split;

/* Makes split `index` (< rk_eval_nsplits) of d under o. Deterministic for
 * (d, o without threads/log, index). Errors: RK_EINVAL (bad options or
 * index; no test case), RK_ENOMEM. */
int rk_eval_split_make(const rk_eval_data *d, const rk_eval_opts *o,
                       uint32_t index, rk_eval_split **out, rk_err *err);
void rk_eval_split_free(rk_eval_split *s);

/* ======================================================================== */
/* Models                                                                    */
/* ======================================================================== */
/*
 * What the harness needs from a model. `self` is the model's own state.
 *  train:  fit on m (users x items, compact ids) using pool (may be
 *          NULL); may be called again to retrain from scratch.
 *  score:  write scores[0..m->nitems) for a user folded in from
 *          items[0..n) with weights (n may be 0). Must be thread-safe:
 *          the harness scores many users concurrently after train.
 *  params: append the model's parameters as one JSON object.
 *  save:   write the trained model's files into the existing directory
 *          dir (may be NULL: the model cannot be saved).
 *  destroy: free self.
 */
typedef struct rk_eval_model_ops {
    const char *kind;
    int (*train)(void *self, const rk_interactions *m, rk_pool *pool,
                 rk_err *err);
    int (*score)(const void *self, const uint32_t *items,
                 const float *weights, size_t n, float *scores, rk_err *err);
    int (*params)(const void *self, rk_buf *json);
    int (*save)(const void *self, const char *dir, rk_err *err);
    void (*destroy)(void *self);
} rk_eval_model_ops;

typedef struct rk_eval_model rk_eval_model;

/* Wraps self with ops (borrowed, must outlive the model) under a display
 * name (copied; NULL = ops->kind). The model owns self from here on, even
 * when this fails with RK_ENOMEM (then self is destroyed). */
int rk_eval_model_wrap(rk_eval_model **out, const char *name,
                       const rk_eval_model_ops *ops, void *self);
void rk_eval_model_destroy(rk_eval_model *m);
const char *rk_eval_model_name(const rk_eval_model *m);
const char *rk_eval_model_kind(const rk_eval_model *m);
int rk_eval_model_train(rk_eval_model *m, const rk_interactions *x,
                        rk_pool *pool, rk_err *err);
/* scores has room for the training matrix's nitems. Thread-safe. */
int rk_eval_model_score(const rk_eval_model *m, const uint32_t *items,
                        const float *weights, size_t n, float *scores,
                        rk_err *err);
int rk_eval_model_params(const rk_eval_model *m, rk_buf *json);
/* RK_EUNSUPPORTED when the model has no save. */
int rk_eval_model_save(const rk_eval_model *m, const char *dir, rk_err *err);

/* Popularity: an item's score is the number of training users who
 * interacted with it, whatever the user. Saved as popularity.bin (see
 * docs/retrieval.md). */
int rk_eval_popularity_create(rk_eval_model **out, rk_err *err);

/* iALS (rk_ials_train; o NULL = rk_ials_opts_default). A user is scored
 * with rk_ials_fold_in on their fold-in items and rk_ials_score_all. The
 * harness's pool replaces o->pool during training. Saved as ials.bin
 * (rk_ials_save). o is copied. */
int rk_eval_ials_create(rk_eval_model **out, const rk_ials_opts *o,
                        rk_err *err);
/* EASE (rk_ease_train; o NULL = defaults): scores are x . B over the
 * fold-in items. Saved as ease.bin (rk_ease_save). o is copied. */
int rk_eval_ease_create(rk_eval_model **out, const rk_ease_opts *o,
                        rk_err *err);
/* Trending (rk_popular, decayed counts as of the newest training
 * interaction; o NULL = defaults): every user gets the same scores.
 * Items with a zero score are left out of the ranking. Saved as
 * nothing (RK_EUNSUPPORTED): trending is rebuilt from the log. */
int rk_eval_trending_create(rk_eval_model **out, const rk_popular_opts *o,
                            rk_err *err);
/* Co-visitation (rk_covis_build on the training matrix; o NULL =
 * defaults): score(Y) = sum over fold-in items X of w_X * covis(X, Y);
 * items no fold-in item reaches are left out of the ranking, so the
 * lists can be shorter than K (the misses count). Saved as covis.bin. */
int rk_eval_covis_create(rk_eval_model **out, const rk_covis_opts *o,
                         rk_err *err);

/* ======================================================================== */
/* The harness                                                               */
/* ======================================================================== */

typedef struct rk_eval_report rk_eval_report;

/* Means over a split's test cases (recall, ndcg, map, hit) and over its
 * lists (coverage of the catalog, mean popularity of listed items). */
typedef struct rk_eval_metrics {
    double recall, ndcg, map, hit, coverage, popularity;
} rk_eval_metrics;

/*
 * Evaluates every model on every split of d under o: train on the split's
 * matrix, score each case from its fold-in items, rank the whole catalog
 * minus the fold-in items (ties: lower column first), take the top
 * max(ks) and compute the metrics. Cases are scored in parallel on
 * o->threads threads; results do not depend on the thread count.
 * The models are retrained per split. Errors: RK_EINVAL, RK_ENOMEM and
 * whatever a model returns.
 */
int rk_eval_run(const rk_eval_data *d, const rk_eval_opts *o,
                rk_eval_model *const *models, size_t nmodels,
                rk_eval_report **out, rk_err *err);
void rk_eval_report_free(rk_eval_report *r);

size_t rk_eval_report_nmodels(const rk_eval_report *r);
uint32_t rk_eval_report_nsplits(const rk_eval_report *r);
/* Metrics of model `model` at cutoff index `k` (into opts.ks): of split
 * `split`, or with split = -1 the mean over splits and, in *std (may be
 * NULL), their sample standard deviation (0 for one split). RK_EINVAL
 * for indices out of range. */
int rk_eval_report_get(const rk_eval_report *r, size_t model, size_t k,
                       int split, rk_eval_metrics *mean,
                       rk_eval_metrics *std);
/* The human-readable table: a header with data, protocol and
 * parameters, then one row per model and cutoff with mean ± std. */
void rk_eval_report_table(const rk_eval_report *r, FILE *f);
/* The whole report as one JSON document (see docs/retrieval.md). */
int rk_eval_report_json(const rk_eval_report *r, rk_buf *out);

/* ======================================================================== */
/* Publishing trained models                                                 */
/* ======================================================================== */

/*
 * Saves a trained model as a new version under models_dir/<name>/:
 * writes into models_dir/<name>/.tmp-<version>/ (the model's files and
 * meta.json = meta_json, a JSON object, fsync'd), renames it to
 * models_dir/<name>/<version>/ and then atomically points
 * models_dir/<name>/current (a symlink) at it, through the model registry
 * (below): the new version is promoted without a gate, the newest `keep`
 * versions (0 = 3) stay, and the current and previous versions are never
 * removed. Readers that follow `current` never see a half-written
 * version. *version (may be NULL) gets the number. Publishers of one name
 * take the registry's per-name lock, so concurrent publishers are safe.
 * Errors: RK_EIO (with the path), RK_EUNSUPPORTED, model errors.
 */
int rk_train_publish(const rk_eval_model *m, const char *models_dir,
                     const char *meta_json, unsigned keep, uint32_t *version,
                     rk_err *err);

/* ======================================================================== */
/* Ranking-model metrics                                                     */
/* ======================================================================== */
/*
 * Offline metrics of a click / relevance model from its predictions
 * (src/train/metrics_cls.c; definitions in docs/models.md). Rows come as
 * parallel arrays of n: score[i] (the model's output), label[i] and
 * weight[i] (an importance weight; weight == NULL means every row weighs
 * 1; weights must be finite and >= 0).
 *
 *  - AUC, PR-AUC and group AUC are binary: a row is positive when its
 *    label is > 0, so 0/1 clicks and graded relevance both work. Scores
 *    may be any finite numbers (margins or probabilities).
 *  - Log loss, normalized entropy and calibration read the score as a
 *    probability in [0, 1] and the label as the target in [0, 1] (soft
 *    labels allowed); anything else is RK_EINVAL.
 *
 *   AUC         weighted area under the ROC curve: the probability that a
 *               random positive scores above a random negative, ties
 *               counting one half (= sklearn roc_auc_score with
 *               sample_weight). O(n log n).
 *   PR-AUC      average precision as sklearn's average_precision_score:
 *               sum over distinct thresholds (descending) of
 *               (R_t - R_{t-1}) * P_t, weighted counts.
 *   log loss    -sum w (y log p + (1 - y) log(1 - p)) / sum w with p
 *               clamped to [RK_LOGLOSS_EPS, 1 - RK_LOGLOSS_EPS].
 *   NE          normalized entropy (He et al. 2014): log loss divided by
 *               the entropy of the base rate q = sum w y / sum w,
 *               -(q log q + (1 - q) log(1 - q)). Below 1 beats predicting
 *               the base rate.
 *   calibration sum w p / sum w y (1 = calibrated, > 1 over-predicts).
 *
 * A metric that is undefined on the data (AUC with one class only, NE
 * with a base rate of 0 or 1, calibration with no positive, anything on
 * zero total weight) comes back as NaN with a return of 0; bad input
 * (NaN score, negative weight, label out of range) is RK_EINVAL naming
 * the row. Functions that sort allocate n entries (RK_ENOMEM). All are
 * pure and thread-safe.
 */
#define RK_LOGLOSS_EPS 1e-15

int rk_metrics_auc(const float *score, const float *label,
                   const float *weight, size_t n, double *out, rk_err *err);
int rk_metrics_pr_auc(const float *score, const float *label,
                      const float *weight, size_t n, double *out,
                      rk_err *err);
int rk_metrics_logloss(const float *score, const float *label,
                       const float *weight, size_t n, double *out,
                       rk_err *err);
int rk_metrics_ne(const float *score, const float *label,
                  const float *weight, size_t n, double *out, rk_err *err);
int rk_metrics_calibration(const float *score, const float *label,
                           const float *weight, size_t n, double *out,
                           rk_err *err);

/* All five binary metrics in one pass and one sort. Scores must then be
 * probabilities (as for log loss). */
typedef struct rk_cls_metrics {
    double auc, pr_auc, logloss, ne, calibration;
    double weight;           /* sum of weights */
    double positive_weight;  /* sum of w * y */
    uint64_t rows;
} rk_cls_metrics;

int rk_metrics_cls(const float *score, const float *label,
                   const float *weight, size_t n, rk_cls_metrics *out,
                   rk_err *err);

/*
 * Metrics over groups (queries, requests or users). group[i] is row i's
 * group id; rows of a group need not be adjacent (they are gathered by a
 * stable sort), and group == NULL makes all rows one group. Within a
 * group documents are ranked by score, highest first, ties kept in row
 * order (as LightGBM's and XGBoost's stable sorts do).
 *
 *   NDCG@K  per group DCG@K / IDCG@K with DCG@K = sum_{i <= K}
 *           (2^rel_i - 1) / log2(i + 1) and IDCG@K the same over the
 *           labels sorted decreasing; rel is the label, a graded relevance
 *           in [0, 63]. K = 0 means no cutoff. The mean over groups, each
 *           counting once (LightGBM's and XGBoost's ndcg@K).
 *   MAP@K   per group (1 / R) sum_{i <= K, rel_i > 0} Precision@i with R
 *           the group's number of relevant rows (rel > 0) in the whole
 *           group, as XGBoost's map@K; K = 0 = no cutoff; averaged over
 *           groups.
 *
 * A group with no relevant row has no ideal ranking; `empty` says what it
 * counts as. RK_EMPTY_ONE (the default, 0) scores it 1 as XGBoost's
 * ndcg@K / map@K and LightGBM do, RK_EMPTY_ZERO scores it 0 (XGBoost's
 * "ndcg@K-", sklearn's ndcg_score), RK_EMPTY_SKIP leaves it out of the
 * mean. *ngroups (may be NULL) gets the number of groups averaged; with
 * none the result is NaN. Labels must be finite in [0, 63] (RK_EINVAL).
 */
typedef enum rk_empty_query {
    RK_EMPTY_ONE = 0,
    RK_EMPTY_ZERO = 1,
    RK_EMPTY_SKIP = 2
} rk_empty_query;

int rk_metrics_ndcg(const float *score, const float *label,
                    const uint64_t *group, size_t n, uint32_t k,
                    rk_empty_query empty, double *out, size_t *ngroups,
                    rk_err *err);
int rk_metrics_map(const float *score, const float *label,
                   const uint64_t *group, size_t n, uint32_t k,
                   rk_empty_query empty, double *out, size_t *ngroups,
                   rk_err *err);

/*
 * Group AUC (Zhou et al. 2018, the DIN paper): the AUC of each group
 * (user) that has both a positive and a negative row, averaged with the
 * group's impression weight (its number of rows, or sum of weights when
 * weight != NULL): GAUC = sum_g w_g AUC_g / sum_g w_g. Groups with one
 * class only are left out; *ngroups (may be NULL) gets the number used.
 * NaN when no group has both classes.
 */
int rk_metrics_gauc(const float *score, const float *label,
                    const float *weight, const uint64_t *group, size_t n,
                    double *out, size_t *ngroups, rk_err *err);

/* ======================================================================== */
/* Reference distributions                                                   */
/* ======================================================================== */
/*
 * What a feature (or the prediction) looked like in the training data,
 * stored with each model version (meta.json "reference") so that the
 * monitor can compare live windows with it (src/train/refhist.c, JSON in
 * docs/models.md).
 *
 * Numeric columns: NaN and infinities are counted as missing; the others
 * give count, min, max, mean and population std, and a histogram whose
 * bins are fixed by the training sample's quantiles. edges[0..nbins-1)
 * are the interior boundaries, strictly increasing; bin 0 is
 * x < edges[0], bin i is edges[i-1] <= x < edges[i], the last bin is
 * x >= edges[nbins-2]. The outer bins are open, so every live value falls
 * into some bin; rk_refhist_bin is the one definition both sides use.
 * Quantile cut points that repeat (ties, few distinct values) are merged,
 * so a binary feature gets 2 bins whatever nbins was asked for.
 *
 * Categorical (or hashed) columns: the top-K values by count (ties:
 * smaller value first) with exact counts, everything else summed in
 * `other`, and the number of distinct values (exact when distinct_exact;
 * otherwise a lower bound, past RK_REFHIST_MAX_DISTINCT distinct values,
 * where the top-K are found with the Misra-Gries summary and then counted
 * exactly, so any value above 1 / RK_REFHIST_MAX_DISTINCT of the rows is
 * kept).
 *
 * A histogram is a plain struct owned by whoever built or parsed it
 * (rk_refhist_free). Immutable after building; thread-safe to read.
 */
#define RK_REFHIST_MAX_BINS 1024
#define RK_REFHIST_MAX_TOP 1024
#define RK_REFHIST_MAX_DISTINCT (1u << 16)
#define RK_REFHIST_NAME_MAX 256

typedef enum rk_refhist_kind {
    RK_REFHIST_NUMERIC = 0,
    RK_REFHIST_CATEGORICAL = 1
} rk_refhist_kind;

typedef struct rk_refhist {
    char *name;               /* the feature's name, or "prediction" */
    rk_refhist_kind kind;
    uint64_t count;           /* non-missing values */
    uint64_t missing;
    /* numeric; min..std are NaN when count is 0 */
    double min, max, mean, std;
    uint32_t nbins;           /* >= 1 */
    double *edges;            /* nbins - 1 */
    uint64_t *counts;         /* nbins; they sum to count */
    /* categorical */
    uint32_t ntop;
    uint64_t *top_values;     /* ntop, by count decreasing */
    uint64_t *top_counts;     /* ntop */
    uint64_t other;           /* count - sum of top_counts */
    uint64_t distinct;
    int distinct_exact;
} rk_refhist;

/* Histogram of x[0], x[stride], ..., x[(n-1) * stride] (stride 0 = 1, so
 * a column of a row-major matrix works; x may be NULL when n is 0) with
 * at most nbins bins (0 = 20,
 * at most RK_REFHIST_MAX_BINS). name is copied (at most
 * RK_REFHIST_NAME_MAX bytes). Sorts a copy of the values: RK_ENOMEM;
 * RK_EINVAL for a bad name or nbins. */
int rk_refhist_numeric(rk_refhist **out, const char *name, const float *x,
                       size_t n, size_t stride, uint32_t nbins, rk_err *err);
/* Top-k (0 = 20, at most RK_REFHIST_MAX_TOP) of v[0..n); missing (may be
 * NULL) marks rows without a value (missing[i] != 0). Hash strings with
 * rk_hash64 first. RK_ENOMEM, RK_EINVAL. */
int rk_refhist_categorical(rk_refhist **out, const char *name,
                           const uint64_t *v, const uint8_t *missing,
                           size_t n, uint32_t k, rk_err *err);
void rk_refhist_free(rk_refhist *h);

/* The bin of a numeric histogram x falls into, or UINT32_MAX when x is
 * NaN or infinite (missing) or h is categorical. Thread-safe. */
uint32_t rk_refhist_bin(const rk_refhist *h, double x);

/* Appends h as one JSON object (docs/models.md, "Reference
 * distributions"); numbers are written so they read back exactly.
 * RK_ENOMEM / RK_ELIMIT from the buffer. */
int rk_refhist_json(const rk_refhist *h, rk_buf *out);
/* Parses and validates one such object: kind, sizes within the limits,
 * finite increasing edges, counts summing to count, top counts
 * decreasing and summing with `other` to count, min <= mean <= max.
 * RK_EPARSE (not JSON), RK_ECORRUPT (a field missing or inconsistent,
 * with its name), RK_ENOMEM. */
int rk_refhist_parse(rk_refhist **out, const char *json, size_t len,
                     rk_err *err);

/* ======================================================================== */
/* Model registry                                                            */
/* ======================================================================== */
/*
 * Ranking models (and the retrieval models rk_train_publish writes) live
 * under one models directory (<data>/models):
 *
 *   <models>/<name>/<version>/model.rk     the artifact (below)
 *   <models>/<name>/<version>/meta.json    metadata (below)
 *   <models>/<name>/current -> <version>   what servers load
 *   <models>/<name>/previous -> <version>  where a rollback goes
 *   <models>/<name>/registry.json          promotion stack and history
 *
 * Versions are 1, 2, ... and never reused. A version directory is
 * written under a hidden temporary name, fsync'd and renamed into place,
 * so a version visible under its number is always complete; `current`
 * and `previous` are switched by renaming a fresh symlink over them.
 * registry.json (rewritten atomically) is the commit point of promote
 * and rollback: the symlinks are derived from it and repaired from it by
 * the next registry operation if a crash fell in between. Writers of one
 * name serialise on an flock of <models>/<name>/.lock; readers take no
 * lock. Details and the file formats: docs/models.md.
 */

/* ---- artifacts ---- */
/*
 * An artifact file is
 *   "RKMODEL\0" | u32 format version | u32 model kind | u64 payload
 *   length | payload | u64 xxh3-64 (seed 0) of everything before it
 * all little-endian. The payload is the model's own serialisation
 * (rk_rank.h); the artifact adds identification and integrity.
 */
#define RK_ARTIFACT_VERSION 1u
#define RK_ARTIFACT_HEADER 24u    /* bytes before the payload */
#define RK_ARTIFACT_TRAILER 8u    /* the checksum */

/* Model kinds: codes are stored in files, so they are only appended. */
typedef enum rk_model_kind {
    RK_MODEL_UNKNOWN = 0,
    RK_MODEL_GBDT = 1,
    RK_MODEL_FTRL = 2,
    RK_MODEL_FM = 3,
    RK_MODEL_IALS = 4,
    RK_MODEL_EASE = 5,
    RK_MODEL_POPULARITY = 6,
    RK_MODEL_COVIS = 7,
    RK_MODEL_CALIBRATION = 8,
    RK_MODEL_KIND_COUNT
} rk_model_kind;

/* "gbdt", "ftrl", "fm", "ials", "ease", "popularity", "covis",
 * "calibration"; "unknown" for anything else. Never NULL. */
const char *rk_model_kind_name(uint32_t kind);
/* RK_EINVAL listing the names for anything else. */
int rk_model_kind_parse(const char *s, rk_model_kind *out, rk_err *err);

/* Writes dir/name as an artifact of kind with payload[0..len): into
 * dir/.name.tmp-<pid> first, fsync'd, renamed over dir/name, directory
 * fsync'd; a crash leaves the old file or the new one, never a mix.
 * RK_EIO with the path, RK_EINVAL (bad name: no '/', not starting with
 * '.'). Thread-safe for different targets. */
int rk_artifact_write(const char *dir, const char *name, rk_model_kind kind,
                      const void *payload, size_t len, rk_err *err);

typedef struct rk_artifact {
    uint32_t version;          /* RK_ARTIFACT_VERSION */
    uint32_t kind;             /* an rk_model_kind, possibly newer */
    uint64_t checksum;
    const void *payload;       /* len bytes */
    size_t len;
    void *mem;                 /* owned by rk_artifact_read's result */
} rk_artifact;

/* Reads and verifies the artifact at path. The payload is in rk_malloc
 * memory owned by *out until rk_artifact_free (never mmap'd, so the file
 * may be replaced or removed meanwhile). Errors name the path:
 * RK_ECORRUPT "bad magic", "truncated: N of M bytes", "N trailing
 * bytes", "checksum mismatch"; RK_EVERSION for another format version;
 * RK_EIO, RK_ENOMEM. A kind this build does not know is not an error:
 * the caller checks out->kind. On error *out is zeroed. */
int rk_artifact_read(const char *path, rk_artifact *out, rk_err *err);
/* The same checks on an image in memory; out->payload points into buf
 * (borrowed, valid while buf is) and out->mem is NULL. what names the
 * image in messages. */
int rk_artifact_parse(const void *buf, size_t n, const char *what,
                      rk_artifact *out, rk_err *err);
/* Appends the artifact image of (kind, payload) to out (tests, fuzzing,
 * network transfer). RK_ENOMEM / RK_ELIMIT. */
int rk_artifact_encode(rk_model_kind kind, const void *payload, size_t len,
                       rk_buf *out);
void rk_artifact_free(rk_artifact *a);

/* ---- metadata ---- */

#define RK_METRIC_NAME_MAX 64
#define RK_META_MAX_METRICS 64
#define RK_META_MAX_BYTES (64u << 20)

/* One named offline metric ("auc", "logloss", "ndcg@10", ...). */
typedef struct rk_metric {
    const char *name;
    double value;
} rk_metric;

/*
 * The contents of meta.json (schema in docs/models.md). For publishing
 * the caller fills the fields with borrowed pointers; from
 * rk_model_meta_parse everything is owned by the struct
 * (rk_model_meta_free). Times are epoch ms, 0 = unknown; a window is
 * [from, to).
 */
typedef struct rk_model_meta {
    const char *name;           /* filled in by the registry on publish */
    uint32_t version;           /* filled in by the registry on publish */
    const char *kind;           /* "gbdt", ... (rk_model_kind_name) */
    int64_t created_ms;         /* 0 on publish = now */
    int64_t train_from_ms, train_to_ms;
    int64_t valid_from_ms, valid_to_ms;
    uint64_t train_rows, valid_rows;
    uint64_t feature_schema_hash;   /* 0 = none */
    size_t nmetrics;                /* at most RK_META_MAX_METRICS */
    const rk_metric *metrics;       /* on the validation window */
    const char *params_json;        /* a JSON object or NULL */
    size_t nfeatures;
    rk_refhist *const *features;    /* reference of each input feature */
    const rk_refhist *prediction;   /* reference of the output; may be NULL */
    /* Set by the parser only: the artifact file recorded ("model.rk" or
     * NULL for retrieval models) and its size and checksum. */
    const char *artifact;
    uint64_t artifact_bytes, artifact_checksum;
    void *owned;                    /* parser's storage */
} rk_model_meta;

/* Appends meta as a JSON object. RK_EINVAL (bad metric names, params not
 * a JSON object), RK_ENOMEM. */
int rk_model_meta_json(const rk_model_meta *m, rk_buf *out, rk_err *err);
/* Parses a meta.json. Every field is optional (retrieval models written
 * by `rankd train` carry fewer); present fields must have the right type
 * and reference histograms must validate. RK_EPARSE, RK_ECORRUPT naming
 * the field, RK_EVERSION for a rankd_meta other than 1, RK_ENOMEM.
 * *out is zeroed on error. */
int rk_model_meta_parse(rk_model_meta *out, const char *json, size_t len,
                        rk_err *err);
void rk_model_meta_free(rk_model_meta *m);
/* The metric named name, or NULL. */
const rk_metric *rk_model_meta_metric(const rk_model_meta *m,
                                      const char *name);

/* ---- the promotion gate ---- */

typedef enum rk_metric_dir {
    RK_METRIC_AUTO = 0,     /* from the name: see rk_metric_direction */
    RK_METRIC_HIGHER = 1,   /* AUC, PR-AUC, NDCG, MAP, GAUC, recall */
    RK_METRIC_LOWER = 2,    /* log loss, NE, RMSE */
    RK_METRIC_TARGET_ONE = 3 /* calibration: |x - 1| lower is better */
} rk_metric_dir;

/* The direction of a metric name: higher for auc, gauc, pr_auc and for
 * ndcg, map, recall, hit, precision alone or followed by "@K" or "_..."
 * ("ndcg@10", "hit_rate"); lower for logloss, ne, rmse, mae; target one
 * for calibration; RK_METRIC_AUTO when unknown. Thread-safe. */
rk_metric_dir rk_metric_direction(const char *name);

/* One rule: the candidate may be worse than the current model on metric
 * by at most max_loss (absolute, or a fraction of the current value's
 * magnitude when relative). A candidate without the metric (or NaN)
 * fails when the rule is required and is skipped otherwise; a current
 * model without it skips the rule. */
typedef struct rk_gate_rule {
    const char *metric;
    rk_metric_dir dir;      /* AUTO = rk_metric_direction(metric) */
    double max_loss;        /* >= 0 */
    int relative;
    int required;
} rk_gate_rule;

typedef struct rk_gate_opts {
    /* nrules == 0: every metric both sides have with a known direction,
     * max_loss 0.001 absolute, not required. */
    const rk_gate_rule *rules;
    size_t nrules;
    /* Both sides must have been measured on the same validation window
     * (when both know theirs); 1 skips that check. */
    int allow_window_mismatch;
} rk_gate_opts;

/* Metrics of one model on one validation window. */
typedef struct rk_metric_set {
    const rk_metric *metrics;
    size_t n;
    int64_t valid_from_ms, valid_to_ms;   /* 0 = unknown */
} rk_metric_set;

#define RK_GATE_REASON_MAX 1024
typedef struct rk_gate_decision {
    int pass;
    char reason[RK_GATE_REASON_MAX];   /* one line, e.g. "auc 0.7801 vs
                                        * 0.7850 (-0.0049, allowed
                                        * -0.0010): worse" */
} rk_gate_decision;

/* Decides whether cand may replace cur. RK_EINVAL for a bad rule
 * (unknown direction, negative max_loss). o NULL = defaults. Pure and
 * thread-safe. */
int rk_registry_gate(const rk_metric_set *cand, const rk_metric_set *cur,
                     const rk_gate_opts *o, rk_gate_decision *out,
                     rk_err *err);

/* ---- the registry ---- */

typedef struct rk_registry rk_registry;

typedef struct rk_registry_opts {
    /* Versions kept per name: the newest `keep` plus whatever is current
     * or previous, which are never deleted (0 = 5). */
    unsigned keep;
} rk_registry_opts;

/* Opens the models directory (created if missing). o NULL = defaults.
 * RK_EIO, RK_ENOMEM. The handle is not thread-safe; processes may share
 * the directory (writers lock per name). */
int rk_registry_open(rk_registry **out, const char *models_dir,
                     const rk_registry_opts *o, rk_err *err);
void rk_registry_close(rk_registry *r);
const char *rk_registry_dir(const rk_registry *r);

typedef enum rk_version_status {
    RK_VERSION_CANDIDATE = 0,   /* written, never promoted */
    RK_VERSION_CURRENT = 1,
    RK_VERSION_PREVIOUS = 2,    /* where the next rollback goes */
    RK_VERSION_RETIRED = 3,     /* was current, older than previous */
    RK_VERSION_ROLLED_BACK = 4  /* was current, rolled back */
} rk_version_status;

/* "candidate", "current", "previous", "retired", "rolled_back". */
const char *rk_version_status_name(rk_version_status s);

typedef struct rk_version_info {
    uint32_t version;
    rk_version_status status;
    rk_model_meta meta;        /* zeroed when meta.json is unreadable */
    char *meta_error;          /* NULL, or why meta.json is unreadable */
    /* The last gate decision recorded for this version. */
    int gated;                 /* 0: never gated */
    int gate_pass;
    char *gate_reason;
} rk_version_info;

/* The model names (directories) in sorted order; *names is an array of
 * strings, everything rk_malloc'd (rk_registry_names_free). */
int rk_registry_names(rk_registry *r, char ***names, size_t *n, rk_err *err);
void rk_registry_names_free(char **names, size_t n);
/* Every version of name, newest first, with metadata and status.
 * RK_ENOTFOUND when there is no such model. Free with
 * rk_registry_versions_free. */
int rk_registry_versions(rk_registry *r, const char *name,
                         rk_version_info **out, size_t *n, rk_err *err);
void rk_registry_versions_free(rk_version_info *v, size_t n);
/* Frees what one rk_version_info owns and zeroes it. */
void rk_version_info_clear(rk_version_info *v);
/* One version (0 = the current one): RK_ENOTFOUND for an unknown name
 * or version (the message lists what exists). *out owns its contents:
 * release them with rk_version_info_clear. */
int rk_registry_show(rk_registry *r, const char *name, uint32_t version,
                     rk_version_info *out, rk_err *err);
/* The current and previous versions (0 = none). RK_ENOTFOUND. */
int rk_registry_current(rk_registry *r, const char *name, uint32_t *current,
                        uint32_t *previous, rk_err *err);

/* Makes version current; the old current becomes previous. Promoting the
 * current version changes nothing. No gate: this is the operator's call.
 * RK_ENOTFOUND (the message lists the versions), RK_EINVAL (version 0),
 * RK_EIO, RK_ECORRUPT (a damaged registry.json, named). */
int rk_registry_promote(rk_registry *r, const char *name, uint32_t version,
                        rk_err *err);
/* Undoes the last promotion: the current version is marked rolled back
 * and the previous one becomes current; the one promoted before that
 * becomes previous. A second rollback therefore goes one step further
 * back, never back and forth; it fails with RK_ESTATE when there is no
 * earlier version. *now (may be NULL) gets the new current version. */
int rk_registry_rollback(rk_registry *r, const char *name, uint32_t *now,
                         rk_err *err);

typedef struct rk_publish_opts {
    /* NULL: promote unconditionally. Else gate the candidate against the
     * current version and promote only if it passes (or there is no
     * current version). */
    const rk_gate_opts *gate;
    /* The current model's metrics on the candidate's validation window;
     * NULL = the metrics in the current version's meta.json (the gate
     * then fails on a window mismatch unless allowed). */
    const rk_metric_set *current;
    int no_promote;            /* write a candidate only */
} rk_publish_opts;

typedef struct rk_publish_result {
    uint32_t version;
    int promoted;
    char reason[RK_GATE_REASON_MAX];   /* why (not) promoted */
} rk_publish_result;

/* Writes a new version of meta->name: model.rk (an artifact of kind with
 * payload[0..len)) and meta.json (meta with name, version, kind, created
 * and artifact filled in), as one directory made visible by rename; then
 * gates, promotes and removes versions beyond `keep`. A failing gate is
 * not an error: the version stays a candidate and res->reason says why;
 * the decision is recorded in registry.json. o NULL = promote
 * unconditionally. An error after the directory is in place leaves the
 * version as a candidate (res->version says which); a failure to remove
 * old versions is not an error (the next publish retries). RK_EINVAL
 * (name: 1-200 letters, digits, '_', '.', '-', not starting with '.';
 * bad metric names or params), RK_EIO, RK_ENOMEM, RK_ECORRUPT. */
int rk_registry_publish(rk_registry *r, const rk_model_meta *meta,
                        rk_model_kind kind, const void *payload, size_t len,
                        const rk_publish_opts *o, rk_publish_result *res,
                        rk_err *err);

/* ======================================================================== */
/* Rankers                                                                   */
/* ======================================================================== */
/*
 * One interface over the ranking models of rk_rank.h for training
 * drivers, `rankd train --ranker` and serving: trains GBDT, FTRL or FM on
 * an rk_trainset (dense export for trees, sparse for the linear models),
 * fits the calibration on the validation set, predicts calibrated
 * probabilities (binary task) or ranking scores (rank task), evaluates
 * every offline metric, and serialises model + calibration as one
 * payload for an artifact. A trained ranker is immutable: any number of
 * threads may predict with it at once.
 */
#include "rk_features.h"
#include "rk_rank.h"

typedef enum rk_ranker_kind {
    RK_RANKER_GBDT = 0,
    RK_RANKER_FTRL = 1,
    RK_RANKER_FM = 2
} rk_ranker_kind;

typedef enum rk_ranker_task {
    RK_TASK_BINARY = 0,  /* labels > 0 are positives; output P(positive) */
    RK_TASK_RANK = 1     /* graded labels within query groups; output a
                            score (GBDT: LambdaMART, rank:ndcg; FTRL/FM:
                            pointwise on label > 0) */
} rk_ranker_task;

typedef struct rk_ranker_opts {
    rk_ranker_kind kind;            /* RK_RANKER_GBDT */
    rk_ranker_task task;            /* RK_TASK_BINARY */
    rk_gbdt_params gbdt;            /* objective set from task */
    uint32_t gbdt_sparse_cols;      /* hashed coordinates folded into this
                                       many extra tree columns (0) */
    rk_ftrl_params ftrl;
    rk_ftrl_train_opts ftrl_train;
    rk_fm_params fm;
    rk_fm_train_opts fm_train;
    rk_calib_method calib;          /* binary only, fitted on valid: NONE */
    uint32_t ndcg_k;                /* cutoff of ndcg@k / map@k: 10 */
} rk_ranker_opts;

void rk_ranker_opts_default(rk_ranker_opts *o);
/* "gbdt", "ftrl", "fm"; RK_EINVAL listing the names otherwise. */
int rk_ranker_kind_parse(const char *s, rk_ranker_kind *out, rk_err *err);
const char *rk_ranker_kind_name(rk_ranker_kind k);

typedef struct rk_ranker rk_ranker;

/* Trains on `train`; `valid` (may be NULL) drives GBDT/FM early stopping
 * when configured and the calibration fit. The set's down-sampling record
 * is honoured: negatives kept at rate r without reweighting are corrected
 * by p = q / (q + (1 - q) / r) before calibration. Errors: those of the
 * models and exports (RK_EINVAL naming the problem, RK_ENOMEM,
 * RK_ELIMIT). */
int rk_ranker_train(rk_ranker **out, const rk_trainset *train,
                    const rk_trainset *valid, const rk_ranker_opts *o,
                    rk_err *err);
void rk_ranker_destroy(rk_ranker *r);

rk_ranker_kind rk_ranker_get_kind(const rk_ranker *r);
rk_ranker_task rk_ranker_get_task(const rk_ranker *r);
/* Borrowed; valid for the ranker's lifetime. */
const rk_gbdt *rk_ranker_gbdt(const rk_ranker *r);
/* The feature spec the ranker's inputs come from, as rk_feat_spec_save
 * bytes, kept and saved with the ranker so that a served model computes
 * its own features (rk_feat_spec_load). set copies (RK_ENOMEM); get
 * borrows (NULL, *n = 0 when none). */
int rk_ranker_set_spec(rk_ranker *r, const void *p, size_t n);
const void *rk_ranker_spec(const rk_ranker *r, size_t *n);

/* Scores n feature vectors (the widths the ranker was trained with:
 * RK_EINVAL otherwise) into out: calibrated probabilities for the binary
 * task, scores for the rank task. Thread-safe; allocates scratch. */
int rk_ranker_predict(const rk_ranker *r, const rk_fvec *x, size_t n,
                      float *out, rk_err *err);
/* The same over every row of a set, in its order. */
int rk_ranker_predict_set(const rk_ranker *r, const rk_trainset *t,
                          float *out, rk_err *err);

/* Online learning: one step of the linear model (FTRL or FM) on vector x
 * with label y (> 0: positive) and importance weight w, after the same
 * input transform as prediction; *p_before (may be NULL) receives the
 * calibrated prediction made before the step. The calibration and the
 * fitted transform stay as trained. Not thread-safe: update a private
 * copy (rk_ranker_clone) and serve clones of it. RK_EINVAL for a GBDT
 * ranker ("does not learn online"), a vector of another width, hashed
 * coordinates beyond the model's bits, a non-finite value or a bad
 * weight, with the model unchanged; RK_ENOMEM. */
int rk_ranker_update(rk_ranker *r, const rk_fvec *x, float y, float w,
                     float *p_before, rk_err *err);
/* A deep copy (through rk_ranker_save / rk_ranker_load). RK_ENOMEM. */
int rk_ranker_clone(rk_ranker **out, const rk_ranker *r, rk_err *err);
/* Forgets part of the online learner's past (rk_ftrl_forget, rk_fm_forget):
 * the model predicts as before and learns from the next examples at the
 * rate of one that has seen keep times as much. For a learner that meets
 * a changed concept. keep in (0, 1]. RK_EINVAL for a GBDT ranker or keep
 * out of range. */
int rk_ranker_forget(rk_ranker *r, double keep, rk_err *err);

/* Offline metrics of the ranker on a set. Binary task: auc, pr_auc,
 * logloss, ne, calibration, plus gauc when rows carry groups; rank task:
 * ndcg@k and map@k over groups (and the binary ones on label > 0).
 * Names as the registry's gate expects. */
#define RK_RANKER_MAX_METRICS 12
typedef struct rk_ranker_eval {
    size_t n;
    rk_metric m[RK_RANKER_MAX_METRICS];
    char names[RK_RANKER_MAX_METRICS][RK_METRIC_NAME_MAX];
    uint64_t rows;
    double positives;
} rk_ranker_eval;
int rk_ranker_evaluate(const rk_ranker *r, const rk_trainset *t,
                       rk_ranker_eval *out, rk_err *err);
/* A metric's value by name, NaN when absent. */
double rk_ranker_eval_get(const rk_ranker_eval *e, const char *name);

/* Payload (little-endian): "RKRANKR\n", u32 version 1, u32 kind, u32 task,
 * u32 ndense, u32 hash_bits, u32 gbdt_sparse_cols, u32 ndcg_k, f64
 * neg_rate, u64 model bytes, model (rk_gbdt/ftrl/fm_save), u64 calib
 * bytes, calib (rk_calib_save), u64 spec bytes, spec. The registry's artifact adds the
 * checksum. Load validates every length and the models' own formats:
 * RK_ECORRUPT, RK_EVERSION, RK_ENOMEM. */
int rk_ranker_save(const rk_ranker *r, rk_buf *out, rk_err *err);
int rk_ranker_load(rk_ranker **out, const void *p, size_t n, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_TRAIN_H */
