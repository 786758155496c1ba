/*
 * server.c — the server's lifecycle: the `serve:` config section, creation
 * of the pieces (models, histories, experiments, caches), the worker
 * scratch pool, the background thread (model reload, trending/fresh
 * refresh, candidate precompute) and the libmicrohttpd front end, which
 * only collects a bounded body and hands the request to the router
 * (router.c). Invariant: a request runs on one MHD worker thread from
 * start to finish and holds one sv_worker for its whole duration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/serve_int.h"

void rk_serve_opts_default(rk_serve_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bind = "127.0.0.1";
    o->port = 8080;
    o->max_body_bytes = 1u << 20;
    o->max_json_depth = 32;
    o->max_array = 10000;
    o->max_connections = 1024;
    o->deadline_ms = 50;
    o->reload_ms = 1000;
    o->ranker = NULL;
    o->factors = "ials";
    o->covis = "covis";
    o->candidates = 500;
    o->quota[RK_SRC_ANN] = 300;
    o->quota[RK_SRC_COVIS] = 100;
    o->quota[RK_SRC_TRENDING] = 80;
    o->quota[RK_SRC_FRESH] = 20;
    o->max_n = 200;
    o->history = 100;
    o->history_users = 1000000;
    o->refresh_s = 60;
    o->category_attr = "category";
    o->cand_cache_users = 10000;
    o->cand_cache_ttl_s = 300;
    o->ab_requests = 1000000;
    o->item_ids = 1u << 22;
    o->monitor_window = 10000;
    o->log_features = 1;
}

static int is_loopback(const char *addr)
{
    struct in_addr a;
    if (inet_pton(AF_INET, addr, &a) != 1) return 0;
    return (ntohl(a.s_addr) >> 24) == 127;
}

static int conf_uint(const rk_conf_node *sec, const char *key, int64_t lo,
                     int64_t hi, uint64_t *val, rk_err *err)
{
    int64_t v;
    int rc = rk_conf_as_int_range(rk_conf_get(sec, key), (int64_t)*val, lo,
                                  hi, &v, err);
    if (!rc) *val = (uint64_t)v;
    return rc;
}

static int conf_keys(rk_serve_opts *o, const rk_conf_node *n, rk_err *err)
{
    if (!n) return 0;
    if (rk_conf_node_type(n) != RK_CONF_LIST)
        return rk_conf_error(err, n, "expected a list of {key, roles, name}");
    static const char *const allowed[] = {"key", "roles", "name", NULL};
    static const char *const roles[] = {"read", "write", "admin", NULL};
    for (size_t i = 0; i < rk_conf_len(n); i++) {
        const rk_conf_node *k = rk_conf_at(n, i, NULL);
        if (o->nkeys == RK_SERVE_MAX_KEYS)
            return rk_conf_error(err, k, "more than %d API keys",
                                 RK_SERVE_MAX_KEYS);
        if (rk_conf_node_type(k) != RK_CONF_MAP)
            return rk_conf_error(err, k, "expected {key, roles, name}");
        int rc = rk_conf_check_keys(k, allowed, err);
        rk_api_key *ak = &o->keys[o->nkeys];
        if (!rc) rc = rk_conf_as_str(rk_conf_get(k, "key"), NULL, &ak->key, err);
        if (!rc) rc = rk_conf_as_str(rk_conf_get(k, "name"), NULL, &ak->name, err);
        if (rc) return rc;
        if (!ak->key || strlen(ak->key) < 16)
            return rk_conf_error(err, k, "key: needs at least 16 characters");
        const rk_conf_node *r = rk_conf_get(k, "roles");
        if (!r || rk_conf_node_type(r) != RK_CONF_LIST || !rk_conf_len(r))
            return rk_conf_error(err, r ? r : k,
                                 "roles: expected a list of read, write, admin");
        ak->roles = 0;
        for (size_t j = 0; j < rk_conf_len(r); j++) {
            int idx;
            if ((rc = rk_conf_as_enum(rk_conf_at(r, j, NULL), 0, roles, &idx,
                                      err)))
                return rc;
            ak->roles |= 1u << idx;
        }
        if (ak->roles & RK_ROLE_ADMIN) ak->roles |= RK_ROLE_READ | RK_ROLE_WRITE;
        if (!ak->name) ak->name = "unnamed";
        o->nkeys++;
    }
    return 0;
}

int rk_serve_opts_from_conf(rk_serve_opts *o, const rk_conf_node *root,
                            rk_err *err)
{
    const rk_conf_node *sec = root ? rk_conf_get(root, "serve") : NULL;
    if (!sec) return 0;
    static const char *const allowed[] = {
        "bind", "port", "threads", "max_body_bytes", "max_json_depth",
        "max_array", "max_connections", "deadline_ms", "reload_ms", "ranker",
        "factors", "covis", "candidates", "sources", "ann_ef", "max_n",
        "history", "history_users", "refresh_s", "rules", "cache",
        "api_keys", "log_features", "clock", NULL};
    int rc = rk_conf_check_keys(sec, allowed, err);
    uint64_t v;
#define U(key, field, lo, hi)                                          \
    if (!rc) {                                                         \
        v = (uint64_t)o->field;                                        \
        if (!(rc = conf_uint(sec, key, lo, hi, &v, err)))              \
            o->field = (__typeof__(o->field))v;                        \
    }
    if (!rc) rc = rk_conf_as_str(rk_conf_get(sec, "bind"), o->bind, &o->bind, err);
    U("port", port, 0, 65535);
    U("threads", threads, 0, 256);
    U("max_body_bytes", max_body_bytes, 1024, 1ll << 30);
    U("max_json_depth", max_json_depth, 2, 1000);
    U("max_array", max_array, 1, 10000000);
    U("max_connections", max_connections, 1, 100000);
    U("reload_ms", reload_ms, 50, 3600000);
    U("candidates", candidates, 1, 100000);
    U("ann_ef", ann_ef, 0, 100000);
    U("max_n", max_n, 1, 100000);
    U("history", history, 1, 100000);
    U("history_users", history_users, 1, 1ll << 32);
    U("refresh_s", refresh_s, 1, 86400);
    if (!rc) rc = rk_conf_as_float(rk_conf_get(sec, "deadline_ms"),
                                   o->deadline_ms, &o->deadline_ms, err);
    if (!rc && !(o->deadline_ms > 0 && o->deadline_ms <= 60000))
        rc = rk_conf_error(err, rk_conf_get(sec, "deadline_ms"),
                           "expected a number in (0, 60000]");
    if (!rc) rc = rk_conf_as_str(rk_conf_get(sec, "ranker"), o->ranker, &o->ranker, err);
    if (!rc) rc = rk_conf_as_str(rk_conf_get(sec, "factors"), o->factors, &o->factors, err);
    if (!rc) rc = rk_conf_as_str(rk_conf_get(sec, "covis"), o->covis, &o->covis, err);
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(sec, "log_features"),
                                  o->log_features, &o->log_features, err);
    const rk_conf_node *clk = rk_conf_get(sec, "clock");
    const char *cv = NULL;
    if (!rc && clk && !(rc = rk_conf_as_str(clk, NULL, &cv, err))) {
        if (cv && strcmp(cv, "wall") == 0) o->clock_event = 0;
        else if (cv && strcmp(cv, "event") == 0) o->clock_event = 1;
        else rc = rk_conf_error(err, clk, "expected wall or event");
    }
    const rk_conf_node *src = rk_conf_get(sec, "sources");
    if (!rc && src) {
        if (rk_conf_node_type(src) != RK_CONF_MAP)
            return rk_conf_error(err, src, "expected a map of source: quota");
        memset(o->quota, 0, sizeof o->quota);
        for (size_t i = 0; !rc && i < rk_conf_len(src); i++) {
            const char *key;
            const rk_conf_node *q = rk_conf_at(src, i, &key);
            rk_source s;
            if (rk_source_parse(key, strlen(key), &s) || s == RK_SRC_EXTERNAL ||
                s == RK_SRC_EASE || s == RK_SRC_CONTENT)
                return rk_conf_error(err, q, "unknown source '%s' (the server "
                                     "retrieves from ann, covis, trending, "
                                     "popular and fresh)", key);
            int64_t qv;
            if (!(rc = rk_conf_as_int_range(q, 0, 0, 100000, &qv, err)))
                o->quota[s] = (uint32_t)qv;
        }
    }
    const rk_conf_node *rules = rk_conf_get(sec, "rules");
    if (!rc && rules) {
        static const char *const rk[] = {"max_per_category", "category",
                                         "explore_slots", NULL};
        rc = rk_conf_check_keys(rules, rk, err);
        if (!rc) {
            v = o->max_per_category;
            if (!(rc = conf_uint(rules, "max_per_category", 0, 100000, &v, err)))
                o->max_per_category = (uint32_t)v;
        }
        if (!rc) {
            v = o->explore_slots;
            if (!(rc = conf_uint(rules, "explore_slots", 0, 1000, &v, err)))
                o->explore_slots = (uint32_t)v;
        }
        if (!rc) rc = rk_conf_as_str(rk_conf_get(rules, "category"),
                                     o->category_attr, &o->category_attr, err);
    }
    const rk_conf_node *cache = rk_conf_get(sec, "cache");
    if (!rc && cache) {
        static const char *const ck[] = {"candidate_users", "candidate_ttl_s",
                                         "ab_requests", "item_ids", NULL};
        rc = rk_conf_check_keys(cache, ck, err);
        if (!rc) {
            v = o->cand_cache_users;
            if (!(rc = conf_uint(cache, "candidate_users", 0, 1ll << 30, &v, err)))
                o->cand_cache_users = v;
        }
        if (!rc) {
            v = o->cand_cache_ttl_s;
            if (!(rc = conf_uint(cache, "candidate_ttl_s", 1, 86400 * 7, &v, err)))
                o->cand_cache_ttl_s = (uint32_t)v;
        }
        if (!rc) {
            v = o->item_ids;
            if (!(rc = conf_uint(cache, "item_ids", 0, 1ll << 31, &v, err)))
                o->item_ids = (uint32_t)v;
        }
        if (!rc) {
            v = o->ab_requests;
            if (!(rc = conf_uint(cache, "ab_requests", 1000, 1ll << 30, &v, err)))
                o->ab_requests = v;
        }
    }
#undef U
    if (!rc) rc = conf_keys(o, rk_conf_get(sec, "api_keys"), err);
    if (!rc && !o->nkeys && !is_loopback(o->bind))
        rc = rk_conf_error(err, rk_conf_get(sec, "bind"),
                           "binding %s (not loopback) needs api_keys", o->bind);
    return rc;
}

/* ---- worker scratch ----------------------------------------------------- */

static void worker_free(sv_worker *w)
{
    if (!w) return;
    rk_arena_free(&w->arena);
    rk_io_parser_destroy(w->p_events);
    rk_io_parser_destroy(w->p_users);
    rk_io_parser_destroy(w->p_items);
    rk_batch_destroy(w->batch);
    rk_feat_source_destroy(w->src);
    for (size_t i = 0; i < w->nfv; i++) rk_fvec_free(&w->fv[i]);
    rk_free(w->fv);
    rk_free(w->scores);
    rk_free(w);
}

static sv_worker *worker_new(rk_server *s)
{
    sv_worker *w = rk_calloc(1, sizeof *w);
    if (!w) return NULL;
    rk_err err = {0};
    const rk_schema *sc = s->schema;
    rk_arena_init(&w->arena, 64 << 10, 256u << 20);
    if (rk_io_parser_create(&w->p_events, RK_FMT_JSONL, RK_KIND_EVENTS, sc, &err) ||
        rk_io_parser_create(&w->p_users, RK_FMT_JSONL, RK_KIND_USERS, sc, &err) ||
        rk_io_parser_create(&w->p_items, RK_FMT_JSONL, RK_KIND_ITEMS, sc, &err) ||
        rk_batch_create(&w->batch, s->store, 0)) {
        worker_free(w);
        return NULL;
    }
    return w;
}

sv_worker *sv_worker_get(rk_server *s)
{
    pthread_mutex_lock(&s->wk_mu);
    for (;;) {
        sv_worker *w = s->wk_free;
        if (w) {
            s->wk_free = w->next;
            pthread_mutex_unlock(&s->wk_mu);
            return w;
        }
        if (s->wk_count < s->wk_max) {
            s->wk_count++;
            pthread_mutex_unlock(&s->wk_mu);
            w = worker_new(s);
            if (!w) {
                pthread_mutex_lock(&s->wk_mu);
                s->wk_count--;
                pthread_cond_signal(&s->wk_cv);
                pthread_mutex_unlock(&s->wk_mu);
            }
            return w;
        }
        pthread_cond_wait(&s->wk_cv, &s->wk_mu);
    }
}

void sv_worker_put(rk_server *s, sv_worker *w)
{
    if (!w) return;
    rk_arena_reset(&w->arena);
    rk_batch_clear(w->batch);
    pthread_mutex_lock(&s->wk_mu);
    w->next = s->wk_free;
    s->wk_free = w;
    pthread_cond_signal(&s->wk_cv);
    pthread_mutex_unlock(&s->wk_mu);
}

rk_feat_source *sv_worker_source(sv_worker *w, const rk_feat_spec *spec)
{
    if (w->src && w->src_spec == spec) return w->src;
    rk_feat_source_destroy(w->src);
    w->src = NULL;
    w->src_spec = NULL;
    if (rk_feat_source_create(&w->src, spec)) return NULL;
    w->src_spec = spec;
    return w->src;
}

int sv_worker_fvecs(sv_worker *w, size_t n)
{
    if (n <= w->nfv) return 0;
    rk_fvec *fv = rk_realloc(w->fv, n * sizeof *fv);
    if (!fv) return RK_ENOMEM;
    memset(fv + w->nfv, 0, (n - w->nfv) * sizeof *fv);
    w->fv = fv;
    w->nfv = n;
    return 0;
}

/* ---- background work ---------------------------------------------------- */

static void *bg_main(void *arg)
{
    rk_server *s = arg;
    uint64_t last_reload = 0, last_refresh = rk_clock_mono_ns();
    int64_t last_refresh_ms = sv_now_ms(s);
    pthread_mutex_lock(&s->bg_mu);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->bg_mu);
        uint64_t now = rk_clock_mono_ns();
        if (now - last_reload >= (uint64_t)s->o.reload_ms * 1000000u) {
            sv_models_reload(s);
            last_reload = rk_clock_mono_ns();
        }
        /* refresh_s is on the server's clock (trending follows the data's
         * time), but never more often than once a real second: under
         * clock: event a simulation may run it thousands of times faster. */
        if (sv_now_ms(s) - last_refresh_ms >= (int64_t)s->o.refresh_s * 1000 &&
            now - last_refresh >= 1000000000u) {
            rk_err err = {0};
            if (sv_refresh_generators(s, &err))
                rk_log(s->log, RK_LOG_WARN, "serve", "refresh: %s", err.msg);
            last_refresh = rk_clock_mono_ns();
            last_refresh_ms = sv_now_ms(s);
        }
        sv_precompute(s);
        sv_online_tick(s, sv_now_ms(s));
        sv_models_bury(s);
        pthread_mutex_lock(&s->bg_mu);
        if (s->stopping) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait_ms = s->o.reload_ms < 200 ? s->o.reload_ms : 200;
        ts.tv_nsec += (long)(wait_ms * 1000000u);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->bg_cv, &s->bg_mu, &ts);
    }
    pthread_mutex_unlock(&s->bg_mu);
    return NULL;
}

/* The feature-log writer: requests append their entries to flog_batch
 * under flog_mu (cheap, no I/O on the request path); every 50 ms this
 * thread swaps in an empty batch and writes the full one durably in one
 * group commit. The batch's byte limit bounds the memory: when it is full,
 * entries are dropped and counted (rankd_feature_log_total{failed}). */
static void *flog_main(void *arg)
{
    rk_server *s = arg;
    rk_batch *spare = NULL;
    if (rk_batch_create(&spare, s->store, 64u << 20)) return NULL;
    for (;;) {
        pthread_mutex_lock(&s->bg_mu);
        int stop = s->stopping;
        pthread_mutex_unlock(&s->bg_mu);
        pthread_mutex_lock(&s->flog_mu);
        rk_batch *full = s->flog_batch;
        size_t n = rk_batch_count(full);
        if (n) s->flog_batch = spare;
        pthread_mutex_unlock(&s->flog_mu);
        if (n) {
            /* rk_flog_record adds two ops per entry: it and its time key. */
            rk_err err = {0};
            rk_write_result res;
            if (rk_store_write(s->store, full, &res, &err)) {
                atomic_fetch_add(&s->m.flog_failed, n / 2);
                rk_log(s->log, RK_LOG_ERROR, "serve", "feature log write: %s",
                       err.msg);
            } else {
                atomic_fetch_add(&s->m.flog_written, n / 2);
            }
            rk_batch_clear(full);
            spare = full;
        }
        if (stop) break;
        rk_sleep_ms(50);
    }
    rk_batch_destroy(spare);
    return NULL;
}

int64_t sv_now_ms(rk_server *s)
{
    return rk_clock_wall_ms() + atomic_load_explicit(&s->clock_off, memory_order_relaxed);
}

void sv_clock_seen(rk_server *s, int64_t ts_ms)
{
    if (!s->o.clock_event) return;
    int64_t want = ts_ms - rk_clock_wall_ms();
    int_fast64_t cur = atomic_load(&s->clock_off);
    while (want > cur && !atomic_compare_exchange_weak(&s->clock_off, &cur, want)) {
    }
}

/* Scans the event log once: each user's recent events into the history
 * (the log is in time order of arrival, so the tail wins). */
typedef struct hist_scan {
    rk_server *s;
    uint64_t n;
    int64_t newest;
} hist_scan;

static int hist_event(void *arg, const rk_event *ev)
{
    hist_scan *h = arg;
    if (ev->ts_ms > h->newest) h->newest = ev->ts_ms;
    const rk_event_type_def *t = rk_schema_event_type(h->s->schema, ev->type);
    if (!t) return 0;
    int seen = t->role != RK_ROLE_EXPOSURE;
    float w = t->role == RK_ROLE_NEGATIVE ? 0.0f : (float)t->weight;
    sv_history_add(h->s->hist, ev->user, ev->item, ev->ts_ms,
                   w > 0 ? w : 1.0f, seen && t->role != RK_ROLE_NEGATIVE);
    h->n++;
    return 0;
}

static int load_state(rk_server *s, rk_err *err)
{
    rk_reader *r;
    int rc = rk_store_reader(s->store, &r, err);
    if (rc) return rc;
    hist_scan h = {s, 0, INT64_MIN};
    rc = rk_reader_scan_events(r, 0, hist_event, &h);
    /* Under clock: event a restarted server resumes from the newest event. */
    if (!rc && h.n) sv_clock_seen(s, h.newest);
    if (rc) rk_err_set(err, rc, "scan events: %s", rk_reader_errmsg(r));
    if (!rc) rc = rk_merge_blocked_from_reader(r, &s->blocked, &s->nblocked, err);
    rk_reader_close(r);
    if (!rc)
        rk_log(s->log, RK_LOG_INFO, "serve", "histories from %llu events, "
               "%zu users", (unsigned long long)h.n,
               sv_history_users(s->hist));
    return rc;
}

int rk_server_create(rk_server **out, rk_store *store, const rk_conf_node *root,
                     const rk_serve_opts *o, rk_logger *log, rk_err *err)
{
    *out = NULL;
    rk_server *s = rk_calloc(1, sizeof *s);
    if (!s) return rk_err_set(err, RK_ENOMEM, "serve: out of memory");
    s->o = *o;
    s->store = store;
    s->root = root;
    s->log = log;
    s->schema = rk_store_schema(store);
    s->started_ms = rk_clock_wall_ms();
    s->id_seed = rk_hash64(&s, sizeof s, (uint64_t)s->started_ms) ^
                 (uint64_t)getpid();
    pthread_mutex_init(&s->wk_mu, NULL);
    pthread_cond_init(&s->wk_cv, NULL);
    pthread_mutex_init(&s->bg_mu, NULL);
    pthread_cond_init(&s->bg_cv, NULL);
    pthread_mutex_init(&s->gen_mu, NULL);
    pthread_mutex_init(&s->ab_mu, NULL);
    pthread_mutex_init(&s->reg_mu, NULL);
    pthread_mutex_init(&s->dead_mu, NULL);
    pthread_rwlock_init(&s->blocked_mu, NULL);
    unsigned nthreads = o->threads;
    if (!nthreads) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = c > 0 ? (unsigned)c : 2;
    }
    s->o.threads = nthreads;
    /* Pipelines running at once: one per worker thread plus one for the
     * background precompute. More would only time-slice the cores and
     * stretch every request's latency; extra requests wait for a worker
     * (their deadline clock is already running, so overload degrades). */
    s->wk_max = nthreads + 1;
    const char *dir = rk_store_path(store);
    snprintf(s->models_dir, sizeof s->models_dir, "%s/models", dir);
    s->cat_attr = UINT32_MAX;
    if (o->category_attr &&
        !rk_schema_find_attr(s->schema, RK_ENTITY_ITEM, o->category_attr,
                             strlen(o->category_attr), &s->cat_attr))
        s->cat_ok = 1;

    int rc = 0;
    const rk_conf_node *fnode = root ? rk_conf_get(root, "features") : NULL;
    if (fnode) {
        rc = rk_feat_spec_from_conf(&s->online, root, s->schema, err);
        if (!rc) rc = rk_feat_attach(s->online, store, err);
        uint64_t nev = 0;
        uint32_t ng = 0;
        if (!rc) rc = rk_feat_backfill(s->online, store, &nev, &ng, err);
        if (!rc && ng)
            rk_log(log, RK_LOG_INFO, "serve", "features: built %u aggregate "
                   "groups from %llu events", ng, (unsigned long long)nev);
        if (rc) {
            rk_feat_spec_destroy(s->online);
            s->online = NULL;
        }
    }
    if (!rc) {
        rk_label_conf_default(&s->labels, s->schema);
        rc = rk_label_conf_from_conf(&s->labels, root, s->schema, err);
        s->labels_ok = !rc;
    }
    if (!rc && sv_history_create(&s->hist, o->history_users, o->history))
        rc = rk_err_set(err, RK_ENOMEM, "serve: histories");
    if (!rc && sv_ccache_create(&s->ccache, o->cand_cache_users,
                                o->cand_cache_ttl_s))
        rc = rk_err_set(err, RK_ENOMEM, "serve: candidate cache");
    rk_drift_opts_default(&s->drift_opts);
    pthread_mutex_init(&s->mon_mu, NULL);
    s->label_requests = 20000;
    s->label_bytes = 64u << 20;
    const rk_conf_node *mon = root ? rk_conf_get(root, "monitor") : NULL;
    if (!rc && mon) {
        static const char *const mk[] = {"window", "small_reference", "ks_alpha",
                                         "chi2_alpha", "wasserstein", "js", "psi",
                                         "dataset_share", "exclude",
                                         "label_requests", "label_bytes",
                                         "reference", "span", "noise_alpha", NULL};
        static const char *const refs[] = {"training", "served", NULL};
        int64_t wv, lr = (int64_t)s->label_requests, lb = (int64_t)s->label_bytes;
        if (!(rc = rk_conf_check_keys(mon, mk, err)) &&
            !(rc = rk_conf_as_int_range(rk_conf_get(mon, "window"), s->o.monitor_window,
                                        0, RK_DRIFT_WINDOW_MAX_CAPACITY, &wv, err)) &&
            !(rc = rk_drift_opts_from_conf(&s->drift_opts, mon, s->mon_exclude,
                                           RK_DRIFT_EXCLUDE_MAX, err)) &&
            !(rc = rk_conf_as_int_range(rk_conf_get(mon, "label_requests"), lr, 1,
                                        100000000, &lr, err)) &&
            !(rc = rk_conf_as_int_range(rk_conf_get(mon, "label_bytes"), lb, 1 << 16,
                                        INT64_MAX, &lb, err)) &&
            !(rc = rk_conf_as_enum(rk_conf_get(mon, "reference"), 0, refs,
                                   &s->mon_ref_served, err)) &&
            !(rc = rk_conf_as_duration_ms(rk_conf_get(mon, "span"), 0,
                                          &s->mon_span_ms, err))) {
            s->label_requests = (size_t)lr;
            s->label_bytes = (size_t)lb;
            s->o.monitor_window = (uint32_t)wv;
        }
    }
    if (!rc && sv_idcache_create(&s->ids, o->item_ids))
        rc = rk_err_set(err, RK_ENOMEM, "serve: item id cache");
    if (!rc && rk_map_create(&s->ab_map, o->ab_requests))
        rc = rk_err_set(err, RK_ENOMEM, "serve: A/B map");
    if (!rc) rc = rk_registry_open(&s->reg, s->models_dir, NULL, err);
    if (!rc) rc = sv_models_init(s, err);
    if (!rc) rc = sv_ab_init(s, err);
    if (!rc) rc = load_state(s, err);
    if (!rc) rc = sv_refresh_generators(s, err);
    if (!rc) rc = sv_learn_start(s, err);
    if (!rc) {
        pthread_mutex_init(&s->flog_mu, NULL);
        if (rk_batch_create(&s->flog_batch, store, 64u << 20) ||
            pthread_create(&s->flog_thread, NULL, flog_main, s))
            rc = rk_err_set(err, RK_ENOMEM, "serve: feature log writer");
        else
            s->flog_started = 1;
    }
    if (!rc) {
        sv_models_reload(s);
        if (pthread_create(&s->bg, NULL, bg_main, s))
            rc = rk_err_set(err, RK_ENOMEM, "serve: cannot start a thread");
        else
            s->bg_started = 1;
    }
    if (rc) {
        rk_server_destroy(s);
        return rc;
    }
    s->ready = 1;
    *out = s;
    return 0;
}

/* ---- libmicrohttpd front end --------------------------------------------- */

typedef struct conn_state {
    rk_buf body;
    int too_big;
} conn_state;

typedef struct arg_ctx {
    rk_buf *q;
} arg_ctx;

static void put_escaped(rk_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '&' || c == '=' || c == '%' || c == '+' || c == '#' || c < 0x21)
            (void)rk_buf_printf(b, "%%%02X", c);
        else
            (void)rk_buf_putc(b, (char)c);
    }
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
    (void)kind;
    arg_ctx *a = cls;
    if (a->q->len) (void)rk_buf_putc(a->q, '&');
    put_escaped(a->q, key);
    if (value) {
        (void)rk_buf_putc(a->q, '=');
        put_escaped(a->q, value);
    }
    return MHD_YES;
}

static enum MHD_Result queue(struct MHD_Connection *c, int status,
                             const char *ctype, const void *body, size_t len,
                             const char *rid)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (rid && *rid) MHD_add_response_header(r, "X-Request-Id", rid);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The router's entry with pre-decoded path (router.c). */
int rk__serve_dispatch(rk_server *s, const char *method, const char *path,
                       const char *query, int path_decoded, const char *api_key,
                       const void *body, size_t len, int too_big, int *status,
                       rk_buf *out, const char **ctype, char *rid);

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    rk_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = rk_calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        rk_buf_init(&cs->body, s->o.max_body_bytes);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     "Content-Length");
        uint64_t clen;
        if (cl && !rk_parse_u64(cl, strlen(cl), &clen) &&
            clen > s->o.max_body_bytes)
            cs->too_big = 1;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_big && rk_buf_append(&cs->body, upload, *upload_size))
            cs->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    if (!key) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                       "Authorization");
        if (auth && strncmp(auth, "Bearer ", 7) == 0) key = auth + 7;
    }
    rk_buf q, out;
    rk_buf_init(&q, 1 << 16);
    rk_buf_init(&out, 0);
    arg_ctx a = {&q};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &a);
    (void)rk_buf_putc(&q, '\0');
    int status = 500;
    const char *ctype = "application/json";
    char rid[40] = "";
    rk__serve_dispatch(s, method, url, q.data ? q.data : "", 1, key,
                       cs->body.data, cs->body.len, cs->too_big, &status, &out,
                       &ctype, rid);
    enum MHD_Result ret = queue(c, status, ctype, out.data ? out.data : "",
                                out.len, rid);
    rk_buf_free(&q);
    rk_buf_free(&out);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    rk_buf_free(&cs->body);
    rk_free(cs);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fm, va_list ap)
{
    rk_server *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fm, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    rk_log(s->log, RK_LOG_WARN, "http", "%s", msg);
}

int rk_server_listen(rk_server *s, rk_err *err)
{
    if (s->mhd) return rk_err_set(err, RK_ESTATE, "serve: already listening");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(s->o.port);
    if (inet_pton(AF_INET, s->o.bind, &sa.sin_addr) != 1)
        return rk_err_set(err, RK_EINVAL, "serve: bind: '%s' is not an IPv4 "
                          "address", s->o.bind);
    if (!s->o.nkeys && !is_loopback(s->o.bind))
        return rk_err_set(err, RK_ECONFIG, "serve: binding %s (not loopback) "
                          "needs serve.api_keys", s->o.bind);
    /* A thread per connection, so the kernel spreads busy connections over
     * the cores (a pool's threads keep the connections they accepted, and
     * a client opening its pool at once often lands on one thread). How
     * many pipelines run at once is bounded by the worker scratch pool
     * (serve.threads), not by the connection count. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, s->o.port, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 << 10),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10),
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_END);
    if (!d)
        return rk_err_set(err, RK_EIO, "serve: cannot listen on %s:%u (%s)",
                          s->o.bind, (unsigned)s->o.port,
                          errno ? strerror(errno) : "libmicrohttpd refused");
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->o.port;
    s->mhd = d;
    rk_log(s->log, RK_LOG_INFO, "serve", "listening on http://%s:%u/ with %u "
           "threads", s->o.bind, (unsigned)s->port, s->o.threads);
    return 0;
}

uint16_t rk_server_port(const rk_server *s) { return s ? s->port : 0; }

void rk_server_stop(rk_server *s)
{
    if (!s) return;
    if (s->mhd) {
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
    }
    sv_learn_stop(s);
    pthread_mutex_lock(&s->bg_mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->bg_cv);
    pthread_mutex_unlock(&s->bg_mu);
    if (s->bg_started) {
        pthread_join(s->bg, NULL);
        s->bg_started = 0;
    }
    if (s->flog_started) {
        pthread_join(s->flog_thread, NULL);
        s->flog_started = 0;
        pthread_mutex_destroy(&s->flog_mu);
    }
}

void rk_server_destroy(rk_server *s)
{
    if (!s) return;
    rk_server_stop(s);
    sv_models_free(s);
    sv_ab_free(s);
    while (s->wk_free) {
        sv_worker *w = s->wk_free;
        s->wk_free = w->next;
        worker_free(w);
    }
    if (s->online) {
        rk_feat_detach(s->online, s->store);
        rk_feat_spec_destroy(s->online);
    }
    rk_registry_close(s->reg);
    sv_online_destroy(s);
    pthread_mutex_destroy(&s->mon_mu);
    sv_history_destroy(s->hist);
    sv_ccache_destroy(s->ccache);
    sv_idcache_destroy(s->ids);
    rk_map_destroy(s->ab_map);
    rk_popular_destroy(s->trending);
    rk_fresh_destroy(s->fresh);
    rk_free(s->blocked);
    rk_batch_destroy(s->flog_batch);
    rk_audit_close(s->audit);
    pthread_mutex_destroy(&s->wk_mu);
    pthread_cond_destroy(&s->wk_cv);
    pthread_mutex_destroy(&s->bg_mu);
    pthread_cond_destroy(&s->bg_cv);
    pthread_mutex_destroy(&s->gen_mu);
    pthread_mutex_destroy(&s->ab_mu);
    pthread_mutex_destroy(&s->reg_mu);
    pthread_mutex_destroy(&s->dead_mu);
    pthread_rwlock_destroy(&s->blocked_mu);
    rk_free(s);
}

int rk_server_handle(rk_server *s, const char *method, const char *url,
                     const char *api_key, const void *body, size_t len,
                     int *status, rk_buf *out)
{
    const char *qm = strchr(url, '?');
    char path[2048];
    size_t pl = qm ? (size_t)(qm - url) : strlen(url);
    if (pl >= sizeof path) pl = sizeof path - 1;
    memcpy(path, url, pl);
    path[pl] = '\0';
    const char *ctype;
    char rid[40];
    return rk__serve_dispatch(s, method, path, qm ? qm + 1 : "", 0, api_key,
                              body, len, len > s->o.max_body_bytes, status,
                              out, &ctype, rid);
}
