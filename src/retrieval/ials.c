/*
 * ials.c — implicit alternating least squares with CG or Cholesky row
 * solves, the real-time fold-in, scoring and the model file.
 *
 * The objective and normal equations are in rk_retrieval.h. One iteration
 * solves every item row against the fixed user factors, then every user row
 * against the fixed item factors. A half-step first forms G = Y^T Y of the
 * fixed side (cblas_ssyrk), so the unobserved pairs of a row cost k^2
 * instead of k * (rows of the other side); the observed pairs are gathered
 * into a contiguous per-thread buffer so the CG steps stream them from L1/L2
 * through the factor kernels (factor_kernels_*.c).
 *
 * Invariants:
 *  - a row's solve depends only on its own data, the fixed side and the
 *    options, never on which thread runs it or with which others, so the
 *    factors are bit-identical for any thread count;
 *  - the loss is summed per fixed-size block of rows, in block order, so it
 *    is reproducible too;
 *  - model->G is always Y^T Y of the current item factors;
 *  - fold-in runs exactly the code of a Cholesky user update, so for a
 *    Cholesky-trained model it reproduces the stored user factors.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "factor_int.h"
#include "rk_retrieval.h"

/* A row's observed columns are gathered into a per-thread buffer once per
 * solve and streamed from there by every CG step. The buffer is sized for
 * the longest row of the half-step up to GATHER_BYTES; a longer row (an
 * item with hundreds of thousands of users at k = 128) is gathered chunk by
 * chunk, once per step. */
#define GATHER_BYTES ((size_t)32 << 20)
/* Rows claimed per atomic increment; also the block of the loss sums. */
#define ROW_BLOCK 64
#define MAX_K 1024

struct rk_ials_model {
    uint32_t k, nusers, nitems, iters;
    rk_ials_opts o; /* hyperparameters; pool and callback cleared */
    float *X;       /* nusers x k */
    float *Y;       /* nitems x k */
    float *G;       /* k x k, Y^T Y, both triangles */
};

/* ---- options -------------------------------------------------------------- */

void rk_ials_opts_default(rk_ials_opts *o)
{
    memset(o, 0, sizeof *o);
    /* Tuned on MovieLens-100k, held-out users, 5 folds (docs/retrieval.md,
     * "Evaluation"): the Rendle et al. 2022 recipe of a small unobserved
     * weight, no extra confidence for repeated events, and regularisation
     * scaled by each row's weight mass; with these iALS matches EASE.
     * Stable over split seeds 1, 7, 42 and 123. */
    o->factors = 128;
    o->iterations = 15;
    o->reg = 0.015;
    o->reg_exp = 1.0;
    o->alpha = 0.0;
    o->log_eps = 0.0;
    o->unobserved_weight = 0.3;
    o->solver = RK_IALS_CG;
    o->cg_steps = 3;
    o->init_std = 0.0;
    o->seed = 42;
}

static int check_opts(const rk_ials_opts *o, rk_err *err)
{
#define BAD(...) rk_err_set(err, RK_EINVAL, "ials: " __VA_ARGS__)
    if (o->factors < 1 || o->factors > MAX_K)
        return BAD("factors %u outside 1..%d", o->factors, MAX_K);
    if (!(o->reg > 0) || !isfinite(o->reg))
        return BAD("reg must be > 0 and finite, got %g", o->reg);
    if (!(o->reg_exp >= 0) || o->reg_exp > 4)
        return BAD("reg_exp must be in [0, 4], got %g", o->reg_exp);
    if (!(o->alpha >= 0) || !isfinite(o->alpha))
        return BAD("alpha must be >= 0 and finite, got %g", o->alpha);
    if (!(o->log_eps >= 0) || !isfinite(o->log_eps))
        return BAD("log_eps must be >= 0 and finite, got %g", o->log_eps);
    if (!(o->unobserved_weight > 0) || !isfinite(o->unobserved_weight))
        return BAD("unobserved_weight must be > 0 and finite, got %g",
                   o->unobserved_weight);
    if (o->solver != RK_IALS_CG && o->solver != RK_IALS_CHOLESKY)
        return BAD("unknown solver %d", (int)o->solver);
    /* More steps than factors are harmless (CG stops once the residual
     * vanishes), so only the extremes are refused. */
    if (o->solver == RK_IALS_CG && (o->cg_steps < 1 || o->cg_steps > MAX_K))
        return BAD("cg_steps %u outside 1..%d", o->cg_steps, MAX_K);
    if (!isfinite(o->init_std)) return BAD("init_std not finite");
    if (o->threads > 1024) return BAD("threads %u above 1024", o->threads);
    return 0;
#undef BAD
}

/* ---- initialisation ------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Row r of side (0 users, 1 items) from its own stream, so rows added by a
 * later train_more get the same values they would have had from the
 * start, and generation order does not matter. */
static void init_row(float *x, uint32_t k, uint64_t seed, int side,
                     uint32_t r, double std)
{
    uint64_t s = seed ^ ((uint64_t)side << 62) ^ ((uint64_t)r * 0xd1342543de82ef95ull);
    splitmix(&s);
    for (uint32_t c = 0; c < k; c += 2) {
        /* Box-Muller: two normals from two uniforms in (0, 1]. */
        double u1 = ((double)(splitmix(&s) >> 11) + 1) * 0x1p-53;
        double u2 = (double)(splitmix(&s) >> 11) * 0x1p-53;
        double rad = sqrt(-2.0 * log(u1)) * std;
        x[c] = (float)(rad * cos(2 * M_PI * u2));
        if (c + 1 < k) x[c + 1] = (float)(rad * sin(2 * M_PI * u2));
    }
}

static double init_std_of(const rk_ials_opts *o)
{
    return o->init_std > 0 ? o->init_std : 0.1 / sqrt((double)o->factors);
}

/* ---- Gramian ------------------------------------------------------------- */

/* G = Y^T Y over n rows, both triangles, in float: ssyrk fills the
 * upper triangle and the lower one is mirrored so kernels can use rows.
 * Flops counted by the caller: k (k + 1) n. */
static void gramian(const float *Y, size_t n, uint32_t k, float *G)
{
    memset(G, 0, sizeof(float) * k * k);
    if (n > 0)
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)n,
                    1.0f, Y, (int)k, 0.0f, G, (int)k);
    for (uint32_t a = 0; a < k; a++)
        for (uint32_t b = 0; b < a; b++) G[a * k + b] = G[b * k + a];
}

/* ---- one row -------------------------------------------------------------- */

/* Everything a row solve reads; shared by the training half-steps and the
 * fold-in. */
typedef struct rowctx {
    const rk__fk *fk;
    uint32_t k;
    const float *Y;   /* fixed side, ncols x k */
    uint32_t ncols;
    const float *Gs;  /* a0 * Y^T Y, k x k, both triangles */
    double alpha, log_eps, a0, reg, reg_exp;
    uint32_t cg_steps;
} rowctx;

/* Per-thread scratch. */
typedef struct scratch {
    size_t cap;         /* rows the gather buffer holds */
    float *gath;        /* cap x k */
    float *c, *d, *t;   /* cap: confidence, c - a0, temporaries */
    float *r, *p, *ap, *q; /* k */
    float *A;           /* k x k */
    double *L, *bd;     /* k x k, k */
    uint64_t flops;
} scratch;

static void scratch_free(scratch *s)
{
    if (!s) return;
    rk_free(s->gath);
    rk_free(s->c);
    rk_free(s->d);
    rk_free(s->t);
    rk_free(s->r);
    rk_free(s->p);
    rk_free(s->ap);
    rk_free(s->q);
    rk_free(s->A);
    rk_free(s->L);
    rk_free(s->bd);
    memset(s, 0, sizeof *s);
}

/* rows: how many gathered rows the caller may need (fold-in needs only its
 * history length). */
static int scratch_init(scratch *s, uint32_t k, size_t rows, int chol)
{
    memset(s, 0, sizeof *s);
    if (rows > GATHER_BYTES / (sizeof(float) * k)) rows = GATHER_BYTES / (sizeof(float) * k);
    if (rows == 0) rows = 1;
    s->cap = rows;
    s->gath = rk_malloc(sizeof(float) * rows * k);
    s->c = rk_malloc(sizeof(float) * rows);
    s->d = rk_malloc(sizeof(float) * rows);
    s->t = rk_malloc(sizeof(float) * rows);
    s->r = rk_malloc(sizeof(float) * k);
    s->p = rk_malloc(sizeof(float) * k);
    s->ap = rk_malloc(sizeof(float) * k);
    s->q = rk_malloc(sizeof(float) * k);
    if (chol) {
        s->A = rk_malloc(sizeof(float) * k * k);
        s->L = rk_malloc(sizeof(double) * k * k);
        s->bd = rk_malloc(sizeof(double) * k);
    }
    if (!s->gath || !s->c || !s->d || !s->t || !s->r || !s->p || !s->ap ||
        !s->q || (chol && (!s->A || !s->L || !s->bd))) {
        scratch_free(s);
        return RK_ENOMEM;
    }
    return 0;
}

static inline float confidence(const rowctx *rc, float w)
{
    double f = rc->log_eps > 0 ? log1p((double)w / rc->log_eps) : (double)w;
    return (float)(1.0 + rc->alpha * f);
}

static inline double row_lambda(const rowctx *rc, size_t n)
{
    if (rc->reg_exp == 0) return rc->reg;
    return rc->reg * pow((double)n + rc->a0 * (double)rc->ncols, rc->reg_exp);
}

#define PREFETCH_AHEAD 16

static inline void prefetch_row(const float *p, size_t bytes)
{
    const char *c = (const char *)p;
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 3);
}

/* Copies rows idx[0..n) of the fixed side into the gather buffer and
 * computes their confidences. n <= s->cap. */
static void gather(const rowctx *rc, scratch *s, const uint32_t *idx,
                   const float *w, size_t n)
{
    const uint32_t k = rc->k;
    const size_t row_bytes = sizeof(float) * k;
    /* The rows are scattered over a factor matrix larger than the caches:
     * without prefetching, each copy waits for its own misses. Requesting
     * the rows PREFETCH_AHEAD positions ahead keeps many misses in flight. */
    for (size_t j = 0; j < n && j < PREFETCH_AHEAD; j++)
        prefetch_row(rc->Y + (size_t)idx[j] * k, row_bytes);
    for (size_t j = 0; j < n; j++) {
        if (j + PREFETCH_AHEAD < n)
            prefetch_row(rc->Y + (size_t)idx[j + PREFETCH_AHEAD] * k, row_bytes);
        memcpy(s->gath + j * k, rc->Y + (size_t)idx[j] * k, row_bytes);
        float c = confidence(rc, w[j]);
        s->c[j] = c;
        s->d[j] = (float)((double)c - rc->a0);
    }
}

/* out += sum_j coef_j y_j over the row's n observed columns with
 *   coef_j = c_j - d_j (y_j . v)   when resid (residual b - A_obs v),
 *   coef_j = d_j (y_j . v)         otherwise (the observed part of A v).
 * resident: the whole row is already in the gather buffer. */
static void row_apply(const rowctx *rc, scratch *s, const uint32_t *idx,
                      const float *w, size_t n, int resident, const float *v,
                      int resid, float *out)
{
    const uint32_t k = rc->k;
    for (size_t off = 0; off < n; off += s->cap) {
        size_t len = n - off < s->cap ? n - off : s->cap;
        if (!resident) gather(rc, s, idx + off, w + off, len);
        rc->fk->dots(s->gath, len, k, k, v, s->t);
        if (resid)
            for (size_t j = 0; j < len; j++) s->t[j] = s->c[j] - s->d[j] * s->t[j];
        else
            for (size_t j = 0; j < len; j++) s->t[j] = s->d[j] * s->t[j];
        rc->fk->axpys(s->gath, len, k, k, s->t, out);
    }
    s->flops += (uint64_t)4 * n * k + 2 * n;
}

static double dotf(const float *a, const float *b, uint32_t k)
{
    double s = 0;
    for (uint32_t c = 0; c < k; c++) s += (double)a[c] * b[c];
    return s;
}

/* cg_steps conjugate-gradient steps on the row's normal equations, starting
 * from x (the previous factors): the `implicit` library's update. Each step
 * lowers the row's quadratic, so the loss never rises. */
static void solve_cg(const rowctx *rc, scratch *s, const uint32_t *idx,
                     const float *w, size_t n, float *x)
{
    const uint32_t k = rc->k;
    if (n == 0) { /* b = 0: the exact minimiser is 0 */
        memset(x, 0, sizeof(float) * k);
        return;
    }
    const double lam = row_lambda(rc, n);
    const float lamf = (float)lam;
    int resident = n <= s->cap;
    if (resident) gather(rc, s, idx, w, n);

    float *r = s->r, *p = s->p, *ap = s->ap, *q = s->q;
    /* r = b - A x = sum_j (c_j - d_j y_j.x) y_j - a0 G x - lambda x */
    memset(r, 0, sizeof(float) * k);
    row_apply(rc, s, idx, w, n, resident, x, 1, r);
    rc->fk->dots(rc->Gs, k, k, k, x, q);
    for (uint32_t c = 0; c < k; c++) {
        r[c] -= q[c] + lamf * x[c];
        p[c] = r[c];
    }
    double rs = dotf(r, r, k);
    s->flops += (uint64_t)2 * k * k + 5 * k;
    for (uint32_t step = 0; step < rc->cg_steps; step++) {
        if (rs < 1e-20) break;
        /* ap = A p */
        rc->fk->dots(rc->Gs, k, k, k, p, ap);
        for (uint32_t c = 0; c < k; c++) ap[c] += lamf * p[c];
        row_apply(rc, s, idx, w, n, resident, p, 0, ap);
        double pap = dotf(p, ap, k);
        s->flops += (uint64_t)2 * k * k + 12 * k;
        if (!(pap > 0)) break;
        float a = (float)(rs / pap);
        for (uint32_t c = 0; c < k; c++) {
            x[c] += a * p[c];
            r[c] -= a * ap[c];
        }
        double rsn = dotf(r, r, k);
        float beta = (float)(rsn / rs);
        for (uint32_t c = 0; c < k; c++) p[c] = r[c] + beta * p[c];
        rs = rsn;
    }
}

/* Exact solve: A = a0 G + sum_j d_j y_j y_j^T + lambda I is built in float
 * (upper triangle, with the kernels), then factored and solved in double.
 * RK_EINTERNAL if A is not positive definite (cannot happen for valid
 * options: A >= sum_j c_j y_j y_j^T + lambda I). */
static int solve_chol(const rowctx *rc, scratch *s, const uint32_t *idx,
                      const float *w, size_t n, float *x)
{
    const uint32_t k = rc->k;
    if (n == 0) {
        memset(x, 0, sizeof(float) * k);
        return 0;
    }
    const double lam = row_lambda(rc, n);
    float *A = s->A, *b = s->r;
    memcpy(A, rc->Gs, sizeof(float) * k * k);
    memset(b, 0, sizeof(float) * k);
    for (size_t off = 0; off < n; off += s->cap) {
        size_t len = n - off < s->cap ? n - off : s->cap;
        gather(rc, s, idx + off, w + off, len);
        /* Row a of the upper triangle: A[a][a..k) += sum_j d_j y_ja y_j. */
        for (uint32_t a = 0; a < k; a++) {
            for (size_t j = 0; j < len; j++) s->t[j] = s->d[j] * s->gath[j * k + a];
            rc->fk->axpys(s->gath + a, len, k - a, k, s->t, A + (size_t)a * k + a);
        }
        rc->fk->axpys(s->gath, len, k, k, s->c, b);
    }
    double *U = s->L, *xb = s->bd;
    for (uint32_t a = 0; a < k; a++) {
        for (uint32_t c = a; c < k; c++) U[(size_t)a * k + c] = A[(size_t)a * k + c];
        U[(size_t)a * k + a] += lam;
        xb[a] = b[a];
    }
    if (rc->fk->cholsolve(U, k, xb) != 0) return RK_EINTERNAL;
    for (uint32_t i = 0; i < k; i++) x[i] = (float)xb[i];
    s->flops += (uint64_t)n * k * (k + 1) + 2 * (uint64_t)n * k +
                (uint64_t)k * k * k / 3 + 2 * (uint64_t)k * k;
    return 0;
}

/* ---- half-steps over all rows ------------------------------------------------ */

typedef struct half {
    rowctx rc;
    const rk_interactions *m; /* rows of this side (may have fewer rows) */
    float *X;                 /* rows being solved, nrows x k */
    uint32_t nrows;
    int chol;
    int loss;                 /* evaluate the observed loss instead of solving */
    double *block_loss;       /* loss mode: per ROW_BLOCK partial sums */
    size_t nblocks;
    size_t longest;           /* longest row: sizes the gather buffers */
    _Atomic size_t next;
    _Atomic int rc_err;
    _Atomic uint64_t flops;
} half;

static void row_of(const half *h, uint32_t r, const uint32_t **idx,
                   const float **w, size_t *n)
{
    if (r >= h->m->nusers) {
        *n = 0;
        *idx = NULL;
        *w = NULL;
        return;
    }
    uint64_t b = h->m->user_ptr[r], e = h->m->user_ptr[r + 1];
    *idx = h->m->items + b;
    *w = h->m->weight + b;
    *n = (size_t)(e - b);
}

/* Observed part of the loss for one row plus its regulariser:
 * sum_j [c_j (1 - s_j)^2 - a0 s_j^2] + lambda |x|^2. */
static double row_loss(const rowctx *rc, scratch *s, const uint32_t *idx,
                       const float *w, size_t n, const float *x)
{
    const uint32_t k = rc->k;
    double l = 0;
    for (size_t off = 0; off < n; off += s->cap) {
        size_t len = n - off < s->cap ? n - off : s->cap;
        gather(rc, s, idx + off, w + off, len);
        rc->fk->dots(s->gath, len, k, k, x, s->t);
        for (size_t j = 0; j < len; j++) {
            double e = 1.0 - s->t[j];
            l += s->c[j] * e * e - rc->a0 * (double)s->t[j] * s->t[j];
        }
    }
    return l + row_lambda(rc, n) * dotf(x, x, k);
}

/* One pool task: claims blocks of rows until none are left. */
static void half_worker(void *arg, size_t b, size_t e)
{
    half *h = arg;
    (void)b;
    (void)e;
    scratch s;
    if (scratch_init(&s, h->rc.k, h->longest, h->chol) != 0) {
        int zero = 0;
        atomic_compare_exchange_strong(&h->rc_err, &zero, RK_ENOMEM);
        return;
    }
    for (;;) {
        if (atomic_load(&h->rc_err) != 0) break;
        size_t blk = atomic_fetch_add(&h->next, 1);
        if (blk >= h->nblocks) break;
        size_t r0 = blk * ROW_BLOCK, r1 = r0 + ROW_BLOCK;
        if (r1 > h->nrows) r1 = h->nrows;
        double bl = 0;
        for (size_t r = r0; r < r1; r++) {
            const uint32_t *idx;
            const float *w;
            size_t n;
            row_of(h, (uint32_t)r, &idx, &w, &n);
            float *x = h->X + r * h->rc.k;
            if (h->loss) {
                bl += row_loss(&h->rc, &s, idx, w, n, x);
            } else if (h->chol) {
                int rc = solve_chol(&h->rc, &s, idx, w, n, x);
                if (rc) {
                    int zero = 0;
                    atomic_compare_exchange_strong(&h->rc_err, &zero, rc);
                    break;
                }
            } else {
                solve_cg(&h->rc, &s, idx, w, n, x);
            }
        }
        if (h->loss) h->block_loss[blk] = bl;
    }
    atomic_fetch_add(&h->flops, s.flops);
    scratch_free(&s);
}

/* Runs the half's rows on `workers` threads (the caller is one of them). */
static int run_half(half *h, rk_pool *pool, unsigned workers)
{
    h->nblocks = ((size_t)h->nrows + ROW_BLOCK - 1) / ROW_BLOCK;
    h->longest = 1;
    for (uint32_t r = 0; r < h->nrows && r < h->m->nusers; r++) {
        size_t n = (size_t)(h->m->user_ptr[r + 1] - h->m->user_ptr[r]);
        if (n > h->longest) h->longest = n;
    }
    atomic_store(&h->next, 0);
    atomic_store(&h->rc_err, 0);
    atomic_store(&h->flops, 0);
    if (pool && workers > 1)
        rk_pool_parallel_for(pool, workers, 1, half_worker, h);
    else
        half_worker(h, 0, 1);
    return atomic_load(&h->rc_err);
}

/* ---- training --------------------------------------------------------------- */

typedef struct trainer {
    rk_ials_model *model;
    const rk_interactions *um;  /* users x items */
    rk_interactions *im;        /* items x users (owned) */
    rk_pool *pool;              /* borrowed or owned */
    int own_pool;
    unsigned workers;
    rk__fk fk;
    float *Gs;                  /* k x k scratch */
    float *GX;                  /* k x k: X^T X for the loss */
} trainer;

static void rowctx_init(rowctx *rc, const rk_ials_opts *o, const rk__fk *fk,
                        uint32_t k, const float *Y, uint32_t ncols,
                        const float *Gs)
{
    rc->fk = fk;
    rc->k = k;
    rc->Y = Y;
    rc->ncols = ncols;
    rc->Gs = Gs;
    rc->alpha = o->alpha;
    rc->log_eps = o->log_eps;
    rc->a0 = o->unobserved_weight;
    rc->reg = o->reg;
    rc->reg_exp = o->reg_exp;
    rc->cg_steps = o->cg_steps;
}

/* Gs = a0 * G, elementwise in float: fold-in scales the stored G the same
 * way, so both see identical matrices. */
static void scale_gramian(const float *G, uint32_t k, double a0, float *Gs)
{
    for (size_t i = 0; i < (size_t)k * k; i++) Gs[i] = (float)(a0 * G[i]);
}

/* Solves the rows of X (nrows, interactions m) against the fixed F (nf
 * rows). G receives F^T F (the caller's buffer). */
static int half_step(trainer *t, const rk_interactions *m, float *X,
                     uint32_t nrows, const float *F, uint32_t nf, float *G,
                     int chol, uint64_t *flops)
{
    rk_ials_model *md = t->model;
    const uint32_t k = md->k;
    gramian(F, nf, k, G);
    scale_gramian(G, k, md->o.unobserved_weight, t->Gs);
    half h;
    memset(&h, 0, sizeof h);
    rowctx_init(&h.rc, &md->o, &t->fk, k, F, nf, t->Gs);
    h.m = m;
    h.X = X;
    h.nrows = nrows;
    h.chol = chol;
    int rc = run_half(&h, t->pool, t->workers);
    *flops += atomic_load(&h.flops) + (uint64_t)k * (k + 1) * nf;
    return rc;
}

/* L after an iteration: observed terms and user regularisers row by row,
 * item regularisers, and a0 * sum_all s^2 = a0 * <X^T X, Y^T Y>. */
static int full_loss(trainer *t, double *out)
{
    rk_ials_model *md = t->model;
    const uint32_t k = md->k;
    half h;
    memset(&h, 0, sizeof h);
    rowctx_init(&h.rc, &md->o, &t->fk, k, md->Y, md->nitems, t->Gs);
    h.m = t->um;
    h.X = md->X;
    h.nrows = md->nusers;
    h.loss = 1;
    size_t nb = ((size_t)md->nusers + ROW_BLOCK - 1) / ROW_BLOCK;
    h.block_loss = rk_calloc(nb + 1, sizeof(double));
    if (!h.block_loss) return RK_ENOMEM;
    int rc = run_half(&h, t->pool, t->workers);
    double l = 0;
    for (size_t b = 0; b < nb; b++) l += h.block_loss[b];
    rk_free(h.block_loss);
    if (rc) return rc;
    /* Item regularisers: lambda_i uses the item's user count. */
    rowctx ic;
    rowctx_init(&ic, &md->o, &t->fk, k, md->X, md->nusers, NULL);
    for (uint32_t i = 0; i < md->nitems; i++) {
        size_t n = i < t->im->nusers
                       ? (size_t)(t->im->user_ptr[i + 1] - t->im->user_ptr[i])
                       : 0;
        const float *y = md->Y + (size_t)i * k;
        l += row_lambda(&ic, n) * dotf(y, y, k);
    }
    gramian(md->X, md->nusers, k, t->GX);
    double tr = 0;
    for (size_t i = 0; i < (size_t)k * k; i++) tr += (double)t->GX[i] * md->G[i];
    *out = l + md->o.unobserved_weight * tr;
    return 0;
}

/* Grows the factor arrays to the interactions' dimensions, initialising new
 * rows from their seeded streams. */
static int grow(rk_ials_model *md, uint32_t nusers, uint32_t nitems)
{
    const uint32_t k = md->k;
    double std = init_std_of(&md->o);
    if (nusers > md->nusers || !md->X) {
        float *X = rk_realloc(md->X, sizeof(float) * ((size_t)nusers * k + 1));
        if (!X) return RK_ENOMEM;
        md->X = X;
        for (uint32_t u = md->nusers; u < nusers; u++)
            init_row(X + (size_t)u * k, k, md->o.seed, 0, u, std);
        md->nusers = nusers;
    }
    if (nitems > md->nitems || !md->Y) {
        float *Y = rk_realloc(md->Y, sizeof(float) * ((size_t)nitems * k + 1));
        if (!Y) return RK_ENOMEM;
        md->Y = Y;
        for (uint32_t i = md->nitems; i < nitems; i++)
            init_row(Y + (size_t)i * k, k, md->o.seed, 1, i, std);
        md->nitems = nitems;
    }
    return 0;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
}

static void trainer_free(trainer *t)
{
    rk_interactions_free(t->im);
    if (t->own_pool) rk_pool_destroy(t->pool);
    rk_free(t->Gs);
    rk_free(t->GX);
}

static int trainer_init(trainer *t, rk_ials_model *md,
                        const rk_interactions *m, const rk_ials_opts *o,
                        rk_err *err)
{
    memset(t, 0, sizeof *t);
    t->model = md;
    t->um = m;
    int rc = rk__fk_select(&t->fk, err);
    if (rc) return rc;
    if (o->pool) {
        t->pool = o->pool;
        t->workers = rk_pool_threads(o->pool) + 1;
    } else {
        t->workers = o->threads ? o->threads : online_cpus();
        /* The calling thread works too, so the pool needs one fewer. */
        if (t->workers > 1) {
            rc = rk_pool_create(&t->pool, t->workers - 1, 0);
            if (rc) return rk_err_set(err, rc, "ials: cannot start %u threads",
                                      t->workers - 1);
            t->own_pool = 1;
        }
    }
    const size_t kk = (size_t)md->k * md->k;
    t->Gs = rk_malloc(sizeof(float) * kk);
    t->GX = rk_malloc(sizeof(float) * kk);
    if (!t->Gs || !t->GX) {
        trainer_free(t);
        return rk_err_set(err, RK_ENOMEM, "ials: out of memory");
    }
    rc = rk_interactions_transpose(m, &t->im, err);
    if (rc) {
        trainer_free(t);
        return rc;
    }
    return 0;
}

static int fail(rk_err *err, int rc, const char *what)
{
    if (rc == RK_ENOMEM)
        return rk_err_set(err, rc, "ials: out of memory during %s", what);
    if (rc == RK_EINTERNAL)
        return rk_err_set(err, rc,
                          "ials: %s: normal equations not positive definite",
                          what);
    return rk_err_set(err, rc, "ials: %s failed: %s", what, rk_strerror(rc));
}

static int train_iters(rk_ials_model *md, const rk_interactions *m,
                       const rk_ials_opts *o, uint32_t iterations, rk_err *err)
{
    trainer t;
    int rc = grow(md, m->nusers, m->nitems);
    if (rc) return fail(err, rc, "initialisation");
    rc = trainer_init(&t, md, m, o, err);
    if (rc) return rc;
    const int chol = md->o.solver == RK_IALS_CHOLESKY;
    for (uint32_t it = 0; it < iterations; it++) {
        uint64_t t0 = rk_clock_mono_ns(), flops = 0;
        /* Items against users, then users against items (G = Y^T Y then
         * stays the Gramian of the final item factors). */
        rc = half_step(&t, t.im, md->Y, md->nitems, md->X, md->nusers, t.GX,
                       chol, &flops);
        if (rc) {
            fail(err, rc, "item update");
            break;
        }
        rc = half_step(&t, m, md->X, md->nusers, md->Y, md->nitems, md->G,
                       chol, &flops);
        if (rc) {
            fail(err, rc, "user update");
            break;
        }
        md->iters++;
        rk_ials_iter_stats st = {md->iters, NAN,
                                 (double)(rk_clock_mono_ns() - t0) * 1e-9,
                                 (double)flops};
        if (o->compute_loss) {
            rc = full_loss(&t, &st.loss);
            if (rc) {
                fail(err, rc, "loss");
                break;
            }
        }
        if (o->on_iter && o->on_iter(o->on_iter_ctx, &st) != 0) break;
    }
    if (rc) {
        /* A failed half-step leaves G stale: restore the invariant. */
        gramian(md->Y, md->nitems, md->k, md->G);
    }
    trainer_free(&t);
    return rc;
}

static void record_opts(rk_ials_model *md, const rk_ials_opts *o)
{
    md->o = *o;
    md->o.pool = NULL;
    md->o.on_iter = NULL;
    md->o.on_iter_ctx = NULL;
    md->o.compute_loss = 0;
    md->o.factors = md->k;
}

static rk_ials_model *model_new(uint32_t k)
{
    rk_ials_model *md = rk_calloc(1, sizeof *md);
    if (!md) return NULL;
    md->k = k;
    md->G = rk_calloc((size_t)k * k, sizeof(float));
    if (!md->G) {
        rk_free(md);
        return NULL;
    }
    return md;
}

int rk_ials_train(const rk_interactions *m, const rk_ials_opts *o,
                  rk_ials_model **out, rk_err *err)
{
    rk_ials_opts dflt;
    if (!o) {
        rk_ials_opts_default(&dflt);
        o = &dflt;
    }
    *out = NULL;
    int rc = check_opts(o, err);
    if (rc) return rc;
    rk_ials_model *md = model_new(o->factors);
    if (!md) return rk_err_set(err, RK_ENOMEM, "ials: out of memory");
    record_opts(md, o);
    rc = train_iters(md, m, o, o->iterations, err);
    if (rc) {
        rk_ials_free(md);
        return rc;
    }
    *out = md;
    return 0;
}

int rk_ials_train_more(rk_ials_model *md, const rk_interactions *m,
                       const rk_ials_opts *o, uint32_t iterations, rk_err *err)
{
    rk_ials_opts use;
    if (o) {
        use = *o;
        if (use.factors == 0) use.factors = md->k;
        if (use.factors != md->k)
            return rk_err_set(err, RK_EINVAL,
                              "ials: factors %u differs from the model's %u",
                              use.factors, md->k);
    } else {
        use = md->o;
    }
    int rc = check_opts(&use, err);
    if (rc) return rc;
    record_opts(md, &use);
    return train_iters(md, m, &use, iterations, err);
}

int rk_ials_solve_users(rk_ials_model *md, const rk_interactions *m,
                        rk_err *err)
{
    if (m->nitems > md->nitems)
        return rk_err_set(err, RK_EINVAL,
                          "ials: interactions have %u items, the model %u",
                          m->nitems, md->nitems);
    int rc = grow(md, m->nusers, md->nitems);
    if (rc) return fail(err, rc, "initialisation");
    trainer t;
    memset(&t, 0, sizeof t);
    t.model = md;
    t.um = m;
    rc = rk__fk_select(&t.fk, err);
    if (rc) return rc;
    t.Gs = rk_malloc(sizeof(float) * md->k * md->k);
    if (!t.Gs) return rk_err_set(err, RK_ENOMEM, "ials: out of memory");
    uint64_t flops = 0;
    /* One thread: this is a maintenance call; G is recomputed into the
     * model's own buffer from the same Y, so it is unchanged. */
    rc = half_step(&t, m, md->X, md->nusers, md->Y, md->nitems, md->G, 1,
                   &flops);
    rk_free(t.Gs);
    return rc ? fail(err, rc, "user solve") : 0;
}

void rk_ials_free(rk_ials_model *md)
{
    if (!md) return;
    rk_free(md->X);
    rk_free(md->Y);
    rk_free(md->G);
    rk_free(md);
}

/* ---- accessors ----------------------------------------------------------- */

uint32_t rk_ials_k(const rk_ials_model *md) { return md->k; }
uint32_t rk_ials_nusers(const rk_ials_model *md) { return md->nusers; }
uint32_t rk_ials_nitems(const rk_ials_model *md) { return md->nitems; }
uint32_t rk_ials_iterations_done(const rk_ials_model *md) { return md->iters; }
const float *rk_ials_user_factors(const rk_ials_model *md) { return md->X; }
const float *rk_ials_item_factors(const rk_ials_model *md) { return md->Y; }
const float *rk_ials_gramian(const rk_ials_model *md) { return md->G; }
void rk_ials_get_opts(const rk_ials_model *md, rk_ials_opts *out) { *out = md->o; }

/* ---- fold-in and scoring ------------------------------------------------- */

typedef struct hist {
    uint32_t item;
    float w;
} hist;

static int hist_cmp(const void *a, const void *b)
{
    const hist *x = a, *y = b;
    return x->item < y->item ? -1 : x->item > y->item;
}

int rk_ials_fold_in(const rk_ials_model *md, const uint32_t *items,
                    const float *weights, size_t n, float *out, rk_err *err)
{
    const uint32_t k = md->k;
    for (size_t j = 0; j < n; j++) {
        if (items[j] >= md->nitems)
            return rk_err_set(err, RK_EINVAL,
                              "ials fold-in: item %u outside the model's %u "
                              "items", items[j], md->nitems);
        if (weights && !(weights[j] > 0 && isfinite(weights[j])))
            return rk_err_set(err, RK_EINVAL,
                              "ials fold-in: weight %g of item %u must be > 0",
                              (double)weights[j], items[j]);
    }
    if (n == 0) {
        memset(out, 0, sizeof(float) * k);
        return 0;
    }
    /* Merge repeated items as rk_interactions does: summed weights, in
     * increasing item order (the order the training solve sees them). */
    hist *h = rk_malloc(sizeof(hist) * n);
    uint32_t *idx = rk_malloc(sizeof(uint32_t) * n);
    float *w = rk_malloc(sizeof(float) * n);
    float *Gs = rk_malloc(sizeof(float) * k * k);
    scratch s;
    int rc = RK_ENOMEM;
    int have_scratch = 0;
    if (!h || !idx || !w || !Gs) goto done;
    if (scratch_init(&s, k, n, 1) != 0) goto done;
    have_scratch = 1;
    for (size_t j = 0; j < n; j++) {
        h[j].item = items[j];
        h[j].w = weights ? weights[j] : 1.0f;
    }
    qsort(h, n, sizeof(hist), hist_cmp);
    size_t m = 0;
    for (size_t j = 0; j < n;) {
        double sum = 0;
        uint32_t it = h[j].item;
        for (; j < n && h[j].item == it; j++) sum += h[j].w;
        idx[m] = it;
        w[m] = (float)sum;
        m++;
    }
    rk__fk fk;
    rc = rk__fk_select(&fk, err);
    if (rc) goto done;
    scale_gramian(md->G, k, md->o.unobserved_weight, Gs);
    rowctx rcx;
    rowctx_init(&rcx, &md->o, &fk, k, md->Y, md->nitems, Gs);
    rc = solve_chol(&rcx, &s, idx, w, m, out);
done:
    if (rc == RK_ENOMEM) rk_err_set(err, rc, "ials fold-in: out of memory");
    else if (rc == RK_EINTERNAL)
        rk_err_set(err, rc, "ials fold-in: normal equations not positive "
                            "definite");
    if (have_scratch) scratch_free(&s);
    rk_free(h);
    rk_free(idx);
    rk_free(w);
    rk_free(Gs);
    return rc;
}

void rk_ials_score_all(const rk_ials_model *md, const float *user_vec,
                       float *scores_out)
{
    if (md->nitems == 0) return;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)md->nitems, (int)md->k, 1.0f,
                md->Y, (int)md->k, user_vec, 1, 0.0f, scores_out, 1);
}

/* ---- file ------------------------------------------------------------------ */

static const char IALS_MAGIC[8] = {'R', 'K', 'I', 'A', 'L', 'S', '\0', '\1'};
#define IALS_VERSION 1u

/* The 128-byte header; fields ordered so there is no padding. */
typedef struct ials_header {
    char magic[8];
    uint32_t version, header_size, bom, k;
    uint32_t nusers, nitems, iters, solver;
    uint32_t cg_steps, reserved0;
    double reg, reg_exp, alpha, log_eps, a0, init_std;
    uint64_t seed;
    uint8_t reserved[128 - 48 - 56];
} ials_header;

_Static_assert(sizeof(ials_header) == 128, "ials header is 128 bytes");

int rk_ials_save(const rk_ials_model *md, const char *path, rk_err *err)
{
    ials_header hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, IALS_MAGIC, 8);
    hd.version = IALS_VERSION;
    hd.header_size = sizeof hd;
    hd.bom = RK__FF_BOM;
    hd.k = md->k;
    hd.nusers = md->nusers;
    hd.nitems = md->nitems;
    hd.iters = md->iters;
    hd.solver = (uint32_t)md->o.solver;
    hd.cg_steps = md->o.cg_steps;
    hd.reg = md->o.reg;
    hd.reg_exp = md->o.reg_exp;
    hd.alpha = md->o.alpha;
    hd.log_eps = md->o.log_eps;
    hd.a0 = md->o.unobserved_weight;
    hd.init_std = md->o.init_std;
    hd.seed = md->o.seed;
    rk__ff_part parts[3] = {
        {&hd, sizeof hd},
        {md->X, sizeof(float) * md->k * (size_t)md->nusers},
        {md->Y, sizeof(float) * md->k * (size_t)md->nitems},
    };
    return rk__ff_write(path, parts, 3, err);
}

int rk_ials_load(const char *path, rk_ials_model **out, rk_err *err)
{
    *out = NULL;
    rk__ff_reader r;
    ials_header hd;
    int rc = rk__ff_open(&r, path, IALS_MAGIC, "iALS model", &hd, sizeof hd,
                         err);
    if (rc) return rc;
    rk_ials_model *md = NULL;
    if (hd.version > IALS_VERSION || hd.version == 0) {
        rc = rk_err_set(err, RK_EVERSION,
                        "%s: iALS model version %u, this build reads 1..%u",
                        path, hd.version, IALS_VERSION);
        goto fail;
    }
    if (hd.bom != RK__FF_BOM || hd.header_size != sizeof hd || hd.k < 1 ||
        hd.k > MAX_K || hd.solver > 1) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: corrupted iALS header", path);
        goto fail;
    }
    uint64_t xs = (uint64_t)hd.k * hd.nusers * sizeof(float);
    uint64_t ys = (uint64_t)hd.k * hd.nitems * sizeof(float);
    rc = rk__ff_expect(&r, sizeof hd + xs + ys, err);
    if (rc) goto fail;
    md = model_new(hd.k);
    if (!md) goto nomem;
    md->nusers = hd.nusers;
    md->nitems = hd.nitems;
    md->iters = hd.iters;
    md->X = rk_malloc(xs + 1);
    md->Y = rk_malloc(ys + 1);
    if (!md->X || !md->Y) goto nomem;
    rk_ials_opts_default(&md->o);
    md->o.factors = hd.k;
    md->o.solver = (rk_ials_solver)hd.solver;
    md->o.cg_steps = hd.cg_steps;
    md->o.reg = hd.reg;
    md->o.reg_exp = hd.reg_exp;
    md->o.alpha = hd.alpha;
    md->o.log_eps = hd.log_eps;
    md->o.unobserved_weight = hd.a0;
    md->o.init_std = hd.init_std;
    md->o.seed = hd.seed;
    if ((rc = rk__ff_read(&r, md->X, xs, err)) != 0 ||
        (rc = rk__ff_read(&r, md->Y, ys, err)) != 0 ||
        (rc = rk__ff_finish(&r, err)) != 0)
        goto fail;
    /* Options are validated after the checksum: a file that passed it but
     * holds options this build refuses is a version problem, not noise. */
    if (check_opts(&md->o, NULL) != 0) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: iALS options out of range",
                        path);
        goto fail;
    }
    gramian(md->Y, md->nitems, md->k, md->G);
    rk__ff_close(&r);
    *out = md;
    return 0;
nomem:
    rc = rk_err_set(err, RK_ENOMEM, "%s: out of memory loading iALS model",
                    path);
fail:
    rk__ff_close(&r);
    rk_ials_free(md);
    return rc;
}
