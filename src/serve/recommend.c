/*
 * recommend.c — the two-stage online pipeline behind /v1/recommend and
 * /v1/rank: retrieval (ANN on the user vector folded in from the user's
 * latest events, co-visitation seeded by them, trending, fresh, popular;
 * merged by quota with seen and hidden items dropped) -> features (the
 * ranker's own spec through rk_feat_compute_batch, the one code path
 * shared with training) -> rank (the current snapshot of the ranker) ->
 * rules (hidden since, exclude list, attribute filters, at most N per
 * category, exploration slots for fresh items) -> response, feature log.
 *
 * Deadline: each request has a budget (serve.deadline_ms or the
 * request's deadline_ms). After retrieval the cost of ranking is
 * estimated from a running average per candidate; when it would overrun
 * the budget the pipeline ranks fewer candidates, and when even n would
 * not fit it answers from trending unranked. Either way the response
 * says "degraded" and /metrics counts it: never a silent timeout.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

#define MAX_FILTERS 16
#define MAX_EXCLUDE 10000

/* ---- generators refreshed in the background ---------------------------- */

int sv_refresh_generators(rk_server *s, rk_err *err)
{
    const rk_conf_node *ret = s->root ? rk_conf_get(s->root, "retrieval") : NULL;
    rk_popular_opts po;
    rk_popular_opts_default(&po);
    int rc = rk_popular_opts_from_conf(&po, ret ? rk_conf_get(ret, "trending") : NULL, err);
    if (rc) return rc;
    rk_inter_opts io;
    rk_inter_opts_default(&io);
    rk_popular *p = NULL;
    rc = rk_popular_build_from_store(&p, s->store, &io, &po, err);
    if (rc) return rc;
    rk_fresh_opts fo;
    rk_fresh_opts_default(&fo);
    rc = rk_fresh_opts_from_conf(&fo, ret ? rk_conf_get(ret, "fresh") : NULL, err);
    uint32_t idx;
    if (!rc && fo.attr &&
        (rk_schema_find_attr(s->schema, RK_ENTITY_ITEM, fo.attr, strlen(fo.attr), &idx) ||
         rk_schema_attr(s->schema, RK_ENTITY_ITEM, idx)->type != RK_ATTR_TIMESTAMP))
        fo.attr = NULL; /* not declared: first-seen times only */
    rk_fresh *f = NULL;
    if (!rc) rc = rk_fresh_build_from_store(&f, s->store, &fo, err);
    if (rc) {
        rk_popular_destroy(p);
        return rc;
    }
    pthread_mutex_lock(&s->gen_mu);
    rk_popular *op = s->trending;
    rk_fresh *of = s->fresh;
    s->trending = p;
    s->fresh = f;
    pthread_mutex_unlock(&s->gen_mu);
    /* Readers copy lists under gen_mu, so nothing else can hold them. */
    rk_popular_destroy(op);
    rk_fresh_destroy(of);
    return 0;
}

/* Copies up to cap entries of a generator list under gen_mu. */
static size_t gen_copy(rk_server *s, int which, rk_candidate *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&s->gen_mu);
    const rk_candidate *l = NULL;
    if (which == RK_SRC_FRESH && s->fresh) l = rk_fresh_list(s->fresh, &n);
    else if (which == RK_SRC_TRENDING && s->trending)
        l = rk_popular_list(s->trending, RK_POPULAR_TRENDING, &n);
    else if (which == RK_SRC_POPULAR && s->trending)
        l = rk_popular_list(s->trending, RK_POPULAR_ALL_TIME, &n);
    if (!l) n = 0;
    if (n > cap) n = cap;
    if (n) memcpy(out, l, n * sizeof *out);
    pthread_mutex_unlock(&s->gen_mu);
    return n;
}

static int blocked(rk_server *s, uint32_t item)
{
    pthread_rwlock_rdlock(&s->blocked_mu);
    int b = item < s->nblocked && (s->blocked[item / 64] >> (item % 64) & 1);
    pthread_rwlock_unlock(&s->blocked_mu);
    return b;
}

/* Marks item hidden (1) or visible (0) in the in-memory bitset. */
int sv_set_blocked(rk_server *s, uint32_t item, int on)
{
    pthread_rwlock_wrlock(&s->blocked_mu);
    if (item >= s->nblocked) {
        uint32_t nb = item + 1 > s->nblocked * 2 ? item + 1 : s->nblocked * 2;
        size_t words = ((size_t)nb + 63) / 64, old = ((size_t)s->nblocked + 63) / 64;
        uint64_t *b = rk_realloc(s->blocked, (words ? words : 1) * 8);
        if (!b) {
            pthread_rwlock_unlock(&s->blocked_mu);
            return RK_ENOMEM;
        }
        memset(b + old, 0, (words - old) * 8);
        s->blocked = b;
        s->nblocked = nb;
    }
    if (on) s->blocked[item / 64] |= 1ull << (item % 64);
    else s->blocked[item / 64] &= ~(1ull << (item % 64));
    pthread_rwlock_unlock(&s->blocked_mu);
    return 0;
}

int sv_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- retrieval ------------------------------------------------------------ */

typedef struct hist_buf {
    uint32_t *items;
    int64_t *ts;
    float *w;
    size_t n;
} hist_buf;

static int user_history(rk_server *s, sv_worker *w, uint32_t user, int has_user,
                        hist_buf *h)
{
    size_t cap = s->o.history;
    h->items = rk_arena_alloc(&w->arena, cap * sizeof *h->items);
    h->ts = rk_arena_alloc(&w->arena, cap * sizeof *h->ts);
    h->w = rk_arena_alloc(&w->arena, cap * sizeof *h->w);
    if (!h->items || !h->ts || !h->w) return RK_ENOMEM;
    h->n = has_user ? sv_history_get(s->hist, user, h->items, h->ts, h->w, cap, 1)
                    : 0;
    return 0;
}

/* The stamp of a user's cached candidates: their history version and the
 * retrieval models' versions, so any of them changing invalidates. */
static uint64_t cand_stamp(rk_server *s, uint32_t user, const sv_model *f,
                           const sv_model *c)
{
    uint64_t v[3] = {sv_history_version(s->hist, user), f ? f->version : 0,
                     c ? c->version : 0};
    return rk_hash64(v, sizeof v, 0x5eed);
}

static int retrieve_core(rk_server *s, sv_worker *w, int has_user, uint32_t user,
                         uint32_t ncand, int64_t now_ms, rk_candidate *out,
                         size_t *nout, rk_err *err)
{
    sv_model *fm = sv_slot_acquire(&s->slots[1]);
    sv_model *cm = sv_slot_acquire(&s->slots[2]);
    hist_buf h;
    int rc = user_history(s, w, user, has_user, &h);
    rk_merge_input in[RK_SRC_COUNT];
    size_t nin = 0;
    uint32_t total_quota = 0;
    for (size_t i = 0; i < RK_SRC_COUNT; i++) total_quota += s->o.quota[i];
    double scale = total_quota ? (double)ncand / total_quota : 1.0;
#define QUOTA(src) ((uint32_t)ceil(s->o.quota[src] * scale))
    /* ANN over the folded-in user vector. */
    if (!rc && fm && h.n && QUOTA(RK_SRC_ANN)) {
        uint32_t k = rk_ials_k(fm->ials), nit = rk_ials_nitems(fm->ials);
        uint32_t *items = rk_arena_alloc(&w->arena, h.n * sizeof *items);
        float *wt = rk_arena_alloc(&w->arena, h.n * sizeof *wt);
        float *uvec = rk_arena_alloc(&w->arena, k * sizeof *uvec);
        uint32_t q = QUOTA(RK_SRC_ANN);
        uint32_t *lab = rk_arena_alloc(&w->arena, q * sizeof *lab);
        float *sc = rk_arena_alloc(&w->arena, q * sizeof *sc);
        rk_candidate *c = rk_arena_alloc(&w->arena, q * sizeof *c);
        if (!items || !wt || !uvec || !lab || !sc || !c) rc = RK_ENOMEM;
        size_t m = 0;
        for (size_t i = 0; !rc && i < h.n; i++)
            if (h.items[i] < nit) {
                items[m] = h.items[i];
                wt[m++] = h.w[i] > 0 ? h.w[i] : 1.0f;
            }
        if (!rc && m) {
            rc = rk_ials_fold_in(fm->ials, items, wt, m, uvec, err);
            uint32_t got = 0;
            uint32_t ef = s->o.ann_ef ? s->o.ann_ef : q * 2;
            if (!rc) rc = rk_ann_search(fm->ann, uvec, q, ef, lab, sc, &got);
            for (uint32_t i = 0; !rc && i < got; i++)
                c[i] = (rk_candidate){lab[i], sc[i], RK_SRC_ANN, 0,
                                      1u << RK_SRC_ANN};
            if (!rc && got) in[nin++] = (rk_merge_input){c, got, q, 1.0f};
        }
    }
    /* Co-visitation seeded by the latest events. */
    if (!rc && cm && h.n && QUOTA(RK_SRC_COVIS)) {
        uint32_t q = QUOTA(RK_SRC_COVIS);
        rk_seed *seeds = rk_arena_alloc(&w->arena, 32 * sizeof *seeds);
        rk_candidate *c = rk_arena_alloc(&w->arena, q * sizeof *c);
        size_t ns = 0, nc = 0;
        if (!seeds || !c) rc = RK_ENOMEM;
        if (!rc) rc = rk_seeds_from_events(h.items, h.ts, h.w, h.n, now_ms,
                                           86400000.0, seeds, 32, &ns);
        if (!rc && ns) rc = rk_covis_query(cm->covis, seeds, ns, q, c, &nc);
        if (!rc && nc) in[nin++] = (rk_merge_input){c, nc, q, 1.0f};
    }
    static const int gens[] = {RK_SRC_TRENDING, RK_SRC_FRESH, RK_SRC_POPULAR};
    for (size_t g = 0; !rc && g < 3; g++) {
        uint32_t q = QUOTA(gens[g]);
        if (!q) continue;
        /* Take extra so seen items do not starve the quota. */
        size_t cap = (size_t)q + h.n + 16;
        rk_candidate *c = rk_arena_alloc(&w->arena, cap * sizeof *c);
        if (!c) {
            rc = RK_ENOMEM;
            break;
        }
        size_t nc = gen_copy(s, gens[g], c, cap);
        if (nc) in[nin++] = (rk_merge_input){c, nc, q, 1.0f};
    }
#undef QUOTA
    if (!rc) {
        rk_merge_opts mo;
        memset(&mo, 0, sizeof mo);
        mo.n = ncand;
        mo.mode = RK_MERGE_INTERLEAVE;
        mo.seen = h.items;
        mo.nseen = h.n;
        pthread_rwlock_rdlock(&s->blocked_mu);
        mo.blocked = s->blocked;
        mo.nblocked = s->nblocked;
        rc = rk_merge(in, nin, &mo, out, nout, NULL, err);
        pthread_rwlock_unlock(&s->blocked_mu);
    }
    if (rc == RK_ENOMEM) rk_err_set(err, rc, "retrieval: out of memory");
    sv_model_release(fm);
    sv_model_release(cm);
    return rc;
}

int sv_retrieve(rk_server *s, sv_req *q, int has_user, uint32_t user,
                uint32_t ncand, rk_candidate *out, size_t *nout, rk_err *err)
{
    sv_model *fm = sv_slot_acquire(&s->slots[1]);
    sv_model *cm = sv_slot_acquire(&s->slots[2]);
    uint64_t stamp = has_user ? cand_stamp(s, user, fm, cm) : 0;
    sv_model_release(fm);
    sv_model_release(cm);
    if (has_user &&
        sv_ccache_get(s->ccache, user, stamp, q->now_ms, out, ncand, nout) &&
        *nout >= ncand / 2)
        return 0;
    int rc = retrieve_core(s, q->w, has_user, user, ncand, q->now_ms, out, nout,
                           err);
    if (!rc && has_user) sv_ccache_put(s->ccache, user, stamp, q->now_ms, out, *nout);
    return rc;
}

void sv_precompute(rk_server *s)
{
    uint32_t users[256];
    size_t n = sv_ccache_pending(s->ccache, users, 256);
    if (!n) return;
    sv_worker *w = sv_worker_get(s);
    if (!w) return;
    rk_candidate *out = rk_malloc(s->o.candidates * sizeof *out);
    for (size_t i = 0; out && i < n && !s->stopping; i++) {
        rk_err err = {0};
        size_t nout = 0;
        int64_t now = sv_now_ms(s);
        sv_model *fm = sv_slot_acquire(&s->slots[1]);
        sv_model *cm = sv_slot_acquire(&s->slots[2]);
        uint64_t stamp = cand_stamp(s, users[i], fm, cm);
        sv_model_release(fm);
        sv_model_release(cm);
        if (!retrieve_core(s, w, 1, users[i], s->o.candidates, now, out, &nout,
                           &err))
            sv_ccache_put(s->ccache, users[i], stamp, now, out, nout);
        rk_arena_reset(&w->arena);
    }
    rk_free(out);
    sv_worker_put(s, w);
}

/* ---- request parsing -------------------------------------------------------- */

typedef struct filt {
    rk_filter_clause c[MAX_FILTERS];
    const char **vals[MAX_FILTERS];
    size_t n;
} filt;

/* "filters": {"category": ["a", "b"], "price": {"min": 1, "max": 9},
 *             "brand": {"not_in": ["x"]}} */
static int parse_filters(sv_req *q, json_t *f, filt *out)
{
    rk_server *s = q->srv;
    out->n = 0;
    if (!f || json_is_null(f)) return 0;
    if (!json_is_object(f))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field 'filters': expected an "
                        "object of attribute: condition");
    const char *key;
    json_t *v;
    json_object_foreach(f, key, v) {
        if (out->n == MAX_FILTERS)
            return sv_error(q, SV_ERR_LIMIT_EXCEEDED, "more than %d filters",
                            MAX_FILTERS);
        uint32_t attr;
        if (rk_schema_find_attr(s->schema, RK_ENTITY_ITEM, key, strlen(key), &attr))
            return sv_error(q, SV_ERR_BAD_REQUEST, "filters: unknown item "
                            "attribute '%.64s'", key);
        rk_filter_clause *c = &out->c[out->n];
        memset(c, 0, sizeof *c);
        c->attr = attr;
        json_t *list = NULL;
        if (json_is_array(v)) {
            c->op = RK_FILTER_IN;
            list = v;
        } else if (json_is_object(v)) {
            json_t *mn = json_object_get(v, "min"), *mx = json_object_get(v, "max");
            json_t *ni = json_object_get(v, "not_in"), *in = json_object_get(v, "in");
            if (json_object_size(v) != (size_t)(!!mn + !!mx + !!ni + !!in) ||
                ((mn || mx) && (ni || in)) || (ni && in) || !json_object_size(v))
                return sv_error(q, SV_ERR_BAD_REQUEST, "filters.%.64s: expected "
                                "a list, {min, max}, {in} or {not_in}", key);
            if (ni || in) {
                c->op = ni ? RK_FILTER_NOT_IN : RK_FILTER_IN;
                list = ni ? ni : in;
            } else {
                c->op = RK_FILTER_RANGE;
                c->lo = -INFINITY;
                c->hi = INFINITY;
                if ((mn && !json_is_number(mn)) || (mx && !json_is_number(mx)))
                    return sv_error(q, SV_ERR_BAD_REQUEST, "filters.%.64s: min "
                                    "and max must be numbers", key);
                if (mn) c->lo = json_number_value(mn);
                if (mx) c->hi = json_number_value(mx);
            }
        } else {
            return sv_error(q, SV_ERR_BAD_REQUEST, "filters.%.64s: expected a "
                            "list, {min, max}, {in} or {not_in}", key);
        }
        if (list) {
            if (!json_is_array(list) || !json_array_size(list))
                return sv_error(q, SV_ERR_BAD_REQUEST, "filters.%.64s: expected "
                                "a non-empty list of strings", key);
            size_t n = json_array_size(list);
            const char **vals = rk_arena_alloc(&q->w->arena, n * sizeof *vals);
            if (!vals) return sv_error(q, SV_ERR_UNAVAILABLE, "out of memory");
            for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(list, i);
                if (!json_is_string(e))
                    return sv_error(q, SV_ERR_BAD_REQUEST, "filters.%.64s[%zu]: "
                                    "expected a string", key, i);
                vals[i] = json_string_value(e);
            }
            c->values = vals;
            c->nvalues = n;
        }
        out->n++;
    }
    rk_filter f2 = {out->c, out->n};
    rk_err err = {0};
    if (rk_merge_filter_check(&f2, s->schema, &err))
        return sv_error(q, SV_ERR_BAD_REQUEST, "filters: %s", err.msg);
    return 0;
}

/* ---- ranking ---------------------------------------------------------------- */

typedef struct ranked {
    uint32_t item;
    float score;
    uint8_t source;
    uint8_t explore;
    uint32_t row;       /* index into the feature vectors, UINT32_MAX = none */
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->item < y->item ? -1 : x->item > y->item;
}

/* Features and scores of n candidates with the ranker m; fills rk[i].score
 * and rk[i].row. ext[i] (may be NULL entries) are external ids for items
 * without a dense id; feats (may be NULL) caller-supplied per-item score
 * slots. */
static int rank_candidates(sv_req *q, rk_reader *r, sv_model *m,
                           const rk_feat_request *fr, ranked *rk,
                           const char *const *ext, const float *feats, size_t n,
                           rk_err *err)
{
    sv_worker *w = q->w;
    rk_feat_source *src = sv_worker_source(w, m->spec);
    if (!src) return rk_err_set(err, RK_ENOMEM, "features: out of memory");
    if (sv_worker_fvecs(w, n)) return rk_err_set(err, RK_ENOMEM, "out of memory");
    rk_feat_item *items = rk_arena_alloc(&w->arena, (n ? n : 1) * sizeof *items);
    float *sc = rk_arena_alloc(&w->arena, (n ? n : 1) * (m->nscores + 1) * sizeof *sc);
    float *out = rk_arena_alloc(&w->arena, (n ? n : 1) * sizeof *out);
    if (!items || !sc || !out) return rk_err_set(err, RK_ENOMEM, "out of memory");
    uint64_t t0 = rk_clock_mono_ns();
    for (size_t i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof items[i]);
        if (rk[i].item != UINT32_MAX) {
            /* Aggregates are keyed by the external id; the dense id only
             * saves the dictionary lookup of the item record. */
            items[i].has_dense = 1;
            items[i].dense = rk[i].item;
            if (ext && ext[i]) {
                items[i].id = ext[i];
                items[i].len = strlen(ext[i]);
            } else if (sv_idcache_get(q->srv->ids, r, rk[i].item, &items[i].id,
                                      &items[i].len)) {
                items[i].id = NULL;
                items[i].len = 0;
                items[i].has_dense = 0;
            }
        } else {
            items[i].id = ext[i];
            items[i].len = strlen(ext[i]);
        }
        float *row = sc + i * (m->nscores + 1);
        for (uint32_t j = 0; j < m->nscores; j++) {
            int sidx = m->score_src[j];
            row[j] = feats ? feats[i * (m->nscores + 1) + j]
                     : sidx == 0 || sidx == (int)rk[i].source ? rk[i].score
                                                             : NAN;
        }
        items[i].scores = m->nscores ? row : NULL;
    }
    rk_feat_source_set_reader(src, r);
    int rc = rk_feat_compute_batch(src, fr, items, n, w->fv, err);
    rk_feat_source_set_reader(src, NULL);
    uint64_t t1 = rk_clock_mono_ns();
    if (!rc) rc = rk_ranker_predict(m->ranker, w->fv, n, out, err);
    uint64_t t2 = rk_clock_mono_ns();
    sv_hist_add(&q->srv->m.stage[1], t1 - t0);
    sv_hist_add(&q->srv->m.stage[2], t2 - t1);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        rk[i].score = out[i];
        rk[i].row = (uint32_t)i;
    }
    atomic_fetch_add(&q->srv->m.candidates_total, n);
    atomic_store(&q->srv->fallbacks, 0);
    if (n) {
        /* Running average cost per candidate (fixed point, ns x 16). */
        uint64_t per = (t2 - t0) * 16 / n;
        uint64_t old = atomic_load(&q->srv->rank_cost16);
        atomic_store(&q->srv->rank_cost16, old ? (old * 7 + per) / 8 : per);
    }
    return 0;
}

/* ---- response ---------------------------------------------------------------- */

static void explain_item(rk_buf *b, const sv_model *m, const rk_fvec *x)
{
    (void)rk_buf_puts(b, ",\"features\":{");
    uint32_t nd = rk_feat_ndense(m->spec);
    for (uint32_t j = 0; j < nd && j < x->ndense; j++) {
        if (j) (void)rk_buf_putc(b, ',');
        sv_json_str(b, rk_feat_dense_name(m->spec, j));
        (void)rk_buf_putc(b, ':');
        sv_json_num(b, x->dense[j]);
    }
    (void)rk_buf_printf(b, "},\"sparse_features\":%u", x->nsparse);
}

static void flog_add(sv_req *q, const sv_model *m, const char *user,
                     const char *ctx, size_t ctx_len, const char *exp,
                     const char *var, const ranked *rk, const char *const *ids,
                     size_t n)
{
    rk_server *s = q->srv;
    rk_flog_item *it = rk_arena_alloc(&q->w->arena, (n ? n : 1) * sizeof *it);
    if (!it) {
        atomic_fetch_add(&s->m.flog_failed, 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        it[i].item = ids[i];
        it[i].position = (int32_t)i;
        it[i].score = isfinite(rk[i].score) ? rk[i].score : 0.0f;
        if (rk[i].row != UINT32_MAX) it[i].x = q->w->fv[rk[i].row];
        else memset(&it[i].x, 0, sizeof it[i].x);
    }
    rk_flog_entry e;
    memset(&e, 0, sizeof e);
    e.request_id = q->request_id;
    e.ts_ms = q->now_ms;
    e.user = user ? user : "";
    e.model = m ? m->name : "";
    e.model_version = m ? m->version : 0;
    e.experiment = exp ? exp : "";
    e.arm = var ? var : "";
    e.context = ctx;
    e.context_len = ctx_len;
    e.nitems = (uint32_t)n;
    e.items = it;
    rk_err err = {0};
    pthread_mutex_lock(&s->flog_mu);
    int rc = rk_flog_record(s->flog_batch, &e, &err);
    pthread_mutex_unlock(&s->flog_mu);
    if (rc) {
        atomic_fetch_add(&s->m.flog_failed, 1);
        rk_log(s->log, RK_LOG_DEBUG, "serve", "feature log: %s", err.msg);
    }
}

/* Remembers what m served so its labels can be scored when they arrive. */
static void online_add(sv_req *q, const sv_model *m, const ranked *rk,
                       const char *const *ids, size_t n)
{
    float *sc = rk_arena_alloc(&q->w->arena, (n ? n : 1) * sizeof *sc);
    const rk_fvec **x = rk_arena_alloc(&q->w->arena, (n ? n : 1) * sizeof *x);
    if (!sc || !x) return;
    for (size_t i = 0; i < n; i++) {
        sc[i] = rk[i].score;
        x[i] = rk[i].row != UINT32_MAX ? &q->w->fv[rk[i].row] : NULL;
    }
    sv_online_served(q->srv, q->request_id, q->now_ms, m, ids, sc, x, n);
}

/* ---- /v1/recommend ---------------------------------------------------------- */

static const char *const rec_keys[] = {"user", "n", "context", "exclude",
                                       "filters", "explain", "deadline_ms",
                                       "ts", NULL};

typedef struct req_common {
    const char *user;
    size_t user_len;
    uint64_t n;
    const char *ctx;       /* compact JSON of context, or NULL */
    size_t ctx_len;
    int explain;
} req_common;

static int parse_context(sv_req *q, req_common *c)
{
    json_t *ctx = sv_field(q, "context");
    c->ctx = NULL;
    c->ctx_len = 0;
    if (!ctx || json_is_null(ctx)) return 0;
    if (!json_is_object(ctx))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field 'context': expected an "
                        "object");
    /* jansson allocates through the allocator it was given (rankd's
     * counting one when hooked): release with its own free function. */
    json_malloc_t jm;
    json_free_t jf;
    json_get_alloc_funcs(&jm, &jf);
    char *d = json_dumps(ctx, JSON_COMPACT);
    if (!d) return sv_error(q, SV_ERR_UNAVAILABLE, "out of memory");
    size_t n = strlen(d);
    if (n > RK_MAX_CONTEXT) {
        jf(d);
        return sv_error(q, SV_ERR_LIMIT_EXCEEDED, "field 'context': %zu bytes, "
                        "at most %d", n, RK_MAX_CONTEXT);
    }
    c->ctx = rk_arena_strndup(&q->w->arena, d, n);
    jf(d);
    if (!c->ctx) return sv_error(q, SV_ERR_UNAVAILABLE, "out of memory");
    c->ctx_len = n;
    return 0;
}

/* Field "ts": the time the request is ranked as of (features, label
 * window, feature log). Accepted only under serve.clock: event, where it
 * also moves the server's clock forward; a wall-clock server ranks now. */
static int parse_ts(sv_req *q)
{
    json_t *t = sv_field(q, "ts");
    if (!t || json_is_null(t)) return 0;
    if (!q->srv->o.clock_event)
        return sv_error(q, SV_ERR_BAD_REQUEST, "field 'ts': a request time is "
                        "accepted only when serve.clock is event (this server "
                        "ranks at its wall clock)");
    int64_t ms = 0;
    rk_err err = {0};
    if (rk_io_json_time("ts", t, &ms, &err))
        return sv_error(q, SV_ERR_BAD_REQUEST, "%s", err.msg);
    if (ms < 0) return sv_error(q, SV_ERR_BAD_REQUEST, "field 'ts': before 1970");
    sv_clock_seen(q->srv, ms);
    q->now_ms = ms;
    return 0;
}

int sv_h_recommend(sv_req *q)
{
    rk_server *s = q->srv;
    sv_worker *w = q->w;
    if (!q->json || !json_is_object(q->json))
        return sv_error(q, SV_ERR_BAD_REQUEST, "body: expected a JSON object "
                        "like {\"user\": \"u1\", \"n\": 10}");
    if (sv_check_keys(q, q->json, "body", rec_keys)) return -1;
    req_common c = {0};
    c.n = 10;
    if (sv_get_str(q, q->json, "user", &c.user, &c.user_len, RK_ID_MAX) < 0 ||
        sv_get_uint(q, q->json, "n", 1, s->o.max_n, &c.n) < 0 ||
        sv_get_bool(q, q->json, "explain", &c.explain) < 0 ||
        parse_context(q, &c) || parse_ts(q))
        return -1;
    double deadline_ms = s->o.deadline_ms;
    json_t *dl = sv_field(q, "deadline_ms");
    if (dl && !json_is_null(dl)) {
        if (!json_is_number(dl) || !(json_number_value(dl) > 0) ||
            json_number_value(dl) > 60000)
            return sv_error(q, SV_ERR_BAD_REQUEST, "field 'deadline_ms': "
                            "expected a number in (0, 60000]");
        deadline_ms = json_number_value(dl);
    }
    filt fl;
    if (parse_filters(q, sv_field(q, "filters"), &fl)) return -1;
    json_t *ex = sv_field(q, "exclude");
    size_t nex = 0;
    uint32_t *exclude = NULL;
    rk_reader *r;
    rk_err err = {0};
    int rc = rk_store_reader(s->store, &r, &err);
    if (rc) return sv_error_rk(q, rc, &err);
    if (ex && !json_is_null(ex)) {
        if (!json_is_array(ex)) {
            rk_reader_close(r);
            return sv_error(q, SV_ERR_BAD_REQUEST, "field 'exclude': expected "
                            "a list of item ids");
        }
        size_t n = json_array_size(ex);
        if (n > MAX_EXCLUDE) {
            rk_reader_close(r);
            return sv_error(q, SV_ERR_LIMIT_EXCEEDED, "field 'exclude': %zu "
                            "ids, at most %d", n, MAX_EXCLUDE);
        }
        exclude = rk_arena_alloc(&w->arena, (n ? n : 1) * sizeof *exclude);
        for (size_t i = 0; exclude && i < n; i++) {
            json_t *e = json_array_get(ex, i);
            if (!json_is_string(e)) {
                rk_reader_close(r);
                return sv_error(q, SV_ERR_BAD_REQUEST, "exclude[%zu]: expected "
                                "a string", i);
            }
            uint32_t id;
            if (!rk_reader_lookup(r, RK_ENTITY_ITEM, json_string_value(e),
                                  json_string_length(e), &id))
                exclude[nex++] = id;
        }
        qsort(exclude, nex, sizeof *exclude, sv_cmp_u32);
    }
    uint32_t user = 0;
    int has_user = c.user && !rk_reader_lookup(r, RK_ENTITY_USER, c.user, c.user_len, &user);

    /* A/B assignment, then the models for this request. */
    int exp = -1, var = -1;
    if (c.user) sv_ab_assign(s, c.user, c.user_len, &exp, &var);
    int rslot = 0;
    uint32_t ncand = s->o.candidates;
    if (exp >= 0) {
        const sv_variant *v = &s->exps[exp].v[var];
        if (v->ranker_slot >= 0) rslot = v->ranker_slot;
        if (v->candidates) ncand = v->candidates;
    }
    if (ncand < c.n) ncand = (uint32_t)c.n;
    sv_model *m = sv_slot_acquire(&s->slots[rslot]);

    uint64_t budget = (uint64_t)(deadline_ms * 1e6);
    rk_candidate *cands = rk_arena_alloc(&w->arena, ncand * sizeof *cands);
    size_t nc = 0;
    if (!cands) rc = rk_err_set(&err, RK_ENOMEM, "out of memory");
    uint64_t t0 = rk_clock_mono_ns();
    if (!rc) rc = sv_retrieve(s, q, has_user, user, ncand, cands,
                              &nc, &err);
    sv_hist_add(&s->m.stage[0], rk_clock_mono_ns() - t0);
    if (rc) {
        sv_model_release(m);
        rk_reader_close(r);
        return sv_error_rk(q, rc, &err);
    }
    /* Request-level exclusions and filters before ranking. */
    rk_filter f2 = {fl.c, fl.n};
    size_t k = 0;
    for (size_t i = 0; i < nc; i++) {
        uint32_t it = cands[i].item;
        if (blocked(s, it)) continue;
        if (nex && bsearch(&it, exclude, nex, sizeof *exclude, sv_cmp_u32)) continue;
        if (fl.n) {
            rk_entity_view v;
            rk_entity_view empty = {0};
            if (rk_reader_entity(r, RK_ENTITY_ITEM, it, &v)) v = empty;
            if (!rk_merge_filter_match(&f2, &v)) continue;
        }
        cands[k++] = cands[i];
    }
    nc = k;

    /* Deadline: decide how many candidates the ranker can afford. */
    sv_degrade deg = SV_DEG_NONE;
    uint64_t spent = rk_clock_mono_ns() - q->t0_ns;
    uint64_t per16 = atomic_load(&s->rank_cost16);
    uint64_t per = per16 ? per16 / 16 : 2000;
    size_t nrank = m ? nc : 0;
    if (m && nc) {
        uint64_t avail = spent < budget * 9 / 10 ? budget * 9 / 10 - spent : 0;
        size_t afford = (size_t)(avail / (per ? per : 1));
        if (afford < nc) {
            if (afford >= c.n && afford >= 10) {
                nrank = afford;
                deg = SV_DEG_FEWER;
            } else if (atomic_fetch_add(&s->fallbacks, 1) % 16 == 15) {
                /* The estimate only moves when something is ranked: one
                 * fallback in 16 ranks a small batch instead, so a passing
                 * slowdown cannot leave the estimate stuck high. */
                nrank = nc < 32 ? nc : (c.n > 32 ? c.n : 32);
                if (nrank > nc) nrank = nc;
                deg = SV_DEG_FEWER;
            } else {
                nrank = 0;
                deg = SV_DEG_TRENDING;
            }
        }
    }
    /* The trending fallback may answer more items than survived retrieval. */
    size_t rkcap = (nc > c.n ? nc : (size_t)c.n) + s->o.explore_slots + 1;
    ranked *rk = rk_arena_alloc(&w->arena, rkcap * sizeof *rk);
    if (!rk) rc = rk_err_set(&err, RK_ENOMEM, "out of memory");
    size_t nr = 0;
    rk_feat_request fr;
    memset(&fr, 0, sizeof fr);
    fr.user = c.user;
    fr.user_len = c.user ? c.user_len : 0;
    fr.ts_ms = q->now_ms;
    fr.context = c.ctx;
    fr.context_len = c.ctx_len;
    if (!rc && deg == SV_DEG_TRENDING) {
        /* Unranked fallback: trending, minus what the user has seen. */
        size_t tcap = c.n * 4 + s->o.history + 64;
        rk_candidate *t = rk_arena_alloc(&w->arena, tcap * sizeof *t);
        size_t nt = t ? gen_copy(s, RK_SRC_TRENDING, t, tcap) : 0;
        hist_buf h;
        if (user_history(s, w, user, has_user, &h)) h.n = 0;
        for (size_t i = 0; i < nt && nr < c.n; i++) {
            uint32_t it = t[i].item;
            int skip = blocked(s, it) ||
                       (nex && bsearch(&it, exclude, nex, sizeof *exclude, sv_cmp_u32));
            for (size_t j = 0; !skip && j < h.n; j++) skip = h.items[j] == it;
            if (!skip && fl.n) {
                rk_entity_view v;
                rk_entity_view empty = {0};
                if (rk_reader_entity(r, RK_ENTITY_ITEM, it, &v)) v = empty;
                skip = !rk_merge_filter_match(&f2, &v);
            }
            if (skip) continue;
            rk[nr++] = (ranked){it, t[i].score, RK_SRC_TRENDING, 0, UINT32_MAX};
        }
        if (!nr)
            for (size_t i = 0; i < nc && nr < c.n; i++)
                rk[nr++] = (ranked){cands[i].item, cands[i].score,
                                    cands[i].source, 0, UINT32_MAX};
    } else if (!rc) {
        size_t take = m ? nrank : nc;
        for (size_t i = 0; i < take; i++)
            rk[nr++] = (ranked){cands[i].item, cands[i].score, cands[i].source,
                                0, UINT32_MAX};
        if (m && nr) rc = rank_candidates(q, r, m, &fr, rk, NULL, NULL, nr, &err);
        if (!rc && m) qsort(rk, nr, sizeof *rk, cmp_ranked);
    }
    uint64_t t3 = rk_clock_mono_ns();
    /* Rules: at most N per category, then exploration slots. */
    size_t nout = 0;
    ranked *fin = rk_arena_alloc(&w->arena, (c.n + 1) * sizeof *fin);
    if (!fin && !rc) rc = rk_err_set(&err, RK_ENOMEM, "out of memory");
    uint64_t *cat_h = NULL;
    uint32_t *cat_n = NULL;
    if (!rc && s->o.max_per_category && s->cat_ok) {
        cat_h = rk_arena_alloc(&w->arena, (c.n + 1) * sizeof *cat_h);
        cat_n = rk_arena_alloc(&w->arena, (c.n + 1) * sizeof *cat_n);
    }
    size_t ncats = 0;
    for (size_t i = 0; !rc && i < nr && nout < c.n; i++) {
        if (cat_h && cat_n) {
            rk_entity_view v;
            uint64_t h = 0;
            if (!rk_reader_entity(r, RK_ENTITY_ITEM, rk[i].item, &v))
                for (uint32_t a = 0; a < v.nattrs; a++)
                    if (v.attrs[a].attr == s->cat_attr && v.attrs[a].str)
                        h = rk_hash64(v.attrs[a].str, v.attrs[a].len, 7) | 1;
            if (h) {
                size_t j = 0;
                while (j < ncats && cat_h[j] != h) j++;
                if (j == ncats) {
                    cat_h[ncats] = h;
                    cat_n[ncats++] = 0;
                }
                if (cat_n[j] >= s->o.max_per_category) continue;
                cat_n[j]++;
            }
        }
        fin[nout++] = rk[i];
    }
    if (!rc && s->o.explore_slots && nout && deg != SV_DEG_TRENDING) {
        uint32_t slots = s->o.explore_slots;
        if (slots > nout / 2) slots = (uint32_t)(nout / 2);
        rk_candidate fr2[64];
        size_t nf = gen_copy(s, RK_SRC_FRESH, fr2, 64);
        hist_buf h;
        if (user_history(s, w, user, has_user, &h)) h.n = 0;
        /* Deterministic per request: start from a hash of its id. */
        size_t start = nf ? rk_hash64(q->request_id, strlen(q->request_id), 3) % nf : 0;
        uint32_t placed = 0;
        for (size_t t = 0; t < nf && placed < slots; t++) {
            uint32_t it = fr2[(start + t) % nf].item;
            int dup = blocked(s, it);
            for (size_t j = 0; !dup && j < nout; j++) dup = fin[j].item == it;
            for (size_t j = 0; !dup && j < h.n; j++) dup = h.items[j] == it;
            if (!dup && nex) dup = bsearch(&it, exclude, nex, sizeof *exclude, sv_cmp_u32) != NULL;
            if (dup) continue;
            /* Insert at evenly spaced positions, pushing the ranked items
             * down (the last one falls off when the answer is full). */
            size_t pos = (size_t)(placed + 1) * nout / (slots + 1);
            size_t last = nout < c.n ? nout : nout - 1;
            memmove(&fin[pos + 1], &fin[pos], (last - pos) * sizeof *fin);
            if (nout < c.n) nout++;
            fin[pos] = (ranked){it, NAN, RK_SRC_FRESH, 1, UINT32_MAX};
            placed++;
        }
    }
    sv_hist_add(&s->m.stage[3], rk_clock_mono_ns() - t3);
    if (rc) {
        sv_model_release(m);
        rk_reader_close(r);
        return sv_error_rk(q, rc, &err);
    }
    atomic_fetch_add(&s->m.degraded[deg], 1);

    /* Response. */
    const char **ids = rk_arena_alloc(&w->arena, (nout ? nout : 1) * sizeof *ids);
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"items\":[");
    for (size_t i = 0; ids && i < nout; i++) {
        const char *ext;
        size_t el;
        if (sv_idcache_get(s->ids, r, fin[i].item, &ext, &el)) {
            ext = "";
            el = 0;
        }
        ids[i] = rk_arena_strndup(&w->arena, ext, el);
        if (!ids[i]) ids[i] = "";
        (void)rk_buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
        (void)rk_buf_put_json_str(b, ext, el);
        (void)rk_buf_puts(b, ",\"score\":");
        sv_json_num(b, fin[i].score);
        (void)rk_buf_printf(b, ",\"source\":\"%s\"", rk_source_name(fin[i].source));
        if (fin[i].explore) (void)rk_buf_puts(b, ",\"explore\":true");
        if (c.explain && m && fin[i].row != UINT32_MAX)
            explain_item(b, m, &w->fv[fin[i].row]);
        (void)rk_buf_putc(b, '}');
    }
    (void)rk_buf_puts(b, "],\"model\":");
    if (m && deg != SV_DEG_TRENDING)
        (void)rk_buf_printf(b, "{\"name\":\"%s\",\"version\":%u}", m->name,
                            m->version);
    else
        (void)rk_buf_puts(b, "null");
    (void)rk_buf_puts(b, ",\"variant\":");
    if (exp >= 0) {
        sv_json_str(b, s->exps[exp].v[var].name);
        (void)rk_buf_puts(b, ",\"experiment\":");
        sv_json_str(b, s->exps[exp].name);
    } else {
        (void)rk_buf_puts(b, "null");
    }
    if (deg != SV_DEG_NONE)
        (void)rk_buf_printf(b, ",\"degraded\":\"%s\"",
                            deg == SV_DEG_FEWER ? "fewer_candidates" : "trending");
    if (!has_user) (void)rk_buf_puts(b, ",\"cold_start\":true");
    if (c.explain)
        (void)rk_buf_printf(b, ",\"explain\":{\"candidates\":%zu,\"ranked\":%zu,"
                            "\"elapsed_us\":%.1f,\"deadline_ms\":%g}", nc,
                            deg == SV_DEG_TRENDING ? (size_t)0 : (m ? nrank : 0),
                            (double)(rk_clock_mono_ns() - q->t0_ns) / 1e3,
                            deadline_ms);
    (void)rk_buf_putc(b, '}');
    /* What was served feeds the drift monitor's live window. */
    uint32_t ukey = sv_monitor_user_key(q, c.user, c.user_len);
    for (size_t i = 0; m && deg != SV_DEG_TRENDING && i < nout; i++)
        if (fin[i].row != UINT32_MAX)
            sv_monitor_observe(m, &w->fv[fin[i].row], fin[i].score, q->now_ms, ukey,
                               fin[i].item);
    if (s->o.log_features && ids && nout)
        flog_add(q, deg == SV_DEG_TRENDING ? NULL : m, c.user, c.ctx, c.ctx_len,
                 exp >= 0 ? s->exps[exp].name : NULL,
                 exp >= 0 ? s->exps[exp].v[var].name : NULL, fin, ids, nout);
    if (m && deg != SV_DEG_TRENDING && ids && nout) online_add(q, m, fin, ids, nout);
    if (exp >= 0) sv_ab_served(s, q->request_id, exp, var);
    sv_model_release(m);
    rk_reader_close(r);
    return 0;
}

/* ---- /v1/rank ----------------------------------------------------------------- */

static const char *const rank_keys[] = {"user", "candidates", "context", "n",
                                        "explain", "query", "ts", NULL};

int sv_h_rank(sv_req *q)
{
    rk_server *s = q->srv;
    sv_worker *w = q->w;
    if (!q->json || !json_is_object(q->json))
        return sv_error(q, SV_ERR_BAD_REQUEST, "body: expected a JSON object "
                        "like {\"candidates\": [\"i1\", \"i2\"]}");
    if (sv_check_keys(q, q->json, "body", rank_keys)) return -1;
    req_common c = {0};
    const char *query = NULL;
    size_t qlen = 0;
    if (sv_get_str(q, q->json, "user", &c.user, &c.user_len, RK_ID_MAX) < 0 ||
        sv_get_str(q, q->json, "query", &query, &qlen, 4096) < 0 ||
        sv_get_bool(q, q->json, "explain", &c.explain) < 0 ||
        parse_context(q, &c) || parse_ts(q))
        return -1;
    json_t *cl = sv_field(q, "candidates");
    if (!cl || !json_is_array(cl) || !json_array_size(cl))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field 'candidates': expected a "
                        "non-empty list of item ids or {id, features}");
    size_t n = json_array_size(cl);
    c.n = n;
    if (sv_get_uint(q, q->json, "n", 1, n, &c.n) < 0) return -1;
    sv_model *m = sv_slot_acquire(&s->slots[0]);
    int exp = -1, var = -1;
    if (c.user) sv_ab_assign(s, c.user, c.user_len, &exp, &var);
    if (exp >= 0 && s->exps[exp].v[var].ranker_slot >= 0) {
        sv_model_release(m);
        m = sv_slot_acquire(&s->slots[s->exps[exp].v[var].ranker_slot]);
    }
    if (!m) return sv_error(q, SV_ERR_UNAVAILABLE, "no ranking model is loaded "
                            "(serve.ranker names none, or it is not trained)");
    uint32_t ns = m->nscores + 1;
    ranked *rk = rk_arena_alloc(&w->arena, n * sizeof *rk);
    const char **ext = rk_arena_alloc(&w->arena, n * sizeof *ext);
    float *feats = rk_arena_alloc(&w->arena, n * ns * sizeof *feats);
    rk_reader *r = NULL;
    rk_err err = {0};
    int rc = (!rk || !ext || !feats) ? rk_err_set(&err, RK_ENOMEM, "out of memory")
                                     : rk_store_reader(s->store, &r, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *e = json_array_get(cl, i);
        json_t *id = json_is_object(e) ? json_object_get(e, "id") : e;
        json_t *fo = json_is_object(e) ? json_object_get(e, "features") : NULL;
        if (json_is_object(e) && json_object_size(e) != 1u + (fo != NULL)) {
            sv_model_release(m);
            rk_reader_close(r);
            return sv_error(q, SV_ERR_BAD_REQUEST, "candidates[%zu]: expected "
                            "{id, features}", i);
        }
        if (!id || !json_is_string(id) || !json_string_length(id) ||
            json_string_length(id) > RK_ID_MAX ||
            memchr(json_string_value(id), 0, json_string_length(id))) {
            sv_model_release(m);
            rk_reader_close(r);
            return sv_error(q, SV_ERR_BAD_REQUEST, "candidates[%zu]: expected "
                            "an item id string (1 to %d bytes)", i, RK_ID_MAX);
        }
        ext[i] = json_string_value(id);
        uint32_t d;
        rk[i] = (ranked){rk_reader_lookup(r, RK_ENTITY_ITEM, ext[i],
                                          json_string_length(id), &d)
                             ? UINT32_MAX : d,
                         NAN, RK_SRC_EXTERNAL, 0, UINT32_MAX};
        float *row = feats + i * ns;
        for (uint32_t j = 0; j < ns; j++) row[j] = NAN;
        if (fo && !json_is_null(fo)) {
            if (!json_is_object(fo)) {
                sv_model_release(m);
                rk_reader_close(r);
                return sv_error(q, SV_ERR_BAD_REQUEST, "candidates[%zu].features:"
                                " expected an object of name: number", i);
            }
            const char *key;
            json_t *v;
            json_object_foreach(fo, key, v) {
                uint32_t slot;
                if (!json_is_number(v)) {
                    sv_model_release(m);
                    rk_reader_close(r);
                    return sv_error(q, SV_ERR_BAD_REQUEST, "candidates[%zu]."
                                    "features.%.64s: expected a number", i, key);
                }
                if (rk_feat_score_slot(m->spec, key, &slot) || slot >= m->nscores) {
                    sv_model_release(m);
                    rk_reader_close(r);
                    return sv_error(q, SV_ERR_BAD_REQUEST, "candidates[%zu]."
                                    "features: the model has no score feature "
                                    "'%.64s'", i, key);
                }
                row[slot] = (float)json_number_value(v);
            }
        }
    }
    rk_feat_request fr;
    memset(&fr, 0, sizeof fr);
    fr.user = c.user;
    fr.user_len = c.user ? c.user_len : 0;
    fr.ts_ms = q->now_ms;
    fr.context = c.ctx;
    fr.context_len = c.ctx_len;
    fr.query = query;
    fr.query_len = qlen;
    if (!rc) rc = rank_candidates(q, r, m, &fr, rk, ext, feats, n, &err);
    if (rc) {
        sv_model_release(m);
        rk_reader_close(r);
        return sv_error_rk(q, rc, &err);
    }
    /* Keep the caller's id with each row through the sort. */
    for (size_t i = 0; i < n; i++) rk[i].item = (uint32_t)i;
    qsort(rk, n, sizeof *rk, cmp_ranked);
    const char **ids = rk_arena_alloc(&w->arena, n * sizeof *ids);
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"items\":[");
    for (size_t i = 0; i < c.n; i++) {
        if (ids) ids[i] = ext[rk[i].item];
        (void)rk_buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
        sv_json_str(b, ext[rk[i].item]);
        (void)rk_buf_puts(b, ",\"score\":");
        sv_json_num(b, rk[i].score);
        (void)rk_buf_puts(b, ",\"source\":\"external\"");
        if (c.explain) explain_item(b, m, &w->fv[rk[i].row]);
        (void)rk_buf_putc(b, '}');
    }
    (void)rk_buf_printf(b, "],\"model\":{\"name\":\"%s\",\"version\":%u},"
                        "\"variant\":", m->name, m->version);
    if (exp >= 0) sv_json_str(b, s->exps[exp].v[var].name);
    else (void)rk_buf_puts(b, "null");
    (void)rk_buf_putc(b, '}');
    uint32_t ukey = sv_monitor_user_key(q, c.user, c.user_len);
    for (size_t i = 0; i < c.n; i++)
        sv_monitor_observe(m, &w->fv[rk[i].row], rk[i].score, q->now_ms, ukey,
                           rk[i].item);
    if (s->o.log_features && ids)
        flog_add(q, m, c.user, c.ctx, c.ctx_len,
                 exp >= 0 ? s->exps[exp].name : NULL,
                 exp >= 0 ? s->exps[exp].v[var].name : NULL, rk, ids, c.n);
    if (ids && c.n) online_add(q, m, rk, ids, c.n);
    if (exp >= 0) sv_ab_served(s, q->request_id, exp, var);
    sv_model_release(m);
    rk_reader_close(r);
    return 0;
}

/* ---- /v1/similar/{item} --------------------------------------------------------- */

int sv_h_similar(sv_req *q)
{
    rk_server *s = q->srv;
    sv_worker *w = q->w;
    uint64_t n = 10;
    const char *nv;
    size_t nlen;
    if (sv_query_get(q, "n", &nv, &nlen) &&
        (rk_parse_u64(nv, nlen, &n) || n < 1 || n > s->o.max_n))
        return sv_error(q, SV_ERR_BAD_REQUEST, "query parameter n: expected "
                        "an integer in [1, %u]", s->o.max_n);
    rk_reader *r;
    rk_err err = {0};
    int rc = rk_store_reader(s->store, &r, &err);
    if (rc) return sv_error_rk(q, rc, &err);
    uint32_t item;
    if (rk_reader_lookup(r, RK_ENTITY_ITEM, q->param, strlen(q->param), &item)) {
        rk_reader_close(r);
        return sv_error(q, SV_ERR_UNKNOWN_ITEM, "unknown item '%.64s'", q->param);
    }
    sv_model *cm = sv_slot_acquire(&s->slots[2]);
    sv_model *fm = sv_slot_acquire(&s->slots[1]);
    size_t cap = n * 2 + 8, got = 0;
    rk_candidate *c = rk_arena_alloc(&w->arena, cap * sizeof *c);
    const char *source = "none";
    if (c && cm) {
        rk_seed seed = {item, 1.0f};
        if (!rk_covis_query(cm->covis, &seed, 1, cap, c, &got) && got)
            source = "covis";
    }
    if (c && !got && fm && item < rk_ials_nitems(fm->ials)) {
        uint32_t k = rk_ials_k(fm->ials);
        const float *v = rk_ials_item_factors(fm->ials) + (size_t)item * k;
        uint32_t *lab = rk_arena_alloc(&w->arena, (cap + 1) * sizeof *lab);
        float *sc = rk_arena_alloc(&w->arena, (cap + 1) * sizeof *sc);
        uint32_t g = 0;
        if (lab && sc && !rk_ann_search(fm->ann, v, (uint32_t)cap + 1,
                                        (uint32_t)(cap * 2 + 2), lab, sc, &g)) {
            for (uint32_t i = 0; i < g; i++)
                if (lab[i] != item && got < cap)
                    c[got++] = (rk_candidate){lab[i], sc[i], RK_SRC_ANN, 0, 0};
            source = "ann";
        }
    }
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"item\":");
    sv_json_str(b, q->param);
    (void)rk_buf_puts(b, ",\"items\":[");
    size_t k = 0;
    for (size_t i = 0; i < got && k < n; i++) {
        if (blocked(s, c[i].item) || c[i].item == item) continue;
        const char *ext;
        size_t el;
        if (sv_idcache_get(s->ids, r, c[i].item, &ext, &el)) continue;
        (void)rk_buf_puts(b, k++ ? ",{\"id\":" : "{\"id\":");
        (void)rk_buf_put_json_str(b, ext, el);
        (void)rk_buf_puts(b, ",\"score\":");
        sv_json_num(b, c[i].score);
        (void)rk_buf_putc(b, '}');
    }
    (void)rk_buf_printf(b, "],\"source\":\"%s\"}", source);
    sv_model_release(cm);
    sv_model_release(fm);
    rk_reader_close(r);
    return 0;
}
