/*
 * bench/gbdt.c — GBDT prediction: rankd's evaluator against XGBoost's own
 * predictor on the same model, one thread each.
 *
 * Workload (fixed seed): a binary:logistic model of 300 trees, depth 6,
 * trained (not timed) on 20,000 synthetic rows of 40 features with 15%
 * missing values and a nonlinear planted signal. Scoring requests are
 * batches of 500 rows (a ranking request's candidates) drawn from 64
 * pre-generated batches with 20% missing values, cycled so the rows are
 * not always the same cache-hot ones.
 *
 * Measured per batch (wall time, one thread, p50/p99 over the run; the
 * paths take turns batch by batch so that load from other processes hits
 * them alike):
 *  - rankd: rk_gbdt_predict as a server calls it (default kernel);
 *  - rankd/ref, rankd/scalar: the plain reference and the blocked kernel
 *    called directly (margins, then the same sigmoid), same model;
 *  - xgboost/dmatrix: what a server using XGBoost's C API does per request:
 *    XGDMatrixCreateFromMat_omp(nthread 1) + XGBoosterPredict +
 *    XGDMatrixFree, booster nthread=1;
 *  - xgboost/inplace: XGBoosterPredictFromDense (XGBoost's in-place
 *    prediction, no DMatrix copy; 1.7's equivalent of Python's
 *    inplace_predict), nthread=1.
 * Every path's output is checked against XGBoost's before timing.
 *
 * Results: one JSON line per path on stdout, a table on stderr with the
 * speed-up of each rankd path over each XGBoost path. --smoke runs every
 * path on a tiny model (make test).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xgboost/c_api.h>

#include "rank/rank_int.h"
#include "rk_rank.h"

#define SEED 20261122u
#define NFEAT 40
#define NBATCHES 64

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1p-53; }

static float *make_rows(size_t n, double miss, uint64_t *s)
{
    float *x = malloc(n * NFEAT * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n * NFEAT; i++) {
        /* Some features coarse (counts, buckets), most continuous. */
        double v = unit(s) * 4 - 2;
        if (i % NFEAT >= 30) v = floor(v * 3);
        x[i] = unit(s) < miss ? NAN : (float)v;
    }
    return x;
}

static float z(float v) { return isnan(v) ? 0.0f : v; }

static float label(const float *r, uint64_t *s)
{
    double t = 0;
    for (int j = 0; j < 10; j++) t += (j % 2 ? -0.4 : 0.6) * z(r[j]);
    t += z(r[10]) * z(r[11]) + (z(r[12]) > 0.3 ? z(r[13]) : -z(r[14]));
    t += isnan(r[15]) ? 0.8 : 0.2 * z(r[15]) * z(r[15]);
    t += 0.3 * sin(3 * z(r[16])) + 0.2 * z(r[31]);
    return unit(s) < 1 / (1 + exp(-t)) ? 1.0f : 0.0f;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    char name[32];
    double p50_us, p99_us, mean_us, rows_per_sec;
    size_t batches;
} result;

typedef struct ctx {
    const rk_gbdt *m;
    BoosterHandle b;
    float *batches; /* NBATCHES x batch x NFEAT */
    size_t batch;
    float *out;
    const rk__rank_gbdt_kernels *kern; /* NULL: rk_gbdt_predict */
    char iface[256];                   /* array interface of the current batch */
} ctx;

typedef int (*path_fn)(ctx *c, const float *x);

static int run_native(ctx *c, const float *x)
{
    if (!c->kern) {
        rk_dmat dm = {x, c->batch, NFEAT, NFEAT};
        return rk_gbdt_predict(c->m, &dm, c->out, 0);
    }
    /* Kernels straight from the table, with the transform the model
     * applies, so each kernel is timed on equal terms. */
    c->kern->margins(rk__rank_gbdt_forest(c->m), x, NFEAT, c->batch, c->out);
    for (size_t i = 0; i < c->batch; i++) {
        float e = fminf(-c->out[i], 88.7f);
        c->out[i] = 1.0f / (expf(e) + 1.0f + 1e-16f);
    }
    return 0;
}

static int run_xgb_dmatrix(ctx *c, const float *x)
{
    DMatrixHandle d = NULL;
    bst_ulong n = 0;
    const float *res = NULL;
    if (XGDMatrixCreateFromMat_omp(x, (bst_ulong)c->batch, NFEAT, NAN, &d, 1) != 0) return -1;
    int rc = XGBoosterPredict(c->b, d, 0, 0, 0, &n, &res);
    if (rc == 0 && n == c->batch) memcpy(c->out, res, n * sizeof *res);
    XGDMatrixFree(d);
    return rc == 0 && n == c->batch ? 0 : -1;
}

static int run_xgb_inplace(ctx *c, const float *x)
{
    /* The array interface is a JSON string naming the buffer's address;
     * building it is part of the call's cost, as it is for a server. */
    snprintf(c->iface, sizeof c->iface,
             "{\"data\":[%llu,true],\"shape\":[%zu,%d],\"typestr\":\"<f4\",\"version\":3}",
             (unsigned long long)(uintptr_t)x, c->batch, NFEAT);
    static const char cfg[] = "{\"type\":0,\"training\":false,\"iteration_begin\":0,"
                              "\"iteration_end\":0,\"strict_shape\":false,\"missing\":NaN,"
                              "\"cache_id\":0}";
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *res = NULL;
    if (XGBoosterPredictFromDense(c->b, c->iface, cfg, NULL, &shape, &dim, &res) != 0) return -1;
    memcpy(c->out, res, c->batch * sizeof *res);
    return 0;
}

typedef struct path {
    const char *name;
    path_fn fn;
    const rk__rank_gbdt_kernels *kern;
    int native; /* a rankd path: gets speed-up columns */
} path;

/* Times the paths round-robin, batch by batch, rotating which path goes
 * first, until `seconds` per path have passed (at least min_rounds
 * rounds). Interleaving matters on a shared machine: load from other jobs
 * comes and goes over seconds, and timing the paths one after another
 * would charge it to whichever path ran then. */
static int measure_all(ctx *c, const path *paths, int np, double seconds, size_t min_rounds,
                       result *res)
{
    size_t cap = 1 << 16, n = 0;
    double *lat = malloc((size_t)np * cap * sizeof *lat);
    double total[8] = {0};
    if (!lat || np > 8) return -1;
    for (size_t i = 0; i < 4; i++) /* warm-up */
        for (int k = 0; k < np; k++) {
            c->kern = paths[k].kern;
            paths[k].fn(c, c->batches + (i % NBATCHES) * c->batch * NFEAT);
        }
    uint64_t stop = rk_clock_mono_ns() + (uint64_t)(seconds * np * 1e9);
    while (n < cap && (n < min_rounds || rk_clock_mono_ns() < stop)) {
        const float *x = c->batches + (n % NBATCHES) * c->batch * NFEAT;
        for (int j = 0; j < np; j++) {
            int k = (int)((n + (size_t)j) % (size_t)np);
            c->kern = paths[k].kern;
            uint64_t t0 = rk_clock_mono_ns();
            if (paths[k].fn(c, x) != 0) {
                fprintf(stderr, "gbdt bench: %s failed: %s\n", paths[k].name, XGBGetLastError());
                free(lat);
                return -1;
            }
            double us = (double)(rk_clock_mono_ns() - t0) * 1e-3;
            lat[(size_t)k * cap + n] = us;
            total[k] += us;
        }
        n++;
    }
    for (int k = 0; k < np; k++) {
        double *l = lat + (size_t)k * cap;
        qsort(l, n, sizeof *l, cmp_double);
        result *r = &res[k];
        snprintf(r->name, sizeof r->name, "%s", paths[k].name);
        r->batches = n;
        r->p50_us = l[n / 2];
        r->p99_us = l[(size_t)((double)n * 0.99)];
        r->mean_us = total[k] / (double)n;
        r->rows_per_sec = (double)c->batch * 1e6 / r->mean_us;
    }
    free(lat);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: gbdt [--smoke] [--trees N] [--depth D] [--batch B] [--seconds S]\n"
               "  --trees N    trees in the model (default 300)\n"
               "  --depth D    max_depth (default 6)\n"
               "  --batch B    rows per prediction call (default 500)\n"
               "  --seconds S  time per path, taken in turns (default 3)\n"
               "  --smoke      tiny run of every path (make test)\n");
}

int main(int argc, char **argv)
{
    int smoke = 0;
    unsigned ntrees = 300, depth = 6;
    size_t batch = 500;
    double seconds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) smoke = 1;
        else if (strcmp(argv[i], "--trees") == 0 && i + 1 < argc) ntrees = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--depth") == 0 && i + 1 < argc) depth = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (smoke) {
        ntrees = 10;
        depth = 3;
        seconds = 0.05;
    }
    if (ntrees < 1 || depth < 1 || depth > 30 || batch < 1 || batch > 100000) {
        usage(stderr);
        return 2;
    }
    size_t ntrain = smoke ? 2000 : 20000;

    /* ---- the model (not timed) ---- */
    uint64_t s = SEED;
    float *x = make_rows(ntrain, 0.15, &s), *y = malloc(ntrain * sizeof *y);
    if (!x || !y) return 1;
    for (size_t i = 0; i < ntrain; i++) y[i] = label(x + i * NFEAT, &s);
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = ntrees;
    p.max_depth = depth;
    p.eta = 0.1;
    p.seed = 7;
    rk_gbdt_data td = {{x, ntrain, NFEAT, NFEAT}, y, NULL, NULL, 0};
    rk_gbdt *m = NULL;
    rk_err err = {0};
    uint64_t t0 = rk_clock_mono_ns();
    if (rk_gbdt_train(&m, &td, NULL, &p, &err) != 0) {
        fprintf(stderr, "gbdt bench: %s\n", err.msg);
        return 1;
    }
    free(x);
    free(y);
    rk_gbdt_info info;
    rk_gbdt_info_get(m, &info);
    fprintf(stderr, "model: %zu trees, max depth %u, %zu nodes, %zu features "
                    "(trained in %.1f s on %zu rows)\n",
            info.ntrees, info.max_depth, info.nodes, info.nfeatures,
            (double)(rk_clock_mono_ns() - t0) * 1e-9, ntrain);

    size_t jlen;
    const char *json = rk_gbdt_xgb_json(m, &jlen);
    BoosterHandle b = NULL;
    if (XGBoosterCreate(NULL, 0, &b) != 0 || XGBoosterLoadModelFromBuffer(b, json, jlen) != 0 ||
        XGBoosterSetParam(b, "nthread", "1") != 0) {
        fprintf(stderr, "gbdt bench: xgboost: %s\n", XGBGetLastError());
        return 1;
    }

    ctx c = {0};
    c.m = m;
    c.b = b;
    c.batch = batch;
    c.batches = make_rows(NBATCHES * batch, 0.2, &s);
    c.out = malloc(batch * sizeof *c.out);
    float *want = malloc(NBATCHES * batch * sizeof *want);
    if (!c.batches || !c.out || !want) return 1;

    /* Reference outputs from XGBoost, then every path is checked. */
    for (size_t k = 0; k < NBATCHES; k++) {
        if (run_xgb_dmatrix(&c, c.batches + k * batch * NFEAT) != 0) {
            fprintf(stderr, "gbdt bench: xgboost: %s\n", XGBGetLastError());
            return 1;
        }
        memcpy(want + k * batch, c.out, batch * sizeof *want);
    }

    path paths[6];
    int np = 0;
    paths[np++] = (path){"rankd", run_native, NULL, 1};
    paths[np++] = (path){"rankd/ref", run_native, &rk__rank_gbdt_kernels_ref, 1};
    paths[np++] = (path){"rankd/scalar", run_native, &rk__rank_gbdt_kernels_scalar, 1};
    paths[np++] = (path){"xgboost/dmatrix", run_xgb_dmatrix, NULL, 0};
    paths[np++] = (path){"xgboost/inplace", run_xgb_inplace, NULL, 0};

    /* Every path must agree with XGBoost before it is timed. */
    double worst[6];
    int rc = 0;
    for (int i = 0; i < np; i++) {
        c.kern = paths[i].kern;
        worst[i] = 0;
        for (size_t k = 0; k < NBATCHES; k++) {
            if (paths[i].fn(&c, c.batches + k * batch * NFEAT) != 0) {
                fprintf(stderr, "gbdt bench: %s: %s\n", paths[i].name, XGBGetLastError());
                worst[i] = INFINITY;
                break;
            }
            for (size_t j = 0; j < batch; j++) {
                double d = fabs((double)c.out[j] - (double)want[k * batch + j]);
                if (!(d <= worst[i])) worst[i] = d;
            }
        }
        if (!(worst[i] <= 1e-5)) {
            fprintf(stderr, "gbdt bench: %s disagrees with xgboost (max diff %g)\n",
                    paths[i].name, worst[i]);
            rc = 1;
        }
    }
    result res[6];
    memset(res, 0, sizeof res);
    if (rc == 0 && measure_all(&c, paths, np, seconds, smoke ? 3 : 100, res) != 0) rc = 1;
    for (int i = 0; i < np && rc == 0; i++)
        printf("{\"bench\":\"gbdt_predict\",\"path\":\"%s\",\"trees\":%zu,\"max_depth\":%u,"
               "\"features\":%d,\"batch\":%zu,\"threads\":1,\"batches\":%zu,"
               "\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"rows_per_sec\":%.0f,"
               "\"max_abs_diff_vs_xgboost\":%g,\"smoke\":%s}\n",
               res[i].name, info.ntrees, info.max_depth, NFEAT, batch, res[i].batches,
               res[i].p50_us, res[i].p99_us, res[i].mean_us, res[i].rows_per_sec, worst[i],
               smoke ? "true" : "false");
    fflush(stdout);

    /* Table: each path, and each rankd path's speed-up over both XGBoost
     * paths (ratio of p50 batch times). */
    const result *xd = NULL, *xi = NULL;
    for (int i = 0; i < np; i++) {
        if (!res[i].batches) continue;
        if (strcmp(res[i].name, "xgboost/dmatrix") == 0) xd = &res[i];
        if (strcmp(res[i].name, "xgboost/inplace") == 0) xi = &res[i];
    }
    fprintf(stderr, "\n%zu-row batches, 1 thread, default kernel: %s\n", batch, info.kernels);
    fprintf(stderr, "%-16s %10s %10s %10s %12s %11s %11s\n", "path", "p50 us", "p99 us",
            "mean us", "rows/s", "vs dmatrix", "vs inplace");
    for (int i = 0; i < np; i++) {
        const result *r = &res[i];
        if (!r->batches) continue;
        char a[16] = "-", bb[16] = "-";
        if (paths[i].native && xd) snprintf(a, sizeof a, "%.1fx", xd->p50_us / r->p50_us);
        if (paths[i].native && xi) snprintf(bb, sizeof bb, "%.1fx", xi->p50_us / r->p50_us);
        fprintf(stderr, "%-16s %10.1f %10.1f %10.1f %12.0f %11s %11s\n", r->name, r->p50_us,
                r->p99_us, r->mean_us, r->rows_per_sec, a, bb);
    }
    if (rc == 0 && xd && xi && res[0].batches) {
        double fastest = xd->p50_us < xi->p50_us ? xd->p50_us : xi->p50_us;
        double ratio = fastest / res[0].p50_us;
        fprintf(stderr, "\ntarget >= 5x XGBoost's faster path (p50): %.1fx, %s\n", ratio,
                smoke ? "not judged on a smoke run" : ratio >= 5 ? "met" : "NOT met");
    }

    free(want);
    free(c.out);
    free(c.batches);
    XGBoosterFree(b);
    rk_gbdt_destroy(m);
    return rc;
}
