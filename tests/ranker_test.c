/*
 * ranker_test.c — the ranker interface over GBDT, FTRL and FM: every kind
 * learns a synthetic problem, predictions survive a save/load round trip
 * bit for bit, corrupted payloads are refused, the down-sampling
 * correction and calibration bring the mean prediction back to the base
 * rate, the rank task trains LambdaMART on groups, and mismatched inputs
 * are clear errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_train.h"
#include "test.h"

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) { return (double)(mix(s) >> 11) * 0x1p-53; }

/* Rows with 3 dense columns (one heavy-tailed, one with missing values)
 * and one hashed categorical out of 20; P(y) is logistic in all of them.
 * base_logit shifts the positive rate. groups: 10 rows per group, labels
 * graded 0..2 for the rank task. */
static rk_trainset *make_set(size_t n, uint64_t seed, double base_logit,
                             int graded)
{
    rk_trainset *t = NULL;
    if (rk_trainset_create(&t, 3, 10, 0)) return NULL;
    rk_fvec x = {0};
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        rk_fvec_reset(&x, 3);
        double a = unif(&s) * 2 - 1, b = exp(unif(&s) * 6), c = unif(&s);
        uint32_t cat = (uint32_t)(mix(&s) % 20);
        x.dense[0] = (float)a;
        x.dense[1] = (float)b;
        if (c < 0.8) x.dense[2] = (float)c;
        rk_fvec_push(&x, 100 + cat, 1.0f);
        double z = base_logit + 2.5 * a + 0.6 * log(b) - 1.8 +
                   (cat < 5 ? 1.5 : cat < 10 ? -1.0 : 0.0) + (c < 0.8 ? c : 0.5);
        double p = 1 / (1 + exp(-z));
        float y = unif(&s) < p ? 1.0f : 0.0f;
        if (graded && y > 0 && unif(&s) < 0.3) y = 2.0f;
        if (rk_trainset_add(t, &x, y, 1.0f, graded ? 1 + i / 10 : 0, (int64_t)i)) {
            rk_trainset_destroy(t);
            t = NULL;
            break;
        }
    }
    rk_fvec_free(&x);
    return t;
}

static void small_opts(rk_ranker_opts *o, rk_ranker_kind k)
{
    rk_ranker_opts_default(o);
    o->kind = k;
    o->gbdt.ntrees = 40;
    o->gbdt.max_depth = 4;
    o->gbdt.eta = 0.2;
    o->gbdt.nthread = 1;
    o->ftrl_train.epochs = 3;
    o->fm_train.epochs = 8;
}

TEST(every_kind_learns_and_round_trips)
{
    rk_trainset *tr = make_set(4000, 1, 0, 0), *va = make_set(1500, 2, 0, 0);
    CHECK(tr && va);
    rk_ranker_kind kinds[] = {RK_RANKER_GBDT, RK_RANKER_FTRL, RK_RANKER_FM};
    for (int k = 0; k < 3; k++) {
        rk_ranker_opts o;
        small_opts(&o, kinds[k]);
        rk_err err = {0};
        rk_ranker *r = NULL;
        CHECK_OK(rk_ranker_train(&r, tr, va, &o, &err));
        rk_ranker_eval ev;
        CHECK_OK(rk_ranker_evaluate(r, va, &ev, &err));
        double auc = rk_ranker_eval_get(&ev, "auc");
        if (!(auc > 0.80))
            fprintf(stderr, "  %s auc %.4f\n", rk_ranker_kind_name(kinds[k]), auc);
        CHECK(auc > 0.80);
        CHECK(isfinite(rk_ranker_eval_get(&ev, "logloss")));
        CHECK(isnan(rk_ranker_eval_get(&ev, "no-such-metric")));
        /* Save, load, predict the same bits. */
        rk_buf b;
        rk_buf_init(&b, 0);
        CHECK_OK(rk_ranker_set_spec(r, "spec-bytes", 10));
        CHECK_OK(rk_ranker_save(r, &b, &err));
        rk_ranker *r2 = NULL;
        CHECK_OK(rk_ranker_load(&r2, b.data, b.len, &err));
        size_t sn;
        const void *sp = rk_ranker_spec(r2, &sn);
        CHECK(sn == 10 && memcmp(sp, "spec-bytes", 10) == 0);
        size_t n = rk_trainset_rows(va);
        float *p1 = rk_malloc(n * sizeof *p1), *p2 = rk_malloc(n * sizeof *p2);
        CHECK_OK(rk_ranker_predict_set(r, va, p1, &err));
        CHECK_OK(rk_ranker_predict_set(r2, va, p2, &err));
        CHECK(memcmp(p1, p2, n * sizeof *p1) == 0);
        for (size_t i = 0; i < n; i++) CHECK(p1[i] >= 0 && p1[i] <= 1);
        /* One vector through the array entry point gives the same. */
        rk_trow row;
        rk_trainset_get(va, 7, &row);
        float one;
        CHECK_OK(rk_ranker_predict(r2, &row.x, 1, &one, &err));
        CHECK(one == p1[7]);
        /* Truncations and a flipped header byte are refused, never read. */
        for (size_t cut = 0; cut < b.len; cut += 1 + b.len / 50) {
            rk_ranker *bad = NULL;
            CHECK(rk_ranker_load(&bad, b.data, cut, &err) != 0);
            CHECK(bad == NULL);
        }
        b.data[12] ^= 0x7f;
        rk_ranker *bad = NULL;
        CHECK_EQ_INT(rk_ranker_load(&bad, b.data, b.len, &err), RK_ECORRUPT);
        b.data[12] ^= 0x7f;
        b.data[8] = 9;
        CHECK_EQ_INT(rk_ranker_load(&bad, b.data, b.len, &err), RK_EVERSION);
        rk_free(p1);
        rk_free(p2);
        rk_buf_free(&b);
        rk_ranker_destroy(r);
        rk_ranker_destroy(r2);
    }
    rk_trainset_destroy(tr);
    rk_trainset_destroy(va);
}

TEST(downsampling_is_corrected_and_calibrated)
{
    /* A rare positive class: about 5%. */
    rk_trainset *tr = make_set(20000, 3, -3.0, 0), *va = make_set(6000, 4, -3.0, 0);
    CHECK(tr && va);
    rk_trainset_summary vs;
    CHECK_OK(rk_trainset_summarize(va, &vs));
    double rate = vs.pos_weight_sum / vs.weight_sum;
    CHECK_OK(rk_trainset_downsample(tr, 0.2, 0, 9));
    rk_ranker_opts o;
    small_opts(&o, RK_RANKER_FTRL);
    rk_err err = {0};
    for (int calib = 0; calib < 3; calib++) {
        o.calib = calib == 0 ? RK_CALIB_NONE : calib == 1 ? RK_CALIB_PLATT
                                                          : RK_CALIB_ISOTONIC;
        rk_ranker *r = NULL;
        CHECK_OK(rk_ranker_train(&r, tr, va, &o, &err));
        rk_ranker_eval ev;
        CHECK_OK(rk_ranker_evaluate(r, va, &ev, &err));
        double mp = rk_ranker_eval_get(&ev, "mean_prediction");
        CHECK(fabs(rk_ranker_eval_get(&ev, "positive_rate") - rate) < 1e-9);
        /* Without correction the model would predict about 5x the rate. */
        if (!(fabs(mp - rate) < (calib ? 0.01 : 0.02)))
            fprintf(stderr, "  calib %d: mean %.4f rate %.4f\n", calib, mp, rate);
        CHECK(fabs(mp - rate) < (calib ? 0.01 : 0.02));
        rk_ranker_destroy(r);
    }
    rk_trainset_destroy(tr);
    rk_trainset_destroy(va);
}

TEST(rank_task_trains_lambdamart)
{
    rk_trainset *tr = make_set(3000, 5, 0, 1), *va = make_set(1000, 6, 0, 1);
    CHECK(tr && va);
    rk_ranker_opts o;
    small_opts(&o, RK_RANKER_GBDT);
    o.task = RK_TASK_RANK;
    rk_err err = {0};
    rk_ranker *r = NULL;
    CHECK_OK(rk_ranker_train(&r, tr, va, &o, &err));
    rk_gbdt_info info;
    rk_gbdt_info_get(rk_ranker_gbdt(r), &info);
    CHECK_STR(info.objective, "rank:ndcg");
    rk_ranker_eval ev;
    CHECK_OK(rk_ranker_evaluate(r, va, &ev, &err));
    double ndcg = rk_ranker_eval_get(&ev, "ndcg@10");
    CHECK(ndcg > 0.6 && ndcg <= 1);
    CHECK(isfinite(rk_ranker_eval_get(&ev, "map@10")));
    CHECK(isnan(rk_ranker_eval_get(&ev, "logloss")));
    rk_ranker_destroy(r);
    rk_trainset_destroy(tr);
    rk_trainset_destroy(va);
}

TEST(bad_inputs_are_clear_errors)
{
    rk_trainset *tr = make_set(500, 7, 0, 0), *other = NULL, *empty = NULL;
    CHECK(tr);
    CHECK_OK(rk_trainset_create(&other, 5, 10, 0));
    CHECK_OK(rk_trainset_create(&empty, 3, 10, 0));
    rk_ranker_opts o;
    small_opts(&o, RK_RANKER_FTRL);
    rk_err err = {0};
    rk_ranker *r = NULL;
    CHECK_EQ_INT(rk_ranker_train(&r, empty, NULL, &o, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "empty");
    CHECK_EQ_INT(rk_ranker_train(&r, tr, other, &o, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "widths");
    rk_ranker_kind k;
    CHECK_EQ_INT(rk_ranker_kind_parse("svm", &k, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "gbdt, ftrl, fm");
    /* A vector of the wrong width is refused at prediction. */
    CHECK_OK(rk_ranker_train(&r, tr, NULL, &o, &err));
    rk_fvec x = {0};
    CHECK_OK(rk_fvec_reset(&x, 5));
    float p;
    CHECK_EQ_INT(rk_ranker_predict(r, &x, 1, &p, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "dense columns");
    /* Hashed coordinates beyond the trained width too. */
    CHECK_OK(rk_fvec_reset(&x, 3));
    CHECK_OK(rk_fvec_push(&x, 1u << 12, 1));
    CHECK_EQ_INT(rk_ranker_predict(r, &x, 1, &p, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "beyond");
    rk_fvec_free(&x);
    rk_ranker_destroy(r);
    /* Trees need dense columns. */
    rk_trainset *sparse_only = NULL;
    CHECK_OK(rk_trainset_create(&sparse_only, 0, 8, 0));
    rk_fvec y = {0};
    CHECK_OK(rk_fvec_reset(&y, 0));
    CHECK_OK(rk_fvec_push(&y, 3, 1));
    CHECK_OK(rk_trainset_add(sparse_only, &y, 1, 1, 0, 0));
    CHECK_OK(rk_trainset_add(sparse_only, &y, 0, 1, 0, 1));
    small_opts(&o, RK_RANKER_GBDT);
    CHECK_EQ_INT(rk_ranker_train(&r, sparse_only, NULL, &o, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "no dense columns");
    rk_fvec_free(&y);
    rk_trainset_destroy(sparse_only);
    rk_trainset_destroy(tr);
    rk_trainset_destroy(other);
    rk_trainset_destroy(empty);
}

/* With RK_RANKER_WRITE_CORPUS=dir, writes the fuzz seeds of
 * fuzz/corpus/ranker/: a tiny ranker of each kind, a truncated and a
 * bit-flipped copy. Without it there is nothing to check. */
TEST(fuzz_seeds)
{
    const char *dir = getenv("RK_RANKER_WRITE_CORPUS");
    if (!dir) return;
    rk_trainset *tr = make_set(200, 11, 0, 0);
    CHECK(tr);
    rk_ranker_kind kinds[] = {RK_RANKER_GBDT, RK_RANKER_FTRL, RK_RANKER_FM};
    for (int k = 0; k < 3; k++) {
        rk_ranker_opts o;
        small_opts(&o, kinds[k]);
        o.gbdt.ntrees = 3;
        o.gbdt.max_depth = 2;
        o.fm.k = 2;
        o.calib = RK_CALIB_PLATT;
        rk_err err = {0};
        rk_ranker *r = NULL;
        CHECK_OK(rk_ranker_train(&r, tr, tr, &o, &err));
        rk_buf b;
        rk_buf_init(&b, 0);
        CHECK_OK(rk_ranker_save(r, &b, &err));
        for (int v = 0; v < 3; v++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s_%s.rkr", dir,
                     v == 0 ? "ok" : v == 1 ? "trunc" : "flip",
                     rk_ranker_kind_name(kinds[k]));
            size_t n = v == 1 ? b.len * 2 / 3 : b.len;
            if (v == 2) b.data[b.len / 2] ^= 0x10;
            FILE *f = fopen(path, "wb");
            CHECK(f && fwrite(b.data, 1, n, f) == n);
            if (f) fclose(f);
        }
        rk_buf_free(&b);
        rk_ranker_destroy(r);
    }
    rk_trainset_destroy(tr);
}

/* Online learning: a linear ranker trained on a few rows improves on a
 * later set as labelled examples arrive one by one; the clone it started
 * from is untouched; trees refuse. */
TEST(online_updates_learn)
{
    rk_trainset *tr = make_set(300, 1, 0, 0), *on = make_set(6000, 3, 0, 0),
                *va = make_set(1500, 2, 0, 0);
    CHECK(tr && on && va);
    rk_ranker_kind kinds[] = {RK_RANKER_FTRL, RK_RANKER_FM};
    for (int k = 0; k < 2; k++) {
        rk_ranker_opts o;
        small_opts(&o, kinds[k]);
        o.ftrl_train.epochs = 1;
        o.fm_train.epochs = 1;
        rk_err err = {0};
        rk_ranker *r = NULL, *c = NULL;
        CHECK_OK(rk_ranker_train(&r, tr, NULL, &o, &err));
        CHECK_OK(rk_ranker_clone(&c, r, &err));
        rk_ranker_eval e0, e1, e2;
        CHECK_OK(rk_ranker_evaluate(r, va, &e0, &err));
        for (size_t i = 0; i < rk_trainset_rows(on); i++) {
            rk_trow row;
            rk_trainset_get(on, i, &row);
            float pb = -1;
            CHECK_OK(rk_ranker_update(c, &row.x, row.label, 1.0f, &pb, &err));
            CHECK(pb >= 0 && pb <= 1);
        }
        CHECK_OK(rk_ranker_evaluate(c, va, &e1, &err));
        CHECK_OK(rk_ranker_evaluate(r, va, &e2, &err));
        double l0 = rk_ranker_eval_get(&e0, "logloss"), l1 = rk_ranker_eval_get(&e1, "logloss");
        if (!(l1 < l0)) fprintf(stderr, "  %s logloss %.4f -> %.4f\n",
                                rk_ranker_kind_name(kinds[k]), l0, l1);
        CHECK(l1 < l0);
        CHECK(rk_ranker_eval_get(&e2, "logloss") == l0);
        /* A bad example is refused with the model unchanged. */
        rk_trow row;
        rk_trainset_get(va, 0, &row);
        rk_fvec bad = row.x;
        bad.ndense = row.x.ndense + 1;
        CHECK(rk_ranker_update(c, &bad, 1, 1, NULL, &err) == RK_EINVAL);
        CHECK(rk_ranker_update(c, &row.x, 1, -1, NULL, &err) == RK_EINVAL);
        /* Forgetting keeps the predictions. */
        float p0, p1;
        CHECK_OK(rk_ranker_predict(c, &row.x, 1, &p0, &err));
        CHECK_OK(rk_ranker_forget(c, 0.25, &err));
        CHECK_OK(rk_ranker_predict(c, &row.x, 1, &p1, &err));
        CHECK(fabsf(p0 - p1) < 1e-5f);
        CHECK(rk_ranker_forget(c, 0, &err) == RK_EINVAL);
        CHECK(strstr(err.msg, "keep") != NULL);
        rk_ranker_destroy(r);
        rk_ranker_destroy(c);
    }
    rk_ranker_opts o;
    small_opts(&o, RK_RANKER_GBDT);
    rk_err err = {0};
    rk_ranker *g = NULL;
    CHECK_OK(rk_ranker_train(&g, tr, NULL, &o, &err));
    rk_trow row;
    rk_trainset_get(va, 0, &row);
    CHECK(rk_ranker_update(g, &row.x, 1, 1, NULL, &err) == RK_EINVAL);
    CHECK(strstr(err.msg, "online") != NULL);
    CHECK(rk_ranker_forget(g, 0.5, &err) == RK_EINVAL);
    rk_ranker_destroy(g);
    rk_trainset_destroy(tr);
    rk_trainset_destroy(on);
    rk_trainset_destroy(va);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, online_updates_learn, every_kind_learns_and_round_trips,
                 downsampling_is_corrected_and_calibrated,
                 rank_task_trains_lambdamart, bad_inputs_are_clear_errors,
                 fuzz_seeds);
}
