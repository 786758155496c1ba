/*
 * ranker.c — one interface over GBDT, FTRL and FM for training drivers and
 * serving.
 *
 * A ranker remembers the feature widths it was trained with (dense
 * columns, hash bits) and the down-sampling rate of its training set, so
 * that predicting needs nothing but feature vectors: trees get the dense
 * block (plus an optional fold of the hashed coordinates), linear models
 * the sparse view of rk_fvec_as_sparse. Calibration runs after the
 * down-sampling correction and only for the binary task; ranking scores
 * are left as the model made them, since only their order matters.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rk_train.h"

#define MAGIC "RKRANKR\n"
#define VERSION 1u
#define HEADER 48u

struct rk_ranker {
    rk_ranker_kind kind;
    rk_ranker_task task;
    uint32_t ndense, hash_bits, sparse_cols, ndcg_k;
    double neg_rate;          /* 1 = no correction */
    rk_gbdt *gbdt;
    rk_ftrl *ftrl;
    rk_fm *fm;
    rk_calib *calib;
    void *spec;               /* rk_feat_spec_save bytes, or NULL */
    size_t spec_len;
    /* Linear models' numeric input transform, fitted on the training set:
     * per dense column the mean and 1/std of slog(x) and NBUCKETS - 1
     * quantile edges of slog(x). */
    float *mean, *inv_std, *edges;
};

/* Linear models see each dense column twice: standardised (after a signed
 * log, since counts and prices are heavy-tailed) and as a one-hot quantile
 * bucket, so a linear model can learn a non-monotone effect. A missing
 * value gets a bucket of its own. */
#define NBUCKETS 16

static const char *const kind_names[] = {"gbdt", "ftrl", "fm"};

void rk_ranker_opts_default(rk_ranker_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = RK_RANKER_GBDT;
    o->task = RK_TASK_BINARY;
    rk_gbdt_params_default(&o->gbdt);
    rk_ftrl_params_default(&o->ftrl);
    rk_ftrl_train_opts_default(&o->ftrl_train);
    rk_fm_params_default(&o->fm);
    rk_fm_train_opts_default(&o->fm_train);
    o->calib = RK_CALIB_NONE;
    o->ndcg_k = 10;
}

const char *rk_ranker_kind_name(rk_ranker_kind k)
{
    return (unsigned)k < 3 ? kind_names[k] : "unknown";
}

int rk_ranker_kind_parse(const char *s, rk_ranker_kind *out, rk_err *err)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, kind_names[i]) == 0) {
            *out = (rk_ranker_kind)i;
            return 0;
        }
    return rk_err_set(err, RK_EINVAL, "unknown ranker '%s' (gbdt, ftrl, fm)", s);
}

rk_ranker_kind rk_ranker_get_kind(const rk_ranker *r) { return r->kind; }

int rk_ranker_set_spec(rk_ranker *r, const void *p, size_t n)
{
    void *c = NULL;
    if (n) {
        if (!(c = rk_malloc(n))) return RK_ENOMEM;
        memcpy(c, p, n);
    }
    rk_free(r->spec);
    r->spec = c;
    r->spec_len = n;
    return 0;
}

const void *rk_ranker_spec(const rk_ranker *r, size_t *n)
{
    *n = r->spec_len;
    return r->spec;
}
rk_ranker_task rk_ranker_get_task(const rk_ranker *r) { return r->task; }
const rk_gbdt *rk_ranker_gbdt(const rk_ranker *r) { return r->gbdt; }

void rk_ranker_destroy(rk_ranker *r)
{
    if (!r) return;
    rk_gbdt_destroy(r->gbdt);
    rk_ftrl_destroy(r->ftrl);
    rk_fm_destroy(r->fm);
    rk_calib_destroy(r->calib);
    rk_free(r->spec);
    rk_free(r->mean);
    rk_free(r->inv_std);
    rk_free(r->edges);
    rk_free(r);
}

static uint32_t sparse_dim(const rk_ranker *r)
{
    return r->ndense + (1u << r->hash_bits);
}

/* ---- data views ------------------------------------------------------------ */

/* Linear models learn P(label > 0); labels are made binary here so that a
 * graded ranking set trains them pointwise. */
static int binary_labels(const float *label, size_t n, float **out)
{
    float *y = rk_malloc((n ? n : 1) * sizeof *y);
    if (!y) return RK_ENOMEM;
    for (size_t i = 0; i < n; i++) y[i] = label[i] > 0 ? 1.0f : 0.0f;
    *out = y;
    return 0;
}

static float slog(float x) { return copysignf(log1pf(fabsf(x)), x); }

/* The hashed coordinate of dense column j's bucket b (b == NBUCKETS:
 * missing). */
static uint32_t bucket_coord(const rk_ranker *r, uint32_t j, uint32_t b)
{
    uint32_t key[2] = {j, b};
    uint64_t h = rk_hash64(key, sizeof key, 0x6275636b6574ull);
    return r->ndense + (uint32_t)(h & ((1ull << r->hash_bits) - 1));
}

/* Number of entries linear_row writes at most. */
static size_t linear_cap(const rk_ranker *r, const rk_fvec *x)
{
    return 2 * (size_t)r->ndense + x->nsparse;
}

static void linear_row(const rk_ranker *r, const rk_fvec *x, uint32_t *idx,
                       float *val, uint32_t *n)
{
    uint32_t k = 0;
    for (uint32_t j = 0; j < r->ndense; j++) {
        float v = x->dense[j];
        uint32_t b = NBUCKETS;
        if (!isnan(v)) {
            float s = slog(v);
            idx[k] = j;
            val[k++] = (s - r->mean[j]) * r->inv_std[j];
            const float *e = r->edges + (size_t)j * (NBUCKETS - 1);
            b = 0;
            while (b < NBUCKETS - 1 && s >= e[b]) b++;
        }
        idx[k] = bucket_coord(r, j, b);
        val[k++] = 1.0f;
    }
    for (uint32_t i = 0; i < x->nsparse; i++) {
        idx[k] = r->ndense + x->idx[i];
        val[k++] = x->val[i];
    }
    *n = k;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int fit_linear_transform(rk_ranker *r, const rk_trainset *t, rk_err *err)
{
    uint32_t nd = r->ndense;
    size_t n = rk_trainset_rows(t);
    r->mean = rk_calloc(nd ? nd : 1, sizeof *r->mean);
    r->inv_std = rk_calloc(nd ? nd : 1, sizeof *r->inv_std);
    r->edges = rk_calloc(nd ? (size_t)nd * (NBUCKETS - 1) : 1, sizeof *r->edges);
    float *col = rk_malloc((n ? n : 1) * sizeof *col);
    if (!r->mean || !r->inv_std || !r->edges || !col) {
        rk_free(col);
        return rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
    }
    for (uint32_t j = 0; j < nd; j++) {
        size_t m = 0;
        double sum = 0, sq = 0;
        for (size_t i = 0; i < n; i++) {
            rk_trow row;
            rk_trainset_get(t, i, &row);
            if (isnan(row.x.dense[j])) continue;
            float s = slog(row.x.dense[j]);
            col[m++] = s;
            sum += s;
            sq += (double)s * s;
        }
        double mean = m ? sum / (double)m : 0;
        double var = m ? sq / (double)m - mean * mean : 0;
        r->mean[j] = (float)mean;
        r->inv_std[j] = var > 1e-12 ? (float)(1 / sqrt(var)) : 1.0f;
        float *e = r->edges + (size_t)j * (NBUCKETS - 1);
        if (m) {
            qsort(col, m, sizeof *col, cmp_float);
            for (uint32_t b = 1; b < NBUCKETS; b++) e[b - 1] = col[(size_t)b * m / NBUCKETS];
        }
    }
    rk_free(col);
    return 0;
}

/* A whole set as sparse examples for FTRL/FM, through linear_row. */
typedef struct sparse_view {
    uint64_t *off;
    uint32_t *idx;
    float *val, *y, *w;
    rk_sparse *rows;
    rk_sparse_set set;
} sparse_view;

static void sparse_view_free(sparse_view *v)
{
    rk_free(v->off);
    rk_free(v->idx);
    rk_free(v->val);
    rk_free(v->y);
    rk_free(v->w);
    rk_free(v->rows);
    memset(v, 0, sizeof *v);
}

static int sparse_view_make(const rk_ranker *r, const rk_trainset *t,
                            sparse_view *v, rk_err *err)
{
    memset(v, 0, sizeof *v);
    size_t n = rk_trainset_rows(t), total = 0;
    for (size_t i = 0; i < n; i++) {
        rk_trow row;
        rk_trainset_get(t, i, &row);
        total += linear_cap(r, &row.x);
    }
    v->off = rk_malloc((n + 1) * sizeof *v->off);
    v->idx = rk_malloc((total ? total : 1) * sizeof *v->idx);
    v->val = rk_malloc((total ? total : 1) * sizeof *v->val);
    v->y = rk_malloc((n ? n : 1) * sizeof *v->y);
    v->w = rk_malloc((n ? n : 1) * sizeof *v->w);
    v->rows = rk_malloc((n ? n : 1) * sizeof *v->rows);
    if (!v->off || !v->idx || !v->val || !v->y || !v->w || !v->rows) {
        sparse_view_free(v);
        return rk_err_set(err, RK_ENOMEM, "ranker: out of memory for %zu examples", n);
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        rk_trow row;
        rk_trainset_get(t, i, &row);
        uint32_t k;
        linear_row(r, &row.x, v->idx + at, v->val + at, &k);
        v->off[i] = at;
        v->rows[i] = (rk_sparse){v->idx + at, v->val + at, k};
        v->y[i] = row.label > 0 ? 1.0f : 0.0f;
        v->w[i] = row.weight;
        at += k;
    }
    v->off[n] = at;
    v->set.x = v->rows;
    v->set.y = v->y;
    v->set.w = v->w;
    v->set.n = n;
    return 0;
}

static void group_sizes_per_group_weights(const rk_tdense *d, float **w)
{
    /* XGBoost's ranking objectives weigh whole groups: one weight per
     * group, here the first row's. */
    *w = NULL;
    if (!d->ngroups) return;
    float *gw = rk_malloc(d->ngroups * sizeof *gw);
    if (!gw) return;
    size_t row = 0;
    for (size_t g = 0; g < d->ngroups; g++) {
        gw[g] = d->weight[row];
        row += d->group_size[g];
    }
    *w = gw;
}

/* ---- training ---------------------------------------------------------------- */

static int train_gbdt(rk_ranker *r, const rk_trainset *train,
                      const rk_trainset *valid, const rk_ranker_opts *o,
                      rk_err *err)
{
    unsigned flags = r->task == RK_TASK_RANK ? RK_TDENSE_GROUPED : 0;
    rk_tdense dt = {0}, dv = {0};
    float *tw = NULL, *vw = NULL, *ty = NULL, *vy = NULL;
    int rc = rk_trainset_dense(train, flags, r->sparse_cols, &dt);
    if (!rc && valid) rc = rk_trainset_dense(valid, flags, r->sparse_cols, &dv);
    if (rc) {
        rk_err_set(err, rc, "dense export: %s", rk_strerror(rc));
        goto out;
    }
    rk_gbdt_params p = o->gbdt;
    p.objective = r->task == RK_TASK_RANK ? RK_GBDT_RANK_NDCG : RK_GBDT_BINARY;
    rk_gbdt_data td = {dt.x, dt.label, dt.weight, NULL, 0};
    rk_gbdt_data vd = {dv.x, dv.label, dv.weight, NULL, 0};
    if (r->task == RK_TASK_RANK) {
        td.groups = dt.group_size;
        td.ngroups = dt.ngroups;
        group_sizes_per_group_weights(&dt, &tw);
        td.w = tw;
        if (valid) {
            vd.groups = dv.group_size;
            vd.ngroups = dv.ngroups;
            group_sizes_per_group_weights(&dv, &vw);
            vd.w = vw;
        }
        if ((dt.ngroups && !tw) || (valid && dv.ngroups && !vw)) {
            rc = rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
            goto out;
        }
    } else {
        /* binary:logistic wants labels in [0, 1]. */
        if ((rc = binary_labels(dt.label, dt.x.nrows, &ty)) ||
            (valid && (rc = binary_labels(dv.label, dv.x.nrows, &vy)))) {
            rc = rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
            goto out;
        }
        td.y = ty;
        vd.y = vy;
    }
    rc = rk_gbdt_train(&r->gbdt, &td, valid && dv.x.nrows ? &vd : NULL, &p, err);
out:
    rk_free(tw);
    rk_free(vw);
    rk_free(ty);
    rk_free(vy);
    rk_tdense_free(&dt);
    rk_tdense_free(&dv);
    return rc;
}

static int train_linear(rk_ranker *r, const rk_trainset *train,
                        const rk_trainset *valid, const rk_ranker_opts *o,
                        rk_err *err)
{
    sparse_view tv, vv = {0};
    int rc = fit_linear_transform(r, train, err);
    if (rc) return rc;
    if ((rc = sparse_view_make(r, train, &tv, err))) return rc;
    if (valid && (rc = sparse_view_make(r, valid, &vv, err))) {
        sparse_view_free(&tv);
        return rc;
    }
    if (r->kind == RK_RANKER_FTRL) {
        rc = rk_ftrl_create(&r->ftrl, sparse_dim(r), &o->ftrl, err);
        if (!rc) rc = rk_ftrl_train(r->ftrl, &tv.set, &o->ftrl_train, NULL, err);
    } else {
        rc = rk_fm_create(&r->fm, sparse_dim(r), &o->fm, err);
        if (!rc)
            rc = rk_fm_train(r->fm, &tv.set, valid && vv.set.n ? &vv.set : NULL,
                             &o->fm_train, NULL, err);
    }
    sparse_view_free(&tv);
    sparse_view_free(&vv);
    return rc;
}

/* Raw scores (before calibration) of every row of a set. */
static int raw_scores(const rk_ranker *r, const rk_trainset *t, float *out,
                      rk_err *err);

static int fit_calibration(rk_ranker *r, const rk_trainset *valid,
                           const rk_ranker_opts *o, rk_err *err)
{
    rk_calib_params cp;
    rk_calib_params_default(&cp);
    cp.neg_rate = r->neg_rate;
    cp.method = r->task == RK_TASK_BINARY ? o->calib : RK_CALIB_NONE;
    int rc = rk_calib_create(&r->calib, &cp, err);
    if (rc || cp.method == RK_CALIB_NONE || !valid) return rc;
    size_t n = rk_trainset_rows(valid);
    if (n == 0) return 0;
    float *q = rk_malloc(n * sizeof *q), *y = rk_malloc(n * sizeof *y),
          *w = rk_malloc(n * sizeof *w);
    if (!q || !y || !w) {
        rc = rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
        goto out;
    }
    if ((rc = raw_scores(r, valid, q, err))) goto out;
    for (size_t i = 0; i < n; i++) {
        rk_trow row;
        rk_trainset_get(valid, i, &row);
        y[i] = row.label > 0 ? 1.0f : 0.0f;
        w[i] = row.weight;
    }
    rc = rk_calib_fit(r->calib, q, y, w, n, err);
out:
    rk_free(q);
    rk_free(y);
    rk_free(w);
    return rc;
}

int rk_ranker_train(rk_ranker **out, const rk_trainset *train,
                    const rk_trainset *valid, const rk_ranker_opts *o,
                    rk_err *err)
{
    rk_ranker_opts dflt;
    if (!o) {
        rk_ranker_opts_default(&dflt);
        o = &dflt;
    }
    *out = NULL;
    if ((unsigned)o->kind > RK_RANKER_FM || (unsigned)o->task > RK_TASK_RANK)
        return rk_err_set(err, RK_EINVAL, "ranker: bad kind or task");
    if (rk_trainset_rows(train) == 0)
        return rk_err_set(err, RK_EINVAL, "ranker: the training set is empty");
    if (valid && (rk_trainset_ndense(valid) != rk_trainset_ndense(train) ||
                  rk_trainset_hash_bits(valid) != rk_trainset_hash_bits(train)))
        return rk_err_set(err, RK_EINVAL, "ranker: training and validation sets "
                          "have different feature widths");
    rk_trainset_summary sum;
    int rc = rk_trainset_summarize(train, &sum);
    if (rc) return rk_err_set(err, rc, "ranker: %s", rk_strerror(rc));
    rk_ranker *r = rk_calloc(1, sizeof *r);
    if (!r) return rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
    r->kind = o->kind;
    r->task = o->task;
    r->ndense = rk_trainset_ndense(train);
    r->hash_bits = rk_trainset_hash_bits(train);
    r->sparse_cols = o->kind == RK_RANKER_GBDT ? o->gbdt_sparse_cols : 0;
    r->ndcg_k = o->ndcg_k;
    /* Reweighted negatives already carry the correction in their weights. */
    r->neg_rate = sum.neg_reweighted ? 1.0 : sum.neg_rate;
    if (r->kind != RK_RANKER_GBDT && r->hash_bits > 30)
        rc = rk_err_set(err, RK_EINVAL, "ranker: hash_bits %u too large", r->hash_bits);
    else if (r->kind == RK_RANKER_GBDT && r->ndense + r->sparse_cols == 0)
        rc = rk_err_set(err, RK_EINVAL, "ranker: the features have no dense "
                        "columns for trees (fold the hashed ones into some with "
                        "gbdt_sparse_cols, --sparse-cols N on the command line)");
    else if (r->kind == RK_RANKER_GBDT)
        rc = train_gbdt(r, train, valid, o, err);
    else
        rc = train_linear(r, train, valid, o, err);
    if (!rc) rc = fit_calibration(r, valid, o, err);
    if (rc) {
        rk_ranker_destroy(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- prediction ---------------------------------------------------------------- */

/* Fills one tree row from a feature vector: the dense block, then hashed
 * coordinates folded into sparse_cols columns as rk_trainset_dense does. */
static void tree_row(const rk_ranker *r, const rk_fvec *x, float *row)
{
    uint32_t ncols = r->ndense + r->sparse_cols;
    memcpy(row, x->dense, r->ndense * sizeof *row);
    for (uint32_t j = r->ndense; j < ncols; j++) row[j] = NAN;
    if (!r->sparse_cols) return;
    for (uint32_t i = 0; i < x->nsparse; i++) {
        float *c = &row[r->ndense + x->idx[i] % r->sparse_cols];
        *c = isnan(*c) ? x->val[i] : *c + x->val[i];
    }
}

/* Raw model outputs of n vectors given as an accessor over a set or an
 * array, so both share one loop. */
typedef struct src {
    const rk_fvec *arr;
    const rk_trainset *set;
} src;

static const rk_fvec *src_get(const src *s, size_t i, rk_trow *tmp)
{
    if (s->arr) return &s->arr[i];
    rk_trainset_get(s->set, i, tmp);
    return &tmp->x;
}

#define TREE_BLOCK 256

/* A vector a linear model can take: the trained dense width and hashed
 * coordinates within its bits. RK_EINVAL naming vector i otherwise. */
static int linear_check(const rk_ranker *r, const rk_fvec *x, size_t i, rk_err *err)
{
    if (x->ndense != r->ndense)
        return rk_err_set(err, RK_EINVAL, "ranker: vector %zu has %u dense "
                          "columns, the model %u", i, x->ndense, r->ndense);
    for (uint32_t j = 0; j < x->nsparse; j++)
        if (x->idx[j] >> r->hash_bits)
            return rk_err_set(err, RK_EINVAL, "ranker: vector %zu has hashed "
                              "coordinate %u beyond %u bits", i, x->idx[j],
                              r->hash_bits);
    return 0;
}

static int raw_many(const rk_ranker *r, const src *s, size_t n, float *out,
                    rk_err *err)
{
    rk_trow tmp;
    if (r->kind == RK_RANKER_GBDT) {
        uint32_t ncols = r->ndense + r->sparse_cols;
        float *buf = rk_malloc((size_t)TREE_BLOCK * (ncols ? ncols : 1) * sizeof *buf);
        if (!buf) return rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
        int rc = 0;
        for (size_t at = 0; !rc && at < n; at += TREE_BLOCK) {
            size_t m = n - at < TREE_BLOCK ? n - at : TREE_BLOCK;
            for (size_t i = 0; i < m; i++) {
                const rk_fvec *x = src_get(s, at + i, &tmp);
                if (x->ndense != r->ndense) {
                    rc = rk_err_set(err, RK_EINVAL, "ranker: vector %zu has %u "
                                    "dense columns, the model %u", at + i,
                                    x->ndense, r->ndense);
                    break;
                }
                tree_row(r, x, buf + i * ncols);
            }
            rk_dmat d = {buf, m, ncols, ncols};
            if (!rc && (rc = rk_gbdt_predict(r->gbdt, &d, out + at, RK_GBDT_MARGIN)))
                rk_err_set(err, rc, "ranker: tree prediction failed");
            /* Probabilities for the binary task come from the margin so
             * that calibration sees the model's own output. */
            if (!rc && r->task == RK_TASK_BINARY)
                for (size_t i = 0; i < m; i++)
                    out[at + i] = 1.0f / (1.0f + expf(-out[at + i]));
        }
        rk_free(buf);
        return rc;
    }
    size_t cap = 0;
    uint32_t *idx = NULL;
    float *val = NULL;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const rk_fvec *x = src_get(s, i, &tmp);
        if ((rc = linear_check(r, x, i, err))) break;
        size_t need = linear_cap(r, x);
        if (need > cap) {
            cap = need * 2;
            rk_free(idx);
            rk_free(val);
            idx = rk_malloc(cap * sizeof *idx);
            val = rk_malloc(cap * sizeof *val);
            if (!idx || !val) {
                rc = rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
                break;
            }
        }
        rk_sparse sp = {idx, val, 0};
        linear_row(r, x, idx, val, &sp.n);
        rc = r->kind == RK_RANKER_FTRL ? rk_ftrl_predict(r->ftrl, &sp, &out[i])
                                       : rk_fm_predict(r->fm, &sp, &out[i]);
        if (rc) rk_err_set(err, rc, "ranker: vector %zu: invalid value", i);
    }
    rk_free(idx);
    rk_free(val);
    return rc;
}

static int raw_scores(const rk_ranker *r, const rk_trainset *t, float *out,
                      rk_err *err)
{
    src s = {NULL, t};
    return raw_many(r, &s, rk_trainset_rows(t), out, err);
}

static void finish_scores(const rk_ranker *r, float *out, size_t n)
{
    if (r->task == RK_TASK_BINARY && r->calib) rk_calib_apply_many(r->calib, out, out, n);
}

int rk_ranker_predict(const rk_ranker *r, const rk_fvec *x, size_t n,
                      float *out, rk_err *err)
{
    src s = {x, NULL};
    int rc = raw_many(r, &s, n, out, err);
    if (!rc) finish_scores(r, out, n);
    return rc;
}

int rk_ranker_predict_set(const rk_ranker *r, const rk_trainset *t,
                          float *out, rk_err *err)
{
    int rc = raw_scores(r, t, out, err);
    if (!rc) finish_scores(r, out, rk_trainset_rows(t));
    return rc;
}

/* ---- online learning ------------------------------------------------------------- */

static int not_online(rk_err *err)
{
    return rk_err_set(err, RK_EINVAL, "ranker: a gbdt ranker does not learn "
                      "online (use ftrl or fm)");
}

int rk_ranker_update(rk_ranker *r, const rk_fvec *x, float y, float w,
                     float *p_before, rk_err *err)
{
    if (r->kind == RK_RANKER_GBDT) return not_online(err);
    int rc = linear_check(r, x, 0, err);
    if (rc) return rc;
    if (!(w >= 0) || !isfinite(w))
        return rk_err_set(err, RK_EINVAL, "ranker: weight must be finite and >= 0");
    uint32_t stack_i[256];
    float stack_v[256];
    size_t need = linear_cap(r, x);
    uint32_t *idx = need <= 256 ? stack_i : rk_malloc(need * sizeof *idx);
    float *val = need <= 256 ? stack_v : rk_malloc(need * sizeof *val);
    if (!idx || !val) {
        rc = rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
    } else {
        rk_sparse sp = {idx, val, 0};
        linear_row(r, x, idx, val, &sp.n);
        float yb = y > 0 ? 1.0f : 0.0f, p = NAN;
        rc = r->kind == RK_RANKER_FTRL ? rk_ftrl_update(r->ftrl, &sp, yb, w, &p)
                                       : rk_fm_update(r->fm, &sp, yb, w, &p);
        if (rc) rk_err_set(err, rc, "ranker: invalid value in the example");
        else if (p_before) {
            if (r->task == RK_TASK_BINARY && r->calib) rk_calib_apply_many(r->calib, &p, &p, 1);
            *p_before = p;
        }
    }
    if (idx != stack_i) rk_free(idx);
    if (val != stack_v) rk_free(val);
    return rc;
}

int rk_ranker_forget(rk_ranker *r, double keep, rk_err *err)
{
    if (r->kind == RK_RANKER_GBDT) return not_online(err);
    if (!(keep > 0 && keep <= 1))
        return rk_err_set(err, RK_EINVAL, "ranker: forget: keep must be in "
                          "(0, 1], got %g", keep);
    return r->kind == RK_RANKER_FTRL ? rk_ftrl_forget(r->ftrl, keep)
                                     : rk_fm_forget(r->fm, keep);
}

int rk_ranker_clone(rk_ranker **out, const rk_ranker *r, rk_err *err)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    *out = NULL;
    int rc = rk_ranker_save(r, &b, err);
    if (!rc) rc = rk_ranker_load(out, b.data, b.len, err);
    rk_buf_free(&b);
    return rc;
}

/* ---- evaluation ------------------------------------------------------------- */

static void put_metric(rk_ranker_eval *e, const char *name, double v)
{
    if (e->n >= RK_RANKER_MAX_METRICS) return;
    snprintf(e->names[e->n], RK_METRIC_NAME_MAX, "%s", name);
    e->m[e->n].name = e->names[e->n];
    e->m[e->n].value = v;
    e->n++;
}

double rk_ranker_eval_get(const rk_ranker_eval *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->m[i].name, name) == 0) return e->m[i].value;
    return NAN;
}

int rk_ranker_evaluate(const rk_ranker *r, const rk_trainset *t,
                       rk_ranker_eval *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    size_t n = rk_trainset_rows(t);
    if (n == 0) return rk_err_set(err, RK_EINVAL, "evaluate: the set is empty");
    float *p = rk_malloc(n * sizeof *p), *y = rk_malloc(n * sizeof *y),
          *g = rk_malloc(n * sizeof *g), *w = rk_malloc(n * sizeof *w);
    uint64_t *grp = rk_malloc(n * sizeof *grp);
    int rc = 0;
    if (!p || !y || !g || !w || !grp) {
        rc = rk_err_set(err, RK_ENOMEM, "evaluate: out of memory");
        goto out;
    }
    if ((rc = rk_ranker_predict_set(r, t, p, err))) goto out;
    int have_groups = 0;
    for (size_t i = 0; i < n; i++) {
        rk_trow row;
        rk_trainset_get(t, i, &row);
        g[i] = row.label;
        y[i] = row.label > 0 ? 1.0f : 0.0f;
        w[i] = row.weight;
        grp[i] = row.group;
        have_groups |= row.group != 0;
        out->positives += y[i];
    }
    out->rows = n;
    char name[RK_METRIC_NAME_MAX];
    if (r->task == RK_TASK_RANK) {
        double ndcg, map;
        if ((rc = rk_metrics_ndcg(p, g, have_groups ? grp : NULL, n, r->ndcg_k,
                                  RK_EMPTY_ONE, &ndcg, NULL, err)) ||
            (rc = rk_metrics_map(p, g, have_groups ? grp : NULL, n, r->ndcg_k,
                                 RK_EMPTY_ONE, &map, NULL, err)))
            goto out;
        snprintf(name, sizeof name, "ndcg@%u", r->ndcg_k);
        put_metric(out, name, ndcg);
        snprintf(name, sizeof name, "map@%u", r->ndcg_k);
        put_metric(out, name, map);
        /* Scores are not probabilities: only the order-based binary
         * metrics apply. */
        double auc;
        if ((rc = rk_metrics_auc(p, y, w, n, &auc, err))) goto out;
        put_metric(out, "auc", auc);
    } else {
        rk_cls_metrics cm;
        if ((rc = rk_metrics_cls(p, y, w, n, &cm, err))) goto out;
        put_metric(out, "auc", cm.auc);
        put_metric(out, "pr_auc", cm.pr_auc);
        put_metric(out, "logloss", cm.logloss);
        put_metric(out, "ne", cm.ne);
        put_metric(out, "calibration", cm.calibration);
        /* The calibration check in absolute terms: the mean predicted
         * probability against the observed positive rate. */
        double swp = 0;
        for (size_t i = 0; i < n; i++) swp += (double)w[i] * p[i];
        put_metric(out, "mean_prediction", cm.weight > 0 ? swp / cm.weight : NAN);
        put_metric(out, "positive_rate", cm.weight > 0 ? cm.positive_weight /
                   cm.weight : NAN);
        if (have_groups) {
            double gauc;
            if ((rc = rk_metrics_gauc(p, y, w, grp, n, &gauc, NULL, err))) goto out;
            put_metric(out, "gauc", gauc);
        }
    }
out:
    rk_free(p);
    rk_free(y);
    rk_free(g);
    rk_free(w);
    rk_free(grp);
    return rc;
}

/* ---- serialisation -------------------------------------------------------------- */


int rk_ranker_save(const rk_ranker *r, rk_buf *out, rk_err *err)
{
    size_t start = out->len;
    unsigned char h[HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, MAGIC, 8);
    rk_put_u32(h + 8, VERSION);
    rk_put_u32(h + 12, (uint32_t)r->kind);
    rk_put_u32(h + 16, (uint32_t)r->task);
    rk_put_u32(h + 20, r->ndense);
    rk_put_u32(h + 24, r->hash_bits);
    rk_put_u32(h + 28, r->sparse_cols);
    rk_put_u32(h + 32, r->ndcg_k);
    rk_put_f64(h + 40, r->neg_rate);
    int rc = rk_buf_append(out, h, sizeof h);
    /* Each part is preceded by its length, patched once written. */
    for (int part = 0; !rc && part < 4; part++) {
        size_t at = out->len;
        unsigned char len[8] = {0};
        if ((rc = rk_buf_append(out, len, 8))) break;
        if (part == 0) {
            if (r->kind == RK_RANKER_GBDT) rc = rk_gbdt_save(r->gbdt, out);
            else if (r->kind == RK_RANKER_FTRL) rc = rk_ftrl_save(r->ftrl, out, err);
            else rc = rk_fm_save(r->fm, out, err);
        } else if (part == 1) {
            rc = rk_calib_save(r->calib, out, err);
        } else if (part == 2) {
            if (r->mean) {
                size_t nd = r->ndense;
                rc = rk_buf_append(out, r->mean, nd * sizeof(float));
                if (!rc) rc = rk_buf_append(out, r->inv_std, nd * sizeof(float));
                if (!rc) rc = rk_buf_append(out, r->edges,
                                            nd * (NBUCKETS - 1) * sizeof(float));
            }
        } else if (r->spec_len) {
            rc = rk_buf_append(out, r->spec, r->spec_len);
        }
        if (!rc) rk_put_u64((unsigned char *)out->data + at, out->len - at - 8);
    }
    if (rc) {
        out->len = start;
        return rk_err_set(err, rc, "ranker: cannot serialise: %s", rk_strerror(rc));
    }
    return 0;
}

static int load_transform(rk_ranker *r, const unsigned char *p, size_t len,
                          rk_err *err)
{
    size_t nd = r->ndense, want = nd * (NBUCKETS + 1) * sizeof(float);
    int linear = r->kind != RK_RANKER_GBDT;
    if (len != (linear ? want : 0))
        return rk_err_set(err, RK_ECORRUPT, "ranker: input transform of %zu bytes, "
                          "expected %zu", len, linear ? want : 0);
    if (!linear) return 0;
    r->mean = rk_malloc(nd ? nd * sizeof(float) : 1);
    r->inv_std = rk_malloc(nd ? nd * sizeof(float) : 1);
    r->edges = rk_malloc(nd ? nd * (NBUCKETS - 1) * sizeof(float) : 1);
    if (!r->mean || !r->inv_std || !r->edges)
        return rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
    memcpy(r->mean, p, nd * sizeof(float));
    memcpy(r->inv_std, p + nd * sizeof(float), nd * sizeof(float));
    memcpy(r->edges, p + 2 * nd * sizeof(float), nd * (NBUCKETS - 1) * sizeof(float));
    for (size_t i = 0; i < nd * (NBUCKETS + 1); i++) {
        float f;
        memcpy(&f, p + i * sizeof(float), sizeof f);
        if (!isfinite(f))
            return rk_err_set(err, RK_ECORRUPT, "ranker: non-finite input transform");
    }
    return 0;
}

int rk_ranker_load(rk_ranker **out, const void *data, size_t n, rk_err *err)
{
    const unsigned char *p = data;
    *out = NULL;
    if (n < HEADER || memcmp(p, MAGIC, 8) != 0)
        return rk_err_set(err, RK_ECORRUPT, "ranker: not a ranker payload "
                          "(bad magic or %zu bytes)", n);
    if (rk_get_u32(p + 8) != VERSION)
        return rk_err_set(err, RK_EVERSION, "ranker: format version %u, this "
                          "build reads %u", rk_get_u32(p + 8), VERSION);
    rk_ranker *r = rk_calloc(1, sizeof *r);
    if (!r) return rk_err_set(err, RK_ENOMEM, "ranker: out of memory");
    r->kind = (rk_ranker_kind)rk_get_u32(p + 12);
    r->task = (rk_ranker_task)rk_get_u32(p + 16);
    r->ndense = rk_get_u32(p + 20);
    r->hash_bits = rk_get_u32(p + 24);
    r->sparse_cols = rk_get_u32(p + 28);
    r->ndcg_k = rk_get_u32(p + 32);
    r->neg_rate = rk_get_f64(p + 40);
    int rc = 0;
    if ((unsigned)r->kind > RK_RANKER_FM || (unsigned)r->task > RK_TASK_RANK ||
        r->hash_bits > 30 || r->ndense > (1u << 16) || r->sparse_cols > (1u << 20) ||
        !(r->neg_rate > 0 && r->neg_rate <= 1)) {
        rc = rk_err_set(err, RK_ECORRUPT, "ranker: bad header field");
        goto fail;
    }
    size_t at = HEADER;
    for (int part = 0; part < 4; part++) {
        if (n - at < 8) {
            rc = rk_err_set(err, RK_ECORRUPT, "ranker: truncated");
            goto fail;
        }
        uint64_t len = rk_get_u64(p + at);
        at += 8;
        if (len > n - at) {
            rc = rk_err_set(err, RK_ECORRUPT, "ranker: truncated (part %d needs "
                            "%llu bytes, %zu left)", part, (unsigned long long)len,
                            n - at);
            goto fail;
        }
        if (part == 0) {
            if (r->kind == RK_RANKER_GBDT) rc = rk_gbdt_load(&r->gbdt, p + at, len, err);
            else if (r->kind == RK_RANKER_FTRL) rc = rk_ftrl_load(&r->ftrl, p + at, len, err);
            else rc = rk_fm_load(&r->fm, p + at, len, err);
        } else if (part == 1) {
            rc = rk_calib_load(&r->calib, p + at, len, err);
        } else if (part == 2) {
            rc = load_transform(r, p + at, len, err);
        } else if (len && (rc = rk_ranker_set_spec(r, p + at, len))) {
            rk_err_set(err, rc, "ranker: out of memory");
        }
        if (rc) goto fail;
        at += len;
    }
    if (at != n) {
        rc = rk_err_set(err, RK_ECORRUPT, "ranker: %zu trailing bytes", n - at);
        goto fail;
    }
    /* The model must fit the widths the header promises. */
    if ((r->kind == RK_RANKER_FTRL && rk_ftrl_dim(r->ftrl) != sparse_dim(r)) ||
        (r->kind == RK_RANKER_FM && rk_fm_dim(r->fm) != sparse_dim(r))) {
        rc = rk_err_set(err, RK_ECORRUPT, "ranker: model dimension does not "
                        "match the feature widths");
        goto fail;
    }
    if (r->kind == RK_RANKER_GBDT) {
        rk_gbdt_info info;
        rk_gbdt_info_get(r->gbdt, &info);
        if (info.nfeatures != (size_t)r->ndense + r->sparse_cols) {
            rc = rk_err_set(err, RK_ECORRUPT, "ranker: the trees use %zu "
                            "features, the header promises %u", info.nfeatures,
                            r->ndense + r->sparse_cols);
            goto fail;
        }
    }
    *out = r;
    return 0;
fail:
    rk_ranker_destroy(r);
    return rc;
}
