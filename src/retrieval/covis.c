/*
 * covis.c — item co-visitation: "users who interacted with X then
 * interacted with Y soon after", decayed by the time between the two.
 *
 * Building goes through one representation, per-user event sequences
 * sorted by (ts, item), whatever the source (matrix, event log, arrays).
 * For each user the pairs within the window are generated from the latest
 * events backwards, capped, and folded in a small hash table so that a user
 * adds each (X, Y) at most once (their largest contribution). The per-user
 * results are summed over users with bounded memory: a first pass counts
 * the contributions each X receives, the items are cut into contiguous
 * ranges whose counts fit the pair buffer, and each range is one more pass
 * over the users that places its contributions by X (a counting sort, no
 * comparison sort anywhere). Each X is then summed in a dense accumulator
 * and cut to its top_n. Sums always run in user order, so the model does
 * not depend on the buffer size, and is the same on every run.
 *
 * Invariants of a built rk_covis: every list is sorted best first (score
 * descending, then item ascending), holds at most top_n items, never holds
 * X itself, and every score is finite and > 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "retrieval/gen_int.h"

struct rk_covis {
    rk__nbrs nb;
    rk_covis_opts o;
};

#define HOUR_MS 3600000.0
static const char COVIS_MAGIC[8] = {'R', 'K', 'C', 'O', 'V', 'I', 'S', '1'};

void rk_covis_opts_default(rk_covis_opts *o)
{
    o->window_ms = 24 * 3600000LL;
    o->tau_ms = 6 * HOUR_MS;
    o->symmetric = 1;
    o->norm = RK_COVIS_NORM_NONE;
    o->top_n = 100;
    o->max_events_per_user = 200;
    o->max_pairs_per_user = 10000;
    o->max_buffer_pairs = 16u << 20;
    o->max_events = 20000000;
}

int rk_covis_opts_from_conf(rk_covis_opts *o, const rk_conf_node *node,
                            rk_err *err)
{
    static const char *const keys[] = {
        "window_hours", "tau_hours", "symmetric", "normalize", "top_n",
        "max_events_per_user", "max_pairs_per_user", "max_buffer_pairs",
        "max_events", NULL};
    static const char *const norms[] = {"none", "cosine", NULL};
    int rc;
    double wh, th;
    int64_t v;
    int idx;
    if ((rc = rk_conf_check_keys(node, keys, err))) return rc;
    if ((rc = rk_conf_as_float(rk_conf_get(node, "window_hours"),
                               (double)o->window_ms / HOUR_MS, &wh, err)))
        return rc;
    if (!(wh > 0) || wh > 24.0 * 365 * 100)
        return rk_conf_error(err, rk_conf_get(node, "window_hours"),
                             "expected a positive number of hours");
    o->window_ms = (int64_t)(wh * HOUR_MS);
    if ((rc = rk_conf_as_float(rk_conf_get(node, "tau_hours"),
                               o->tau_ms / HOUR_MS, &th, err)))
        return rc;
    o->tau_ms = th * HOUR_MS;
    if ((rc = rk_conf_as_bool(rk_conf_get(node, "symmetric"), o->symmetric,
                              &o->symmetric, err)))
        return rc;
    if ((rc = rk_conf_as_enum(rk_conf_get(node, "normalize"), (int)o->norm,
                              norms, &idx, err)))
        return rc;
    o->norm = (rk_covis_norm)idx;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "top_n"), o->top_n, 1,
                                   100000, &v, err)))
        return rc;
    o->top_n = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_events_per_user"),
                                   o->max_events_per_user, 2, 1000000, &v, err)))
        return rc;
    o->max_events_per_user = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_pairs_per_user"),
                                   o->max_pairs_per_user, 1, 100000000, &v, err)))
        return rc;
    o->max_pairs_per_user = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_buffer_pairs"),
                                   (int64_t)o->max_buffer_pairs, 1024,
                                   INT64_C(1) << 36, &v, err)))
        return rc;
    o->max_buffer_pairs = (uint64_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_events"),
                                   (int64_t)o->max_events, 1, INT64_C(1) << 40,
                                   &v, err)))
        return rc;
    o->max_events = (uint64_t)v;
    return 0;
}

/* ---- per-user sequences ------------------------------------------------- */

typedef struct seq_ev {
    int64_t ts;
    uint32_t item;
    float w;
} seq_ev;

/* Users' events grouped by user, each group sorted by (ts, item). */
typedef struct seqs {
    uint32_t nusers, nitems;
    uint64_t *ptr;  /* nusers + 1 */
    seq_ev *ev;
} seqs;

static void seqs_free(seqs *s)
{
    rk_free(s->ptr);
    rk_free(s->ev);
    s->ptr = NULL;
    s->ev = NULL;
}

static int seq_ev_cmp(const void *a, const void *b)
{
    const seq_ev *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->w != y->w) return x->w < y->w ? -1 : 1;
    return 0;
}

static void seqs_sort(seqs *s)
{
    for (uint32_t u = 0; u < s->nusers; u++)
        qsort(s->ev + s->ptr[u], (size_t)(s->ptr[u + 1] - s->ptr[u]),
              sizeof(seq_ev), seq_ev_cmp);
}

/* Groups n events by user with a counting sort, then orders each group. */
static int seqs_from_arrays(seqs *s, uint32_t nusers, uint32_t nitems,
                            const uint32_t *users, const uint32_t *items,
                            const int64_t *ts, const float *w, size_t n)
{
    s->nusers = nusers;
    s->nitems = nitems;
    s->ptr = rk_calloc((size_t)nusers + 1, sizeof *s->ptr);
    s->ev = rk_malloc((n ? n : 1) * sizeof *s->ev);
    uint64_t *fill = rk_malloc(((size_t)nusers + 1) * sizeof *fill);
    if (!s->ptr || !s->ev || !fill) {
        rk_free(fill);
        seqs_free(s);
        return RK_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) s->ptr[users[i] + 1]++;
    for (uint32_t u = 0; u < nusers; u++) s->ptr[u + 1] += s->ptr[u];
    memcpy(fill, s->ptr, ((size_t)nusers + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) {
        seq_ev *e = &s->ev[fill[users[i]]++];
        e->ts = ts[i];
        e->item = items[i];
        e->w = w ? w[i] : 1.0f;
    }
    rk_free(fill);
    seqs_sort(s);
    return 0;
}

/* ---- pair generation ---------------------------------------------------- */

/* One slot of the per-user pair table. A slot belongs to the current call
 * iff stamp == builder.gen, so the table is not cleared between users. */
typedef struct uslot {
    uint64_t key;    /* x << 32 | y */
    float w;
    uint32_t stamp;
} uslot;

typedef struct ycontrib {
    uint32_t y;
    float w;
} ycontrib;

typedef struct builder {
    const seqs *s;
    const rk_covis_opts *o;
    uslot *tab;           /* per-user distinct pairs, open addressing */
    size_t tmask;
    uint32_t gen;         /* stamp of the current user_pairs call */
    uint32_t *order;      /* the user's slots in first-emission order */
    size_t norder;
    uint64_t *count;      /* contributions per x, before per-user dedupe */
    uint32_t *users_of;   /* cosine: users per item (after truncation) */
    double *acc;          /* per-x accumulation over y (dense) */
    uint32_t *mark;       /* acc[y] belongs to x iff mark[y] == x + 1 */
    uint32_t *touched;
    size_t ntouched;
} builder;

static inline size_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

/* Records x -> y with weight w for user stamp: keeps the user's largest. */
static void user_put(builder *b, uint32_t stamp, uint32_t x, uint32_t y,
                     float w)
{
    uint64_t key = (uint64_t)x << 32 | y;
    size_t i = pair_hash(key) & b->tmask;
    for (;; i = (i + 1) & b->tmask) {
        uslot *sl = &b->tab[i];
        if (sl->stamp != stamp) {
            sl->stamp = stamp;
            sl->key = key;
            sl->w = w;
            b->order[b->norder++] = (uint32_t)i;
            return;
        }
        if (sl->key == key) {
            if (w > sl->w) sl->w = w;
            return;
        }
    }
}

/* Generates user u's pairs. With count_only, only counts contributions per
 * x (an upper bound of the distinct pairs, used to plan the passes);
 * otherwise leaves the user's distinct pairs in b->order / b->tab. */
static void user_pairs(builder *b, uint32_t u, int count_only)
{
    const rk_covis_opts *o = b->o;
    const seq_ev *ev = b->s->ev + b->s->ptr[u];
    size_t n = (size_t)(b->s->ptr[u + 1] - b->s->ptr[u]);
    /* Only the latest events count: a long history says less about what
     * goes together today, and its pairs grow quadratically. */
    size_t start = n > o->max_events_per_user ? n - o->max_events_per_user : 0;
    size_t np = 0, cap = o->max_pairs_per_user;
    b->norder = 0;
    if (!count_only && ++b->gen == 0) {
        /* The stamp wrapped: forget every old slot once. */
        memset(b->tab, 0, (b->tmask + 1) * sizeof *b->tab);
        b->gen = 1;
    }
    for (size_t i = n; i-- > start && np < cap;) {
        for (size_t j = i + 1; j < n && np < cap; j++) {
            int64_t dt = ev[j].ts - ev[i].ts;
            if (dt > o->window_ms) break;
            if (ev[j].item == ev[i].item) continue;
            /* Events at the same instant have no order to respect. */
            int both = (o->symmetric || dt == 0) && np + 1 < cap;
            np += 1 + both;
            if (count_only) {
                b->count[ev[i].item]++;
                if (both) b->count[ev[j].item]++;
                continue;
            }
            double d = o->tau_ms > 0 ? exp(-(double)dt / o->tau_ms) : 1.0;
            user_put(b, b->gen, ev[i].item, ev[j].item, (float)(d * ev[j].w));
            if (both)
                user_put(b, b->gen, ev[j].item, ev[i].item, (float)(d * ev[i].w));
        }
    }
}

/* Adds one contribution to x's dense accumulator. */
static inline void acc_add(builder *b, uint32_t x, uint32_t y, float w)
{
    if (b->mark[y] != x + 1) {
        b->mark[y] = x + 1;
        b->acc[y] = 0;
        b->touched[b->ntouched++] = y;
    }
    b->acc[y] += w;
}

/* Appends x's top_n neighbours from its accumulator to the result. */
typedef struct csr_out {
    RK_VEC(uint32_t) item;
    RK_VEC(float) score;
    rk_candidate *heap;
} csr_out;

static int emit_item(builder *b, csr_out *co, uint32_t x)
{
    const rk_covis_opts *o = b->o;
    rk__topk t;
    rk__topk_init(&t, co->heap, o->top_n);
    for (size_t k = 0; k < b->ntouched; k++) {
        uint32_t y = b->touched[k];
        double s = b->acc[y];
        if (o->norm == RK_COVIS_NORM_COSINE) {
            double d = (double)b->users_of[x] * b->users_of[y];
            s = d > 0 ? s / sqrt(d) : 0;
        }
        if (s > 0 && isfinite(s)) rk__topk_push(&t, y, (float)s, RK_SRC_COVIS);
    }
    b->ntouched = 0;
    size_t m = rk__topk_finish(&t);
    if (rk_vec_reserve(&co->item, co->item.n + m) ||
        rk_vec_reserve(&co->score, co->score.n + m))
        return RK_ENOMEM;
    for (size_t k = 0; k < m; k++) {
        co->item.v[co->item.n++] = co->heap[k].item;
        co->score.v[co->score.n++] = co->heap[k].score;
    }
    return 0;
}

/* The passes. Pass 1 counts contributions per x; then items are cut into
 * contiguous ranges whose counts fit max_buffer_pairs, and each range is
 * one pass over the users that drops every contribution of its x into the
 * x's slice of the buffer (a counting sort, so in user order). Each x's
 * slice is then summed in a dense accumulator and cut to top_n. An x whose
 * count alone exceeds the buffer gets a pass of its own that sums straight
 * into the accumulator. Either way every (x, y) is summed in user order,
 * so the result does not depend on the buffer size. */
static int covis_core(const seqs *s, const rk_covis_opts *o, rk_covis **out,
                      rk_err *err)
{
    int rc = RK_ENOMEM;
    builder b = {.s = s, .o = o};
    csr_out co = {0};
    uint64_t *ptr = NULL, *pos = NULL;
    ycontrib *buf = NULL;
    rk_covis *c = NULL;
    size_t tsize = 16;
    while (tsize < 2 * (size_t)o->max_pairs_per_user) tsize *= 2;
    b.tab = rk_calloc(tsize, sizeof *b.tab);
    b.tmask = tsize - 1;
    b.order = rk_malloc((size_t)o->max_pairs_per_user * sizeof *b.order);
    b.count = rk_calloc((size_t)s->nitems + 1, sizeof *b.count);
    b.acc = rk_malloc(((size_t)s->nitems + 1) * sizeof *b.acc);
    b.mark = rk_calloc((size_t)s->nitems + 1, sizeof *b.mark);
    b.touched = rk_malloc(((size_t)s->nitems + 1) * sizeof *b.touched);
    ptr = rk_calloc((size_t)s->nitems + 1, sizeof *ptr);
    pos = rk_malloc(((size_t)s->nitems + 1) * sizeof *pos);
    co.heap = rk_malloc((size_t)o->top_n * sizeof *co.heap);
    if (!b.tab || !b.order || !b.count || !b.acc || !b.mark || !b.touched ||
        !ptr || !pos || !co.heap)
        goto done;
    if (o->norm == RK_COVIS_NORM_COSINE) {
        /* Users per item, counting each user once (mark as a stamp). */
        b.users_of = rk_calloc((size_t)s->nitems + 1, sizeof *b.users_of);
        if (!b.users_of) goto done;
        for (uint32_t u = 0; u < s->nusers; u++) {
            const seq_ev *ev = s->ev + s->ptr[u];
            size_t n = (size_t)(s->ptr[u + 1] - s->ptr[u]);
            size_t st = n > o->max_events_per_user ? n - o->max_events_per_user : 0;
            for (size_t k = st; k < n; k++)
                if (b.mark[ev[k].item] != u + 1) {
                    b.mark[ev[k].item] = u + 1;
                    b.users_of[ev[k].item]++;
                }
        }
        memset(b.mark, 0, ((size_t)s->nitems + 1) * sizeof *b.mark);
    }

    for (uint32_t u = 0; u < s->nusers; u++) user_pairs(&b, u, 1);
    uint64_t total = 0;
    for (uint32_t x = 0; x < s->nitems; x++) total += b.count[x];
    uint64_t cap = total < o->max_buffer_pairs ? total : o->max_buffer_pairs;
    buf = rk_malloc((size_t)(cap ? cap : 1) * sizeof *buf);
    if (!buf) goto done;

    uint32_t lo = 0;
    while (lo < s->nitems) {
        uint32_t hi = lo;
        uint64_t need = 0;
        while (hi < s->nitems && (hi == lo || need + b.count[hi] <= cap))
            need += b.count[hi++];
        if (need > cap) {
            /* One x with more contributions than the buffer: sum directly. */
            for (uint32_t u = 0; u < s->nusers; u++) {
                user_pairs(&b, u, 0);
                for (size_t k = 0; k < b.norder; k++) {
                    const uslot *sl = &b.tab[b.order[k]];
                    if ((uint32_t)(sl->key >> 32) == lo)
                        acc_add(&b, lo, (uint32_t)sl->key, sl->w);
                }
            }
            if (emit_item(&b, &co, lo)) goto done;
            ptr[lo + 1] = co.item.n;
            lo = hi;
            continue;
        }
        if (need > 0) {
            uint64_t off = 0;
            for (uint32_t x = lo; x < hi; x++) {
                pos[x] = off;
                off += b.count[x];
            }
            for (uint32_t u = 0; u < s->nusers; u++) {
                user_pairs(&b, u, 0);
                for (size_t k = 0; k < b.norder; k++) {
                    const uslot *sl = &b.tab[b.order[k]];
                    uint32_t x = (uint32_t)(sl->key >> 32);
                    if (x < lo || x >= hi) continue;
                    buf[pos[x]++] = (ycontrib){(uint32_t)sl->key, sl->w};
                }
            }
        }
        /* pos[x] now ends x's slice; its start is where x - 1 ended. */
        uint64_t begin = 0;
        for (uint32_t x = lo; x < hi; x++) {
            uint64_t end = need > 0 ? pos[x] : 0;
            for (uint64_t k = begin; k < end; k++) acc_add(&b, x, buf[k].y, buf[k].w);
            begin = begin + b.count[x];
            if (b.ntouched && emit_item(&b, &co, x)) goto done;
            ptr[x + 1] = co.item.n;
        }
        lo = hi;
    }

    c = rk_calloc(1, sizeof *c);
    if (!c) goto done;
    /* An empty model still gets non-NULL arrays, so callers need no case. */
    if (!co.item.v && (rk_vec_reserve(&co.item, 1) || rk_vec_reserve(&co.score, 1)))
        goto done;
    c->o = *o;
    c->nb.nitems = s->nitems;
    c->nb.top_n = o->top_n;
    c->nb.nnz = co.item.n;
    c->nb.ptr = ptr;
    c->nb.item = co.item.v;
    c->nb.score = co.score.v;
    co.item.v = NULL;
    co.score.v = NULL;
    ptr = NULL;
    *out = c;
    c = NULL;
    rc = 0;
done:
    if (rc == RK_ENOMEM) rk_err_set(err, rc, "covis: out of memory");
    rk_free(c);
    rk_free(b.tab);
    rk_free(b.order);
    rk_free(b.count);
    rk_free(b.users_of);
    rk_free(b.acc);
    rk_free(b.mark);
    rk_free(b.touched);
    rk_free(ptr);
    rk_free(pos);
    rk_free(buf);
    rk_free(co.heap);
    rk_vec_free(&co.item);
    rk_vec_free(&co.score);
    return rc;
}

static int check_opts(const rk_covis_opts *o, rk_err *err)
{
    if (o->window_ms < 0 || !(o->tau_ms == o->tau_ms) || o->top_n == 0 ||
        o->max_events_per_user == 0 || o->max_pairs_per_user == 0 ||
        o->max_buffer_pairs == 0 || o->max_events == 0 ||
        (o->norm != RK_COVIS_NORM_NONE && o->norm != RK_COVIS_NORM_COSINE))
        return rk_err_set(err, RK_EINVAL, "covis: invalid options");
    return 0;
}

/* ---- entry points ------------------------------------------------------- */

int rk_covis_build_from_events(rk_covis **out, uint32_t nusers,
                               uint32_t nitems, const uint32_t *users,
                               const uint32_t *items, const int64_t *ts,
                               const float *w, size_t n,
                               const rk_covis_opts *o, rk_err *err)
{
    rk_covis_opts dflt;
    if (!o) {
        rk_covis_opts_default(&dflt);
        o = &dflt;
    }
    int rc = check_opts(o, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (users[i] >= nusers || items[i] >= nitems ||
            (w && !(w[i] > 0 && isfinite(w[i]))))
            return rk_err_set(err, RK_EINVAL,
                              "covis: event %zu out of range (%u users, %u "
                              "items) or weight not positive",
                              i, nusers, nitems);
    seqs s;
    if (seqs_from_arrays(&s, nusers, nitems, users, items, ts, w, n))
        return rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    rc = covis_core(&s, o, out, err);
    seqs_free(&s);
    return rc;
}

int rk_covis_build(rk_covis **out, const rk_interactions *m,
                   const rk_covis_opts *o, rk_err *err)
{
    rk_covis_opts dflt;
    if (!o) {
        rk_covis_opts_default(&dflt);
        o = &dflt;
    }
    int rc = check_opts(o, err);
    if (rc) return rc;
    /* The matrix is already grouped by user; only the time order is new. */
    seqs s = {.nusers = m->nusers, .nitems = m->nitems};
    s.ptr = rk_malloc(((size_t)m->nusers + 1) * sizeof *s.ptr);
    s.ev = rk_malloc((m->nnz ? m->nnz : 1) * sizeof *s.ev);
    if (!s.ptr || !s.ev) {
        seqs_free(&s);
        return rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    }
    memcpy(s.ptr, m->user_ptr, ((size_t)m->nusers + 1) * sizeof *s.ptr);
    for (uint64_t k = 0; k < m->nnz; k++) {
        s.ev[k].ts = m->first_ts[k];
        s.ev[k].item = m->items[k];
        s.ev[k].w = m->weight[k];
    }
    seqs_sort(&s);
    rc = covis_core(&s, o, out, err);
    seqs_free(&s);
    return rc;
}

/* The event log is read into a ring of the last max_events accepted
 * events: the log is in arrival order, so the ring keeps the most recent
 * ones and memory stays bounded however long the log is. The ring grows
 * geometrically up to its cap, so a small log costs little. */
typedef struct log_ev {
    uint32_t user;
    seq_ev e;
} log_ev;

typedef struct scan_ctx {
    const rk_schema *sc;
    const rk_inter_opts *io;
    log_ev *ring;
    uint64_t alloc, cap, n, next;
    int nomem;
} scan_ctx;

static int scan_event(void *arg, const rk_event *ev)
{
    scan_ctx *c = arg;
    float w = rk__gen_event_weight(c->sc, c->io, ev);
    if (w <= 0) return 0;
    log_ev le = {ev->user, {ev->ts_ms, ev->item, w}};
    if (c->n == c->alloc && c->alloc < c->cap) {
        uint64_t want = c->alloc ? 2 * c->alloc : 4096;
        if (want > c->cap) want = c->cap;
        log_ev *p = rk_realloc(c->ring, (size_t)want * sizeof *p);
        if (!p) {
            c->nomem = 1;
            return 1;
        }
        c->ring = p;
        c->alloc = want;
    }
    if (c->n < c->cap) {
        c->ring[c->n++] = le;
    } else {
        c->ring[c->next] = le;
        c->next = (c->next + 1) % c->cap;
    }
    return 0;
}

/* Groups the ring by user (counting sort), then orders each group. */
static int seqs_from_ring(seqs *s, uint32_t nusers, uint32_t nitems,
                          const log_ev *ring, size_t n)
{
    s->nusers = nusers;
    s->nitems = nitems;
    s->ptr = rk_calloc((size_t)nusers + 1, sizeof *s->ptr);
    s->ev = rk_malloc((n ? n : 1) * sizeof *s->ev);
    uint64_t *fill = rk_malloc(((size_t)nusers + 1) * sizeof *fill);
    if (!s->ptr || !s->ev || !fill) {
        rk_free(fill);
        seqs_free(s);
        return RK_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) s->ptr[ring[i].user + 1]++;
    for (uint32_t u = 0; u < nusers; u++) s->ptr[u + 1] += s->ptr[u];
    memcpy(fill, s->ptr, ((size_t)nusers + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) s->ev[fill[ring[i].user]++] = ring[i].e;
    rk_free(fill);
    seqs_sort(s);
    return 0;
}

int rk_covis_build_from_store(rk_covis **out, rk_store *s,
                              const rk_inter_opts *io, const rk_covis_opts *o,
                              rk_err *err)
{
    rk_covis_opts dflt;
    rk_inter_opts idflt;
    if (!o) {
        rk_covis_opts_default(&dflt);
        o = &dflt;
    }
    if (!io) {
        rk_inter_opts_default(&idflt);
        io = &idflt;
    }
    int rc = check_opts(o, err);
    if (rc) return rc;
    rk_reader *r;
    if ((rc = rk_store_reader(s, &r, err))) return rc;
    rk_store_stats st;
    scan_ctx c = {.sc = rk_store_schema(s), .io = io, .cap = o->max_events};
    if ((rc = rk_reader_stats(r, &st)) == 0)
        rc = rk_reader_scan_events(r, 0, scan_event, &c);
    if (rc && c.nomem) rc = rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    else if (rc) rc = rk_err_set(err, rc, "covis: %s", rk_reader_errmsg(r));
    rk_reader_close(r);
    seqs q = {0};
    /* Ids come from the same snapshot as the events, so every one fits. */
    if (rc == 0 && seqs_from_ring(&q, (uint32_t)st.ids[RK_ENTITY_USER],
                                  (uint32_t)st.ids[RK_ENTITY_ITEM], c.ring,
                                  (size_t)c.n))
        rc = rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    rk_free(c.ring);
    if (rc == 0) rc = covis_core(&q, o, out, err);
    seqs_free(&q);
    return rc;
}

void rk_covis_destroy(rk_covis *c)
{
    if (!c) return;
    rk__nbrs_free(&c->nb);
    rk_free(c);
}

uint32_t rk_covis_nitems(const rk_covis *c) { return c->nb.nitems; }

void rk_covis_neighbors(const rk_covis *c, uint32_t item,
                        const uint32_t **items, const float **scores,
                        size_t *n)
{
    rk__nbrs_get(&c->nb, item, items, scores, n);
}

int rk_covis_query(const rk_covis *c, const rk_seed *seeds, size_t nseeds,
                   size_t k, rk_candidate *out, size_t *nout)
{
    return rk__nbrs_query(&c->nb, seeds, nseeds, k, RK_SRC_COVIS, out, nout);
}

/* The options travel in the file for the record (what built this model). */
enum { META_WINDOW, META_TAU, META_SYM, META_NORM, META_TOPN, META_MAXEV,
       META_MAXPAIRS, META_N };

int rk_covis_save(const rk_covis *c, const char *path, rk_err *err)
{
    double meta[META_N] = {
        [META_WINDOW] = (double)c->o.window_ms, [META_TAU] = c->o.tau_ms,
        [META_SYM] = c->o.symmetric, [META_NORM] = c->o.norm,
        [META_TOPN] = c->o.top_n, [META_MAXEV] = c->o.max_events_per_user,
        [META_MAXPAIRS] = c->o.max_pairs_per_user};
    int rc = rk__nbrs_save(&c->nb, COVIS_MAGIC, meta, META_N, path, err);
    if (rc) rk_err_prefix(err, "covis: ");
    return rc;
}

int rk_covis_load(rk_covis **out, const char *path, rk_err *err)
{
    rk_covis *c = rk_calloc(1, sizeof *c);
    if (!c) return rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    rk_covis_opts_default(&c->o);
    double meta[META_N] = {0};
    int rc = rk__nbrs_load(&c->nb, COVIS_MAGIC, meta, META_N, path, err);
    if (rc) {
        rk_free(c);
        rk_err_prefix(err, "covis: ");
        return rc;
    }
    c->o.window_ms = (int64_t)meta[META_WINDOW];
    c->o.tau_ms = meta[META_TAU];
    c->o.symmetric = (int)meta[META_SYM];
    c->o.norm = (rk_covis_norm)(int)meta[META_NORM];
    c->o.top_n = c->nb.top_n;
    c->o.max_events_per_user = (uint32_t)meta[META_MAXEV];
    c->o.max_pairs_per_user = (uint32_t)meta[META_MAXPAIRS];
    *out = c;
    return 0;
}
