/*
 * bench/ftrl.c — FTRL-Proximal training and prediction speed on
 * Criteo-shaped rows, with scikit-learn's SGDClassifier side by side, and
 * the factorization machine's training speed for information.
 *
 * Workload (fixed seed, generated before any timing): rows of 13 numeric
 * fields, log-transformed (log1p of a heavy-tailed count, 5% missing) at
 * coordinates 0..12, and 26 categorical fields whose values are drawn
 * log-uniformly over Criteo's per-field cardinalities (3 .. 10 million)
 * and hashed into 2^22 coordinates after the numeric ones, which is what
 * rk_fvec_as_sparse produces: ~38.4 nonzeros per row. Labels come from a
 * planted logistic model over the same features (base rate ~25%), so
 * test log loss and AUC say whether the fast path still learns.
 *
 * Measured, single thread: rk_ftrl_train over the training rows (one
 * epoch, given order: best of three fresh models), a plain loop of
 * rk_ftrl_update (no prefetching, for comparison), rk_ftrl_predict over
 * the test rows (latency percentiles over batches of 1,000), and
 * rk_fm_train for one epoch at k = 8. The peer, bench/ftrl_peer.py run by
 * /usr/bin/python3, gets the same rows as a CSR matrix and times
 * SGDClassifier(loss='log_loss').partial_fit (one epoch) and
 * predict_proba. JSON lines on stdout (the peer's passed through), a table
 * on stderr. --smoke: a tiny run of every path (make test); the peer runs
 * then only if it is there, and its absence is not an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rk_rank.h"

#define SEED 20261122u
#define NNUM 13
#define NCAT 26
#define HASH_BITS 22
#define DIM (NNUM + (1u << HASH_BITS))
#define TARGET 2000000.0

/* Criteo (Kaggle) cardinalities of C1..C26. */
static const uint32_t card[NCAT] = {
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683,
    8351593, 3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15,
    286181, 105, 142572};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1p-53; }

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

typedef struct dataset {
    size_t n, nnz;
    rk_sparse *x;
    uint32_t *idx;
    float *val, *y;
} dataset;

/* The planted model's weight of a hashed categorical value: uniform in
 * [-0.6, 0.6], a function of the value only. */
static double cat_weight(uint64_t h)
{
    uint64_t s = h ^ 0xabcdef12345ull;
    return (unit(&s) - 0.5) * 1.2;
}

static int generate(dataset *d, size_t n, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    size_t cap = n * (NNUM + NCAT);
    d->x = malloc(n * sizeof *d->x);
    d->idx = malloc(cap * sizeof *d->idx);
    d->val = malloc(cap * sizeof *d->val);
    d->y = malloc(n * sizeof *d->y);
    if (!d->x || !d->idx || !d->val || !d->y) return -1;
    static const double num_w[NNUM] = {0.15, -0.1, 0.05, -0.08, 0.02, 0.1,
                                       -0.12, 0.07, -0.03, 0.2, -0.05, 0.04,
                                       -0.09};
    uint64_t s = seed;
    size_t o = 0;
    for (size_t r = 0; r < n; r++) {
        size_t start = o;
        double margin = -1.6;
        for (int f = 0; f < NNUM; f++) {
            if (unit(&s) < 0.05) continue;
            /* Counts with a long tail: exp of an exponential. */
            double c = floor(exp(-log(1 - unit(&s)) * (1.0 + f % 4)));
            float v = (float)log1p(c);
            d->idx[o] = (uint32_t)f;
            d->val[o++] = v;
            margin += num_w[f] * (v - 1.5);
        }
        for (int f = 0; f < NCAT; f++) {
            /* Log-uniform rank: frequent values are very frequent, as in
             * the real data. */
            uint64_t v = (uint64_t)exp(unit(&s) * log((double)card[f]));
            uint64_t key[2] = {(uint64_t)f, v};
            uint64_t h = rk_hash64(key, sizeof key, 7);
            d->idx[o] = NNUM + (uint32_t)(h & ((1u << HASH_BITS) - 1));
            d->val[o++] = 1.0f;
            margin += cat_weight(h);
        }
        d->x[r].idx = d->idx + start;
        d->x[r].val = d->val + start;
        d->x[r].n = (uint32_t)(o - start);
        double p = 1 / (1 + exp(-margin));
        d->y[r] = unit(&s) < p ? 1.0f : 0.0f;
    }
    d->n = n;
    d->nnz = o;
    return 0;
}

static void dataset_free(dataset *d)
{
    free(d->x);
    free(d->idx);
    free(d->val);
    free(d->y);
}

/* ---- quality ------------------------------------------------------------------ */

typedef struct scored {
    float p, y;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored *)a)->p, y = ((const scored *)b)->p;
    return (x > y) - (x < y);
}

/* AUC with ties counted half (rank-sum form) and mean log loss. */
static void quality(const float *p, const float *y, size_t n, double *auc,
                    double *ll)
{
    scored *s = malloc(n * sizeof *s);
    double l = 0;
    for (size_t i = 0; i < n; i++) {
        s[i].p = p[i];
        s[i].y = y[i];
        double q = p[i] < 1e-7 ? 1e-7 : p[i] > 1 - 1e-7 ? 1 - 1e-7 : p[i];
        l -= y[i] > 0.5 ? log(q) : log(1 - q);
    }
    qsort(s, n, sizeof *s, cmp_scored);
    double npos = 0, nneg = 0, rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j].p == s[i].p) j++;
        double mid = (double)(i + j + 1) / 2; /* mean 1-based rank */
        for (size_t k = i; k < j; k++)
            if (s[k].y > 0.5) {
                rank_sum += mid;
                npos++;
            } else {
                nneg++;
            }
        i = j;
    }
    *auc = npos && nneg ? (rank_sum - npos * (npos + 1) / 2) / (npos * nneg) : 0.5;
    *ll = n ? l / (double)n : 0;
    free(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double q)
{
    if (!n) return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i];
}

/* ---- results ------------------------------------------------------------------ */

typedef struct row {
    char system[32], phase[24];
    double per_sec, seconds, auc, logloss;
    size_t examples;
} row;

static row rows[16];
static int nrows;

static row *add_row(const char *system, const char *phase)
{
    row *r = &rows[nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->system, sizeof r->system, "%s", system);
    snprintf(r->phase, sizeof r->phase, "%s", phase);
    r->auc = r->logloss = NAN;
    return r;
}

static void emit(const row *r, const char *extra)
{
    printf("{\"bench\":\"ftrl\",\"system\":\"%s\",\"phase\":\"%s\","
           "\"examples\":%zu,\"seconds\":%.4f,\"examples_per_sec\":%.0f",
           r->system, r->phase, r->examples, r->seconds, r->per_sec);
    if (!isnan(r->auc)) printf(",\"test_auc\":%.5f,\"test_logloss\":%.5f", r->auc, r->logloss);
    if (extra && *extra) printf(",%s", extra);
    printf("}\n");
    fflush(stdout);
}

/* ---- rankd runs ----------------------------------------------------------------- */

static rk_sparse_set as_set(const dataset *d)
{
    rk_sparse_set s = {d->x, d->y, NULL, d->n};
    return s;
}

static int bench_ftrl(const dataset *tr, const dataset *te, int reps)
{
    rk_err err = {0};
    rk_ftrl *m = NULL;
    rk_sparse_set s = as_set(tr);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < reps; r++) {
        rk_ftrl_destroy(m);
        m = NULL;
        if (rk_ftrl_create(&m, DIM, NULL, &err)) goto fail;
        double t0 = now(), c0 = cpu_now();
        if (rk_ftrl_train(m, &s, NULL, NULL, &err)) goto fail;
        double t = now() - t0, c = cpu_now() - c0;
        if (t < best) best = t;
        if (c < best_cpu) best_cpu = c;
    }
    row *r = add_row("rankd-ftrl", "train");
    r->examples = tr->n;
    r->seconds = best;
    r->per_sec = (double)tr->n / best;

    /* Quality and prediction speed on the test rows. */
    float *p = malloc(te->n * sizeof *p);
    size_t nb = (te->n + 999) / 1000;
    double *lat = malloc(nb * sizeof *lat);
    double t0 = now();
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * 1000, hi = lo + 1000 < te->n ? lo + 1000 : te->n;
        double tb = now();
        for (size_t i = lo; i < hi; i++)
            if (rk_ftrl_predict(m, &te->x[i], &p[i])) {
                free(p);
                free(lat);
                goto fail;
            }
        lat[b] = (now() - tb) / (double)(hi - lo) * 1e9;
    }
    double tp = now() - t0;
    quality(p, te->y, te->n, &r->auc, &r->logloss);
    char extra[256];
    snprintf(extra, sizeof extra, "\"best_of\":%d,\"cpu_seconds\":%.4f,"
             "\"examples_per_cpu_sec\":%.0f,\"nnz_weights\":%zu,"
             "\"target_per_sec\":%.0f", reps, best_cpu,
             (double)tr->n / best_cpu, rk_ftrl_nnz(m), TARGET);
    emit(r, extra);
    qsort(lat, nb, sizeof *lat, cmp_double);
    row *q = add_row("rankd-ftrl", "predict");
    q->examples = te->n;
    q->seconds = tp;
    q->per_sec = (double)te->n / tp;
    snprintf(extra, sizeof extra, "\"p50_ns\":%.1f,\"p95_ns\":%.1f,"
             "\"p99_ns\":%.1f", pct(lat, nb, 0.5), pct(lat, nb, 0.95),
             pct(lat, nb, 0.99));
    emit(q, extra);
    free(lat);
    free(p);

    /* The same epoch as a loop of single updates: the online path. */
    rk_ftrl_destroy(m);
    m = NULL;
    if (rk_ftrl_create(&m, DIM, NULL, &err)) goto fail;
    t0 = now();
    for (size_t i = 0; i < tr->n; i++)
        if (rk_ftrl_update(m, &tr->x[i], tr->y[i], 1.0f, NULL)) goto fail;
    double tu = now() - t0;
    row *u = add_row("rankd-ftrl", "update-loop");
    u->examples = tr->n;
    u->seconds = tu;
    u->per_sec = (double)tr->n / tu;
    emit(u, NULL);
    rk_ftrl_destroy(m);
    return 0;
fail:
    fprintf(stderr, "ftrl: %s\n", err.msg[0] ? err.msg : "failed");
    rk_ftrl_destroy(m);
    return 1;
}

static int bench_fm(const dataset *tr, const dataset *te)
{
    rk_err err = {0};
    rk_fm *m = NULL;
    rk_fm_params fp;
    rk_fm_params_default(&fp);
    fp.k = 8;
    if (rk_fm_create(&m, DIM, &fp, &err)) goto fail;
    rk_fm_train_opts o;
    rk_fm_train_opts_default(&o);
    o.epochs = 1;
    o.shuffle = 0;
    rk_sparse_set s = as_set(tr);
    double t0 = now();
    if (rk_fm_train(m, &s, NULL, &o, NULL, &err)) goto fail;
    double t = now() - t0;
    row *r = add_row("rankd-fm-k8", "train");
    r->examples = tr->n;
    r->seconds = t;
    r->per_sec = (double)tr->n / t;
    float *p = malloc(te->n * sizeof *p);
    for (size_t i = 0; i < te->n; i++)
        if (rk_fm_predict(m, &te->x[i], &p[i])) {
            free(p);
            goto fail;
        }
    quality(p, te->y, te->n, &r->auc, &r->logloss);
    free(p);
    emit(r, "\"k\":8,\"optimizer\":\"adagrad\"");
    rk_fm_destroy(m);
    return 0;
fail:
    fprintf(stderr, "fm: %s\n", err.msg[0] ? err.msg : "failed");
    rk_fm_destroy(m);
    return 1;
}

/* ---- peer ------------------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const void *p,
                      size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, bytes, f);
    return fclose(f) == 0 && w == bytes ? 0 : -1;
}

/* CSR arrays: indptr (int64, n + 1), indices (int32), data (float32),
 * labels (float32), for the training and the test rows. */
static int export_csr(const char *dir, const char *tag, const dataset *d)
{
    int64_t *ptr = malloc((d->n + 1) * sizeof *ptr);
    if (!ptr) return -1;
    ptr[0] = 0;
    for (size_t i = 0; i < d->n; i++) ptr[i + 1] = ptr[i] + d->x[i].n;
    char name[64];
    int rc = 0;
    snprintf(name, sizeof name, "%s_indptr.i64", tag);
    rc |= write_file(dir, name, ptr, (d->n + 1) * sizeof *ptr);
    /* Rows are contiguous in generation order, so the arrays are too. */
    snprintf(name, sizeof name, "%s_indices.i32", tag);
    rc |= write_file(dir, name, d->idx, d->nnz * 4);
    snprintf(name, sizeof name, "%s_data.f32", tag);
    rc |= write_file(dir, name, d->val, d->nnz * 4);
    snprintf(name, sizeof name, "%s_y.f32", tag);
    rc |= write_file(dir, name, d->y, d->n * 4);
    free(ptr);
    return rc;
}

static const char *find_script(const char *argv0, char *buf, size_t cap)
{
    if (access("bench/ftrl_peer.py", R_OK) == 0) return "bench/ftrl_peer.py";
    const char *sl = strrchr(argv0, '/');
    if (sl) {
        snprintf(buf, cap, "%.*s/../../bench/ftrl_peer.py", (int)(sl - argv0), argv0);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

/* Runs the peer and turns its JSON lines into table rows. */
static void run_peer(const char *script, const char *dir, const dataset *tr,
                     const dataset *te)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "ftrl: /usr/bin/python3 not found: peer skipped\n");
        return;
    }
    if (export_csr(dir, "train", tr) || export_csr(dir, "test", te)) {
        fprintf(stderr, "ftrl: cannot write the peer's data to %s\n", dir);
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --dir '%s' --n %zu --nnz %zu --ntest %zu "
             "--nnz-test %zu --dim %u",
             script, dir, tr->n, tr->nnz, te->n, te->nnz, DIM);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "ftrl: cannot run the peer\n");
        return;
    }
    char line[4096];
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        fflush(stdout);
        if (!strstr(line, "\"system\"")) continue;
        char sys[32] = "", phase[24] = "";
        const char *a = strstr(line, "\"system\":\""), *b = strstr(line, "\"phase\":\"");
        if (a) sscanf(a + 10, "%31[^\"]", sys);
        if (b) sscanf(b + 9, "%23[^\"]", phase);
        if (!sys[0] || strcmp(phase, "skipped") == 0) continue;
        row *r = add_row(sys, phase);
        const char *c;
        if ((c = strstr(line, "\"examples_per_sec\":"))) r->per_sec = atof(c + 19);
        if ((c = strstr(line, "\"seconds\":"))) r->seconds = atof(c + 10);
        if ((c = strstr(line, "\"examples\":"))) r->examples = (size_t)atoll(c + 11);
        if ((c = strstr(line, "\"test_auc\":"))) r->auc = atof(c + 11);
        if ((c = strstr(line, "\"test_logloss\":"))) r->logloss = atof(c + 15);
    }
    int st = pclose(p);
    if (st != 0) fprintf(stderr, "ftrl: the peer exited with status %d\n", st);
}

static void rm_dir(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "ftrl: cannot remove %s\n", dir);
}

static const row *find_row(const char *sys, const char *phase)
{
    for (int i = 0; i < nrows; i++)
        if (strcmp(rows[i].system, sys) == 0 && strcmp(rows[i].phase, phase) == 0)
            return &rows[i];
    return NULL;
}

static void table(int smoke)
{
    fprintf(stderr, "\n%-22s %-12s %10s %9s %14s %8s %9s\n", "system", "phase",
            "examples", "seconds", "examples/s", "AUC", "logloss");
    for (int i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        fprintf(stderr, "%-22s %-12s %10zu %9.3f %14.0f", r->system, r->phase,
                r->examples, r->seconds, r->per_sec);
        if (!isnan(r->auc)) fprintf(stderr, " %8.4f %9.5f", r->auc, r->logloss);
        fputc('\n', stderr);
    }
    const row *ft = find_row("rankd-ftrl", "train"), *fp = find_row("rankd-ftrl", "predict");
    const row *st = find_row("sklearn-sgd", "train"), *sp = find_row("sklearn-sgd", "predict");
    if (ft && st && st->per_sec > 0)
        fprintf(stderr, "train   rankd-ftrl / sklearn-sgd: %.1fx\n", ft->per_sec / st->per_sec);
    if (fp && sp && sp->per_sec > 0)
        fprintf(stderr, "predict rankd-ftrl / sklearn-sgd: %.1fx\n", fp->per_sec / sp->per_sec);
    if (ft)
        fprintf(stderr, "FTRL training %.2fM examples/s on one core, target %.1fM: %s\n",
                ft->per_sec / 1e6, TARGET / 1e6,
                smoke ? "smoke run, not judged" : ft->per_sec >= TARGET ? "target met" : "target MISSED");
}

int main(int argc, char **argv)
{
    int smoke = 0, peer = 1, fm = 1;
    size_t ntrain = 2000000, ntest = 200000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) smoke = 1;
        else if (strcmp(argv[i], "--no-peer") == 0) peer = 0;
        else if (strcmp(argv[i], "--no-fm") == 0) fm = 0;
        else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc) ntrain = (size_t)atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--smoke] [--rows N] [--no-peer] [--no-fm]\n", argv[0]);
            return 2;
        }
    }
    if (smoke) {
        ntrain = 20000;
        ntest = 5000;
    }
    if (ntrain < 1) ntrain = 1;
    dataset tr, te;
    double t0 = now();
    if (generate(&tr, ntrain, SEED) || generate(&te, ntest, SEED + 1)) {
        fprintf(stderr, "ftrl: out of memory generating the rows\n");
        return 1;
    }
    fprintf(stderr, "ftrl: %zu training rows, %zu test rows, %.1f nonzeros per row, "
            "dim %u (generated in %.1fs)\n", tr.n, te.n, (double)tr.nnz / (double)tr.n,
            DIM, now() - t0);
    int rc = bench_ftrl(&tr, &te, smoke ? 1 : 3);
    if (!rc && fm) rc = bench_fm(&tr, &te);
    if (!rc && peer) {
        char buf[1024];
        const char *script = find_script(argv[0], buf, sizeof buf);
        char dir[] = "/tmp/rk-ftrl-bench-XXXXXX";
        const char *tmp = getenv("TMPDIR");
        char tdir[1024];
        snprintf(tdir, sizeof tdir, "%s/rk-ftrl-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        char *d = mkdtemp(tmp && *tmp ? tdir : dir);
        if (!script) fprintf(stderr, "ftrl: bench/ftrl_peer.py not found: peer skipped\n");
        else if (!d) fprintf(stderr, "ftrl: cannot make a temporary directory: peer skipped\n");
        else run_peer(script, d, &tr, &te);
        if (d) rm_dir(d);
    }
    table(smoke);
    dataset_free(&tr);
    dataset_free(&te);
    return rc;
}
