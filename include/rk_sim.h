/*
 * rk_sim.h — a simulated video platform that drives a real `rankd serve`
 * over HTTP (docs/simulator.md).
 *
 * The world is a pure function of the options and the seed: users with
 * latent taste vectors, items with latent vectors built around their
 * category, durations, a power-law popularity prior and publish times. A
 * session asks POST /v1/recommend, then posts the impressions of every
 * returned item (with the answer's request_id and the position) and the
 * clicks, watches and likes the model draws: click probability =
 * position_bias(pos) × sigmoid(bias + affinity + popularity + context),
 * watch seconds = watch_fraction(affinity) × duration. Scenarios change the
 * world from a given simulated hour: tastes rotate, a wave of new items is
 * published, the client pipeline corrupts a context feature, or activity
 * and tastes follow the hour of the day.
 *
 * Life cycle: rk_sim_opts_default → edit → rk_sim_create → rk_sim_setup
 * (optional) → rk_sim_run_hour for each hour → rk_sim_destroy. A handle is
 * used by one thread at a time; rk_sim_run_hour runs opts.threads worker
 * threads internally, each with its own keep-alive libcurl handle.
 * Memory is bounded by the options: O(users·dim + items·dim) for the world
 * plus a fixed latency reservoir per thread.
 */
#ifndef RK_SIM_H
#define RK_SIM_H

#include <stdint.h>
#include <stdio.h>

#include "rk_core.h"

typedef enum rk_sim_scenario {
    RK_SIM_STEADY = 0,       /* nothing changes */
    RK_SIM_TASTE_SHIFT,      /* from event_hour tastes rotate by shift_deg */
    RK_SIM_NEW_ITEMS,        /* at event_hour new_items items are published */
    RK_SIM_PIPELINE_BUG,     /* from event_hour context.bandwidth is broken */
    RK_SIM_SEASONALITY,      /* hour-of-day activity and taste modulation */
    RK_SIM_SCENARIO_COUNT
} rk_sim_scenario;

/* How taste_shift moves a taste. */
typedef enum rk_sim_shift {
    /* Every user's favourite categories move half the category circle on
     * (category c becomes c + categories/2), with the same personal part:
     * the new tastes fit the catalog as well as the old ones, so the best
     * attainable CTR does not change. */
    RK_SIM_SHIFT_CATEGORIES = 0,
    /* Taste space is rotated in every coordinate plane (0,1), (2,3), ...:
     * the new tastes point where no category is, so the best attainable
     * CTR falls too (to ~0.68 of its level at 90 degrees). */
    RK_SIM_SHIFT_LATENT
} rk_sim_shift;

typedef enum rk_sim_bug {
    RK_SIM_BUG_SCALE = 0,    /* bandwidth sent × bug_scale (kbit/s for Mbit/s) */
    RK_SIM_BUG_MISSING       /* bandwidth left out of the context */
} rk_sim_bug;

/* Stable lower-case names ("taste_shift") and the reverse lookup
 * (RK_EINVAL on an unknown name). */
const char *rk_sim_scenario_name(rk_sim_scenario s);
int rk_sim_scenario_parse(const char *name, rk_sim_scenario *out);
/* "categories", "latent", and the reverse lookup (RK_EINVAL if unknown). */
const char *rk_sim_shift_name(rk_sim_shift s);
int rk_sim_shift_parse(const char *name, rk_sim_shift *out);

typedef struct rk_sim_opts {
    /* world */
    uint64_t seed;               /* 42 */
    uint32_t users;              /* 500 */
    uint32_t items;              /* 2000 (the catalog before any wave) */
    uint32_t categories;         /* 12 (at most 64) */
    uint32_t dim;                /* 16 latent dimensions (2..256) */
    /* traffic */
    uint32_t sessions_per_hour;  /* 200 (the mean under seasonality) */
    uint32_t requests_per_session; /* 2 */
    uint32_t n;                  /* 10 items per request */
    /* setup history */
    uint32_t history_sessions;   /* 4000 sessions without request ids */
    uint32_t history_hours;      /* 48 hours before the start */
    /* clock: simulated time of hour 0 (ms since 1970; 0 = the wall clock
     * at rk_sim_create, floored to the minute), and pacing */
    int64_t start_ms;
    double speed;                /* simulated s per real s; 0 = no pacing */
    uint32_t threads;            /* 1..64 HTTP workers, default 1 */
    /* scenario */
    rk_sim_scenario scenario;
    uint32_t event_hour;         /* 2: first hour the scenario acts */
    double shift_deg;            /* 90: how far tastes turn (90 = all the way) */
    rk_sim_shift shift;          /* RK_SIM_SHIFT_CATEGORIES */
    uint32_t new_items;          /* 200: size of the new-item wave */
    double wave_boost;           /* 1.0: extra logit of wave items */
    rk_sim_bug bug;              /* RK_SIM_BUG_SCALE */
    double bug_scale;            /* 1000 */
    double season_amplitude;     /* 0.5: activity ±50%, taste ±0.5 logit */
    /* server */
    const char *url;             /* "http://127.0.0.1:8080" (borrowed) */
    const char *api_key;         /* NULL = none (borrowed) */
    uint32_t timeout_ms;         /* 10000 per HTTP request */
    uint32_t max_errors;         /* 50: failed requests before giving up */
} rk_sim_opts;

void rk_sim_opts_default(rk_sim_opts *o);

/* Per simulated hour, as reported. */
#define RK_SIM_MODELS_MAX 96
typedef struct rk_sim_hour_stats {
    uint32_t hour;               /* hour index since the start */
    int64_t start_ms;            /* simulated time of the hour's start */
    uint64_t sessions, requests, impressions, clicks, watches, likes;
    uint64_t empty;              /* answers without items */
    uint64_t degraded;           /* answers with "degraded" */
    uint64_t errors;             /* failed requests (transport or non-2xx) */
    double watch_seconds;        /* sum over watches */
    double ctr;                  /* clicks / impressions (0 without any) */
    double watch_per_imp;        /* watch_seconds / impressions */
    /* The best attainable: per session, the expected clicks of the
     * requests_per_session × n live items with the highest true click
     * probabilities for that user, hour and bandwidth, best arranged
     * (rk_sim_best_session_clicks); best_ctr = best_clicks / best_shown.
     * Over every session, or over every k-th one when items × sessions of
     * the hour exceed 2·10^7 (k the smallest that keeps within it). */
    double best_clicks;
    uint64_t best_shown;
    double best_ctr;
    double p50_ms, p99_ms;       /* /v1/recommend latency */
    char models[RK_SIM_MODELS_MAX]; /* "feed@1 feed@2", "none" */
} rk_sim_hour_stats;

typedef struct rk_sim rk_sim;

/* Builds the world (deterministic for the options) and one HTTP handle
 * per thread. Does not contact the server. Errors: RK_EINVAL (bad option,
 * message in err), RK_ENOMEM. */
int rk_sim_create(rk_sim **out, const rk_sim_opts *o, rk_err *err);
/* Frees everything; NULL does nothing. */
void rk_sim_destroy(rk_sim *s);
/* The detailed message of the handle's last error (valid until the next
 * call on the handle). */
const char *rk_sim_errmsg(const rk_sim *s);

/* GET /healthz. RK_EIO with "cannot reach URL: ..." when the server does
 * not answer 200. Also reads the server's clock: under serve.clock: event
 * the simulated hours' requests and events carry their simulated times
 * ("ts"), so the server's half-lives, label windows and loop schedules
 * run in simulated time; otherwise live events carry the wall clock. */
int rk_sim_check(rk_sim *s);
/* Writes the catalog (PUT /v1/items/{id}), the users (PUT /v1/users/{id})
 * and history_sessions sessions of events without request ids spread over
 * the history_hours before the start (POST /v1/events, batches of 1000).
 * Then waits (at most 60 s) until the server answers a cold-start
 * recommendation with items. RK_EIO on transport errors or error answers,
 * with the server's detail in rk_sim_errmsg. */
int rk_sim_setup(rk_sim *s, FILE *progress);
/* Simulates hour `hour` (0-based since start_ms) and fills *st. Errors are
 * counted in st->errors; the call fails with RK_EIO once the handle's
 * failed requests exceed max_errors (st still holds the partial hour). */
int rk_sim_run_hour(rk_sim *s, uint32_t hour, rk_sim_hour_stats *st);

/* Report formatting: an aligned table and CSV, one line per hour. */
void rk_sim_table_header(FILE *f);
void rk_sim_table_row(FILE *f, const rk_sim_hour_stats *st);
void rk_sim_csv_header(FILE *f);
void rk_sim_csv_row(FILE *f, const rk_sim_hour_stats *st);

/* Writes a rankd config (YAML) whose schema, events, features, labels,
 * retrieval and serve sections match the simulated world. Returns 0 or
 * RK_EIO (errno set). */
int rk_sim_write_config(FILE *f, const rk_sim_opts *o);
/* Only the store, entities and events sections of that config: the video
 * platform's schema, shared with `rankd demo`. Returns 0 or RK_EIO. */
int rk_sim_write_schema(FILE *f);

/* The video platform's vocabulary, shared with `rankd demo`: category
 * names (a world of N categories uses the first N), item tags, the two
 * word lists of item titles ("Adjective Noun #id") and user countries.
 * Static, never freed. */
typedef struct rk_sim_vocab {
    const char *const *categories;
    uint32_t ncategories;
    const char *const *tags;
    uint32_t ntags;
    const char *const *adjectives;
    uint32_t nadjectives;
    const char *const *nouns;
    uint32_t nnouns;
    const char *const *countries;
    uint32_t ncountries;
} rk_sim_vocab;
const rk_sim_vocab *rk_sim_vocabulary(void);

/* ---- the world model, exposed for tests and tools (thread-safe reads) --- */

typedef struct rk_sim_item {
    uint32_t category;
    double duration;             /* seconds */
    double popularity;           /* prior in (0, 1], 1 = most popular */
    int64_t published_ms;
    int wave;                    /* 1 for new-item wave items */
} rk_sim_item;

/* Items of the world, the wave included: opts.items + opts.new_items when
 * the scenario is new_items. */
uint32_t rk_sim_nitems(const rk_sim *s);
int rk_sim_item_info(const rk_sim *s, uint32_t item, rk_sim_item *out);
/* The user's taste vector at an hour (after taste_shift's rotation; the
 * seasonal term is per category, in rk_sim_affinity), copied into out[dim]
 * (dim <= 256). RK_EINVAL for an unknown user. */
int rk_sim_user_taste(const rk_sim *s, uint32_t user, uint32_t hour,
                      double *out);
/* Affinity of user and item at an hour (dot product of taste and item
 * vectors, scaled to about [-3, 3], plus the seasonal category term). */
double rk_sim_affinity(const rk_sim *s, uint32_t user, uint32_t item,
                       uint32_t hour);
/* Position bias: 1 / log2(pos + 2), 1 at position 0. */
double rk_sim_position_bias(uint32_t pos);
/* Click probability of the item at position pos for a request with true
 * bandwidth bw (Mbit/s). */
double rk_sim_click_prob(const rk_sim *s, uint32_t user, uint32_t item,
                         uint32_t pos, uint32_t hour, double bw);
/* The expected clicks of the best session for the user at an hour with
 * true bandwidth bw: the requests_per_session × n live items with the
 * highest click probabilities, the largest at the top positions. *shown
 * gets the number of items (fewer only in a smaller catalog). NAN for an
 * unknown user or out of memory. Costs O(items · dim). */
double rk_sim_best_session_clicks(const rk_sim *s, uint32_t user, uint32_t hour,
                                  double bw, uint32_t *shown);
/* Expected watch fraction in (0, 1) given a click (noise-free). */
double rk_sim_watch_fraction(double affinity);
/* Sessions of an hour under the scenario (seasonality modulates it). */
uint32_t rk_sim_sessions_in_hour(const rk_sim *s, uint32_t hour);
/* The context bandwidth a client sends for true bandwidth bw at an hour:
 * bw, bw × bug_scale, or NAN (left out) under the pipeline bug. */
double rk_sim_sent_bandwidth(const rk_sim *s, uint32_t hour, double bw);

#endif
