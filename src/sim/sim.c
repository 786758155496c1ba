/*
 * sim.c — the simulator handle: writing the world to a server (setup),
 * simulating hours of sessions over HTTP with worker threads, and the
 * per-hour report.
 *
 * Determinism: the session k of hour h draws from a generator seeded by
 * (seed, h, k) alone, so which user comes, what device and bandwidth they
 * have and which of the shown items they click is the same for any number
 * of threads, given the same answers from the server.
 * Memory: the world, one request/events buffer per worker (bounded by
 * SIM_MAX_BODY) and a latency reservoir of SIM_LAT_SAMPLES per worker.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_int.h"

#define SIM_LAT_SAMPLES 4096
#define SIM_MODELS 8
#define SIM_EVENT_BATCH 1000
#define SIM_EXCLUDE_MAX 1000
/* Item scores per simulated hour spent on best_ctr: beyond it the best
 * session is computed for every k-th session only (a regular sample, the
 * same for any number of threads). */
#define SIM_BEST_BUDGET 20000000.0

typedef struct worker {
    struct rk_sim *s;
    uint32_t id;
    sim_http http;
    rk_buf req, ev;
    rk_err err;               /* last failure of this worker */
    /* per hour */
    uint32_t hour, nsess;
    rk_sim_hour_stats st;
    float lat[SIM_LAT_SAMPLES];
    uint64_t nlat;
    sim_rng lat_rng;
    char models[SIM_MODELS][40];
    int nmodels;
    uint32_t *shown;          /* items shown in the current session */
    uint32_t nshown;
    double *top;              /* scratch of the best session (shown_max) */
    /* setup */
    int task;                 /* 0 items, 1 users */
} worker;

struct rk_sim {
    sim_world w;
    worker *wk;
    uint32_t nwk;
    rk_err err;
    _Atomic uint64_t errors;  /* failed requests since create */
    _Atomic int stop;
    int paced;                /* the pacing clock started */
    uint64_t real0_ns;
    uint32_t hour0;
    int wave_done;            /* the new-item wave was written */
    int event_clock;          /* the server runs serve.clock: event */
    /* Each user's favourite category as the setup history shows it (the
     * category of most clicks; UINT8_MAX without any): the profile a
     * batch job would compute, written with the users after the history. */
    uint8_t *fav;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* ---- create / destroy ------------------------------------------------------ */

int rk_sim_create(rk_sim **out, const rk_sim_opts *o, rk_err *err)
{
    *out = NULL;
    rk_sim *s = rk_calloc(1, sizeof *s);
    if (!s) return rk_err_set(err, RK_ENOMEM, "simulator: out of memory");
    int rc = rk__sim_world_build(&s->w, o, err);
    if (rc) {
        rk_free(s);
        return rc;
    }
    s->nwk = o->threads;
    s->wk = rk_calloc(s->nwk, sizeof *s->wk);
    if (!s->wk) {
        rk_sim_destroy(s);
        return rk_err_set(err, RK_ENOMEM, "simulator: out of memory");
    }
    uint32_t shown_max = o->requests_per_session * o->n;
    for (uint32_t t = 0; t < s->nwk; t++) {
        worker *w = &s->wk[t];
        w->s = s;
        w->id = t;
        rk_buf_init(&w->req, SIM_MAX_BODY);
        rk_buf_init(&w->ev, SIM_MAX_BODY);
        rk__sim_rng_seed(&w->lat_rng, o->seed, 77, t);
        w->shown = rk_malloc(sizeof(uint32_t) * shown_max);
        w->top = rk_malloc(sizeof(double) * shown_max);
        if (!w->shown || !w->top) {
            rk_sim_destroy(s);
            return rk_err_set(err, RK_ENOMEM, "simulator: out of memory");
        }
        if ((rc = rk__sim_http_init(&w->http, o->api_key, o->timeout_ms, err))) {
            rk_sim_destroy(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

void rk_sim_destroy(rk_sim *s)
{
    if (!s) return;
    for (uint32_t t = 0; s->wk && t < s->nwk; t++) {
        rk__sim_http_free(&s->wk[t].http);
        rk_buf_free(&s->wk[t].req);
        rk_buf_free(&s->wk[t].ev);
        rk_free(s->wk[t].shown);
        rk_free(s->wk[t].top);
    }
    rk_free(s->wk);
    rk_free(s->fav);
    rk__sim_world_free(&s->w);
    rk_free(s);
}

const char *rk_sim_errmsg(const rk_sim *s) { return rk_err_msg(&s->err); }

/* ---- worker plumbing --------------------------------------------------------- */

static void url_of(const rk_sim *s, char *out, size_t cap, const char *path)
{
    size_t n = strlen(s->w.o.url);
    while (n > 0 && s->w.o.url[n - 1] == '/') n--;
    snprintf(out, cap, "%.*s%s", (int)n, s->w.o.url, path);
}

/* Counts a failed request; past max_errors everybody stops. */
static void count_error(worker *w)
{
    w->st.errors++;
    uint64_t e = atomic_fetch_add(&w->s->errors, 1) + 1;
    if (e > w->s->w.o.max_errors) atomic_store(&w->s->stop, 1);
}

typedef void *(*worker_fn)(void *);

/* Runs fn on every worker (threads beyond the first get their own thread)
 * and keeps the first worker error in s->err. */
static int run_workers(rk_sim *s, worker_fn fn)
{
    pthread_t th[64];
    uint32_t started = 1;
    for (uint32_t t = 1; t < s->nwk; t++, started++)
        if (pthread_create(&th[t], NULL, fn, &s->wk[t]) != 0) break;
    fn(&s->wk[0]);
    for (uint32_t t = 1; t < started; t++) pthread_join(th[t], NULL);
    /* Workers that could not be started ran nothing: do their share here. */
    for (uint32_t t = started; t < s->nwk; t++) fn(&s->wk[t]);
    for (uint32_t t = 0; t < s->nwk; t++)
        if (s->wk[t].err.code) {
            s->err = s->wk[t].err;
            return s->wk[t].err.code;
        }
    return 0;
}

/* ---- setup --------------------------------------------------------------------- */

int rk_sim_check(rk_sim *s)
{
    char url[1024];
    url_of(s, url, sizeof url, "/healthz");
    rk_err_clear(&s->err);
    if (rk__sim_http(&s->wk[0].http, "GET", url, NULL, 0, &s->err))
        return rk_err_prefix(&s->err, "cannot reach %s: ", s->w.o.url);
    /* A server on the event clock takes the simulated time: requests and
     * events then carry it, so half-lives, recency, label windows and the
     * loop's schedules run in simulated hours. */
    json_t *j = json_loadb(s->wk[0].http.body, s->wk[0].http.len, 0, NULL);
    json_t *ck = json_is_object(j) ? json_object_get(j, "clock") : NULL;
    s->event_clock = json_is_string(ck) && strcmp(json_string_value(ck), "event") == 0;
    json_decref(j);
    return 0;
}

static int put_item(worker *w, uint32_t i)
{
    const sim_world *wd = &w->s->w;
    const rk_sim_item *it = &wd->items[i];
    sim_rng r;
    rk__sim_rng_seed(&r, wd->o.seed, 2, i);
    uint32_t t1 = rk__sim_rng_below(&r, SIM_TAGS);
    uint32_t t2 = (t1 + 1 + rk__sim_rng_below(&r, SIM_TAGS - 1)) % SIM_TAGS;
    char pub[32], url[1024], path[64];
    rk_format_time_ms(it->published_ms, pub);
    rk_buf_reset(&w->req);
    rk_buf_printf(&w->req,
                  "{\"title\":\"%s %s #%u\",\"category\":\"%s\",\"tags\":"
                  "[\"%s\",\"%s\"],\"duration\":%.0f,\"published\":\"%s\"}",
                  rk__sim_adjectives[rk__sim_rng_below(&r, SIM_WORDS)],
                  rk__sim_nouns[rk__sim_rng_below(&r, SIM_WORDS)], i,
                  rk__sim_categories[it->category], rk__sim_tags[t1], rk__sim_tags[t2],
                  it->duration, pub);
    snprintf(path, sizeof path, "/v1/items/v%u", i);
    url_of(w->s, url, sizeof url, path);
    return rk__sim_http(&w->http, "PUT", url, w->req.data, w->req.len, &w->err);
}

static int put_user(worker *w, uint32_t u)
{
    const sim_world *wd = &w->s->w;
    const uint8_t *fav = w->s->fav;
    char url[1024], path[64];
    rk_buf_reset(&w->req);
    rk_buf_printf(&w->req, "{\"country\":\"%s\",\"age\":%u",
                  rk__sim_countries[wd->country[u]], wd->age[u]);
    if (fav && fav[u] != UINT8_MAX)
        rk_buf_printf(&w->req, ",\"fav_category\":\"%s\"",
                      rk__sim_categories[fav[u]]);
    rk_buf_putc(&w->req, '}');
    snprintf(path, sizeof path, "/v1/users/u%u", u);
    url_of(w->s, url, sizeof url, path);
    return rk__sim_http(&w->http, "PUT", url, w->req.data, w->req.len, &w->err);
}

static void *setup_entities(void *arg)
{
    worker *w = arg;
    const sim_world *wd = &w->s->w;
    uint32_t n = w->task == 0 ? wd->o.items : wd->o.users;
    for (uint32_t i = w->id; i < n && !w->err.code; i += w->s->nwk)
        if (w->task == 0 ? put_item(w, i) : put_user(w, i)) break;
    return NULL;
}

/* Appends one event object (with a leading comma unless first). */
static void put_event(rk_buf *b, int first, const char *type, uint32_t u,
                      const char *item, size_t item_len, int64_t ts,
                      double value, const char *rid, int pos,
                      const char *device, double bw)
{
    rk_buf_printf(b, "%s{\"type\":\"%s\",\"user\":\"u%u\",\"item\":", first ? "" : ",",
                  type, u);
    rk_buf_put_json_str(b, item, item_len);
    rk_buf_printf(b, ",\"ts\":%lld", (long long)ts);
    if (!isnan(value)) rk_buf_printf(b, ",\"value\":%.1f", value);
    if (rid) {
        rk_buf_puts(b, ",\"request_id\":");
        rk_buf_put_json_str(b, rid, strlen(rid));
    }
    if (pos >= 0) rk_buf_printf(b, ",\"position\":%d", pos);
    rk_buf_printf(b, ",\"context\":{\"device\":\"%s\"", device);
    if (!isnan(bw)) rk_buf_printf(b, ",\"bandwidth\":%.3f", bw);
    rk_buf_puts(b, "}}");
}

static int post_events(worker *w)
{
    char url[1024];
    url_of(w->s, url, sizeof url, "/v1/events");
    rk_buf_putc(&w->ev, ']');
    return rk__sim_http(&w->http, "POST", url, w->ev.data, w->ev.len, &w->err);
}

/* What a user does with a shown item: appends impression, click, watch
 * and like events. Returns 1 when clicked. */
typedef struct outcome {
    int clicked, liked;
    double watch;
} outcome;

static outcome react(worker *w, sim_rng *r, uint32_t u, uint32_t item,
                     uint32_t pos, uint32_t hour, double bw)
{
    const sim_world *wd = &w->s->w;
    outcome oc = {0, 0, NAN};
    double p = rk__sim_click_prob(wd, u, item, pos, hour, bw);
    if (rk__sim_rng_unit(r) >= p) return oc;
    oc.clicked = 1;
    double aff = rk__sim_affinity(wd, u, item, hour);
    double frac = 1 / (1 + exp(-(1.2 * aff - 0.3 + 0.5 * rk__sim_rng_normal(r))));
    oc.watch = floor(frac * wd->items[item].duration * 10 + 0.5) / 10;
    oc.liked = frac > 0.8 && rk__sim_rng_unit(r) < 0.3;
    return oc;
}

/* History: sessions without request ids before the start, slates drawn
 * half by popularity and half by taste, as `rankd demo` does. */
static int setup_history(rk_sim *s, FILE *progress)
{
    worker *w = &s->wk[0];
    const sim_world *wd = &s->w;
    const int64_t hist0 = wd->o.start_ms - (int64_t)wd->o.history_hours * 3600000;
    uint32_t inbatch = 0;
    uint64_t events = 0;
    char item[32];
    const uint32_t ncat = wd->o.categories;
    uint32_t *clicks = rk_calloc((size_t)wd->o.users * ncat, sizeof *clicks);
    rk_free(s->fav);
    s->fav = rk_malloc(wd->o.users ? wd->o.users : 1);
    if (!clicks || !s->fav) {
        rk_free(clicks);
        return rk_err_set(&s->err, RK_ENOMEM, "setup: out of memory");
    }
    rk_buf_reset(&w->ev);
    rk_buf_putc(&w->ev, '[');
    for (uint32_t k = 0; k < wd->o.history_sessions; k++) {
        sim_rng r;
        rk__sim_rng_seed(&r, wd->o.seed, 3, k);
        uint32_t u = rk__sim_rng_below(&r, wd->o.users);
        int64_t ts = hist0 + (int64_t)(rk__sim_rng_unit(&r) *
                                       (wd->o.history_hours * 3600000.0 - 600000));
        uint32_t shown = 5 + rk__sim_rng_below(&r, 6);
        const char *dev = rk__sim_devices[wd->device[u]];
        double bw = wd->bandwidth[u];
        for (uint32_t pos = 0; pos < shown; pos++) {
            uint32_t i = rk__sim_pick_popular(wd, &r);
            if (rk__sim_rng_unit(&r) < 0.5)
                for (int t = 0; t < 20 && rk__sim_affinity(wd, u, i, 0) < 1.0; t++)
                    i = rk__sim_pick_popular(wd, &r);
            int n = snprintf(item, sizeof item, "v%u", i);
            int64_t t = ts + pos * 1000;
            put_event(&w->ev, inbatch++ == 0, "impression", u, item, (size_t)n, t,
                      NAN, NULL, (int)pos, dev, bw);
            outcome oc = react(w, &r, u, i, pos, 0, bw);
            if (oc.clicked) {
                clicks[(size_t)u * ncat + wd->items[i].category]++;
                put_event(&w->ev, 0, "click", u, item, (size_t)n, t + 500, NAN,
                          NULL, (int)pos, dev, bw);
                put_event(&w->ev, 0, "watch", u, item, (size_t)n,
                          t + 500 + (int64_t)(oc.watch * 1000), oc.watch, NULL,
                          (int)pos, dev, bw);
                inbatch += 2;
            }
            if (oc.liked) {
                put_event(&w->ev, 0, "like", u, item, (size_t)n, t + 900, NAN,
                          NULL, (int)pos, dev, bw);
                inbatch++;
            }
        }
        if (inbatch >= SIM_EVENT_BATCH || k + 1 == wd->o.history_sessions) {
            if (post_events(w)) {
                s->err = w->err;
                rk_free(clicks);
                return w->err.code;
            }
            events += inbatch;
            inbatch = 0;
            rk_buf_reset(&w->ev);
            rk_buf_putc(&w->ev, '[');
        }
    }
    /* The profile: the category of most clicks, the lowest on a tie. */
    for (uint32_t u = 0; u < wd->o.users; u++) {
        const uint32_t *c = clicks + (size_t)u * ncat;
        uint32_t best = 0;
        s->fav[u] = UINT8_MAX;
        for (uint32_t k = 0; k < ncat; k++)
            if (c[k] > best) {
                best = c[k];
                s->fav[u] = (uint8_t)k;
            }
    }
    rk_free(clicks);
    if (progress)
        fprintf(progress, "setup: %llu history events over %u hours\n",
                (unsigned long long)events, wd->o.history_hours);
    return 0;
}

/* Polls a cold-start recommendation until it has items: the server builds
 * its trending and fresh lists every serve.refresh_s. */
static int wait_for_items(rk_sim *s, FILE *progress)
{
    char url[1024];
    url_of(s, url, sizeof url, "/v1/recommend");
    static const char body[] = "{\"n\":1}";
    for (int tries = 0; tries < 120; tries++) {
        worker *w = &s->wk[0];
        if (rk__sim_http(&w->http, "POST", url, body, sizeof body - 1, &s->err))
            return s->err.code;
        json_error_t je;
        json_t *j = json_loadb(w->http.body, w->http.len, 0, &je);
        json_t *items = json_is_object(j) ? json_object_get(j, "items") : NULL;
        size_t n = json_is_array(items) ? json_array_size(items) : 0;
        int ok = json_is_array(items);
        json_decref(j);
        if (!ok)
            return rk_err_set(&s->err, RK_EPARSE,
                              "POST %s: answer without an items list", url);
        if (n > 0) return 0;
        if (tries == 0 && progress)
            fprintf(progress, "setup: waiting for the server's trending list "
                              "(serve.refresh_s)...\n");
        sleep_ns(500000000ull);
    }
    return rk_err_set(&s->err, RK_ETIMEOUT,
                      "the server still recommends nothing 60 s after setup "
                      "(is serve.refresh_s long?)");
}

int rk_sim_setup(rk_sim *s, FILE *progress)
{
    rk_err_clear(&s->err);
    int rc;
    /* Items, then the history (its events create the users), then the
     * users with the profile the history gives them. */
    for (int task = 0; task < 2; task++) {
        for (uint32_t t = 0; t < s->nwk; t++) {
            s->wk[t].task = task;
            rk_err_clear(&s->wk[t].err);
        }
        if (task == 1 && (rc = setup_history(s, progress))) return rc;
        if ((rc = run_workers(s, setup_entities))) return rc;
        if (progress)
            fprintf(progress, "setup: %u %s written\n",
                    task == 0 ? s->w.o.items : s->w.o.users,
                    task == 0 ? "items" : "users");
    }
    return wait_for_items(s, progress);
}

/* ---- simulated hours ----------------------------------------------------------- */

static void note_model(worker *w, const char *name)
{
    for (int k = 0; k < w->nmodels; k++)
        if (strcmp(w->models[k], name) == 0) return;
    if (w->nmodels < SIM_MODELS) snprintf(w->models[w->nmodels++], 40, "%s", name);
}

static void note_latency(worker *w, double ms)
{
    /* Reservoir sampling keeps a uniform sample of bounded size. */
    uint64_t k = w->nlat++;
    if (k < SIM_LAT_SAMPLES) {
        w->lat[k] = (float)ms;
    } else {
        uint64_t j = rk__sim_rng_next(&w->lat_rng) % (k + 1);
        if (j < SIM_LAT_SAMPLES) w->lat[j] = (float)ms;
    }
}

static int hour_of_day_ms(int64_t ms)
{
    int h = (int)((ms / 3600000) % 24);
    return h < 0 ? h + 24 : h;
}

/* Parses an answer of /v1/recommend into (request id, item ids) and posts
 * the events. Returns 0, or nonzero after counting an error. */
static int one_request(worker *w, sim_rng *r, uint32_t u, uint32_t hour,
                       int64_t ts, const char *dev, double bw, double sent_bw)
{
    rk_sim *s = w->s;
    const sim_world *wd = &s->w;
    char url[1024];
    rk_buf_reset(&w->req);
    rk_buf_printf(&w->req, "{\"user\":\"u%u\",\"n\":%u,\"context\":{\"hour\":%d,"
                           "\"device\":\"%s\"", u, wd->o.n, hour_of_day_ms(ts), dev);
    if (!isnan(sent_bw)) rk_buf_printf(&w->req, ",\"bandwidth\":%.3f", sent_bw);
    rk_buf_putc(&w->req, '}');
    if (s->event_clock) rk_buf_printf(&w->req, ",\"ts\":%lld", (long long)ts);
    if (w->nshown) {
        rk_buf_puts(&w->req, ",\"exclude\":[");
        for (uint32_t k = 0; k < w->nshown && k < SIM_EXCLUDE_MAX; k++)
            rk_buf_printf(&w->req, "%s\"v%u\"", k ? "," : "", w->shown[k]);
        rk_buf_putc(&w->req, ']');
    }
    if (rk_buf_putc(&w->req, '}')) {
        rk_err_set(&w->err, RK_ELIMIT, "request body too large");
        count_error(w);
        return -1;
    }
    url_of(s, url, sizeof url, "/v1/recommend");
    uint64_t t0 = mono_ns();
    int rc = rk__sim_http(&w->http, "POST", url, w->req.data, w->req.len, &w->err);
    note_latency(w, (double)(mono_ns() - t0) / 1e6);
    w->st.requests++;
    if (rc) {
        count_error(w);
        return rc;
    }
    json_error_t je;
    json_t *j = json_loadb(w->http.body, w->http.len, 0, &je);
    json_t *rid = json_is_object(j) ? json_object_get(j, "request_id") : NULL;
    json_t *items = json_is_object(j) ? json_object_get(j, "items") : NULL;
    if (!json_is_string(rid) || !json_is_array(items)) {
        rk_err_set(&w->err, RK_EPARSE, "POST %s: malformed answer: %s", url,
                   j ? "no request_id or items" : je.text);
        json_decref(j);
        count_error(w);
        return RK_EPARSE;
    }
    json_t *model = json_object_get(j, "model"), *deg = json_object_get(j, "degraded");
    if (json_is_object(model) && json_is_string(json_object_get(model, "name"))) {
        char m[40];
        snprintf(m, sizeof m, "%s@%lld",
                 json_string_value(json_object_get(model, "name")),
                 (long long)json_integer_value(json_object_get(model, "version")));
        note_model(w, m);
    } else {
        note_model(w, "none");
    }
    if (deg && !json_is_null(deg)) w->st.degraded++;
    size_t nitems = json_array_size(items);
    if (nitems == 0) w->st.empty++;
    const char *req_id = json_string_value(rid);
    /* Live events happen when the ranking was served: at the simulated
     * time on an event-clock server, else at the server's wall clock (the
     * label join and the online metrics count a label window from when
     * the ranking was served). */
    const int64_t now_ms = s->event_clock ? ts : rk_clock_wall_ms();
    rk_buf_reset(&w->ev);
    rk_buf_putc(&w->ev, '[');
    int first = 1;
    for (size_t pos = 0; pos < nitems; pos++) {
        json_t *id = json_object_get(json_array_get(items, pos), "id");
        if (!json_is_string(id)) {
            rk_err_set(&w->err, RK_EPARSE, "POST %s: items[%zu] has no id", url, pos);
            json_decref(j);
            count_error(w);
            return RK_EPARSE;
        }
        const char *ext = json_string_value(id);
        size_t len = json_string_length(id);
        int64_t t = now_ms + (int64_t)pos * 4;
        put_event(&w->ev, first, "impression", u, ext, len, t, NAN, req_id,
                  (int)pos, dev, sent_bw);
        first = 0;
        w->st.impressions++;
        /* Only items of this world have a ground truth; others (a catalog
         * the server had before) are shown and never clicked. */
        char *end = NULL;
        unsigned long ix = ext[0] == 'v' ? strtoul(ext + 1, &end, 10) : ULONG_MAX;
        if (ix >= wd->nitems || *end != '\0') continue;
        if (w->nshown < wd->o.requests_per_session * wd->o.n)
            w->shown[w->nshown++] = (uint32_t)ix;
        outcome oc = react(w, r, u, (uint32_t)ix, (uint32_t)pos, hour, bw);
        if (oc.clicked) {
            put_event(&w->ev, 0, "click", u, ext, len, t + 1, NAN, req_id,
                      (int)pos, dev, sent_bw);
            put_event(&w->ev, 0, "watch", u, ext, len,
                      t + 2, oc.watch, req_id,
                      (int)pos, dev, sent_bw);
            w->st.clicks++;
            w->st.watches++;
            w->st.watch_seconds += oc.watch;
        }
        if (oc.liked) {
            put_event(&w->ev, 0, "like", u, ext, len, t + 3, NAN, req_id,
                      (int)pos, dev, sent_bw);
            w->st.likes++;
        }
    }
    json_decref(j);
    if (first) return 0;
    if (post_events(w)) {
        count_error(w);
        return -1;
    }
    return 0;
}

static void *hour_worker(void *arg)
{
    worker *w = arg;
    rk_sim *s = w->s;
    const sim_world *wd = &s->w;
    const uint32_t hour = w->hour, nsess = w->nsess;
    const int64_t h0 = rk__sim_hour_ms(wd, hour);
    const uint32_t best_every =
        (uint32_t)ceil((double)wd->nitems * nsess / SIM_BEST_BUDGET);
    for (uint32_t k = w->id; k < nsess && !atomic_load(&s->stop); k += s->nwk) {
        double off_s = 3600.0 * k / nsess;
        if (wd->o.speed > 0) {
            /* Pace: this session starts when the simulated clock, running
             * at `speed` from the first hour run, reaches it. */
            double sim_s = (double)(hour - s->hour0) * 3600 + off_s;
            uint64_t due = s->real0_ns + (uint64_t)(sim_s / wd->o.speed * 1e9);
            uint64_t now = mono_ns();
            if (due > now) sleep_ns(due - now);
        }
        sim_rng r;
        rk__sim_rng_seed(&r, wd->o.seed, 1000 + (uint64_t)hour, k);
        uint32_t u = rk__sim_rng_below(&r, wd->o.users);
        uint32_t d = rk__sim_rng_unit(&r) < 0.8 ? wd->device[u]
                                                : rk__sim_rng_below(&r, SIM_DEVICES);
        double bw = wd->bandwidth[u] * exp(0.3 * rk__sim_rng_normal(&r));
        double sent = rk__sim_sent_bw(wd, hour, bw);
        int64_t ts = h0 + (int64_t)(off_s * 1000) +
                     (int64_t)(rk__sim_rng_unit(&r) * 3600000.0 / nsess * 0.5);
        w->st.sessions++;
        if (best_every <= 1 || k % best_every == 0) {
            uint32_t best_shown;
            w->st.best_clicks += rk__sim_best_clicks(wd, u, hour, bw,
                                                     wd->o.requests_per_session,
                                                     wd->o.n, w->top, &best_shown);
            w->st.best_shown += best_shown;
        }
        w->nshown = 0;
        for (uint32_t q = 0; q < wd->o.requests_per_session; q++)
            if (one_request(w, &r, u, hour, ts + (int64_t)q * 60000,
                            rk__sim_devices[d], bw, sent))
                break;
    }
    return NULL;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int rk_sim_run_hour(rk_sim *s, uint32_t hour, rk_sim_hour_stats *st)
{
    const sim_world *wd = &s->w;
    rk_err_clear(&s->err);
    memset(st, 0, sizeof *st);
    st->hour = hour;
    st->start_ms = rk__sim_hour_ms(wd, hour);
    if (!s->paced) {
        s->paced = 1;
        s->real0_ns = mono_ns();
        s->hour0 = hour;
    }
    /* new_items: the wave is published at the start of its hour (or of
     * the first hour run after it, for a run that starts later). */
    if (wd->o.scenario == RK_SIM_NEW_ITEMS && hour >= wd->o.event_hour &&
        !s->wave_done) {
        s->wave_done = 1;
        for (uint32_t t = 0; t < s->nwk; t++) rk_err_clear(&s->wk[t].err);
        worker *w = &s->wk[0];
        for (uint32_t i = wd->o.items; i < wd->nitems; i++)
            if (put_item(w, i)) {
                s->err = w->err;
                return rk_err_prefix(&s->err, "new-item wave: ");
            }
    }
    uint32_t nsess = rk__sim_sessions(wd, hour);
    for (uint32_t t = 0; t < s->nwk; t++) {
        worker *w = &s->wk[t];
        memset(&w->st, 0, sizeof w->st);
        rk_err_clear(&w->err);
        w->hour = hour;
        w->nsess = nsess;
        w->nlat = 0;
        w->nmodels = 0;
    }
    run_workers(s, hour_worker);
    /* Merge the workers' counters, latency samples and model names. */
    size_t nl = 0;
    float *lat = rk_malloc(sizeof(float) * SIM_LAT_SAMPLES * s->nwk);
    char seen[SIM_MODELS * 2][40];
    int nseen = 0;
    for (uint32_t t = 0; t < s->nwk; t++) {
        worker *w = &s->wk[t];
        st->sessions += w->st.sessions;
        st->requests += w->st.requests;
        st->impressions += w->st.impressions;
        st->clicks += w->st.clicks;
        st->watches += w->st.watches;
        st->likes += w->st.likes;
        st->empty += w->st.empty;
        st->degraded += w->st.degraded;
        st->errors += w->st.errors;
        st->watch_seconds += w->st.watch_seconds;
        st->best_clicks += w->st.best_clicks;
        st->best_shown += w->st.best_shown;
        uint64_t k = w->nlat < SIM_LAT_SAMPLES ? w->nlat : SIM_LAT_SAMPLES;
        if (lat) memcpy(lat + nl, w->lat, sizeof(float) * k), nl += k;
        for (int m = 0; m < w->nmodels; m++) {
            int dup = 0;
            for (int q = 0; q < nseen; q++) dup |= !strcmp(seen[q], w->models[m]);
            if (!dup && nseen < SIM_MODELS * 2) strcpy(seen[nseen++], w->models[m]);
        }
    }
    if (nl) {
        qsort(lat, nl, sizeof *lat, cmp_float);
        st->p50_ms = lat[(size_t)(0.50 * (double)(nl - 1) + 0.5)];
        st->p99_ms = lat[(size_t)(0.99 * (double)(nl - 1) + 0.5)];
    }
    rk_free(lat);
    /* Sorted model names, so the report does not depend on thread order. */
    qsort(seen, (size_t)nseen, sizeof seen[0], (int (*)(const void *, const void *))strcmp);
    size_t off = 0;
    for (int q = 0; q < nseen && off < sizeof st->models; q++)
        off += (size_t)snprintf(st->models + off, sizeof st->models - off, "%s%s",
                                q ? " " : "", seen[q]);
    if (nseen == 0) snprintf(st->models, sizeof st->models, "-");
    st->ctr = st->impressions ? (double)st->clicks / (double)st->impressions : 0;
    st->watch_per_imp = st->impressions ? st->watch_seconds / (double)st->impressions : 0;
    st->best_ctr = st->best_shown ? st->best_clicks / (double)st->best_shown : 0;
    uint64_t total = atomic_load(&s->errors);
    if (total > wd->o.max_errors || atomic_load(&s->stop)) {
        const rk_err *last = NULL;
        for (uint32_t t = 0; t < s->nwk; t++)
            if (s->wk[t].err.code) last = &s->wk[t].err;
        return rk_err_set(&s->err, RK_EIO,
                          "stopping after %llu failed requests (more than %u); "
                          "last: %s", (unsigned long long)total, wd->o.max_errors,
                          last ? rk_err_msg(last) : "?");
    }
    if (st->errors) {
        for (uint32_t t = 0; t < s->nwk; t++)
            if (s->wk[t].err.code) s->err = s->wk[t].err;
    }
    return 0;
}

/* ---- report ---------------------------------------------------------------------- */

void rk_sim_table_header(FILE *f)
{
    fprintf(f, "%4s  %-16s %8s %8s %11s %7s %6s %8s %8s %8s %6s %8s %8s  %s\n",
            "hour", "sim_time", "sessions", "requests", "impressions", "clicks",
            "ctr", "best_ctr", "watch_s", "degraded", "errors", "p50_ms", "p99_ms",
            "models");
}

void rk_sim_table_row(FILE *f, const rk_sim_hour_stats *st)
{
    char t[32];
    rk_format_time_ms(st->start_ms, t);
    fprintf(f, "%4u  %-16.16s %8llu %8llu %11llu %7llu %6.4f %8.4f %8.2f %8llu %6llu "
               "%8.2f %8.2f  %s\n",
            st->hour, t, (unsigned long long)st->sessions,
            (unsigned long long)st->requests, (unsigned long long)st->impressions,
            (unsigned long long)st->clicks, st->ctr, st->best_ctr, st->watch_per_imp,
            (unsigned long long)st->degraded, (unsigned long long)st->errors,
            st->p50_ms, st->p99_ms, st->models);
}

void rk_sim_csv_header(FILE *f)
{
    fputs("hour,sim_time,sessions,requests,impressions,clicks,ctr,"
          "watch_s_per_impression,watches,likes,empty,degraded,errors,"
          "p50_ms,p99_ms,models,best_ctr\n", f);
}

void rk_sim_csv_row(FILE *f, const rk_sim_hour_stats *st)
{
    char t[32];
    rk_format_time_ms(st->start_ms, t);
    fprintf(f, "%u,%s,%llu,%llu,%llu,%llu,%.6f,%.4f,%llu,%llu,%llu,%llu,%llu,"
               "%.3f,%.3f,%s,%.6f\n",
            st->hour, t, (unsigned long long)st->sessions,
            (unsigned long long)st->requests, (unsigned long long)st->impressions,
            (unsigned long long)st->clicks, st->ctr, st->watch_per_imp,
            (unsigned long long)st->watches, (unsigned long long)st->likes,
            (unsigned long long)st->empty, (unsigned long long)st->degraded,
            (unsigned long long)st->errors, st->p50_ms, st->p99_ms, st->models,
            st->best_ctr);
}

/* ---- world accessors -------------------------------------------------------------- */

uint32_t rk_sim_nitems(const rk_sim *s) { return s->w.nitems; }

int rk_sim_item_info(const rk_sim *s, uint32_t item, rk_sim_item *out)
{
    if (item >= s->w.nitems) return RK_EINVAL;
    *out = s->w.items[item];
    return 0;
}

double rk_sim_affinity(const rk_sim *s, uint32_t user, uint32_t item,
                       uint32_t hour)
{
    if (user >= s->w.o.users || item >= s->w.nitems) return NAN;
    return rk__sim_affinity(&s->w, user, item, hour);
}

double rk_sim_click_prob(const rk_sim *s, uint32_t user, uint32_t item,
                         uint32_t pos, uint32_t hour, double bw)
{
    if (user >= s->w.o.users || item >= s->w.nitems) return NAN;
    return rk__sim_click_prob(&s->w, user, item, pos, hour, bw);
}

int rk_sim_user_taste(const rk_sim *s, uint32_t user, uint32_t hour,
                      double *out)
{
    if (user >= s->w.o.users) return RK_EINVAL;
    rk__sim_taste(&s->w, user, hour, out);
    return 0;
}

double rk_sim_best_session_clicks(const rk_sim *s, uint32_t user, uint32_t hour,
                                  double bw, uint32_t *shown)
{
    *shown = 0;
    if (user >= s->w.o.users) return NAN;
    double *top = rk_malloc(sizeof(double) * s->w.o.requests_per_session * s->w.o.n);
    if (!top) return NAN;
    double c = rk__sim_best_clicks(&s->w, user, hour, bw, s->w.o.requests_per_session,
                                   s->w.o.n, top, shown);
    rk_free(top);
    return c;
}

uint32_t rk_sim_sessions_in_hour(const rk_sim *s, uint32_t hour)
{
    return rk__sim_sessions(&s->w, hour);
}

double rk_sim_sent_bandwidth(const rk_sim *s, uint32_t hour, double bw)
{
    return rk__sim_sent_bw(&s->w, hour, bw);
}
