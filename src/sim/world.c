/*
 * world.c — the simulated platform's ground truth: who likes what, how
 * popular items are, where people click and how long they watch, and how
 * each scenario changes that from its event hour.
 *
 * Invariants: everything here is a pure function of the options (seed
 * included) and of (user, item, position, hour, bandwidth); the random
 * draws of traffic happen in sim.c with generators seeded per session, so
 * the world never depends on thread scheduling. Vectors are unit length,
 * so the affinity scale is set by SIM_AFF_SCALE alone.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_int.h"

#define SIM_AFF_SCALE 3.0     /* affinity = 3·cos(taste, item) */
#define SIM_CLICK_BIAS (-2.0) /* logit of a neutral item at position 0 */
#define SIM_POP_WEIGHT 0.6    /* logit per unit of log-popularity z-score */
#define SIM_BW_WEIGHT 0.15    /* logit per log2 of bandwidth over 8 Mbit/s */
#define SIM_PI 3.14159265358979323846

const char *const rk__sim_categories[SIM_MAX_CAT] = {
    "news", "sports", "music", "comedy", "gaming", "cooking", "travel",
    "science", "tech", "film", "kids", "fitness", "cars", "pets", "history",
    "art", "fashion", "finance", "health", "nature", "dance", "diy", "anime",
    "space", "food", "politics", "books", "design", "esports", "outdoors",
    "theatre", "magic", "c32", "c33", "c34", "c35", "c36", "c37", "c38",
    "c39", "c40", "c41", "c42", "c43", "c44", "c45", "c46", "c47", "c48",
    "c49", "c50", "c51", "c52", "c53", "c54", "c55", "c56", "c57", "c58",
    "c59", "c60", "c61", "c62", "c63"};
const char *const rk__sim_devices[SIM_DEVICES] = {"mobile", "desktop", "tv"};
const char *const rk__sim_tags[SIM_TAGS] = {
    "live", "short", "tutorial", "review", "highlights", "interview", "vlog",
    "4k", "classic", "trending", "behind-the-scenes", "podcast", "animation",
    "documentary", "how-to", "reaction", "challenge", "asmr", "remix", "top10"};
const char *const rk__sim_adjectives[SIM_WORDS] = {"Amazing", "Quiet", "Wild", "Tiny",
                                                   "Golden", "Lost", "Fast", "Hidden"};
const char *const rk__sim_nouns[SIM_WORDS] = {"River", "Kitchen", "Match", "Planet",
                                              "Song", "Robot", "Journey", "Trick"};
const char *const rk__sim_countries[SIM_COUNTRIES] = {"US", "DE", "FR", "BR",
                                                      "IN", "JP", "GB", "ES"};

const rk_sim_vocab *rk_sim_vocabulary(void)
{
    static const rk_sim_vocab v = {
        rk__sim_categories, SIM_MAX_CAT, rk__sim_tags,  SIM_TAGS,
        rk__sim_adjectives, SIM_WORDS,   rk__sim_nouns, SIM_WORDS,
        rk__sim_countries,  SIM_COUNTRIES};
    return &v;
}

/* ---- random numbers ------------------------------------------------------ */

void rk__sim_rng_seed(sim_rng *r, uint64_t a, uint64_t b, uint64_t c)
{
    /* splitmix64 of the three inputs: streams for nearby seeds differ. */
    uint64_t z = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL) *
                 0xBF58476D1CE4E5B9ULL ^ (c + 0x85157AF5ULL) * 0x94D049BB133111EBULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    r->s = z ? z : 0x2545F4914F6CDD1DULL;
}

uint64_t rk__sim_rng_next(sim_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

double rk__sim_rng_unit(sim_rng *r)
{
    return (double)(rk__sim_rng_next(r) >> 11) / 9007199254740992.0;
}

uint32_t rk__sim_rng_below(sim_rng *r, uint32_t n)
{
    uint32_t k = (uint32_t)(rk__sim_rng_unit(r) * n);
    return k < n ? k : n - 1;
}

double rk__sim_rng_normal(sim_rng *r)
{
    double u1 = rk__sim_rng_unit(r), u2 = rk__sim_rng_unit(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2 * SIM_PI * u2);
}

/* ---- options ------------------------------------------------------------- */

static const char *const scenario_names[RK_SIM_SCENARIO_COUNT] = {
    "steady", "taste_shift", "new_items", "pipeline_bug", "seasonality"};

static const char *const shift_names[] = {"categories", "latent"};
#define SIM_SHIFTS (sizeof shift_names / sizeof shift_names[0])

/* Index of name among names[0..n), or -1. */
static int name_index(const char *const *names, unsigned n, const char *name)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) return (int)i;
    return -1;
}

const char *rk_sim_shift_name(rk_sim_shift s)
{
    return (unsigned)s < SIM_SHIFTS ? shift_names[s] : "?";
}

int rk_sim_shift_parse(const char *name, rk_sim_shift *out)
{
    int i = name_index(shift_names, SIM_SHIFTS, name);
    if (i < 0) return RK_EINVAL;
    *out = (rk_sim_shift)i;
    return 0;
}

const char *rk_sim_scenario_name(rk_sim_scenario s)
{
    return (unsigned)s < RK_SIM_SCENARIO_COUNT ? scenario_names[s] : "?";
}

int rk_sim_scenario_parse(const char *name, rk_sim_scenario *out)
{
    int i = name_index(scenario_names, RK_SIM_SCENARIO_COUNT, name);
    if (i < 0) return RK_EINVAL;
    *out = (rk_sim_scenario)i;
    return 0;
}

void rk_sim_opts_default(rk_sim_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 42;
    o->users = 500;
    o->items = 2000;
    o->categories = 12;
    o->dim = 16;
    o->sessions_per_hour = 200;
    o->requests_per_session = 2;
    o->n = 10;
    o->history_sessions = 4000;
    o->history_hours = 48;
    o->threads = 1;
    o->scenario = RK_SIM_STEADY;
    o->event_hour = 2;
    o->shift_deg = 90;
    o->shift = RK_SIM_SHIFT_CATEGORIES;
    o->new_items = 200;
    o->wave_boost = 1.0;
    o->bug = RK_SIM_BUG_SCALE;
    o->bug_scale = 1000;
    o->season_amplitude = 0.5;
    o->url = "http://127.0.0.1:8080";
    o->timeout_ms = 10000;
    o->max_errors = 50;
}

static int check_opts(const rk_sim_opts *o, rk_err *err)
{
#define NEED(cond, ...) \
    if (!(cond)) return rk_err_set(err, RK_EINVAL, __VA_ARGS__)
    NEED(o->users >= 1 && o->users <= 10000000, "users must be 1..10000000");
    NEED(o->items >= 1 && o->items <= 10000000, "items must be 1..10000000");
    NEED(o->categories >= 1 && o->categories <= SIM_MAX_CAT,
         "categories must be 1..%d", SIM_MAX_CAT);
    NEED(o->dim >= 2 && o->dim <= 256, "dim must be 2..256");
    NEED(o->sessions_per_hour >= 1 && o->sessions_per_hour <= 1000000,
         "sessions per hour must be 1..1000000");
    NEED(o->requests_per_session >= 1 && o->requests_per_session <= 100,
         "requests per session must be 1..100");
    NEED(o->n >= 1 && o->n <= 200, "n must be 1..200");
    NEED(o->history_hours >= 1 && o->history_hours <= 24 * 365,
         "history hours must be 1..8760");
    NEED(o->history_sessions <= 100000000, "history sessions must be <= 1e8");
    NEED(o->threads >= 1 && o->threads <= 64, "threads must be 1..64");
    NEED((unsigned)o->scenario < RK_SIM_SCENARIO_COUNT, "unknown scenario");
    NEED(o->new_items <= 1000000, "new items must be <= 1000000");
    NEED(isfinite(o->shift_deg) && isfinite(o->wave_boost) &&
         isfinite(o->bug_scale) && isfinite(o->season_amplitude) &&
         isfinite(o->speed) && o->speed >= 0,
         "scenario parameters must be finite (speed >= 0)");
    NEED(o->season_amplitude >= 0 && o->season_amplitude <= 1,
         "season amplitude must be in [0, 1]");
    NEED((unsigned)o->shift < SIM_SHIFTS, "unknown taste shift");
    NEED(o->bug == RK_SIM_BUG_SCALE || o->bug == RK_SIM_BUG_MISSING,
         "unknown pipeline bug");
    NEED(o->url && strncmp(o->url, "http", 4) == 0, "url must be http://...");
    NEED(o->timeout_ms >= 1, "timeout must be positive");
#undef NEED
    return 0;
}

/* ---- building the world --------------------------------------------------- */

static void normalize(float *v, uint32_t d)
{
    double s = 0;
    for (uint32_t k = 0; k < d; k++) s += (double)v[k] * v[k];
    s = s > 0 ? 1.0 / sqrt(s) : 0;
    for (uint32_t k = 0; k < d; k++) v[k] = (float)(v[k] * s);
}

int rk__sim_world_build(sim_world *w, const rk_sim_opts *o, rk_err *err)
{
    memset(w, 0, sizeof *w);
    int rc = check_opts(o, err);
    if (rc) return rc;
    w->o = *o;
    if (w->o.start_ms == 0) w->o.start_ms = (int64_t)time(NULL) / 60 * 60000;
    const uint32_t d = o->dim, ncat = o->categories;
    w->nitems = o->items + (o->scenario == RK_SIM_NEW_ITEMS ? o->new_items : 0);
    w->item_vec = rk_malloc(sizeof(float) * (size_t)w->nitems * d);
    w->items = rk_calloc(w->nitems, sizeof *w->items);
    w->taste = rk_malloc(sizeof(float) * (size_t)o->users * d);
    const int moved = o->scenario == RK_SIM_TASTE_SHIFT &&
                      o->shift == RK_SIM_SHIFT_CATEGORIES;
    if (moved) w->moved = rk_malloc(sizeof(float) * (size_t)o->users * d);
    w->device = rk_malloc(o->users);
    w->age = rk_malloc(o->users);
    w->country = rk_malloc(o->users);
    w->bandwidth = rk_malloc(sizeof(float) * o->users);
    w->pop_cdf = rk_malloc(sizeof(double) * o->items);
    float *centers = rk_malloc(sizeof(float) * ncat * d);
    uint32_t *perm = rk_malloc(sizeof(uint32_t) * w->nitems);
    if (!w->item_vec || !w->items || !w->taste || (moved && !w->moved) ||
        !w->device || !w->age || !w->country || !w->bandwidth || !w->pop_cdf ||
        !centers || !perm) {
        rk_free(centers);
        rk_free(perm);
        rk__sim_world_free(w);
        return rk_err_set(err, RK_ENOMEM, "simulator world: out of memory");
    }
    sim_rng r;
    rk__sim_rng_seed(&r, o->seed, 1, 0);
    /* Category centres; an item is its centre plus as much noise, so the
     * category carries about half of what a user likes about an item. */
    for (uint32_t c = 0; c < ncat; c++) {
        for (uint32_t k = 0; k < d; k++)
            centers[c * d + k] = (float)rk__sim_rng_normal(&r);
        normalize(centers + c * d, d);
    }
    /* Popularity: a Zipf law (exponent 1.1) over a shuffled order of the
     * catalog, so ids carry no rank; normalised to 1 for the top item. */
    for (uint32_t i = 0; i < w->nitems; i++) perm[i] = i;
    for (uint32_t i = o->items - 1; i > 0; i--) {
        uint32_t j = rk__sim_rng_below(&r, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (uint32_t k = 0; k < o->items; k++)
        w->items[perm[k]].popularity = 1.0 / pow(k + 1, 1.1);
    double acc = 0;
    for (uint32_t i = 0; i < o->items; i++) {
        acc += w->items[i].popularity;
        w->pop_cdf[i] = acc;
    }
    const int64_t hist0 = w->o.start_ms - (int64_t)o->history_hours * 3600000;
    for (uint32_t i = 0; i < w->nitems; i++) {
        rk_sim_item *it = &w->items[i];
        it->category = rk__sim_rng_below(&r, ncat);
        it->duration = 30 + floor(-log(1 - rk__sim_rng_unit(&r)) * 400);
        float *v = w->item_vec + (size_t)i * d;
        for (uint32_t k = 0; k < d; k++)
            v[k] = centers[it->category * d + k] +
                   (float)(0.8 * rk__sim_rng_normal(&r) / sqrt((double)d));
        normalize(v, d);
        if (i < o->items) {
            /* Published up to 90 days before the history starts. */
            it->published_ms = hist0 - (int64_t)rk__sim_rng_below(&r, 90) * 86400000;
        } else {
            /* Wave items: published during the event hour, popular like
             * the catalog's top tenth. */
            it->wave = 1;
            it->popularity = 1.0 / pow(1 + rk__sim_rng_below(&r, o->items / 10 + 1), 1.1);
            it->published_ms = rk__sim_hour_ms(w, o->event_hour) +
                               (int64_t)rk__sim_rng_below(&r, 600) * 1000;
        }
    }
    for (uint32_t u = 0; u < o->users; u++) {
        /* A taste leans to one or two categories plus personal noise. */
        float *t = w->taste + (size_t)u * d;
        uint32_t c1 = rk__sim_rng_below(&r, ncat), c2 = rk__sim_rng_below(&r, ncat);
        double a2 = rk__sim_rng_unit(&r) * 0.8;
        /* The moved taste (taste_shift by categories): the same weights
         * and personal noise on the categories half the circle on. */
        uint32_t m1 = (c1 + ncat / 2) % ncat, m2 = (c2 + ncat / 2) % ncat;
        float *mt = moved ? w->moved + (size_t)u * d : NULL;
        for (uint32_t k = 0; k < d; k++) {
            float noise = (float)(0.5 * rk__sim_rng_normal(&r) / sqrt((double)d));
            t[k] = centers[c1 * d + k] + (float)(a2 * centers[c2 * d + k]) + noise;
            if (mt)
                mt[k] = centers[m1 * d + k] + (float)(a2 * centers[m2 * d + k]) + noise;
        }
        normalize(t, d);
        if (mt) normalize(mt, d);
        double du = rk__sim_rng_unit(&r);
        w->device[u] = du < 0.6 ? 0 : du < 0.9 ? 1 : 2;
        w->bandwidth[u] = (float)(8.0 * exp(0.8 * rk__sim_rng_normal(&r)));
        w->age[u] = (uint8_t)(13 + rk__sim_rng_below(&r, 58));
        w->country[u] = (uint8_t)rk__sim_rng_below(&r, SIM_COUNTRIES);
    }
    rk_free(centers);
    rk_free(perm);
    return 0;
}

void rk__sim_world_free(sim_world *w)
{
    if (!w) return;
    rk_free(w->item_vec);
    rk_free(w->items);
    rk_free(w->taste);
    rk_free(w->moved);
    rk_free(w->device);
    rk_free(w->age);
    rk_free(w->country);
    rk_free(w->bandwidth);
    rk_free(w->pop_cdf);
    memset(w, 0, sizeof *w);
}

int64_t rk__sim_hour_ms(const sim_world *w, uint32_t hour)
{
    return w->o.start_ms + (int64_t)hour * 3600000;
}

int rk__sim_item_live(const sim_world *w, uint32_t item, uint32_t hour)
{
    return item < w->nitems && (!w->items[item].wave || hour >= w->o.event_hour);
}

uint32_t rk__sim_pick_popular(const sim_world *w, sim_rng *r)
{
    uint32_t n = w->o.items;
    double u = rk__sim_rng_unit(r) * w->pop_cdf[n - 1];
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (w->pop_cdf[mid] < u) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* ---- tastes under the scenarios ------------------------------------------ */

static int hour_of_day(const sim_world *w, uint32_t hour)
{
    int64_t t = rk__sim_hour_ms(w, hour) / 3600000;
    int h = (int)(t % 24);
    return h < 0 ? h + 24 : h;
}

/* The taste at an hour. Under taste_shift, from the event hour on, by
 * categories: cos(a)·taste + sin(a)·moved, normalised (a = shift_deg; at
 * 90 the moved taste, whose favourite categories are half the circle on);
 * latent: every pair of coordinates (0,1), (2,3), ... is rotated by a — a
 * rotation of the whole taste space, so every user moves by the same
 * angle and nobody's old favourites stay favourites, but the new tastes
 * lean to no category. */
void rk__sim_taste(const sim_world *w, uint32_t u, uint32_t hour, double *out)
{
    const uint32_t d = w->o.dim;
    const float *t = w->taste + (size_t)u * d;
    for (uint32_t k = 0; k < d; k++) out[k] = t[k];
    if (w->o.scenario != RK_SIM_TASTE_SHIFT || hour < w->o.event_hour) return;
    double a = w->o.shift_deg * SIM_PI / 180, c = cos(a), s = sin(a);
    if (w->moved) {
        const float *m = w->moved + (size_t)u * d;
        double n = 0;
        for (uint32_t k = 0; k < d; k++) {
            out[k] = c * t[k] + s * m[k];
            n += out[k] * out[k];
        }
        n = n > 0 ? 1 / sqrt(n) : 0;
        for (uint32_t k = 0; k < d; k++) out[k] *= n;
        return;
    }
    for (uint32_t k = 0; k + 1 < d; k += 2) {
        double x = out[k], y = out[k + 1];
        out[k] = c * x - s * y;
        out[k + 1] = s * x + c * y;
    }
}

/* Seasonal taste: each category peaks at its own hour of the day
 * (category c at c·24/categories), ± season_amplitude logits. */
static double season_term(const sim_world *w, uint32_t item, uint32_t hour)
{
    if (w->o.scenario != RK_SIM_SEASONALITY) return 0;
    double peak = w->items[item].category * 24.0 / w->o.categories;
    return w->o.season_amplitude *
           cos(2 * SIM_PI * (hour_of_day(w, hour) - peak) / 24);
}

/* Affinity of an item for a taste (from rk__sim_taste) at an hour. */
static double affinity_of(const sim_world *w, const double *taste, uint32_t i,
                          uint32_t hour)
{
    const float *v = w->item_vec + (size_t)i * w->o.dim;
    double dot = 0;
    for (uint32_t k = 0; k < w->o.dim; k++) dot += taste[k] * v[k];
    return SIM_AFF_SCALE * dot + season_term(w, i, hour);
}

double rk__sim_affinity(const sim_world *w, uint32_t u, uint32_t i,
                        uint32_t hour)
{
    double t[256];
    rk__sim_taste(w, u, hour, t);
    return affinity_of(w, t, i, hour);
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

/* Click probability at the top position for a taste. */
static double top_click_prob(const sim_world *w, const double *taste,
                             uint32_t i, uint32_t hour, double bw)
{
    const rk_sim_item *it = &w->items[i];
    /* log-popularity as a z-score: the top item ~ +2, the tail ~ -1.5. */
    double pop = (log(it->popularity) + 0.5 * log((double)w->o.items)) /
                 (0.5 * log((double)w->o.items) + 1);
    double logit = SIM_CLICK_BIAS + affinity_of(w, taste, i, hour) +
                   SIM_POP_WEIGHT * pop +
                   SIM_BW_WEIGHT * log2((bw > 0.1 ? bw : 0.1) / 8.0);
    if (it->wave) logit += w->o.wave_boost;
    return sigmoid(logit);
}

double rk__sim_click_prob(const sim_world *w, uint32_t u, uint32_t i,
                          uint32_t pos, uint32_t hour, double bw)
{
    double t[256];
    rk__sim_taste(w, u, hour, t);
    return rk_sim_position_bias(pos) * top_click_prob(w, t, i, hour, bw);
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The heap below keeps the k largest values: a min-heap on top[0]. */
static void sift_down(double *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (l + 1 < n && h[l + 1] < h[m]) m = l + 1;
        if (m == i) return;
        double t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

double rk__sim_best_clicks(const sim_world *w, uint32_t u, uint32_t hour,
                           double bw, uint32_t slates, uint32_t n, double *top,
                           uint32_t *shown)
{
    double t[256];
    rk__sim_taste(w, u, hour, t);
    const uint32_t k = slates * n;
    uint32_t have = 0;
    for (uint32_t i = 0; i < w->nitems; i++) {
        if (!rk__sim_item_live(w, i, hour)) continue;
        double p = top_click_prob(w, t, i, hour, bw);
        if (have < k) {
            top[have++] = p;
            if (have == k)
                for (uint32_t j = k / 2 + 1; j-- > 0;) sift_down(top, k, j);
        } else if (p > top[0]) {
            top[0] = p;
            sift_down(top, k, 0);
        }
    }
    /* The best arrangement pairs the largest probabilities with the
     * largest position weights: the first `slates` items go to the top
     * position of each slate, the next ones to the second, ... */
    qsort(top, have, sizeof *top, cmp_desc);
    double clicks = 0;
    for (uint32_t j = 0; j < have; j++)
        clicks += rk_sim_position_bias(j / slates) * top[j];
    *shown = have;
    return clicks;
}

uint32_t rk__sim_sessions(const sim_world *w, uint32_t hour)
{
    double m = 1;
    if (w->o.scenario == RK_SIM_SEASONALITY)
        m = 1 + w->o.season_amplitude *
                    sin(2 * SIM_PI * (hour_of_day(w, hour) - 14) / 24 + SIM_PI / 2);
    double n = w->o.sessions_per_hour * m;
    return n < 1 ? 1 : (uint32_t)lround(n);
}

double rk__sim_sent_bw(const sim_world *w, uint32_t hour, double bw)
{
    if (w->o.scenario != RK_SIM_PIPELINE_BUG || hour < w->o.event_hour) return bw;
    return w->o.bug == RK_SIM_BUG_MISSING ? NAN : bw * w->o.bug_scale;
}

/* ---- public accessors ------------------------------------------------------ */

double rk_sim_position_bias(uint32_t pos) { return 1.0 / log2(pos + 2.0); }

double rk_sim_watch_fraction(double affinity)
{
    return sigmoid(1.2 * affinity - 0.3);
}
