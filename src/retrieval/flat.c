/*
 * flat.c — the exact index: every live vector is scored against the query.
 *
 * One query scans the float vectors a block at a time with the dot_f32_rows
 * kernel and keeps the k best in a min-heap. Many queries (ground truth,
 * full-catalog evaluation) are scored a tile at a time with one SGEMM per
 * tile (OpenBLAS), which reads each base vector once per query tile instead
 * of once per query; selection then runs over the tile in cache.
 * Ties are broken by slot (older first), so results are deterministic.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "retrieval/ann_int.h"

/* Min-heap of (score, slot) on score; the root is the worst kept. "Worse"
 * means lower score, or equal score and a newer slot. */
typedef struct topk {
    float *s;
    uint32_t *id;
    uint32_t n, k;
} topk;

static inline int worse(float sa, uint32_t ia, float sb, uint32_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

static void heap_down(topk *h, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && worse(h->s[l], h->id[l], h->s[m], h->id[m])) m = l;
        if (r < h->n && worse(h->s[r], h->id[r], h->s[m], h->id[m])) m = r;
        if (m == i) return;
        float ts = h->s[i];
        uint32_t ti = h->id[i];
        h->s[i] = h->s[m];
        h->id[i] = h->id[m];
        h->s[m] = ts;
        h->id[m] = ti;
        i = m;
    }
}

static inline void heap_offer(topk *h, float s, uint32_t id)
{
    if (h->n < h->k) {
        uint32_t i = h->n++;
        while (i > 0) {
            uint32_t p = (i - 1) / 2;
            if (!worse(s, id, h->s[p], h->id[p])) break;
            h->s[i] = h->s[p];
            h->id[i] = h->id[p];
            i = p;
        }
        h->s[i] = s;
        h->id[i] = id;
    } else if (worse(h->s[0], h->id[0], s, id)) {
        h->s[0] = s;
        h->id[0] = id;
        heap_down(h, 0);
    }
}

/* Empties the heap into ids/scores, best first; returns the count. */
static uint32_t heap_drain(topk *h, uint32_t *ids, float *scores)
{
    uint32_t n = h->n;
    for (uint32_t i = n; i-- > 0;) {
        ids[i] = h->id[0];
        if (scores) scores[i] = h->s[0];
        h->n--;
        h->s[0] = h->s[h->n];
        h->id[0] = h->id[h->n];
        heap_down(h, 0);
    }
    return n;
}

/* Rows scored per kernel call (the scratch holds that many scores). */
#define FLAT_ROWS RK__ANN_FLAT_BLOCK

/* Offers slots [base, base + m) with scores sc, skipping tombstones.
 * Once the heap is full only scores above its worst can enter; the
 * above kernel finds those (rarely more than a few per block). hits: m
 * entries of scratch. */
static void scan_block(const rk_ann *a, topk *h, const float *sc, uint32_t base,
                       uint32_t m, uint32_t *hits)
{
    uint32_t j = 0;
    for (; j < m && h->n < h->k; j++)
        if (!a->dead[base + j]) heap_offer(h, sc[j], base + j);
    if (j == m) return;
    size_t c = a->k.above(sc + j, m - j, h->s[0], hits);
    for (size_t i = 0; i < c; i++) {
        uint32_t id = base + j + hits[i];
        /* The bar may have risen since the kernel ran: heap_offer checks. */
        if (!a->dead[id]) heap_offer(h, sc[j + hits[i]], id);
    }
}

int rk__flat_search(const rk_ann *a, rk__ann_scratch *s, const float *q,
                    uint32_t k, uint32_t *ids, float *scores, uint32_t *n_out)
{
    /* The heap borrows the scratch pool: k candidates hold k scores and
     * k slots. */
    if (rk__ann_scratch_reserve(s, k) != 0) return RK_ENOMEM;
    float *hs = (float *)(void *)s->pool;
    topk h = {.s = hs, .id = (uint32_t *)(void *)(hs + k), .n = 0, .k = k};
    size_t dim = a->p.dim;
    for (uint32_t b = 0; b < a->n; b += FLAT_ROWS) {
        uint32_t m = a->n - b < FLAT_ROWS ? a->n - b : FLAT_ROWS;
        a->k.dot_f32_rows(q, a->fvec + (size_t)b * dim, dim, m, s->scores);
        scan_block(a, &h, s->scores, b, m, s->hits);
    }
    *n_out = heap_drain(&h, ids, scores);
    return 0;
}

/* A tile of scores: 256 queries x 4096 slots = 4 MiB, large enough that
 * OpenBLAS's threads have real work per call. */
#define TILE_Q 256
#define TILE_X 4096

int rk__flat_search_many(const rk_ann *a, const float *queries, size_t nq,
                         uint32_t k, uint32_t *ids, float *scores,
                         uint32_t *n_out)
{
    size_t dim = a->p.dim;
    float *qt = rk_malloc(TILE_Q * dim * sizeof *qt);
    float *sc = rk_malloc((size_t)TILE_Q * TILE_X * sizeof *sc);
    float *hs = rk_malloc((size_t)TILE_Q * k * sizeof *hs);
    uint32_t *hid = rk_malloc((size_t)TILE_Q * k * sizeof *hid);
    uint32_t *hits = rk_malloc(TILE_X * sizeof *hits);
    topk *h = rk_malloc(TILE_Q * sizeof *h);
    if (!qt || !sc || !hs || !hid || !hits || !h) {
        rk_free(hits);
        rk_free(h);
        rk_free(qt);
        rk_free(sc);
        rk_free(hs);
        rk_free(hid);
        return RK_ENOMEM;
    }
    for (size_t q0 = 0; q0 < nq; q0 += TILE_Q) {
        uint32_t mq = nq - q0 < TILE_Q ? (uint32_t)(nq - q0) : TILE_Q;
        for (uint32_t i = 0; i < mq; i++)
            rk__ann_prepare_query(a, queries + (q0 + i) * dim, qt + i * dim);
        for (uint32_t i = 0; i < mq; i++)
            h[i] = (topk){.s = hs + (size_t)i * k, .id = hid + (size_t)i * k,
                          .n = 0, .k = k};
        for (uint32_t x0 = 0; x0 < a->n; x0 += TILE_X) {
            uint32_t mx = a->n - x0 < TILE_X ? a->n - x0 : TILE_X;
            /* sc[i][j] = qt[i] . fvec[x0 + j] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mq,
                        (int)mx, (int)dim, 1.0f, qt, (int)dim,
                        a->fvec + (size_t)x0 * dim, (int)dim, 0.0f, sc,
                        (int)mx);
            for (uint32_t i = 0; i < mq; i++)
                scan_block(a, &h[i], sc + (size_t)i * mx, x0, mx, hits);
        }
        for (uint32_t i = 0; i < mq; i++) {
            size_t o = (q0 + i) * k;
            n_out[q0 + i] = heap_drain(&h[i], ids + o, scores ? scores + o : NULL);
        }
    }
    rk_free(qt);
    rk_free(sc);
    rk_free(hs);
    rk_free(hid);
    rk_free(hits);
    rk_free(h);
    return 0;
}
