/*
 * ks.c — the two-sample Kolmogorov-Smirnov test as scipy.stats.ks_2samp
 * (SciPy 1.10, method='auto', two-sided) computes it, and the
 * distributions behind its p-value.
 *
 * The statistic is a walk over the two sorted samples. The p-value
 * is exact (Hodges' lattice paths) when both samples have at most 10,000
 * values, and otherwise kstwo.sf(D, round(n1 n2 / (n1 + n2))): the
 * one-sample two-sided distribution, which SciPy evaluates by the case
 * analysis of Simard and L'Ecuyer (2011). Each branch below mirrors
 * SciPy's (scipy/stats/_ksstats.py, _stats_pythran.py and
 * special/cephes/kolmogorov.c) with the same cut-overs, so that both pick
 * the same approximation for the same (n, d) and agree to rounding; the
 * tests hold them to 1e-10. The one-sided Smirnov tail, which SciPy sums
 * in double-double arithmetic, is summed here in long double with the
 * same terms and the same early exit.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"

#define TWO128 0x1p128
#define TWOM128 0x1p-128

static double clip01(double p)
{
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

/* ---- statistic ------------------------------------------------------------ */

/* The extremes of c = i ny - j nx over the pooled values of the sorted
 * samples x and y, i and j counting the values of x and y that are <= the
 * pooled value, each with the (i, j) of its first occurrence; both start
 * at 0 with (0, 0). Only a few pooled values can hold an extreme: between
 * two consecutive distinct values of y, j is fixed and every further
 * pooled value is an x that raises i, so c strictly grows there. A
 * group's largest c is at its last value (i = the count of x below the
 * next y value) and its smallest at its first, the y value itself. So the
 * walk steps over y, the shorter sample, and runs through x with plain
 * compares, which predict well when x is the denser one; the groups come
 * in order and the compares are strict, so each extreme keeps its first
 * occurrence, as a walk over every pooled value would. */
typedef struct ks_ext {
    int64_t hi, hi_i, hi_j, lo, lo_i, lo_j;
} ks_ext;

static void ks_extremes(const double *x, int64_t nx, const double *y,
                        int64_t ny, ks_ext *e)
{
    int64_t i = 0, j = 0, hi = 0, hi_i = 0, hi_j = 0, lo = 0, lo_i = 0,
            lo_j = 0;
    while (j < ny) {
        double v = y[j];
        while (i < nx && x[i] < v) i++;
        int64_t c = i * ny - j * nx;
        int up = c > hi;
        hi = up ? c : hi;
        hi_i = up ? i : hi_i;
        hi_j = up ? j : hi_j;
        while (i < nx && x[i] == v) i++;
        do j++;
        while (j < ny && y[j] == v);
        c = i * ny - j * nx;
        int dn = c < lo;
        lo = dn ? c : lo;
        lo_i = dn ? i : lo_i;
        lo_j = dn ? j : lo_j;
    }
    *e = (ks_ext){hi, hi_i, hi_j, lo, lo_i, lo_j};
}

double rk_drift_ks_stat_sorted(const double *a, size_t na, const double *b,
                               size_t nb)
{
    /* SciPy evaluates cdf1 - cdf2 = i/n1 - j/n2 at every pooled value
     * (searchsorted 'right'), i.e. once all copies of the value are
     * counted, and takes the largest and the most negative. The extremes
     * are found on the exact integers i n2 - j n1 and converted at the
     * end with SciPy's own formula, so the statistic is SciPy's to the
     * last bit (barring two pairs with one exact value and different
     * roundings, one ulp). With a as y the signs flip: its smallest c is
     * the largest i n2 - j n1. */
    int64_t n1 = (int64_t)na, n2 = (int64_t)nb;
    ks_ext e;
    if (n2 <= n1) {
        ks_extremes(a, n1, b, n2, &e);
    } else {
        ks_extremes(b, n2, a, n1, &e);
        e = (ks_ext){-e.lo, e.lo_j, e.lo_i, -e.hi, e.hi_j, e.hi_i};
    }
    double dmax = (double)e.hi_i / (double)n1 - (double)e.hi_j / (double)n2;
    double dmin = (double)e.lo_i / (double)n1 - (double)e.lo_j / (double)n2;
    double mins = -dmin > 1 ? 1 : -dmin;
    return mins > dmax ? mins : dmax;
}

/* ---- exact two-sample p-value ---------------------------------------------- */

/* P(D_{n,n} >= h/n): the alternating binomial sum in Horner form. */
static double prob_outside_square(int64_t n, int64_t h)
{
    double p = 0;
    for (int64_t k = n / h; k >= 0; k--) {
        double p1 = 1.0;
        for (int64_t j = 0; j < h; j++)
            p1 = (double)(n - k * h - j) * p1 / (double)(n + k * h + j + 1);
        p = p1 * (1.0 - p);
    }
    return 2 * p;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return -floor_div(-a, b);
}

/* The share of lattice paths from (0,0) to (m,n) that leave the band
 * |x/m - y/n| < h/lcm, computed directly as 1 - p (Viehmann's recursion)
 * over a sliding window of one column. a has room for n + 1 values. */
static double prob_outer_inside(int64_t m, int64_t n, int64_t g, int64_t h,
                                double *a)
{
    if (m < n) {
        int64_t t = m;
        m = n;
        n = t;
    }
    int64_t mg = m / g, ng = n / g;
    int64_t minj = 0, maxj = ceil_div(h, mg);
    if (maxj > n + 1) maxj = n + 1;
    int64_t curlen = maxj - minj;
    int64_t lena = 2 * maxj + 2 < n + 1 ? 2 * maxj + 2 : n + 1;
    for (int64_t i = 0; i < lena; i++) a[i] = 1.0;
    for (int64_t i = minj; i < maxj && i < lena; i++) a[i] = 0.0;
    for (int64_t i = 1; i <= m; i++) {
        int64_t lastminj = minj, lastlen = curlen;
        minj = floor_div(ng * i - h, mg) + 1;
        if (minj < 0) minj = 0;
        if (minj > n) minj = n;
        maxj = ceil_div(ng * i + h, mg);
        if (maxj > n + 1) maxj = n + 1;
        if (maxj <= minj) return 1.0;
        double val = minj == 0 ? 0.0 : 1.0;
        for (int64_t jj = 0; jj < maxj - minj; jj++) {
            int64_t j = jj + minj;
            val = (a[jj + minj - lastminj] * (double)i + val * (double)j) /
                  (double)(i + j);
            a[jj] = val;
        }
        curlen = maxj - minj;
        /* Carried-over entries past the new window read as 1. */
        for (int64_t t = curlen; t < curlen + (lastlen - curlen) && t < lena; t++)
            a[t] = 1.0;
    }
    return a[maxj - minj - 1];
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ---- kstwo: the one-sample two-sided distribution ------------------------- */

/* log(n! / n^n) by Stirling's series. */
static double log_nfact_div_npown(double n)
{
    static const double c[] = {
        -2.955065359477124183e-2, 6.4102564102564102564e-3,
        -1.9175269175269175269e-3, 8.4175084175084175084e-4,
        -5.952380952380952381e-4, 7.9365079365079365079e-4,
        -2.7777777777777777778e-3, 8.3333333333333333333e-2};
    double rn = 1.0 / n, y = rn / n, p = 0;
    for (int i = 0; i < 8; i++) p = p * y + c[i];
    return log(n) / 2 - n + log(2 * M_PI) / 2 + rn * p;
}

/* Small dense matrices for the Durbin method: C = A B, all k x k. */
static void matmul(const double *a, const double *b, double *c, int k)
{
    for (int i = 0; i < k; i++) {
        double *ci = c + (size_t)i * k;
        for (int j = 0; j < k; j++) ci[j] = 0;
        for (int l = 0; l < k; l++) {
            double ail = a[(size_t)i * k + l];
            const double *bl = b + (size_t)l * k;
            for (int j = 0; j < k; j++) ci[j] += ail * bl[j];
        }
    }
}

/* Pr(D_n <= d) by the Durbin matrix, Marsaglia-Tsang-Wang form. NaN when
 * out of memory (the caller reports it). */
static double kolmogn_dmtw(int64_t n, double d)
{
    if (d >= 1.0) return 1.0;
    double nd = (double)n * d;
    if (nd <= 0.5) return 0.0;
    int k = (int)ceil(nd);
    double h = k - nd;
    int m = 2 * k - 1;
    size_t mm = (size_t)m * m;
    double *buf = rk_malloc((4 * mm + 2 * (size_t)m) * sizeof *buf);
    if (!buf) return NAN;
    double *H = buf, *P = H + mm, *T = P + mm, *T2 = T + mm;
    double *v = T2 + mm, *w = v + m;
    memset(H, 0, mm * sizeof *H);
    double fac = 1.0;
    for (int j = 1; j <= m; j++) {
        v[j - 1] = 1.0 - pow(h, j);
        w[j - 1] = fac;
        fac /= j;
        v[j - 1] *= fac;
    }
    double base = 2 * h - 1.0 > 0 ? 2 * h - 1.0 : 0;
    double tt = pow(base, m) - 2 * pow(h, m);
    v[m - 1] = (1.0 + tt) * fac;
    for (int i = 1; i < m; i++)
        for (int r = i - 1; r < m; r++) H[(size_t)r * m + i] = w[r - (i - 1)];
    for (int r = 0; r < m; r++) H[(size_t)r * m] = v[r];
    for (int c = 0; c < m; c++) H[(size_t)(m - 1) * m + c] = v[m - 1 - c];

    memset(P, 0, mm * sizeof *P);
    for (int i = 0; i < m; i++) P[(size_t)i * m + i] = 1.0;
    int64_t nn = n;
    long expnt = 0, hexpnt = 0;
    while (nn > 0) {
        if (nn % 2) {
            matmul(P, H, T, m);
            memcpy(P, T, mm * sizeof *P);
            expnt += hexpnt;
        }
        matmul(H, H, T2, m);
        memcpy(H, T2, mm * sizeof *H);
        hexpnt *= 2;
        if (fabs(H[(size_t)(k - 1) * m + (k - 1)]) > TWO128) {
            for (size_t i = 0; i < mm; i++) H[i] /= TWO128;
            hexpnt += 128;
        }
        nn /= 2;
    }
    double p = P[(size_t)(k - 1) * m + (k - 1)];
    rk_free(buf);
    for (int64_t i = 1; i <= n; i++) {
        p = (double)i * p / (double)n;
        if (fabs(p) < TWOM128) {
            p *= TWO128;
            expnt -= 128;
        }
    }
    if (expnt != 0) p = ldexp(p, (int)expnt);
    return clip01(p);
}

static void pomeranz_j1j2(int64_t i, int64_t n, int64_t ll, int64_t ceilf,
                          int64_t roundf, int64_t *j1o, int64_t *j2o)
{
    int64_t j1, j2;
    if (i == 0) {
        j1 = -ll - ceilf - 1;
        j2 = ll + ceilf - 1;
    } else {
        int64_t d = (i + 1) / 2, odd = (i + 1) % 2 == 0;
        if (odd) {
            if (d == n + 1) {
                j1 = n - ll - ceilf - 1;
                j2 = n + ll + ceilf - 1;
            } else {
                j1 = d - 1 - ll - roundf - 1;
                j2 = d + ll - 1 + ceilf - 1;
            }
        } else {
            j1 = d - 1 - ll - 1;
            j2 = d + ll + roundf - 1;
        }
    }
    *j1o = j1 + 2 > 0 ? j1 + 2 : 0;
    *j2o = j2 < n ? j2 : n;
}

/* Pr(D_n <= x) by the Pomeranz recursion (used for n <= 140). */
static double kolmogn_pomeranz(int64_t n, double x)
{
    double t = (double)n * x;
    int64_t ll = (int64_t)floor(t);
    double f = t - (double)ll;
    double g = f < 1.0 - f ? f : 1.0 - f;
    int64_t ceilf = f > 0, roundf = f > 0.5;
    int64_t np = 2 * (ll + 1);
    double *buf = rk_malloc((size_t)np * 5 * sizeof *buf);
    if (!buf) return NAN;
    double *gp = buf, *tgp = gp + np, *ogp = tgp + np, *v0 = ogp + np,
           *v1 = v0 + np;
    gp[0] = tgp[0] = ogp[0] = 1.0;
    double gn = g / n, tgn = 2 * g / n, ogn = (1 - 2 * g) / n;
    for (int64_t m = 1; m < np; m++) {
        gp[m] = gp[m - 1] * gn / m;
        tgp[m] = tgp[m - 1] * tgn / m;
        ogp[m] = ogp[m - 1] * ogn / m;
    }
    memset(v0, 0, (size_t)np * sizeof *v0);
    memset(v1, 0, (size_t)np * sizeof *v1);
    v1[0] = 1;
    int64_t v0s = 0, v1s = 0, j1, j2, expnt = 0;
    pomeranz_j1j2(0, n, ll, ceilf, roundf, &j1, &j2);
    for (int64_t i = 1; i < 2 * n + 2; i++) {
        int64_t k1 = j1;
        double *tv = v0;
        v0 = v1;
        v1 = tv;
        int64_t ts = v0s;
        v0s = v1s;
        v1s = ts;
        memset(v1, 0, (size_t)np * sizeof *v1);
        pomeranz_j1j2(i, n, ll, ceilf, roundf, &j1, &j2);
        const double *pw = (i == 1 || i == 2 * n + 1) ? gp
                           : (i % 2 ? tgp : ogp);
        int64_t ln2 = j2 - k1 + 1;
        if (ln2 > 0) {
            /* The entries [j1 - k1, j2 - k1] of the full convolution of
             * v0[k1 - v0s ..] (ln2 values) with pw[0 .. ln2). */
            const double *a = v0 + (k1 - v0s);
            int64_t la = ln2;
            if (k1 - v0s + la > np) la = np - (k1 - v0s);
            int64_t cstart = j1 - k1, clen = j2 - j1 + 1;
            double vmax = 0;
            for (int64_t c = 0; c < clen; c++) {
                int64_t kk = cstart + c;
                double s = 0;
                int64_t lo = kk - (ln2 - 1) > 0 ? kk - (ln2 - 1) : 0;
                int64_t hi = kk < la - 1 ? kk : la - 1;
                for (int64_t q = lo; q <= hi; q++) s += a[q] * pw[kk - q];
                v1[c] = s;
                if (s > vmax) vmax = s;
            }
            if (0 < vmax && vmax < TWOM128) {
                for (int64_t c = 0; c < np; c++) v1[c] *= TWO128;
                expnt -= 128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    double ans = v1[n - v1s];
    rk_free(buf);
    for (int64_t m = 1; m <= n; m++) {
        if (fabs(ans) > TWO128) {
            ans *= TWOM128;
            expnt += 128;
        }
        ans *= (double)m;
    }
    if (expnt != 0) ans = ldexp(ans, (int)expnt);
    return clip01(ans);
}

/* Pelz-Good asymptotic series for Pr(D_n <= x), unclipped. */
static double kolmogn_pelzgood(int64_t n, double x)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    const double pi2 = M_PI * M_PI, pi4 = pi2 * pi2, pi6 = pi4 * pi2;
    const double sqrt2pi = sqrt(2 * M_PI);
    double z = sqrt((double)n) * x;
    double z2 = z * z, z3 = z * z * z, z4 = z2 * z2, z6 = z4 * z2;
    double qlog = -pi2 / 8 / z2;
    if (qlog < -708) return 0.0;
    double q = exp(qlog);
    double k1a = -z2, k1b = pi2 / 4;
    double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4,
           k2c = pi4 * (1 - 2 * z2) / 16;
    double k3d = pi6 * (5 - 30 * z2) / 64,
           k3c = pi4 * (-60 * z2 + 212 * z4) / 16,
           k3b = pi2 * (135 * z4 - 96 * z6) / 4,
           k3a = -30 * z6 - 90 * pow(z, 8);
    double K[4] = {0, 0, 0, 0};
    int64_t maxk = (int64_t)ceil(16 * z / M_PI);
    for (int64_t k = maxk; k > 0; k--) {
        double m = 2.0 * k - 1, m2 = m * m, m4 = m2 * m2, m6 = m4 * m2;
        double qp = pow(q, (double)(8 * k));
        double c[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                       k3a + k3b * m2 + k3c * m4 + k3d * m6};
        for (int i = 0; i < 4; i++) K[i] = K[i] * qp + c[i];
    }
    double div[4] = {z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)};
    for (int i = 0; i < 4; i++) K[i] = K[i] * q * sqrt2pi / div[i];
    q = exp(-pi2 / 2 / z2);
    double k2extra = 0, k3extra = 0, s3z = sqrt(3.0) * z;
    for (int64_t k = maxk; k > 0; k--) {
        double kk = (double)(k * k), qk = pow(q, kk), kpi = M_PI * (double)k;
        k2extra += kk * qk;
        k3extra += (s3z + kpi) * (s3z - kpi) * kk * qk;
    }
    K[2] += k2extra * (pi2 * sqrt2pi / (-36 * z3));
    K[3] += k3extra * (pi2 * sqrt2pi / (216 * z6));
    double sum = 0;
    for (int i = 0; i < 4; i++) sum += K[i] / pow((double)n, i / 2.0);
    return sum;
}

double rk_drift_smirnov(uint64_t nu, double x)
{
    if (nu == 0 || nu > INT32_MAX || !(x >= 0.0 && x <= 1.0)) return NAN;
    int64_t n = (int64_t)nu;
    if (n == 1) return 1 - x;
    if (x == 0.0) return 1.0;
    if (x == 1.0) return 0.0;
    /* floor(n x) and the remainder, exactly: n x = hi + lo. */
    double hi = (double)n * x, lo = fma((double)n, x, -hi);
    double fl = floor(hi), alpha = (hi - fl) + lo;
    int64_t nxfl = (int64_t)fl;
    if (alpha < 0) {
        nxfl--;
        alpha += 1;
    }
    if (alpha >= 1) {
        nxfl++;
        alpha = 0;
    }
    if (nxfl == 0 || (nxfl == 1 && alpha == 0)) {
        /* x <= 1/n */
        long double cdf = (long double)x * powl(1.0L + x, (long double)(n - 1));
        return (double)(1.0L - cdf);
    }
    if (-2.0 * (double)n * x * x < -7.451332191019412076235e2) return 0.0;
    if (nxfl >= n - 1) return (double)powl(1.0L - x, (long double)n);
    if (n > 1000000) {
        double logp = -pow(6.0 * n * x + 1, 2) / 18.0 / n;
        return logp < -M_LN2 ? exp(logp) : 1 - (-expm1(logp));
    }
    /* Birnbaum-Tingey: P(D+ >= x) = x sum_{v=0}^{n-ceil(nx)} C(n,v)
     * (1 - x - v/n)^(n-v) (x + v/n)^(v-1), the last term dropped when
     * n x is an integer (it is 0); stops, as SciPy does, once the
     * remaining terms cannot move the sum. SciPy works in double-double;
     * here each term is exp of a sum of logs in double, where only the
     * running log C(n, v) could drift (its size reaches n ln 2): it is
     * carried as an unevaluated sum hi + lo (Knuth's two-sum), so each
     * term is off by ~1e-16 times the size of its log, a few 1e-12
     * relative at n = 10^5, independently of the others. 1 - x - v/n is
     * formed from the exact n x = hi + lo, so late terms keep their
     * digits. */
    int64_t nterms = n - nxfl;
    double fn = (double)n, sum = pow(1.0 - x, fn) / x;
    double lc = log(fn), lce = 0;   /* log C(n, j) = lc + lce */
    for (int64_t j = 1; j < nterms; j++) {
        double t2 = (((double)(n - j) - hi) - lo) / fn;
        double t1 = (hi + (double)j) / fn;
        double aj = exp(((lc + (double)(n - j) * log(t2)) +
                         (double)(j - 1) * log(t1)) + lce);
        sum += aj;
        if (aj != 0) {
            if (4.0 * (double)(nterms - j) * aj < DBL_EPSILON * sum &&
                j != nterms - 1)
                break;
        } else if (j > n / 2) {
            break;
        }
        double inc = log((double)(n - j) / (double)(j + 1));
        double t = lc + inc, bv = t - lc;
        lce += (lc - (t - bv)) + (inc - bv);
        lc = t;
    }
    return clip01(sum * x);
}

double rk_drift_kstwo_sf(uint64_t nu, double x)
{
    if (nu == 0 || nu > INT32_MAX || isnan(x)) return NAN;
    int64_t n = (int64_t)nu;
    double fn = (double)n;
    if (x >= 1.0) return 0.0;
    if (x <= 0.0) return 1.0;
    double t = fn * x;
    if (t <= 1.0) {   /* Ruben-Gambino, 1/2n <= x <= 1/n */
        if (t <= 0.5) return 1.0;
        double prob;
        if (n <= 140) {
            prob = 1.0;
            for (int64_t i = 1; i <= n; i++)
                prob *= (double)i * (1.0 / fn) * (2 * t - 1);
        } else {
            prob = exp(log_nfact_div_npown(fn) + fn * log(2 * t - 1));
        }
        return clip01(1.0 - prob);
    }
    if (t >= fn - 1) return clip01(2 * pow(1.0 - x, fn));
    if (x >= 0.5) return clip01(2 * rk_drift_smirnov(nu, x));
    double nx2 = t * x;
    if (n <= 140) {
        if (nx2 <= 0.754693) return clip01(1.0 - kolmogn_dmtw(n, x));
        if (nx2 <= 4) return clip01(1.0 - kolmogn_pomeranz(n, x));
        return clip01(2 * rk_drift_smirnov(nu, x));
    }
    if (nx2 >= 370.0) return 0.0;
    if (nx2 >= 2.2) return clip01(2 * rk_drift_smirnov(nu, x));
    double cdf;
    if (nx2 >= 18.0) cdf = 1.0;
    else if (n <= 100000 && fn * pow(x, 1.5) <= 1.4) cdf = kolmogn_dmtw(n, x);
    else cdf = kolmogn_pelzgood(n, x);
    return clip01(1.0 - cdf);
}

/* ---- the test ---------------------------------------------------------------- */

int rk_drift_ks_sorted(const double *a, size_t na, const double *b,
                       size_t nb, rk_drift_ks_result *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    out->stat = out->p = NAN;
    if (na == 0 || nb == 0)
        return rk_err_set(err, RK_EINVAL, "ks: the %s sample has no finite "
                          "value", na == 0 ? "reference" : "current");
    if (na > INT32_MAX || nb > INT32_MAX)
        return rk_err_set(err, RK_ELIMIT, "ks: samples of %zu and %zu values,"
                          " at most %d each", na, nb, INT32_MAX);
    out->n1 = na;
    out->n2 = nb;
    double d = rk_drift_ks_stat_sorted(a, na, b, nb);
    out->stat = d;
    int64_t n1 = (int64_t)na, n2 = (int64_t)nb;
    if ((na > nb ? na : nb) <= RK_DRIFT_KS_MAX_EXACT) {
        int64_t g = gcd64(n1, n2), lcm = (n1 / g) * n2;
        int64_t h = (int64_t)rint(d * (double)lcm);
        double dr = (double)h / (double)lcm, p;
        if (h == 0) {
            p = 1.0;
        } else if (n1 == n2) {
            p = prob_outside_square(n1, h);
        } else {
            int64_t nmin = n1 < n2 ? n1 : n2;
            double *col = rk_malloc((size_t)(nmin + 1) * sizeof *col);
            if (!col) return rk_err_set(err, RK_ENOMEM, "ks: out of memory");
            p = prob_outer_inside(n1, n2, g, h, col);
            rk_free(col);
        }
        /* SciPy falls back to the asymptotic form when the exact sum is
         * not a probability; it never is outside [0, 1] in practice. */
        if (p >= 0 && p <= 1) {
            out->stat = dr;
            out->p = p;
            out->exact = 1;
            return 0;
        }
        d = dr;
        out->stat = d;
    }
    double m = (double)(n1 > n2 ? n1 : n2), n = (double)(n1 > n2 ? n2 : n1);
    double en = m * n / (m + n);
    double p = rk_drift_kstwo_sf((uint64_t)rint(en), d);
    if (isnan(p)) return rk_err_set(err, RK_ENOMEM, "ks: out of memory");
    out->p = clip01(p);
    return 0;
}

int rk_drift_ks(const float *ref, size_t nref, const float *cur, size_t ncur,
                rk_drift_ks_result *out, rk_err *err)
{
    double *v;
    size_t na, nb;
    int rc = rk__drift_sort_pair(ref, nref, cur, ncur, &v, &na, &nb, err);
    if (rc) {
        memset(out, 0, sizeof *out);
        out->stat = out->p = NAN;
        return rc;
    }
    rc = rk_drift_ks_sorted(v, na, v + na, nb, out, err);
    rk_free(v);
    return rc;
}
