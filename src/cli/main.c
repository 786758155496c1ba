/*
 * main.c — the `rankd` command: dispatch to subcommands, configuration
 * loading, and the store-facing commands import, export, stats and schema.
 *
 * Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define RANKD_VERSION "0.1.0"

/* Top-level config sections this version understands. */
static const char *const conf_sections[] = {"store", "entities", "events",
                                            "log", "retrieval", "eval", "features", "labels",
                                            "serve", "experiments", "monitor", "loop", NULL};

void cli_printf_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rankd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_opt(const char *name, int argc, char **argv, int *i, const char **val)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        cli_printf_err("%s needs a value", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int cli_common_opt(cli_common *c, int argc, char **argv, int *i)
{
    int r;
    if ((r = cli_opt("--config", argc, argv, i, &c->config))) return r;
    if ((r = cli_opt("--data", argc, argv, i, &c->data))) return r;
    if ((r = cli_opt("--log-level", argc, argv, i, &c->log_level))) return r;
    return 0;
}

int cli_uint(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    if (rk_parse_u64(s, strlen(s), out) != 0 || *out == 0 || *out > max) {
        cli_printf_err("%s: expected an integer in 1..%llu, got '%s'", opt,
                       (unsigned long long)max, s);
        return -1;
    }
    return 0;
}

int cli_env_load(cli_env *env, const cli_common *c)
{
    memset(env, 0, sizeof *env);
    rk_logger_init(&env->log, RK_LOG_INFO, stderr);
    rk_store_opts_default(&env->store);
    rk_err err = {0};
    const char *path = c->config;
    if (!path && access("rankd.yaml", F_OK) == 0) path = "rankd.yaml";
    const rk_conf_node *root = NULL;
    int rc = 0;
    if (path) {
        if ((rc = rk_conf_load_file(&env->conf, path, &err))) goto fail;
        env->config_path = path;
        root = rk_conf_root(env->conf);
        if (rk_conf_node_type(root) == RK_CONF_NULL) root = NULL;
        if (root && rk_conf_node_type(root) != RK_CONF_MAP) {
            rc = rk_conf_error(&err, root, "expected a map of sections");
            goto fail;
        }
        if ((rc = rk_conf_check_keys(root, conf_sections, &err))) goto fail;
        const rk_conf_node *lg = rk_conf_get(root, "log");
        static const char *const log_keys[] = {"level", NULL};
        static const char *const levels[] = {"debug", "info", "warn", "error",
                                             "off", NULL};
        int lvl;
        if ((rc = rk_conf_check_keys(lg, log_keys, &err)) ||
            (rc = rk_conf_as_enum(rk_conf_get(lg, "level"), RK_LOG_INFO,
                                  levels, &lvl, &err)))
            goto fail;
        env->log.level = (rk_log_level)lvl;
    }
    if ((rc = rk_store_opts_from_conf(&env->store, root, &err)) ||
        (rc = rk_schema_from_conf(&env->schema, root, &err)))
        goto fail;
    if (c->data) env->store.path = c->data;
    if (c->log_level && rk_log_level_parse(c->log_level, &env->log.level)) {
        cli_printf_err("--log-level: expected debug, info, warn, error or "
                       "off, got '%s'", c->log_level);
        cli_env_free(env);
        return 2;
    }
    env->store.log = &env->log;
    return 0;
fail:
    cli_printf_err("%s", rk_err_msg(&err));
    cli_env_free(env);
    return rc ? 1 : 0;
}

void cli_env_free(cli_env *env)
{
    rk_schema_destroy(env->schema);
    rk_conf_destroy(env->conf);
    env->schema = NULL;
    env->conf = NULL;
}

int cli_open_store(cli_env *env, int read_only, rk_store **out)
{
    rk_err err = {0};
    rk_store_opts o = env->store;
    o.read_only = read_only;
    int rc = rk_store_open(out, &o, read_only ? NULL : env->schema, &err);
    if (rc) cli_printf_err("%s", rk_err_msg(&err));
    return rc;
}

static int newest_ts(void *arg, const rk_event *ev)
{
    int64_t *t = arg;
    if (ev->ts_ms > *t) *t = ev->ts_ms;
    return 0;
}

int64_t cli_store_now(rk_reader *r)
{
    int64_t now = rk_clock_wall_ms();
    rk_store_stats st;
    if (!rk_reader_stats(r, &st) && st.last_seq)
        (void)rk_reader_scan_events(r, st.last_seq, newest_ts, &now);
    return now;
}

/* ---- import ------------------------------------------------------------- */

static void print_row_error(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "%s\n", msg);
}

static const char import_usage[] =
    "usage: rankd import [--data DIR] [--config FILE] [--format F]\n"
    "                    [--kind events|users|items|rows] [--dataset NAME]\n"
    "                    [--strict] [--batch N] [--no-progress] FILE...\n"
    "csv/tsv rows:       [--label COL] [--group COL] [--ignore COLS]\n"
    "                    [--categorical COLS|all] [--no-header]\n"
    "formats: auto (default), ml-data, ml-item, ml-user, ml-ratings,\n"
    "         ml-movies, criteo, svmlight, mind-behaviors, mind-news, csv,\n"
    "         tsv, jsonl (see docs/import.md)\n";

int cli_import(int argc, char **argv)
{
    cli_common c = {0};
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.progress = 1;
    o.on_error = print_row_error;
    rk_rows_layout rows = {0};
    const char *files[256];
    int nfiles = 0;
    rk_err err = {0};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--label", argc, argv, &i, &rows.label)) ||
            (r = cli_opt("--group", argc, argv, &i, &rows.group)) ||
            (r = cli_opt("--ignore", argc, argv, &i, &rows.ignore)) ||
            (r = cli_opt("--categorical", argc, argv, &i, &rows.categorical))) {
            if (r < 0) return 2;
        } else if (strcmp(argv[i], "--no-header") == 0) {
            rows.no_header = 1;
        } else if ((r = cli_opt("--format", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (rk_import_format_parse(v, &o.format, &err)) {
                cli_printf_err("%s", rk_err_msg(&err));
                return 2;
            }
        } else if ((r = cli_opt("--kind", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (rk_import_kind_parse(v, &o.kind, &err)) {
                cli_printf_err("%s", rk_err_msg(&err));
                return 2;
            }
        } else if ((r = cli_opt("--dataset", argc, argv, &i, &o.dataset))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--batch", argc, argv, &i, &v))) {
            uint64_t n;
            if (r < 0 || cli_uint("--batch", v, 1000000, &n)) return 2;
            o.batch_rows = (size_t)n;
        } else if (strcmp(argv[i], "--strict") == 0) {
            o.strict = 1;
        } else if (strcmp(argv[i], "--no-progress") == 0) {
            o.progress = 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(import_usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_printf_err("import: unknown option '%s'\n%s", argv[i],
                           import_usage);
            return 2;
        } else if (nfiles < 256) {
            files[nfiles++] = argv[i];
        }
    }
    o.rows = &rows;
    if (nfiles == 0) {
        fputs(import_usage, stderr);
        return 2;
    }
    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    o.log = &env.log;
    rk_store *s;
    if (cli_open_store(&env, 0, &s)) {
        cli_env_free(&env);
        return 1;
    }
    int status = 0;
    for (int f = 0; f < nfiles; f++) {
        rk_import_stats st;
        rk_err_clear(&err);
        rc = rk_import_file(s, files[f], &o, &st, &err);
        printf("%s (%s): %llu records, %llu imported, %llu rejected, "
               "%llu duplicate events, %.2f s, %.0f records/s\n",
               files[f], rk_import_format_name(st.format),
               (unsigned long long)st.records,
               (unsigned long long)st.imported,
               (unsigned long long)st.rejected,
               (unsigned long long)st.duplicates, st.seconds,
               st.records_per_sec);
        if (rc) {
            cli_printf_err("%s", rk_err_msg(&err));
            status = 1;
            break;
        }
    }
    /* Under everysec the last second of writes is made durable here, so
     * "done" means on disk. */
    if (rk_store_sync(s, &err)) {
        cli_printf_err("%s", rk_err_msg(&err));
        status = 1;
    }
    rk_store_close(s);
    cli_env_free(&env);
    return status;
}

/* ---- export --------------------------------------------------------------- */

static const char export_usage[] =
    "usage: rankd export events|users|items|rows [--dataset NAME]\n"
    "                    [-o FILE] [--data DIR] [--config FILE]\n";

int cli_export(int argc, char **argv)
{
    cli_common c = {0};
    const char *what = NULL, *dataset = NULL, *outpath = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--dataset", argc, argv, &i, &dataset)) ||
            (r = cli_opt("-o", argc, argv, &i, &outpath)) ||
            (r = cli_opt("--output", argc, argv, &i, &outpath))) {
            if (r < 0) return 2;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(export_usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' || what) {
            cli_printf_err("export: unexpected '%s'\n%s", argv[i], export_usage);
            return 2;
        } else {
            what = argv[i];
        }
    }
    if (!what) {
        fputs(export_usage, stderr);
        return 2;
    }
    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    rk_store *s;
    if (cli_open_store(&env, 1, &s)) {
        cli_env_free(&env);
        return 1;
    }
    FILE *out = stdout;
    if (outpath && !(out = fopen(outpath, "w"))) {
        cli_printf_err("cannot write %s: %s", outpath, strerror(errno));
        rk_store_close(s);
        cli_env_free(&env);
        return 1;
    }
    rk_err err = {0};
    rc = rk_export_jsonl(s, what, dataset, out, &err);
    int closed = out == stdout ? fflush(stdout) : fclose(out);
    if (closed != 0 && rc == 0)
        rc = rk_err_set(&err, RK_EIO, "%s: %s", outpath ? outpath : "stdout",
                        strerror(errno));
    if (rc) cli_printf_err("%s", rk_err_msg(&err));
    rk_store_close(s);
    cli_env_free(&env);
    return rc ? 1 : 0;
}

/* ---- stats and schema ----------------------------------------------------- */

static int print_dataset(void *arg, const char *name, uint64_t rows)
{
    (void)arg;
    printf("  dataset %-20s %llu rows\n", name, (unsigned long long)rows);
    return 0;
}

/* For commands that take only the common options: parse them and load the
 * environment. */
static int load_common_only(const char *cmd, int argc, char **argv,
                            cli_env *env)
{
    cli_common c = {0};
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&c, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            cli_printf_err("%s: unexpected '%s'", cmd, argv[i]);
            return 2;
        }
    }
    return cli_env_load(env, &c);
}

int cli_stats(int argc, char **argv)
{
    cli_env env;
    int rc = load_common_only("stats", argc, argv, &env);
    if (rc) return rc;
    rk_store *s;
    if (cli_open_store(&env, 1, &s)) {
        cli_env_free(&env);
        return 1;
    }
    rk_reader *r;
    rk_err err = {0};
    rk_store_stats st;
    if ((rc = rk_store_reader(s, &r, &err)) == 0) {
        if ((rc = rk_reader_stats(r, &st)) == 0) {
            printf("store %s\n", env.store.path);
            printf("  users   %llu ids, %llu with attributes, %llu deleted\n",
                   (unsigned long long)st.ids[RK_ENTITY_USER],
                   (unsigned long long)st.records[RK_ENTITY_USER],
                   (unsigned long long)st.deleted[RK_ENTITY_USER]);
            printf("  items   %llu ids, %llu with attributes, %llu hidden, "
                   "%llu deleted\n",
                   (unsigned long long)st.ids[RK_ENTITY_ITEM],
                   (unsigned long long)st.records[RK_ENTITY_ITEM],
                   (unsigned long long)st.hidden_items,
                   (unsigned long long)st.deleted[RK_ENTITY_ITEM]);
            printf("  events  %llu (last seq %llu, %llu with ids)\n",
                   (unsigned long long)st.events,
                   (unsigned long long)st.last_seq,
                   (unsigned long long)st.event_ids);
            printf("  rows    %llu in %llu datasets\n",
                   (unsigned long long)st.rows,
                   (unsigned long long)st.datasets);
            rc = rk_reader_scan_datasets(r, print_dataset, NULL);
            printf("  size    %.1f MiB\n", (double)st.bytes / (1 << 20));
        }
        if (rc) cli_printf_err("%s", rk_reader_errmsg(r));
        rk_reader_close(r);
    } else {
        cli_printf_err("%s", rk_err_msg(&err));
    }
    rk_store_close(s);
    cli_env_free(&env);
    return rc ? 1 : 0;
}

int cli_schema(int argc, char **argv)
{
    cli_env env;
    int rc = load_common_only("schema", argc, argv, &env);
    if (rc) return rc;
    rk_store *s = NULL;
    /* The store's schema when there is a store, else the config's. */
    rk_store_opts o = env.store;
    o.read_only = 1;
    rk_err err = {0};
    const rk_schema *sc = env.schema;
    if (rk_store_open(&s, &o, NULL, &err) == 0) sc = rk_store_schema(s);
    printf("entities:\n");
    for (int e = 0; e < RK_ENTITY_COUNT; e++) {
        printf("  %s:\n    attributes:\n", rk_entity_name((rk_entity)e));
        uint32_t n = rk_schema_nattrs(sc, (rk_entity)e);
        if (n == 0) printf("      {}\n");
        for (uint32_t i = 0; i < n; i++) {
            const rk_attr_def *d = rk_schema_attr(sc, (rk_entity)e, i);
            if (d->type == RK_ATTR_VECTOR)
                printf("      %s: {type: vector, dim: %u}\n", d->name, d->dim);
            else
                printf("      %s: %s\n", d->name, rk_attr_type_name(d->type));
        }
    }
    printf("events:\n");
    for (uint32_t i = 0; i < rk_schema_nevent_types(sc); i++) {
        const rk_event_type_def *d = rk_schema_event_type(sc, i);
        printf("  %s: {role: %s, weight: %g}\n", d->name,
               rk_event_role_name(d->role), d->weight);
    }
    rk_store_close(s);
    cli_env_free(&env);
    return 0;
}

/* ---- dispatch --------------------------------------------------------------- */

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} commands[] = {
    {"playground", cli_playground, "the whole loop locally: simulated platform, training, serving, live status"},
    {"init", cli_init, "write a documented config for a case study (video, ads, search, fraud)"},
    {"demo", cli_demo, "generate a synthetic catalog and events, import, summarise"},
    {"import", cli_import, "import events, users, items or rows from files"},
    {"export", cli_export, "export events, users, items or rows as JSON lines"},
    {"stats", cli_stats, "print what the store holds"},
    {"schema", cli_schema, "print the declared attributes and event types"},
    {"train", cli_train, "train the retrieval models and publish them under DIR/models"},
    {"eval", cli_eval, "evaluate retrieval models offline (Recall/NDCG/MAP@K)"},
    {"serve", cli_serve, "serve the /v1 HTTP API (recommend, rank, score, events, ...)"},
    {"drift", cli_drift, "compare what a ranker served with its training reference (table, JSON, HTML)"},
    {"models", cli_models, "list, show, promote and roll back model versions"},
    {"simulate", cli_simulate, "drive a running server with a simulated video platform"},
};

static void usage(FILE *f)
{
    fprintf(f, "rankd %s — production ranking and recommendation\n\n"
               "usage: rankd <command> [options]\n\ncommands:\n",
            RANKD_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\ncommon options: --config FILE (default ./rankd.yaml if "
               "present), --data DIR,\n                --log-level "
               "debug|info|warn|error|off\n"
               "see README.md and docs/ for details\n");
}

int main(int argc, char **argv)
{
    rk_mem_hook_libraries();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("rankd %s\n", RANKD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    cli_printf_err("unknown command '%s'", argv[1]);
    usage(stderr);
    return 2;
}
