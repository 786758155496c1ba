/*
 * sim_int.h — internals shared by the simulator's files: the random number
 * generator, the world (world.c), the HTTP client (http.c) and the handle
 * (sim.c).
 */
#ifndef RK_SIM_INT_H
#define RK_SIM_INT_H

#include <curl/curl.h>

#include "rk_sim.h"

/* xorshift64* as in `rankd demo`: small and the same on every platform. */
typedef struct sim_rng {
    uint64_t s;
} sim_rng;

void rk__sim_rng_seed(sim_rng *r, uint64_t a, uint64_t b, uint64_t c);
uint64_t rk__sim_rng_next(sim_rng *r);
double rk__sim_rng_unit(sim_rng *r);              /* [0, 1) */
uint32_t rk__sim_rng_below(sim_rng *r, uint32_t n);
double rk__sim_rng_normal(sim_rng *r);

#define SIM_MAX_CAT 64
#define SIM_DEVICES 3

#define SIM_TAGS 20
#define SIM_WORDS 8
#define SIM_COUNTRIES 8

/* The vocabulary (rk_sim_vocabulary): names by index. */
extern const char *const rk__sim_categories[SIM_MAX_CAT];
extern const char *const rk__sim_devices[SIM_DEVICES];
extern const char *const rk__sim_tags[SIM_TAGS];
extern const char *const rk__sim_adjectives[SIM_WORDS];
extern const char *const rk__sim_nouns[SIM_WORDS];
extern const char *const rk__sim_countries[SIM_COUNTRIES];

typedef struct sim_world {
    rk_sim_opts o;
    uint32_t nitems;        /* catalog + wave */
    float *item_vec;        /* nitems × dim, unit length */
    rk_sim_item *items;
    float *taste;           /* users × dim, unit length */
    float *moved;           /* users × dim: the taste after a shift by
                             * categories (NULL otherwise) */
    uint8_t *device;        /* users: preferred device */
    float *bandwidth;       /* users: typical Mbit/s */
    uint8_t *age;
    uint8_t *country;
    double *pop_cdf;        /* cumulative popularity over the catalog */
} sim_world;

int rk__sim_world_build(sim_world *w, const rk_sim_opts *o, rk_err *err);
void rk__sim_world_free(sim_world *w);
/* Whether the item is live (published) at the hour. */
int rk__sim_item_live(const sim_world *w, uint32_t item, uint32_t hour);
/* Samples a live catalog item by popularity prior. */
uint32_t rk__sim_pick_popular(const sim_world *w, sim_rng *r);
/* The taste at an hour (after rotation), out[dim]. */
void rk__sim_taste(const sim_world *w, uint32_t u, uint32_t hour, double *out);
double rk__sim_affinity(const sim_world *w, uint32_t u, uint32_t i,
                        uint32_t hour);
double rk__sim_click_prob(const sim_world *w, uint32_t u, uint32_t i,
                          uint32_t pos, uint32_t hour, double bw);
/* The expected clicks of the best session the user could be shown:
 * `slates` slates of n distinct live items, arranged to maximise expected
 * clicks under the position bias (*shown: the items, fewer than
 * slates·n only in a smaller catalog). top: scratch of slates·n doubles. */
double rk__sim_best_clicks(const sim_world *w, uint32_t u, uint32_t hour,
                           double bw, uint32_t slates, uint32_t n, double *top,
                           uint32_t *shown);
uint32_t rk__sim_sessions(const sim_world *w, uint32_t hour);
double rk__sim_sent_bw(const sim_world *w, uint32_t hour, double bw);
int64_t rk__sim_hour_ms(const sim_world *w, uint32_t hour);

/* ---- HTTP --------------------------------------------------------------- */

/* One keep-alive connection; bodies up to SIM_MAX_BODY bytes. */
#define SIM_MAX_BODY (8u << 20)
typedef struct sim_http {
    CURL *h;
    struct curl_slist *hdrs;
    char *body;             /* response, NUL-terminated */
    size_t len, cap;
    int overflow;
    long status;
    double seconds;         /* total time of the last request */
    char errbuf[CURL_ERROR_SIZE];
} sim_http;

int rk__sim_http_init(sim_http *c, const char *api_key, uint32_t timeout_ms,
                      rk_err *err);
void rk__sim_http_free(sim_http *c);
/* Performs METHOD url with body (may be NULL). 0 when the server answered
 * 2xx; RK_EIO otherwise with "METHOD URL: 404 UNKNOWN_ITEM: detail" or the
 * transport error in err. */
int rk__sim_http(sim_http *c, const char *method, const char *url,
                 const char *body, size_t len, rk_err *err);

#endif
