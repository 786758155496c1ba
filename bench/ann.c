/*
 * ann.c — the HNSW index against Faiss (IndexHNSWFlat, inner product) and
 * hnswlib (space 'ip') on the same vectors, side by side in one run.
 *
 * Data sets:
 *  - synthetic: --n vectors (default 1,000,000) of --dim (64) drawn around
 *    --clusters (1000) Gaussian centres (centre ~ N(0, I), point = centre
 *    + --spread (1.0) N(0, I): clusters that overlap, so recall@10 = 0.95
 *    needs an efSearch inside 16..512), plus --nq (10,000) queries from
 *    the same mixture, fixed seed;
 *  - learned item factors: iALS (rk_ials_train, k = 64) on MovieLens
 *    latest-small from the shared data directory; items are the base,
 *    users the queries. Skipped with a message when the data is absent.
 * Exact top-10 ground truth comes from rankd's flat index (SGEMM).
 *
 * For each data set: rankd HNSW float32 and int8 are built with --threads
 * threads (M, efConstruction as given) and searched single-threaded at
 * every efSearch of the list; the int8 index keeps float copies, so it is
 * searched twice, with the float re-rank off ("rankd-int8", whose memory
 * is reported without the copies: the graph is built from the codes and is
 * the same as an index built without them) and on ("rankd-int8-rerank");
 * then
 * bench/ann_peers.py (run with /usr/bin/python3, Debian's python3-faiss
 * and python3-hnswlib) builds and searches the peers with the same
 * parameters and thread counts on the vectors written to $TMPDIR. Results:
 * JSON lines on stdout (the peers' lines passed through), a table on
 * stderr with QPS at recall@10 = 0.95 (log-linear interpolation between
 * ef points), build time and memory per system, and the int8/float memory
 * ratio. See bench/README.md.
 */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rk_retrieval.h"

#define K 10
#define SEED 20261122u
#define MAX_EF 32
#define MAX_SYS 8
#define TARGET 0.95

/* ---- data ------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 0.5) * 0x1p-53; }

static float gauss(uint64_t *s)
{
    return (float)(sqrt(-2 * log(unit(s))) * cos(6.283185307179586 * unit(s)));
}

typedef struct dataset {
    const char *name;
    size_t n, nq, dim;
    float *base, *queries;
    uint32_t *gt; /* nq * K */
} dataset;

/* Points of a Gaussian mixture: uniform centre, then centre + spread N(0, I). */
static void mixture(float *out, size_t n, size_t dim, const float *centres,
                    size_t nc, float spread, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (splitmix(&s) % nc) * dim;
        for (size_t j = 0; j < dim; j++) out[i * dim + j] = c[j] + spread * gauss(&s);
    }
}

static int make_synthetic(dataset *d, size_t n, size_t nq, size_t dim,
                          size_t nc, float spread)
{
    uint64_t s = SEED;
    float *c = malloc(nc * dim * sizeof *c);
    d->name = "synthetic";
    d->n = n;
    d->nq = nq;
    d->dim = dim;
    d->base = malloc(n * dim * sizeof *d->base);
    d->queries = malloc(nq * dim * sizeof *d->queries);
    if (!c || !d->base || !d->queries) {
        free(c);
        return -1;
    }
    for (size_t i = 0; i < nc * dim; i++) c[i] = gauss(&s);
    mixture(d->base, n, dim, c, nc, spread, SEED + 1);
    mixture(d->queries, nq, dim, c, nc, spread, SEED + 2);
    free(c);
    return 0;
}

static const char *shared_data(void)
{
    static const char *c[] = {"../shared/data", "../../shared/data", NULL};
    const char *env = getenv("RK_SHARED_DATA");
    struct stat st;
    if (env && stat(env, &st) == 0) return env;
    for (int i = 0; c[i]; i++)
        if (stat(c[i], &st) == 0) return c[i];
    return NULL;
}

/* iALS factors of MovieLens latest-small: ratings >= 3.5 as implicit
 * positives; items are the base, users the queries. */
static int make_factors(dataset *d, size_t dim, int smoke)
{
    const char *root = shared_data();
    char path[PATH_MAX];
    if (!root) return 1;
    snprintf(path, sizeof path, "%s/movielens-latest-small-2016/ratings.csv", root);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t cap = 1 << 17, n = 0;
    uint32_t *u = malloc(cap * 4), *it = malloc(cap * 4);
    float *w = malloc(cap * 4);
    char line[256];
    uint32_t nu = 0, ni = 0;
    /* Movie ids are sparse (up to ~160k): map them to dense ids. */
    uint32_t *dense = calloc(1 << 20, 4);
    int ok = u && it && w && dense && fgets(line, sizeof line, f) != NULL;
    while (ok && fgets(line, sizeof line, f)) {
        unsigned uid, mid;
        double r;
        if (sscanf(line, "%u,%u,%lf", &uid, &mid, &r) != 3 || mid >= (1u << 20))
            continue;
        if (r < 3.5) continue;
        if (!dense[mid]) dense[mid] = ++ni;
        if (n == cap) {
            cap *= 2;
            u = realloc(u, cap * 4);
            it = realloc(it, cap * 4);
            w = realloc(w, cap * 4);
            if (!u || !it || !w) ok = 0;
            if (!ok) break;
        }
        u[n] = uid - 1;
        it[n] = dense[mid] - 1;
        w[n] = 1;
        if (uid > nu) nu = uid;
        n++;
    }
    fclose(f);
    rk_interactions *m = NULL;
    rk_ials_model *model = NULL;
    rk_err err = {0};
    int rc = -1;
    if (ok && rk_interactions_from_triplets(&m, nu, ni, u, it, w, NULL, n, &err) == 0) {
        rk_ials_opts o;
        rk_ials_opts_default(&o);
        o.factors = (uint32_t)dim;
        o.iterations = smoke ? 2 : 15;
        o.threads = 2;
        if (rk_ials_train(m, &o, &model, &err) == 0) {
            d->name = "ml-latest-small-ials";
            d->dim = dim;
            d->n = rk_ials_nitems(model);
            d->nq = rk_ials_nusers(model);
            d->base = malloc(d->n * dim * sizeof(float));
            d->queries = malloc(d->nq * dim * sizeof(float));
            if (d->base && d->queries) {
                memcpy(d->base, rk_ials_item_factors(model), d->n * dim * sizeof(float));
                memcpy(d->queries, rk_ials_user_factors(model), d->nq * dim * sizeof(float));
                rc = 0;
            }
        }
    }
    if (rc && err.code) fprintf(stderr, "ann: factors: %s\n", rk_err_msg(&err));
    rk_ials_free(model);
    rk_interactions_free(m);
    free(u);
    free(it);
    free(w);
    free(dense);
    return rc;
}

static void dataset_free(dataset *d)
{
    free(d->base);
    free(d->queries);
    free(d->gt);
    memset(d, 0, sizeof *d);
}

/* Exact top-K with the flat index. */
static int ground_truth(dataset *d, double *sec)
{
    rk_ann_params p;
    rk_ann_params_default(&p);
    p.type = RK_ANN_FLAT;
    p.dim = (uint32_t)d->dim;
    p.max_elements = (uint32_t)d->n;
    rk_ann *f = NULL;
    rk_err err = {0};
    uint32_t *lab = malloc(d->n * sizeof *lab), *cnt = malloc(d->nq * sizeof *cnt);
    d->gt = malloc(d->nq * K * sizeof *d->gt);
    int rc = lab && cnt && d->gt ? 0 : RK_ENOMEM;
    for (size_t i = 0; rc == 0 && i < d->n; i++) lab[i] = (uint32_t)i;
    uint64_t t0 = rk_clock_mono_ns();
    if (rc == 0) rc = rk_ann_create(&f, &p, &err);
    if (rc == 0) rc = rk_ann_add_batch(f, lab, d->base, d->n, NULL, &err);
    if (rc == 0)
        rc = rk_ann_search_batch(f, d->queries, d->nq, K, 0, d->gt, NULL, cnt, NULL);
    *sec = (double)(rk_clock_mono_ns() - t0) / 1e9;
    for (size_t i = 0; rc == 0 && i < d->nq; i++)
        if (cnt[i] != K) rc = RK_EINTERNAL;
    if (rc) fprintf(stderr, "ann: ground truth: %s\n", err.code ? rk_err_msg(&err) : rk_strerror(rc));
    rk_ann_destroy(f);
    free(lab);
    free(cnt);
    return rc;
}

/* ---- measurements ------------------------------------------------------------ */

typedef struct curve {
    char name[32];
    int ran, skipped;
    double build_sec, mem_bytes, rss_bytes;
    int threads;
    int n;
    uint32_t ef[MAX_EF];
    double qps[MAX_EF], recall[MAX_EF], p50[MAX_EF], p99[MAX_EF];
} curve;

static double rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double recall_of(const dataset *d, const uint32_t *lab, const uint32_t *cnt)
{
    size_t hit = 0;
    for (size_t i = 0; i < d->nq; i++)
        for (uint32_t a = 0; a < K; a++)
            for (uint32_t b = 0; b < cnt[i]; b++)
                if (d->gt[i * K + a] == lab[i * K + b]) {
                    hit++;
                    break;
                }
    return (double)hit / (double)(d->nq * K);
}

/* QPS at recall TARGET, log-linear between the two ef points around it.
 * *how: 0 interpolated, 1 the first point is already above (its QPS is a
 * lower bound), -1 never reached. */
static double qps_at_target(const curve *c, int *how)
{
    *how = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->recall[i] < TARGET) continue;
        if (i == 0) {
            *how = 1;
            return c->qps[0];
        }
        double r0 = c->recall[i - 1], r1 = c->recall[i];
        double t = r1 > r0 ? (TARGET - r0) / (r1 - r0) : 1;
        *how = 0;
        return exp(log(c->qps[i - 1]) + t * (log(c->qps[i]) - log(c->qps[i - 1])));
    }
    return 0;
}

static void json_build(const dataset *d, const curve *c, uint32_t M, uint32_t efc,
                       const char *kern)
{
    printf("{\"bench\":\"ann\",\"data\":\"%s\",\"system\":\"%s\",\"phase\":"
           "\"build\",\"n\":%zu,\"dim\":%zu,\"M\":%u,\"efc\":%u,\"threads\":%d,"
           "\"build_sec\":%.3f,\"memory_bytes\":%.0f,\"rss_delta_bytes\":%.0f,"
           "\"kernels\":\"%s\"}\n",
           d->name, c->name, d->n, d->dim, M, efc, c->threads, c->build_sec,
           c->mem_bytes, c->rss_bytes, kern);
    fflush(stdout);
}

typedef struct variant {
    const char *name, *name2; /* name2: the same index with re-rank off */
    rk_ann_quant quant;
    int rerank;
} variant;

static int search_curve(const dataset *d, rk_ann *a, const uint32_t *efs, int nef,
                        curve *c, uint32_t *res, uint32_t *cnt, uint64_t *lat)
{
    int rc = 0;
    for (int e = 0; e < nef && rc == 0; e++) {
        uint64_t s0 = rk_clock_mono_ns();
        for (size_t i = 0; i < d->nq && rc == 0; i++) {
            uint64_t q0 = rk_clock_mono_ns();
            rc = rk_ann_search(a, d->queries + i * d->dim, K, efs[e], res + i * K,
                               NULL, cnt + i);
            lat[i] = rk_clock_mono_ns() - q0;
        }
        double sec = (double)(rk_clock_mono_ns() - s0) / 1e9;
        if (rc) break;
        qsort(lat, d->nq, sizeof *lat, cmp_u64);
        int k = c->n++;
        c->ef[k] = efs[e];
        c->qps[k] = (double)d->nq / sec;
        c->recall[k] = recall_of(d, res, cnt);
        c->p50[k] = (double)lat[d->nq / 2] / 1e3;
        c->p99[k] = (double)lat[(size_t)((double)d->nq * 0.99)] / 1e3;
        printf("{\"bench\":\"ann\",\"data\":\"%s\",\"system\":\"%s\",\"phase\":"
               "\"search\",\"ef\":%u,\"k\":%d,\"queries\":%zu,\"qps\":%.1f,"
               "\"recall\":%.5f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
               d->name, c->name, efs[e], K, d->nq, c->qps[k], c->recall[k],
               c->p50[k], c->p99[k]);
        fflush(stdout);
    }
    c->ran = rc == 0;
    return rc;
}

/* Builds one rankd index and measures it into c (and c2 for name2). */
static int run_rankd(const dataset *d, const variant *v, uint32_t M, uint32_t efc,
                     int threads, const uint32_t *efs, int nef, curve *c, curve *c2)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", v->name);
    c->threads = threads;
    rk_ann_params p;
    rk_ann_params_default(&p);
    p.dim = (uint32_t)d->dim;
    p.M = M;
    p.ef_construction = efc;
    p.quant = v->quant;
    p.rerank = v->rerank;
    p.max_elements = (uint32_t)d->n;
    rk_ann *a = NULL;
    rk_pool *pool = NULL;
    rk_err err = {0};
    uint32_t *lab = malloc(d->n * sizeof *lab);
    uint32_t *res = malloc(d->nq * K * sizeof *res), *cnt = malloc(d->nq * sizeof *cnt);
    uint64_t *lat = malloc(d->nq * sizeof *lat);
    int rc = lab && res && cnt && lat ? 0 : RK_ENOMEM;
    for (size_t i = 0; rc == 0 && i < d->n; i++) lab[i] = (uint32_t)i;
    /* threads in total: the pool's workers plus the calling thread. */
    if (rc == 0 && threads > 1) rc = rk_pool_create(&pool, (unsigned)threads - 1, 0);
    double rss0 = rss_now();
    uint64_t t0 = rk_clock_mono_ns();
    if (rc == 0) rc = rk_ann_create(&a, &p, &err);
    if (rc == 0) rc = rk_ann_add_batch(a, lab, d->base, d->n, pool, &err);
    c->build_sec = (double)(rk_clock_mono_ns() - t0) / 1e9;
    if (rc) {
        fprintf(stderr, "ann: %s: build: %s\n", v->name,
                err.code ? rk_err_msg(&err) : rk_strerror(rc));
        goto out;
    }
    c->rss_bytes = rss_now() - rss0;
    c->mem_bytes = (double)rk_ann_memory_bytes(a);
    if (v->name2) {
        /* The same graph without the float copies (see the file comment). */
        *c2 = *c;
        snprintf(c2->name, sizeof c2->name, "%s", v->name2);
        c2->mem_bytes -= (double)d->n * (double)d->dim * sizeof(float);
        c2->rss_bytes = 0;
        json_build(d, c2, M, efc, rk_ann_kernels(a));
        rk_ann_set_rerank(a, 0);
        rc = search_curve(d, a, efs, nef, c2, res, cnt, lat);
        rk_ann_set_rerank(a, 1);
    }
    json_build(d, c, M, efc, rk_ann_kernels(a));
    if (rc == 0) rc = search_curve(d, a, efs, nef, c, res, cnt, lat);
out:
    rk_ann_destroy(a);
    rk_pool_destroy(pool);
    free(lab);
    free(res);
    free(cnt);
    free(lat);
    return rc;
}

/* ---- peers ------------------------------------------------------------------- */

static int write_raw(const char *dir, const char *name, const void *p, size_t n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static curve *curve_by_name(curve *cs, int *ncs, const char *name)
{
    for (int i = 0; i < *ncs; i++)
        if (strcmp(cs[i].name, name) == 0) return &cs[i];
    if (*ncs == MAX_SYS) return NULL;
    curve *c = &cs[(*ncs)++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

/* Runs the Python peers, passing their JSON through and collecting curves. */
static void run_peers(const char *script, const char *dir, const dataset *d,
                      uint32_t M, uint32_t efc, int threads, const uint32_t *efs,
                      int nef, curve *cs, int *ncs)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "ann: /usr/bin/python3 not found: peers skipped\n");
        return;
    }
    char eflist[MAX_EF * 8] = "", cmd[PATH_MAX * 3];
    for (int i = 0; i < nef; i++)
        snprintf(eflist + strlen(eflist), sizeof eflist - strlen(eflist), "%s%u",
                 i ? "," : "", efs[i]);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --dir '%s' --n %zu --nq %zu --dim %zu --M %u "
             "--efc %u --threads %d --efs %s --data %s",
             script, dir, d->n, d->nq, d->dim, M, efc, threads, eflist, d->name);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "ann: cannot run %s: %s\n", script, strerror(errno));
        return;
    }
    char line[4096];
    while (fgets(line, sizeof line, p)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) {
            fprintf(stderr, "ann_peers: %s", line);
            continue;
        }
        fputs(line, stdout);
        fflush(stdout);
        const char *sys = json_string_value(json_object_get(o, "system"));
        const char *ph = json_string_value(json_object_get(o, "phase"));
        curve *c = sys && ph ? curve_by_name(cs, ncs, sys) : NULL;
        if (c && strcmp(ph, "build") == 0) {
            c->build_sec = json_number_value(json_object_get(o, "build_sec"));
            c->rss_bytes = json_number_value(json_object_get(o, "rss_delta_bytes"));
            c->threads = (int)json_integer_value(json_object_get(o, "threads"));
            c->ran = 1;
        } else if (c && strcmp(ph, "search") == 0 && c->n < MAX_EF) {
            int k = c->n++;
            c->ef[k] = (uint32_t)json_integer_value(json_object_get(o, "ef"));
            c->qps[k] = json_number_value(json_object_get(o, "qps"));
            c->recall[k] = json_number_value(json_object_get(o, "recall"));
        } else if (c && strcmp(ph, "skipped") == 0) {
            c->skipped = 1;
        }
        json_decref(o);
    }
    int st = pclose(p);
    if (st != 0) fprintf(stderr, "ann: %s exited with status %d\n", script, st);
}

/* ---- report ------------------------------------------------------------------ */

static const char *fmt_mb(char *b, size_t n, double bytes)
{
    if (bytes > 0) snprintf(b, n, "%.1f", bytes / 1048576.0);
    else snprintf(b, n, "-");
    return b;
}

static void report(const dataset *d, curve *cs, int ncs, double gt_sec, int smoke)
{
    fprintf(stderr, "\nann: %s, n=%zu dim=%zu queries=%zu, recall@%d against exact "
            "(flat index, %.1f s); QPS single-thread\n", d->name, d->n, d->dim,
            d->nq, K, gt_sec);
    fprintf(stderr, "%-18s %6s %9s %8s", "system", "build", "memMB", "rssMB");
    int nef = 0;
    for (int i = 0; i < ncs; i++)
        if (cs[i].n > nef) nef = cs[i].n;
    const curve *ref = NULL;
    for (int i = 0; i < ncs; i++)
        if (cs[i].n == nef) ref = &cs[i];
    for (int e = 0; ref && e < nef; e++) fprintf(stderr, " %13s", "");
    fprintf(stderr, "\n%-18s %6s %9s %8s", "", "sec", "", "");
    for (int e = 0; ref && e < nef; e++) {
        char h[24];
        snprintf(h, sizeof h, "ef=%u", ref->ef[e]);
        fprintf(stderr, " %13s", h);
    }
    fprintf(stderr, " %14s\n", "QPS@0.95");
    double best_peer = 0;
    for (int i = 0; i < ncs; i++) {
        const curve *c = &cs[i];
        char b1[32], b2[32];
        if (c->skipped || !c->ran) {
            fprintf(stderr, "%-18s skipped\n", c->name);
            continue;
        }
        fprintf(stderr, "%-18s %6.1f %9s %8s", c->name, c->build_sec,
                fmt_mb(b1, sizeof b1, c->mem_bytes), fmt_mb(b2, sizeof b2, c->rss_bytes));
        for (int e = 0; e < nef; e++) {
            if (e < c->n) {
                char cell[32];
                snprintf(cell, sizeof cell, "%.0f/%.3f", c->qps[e], c->recall[e]);
                fprintf(stderr, " %13s", cell);
            } else {
                fprintf(stderr, " %13s", "-");
            }
        }
        int how;
        double q = qps_at_target(c, &how);
        char qs[32];
        if (how < 0) snprintf(qs, sizeof qs, "not reached");
        else snprintf(qs, sizeof qs, "%s%.0f", how ? ">=" : "", q);
        fprintf(stderr, " %14s\n", qs);
        if (strncmp(c->name, "rankd", 5) != 0 && how >= 0 && q > best_peer) best_peer = q;
        printf("{\"bench\":\"ann\",\"data\":\"%s\",\"system\":\"%s\",\"phase\":"
               "\"at_recall\",\"target_recall\":%.2f,\"qps\":%.1f,\"how\":\"%s\"}\n",
               d->name, c->name, TARGET, how < 0 ? 0.0 : q,
               how < 0 ? "not_reached" : how ? "lower_bound" : "interpolated");
    }
    fprintf(stderr, "(cells: QPS/recall@%d; memMB: rk_ann_memory_bytes; rssMB: "
            "resident growth during the build)\n", K);
    const curve *f32 = NULL, *i8 = NULL;
    for (int i = 0; i < ncs; i++) {
        if (strcmp(cs[i].name, "rankd-f32") == 0 && cs[i].ran) f32 = &cs[i];
        if (strcmp(cs[i].name, "rankd-int8") == 0 && cs[i].ran) i8 = &cs[i];
    }
    if (f32 && i8) {
        double vec_f = (double)d->n * d->dim * 4, vec_i = (double)d->n * (d->dim + 4);
        fprintf(stderr, "int8/float memory: index %.1f%%, vector storage %.1f%% "
                "(target <= 30%%)\n", 100 * i8->mem_bytes / f32->mem_bytes,
                100 * vec_i / vec_f);
        printf("{\"bench\":\"ann\",\"data\":\"%s\",\"phase\":\"int8_memory\","
               "\"index_ratio\":%.4f,\"vector_ratio\":%.4f}\n", d->name,
               i8->mem_bytes / f32->mem_bytes, vec_i / vec_f);
    }
    if (f32 && best_peer > 0) {
        int how;
        double q = qps_at_target(f32, &how);
        fprintf(stderr, "rankd-f32 vs best peer at recall %.2f: %.2fx (%s)\n", TARGET,
                how >= 0 ? q / best_peer : 0.0,
                smoke ? "not judged on a smoke run"
                : how >= 0 && q >= best_peer ? "target met" : "target MISSED");
    }
    fflush(stdout);
}

/* ---- main -------------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP) rmdir(p);
    else unlink(p);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ann [--smoke] [--n N] [--nq N] [--dim D] [--clusters C] [--spread S]\n"
            "           [--M M] [--efc EF] [--threads T] [--ef 16,32,...]\n"
            "           [--no-peers] [--no-factors] [--peers-script PATH]\n"
            "  --n N         base vectors (default 1000000)\n"
            "  --nq N        queries (default 10000)\n"
            "  --threads T   build threads for every system (default 2)\n"
            "  --ef LIST     efSearch values (default 16,24,32,48,64,96,128,192,256,384,512)\n"
            "  --smoke       tiny sizes, every code path (make test)\n");
}

static int parse_efs(const char *s, uint32_t *efs, int *nef)
{
    *nef = 0;
    while (*s && *nef < MAX_EF) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > RK_ANN_MAX_EF) return -1;
        efs[(*nef)++] = (uint32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *nef ? 0 : -1;
}

static const char *find_script(const char *argv0, char *buf, size_t cap)
{
    if (access("bench/ann_peers.py", R_OK) == 0) return "bench/ann_peers.py";
    /* build/bench/ann -> ../../bench/ann_peers.py */
    const char *sl = strrchr(argv0, '/');
    if (sl) {
        snprintf(buf, cap, "%.*s/../../bench/ann_peers.py", (int)(sl - argv0), argv0);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

static int run_dataset(dataset *d, const char *root, const char *script,
                       uint32_t M, uint32_t efc, int threads, const uint32_t *efs,
                       int nef, int peers, int smoke)
{
    double gt_sec = 0;
    if (ground_truth(d, &gt_sec) != 0) return -1;
    fprintf(stderr, "ann: %s: %zu x %zu base, %zu queries, ground truth in %.1f s\n",
            d->name, d->n, d->dim, d->nq, gt_sec);
    static const variant vs[] = {{"rankd-f32", NULL, RK_ANN_F32, 0},
                                 {"rankd-int8-rerank", "rankd-int8", RK_ANN_INT8, 1}};
    curve cs[MAX_SYS];
    int ncs = 0, failed = 0;
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
        curve *c2 = vs[i].name2 ? &cs[ncs++] : NULL, *c = &cs[ncs++];
        if (run_rankd(d, &vs[i], M, efc, threads, efs, nef, c, c2) != 0) failed = 1;
    }
    if (peers && script) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", root, d->name);
        mkdir(dir, 0700);
        if (write_raw(dir, "base.f32", d->base, d->n * d->dim * 4) ||
            write_raw(dir, "queries.f32", d->queries, d->nq * d->dim * 4) ||
            write_raw(dir, "gt.u32", d->gt, d->nq * K * 4)) {
            fprintf(stderr, "ann: cannot write vectors under %s: %s\n", dir,
                    strerror(errno));
            failed = 1;
        } else {
            run_peers(script, dir, d, M, efc, threads, efs, nef, cs, &ncs);
        }
    } else if (peers) {
        fprintf(stderr, "ann: bench/ann_peers.py not found: peers skipped\n");
    }
    report(d, cs, ncs, gt_sec, smoke);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    size_t n = 1000000, nq = 10000, dim = 64, clusters = 1000;
    float spread = 1.0f;
    uint32_t M = 16, efc = 200;
    int threads = 2, smoke = 0, peers = 1, factors = 1;
    uint32_t efs[MAX_EF] = {16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
    int nef = 11;
    const char *script_opt = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--smoke") == 0) smoke = 1;
        else if (strcmp(a, "--no-peers") == 0) peers = 0;
        else if (strcmp(a, "--no-factors") == 0) factors = 0;
        else if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (v && strcmp(a, "--n") == 0) n = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--nq") == 0) nq = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--dim") == 0) dim = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--clusters") == 0) clusters = strtoull(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--spread") == 0) spread = strtof(argv[++i], NULL);
        else if (v && strcmp(a, "--M") == 0) M = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--efc") == 0) efc = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (v && strcmp(a, "--threads") == 0) threads = atoi(argv[++i]);
        else if (v && strcmp(a, "--peers-script") == 0) script_opt = argv[++i];
        else if (v && strcmp(a, "--ef") == 0) {
            if (parse_efs(argv[++i], efs, &nef) != 0) {
                usage(stderr);
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (smoke) {
        n = 3000;
        nq = 200;
        dim = 16;
        clusters = 30;
        efc = 64;
        nef = 3;
        efs[0] = 16;
        efs[1] = 32;
        efs[2] = 64;
    }
    if (n < K || nq == 0 || dim == 0 || dim > RK_ANN_MAX_DIM || clusters == 0 ||
        !(spread >= 0) ||
        threads < 1 || n > RK_ANN_MAX_ELEMENTS) {
        usage(stderr);
        return 2;
    }
    char sbuf[PATH_MAX];
    const char *script = script_opt ? script_opt : find_script(argv[0], sbuf, sizeof sbuf);
    const char *tmp = getenv("TMPDIR");
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/rankd-ann-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "ann: mkdtemp %s: %s\n", root, strerror(errno));
        return 1;
    }
    int failed = 0;
    dataset d = {0};
    uint64_t g0 = rk_clock_mono_ns();
    if (make_synthetic(&d, n, nq, dim, clusters, spread) != 0) {
        fprintf(stderr, "ann: out of memory generating the data\n");
        failed = 1;
    } else {
        fprintf(stderr, "ann: generated %zu + %zu vectors of dim %zu around %zu "
                "clusters (spread %.2f) in %.1f s (not timed)\n", n, nq, dim,
                clusters, spread, (double)(rk_clock_mono_ns() - g0) / 1e9);
        if (run_dataset(&d, root, script, M, efc, threads, efs, nef, peers, smoke))
            failed = 1;
    }
    dataset_free(&d);
    if (factors && !failed) {
        int rc = make_factors(&d, smoke ? 16 : 64, smoke);
        if (rc > 0) {
            fprintf(stderr, "ann: learned factors skipped: movielens-latest-small-2016 "
                    "not found under the shared data directory\n");
        } else if (rc < 0) {
            failed = 1;
        } else if (run_dataset(&d, root, script, M, efc, threads, efs, nef, peers, smoke)) {
            failed = 1;
        }
        dataset_free(&d);
    }
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    fprintf(stderr, "ann: total %.0f s\n", (double)(rk_clock_mono_ns() - g0) / 1e9);
    if (failed) fprintf(stderr, "ann: FAILED\n");
    return failed ? 1 : 0;
}
