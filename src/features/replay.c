/*
 * replay.c — point-in-time replay: the in-memory aggregate state, the
 * time-ordered walk over the event log, fitting, and training sets built
 * from replay or from labelled-row datasets.
 *
 * The state holds the same records as the online store, updated by the
 * same rk__feat_agg_apply, so a vector computed from it at an event equals
 * one computed online after the same events. It is bounded by max_keys:
 * when full an arbitrary record is evicted (a clock hand over the map's
 * slots) and counted, since from then on replay and online differ.
 *
 * Replay order is (ts, seq). The walk first collects (ts, seq) of every
 * event in range (16 bytes each, bounded), sorts when the log is not
 * already in time order, and then reads events in runs of consecutive
 * sequence numbers, so an in-order log costs one sequential scan.
 */
#include <math.h>
#include <stdlib.h>

#include "feat_int.h"

#define FIT_MAX_VOCAB_CANDIDATES (4u << 20)
#define DEFAULT_MAX_EVENTS ((size_t)256 << 20)

/* ---- state ------------------------------------------------------------------ */

struct rk_feat_state {
    const rk_feat_spec *s;
    rk_map *m;                  /* 17-byte key -> record (rk_malloc'd) */
    size_t max_keys, bytes, hand;
    uint64_t evicted, refused;
    feat_sketch sk;
    feat_evops ev;
    agg_upd *gu;                /* one group's updates */
    unsigned char *tmp;         /* a record being created */
    /* Key part hashes by dense id, computed once per replay: ids and
     * attributes are resolved through the reader for every event
     * otherwise. hv flags which entries are set. */
    RK_VEC(uint64_t) uh, ih, ah;
    RK_VEC(uint8_t) uhv, ihv, ahv;
    uint32_t nkattr;
    uint32_t kattr[FEAT_MAX_PARTS * 8];
    rk_err *err;
};

int rk_feat_state_create(rk_feat_state **out, const rk_feat_spec *s,
                         size_t max_keys)
{
    *out = NULL;
    rk_feat_state *st = rk_calloc(1, sizeof *st);
    if (!st) return RK_ENOMEM;
    st->s = s;
    st->max_keys = max_keys ? max_keys : (size_t)s->replay_max_keys;
    uint32_t maxrec = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        if (s->g[gi].rec_size > maxrec) maxrec = s->g[gi].rec_size;
        for (uint32_t k = 0; k < s->g[gi].nparts; k++) {
            const kpart *p = &s->g[gi].part[k];
            if (p->kind != KP_ITEM_ATTR) continue;
            uint32_t j = 0;
            while (j < st->nkattr && st->kattr[j] != p->attr) j++;
            if (j == st->nkattr && j < sizeof st->kattr / sizeof *st->kattr)
                st->kattr[st->nkattr++] = p->attr;
        }
    }
    int rc = rk_map_create(&st->m, st->max_keys);
    if (!rc) rc = rk__feat_sketch_init(&st->sk, s);
    if (!rc) rc = rk__feat_evops_init(&st->ev, s);
    if (!rc && !(st->tmp = rk_malloc(maxrec ? maxrec : 1))) rc = RK_ENOMEM;
    if (!rc && !(st->gu = rk_malloc((st->ev.cap ? st->ev.cap : 1) * sizeof *st->gu)))
        rc = RK_ENOMEM;
    if (rc) {
        rk_feat_state_destroy(st);
        return rc;
    }
    *out = st;
    return 0;
}

void rk_feat_state_destroy(rk_feat_state *st)
{
    if (!st) return;
    if (st->m) {
        size_t it = 0;
        uint64_t v;
        while (rk_map_next(st->m, &it, NULL, NULL, &v)) rk_free((void *)(uintptr_t)v);
        rk_map_destroy(st->m);
    }
    rk__feat_sketch_free(&st->sk);
    if (st->ev.state) rk__feat_evops_free(&st->ev);
    rk_free(st->tmp);
    rk_free(st->gu);
    rk_vec_free(&st->uh);
    rk_vec_free(&st->ih);
    rk_vec_free(&st->ah);
    rk_vec_free(&st->uhv);
    rk_vec_free(&st->ihv);
    rk_vec_free(&st->ahv);
    rk_free(st);
}

void rk_feat_state_stats_get(const rk_feat_state *st, rk_feat_state_stats *o)
{
    o->keys = rk_map_size(st->m);
    o->bytes = st->bytes;
    o->evicted = st->evicted;
    o->refused = st->refused;
}

const unsigned char *rk__feat_state_get(const rk_feat_state *st,
                                        const unsigned char *key, size_t *len)
{
    uint64_t v;
    if (rk_map_get(st->m, key, FEAT_KEY_LEN, &v)) return NULL;
    const unsigned char *rec = (const unsigned char *)(uintptr_t)v;
    const agroup *g = rk__feat_group_by_layout(st->s, rk__rd64(key + 1));
    *len = g ? g->rec_size : 0;
    return rec;
}

static int grow_cache(void *vec, size_t elem, size_t need)
{
    struct { void *v; size_t n, cap, max; } *c = vec;
    if (need <= c->n) return 0;
    int rc = rk__vec_grow(&c->v, &c->cap, 0, elem, need);
    if (rc) return rc;
    memset((char *)c->v + c->n * elem, 0, (need - c->n) * elem);
    c->n = need;
    return 0;
}

/* The key part hash of a dense id's external id, cached. */
static int id_hash(rk_feat_state *st, rk_reader *r, rk_entity e, uint32_t id,
                   uint64_t *h)
{
    int user = e == RK_ENTITY_USER;
    void *hv = user ? (void *)&st->uh : (void *)&st->ih;
    void *fv = user ? (void *)&st->uhv : (void *)&st->ihv;
    int rc = grow_cache(hv, 8, (size_t)id + 1);
    if (!rc) rc = grow_cache(fv, 1, (size_t)id + 1);
    if (rc) return rk_err_set(st->err, rc, "features: replay: out of memory");
    uint64_t *hs = user ? st->uh.v : st->ih.v;
    uint8_t *fs = user ? st->uhv.v : st->ihv.v;
    if (!fs[id]) {
        const char *ext;
        size_t len;
        if ((rc = rk_reader_external(r, e, id, &ext, &len)))
            return rk_err_set(st->err, rc, "features: replay: %s", rk_reader_errmsg(r));
        hs[id] = rk__feat_part_hash(user ? KP_USER : KP_ITEM, ext, len);
        fs[id] = 1;
    }
    *h = hs[id];
    return 0;
}

typedef struct attr_arg {
    rk_feat_state *st;
    rk_reader *r;
    uint32_t item;
    int rc;
} attr_arg;

/* Item attribute part hashes, cached per item: flag 1 = has value,
 * 2 = none. */
static int item_attr_cached(void *arg, uint32_t attr, uint64_t *hash)
{
    attr_arg *a = arg;
    rk_feat_state *st = a->st;
    uint32_t j = 0;
    while (j < st->nkattr && st->kattr[j] != attr) j++;
    if (j == st->nkattr) return -1;
    size_t i = (size_t)a->item * st->nkattr + j;
    int rc = grow_cache(&st->ah, 8, (size_t)(a->item + 1) * st->nkattr);
    if (!rc) rc = grow_cache(&st->ahv, 1, (size_t)(a->item + 1) * st->nkattr);
    if (rc) {
        a->rc = rk_err_set(st->err, rc, "features: replay: out of memory");
        return -1;
    }
    if (!st->ahv.v[i]) {
        rk_entity_view v;
        rc = rk_reader_entity(a->r, RK_ENTITY_ITEM, a->item, &v);
        if (rc && rc != RK_ENOTFOUND) {
            a->rc = rk_err_set(st->err, rc, "features: replay: %s", rk_reader_errmsg(a->r));
            return -1;
        }
        for (uint32_t k = 0; k < st->nkattr; k++) {
            size_t ik = (size_t)a->item * st->nkattr + k;
            st->ahv.v[ik] = 2;
            for (uint32_t x = 0; !rc && x < v.nattrs; x++)
                if (v.attrs[x].attr == st->kattr[k] &&
                    v.attrs[x].type == RK_ATTR_CATEGORICAL) {
                    st->ah.v[ik] = rk__feat_part_hash(KP_ITEM_ATTR, v.attrs[x].str,
                                                      v.attrs[x].len);
                    st->ahv.v[ik] = 1;
                }
        }
    }
    if (st->ahv.v[i] != 1) return -1;
    *hash = st->ah.v[i];
    return 0;
}

static void evict_one(rk_feat_state *st)
{
    const void *k;
    size_t kl;
    uint64_t v;
    if (!rk_map_next(st->m, &st->hand, &k, &kl, &v)) {
        st->hand = 0;
        if (!rk_map_next(st->m, &st->hand, &k, &kl, &v)) return;
    }
    unsigned char key[FEAT_KEY_LEN];
    memcpy(key, k, FEAT_KEY_LEN);
    const agroup *g = rk__feat_group_by_layout(st->s, rk__rd64(key + 1));
    if (g) st->bytes -= g->rec_size;
    rk_free((void *)(uintptr_t)v);
    rk_map_del(st->m, key, FEAT_KEY_LEN);
    st->evicted++;
}

static int apply_feat_event(rk_feat_state *st, const feat_event *fe,
                            rk_reader *r, uint32_t item)
{
    const rk_feat_spec *s = st->s;
    attr_arg aa = {st, r, item, 0};
    int rc = rk__feat_event_ops(s, fe, item_attr_cached, &aa, &st->ev);
    if (rc || aa.rc) return aa.rc ? aa.rc : rk_err_set(st->err, rc, "features: replay");
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        if (st->ev.state[gi] != 1) continue;
        const agroup *g = &s->g[gi];
        uint32_t n = 0;
        for (uint32_t i = 0; i < st->ev.nupd; i++)
            if (st->ev.ug[i] == gi) st->gu[n++] = st->ev.upd[i];
        if (!n) continue;
        unsigned char key[FEAT_KEY_LEN];
        rk__feat_agg_key(g, st->ev.parts[gi], key);
        uint64_t keyhash = rk__rd64(key + 9), v;
        int created;
        if (rk_map_get(st->m, key, FEAT_KEY_LEN, &v) == 0) {
            unsigned char *rec = (unsigned char *)(uintptr_t)v;
            if (rk__feat_agg_apply(s, g, &st->sk, keyhash, rec, g->rec_size, fe->ts,
                                   st->gu, n, rec, &created)) {
                /* Expired and not re-admitted: the store deletes it too. */
                rk_free(rec);
                rk_map_del(st->m, key, FEAT_KEY_LEN);
                st->bytes -= g->rec_size;
                st->refused++;
            }
            continue;
        }
        if (rk__feat_agg_apply(s, g, &st->sk, keyhash, NULL, 0, fe->ts, st->gu, n,
                               st->tmp, &created)) {
            st->refused++;
            continue;
        }
        unsigned char *rec = rk_memdup(st->tmp, g->rec_size);
        if (!rec) return rk_err_set(st->err, RK_ENOMEM, "features: replay: out of memory");
        for (;;) {
            rc = rk_map_put(st->m, key, FEAT_KEY_LEN, (uint64_t)(uintptr_t)rec);
            if (rc != RK_ELIMIT || rk_map_size(st->m) == 0) break;
            evict_one(st);
        }
        if (rc) {
            rk_free(rec);
            return rk_err_set(st->err, rc, "features: replay: out of memory");
        }
        st->bytes += g->rec_size;
    }
    return 0;
}

int rk_feat_state_apply(rk_feat_state *st, rk_reader *r, const rk_event *ev,
                        rk_err *err)
{
    const rk_feat_spec *s = st->s;
    st->err = err;
    if (ev->type >= s->ntypes || !s->nroute[ev->type]) return 0;
    feat_event fe = {0};
    fe.type = ev->type;
    fe.has_user = fe.has_item = 1;
    int rc = id_hash(st, r, RK_ENTITY_USER, ev->user, &fe.uh);
    if (!rc) rc = id_hash(st, r, RK_ENTITY_ITEM, ev->item, &fe.ih);
    if (rc) return rc;
    fe.ts = ev->ts_ms;
    fe.value = ev->value;
    fe.has_value = (uint8_t)(ev->has_value != 0);
    fe.ctx = ev->context;
    fe.ctx_len = ev->context_len;
    return apply_feat_event(st, &fe, r, ev->item);
}

/* ---- replay ---------------------------------------------------------------------- */

void rk_feat_replay_opts_default(rk_feat_replay_opts *o)
{
    memset(o, 0, sizeof *o);
    o->until_ms = INT64_MAX;
    o->max_events = DEFAULT_MAX_EVENTS;
}

typedef struct tsseq {
    int64_t ts;
    uint64_t seq;
} tsseq;

typedef struct index_build {
    RK_VEC(tsseq) v;
    int64_t from, until;
    int sorted;
} index_build;

static int index_event(void *arg, const rk_event *ev)
{
    index_build *b = arg;
    if (ev->ts_ms < b->from || ev->ts_ms >= b->until) return 0;
    if (b->v.n && ev->ts_ms < b->v.v[b->v.n - 1].ts) b->sorted = 0;
    tsseq e = {ev->ts_ms, ev->seq};
    int rc = rk_vec_push(&b->v, e);
    return rc ? rc : 0;
}

static int tsseq_cmp(const void *a, const void *b)
{
    const tsseq *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

typedef struct walk {
    const tsseq *idx;
    size_t n, k;
    rk_feat_state *st;
    rk_feat_source *src;
    rk_reader *r;
    rk_feat_replay_fn fn;
    void *arg;
    int rc;      /* the callback's or an apply error */
    rk_err *err;
} walk;

#define WALK_BREAK 0x7fff1234

static int walk_event(void *arg, const rk_event *ev)
{
    walk *w = arg;
    if (w->k >= w->n || ev->seq != w->idx[w->k].seq) return WALK_BREAK;
    w->k++;
    if (w->fn && (w->rc = w->fn(w->arg, w->src, ev))) return WALK_BREAK;
    if ((w->rc = rk_feat_state_apply(w->st, w->r, ev, w->err))) return WALK_BREAK;
    return 0;
}

int rk_feat_replay(const rk_feat_spec *spec, rk_reader *r,
                   const rk_feat_replay_opts *o, rk_feat_replay_fn fn,
                   void *arg, rk_feat_state_stats *stats, rk_err *err)
{
    rk_feat_replay_opts d;
    if (!o) {
        rk_feat_replay_opts_default(&d);
        o = &d;
    }
    index_build b = {{0}, o->from_ms, o->until_ms, 1};
    b.v.max = o->max_events ? o->max_events : DEFAULT_MAX_EVENTS;
    int rc = rk_reader_scan_events(r, 0, index_event, &b);
    if (rc) {
        rk_vec_free(&b.v);
        if (rc == RK_ELIMIT || rc == RK_ENOMEM)
            return rk_err_set(err, rc, "features: replay: more than %zu events in "
                              "range (max_events) or out of memory", b.v.max);
        return rk_err_set(err, rc, "features: replay: %s", rk_reader_errmsg(r));
    }
    if (!b.sorted) qsort(b.v.v, b.v.n, sizeof *b.v.v, tsseq_cmp);
    rk_feat_state *st = NULL;
    rk_feat_source *src = NULL;
    if ((rc = rk_feat_state_create(&st, spec, o->max_keys)) ||
        (rc = rk_feat_source_create(&src, spec))) {
        rk_feat_state_destroy(st);
        rk_vec_free(&b.v);
        return rk_err_set(err, rc, "features: replay: out of memory");
    }
    rk_feat_source_set_reader(src, r);
    rk_feat_source_set_state(src, st);
    walk w = {b.v.v, b.v.n, 0, st, src, r, fn, arg, 0, err};
    while (!rc && w.k < w.n) {
        size_t k0 = w.k;
        rc = rk_reader_scan_events(r, w.idx[w.k].seq, walk_event, &w);
        if (rc == WALK_BREAK) rc = w.rc;
        else if (rc) rk_err_set(err, rc, "features: replay: %s", rk_reader_errmsg(r));
        if (!rc && w.k == k0) {
            rc = rk_err_set(err, RK_ECORRUPT, "features: replay: event %llu vanished",
                            (unsigned long long)w.idx[w.k].seq);
        }
    }
    if (stats) rk_feat_state_stats_get(st, stats);
    rk_feat_source_destroy(src);
    rk_feat_state_destroy(st);
    rk_vec_free(&b.v);
    return rc;
}

/* ---- fitting --------------------------------------------------------------------- */

typedef struct numacc {
    uint64_t n, seen;
    double rawsum, mean, m2;
    double *res;
    size_t nres;
    uint64_t rng;
} numacc;

struct feat_fitter {
    const rk_feat_spec *s;
    numacc *na;                 /* by raw slot */
    rk_map **cm;                /* by feature: value hash -> count */
    size_t max_samples;
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    return rk__mix64(z);
}

int rk__feat_fit_num(feat_fitter *fz, uint32_t fi, const double *raw)
{
    const feat *f = &fz->s->f[fi];
    for (uint32_t k = 0; k < f->nout; k++) {
        double x = raw[k];
        if (isnan(x)) continue;
        numacc *a = &fz->na[f->raw0 + k];
        double y = rk__feat_prep(&f->tf, NULL, x);
        a->n++;
        a->rawsum += x;
        double d = y - a->mean;
        a->mean += d / (double)a->n;
        a->m2 += d * (y - a->mean);
        if (!f->tf.buckets) continue;
        /* Reservoir sampling (algorithm R) with a fixed seed. */
        if (!a->res && !(a->res = rk_malloc(fz->max_samples * sizeof *a->res)))
            return RK_ENOMEM;
        if (a->nres < fz->max_samples) {
            a->res[a->nres++] = y;
        } else {
            uint64_t j = splitmix(&a->rng) % (a->seen + 1);
            if (j < fz->max_samples) a->res[j] = y;
        }
        a->seen++;
    }
    return 0;
}

int rk__feat_fit_cat(feat_fitter *fz, uint32_t fi, const uint64_t *v, uint32_t n)
{
    rk_map *m = fz->cm[fi];
    for (uint32_t i = 0; i < n; i++) {
        unsigned char k[8];
        rk__le64(k, v[i]);
        uint64_t c = 0;
        rk_map_get(m, k, 8, &c);
        int rc = rk_map_put(m, k, 8, c + 1);
        /* A full candidate map keeps counting the values it has. */
        if (rc && rc != RK_ELIMIT) return rc;
    }
    return 0;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct vcount {
    uint64_t h, c;
} vcount;

/* Most frequent first, ties by hash, so vocabularies are deterministic. */
static int vcount_cmp(const void *a, const void *b)
{
    const vcount *x = a, *y = b;
    if (x->c != y->c) return x->c > y->c ? -1 : 1;
    return x->h < y->h ? -1 : x->h > y->h;
}

static int vhash_cmp(const void *a, const void *b)
{
    const vcount *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h;
}

static int fitter_finish(feat_fitter *fz, rk_feat_spec *s)
{
    for (uint32_t i = 0; i < s->nfeat; i++) {
        feat *f = &s->f[i];
        for (uint32_t k = 0; f->vt == VT_NUM && f->num_fits && k < f->nout; k++) {
            numacc *a = &fz->na[f->raw0 + k];
            numfit *p = &f->fit[k];
            p->count = a->n;
            p->mean_raw = a->n ? a->rawsum / (double)a->n : 0;
            p->mu = a->n ? a->mean : 0;
            double var = a->n ? a->m2 / (double)a->n : 0;
            p->sd = var > 1e-24 ? sqrt(var) : 1;
            if (f->tf.buckets && a->nres) {
                qsort(a->res, a->nres, sizeof *a->res, dbl_cmp);
                if (!(p->edges = rk_malloc(f->tf.buckets * sizeof *p->edges)))
                    return RK_ENOMEM;
                uint32_t ne = 0;
                for (uint32_t q = 1; q < f->tf.buckets; q++) {
                    double e = a->res[(size_t)((double)q * (double)a->nres / f->tf.buckets)];
                    if (!ne || e > p->edges[ne - 1]) p->edges[ne++] = e;
                }
                p->nedges = ne;
            }
        }
        if (f->vt == VT_CAT && f->enc != ENC_HASH) {
            rk_map *m = fz->cm[i];
            size_t n = rk_map_size(m), it = 0, j = 0;
            vcount *vc = rk_malloc((n ? n : 1) * sizeof *vc);
            if (!vc) return RK_ENOMEM;
            const void *key;
            uint64_t c;
            while (rk_map_next(m, &it, &key, NULL, &c))
                if (c >= f->min_count) {
                    vc[j].h = rk__rd64(key);
                    vc[j++].c = c;
                }
            qsort(vc, j, sizeof *vc, vcount_cmp);
            if (j > f->vocab_max) j = f->vocab_max;
            uint64_t *h = rk_malloc((j ? j : 1) * sizeof *h);
            if (!h) {
                rk_free(vc);
                return RK_ENOMEM;
            }
            for (size_t x = 0; x < j; x++) h[x] = vc[x].h;
            int rc = rk__feat_vocab_build(&f->voc, h, (uint32_t)j);
            rk_free(h);
            rk_free(vc);
            if (rc) return rc;
        }
    }
    return 0;
}

static void fitter_free(feat_fitter *fz)
{
    if (fz->na)
        for (uint32_t i = 0; i < fz->s->nraw; i++) rk_free(fz->na[i].res);
    rk_free(fz->na);
    if (fz->cm)
        for (uint32_t i = 0; i < fz->s->nfeat; i++) rk_map_destroy(fz->cm[i]);
    rk_free(fz->cm);
}

/* BM25 statistics of one text_match feature over the item catalog. */
typedef struct bmfit {
    const feat *f;
    rk_map *df;
    RK_VEC(uint64_t) doc;
    double ndocs, tokens;
    int rc;
} bmfit;

static int bm_tok(void *arg, const char *w, size_t n)
{
    bmfit *b = arg;
    b->tokens++;
    return rk_vec_push(&b->doc, rk__feat_vhash(w, n));
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int bm_entity(void *arg, const rk_entity_view *v)
{
    bmfit *b = arg;
    if (v->flags & RK_ENTITY_DELETED) return 0;
    b->doc.n = 0;
    for (uint32_t k = 0; k < b->f->ntattr; k++)
        for (uint32_t i = 0; i < v->nattrs; i++) {
            const rk_attr_val *a = &v->attrs[i];
            if (a->attr != b->f->tattr[k]) continue;
            if (a->type == RK_ATTR_CATEGORICAL_LIST) {
                for (uint32_t x = 0; x < a->n; x++)
                    if ((b->rc = rk_feat_tokenize(a->list[x], a->list_lens[x], bm_tok, b)))
                        return b->rc;
            } else if (a->type == RK_ATTR_TEXT || a->type == RK_ATTR_CATEGORICAL) {
                if ((b->rc = rk_feat_tokenize(a->str, a->len, bm_tok, b))) return b->rc;
            }
        }
    b->ndocs++;
    qsort(b->doc.v, b->doc.n, sizeof *b->doc.v, u64_cmp);
    for (size_t i = 0; i < b->doc.n; i++) {
        if (i && b->doc.v[i] == b->doc.v[i - 1]) continue;
        unsigned char k[8];
        rk__le64(k, b->doc.v[i]);
        uint64_t c = 0;
        rk_map_get(b->df, k, 8, &c);
        int rc = rk_map_put(b->df, k, 8, c + 1);
        if (rc && rc != RK_ELIMIT) return b->rc = rc;
    }
    return 0;
}

static int fit_bm25(feat *f, rk_reader *r, rk_err *err)
{
    bmfit b = {f, NULL, {0}, 0, 0, 0};
    int rc = rk_map_create(&b.df, FIT_MAX_VOCAB_CANDIDATES);
    if (rc) return rk_err_set(err, rc, "features: out of memory");
    rc = rk_reader_scan_entities(r, RK_ENTITY_ITEM, bm_entity, &b);
    if (rc) {
        rk_map_destroy(b.df);
        rk_vec_free(&b.doc);
        return b.rc ? rk_err_set(err, b.rc, "features: BM25 fit: %s", rk_strerror(b.rc))
                    : rk_err_set(err, rc, "features: BM25 fit: %s", rk_reader_errmsg(r));
    }
    /* Tokens in one document only are left out: an absent token reads as
     * df = 1, the same value. */
    size_t n = 0, it = 0;
    const void *key;
    uint64_t c;
    while (rk_map_next(b.df, &it, &key, NULL, &c)) n += c >= 2;
    f->bm.hash = rk_malloc((n ? n : 1) * sizeof *f->bm.hash);
    f->bm.df = rk_malloc((n ? n : 1) * sizeof *f->bm.df);
    vcount *vc = rk_malloc((n ? n : 1) * sizeof *vc);
    if (!f->bm.hash || !f->bm.df || !vc) {
        rk_free(vc);
        rk_map_destroy(b.df);
        rk_vec_free(&b.doc);
        return rk_err_set(err, RK_ENOMEM, "features: out of memory");
    }
    size_t j = 0;
    it = 0;
    while (rk_map_next(b.df, &it, &key, NULL, &c))
        if (c >= 2) {
            vc[j].h = rk__rd64(key);
            vc[j++].c = c;
        }
    qsort(vc, j, sizeof *vc, vhash_cmp); /* by hash, for binary search */
    for (size_t i = 0; i < j; i++) {
        f->bm.hash[i] = vc[i].h;
        f->bm.df[i] = vc[i].c > UINT32_MAX ? UINT32_MAX : (uint32_t)vc[i].c;
    }
    f->bm.n = (uint32_t)j;
    f->bm.ndocs = b.ndocs;
    f->bm.avgdl = b.ndocs ? b.tokens / b.ndocs : 0;
    rk_free(vc);
    rk_map_destroy(b.df);
    rk_vec_free(&b.doc);
    return 0;
}

void rk_feat_fit_opts_default(rk_feat_fit_opts *o)
{
    memset(o, 0, sizeof *o);
    o->until_ms = INT64_MAX;
    o->max_samples = 100000;
    o->seed = 42;
}

typedef struct fitwalk {
    feat_fitter *fz;
    rk_reader *r;
    int only_exposures;
    int failed;              /* an error message was set */
    int64_t from;
    const rk_feat_spec *s;
    rk_feat_source *src;  /* rows */
    rk_err *err;
} fitwalk;

/* The request a replayed event makes: its user, time and context, and
 * its item. Strings borrow the reader. */
static int event_request(rk_reader *r, const rk_event *ev, rk_feat_request *req,
                         rk_feat_item *item, rk_err *err)
{
    memset(req, 0, sizeof *req);
    memset(item, 0, sizeof *item);
    int rc = rk_reader_external(r, RK_ENTITY_USER, ev->user, &req->user, &req->user_len);
    if (!rc)
        rc = rk_reader_external(r, RK_ENTITY_ITEM, ev->item, &item->id, &item->len);
    if (rc) return rk_err_set(err, rc, "features: %s", rk_reader_errmsg(r));
    req->ts_ms = ev->ts_ms;
    req->context = ev->context;
    req->context_len = ev->context_len;
    item->has_dense = 1;
    item->dense = ev->item;
    return 0;
}

static int fit_event(void *arg, rk_feat_source *src, const rk_event *ev)
{
    fitwalk *w = arg;
    if (ev->ts_ms < w->from) return 0;
    if (w->only_exposures &&
        (ev->type >= w->s->ntypes || w->s->type_role[ev->type] != RK_ROLE_EXPOSURE))
        return 0;
    rk_feat_request req;
    rk_feat_item item;
    int rc = event_request(w->r, ev, &req, &item, w->err);
    return rc ? rc : rk__feat_observe(src, &req, &item, w->fz, w->err);
}

static int fit_row(void *arg, const rk_row *row)
{
    fitwalk *w = arg;
    rk_feat_request req = {0};
    req.row = row;
    int rc = rk__feat_observe(w->src, &req, NULL, w->fz, w->err);
    if (rc) w->failed = 1;
    return rc;
}

typedef struct anyexp {
    const rk_feat_spec *s;
    int64_t from, until;
} anyexp;

static int find_exposure(void *arg, const rk_event *ev)
{
    anyexp *a = arg;
    return ev->ts_ms >= a->from && ev->ts_ms < a->until && ev->type < a->s->ntypes &&
           a->s->type_role[ev->type] == RK_ROLE_EXPOSURE;
}

int rk_feat_fit(rk_feat_spec *s, rk_reader *r, const rk_feat_fit_opts *o,
                rk_err *err)
{
    rk_feat_fit_opts d;
    if (!o) {
        rk_feat_fit_opts_default(&d);
        o = &d;
    }
    rk__feat_fit_clear(s);
    feat_fitter fz = {s, NULL, NULL, o->max_samples ? o->max_samples : 100000};
    int rc = 0;
    fz.na = rk_calloc(s->nraw ? s->nraw : 1, sizeof *fz.na);
    fz.cm = rk_calloc(s->nfeat ? s->nfeat : 1, sizeof *fz.cm);
    if (!fz.na || !fz.cm) rc = RK_ENOMEM;
    for (uint32_t i = 0; !rc && i < s->nraw; i++)
        fz.na[i].rng = o->seed ^ rk__mix64(i + 1);
    for (uint32_t i = 0; !rc && i < s->nfeat; i++)
        if (s->f[i].vt == VT_CAT && s->f[i].enc != ENC_HASH)
            rc = rk_map_create(&fz.cm[i], FIT_MAX_VOCAB_CANDIDATES);
    if (rc) {
        fitter_free(&fz);
        return rk_err_set(err, rc, "features: out of memory");
    }
    /* Catalog statistics first: BM25 values are observed below. */
    for (uint32_t i = 0; !rc && i < s->nfeat; i++)
        if (s->f[i].kind == FK_TEXT_MATCH) rc = fit_bm25(&s->f[i], r, err);
    fitwalk w = {&fz, r, 1, 0, o->from_ms, s, NULL, err};
    if (!rc && o->dataset) {
        if (!(rc = rk_feat_source_create(&w.src, s))) {
            rk_feat_source_set_reader(w.src, r);
            rc = rk_reader_scan_rows(r, o->dataset, fit_row, &w);
            if (rc == RK_ENOTFOUND)
                rk_err_set(err, rc, "features: no dataset '%s'", o->dataset);
            else if (rc && !w.failed)
                rk_err_set(err, rc, "features: fit: %s", rk_reader_errmsg(r));
            rk_feat_source_destroy(w.src);
        } else {
            rk_err_set(err, rc, "features: out of memory");
        }
    } else if (!rc) {
        anyexp a = {s, o->from_ms, o->until_ms};
        rc = rk_reader_scan_events(r, 0, find_exposure, &a);
        if (rc < 0) {
            rk_err_set(err, rc, "features: fit: %s", rk_reader_errmsg(r));
        } else {
            w.only_exposures = rc == 1;
            rk_feat_replay_opts ro;
            rk_feat_replay_opts_default(&ro);
            ro.until_ms = o->until_ms;
            /* Earlier events build state; only those in range are seen. */
            rc = rk_feat_replay(s, r, &ro, fit_event, &w, NULL, err);
        }
    }
    if (!rc && (rc = fitter_finish(&fz, s))) rk_err_set(err, rc, "features: out of memory");
    fitter_free(&fz);
    if (rc) {
        rk__feat_fit_clear(s);
        return rc;
    }
    s->fitted = 1;
    if ((rc = rk__feat_rehash(s))) {
        rk__feat_fit_clear(s);
        return rk_err_set(err, rc, "features: out of memory");
    }
    return 0;
}

/* ---- training sets ------------------------------------------------------------------ */

void rk_feat_label_opts_default(rk_feat_label_opts *o)
{
    memset(o, 0, sizeof *o);
    o->window_ms = 3600000;
    o->until_ms = INT64_MAX;
}

typedef struct posev {
    uint32_t user, item;
    int64_t ts;
    double w;
} posev;

static int posev_cmp(const void *a, const void *b)
{
    const posev *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return 0;
}

typedef struct tsbuild {
    const rk_feat_spec *s;
    rk_reader *r;
    const rk_feat_label_opts *lo;
    uint8_t expo[RK_MAX_EVENT_TYPES];
    double posw[RK_MAX_EVENT_TYPES];    /* 0 = not a positive */
    RK_VEC(posev) pos;
    int64_t max_ts;
    struct rk_trainset *out;
    rk_fvec x;
    uint64_t rows;
    rk_err *err;
} tsbuild;

static int collect_pos(void *arg, const rk_event *ev)
{
    tsbuild *b = arg;
    if (ev->ts_ms > b->max_ts) b->max_ts = ev->ts_ms;
    if (ev->type >= RK_MAX_EVENT_TYPES || b->posw[ev->type] <= 0) return 0;
    posev p = {ev->user, ev->item, ev->ts_ms, b->posw[ev->type]};
    return rk_vec_push(&b->pos, p);
}

/* Largest positive weight of (user, item) within [t, t + window]. */
static double label_of(const tsbuild *b, uint32_t user, uint32_t item, int64_t t)
{
    posev key = {user, item, t, 0};
    size_t lo = 0, hi = b->pos.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (posev_cmp(&b->pos.v[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    double w = 0;
    int64_t end = t > INT64_MAX - b->lo->window_ms ? INT64_MAX : t + b->lo->window_ms;
    for (size_t i = lo; i < b->pos.n; i++) {
        const posev *p = &b->pos.v[i];
        if (p->user != user || p->item != item || p->ts > end) break;
        if (p->w > w) w = p->w;
    }
    return w;
}

static int ts_row(void *arg, rk_feat_source *src, const rk_event *ev)
{
    tsbuild *b = arg;
    const rk_feat_label_opts *lo = b->lo;
    if (ev->type >= RK_MAX_EVENT_TYPES || !b->expo[ev->type] || ev->ts_ms < lo->from_ms ||
        ev->ts_ms >= lo->until_ms)
        return 0;
    if (!lo->keep_immature && ev->ts_ms > b->max_ts - lo->window_ms) return 0;
    rk_feat_request req;
    rk_feat_item item;
    int rc = event_request(b->r, ev, &req, &item, b->err);
    if (!rc) rc = rk_feat_compute(src, &req, &item, &b->x, b->err);
    if (rc) return rc;
    double w = label_of(b, ev->user, ev->item, ev->ts_ms);
    float label = w > 0 ? (lo->graded ? (float)w : 1.0f) : 0.0f;
    float weight = w > 0 && !lo->graded ? (float)w : 1.0f;
    uint64_t group = 0;
    if (ev->request_id) {
        group = rk_hash64(ev->request_id, ev->request_id_len, 0x67727031ull);
        if (!group) group = 1;
    }
    if ((rc = rk_trainset_add(b->out, &b->x, label, weight, group, ev->ts_ms)))
        return rk_err_set(b->err, rc, "features: training set: %s", rk_strerror(rc));
    b->rows++;
    return 0;
}

static int type_index(const rk_feat_spec *s, const char *name, uint32_t *t)
{
    for (uint32_t i = 0; i < s->ntypes; i++)
        if (!strcmp(s->type_names[i], name)) {
            *t = i;
            return 0;
        }
    return RK_ENOTFOUND;
}

int rk_feat_trainset_from_replay(const rk_feat_spec *spec, rk_reader *r,
                                 const rk_feat_label_opts *lo,
                                 struct rk_trainset *out, rk_err *err)
{
    rk_feat_label_opts d;
    if (!lo) {
        rk_feat_label_opts_default(&d);
        lo = &d;
    }
    if (rk_trainset_ndense(out) != spec->ndense ||
        rk_trainset_hash_bits(out) != spec->hash_bits)
        return rk_err_set(err, RK_EINVAL, "features: training set has %u dense "
                          "columns and %u hash bits, the spec %u and %u",
                          rk_trainset_ndense(out), rk_trainset_hash_bits(out),
                          spec->ndense, spec->hash_bits);
    if (lo->window_ms < 0)
        return rk_err_set(err, RK_EINVAL, "features: negative label window");
    if (spec->needs_fit && !spec->fitted)
        return rk_err_set(err, RK_ESTATE, "features: the spec needs fitting "
                          "(rk_feat_fit)");
    tsbuild *b = rk_calloc(1, sizeof *b);
    if (!b) return rk_err_set(err, RK_ENOMEM, "features: out of memory");
    b->s = spec;
    b->r = r;
    b->lo = lo;
    b->out = out;
    b->err = err;
    b->max_ts = INT64_MIN;
    uint32_t t;
    int rc = 0;
    if (lo->exposures) {
        for (size_t i = 0; !rc && lo->exposures[i]; i++) {
            if (type_index(spec, lo->exposures[i], &t) || t >= RK_MAX_EVENT_TYPES)
                rc = rk_err_set(err, RK_EINVAL, "features: unknown exposure event "
                                "type '%s'", lo->exposures[i]);
            else
                b->expo[t] = 1;
        }
    } else {
        for (t = 0; t < spec->ntypes && t < RK_MAX_EVENT_TYPES; t++)
            b->expo[t] = spec->type_role[t] == RK_ROLE_EXPOSURE;
    }
    if (lo->positives) {
        for (size_t i = 0; !rc && lo->positives[i]; i++) {
            if (type_index(spec, lo->positives[i], &t) || t >= RK_MAX_EVENT_TYPES)
                rc = rk_err_set(err, RK_EINVAL, "features: unknown positive event "
                                "type '%s'", lo->positives[i]);
            else if (lo->weights && !(lo->weights[i] > 0 && isfinite(lo->weights[i])))
                rc = rk_err_set(err, RK_EINVAL, "features: weight of '%s' must be > 0",
                                lo->positives[i]);
            else
                b->posw[t] = lo->weights ? lo->weights[i] : 1.0;
        }
    } else {
        for (t = 0; t < spec->ntypes && t < RK_MAX_EVENT_TYPES; t++)
            if (spec->type_role[t] == RK_ROLE_POSITIVE)
                b->posw[t] = spec->type_weight[t] > 0 ? spec->type_weight[t] : 1.0;
    }
    if (!rc) {
        rc = rk_reader_scan_events(r, 0, collect_pos, b);
        if (rc) rk_err_set(err, rc, "features: training set: %s",
                           rc == RK_ENOMEM ? "out of memory" : rk_reader_errmsg(r));
    }
    if (!rc) {
        qsort(b->pos.v, b->pos.n, sizeof *b->pos.v, posev_cmp);
        rk_feat_replay_opts ro;
        rk_feat_replay_opts_default(&ro);
        ro.until_ms = lo->until_ms;
        rc = rk_feat_replay(spec, r, &ro, ts_row, b, NULL, err);
    }
    rk_vec_free(&b->pos);
    rk_fvec_free(&b->x);
    rk_free(b);
    return rc;
}

typedef struct dsbuild {
    rk_feat_source *src;
    struct rk_trainset *out;
    rk_fvec x;
    rk_err *err;
    int failed;          /* an error message was set */
} dsbuild;

static int ds_row(void *arg, const rk_row *row)
{
    dsbuild *b = arg;
    rk_feat_request req = {0};
    req.row = row;
    int rc = rk_feat_compute(b->src, &req, NULL, &b->x, b->err);
    if (rc) {
        b->failed = 1;
        return rc;
    }
    uint64_t group = 0;
    if (row->group) {
        group = rk_hash64(row->group, row->group_len, 0x67727031ull);
        if (!group) group = 1;
    }
    /* Dataset rows carry no time; their position in the set stands for it,
     * so time splits and group ordering keep the file order. */
    int64_t pos = (int64_t)rk_trainset_rows(b->out);
    if ((rc = rk_trainset_add(b->out, &b->x, (float)row->label, 1.0f, group, pos))) {
        b->failed = 1;
        return rk_err_set(b->err, rc, "features: training set row %llu: %s",
                          (unsigned long long)row->seq, rk_strerror(rc));
    }
    return 0;
}

int rk_feat_trainset_from_dataset(const rk_feat_spec *spec, rk_reader *r,
                                  const char *dataset, struct rk_trainset *out,
                                  rk_err *err)
{
    if (rk_trainset_ndense(out) != spec->ndense ||
        rk_trainset_hash_bits(out) != spec->hash_bits)
        return rk_err_set(err, RK_EINVAL, "features: training set has %u dense "
                          "columns and %u hash bits, the spec %u and %u",
                          rk_trainset_ndense(out), rk_trainset_hash_bits(out),
                          spec->ndense, spec->hash_bits);
    dsbuild b = {NULL, out, {0}, err, 0};
    int rc = rk_feat_source_create(&b.src, spec);
    if (rc) return rk_err_set(err, rc, "features: out of memory");
    rk_feat_source_set_reader(b.src, r);
    rc = rk_reader_scan_rows(r, dataset, ds_row, &b);
    if (rc == RK_ENOTFOUND && !b.failed)
        rk_err_set(err, rc, "features: no dataset '%s'", dataset);
    else if (rc && !b.failed)
        rk_err_set(err, rc, "features: %s", rk_reader_errmsg(r));
    rk_fvec_free(&b.x);
    rk_feat_source_destroy(b.src);
    return rc;
}
