/*
 * simulate.c — `rankd simulate`: drives a running `rankd serve` with the
 * simulated video platform of src/sim/ and prints online CTR and watch
 * time per simulated hour (table on stdout, optionally CSV).
 * `--write-config FILE` writes the matching server config and exits.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rk_sim.h"

static const char simulate_usage[] =
    "usage: rankd simulate --url http://127.0.0.1:PORT [options]\n"
    "       rankd simulate --write-config FILE [world options]\n"
    "  --url URL                 the server (default http://127.0.0.1:8080)\n"
    "  --api-key K               sent as X-API-Key (needs read and write)\n"
    "  --scenario S              steady|taste_shift|new_items|pipeline_bug|seasonality\n"
    "  --hours N                 simulated hours to run after any setup (default 3)\n"
    "  --first-hour N            index of the first hour (continue a run; default 0)\n"
    "  --setup                   first write items, users and a history of events\n"
    "  --users N --items N --categories N --dim N --seed N\n"
    "                            the world (defaults 500, 2000, 12, 16, 42)\n"
    "  --sessions-per-hour N     (default 200)   --requests-per-session N (2)\n"
    "  --n N                     items per request (10)\n"
    "  --history-sessions N      setup history sessions (4000)\n"
    "  --history-hours N         hours of history before the start (48)\n"
    "  --start MS|now            simulated time of hour 0 in ms since 1970\n"
    "                            (default: now, floored to the minute)\n"
    "  --speed X|max             simulated seconds per real second (default max)\n"
    "  --threads N               HTTP worker threads (1)\n"
    "  --event-hour N            hour the scenario starts acting (2)\n"
    "  --shift categories|latent taste_shift kind: favourite categories move\n"
    "                            half the circle on (default), or taste space\n"
    "                            rotates (the best attainable CTR falls too)\n"
    "  --shift-deg X             how far tastes turn (90: all the way)\n"
    "  --new-items N             new_items wave size (200)\n"
    "  --wave-boost X            new_items extra click logit (1.0)\n"
    "  --bug scale|missing       pipeline_bug kind (scale)\n"
    "  --bug-scale X             pipeline_bug factor on bandwidth (1000)\n"
    "  --season-amplitude X      seasonality strength in [0, 1] (0.5)\n"
    "  --max-errors N            failed requests before giving up (50)\n"
    "  --timeout-ms N            per HTTP request (10000)\n"
    "  --csv FILE                also write the report as CSV\n"
    "  --write-config FILE       write a rankd config matching the world, exit\n";

static int num_opt(const char *opt, const char *v, double lo, double hi,
                   double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) {
        cli_printf_err("%s: expected a number in [%g, %g], got '%s'", opt, lo,
                       hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

/* Unsigned options that may be 0, with their bounds. */
static int u32_opt(const char *opt, const char *v, uint32_t lo, uint32_t hi,
                   uint32_t *out)
{
    uint64_t n;
    if (rk_parse_u64(v, strlen(v), &n) || n < lo || n > hi) {
        cli_printf_err("%s: expected an integer in %u..%u, got '%s'", opt, lo,
                       hi, v);
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

int cli_simulate(int argc, char **argv)
{
    rk_sim_opts o;
    rk_sim_opts_default(&o);
    const char *csv = NULL, *write_config = NULL, *v;
    uint32_t hours = 3, first = 0;
    int setup = 0;
    static const struct {
        const char *name;
        size_t off;
        uint32_t lo, hi;
    } u32s[] = {
        {"--users", offsetof(rk_sim_opts, users), 1, 10000000},
        {"--items", offsetof(rk_sim_opts, items), 1, 10000000},
        {"--categories", offsetof(rk_sim_opts, categories), 1, 64},
        {"--dim", offsetof(rk_sim_opts, dim), 2, 256},
        {"--sessions-per-hour", offsetof(rk_sim_opts, sessions_per_hour), 1, 1000000},
        {"--requests-per-session", offsetof(rk_sim_opts, requests_per_session), 1, 100},
        {"--n", offsetof(rk_sim_opts, n), 1, 200},
        {"--history-sessions", offsetof(rk_sim_opts, history_sessions), 0, 100000000},
        {"--history-hours", offsetof(rk_sim_opts, history_hours), 1, 8760},
        {"--threads", offsetof(rk_sim_opts, threads), 1, 64},
        {"--event-hour", offsetof(rk_sim_opts, event_hour), 0, 1000000},
        {"--new-items", offsetof(rk_sim_opts, new_items), 0, 1000000},
        {"--max-errors", offsetof(rk_sim_opts, max_errors), 0, 1000000000},
        {"--timeout-ms", offsetof(rk_sim_opts, timeout_ms), 1, 3600000},
    };
    static const struct {
        const char *name;
        size_t off;
        double lo, hi;
    } dbls[] = {
        {"--shift-deg", offsetof(rk_sim_opts, shift_deg), -360, 360},
        {"--wave-boost", offsetof(rk_sim_opts, wave_boost), -10, 10},
        {"--bug-scale", offsetof(rk_sim_opts, bug_scale), -1e9, 1e9},
        {"--season-amplitude", offsetof(rk_sim_opts, season_amplitude), 0, 1},
    };
    for (int i = 1; i < argc; i++) {
        int r, done = 0;
        for (size_t k = 0; k < sizeof u32s / sizeof u32s[0] && !done; k++)
            if ((r = cli_opt(u32s[k].name, argc, argv, &i, &v))) {
                if (r < 0 || u32_opt(u32s[k].name, v, u32s[k].lo, u32s[k].hi,
                                     (uint32_t *)((char *)&o + u32s[k].off)))
                    return 2;
                done = 1;
            }
        for (size_t k = 0; k < sizeof dbls / sizeof dbls[0] && !done; k++)
            if ((r = cli_opt(dbls[k].name, argc, argv, &i, &v))) {
                if (r < 0 || num_opt(dbls[k].name, v, dbls[k].lo, dbls[k].hi,
                                     (double *)((char *)&o + dbls[k].off)))
                    return 2;
                done = 1;
            }
        if (done) continue;
        if ((r = cli_opt("--url", argc, argv, &i, &o.url))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--api-key", argc, argv, &i, &o.api_key))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--csv", argc, argv, &i, &csv))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--write-config", argc, argv, &i, &write_config))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--scenario", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (rk_sim_scenario_parse(v, &o.scenario)) {
                cli_printf_err("--scenario: unknown '%s' (steady, taste_shift, "
                               "new_items, pipeline_bug, seasonality)", v);
                return 2;
            }
        } else if ((r = cli_opt("--shift", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (rk_sim_shift_parse(v, &o.shift)) {
                cli_printf_err("--shift: expected categories or latent, got '%s'", v);
                return 2;
            }
        } else if ((r = cli_opt("--bug", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (strcmp(v, "scale") == 0) o.bug = RK_SIM_BUG_SCALE;
            else if (strcmp(v, "missing") == 0) o.bug = RK_SIM_BUG_MISSING;
            else {
                cli_printf_err("--bug: expected scale or missing, got '%s'", v);
                return 2;
            }
        } else if ((r = cli_opt("--hours", argc, argv, &i, &v))) {
            if (r < 0 || u32_opt("--hours", v, 0, 100000, &hours)) return 2;
        } else if ((r = cli_opt("--first-hour", argc, argv, &i, &v))) {
            if (r < 0 || u32_opt("--first-hour", v, 0, 1000000, &first)) return 2;
        } else if ((r = cli_opt("--seed", argc, argv, &i, &v))) {
            uint64_t n;
            if (r < 0 || rk_parse_u64(v, strlen(v), &n)) {
                cli_printf_err("--seed: expected an integer, got '%s'", v);
                return 2;
            }
            o.seed = n;
        } else if ((r = cli_opt("--start", argc, argv, &i, &v))) {
            uint64_t n;
            if (r < 0) return 2;
            if (strcmp(v, "now") == 0) {
                o.start_ms = 0;
            } else if (rk_parse_u64(v, strlen(v), &n) || n == 0 || n > (1ull << 50)) {
                cli_printf_err("--start: expected ms since 1970 or 'now', got '%s'", v);
                return 2;
            } else {
                o.start_ms = (int64_t)n;
            }
        } else if ((r = cli_opt("--speed", argc, argv, &i, &v))) {
            if (r < 0) return 2;
            if (strcmp(v, "max") == 0) o.speed = 0;
            else if (num_opt("--speed", v, 1e-3, 1e9, &o.speed)) return 2;
        } else if (strcmp(argv[i], "--setup") == 0) {
            setup = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(simulate_usage, stdout);
            return 0;
        } else {
            cli_printf_err("simulate: unexpected '%s'\n%s", argv[i], simulate_usage);
            return 2;
        }
    }
    if (write_config) {
        FILE *f = fopen(write_config, "w");
        if (!f || rk_sim_write_config(f, &o) != 0 || fclose(f) != 0) {
            cli_printf_err("cannot write %s: %s", write_config, strerror(errno));
            return 1;
        }
        printf("wrote %s\n", write_config);
        return 0;
    }
    rk_err err = {0};
    rk_sim *s;
    if (rk_sim_create(&s, &o, &err)) {
        cli_printf_err("simulate: %s", rk_err_msg(&err));
        return err.code == RK_EINVAL ? 2 : 1;
    }
    int status = 0;
    FILE *cf = NULL;
    if (rk_sim_check(s)) {
        cli_printf_err("simulate: %s", rk_sim_errmsg(s));
        rk_sim_destroy(s);
        return 1;
    }
    if (csv && !(cf = fopen(csv, "w"))) {
        cli_printf_err("cannot write %s: %s", csv, strerror(errno));
        rk_sim_destroy(s);
        return 1;
    }
    printf("rankd simulate: %s, scenario %s, %u users, %u items, seed %llu\n",
           o.url, rk_sim_scenario_name(o.scenario), o.users, o.items,
           (unsigned long long)o.seed);
    fflush(stdout);
    if (setup && rk_sim_setup(s, stdout)) {
        cli_printf_err("simulate: setup: %s", rk_sim_errmsg(s));
        status = 1;
    }
    if (!status && hours > 0) {
        rk_sim_table_header(stdout);
        if (cf) rk_sim_csv_header(cf);
        for (uint32_t h = first; h < first + hours; h++) {
            rk_sim_hour_stats st;
            int rc = rk_sim_run_hour(s, h, &st);
            rk_sim_table_row(stdout, &st);
            fflush(stdout);
            if (cf) rk_sim_csv_row(cf, &st);
            if (st.errors && !rc)
                cli_printf_err("simulate: hour %u: %llu failed requests, last: %s",
                               h, (unsigned long long)st.errors, rk_sim_errmsg(s));
            if (rc) {
                cli_printf_err("simulate: %s", rk_sim_errmsg(s));
                status = 1;
                break;
            }
        }
    }
    if (cf && fclose(cf) != 0) {
        cli_printf_err("cannot write %s: %s", csv, strerror(errno));
        status = 1;
    }
    rk_sim_destroy(s);
    return status;
}
