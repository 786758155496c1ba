/*
 * rk_monitor.h — data drift: how far a live window of a feature has moved
 * from the feature's reference (the training sample, or the rk_refhist a
 * model version stores), and a bounded window that collects the live
 * values.
 *
 *  - statistics: pure functions over two samples or two histograms:
 *    population stability index, Jensen-Shannon distance, Wasserstein-1
 *    distance (raw and divided by the reference standard deviation), the
 *    two-sample Kolmogorov-Smirnov test, the chi-square test of
 *    homogeneity, the missing-value rate. Each is defined below to the
 *    bit of what SciPy 1.10 computes (docs/monitoring.md);
 *  - the detector: one feature at a time with Evidently-like defaults
 *    (statistical tests for small references, distances for large ones,
 *    PSI as an alarm alongside), and the dataset verdict over features;
 *  - the window: per feature, a ring of the last `capacity` observations,
 *    fixed memory, that a server feeds and the monitor reads.
 *
 * Conventions as in rk_core.h: 0 or a negative RK_E* code, details in an
 * rk_err (which may be NULL). Numeric samples are float; NaN and
 * infinities are missing values (as in rk_refhist), skipped by every
 * statistic and counted by the missing rate. All functions except the
 * window's are pure and thread-safe; the scratch memory they need comes
 * from rk_malloc and is freed before they return.
 */
#ifndef RK_MONITOR_H
#define RK_MONITOR_H

#include <stdio.h>

#include "rk_core.h"
#include "rk_train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Histogram statistics                                                      */
/* ======================================================================== */
/*
 * ref[0..nbins) and cur[0..nbins) are counts (or any non-negative finite
 * weights) of the same bins; each is normalised by its own sum, which
 * must be > 0 (RK_EINVAL otherwise, and for a negative or non-finite
 * weight or nbins 0). With p = ref / sum(ref), q = cur / sum(cur):
 *
 *   PSI = sum_i (q_i - p_i) * ln(q_i / p_i)
 *         where a proportion equal to 0 is replaced by eps (only in this
 *         sum; the others are not renormalised). eps <= 0 means
 *         RK_DRIFT_PSI_EPS. Natural logarithm, as in the PSI literature
 *         (0.1 "moderate", 0.2 "significant" shift).
 *
 *   JS  = sqrt((KL(p || m) + KL(q || m)) / 2), m = (p + q) / 2, with
 *         base-2 logarithms, so 0 <= JS <= 1; terms with p_i = 0 (q_i = 0)
 *         are 0. This is scipy.spatial.distance.jensenshannon(ref, cur,
 *         base=2). (Evidently calls it with the default natural base; its
 *         value is ours times sqrt(ln 2) = 0.8326.) A sum that rounds
 *         below 0 gives 0 (SciPy would return NaN).
 */
#define RK_DRIFT_PSI_EPS 1e-4

int rk_drift_psi(const double *ref, const double *cur, size_t nbins,
                 double eps, double *out, rk_err *err);
int rk_drift_js(const double *ref, const double *cur, size_t nbins,
                double *out, rk_err *err);

/*
 * Chi-square test of homogeneity of the 2 x k table whose rows are ref
 * and cur (counts of k categories; non-negative finite; each row's sum
 * > 0, RK_EINVAL otherwise). Columns that are 0 in both rows are dropped
 * first (k' columns remain). With R_r the row sums, C_c the column sums
 * and N the total, E_rc = R_r C_c / N and
 *
 *   stat = sum (O_rc - E_rc)^2 / E_rc,   dof = k' - 1,
 *   p    = Q(dof / 2, stat / 2)   (regularized upper incomplete gamma),
 *
 * which is scipy.stats.chi2_contingency([ref, cur], correction=False)
 * (SciPy raises on an all-zero column instead of dropping it). dof 0
 * (one category) gives stat 0 and p 1, as SciPy does.
 */
typedef struct rk_drift_chi2_result {
    double stat;
    uint32_t dof;
    double p;
} rk_drift_chi2_result;

int rk_drift_chi2(const double *ref, const double *cur, size_t k,
                  rk_drift_chi2_result *out, rk_err *err);

/* Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0 and x >= 0 (NaN
 * otherwise): scipy.special.gammaincc. chi2.sf(x, k) = Q(k / 2, x / 2).
 * Series below a + 1, continued fraction above; relative error ~1e-14. */
double rk_drift_gammaincc(double a, double x);

/* ======================================================================== */
/* Sample statistics                                                         */
/* ======================================================================== */

/* Share of x[0..n) that is NaN or infinite; 0 when n is 0. */
double rk_drift_missing_rate(const float *x, size_t n);

/*
 * The finite values of x[0..n), sorted increasing, as doubles, into
 * out[0..*nout) (out, a heap or malloc'd buffer with room for n, is
 * also the sort's scratch). -0.0 becomes +0.0. An LSD radix sort (11, 11
 * and 10-bit digits): O(n) time, no allocation. This is what the sample
 * statistics below do first; a caller that compares one reference with
 * many windows can sort the reference once and use the _sorted forms.
 */
int rk_drift_sort(const float *x, size_t n, double *out, size_t *nout,
                  rk_err *err);

/*
 * Two-sample Kolmogorov-Smirnov test, two-sided:
 * scipy.stats.ks_2samp(ref, cur) with its defaults (method='auto').
 *
 * With F and G the empirical CDFs of the n1 reference and n2 current
 * values (missing values dropped), D = max |F(x) - G(x)| over the
 * pooled values. The p-value:
 *  - exact when max(n1, n2) <= 10000 (RK_DRIFT_KS_MAX_EXACT; SciPy 1.10's
 *    MAX_AUTO_N): D is first rounded to h / lcm(n1, n2), h =
 *    round(D * lcm), and that rounded D is reported; p = P(D_{n1,n2} >=
 *    D) by Hodges' lattice-path counting (the "outer inside" recursion of
 *    Viehmann 2021 when n1 != n2, the alternating binomial sum when
 *    n1 = n2). O(n1 * n2) time in the worst case;
 *  - otherwise p = kstwo.sf(D, round(n1 n2 / (n1 + n2))) (rk_drift_kstwo_sf).
 * exact says which. Both samples need a value (RK_EINVAL otherwise).
 */
#define RK_DRIFT_KS_MAX_EXACT 10000

typedef struct rk_drift_ks_result {
    double stat;     /* D */
    double p;
    int exact;
    uint64_t n1, n2; /* values used (missing values dropped) */
} rk_drift_ks_result;

int rk_drift_ks(const float *ref, size_t nref, const float *cur,
                size_t ncur, rk_drift_ks_result *out, rk_err *err);
/* The same on sorted finite doubles (rk_drift_sort); no allocation. */
int rk_drift_ks_sorted(const double *a, size_t na, const double *b,
                       size_t nb, rk_drift_ks_result *out, rk_err *err);
/* The statistic only, O(na + nb), on sorted finite doubles (na, nb > 0). */
double rk_drift_ks_stat_sorted(const double *a, size_t na, const double *b,
                               size_t nb);

/* P(D_n >= d) for the one-sample two-sided Kolmogorov-Smirnov statistic
 * of n observations: scipy.stats.kstwo.sf(d, n), which follows Simard
 * and L'Ecuyer (2011): Ruben-Gambino at the ends, 2 x the exact Smirnov
 * one-sided tail (Birnbaum-Tingey sum) for large d, the Durbin matrix
 * (Marsaglia-Tsang-Wang) or Pomeranz recursion for n <= 140, Pelz-Good
 * asymptotics for large n. NaN for n = 0. Thread-safe. */
double rk_drift_kstwo_sf(uint64_t n, double d);
/* P(D+_n >= d), scipy.special.smirnov(n, d). */
double rk_drift_smirnov(uint64_t n, double d);

/*
 * Wasserstein-1 distance between the empirical distributions of the
 * finite values of ref and cur: the integral of |F(x) - G(x)| dx,
 * scipy.stats.wasserstein_distance(ref, cur). *norm (may be NULL) is
 * that divided by the population standard deviation of the reference
 * (numpy.std, ddof 0), Evidently's normalized Wasserstein; a constant
 * reference gives 0 when the distance is 0 and +inf otherwise. Both
 * samples need a value (RK_EINVAL). */
int rk_drift_wasserstein(const float *ref, size_t nref, const float *cur,
                         size_t ncur, double *w, double *norm, rk_err *err);
/* The distance on sorted finite doubles; na, nb > 0. */
double rk_drift_wasserstein_sorted(const double *a, size_t na,
                                   const double *b, size_t nb);

/*
 * Bins for PSI and Jensen-Shannon on raw numeric samples: the
 * reference's quantile cut points, by the rule of rk_refhist_numeric, so
 * a sample and an rk_refhist built from it bin alike: with v the n
 * sorted finite reference values, the candidate cuts are
 * v[floor(j * n / nbins)] for j = 1..nbins-1, and a cut equal to v[0] or
 * to the previous kept cut is dropped. edges has room for nbins - 1
 * (nbins 0 = 20, at most RK_REFHIST_MAX_BINS: RK_EINVAL); *nedges gets
 * the number kept (0 for an empty reference). sorted: rk_drift_sort
 * output. No allocation.
 */
int rk_drift_edges_sorted(const double *sorted, size_t n, uint32_t nbins,
                          double *edges, uint32_t *nedges, rk_err *err);

/* Counts of x[0..n) in the nedges + 1 bins of edges (increasing): bin i
 * holds the values with exactly i edges <= x, i.e.
 * numpy.searchsorted(edges, x, 'right'), which is rk_refhist_bin's rule.
 * counts[0..nedges] are overwritten; NaN and infinities are counted in
 * *missing (may be NULL) instead. */
void rk_drift_hist(const float *x, size_t n, const double *edges,
                   uint32_t nedges, double *counts, uint64_t *missing);

/* ======================================================================== */
/* Detector                                                                  */
/* ======================================================================== */
/*
 * Which statistic decides a feature, chosen as Evidently does from the
 * size of the reference (its non-missing values, or rk_refhist count):
 *
 *   numeric, reference <= small_reference:    KS p <= ks_alpha
 *   numeric, larger reference:                 Wasserstein / std >= wasserstein
 *   categorical, reference <= small_reference: chi-square p <= chi2_alpha
 *   categorical, larger reference:             Jensen-Shannon >= js
 *   numeric rk_refhist (bins only, no raw reference): chi-square on the
 *     bins for a small reference, Jensen-Shannon on the bins otherwise.
 *
 * PSI (over the same bins as JS) is always reported with its own alarm
 * (psi >= psi). A feature whose reference or current sample has no
 * non-missing value is not evaluated (method RK_DRIFT_NONE, no drift).
 * The dataset drifts when at least dataset_share of the evaluated
 * features drift.
 */
typedef struct rk_drift_opts {
    uint64_t small_reference;  /* default 1000 */
    double ks_alpha;           /* default 0.05 */
    double chi2_alpha;         /* default 0.05 */
    double wasserstein;        /* normalized; default 0.1 */
    double js;                 /* base 2; default 0.1 */
    double psi;                /* alarm; default 0.2 */
    double psi_eps;            /* default RK_DRIFT_PSI_EPS */
    uint32_t nbins;            /* numeric samples: quantile bins; default 10 */
    double dataset_share;      /* default 0.5 */
    /* The noise gate: 0 (the default) = off, Evidently's rule alone. In
     * (0, 1): a feature decided by a distance (JS, Wasserstein) drifts
     * only when, besides, the chi-square test on its bins, corrected for
     * grouped rows (chi2_p_adj below), rejects "same distribution" at this
     * level: a distance above the threshold that sampling noise explains
     * is not drift. */
    double noise_alpha;
    /* Features not evaluated by rk_drift_report_build (borrowed names):
     * those expected to differ from the training set by construction,
     * e.g. the hour of the day of one live window. Default none. */
    const char *const *exclude;
    size_t nexclude;
} rk_drift_opts;

void rk_drift_opts_default(rk_drift_opts *o);
/* RK_EINVAL with the reason: alphas in (0, 1), thresholds > 0 and finite,
 * psi_eps in (0, 1), nbins <= RK_REFHIST_MAX_BINS, share in (0, 1]. */
int rk_drift_opts_check(const rk_drift_opts *o, rk_err *err);

/* The size of the server's and rankd drift's names arrays below: at most
 * this many names in monitor.exclude. */
#define RK_DRIFT_EXCLUDE_MAX 256

/* Reads the detector options of a `monitor:` config section over o (which
 * must pass rk_drift_opts_check: typically rk_drift_opts_default's):
 * small_reference, ks_alpha, chi2_alpha, wasserstein, js, psi,
 * dataset_share, noise_alpha and exclude (a list of feature names). The
 * server's own keys (window, span, reference, label_requests,
 * label_bytes) and any other key are ignored: the caller checks the
 * section's key list if it owns one. mon may be NULL or null (o
 * unchanged). The options are checked after each key, so a refused value
 * names its key: RK_ECONFIG "file:line: monitor.js: thresholds must be
 * finite and > 0"; also RK_ECONFIG for a wrong type, a section that is
 * not a map, or more than cap names in exclude; RK_EINVAL when o is bad
 * on entry. On error o may be partly updated.
 * The exclude names are stored in the caller's names[0..cap) and
 * o->exclude points to that array; the strings are borrowed from the
 * config tree. Both must outlive every use of o. Nothing is allocated;
 * thread-safe on distinct o. */
int rk_drift_opts_from_conf(rk_drift_opts *o, const rk_conf_node *mon,
                            const char **names, size_t cap, rk_err *err);

typedef enum rk_drift_method {
    RK_DRIFT_NONE = 0,         /* not evaluated: a side has no value */
    RK_DRIFT_KS,
    RK_DRIFT_WASSERSTEIN,
    RK_DRIFT_CHI2,
    RK_DRIFT_JS
} rk_drift_method;

/* "none", "ks", "wasserstein", "chi2", "jensenshannon"; never NULL. */
const char *rk_drift_method_name(rk_drift_method m);

/* One feature's verdict. Statistics that were not computed are NaN. */
typedef struct rk_drift_feature {
    rk_drift_method method;
    double score;        /* the deciding statistic (a p-value or distance) */
    double threshold;    /* what it was compared with */
    int drift;
    double psi;
    int psi_alarm;
    double js;
    double ks_stat, ks_p;            /* ks_p only when KS decides */
    double wasserstein, wasserstein_norm;
    double chi2_stat, chi2_p;
    uint32_t chi2_dof;
    /* Rows that come in groups (the items of one request, one user's
     * requests, one item served many times) are not independent: deff is
     * the current sample's design effect on the bins (Rao-Scott first
     * order, the largest over the groupings given; 1 without groups) and
     * chi2_p_adj the chi-square p-value of chi2_stat / deff. A
     * chi-square-decided feature is judged on chi2_p_adj. */
    double deff, chi2_p_adj;
    double ref_missing_rate, cur_missing_rate;
    uint64_t ref_count, cur_count;   /* non-missing values */
} rk_drift_feature;

/* Numeric feature from two raw samples (o NULL = defaults): KS
 * statistic, Wasserstein (raw and normalized), PSI and JS over nbins
 * reference quantile bins (rk_drift_edges_sorted), missing rates, and
 * the verdict. The KS p-value is computed only when KS decides (it can
 * cost O(n1 n2)). RK_ENOMEM, RK_EINVAL (options). */
int rk_drift_numeric(const float *ref, size_t nref, const float *cur,
                     size_t ncur, const rk_drift_opts *o,
                     rk_drift_feature *out, rk_err *err);

/* Categorical feature from counts of the same k categories, plus each
 * side's missing count: chi-square, JS and PSI over the k categories. */
int rk_drift_categorical(const double *ref, const double *cur, size_t k,
                         uint64_t ref_missing, uint64_t cur_missing,
                         const rk_drift_opts *o, rk_drift_feature *out,
                         rk_err *err);

/* A current numeric sample against a numeric rk_refhist: the sample is
 * binned with rk_refhist_bin, then PSI, JS and chi-square on the
 * refhist's bins. RK_ETYPE for a categorical refhist. */
int rk_drift_refhist_numeric(const rk_refhist *ref, const float *cur,
                             size_t n, const rk_drift_opts *o,
                             rk_drift_feature *out, rk_err *err);

/* Groups of the rows of a current sample, under one or more groupings:
 * id[g * stride + i] is row i's group under grouping g (any uint32 key,
 * e.g. a hash of the user id, or the item's index). */
#define RK_DRIFT_MAX_GROUPINGS 4
typedef struct rk_drift_groups {
    const uint32_t *id;
    uint32_t n;           /* groupings, 0 .. RK_DRIFT_MAX_GROUPINGS */
    size_t stride;        /* >= the sample's length */
} rk_drift_groups;

/* rk_drift_refhist_numeric with the current rows' groups (NULL or n == 0:
 * independent rows): fills deff and chi2_p_adj from them. RK_EINVAL (too
 * many groupings). */
int rk_drift_refhist_numeric_grouped(const rk_refhist *ref, const float *cur,
                                     size_t n, const rk_drift_groups *g,
                                     const rk_drift_opts *o,
                                     rk_drift_feature *out, rk_err *err);

/* Design effect of a binned sample whose rows come in groups, Rao and
 * Scott's first-order correction: the mean over the bins k of
 * (1 - p_k) d_k / (K - 1), d_k the ratio of the cluster-robust variance
 * of bin k's share to its variance under independent rows, K the bins
 * with a row. bin[i] >= nbins skips row i. 1 for independent rows, about
 * m when groups of m rows always share a bin; clamped to [1, rows]. The
 * number of groups with a row goes to *ngroups (may be NULL).
 * RK_ENOMEM. */
int rk_drift_design_effect(const uint32_t *bin, const uint32_t *group,
                           size_t n, uint32_t nbins, double *deff,
                           size_t *ngroups, rk_err *err);

/* Current categorical values v[0..n) (missing marks rows without one;
 * may be NULL) against a categorical rk_refhist: counted into the
 * refhist's top values plus one "other" bin (every value not among
 * them), then chi-square, JS and PSI on those ntop + 1 bins. RK_ETYPE
 * for a numeric refhist, RK_ENOMEM. */
int rk_drift_refhist_categorical(const rk_refhist *ref, const uint64_t *v,
                                 const uint8_t *missing, size_t n,
                                 const rk_drift_opts *o,
                                 rk_drift_feature *out, rk_err *err);

typedef struct rk_drift_dataset {
    size_t nfeatures, nevaluated, ndrifted;
    double share;        /* ndrifted / nevaluated; 0 when none */
    int drift;           /* share >= dataset_share and nevaluated > 0 */
} rk_drift_dataset;

void rk_drift_dataset_summary(const rk_drift_feature *f, size_t n,
                              const rk_drift_opts *o, rk_drift_dataset *out);

/* ======================================================================== */
/* Live window                                                               */
/* ======================================================================== */
/*
 * Per feature, a ring of the last `capacity` observations (missing ones
 * included, so the missing rate is the window's too). Memory is fixed at
 * creation: capacity * 4 bytes per numeric feature, capacity * 9 per
 * categorical one, plus a few words per feature; rk_drift_window_bytes
 * reports it. An observation older than the last capacity ones is gone.
 * All functions lock the window: any thread may add while another reads.
 */
#define RK_DRIFT_WINDOW_MAX_CAPACITY (1u << 24)
#define RK_DRIFT_WINDOW_MAX_FEATURES (1u << 16)

typedef struct rk_drift_window rk_drift_window;

typedef struct rk_drift_window_opts {
    uint32_t nfeatures;         /* 1 .. RK_DRIFT_WINDOW_MAX_FEATURES */
    uint32_t capacity;          /* 1 .. RK_DRIFT_WINDOW_MAX_CAPACITY */
    /* categorical[f] != 0 makes feature f categorical (uint64 values);
     * NULL = all numeric. Copied. */
    const uint8_t *categorical;
    /* Refuse (RK_ELIMIT) a window above this many bytes; 0 = no limit. */
    size_t max_bytes;
    /* 1 = a timed window: rows only (rk_drift_window_add_row_at), each with
     * its time (8 more bytes a slot), so a sample can keep the rows of a
     * time span (rk_drift_window_sample_since). */
    int timed;
    /* 0 .. RK_DRIFT_MAX_GROUPINGS group keys per row (4 bytes a slot
     * each; rows only, through rk_drift_window_add_row_grouped), returned
     * with the rows by rk_drift_window_rows. */
    uint32_t groupings;
} rk_drift_window_opts;

/* RK_EINVAL (sizes), RK_ELIMIT (max_bytes), RK_ENOMEM. */
int rk_drift_window_create(rk_drift_window **out,
                           const rk_drift_window_opts *o, rk_err *err);
void rk_drift_window_destroy(rk_drift_window *w);

/* One observation of numeric feature f (NaN, infinity = missing).
 * RK_EINVAL (f out of range), RK_ETYPE (f is categorical). */
int rk_drift_window_add(rk_drift_window *w, uint32_t f, float x);
/* One observation of categorical feature f; missing != 0 = no value. */
int rk_drift_window_add_cat(rk_drift_window *w, uint32_t f, uint64_t v,
                            int missing);
/* One row: x[f] for every feature, which must all be numeric (RK_ETYPE,
 * nothing added). On a timed window add, add_cat and add_row are
 * RK_EINVAL: its rows come with their times through add_row_at (the time
 * is ignored by an untimed window). */
int rk_drift_window_add_row(rk_drift_window *w, const float *x);
int rk_drift_window_add_row_at(rk_drift_window *w, const float *x, int64_t ts_ms);
/* A row with its time and its group keys group[0 .. groupings) (ignored
 * by a window without groupings). On a window with groupings, add_row and
 * add_row_at are RK_EINVAL. */
int rk_drift_window_add_row_grouped(rk_drift_window *w, const float *x,
                                    int64_t ts_ms, const uint32_t *group);

/* The non-missing values of feature f now in the window, oldest first,
 * into out[0..*n) (cap >= capacity always suffices: RK_ELIMIT when cap
 * is too small, nothing copied) and the number of missing observations
 * into *missing (may be NULL). RK_EINVAL, RK_ETYPE. */
int rk_drift_window_sample(rk_drift_window *w, uint32_t f, float *out,
                           size_t cap, size_t *n, uint64_t *missing);
int rk_drift_window_sample_cat(rk_drift_window *w, uint32_t f,
                               uint64_t *out, size_t cap, size_t *n,
                               uint64_t *missing);
/* Like rk_drift_window_sample, over the rows at or after since_ms only (a
 * timed window; an untimed one gives every row). */
int rk_drift_window_sample_since(rk_drift_window *w, uint32_t f, int64_t since_ms,
                                 float *out, size_t cap, size_t *n,
                                 uint64_t *missing);

/* One consistent copy, under one lock, of the rows of a window filled by
 * rows (the add_row functions) at or after since_ms (an untimed window:
 * all), oldest first: feature f's value of row i at out[f * cap + i],
 * missing ones as NaN (so a sample's missing rate is the window's), and
 * on a window with groupings row i's key under grouping g at
 * gout[g * cap + i] (gout may be NULL). *n rows. RK_ETYPE (a categorical
 * feature), RK_EINVAL (features added one by one, out of step),
 * RK_ELIMIT (cap below the rows held; the capacity always suffices). */
int rk_drift_window_rows(rk_drift_window *w, int64_t since_ms, float *out,
                         uint32_t *gout, size_t cap, size_t *n);
uint32_t rk_drift_window_groupings(const rk_drift_window *w);

/* Observations of feature f ever added (0 for a bad f). */
uint64_t rk_drift_window_seen(rk_drift_window *w, uint32_t f);
/* Bytes the window holds (fixed after creation). */
size_t rk_drift_window_bytes(const rk_drift_window *w);
uint32_t rk_drift_window_capacity(const rk_drift_window *w);
/* Empties every ring (counts of seen observations too). */
void rk_drift_window_clear(rk_drift_window *w);


/* ======================================================================== */
/* Drift report of a model version                                           */
/* ======================================================================== */
/*
 * Every input feature and the prediction of a model version (meta: its
 * parsed meta.json, whose reference histograms are compared) against
 * current samples: cur[i][0..ncur[i]) for meta->features[i], then one
 * more for the prediction when meta->prediction is set (NaN = missing).
 * Numeric references only (a categorical one is reported as method
 * "none"). Sorted most drifted first: drifting features, then PSI alarms,
 * then by PSI and JS. The dataset verdict counts the inputs only. The
 * report borrows meta, which must outlive it. RK_ENOMEM, detector errors.
 */
typedef struct rk_drift_report rk_drift_report;
int rk_drift_report_build(const rk_model_meta *meta, const float *const *cur,
                          const size_t *ncur, const rk_drift_opts *o,
                          rk_drift_report **out, rk_err *err);
/* rk_drift_report_build when the current samples are the same rows, each
 * feature's value of row k at cur[i][k], and those rows come in groups
 * (NULL, or groups->n == 0: independent rows). */
int rk_drift_report_build_grouped(const rk_model_meta *meta,
                                  const float *const *cur, const size_t *ncur,
                                  const rk_drift_groups *groups,
                                  const rk_drift_opts *o,
                                  rk_drift_report **out, rk_err *err);
void rk_drift_report_free(rk_drift_report *r);
size_t rk_drift_report_count(const rk_drift_report *r);
/* The rank-th feature in drift order (NULL past the end); *name borrowed. */
const rk_drift_feature *rk_drift_report_get(const rk_drift_report *r, size_t rank,
                                            const char **name);
void rk_drift_report_dataset(const rk_drift_report *r, rk_drift_dataset *out);
/* {"dataset": {...}, "features": [{name, method, drift, score, ...}]}
 * appended to b. RK_ENOMEM. */
int rk_drift_report_json(const rk_drift_report *r, rk_buf *b);
/* An aligned table, most drifted first, and the dataset verdict. */
void rk_drift_report_table(const rk_drift_report *r, FILE *out);
/* A self-contained HTML page: the table plus, per feature, an inline SVG
 * of reference vs current bin shares, then extra (HTML written as is at
 * the end of the body, e.g. `rankd drift`'s concept section; NULL none).
 * RK_EIO when writing fails. */
int rk_drift_report_html(const rk_drift_report *r, const char *title,
                         const char *extra, FILE *out);

/* ---- concept drift: online metrics from delayed labels -------------------- */

/*
 * The quality of served predictions once their labels are known: log
 * loss (predictions clipped to [1e-7, 1 - 1e-7], as rk_metrics_logloss),
 * AUC from RK_CONCEPT_BINS equal-width score bins (pairs within one bin
 * count as ties: exact to within 1 / RK_CONCEPT_BINS of the rank
 * statistic), and calibration Σ predicted / Σ actual. Fixed memory; a
 * plain struct, not thread-safe (guard it with the caller's lock).
 */
#define RK_CONCEPT_BINS 1024

typedef struct rk_concept_acc {
    double n, pos;               /* weighted labels and positives */
    double sum_p, logloss_sum;
    double bins[2][RK_CONCEPT_BINS]; /* weight per score bin: [neg, pos] */
} rk_concept_acc;

typedef struct rk_concept_metrics {
    double n, positives;
    double logloss, auc, calibration, ctr, mean_p; /* NaN when undefined */
} rk_concept_metrics;

void rk_concept_reset(rk_concept_acc *a);
/* One labelled prediction: p in [0, 1] (non-finite values are ignored and
 * the call returns RK_EINVAL), label > 0 positive, weight w > 0. */
int rk_concept_add(rk_concept_acc *a, float p, float label, float w);
/* Adds every count of b into a. */
void rk_concept_merge(rk_concept_acc *a, const rk_concept_acc *b);
/* The metrics so far: logloss NaN without labels, AUC NaN unless both
 * classes were seen, calibration NaN without positives. */
void rk_concept_get(const rk_concept_acc *a, rk_concept_metrics *out);

#ifdef __cplusplus
}
#endif

#endif
