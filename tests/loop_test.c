/*
 * loop_test.c — the learning loop's pieces on their own: the retraining
 * policy (cooldown, drift before labels before periodic, nothing while a
 * run is in progress), the `loop:` config and its errors, and the audit
 * log (bounded ring, newest first, counts per kind, the append-only file).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rk_loop.h"
#include "test.h"

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
        {{10 * H, 0, 0, 0, 0, 0}, RK_LOOP_NONE},          /* nothing new yet */
        {{10 * H, 0, 5, 0, 0, 0}, RK_LOOP_PERIODIC},      /* never trained, labels */
        {{10 * H, 0, 100, 0, 0, 0}, RK_LOOP_LABELS},
        {{10 * H, 10 * H - M, 500, 1, 5000, 0}, RK_LOOP_NONE}, /* cooldown */
        {{10 * H, 10 * H - 6 * M, 500, 1, 5000, 0}, RK_LOOP_DRIFT},
        {{10 * H, 10 * H - 6 * M, 500, 1, 10, 0}, RK_LOOP_LABELS}, /* few rows */
        {{10 * H, 10 * H - 6 * M, 5, 0, 0, 0}, RK_LOOP_NONE},
        {{10 * H, 9 * H - M, 5, 0, 0, 0}, RK_LOOP_PERIODIC},
        {{10 * H, 0, 500, 1, 5000, 1}, RK_LOOP_NONE},      /* training now */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_loop_trigger t = rk_loop_decide(&o, &cases[i].s);
        if (t != cases[i].want)
            fprintf(stderr, "  case %zu: got %s, want %s\n", i, rk_loop_trigger_name(t),
                    rk_loop_trigger_name(cases[i].want));
        CHECK(t == cases[i].want);
    }
    o.on_drift = 0;
    rk_loop_state st = {10 * H, 0, 0, 1, 5000, 0};
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
        "loop:\n  rollback_margin: -0.1\n",
        "loop:\n  rollback_min_labels: 0\n",
        "loop:\n  window: 6x\n",
        "loop:\n  window: [6h]\n",
        "loop:\n  window: 2h\n  args: [--window, 1h]\n",  /* set twice */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_OK(rk_conf_parse_yaml(&c, bad[i], strlen(bad[i]), "t.yaml", &err));
        rk_loop_opts_default(&o);
        err.msg[0] = '\0';
        CHECK(rk_loop_opts_from_conf(&o, rk_conf_root(c), &err) == RK_ECONFIG);
        CHECK(strstr(err.msg, "t.yaml:") != NULL);
        rk_conf_destroy(c);
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
    static const char y[] = "loop:\n  kind: ftrl\n  online: true\n  online_refresh_s: 2.5\n"
                            "  rollback_margin: 0.05\n  rollback_relative: true\n"
                            "  rollback_min_labels: 300\n";
    rk_conf *c;
    rk_err err = {0};
    CHECK_OK(rk_conf_parse_yaml(&c, y, strlen(y), "t.yaml", &err));
    rk_loop_opts_default(&o);
    CHECK_OK(rk_loop_opts_from_conf(&o, rk_conf_root(c), &err));
    CHECK(o.online && o.online_refresh_s == 2.5 && o.rollback_margin == 0.05 &&
          o.rollback_relative && o.rollback_min_labels == 300);
    rk_conf_destroy(c);
}

int main(int argc, char **argv)
{
    static const rk_test_case cases[] = {
        {"rollback_verdicts", rollback_verdicts},
        {"policy_decisions", policy_decisions},
        {"loop_config", loop_config},
        {"audit_ring_and_file", audit_ring_and_file},
    };
    return rk_test_run_all(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
