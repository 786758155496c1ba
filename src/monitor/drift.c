/*
 * drift.c — the per-feature drift detector and the dataset verdict: which
 * statistic decides (Evidently's rule: tests for a small reference,
 * distances for a large one), PSI as an alarm alongside, and the
 * comparison of a live sample with a model version's rk_refhist.
 *
 * Invariant: a feature is judged only when both sides have a value;
 * otherwise it is reported as not evaluated and never counts as drift,
 * so an empty window cannot trigger a retraining.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"

void rk_drift_opts_default(rk_drift_opts *o)
{
    memset(o, 0, sizeof *o);
    o->small_reference = 1000;
    o->ks_alpha = 0.05;
    o->chi2_alpha = 0.05;
    o->wasserstein = 0.1;
    o->js = 0.1;
    o->psi = 0.2;
    o->psi_eps = RK_DRIFT_PSI_EPS;
    o->nbins = 10;
    o->dataset_share = 0.5;
}

int rk_drift_opts_check(const rk_drift_opts *o, rk_err *err)
{
    if (!(o->ks_alpha > 0 && o->ks_alpha < 1) ||
        !(o->chi2_alpha > 0 && o->chi2_alpha < 1))
        return rk_err_set(err, RK_EINVAL, "drift: ks_alpha and chi2_alpha "
                          "must be in (0, 1)");
    if (!(o->wasserstein > 0) || !isfinite(o->wasserstein) ||
        !(o->js > 0) || !isfinite(o->js) || !(o->psi > 0) || !isfinite(o->psi))
        return rk_err_set(err, RK_EINVAL, "drift: thresholds must be finite "
                          "and > 0");
    if (!(o->psi_eps > 0 && o->psi_eps < 1))
        return rk_err_set(err, RK_EINVAL, "drift: psi_eps must be in (0, 1)");
    if (o->nbins > RK_REFHIST_MAX_BINS)
        return rk_err_set(err, RK_EINVAL, "drift: nbins %u, at most %d",
                          o->nbins, RK_REFHIST_MAX_BINS);
    if (!(o->dataset_share > 0 && o->dataset_share <= 1))
        return rk_err_set(err, RK_EINVAL, "drift: dataset_share must be in "
                          "(0, 1]");
    if (!(o->noise_alpha >= 0 && o->noise_alpha < 1))
        return rk_err_set(err, RK_EINVAL, "drift: noise_alpha must be 0 (off) "
                          "or in (0, 1)");
    return 0;
}

const char *rk_drift_method_name(rk_drift_method m)
{
    switch (m) {
    case RK_DRIFT_KS: return "ks";
    case RK_DRIFT_WASSERSTEIN: return "wasserstein";
    case RK_DRIFT_CHI2: return "chi2";
    case RK_DRIFT_JS: return "jensenshannon";
    default: return "none";
    }
}

/* Options or the defaults, checked. */
static int opts_or_default(const rk_drift_opts *o, rk_drift_opts *buf,
                           rk_err *err)
{
    if (!o) {
        rk_drift_opts_default(buf);
        return 0;
    }
    *buf = *o;
    if (buf->nbins == 0) buf->nbins = 10;
    return rk_drift_opts_check(buf, err);
}

static void feature_init(rk_drift_feature *f)
{
    memset(f, 0, sizeof *f);
    f->method = RK_DRIFT_NONE;
    f->score = f->threshold = f->psi = f->js = NAN;
    f->ks_stat = f->ks_p = f->wasserstein = f->wasserstein_norm = NAN;
    f->chi2_stat = f->chi2_p = f->chi2_p_adj = f->deff = NAN;
    f->ref_missing_rate = f->cur_missing_rate = NAN;
}

static double rate(uint64_t missing, uint64_t count)
{
    return missing + count ? (double)missing / (double)(missing + count) : 0;
}

/* A distance verdict, gated by the noise test when noise_alpha is on. */
static int distance_drifts(double d, double thr, const rk_drift_feature *f,
                           const rk_drift_opts *o)
{
    if (!(d >= thr)) return 0;
    return !(o->noise_alpha > 0) || !(f->chi2_p_adj > o->noise_alpha);
}

/* PSI, JS and chi-square of two histograms of the same bins (the current
 * one's design effect deff); the verdict from chi-square (small
 * reference) or JS. */
static int judge_bins(const double *rc, const double *cc, size_t nb,
                      double deff, const rk_drift_opts *o,
                      rk_drift_feature *f, rk_err *err)
{
    int rc_ = rk_drift_psi(rc, cc, nb, o->psi_eps, &f->psi, err);
    if (!rc_) rc_ = rk_drift_js(rc, cc, nb, &f->js, err);
    rk_drift_chi2_result c;
    if (!rc_) rc_ = rk_drift_chi2(rc, cc, nb, &c, err);
    if (rc_) return rc_;
    f->chi2_stat = c.stat;
    f->chi2_p = c.p;
    f->chi2_dof = c.dof;
    f->deff = deff;
    /* Rao-Scott: the statistic over the design effect (p is 1 at 0 dof). */
    f->chi2_p_adj = deff == 1 || c.dof == 0
                        ? c.p : rk_drift_gammaincc(c.dof / 2.0, c.stat / deff / 2.0);
    f->psi_alarm = f->psi >= o->psi;
    if (f->ref_count <= o->small_reference) {
        f->method = RK_DRIFT_CHI2;
        f->score = f->chi2_p_adj;
        f->threshold = o->chi2_alpha;
        f->drift = f->chi2_p_adj <= o->chi2_alpha;
    } else {
        f->method = RK_DRIFT_JS;
        f->score = f->js;
        f->threshold = o->js;
        f->drift = distance_drifts(f->js, o->js, f, o);
    }
    return 0;
}

int rk_drift_numeric(const float *ref, size_t nref, const float *cur,
                     size_t ncur, const rk_drift_opts *opts,
                     rk_drift_feature *f, rk_err *err)
{
    feature_init(f);
    rk_drift_opts o;
    int rc = opts_or_default(opts, &o, err);
    if (rc) return rc;
    double *v;
    size_t na, nb;
    if ((rc = rk__drift_sort_pair(ref, nref, cur, ncur, &v, &na, &nb, err)))
        return rc;
    f->ref_count = na;
    f->cur_count = nb;
    f->ref_missing_rate = rate(nref - na, na);
    f->cur_missing_rate = rate(ncur - nb, nb);
    if (na == 0 || nb == 0) {
        rk_free(v);
        return 0;
    }
    const double *a = v, *b = v + na;
    f->wasserstein = rk_drift_wasserstein_sorted(a, na, b, nb);
    f->wasserstein_norm = rk__drift_wnorm(f->wasserstein, a, na);
    f->ks_stat = rk_drift_ks_stat_sorted(a, na, b, nb);

    /* PSI and JS over the reference's quantile bins. The sorted samples
     * make binning a merge: count the values below each edge. */
    double *edges = rk_malloc((size_t)o.nbins * sizeof *edges);
    if (!edges) {
        rk_free(v);
        return rk_err_set(err, RK_ENOMEM, "drift: out of memory");
    }
    uint32_t ne;
    rc = rk_drift_edges_sorted(a, na, o.nbins, edges, &ne, err);
    if (!rc) {
        double *cnt = rk_malloc(2 * (size_t)(ne + 1) * sizeof *cnt);
        if (!cnt) {
            rc = rk_err_set(err, RK_ENOMEM, "drift: out of memory");
        } else {
            double *hr = cnt, *hc = cnt + ne + 1;
            size_t ia = 0, ib = 0;
            for (uint32_t e = 0; e <= ne; e++) {
                size_t sa = ia, sb = ib;
                if (e < ne) {
                    while (ia < na && a[ia] < edges[e]) ia++;
                    while (ib < nb && b[ib] < edges[e]) ib++;
                } else {
                    ia = na;
                    ib = nb;
                }
                hr[e] = (double)(ia - sa);
                hc[e] = (double)(ib - sb);
            }
            /* PSI, JS and the chi-square; the verdict is KS's or
             * Wasserstein's, below. */
            rc = judge_bins(hr, hc, ne + 1, 1, &o, f, err);
            rk_free(cnt);
        }
    }
    rk_free(edges);
    if (!rc) {
        if (na <= o.small_reference) {
            rk_drift_ks_result ks;
            rc = rk_drift_ks_sorted(a, na, b, nb, &ks, err);
            if (!rc) {
                f->ks_stat = ks.stat;
                f->ks_p = ks.p;
                f->method = RK_DRIFT_KS;
                f->score = ks.p;
                f->threshold = o.ks_alpha;
                f->drift = ks.p <= o.ks_alpha;
            }
        } else {
            f->method = RK_DRIFT_WASSERSTEIN;
            f->score = f->wasserstein_norm;
            f->threshold = o.wasserstein;
            f->drift = distance_drifts(f->wasserstein_norm, o.wasserstein, f, &o);
        }
    }
    rk_free(v);
    return rc;
}

int rk_drift_categorical(const double *ref, const double *cur, size_t k,
                         uint64_t ref_missing, uint64_t cur_missing,
                         const rk_drift_opts *opts, rk_drift_feature *f,
                         rk_err *err)
{
    feature_init(f);
    rk_drift_opts o;
    int rc = opts_or_default(opts, &o, err);
    if (rc) return rc;
    double sr = 0, sc = 0;
    for (size_t i = 0; i < k; i++) {
        if (!(ref[i] >= 0) || !(cur[i] >= 0) || !isfinite(ref[i]) ||
            !isfinite(cur[i]))
            return rk_err_set(err, RK_EINVAL, "drift: category %zu: counts "
                              "must be finite and >= 0", i);
        sr += ref[i];
        sc += cur[i];
    }
    f->ref_count = (uint64_t)sr;
    f->cur_count = (uint64_t)sc;
    f->ref_missing_rate = rate(ref_missing, f->ref_count);
    f->cur_missing_rate = rate(cur_missing, f->cur_count);
    if (!(sr > 0) || !(sc > 0)) return 0;
    return judge_bins(ref, cur, k, 1, &o, f, err);
}

int rk_drift_refhist_numeric(const rk_refhist *h, const float *cur, size_t n,
                             const rk_drift_opts *opts, rk_drift_feature *f,
                             rk_err *err)
{
    return rk_drift_refhist_numeric_grouped(h, cur, n, NULL, opts, f, err);
}

int rk_drift_refhist_numeric_grouped(const rk_refhist *h, const float *cur,
                                     size_t n, const rk_drift_groups *g,
                                     const rk_drift_opts *opts,
                                     rk_drift_feature *f, rk_err *err)
{
    feature_init(f);
    rk_drift_opts o;
    int rc = opts_or_default(opts, &o, err);
    if (rc) return rc;
    if (h->kind != RK_REFHIST_NUMERIC)
        return rk_err_set(err, RK_ETYPE, "drift: reference %s is categorical",
                          h->name);
    uint32_t ng = g ? g->n : 0;
    if (ng > RK_DRIFT_MAX_GROUPINGS || (ng && (!g->id || g->stride < n)))
        return rk_err_set(err, RK_EINVAL, "drift: %u groupings (at most %d, "
                          "each with a key per row)", ng, RK_DRIFT_MAX_GROUPINGS);
    double *cnt = rk_malloc(2 * (size_t)h->nbins * sizeof *cnt);
    uint32_t *bins = ng ? rk_malloc((n ? n : 1) * sizeof *bins) : NULL;
    if (!cnt || (ng && !bins)) {
        rk_free(cnt);
        rk_free(bins);
        return rk_err_set(err, RK_ENOMEM, "drift: out of memory");
    }
    double *hr = cnt, *hc = cnt + h->nbins;
    for (uint32_t i = 0; i < h->nbins; i++) {
        hr[i] = (double)h->counts[i];
        hc[i] = 0;
    }
    uint64_t miss = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = rk_refhist_bin(h, cur[i]);
        if (bins) bins[i] = b;
        if (b == UINT32_MAX) miss++;
        else hc[b] += 1;
    }
    f->ref_count = h->count;
    f->cur_count = n - miss;
    f->ref_missing_rate = rate(h->missing, h->count);
    f->cur_missing_rate = rate(miss, n - miss);
    /* The largest design effect over the groupings: rows grouped by user
     * and by item are correlated both ways. */
    double deff = 1;
    for (uint32_t k = 0; !rc && k < ng; k++) {
        double d;
        rc = rk_drift_design_effect(bins, g->id + k * g->stride, n, h->nbins,
                                    &d, NULL, err);
        if (!rc && d > deff) deff = d;
    }
    if (!rc && h->count > 0 && n > miss)
        rc = judge_bins(hr, hc, h->nbins, deff, &o, f, err);
    rk_free(cnt);
    rk_free(bins);
    return rc;
}

static int cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

int rk_drift_refhist_categorical(const rk_refhist *h, const uint64_t *v,
                                 const uint8_t *missing, size_t n,
                                 const rk_drift_opts *opts,
                                 rk_drift_feature *f, rk_err *err)
{
    feature_init(f);
    rk_drift_opts o;
    int rc = opts_or_default(opts, &o, err);
    if (rc) return rc;
    if (h->kind != RK_REFHIST_CATEGORICAL)
        return rk_err_set(err, RK_ETYPE, "drift: reference %s is numeric",
                          h->name);
    /* Bins: the top values in the refhist's order, then "other". A sorted
     * copy of the top values (with their bin) makes each lookup a binary
     * search. */
    uint32_t nt = h->ntop, nb = nt + 1;
    uint64_t *sorted = rk_malloc(((size_t)nt * 2 + 1) * sizeof *sorted);
    double *cnt = rk_malloc(2 * (size_t)nb * sizeof *cnt);
    if (!sorted || !cnt) {
        rk_free(sorted);
        rk_free(cnt);
        return rk_err_set(err, RK_ENOMEM, "drift: out of memory");
    }
    /* Pairs (value, bin) stored as two u64 each, sorted by value. */
    for (uint32_t i = 0; i < nt; i++) {
        sorted[2 * i] = h->top_values[i];
        sorted[2 * i + 1] = i;
    }
    qsort(sorted, nt, 2 * sizeof *sorted, cmp_u64);
    double *hr = cnt, *hc = cnt + nb;
    for (uint32_t i = 0; i < nt; i++) hr[i] = (double)h->top_counts[i];
    hr[nt] = (double)h->other;
    for (uint32_t i = 0; i < nb; i++) hc[i] = 0;
    uint64_t miss = 0;
    for (size_t i = 0; i < n; i++) {
        if (missing && missing[i]) {
            miss++;
            continue;
        }
        uint32_t lo = 0, hi = nt, bin = nt;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (sorted[2 * mid] < v[i]) lo = mid + 1;
            else hi = mid;
        }
        if (lo < nt && sorted[2 * lo] == v[i]) bin = (uint32_t)sorted[2 * lo + 1];
        hc[bin] += 1;
    }
    f->ref_count = h->count;
    f->cur_count = n - miss;
    f->ref_missing_rate = rate(h->missing, h->count);
    f->cur_missing_rate = rate(miss, n - miss);
    if (h->count > 0 && n > miss) rc = judge_bins(hr, hc, nb, 1, &o, f, err);
    rk_free(sorted);
    rk_free(cnt);
    return rc;
}

void rk_drift_dataset_summary(const rk_drift_feature *f, size_t n,
                              const rk_drift_opts *opts, rk_drift_dataset *out)
{
    rk_drift_opts o;
    if (opts) o = *opts;
    else rk_drift_opts_default(&o);
    memset(out, 0, sizeof *out);
    out->nfeatures = n;
    for (size_t i = 0; i < n; i++) {
        if (f[i].method == RK_DRIFT_NONE) continue;
        out->nevaluated++;
        out->ndrifted += f[i].drift != 0;
    }
    out->share = out->nevaluated
                     ? (double)out->ndrifted / (double)out->nevaluated : 0;
    out->drift = out->nevaluated > 0 && out->share >= o.dataset_share;
}
