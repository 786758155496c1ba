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
 * models_dir/<name>/current (a symlink) at it. Versions are 1, 2, ...;
 * only the newest `keep` versions stay (0 = 3). Readers that follow
 * `current` never see a half-written version. *version (may be NULL)
 * gets the number. Not safe against concurrent publishers of one name.
 * Errors: RK_EIO (with the path), RK_EUNSUPPORTED, model errors.
 */
int rk_train_publish(const rk_eval_model *m, const char *models_dir,
                     const char *meta_json, unsigned keep, uint32_t *version,
                     rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_TRAIN_H */
