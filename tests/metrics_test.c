/*
 * metrics_test.c — the ranking-model metrics (rk_metrics_auc ... gauc)
 * against values computed by hand on tiny fixtures and against sklearn
 * and XGBoost on larger ones. The reference numbers were produced once
 * with /usr/bin/python3 (sklearn 1.2.1, xgboost 1.7.4) by the script
 * quoted next to each fixture and are hard-coded here, so the test needs
 * no Python.
 */
#include "rk_train.h"
#include "test.h"

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) < (tol))

/* ---- hand-computed --------------------------------------------------------- */

TEST(auc_hand)
{
    /* Pairs (positive, negative): 0.9 beats 0.8 and 0.3; 0.8 ties 0.8
     * (one half) and beats 0.3: 3.5 / 4. */
    const float s[] = {0.9f, 0.8f, 0.8f, 0.3f}, y[] = {1, 0, 1, 0};
    double v;
    rk_err err = {0};
    CHECK_OK(rk_metrics_auc(s, y, NULL, 4, &v, &err));
    CHECK(NEAR(v, 0.875, 1e-12));
    /* Weighting the 0.3 negative 3 times: pairs weigh 1*1 (win), 1*3
     * (win), 1*1 (tie), 1*3 (win) of 8: 7.5 / 8. */
    const float w[] = {1, 1, 1, 3};
    CHECK_OK(rk_metrics_auc(s, y, w, 4, &v, &err));
    CHECK(NEAR(v, 0.9375, 1e-12));
    /* Scores need not be probabilities for AUC; labels > 0 are
     * positive. */
    const float m[] = {9, 5, 5, -7}, g[] = {3, 0, 2, 0};
    CHECK_OK(rk_metrics_auc(m, g, NULL, 4, &v, &err));
    CHECK(NEAR(v, 0.875, 1e-12));
    /* One class only: undefined. */
    const float ones[] = {1, 1, 1, 1};
    CHECK_OK(rk_metrics_auc(s, ones, NULL, 4, &v, &err));
    CHECK(isnan(v));
    CHECK_OK(rk_metrics_auc(NULL, NULL, NULL, 0, &v, &err));
    CHECK(isnan(v));
    /* A perfect and a reversed ranking. */
    const float yp[] = {1, 1, 0, 0}, sp[] = {4, 3, 2, 1};
    CHECK_OK(rk_metrics_auc(sp, yp, NULL, 4, &v, &err));
    CHECK(v == 1.0);
    const float sr[] = {1, 2, 3, 4};
    CHECK_OK(rk_metrics_auc(sr, yp, NULL, 4, &v, &err));
    CHECK(v == 0.0);
}

TEST(logloss_ne_calibration_hand)
{
    /* (-ln 0.8 - ln 0.6) / 2 = (0.2231435513 + 0.5108256238) / 2. */
    const float p[] = {0.8f, 0.4f}, y[] = {1, 0};
    rk_cls_metrics m;
    rk_err err = {0};
    CHECK_OK(rk_metrics_cls(p, y, NULL, 2, &m, &err));
    CHECK(NEAR(m.logloss, 0.3669845875, 1e-7));
    /* Base rate 1/2: entropy ln 2, NE = 0.3669845875 / 0.6931471806. */
    CHECK(NEAR(m.ne, 0.5294468, 1e-6));
    /* (0.8 + 0.4) / 1. */
    CHECK(NEAR(m.calibration, 1.2, 1e-6));
    CHECK(NEAR(m.auc, 1.0, 1e-12));
    CHECK(NEAR(m.pr_auc, 1.0, 1e-12));
    CHECK(m.rows == 2 && m.weight == 2 && m.positive_weight == 1);
    double v;
    CHECK_OK(rk_metrics_logloss(p, y, NULL, 2, &v, &err));
    CHECK(v == m.logloss);
    CHECK_OK(rk_metrics_ne(p, y, NULL, 2, &v, &err));
    CHECK(v == m.ne);
    CHECK_OK(rk_metrics_calibration(p, y, NULL, 2, &v, &err));
    CHECK(v == m.calibration);
    /* A certain and wrong prediction is clamped: -ln(1e-15) = 34.5388. */
    const float p0[] = {0.0f}, y1[] = {1};
    CHECK_OK(rk_metrics_logloss(p0, y1, NULL, 1, &v, &err));
    CHECK(NEAR(v, 34.538776394910684, 1e-9));
    /* Soft labels: y = 0.25, p = 0.25: the entropy of 0.25 both ways. */
    const float ps[] = {0.25f}, ys[] = {0.25f};
    CHECK_OK(rk_metrics_cls(ps, ys, NULL, 1, &m, &err));
    CHECK(NEAR(m.logloss, 0.5623351446, 1e-9));
    CHECK(NEAR(m.ne, 1.0, 1e-12));
    CHECK(NEAR(m.calibration, 1.0, 1e-7));
    CHECK(isnan(m.auc));
    /* No positives: NE and calibration undefined. */
    const float yz[] = {0, 0};
    CHECK_OK(rk_metrics_cls(p, yz, NULL, 2, &m, &err));
    CHECK(isnan(m.ne) && isnan(m.calibration) && isnan(m.auc) &&
          isnan(m.pr_auc) && !isnan(m.logloss));
}

TEST(pr_auc_hand)
{
    /* Ranked: + - + -. Thresholds: after row 1 recall 1/2 precision 1,
     * after row 3 recall 1 precision 2/3: AP = 0.5 * 1 + 0.5 * 2/3. */
    const float s[] = {4, 3, 2, 1}, y[] = {1, 0, 1, 0};
    double v;
    rk_err err = {0};
    CHECK_OK(rk_metrics_pr_auc(s, y, NULL, 4, &v, &err));
    CHECK(NEAR(v, 0.8333333333, 1e-9));
    /* The top two tied: one threshold holding + and -: recall 1/2 at
     * precision 1/2, then recall 1 at 2/3. */
    const float t[] = {4, 4, 2, 1};
    CHECK_OK(rk_metrics_pr_auc(t, y, NULL, 4, &v, &err));
    CHECK(NEAR(v, 0.5 * 0.5 + 0.5 * 2.0 / 3.0, 1e-12));
}

TEST(ndcg_map_hand)
{
    /* One query ranked 3 2 1 with relevance 0 2 1:
     * DCG = 0 + 3 / log2 3 + 1 / log2 4 = 1.8927893 + 0.5;
     * IDCG = 3 + 1 / log2 3 = 3.6309298; NDCG = 0.6590018.
     * @2: 1.8927893 / 3.6309298 = 0.5212960. @1: 0 / 3. */
    const float s[] = {3, 2, 1}, rel[] = {0, 2, 1};
    double v;
    size_t ng;
    rk_err err = {0};
    CHECK_OK(rk_metrics_ndcg(s, rel, NULL, 3, 0, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(NEAR(v, 0.6590018, 1e-6) && ng == 1);
    CHECK_OK(rk_metrics_ndcg(s, rel, NULL, 3, 2, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(NEAR(v, 0.5212960, 1e-6));
    CHECK_OK(rk_metrics_ndcg(s, rel, NULL, 3, 1, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(v == 0.0);
    /* MAP: relevant at ranks 2 and 3: (1/2 + 2/3) / 2; @2: (1/2) / 2. */
    CHECK_OK(rk_metrics_map(s, rel, NULL, 3, 0, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(NEAR(v, 0.5833333333, 1e-9));
    CHECK_OK(rk_metrics_map(s, rel, NULL, 3, 2, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(NEAR(v, 0.25, 1e-12));

    /* Ties keep row order: the irrelevant row 0 ranks first. */
    const float ts[] = {1, 1}, trel[] = {0, 1};
    CHECK_OK(rk_metrics_ndcg(ts, trel, NULL, 2, 0, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(NEAR(v, 0.6309298, 1e-6));

    /* Two queries, interleaved rows; query 9 has no relevant row. */
    const float s2[] = {3, 5, 2, 4, 1};
    const float r2[] = {0, 0, 2, 0, 1};
    const uint64_t g2[] = {7, 9, 7, 9, 7};
    CHECK_OK(rk_metrics_ndcg(s2, r2, g2, 5, 0, RK_EMPTY_ONE, &v, &ng, &err));
    CHECK(NEAR(v, (0.6590018 + 1) / 2, 1e-6) && ng == 2);
    CHECK_OK(rk_metrics_ndcg(s2, r2, g2, 5, 0, RK_EMPTY_ZERO, &v, &ng, &err));
    CHECK(NEAR(v, 0.6590018 / 2, 1e-6) && ng == 2);
    CHECK_OK(rk_metrics_ndcg(s2, r2, g2, 5, 0, RK_EMPTY_SKIP, &v, &ng, &err));
    CHECK(NEAR(v, 0.6590018, 1e-6) && ng == 1);
    CHECK_OK(rk_metrics_map(s2, r2, g2, 5, 0, RK_EMPTY_SKIP, &v, &ng, &err));
    CHECK(NEAR(v, 0.5833333333, 1e-9) && ng == 1);
    /* Only empty queries, skipped: nothing to average. */
    const uint64_t g9[] = {9, 9};
    CHECK_OK(rk_metrics_map(s2 + 1, r2 + 1, g9, 1, 0, RK_EMPTY_SKIP, &v, &ng,
                            &err));
    CHECK(isnan(v) && ng == 0);
}

TEST(gauc_hand)
{
    /* User 1: AUC 1 over 2 rows; user 2: AUC 0 over 3 rows; user 3 has
     * positives only and is left out. (2 * 1 + 3 * 0) / 5 = 0.4. */
    const float s[] = {0.9f, 0.2f, 0.1f, 0.8f, 0.5f, 0.5f};
    const float y[] = {1, 1, 0, 0, 0, 1};
    const uint64_t g[] = {1, 2, 1, 2, 2, 3};
    double v;
    size_t ng;
    rk_err err = {0};
    CHECK_OK(rk_metrics_gauc(s, y, NULL, g, 6, &v, &ng, &err));
    CHECK(NEAR(v, 0.4, 1e-12) && ng == 2);
    /* Weighted: user 1's rows weigh 3 each: (6 * 1 + 3 * 0) / 9. */
    const float w[] = {3, 1, 3, 1, 1, 1};
    CHECK_OK(rk_metrics_gauc(s, y, w, g, 6, &v, &ng, &err));
    CHECK(NEAR(v, 6.0 / 9.0, 1e-12));
    /* Nobody has both classes. */
    const float y1[] = {1, 1, 1, 1, 1, 1};
    CHECK_OK(rk_metrics_gauc(s, y1, NULL, g, 6, &v, &ng, &err));
    CHECK(isnan(v) && ng == 0);
}

TEST(bad_input)
{
    const float s[] = {0.5f, NAN}, y[] = {1, 0}, neg[] = {1, -1};
    const float big[] = {0.5f, 1.5f}, half[] = {0.5f, 64};
    double v;
    rk_err err = {0};
    CHECK(rk_metrics_auc(s, y, NULL, 2, &v, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "row 1");
    CHECK(rk_metrics_auc(y, y, neg, 2, &v, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "weight");
    CHECK(rk_metrics_logloss(big, y, NULL, 2, &v, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "not a probability");
    CHECK(rk_metrics_logloss(y, big, NULL, 2, &v, &err) == RK_EINVAL);
    CHECK(rk_metrics_ndcg(y, half, NULL, 2, 0, RK_EMPTY_ONE, &v, NULL, &err) ==
          RK_EINVAL);
    CHECK(rk_metrics_ndcg(y, y, NULL, 2, 0, (rk_empty_query)7, &v, NULL,
                          &err) == RK_EINVAL);
    /* Logits are fine for AUC but not for log loss. */
    CHECK_OK(rk_metrics_auc(big, y, NULL, 2, &v, &err));
}

/* ---- against sklearn and XGBoost ------------------------------------------------ */

/* Fixture A:
 *   s = f32([0.9, 0.8, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.4, 0.3, 0.2, 0.1])
 *   y = [1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0]
 *   w = f32([1, 2, 1, 0.5, 1, 1, 3, 1, 2, 1, 0.25, 1])
 *   roc_auc_score(y, s), roc_auc_score(y, s, sample_weight=w)
 *   average_precision_score(...), log_loss(...)     (same two forms)
 * with f32 = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64),
 * so sklearn sees exactly the floats rankd sees. */
TEST(sklearn_fixture_a)
{
    const float s[] = {0.9f, 0.8f, 0.8f, 0.7f, 0.6f, 0.55f,
                       0.5f, 0.4f, 0.4f, 0.3f, 0.2f, 0.1f};
    const float y[] = {1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0};
    const float w[] = {1, 2, 1, 0.5f, 1, 1, 3, 1, 2, 1, 0.25f, 1};
    rk_cls_metrics m;
    rk_err err = {0};
    CHECK_OK(rk_metrics_cls(s, y, NULL, 12, &m, &err));
    CHECK(NEAR(m.auc, 0.8, 1e-12));
    CHECK(NEAR(m.pr_auc, 0.7277777777777779, 1e-12));
    CHECK(NEAR(m.logloss, 0.5511822788903243, 1e-9));
    CHECK_OK(rk_metrics_cls(s, y, w, 12, &m, &err));
    CHECK(NEAR(m.auc, 0.7296037296037295, 1e-12));
    CHECK(NEAR(m.pr_auc, 0.7109533201840894, 1e-12));
    CHECK(NEAR(m.logloss, 0.5962183603000599, 1e-9));
}

/* Fixture B, 500 rows made by formulas (same in C and numpy):
 *   i = np.arange(500)
 *   s = f32(((i * 7919) % 200) / 200.0)            # many ties, some 0
 *   y = ((((i * 7919) % 200) + (i * 13) % 90) > 150).astype(float)
 *   w = f32(1 + (i % 5) * 0.25)
 *   g = (i * 17) % 40                               # 40 interleaved users
 *   rel = np.minimum(4, ((i * 7919) % 200) // 50 + (i % 3 == 0)); rel[g == 39] = 0
 * sklearn: roc_auc_score, average_precision_score, log_loss(eps=1e-15),
 * each without and with sample_weight=w; NE = weighted log loss / the
 * entropy of np.average(y, weights=w); calibration sum(w s) / sum(w y).
 * GAUC: sum over users with both classes of (sum w | rows) * roc_auc_score
 * of the user's rows, divided by the sum of those weights.
 * XGBoost: rows stably sorted by g, DMatrix(label=rel, base_margin=s),
 * set_group(counts), xgb.train({"objective": "rank:ndcg", "eval_metric":
 * m}, d, num_boost_round=0).eval(d) for m in ndcg@5, ndcg@5-, ndcg,
 * ndcg@3, map@5, map, map@3-. */
#define NB 500
static float bs[NB], by[NB], bw[NB], brel[NB];
static uint64_t bg[NB];

static void fixture_b(void)
{
    for (int i = 0; i < NB; i++) {
        int r = (i * 7919) % 200;
        bs[i] = (float)(r / 200.0);
        by[i] = (r + (i * 13) % 90) > 150 ? 1.0f : 0.0f;
        bw[i] = (float)(1 + (i % 5) * 0.25);
        bg[i] = (uint64_t)((i * 17) % 40);
        int rel = r / 50 + (i % 3 == 0);
        brel[i] = bg[i] == 39 ? 0.0f : (float)(rel > 4 ? 4 : rel);
    }
}

TEST(sklearn_fixture_b)
{
    fixture_b();
    rk_cls_metrics m;
    rk_err err = {0};
    CHECK_OK(rk_metrics_cls(bs, by, NULL, NB, &m, &err));
    CHECK(NEAR(m.auc, 0.9631479720910746, 1e-12));
    CHECK(NEAR(m.pr_auc, 0.9585900898984011, 1e-12));
    CHECK(NEAR(m.logloss, 0.34746987027609794, 1e-9));
    CHECK_OK(rk_metrics_cls(bs, by, bw, NB, &m, &err));
    CHECK(NEAR(m.auc, 0.965389024103007, 1e-12));
    CHECK(NEAR(m.pr_auc, 0.9601279576459009, 1e-12));
    CHECK(NEAR(m.logloss, 0.34451121003205193, 1e-9));
    CHECK(NEAR(m.ne, 0.5004028988227572, 1e-9));
    CHECK(NEAR(m.calibration, 1.0955719555669714, 1e-9));
    double v;
    size_t ng;
    CHECK_OK(rk_metrics_gauc(bs, by, NULL, bg, NB, &v, &ng, &err));
    CHECK(NEAR(v, 0.9588813492063493, 1e-12) && ng == 40);
    CHECK_OK(rk_metrics_gauc(bs, by, bw, bg, NB, &v, &ng, &err));
    CHECK(NEAR(v, 0.9611574735449735, 1e-12));
}

TEST(xgboost_fixture_b)
{
    fixture_b();
    static const struct {
        int map;
        uint32_t k;
        rk_empty_query empty;
        double want;   /* XGBoost's printed value */
    } cases[] = {
        {0, 5, RK_EMPTY_ONE, 0.90437945252989171},   /* ndcg@5 */
        {0, 5, RK_EMPTY_ZERO, 0.87937945252989169},  /* ndcg@5- */
        {0, 0, RK_EMPTY_ONE, 0.93301847509957947},   /* ndcg */
        {0, 3, RK_EMPTY_ONE, 0.88174851662288545},   /* ndcg@3 */
        {1, 5, RK_EMPTY_ONE, 0.50220959595959580},   /* map@5 */
        {1, 0, RK_EMPTY_ONE, 0.98952545891608390},   /* map */
        {1, 3, RK_EMPTY_ZERO, 0.28632575757575751},  /* map@3- */
    };
    rk_err err = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double v;
        size_t ng;
        int rc = cases[c].map
                     ? rk_metrics_map(bs, brel, bg, NB, cases[c].k,
                                      cases[c].empty, &v, &ng, &err)
                     : rk_metrics_ndcg(bs, brel, bg, NB, cases[c].k,
                                       cases[c].empty, &v, &ng, &err);
        CHECK_OK(rc);
        if (!NEAR(v, cases[c].want, 1e-6))
            fprintf(stderr, "  case %zu: %.17g, XGBoost %.17g\n", c, v,
                    cases[c].want);
        CHECK(NEAR(v, cases[c].want, 1e-6));
        CHECK_EQ_INT(ng, 40);
    }
}

/* Rows in any order give the same results: the metrics sort by group. */
TEST(order_does_not_matter)
{
    fixture_b();
    static float s2[NB], y2[NB], w2[NB], r2[NB];
    static uint64_t g2[NB];
    /* Reverse the rows but keep each group's internal order, so the tie
     * rule (row order) sees the same sequence: group-major order. */
    int o = 0;
    for (int g = 39; g >= 0; g--)
        for (int i = 0; i < NB; i++)
            if ((int)bg[i] == g) {
                s2[o] = bs[i];
                y2[o] = by[i];
                w2[o] = bw[i];
                r2[o] = brel[i];
                g2[o] = bg[i];
                o++;
            }
    double a, b;
    rk_err err = {0};
    CHECK_OK(rk_metrics_gauc(bs, by, bw, bg, NB, &a, NULL, &err));
    CHECK_OK(rk_metrics_gauc(s2, y2, w2, g2, NB, &b, NULL, &err));
    CHECK(NEAR(a, b, 1e-12));
    CHECK_OK(rk_metrics_ndcg(bs, brel, bg, NB, 5, RK_EMPTY_ONE, &a, NULL, &err));
    CHECK_OK(rk_metrics_ndcg(s2, r2, g2, NB, 5, RK_EMPTY_ONE, &b, NULL, &err));
    CHECK(NEAR(a, b, 1e-12));
    CHECK_OK(rk_metrics_auc(s2, y2, w2, NB, &a, &err));
    CHECK(NEAR(a, 0.965389024103007, 1e-12));
}

TEST(allocation_failures)
{
    fixture_b();
    rk_err err = {0};
    /* Fail the 1st, 2nd, ... allocation until the call succeeds; each
     * failure must be a clean RK_ENOMEM with nothing leaked. */
    for (int which = 0; which < 3; which++) {
        int done = 0;
        for (uint64_t k = 1; k < 20 && !done; k++) {
            double v;
            rk_cls_metrics m;
            rk_mem_fail_at(k, 0);
            int rc = which == 0 ? rk_metrics_cls(bs, by, bw, NB, &m, &err)
                   : which == 1 ? rk_metrics_ndcg(bs, brel, bg, NB, 5,
                                                  RK_EMPTY_ONE, &v, NULL, &err)
                                : rk_metrics_gauc(bs, by, NULL, bg, NB, &v,
                                                  NULL, &err);
            rk_mem_fail_at(0, 0);
            CHECK(rc == 0 || rc == RK_ENOMEM);
            done = rc == 0;
        }
        CHECK(done);
    }
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, auc_hand, logloss_ne_calibration_hand,
                 pr_auc_hand, ndcg_map_hand, gauc_hand, bad_input,
                 sklearn_fixture_a, sklearn_fixture_b, xgboost_fixture_b,
                 order_does_not_matter, allocation_failures);
}
