/*
 * split.c — evaluation protocols: how the feedback is cut into a training
 * matrix and test cases.
 *
 * Every protocol ends the same way: a set of training users and their
 * pairs becomes a compact matrix whose columns are the catalog (items with
 * at least one training pair, in increasing id order, so mapping a sorted
 * item list to columns keeps it sorted), and each test case gets its
 * fold-in items and scored items as columns. Invariants the tests check:
 * a case's scored items are never among its fold-in items nor in any
 * training row of that user; the split depends only on the data, the
 * options and the seed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_int.h"

static const char *const protocol_names[RK_EVAL_PROTOCOL_COUNT] = {
    "heldout", "temporal", "loo", "impressions"};

const char *rk_eval_protocol_name(rk_eval_protocol p)
{
    return (unsigned)p < RK_EVAL_PROTOCOL_COUNT ? protocol_names[p] : "?";
}

int rk_eval_protocol_parse(const char *s, rk_eval_protocol *out, rk_err *err)
{
    for (int i = 0; i < RK_EVAL_PROTOCOL_COUNT; i++)
        if (strcmp(s, protocol_names[i]) == 0) {
            *out = (rk_eval_protocol)i;
            return 0;
        }
    return rk_err_set(err, RK_EINVAL,
                      "unknown protocol '%s' (expected heldout, temporal, "
                      "loo or impressions)", s);
}

void rk_eval_opts_default(rk_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->protocol = RK_EVAL_HELDOUT;
    o->folds = 5;
    o->seed = 42;
    o->test_fraction = 0.2;
    o->split_ts = INT64_MIN;
    o->split_quantile = 0.8;
    o->restrict_catalog = -1;
    o->ks[0] = 20;
    o->ks[1] = 50;
    o->ks[2] = 100;
    o->nks = 3;
}

int rk_eval_opts_check(const rk_eval_opts *o, rk_err *err)
{
    if ((unsigned)o->protocol >= RK_EVAL_PROTOCOL_COUNT)
        return rk_err_set(err, RK_EINVAL, "eval: bad protocol %d",
                          (int)o->protocol);
    if (o->protocol == RK_EVAL_HELDOUT && (o->folds < 2 || o->folds > 100))
        return rk_err_set(err, RK_EINVAL,
                          "eval: folds must be in 2..100, got %u", o->folds);
    if (!(o->test_fraction > 0 && o->test_fraction < 1))
        return rk_err_set(err, RK_EINVAL,
                          "eval: test fraction must be in (0, 1), got %g",
                          o->test_fraction);
    if (!(o->split_quantile > 0 && o->split_quantile < 1))
        return rk_err_set(err, RK_EINVAL,
                          "eval: split quantile must be in (0, 1), got %g",
                          o->split_quantile);
    if (o->nks == 0 || o->nks > RK_EVAL_MAX_K)
        return rk_err_set(err, RK_EINVAL, "eval: between 1 and %d cutoffs",
                          RK_EVAL_MAX_K);
    for (size_t i = 0; i < o->nks; i++)
        if (o->ks[i] == 0 || o->ks[i] > 100000 ||
            (i > 0 && o->ks[i] <= o->ks[i - 1]))
            return rk_err_set(err, RK_EINVAL,
                              "eval: cutoffs must be increasing and in "
                              "1..100000");
    return 0;
}

uint32_t rk_eval_nsplits(const rk_eval_opts *o)
{
    return o->protocol == RK_EVAL_HELDOUT ? o->folds : 1;
}

static uint32_t min_positives(const rk_eval_opts *o)
{
    if (o->min_positives) return o->min_positives;
    switch (o->protocol) {
    case RK_EVAL_HELDOUT: return 5;
    case RK_EVAL_LOO: return 2;
    default: return 1;
    }
}

static int restrict_catalog(const rk_eval_opts *o)
{
    if (o->restrict_catalog >= 0) return o->restrict_catalog;
    return o->protocol != RK_EVAL_IMPRESSIONS;
}

void rk_eval_split_free(rk_eval_split *s)
{
    if (!s) return;
    rk_interactions_free(s->train);
    rk_free(s->train_users);
    rk_free(s->catalog);
    rk_free(s->popularity);
    rk_free(s->case_user);
    rk_free(s->foldin_ptr);
    rk_free(s->foldin_items);
    rk_free(s->foldin_weight);
    rk_free(s->scored_ptr);
    rk_free(s->scored_items);
    rk_free(s->scored_total);
    rk_free(s);
}

/* ---- the training matrix ------------------------------------------------ */

/*
 * Builds s->train from the rows `rows` of g (dense user ids, increasing),
 * leaving out the entries k with skip[k] set (skip may be NULL), and the
 * catalog and popularity of its columns. map[item] becomes the item's
 * column, or UINT32_MAX for items outside the catalog.
 */
static int build_train(rk_eval_split *s, const rk_interactions *g,
                       const uint32_t *rows, uint32_t nrows,
                       const uint8_t *skip, uint32_t *map)
{
    uint32_t *cnt = rk_calloc((size_t)g->nitems + 1, sizeof *cnt);
    if (!cnt) return RK_ENOMEM;
    uint64_t nnz = 0;
    for (uint32_t r = 0; r < nrows; r++)
        for (uint64_t k = g->user_ptr[rows[r]]; k < g->user_ptr[rows[r] + 1];
             k++)
            if (!skip || !skip[k]) {
                cnt[g->items[k]]++;
                nnz++;
            }
    uint32_t ncat = 0;
    for (uint32_t i = 0; i < g->nitems; i++)
        map[i] = cnt[i] ? ncat++ : UINT32_MAX;
    s->catalog = rk_malloc(sizeof(uint32_t) * ((size_t)ncat + 1));
    s->popularity = rk_malloc(sizeof(float) * ((size_t)ncat + 1));
    s->train_users = rk_malloc(sizeof(uint32_t) * ((size_t)nrows + 1));
    s->train = rk_interactions_alloc(nrows, ncat, nnz);
    if (!s->catalog || !s->popularity || !s->train_users || !s->train) {
        rk_free(cnt);
        return RK_ENOMEM;
    }
    for (uint32_t i = 0; i < g->nitems; i++)
        if (map[i] != UINT32_MAX) {
            s->catalog[map[i]] = i;
            s->popularity[map[i]] = (float)cnt[i];
        }
    rk_free(cnt);
    rk_interactions *m = s->train;
    uint64_t at = 0;
    for (uint32_t r = 0; r < nrows; r++) {
        s->train_users[r] = rows[r];
        for (uint64_t k = g->user_ptr[rows[r]]; k < g->user_ptr[rows[r] + 1];
             k++) {
            if (skip && skip[k]) continue;
            m->items[at] = map[g->items[k]];
            m->weight[at] = g->weight[k];
            m->first_ts[at] = g->first_ts[k];
            m->last_ts[at] = g->last_ts[k];
            at++;
        }
        m->user_ptr[r + 1] = at;
    }
    return 0;
}

/* ---- test cases ----------------------------------------------------------- */

typedef struct cases {
    const uint32_t *map;
    int restrict_cat;
    RK_VEC(uint32_t) user;
    RK_VEC(uint64_t) fptr;
    RK_VEC(uint32_t) fitems;
    RK_VEC(float) fw;
    RK_VEC(uint64_t) sptr;
    RK_VEC(uint32_t) sitems;
    RK_VEC(uint32_t) stotal;
    uint64_t in_catalog, all;
} cases;

static void cases_free(cases *c)
{
    rk_vec_free(&c->user);
    rk_vec_free(&c->fptr);
    rk_vec_free(&c->fitems);
    rk_vec_free(&c->fw);
    rk_vec_free(&c->sptr);
    rk_vec_free(&c->sitems);
    rk_vec_free(&c->stotal);
}

/*
 * Adds a case for `user`: fold-in items fi[0..nf) with weights fw (dense
 * ids, increasing) and scored items si[0..ns) (dense ids, increasing,
 * disjoint from fi). Items outside the catalog leave the fold-in; among
 * the scored they are dropped or kept as unreachable (restrict_cat). A
 * case left with nothing to score is not added.
 */
static int case_add(cases *c, uint32_t user, const uint32_t *fi,
                    const float *fw, size_t nf, const uint32_t *si, size_t ns)
{
    size_t f0 = c->fitems.n, s0 = c->sitems.n;
    int rc = 0;
    for (size_t i = 0; i < nf && !rc; i++) {
        uint32_t col = c->map[fi[i]];
        if (col == UINT32_MAX) continue;
        if (!(rc = rk_vec_push(&c->fitems, col))) rc = rk_vec_push(&c->fw, fw[i]);
    }
    uint32_t outside = 0;
    for (size_t i = 0; i < ns && !rc; i++) {
        uint32_t col = c->map[si[i]];
        if (col == UINT32_MAX) outside++;
        else rc = rk_vec_push(&c->sitems, col);
    }
    if (rc) return rc;
    size_t listed = c->sitems.n - s0;
    c->all += ns;
    c->in_catalog += listed;
    uint32_t total = (uint32_t)listed + (c->restrict_cat ? 0 : outside);
    if (total == 0) {
        c->fitems.n = f0;
        c->fw.n = f0;
        c->sitems.n = s0;
        return 0;
    }
    if ((rc = rk_vec_push(&c->user, user)) ||
        (rc = rk_vec_push(&c->fptr, (uint64_t)c->fitems.n)) ||
        (rc = rk_vec_push(&c->sptr, (uint64_t)c->sitems.n)) ||
        (rc = rk_vec_push(&c->stotal, total)))
        return rc;
    return 0;
}

/* Moves the cases into the split (the vectors' memory is rk_malloc'd). */
static int cases_finish(cases *c, rk_eval_split *s)
{
    s->ncases = (uint32_t)c->user.n;
    s->foldin_ptr = rk_malloc(sizeof(uint64_t) * (c->user.n + 1));
    s->scored_ptr = rk_malloc(sizeof(uint64_t) * (c->user.n + 1));
    if (!s->foldin_ptr || !s->scored_ptr) return RK_ENOMEM;
    s->foldin_ptr[0] = s->scored_ptr[0] = 0;
    for (size_t i = 0; i < c->user.n; i++) {
        s->foldin_ptr[i + 1] = c->fptr.v[i];
        s->scored_ptr[i + 1] = c->sptr.v[i];
    }
    /* Empty vectors have no memory yet; the split's arrays must exist. */
    if (rk_vec_reserve(&c->user, 1) || rk_vec_reserve(&c->fitems, 1) ||
        rk_vec_reserve(&c->fw, 1) || rk_vec_reserve(&c->sitems, 1) ||
        rk_vec_reserve(&c->stotal, 1))
        return RK_ENOMEM;
    s->case_user = c->user.v;
    s->foldin_items = c->fitems.v;
    s->foldin_weight = c->fw.v;
    s->scored_items = c->sitems.v;
    s->scored_total = c->stotal.v;
    c->user.v = NULL;
    c->fitems.v = NULL;
    c->fw.v = NULL;
    c->sitems.v = NULL;
    c->stotal.v = NULL;
    s->scored_in_catalog = c->in_catalog;
    s->scored_all = c->all;
    return 0;
}

/* ---- held-out users ------------------------------------------------------ */

static int split_heldout(const rk_eval_data *d, const rk_eval_opts *o,
                         uint32_t fold, rk_eval_split *s, uint32_t *map,
                         cases *c)
{
    const rk_interactions *g = d->all;
    uint32_t minpos = min_positives(o);
    /* role[u]: 0 not evaluated, 1 training, 2 test in this fold. */
    uint8_t *role = rk_calloc((size_t)g->nusers + 1, 1);
    uint32_t *elig = rk_malloc(sizeof(uint32_t) * ((size_t)g->nusers + 1));
    uint32_t *rows = rk_malloc(sizeof(uint32_t) * ((size_t)g->nusers + 1));
    uint32_t *perm = NULL, *fi = NULL, *si = NULL;
    uint8_t *flag = NULL;
    float *fw = NULL;
    int rc = RK_ENOMEM;
    if (!role || !elig || !rows) goto done;
    uint32_t ne = 0;
    for (uint32_t u = 0; u < g->nusers; u++)
        if (g->user_ptr[u + 1] - g->user_ptr[u] >= minpos) elig[ne++] = u;
    /* Fisher-Yates over the eligible users with the run's seed; fold f is
     * the f-th of K contiguous, near-equal slices of the shuffled list. */
    uint64_t rng = rk__train_seed(o->seed, 0x666f6c6473ull, 0);
    for (uint32_t i = ne; i > 1; i--) {
        uint32_t j = rk__train_below(&rng, i);
        uint32_t t = elig[i - 1];
        elig[i - 1] = elig[j];
        elig[j] = t;
    }
    uint64_t lo = (uint64_t)fold * ne / o->folds;
    uint64_t hi = (uint64_t)(fold + 1) * ne / o->folds;
    for (uint32_t i = 0; i < ne; i++)
        role[elig[i]] = (i >= lo && i < hi) ? 2 : 1;
    uint32_t nrows = 0;
    uint64_t longest = 0;
    for (uint32_t u = 0; u < g->nusers; u++) {
        uint64_t len = g->user_ptr[u + 1] - g->user_ptr[u];
        if (role[u] == 1) rows[nrows++] = u;
        if (role[u] == 2 && len > longest) longest = len;
    }
    if ((rc = build_train(s, g, rows, nrows, NULL, map))) goto done;
    rc = RK_ENOMEM;
    perm = rk_malloc(sizeof(uint32_t) * (longest + 1));
    fi = rk_malloc(sizeof(uint32_t) * (longest + 1));
    si = rk_malloc(sizeof(uint32_t) * (longest + 1));
    fw = rk_malloc(sizeof(float) * (longest + 1));
    flag = rk_malloc(longest + 1);
    if (!perm || !fi || !si || !fw || !flag) goto done;
    rc = 0;
    for (uint32_t u = 0; u < g->nusers && !rc; u++) {
        if (role[u] != 2) continue;
        uint64_t base = g->user_ptr[u];
        uint32_t n = (uint32_t)(g->user_ptr[u + 1] - base);
        uint32_t ntest = (uint32_t)floor(o->test_fraction * n);
        if (ntest < 1) ntest = 1;
        if (ntest >= n) ntest = n - 1;
        /* The user's own stream: the split of a user does not depend on
         * which fold it fell in or on the other users. */
        uint64_t ur = rk__train_seed(o->seed, u, 0x686f6c64ull);
        for (uint32_t i = 0; i < n; i++) perm[i] = i;
        for (uint32_t i = n; i > 1; i--) {
            uint32_t j = rk__train_below(&ur, i);
            uint32_t t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
        /* The last ntest positions of the permutation are scored; walking
         * the row in item order keeps both lists sorted. */
        memset(flag, 0, n);
        for (uint32_t i = n - ntest; i < n; i++) flag[perm[i]] = 1;
        size_t nf = 0, ns = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (flag[i]) {
                si[ns++] = g->items[base + i];
            } else {
                fi[nf] = g->items[base + i];
                fw[nf++] = g->weight[base + i];
            }
        }
        rc = case_add(c, u, fi, fw, nf, si, ns);
    }
done:
    rk_free(role);
    rk_free(elig);
    rk_free(rows);
    rk_free(perm);
    rk_free(fi);
    rk_free(si);
    rk_free(fw);
    rk_free(flag);
    return rc;
}

/* ---- temporal -------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Collapses the events selected by keep[i] into a dense-id matrix. */
static int matrix_of(const rk_eval_data *d, const uint8_t *keep,
                     rk_interactions **out, rk_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) n += keep[i];
    uint32_t *u = rk_malloc(sizeof(uint32_t) * (n + 1));
    uint32_t *it = rk_malloc(sizeof(uint32_t) * (n + 1));
    float *w = rk_malloc(sizeof(float) * (n + 1));
    int64_t *t = rk_malloc(sizeof(int64_t) * (n + 1));
    int rc = RK_ENOMEM;
    if (u && it && w && t) {
        size_t j = 0;
        for (size_t i = 0; i < d->n; i++)
            if (keep[i]) {
                u[j] = d->user[i];
                it[j] = d->item[i];
                w[j] = d->weight[i];
                t[j++] = d->ts[i];
            }
        rc = rk_interactions_from_triplets(out, d->nusers, d->nitems, u, it,
                                           w, t, n, err);
    } else {
        rk_err_set(err, rc, "eval: out of memory");
    }
    rk_free(u);
    rk_free(it);
    rk_free(w);
    rk_free(t);
    return rc;
}

/* Items of row a not in row b, both increasing: out gets them. */
static size_t row_minus(const uint32_t *a, size_t na, const uint32_t *b,
                        size_t nb, uint32_t *out)
{
    size_t i = 0, j = 0, n = 0;
    while (i < na) {
        while (j < nb && b[j] < a[i]) j++;
        if (j < nb && b[j] == a[i]) {
            i++;
            continue;
        }
        out[n++] = a[i++];
    }
    return n;
}

/* The users with at least one training pair, and every user's training
 * row as fold-in; used by temporal and impressions. */
static int train_rows_nonempty(const rk_interactions *g, uint32_t **rows,
                               uint32_t *nrows)
{
    *rows = rk_malloc(sizeof(uint32_t) * ((size_t)g->nusers + 1));
    if (!*rows) return RK_ENOMEM;
    *nrows = 0;
    for (uint32_t u = 0; u < g->nusers; u++)
        if (g->user_ptr[u + 1] > g->user_ptr[u]) (*rows)[(*nrows)++] = u;
    return 0;
}

static int split_temporal(const rk_eval_data *d, const rk_eval_opts *o,
                          rk_eval_split *s, uint32_t *map, cases *c,
                          rk_err *err)
{
    int64_t T = o->split_ts;
    int rc = 0;
    if (T == INT64_MIN) {
        size_t n = 0;
        for (size_t i = 0; i < d->n; i++) n += d->weight[i] > 0;
        if (n == 0) return rk_err_set(err, RK_EINVAL, "eval: no feedback events");
        int64_t *t = rk_malloc(sizeof(int64_t) * n);
        if (!t) return RK_ENOMEM;
        for (size_t i = 0, j = 0; i < d->n; i++)
            if (d->weight[i] > 0) t[j++] = d->ts[i];
        qsort(t, n, sizeof *t, cmp_i64);
        size_t at = (size_t)floor(o->split_quantile * (double)n);
        if (at >= n) at = n - 1;
        T = t[at];
        rk_free(t);
    }
    s->split_ts = T;
    uint8_t *keep = rk_malloc(d->n + 1);
    rk_interactions *gtr = NULL, *gte = NULL;
    uint32_t *rows = NULL, *buf = NULL;
    uint32_t nrows;
    if (!keep) return RK_ENOMEM;
    for (size_t i = 0; i < d->n; i++) keep[i] = d->ts[i] < T;
    if ((rc = matrix_of(d, keep, &gtr, err))) goto done;
    for (size_t i = 0; i < d->n; i++) keep[i] = !keep[i];
    if ((rc = matrix_of(d, keep, &gte, err))) goto done;
    if ((rc = train_rows_nonempty(gtr, &rows, &nrows)) ||
        (rc = build_train(s, gtr, rows, nrows, NULL, map)))
        goto done;
    uint64_t longest = 0;
    for (uint32_t u = 0; u < gte->nusers; u++)
        if (gte->user_ptr[u + 1] - gte->user_ptr[u] > longest)
            longest = gte->user_ptr[u + 1] - gte->user_ptr[u];
    if (!(buf = rk_malloc(sizeof(uint32_t) * (longest + 1)))) {
        rc = RK_ENOMEM;
        goto done;
    }
    uint32_t minpos = min_positives(o);
    for (uint32_t r = 0; r < nrows && !rc; r++) {
        uint32_t u = rows[r];
        uint64_t a = gtr->user_ptr[u], na = gtr->user_ptr[u + 1] - a;
        uint64_t b = gte->user_ptr[u], nb = gte->user_ptr[u + 1] - b;
        if (nb == 0 || na < minpos) continue;
        /* Re-consumed items are not predictions: they are excluded from
         * the ranking as seen, so they cannot be scored either. */
        size_t ns = row_minus(gte->items + b, nb, gtr->items + a, na, buf);
        rc = case_add(c, u, gtr->items + a, gtr->weight + a, na, buf, ns);
    }
done:
    rk_free(keep);
    rk_free(rows);
    rk_free(buf);
    rk_interactions_free(gtr);
    rk_interactions_free(gte);
    return rc;
}

/* ---- leave last one out ------------------------------------------------------ */

static int split_loo(const rk_eval_data *d, const rk_eval_opts *o,
                     rk_eval_split *s, uint32_t *map, cases *c)
{
    const rk_interactions *g = d->all;
    uint32_t minpos = min_positives(o);
    uint8_t *skip = rk_calloc(g->nnz + 1, 1);
    uint64_t *held = rk_malloc(sizeof(uint64_t) * ((size_t)g->nusers + 1));
    uint32_t *rows = rk_malloc(sizeof(uint32_t) * ((size_t)g->nusers + 1));
    uint32_t *fi = NULL;
    float *fw = NULL;
    int rc = RK_ENOMEM;
    if (!skip || !held || !rows) goto done;
    uint32_t nrows = 0;
    uint64_t longest = 0;
    for (uint32_t u = 0; u < g->nusers; u++) {
        uint64_t a = g->user_ptr[u], n = g->user_ptr[u + 1] - a;
        held[u] = UINT64_MAX;
        if (n > longest) longest = n;
        if (n >= minpos && n > 0) {
            /* The last positive by time; equal times (MovieLens stamps
             * many ratings in the same second) are broken by a seeded
             * hash rather than by item id, which correlates with age. */
            uint64_t best = a, bh = 0;
            for (uint64_t k = a; k < a + n; k++) {
                uint64_t h = rk__train_seed(o->seed, u, g->items[k]);
                if (k == a || g->last_ts[k] > g->last_ts[best] ||
                    (g->last_ts[k] == g->last_ts[best] && h > bh)) {
                    best = k;
                    bh = h;
                }
            }
            held[u] = best;
            skip[best] = 1;
        }
        if (n > (held[u] != UINT64_MAX)) rows[nrows++] = u;
    }
    if ((rc = build_train(s, g, rows, nrows, skip, map))) goto done;
    rc = RK_ENOMEM;
    fi = rk_malloc(sizeof(uint32_t) * (longest + 1));
    fw = rk_malloc(sizeof(float) * (longest + 1));
    if (!fi || !fw) goto done;
    rc = 0;
    for (uint32_t u = 0; u < g->nusers && !rc; u++) {
        if (held[u] == UINT64_MAX) continue;
        size_t nf = 0;
        for (uint64_t k = g->user_ptr[u]; k < g->user_ptr[u + 1]; k++)
            if (k != held[u]) {
                fi[nf] = g->items[k];
                fw[nf++] = g->weight[k];
            }
        rc = case_add(c, u, fi, fw, nf, &g->items[held[u]], 1);
    }
done:
    rk_free(skip);
    rk_free(held);
    rk_free(rows);
    rk_free(fi);
    rk_free(fw);
    return rc;
}

/* ---- impressions --------------------------------------------------------------- */

typedef struct req_ev {
    uint32_t request, user, item;
} req_ev;

static int cmp_req(const void *a, const void *b)
{
    const req_ev *x = a, *y = b;
    if (x->request != y->request) return x->request < y->request ? -1 : 1;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

static int split_impressions(const rk_eval_data *d, const rk_eval_opts *o,
                             rk_eval_split *s, uint32_t *map, cases *c,
                             rk_err *err)
{
    /* Requests before T train with the histories; requests at or after T
     * are the cases. Histories train whatever their time: MIND stamps them
     * just before the user's first impression, but they were known before
     * the log began. */
    size_t nreq = 0;
    for (size_t i = 0; i < d->n; i++)
        nreq += d->request[i] != RK_EVAL_NO_REQUEST && d->weight[i] > 0;
    if (nreq == 0)
        return rk_err_set(err, RK_EINVAL,
                          "eval: the impressions protocol needs events with "
                          "a request id (none found)");
    int64_t T = o->split_ts;
    if (T == INT64_MIN) {
        int64_t *t = rk_malloc(sizeof(int64_t) * nreq);
        if (!t) return RK_ENOMEM;
        for (size_t i = 0, j = 0; i < d->n; i++)
            if (d->request[i] != RK_EVAL_NO_REQUEST && d->weight[i] > 0)
                t[j++] = d->ts[i];
        qsort(t, nreq, sizeof *t, cmp_i64);
        size_t at = (size_t)floor(o->split_quantile * (double)nreq);
        T = t[at < nreq ? at : nreq - 1];
        rk_free(t);
    }
    s->split_ts = T;
    uint8_t *keep = rk_malloc(d->n + 1);
    rk_interactions *gtr = NULL;
    uint32_t *rows = NULL, *items = NULL, *buf = NULL;
    req_ev *re = NULL;
    uint32_t nrows;
    int rc = RK_ENOMEM;
    if (!keep) return rc;
    size_t nre = 0;
    for (size_t i = 0; i < d->n; i++) {
        keep[i] = d->request[i] == RK_EVAL_NO_REQUEST || d->ts[i] < T;
        nre += !keep[i] && d->weight[i] > 0;
    }
    if ((rc = matrix_of(d, keep, &gtr, err))) goto done;
    if ((rc = train_rows_nonempty(gtr, &rows, &nrows)) ||
        (rc = build_train(s, gtr, rows, nrows, NULL, map)))
        goto done;
    rc = RK_ENOMEM;
    re = rk_malloc(sizeof(req_ev) * (nre + 1));
    items = rk_malloc(sizeof(uint32_t) * (nre + 1));
    buf = rk_malloc(sizeof(uint32_t) * (nre + 1));
    if (!re || !items || !buf) goto done;
    rc = 0;
    for (size_t i = 0, j = 0; i < d->n; i++)
        if (!keep[i] && d->weight[i] > 0)
            re[j++] = (req_ev){d->request[i], d->user[i], d->item[i]};
    qsort(re, nre, sizeof *re, cmp_req);
    uint32_t minpos = min_positives(o);
    /* One case per (request, user) with its distinct positive items. */
    for (size_t i = 0; i < nre && !rc;) {
        size_t j = i, ni = 0;
        for (; j < nre && re[j].request == re[i].request &&
               re[j].user == re[i].user;
             j++)
            if (ni == 0 || items[ni - 1] != re[j].item) items[ni++] = re[j].item;
        uint32_t u = re[i].user;
        uint64_t a = gtr->user_ptr[u], na = gtr->user_ptr[u + 1] - a;
        if (na >= minpos) {
            size_t ns = row_minus(items, ni, gtr->items + a, na, buf);
            rc = case_add(c, u, gtr->items + a, gtr->weight + a, na, buf, ns);
        }
        i = j;
    }
done:
    rk_free(keep);
    rk_free(rows);
    rk_free(items);
    rk_free(buf);
    rk_free(re);
    rk_interactions_free(gtr);
    return rc;
}

/* ---- entry point ------------------------------------------------------------------ */

int rk_eval_split_make(const rk_eval_data *d, const rk_eval_opts *o,
                       uint32_t index, rk_eval_split **out, rk_err *err)
{
    int rc = rk_eval_opts_check(o, err);
    if (rc) return rc;
    if (index >= rk_eval_nsplits(o))
        return rk_err_set(err, RK_EINVAL, "eval: split %u of %u", index,
                          rk_eval_nsplits(o));
    rk_eval_split *s = rk_calloc(1, sizeof *s);
    uint32_t *map = rk_malloc(sizeof(uint32_t) * ((size_t)d->nitems + 1));
    cases c = {.map = map, .restrict_cat = restrict_catalog(o)};
    if (!s || !map) {
        rk_free(s);
        rk_free(map);
        return rk_err_set(err, RK_ENOMEM, "eval: out of memory");
    }
    s->index = index;
    rk_err_clear(err);
    switch (o->protocol) {
    case RK_EVAL_HELDOUT: rc = split_heldout(d, o, index, s, map, &c); break;
    case RK_EVAL_TEMPORAL: rc = split_temporal(d, o, s, map, &c, err); break;
    case RK_EVAL_LOO: rc = split_loo(d, o, s, map, &c); break;
    default: rc = split_impressions(d, o, s, map, &c, err); break;
    }
    if (!rc) rc = cases_finish(&c, s);
    if (!rc && s->ncases == 0)
        rc = rk_err_set(err, RK_EINVAL,
                        "eval: the %s protocol finds no test case in this "
                        "data (too few users with %u positive items?)",
                        rk_eval_protocol_name(o->protocol), min_positives(o));
    if (!rc && s->train->nusers == 0)
        rc = rk_err_set(err, RK_EINVAL, "eval: no training data");
    cases_free(&c);
    rk_free(map);
    if (rc) {
        if (rc == RK_ENOMEM) rk_err_set(err, rc, "eval: out of memory");
        rk_eval_split_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
