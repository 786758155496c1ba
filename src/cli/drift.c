/*
 * drift.c — `rankd drift`: compares what a ranker version served (its
 * feature log: the logged input vectors and scores of served items) with
 * the reference histograms of its training rows (meta.json), feature by
 * feature with the detector of src/monitor, and prints a table sorted by
 * drift, JSON, or a self-contained HTML report with inline SVG histograms.
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
    "                   [--html FILE]\n"
    "Served items of the model version (default: serve.ranker, its current\n"
    "version) from the feature log between --from and --to (default: all),\n"
    "at most the latest --max-rows (100000), against the version's training\n"
    "reference. --html writes a report with a histogram per feature.\n";

typedef struct collect {
    const char *model;
    uint32_t version;
    uint32_t nref;            /* reference features (inputs) */
    const int32_t *col;       /* reference i -> logged dense column */
    float *vals;              /* ring: max_rows x (nref + 1) */
    size_t max_rows, next, rows;
    uint64_t requests;
} collect;

static int on_entry(void *arg, const rk_flog_entry *e)
{
    collect *c = arg;
    if (strcmp(e->model, c->model) || e->model_version != c->version) return 0;
    c->requests++;
    for (uint32_t k = 0; k < e->nitems; k++) {
        const rk_flog_item *it = &e->items[k];
        if (!it->x.ndense) continue; /* not ranked (exploration) */
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

int cli_drift(int argc, char **argv)
{
    cli_common c = {0};
    const char *model = NULL, *ver = NULL, *from = NULL, *to = NULL, *html = NULL,
               *maxr = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--model", argc, argv, &i, &model)) ||
            (r = cli_opt("--version", argc, argv, &i, &ver)) ||
            (r = cli_opt("--from", argc, argv, &i, &from)) ||
            (r = cli_opt("--to", argc, argv, &i, &to)) ||
            (r = cli_opt("--max-rows", argc, argv, &i, &maxr)) ||
            (r = cli_opt("--html", argc, argv, &i, &html))) {
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
    int64_t from_ms = 0, to_ms = INT64_MAX;
    if ((ver && cli_uint("--version", ver, UINT32_MAX, &version)) ||
        (maxr && cli_uint("--max-rows", maxr, 100000000, &max_rows)))
        return 2;
    if ((from && rk_parse_time_ms(from, strlen(from), &from_ms)) ||
        (to && rk_parse_time_ms(to, strlen(to), &to_ms))) {
        cli_printf_err("drift: --from/--to: expected a time (epoch ms or "
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
    int32_t *cols = NULL;
    rc = 1;
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
    if (!cols || !col.vals) {
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
    if (rk_store_reader(s, &rd, &err) ||
        rk_flog_scan(rd, from_ms, to_ms, on_entry, &col, &err))
        goto fail;
    if (!col.rows) {
        rk_err_set(&err, RK_ENOTFOUND, "the feature log has no served items of %s "
                   "version %u in that range", model, vi.version);
        goto fail;
    }
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
        if (orc) rk_err_set(&err, orc, "out of memory");
        else orc = rk_drift_report_build(&vi.meta, cur, ncur, NULL, &rep, &err);
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
        if (!f || rk_drift_report_html(rep, title, f) || fclose(f)) {
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
        (void)rk_buf_puts(&b, "}\n");
        fputs(b.data ? b.data : "", stdout);
        rk_buf_free(&b);
    } else {
        printf("%s version %u: %zu served items of %llu requests against %llu "
               "training rows\n", model, vi.version, col.rows,
               (unsigned long long)col.requests,
               (unsigned long long)vi.meta.train_rows);
        rk_drift_report_table(rep, stdout);
        if (html) printf("report: %s\n", html);
    }
    rc = 0;
    goto done;
fail:
    cli_printf_err("drift: %s", err.msg[0] ? err.msg : "failed");
    rc = 1;
done:
    rk_drift_report_free(rep);
    rk_free(cols);
    rk_free(col.vals);
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
