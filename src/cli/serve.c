/*
 * serve.c — `rankd serve`: opens the data directory read-write, builds the
 * server from the config's serve:, features:, labels: and experiments:
 * sections, listens, and runs until SIGINT or SIGTERM, then stops
 * accepting, finishes the requests in flight and closes the store.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "rk_serve.h"

static const char serve_usage[] =
    "usage: rankd serve [--data DIR] [--config FILE] [--bind ADDR] [--port N]\n"
    "                   [--threads N] [--port-file FILE] [--log-level LEVEL]\n"
    "Serves the /v1 HTTP API (docs/serving.md) on 127.0.0.1:8080 by default.\n"
    "--port 0 picks a free port; --port-file writes the bound port to FILE\n"
    "once the server accepts requests. Stops cleanly on SIGINT/SIGTERM.\n";

int cli_serve(int argc, char **argv)
{
    cli_common c = {0};
    const char *bind = NULL, *port = NULL, *threads = NULL, *port_file = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_common_opt(&c, argc, argv, &i)) ||
            (r = cli_opt("--bind", argc, argv, &i, &bind)) ||
            (r = cli_opt("--port", argc, argv, &i, &port)) ||
            (r = cli_opt("--threads", argc, argv, &i, &threads)) ||
            (r = cli_opt("--port-file", argc, argv, &i, &port_file))) {
            if (r < 0) return 2;
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(serve_usage, stdout);
            return 0;
        }
        cli_printf_err("serve: unknown option '%s'\n%s", argv[i], serve_usage);
        return 2;
    }
    cli_env env;
    int rc = cli_env_load(&env, &c);
    if (rc) return rc;
    rk_err err = {0};
    rk_serve_opts o;
    rk_serve_opts_default(&o);
    const rk_conf_node *root = cli_conf_root(&env);
    if (rk_serve_opts_from_conf(&o, root, &err)) {
        cli_printf_err("%s", err.msg);
        cli_env_free(&env);
        return 1;
    }
    uint64_t v;
    if (bind) o.bind = bind;
    if (port) {
        if (rk_parse_u64(port, strlen(port), &v) || v > 65535) {
            cli_printf_err("--port: expected 0..65535, got '%s'", port);
            cli_env_free(&env);
            return 2;
        }
        o.port = (uint16_t)v;
    }
    if (threads) {
        if (cli_uint("--threads", threads, 256, &v)) {
            cli_env_free(&env);
            return 2;
        }
        o.threads = (unsigned)v;
    }
    /* SIGINT/SIGTERM are blocked before any thread starts, so every
     * server thread inherits the mask and sigwait below receives them;
     * none is lost between a check and a wait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    o.config_path = env.config_path;
    o.exe = "/proc/self/exe";
    rk_store *s = NULL;
    rk_server *srv = NULL;
    rc = 1;
    if (cli_open_store(&env, 0, &s)) goto done;
    if (rk_server_create(&srv, s, root, &o, &env.log, &err) ||
        rk_server_listen(srv, &err)) {
        cli_printf_err("%s", err.msg);
        goto done;
    }
    if (port_file) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", (unsigned)rk_server_port(srv)) < 0 ||
            fclose(f) || rename(tmp, port_file)) {
            cli_printf_err("--port-file %s: cannot write", port_file);
            goto done;
        }
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    rk_log(&env.log, RK_LOG_INFO, "serve", "stopping on %s",
           sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
done:
    rk_server_destroy(srv);
    rk_store_close(s);
    cli_env_free(&env);
    return rc;
}
