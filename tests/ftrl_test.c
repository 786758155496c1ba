/*
 * ftrl_test.c — FTRL-Proximal logistic regression (src/rank/ftrl.c) and its
 * kernels.
 *
 * The exact values come from Algorithm 1 worked by hand below (checked in
 * double precision); the model keeps float state, so they are compared to
 * 1e-6. Learning is checked on a planted sparse logistic problem, by AUC
 * computed here. Setting RK_RANK_WRITE_CORPUS=dir makes fuzz_seeds write
 * seed files for fuzz/fuzz_rank_model.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/ftrl_int.h"
#include "rk_rank.h"
#include "test.h"

/* ---- fixtures ------------------------------------------------------------------- */

static uint64_t rng(uint64_t *s) { return rk__splitmix(s); }
static double unit(uint64_t *s) { return (double)(rng(s) >> 11) * 0x1p-53; }

/* AUC by counting ordered pairs (ties count half); O(n^2) is fine for the
 * few thousand test points. */
static double auc(const float *p, const float *y, size_t n)
{
    double good = 0, pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            if (!(y[i] > 0.5f && y[j] < 0.5f)) continue;
            pairs++;
            good += p[i] > p[j] ? 1.0 : p[i] == p[j] ? 0.5 : 0.0;
        }
    return pairs ? good / pairs : 0.5;
}

/* n examples of nnz one-hot features from `dim` coordinates; a planted
 * weight per coordinate (strong on the first `signal` coordinates, zero
 * elsewhere) decides the label through a logistic draw. */
typedef struct synth {
    size_t n;
    rk_sparse *x;
    uint32_t *idx;
    float *val, *y;
} synth;

/* sign -1 plants the opposite concept: the same inputs, flipped labels. */
static void synth_make_signed(synth *s, size_t n, uint32_t nnz, uint32_t dim,
                              uint32_t signal, uint64_t seed, int with_values,
                              double sign)
{
    s->n = n;
    s->x = malloc(n * sizeof *s->x);
    s->idx = malloc(n * nnz * sizeof *s->idx);
    s->val = malloc(n * nnz * sizeof *s->val);
    s->y = malloc(n * sizeof *s->y);
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        double m = 0;
        for (uint32_t k = 0; k < nnz; k++) {
            uint32_t c = (uint32_t)(rng(&r) % dim);
            float v = with_values ? (float)(unit(&r) * 2) : 1.0f;
            s->idx[i * nnz + k] = c;
            s->val[i * nnz + k] = v;
            if (c < signal) m += sign * (c % 2 ? 3.0 : -3.0) * v;
        }
        s->x[i] = (rk_sparse){s->idx + i * nnz, with_values ? s->val + i * nnz : NULL, nnz};
        s->y[i] = unit(&r) < 1 / (1 + exp(-m)) ? 1.0f : 0.0f;
    }
}

static void synth_make(synth *s, size_t n, uint32_t nnz, uint32_t dim,
                       uint32_t signal, uint64_t seed, int with_values)
{
    synth_make_signed(s, n, nnz, dim, signal, seed, with_values, 1.0);
}

static void synth_free(synth *s)
{
    free(s->x);
    free(s->idx);
    free(s->val);
    free(s->y);
}

static rk_ftrl *model(uint32_t dim, double alpha, double beta, double l1,
                      double l2, int bias)
{
    rk_ftrl_params p = {alpha, beta, l1, l2, bias};
    rk_ftrl *m = NULL;
    rk_err err = {0};
    if (rk_ftrl_create(&m, dim, &p, &err)) fprintf(stderr, "create: %s\n", err.msg);
    return m;
}

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* ---- sigmoid -------------------------------------------------------------------- */

TEST(sigmoid_matches_libm)
{
    /* Relative error within the clamp, absolute beyond it. */
    double worst = 0, worst_abs = 0;
    for (int i = -4000; i <= 4000; i++) {
        float m = (float)i * 0.01f;
        double want = 1 / (1 + exp(-(double)m)), got = rk__sigmoid(m);
        double rel = fabs(got - want) / want;
        if (fabsf(m) <= 30.0f && rel > worst) worst = rel;
        if (fabs(got - want) > worst_abs) worst_abs = fabs(got - want);
    }
    if (worst >= 1e-6) fprintf(stderr, "  worst relative error %g\n", worst);
    CHECK(worst < 1e-6);
    CHECK(worst_abs < 1e-7);
    CHECK(rk__sigmoid(1000.0f) == 1.0f);
    CHECK(rk__sigmoid(-1000.0f) > 0.0f && rk__sigmoid(-1000.0f) < 1e-12f);
    CHECK(rk__sigmoid(0.0f) == 0.5f);
}

/* ---- Algorithm 1 by hand ------------------------------------------------------------ */

/*
 * alpha 0.5, beta 1, l1 0.1, l2 1, no intercept; w = 0 if |z| <= 0.1, else
 * w = -(z - sgn(z) 0.1) / ((1 + sqrt(n)) / 0.5 + 1).
 *
 * Step 1: x = {0: 1, 1: 2}, y = 1, weight 1. All weights 0, p = 0.5.
 *   i=0: g = (0.5 - 1) * 1 = -0.5, sigma = (sqrt(0.25) - 0) / 0.5 = 1,
 *        z = -0.5 - 1 * 0 = -0.5, n = 0.25,
 *        w = 0.4 / ((1 + 0.5) / 0.5 + 1) = 0.4 / 4 = 0.1
 *   i=1: g = -0.5 * 2 = -1, sigma = 1 / 0.5 = 2, z = -1, n = 1,
 *        w = 0.9 / ((1 + 1) / 0.5 + 1) = 0.9 / 5 = 0.18
 * Step 2: x = {1: 1, 2: -1}, y = 0, weight 2. margin = 0.18 * 1 + 0 = 0.18,
 *   p = 1 / (1 + e^-0.18) = 0.544878892.
 *   i=1: g = 2 * 0.544878892 * 1 = 1.089757785, n = 1 + 1.187572029
 *        = 2.187572029, sigma = (1.479044296 - 1) / 0.5 = 0.958088592,
 *        z = -1 + 1.089757785 - 0.958088592 * 0.18 = -0.082698162;
 *        |z| <= 0.1, so w = 0 exactly (L1 at work).
 *   i=2: g = -1.089757785, sigma = 1.089757785 / 0.5 = 2.179515569,
 *        z = -1.089757785, n = 1.187572029,
 *        w = 0.989757785 / ((1 + 1.089757785) / 0.5 + 1) = 0.191090802
 * Step 3: x = {0: 0.5, 3: 1}, y = 1, weight 0.1. margin = 0.5 * 0.1 + 0 =
 *   0.05, p = 0.512497396.
 *   i=0: g = 0.1 * (0.512497396 - 1) * 0.5 = -0.024375130, n = 0.250594147,
 *        sigma = (0.500593793 - 0.5) / 0.5 = 0.001187589,
 *        z = -0.5 - 0.024375130 - 0.001187589 * 0.1 = -0.524493889,
 *        w = 0.424493889 / ((1 + 0.500593793) / 0.5 + 1) = 0.106091974
 *   i=3: g = -0.048750260, z = -0.048750260, n = 0.002376588, w = 0
 */
static void hand_case(const char *kernels)
{
    setenv("RK_KERNELS", kernels, 1);
    rk_ftrl *m = model(4, 0.5, 1, 0.1, 1, 0);
    unsetenv("RK_KERNELS");
    CHECK(m);
    float z, n, w, p;
    uint32_t i1[] = {0, 1}, i2[] = {1, 2}, i3[] = {0, 3};
    float v1[] = {1, 2}, v2[] = {1, -1}, v3[] = {0.5f, 1};
    rk_sparse x1 = {i1, v1, 2}, x2 = {i2, v2, 2}, x3 = {i3, v3, 2};

    CHECK_OK(rk_ftrl_update(m, &x1, 1.0f, 1.0f, &p));
    CHECK(NEAR(p, 0.5, 1e-6));
    CHECK_OK(rk_ftrl_coord(m, 0, &z, &n, &w));
    CHECK(NEAR(z, -0.5, 1e-6) && NEAR(n, 0.25, 1e-6) && NEAR(w, 0.1, 1e-6));
    CHECK_OK(rk_ftrl_coord(m, 1, &z, &n, &w));
    CHECK(NEAR(z, -1.0, 1e-6) && NEAR(n, 1.0, 1e-6) && NEAR(w, 0.18, 1e-6));
    CHECK_OK(rk_ftrl_predict(m, &x2, &p));
    CHECK(NEAR(p, 0.544878892, 1e-6));

    CHECK_OK(rk_ftrl_update(m, &x2, 0.0f, 2.0f, &p));
    CHECK(NEAR(p, 0.544878892, 1e-6));
    CHECK_OK(rk_ftrl_coord(m, 1, &z, &n, &w));
    CHECK(NEAR(z, -0.082698162, 1e-6) && NEAR(n, 2.187572029, 1e-6));
    CHECK(w == 0.0f);
    CHECK_OK(rk_ftrl_coord(m, 2, &z, &n, &w));
    CHECK(NEAR(z, -1.089757785, 1e-6) && NEAR(n, 1.187572029, 1e-6) &&
          NEAR(w, 0.191090802, 1e-6));

    CHECK_OK(rk_ftrl_update(m, &x3, 1.0f, 0.1f, &p));
    CHECK(NEAR(p, 0.512497396, 1e-6));
    CHECK_OK(rk_ftrl_coord(m, 0, &z, &n, &w));
    CHECK(NEAR(z, -0.524493889, 1e-6) && NEAR(n, 0.250594147, 1e-6) &&
          NEAR(w, 0.106091974, 1e-6));
    CHECK_OK(rk_ftrl_coord(m, 3, &z, &n, &w));
    CHECK(NEAR(z, -0.048750260, 1e-6) && NEAR(n, 0.002376588, 1e-6));
    CHECK(w == 0.0f);
    CHECK_EQ_INT(rk_ftrl_nnz(m), 2);
    /* No intercept: coordinate dim is not a coordinate. */
    CHECK_EQ_INT(rk_ftrl_coord(m, 4, &z, &n, &w), RK_EINVAL);
    rk_ftrl_destroy(m);
}

TEST(hand_checked_reference) { hand_case("ref"); }
TEST(hand_checked_auto) { hand_case("auto"); }

/* The intercept follows the same rule without L1 and L2: one step with an
 * empty example and y = 1 gives g = -0.5, z = -0.5, n = 0.25 and
 * w = 0.5 / ((1 + 0.5) / 0.5) = 1/6. */
TEST(intercept_unregularised)
{
    rk_ftrl *m = model(3, 0.5, 1, 0.1, 1, 1);
    CHECK(m);
    rk_sparse e = {NULL, NULL, 0};
    float z, n, w, p;
    CHECK_OK(rk_ftrl_update(m, &e, 1.0f, 1.0f, &p));
    CHECK(p == 0.5f);
    CHECK_OK(rk_ftrl_coord(m, 3, &z, &n, &w));
    CHECK(NEAR(z, -0.5, 1e-7) && NEAR(n, 0.25, 1e-7) && NEAR(w, 1.0 / 6, 1e-7));
    CHECK_OK(rk_ftrl_predict(m, &e, &p));
    CHECK(NEAR(p, 1 / (1 + exp(-1.0 / 6)), 1e-6));
    CHECK_EQ_INT(rk_ftrl_coord(m, 4, &z, &n, &w), RK_EINVAL);
    rk_ftrl_destroy(m);
}

/* ---- kernels -------------------------------------------------------------------------- */

TEST(kernels_match_reference)
{
    rk__ftrl_kernels ref, simd;
    rk__ftrl_kernels_ref(&ref);
    rk__ftrl_kernels_ref(&simd);
    if (rk__ftrl_kernels_avx2(&simd) != 0) {
        fprintf(stderr, "  (no AVX2 on this CPU: reference only)\n");
        return;
    }
    const uint32_t dim = 1000;
    rk__ftrl_rec *a = malloc(dim * sizeof *a), *b = malloc(dim * sizeof *b);
    uint64_t s = 11;
    for (uint32_t i = 0; i < dim; i++) {
        a[i].z = (float)(unit(&s) * 4 - 2);
        a[i].s = (float)(unit(&s) * 3);
        a[i].w = (float)(unit(&s) - 0.5);
        a[i].mark = (uint32_t)rng(&s);
    }
    memcpy(b, a, dim * sizeof *a);
    rk__ftrl_hp hps[] = {{2.0f, 1.0f, 1.0f, 1.0f}, {20.0f, 0.1f, 0.0f, 0.0f},
                         {1.0f, 0.0f, 0.5f, 3.0f}};
    int ok = 1;
    for (int t = 0; t < 400 && ok; t++) {
        /* Distinct indices, every length 0..40 and both value modes. */
        uint32_t n = (uint32_t)(t % 41), idx[41];
        float val[41];
        for (uint32_t k = 0; k < n; k++) {
            uint32_t c;
            int fresh;
            do {
                c = (uint32_t)(rng(&s) % dim);
                fresh = 1;
                for (uint32_t j = 0; j < k; j++) fresh &= idx[j] != c;
            } while (!fresh);
            idx[k] = c;
            val[k] = (float)(unit(&s) * 4 - 2);
        }
        const float *v = t % 2 ? val : NULL;
        float gs = (float)(unit(&s) * 2 - 1) * (t % 7 == 0 ? 1e-20f : 1.0f);
        ref.update(a, idx, v, n, gs, &hps[t % 3]);
        simd.update(b, idx, v, n, gs, &hps[t % 3]);
        ok = memcmp(a, b, dim * sizeof *a) == 0;
        float d1 = ref.dot(a, idx, v, n), d2 = simd.dot(b, idx, v, n);
        ok &= NEAR(d1, d2, 1e-5 * (1 + fabs(d1)));
    }
    free(a);
    free(b);
    CHECK(ok);
}

TEST(kernels_env_override)
{
    rk_ftrl *m = NULL;
    rk_err err = {0};
    setenv("RK_KERNELS", "ref", 1);
    CHECK_OK(rk_ftrl_create(&m, 10, NULL, &err));
    CHECK_STR(rk__ftrl_kernels_of(m)->name, "ref");
    rk_ftrl_destroy(m);
    setenv("RK_KERNELS", "scalar", 1);
    CHECK_OK(rk_ftrl_create(&m, 10, NULL, &err));
    CHECK_STR(rk__ftrl_kernels_of(m)->name, "ref");
    rk_ftrl_destroy(m);
    setenv("RK_KERNELS", "nonsense", 1);
    CHECK_EQ_INT(rk_ftrl_create(&m, 10, NULL, &err), RK_EINVAL);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, "RK_KERNELS=nonsense");
    unsetenv("RK_KERNELS");
    rk__ftrl_kernels k;
    rk__ftrl_kernels_ref(&k);
    if (rk__ftrl_kernels_avx2(&k) == 0) {
        setenv("RK_KERNELS", "avx2", 1);
        CHECK_OK(rk_ftrl_create(&m, 10, NULL, &err));
        CHECK_STR(rk__ftrl_kernels_of(m)->name, "avx2");
        rk_ftrl_destroy(m);
        unsetenv("RK_KERNELS");
    }
}

/* Training on the same data with either kernel set gives the same bytes. */
TEST(training_identical_across_kernels)
{
    synth s;
    synth_make(&s, 3000, 23, 5000, 200, 5, 1);
    rk_sparse_set d = {s.x, s.y, NULL, s.n};
    rk_buf b1, b2;
    rk_buf_init(&b1, 0);
    rk_buf_init(&b2, 0);
    rk_err err = {0};
    const char *ks[] = {"ref", "auto"};
    for (int i = 0; i < 2; i++) {
        setenv("RK_KERNELS", ks[i], 1);
        rk_ftrl *m = model(5000, 0.1, 1, 0.5, 0.5, 1);
        unsetenv("RK_KERNELS");
        CHECK(m);
        CHECK_OK(rk_ftrl_train(m, &d, NULL, NULL, &err));
        CHECK_OK(rk_ftrl_save(m, i ? &b2 : &b1, &err));
        rk_ftrl_destroy(m);
    }
    CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    rk_buf_free(&b1);
    rk_buf_free(&b2);
    synth_free(&s);
}

/* ---- semantics ----------------------------------------------------------------------- */

/* A repeated coordinate is one coordinate holding the sum of the values. */
TEST(repeats_are_summed)
{
    rk_ftrl *a = model(600, 0.3, 1, 0.01, 0.1, 1), *b = model(600, 0.3, 1, 0.01, 0.1, 1);
    CHECK(a && b);
    uint32_t ia[] = {5, 9, 5, 7}, ib[] = {5, 9, 7};
    float va[] = {1, 2, 0.5f, -1}, vb[] = {1.5f, 2, -1};
    rk_sparse xa = {ia, va, 4}, xb = {ib, vb, 3};
    /* Long examples take the heap path of the merge. */
    uint32_t la[600], lb[300];
    float lva[600], lvb[300];
    for (uint32_t k = 0; k < 300; k++) {
        la[2 * k] = la[2 * k + 1] = lb[k] = 299 - k;
        lva[2 * k] = 0.25f;
        lva[2 * k + 1] = 0.5f;
        lvb[k] = 0.75f;
    }
    rk_sparse ya = {la, lva, 600}, yb = {lb, lvb, 300};
    float pa, pb;
    for (int t = 0; t < 5; t++) {
        CHECK_OK(rk_ftrl_update(a, &xa, (float)(t % 2), 1.0f, &pa));
        CHECK_OK(rk_ftrl_update(b, &xb, (float)(t % 2), 1.0f, &pb));
        CHECK(NEAR(pa, pb, 1e-6));
        CHECK_OK(rk_ftrl_update(a, &ya, (float)(t % 2), 1.0f, &pa));
        CHECK_OK(rk_ftrl_update(b, &yb, (float)(t % 2), 1.0f, &pb));
        CHECK(NEAR(pa, pb, 1e-5));
    }
    for (uint32_t i = 0; i < 600; i++) {
        float za, wa, zb, wb;
        CHECK_OK(rk_ftrl_coord(a, i, &za, NULL, &wa));
        CHECK_OK(rk_ftrl_coord(b, i, &zb, NULL, &wb));
        CHECK(NEAR(za, zb, 1e-4) && NEAR(wa, wb, 1e-5));
    }
    rk_ftrl_destroy(a);
    rk_ftrl_destroy(b);
}

TEST(invalid_input_leaves_model_unchanged)
{
    rk_ftrl *m = model(10, 0.1, 1, 1, 1, 1);
    CHECK(m);
    uint32_t ok_i[] = {1, 2}, bad_i[] = {1, 10};
    float ok_v[] = {1, 1}, nan_v[] = {1, NAN}, p = -1;
    rk_sparse good = {ok_i, ok_v, 2}, bad = {bad_i, ok_v, 2}, nan = {ok_i, nan_v, 2};
    CHECK_OK(rk_ftrl_update(m, &good, 1.0f, 1.0f, NULL));
    rk_buf before, after;
    rk_buf_init(&before, 0);
    rk_buf_init(&after, 0);
    rk_err err = {0};
    CHECK_OK(rk_ftrl_save(m, &before, &err));
    CHECK_EQ_INT(rk_ftrl_update(m, &bad, 1.0f, 1.0f, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_update(m, &nan, 1.0f, 1.0f, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_update(m, &good, 1.5f, 1.0f, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_update(m, &good, NAN, 1.0f, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_update(m, &good, 1.0f, -1.0f, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_update(m, &good, 1.0f, INFINITY, &p), RK_EINVAL);
    CHECK(p == -1);
    CHECK_EQ_INT(rk_ftrl_predict(m, &bad, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_predict(m, &nan, &p), RK_EINVAL);
    CHECK(p == -1);
    /* Weight 0: predicts, learns nothing. */
    CHECK_OK(rk_ftrl_update(m, &good, 0.0f, 0.0f, &p));
    CHECK(p > 0.5f);
    CHECK_OK(rk_ftrl_save(m, &after, &err));
    CHECK(before.len == after.len && memcmp(before.data, after.data, before.len) == 0);
    rk_buf_free(&before);
    rk_buf_free(&after);

    /* Bad parameters. */
    rk_ftrl *x = NULL;
    rk_ftrl_params prm;
    rk_ftrl_params_default(&prm);
    CHECK_EQ_INT(rk_ftrl_create(&x, 0, &prm, &err), RK_EINVAL);
    CHECK_EQ_INT(rk_ftrl_create(&x, RK_FTRL_MAX_DIM + 1, &prm, &err), RK_EINVAL);
    prm.alpha = 0;
    CHECK_EQ_INT(rk_ftrl_create(&x, 10, &prm, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "alpha");
    rk_ftrl_params_default(&prm);
    prm.beta = 0;
    prm.l2 = 0;
    CHECK_EQ_INT(rk_ftrl_create(&x, 10, &prm, &err), RK_EINVAL);
    prm.l1 = NAN;
    CHECK_EQ_INT(rk_ftrl_create(&x, 10, &prm, &err), RK_EINVAL);
    CHECK(x == NULL);
    rk_ftrl_destroy(m);
    rk_ftrl_destroy(NULL);
}

TEST(l1_gives_exact_zeros)
{
    /* 40 informative coordinates among 2000: strong L1 keeps few weights
     * (86 when written), no L1 nearly all, and every other weight is
     * exactly 0. */
    synth s;
    synth_make(&s, 4000, 10, 2000, 40, 9, 0);
    rk_sparse_set d = {s.x, s.y, NULL, s.n};
    size_t nnz[2];
    double l1s[2] = {0.0, 5.0};
    rk_err err = {0};
    for (int i = 0; i < 2; i++) {
        rk_ftrl *m = model(2000, 0.1, 1, l1s[i], 1, 1);
        CHECK(m);
        CHECK_OK(rk_ftrl_train(m, &d, NULL, NULL, &err));
        nnz[i] = rk_ftrl_nnz(m);
        size_t zeros = 0;
        for (uint32_t c = 0; c < 2000; c++) {
            float z, w;
            CHECK_OK(rk_ftrl_coord(m, c, &z, NULL, &w));
            if (fabsf(z) <= (float)l1s[i]) CHECK(w == 0.0f);
            zeros += w == 0.0f;
        }
        CHECK_EQ_INT(zeros, 2000 - nnz[i]);
        rk_ftrl_destroy(m);
    }
    CHECK(nnz[0] > 1500);
    CHECK(nnz[1] < nnz[0] / 4);
    CHECK(nnz[1] >= 20);
    synth_free(&s);
}

TEST(learns_planted_model)
{
    synth tr, te;
    synth_make(&tr, 20000, 12, 3000, 3000, 21, 1);
    synth_make(&te, 2000, 12, 3000, 3000, 22, 1);
    rk_sparse_set d = {tr.x, tr.y, NULL, tr.n};
    rk_ftrl *m = model(3000, 0.1, 1, 0.5, 1, 1);
    CHECK(m);
    rk_err err = {0};
    double ll;
    rk_ftrl_train_opts o;
    rk_ftrl_train_opts_default(&o);
    o.epochs = 2;
    o.shuffle = 1;
    CHECK_OK(rk_ftrl_train(m, &d, &o, &ll, &err));
    CHECK(ll < 0.5);
    float *p = malloc(te.n * sizeof *p);
    for (size_t i = 0; i < te.n; i++) CHECK_OK(rk_ftrl_predict(m, &te.x[i], &p[i]));
    double a = auc(p, te.y, te.n);
    free(p);
    if (!(a > 0.9)) fprintf(stderr, "  AUC %.4f\n", a);
    CHECK(a > 0.9);
    rk_ftrl_destroy(m);
    synth_free(&tr);
    synth_free(&te);
}

static double test_auc(const rk_ftrl *m, const synth *te)
{
    float *p = malloc(te->n * sizeof *p);
    for (size_t i = 0; i < te->n; i++)
        if (rk_ftrl_predict(m, &te->x[i], &p[i])) p[i] = NAN;
    double a = auc(p, te->y, te->n);
    free(p);
    return a;
}

TEST(forget_keeps_weights_and_adapts)
{
    /* Two models learn concept A alike; one forgets 99% of its gradient
     * sums. Its weights and predictions stay, its n shrinks by 100, and on
     * the opposite concept B it recovers within far fewer examples. */
    synth a, b, te;
    synth_make(&a, 30000, 12, 300, 300, 31, 1);
    synth_make_signed(&b, 8000, 12, 300, 300, 32, 1, -1.0);
    synth_make_signed(&te, 2000, 12, 300, 300, 33, 1, -1.0);
    rk_sparse_set da = {a.x, a.y, NULL, a.n}, db = {b.x, b.y, NULL, b.n};
    rk_ftrl *m[2];
    rk_err err = {0};
    for (int i = 0; i < 2; i++) {
        CHECK((m[i] = model(300, 0.1, 1, 0.5, 1, 1)));
        CHECK_OK(rk_ftrl_train(m[i], &da, NULL, NULL, &err));
    }
    CHECK(rk_ftrl_forget(m[1], 0.0) == RK_EINVAL);
    CHECK(rk_ftrl_forget(m[1], 1.5) == RK_EINVAL);
    CHECK(rk_ftrl_forget(m[1], NAN) == RK_EINVAL);
    CHECK_OK(rk_ftrl_forget(m[1], 1.0));
    CHECK_OK(rk_ftrl_forget(m[1], 0.01));
    size_t moved = 0;
    for (uint32_t c = 0; c <= 300; c++) {
        float z0, n0, w0, z1, n1, w1;
        CHECK_OK(rk_ftrl_coord(m[0], c, &z0, &n0, &w0));
        CHECK_OK(rk_ftrl_coord(m[1], c, &z1, &n1, &w1));
        CHECK(NEAR(w1, w0, 1e-5 * (1 + fabsf(w0))));
        CHECK(NEAR(n1, 0.01f * n0, 1e-4 * n0 + 1e-30));
        moved += z1 != z0;
    }
    CHECK(moved > 200);
    for (size_t i = 0; i < 50; i++) {
        float p0, p1;
        CHECK_OK(rk_ftrl_predict(m[0], &te.x[i], &p0));
        CHECK_OK(rk_ftrl_predict(m[1], &te.x[i], &p1));
        CHECK(NEAR(p0, p1, 1e-5));
    }
    double before = test_auc(m[0], &te);
    for (int i = 0; i < 2; i++) CHECK_OK(rk_ftrl_train(m[i], &db, NULL, NULL, &err));
    double kept = test_auc(m[0], &te), forgot = test_auc(m[1], &te);
    if (!(before < 0.2 && forgot > kept + 0.2))
        fprintf(stderr, "  AUC on B: %.3f before, %.3f kept, %.3f forgot\n",
                before, kept, forgot);
    CHECK(before < 0.2);          /* concept A ranks B backwards */
    CHECK(forgot > kept + 0.2);
    for (int i = 0; i < 2; i++) rk_ftrl_destroy(m[i]);
    synth_free(&a);
    synth_free(&b);
    synth_free(&te);
}

TEST(train_deterministic_and_reports_bad_example)
{
    synth s;
    synth_make(&s, 500, 8, 400, 50, 3, 1);
    float *w = malloc(s.n * sizeof *w);
    for (size_t i = 0; i < s.n; i++) w[i] = (float)(1 + i % 3);
    rk_sparse_set d = {s.x, s.y, w, s.n};
    rk_ftrl_train_opts o;
    rk_ftrl_train_opts_default(&o);
    o.epochs = 3;
    o.shuffle = 1;
    o.seed = 7;
    rk_buf b[3];
    rk_err err = {0};
    for (int i = 0; i < 3; i++) {
        rk_buf_init(&b[i], 0);
        rk_ftrl *m = model(400, 0.1, 1, 1, 1, 1);
        CHECK(m);
        if (i == 2) o.seed = 8;
        CHECK_OK(rk_ftrl_train(m, &d, &o, NULL, &err));
        CHECK_OK(rk_ftrl_save(m, &b[i], &err));
        rk_ftrl_destroy(m);
    }
    CHECK(b[0].len == b[1].len && memcmp(b[0].data, b[1].data, b[0].len) == 0);
    CHECK(b[0].len != b[2].len || memcmp(b[0].data, b[2].data, b[0].len) != 0);
    for (int i = 0; i < 3; i++) rk_buf_free(&b[i]);

    rk_ftrl *m = model(400, 0.1, 1, 1, 1, 1);
    s.idx[77 * 8 + 3] = 400;
    o.shuffle = 0;
    CHECK_EQ_INT(rk_ftrl_train(m, &d, &o, NULL, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "example 77");
    CHECK_CONTAINS(err.msg, "index 400 >= dim 400");
    s.idx[77 * 8 + 3] = 1;
    w[12] = -1;
    CHECK_EQ_INT(rk_ftrl_train(m, &d, &o, NULL, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "example 12: weight");
    w[12] = 1;
    s.y[5] = 2;
    CHECK_EQ_INT(rk_ftrl_train(m, &d, &o, NULL, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "example 5: label");
    o.epochs = 0;
    CHECK_EQ_INT(rk_ftrl_train(m, &d, &o, NULL, &err), RK_EINVAL);
    rk_ftrl_destroy(m);
    free(w);
    synth_free(&s);
}

/* ---- bytes ---------------------------------------------------------------------------- */

static rk_ftrl *trained(uint32_t dim, int bias, rk_buf *bytes)
{
    synth s;
    synth_make(&s, 300, 6, dim, dim / 4, 17, 1);
    rk_sparse_set d = {s.x, s.y, NULL, s.n};
    rk_ftrl *m = model(dim, 0.1, 1, 0.2, 1, bias);
    rk_err err = {0};
    if (m && (rk_ftrl_train(m, &d, NULL, NULL, &err) ||
              (bytes && rk_ftrl_save(m, bytes, &err)))) {
        rk_ftrl_destroy(m);
        m = NULL;
    }
    synth_free(&s);
    return m;
}

TEST(save_load_round_trip)
{
    for (int bias = 0; bias < 2; bias++) {
        rk_buf b1, b2, b3, b4;
        rk_buf_init(&b1, 0);
        rk_buf_init(&b2, 0);
        rk_buf_init(&b3, 0);
        rk_buf_init(&b4, 0);
        rk_ftrl *m = trained(500, bias, &b1), *l = NULL;
        CHECK(m);
        rk_err err = {0};
        CHECK_OK(rk_ftrl_load(&l, b1.data, b1.len, &err));
        CHECK_EQ_INT(rk_ftrl_dim(l), 500);
        rk_ftrl_params p1, p2;
        rk_ftrl_get_params(m, &p1);
        rk_ftrl_get_params(l, &p2);
        CHECK(p1.alpha == p2.alpha && p1.beta == p2.beta && p1.l1 == p2.l1 &&
              p1.l2 == p2.l2 && p1.bias == p2.bias);
        CHECK_EQ_INT(rk_ftrl_nnz(l), rk_ftrl_nnz(m));
        CHECK_OK(rk_ftrl_save(l, &b2, &err));
        CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
        /* Same predictions, and the same after more training. */
        uint32_t idx[] = {3, 77, 123, 499};
        float val[] = {1, 0.5f, -2, 1};
        rk_sparse x = {idx, val, 4};
        float pm, pl;
        for (int t = 0; t < 20; t++) {
            CHECK_OK(rk_ftrl_update(m, &x, (float)(t % 2), 1.0f, &pm));
            CHECK_OK(rk_ftrl_update(l, &x, (float)(t % 2), 1.0f, &pl));
            CHECK(pm == pl);
        }
        CHECK_OK(rk_ftrl_save(m, &b3, &err));
        CHECK_OK(rk_ftrl_save(l, &b4, &err));
        CHECK(b3.len == b4.len && memcmp(b3.data, b4.data, b3.len) == 0);
        /* An untrained model is header and checksum only. */
        rk_ftrl *e = model(1 << 20, 0.1, 1, 1, 1, 1);
        rk_buf_reset(&b3);
        CHECK_OK(rk_ftrl_save(e, &b3, &err));
        CHECK_EQ_INT(b3.len, 80 + 8);
        rk_ftrl_destroy(e);
        /* A full buffer keeps its content. */
        rk_buf small;
        rk_buf_init(&small, 40);
        CHECK_OK(rk_buf_puts(&small, "keep"));
        CHECK_EQ_INT(rk_ftrl_save(m, &small, &err), RK_ELIMIT);
        CHECK_STR(small.data, "keep");
        rk_buf_free(&small);
        rk_ftrl_destroy(m);
        rk_ftrl_destroy(l);
        rk_buf_free(&b1);
        rk_buf_free(&b2);
        rk_buf_free(&b3);
        rk_buf_free(&b4);
    }
}

static void fix_checksum(unsigned char *p, size_t n)
{
    rk_put_u64(p + n - 8, rk_hash64(p, n - 8, 0));
}

TEST(load_refuses_damage)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_ftrl *m = trained(200, 1, &b), *l = NULL;
    CHECK(m);
    rk_ftrl_destroy(m);
    rk_err err = {0};
    unsigned char *c = malloc(b.len);
    /* Every truncation. */
    for (size_t n = 0; n < b.len; n++) {
        CHECK_EQ_INT(rk_ftrl_load(&l, b.data, n, &err), RK_ECORRUPT);
        CHECK(l == NULL);
    }
    CHECK_EQ_INT(rk_ftrl_load(&l, b.data, b.len - 1, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "FTRL model: truncated");
    /* Every single flipped bit in the first 100 bytes and a few later. */
    for (size_t i = 0; i < b.len; i += (i < 100 ? 1 : 37)) {
        memcpy(c, b.data, b.len);
        c[i] ^= 0x10;
        CHECK(rk_ftrl_load(&l, c, b.len, &err) != 0);
        CHECK(l == NULL);
    }
    memcpy(c, b.data, b.len);
    c[b.len / 2] ^= 1;
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum mismatch");
    memcpy(c, b.data, b.len);
    c[0] = 'X';
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "bad magic");
    /* A newer version is a version error, not corruption. */
    memcpy(c, b.data, b.len);
    rk_put_u32(c + 8, 2);
    fix_checksum(c, b.len);
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_EVERSION);
    CHECK_CONTAINS(err.msg, "version 2 is newer");
    /* Checksummed but inconsistent contents. */
    memcpy(c, b.data, b.len);
    rk_put_u32(c + 16, 0);
    fix_checksum(c, b.len);
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "dim 0");
    memcpy(c, b.data, b.len);
    rk_put_f64(c + 24, -1);
    fix_checksum(c, b.len);
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "alpha");
    memcpy(c, b.data, b.len);
    rk_put_u32(c + 80 + 12, 0); /* second record's index below the first */
    fix_checksum(c, b.len);
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "record 1");
    memcpy(c, b.data, b.len);
    rk_put_f32(c + 80 + 8, -1.0f); /* negative sqrt(n) */
    fix_checksum(c, b.len);
    CHECK_EQ_INT(rk_ftrl_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK(l == NULL);
    free(c);
    rk_buf_free(&b);
}

/* ---- allocation failures ----------------------------------------------------------- */


TEST(allocation_failures)
{
    rk_err err = {0};
    rk_ftrl *m = NULL;
    RK_FAIL_LOOP(rk_ftrl_create(&m, 1000, NULL, &err), (rk_ftrl_destroy(m), m = NULL), 10);
    rk_buf b;
    rk_buf_init(&b, 0);
    m = trained(300, 1, NULL);
    CHECK(m);
    RK_FAIL_LOOP(rk_ftrl_save(m, &b, &err), (void)0, 10);
    rk_ftrl *l = NULL;
    RK_FAIL_LOOP(rk_ftrl_load(&l, b.data, b.len, &err), (rk_ftrl_destroy(l), l = NULL), 10);
    /* Shuffled training allocates its order; a long repeating example
     * allocates its merge. Neither changes the model when it fails. */
    synth s;
    synth_make(&s, 50, 6, 300, 50, 4, 0);
    rk_sparse_set d = {s.x, s.y, NULL, s.n};
    rk_ftrl_train_opts o;
    rk_ftrl_train_opts_default(&o);
    o.shuffle = 1;
    RK_FAIL_LOOP(rk_ftrl_train(m, &d, &o, NULL, &err), (void)0, 10);
    uint32_t idx[300];
    for (uint32_t k = 0; k < 300; k++) idx[k] = k % 150;
    rk_sparse x = {idx, NULL, 300};
    rk_buf before, after;
    rk_buf_init(&before, 0);
    rk_buf_init(&after, 0);
    CHECK_OK(rk_ftrl_save(m, &before, &err));
    rk_mem_fail_at(1, 0);
    CHECK_EQ_INT(rk_ftrl_update(m, &x, 1.0f, 1.0f, NULL), RK_ENOMEM);
    rk_mem_fail_at(0, 0);
    CHECK_OK(rk_ftrl_save(m, &after, &err));
    CHECK(before.len == after.len && memcmp(before.data, after.data, before.len) == 0);
    CHECK_OK(rk_ftrl_update(m, &x, 1.0f, 1.0f, NULL));
    rk_buf_free(&before);
    rk_buf_free(&after);
    synth_free(&s);
    rk_ftrl_destroy(m);
    rk_buf_free(&b);
}

/* ---- fuzz seeds -------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

TEST(fuzz_seeds)
{
    const char *dir = getenv("RK_RANK_WRITE_CORPUS");
    if (!dir) return;
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_ftrl *m = trained(64, 1, &b);
    CHECK(m);
    write_seed(dir, "ftrl_valid", b.data, b.len);
    write_seed(dir, "ftrl_trunc", b.data, b.len - 13);
    rk_ftrl_destroy(m);
    rk_buf_reset(&b);
    m = trained(40, 0, &b);
    CHECK(m);
    write_seed(dir, "ftrl_nobias", b.data, b.len);
    rk_ftrl_destroy(m);
    rk_buf_free(&b);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, sigmoid_matches_libm, hand_checked_reference,
                 hand_checked_auto, intercept_unregularised,
                 kernels_match_reference, kernels_env_override,
                 training_identical_across_kernels, repeats_are_summed,
                 invalid_input_leaves_model_unchanged, l1_gives_exact_zeros,
                 learns_planted_model, forget_keeps_weights_and_adapts,
                 train_deterministic_and_reports_bad_example,
                 save_load_round_trip, load_refuses_damage,
                 allocation_failures, fuzz_seeds);
}
