/*
 * loop_test.c — the learning loop's pieces on their own: the retraining
 * policy (cooldown, concept drift before input drift before labels before
 * periodic, nothing while a run is in progress), the concept-drift
 * verdict, the `loop:` config and its errors, and the audit
 * log (bounded ring, newest first, counts per kind, the append-only file).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rk_loop.h"
#include "test.h"

/* Reads the `loop:` section of a YAML text into o (defaults first). */
static int opts_from_yaml(rk_loop_opts *o, const char *yaml, rk_err *err)
{
    rk_conf *c;
    int rc = rk_conf_parse_yaml(&c, yaml, strlen(yaml), "t.yaml", err);
    if (rc) return rc;
    rk_loop_opts_default(o);
    err->msg[0] = '\0';
    rc = rk_loop_opts_from_conf(o, rk_conf_root(c), err);
    rk_conf_destroy(c);
    return rc;
}

TEST(policy_decisions)
{
    rk_loop_opts o;
    rk_loop_opts_default(&o);
    o.enabled = 1;
    o.every_minutes = 60;
    o.every_labels = 100;
    o.cooldown_minutes = 5;
    o.min_drift_rows = 1000;
    const int64_t H = 3600000, M = 60000;
    static const struct {
        rk_loop_state s;
        rk_loop_trigger want;
    } cases[] = {
        {{10 * H, 0, 0, 0, 0, 0, 0, 0, 0}, RK_LOOP_NONE},          /* nothing new yet */
        {{10 * H, 0, 5, 0, 0, 0, 0, 0, 0}, RK_LOOP_PERIODIC},      /* never trained, labels */
        {{10 * H, 0, 100, 0, 0, 0, 0, 0, 0}, RK_LOOP_LABELS},
        {{10 * H, 10 * H - M, 500, 1, 5000, 0, 0, 0, 0}, RK_LOOP_NONE}, /* cooldown */
        {{10 * H, 10 * H - 6 * M, 500, 1, 5000, 0, 0, 0, 0}, RK_LOOP_DRIFT},
        {{10 * H, 10 * H - 6 * M, 500, 1, 10, 0, 0, 0, 0}, RK_LOOP_LABELS}, /* few rows */
        {{10 * H, 10 * H - 6 * M, 5, 0, 0, 0, 0, 0, 0}, RK_LOOP_NONE},
        {{10 * H, 9 * H - M, 5, 0, 0, 0, 0, 0, 0}, RK_LOOP_PERIODIC},
        {{10 * H, 0, 500, 1, 5000, 1, 0, 0, 0}, RK_LOOP_NONE},      /* training now */
        {{10 * H, 10 * H - 6 * M, 500, 1, 5000, 0, 1, 0, 0}, RK_LOOP_CONCEPT},
        {{10 * H, 10 * H - M, 500, 1, 5000, 0, 1, 0, 0}, RK_LOOP_NONE}, /* cooldown */
        {{10 * H, 0, 0, 0, 0, 1, 1, 0, 0}, RK_LOOP_NONE},        /* training now */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_loop_trigger t = rk_loop_decide(&o, &cases[i].s);
        if (t != cases[i].want)
            fprintf(stderr, "  case %zu: got %s, want %s\n", i, rk_loop_trigger_name(t),
                    rk_loop_trigger_name(cases[i].want));
        CHECK(t == cases[i].want);
    }
    o.on_drift = 0;
    rk_loop_state st = {10 * H, 0, 0, 1, 5000, 0, 0, 0, 0};
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_NONE);
    st.concept = 1;
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_CONCEPT);
    CHECK(!strcmp(rk_loop_trigger_name(RK_LOOP_CONCEPT), "concept_drift"));
    /* The catch-up after a concept-drift training on the last hour: once
     * two hours have passed since the change, again on all of them, and at
     * every doubling until the span reaches the window. */
    st.concept = 0;
    o.every_minutes = 0;
    st.last_train_ms = 9 * H;
    st.change_ms = 8 * H;
    st.change_span_ms = H;
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_CATCH_UP);
    CHECK(!strcmp(rk_loop_trigger_name(RK_LOOP_CATCH_UP), "concept_catch_up"));
    st.now_ms = 10 * H - 1;
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_NONE);
    st.now_ms = 10 * H;
    o.window_ms = H;            /* the span already fills the window */
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_NONE);
    o.window_ms = 8 * H;
    st.last_train_ms = 10 * H - M; /* cooldown */
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_NONE);
    st.last_train_ms = 9 * H;
    o.on_concept_drift = 0;
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_NONE);
    o.enabled = 0;
    st.new_labels = 1000;
    CHECK(rk_loop_decide(&o, &st) == RK_LOOP_NONE);
}

TEST(loop_config)
{
    static const char ok_yaml[] =
        "loop:\n  ranker: feed\n  kind: ftrl\n  every_labels: 50\n"
        "  args: [--epochs, \"2\"]\n  cooldown_minutes: 0\n  window: 6h\n";
    rk_conf *c;
    rk_err err = {0};
    CHECK_OK(rk_conf_parse_yaml(&c, ok_yaml, strlen(ok_yaml), "t.yaml", &err));
    rk_loop_opts o;
    rk_loop_opts_default(&o);
    CHECK_OK(rk_loop_opts_from_conf(&o, rk_conf_root(c), &err));
    CHECK(o.enabled && !strcmp(o.ranker, "feed") && !strcmp(o.kind, "ftrl") &&
          o.every_labels == 50 && o.nargs == 2 && o.cooldown_minutes == 0 &&
          o.window_ms == 6 * 3600000LL);
    rk_conf_destroy(c);
    static const char *const bad[] = {
        "loop:\n  kind: xgb\n",
        "loop:\n  args: [--data, x]\n",
        "loop:\n  every_minutes: -1\n",
        "loop:\n  surprise: 1\n",
        "loop:\n  online: true\n",                 /* gbdt cannot learn online */
        "loop:\n  kind: ftrl\n  online_refresh_s: 0\n",
        "loop:\n  kind: ftrl\n  online_half_life: soon\n",
        "loop:\n  kind: ftrl\n  online_half_life: -1h\n",
        "loop:\n  rollback_margin: -0.1\n",
        "loop:\n  rollback_min_labels: 0\n",
        "loop:\n  window: 6x\n",
        "loop:\n  window: [6h]\n",
        "loop:\n  window: 2h\n  args: [--window, 1h]\n",  /* set twice */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(opts_from_yaml(&o, bad[i], &err) == RK_ECONFIG);
        CHECK(strstr(err.msg, "t.yaml:") != NULL);
    }
}

static int64_t fixed_clock(void *arg)
{
    (void)arg;
    return rk_civil_ms(2030, 1, 1);
}

TEST(audit_ring_and_file)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", rk_test_tmpdir("loop-audit"));
    snprintf(path, sizeof path, "%s/audit.jsonl", dir);
    rk_audit *a;
    rk_err err = {0};
    CHECK_OK(rk_audit_open(&a, path, 3, &err));
    rk_audit_add(a, 1000, "trained", "feed", 2, "x");
    rk_audit_add(a, 2000, "promoted", "feed", 2, "gate passed");
    rk_audit_add(a, 3000, "drift_alarm", "feed", 2, "window");
    rk_audit_add(a, 4000, "rejected", "feed", 3, "auc worse by 0.02 \"quoted\"");
    CHECK(rk_audit_count(a, "trained") == 1 && rk_audit_count(a, "rejected") == 1 &&
          rk_audit_count(a, "nothing") == 0);
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_audit_json(a, &b));
    (void)rk_buf_putc(&b, '\0');
    /* Bounded to 3, newest first. */
    CHECK(strstr(b.data, "\"kind\":\"trained\"") == NULL);
    CHECK(strstr(b.data, "rejected") < strstr(b.data, "drift_alarm"));
    rk_buf_free(&b);
    rk_audit_close(a);
    /* The file has every record, one JSON line each. */
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof line, f)) lines++;
    fclose(f);
    CHECK(lines == 4);
    /* Reopened, it appends. */
    CHECK_OK(rk_audit_open(&a, path, 3, &err));
    rk_audit_add(a, 5000, "rolled_back", "feed", 2, "");
    rk_audit_close(a);
    f = fopen(path, "r");
    lines = 0;
    while (f && fgets(line, sizeof line, f)) lines++;
    if (f) fclose(f);
    CHECK(lines == 5);
    /* ts 0 is the owner's clock when it gave one (a server's serve.clock). */
    CHECK_OK(rk_audit_open(&a, NULL, 3, &err));
    rk_audit_set_clock(a, fixed_clock, NULL);
    rk_audit_add(a, 0, "promoted", "feed", 3, "");
    rk_buf_init(&b, 0);
    CHECK_OK(rk_audit_json(a, &b));
    (void)rk_buf_putc(&b, '\0');
    CHECK_CONTAINS(b.data, "{\"ts\":\"2030-01-01T00:00:00.000Z\",\"kind\":\"promoted\"");
    rk_buf_free(&b);
    rk_audit_close(a);
    CHECK(rk_audit_open(&a, "/nonexistent-dir/x.jsonl", 3, &err) == RK_EIO);
    rk_test_rmdir(dir);
}

TEST(rollback_verdicts)
{
    rk_loop_opts o;
    rk_loop_opts_default(&o);
    CHECK(o.rollback && o.rollback_margin == 0.02 && o.rollback_min_labels == 1000);
    /* Not enough labels on either side: wait. */
    CHECK(rk_loop_rollback_check(&o, 999, 0.9, 5000, 0.3) == RK_LOOP_WAIT);
    CHECK(rk_loop_rollback_check(&o, 5000, 0.9, 999, 0.3) == RK_LOOP_WAIT);
    CHECK(rk_loop_rollback_check(&o, 5000, NAN, 5000, 0.3) == RK_LOOP_WAIT);
    /* Within the margin: keep; beyond it: roll back. */
    CHECK(rk_loop_rollback_check(&o, 1000, 0.319, 1000, 0.3) == RK_LOOP_KEEP);
    CHECK(rk_loop_rollback_check(&o, 1000, 0.25, 1000, 0.3) == RK_LOOP_KEEP);
    CHECK(rk_loop_rollback_check(&o, 1000, 0.321, 1000, 0.3) == RK_LOOP_ROLL_BACK);
    o.rollback_relative = 1;
    o.rollback_margin = 0.1;   /* 10% of 0.3 = 0.03 */
    CHECK(rk_loop_rollback_check(&o, 1000, 0.329, 1000, 0.3) == RK_LOOP_KEEP);
    CHECK(rk_loop_rollback_check(&o, 1000, 0.331, 1000, 0.3) == RK_LOOP_ROLL_BACK);
    o.rollback = 0;
    CHECK(rk_loop_rollback_check(&o, 1e6, 5, 1e6, 0.3) == RK_LOOP_WAIT);
    rk_err err = {0};
    CHECK_OK(opts_from_yaml(&o, "loop:\n  kind: ftrl\n  online: true\n  online_refresh_s: 2.5\n"
                            "  rollback_margin: 0.05\n  rollback_relative: true\n"
                            "  rollback_min_labels: 300\n", &err));
    CHECK(o.online && o.online_refresh_s == 2.5 && o.rollback_margin == 0.05 &&
          o.rollback_relative && o.rollback_min_labels == 300 &&
          o.online_half_life_ms == 0);
    CHECK_OK(opts_from_yaml(&o, "loop:\n  kind: fm\n  online: true\n"
                            "  online_half_life: 2h\n", &err));
    CHECK(o.online_half_life_ms == 2 * 3600000LL);
}

static rk_concept_metrics cm(double n, double pos, double auc, double calib)
{
    rk_concept_metrics m = {n, pos, 0.3, auc, calib, pos / n, calib * pos / n};
    return m;
}

TEST(concept_verdicts)
{
    rk_loop_opts o;
    rk_loop_opts_default(&o);
    CHECK(o.on_concept_drift && o.concept_window == 5000 && o.concept_auc_drop == 0.05 &&
          o.concept_calibration == 0.25 && o.concept_z == 3);
    char why[300];
    rk_concept_metrics b = cm(5000, 500, 0.75, 1.0), r = cm(5000, 500, 0.75, 1.0);
    CHECK(rk_loop_concept_check(&o, &b, &r, why, sizeof why) == RK_LOOP_KEEP);
    CHECK(strstr(why, "auc 0.7500 -> 0.7500") && strstr(why, "5000 and 5000 labels"));
    /* Not enough labels in the baseline or the recent window: wait. */
    b.n = 4999;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_WAIT);
    b.n = 5000;
    r.n = 3749;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_WAIT);
    /* AUC 0.75 -> 0.70 over 500 positives of 5,000 each: Hanley-McNeil
     * variances 1.6908e-4 and 1.8372e-4, z = 0.05 / 0.018783 = 2.66. */
    r = cm(5000, 500, 0.70, 1.0);
    CHECK(rk_loop_concept_check(&o, &b, &r, why, sizeof why) == RK_LOOP_KEEP);
    CHECK(strstr(why, "(z 2.7)") != NULL);
    o.concept_z = 2.6;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_ROLL_BACK);
    o.concept_z = 2.7;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_KEEP);
    /* Significant but below the least drop. */
    o.concept_z = 3;
    b = cm(50000, 5000, 0.75, 1.0);
    r = cm(50000, 5000, 0.71, 1.0);
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_KEEP);
    r.auc = 0.69;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_ROLL_BACK);
    /* A better recent AUC is no drift. */
    r.auc = 0.85;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_KEEP);
    /* Calibration 1.0 -> 1.3 (ln 1.3 = 0.262 >= ln 1.25) over 500 and 400
     * positives: z = 0.262 / sqrt(1/500 + 1/400) = 3.9, drift; either way. */
    b = cm(5000, 500, 0.75, 1.0);
    r = cm(5000, 400, 0.75, 1.3);
    CHECK(rk_loop_concept_check(&o, &b, &r, why, sizeof why) == RK_LOOP_ROLL_BACK);
    CHECK(strstr(why, "calibration 1.000 -> 1.300 (z 3.9)") != NULL);
    r.calibration = 1 / 1.3;
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_ROLL_BACK);
    r.calibration = 1.2;            /* within 25% */
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_KEEP);
    r = cm(5000, 50, 0.75, 1.3);    /* 50 positives: z 1.8 */
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_KEEP);
    /* Undefined metrics (one class only) never drift. */
    r = cm(5000, 0, NAN, NAN);
    CHECK(rk_loop_concept_check(&o, &b, &r, NULL, 0) == RK_LOOP_KEEP);
    o.concept_window = 0;
    CHECK(rk_loop_concept_check(&o, &b, &b, NULL, 0) == RK_LOOP_WAIT);

    /* From accumulated predictions: labels drawn from p, then at half the
     * rate (the clicks fall, the model does not know): calibration x2. */
    rk_loop_opts_default(&o);
    rk_concept_acc *acc = calloc(3, sizeof *acc);
    CHECK(acc != NULL);
    uint64_t x = 88172645463325252ull;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 6000; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            float p = 0.02f + 0.3f * (float)(x % 1000) / 1000.0f;
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            double u = (double)(x % 100000) / 100000.0;
            float y = u < (k == 2 ? p / 2 : p) ? 1.0f : 0.0f;
            CHECK_OK(rk_concept_add(&acc[k], p, y, 1.0f));
        }
    rk_concept_get(&acc[0], &b);
    rk_concept_get(&acc[1], &r);
    CHECK(rk_loop_concept_check(&o, &b, &r, why, sizeof why) == RK_LOOP_KEEP);
    rk_concept_get(&acc[2], &r);
    CHECK(rk_loop_concept_check(&o, &b, &r, why, sizeof why) == RK_LOOP_ROLL_BACK);
    CHECK(r.calibration > 1.7 && r.calibration < 2.4);
    free(acc);

    /* The config. */
    rk_err err = {0};
    CHECK_OK(opts_from_yaml(&o, "loop:\n  on_concept_drift: false\n  concept_window: 800\n"
                            "  concept_auc_drop: 0.1\n  concept_calibration: 0.5\n"
                            "  concept_z: 2\n", &err));
    CHECK(!o.on_concept_drift && o.concept_window == 800 && o.concept_auc_drop == 0.1 &&
          o.concept_calibration == 0.5 && o.concept_z == 2);
    static const char *const bad[] = {"loop:\n  concept_z: -1\n",
                                      "loop:\n  concept_calibration: .nan\n",
                                      "loop:\n  concept_window: -5\n",
                                      "loop:\n  on_concept_drift: maybe\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(opts_from_yaml(&o, bad[i], &err) == RK_ECONFIG);
        CHECK(strstr(err.msg, "t.yaml:") != NULL);
    }
}

int main(int argc, char **argv)
{
    static const rk_test_case cases[] = {
        {"concept_verdicts", concept_verdicts},
        {"rollback_verdicts", rollback_verdicts},
        {"policy_decisions", policy_decisions},
        {"loop_config", loop_config},
        {"audit_ring_and_file", audit_ring_and_file},
    };
    return rk_test_run_all(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
