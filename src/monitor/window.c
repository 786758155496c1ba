/*
 * window.c — the live window the monitor compares with a reference: per
 * feature a ring of the last `capacity` observations.
 *
 * Memory is allocated once, at creation, and never grows: a numeric ring
 * holds floats (NaN marks a missing observation), a categorical ring
 * uint64 values plus one byte per slot for "missing". Each ring keeps its
 * fill, next slot and the number of missing observations it holds, so a
 * read costs one pass over the ring and a write O(1). One mutex guards
 * the window: writers are request threads, the reader is the monitor.
 * Rows may carry group keys (the request's user, the item), kept beside
 * the rings so a sample comes with the groups its design effect needs.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"

typedef struct ring {
    float *num;         /* numeric: capacity slots, NaN = missing */
    uint64_t *cat;      /* categorical: capacity slots */
    uint8_t *cat_miss;  /* categorical: 1 = missing */
    uint32_t next, fill;
    uint32_t missing;   /* missing observations among the fill */
    uint64_t seen;
} ring;

struct rk_drift_window {
    pthread_mutex_t mu;
    uint32_t nfeatures, capacity;
    size_t bytes;
    ring *rings;
    /* Timed windows: the time of each row, in the rings' slot order (rows
     * move every ring in step). NULL for an untimed window. */
    int64_t *ts;
    /* Windows with groupings: per row its keys, grp[g * capacity + slot]. */
    uint32_t *grp;
    uint32_t groupings;
};

void rk_drift_window_destroy(rk_drift_window *w)
{
    if (!w) return;
    for (uint32_t f = 0; f < w->nfeatures; f++) {
        rk_free(w->rings[f].num);
        rk_free(w->rings[f].cat);
        rk_free(w->rings[f].cat_miss);
    }
    rk_free(w->rings);
    rk_free(w->ts);
    rk_free(w->grp);
    pthread_mutex_destroy(&w->mu);
    rk_free(w);
}

int rk_drift_window_create(rk_drift_window **out,
                           const rk_drift_window_opts *o, rk_err *err)
{
    *out = NULL;
    if (o->nfeatures < 1 || o->nfeatures > RK_DRIFT_WINDOW_MAX_FEATURES)
        return rk_err_set(err, RK_EINVAL, "window: %u features, want 1 to %u",
                          o->nfeatures, RK_DRIFT_WINDOW_MAX_FEATURES);
    if (o->capacity < 1 || o->capacity > RK_DRIFT_WINDOW_MAX_CAPACITY)
        return rk_err_set(err, RK_EINVAL, "window: capacity %u, want 1 to %u",
                          o->capacity, RK_DRIFT_WINDOW_MAX_CAPACITY);
    /* The size is known before anything is allocated, so a limit is
     * checked up front. At most 2^16 features x 2^24 slots x 9 bytes:
     * no overflow in 64 bits. */
    size_t bytes = sizeof(rk_drift_window) + o->nfeatures * sizeof(ring);
    for (uint32_t f = 0; f < o->nfeatures; f++)
        bytes += (size_t)o->capacity *
                 (o->categorical && o->categorical[f] ? 9 : 4);
    if (o->groupings > RK_DRIFT_MAX_GROUPINGS)
        return rk_err_set(err, RK_EINVAL, "window: %u groupings, at most %d",
                          o->groupings, RK_DRIFT_MAX_GROUPINGS);
    for (uint32_t f = 0; o->groupings && o->categorical && f < o->nfeatures; f++)
        if (o->categorical[f])
            return rk_err_set(err, RK_EINVAL, "window: groupings need numeric "
                              "rows (feature %u is categorical)", f);
    if (o->timed) bytes += (size_t)o->capacity * sizeof(int64_t);
    bytes += (size_t)o->capacity * o->groupings * sizeof(uint32_t);
    if (o->max_bytes && bytes > o->max_bytes)
        return rk_err_set(err, RK_ELIMIT, "window: %u features x %u values "
                          "take %zu bytes, limit %zu", o->nfeatures,
                          o->capacity, bytes, o->max_bytes);
    rk_drift_window *w = rk_calloc(1, sizeof *w);
    if (!w) return rk_err_set(err, RK_ENOMEM, "window: out of memory");
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        rk_free(w);
        return rk_err_set(err, RK_EINTERNAL, "window: cannot create a mutex");
    }
    w->capacity = o->capacity;
    w->bytes = bytes;
    if (!(w->rings = rk_calloc(o->nfeatures, sizeof *w->rings))) {
        pthread_mutex_destroy(&w->mu);
        rk_free(w);
        return rk_err_set(err, RK_ENOMEM, "window: out of memory");
    }
    /* nfeatures counts the rings destroy must look at. */
    w->nfeatures = o->nfeatures;
    for (uint32_t f = 0; f < o->nfeatures; f++) {
        ring *r = &w->rings[f];
        if (o->categorical && o->categorical[f]) {
            r->cat = rk_malloc((size_t)o->capacity * sizeof *r->cat);
            r->cat_miss = rk_malloc(o->capacity);
            if (!r->cat || !r->cat_miss) goto nomem;
        } else if (!(r->num = rk_malloc((size_t)o->capacity * sizeof *r->num))) {
            goto nomem;
        }
    }
    if (o->timed && !(w->ts = rk_malloc((size_t)o->capacity * sizeof *w->ts)))
        goto nomem;
    if (o->groupings &&
        !(w->grp = rk_malloc((size_t)o->capacity * o->groupings * sizeof *w->grp)))
        goto nomem;
    w->groupings = o->groupings;
    *out = w;
    return 0;
nomem:
    rk_drift_window_destroy(w);
    return rk_err_set(err, RK_ENOMEM, "window: out of memory for %zu bytes",
                      bytes);
}

/* Advances ring r by one slot; the slot's old observation (when the ring
 * is full) leaves the missing count. Returns the slot. Locked. */
static uint32_t ring_slot(ring *r, uint32_t cap, int old_missing)
{
    uint32_t s = r->next;
    if (r->fill == cap) r->missing -= old_missing;
    else r->fill++;
    r->next = s + 1 == cap ? 0 : s + 1;
    r->seen++;
    return s;
}

static void add_num(rk_drift_window *w, ring *r, float x)
{
    uint32_t s = r->next;
    int old = r->fill == w->capacity && isnan(r->num[s]);
    ring_slot(r, w->capacity, old);
    /* Infinities are missing too: stored as NaN. */
    if (isfinite(x)) {
        r->num[s] = x;
    } else {
        r->num[s] = NAN;
        r->missing++;
    }
}

int rk_drift_window_add(rk_drift_window *w, uint32_t f, float x)
{
    if (f >= w->nfeatures || w->ts || w->grp) return RK_EINVAL;
    ring *r = &w->rings[f];
    if (!r->num) return RK_ETYPE;
    pthread_mutex_lock(&w->mu);
    add_num(w, r, x);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int rk_drift_window_add_cat(rk_drift_window *w, uint32_t f, uint64_t v,
                            int missing)
{
    if (f >= w->nfeatures || w->ts || w->grp) return RK_EINVAL;
    ring *r = &w->rings[f];
    if (!r->cat) return RK_ETYPE;
    pthread_mutex_lock(&w->mu);
    uint32_t s = r->next;
    int old = r->fill == w->capacity && r->cat_miss[s];
    ring_slot(r, w->capacity, old);
    r->cat[s] = missing ? 0 : v;
    r->cat_miss[s] = missing != 0;
    r->missing += missing != 0;
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static int add_row(rk_drift_window *w, const float *x, int64_t ts_ms,
                   const uint32_t *group)
{
    for (uint32_t f = 0; f < w->nfeatures; f++)
        if (!w->rings[f].num) return RK_ETYPE;
    pthread_mutex_lock(&w->mu);
    uint32_t s = w->rings[0].next;
    if (w->ts) w->ts[s] = ts_ms;
    for (uint32_t g = 0; g < w->groupings; g++)
        w->grp[(size_t)g * w->capacity + s] = group[g];
    for (uint32_t f = 0; f < w->nfeatures; f++) add_num(w, &w->rings[f], x[f]);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int rk_drift_window_add_row_grouped(rk_drift_window *w, const float *x,
                                    int64_t ts_ms, const uint32_t *group)
{
    if (w->groupings && !group) return RK_EINVAL;
    return add_row(w, x, ts_ms, group);
}

int rk_drift_window_add_row_at(rk_drift_window *w, const float *x, int64_t ts_ms)
{
    if (w->grp) return RK_EINVAL;
    return add_row(w, x, ts_ms, NULL);
}

int rk_drift_window_add_row(rk_drift_window *w, const float *x)
{
    if (w->ts) return RK_EINVAL;
    return rk_drift_window_add_row_at(w, x, 0);
}

/* Slot of the oldest observation. */
static uint32_t oldest(const ring *r, uint32_t cap)
{
    return r->fill == cap ? r->next : 0;
}

/* The checks both samplers share: 0 with the window locked and *out the
 * feature's ring when f exists, has the kind asked for and its present
 * values fit in cap. */
static int sample_begin(rk_drift_window *w, uint32_t f, int cat, size_t cap,
                        ring **out)
{
    if (f >= w->nfeatures) return RK_EINVAL;
    ring *r = &w->rings[f];
    if (cat ? !r->cat : !r->num) return RK_ETYPE;
    pthread_mutex_lock(&w->mu);
    if ((size_t)(r->fill - r->missing) > cap) {
        pthread_mutex_unlock(&w->mu);
        return RK_ELIMIT;
    }
    *out = r;
    return 0;
}

/* Copies the present values of feature f from rows at or after since_ms
 * (every row of an untimed window), oldest first; counts the missing ones
 * among them. */
static int sample_since(rk_drift_window *w, uint32_t f, int cat, int64_t since_ms,
                        void *out, size_t cap, size_t *n, uint64_t *missing)
{
    *n = 0;
    if (missing) *missing = 0;
    ring *r;
    int rc = sample_begin(w, f, cat, cap, &r);
    if (rc) return rc;
    uint32_t s = oldest(r, w->capacity);
    size_t m = 0;
    uint64_t miss = 0;
    for (uint32_t i = 0; i < r->fill; i++) {
        if (!w->ts || w->ts[s] >= since_ms) {
            if (cat ? r->cat_miss[s] : isnan(r->num[s])) miss++;
            else if (cat) ((uint64_t *)out)[m++] = r->cat[s];
            else ((float *)out)[m++] = r->num[s];
        }
        s = s + 1 == w->capacity ? 0 : s + 1;
    }
    if (missing) *missing = miss;
    pthread_mutex_unlock(&w->mu);
    *n = m;
    return 0;
}

int rk_drift_window_sample(rk_drift_window *w, uint32_t f, float *out,
                           size_t cap, size_t *n, uint64_t *missing)
{
    return sample_since(w, f, 0, INT64_MIN, out, cap, n, missing);
}

int rk_drift_window_sample_cat(rk_drift_window *w, uint32_t f, uint64_t *out,
                               size_t cap, size_t *n, uint64_t *missing)
{
    return sample_since(w, f, 1, INT64_MIN, out, cap, n, missing);
}

int rk_drift_window_sample_since(rk_drift_window *w, uint32_t f, int64_t since_ms,
                                 float *out, size_t cap, size_t *n,
                                 uint64_t *missing)
{
    return sample_since(w, f, 0, since_ms, out, cap, n, missing);
}

int rk_drift_window_rows(rk_drift_window *w, int64_t since_ms, float *out,
                         uint32_t *gout, size_t cap, size_t *n)
{
    *n = 0;
    const ring *r0 = &w->rings[0];
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    for (uint32_t f = 0; !rc && f < w->nfeatures; f++) {
        const ring *r = &w->rings[f];
        if (!r->num) rc = RK_ETYPE;
        else if (r->fill != r0->fill || r->next != r0->next) rc = RK_EINVAL;
    }
    if (!rc && r0->fill > cap) rc = RK_ELIMIT;
    if (rc) {
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    uint32_t s = oldest(r0, w->capacity);
    size_t m = 0;
    for (uint32_t i = 0; i < r0->fill; i++) {
        if (!w->ts || w->ts[s] >= since_ms) {
            for (uint32_t f = 0; f < w->nfeatures; f++)
                out[(size_t)f * cap + m] = w->rings[f].num[s];
            for (uint32_t g = 0; gout && g < w->groupings; g++)
                gout[(size_t)g * cap + m] = w->grp[(size_t)g * w->capacity + s];
            m++;
        }
        s = s + 1 == w->capacity ? 0 : s + 1;
    }
    pthread_mutex_unlock(&w->mu);
    *n = m;
    return 0;
}

uint32_t rk_drift_window_groupings(const rk_drift_window *w)
{
    return w->groupings;
}

uint64_t rk_drift_window_seen(rk_drift_window *w, uint32_t f)
{
    if (f >= w->nfeatures) return 0;
    pthread_mutex_lock(&w->mu);
    uint64_t s = w->rings[f].seen;
    pthread_mutex_unlock(&w->mu);
    return s;
}

size_t rk_drift_window_bytes(const rk_drift_window *w)
{
    return w->bytes;
}

uint32_t rk_drift_window_capacity(const rk_drift_window *w)
{
    return w->capacity;
}

void rk_drift_window_clear(rk_drift_window *w)
{
    pthread_mutex_lock(&w->mu);
    for (uint32_t f = 0; f < w->nfeatures; f++) {
        ring *r = &w->rings[f];
        r->next = r->fill = r->missing = 0;
        r->seen = 0;
    }
    pthread_mutex_unlock(&w->mu);
}
