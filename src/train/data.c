/*
 * data.c — the feedback events an evaluation works on.
 *
 * A store is scanned once, in one read snapshot; each event that counts as
 * feedback (the same rules as rk_interactions_from_store, with the valued
 * threshold of the evaluation) is kept raw — user, item, time, weight and
 * request — so that every protocol can cut the log its own way without
 * reading the store again. Request ids are strings in the store; here they
 * become dense numbers in order of first appearance.
 */
#include <math.h>
#include <string.h>

#include "train_int.h"

void rk_eval_data_opts_default(rk_eval_data_opts *o)
{
    o->valued_min = 4;
    o->value_as_weight = 0;
    o->negatives_remove = 1;
}

void rk_eval_data_free(rk_eval_data *d)
{
    if (!d) return;
    rk_free(d->user);
    rk_free(d->item);
    rk_free(d->ts);
    rk_free(d->weight);
    rk_free(d->request);
    rk_interactions_free(d->all);
    rk_free(d);
}

uint32_t rk_eval_data_nusers(const rk_eval_data *d) { return d->nusers; }
uint32_t rk_eval_data_nitems(const rk_eval_data *d) { return d->nitems; }
uint64_t rk_eval_data_nevents(const rk_eval_data *d) { return d->n; }
const rk_interactions *rk_eval_data_matrix(const rk_eval_data *d)
{
    return d->all;
}

/* Allocates the arrays for n events (+1 keeps zero-size allocations
 * distinct from failures). */
static rk_eval_data *data_alloc(uint32_t nusers, uint32_t nitems, size_t n)
{
    rk_eval_data *d = rk_calloc(1, sizeof *d);
    if (!d) return NULL;
    d->nusers = nusers;
    d->nitems = nitems;
    d->n = n;
    d->user = rk_malloc(sizeof(uint32_t) * (n + 1));
    d->item = rk_malloc(sizeof(uint32_t) * (n + 1));
    d->ts = rk_malloc(sizeof(int64_t) * (n + 1));
    d->weight = rk_malloc(sizeof(float) * (n + 1));
    d->request = rk_malloc(sizeof(uint32_t) * (n + 1));
    if (!d->user || !d->item || !d->ts || !d->weight || !d->request) {
        rk_eval_data_free(d);
        return NULL;
    }
    return d;
}

/* The collapsed matrix of every event, which the held-out and
 * leave-one-out protocols split and the report summarises. */
static int data_finish(rk_eval_data *d, rk_err *err)
{
    return rk_interactions_from_triplets(&d->all, d->nusers, d->nitems,
                                         d->user, d->item, d->weight, d->ts,
                                         d->n, err);
}

int rk_eval_data_from_events(rk_eval_data **out, uint32_t nusers,
                             uint32_t nitems, const rk_eval_event *ev,
                             size_t n, rk_err *err)
{
    uint32_t nreq = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].user >= nusers || ev[i].item >= nitems ||
            !isfinite(ev[i].weight))
            return rk_err_set(err, RK_EINVAL,
                              "event %zu: user %u / item %u out of range "
                              "(%u users, %u items) or weight not finite",
                              i, ev[i].user, ev[i].item, nusers, nitems);
        if (ev[i].request != RK_EVAL_NO_REQUEST && ev[i].request >= nreq)
            nreq = ev[i].request + 1;
    }
    rk_eval_data *d = data_alloc(nusers, nitems, n);
    if (!d) return rk_err_set(err, RK_ENOMEM, "eval: out of memory");
    for (size_t i = 0; i < n; i++) {
        d->user[i] = ev[i].user;
        d->item[i] = ev[i].item;
        d->ts[i] = ev[i].ts;
        d->weight[i] = ev[i].weight;
        d->request[i] = ev[i].request;
    }
    d->nrequests = nreq;
    int rc = data_finish(d, err);
    if (rc) {
        rk_eval_data_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- from a store ------------------------------------------------------ */

typedef struct scan {
    const rk_eval_data_opts *o;
    const rk_schema *schema;
    RK_VEC(rk_eval_event) ev;
    rk_map *requests;
    uint32_t nrequests;
    int rc;
} scan;

static int scan_event(void *arg, const rk_event *e)
{
    scan *c = arg;
    const rk_event_type_def *t = rk_schema_event_type(c->schema, e->type);
    if (!t) return 0;
    double w;
    switch (t->role) {
    case RK_ROLE_POSITIVE:
        w = t->weight;
        break;
    case RK_ROLE_VALUED:
        if (e->has_value && e->value < c->o->valued_min) return 0;
        w = t->weight;
        if (c->o->value_as_weight && e->has_value) w *= e->value;
        break;
    case RK_ROLE_NEGATIVE:
        if (!c->o->negatives_remove) return 0;
        w = -1;
        break;
    default:
        return 0; /* an exposure says nothing about taste */
    }
    if (w == 0 || !isfinite(w)) return 0;
    rk_eval_event x = {e->user, e->item, e->ts_ms, (float)w,
                       RK_EVAL_NO_REQUEST};
    if (e->request_id) {
        uint64_t v;
        int rc = rk_map_get(c->requests, e->request_id, e->request_id_len, &v);
        if (rc == RK_ENOTFOUND) {
            v = c->nrequests;
            if ((rc = rk_map_put(c->requests, e->request_id,
                                 e->request_id_len, v))) {
                c->rc = rc;
                return 1;
            }
            c->nrequests++;
        }
        x.request = (uint32_t)v;
    }
    if (rk_vec_push(&c->ev, x)) {
        c->rc = RK_ENOMEM;
        return 1;
    }
    return 0;
}

int rk_eval_data_from_store(rk_eval_data **out, rk_store *s,
                            const rk_eval_data_opts *o, rk_err *err)
{
    rk_eval_data_opts dflt;
    if (!o) {
        rk_eval_data_opts_default(&dflt);
        o = &dflt;
    }
    rk_reader *r;
    int rc = rk_store_reader(s, &r, err);
    if (rc) return rc;
    scan c = {.o = o, .schema = rk_store_schema(s)};
    rk_store_stats st;
    if ((rc = rk_map_create(&c.requests, 0)))
        rc = rk_err_set(err, rc, "eval: out of memory");
    else if ((rc = rk_reader_stats(r, &st)) ||
             (rc = rk_reader_scan_events(r, 0, scan_event, &c)))
        rc = c.rc ? rk_err_set(err, c.rc, "eval: out of memory")
                  : rk_err_set(err, rc, "%s", rk_reader_errmsg(r));
    rk_reader_close(r);
    rk_map_destroy(c.requests);
    if (rc == 0) {
        /* The store's id counts, so every dense id of an event fits. */
        rc = rk_eval_data_from_events(out, (uint32_t)st.ids[RK_ENTITY_USER],
                                      (uint32_t)st.ids[RK_ENTITY_ITEM],
                                      c.ev.v, c.ev.n, err);
        if (rc == 0) {
            (*out)->from_store = 1;
            (*out)->opts = *o;
        }
    }
    rk_vec_free(&c.ev);
    return rc;
}
