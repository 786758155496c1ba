/*
 * metrics.c — top-K recommendation metrics of one ranked list, catalog
 * coverage and mean popularity of many.
 *
 * The definitions are the ones in rk_train.h: Recall and MAP are
 * normalised by min(K, |R|) as in Liang et al. 2018, so that a perfect
 * ranking scores 1 whatever the number of held-out items, and NDCG uses
 * binary relevance with the ideal DCG over min(K, |R|) positions.
 */
#include <math.h>
#include <string.h>

#include "rk_train.h"

/* Binary search in a sorted, distinct array. */
static int contains(const uint32_t *a, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] == x) return 1;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

void rk_metrics_at_k(const uint32_t *ranked, size_t nranked,
                     const uint32_t *rel, size_t nrel_listed, size_t nrel,
                     size_t k, rk_metrics_at *out)
{
    memset(out, 0, sizeof *out);
    if (nrel == 0 || k == 0) return;
    size_t denom = k < nrel ? k : nrel;
    size_t n = nranked < k ? nranked : k;
    size_t hits = 0;
    double dcg = 0, ap = 0;
    for (size_t i = 0; i < n; i++) {
        if (!contains(rel, nrel_listed, ranked[i])) continue;
        hits++;
        /* Position i + 1 (1-based): discount log2(i + 2). */
        dcg += 1.0 / log2((double)i + 2.0);
        ap += (double)hits / (double)(i + 1);
    }
    double idcg = 0;
    for (size_t i = 0; i < denom; i++) idcg += 1.0 / log2((double)i + 2.0);
    out->recall = (double)hits / (double)denom;
    out->ndcg = dcg / idcg;
    out->map = ap / (double)denom;
    out->hit = hits > 0 ? 1.0 : 0.0;
}

int rk_metrics_coverage(const uint32_t *ids, size_t n, uint32_t nitems,
                        double *out)
{
    *out = 0;
    if (nitems == 0) return 0;
    uint64_t *seen = rk_calloc(((size_t)nitems + 63) / 64, sizeof *seen);
    if (!seen) return RK_ENOMEM;
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = ids[i];
        if (x >= nitems) continue;
        uint64_t bit = 1ull << (x & 63);
        if (seen[x >> 6] & bit) continue;
        seen[x >> 6] |= bit;
        distinct++;
    }
    rk_free(seen);
    *out = (double)distinct / (double)nitems;
    return 0;
}

double rk_metrics_mean_popularity(const uint32_t *ids, size_t n,
                                  const float *pop)
{
    if (n == 0) return 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += pop[ids[i]];
    return s / (double)n;
}
