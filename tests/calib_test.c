/*
 * calib_test.c — probability calibration (src/rank/calib.c): the
 * down-sampling correction, Platt scaling, isotonic regression and the
 * rk_calib handle. RK_RANK_WRITE_CORPUS=dir writes fuzz seeds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/ftrl_int.h"
#include "rk_rank.h"
#include "test.h"

static uint64_t rng(uint64_t *s) { return rk__splitmix(s); }
static double unit(uint64_t *s) { return (double)(rng(s) >> 11) * 0x1p-53; }
static double gauss(uint64_t *s)
{
    double u = unit(s), v = unit(s);
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}
static double sigm(double z) { return 1 / (1 + exp(-z)); }

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* ---- down-sampling ------------------------------------------------------------- */

TEST(downsample_formula)
{
    /* p = q / (q + (1 - q) / r): q = 0.5, r = 0.1 gives 0.5 / 5.5 = 1/11;
     * q = 0.2, r = 0.25 gives 0.2 / (0.2 + 3.2) = 1/17. */
    CHECK(NEAR(rk_calib_downsample(0.5, 0.1), 1.0 / 11, 1e-15));
    CHECK(NEAR(rk_calib_downsample(0.2, 0.25), 1.0 / 17, 1e-15));
    CHECK(rk_calib_downsample(0.3, 1.0) == 0.3);
    CHECK(rk_calib_downsample(0.0, 0.1) == 0.0);
    CHECK(rk_calib_downsample(1.0, 0.1) == 1.0);
    CHECK(rk_calib_downsample(-1.0, 0.1) == 0.0);
    CHECK(isnan(rk_calib_downsample(NAN, 0.1)));
    /* The odds shrink by exactly the rate. */
    for (double q = 0.01; q < 1; q += 0.07) {
        double p = rk_calib_downsample(q, 0.05);
        CHECK(NEAR(p / (1 - p), 0.05 * q / (1 - q), 1e-12));
    }
}

/* A well-specified logistic model trained on data whose negatives were
 * kept at rate r: its raw mean prediction overshoots the base rate, the
 * corrected one matches it (when written: base rate 0.0680, raw mean
 * 0.3336, corrected 0.0682). The model is FTRL with two dense features
 * and its intercept, without regularisation. */
TEST(downsample_recovers_base_rate)
{
    const double r = 0.1, b = -3.2, w1 = 1.0, w2 = -0.7;
    const size_t n = 400000, nt = 100000;
    uint32_t idx2[2] = {0, 1};
    float *val = malloc(2 * n * sizeof *val), *y = malloc(n * sizeof *y);
    rk_sparse *x = malloc(n * sizeof *x);
    uint64_t s = 42;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        double a = gauss(&s), c = gauss(&s);
        int yi = unit(&s) < sigm(b + w1 * a + w2 * c);
        if (!yi && unit(&s) >= r) continue;
        val[2 * kept] = (float)a;
        val[2 * kept + 1] = (float)c;
        y[kept] = (float)yi;
        x[kept] = (rk_sparse){idx2, val + 2 * kept, 2};
        kept++;
    }
    rk_ftrl_params prm = {0.1, 1, 0, 0, 1};
    rk_ftrl *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ftrl_create(&m, 2, &prm, &err));
    rk_ftrl_train_opts o;
    rk_ftrl_train_opts_default(&o);
    o.epochs = 4;
    o.shuffle = 1;
    rk_sparse_set d = {x, y, NULL, kept};
    CHECK_OK(rk_ftrl_train(m, &d, &o, NULL, &err));
    /* Score the true (not down-sampled) distribution. */
    double base = 0, raw = 0, cor = 0;
    for (size_t i = 0; i < nt; i++) {
        double a = gauss(&s), c = gauss(&s);
        float v[2] = {(float)a, (float)c}, q;
        rk_sparse xi = {idx2, v, 2};
        CHECK_OK(rk_ftrl_predict(m, &xi, &q));
        base += sigm(b + w1 * a + w2 * c);
        raw += q;
        cor += rk_calib_downsample(q, r);
    }
    base /= (double)nt;
    raw /= (double)nt;
    cor /= (double)nt;
    if (!(fabs(cor - base) < 0.01))
        fprintf(stderr, "  base rate %.4f, raw %.4f, corrected %.4f\n", base, raw, cor);
    CHECK(fabs(cor - base) < 0.01);
    CHECK(raw > base + 0.1);
    rk_ftrl_destroy(m);
    free(val);
    free(y);
    free(x);
}

/* ---- isotonic -------------------------------------------------------------------------- */

/*
 * By hand, x = 1..6, y = 1 0 0 1 0 1, unit weights:
 *   (1: 1) (2: 0) violate -> [1,2] = 0.5; (3: 0) violates -> [1,3] = 1/3;
 *   (4: 1) fine; (5: 0) violates -> [4,5] = 0.5 >= 1/3 fine; (6: 1) fine.
 *   Blocks [1,3] = 1/3, [4,5] = 1/2, [6] = 1; points (1, 1/3) (3, 1/3)
 *   (4, 1/2) (5, 1/2) (6, 1).
 * Weighted, x = 1..4, y = 0 1 0 1, w = 1 3 1 1: (3: 0) violates (2: 1)
 *   -> [2,3] = (3 * 1 + 1 * 0) / 4 = 0.75; points (1, 0) (2, .75) (3, .75)
 *   (4, 1).
 * Ties, x = 1 1 2, y = 1 0 0: x = 1 pools to 0.5, then 0 violates ->
 *   [1,2] = 1/3; points (1, 1/3) (2, 1/3).
 */
TEST(pav_hand_examples)
{
    rk_err err = {0};
    float *px, *py;
    size_t n;
    const float x1[] = {1, 2, 3, 4, 5, 6}, y1[] = {1, 0, 0, 1, 0, 1};
    CHECK_OK(rk_calib_isotonic_fit(x1, y1, NULL, 6, &px, &py, &n, &err));
    const float ex1[] = {1, 3, 4, 5, 6}, ey1[] = {1.0f / 3, 1.0f / 3, 0.5f, 0.5f, 1};
    CHECK_EQ_INT(n, 5);
    for (size_t i = 0; i < 5; i++) CHECK(px[i] == ex1[i] && NEAR(py[i], ey1[i], 1e-7));
    rk_free(px);
    rk_free(py);

    const float x2[] = {4, 2, 3, 1}, y2[] = {1, 1, 0, 0}, w2[] = {1, 3, 1, 1};
    CHECK_OK(rk_calib_isotonic_fit(x2, y2, w2, 4, &px, &py, &n, &err));
    const float ex2[] = {1, 2, 3, 4}, ey2[] = {0, 0.75f, 0.75f, 1};
    CHECK_EQ_INT(n, 4);
    for (size_t i = 0; i < 4; i++) CHECK(px[i] == ex2[i] && NEAR(py[i], ey2[i], 1e-7));
    rk_free(px);
    rk_free(py);

    const float x3[] = {1, 1, 2}, y3[] = {1, 0, 0};
    CHECK_OK(rk_calib_isotonic_fit(x3, y3, NULL, 3, &px, &py, &n, &err));
    CHECK_EQ_INT(n, 2);
    CHECK(px[0] == 1 && px[1] == 2 && NEAR(py[0], 1.0 / 3, 1e-7) && py[0] == py[1]);
    rk_free(px);
    rk_free(py);

    /* Through the handle: scores x / 10, linear and step application,
     * clipped at both ends. */
    float q1[6];
    for (int i = 0; i < 6; i++) q1[i] = x1[i] / 10;
    rk_calib_params prm;
    rk_calib_params_default(&prm);
    prm.method = RK_CALIB_ISOTONIC;
    for (int step = 0; step < 2; step++) {
        prm.iso_step = step;
        rk_calib *c = NULL;
        CHECK_OK(rk_calib_create(&c, &prm, &err));
        CHECK(rk_calib_apply(c, 0.42f) == 0.42f); /* identity until fitted */
        CHECK_OK(rk_calib_fit(c, q1, y1, NULL, 6, &err));
        for (int i = 0; i < 6; i++)
            CHECK(NEAR(rk_calib_apply(c, q1[i]), i < 3 ? 1.0 / 3 : i < 5 ? 0.5 : 1.0, 1e-6));
        CHECK(NEAR(rk_calib_apply(c, 0.35f), step ? 1.0 / 3 : 1.0 / 3 + 0.5 / 6, 1e-6));
        CHECK(NEAR(rk_calib_apply(c, 0.55f), step ? 0.5 : 0.75, 1e-6));
        CHECK(NEAR(rk_calib_apply(c, 0.0f), 1.0 / 3, 1e-6));
        CHECK(rk_calib_apply(c, 0.99f) == 1.0f);
        CHECK(isnan(rk_calib_apply(c, NAN)));
        rk_calib_destroy(c);
    }
}

TEST(isotonic_is_monotone)
{
    const size_t n = 5000;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *w = malloc(n * sizeof *w);
    uint64_t s = 8;
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)unit(&s);
        /* A bumpy, mostly increasing truth, and some exact ties. */
        if (i % 10 == 0) x[i] = (float)((int)(x[i] * 20) / 20.0);
        double t = 0.1 + 0.7 * x[i] + 0.15 * sin(x[i] * 25);
        y[i] = unit(&s) < t ? 1.0f : 0.0f;
        w[i] = (float)(0.5 + unit(&s));
    }
    rk_calib_params prm;
    rk_calib_params_default(&prm);
    prm.method = RK_CALIB_ISOTONIC;
    rk_err err = {0};
    for (int step = 0; step < 2; step++) {
        prm.iso_step = step;
        rk_calib *c = NULL;
        CHECK_OK(rk_calib_create(&c, &prm, &err));
        CHECK_OK(rk_calib_fit(c, x, y, w, n, &err));
        const float *px, *py;
        size_t np;
        rk_calib_isotonic_points(c, &px, &py, &np);
        CHECK(np >= 2 && np <= 2 * n);
        for (size_t i = 1; i < np; i++) CHECK(px[i] > px[i - 1] && py[i] >= py[i - 1]);
        float prev = -1;
        for (int g = -10; g <= 1010; g++) {
            float v = rk_calib_apply(c, (float)g / 1000);
            CHECK(v >= prev && v >= 0 && v <= 1);
            prev = v;
        }
        rk_calib_destroy(c);
    }
    free(x);
    free(y);
    free(w);
}

/* ---- Platt -------------------------------------------------------------------------- */

TEST(platt_recovers_coefficients)
{
    const size_t n = 200000;
    const double a0 = 0.6, b0 = -0.8;
    float *q = malloc(n * sizeof *q), *y = malloc(n * sizeof *y);
    uint64_t s = 5;
    for (size_t i = 0; i < n; i++) {
        q[i] = (float)(0.01 + 0.98 * unit(&s));
        double z = a0 * log(q[i] / (1 - q[i])) + b0;
        y[i] = unit(&s) < sigm(z) ? 1.0f : 0.0f;
    }
    double a, b;
    rk_err err = {0};
    CHECK_OK(rk_calib_platt_fit(q, y, NULL, n, 0, &a, &b, &err));
    if (!(NEAR(a, a0, 0.03) && NEAR(b, b0, 0.03)))
        fprintf(stderr, "  a %.4f b %.4f\n", a, b);
    CHECK(NEAR(a, a0, 0.03) && NEAR(b, b0, 0.03));
    /* Smoothing barely matters with this much data. */
    double as, bs;
    CHECK_OK(rk_calib_platt_fit(q, y, NULL, n, 1, &as, &bs, &err));
    CHECK(NEAR(as, a, 1e-3) && NEAR(bs, b, 1e-3));
    /* Doubling every weight changes nothing. */
    float *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = 2;
    double aw, bw;
    CHECK_OK(rk_calib_platt_fit(q, y, w, n, 0, &aw, &bw, &err));
    CHECK(NEAR(aw, a, 1e-6) && NEAR(bw, b, 1e-6));
    free(w);
    /* Through the handle, after a down-sampling correction: the fit sees
     * corrected scores, so apply reproduces sigmoid(a logit(p) + b). */
    rk_calib_params prm;
    rk_calib_params_default(&prm);
    prm.method = RK_CALIB_PLATT;
    prm.neg_rate = 0.5;
    prm.platt_smooth = 0;
    rk_calib *c = NULL;
    CHECK_OK(rk_calib_create(&c, &prm, &err));
    CHECK_OK(rk_calib_fit(c, q, y, NULL, n, &err));
    double ca, cb;
    rk_calib_platt_coef(c, &ca, &cb);
    /* logit(p) = logit(q) + log(0.5): the slope is unchanged and the
     * intercept absorbs a log(0.5). */
    CHECK(NEAR(ca, a, 1e-3) && NEAR(cb, b - a * log(0.5), 2e-3));
    double p = rk_calib_downsample(0.3, 0.5);
    CHECK(NEAR(rk_calib_apply(c, 0.3f), sigm(ca * log(p / (1 - p)) + cb), 1e-6));
    rk_calib_destroy(c);

    /* Separable data: without smoothing the slope grows, with it the fit
     * stays finite and ordered. */
    const float sq[] = {0.1f, 0.2f, 0.8f, 0.9f}, sy[] = {0, 0, 1, 1};
    CHECK_OK(rk_calib_platt_fit(sq, sy, NULL, 4, 1, &a, &b, &err));
    CHECK(isfinite(a) && a > 0 && isfinite(b));
    free(q);
    free(y);
}

/* ---- handle: bytes and errors --------------------------------------------------------- */

static rk_calib *fitted(rk_calib_method method, int step, double rate)
{
    const size_t n = 300;
    float q[300], y[300];
    uint64_t s = 2;
    for (size_t i = 0; i < n; i++) {
        q[i] = (float)unit(&s);
        y[i] = unit(&s) < q[i] ? 1.0f : 0.0f;
    }
    rk_calib_params prm;
    rk_calib_params_default(&prm);
    prm.method = method;
    prm.iso_step = step;
    prm.neg_rate = rate;
    rk_calib *c = NULL;
    rk_err err = {0};
    if (rk_calib_create(&c, &prm, &err) || rk_calib_fit(c, q, y, NULL, n, &err)) {
        rk_calib_destroy(c);
        return NULL;
    }
    return c;
}

TEST(save_load_round_trip)
{
    const rk_calib_method ms[] = {RK_CALIB_NONE, RK_CALIB_PLATT, RK_CALIB_ISOTONIC,
                                  RK_CALIB_ISOTONIC};
    for (int t = 0; t < 4; t++) {
        rk_calib *c = fitted(ms[t], t == 3, t % 2 ? 0.25 : 1.0), *l = NULL;
        CHECK(c);
        rk_buf b1, b2;
        rk_buf_init(&b1, 0);
        rk_buf_init(&b2, 0);
        rk_err err = {0};
        CHECK_OK(rk_calib_save(c, &b1, &err));
        CHECK_OK(rk_calib_load(&l, b1.data, b1.len, &err));
        CHECK_OK(rk_calib_save(l, &b2, &err));
        CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
        rk_calib_params p1, p2;
        rk_calib_get_params(c, &p1);
        rk_calib_get_params(l, &p2);
        CHECK(p1.method == p2.method && p1.neg_rate == p2.neg_rate &&
              p1.iso_step == p2.iso_step && p1.platt_smooth == p2.platt_smooth);
        for (int i = 0; i <= 100; i++) {
            float q = (float)i / 100;
            CHECK(rk_calib_apply(c, q) == rk_calib_apply(l, q));
        }
        float qs[3] = {0.1f, 0.5f, 0.9f}, ps[3];
        rk_calib_apply_many(l, qs, ps, 3);
        for (int i = 0; i < 3; i++) CHECK(ps[i] == rk_calib_apply(c, qs[i]));
        rk_calib_destroy(c);
        rk_calib_destroy(l);
        rk_buf_free(&b1);
        rk_buf_free(&b2);
    }
}

TEST(load_refuses_damage)
{
    rk_calib *c = fitted(RK_CALIB_ISOTONIC, 0, 1.0), *l = NULL;
    CHECK(c);
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_err err = {0};
    CHECK_OK(rk_calib_save(c, &b, &err));
    rk_calib_destroy(c);
    for (size_t n = 0; n < b.len; n++) {
        CHECK_EQ_INT(rk_calib_load(&l, b.data, n, &err), RK_ECORRUPT);
        CHECK(l == NULL);
    }
    CHECK_CONTAINS(err.msg, "calibration: truncated");
    unsigned char *d = malloc(b.len);
    memcpy(d, b.data, b.len);
    d[70] ^= 0x40;
    CHECK_EQ_INT(rk_calib_load(&l, d, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum mismatch");
    memcpy(d, b.data, b.len);
    d[3] = 'x';
    CHECK_EQ_INT(rk_calib_load(&l, d, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "bad magic");
    memcpy(d, b.data, b.len);
    rk_put_u32(d + 8, 3);
    rk_put_u64(d + b.len - 8, rk_hash64(d, b.len - 8, 0));
    CHECK_EQ_INT(rk_calib_load(&l, d, b.len, &err), RK_EVERSION);
    CHECK_CONTAINS(err.msg, "newer");
    /* Points out of order, with a valid checksum. */
    memcpy(d, b.data, b.len);
    rk_put_f32(d + 64 + 8, -1.0f);
    rk_put_u64(d + b.len - 8, rk_hash64(d, b.len - 8, 0));
    CHECK_EQ_INT(rk_calib_load(&l, d, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "point 1");
    memcpy(d, b.data, b.len);
    rk_put_f64(d + 24, 1.5);
    rk_put_u64(d + b.len - 8, rk_hash64(d, b.len - 8, 0));
    CHECK_EQ_INT(rk_calib_load(&l, d, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "neg_rate");
    memcpy(d, b.data, b.len);
    rk_put_u64(d + 48, (uint64_t)1 << 60);
    rk_put_u64(d + b.len - 8, rk_hash64(d, b.len - 8, 0));
    CHECK_EQ_INT(rk_calib_load(&l, d, b.len, &err), RK_ECORRUPT);
    CHECK(l == NULL);
    free(d);
    rk_buf_free(&b);
}

TEST(bad_input)
{
    rk_err err = {0};
    rk_calib *c = NULL;
    rk_calib_params prm;
    rk_calib_params_default(&prm);
    prm.neg_rate = 0;
    CHECK_EQ_INT(rk_calib_create(&c, &prm, &err), RK_EINVAL);
    prm.neg_rate = 1.01;
    CHECK_EQ_INT(rk_calib_create(&c, &prm, &err), RK_EINVAL);
    prm.neg_rate = 1;
    prm.method = (rk_calib_method)7;
    CHECK_EQ_INT(rk_calib_create(&c, &prm, &err), RK_EINVAL);
    CHECK(c == NULL);
    CHECK_OK(rk_calib_create(&c, NULL, &err));
    float q[] = {0.1f, 0.5f}, y[] = {0, 1}, bad_y[] = {0, 2}, w0[] = {0, 0}, wneg[] = {1, -1};
    CHECK_EQ_INT(rk_calib_fit(c, q, y, NULL, 0, &err), RK_EINVAL);
    CHECK_EQ_INT(rk_calib_fit(c, q, bad_y, NULL, 2, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "point 1");
    CHECK_EQ_INT(rk_calib_fit(c, q, y, w0, 2, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "total weight");
    CHECK_EQ_INT(rk_calib_fit(c, q, y, wneg, 2, &err), RK_EINVAL);
    double a, b;
    CHECK_EQ_INT(rk_calib_platt_fit(q, y, NULL, 0, 0, &a, &b, &err), RK_EINVAL);
    float nanq[] = {NAN, 0.5f};
    CHECK_EQ_INT(rk_calib_platt_fit(nanq, y, NULL, 2, 0, &a, &b, &err), RK_EINVAL);
    /* Method none: fitting is a no-op and apply is the correction. */
    CHECK_OK(rk_calib_fit(c, q, y, NULL, 2, &err));
    CHECK(rk_calib_apply(c, 0.25f) == 0.25f);
    rk_calib_destroy(c);
    rk_calib_destroy(NULL);
}


TEST(allocation_failures)
{
    float q[50], y[50];
    uint64_t s = 1;
    for (int i = 0; i < 50; i++) {
        q[i] = (float)unit(&s);
        y[i] = (float)(unit(&s) < q[i]);
    }
    rk_err err = {0};
    rk_calib_params prm;
    rk_calib_params_default(&prm);
    for (int m = 0; m < 3; m++) {
        prm.method = (rk_calib_method)m;
        rk_calib *c = NULL, *l = NULL;
        RK_FAIL_LOOP(rk_calib_create(&c, &prm, &err), (void)0, 10);
        float before = rk_calib_apply(c, 0.3f);
        RK_FAIL_LOOP(rk_calib_fit(c, q, y, NULL, 50, &err), (void)0, 10);
        CHECK(m == 0 || rk_calib_apply(c, 0.3f) != before);
        rk_buf b;
        rk_buf_init(&b, 0);
        RK_FAIL_LOOP(rk_calib_save(c, &b, &err), (void)0, 10);
        RK_FAIL_LOOP(rk_calib_load(&l, b.data, b.len, &err), (void)0, 10);
        rk_calib_destroy(l);
        rk_calib_destroy(c);
        rk_buf_free(&b);
    }
}

TEST(fuzz_seeds)
{
    const char *dir = getenv("RK_RANK_WRITE_CORPUS");
    if (!dir) return;
    const rk_calib_method ms[] = {RK_CALIB_NONE, RK_CALIB_PLATT, RK_CALIB_ISOTONIC};
    const char *names[] = {"calib_none", "calib_platt", "calib_isotonic"};
    for (int i = 0; i < 3; i++) {
        rk_calib *c = fitted(ms[i], 0, 0.5);
        CHECK(c);
        rk_buf b;
        rk_buf_init(&b, 0);
        rk_err err = {0};
        CHECK_OK(rk_calib_save(c, &b, &err));
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(b.data, 1, b.len, f);
            fclose(f);
        }
        rk_calib_destroy(c);
        rk_buf_free(&b);
    }
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, downsample_formula, downsample_recovers_base_rate,
                 pav_hand_examples, isotonic_is_monotone,
                 platt_recovers_coefficients, save_load_round_trip,
                 load_refuses_damage, bad_input, allocation_failures,
                 fuzz_seeds);
}
