/*
 * models.c — `rankd models`: list the versions in <data>/models with
 * their status and metadata, show one, promote one, roll back.
 *
 * A thin layer over the registry (rk_train.h): everything it prints comes
 * from meta.json and registry.json, and promote/rollback take the same
 * per-model lock as publishers. Listing never creates anything, so it is
 * safe on a data directory without models.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char models_usage[] =
    "usage: rankd models list [--json]\n"
    "       rankd models show NAME[/VERSION] [--json]\n"
    "       rankd models promote NAME VERSION\n"
    "       rankd models rollback NAME\n"
    "common options: --data DIR, --config FILE, --log-level LEVEL\n"
    "Versions live in DIR/models/<name>/<version>/; `current` is what servers\n"
    "load and `previous` where a rollback goes (see docs/models.md).\n";

/* ---- helpers ------------------------------------------------------------------ */

static void fmt_time(int64_t ms, char out[32])
{
    if (ms) rk_format_time_ms(ms, out);
    else snprintf(out, 32, "-");
}

/* "auc=0.8123 logloss=0.4410 ..." within cap bytes. */
static void fmt_metrics(const rk_model_meta *m, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < m->nmetrics && n + 1 < cap; i++) {
        int w = snprintf(out + n, cap - n, "%s%s=%.4g", i ? " " : "",
                         m->metrics[i].name, m->metrics[i].value);
        if (w < 0 || (size_t)w >= cap - n) {
            if (cap > 4) memcpy(out + cap - 4, "...", 4);
            return;
        }
        n += (size_t)w;
    }
    if (!n) snprintf(out, cap, "-");
}

static int put_str(rk_buf *b, const char *s)
{
    return s ? rk_buf_put_json_str(b, s, strlen(s)) : rk_buf_puts(b, "null");
}

static int put_num(rk_buf *b, double x)
{
    return isfinite(x) ? rk_buf_printf(b, "%.10g", x) : rk_buf_puts(b, "null");
}

static int put_time(rk_buf *b, int64_t ms)
{
    if (!ms) return rk_buf_puts(b, "null");
    char t[32];
    rk_format_time_ms(ms, t);
    return rk_buf_printf(b, "\"%s\"", t);
}

/* The summary of one version as a JSON object (no reference
 * histograms or params: `show --json` has those). */
static int put_version(rk_buf *b, const rk_version_info *v)
{
    const rk_model_meta *m = &v->meta;
    int rc = rk_buf_printf(b, "{\"version\":%u,\"status\":\"%s\",\"kind\":",
                           v->version, rk_version_status_name(v->status));
    rc = rc ? rc : put_str(b, m->kind);
    rc = rc ? rc : rk_buf_puts(b, ",\"created\":");
    rc = rc ? rc : put_time(b, m->created_ms);
    rc = rc ? rc : rk_buf_puts(b, ",\"train_window\":{\"from\":");
    rc = rc ? rc : put_time(b, m->train_from_ms);
    rc = rc ? rc : rk_buf_puts(b, ",\"to\":");
    rc = rc ? rc : put_time(b, m->train_to_ms);
    rc = rc ? rc : rk_buf_puts(b, "},\"valid_window\":{\"from\":");
    rc = rc ? rc : put_time(b, m->valid_from_ms);
    rc = rc ? rc : rk_buf_puts(b, ",\"to\":");
    rc = rc ? rc : put_time(b, m->valid_to_ms);
    rc = rc ? rc : rk_buf_printf(b, "},\"rows\":{\"train\":%llu,\"valid\":%llu},"
                                    "\"feature_schema_hash\":",
                                 (unsigned long long)m->train_rows,
                                 (unsigned long long)m->valid_rows);
    if (m->feature_schema_hash)
        rc = rc ? rc : rk_buf_printf(b, "\"%016llx\"",
                                     (unsigned long long)m->feature_schema_hash);
    else
        rc = rc ? rc : rk_buf_puts(b, "null");
    rc = rc ? rc : rk_buf_puts(b, ",\"metrics\":{");
    for (size_t i = 0; i < m->nmetrics && !rc; i++) {
        rc = i ? rk_buf_putc(b, ',') : 0;
        rc = rc ? rc : put_str(b, m->metrics[i].name);
        rc = rc ? rc : rk_buf_putc(b, ':');
        rc = rc ? rc : put_num(b, m->metrics[i].value);
    }
    rc = rc ? rc : rk_buf_puts(b, "},\"gate\":");
    if (v->gated) {
        rc = rc ? rc : rk_buf_printf(b, "{\"passed\":%s,\"reason\":",
                                     v->gate_pass ? "true" : "false");
        rc = rc ? rc : put_str(b, v->gate_reason);
        rc = rc ? rc : rk_buf_putc(b, '}');
    } else {
        rc = rc ? rc : rk_buf_puts(b, "null");
    }
    rc = rc ? rc : rk_buf_puts(b, ",\"meta_error\":");
    rc = rc ? rc : put_str(b, v->meta_error);
    return rc ? rc : rk_buf_putc(b, '}');
}

/* Options shared by the subcommands: the common ones and --json; the
 * rest are positional. Returns 0, or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, cli_common *c, int *json,
                      const char **pos, int maxpos, int *npos)
{
    *npos = 0;
    for (int i = 2; i < argc; i++) {
        int r = cli_common_opt(c, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (strcmp(argv[i], "--json") == 0) {
            *json = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(models_usage, stdout);
            return -1;
        } else if (argv[i][0] == '-' || *npos == maxpos) {
            cli_printf_err("models %s: unexpected '%s'\n%s", argv[1], argv[i],
                           models_usage);
            return 2;
        } else {
            pos[(*npos)++] = argv[i];
        }
    }
    return 0;
}

/* Loads the environment and opens the registry of <data>/models. With
 * must_exist = 0 a missing directory is not an error: *r stays NULL. */
static int open_registry(const cli_common *c, int must_exist, char *dir,
                         size_t cap, rk_registry **r)
{
    cli_env env;
    *r = NULL;
    int rc = cli_env_load(&env, c);
    if (rc) return rc;
    snprintf(dir, cap, "%s/models", env.store.path);
    cli_env_free(&env);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (!must_exist) return 0;
        cli_printf_err("no models in %s (nothing was published there)", dir);
        return 1;
    }
    rk_err err = {0};
    if (rk_registry_open(r, dir, NULL, &err)) {
        cli_printf_err("%s", rk_err_msg(&err));
        return 1;
    }
    return 0;
}

/* ---- list ---------------------------------------------------------------------- */

static int cmd_list(int argc, char **argv)
{
    cli_common c = {0};
    int json = 0, npos;
    const char *pos[1];
    int rc = parse_args(argc, argv, &c, &json, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    char dir[4096];
    rk_registry *r;
    if ((rc = open_registry(&c, 0, dir, sizeof dir, &r))) return rc;
    char **names = NULL;
    size_t nn = 0;
    rk_err err = {0};
    if (r && rk_registry_names(r, &names, &nn, &err)) {
        cli_printf_err("%s", rk_err_msg(&err));
        rk_registry_close(r);
        return 1;
    }
    rk_buf b;
    rk_buf_init(&b, 0);
    int brc = 0, status = 0;
    if (json) {
        brc = rk_buf_puts(&b, "{\"models_dir\":");
        brc = brc ? brc : put_str(&b, dir);
        brc = brc ? brc : rk_buf_puts(&b, ",\"models\":[");
    } else if (nn == 0) {
        printf("no models in %s\n", dir);
    } else {
        printf("%-16s %7s  %-11s  %-10s  %-24s  %10s  %s\n", "MODEL", "VERSION",
               "STATUS", "KIND", "CREATED", "TRAIN ROWS", "METRICS");
    }
    for (size_t i = 0; i < nn && !brc; i++) {
        rk_version_info *v;
        size_t nv;
        if (rk_registry_versions(r, names[i], &v, &nv, &err)) {
            /* One damaged model must not hide the others. */
            cli_printf_err("%s: %s", names[i], rk_err_msg(&err));
            status = 1;
            continue;
        }
        uint32_t cur = 0, prev = 0;
        for (size_t k = 0; k < nv; k++) {
            if (v[k].status == RK_VERSION_CURRENT) cur = v[k].version;
            if (v[k].status == RK_VERSION_PREVIOUS) prev = v[k].version;
        }
        if (json) {
            brc = rk_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
            brc = brc ? brc : put_str(&b, names[i]);
            brc = brc ? brc : rk_buf_printf(&b, ",\"current\":%u,\"previous\":%u,"
                                                "\"versions\":[", cur, prev);
            for (size_t k = 0; k < nv && !brc; k++) {
                brc = k ? rk_buf_putc(&b, ',') : 0;
                brc = brc ? brc : put_version(&b, &v[k]);
            }
            brc = brc ? brc : rk_buf_puts(&b, "]}");
        }
        for (size_t k = 0; k < nv && !json; k++) {
            char created[32], mets[160], rows[24];
            fmt_time(v[k].meta.created_ms, created);
            fmt_metrics(&v[k].meta, mets, sizeof mets);
            if (v[k].meta.train_rows)
                snprintf(rows, sizeof rows, "%llu",
                         (unsigned long long)v[k].meta.train_rows);
            else
                snprintf(rows, sizeof rows, "-");
            if (v[k].meta_error)
                snprintf(mets, sizeof mets, "(meta.json: %s)", v[k].meta_error);
            printf("%-16s %7u  %-11s  %-10s  %-24s  %10s  %s\n", names[i],
                   v[k].version, rk_version_status_name(v[k].status),
                   v[k].meta.kind ? v[k].meta.kind : "-", created, rows, mets);
        }
        rk_registry_versions_free(v, nv);
    }
    if (json) {
        brc = brc ? brc : rk_buf_puts(&b, "]}\n");
        if (brc) {
            cli_printf_err("out of memory");
            status = 1;
        } else {
            fputs(b.data, stdout);
        }
    }
    rk_buf_free(&b);
    rk_registry_names_free(names, nn);
    rk_registry_close(r);
    return status;
}

/* ---- show ---------------------------------------------------------------------- */

/* NAME or NAME/VERSION (VERSION may be "current"). */
static int split_ref(const char *ref, char *name, size_t cap, uint32_t *version)
{
    const char *slash = strchr(ref, '/');
    size_t n = slash ? (size_t)(slash - ref) : strlen(ref);
    *version = 0;
    if (n == 0 || n >= cap) {
        cli_printf_err("models show: bad model name '%s'", ref);
        return 2;
    }
    memcpy(name, ref, n);
    name[n] = '\0';
    if (slash && strcmp(slash + 1, "current") != 0) {
        uint64_t v;
        if (cli_uint("VERSION", slash + 1, 999999999, &v)) return 2;
        *version = (uint32_t)v;
    }
    return 0;
}

static void print_ref(const rk_refhist *h)
{
    if (h->kind == RK_REFHIST_NUMERIC) {
        printf("          %-16s numeric      %llu values, %llu missing, %u bins",
               h->name, (unsigned long long)h->count,
               (unsigned long long)h->missing, h->nbins);
        if (h->count)
            printf(", min %.4g max %.4g mean %.4g std %.4g", h->min, h->max,
                   h->mean, h->std);
        putchar('\n');
        return;
    }
    printf("          %-16s categorical  %llu values, %llu missing, %s%llu "
           "distinct, top",
           h->name, (unsigned long long)h->count,
           (unsigned long long)h->missing, h->distinct_exact ? "" : ">= ",
           (unsigned long long)h->distinct);
    for (uint32_t i = 0; i < h->ntop && i < 5; i++)
        printf(" %llu (%llu)", (unsigned long long)h->top_values[i],
               (unsigned long long)h->top_counts[i]);
    printf("%s\n", h->ntop > 5 ? " ..." : "");
}

/* The files of a version directory, "name (N bytes), ...". */
static void list_files(const char *vdir, char *out, size_t cap)
{
    out[0] = '\0';
    DIR *d = opendir(vdir);
    if (!d) return;
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)) != NULL && n + 1 < cap) {
        if (de->d_name[0] == '.') continue;
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", vdir, de->d_name);
        if (stat(p, &st) != 0) continue;
        int w = snprintf(out + n, cap - n, "%s%s (%lld bytes)", n ? ", " : "",
                         de->d_name, (long long)st.st_size);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    closedir(d);
}

static int cmd_show(int argc, char **argv)
{
    cli_common c = {0};
    int json = 0, npos;
    const char *pos[1];
    int rc = parse_args(argc, argv, &c, &json, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos != 1) {
        fputs(models_usage, stderr);
        return 2;
    }
    char name[256], dir[4096], vdir[4400];
    uint32_t version;
    if ((rc = split_ref(pos[0], name, sizeof name, &version))) return rc;
    rk_registry *r;
    if ((rc = open_registry(&c, 1, dir, sizeof dir, &r))) return rc;
    rk_version_info v;
    rk_err err = {0};
    if (rk_registry_show(r, name, version, &v, &err)) {
        cli_printf_err("%s", rk_err_msg(&err));
        rk_registry_close(r);
        return 1;
    }
    snprintf(vdir, sizeof vdir, "%s/%s/%u", dir, name, v.version);
    /* Verify the artifact, so `show` also answers "is this file sound". */
    char check[RK_ERR_MSG_MAX + 16] = "";
    if (v.meta.artifact) {
        char p[4700];
        rk_artifact a;
        snprintf(p, sizeof p, "%s/%s", vdir, v.meta.artifact);
        if (rk_artifact_read(p, &a, &err) == 0) {
            snprintf(check, sizeof check, "%s",
                     a.checksum == v.meta.artifact_checksum
                         ? "ok"
                         : "checksum differs from meta.json");
            rk_artifact_free(&a);
        } else {
            snprintf(check, sizeof check, "%s", rk_err_msg(&err));
        }
    }
    int status = 0;
    if (json) {
        char p[4500];
        size_t n = 0;
        snprintf(p, sizeof p, "%s/meta.json", vdir);
        FILE *f = v.meta_error ? NULL : fopen(p, "rb");
        rk_buf b;
        rk_buf_init(&b, 0);
        int brc = rk_buf_puts(&b, "{\"name\":");
        brc = brc ? brc : put_str(&b, name);
        brc = brc ? brc : rk_buf_printf(&b, ",\"version\":%u,\"status\":\"%s\","
                                            "\"path\":",
                                        v.version,
                                        rk_version_status_name(v.status));
        brc = brc ? brc : put_str(&b, vdir);
        brc = brc ? brc : rk_buf_puts(&b, ",\"artifact_check\":");
        brc = brc ? brc : put_str(&b, *check ? check : NULL);
        brc = brc ? brc : rk_buf_puts(&b, ",\"gate\":");
        if (v.gated) {
            brc = brc ? brc : rk_buf_printf(&b, "{\"passed\":%s,\"reason\":",
                                            v.gate_pass ? "true" : "false");
            brc = brc ? brc : put_str(&b, v.gate_reason);
            brc = brc ? brc : rk_buf_putc(&b, '}');
        } else {
            brc = brc ? brc : rk_buf_puts(&b, "null");
        }
        brc = brc ? brc : rk_buf_puts(&b, ",\"meta_error\":");
        brc = brc ? brc : put_str(&b, v.meta_error);
        brc = brc ? brc : rk_buf_puts(&b, ",\"meta\":");
        /* meta.json as stored: it parsed, so it is one JSON object. */
        if (f) {
            char chunk[8192];
            while (!brc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
                brc = rk_buf_append(&b, chunk, n);
            fclose(f);
            while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' '))
                b.data[--b.len] = '\0';
        } else {
            brc = brc ? brc : rk_buf_puts(&b, "null");
        }
        brc = brc ? brc : rk_buf_puts(&b, "}\n");
        if (brc) {
            cli_printf_err("out of memory");
            status = 1;
        } else {
            fputs(b.data, stdout);
        }
        rk_buf_free(&b);
    } else {
        const rk_model_meta *m = &v.meta;
        char t1[32], t2[32], files[1024];
        printf("model     %s\n", name);
        printf("version   %u (%s)\n", v.version, rk_version_status_name(v.status));
        printf("path      %s\n", vdir);
        if (v.meta_error) printf("meta      unreadable: %s\n", v.meta_error);
        printf("kind      %s\n", m->kind ? m->kind : "-");
        fmt_time(m->created_ms, t1);
        printf("created   %s\n", t1);
        if (m->train_from_ms || m->train_to_ms || m->train_rows) {
            fmt_time(m->train_from_ms, t1);
            fmt_time(m->train_to_ms, t2);
            printf("train     [%s, %s), %llu rows\n", t1, t2,
                   (unsigned long long)m->train_rows);
        }
        if (m->valid_from_ms || m->valid_to_ms || m->valid_rows) {
            fmt_time(m->valid_from_ms, t1);
            fmt_time(m->valid_to_ms, t2);
            printf("valid     [%s, %s), %llu rows\n", t1, t2,
                   (unsigned long long)m->valid_rows);
        }
        if (m->feature_schema_hash)
            printf("schema    %016llx\n", (unsigned long long)m->feature_schema_hash);
        if (m->artifact)
            printf("artifact  %s, %llu bytes, checksum %016llx: %s\n", m->artifact,
                   (unsigned long long)m->artifact_bytes,
                   (unsigned long long)m->artifact_checksum, check);
        list_files(vdir, files, sizeof files);
        printf("files     %s\n", *files ? files : "-");
        for (size_t i = 0; i < m->nmetrics; i++)
            printf("%-9s %-16s %.6g\n", i ? "" : "metrics", m->metrics[i].name,
                   m->metrics[i].value);
        if (v.gated)
            printf("gate      %s: %s\n", v.gate_pass ? "passed" : "failed",
                   v.gate_reason ? v.gate_reason : "");
        if (m->nfeatures || m->prediction) {
            printf("reference %zu feature%s%s\n", m->nfeatures,
                   m->nfeatures == 1 ? "" : "s",
                   m->prediction ? " and the prediction" : "");
            for (size_t i = 0; i < m->nfeatures; i++) print_ref(m->features[i]);
            if (m->prediction) print_ref(m->prediction);
        }
        if (m->params_json) printf("params    %s\n", m->params_json);
    }
    rk_version_info_clear(&v);
    rk_registry_close(r);
    return status;
}

/* ---- promote and rollback ------------------------------------------------------------ */

static int cmd_promote(int argc, char **argv)
{
    cli_common c = {0};
    int json = 0, npos;
    const char *pos[2];
    int rc = parse_args(argc, argv, &c, &json, pos, 2, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    uint64_t version;
    if (npos != 2 || json) {
        fputs(models_usage, stderr);
        return 2;
    }
    if (cli_uint("VERSION", pos[1], 999999999, &version)) return 2;
    char dir[4096];
    rk_registry *r;
    if ((rc = open_registry(&c, 1, dir, sizeof dir, &r))) return rc;
    rk_err err = {0};
    uint32_t before = 0, cur = 0, prev = 0;
    rk_registry_current(r, pos[0], &before, NULL, NULL);
    rc = rk_registry_promote(r, pos[0], (uint32_t)version, &err);
    if (!rc) rc = rk_registry_current(r, pos[0], &cur, &prev, &err);
    if (rc) {
        cli_printf_err("%s", rk_err_msg(&err));
    } else if (before == cur) {
        printf("%s: version %u is already current\n", pos[0], cur);
    } else {
        printf("%s: version %u is now current (previous: %u)\n", pos[0], cur,
               prev);
    }
    rk_registry_close(r);
    return rc ? 1 : 0;
}

static int cmd_rollback(int argc, char **argv)
{
    cli_common c = {0};
    int json = 0, npos;
    const char *pos[1];
    int rc = parse_args(argc, argv, &c, &json, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos != 1 || json) {
        fputs(models_usage, stderr);
        return 2;
    }
    char dir[4096];
    rk_registry *r;
    if ((rc = open_registry(&c, 1, dir, sizeof dir, &r))) return rc;
    rk_err err = {0};
    uint32_t before = 0, cur = 0, prev = 0;
    rk_registry_current(r, pos[0], &before, NULL, NULL);
    rc = rk_registry_rollback(r, pos[0], &cur, &err);
    if (!rc) rc = rk_registry_current(r, pos[0], NULL, &prev, &err);
    if (rc) {
        cli_printf_err("%s", rk_err_msg(&err));
    } else if (prev) {
        printf("%s: rolled back from %u to %u (a further rollback goes to "
               "%u)\n", pos[0], before, cur, prev);
    } else {
        printf("%s: rolled back from %u to %u (no earlier version left)\n",
               pos[0], before, cur);
    }
    rk_registry_close(r);
    return rc ? 1 : 0;
}

int cli_models(int argc, char **argv)
{
    if (argc < 2) {
        fputs(models_usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "list") == 0) return cmd_list(argc, argv);
    if (strcmp(argv[1], "show") == 0) return cmd_show(argc, argv);
    if (strcmp(argv[1], "promote") == 0) return cmd_promote(argc, argv);
    if (strcmp(argv[1], "rollback") == 0) return cmd_rollback(argc, argv);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(models_usage, stdout);
        return 0;
    }
    cli_printf_err("models: unknown subcommand '%s'\n%s", argv[1], models_usage);
    return 2;
}
