/*
 * rank.c — `rankd train --ranker gbdt|ftrl|fm`: trains a ranking model on
 * a labelled-row dataset (Criteo, Avazu, LETOR, tabular CSV) or on the
 * event log replayed point in time with the declared features, evaluates
 * it on the validation (and optional test) rows, and publishes it to the
 * model registry behind the promotion gate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char rank_usage[] =
    "usage: rankd train --ranker gbdt|ftrl|fm [--data DIR] [--config FILE]\n"
    "         [--dataset NAME] [--valid-dataset NAME | --valid-frac F]\n"
    "         [--test-dataset NAME] [--task binary|rank]\n"
    "         [--calibration none|platt|isotonic] [--downsample R [--reweight]]\n"
    "         [--balanced] [--hash-bits B] [--name NAME] [--no-publish]\n"
    "         [--gate-delta D] [--gate-metrics M,M...] [--json] [--seed N]\n"
    "         [--split-seed N] [--test-frac F] [--from-log [MODEL]]\n"
    "         [--as-of TIME] [--window DURATION]\n"
    "  gbdt:  [--trees N] [--depth D] [--eta E] [--min-child-weight W]\n"
    "         [--subsample S] [--colsample S] [--lambda L] [--max-bin B]\n"
    "         [--early-stopping N] [--threads N] [--sparse-cols N]\n"
    "  ftrl:  [--alpha A] [--beta B] [--l1 L] [--l2 L] [--epochs N]\n"
    "  fm:    [--factors K] [--lr R] [--reg R] [--epochs N] [--patience N]\n"
    "Without --dataset the training rows come from replaying the event log\n"
    "with the config's features (exposures labelled by later positives).\n"
    "With --from-log they are the feature vectors `rankd serve` logged for\n"
    "MODEL (default: --name) joined with the labels of later events\n"
    "(labels: in the config); the new version keeps that model's spec.\n"
    "--as-of TIME (ISO-8601 or epoch seconds/ms) is the time the label\n"
    "windows are judged at (default: now, or the newest event's time when\n"
    "it is later); a server with serve.clock: event passes its own clock.\n"
    "--window DURATION (e.g. 12h, 3d) keeps the logged requests served\n"
    "within that span before it: a model of the recent past.\n"
    "See docs/ranking.md.\n";

typedef struct rank_args {
    const char *ranker, *dataset, *valid_ds, *test_ds, *task, *calib, *name;
    const char *log_model;     /* --from-log: the served model's name */
    const char *gate_metrics;  /* --gate-metrics: comma list, NULL = all */
    int from_log;
    int64_t as_of_ms;          /* --as-of: label windows judged then; 0 = now */
    int64_t window_ms;         /* --window: rows served within it before then */
    double valid_frac, test_frac, downsample, gate_delta;
    uint64_t split_seed;  /* 0 = split in row order */
    int reweight, balanced, publish, json;
    uint32_t hash_bits;
    uint64_t seed;
    rk_ranker_opts o;
} rank_args;

/* Whether name is one of the comma-separated names of list. */
static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* --gate-metrics: every name must be a metric with a direction (the
 * gate needs to know whether higher or lower is better). */
static int check_gate_metrics(const char *list)
{
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), p);
        if (!len || len > 63 || rk_metric_direction(name) == RK_METRIC_AUTO) {
            cli_printf_err("--gate-metrics: '%.*s' is not a metric the gate can "
                           "compare (auc, pr_auc, logloss, ne, calibration, gauc, "
                           "ndcg@K, map...)\n", (int)len, p);
            return -1;
        }
        if (!e) return 0;
        p = e + 1;
    }
}

static int num_opt(const char *name, int argc, char **argv, int *i, double lo,
                   double hi, double *out)
{
    const char *v;
    int r = cli_opt(name, argc, argv, i, &v);
    if (r <= 0) return r;
    char *end;
    double x = strtod(v, &end);
    if (*end || !isfinite(x) || x < lo || x > hi) {
        cli_printf_err("%s: expected a number in [%g, %g], got '%s'\n", name, lo,
                       hi, v);
        return -1;
    }
    *out = x;
    return 1;
}

static int u32_opt(const char *name, int argc, char **argv, int *i,
                   uint64_t max, uint32_t *out)
{
    const char *v;
    int r = cli_opt(name, argc, argv, i, &v);
    if (r <= 0) return r;
    uint64_t x;
    if (cli_uint(name, v, max, &x)) return -1;
    *out = (uint32_t)x;
    return 1;
}

/* Model hyper-parameters; 1 consumed, 0 not ours, -1 bad value. */
static int model_opt(rank_args *a, int argc, char **argv, int *i)
{
    rk_ranker_opts *o = &a->o;
    double d;
    int r;
#define NUM(name, lo, hi, dst)                                                   \
    if ((r = num_opt(name, argc, argv, i, lo, hi, &d))) {                        \
        if (r > 0) dst = d;                                                      \
        return r;                                                                \
    }
#define U32(name, max, dst)                                                      \
    if ((r = u32_opt(name, argc, argv, i, max, &dst))) return r;
    U32("--trees", 100000, o->gbdt.ntrees)
    U32("--depth", 30, o->gbdt.max_depth)
    NUM("--eta", 1e-6, 1, o->gbdt.eta)
    NUM("--min-child-weight", 0, 1e9, o->gbdt.min_child_weight)
    NUM("--subsample", 1e-6, 1, o->gbdt.subsample)
    NUM("--colsample", 1e-6, 1, o->gbdt.colsample_bytree)
    NUM("--lambda", 0, 1e9, o->gbdt.lambda)
    U32("--max-bin", 65535, o->gbdt.max_bin)
    U32("--early-stopping", 100000, o->gbdt.early_stopping_rounds)
    U32("--threads", 1024, o->gbdt.nthread)
    U32("--sparse-cols", 1u << 20, o->gbdt_sparse_cols)
    NUM("--alpha", 1e-9, 1e9, o->ftrl.alpha)
    NUM("--beta", 0, 1e9, o->ftrl.beta)
    NUM("--l1", 0, 1e9, o->ftrl.l1)
    NUM("--l2", 0, 1e9, o->ftrl.l2)
    if ((r = u32_opt("--epochs", argc, argv, i, 10000, &o->ftrl_train.epochs))) {
        o->fm_train.epochs = o->ftrl_train.epochs;
        return r;
    }
    U32("--factors", 1024, o->fm.k)
    NUM("--lr", 1e-9, 100, o->fm.lr)
    if ((r = num_opt("--reg", argc, argv, i, 0, 1e9, &d))) {
        if (r > 0) o->fm.l2_w = o->fm.l2_v = d;
        return r;
    }
    U32("--patience", 10000, o->fm_train.patience)
#undef NUM
#undef U32
    return 0;
}

static int parse_args(rank_args *a, cli_common *c, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    rk_ranker_opts_default(&a->o);
    a->valid_frac = 0.2;
    a->downsample = 1;
    a->gate_delta = 0.001;
    a->publish = 1;
    a->seed = 42;
    /* One XGBoost thread unless asked: its OpenMP workers spin while they
     * wait, which on a shared or busy machine costs far more than the
     * parallelism gains on the data sizes a CLI run usually sees. */
    a->o.gbdt.nthread = 1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        double d;
        if ((r = cli_common_opt(c, argc, argv, &i)) ||
            (r = cli_opt("--ranker", argc, argv, &i, &a->ranker)) ||
            (r = cli_opt("--dataset", argc, argv, &i, &a->dataset)) ||
            (r = cli_opt("--valid-dataset", argc, argv, &i, &a->valid_ds)) ||
            (r = cli_opt("--test-dataset", argc, argv, &i, &a->test_ds)) ||
            (r = cli_opt("--task", argc, argv, &i, &a->task)) ||
            (r = cli_opt("--calibration", argc, argv, &i, &a->calib)) ||
            (r = cli_opt("--name", argc, argv, &i, &a->name)) ||
            (r = cli_opt("--gate-metrics", argc, argv, &i, &a->gate_metrics)) ||
            (r = num_opt("--valid-frac", argc, argv, &i, 0.01, 0.99, &a->valid_frac)) ||
            (r = num_opt("--downsample", argc, argv, &i, 1e-6, 1, &a->downsample)) ||
            (r = num_opt("--test-frac", argc, argv, &i, 0.01, 0.9, &a->test_frac)) ||
            (r = num_opt("--gate-delta", argc, argv, &i, 0, 1e9, &a->gate_delta)) ||
            (r = model_opt(a, argc, argv, &i))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--hash-bits", argc, argv, &i, &v))) {
            uint64_t x;
            if (r < 0 || cli_uint("--hash-bits", v, 30, &x)) return 2;
            a->hash_bits = (uint32_t)x;
        } else if ((r = cli_opt("--split-seed", argc, argv, &i, &v))) {
            if (r < 0 || cli_uint("--split-seed", v, UINT32_MAX, &a->split_seed)) return 2;
        } else if ((r = cli_opt("--seed", argc, argv, &i, &v))) {
            if (r < 0 || cli_uint("--seed", v, UINT32_MAX, &a->seed)) return 2;
        } else if ((r = cli_opt("--as-of", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (rk_parse_time_ms(v, strlen(v), &a->as_of_ms) || a->as_of_ms <= 0) {
                cli_printf_err("train: --as-of: expected an ISO-8601 time or "
                               "epoch seconds/ms after 1970, not '%s'\n", v);
                return 2;
            }
        } else if ((r = cli_opt("--window", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (rk_parse_duration_ms(v, &a->window_ms, NULL) || a->window_ms <= 0) {
                cli_printf_err("train: --window: expected a duration like 6h or 2d "
                               "(units ms, s, m, h, d, w), not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(argv[i], "--from-log") == 0) {
            a->from_log = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-') a->log_model = argv[++i];
        } else if (strcmp(argv[i], "--reweight") == 0) {
            a->reweight = 1;
        } else if (strcmp(argv[i], "--balanced") == 0) {
            a->balanced = 1;
        } else if (strcmp(argv[i], "--no-publish") == 0) {
            a->publish = 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(rank_usage, stdout);
            return 1;
        } else {
            cli_printf_err("train: unexpected '%s'\n%s", argv[i], rank_usage);
            return 2;
        }
        (void)d;
    }
    rk_err err = {0};
    if (!a->ranker || rk_ranker_kind_parse(a->ranker, &a->o.kind, &err)) {
        cli_printf_err("train: %s\n%s", a->ranker ? err.msg : "--ranker is required",
                       rank_usage);
        return 2;
    }
    if (a->task && strcmp(a->task, "binary") && strcmp(a->task, "rank")) {
        cli_printf_err("train: --task is binary or rank, not '%s'\n", a->task);
        return 2;
    }
    a->o.task = a->task && strcmp(a->task, "rank") == 0 ? RK_TASK_RANK : RK_TASK_BINARY;
    if (a->gate_metrics && check_gate_metrics(a->gate_metrics)) return 2;
    if (a->as_of_ms && !a->from_log) {
        cli_printf_err("train: --as-of applies to --from-log (the label join)\n");
        return 2;
    }
    if (a->window_ms && !a->from_log) {
        cli_printf_err("train: --window applies to --from-log (the logged requests)\n");
        return 2;
    }
    if (a->calib) {
        if (strcmp(a->calib, "none") == 0) a->o.calib = RK_CALIB_NONE;
        else if (strcmp(a->calib, "platt") == 0) a->o.calib = RK_CALIB_PLATT;
        else if (strcmp(a->calib, "isotonic") == 0) a->o.calib = RK_CALIB_ISOTONIC;
        else {
            cli_printf_err("train: --calibration is none, platt or isotonic\n");
            return 2;
        }
    }
    a->o.gbdt.seed = (uint32_t)a->seed;
    a->o.ftrl_train.seed = a->seed;
    a->o.fm.seed = a->seed;
    a->o.fm_train.seed = a->seed;
    if (!a->name) a->name = rk_ranker_kind_name(a->o.kind);
    return 0;
}

/* Rows of one dataset, or of several separated by commas appended in
 * order (LETOR folds are unions of partitions), through the spec. */
static int load_dataset(const rk_feat_spec *spec, rk_reader *rd,
                        const char *names, rk_trainset **out, rk_err *err)
{
    int rc = rk_trainset_create(out, rk_feat_ndense(spec), rk_feat_hash_bits(spec), 0);
    if (rc) return rk_err_set(err, rc, "training set: %s", rk_strerror(rc));
    for (const char *p = names; !rc && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char name[RK_NAME_MAX + 1];
        if (n == 0 || n > RK_NAME_MAX) {
            rc = rk_err_set(err, RK_EINVAL, "bad dataset name in '%s'", names);
            break;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        rc = rk_feat_trainset_from_dataset(spec, rd, name, *out, err);
        if (rc == RK_ENOTFOUND)
            rk_err_set(err, rc, "no dataset '%s' in the store (see `rankd stats`)",
                       name);
        p = e ? e + 1 : p + n;
    }
    if (rc) {
        rk_trainset_destroy(*out);
        *out = NULL;
    }
    return rc;
}

/* The spec of a dataset list: sized by the first one. */
static int dataset_spec(rk_reader *rd, const char *names, uint32_t hash_bits,
                        rk_feat_spec **out, rk_err *err)
{
    char first[RK_NAME_MAX + 1];
    size_t n = strcspn(names, ",");
    if (n == 0 || n > RK_NAME_MAX)
        return rk_err_set(err, RK_EINVAL, "bad dataset name in '%s'", names);
    memcpy(first, names, n);
    first[n] = '\0';
    int rc = rk_feat_spec_for_dataset(out, rd, first, hash_bits, err);
    if (rc == RK_ENOTFOUND)
        rk_err_set(err, rc, "no dataset '%s' in the store (see `rankd stats`)", first);
    return rc;
}

/* Rows [lo, hi) of a set (fractions of its rows, in its order) copied
 * into a new set. Dataset rows carry no time, so their order (or a seeded
 * shuffle of it) stands for it. */
static int slice_rows(const rk_trainset *all, double lo, double hi,
                      rk_trainset **out)
{
    size_t n = rk_trainset_rows(all);
    size_t a = (size_t)floor(lo * (double)n), b = (size_t)floor(hi * (double)n);
    int rc = rk_trainset_create(out, rk_trainset_ndense(all),
                                rk_trainset_hash_bits(all), 0);
    for (size_t i = a; !rc && i < b; i++) {
        rk_trow row;
        rk_trainset_get(all, i, &row);
        rc = rk_trainset_add(*out, &row.x, row.label, row.weight, row.group,
                             row.ts_ms);
    }
    return rc;
}

static void print_eval(const char *what, const rk_ranker_eval *e)
{
    printf("  %-10s rows %-8llu", what, (unsigned long long)e->rows);
    for (size_t i = 0; i < e->n; i++) printf("  %s %.4f", e->m[i].name, e->m[i].value);
    printf("\n");
}

static void json_eval(rk_buf *b, const char *what, const rk_ranker_eval *e)
{
    (void)rk_buf_printf(b, ",\"%s\":{\"rows\":%llu", what, (unsigned long long)e->rows);
    for (size_t i = 0; i < e->n; i++) {
        if (isfinite(e->m[i].value))
            (void)rk_buf_printf(b, ",\"%s\":%.6f", e->m[i].name, e->m[i].value);
        else
            (void)rk_buf_printf(b, ",\"%s\":null", e->m[i].name);
    }
    (void)rk_buf_puts(b, "}");
}

/* Reference histograms of every dense column and of the prediction, for
 * the monitor to compare live traffic with. */
typedef struct refs {
    rk_refhist **h;
    size_t n;
    rk_refhist *pred;
} refs;

static void refs_free(refs *r)
{
    for (size_t i = 0; i < r->n; i++) rk_refhist_free(r->h[i]);
    rk_free(r->h);
    rk_refhist_free(r->pred);
    memset(r, 0, sizeof *r);
}

static int build_refs(const rk_feat_spec *spec, const rk_ranker *model,
                      const rk_trainset *t, refs *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    size_t n = rk_trainset_rows(t);
    uint32_t nd = rk_feat_ndense(spec);
    float *col = rk_malloc((n ? n : 1) * sizeof *col);
    out->h = rk_calloc(nd ? nd : 1, sizeof *out->h);
    int rc = col && out->h ? 0 : rk_err_set(err, RK_ENOMEM, "out of memory");
    for (uint32_t j = 0; !rc && j < nd; j++) {
        for (size_t i = 0; i < n; i++) {
            rk_trow row;
            rk_trainset_get(t, i, &row);
            col[i] = row.x.dense[j];
        }
        rc = rk_refhist_numeric(&out->h[j], rk_feat_dense_name(spec, j), col, n, 1,
                                0, err);
        if (!rc) out->n++;
    }
    if (!rc) rc = rk_ranker_predict_set(model, t, col, err);
    if (!rc) rc = rk_refhist_numeric(&out->pred, "prediction", col, n, 1, 0, err);
    rk_free(col);
    if (rc) refs_free(out);
    return rc;
}

/* The current version of registry name `model` under models dir `dir`, as
 * a ranker (*out NULL and 0 returned when there is no current version). */
static int load_current(const char *dir, const char *model, rk_ranker **out,
                        uint32_t *version, rk_err *err)
{
    char path[4400];
    rk_registry *reg = NULL;
    uint32_t cur = 0, prev = 0;
    *out = NULL;
    int rc = rk_registry_open(&reg, dir, NULL, err);
    if (!rc) rc = rk_registry_current(reg, model, &cur, &prev, err);
    rk_registry_close(reg);
    if (rc || !cur) return rc;
    snprintf(path, sizeof path, "%s/%s/%u/model.rk", dir, model, cur);
    rk_artifact art;
    if ((rc = rk_artifact_read(path, &art, err))) return rc;
    rc = rk_ranker_load(out, art.payload, art.len, err);
    rk_artifact_free(&art);
    if (!rc && version) *version = cur;
    return rc ? rk_err_prefix(err, "%s", path) : 0;
}

static int publish(const rank_args *a, const cli_env *env, const rk_feat_spec *spec,
                   const rk_ranker *model, const rk_trainset *train,
                   const rk_trainset *valid, const rk_ranker_eval *ev,
                   rk_publish_result *res, rk_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models", env->store.path);
    rk_registry *reg = NULL;
    rk_buf payload, params;
    rk_buf_init(&payload, 0);
    rk_buf_init(&params, 1 << 16);
    refs rf = {0};
    int rc = rk_registry_open(&reg, dir, NULL, err);
    if (!rc) rc = rk_ranker_save(model, &payload, err);
    if (!rc) rc = build_refs(spec, model, train, &rf, err);
    if (rc) goto out;
    (void)rk_buf_printf(&params, "{\"ranker\":\"%s\",\"task\":\"%s\",\"dataset\":",
                        rk_ranker_kind_name(a->o.kind),
                        a->o.task == RK_TASK_RANK ? "rank" : "binary");
    (void)rk_buf_put_json_str(&params, a->dataset ? a->dataset : "(event log)",
                              strlen(a->dataset ? a->dataset : "(event log)"));
    (void)rk_buf_printf(&params, ",\"downsample\":%g,\"seed\":%llu}", a->downsample,
                        (unsigned long long)a->seed);
    rk_trainset_summary ts, vs;
    if ((rc = rk_trainset_summarize(train, &ts)) ||
        (rc = rk_trainset_summarize(valid, &vs))) {
        rk_err_set(err, rc, "publish: %s", rk_strerror(rc));
        goto out;
    }
    rk_model_meta meta = {0};
    meta.name = a->name;
    meta.kind = rk_ranker_kind_name(a->o.kind);
    meta.train_from_ms = ts.ts_min;
    meta.train_to_ms = ts.ts_max;
    meta.valid_from_ms = vs.ts_min;
    meta.valid_to_ms = vs.ts_max;
    meta.train_rows = ts.rows;
    meta.valid_rows = vs.rows;
    meta.feature_schema_hash = rk_feat_schema_hash(spec);
    meta.nmetrics = ev->n;
    meta.metrics = ev->m;
    meta.params_json = params.data;
    meta.nfeatures = rf.n;
    meta.features = rf.h;
    meta.prediction = rf.pred;
    rk_gate_opts gate = {0};
    rk_publish_opts po = {0};
    rk_gate_rule rules[RK_RANKER_MAX_METRICS];
    size_t nr = 0;
    for (size_t i = 0; i < ev->n && nr < RK_RANKER_MAX_METRICS; i++) {
        if (rk_metric_direction(ev->m[i].name) == RK_METRIC_AUTO) continue;
        if (a->gate_metrics && !in_list(a->gate_metrics, ev->m[i].name)) continue;
        rules[nr++] = (rk_gate_rule){ev->m[i].name, RK_METRIC_AUTO, a->gate_delta, 0, 0};
    }
    gate.rules = rules;
    gate.nrules = nr;
    /* Dataset rows have no time: both versions were measured on the same
     * named validation rows when the dataset is the same. */
    gate.allow_window_mismatch = a->dataset != NULL;
    po.gate = &gate;
    /* A later window: the current version is measured on the candidate's
     * validation rows, so both are compared on the same data (a current
     * model of another feature space cannot be: then its meta.json's
     * metrics are used, and the gate fails on the window mismatch). */
    rk_ranker *cur = NULL;
    rk_ranker_eval cev;
    rk_metric_set curset = {0};
    rk_err e2 = {0};
    if (!a->dataset && !load_current(dir, a->name, &cur, NULL, &e2) && cur &&
        !rk_ranker_evaluate(cur, valid, &cev, &e2)) {
        curset.metrics = cev.m;
        curset.n = cev.n;
        curset.valid_from_ms = vs.ts_min;
        curset.valid_to_ms = vs.ts_max;
        po.current = &curset;
    }
    rk_ranker_destroy(cur);
    rk_model_kind kind = a->o.kind == RK_RANKER_GBDT   ? RK_MODEL_GBDT
                         : a->o.kind == RK_RANKER_FTRL ? RK_MODEL_FTRL
                                                       : RK_MODEL_FM;
    rc = rk_registry_publish(reg, &meta, kind, payload.data, payload.len, &po, res, err);
out:
    refs_free(&rf);
    rk_buf_free(&payload);
    rk_buf_free(&params);
    rk_registry_close(reg);
    return rc;
}

/* --from-log: the rows are what `rankd serve` logged for the served model
 * (its current version's own spec computed them, so the new version keeps
 * that spec: no skew between the logged vectors and the model), joined
 * with the labels of the events that carry the requests' ids. */
static int log_trainset(const rank_args *a, const cli_env *env, rk_store *s,
                        rk_reader *rd, rk_feat_spec **spec, rk_trainset **all,
                        rk_err *err)
{
    const char *model = a->log_model ? a->log_model : a->name;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/models", env->store.path);
    rk_ranker *served = NULL;
    uint32_t cur = 0;
    int rc = load_current(dir, model, &served, &cur, err);
    if (rc) return rk_err_prefix(err, "--from-log %s", model);
    if (!served)
        return rk_err_set(err, RK_ENOTFOUND, "--from-log %s: no current version",
                          model);
    size_t n = 0;
    const void *sp = rk_ranker_spec(served, &n);
    if (!sp)
        rc = rk_err_set(err, RK_EINVAL, "%s version %u: the model carries no "
                        "feature spec", model, cur);
    if (!rc) rc = rk_feat_spec_load(spec, sp, n, rk_store_schema(s), err);
    rk_ranker_destroy(served);
    if (rc) return rc;
    rk_label_conf lc;
    rk_label_conf_default(&lc, rk_store_schema(s));
    if ((rc = rk_label_conf_from_conf(&lc, cli_conf_root(env), rk_store_schema(s), err)))
        return rc;
    lc.model = model;
    if ((rc = rk_trainset_create(all, rk_feat_ndense(*spec), rk_feat_hash_bits(*spec), 0)))
        return rk_err_set(err, rc, "training set: %s", rk_strerror(rc));
    rk_join_stats st;
    int64_t now = a->as_of_ms ? a->as_of_ms : cli_store_now(rd);
    int64_t from = a->window_ms && now > INT64_MIN + a->window_ms ? now - a->window_ms : 0;
    rc = rk_labels_join(rd, &lc, now, from, INT64_MAX, *all, &st, err);
    if (!rc && rk_trainset_rows(*all) == 0)
        rc = rk_err_set(err, RK_EINVAL, "the feature log of '%s' gives no rows%s (%llu "
                        "requests joined, %llu still inside the label window): "
                        "serve traffic first", model,
                        a->window_ms ? " within --window" : "",
                        (unsigned long long)st.requests, (unsigned long long)st.pending);
    return rc;
}

int cli_train_ranker(int argc, char **argv)
{
    rank_args a;
    cli_common c = {0};
    int prc = parse_args(&a, &c, argc, argv);
    if (prc) return prc == 1 ? 0 : prc;
    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    rk_err err = {0};
    rk_store *s = NULL;
    rk_reader *rd = NULL;
    rk_feat_spec *spec = NULL;
    rk_trainset *all = NULL, *train = NULL, *valid = NULL, *test = NULL;
    rk_ranker *model = NULL;
    rk_buf specb, out;
    rk_buf_init(&specb, 0);
    rk_buf_init(&out, 0);
    if ((rc = cli_open_store(&env, 1, &s))) goto done;
    if ((rc = rk_store_reader(s, &rd, &err))) goto fail;
    uint64_t t0 = rk_clock_mono_ns();
    if (a.dataset) {
        rc = dataset_spec(rd, a.dataset, a.hash_bits, &spec, &err);
        if (!rc) rc = load_dataset(spec, rd, a.dataset, &all, &err);
        if (!rc && a.split_seed && (rc = rk_trainset_shuffle(all, a.split_seed)))
            rk_err_set(&err, rc, "shuffle: %s", rk_strerror(rc));
        /* Without named validation/test datasets they are cut from the
         * end of the training rows: [.. train | valid | test]. */
        double tf = a.test_ds ? 0 : a.test_frac;
        double vf = a.valid_ds ? 0 : a.valid_frac;
        if (!rc && vf + tf >= 0.95)
            rc = rk_err_set(&err, RK_EINVAL, "--valid-frac + --test-frac leave "
                            "too few training rows");
        if (!rc && (rc = slice_rows(all, 0, 1 - vf - tf, &train)))
            rk_err_set(&err, rc, "split: %s", rk_strerror(rc));
        if (!rc && a.valid_ds) rc = load_dataset(spec, rd, a.valid_ds, &valid, &err);
        else if (!rc && (rc = slice_rows(all, 1 - vf - tf, 1 - tf, &valid)))
            rk_err_set(&err, rc, "split: %s", rk_strerror(rc));
        if (!rc && a.test_ds) rc = load_dataset(spec, rd, a.test_ds, &test, &err);
        else if (!rc && tf > 0 && (rc = slice_rows(all, 1 - tf, 1, &test)))
            rk_err_set(&err, rc, "split: %s", rk_strerror(rc));
    } else if (a.from_log) {
        rc = log_trainset(&a, &env, s, rd, &spec, &all, &err);
        int64_t cut = 0;
        if (!rc) rc = rk_trainset_split_point(all, a.valid_frac, 1, &cut);
        if (!rc) rc = rk_trainset_split_time(all, cut, &train, &valid);
        if (rc && !err.msg[0]) rk_err_set(&err, rc, "%s", rk_strerror(rc));
    } else {
        rc = rk_feat_spec_from_conf(&spec, cli_conf_root(&env),
                                    rk_store_schema(s), &err);
        if (!rc && rk_feat_needs_fit(spec)) {
            rk_feat_fit_opts fo;
            rk_feat_fit_opts_default(&fo);
            rc = rk_feat_fit(spec, rd, &fo, &err);
        }
        if (!rc) rc = rk_trainset_create(&all, rk_feat_ndense(spec),
                                         rk_feat_hash_bits(spec), 0);
        rk_feat_label_opts lo;
        rk_feat_label_opts_default(&lo);
        if (!rc) rc = rk_feat_trainset_from_replay(spec, rd, &lo, all, &err);
        int64_t cut = 0;
        if (!rc && rk_trainset_rows(all) == 0)
            rc = rk_err_set(&err, RK_EINVAL, "the event log gives no training rows "
                            "(no exposure events with a known label)");
        if (!rc) rc = rk_trainset_split_point(all, a.valid_frac, 1, &cut);
        if (!rc) rc = rk_trainset_split_time(all, cut, &train, &valid);
        if (rc && !err.msg[0]) rk_err_set(&err, rc, "%s", rk_strerror(rc));
    }
    if (rc) goto fail;
    if (a.downsample < 1 &&
        (rc = rk_trainset_downsample(train, a.downsample, a.reweight, a.seed))) {
        rk_err_set(&err, rc, "--downsample: %s", rk_strerror(rc));
        goto fail;
    }
    if (a.balanced && (rc = rk_trainset_balance(train, NULL, NULL))) {
        rk_err_set(&err, rc, "--balanced: %s", rk_strerror(rc));
        goto fail;
    }
    uint64_t t1 = rk_clock_mono_ns();
    if ((rc = rk_ranker_train(&model, train, valid, &a.o, &err))) goto fail;
    uint64_t t2 = rk_clock_mono_ns();
    if ((rc = rk_feat_spec_save(spec, &specb)) ||
        (rc = rk_ranker_set_spec(model, specb.data, specb.len))) {
        rk_err_set(&err, rc, "feature spec: %s", rk_strerror(rc));
        goto fail;
    }
    rk_ranker_eval ev_valid, ev_test;
    if ((rc = rk_ranker_evaluate(model, valid, &ev_valid, &err))) goto fail;
    if (test && (rc = rk_ranker_evaluate(model, test, &ev_test, &err))) goto fail;
    rk_publish_result pres = {0};
    if (a.publish &&
        (rc = publish(&a, &env, spec, model, train, valid, &ev_valid, &pres, &err)))
        goto fail;
    double load_s = (double)(t1 - t0) / 1e9, train_s = (double)(t2 - t1) / 1e9;
    if (a.json) {
        (void)rk_buf_printf(&out, "{\"ranker\":\"%s\",\"task\":\"%s\",\"name\":",
                            rk_ranker_kind_name(a.o.kind),
                            a.o.task == RK_TASK_RANK ? "rank" : "binary");
        (void)rk_buf_put_json_str(&out, a.name, strlen(a.name));
        (void)rk_buf_printf(&out, ",\"train_rows\":%zu,\"load_sec\":%.3f,"
                            "\"train_sec\":%.3f", rk_trainset_rows(train), load_s,
                            train_s);
        json_eval(&out, "valid", &ev_valid);
        if (test) json_eval(&out, "test", &ev_test);
        if (a.publish) {
            (void)rk_buf_printf(&out, ",\"version\":%u,\"promoted\":%s,\"reason\":",
                                pres.version, pres.promoted ? "true" : "false");
            (void)rk_buf_put_json_str(&out, pres.reason, strlen(pres.reason));
        }
        (void)rk_buf_puts(&out, "}\n");
        fputs(out.data, stdout);
    } else {
        printf("%s (%s) on %s: %zu training rows, loaded in %.2f s, trained in %.2f s\n",
               rk_ranker_kind_name(a.o.kind),
               a.o.task == RK_TASK_RANK ? "rank" : "binary",
               a.dataset    ? a.dataset
               : a.from_log ? "the feature log"
                            : "the event log",
               rk_trainset_rows(train),
               load_s, train_s);
        print_eval("valid", &ev_valid);
        if (test) print_eval("test", &ev_test);
        if (a.publish)
            printf("published %s version %u: %s (%s)\n", a.name, pres.version,
                   pres.promoted ? "promoted to current" : "kept as a candidate",
                   pres.reason);
    }
    goto done;
fail:
    cli_printf_err("train: %s\n", err.msg[0] ? err.msg : rk_strerror(rc));
    rc = 1;
done:
    rk_ranker_destroy(model);
    rk_trainset_destroy(all);
    rk_trainset_destroy(train);
    rk_trainset_destroy(valid);
    rk_trainset_destroy(test);
    rk_feat_spec_destroy(spec);
    rk_buf_free(&specb);
    rk_buf_free(&out);
    rk_reader_close(rd);
    rk_store_close(s);
    cli_env_free(&env);
    return rc;
}
