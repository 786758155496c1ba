/*
 * fm_test.c — the factorization machine (src/rank/fm.c).
 *
 * The gradient is checked against central finite differences of a
 * double-precision forward pass written here from the definition (pairs
 * i < j, not the O(kn) identity the model uses). One plain SGD step with
 * learning rate lr and no L2 moves every parameter by exactly -lr times
 * its gradient, which exposes the model's gradient without internals
 * beyond the parameter rows. RK_RANK_WRITE_CORPUS=dir writes fuzz seeds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/fm_int.h"
#include "rank/ftrl_int.h"
#include "rk_rank.h"
#include "test.h"

static uint64_t rng(uint64_t *s) { return rk__splitmix(s); }
static double unit(uint64_t *s) { return (double)(rng(s) >> 11) * 0x1p-53; }

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

static rk_fm *fm_model(uint32_t dim, uint32_t k, rk_fm_optimizer opt, double lr,
                       double l2, double init_std, uint64_t seed)
{
    rk_fm_params p;
    rk_fm_params_default(&p);
    p.k = k;
    p.optimizer = opt;
    p.lr = lr;
    p.l2_w = p.l2_v = l2;
    p.init_std = init_std;
    p.seed = seed;
    rk_fm *m = NULL;
    rk_err err = {0};
    if (rk_fm_create(&m, dim, &p, &err)) fprintf(stderr, "create: %s\n", err.msg);
    return m;
}

/* ---- gradient ------------------------------------------------------------------- */

/* f(x) in double from the definition: repeated indices merged first, then
 * w0 + sum w_i x_i + sum over pairs i < j of <v_i, v_j> x_i x_j. */
static double ref_margin(rk_fm *m, uint32_t k, const rk_sparse *x)
{
    uint32_t idx[32];
    double val[32];
    uint32_t n = 0;
    for (uint32_t a = 0; a < x->n; a++) {
        uint32_t j;
        for (j = 0; j < n && idx[j] != x->idx[a]; j++) {}
        if (j == n) {
            idx[n] = x->idx[a];
            val[n++] = 0;
        }
        val[j] += x->val ? x->val[a] : 1.0;
    }
    double f = *rk__fm_w0(m);
    for (uint32_t a = 0; a < n; a++) {
        const float *ra = rk__fm_row(m, idx[a]);
        f += ra[0] * val[a];
        for (uint32_t b = a + 1; b < n; b++) {
            const float *rb = rk__fm_row(m, idx[b]);
            double dot = 0;
            for (uint32_t c = 0; c < k; c++) dot += (double)ra[1 + c] * rb[1 + c];
            f += dot * val[a] * val[b];
        }
    }
    return f;
}

static double ref_loss(rk_fm *m, uint32_t k, const rk_sparse *x, double y, double w)
{
    double f = ref_margin(m, k, x);
    /* weight * log loss of sigmoid(f), stable form. */
    return w * (f >= 0 ? (1 - y) * f + log1p(exp(-f)) : -y * f + log1p(exp(f)));
}

TEST(gradient_matches_finite_differences)
{
    const uint32_t dim = 7, k = 4;
    const double lr = 0.5;
    rk_fm *m = fm_model(dim, k, RK_FM_SGD, lr, 0.0, 0.3, 5);
    CHECK(m);
    uint64_t s = 3;
    for (uint32_t i = 0; i < dim; i++) {
        float *r = rk__fm_row(m, i);
        for (uint32_t c = 0; c <= k; c++) r[c] = (float)(unit(&s) - 0.5);
    }
    *rk__fm_w0(m) = 0.1;
    /* Index 4 repeats: its value is 0.5 + 1 = 1.5. */
    uint32_t idx[] = {1, 4, 2, 4, 6};
    float val[] = {0.7f, 0.5f, -1.2f, 1.0f, 2.0f};
    rk_sparse x = {idx, val, 5};
    const double y = 1.0, w = 1.5;
    float p;
    CHECK_OK(rk_fm_predict(m, &x, &p));
    CHECK(fabs(p - 1 / (1 + exp(-ref_margin(m, k, &x)))) < 1e-6);

    /* Finite differences of every parameter of the touched rows. */
    const uint32_t used[] = {1, 2, 4, 6};
    double fd[4][8], before[4][8], eps = 1e-3;
    for (int a = 0; a < 4; a++) {
        float *r = rk__fm_row(m, used[a]);
        for (uint32_t c = 0; c <= k; c++) {
            float keep = r[c];
            before[a][c] = keep;
            r[c] = (float)(keep + eps);
            double hi = ref_loss(m, k, &x, y, w);
            r[c] = (float)(keep - eps);
            double lo = ref_loss(m, k, &x, y, w);
            r[c] = keep;
            /* The perturbation as stored in float, not as asked for. */
            double h = (double)(float)(keep + eps) - (double)(float)(keep - eps);
            fd[a][c] = (hi - lo) / h;
        }
    }
    double w0 = *rk__fm_w0(m);
    *rk__fm_w0(m) = w0 + eps;
    double hi = ref_loss(m, k, &x, y, w);
    *rk__fm_w0(m) = w0 - eps;
    double lo = ref_loss(m, k, &x, y, w);
    *rk__fm_w0(m) = w0;
    double fd0 = (hi - lo) / (2 * eps);

    float row0[5];
    memcpy(row0, rk__fm_row(m, 0), sizeof row0);
    /* One SGD step: delta = -lr * gradient. */
    CHECK_OK(rk_fm_update(m, &x, (float)y, (float)w, &p));
    double worst = 0;
    for (int a = 0; a < 4; a++) {
        const float *r = rk__fm_row(m, used[a]);
        for (uint32_t c = 0; c <= k; c++) {
            double g = -(r[c] - before[a][c]) / lr;
            double err = fabs(g - fd[a][c]) / (1e-3 + fabs(fd[a][c]));
            if (err > worst) worst = err;
        }
    }
    double g0 = -(*rk__fm_w0(m) - w0) / lr;
    if (worst >= 1e-3) fprintf(stderr, "  worst relative gradient error %g\n", worst);
    CHECK(worst < 1e-3);
    CHECK(fabs(g0 - fd0) < 1e-4);
    /* Rows the example does not touch did not move. */
    for (uint32_t c = 0; c <= k; c++) CHECK(rk__fm_row(m, 0)[c] == row0[c]);
    rk_fm_destroy(m);
}

/* ---- learning -------------------------------------------------------------------- */

/* Two fields of four values each; y = parity of (a + b), flipped with
 * probability 0.05, plus two noise features from 40. No linear model can
 * rank this: every value of either field is positive half the time. */
typedef struct xdata {
    size_t n;
    rk_sparse *x;
    uint32_t *idx;
    float *y;
} xdata;

static void xor_make(xdata *d, size_t n, uint64_t seed)
{
    d->n = n;
    d->x = malloc(n * sizeof *d->x);
    d->idx = malloc(n * 4 * sizeof *d->idx);
    d->y = malloc(n * sizeof *d->y);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = (uint32_t)(rng(&s) % 4), b = (uint32_t)(rng(&s) % 4);
        uint32_t *ix = d->idx + i * 4;
        ix[0] = a;
        ix[1] = 4 + b;
        ix[2] = 8 + (uint32_t)(rng(&s) % 40);
        ix[3] = 8 + (uint32_t)(rng(&s) % 40);
        int y = (a + b) % 2;
        if (unit(&s) < 0.05) y = !y;
        d->y[i] = (float)y;
        d->x[i] = (rk_sparse){ix, NULL, 4};
    }
}

static void xor_free(xdata *d)
{
    free(d->x);
    free(d->idx);
    free(d->y);
}

TEST(learns_interaction_linear_cannot)
{
    xdata tr, te;
    xor_make(&tr, 4000, 1);
    xor_make(&te, 1000, 2);
    rk_sparse_set dtr = {tr.x, tr.y, NULL, tr.n};
    rk_err err = {0};
    float *p = malloc(te.n * sizeof *p);

    rk_ftrl *lr = NULL;
    CHECK_OK(rk_ftrl_create(&lr, 48, NULL, &err));
    rk_ftrl_train_opts lo;
    rk_ftrl_train_opts_default(&lo);
    lo.epochs = 5;
    CHECK_OK(rk_ftrl_train(lr, &dtr, &lo, NULL, &err));
    for (size_t i = 0; i < te.n; i++) CHECK_OK(rk_ftrl_predict(lr, &te.x[i], &p[i]));
    double auc_lr = auc(p, te.y, te.n);
    rk_ftrl_destroy(lr);

    rk_fm *m = fm_model(48, 4, RK_FM_ADAGRAD, 0.1, 1e-4, 0.1, 9);
    CHECK(m);
    rk_fm_train_opts o;
    rk_fm_train_opts_default(&o);
    o.epochs = 10;
    rk_fm_train_report rep;
    CHECK_OK(rk_fm_train(m, &dtr, NULL, &o, &rep, &err));
    CHECK_EQ_INT(rep.epochs_run, 10);
    CHECK_EQ_INT(rep.best_epoch, 10);
    CHECK(isnan(rep.valid_logloss));
    for (size_t i = 0; i < te.n; i++) CHECK_OK(rk_fm_predict(m, &te.x[i], &p[i]));
    double auc_fm = auc(p, te.y, te.n);
    rk_fm_destroy(m);
    free(p);
    if (!(auc_fm > 0.9 && auc_lr < 0.6))
        fprintf(stderr, "  AUC: FM %.4f, logistic regression %.4f\n", auc_fm, auc_lr);
    CHECK(auc_fm > 0.9);
    CHECK(auc_lr < 0.6);
    xor_free(&tr);
    xor_free(&te);
}

/* Weak signal on ten frequent features, noise on many rare ones: plain
 * SGD memorises the training set through the rare features, so the
 * validation loss falls for a few epochs (five when written) and then
 * rises. */
TEST(early_stopping_restores_best)
{
    const size_t n = 300, nv = 300;
    const uint32_t dim = 20000, nnz = 20;
    uint32_t *idx = malloc((n + nv) * nnz * sizeof *idx);
    rk_sparse *x = malloc((n + nv) * sizeof *x);
    float *y = malloc((n + nv) * sizeof *y);
    uint64_t s = 77;
    for (size_t i = 0; i < n + nv; i++) {
        double mg = 0;
        for (uint32_t k = 0; k < nnz; k++) {
            uint32_t c = k < 2 ? (uint32_t)(rng(&s) % 10) : (uint32_t)(rng(&s) % dim);
            idx[i * nnz + k] = c;
            if (c < 10) mg += c % 2 ? 1.0 : -1.0;
        }
        x[i] = (rk_sparse){idx + i * nnz, NULL, nnz};
        y[i] = unit(&s) < 1 / (1 + exp(-mg)) ? 1.0f : 0.0f;
    }
    rk_sparse_set tr = {x, y, NULL, n}, va = {x + n, y + n, NULL, nv};
    rk_fm *m = fm_model(dim, 8, RK_FM_SGD, 0.05, 0.0, 0.1, 3);
    CHECK(m);
    rk_fm_train_opts o;
    rk_fm_train_opts_default(&o);
    o.epochs = 30;
    o.patience = 3;
    rk_fm_train_report rep;
    rk_err err = {0};
    CHECK_OK(rk_fm_train(m, &tr, &va, &o, &rep, &err));
    CHECK(rep.best_epoch >= 2);
    CHECK(rep.epochs_run < 30);
    CHECK_EQ_INT(rep.epochs_run, rep.best_epoch + 3);
    double vl;
    CHECK_OK(rk_fm_logloss(m, &va, &vl, &err));
    CHECK(fabs(vl - rep.valid_logloss) < 1e-12);
    /* Overfitting is what stopped it: the last epoch fits the training
     * set far better than the best epoch fits the validation set. */
    CHECK(rep.train_logloss < rep.valid_logloss / 4);

    /* patience 0 runs every epoch and still ends on the best one. */
    rk_fm *m2 = fm_model(dim, 8, RK_FM_SGD, 0.05, 0.0, 0.1, 3);
    o.patience = 0;
    o.epochs = 10;
    CHECK_OK(rk_fm_train(m2, &tr, &va, &o, &rep, &err));
    CHECK_EQ_INT(rep.epochs_run, 10);
    CHECK(rep.best_epoch < 10);
    CHECK_OK(rk_fm_logloss(m2, &va, &vl, &err));
    CHECK(fabs(vl - rep.valid_logloss) < 1e-12);
    rk_fm_destroy(m2);
    rk_fm_destroy(m);
    free(idx);
    free(x);
    free(y);
}

TEST(importance_weight_scales_gradient)
{
    /* Weight 2 on one example moves SGD parameters twice as far as
     * weight 1 (no L2), from the same start. */
    rk_fm *a = fm_model(10, 3, RK_FM_SGD, 0.1, 0.0, 0.1, 4);
    rk_fm *b = fm_model(10, 3, RK_FM_SGD, 0.1, 0.0, 0.1, 4);
    CHECK(a && b);
    uint32_t idx[] = {1, 3, 5};
    rk_sparse x = {idx, NULL, 3};
    float before[4];
    memcpy(before, rk__fm_row(a, 3), sizeof before);
    CHECK_OK(rk_fm_update(a, &x, 1.0f, 1.0f, NULL));
    CHECK_OK(rk_fm_update(b, &x, 1.0f, 2.0f, NULL));
    for (int c = 0; c < 4; c++) {
        double da = rk__fm_row(a, 3)[c] - before[c], db = rk__fm_row(b, 3)[c] - before[c];
        CHECK(fabs(db - 2 * da) < 1e-6);
    }
    rk_fm_destroy(a);
    rk_fm_destroy(b);
}

/* ---- bytes ---------------------------------------------------------------------- */

static rk_fm *trained_fm(uint32_t dim, rk_fm_optimizer opt, rk_buf *out)
{
    xdata d;
    xor_make(&d, 200, 5);
    for (size_t i = 0; i < d.n * 4; i++) d.idx[i] %= dim;
    rk_sparse_set s = {d.x, d.y, NULL, d.n};
    rk_fm *m = fm_model(dim, 3, opt, 0.05, 1e-3, 0.05, 8);
    rk_fm_train_opts o;
    rk_fm_train_opts_default(&o);
    o.epochs = 2;
    rk_err err = {0};
    if (m && (rk_fm_train(m, &s, NULL, &o, NULL, &err) ||
              (out && rk_fm_save(m, out, &err)))) {
        rk_fm_destroy(m);
        m = NULL;
    }
    xor_free(&d);
    return m;
}

TEST(forget_scales_adagrad_sums)
{
    /* After forgetting 99% of its AdaGrad sums a trained model predicts as
     * before and its next step is several times larger than its twin's;
     * an SGD model has no sums and steps alike. */
    for (int opt = 0; opt < 2; opt++) {
        rk_fm *a = trained_fm(16, opt ? RK_FM_SGD : RK_FM_ADAGRAD, NULL);
        rk_fm *b = trained_fm(16, opt ? RK_FM_SGD : RK_FM_ADAGRAD, NULL);
        CHECK(a && b);
        CHECK(rk_fm_forget(b, 0.0) == RK_EINVAL);
        CHECK(rk_fm_forget(b, 2.0) == RK_EINVAL);
        CHECK_OK(rk_fm_forget(b, 0.01));
        uint32_t idx[] = {1, 3, 5};
        rk_sparse x = {idx, NULL, 3};
        float pa, pb, before[4];
        CHECK_OK(rk_fm_predict(a, &x, &pa));
        CHECK_OK(rk_fm_predict(b, &x, &pb));
        CHECK(pa == pb);
        memcpy(before, rk__fm_row(a, 3), sizeof before);
        CHECK(!memcmp(before, rk__fm_row(b, 3), sizeof before));
        CHECK_OK(rk_fm_update(a, &x, 1.0f, 1.0f, NULL));
        CHECK_OK(rk_fm_update(b, &x, 1.0f, 1.0f, NULL));
        double da = fabs(rk__fm_row(a, 3)[0] - before[0]);
        double db = fabs(rk__fm_row(b, 3)[0] - before[0]);
        if (opt) CHECK(da == db);
        else CHECK(db > 3 * da && da > 0);
        rk_fm_destroy(a);
        rk_fm_destroy(b);
    }
}

TEST(save_load_round_trip)
{
    for (int opt = 0; opt < 2; opt++) {
        rk_buf b1, b2;
        rk_buf_init(&b1, 0);
        rk_buf_init(&b2, 0);
        /* 48 touched coordinates of 5000: the file holds just those. */
        rk_fm *m = trained_fm(5000, (rk_fm_optimizer)opt, &b1), *l = NULL;
        CHECK(m);
        CHECK_EQ_INT(b1.len, 96 + 48 * (4 + 4 * 4 * (opt ? 2 : 1)) + 8);
        rk_err err = {0};
        CHECK_OK(rk_fm_load(&l, b1.data, b1.len, &err));
        CHECK_EQ_INT(rk_fm_dim(l), 5000);
        CHECK_OK(rk_fm_save(l, &b2, &err));
        CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
        /* Predictions agree bit for bit, on touched and untouched rows, and
         * stay equal through more training. */
        uint32_t idx[] = {1, 6, 4000, 4999};
        rk_sparse x = {idx, NULL, 4};
        for (int t = 0; t < 10; t++) {
            float pm, pl;
            CHECK_OK(rk_fm_predict(m, &x, &pm));
            CHECK_OK(rk_fm_predict(l, &x, &pl));
            CHECK(pm == pl);
            CHECK_OK(rk_fm_update(m, &x, (float)(t % 2), 1.0f, &pm));
            CHECK_OK(rk_fm_update(l, &x, (float)(t % 2), 1.0f, &pl));
            CHECK(pm == pl);
        }
        rk_buf_reset(&b1);
        rk_buf_reset(&b2);
        CHECK_OK(rk_fm_save(m, &b1, &err));
        CHECK_OK(rk_fm_save(l, &b2, &err));
        CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
        rk_fm_destroy(m);
        rk_fm_destroy(l);
        rk_buf_free(&b1);
        rk_buf_free(&b2);
    }
}

TEST(load_refuses_damage)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_fm *m = trained_fm(100, RK_FM_ADAGRAD, &b), *l = NULL;
    CHECK(m);
    rk_fm_destroy(m);
    rk_err err = {0};
    for (size_t n = 0; n < b.len; n += 7) {
        CHECK_EQ_INT(rk_fm_load(&l, b.data, n, &err), RK_ECORRUPT);
        CHECK(l == NULL);
    }
    CHECK_EQ_INT(rk_fm_load(&l, b.data, b.len - 8, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "FM model: truncated");
    unsigned char *c = malloc(b.len);
    memcpy(c, b.data, b.len);
    c[200] ^= 4;
    CHECK_EQ_INT(rk_fm_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum mismatch");
    memcpy(c, b.data, b.len);
    memcpy(c, "RKFTRL\0\0", 8);
    CHECK_EQ_INT(rk_fm_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "bad magic");
    memcpy(c, b.data, b.len);
    rk_put_u32(c + 8, 9);
    rk_put_u64(c + b.len - 8, rk_hash64(c, b.len - 8, 0));
    CHECK_EQ_INT(rk_fm_load(&l, c, b.len, &err), RK_EVERSION);
    memcpy(c, b.data, b.len);
    rk_put_u32(c + 20, 0); /* k = 0 */
    rk_put_u64(c + b.len - 8, rk_hash64(c, b.len - 8, 0));
    CHECK_EQ_INT(rk_fm_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "k 0");
    memcpy(c, b.data, b.len);
    rk_put_f32(c + 96 + 4 + 16 + 4, -1.0f); /* a negative AdaGrad sum */
    rk_put_u64(c + b.len - 8, rk_hash64(c, b.len - 8, 0));
    CHECK_EQ_INT(rk_fm_load(&l, c, b.len, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "record 0");
    CHECK(l == NULL);
    free(c);
    rk_buf_free(&b);
}

TEST(invalid_input)
{
    rk_fm *m = fm_model(10, 2, RK_FM_ADAGRAD, 0.1, 0, 0.1, 1), *x = NULL;
    CHECK(m);
    uint32_t good[] = {1, 2}, bad[] = {1, 10};
    float nanv[] = {1, NAN}, p = -1;
    rk_sparse g = {good, NULL, 2}, b = {bad, NULL, 2}, nn = {good, nanv, 2};
    CHECK_EQ_INT(rk_fm_predict(m, &b, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_fm_predict(m, &nn, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_fm_update(m, &g, -0.5f, 1.0f, &p), RK_EINVAL);
    CHECK_EQ_INT(rk_fm_update(m, &g, 1.0f, -1.0f, &p), RK_EINVAL);
    CHECK(p == -1);
    rk_err err = {0};
    rk_fm_params prm;
    rk_fm_params_default(&prm);
    prm.k = 0;
    CHECK_EQ_INT(rk_fm_create(&x, 10, &prm, &err), RK_EINVAL);
    prm.k = RK_FM_MAX_K + 1;
    CHECK_EQ_INT(rk_fm_create(&x, 10, &prm, &err), RK_EINVAL);
    rk_fm_params_default(&prm);
    prm.lr = 0;
    CHECK_EQ_INT(rk_fm_create(&x, 10, &prm, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "lr");
    CHECK_EQ_INT(rk_fm_create(&x, 0, NULL, &err), RK_EINVAL);
    CHECK(x == NULL);
    /* A bad training example is named. */
    uint32_t idx[] = {1, 2, 3, 11};
    rk_sparse xs[2] = {{idx, NULL, 2}, {idx + 2, NULL, 2}};
    float ys[2] = {1, 0};
    rk_sparse_set d = {xs, ys, NULL, 2};
    CHECK_EQ_INT(rk_fm_train(m, &d, NULL, NULL, NULL, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "training example 1: index 11 >= dim 10");
    rk_fm_destroy(m);
    rk_fm_destroy(NULL);
}


TEST(allocation_failures)
{
    rk_err err = {0};
    rk_fm *m = NULL, *l = NULL;
    RK_FAIL_LOOP(rk_fm_create(&m, 500, NULL, &err), (rk_fm_destroy(m), m = NULL), 10);
    rk_buf b;
    rk_buf_init(&b, 0);
    m = trained_fm(100, RK_FM_ADAGRAD, NULL);
    CHECK(m);
    RK_FAIL_LOOP(rk_fm_save(m, &b, &err), (void)0, 10);
    RK_FAIL_LOOP(rk_fm_load(&l, b.data, b.len, &err), (rk_fm_destroy(l), l = NULL), 10);
    xdata d;
    xor_make(&d, 50, 6);
    for (size_t i = 0; i < d.n * 4; i++) d.idx[i] %= 100;
    rk_sparse_set s = {d.x, d.y, NULL, d.n};
    rk_fm_train_opts o;
    rk_fm_train_opts_default(&o);
    o.epochs = 2;
    RK_FAIL_LOOP(rk_fm_train(m, &s, &s, &o, NULL, &err), (void)0, 10);
    /* Long examples: merging repeats (n > 256) and finding them
     * (n > 4096) may allocate. */
    uint32_t *idx = malloc(5000 * sizeof *idx);
    for (uint32_t k = 0; k < 5000; k++) idx[k] = k % 100;
    rk_sparse big = {idx, NULL, 300}, huge = {idx, NULL, 5000};
    float p;
    RK_FAIL_LOOP(rk_fm_predict(m, &big, &p), (void)0, 10);
    RK_FAIL_LOOP(rk_fm_predict(m, &huge, &p), (void)0, 10);
    RK_FAIL_LOOP(rk_fm_update(m, &huge, 1.0f, 1.0f, &p), (void)0, 10);
    free(idx);
    xor_free(&d);
    rk_fm_destroy(m);
    rk_buf_free(&b);
}

TEST(fuzz_seeds)
{
    const char *dir = getenv("RK_RANK_WRITE_CORPUS");
    if (!dir) return;
    const rk_fm_optimizer opts[2] = {RK_FM_SGD, RK_FM_ADAGRAD};
    const char *names[2] = {"fm_sgd", "fm_adagrad"};
    for (int i = 0; i < 2; i++) {
        rk_buf b;
        rk_buf_init(&b, 0);
        rk_fm *m = trained_fm(30, opts[i], &b);
        CHECK(m);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(b.data, 1, b.len, f);
            fclose(f);
        }
        rk_fm_destroy(m);
        rk_buf_free(&b);
    }
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, gradient_matches_finite_differences,
                 learns_interaction_linear_cannot, early_stopping_restores_best,
                 importance_weight_scales_gradient,
                 forget_scales_adagrad_sums, save_load_round_trip,
                 load_refuses_damage, invalid_input, allocation_failures,
                 fuzz_seeds);
}
