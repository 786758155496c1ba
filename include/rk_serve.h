/*
 * rk_serve.h — the online serving loop: rankd's HTTP/JSON API (/v1, see
 * docs/serving.md and docs/openapi.json) over an open store and the model
 * registry of its data directory.
 *
 * A server owns: the request router with API-key roles and input limits,
 * the two-stage /v1/recommend pipeline (retrieval -> features -> rank ->
 * rules) under a per-request deadline, immutable model snapshots that are
 * swapped atomically when the registry's current version changes, A/B
 * experiments, bounded caches, feature logging of every served ranking,
 * and Prometheus metrics. HTTP is libmicrohttpd's; rankd parses no HTTP
 * itself. rk_server_handle runs one request in process without sockets
 * (tests and the fuzz target use it); it shares every code path with the
 * HTTP front end except the socket layer.
 *
 * Threading: every function here is thread-safe except create/destroy,
 * which must not race with anything else on the same server.
 */
#ifndef RK_SERVE_H
#define RK_SERVE_H

#include "rk_core.h"
#include "rk_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Roles of an API key (a bit set). admin implies read and write. */
enum {
    RK_ROLE_READ = 1,   /* recommend, rank, score, similar, experiments */
    RK_ROLE_WRITE = 2,  /* events, items, users */
    RK_ROLE_ADMIN = 4   /* models, promote, rollback, monitor */
};

#define RK_SERVE_MAX_KEYS 64

typedef struct rk_api_key {
    const char *key;        /* borrowed from the config for its lifetime */
    unsigned roles;
    const char *name;       /* shown in logs instead of the key */
} rk_api_key;

/* The `serve:` section of the config (docs/serving.md lists every key and
 * its default). Strings are borrowed from the config tree. */
typedef struct rk_serve_opts {
    const char *bind;            /* "127.0.0.1" */
    uint16_t port;               /* 8080; 0 = any free port */
    unsigned threads;            /* HTTP worker threads, 0 = online CPUs */
    size_t max_body_bytes;       /* 1 MiB: larger bodies get 413 */
    unsigned max_json_depth;     /* 32 */
    size_t max_array;            /* 10,000 elements per JSON array */
    size_t max_connections;      /* 1024 */
    double deadline_ms;          /* 50: per-request budget of /v1/recommend */
    uint32_t reload_ms;          /* 1000: registry poll period */
    const char *ranker;          /* registry name of the ranking model,
                                    NULL = none (retrieval order) */
    const char *factors;         /* registry name of the iALS model ("ials") */
    const char *covis;           /* registry name of co-visitation ("covis") */
    uint32_t candidates;         /* 500: retrieved and ranked per request */
    uint32_t quota[16];          /* per rk_source quota (0 = source off) */
    uint32_t ann_ef;             /* 0 = 2 x the ANN quota */
    uint32_t max_n;              /* 200: largest n a request may ask for */
    uint32_t history;            /* 100: recent events kept per user */
    size_t history_users;        /* 1,000,000 users with a history in memory */
    uint32_t refresh_s;          /* 60: trending/fresh rebuild period */
    uint32_t max_per_category;   /* 0 = off */
    const char *category_attr;   /* "category" */
    uint32_t explore_slots;      /* 0: slots for fresh items in each answer */
    size_t cand_cache_users;     /* 10,000 users' precomputed candidates */
    uint32_t cand_cache_ttl_s;   /* 300 */
    size_t ab_requests;          /* 1,000,000 request ids remembered for A/B */
    uint32_t item_ids;           /* 4,194,304 item external ids cached */
    uint32_t monitor_window;     /* 10,000 served items per ranker, 0 = off */
    const char *config_path;     /* the config file (the learning loop's
                                    `rankd train` reads it), NULL = none */
    const char *exe;             /* the rankd binary for the loop's training
                                    runs, NULL = no loop */
    int log_features;            /* 1: feature-log every served ranking */
    int clock_event;             /* 0 = `clock: wall` (the default): now is the
                                    wall clock; 1 = `clock: event`: now also
                                    follows the newest time a request or an
                                    event carried (simulation, replay) */
    rk_api_key keys[RK_SERVE_MAX_KEYS];
    size_t nkeys;                /* 0 = no authentication (loopback only) */
} rk_serve_opts;

void rk_serve_opts_default(rk_serve_opts *o);
/* Reads `serve:` of the config root over o (root may be NULL). Errors are
 * RK_ECONFIG with file:line. Refuses a non-loopback bind without API keys. */
int rk_serve_opts_from_conf(rk_serve_opts *o, const rk_conf_node *root,
                            rk_err *err);

typedef struct rk_server rk_server;

/* Creates a server over an open read-write store whose data directory holds
 * models/ (the registry). root is the whole config (features:, labels:,
 * experiments:, serve:); it and the store must outlive the server. Loads
 * every configured model that exists (a missing model is not an error:
 * the pipeline works without it and /readyz says what is loaded), scans the
 * event log's tail into the users' histories and starts the background
 * threads (model reload, trending refresh, candidate precompute). Does not
 * listen yet. Errors: RK_ECONFIG, RK_ENOMEM, store errors, with err. */
int rk_server_create(rk_server **out, rk_store *store, const rk_conf_node *root,
                     const rk_serve_opts *o, rk_logger *log, rk_err *err);
/* Starts listening on o->bind:o->port. RK_EIO naming the address. */
int rk_server_listen(rk_server *s, rk_err *err);
/* The bound port (useful with port 0), 0 before listen. */
uint16_t rk_server_port(const rk_server *s);
/* Stops accepting, lets requests in flight finish, stops background
 * threads. Idempotent. */
void rk_server_stop(rk_server *s);
void rk_server_destroy(rk_server *s);

/* Runs one request in process: method ("GET", "POST", ...), url (path and
 * optional query string), api_key (NULL = none), body[0..len). The
 * response status and body (JSON, or Prometheus text for /metrics) go to
 * *status and out (appended). Returns 0, or RK_ENOMEM when even the error
 * response could not be built. */
int rk_server_handle(rk_server *s, const char *method, const char *url,
                     const char *api_key, const void *body, size_t len,
                     int *status, rk_buf *out);

/* Checks a JSON text's nesting depth and array lengths before parsing, so
 * no parser ever sees a body over the limits: RK_ELIMIT with the byte
 * offset ("nesting deeper than 32 at byte 117"). Strings are skipped with
 * their escapes; malformed JSON is left for the parser. Pure. */
int rk_serve_json_limits(const char *s, size_t n, unsigned max_depth,
                         size_t max_array, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_SERVE_H */
