/*
 * trainset.c — training sets: labelled feature rows held compactly in
 * memory, bounded by a byte budget.
 *
 * Layout: one struct of arrays. Row i's dense block is
 * dense[i * ndense .. +ndense); its sparse pairs are
 * sidx/sval[soff[i] .. soff[i + 1]); label, weight, group and ts are
 * parallel arrays. Rows are never individually allocated, so a set of
 * millions of rows is a handful of allocations and a row costs
 * 32 + 4 * ndense + 8 * nsparse bytes.
 *
 * Invariant: `reserved`, the bytes of every array's capacity, never
 * exceeds max_bytes. Growth doubles capacity but falls back to the exact
 * need when doubling would cross the budget, so a set can be filled up to
 * its limit, and the add that would cross it fails with RK_ELIMIT leaving
 * the set unchanged.
 *
 * Beyond storage: time splits, seeded negative down-sampling (the keep
 * rate is recorded so calibration can undo it), class weights, dense and
 * sparse exports for the rankers, shuffling, and a checksummed file
 * format (described in rk_features.h and docs/features.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "rk_features.h"

#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define MAX_HASH_BITS 30u
#define MAX_DENSE (1u << 16)

/* Bytes of one row outside its sparse pairs: dense block, label, weight,
 * group, ts and its sparse offset. */
#define ROW_FIXED (4 + 4 + 8 + 8 + 8)

struct rk_trainset {
    uint32_t ndense, hash_bits;
    size_t max_bytes, reserved;
    size_t n, cap;       /* rows and row capacity */
    float *dense;        /* cap * ndense */
    float *label, *weight;
    uint64_t *group;
    int64_t *ts;
    uint64_t *soff;      /* cap + 1 offsets into sidx/sval */
    size_t ns, scap;     /* sparse pairs used and capacity */
    uint32_t *sidx;
    float *sval;
    double neg_rate;     /* negative keep rate of down-sampling, 1 = none */
    int neg_reweighted;  /* kept negatives carry weight 1 / neg_rate */
};

int rk_trainset_create(rk_trainset **out, uint32_t ndense, uint32_t hash_bits,
                       size_t max_bytes)
{
    *out = NULL;
    if (ndense > MAX_DENSE || hash_bits > MAX_HASH_BITS) return RK_EINVAL;
    rk_trainset *t = rk_calloc(1, sizeof *t);
    if (!t) return RK_ENOMEM;
    t->ndense = ndense;
    t->hash_bits = hash_bits;
    t->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX_BYTES;
    t->neg_rate = 1.0;
    /* soff[0] always exists so soff[i + 1] - soff[i] works for every row. */
    t->soff = rk_calloc(1, sizeof *t->soff);
    if (!t->soff) {
        rk_free(t);
        return RK_ENOMEM;
    }
    *out = t;
    return 0;
}

void rk_trainset_destroy(rk_trainset *t)
{
    if (!t) return;
    rk_free(t->dense);
    rk_free(t->label);
    rk_free(t->weight);
    rk_free(t->group);
    rk_free(t->ts);
    rk_free(t->soff);
    rk_free(t->sidx);
    rk_free(t->sval);
    rk_free(t);
}

static size_t row_bytes(const rk_trainset *t)
{
    return ROW_FIXED + 4 * (size_t)t->ndense;
}

/* Picks a new capacity >= need for an array family costing `unit` bytes per
 * element: doubled when the budget allows, else less. 0 when even need
 * does not fit. */
static size_t grow_cap(const rk_trainset *t, size_t cap, size_t need,
                       size_t unit, size_t min_cap)
{
    size_t room = t->max_bytes - t->reserved; /* reserved <= max_bytes */
    size_t want = cap ? cap * 2 : min_cap;
    if (want < need) want = need;
    size_t fit = room / unit; /* elements the budget still allows */
    if (want - cap <= fit) return want;
    if (need - cap > fit) return 0;
    /* Near the limit take half of what is left, so growth stays geometric
     * and the other array family keeps room too. */
    return need - cap > fit / 2 ? need : cap + fit / 2;
}

/* realloc that leaves *p untouched on failure. A failure midway through a
 * family leaves the earlier arrays larger than `cap` says; that slack is
 * harmless (capacities only ever grow) and is recounted on the next
 * successful growth. */
static int grow_arr(void **p, size_t elem, size_t n)
{
    void *q = rk_realloc(*p, elem * (n ? n : 1));
    if (!q) return RK_ENOMEM;
    *p = q;
    return 0;
}

static int reserve_rows(rk_trainset *t, size_t need)
{
    if (need <= t->cap) return 0;
    size_t cap = grow_cap(t, t->cap, need, row_bytes(t), 64);
    if (!cap) return RK_ELIMIT;
    if ((t->ndense && grow_arr((void **)&t->dense, 4 * (size_t)t->ndense, cap)) ||
        grow_arr((void **)&t->label, sizeof(float), cap) ||
        grow_arr((void **)&t->weight, sizeof(float), cap) ||
        grow_arr((void **)&t->group, sizeof(uint64_t), cap) ||
        grow_arr((void **)&t->ts, sizeof(int64_t), cap) ||
        grow_arr((void **)&t->soff, sizeof(uint64_t), cap + 1))
        return RK_ENOMEM;
    t->reserved += (cap - t->cap) * row_bytes(t);
    t->cap = cap;
    return 0;
}

static int reserve_sparse(rk_trainset *t, size_t need)
{
    if (need <= t->scap) return 0;
    size_t cap = grow_cap(t, t->scap, need, 8, 256);
    if (!cap) return RK_ELIMIT;
    if (grow_arr((void **)&t->sidx, sizeof(uint32_t), cap) ||
        grow_arr((void **)&t->sval, sizeof(float), cap))
        return RK_ENOMEM;
    t->reserved += (cap - t->scap) * 8;
    t->scap = cap;
    return 0;
}

/* Shrinks every array to its content. */
static int shrink_to_fit(rk_trainset *t)
{
    if (t->cap > t->n) {
        size_t cap = t->n;
        if ((t->ndense && grow_arr((void **)&t->dense, 4 * (size_t)t->ndense, cap)) ||
            grow_arr((void **)&t->label, sizeof(float), cap) ||
            grow_arr((void **)&t->weight, sizeof(float), cap) ||
            grow_arr((void **)&t->group, sizeof(uint64_t), cap) ||
            grow_arr((void **)&t->ts, sizeof(int64_t), cap) ||
            grow_arr((void **)&t->soff, sizeof(uint64_t), cap + 1))
            return RK_ENOMEM;
        t->reserved -= (t->cap - cap) * row_bytes(t);
        t->cap = cap;
    }
    if (t->scap > t->ns) {
        if (grow_arr((void **)&t->sidx, sizeof(uint32_t), t->ns) ||
            grow_arr((void **)&t->sval, sizeof(float), t->ns))
            return RK_ENOMEM;
        t->reserved -= (t->scap - t->ns) * 8;
        t->scap = t->ns;
    }
    return 0;
}

int rk_trainset_add(rk_trainset *t, const rk_fvec *x, float label,
                    float weight, uint64_t group, int64_t ts_ms)
{
    if (x->ndense != t->ndense || !isfinite(label) || !isfinite(weight) ||
        !(weight > 0))
        return RK_EINVAL;
    /* Sparse coordinates must lie in the hashed space, or exports would
     * produce indices beyond the model's dim. */
    uint32_t hmask = (uint32_t)((1ull << t->hash_bits) - 1);
    for (uint32_t i = 0; i < x->nsparse; i++)
        if (x->idx[i] & ~hmask) return RK_EINVAL;
    int rc = reserve_rows(t, t->n + 1);
    if (rc == 0) rc = reserve_sparse(t, t->ns + x->nsparse);
    if (rc == RK_ELIMIT) {
        /* The slack of one array family may be what stands in the way:
         * trim both to their content and retry, so the budget bounds
         * content, not the accident of doubling. */
        rc = shrink_to_fit(t);
        if (rc == 0) rc = reserve_rows(t, t->n + 1);
        if (rc == 0) rc = reserve_sparse(t, t->ns + x->nsparse);
    }
    if (rc) return rc;
    size_t i = t->n;
    if (t->ndense)
        memcpy(t->dense + i * t->ndense, x->dense, 4 * (size_t)t->ndense);
    if (x->nsparse) {
        memcpy(t->sidx + t->ns, x->idx, 4 * (size_t)x->nsparse);
        memcpy(t->sval + t->ns, x->val, 4 * (size_t)x->nsparse);
    }
    t->ns += x->nsparse;
    t->soff[i + 1] = t->ns;
    t->label[i] = label;
    t->weight[i] = weight;
    t->group[i] = group;
    t->ts[i] = ts_ms;
    t->n++;
    return 0;
}

size_t rk_trainset_rows(const rk_trainset *t)
{
    return t->n;
}

void rk_trainset_get(const rk_trainset *t, size_t i, rk_trow *out)
{
    memset(&out->x, 0, sizeof out->x);
    out->x.ndense = t->ndense;
    out->x.dense = t->ndense ? t->dense + i * t->ndense : NULL;
    out->x.nsparse = (uint32_t)(t->soff[i + 1] - t->soff[i]);
    out->x.idx = t->sidx ? t->sidx + t->soff[i] : NULL;
    out->x.val = t->sval ? t->sval + t->soff[i] : NULL;
    out->label = t->label[i];
    out->weight = t->weight[i];
    out->group = t->group[i];
    out->ts_ms = t->ts[i];
}

uint32_t rk_trainset_ndense(const rk_trainset *t)
{
    return t->ndense;
}

uint32_t rk_trainset_hash_bits(const rk_trainset *t)
{
    return t->hash_bits;
}

size_t rk_trainset_bytes(const rk_trainset *t)
{
    return t->reserved;
}

/* ------------------------------------------------------------------------ */
/* Summary                                                                   */
/* ------------------------------------------------------------------------ */

int rk_trainset_summarize(const rk_trainset *t, rk_trainset_summary *out)
{
    memset(out, 0, sizeof *out);
    out->neg_rate = t->neg_rate;
    out->neg_reweighted = t->neg_reweighted;
    rk_map *groups = NULL;
    if (t->n && rk_map_create(&groups, 0)) return RK_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        double w = t->weight[i];
        out->weight_sum += w;
        out->label_sum += t->label[i];
        if (t->label[i] > 0) {
            out->positives++;
            out->pos_weight_sum += w;
        } else {
            out->neg_weight_sum += w;
        }
        if (i == 0 || t->ts[i] < out->ts_min) out->ts_min = t->ts[i];
        if (i == 0 || t->ts[i] > out->ts_max) out->ts_max = t->ts[i];
        if (t->group[i] && rk_map_put(groups, &t->group[i], 8, 1)) {
            rk_map_destroy(groups);
            return RK_ENOMEM;
        }
    }
    out->rows = t->n;
    out->groups = groups ? rk_map_size(groups) : 0;
    rk_map_destroy(groups);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Split                                                                     */
/* ------------------------------------------------------------------------ */

static int append_row(rk_trainset *dst, const rk_trainset *src, size_t i)
{
    rk_trow r;
    rk_trainset_get(src, i, &r);
    return rk_trainset_add(dst, &r.x, r.label, r.weight, r.group, r.ts_ms);
}

static int create_like(rk_trainset **out, const rk_trainset *t)
{
    int rc = rk_trainset_create(out, t->ndense, t->hash_bits, t->max_bytes);
    if (rc == 0) {
        (*out)->neg_rate = t->neg_rate;
        (*out)->neg_reweighted = t->neg_reweighted;
    }
    return rc;
}

int rk_trainset_split_time(const rk_trainset *t, int64_t t_split,
                           rk_trainset **train, rk_trainset **valid)
{
    *train = *valid = NULL;
    rk_trainset *a = NULL, *b = NULL;
    int rc = create_like(&a, t);
    if (rc == 0) rc = create_like(&b, t);
    for (size_t i = 0; rc == 0 && i < t->n; i++)
        rc = append_row(t->ts[i] < t_split ? a : b, t, i);
    if (rc) {
        rk_trainset_destroy(a);
        rk_trainset_destroy(b);
        return rc;
    }
    *train = a;
    *valid = b;
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

int rk_trainset_split_point(const rk_trainset *t, double valid_frac,
                            int by_rows, int64_t *t_split)
{
    if (!(valid_frac > 0 && valid_frac < 1) || t->n == 0) return RK_EINVAL;
    int64_t lo = t->ts[0], hi = t->ts[0];
    for (size_t i = 1; i < t->n; i++) {
        if (t->ts[i] < lo) lo = t->ts[i];
        if (t->ts[i] > hi) hi = t->ts[i];
    }
    if (!by_rows) {
        /* The span in double loses nothing that matters: epoch ms fit in
         * 53 bits for the next 285,000 years. */
        double span = (double)hi - (double)lo;
        *t_split = lo + (int64_t)ceil((1 - valid_frac) * span);
        return 0;
    }
    int64_t *ts = rk_memdup(t->ts, t->n * sizeof *ts);
    if (!ts) return RK_ENOMEM;
    qsort(ts, t->n, sizeof *ts, cmp_i64);
    size_t k = (size_t)floor((1 - valid_frac) * (double)t->n);
    if (k >= t->n) k = t->n - 1;
    *t_split = ts[k];
    rk_free(ts);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Down-sampling and class weights                                           */
/* ------------------------------------------------------------------------ */

/* splitmix64: tiny, seedable with any value, and good enough for sampling
 * decisions; fixed so that a seed means the same rows on every machine. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Moves row i to position j < i (compaction); sparse pairs move down too,
 * so soff[j] must already be final. */
static void move_row(rk_trainset *t, size_t i, size_t j, size_t *ns)
{
    size_t from = t->soff[i], cnt = t->soff[i + 1] - t->soff[i];
    if (t->ndense)
        memmove(t->dense + j * t->ndense, t->dense + i * t->ndense,
                4 * (size_t)t->ndense);
    if (cnt) {
        memmove(t->sidx + *ns, t->sidx + from, 4 * cnt);
        memmove(t->sval + *ns, t->sval + from, 4 * cnt);
    }
    t->label[j] = t->label[i];
    t->weight[j] = t->weight[i];
    t->group[j] = t->group[i];
    t->ts[j] = t->ts[i];
    *ns += cnt;
}

int rk_trainset_downsample(rk_trainset *t, double rate, int reweight,
                           uint64_t seed)
{
    if (!(rate > 0 && rate <= 1)) return RK_EINVAL;
    reweight = reweight != 0;
    if (t->neg_rate < 1 && reweight != t->neg_reweighted) return RK_ESTATE;
    uint64_t s = seed;
    size_t j = 0, ns = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!(t->label[i] > 0) && uniform01(&s) >= rate) continue;
        move_row(t, i, j, &ns);
        if (reweight && !(t->label[j] > 0))
            t->weight[j] = (float)(t->weight[j] / rate);
        /* j + 1 <= i + 1: this never overwrites an offset still to be
         * read, and when nothing was dropped yet it writes the same value. */
        t->soff[++j] = ns;
    }
    t->n = j;
    t->ns = ns;
    t->neg_rate *= rate;
    if (rate < 1) t->neg_reweighted = reweight;
    return 0;
}

double rk_trainset_calibrate(const rk_trainset *t, double q)
{
    if (t->neg_rate >= 1 || t->neg_reweighted) return q;
    return rk_calib_downsample(q, t->neg_rate);
}

int rk_trainset_class_weights(rk_trainset *t, double pos_w, double neg_w)
{
    if (!isfinite(pos_w) || !isfinite(neg_w) || !(pos_w > 0) || !(neg_w > 0))
        return RK_EINVAL;
    /* Check first so a weight that would overflow float leaves the set
     * unchanged rather than half scaled. */
    for (size_t i = 0; i < t->n; i++) {
        double w = t->weight[i] * (t->label[i] > 0 ? pos_w : neg_w);
        if (!((float)w > 0) || !isfinite((float)w)) return RK_EINVAL;
    }
    for (size_t i = 0; i < t->n; i++)
        t->weight[i] = (float)(t->weight[i] * (t->label[i] > 0 ? pos_w : neg_w));
    return 0;
}

int rk_trainset_balance(rk_trainset *t, double *pos_w, double *neg_w)
{
    double wp = 0, wn = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->label[i] > 0) wp += t->weight[i];
        else wn += t->weight[i];
    }
    if (!(wp > 0) || !(wn > 0)) return RK_ESTATE;
    double total = wp + wn, fp = total / (2 * wp), fn = total / (2 * wn);
    int rc = rk_trainset_class_weights(t, fp, fn);
    if (rc) return rc;
    if (pos_w) *pos_w = fp;
    if (neg_w) *neg_w = fn;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reordering                                                                */
/* ------------------------------------------------------------------------ */

/* Rebuilds the set's arrays in the order ord[0..n) (a permutation). Fresh
 * arrays of exactly n rows are filled, then swapped in, so a failure leaves
 * the set as it was. The temporary copy is outside the set's budget; it is
 * freed before returning. */
static int permute(rk_trainset *t, const size_t *ord)
{
    rk_trainset *c = NULL;
    int rc = create_like(&c, t);
    if (rc) return rc;
    /* Size the copy exactly: the budget cannot refuse what already fit. */
    c->max_bytes = (size_t)-1;
    if ((rc = reserve_rows(c, t->n ? t->n : 1)) == 0 &&
        (rc = reserve_sparse(c, t->ns)) == 0) {
        for (size_t k = 0; k < t->n && rc == 0; k++) rc = append_row(c, t, ord[k]);
    }
    if (rc) {
        rk_trainset_destroy(c);
        return rc;
    }
    c->max_bytes = t->max_bytes;
    rk_trainset tmp = *t;
    *t = *c;
    *c = tmp;
    rk_trainset_destroy(c);
    return 0;
}

int rk_trainset_shuffle(rk_trainset *t, uint64_t seed)
{
    if (t->n < 2) return 0;
    size_t *ord = rk_malloc(t->n * sizeof *ord);
    if (!ord) return RK_ENOMEM;
    for (size_t i = 0; i < t->n; i++) ord[i] = i;
    uint64_t s = seed;
    for (size_t i = t->n - 1; i > 0; i--) {
        /* The modulo bias for i < 2^32 is below 2^-32: immaterial. */
        size_t k = (size_t)(splitmix64(&s) % (uint64_t)(i + 1));
        size_t x = ord[i];
        ord[i] = ord[k];
        ord[k] = x;
    }
    int rc = permute(t, ord);
    rk_free(ord);
    return rc;
}

/* Sort keys: qsort is not stable, so the row index breaks every tie. */
typedef struct sort_key {
    int64_t k1;   /* group's first timestamp, or the row's timestamp */
    uint64_t k2;  /* group id */
    int64_t k3;   /* row timestamp */
    size_t i;
} sort_key;

static int cmp_key(const void *x, const void *y)
{
    const sort_key *a = x, *b = y;
    if (a->k1 != b->k1) return a->k1 < b->k1 ? -1 : 1;
    if (a->k2 != b->k2) return a->k2 < b->k2 ? -1 : 1;
    if (a->k3 != b->k3) return a->k3 < b->k3 ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

int rk_trainset_sort_time(rk_trainset *t)
{
    if (t->n < 2) return 0;
    sort_key *k = rk_malloc(t->n * sizeof *k);
    size_t *ord = rk_malloc(t->n * sizeof *ord);
    int rc = RK_ENOMEM;
    if (k && ord) {
        for (size_t i = 0; i < t->n; i++)
            k[i] = (sort_key){t->ts[i], 0, 0, i};
        qsort(k, t->n, sizeof *k, cmp_key);
        for (size_t i = 0; i < t->n; i++) ord[i] = k[i].i;
        rc = permute(t, ord);
    }
    rk_free(k);
    rk_free(ord);
    return rc;
}

/* Orders rows so that query groups are contiguous (see rk_trainset_dense)
 * and counts the groups: *ngroups and sizes[0..*ngroups) when sizes is not
 * NULL. ord gets n entries. */
static int group_order(const rk_trainset *t, size_t *ord, uint32_t *sizes,
                       size_t *ngroups)
{
    *ngroups = 0;
    if (t->n == 0) return 0;
    sort_key *k = rk_malloc(t->n * sizeof *k);
    if (!k) return RK_ENOMEM;
    /* Pass 1: by (group, ts, index) to find each group's first timestamp.
     * Group 0 rows get distinct pseudo-keys via k3/i and stay singletons. */
    for (size_t i = 0; i < t->n; i++) k[i] = (sort_key){0, t->group[i], t->ts[i], i};
    qsort(k, t->n, sizeof *k, cmp_key);
    for (size_t a = 0; a < t->n;) {
        size_t b = a + 1;
        if (k[a].k2 != 0)
            while (b < t->n && k[b].k2 == k[a].k2) b++;
        for (size_t c = a; c < b; c++) k[c].k1 = k[a].k3;
        a = b;
    }
    /* Pass 2: by (first ts, group, ts, index). Two group-0 rows with the
     * same first ts are ordered by index; they remain separate groups. */
    qsort(k, t->n, sizeof *k, cmp_key);
    size_t g = 0;
    for (size_t a = 0; a < t->n;) {
        size_t b = a + 1;
        if (k[a].k2 != 0)
            while (b < t->n && k[b].k2 == k[a].k2) b++;
        if (sizes) sizes[g] = (uint32_t)(b - a);
        g++;
        a = b;
    }
    for (size_t i = 0; i < t->n; i++) ord[i] = k[i].i;
    rk_free(k);
    *ngroups = g;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Exports                                                                   */
/* ------------------------------------------------------------------------ */

void rk_tdense_free(rk_tdense *d)
{
    if (!d) return;
    rk_free((void *)d->x.x);
    rk_free(d->label);
    rk_free(d->weight);
    rk_free(d->group);
    rk_free(d->ts);
    rk_free(d->group_size);
    memset(d, 0, sizeof *d);
}

int rk_trainset_dense(const rk_trainset *t, unsigned flags,
                      uint32_t sparse_cols, rk_tdense *out)
{
    memset(out, 0, sizeof *out);
    if (flags & ~RK_TDENSE_GROUPED) return RK_EINVAL;
    size_t n = t->n, ncols = (size_t)t->ndense + sparse_cols;
    /* Bound the export by the set's budget: per row the matrix, label,
     * weight, group, ts and (at most) a group size. */
    size_t per_row = 4 * ncols + 4 + 4 + 8 + 8 + 4;
    if (n && per_row > t->max_bytes / n) return RK_ELIMIT;
    size_t nn = n ? n : 1;
    float *x = rk_malloc(nn * (ncols ? ncols : 1) * sizeof *x);
    out->label = rk_malloc(nn * sizeof(float));
    out->weight = rk_malloc(nn * sizeof(float));
    out->group = rk_malloc(nn * sizeof(uint64_t));
    out->ts = rk_malloc(nn * sizeof(int64_t));
    size_t *ord = rk_malloc(nn * sizeof *ord);
    out->x.x = x;
    if (flags & RK_TDENSE_GROUPED) out->group_size = rk_malloc(nn * sizeof(uint32_t));
    int rc = 0;
    if (!x || !out->label || !out->weight || !out->group || !out->ts || !ord ||
        ((flags & RK_TDENSE_GROUPED) && !out->group_size))
        rc = RK_ENOMEM;
    if (rc == 0 && (flags & RK_TDENSE_GROUPED))
        rc = group_order(t, ord, out->group_size, &out->ngroups);
    else if (rc == 0)
        for (size_t i = 0; i < n; i++) ord[i] = i;
    if (rc) {
        rk_free(ord);
        rk_tdense_free(out);
        return rc;
    }
    for (size_t r = 0; r < n; r++) {
        size_t i = ord[r];
        float *row = x + r * ncols;
        if (t->ndense)
            memcpy(row, t->dense + i * t->ndense, 4 * (size_t)t->ndense);
        for (size_t c = t->ndense; c < ncols; c++) row[c] = NAN;
        for (uint64_t p = t->soff[i]; sparse_cols && p < t->soff[i + 1]; p++) {
            float *cell = row + t->ndense + t->sidx[p] % sparse_cols;
            *cell = isnan(*cell) ? t->sval[p] : *cell + t->sval[p];
        }
        out->label[r] = t->label[i];
        out->weight[r] = t->weight[i];
        out->group[r] = t->group[i];
        out->ts[r] = t->ts[i];
    }
    rk_free(ord);
    out->x.nrows = n;
    out->x.ncols = out->x.stride = ncols;
    return 0;
}

void rk_tsparse_free(rk_tsparse *s)
{
    if (!s) return;
    rk_free(s->off);
    rk_free(s->idx);
    rk_free(s->val);
    rk_free(s->label);
    rk_free(s->weight);
    rk_free(s->group);
    rk_free(s->ts);
    memset(s, 0, sizeof *s);
}

int rk_trainset_sparse(const rk_trainset *t, rk_tsparse *out)
{
    memset(out, 0, sizeof *out);
    size_t n = t->n;
    /* Count first so the pair arrays are allocated once, exactly. */
    size_t pairs = t->ns;
    for (size_t i = 0; i < n * t->ndense; i++)
        if (!isnan(t->dense[i])) pairs++;
    size_t bytes = n * (8 + 4 + 4 + 8 + 8) + 8 + pairs * 8;
    if (n && (pairs > t->max_bytes / 8 || bytes > t->max_bytes)) return RK_ELIMIT;
    out->off = rk_malloc((n + 1) * sizeof *out->off);
    out->idx = rk_malloc((pairs ? pairs : 1) * sizeof *out->idx);
    out->val = rk_malloc((pairs ? pairs : 1) * sizeof *out->val);
    out->label = rk_malloc((n ? n : 1) * sizeof(float));
    out->weight = rk_malloc((n ? n : 1) * sizeof(float));
    out->group = rk_malloc((n ? n : 1) * sizeof(uint64_t));
    out->ts = rk_malloc((n ? n : 1) * sizeof(int64_t));
    if (!out->off || !out->idx || !out->val || !out->label || !out->weight ||
        !out->group || !out->ts) {
        rk_tsparse_free(out);
        return RK_ENOMEM;
    }
    uint64_t pos = 0;
    out->off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        rk_trow r;
        rk_sparse sp;
        rk_trainset_get(t, i, &r);
        /* rk_fvec_as_sparse writes exactly the non-NaN dense values plus
         * the sparse pairs, which is what was counted above. */
        rk_fvec_as_sparse(&r.x, out->idx + pos, out->val + pos, &sp);
        pos += sp.n;
        out->off[i + 1] = pos;
        out->label[i] = r.label;
        out->weight[i] = r.weight;
        out->group[i] = r.group;
        out->ts[i] = r.ts_ms;
    }
    out->nrows = n;
    out->dim = t->ndense + (1u << t->hash_bits);
    return 0;
}

void rk_tsparse_row(const rk_tsparse *s, size_t i, rk_sparse *out)
{
    out->idx = s->idx + s->off[i];
    out->val = s->val + s->off[i];
    out->n = (uint32_t)(s->off[i + 1] - s->off[i]);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

static const unsigned char MAGIC[8] = {'R', 'K', 'T', 'S', 'E', 'T', '\r', '\n'};
#define FILE_VERSION 1u
#define HDR_SIZE 48
#define ROW_HDR 24      /* label, weight, group, ts */
#define FLAG_REWEIGHTED 1u









static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Buffered writer that hashes what it writes; rows are encoded into buf and
 * flushed every MiB so saving never holds a second copy of the set. */
typedef struct wr {
    int fd;
    rk_buf buf;
    XXH3_state_t st;
} wr;

static int wr_flush(wr *w)
{
    if (w->buf.len == 0) return 0;
    XXH3_64bits_update(&w->st, w->buf.data, w->buf.len);
    int rc = write_all(w->fd, w->buf.data, w->buf.len);
    rk_buf_reset(&w->buf);
    return rc ? RK_EIO : 0;
}

static int encode_body(const rk_trainset *t, wr *w)
{
    unsigned char h[HDR_SIZE];
    memcpy(h, MAGIC, 8);
    rk_put_u32(h + 8, FILE_VERSION);
    rk_put_u32(h + 12, t->ndense);
    rk_put_u32(h + 16, t->hash_bits);
    rk_put_u32(h + 20, t->neg_reweighted ? FLAG_REWEIGHTED : 0);
    rk_put_f64(h + 24, t->neg_rate);
    rk_put_u64(h + 32, t->n);
    rk_put_u64(h + 40, t->ns);
    int rc = rk_buf_append(&w->buf, h, sizeof h);
    for (size_t i = 0; rc == 0 && i < t->n; i++) {
        unsigned char r[ROW_HDR];
        rk_put_f32(r, t->label[i]);
        rk_put_f32(r + 4, t->weight[i]);
        rk_put_u64(r + 8, t->group[i]);
        rk_put_u64(r + 16, (uint64_t)t->ts[i]);
        rk_trow row;
        rk_trainset_get(t, i, &row);
        rc = rk_buf_append(&w->buf, r, sizeof r);
        if (rc == 0) rc = rk_fvec_encode(&row.x, &w->buf);
        if (rc == 0 && w->buf.len >= (1u << 20)) rc = wr_flush(w);
    }
    if (rc == 0) rc = wr_flush(w);
    return rc;
}

static void fsync_dir_of(const char *path)
{
    char *dir = rk_strdup(path);
    if (!dir) return;
    char *sl = strrchr(dir, '/');
    const char *d = ".";
    if (sl == dir) d = "/";
    else if (sl) {
        *sl = '\0';
        d = dir;
    }
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    rk_free(dir);
}

int rk_trainset_save(const rk_trainset *t, const char *path, rk_err *err)
{
    char *tmp = rk_malloc(strlen(path) + 5);
    if (!tmp) return rk_err_set(err, RK_ENOMEM, "%s: out of memory", path);
    strcpy(tmp, path);
    strcat(tmp, ".tmp");
    wr w;
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        int rc = rk_err_set(err, RK_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        rk_free(tmp);
        return rc;
    }
    rk_buf_init(&w.buf, 0);
    XXH3_INITSTATE(&w.st);
    XXH3_64bits_reset(&w.st);
    const char *what = "write";
    int rc = encode_body(t, &w);
    if (rc == 0) {
        unsigned char sum[8];
        rk_put_u64(sum, XXH3_64bits_digest(&w.st));
        if (write_all(w.fd, sum, 8)) rc = RK_EIO;
    }
    int e = errno;
    if (rc == 0 && fsync(w.fd) != 0) {
        e = errno;
        what = "fsync";
        rc = RK_EIO;
    }
    if (close(w.fd) != 0 && rc == 0) {
        e = errno;
        what = "close";
        rc = RK_EIO;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        e = errno;
        what = "rename";
        rc = RK_EIO;
    }
    rk_buf_free(&w.buf);
    if (rc) {
        unlink(tmp);
        rk_free(tmp);
        if (rc == RK_ENOMEM) return rk_err_set(err, rc, "%s: out of memory", path);
        return rk_err_set(err, rc, "%s: %s: %s", path, what, strerror(e));
    }
    rk_free(tmp);
    /* The rename is durable only once the directory is synced. */
    fsync_dir_of(path);
    return 0;
}

/* Reader over a file or a memory buffer; hashes every byte it hands out so
 * the checksum is verified without holding the file in memory. */
typedef struct rd {
    int fd;                       /* -1 for memory */
    const unsigned char *mem;
    size_t n, pos;                /* total size and bytes consumed */
    XXH3_state_t st;
    unsigned char *buf;           /* file: staging buffer */
    size_t cap;
} rd;

/* Reads exactly n bytes into dst (file) or points *p at them (memory). The
 * caller has checked that n bytes remain. */
static int rd_take(rd *r, size_t n, const unsigned char **p, int hash)
{
    if (r->fd < 0) {
        *p = r->mem + r->pos;
    } else {
        if (n > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < n) cap *= 2;
            unsigned char *b = rk_realloc(r->buf, cap);
            if (!b) return RK_ENOMEM;
            r->buf = b;
            r->cap = cap;
        }
        size_t got = 0;
        while (got < n) {
            ssize_t k = read(r->fd, r->buf + got, n - got);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) return RK_EIO;
            got += (size_t)k;
        }
        *p = r->buf;
    }
    if (hash) XXH3_64bits_update(&r->st, *p, n);
    r->pos += n;
    return 0;
}

static int load_body(rk_trainset **out, rd *r, const char *name,
                     size_t max_bytes, rk_err *err)
{
    const unsigned char *h;
    if (r->n < HDR_SIZE + 8)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: truncated training set: %zu bytes, the header alone needs %d",
                          name, r->n, HDR_SIZE + 8);
    int rc = rd_take(r, HDR_SIZE, &h, 1);
    if (rc)
        return rk_err_set(err, rc, "%s: %s", name,
                          rc == RK_EIO ? "read failed" : "out of memory");
    if (memcmp(h, MAGIC, 8) != 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: not a rankd training set (bad magic)", name);
    uint32_t ver = rk_get_u32(h + 8), nd = rk_get_u32(h + 12), hb = rk_get_u32(h + 16);
    uint32_t flags = rk_get_u32(h + 20);
    double rate = rk_get_f64(h + 24);
    uint64_t rows = rk_get_u64(h + 32), pairs = rk_get_u64(h + 40);
    if (ver != FILE_VERSION)
        return rk_err_set(err, RK_EVERSION,
                          "%s: training set format version %u, this build reads %u",
                          name, ver, FILE_VERSION);
    if (nd > MAX_DENSE || hb > MAX_HASH_BITS || (flags & ~FLAG_REWEIGHTED) ||
        !(rate > 0 && rate <= 1))
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: corrupt training set header (ndense %u, hash_bits %u, flags %u, rate %g)",
                          name, nd, hb, flags, rate);
    /* The exact size follows from the header; comparing it first turns a
     * truncated file into a clear message and bounds every allocation by
     * the bytes actually present. */
    uint64_t per_row = ROW_HDR + 8 + 4 * (uint64_t)nd;
    uint64_t body = (uint64_t)r->n - HDR_SIZE - 8, need = UINT64_MAX;
    if (rows <= body / per_row && pairs <= (body - rows * per_row) / 8)
        need = rows * per_row + pairs * 8;
    if (need > body)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: truncated training set: the header promises %llu rows and %llu "
                          "sparse pairs, the file has only %zu bytes",
                          name, (unsigned long long)rows, (unsigned long long)pairs, r->n);
    if (need < body)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: corrupt training set: %llu bytes after the last row",
                          name, (unsigned long long)(body - need));
    rk_trainset *t = NULL;
    if ((rc = rk_trainset_create(&t, nd, hb, max_bytes)))
        return rk_err_set(err, rc, "%s: out of memory", name);
    if (rows) {
        rc = reserve_rows(t, rows);
        if (rc == 0) rc = reserve_sparse(t, pairs);
        if (rc) {
            rk_trainset_destroy(t);
            return rk_err_set(err, rc, rc == RK_ELIMIT
                                  ? "%s: training set of %llu rows exceeds the memory budget"
                                  : "%s: out of memory loading %llu rows",
                              name, (unsigned long long)rows);
        }
    }
    t->neg_rate = rate;
    t->neg_reweighted = (flags & FLAG_REWEIGHTED) != 0;
    rk_fvec v = {0};
    uint64_t left = pairs;
    for (uint64_t i = 0; i < rows && rc == 0; i++) {
        const unsigned char *p;
        if ((rc = rd_take(r, ROW_HDR + 8, &p, 1))) break;
        float label = rk_get_f32(p), weight = rk_get_f32(p + 4);
        uint64_t group = rk_get_u64(p + 8);
        int64_t ts = (int64_t)rk_get_u64(p + 16);
        uint32_t vd = rk_get_u32(p + 24), vs = rk_get_u32(p + 28);
        if (vd != nd || vs > left || vs > RK_FVEC_MAX_SPARSE) {
            rc = rk_err_set(err, RK_ECORRUPT,
                            "%s: row %llu: %u dense / %u sparse values, expected %u / at most %llu",
                            name, (unsigned long long)i, vd, vs, nd,
                            (unsigned long long)left);
            break;
        }
        left -= vs;
        /* The vector's header (ndense, nsparse) came with the row header;
         * its values follow in rk_fvec_encode's layout. */
        size_t vlen = 4 * (size_t)nd + 8 * (size_t)vs;
        if ((rc = rd_take(r, vlen, &p, 1))) break;
        rc = rk_fvec_reset(&v, nd);
        for (uint32_t s = 0; rc == 0 && s < vs; s++)
            rc = rk_fvec_push(&v, rk_get_u32(p + 4 * (size_t)nd + 8 * (size_t)s),
                              rk_get_f32(p + 4 * (size_t)nd + 8 * (size_t)s + 4));
        if (rc) break;
        for (uint32_t j = 0; j < nd; j++) v.dense[j] = rk_get_f32(p + 4 * (size_t)j);
        rc = rk_trainset_add(t, &v, label, weight, group, ts);
        if (rc == RK_EINVAL)
            rc = rk_err_set(err, RK_ECORRUPT,
                            "%s: row %llu: invalid label, weight or sparse index",
                            name, (unsigned long long)i);
    }
    rk_fvec_free(&v);
    if (rc == 0) {
        const unsigned char *p;
        uint64_t want = XXH3_64bits_digest(&r->st);
        rc = rd_take(r, 8, &p, 0);
        if (rc == 0 && rk_get_u64(p) != want)
            rc = rk_err_set(err, RK_ECORRUPT, "%s: training set checksum mismatch", name);
    }
    if (rc) {
        rk_trainset_destroy(t);
        if (err && err->code == rc) return rc;
        if (rc == RK_EIO) return rk_err_set(err, rc, "%s: read failed", name);
        return rk_err_set(err, rc, "%s: out of memory", name);
    }
    *out = t;
    return 0;
}

int rk_trainset_load_mem(rk_trainset **out, const void *p, size_t n,
                         size_t max_bytes, rk_err *err)
{
    *out = NULL;
    rd r = {.fd = -1, .mem = p, .n = n};
    XXH3_INITSTATE(&r.st);
    XXH3_64bits_reset(&r.st);
    if (err) rk_err_clear(err);
    return load_body(out, &r, "training set", max_bytes, err);
}

int rk_trainset_load(rk_trainset **out, const char *path, size_t max_bytes,
                     rk_err *err)
{
    *out = NULL;
    if (err) rk_err_clear(err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = errno == ENOENT ? RK_ENOTFOUND : RK_EIO;
        return rk_err_set(err, code, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int rc = rk_err_set(err, RK_EIO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    rd r = {.fd = fd, .n = (size_t)sb.st_size};
    XXH3_INITSTATE(&r.st);
    XXH3_64bits_reset(&r.st);
    int rc = load_body(out, &r, path, max_bytes, err);
    rk_free(r.buf);
    close(fd);
    return rc;
}
