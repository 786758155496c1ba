/*
 * metrics_cls.c — offline metrics of click and relevance models: AUC,
 * PR-AUC, log loss, normalized entropy, calibration, and the per-group
 * NDCG@K, MAP@K and group AUC (definitions in rk_train.h).
 *
 * Every metric that depends on the order of the scores sorts a private
 * copy of the rows once; the comparison always ends on the row number, so
 * the order (and with it every tie rule) is a total order that does not
 * depend on qsort's algorithm. Sums are kept in double whatever the input
 * type, so weighted sums over millions of rows do not drift.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rk_train.h"

/* One row as the sorting metrics need it. */
typedef struct srow {
    uint64_t g;   /* group id (0 when there are no groups) */
    size_t i;     /* row number: the last sort key */
    float s, y, w;
} srow;

/* Group ascending, score descending, row ascending. */
static int cmp_srow(const void *pa, const void *pb)
{
    const srow *a = pa, *b = pb;
    if (a->g != b->g) return a->g < b->g ? -1 : 1;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

enum { CHECK_ANY = 0, CHECK_PROB = 1, CHECK_GRADE = 2 };

/* Validates the inputs; mode says what scores and labels may be. */
static int check_rows(const float *score, const float *label,
                      const float *weight, size_t n, int mode, rk_err *err)
{
    if (n > 0 && (!score || !label))
        return rk_err_set(err, RK_EINVAL, "metrics: NULL scores or labels");
    for (size_t i = 0; i < n; i++) {
        float s = score[i], y = label[i];
        if (!isfinite(s))
            return rk_err_set(err, RK_EINVAL, "metrics: row %zu: score is "
                              "not a finite number", i);
        if (!isfinite(y))
            return rk_err_set(err, RK_EINVAL, "metrics: row %zu: label is "
                              "not a finite number", i);
        if (weight && !(isfinite(weight[i]) && weight[i] >= 0))
            return rk_err_set(err, RK_EINVAL, "metrics: row %zu: weight %g "
                              "is not a finite number >= 0", i,
                              (double)weight[i]);
        if (mode == CHECK_PROB && (s < 0 || s > 1))
            return rk_err_set(err, RK_EINVAL, "metrics: row %zu: score %g "
                              "is not a probability", i, (double)s);
        if (mode == CHECK_PROB && (y < 0 || y > 1))
            return rk_err_set(err, RK_EINVAL, "metrics: row %zu: label %g "
                              "is not in [0, 1]", i, (double)y);
        if (mode == CHECK_GRADE && (y < 0 || y > 63))
            return rk_err_set(err, RK_EINVAL, "metrics: row %zu: relevance "
                              "%g is not in [0, 63]", i, (double)y);
    }
    return 0;
}

/* A sorted copy of the rows (group may be NULL). */
static int sorted_rows(const float *score, const float *label,
                       const float *weight, const uint64_t *group, size_t n,
                       srow **out, rk_err *err)
{
    *out = NULL;
    if (n == 0) return 0;
    if (n > SIZE_MAX / sizeof(srow))
        return rk_err_set(err, RK_ENOMEM, "metrics: %zu rows: out of memory",
                          n);
    srow *r = rk_malloc(n * sizeof *r);
    if (!r)
        return rk_err_set(err, RK_ENOMEM, "metrics: %zu rows: out of memory",
                          n);
    for (size_t i = 0; i < n; i++) {
        r[i].g = group ? group[i] : 0;
        r[i].i = i;
        r[i].s = score[i];
        r[i].y = label[i];
        r[i].w = weight ? weight[i] : 1.0f;
    }
    qsort(r, n, sizeof *r, cmp_srow);
    *out = r;
    return 0;
}

/* Weighted AUC and average precision of rows sorted by score descending.
 * Rows of equal score form one threshold: for AUC a tied (positive,
 * negative) pair counts one half, for AP the threshold adds its recall
 * step at the precision reached after all of it, as sklearn does. */
static void auc_ap(const srow *r, size_t n, double *auc, double *ap)
{
    double pos = 0, neg = 0, area = 0, avgp = 0;
    for (size_t a = 0; a < n;) {
        double gp = 0, gn = 0;
        size_t b = a;
        for (; b < n && r[b].s == r[a].s; b++) {
            if (r[b].y > 0) gp += r[b].w;
            else gn += r[b].w;
        }
        area += gn * pos + 0.5 * gp * gn;
        pos += gp;
        neg += gn;
        /* Recall rises only where a positive weighs something, so the
         * precision below never divides by zero when it counts. */
        if (gp > 0) avgp += gp * (pos / (pos + neg));
        a = b;
    }
    *auc = pos > 0 && neg > 0 ? area / (pos * neg) : NAN;
    *ap = pos > 0 ? avgp / pos : NAN;
}

/* The order-free binary metrics. */
static void sums(const float *score, const float *label, const float *weight,
                 size_t n, rk_cls_metrics *m)
{
    double sw = 0, swy = 0, swp = 0, ll = 0;
    for (size_t i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0, y = label[i], p = score[i];
        /* Clamped so a confident wrong prediction costs a large but finite
         * amount instead of infinity (sklearn's eps). */
        double pc = p < RK_LOGLOSS_EPS ? RK_LOGLOSS_EPS
                  : p > 1 - RK_LOGLOSS_EPS ? 1 - RK_LOGLOSS_EPS : p;
        double l = 0;
        if (y > 0) l -= y * log(pc);
        if (y < 1) l -= (1 - y) * log(1 - pc);
        sw += w;
        swy += w * y;
        swp += w * p;
        ll += w * l;
    }
    m->rows = n;
    m->weight = sw;
    m->positive_weight = swy;
    m->logloss = sw > 0 ? ll / sw : NAN;
    double q = sw > 0 ? swy / sw : NAN;
    double h = q > 0 && q < 1 ? -(q * log(q) + (1 - q) * log(1 - q)) : NAN;
    m->ne = isnan(h) ? NAN : m->logloss / h;
    m->calibration = swy > 0 ? swp / swy : NAN;
}

int rk_metrics_cls(const float *score, const float *label,
                   const float *weight, size_t n, rk_cls_metrics *out,
                   rk_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = check_rows(score, label, weight, n, CHECK_PROB, err);
    if (rc) return rc;
    srow *r;
    if ((rc = sorted_rows(score, label, weight, NULL, n, &r, err))) return rc;
    sums(score, label, weight, n, out);
    auc_ap(r, n, &out->auc, &out->pr_auc);
    rk_free(r);
    return 0;
}

/* AUC or AP alone: any finite scores. */
static int ranked_one(const float *score, const float *label,
                      const float *weight, size_t n, int want_ap,
                      double *out, rk_err *err)
{
    *out = NAN;
    int rc = check_rows(score, label, weight, n, CHECK_ANY, err);
    srow *r;
    if (rc || (rc = sorted_rows(score, label, weight, NULL, n, &r, err)))
        return rc;
    double auc, ap;
    auc_ap(r, n, &auc, &ap);
    rk_free(r);
    *out = want_ap ? ap : auc;
    return 0;
}

int rk_metrics_auc(const float *score, const float *label,
                   const float *weight, size_t n, double *out, rk_err *err)
{
    return ranked_one(score, label, weight, n, 0, out, err);
}

int rk_metrics_pr_auc(const float *score, const float *label,
                      const float *weight, size_t n, double *out, rk_err *err)
{
    return ranked_one(score, label, weight, n, 1, out, err);
}

/* Log loss, NE or calibration: no sort needed. */
static int summed_one(const float *score, const float *label,
                      const float *weight, size_t n, int which, double *out,
                      rk_err *err)
{
    *out = NAN;
    int rc = check_rows(score, label, weight, n, CHECK_PROB, err);
    if (rc) return rc;
    rk_cls_metrics m;
    sums(score, label, weight, n, &m);
    *out = which == 0 ? m.logloss : which == 1 ? m.ne : m.calibration;
    return 0;
}

int rk_metrics_logloss(const float *score, const float *label,
                       const float *weight, size_t n, double *out, rk_err *err)
{
    return summed_one(score, label, weight, n, 0, out, err);
}

int rk_metrics_ne(const float *score, const float *label, const float *weight,
                  size_t n, double *out, rk_err *err)
{
    return summed_one(score, label, weight, n, 1, out, err);
}

int rk_metrics_calibration(const float *score, const float *label,
                           const float *weight, size_t n, double *out,
                           rk_err *err)
{
    return summed_one(score, label, weight, n, 2, out, err);
}

/* ---- per-group metrics ------------------------------------------------------ */

static int cmp_float_desc(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return a > b ? -1 : a < b;
}

/* NDCG@k of one group r[0..m) in ranked order; scratch holds m floats.
 * Returns -1 when the group has no relevant row (no ideal ranking). */
static double group_ndcg(const srow *r, size_t m, uint32_t k, float *scratch)
{
    size_t top = k == 0 || k > m ? m : k;
    double dcg = 0, idcg = 0;
    for (size_t i = 0; i < m; i++) scratch[i] = r[i].y;
    qsort(scratch, m, sizeof *scratch, cmp_float_desc);
    for (size_t i = 0; i < top; i++) {
        double disc = log2((double)i + 2.0);
        dcg += (exp2(r[i].y) - 1) / disc;
        idcg += (exp2(scratch[i]) - 1) / disc;
    }
    return idcg > 0 ? dcg / idcg : -1;
}

/* AP@k of one group as XGBoost's map@k: hits over the whole list
 * normalise, only the first k positions add precision. -1 when no row is
 * relevant. */
static double group_ap(const srow *r, size_t m, uint32_t k)
{
    size_t hits = 0;
    double sum = 0;
    for (size_t i = 0; i < m; i++) {
        if (!(r[i].y > 0)) continue;
        hits++;
        if (k == 0 || i < k) sum += (double)hits / (double)(i + 1);
    }
    return hits ? sum / (double)hits : -1;
}

static int per_group(const float *score, const float *label,
                     const uint64_t *group, size_t n, uint32_t k,
                     rk_empty_query empty, int want_map, double *out,
                     size_t *ngroups, rk_err *err)
{
    *out = NAN;
    if (ngroups) *ngroups = 0;
    if (empty != RK_EMPTY_ONE && empty != RK_EMPTY_ZERO &&
        empty != RK_EMPTY_SKIP)
        return rk_err_set(err, RK_EINVAL, "metrics: bad empty-query rule %d",
                          (int)empty);
    int rc = check_rows(score, label, NULL, n, CHECK_GRADE, err);
    srow *r;
    if (rc || (rc = sorted_rows(score, label, NULL, group, n, &r, err)))
        return rc;
    float *scratch = NULL;
    if (!want_map && n > 0 && !(scratch = rk_malloc(n * sizeof *scratch))) {
        rk_free(r);
        return rk_err_set(err, RK_ENOMEM, "metrics: out of memory");
    }
    double sum = 0;
    size_t used = 0;
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (b < n && r[b].g == r[a].g) b++;
        double v = want_map ? group_ap(r + a, b - a, k)
                            : group_ndcg(r + a, b - a, k, scratch);
        if (v < 0) {
            if (empty == RK_EMPTY_SKIP) {
                a = b;
                continue;
            }
            v = empty == RK_EMPTY_ONE ? 1.0 : 0.0;
        }
        sum += v;
        used++;
        a = b;
    }
    rk_free(scratch);
    rk_free(r);
    if (ngroups) *ngroups = used;
    *out = used ? sum / (double)used : NAN;
    return 0;
}

int rk_metrics_ndcg(const float *score, const float *label,
                    const uint64_t *group, size_t n, uint32_t k,
                    rk_empty_query empty, double *out, size_t *ngroups,
                    rk_err *err)
{
    return per_group(score, label, group, n, k, empty, 0, out, ngroups, err);
}

int rk_metrics_map(const float *score, const float *label,
                   const uint64_t *group, size_t n, uint32_t k,
                   rk_empty_query empty, double *out, size_t *ngroups,
                   rk_err *err)
{
    return per_group(score, label, group, n, k, empty, 1, out, ngroups, err);
}

int rk_metrics_gauc(const float *score, const float *label,
                    const float *weight, const uint64_t *group, size_t n,
                    double *out, size_t *ngroups, rk_err *err)
{
    *out = NAN;
    if (ngroups) *ngroups = 0;
    int rc = check_rows(score, label, weight, n, CHECK_ANY, err);
    srow *r;
    if (rc || (rc = sorted_rows(score, label, weight, group, n, &r, err)))
        return rc;
    double sum = 0, wsum = 0;
    size_t used = 0;
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (b < n && r[b].g == r[a].g) b++;
        double auc, ap, w = 0;
        auc_ap(r + a, b - a, &auc, &ap);
        for (size_t i = a; i < b; i++) w += r[i].w;
        /* A user who only clicked (or never clicked) says nothing about
         * the order of their items; a zero-weight user counts nothing. */
        if (!isnan(auc) && w > 0) {
            sum += w * auc;
            wsum += w;
            used++;
        }
        a = b;
    }
    rk_free(r);
    if (ngroups) *ngroups = used;
    *out = wsum > 0 ? sum / wsum : NAN;
    return 0;
}
