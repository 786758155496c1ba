/*
 * init.c — `rankd init --template video|ads|search|fraud DIR`: writes
 * DIR/rankd.yaml, a commented configuration for one of the four case
 * studies, and prints the commands that take it end to end
 * (docs/templates.md walks through each one). The video template is the
 * simulator's (src/sim/config.c), so the playground and the simulator
 * always agree with it. An existing rankd.yaml is never overwritten.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rk_sim.h"

static const char init_usage[] =
    "usage: rankd init --template video|ads|search|fraud DIR\n"
    "Writes DIR/rankd.yaml for the case study and prints the next steps:\n"
    "  video   recommendations on a video platform (events, iALS, GBDT ranker;\n"
    "          `rankd simulate` drives it)\n"
    "  ads     click prediction on Criteo-format rows (FTRL on hashed features)\n"
    "  search  learning to rank on LETOR/svmlight rows (LambdaMART)\n"
    "  fraud   scoring on an imbalanced CSV (GBDT, down-sampling, calibration)\n"
    "See docs/templates.md.\n";

static const char ads_yaml[] =
    "# rankd configuration: click prediction for ads (the Criteo format).\n"
    "# Written by `rankd init --template ads`; docs/templates.md walks through it.\n"
    "#\n"
    "# Rows are imported as labelled datasets (13 numeric + 26 categorical\n"
    "# columns); the ranker is FTRL-Proximal logistic regression on the\n"
    "# numeric columns and hashed categorical coordinates, served by\n"
    "# POST /v1/score with rows {\"num\": {...}, \"cat\": {...}}.\n"
    "store:\n"
    "  fsync: everysec          # acknowledged writes reach the disk within 1 s\n"
    "serve:\n"
    "  ranker: ctr              # the registry name `rankd train --name ctr` publishes\n"
    "  max_body_bytes: 4194304  # batches of rows to score\n"
    "  deadline_ms: 20\n"
    "  # api_keys:              # required before binding anything but loopback\n"
    "  #   - {key: \"change-me-to-a-long-random-string\", roles: [read], name: bidder}\n"
    "log:\n"
    "  level: info\n";

static const char search_yaml[] =
    "# rankd configuration: search ranking (learning to rank, LETOR format).\n"
    "# Written by `rankd init --template search`; docs/templates.md walks through it.\n"
    "#\n"
    "# Query-document rows (svmlight with qid) are imported as datasets; the\n"
    "# ranker is LambdaMART (GBDT, rank:ndcg) trained through XGBoost and\n"
    "# served by rankd's own tree evaluator: the search backend posts the\n"
    "# candidate documents' feature rows to POST /v1/score and sorts by score.\n"
    "store:\n"
    "  fsync: everysec\n"
    "serve:\n"
    "  ranker: search\n"
    "  max_body_bytes: 4194304  # a query's candidates in one request\n"
    "  deadline_ms: 20\n"
    "log:\n"
    "  level: info\n";

static const char fraud_yaml[] =
    "# rankd configuration: fraud scoring on tabular data (an imbalanced CSV).\n"
    "# Written by `rankd init --template fraud`; docs/templates.md walks through it.\n"
    "#\n"
    "# Transactions are imported as a labelled dataset; the ranker is a GBDT\n"
    "# trained on down-sampled negatives, corrected and Platt-calibrated so its\n"
    "# output is a probability (its mean matches the fraud rate), served by\n"
    "# POST /v1/score.\n"
    "store:\n"
    "  fsync: always            # every acknowledged write is fsync'd\n"
    "serve:\n"
    "  ranker: fraud\n"
    "  deadline_ms: 10\n"
    "log:\n"
    "  level: info\n";

/* The video template's drift monitor, after the simulator's config. */
static const char video_monitor_yaml[] =
    "monitor:\n"
    "  # The first ranker trains on every interacted item of the event log,\n"
    "  # not on what a ranker served: each version's live window is compared\n"
    "  # with the first 2,000 items it served (docs/monitoring.md).\n"
    "  window: 2000\n"
    "  reference: served\n"
    "  # Items of one user's requests, or one item served again and again,\n"
    "  # are not independent draws: the noise gate weighs them, so that a\n"
    "  # distance sampling noise explains is not reported as drift\n"
    "  # (docs/monitoring.md, \"Grouped rows and the noise gate\").\n"
    "  noise_alpha: 0.05\n"
    "  # A live window covers a few hours; the training rows cover every\n"
    "  # hour of the day, so the hour differs by construction.\n"
    "  exclude: [hour]\n";

static const char *const next_steps[] = {
    /* video */
    "next, with the simulator:\n"
    "  rankd serve --data %s --config %s/rankd.yaml &\n"
    "  rankd simulate --url http://127.0.0.1:8080 --setup --hours 2\n"
    "  rankd train --data %s --config %s/rankd.yaml\n"
    "  rankd train --data %s --config %s/rankd.yaml --ranker gbdt --name feed\n"
    "  rankd simulate --url http://127.0.0.1:8080 --first-hour 2 --hours 2\n",
    /* ads */
    "next:\n"
    "  rankd import --data %s --format criteo --dataset ctr-train train.tsv\n"
    "  rankd import --data %s --format criteo --dataset ctr-dev dev.tsv\n"
    "  rankd train --data %s --config %s/rankd.yaml --ranker ftrl \\\n"
    "      --dataset ctr-train --valid-dataset ctr-dev --name ctr\n"
    "  rankd serve --data %s --config %s/rankd.yaml &\n"
    "  curl -s localhost:8080/v1/score -d '{\"rows\": [{\"num\": {\"0\": 1}, "
    "\"cat\": {\"0\": \"68fd1e64\"}}]}'\n",
    /* search */
    "next:\n"
    "  rankd import --data %s --format svmlight --dataset mq-train Fold1/train.txt\n"
    "  rankd import --data %s --format svmlight --dataset mq-vali Fold1/vali.txt\n"
    "  rankd train --data %s --config %s/rankd.yaml --ranker gbdt --task rank \\\n"
    "      --dataset mq-train --valid-dataset mq-vali --name search\n"
    "  rankd serve --data %s --config %s/rankd.yaml &\n"
    "  curl -s localhost:8080/v1/score -d '{\"rows\": [{\"num\": {\"0\": 0.5}}]}'\n",
    /* fraud */
    "next:\n"
    "  rankd import --data %s --kind rows --format csv --no-header --label 6 \\\n"
    "      --dataset tx mammography.csv\n"
    "  rankd train --data %s --config %s/rankd.yaml --ranker gbdt --dataset tx \\\n"
    "      --valid-frac 0.25 --split-seed 7 --downsample 0.2 --calibration platt \\\n"
    "      --name fraud\n"
    "  rankd serve --data %s --config %s/rankd.yaml &\n"
    "  curl -s localhost:8080/v1/score -d '{\"rows\": [{\"num\": {\"0\": 0.23}}]}'\n",
};

int cli_init(int argc, char **argv)
{
    static const char *const names[] = {"video", "ads", "search", "fraud", NULL};
    const char *tmpl = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_opt("--template", argc, argv, &i, &tmpl);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(init_usage, stdout);
            return 0;
        }
        if (argv[i][0] == '-' || dir) {
            cli_printf_err("init: unexpected '%s'\n%s", argv[i], init_usage);
            return 2;
        }
        dir = argv[i];
    }
    int t = -1;
    for (int i = 0; tmpl && names[i]; i++)
        if (!strcmp(tmpl, names[i])) t = i;
    if (t < 0 || !dir) {
        cli_printf_err("init: %s\n%s", !dir ? "a directory is required"
                                            : "--template must be video, ads, "
                                              "search or fraud", init_usage);
        return 2;
    }
    rk_err err = {0};
    if (rk_mkdir_p(dir, &err)) {
        cli_printf_err("init: %s", err.msg);
        return 1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/rankd.yaml", dir);
    /* O_EXCL semantics: never replace a config someone already edited. */
    FILE *f = fopen(path, "wx");
    if (!f) {
        cli_printf_err("init: cannot create %s: %s", path,
                       errno == EEXIST ? "it already exists" : strerror(errno));
        return 1;
    }
    int rc = 0;
    if (t == 0) {
        rk_sim_opts so;
        rk_sim_opts_default(&so);
        rc = rk_sim_write_config(f, &so);
        if (!rc && fputs(video_monitor_yaml, f) < 0) rc = -1;
    } else {
        const char *text = t == 1 ? ads_yaml : t == 2 ? search_yaml : fraud_yaml;
        rc = fputs(text, f) < 0 ? -1 : 0;
    }
    if (fclose(f) || rc) {
        cli_printf_err("init: cannot write %s", path);
        remove(path);
        return 1;
    }
    printf("wrote %s (template %s)\n", path, names[t]);
    /* Every %s of the steps is the directory. */
    printf(next_steps[t], dir, dir, dir, dir, dir, dir);
    return 0;
}
