/*
 * gbdt_test.c — GBDT training through XGBoost, rankd's evaluator
 * (src/rank/gbdt*.c) and its kernels, the saved format and the loader's
 * validation.
 *
 * The reference for predictions is XGBoost itself: every model, trained
 * here or written by hand, is loaded back into an XGBoost booster from the
 * JSON rankd keeps, and both predict the same rows: random values with
 * about 20% missing, plus values equal to the model's own thresholds (the
 * "<" boundary). The kernels must agree with the reference kernel exactly.
 *
 * Set RK_GBDT_WRITE_CORPUS=dir to write the fuzz seeds (fuzz_seeds case).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <xgboost/c_api.h>

#include "rank/rank_int.h"
#include "rk_rank.h"
#include "test.h"

/* ---- fixtures ----------------------------------------------------------------- */

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) { return (double)(rng(s) >> 11) * 0x1p-53; }

/* nrows x ncols in [-2, 2), a fraction `miss` of them NaN. */
static float *random_matrix(size_t nrows, size_t ncols, double miss, uint64_t seed)
{
    float *x = malloc(nrows * ncols * sizeof *x);
    uint64_t s = seed;
    for (size_t i = 0; i < nrows * ncols; i++)
        x[i] = unif(&s) < miss ? NAN : (float)(unif(&s) * 4 - 2);
    return x;
}

static float nz(float v) { return isnan(v) ? 0.0f : v; }

/* A planted signal with interactions; missing values carry information
 * (feature 3 missing pushes up), as they do in real logs. */
static double signal(const float *row, size_t ncols)
{
    float r[7];
    for (size_t j = 0; j < 7; j++) r[j] = j < ncols ? row[j] : 0.0f;
    return 1.2 * nz(r[0]) - 0.8 * nz(r[1]) + (nz(r[2]) > 0.5 ? 1.0 : -0.3) * nz(r[4]) +
           (isnan(r[3]) ? 0.9 : 0.0) + 0.5 * nz(r[5]) * nz(r[6]);
}

typedef struct dataset {
    float *x, *y, *w;
    uint32_t *groups;
    size_t nrows, ncols, ngroups;
} dataset;

static void dataset_free(dataset *d)
{
    free(d->x);
    free(d->y);
    free(d->w);
    free(d->groups);
    memset(d, 0, sizeof *d);
}

/* Binary labels from the signal plus logistic noise. */
static dataset make_binary(size_t nrows, size_t ncols, uint64_t seed)
{
    dataset d = {0};
    d.nrows = nrows;
    d.ncols = ncols;
    d.x = random_matrix(nrows, ncols, 0.2, seed);
    d.y = malloc(nrows * sizeof *d.y);
    uint64_t s = seed ^ 0xabcdef;
    for (size_t i = 0; i < nrows; i++) {
        double p = 1 / (1 + exp(-2 * signal(d.x + i * ncols, ncols)));
        d.y[i] = unif(&s) < p ? 1.0f : 0.0f;
    }
    return d;
}

/* Query groups of 5..20 rows with relevance 0..3 from the signal. */
static dataset make_rank(size_t nrows, size_t ncols, uint64_t seed)
{
    dataset d = make_binary(nrows, ncols, seed);
    uint64_t s = seed ^ 0x5eed;
    d.groups = malloc(nrows * sizeof *d.groups);
    size_t left = nrows;
    while (left) {
        uint32_t g = 5 + (uint32_t)(rng(&s) % 16);
        if (g > left) g = (uint32_t)left;
        d.groups[d.ngroups++] = g;
        left -= g;
    }
    for (size_t i = 0; i < nrows; i++) {
        double v = signal(d.x + i * ncols, ncols) + 0.5 * (unif(&s) - 0.5);
        d.y[i] = v > 1.5 ? 3.0f : v > 0.5 ? 2.0f : v > -0.5 ? 1.0f : 0.0f;
    }
    return d;
}

static rk_gbdt_data as_data(const dataset *d)
{
    rk_gbdt_data g = {{d->x, d->nrows, d->ncols, d->ncols}, d->y, d->w, d->groups, d->ngroups};
    return g;
}

static rk_gbdt *train(const dataset *d, rk_gbdt_objective obj, uint32_t depth,
                      uint32_t ntrees, rk_gbdt_tree_method tm)
{
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.objective = obj;
    p.max_depth = depth;
    p.ntrees = ntrees;
    p.tree_method = tm;
    p.nthread = 1;
    p.seed = 11;
    if (tm == RK_GBDT_EXACT) p.gamma = 2; /* prunes: leaves dead nodes */
    rk_gbdt_data td = as_data(d);
    rk_gbdt *m = NULL;
    rk_err err = {0};
    if (rk_gbdt_train(&m, &td, NULL, &p, &err) != 0) fprintf(stderr, "  train: %s\n", err.msg);
    return m;
}

/* XGBoost's own prediction for a JSON model: a booster loaded from it and
 * XGBoosterPredict on a DMatrix (missing = NaN), one thread. */
static int xgb_predict(const char *json, size_t len, const float *x, size_t nrows,
                       size_t ncols, int margin, float *out)
{
    BoosterHandle b = NULL;
    DMatrixHandle d = NULL;
    int ok = XGBoosterCreate(NULL, 0, &b) == 0 &&
             XGBoosterLoadModelFromBuffer(b, json, (bst_ulong)len) == 0 &&
             XGBoosterSetParam(b, "nthread", "1") == 0 &&
             XGDMatrixCreateFromMat(x, (bst_ulong)nrows, (bst_ulong)ncols, NAN, &d) == 0;
    bst_ulong n = 0;
    const float *res = NULL;
    ok = ok && XGBoosterPredict(b, d, margin ? 1 : 0, 0, 0, &n, &res) == 0 && n == nrows;
    if (ok) memcpy(out, res, nrows * sizeof *out);
    else fprintf(stderr, "  xgboost: %s\n", XGBGetLastError());
    if (d) XGDMatrixFree(d);
    if (b) XGBoosterFree(b);
    return ok ? 0 : -1;
}

/* Test rows for a model: random values with ~20% missing, and in every
 * other row values equal to a threshold the model splits that feature on,
 * so rows land exactly on split points. */
static float *probe_rows(const rk_gbdt *m, size_t nrows, size_t ncols, uint64_t seed)
{
    float *x = random_matrix(nrows, ncols, 0.2, seed);
    const rk__rank_forest *f = rk__rank_gbdt_forest(m);
    size_t nn = f->tree_off[f->ntrees];
    uint64_t s = seed * 31 + 7;
    for (size_t i = 1; i < nrows && nn; i += 2)
        for (size_t tries = 0; tries < ncols; tries++) {
            const rk__rank_gbdt_node *n = &f->nodes[rng(&s) % nn];
            if (isnan(n->thr)) continue;
            x[i * ncols + n->col % f->nfeatures] = n->thr;
        }
    return x;
}

/* max |native - xgboost| over the rows, for outputs and margins; -1 when
 * XGBoost failed. */
static double compare_with_xgb(const rk_gbdt *m, const float *x, size_t nrows, size_t ncols)
{
    float *a = malloc(nrows * sizeof *a), *b = malloc(nrows * sizeof *b);
    size_t len;
    const char *json = rk_gbdt_xgb_json(m, &len);
    rk_dmat dm = {x, nrows, ncols, ncols};
    double worst = 0;
    for (int margin = 0; margin < 2 && worst >= 0; margin++) {
        if (rk_gbdt_predict(m, &dm, a, margin ? RK_GBDT_MARGIN : 0) != 0 ||
            xgb_predict(json, len, x, nrows, ncols, margin, b) != 0) {
            worst = -1;
            break;
        }
        for (size_t i = 0; i < nrows; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (!(d <= worst)) worst = d; /* NaN propagates as a failure */
        }
    }
    free(a);
    free(b);
    return worst;
}

/* ---- a hand-written model --------------------------------------------------------- */

/* Two features; tree 0 splits f1 < 0.5 (missing left) into f0 < -1 (missing
 * right) and a leaf; tree 1 is a lone leaf. Nodes 5 and 6 of tree 0 are
 * pruned leftovers, unreachable, with XGBoost's deleted-node marker. */
static const char tiny_json[] =
    "{\"learner\":{\"attributes\":{},\"feature_names\":[],\"feature_types\":[],"
    "\"gradient_booster\":{\"model\":{\"gbtree_model_param\":{\"num_parallel_tree\":\"1\","
    "\"num_trees\":\"2\",\"size_leaf_vector\":\"0\"},\"tree_info\":[0,0],"
    "\"trees\":[{\"base_weights\":[0.0,0.0,0.0,0.0,0.0,0.0,0.0],\"categories\":[],\"categories_nodes\":[],"
    "\"categories_segments\":[],\"categories_sizes\":[],\"default_left\":[1,0,0,0,0,1,1],"
    "\"id\":0,\"left_children\":[1,3,-1,-1,-1,-1,-1],\"loss_changes\":[2.5,1.5,0.0,0.0,0.0,0.0,0.0],"
    "\"parents\":[2147483647,0,0,1,1,2,2],\"right_children\":[2,4,-1,-1,-1,-1,-1],"
    "\"split_conditions\":[0.5,-1.0,0.75,-0.25,0.125,9.0,9.0],"
    "\"split_indices\":[1,0,0,0,0,2147483647,2147483647],\"split_type\":[0,0,0,0,0,0,0],"
    "\"sum_hessian\":[10.0,6.0,4.0,3.0,3.0,0.0,0.0],\"tree_param\":{\"num_deleted\":\"2\","
    "\"num_feature\":\"2\",\"num_nodes\":\"7\",\"size_leaf_vector\":\"0\"}},"
    "{\"base_weights\":[0.0],\"categories\":[],\"categories_nodes\":[],\"categories_segments\":[],"
    "\"categories_sizes\":[],\"default_left\":[0],\"id\":1,\"left_children\":[-1],"
    "\"loss_changes\":[0.0],\"parents\":[2147483647],\"right_children\":[-1],"
    "\"split_conditions\":[0.0625],\"split_indices\":[0],\"split_type\":[0],"
    "\"sum_hessian\":[10.0],\"tree_param\":{\"num_deleted\":\"0\",\"num_feature\":\"2\","
    "\"num_nodes\":\"1\",\"size_leaf_vector\":\"0\"}}]},\"name\":\"gbtree\"},"
    "\"learner_model_param\":{\"base_score\":\"5E-1\",\"boost_from_average\":\"1\","
    "\"num_class\":\"0\",\"num_feature\":\"2\",\"num_target\":\"1\"},"
    "\"objective\":{\"name\":\"binary:logistic\",\"reg_loss_param\":{\"scale_pos_weight\":\"1\"}}},"
    "\"version\":[1,7,4]}";

/* tiny_json with the first occurrence of `from` replaced by `to`
 * (malloc'd). */
static char *mutate(const char *from, const char *to)
{
    const char *at = strstr(tiny_json, from);
    if (!at) return NULL;
    size_t pre = (size_t)(at - tiny_json), lf = strlen(from), lt = strlen(to);
    size_t n = strlen(tiny_json) - lf + lt;
    char *s = malloc(n + 1);
    memcpy(s, tiny_json, pre);
    memcpy(s + pre, to, lt);
    strcpy(s + pre + lt, at + lf);
    return s;
}

/* ---- kernels ------------------------------------------------------------------------ */

static int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

TEST(tiny_model_semantics)
{
    rk_gbdt *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err));
    rk_gbdt_info info;
    rk_gbdt_info_get(m, &info);
    CHECK_EQ_INT(info.ntrees, 2);
    CHECK_EQ_INT(info.nfeatures, 2);
    CHECK_EQ_INT(info.nodes, 6); /* the two pruned nodes are dropped */
    CHECK_EQ_INT(info.max_depth, 2);
    CHECK_STR(info.objective, "binary:logistic");
    CHECK_EQ_INT(info.best_iteration, 1);
    CHECK(isnan(info.best_score));
    /* Rows: (f0, f1) and the expected margin (base 0 + tree 1's 0.0625). */
    static const struct {
        float f0, f1, margin;
    } cases[] = {
        {-2, 0, -0.25f + 0.0625f},    /* f1 < .5 -> f0 < -1 -> left */
        {-1, 0, 0.125f + 0.0625f},    /* f0 == -1 is not < -1: right */
        {NAN, 0, 0.125f + 0.0625f},   /* f0 missing: default right */
        {-2, NAN, -0.25f + 0.0625f},  /* f1 missing: default left */
        {-2, 0.5f, 0.75f + 0.0625f},  /* f1 == .5: right, a leaf */
        {NAN, NAN, 0.125f + 0.0625f},
    };
    size_t n = sizeof cases / sizeof cases[0];
    float x[2 * 6], out[6], prob[6], want[6];
    for (size_t i = 0; i < n; i++) {
        x[2 * i] = cases[i].f0;
        x[2 * i + 1] = cases[i].f1;
    }
    rk_dmat dm = {x, n, 2, 2};
    CHECK_OK(rk_gbdt_predict(m, &dm, out, RK_GBDT_MARGIN));
    CHECK_OK(rk_gbdt_predict(m, &dm, prob, 0));
    for (size_t i = 0; i < n; i++) {
        CHECK(out[i] == cases[i].margin);
        CHECK(fabs(prob[i] - 1 / (1 + exp(-(double)cases[i].margin))) < 1e-6);
    }
    /* XGBoost reads the hand-written model the same way. */
    size_t len;
    const char *json = rk_gbdt_xgb_json(m, &len);
    CHECK(0 == xgb_predict(json, len, x, n, 2, 1, want));
    CHECK(same_bits(out, want, n));
    CHECK(0 == xgb_predict(json, len, x, n, 2, 0, want));
    for (size_t i = 0; i < n; i++) CHECK(fabsf(prob[i] - want[i]) <= 1e-7f);
    /* Importance: f1 split once (gain 2.5, cover 10), f0 once (1.5, 6). */
    double imp[2];
    CHECK_OK(rk_gbdt_importance(m, RK_GBDT_IMP_SPLITS, imp, 2));
    CHECK(imp[0] == 1 && imp[1] == 1);
    CHECK_OK(rk_gbdt_importance(m, RK_GBDT_IMP_GAIN, imp, 2));
    CHECK(imp[0] == 1.5 && imp[1] == 2.5);
    CHECK_OK(rk_gbdt_importance(m, RK_GBDT_IMP_COVER, imp, 2));
    CHECK(imp[0] == 6 && imp[1] == 10);
    CHECK_EQ_INT(rk_gbdt_importance(m, RK_GBDT_IMP_GAIN, imp, 1), RK_EINVAL);
    rk_gbdt_destroy(m);
}

/* Extreme margins: XGBoost caps the sigmoid's exponent; so do we. */
TEST(sigmoid_extremes)
{
    static const char *leaves[] = {"120.5", "-120.5", "88.75", "-88.75", "-17.25", "1e-30"};
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        char to[64];
        snprintf(to, sizeof to, "\"split_conditions\":[%s]", leaves[i]);
        char *js = mutate("\"split_conditions\":[0.0625]", to);
        CHECK(js);
        rk_gbdt *m = NULL;
        rk_err err = {0};
        int rc = rk_gbdt_from_xgb_json(&m, js, strlen(js), &err);
        if (rc) fprintf(stderr, "  %s\n", err.msg);
        CHECK_OK(rc);
        float x[2 * 3] = {-2, 0, 5, 5, NAN, NAN}, a[3], b[3];
        rk_dmat dm = {x, 3, 2, 2};
        CHECK_OK(rk_gbdt_predict(m, &dm, a, 0));
        CHECK(0 == xgb_predict(js, strlen(js), x, 3, 2, 0, b));
        for (int r = 0; r < 3; r++) {
            if (!(fabsf(a[r] - b[r]) <= 1e-7f))
                fprintf(stderr, "  leaf %s row %d: %.9g vs xgboost %.9g\n", leaves[i], r,
                        (double)a[r], (double)b[r]);
            CHECK(fabsf(a[r] - b[r]) <= 1e-7f);
        }
        rk_gbdt_destroy(m);
        free(js);
    }
}

/* The blocked kernel against the reference on one model, for row counts
 * around the block size and a padded stride. */
static int kernels_agree_on(const rk_gbdt *m, size_t ncols)
{
    const rk__rank_forest *f = rk__rank_gbdt_forest(m);
    static const size_t counts[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257};
    size_t stride = ncols + 1;
    float *x = random_matrix(300, stride, 0.2, 99);
    float *tmp = probe_rows(m, 300, ncols, 5); /* thresholds too */
    for (size_t i = 0; i < 300; i += 3) memcpy(x + i * stride, tmp + i * ncols, ncols * sizeof *x);
    free(tmp);
    float ref[300], got[300];
    int ok = 1;
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        size_t n = counts[c];
        rk__rank_gbdt_kernels_ref.margins(f, x, stride, n, ref);
        memset(got, 0, sizeof got);
        rk__rank_gbdt_kernels_scalar.margins(f, x, stride, n, got);
        if (!same_bits(ref, got, n)) {
            fprintf(stderr, "  blocked kernel differs at n=%zu\n", n);
            ok = 0;
        }
    }
    free(x);
    return ok;
}

TEST(kernels_agree)
{
    dataset d = make_binary(800, 12, 3);
    /* Depth 7: every tree in the complete layout. */
    rk_gbdt *m = train(&d, RK_GBDT_BINARY, 7, 25, RK_GBDT_HIST);
    CHECK(m);
    CHECK_STR(rk__rank_gbdt_kernels_of(m)->name, "scalar"); /* the default */
    const rk__rank_forest *f = rk__rank_gbdt_forest(m);
    for (size_t t = 0; t < f->ntrees; t++) CHECK(f->complete_off[t] != RK__GBDT_GENERAL);
    CHECK(kernels_agree_on(m, 12));
    rk_gbdt_destroy(m);
    /* Deeper than the complete layout allows: some trees stay general. */
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = 6;
    p.max_depth = 16;
    p.min_child_weight = 0;
    p.nthread = 1;
    rk_gbdt_data td = as_data(&d);
    rk_err err = {0};
    CHECK_OK(rk_gbdt_train(&m, &td, NULL, &p, &err));
    f = rk__rank_gbdt_forest(m);
    size_t general = 0;
    for (size_t t = 0; t < f->ntrees; t++) {
        general += f->complete_off[t] == RK__GBDT_GENERAL;
        CHECK((f->complete_off[t] == RK__GBDT_GENERAL) ==
              (f->tree_depth[t] > RK__GBDT_COMPLETE_MAX));
    }
    CHECK(general > 0);
    CHECK(kernels_agree_on(m, 12));
    float *x = probe_rows(m, 300, 12, 8);
    double w = compare_with_xgb(m, x, 300, 12);
    free(x);
    CHECK(w >= 0 && w <= 1e-5);
    rk_gbdt_destroy(m);
    dataset_free(&d);
}

/* More than 256 features: the blocked kernel reads rows directly. */
TEST(kernels_agree_wide)
{
    dataset d = make_binary(400, 300, 4);
    rk_gbdt *m = train(&d, RK_GBDT_BINARY, 5, 10, RK_GBDT_HIST);
    CHECK(m);
    const rk__rank_forest *f = rk__rank_gbdt_forest(m);
    float *x = probe_rows(m, 100, 300, 17), ref[100], got[100];
    for (size_t n = 1; n <= 100; n += 33) {
        rk__rank_gbdt_kernels_ref.margins(f, x, 300, n, ref);
        rk__rank_gbdt_kernels_scalar.margins(f, x, 300, n, got);
        CHECK(same_bits(ref, got, n));
    }
    double w = compare_with_xgb(m, x, 100, 300);
    CHECK(w >= 0 && w <= 1e-5);
    free(x);
    rk_gbdt_destroy(m);
    dataset_free(&d);
}

/* RK_KERNELS picks the evaluator when a model is built. */
TEST(kernel_choice)
{
    rk_gbdt *m = NULL;
    rk_err err = {0};
    const char *old = getenv("RK_KERNELS");
    char *saved = old ? strdup(old) : NULL;
    static const struct {
        const char *env, *name;
    } cases[] = {{"ref", "ref"}, {"scalar", "scalar"}, {"avx2", "scalar"}, {"auto", "scalar"}};
    for (size_t i = 0; i < 4; i++) {
        setenv("RK_KERNELS", cases[i].env, 1);
        CHECK_OK(rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err));
        rk_gbdt_info info;
        rk_gbdt_info_get(m, &info);
        rk_gbdt_destroy(m);
        CHECK_STR(info.kernels, cases[i].name);
    }
    setenv("RK_KERNELS", "neon", 1);
    int rc = rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err);
    if (saved) setenv("RK_KERNELS", saved, 1);
    else unsetenv("RK_KERNELS");
    free(saved);
    CHECK_EQ_INT(rc, RK_EINVAL);
    CHECK_CONTAINS(err.msg, "RK_KERNELS=neon");
}

/* ---- agreement with XGBoost ------------------------------------------------------------ */

TEST(matches_xgboost_depths)
{
    dataset bin = make_binary(1500, 10, 21), rnk = make_rank(1500, 10, 22);
    dataset reg = make_binary(1500, 10, 23);
    for (size_t i = 0; i < reg.nrows; i++) reg.y[i] = (float)signal(reg.x + i * 10, 10);
    double worst = 0;
    for (uint32_t depth = 1; depth <= 8; depth++) {
        for (int o = 0; o < 3; o++) {
            const dataset *d = o == 0 ? &bin : o == 1 ? &rnk : &reg;
            rk_gbdt_objective obj = o == 0   ? RK_GBDT_BINARY
                                    : o == 1 ? RK_GBDT_RANK_NDCG
                                             : RK_GBDT_REGRESSION;
            rk_gbdt *m = train(d, obj, depth, 12, RK_GBDT_HIST);
            CHECK(m);
            rk_gbdt_info info;
            rk_gbdt_info_get(m, &info);
            CHECK(info.max_depth <= depth && info.ntrees == 12);
            float *x = probe_rows(m, 400, 10, 1000 + depth * 3 + (uint64_t)o);
            double w = compare_with_xgb(m, x, 400, 10);
            free(x);
            if (!(w >= 0 && w <= 1e-5))
                fprintf(stderr, "  depth %u objective %d: max diff %g\n", depth, o, w);
            CHECK(w >= 0 && w <= 1e-5);
            if (w > worst) worst = w;
            rk_gbdt_destroy(m);
        }
    }
    fprintf(stderr, "  max |native - xgboost| over depths 1..8: %g\n", worst);
    dataset_free(&bin);
    dataset_free(&rnk);
    dataset_free(&reg);
}

/* Exact and approx builders; exact with gamma prunes and leaves deleted
 * nodes in the arrays. Also a non-default base_score. */
TEST(matches_xgboost_methods)
{
    dataset d = make_binary(700, 8, 31);
    for (int tm = RK_GBDT_APPROX; tm <= RK_GBDT_EXACT; tm++) {
        rk_gbdt *m = train(&d, RK_GBDT_BINARY, 6, 15, (rk_gbdt_tree_method)tm);
        CHECK(m);
        float *x = probe_rows(m, 300, 8, 77);
        double w = compare_with_xgb(m, x, 300, 8);
        free(x);
        CHECK(w >= 0 && w <= 1e-5);
        if (tm == RK_GBDT_EXACT) {
            /* The pruner left dead nodes behind in some tree. */
            size_t len;
            const char *js = rk_gbdt_xgb_json(m, &len), *at = js;
            int deleted = 0;
            while ((at = strstr(at, "\"num_deleted\":\"")) != NULL) {
                at += strlen("\"num_deleted\":\"");
                if (*at != '0') deleted = 1;
            }
            CHECK(deleted);
        }
        rk_gbdt_destroy(m);
    }
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = 10;
    p.base_score = 0.3;
    p.scale_pos_weight = 2;
    p.nthread = 1;
    rk_gbdt_data td = as_data(&d);
    rk_gbdt *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_train(&m, &td, NULL, &p, &err));
    rk_gbdt_info info;
    rk_gbdt_info_get(m, &info);
    CHECK(fabsf(info.base_score - 0.3f) < 1e-7f);
    float *x = probe_rows(m, 300, 8, 78);
    double w = compare_with_xgb(m, x, 300, 8);
    free(x);
    CHECK(w >= 0 && w <= 1e-5);
    rk_gbdt_destroy(m);
    dataset_free(&d);
}

/* ---- training ---------------------------------------------------------------------------- */

static double auc(const float *score, const float *y, size_t n)
{
    double pos = 0, neg = 0, wins = 0;
    for (size_t i = 0; i < n; i++) {
        if (y[i] > 0.5f) pos += 1;
        else neg += 1;
    }
    for (size_t i = 0; i < n; i++)
        if (y[i] > 0.5f)
            for (size_t j = 0; j < n; j++)
                if (y[j] <= 0.5f) wins += score[i] > score[j] ? 1 : score[i] == score[j] ? 0.5 : 0;
    return wins / (pos * neg);
}

TEST(train_binary_learns)
{
    dataset d = make_binary(2000, 10, 41), t = make_binary(500, 10, 42);
    rk_gbdt *m = train(&d, RK_GBDT_BINARY, 4, 40, RK_GBDT_HIST);
    CHECK(m);
    float *s = malloc(t.nrows * sizeof *s);
    rk_dmat dm = {t.x, t.nrows, t.ncols, t.ncols};
    CHECK_OK(rk_gbdt_predict(m, &dm, s, 0));
    for (size_t i = 0; i < t.nrows; i++) CHECK(s[i] > 0 && s[i] < 1);
    double a = auc(s, t.y, t.nrows);
    fprintf(stderr, "  held-out AUC %.3f\n", a);
    CHECK(a > 0.8);
    /* Feature 3 matters only through its missingness: it must be used. */
    double imp[10];
    CHECK_OK(rk_gbdt_importance(m, RK_GBDT_IMP_GAIN, imp, 10));
    CHECK(imp[0] > imp[9] && imp[3] > 0);
    /* The same numbers as XGBoost's own feature scores. */
    static const struct {
        rk_gbdt_importance_type t;
        const char *cfg;
    } kinds[] = {{RK_GBDT_IMP_SPLITS, "{\"importance_type\":\"weight\"}"},
                 {RK_GBDT_IMP_GAIN, "{\"importance_type\":\"total_gain\"}"},
                 {RK_GBDT_IMP_COVER, "{\"importance_type\":\"total_cover\"}"}};
    size_t len;
    const char *json = rk_gbdt_xgb_json(m, &len);
    BoosterHandle b = NULL;
    CHECK(XGBoosterCreate(NULL, 0, &b) == 0 && XGBoosterLoadModelFromBuffer(b, json, len) == 0);
    for (int k = 0; k < 3; k++) {
        bst_ulong nf = 0, dim = 0;
        const char **names = NULL;
        const bst_ulong *shape = NULL;
        const float *sc = NULL;
        CHECK(XGBoosterFeatureScore(b, kinds[k].cfg, &nf, &names, &dim, &shape, &sc) == 0);
        CHECK_OK(rk_gbdt_importance(m, kinds[k].t, imp, 10));
        int nonzero = 0;
        for (size_t j = 0; j < 10; j++) nonzero += imp[j] != 0;
        CHECK_EQ_INT(nf, nonzero); /* XGBoost lists the features used */
        for (bst_ulong j = 0; j < nf; j++) {
            int f = atoi(names[j] + 1); /* "f3" */
            CHECK(f >= 0 && f < 10);
            CHECK(fabs(imp[f] - sc[j]) <= 1e-4 * fabs(sc[j]) + 1e-6);
        }
    }
    XGBoosterFree(b);
    free(s);
    rk_gbdt_destroy(m);
    dataset_free(&d);
    dataset_free(&t);
}

/* NDCG@10 of scores within each group. */
static double mean_ndcg(const float *s, const dataset *d)
{
    double total = 0;
    size_t off = 0;
    for (size_t g = 0; g < d->ngroups; off += d->groups[g++]) {
        size_t n = d->groups[g];
        double dcg = 0, idcg = 0;
        char used[64] = {0}, iused[64] = {0};
        for (size_t k = 0; k < 10 && k < n; k++) {
            size_t b = SIZE_MAX, ib = SIZE_MAX;
            for (size_t i = 0; i < n; i++) {
                if (!used[i] && (b == SIZE_MAX || s[off + i] > s[off + b])) b = i;
                if (!iused[i] && (ib == SIZE_MAX || d->y[off + i] > d->y[off + ib])) ib = i;
            }
            used[b] = iused[ib] = 1;
            dcg += (pow(2, d->y[off + b]) - 1) / log2((double)k + 2);
            idcg += (pow(2, d->y[off + ib]) - 1) / log2((double)k + 2);
        }
        total += idcg > 0 ? dcg / idcg : 1;
    }
    return total / (double)d->ngroups;
}

TEST(train_rank_ndcg_learns)
{
    dataset d = make_rank(3000, 10, 51), t = make_rank(1000, 10, 52);
    rk_gbdt *m = train(&d, RK_GBDT_RANK_NDCG, 5, 40, RK_GBDT_HIST);
    CHECK(m);
    rk_gbdt_info info;
    rk_gbdt_info_get(m, &info);
    CHECK_STR(info.objective, "rank:ndcg");
    float *s = malloc(t.nrows * sizeof *s), *r = malloc(t.nrows * sizeof *r);
    rk_dmat dm = {t.x, t.nrows, t.ncols, t.ncols};
    CHECK_OK(rk_gbdt_predict(m, &dm, s, 0));
    uint64_t seed = 5;
    for (size_t i = 0; i < t.nrows; i++) r[i] = (float)unif(&seed);
    double model = mean_ndcg(s, &t), rnd = mean_ndcg(r, &t);
    fprintf(stderr, "  held-out NDCG@10 %.3f (random order %.3f)\n", model, rnd);
    CHECK(model > rnd + 0.15);
    free(s);
    free(r);
    rk_gbdt_destroy(m);
    dataset_free(&d);
    dataset_free(&t);
}

TEST(early_stopping)
{
    /* Few rows, deep trees and a high learning rate overfit quickly. */
    dataset d = make_binary(400, 10, 61), v = make_binary(400, 10, 62);
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = 300;
    p.max_depth = 6;
    p.eta = 0.3;
    p.nthread = 1;
    p.early_stopping_rounds = 5;
    rk_gbdt_data td = as_data(&d), vd = as_data(&v);
    rk_gbdt *m = NULL;
    rk_err err = {0};
    int rc;
    CHECK_OK(rk_gbdt_train(&m, &td, &vd, &p, &err));
    rk_gbdt_info info;
    rk_gbdt_info_get(m, &info);
    fprintf(stderr, "  stopped: best iteration %lld, logloss %.4f\n",
            (long long)info.best_iteration, info.best_score);
    CHECK(info.best_iteration >= 0 && info.best_iteration < 290);
    CHECK_EQ_INT(info.ntrees, info.best_iteration + 1);
    CHECK(isfinite(info.best_score) && info.best_score > 0);
    /* The kept model's validation logloss is the recorded best score. */
    float *s = malloc(v.nrows * sizeof *s);
    rk_dmat dm = {v.x, v.nrows, v.ncols, v.ncols};
    CHECK_OK(rk_gbdt_predict(m, &dm, s, 0));
    double ll = 0;
    for (size_t i = 0; i < v.nrows; i++) {
        double q = fmin(fmax(s[i], 1e-16), 1 - 1e-16);
        ll -= v.y[i] > 0.5f ? log(q) : log(1 - q);
    }
    ll /= (double)v.nrows;
    CHECK(fabs(ll - info.best_score) < 1e-4);
    free(s);
    rk_gbdt_destroy(m);

    /* Watching without early stopping keeps every round; the record is
     * the last round's score. */
    p.early_stopping_rounds = 0;
    p.ntrees = 10;
    FILE *logf = tmpfile();
    CHECK(logf);
    rk_logger lg;
    rk_logger_init(&lg, RK_LOG_INFO, logf);
    p.log = &lg;
    rc = rk_gbdt_train(&m, &td, &vd, &p, &err);
    p.log = NULL;
    char line[512] = "";
    rewind(logf);
    int seen = 0;
    while (fgets(line, sizeof line, logf))
        if (strstr(line, "round 9: [9]") && strstr(line, "valid-logloss:")) seen = 1;
    fclose(logf);
    CHECK_OK(rc);
    CHECK(seen);
    rk_gbdt_info_get(m, &info);
    CHECK_EQ_INT(info.ntrees, 10);
    CHECK_EQ_INT(info.best_iteration, 9);
    CHECK(isfinite(info.best_score));
    rk_gbdt_destroy(m);
    p.early_stopping_rounds = 5;
    p.ntrees = 300;

    /* ranking with map@5 as the metric */
    dataset_free(&d);
    dataset_free(&v);
    d = make_rank(600, 10, 63);
    v = make_rank(600, 10, 64);
    td = as_data(&d);
    vd = as_data(&v);
    p.objective = RK_GBDT_RANK_NDCG;
    p.eval_metric = RK_GBDT_METRIC_MAP;
    p.eval_at = 5;
    p.max_depth = 4;
    CHECK_OK(rk_gbdt_train(&m, &td, &vd, &p, &err));
    rk_gbdt_info_get(m, &info);
    CHECK(info.best_score > 0 && info.best_score <= 1);
    CHECK_EQ_INT(info.ntrees, info.best_iteration + 1);
    rk_gbdt_destroy(m);
    dataset_free(&d);
    dataset_free(&v);
}

TEST(determinism)
{
    dataset d = make_binary(1000, 10, 71);
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = 15;
    p.subsample = 0.7;
    p.colsample_bytree = 0.6;
    p.nthread = 2;
    p.seed = 1234;
    rk_gbdt_data td = as_data(&d);
    rk_buf b[3];
    for (int i = 0; i < 3; i++) {
        rk_buf_init(&b[i], 0);
        rk_gbdt *m = NULL;
        rk_err err = {0};
        if (i == 2) p.seed = 1235;
        CHECK_OK(rk_gbdt_train(&m, &td, NULL, &p, &err));
        CHECK_OK(rk_gbdt_save(m, &b[i]));
        rk_gbdt_destroy(m);
    }
    CHECK(b[0].len == b[1].len && memcmp(b[0].data, b[1].data, b[0].len) == 0);
    CHECK(b[0].len != b[2].len || memcmp(b[0].data, b[2].data, b[0].len) != 0);
    for (int i = 0; i < 3; i++) rk_buf_free(&b[i]);
    dataset_free(&d);
}

TEST(strided_input)
{
    dataset d = make_binary(600, 6, 81);
    /* The same rows with two padding columns of garbage. */
    float *wide = malloc(600 * 8 * sizeof *wide);
    for (size_t i = 0; i < 600; i++) {
        memcpy(wide + i * 8, d.x + i * 6, 6 * sizeof *wide);
        wide[i * 8 + 6] = 1e30f;
        wide[i * 8 + 7] = NAN;
    }
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = 8;
    p.nthread = 1;
    rk_gbdt_data a = as_data(&d), b = a;
    b.x.x = wide;
    b.x.stride = 8;
    rk_gbdt *m1 = NULL, *m2 = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_train(&m1, &a, NULL, &p, &err));
    CHECK_OK(rk_gbdt_train(&m2, &b, NULL, &p, &err));
    size_t l1, l2;
    const char *j1 = rk_gbdt_xgb_json(m1, &l1), *j2 = rk_gbdt_xgb_json(m2, &l2);
    CHECK(l1 == l2 && memcmp(j1, j2, l1) == 0);
    float o1[600], o2[600];
    rk_dmat x1 = {d.x, 600, 6, 6}, x2 = {wide, 600, 6, 8};
    CHECK_OK(rk_gbdt_predict(m1, &x1, o1, 0));
    CHECK_OK(rk_gbdt_predict(m1, &x2, o2, 0));
    CHECK(same_bits(o1, o2, 600));
    rk_gbdt_destroy(m1);
    rk_gbdt_destroy(m2);
    free(wide);
    dataset_free(&d);
}

TEST(weights_and_groups)
{
    dataset d = make_rank(500, 6, 91);
    d.w = malloc(d.ngroups * sizeof *d.w);
    for (size_t g = 0; g < d.ngroups; g++) d.w[g] = (float)(1 + g % 3);
    rk_gbdt *m = train(&d, RK_GBDT_RANK_NDCG, 3, 5, RK_GBDT_HIST);
    CHECK(m);
    rk_gbdt_destroy(m);
    /* Binary ignores the groups: one weight per row. */
    for (size_t i = 0; i < d.nrows; i++) d.y[i] = d.y[i] > 1 ? 1.0f : 0.0f;
    d.w = realloc(d.w, d.nrows * sizeof *d.w);
    for (size_t i = 0; i < d.nrows; i++) d.w[i] = (float)(i % 4);
    m = train(&d, RK_GBDT_BINARY, 3, 5, RK_GBDT_HIST);
    CHECK(m);
    rk_gbdt_destroy(m);
    dataset_free(&d);
}

TEST(train_errors)
{
    dataset d = make_rank(100, 4, 95);
    rk_gbdt_params p;
    rk_gbdt_params_default(&p);
    p.ntrees = 2;
    p.nthread = 1;
    rk_gbdt_data td = as_data(&d);
    rk_gbdt *m = (rk_gbdt *)1;
    rk_err err = {0};
    static const struct {
        int what;
        const char *msg;
    } cases[] = {
        {0, "eta 0: expected (0, 1]"},
        {1, "max_depth 0"},
        {2, "subsample 1.5"},
        {3, "label 0 is 3, binary needs [0, 1]"},
        {4, "query groups are required (rank:ndcg)"},
        {5, "group sizes add up to 99, not 100 rows"},
        {6, "early stopping needs a validation set"},
        {7, "weight 2 is nan"},
        {12, "weights cannot be combined with the ndcg/map metric"},
        {8, "valid has 3 columns, train 4"},
        {9, "label 5 is not finite"},
        {10, "stride 3 < ncols 4"},
        {11, "base_score 1.5: a probability in (0, 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_gbdt_params q = p;
        rk_gbdt_data t = td, v = td, *vp = NULL;
        float *y = malloc(d.nrows * sizeof *y), w[100];
        memcpy(y, d.y, d.nrows * sizeof *y);
        t.y = y;
        uint32_t groups[64];
        memcpy(groups, d.groups, d.ngroups * sizeof *groups);
        switch (cases[i].what) {
        case 0: q.eta = 0; break;
        case 1: q.max_depth = 0; break;
        case 2: q.subsample = 1.5; break;
        case 3: y[0] = 3; break;
        case 4: q.objective = RK_GBDT_RANK_NDCG; t.groups = NULL; break;
        case 5:
            q.objective = RK_GBDT_RANK_NDCG;
            groups[0]--;
            t.groups = groups;
            break;
        case 6: q.early_stopping_rounds = 3; break;
        case 7:
            for (int k = 0; k < 100; k++) w[k] = 1;
            w[2] = NAN;
            t.w = w;
            break;
        case 8: v.x.ncols = 3; vp = &v; break;
        case 9: y[5] = INFINITY; q.objective = RK_GBDT_REGRESSION; break;
        case 10: t.x.stride = 3; break;
        case 11: q.base_score = 1.5; break;
        case 12:
            for (int k = 0; k < 100; k++) w[k] = 1;
            v.w = w;
            v.y = y;
            vp = &v;
            q.eval_metric = RK_GBDT_METRIC_NDCG;
            break;
        }
        if (cases[i].what != 4 && cases[i].what != 5 && q.objective == RK_GBDT_BINARY)
            for (size_t k = 0; k < d.nrows; k++)
                if (k != 0 || cases[i].what != 3) y[k] = y[k] > 1 ? 1.0f : 0.0f;
        int rc = rk_gbdt_train(&m, &t, vp, &q, &err);
        free(y);
        CHECK_EQ_INT(rc, RK_EINVAL);
        CHECK(m == NULL);
        CHECK_CONTAINS(err.msg, cases[i].msg);
    }
    dataset_free(&d);
}

/* ---- saved format -------------------------------------------------------------------------- */

TEST(save_load_roundtrip)
{
    dataset d = make_rank(800, 8, 101);
    rk_gbdt *m = train(&d, RK_GBDT_RANK_NDCG, 6, 20, RK_GBDT_HIST);
    CHECK(m);
    rk_buf b, b2;
    rk_buf_init(&b, 0);
    rk_buf_init(&b2, 0);
    CHECK_OK(rk_buf_puts(&b, "prefix")); /* save appends */
    CHECK_OK(rk_gbdt_save(m, &b));
    CHECK(memcmp(b.data, "prefix", 6) == 0);
    rk_gbdt *l = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_load(&l, b.data + 6, b.len - 6, &err));
    CHECK_OK(rk_gbdt_save(l, &b2));
    CHECK(b2.len == b.len - 6 && memcmp(b2.data, b.data + 6, b2.len) == 0);
    rk_gbdt_info i1, i2;
    rk_gbdt_info_get(m, &i1);
    rk_gbdt_info_get(l, &i2);
    CHECK(i1.ntrees == i2.ntrees && i1.nodes == i2.nodes && i1.nfeatures == i2.nfeatures &&
          i1.best_iteration == i2.best_iteration && i1.max_depth == i2.max_depth);
    CHECK_STR(i1.objective, i2.objective);
    float *x = probe_rows(m, 200, 8, 9), o1[200], o2[200];
    rk_dmat dm = {x, 200, 8, 8};
    CHECK_OK(rk_gbdt_predict(m, &dm, o1, 0));
    CHECK_OK(rk_gbdt_predict(l, &dm, o2, 0));
    CHECK(same_bits(o1, o2, 200));
    /* The saved bytes hold XGBoost's model: XGBoost reads it back. */
    float o3[200];
    CHECK(0 == xgb_predict(b.data + 6 + 32, b.len - 6 - 32, x, 200, 8, 0, o3));
    for (int i = 0; i < 200; i++) CHECK(fabsf(o1[i] - o3[i]) <= 1e-5f);
    free(x);
    rk_gbdt_destroy(m);
    rk_gbdt_destroy(l);
    rk_buf_free(&b);
    rk_buf_free(&b2);
    dataset_free(&d);
}

TEST(corrupt_saved_bytes)
{
    rk_gbdt *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err));
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_gbdt_save(m, &b));
    rk_gbdt_destroy(m);
    unsigned char *c = malloc(b.len);
    /* Every truncation is refused, with a message saying why. */
    for (size_t n = 0; n < b.len; n += (n < 40 ? 1 : 37)) {
        memcpy(c, b.data, b.len);
        m = (rk_gbdt *)1;
        int rc = rk_gbdt_load(&m, c, n, &err);
        CHECK_EQ_INT(rc, RK_ECORRUPT);
        CHECK(m == NULL);
        if (n < 8) CHECK_CONTAINS(err.msg, "bad magic");
        else if (n < 32) CHECK_CONTAINS(err.msg, "truncated header");
        else CHECK_CONTAINS(err.msg, "(truncated)");
    }
    /* A flipped bit anywhere is caught. */
    for (size_t i = 0; i < b.len; i += 7) {
        memcpy(c, b.data, b.len);
        c[i] ^= 0x10;
        int rc = rk_gbdt_load(&m, c, b.len, &err);
        CHECK(rc == RK_ECORRUPT || rc == RK_EVERSION);
        CHECK(m == NULL);
    }
    memcpy(c, b.data, b.len);
    c[40] ^= 1;
    CHECK_EQ_INT(rk_gbdt_load(&m, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum mismatch");
    memcpy(c, b.data, b.len);
    c[8] = 9;
    CHECK_EQ_INT(rk_gbdt_load(&m, c, b.len, &err), RK_EVERSION);
    CHECK_CONTAINS(err.msg, "format version 9");
    /* Trailing bytes are not silently ignored. */
    unsigned char *longer = malloc(b.len + 1);
    memcpy(longer, b.data, b.len);
    longer[b.len] = 0;
    CHECK_EQ_INT(rk_gbdt_load(&m, longer, b.len + 1, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "present");
    free(longer);
    free(c);
    rk_buf_free(&b);
}

/* A saved file whose JSON is not a model (valid checksum): corrupt. */
TEST(saved_bytes_with_bad_model)
{
    const char js[] = "{\"learner\": 3}";
    unsigned char h[32 + sizeof js];
    memcpy(h, "RKGBDT\r\n", 8);
    uint64_t len = sizeof js - 1, sum = rk_hash64(js, sizeof js - 1, 0);
    uint32_t v = 1, hs = 32;
    for (int i = 0; i < 4; i++) h[8 + i] = (unsigned char)(v >> (8 * i));
    for (int i = 0; i < 4; i++) h[12 + i] = (unsigned char)(hs >> (8 * i));
    for (int i = 0; i < 8; i++) h[16 + i] = (unsigned char)(len >> (8 * i));
    for (int i = 0; i < 8; i++) h[24 + i] = (unsigned char)(sum >> (8 * i));
    memcpy(h + 32, js, sizeof js - 1);
    rk_gbdt *m = NULL;
    rk_err err = {0};
    CHECK_EQ_INT(rk_gbdt_load(&m, h, 32 + len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "gbdt model: xgboost model: (root).learner: expected an object");
}

/* ---- loader validation ---------------------------------------------------------------------- */

TEST(malformed_json_refused)
{
    static const struct {
        const char *from, *to;
        int rc;
        const char *msg;
    } cases[] = {
        {"\"right_children\":[2,4,", "\"right_children\":[7,4,", RK_ECORRUPT,
         "tree 0 node 0: bad children 1, 7"},
        {"\"left_children\":[1,3,", "\"left_children\":[1,0,", RK_ECORRUPT,
         "tree 0 node 1: child 0 reached twice"},
        {"\"left_children\":[1,3,", "\"left_children\":[-1,3,", RK_ECORRUPT,
         "tree 0 node 0: bad children -1, 2"},
        {"\"left_children\":[1,3,", "\"left_children\":[1,2,", RK_ECORRUPT,
         "tree 0 node 1: child 2 reached twice"},
        {"\"split_indices\":[1,0,", "\"split_indices\":[2,0,", RK_ECORRUPT,
         "tree 0 node 0: feature 2 out of range (num_feature 2)"},
        {"\"split_indices\":[1,0,", "\"split_indices\":[-1,0,", RK_ECORRUPT,
         "tree 0 node 0: feature -1 out of range"},
        {"[0.5,-1.0,0.75", "[0.5,-1.0,1e39", RK_ECORRUPT,
         "tree 0 node 2: split_conditions 1e+39 is not a finite float"},
        {"\"default_left\":[1,0,0,0,0,1,1]", "\"default_left\":[1,0,0,0,0,0]", RK_ECORRUPT,
         "tree 0: default_left has 6 entries, split_indices 7"},
        {"\"default_left\":[1,0,", "\"default_left\":[1,2,", RK_ECORRUPT,
         "tree 0 node 1: default_left: expected 0 or 1"},
        {"\"split_type\":[0,0,", "\"split_type\":[0,1,", RK_EUNSUPPORTED,
         "tree 0 node 1: categorical splits are not supported"},
        {"\"num_class\":\"0\"", "\"num_class\":\"3\"", RK_EUNSUPPORTED,
         "multi-class models (num_class 3)"},
        {"\"tree_info\":[0,0]", "\"tree_info\":[0,1]", RK_EUNSUPPORTED,
         "tree 1 belongs to output group 1"},
        {"\"name\":\"gbtree\"", "\"name\":\"dart\"", RK_EUNSUPPORTED,
         "booster 'dart' is not supported"},
        {"binary:logistic", "multi:softprob", RK_EUNSUPPORTED,
         "objective 'multi:softprob' is not supported"},
        {"\"feature_types\":[]", "\"feature_types\":[\"q\",\"c\"]", RK_EUNSUPPORTED,
         "feature 1 is categorical"},
        {"\"base_score\":\"5E-1\"", "\"base_score\":\"1.5\"", RK_ECORRUPT,
         "base_score 1.5 must be in (0, 1) for binary:logistic"},
        {"\"base_score\":\"5E-1\"", "\"base_score\":\"x\"", RK_ECORRUPT,
         "learner.learner_model_param.base_score: bad value 'x'"},
        {"\"num_trees\":\"2\"", "\"num_trees\":\"3\"", RK_ECORRUPT,
         "num_trees says 3, 2 trees present"},
        {"\"id\":1", "\"id\":0", RK_ECORRUPT, "tree 1: id is 0"},
        {"{\"learner\":", "{\"lerner\":", RK_EPARSE, "(root).learner: missing"},
        {"\"tree_info\":[0,0]", "\"tree_info\":\"0\"", RK_EPARSE,
         "learner.gradient_booster.model.tree_info: expected an array"},
        {"\"parents\":[2147483647,0,0,1,1", "\"parents\":[2147483647,0,0,1,2", RK_ECORRUPT,
         "tree 0 node 1: its children's parents entries say 1 and 2"},
        {"\"left_children\":[1,3,", "\"left_children\":[1.0,3,", RK_EPARSE,
         "tree 0 node 0: left_children: expected an integer"},
        {"\"num_nodes\":\"7\"", "\"num_nodes\":\"8\"", RK_ECORRUPT,
         "tree 0: tree_param.num_nodes does not match its 7 nodes"},
        {"\"split_conditions\":[0.0625]", "\"split_conditions\":[\"a\"]", RK_EPARSE,
         "tree 1 node 0: split_conditions: expected a number"},
        {"\"left_children\":[-1],", "\"left_children\":[],", RK_ECORRUPT,
         "tree 1: left_children has 0 entries, split_indices 1"},
        {"\"num_feature\":\"2\",\"num_target\"", "\"num_feature\":\"-2\",\"num_target\"",
         RK_ECORRUPT, "num_feature: bad value '-2'"},
        {"\"num_target\":\"1\"", "\"num_target\":\"2\"", RK_EUNSUPPORTED,
         "models with 2 targets are not supported"},
        {"\"version\":[1,7,4]", "\"version\":[3,0,0]", RK_EUNSUPPORTED,
         "XGBoost version 3 models are not supported"},
        {"\"size_leaf_vector\":\"0\"}},", "\"size_leaf_vector\":\"3\"}},", RK_EUNSUPPORTED,
         "tree 0: vector leaves"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *js = mutate(cases[i].from, cases[i].to);
        if (!js) fprintf(stderr, "  case %zu: '%s' not in the template\n", i, cases[i].from);
        CHECK(js);
        rk_gbdt *m = (rk_gbdt *)1;
        rk_err err = {0};
        int rc = rk_gbdt_from_xgb_json(&m, js, strlen(js), &err);
        free(js);
        if (rc != cases[i].rc || !strstr(err.msg, cases[i].msg))
            fprintf(stderr, "  case %zu: %s \"%s\"\n", i, rk_errname(rc), err.msg);
        CHECK_EQ_INT(rc, cases[i].rc);
        CHECK(m == NULL);
        CHECK_CONTAINS(err.msg, cases[i].msg);
    }
    /* Not JSON at all, or not an object. */
    static const struct {
        const char *s;
        const char *msg;
    } bad[] = {
        {"", "line 1"},
        {"{\"learner\": {", "line 1 column"},
        {"[]", "expected a JSON object"},
        {"{\"learner\":{}} x", "end of file expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_gbdt *m = NULL;
        rk_err err = {0};
        CHECK_EQ_INT(rk_gbdt_from_xgb_json(&m, bad[i].s, strlen(bad[i].s), &err), RK_EPARSE);
        CHECK_CONTAINS(err.msg, bad[i].msg);
    }
    /* Cut anywhere, the document is refused cleanly. */
    size_t n = strlen(tiny_json);
    for (size_t k = 0; k < n; k += 5) {
        rk_gbdt *m = NULL;
        rk_err err = {0};
        CHECK_EQ_INT(rk_gbdt_from_xgb_json(&m, tiny_json, k, &err), RK_EPARSE);
    }
}

TEST(predict_arguments)
{
    rk_gbdt *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err));
    float x[6] = {0, 0, 0, 0, 0, 0}, out[3];
    rk_dmat ok = {x, 3, 2, 2}, cols = {x, 2, 3, 3}, stride = {x, 3, 2, 1}, none = {NULL, 0, 2, 2};
    CHECK_OK(rk_gbdt_predict(m, &ok, out, 0));
    CHECK_EQ_INT(rk_gbdt_predict(m, &cols, out, 0), RK_EINVAL);
    CHECK_EQ_INT(rk_gbdt_predict(m, &stride, out, 0), RK_EINVAL);
    CHECK_EQ_INT(rk_gbdt_predict(m, &ok, out, 4), RK_EINVAL);
    CHECK_EQ_INT(rk_gbdt_predict(m, &ok, NULL, 0), RK_EINVAL);
    CHECK_OK(rk_gbdt_predict(m, &none, NULL, 0));
    rk_gbdt_destroy(m);
    rk_gbdt_destroy(NULL);
}

/* ---- allocation failures ---------------------------------------------------------------------- */

static void *jansson_malloc(size_t n) { return rk_malloc(n); }
static void jansson_free(void *p) { rk_free(p); }

/* Fails the 1st, 2nd, ... allocation of a load until it succeeds; each
 * failure must be clean (no model, nothing leaked). With jansson's own
 * allocations failing too, jansson reports some of them as syntax errors,
 * which the saved-format loader calls corrupt. */
static void fault_loop(const rk_buf *saved, int jansson_hooked)
{
    rk_mem_stats base, now;
    rk_mem_get_stats(&base);
    int done = 0;
    uint64_t n;
    for (n = 1; n < 100000 && !done; n++) {
        rk_gbdt *m = (rk_gbdt *)1;
        rk_err err = {0};
        rk_mem_fail_at(n, 0);
        int rc = rk_gbdt_load(&m, saved->data, saved->len, &err);
        rk_mem_fail_at(0, 0);
        if (rc == 0) {
            done = 1;
            rk_gbdt_info info;
            rk_gbdt_info_get(m, &info);
            rk_gbdt_destroy(m);
            CHECK(info.ntrees == 2);
        } else {
            int ok = rc == RK_ENOMEM || (jansson_hooked && rc == RK_ECORRUPT);
            if (!ok) fprintf(stderr, "  n=%llu: %s %s\n", (unsigned long long)n, rk_errname(rc),
                             err.msg);
            CHECK(ok);
            CHECK(m == NULL);
            if (rc == RK_ENOMEM) CHECK_CONTAINS(err.msg, "out of memory");
        }
        rk_mem_get_stats(&now);
        CHECK_EQ_INT(now.in_use, base.in_use);
    }
    CHECK(done);
    CHECK(n > 3);
}

TEST(alloc_failure_load)
{
    rk_gbdt *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err));
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_gbdt_save(m, &b));
    rk_gbdt_destroy(m);
    json_set_alloc_funcs(malloc, free);
    fault_loop(&b, 0);
    json_set_alloc_funcs(jansson_malloc, jansson_free);
    fault_loop(&b, 1);
    rk_mem_hook_libraries();
    rk_buf_free(&b);
}

/* ---- fuzz corpus ---------------------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

/* Writes the seeds of fuzz/corpus/gbdt_model/ when RK_GBDT_WRITE_CORPUS is
 * set: valid models (hand-written and trained, as JSON and saved), and
 * broken ones from the malformed table. */
TEST(fuzz_seeds)
{
    const char *dir = getenv("RK_GBDT_WRITE_CORPUS");
    if (!dir) return;
    write_file(dir, "valid_tiny.json", tiny_json, strlen(tiny_json));
    rk_gbdt *m = NULL;
    rk_err err = {0};
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_gbdt_from_xgb_json(&m, tiny_json, strlen(tiny_json), &err));
    CHECK_OK(rk_gbdt_save(m, &b));
    write_file(dir, "valid_tiny.rkgbdt", b.data, b.len);
    write_file(dir, "trunc_tiny.rkgbdt", b.data, b.len / 2);
    rk_gbdt_destroy(m);
    dataset bin = make_binary(300, 4, 5), rnk = make_rank(300, 4, 6);
    m = train(&bin, RK_GBDT_BINARY, 3, 2, RK_GBDT_HIST);
    CHECK(m);
    size_t len;
    const char *js = rk_gbdt_xgb_json(m, &len);
    write_file(dir, "valid_binary_d3.json", js, len);
    rk_gbdt_destroy(m);
    m = train(&rnk, RK_GBDT_RANK_NDCG, 2, 2, RK_GBDT_HIST);
    CHECK(m);
    rk_buf_reset(&b);
    CHECK_OK(rk_gbdt_save(m, &b));
    write_file(dir, "valid_rank_d2.rkgbdt", b.data, b.len);
    rk_gbdt_destroy(m);
    static const char *const muts[][3] = {
        {"\"left_children\":[1,3,", "\"left_children\":[1,0,", "cycle.json"},
        {"\"split_indices\":[1,0,", "\"split_indices\":[2,0,", "feature_range.json"},
        {"\"split_type\":[0,0,", "\"split_type\":[0,1,", "categorical.json"},
        {"\"default_left\":[1,0,0,0,0,1,1]", "\"default_left\":[1,0,0,0,0,0]", "lengths.json"},
        {"\"name\":\"gbtree\"", "\"name\":\"dart\"", "dart.json"},
    };
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        char *s = mutate(muts[i][0], muts[i][1]);
        CHECK(s);
        write_file(dir, muts[i][2], s, strlen(s));
        free(s);
    }
    write_file(dir, "trunc.json", tiny_json, 300);
    rk_buf_free(&b);
    dataset_free(&bin);
    dataset_free(&rnk);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, tiny_model_semantics, sigmoid_extremes, kernels_agree,
                 kernels_agree_wide, kernel_choice,
                 matches_xgboost_depths, matches_xgboost_methods, train_binary_learns,
                 train_rank_ndcg_learns, early_stopping, determinism, strided_input,
                 weights_and_groups, train_errors, save_load_roundtrip, corrupt_saved_bytes,
                 saved_bytes_with_bad_model, malformed_json_refused, predict_arguments,
                 alloc_failure_load, fuzz_seeds);
}
