/*
 * concept.c — online log loss, AUC and calibration of served predictions
 * once their delayed labels arrive (concept drift): a fixed-size
 * accumulator, so a server keeps one per model version.
 */
#include <math.h>
#include <string.h>

#include "rk_monitor.h"

#define CLIP 1e-7

void rk_concept_reset(rk_concept_acc *a) { memset(a, 0, sizeof *a); }

int rk_concept_add(rk_concept_acc *a, float p, float label, float w)
{
    if (!isfinite(p) || p < 0 || p > 1 || !isfinite(w) || !(w > 0) || isnan(label))
        return RK_EINVAL;
    int y = label > 0;
    double q = p < CLIP ? CLIP : p > 1 - CLIP ? 1 - CLIP : p;
    a->n += w;
    a->pos += y ? w : 0;
    a->sum_p += (double)p * w;
    a->logloss_sum -= w * (y ? log(q) : log1p(-q));
    int b = (int)(p * RK_CONCEPT_BINS);
    if (b >= RK_CONCEPT_BINS) b = RK_CONCEPT_BINS - 1;
    a->bins[y][b] += w;
    return 0;
}

void rk_concept_merge(rk_concept_acc *a, const rk_concept_acc *b)
{
    a->n += b->n;
    a->pos += b->pos;
    a->sum_p += b->sum_p;
    a->logloss_sum += b->logloss_sum;
    for (int y = 0; y < 2; y++)
        for (int i = 0; i < RK_CONCEPT_BINS; i++) a->bins[y][i] += b->bins[y][i];
}

void rk_concept_get(const rk_concept_acc *a, rk_concept_metrics *out)
{
    double neg = a->n - a->pos;
    out->n = a->n;
    out->positives = a->pos;
    out->logloss = a->n > 0 ? a->logloss_sum / a->n : NAN;
    out->ctr = a->n > 0 ? a->pos / a->n : NAN;
    out->mean_p = a->n > 0 ? a->sum_p / a->n : NAN;
    out->calibration = a->pos > 0 ? a->sum_p / a->pos : NAN;
    out->auc = NAN;
    if (a->pos > 0 && neg > 0) {
        /* Mann-Whitney over the bins, ascending: a positive beats every
         * negative of a lower bin and ties half of its own bin's. */
        double below = 0, u = 0;
        for (int i = 0; i < RK_CONCEPT_BINS; i++) {
            u += a->bins[1][i] * (below + 0.5 * a->bins[0][i]);
            below += a->bins[0][i];
        }
        out->auc = u / (a->pos * neg);
    }
}
