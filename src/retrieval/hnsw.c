/*
 * hnsw.c — the HNSW graph (Malkov & Yashunin 2016): insertion with the
 * neighbour-selection heuristic, layered search, and the structural check
 * of loaded graphs.
 *
 * Distances are negated inner products (lower is better), so the classic
 * "closest first" formulation carries over to maximum inner product.
 * The beam search keeps its candidates in one sorted array of at most L
 * live entries ("the pool", as in NSG/DiskANN) instead of the paper's two
 * heaps: an entry is expanded at most once, expansion proceeds from the
 * best unexpanded entry, and the search ends when every entry has been
 * expanded. This visits exactly what the two-heap version visits (a
 * candidate beyond the L-th best result can never be expanded there
 * either), with cheaper bookkeeping and no unbounded candidate heap.
 *
 * Tombstoned slots stay in the pool to guide the search but do not count
 * towards L and are never returned; a pool holds at most L live entries
 * plus some tombstones (pool_need in ann.c).
 *
 * Concurrency: searches run under the index's read lock and read links
 * directly. Parallel insertion (under the write lock, several inserters)
 * reads and writes each link list under its stripe lock and copies it
 * out; an inserter holds at most one stripe lock at a time, so there is no
 * lock order to get wrong. A slot's vector, level and upper block are
 * written before the slot is linked anywhere, and linking happens under a
 * stripe lock, so whoever finds a slot through a link sees them complete.
 */
#include <stdlib.h>
#include <string.h>

#include "retrieval/ann_int.h"

#define CAND_EXP (1u << 31)  /* entry already expanded */
#define CAND_DEAD (1u << 30) /* tombstone: guide only */
#define CAND_ID (CAND_DEAD - 1)

/* Pull cache lines ahead of use; no-ops where unsupported. */
#define PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define PF_AHEAD 4

size_t rk__hnsw_record_size(const rk_ann_params *p, size_t *vec_off)
{
    size_t links = 2 * (size_t)p->M * sizeof(uint32_t);
    size_t vec = p->quant == RK_ANN_INT8 ? sizeof(float) + p->dim
                                         : p->dim * sizeof(float);
    size_t raw = links + vec;
    size_t r64 = (raw + 63) & ~(size_t)63, r16 = (raw + 15) & ~(size_t)15;
    *vec_off = links;
    /* Whole cache lines when that costs at most 1/8 more memory: a record
     * then never straddles more lines than it needs. */
    return (r64 - raw) * 8 <= raw ? r64 : r16;
}

/* ---- distances -------------------------------------------------------------- */

/* Distance from a prepared float query to slot id. q8: int8 records. */
static inline float dist(const rk_ann *a, const float *q, uint32_t id, int q8)
{
    const unsigned char *v = rk__ann_vec(a, id);
    if (!q8) return -a->k.dot_f32(q, (const float *)(const void *)v, a->p.dim);
    float scale;
    memcpy(&scale, v, sizeof scale);
    return -scale * a->k.dot_f32_i8(q, (const int8_t *)(v + 4), a->p.dim);
}

/* Slot id's vector as floats: in place for float32 records, decoded into
 * buf for int8 ones. */
static const float *node_vec(const rk_ann *a, uint32_t id, float *buf)
{
    const unsigned char *v = rk__ann_vec(a, id);
    if (a->p.quant == RK_ANN_F32) return (const float *)(const void *)v;
    float scale;
    memcpy(&scale, v, sizeof scale);
    const int8_t *c = (const int8_t *)(v + 4);
    for (size_t i = 0; i < a->p.dim; i++) buf[i] = scale * (float)c[i];
    return buf;
}

/* Prefetches the lines of slot id's vector (at most 8). */
static inline void prefetch_vec(const rk_ann *a, uint32_t id)
{
    const unsigned char *v = rk__ann_vec(a, id);
    size_t bytes = a->rec_size - a->vec_off;
    if (bytes > 512) bytes = 512;
    for (size_t o = 0; o < bytes; o += 64) PREFETCH(v + o);
}

/* ---- the pool -------------------------------------------------------------------- */

typedef struct pool {
    rk__ann_cand *c;
    uint32_t size, live, L, phys, cur;
} pool;

static void pool_init(pool *p, rk__ann_scratch *s, uint32_t L)
{
    p->c = s->pool;
    p->size = p->live = p->cur = 0;
    p->L = L;
    /* Room for tombstones riding along; ann.c's pool_need reserved
     * phys + 1 entries (the insert happens before the trim). */
    p->phys = L + L / 2 + 8;
}

/* Whether an entry at distance d would be kept. */
static inline int pool_admits(const pool *p, float d)
{
    if (p->size == 0) return 1;
    if (p->live < p->L && p->size < p->phys) return 1;
    return d < p->c[p->size - 1].d;
}

static void pool_insert(pool *p, float d, uint32_t idf)
{
    rk__ann_cand *c = p->c;
    /* Branch-free upper bound (first entry farther than d): the
     * comparisons are unpredictable, and mispredictions cost more than
     * the search itself. The answer stays within [b, b + n]. */
    uint32_t lo = 0;
    if (p->size) {
        const rk__ann_cand *b = c;
        uint32_t n = p->size;
        while (n > 1) {
            uint32_t h = n / 2;
            b = b[h].d <= d ? b + h : b;
            n -= h;
        }
        lo = (uint32_t)(b - c) + (b->d <= d);
    }
    memmove(c + lo + 1, c + lo, (size_t)(p->size - lo) * sizeof *c);
    c[lo].d = d;
    c[lo].id = idf;
    p->size++;
    if (!(idf & CAND_DEAD)) p->live++;
    if (p->live > p->L) {
        /* Drop the worst live entry and the tombstones behind it. */
        for (;;) {
            uint32_t f = c[--p->size].id;
            if (!(f & CAND_DEAD)) {
                p->live--;
                break;
            }
        }
    } else if (p->size > p->phys) {
        if (!(c[p->size - 1].id & CAND_DEAD)) p->live--;
        p->size--;
    }
    /* With L live entries, tombstones beyond the worst are out of reach. */
    if (p->live >= p->L)
        while (p->size && (c[p->size - 1].id & CAND_DEAD)) p->size--;
    if (lo < p->cur) p->cur = lo;
}

static inline void pool_offer(const rk_ann *a, pool *p, float d, uint32_t id)
{
    if (pool_admits(p, d)) pool_insert(p, d, id | (a->dead[id] ? CAND_DEAD : 0));
}

/* ---- links ------------------------------------------------------------------------ */

static inline uint32_t max_links(const rk_ann *a, int lev)
{
    return lev ? a->p.M : a->M0;
}

static inline void lock_node(rk_ann *a, uint32_t id)
{
    pthread_mutex_lock(&a->stripes[id & (RK__ANN_STRIPES - 1)]);
}

static inline void unlock_node(rk_ann *a, uint32_t id)
{
    pthread_mutex_unlock(&a->stripes[id & (RK__ANN_STRIPES - 1)]);
}

/* Slot id's links at lev: in place, or a copy taken under its lock. The
 * stripe locks are the only thing a search inside a parallel insertion
 * changes, hence the cast away from const. */
static inline const uint32_t *read_links(const rk_ann *a, rk__ann_scratch *s,
                                         uint32_t id, int lev, int locked)
{
    const uint32_t *l = rk__ann_links(a, id, lev);
    if (!locked) return l;
    lock_node((rk_ann *)(uintptr_t)a, id);
    memcpy(s->links, l, max_links(a, lev) * sizeof *l);
    unlock_node((rk_ann *)(uintptr_t)a, id);
    return s->links;
}

static uint32_t count_links(const uint32_t *l, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && l[n] != RK__ANN_NONE) n++;
    return n;
}

/* ---- search ------------------------------------------------------------------------- */

static inline void new_epoch(rk__ann_scratch *s, uint32_t cap)
{
    if (++s->epoch == 0) {
        memset(s->visited, 0, (size_t)cap * sizeof *s->visited);
        s->epoch = 1;
    }
}

/* Greedy descent from ep through levels [top, bottom): the best node of
 * each level becomes the entry of the next. */
static inline uint32_t greedy(const rk_ann *a, rk__ann_scratch *s,
                              const float *q, uint32_t ep, float *epd, int top,
                              int bottom, int locked, int q8)
{
    float best = *epd;
    for (int lev = top; lev > bottom; lev--) {
        uint32_t m = a->p.M;
        for (int changed = 1; changed;) {
            changed = 0;
            const uint32_t *l = read_links(a, s, ep, lev, locked);
            for (uint32_t j = 0; j < m && l[j] != RK__ANN_NONE; j++) {
                uint32_t nb = l[j];
                float d = dist(a, q, nb, q8);
                if (d < best) {
                    best = d;
                    ep = nb;
                    changed = 1;
                }
            }
        }
    }
    *epd = best;
    return ep;
}

/* Beam search of level lev from the entries already in p (marked
 * visited by the caller, who also marks a node being inserted so that it
 * never links to itself). */
static inline __attribute__((always_inline)) void
beam(const rk_ann *a, rk__ann_scratch *s, const float *q, pool *p, int lev,
     int locked, int q8)
{
    uint16_t *vis = s->visited;
    const uint16_t ep = s->epoch;
    uint32_t maxl = max_links(a, lev);
    uint32_t *ids = s->ids;
    for (;;) {
        while (p->cur < p->size && (p->c[p->cur].id & CAND_EXP)) p->cur++;
        if (p->cur >= p->size) break;
        uint32_t node = p->c[p->cur].id & CAND_ID;
        p->c[p->cur].id |= CAND_EXP;
        /* The next candidate is likely the following entry: start
         * loading its links while this one is expanded. */
        if (!locked && p->cur + 1 < p->size)
            PREFETCH(rk__ann_links(a, p->c[p->cur + 1].id & CAND_ID, lev));
        const uint32_t *l = read_links(a, s, node, lev, locked);
        uint32_t m = 0;
        for (uint32_t j = 0; j < maxl; j++) {
            uint32_t nb = l[j];
            if (nb == RK__ANN_NONE) break;
            PREFETCH(vis + nb);
        }
        for (uint32_t j = 0; j < maxl; j++) {
            uint32_t nb = l[j];
            if (nb == RK__ANN_NONE) break;
            if (vis[nb] == ep) continue;
            vis[nb] = ep;
            ids[m++] = nb;
        }
/* Vectors are fetched a few neighbours ahead of their scoring: far
         * enough to overlap the misses, not so far that the prefetches
         * queue up behind full line-fill buffers (measured: 2 ahead and
         * all-at-once were both slower than 4). */
        for (uint32_t j = 0; j < m && j < PF_AHEAD; j++) prefetch_vec(a, ids[j]);
        for (uint32_t j = 0; j < m; j++) {
            if (j + PF_AHEAD < m) prefetch_vec(a, ids[j + PF_AHEAD]);
            float d = dist(a, q, ids[j], q8);
            pool_offer(a, p, d, ids[j]);
        }
    }
}

/* Level-0 search for a query: descend, then beam with L. */
static void search_q(const rk_ann *a, rk__ann_scratch *s, const float *q,
                     pool *p, int q8)
{
    float d = dist(a, q, a->entry, q8);
    uint32_t ep = greedy(a, s, q, a->entry, &d, a->max_level, 0, 0, q8);
    new_epoch(s, a->cap);
    s->visited[ep] = s->epoch;
    pool_offer(a, p, d, ep);
    beam(a, s, q, p, 0, 0, q8);
}

static int cmp_cand(const void *x, const void *y)
{
    const rk__ann_cand *a = x, *b = y;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    uint32_t ia = a->id & CAND_ID, ib = b->id & CAND_ID;
    return ia < ib ? -1 : ia > ib;
}

int rk__hnsw_search(const rk_ann *a, rk__ann_scratch *s, const float *q,
                    uint32_t k, uint32_t ef, uint32_t *ids, float *scores,
                    uint32_t *n_out)
{
    pool p;
    pool_init(&p, s, ef);
    int q8 = a->p.quant == RK_ANN_INT8;
    if (q8) search_q(a, s, q, &p, 1);
    else search_q(a, s, q, &p, 0);
    /* Keep the live entries, in order. */
    uint32_t m = 0;
    for (uint32_t i = 0; i < p.size; i++)
        if (!(p.c[i].id & CAND_DEAD)) p.c[m++] = p.c[i];
    if (a->fvec && a->rerank_on) {
        /* Re-rank: exact float scores for every live candidate. */
        for (uint32_t i = 0; i < m; i++) {
            uint32_t id = p.c[i].id & CAND_ID;
            p.c[i].d = -a->k.dot_f32(q, a->fvec + (size_t)id * a->p.dim, a->p.dim);
            p.c[i].id = id;
        }
        qsort(p.c, m, sizeof *p.c, cmp_cand);
    }
    if (m > k) m = k;
    for (uint32_t i = 0; i < m; i++) {
        ids[i] = p.c[i].id & CAND_ID;
        if (scores) scores[i] = -p.c[i].d;
    }
    *n_out = m;
    return 0;
}

/* ---- insertion ------------------------------------------------------------------------ */

/* Distance between two stored nodes: e against a selected node whose float
 * vector is sv. */
static inline float node_dist(const rk_ann *a, const float *sv, uint32_t e)
{
    return dist(a, sv, e, a->p.quant == RK_ANN_INT8);
}

/* The heuristic of the paper (hnswlib's getNeighborsByHeuristic2): walk
 * the candidates from the closest and keep one only if it is closer to
 * the base than to every one kept so far, which spreads links over
 * directions instead of piling them into one cluster. c is sorted by
 * distance to the base; at most max are kept in out. With max or fewer
 * candidates all are kept. */
static uint32_t select_neighbors(const rk_ann *a, rk__ann_scratch *s,
                                 const rk__ann_cand *c, uint32_t nc,
                                 uint32_t max, uint32_t *out)
{
    if (nc <= max) {
        for (uint32_t i = 0; i < nc; i++) out[i] = c[i].id & CAND_ID;
        return nc;
    }
    size_t dim = a->p.dim;
    const float *selv[2 * RK_ANN_MAX_M];
    uint32_t ns = 0;
    for (uint32_t i = 0; i < nc && ns < max; i++) {
        uint32_t e = c[i].id & CAND_ID;
        int good = 1;
        for (uint32_t j = 0; j < ns; j++) {
            if (node_dist(a, selv[j], e) < c[i].d) {
                good = 0;
                break;
            }
        }
        if (!good) continue;
        out[ns] = e;
        selv[ns] = node_vec(a, e, s->sel + ns * dim);
        ns++;
    }
    return ns;
}

static void sort_cands(rk__ann_cand *c, uint32_t n)
{
    /* Insertion sort: at most 2M + 1 entries, mostly in order already. */
    for (uint32_t i = 1; i < n; i++) {
        rk__ann_cand x = c[i];
        uint32_t j = i;
        while (j > 0 && cmp_cand(&c[j - 1], &x) > 0) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

/* Adds id to nb's list at lev, pruning with the heuristic when full. */
static void connect_back(rk_ann *a, rk__ann_scratch *s, uint32_t nb,
                         uint32_t id, int lev, int locked)
{
    uint32_t max = max_links(a, lev);
    if (locked) lock_node(a, nb);
    uint32_t *l = rk__ann_links(a, nb, lev);
    uint32_t cnt = count_links(l, max);
    int present = 0;
    for (uint32_t j = 0; j < cnt; j++) present |= l[j] == id;
    if (!present && cnt < max) {
        l[cnt] = id;
    } else if (!present) {
        const float *bv = node_vec(a, nb, s->qn);
        rk__ann_cand *c = s->cand;
        for (uint32_t j = 0; j < cnt; j++) {
            c[j].id = l[j];
            c[j].d = node_dist(a, bv, l[j]);
        }
        c[cnt].id = id;
        c[cnt].d = node_dist(a, bv, id);
        sort_cands(c, cnt + 1);
        uint32_t *keep = s->ids;
        uint32_t k = select_neighbors(a, s, c, cnt + 1, max, keep);
        memcpy(l, keep, k * sizeof *l);
        for (uint32_t j = k; j < max; j++) l[j] = RK__ANN_NONE;
    }
    if (locked) unlock_node(a, nb);
}

static void insert_impl(rk_ann *a, uint32_t id, rk__ann_scratch *s, int locked,
                        int q8)
{
    int level = a->levels[id];
    uint32_t ep;
    int top;
    if (locked) pthread_mutex_lock(&a->gmu);
    ep = a->entry;
    top = a->max_level;
    if (ep == RK__ANN_NONE) {
        a->entry = id;
        a->max_level = level;
    }
    if (locked) pthread_mutex_unlock(&a->gmu);
    if (ep == RK__ANN_NONE) return;

    /* The node's own vector is the query. For int8 it is decoded into
     * s->q, so what is linked is what searches will see. */
    const float *q = node_vec(a, id, s->q);
    float d = dist(a, q, ep, q8);
    if (top > level) ep = greedy(a, s, q, ep, &d, top, level, locked, q8);
    /* Choose the neighbours of every level first, write all of the node's
     * own lists, and only then link back. Until the first link back
     * nobody can reach the node, so no other inserter can add itself to a
     * list of ours that we would then overwrite (a lost back-link can cut
     * a region off). Sequentially this builds the same graph as linking
     * level by level: each level's search reads only that level's lists. */
    int low = level < top ? level : top;
    uint32_t sel[RK__ANN_MAX_LEVEL + 1][RK_ANN_MAX_M], ns[RK__ANN_MAX_LEVEL + 1];
    for (int lev = low; lev >= 0; lev--) {
        pool p;
        pool_init(&p, s, a->p.ef_construction);
        new_epoch(s, a->cap);
        s->visited[id] = s->epoch; /* never link to itself */
        s->visited[ep] = s->epoch;
        pool_offer(a, &p, d, ep);
        beam(a, s, q, &p, lev, locked, q8);
        /* Candidates for the heuristic: live entries, closest first. */
        uint32_t nc = 0;
        for (uint32_t i = 0; i < p.size; i++)
            if (!(p.c[i].id & CAND_DEAD)) p.c[nc++] = p.c[i];
        ns[lev] = select_neighbors(a, s, p.c, nc, a->p.M, sel[lev]);
        /* The best entry of this level (tombstone or not) leads into the
         * next one. */
        if (p.size) {
            ep = p.c[0].id & CAND_ID;
            d = p.c[0].d;
        }
    }
    if (locked) lock_node(a, id);
    for (int lev = low; lev >= 0; lev--) {
        uint32_t *l = rk__ann_links(a, id, lev);
        memcpy(l, sel[lev], ns[lev] * sizeof *l);
        for (uint32_t j = ns[lev]; j < max_links(a, lev); j++) l[j] = RK__ANN_NONE;
    }
    if (locked) unlock_node(a, id);
    for (int lev = low; lev >= 0; lev--)
        for (uint32_t j = 0; j < ns[lev]; j++)
            connect_back(a, s, sel[lev][j], id, lev, locked);
    if (level > top) {
        if (locked) pthread_mutex_lock(&a->gmu);
        if (level > a->max_level) {
            a->max_level = level;
            a->entry = id;
        }
        if (locked) pthread_mutex_unlock(&a->gmu);
    }
}

void rk__hnsw_insert(rk_ann *a, uint32_t id, rk__ann_scratch *s, int locked)
{
    if (a->p.quant == RK_ANN_INT8) insert_impl(a, id, s, locked, 1);
    else insert_impl(a, id, s, locked, 0);
}

/* ---- loaded graphs ------------------------------------------------------------------------ */

int rk__hnsw_validate(const rk_ann *a, rk_err *err)
{
    for (uint32_t id = 0; id < a->n; id++) {
        for (int lev = 0; lev <= a->levels[id]; lev++) {
            const uint32_t *l = rk__ann_links(a, id, lev);
            uint32_t max = max_links(a, lev), cnt = count_links(l, max);
            for (uint32_t j = 0; j < max; j++) {
                uint32_t nb = l[j];
                if (j >= cnt) {
                    if (nb != RK__ANN_NONE)
                        return rk_err_set(err, RK_ECORRUPT,
                                          "slot %u level %d: links not packed",
                                          id, lev);
                    continue;
                }
                if (nb >= a->n || a->levels[nb] < lev)
                    return rk_err_set(err, RK_ECORRUPT,
                                      "slot %u level %d: link %u to slot %u, "
                                      "which is out of range or below that level",
                                      id, lev, j, nb);
            }
        }
    }
    return 0;
}
