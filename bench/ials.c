/*
 * bench/ials.c — iALS training speed against the machine's FMA peak, and
 * fold-in latency.
 *
 * Workload (fixed seed): 100,000 users, 50,000 items, 10,000,000 drawn
 * (user, item) events; users' activity follows Zipf(0.5) and item
 * popularity Zipf(0.9) over a shuffled id order, weights 1..3. Repeated
 * pairs are summed by rk_interactions, so the matrix has somewhat fewer
 * than 10M non-zeros; the exact count is printed.
 *
 * For k = 64 and 128, one thread and all threads, the CG solver (3 steps)
 * trains a few iterations; each iteration reports its wall time and the
 * floating-point operations the solver counted (formula in
 * docs/retrieval.md: per row (steps + 1)(2k^2 + 4kn) + O(k) for CG, plus
 * k(k + 1) per row of each Gramian). The exact Cholesky solver runs one
 * iteration at k = 64 for comparison. Peak: a tight AVX2/FMA loop on twelve
 * independent accumulators, on one core and on all cores at once, best of
 * three; the target is >= 30% of it.
 *
 * Fold-in: 2,000 histories of 20 random items against the trained model,
 * latency p50/p95/p99 on one thread.
 *
 * Results: one JSON line per configuration on stdout, a table on stderr.
 * --smoke runs every path on a tiny dataset (make test).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rk_retrieval.h"

#define SEED 20261122u

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1p-53; }

static double *zipf_cdf(size_t k, double s)
{
    double *c = malloc(k * sizeof *c), sum = 0;
    if (!c) return NULL;
    for (size_t i = 0; i < k; i++) c[i] = sum += 1.0 / pow((double)(i + 1), s);
    for (size_t i = 0; i < k; i++) c[i] /= sum;
    return c;
}

static uint32_t zipf_draw(const double *cdf, size_t k, uint64_t *s)
{
    double u = unit(s);
    size_t lo = 0, hi = k - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return (uint32_t)lo;
}

static uint32_t *shuffled(size_t k, uint64_t *s)
{
    uint32_t *p = malloc(k * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < k; i++) p[i] = (uint32_t)i;
    for (size_t i = k - 1; i > 0; i--) {
        size_t j = splitmix(s) % (i + 1);
        uint32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

static rk_interactions *make_data(uint32_t nusers, uint32_t nitems, size_t n)
{
    uint64_t s = SEED;
    double *ucdf = zipf_cdf(nusers, 0.5), *icdf = zipf_cdf(nitems, 0.9);
    uint32_t *uperm = shuffled(nusers, &s), *iperm = shuffled(nitems, &s);
    uint32_t *us = malloc(n * sizeof *us), *is = malloc(n * sizeof *is);
    float *ws = malloc(n * sizeof *ws);
    rk_interactions *m = NULL;
    if (ucdf && icdf && uperm && iperm && us && is && ws) {
        for (size_t i = 0; i < n; i++) {
            us[i] = uperm[zipf_draw(ucdf, nusers, &s)];
            is[i] = iperm[zipf_draw(icdf, nitems, &s)];
            ws[i] = (float)(1 + splitmix(&s) % 3);
        }
        rk_err err = {0};
        if (rk_interactions_from_triplets(&m, nusers, nitems, us, is, ws, NULL,
                                          n, &err) != 0)
            fprintf(stderr, "ials bench: %s\n", err.msg);
    }
    free(ucdf);
    free(icdf);
    free(uperm);
    free(iperm);
    free(us);
    free(is);
    free(ws);
    return m;
}

/* ---- FMA peak ---------------------------------------------------------------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* Twelve independent FMA chains (latency 4 x 2 ports needs 8): the loop is
 * bound by FMA throughput alone. a = a * m + c converges to 1, so no value
 * overflows or goes subnormal. Returns a sum so nothing is optimised away. */
__attribute__((target("avx2,fma"))) static float fma_loop(uint64_t iters)
{
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f);
    __m256 a2 = _mm256_set1_ps(0.3f), a3 = _mm256_set1_ps(0.4f);
    __m256 a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f);
    __m256 a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f);
    __m256 a8 = _mm256_set1_ps(0.9f), a9 = _mm256_set1_ps(1.1f);
    __m256 a10 = _mm256_set1_ps(1.2f), a11 = _mm256_set1_ps(1.3f);
    for (uint64_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
#define FLOPS_PER_ITER (12.0 * 8 * 2)

static int have_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static float fma_loop(uint64_t iters) { return (float)iters; }
#define FLOPS_PER_ITER 0.0
static int have_fma(void) { return 0; }
#endif

typedef struct peak_arg {
    uint64_t iters;
    double seconds;
    float sink;
} peak_arg;

static void *peak_thread(void *vp)
{
    peak_arg *a = vp;
    fma_loop(a->iters / 50); /* warm up the core's frequency */
    uint64_t t0 = rk_clock_mono_ns();
    a->sink = fma_loop(a->iters);
    a->seconds = (double)(rk_clock_mono_ns() - t0) * 1e-9;
    return NULL;
}

/* GFLOP/s of `threads` cores running the loop at once (sum over cores). */
static double measure_peak(unsigned threads, uint64_t iters)
{
    if (!have_fma()) return 0;
    pthread_t tid[1024];
    peak_arg args[1024];
    for (unsigned t = 0; t < threads; t++) {
        args[t].iters = iters;
        pthread_create(&tid[t], NULL, peak_thread, &args[t]);
    }
    double total = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        total += FLOPS_PER_ITER * (double)iters / args[t].seconds / 1e9;
    }
    return total;
}

/* ---- training runs --------------------------------------------------------------- */

typedef struct iter_log {
    double sec[64], flops[64];
    int n;
} iter_log;

static int log_iter(void *ctx, const rk_ials_iter_stats *s)
{
    iter_log *l = ctx;
    if (l->n < 64) {
        l->sec[l->n] = s->seconds;
        l->flops[l->n] = s->flops;
        l->n++;
    }
    return 0;
}

typedef struct result {
    const char *solver;
    uint32_t k;
    unsigned threads;
    int iters;
    double sec_per_iter, best_sec, gflops, peak, pct;
} result;

static int run_train(const rk_interactions *m, rk_ials_solver solver,
                     uint32_t k, unsigned threads, int iters, double peak,
                     result *r, rk_ials_model **keep)
{
    rk_ials_opts o;
    rk_ials_opts_default(&o);
    o.factors = k;
    o.iterations = (uint32_t)iters;
    o.solver = solver;
    o.threads = threads;
    iter_log log = {{0}, {0}, 0};
    o.on_iter = log_iter;
    o.on_iter_ctx = &log;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    if (rk_ials_train(m, &o, &md, &err) != 0) {
        fprintf(stderr, "ials bench: %s\n", err.msg);
        return -1;
    }
    double sec = 0, flops = 0, best = 1e300;
    for (int i = 0; i < log.n; i++) {
        sec += log.sec[i];
        flops += log.flops[i];
        if (log.sec[i] < best) best = log.sec[i];
    }
    r->solver = solver == RK_IALS_CG ? "cg3" : "cholesky";
    r->k = k;
    r->threads = threads;
    r->iters = log.n;
    r->sec_per_iter = sec / log.n;
    r->best_sec = best;
    r->gflops = flops / sec / 1e9;
    r->peak = peak;
    r->pct = peak > 0 ? 100.0 * r->gflops / peak : 0;
    if (keep) *keep = md;
    else rk_ials_free(md);
    return 0;
}

static void print_json(const result *r, const rk_interactions *m, int smoke)
{
    printf("{\"bench\":\"ials\",\"solver\":\"%s\",\"k\":%u,\"threads\":%u,"
           "\"users\":%u,\"items\":%u,\"nnz\":%llu,\"iterations\":%d,"
           "\"sec_per_iter\":%.4f,\"best_sec_per_iter\":%.4f,"
           "\"gflops\":%.2f,\"peak_gflops\":%.2f,\"pct_of_peak\":%.1f,"
           "\"smoke\":%s}\n",
           r->solver, r->k, r->threads, m->nusers, m->nitems,
           (unsigned long long)m->nnz, r->iters, r->sec_per_iter, r->best_sec,
           r->gflops, r->peak, r->pct, smoke ? "true" : "false");
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Fold-in latency of random 20-item histories, one thread. */
static void bench_fold_in(const rk_ials_model *md, int n, int smoke)
{
    uint32_t k = rk_ials_k(md), ni = rk_ials_nitems(md);
    double *lat = malloc(sizeof(double) * (size_t)n);
    float *x = malloc(sizeof(float) * k);
    float *sc = malloc(sizeof(float) * ni);
    uint64_t s = SEED + 1;
    rk_err err = {0};
    double score_us = 0;
    for (int i = 0; i < n; i++) {
        uint32_t h[20];
        for (int j = 0; j < 20; j++) h[j] = (uint32_t)(splitmix(&s) % ni);
        uint64_t t0 = rk_clock_mono_ns();
        if (rk_ials_fold_in(md, h, NULL, 20, x, &err) != 0) {
            fprintf(stderr, "ials bench: %s\n", err.msg);
            break;
        }
        uint64_t t1 = rk_clock_mono_ns();
        rk_ials_score_all(md, x, sc);
        score_us += (double)(rk_clock_mono_ns() - t1) * 1e-3;
        lat[i] = (double)(t1 - t0) * 1e-3;
    }
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    double p50 = lat[n / 2], p95 = lat[n * 95 / 100], p99 = lat[n * 99 / 100];
    printf("{\"bench\":\"ials_fold_in\",\"k\":%u,\"history\":20,\"n\":%d,"
           "\"p50_us\":%.1f,\"p95_us\":%.1f,\"p99_us\":%.1f,"
           "\"score_all_us\":%.1f,\"items\":%u,\"smoke\":%s}\n",
           k, n, p50, p95, p99, score_us / n, ni, smoke ? "true" : "false");
    fprintf(stderr, "fold-in k=%-3u 20 items: p50 %.1f us, p95 %.1f us, "
                    "p99 %.1f us; score_all over %u items %.1f us\n",
            k, p50, p95, p99, ni, score_us / n);
    free(lat);
    free(x);
    free(sc);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ials [--smoke] [--iterations N] [--k K] [--threads T]\n"
               "  --iterations N  CG iterations per configuration (default 3)\n"
               "  --k K           only this factor count (default 64 and 128)\n"
               "  --threads T     only this thread count (default 1 and all)\n"
               "  --no-cholesky   skip the Cholesky comparison row\n"
               "  --smoke         tiny run of every code path (make test)\n");
}

int main(int argc, char **argv)
{
    int smoke = 0, iters = 3, only_k = 0, only_t = 0, chol = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) smoke = 1;
        else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--k") == 0 && i + 1 < argc) only_k = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) only_t = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-cholesky") == 0) chol = 0;
        else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (iters < 1 || iters > 64) iters = 3;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned all = ncpu < 1 ? 1 : ncpu > 1024 ? 1024 : (unsigned)ncpu;
    uint32_t nusers = smoke ? 2000 : 100000, nitems = smoke ? 1000 : 50000;
    size_t nev = smoke ? 40000 : 10000000;

    /* The peak is a maximum: the best of three runs, so a moment of
     * interference from the rest of the machine does not lower the bar. */
    uint64_t piters = smoke ? 2000000 : 100000000;
    double peak1 = 0, peakall = 0;
    for (int rep = 0; rep < (smoke ? 1 : 3); rep++) {
        double p1 = measure_peak(1, piters);
        double pa = all > 1 ? measure_peak(all, piters) : p1;
        if (p1 > peak1) peak1 = p1;
        if (pa > peakall) peakall = pa;
    }
    printf("{\"bench\":\"fma_peak\",\"isa\":\"avx2_fma\",\"threads\":1,"
           "\"gflops\":%.2f}\n{\"bench\":\"fma_peak\",\"isa\":\"avx2_fma\","
           "\"threads\":%u,\"gflops\":%.2f,\"per_core\":%.2f}\n",
           peak1, all, peakall, peakall / all);

    uint64_t t0 = rk_clock_mono_ns();
    rk_interactions *m = make_data(nusers, nitems, nev);
    if (!m) return 1;
    fprintf(stderr, "data: %u users, %u items, %llu non-zeros from %zu events "
                    "(%.1f s to build)\n",
            m->nusers, m->nitems, (unsigned long long)m->nnz, nev,
            (double)(rk_clock_mono_ns() - t0) * 1e-9);

    result res[16];
    int nres = 0, rc = 0;
    static const uint32_t ks[] = {64, 128};
    rk_ials_model *keep64 = NULL, *keep128 = NULL;
    for (int ki = 0; ki < 2; ki++) {
        uint32_t k = ks[ki];
        if (only_k && (uint32_t)only_k != k) continue;
        for (int ti = 0; ti < 2; ti++) {
            unsigned th = ti == 0 ? 1 : all;
            if (ti == 1 && all == 1) break;
            if (only_t && (unsigned)only_t != th) continue;
            rk_ials_model **keep = ti == 1 || all == 1 || only_t
                                       ? (k == 64 ? &keep64 : &keep128)
                                       : NULL;
            if (keep && *keep) keep = NULL;
            if (run_train(m, RK_IALS_CG, k, th, iters, th == 1 ? peak1 : peakall,
                          &res[nres], keep) != 0) {
                rc = 1;
                continue;
            }
            print_json(&res[nres], m, smoke);
            nres++;
        }
    }
    if (chol && (!only_k || only_k == 64)) {
        for (int ti = 0; ti < 2; ti++) {
            unsigned th = ti == 0 ? 1 : all;
            if (ti == 1 && all == 1) break;
            if (only_t && (unsigned)only_t != th) continue;
            if (run_train(m, RK_IALS_CHOLESKY, 64, th, 1,
                          th == 1 ? peak1 : peakall, &res[nres], NULL) != 0) {
                rc = 1;
                continue;
            }
            print_json(&res[nres], m, smoke);
            nres++;
        }
    }

    fprintf(stderr, "\nFMA peak (AVX2, measured): %.1f GFLOP/s on 1 core, "
                    "%.1f GFLOP/s on %u cores\n\n",
            peak1, peakall, all);
    fprintf(stderr, "%-9s %4s %7s %6s %11s %11s %9s %9s %7s\n", "solver", "k",
            "threads", "iters", "s/iter", "best s/it", "GFLOP/s", "peak", "% peak");
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        fprintf(stderr, "%-9s %4u %7u %6d %11.3f %11.3f %9.1f %9.1f %6.1f%%\n",
                r->solver, r->k, r->threads, r->iters, r->sec_per_iter,
                r->best_sec, r->gflops, r->peak, r->pct);
    }
    int met = 1;
    for (int i = 0; i < nres; i++)
        if (strcmp(res[i].solver, "cg3") == 0 && res[i].pct < 30) met = 0;
    fprintf(stderr, "\ntarget >= 30%% of peak for the CG rows: %s\n\n",
            smoke ? "not judged on a smoke run" : met ? "met" : "NOT met");

    if (keep64) bench_fold_in(keep64, smoke ? 200 : 2000, smoke);
    if (keep128) bench_fold_in(keep128, smoke ? 200 : 2000, smoke);
    rk_ials_free(keep64);
    rk_ials_free(keep128);
    rk_interactions_free(m);
    return rc;
}
