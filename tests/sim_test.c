/*
 * sim_test.c — the simulator's world model without a server: determinism
 * for a seed, the position-bias and click statistics, popularity, watch
 * fractions, each scenario's transform, option checks, the config template
 * and a clean error when no server answers.
 */
#include "rk_sim.h"
#include "test.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z, hour of day 0 */

static void small_opts(rk_sim_opts *o)
{
    rk_sim_opts_default(o);
    o->users = 200;
    o->items = 500;
    o->start_ms = T0;
    o->url = "http://127.0.0.1:1";
    o->timeout_ms = 2000;
}

TEST(world_is_deterministic_for_a_seed)
{
    rk_sim_opts o;
    small_opts(&o);
    rk_sim *a, *b, *c;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&a, &o, &err));
    CHECK_OK(rk_sim_create(&b, &o, &err));
    o.seed = 43;
    CHECK_OK(rk_sim_create(&c, &o, &err));
    int same = 1, differs = 0;
    for (uint32_t i = 0; i < rk_sim_nitems(a); i++) {
        rk_sim_item x, y, z;
        rk_sim_item_info(a, i, &x);
        rk_sim_item_info(b, i, &y);
        rk_sim_item_info(c, i, &z);
        same &= memcmp(&x, &y, sizeof x) == 0;
        differs |= x.category != z.category || x.duration != z.duration;
        for (uint32_t u = 0; u < 200; u += 37) {
            same &= rk_sim_affinity(a, u, i, 0) == rk_sim_affinity(b, u, i, 0);
            same &= rk_sim_click_prob(a, u, i, 3, 5, 8) ==
                    rk_sim_click_prob(b, u, i, 3, 5, 8);
        }
    }
    rk_sim_destroy(a);
    rk_sim_destroy(b);
    rk_sim_destroy(c);
    rk_sim_destroy(NULL);
    CHECK(same);
    CHECK(differs);
}

TEST(options_are_checked)
{
    static const struct {
        uint32_t users, items, dim, threads;
    } bad[] = {{0, 10, 8, 1}, {10, 0, 8, 1}, {10, 10, 1, 1}, {10, 10, 300, 1},
               {10, 10, 8, 0}, {10, 10, 8, 65}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rk_sim_opts o;
        small_opts(&o);
        o.users = bad[k].users;
        o.items = bad[k].items;
        o.dim = bad[k].dim;
        o.threads = bad[k].threads;
        rk_sim *s = NULL;
        rk_err err = {0};
        CHECK_EQ_INT(rk_sim_create(&s, &o, &err), RK_EINVAL);
        CHECK(s == NULL);
        CHECK(strlen(rk_err_msg(&err)) > 5);
    }
    rk_sim_scenario sc;
    for (int k = 0; k < RK_SIM_SCENARIO_COUNT; k++) {
        CHECK_OK(rk_sim_scenario_parse(rk_sim_scenario_name((rk_sim_scenario)k), &sc));
        CHECK_EQ_INT(sc, k);
    }
    CHECK_EQ_INT(rk_sim_scenario_parse("stedy", &sc), RK_EINVAL);
}

/* Bernoulli draws with the model's probabilities: the empirical CTR by
 * position follows the position bias, and affinity raises clicks. */
TEST(clicks_follow_position_bias_and_affinity)
{
    CHECK(rk_sim_position_bias(0) == 1.0);
    for (uint32_t p = 1; p < 50; p++)
        CHECK(rk_sim_position_bias(p) < rk_sim_position_bias(p - 1));
    rk_sim_opts o;
    small_opts(&o);
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    uint64_t x = 12345;
    double shown[5] = {0}, clicks[5] = {0}, lo_c = 0, lo_n = 0, hi_c = 0, hi_n = 0;
    for (uint32_t u = 0; u < 200; u++)
        for (uint32_t i = 0; i < 500; i++)
            for (uint32_t p = 0; p < 5; p++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                double r = (double)(x >> 11) / 9007199254740992.0;
                double pc = rk_sim_click_prob(s, u, i, p * 4, 0, 8);
                CHECK(pc > 0 && pc < 1);
                int c = r < pc;
                shown[p]++;
                clicks[p] += c;
                double a = rk_sim_affinity(s, u, i, 0);
                if (p == 0 && a < 0) lo_c += c, lo_n++;
                if (p == 0 && a > 1.5) hi_c += c, hi_n++;
            }
    double ctr0 = clicks[0] / shown[0];
    CHECK(ctr0 > 0.02 && ctr0 < 0.4);
    for (uint32_t p = 1; p < 5; p++) {
        /* Same items at every position: the ratio is the bias ratio. */
        double want = rk_sim_position_bias(p * 4);
        double got = (clicks[p] / shown[p]) / ctr0;
        CHECK(fabs(got - want) < 0.05);
    }
    CHECK(hi_n > 100 && lo_n > 100);
    CHECK(hi_c / hi_n > 3 * (lo_c / lo_n));
    rk_sim_destroy(s);
}

TEST(popularity_is_a_power_law_and_watch_follows_affinity)
{
    rk_sim_opts o;
    small_opts(&o);
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    double top = 0, sum = 0;
    uint32_t above = 0;
    for (uint32_t i = 0; i < 500; i++) {
        rk_sim_item it;
        CHECK_OK(rk_sim_item_info(s, i, &it));
        CHECK(it.duration >= 30);
        CHECK(it.published_ms < T0);
        CHECK(!it.wave);
        top = it.popularity > top ? it.popularity : top;
        sum += it.popularity;
        above += it.popularity > 0.1;
    }
    CHECK(top == 1.0);
    CHECK(above < 10);            /* Zipf 1.1: only the head is popular */
    CHECK(sum > 3 && sum < 8);
    rk_sim_item it;
    CHECK_EQ_INT(rk_sim_item_info(s, 500, &it), RK_EINVAL);
    for (double a = -3; a < 3; a += 0.5) {
        double f = rk_sim_watch_fraction(a);
        CHECK(f > 0 && f < 1);
        CHECK(rk_sim_watch_fraction(a + 0.5) > f);
    }
    rk_sim_destroy(s);
}

TEST(taste_shift_rotates_tastes_from_the_event_hour)
{
    rk_sim_opts o;
    small_opts(&o);
    o.scenario = RK_SIM_TASTE_SHIFT;
    o.shift = RK_SIM_SHIFT_LATENT;
    o.event_hour = 3;
    o.shift_deg = 90;
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    double before[256], at[256], later[256];
    for (uint32_t u = 0; u < 200; u += 13) {
        CHECK_OK(rk_sim_user_taste(s, u, 2, before));
        CHECK_OK(rk_sim_user_taste(s, u, 3, at));
        CHECK_OK(rk_sim_user_taste(s, u, 9, later));
        double dot = 0, n0 = 0, n1 = 0, same = 0;
        for (uint32_t k = 0; k < o.dim; k++) {
            dot += before[k] * at[k];
            n0 += before[k] * before[k];
            n1 += at[k] * at[k];
            same += fabs(at[k] - later[k]);
        }
        CHECK(fabs(dot) < 1e-6);      /* 90 degrees in every plane */
        CHECK(fabs(n0 - n1) < 1e-6);  /* a rotation keeps the length */
        CHECK(same == 0);
    }
    /* Steady: the taste never moves. */
    rk_sim_opts o2 = o;
    o2.scenario = RK_SIM_STEADY;
    rk_sim *t;
    CHECK_OK(rk_sim_create(&t, &o2, &err));
    CHECK_OK(rk_sim_user_taste(t, 5, 0, before));
    CHECK_OK(rk_sim_user_taste(t, 5, 50, at));
    CHECK(memcmp(before, at, sizeof(double) * o.dim) == 0);
    CHECK(rk_sim_sessions_in_hour(t, 0) == o.sessions_per_hour);
    CHECK(rk_sim_sessions_in_hour(t, 13) == o.sessions_per_hour);
    CHECK(rk_sim_sent_bandwidth(t, 40, 5.5) == 5.5);
    rk_sim_destroy(t);
    rk_sim_destroy(s);
}

/* Mean over users of the best session's expected clicks per item shown. */
static double best_ctr_at(const rk_sim *s, uint32_t users, uint32_t hour)
{
    double clicks = 0, shown = 0;
    for (uint32_t u = 0; u < users; u++) {
        uint32_t n;
        clicks += rk_sim_best_session_clicks(s, u, hour, 8.0, &n);
        shown += n;
    }
    return clicks / shown;
}

/* The category whose items the taste likes most on average. */
static uint32_t favourite_category(const rk_sim *s, uint32_t u, uint32_t hour,
                                   uint32_t ncat)
{
    double sum[64] = {0};
    uint32_t cnt[64] = {0}, best = 0;
    for (uint32_t i = 0; i < rk_sim_nitems(s); i++) {
        rk_sim_item it;
        rk_sim_item_info(s, i, &it);
        sum[it.category] += rk_sim_affinity(s, u, i, hour);
        cnt[it.category]++;
    }
    for (uint32_t c = 1; c < ncat; c++)
        if (cnt[c] && sum[c] / cnt[c] > sum[best] / cnt[best]) best = c;
    return best;
}

TEST(taste_shift_by_categories_moves_favourites_and_keeps_the_attainable)
{
    rk_sim_opts o;
    small_opts(&o);
    o.scenario = RK_SIM_TASTE_SHIFT;
    o.event_hour = 3;
    CHECK_EQ_INT(o.shift, RK_SIM_SHIFT_CATEGORIES);  /* the default */
    rk_sim *s, *lat, *none;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    double before[256], at[256], later[256], cos_sum = 0;
    uint32_t moved = 0;
    for (uint32_t u = 0; u < 200; u++) {
        CHECK_OK(rk_sim_user_taste(s, u, 2, before));
        CHECK_OK(rk_sim_user_taste(s, u, 3, at));
        CHECK_OK(rk_sim_user_taste(s, u, 9, later));
        double dot = 0, n0 = 0, n1 = 0;
        for (uint32_t k = 0; k < o.dim; k++) {
            dot += before[k] * at[k];
            n0 += before[k] * before[k];
            n1 += at[k] * at[k];
        }
        CHECK(fabs(n0 - 1) < 1e-6 && fabs(n1 - 1) < 1e-6);
        CHECK(memcmp(at, later, sizeof(double) * o.dim) == 0);
        cos_sum += dot;
        if (u % 5 == 0)
            moved += favourite_category(s, u, 3, o.categories) ==
                     (favourite_category(s, u, 2, o.categories) + o.categories / 2) %
                         o.categories;
    }
    CHECK(cos_sum / 200 < 0.5);   /* the tastes really moved */
    CHECK(moved >= 32);           /* of 40: favourites half the circle on */
    /* The new tastes fit the catalog as well as the old ones; a latent
     * rotation leaves tastes no category serves. */
    double b0 = best_ctr_at(s, 200, 2), b1 = best_ctr_at(s, 200, 3);
    CHECK(fabs(b1 / b0 - 1) < 0.05);
    o.shift = RK_SIM_SHIFT_LATENT;
    CHECK_OK(rk_sim_create(&lat, &o, &err));
    CHECK(fabs(best_ctr_at(lat, 200, 2) - b0) < 1e-12);  /* same world */
    CHECK(best_ctr_at(lat, 200, 3) < 0.8 * b0);
    /* No angle, no move. */
    o.shift = RK_SIM_SHIFT_CATEGORIES;
    o.shift_deg = 0;
    CHECK_OK(rk_sim_create(&none, &o, &err));
    CHECK_OK(rk_sim_user_taste(none, 7, 2, before));
    CHECK_OK(rk_sim_user_taste(none, 7, 5, at));
    for (uint32_t k = 0; k < o.dim; k++) CHECK(fabs(before[k] - at[k]) < 1e-6);
    rk_sim_shift k;
    CHECK_OK(rk_sim_shift_parse("latent", &k));
    CHECK_EQ_INT(k, RK_SIM_SHIFT_LATENT);
    CHECK_EQ_INT(rk_sim_shift_parse("sideways", &k), RK_EINVAL);
    CHECK_STR(rk_sim_shift_name(RK_SIM_SHIFT_CATEGORIES), "categories");
    o.shift = (rk_sim_shift)7;
    rk_sim *bad;
    CHECK_EQ_INT(rk_sim_create(&bad, &o, &err), RK_EINVAL);
    rk_sim_destroy(none);
    rk_sim_destroy(lat);
    rk_sim_destroy(s);
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

TEST(best_session_is_the_top_items_best_arranged)
{
    rk_sim_opts o;
    small_opts(&o);
    o.n = 4;
    o.requests_per_session = 3;
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    static double p[500];
    for (uint32_t u = 0; u < 200; u += 41) {
        for (uint32_t i = 0; i < 500; i++) p[i] = rk_sim_click_prob(s, u, i, 0, 4, 3.5);
        qsort(p, 500, sizeof *p, cmp_desc);
        /* 12 items; the three best at the top of the three slates, ... */
        double want = 0;
        for (uint32_t j = 0; j < 12; j++) want += rk_sim_position_bias(j / 3) * p[j];
        uint32_t shown;
        double got = rk_sim_best_session_clicks(s, u, 4, 3.5, &shown);
        CHECK(fabs(got - want) < 1e-12);
        CHECK_EQ_INT(shown, 12);
        /* Any other arrangement of the same items expects fewer clicks. */
        double worse = 0;
        for (uint32_t j = 0; j < 12; j++) worse += rk_sim_position_bias(j % 4) * p[j];
        CHECK(worse < got);
    }
    uint32_t shown = 1;
    CHECK(isnan(rk_sim_best_session_clicks(s, 200, 0, 8, &shown)));
    CHECK_EQ_INT(shown, 0);
    rk_sim_destroy(s);
    /* A catalog smaller than a session, and wave items only once live. */
    o.items = 5;
    o.scenario = RK_SIM_NEW_ITEMS;
    o.new_items = 3;
    o.event_hour = 2;
    CHECK_OK(rk_sim_create(&s, &o, &err));
    rk_sim_best_session_clicks(s, 0, 1, 8, &shown);
    CHECK_EQ_INT(shown, 5);
    rk_sim_best_session_clicks(s, 0, 2, 8, &shown);
    CHECK_EQ_INT(shown, 8);
    rk_sim_destroy(s);
}

TEST(new_items_wave_is_published_at_the_event_hour)
{
    rk_sim_opts o;
    small_opts(&o);
    o.scenario = RK_SIM_NEW_ITEMS;
    o.event_hour = 4;
    o.new_items = 50;
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    CHECK_EQ_INT(rk_sim_nitems(s), 550);
    for (uint32_t i = 0; i < 550; i++) {
        rk_sim_item it;
        CHECK_OK(rk_sim_item_info(s, i, &it));
        CHECK_EQ_INT(it.wave, i >= 500);
        if (it.wave) {
            CHECK(it.published_ms >= T0 + 4 * 3600000LL);
            CHECK(it.published_ms < T0 + 5 * 3600000LL);
            /* The boost makes a wave item more clickable than its twin
             * without it. */
            CHECK(it.popularity > 0 && it.popularity <= 1);
        }
    }
    rk_sim_destroy(s);
}

TEST(pipeline_bug_corrupts_the_sent_bandwidth)
{
    rk_sim_opts o;
    small_opts(&o);
    o.scenario = RK_SIM_PIPELINE_BUG;
    o.event_hour = 2;
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    CHECK(rk_sim_sent_bandwidth(s, 1, 12.5) == 12.5);
    CHECK(rk_sim_sent_bandwidth(s, 2, 12.5) == 12500);
    CHECK(rk_sim_sent_bandwidth(s, 7, 0.5) == 500);
    /* The truth is unchanged: clicks depend on the real bandwidth. */
    CHECK(rk_sim_click_prob(s, 3, 4, 0, 1, 10) == rk_sim_click_prob(s, 3, 4, 0, 5, 10));
    rk_sim_destroy(s);
    o.bug = RK_SIM_BUG_MISSING;
    CHECK_OK(rk_sim_create(&s, &o, &err));
    CHECK(rk_sim_sent_bandwidth(s, 1, 12.5) == 12.5);
    CHECK(isnan(rk_sim_sent_bandwidth(s, 2, 12.5)));
    rk_sim_destroy(s);
}

TEST(seasonality_modulates_activity_and_taste_by_hour_of_day)
{
    rk_sim_opts o;
    small_opts(&o);
    o.scenario = RK_SIM_SEASONALITY;
    o.season_amplitude = 0.5;
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    double sum = 0;
    uint32_t mn = UINT32_MAX, mx = 0;
    for (uint32_t h = 0; h < 24; h++) {
        uint32_t n = rk_sim_sessions_in_hour(s, h);
        sum += n;
        mn = n < mn ? n : mn;
        mx = n > mx ? n : mx;
    }
    CHECK(fabs(sum / 24 - o.sessions_per_hour) < 2);
    CHECK(rk_sim_sessions_in_hour(s, 14) == mx);   /* peak at 14:00 UTC */
    CHECK(mx >= 290 && mn <= 110);
    CHECK(rk_sim_sessions_in_hour(s, 14 + 24) == mx);
    /* Taste: the same pair's affinity moves with the hour, daily. */
    double a0 = rk_sim_affinity(s, 1, 2, 0), a12 = rk_sim_affinity(s, 1, 2, 12);
    CHECK(fabs(a0 - a12) > 0.5);
    CHECK(rk_sim_affinity(s, 1, 2, 24) == a0);
    rk_sim_destroy(s);
}

TEST(config_template_names_the_world)
{
    rk_sim_opts o;
    small_opts(&o);
    FILE *f = tmpfile();
    CHECK(f != NULL);
    CHECK_OK(rk_sim_write_config(f, &o));
    rewind(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    CHECK_CONTAINS(buf, "bandwidth: {kind: context, field: bandwidth");
    CHECK_CONTAINS(buf, "\nlabels:\n");
    CHECK_CONTAINS(buf, "\nserve:\n  ranker: feed");
    CHECK_CONTAINS(buf, "\n  clock: event\n");
    CHECK_CONTAINS(buf, "watch: {role: valued");
}

TEST(unreachable_server_is_a_clear_error)
{
    rk_sim_opts o;
    small_opts(&o);
    rk_sim *s;
    rk_err err = {0};
    CHECK_OK(rk_sim_create(&s, &o, &err));
    CHECK_EQ_INT(rk_sim_check(s), RK_EIO);
    CHECK_CONTAINS(rk_sim_errmsg(s), "cannot reach http://127.0.0.1:1");
    rk_sim_destroy(s);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, world_is_deterministic_for_a_seed,
                 options_are_checked, clicks_follow_position_bias_and_affinity,
                 popularity_is_a_power_law_and_watch_follows_affinity,
                 taste_shift_rotates_tastes_from_the_event_hour,
                 taste_shift_by_categories_moves_favourites_and_keeps_the_attainable,
                 best_session_is_the_top_items_best_arranged,
                 new_items_wave_is_published_at_the_event_hour,
                 pipeline_bug_corrupts_the_sent_bandwidth,
                 seasonality_modulates_activity_and_taste_by_hour_of_day,
                 config_template_names_the_world,
                 unreachable_server_is_a_clear_error);
}
