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
/* An uninitialised matrix with room for nnz entries and a zeroed user_ptr,
 * for code that fills a CSR matrix itself (splits, samplers). NULL when
 * out of memory. */
rk_interactions *rk_interactions_alloc(uint32_t nusers, uint32_t nitems,
                                       uint64_t nnz);
void rk_interactions_free(rk_interactions *m);

/* ======================================================================== */
/* ANN index (HNSW, flat)                                     [ann section] */
/* ======================================================================== */
/*
 * Maximum inner-product search over item vectors, labelled by 32-bit ids
 * (dense item ids). Two index types share one API:
 *  - RK_ANN_HNSW: the hierarchical navigable small world graph (Malkov &
 *    Yashunin), float32 or int8 vectors;
 *  - RK_ANN_FLAT: an exact brute-force scan of float32 vectors, for tests,
 *    ground truth and small catalogs.
 * Scores are inner products, higher is better. With RK_ANN_COSINE vectors
 * are normalized on insert and queries at search, so scores are cosines.
 * With RK_ANN_INT8 every vector is stored as int8 codes with one float
 * scale (symmetric: x ~ scale * codes, scale = max|x| / 127) and searched
 * as float query x int8 codes; scores are then approximate unless rerank
 * keeps float copies to re-score the final candidates exactly.
 *
 * Capacity is fixed at creation (max_elements slots) so memory is bounded:
 * deleted and replaced entries keep their slot (a tombstone that still
 * guides the graph but is never returned) until the index is rebuilt.
 *
 * Thread safety: an internal reader/writer lock. Any number of threads may
 * search (and save) at once; rk_ann_add, rk_ann_add_batch and
 * rk_ann_delete take the write lock, so they wait for running searches and
 * searches wait for them. At most max_searchers searches have scratch
 * space at a time; further ones wait for one to finish.
 *
 * Files (rk_ann_save / rk_ann_load): a 256-byte header {magic "RKANNIDX",
 * format version, parameters, counts, section table, xxh3 checksums of the
 * header and of every payload section} and 64-byte aligned sections.
 * Loading maps the file read-only and verifies checksums and structure; a
 * damaged, truncated or foreign file is refused with RK_ECORRUPT (or
 * RK_EVERSION for another format version) and a message naming the file
 * and what is wrong.
 */
typedef struct rk_ann rk_ann;

typedef enum rk_ann_type { RK_ANN_HNSW = 0, RK_ANN_FLAT = 1 } rk_ann_type;
typedef enum rk_ann_metric { RK_ANN_IP = 0, RK_ANN_COSINE = 1 } rk_ann_metric;
typedef enum rk_ann_quant { RK_ANN_F32 = 0, RK_ANN_INT8 = 1 } rk_ann_quant;

#define RK_ANN_MAX_DIM 4096
#define RK_ANN_MAX_M 64            /* level 0 keeps 2M links */
#define RK_ANN_MAX_EF 65536        /* also the largest k */
#define RK_ANN_MAX_ELEMENTS (1u << 30)

typedef struct rk_ann_params {
    rk_ann_type type;          /* default RK_ANN_HNSW */
    rk_ann_metric metric;      /* default RK_ANN_IP */
    rk_ann_quant quant;        /* HNSW only (FLAT needs F32); default F32 */
    int rerank;                /* INT8: keep float copies and re-score the
                                  ef candidates exactly (default 0) */
    uint32_t dim;              /* required: 1..RK_ANN_MAX_DIM */
    uint32_t M;                /* links per node and upper level (2M on
                                  level 0); 2..RK_ANN_MAX_M, default 16 */
    uint32_t ef_construction;  /* insertion beam, default 200 */
    uint32_t ef_search;        /* search beam when a search passes ef 0,
                                  default 64 */
    uint32_t max_elements;     /* required: capacity in slots */
    uint32_t max_searchers;    /* concurrent searches with scratch space;
                                  0 = 16 */
    uint64_t seed;             /* level draws; default 42 */
} rk_ann_params;

/* Fills the defaults above (dim and max_elements 0: caller must set). */
void rk_ann_params_default(rk_ann_params *p);

/* Creates an empty index; allocates the slot arrays for max_elements up
 * front (pages are touched only as slots fill). Errors: RK_EINVAL for
 * parameters out of range (message says which), RK_ENOMEM, and from the
 * kernel choice RK_EINVAL for a bad RK_KERNELS or RK_EUNSUPPORTED for
 * RK_KERNELS=avx2 on a CPU without AVX2/FMA. */
int rk_ann_create(rk_ann **out, const rk_ann_params *p, rk_err *err);
/* Frees the index (and unmaps a loaded file). NULL is a no-op. No search
 * may be running. */
void rk_ann_destroy(rk_ann *a);

/* Inserts vec (dim floats, copied) under label. A label already present
 * is replaced: the new vector gets a new slot and the old one becomes a
 * tombstone. For HNSW a single-threaded sequence of adds builds the same
 * graph for the same seed every time. Errors: RK_EINVAL (NULL vec, or a
 * non-finite component), RK_ELIMIT (all max_elements slots used),
 * RK_ESTATE (index loaded read-only), RK_ENOMEM; on error the index is
 * unchanged. */
int rk_ann_add(rk_ann *a, uint32_t label, const float *vec, rk_err *err);
/* Inserts n vectors (row i at vecs + i * dim) with labels[i]. With a pool,
 * HNSW inserts them from the pool's threads and the caller's (the graph
 * then depends on thread timing; levels do not); without, in order, like
 * n rk_ann_add calls. All or nothing: RK_ELIMIT, RK_ENOMEM, RK_EINVAL and
 * RK_ESTATE are reported before anything changes. */
int rk_ann_add_batch(rk_ann *a, const uint32_t *labels, const float *vecs,
                     size_t n, rk_pool *pool, rk_err *err);
/* Tombstones label: it is never returned again (until re-added). Works on
 * loaded indexes too (tombstones live in memory; save to persist them).
 * RK_ENOTFOUND if label is absent or already deleted. */
int rk_ann_delete(rk_ann *a, uint32_t label);
/* 1 if label is present and not deleted, else 0. */
int rk_ann_contains(rk_ann *a, uint32_t label);

/* The k best live labels for query (dim floats), best first, into
 * labels[0..*n_out) and scores (may be NULL); *n_out < k only when fewer
 * than k labels are live (HNSW may also return fewer on a graph cut off
 * by deletions). ef is the HNSW beam (0 = ef_search; raised to k when
 * smaller), ignored by FLAT. Thread-safe. Errors: RK_EINVAL (k 0 or above
 * RK_ANN_MAX_EF, ef above it, NULL pointers, a non-finite query
 * component), RK_ENOMEM (scratch space). */
int rk_ann_search(rk_ann *a, const float *query, uint32_t k, uint32_t ef,
                  uint32_t *labels, float *scores, uint32_t *n_out);
/* nq searches: query i at queries + i * dim, its results at labels + i * k
 * and scores + i * k (scores may be NULL), its count in n_out[i]. HNSW
 * spreads the queries over pool's threads when pool is not NULL. FLAT
 * computes scores a block at a time with SGEMM (OpenBLAS's threads), the
 * fast way to get exact ground truth or full rankings. */
int rk_ann_search_batch(rk_ann *a, const float *queries, size_t nq,
                        uint32_t k, uint32_t ef, uint32_t *labels,
                        float *scores, uint32_t *n_out, rk_pool *pool);

/* Turns the exact float re-rank of an int8 index built with rerank on or
 * off for later searches (the graph is the same either way: it is built
 * from the int8 codes). Waits for running searches. RK_ESTATE when the
 * index keeps no float copies (not int8, or built without rerank). */
int rk_ann_set_rerank(rk_ann *a, int on);

/* Live (not deleted) labels. */
size_t rk_ann_size(rk_ann *a);
/* Bytes held: heap arrays (sized by capacity), the label map, search
 * scratch, and the mapped file for a loaded index. */
size_t rk_ann_memory_bytes(rk_ann *a);
/* The parameters (max_elements is the capacity). */
void rk_ann_get_params(const rk_ann *a, rk_ann_params *out);
/* Name of the kernel set in use: "avx2" or "ref". Static storage. */
const char *rk_ann_kernels(const rk_ann *a);

/* Writes the index to path: a temporary file in the same directory,
 * fsync, rename over path, fsync of the directory, so path holds either
 * the old or the new index after a crash. Runs under the read lock
 * (searches continue). Errors: RK_EIO (message names the file and the
 * system error), RK_ENOMEM. */
int rk_ann_save(rk_ann *a, const char *path, rk_err *err);

/* Load flags. */
#define RK_ANN_LOAD_COPY 1u  /* copy into heap memory with the saved
                                capacity, so inserts work */
/* Opens an index file. By default the file is mapped read-only and the
 * graph and vectors are used in place (pages load on demand after the
 * checksum pass); such an index searches and deletes (tombstones and the
 * label map are in memory) but refuses inserts with RK_ESTATE. With
 * RK_ANN_LOAD_COPY everything is copied to the heap and the index behaves
 * like a created one. Errors: RK_EIO (cannot open or map), RK_ECORRUPT
 * (bad magic, checksum mismatch, truncated, inconsistent structure),
 * RK_EVERSION, RK_ENOMEM, and the RK_KERNELS errors of rk_ann_create; the
 * message starts with path. */
int rk_ann_load(rk_ann **out, const char *path, unsigned flags, rk_err *err);

/* ======================================================================== */
/* Factor models: iALS, EASE, fold-in                       [factor section] */
/* ======================================================================== */
/*
 * iALS (Hu, Koren, Volinsky 2008, with the unobserved weight and
 * frequency-scaled regularization of Rendle et al. 2022). With x_u the
 * user and y_i the item factors (k floats each) and s = x_u . y_i, training
 * minimises
 *
 *   L = sum_{(u,i) observed} c_ui (1 - s)^2
 *     + a0 * sum_{(u,i) not observed} s^2
 *     + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2
 *
 *   c_ui     = 1 + alpha * f(w_ui), f(w) = w, or log(1 + w / log_eps) when
 *              log_eps > 0; w_ui is the interactions' weight (> 0)
 *   a0       = unobserved_weight (1 is Hu et al.; Rendle et al. tune it,
 *              typically well below 1, with alpha = 0)
 *   lambda_u = reg * (n_u + a0 * nitems)^reg_exp, n_u = items of user u;
 *   lambda_i = reg * (n_i + a0 * nusers)^reg_exp, n_i = users of item i.
 *              reg_exp 0 is plain L2; 1 is Rendle et al.'s frequency
 *              scaling (lambda grows with the weight mass of the row).
 *
 * Each iteration solves every item against the fixed user factors, then
 * every user against the fixed item factors, each row from its normal
 * equations
 *
 *   (a0 G + sum_i (c_ui - a0) y_i y_i^T + lambda_u I) x_u = sum_i c_ui y_i
 *
 * with G = Y^T Y (the Gramian trick: the unobserved part costs k^2 per row,
 * not k * nitems), exactly (Cholesky) or with cg_steps conjugate-gradient
 * steps warm-started from the row's previous value (as the `implicit`
 * library does). Because users are solved last, a trained model's user
 * factors are (for the Cholesky solver, exactly) what rk_ials_fold_in
 * computes for the same history.
 *
 * Determinism: every row is solved by one thread with the same code, and
 * initial values come from (seed, row), so the same inputs, options and
 * kernel path give bit-identical factors for any thread count.
 */
typedef enum rk_ials_solver {
    RK_IALS_CG = 0,        /* cg_steps CG steps per row, warm-started */
    RK_IALS_CHOLESKY = 1   /* exact k x k Cholesky solve per row */
} rk_ials_solver;

/* Reported after every iteration (see rk_ials_opts.on_iter). */
typedef struct rk_ials_iter_stats {
    uint32_t iteration;   /* 1-based, counting over train and train_more */
    double loss;          /* L after the iteration; NaN unless compute_loss */
    double seconds;       /* wall time of the two half-steps (not the loss) */
    double flops;         /* floating-point operations of the solver, see
                             docs/retrieval.md for the formula */
} rk_ials_iter_stats;

/* Return nonzero to stop training after this iteration (not an error). */
typedef int (*rk_ials_iter_fn)(void *ctx, const rk_ials_iter_stats *s);

typedef struct rk_ials_opts {
    uint32_t factors;          /* k, 1..1024 */
    uint32_t iterations;       /* full (items + users) iterations */
    double reg;                /* > 0 */
    double reg_exp;            /* >= 0; see lambda_u above */
    double alpha;              /* >= 0; confidence slope */
    double log_eps;            /* >= 0; 0 = linear confidence */
    double unobserved_weight;  /* a0 > 0 */
    rk_ials_solver solver;
    uint32_t cg_steps;         /* 1..1024, for RK_IALS_CG */
    double init_std;           /* initial N(0, init_std); <= 0: 0.1/sqrt(k) */
    uint64_t seed;
    unsigned threads;          /* 0 = one per CPU; unused when pool is set */
    rk_pool *pool;             /* borrowed; NULL = a private pool per call */
    int compute_loss;          /* evaluate L after every iteration (costs
                                  about one extra CG step) */
    rk_ials_iter_fn on_iter;   /* may be NULL; called on the caller's thread */
    void *on_iter_ctx;
} rk_ials_opts;

/* Defaults: the settings tuned on MovieLens-100k under the held-out-users
 * protocol (docs/retrieval.md gives the search): k 64, 15 iterations,
 * reg 0.015, reg_exp 1, alpha 0, unobserved_weight 0.2; CG with 3 steps,
 * init_std 0.1/sqrt(k), seed 42, all CPUs, no loss, no callback. */
void rk_ials_opts_default(rk_ials_opts *o);

typedef struct rk_ials_model rk_ials_model;

/* Trains a new model on m (users x items, rk_interactions) for
 * o->iterations. o NULL means the defaults. The model keeps no pointer to m.
 * Errors: RK_EINVAL (bad options, with the field named), RK_ENOMEM (also
 * from a worker thread), RK_ELIMIT (k * rows overflows), whatever the
 * callback does not cause (its nonzero return only stops). Not thread-safe
 * with respect to the model; m may be read concurrently by others. */
int rk_ials_train(const rk_interactions *m, const rk_ials_opts *o,
                  rk_ials_model **out, rk_err *err);
/* Warm start: runs iterations more iterations from the current factors on
 * m, which may be newer data with as many or more users and items (new rows
 * start from the seeded random initialisation). o NULL keeps the model's
 * options (threads as trained, no callback); otherwise every field of o is
 * used and recorded except factors, which must be 0 or the model's k. On
 * error the model is unchanged only for RK_EINVAL; after RK_ENOMEM in the
 * middle of an iteration some rows may hold the partial iteration (the
 * model is still valid and can be trained on). */
int rk_ials_train_more(rk_ials_model *model, const rk_interactions *m,
                       const rk_ials_opts *o, uint32_t iterations,
                       rk_err *err);
/* Exact (Cholesky) solve of every user of m against the fixed item factors,
 * e.g. to refresh user vectors after new events without touching items.
 * m may have more users than the model (it grows); not more items. */
int rk_ials_solve_users(rk_ials_model *model, const rk_interactions *m,
                        rk_err *err);
void rk_ials_free(rk_ials_model *model);

/* Shape and parameters. Accessor pointers are borrowed: valid until the
 * model is trained further or freed; row-major, k floats per row. The
 * Gramian G = Y^T Y (k x k, both triangles) is recomputed after every
 * training call and on load. Thread-safe for concurrent readers. */
uint32_t rk_ials_k(const rk_ials_model *model);
uint32_t rk_ials_nusers(const rk_ials_model *model);
uint32_t rk_ials_nitems(const rk_ials_model *model);
uint32_t rk_ials_iterations_done(const rk_ials_model *model);
const float *rk_ials_user_factors(const rk_ials_model *model);
const float *rk_ials_item_factors(const rk_ials_model *model);
const float *rk_ials_gramian(const rk_ials_model *model);
/* The options the model was last trained with (pool and callback NULL). */
void rk_ials_get_opts(const rk_ials_model *model, rk_ials_opts *out);

/* Real-time fold-in: the exact iALS user vector for a history of n items
 * with their weights (NULL = all 1; repeated items are summed, as in
 * rk_interactions) against the model's fixed item factors: the Cholesky
 * solve of the normal equations above with the precomputed Gramian, in
 * O(n k^2 + k^3). Works for users never seen in training; n = 0 gives the
 * zero vector. out receives k floats. Errors: RK_EINVAL (item >= nitems,
 * weight <= 0 or not finite), RK_ENOMEM. Thread-safe: the model is only
 * read; allocates O(k^2 + n) scratch per call. */
int rk_ials_fold_in(const rk_ials_model *model, const uint32_t *items,
                    const float *weights, size_t n, float *user_vec_out,
                    rk_err *err);
/* scores_out[i] = y_i . user_vec for every item (nitems floats), one
 * sgemv. Thread-safe. */
void rk_ials_score_all(const rk_ials_model *model, const float *user_vec,
                       float *scores_out);

/* Versioned binary file (magic, version, dimensions, options, factors,
 * xxh3 checksum), written to a temporary name in the same directory,
 * fsync'd and renamed over path, so a reader sees the old or the new file.
 * load refuses a wrong magic (RK_EPARSE), a newer version (RK_EVERSION), a
 * size that does not match the dimensions or a checksum mismatch
 * (RK_ECORRUPT), with the path and reason in err. */
int rk_ials_save(const rk_ials_model *model, const char *path, rk_err *err);
int rk_ials_load(const char *path, rk_ials_model **out, rk_err *err);
/* The serving index of a model: HNSW, inner product, float32, default
 * parameters (M 16, efConstruction 200), labels = dense item ids, over
 * every item row. pool as rk_ann_add_batch (NULL: deterministic).
 * rk_ials_build_index builds it and saves it to path (rk_ann_save), where
 * `rankd train` puts it next to ials.bin as items.ann. Errors of
 * rk_ann_create/add/save. */
int rk_ials_index(const rk_ials_model *m, rk_pool *pool, rk_ann **out,
                  rk_err *err);
int rk_ials_build_index(const rk_ials_model *m, const char *path,
                        rk_pool *pool, rk_err *err);

/*
 * EASE (Steck 2019): item-item weights B = argmin |X - XB|^2 + lambda |B|^2
 * with diag(B) = 0, in closed form: P = (X^T X + lambda I)^-1,
 * B_ij = -P_ij / P_jj, B_ii = 0. X holds the interactions' weights (use
 * binary weights for the paper's model). Only items with at least one
 * interaction ("active" items) take part; the others score 0.
 * Memory: one dense n x n float matrix, n = active items: 4 n^2 bytes
 * (10 GB at 50,000 items), plus the scoring input. Time: O(n^3) (LAPACK
 * Cholesky and inverse through OpenBLAS, which uses its own threads).
 */
typedef struct rk_ease_opts {
    double lambda;       /* > 0; default 200 (MovieLens-100k tuned) */
    uint32_t max_items;  /* active items allowed; default 50,000 */
} rk_ease_opts;

void rk_ease_opts_default(rk_ease_opts *o);

typedef struct rk_ease_model rk_ease_model;

/* Errors: RK_ELIMIT when the active items exceed max_items (message gives
 * the count and the memory it would take), RK_EINVAL (lambda), RK_ENOMEM,
 * RK_EINTERNAL if LAPACK fails (not positive definite). o NULL = defaults. */
int rk_ease_train(const rk_interactions *m, const rk_ease_opts *o,
                  rk_ease_model **out, rk_err *err);
/* scores_out[j] = sum_h weights[h] * B[items[h], j] for every item j of the
 * catalog (nitems floats; 0 for inactive items). weights NULL = all 1;
 * history items unknown to the model are ignored (they have no row).
 * Errors: RK_EINVAL for an item >= nitems. Thread-safe. */
int rk_ease_score(const rk_ease_model *model, const uint32_t *items,
                  const float *weights, size_t n, float *scores_out,
                  rk_err *err);
uint32_t rk_ease_nitems(const rk_ease_model *model);   /* catalog size */
/* The dense matrix over active items: *n active items, (*items)[a] the
 * catalog id of active item a, *B row-major n x n with B[a*n+b] the weight
 * from a to b. Borrowed, valid until free. */
void rk_ease_matrix(const rk_ease_model *model, uint32_t *n,
                    const uint32_t **items, const float **B);
/* Same file discipline and errors as rk_ials_save/load. */
int rk_ease_save(const rk_ease_model *model, const char *path, rk_err *err);
int rk_ease_load(const char *path, rk_ease_model **out, rk_err *err);
void rk_ease_free(rk_ease_model *model);

/* ======================================================================== */
/* Heuristic generators and the merger                   [generators section] */
/* ======================================================================== */
/*
 * Every generator returns rk_candidate lists, best first: score descending,
 * ties broken by the smaller item id, so equal inputs give equal lists.
 * Built objects are immutable: any number of threads may query one at once.
 * Queries allocate their scratch per call (bounded by the seeds and top_n),
 * so they need no per-thread state.
 */

/* Where a candidate came from. Values are stable (they are logged with
 * served requests); new sources are only ever appended. */
typedef enum rk_source {
    RK_SRC_NONE = 0,
    RK_SRC_ANN = 1,       /* nearest neighbours of the user vector */
    RK_SRC_COVIS = 2,     /* co-visitation */
    RK_SRC_TRENDING = 3,  /* decayed counts */
    RK_SRC_POPULAR = 4,   /* all-time counts */
    RK_SRC_FRESH = 5,     /* newest items */
    RK_SRC_CONTENT = 6,   /* attribute similarity */
    RK_SRC_EASE = 7,      /* EASE item-item model */
    RK_SRC_EXTERNAL = 8,  /* supplied by the caller (e.g. /v1/rank) */
    RK_SRC_COUNT
} rk_source;

/* "ann", "covis", "trending", "popular", "fresh", "content", "ease",
 * "external"; "none" for 0 and "unknown" outside the table. Static. */
const char *rk_source_name(unsigned src);
/* Inverse of rk_source_name (exact, lower case); RK_ENOTFOUND otherwise. */
int rk_source_parse(const char *name, size_t len, rk_source *out);

typedef struct rk_candidate {
    uint32_t item;     /* dense item id */
    float score;       /* source-specific; the merger writes normalized ones */
    uint8_t source;    /* rk_source */
    uint8_t pad_;
    uint16_t sources;  /* merger output: bit s set when source s proposed the
                          item (1u << RK_SRC_*); generators set their own bit */
} rk_candidate;

/* A query seed: an item the user interacted with and how much it counts. */
typedef struct rk_seed {
    uint32_t item;
    float weight;
} rk_seed;

/* Turns a user's recent events into seeds for the item-to-item generators:
 * each distinct item once, from its latest event: that event's weight w
 * (NULL = 1) times its recency 2^(-(now_ms - ts) / half_life_ms)
 * (half_life_ms <= 0: no decay; events after now_ms count as now). Keeps
 * the max_seeds items with the latest events, most recent first (ties:
 * smaller item). out holds max_seeds entries. RK_ENOMEM. Thread-safe. */
int rk_seeds_from_events(const uint32_t *items, const int64_t *ts,
                         const float *w, size_t n, int64_t now_ms,
                         double half_life_ms, rk_seed *out, size_t max_seeds,
                         size_t *nout);

/* ---- Co-visitation ------------------------------------------------------ */
/*
 * "Users who interacted with X then interacted with Y, soon after." For each
 * user, positive events are ordered by time; every pair (X earlier, Y later)
 * at most window_ms apart adds exp(-dt / tau_ms) * w(Y) to X -> Y, where
 * w(Y) is the weight of the event on Y (the neighbour's engagement). With
 * `symmetric` Y -> X gets exp(-dt / tau_ms) * w(X) too; events at the same
 * instant always count both ways. A user adds each pair at most once (the
 * largest of their contributions), so one heavy user cannot make a pair.
 *
 * Bounds: only a user's last max_events_per_user events are used; pairs are
 * formed from the most recent events backwards and stop at
 * max_pairs_per_user; each item keeps its top_n neighbours. Building holds
 * at most max_buffer_pairs pair contributions at once (8 bytes each), plus
 * 32 bytes per item and 32 per max_pairs_per_user, and takes one more pass
 * over the users for each slice of items whose contributions fit the
 * buffer; the result does not depend on the buffer size.
 */
typedef enum rk_covis_norm {
    RK_COVIS_NORM_NONE = 0,   /* raw decayed sums */
    RK_COVIS_NORM_COSINE = 1  /* sum / sqrt(users(X) * users(Y)) */
} rk_covis_norm;

typedef struct rk_covis_opts {
    int64_t window_ms;             /* default 24 h */
    double tau_ms;                 /* decay time constant; <= 0: no decay;
                                      default 6 h */
    int symmetric;                 /* default 1 */
    rk_covis_norm norm;            /* default RK_COVIS_NORM_NONE */
    uint32_t top_n;                /* neighbours per item, default 100 */
    uint32_t max_events_per_user;  /* default 200 */
    uint32_t max_pairs_per_user;   /* default 10000 */
    uint64_t max_buffer_pairs;     /* default 16M (192 MiB) */
    uint64_t max_events;           /* from_store: the most recent accepted
                                      events kept (40 bytes each while
                                      building), default 20M */
} rk_covis_opts;

void rk_covis_opts_default(rk_covis_opts *o);
/* Reads `window_hours`, `tau_hours`, `symmetric`, `normalize` (none |
 * cosine), `top_n`, `max_events_per_user`, `max_pairs_per_user`,
 * `max_buffer_pairs`, `max_events` from node (a map, may be NULL) over o.
 * RK_ECONFIG with file:line for unknown keys and bad values. */
int rk_covis_opts_from_conf(rk_covis_opts *o, const rk_conf_node *node,
                            rk_err *err);

typedef struct rk_covis rk_covis;

/* From the interaction matrix: each (user, item) is one event at its
 * first_ts with its summed weight (the order in which a user discovered
 * items). o may be NULL (defaults). RK_ENOMEM, RK_ELIMIT, RK_EINVAL. */
int rk_covis_build(rk_covis **out, const rk_interactions *m,
                   const rk_covis_opts *o, rk_err *err);
/* From the store's event log (one snapshot): every positive or valued event
 * accepted by io (rk_interactions rules: window, valued_min,
 * value_as_weight; negatives and exposures never pair) is one event with its
 * type weight. io and o may be NULL. */
int rk_covis_build_from_store(rk_covis **out, rk_store *s,
                              const rk_inter_opts *io, const rk_covis_opts *o,
                              rk_err *err);
/* From explicit events (tests, replays): n events of users[i] on items[i] at
 * ts[i] with weight w[i] (NULL = 1), in any order. */
int rk_covis_build_from_events(rk_covis **out, uint32_t nusers,
                               uint32_t nitems, const uint32_t *users,
                               const uint32_t *items, const int64_t *ts,
                               const float *w, size_t n,
                               const rk_covis_opts *o, rk_err *err);
void rk_covis_destroy(rk_covis *c);

uint32_t rk_covis_nitems(const rk_covis *c);
/* The neighbour list of item (best first), borrowed until destroy; n = 0
 * for items without neighbours or out of range. */
void rk_covis_neighbors(const rk_covis *c, uint32_t item,
                        const uint32_t **items, const float **scores,
                        size_t *n);
/* Aggregates the seeds' neighbour lists: score(Y) = sum of
 * seed.weight * covis(seed, Y); seeds themselves are left out. Writes at
 * most k candidates (source RK_SRC_COVIS) to out. RK_ENOMEM. */
int rk_covis_query(const rk_covis *c, const rk_seed *seeds, size_t nseeds,
                   size_t k, rk_candidate *out, size_t *nout);
/* Versioned, checksummed file written to path.tmp, fsync'd and renamed.
 * Load: RK_EIO, RK_ECORRUPT (bad magic, size or checksum), RK_EVERSION. */
int rk_covis_save(const rk_covis *c, const char *path, rk_err *err);
int rk_covis_load(rk_covis **out, const char *path, rk_err *err);

/* ---- Trending and popular ---------------------------------------------- */
/*
 * Per item, over the positive events up to `now`: trending is
 * sum of w * 2^(-(now - ts) / half_life), popular the plain sum of w.
 * Both keep their top_n items as ready-made candidate lists and every
 * item's score (for features). Events after `now` are ignored, so a build
 * "as of" a past time is point-in-time correct.
 */
typedef enum rk_popular_kind {
    RK_POPULAR_ALL_TIME = 0,
    RK_POPULAR_TRENDING = 1
} rk_popular_kind;

typedef struct rk_popular_opts {
    int64_t now_ms;        /* reference time; 0 = the latest event counted */
    double half_life_ms;   /* trending half-life, > 0, default 24 h */
    uint32_t top_n;        /* list length, default 1000 */
} rk_popular_opts;

void rk_popular_opts_default(rk_popular_opts *o);
/* Keys `half_life_hours`, `top_n`. */
int rk_popular_opts_from_conf(rk_popular_opts *o, const rk_conf_node *node,
                              rk_err *err);

typedef struct rk_popular rk_popular;

/* From explicit events (w NULL = 1). */
int rk_popular_build(rk_popular **out, uint32_t nitems, const uint32_t *items,
                     const int64_t *ts, const float *w, size_t n,
                     const rk_popular_opts *o, rk_err *err);
/* From the event log, events and weights as rk_covis_build_from_store. */
int rk_popular_build_from_store(rk_popular **out, rk_store *s,
                                const rk_inter_opts *io,
                                const rk_popular_opts *o, rk_err *err);
/* From the matrix: each entry counts once, its weight at its last_ts (an
 * approximation of trending when a pair has several events). */
int rk_popular_build_from_interactions(rk_popular **out,
                                       const rk_interactions *m,
                                       const rk_popular_opts *o, rk_err *err);
void rk_popular_destroy(rk_popular *p);

/* The top list (source RK_SRC_POPULAR or RK_SRC_TRENDING), borrowed until
 * destroy. Items with a zero score are not listed. */
const rk_candidate *rk_popular_list(const rk_popular *p, rk_popular_kind kind,
                                    size_t *n);
/* Any item's score; 0 when out of range. */
double rk_popular_score(const rk_popular *p, rk_popular_kind kind,
                        uint32_t item);
/* The reference time the build used. */
int64_t rk_popular_now(const rk_popular *p);

/* ---- Fresh --------------------------------------------------------------- */
/*
 * The newest items, for cold start: by a timestamp attribute (e.g.
 * `published`) or, for items without it, the time of their first event.
 * Hidden and deleted items, items dated after `now` (scheduled) and, with
 * max_age_ms, items older than now - max_age_ms are left out. The score is
 * 2^(-age / half_life) in (0, 1]; the order is by exact timestamp.
 */
typedef struct rk_fresh_opts {
    const char *attr;          /* timestamp attribute, NULL = first seen only;
                                  default "published" */
    int first_seen_fallback;   /* items without attr use their first event,
                                  default 1 */
    int64_t now_ms;            /* 0 = the newest timestamp found */
    int64_t max_age_ms;        /* 0 = no limit */
    double half_life_ms;       /* default 7 days */
    uint32_t top_n;            /* default 1000 */
} rk_fresh_opts;

void rk_fresh_opts_default(rk_fresh_opts *o);
/* Keys `attribute`, `first_seen_fallback`, `max_age_hours`,
 * `half_life_hours`, `top_n`; the attribute string is borrowed from the
 * tree. */
int rk_fresh_opts_from_conf(rk_fresh_opts *o, const rk_conf_node *node,
                            rk_err *err);

typedef struct rk_fresh rk_fresh;

/* From per-item times: ts[i] = INT64_MIN when unknown. blocked is a bitset
 * of nitems bits (bit i of blocked[i / 64]) of items to leave out, or NULL.
 * attr and first_seen_fallback are not used. */
int rk_fresh_build(rk_fresh **out, uint32_t nitems, const int64_t *ts,
                   const uint64_t *blocked, const rk_fresh_opts *o,
                   rk_err *err);
/* From the store: item records (attr, hidden/deleted flags) and, when
 * first_seen_fallback, one scan of the event log. An attr that is not a
 * declared timestamp attribute is RK_ECONFIG. */
int rk_fresh_build_from_store(rk_fresh **out, rk_store *s,
                              const rk_fresh_opts *o, rk_err *err);
void rk_fresh_destroy(rk_fresh *f);
/* Newest first (source RK_SRC_FRESH), borrowed until destroy. */
const rk_candidate *rk_fresh_list(const rk_fresh *f, size_t *n);
int64_t rk_fresh_now(const rk_fresh *f);

/* ---- Content similarity ------------------------------------------------ */
/*
 * Item-item cosine similarity of TF-IDF vectors over attribute tokens, so
 * items without interactions have neighbours. Tokens are "attr=value":
 * a categorical value is one token, each tag of a categorical_list one
 * token, a text is split into lower-case words (ASCII letters and digits;
 * other bytes >= 0x80 are kept as word characters, so UTF-8 words survive)
 * of 2..64 bytes, minus a small English stopword list. Term weight:
 * attr_weight * (1 + ln count) * idf, idf = ln((1 + N) / (1 + df)) + 1 over
 * the N items with tokens; vectors are L2-normalized.
 *
 * Bounds: at most max_tokens_per_item distinct tokens per item (the
 * heaviest; ties: the first met), max_vocab distinct tokens (RK_ELIMIT
 * beyond), top_n neighbours per item. Scoring item i walks, for each of its tokens, at most max_postings
 * items holding that token (those where it weighs most), so very common
 * tokens cost max_postings, not their document frequency; tokens in more
 * than max_df_ratio of the items are dropped entirely (stop words).
 */
typedef struct rk_content_attr {
    const char *name;
    float weight;              /* > 0 */
} rk_content_attr;

typedef struct rk_content_opts {
    const rk_content_attr *attrs; /* NULL = every categorical,
                                     categorical_list and text attribute,
                                     weight 1 */
    size_t nattrs;
    uint32_t top_n;               /* default 50 */
    uint32_t max_tokens_per_item; /* default 256 */
    uint32_t max_postings;        /* default 2000 */
    double max_df_ratio;          /* default 1.0 (keep all) */
    uint64_t max_vocab;           /* default 4M */
    float min_sim;                /* neighbours need sim > min_sim, default 0 */
    rk_pool *pool;                /* NULL = build on the calling thread */
} rk_content_opts;

void rk_content_opts_default(rk_content_opts *o);
/* Keys `top_n`, `max_tokens_per_item`, `max_postings`, `max_df_ratio`,
 * `max_vocab`, `min_sim`. Attributes and weights are set in code. */
int rk_content_opts_from_conf(rk_content_opts *o, const rk_conf_node *node,
                              rk_err *err);

/* Builder: tokens item by item, then finish. Not thread-safe. */
typedef struct rk_content_builder rk_content_builder;

int rk_content_builder_create(rk_content_builder **out, uint32_t nitems,
                              const rk_content_opts *o, rk_err *err);
/* Adds tf to (item, token). Repeated adds sum. RK_EINVAL (item out of
 * range, empty token), RK_ELIMIT, RK_ENOMEM. */
int rk_content_builder_add(rk_content_builder *b, uint32_t item,
                           const char *token, size_t len, float tf,
                           rk_err *err);
/* Tokenizes an item record by the rules above (the configured attributes
 * only; attribute names resolved in schema). Hidden and deleted records add
 * nothing, so they are never anyone's neighbour. */
int rk_content_builder_add_view(rk_content_builder *b, const rk_schema *schema,
                                const rk_entity_view *v, rk_err *err);
typedef struct rk_content rk_content;
/* Computes the neighbour lists and frees the builder (also on failure). */
int rk_content_builder_finish(rk_content_builder *b, rk_content **out,
                              rk_err *err);
void rk_content_builder_destroy(rk_content_builder *b);
/* Every item record of the store, one snapshot. */
int rk_content_build_from_store(rk_content **out, rk_store *s,
                                const rk_content_opts *o, rk_err *err);
void rk_content_destroy(rk_content *c);

uint32_t rk_content_nitems(const rk_content *c);
/* Borrowed neighbour list of item, best first (cosine similarities). */
void rk_content_neighbors(const rk_content *c, uint32_t item,
                          const uint32_t **items, const float **scores,
                          size_t *n);
/* "Similar to item": at most k of its neighbours (source RK_SRC_CONTENT). */
size_t rk_content_similar(const rk_content *c, uint32_t item, size_t k,
                          rk_candidate *out);
/* Aggregates over seeds as rk_covis_query does. RK_ENOMEM. */
int rk_content_query(const rk_content *c, const rk_seed *seeds, size_t nseeds,
                     size_t k, rk_candidate *out, size_t *nout);
/* Saves the neighbour lists (the vocabulary is not kept: a loaded model
 * answers queries; new items need a rebuild). Errors as rk_covis_save. */
int rk_content_save(const rk_content *c, const char *path, rk_err *err);
int rk_content_load(rk_content **out, const char *path, rk_err *err);

/* ---- Merger -------------------------------------------------------------- */
/*
 * Combines generator lists into at most n candidates:
 *  - each input contributes at most `quota` items (0 = the input is off);
 *  - exclusions: items in `seen` or `exclude`, bits set in `blocked`
 *    (hidden/deleted), and items the `keep` predicate rejects (attribute
 *    filters, live hidden checks); `keep` is called last and only for items
 *    about to be taken, since it may read the store;
 *  - dedupe: an item is taken once. Its `source` is the input that took it
 *    (the first one to reach it in merge order), its `score` the best
 *    weighted normalized score any input gave it, `sources` the bits of
 *    every input that listed it;
 *  - normalization: each input's scores are mapped to [0, 1] by min-max
 *    over its list (all equal: 1), then multiplied by the input's weight.
 * Modes:
 *  - RK_MERGE_INTERLEAVE: inputs take turns in proportion to their quotas
 *    (the next pick goes to the input with the smallest taken/quota, ties to
 *    the earlier input), each taking its best remaining item; output order
 *    is pick order;
 *  - RK_MERGE_SCORE: every (input, item) is ranked by weighted normalized
 *    score (ties: earlier input, then smaller item) and taken in that order
 *    while its input has quota; output sorted by score.
 */
typedef struct rk_merge_input {
    const rk_candidate *cands;  /* best first */
    size_t n;
    uint32_t quota;
    float weight;               /* score mode multiplier; 0 is taken as 1 */
} rk_merge_input;

typedef enum rk_merge_mode {
    RK_MERGE_INTERLEAVE = 0,
    RK_MERGE_SCORE = 1
} rk_merge_mode;

/* Nonzero keeps the item. */
typedef int (*rk_item_pred)(void *arg, uint32_t item);

typedef struct rk_merge_opts {
    size_t n;                   /* output cap */
    rk_merge_mode mode;
    const uint32_t *seen;       /* the user's history, any order */
    size_t nseen;
    const uint32_t *exclude;    /* explicit exclusions */
    size_t nexclude;
    const uint64_t *blocked;    /* bitset, bit i = item i excluded */
    uint32_t nblocked;          /* bits in blocked; items beyond pass */
    rk_item_pred keep;          /* NULL = keep all */
    void *keep_arg;
} rk_merge_opts;

/* Why candidates were dropped (for /metrics and debugging). */
typedef struct rk_merge_stats {
    uint64_t considered, duplicate, seen, excluded, blocked, rejected;
    uint64_t taken[RK_SRC_COUNT];
} rk_merge_stats;

/* out holds o->n entries. stats may be NULL. Deterministic. RK_EINVAL,
 * RK_ENOMEM. Thread-safe if keep is. */
int rk_merge(const rk_merge_input *in, size_t nin, const rk_merge_opts *o,
             rk_candidate *out, size_t *nout, rk_merge_stats *stats,
             rk_err *err);

/* Attribute filters, an AND of clauses evaluated against an item record. */
typedef enum rk_filter_op {
    RK_FILTER_IN = 0,     /* categorical value, or any tag of a list, in set */
    RK_FILTER_NOT_IN = 1, /* negation of IN; a missing attribute passes */
    RK_FILTER_RANGE = 2   /* numeric or timestamp (ms) within [lo, hi] */
} rk_filter_op;

typedef struct rk_filter_clause {
    uint32_t attr;              /* item attribute index in the schema */
    rk_filter_op op;
    const char *const *values;  /* IN / NOT_IN */
    const size_t *lens;         /* NULL = strlen */
    size_t nvalues;
    double lo, hi;              /* RANGE, inclusive; +-INFINITY for open */
} rk_filter_clause;

typedef struct rk_filter {
    const rk_filter_clause *clauses;
    size_t n;
} rk_filter;

/* Checks attribute indices and that each op suits its attribute's type
 * (IN/NOT_IN: categorical, categorical_list, text; RANGE: numeric,
 * timestamp). RK_EINVAL with the attribute named. */
int rk_merge_filter_check(const rk_filter *f, const rk_schema *schema,
                          rk_err *err);
/* 1 when v passes every clause (IN and RANGE fail on a missing attribute),
 * else 0. f NULL or empty passes. Thread-safe. */
int rk_merge_filter_match(const rk_filter *f, const rk_entity_view *v);

/* A ready `keep` predicate over a store reader: drops hidden and deleted
 * items and those failing filter (may be NULL). Items without a record
 * pass if the filter passes an empty record. Uses the reader, so one
 * context per thread. */
typedef struct rk_merge_reader_ctx {
    rk_reader *reader;
    const rk_filter *filter;
} rk_merge_reader_ctx;
int rk_merge_reader_keep(void *ctx, uint32_t item);

/* Bitset of hidden and deleted items from one scan of the item records,
 * for rk_merge_opts.blocked; *nbits = the store's item id count. Free
 * with rk_free. RK_ENOMEM, store errors. */
int rk_merge_blocked_from_reader(rk_reader *r, uint64_t **bits,
                                 uint32_t *nbits, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_RETRIEVAL_H */
