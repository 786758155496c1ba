/*
 * feat_int.h — internals shared by the files of the features module that
 * implement feature definitions, computation, aggregates and replay
 * (spec.c, transform.c, agg.c, compute.c, replay.c).
 *
 * A compiled spec is a flat array of features in declaration order. Each
 * feature extracts a raw value — numeric outputs, categorical value hashes
 * or a bag of tokens — which one emit step turns into dense columns and
 * hashed coordinates. Fitting observes the same raw values, so there is
 * exactly one extraction path for serving, replay and fitting.
 *
 * Aggregates live in groups (one per key template); a group's state for a
 * key is one fixed-size record whose layout the group's slots define.
 */
#ifndef RK_FEAT_INT_H
#define RK_FEAT_INT_H

#include <jansson.h>
#include <string.h>

#include "rk_features.h"

#define FEAT_MAX 1024          /* features per spec */
#define FEAT_MAX_OUT 1024      /* numeric outputs of one feature (vectors) */
#define FEAT_MAX_WIN 8         /* windows per aggregate */
#define FEAT_MAX_PARTS 3       /* key parts per aggregate key */
#define FEAT_MAX_CROSS 4       /* components per cross */
#define FEAT_MAX_TATTRS 8      /* item attributes per text_match */
#define FEAT_MAX_LIST 256      /* values of a list attribute used */
#define FEAT_MAX_CROSS_VALUES 64
#define FEAT_MAX_QTOK 32       /* distinct query tokens used by BM25 */
#define FEAT_KEY_LEN 17        /* 'A' + layout + key hash */
#define FEAT_REC_HDR 16        /* record header bytes */

enum { FK_ATTR, FK_COLUMN, FK_COUNTER, FK_RATE, FK_RECENCY, FK_SCORE,
       FK_CONTEXT, FK_CROSS, FK_TEXT_MATCH, FK_NKINDS };
enum { VT_NUM, VT_CAT, VT_BAG };            /* raw value shape */
enum { ENC_HASH, ENC_ONEHOT, ENC_INDEX };   /* categorical encodings */
enum { MISS_NAN, MISS_CONST, MISS_MEAN };
enum { BOUT_INDEX, BOUT_ONEHOT };
enum { KP_USER, KP_ITEM, KP_ITEM_ATTR, KP_CTX };
enum { CTX_HOUR, CTX_WEEKDAY, CTX_FIELD };
enum { CT_NUMERIC, CT_CATEGORICAL, CT_TEXT };
enum { WM_ONE, WM_TYPE, WM_VALUE };

extern const char *const rk__feat_kind_names[];

/* Numeric transform settings of a feature (applied to each output). */
typedef struct numtf {
    uint8_t missing, indicator, log1p, clip, standardize, bucket_out;
    uint16_t buckets;           /* 0 = no bucketing */
    double fill, lo, hi;
} numtf;

/* Fitted parameters of one numeric output. */
typedef struct numfit {
    double mean_raw, mu, sd;
    uint64_t count;
    uint32_t nedges;
    double *edges;
} numfit;

/* A fitted vocabulary: value hashes in index order and a lookup table. */
typedef struct vocab {
    uint32_t n, cap;            /* entries; table slots (power of 2) */
    uint64_t *hash;
    uint32_t *slot;             /* index + 1, 0 = empty */
} vocab;

/* BM25 catalog statistics: document frequencies by token hash (sorted). */
typedef struct bm25fit {
    double ndocs, avgdl;
    uint32_t n;
    uint64_t *hash;
    uint32_t *df;
} bm25fit;

typedef struct kpart {
    uint8_t kind;               /* KP_* */
    uint32_t attr;              /* KP_ITEM_ATTR: item attribute index */
    char *name;                 /* attribute or context field name */
} kpart;

/* One aggregate feature's part of a group record. */
typedef struct aslot {
    uint32_t feat;
    uint32_t off, size;         /* bytes inside the record */
    uint8_t nch;                /* channels: 0 recency, 1 counter, 2 rate */
    uint8_t nwin;               /* 0 = decayed (or lifetime) sums */
    uint16_t nbuck;             /* ring buckets per window */
    double half_life_ms;        /* 0 = no decay */
    int64_t win_ms[FEAT_MAX_WIN], width[FEAT_MAX_WIN];
} aslot;

typedef struct agroup {
    uint8_t nparts, item_level, uses_ctx, uses_item_attr;
    uint8_t has_item_part;      /* the item itself is a key part */
    kpart part[FEAT_MAX_PARTS];
    uint64_t layout;            /* hash of template + slot definitions */
    uint32_t nslots;
    aslot *slot;
    uint32_t rec_size;
} agroup;

/* What one event type does to the aggregates. */
typedef struct route {
    uint16_t group, slot;
    uint8_t ch, wmode;
    double w;                   /* WM_TYPE: the type's weight */
} route;

typedef struct feat {
    char *name;
    uint8_t kind, vt, emit, item_level;
    uint64_t seed;              /* mixes into every coordinate */
    /* attribute */
    uint8_t ent, atype;
    uint32_t attr;
    char *attr_name;
    double unit_ms;             /* timestamp ages, recency */
    /* column */
    uint32_t col;
    uint8_t col_cat;
    /* aggregates */
    uint32_t group, slot;
    uint8_t wmode;
    double alpha, beta;         /* rate prior */
    char **ev_a, **ev_b;        /* event names: events or num; den */
    uint32_t nev_a, nev_b;
    /* score */
    uint32_t score;
    /* context */
    uint8_t ctx, ctype;
    char *field;
    /* cross */
    uint32_t ncomp, comp[FEAT_MAX_CROSS];
    /* text_match */
    uint32_t ntattr, tattr[FEAT_MAX_TATTRS];
    char *tattr_name[FEAT_MAX_TATTRS];
    double k1, b;
    /* outputs */
    uint32_t nout, raw0;        /* numeric outputs, first raw slot */
    uint32_t dense0, ndense;
    numtf tf;
    numfit *fit;                /* nout entries when num_fits */
    uint8_t num_fits;
    uint8_t enc;
    uint32_t vocab_max;
    uint64_t min_count;
    vocab voc;
    uint8_t tf_binary;
    bm25fit bm;
} feat;

typedef struct feat_online feat_online;

struct rk_feat_spec {
    uint32_t hash_bits, mask;
    int64_t utc_offset_ms;
    int64_t ttl_ms;
    uint32_t admit_after, sketch_width, sketch_depth;
    uint64_t replay_max_keys;
    uint64_t cache_keys, cache_mb; /* read cache bounds; 0 keys = off */
    uint32_t nfeat;
    feat *f;
    uint32_t ndense;
    char **dense_names;
    uint32_t nraw;              /* numeric raw slots */
    uint32_t ngroups;
    agroup *g;
    uint32_t nscores;
    char **score_names;
    /* event routing by type index; type names for rk_feat_batch_event */
    uint32_t ntypes;
    char **type_names;
    uint8_t *type_role;
    double *type_weight;
    uint32_t *route0, *nroute;
    route *routes;
    uint32_t ncol_num, ncol_cat; /* column features' index bounds */
    uint8_t needs_fit, fitted;
    uint8_t uses_user_attrs, uses_item_entity, uses_ctx, uses_query;
    uint32_t max_user_attr, max_item_attr; /* +1 bounds of used indices */
    char *canon;
    size_t canon_len;
    uint64_t hash;
    feat_online *online;        /* set by rk_feat_attach */
    struct feat_cache *cache;   /* read cache, set by rk_feat_attach */
    int cache_shared;           /* cache borrowed from another spec */
};

/* ---- spec.c ---------------------------------------------------------- */
/* Recomputes the schema hash from the canonical text and fitted params. */
int rk__feat_rehash(rk_feat_spec *s);
/* Serializes / parses the fitted parameters (little-endian). */
int rk__feat_fit_save(const rk_feat_spec *s, rk_buf *out);
int rk__feat_fit_load(rk_feat_spec *s, const unsigned char *p, size_t n,
                      rk_err *err);
void rk__feat_fit_clear(rk_feat_spec *s);

/* ---- transform.c ----------------------------------------------------- */
static inline uint64_t rk__mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Hash of a categorical value's bytes; seed-free so crosses and
 * vocabularies agree on it. */
static inline uint64_t rk__feat_vhash(const void *p, size_t n)
{
    return rk_hash64(p, n, 0x6b1f0c2d9a3e5587ull);
}
/* log1p with the sign kept, so negative values do not become NaN. */
double rk__feat_slog1p(double x);
/* Value before standardizing/bucketing: fill, log1p, clip. */
double rk__feat_prep(const numtf *tf, const numfit *fp, double raw);
/* Emits output k of f with raw value x into out. */
int rk__feat_emit_num(const rk_feat_spec *s, const feat *f, uint32_t k,
                      double x, rk_fvec *out);
/* Index of value hash h in the vocabulary, or v->n (out of vocabulary). */
uint32_t rk__feat_vocab_find(const vocab *v, uint64_t h);
int rk__feat_vocab_build(vocab *v, const uint64_t *hashes, uint32_t n);
void rk__feat_vocab_free(vocab *v);
/* Document frequency of a token hash in the fitted catalog (1 if absent). */
double rk__feat_bm25_df(const bm25fit *b, uint64_t h);

/* ---- agg.c ----------------------------------------------------------- */
/* One update of a record by an event. */
typedef struct agg_upd {
    uint16_t slot;
    uint8_t ch;
    double w;
} agg_upd;

/* Builds the 17-byte key of group g from its part hashes. */
void rk__feat_agg_key(const agroup *g, const uint64_t *parts,
                      unsigned char key[FEAT_KEY_LEN]);
/* The key's hash word alone (bytes 9..16 of rk__feat_agg_key). */
uint64_t rk__feat_agg_hash(const agroup *g, const uint64_t *parts);
/* rk__feat_agg_hash of the one-part group [item] of layout `layout` for
 * the item whose key-part hash is ih (no agroup needed: the cache's
 * commit hook maps item ids to bundle keys with it). */
uint64_t rk__feat_item_key_hash(uint64_t layout, uint64_t ih);
/* Hashes of key parts; context values are hashed by field. */
uint64_t rk__feat_part_hash(uint8_t kind, const void *p, size_t n);
/* Index of the group keyed by the item alone ([item]; at most one, as
 * groups are one per key template), or -1. */
int32_t rk__feat_item_group(const rk_feat_spec *s);
/* The first item-level group keyed [item, context.X] (either order), whose
 * records join device bundles; -1 when none. */
int32_t rk__feat_item_ctx_group(const rk_feat_spec *s);
/* The group with this layout hash, or NULL. */
const agroup *rk__feat_group_by_layout(const rk_feat_spec *s, uint64_t lay);

/* Count-min sketch deciding admission (owned by the merge context or a
 * replay state). */
typedef struct feat_sketch {
    uint32_t width, depth, admit;
    uint32_t *c;
    uint64_t incs;
} feat_sketch;
int rk__feat_sketch_init(feat_sketch *k, const rk_feat_spec *s);
void rk__feat_sketch_free(feat_sketch *k);

/* The merge math shared by the store's merge function and the replay:
 * applies ts/updates to a record (old may be NULL or expired), writing the
 * new record into out (rec_size bytes). Returns 1 when the record must
 * not exist (not admitted), 0 otherwise; *created set when a fresh record
 * was started. */
int rk__feat_agg_apply(const rk_feat_spec *s, const agroup *g,
                       feat_sketch *k, uint64_t keyhash,
                       const unsigned char *old, size_t oldlen, int64_t ts,
                       const agg_upd *u, size_t nu, unsigned char *out,
                       int *created);
/* The read math: outputs of slot sl of a record (NULL = no state) at time
 * t into raw (f->nout values). */
void rk__feat_agg_read(const rk_feat_spec *s, const agroup *g,
                       const aslot *sl, const feat *f,
                       const unsigned char *rec, size_t len, int64_t t,
                       double *raw);

/* An event normalised for update generation: key part hashes of its user
 * and item (rk__feat_part_hash), type index, context JSON text. */
typedef struct feat_event {
    uint32_t type;
    uint8_t has_user, has_item, has_value;
    uint64_t uh, ih;
    int64_t ts;
    double value;
    const char *ctx;
    size_t ctx_len;
} feat_event;

/* Per-event scratch: each group's state and key parts, and the updates
 * grouped by group. Inline storage covers small specs so the ingest path
 * does not allocate. */
#define EVOPS_INLINE_GROUPS 16
#define EVOPS_INLINE_UPD 64
typedef struct feat_evops {
    uint32_t ngroups, cap;
    uint8_t *state;              /* per group: 0 untouched, 1 keyed, 2 no key */
    uint64_t (*parts)[FEAT_MAX_PARTS];
    uint16_t *ug;                /* group of each update */
    agg_upd *upd;
    uint32_t nupd;
    int heap;
    uint8_t st_in[EVOPS_INLINE_GROUPS];
    uint64_t parts_in[EVOPS_INLINE_GROUPS][FEAT_MAX_PARTS];
    uint16_t ug_in[EVOPS_INLINE_UPD];
    agg_upd upd_in[EVOPS_INLINE_UPD];
} feat_evops;
int rk__feat_evops_init(feat_evops *e, const rk_feat_spec *s);
void rk__feat_evops_free(feat_evops *e);
/* Hash of the item's categorical attribute attr as a key part; non-zero
 * when the item has no such value. */
typedef int (*feat_item_attr_fn)(void *arg, uint32_t attr, uint64_t *hash);
/* Computes the updates of ev into out (reset first). item_attr is called
 * only for groups keyed by an item attribute. */
int rk__feat_event_ops(const rk_feat_spec *s, const feat_event *ev,
                       feat_item_attr_fn item_attr, void *arg,
                       feat_evops *out);
/* A JSON context value as the text keys and categoricals use: strings as
 * they are, integers and reals printed, booleans true/false; non-zero for
 * null, objects, arrays and absent values. buf holds printed numbers. */
int rk__feat_json_str(const json_t *v, char buf[48], const char **p,
                      size_t *n);
/* Parses a context object; NULL for none or malformed text. */
json_t *rk__feat_json_parse(const char *p, size_t n);
/* Frees the attached merge context (spec destruction). */
void rk__feat_online_free(rk_feat_spec *s);

/* ---- cache.c --------------------------------------------------------- */
/* The online read cache (see cache.c for its coherence rules). Keys are
 * two words: an aggregate key's layout and key hash, or an entity's
 * key-part hash (rk__feat_part_hash of its external id, the hash its
 * aggregate keys are built from) spread over two words
 * (rk__feat_cache_entity_key). */
typedef struct feat_cache feat_cache;
typedef struct fc_key {
    uint64_t a, b;
} fc_key;
enum { FC_MISS = 0, FC_HIT = 1, FC_ABSENT = 2, FC_BYPASS = 3 };
int rk__feat_cache_create(feat_cache **out, size_t max_keys, size_t max_bytes,
                          size_t max_val);
void rk__feat_cache_destroy(feat_cache *c);
/* Probe for a reader whose snapshot is commit ver: FC_HIT (value copied to
 * buf, *len bytes), FC_ABSENT (the key has no value), FC_MISS (read the
 * store, then fill), FC_BYPASS (read the store, do not fill). A value
 * longer than cap is a miss. Thread-safe. */
int rk__feat_cache_get(feat_cache *c, fc_key k, uint64_t ver, void *buf,
                       size_t cap, size_t *len);
/* One query of a batch: k in; rc FC_MISS to probe (anything else is
 * skipped); with stamped set, an entry older than item stamp ist (a
 * device bundle's [item] key hash word) is a miss; out: rc, and on FC_HIT
 * val/len, a copy in the arena valid until it is reset. h is scratch. */
typedef struct fc_get {
    fc_key k;
    uint64_t h;
    const unsigned char *val;
    uint32_t len;
    int rc;
    uint64_t aux;       /* hits: the fill's aux word and state */
    uint64_t ist;
    uint8_t auxst;
    uint8_t stamped;
} fc_get;
/* Probes a batch of keys for a reader at commit ver, like
 * rk__feat_cache_get each, taking each shard's lock once. Values of any
 * length are copied into arena (a query whose copy does not fit stays a
 * miss; an empty value is a hit with val NULL). Thread-safe; the arena is
 * the caller's. */
void rk__feat_cache_get_many(feat_cache *c, uint64_t ver, fc_get *q, size_t n,
                             rk_arena *arena);
/* Pinned, lock-free reading (one pin per request): returns the reader
 * slot (>= 0) to pass to the calls below, or -1 when every slot is taken
 * (use the locked calls above). *hint is the caller's last slot, tried
 * first. Values found stay allocated until unpin. */
int rk__feat_cache_pin(feat_cache *c, uint32_t *hint);
void rk__feat_cache_unpin(feat_cache *c, int rs);
/* Like rk__feat_cache_get_many for pinned reader rs, without any lock: on
 * FC_HIT val borrows the cache's bytes (valid until unpin). */
void rk__feat_cache_find_many(feat_cache *c, int rs, uint64_t ver, fc_get *q,
                              size_t n);
/* One key of rk__feat_cache_find_many. */
int rk__feat_cache_find(feat_cache *c, int rs, fc_key k, uint64_t ver,
                        const unsigned char **val, size_t *len);
/* Offers the value read from snapshot ver (present 0: no value); refused
 * when a later commit changed the key. Thread-safe. */
void rk__feat_cache_fill(feat_cache *c, fc_key k, uint64_t ver, const void *val,
                         size_t len, int present);
/* rk__feat_cache_fill with a word the filler derived from the value
 * (auxst != 0 says it is set); lock-free hits return it with the entry, so
 * a batch can use it without touching the value (an item record's first
 * key-part hash). */
void rk__feat_cache_fill_aux(feat_cache *c, fc_key k, uint64_t ver, const void *val,
                             size_t len, int present, uint64_t aux, uint8_t auxst);
/* rk__feat_cache_fill_aux of a present device bundle whose item's [item]
 * key hash word is ist: refused too when a later commit changed the item
 * or its [item] record (the item stamp). */
void rk__feat_cache_fill_stamped(feat_cache *c, fc_key k, uint64_t ist, uint64_t ver,
                                 const void *val, size_t len, uint64_t aux, uint8_t auxst);
/* The store's commit hook: drops the changed keys, then publishes txn. */
void rk__feat_cache_commit(feat_cache *c, uint64_t txn,
                           const rk_commit_change *ch, size_t n);
/* Starts loading k's slot into the CPU cache (batched fetches). */
void rk__feat_cache_prefetch(feat_cache *c, fc_key k);
fc_key rk__feat_cache_entity_key(uint8_t entity, const void *id, size_t len);
/* The same key from the id's key-part hash h (KP_USER for users, KP_ITEM
 * for items), for callers that hold it already: one hash per candidate. */
fc_key rk__feat_cache_entity_key_h(uint8_t entity, uint64_t h);
void rk__feat_cache_stats(feat_cache *c, rk_feat_cache_stats *o);
/* Item bundles: one entry per item holding its record (entity blob) and
 * its record of the one-part [item] aggregate group, under
 * rk__feat_cache_bundle_key(layout, the [item] key's hash word), so a
 * candidate costs one probe for both. The commit hook drops an item's
 * bundle when its entity or that record changes (the second derived from
 * the record's key, the first from the item's id). Device bundles (dlayout
 * != 0, the layout of an [item, context.X] group) add the item's record of
 * that group for one value of X, under rk__feat_cache_bundle_key(dlayout,
 * that record's key hash word): one probe per candidate for all three.
 * The hook drops one when its group record changes and raises the item's
 * stamp when the item or its [item] record does; they are read with the
 * stamp (fc_get.stamped) and filled with rk__feat_cache_fill_stamped.
 * Set once before any fill (rk_feat_attach); layout 0: no bundles. */
void rk__feat_cache_set_bundle(feat_cache *c, uint64_t layout, uint64_t dlayout);
uint64_t rk__feat_cache_bundle_layout(const feat_cache *c);
uint64_t rk__feat_cache_dbundle_layout(const feat_cache *c);
fc_key rk__feat_cache_bundle_key(uint64_t layout, uint64_t item_key_hash);

/* ---- compute.c ------------------------------------------------------- */
/* Aggregate record lookup of a source: *rec NULL when absent. */
int rk__feat_src_get(rk_feat_source *src, const unsigned char *key,
                     const unsigned char **rec, size_t *len, rk_err *err);

/* Fitting hooks: compute.c extracts raw values, fit code observes them. */
typedef struct feat_fitter feat_fitter;
/* Extracts every feature's raw value for (req, item) and hands them to the
 * fitter instead of emitting them. */
int rk__feat_observe(rk_feat_source *src, const rk_feat_request *req,
                     const rk_feat_item *item, feat_fitter *fz, rk_err *err);
/* Called by rk__feat_observe for each feature: numeric outputs, or
 * categorical hashes. */
int rk__feat_fit_num(feat_fitter *fz, uint32_t fi, const double *raw);
int rk__feat_fit_cat(feat_fitter *fz, uint32_t fi, const uint64_t *v,
                     uint32_t n);

/* ---- replay.c -------------------------------------------------------- */
/* The replay's state lookup (used by sources bound to a state). */
const unsigned char *rk__feat_state_get(const rk_feat_state *st,
                                        const unsigned char *key,
                                        size_t *len);

/* Little-endian helpers (the core's field helpers under the names this
 * module has always used). */
static inline void rk__le64(unsigned char *p, uint64_t x) { rk_put_u64(p, x); }
static inline uint64_t rk__rd64(const unsigned char *p) { return rk_get_u64(p); }
static inline void rk__lef64(unsigned char *p, double d)
{
    uint64_t x;
    memcpy(&x, &d, 8);
    rk__le64(p, x);
}
static inline double rk__rdf64(const unsigned char *p)
{
    uint64_t x = rk__rd64(p);
    double d;
    memcpy(&d, &x, 8);
    return d;
}

#endif
