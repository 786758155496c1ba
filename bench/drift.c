/*
 * bench/drift.c — drift statistics throughput, rankd against SciPy on the
 * same data: the two-sample Kolmogorov-Smirnov test, the Wasserstein-1
 * distance and the Jensen-Shannon distance over reference decile bins.
 *
 * Workload (fixed seed, generated before any timing): 50 numeric features
 * of 100,000 reference rows and 10,000 current rows, float32, of four
 * shapes (normal, log-normal, uniform, and small integers with many ties)
 * with a third of the features shifted and a fifth rescaled in the
 * current window. Measured, single thread, per feature:
 *
 *   ks           rk_drift_ks (statistic and p-value from raw samples)
 *   wasserstein  rk_drift_wasserstein (raw samples; the distance only, as
 *                SciPy computes)
 *   js           rk_drift_hist of both samples over the reference decile
 *                edges (computed before timing), then rk_drift_js
 *   ks-presorted, wasserstein-presorted
 *                rk_drift_ks_sorted / rk_drift_wasserstein_sorted with the
 *                reference sorted once before timing (what a monitor
 *                holding its reference does): only the current sample is
 *                sorted per call. rankd only; values must equal the rows
 *                above.
 *
 * and the peer, bench/drift_peer.py run by /usr/bin/python3, does the same
 * with scipy.stats.ks_2samp, scipy.stats.wasserstein_distance and
 * numpy.searchsorted + bincount + scipy.spatial.distance.jensenshannon
 * (base 2) on the same float32 values (read from files this program
 * writes, converted to float64 before timing). The peer writes its values
 * back; every rankd value must equal SciPy's within 1e-9, or the bench
 * fails. Throughput is (reference + current rows) x features per second;
 * JSON lines on stdout (the peer's passed through), a table with the
 * ratios on stderr. --smoke: a tiny run for make test (the peer runs when
 * SciPy is there; its absence is not an error).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rk_monitor.h"

#define SEED 20261122u
#define NBINS 10
#define TOL 1e-9
#define TARGET 10.0

/* The last two are rankd only: the same statistics with the reference
 * sorted once before timing (rk_drift_sort), as a monitor that keeps its
 * reference does; only the current sample is sorted per call. Their
 * ratios are taken against SciPy's full ks / wasserstein rows. */
enum { ST_KS, ST_W, ST_JS, ST_KS_PRE, ST_W_PRE, NSTAT };
static const char *const stat_name[NSTAT] = {"ks", "wasserstein", "js",
                                             "ks-presorted",
                                             "wasserstein-presorted"};
static const int peer_of[NSTAT] = {ST_KS, ST_W, ST_JS, ST_KS, ST_W};
#define NPEER 3

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 0.5) * 0x1p-53; }

static double gauss(uint64_t *s)
{
    return sqrt(-2 * log(unit(s))) * cos(2 * M_PI * unit(s));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of this (single-threaded) process: on a shared machine the
 * wall clock also counts time the scheduler gave to others. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One value of feature f; shift and scale move the current window. */
static float draw(uint64_t *s, size_t f, double shift, double scale)
{
    double x;
    switch (f % 4) {
    case 0: x = gauss(s); break;
    case 1: x = exp(0.5 * gauss(s)); break;
    case 2: x = unit(s) * 10; break;
    default: x = floor(unit(s) * 7); break;   /* ties */
    }
    return (float)(x * scale + shift);
}

typedef struct data {
    size_t nf, nref, ncur;
    float *ref, *cur;          /* feature-major */
    double *ref_sorted;        /* nf x nref, finite values sorted */
    size_t *nref_sorted;
    double *edges;             /* nf x (NBINS - 1) */
    int32_t *nedges;
} data;

static int generate(data *d)
{
    d->ref = malloc(d->nf * d->nref * sizeof *d->ref);
    d->cur = malloc(d->nf * d->ncur * sizeof *d->cur);
    d->edges = calloc(d->nf * (NBINS - 1), sizeof *d->edges);
    d->nedges = calloc(d->nf, sizeof *d->nedges);
    d->ref_sorted = malloc(d->nf * d->nref * sizeof *d->ref_sorted);
    d->nref_sorted = calloc(d->nf, sizeof *d->nref_sorted);
    if (!d->ref || !d->cur || !d->edges || !d->nedges || !d->ref_sorted ||
        !d->nref_sorted)
        return -1;
    double *sorted;
    uint64_t s = SEED;
    for (size_t f = 0; f < d->nf; f++) {
        double shift = f % 3 == 0 ? 0.05 * (double)(f % 7) : 0;
        double scale = f % 5 == 0 ? 1.1 : 1;
        for (size_t i = 0; i < d->nref; i++) d->ref[f * d->nref + i] = draw(&s, f, 0, 1);
        for (size_t i = 0; i < d->ncur; i++)
            d->cur[f * d->ncur + i] = draw(&s, f, shift, scale);
        /* The sorted reference, and its decile edges by the refhist rule. */
        sorted = d->ref_sorted + f * d->nref;
        size_t m;
        uint32_t ne;
        rk_err err = {0};
        if (rk_drift_sort(d->ref + f * d->nref, d->nref, sorted, &m, &err) ||
            rk_drift_edges_sorted(sorted, m, NBINS, d->edges + f * (NBINS - 1),
                                  &ne, &err))
            return -1;
        d->nedges[f] = (int32_t)ne;
        d->nref_sorted[f] = m;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- rankd ---------------------------------------------------------------- */

typedef struct result {
    double seconds, per_sec, p50_us, p99_us;
    double cpu_seconds, per_cpu_sec;   /* of the same (fastest) pass */
    int have;
} result;

static result rk_res[NSTAT], sp_res[NSTAT];
static double diff[NSTAT];

/* values[f * 4 + k]: ks stat, ks p, wasserstein, js (the peer's layout). */
static int run_rankd(const data *d, int reps, double *values)
{
    rk_err err = {0};
    double *lat = malloc(d->nf * sizeof *lat);
    double hr[NBINS], hc[NBINS];
    double *cs = malloc(d->ncur * sizeof *cs);
    if (!lat || !cs) {
        free(lat);
        free(cs);
        return -1;
    }
    for (int st = 0; st < NSTAT; st++) {
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now(), c0 = cpu_now();
            for (size_t f = 0; f < d->nf; f++) {
                const float *a = d->ref + f * d->nref, *b = d->cur + f * d->ncur;
                double tf = now();
                int rc = 0;
                if (st == ST_KS) {
                    rk_drift_ks_result k;
                    rc = rk_drift_ks(a, d->nref, b, d->ncur, &k, &err);
                    values[f * 4] = k.stat;
                    values[f * 4 + 1] = k.p;
                } else if (st == ST_W) {
                    double w;
                    rc = rk_drift_wasserstein(a, d->nref, b, d->ncur, &w, NULL, &err);
                    values[f * 4 + 2] = w;
                } else if (st == ST_KS_PRE || st == ST_W_PRE) {
                    size_t nc;
                    const double *rs = d->ref_sorted + f * d->nref;
                    rc = rk_drift_sort(b, d->ncur, cs, &nc, &err);
                    if (!rc && st == ST_KS_PRE) {
                        rk_drift_ks_result k;
                        rc = rk_drift_ks_sorted(rs, d->nref_sorted[f], cs, nc, &k, &err);
                        if (k.stat != values[f * 4] || k.p != values[f * 4 + 1]) rc = -1;
                    } else if (!rc) {
                        double w = rk_drift_wasserstein_sorted(rs, d->nref_sorted[f], cs, nc);
                        if (w != values[f * 4 + 2]) rc = -1;
                    }
                    if (rc == -1) snprintf(err.msg, sizeof err.msg, "presorted value differs");
                } else {
                    const double *e = d->edges + f * (NBINS - 1);
                    uint32_t ne = (uint32_t)d->nedges[f];
                    /* Both histograms per call, as the peer does. */
                    rk_drift_hist(a, d->nref, e, ne, hr, NULL);
                    rk_drift_hist(b, d->ncur, e, ne, hc, NULL);
                    rc = rk_drift_js(hr, hc, ne + 1, &values[f * 4 + 3], &err);
                }
                if (rc) {
                    fprintf(stderr, "drift: %s: %s\n", stat_name[st], err.msg);
                    free(lat);
                    free(cs);
                    return -1;
                }
                lat[f] = (now() - tf) * 1e6;
            }
            double t = now() - t0, c = cpu_now() - c0;
            if (t < best) {
                best = t;
                rk_res[st].cpu_seconds = c;
                qsort(lat, d->nf, sizeof *lat, cmp_double);
                rk_res[st].p50_us = lat[(d->nf - 1) / 2];
                rk_res[st].p99_us = lat[(size_t)(0.99 * (double)(d->nf - 1) + 0.5)];
            }
        }
        rk_res[st].seconds = best;
        rk_res[st].per_sec = (double)(d->nref + d->ncur) * (double)d->nf / best;
        rk_res[st].per_cpu_sec = (double)(d->nref + d->ncur) * (double)d->nf /
                                 rk_res[st].cpu_seconds;
        rk_res[st].have = 1;
    }
    free(lat);
    free(cs);
    return 0;
}

/* ---- peer -------------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const void *p,
                      size_t bytes)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, bytes, f);
    return fclose(f) == 0 && w == bytes ? 0 : -1;
}

static const char *find_script(const char *argv0, char *buf, size_t cap)
{
    if (access("bench/drift_peer.py", R_OK) == 0) return "bench/drift_peer.py";
    const char *sl = strrchr(argv0, '/');
    if (sl) {
        snprintf(buf, cap, "%.*s/../../bench/drift_peer.py", (int)(sl - argv0), argv0);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

/* Runs the peer; returns 1 when it produced values into peer_values. */
static int run_peer(const char *script, const char *dir, const data *d,
                    int reps, double *peer_values)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "drift: /usr/bin/python3 not found: peer skipped\n");
        return 0;
    }
    if (write_file(dir, "ref.f32", d->ref, d->nf * d->nref * 4) ||
        write_file(dir, "cur.f32", d->cur, d->nf * d->ncur * 4) ||
        write_file(dir, "edges.f64", d->edges, d->nf * (NBINS - 1) * 8) ||
        write_file(dir, "nedges.i32", d->nedges, d->nf * 4)) {
        fprintf(stderr, "drift: cannot write the peer's data to %s\n", dir);
        return 0;
    }
    char cmd[2400];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --dir '%s' --features %zu --ref %zu "
             "--cur %zu --max-edges %d --reps %d",
             script, dir, d->nf, d->nref, d->ncur, NBINS - 1, reps);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "drift: cannot run the peer\n");
        return 0;
    }
    char line[4096];
    int skipped = 0;
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        fflush(stdout);
        if (strstr(line, "\"skipped\"")) skipped = 1;
        const char *a = strstr(line, "\"stat\":\"");
        if (!a) continue;
        for (int st = 0; st < NPEER; st++) {
            size_t l = strlen(stat_name[st]);
            if (strncmp(a + 8, stat_name[st], l) != 0 || a[8 + l] != '"') continue;
            const char *c;
            if ((c = strstr(line, "\"seconds\":"))) sp_res[st].seconds = atof(c + 10);
            if ((c = strstr(line, "\"rows_x_features_per_sec\":")))
                sp_res[st].per_sec = atof(c + 26);
            if ((c = strstr(line, "\"cpu_seconds\":"))) sp_res[st].cpu_seconds = atof(c + 14);
            if ((c = strstr(line, "\"rows_x_features_per_cpu_sec\":")))
                sp_res[st].per_cpu_sec = atof(c + 30);
            if ((c = strstr(line, "\"p50_us\":"))) sp_res[st].p50_us = atof(c + 9);
            if ((c = strstr(line, "\"p99_us\":"))) sp_res[st].p99_us = atof(c + 9);
            sp_res[st].have = 1;
        }
    }
    int status = pclose(p);
    if (status != 0) {
        fprintf(stderr, "drift: the peer exited with status %d\n", status);
        return 0;
    }
    if (skipped) return 0;
    char path[1100];
    snprintf(path, sizeof path, "%s/peer_values.f64", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(peer_values, sizeof(double), d->nf * 4, f);
    fclose(f);
    return got == d->nf * 4;
}

static void rm_dir(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "drift: cannot remove %s\n", dir);
}

static void emit(const data *d, const char *system_name, int st, const result *r)
{
    printf("{\"bench\":\"drift\",\"system\":\"%s\",\"stat\":\"%s\",\"features\":%zu,"
           "\"ref_rows\":%zu,\"cur_rows\":%zu,\"seconds\":%.6f,"
           "\"rows_x_features_per_sec\":%.0f,\"cpu_seconds\":%.6f,"
           "\"rows_x_features_per_cpu_sec\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f",
           system_name, stat_name[st], d->nf, d->nref, d->ncur, r->seconds,
           r->per_sec, r->cpu_seconds, r->per_cpu_sec, r->p50_us, r->p99_us);
    const result *p = &sp_res[peer_of[st]];
    if (strcmp(system_name, "rankd") == 0 && p->have && p->per_sec > 0)
        printf(",\"ratio_vs_scipy\":%.2f,\"cpu_ratio_vs_scipy\":%.2f,"
               "\"max_abs_diff\":%.3g", r->per_sec / p->per_sec,
               p->per_cpu_sec > 0 ? r->per_cpu_sec / p->per_cpu_sec : 0,
               diff[peer_of[st]]);
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int smoke = 0, peer = 1, reps = 3;
    data d = {50, 100000, 10000, NULL, NULL, NULL, NULL, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) smoke = 1;
        else if (strcmp(argv[i], "--no-peer") == 0) peer = 0;
        else if (strcmp(argv[i], "--features") == 0 && i + 1 < argc) d.nf = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--ref") == 0 && i + 1 < argc) d.nref = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--cur") == 0 && i + 1 < argc) d.ncur = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--smoke] [--features N] [--ref N] [--cur N] "
                    "[--reps N] [--no-peer]\n", argv[0]);
            return 2;
        }
    }
    if (smoke) {
        d.nf = 4;
        d.nref = 3000;
        d.ncur = 400;
        reps = 1;
    }
    if (d.nf < 1 || d.nref < 1 || d.ncur < 1 || reps < 1) {
        fprintf(stderr, "drift: sizes and reps must be >= 1\n");
        return 2;
    }
    double t0 = now();
    if (generate(&d)) {
        fprintf(stderr, "drift: out of memory generating the data\n");
        return 1;
    }
    fprintf(stderr, "drift: %zu features x (%zu reference + %zu current) rows "
            "(generated in %.1fs)\n", d.nf, d.nref, d.ncur, now() - t0);
    double *mine = calloc(d.nf * 4, sizeof *mine);
    double *theirs = calloc(d.nf * 4, sizeof *theirs);
    int rc = !mine || !theirs || run_rankd(&d, reps, mine) ? 1 : 0;
    int compared = 0;
    if (!rc && peer) {
        char buf[1024], tdir[1024];
        const char *script = find_script(argv[0], buf, sizeof buf);
        const char *tmp = getenv("TMPDIR");
        snprintf(tdir, sizeof tdir, "%s/rk-drift-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        char *dir = mkdtemp(tdir);
        if (!script) fprintf(stderr, "drift: bench/drift_peer.py not found: peer skipped\n");
        else if (!dir) fprintf(stderr, "drift: cannot make a temporary directory: peer skipped\n");
        else compared = run_peer(script, dir, &d, reps, theirs);
        if (dir) rm_dir(dir);
    }
    if (compared) {
        /* ks stat and p into ST_KS (the larger difference), w, js. */
        for (size_t f = 0; f < d.nf; f++) {
            for (int k = 0; k < 4; k++) {
                int st = k < 2 ? ST_KS : k == 2 ? ST_W : ST_JS;
                double e = fabs(mine[f * 4 + k] - theirs[f * 4 + k]);
                if (!(e <= diff[st])) diff[st] = e;   /* NaN sticks */
            }
        }
    }
    if (!rc)
        for (int st = 0; st < NSTAT; st++) emit(&d, "rankd", st, &rk_res[st]);

    fprintf(stderr, "\n%-21s %15s %15s %7s %15s %15s %7s %11s\n", "statistic",
            "rankd rows*f/s", "scipy rows*f/s", "ratio", "rankd per cpu-s",
            "scipy per cpu-s", "ratio", "max |diff|");
    int bad = 0;
    for (int st = 0; st < NSTAT && !rc; st++) {
        const result *r = &rk_res[st], *p = &sp_res[peer_of[st]];
        int hp = p->have && p->per_sec > 0 && p->per_cpu_sec > 0;
        fprintf(stderr, "%-21s %15.0f", stat_name[st], r->per_sec);
        if (hp) fprintf(stderr, " %15.0f %6.1fx", p->per_sec, r->per_sec / p->per_sec);
        else fprintf(stderr, " %15s %7s", "-", "-");
        fprintf(stderr, " %15.0f", r->per_cpu_sec);
        if (hp) fprintf(stderr, " %15.0f %6.1fx", p->per_cpu_sec, r->per_cpu_sec / p->per_cpu_sec);
        else fprintf(stderr, " %15s %7s", "-", "-");
        if (compared) fprintf(stderr, " %11.3g", diff[peer_of[st]]);
        fputc('\n', stderr);
        if (compared && !(diff[peer_of[st]] <= TOL)) bad = 1;
    }
    if (compared) {
        fprintf(stderr, "values: %s (tolerance %g)\n", bad ? "MISMATCH" : "equal to SciPy", TOL);
        int met = 1, met_cpu = 1;
        for (int st = 0; st < NPEER; st++) {
            if (!(sp_res[st].per_sec > 0 && rk_res[st].per_sec / sp_res[st].per_sec >= TARGET))
                met = 0;
            if (!(sp_res[st].per_cpu_sec > 0 &&
                  rk_res[st].per_cpu_sec / sp_res[st].per_cpu_sec >= TARGET))
                met_cpu = 0;
        }
        fprintf(stderr, "target >= %.0fx SciPy on every statistic: wall %s, CPU time %s\n",
                TARGET, smoke ? "smoke run, not judged" : met ? "met" : "MISSED",
                smoke ? "not judged" : met_cpu ? "met" : "MISSED");
    }
    free(mine);
    free(theirs);
    free(d.ref);
    free(d.cur);
    free(d.edges);
    free(d.nedges);
    free(d.ref_sorted);
    free(d.nref_sorted);
    return rc || bad;
}
