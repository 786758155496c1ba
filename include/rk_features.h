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
/*
 * A feature spec is compiled from the config's `features:` section against
 * a store schema (docs/features.md): hash_bits and a map of named feature
 * definitions, each of one kind —
 *   attribute   a user or item attribute (numeric, timestamp as an age,
 *               vector, categorical, categorical_list, text);
 *   column      a numeric or categorical column of labelled-row datasets;
 *   counter, rate, recency
 *               aggregates of events per key (user, item, user x item
 *               attribute, item x context field, ...) over sliding windows
 *               or with exponential decay, rates with a Beta prior;
 *   score       a named slot the caller fills per item (retrieval scores);
 *   context     hour, weekday or a field of the request's context JSON;
 *   cross       hashed cross of 2-4 categorical features;
 *   text_match  BM25 of the request's query against item text attributes.
 * Each feature maps to dense columns (numeric values after their
 * transforms: missing-value policy, log1p, clip, standardize, quantile
 * buckets) and/or hashed sparse coordinates in [0, 2^hash_bits).
 *
 * Transforms that need statistics (mean fill, standardize, quantile
 * buckets, one-hot/index vocabularies, BM25 document frequencies) are
 * fitted once (rk_feat_fit) and then part of the spec: saved with it and
 * covered by its schema hash, an xxh3 of the canonical definition and the
 * fitted parameters, which models store to refuse a mismatched spec.
 *
 * A spec is immutable once compiled and fitted, and may then be used by any
 * number of threads, each with its own rk_feat_source.
 */
typedef struct rk_feat_spec rk_feat_spec;

/* Compiles root's `features:` section (root may be NULL or have no such
 * section: an empty spec) against schema, which must declare every
 * attribute and event type named. Errors: RK_ECONFIG with "file:line:
 * path: ..." in err (unknown keys, types, names), RK_ENOMEM. */
int rk_feat_spec_from_conf(rk_feat_spec **out, const rk_conf_node *root,
                           const rk_schema *schema, rk_err *err);
/* The default spec of labelled-row datasets: numeric column j (j < nnum)
 * becomes dense column "num<j>" as is (absent = NaN), categorical column j
 * (j < ncat) a hashed coordinate whose hash mixes in j, so equal strings
 * of different columns do not collide. hash_bits 0 means 20. */
int rk_feat_spec_for_rows(rk_feat_spec **out, uint32_t nnum, uint32_t ncat,
                          uint32_t hash_bits, rk_err *err);
/* rk_feat_spec_for_rows sized by one scan of a dataset's rows (largest
 * numeric and categorical column index + 1). RK_ENOTFOUND for an unknown
 * dataset. */
int rk_feat_spec_for_dataset(rk_feat_spec **out, rk_reader *r,
                             const char *dataset, uint32_t hash_bits,
                             rk_err *err);
/* Frees the spec. It must be detached from any store first
 * (rk_feat_detach). NULL is a no-op. */
void rk_feat_spec_destroy(rk_feat_spec *s);

uint32_t rk_feat_ndense(const rk_feat_spec *s);     /* dense columns */
uint32_t rk_feat_hash_bits(const rk_feat_spec *s);
uint32_t rk_feat_nfeatures(const rk_feat_spec *s);
/* Name of feature i < rk_feat_nfeatures, of dense column j < ndense
 * ("item_ctr.1d", "price.missing"); borrowed for the spec's lifetime. */
const char *rk_feat_name(const rk_feat_spec *s, uint32_t i);
const char *rk_feat_dense_name(const rk_feat_spec *s, uint32_t j);
/* The dense column named name, or -1 (reference histograms and logged
 * vectors are matched to a spec's columns by name). */
int32_t rk_feat_dense_index(const rk_feat_spec *s, const char *name);
/* Schema hash: xxh3 of the canonical definition and, once fitted, the
 * fitted parameters. */
uint64_t rk_feat_schema_hash(const rk_feat_spec *s);
/* 1 when some transform needs fitting and rk_feat_fit has not run. */
int rk_feat_needs_fit(const rk_feat_spec *s);
/* The canonical definition: a JSON document {"features": {...}} with every
 * default spelled out, accepted by rk_feat_spec_from_conf. Borrowed. */
const char *rk_feat_canonical(const rk_feat_spec *s);
/* Retrieval-score slots: a request item's scores array holds
 * rk_feat_nscores values, slot i named by the `score` feature; *slot is
 * RK_ENOTFOUND when no score feature uses that name. */
uint32_t rk_feat_nscores(const rk_feat_spec *s);
int rk_feat_score_slot(const rk_feat_spec *s, const char *name,
                       uint32_t *slot);

/* Fitting. Statistics come from the training data: the requests a
 * point-in-time replay of the event log [from_ms, until_ms) would make at
 * every exposure event (every event when the store has no exposures),
 * each feature's raw value as of just before that event — or, when
 * dataset is set, that dataset's rows. BM25 statistics come from the item
 * catalog. Means and variances are exact; quantile edges come from a
 * reservoir of at most max_samples values per column (fixed seed);
 * vocabularies keep the vocab_max most frequent values seen at least
 * min_count times (ties by value hash). Refitting replaces the old
 * parameters. Not thread-safe against users of the spec. */
typedef struct rk_feat_fit_opts {
    int64_t from_ms, until_ms; /* default 0, INT64_MAX */
    size_t max_samples;        /* default 100000 */
    uint64_t seed;             /* default 42 */
    const char *dataset;       /* fit on this dataset's rows; NULL = events */
} rk_feat_fit_opts;
void rk_feat_fit_opts_default(rk_feat_fit_opts *o);
int rk_feat_fit(rk_feat_spec *s, rk_reader *r, const rk_feat_fit_opts *o,
                rk_err *err);

/* Serialization: canonical definition + fitted parameters + schema hash.
 * load recompiles against schema and checks the hash: RK_ECORRUPT (bad
 * bytes), RK_EVERSION, RK_ECONFIG (schema lacks a name), RK_ENOMEM. */
int rk_feat_spec_save(const rk_feat_spec *s, rk_buf *out);
int rk_feat_spec_load(rk_feat_spec **out, const void *p, size_t n,
                      const rk_schema *schema, rk_err *err);

/*
 * Computation. A source is where rk_feat_compute reads: attributes always
 * from a store reader, aggregates either from the same reader (the online
 * store, RK_KV_AGG) or from an in-memory rk_feat_state (replay). The
 * aggregate read math (decay to the request time, window sums, rates with
 * their prior, TTL) is one function for both, so a vector computed online
 * and one computed in replay from the same events are equal bit for bit.
 * A source also holds the per-thread scratch of computation: create one per
 * thread, reuse it across requests. Not thread-safe.
 */
typedef struct rk_feat_state rk_feat_state;
typedef struct rk_feat_source rk_feat_source;

/* RK_ENOMEM. The spec must outlive the source. */
int rk_feat_source_create(rk_feat_source **out, const rk_feat_spec *spec);
void rk_feat_source_destroy(rk_feat_source *src);
/* Borrowed until the next set or destroy; NULL: no store (row features,
 * context and scores only; attributes read as missing). */
void rk_feat_source_set_reader(rk_feat_source *src, rk_reader *r);
/* Borrowed; NULL (the default) reads aggregates from the reader. */
void rk_feat_source_set_state(rk_feat_source *src, const rk_feat_state *st);

/* One candidate item. id is the external id; dense, when has_dense, its
 * dense id (saves a dictionary lookup); scores has rk_feat_nscores values
 * (NaN = missing) or is NULL. Borrowed for the call. */
typedef struct rk_feat_item {
    const char *id;
    size_t len;
    int has_dense;
    uint32_t dense;
    const float *scores;
} rk_feat_item;

/* A request: user external id (NULL = anonymous), request time, context
 * JSON object text (NULL = none; fields feed context features and
 * item x context aggregates), search query (NULL: the context's "query"
 * field), and for dataset specs the labelled row. Borrowed for the call. */
typedef struct rk_feat_request {
    const char *user;
    size_t user_len;
    int64_t ts_ms;
    const char *context;
    size_t context_len;
    const char *query;
    size_t query_len;
    const rk_row *row;
} rk_feat_request;

/* Features of one item (item may be NULL for row or user-only specs) into
 * out (reset to rk_feat_ndense columns). Malformed context JSON reads as
 * no context. Errors: RK_ESTATE (spec needs fitting), RK_ENOMEM,
 * RK_ELIMIT, RK_ESTORE/RK_ECORRUPT from the reader, with err. */
int rk_feat_compute(rk_feat_source *src, const rk_feat_request *req,
                    const rk_feat_item *item, rk_fvec *out, rk_err *err);
/* The same for n items of one request into out[0..n): request-level
 * features (user, context) are computed once. Each out[i] equals what
 * rk_feat_compute gives for items[i]. */
int rk_feat_compute_batch(rk_feat_source *src, const rk_feat_request *req,
                          const rk_feat_item *items, size_t n, rk_fvec *out,
                          rk_err *err);
/* The aggregate fetch of compute_batch alone: derives every aggregate key
 * of the request and items and looks it up (benchmarks, cache warming).
 * *found (may be NULL) counts the keys that had state. */
int rk_feat_fetch(rk_feat_source *src, const rk_feat_request *req,
                  const rk_feat_item *items, size_t n, size_t *found,
                  rk_err *err);

/* Text tokens, shared with content similarity (rk_retrieval.h): maximal
 * runs of ASCII letters, digits and bytes >= 0x80, ASCII lower-cased;
 * one-byte words, words longer than RK_FEAT_WORD_MAX bytes and English
 * function words ("the", "of", ...) are dropped. fn gets each kept word
 * (NUL-terminated, valid for the call) in order; a non-zero return stops
 * and is returned. Thread-safe. */
#define RK_FEAT_WORD_MAX 64
typedef int (*rk_feat_token_fn)(void *arg, const char *word, size_t len);
int rk_feat_tokenize(const char *s, size_t n, rk_feat_token_fn fn, void *arg);

/* ======================================================================== */
/* Online aggregate state and point-in-time replay                           */
/* ======================================================================== */
/*
 * Aggregates (counter, rate, recency features) sharing a key template
 * (e.g. all features keyed by `item`) form a group whose state for one key
 * is one fixed-size record in the store's RK_KV_AGG table: key = 'A', the
 * group's layout hash (8 bytes; it changes when the group's definitions
 * change, so old state is never misread), xxh3 of the key parts' external
 * strings (8 bytes). A record holds per feature the last event time and
 * either decayed sums or a ring of window buckets per channel (rates have
 * two: numerator and denominator).
 *
 * An event updates its records through merge ops written in the same
 * batch, so state and event are durable together. Merging is
 * deterministic; an event older than a record's newest is decayed from the
 * newest time (out-of-order events add their decayed weight) and falls
 * out of windows that already passed it.
 *
 * Bounds: state older than ttl reads as empty and is reset on its next
 * update; rk_feat_sweep deletes it. With admit_after = N > 1 a key gets a
 * record only at its N-th event, counted in a count-min sketch of
 * sketch_width x sketch_depth u32 counters (halved every 8 x width events
 * so old sightings fade), so one-off keys cost no storage. The sketch lives
 * in memory where merges run (the store's writer, or a replay) and starts
 * empty in each process: after a restart a key not yet admitted needs N
 * new events.
 */

/* Registers the spec's merge function for RK_KV_AGG on s. Call before the
 * first write carrying aggregate ops, with no write in flight; the spec
 * must stay alive and attached until rk_feat_detach or the store closes.
 * RK_ENOMEM (sketch), RK_EINVAL. */
int rk_feat_attach(rk_feat_spec *spec, rk_store *s, rk_err *err);
void rk_feat_detach(rk_feat_spec *spec, rk_store *s);
/* Lets spec (e.g. a ranker's fitted copy of the served definitions) read
 * through the read cache of the attached spec: both must read the same
 * aggregate groups and the same attribute ranges (RK_EINVAL otherwise),
 * since cached values are raw records. attached must stay attached and
 * alive while spec is used; destroying spec leaves the cache alone.
 * RK_ESTATE when attached has no cache or spec has its own. */
int rk_feat_share_cache(rk_feat_spec *spec, const rk_feat_spec *attached,
                        rk_err *err);

/* Appends the event (rk_batch_event) and one merge op per aggregate
 * record it updates to b: all or nothing (on error b is unchanged). r is
 * needed when a key template uses item attributes (item.category) and may
 * be NULL otherwise; an item without that attribute updates nothing there.
 * Errors: those of rk_batch_event, RK_ELIMIT (batch full), RK_EINVAL (r
 * missing). An event whose de-duplication id r already knows gets no
 * merge ops (the store drops the event itself); a duplicate that r cannot
 * see yet (same id twice in one batch, or in flight) is counted twice. */
int rk_feat_batch_event(const rk_feat_spec *spec, rk_batch *b,
                        const rk_event_in *ev, rk_reader *r, rk_err *err);

/* Builds the state of aggregate groups that have never had any from the
 * whole event log, for a spec attached to a store whose events were
 * written without it (imported, or before the feature was declared).
 * Each group is marked in the store once checked, so this runs once per
 * group definition: groups already marked, or holding records merged
 * live by rk_feat_batch_event, are left as they are (and marked). Call
 * after rk_feat_attach and before serving writes: events written during
 * the backfill must go through rk_feat_batch_event. Events imported later
 * without the spec are not merged. *events (may be NULL) counts the
 * events replayed, *groups the groups built. Errors: store errors,
 * RK_ENOMEM. */
int rk_feat_backfill(const rk_feat_spec *spec, rk_store *s, uint64_t *events,
                     uint32_t *groups, rk_err *err);

/* Deletes expired records (older than ttl at now_ms) and records of
 * groups the spec no longer has, through merge ops, so a concurrent update
 * is never lost. *deleted (may be NULL) counts them. Needs the spec
 * attached to s. */
int rk_feat_sweep(const rk_feat_spec *spec, rk_store *s, int64_t now_ms,
                  uint64_t *deleted, rk_err *err);

/* Counters of the attached merge function (approximate while writes run). */
typedef struct rk_feat_online_stats {
    uint64_t merges;      /* merge ops applied */
    uint64_t created;     /* records created */
    uint64_t refused;     /* updates of keys not yet admitted */
    uint64_t unknown;     /* ops for groups the spec does not have (kept) */
    uint64_t expired;     /* records deleted by sweeps */
    size_t sketch_bytes;
} rk_feat_online_stats;
void rk_feat_online_stats_get(const rk_feat_spec *spec,
                              rk_feat_online_stats *out);

/*
 * Online read cache. rk_feat_attach also creates, unless the `state:`
 * section sets cache_keys: 0, a bounded in-memory cache in front of the
 * store for what rk_feat_compute and rk_feat_fetch read from a reader:
 * aggregate records and the user and item records (the attributes the
 * spec uses). At most cache_keys entries (default 1,000,000) and cache_mb
 * MiB of values (default 1024); CLOCK eviction. It is kept coherent by the
 * store's commit hook (rk_store_set_commit_hook): a cached read returns
 * exactly what the reader's snapshot holds, so vectors are the same bit
 * for bit with the cache on or off. It serves readers of the store the
 * spec is attached to; sources bound to a replay state never use it.
 * Thread-safe: writers take a shard's mutex; a request reads without
 * locks (per-slot sequence numbers, values freed only once no request
 * can still hold them; 64 requests at a time, more take the mutexes).
 * The slot arrays grow with the entries, so memory follows what is
 * cached, within the two bounds (values awaiting their free count
 * against cache_mb).
 */
typedef struct rk_feat_cache_stats {
    size_t entries, max_entries;       /* records and absent keys held */
    size_t value_bytes, max_value_bytes;
    size_t bytes;                      /* all memory of the cache */
    uint64_t hits, misses, fills, evictions;
    uint64_t invalidations;            /* entries dropped by commits */
    uint64_t refused;                  /* fills from snapshots already stale */
    uint64_t bypassed;                 /* reads racing a commit's hook */
    uint64_t applied;                  /* last commit the cache has seen */
    size_t retired_bytes;              /* dropped values (and outgrown slot
                                        * arrays) a request may still read;
                                        * in bytes, freed when it ends */
    uint64_t unpinned;                 /* requests that found every lock-free
                                        * reader slot taken and locked */
} rk_feat_cache_stats;
/* Zeroes *out when the spec has no cache. Thread-safe. */
void rk_feat_cache_stats_get(const rk_feat_spec *spec, rk_feat_cache_stats *out);

/* In-memory aggregate state, the replay's: the same records and merge
 * math in an rk_map bounded by max_keys (0 = the spec's replay_max_keys);
 * when full, an arbitrary record is evicted (counted: a replay with
 * evictions no longer equals the online store). Not thread-safe. */
int rk_feat_state_create(rk_feat_state **out, const rk_feat_spec *spec,
                         size_t max_keys);
void rk_feat_state_destroy(rk_feat_state *st);
/* Applies one stored event (as rk_feat_batch_event's merges would); r
 * resolves its ids, attributes and context. */
int rk_feat_state_apply(rk_feat_state *st, rk_reader *r, const rk_event *ev,
                        rk_err *err);
typedef struct rk_feat_state_stats {
    size_t keys, bytes;
    uint64_t evicted, refused;
} rk_feat_state_stats;
void rk_feat_state_stats_get(const rk_feat_state *st, rk_feat_state_stats *o);

/*
 * Point-in-time replay: the store's events with from_ms <= ts < until_ms,
 * in time order (ts, then seq), applied to a fresh rk_feat_state. fn is
 * called for each event BEFORE it is applied, with a source reading that
 * state (and r for attributes), so features computed in fn see exactly
 * the events that precede the event in that order. Entity attributes are
 * the reader's current ones: the store keeps no attribute history. fn
 * returns 0 to go on, anything else stops the replay and is returned.
 * The event order index costs 16 bytes per event, bounded by max_events.
 */
typedef struct rk_feat_replay_opts {
    int64_t from_ms, until_ms; /* default 0, INT64_MAX */
    size_t max_keys;           /* state bound, 0 = spec's replay_max_keys */
    size_t max_events;         /* default 256M; RK_ELIMIT beyond */
} rk_feat_replay_opts;
void rk_feat_replay_opts_default(rk_feat_replay_opts *o);
typedef int (*rk_feat_replay_fn)(void *arg, rk_feat_source *src,
                                 const rk_event *ev);
int rk_feat_replay(const rk_feat_spec *spec, rk_reader *r,
                   const rk_feat_replay_opts *o, rk_feat_replay_fn fn,
                   void *arg, rk_feat_state_stats *stats, rk_err *err);

/*
 * Training rows from replay: every exposure event (types `exposures`,
 * default every exposure-role type) of [from_ms, until_ms) gives a row of
 * its (user, item) with the features as of just before it (request time =
 * its ts, context = its context); the label looks ahead: positive when a
 * positive event (types `positives` with `weights`, default every
 * positive-role type with its schema weight) of the same user and item
 * follows within window_ms. Binary labels (default): label 1, weight = the
 * largest weight seen; negatives label 0, weight 1. graded: label = that
 * weight, weight 1. Exposures whose window reaches past the last event of
 * the store are skipped unless keep_immature (their label is not known
 * yet). Rows group by request id (xxh3) when the exposure has one.
 * out must have been created with the spec's ndense and hash_bits.
 */
struct rk_trainset; /* see "Training sets" below */
typedef struct rk_feat_label_opts {
    const char *const *exposures; /* NULL-terminated, NULL = default */
    const char *const *positives; /* NULL-terminated, NULL = default */
    const double *weights;        /* per positive, NULL = schema weights */
    int64_t window_ms;            /* default 1 hour */
    int64_t from_ms, until_ms;    /* default 0, INT64_MAX */
    int graded;
    int keep_immature;
} rk_feat_label_opts;
void rk_feat_label_opts_default(rk_feat_label_opts *o);
int rk_feat_trainset_from_replay(const rk_feat_spec *spec, rk_reader *r,
                                 const rk_feat_label_opts *lo,
                                 struct rk_trainset *out, rk_err *err);
/* Training rows from a labelled-row dataset: each row's features (the
 * spec's column features) with its label, weight 1, group = xxh3 of its
 * query group (0 = none), ts = the row's position in the set (rows carry
 * no time; their order stands for it). RK_ENOTFOUND for an unknown dataset. */
int rk_feat_trainset_from_dataset(const rk_feat_spec *spec, rk_reader *r,
                                  const char *dataset, struct rk_trainset *out,
                                  rk_err *err);

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
 * <= 0, a sparse index >= 2^hash_bits), RK_ELIMIT (max_bytes), RK_ENOMEM;
 * the set is unchanged on error. hash_bits is at most 30. */
int rk_trainset_add(rk_trainset *t, const rk_fvec *x, float label,
                    float weight, uint64_t group, int64_t ts_ms);
size_t rk_trainset_rows(const rk_trainset *t);
/* Row i < rk_trainset_rows(t). The borrowed x must not be passed to
 * rk_fvec_reset/push/free (its arrays belong to the set). */
void rk_trainset_get(const rk_trainset *t, size_t i, rk_trow *out);

/* The widths the set was created with; bytes held by its arrays
 * (capacity), never above max_bytes. */
uint32_t rk_trainset_ndense(const rk_trainset *t);
uint32_t rk_trainset_hash_bits(const rk_trainset *t);
size_t rk_trainset_bytes(const rk_trainset *t);

/* Summary of a set. A row is positive when label > 0. Time fields are 0
 * for an empty set; groups counts distinct non-zero groups. */
typedef struct rk_trainset_summary {
    size_t rows, positives, groups;
    double weight_sum, pos_weight_sum, neg_weight_sum;
    double label_sum;
    int64_t ts_min, ts_max;
    double neg_rate;         /* see rk_trainset_downsample; 1 = none */
    int neg_reweighted;
} rk_trainset_summary;
/* RK_ENOMEM (counting groups needs a map). */
int rk_trainset_summarize(const rk_trainset *t, rk_trainset_summary *out);

/* Time split: rows with ts < t_split go to *train, the others to *valid,
 * both new sets (same widths, budget and sampling record) in the source
 * order; the source is unchanged. RK_ENOMEM, RK_ELIMIT. */
int rk_trainset_split_time(const rk_trainset *t, int64_t t_split,
                           rk_trainset **train, rk_trainset **valid);
/* Chooses t_split so that the last valid_frac (0 < valid_frac < 1) goes to
 * validation: by_rows = 0 measures the time span [ts_min, ts_max]
 * (t_split = ts_min + ceil((1 - valid_frac) * span)); by_rows = 1 measures
 * rows (t_split = the timestamp of the row at rank floor((1 - valid_frac)
 * * rows) in time order; rows sharing that timestamp all go to
 * validation). RK_EINVAL for a bad fraction or an empty set, RK_ENOMEM. */
int rk_trainset_split_point(const rk_trainset *t, double valid_frac,
                            int by_rows, int64_t *t_split);

/* Negative down-sampling in place: keeps every positive (label > 0) and
 * each negative with probability rate (0 < rate <= 1), drawn from a PRNG
 * seeded with seed in row order, so the same set and seed keep the same
 * rows. With reweight, kept negatives' weights are multiplied by 1 / rate:
 * the weighted negative count is preserved in expectation and a model
 * trained with the weights needs no correction. Without reweight the
 * weights stay and the model's probabilities q must be corrected with
 * rk_trainset_calibrate. The rate is recorded in the set (and its file);
 * sampling twice multiplies the rates; mixing reweighted and plain
 * sampling is RK_ESTATE. RK_EINVAL for a bad rate. Never allocates. */
int rk_trainset_downsample(rk_trainset *t, double rate, int reweight,
                           uint64_t seed);
/* The down-sampling correction for a model trained without importance
 * weights on a set whose negatives were kept at rate r:
 * p = q / (q + (1 - q) / r). (DESIGN.md §7 writes it
 * p = q / (q + (1 - q) / w) where w is this keep rate r, not 1 / r.)
 * Returns q unchanged when the set was not down-sampled or was
 * reweighted. Thread-safe. */
double rk_trainset_calibrate(const rk_trainset *t, double q);

/* Class weights: multiplies positives' weights by pos_w and negatives' by
 * neg_w (both finite, > 0; RK_EINVAL otherwise). */
int rk_trainset_class_weights(rk_trainset *t, double pos_w, double neg_w);
/* "balanced" class weights: scales both classes so that each carries half
 * of the total weight (sklearn's n / (2 n_c), with weighted counts). The
 * factors applied come back in *pos_w and *neg_w (either may be NULL).
 * RK_ESTATE when a class is empty. */
int rk_trainset_balance(rk_trainset *t, double *pos_w, double *neg_w);

/* Reorders rows: a seeded Fisher-Yates shuffle, or a stable sort by
 * timestamp. Both build the new order in fresh arrays before freeing the
 * old ones, so they need as much memory again as the set (RK_ENOMEM; the
 * set is unchanged on failure). */
int rk_trainset_shuffle(rk_trainset *t, uint64_t seed);
int rk_trainset_sort_time(rk_trainset *t);

/*
 * Dense export for GBDT: a row-major float matrix of ndense + sparse_cols
 * columns. Dense columns are copied bit for bit (NaN = missing). Hashed
 * sparse coordinates are not one-hot expanded (2^hash_bits columns would
 * not fit): with sparse_cols > 0 coordinate h adds its value to column
 * ndense + h % sparse_cols, columns nothing lands in stay NaN. That fold
 * is a coarse fallback; categorical signal for trees is better given as
 * dense columns (CTR-style aggregates). With RK_TDENSE_GROUPED rows are
 * ordered so that each query group is contiguous — groups by their
 * earliest timestamp, then group id; inside a group by timestamp, ties in
 * set order (stable) — and group_size[0..ngroups) gives their sizes, as
 * XGBoost's ranking objectives expect; rows with group 0 are groups of
 * one. Without it rows keep the set's order and ngroups is 0.
 * Everything in the struct is owned by it; free with rk_tdense_free.
 */
#define RK_TDENSE_GROUPED 1u
typedef struct rk_tdense {
    rk_dmat x;            /* x.x owned; stride == ncols */
    float *label, *weight;
    uint64_t *group;      /* per row */
    int64_t *ts;          /* per row */
    uint32_t *group_size; /* RK_TDENSE_GROUPED only */
    size_t ngroups;
} rk_tdense;
/* RK_ELIMIT when the matrix would exceed the set's max_bytes, RK_EINVAL
 * for unknown flags, RK_ENOMEM. On failure *out is zeroed. */
int rk_trainset_dense(const rk_trainset *t, unsigned flags,
                      uint32_t sparse_cols, rk_tdense *out);
void rk_tdense_free(rk_tdense *d);

/* Sparse export for FTRL and FM: every row through rk_fvec_as_sparse, over
 * dim = ndense + 2^hash_bits coordinates (dense column j is coordinate j
 * unless NaN, hashed coordinate h is ndense + h). Rows keep the set's
 * order. Owned by the struct; free with rk_tsparse_free. */
typedef struct rk_tsparse {
    size_t nrows;
    uint32_t dim;
    uint64_t *off;        /* nrows + 1 offsets into idx/val */
    uint32_t *idx;
    float *val;
    float *label, *weight;
    uint64_t *group;
    int64_t *ts;
} rk_tsparse;
/* RK_ELIMIT (beyond the set's max_bytes), RK_ENOMEM; *out zeroed then. */
int rk_trainset_sparse(const rk_trainset *t, rk_tsparse *out);
/* Row i as an rk_sparse borrowing the export's arrays. */
void rk_tsparse_row(const rk_tsparse *s, size_t i, rk_sparse *out);
void rk_tsparse_free(rk_tsparse *s);

/*
 * Files. Layout (little-endian): magic "RKTSET\r\n", u32 version (1),
 * u32 ndense, u32 hash_bits, u32 flags (1 = negatives reweighted),
 * f64 neg_rate, u64 rows, u64 sparse pairs, then per row f32 label,
 * f32 weight, u64 group, i64 ts and the rk_fvec encoding, then the
 * xxh3-64 of everything before it. Save writes path.tmp, fsyncs it and
 * renames it over path, so a crash leaves the old file or the new one.
 * Load refuses (RK_ECORRUPT, RK_EVERSION, with the reason in err) a file
 * with a wrong magic, version or checksum, a truncated or overlong file
 * and invalid rows; RK_ELIMIT when the rows would not fit in max_bytes
 * (0 = 1 GiB); RK_EIO. load_mem parses a buffer the same way.
 */
int rk_trainset_save(const rk_trainset *t, const char *path, rk_err *err);
int rk_trainset_load(rk_trainset **out, const char *path, size_t max_bytes,
                     rk_err *err);
int rk_trainset_load_mem(rk_trainset **out, const void *p, size_t n,
                         size_t max_bytes, rk_err *err);

/* ======================================================================== */
/* Feature log and label join                                                */
/* ======================================================================== */
/*
 * The feature log records, per served ranking, exactly what the ranker saw
 * and said: the feature vector and score of every served item, keyed by
 * request_id (table RK_KV_FLOG) with a time index (RK_KV_FLOG_TIME: key =
 * 8-byte big-endian ts with the sign bit flipped, then the request id;
 * empty value), so training sets are built from served features, never
 * recomputed ones. Entries are written in the same durable batch as
 * anything else the caller adds. Request ids are unique: recording an id
 * again replaces its entry, and the old time key, now stale, is skipped by
 * scans and removed by rk_flog_expire.
 */
#define RK_FLOG_MAX_ITEMS 4096          /* items per entry */
#define RK_FLOG_MAX_BYTES (4u << 20)    /* encoded entry */

typedef struct rk_flog_item {
    const char *item;   /* external id, 1..RK_ID_MAX bytes, NUL-terminated */
    int32_t position;   /* 0-based rank shown, -1 = none */
    float score;        /* the model's output as served */
    rk_fvec x;          /* record: read only; decoded: arrays in the arena */
} rk_flog_item;

/* Strings are NUL-terminated, at most RK_ID_MAX bytes (context:
 * RK_MAX_CONTEXT, with its length); NULL reads as "". */
typedef struct rk_flog_entry {
    const char *request_id;     /* 1..RK_ID_MAX bytes */
    int64_t ts_ms;              /* when the request was served, >= 0 */
    const char *user;           /* external user id, may be empty */
    const char *model;          /* model name */
    uint32_t model_version;
    const char *experiment;     /* A/B experiment and arm, may be empty */
    const char *arm;
    const char *context;        /* the request's context JSON, or NULL */
    size_t context_len;
    uint32_t nitems;
    const rk_flog_item *items;
} rk_flog_entry;

/* Encodes e (little-endian, ending in an xxh3-64 of the bytes before it)
 * appending to out. RK_EINVAL (empty or oversize request id, oversize
 * string, negative ts, non-finite score, NULL item), RK_ELIMIT (more than
 * RK_FLOG_MAX_ITEMS items or RK_FLOG_MAX_BYTES bytes; out unchanged),
 * RK_ENOMEM; err says which. */
int rk_flog_encode(const rk_flog_entry *e, rk_buf *out, rk_err *err);
/* Decodes [p, p + n) into *out, every string, the items and their
 * vectors' arrays allocated from arena a (the caller resets or frees it;
 * *out is valid until then). Validates every length and the checksum:
 * RK_ECORRUPT (or RK_EVERSION) with the reason in err; RK_ENOMEM when the
 * arena cannot grow (its max_bytes bounds what a decode may take). */
int rk_flog_decode(const void *p, size_t n, rk_arena *a, rk_flog_entry *out,
                   rk_err *err);
/* Adds e to batch b: the entry under its request id and the time key.
 * Errors as rk_flog_encode, plus the batch's own (RK_ELIMIT when full).
 * Not thread-safe per batch (like every rk_batch_*). */
int rk_flog_record(rk_batch *b, const rk_flog_entry *e, rk_err *err);
/* The entry logged for request_id, decoded into arena a.
 * RK_ENOTFOUND, RK_ECORRUPT, RK_ENOMEM. */
int rk_flog_get(rk_reader *r, const char *request_id, size_t len,
                rk_arena *a, rk_flog_entry *out, rk_err *err);

/* Entries with from_ts <= ts < to_ts in time order (ties by request id).
 * The entry passed to fn is valid during the call only. fn returns 0 to go
 * on, anything else stops the scan and is returned. A corrupt entry stops
 * the scan with RK_ECORRUPT naming its request id. Memory: one entry's
 * decoded size at a time. */
typedef int (*rk_flog_fn)(void *arg, const rk_flog_entry *e);
int rk_flog_scan(rk_reader *r, int64_t from_ts, int64_t to_ts, rk_flog_fn fn,
                 void *arg, rk_err *err);
/* Like rk_flog_scan over the time index only, without reading entries:
 * fn gets each (request id, ts) pair (stale keys included). */
typedef int (*rk_flog_key_fn)(void *arg, const char *request_id, size_t len,
                              int64_t ts_ms);
int rk_flog_scan_keys(rk_reader *r, int64_t from_ts, int64_t to_ts,
                      rk_flog_key_fn fn, void *arg, rk_err *err);
/* Retention: deletes entries (and time keys) with ts < before_ts, in
 * batches of at most 1024 requests, each its own durable write with a
 * fresh reader, so it never holds a long snapshot. *deleted (may be NULL)
 * counts the entries removed. Safe while servers keep logging. Errors of
 * rk_store_write and rk_store_reader. */
int rk_flog_expire(rk_store *s, int64_t before_ts, uint64_t *deleted,
                   rk_err *err);

/*
 * Label join: turns logged requests into training rows with labels from
 * the events that followed them. Configured by the `labels:` section (see
 * docs/config.md and docs/features.md):
 *
 *   labels:
 *     window: 30m            # how long after a request its events count
 *     mode: weighted         # weighted | graded
 *     exposure: [impression]
 *     require_exposure: false
 *     positive: {click: 1, like: 3, purchase: 10}
 *     valued: {watch: 0.1}   # weight per unit of the event's value
 *     valued_min: 0          # a valued event counts when value > this
 *     max_gain: 10           # gains above are capped
 *     negative: [dislike]
 *     match_user_item: false
 *     max_index: 4000000
 *
 * For every logged request in [from_ts, to_ts) whose window has closed
 * (ts + window <= now_ms), each served item becomes one row with the
 * logged vector (bit for bit), group = a non-zero hash of the request id,
 * ts = the request's ts, and:
 *   - label 0, weight 1 when no positive event followed;
 *   - otherwise, with g = the largest gain among its positive events
 *     (positive: the type's weight; valued: weight * value, counted when
 *     value > valued_min; capped at max_gain), in "weighted"
 *     mode label 1 with weight g, in "graded" mode label g with weight 1;
 *   - an explicit negative (dislike) overrides: label 0, weight 1;
 *   - with require_exposure, items without an exposure event for the
 *     request are left out (served below the fold, never seen).
 * An event belongs to a request when it carries its request_id and the
 * served item, and arrived before ts + window (a client clock slightly
 * behind is tolerated: there is no lower bound). With match_user_item,
 * events without a request_id also count for every logged request of the
 * same user that served the item, when ts <= event ts < ts + window.
 */
typedef enum rk_label_mode {
    RK_LABEL_WEIGHTED = 0,
    RK_LABEL_GRADED = 1
} rk_label_mode;

typedef enum rk_label_role {
    RK_LABEL_EXPOSURE = 0,
    RK_LABEL_POSITIVE,
    RK_LABEL_VALUED,
    RK_LABEL_NEGATIVE
} rk_label_role;

typedef struct rk_label_type {
    char name[RK_NAME_MAX + 1];   /* event type */
    rk_label_role role;
    double weight;                /* positive: gain; valued: gain per unit */
} rk_label_type;

typedef struct rk_label_conf {
    int64_t window_ms;            /* default 30 min */
    rk_label_mode mode;
    int require_exposure;
    int match_user_item;
    double valued_min;
    double max_gain;              /* gains are capped here, default 10 */
    size_t max_index;             /* events indexed per join, default 4M */
    uint32_t ntypes;
    rk_label_type types[RK_MAX_EVENT_TYPES];
    /* The store's schema (rk_store_schema): event types are matched by its
     * indices. Set by rk_label_conf_default/from_conf. */
    const rk_schema *schema;
    /* Set by the caller, not the config: */
    const char *model;            /* join only this model's requests; NULL all */
    uint32_t model_version;       /* with model: only this version; 0 all */
    uint64_t min_seq;             /* skip events with seq below (0 = all) */
} rk_label_conf;

/* Defaults: 30 min window, weighted, gains capped at 10; the schema's
 * event types by role — positive and valued with their weights, negative,
 * exposure — or, when schema is NULL, impression / click 1 / like 3 /
 * purchase 10 / watch valued 1 / dislike (a join needs a schema). */
void rk_label_conf_default(rk_label_conf *c, const rk_schema *schema);
/* Reads the `labels:` section of root (absent: defaults) over
 * rk_label_conf_default(c, schema). Listing any of exposure, positive,
 * valued, negative replaces the defaults for that role. RK_ECONFIG with
 * "file:line: labels.x: ..." messages. */
int rk_label_conf_from_conf(rk_label_conf *c, const rk_conf_node *root,
                            const rk_schema *schema, rk_err *err);

/* The label rules, shared by the join and by a server's online labels.
 * map[t] = index in c->types of schema event type t, -1 when the type
 * plays no role. */
void rk_label_type_map(const rk_label_conf *c, int map[RK_MAX_EVENT_TYPES]);
/* The gain one event of label type t brings its item: a positive type's
 * weight, a valued type's weight times value when has_value and value >
 * valued_min, else 0; capped at max_gain. An item's gain is the largest of
 * its events'. */
float rk_label_gain(const rk_label_conf *c, const rk_label_type *t, int has_value,
                    double value);
/* The training label and weight of an item with that gain: 0 and 1 when
 * negative or without gain; else weighted mode 1 and the gain, graded
 * mode the gain and 1. Returns 1 for a positive. */
int rk_label_value(const rk_label_conf *c, float gain, int negative, float *label,
                   float *weight);

typedef struct rk_join_stats {
    uint64_t requests;        /* logged requests joined */
    uint64_t pending;         /* window still open at now_ms: skipped */
    uint64_t skipped;         /* requests of another model (or version) or
                               * vector width; items with hashed indices
                               * beyond the set's hash_bits (or left out by
                               * an rk_labels_visit function) */
    uint64_t rows;            /* rows added */
    uint64_t positives;       /* rows with a positive label */
    uint64_t negatives;       /* rows labelled 0 by an explicit negative */
    uint64_t unexposed;       /* items left out by require_exposure */
    uint64_t events_scanned;
    uint64_t events_matched;  /* events attributed to a joined request */
    uint64_t max_seq;         /* last event seq seen (a later min_seq) */
} rk_join_stats;

/*
 * Joins [from_ts, to_ts) into out (rows appended; out's ndense must match
 * the logged vectors, other entries are counted as skipped). Cost: one
 * pass over the time index, one over the events with seq >= c->min_seq,
 * one over the entries. Memory: a map of the requests in range plus one
 * record per (request, item) pair that has a relevant event (and, with
 * match_user_item, per such event without request id), at most
 * c->max_index in all: RK_ELIMIT beyond it, asking for a shorter range.
 * Also RK_EINVAL, RK_ENOMEM, RK_ECORRUPT, the set's RK_ELIMIT; on error
 * rows added so far stay in out. st may be NULL.
 */
int rk_labels_join(rk_reader *r, const rk_label_conf *c, int64_t now_ms,
                   int64_t from_ts, int64_t to_ts, rk_trainset *out,
                   rk_join_stats *st, rk_err *err);

/*
 * The same join handing each labelled item to fn instead of a training
 * set: e is the logged entry (valid during the call only), i the item's
 * index in e->items (it has a vector; e->items[i].score is the served
 * score), label and weight as rk_labels_join would add them. fn returns 0
 * to take the item (counted in rows), > 0 to leave it out (counted in
 * skipped), or a negative RK_E code to stop the join, which returns it
 * (fn should set the message; otherwise err names the code). ndense, when
 * non-zero, is the vector width required (entries with another width are
 * skipped, as rk_labels_join does for its set's width). Cost, memory and
 * errors as rk_labels_join. Not thread-safe per reader.
 */
typedef int (*rk_label_fn)(void *arg, const rk_flog_entry *e, uint32_t i,
                           float label, float weight);
int rk_labels_visit(rk_reader *r, const rk_label_conf *c, int64_t now_ms,
                    int64_t from_ts, int64_t to_ts, uint32_t ndense,
                    rk_label_fn fn, void *arg, rk_join_stats *st, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_FEATURES_H */
