/*
 * fm.c — second-order factorization machine (Rendle 2010) for binary
 * labels, trained on weighted log loss by SGD or AdaGrad.
 *
 * Parameters: w0 (double: every example updates it) and one row per
 * coordinate, w_i then v_i[0..k), in one array; AdaGrad's sums of squared
 * gradients in a second array of the same shape. A bitmap records which
 * coordinates training has touched: the rest still hold their initial
 * values, which are a pure function of (seed, coordinate, factor), so
 * files store touched rows only and loading regenerates the others.
 *
 * For an example with unique coordinates, with S_f = sum_i v_if x_i:
 *   f(x)         = w0 + sum_i w_i x_i + 1/2 sum_f (S_f^2 - sum_i v_if^2 x_i^2)
 *   df/dw_i      = x_i
 *   df/dv_if     = x_i (S_f - v_if x_i)
 * and the loss gradient is weight * (p - y) times these, plus the L2 terms
 * of the touched coordinates. All of an example's steps use the S_f from
 * before the step. Repeated coordinates are merged first (their values
 * summed), so duplicates mean what they mean everywhere else.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/fm_int.h"
#include "rank/ftrl_int.h"

struct rk_fm {
    rk_fm_params p;
    uint32_t dim, k, stride;
    float *P;           /* dim rows of stride floats: w_i, v_i[0..k) */
    float *G;           /* AdaGrad sums, same shape; NULL for SGD */
    double w0, g0;      /* bias and its AdaGrad sum */
    uint64_t *touched;  /* dim bits */
    float lr, l2w, l2v;
};

#define ADA_EPS 1e-7f

void rk_fm_params_default(rk_fm_params *p)
{
    p->k = 8;
    p->optimizer = RK_FM_ADAGRAD;
    p->lr = 0.05;
    p->l2_w = 1e-5;
    p->l2_v = 1e-5;
    p->init_std = 0.01;
    p->seed = 1;
}

void rk_fm_train_opts_default(rk_fm_train_opts *o)
{
    o->epochs = 10;
    o->patience = 2;
    o->shuffle = 1;
    o->seed = 1;
}

float *rk__fm_row(rk_fm *m, uint32_t i) { return m->P + (size_t)i * m->stride; }
double *rk__fm_w0(rk_fm *m) { return &m->w0; }
uint32_t rk_fm_dim(const rk_fm *m) { return m->dim; }
void rk_fm_get_params(const rk_fm *m, rk_fm_params *out) { *out = m->p; }

static int check_params(const rk_fm_params *p, uint32_t dim, rk_err *err)
{
    if (dim < 1 || dim > RK_FM_MAX_DIM)
        return rk_err_set(err, RK_EINVAL, "fm: dim %u outside [1, 2^30]", dim);
    if (p->k < 1 || p->k > RK_FM_MAX_K)
        return rk_err_set(err, RK_EINVAL, "fm: k %u outside [1, %u]", p->k,
                          RK_FM_MAX_K);
    if (p->optimizer != RK_FM_SGD && p->optimizer != RK_FM_ADAGRAD)
        return rk_err_set(err, RK_EINVAL, "fm: unknown optimizer %d",
                          (int)p->optimizer);
    if (!(p->lr > 0) || !isfinite(p->lr))
        return rk_err_set(err, RK_EINVAL, "fm: lr must be finite and > 0, "
                          "got %g", p->lr);
    if (!(p->l2_w >= 0) || !isfinite(p->l2_w) || !(p->l2_v >= 0) ||
        !isfinite(p->l2_v) || !(p->init_std >= 0) || !isfinite(p->init_std))
        return rk_err_set(err, RK_EINVAL, "fm: l2_w, l2_v and init_std must "
                          "be finite and >= 0");
    return 0;
}

/* Initial v_if: uniform on [-a, a] with a = sqrt(3) init_std (so the
 * standard deviation is init_std), from a hash of (seed, i, f). */
static void init_row(const rk_fm *m, uint32_t i, float *row)
{
    const double a = sqrt(3.0) * m->p.init_std;
    row[0] = 0.0f;
    for (uint32_t f = 0; f < m->k; f++) {
        uint64_t s = m->p.seed ^ ((((uint64_t)i << 8) | f) * 0xd1b54a32d192ed03ull);
        double u = ((double)(rk__splitmix(&s) >> 40) + 0.5) * 0x1p-24;
        row[1 + f] = (float)(a * (2.0 * u - 1.0));
    }
}

static int fm_alloc(rk_fm **out, uint32_t dim, const rk_fm_params *p,
                    rk_err *err)
{
    *out = NULL;
    int rc = check_params(p, dim, err);
    if (rc) return rc;
    rk_fm *m = rk_calloc(1, sizeof *m);
    if (!m) return rk_err_set(err, RK_ENOMEM, "fm: out of memory");
    m->p = *p;
    m->dim = dim;
    m->k = p->k;
    m->stride = p->k + 1;
    m->lr = (float)p->lr;
    m->l2w = (float)p->l2_w;
    m->l2v = (float)p->l2_v;
    size_t cells = (size_t)dim * m->stride;
    m->P = rk__rank_huge_zalloc(cells * sizeof(float));
    m->touched = rk_calloc(((size_t)dim + 63) / 64, sizeof(uint64_t));
    if (p->optimizer == RK_FM_ADAGRAD) m->G = rk__rank_huge_zalloc(cells * sizeof(float));
    if (!m->P || !m->touched || (p->optimizer == RK_FM_ADAGRAD && !m->G)) {
        rk_fm_destroy(m);
        return rk_err_set(err, RK_ENOMEM, "fm: out of memory for %u x %u "
                          "parameters", dim, p->k + 1);
    }
    for (uint32_t i = 0; i < dim; i++) init_row(m, i, m->P + (size_t)i * m->stride);
    *out = m;
    return 0;
}

int rk_fm_create(rk_fm **out, uint32_t dim, const rk_fm_params *p,
                 rk_err *err)
{
    rk_fm_params d;
    if (!p) {
        rk_fm_params_default(&d);
        p = &d;
    }
    return fm_alloc(out, dim, p, err);
}

void rk_fm_destroy(rk_fm *m)
{
    if (!m) return;
    rk_free(m->P);
    rk_free(m->G);
    rk_free(m->touched);
    rk_free(m);
}

/* ---- forward and step --------------------------------------------------------- */

/* f(x) for unique coordinates; S[0..k) receives sum_i v_if x_i. The
 * per-factor sums keep k independent chains that the compiler can put
 * in vector lanes. */
static float margin(const rk_fm *m, const rk_sparse *x, float *S)
{
    const uint32_t k = m->k, stride = m->stride;
    float Q[RK_FM_MAX_K];
    float lin = 0.0f;
    for (uint32_t f = 0; f < k; f++) S[f] = Q[f] = 0.0f;
    for (uint32_t j = 0; j < x->n; j++) {
        const float *row = m->P + (size_t)x->idx[j] * stride;
        float v = x->val ? x->val[j] : 1.0f;
        lin += row[0] * v;
        for (uint32_t f = 0; f < k; f++) {
            float vx = row[1 + f] * v;
            S[f] += vx;
            Q[f] += vx * vx;
        }
    }
    float inter = 0.0f;
    for (uint32_t f = 0; f < k; f++) inter += S[f] * S[f] - Q[f];
    return (float)m->w0 + lin + 0.5f * inter;
}

static void step(rk_fm *m, const rk_sparse *x, const float *S, float gl)
{
    const uint32_t k = m->k, stride = m->stride;
    const float lr = m->lr, l2w = m->l2w, l2v = m->l2v;
    if (m->G) {
        m->g0 += (double)gl * gl;
        m->w0 -= m->p.lr * gl / (sqrt(m->g0) + ADA_EPS);
    } else {
        m->w0 -= m->p.lr * gl;
    }
    for (uint32_t j = 0; j < x->n; j++) {
        uint32_t i = x->idx[j];
        float v = x->val ? x->val[j] : 1.0f, gv = gl * v;
        float *row = m->P + (size_t)i * stride;
        m->touched[i >> 6] |= (uint64_t)1 << (i & 63);
        if (m->G) {
            float *acc = m->G + (size_t)i * stride;
            float g = gv + l2w * row[0];
            acc[0] += g * g;
            row[0] -= lr * g / (sqrtf(acc[0]) + ADA_EPS);
            for (uint32_t f = 0; f < k; f++) {
                float vf = row[1 + f];
                g = gv * (S[f] - vf * v) + l2v * vf;
                acc[1 + f] += g * g;
                row[1 + f] = vf - lr * g / (sqrtf(acc[1 + f]) + ADA_EPS);
            }
        } else {
            row[0] -= lr * (gv + l2w * row[0]);
            for (uint32_t f = 0; f < k; f++) {
                float vf = row[1 + f];
                row[1 + f] = vf - lr * (gv * (S[f] - vf * v) + l2v * vf);
            }
        }
    }
}

int rk_fm_forget(rk_fm *m, double keep)
{
    if (!(keep > 0 && keep <= 1)) return RK_EINVAL;
    if (!m->G || keep == 1) return 0;
    /* Only rows a step has touched have sums. */
    const float f = (float)keep;
    for (uint32_t i = 0; i < m->dim; i++) {
        if (!(m->touched[i >> 6] >> (i & 63) & 1)) continue;
        float *acc = m->G + (size_t)i * m->stride;
        for (uint32_t k = 0; k < m->stride; k++) acc[k] *= f;
    }
    m->g0 *= keep;
    return 0;
}

/* x checked and merged into u (repeats summed); *heap to free after. */
static int prepare(const rk_fm *m, const rk_sparse *x, rk_sparse *u,
                   uint32_t *ibuf, float *vbuf, void **heap)
{
    *heap = NULL;
    int rc = rk__rank_sparse_check(x, m->dim, NULL);
    if (rc) return rc;
    rc = rk__rank_sparse_has_dups(x);
    if (rc < 0) return rc;
    if (rc == 0) {
        *u = *x;
        return 0;
    }
    return rk__rank_sparse_merge(x, ibuf, vbuf, u, heap);
}

int rk_fm_predict(const rk_fm *m, const rk_sparse *x, float *p)
{
    uint32_t ibuf[RK__MERGE_STACK];
    float vbuf[RK__MERGE_STACK], S[RK_FM_MAX_K];
    rk_sparse u;
    void *heap;
    int rc = prepare(m, x, &u, ibuf, vbuf, &heap);
    if (rc) return rc;
    float f = margin(m, &u, S);
    rk_free(heap);
    if (isnan(f)) return RK_EINVAL;
    *p = rk__sigmoid(f);
    return 0;
}

int rk_fm_update(rk_fm *m, const rk_sparse *x, float y, float weight,
                 float *p_before)
{
    if (!(y >= 0.0f && y <= 1.0f) || !(weight >= 0.0f) || !isfinite(weight))
        return RK_EINVAL;
    uint32_t ibuf[RK__MERGE_STACK];
    float vbuf[RK__MERGE_STACK], S[RK_FM_MAX_K];
    rk_sparse u;
    void *heap;
    int rc = prepare(m, x, &u, ibuf, vbuf, &heap);
    if (rc) return rc;
    float f = margin(m, &u, S);
    if (isnan(f)) {
        rk_free(heap);
        return RK_EINVAL;
    }
    float p = rk__sigmoid(f);
    if (p_before) *p_before = p;
    float gl = weight * (p - y);
    if (gl != 0.0f) step(m, &u, S, gl);
    rk_free(heap);
    return 0;
}

/* ---- training ------------------------------------------------------------------- */

static double logloss1(float p, float y)
{
    double q = p < 1e-7f ? 1e-7 : p > 1 - 1e-7f ? 1 - 1e-7 : p;
    return -(y * log(q) + (1 - y) * log(1 - q));
}

static int describe(const rk_fm *m, const rk_sparse_set *d, size_t i, int rc,
                    const char *what, rk_err *err)
{
    if (rc == RK_ENOMEM)
        return rk_err_set(err, rc, "fm: %s example %zu: out of memory "
                          "merging repeated coordinates", what, i);
    float y = d->y[i], w = d->w ? d->w[i] : 1.0f;
    if (!(y >= 0.0f && y <= 1.0f))
        return rk_err_set(err, RK_EINVAL, "fm: %s example %zu: label %g "
                          "outside [0, 1]", what, i, (double)y);
    if (!(w >= 0.0f) || !isfinite(w))
        return rk_err_set(err, RK_EINVAL, "fm: %s example %zu: weight %g is "
                          "not finite and >= 0", what, i, (double)w);
    rk_err e = {0};
    if (rk__rank_sparse_check(&d->x[i], m->dim, &e) != 0)
        return rk_err_set(err, RK_EINVAL, "fm: %s example %zu: %s", what, i,
                          e.msg);
    return rk_err_set(err, RK_EINVAL, "fm: %s example %zu: the margin is "
                      "not a number", what, i);
}

int rk_fm_logloss(const rk_fm *m, const rk_sparse_set *data, double *out,
                  rk_err *err)
{
    if (data->n && (!data->x || !data->y))
        return rk_err_set(err, RK_EINVAL, "fm: examples without x or y");
    double ll = 0, ws = 0;
    for (size_t i = 0; i < data->n; i++) {
        float p, w = data->w ? data->w[i] : 1.0f;
        int rc = rk_fm_predict(m, &data->x[i], &p);
        if (rc || !(data->y[i] >= 0.0f && data->y[i] <= 1.0f) ||
            !(w >= 0.0f) || !isfinite(w))
            return describe(m, data, i, rc ? rc : RK_EINVAL, "validation",
                            err);
        ll += w * logloss1(p, data->y[i]);
        ws += w;
    }
    *out = ws > 0 ? ll / ws : 0.0;
    return 0;
}

/* Batch training prefetches the rows (parameters and AdaGrad sums, first
 * and last cache line of each) of the example this many positions ahead:
 * with millions of coordinates they are rarely in cache. */
#define DIST 4

static void prefetch_rows(const rk_fm *m, const rk_sparse *x)
{
    const size_t last = m->stride - 1;
    for (uint32_t j = 0; j < x->n; j++) {
        uint32_t i = x->idx[j];
        if (i >= m->dim) continue;
        const float *r = m->P + (size_t)i * m->stride;
        rk__prefetch(r);
        rk__prefetch(r + last);
        if (m->G) {
            rk__prefetch(m->G + (size_t)i * m->stride);
            rk__prefetch(m->G + (size_t)i * m->stride + last);
        }
    }
}

typedef struct snapshot {
    float *P;
    uint64_t *touched;
    double w0;
} snapshot;

static void snap_take(const rk_fm *m, snapshot *s)
{
    memcpy(s->P, m->P, (size_t)m->dim * m->stride * sizeof(float));
    memcpy(s->touched, m->touched, ((size_t)m->dim + 63) / 64 * 8);
    s->w0 = m->w0;
}

static void snap_restore(rk_fm *m, const snapshot *s)
{
    memcpy(m->P, s->P, (size_t)m->dim * m->stride * sizeof(float));
    memcpy(m->touched, s->touched, ((size_t)m->dim + 63) / 64 * 8);
    m->w0 = s->w0;
}

int rk_fm_train(rk_fm *m, const rk_sparse_set *train,
                const rk_sparse_set *valid, const rk_fm_train_opts *o,
                rk_fm_train_report *report, rk_err *err)
{
    rk_fm_train_opts d;
    if (!o) {
        rk_fm_train_opts_default(&d);
        o = &d;
    }
    if (o->epochs < 1) return rk_err_set(err, RK_EINVAL, "fm: epochs must be >= 1");
    if ((train->n && (!train->x || !train->y)) ||
        (valid && valid->n && (!valid->x || !valid->y)))
        return rk_err_set(err, RK_EINVAL, "fm: examples without x or y");
    size_t n = train->n, *perm = NULL;
    snapshot snap = {NULL, NULL, 0};
    int use_valid = valid && valid->n > 0, rc = 0;
    if (o->shuffle && n > 1 &&
        (n > SIZE_MAX / sizeof *perm || !(perm = rk_malloc(n * sizeof *perm))))
        return rk_err_set(err, RK_ENOMEM, "fm: out of memory for the shuffle "
                          "order of %zu examples", n);
    if (use_valid) {
        snap.P = rk_malloc((size_t)m->dim * m->stride * sizeof(float));
        snap.touched = rk_malloc(((size_t)m->dim + 63) / 64 * 8);
        if (!snap.P || !snap.touched) {
            rc = rk_err_set(err, RK_ENOMEM, "fm: out of memory for the "
                            "best-epoch copy");
            goto done;
        }
    }
    rk_fm_train_report rep = {0, 0, 0.0, NAN};
    double best = INFINITY;
    uint32_t bad = 0;
    for (uint32_t e = 0; e < o->epochs; e++) {
        if (perm) rk__rank_shuffle(perm, n, o->seed, e);
        double ll = 0, ws = 0;
        for (size_t j = 0; j < n; j++) {
            size_t i = perm ? perm[j] : j;
            if (j + DIST < n) prefetch_rows(m, &train->x[perm ? perm[j + DIST] : j + DIST]);
            float p, w = train->w ? train->w[i] : 1.0f;
            rc = rk_fm_update(m, &train->x[i], train->y[i], w, &p);
            if (rc) {
                rc = describe(m, train, i, rc, "training", err);
                goto done;
            }
            ll += w * logloss1(p, train->y[i]);
            ws += w;
        }
        rep.epochs_run = e + 1;
        rep.train_logloss = ws > 0 ? ll / ws : 0.0;
        if (!use_valid) {
            rep.best_epoch = e + 1;
            continue;
        }
        double vl;
        rc = rk_fm_logloss(m, valid, &vl, err);
        if (rc) goto done;
        if (vl < best) {
            best = vl;
            rep.best_epoch = e + 1;
            rep.valid_logloss = vl;
            bad = 0;
            snap_take(m, &snap);
        } else if (o->patience && ++bad >= o->patience) {
            break;
        }
    }
    /* Training stops at the patience limit or the last epoch; either way
     * the model ends with the weights that scored best. */
    if (use_valid && rep.best_epoch != rep.epochs_run) snap_restore(m, &snap);
    if (report) *report = rep;
done:
    rk_free(perm);
    rk_free(snap.P);
    rk_free(snap.touched);
    return rc;
}

/* ---- bytes ------------------------------------------------------------------------ */
/*
 * Layout (little-endian):
 *   0  magic "RKFM\0\0\0\0"   8  u32 version (1)     12 u32 header size (96)
 *   16 u32 dim   20 u32 k   24 u32 optimizer   28 u32 zero
 *   32 f64 lr  40 f64 l2_w  48 f64 l2_v  56 f64 init_std  64 u64 seed
 *   72 f64 w0  80 f64 w0's AdaGrad sum  88 u64 count of records
 *   96 count x { u32 index, f32 w, f32 v[k], and with AdaGrad f32 sums[k+1] }
 *      in increasing index order
 *   .. u64 checksum
 * Rows not written hold their initial values, regenerated from the seed.
 */
static const char fm_magic[8] = {'R', 'K', 'F', 'M', 0, 0, 0, 0};
#define FM_VERSION 1u
#define FM_HDR 96u

static size_t rec_bytes(uint32_t k, int ada)
{
    return 4 + (size_t)(k + 1) * 4 * (ada ? 2 : 1);
}

static int is_touched(const rk_fm *m, uint32_t i)
{
    return (int)(m->touched[i >> 6] >> (i & 63)) & 1;
}

int rk_fm_save(const rk_fm *m, rk_buf *out, rk_err *err)
{
    uint64_t count = 0;
    for (uint32_t i = 0; i < m->dim; i++) count += (uint64_t)is_touched(m, i);
    int ada = m->G != NULL;
    size_t rb = rec_bytes(m->k, ada), total = FM_HDR + (size_t)count * rb + 8;
    int rc = rk_buf_reserve(out, total);
    if (rc)
        return rk_err_set(err, rc, "fm: cannot hold a %zu-byte model: %s",
                          total, rk_strerror(rc));
    size_t start = out->len;
    unsigned char *p = (unsigned char *)out->data + start;
    memcpy(p, fm_magic, 8);
    rk_put_u32(p + 8, FM_VERSION);
    rk_put_u32(p + 12, FM_HDR);
    rk_put_u32(p + 16, m->dim);
    rk_put_u32(p + 20, m->k);
    rk_put_u32(p + 24, (uint32_t)m->p.optimizer);
    rk_put_u32(p + 28, 0);
    rk_put_f64(p + 32, m->p.lr);
    rk_put_f64(p + 40, m->p.l2_w);
    rk_put_f64(p + 48, m->p.l2_v);
    rk_put_f64(p + 56, m->p.init_std);
    rk_put_u64(p + 64, m->p.seed);
    rk_put_f64(p + 72, m->w0);
    rk_put_f64(p + 80, m->g0);
    rk_put_u64(p + 88, count);
    p += FM_HDR;
    for (uint32_t i = 0; i < m->dim; i++) {
        if (!is_touched(m, i)) continue;
        rk_put_u32(p, i);
        p += 4;
        const float *row = m->P + (size_t)i * m->stride;
        for (uint32_t c = 0; c < m->stride; c++, p += 4) rk_put_f32(p, row[c]);
        if (ada) {
            const float *acc = m->G + (size_t)i * m->stride;
            for (uint32_t c = 0; c < m->stride; c++, p += 4) rk_put_f32(p, acc[c]);
        }
    }
    out->len = start + total - 8;
    rk__rank_model_put_checksum(out, start);
    return 0;
}

int rk_fm_load(rk_fm **out, const void *bytes, size_t n, rk_err *err)
{
    static const char *what = "FM model";
    const unsigned char *p = bytes;
    *out = NULL;
    int rc = rk__rank_model_check_frame(p, n, fm_magic, FM_VERSION, FM_HDR, what, err);
    if (rc) return rc;
    rk_fm_params prm;
    uint32_t dim = rk_get_u32(p + 16), zero = rk_get_u32(p + 28);
    prm.k = rk_get_u32(p + 20);
    uint32_t opt = rk_get_u32(p + 24);
    prm.optimizer = opt == 1 ? RK_FM_ADAGRAD : RK_FM_SGD;
    prm.lr = rk_get_f64(p + 32);
    prm.l2_w = rk_get_f64(p + 40);
    prm.l2_v = rk_get_f64(p + 48);
    prm.init_std = rk_get_f64(p + 56);
    prm.seed = rk_get_u64(p + 64);
    double w0 = rk_get_f64(p + 72), g0 = rk_get_f64(p + 80);
    uint64_t count = rk_get_u64(p + 88);
    rk_err e = {0};
    if (opt > 1 || zero != 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: bad optimizer %u or "
                          "reserved field %u", what, opt, zero);
    if (check_params(&prm, dim, &e) != 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: %s", what, e.msg);
    if (count > dim)
        return rk_err_set(err, RK_ECORRUPT, "%s: %llu records for dim %u",
                          what, (unsigned long long)count, dim);
    int ada = opt == 1;
    size_t rb = rec_bytes(prm.k, ada);
    rc = rk__rank_model_check_tail(p, n, FM_HDR + (size_t)count * rb + 8, what, err);
    if (rc) return rc;
    if (!isfinite(w0) || !(g0 >= 0) || !isfinite(g0) || (!ada && g0 != 0))
        return rk_err_set(err, RK_ECORRUPT, "%s: bad bias state", what);
    rk_fm *m;
    rc = fm_alloc(&m, dim, &prm, &e);
    if (rc) return rk_err_set(err, rc, "%s: %s", what, e.msg);
    m->w0 = w0;
    m->g0 = g0;
    const unsigned char *r = p + FM_HDR;
    int64_t prev = -1;
    for (uint64_t c = 0; c < count; c++) {
        uint32_t i = rk_get_u32(r);
        int ok = (int64_t)i > prev && i < dim;
        float *row = NULL, *acc = NULL;
        if (ok) {
            row = m->P + (size_t)i * m->stride;
            acc = ada ? m->G + (size_t)i * m->stride : NULL;
        }
        r += 4;
        for (uint32_t q = 0; ok && q < m->stride; q++, r += 4) {
            row[q] = rk_get_f32(r);
            ok = isfinite(row[q]);
        }
        for (uint32_t q = 0; ok && ada && q < m->stride; q++, r += 4) {
            acc[q] = rk_get_f32(r);
            ok = acc[q] >= 0 && isfinite(acc[q]);
        }
        if (!ok) {
            rk_fm_destroy(m);
            return rk_err_set(err, RK_ECORRUPT, "%s: record %llu (index %u) "
                              "is out of order, out of range or not finite",
                              what, (unsigned long long)c, i);
        }
        prev = i;
        m->touched[i >> 6] |= (uint64_t)1 << (i & 63);
    }
    *out = m;
    return 0;
}
