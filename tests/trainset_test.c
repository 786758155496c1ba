/*
 * trainset_test.c — unit tests of training sets: compact storage and its
 * byte budget, time splits, negative down-sampling, class weights, dense
 * and sparse exports, shuffling, and the checksummed file format.
 */
#include "rk_features.h"
#include "test.h"

/* A row with dense values derived from k and k % 4 + 1 sparse coordinates. */
static int make_row(rk_fvec *v, uint32_t ndense, uint32_t hash_bits, int k)
{
    int rc = rk_fvec_reset(v, ndense);
    for (uint32_t j = 0; rc == 0 && j < ndense; j++)
        v->dense[j] = (j + (uint32_t)k) % 5 == 0 ? NAN : (float)k * 0.5f + (float)j;
    for (int s = 0; rc == 0 && s < k % 4 + 1; s++)
        rc = rk_fvec_push(v, (uint32_t)(k * 7919 + s * 31) & ((1u << hash_bits) - 1),
                          1.0f + (float)s);
    return rc;
}

static int same_bits(const float *a, const float *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof(float)) == 0;
}

TEST(trainset_add_get_roundtrip)
{
    rk_trainset *t;
    CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
    rk_fvec v = {0};
    for (int k = 0; k < 1000; k++) {
        CHECK_OK(make_row(&v, 3, 10, k));
        CHECK_OK(rk_trainset_add(t, &v, (float)(k % 3 == 0), 1.0f + (float)(k % 2),
                                 (uint64_t)(k / 10), 1000 + k));
    }
    CHECK_EQ_INT(rk_trainset_rows(t), 1000);
    for (int k = 0; k < 1000; k++) {
        CHECK_OK(make_row(&v, 3, 10, k));
        rk_trow r;
        rk_trainset_get(t, (size_t)k, &r);
        CHECK_EQ_INT(r.x.ndense, 3);
        CHECK(same_bits(r.x.dense, v.dense, 3));
        CHECK_EQ_INT(r.x.nsparse, v.nsparse);
        CHECK(memcmp(r.x.idx, v.idx, v.nsparse * 4) == 0);
        CHECK(same_bits(r.x.val, v.val, v.nsparse));
        CHECK(r.label == (float)(k % 3 == 0));
        CHECK(r.weight == 1.0f + (float)(k % 2));
        CHECK_EQ_INT(r.group, k / 10);
        CHECK_EQ_INT(r.ts_ms, 1000 + k);
    }
    rk_fvec_free(&v);
    rk_trainset_destroy(t);
    rk_trainset_destroy(NULL);
}

TEST(trainset_add_refuses_bad_rows)
{
    rk_trainset *t;
    CHECK_OK(rk_trainset_create(&t, 2, 4, 0));
    rk_fvec v = {0};
    CHECK_OK(rk_fvec_reset(&v, 3));
    CHECK_EQ_INT(rk_trainset_add(t, &v, 1, 1, 0, 0), RK_EINVAL); /* width */
    CHECK_OK(rk_fvec_reset(&v, 2));
    CHECK_EQ_INT(rk_trainset_add(t, &v, NAN, 1, 0, 0), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_add(t, &v, 1, 0, 0, 0), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_add(t, &v, 1, -1, 0, 0), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_add(t, &v, 1, INFINITY, 0, 0), RK_EINVAL);
    CHECK_OK(rk_fvec_push(&v, 16, 1)); /* outside 2^4 */
    CHECK_EQ_INT(rk_trainset_add(t, &v, 1, 1, 0, 0), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_rows(t), 0);
    rk_fvec_free(&v);
    rk_trainset_destroy(t);
    CHECK_EQ_INT(rk_trainset_create(&t, 2, 31, 0), RK_EINVAL);
    CHECK(t == NULL);
}

TEST(trainset_byte_limit)
{
    /* 4 dense floats + 32 fixed bytes = 48 per row, 2 sparse pairs = 16. */
    rk_trainset *t;
    CHECK_OK(rk_trainset_create(&t, 4, 8, 64 * 100));
    rk_fvec v = {0};
    CHECK_OK(rk_fvec_reset(&v, 4));
    CHECK_OK(rk_fvec_push(&v, 1, 1));
    CHECK_OK(rk_fvec_push(&v, 2, 1));
    size_t n = 0;
    int rc;
    while ((rc = rk_trainset_add(t, &v, 0, 1, 0, 0)) == 0) n++;
    CHECK_EQ_INT(rc, RK_ELIMIT);
    CHECK_EQ_INT(n, 100); /* the budget is used exactly, not to doubling slack */
    CHECK_EQ_INT(rk_trainset_rows(t), 100);
    rk_fvec_free(&v);
    rk_trainset_destroy(t);
}

TEST(trainset_alloc_failure)
{
    rk_fvec v = {0};
    CHECK_OK(make_row(&v, 2, 6, 3));
    for (uint64_t fail = 1;; fail++) {
        rk_trainset *t = NULL;
        rk_mem_fail_at(fail, 0);
        int rc = rk_trainset_create(&t, 2, 6, 0);
        for (int k = 0; rc == 0 && k < 300; k++) rc = rk_trainset_add(t, &v, 1, 1, 0, k);
        rk_mem_fail_at(0, 0);
        if (rc == 0) {
            CHECK_EQ_INT(rk_trainset_rows(t), 300);
            rk_trainset_destroy(t);
            break;
        }
        CHECK_EQ_INT(rc, RK_ENOMEM);
        rk_trainset_destroy(t);
    }
    rk_fvec_free(&v);
}

/* A set of n rows from make_row: label 1 every 5th row, group k / 4,
 * ts = 1000 + k * 10. */
static rk_trainset *build(int n, uint32_t ndense, uint32_t hash_bits)
{
    rk_trainset *t = NULL;
    rk_fvec v = {0};
    if (rk_trainset_create(&t, ndense, hash_bits, 0)) return NULL;
    for (int k = 0; k < n; k++) {
        if (make_row(&v, ndense, hash_bits, k) ||
            rk_trainset_add(t, &v, k % 5 == 0 ? 1.0f : 0.0f, 1.0f,
                            (uint64_t)(k / 4 + 1), 1000 + (int64_t)k * 10)) {
            rk_trainset_destroy(t);
            t = NULL;
            break;
        }
    }
    rk_fvec_free(&v);
    return t;
}

static int rows_equal(const rk_trow *a, const rk_trow *b)
{
    return a->x.ndense == b->x.ndense && a->x.nsparse == b->x.nsparse &&
           same_bits(a->x.dense, b->x.dense, a->x.ndense) &&
           (a->x.nsparse == 0 || memcmp(a->x.idx, b->x.idx, 4 * a->x.nsparse) == 0) &&
           same_bits(a->x.val, b->x.val, a->x.nsparse) &&
           memcmp(&a->label, &b->label, 4) == 0 && memcmp(&a->weight, &b->weight, 4) == 0 &&
           a->group == b->group && a->ts_ms == b->ts_ms;
}

static int sets_equal(const rk_trainset *a, const rk_trainset *b)
{
    if (rk_trainset_rows(a) != rk_trainset_rows(b)) return 0;
    for (size_t i = 0; i < rk_trainset_rows(a); i++) {
        rk_trow x, y;
        rk_trainset_get(a, i, &x);
        rk_trainset_get(b, i, &y);
        if (!rows_equal(&x, &y)) return 0;
    }
    return 1;
}

TEST(trainset_summary)
{
    rk_trainset *t = build(100, 2, 8);
    CHECK(t);
    rk_trainset_summary s;
    CHECK_OK(rk_trainset_summarize(t, &s));
    CHECK_EQ_INT(s.rows, 100);
    CHECK_EQ_INT(s.positives, 20);
    CHECK_EQ_INT(s.groups, 25);
    CHECK(s.weight_sum == 100 && s.pos_weight_sum == 20 && s.neg_weight_sum == 80);
    CHECK_EQ_INT(s.ts_min, 1000);
    CHECK_EQ_INT(s.ts_max, 1990);
    CHECK(s.neg_rate == 1 && !s.neg_reweighted);
    CHECK(rk_trainset_bytes(t) > 0);
    CHECK_EQ_INT(rk_trainset_ndense(t), 2);
    CHECK_EQ_INT(rk_trainset_hash_bits(t), 8);
    rk_trainset_destroy(t);
}

TEST(trainset_split)
{
    rk_trainset *t = build(100, 2, 8), *tr, *va;
    CHECK(t);
    int64_t cut;
    /* Span 1000..1990: the last 20% of time starts at 1000 + 792. */
    CHECK_OK(rk_trainset_split_point(t, 0.2, 0, &cut));
    CHECK_EQ_INT(cut, 1792);
    CHECK_OK(rk_trainset_split_point(t, 0.25, 1, &cut));
    CHECK_EQ_INT(cut, 1750); /* row rank 75 */
    CHECK_EQ_INT(rk_trainset_split_point(t, 1.0, 1, &cut), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_split_point(t, 0, 0, &cut), RK_EINVAL);
    CHECK_OK(rk_trainset_split_time(t, cut, &tr, &va));
    CHECK_EQ_INT(rk_trainset_rows(tr), 75);
    CHECK_EQ_INT(rk_trainset_rows(va), 25);
    for (size_t i = 0; i < 100; i++) {
        rk_trow a, b;
        rk_trainset_get(t, i, &a);
        rk_trainset_get(i < 75 ? tr : va, i < 75 ? i : i - 75, &b);
        CHECK(rows_equal(&a, &b));
        CHECK((a.ts_ms < cut) == (i < 75));
    }
    rk_trainset_destroy(tr);
    rk_trainset_destroy(va);
    rk_trainset *e;
    CHECK_OK(rk_trainset_create(&e, 1, 4, 0));
    CHECK_EQ_INT(rk_trainset_split_point(e, 0.2, 0, &cut), RK_EINVAL);
    rk_trainset_destroy(e);
    rk_trainset_destroy(t);
}

TEST(trainset_downsample)
{
    /* 20000 rows, 4000 positives; keep 10% of negatives. */
    rk_trainset *t = build(20000, 1, 6), *u = build(20000, 1, 6);
    CHECK(t && u);
    CHECK_EQ_INT(rk_trainset_downsample(t, 0, 1, 7), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_downsample(t, 1.5, 1, 7), RK_EINVAL);
    CHECK_OK(rk_trainset_downsample(t, 0.1, 1, 7));
    CHECK_OK(rk_trainset_downsample(u, 0.1, 1, 7));
    CHECK(sets_equal(t, u)); /* deterministic for a seed */
    rk_trainset_summary s;
    CHECK_OK(rk_trainset_summarize(t, &s));
    CHECK_EQ_INT(s.positives, 4000);
    CHECK(s.pos_weight_sum == 4000);
    /* 16000 negatives: kept ~ Binomial(16000, 0.1), sd 38; weighted count
     * preserved within 5 sd. */
    size_t kept = s.rows - s.positives;
    CHECK(kept > 1600 - 190 && kept < 1600 + 190);
    CHECK(fabs(s.neg_weight_sum - 16000) < 1900);
    CHECK(fabs(s.neg_weight_sum - 10.0 * (double)kept) < 1e-6 * s.neg_weight_sum);
    CHECK(s.neg_rate == 0.1 && s.neg_reweighted);
    /* The expectation over many seeds: mean weighted count within 0.5%. */
    double mean = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        rk_trainset *w = build(20000, 1, 6);
        CHECK(w);
        CHECK_OK(rk_trainset_downsample(w, 0.1, 1, seed));
        CHECK_OK(rk_trainset_summarize(w, &s));
        mean += s.neg_weight_sum / 20;
        rk_trainset_destroy(w);
    }
    CHECK(fabs(mean - 16000) < 80);
    /* Rows kept are intact copies of the originals, in order. */
    rk_trainset *o = build(20000, 1, 6);
    CHECK(o);
    size_t j = 0;
    for (size_t i = 0; i < rk_trainset_rows(o) && j < rk_trainset_rows(t); i++) {
        rk_trow a, b;
        rk_trainset_get(o, i, &a);
        rk_trainset_get(t, j, &b);
        if (a.ts_ms != b.ts_ms) continue;
        b.weight = a.weight; /* reweighted */
        CHECK(rows_equal(&a, &b));
        j++;
    }
    CHECK_EQ_INT(j, rk_trainset_rows(t));
    /* A different seed keeps different rows. */
    rk_trainset_destroy(u);
    u = build(20000, 1, 6);
    CHECK_OK(rk_trainset_downsample(u, 0.1, 1, 8));
    CHECK(!sets_equal(t, u));
    /* Mixing reweighted and plain sampling is refused; plain composes. */
    CHECK_EQ_INT(rk_trainset_downsample(t, 0.5, 0, 1), RK_ESTATE);
    rk_trainset_destroy(o);
    o = build(1000, 1, 6);
    CHECK_OK(rk_trainset_downsample(o, 0.5, 0, 3));
    CHECK_OK(rk_trainset_downsample(o, 0.5, 0, 4));
    CHECK_OK(rk_trainset_summarize(o, &s));
    CHECK(s.neg_rate == 0.25 && !s.neg_reweighted);
    CHECK(s.neg_weight_sum == (double)(s.rows - s.positives)); /* weights kept */
    /* Calibration: q = 0.5 at r = 0.25 is p = 0.5 / (0.5 + 2) = 0.2. */
    CHECK(fabs(rk_trainset_calibrate(o, 0.5) - 0.2) < 1e-12);
    CHECK(rk_trainset_calibrate(t, 0.5) == 0.5); /* reweighted: no change */
    rk_trainset_destroy(o);
    rk_trainset_destroy(u);
    rk_trainset_destroy(t);
}

TEST(trainset_class_weights)
{
    rk_trainset *t = build(100, 1, 4);
    CHECK(t);
    CHECK_EQ_INT(rk_trainset_class_weights(t, 0, 1), RK_EINVAL);
    CHECK_EQ_INT(rk_trainset_class_weights(t, 1, NAN), RK_EINVAL);
    CHECK_OK(rk_trainset_class_weights(t, 3, 0.5));
    rk_trainset_summary s;
    CHECK_OK(rk_trainset_summarize(t, &s));
    CHECK(s.pos_weight_sum == 60 && s.neg_weight_sum == 40);
    double fp, fn;
    CHECK_OK(rk_trainset_balance(t, &fp, &fn));
    CHECK_OK(rk_trainset_summarize(t, &s));
    CHECK(fabs(s.pos_weight_sum - 50) < 1e-4 && fabs(s.neg_weight_sum - 50) < 1e-4);
    CHECK(fabs(fp - 100.0 / 120) < 1e-12 && fabs(fn - 100.0 / 80) < 1e-12);
    rk_trainset_destroy(t);
    /* Balancing a set without negatives is an error. */
    CHECK_OK(rk_trainset_create(&t, 0, 4, 0));
    rk_fvec v = {0};
    CHECK_OK(rk_trainset_add(t, &v, 1, 1, 0, 0));
    CHECK_EQ_INT(rk_trainset_balance(t, NULL, NULL), RK_ESTATE);
    rk_trainset_destroy(t);
}

TEST(trainset_dense_export)
{
    rk_trainset *t;
    CHECK_OK(rk_trainset_create(&t, 2, 8, 0));
    rk_fvec v = {0};
    /* Rows (group, ts): interleaved groups and group-0 singletons. */
    static const struct { uint64_t g; int64_t ts; } rows[] = {
        {7, 50}, {3, 10}, {0, 20}, {7, 40}, {3, 10}, {0, 5}, {9, 30}, {3, 15},
    };
    for (size_t k = 0; k < 8; k++) {
        CHECK_OK(rk_fvec_reset(&v, 2));
        v.dense[0] = (float)k;
        if (k != 2) v.dense[1] = (float)k * 10; /* row 2 keeps a NaN */
        CHECK_OK(rk_fvec_push(&v, (uint32_t)k, 1.0f));
        CHECK_OK(rk_fvec_push(&v, (uint32_t)k + 3, 2.0f));
        CHECK_OK(rk_trainset_add(t, &v, (float)(k & 1), 1.0f + (float)k, rows[k].g, rows[k].ts));
    }
    rk_fvec_free(&v);
    rk_tdense d;
    /* Ungrouped: set order, dense columns only. */
    CHECK_OK(rk_trainset_dense(t, 0, 0, &d));
    CHECK_EQ_INT(d.x.nrows, 8);
    CHECK_EQ_INT(d.x.ncols, 2);
    CHECK_EQ_INT(d.ngroups, 0);
    for (size_t k = 0; k < 8; k++) {
        rk_trow r;
        rk_trainset_get(t, k, &r);
        CHECK(same_bits(d.x.x + k * 2, r.x.dense, 2));
        CHECK(d.label[k] == r.label && d.weight[k] == r.weight);
    }
    rk_tdense_free(&d);
    /* Grouped, with the hashed coordinates folded into 3 columns.
     * Groups by first ts: g0@5 (row 5), g3@10 (rows 1, 4, 7), g0@20
     * (row 2), g9@30 (row 6), g7@40 (rows 3, 0). */
    CHECK_OK(rk_trainset_dense(t, RK_TDENSE_GROUPED, 3, &d));
    static const size_t order[] = {5, 1, 4, 7, 2, 6, 3, 0};
    static const uint32_t sizes[] = {1, 3, 1, 1, 2};
    CHECK_EQ_INT(d.ngroups, 5);
    CHECK(memcmp(d.group_size, sizes, sizeof sizes) == 0);
    CHECK_EQ_INT(d.x.ncols, 5);
    for (size_t r = 0; r < 8; r++) {
        size_t k = order[r];
        const float *row = d.x.x + r * d.x.stride;
        CHECK(row[0] == (float)k);
        CHECK(k == 2 ? isnan(row[1]) : row[1] == (float)k * 10);
        /* k % 3 gets 1, (k + 3) % 3 == k % 3 too: 1 + 2 = 3 there. */
        for (uint32_t c = 0; c < 3; c++)
            CHECK(c == k % 3 ? row[2 + c] == 3.0f : isnan(row[2 + c]));
        CHECK(d.group[r] == rows[k].g && d.ts[r] == rows[k].ts);
        CHECK(d.weight[r] == 1.0f + (float)k);
    }
    rk_tdense_free(&d);
    CHECK_EQ_INT(rk_trainset_dense(t, 8, 0, &d), RK_EINVAL);
    rk_trainset_destroy(t);
    /* The export is bounded by the set's budget. */
    CHECK_OK(rk_trainset_create(&t, 1, 4, 4096));
    CHECK_OK(rk_fvec_reset(&v, 1));
    for (int k = 0; k < 100; k++) CHECK_OK(rk_trainset_add(t, &v, 0, 1, 0, k));
    CHECK_EQ_INT(rk_trainset_dense(t, 0, 64, &d), RK_ELIMIT);
    CHECK(d.x.x == NULL);
    rk_fvec_free(&v);
    rk_trainset_destroy(t);
}

TEST(trainset_sparse_export)
{
    rk_trainset *t = build(300, 3, 12);
    CHECK(t);
    rk_tsparse sp;
    CHECK_OK(rk_trainset_sparse(t, &sp));
    CHECK_EQ_INT(sp.nrows, 300);
    CHECK_EQ_INT(sp.dim, 3 + 4096);
    uint32_t ib[64];
    float vb[64];
    for (size_t i = 0; i < 300; i++) {
        rk_trow r;
        rk_sparse a, b;
        rk_trainset_get(t, i, &r);
        rk_fvec_as_sparse(&r.x, ib, vb, &a);
        rk_tsparse_row(&sp, i, &b);
        CHECK_EQ_INT(a.n, b.n);
        CHECK(memcmp(a.idx, b.idx, 4 * a.n) == 0 && same_bits(a.val, b.val, a.n));
        for (uint32_t k = 0; k < b.n; k++) CHECK(b.idx[k] < sp.dim);
        CHECK(sp.label[i] == r.label && sp.weight[i] == r.weight &&
              sp.group[i] == r.group && sp.ts[i] == r.ts_ms);
    }
    rk_tsparse_free(&sp);
    rk_tsparse_free(&sp); /* idempotent */
    rk_trainset_destroy(t);
}

TEST(trainset_shuffle_and_sort)
{
    rk_trainset *t = build(500, 2, 8), *u = build(500, 2, 8), *o = build(500, 2, 8);
    CHECK(t && u && o);
    CHECK_OK(rk_trainset_shuffle(t, 42));
    CHECK_OK(rk_trainset_shuffle(u, 42));
    CHECK(sets_equal(t, u));
    CHECK(!sets_equal(t, o));
    /* A permutation: ts are unique, each original row appears once intact. */
    for (size_t i = 0; i < 500; i++) {
        rk_trow a, b;
        rk_trainset_get(t, i, &a);
        rk_trainset_get(o, (size_t)(a.ts_ms - 1000) / 10, &b);
        CHECK(rows_equal(&a, &b));
    }
    CHECK_OK(rk_trainset_sort_time(t));
    CHECK(sets_equal(t, o));
    rk_trainset_destroy(t);
    rk_trainset_destroy(u);
    rk_trainset_destroy(o);
}

static size_t read_file(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    size_t got = fread(*out, 1, (size_t)n, f);
    fclose(f);
    return got;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

TEST(trainset_file_roundtrip)
{
    const char *dir = rk_test_tmpdir("trainset-file");
    char path[512];
    snprintf(path, sizeof path, "%s/set.rkt", dir);
    rk_trainset *t = build(400, 3, 10), *u = NULL;
    CHECK(t);
    CHECK_OK(rk_trainset_downsample(t, 0.5, 0, 9));
    rk_err err = {0};
    CHECK_OK(rk_trainset_save(t, path, &err));
    CHECK_OK(rk_trainset_load(&u, path, 0, &err));
    CHECK(sets_equal(t, u)); /* bit-exact, NaNs included */
    rk_trainset_summary a, b;
    CHECK_OK(rk_trainset_summarize(t, &a));
    CHECK_OK(rk_trainset_summarize(u, &b));
    CHECK(b.neg_rate == 0.5 && !b.neg_reweighted && a.rows == b.rows);
    CHECK_EQ_INT(rk_trainset_ndense(u), 3);
    CHECK_EQ_INT(rk_trainset_hash_bits(u), 10);
    rk_trainset_destroy(u);
    /* Saving again replaces the file atomically. */
    CHECK_OK(rk_trainset_save(t, path, &err));

    unsigned char *bytes = NULL;
    size_t n = read_file(path, &bytes);
    CHECK(n > 100);
    CHECK_OK(rk_trainset_load_mem(&u, bytes, n, 0, &err));
    CHECK(sets_equal(t, u));
    rk_trainset_destroy(u);

    /* Every single-byte corruption is refused, with a message. */
    for (size_t i = 0; i < n; i += 7) {
        bytes[i] ^= 0x5a;
        int rc = rk_trainset_load_mem(&u, bytes, n, 0, &err);
        bytes[i] ^= 0x5a;
        CHECK(rc == RK_ECORRUPT || rc == RK_EVERSION);
        CHECK(u == NULL);
        CHECK(err.msg[0] != '\0');
    }
    /* Flipping a feature value is caught by the checksum. */
    bytes[60] ^= 1;
    write_file(path, bytes, n);
    CHECK_EQ_INT(rk_trainset_load(&u, path, 0, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum mismatch");
    bytes[60] ^= 1;
    /* Truncations at every length are refused. */
    for (size_t k = 0; k < n; k += 13) {
        CHECK_EQ_INT(rk_trainset_load_mem(&u, bytes, k, 0, &err), RK_ECORRUPT);
        CHECK_CONTAINS(err.msg, "truncated");
    }
    write_file(path, bytes, n - 1);
    CHECK_EQ_INT(rk_trainset_load(&u, path, 0, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "truncated");
    CHECK_CONTAINS(err.msg, path);
    /* Magic and version. */
    bytes[0] = 'X';
    CHECK_EQ_INT(rk_trainset_load_mem(&u, bytes, n, 0, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "not a rankd training set");
    bytes[0] = 'R';
    bytes[8] = 2;
    CHECK_EQ_INT(rk_trainset_load_mem(&u, bytes, n, 0, &err), RK_EVERSION);
    CHECK_CONTAINS(err.msg, "version 2");
    bytes[8] = 1;
    /* A budget too small for the rows. */
    CHECK_EQ_INT(rk_trainset_load_mem(&u, bytes, n, 4096, &err), RK_ELIMIT);
    CHECK_CONTAINS(err.msg, "budget");
    /* Missing file. */
    snprintf(path, sizeof path, "%s/none.rkt", dir);
    CHECK_EQ_INT(rk_trainset_load(&u, path, 0, &err), RK_ENOTFOUND);
    free(bytes);
    rk_trainset_destroy(t);
    rk_test_rmdir(dir);
}

TEST(trainset_file_alloc_failure)
{
    rk_trainset *t = build(50, 2, 6), *u;
    CHECK(t);
    const char *dir = rk_test_tmpdir("trainset-file-fail");
    char path[512];
    snprintf(path, sizeof path, "%s/set.rkt", dir);
    rk_err err = {0};
    CHECK_OK(rk_trainset_save(t, path, &err));
    for (uint64_t fail = 1;; fail++) {
        rk_mem_fail_at(fail, 0);
        int rc = rk_trainset_load(&u, path, 0, &err);
        rk_mem_fail_at(0, 0);
        if (rc == 0) {
            CHECK(sets_equal(t, u));
            rk_trainset_destroy(u);
            break;
        }
        CHECK_EQ_INT(rc, RK_ENOMEM);
        CHECK_CONTAINS(err.msg, "out of memory");
    }
    /* Exports and reorders under allocation failure leave the set intact. */
    for (uint64_t fail = 1; fail < 20; fail++) {
        rk_tdense d;
        rk_tsparse sp;
        rk_mem_fail_at(fail, 0);
        int r1 = rk_trainset_dense(t, RK_TDENSE_GROUPED, 2, &d);
        rk_mem_fail_at(fail, 0);
        int r2 = rk_trainset_sparse(t, &sp);
        rk_mem_fail_at(fail, 0);
        int r3 = rk_trainset_shuffle(t, fail);
        rk_mem_fail_at(0, 0);
        CHECK(r1 == 0 || r1 == RK_ENOMEM);
        CHECK(r2 == 0 || r2 == RK_ENOMEM);
        CHECK(r3 == 0 || r3 == RK_ENOMEM);
        rk_tdense_free(&d);
        rk_tsparse_free(&sp);
        CHECK_OK(rk_trainset_sort_time(t));
    }
    rk_trainset *o = build(50, 2, 6);
    CHECK(sets_equal(t, o));
    rk_trainset_destroy(o);
    rk_trainset_destroy(t);
    rk_test_rmdir(dir);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, trainset_add_get_roundtrip, trainset_add_refuses_bad_rows,
                 trainset_byte_limit, trainset_alloc_failure, trainset_summary,
                 trainset_split, trainset_downsample, trainset_class_weights,
                 trainset_dense_export, trainset_sparse_export, trainset_shuffle_and_sort,
                 trainset_file_roundtrip, trainset_file_alloc_failure);
}
