/*
 * drift.c — `rankd drift`: compares what a ranker version served (its
 * feature log: the logged input vectors and scores of served items) with
 * the reference histograms of its training rows (meta.json), feature by
 * feature with the detector of src/monitor, and prints a table sorted by
 * drift, JSON, or a self-contained HTML report with inline SVG histograms.
 * Concept drift comes with it: the version's served items joined with the
 * events that followed them by the training path's label join
 * (rk_labels_visit, the `labels:` section), their served scores scored
 * as the server's online metrics score them (binary label, unweighted,
 * unexposed items left out when exposure is required) and compared with
 * the version's offline validation values from meta.json. The detector
 * options are the config's monitor: section, read by the same function as
 * the server's (rk_drift_opts_from_conf), so both give one verdict.
 * The live counterpart is the server's GET /v1/monitor/drift.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rk_monitor.h"

static const char drift_usage[] =
    "usage: rankd drift [--data DIR] [--config FILE] [--model NAME] [--version V]\n"
    "                   [--from TIME] [--to TIME] [--max-rows N] [--json]\n"
    "                   [--html FILE] [--as-of TIME]\n"
    "Served items of the model version (default: serve.ranker, its current\n"
    "version) from the feature log between --from and --to (default: all),\n"
    "at most the latest --max-rows (100000), against the version's training\n"
    "reference. --html writes a report with a histogram per feature.\n"
    "Concept drift: the served items whose label window (labels.window) has\n"
    "passed, labelled by the later events carrying their request id as the\n"
    "labels: section says; online log loss, AUC and calibration of the\n"
    "served scores against the version's offline validation values.\n"
    "--as-of TIME: judge the label windows at TIME instead of now (default:\n"
    "now, or the newest event's time when it is later, as for a store served\n"
    "with serve.clock: event).\n"
    "The detector options come from the config's monitor: section, as for\n"
    "rankd serve: small_reference, ks_alpha, chi2_alpha, wasserstein, js, psi,\n"
    "dataset_share, noise_alpha, exclude.\n";

typedef struct collect {
    const char *model;
    uint32_t version;
    uint32_t nref;            /* reference features (inputs) */
    const int32_t *col;       /* reference i -> logged dense column */
    float *vals;              /* ring: max_rows x (nref + 1) */
    uint32_t *grp;            /* ring: user keys, then item keys (2 x max_rows) */
    size_t max_rows, next, rows;
    uint64_t requests;
    int64_t now_ms, window_ms;
    uint64_t pending;         /* requests whose label window is still open */
} collect;

static int on_entry(void *arg, const rk_flog_entry *e)
{
    collect *c = arg;
    if (strcmp(e->model, c->model) || e->model_version != c->version) return 0;
    c->requests++;
    /* The label join's own test for a request it leaves for later. */
    if (e->ts_ms > INT64_MAX - c->window_ms || e->ts_ms + c->window_ms > c->now_ms)
        c->pending++;
    /* The rows' groups, as the server's window keeps them: the user (the
     * request without one) and the item. */
    uint32_t ukey = e->user && e->user[0]
                        ? (uint32_t)rk_hash64(e->user, strlen(e->user), 0)
                        : (uint32_t)rk_hash64(e->request_id, strlen(e->request_id), 1);
    for (uint32_t k = 0; k < e->nitems; k++) {
        const rk_flog_item *it = &e->items[k];
        if (!it->x.ndense) continue; /* not ranked (exploration) */
        c->grp[c->next] = ukey;
        c->grp[c->max_rows + c->next] = (uint32_t)rk_hash64(it->item, strlen(it->item), 2);
        float *row = c->vals + c->next * (c->nref + 1);
        for (uint32_t i = 0; i < c->nref; i++) {
            int32_t j = c->col[i];
            row[i] = j >= 0 && (uint32_t)j < it->x.ndense ? it->x.dense[j] : NAN;
        }
        row[c->nref] = it->score;
        c->next = (c->next + 1) % c->max_rows;
        if (c->rows < c->max_rows) c->rows++;
    }
    return 0;
}

/* ---- concept drift ------------------------------------------------------ */

/* The version's labelled served predictions. */
typedef struct concept {
    rk_concept_acc acc;
    uint64_t unscored;        /* labelled, but the score is not in [0, 1] */
} concept;

/* Each labelled item the join hands over. Like the server's online
 * metrics: positive or not (a graded label or a weight is a gain, not a
 * probability), every prediction weighing 1. */
static int on_label(void *arg, const rk_flog_entry *e, uint32_t i, float label,
                    float weight)
{
    concept *k = arg;
    (void)weight;
    if (rk_concept_add(&k->acc, e->items[i].score, label > 0 ? 1.0f : 0.0f, 1.0f))
        k->unscored++;
    return 0;
}

/* The compared metrics: online, offline (meta.json) and their difference;
 * NaN where undefined or absent. */
enum { CM_LOGLOSS, CM_AUC, CM_CALIBRATION, CM_N };
static const char *const cm_names[CM_N] = {"logloss", "auc", "calibration"};

typedef struct concept_view {
    rk_concept_metrics m;
    double online[CM_N], offline[CM_N], delta[CM_N];
} concept_view;

static void concept_view_of(const concept *k, const rk_model_meta *meta, concept_view *v)
{
    rk_concept_get(&k->acc, &v->m);
    v->online[CM_LOGLOSS] = v->m.logloss;
    v->online[CM_AUC] = v->m.auc;
    v->online[CM_CALIBRATION] = v->m.calibration;
    for (int i = 0; i < CM_N; i++) {
        const rk_metric *x = rk_model_meta_metric(meta, cm_names[i]);
        v->offline[i] = x ? x->value : NAN;
        v->delta[i] = v->online[i] - v->offline[i]; /* NaN when either is */
    }
}

/* Why there is nothing to show, when there is not. */
static const char *no_labels(const concept_view *v, const concept *k, const collect *c,
                             char *buf, size_t n)
{
    if (v->m.n > 0) return NULL;
    if (k->unscored)
        snprintf(buf, n, "no labelled predictions with a score in [0, 1] (%llu "
                 "labelled items scored outside it: a ranking objective's scores "
                 "are not probabilities)", (unsigned long long)k->unscored);
    else if (c->pending)
        snprintf(buf, n, "no labelled predictions yet (%llu requests still inside "
                 "the label window)", (unsigned long long)c->pending);
    else
        snprintf(buf, n, "no labelled predictions (no served item in range was "
                 "labelled)");
    return buf;
}

static const char *num(char *buf, size_t n, double v, int sign)
{
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, sign ? "%+.4f" : "%.4f", v);
    return buf;
}

static void concept_table(const concept_view *v, const concept *k, const collect *c,
                          FILE *o)
{
    char why[256], a[32], b[32], d[32];
    fprintf(o, "\nconcept drift (labels.window %lld ms, %llu requests still inside "
            "it):\n", (long long)c->window_ms, (unsigned long long)c->pending);
    if (no_labels(v, k, c, why, sizeof why)) {
        fprintf(o, "%s\n", why);
        return;
    }
    fprintf(o, "%.0f labelled predictions, %.0f positive (ctr %s, mean prediction "
            "%s)", v->m.n, v->m.positives, num(a, sizeof a, v->m.ctr, 0),
            num(b, sizeof b, v->m.mean_p, 0));
    if (k->unscored)
        fprintf(o, "; %llu scored outside [0, 1] left out",
                (unsigned long long)k->unscored);
    fprintf(o, "\n%-12s %10s %10s %10s\n", "metric", "online", "offline", "delta");
    for (int i = 0; i < CM_N; i++)
        fprintf(o, "%-12s %10s %10s %10s\n", cm_names[i],
                num(a, sizeof a, v->online[i], 0), num(b, sizeof b, v->offline[i], 0),
                num(d, sizeof d, v->delta[i], 1));
}

/* The server's field names (GET /v1/monitor/drift, "concept"), for one
 * version, plus the CLI's unscored count and deltas. */
static void concept_json(const concept_view *v, const concept *k, const collect *c,
                         rk_buf *b)
{
    (void)rk_buf_printf(b, "{\"window_ms\":%lld,\"pending_requests\":%llu,"
                        "\"labelled\":%.0f,\"unscored\":%llu,\"versions\":[{"
                        "\"model\":", (long long)c->window_ms,
                        (unsigned long long)c->pending, v->m.n,
                        (unsigned long long)k->unscored);
    (void)rk_buf_put_json_str(b, c->model, strlen(c->model));
    (void)rk_buf_printf(b, ",\"version\":%u,\"labels\":%.0f,\"positives\":%.0f",
                        c->version, v->m.n, v->m.positives);
    for (int i = 0; i < CM_N; i++) {
        (void)rk_buf_printf(b, ",\"%s\":", cm_names[i]);
        (void)rk_buf_put_json_num(b, v->online[i]);
    }
    (void)rk_buf_puts(b, ",\"ctr\":");
    (void)rk_buf_put_json_num(b, v->m.ctr);
    (void)rk_buf_puts(b, ",\"mean_prediction\":");
    (void)rk_buf_put_json_num(b, v->m.mean_p);
    const double *sets[2] = {v->offline, v->delta};
    for (int s = 0; s < 2; s++) {
        (void)rk_buf_puts(b, s ? "},\"delta\":{" : ",\"offline\":{");
        for (int i = 0; i < CM_N; i++) {
            (void)rk_buf_printf(b, "%s\"%s\":", i ? "," : "", cm_names[i]);
            (void)rk_buf_put_json_num(b, sets[s][i]);
        }
    }
    (void)rk_buf_puts(b, "}}]}");
}

/* A section for the end of the HTML page (numbers and our own words:
 * nothing to escape). */
static void concept_html(const concept_view *v, const concept *k, const collect *c,
                         rk_buf *b)
{
    char why[256], x[32], y[32], z[32];
    (void)rk_buf_printf(b, "<h2>Concept drift</h2><p>Served predictions labelled by "
                        "the events that followed them (labels.window %lld ms); "
                        "%llu requests still inside the window.</p>",
                        (long long)c->window_ms, (unsigned long long)c->pending);
    if (no_labels(v, k, c, why, sizeof why)) {
        (void)rk_buf_printf(b, "<p>%s</p>", why);
        return;
    }
    (void)rk_buf_printf(b, "<p>%.0f labelled predictions, %.0f positive (CTR %s, "
                        "mean prediction %s).</p><table><tr><th>metric</th><th>"
                        "online</th><th>offline (validation)</th><th>delta</th></tr>",
                        v->m.n, v->m.positives, num(x, sizeof x, v->m.ctr, 0),
                        num(y, sizeof y, v->m.mean_p, 0));
    for (int i = 0; i < CM_N; i++)
        (void)rk_buf_printf(b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
                            cm_names[i], num(x, sizeof x, v->online[i], 0),
                            num(y, sizeof y, v->offline[i], 0),
                            num(z, sizeof z, v->delta[i], 1));
    (void)rk_buf_puts(b, "</table>");
}

int cli_drift(int argc, char **argv)
{
    cli_common c = {0};
    const char *model = NULL, *ver = NULL, *from = NULL, *to = NULL, *html = NULL,
               *maxr = NULL, *asof = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--model", argc, argv, &i, &model)) ||
            (r = cli_opt("--version", argc, argv, &i, &ver)) ||
            (r = cli_opt("--from", argc, argv, &i, &from)) ||
            (r = cli_opt("--to", argc, argv, &i, &to)) ||
            (r = cli_opt("--max-rows", argc, argv, &i, &maxr)) ||
            (r = cli_opt("--html", argc, argv, &i, &html)) ||
            (r = cli_opt("--as-of", argc, argv, &i, &asof))) {
            if (r < 0) return 2;
            continue;
        }
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(drift_usage, stdout);
            return 0;
        }
        cli_printf_err("drift: unexpected '%s'\n%s", argv[i], drift_usage);
        return 2;
    }
    uint64_t version = 0, max_rows = 100000;
    int64_t from_ms = 0, to_ms = INT64_MAX, as_of_ms = 0;
    if ((ver && cli_uint("--version", ver, UINT32_MAX, &version)) ||
        (maxr && cli_uint("--max-rows", maxr, 100000000, &max_rows)))
        return 2;
    if ((from && rk_parse_time_ms(from, strlen(from), &from_ms)) ||
        (to && rk_parse_time_ms(to, strlen(to), &to_ms)) ||
        (asof && (rk_parse_time_ms(asof, strlen(asof), &as_of_ms) || as_of_ms <= 0))) {
        cli_printf_err("drift: --from/--to/--as-of: expected a time (epoch ms or "
                       "ISO 8601)");
        return 2;
    }
    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    if (!model) {
        const rk_conf_node *root = cli_conf_root(&env);
        const rk_conf_node *n = root ? rk_conf_find(root, "serve.ranker") : NULL;
        rk_err e2 = {0};
        if (n) (void)rk_conf_as_str(n, NULL, &model, &e2);
    }
    if (!model) {
        cli_printf_err("drift: --model is required (or serve.ranker in the config)");
        cli_env_free(&env);
        return 2;
    }
    rk_err err = {0};
    rk_store *s = NULL;
    rk_reader *rd = NULL;
    rk_registry *reg = NULL;
    rk_version_info vi;
    memset(&vi, 0, sizeof vi);
    rk_artifact art;
    memset(&art, 0, sizeof art);
    rk_ranker *rk = NULL;
    rk_feat_spec *spec = NULL;
    rk_drift_report *rep = NULL;
    collect col = {0};
    concept cpt;
    rk_concept_reset(&cpt.acc);
    cpt.unscored = 0;
    concept_view cv;
    rk_buf extra;
    rk_buf_init(&extra, 0);
    int32_t *cols = NULL;
    /* The server's detector options (monitor:), so both give one verdict. */
    rk_drift_opts dopts;
    const char *excl[RK_DRIFT_EXCLUDE_MAX];
    rk_drift_opts_default(&dopts);
    rc = 1;
    if (rk_drift_opts_from_conf(&dopts, rk_conf_get(cli_conf_root(&env), "monitor"),
                                excl, RK_DRIFT_EXCLUDE_MAX, &err))
        goto fail;
    if (cli_open_store(&env, 1, &s)) goto done;
    char dir[4200], path[4500];
    snprintf(dir, sizeof dir, "%s/models", env.store.path);
    if (rk_registry_open(&reg, dir, NULL, &err) ||
        rk_registry_show(reg, model, (uint32_t)version, &vi, &err))
        goto fail;
    if (!vi.meta.nfeatures) {
        rk_err_set(&err, RK_EINVAL, "%s version %u has no reference histograms "
                   "(train it with rankd train --ranker)", model, vi.version);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s/%u/model.rk", dir, model, vi.version);
    size_t sn = 0;
    const void *sp = NULL;
    if (rk_artifact_read(path, &art, &err) ||
        rk_ranker_load(&rk, art.payload, art.len, &err))
        goto fail;
    sp = rk_ranker_spec(rk, &sn);
    if (!sp || rk_feat_spec_load(&spec, sp, sn, rk_store_schema(s), &err)) {
        if (!err.msg[0]) rk_err_set(&err, RK_EINVAL, "%s: no feature spec", path);
        goto fail;
    }
    uint32_t nref = (uint32_t)vi.meta.nfeatures;
    cols = rk_malloc(nref * sizeof *cols);
    col.vals = rk_malloc((size_t)max_rows * (nref + 1) * sizeof *col.vals);
    col.grp = rk_malloc((size_t)max_rows * 2 * sizeof *col.grp);
    if (!cols || !col.vals || !col.grp) {
        rk_err_set(&err, RK_ENOMEM, "out of memory for %llu rows",
                   (unsigned long long)max_rows);
        goto fail;
    }
    for (uint32_t i = 0; i < nref; i++)
        cols[i] = rk_feat_dense_index(spec, vi.meta.features[i]->name);
    col.model = model;
    col.version = vi.version;
    col.nref = nref;
    col.col = cols;
    col.max_rows = max_rows;
    /* The training path's label rules; one clock for both scans. */
    rk_label_conf lc;
    rk_label_conf_default(&lc, rk_store_schema(s));
    if (rk_label_conf_from_conf(&lc, cli_conf_root(&env), rk_store_schema(s), &err))
        goto fail;
    lc.model = model;
    lc.model_version = vi.version;
    col.window_ms = lc.window_ms;
    if (!rk_store_reader(s, &rd, &err))
        col.now_ms = as_of_ms ? as_of_ms : cli_store_now(rd);
    if (!rd ||
        rk_flog_scan(rd, from_ms, to_ms, on_entry, &col, &err))
        goto fail;
    if (!col.rows) {
        rk_err_set(&err, RK_ENOTFOUND, "the feature log has no served items of %s "
                   "version %u in that range", model, vi.version);
        goto fail;
    }
    if (rk_labels_visit(rd, &lc, col.now_ms, from_ms, to_ms, 0, on_label, &cpt, NULL,
                        &err)) {
        rk_err_prefix(&err, "concept drift");
        goto fail;
    }
    concept_view_of(&cpt, &vi.meta, &cv);
    /* Columns of the ring as samples (order does not matter). */
    {
        size_t nf = nref + 1;
        float *cm = rk_malloc(nf * col.rows * sizeof *cm);
        const float **cur = rk_malloc(nf * sizeof *cur);
        size_t *ncur = rk_malloc(nf * sizeof *ncur);
        int orc = cm && cur && ncur ? 0 : RK_ENOMEM;
        for (size_t f = 0; !orc && f < nf; f++) {
            for (size_t r = 0; r < col.rows; r++)
                cm[f * col.rows + r] = col.vals[r * nf + f];
            cur[f] = cm + f * col.rows;
            ncur[f] = col.rows;
        }
        /* Row r of every column is ring slot r, as are its group keys. */
        rk_drift_groups gr = {col.grp, 2, col.max_rows};
        if (orc) rk_err_set(&err, orc, "out of memory");
        else orc = rk_drift_report_build_grouped(&vi.meta, cur, ncur, &gr, &dopts, &rep,
                                                 &err);
        rk_free(cm);
        rk_free((void *)cur);
        rk_free(ncur);
        if (orc) goto fail;
    }
    if (html) {
        FILE *f = fopen(html, "w");
        char title[512];
        snprintf(title, sizeof title, "rankd drift: %s version %u (%zu served items, "
                 "%llu requests)", model, vi.version, col.rows,
                 (unsigned long long)col.requests);
        concept_html(&cv, &cpt, &col, &extra);
        if (!f || rk_drift_report_html(rep, title, extra.data, f) || fclose(f)) {
            rk_err_set(&err, RK_EIO, "%s: cannot write", html);
            goto fail;
        }
    }
    if (json) {
        rk_buf b;
        rk_buf_init(&b, 0);
        (void)rk_buf_puts(&b, "{\"model\":");
        (void)rk_buf_put_json_str(&b, model, strlen(model));
        (void)rk_buf_printf(&b, ",\"version\":%u,\"rows\":%zu,\"requests\":%llu,"
                            "\"report\":", vi.version, col.rows,
                            (unsigned long long)col.requests);
        rk_drift_report_json(rep, &b);
        (void)rk_buf_puts(&b, ",\"concept\":");
        concept_json(&cv, &cpt, &col, &b);
        (void)rk_buf_puts(&b, "}\n");
        fputs(b.data ? b.data : "", stdout);
        rk_buf_free(&b);
    } else {
        printf("%s version %u: %zu served items of %llu requests against %llu "
               "training rows\n", model, vi.version, col.rows,
               (unsigned long long)col.requests,
               (unsigned long long)vi.meta.train_rows);
        rk_drift_report_table(rep, stdout);
        concept_table(&cv, &cpt, &col, stdout);
        if (html) printf("report: %s\n", html);
    }
    rc = 0;
    goto done;
fail:
    cli_printf_err("drift: %s", err.msg[0] ? err.msg : "failed");
    rc = 1;
done:
    rk_buf_free(&extra);
    rk_drift_report_free(rep);
    rk_free(cols);
    rk_free(col.vals);
    rk_free(col.grp);
    rk_feat_spec_destroy(spec);
    rk_ranker_destroy(rk);
    rk_artifact_free(&art);
    rk_version_info_clear(&vi);
    rk_registry_close(reg);
    rk_reader_close(rd);
    rk_store_close(s);
    cli_env_free(&env);
    return rc;
}
