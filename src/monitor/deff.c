/*
 * deff.c — the design effect of a binned sample whose rows come in
 * groups. The items of one request share its context, one user's requests
 * share the user's attributes, a popular item is served many times: such
 * rows are not independent draws, so a window of n rows carries less
 * information than n, and a chi-square test (or a distance threshold)
 * that takes n at face value sees drift in sampling noise. Rao and
 * Scott's first-order correction divides the chi-square statistic by the
 * mean design effect of the bin shares, each estimated from the groups'
 * totals (the cluster-robust variance of a ratio estimate).
 */
#include <math.h>
#include <stdlib.h>

#include "monitor_int.h"

static int cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

int rk_drift_design_effect(const uint32_t *bin, const uint32_t *group,
                           size_t n, uint32_t nbins, double *deff,
                           size_t *ngroups, rk_err *err)
{
    *deff = 1;
    if (ngroups) *ngroups = 0;
    /* Per row one key, group then bin: sorted, a group's rows are a run
     * and within it each bin's rows are a run. */
    uint64_t *key = rk_malloc((n ? n : 1) * sizeof *key);
    double *acc = rk_calloc(3 * (size_t)(nbins ? nbins : 1), sizeof *acc);
    if (!key || !acc) {
        rk_free(key);
        rk_free(acc);
        return rk_err_set(err, RK_ENOMEM, "drift: out of memory for the "
                          "design effect of %zu rows", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (bin[i] < nbins) key[m++] = (uint64_t)group[i] << 32 | bin[i];
    qsort(key, m, sizeof *key, cmp_u64);
    /* tot[k] = sum of y_ck, s1[k] = sum of y_ck^2, s2[k] = sum of
     * y_ck m_c over groups c (y_ck: group c's rows in bin k, m_c its
     * rows); m2 = sum of m_c^2. */
    double *tot = acc, *s1 = acc + nbins, *s2 = acc + 2 * (size_t)nbins;
    double m2 = 0;
    size_t c = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && key[j] >> 32 == key[i] >> 32) j++;
        double mc = (double)(j - i);
        m2 += mc * mc;
        c++;
        for (size_t a = i; a < j;) {
            size_t b = a;
            while (b < j && key[b] == key[a]) b++;
            uint32_t k = (uint32_t)key[a];
            double y = (double)(b - a);
            tot[k] += y;
            s1[k] += y * y;
            s2[k] += y * mc;
            a = b;
        }
        i = j;
    }
    if (ngroups) *ngroups = c;
    double rows = (double)m, sum = 0;
    uint32_t used = 0;
    for (uint32_t k = 0; k < nbins; k++) used += tot[k] > 0;
    if (m > 0 && used > 1) {
        if (c < 2) {
            sum = rows; /* one group: one observation */
        } else {
            for (uint32_t k = 0; k < nbins; k++) {
                double p = tot[k] / rows;
                if (p <= 0 || p >= 1) continue;
                /* Var(p_k) = C/(C-1) sum_c (y_ck - p m_c)^2 / n^2 against
                 * p (1 - p) / n for independent rows. */
                double ss = s1[k] - 2 * p * s2[k] + p * p * m2;
                double v = (double)c / (double)(c - 1) * ss / (rows * rows);
                sum += (1 - p) * v * rows / (p * (1 - p));
            }
            sum /= (double)(used - 1);
        }
        *deff = sum < 1 || !isfinite(sum) ? 1 : sum > rows ? rows : sum;
    }
    rk_free(key);
    rk_free(acc);
    return 0;
}
