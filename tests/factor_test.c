/*
 * factor_test.c — iALS, fold-in and EASE (src/retrieval/ials.c, ease.c) and
 * their kernels.
 *
 * The synthetic data has planted structure: items fall into clusters and
 * each user draws most of their items from one cluster, so a working model
 * must rank a user's cluster first. Exact values (EASE) were computed
 * offline in rational arithmetic; the iALS solves are checked against an
 * independent double-precision solve of the normal equations written here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "retrieval/factor_int.h"
#include "rk_retrieval.h"
#include "test.h"

/* ---- fixtures ------------------------------------------------------------- */

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define NCLUSTERS 6

/* Item i is in cluster i % NCLUSTERS; user u prefers cluster u % NCLUSTERS
 * and takes 90% of its 8..20 items from it, with weights 1..3. */
static rk_interactions *synth(uint32_t nusers, uint32_t nitems, uint64_t seed)
{
    size_t cap = (size_t)nusers * 20;
    uint32_t *us = malloc(sizeof(uint32_t) * cap), *is = malloc(sizeof(uint32_t) * cap);
    float *ws = malloc(sizeof(float) * cap);
    size_t n = 0;
    uint64_t s = seed;
    for (uint32_t u = 0; u < nusers; u++) {
        uint32_t cnt = 8 + (uint32_t)(rng(&s) % 13);
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t item;
            if (rng(&s) % 10 != 0) {
                uint32_t per = nitems / NCLUSTERS;
                item = (uint32_t)(rng(&s) % per) * NCLUSTERS + u % NCLUSTERS;
            } else {
                item = (uint32_t)(rng(&s) % nitems);
            }
            us[n] = u;
            is[n] = item;
            ws[n] = (float)(1 + rng(&s) % 3);
            n++;
        }
    }
    rk_interactions *m = NULL;
    rk_err err = {0};
    if (rk_interactions_from_triplets(&m, nusers, nitems, us, is, ws, NULL, n,
                                      &err) != 0)
        fprintf(stderr, "synth: %s\n", err.msg);
    free(us);
    free(is);
    free(ws);
    return m;
}

static void small_opts(rk_ials_opts *o)
{
    rk_ials_opts_default(o);
    o->factors = 12;
    o->iterations = 8;
    o->reg = 0.5;
    o->reg_exp = 0;
    o->alpha = 2.0;
    o->unobserved_weight = 1.0;
    o->threads = 2;
}

typedef struct losses {
    double v[64];
    int n;
} losses;

static int record_loss(void *ctx, const rk_ials_iter_stats *s)
{
    losses *l = ctx;
    if (l->n < 64) l->v[l->n++] = s->loss;
    return 0;
}

/* ---- kernels --------------------------------------------------------------- */

TEST(kernels_match_reference)
{
    rk__fk ref, simd;
    rk__fk_ref(&ref);
    rk__fk_ref(&simd);
    if (rk__fk_avx2(&simd) != 0) {
        fprintf(stderr, "  (no AVX2/FMA on this CPU: reference only)\n");
        return;
    }
    static const size_t ks[] = {1, 3, 8, 13, 16, 24, 31, 32, 33, 40, 64, 72, 100, 128, 129};
    uint64_t s = 7;
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t], ld = k + (t % 3), n = 1 + t * 5;
        float *Y = malloc(sizeof(float) * n * ld), *p = malloc(sizeof(float) * k);
        float *t1 = malloc(sizeof(float) * n), *t2 = malloc(sizeof(float) * n);
        float *o1 = malloc(sizeof(float) * k), *o2 = malloc(sizeof(float) * k);
        for (size_t i = 0; i < n * ld; i++) Y[i] = (float)((double)(rng(&s) % 2001) / 1000.0 - 1.0);
        for (size_t i = 0; i < k; i++) {
            p[i] = (float)((double)(rng(&s) % 2001) / 1000.0 - 1.0);
            o1[i] = o2[i] = (float)i * 0.25f;
        }
        ref.dots(Y, n, k, ld, p, t1);
        simd.dots(Y, n, k, ld, p, t2);
        int ok = 1;
        for (size_t j = 0; j < n; j++)
            if (fabsf(t1[j] - t2[j]) > 1e-4f * (1 + (float)k)) ok = 0;
        float *w = malloc(sizeof(float) * n);
        for (size_t j = 0; j < n; j++) w[j] = (float)((double)(rng(&s) % 2001) / 1000.0 - 1.0);
        for (size_t i = 0; i < k; i++) o1[i] = o2[i] = (float)i * 0.25f;
        ref.axpys(Y, n, k, ld, w, o1);
        simd.axpys(Y, n, k, ld, w, o2);
        for (size_t i = 0; i < k; i++)
            if (fabsf(o1[i] - o2[i]) > 1e-4f * (1 + (float)n)) ok = 0;
        /* Cholesky solve of a random SPD system M M^T + I. */
        double *M = malloc(sizeof(double) * k * k), *A1 = malloc(sizeof(double) * k * k);
        double *A2 = malloc(sizeof(double) * k * k), *b1 = malloc(sizeof(double) * k);
        double *b2 = malloc(sizeof(double) * k);
        for (size_t i = 0; i < k * k; i++) M[i] = (double)(rng(&s) % 2001) / 1000.0 - 1.0;
        for (size_t i = 0; i < k; i++) {
            for (size_t j = 0; j < k; j++) {
                double v = i == j ? 1.0 : 0.0;
                for (size_t l = 0; l < k; l++) v += M[i * k + l] * M[j * k + l];
                /* Only the upper triangle may be read: poison the rest. */
                A1[i * k + j] = A2[i * k + j] = j >= i ? v : NAN;
            }
            b1[i] = b2[i] = (double)(rng(&s) % 2001) / 1000.0 - 1.0;
        }
        if (ref.cholsolve(A1, k, b1) != 0 || simd.cholsolve(A2, k, b2) != 0) ok = 0;
        for (size_t i = 0; i < k; i++)
            if (!(fabs(b1[i] - b2[i]) <= 1e-9 * (1 + fabs(b1[i])))) ok = 0;
        /* Not positive definite: refused by both. */
        for (size_t i = 0; i < k * k; i++) A1[i] = A2[i] = 0;
        A1[0] = A2[0] = 1;
        if (k > 1 && (ref.cholsolve(A1, k, b1) != -1 || simd.cholsolve(A2, k, b2) != -1)) ok = 0;
        free(M); free(A1); free(A2); free(b1); free(b2);
        free(Y); free(p); free(t1); free(t2); free(o1); free(o2); free(w);
        if (!ok) fprintf(stderr, "  k=%zu ld=%zu n=%zu\n", k, ld, n);
        CHECK(ok);
    }
}

TEST(kernels_env_override)
{
    rk__fk t;
    rk_err err = {0};
    const char *was = getenv("RK_KERNELS");
    char saved[32] = "";
    if (was) snprintf(saved, sizeof saved, "%s", was);
    setenv("RK_KERNELS", "ref", 1);
    CHECK_OK(rk__fk_select(&t, &err));
    CHECK_STR(t.name, "ref");
    setenv("RK_KERNELS", "bogus", 1);
    CHECK_EQ_INT(rk__fk_select(&t, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "RK_KERNELS");
    unsetenv("RK_KERNELS");
    CHECK_OK(rk__fk_select(&t, &err));
    if (was) setenv("RK_KERNELS", saved, 1);
}

/* ---- training --------------------------------------------------------------- */

static void check_decreasing(const rk_ials_opts *base, int *ok)
{
    rk_interactions *m = synth(300, 120, 1);
    rk_ials_opts o = *base;
    losses l = {{0}, 0};
    o.compute_loss = 1;
    o.on_iter = record_loss;
    o.on_iter_ctx = &l;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    *ok = rk_ials_train(m, &o, &md, &err) == 0 && l.n == (int)o.iterations;
    for (int i = 1; *ok && i < l.n; i++) {
        if (!(l.v[i] < l.v[i - 1])) {
            fprintf(stderr, "  iteration %d: loss %.9g after %.9g\n", i + 1,
                    l.v[i], l.v[i - 1]);
            *ok = 0;
        }
    }
    if (*ok && !(l.v[l.n - 1] < 0.9 * l.v[0])) *ok = 0;
    rk_ials_free(md);
    rk_interactions_free(m);
}

TEST(ials_loss_decreases_cg)
{
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 12;
    int ok;
    check_decreasing(&o, &ok);
    CHECK(ok);
}

TEST(ials_loss_decreases_cholesky)
{
    rk_ials_opts o;
    small_opts(&o);
    o.solver = RK_IALS_CHOLESKY;
    o.iterations = 12;
    int ok;
    check_decreasing(&o, &ok);
    CHECK(ok);
}

TEST(ials_loss_decreases_frequency_scaled)
{
    /* Rendle et al.'s setting: unobserved weight below 1, no alpha,
     * regularisation scaled by the row's weight mass. */
    rk_ials_opts o;
    small_opts(&o);
    o.alpha = 0;
    o.unobserved_weight = 0.1;
    o.reg = 0.02;
    o.reg_exp = 1;
    o.iterations = 12;
    int ok;
    check_decreasing(&o, &ok);
    CHECK(ok);
    o.solver = RK_IALS_CHOLESKY;
    check_decreasing(&o, &ok);
    CHECK(ok);
}

TEST(ials_loss_decreases_log_confidence)
{
    rk_ials_opts o;
    small_opts(&o);
    o.log_eps = 0.5;
    o.alpha = 4;
    int ok;
    check_decreasing(&o, &ok);
    CHECK(ok);
}

TEST(ials_cg_approaches_cholesky)
{
    /* With as many CG steps as factors, CG solves each row exactly (in
     * exact arithmetic), so the whole trajectory matches Cholesky's. */
    rk_interactions *m = synth(200, 90, 3);
    rk_ials_opts o;
    small_opts(&o);
    o.factors = 8;
    o.iterations = 4;
    o.cg_steps = 8;
    rk_ials_model *cg = NULL, *ch = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &cg, &err));
    o.solver = RK_IALS_CHOLESKY;
    CHECK_OK(rk_ials_train(m, &o, &ch, &err));
    const float *a = rk_ials_user_factors(cg), *b = rk_ials_user_factors(ch);
    double maxd = 0, maxv = 0;
    for (size_t i = 0; i < (size_t)200 * 8; i++) {
        maxd = fmax(maxd, fabs((double)a[i] - b[i]));
        maxv = fmax(maxv, fabs((double)b[i]));
    }
    a = rk_ials_item_factors(cg);
    b = rk_ials_item_factors(ch);
    for (size_t i = 0; i < (size_t)90 * 8; i++) maxd = fmax(maxd, fabs((double)a[i] - b[i]));
    rk_ials_free(cg);
    rk_ials_free(ch);
    rk_interactions_free(m);
    if (maxd > 1e-3 * maxv) fprintf(stderr, "  max diff %g (max value %g)\n", maxd, maxv);
    CHECK(maxd <= 1e-3 * maxv);
}

TEST(ials_cg_three_steps_close_to_cholesky_quality)
{
    /* The default 3 warm-started steps reach nearly the exact loss. */
    rk_interactions *m = synth(300, 120, 5);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 10;
    losses l1 = {{0}, 0}, l2 = {{0}, 0};
    o.compute_loss = 1;
    o.on_iter = record_loss;
    o.on_iter_ctx = &l1;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    rk_ials_free(md);
    o.solver = RK_IALS_CHOLESKY;
    o.on_iter_ctx = &l2;
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    rk_ials_free(md);
    rk_interactions_free(m);
    CHECK(l1.v[9] < l2.v[9] * 1.02);
}

TEST(ials_deterministic)
{
    rk_interactions *m = synth(400, 150, 9);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 3;
    rk_ials_model *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &a, &err));
    CHECK_OK(rk_ials_train(m, &o, &b, &err));
    o.threads = 1; /* stronger than promised: any thread count */
    CHECK_OK(rk_ials_train(m, &o, &c, &err));
    o.seed = 43;
    CHECK_OK(rk_ials_train(m, &o, &d, &err));
    size_t xs = sizeof(float) * 400 * 12, ys = sizeof(float) * 150 * 12;
    int same_ab = memcmp(rk_ials_user_factors(a), rk_ials_user_factors(b), xs) == 0 &&
                  memcmp(rk_ials_item_factors(a), rk_ials_item_factors(b), ys) == 0 &&
                  memcmp(rk_ials_gramian(a), rk_ials_gramian(b), sizeof(float) * 144) == 0;
    int same_ac = memcmp(rk_ials_user_factors(a), rk_ials_user_factors(c), xs) == 0 &&
                  memcmp(rk_ials_item_factors(a), rk_ials_item_factors(c), ys) == 0;
    int same_ad = memcmp(rk_ials_user_factors(a), rk_ials_user_factors(d), xs) == 0;
    rk_ials_free(a);
    rk_ials_free(b);
    rk_ials_free(c);
    rk_ials_free(d);
    rk_interactions_free(m);
    CHECK(same_ab);
    CHECK(same_ac);
    CHECK(!same_ad);
}

TEST(ials_train_more_is_warm_start)
{
    /* 3 + 2 iterations equal 5 at once: the factors are the whole state. */
    rk_interactions *m = synth(250, 100, 11);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 5;
    rk_ials_model *a = NULL, *b = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &a, &err));
    o.iterations = 3;
    CHECK_OK(rk_ials_train(m, &o, &b, &err));
    CHECK_OK(rk_ials_train_more(b, m, NULL, 2, &err));
    CHECK_EQ_INT(rk_ials_iterations_done(b), 5);
    int same = memcmp(rk_ials_user_factors(a), rk_ials_user_factors(b),
                      sizeof(float) * 250 * 12) == 0 &&
               memcmp(rk_ials_item_factors(a), rk_ials_item_factors(b),
                      sizeof(float) * 100 * 12) == 0;
    /* Newer data with more users and items grows the model. */
    rk_interactions *m2 = synth(260, 108, 12);
    o.factors = 7;
    CHECK_EQ_INT(rk_ials_train_more(b, m2, &o, 1, &err), RK_EINVAL);
    o.factors = 0;
    CHECK_OK(rk_ials_train_more(b, m2, &o, 1, &err));
    CHECK_EQ_INT(rk_ials_nusers(b), 260);
    CHECK_EQ_INT(rk_ials_nitems(b), 108);
    rk_ials_free(a);
    rk_ials_free(b);
    rk_interactions_free(m);
    rk_interactions_free(m2);
    CHECK(same);
}

static int stop_after_two(void *ctx, const rk_ials_iter_stats *s)
{
    int *calls = ctx;
    (*calls)++;
    return s->iteration >= 2 && s->flops > 0 && s->seconds >= 0 && isnan(s->loss);
}

TEST(ials_callback_stats_and_stop)
{
    rk_interactions *m = synth(100, 60, 2);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 10;
    int calls = 0;
    o.on_iter = stop_after_two;
    o.on_iter_ctx = &calls;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    CHECK_EQ_INT(calls, 2);
    CHECK_EQ_INT(rk_ials_iterations_done(md), 2);
    rk_ials_opts got;
    rk_ials_get_opts(md, &got);
    CHECK(got.on_iter == NULL && got.factors == 12 && got.reg == 0.5);
    rk_ials_free(md);
    rk_interactions_free(m);
}

TEST(ials_bad_options)
{
    rk_interactions *m = synth(20, 12, 2);
    rk_ials_model *md = NULL;
    rk_err err = {0};
    rk_ials_opts o;
    small_opts(&o);
    o.factors = 0;
    CHECK_EQ_INT(rk_ials_train(m, &o, &md, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "factors");
    small_opts(&o);
    o.reg = 0;
    CHECK_EQ_INT(rk_ials_train(m, &o, &md, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "reg");
    small_opts(&o);
    o.cg_steps = 0;
    CHECK_EQ_INT(rk_ials_train(m, &o, &md, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "cg_steps");
    small_opts(&o);
    o.unobserved_weight = -1;
    CHECK_EQ_INT(rk_ials_train(m, &o, &md, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "unobserved_weight");
    small_opts(&o);
    o.alpha = NAN;
    CHECK_EQ_INT(rk_ials_train(m, &o, &md, &err), RK_EINVAL);
    CHECK(md == NULL);
    rk_interactions_free(m);
}

TEST(ials_empty_rows)
{
    /* Users and items without interactions get zero vectors, not NaNs. */
    uint32_t us[] = {0, 0, 2}, is[] = {1, 3, 3};
    float ws[] = {1, 2, 1};
    rk_interactions *m = NULL;
    rk_err err = {0};
    CHECK_OK(rk_interactions_from_triplets(&m, 4, 5, us, is, ws, NULL, 3, &err));
    rk_ials_opts o;
    small_opts(&o);
    o.factors = 4;
    o.cg_steps = 2;
    rk_ials_model *md = NULL;
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    const float *X = rk_ials_user_factors(md), *Y = rk_ials_item_factors(md);
    for (int c = 0; c < 4; c++) {
        CHECK(X[1 * 4 + c] == 0 && X[3 * 4 + c] == 0);
        CHECK(Y[0 * 4 + c] == 0 && Y[2 * 4 + c] == 0 && Y[4 * 4 + c] == 0);
        CHECK(isfinite(X[c]) && isfinite(Y[4 + c]));
    }
    rk_ials_free(md);
    rk_interactions_free(m);
}

/* ---- fold-in ----------------------------------------------------------------- */

/* The normal equations of one user solved independently, in double:
 * (a0 G + sum (c - a0) y y^T + lambda I) x = sum c y, Gaussian elimination
 * with partial pivoting. */
static void reference_solve(const rk_ials_model *md, const uint32_t *items,
                            const float *w, size_t n, double *x)
{
    rk_ials_opts o;
    rk_ials_get_opts(md, &o);
    const uint32_t k = rk_ials_k(md), ni = rk_ials_nitems(md);
    const float *Y = rk_ials_item_factors(md);
    double *A = calloc((size_t)k * (k + 1), sizeof(double));
    for (uint32_t a = 0; a < k; a++)
        for (uint32_t b = 0; b < k; b++) {
            double g = 0;
            for (uint32_t i = 0; i < ni; i++) g += (double)Y[i * k + a] * Y[i * k + b];
            A[a * (k + 1) + b] = o.unobserved_weight * g;
        }
    double lam = o.reg * pow((double)n + o.unobserved_weight * ni, o.reg_exp);
    for (uint32_t a = 0; a < k; a++) A[a * (k + 1) + a] += lam;
    for (size_t j = 0; j < n; j++) {
        double f = o.log_eps > 0 ? log1p(w[j] / o.log_eps) : w[j];
        double c = 1 + o.alpha * f;
        const float *y = Y + (size_t)items[j] * k;
        for (uint32_t a = 0; a < k; a++) {
            for (uint32_t b = 0; b < k; b++)
                A[a * (k + 1) + b] += (c - o.unobserved_weight) * y[a] * y[b];
            A[a * (k + 1) + k] += c * y[a];
        }
    }
    for (uint32_t c = 0; c < k; c++) {
        uint32_t p = c;
        for (uint32_t r = c + 1; r < k; r++)
            if (fabs(A[r * (k + 1) + c]) > fabs(A[p * (k + 1) + c])) p = r;
        for (uint32_t j = 0; j <= k; j++) {
            double t = A[c * (k + 1) + j];
            A[c * (k + 1) + j] = A[p * (k + 1) + j];
            A[p * (k + 1) + j] = t;
        }
        for (uint32_t r = 0; r < k; r++) {
            if (r == c) continue;
            double f = A[r * (k + 1) + c] / A[c * (k + 1) + c];
            for (uint32_t j = c; j <= k; j++) A[r * (k + 1) + j] -= f * A[c * (k + 1) + j];
        }
    }
    for (uint32_t c = 0; c < k; c++) x[c] = A[c * (k + 1) + k] / A[c * (k + 1) + c];
    free(A);
}

static void check_fold_in_matches(rk_ials_solver solver, double reg_exp, int *ok)
{
    *ok = 0;
    rk_interactions *m = synth(150, 90, 21);
    rk_ials_opts o;
    small_opts(&o);
    o.solver = solver;
    o.reg_exp = reg_exp;
    if (reg_exp > 0) {
        o.reg = 0.01;
        o.unobserved_weight = 0.2;
    }
    rk_ials_model *md = NULL;
    rk_err err = {0};
    if (rk_ials_train(m, &o, &md, &err) != 0) return;
    if (solver == RK_IALS_CG && rk_ials_solve_users(md, m, &err) != 0) return;
    const uint32_t k = rk_ials_k(md);
    float out[64];
    double ref[64];
    double worst = 0, worst_ref = 0;
    for (uint32_t u = 0; u < 150; u += 7) {
        uint64_t b = m->user_ptr[u], e = m->user_ptr[u + 1];
        if (rk_ials_fold_in(md, m->items + b, m->weight + b, (size_t)(e - b),
                            out, &err) != 0)
            return;
        reference_solve(md, m->items + b, m->weight + b, (size_t)(e - b), ref);
        const float *x = rk_ials_user_factors(md) + (size_t)u * k;
        for (uint32_t c = 0; c < k; c++) {
            worst = fmax(worst, fabs((double)out[c] - x[c]));
            worst_ref = fmax(worst_ref, fabs((double)out[c] - ref[c]));
        }
    }
    if (worst > 1e-4 || worst_ref > 1e-4)
        fprintf(stderr, "  fold-in vs trained %g, vs double solve %g\n", worst,
                worst_ref);
    *ok = worst <= 1e-4 && worst_ref <= 1e-4;
    rk_ials_free(md);
    rk_interactions_free(m);
}

TEST(fold_in_equals_cholesky_user_solve)
{
    int ok;
    check_fold_in_matches(RK_IALS_CHOLESKY, 0, &ok);
    CHECK(ok);
    check_fold_in_matches(RK_IALS_CHOLESKY, 1, &ok);
    CHECK(ok);
}

TEST(fold_in_equals_solve_users_after_cg)
{
    int ok;
    check_fold_in_matches(RK_IALS_CG, 0, &ok);
    CHECK(ok);
}

TEST(fold_in_merges_repeats_and_order)
{
    rk_interactions *m = synth(120, 60, 4);
    rk_ials_opts o;
    small_opts(&o);
    rk_ials_model *md = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    uint32_t a[] = {5, 17, 5, 40}, b[] = {40, 17, 5};
    float wa[] = {1, 2, 0.5f, 3}, wb[] = {3, 2, 1.5f};
    float xa[12], xb[12], xz[12];
    CHECK_OK(rk_ials_fold_in(md, a, wa, 4, xa, &err));
    CHECK_OK(rk_ials_fold_in(md, b, wb, 3, xb, &err));
    CHECK(memcmp(xa, xb, sizeof xa) == 0);
    CHECK_OK(rk_ials_fold_in(md, NULL, NULL, 0, xz, &err));
    for (int c = 0; c < 12; c++) CHECK(xz[c] == 0);
    uint32_t bad[] = {3, 60};
    CHECK_EQ_INT(rk_ials_fold_in(md, bad, NULL, 2, xz, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "item 60");
    float wneg[] = {1, -1};
    uint32_t ok2[] = {3, 4};
    CHECK_EQ_INT(rk_ials_fold_in(md, ok2, wneg, 2, xz, &err), RK_EINVAL);
    rk_ials_free(md);
    rk_interactions_free(m);
}

/* Items of the history's cluster among the top 10 unseen items. */
static int cluster_hits(const rk_ials_model *md, const uint32_t *hist, size_t n,
                        uint32_t cluster)
{
    uint32_t ni = rk_ials_nitems(md);
    float x[64];
    float *sc = malloc(sizeof(float) * ni);
    rk_err err = {0};
    if (rk_ials_fold_in(md, hist, NULL, n, x, &err) != 0) {
        free(sc);
        return -1;
    }
    rk_ials_score_all(md, x, sc);
    for (size_t j = 0; j < n; j++) sc[hist[j]] = -INFINITY;
    int hits = 0;
    for (int t = 0; t < 10; t++) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < ni; i++)
            if (sc[i] > sc[best]) best = i;
        hits += best % NCLUSTERS == cluster;
        sc[best] = -INFINITY;
    }
    free(sc);
    return hits;
}

TEST(fold_in_unseen_user_gets_neighbours)
{
    rk_interactions *m = synth(600, 180, 8);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 10;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    /* A user the model never saw, three items of cluster 2. */
    uint32_t hist[4] = {2, 14, 38, 0};
    int h = cluster_hits(md, hist, 3, 2);
    CHECK(h >= 8);
    /* One new event from cluster 5 on top of a cluster-5 history moves the
     * recommendations there: the next request changes without retraining. */
    uint32_t h5[4] = {5, 11, 17, 23};
    CHECK(cluster_hits(md, h5, 1, 5) >= 5);
    CHECK(cluster_hits(md, h5, 4, 5) >= 8);
    float before[12], after[12];
    CHECK_OK(rk_ials_fold_in(md, hist, NULL, 3, before, &err));
    hist[3] = 29; /* cluster 5 */
    CHECK_OK(rk_ials_fold_in(md, hist, NULL, 4, after, &err));
    CHECK(memcmp(before, after, sizeof before) != 0);
    rk_ials_free(md);
    rk_interactions_free(m);
}

TEST(ials_score_all_is_dot)
{
    rk_interactions *m = synth(80, 50, 6);
    rk_ials_opts o;
    small_opts(&o);
    rk_ials_model *md = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    float sc[50];
    const float *x = rk_ials_user_factors(md) + 3 * 12, *Y = rk_ials_item_factors(md);
    rk_ials_score_all(md, x, sc);
    for (int i = 0; i < 50; i++) {
        double d = 0;
        for (int c = 0; c < 12; c++) d += (double)x[c] * Y[i * 12 + c];
        CHECK(fabs(d - sc[i]) < 1e-5);
    }
    /* G is Y^T Y. */
    const float *G = rk_ials_gramian(md);
    for (int a = 0; a < 12; a++)
        for (int b = 0; b < 12; b++) {
            double g = 0;
            for (int i = 0; i < 50; i++) g += (double)Y[i * 12 + a] * Y[i * 12 + b];
            CHECK(fabs(g - G[a * 12 + b]) < 1e-4 * (1 + fabs(g)));
        }
    rk_ials_free(md);
    rk_interactions_free(m);
}

/* ---- files ---------------------------------------------------------------- */

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void flip_byte(const char *p, long off)
{
    FILE *f = fopen(p, "r+b");
    if (!f) return;
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

TEST(ials_save_load_round_trip)
{
    const char *dir = rk_test_tmpdir("ials_file");
    char path[512];
    snprintf(path, sizeof path, "%s/model.ials", dir);
    rk_interactions *m = synth(90, 40, 13);
    rk_ials_opts o;
    small_opts(&o);
    o.reg_exp = 0.5;
    o.log_eps = 2;
    rk_ials_model *a = NULL, *b = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &a, &err));
    CHECK_OK(rk_ials_save(a, path, &err));
    CHECK_OK(rk_ials_load(path, &b, &err));
    CHECK_EQ_INT(rk_ials_k(b), 12);
    CHECK_EQ_INT(rk_ials_nusers(b), 90);
    CHECK_EQ_INT(rk_ials_nitems(b), 40);
    CHECK_EQ_INT(rk_ials_iterations_done(b), 8);
    CHECK(memcmp(rk_ials_user_factors(a), rk_ials_user_factors(b), sizeof(float) * 90 * 12) == 0);
    CHECK(memcmp(rk_ials_item_factors(a), rk_ials_item_factors(b), sizeof(float) * 40 * 12) == 0);
    CHECK(memcmp(rk_ials_gramian(a), rk_ials_gramian(b), sizeof(float) * 144) == 0);
    rk_ials_opts ga, gb;
    rk_ials_get_opts(a, &ga);
    rk_ials_get_opts(b, &gb);
    CHECK(ga.reg == gb.reg && ga.reg_exp == gb.reg_exp && ga.log_eps == gb.log_eps &&
          ga.alpha == gb.alpha && ga.seed == gb.seed && ga.cg_steps == gb.cg_steps);
    uint32_t h[] = {1, 7, 9};
    float xa[12], xb[12];
    CHECK_OK(rk_ials_fold_in(a, h, NULL, 3, xa, &err));
    CHECK_OK(rk_ials_fold_in(b, h, NULL, 3, xb, &err));
    CHECK(memcmp(xa, xb, sizeof xa) == 0);
    /* A loaded model trains on like the original. */
    CHECK_OK(rk_ials_train_more(a, m, NULL, 1, &err));
    CHECK_OK(rk_ials_train_more(b, m, NULL, 1, &err));
    CHECK(memcmp(rk_ials_user_factors(a), rk_ials_user_factors(b), sizeof(float) * 90 * 12) == 0);
    /* No temporary left behind. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
    rk_ials_free(a);
    rk_ials_free(b);
    rk_interactions_free(m);
    rk_test_rmdir(dir);
}

TEST(ials_load_refuses_damage)
{
    const char *dir = rk_test_tmpdir("ials_damage");
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/model.ials", dir);
    rk_interactions *m = synth(60, 30, 14);
    rk_ials_opts o;
    small_opts(&o);
    rk_ials_model *a = NULL, *b = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ials_train(m, &o, &a, &err));
    CHECK_OK(rk_ials_save(a, path, &err));
    long size = file_size(path);
    CHECK_EQ_INT(size, 128 + 4 * 12 * (60 + 30) + 8);

    /* A flipped bit in the factors: checksum. */
    flip_byte(path, 128 + 1000);
    CHECK_EQ_INT(rk_ials_load(path, &b, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum");
    CHECK(b == NULL);

    /* Truncated. */
    CHECK_OK(rk_ials_save(a, path, &err));
    CHECK(truncate(path, size - 100) == 0);
    CHECK_EQ_INT(rk_ials_load(path, &b, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "truncated");
    CHECK(truncate(path, 50) == 0);
    CHECK_EQ_INT(rk_ials_load(path, &b, &err), RK_ECORRUPT);
    CHECK(truncate(path, 0) == 0);
    CHECK_EQ_INT(rk_ials_load(path, &b, &err), RK_ECORRUPT);

    /* Dimensions that do not match the size (checked before allocating). */
    CHECK_OK(rk_ials_save(a, path, &err));
    flip_byte(path, 24); /* nusers */
    CHECK_EQ_INT(rk_ials_load(path, &b, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "header implies");

    /* A newer version. */
    CHECK_OK(rk_ials_save(a, path, &err));
    flip_byte(path, 9);
    CHECK_EQ_INT(rk_ials_load(path, &b, &err), RK_EVERSION);

    /* Not a model at all, and a missing file. */
    snprintf(cmd, sizeof cmd, "%s/other", dir);
    FILE *f = fopen(cmd, "wb");
    fputs("user,item,weight\n1,2,3\n", f);
    fclose(f);
    CHECK_EQ_INT(rk_ials_load(cmd, &b, &err), RK_EPARSE);
    CHECK_CONTAINS(err.msg, "not a rankd iALS model file");
    CHECK_EQ_INT(rk_ials_load("/nonexistent/dir/x.ials", &b, &err), RK_ENOTFOUND);
    /* An EASE file is not an iALS file. */
    rk_ease_model *e = NULL;
    CHECK_OK(rk_ease_train(m, NULL, &e, &err));
    CHECK_OK(rk_ease_save(e, cmd, &err));
    CHECK_EQ_INT(rk_ials_load(cmd, &b, &err), RK_EPARSE);
    rk_ease_free(e);
    /* Saving into a missing directory is a clean I/O error. */
    CHECK_EQ_INT(rk_ials_save(a, "/nonexistent/dir/x.ials", &err), RK_EIO);
    rk_ials_free(a);
    rk_interactions_free(m);
    rk_test_rmdir(dir);
}

/* ---- EASE ------------------------------------------------------------------ */

/* 5 users x 4 active items (catalog ids 0, 2, 3, 5 of 6), one weight 2.
 * Expected B computed offline in exact rational arithmetic with
 * lambda = 0.5: G = X^T X + 0.5 I, P = G^-1, B_ij = -P_ij / P_jj. */
static rk_interactions *ease_fixture(void)
{
    static const float X[5][4] = {{1, 1, 0, 0}, {1, 0, 1, 0}, {0, 1, 1, 1},
                                  {1, 1, 1, 0}, {0, 0, 2, 1}};
    static const uint32_t cat[4] = {0, 2, 3, 5};
    uint32_t us[20], is[20];
    float ws[20];
    size_t n = 0;
    for (uint32_t u = 0; u < 5; u++)
        for (int j = 0; j < 4; j++)
            if (X[u][j] != 0) {
                us[n] = u;
                is[n] = cat[j];
                ws[n] = X[u][j];
                n++;
            }
    rk_interactions *m = NULL;
    rk_err err = {0};
    rk_interactions_from_triplets(&m, 5, 6, us, is, ws, NULL, n, &err);
    return m;
}

static const float EASE_B[4][4] = {
    {0.000000000f, 0.642487047f, 0.671532847f, -0.401002506f},
    {0.541484716f, 0.000000000f, -0.175182482f, 0.265664160f},
    {0.401746725f, -0.124352332f, 0.000000000f, 0.436090226f},
    {-0.698689956f, 0.549222798f, 1.270072993f, 0.000000000f},
};

TEST(ease_matches_hand_computed)
{
    rk_interactions *m = ease_fixture();
    CHECK(m != NULL);
    rk_ease_opts o;
    rk_ease_opts_default(&o);
    CHECK(o.max_items == 50000);
    o.lambda = 0.5;
    rk_ease_model *md = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ease_train(m, &o, &md, &err));
    uint32_t n;
    const uint32_t *items;
    const float *B;
    rk_ease_matrix(md, &n, &items, &B);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(rk_ease_nitems(md), 6);
    CHECK(items[0] == 0 && items[1] == 2 && items[2] == 3 && items[3] == 5);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) CHECK(fabsf(B[a * 4 + b] - EASE_B[a][b]) < 1e-5f);
    /* History: catalog 0 (weight 1) and 3 (weight 0.5); catalog 1 and 4
     * have no interactions and score 0. */
    uint32_t h[] = {0, 3};
    float w[] = {1, 0.5f}, sc[6];
    CHECK_OK(rk_ease_score(md, h, w, 2, sc, &err));
    static const float want[6] = {0.200873362f, 0, 0.580310881f, 0.671532847f, 0, -0.182957393f};
    for (int i = 0; i < 6; i++) CHECK(fabsf(sc[i] - want[i]) < 1e-5f);
    uint32_t bad[] = {6};
    CHECK_EQ_INT(rk_ease_score(md, bad, NULL, 1, sc, &err), RK_EINVAL);
    /* An inactive history item contributes nothing. */
    uint32_t h2[] = {1, 0};
    float sc2[6];
    CHECK_OK(rk_ease_score(md, h2, NULL, 2, sc2, &err));
    for (int i = 0; i < 4; i++) CHECK(fabsf(sc2[items[i]] - EASE_B[0][i]) < 1e-5f);
    rk_ease_free(md);
    rk_interactions_free(m);
}

TEST(ease_refuses_too_many_items)
{
    rk_interactions *m = synth(50, 120, 3);
    rk_ease_opts o;
    rk_ease_opts_default(&o);
    o.max_items = 100;
    rk_ease_model *md = NULL;
    rk_err err = {0};
    CHECK_EQ_INT(rk_ease_train(m, &o, &md, &err), RK_ELIMIT);
    CHECK_CONTAINS(err.msg, "max_items 100");
    CHECK_CONTAINS(err.msg, "GB");
    CHECK(md == NULL);
    o.max_items = 120;
    CHECK_OK(rk_ease_train(m, &o, &md, &err));
    rk_ease_free(md);
    o.lambda = 0;
    CHECK_EQ_INT(rk_ease_train(m, &o, &md, &err), RK_EINVAL);
    rk_interactions_free(m);
}

TEST(ease_ranks_cluster)
{
    rk_interactions *m = synth(400, 120, 17);
    rk_ease_model *md = NULL;
    rk_err err = {0};
    rk_ease_opts o;
    rk_ease_opts_default(&o);
    o.lambda = 20;
    CHECK_OK(rk_ease_train(m, &o, &md, &err));
    uint32_t h[] = {4, 10, 16};
    float sc[120];
    CHECK_OK(rk_ease_score(md, h, NULL, 3, sc, &err));
    for (int j = 0; j < 3; j++) sc[h[j]] = -INFINITY;
    int hits = 0;
    for (int t = 0; t < 10; t++) {
        int best = 0;
        for (int i = 1; i < 120; i++)
            if (sc[i] > sc[best]) best = i;
        hits += best % NCLUSTERS == 4;
        sc[best] = -INFINITY;
    }
    CHECK(hits >= 8);
    rk_ease_free(md);
    rk_interactions_free(m);
}

TEST(ease_save_load)
{
    const char *dir = rk_test_tmpdir("ease_file");
    char path[512];
    snprintf(path, sizeof path, "%s/model.ease", dir);
    rk_interactions *m = ease_fixture();
    rk_ease_opts o;
    rk_ease_opts_default(&o);
    o.lambda = 0.5;
    rk_ease_model *a = NULL, *b = NULL;
    rk_err err = {0};
    CHECK_OK(rk_ease_train(m, &o, &a, &err));
    CHECK_OK(rk_ease_save(a, path, &err));
    CHECK_OK(rk_ease_load(path, &b, &err));
    uint32_t na, nb;
    const uint32_t *ia, *ib;
    const float *Ba, *Bb;
    rk_ease_matrix(a, &na, &ia, &Ba);
    rk_ease_matrix(b, &nb, &ib, &Bb);
    CHECK(na == nb && memcmp(ia, ib, 4 * na) == 0 && memcmp(Ba, Bb, 4 * na * na) == 0);
    CHECK_EQ_INT(rk_ease_nitems(b), 6);
    rk_ease_free(b);
    b = NULL;
    long size = file_size(path);
    CHECK_EQ_INT(size, 64 + 4 * 4 + 4 * 16 + 8);
    flip_byte(path, 64 + 16 + 5);
    CHECK_EQ_INT(rk_ease_load(path, &b, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum");
    CHECK_OK(rk_ease_save(a, path, &err));
    CHECK(truncate(path, size - 1) == 0);
    CHECK_EQ_INT(rk_ease_load(path, &b, &err), RK_ECORRUPT);
    CHECK(b == NULL);
    rk_ease_free(a);
    rk_interactions_free(m);
    rk_test_rmdir(dir);
}

/* ---- allocation failure ------------------------------------------------------ */


TEST(ials_train_allocation_failures)
{
    rk_interactions *m = synth(70, 40, 19);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 2;
    o.compute_loss = 1;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    for (unsigned threads = 1; threads <= 2; threads++) {
        o.threads = threads;
        for (int solver = 0; solver < 2; solver++) {
            o.solver = (rk_ials_solver)solver;
            RK_FAIL_LOOP(rk_ials_train(m, &o, &md, &err), (rk_ials_free(md), md = NULL), 400);
        }
    }
    /* train_more, solve_users and fold-in fail cleanly too and leave a
     * usable model. */
    o.threads = 2;
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    RK_FAIL_LOOP(rk_ials_train_more(md, m, NULL, 1, &err), (void)0, 400);
    RK_FAIL_LOOP(rk_ials_solve_users(md, m, &err), (void)0, 400);
    uint32_t h[] = {1, 2, 3};
    float x[12];
    RK_FAIL_LOOP(rk_ials_fold_in(md, h, NULL, 3, x, &err), (void)0, 100);
    for (int c = 0; c < 12; c++) CHECK(isfinite(x[c]));
    rk_ials_free(md);
    rk_interactions_free(m);
}

TEST(ease_and_load_allocation_failures)
{
    const char *dir = rk_test_tmpdir("factor_enomem");
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/m.ials", dir);
    snprintf(p2, sizeof p2, "%s/m.ease", dir);
    rk_interactions *m = synth(40, 30, 23);
    rk_ease_model *e = NULL;
    rk_ials_model *md = NULL;
    rk_err err = {0};
    RK_FAIL_LOOP(rk_ease_train(m, NULL, &e, &err), (void)0, 100);
    CHECK_OK(rk_ease_save(e, p2, &err));
    rk_ease_free(e);
    e = NULL;
    RK_FAIL_LOOP(rk_ease_load(p2, &e, &err), (rk_ease_free(e), e = NULL), 100);
    rk_ials_opts o;
    small_opts(&o);
    o.iterations = 1;
    CHECK_OK(rk_ials_train(m, &o, &md, &err));
    CHECK_OK(rk_ials_save(md, p1, &err));
    rk_ials_free(md);
    md = NULL;
    RK_FAIL_LOOP(rk_ials_load(p1, &md, &err), (rk_ials_free(md), md = NULL), 100);
    rk_interactions_free(m);
    rk_test_rmdir(dir);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, kernels_match_reference, kernels_env_override,
                 ials_loss_decreases_cg, ials_loss_decreases_cholesky,
                 ials_loss_decreases_frequency_scaled,
                 ials_loss_decreases_log_confidence, ials_cg_approaches_cholesky,
                 ials_cg_three_steps_close_to_cholesky_quality,
                 ials_deterministic, ials_train_more_is_warm_start,
                 ials_callback_stats_and_stop,
                 ials_bad_options, ials_empty_rows,
                 fold_in_equals_cholesky_user_solve,
                 fold_in_equals_solve_users_after_cg,
                 fold_in_merges_repeats_and_order,
                 fold_in_unseen_user_gets_neighbours, ials_score_all_is_dot,
                 ials_save_load_round_trip, ials_load_refuses_damage,
                 ease_matches_hand_computed, ease_refuses_too_many_items,
                 ease_ranks_cluster, ease_save_load,
                 ials_train_allocation_failures,
                 ease_and_load_allocation_failures);
}
