/*
 * cli.h — shared pieces of the rankd command line: the loaded environment
 * (config tree, store options, schema, logger) and option parsing helpers.
 * Each subcommand lives in its own file and has the signature of cli_cmd_fn.
 */
#ifndef RK_CLI_H
#define RK_CLI_H

#include "rk_core.h"
#include "rk_io.h"
#include "rk_retrieval.h"
#include "rk_store.h"
#include "rk_train.h"

typedef struct cli_env {
    rk_conf *conf;              /* NULL when no config file was used */
    const char *config_path;    /* the file loaded, or NULL */
    rk_store_opts store;
    rk_schema *schema;          /* from the config (or defaults) */
    rk_logger log;
} cli_env;

/* Common options every subcommand accepts, parsed out of argv. */
typedef struct cli_common {
    const char *config;         /* --config FILE */
    const char *data;           /* --data DIR */
    const char *log_level;      /* --log-level LEVEL */
} cli_common;

typedef int (*cli_cmd_fn)(int argc, char **argv);

/* Loads the config (explicit path, else ./rankd.yaml if present, else the
 * built-in defaults) and applies --data / --log-level. Prints the error and
 * returns nonzero on failure. */
int cli_env_load(cli_env *env, const cli_common *c);
void cli_env_free(cli_env *env);
/* Opens the store of env (read_only as given). Prints errors. */
int cli_open_store(cli_env *env, int read_only, rk_store **out);
/* "Now" for judging label windows of a store: the later of the wall clock
 * and the time of its newest event (a store served with serve.clock:
 * event, e.g. by a simulation, runs ahead of the wall clock). */
int64_t cli_store_now(rk_reader *r);

/* If argv[*i] is --config/--data/--log-level (with "--opt value" or
 * "--opt=value"), stores it and advances *i; returns 1 if consumed, 0 if
 * not, -1 on a missing value (message printed). */
int cli_common_opt(cli_common *c, int argc, char **argv, int *i);
/* Matches "--name value" or "--name=value"; same return convention. */
int cli_opt(const char *name, int argc, char **argv, int *i, const char **val);
/* Parses a positive integer option value; prints an error and returns -1. */
int cli_uint(const char *opt, const char *s, uint64_t max, uint64_t *out);

void cli_printf_err(const char *fmt, ...) RK_PRINTF(1, 2);

/* The config's root map, or NULL when there is no config (or it is empty). */
static inline const rk_conf_node *cli_conf_root(const cli_env *env)
{
    const rk_conf_node *r = env->conf ? rk_conf_root(env->conf) : NULL;
    return r && rk_conf_node_type(r) == RK_CONF_MAP ? r : NULL;
}

/* The `retrieval:` section (train.c): how events become interaction
 * weights, the models `rankd train` trains, and each model's parameters.
 * Shared by train and eval so both build models the same way. */
#define CLI_MAX_MODELS 8
typedef struct cli_retrieval {
    rk_inter_opts inter;
    rk_ials_opts ials;
    rk_ease_opts ease;
    rk_popular_opts trending;
    rk_covis_opts covis;
    const char *models[CLI_MAX_MODELS];  /* static names */
    size_t nmodels;
} cli_retrieval;

void cli_retrieval_default(cli_retrieval *r);
/* Reads retrieval: over r; RK_ECONFIG with file:line. root may be NULL. */
int cli_retrieval_from_conf(cli_retrieval *r, const rk_conf_node *root,
                            rk_err *err);
/* "ials,ease" -> names (static strings); RK_EINVAL on unknown/duplicate. */
int cli_model_list(const char *s, const char **names, size_t max, size_t *n,
                   rk_err *err);
/* Builds an evaluation model: popularity, ease, ials, trending, covis. */
int cli_model_create(const char *kind, const cli_retrieval *r,
                     rk_eval_model **out, rk_err *err);
/* --ials-* and --ease-* options, with cli_opt's return convention. */
int cli_model_opt(cli_retrieval *r, int argc, char **argv, int *i);

int cli_demo(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_schema(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_train_ranker(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_models(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_init(int argc, char **argv);
int cli_drift(int argc, char **argv);
int cli_playground(int argc, char **argv);
int cli_simulate(int argc, char **argv);

#endif
