/*
 * playground.c — `rankd playground`: the whole loop on one machine in one
 * command. It writes a data directory from the video template (once),
 * starts `rankd serve` on 127.0.0.1, has `rankd simulate --setup` create
 * a simulated catalog, users and history through the HTTP API, trains the
 * retrieval models and a GBDT ranker while the server runs (the server
 * picks them up at its next registry poll), then keeps simulated traffic
 * flowing and prints a live status line from the server's /metrics:
 * requests/s, p99, CTR, drift alarms and the served model version.
 * Ctrl-C (or --duration) stops the traffic and the server cleanly.
 *
 * Each step is this same binary run as a child process (/proc/self/exe),
 * exactly the commands a user would type; their output goes to
 * DIR/playground.log.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

static const char pg_usage[] =
    "usage: rankd playground [--data DIR] [--port N] [--users N] [--items N]\n"
    "                        [--duration S] [--ranker-trees N]\n"
    "Creates DIR (default ./rankd-playground) from the video template, starts\n"
    "the server on 127.0.0.1:PORT (8080; 0 = any free port), simulates a catalog, users and\n"
    "history, trains retrieval and a GBDT ranker, then runs simulated traffic\n"
    "and prints a live status line until Ctrl-C (or --duration seconds).\n";

static volatile sig_atomic_t pg_stop;

static void on_sig(int sig)
{
    (void)sig;
    pg_stop = 1;
}

/* Runs rankd with argv (NULL-terminated) as a child writing to logfd;
 * returns its pid, or -1. */
static pid_t spawn_rankd(char *const *args, int logfd)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, logfd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, logfd, STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc ? -1 : pid;
}

/* Waits for pid; 0 when it exited with status 0. Interrupted by Ctrl-C:
 * the child is stopped and -1 returned. */
static int wait_child(pid_t pid)
{
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
        if (r < 0 && errno != EINTR) return -1;
        if (pg_stop) {
            kill(pid, SIGTERM);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(50000);
    }
}

static int run_step(const char *what, char *const *args, int logfd)
{
    printf("playground: %s ...\n", what);
    fflush(stdout);
    pid_t pid = spawn_rankd(args, logfd);
    if (pid < 0 || wait_child(pid)) {
        if (!pg_stop) cli_printf_err("playground: %s failed (see the log)", what);
        return -1;
    }
    return 0;
}

typedef struct mbuf {
    char *p;
    size_t n;
} mbuf;

static size_t on_data(char *d, size_t sz, size_t nm, void *arg)
{
    mbuf *b = arg;
    size_t add = sz * nm;
    if (b->n + add > (8u << 20)) return 0;
    char *q = realloc(b->p, b->n + add + 1);
    if (!q) return 0;
    memcpy(q + b->n, d, add);
    b->p = q;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

/* Sum of the values of every series whose line starts with prefix. */
static double series(const char *text, const char *prefix)
{
    double sum = 0;
    size_t pl = strlen(prefix);
    for (const char *l = text; l && *l;) {
        if (!strncmp(l, prefix, pl)) {
            const char *sp = strchr(l, ' ');
            if (sp) sum += strtod(sp + 1, NULL);
        }
        l = strchr(l, '\n');
        if (l) l++;
    }
    return sum;
}

typedef struct snap {
    double t, requests, clicks, impressions;
    double buckets[32];
    double le[32];
    size_t nb;
} snap;

static int scrape(CURL *c, const char *url, snap *s)
{
    mbuf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    int rc = curl_easy_perform(c) == CURLE_OK && b.p ? 0 : -1;
    if (!rc) {
        s->requests = series(b.p, "rankd_requests_total{endpoint=\"recommend\"");
        s->clicks = series(b.p, "rankd_events_total{type=\"click\"}");
        s->impressions = series(b.p, "rankd_events_total{type=\"impression\"}");
        s->nb = 0;
        const char *pre = "rankd_request_duration_seconds_bucket{endpoint=\"recommend\",le=\"";
        for (const char *l = strstr(b.p, pre); l && s->nb < 32; l = strstr(l + 1, pre)) {
            const char *v = l + strlen(pre);
            s->le[s->nb] = strncmp(v, "+Inf", 4) ? strtod(v, NULL) : INFINITY;
            const char *sp = strchr(v, ' ');
            s->buckets[s->nb++] = sp ? strtod(sp + 1, NULL) : 0;
        }
    }
    free(b.p);
    return rc;
}

/* p99 in ms of the requests between two scrapes, from the histogram. */
static double p99_between(const snap *a, const snap *b)
{
    if (a->nb != b->nb || !b->nb) return NAN;
    double tot = b->buckets[b->nb - 1] - a->buckets[a->nb - 1];
    if (tot <= 0) return NAN;
    for (size_t i = 0; i < b->nb; i++)
        if (b->buckets[i] - a->buckets[i] >= 0.99 * tot) return b->le[i] * 1000;
    return NAN;
}

static void get_text(CURL *c, const char *url, mbuf *b)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    if (curl_easy_perform(c) != CURLE_OK) b->n = 0;
}

int cli_playground(int argc, char **argv)
{
    const char *dir = "./rankd-playground", *port = "8080", *users = "300",
               *items = "1000", *duration = NULL, *trees = "100";
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt("--data", argc, argv, &i, &dir)) ||
            (r = cli_opt("--port", argc, argv, &i, &port)) ||
            (r = cli_opt("--users", argc, argv, &i, &users)) ||
            (r = cli_opt("--items", argc, argv, &i, &items)) ||
            (r = cli_opt("--duration", argc, argv, &i, &duration)) ||
            (r = cli_opt("--ranker-trees", argc, argv, &i, &trees))) {
            if (r < 0) return 2;
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(pg_usage, stdout);
            return 0;
        }
        cli_printf_err("playground: unexpected '%s'\n%s", argv[i], pg_usage);
        return 2;
    }
    uint64_t v;
    if ((strcmp(port, "0") && cli_uint("--port", port, 65535, &v)) || cli_uint("--users", users, 1000000, &v) ||
        cli_uint("--items", items, 10000000, &v) || cli_uint("--ranker-trees", trees, 5000, &v) ||
        (duration && cli_uint("--duration", duration, 86400 * 365, &v)))
        return 2;
    double stop_after = duration ? strtod(duration, NULL) : 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char conf[4200], logp[4200], portf[4200], url[128], murl[160];
    snprintf(conf, sizeof conf, "%s/rankd.yaml", dir);
    snprintf(logp, sizeof logp, "%s/playground.log", dir);
    snprintf(portf, sizeof portf, "%s/port", dir);
    struct stat st;
    int fresh = stat(conf, &st) != 0;
    if (fresh) {
        char *init[] = {"rankd", "init", "--template", "video", (char *)dir, NULL};
        pid_t p = spawn_rankd(init, STDERR_FILENO);
        if (p < 0 || wait_child(p)) {
            cli_printf_err("playground: cannot create %s", conf);
            return 1;
        }
    }
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0) {
        cli_printf_err("playground: %s: %s", logp, strerror(errno));
        return 1;
    }
    unlink(portf);
    char *serve[] = {"rankd", "serve", "--data", (char *)dir, "--config", conf,
                     "--port", (char *)port, "--port-file", portf, NULL};
    pid_t srv = spawn_rankd(serve, logfd);
    int rc = 1;
    pid_t sim = -1;
    CURL *c = NULL;
    for (int i = 0; srv > 0 && i < 600 && stat(portf, &st) != 0; i++) {
        if (waitpid(srv, NULL, WNOHANG) == srv || pg_stop) {
            srv = -1;
            break;
        }
        usleep(100000);
    }
    if (srv < 0 || stat(portf, &st) != 0) {
        cli_printf_err("playground: the server did not start (see %s)", logp);
        goto out;
    }
    /* The bound port (--port 0 lets the server pick a free one). */
    char bound[16] = "";
    FILE *pf = fopen(portf, "r");
    if (pf) {
        if (!fgets(bound, sizeof bound, pf)) bound[0] = '\0';
        fclose(pf);
    }
    bound[strcspn(bound, "\r\n")] = '\0';
    snprintf(url, sizeof url, "http://127.0.0.1:%s", bound[0] ? bound : port);
    snprintf(murl, sizeof murl, "%s/metrics", url);
    printf("playground: serving %s (data %s, log %s)\n", url, dir, logp);
    if (fresh) {
        char *setup[] = {"rankd", "simulate", "--url", url, "--setup", "--hours", "1",
                         "--users", (char *)users, "--items", (char *)items, NULL};
        char *tr[] = {"rankd", "train", "--data", (char *)dir, "--config", conf, NULL};
        char *trr[] = {"rankd", "train", "--data", (char *)dir, "--config", conf,
                       "--ranker", "gbdt", "--trees", (char *)trees, "--name", "feed",
                       NULL};
        if (run_step("simulating a catalog, users and their history", setup, logfd) ||
            run_step("training retrieval (iALS, co-visitation)", tr, logfd) ||
            run_step("training the GBDT ranker 'feed' from the event log", trr, logfd))
            goto out;
    }
    printf("\ntry:\n"
           "  curl -s %s/v1/recommend -d '{\"user\": \"u1\", \"n\": 5}'\n"
           "  curl -s %s/v1/similar/i1?n=5\n"
           "  curl -s %s/v1/monitor/drift | jq .report.dataset\n"
           "  curl -s %s/metrics | grep rankd_model_version\n"
           "Ctrl-C stops.\n\n", url, url, url, url);
    c = curl_easy_init();
    if (!c) goto out;
    snap prev = {0}, cur = {0};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    (void)scrape(c, murl, &prev);
    unsigned hour = 1;
    while (!pg_stop) {
        if (sim > 0 && waitpid(sim, NULL, WNOHANG) == sim) sim = -1;
        if (sim < 0) {
            /* The next simulated hour of traffic, paced at 60x real time. */
            char first[16];
            snprintf(first, sizeof first, "%u", hour++);
            char *run[] = {"rankd", "simulate", "--url", url, "--hours", "1",
                           "--first-hour", first, "--users", (char *)users,
                           "--items", (char *)items, "--speed", "60", NULL};
            sim = spawn_rankd(run, logfd);
        }
        sleep(1);
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
        if (scrape(c, murl, &cur)) {
            /* Ctrl-C reaches the whole process group: the server may have
             * stopped first. */
            if (pg_stop) break;
            printf("\rplayground: the server does not answer /metrics          ");
            fflush(stdout);
            if (waitpid(srv, NULL, WNOHANG) == srv) {
                srv = -1;
                cli_printf_err("playground: the server exited (see %s)", logp);
                goto out;
            }
            continue;
        }
        mbuf mv = {0};
        get_text(c, murl, &mv);
        double dd = mv.p ? series(mv.p, "rankd_dataset_drift{") : 0;
        double ver = mv.p ? series(mv.p, "rankd_model_version{model=\"feed\"}") : 0;
        free(mv.p);
        double rps = cur.requests - prev.requests;
        double imp = cur.impressions - prev.impressions, clk = cur.clicks - prev.clicks;
        double p99 = p99_between(&prev, &cur);
        printf("\r%6.0fs  %6.1f req/s  p99 %7.2f ms  CTR %6.4f  drift %s  model feed@%.0f   ",
               el, rps, isfinite(p99) ? p99 : 0.0, imp > 0 ? clk / imp : 0.0,
               dd > 0 ? "ALARM" : "ok", ver);
        fflush(stdout);
        prev = cur;
        if (stop_after > 0 && el >= stop_after) break;
    }
    printf("\nplayground: stopping\n");
    rc = 0;
out:
    if (c) curl_easy_cleanup(c);
    if (sim > 0) {
        kill(sim, SIGTERM);
        waitpid(sim, NULL, 0);
    }
    if (srv > 0) {
        kill(srv, SIGTERM);
        int stt;
        waitpid(srv, &stt, 0);
        if (!(WIFEXITED(stt) && WEXITSTATUS(stt) == 0)) rc = 1;
    }
    close(logfd);
    return rc;
}
