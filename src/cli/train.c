/*
 * train.c — `rankd train`: train the configured retrieval models on the
 * whole store and publish them under <data>/models/<name>/<version>/, and
 * the `retrieval:` configuration shared with `rankd eval`.
 *
 * The config section is read here once for both commands, so the model
 * that is evaluated and the model that is trained are built from the same
 * parameters and the same rules for turning events into weights.
 */
#include <string.h>

#include "cli.h"

/* ---- the retrieval: section -------------------------------------------------- */

static const char *const model_kinds[] = {"popularity", "ease", "ials",
                                          "trending", "covis", NULL};

void cli_retrieval_default(cli_retrieval *r)
{
    memset(r, 0, sizeof *r);
    rk_inter_opts_default(&r->inter);
    /* MovieLens convention: ratings 4 and 5 are positives. Valued events
     * of other kinds (watch seconds) will want their own threshold. */
    r->inter.valued_min = 4;
    /* The library's defaults are the tuned ones (docs/retrieval.md). */
    rk_ials_opts_default(&r->ials);
    rk_ease_opts_default(&r->ease);
    r->ease.lambda = 300;
    rk_popular_opts_default(&r->trending);
    rk_covis_opts_default(&r->covis);
    r->models[0] = "ials";
    r->models[1] = "ease";
    r->models[2] = "popularity";
    r->nmodels = 3;
}

int cli_model_list(const char *s, const char **names, size_t max, size_t *n,
                   rk_err *err)
{
    *n = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        int found = -1;
        for (int i = 0; model_kinds[i]; i++)
            if (strlen(model_kinds[i]) == len &&
                strncmp(model_kinds[i], s, len) == 0)
                found = i;
        if (found < 0)
            return rk_err_set(err, RK_EINVAL,
                              "unknown model '%.*s' (expected popularity, "
                              "ease, ials, trending or covis)", (int)len, s);
        for (size_t j = 0; j < *n; j++)
            if (strcmp(names[j], model_kinds[found]) == 0)
                return rk_err_set(err, RK_EINVAL, "model '%s' listed twice",
                                  model_kinds[found]);
        if (*n == max)
            return rk_err_set(err, RK_EINVAL, "at most %zu models", max);
        names[(*n)++] = model_kinds[found];
        s += len;
        if (*s == ',') s++;
    }
    if (*n == 0) return rk_err_set(err, RK_EINVAL, "no model given");
    return 0;
}

/* A YAML list of model names. */
static int models_from_conf(const rk_conf_node *n, const char **names,
                            size_t max, size_t *count, rk_err *err)
{
    if (!n) return 0;
    if (rk_conf_node_type(n) != RK_CONF_LIST)
        return rk_conf_error(err, n, "expected a list of model names");
    size_t k = 0;
    for (size_t i = 0; i < rk_conf_len(n); i++) {
        const rk_conf_node *e = rk_conf_at(n, i, NULL);
        int idx;
        int rc = rk_conf_as_enum(e, 0, model_kinds, &idx, err);
        if (rc) return rc;
        for (size_t j = 0; j < k; j++)
            if (strcmp(names[j], model_kinds[idx]) == 0)
                return rk_conf_error(err, e, "model '%s' listed twice",
                                     model_kinds[idx]);
        if (k == max) return rk_conf_error(err, e, "at most %zu models", max);
        names[k++] = model_kinds[idx];
    }
    if (k == 0) return rk_conf_error(err, n, "no model given");
    *count = k;
    return 0;
}

int cli_retrieval_from_conf(cli_retrieval *r, const rk_conf_node *root,
                            rk_err *err)
{
    static const char *const keys[] = {"interactions", "models", "ials",
                                       "ease", "popularity", "trending",
                                       "covis", NULL};
    static const char *const inter_keys[] = {"valued_min", "value_as_weight",
                                             "negatives_remove", NULL};
    static const char *const ials_keys[] = {
        "factors", "iterations", "reg", "reg_exp", "alpha", "log_eps",
        "unobserved_weight", "solver", "cg_steps", "init_std", "seed",
        "threads", NULL};
    static const char *const ease_keys[] = {"lambda", "max_items", NULL};
    static const char *const no_keys[] = {NULL};
    static const char *const solvers[] = {"cg", "cholesky", NULL};
    const rk_conf_node *sec = rk_conf_get(root, "retrieval");
    const rk_conf_node *in = rk_conf_get(sec, "interactions");
    const rk_conf_node *ia = rk_conf_get(sec, "ials");
    const rk_conf_node *ea = rk_conf_get(sec, "ease");
    rk_ials_opts *o = &r->ials;
    int64_t v, solver;
    int rc, b;
    if ((rc = rk_conf_check_keys(sec, keys, err)) ||
        (rc = rk_conf_check_keys(in, inter_keys, err)) ||
        (rc = rk_conf_check_keys(ia, ials_keys, err)) ||
        (rc = rk_conf_check_keys(ea, ease_keys, err)) ||
        (rc = rk_conf_check_keys(rk_conf_get(sec, "popularity"), no_keys, err)) ||
        (rc = rk_popular_opts_from_conf(&r->trending,
                                        rk_conf_get(sec, "trending"), err)) ||
        (rc = rk_covis_opts_from_conf(&r->covis, rk_conf_get(sec, "covis"),
                                      err)))
        return rc;
    if ((rc = rk_conf_as_float(rk_conf_get(in, "valued_min"),
                               r->inter.valued_min, &r->inter.valued_min, err)) ||
        (rc = rk_conf_as_bool(rk_conf_get(in, "value_as_weight"),
                              r->inter.value_as_weight, &b, err)))
        return rc;
    r->inter.value_as_weight = b;
    if ((rc = rk_conf_as_bool(rk_conf_get(in, "negatives_remove"),
                              r->inter.negatives_remove, &b, err)))
        return rc;
    r->inter.negatives_remove = b;
    if ((rc = models_from_conf(rk_conf_get(sec, "models"), r->models,
                               CLI_MAX_MODELS, &r->nmodels, err)))
        return rc;
    if ((rc = rk_conf_as_int_range(rk_conf_get(ia, "factors"), o->factors, 1,
                                   1024, &v, err)))
        return rc;
    o->factors = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(ia, "iterations"),
                                   o->iterations, 1, 10000, &v, err)))
        return rc;
    o->iterations = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(ia, "cg_steps"), o->cg_steps,
                                   1, 1024, &v, err)))
        return rc;
    o->cg_steps = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(ia, "seed"), (int64_t)o->seed,
                                   0, INT64_MAX, &v, err)))
        return rc;
    o->seed = (uint64_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(ia, "threads"), o->threads, 0,
                                   1024, &v, err)))
        return rc;
    o->threads = (unsigned)v;
    int sidx;
    if ((rc = rk_conf_as_enum(rk_conf_get(ia, "solver"), (int)o->solver,
                              solvers, &sidx, err)))
        return rc;
    solver = sidx;
    o->solver = (rk_ials_solver)solver;
    if ((rc = rk_conf_as_float(rk_conf_get(ia, "reg"), o->reg, &o->reg, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(ia, "reg_exp"), o->reg_exp,
                               &o->reg_exp, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(ia, "alpha"), o->alpha, &o->alpha,
                               err)) ||
        (rc = rk_conf_as_float(rk_conf_get(ia, "log_eps"), o->log_eps,
                               &o->log_eps, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(ia, "unobserved_weight"),
                               o->unobserved_weight, &o->unobserved_weight,
                               err)) ||
        (rc = rk_conf_as_float(rk_conf_get(ia, "init_std"), o->init_std,
                               &o->init_std, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(ea, "lambda"), r->ease.lambda,
                               &r->ease.lambda, err)))
        return rc;
    if ((rc = rk_conf_as_int_range(rk_conf_get(ea, "max_items"),
                                   r->ease.max_items, 1, 1000000, &v, err)))
        return rc;
    r->ease.max_items = (uint32_t)v;
    return 0;
}

int cli_model_create(const char *kind, const cli_retrieval *r,
                     rk_eval_model **out, rk_err *err)
{
    if (strcmp(kind, "popularity") == 0)
        return rk_eval_popularity_create(out, err);
    if (strcmp(kind, "ease") == 0) return rk_eval_ease_create(out, &r->ease, err);
    if (strcmp(kind, "ials") == 0) return rk_eval_ials_create(out, &r->ials, err);
    if (strcmp(kind, "trending") == 0)
        return rk_eval_trending_create(out, &r->trending, err);
    if (strcmp(kind, "covis") == 0) return rk_eval_covis_create(out, &r->covis, err);
    return rk_err_set(err, RK_EINVAL, "unknown model '%s'", kind);
}

/* Parses one --ials-* / --ease-* option into r; same return convention
 * as cli_opt (1 consumed, 0 not ours, -1 error printed). */
int cli_model_opt(cli_retrieval *r, int argc, char **argv, int *i)
{
    static const struct {
        const char *name;
        int is_int;
        size_t off;
    } opts[] = {
        {"--ials-factors", 1, offsetof(cli_retrieval, ials.factors)},
        {"--ials-iters", 1, offsetof(cli_retrieval, ials.iterations)},
        {"--ials-cg-steps", 1, offsetof(cli_retrieval, ials.cg_steps)},
        {"--ials-reg", 0, offsetof(cli_retrieval, ials.reg)},
        {"--ials-reg-exp", 0, offsetof(cli_retrieval, ials.reg_exp)},
        {"--ials-alpha", 0, offsetof(cli_retrieval, ials.alpha)},
        {"--ials-log-eps", 0, offsetof(cli_retrieval, ials.log_eps)},
        {"--ials-unobserved", 0, offsetof(cli_retrieval, ials.unobserved_weight)},
        {"--ials-init-std", 0, offsetof(cli_retrieval, ials.init_std)},
        {"--ease-lambda", 0, offsetof(cli_retrieval, ease.lambda)},
        {"--ease-max-items", 1, offsetof(cli_retrieval, ease.max_items)},
    };
    const char *v;
    int rc;
    if ((rc = cli_opt("--ials-solver", argc, argv, i, &v))) {
        if (rc < 0) return -1;
        if (strcmp(v, "cg") == 0) r->ials.solver = RK_IALS_CG;
        else if (strcmp(v, "cholesky") == 0) r->ials.solver = RK_IALS_CHOLESKY;
        else {
            cli_printf_err("--ials-solver: expected cg or cholesky, got '%s'", v);
            return -1;
        }
        return 1;
    }
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        if (!(rc = cli_opt(opts[k].name, argc, argv, i, &v))) continue;
        if (rc < 0) return -1;
        char *dst = (char *)r + opts[k].off;
        if (opts[k].is_int) {
            uint64_t x;
            if (cli_uint(opts[k].name, v, 1000000, &x)) return -1;
            uint32_t y = (uint32_t)x;
            memcpy(dst, &y, sizeof y);
        } else {
            double x;
            if (rk_parse_f64(v, strlen(v), &x) || x < 0) {
                cli_printf_err("%s: expected a number >= 0, got '%s'",
                               opts[k].name, v);
                return -1;
            }
            memcpy(dst, &x, sizeof x);
        }
        return 1;
    }
    return 0;
}

/* ---- rankd train ------------------------------------------------------------ */

static const char train_usage[] =
    "usage: rankd train [--data DIR] [--config FILE] [--models ials,ease,popularity]\n"
    "                   [--keep N] [--threshold X] [--ials-factors N] [--ials-iters N]\n"
    "                   [--ials-reg X] [--ials-alpha X] [--ials-unobserved X]\n"
    "                   [--ease-lambda X] ...\n"
    "Trains the models on every event of the store and publishes each as\n"
    "DIR/models/<name>/<version>/ with DIR/models/<name>/current pointing at\n"
    "the newest (see docs/retrieval.md).\n";

int cli_train(int argc, char **argv)
{
    /* Ranking models have their own driver (rank.c). */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--ranker") == 0 || strncmp(argv[i], "--ranker=", 9) == 0)
            return cli_train_ranker(argc, argv);
    cli_common c = {0};
    const char *models_arg = NULL, *thr = NULL, *keep_arg = NULL;
    /* Model options are applied after the config, which they override;
     * the first pass checks them and remembers where they are. */
    cli_retrieval scratch;
    cli_retrieval_default(&scratch);
    int model_opt_at[64], nmodel_opts = 0;
    for (int i = 1; i < argc; i++) {
        int r, at = i;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--models", argc, argv, &i, &models_arg)) ||
            (r = cli_opt("--threshold", argc, argv, &i, &thr)) ||
            (r = cli_opt("--keep", argc, argv, &i, &keep_arg))) {
            if (r < 0) return 2;
        } else if ((r = cli_model_opt(&scratch, argc, argv, &i))) {
            if (r < 0) return 2;
            if (nmodel_opts < 64) model_opt_at[nmodel_opts++] = at;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(train_usage, stdout);
            return 0;
        } else {
            cli_printf_err("train: unexpected '%s'\n%s", argv[i], train_usage);
            return 2;
        }
    }
    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    rk_err err = {0};
    cli_retrieval cfg;
    cli_retrieval_default(&cfg);
    uint64_t keep = 3;
    if ((rc = cli_retrieval_from_conf(&cfg, cli_conf_root(&env), &err)) ||
        (models_arg && (rc = cli_model_list(models_arg, cfg.models,
                                            CLI_MAX_MODELS, &cfg.nmodels, &err)))) {
        cli_printf_err("%s", rk_err_msg(&err));
        cli_env_free(&env);
        return 2;
    }
    if (keep_arg && cli_uint("--keep", keep_arg, 1000, &keep)) {
        cli_env_free(&env);
        return 2;
    }
    if (thr && rk_parse_f64(thr, strlen(thr), &cfg.inter.valued_min)) {
        cli_printf_err("--threshold: expected a number, got '%s'", thr);
        cli_env_free(&env);
        return 2;
    }
    for (int k = 0; k < nmodel_opts; k++) {
        int at = model_opt_at[k];
        cli_model_opt(&cfg, argc, argv, &at);
    }

    rk_store *s;
    if (cli_open_store(&env, 1, &s)) {
        cli_env_free(&env);
        return 1;
    }
    rk_interactions *m = NULL;
    uint64_t t0 = rk_clock_mono_ns();
    rc = rk_interactions_from_store(&m, s, &cfg.inter, &err);
    rk_store_close(s);
    if (rc) {
        cli_printf_err("%s", rk_err_msg(&err));
        cli_env_free(&env);
        return 1;
    }
    printf("interactions: %u users x %u items, %llu pairs (%.2f s)\n",
           m->nusers, m->nitems, (unsigned long long)m->nnz,
           (double)(rk_clock_mono_ns() - t0) / 1e9);
    char models_dir[4096];
    snprintf(models_dir, sizeof models_dir, "%s/models", env.store.path);
    rk_pool *pool = NULL;
    int status = 0;
    if ((rc = rk_pool_create(&pool, cfg.ials.threads, 0))) {
        cli_printf_err("cannot start threads");
        status = 1;
    }
    for (size_t k = 0; k < cfg.nmodels && !status; k++) {
        rk_eval_model *mod = NULL;
        rk_buf meta;
        rk_buf_init(&meta, 1 << 20);
        uint32_t version = 0;
        uint64_t a = rk_clock_mono_ns();
        rk_err_clear(&err);
        rc = cli_model_create(cfg.models[k], &cfg, &mod, &err);
        if (!rc) rc = rk_eval_model_train(mod, m, pool, &err);
        double secs = (double)(rk_clock_mono_ns() - a) / 1e9;
        if (!rc) {
            char when[32];
            rk_format_time_ms(rk_clock_wall_ms(), when);
            int brc = rk_buf_printf(&meta, "{\"name\":\"%s\",\"kind\":\"%s\","
                                           "\"trained_at\":\"%s\","
                                           "\"train_seconds\":%.3f,"
                                           "\"data\":{\"store\":",
                                    rk_eval_model_name(mod),
                                    rk_eval_model_kind(mod), when, secs);
            brc = brc ? brc : rk_buf_put_json_str(&meta, env.store.path,
                                                  strlen(env.store.path));
            brc = brc ? brc : rk_buf_printf(&meta, ",\"users\":%u,\"items\":%u,"
                                                   "\"pairs\":%llu,"
                                                   "\"valued_min\":%g,"
                                                   "\"value_as_weight\":%s},"
                                                   "\"params\":",
                                            m->nusers, m->nitems,
                                            (unsigned long long)m->nnz,
                                            cfg.inter.valued_min,
                                            cfg.inter.value_as_weight ? "true" : "false");
            brc = brc ? brc : rk_eval_model_params(mod, &meta);
            brc = brc ? brc : rk_buf_puts(&meta, "}\n");
            rc = brc ? rk_err_set(&err, brc, "meta.json: out of memory")
                     : rk_train_publish(mod, models_dir, meta.data,
                                        (unsigned)keep, &version, &err);
        }
        if (rc) {
            cli_printf_err("%s: %s", cfg.models[k], rk_err_msg(&err));
            status = 1;
        } else {
            printf("%-10s trained in %.2f s -> %s/%s/%u\n", cfg.models[k],
                   secs, models_dir, rk_eval_model_name(mod), version);
        }
        rk_buf_free(&meta);
        rk_eval_model_destroy(mod);
    }
    rk_pool_destroy(pool);
    rk_interactions_free(m);
    cli_env_free(&env);
    return status;
}
