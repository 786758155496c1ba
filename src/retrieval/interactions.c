/*
 * interactions.c — the users x items matrix of implicit-feedback weights.
 *
 * Built from the event log (or from triplets) in two steps: a stable
 * counting sort by user, then a sort of each user's entries by (item, time),
 * after which duplicates collapse into one entry whose weight is the sum of
 * its positive events since the pair's last negative event (a dislike
 * resets it; a pair with nothing left is dropped). The result is a CSR
 * matrix with items in increasing id order per user.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rk_retrieval.h"

void rk_inter_opts_default(rk_inter_opts *o)
{
    memset(o, 0, sizeof *o);
    o->from_ts = INT64_MIN;
    o->to_ts = INT64_MAX;
    o->valued_min = -INFINITY;
    o->value_as_weight = 0;
    o->negatives_remove = 1;
}

void rk_interactions_free(rk_interactions *m)
{
    if (!m) return;
    rk_free(m->user_ptr);
    rk_free(m->items);
    rk_free(m->weight);
    rk_free(m->first_ts);
    rk_free(m->last_ts);
    rk_free(m);
}

rk_interactions *rk_interactions_alloc(uint32_t nusers, uint32_t nitems,
                                       uint64_t nnz)
{
    rk_interactions *m = rk_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nusers = nusers;
    m->nitems = nitems;
    m->nnz = nnz;
    m->user_ptr = rk_calloc((size_t)nusers + 1, sizeof(uint64_t));
    /* +1 keeps zero-size allocations distinct from failures. */
    m->items = rk_malloc(sizeof(uint32_t) * (nnz + 1));
    m->weight = rk_malloc(sizeof(float) * (nnz + 1));
    m->first_ts = rk_malloc(sizeof(int64_t) * (nnz + 1));
    m->last_ts = rk_malloc(sizeof(int64_t) * (nnz + 1));
    if (!m->user_ptr || !m->items || !m->weight || !m->first_ts ||
        !m->last_ts) {
        rk_interactions_free(m);
        return NULL;
    }
    return m;
}

/* One entry being sorted: its item and time, and its input index (the
 * tie-breaker that keeps equal-time events in input order). */
typedef struct entry {
    uint32_t item;
    int64_t ts;
    uint64_t idx;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int rk_interactions_from_triplets(rk_interactions **out, uint32_t nusers,
                                  uint32_t nitems, const uint32_t *users,
                                  const uint32_t *items, const float *weights,
                                  const int64_t *ts, size_t n, rk_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (users[i] >= nusers || items[i] >= nitems || !isfinite(weights[i]))
            return rk_err_set(err, RK_EINVAL,
                              "interaction %zu: user %u / item %u out of range "
                              "(%u users, %u items) or weight not finite",
                              i, users[i], items[i], nusers, nitems);
    /* Counting sort by user: start[u] .. start[u+1] in `order`. */
    uint64_t *start = rk_calloc((size_t)nusers + 1, sizeof(uint64_t));
    uint64_t *order = rk_malloc(sizeof(uint64_t) * (n + 1));
    entry *ents = NULL;
    rk_interactions *m = NULL;
    int rc = RK_ENOMEM;
    if (!start || !order) goto done;
    for (size_t i = 0; i < n; i++) start[users[i] + 1]++;
    for (uint32_t u = 0; u < nusers; u++) start[u + 1] += start[u];
    {
        uint64_t *fill = rk_malloc(sizeof(uint64_t) * ((size_t)nusers + 1));
        if (!fill) goto done;
        memcpy(fill, start, sizeof(uint64_t) * ((size_t)nusers + 1));
        for (size_t i = 0; i < n; i++) order[fill[users[i]]++] = i;
        rk_free(fill);
    }
    /* Longest user row bounds the scratch for the per-user sort. */
    uint64_t longest = 0;
    for (uint32_t u = 0; u < nusers; u++)
        if (start[u + 1] - start[u] > longest) longest = start[u + 1] - start[u];
    ents = rk_malloc(sizeof(entry) * (longest + 1));
    /* Upper bound on nnz is n; the arrays are trimmed by nnz afterwards. */
    m = rk_interactions_alloc(nusers, nitems, n);
    if (!ents || !m) goto done;

    uint64_t nnz = 0;
    for (uint32_t u = 0; u < nusers; u++) {
        uint64_t len = start[u + 1] - start[u];
        for (uint64_t k = 0; k < len; k++) {
            uint64_t i = order[start[u] + k];
            ents[k].item = items[i];
            ents[k].ts = ts ? ts[i] : 0;
            ents[k].idx = i;
        }
        qsort(ents, len, sizeof(entry), entry_cmp);
        for (uint64_t k = 0; k < len;) {
            uint32_t item = ents[k].item;
            double w = 0;
            int64_t first = 0, last = 0;
            int any = 0;
            for (; k < len && ents[k].item == item; k++) {
                float wk = weights[ents[k].idx];
                if (wk < 0) { /* a negative event resets the pair */
                    w = 0;
                    any = 0;
                    continue;
                }
                if (wk == 0) continue;
                if (!any) first = ents[k].ts;
                last = ents[k].ts;
                w += wk;
                any = 1;
            }
            if (!any || w <= 0) continue;
            m->items[nnz] = item;
            m->weight[nnz] = (float)w;
            m->first_ts[nnz] = first;
            m->last_ts[nnz] = last;
            nnz++;
        }
        m->user_ptr[u + 1] = nnz;
    }
    m->nnz = nnz;
    *out = m;
    m = NULL;
    rc = 0;
done:
    if (rc == RK_ENOMEM) rk_err_set(err, rc, "interactions: out of memory");
    rk_interactions_free(m);
    rk_free(ents);
    rk_free(order);
    rk_free(start);
    return rc;
}

/* ---- from the store ---------------------------------------------------- */

typedef struct collect {
    const rk_inter_opts *o;
    const rk_schema *schema;
    RK_VEC(uint32_t) users;
    RK_VEC(uint32_t) items;
    RK_VEC(float) weights;
    RK_VEC(int64_t) ts;
    int rc;
} collect;

static int collect_event(void *arg, const rk_event *ev)
{
    collect *c = arg;
    const rk_inter_opts *o = c->o;
    if (ev->ts_ms < o->from_ts || ev->ts_ms >= o->to_ts) return 0;
    const rk_event_type_def *t = rk_schema_event_type(c->schema, ev->type);
    if (!t) return 0;
    float w;
    switch (t->role) {
    case RK_ROLE_POSITIVE:
        w = (float)t->weight;
        break;
    case RK_ROLE_VALUED:
        if (ev->has_value && ev->value < o->valued_min) return 0;
        w = (float)t->weight;
        if (o->value_as_weight && ev->has_value) w *= (float)ev->value;
        break;
    case RK_ROLE_NEGATIVE:
        if (!o->negatives_remove) return 0;
        w = -1;
        break;
    default:
        return 0; /* exposures are not feedback */
    }
    if (w == 0 || !isfinite(w)) return 0;
    if (rk_vec_push(&c->users, ev->user) || rk_vec_push(&c->items, ev->item) ||
        rk_vec_push(&c->weights, w) || rk_vec_push(&c->ts, ev->ts_ms)) {
        c->rc = RK_ENOMEM;
        return 1;
    }
    return 0;
}

int rk_interactions_from_store(rk_interactions **out, rk_store *s,
                               const rk_inter_opts *o, rk_err *err)
{
    rk_inter_opts dflt;
    if (!o) {
        rk_inter_opts_default(&dflt);
        o = &dflt;
    }
    rk_reader *r;
    int rc = rk_store_reader(s, &r, err);
    if (rc) return rc;
    rk_store_stats st;
    collect c = {.o = o, .schema = rk_store_schema(s)};
    if ((rc = rk_reader_stats(r, &st)) == 0)
        rc = rk_reader_scan_events(r, 0, collect_event, &c);
    if (rc && c.rc) rc = rk_err_set(err, c.rc, "interactions: out of memory");
    else if (rc) rc = rk_err_set(err, rc, "%s", rk_reader_errmsg(r));
    rk_reader_close(r);
    if (!rc)
        rc = rk_interactions_from_triplets(
            out, (uint32_t)st.ids[RK_ENTITY_USER], (uint32_t)st.ids[RK_ENTITY_ITEM],
            c.users.v, c.items.v, c.weights.v, c.ts.v, c.users.n, err);
    rk_vec_free(&c.users);
    rk_vec_free(&c.items);
    rk_vec_free(&c.weights);
    rk_vec_free(&c.ts);
    return rc;
}

int rk_interactions_transpose(const rk_interactions *m, rk_interactions **out,
                              rk_err *err)
{
    rk_interactions *t = rk_interactions_alloc(m->nitems, m->nusers, m->nnz);
    if (!t) return rk_err_set(err, RK_ENOMEM, "interactions: out of memory");
    /* Counting sort by item; users come out in increasing order because
     * the rows are visited in user order. */
    for (uint64_t k = 0; k < m->nnz; k++) t->user_ptr[m->items[k] + 1]++;
    for (uint32_t i = 0; i < m->nitems; i++) t->user_ptr[i + 1] += t->user_ptr[i];
    uint64_t *fill = rk_malloc(sizeof(uint64_t) * ((size_t)m->nitems + 1));
    if (!fill) {
        rk_interactions_free(t);
        return rk_err_set(err, RK_ENOMEM, "interactions: out of memory");
    }
    memcpy(fill, t->user_ptr, sizeof(uint64_t) * ((size_t)m->nitems + 1));
    for (uint32_t u = 0; u < m->nusers; u++)
        for (uint64_t k = m->user_ptr[u]; k < m->user_ptr[u + 1]; k++) {
            uint64_t dst = fill[m->items[k]]++;
            t->items[dst] = u;
            t->weight[dst] = m->weight[k];
            t->first_ts[dst] = m->first_ts[k];
            t->last_ts[dst] = m->last_ts[k];
        }
    rk_free(fill);
    *out = t;
    return 0;
}
