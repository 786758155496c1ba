/*
 * popular.c — non-personalized generators: popular (all-time weighted
 * counts), trending (exponentially decayed counts) and fresh (newest items).
 *
 * Trending is summed in one pass without knowing `now` in advance and
 * without overflow: each item keeps its decayed sum as of its own latest
 * event time (ref); a newer event first decays the sum to its time, an
 * older one is decayed to ref. At the end every sum is decayed from its ref
 * to now. Each step multiplies by 2^(-dt/half_life) with dt >= 0, so
 * nothing ever grows beyond the plain count.
 *
 * These lists depend on `now` and cost one scan of the event log (or the
 * item records) to build, so they are not saved: `rankd train` and
 * `rankd serve` rebuild them. Invariants: lists are sorted best first,
 * hold at most top_n items, and only items with a score > 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "retrieval/gen_int.h"

#define HOUR_MS 3600000.0

/* ---- trending and popular ------------------------------------------------ */

struct rk_popular {
    uint32_t nitems;
    int64_t now;
    double half_life;
    double *score[2];       /* per item, by rk_popular_kind */
    rk_candidate *list[2];
    size_t nlist[2];
};

void rk_popular_opts_default(rk_popular_opts *o)
{
    o->now_ms = 0;
    o->half_life_ms = 24 * HOUR_MS;
    o->top_n = 1000;
}

int rk_popular_opts_from_conf(rk_popular_opts *o, const rk_conf_node *node,
                              rk_err *err)
{
    static const char *const keys[] = {"half_life_hours", "top_n", NULL};
    int rc;
    double h;
    int64_t v;
    if ((rc = rk_conf_check_keys(node, keys, err))) return rc;
    if ((rc = rk_conf_as_float(rk_conf_get(node, "half_life_hours"),
                               o->half_life_ms / HOUR_MS, &h, err)))
        return rc;
    if (!(h > 0) || !isfinite(h))
        return rk_conf_error(err, rk_conf_get(node, "half_life_hours"),
                             "expected a positive number of hours");
    o->half_life_ms = h * HOUR_MS;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "top_n"), o->top_n, 1,
                                   1000000, &v, err)))
        return rc;
    o->top_n = (uint32_t)v;
    return 0;
}

/* Accumulators while scanning: trend[i] is decayed to ref[i]. */
typedef struct pop_acc {
    uint32_t nitems;
    int64_t now;        /* INT64_MAX while unknown (opts.now_ms == 0) */
    int64_t latest;     /* latest counted event */
    double half_life;
    double *pop, *trend;
    int64_t *ref;
} pop_acc;

static int acc_init(pop_acc *a, uint32_t nitems, const rk_popular_opts *o)
{
    a->nitems = nitems;
    a->now = o->now_ms ? o->now_ms : INT64_MAX;
    a->latest = INT64_MIN;
    a->half_life = o->half_life_ms;
    a->pop = rk_calloc((size_t)nitems + 1, sizeof *a->pop);
    a->trend = rk_calloc((size_t)nitems + 1, sizeof *a->trend);
    a->ref = rk_calloc((size_t)nitems + 1, sizeof *a->ref);
    if (!a->pop || !a->trend || !a->ref) return RK_ENOMEM;
    return 0;
}

static void acc_free(pop_acc *a)
{
    rk_free(a->pop);
    rk_free(a->trend);
    rk_free(a->ref);
}

static void acc_add(pop_acc *a, uint32_t item, int64_t ts, double w)
{
    /* Point in time: what happened after `now` is not known at `now`. */
    if (ts > a->now || item >= a->nitems) return;
    if (ts > a->latest) a->latest = ts;
    a->pop[item] += w;
    if (a->trend[item] == 0) {
        a->trend[item] = w;
        a->ref[item] = ts;
    } else if (ts > a->ref[item]) {
        a->trend[item] = a->trend[item] *
                             exp2(-(double)(ts - a->ref[item]) / a->half_life) +
                         w;
        a->ref[item] = ts;
    } else {
        a->trend[item] += w * exp2(-(double)(a->ref[item] - ts) / a->half_life);
    }
}

static int top_list(const double *score, uint32_t nitems, uint32_t top_n,
                    uint8_t src, rk_candidate **list, size_t *n)
{
    size_t k = top_n < nitems ? top_n : nitems;
    *list = rk_malloc((k ? k : 1) * sizeof **list);
    if (!*list) return RK_ENOMEM;
    rk__topk t;
    rk__topk_init(&t, *list, k);
    for (uint32_t i = 0; i < nitems; i++)
        if (score[i] > 0 && (float)score[i] > 0)
            rk__topk_push(&t, i, (float)score[i], src);
    *n = rk__topk_finish(&t);
    return 0;
}

/* Turns the accumulators into the object; frees them in every case. */
static int popular_finish(pop_acc *a, const rk_popular_opts *o,
                          rk_popular **out, rk_err *err)
{
    rk_popular *p = rk_calloc(1, sizeof *p);
    if (!p) goto nomem;
    p->nitems = a->nitems;
    p->half_life = a->half_life;
    p->now = o->now_ms ? o->now_ms : (a->latest == INT64_MIN ? 0 : a->latest);
    for (uint32_t i = 0; i < a->nitems; i++)
        if (a->trend[i] > 0)
            a->trend[i] *= exp2(-(double)(p->now - a->ref[i]) / a->half_life);
    p->score[RK_POPULAR_ALL_TIME] = a->pop;
    p->score[RK_POPULAR_TRENDING] = a->trend;
    a->pop = a->trend = NULL;
    if (top_list(p->score[0], p->nitems, o->top_n, RK_SRC_POPULAR, &p->list[0],
                 &p->nlist[0]) ||
        top_list(p->score[1], p->nitems, o->top_n, RK_SRC_TRENDING, &p->list[1],
                 &p->nlist[1]))
        goto nomem;
    acc_free(a);
    *out = p;
    return 0;
nomem:
    acc_free(a);
    rk_popular_destroy(p);
    return rk_err_set(err, RK_ENOMEM, "popular: out of memory");
}

static int check_popular_opts(const rk_popular_opts *o, rk_err *err)
{
    if (!(o->half_life_ms > 0) || !isfinite(o->half_life_ms) || o->top_n == 0)
        return rk_err_set(err, RK_EINVAL,
                          "popular: half_life_ms and top_n must be positive");
    return 0;
}

int rk_popular_build(rk_popular **out, uint32_t nitems, const uint32_t *items,
                     const int64_t *ts, const float *w, size_t n,
                     const rk_popular_opts *o, rk_err *err)
{
    rk_popular_opts dflt;
    if (!o) {
        rk_popular_opts_default(&dflt);
        o = &dflt;
    }
    int rc = check_popular_opts(o, err);
    if (rc) return rc;
    pop_acc a;
    if (acc_init(&a, nitems, o)) {
        acc_free(&a);
        return rk_err_set(err, RK_ENOMEM, "popular: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        if (items[i] >= nitems || !(wi > 0) || !isfinite(wi)) {
            acc_free(&a);
            return rk_err_set(err, RK_EINVAL,
                              "popular: event %zu: item out of range or "
                              "weight not positive",
                              i);
        }
        acc_add(&a, items[i], ts[i], wi);
    }
    return popular_finish(&a, o, out, err);
}

int rk_popular_build_from_interactions(rk_popular **out,
                                       const rk_interactions *m,
                                       const rk_popular_opts *o, rk_err *err)
{
    rk_popular_opts dflt;
    if (!o) {
        rk_popular_opts_default(&dflt);
        o = &dflt;
    }
    int rc = check_popular_opts(o, err);
    if (rc) return rc;
    pop_acc a;
    if (acc_init(&a, m->nitems, o)) {
        acc_free(&a);
        return rk_err_set(err, RK_ENOMEM, "popular: out of memory");
    }
    for (uint64_t k = 0; k < m->nnz; k++)
        acc_add(&a, m->items[k], m->last_ts[k], m->weight[k]);
    return popular_finish(&a, o, out, err);
}

typedef struct pop_scan {
    const rk_schema *sc;
    const rk_inter_opts *io;
    pop_acc *a;
} pop_scan;

static int pop_scan_event(void *arg, const rk_event *ev)
{
    pop_scan *c = arg;
    float w = rk__gen_event_weight(c->sc, c->io, ev);
    if (w > 0) acc_add(c->a, ev->item, ev->ts_ms, w);
    return 0;
}

int rk_popular_build_from_store(rk_popular **out, rk_store *s,
                                const rk_inter_opts *io,
                                const rk_popular_opts *o, rk_err *err)
{
    rk_popular_opts dflt;
    rk_inter_opts idflt;
    if (!o) {
        rk_popular_opts_default(&dflt);
        o = &dflt;
    }
    if (!io) {
        rk_inter_opts_default(&idflt);
        io = &idflt;
    }
    int rc = check_popular_opts(o, err);
    if (rc) return rc;
    rk_reader *r;
    if ((rc = rk_store_reader(s, &r, err))) return rc;
    rk_store_stats st;
    pop_acc a = {0};
    if ((rc = rk_reader_stats(r, &st))) {
        rc = rk_err_set(err, rc, "popular: %s", rk_reader_errmsg(r));
    } else if (acc_init(&a, (uint32_t)st.ids[RK_ENTITY_ITEM], o)) {
        rc = rk_err_set(err, RK_ENOMEM, "popular: out of memory");
    } else {
        pop_scan c = {rk_store_schema(s), io, &a};
        if ((rc = rk_reader_scan_events(r, 0, pop_scan_event, &c)))
            rc = rk_err_set(err, rc, "popular: %s", rk_reader_errmsg(r));
    }
    rk_reader_close(r);
    if (rc) {
        acc_free(&a);
        return rc;
    }
    return popular_finish(&a, o, out, err);
}

void rk_popular_destroy(rk_popular *p)
{
    if (!p) return;
    for (int k = 0; k < 2; k++) {
        rk_free(p->score[k]);
        rk_free(p->list[k]);
    }
    rk_free(p);
}

const rk_candidate *rk_popular_list(const rk_popular *p, rk_popular_kind kind,
                                    size_t *n)
{
    int k = kind == RK_POPULAR_TRENDING;
    *n = p->nlist[k];
    return p->list[k];
}

double rk_popular_score(const rk_popular *p, rk_popular_kind kind,
                        uint32_t item)
{
    if (item >= p->nitems) return 0;
    return p->score[kind == RK_POPULAR_TRENDING][item];
}

int64_t rk_popular_now(const rk_popular *p) { return p->now; }

/* ---- fresh ---------------------------------------------------------------- */

struct rk_fresh {
    int64_t now;
    rk_candidate *list;
    size_t n;
};

void rk_fresh_opts_default(rk_fresh_opts *o)
{
    o->attr = "published";
    o->first_seen_fallback = 1;
    o->now_ms = 0;
    o->max_age_ms = 0;
    o->half_life_ms = 7 * 24 * HOUR_MS;
    o->top_n = 1000;
}

int rk_fresh_opts_from_conf(rk_fresh_opts *o, const rk_conf_node *node,
                            rk_err *err)
{
    static const char *const keys[] = {"attribute", "first_seen_fallback",
                                       "max_age_hours", "half_life_hours",
                                       "top_n", NULL};
    int rc;
    double h;
    int64_t v;
    if ((rc = rk_conf_check_keys(node, keys, err))) return rc;
    if ((rc = rk_conf_as_str(rk_conf_get(node, "attribute"), o->attr, &o->attr,
                             err)))
        return rc;
    if ((rc = rk_conf_as_bool(rk_conf_get(node, "first_seen_fallback"),
                              o->first_seen_fallback, &o->first_seen_fallback,
                              err)))
        return rc;
    if ((rc = rk_conf_as_float(rk_conf_get(node, "max_age_hours"),
                               (double)o->max_age_ms / HOUR_MS, &h, err)))
        return rc;
    if (!(h >= 0) || h > 24.0 * 365 * 1000)
        return rk_conf_error(err, rk_conf_get(node, "max_age_hours"),
                             "expected hours >= 0 (0 = no limit)");
    o->max_age_ms = (int64_t)(h * HOUR_MS);
    if ((rc = rk_conf_as_float(rk_conf_get(node, "half_life_hours"),
                               o->half_life_ms / HOUR_MS, &h, err)))
        return rc;
    if (!(h > 0) || !isfinite(h))
        return rk_conf_error(err, rk_conf_get(node, "half_life_hours"),
                             "expected a positive number of hours");
    o->half_life_ms = h * HOUR_MS;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "top_n"), o->top_n, 1,
                                   1000000, &v, err)))
        return rc;
    o->top_n = (uint32_t)v;
    return 0;
}

typedef struct dated {
    int64_t ts;
    uint32_t item;
} dated;

/* Newest first, then smaller item. */
static int dated_cmp(const void *a, const void *b)
{
    const dated *x = a, *y = b;
    if (x->ts != y->ts) return x->ts > y->ts ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

int rk_fresh_build(rk_fresh **out, uint32_t nitems, const int64_t *ts,
                   const uint64_t *blocked, const rk_fresh_opts *o,
                   rk_err *err)
{
    rk_fresh_opts dflt;
    if (!o) {
        rk_fresh_opts_default(&dflt);
        o = &dflt;
    }
    if (o->top_n == 0 || o->max_age_ms < 0 || !(o->half_life_ms > 0))
        return rk_err_set(err, RK_EINVAL,
                          "fresh: top_n and half_life_ms must be positive");
    int64_t now = o->now_ms;
    if (!now) {
        now = INT64_MIN;
        for (uint32_t i = 0; i < nitems; i++)
            if (ts[i] != INT64_MIN && !rk__bit_get(blocked, nitems, i) &&
                ts[i] > now)
                now = ts[i];
        if (now == INT64_MIN) now = 0;
    }
    dated *d = rk_malloc(((size_t)nitems + 1) * sizeof *d);
    rk_fresh *f = rk_calloc(1, sizeof *f);
    if (!d || !f) goto nomem;
    size_t n = 0;
    for (uint32_t i = 0; i < nitems; i++) {
        if (ts[i] == INT64_MIN || rk__bit_get(blocked, nitems, i)) continue;
        /* Not yet published (scheduled) items are not fresh, they are
         * invisible; too old ones are not fresh either. */
        if (ts[i] > now) continue;
        if (o->max_age_ms > 0 && now - ts[i] > o->max_age_ms) continue;
        d[n].ts = ts[i];
        d[n].item = i;
        n++;
    }
    qsort(d, n, sizeof *d, dated_cmp);
    if (n > o->top_n) n = o->top_n;
    f->list = rk_malloc((n ? n : 1) * sizeof *f->list);
    if (!f->list) goto nomem;
    for (size_t k = 0; k < n; k++) {
        double age = (double)(now - d[k].ts);
        f->list[k] = (rk_candidate){
            .item = d[k].item,
            .score = (float)exp2(-age / o->half_life_ms),
            .source = RK_SRC_FRESH,
            .sources = 1u << RK_SRC_FRESH};
    }
    f->n = n;
    f->now = now;
    rk_free(d);
    *out = f;
    return 0;
nomem:
    rk_free(d);
    rk_fresh_destroy(f);
    return rk_err_set(err, RK_ENOMEM, "fresh: out of memory");
}

typedef struct fresh_scan {
    uint32_t attr;       /* UINT32_MAX = none */
    uint32_t nitems;
    int64_t *ts;
    uint64_t *blocked;
} fresh_scan;

static int fresh_entity(void *arg, const rk_entity_view *v)
{
    fresh_scan *c = arg;
    if (v->id >= c->nitems) return 0;
    if (v->flags & (RK_ENTITY_HIDDEN | RK_ENTITY_DELETED)) {
        rk__bit_set(c->blocked, v->id);
        return 0;
    }
    for (uint32_t k = 0; k < v->nattrs; k++)
        if (v->attrs[k].attr == c->attr && v->attrs[k].type == RK_ATTR_TIMESTAMP)
            c->ts[v->id] = v->attrs[k].ts_ms;
    return 0;
}

/* First sight of an item: its earliest event of any kind (an impression
 * also proves the item existed). Items with the attribute keep it. */
typedef struct first_scan {
    uint32_t nitems;
    int64_t *first;
} first_scan;

static int fresh_event(void *arg, const rk_event *ev)
{
    first_scan *c = arg;
    if (ev->item < c->nitems && ev->ts_ms < c->first[ev->item])
        c->first[ev->item] = ev->ts_ms;
    return 0;
}

int rk_fresh_build_from_store(rk_fresh **out, rk_store *s,
                              const rk_fresh_opts *o, rk_err *err)
{
    rk_fresh_opts dflt;
    if (!o) {
        rk_fresh_opts_default(&dflt);
        o = &dflt;
    }
    const rk_schema *sc = rk_store_schema(s);
    fresh_scan c = {.attr = UINT32_MAX};
    if (o->attr) {
        uint32_t idx;
        const rk_attr_def *def = NULL;
        if (rk_schema_find_attr(sc, RK_ENTITY_ITEM, o->attr, strlen(o->attr),
                                &idx) == 0)
            def = rk_schema_attr(sc, RK_ENTITY_ITEM, idx);
        /* With the fallback a missing attribute is tolerated (a catalog may
         * not have been loaded yet); a wrongly typed one never is. */
        if (def && def->type != RK_ATTR_TIMESTAMP)
            return rk_err_set(err, RK_ECONFIG,
                              "fresh: item attribute '%s' is %s, not timestamp",
                              o->attr, rk_attr_type_name(def->type));
        if (!def && !o->first_seen_fallback)
            return rk_err_set(err, RK_ECONFIG,
                              "fresh: no item attribute '%s'", o->attr);
        if (def) c.attr = idx;
    }
    rk_reader *r;
    int rc = rk_store_reader(s, &r, err);
    if (rc) return rc;
    rk_store_stats st;
    int64_t *first = NULL;
    if ((rc = rk_reader_stats(r, &st))) {
        rc = rk_err_set(err, rc, "fresh: %s", rk_reader_errmsg(r));
        goto done;
    }
    c.nitems = (uint32_t)st.ids[RK_ENTITY_ITEM];
    c.ts = rk_malloc(((size_t)c.nitems + 1) * sizeof *c.ts);
    c.blocked = rk_calloc((size_t)c.nitems / 64 + 1, sizeof *c.blocked);
    if (!c.ts || !c.blocked) {
        rc = rk_err_set(err, RK_ENOMEM, "fresh: out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < c.nitems; i++) c.ts[i] = INT64_MIN;
    if ((rc = rk_reader_scan_entities(r, RK_ENTITY_ITEM, fresh_entity, &c))) {
        rc = rk_err_set(err, rc, "fresh: %s", rk_reader_errmsg(r));
        goto done;
    }
    if (o->first_seen_fallback) {
        first = rk_malloc(((size_t)c.nitems + 1) * sizeof *first);
        if (!first) {
            rc = rk_err_set(err, RK_ENOMEM, "fresh: out of memory");
            goto done;
        }
        for (uint32_t i = 0; i < c.nitems; i++) first[i] = INT64_MAX;
        first_scan fc = {c.nitems, first};
        if ((rc = rk_reader_scan_events(r, 0, fresh_event, &fc))) {
            rc = rk_err_set(err, rc, "fresh: %s", rk_reader_errmsg(r));
            goto done;
        }
        for (uint32_t i = 0; i < c.nitems; i++)
            if (c.ts[i] == INT64_MIN && first[i] != INT64_MAX) c.ts[i] = first[i];
    }
    rk_reader_close(r);
    r = NULL;
    rc = rk_fresh_build(out, c.nitems, c.ts, c.blocked, o, err);
done:
    rk_reader_close(r);
    rk_free(first);
    rk_free(c.ts);
    rk_free(c.blocked);
    return rc;
}

void rk_fresh_destroy(rk_fresh *f)
{
    if (!f) return;
    rk_free(f->list);
    rk_free(f);
}

const rk_candidate *rk_fresh_list(const rk_fresh *f, size_t *n)
{
    *n = f->n;
    return f->list;
}

int64_t rk_fresh_now(const rk_fresh *f) { return f->now; }
