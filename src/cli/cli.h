/*
 * cli.h — shared pieces of the rankd command line: the loaded environment
 * (config tree, store options, schema, logger) and option parsing helpers.
 * Each subcommand lives in its own file and has the signature of cli_cmd_fn.
 */
#ifndef RK_CLI_H
#define RK_CLI_H

#include "rk_core.h"
#include "rk_io.h"
#include "rk_store.h"

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

/* If argv[*i] is --config/--data/--log-level (with "--opt value" or
 * "--opt=value"), stores it and advances *i; returns 1 if consumed, 0 if
 * not, -1 on a missing value (message printed). */
int cli_common_opt(cli_common *c, int argc, char **argv, int *i);
/* Matches "--name value" or "--name=value"; same return convention. */
int cli_opt(const char *name, int argc, char **argv, int *i, const char **val);
/* Parses a positive integer option value; prints an error and returns -1. */
int cli_uint(const char *opt, const char *s, uint64_t max, uint64_t *out);

void cli_printf_err(const char *fmt, ...) RK_PRINTF(1, 2);

int cli_demo(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_schema(int argc, char **argv);

#endif
