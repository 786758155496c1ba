/*
 * ftrl.c — FTRL-Proximal logistic regression (McMahan et al. 2013,
 * Algorithm 1) over hashed sparse coordinates, plus the helpers the linear
 * and factorization models and the calibrator share: sparse-example checks
 * and merging, the model-file frame, shuffling and huge-page tables.
 *
 * An update makes two passes over the example's coordinates. The first
 * (here) computes the margin from the cached weights and stamps each
 * record with the update's tick, which detects a repeated coordinate for
 * free since the record is being read anyway. The second (a kernel) applies
 * the per-coordinate step. Repeats are rare with hashing, so they take a
 * slow path that merges them first; the model is exact either way.
 *
 * Batch training prefetches the records of the example a few positions
 * ahead: with 2^22 coordinates the state is 64 MiB and each example touches
 * ~40 scattered records, so without it the loop waits on memory (a plain
 * update loop runs at 1.7-2.3M examples per second in bench/ftrl.c, batch
 * training at 3.0-3.3M).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "rank/ftrl_int.h"

struct rk_ftrl {
    rk_ftrl_params p;
    rk__ftrl_hp hp;
    uint32_t dim;
    uint32_t tick;       /* stamp of the current update, never 0 */
    rk__ftrl_rec *st;    /* dim records */
    double bz, bs, bw;   /* intercept: z, sqrt(n), weight (in double: it is
                            updated by every example) */
    rk__ftrl_kernels k;
};

/* ---- shared helpers ----------------------------------------------------------- */

int rk__rank_sparse_check(const rk_sparse *x, uint32_t dim, rk_err *err)
{
    if (x->n && !x->idx)
        return rk_err_set(err, RK_EINVAL, "example has %u entries but no "
                          "indices", x->n);
    for (uint32_t k = 0; k < x->n; k++) {
        if (x->idx[k] >= dim)
            return rk_err_set(err, RK_EINVAL, "index %u >= dim %u",
                              x->idx[k], dim);
        if (x->val && !isfinite(x->val[k]))
            return rk_err_set(err, RK_EINVAL, "value %u of index %u is not "
                              "finite", k, x->idx[k]);
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int rk__rank_sparse_has_dups(const rk_sparse *x)
{
    uint32_t n = x->n;
    if (n < 2) return 0;
    if (n <= 4096) {
        /* A bitmap of at least 16 bits per entry, so a false alarm (which
         * costs a scan of the entries before) is rare. */
        uint64_t bits[1024];
        unsigned lg = 10;
        while ((1u << lg) < 16 * n) lg++;
        memset(bits, 0, ((size_t)1 << lg) / 8);
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = x->idx[k], h = (i * 0x9e3779b1u) >> (32 - lg);
            uint64_t b = (uint64_t)1 << (h & 63);
            if (bits[h >> 6] & b)
                for (uint32_t j = 0; j < k; j++)
                    if (x->idx[j] == i) return 1;
            bits[h >> 6] |= b;
        }
        return 0;
    }
    uint32_t *c = rk_memdup(x->idx, (size_t)n * sizeof *c);
    if (!c) return RK_ENOMEM;
    qsort(c, n, sizeof *c, cmp_u32);
    int dup = 0;
    for (uint32_t k = 1; k < n && !dup; k++) dup = c[k] == c[k - 1];
    rk_free(c);
    return dup;
}

typedef struct merge_ent {
    uint32_t idx, pos;
} merge_ent;

static int cmp_ent(const void *a, const void *b)
{
    const merge_ent *x = a, *y = b;
    if (x->idx != y->idx) return (x->idx > y->idx) - (x->idx < y->idx);
    return (x->pos > y->pos) - (x->pos < y->pos);
}

int rk__rank_sparse_merge(const rk_sparse *x, uint32_t *ibuf, float *vbuf,
                     rk_sparse *out, void **heap)
{
    uint32_t n = x->n, u = 0;
    *heap = NULL;
    if (n <= RK__MERGE_STACK) {
        /* Quadratic, but only ever run on short examples that repeat. */
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = x->idx[k], j;
            float v = x->val ? x->val[k] : 1.0f;
            for (j = 0; j < u && ibuf[j] != i; j++) {}
            if (j < u) {
                vbuf[j] += v;
            } else {
                ibuf[u] = i;
                vbuf[u++] = v;
            }
        }
    } else {
        /* Sorting (index, position) keeps the values of one index in their
         * original order, so the sums are deterministic. */
        size_t bytes = (size_t)n * (sizeof(merge_ent) + 2 * sizeof(float));
        unsigned char *h = rk_malloc(bytes);
        if (!h) return RK_ENOMEM;
        merge_ent *e = (merge_ent *)h;
        ibuf = (uint32_t *)(h + (size_t)n * sizeof(merge_ent));
        vbuf = (float *)(ibuf + n);
        for (uint32_t k = 0; k < n; k++) e[k] = (merge_ent){x->idx[k], k};
        qsort(e, n, sizeof *e, cmp_ent);
        for (uint32_t k = 0; k < n; k++) {
            float v = x->val ? x->val[e[k].pos] : 1.0f;
            if (u && ibuf[u - 1] == e[k].idx) {
                vbuf[u - 1] += v;
            } else {
                ibuf[u] = e[k].idx;
                vbuf[u++] = v;
            }
        }
        *heap = h;
    }
    out->idx = ibuf;
    out->val = vbuf;
    out->n = u;
    return 0;
}

int rk__rank_model_check_frame(const unsigned char *p, size_t n,
                          const char magic[8], uint32_t version,
                          uint32_t hdr_size, const char *what, rk_err *err)
{
    if (!p && n) return rk_err_set(err, RK_EINVAL, "%s: NULL bytes", what);
    if (n < 16 || memcmp(p, magic, 8) != 0) {
        if (n >= 8 && memcmp(p, magic, 8) != 0)
            return rk_err_set(err, RK_ECORRUPT, "%s: bad magic: not an %s "
                              "file", what, what);
        return rk_err_set(err, RK_ECORRUPT, "%s: truncated: %zu bytes, "
                          "shorter than the header", what, n);
    }
    uint32_t v = rk_get_u32(p + 8), h = rk_get_u32(p + 12);
    if (v == 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: bad format version 0", what);
    if (v > version)
        return rk_err_set(err, RK_EVERSION, "%s: format version %u is newer "
                          "than this build reads (%u)", what, v, version);
    if (h != hdr_size)
        return rk_err_set(err, RK_ECORRUPT, "%s: header size %u, expected %u",
                          what, h, hdr_size);
    if (n < (size_t)hdr_size + 8)
        return rk_err_set(err, RK_ECORRUPT, "%s: truncated: %zu bytes, "
                          "shorter than the header", what, n);
    return 0;
}

int rk__rank_model_check_tail(const unsigned char *p, size_t n, size_t expect_len,
                         const char *what, rk_err *err)
{
    if (n < expect_len)
        return rk_err_set(err, RK_ECORRUPT, "%s: truncated: %zu bytes, "
                          "expected %zu", what, n, expect_len);
    if (n > expect_len)
        return rk_err_set(err, RK_ECORRUPT, "%s: %zu trailing bytes after "
                          "the model", what, n - expect_len);
    if (rk_hash64(p, n - 8, 0) != rk_get_u64(p + n - 8))
        return rk_err_set(err, RK_ECORRUPT, "%s: checksum mismatch", what);
    return 0;
}

void rk__rank_model_put_checksum(rk_buf *b, size_t start)
{
    uint64_t h = rk_hash64(b->data + start, b->len - start, 0);
    rk_put_u64((unsigned char *)b->data + b->len, h);
    b->len += 8;
    b->data[b->len] = '\0';
}

void rk__rank_shuffle(size_t *perm, size_t n, uint64_t seed, uint32_t epoch)
{
    uint64_t s = seed ^ (0x5851f42d4c957f2dull * (epoch + 1));
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rk__splitmix(&s) % i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* ---- model ---------------------------------------------------------------------- */

void *rk__rank_huge_zalloc(size_t bytes)
{
    unsigned char *p = rk_malloc(bytes);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    /* Random access over tens of MiB misses the TLB on nearly every
     * coordinate with 4 KiB pages; 2 MiB pages keep the whole table in the
     * TLB. Ask before the first touch (the memset below), on the aligned
     * interior of the block. Only advice: failure changes nothing. */
    if (bytes >= ((size_t)4 << 20)) {
        uintptr_t a = ((uintptr_t)p + ((1u << 21) - 1)) & ~(uintptr_t)((1u << 21) - 1);
        uintptr_t e = ((uintptr_t)p + bytes) & ~(uintptr_t)((1u << 21) - 1);
        if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
    }
#endif
    memset(p, 0, bytes);
    return p;
}

void rk_ftrl_params_default(rk_ftrl_params *p)
{
    p->alpha = 0.05;
    p->beta = 1.0;
    p->l1 = 1.0;
    p->l2 = 1.0;
    p->bias = 1;
}

void rk_ftrl_train_opts_default(rk_ftrl_train_opts *o)
{
    o->epochs = 1;
    o->shuffle = 0;
    o->seed = 1;
}

static int check_params(const rk_ftrl_params *p, uint32_t dim, rk_err *err)
{
    if (dim < 1 || dim > RK_FTRL_MAX_DIM)
        return rk_err_set(err, RK_EINVAL, "ftrl: dim %u outside [1, 2^30]",
                          dim);
    if (!(p->alpha > 0) || !isfinite(p->alpha) || p->alpha < 1e-30)
        return rk_err_set(err, RK_EINVAL, "ftrl: alpha must be > 0, got %g",
                          p->alpha);
    if (!(p->beta >= 0) || !isfinite(p->beta) || !(p->l1 >= 0) ||
        !isfinite(p->l1) || !(p->l2 >= 0) || !isfinite(p->l2))
        return rk_err_set(err, RK_EINVAL, "ftrl: beta, l1 and l2 must be "
                          "finite and >= 0 (beta %g, l1 %g, l2 %g)", p->beta,
                          p->l1, p->l2);
    /* With both zero a coordinate whose squared gradient underflowed would
     * divide by zero. */
    if (!(p->beta + p->l2 > 0))
        return rk_err_set(err, RK_EINVAL, "ftrl: beta + l2 must be > 0");
    return 0;
}

static void set_hp(rk_ftrl *m)
{
    m->hp.inv_alpha = (float)(1.0 / m->p.alpha);
    m->hp.beta = (float)m->p.beta;
    m->hp.l1 = (float)m->p.l1;
    m->hp.l2 = (float)m->p.l2;
}

static int ftrl_alloc(rk_ftrl **out, uint32_t dim, const rk_ftrl_params *p,
                      rk_err *err)
{
    *out = NULL;
    int rc = check_params(p, dim, err);
    if (rc) return rc;
    rk_ftrl *m = rk_calloc(1, sizeof *m);
    if (!m) return rk_err_set(err, RK_ENOMEM, "ftrl: out of memory");
    m->p = *p;
    m->p.bias = p->bias != 0;
    m->dim = dim;
    set_hp(m);
    rc = rk__ftrl_kernels_select(&m->k, err);
    if (rc) {
        rk_free(m);
        return rc;
    }
    m->st = rk__rank_huge_zalloc((size_t)dim * sizeof *m->st);
    if (!m->st) {
        rk_free(m);
        return rk_err_set(err, RK_ENOMEM, "ftrl: out of memory for %u "
                          "coordinates", dim);
    }
    *out = m;
    return 0;
}

int rk_ftrl_create(rk_ftrl **out, uint32_t dim, const rk_ftrl_params *p,
                   rk_err *err)
{
    rk_ftrl_params d;
    if (!p) {
        rk_ftrl_params_default(&d);
        p = &d;
    }
    return ftrl_alloc(out, dim, p, err);
}

void rk_ftrl_destroy(rk_ftrl *m)
{
    if (!m) return;
    rk_free(m->st);
    rk_free(m);
}

uint32_t rk_ftrl_dim(const rk_ftrl *m) { return m->dim; }

void rk_ftrl_get_params(const rk_ftrl *m, rk_ftrl_params *out)
{
    *out = m->p;
}

const rk__ftrl_kernels *rk__ftrl_kernels_of(const rk_ftrl *m)
{
    return &m->k;
}

rk__ftrl_rec *rk__ftrl_state(rk_ftrl *m) { return m->st; }

int rk_ftrl_predict(const rk_ftrl *m, const rk_sparse *x, float *p)
{
    int rc = rk__rank_sparse_check(x, m->dim, NULL);
    if (rc) return rc;
    float margin = m->k.dot(m->st, x->idx, x->val, x->n) + (float)m->bw;
    if (isnan(margin)) return RK_EINVAL; /* +inf and -inf terms */
    *p = rk__sigmoid(margin);
    return 0;
}

/* The intercept's weight from its (z, sqrt(n)): no L1 or L2. */
static void bias_weight(rk_ftrl *m)
{
    double den = (m->p.beta + m->bs) / m->p.alpha;
    m->bw = den > 0 ? -m->bz / den : 0.0;
}

/* The intercept's step: Algorithm 1 without L1 and L2, in double. */
static void bias_step(rk_ftrl *m, double g)
{
    double s = m->bs, gg = g * g, s1 = sqrt(s * s + gg);
    double sigma = gg / ((s1 + s) + DBL_MIN) / m->p.alpha;
    m->bz += g - sigma * m->bw;
    m->bs = s1;
    bias_weight(m);
}

/* Applies the step to x's coordinates, merging repeats first when the
 * first pass saw one. The model is untouched when this fails. */
static int apply_step(rk_ftrl *m, const rk_sparse *x, int dup, float gs)
{
    if (!dup) {
        m->k.update(m->st, x->idx, x->val, x->n, gs, &m->hp);
        return 0;
    }
    uint32_t ibuf[RK__MERGE_STACK];
    float vbuf[RK__MERGE_STACK];
    rk_sparse u;
    void *heap;
    int rc = rk__rank_sparse_merge(x, ibuf, vbuf, &u, &heap);
    if (rc) return rc;
    m->k.update(m->st, u.idx, u.val, u.n, gs, &m->hp);
    rk_free(heap);
    return 0;
}

static inline int update_one(rk_ftrl *m, const rk_sparse *x, float y,
                             float weight, float *p_before)
{
    if (!(y >= 0.0f && y <= 1.0f) || !(weight >= 0.0f) || !isfinite(weight))
        return RK_EINVAL;
    if (x->n && !x->idx) return RK_EINVAL;
    uint32_t t = ++m->tick;
    if (t == 0) t = m->tick = 1; /* 0 is what fresh records hold */
    rk__ftrl_rec *st = m->st;
    const uint32_t *idx = x->idx, n = x->n, dim = m->dim;
    float margin = 0.0f;
    uint32_t dup = 0;
    /* First pass: margin, bounds, finiteness and repeat detection. */
    if (x->val) {
        const float *val = x->val;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = idx[k];
            float v = val[k];
            if (i >= dim || !isfinite(v)) return RK_EINVAL;
            rk__ftrl_rec *r = st + i;
            dup |= r->mark == t;
            r->mark = t;
            margin += r->w * v;
        }
    } else {
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = idx[k];
            if (i >= dim) return RK_EINVAL;
            rk__ftrl_rec *r = st + i;
            dup |= r->mark == t;
            r->mark = t;
            margin += r->w;
        }
    }
    margin += (float)m->bw;
    if (isnan(margin)) return RK_EINVAL;
    float p = rk__sigmoid(margin);
    if (p_before) *p_before = p;
    float gs = weight * (p - y);
    if (gs == 0.0f) return 0;
    int rc = apply_step(m, x, (int)dup, gs);
    if (rc) return rc;
    if (m->p.bias) bias_step(m, gs);
    return 0;
}

int rk_ftrl_update(rk_ftrl *m, const rk_sparse *x, float y, float weight,
                   float *p_before)
{
    return update_one(m, x, y, weight, p_before);
}

/* Scales n by keep and z so that the weight (Algorithm 1's closed form)
 * is unchanged: |z| - l1 is proportional to the denominator
 * (beta + sqrt(n)) / alpha + l2. A coordinate with |z| <= l1 has weight 0
 * and keeps its z, so it stays 0. */
int rk_ftrl_forget(rk_ftrl *m, double keep)
{
    if (!(keep > 0 && keep <= 1)) return RK_EINVAL;
    if (keep == 1) return 0;
    const rk__ftrl_hp *hp = &m->hp;
    const float root = (float)sqrt(keep);
    for (uint32_t i = 0; i < m->dim; i++) {
        rk__ftrl_rec *r = &m->st[i];
        if (r->s == 0.0f) continue;
        float s1 = r->s * root, a = fabsf(r->z);
        if (a > hp->l1) {
            float den0 = (hp->beta + r->s) * hp->inv_alpha + hp->l2;
            float den1 = (hp->beta + s1) * hp->inv_alpha + hp->l2;
            r->z = copysignf(hp->l1 + (a - hp->l1) * (den1 / den0), r->z);
        }
        r->s = s1;
        r->w = rk__ftrl_weight(r->z, s1, hp);
    }
    if (m->p.bias && m->bs > 0) {
        double s1 = m->bs * sqrt(keep);
        m->bz *= (m->p.beta + s1) / (m->p.beta + m->bs);
        m->bs = s1;
        bias_weight(m);
    }
    return 0;
}

/* Explains why update_one refused example i (only on the error path). */
static int explain(const rk_ftrl *m, const rk_sparse_set *d, size_t i, int rc,
                   rk_err *err)
{
    if (rc == RK_ENOMEM)
        return rk_err_set(err, rc, "ftrl: example %zu: out of memory merging "
                          "repeated coordinates", i);
    float y = d->y[i], w = d->w ? d->w[i] : 1.0f;
    if (!(y >= 0.0f && y <= 1.0f))
        return rk_err_set(err, RK_EINVAL, "ftrl: example %zu: label %g "
                          "outside [0, 1]", i, (double)y);
    if (!(w >= 0.0f) || !isfinite(w))
        return rk_err_set(err, RK_EINVAL, "ftrl: example %zu: weight %g is "
                          "not finite and >= 0", i, (double)w);
    rk_err e = {0};
    if (rk__rank_sparse_check(&d->x[i], m->dim, &e) != 0)
        return rk_err_set(err, RK_EINVAL, "ftrl: example %zu: %s", i, e.msg);
    return rk_err_set(err, RK_EINVAL, "ftrl: example %zu: infinite terms of "
                      "both signs in the margin", i);
}

/* How far ahead batch training prefetches: records for example j + DIST,
 * the example's index and value arrays for j + 2 DIST. */
#define DIST 4

static inline void prefetch_records(const rk_ftrl *m, const rk_sparse *x)
{
    const uint32_t *idx = x->idx;
    uint32_t n = x->n, dim = m->dim;
    for (uint32_t k = 0; k < n; k++)
        if (idx[k] < dim) rk__prefetch(m->st + idx[k]);
}

static inline void prefetch_arrays(const rk_sparse *x)
{
    size_t bytes = (size_t)x->n * 4;
    for (size_t o = 0; o < bytes; o += 64) {
        rk__prefetch((const char *)x->idx + o);
        if (x->val) rk__prefetch((const char *)x->val + o);
    }
}

int rk_ftrl_train(rk_ftrl *m, const rk_sparse_set *data,
                  const rk_ftrl_train_opts *o, double *logloss, rk_err *err)
{
    rk_ftrl_train_opts d;
    if (!o) {
        rk_ftrl_train_opts_default(&d);
        o = &d;
    }
    if (o->epochs < 1)
        return rk_err_set(err, RK_EINVAL, "ftrl: epochs must be >= 1");
    if (data->n && (!data->x || !data->y))
        return rk_err_set(err, RK_EINVAL, "ftrl: examples without x or y");
    size_t n = data->n, *perm = NULL;
    if (o->shuffle && n > 1) {
        if (n > SIZE_MAX / sizeof *perm ||
            !(perm = rk_malloc(n * sizeof *perm)))
            return rk_err_set(err, RK_ENOMEM, "ftrl: out of memory for the "
                              "shuffle order of %zu examples", n);
    }
    const rk_sparse *xs = data->x;
    double ll = 0, wsum = 0;
    for (uint32_t e = 0; e < o->epochs; e++) {
        if (perm) rk__rank_shuffle(perm, n, o->seed, e);
        ll = wsum = 0;
        for (size_t j = 0; j < n; j++) {
            size_t i = perm ? perm[j] : j;
            if (j + 2 * DIST < n)
                prefetch_arrays(&xs[perm ? perm[j + 2 * DIST] : j + 2 * DIST]);
            if (j + DIST < n)
                prefetch_records(m, &xs[perm ? perm[j + DIST] : j + DIST]);
            float w = data->w ? data->w[i] : 1.0f, p;
            int rc = update_one(m, &xs[i], data->y[i], w, &p);
            if (rc) {
                rk_free(perm);
                return explain(m, data, i, rc, err);
            }
            if (logloss) {
                double pc = p < 1e-7f ? 1e-7 : p > 1 - 1e-7f ? 1 - 1e-7 : p;
                double y = data->y[i];
                ll -= w * (y * log(pc) + (1 - y) * log(1 - pc));
                wsum += w;
            }
        }
    }
    rk_free(perm);
    if (logloss) *logloss = wsum > 0 ? ll / wsum : 0.0;
    return 0;
}

size_t rk_ftrl_nnz(const rk_ftrl *m)
{
    size_t c = 0;
    for (uint32_t i = 0; i < m->dim; i++) c += m->st[i].w != 0.0f;
    return c;
}

int rk_ftrl_coord(const rk_ftrl *m, uint32_t i, float *z, float *n, float *w)
{
    float zz, ss, ww;
    if (i < m->dim) {
        zz = m->st[i].z;
        ss = m->st[i].s;
        ww = m->st[i].w;
    } else if (i == m->dim && m->p.bias) {
        zz = (float)m->bz;
        ss = (float)m->bs;
        ww = (float)m->bw;
    } else {
        return RK_EINVAL;
    }
    if (z) *z = zz;
    if (n) *n = ss * ss;
    if (w) *w = ww;
    return 0;
}

/* ---- bytes ---------------------------------------------------------------------- */
/*
 * Layout (little-endian):
 *   0  magic "RKFTRL\0\0"     8  u32 version (1)     12 u32 header size (80)
 *   16 u32 dim                20 u32 flags (bit 0: intercept)
 *   24 f64 alpha  32 f64 beta  40 f64 l1  48 f64 l2
 *   56 f64 intercept z        64 f64 intercept sqrt(n)
 *   72 u64 count of records
 *   80 count x { u32 index, f32 z, f32 sqrt(n) }, indices increasing
 *   .. u64 checksum
 * Only coordinates with nonzero state are written; w is recomputed on load
 * by the same formula, so a loaded model predicts and keeps training
 * exactly as the saved one would have.
 */
static const char ftrl_magic[8] = {'R', 'K', 'F', 'T', 'R', 'L', 0, 0};
#define FTRL_VERSION 1u
#define FTRL_HDR 80u
#define FTRL_REC 12u

int rk_ftrl_save(const rk_ftrl *m, rk_buf *out, rk_err *err)
{
    uint64_t count = 0;
    for (uint32_t i = 0; i < m->dim; i++)
        count += m->st[i].z != 0.0f || m->st[i].s != 0.0f;
    size_t total = FTRL_HDR + (size_t)count * FTRL_REC + 8;
    int rc = rk_buf_reserve(out, total);
    if (rc)
        return rk_err_set(err, rc, "ftrl: cannot hold a %zu-byte model: %s",
                          total, rk_strerror(rc));
    size_t start = out->len;
    unsigned char *p = (unsigned char *)out->data + start;
    memcpy(p, ftrl_magic, 8);
    rk_put_u32(p + 8, FTRL_VERSION);
    rk_put_u32(p + 12, FTRL_HDR);
    rk_put_u32(p + 16, m->dim);
    rk_put_u32(p + 20, m->p.bias ? 1u : 0u);
    rk_put_f64(p + 24, m->p.alpha);
    rk_put_f64(p + 32, m->p.beta);
    rk_put_f64(p + 40, m->p.l1);
    rk_put_f64(p + 48, m->p.l2);
    rk_put_f64(p + 56, m->bz);
    rk_put_f64(p + 64, m->bs);
    rk_put_u64(p + 72, count);
    p += FTRL_HDR;
    for (uint32_t i = 0; i < m->dim; i++) {
        const rk__ftrl_rec *r = &m->st[i];
        if (r->z == 0.0f && r->s == 0.0f) continue;
        rk_put_u32(p, i);
        rk_put_f32(p + 4, r->z);
        rk_put_f32(p + 8, r->s);
        p += FTRL_REC;
    }
    out->len = start + total - 8;
    rk__rank_model_put_checksum(out, start);
    return 0;
}

int rk_ftrl_load(rk_ftrl **out, const void *bytes, size_t n, rk_err *err)
{
    static const char *what = "FTRL model";
    const unsigned char *p = bytes;
    *out = NULL;
    int rc = rk__rank_model_check_frame(p, n, ftrl_magic, FTRL_VERSION, FTRL_HDR,
                                   what, err);
    if (rc) return rc;
    uint32_t dim = rk_get_u32(p + 16), flags = rk_get_u32(p + 20);
    uint64_t count = rk_get_u64(p + 72);
    if (dim < 1 || dim > RK_FTRL_MAX_DIM)
        return rk_err_set(err, RK_ECORRUPT, "%s: dim %u outside [1, 2^30]",
                          what, dim);
    if (flags > 1)
        return rk_err_set(err, RK_ECORRUPT, "%s: unknown flags 0x%x", what,
                          flags);
    if (count > dim)
        return rk_err_set(err, RK_ECORRUPT, "%s: %llu records for dim %u",
                          what, (unsigned long long)count, dim);
    rc = rk__rank_model_check_tail(p, n, FTRL_HDR + (size_t)count * FTRL_REC + 8,
                              what, err);
    if (rc) return rc;
    rk_ftrl_params prm = {rk_get_f64(p + 24), rk_get_f64(p + 32),
                          rk_get_f64(p + 40), rk_get_f64(p + 48),
                          (int)flags};
    double bz = rk_get_f64(p + 56), bs = rk_get_f64(p + 64);
    if (!isfinite(bz) || !(bs >= 0) || !isfinite(bs) ||
        (!prm.bias && (bz != 0 || bs != 0)))
        return rk_err_set(err, RK_ECORRUPT, "%s: bad intercept state", what);
    rk_ftrl *m;
    rk_err e = {0};
    rc = ftrl_alloc(&m, dim, &prm, &e);
    if (rc == RK_EINVAL)
        return rk_err_set(err, RK_ECORRUPT, "%s: %s", what, e.msg);
    if (rc) return rk_err_set(err, rc, "%s: %s", what, e.msg);
    const unsigned char *r = p + FTRL_HDR;
    int64_t prev = -1;
    for (uint64_t c = 0; c < count; c++, r += FTRL_REC) {
        uint32_t i = rk_get_u32(r);
        float z = rk_get_f32(r + 4), s = rk_get_f32(r + 8);
        if ((int64_t)i <= prev || i >= dim || !isfinite(z) || !(s >= 0) ||
            !isfinite(s)) {
            rk_ftrl_destroy(m);
            return rk_err_set(err, RK_ECORRUPT, "%s: record %llu (index %u) "
                              "is out of order, out of range or not finite",
                              what, (unsigned long long)c, i);
        }
        prev = i;
        m->st[i].z = z;
        m->st[i].s = s;
        m->st[i].w = rk__ftrl_weight(z, s, &m->hp);
    }
    m->bz = bz;
    m->bs = bs;
    double den = (prm.beta + bs) / prm.alpha;
    m->bw = prm.bias && den > 0 ? -bz / den : 0.0;
    *out = m;
    return 0;
}
