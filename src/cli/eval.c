/*
 * eval.c — `rankd eval`: offline evaluation of retrieval models.
 *
 * Reads the feedback of a store (or of files imported into a temporary
 * store first, so one command reproduces a published table from a fresh
 * clone), runs the chosen protocol over the chosen models and prints the
 * report as a table; --json writes the full report. Options come from the
 * `eval:` and `retrieval:` config sections and are overridden by the
 * command line.
 */
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char eval_usage[] =
    "usage: rankd eval [--data DIR | --import FILE...] [--format F]\n"
    "                  [--protocol heldout|temporal|loo|impressions]\n"
    "                  [--models popularity,ease,ials,trending,covis]\n"
    "                  [--k 20,50,100]\n"
    "                  [--folds 5] [--seed 42] [--json FILE] [--threads N]\n"
    "                  [--threshold 4] [--test-fraction 0.2] [--min-positives N]\n"
    "                  [--split-time T | --split-quantile 0.8]\n"
    "                  [--restrict-catalog yes|no]\n"
    "                  [--ials-factors N] [--ials-iters N] [--ials-reg X]\n"
    "                  [--ials-reg-exp X] [--ials-alpha X] [--ials-log-eps X]\n"
    "                  [--ials-unobserved X] [--ials-solver cg|cholesky]\n"
    "                  [--ials-cg-steps N] [--ease-lambda X] [--ease-max-items N]\n"
    "Without --import the store of --data (or the config) is read. With\n"
    "--import the files are imported into a temporary store that is removed\n"
    "afterwards. See docs/retrieval.md, section Evaluation.\n";

/* ---- the eval: section ------------------------------------------------------------ */

static int parse_ks(const char *s, rk_eval_opts *o)
{
    o->nks = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        uint64_t k;
        if (o->nks == RK_EVAL_MAX_K || rk_parse_u64(s, len, &k) || k == 0 ||
            k > 100000 || (o->nks && k <= o->ks[o->nks - 1]))
            return -1;
        o->ks[o->nks++] = (uint32_t)k;
        s += len;
        if (*s == ',') s++;
    }
    return o->nks ? 0 : -1;
}

static int eval_from_conf(rk_eval_opts *o, const char **models, size_t *nmodels,
                          const rk_conf_node *root, rk_err *err)
{
    static const char *const keys[] = {
        "protocol", "folds", "k", "models", "seed", "test_fraction",
        "min_positives", "split_time", "split_quantile", "restrict_catalog",
        "threads", NULL};
    static const char *const protos[] = {"heldout", "temporal", "loo",
                                         "impressions", NULL};
    const rk_conf_node *sec = rk_conf_get(root, "eval");
    int rc, idx, b;
    int64_t v;
    if ((rc = rk_conf_check_keys(sec, keys, err)) ||
        (rc = rk_conf_as_enum(rk_conf_get(sec, "protocol"), (int)o->protocol,
                              protos, &idx, err)))
        return rc;
    o->protocol = (rk_eval_protocol)idx;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sec, "folds"), o->folds, 2, 100,
                                   &v, err)))
        return rc;
    o->folds = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sec, "seed"), (int64_t)o->seed,
                                   0, INT64_MAX, &v, err)))
        return rc;
    o->seed = (uint64_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sec, "min_positives"),
                                   o->min_positives, 0, 1000000, &v, err)))
        return rc;
    o->min_positives = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sec, "threads"), o->threads, 0,
                                   1024, &v, err)))
        return rc;
    o->threads = (unsigned)v;
    if ((rc = rk_conf_as_float(rk_conf_get(sec, "test_fraction"),
                               o->test_fraction, &o->test_fraction, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(sec, "split_quantile"),
                               o->split_quantile, &o->split_quantile, err)))
        return rc;
    const rk_conf_node *rc_node = rk_conf_get(sec, "restrict_catalog");
    if (rc_node) {
        if ((rc = rk_conf_as_bool(rc_node, 1, &b, err))) return rc;
        o->restrict_catalog = b;
    }
    const rk_conf_node *st = rk_conf_get(sec, "split_time");
    if (st) {
        const char *s;
        if (rk_conf_node_type(st) == RK_CONF_INT) {
            if ((rc = rk_conf_as_int(st, 0, &v, err))) return rc;
            /* Same rule as imports: below 1e11 it is seconds. */
            o->split_ts = (v > -100000000000LL && v < 100000000000LL)
                              ? v * 1000 : v;
        } else if ((rc = rk_conf_as_str(st, "", &s, err)) ||
                   rk_parse_time_ms(s, strlen(s), &o->split_ts)) {
            return rc ? rc : rk_conf_error(err, st, "expected a time, got '%s'", s);
        }
    }
    const rk_conf_node *k = rk_conf_get(sec, "k");
    if (k) {
        if (rk_conf_node_type(k) != RK_CONF_LIST || rk_conf_len(k) == 0 ||
            rk_conf_len(k) > RK_EVAL_MAX_K)
            return rk_conf_error(err, k, "expected a list of 1 to %d cutoffs",
                                 RK_EVAL_MAX_K);
        o->nks = 0;
        for (size_t i = 0; i < rk_conf_len(k); i++) {
            const rk_conf_node *e = rk_conf_at(k, i, NULL);
            if ((rc = rk_conf_as_int_range(e, 0, 1, 100000, &v, err))) return rc;
            if (o->nks && (uint32_t)v <= o->ks[o->nks - 1])
                return rk_conf_error(err, e, "cutoffs must increase");
            o->ks[o->nks++] = (uint32_t)v;
        }
    }
    const rk_conf_node *ms = rk_conf_get(sec, "models");
    if (ms) {
        if (rk_conf_node_type(ms) != RK_CONF_LIST || rk_conf_len(ms) == 0)
            return rk_conf_error(err, ms, "expected a list of model names");
        /* Reuse the command-line parser on "a,b,c". */
        char list[256] = "";
        for (size_t i = 0; i < rk_conf_len(ms); i++) {
            const char *s;
            if ((rc = rk_conf_as_str(rk_conf_at(ms, i, NULL), "", &s, err)))
                return rc;
            if (strlen(list) + strlen(s) + 2 > sizeof list)
                return rk_conf_error(err, ms, "too many models");
            if (i) strcat(list, ",");
            strcat(list, s);
        }
        if ((rc = cli_model_list(list, models, CLI_MAX_MODELS, nmodels, err)))
            return rk_conf_error(err, ms, "%s", err->msg);
    }
    return 0;
}

/* ---- temporary store for --import ---------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void print_row_error(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "%s\n", msg);
}

static int import_files(rk_store *s, const char *const *files, int n,
                        const rk_import_opts *io)
{
    for (int f = 0; f < n; f++) {
        rk_import_stats st;
        rk_err err = {0};
        int rc = rk_import_file(s, files[f], io, &st, &err);
        fprintf(stderr, "imported %s (%s): %llu records, %llu rejected, %.2f s\n",
                files[f], rk_import_format_name(st.format),
                (unsigned long long)st.imported,
                (unsigned long long)st.rejected, st.seconds);
        if (rc) {
            cli_printf_err("%s", rk_err_msg(&err));
            return rc;
        }
    }
    return 0;
}

/* ---- the command ----------------------------------------------------------------------- */

int cli_eval(int argc, char **argv)
{
    cli_common c = {0};
    const char *files[256];
    int nfiles = 0, importing = 0;
    const char *proto = NULL, *folds = NULL, *ks = NULL, *models_arg = NULL,
               *seed = NULL, *json = NULL, *threads = NULL, *thr = NULL,
               *tfrac = NULL, *minpos = NULL, *stime = NULL, *squant = NULL,
               *restrict_arg = NULL, *fmt = NULL;
    cli_retrieval scratch;
    cli_retrieval_default(&scratch);
    int model_opt_at[64], nmodel_opts = 0;
    for (int i = 1; i < argc; i++) {
        int r, at = i;
        const char *v;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--protocol", argc, argv, &i, &proto)) ||
            (r = cli_opt("--folds", argc, argv, &i, &folds)) ||
            (r = cli_opt("--k", argc, argv, &i, &ks)) ||
            (r = cli_opt("--models", argc, argv, &i, &models_arg)) ||
            (r = cli_opt("--seed", argc, argv, &i, &seed)) ||
            (r = cli_opt("--json", argc, argv, &i, &json)) ||
            (r = cli_opt("--threads", argc, argv, &i, &threads)) ||
            (r = cli_opt("--threshold", argc, argv, &i, &thr)) ||
            (r = cli_opt("--test-fraction", argc, argv, &i, &tfrac)) ||
            (r = cli_opt("--min-positives", argc, argv, &i, &minpos)) ||
            (r = cli_opt("--split-time", argc, argv, &i, &stime)) ||
            (r = cli_opt("--split-quantile", argc, argv, &i, &squant)) ||
            (r = cli_opt("--restrict-catalog", argc, argv, &i, &restrict_arg)) ||
            (r = cli_opt("--format", argc, argv, &i, &fmt))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--import", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            importing = 1;
            if (nfiles < 256) files[nfiles++] = v;
        } else if ((r = cli_model_opt(&scratch, argc, argv, &i))) {
            if (r < 0) return 2;
            if (nmodel_opts < 64) model_opt_at[nmodel_opts++] = at;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(eval_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && importing) {
            /* --import a b c: further plain arguments are files too. */
            if (nfiles < 256) files[nfiles++] = argv[i];
        } else {
            cli_printf_err("eval: unexpected '%s'\n%s", argv[i], eval_usage);
            return 2;
        }
    }
    if (importing && c.data) {
        cli_printf_err("eval: give --data or --import, not both");
        return 2;
    }

    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    rk_err err = {0};
    cli_retrieval cfg;
    cli_retrieval_default(&cfg);
    rk_eval_opts o;
    rk_eval_opts_default(&o);
    const char *models[CLI_MAX_MODELS] = {"popularity", "ease", "ials"};
    size_t nmodels = 3;
    const rk_conf_node *root = cli_conf_root(&env);
    int usage_err = 0;
    if ((rc = cli_retrieval_from_conf(&cfg, root, &err)) ||
        (rc = eval_from_conf(&o, models, &nmodels, root, &err)) ||
        (proto && (rc = rk_eval_protocol_parse(proto, &o.protocol, &err))) ||
        (models_arg && (rc = cli_model_list(models_arg, models, CLI_MAX_MODELS,
                                            &nmodels, &err)))) {
        cli_printf_err("%s", rk_err_msg(&err));
        usage_err = 1;
    }
    uint64_t u;
    double d;
    if (!usage_err && folds) {
        if (cli_uint("--folds", folds, 100, &u)) usage_err = 1;
        else o.folds = (uint32_t)u;
    }
    if (!usage_err && seed) {
        if (rk_parse_u64(seed, strlen(seed), &o.seed)) {
            cli_printf_err("--seed: expected an integer, got '%s'", seed);
            usage_err = 1;
        }
    }
    if (!usage_err && threads) {
        if (cli_uint("--threads", threads, 1024, &u)) usage_err = 1;
        else o.threads = (unsigned)u;
    }
    if (!usage_err && minpos) {
        if (cli_uint("--min-positives", minpos, 1000000, &u)) usage_err = 1;
        else o.min_positives = (uint32_t)u;
    }
    if (!usage_err && ks && parse_ks(ks, &o)) {
        cli_printf_err("--k: expected increasing cutoffs like 20,50,100, got "
                       "'%s'", ks);
        usage_err = 1;
    }
    struct {
        const char *arg, *name;
        double *dst;
    } nums[] = {{thr, "--threshold", &cfg.inter.valued_min},
                {tfrac, "--test-fraction", &o.test_fraction},
                {squant, "--split-quantile", &o.split_quantile}};
    for (size_t k = 0; k < 3 && !usage_err; k++) {
        if (!nums[k].arg) continue;
        if (rk_parse_f64(nums[k].arg, strlen(nums[k].arg), &d)) {
            cli_printf_err("%s: expected a number, got '%s'", nums[k].name,
                           nums[k].arg);
            usage_err = 1;
        } else {
            *nums[k].dst = d;
        }
    }
    if (!usage_err && stime &&
        rk_parse_time_ms(stime, strlen(stime), &o.split_ts)) {
        cli_printf_err("--split-time: expected a time (ISO-8601 or epoch "
                       "seconds/ms), got '%s'", stime);
        usage_err = 1;
    }
    if (!usage_err && restrict_arg) {
        if (strcmp(restrict_arg, "yes") == 0) o.restrict_catalog = 1;
        else if (strcmp(restrict_arg, "no") == 0) o.restrict_catalog = 0;
        else {
            cli_printf_err("--restrict-catalog: expected yes or no");
            usage_err = 1;
        }
    }
    rk_import_opts io;
    rk_import_opts_default(&io);
    io.on_error = print_row_error;
    io.log = &env.log;
    if (!usage_err && fmt && rk_import_format_parse(fmt, &io.format, &err)) {
        cli_printf_err("%s", rk_err_msg(&err));
        usage_err = 1;
    }
    if (!usage_err && rk_eval_opts_check(&o, &err)) {
        cli_printf_err("%s", rk_err_msg(&err));
        usage_err = 1;
    }
    if (usage_err) {
        cli_env_free(&env);
        return 2;
    }
    for (int k = 0; k < nmodel_opts; k++) {
        int at = model_opt_at[k];
        cli_model_opt(&cfg, argc, argv, &at);
    }

    /* The data: a store, or the files imported into a temporary one. */
    char tmpdir[4096] = "", name[4096];
    rk_store *s = NULL;
    int status = 1;
    rk_eval_data *data = NULL;
    rk_eval_model *mods[CLI_MAX_MODELS] = {0};
    rk_eval_report *rep = NULL;
    if (importing) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/rankd-eval-XXXXXX",
                 t && *t ? t : "/tmp");
        if (!mkdtemp(tmpdir)) {
            cli_printf_err("cannot create a temporary store in %s: %s",
                           t && *t ? t : "/tmp", strerror(errno));
            tmpdir[0] = '\0';
            goto done;
        }
        env.store.path = tmpdir;
        if (cli_open_store(&env, 0, &s)) goto done;
        if (import_files(s, files, nfiles, &io)) goto done;
        size_t off = 0;
        name[0] = '\0';
        for (int f = 0; f < nfiles && off < sizeof name; f++)
            off += (size_t)snprintf(name + off, sizeof name - off, "%s%s",
                                    f ? " + " : "", files[f]);
    } else {
        if (cli_open_store(&env, 1, &s)) goto done;
        snprintf(name, sizeof name, "store %s", env.store.path);
    }
    rk_eval_data_opts dopts;
    rk_eval_data_opts_default(&dopts);
    dopts.valued_min = cfg.inter.valued_min;
    dopts.value_as_weight = cfg.inter.value_as_weight;
    dopts.negatives_remove = cfg.inter.negatives_remove;
    if ((rc = rk_eval_data_from_store(&data, s, &dopts, &err))) {
        cli_printf_err("%s", rk_err_msg(&err));
        goto done;
    }
    rk_store_close(s);
    s = NULL;
    for (size_t k = 0; k < nmodels; k++)
        if ((rc = cli_model_create(models[k], &cfg, &mods[k], &err))) {
            cli_printf_err("%s", rk_err_msg(&err));
            goto done;
        }
    o.data_name = name;
    o.log = &env.log;
    if ((rc = rk_eval_run(data, &o, mods, nmodels, &rep, &err))) {
        cli_printf_err("%s", rk_err_msg(&err));
        goto done;
    }
    rk_eval_report_table(rep, stdout);
    fflush(stdout);
    status = 0;
    if (json) {
        rk_buf b;
        rk_buf_init(&b, 0);
        int to_stdout = strcmp(json, "-") == 0;
        FILE *f = to_stdout ? stdout : fopen(json, "w");
        if (rk_eval_report_json(rep, &b)) {
            cli_printf_err("json: out of memory");
            status = 1;
        } else if (!f) {
            cli_printf_err("cannot write %s: %s", json, strerror(errno));
            status = 1;
        } else {
            int bad = fwrite(b.data, 1, b.len, f) != b.len;
            bad |= (to_stdout ? fflush(f) : fclose(f)) != 0;
            f = NULL;
            if (bad) {
                cli_printf_err("cannot write %s: %s", json, strerror(errno));
                status = 1;
            }
        }
        if (f && !to_stdout) fclose(f);
        rk_buf_free(&b);
    }
done:
    rk_eval_report_free(rep);
    for (size_t k = 0; k < nmodels; k++) rk_eval_model_destroy(mods[k]);
    rk_eval_data_free(data);
    rk_store_close(s);
    if (tmpdir[0]) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    cli_env_free(&env);
    return status;
}
