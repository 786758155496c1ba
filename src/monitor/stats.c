/*
 * stats.c — the drift statistics that are not Kolmogorov-Smirnov: PSI,
 * Jensen-Shannon, chi-square of homogeneity and its incomplete gamma,
 * Wasserstein-1, the missing rate, and the sort and binning they share
 * (definitions in rk_monitor.h, docs/monitoring.md).
 *
 * Every formula is written in the order SciPy evaluates it, so results
 * agree to rounding (the tests hold them to 1e-12 relative). Samples are
 * sorted once by an LSD radix sort on the float bits, which is what makes
 * KS and Wasserstein an O(n) walk instead of SciPy's sort plus two
 * binary searches per value.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"

/* ---- histograms -------------------------------------------------------- */

/* Checks a histogram and returns its sum through *sum. */
static int check_hist(const double *h, size_t n, const char *what,
                      double *sum, rk_err *err)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(h[i] >= 0) || !isfinite(h[i]))
            return rk_err_set(err, RK_EINVAL, "%s[%zu] = %g: counts must be "
                              "finite and >= 0", what, i, h[i]);
        s += h[i];
    }
    if (!(s > 0))
        return rk_err_set(err, RK_EINVAL, "%s: counts sum to 0", what);
    *sum = s;
    return 0;
}

static int check_pair(const double *ref, const double *cur, size_t n,
                      double *sr, double *sc, rk_err *err)
{
    if (n == 0) return rk_err_set(err, RK_EINVAL, "no bins");
    int rc = check_hist(ref, n, "reference", sr, err);
    return rc ? rc : check_hist(cur, n, "current", sc, err);
}

int rk_drift_psi(const double *ref, const double *cur, size_t nbins,
                 double eps, double *out, rk_err *err)
{
    double sr, sc;
    int rc = check_pair(ref, cur, nbins, &sr, &sc, err);
    if (rc) return rc;
    if (!(eps > 0)) eps = RK_DRIFT_PSI_EPS;
    double psi = 0;
    for (size_t i = 0; i < nbins; i++) {
        double p = ref[i] / sr, q = cur[i] / sc;
        if (p == 0) p = eps;
        if (q == 0) q = eps;
        psi += (q - p) * log(q / p);
    }
    *out = psi;
    return 0;
}

/* p * ln(p / m), with 0 for p = 0: scipy.special.rel_entr. */
static double rel_entr(double p, double m)
{
    return p > 0 ? p * log(p / m) : 0;
}

int rk_drift_js(const double *ref, const double *cur, size_t nbins,
                double *out, rk_err *err)
{
    double sr, sc;
    int rc = check_pair(ref, cur, nbins, &sr, &sc, err);
    if (rc) return rc;
    /* SciPy sums the left terms and the right terms separately. */
    double left = 0, right = 0;
    for (size_t i = 0; i < nbins; i++) {
        double p = ref[i] / sr, q = cur[i] / sc, m = (p + q) / 2.0;
        left += rel_entr(p, m);
        right += rel_entr(q, m);
    }
    double js = (left + right) / log(2.0);
    *out = js > 0 ? sqrt(js / 2.0) : 0;
    return 0;
}

/* ---- chi-square ---------------------------------------------------------- */

/* Regularized lower gamma P(a, x) by its series, for x < a + 1. */
static double gammainc_series(double a, double x)
{
    double sum = 1.0 / a, term = sum, ap = a;
    for (int i = 0; i < 100000; i++) {
        ap += 1;
        term *= x / ap;
        sum += term;
        if (fabs(term) < fabs(sum) * 1e-17) break;
    }
    return sum * exp(-x + a * log(x) - lgamma(a));
}

/* Regularized upper gamma Q(a, x) by its continued fraction (modified
 * Lentz), for x >= a + 1. */
static double gammaincc_cf(double a, double x)
{
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-17) break;
    }
    return exp(-x + a * log(x) - lgamma(a)) * h;
}

double rk_drift_gammaincc(double a, double x)
{
    if (!(a > 0) || !(x >= 0) || isnan(a)) return NAN;
    if (x == 0) return 1;
    if (isinf(x)) return 0;
    if (x < a + 1) {
        double p = gammainc_series(a, x);
        return p >= 1 ? 0 : 1 - p;
    }
    double q = gammaincc_cf(a, x);
    return q > 1 ? 1 : q;
}

int rk_drift_chi2(const double *ref, const double *cur, size_t k,
                  rk_drift_chi2_result *out, rk_err *err)
{
    double sr, sc;
    int rc = check_pair(ref, cur, k, &sr, &sc, err);
    if (rc) return rc;
    double n = sr + sc, stat = 0;
    size_t used = 0;
    for (size_t i = 0; i < k; i++) {
        double col = ref[i] + cur[i];
        if (col == 0) continue;
        used++;
        /* expected = row * col / total, as scipy's expected_freq. */
        double er = sr * col / n, ec = sc * col / n;
        stat += (ref[i] - er) * (ref[i] - er) / er;
        stat += (cur[i] - ec) * (cur[i] - ec) / ec;
    }
    out->dof = (uint32_t)(used - 1);
    if (out->dof == 0) {
        out->stat = 0;
        out->p = 1;
        return 0;
    }
    out->stat = stat;
    out->p = rk_drift_gammaincc(out->dof / 2.0, stat / 2.0);
    return 0;
}

/* ---- samples ------------------------------------------------------------- */

double rk_drift_missing_rate(const float *x, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += !isfinite(x[i]);
    return n ? (double)m / (double)n : 0;
}

/* Order-preserving key of a float's bits u: negative values have every
 * bit flipped, non-negative ones the sign bit set. -0.0 is made +0.0
 * first so that equal values have equal keys. Branch-free: the signs of
 * real data are unpredictable. */
static uint32_t key_of(uint32_t u)
{
    u &= -(uint32_t)(u != 0x80000000u);
    return u ^ (-(u >> 31) | 0x80000000u);
}

/* The float of a key, widened to double (exactly). */
static double value_of(uint32_t k)
{
    uint32_t u = k ^ (((k >> 31) - 1) | 0x80000000u);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* LSD radix sort of the keys of the finite values of x[0..n) (n < 2^32,
 * n >= 1), written as doubles to out[0..m), m returned. The 8n bytes of
 * out hold the keys while they are sorted (two arrays of n), so the sort
 * allocates nothing; the last step widens them in place. Three digits of
 * 11, 11 and 10 bits: each pass scatters into at most 2048 buckets,
 * whose counters (8 KiB) stay in L1, and one fewer pass than 8-bit
 * digits is the larger saving at these sizes. The three histograms come
 * from one read of x, and a pass whose digit is the same for every key
 * is skipped (the low digit of small integers, the top one of values of
 * one sign and binade). (Four interleaved sets of counters, which paid
 * off with 8-bit digits, measured slower here.) */
static size_t radix_sort(const float *x, size_t n, double *out)
{
    uint32_t *keys = (uint32_t *)(void *)out, *tmp = keys + n;
    uint32_t hist[3][2048];   /* 24 KiB on the stack, nothing to fail */
    memset(hist, 0, sizeof hist);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        /* Non-finite values are written and then overwritten: counting
         * them out instead of branching keeps NaN-ridden data fast. */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        uint32_t k = key_of(u), fin = (u & 0x7fffffffu) < 0x7f800000u;
        keys[m] = k;
        m += fin;
        hist[0][k & 2047] += fin;
        hist[1][(k >> 11) & 2047] += fin;
        hist[2][k >> 22] += fin;
    }
    if (m == 0) return 0;
    uint32_t *src = keys, *dst = tmp;
    for (int p = 0; p < 3; p++) {
        int shift = 11 * p;
        uint32_t *off = hist[p], sum = 0;
        if (off[(keys[0] >> shift) & 2047] == m) continue;
        for (int b = 0; b < 2048; b++) {
            uint32_t c = off[b];
            off[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < m; i++) {
            uint32_t k = src[i];
            dst[off[(k >> shift) & 2047]++] = k;
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    /* Widen in place, through char access since the keys and the doubles
     * share the bytes: the double out[i] covers the key bytes 8i..8i+7.
     * Keys at the start of out go back to front (out[i] only overwrites
     * keys 2i and 2i+1, already read); keys in the second half go front
     * to back (out[i] overwrites keys 2i - n and 2i - n + 1 <= i). */
    unsigned char *ob = (unsigned char *)out;
    const unsigned char *kb = (const unsigned char *)src;
    int back = src == keys;
    for (size_t t = 0; t < m; t++) {
        size_t i = back ? m - 1 - t : t;
        uint32_t k;
        memcpy(&k, kb + 4 * i, 4);
        double v = value_of(k);
        memcpy(ob + 8 * i, &v, 8);
    }
    return m;
}

int rk_drift_sort(const float *x, size_t n, double *out, size_t *nout,
                  rk_err *err)
{
    *nout = 0;
    if (n == 0) return 0;
    if (n >= ((size_t)1 << 32))
        return rk_err_set(err, RK_ELIMIT, "sort: %zu values, at most 2^32 - 1",
                          n);
    if (n < 64) {
        /* Small: insertion sort of the keys, no histograms to clear. */
        uint32_t k[64];
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            if ((u & 0x7fffffffu) < 0x7f800000u) k[m++] = key_of(u);
        }
        for (size_t i = 1; i < m; i++) {
            uint32_t v = k[i];
            size_t j = i;
            while (j > 0 && k[j - 1] > v) {
                k[j] = k[j - 1];
                j--;
            }
            k[j] = v;
        }
        for (size_t i = 0; i < m; i++) out[i] = value_of(k[i]);
        *nout = m;
        return 0;
    }
    *nout = radix_sort(x, n, out);
    return 0;
}

/* Sorts both samples into one allocation: *a (na values) then *b. */
int rk__drift_sort_pair(const float *ref, size_t nref, const float *cur,
                        size_t ncur, double **buf, size_t *na, size_t *nb,
                        rk_err *err)
{
    *buf = NULL;
    *na = *nb = 0;
    size_t total = nref + ncur;
    if (total < nref || total > SIZE_MAX / sizeof(double))
        return rk_err_set(err, RK_ELIMIT, "%zu + %zu values", nref, ncur);
    double *v = rk_malloc((total ? total : 1) * sizeof *v);
    if (!v) return rk_err_set(err, RK_ENOMEM, "out of memory for %zu values",
                              total);
    int rc = rk_drift_sort(ref, nref, v, na, err);
    if (!rc) rc = rk_drift_sort(cur, ncur, v + *na, nb, err);
    if (rc) {
        rk_free(v);
        return rc;
    }
    *buf = v;
    return 0;
}

/* One merge step: the area since the previous pooled value, at the
 * counts taken there (integer units of 1 / (na nb), exact), then x is
 * consumed. Ties add a step of width 0. */
#define W_STEP(x_in, take_a)                                               \
    do {                                                                   \
        double x = (x_in);                                                 \
        int64_t d_ = i * nbi - j * nai;                                    \
        sum += (double)(d_ < 0 ? -d_ : d_) * (x - prev);                   \
        i += (take_a);                                                     \
        j += 1 - (take_a);                                                 \
        prev = x;                                                          \
    } while (0)

double rk_drift_wasserstein_sorted(const double *a, size_t na,
                                   const double *b, size_t nb)
{
    /* SciPy's _cdf_distance(1): over the pooled sorted values x_k, the sum
     * of |F(x_k) - G(x_k)| (x_{k+1} - x_k), F and G counting values <= x_k
     * divided by the sample sizes. Here |i nb - j na| is exact in
     * integers and the division by na nb comes once at the end; the sum
     * differs from SciPy's by rounding only (pairwise vs. sequential). */
    int64_t nai = (int64_t)na, nbi = (int64_t)nb, i = 0, j = 0;
    double sum = 0, prev = a[0] < b[0] ? a[0] : b[0];
    while (i < nai && j < nbi) {
        double ai = a[i], bj = b[j];
        int64_t ta = ai <= bj;
        W_STEP(bj < ai ? bj : ai, ta);
    }
    while (i < nai) W_STEP(a[i], 1);
    while (j < nbi) W_STEP(b[j], 0);
    return sum / ((double)na * (double)nb);
}

/* Population standard deviation (numpy.std): mean first, then the mean
 * of squared deviations. */
static double std_sorted(const double *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i];
    double mean = s / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++) ss += (a[i] - mean) * (a[i] - mean);
    return sqrt(ss / (double)n);
}

double rk__drift_wnorm(double w, const double *a, size_t na)
{
    double sd = std_sorted(a, na);
    if (sd > 0) return w / sd;
    return w == 0 ? 0 : INFINITY;
}

int rk_drift_wasserstein(const float *ref, size_t nref, const float *cur,
                         size_t ncur, double *w, double *norm, rk_err *err)
{
    double *v;
    size_t na, nb;
    int rc = rk__drift_sort_pair(ref, nref, cur, ncur, &v, &na, &nb, err);
    if (rc) return rc;
    if (na == 0 || nb == 0) {
        rk_free(v);
        return rk_err_set(err, RK_EINVAL, "wasserstein: the %s sample has no "
                          "finite value", na == 0 ? "reference" : "current");
    }
    *w = rk_drift_wasserstein_sorted(v, na, v + na, nb);
    if (norm) *norm = rk__drift_wnorm(*w, v, na);
    rk_free(v);
    return 0;
}

/* ---- bins ----------------------------------------------------------------- */

int rk_drift_edges_sorted(const double *v, size_t m, uint32_t nbins,
                          double *edges, uint32_t *nedges, rk_err *err)
{
    *nedges = 0;
    if (nbins == 0) nbins = 20;
    if (nbins > RK_REFHIST_MAX_BINS)
        return rk_err_set(err, RK_EINVAL, "%u bins, at most %d", nbins,
                          RK_REFHIST_MAX_BINS);
    /* The rule of rk_refhist_numeric (src/train/refhist.c). */
    uint32_t ne = 0;
    for (uint32_t j = 1; j < nbins && m > 0; j++) {
        double c = v[(size_t)((double)j * (double)m / nbins)];
        if (c > v[0] && (ne == 0 || c > edges[ne - 1])) edges[ne++] = c;
    }
    *nedges = ne;
    return 0;
}

/* Bins by counting edges <= x. The values are floats, so x >= e holds
 * exactly when x >= up(e), up(e) the smallest float not below e:
 * comparing floats with the rounded-up edges gives numpy's double
 * comparison's answer. Values go eight at a time, edge by edge, so the
 * compiler turns each edge into two SIMD compares (the loop over the
 * eight values has a constant trip count); a block holding a NaN or an
 * infinity is redone one value at a time. */
static void hist_blocks(const float *x, size_t n, const float *fe,
                        uint32_t ne, uint64_t *total, uint64_t *miss)
{
    /* One table per lane of the block: no two increments of a block can
     * hit one counter. 32-bit counters, flushed every 2^31 values. */
    uint32_t c[8][33];
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > ((size_t)1 << 31) ? i + ((size_t)1 << 31) : n;
        memset(c, 0, sizeof c);
        for (; i + 8 <= end; i += 8) {
            const float *v = x + i;
            int finite = 1;
            for (int k = 0; k < 8; k++) finite &= fabsf(v[k]) <= FLT_MAX;
            if (finite) {
                uint32_t cnt[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                for (uint32_t e = 0; e < ne; e++) {
                    float f = fe[e];
                    for (int k = 0; k < 8; k++) cnt[k] += v[k] >= f;
                }
                for (int k = 0; k < 8; k++) c[k][cnt[k]]++;
                continue;
            }
            for (int k = 0; k < 8; k++) {
                if (!isfinite(v[k])) {
                    (*miss)++;
                    continue;
                }
                uint32_t b = 0;
                for (uint32_t e = 0; e < ne; e++) b += v[k] >= fe[e];
                c[k][b]++;
            }
        }
        for (; i < end; i++) {
            if (!isfinite(x[i])) {
                (*miss)++;
                continue;
            }
            uint32_t b = 0;
            for (uint32_t e = 0; e < ne; e++) b += x[i] >= fe[e];
            c[0][b]++;
        }
        for (int k = 0; k < 8; k++)
            for (uint32_t b = 0; b <= ne; b++) total[b] += c[k][b];
    }
}

void rk_drift_hist(const float *x, size_t n, const double *edges,
                   uint32_t nedges, double *counts, uint64_t *missing)
{
    uint64_t miss = 0;
    for (uint32_t b = 0; b <= nedges; b++) counts[b] = 0;
    if (nedges <= 32) {
        float fe[32];
        for (uint32_t e = 0; e < nedges; e++) {
            /* Edges beyond the float range round to +-inf, which orders
             * finite floats the same way. */
            float f = (float)edges[e];
            if ((double)f < edges[e]) f = nextafterf(f, INFINITY);
            fe[e] = f;
        }
        uint64_t c[33] = {0};
        hist_blocks(x, n, fe, nedges, c, &miss);
        for (uint32_t b = 0; b <= nedges; b++) counts[b] = (double)c[b];
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            if (!isfinite(v)) {
                miss++;
                continue;
            }
            uint32_t lo = 0, hi = nedges;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (edges[mid] <= v) lo = mid + 1;
                else hi = mid;
            }
            counts[lo] += 1;
        }
    }
    if (missing) *missing = miss;
}
