/*
 * eval_test.c — offline evaluation: metrics against hand-computed values,
 * the protocols' splits (deterministic, >= 5 positives, 80/20, no leaks),
 * the harness end to end on a fixture small enough to rank by hand, the
 * JSON report, publishing, allocation failures, and MovieLens-100k when the
 * shared data is present.
 */
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rk_io.h"
#include "rk_train.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-6)

/* ---- metrics ---------------------------------------------------------------- */

TEST(metrics_hand_computed)
{
    /* Ranking 5 3 9 1 7; relevant {1, 3, 8}: hits at positions 2 and 4. */
    const uint32_t ranked[] = {5, 3, 9, 1, 7};
    const uint32_t rel[] = {1, 3, 8};
    rk_metrics_at m;

    /* K = 5: recall 2 / min(5, 3) = 2/3.
     * DCG = 1/log2(3) + 1/log2(5) = 0.6309298 + 0.4306766 = 1.0616064;
     * IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309298; NDCG = 0.4981893.
     * AP = (1/2 + 2/4) / min(5, 3) = 1/3. */
    rk_metrics_at_k(ranked, 5, rel, 3, 3, 5, &m);
    CHECK(NEAR(m.recall, 0.6666667));
    CHECK(NEAR(m.ndcg, 0.4981893));
    CHECK(NEAR(m.map, 0.3333333));
    CHECK(m.hit == 1.0);

    /* K = 2: one hit at 2; recall 1 / min(2, 3) = 0.5; IDCG over two
     * positions = 1.6309298, NDCG = 0.6309298 / 1.6309298 = 0.3868528;
     * AP = (1/2) / 2 = 0.25. */
    rk_metrics_at_k(ranked, 5, rel, 3, 3, 2, &m);
    CHECK(NEAR(m.recall, 0.5));
    CHECK(NEAR(m.ndcg, 0.3868528));
    CHECK(NEAR(m.map, 0.25));
    CHECK(m.hit == 1.0);

    /* K = 1: item 5 is not relevant. */
    rk_metrics_at_k(ranked, 5, rel, 3, 3, 1, &m);
    CHECK(m.recall == 0 && m.ndcg == 0 && m.map == 0 && m.hit == 0);

    /* A fourth relevant item no ranking can contain (outside the
     * catalog): K = 5 normalises by 4. Recall 2/4; IDCG = 2.1309298 +
     * 1/log2(5) = 2.5616064, NDCG = 1.0616064 / 2.5616064 = 0.4144299;
     * AP = (1/2 + 2/4) / 4 = 0.25. */
    rk_metrics_at_k(ranked, 5, rel, 3, 4, 5, &m);
    CHECK(NEAR(m.recall, 0.5));
    CHECK(NEAR(m.ndcg, 0.4144299));
    CHECK(NEAR(m.map, 0.25));

    /* A list shorter than K: 3 1 (both relevant), K = 5. Recall 2/3;
     * NDCG = (1 + 0.6309298) / 2.1309298 = 0.7653606; AP = (1 + 1) / 3. */
    const uint32_t shortl[] = {3, 1};
    rk_metrics_at_k(shortl, 2, rel, 3, 3, 5, &m);
    CHECK(NEAR(m.recall, 0.6666667));
    CHECK(NEAR(m.ndcg, 0.7653606));
    CHECK(NEAR(m.map, 0.6666667));

    /* A perfect ranking scores 1 on everything. */
    const uint32_t perfect[] = {3, 8, 1, 0};
    rk_metrics_at_k(perfect, 4, rel, 3, 3, 3, &m);
    CHECK(NEAR(m.recall, 1) && NEAR(m.ndcg, 1) && NEAR(m.map, 1));
    /* No relevant items: zeros. */
    rk_metrics_at_k(perfect, 4, rel, 0, 0, 3, &m);
    CHECK(m.recall == 0 && m.ndcg == 0 && m.map == 0 && m.hit == 0);
}

TEST(coverage_and_popularity)
{
    /* Distinct ids below 10: {0, 1, 5, 9} -> 4 / 10; 12 is ignored. */
    const uint32_t ids[] = {0, 1, 1, 5, 9, 12};
    double c;
    CHECK_OK(rk_metrics_coverage(ids, 6, 10, &c));
    CHECK(NEAR(c, 0.4));
    CHECK_OK(rk_metrics_coverage(ids, 0, 10, &c));
    CHECK(c == 0);
    /* Popularity of 0, 1, 1, 5 = 10, 4, 4, 2 -> mean 5. */
    const float pop[] = {10, 4, 0, 0, 0, 2};
    CHECK(NEAR(rk_metrics_mean_popularity(ids, 4, pop), 5.0));
    CHECK(rk_metrics_mean_popularity(ids, 0, pop) == 0);
    rk_mem_fail_at(1, 0);
    CHECK(rk_metrics_coverage(ids, 6, 10, &c) == RK_ENOMEM);
}

/* ---- fixtures ------------------------------------------------------------------ */

/* The leave-one-out fixture of harness_loo_popularity (weights 1). */
static const rk_eval_event loo_events[] = {
    {0, 0, 1, 1, RK_EVAL_NO_REQUEST}, {0, 1, 2, 1, RK_EVAL_NO_REQUEST},
    {0, 2, 3, 1, RK_EVAL_NO_REQUEST}, {1, 0, 1, 1, RK_EVAL_NO_REQUEST},
    {1, 2, 2, 1, RK_EVAL_NO_REQUEST}, {1, 1, 3, 1, RK_EVAL_NO_REQUEST},
    {2, 0, 1, 1, RK_EVAL_NO_REQUEST}, {2, 3, 2, 1, RK_EVAL_NO_REQUEST},
    {3, 1, 1, 1, RK_EVAL_NO_REQUEST}, {3, 2, 2, 1, RK_EVAL_NO_REQUEST},
    {4, 3, 5, 1, RK_EVAL_NO_REQUEST},
};

/* nusers users; user u has 2 + (u * 7) % 14 items drawn from 60 items
 * with a per-user stride, so item counts vary, every item is popular
 * enough to stay in the catalog, and some users have fewer than 5. */
static rk_eval_data *synthetic(uint32_t nusers)
{
    rk_eval_event *ev = rk_malloc(sizeof *ev * nusers * 16);
    size_t n = 0;
    for (uint32_t u = 0; u < nusers; u++) {
        uint32_t len = 2 + (u * 7) % 14;
        for (uint32_t j = 0; j < len; j++)
            ev[n++] = (rk_eval_event){u, (u * 13 + j * (1 + u % 5)) % 60,
                                      1000 + u + 100 * j, 1,
                                      RK_EVAL_NO_REQUEST};
    }
    rk_eval_data *d = NULL;
    rk_err err = {0};
    if (rk_eval_data_from_events(&d, nusers, 60, ev, n, &err))
        fprintf(stderr, "  %s\n", err.msg);
    rk_free(ev);
    return d;
}

static int row_has(const rk_interactions *m, uint32_t u, uint32_t item)
{
    for (uint64_t k = m->user_ptr[u]; k < m->user_ptr[u + 1]; k++)
        if (m->items[k] == item) return 1;
    return 0;
}

/* ---- protocols -------------------------------------------------------------------- */

TEST(heldout_split_properties)
{
    rk_eval_data *d = synthetic(200);
    CHECK(d);
    const rk_interactions *all = rk_eval_data_matrix(d);
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    rk_err err = {0};
    uint32_t seen_as_test[200] = {0};
    for (uint32_t f = 0; f < o.folds; f++) {
        rk_eval_split *s, *again;
        CHECK_OK(rk_eval_split_make(d, &o, f, &s, &err));
        CHECK_OK(rk_eval_split_make(d, &o, f, &again, &err));
        /* Deterministic for a seed: the same split twice. */
        CHECK_EQ_INT(s->ncases, again->ncases);
        CHECK(memcmp(s->case_user, again->case_user,
                     sizeof(uint32_t) * s->ncases) == 0);
        CHECK(memcmp(s->scored_items, again->scored_items,
                     sizeof(uint32_t) * s->scored_ptr[s->ncases]) == 0);
        CHECK_EQ_INT(s->train->nnz, again->train->nnz);
        rk_eval_split_free(again);
        /* Every item of the fixture is in every fold's catalog, so the
         * sizes below are exact. */
        CHECK(s->scored_in_catalog == s->scored_all);
        for (uint32_t i = 1; i < s->train->nitems; i++)
            CHECK(s->catalog[i] > s->catalog[i - 1]);
        /* Training users: >= 5 positives, never a test user. */
        for (uint32_t r = 0; r < s->train->nusers; r++) {
            uint32_t u = s->train_users[r];
            CHECK(all->user_ptr[u + 1] - all->user_ptr[u] >= 5);
            for (uint32_t c = 0; c < s->ncases; c++) CHECK(s->case_user[c] != u);
        }
        for (uint32_t c = 0; c < s->ncases; c++) {
            uint32_t u = s->case_user[c];
            uint32_t n = (uint32_t)(all->user_ptr[u + 1] - all->user_ptr[u]);
            CHECK(n >= 5);
            seen_as_test[u]++;
            uint64_t fa = s->foldin_ptr[c], nf = s->foldin_ptr[c + 1] - fa;
            uint64_t sa = s->scored_ptr[c], ns = s->scored_ptr[c + 1] - sa;
            /* 80/20: floor(0.2 n) scored (at least 1), the rest folded in. */
            uint32_t want = (uint32_t)(n / 5) ? (uint32_t)(n / 5) : 1;
            CHECK_EQ_INT(ns, want);
            CHECK_EQ_INT(nf + ns, n);
            CHECK_EQ_INT(s->scored_total[c], ns);
            /* Scored and fold-in are disjoint, both the user's items. */
            for (uint64_t a = sa; a < sa + ns; a++) {
                uint32_t item = s->catalog[s->scored_items[a]];
                CHECK(row_has(all, u, item));
                for (uint64_t b = fa; b < fa + nf; b++)
                    CHECK(s->foldin_items[b] != s->scored_items[a]);
            }
        }
        rk_eval_split_free(s);
    }
    /* Each user with >= 5 positives is a test user in exactly one fold;
     * the others never. */
    for (uint32_t u = 0; u < 200; u++) {
        uint64_t n = all->user_ptr[u + 1] - all->user_ptr[u];
        CHECK_EQ_INT(seen_as_test[u], n >= 5 ? 1 : 0);
    }
    /* Another seed gives another split. */
    rk_eval_split *a, *b;
    CHECK_OK(rk_eval_split_make(d, &o, 0, &a, &err));
    o.seed = 7;
    CHECK_OK(rk_eval_split_make(d, &o, 0, &b, &err));
    CHECK(a->ncases != b->ncases ||
          memcmp(a->case_user, b->case_user, sizeof(uint32_t) * a->ncases) != 0);
    rk_eval_split_free(a);
    rk_eval_split_free(b);
    /* Bad options and indices are refused. */
    CHECK(rk_eval_split_make(d, &o, 5, &a, &err) == RK_EINVAL);
    o.folds = 1;
    CHECK(rk_eval_split_make(d, &o, 0, &a, &err) == RK_EINVAL);
    rk_eval_data_free(d);
}

TEST(heldout_restricts_to_training_items)
{
    /* Users 0..5 share items 0..5; user 6 alone also has item 9. With
     * folds = 7 every user is a test user once; when user 6 is tested,
     * item 9 is in no training row, so it can be neither scored nor
     * folded in. */
    rk_eval_event ev[64];
    size_t n = 0;
    for (uint32_t u = 0; u < 7; u++)
        for (uint32_t i = 0; i < 6; i++)
            ev[n++] = (rk_eval_event){u, i, i, 1, RK_EVAL_NO_REQUEST};
    ev[n++] = (rk_eval_event){6, 9, 9, 1, RK_EVAL_NO_REQUEST};
    rk_eval_data *d;
    rk_err err = {0};
    CHECK_OK(rk_eval_data_from_events(&d, 7, 10, ev, n, &err));
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    o.folds = 7;
    int found = 0;
    for (uint32_t f = 0; f < 7; f++) {
        rk_eval_split *s;
        CHECK_OK(rk_eval_split_make(d, &o, f, &s, &err));
        CHECK_EQ_INT(s->ncases, 1);
        /* Item 9 is in the catalog only while user 6 trains. */
        CHECK_EQ_INT(s->train->nitems, s->case_user[0] == 6 ? 6 : 7);
        if (s->case_user[0] == 6) {
            found = 1;
            CHECK(s->scored_all == 1);  /* floor(0.2 * 7) = 1 */
            for (uint64_t k = 0; k < s->foldin_ptr[1]; k++)
                CHECK(s->catalog[s->foldin_items[k]] != 9);
        }
        rk_eval_split_free(s);
    }
    CHECK(found);
    rk_eval_data_free(d);
}

TEST(temporal_split)
{
    /* Times: u0 rates 0,1 early and 2,3 late; u1 rates 0 early and 1 late
     * (item 1 late is new for u1); u2 only late (not in training). */
    const rk_eval_event ev[] = {
        {0, 0, 10, 1, RK_EVAL_NO_REQUEST}, {0, 1, 20, 1, RK_EVAL_NO_REQUEST},
        {0, 2, 100, 1, RK_EVAL_NO_REQUEST}, {0, 3, 110, 1, RK_EVAL_NO_REQUEST},
        {1, 0, 30, 1, RK_EVAL_NO_REQUEST}, {1, 1, 120, 1, RK_EVAL_NO_REQUEST},
        {1, 0, 130, 1, RK_EVAL_NO_REQUEST}, {2, 1, 140, 1, RK_EVAL_NO_REQUEST},
    };
    rk_eval_data *d;
    rk_err err = {0};
    CHECK_OK(rk_eval_data_from_events(&d, 3, 4, ev, 8, &err));
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    o.protocol = RK_EVAL_TEMPORAL;
    o.split_ts = 50;
    rk_eval_split *s;
    CHECK_OK(rk_eval_split_make(d, &o, 0, &s, &err));
    /* Training: u0 {0, 1}, u1 {0}; catalog {0, 1}. */
    CHECK_EQ_INT(s->train->nusers, 2);
    CHECK_EQ_INT(s->train->nitems, 2);
    CHECK_EQ_INT(s->train->nnz, 3);
    for (uint64_t k = 0; k < s->train->nnz; k++) CHECK(s->train->last_ts[k] < 50);
    /* Cases: u0 scores 2 and 3, outside the catalog -> dropped; u1 scores
     * item 1 (item 0 again is not new). */
    CHECK_EQ_INT(s->ncases, 1);
    CHECK_EQ_INT(s->case_user[0], 1);
    CHECK_EQ_INT(s->scored_ptr[1], 1);
    CHECK_EQ_INT(s->catalog[s->scored_items[0]], 1);
    CHECK_EQ_INT(s->foldin_ptr[1], 1);
    CHECK_EQ_INT(s->catalog[s->foldin_items[0]], 0);
    CHECK_EQ_INT(s->scored_all, 3);
    CHECK_EQ_INT(s->scored_in_catalog, 1);
    rk_eval_split_free(s);
    /* By quantile: times 10 20 30 100 110 120 130 140; floor(0.5 * 8) = 4
     * -> the 5th smallest, 110. */
    o.split_ts = INT64_MIN;
    o.split_quantile = 0.5;
    CHECK_OK(rk_eval_split_make(d, &o, 0, &s, &err));
    CHECK_EQ_INT(s->split_ts, 110);
    rk_eval_split_free(s);
    rk_eval_data_free(d);
}

TEST(impressions_split)
{
    /* Histories (no request): u0 {0, 1}, u1 {1}. Request 0 (t = 5): u0
     * clicks 2. Request 1 (t = 50): u1 clicks 0 and 3 (3 never in
     * training). Request 2 (t = 60): u0 clicks 1 again (already seen). */
    const rk_eval_event ev[] = {
        {0, 0, 1, 1, RK_EVAL_NO_REQUEST}, {0, 1, 1, 1, RK_EVAL_NO_REQUEST},
        {1, 1, 1, 1, RK_EVAL_NO_REQUEST}, {0, 2, 5, 1, 0},
        {1, 0, 50, 1, 1}, {1, 3, 50, 1, 1}, {0, 1, 60, 1, 2},
    };
    rk_eval_data *d;
    rk_err err = {0};
    CHECK_OK(rk_eval_data_from_events(&d, 2, 4, ev, 7, &err));
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    o.protocol = RK_EVAL_IMPRESSIONS;
    o.split_ts = 10;
    rk_eval_split *s;
    CHECK_OK(rk_eval_split_make(d, &o, 0, &s, &err));
    /* Training: histories + request 0; catalog {0, 1, 2}. */
    CHECK_EQ_INT(s->train->nitems, 3);
    CHECK_EQ_INT(s->train->nnz, 4);
    /* One case: request 1, item 0 listed, item 3 an unreachable miss
     * (impressions keep items outside the catalog by default). */
    CHECK_EQ_INT(s->ncases, 1);
    CHECK_EQ_INT(s->case_user[0], 1);
    CHECK_EQ_INT(s->scored_ptr[1], 1);
    CHECK_EQ_INT(s->catalog[s->scored_items[0]], 0);
    CHECK_EQ_INT(s->scored_total[0], 2);
    rk_eval_split_free(s);
    /* split_ts 0: every request is a case, histories only train. */
    o.split_ts = 0;
    CHECK_OK(rk_eval_split_make(d, &o, 0, &s, &err));
    CHECK_EQ_INT(s->ncases, 2);  /* request 2 re-clicks a seen item */
    CHECK_EQ_INT(s->train->nnz, 3);
    rk_eval_split_free(s);
    rk_eval_data_free(d);
}

/* ---- models and the harness --------------------------------------------------------- */

TEST(popularity_ranks_by_count)
{
    /* Item counts by users: item 2 three, item 0 two, item 1 one. */
    const uint32_t users[] = {0, 1, 2, 0, 1, 2, 2};
    const uint32_t items[] = {2, 2, 2, 0, 0, 1, 1};
    const float w[] = {1, 1, 1, 1, 5, 1, 1};
    rk_interactions *m;
    rk_err err = {0};
    CHECK_OK(rk_interactions_from_triplets(&m, 3, 4, users, items, w, NULL, 7,
                                           &err));
    rk_eval_model *p;
    CHECK_OK(rk_eval_popularity_create(&p, &err));
    float sc[4];
    CHECK(rk_eval_model_score(p, NULL, NULL, 0, sc, &err) == RK_ESTATE);
    CHECK_OK(rk_eval_model_train(p, m, NULL, &err));
    /* Counts users, not weights: user 1's weight 5 on item 0 counts once;
     * user 2's two events on item 1 are one pair. */
    CHECK_OK(rk_eval_model_score(p, items, w, 2, sc, &err));
    CHECK(sc[0] == 2 && sc[1] == 1 && sc[2] == 3 && sc[3] == 0);
    CHECK_STR(rk_eval_model_kind(p), "popularity");
    rk_eval_model_destroy(p);
    rk_interactions_free(m);
}

TEST(harness_loo_popularity)
{
    /*
     * Leave-last-one-out on loo_events: held out are u0:2, u1:1, u2:3,
     * u3:2 (u4 has one item and only trains). Training pairs u0{0,1}
     * u1{0,2} u2{0} u3{1} u4{3} give counts 0:3 1:2 2:1 3:1. Rankings
     * without the fold-in (ties to the lower id):
     *   u0 [2 3]     held 2 -> rank 1
     *   u1 [1 3]     held 1 -> rank 1
     *   u2 [1 2 3]   held 3 -> rank 3
     *   u3 [0 2 3]   held 2 -> rank 2
     * K=1: recall = ndcg = map = hit = 2/4.
     * K=2: recall 3/4; ndcg (1 + 1 + 0 + 1/log2 3) / 4 = 0.6577324;
     *      map (1 + 1 + 0 + 1/2) / 4 = 0.625.
     * K=3: recall 1; ndcg (1 + 1 + 1/2 + 1/log2 3) / 4 = 0.7827324;
     *      map (1 + 1 + 1/3 + 1/2) / 4 = 0.7083333.
     * Coverage K=1: tops 2 1 1 0 -> 3 of 4 items; K=2: all 4.
     * Mean popularity K=1: (1 + 2 + 2 + 3) / 4 = 2; K=2: 12 / 8 = 1.5.
     */
    rk_eval_data *d;
    rk_err err = {0};
    CHECK_OK(rk_eval_data_from_events(&d, 5, 4, loo_events, 11, &err));
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    o.protocol = RK_EVAL_LOO;
    o.ks[0] = 1;
    o.ks[1] = 2;
    o.ks[2] = 3;
    o.threads = 2;
    rk_eval_model *p;
    CHECK_OK(rk_eval_popularity_create(&p, &err));
    rk_eval_report *r;
    CHECK_OK(rk_eval_run(d, &o, &p, 1, &r, &err));
    CHECK_EQ_INT(rk_eval_report_nsplits(r), 1);
    rk_eval_metrics m, sd;
    CHECK_OK(rk_eval_report_get(r, 0, 0, -1, &m, &sd));
    CHECK(NEAR(m.recall, 0.5) && NEAR(m.ndcg, 0.5) && NEAR(m.map, 0.5) &&
          NEAR(m.hit, 0.5));
    CHECK(NEAR(m.coverage, 0.75) && NEAR(m.popularity, 2.0));
    CHECK(sd.recall == 0);
    CHECK_OK(rk_eval_report_get(r, 0, 1, 0, &m, NULL));
    CHECK(NEAR(m.recall, 0.75) && NEAR(m.ndcg, 0.6577324) &&
          NEAR(m.map, 0.625) && NEAR(m.hit, 0.75));
    CHECK(NEAR(m.coverage, 1.0) && NEAR(m.popularity, 1.5));
    CHECK_OK(rk_eval_report_get(r, 0, 2, -1, &m, NULL));
    CHECK(NEAR(m.recall, 1) && NEAR(m.ndcg, 0.7827324) &&
          NEAR(m.map, 0.7083333) && NEAR(m.hit, 1));
    CHECK(rk_eval_report_get(r, 1, 0, -1, &m, NULL) == RK_EINVAL);
    CHECK(rk_eval_report_get(r, 0, 3, -1, &m, NULL) == RK_EINVAL);
    CHECK(rk_eval_report_get(r, 0, 0, 1, &m, NULL) == RK_EINVAL);
    rk_eval_report_free(r);
    rk_eval_model_destroy(p);
    rk_eval_data_free(d);
}

/* Metrics of every model at every cutoff, flattened. */
static void all_metrics(const rk_eval_report *r, size_t nk, double *out)
{
    for (size_t m = 0; m < rk_eval_report_nmodels(r); m++)
        for (size_t k = 0; k < nk; k++) {
            rk_eval_metrics x;
            rk_eval_report_get(r, m, k, -1, &x, NULL);
            memcpy(out, &x, sizeof x);
            out += sizeof x / sizeof(double);
        }
}

TEST(harness_threads_do_not_change_results)
{
    rk_eval_data *d = synthetic(300);
    CHECK(d);
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    o.ks[0] = 5;
    o.ks[1] = 10;
    o.nks = 2;
    rk_err err = {0};
    rk_eval_model *m[2];
    CHECK_OK(rk_eval_popularity_create(&m[0], &err));
    rk_ease_opts eo;
    rk_ease_opts_default(&eo);
    eo.lambda = 10;
    CHECK_OK(rk_eval_ease_create(&m[1], &eo, &err));
    double a[2 * 2 * 6], b[2 * 2 * 6];
    rk_eval_report *r;
    o.threads = 1;
    CHECK_OK(rk_eval_run(d, &o, m, 2, &r, &err));
    all_metrics(r, 2, a);
    rk_eval_report_free(r);
    o.threads = 3;
    CHECK_OK(rk_eval_run(d, &o, m, 2, &r, &err));
    all_metrics(r, 2, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* A personalised model beats popularity on this structured data. */
    rk_eval_metrics pop, ease;
    rk_eval_report_get(r, 0, 1, -1, &pop, NULL);
    rk_eval_report_get(r, 1, 1, -1, &ease, NULL);
    CHECK(ease.recall > pop.recall);
    rk_eval_report_free(r);
    rk_eval_model_destroy(m[0]);
    rk_eval_model_destroy(m[1]);
    rk_eval_data_free(d);
}

TEST(report_json_is_valid)
{
    rk_eval_data *d = synthetic(120);
    CHECK(d);
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    o.folds = 3;
    o.data_name = "synthetic \"fixture\"";
    rk_err err = {0};
    rk_eval_model *m[2];
    CHECK_OK(rk_eval_popularity_create(&m[0], &err));
    rk_ials_opts io;
    rk_ials_opts_default(&io);
    io.factors = 8;
    io.iterations = 3;
    CHECK_OK(rk_eval_ials_create(&m[1], &io, &err));
    rk_eval_report *r;
    CHECK_OK(rk_eval_run(d, &o, m, 2, &r, &err));
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_eval_report_json(r, &b));
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    if (!j) fprintf(stderr, "  json: %s at %d\n", je.text, je.position);
    CHECK(j);
    int ok = json_integer_value(json_object_get(j, "rankd_eval")) == 1;
    json_t *proto = json_object_get(j, "protocol");
    ok &= strcmp(json_string_value(json_object_get(proto, "name")), "heldout") == 0;
    ok &= json_integer_value(json_object_get(proto, "folds")) == 3;
    ok &= json_integer_value(json_object_get(proto, "seed")) == 42;
    ok &= strcmp(json_string_value(json_object_get(
                     json_object_get(j, "data"), "source")),
                 "synthetic \"fixture\"") == 0;
    json_t *models = json_object_get(j, "models");
    ok &= json_array_size(models) == 2;
    json_t *ials = json_array_get(models, 1);
    ok &= json_integer_value(json_object_get(json_object_get(ials, "params"),
                                             "factors")) == 8;
    ok &= json_array_size(json_object_get(ials, "splits")) == 3;
    json_t *mean20 = json_object_get(json_object_get(ials, "mean"), "20");
    ok &= json_is_number(json_object_get(mean20, "recall"));
    ok &= json_is_number(json_object_get(
        json_object_get(json_object_get(ials, "std"), "100"), "ndcg"));
    ok &= json_is_number(json_object_get(j, "wall_seconds"));
    json_decref(j);
    rk_buf_free(&b);
    /* The table prints the same numbers. */
    FILE *f = tmpfile();
    rk_eval_report_table(r, f);
    long len = ftell(f);
    fclose(f);
    rk_eval_report_free(r);
    rk_eval_model_destroy(m[0]);
    rk_eval_model_destroy(m[1]);
    rk_eval_data_free(d);
    CHECK(ok);
    CHECK(len > 500);
}

TEST(allocation_failures)
{
    /* Fail the 1st, 2nd, ... allocation of a whole evaluation until it
     * succeeds: every failure must be a clean RK_ENOMEM without leaks. */
    int done = 0;
    for (uint64_t n = 1; n < 5000 && !done; n++) {
        rk_err err = {0};
        rk_eval_data *d = NULL;
        rk_eval_model *p = NULL;
        rk_eval_report *r = NULL;
        rk_mem_fail_at(n, 0);
        int rc = rk_eval_data_from_events(&d, 5, 4, loo_events, 11, &err);
        if (!rc) rc = rk_eval_popularity_create(&p, &err);
        if (!rc) {
            rk_eval_opts o;
            rk_eval_opts_default(&o);
            o.protocol = RK_EVAL_LOO;
            o.threads = 1;
            rc = rk_eval_run(d, &o, &p, 1, &r, &err);
        }
        rk_buf b;
        rk_buf_init(&b, 0);
        if (!rc) rc = rk_eval_report_json(r, &b);
        rk_mem_fail_at(0, 0);
        if (rc && rc != RK_ENOMEM) {
            fprintf(stderr, "  allocation %llu: %s (%s)\n",
                    (unsigned long long)n, rk_errname(rc), err.msg);
        }
        CHECK(rc == 0 || rc == RK_ENOMEM);
        done = rc == 0;
        rk_buf_free(&b);
        rk_eval_report_free(r);
        rk_eval_model_destroy(p);
        rk_eval_data_free(d);
    }
    CHECK(done);
}

TEST(publish_versions)
{
    const char *dir = rk_test_tmpdir("eval-publish");
    char models[600], path[700], link[64];
    snprintf(models, sizeof models, "%s/models", dir);
    rk_interactions *m;
    rk_err err = {0};
    const uint32_t users[] = {0, 1}, items[] = {1, 1};
    const float w[] = {1, 1};
    CHECK_OK(rk_interactions_from_triplets(&m, 2, 3, users, items, w, NULL, 2,
                                           &err));
    rk_eval_model *p;
    CHECK_OK(rk_eval_popularity_create(&p, &err));
    /* Untrained: nothing is published. */
    CHECK(rk_train_publish(p, models, "{}", 2, NULL, &err) == RK_ESTATE);
    CHECK_OK(rk_eval_model_train(p, m, NULL, &err));
    uint32_t v = 0;
    for (uint32_t want = 1; want <= 3; want++) {
        CHECK_OK(rk_train_publish(p, models, "{\"x\":1}", 2, &v, &err));
        CHECK_EQ_INT(v, want);
    }
    snprintf(path, sizeof path, "%s/popularity/current", models);
    ssize_t n = readlink(path, link, sizeof link - 1);
    CHECK(n > 0);
    link[n] = '\0';
    CHECK_STR(link, "3");
    struct stat st;
    snprintf(path, sizeof path, "%s/popularity/3/popularity.bin", models);
    CHECK(stat(path, &st) == 0 && st.st_size == 16 + 3 * 4 + 8);
    snprintf(path, sizeof path, "%s/popularity/current/meta.json", models);
    CHECK(stat(path, &st) == 0);
    /* keep = 2: version 1 is gone, 2 stays. */
    snprintf(path, sizeof path, "%s/popularity/1", models);
    CHECK(stat(path, &st) != 0);
    snprintf(path, sizeof path, "%s/popularity/2", models);
    CHECK(stat(path, &st) == 0);
    /* No temporary directory is left behind. */
    snprintf(path, sizeof path, "%s/popularity/.tmp-3", models);
    CHECK(stat(path, &st) != 0);
    rk_eval_model_destroy(p);
    rk_interactions_free(m);
    rk_test_rmdir(dir);
}

/* ---- MovieLens-100k -------------------------------------------------------------------- */

TEST(movielens_100k_heldout)
{
    const char *data = rk_test_shared_data();
    if (!data) {
        printf("skip: ../shared/data not found\n");
        return;
    }
    if (SANITIZED || getenv("RK_SANITIZE")) {
        printf("skip: MovieLens-100k evaluation under sanitizers\n");
        return;
    }
    const char *dir = rk_test_tmpdir("eval-ml100k");
    char path[1024];
    rk_err err = {0};
    rk_store_opts so;
    rk_store_opts_default(&so);
    so.path = dir;
    rk_store *s;
    CHECK_OK(rk_store_open(&s, &so, NULL, &err));
    snprintf(path, sizeof path, "%s/movielens-100k/u.data", data);
    CHECK_OK(rk_import_file(s, path, NULL, NULL, &err));
    rk_eval_data *d;
    CHECK_OK(rk_eval_data_from_store(&d, s, NULL, &err));
    rk_store_close(s);
    /* Ratings >= 4 of 943 users on 1682 items. */
    CHECK_EQ_INT(rk_eval_data_nusers(d), 943);
    CHECK_EQ_INT(rk_eval_data_matrix(d)->nnz, 55375);
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    rk_eval_model *m[2];
    CHECK_OK(rk_eval_popularity_create(&m[0], &err));
    CHECK_OK(rk_eval_ease_create(&m[1], NULL, &err));
    rk_eval_report *r;
    CHECK_OK(rk_eval_run(d, &o, m, 2, &r, &err));
    rk_eval_metrics pop20, ease20, ease100;
    rk_eval_report_get(r, 0, 0, -1, &pop20, NULL);
    rk_eval_report_get(r, 1, 0, -1, &ease20, NULL);
    rk_eval_report_get(r, 1, 2, -1, &ease100, NULL);
    printf("  popularity Recall@20 %.4f; EASE Recall@20 %.4f, NDCG@100 %.4f\n",
           pop20.recall, ease20.recall, ease100.ndcg);
    rk_eval_report_free(r);
    rk_eval_model_destroy(m[0]);
    rk_eval_model_destroy(m[1]);
    rk_eval_data_free(d);
    rk_test_rmdir(dir);
    /* docs/retrieval.md: popularity 0.213, EASE 0.405 / 0.458. */
    CHECK(pop20.recall > 0.18 && pop20.recall < 0.25);
    CHECK(ease20.recall > 0.37 && ease20.recall < 0.44);
    CHECK(ease100.ndcg > 0.42 && ease100.ndcg < 0.50);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, metrics_hand_computed, coverage_and_popularity,
                 heldout_split_properties, heldout_restricts_to_training_items,
                 temporal_split, impressions_split, popularity_ranks_by_count,
                 harness_loo_popularity, harness_threads_do_not_change_results,
                 report_json_is_valid, allocation_failures, publish_versions,
                 movielens_100k_heldout);
}
