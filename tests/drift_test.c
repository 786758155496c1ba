/*
 * drift_test.c — the drift statistics of src/monitor/ against SciPy, the
 * detector's decisions, the rk_refhist comparison and the live window.
 *
 * The reference numbers were computed once with /usr/bin/python3 (SciPy
 * 1.10.1, NumPy 1.24.2 from Debian 12) by the snippets quoted next to
 * each table, and are hard-coded here, so the test needs no Python.
 * Samples that are too long to quote are generated the same way on both
 * sides: gen_a(n)[i] = float32((i * 7919 % 10007) / 10007) and
 * gen_b(n, s)[i] = float32((i * 104729 % 10009) / 10009 + s), exact
 * integer arithmetic and one rounding each, so C and NumPy agree to the
 * bit. Last, the detector's options read from a `monitor:` config section.
 */
#include <float.h>

#include "rk_monitor.h"
#include "rk_train.h"
#include "test.h"

/* |a - b| <= tol * max(1, |b|) */
#define NEAR(a, b, tol) \
    (fabs((double)(a) - (double)(b)) <= (tol) * fmax(1.0, fabs((double)(b))))
/* Relative to b (for tiny p-values), with an absolute floor of 1e-300. */
#define REL(a, b, tol) \
    (fabs((double)(a) - (double)(b)) <= (tol) * fmax(1e-300, fabs((double)(b))))

static float *gen_a(size_t n)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)((i * 7919) % 10007) / 10007.0);
    return x;
}

static float *gen_b(size_t n, double s)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)((i * 104729) % 10009) / 10009.0 + s);
    return x;
}

/* ---- KS and Wasserstein against SciPy ---------------------------------- */

/*
 * import numpy as np; from scipy import stats
 * f64 = np.float64
 * gen_a = lambda n: (np.arange(n)*7919 % 10007 / 10007.0).astype(np.float32).astype(f64)
 * gen_b = lambda n, s: ((np.arange(n)*104729 % 10009) / 10009.0 + s).astype(np.float32).astype(f64)
 * for a, b in cases:
 *     r = stats.ks_2samp(a, b); w = stats.wasserstein_distance(a, b)
 *     print(len(a), len(b), r.statistic, r.pvalue, w, w / np.std(a))
 *
 * The first two cases are the small samples A, B and C, D below. The
 * others cover: exact unequal (1000 x 700), asymptotic via Pelz-Good
 * (12000 x 3000, en = 2400), asymptotic with en = 50 (Pomeranz), a
 * p-value of 1 by Ruben-Gambino (en = 296), exact equal sizes (5000 x
 * 5000) and a tiny exact p-value (200 x 10000).
 */
static const float SA[] = {0.1f, 0.5f, 1.2f, 3.3f, -0.7f, 2.2f, 0.9f};
static const float SB[] = {1.1f, 2.5f, 0.3f, 4.0f, 3.1f};
static const float SC[] = {1, 2, 2, 3, 5, 8, 13, 21};
static const float SD[] = {2, 3, 3, 4, 6, 9, 14, 30};

static const struct {
    size_t n1, n2;
    double shift;
    double d, p, w, wnorm;
    int exact;
} ks_cases[] = {
    {7, 5, 0, 0.45714285714285713, 0.43434343434343425, 1.1285714113286562, 0.9130660099148928, 1},
    {8, 8, 0, 0.25, 0.98010878010878, 2.0, 0.3072948089282435, 1},
    {1000, 700, 0.05, 0.05342857142857143, 0.1830578297999646, 0.04976275432998747, 0.17230543321549857, 1},
    {12000, 3000, 0.02, 0.022249999999999992, 0.18290399419552628, 0.020549837353763603, 0.07118588352841582, 0},
    {20000, 50, 0.1, 0.1279499999999999, 0.35574767122946593, 0.09537563728155582, 0.33038410684383834, 0},
    {20000, 300, 0.0, 0.007900000000000004, 1.0, 0.0027096343801417486, 0.009386255862319788, 0},
    {5000, 5000, 0.03, 0.0316, 0.013568763904229907, 0.03035075001505902, 0.10511648010815758, 1},
    {200, 10000, 0.2, 0.2042, 1.2141697209130503e-07, 0.19605292653487993, 0.6787042624012283, 1},
};

TEST(ks_wasserstein_vs_scipy)
{
    rk_err err = {0};
    for (size_t c = 0; c < sizeof ks_cases / sizeof ks_cases[0]; c++) {
        const float *a, *b;
        float *ga = NULL, *gb = NULL;
        if (c == 0) {
            a = SA;
            b = SB;
        } else if (c == 1) {
            a = SC;
            b = SD;
        } else {
            a = ga = gen_a(ks_cases[c].n1);
            b = gb = gen_b(ks_cases[c].n2, ks_cases[c].shift);
        }
        rk_drift_ks_result r;
        double w, wn;
        int rc1 = rk_drift_ks(a, ks_cases[c].n1, b, ks_cases[c].n2, &r, &err);
        int rc2 = rk_drift_wasserstein(a, ks_cases[c].n1, b, ks_cases[c].n2,
                                       &w, &wn, &err);
        free(ga);
        free(gb);
        if (!NEAR(r.p, ks_cases[c].p, 1e-10) || !NEAR(w, ks_cases[c].w, 1e-12))
            fprintf(stderr, "  case %zu: D %.17g p %.17g w %.17g\n", c, r.stat,
                    r.p, w);
        CHECK_OK(rc1);
        CHECK_OK(rc2);
        CHECK(NEAR(r.stat, ks_cases[c].d, 1e-15));
        CHECK(REL(r.p, ks_cases[c].p, 1e-9));
        CHECK_EQ_INT(r.exact, ks_cases[c].exact);
        CHECK(NEAR(w, ks_cases[c].w, 1e-12));
        CHECK(NEAR(wn, ks_cases[c].wnorm, 1e-12));
    }
}

/*
 * from scipy import stats
 * print(stats.kstwo.sf(d, n))   # for each (n, d)
 *
 * Covers every branch of SciPy's _kolmogn: Ruben-Gambino (n x <= 1 and
 * n x >= n - 1), 2 x smirnov (x >= 0.5, n <= 140 with n x^2 > 4, large
 * n with n x^2 >= 2.2), Durbin matrix, Pomeranz, Pelz-Good.
 */
static const struct {
    uint64_t n;
    double d, sf;
} kstwo_cases[] = {
    {1, 0.3, 1.0},
    {5, 0.05, 1.0},
    {5, 0.15, 0.9988},
    {5, 0.95, 6.250000000000028e-07},
    {10, 0.3, 0.27053557479999946},
    {10, 0.6, 0.0005681672000000003},
    {50, 0.08, 0.880839701941023},
    {50, 0.15, 0.19026366518248072},
    {50, 0.35, 5.573523514803185e-06},
    {140, 0.2, 2.1981563302200222e-05},
    {141, 0.05, 0.8548456930096628},
    {141, 0.2, 2.0276784223976912e-05},
    {1000, 0.02, 0.8108971656895577},
    {1000, 0.04, 0.07933956059000224},
    {1000, 0.003, 1.0},
    {9091, 0.012, 0.14464695176372644},
    {9091, 0.002, 0.9999999999999563},
    {9091, 0.03, 1.5289223951439078e-07},
    {200000, 0.002, 0.39995085369038097},
    {200000, 0.004, 0.003314212822560255},
};

/* from scipy import special; print(special.smirnov(n, d)) */
static const struct {
    uint64_t n;
    double d, sf;
} smirnov_cases[] = {
    {1, 0.3, 0.7},
    {2, 0.4, 0.44000000000000006},
    {10, 0.05, 0.9224335892010742},
    {10, 0.3, 0.1354635556},
    {100, 0.1, 0.1265906584562817},
    {1000, 0.05, 0.006506037390545166},
    {1500, 0.01, 0.7359239336363931},
    {2000000, 0.001, 0.018303432023617325},
};

TEST(kstwo_smirnov_vs_scipy)
{
    for (size_t i = 0; i < sizeof kstwo_cases / sizeof kstwo_cases[0]; i++) {
        double v = rk_drift_kstwo_sf(kstwo_cases[i].n, kstwo_cases[i].d);
        if (!REL(v, kstwo_cases[i].sf, 1e-9))
            fprintf(stderr, "  kstwo(%llu, %g) = %.17g\n",
                    (unsigned long long)kstwo_cases[i].n, kstwo_cases[i].d, v);
        CHECK(REL(v, kstwo_cases[i].sf, 1e-9));
    }
    for (size_t i = 0; i < sizeof smirnov_cases / sizeof smirnov_cases[0]; i++) {
        double v = rk_drift_smirnov(smirnov_cases[i].n, smirnov_cases[i].d);
        CHECK(REL(v, smirnov_cases[i].sf, 1e-10));
    }
    CHECK(isnan(rk_drift_kstwo_sf(0, 0.5)));
    CHECK(rk_drift_kstwo_sf(10, 0) == 1.0 && rk_drift_kstwo_sf(10, 1) == 0.0);
}

/* ---- chi-square, JS, PSI ------------------------------------------------- */

/* from scipy import special; print(special.gammaincc(a, x)) */
static const double gamma_cases[][3] = {
    {0.5, 0.1, 0.6547208460185768},
    {0.5, 3.0, 0.014305878435429641},
    {1, 1, 0.36787944117144245},
    {2.5, 1.0, 0.8491450360846096},
    {2.5, 10.0, 0.0012497305630313773},
    {10, 3, 0.9988975118698845},
    {10, 25, 0.0002214766382487835},
    {100, 90, 0.84177901081357},
    {100, 140, 0.00016105717471255715},
    {512, 600, 0.00010746762608383012},
};

TEST(chi2_vs_scipy)
{
    for (size_t i = 0; i < sizeof gamma_cases / sizeof gamma_cases[0]; i++)
        CHECK(REL(rk_drift_gammaincc(gamma_cases[i][0], gamma_cases[i][1]),
                  gamma_cases[i][2], 1e-11));
    CHECK(isnan(rk_drift_gammaincc(0, 1)) && rk_drift_gammaincc(2, 0) == 1);
    rk_err err = {0};
    rk_drift_chi2_result r;
    /* stats.chi2_contingency([[10,20,30,5],[12,18,25,15]], correction=False)
     * -> 5.564074083810926 0.13485611089848099 3. The empty fourth
     * category (0 in both rows) is dropped, as SciPy needs it to be. */
    const double r1[] = {10, 20, 30, 0, 5}, c1[] = {12, 18, 25, 0, 15};
    CHECK_OK(rk_drift_chi2(r1, c1, 5, &r, &err));
    CHECK(NEAR(r.stat, 5.564074083810926, 1e-12));
    CHECK(REL(r.p, 0.13485611089848099, 1e-10));
    CHECK_EQ_INT(r.dof, 3);
    /* chi2_contingency([[500,300,200],[400,300,300]], correction=False)
     * -> 31.11111111111111 1.755125027994412e-07 2 */
    const double r2[] = {500, 300, 200}, c2[] = {400, 300, 300};
    CHECK_OK(rk_drift_chi2(r2, c2, 3, &r, &err));
    CHECK(NEAR(r.stat, 31.11111111111111, 1e-12));
    CHECK(REL(r.p, 1.755125027994412e-07, 1e-10));
    /* Identical proportions: 0 and p = 1; one category: dof 0, p = 1. */
    const double r3[] = {10, 20, 30}, c3[] = {1, 2, 3};
    CHECK_OK(rk_drift_chi2(r3, c3, 3, &r, &err));
    CHECK(NEAR(r.stat, 0, 1e-12) && NEAR(r.p, 1, 1e-12));
    const double one_r[] = {4, 0}, one_c[] = {9, 0};
    CHECK_OK(rk_drift_chi2(one_r, one_c, 2, &r, &err));
    CHECK(r.dof == 0 && r.stat == 0 && r.p == 1);
    /* An empty row is an error. */
    const double zero[] = {0, 0, 0};
    CHECK(rk_drift_chi2(r3, zero, 3, &r, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "sum to 0");
}

TEST(js_psi_vs_scipy)
{
    rk_err err = {0};
    double v;
    /* distance.jensenshannon(p, q, base=2) */
    const double p1[] = {1, 2, 3, 0}, q1[] = {2, 2, 1, 1};
    CHECK_OK(rk_drift_js(p1, q1, 4, &v, &err));
    CHECK(NEAR(v, 0.40824829046386296, 1e-14));
    const double p2[] = {5, 0}, q2[] = {0, 5};   /* disjoint: 1 */
    CHECK_OK(rk_drift_js(p2, q2, 2, &v, &err));
    CHECK(NEAR(v, 1.0, 1e-15));
    const double p3[] = {500, 300, 200}, q3[] = {400, 300, 300};
    CHECK_OK(rk_drift_js(p3, q3, 3, &v, &err));
    CHECK(NEAR(v, 0.10619851439230635, 1e-14));
    CHECK_OK(rk_drift_js(p3, p3, 3, &v, &err));
    CHECK(v == 0);
    /* psi = sum((q - p) * log(q / p)) with zero proportions -> 1e-4:
     * 1.7174169186837738 (the empty bin dominates) and
     * 0.06286086594223739. */
    CHECK_OK(rk_drift_psi(p1, q1, 4, 0, &v, &err));
    CHECK(NEAR(v, 1.7174169186837738, 1e-13));
    CHECK_OK(rk_drift_psi(p3, q3, 3, 1e-4, &v, &err));
    CHECK(NEAR(v, 0.06286086594223739, 1e-13));
    CHECK_OK(rk_drift_psi(p3, p3, 3, 0, &v, &err));
    CHECK(v == 0);
    /* A larger epsilon weighs an empty bin less. */
    double v2;
    CHECK_OK(rk_drift_psi(p1, q1, 4, 1e-2, &v2, &err));
    CHECK(v2 < 1.7174169186837738);
    const double neg[] = {1, -1};
    CHECK(rk_drift_psi(neg, p2, 2, 0, &v, &err) == RK_EINVAL);
    CHECK(rk_drift_js(p2, q2, 0, &v, &err) == RK_EINVAL);
}

/* ---- edge cases --------------------------------------------------------- */

TEST(identical_disjoint_tiny)
{
    rk_err err = {0};
    rk_drift_ks_result r;
    double w, wn;
    float *a = gen_a(3000);
    CHECK_OK(rk_drift_ks(a, 3000, a, 3000, &r, &err));
    CHECK(r.stat == 0 && r.p == 1);
    CHECK_OK(rk_drift_wasserstein(a, 3000, a, 3000, &w, &wn, &err));
    CHECK(w == 0 && wn == 0);
    free(a);
    /* ks_2samp([0,1,2],[10,11]) -> D 1, p 0.2; wasserstein 9.5 */
    const float x[] = {0, 1, 2}, y[] = {10, 11};
    CHECK_OK(rk_drift_ks(x, 3, y, 2, &r, &err));
    CHECK(r.stat == 1 && NEAR(r.p, 0.2, 1e-15));
    CHECK_OK(rk_drift_wasserstein(x, 3, y, 2, &w, &wn, &err));
    CHECK(NEAR(w, 9.5, 1e-15));
    /* ks_2samp(np.arange(30.), np.arange(30.) + 100): p 1.6911233892144742e-17 */
    float u[30], v[30];
    for (int i = 0; i < 30; i++) {
        u[i] = (float)i;
        v[i] = (float)i + 100;
    }
    CHECK_OK(rk_drift_ks(u, 30, v, 30, &r, &err));
    CHECK(r.stat == 1 && REL(r.p, 1.6911233892144742e-17, 1e-9));
    /* One value each: D 1, p 1; all equal: D 0, p 1. */
    const float one[] = {1}, two[] = {2}, ones[] = {1, 1, 1};
    CHECK_OK(rk_drift_ks(one, 1, two, 1, &r, &err));
    CHECK(r.stat == 1 && r.p == 1);
    CHECK_OK(rk_drift_ks(ones, 3, ones, 2, &r, &err));
    CHECK(r.stat == 0 && r.p == 1);
    /* A constant reference: normalized distance is +inf unless 0. */
    CHECK_OK(rk_drift_wasserstein(ones, 3, two, 1, &w, &wn, &err));
    CHECK(w == 1 && isinf(wn));
    /* Empty samples are errors. */
    CHECK(rk_drift_ks(one, 0, two, 1, &r, &err) == RK_EINVAL);
    CHECK(isnan(r.p));
    const float nans[] = {NAN, INFINITY};
    CHECK(rk_drift_wasserstein(one, 1, nans, 2, &w, &wn, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "current");
}

TEST(nan_is_missing)
{
    rk_err err = {0};
    /* The small fixture with NaN and infinities sprinkled in gives the
     * same numbers as without; -0.0 and +0.0 are one value. */
    const float a[] = {0.1f, NAN, 0.5f, 1.2f, INFINITY, 3.3f, -0.7f, 2.2f,
                       0.9f, -INFINITY};
    const float b[] = {1.1f, 2.5f, NAN, 0.3f, 4.0f, 3.1f};
    rk_drift_ks_result r;
    CHECK_OK(rk_drift_ks(a, 10, b, 6, &r, &err));
    CHECK(r.n1 == 7 && r.n2 == 5);
    CHECK(NEAR(r.stat, 0.45714285714285713, 1e-15));
    CHECK(NEAR(r.p, 0.43434343434343425, 1e-12));
    CHECK(NEAR(rk_drift_missing_rate(a, 10), 0.3, 1e-15));
    CHECK(rk_drift_missing_rate(a, 0) == 0);
    const float z1[] = {-0.0f, 1}, z2[] = {0.0f, 1};
    CHECK_OK(rk_drift_ks(z1, 2, z2, 2, &r, &err));
    CHECK(r.stat == 0);
    /* The histogram puts missing values aside. */
    const double edges[] = {0.5, 2.0};
    double cnt[3];
    uint64_t miss;
    rk_drift_hist(a, 10, edges, 2, cnt, &miss);
    CHECK(miss == 3 && cnt[0] == 2 && cnt[1] == 3 && cnt[2] == 2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Value i of a sort_cases shape; *st is the generator's state. */
static float sort_value(int shape, size_t i, uint64_t *st)
{
    static const float mix[] = {-2.0f, -1.0f, -0.0f, 0.0f, 1.0f, 2.5f,
                                INFINITY, -INFINITY, NAN, 1e-42f, -1e-42f,
                                1.4e-45f, FLT_MAX, -FLT_MAX, 1e-38f};
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t r = (uint32_t)(*st >> 32);
    float f;
    switch (shape) {
    case 0:   /* any bit pattern: NaNs, infinities, subnormals, both zeros */
        memcpy(&f, &r, 4);
        return f;
    case 1:   /* ties among the special values, and plain values */
        return r % 3 ? mix[r % (sizeof mix / sizeof mix[0])]
                     : (float)(int32_t)r / 1e6f;
    case 2: { /* the low 11 bits constant: two passes */
        uint32_t u = 0x3f800000u + r % 4096 * 2048;
        memcpy(&f, &u, 4);
        return f;
    }
    case 3: { /* only the low 11 bits vary: one pass */
        uint32_t u = 0x3f800000u + r % 2048;
        memcpy(&f, &u, 4);
        return f;
    }
    default:  /* one value and NaN: no pass at all */
        return i % 5 ? 3.0f : NAN;
    }
}

TEST(sort_matches_qsort)
{
    /* rk_drift_sort against qsort of the finite values, -0.0 made +0.0,
     * bit for bit. The shapes make the radix sort run 3, 2, 1 and 0
     * passes, so the sorted keys end in either half of out and are
     * widened in both directions; sizes below 64 take the insertion
     * sort. out has exactly n doubles, as documented. */
    static const size_t sizes[] = {1, 10, 63, 64, 1001, 5000};
    uint64_t st = 12345;
    for (int shape = 0; shape < 5; shape++) {
        for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
            size_t n = sizes[c], m = 0, nout;
            float *x = malloc(n * sizeof *x);
            double *want = malloc(n * sizeof *want);
            double *got = malloc(n * sizeof *got);
            for (size_t i = 0; i < n; i++) {
                x[i] = sort_value(shape, i, &st);
                if (isfinite(x[i])) want[m++] = (double)x[i] + 0.0;
            }
            qsort(want, m, sizeof *want, cmp_double);
            rk_err err = {0};
            int rc = rk_drift_sort(x, n, got, &nout, &err);
            int ok = rc == 0 && nout == m &&
                     memcmp(got, want, m * sizeof *got) == 0;
            if (!ok)
                fprintf(stderr, "  shape %d, n %zu: rc %d, %zu of %zu values\n",
                        shape, n, rc, nout, m);
            free(x);
            free(want);
            free(got);
            CHECK(ok);
        }
    }
}

/* The KS statistic as SciPy evaluates it, at every pooled value. */
static double ks_naive(const double *a, size_t na, const double *b, size_t nb)
{
    double hi = 0, lo = 0;
    for (size_t k = 0; k < na + nb; k++) {
        double x = k < na ? a[k] : b[k - na];
        size_t i = 0, j = 0;
        while (i < na && a[i] <= x) i++;
        while (j < nb && b[j] <= x) j++;
        double d = (double)i / (double)na - (double)j / (double)nb;
        hi = d > hi ? d : hi;
        lo = d < lo ? d : lo;
    }
    return -lo > hi ? -lo : hi;
}

TEST(ks_stat_matches_naive)
{
    /* The walk that visits only the shorter sample's values against the
     * evaluation at every pooled value, with many ties, in both argument
     * orders (either sample may be the shorter). */
    uint64_t st = 777;
    for (int t = 0; t < 200; t++) {
        size_t na = 1 + (size_t)(t * 37 % 150), nb = 1 + (size_t)(t * 53 % 97);
        double *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
        int levels = 2 + t % 40;
        for (size_t i = 0; i < na + nb; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            double v = (double)((st >> 33) % (uint64_t)levels) +
                       (i < na ? 0 : 0.5 * (t % 3) - 0.5);
            if (i < na) a[i] = v;
            else b[i - na] = v;
        }
        qsort(a, na, sizeof *a, cmp_double);
        qsort(b, nb, sizeof *b, cmp_double);
        double d1 = rk_drift_ks_stat_sorted(a, na, b, nb);
        double d2 = rk_drift_ks_stat_sorted(b, nb, a, na);
        double w = ks_naive(a, na, b, nb);
        int ok = NEAR(d1, w, 1e-15) && NEAR(d2, w, 1e-15);
        if (!ok)
            fprintf(stderr, "  trial %d (%zu x %zu): %.17g %.17g, naive %.17g\n",
                    t, na, nb, d1, d2, w);
        free(a);
        free(b);
        CHECK(ok);
    }
}

/* ---- bins and rk_refhist -------------------------------------------------- */

TEST(refhist_bins)
{
    rk_err err = {0};
    const size_t n = 5000;
    float *a = gen_a(n), *b = gen_b(4000, 0.05);
    rk_refhist *h;
    CHECK_OK(rk_refhist_numeric(&h, "x", a, n, 0, 10, &err));
    /* The sample's edges are the refhist's, by construction. */
    double *s = malloc(n * sizeof *s), edges[16];
    size_t m;
    uint32_t ne;
    int ok = rk_drift_sort(a, n, s, &m, &err) == 0 &&
             rk_drift_edges_sorted(s, m, 10, edges, &ne, &err) == 0 &&
             ne + 1 == h->nbins;
    for (uint32_t i = 0; ok && i < ne; i++) ok = edges[i] == h->edges[i];
    free(s);
    /* rk_drift_hist (float compares against rounded-up edges, eight at a
     * time) puts every value where rk_refhist_bin does; the edges are
     * sample values, so exact ties are tested too. */
    double hc[16], hb[16] = {0};
    uint64_t miss;
    rk_drift_hist(a, n, h->edges, h->nbins - 1, hc, &miss);
    for (size_t i = 0; i < n; i++) hb[rk_refhist_bin(h, a[i])] += 1;
    for (uint32_t i = 0; ok && i < h->nbins; i++) ok = hc[i] == hb[i];
    ok = ok && miss == 0;
    /* The refhist detector and the raw-sample detector bin alike, so
     * their PSI and JS agree; the refhist one decides by JS (5000 >
     * 1000 rows) and the raw one by Wasserstein. */
    rk_drift_feature fr, fs;
    int rc1 = rk_drift_refhist_numeric(h, b, 4000, NULL, &fr, &err);
    int rc2 = rk_drift_numeric(a, n, b, 4000, NULL, &fs, &err);
    rk_refhist_free(h);
    free(a);
    free(b);
    CHECK(ok);
    CHECK_OK(rc1);
    CHECK_OK(rc2);
    CHECK(fr.psi == fs.psi && fr.js == fs.js);
    CHECK(fr.method == RK_DRIFT_JS && fs.method == RK_DRIFT_WASSERSTEIN);
    /* Uniform [0,1) against uniform [0.05, 1.05): normalized W = 0.05 /
     * 0.2887 = 0.17 is drift by the default 0.1, while JS and PSI over
     * deciles stay under theirs. */
    CHECK(NEAR(fs.wasserstein_norm, 0.05 / sqrt(1.0 / 12), 0.01));
    CHECK(fs.drift && fs.js < 0.1 && fs.psi < 0.2 && !fr.drift);
    CHECK(fr.cur_count == 4000 && fr.ref_count == 5000);
}

TEST(refhist_categorical)
{
    rk_err err = {0};
    /* Reference: value v in 1..4 with counts 40, 30, 20, 10; top 3 kept. */
    uint64_t ref[100];
    size_t k = 0;
    for (uint64_t v = 1; v <= 4; v++)
        for (int i = 0; i < (int)(50 - 10 * v); i++) ref[k++] = v;
    rk_refhist *h;
    CHECK_OK(rk_refhist_categorical(&h, "c", ref, NULL, 100, 3, &err));
    /* Current: 10 x value 1, 10 x value 2, 10 x value 3, 70 x value 99
     * (new, goes to "other"), 5 missing. */
    uint64_t cur[105];
    uint8_t miss[105] = {0};
    for (int i = 0; i < 105; i++) cur[i] = i < 10 ? 1 : i < 20 ? 2 : i < 30 ? 3 : 99;
    for (int i = 100; i < 105; i++) miss[i] = 1;
    rk_drift_feature f;
    int rc = rk_drift_refhist_categorical(h, cur, miss, 105, NULL, &f, &err);
    rk_refhist_free(h);
    CHECK_OK(rc);
    /* Bins (40,30,20,10) vs (10,10,10,70): chi2_contingency(...,
     * correction=False) -> 76.33333333333334, p 1.8763164807794302e-16,
     * dof 3. */
    CHECK(f.method == RK_DRIFT_CHI2 && f.drift && f.psi_alarm);
    CHECK_EQ_INT(f.chi2_dof, 3);
    CHECK(NEAR(f.chi2_stat, 76.33333333333334, 1e-12));
    CHECK(REL(f.chi2_p, 1.8763164807794302e-16, 1e-9));
    CHECK(NEAR(f.cur_missing_rate, 5.0 / 105, 1e-15));
    /* A numeric sample against a categorical refhist is a type error. */
    CHECK_OK(rk_refhist_categorical(&h, "c", ref, NULL, 100, 3, &err));
    const float x[] = {1};
    rc = rk_drift_refhist_numeric(h, x, 1, NULL, &f, &err);
    rk_refhist_free(h);
    CHECK(rc == RK_ETYPE);
}

/* ---- detector -------------------------------------------------------------- */

TEST(detector_defaults)
{
    rk_err err = {0};
    rk_drift_opts o;
    rk_drift_opts_default(&o);
    CHECK(o.small_reference == 1000 && o.ks_alpha == 0.05 && o.psi == 0.2 &&
          o.wasserstein == 0.1 && o.js == 0.1 && o.dataset_share == 0.5);
    rk_drift_feature f[4];
    /* Small reference (1000): KS decides; p = 0.183 (table above): no
     * drift. */
    float *a = gen_a(1000), *b = gen_b(700, 0.05);
    CHECK_OK(rk_drift_numeric(a, 1000, b, 700, &o, &f[0], &err));
    free(b);
    CHECK(f[0].method == RK_DRIFT_KS && !f[0].drift);
    CHECK(REL(f[0].ks_p, 0.1830578297999646, 1e-9));
    CHECK(NEAR(f[0].wasserstein, 0.04976275432998747, 1e-12));
    /* Shifted by 0.2: KS p ~ 1e-16, drift. */
    b = gen_b(700, 0.2);
    CHECK_OK(rk_drift_numeric(a, 1000, b, 700, &o, &f[1], &err));
    free(b);
    free(a);
    CHECK(f[1].method == RK_DRIFT_KS && f[1].drift && f[1].score < 1e-10);
    /* Large reference: Wasserstein / std; 0.2 / 0.2887 = 0.69 >= 0.1. */
    a = gen_a(5000);
    b = gen_b(700, 0.2);
    CHECK_OK(rk_drift_numeric(a, 5000, b, 700, &o, &f[2], &err));
    free(b);
    CHECK(f[2].method == RK_DRIFT_WASSERSTEIN && f[2].drift);
    CHECK(isnan(f[2].ks_p) && f[2].ks_stat > 0.15);
    CHECK(f[2].psi_alarm && f[2].js > 0.1);
    /* An empty current sample: not evaluated, never drift. */
    const float nan1[] = {NAN};
    CHECK_OK(rk_drift_numeric(a, 5000, nan1, 1, &o, &f[3], &err));
    free(a);
    CHECK(f[3].method == RK_DRIFT_NONE && !f[3].drift && f[3].cur_missing_rate == 1);
    rk_drift_dataset ds;
    rk_drift_dataset_summary(f, 4, &o, &ds);
    CHECK(ds.nevaluated == 3 && ds.ndrifted == 2 && ds.drift);
    rk_drift_dataset_summary(f, 1, &o, &ds);
    CHECK(!ds.drift && ds.share == 0);
    /* Categorical: chi-square for a small reference, JS for a large one. */
    const double r2[] = {500, 300, 200}, c2[] = {400, 300, 300};
    CHECK_OK(rk_drift_categorical(r2, c2, 3, 0, 10, &o, &f[0], &err));
    CHECK(f[0].method == RK_DRIFT_CHI2 && f[0].drift);   /* p 1.8e-7 */
    CHECK(NEAR(f[0].cur_missing_rate, 10.0 / 1010, 1e-15));
    o.small_reference = 999;
    CHECK_OK(rk_drift_categorical(r2, c2, 3, 0, 0, &o, &f[0], &err));
    CHECK(f[0].method == RK_DRIFT_JS && f[0].drift);     /* JS 0.1062 */
    o.js = 0.11;
    CHECK_OK(rk_drift_categorical(r2, c2, 3, 0, 0, &o, &f[0], &err));
    CHECK(!f[0].drift && f[0].threshold == 0.11);
    o.ks_alpha = 2;
    CHECK(rk_drift_categorical(r2, c2, 3, 0, 0, &o, &f[0], &err) == RK_EINVAL);
    CHECK_STR(rk_drift_method_name(RK_DRIFT_WASSERSTEIN), "wasserstein");
}

TEST(detector_out_of_memory)
{
    rk_err err = {0};
    float *a = gen_a(500), *b = gen_b(300, 0.1);
    rk_drift_feature f;
    RK_FAIL_LOOP(rk_drift_numeric(a, 500, b, 300, NULL, &f, &err), (void)0, 20);
    free(a);
    free(b);
}

/* ---- window ---------------------------------------------------------------- */

TEST(window_bounded)
{
    rk_err err = {0};
    const uint8_t cat[] = {0, 1};
    rk_drift_window_opts wo = {2, 100, cat, 0, 0, 0};
    rk_drift_window *w;
    CHECK_OK(rk_drift_window_create(&w, &wo, &err));
    size_t bytes = rk_drift_window_bytes(w);
    rk_mem_stats m0, m1;
    rk_mem_get_stats(&m0);
    /* 1000 observations, every 10th missing. */
    for (int i = 0; i < 1000; i++) {
        float x = i % 10 == 0 ? NAN : (float)i;
        CHECK_OK(rk_drift_window_add(w, 0, x));
        CHECK_OK(rk_drift_window_add_cat(w, 1, (uint64_t)i, i % 10 == 0));
    }
    rk_mem_get_stats(&m1);
    CHECK(m1.in_use == m0.in_use && rk_drift_window_bytes(w) == bytes);
    CHECK(rk_drift_window_seen(w, 0) == 1000 && rk_drift_window_capacity(w) == 100);
    float out[100];
    uint64_t cout[100], miss;
    size_t n;
    CHECK_OK(rk_drift_window_sample(w, 0, out, 100, &n, &miss));
    /* The last 100 observations are 900..999: 10 missing, 90 values,
     * oldest first. */
    CHECK(n == 90 && miss == 10 && out[0] == 901 && out[89] == 999);
    CHECK_OK(rk_drift_window_sample_cat(w, 1, cout, 100, &n, &miss));
    CHECK(n == 90 && miss == 10 && cout[0] == 901 && cout[89] == 999);
    CHECK(rk_drift_window_sample(w, 0, out, 50, &n, &miss) == RK_ELIMIT);
    CHECK(rk_drift_window_sample(w, 1, out, 100, &n, &miss) == RK_ETYPE);
    CHECK(rk_drift_window_add(w, 2, 1) == RK_EINVAL);
    const float row[] = {1, 2};
    CHECK(rk_drift_window_add_row(w, row) == RK_ETYPE);
    /* Not yet full: what was added, in order. */
    rk_drift_window_clear(w);
    CHECK_OK(rk_drift_window_add(w, 0, 5));
    CHECK_OK(rk_drift_window_add(w, 0, INFINITY));
    CHECK_OK(rk_drift_window_add(w, 0, 7));
    CHECK_OK(rk_drift_window_sample(w, 0, out, 100, &n, &miss));
    CHECK(n == 2 && miss == 1 && out[0] == 5 && out[1] == 7);
    rk_drift_window_destroy(w);
    rk_drift_window_destroy(NULL);
    /* Limits. */
    rk_drift_window_opts big = {1000, 1u << 20, NULL, 1u << 20, 0, 0};
    CHECK(rk_drift_window_create(&w, &big, &err) == RK_ELIMIT);
    rk_drift_window_opts zero = {1, 0, NULL, 0, 0, 0};
    CHECK(rk_drift_window_create(&w, &zero, &err) == RK_EINVAL);
    RK_FAIL_LOOP(rk_drift_window_create(&w, &wo, &err),
                 rk_drift_window_destroy(w), 20);
}

/* A timed window: rows with their times, samples of a time span (with
 * the span's own missing count), across the ring's wrap; single
 * observations are refused. */
TEST(window_timed_span)
{
    rk_err err = {0};
    rk_drift_window_opts wo = {2, 8, NULL, 0, 1, 0};
    rk_drift_window *w;
    CHECK_OK(rk_drift_window_create(&w, &wo, &err));
    CHECK(rk_drift_window_bytes(w) >= 8 * (4 + 4 + 8));
    /* Rows at t = 0, 1000, ..., 11000 (12 rows into 8 slots): kept are
     * t = 4000..11000; x0 = t / 1000, missing when t / 1000 is odd. */
    for (int i = 0; i < 12; i++) {
        float row[2] = {i % 2 ? NAN : (float)i, (float)(100 + i)};
        CHECK_OK(rk_drift_window_add_row_at(w, row, (int64_t)i * 1000));
    }
    float out[8];
    size_t n;
    uint64_t miss;
    CHECK_OK(rk_drift_window_sample(w, 0, out, 8, &n, &miss));
    CHECK(n == 4 && miss == 4 && out[0] == 4 && out[3] == 10);
    CHECK_OK(rk_drift_window_sample_since(w, 0, 8000, out, 8, &n, &miss));
    CHECK(n == 2 && miss == 2 && out[0] == 8 && out[1] == 10);
    CHECK_OK(rk_drift_window_sample_since(w, 1, 9500, out, 8, &n, &miss));
    CHECK(n == 2 && miss == 0 && out[0] == 110 && out[1] == 111);
    CHECK_OK(rk_drift_window_sample_since(w, 1, 20000, out, 8, &n, &miss));
    CHECK(n == 0 && miss == 0);
    CHECK(rk_drift_window_seen(w, 0) == 12);
    const float row[2] = {1, 2};
    CHECK(rk_drift_window_add_row(w, row) == RK_EINVAL);
    CHECK(rk_drift_window_add(w, 0, 1) == RK_EINVAL);
    rk_drift_window_destroy(w);
    /* An untimed window ignores the times and the span. */
    wo.timed = 0;
    CHECK_OK(rk_drift_window_create(&w, &wo, &err));
    CHECK_OK(rk_drift_window_add_row_at(w, row, 5));
    CHECK_OK(rk_drift_window_sample_since(w, 0, 100, out, 8, &n, &miss));
    CHECK(n == 1 && out[0] == 1);
    rk_drift_window_destroy(w);
    wo.timed = 1;
    RK_FAIL_LOOP(rk_drift_window_create(&w, &wo, &err),
                 rk_drift_window_destroy(w), 20);
}

TEST(window_feeds_detector)
{
    /* A server-shaped loop: rows into a window of 2,000, then the
     * current sample of each feature against a reference. */
    rk_err err = {0};
    rk_drift_window_opts wo = {2, 2000, NULL, 0, 0, 0};
    rk_drift_window *w;
    CHECK_OK(rk_drift_window_create(&w, &wo, &err));
    float *b = gen_b(5000, 0.3);
    for (int i = 0; i < 5000; i++) {
        float row[2] = {b[i] - 0.3f, b[i]};
        CHECK_OK(rk_drift_window_add_row(w, row));
    }
    free(b);
    float *a = gen_a(3000), *cur = malloc(2000 * sizeof *cur);
    rk_drift_feature f[2];
    int ok = 1;
    for (uint32_t k = 0; k < 2 && ok; k++) {
        size_t n;
        ok = rk_drift_window_sample(w, k, cur, 2000, &n, NULL) == 0 &&
             n == 2000 &&
             rk_drift_numeric(a, 3000, cur, n, NULL, &f[k], &err) == 0;
    }
    free(a);
    free(cur);
    rk_drift_window_destroy(w);
    CHECK(ok);
    CHECK(!f[0].drift && f[1].drift);
    rk_drift_dataset ds;
    rk_drift_dataset_summary(f, 2, NULL, &ds);
    CHECK(ds.share == 0.5 && ds.drift);
}

/* The design effect of grouped rows (Rao-Scott first order) against the
 * direct formula, sum_k (1 - p_k) d_k / (K - 1), computed once in Python
 * for a small sample, and its limits: independent rows 1, groups of m
 * rows in one bin m, groups spread evenly over the bins 1, one group all
 * the rows. */
TEST(design_effect)
{
    rk_err err = {0};
    double d;
    size_t ng;
    /* Groups {0,0,1}, {1}, {0,1,1,1}, {2,2}; the skipped row (bin 7 of 3)
     * belongs to a fifth group that then has none. */
    const uint32_t bin[] = {0, 0, 1, 1, 0, 1, 1, 1, 2, 2, 7};
    const uint32_t grp[] = {5, 5, 5, 9, 2, 2, 2, 2, 4, 4, 8};
    CHECK_OK(rk_drift_design_effect(bin, grp, 11, 3, &d, &ng, &err));
    CHECK(NEAR(d, 1.9111111111111112, 1e-12) && ng == 4);
    enum { N = 8000 };
    uint32_t *b = malloc(N * sizeof *b), *g = malloc(N * sizeof *g);
    for (uint32_t i = 0; i < N; i++) {
        b[i] = i * 7u % 10u;
        g[i] = i;
    }
    CHECK_OK(rk_drift_design_effect(b, g, N, 10, &d, &ng, &err));
    CHECK(NEAR(d, 1, 1e-3) && ng == N);
    /* 1,000 groups of 8 rows, each group in one bin: about 8. */
    for (uint32_t i = 0; i < N; i++) {
        g[i] = i / 8 * 2654435761u;
        b[i] = i / 8 * 7u % 10u;
    }
    CHECK_OK(rk_drift_design_effect(b, g, N, 10, &d, &ng, &err));
    CHECK(NEAR(d, 8, 0.01) && ng == 1000);
    /* Each group's 8 rows over bins 0..7, one each: no extra variance. */
    for (uint32_t i = 0; i < N; i++) b[i] = i % 8;
    CHECK_OK(rk_drift_design_effect(b, g, N, 10, &d, &ng, &err));
    CHECK(d == 1);
    for (uint32_t i = 0; i < N; i++) g[i] = 3;
    CHECK_OK(rk_drift_design_effect(b, g, N, 10, &d, &ng, &err));
    CHECK(d == N && ng == 1);
    /* One bin, or no row: nothing to correct. */
    for (uint32_t i = 0; i < N; i++) b[i] = 4;
    CHECK_OK(rk_drift_design_effect(b, g, N, 10, &d, &ng, &err));
    CHECK(d == 1);
    CHECK_OK(rk_drift_design_effect(b, g, 0, 10, &d, &ng, &err));
    CHECK(d == 1 && ng == 0);
    RK_FAIL_LOOP(rk_drift_design_effect(b, g, N, 10, &d, &ng, &err), (void)0, 5);
    free(b);
    free(g);
}

/* The noise gate: 100 groups of 20 rows that share their value (a user's
 * requests, say) drawn from the reference's own distribution. JS over the
 * deciles exceeds 0.1 by chance alone and the plain chi-square rejects
 * too; weighed by its groups (deff about 20) the sample is no evidence of
 * drift. A real shift in the same groups still is. */
TEST(noise_gate)
{
    rk_err err = {0};
    float *a = gen_a(20000);
    rk_refhist *h;
    CHECK_OK(rk_refhist_numeric(&h, "x", a, 20000, 0, 10, &err));
    free(a);
    enum { G = 100, M = 20 };
    float cur[G * M], shifted[G * M];
    uint32_t ids[2 * G * M];
    for (uint32_t i = 0; i < G * M; i++) {
        uint32_t grp = i / M;
        /* A value per group from the murmur3 finaliser of its index:
         * uniform on [0, 1), but only 100 draws. */
        uint32_t x = grp + 1;
        x ^= x >> 16;
        x *= 0x85ebca6bu;
        x ^= x >> 13;
        x *= 0xc2b2ae35u;
        x ^= x >> 16;
        cur[i] = (float)(x >> 8) / 16777216.0f;
        shifted[i] = cur[i] * 1000;
        ids[i] = grp;                    /* grouping 0: the "user" */
        ids[G * M + i] = i;              /* grouping 1: every row its own */
    }
    rk_drift_opts o;
    rk_drift_opts_default(&o);
    rk_drift_feature f;
    CHECK_OK(rk_drift_refhist_numeric(h, cur, G * M, &o, &f, &err));
    if (!(f.js >= 0.1)) fprintf(stderr, "  js %g chi2_p %g\n", f.js, f.chi2_p);
    CHECK(f.method == RK_DRIFT_JS && f.js >= 0.1 && f.drift);
    CHECK(f.deff == 1 && f.chi2_p_adj == f.chi2_p && f.chi2_p < 1e-6);
    o.noise_alpha = 0.05;
    CHECK_OK(rk_drift_refhist_numeric(h, cur, G * M, &o, &f, &err));
    CHECK(f.drift); /* without groups the gate cannot tell */
    rk_drift_groups gr = {ids, 2, G * M};
    CHECK_OK(rk_drift_refhist_numeric_grouped(h, cur, G * M, &gr, &o, &f, &err));
    CHECK(f.deff > 10 && f.deff < 30);
    CHECK(f.chi2_p_adj > 0.05 && f.js >= 0.1 && !f.drift);
    /* The same sample with the gate off: Evidently's rule alone. */
    o.noise_alpha = 0;
    CHECK_OK(rk_drift_refhist_numeric_grouped(h, cur, G * M, &gr, &o, &f, &err));
    CHECK(f.drift && f.deff > 10);
    o.noise_alpha = 0.05;
    CHECK_OK(rk_drift_refhist_numeric_grouped(h, shifted, G * M, &gr, &o, &f, &err));
    CHECK(f.drift && f.chi2_p_adj < 1e-6);
    /* A small reference is judged on the corrected chi-square. */
    o.small_reference = 1000000;
    CHECK_OK(rk_drift_refhist_numeric_grouped(h, cur, G * M, &gr, &o, &f, &err));
    CHECK(f.method == RK_DRIFT_CHI2 && f.score == f.chi2_p_adj && !f.drift);
    gr.n = RK_DRIFT_MAX_GROUPINGS + 1;
    CHECK(rk_drift_refhist_numeric_grouped(h, cur, G * M, &gr, &o, &f, &err) == RK_EINVAL);
    o.noise_alpha = 1;
    CHECK(rk_drift_opts_check(&o, &err) == RK_EINVAL && strstr(err.msg, "noise_alpha"));
    o.noise_alpha = -0.1;
    CHECK(rk_drift_opts_check(&o, &err) == RK_EINVAL);
    rk_refhist_free(h);
}

/* A window whose rows carry group keys returns them with the samples,
 * aligned with the present values. */
TEST(window_grouped)
{
    rk_err err = {0};
    rk_drift_window_opts wo = {2, 4, NULL, 0, 0, 2};
    rk_drift_window *w;
    CHECK_OK(rk_drift_window_create(&w, &wo, &err));
    CHECK(rk_drift_window_groupings(w) == 2);
    CHECK(rk_drift_window_bytes(w) >= 4 * (4 + 4 + 8));
    /* Six rows into four slots: rows 2..5 stay; feature 0 is missing in
     * row 3. */
    for (uint32_t i = 0; i < 6; i++) {
        float row[2] = {i == 3 ? NAN : (float)i, (float)(10 + i)};
        uint32_t g[2] = {100 + i, 200 + i};
        CHECK_OK(rk_drift_window_add_row_grouped(w, row, 0, g));
    }
    float out[8];
    uint32_t keys[8];
    size_t n;
    uint64_t miss;
    /* Every row of both features, the missing one as NaN, with its keys. */
    CHECK_OK(rk_drift_window_rows(w, INT64_MIN, out, keys, 4, &n));
    CHECK(n == 4 && out[0] == 2 && isnan(out[1]) && out[2] == 4 && out[3] == 5);
    CHECK(out[4] == 12 && out[5] == 13 && out[7] == 15);
    CHECK(keys[0] == 102 && keys[1] == 103 && keys[2] == 104 && keys[3] == 105);
    CHECK(keys[4] == 202 && keys[5] == 203 && keys[6] == 204 && keys[7] == 205);
    CHECK_OK(rk_drift_window_rows(w, INT64_MIN, out, NULL, 4, &n));
    CHECK(n == 4 && out[4] == 12);
    CHECK(rk_drift_window_rows(w, INT64_MIN, out, keys, 3, &n) == RK_ELIMIT);
    /* The present values alone, as before. */
    CHECK_OK(rk_drift_window_sample(w, 0, out, 4, &n, &miss));
    CHECK(n == 3 && miss == 1 && out[0] == 2 && out[1] == 4 && out[2] == 5);
    const float row[2] = {1, 2};
    CHECK(rk_drift_window_add_row_at(w, row, 0) == RK_EINVAL);
    CHECK(rk_drift_window_add_row_grouped(w, row, 0, NULL) == RK_EINVAL);
    CHECK(rk_drift_window_add(w, 0, 1) == RK_EINVAL);
    rk_drift_window_destroy(w);
    wo.groupings = RK_DRIFT_MAX_GROUPINGS + 1;
    CHECK(rk_drift_window_create(&w, &wo, &err) == RK_EINVAL && strstr(err.msg, "groupings"));
    const uint8_t cat[2] = {0, 1};
    wo.groupings = 1;
    wo.categorical = cat;
    CHECK(rk_drift_window_create(&w, &wo, &err) == RK_EINVAL);
    wo.categorical = NULL;
    RK_FAIL_LOOP(rk_drift_window_create(&w, &wo, &err), rk_drift_window_destroy(w), 20);
}

/* The online accumulator against the exact offline metrics on the same
 * predictions: log loss and calibration equal, AUC within the binning. */
TEST(concept_matches_offline_metrics)
{
    enum { N = 20000 };
    float *p = rk_malloc(N * sizeof *p), *y = rk_malloc(N * sizeof *y);
    CHECK(p && y);
    rk_concept_acc *a = rk_malloc(sizeof *a), *b = rk_malloc(sizeof *b);
    CHECK(a && b);
    rk_concept_reset(a);
    rk_concept_reset(b);
    uint64_t s = 12345;
    for (size_t i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) / 9007199254740992.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double v = (double)(s >> 11) / 9007199254740992.0;
        p[i] = (float)u;
        y[i] = v < 0.2 + 0.6 * u ? 1.0f : 0.0f;   /* informative scores */
        CHECK_OK(rk_concept_add(i % 2 ? a : b, p[i], y[i], 1.0f));
    }
    rk_concept_merge(a, b);
    rk_concept_metrics m;
    rk_concept_get(a, &m);
    double ll, auc, cal;
    CHECK_OK(rk_metrics_logloss(p, y, NULL, N, &ll, NULL));
    CHECK_OK(rk_metrics_auc(p, y, NULL, N, &auc, NULL));
    CHECK_OK(rk_metrics_calibration(p, y, NULL, N, &cal, NULL));
    CHECK(m.n == N);
    CHECK(fabs(m.logloss - ll) < 1e-9);
    CHECK(fabs(m.calibration - cal) < 1e-9);
    CHECK(fabs(m.auc - auc) < 2.0 / RK_CONCEPT_BINS);
    CHECK(m.auc > 0.6);
    /* Bad values are refused and change nothing; empty is NaN. */
    CHECK(rk_concept_add(a, NAN, 1, 1) == RK_EINVAL);
    CHECK(rk_concept_add(a, 1.5f, 1, 1) == RK_EINVAL);
    CHECK(rk_concept_add(a, 0.5f, 1, 0) == RK_EINVAL);
    rk_concept_get(a, &m);
    CHECK(m.n == N);
    rk_concept_reset(b);
    rk_concept_get(b, &m);
    CHECK(isnan(m.logloss) && isnan(m.auc) && isnan(m.calibration));
    CHECK_OK(rk_concept_add(b, 0.3f, 0, 1));
    rk_concept_get(b, &m);
    CHECK(isnan(m.auc) && isnan(m.calibration) && fabs(m.logloss + log(0.7)) < 1e-6);
    rk_free(a);
    rk_free(b);
    rk_free(p);
    rk_free(y);
}

/* ---- options from the config --------------------------------------------- */

/* rk_drift_opts_from_conf over the defaults, for a YAML document. */
static int opts_from_yaml(const char *yaml, rk_drift_opts *o, const char **names,
                          size_t cap, rk_err *err)
{
    rk_conf *c;
    rk_drift_opts_default(o);
    int rc = rk_conf_parse_yaml(&c, yaml, strlen(yaml), "t.yaml", err);
    if (rc) return rc;
    rc = rk_drift_opts_from_conf(o, rk_conf_get(rk_conf_root(c), "monitor"), names,
                                 cap, err);
    rk_conf_destroy(c);
    return rc;
}

/* Field by field (memcmp would compare the padding too). */
static int same_opts(const rk_drift_opts *a, const rk_drift_opts *b)
{
    return a->small_reference == b->small_reference && a->ks_alpha == b->ks_alpha &&
           a->chi2_alpha == b->chi2_alpha && a->wasserstein == b->wasserstein &&
           a->js == b->js && a->psi == b->psi && a->psi_eps == b->psi_eps &&
           a->nbins == b->nbins && a->dataset_share == b->dataset_share &&
           a->noise_alpha == b->noise_alpha && a->exclude == b->exclude &&
           a->nexclude == b->nexclude;
}

static const struct {
    const char *yaml;
    const char *msg;   /* the error names the key at its line */
} bad_monitor[] = {
    {"monitor:\n  small_reference: -1\n", "t.yaml:2: monitor.small_reference: "},
    {"monitor:\n  ks_alpha: 1.5\n", "t.yaml:2: monitor.ks_alpha: ks_alpha and "
                                     "chi2_alpha must be in (0, 1)"},
    {"monitor:\n  chi2_alpha: 0\n", "t.yaml:2: monitor.chi2_alpha: "},
    {"monitor:\n  wasserstein: -1\n", "t.yaml:2: monitor.wasserstein: thresholds "
                                       "must be finite and > 0"},
    {"monitor:\n  js: 0.2\n  psi: 0\n", "t.yaml:3: monitor.psi: thresholds"},
    {"monitor:\n  js: high\n", "t.yaml:2: monitor.js: expected"},
    {"monitor:\n  dataset_share: 2\n", "t.yaml:2: monitor.dataset_share: "
                                        "dataset_share must be in (0, 1]"},
    {"monitor:\n  noise_alpha: 1\n", "t.yaml:2: monitor.noise_alpha: noise_alpha"},
    {"monitor:\n  exclude: hour\n", "t.yaml:2: monitor.exclude: expected a list"},
    {"monitor:\n  exclude: [hour, 3]\n", "monitor.exclude[1]: expected string"},
    {"monitor:\n  exclude: [a, b, c]\n", "monitor.exclude: at most 2 feature names"},
    {"monitor: 5\n", "t.yaml:1: monitor: expected a map"},
};

TEST(opts_from_conf)
{
    rk_err err = {0};
    rk_drift_opts o, d;
    const char *names[2];
    rk_drift_opts_default(&d);
    /* Absent, empty or null: the defaults. */
    const char *const none[] = {"serve:\n  port: 1\n", "monitor:\n", "monitor: {}\n"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        CHECK_OK(opts_from_yaml(none[i], &o, names, 2, &err));
        CHECK(same_opts(&o, &d));
    }
    o = d;
    CHECK_OK(rk_drift_opts_from_conf(&o, NULL, NULL, 0, &err));
    CHECK(same_opts(&o, &d));
    /* Every detector key, and the server's own keys ignored. */
    rk_conf *c;
    const char *all = "monitor:\n  small_reference: 50\n  ks_alpha: 0.01\n"
                      "  chi2_alpha: 0.02\n  wasserstein: 0.3\n  js: 0.4\n"
                      "  psi: 0.5\n  dataset_share: 0.6\n  noise_alpha: 0.07\n"
                      "  exclude: [hour, item_age]\n  window: 10\n  span: 1h\n"
                      "  reference: served\n  label_requests: 5\n"
                      "  label_bytes: 100000\n";
    CHECK_OK(rk_conf_parse_yaml(&c, all, strlen(all), "t.yaml", &err));
    rk_drift_opts_default(&o);
    int rc = rk_drift_opts_from_conf(&o, rk_conf_get(rk_conf_root(c), "monitor"), names,
                                     2, &err);
    /* The names are the tree's: checked while it lives. */
    int names_ok = !rc && o.exclude == names && o.nexclude == 2 &&
                   !strcmp(o.exclude[0], "hour") && !strcmp(o.exclude[1], "item_age");
    rk_conf_destroy(c);
    CHECK_OK(rc);
    CHECK(names_ok);
    CHECK(o.small_reference == 50 && o.ks_alpha == 0.01 && o.chi2_alpha == 0.02 &&
          o.wasserstein == 0.3 && o.js == 0.4 && o.psi == 0.5 &&
          o.dataset_share == 0.6 && o.noise_alpha == 0.07);
    CHECK(o.nbins == d.nbins && o.psi_eps == d.psi_eps);
    /* Bad values refused, naming the key and its line. */
    for (size_t i = 0; i < sizeof bad_monitor / sizeof bad_monitor[0]; i++) {
        rk_err_clear(&err);
        rc = opts_from_yaml(bad_monitor[i].yaml, &o, names, 2, &err);
        if (rc != RK_ECONFIG) fprintf(stderr, "  case %zu: %s\n", i, err.msg);
        CHECK(rc == RK_ECONFIG);
        CHECK_CONTAINS(err.msg, bad_monitor[i].msg);
    }
    /* Options already bad on entry: the detector's own refusal. */
    rk_drift_opts_default(&o);
    o.js = -1;
    CHECK(rk_drift_opts_from_conf(&o, NULL, NULL, 0, &err) == RK_EINVAL);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, concept_matches_offline_metrics, ks_wasserstein_vs_scipy, kstwo_smirnov_vs_scipy,
                 chi2_vs_scipy, js_psi_vs_scipy, identical_disjoint_tiny,
                 nan_is_missing, sort_matches_qsort, ks_stat_matches_naive,
                 refhist_bins, refhist_categorical, detector_defaults,
                 detector_out_of_memory, window_bounded, window_timed_span,
                 window_feeds_detector, design_effect, noise_gate, window_grouped,
                 opts_from_conf);
}
