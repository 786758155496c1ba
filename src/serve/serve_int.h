/*
 * serve_int.h — internals shared by the files of src/serve/: the request
 * object handlers fill, metrics, model snapshots, user histories, A/B
 * experiments and the candidate cache. Nothing here is API.
 */
#ifndef RK_SERVE_INT_H
#define RK_SERVE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "rk_features.h"
#include "rk_io.h"
#include "rk_loop.h"
#include "rk_monitor.h"
#include "rk_rank.h"
#include "rk_retrieval.h"
#include "rk_serve.h"
#include "rk_train.h"

/* ---- endpoints and metrics ------------------------------------------------ */

typedef enum sv_ep {
    SV_EP_EVENTS, SV_EP_ITEM_PUT, SV_EP_ITEM_DELETE, SV_EP_ITEM_GET,
    SV_EP_USER_PUT, SV_EP_USER_GET, SV_EP_RECOMMEND, SV_EP_RANK, SV_EP_SCORE,
    SV_EP_SIMILAR, SV_EP_MODELS, SV_EP_PROMOTE, SV_EP_ROLLBACK,
    SV_EP_EXPERIMENTS, SV_EP_METRICS, SV_EP_HEALTHZ, SV_EP_READYZ,
    SV_EP_OPENAPI, SV_EP_MONITOR_DRIFT, SV_EP_MONITOR_EVENTS, SV_EP_OTHER, SV_EP_COUNT
} sv_ep;

/* Stable error codes of the HTTP API (docs/serving.md); only appended. */
#define SV_ERRORS(X)                                 \
    X(BAD_JSON, 400)                                 \
    X(BAD_REQUEST, 400)                              \
    X(LIMIT_EXCEEDED, 400)                           \
    X(UNAUTHORIZED, 401)                             \
    X(FORBIDDEN, 403)                                \
    X(NOT_FOUND, 404)                                \
    X(UNKNOWN_USER, 404)                             \
    X(UNKNOWN_ITEM, 404)                             \
    X(UNKNOWN_MODEL, 404)                            \
    X(METHOD_NOT_ALLOWED, 405)                       \
    X(CONFLICT, 409)                                 \
    X(PAYLOAD_TOO_LARGE, 413)                        \
    X(UNAVAILABLE, 503)                              \
    X(INTERNAL, 500)

typedef enum sv_errcode {
#define SV__E(name, st) SV_ERR_##name,
    SV_ERRORS(SV__E)
#undef SV__E
    SV_ERR_COUNT
} sv_errcode;

const char *sv_errcode_name(sv_errcode c);
int sv_errcode_status(sv_errcode c);

/* Latency histogram bucket bounds in microseconds (Prometheus `le`). */
#define SV_NBUCKETS 18
extern const double sv_bucket_us[SV_NBUCKETS];

typedef struct sv_hist {
    atomic_uint_fast64_t b[SV_NBUCKETS + 1]; /* last = +Inf */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ns;
} sv_hist;

void sv_hist_add(sv_hist *h, uint64_t ns);

/* server.c: the server's clock (serve.clock). Under clock: wall it is the
 * wall clock; under clock: event it never runs behind the newest time
 * sv_clock_seen was given, and advances with the wall clock in between. */
int64_t sv_now_ms(rk_server *s);
void sv_clock_seen(rk_server *s, int64_t ts_ms);
/* Approximate quantile (bucket upper bound interpolation) in microseconds. */
double sv_hist_quantile(const sv_hist *h, double q);

typedef enum sv_degrade {
    SV_DEG_NONE = 0, SV_DEG_FEWER = 1, SV_DEG_TRENDING = 2, SV_DEG_COUNT
} sv_degrade;

typedef struct sv_metrics {
    sv_hist lat[SV_EP_COUNT];
    atomic_uint_fast64_t status[SV_EP_COUNT][6]; /* 1xx..5xx by hundreds */
    atomic_uint_fast64_t errors[SV_ERR_COUNT];
    atomic_uint_fast64_t degraded[SV_DEG_COUNT];
    atomic_uint_fast64_t events_ingested;
    atomic_uint_fast64_t events_by_type[RK_MAX_EVENT_TYPES];
    atomic_uint_fast64_t stage_ns[4];   /* retrieval, features, rank, rules */
    sv_hist stage[4];
    atomic_uint_fast64_t candidates_total;
    atomic_uint_fast64_t flog_written, flog_failed;
} sv_metrics;

/* ---- model snapshots ------------------------------------------------------- */

typedef enum sv_slot_kind { SV_SLOT_RANKER, SV_SLOT_FACTORS, SV_SLOT_COVIS } sv_slot_kind;

/* An immutable loaded model version. Readers hold a reference for a whole
 * request; the reload thread swaps the slot's pointer under its mutex and
 * the last reference frees the snapshot, so no request ever sees a model
 * change under it or a half-loaded one. */
typedef struct sv_model {
    atomic_int ref;
    struct sv_model *next_dead;  /* graveyard link */
    struct rk_server *owner;
    sv_slot_kind kind;
    uint32_t version;
    char name[RK_METRIC_NAME_MAX * 4];
    int64_t loaded_ms;
    /* ranker */
    rk_ranker *ranker;
    rk_feat_spec *spec;         /* the ranker's own (fitted) feature spec */
    uint32_t nscores;
    int score_src[8];           /* score slot -> rk_source, -1 = none */
    /* factors */
    rk_ials_model *ials;
    rk_ann *ann;
    /* co-visitation */
    rk_covis *covis;
    /* monitoring (rankers with a meta.json): references and live window */
    rk_model_meta meta;
    int has_meta;
    rk_drift_window *win;       /* inputs then the prediction */
    int32_t *mon_col;           /* reference i -> dense column, -1 = none */
    /* online learning: a snapshot derived from `base` (same version) with
     * a ranker updated from labelled examples; everything but the ranker
     * is borrowed from base, which it holds a reference to. */
    struct sv_model *base;
    uint64_t online_updates;
    /* monitor.reference: served — the version's first full live window,
     * built once (under the server's mon_mu) and then read only */
    atomic_int sref_ready;
    rk_refhist **sref;          /* meta.nfeatures + 1 (the prediction last) */
} sv_model;

#define SV_NAME_MAX 201
typedef struct sv_slot {
    char name[SV_NAME_MAX];
    sv_slot_kind kind;
    uint32_t pinned;            /* 0 = follow the registry's current */
    pthread_mutex_t mu;
    sv_model *cur;
    atomic_uint_fast64_t loads, failures;
    uint32_t failed_version;    /* last version that failed to load */
    int absent;                 /* the registry has no current version */
    char label[SV_NAME_MAX + 16]; /* name, or name@version when pinned */
    char last_error[RK_ERR_MSG_MAX];
} sv_slot;

sv_model *sv_slot_acquire(sv_slot *sl);    /* NULL when none is loaded */
/* Drops a reference. The last one does not free the snapshot on the
 * caller's thread (a request must not pay for unmapping an index): it
 * goes to the graveyard, which the background thread empties. */
void sv_model_release(sv_model *m);
void sv_models_bury(rk_server *s);         /* frees the graveyard */

/* ---- experiments ------------------------------------------------------------ */

#define SV_MAX_VARIANTS 8
#define SV_MAX_EXPERIMENTS 8

typedef struct sv_variant {
    char name[64];
    double weight;
    int ranker_slot;            /* index into server slots, -1 = default */
    uint32_t candidates;        /* 0 = default */
    /* live statistics */
    atomic_uint_fast64_t requests, impressions, clicks, watches;
    pthread_mutex_t mu;         /* guards the sums below */
    double watch_sum, watch_sq;
} sv_variant;

typedef struct sv_experiment {
    char name[64];
    size_t nvariants;
    sv_variant v[SV_MAX_VARIANTS];
    double total_weight;
    double traffic;             /* share of users in the experiment */
} sv_experiment;

/* ---- the server -------------------------------------------------------------- */

typedef struct sv_worker sv_worker;
typedef struct sv_history sv_history;
typedef struct sv_ccache sv_ccache;
typedef struct sv_idcache sv_idcache;
typedef struct sv_online sv_online;

#define SV_MAX_SLOTS (2 + SV_MAX_EXPERIMENTS * SV_MAX_VARIANTS + 2)

struct rk_server {
    rk_serve_opts o;
    rk_store *store;
    const rk_conf_node *root;
    rk_logger *log;
    char models_dir[4096];
    rk_registry *reg;
    pthread_mutex_t reg_mu;     /* the registry handle is not thread-safe */
    const rk_schema *schema;
    rk_feat_spec *online;       /* the config's features: attached to store */
    rk_label_conf labels;
    int labels_ok;
    int64_t started_ms;         /* wall clock, for uptime */
    /* serve.clock: event — the server's now is the wall clock plus this
     * offset, raised (never lowered) when a request or an event carries a
     * later time. Stays 0 under clock: wall. */
    atomic_int_fast64_t clock_off;
    int ready;

    /* slots: 0 = default ranker, 1 = factors, 2 = covis, then variants */
    sv_slot slots[SV_MAX_SLOTS];
    size_t nslots;
    pthread_mutex_t dead_mu;
    sv_model *dead;             /* released snapshots awaiting their free */

    sv_experiment exps[SV_MAX_EXPERIMENTS];
    size_t nexps;
    pthread_mutex_t ab_mu;      /* guards ab_map */
    rk_map *ab_map;             /* request id -> experiment << 8 | variant */

    /* retrieval state rebuilt in the background */
    pthread_mutex_t gen_mu;
    rk_popular *trending;       /* guarded by gen_mu; swapped whole */
    rk_fresh *fresh;
    atomic_int gen_ref_trending;
    pthread_rwlock_t blocked_mu;
    uint64_t *blocked;          /* hidden/deleted items bitset */
    uint32_t nblocked;

    sv_history *hist;
    sv_ccache *ccache;
    sv_idcache *ids;
    atomic_uint_fast64_t fallbacks;  /* trending fallbacks since a ranking */
    uint32_t cat_attr;          /* item attribute index, UINT32_MAX = none */
    int cat_ok;

    /* workers */
    pthread_mutex_t wk_mu;
    pthread_cond_t wk_cv;
    sv_worker *wk_free;
    size_t wk_count, wk_max;

    /* background threads */
    pthread_t bg;
    int bg_started;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    int stopping;

    void *mhd;                  /* struct MHD_Daemon */
    uint16_t port;
    sv_metrics m;
    rk_drift_opts drift_opts;

    /* learning loop (learn.c) and the audit log */
    rk_loop_opts loop;
    rk_audit *audit;
    pthread_t loop_thread;
    int loop_started;
    atomic_int loop_stop, loop_training;
    atomic_uint_fast64_t rank_cost16;  /* ns per ranked candidate x 16 */

    sv_online *onl;             /* delayed labels, online metrics (online.c) */
    size_t label_requests, label_bytes;
    /* monitor.exclude: drift_opts.exclude points here; the names are
     * borrowed from the config tree. */
    const char *mon_exclude[RK_DRIFT_EXCLUDE_MAX];
    int mon_ref_served;         /* monitor.reference: served */
    int64_t mon_span_ms;        /* monitor.span: compare only the rows of
                                   this last span (server clock); 0 = all */
    pthread_mutex_t mon_mu;     /* builds served references */
    /* online learner (learn.c) */
    atomic_uint_fast64_t learn_updates, learn_errors, learn_snapshots, learn_decays;
    atomic_uint_fast64_t learn_weight_milli; /* sum of applied example weights x 1000 */

    /* feature log: requests append to flog_batch; the flog thread writes */
    pthread_mutex_t flog_mu;
    rk_batch *flog_batch;
    pthread_t flog_thread;
    int flog_started;
    atomic_uint_fast64_t reqno;
    uint64_t id_seed;
};

/* A request as handlers see it. */
typedef struct sv_req {
    rk_server *srv;
    sv_worker *w;
    const char *method;
    const char *path;           /* without the query string */
    const char *query;          /* after '?', or "" */
    const char *param;          /* the {id} path segment, URL-decoded */
    char param_buf[512];
    const char *body;
    size_t body_len;
    json_t *json;               /* parsed body (object or array) or NULL */
    char request_id[40];
    uint64_t t0_ns;
    int64_t now_ms;
    sv_ep ep;
    int status;
    rk_buf *out;
    const char *ctype;          /* "application/json" unless set */
} sv_req;

/* Writes the {error, detail, request_id} body; returns -1 for handlers. */
int sv_error(sv_req *q, sv_errcode code, const char *fmt, ...) RK_PRINTF(3, 4);
/* Maps an rk error code to the API's error (404 for RK_ENOTFOUND, ...). */
int sv_error_rk(sv_req *q, int rc, const rk_err *err);

/* Per-thread scratch: feature sources, parsers, a batch, arenas. */
struct sv_worker {
    sv_worker *next;
    rk_arena arena;
    rk_io_parser *p_events, *p_users, *p_items;
    rk_batch *batch;
    rk_feat_source *src;        /* for the spec src_spec */
    const rk_feat_spec *src_spec;
    rk_fvec *fv;
    size_t nfv;
    float *scores;
    size_t nscores;
};
sv_worker *sv_worker_get(rk_server *s);
void sv_worker_put(rk_server *s, sv_worker *w);
/* A feature source for spec in w (recreated when the spec changes). */
rk_feat_source *sv_worker_source(sv_worker *w, const rk_feat_spec *spec);
int sv_worker_fvecs(sv_worker *w, size_t n);

/* ---- handlers (handlers.c, recommend.c, ab.c, metrics.c, models.c) ----------- */

int sv_h_events(sv_req *q);
int sv_h_item_put(sv_req *q);
int sv_h_item_delete(sv_req *q);
int sv_h_entity_get(sv_req *q);
int sv_h_user_put(sv_req *q);
int sv_h_recommend(sv_req *q);
int sv_h_rank(sv_req *q);
int sv_h_score(sv_req *q);
int sv_h_similar(sv_req *q);
int sv_h_models(sv_req *q);
int sv_h_promote(sv_req *q);
int sv_h_rollback(sv_req *q);
int sv_h_experiments(sv_req *q);
int sv_h_metrics(sv_req *q);
int sv_h_healthz(sv_req *q);
int sv_h_readyz(sv_req *q);
int sv_h_openapi(sv_req *q);
int sv_h_monitor_drift(sv_req *q);
int sv_h_monitor_events(sv_req *q);

/* learn.c */
int sv_learn_start(rk_server *s, rk_err *err);
void sv_learn_stop(rk_server *s);
void sv_learn_metrics(rk_server *s, rk_buf *b);

/* monitor.c */
int sv_monitor_attach(rk_server *s, sv_model *m, const char *dir, rk_err *err);
/* The group key of a request's served items: its user's id hashed, or
 * without a user its request id's (anonymous requests are independent). */
uint32_t sv_monitor_user_key(const sv_req *q, const char *user, size_t len);
/* One served item: its features, score, time, the request's user key
 * and the item's index. */
void sv_monitor_observe(sv_model *m, const rk_fvec *x, float score, int64_t ts_ms,
                        uint32_t user_key, uint32_t item);
void sv_monitor_metrics(rk_server *s, rk_buf *b);
/* The drift report of m's live window against its reference (NULL in
 * *out when m is not monitored); *rows = items observed since load,
 * *current (may be NULL) = items the report compared (the window, or its
 * monitor.span). */
int sv_monitor_report(rk_server *s, sv_model *m, rk_drift_report **out,
                      uint64_t *rows, uint64_t *current, rk_err *err);

/* online.c: delayed labels of served rankings, per-version online
 * metrics (concept drift) and the online learner's examples */
typedef struct sv_example {
    struct sv_example *next;
    char name[SV_NAME_MAX];     /* the model that served it */
    uint32_t version;
    float y, w, p;              /* label and weight as the label join gives
                                   them, served prediction */
    rk_fvec x;                  /* arrays follow the struct */
} sv_example;
int sv_online_create(rk_server *s, size_t max_requests, size_t max_bytes,
                     int keep_vectors, rk_err *err);
void sv_online_destroy(rk_server *s);
/* A ranking served by m: n items, their scores and vectors (x[i] may be
 * NULL; vectors are kept only for online learning). */
void sv_online_served(rk_server *s, const char *request_id, int64_t now_ms,
                      const sv_model *m, const char *const *ids,
                      const float *scores, const rk_fvec *const *x, size_t n);
/* An acknowledged event carrying a request id. */
void sv_online_event(rk_server *s, const char *request_id, const char *item,
                     uint32_t type, int has_value, double value);
/* Labels requests whose window has passed (background thread). */
void sv_online_tick(rk_server *s, int64_t now_ms);
/* Detaches the queued labelled examples (the learner frees them). */
sv_example *sv_online_take(rk_server *s, size_t *n);
void sv_example_free(sv_example *e);
/* A version's online metrics; 0 when it has none. */
int sv_online_get(rk_server *s, const char *name, uint32_t version,
                  rk_concept_metrics *out, uint32_t *prev, int *checked);
void sv_online_set_checked(rk_server *s, const char *name, uint32_t version);
/* A version's concept-drift windows: its first loop.concept_window labels
 * and its latest ones (up to as many), with the served time of the oldest
 * recent label; 0 when the version has none or the windows are off. */
int sv_online_concept(rk_server *s, const char *name, uint32_t version,
                      rk_concept_metrics *base, rk_concept_metrics *recent,
                      int64_t *recent_from_ms);
void sv_online_json(rk_server *s, rk_buf *b);
void sv_online_metrics(rk_server *s, rk_buf *b);

/* models.c */
/* Replaces the slot's model by `derived` (built from base) when the slot
 * still serves base or a snapshot derived from it; 0 on success, else
 * the caller keeps derived. */
int sv_slot_swap_derived(sv_slot *sl, sv_model *base, sv_model *derived);
/* Rolls name back to its previous version in the registry and reloads. */
int sv_models_rollback(rk_server *s, const char *name, uint32_t *now, rk_err *err);
int sv_models_init(rk_server *s, rk_err *err);
void sv_models_reload(rk_server *s);        /* one poll of every slot */
void sv_models_free(rk_server *s);
int sv_slot_add(rk_server *s, const char *name, sv_slot_kind kind,
                uint32_t pinned, rk_err *err);

/* history.c: recent events per user, in memory, bounded */
int sv_history_create(sv_history **out, size_t max_users, uint32_t per_user);
void sv_history_destroy(sv_history *h);
/* Appends one event of a user (dense ids). positive: counts as "seen". */
void sv_history_add(sv_history *h, uint32_t user, uint32_t item, int64_t ts,
                    float weight, int seen);
/* Copies the user's events, oldest first, into the arrays (cap entries);
 * returns how many. seen_only: only those marked seen. */
size_t sv_history_get(sv_history *h, uint32_t user, uint32_t *items,
                      int64_t *ts, float *w, size_t cap, int seen_only);
size_t sv_history_users(sv_history *h);
size_t sv_history_bytes(sv_history *h);
uint64_t sv_history_evictions(sv_history *h);
uint64_t sv_history_version(sv_history *h, uint32_t user);

/* ccache.c: per-user candidate lists, bounded, invalidated by new events */
int sv_ccache_create(sv_ccache **out, size_t max_users, uint32_t ttl_s);
void sv_ccache_destroy(sv_ccache *c);
/* Copies a fresh entry (stamp must match) into out (cap); 1 on hit. */
int sv_ccache_get(sv_ccache *c, uint32_t user, uint64_t stamp, int64_t now_ms,
                  rk_candidate *out, size_t cap, size_t *n);
void sv_ccache_put(sv_ccache *c, uint32_t user, uint64_t stamp, int64_t now_ms,
                   const rk_candidate *cands, size_t n);
void sv_ccache_invalidate(sv_ccache *c, uint32_t user);
/* Users whose entry was invalidated and who are worth precomputing. */
size_t sv_ccache_pending(sv_ccache *c, uint32_t *users, size_t cap);
void sv_ccache_stats(sv_ccache *c, size_t *entries, size_t *bytes,
                     uint64_t *hits, uint64_t *misses, uint64_t *evictions);

/* idcache.c: dense item id -> external id, append-only, lock-free reads */
int sv_idcache_create(sv_idcache **out, uint32_t max_ids);
void sv_idcache_destroy(sv_idcache *c);
/* The external id of item id (borrowed: from the cache for ever, or from
 * r until it closes). RK_ENOTFOUND and store errors as rk_reader_external. */
int sv_idcache_get(sv_idcache *c, rk_reader *r, uint32_t id, const char **ext,
                   size_t *len);
void sv_idcache_stats(sv_idcache *c, size_t *entries, size_t *bytes);

/* recommend.c */
int sv_set_blocked(rk_server *s, uint32_t item, int on);
int sv_cmp_u32(const void *a, const void *b);
/* Retrieval for one user: candidates merged by quota into out (ncand
 * entries), seen and hidden items dropped; from the user's cached list
 * when it is still valid. The request's own exclusions and filters are
 * applied by the caller (cached lists are shared across requests). */
int sv_retrieve(rk_server *s, sv_req *q, int has_user, uint32_t user,
                uint32_t ncand, rk_candidate *out, size_t *nout, rk_err *err);
/* Precomputes candidates for pending users (background thread). */
void sv_precompute(rk_server *s);
/* Rebuilds trending and fresh from the store (background thread). */
int sv_refresh_generators(rk_server *s, rk_err *err);

/* ab.c */
int sv_ab_init(rk_server *s, rk_err *err);
void sv_ab_free(rk_server *s);
/* The experiment and variant for a user (or -1s when none). */
void sv_ab_assign(rk_server *s, const char *user, size_t len, int *exp,
                  int *var);
void sv_ab_served(rk_server *s, const char *request_id, int exp, int var);
/* An event carrying request_id: counted for its variant. */
void sv_ab_event(rk_server *s, const char *request_id, const char *type,
                 int has_value, double value);

/* metrics.c */
void sv_metrics_observe(rk_server *s, sv_ep ep, int status, uint64_t ns);

/* json helpers (router.c) */
/* Member of the body object by name, or NULL; *err set when the body is
 * not an object. */
json_t *sv_field(sv_req *q, const char *name);
/* Typed getters: 0 ok, 1 absent (dflt kept), -1 error response written. */
int sv_get_str(sv_req *q, json_t *obj, const char *name, const char **out,
               size_t *len, size_t max_len);
int sv_get_uint(sv_req *q, json_t *obj, const char *name, uint64_t lo,
                uint64_t hi, uint64_t *out);
int sv_get_bool(sv_req *q, json_t *obj, const char *name, int *out);
int sv_check_keys(sv_req *q, json_t *obj, const char *where,
                  const char *const *allowed);
void sv_json_str(rk_buf *b, const char *s);
/* The value of query parameter name (borrowed from q->query, not
 * decoded, not NUL-terminated), 1 when present, 0 when absent. */
int sv_query_get(const sv_req *q, const char *name, const char **val,
                 size_t *len);
void sv_json_num(rk_buf *b, double v);

#endif
