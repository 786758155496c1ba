/*
 * calib.c — probability calibration: the negative down-sampling
 * correction, Platt scaling and isotonic regression, and the rk_calib
 * handle that chains the correction with one of the two fitted maps.
 *
 * Fits run in double. Platt's fit is Newton's method on the 2-parameter
 * weighted log loss with a backtracking line search and a tiny ridge on
 * the Hessian (Lin, Lin and Weng, "A note on Platt's probabilistic
 * outputs", 2007), which converges in a handful of steps and cannot
 * diverge when the data are separable. Isotonic regression is weighted
 * pool-adjacent-violators over the points sorted by score, equal scores
 * pooled first so the result is a function of the score.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rank/ftrl_int.h"

struct rk_calib {
    rk_calib_params p;
    int fitted;
    double a, b;        /* Platt */
    float *ix, *iy;     /* isotonic points */
    size_t npts;
};

#define P_MIN 1e-7

double rk_calib_downsample(double q, double rate)
{
    if (!(q > 0)) return q < 0 || q == 0 ? 0.0 : q; /* NaN passes through */
    if (q >= 1) return 1.0;
    if (rate == 1.0) return q;
    return q / (q + (1.0 - q) / rate);
}

static double clampp(double p)
{
    return p < P_MIN ? P_MIN : p > 1 - P_MIN ? 1 - P_MIN : p;
}

static double logit(double p)
{
    p = clampp(p);
    return log(p / (1 - p));
}

static double sigmoid(double z)
{
    if (z >= 0) return 1 / (1 + exp(-z));
    double e = exp(z);
    return e / (1 + e);
}

/* Checks the common inputs of a fit: finite x, y in [0, 1], weights
 * finite and >= 0 with a positive total. */
static int check_points(const float *x, const float *y, const float *w,
                        size_t n, const char *what, rk_err *err)
{
    if (n == 0) return rk_err_set(err, RK_EINVAL, "%s: no points", what);
    if (!x || !y) return rk_err_set(err, RK_EINVAL, "%s: NULL input", what);
    double tw = 0;
    for (size_t i = 0; i < n; i++) {
        float wi = w ? w[i] : 1.0f;
        if (!isfinite(x[i]) || !(y[i] >= 0.0f && y[i] <= 1.0f) ||
            !(wi >= 0.0f) || !isfinite(wi))
            return rk_err_set(err, RK_EINVAL, "%s: point %zu: score %g, label "
                              "%g, weight %g: need a finite score, a label in "
                              "[0, 1] and a finite weight >= 0", what, i,
                              (double)x[i], (double)y[i], (double)wi);
        tw += wi;
    }
    if (!(tw > 0)) return rk_err_set(err, RK_EINVAL, "%s: total weight is 0", what);
    return 0;
}

/* ---- Platt ------------------------------------------------------------------------ */

/* Weighted log loss of sigmoid(a f + b) against targets t, in the form
 * that stays finite for any margin. */
static double platt_loss(const double *f, const double *t, const float *w,
                         size_t n, double a, double b)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double z = a * f[i] + b, wi = w ? w[i] : 1.0;
        double l = z >= 0 ? (1 - t[i]) * z + log1p(exp(-z))
                          : -t[i] * z + log1p(exp(z));
        s += wi * l;
    }
    return s;
}

int rk_calib_platt_fit(const float *p, const float *y, const float *w,
                       size_t n, int smooth, double *a_out, double *b_out,
                       rk_err *err)
{
    int rc = check_points(p, y, w, n, "platt", err);
    if (rc) return rc;
    double *f = rk_malloc(2 * n * sizeof *f);
    if (!f) return rk_err_set(err, RK_ENOMEM, "platt: out of memory");
    double *t = f + n, npos = 0, nneg = 0;
    for (size_t i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        npos += wi * y[i];
        nneg += wi * (1.0 - y[i]);
    }
    /* Platt's smoothing pulls the targets off 0 and 1 by the weight of one
     * imaginary example of each class, so a small or separable window
     * cannot push the slope to infinity. */
    double hi = smooth ? (npos + 1) / (npos + 2) : 1.0;
    double lo = smooth ? 1 / (nneg + 2) : 0.0;
    for (size_t i = 0; i < n; i++) {
        f[i] = logit(p[i]);
        t[i] = y[i] * hi + (1.0 - y[i]) * lo;
    }
    double a = 1, b = 0, tw = npos + nneg;
    double F = platt_loss(f, t, w, n, a, b);
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 1e-12, hab = 0, hbb = 1e-12;
        for (size_t i = 0; i < n; i++) {
            double wi = w ? w[i] : 1.0, q = sigmoid(a * f[i] + b);
            double d = wi * (q - t[i]), h = wi * q * (1 - q);
            ga += d * f[i];
            gb += d;
            haa += h * f[i] * f[i];
            hab += h * f[i];
            hbb += h;
        }
        if (fabs(ga) < 1e-10 * tw && fabs(gb) < 1e-10 * tw) break;
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) break;
        double da = -(hbb * ga - hab * gb) / det;
        double db = -(-hab * ga + haa * gb) / det;
        double slope = ga * da + gb * db, step = 1;
        /* The Newton decrement -slope bounds what a full step can still
         * gain; once that is below rounding of the loss, stop, instead of
         * line-searching through dozens of halvings for nothing. */
        if (!(-slope > 1e-12 * (F + 1))) break;
        /* Backtracking: halve until the loss drops enough (Armijo). */
        while (step >= 1e-10) {
            double na = a + step * da, nb = b + step * db;
            double nf = platt_loss(f, t, w, n, na, nb);
            if (nf <= F + 1e-4 * step * slope) {
                a = na;
                b = nb;
                F = nf;
                break;
            }
            step /= 2;
        }
        if (step < 1e-10) break; /* no progress possible: at the optimum */
    }
    rk_free(f);
    *a_out = a;
    *b_out = b;
    return 0;
}

/* ---- isotonic ------------------------------------------------------------------- */

typedef struct ord {
    float x;
    uint32_t hi; /* high and low halves of the original position, so the */
    uint32_t lo; /* sort is stable and the result deterministic */
} ord;

static int cmp_ord(const void *a, const void *b)
{
    const ord *p = a, *q = b;
    if (p->x != q->x) return (p->x > q->x) - (p->x < q->x);
    if (p->hi != q->hi) return (p->hi > q->hi) - (p->hi < q->hi);
    return (p->lo > q->lo) - (p->lo < q->lo);
}

typedef struct block {
    double sw, swy;
    float xlo, xhi;
} block;

int rk_calib_isotonic_fit(const float *x, const float *y, const float *w,
                          size_t n, float **out_x, float **out_y,
                          size_t *npts, rk_err *err)
{
    *out_x = *out_y = NULL;
    *npts = 0;
    int rc = check_points(x, y, w, n, "isotonic", err);
    if (rc) return rc;
    if (n > SIZE_MAX / (2 * sizeof(block)))
        return rk_err_set(err, RK_ENOMEM, "isotonic: too many points");
    ord *o = rk_malloc(n * sizeof *o);
    block *bl = rk_malloc(n * sizeof *bl);
    float *px = rk_malloc(2 * n * sizeof *px), *py = rk_malloc(2 * n * sizeof *py);
    if (!o || !bl || !px || !py) {
        rk_free(o);
        rk_free(bl);
        rk_free(px);
        rk_free(py);
        return rk_err_set(err, RK_ENOMEM, "isotonic: out of memory for %zu "
                          "points", n);
    }
    for (size_t i = 0; i < n; i++)
        o[i] = (ord){x[i], (uint32_t)((uint64_t)i >> 32), (uint32_t)i};
    qsort(o, n, sizeof *o, cmp_ord);
    size_t nb = 0;
    for (size_t i = 0; i < n;) {
        /* Pool the points with equal scores into one. */
        double sw = 0, swy = 0;
        size_t j = i;
        for (; j < n && o[j].x == o[i].x; j++) {
            size_t k = (size_t)o[j].hi << 32 | o[j].lo;
            double wk = w ? w[k] : 1.0;
            sw += wk;
            swy += wk * y[k];
        }
        if (sw > 0) {
            bl[nb++] = (block){sw, swy, o[i].x, o[i].x};
            /* Merge while the previous block's mean is not below the new
             * one (cross-multiplied: weights are positive). Equal means
             * merge too, which gives the fewest points. */
            while (nb >= 2 && bl[nb - 2].swy * bl[nb - 1].sw >=
                                  bl[nb - 1].swy * bl[nb - 2].sw) {
                block *p = &bl[nb - 2], *q = &bl[nb - 1];
                p->sw += q->sw;
                p->swy += q->swy;
                p->xhi = q->xhi;
                nb--;
            }
        }
        i = j;
    }
    size_t m = 0;
    for (size_t b = 0; b < nb; b++) {
        float v = (float)(bl[b].swy / bl[b].sw);
        if (v > 1.0f) v = 1.0f; /* rounding of a mean of labels <= 1 */
        px[m] = bl[b].xlo;
        py[m++] = v;
        if (bl[b].xhi > bl[b].xlo) {
            px[m] = bl[b].xhi;
            py[m++] = v;
        }
    }
    rk_free(o);
    rk_free(bl);
    *out_x = px;
    *out_y = py;
    *npts = m;
    return 0;
}

/* ---- the handle ------------------------------------------------------------------ */

void rk_calib_params_default(rk_calib_params *p)
{
    p->neg_rate = 1.0;
    p->method = RK_CALIB_NONE;
    p->platt_smooth = 1;
    p->iso_step = 0;
}

static int check_params(const rk_calib_params *p, rk_err *err)
{
    if (!(p->neg_rate > 0 && p->neg_rate <= 1))
        return rk_err_set(err, RK_EINVAL, "calib: neg_rate must be in (0, 1], "
                          "got %g", p->neg_rate);
    if (p->method != RK_CALIB_NONE && p->method != RK_CALIB_PLATT &&
        p->method != RK_CALIB_ISOTONIC)
        return rk_err_set(err, RK_EINVAL, "calib: unknown method %d",
                          (int)p->method);
    return 0;
}

int rk_calib_create(rk_calib **out, const rk_calib_params *p, rk_err *err)
{
    rk_calib_params d;
    *out = NULL;
    if (!p) {
        rk_calib_params_default(&d);
        p = &d;
    }
    int rc = check_params(p, err);
    if (rc) return rc;
    rk_calib *c = rk_calloc(1, sizeof *c);
    if (!c) return rk_err_set(err, RK_ENOMEM, "calib: out of memory");
    c->p = *p;
    c->p.platt_smooth = p->platt_smooth != 0;
    c->p.iso_step = p->iso_step != 0;
    c->a = 1;
    *out = c;
    return 0;
}

void rk_calib_destroy(rk_calib *c)
{
    if (!c) return;
    rk_free(c->ix);
    rk_free(c->iy);
    rk_free(c);
}

void rk_calib_get_params(const rk_calib *c, rk_calib_params *out)
{
    *out = c->p;
}

int rk_calib_fit(rk_calib *c, const float *q, const float *y, const float *w,
                 size_t n, rk_err *err)
{
    int rc = check_points(q, y, w, n, "calib", err);
    if (rc) return rc;
    if (c->p.method == RK_CALIB_NONE) {
        c->fitted = 1;
        return 0;
    }
    float *p = rk_malloc(n * sizeof *p);
    if (!p) return rk_err_set(err, RK_ENOMEM, "calib: out of memory");
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rk_calib_downsample(q[i], c->p.neg_rate);
    if (c->p.method == RK_CALIB_PLATT) {
        double a, b;
        rc = rk_calib_platt_fit(p, y, w, n, c->p.platt_smooth, &a, &b, err);
        if (!rc) {
            c->a = a;
            c->b = b;
            c->fitted = 1;
        }
    } else {
        float *ix, *iy;
        size_t m;
        rc = rk_calib_isotonic_fit(p, y, w, n, &ix, &iy, &m, err);
        if (!rc) {
            rk_free(c->ix);
            rk_free(c->iy);
            c->ix = ix;
            c->iy = iy;
            c->npts = m;
            c->fitted = 1;
        }
    }
    rk_free(p);
    return rc;
}

static float iso_apply(const rk_calib *c, float x)
{
    const float *px = c->ix, *py = c->iy;
    size_t n = c->npts;
    if (x <= px[0]) return py[0];
    if (x >= px[n - 1]) return py[n - 1];
    /* Largest j with px[j] <= x; px is strictly increasing. */
    size_t lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (px[mid] <= x) lo = mid;
        else hi = mid;
    }
    if (c->p.iso_step) return py[lo];
    double t = ((double)x - px[lo]) / ((double)px[lo + 1] - px[lo]);
    return (float)(py[lo] + t * ((double)py[lo + 1] - py[lo]));
}

float rk_calib_apply(const rk_calib *c, float q)
{
    if (isnan(q)) return q;
    double p = rk_calib_downsample(q, c->p.neg_rate);
    if (c->p.method == RK_CALIB_PLATT && c->fitted)
        return (float)sigmoid(c->a * logit(p) + c->b);
    if (c->p.method == RK_CALIB_ISOTONIC && c->npts)
        return iso_apply(c, (float)p);
    return (float)p;
}

void rk_calib_apply_many(const rk_calib *c, const float *q, float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = rk_calib_apply(c, q[i]);
}

void rk_calib_platt_coef(const rk_calib *c, double *a, double *b)
{
    *a = c->a;
    *b = c->b;
}

void rk_calib_isotonic_points(const rk_calib *c, const float **x,
                              const float **y, size_t *n)
{
    *x = c->ix;
    *y = c->iy;
    *n = c->npts;
}

/* ---- bytes ------------------------------------------------------------------------ */
/*
 * Layout (little-endian):
 *   0  magic "RKCALIB\0"   8 u32 version (1)   12 u32 header size (64)
 *   16 u32 method   20 u32 flags (1: Platt smoothing, 2: isotonic step,
 *   4: fitted)   24 f64 neg_rate   32 f64 a   40 f64 b   48 u64 points
 *   56 u64 zero
 *   64 points x { f32 x, f32 y }, x strictly increasing, y non-decreasing
 *   .. u64 checksum
 */
static const char calib_magic[8] = {'R', 'K', 'C', 'A', 'L', 'I', 'B', 0};
#define CALIB_VERSION 1u
#define CALIB_HDR 64u

int rk_calib_save(const rk_calib *c, rk_buf *out, rk_err *err)
{
    size_t total = CALIB_HDR + c->npts * 8 + 8;
    int rc = rk_buf_reserve(out, total);
    if (rc)
        return rk_err_set(err, rc, "calib: cannot hold a %zu-byte model: %s",
                          total, rk_strerror(rc));
    size_t start = out->len;
    unsigned char *p = (unsigned char *)out->data + start;
    memcpy(p, calib_magic, 8);
    rk_put_u32(p + 8, CALIB_VERSION);
    rk_put_u32(p + 12, CALIB_HDR);
    rk_put_u32(p + 16, (uint32_t)c->p.method);
    rk_put_u32(p + 20, (uint32_t)(c->p.platt_smooth | c->p.iso_step << 1 |
                                   c->fitted << 2));
    rk_put_f64(p + 24, c->p.neg_rate);
    rk_put_f64(p + 32, c->a);
    rk_put_f64(p + 40, c->b);
    rk_put_u64(p + 48, c->npts);
    rk_put_u64(p + 56, 0);
    p += CALIB_HDR;
    for (size_t i = 0; i < c->npts; i++, p += 8) {
        rk_put_f32(p, c->ix[i]);
        rk_put_f32(p + 4, c->iy[i]);
    }
    out->len = start + total - 8;
    rk__rank_model_put_checksum(out, start);
    return 0;
}

int rk_calib_load(rk_calib **out, const void *bytes, size_t n, rk_err *err)
{
    static const char *what = "calibration";
    const unsigned char *p = bytes;
    *out = NULL;
    int rc = rk__rank_model_check_frame(p, n, calib_magic, CALIB_VERSION, CALIB_HDR,
                                   what, err);
    if (rc) return rc;
    uint32_t method = rk_get_u32(p + 16), flags = rk_get_u32(p + 20);
    uint64_t npts = rk_get_u64(p + 48), zero = rk_get_u64(p + 56);
    if (method > 2 || flags > 7 || zero != 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: bad method %u, flags 0x%x or "
                          "reserved field", what, method, flags);
    if (npts > (n - CALIB_HDR - 8) / 8 + 1)
        return rk_err_set(err, RK_ECORRUPT, "%s: truncated: %zu bytes for %llu "
                          "points", what, n, (unsigned long long)npts);
    rc = rk__rank_model_check_tail(p, n, CALIB_HDR + (size_t)npts * 8 + 8, what, err);
    if (rc) return rc;
    rk_calib_params prm = {rk_get_f64(p + 24), (rk_calib_method)method,
                           (int)(flags & 1), (int)(flags >> 1 & 1)};
    double a = rk_get_f64(p + 32), b = rk_get_f64(p + 40);
    rk_err e = {0};
    if (check_params(&prm, &e) != 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: %s", what, e.msg);
    if (!isfinite(a) || !isfinite(b) ||
        (npts && (method != RK_CALIB_ISOTONIC || !(flags & 4))))
        return rk_err_set(err, RK_ECORRUPT, "%s: bad coefficients or points "
                          "for its method", what);
    rk_calib *c;
    rc = rk_calib_create(&c, &prm, &e);
    if (rc) return rk_err_set(err, rc, "%s: %s", what, e.msg);
    c->a = a;
    c->b = b;
    c->fitted = (int)(flags >> 2 & 1);
    if (npts) {
        c->ix = rk_malloc((size_t)npts * sizeof(float));
        c->iy = rk_malloc((size_t)npts * sizeof(float));
        if (!c->ix || !c->iy) {
            rk_calib_destroy(c);
            return rk_err_set(err, RK_ENOMEM, "%s: out of memory", what);
        }
        const unsigned char *r = p + CALIB_HDR;
        for (size_t i = 0; i < npts; i++, r += 8) {
            float x = rk_get_f32(r), y = rk_get_f32(r + 4);
            if (!isfinite(x) || !(y >= 0.0f && y <= 1.0f) ||
                (i && (!(x > c->ix[i - 1]) || !(y >= c->iy[i - 1])))) {
                rk_calib_destroy(c);
                return rk_err_set(err, RK_ECORRUPT, "%s: point %zu is not "
                                  "finite, outside [0, 1] or out of order",
                                  what, i);
            }
            c->ix[i] = x;
            c->iy[i] = y;
        }
        c->npts = (size_t)npts;
    }
    *out = c;
    return 0;
}
