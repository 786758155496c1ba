/*
 * serve.c — `rankd serve` end to end over HTTP: /v1/recommend on a
 * 1,000,000-item synthetic catalog, 500 candidates ranked by a 300-tree
 * GBDT, under an open-loop paced load, plus wrk's maximum throughput of
 * /v1/recommend, POST /v1/events and the loopback ceiling GET /healthz.
 *
 * Setup (not timed, cached): a data directory keyed by its parameters
 * under --dir. The catalog (items with a category and a price, users)
 * and the event log are written through the store API with the config's
 * feature spec attached (rk_feat_batch_event), so the aggregates exist
 * before the server starts. Events, fixed seed: sessions of impressions of
 * power-law popular items (and of the user's favourite category) with
 * clicks that depend on the item's appeal and the category, plus one
 * click on every catalog item so that every item has a trained factor.
 * Then `rankd train` builds iALS (with its HNSW items.ann) and
 * co-visitation, and `rankd train --ranker gbdt --name feed` a 300-tree,
 * depth-6 GBDT from the event log replay. A READY file marks a complete
 * directory; a directory without it is rebuilt.
 *
 * Measurement: `rankd serve` (--rankd) is started on 127.0.0.1 with
 * --port 0 --port-file. A built-in load generator (one thread, epoll,
 * --conns keep-alive connections, no pipelining) sends request i at its
 * intended time t0 + i / rate whatever happened before, and a request's
 * latency runs from that intended time to the last byte of its response,
 * so a stall is charged to every request it delays (no coordinated
 * omission, as in wrk2). Bodies are {"user": <uniform known user>,
 * "n": 10}. Per rate: p50/p90/p99/p99.9/max, service time (send to
 * response), achieved rate, errors, degraded answers (the response's
 * "degraded" and /metrics' counters), mean stage times from /metrics,
 * the server's CPU per answered request (from /proc: the figure that
 * hypervisor steal and other processes move least), each HTTP worker
 * thread's share of that CPU, and the machine's steal time. Before each
 * measurement the bench waits until the server is idle, so requests
 * queued by an overloaded run do not leak into the next. Then wrk (if
 * installed) at full speed: GET
 * /healthz (the ceiling of the HTTP layer on this machine), POST
 * /v1/recommend and POST /v1/events (batches of --event-batch events),
 * with the ratios to the ceiling.
 *
 * Output: JSON lines on stdout, a table on stderr. --smoke: a tiny catalog
 * in a fresh directory, one rate for one second, wrk for one second each
 * (make test).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rk_features.h"
#include "rk_store.h"

#define SEED 20261122u
#define NCAT 200
#define MAX_CONNS 1024
#define RBUF (256u << 10)
#define TARGET_RATE 1000
#define TARGET_P99_MS 5.0

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(rng(s) >> 11) * 0x1p-53; }

/* Power-law index in [0, n): popular ids are small. */
static uint32_t skewed(uint64_t *s, uint32_t n)
{
    double u = unit(s);
    return (uint32_t)((double)n * u * u * u);
}

static uint64_t mix(uint64_t x)
{
    uint64_t s = x;
    return rng(&s);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what, const rk_err *err)
{
    fprintf(stderr, "serve: %s: %s\n", what, err ? rk_err_msg(err) : strerror(errno));
    exit(1);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)f;
    if (flag == FTW_DP) rmdir(p);
    else unlink(p);
    return 0;
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static double loadavg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* Jiffies of the whole machine from /proc/stat: all, and stolen by the
 * hypervisor (on a VM the vCPUs may not run at all for a while; a steal
 * share above a few percent means every latency here is inflated). */
static void machine_jiffies(double *all, double *steal)
{
    unsigned long long v[8] = {0};
    *all = *steal = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++) *all += (double)v[i];
        *steal = (double)v[7];
    }
    fclose(f);
}

static double steal_pct(double all0, double st0)
{
    double all1, st1;
    machine_jiffies(&all1, &st1);
    return all1 > all0 ? 100.0 * (st1 - st0) / (all1 - all0) : 0;
}

/* user+system CPU seconds of a process. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long long ut = 0, st = 0;
    /* After ")": state, then fields 4..13, then utime (14) and stime (15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

/* CPU seconds of each libmicrohttpd worker thread of a process (they are
 * named "MHD-worker"), in thread id order; returns how many. */
static int worker_cpu(pid_t pid, double *out, int max)
{
    char path[128];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    int tids[256], n = 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    for (struct dirent *e; n < 256 && (e = readdir(d));)
        if (isdigit((unsigned char)e->d_name[0])) tids[n++] = atoi(e->d_name);
    closedir(d);
    qsort(tids, (size_t)n, sizeof *tids, cmp_int);
    int k = 0;
    for (int i = 0; i < n && k < max; i++) {
        char comm[64] = "", stat[4096];
        snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)pid, tids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "MHD-worker", 10)) continue;
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, tids[i]);
        if (!(f = fopen(path, "r"))) continue;
        size_t len = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[len] = '\0';
        char *p = strrchr(stat, ')');
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                        &ut, &st) == 2)
            out[k++] = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return k;
}

/* "[0.97,0.02]": each worker's share of the workers' CPU between two
 * worker_cpu samples. */
static void worker_shares(const double *a, const double *b, int n, char *out, size_t cap)
{
    double tot = 0;
    for (int i = 0; i < n; i++) tot += b[i] - a[i];
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%.2f", i ? "," : "",
                              tot > 0 ? (b[i] - a[i]) / tot : 0);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

/* Waits (at most max_s) until the process uses under 5% of a CPU over
 * 300 ms: requests queued by an overloaded run must not leak into the
 * next one. Returns the seconds waited. */
static double wait_idle(pid_t pid, double max_s)
{
    uint64_t a = now_ns();
    for (;;) {
        double c0 = proc_cpu(pid);
        usleep(300000);
        double c1 = proc_cpu(pid);
        double waited = (double)(now_ns() - a) / 1e9;
        if (c1 - c0 < 0.015 || waited > max_s) return waited;
    }
}

/* Runs argv with its stdout on our stderr; returns the exit status. */
static int run_cmd(char *const argv[])
{
    fprintf(stderr, "serve: $");
    for (int i = 0; argv[i]; i++) fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, "\n");
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(2, 1);
        execv(argv[0], argv);
        fprintf(stderr, "serve: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- setup: catalog, events, models -------------------------------------------- */

typedef struct params {
    uint32_t items, users, sessions, imps;  /* imps: impressions per session */
    uint32_t trees, depth, factors, iters;
} params;

static const char *const config_fmt =
    "# Written by bench/serve (build/bench/serve); see bench/README.md.\n"
    "store:\n"
    "  fsync: everysec\n"
    "  map_size_mb: 32768\n"
    "entities:\n"
    "  item:\n"
    "    attributes: {category: categorical, price: numeric}\n"
    "  user:\n"
    "    attributes: {country: categorical}\n"
    "events:\n"
    "  impression: {role: exposure}\n"
    "  click: {role: positive, weight: 1}\n"
    "retrieval:\n"
    "  models: [ials, covis]\n"
    "  ials: {factors: %u, iterations: %u, threads: 2}\n"
    "features:\n"
    "  hash_bits: 20\n"
    "  state: {ttl: 60d}\n"
    "  defs:\n"
    "    price: {kind: attribute, attr: price, log1p: true}\n"
    "    category: {kind: attribute, attr: category}\n"
    "    country: {kind: attribute, entity: user, attr: country, emit: false}\n"
    "    country_x_cat: {kind: cross, of: [country, category]}\n"
    "    item_ctr: {kind: rate, key: item, num: [click], den: [impression],\n"
    "               windows: [1d, 7d], prior: {mean: 0.05, strength: 20}}\n"
    "    item_ctr_decay: {kind: rate, key: item, num: [click], den: [impression],\n"
    "                     half_life: 6h, prior: {mean: 0.05, strength: 20}}\n"
    "    item_clicks: {kind: counter, key: item, events: [click], half_life: 3d}\n"
    "    user_clicks: {kind: counter, key: user, events: [click], half_life: 1d}\n"
    "    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click],\n"
    "                   den: [impression], half_life: 3d, prior: {alpha: 1, beta: 19}}\n"
    "    since_cat_click: {kind: recency, key: [user, item.category], events: [click]}\n"
    "    hour: {kind: context, field: hour}\n"
    "    weekday: {kind: context, field: weekday}\n"
    "    ann: {kind: score}\n"
    "serve:\n"
    "  ranker: feed\n"
    "  candidates: 500\n"
    "log:\n"
    "  level: warn\n";

/* The item's category: a mild power law over NCAT, fixed by its id. */
static uint32_t item_cat(uint32_t i)
{
    uint64_t s = SEED ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
    return skewed(&s, NCAT);
}

static double item_appeal(uint32_t i) { return (double)(mix((uint64_t)i ^ 0xa99e) >> 11) * 0x1p-53; }
static uint32_t user_fav(uint32_t u) { return (uint32_t)(mix((uint64_t)u ^ 0xfa7) % NCAT); }

typedef struct writer {
    rk_store *st;
    rk_feat_spec *spec;
    rk_batch *b;
    rk_reader *r;
    uint64_t n;
} writer;

static void w_flush(writer *w)
{
    rk_err err = {0};
    rk_reader_close(w->r);
    w->r = NULL;
    if (rk_batch_count(w->b) && rk_store_write(w->st, w->b, NULL, &err))
        die("write", &err);
    rk_batch_clear(w->b);
}

static void w_event(writer *w, const char *type, uint32_t u, uint32_t i, int64_t ts)
{
    rk_err err = {0};
    char user[24], item[24];
    snprintf(user, sizeof user, "u%u", u);
    snprintf(item, sizeof item, "i%u", i);
    if (!w->r && rk_store_reader(w->st, &w->r, &err)) die("reader", &err);
    rk_event_in ev = {0};
    ev.type = type;
    ev.user = user;
    ev.item = item;
    ev.ts_ms = ts;
    ev.position = -1;
    if (rk_feat_batch_event(w->spec, w->b, &ev, w->r, &err)) die("event", &err);
    w->n++;
    if (rk_batch_count(w->b) >= 20000) w_flush(w);
}

/* Writes the catalog and the event log; returns the number of events. */
static uint64_t populate(const char *dir, const char *config, const params *p)
{
    rk_err err = {0};
    rk_conf *conf;
    rk_schema *schema;
    rk_feat_spec *spec;
    rk_store *st;
    rk_store_opts o;
    rk_store_opts_default(&o);
    if (rk_conf_parse_yaml(&conf, config, strlen(config), "rankd.yaml", &err) ||
        rk_store_opts_from_conf(&o, rk_conf_root(conf), &err) ||
        rk_schema_from_conf(&schema, rk_conf_root(conf), &err) ||
        rk_feat_spec_from_conf(&spec, rk_conf_root(conf), schema, &err))
        die("config", &err);
    o.path = dir;
    if (rk_store_open(&st, &o, schema, &err) || rk_feat_attach(spec, st, &err))
        die("open store", &err);
    writer w = {st, spec, NULL, NULL, 0};
    if (rk_batch_create(&w.b, st, 0)) die("batch", NULL);
    uint64_t s = SEED;
    char id[24], cat[16], country[8];
    /* Items first, then users: dense ids follow the upsert order. */
    for (uint32_t i = 0; i < p->items; i++) {
        snprintf(id, sizeof id, "i%u", i);
        snprintf(cat, sizeof cat, "c%u", item_cat(i));
        rk_attr_in a[2];
        memset(a, 0, sizeof a);
        a[0].name = "category";
        a[0].type = RK_ATTR_CATEGORICAL;
        a[0].str = cat;
        a[0].len = strlen(cat);
        a[1].name = "price";
        a[1].type = RK_ATTR_NUMERIC;
        a[1].num = 1 + (double)(rng(&s) % 50000) / 100;
        if (rk_batch_upsert(w.b, RK_ENTITY_ITEM, id, a, 2, 0, &err)) die("upsert", &err);
        if (rk_batch_count(w.b) >= 20000) w_flush(&w);
    }
    for (uint32_t u = 0; u < p->users; u++) {
        snprintf(id, sizeof id, "u%u", u);
        snprintf(country, sizeof country, "k%u", skewed(&s, 30));
        rk_attr_in a = {0};
        a.name = "country";
        a.type = RK_ATTR_CATEGORICAL;
        a.str = country;
        a.len = strlen(country);
        if (rk_batch_upsert(w.b, RK_ENTITY_USER, id, &a, 1, 0, &err)) die("upsert", &err);
        if (rk_batch_count(w.b) >= 20000) w_flush(&w);
    }
    w_flush(&w);
    /* Items of each category, for sessions that browse the favourite one. */
    uint32_t *cstart = calloc(NCAT + 1, sizeof *cstart);
    uint32_t *citems = malloc((size_t)p->items * sizeof *citems);
    if (!cstart || !citems) die("out of memory", NULL);
    for (uint32_t i = 0; i < p->items; i++) cstart[item_cat(i) + 1]++;
    for (uint32_t c = 0; c < NCAT; c++) cstart[c + 1] += cstart[c];
    uint32_t *fill = calloc(NCAT, sizeof *fill);
    if (!fill) die("out of memory", NULL);
    for (uint32_t i = 0; i < p->items; i++) {
        uint32_t c = item_cat(i);
        citems[cstart[c] + fill[c]++] = i;
    }
    free(fill);
    /* Fourteen days of traffic ending now; sessions in time order, with
     * the catalog-wide clicks spread between them. */
    int64_t span = 14ll * 86400000, end = rk_clock_wall_ms() - 60000;
    int64_t t0 = end - span;
    uint32_t sweep = 0, per = (p->items + p->sessions - 1) / p->sessions;
    for (uint32_t k = 0; k < p->sessions; k++) {
        int64_t ts = t0 + (int64_t)((double)span * k / p->sessions);
        uint32_t u = (uint32_t)(rng(&s) % p->users), fav = user_fav(u);
        for (uint32_t j = 0; j < p->imps; j++) {
            uint32_t it;
            uint32_t nfav = cstart[fav + 1] - cstart[fav];
            if (nfav && rng(&s) % 100 < 30)
                it = citems[cstart[fav] + skewed(&s, nfav)];
            else
                it = skewed(&s, p->items);
            int64_t t = ts + (int64_t)j * 2000;
            w_event(&w, "impression", u, it, t);
            double pc = 0.01 + 0.12 * item_appeal(it) + (item_cat(it) == fav ? 0.15 : 0);
            if (unit(&s) < pc)
                w_event(&w, "click", u, it, t + 1000 + (int64_t)(rng(&s) % 20000));
        }
        for (uint32_t j = 0; j < per && sweep < p->items; j++, sweep++)
            w_event(&w, "click", (uint32_t)(rng(&s) % p->users), sweep, ts + 500 + j);
    }
    w_flush(&w);
    rk_batch_destroy(w.b);
    free(cstart);
    free(citems);
    if (rk_store_sync(st, &err)) die("sync", &err);
    rk_feat_detach(spec, st);
    rk_store_close(st);
    rk_feat_spec_destroy(spec);
    rk_schema_destroy(schema);
    rk_conf_destroy(conf);
    return w.n;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int bad = fputs(text, f) < 0;
    return fclose(f) || bad ? -1 : 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* Builds dir (or reuses it when its READY file records the same
 * parameters); returns 1 when reused. */
static int setup(const char *dir, const char *rankd, const params *p, const char *key,
                 double *secs, uint64_t *nevents)
{
    char path[4200], config[8192];
    snprintf(path, sizeof path, "%s/READY", dir);
    char *ready = read_file(path);
    if (ready && strncmp(ready, key, strlen(key)) == 0) {
        const char *e = strstr(ready, "events=");
        *nevents = e ? strtoull(e + 7, NULL, 10) : 0;
        free(ready);
        *secs = 0;
        return 1;
    }
    free(ready);
    uint64_t a = now_ns();
    rm_tree(dir);
    if (mkdir(dir, 0755) && errno != EEXIST) die(dir, NULL);
    snprintf(config, sizeof config, config_fmt, p->factors, p->iters);
    char cfg_path[4200], data[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/rankd.yaml", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    if (write_file(cfg_path, config)) die(cfg_path, NULL);
    fprintf(stderr, "serve: writing %u items, %u users, %u sessions of %u "
            "impressions into %s\n", p->items, p->users, p->sessions, p->imps, data);
    *nevents = populate(data, config, p);
    fprintf(stderr, "serve: %llu events written in %.1f s\n",
            (unsigned long long)*nevents, (double)(now_ns() - a) / 1e9);
    char trees[16], depth[16];
    snprintf(trees, sizeof trees, "%u", p->trees);
    snprintf(depth, sizeof depth, "%u", p->depth);
    char *train_ret[] = {(char *)rankd, "train", "--data", data, "--config", cfg_path,
                         "--log-level", "warn", NULL};
    char *train_rank[] = {(char *)rankd, "train", "--ranker", "gbdt", "--name", "feed",
                          "--trees", trees, "--depth", depth, "--eta", "0.1",
                          "--threads", "2", "--data", data, "--config", cfg_path,
                          "--log-level", "warn", NULL};
    if (run_cmd(train_ret) || run_cmd(train_rank)) {
        fprintf(stderr, "serve: training failed\n");
        exit(1);
    }
    char stamp[256];
    snprintf(stamp, sizeof stamp, "%s events=%llu\n", key, (unsigned long long)*nevents);
    if (write_file(path, stamp)) die(path, NULL);
    *secs = (double)(now_ns() - a) / 1e9;
    return 0;
}

/* ---- the server ------------------------------------------------------------------ */

static pid_t server_pid;

static void server_stop(void)
{
    if (server_pid <= 0) return;
    kill(server_pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        int st;
        if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
            server_pid = 0;
            return;
        }
        usleep(100000);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = 0;
}

static void on_fatal(int sig)
{
    if (server_pid > 0) kill(server_pid, SIGTERM);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A blocking TCP connection to 127.0.0.1:port; the fd or -1. */
static int connect_loopback(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One blocking request on a fresh connection ("Connection: close");
 * returns the status and the body in *body (malloc'd) or -1. */
static int http_once(uint16_t port, const char *method, const char *path, char **body)
{
    *body = NULL;
    int fd = connect_loopback(port);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n", method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (len + 4096 > cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    if (!buf) return -1;
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = -1;
    char *b = strstr(buf, "\r\n\r\n");
    *body = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

static uint16_t server_start(const char *rankd, const char *dir, const char *threads)
{
    char port_file[4200], cfg[4200], data[4200], logp[4200];
    snprintf(port_file, sizeof port_file, "%s/port", dir);
    snprintf(cfg, sizeof cfg, "%s/rankd.yaml", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(logp, sizeof logp, "%s/serve.log", dir);
    unlink(port_file);
    char *argv[] = {(char *)rankd, "serve", "--data", data, "--config", cfg,
                    "--bind", "127.0.0.1", "--port", "0", "--port-file", port_file,
                    "--log-level", "warn", threads ? "--threads" : NULL,
                    (char *)threads, NULL};
    uint64_t a = now_ns();
    pid_t pid = fork();
    if (pid < 0) die("fork", NULL);
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(rankd, argv);
        _exit(127);
    }
    server_pid = pid;
    atexit(server_stop); /* die() must not leave a server behind */
    signal(SIGINT, on_fatal);
    signal(SIGTERM, on_fatal);
    unsigned port = 0;
    for (int i = 0; i < 6000 && !port; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            server_pid = 0;
            char *l = read_file(logp);
            fprintf(stderr, "serve: rankd serve exited early:\n%s\n", l ? l : "");
            free(l);
            exit(1);
        }
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%u", &port) != 1) port = 0;
            fclose(f);
        }
        if (!port) usleep(50000);
    }
    if (!port) {
        fprintf(stderr, "serve: no port file after 300 s\n");
        server_stop();
        exit(1);
    }
    char *body;
    int st = http_once((uint16_t)port, "GET", "/readyz", &body);
    fprintf(stderr, "serve: server pid %d on port %u, up in %.1f s; /readyz %d %s\n",
            (int)pid, port, (double)(now_ns() - a) / 1e9, st, body ? body : "");
    if (st != 200 || !body || !strstr(body, "\"feed\":") || strstr(body, "\"feed\":0")) {
        fprintf(stderr, "serve: the server is not ready or has no ranker\n");
        free(body);
        server_stop();
        exit(1);
    }
    free(body);
    return (uint16_t)port;
}

/* ---- /metrics ----------------------------------------------------------------- */

typedef struct msnap {
    double deg_fewer, deg_trending, errors, flog_failed;
    double stage_sum[4], stage_cnt[4];
    double cpu, wall;
} msnap;

static const char *const stage_names[4] = {"retrieval", "features", "rank", "rules"};

static double metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ') return strtod(p + nl + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

static msnap scrape(uint16_t port)
{
    msnap m = {0};
    char *b;
    m.cpu = proc_cpu(server_pid);
    m.wall = (double)now_ns() / 1e9;
    if (http_once(port, "GET", "/metrics", &b) != 200 || !b) {
        free(b);
        return m;
    }
    m.deg_fewer = metric(b, "rankd_recommend_degraded_total{reason=\"fewer_candidates\"}");
    m.deg_trending = metric(b, "rankd_recommend_degraded_total{reason=\"trending\"}");
    m.flog_failed = metric(b, "rankd_feature_log_total{result=\"failed\"}");
    /* Error responses of every code. */
    for (const char *p = strstr(b, "rankd_errors_total{"); p;
         p = strstr(p + 1, "rankd_errors_total{")) {
        const char *sp = strchr(p, ' ');
        if (sp) m.errors += strtod(sp + 1, NULL);
    }
    for (int i = 0; i < 4; i++) {
        char name[128];
        snprintf(name, sizeof name, "rankd_stage_duration_seconds_sum{stage=\"%s\"}",
                 stage_names[i]);
        m.stage_sum[i] = metric(b, name);
        snprintf(name, sizeof name, "rankd_stage_duration_seconds_count{stage=\"%s\"}",
                 stage_names[i]);
        m.stage_cnt[i] = metric(b, name);
    }
    free(b);
    return m;
}

/* ---- the paced load generator ------------------------------------------------------ */

typedef struct conn {
    int fd;
    int busy;
    uint64_t req;           /* index of the request in flight */
    char w[512];
    size_t wlen, woff;
    char *r;
    size_t rlen;
} conn;

typedef struct paced {
    double rate, seconds;
    uint64_t total, completed, errors, http_errors, timeouts, degraded, reconnects;
    uint64_t *lat, *svc;    /* per request; UINT64_MAX = no response */
    double p50, p90, p99, p999, max, svc_p50, svc_p99, achieved, late_ms;
} paced;

static int conn_open(conn *c, uint16_t port)
{
    int fd = connect_loopback(port);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->busy = 0;
    c->rlen = 0;
    return 0;
}

/* A complete response in c->r: 1 and its status and length, 0 if more
 * bytes are needed, -1 if it cannot be parsed. */
static int resp_complete(const conn *c, int *status, size_t *total)
{
    const char *h = memmem(c->r, c->rlen, "\r\n\r\n", 4);
    if (!h) return c->rlen >= RBUF ? -1 : 0;
    size_t hl = (size_t)(h - c->r) + 4;
    if (c->rlen < 12 || memcmp(c->r, "HTTP/1.", 7)) return -1;
    *status = atoi(c->r + 9);
    size_t clen = 0;
    int have = 0;
    for (const char *p = c->r; p < h + 2;) {
        const char *e = memchr(p, '\n', (size_t)(h + 2 - p));
        if (!e) break;
        e++;
        if ((size_t)(e - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
            clen = strtoull(p + 15, NULL, 10);
            have = 1;
        }
        p = e;
    }
    if (!have) return -1; /* every rankd response has a length */
    if (hl + clen > RBUF) return -1;
    *total = hl + clen;
    return c->rlen >= *total;
}

static void set_out(int ep, conn *c, int want)
{
    struct epoll_event ev = {0};
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)ceil(p * (double)n);
    if (i == 0) i = 1;
    if (i > n) i = n;
    return v[i - 1] == UINT64_MAX ? INFINITY : (double)v[i - 1] / 1e6;
}

/* A latency for JSON (null when no response: infinitely late). */
static const char *jms(double v, char *buf)
{
    if (isinf(v)) return "null";
    snprintf(buf, 32, "%.3f", v);
    return buf;
}

/* Sends rate x seconds requests at their intended times over nconn
 * connections; fills r. */
static void run_paced(uint16_t port, int nconn, double gap_ms, double rate,
                      double seconds, uint32_t nusers, uint64_t seed, paced *r)
{
    memset(r, 0, sizeof *r);
    r->rate = rate;
    r->seconds = seconds;
    r->total = (uint64_t)(rate * seconds + 0.5);
    if (!r->total) r->total = 1;
    r->lat = malloc(r->total * sizeof *r->lat);
    r->svc = malloc(r->total * sizeof *r->svc);
    uint64_t *sent_at = malloc(r->total * sizeof *sent_at);
    conn *cs = calloc((size_t)nconn, sizeof *cs);
    conn **idle = calloc((size_t)nconn, sizeof *idle);
    if (!r->lat || !r->svc || !sent_at || !cs || !idle) die("out of memory", NULL);
    for (uint64_t i = 0; i < r->total; i++) r->lat[i] = r->svc[i] = UINT64_MAX;
    int ep = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (ep < 0 || tfd < 0) die("epoll", NULL);
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    int nidle = 0;
    for (int i = 0; i < nconn; i++) {
        cs[i].r = malloc(RBUF);
        if (!cs[i].r || conn_open(&cs[i], port)) die("connect", NULL);
        ev.events = EPOLLIN;
        ev.data.ptr = &cs[i];
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        idle[nidle++] = &cs[i];
        if (gap_ms > 0) usleep((useconds_t)(gap_ms * 1000));
    }
    uint64_t s = seed;
    double gap = 1e9 / rate;
    uint64_t t0 = now_ns() + 20000000; /* 20 ms from now */
    uint64_t next = 0, done = 0;
    uint64_t give_up = t0 + (uint64_t)(seconds * 1e9) + 10000000000ull;
    uint64_t last_done = t0;
    int armed = 0;
    while (done < r->total) {
        uint64_t now = now_ns();
        if (now > give_up) break;
        /* Every request that is due goes out on an idle connection. */
        while (next < r->total && nidle &&
               t0 + (uint64_t)((double)next * gap) <= now) {
            conn *c = idle[--nidle];
            char body[96];
            int bl = snprintf(body, sizeof body, "{\"user\":\"u%u\",\"n\":10}",
                              (uint32_t)(rng(&s) % nusers));
            c->wlen = (size_t)snprintf(c->w, sizeof c->w,
                                       "POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       "Content-Type: application/json\r\n"
                                       "Content-Length: %d\r\n\r\n%s", bl, body);
            c->woff = 0;
            c->busy = 1;
            c->req = next;
            c->rlen = 0;
            sent_at[next] = now;
            ssize_t w = write(c->fd, c->w, c->wlen);
            if (w > 0) c->woff = (size_t)w;
            if (c->woff < c->wlen) set_out(ep, c, 1);
            next++;
        }
        /* Wake at the next intended time when a connection could take it. */
        struct itimerspec its = {0};
        if (next < r->total && nidle) {
            uint64_t at = t0 + (uint64_t)((double)next * gap);
            its.it_value.tv_sec = (time_t)(at / 1000000000u);
            its.it_value.tv_nsec = (long)(at % 1000000000u);
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            armed = 1;
        } else if (armed) {
            timerfd_settime(tfd, 0, &its, NULL);
            armed = 0;
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 1000);
        for (int k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (!c) {
                uint64_t x;
                while (read(tfd, &x, sizeof x) > 0) {}
                continue;
            }
            if ((evs[k].events & EPOLLOUT) && c->busy && c->woff < c->wlen) {
                ssize_t w = write(c->fd, c->w + c->woff, c->wlen - c->woff);
                if (w > 0) c->woff += (size_t)w;
                if (c->woff == c->wlen) set_out(ep, c, 0);
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            int closed = 0;
            for (;;) {
                ssize_t got = read(c->fd, c->r + c->rlen, RBUF - c->rlen);
                if (got > 0) {
                    c->rlen += (size_t)got;
                    if (c->rlen == RBUF) break;
                    continue;
                }
                if (got == 0 || (errno != EAGAIN && errno != EINTR)) closed = 1;
                if (got < 0 && errno == EINTR) continue;
                break;
            }
            int status = 0;
            size_t total = 0;
            int rc = c->busy ? resp_complete(c, &status, &total) : (c->rlen ? -1 : 0);
            uint64_t t = now_ns();
            if (rc == 1) {
                uint64_t i = c->req;
                r->lat[i] = t - (t0 + (uint64_t)((double)i * gap));
                r->svc[i] = t - sent_at[i];
                if (status != 200) r->http_errors++;
                else if (memmem(c->r, total, "\"degraded\":", 11)) r->degraded++;
                r->completed++;
                done++;
                last_done = t;
                c->busy = 0;
                c->rlen = 0;
                if (!closed) idle[nidle++] = c;
            }
            if (rc < 0 || closed) {
                if (c->busy) {
                    r->errors++;
                    done++;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                r->reconnects++;
                if (conn_open(c, port)) die("reconnect", NULL);
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                idle[nidle++] = c;
            }
        }
    }
    r->timeouts = r->total - done;
    /* How late the last request left: the generator keeping up. */
    if (next) {
        uint64_t last = next - 1;
        uint64_t intended = t0 + (uint64_t)((double)last * gap);
        r->late_ms = sent_at[last] > intended ? (double)(sent_at[last] - intended) / 1e6 : 0;
    }
    double span = (double)(last_done - t0) / 1e9;
    r->achieved = span > 0 ? (double)r->completed / span : 0;
    /* Percentiles over every request; one without a response counts as
     * infinitely late (it sorts last). */
    qsort(r->lat, r->total, sizeof *r->lat, cmp_u64);
    size_t nsvc = 0;
    for (uint64_t i = 0; i < r->total; i++)
        if (r->svc[i] != UINT64_MAX) r->svc[nsvc++] = r->svc[i];
    qsort(r->svc, nsvc, sizeof *r->svc, cmp_u64);
    r->p50 = pct_ms(r->lat, r->total, 0.50);
    r->p90 = pct_ms(r->lat, r->total, 0.90);
    r->p99 = pct_ms(r->lat, r->total, 0.99);
    r->p999 = pct_ms(r->lat, r->total, 0.999);
    r->max = r->lat[r->total - 1] == UINT64_MAX ? INFINITY
                                                : (double)r->lat[r->total - 1] / 1e6;
    r->svc_p50 = pct_ms(r->svc, nsvc, 0.50);
    r->svc_p99 = pct_ms(r->svc, nsvc, 0.99);
    for (int i = 0; i < nconn; i++) {
        close(cs[i].fd);
        free(cs[i].r);
    }
    close(tfd);
    close(ep);
    free(cs);
    free(idle);
    free(sent_at);
    free(r->lat);
    free(r->svc);
    r->lat = r->svc = NULL;
}

/* ---- wrk ---------------------------------------------------------------------------- */

typedef struct wrk_res {
    int ok;
    double rps, p50, p90, p99, requests, non2xx, sock_err;
} wrk_res;

static const char *wrk_path(void)
{
    static char buf[4096];
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(buf, sizeof buf, "%.*s/wrk", (int)n, p);
        if (access(buf, X_OK) == 0) return buf;
        p += n;
        if (*p) p++;
    }
    return NULL;
}

static double wrk_time_ms(const char *s)
{
    char *e;
    double v = strtod(s, &e);
    if (!strncmp(e, "us", 2)) return v / 1e3;
    if (!strncmp(e, "ms", 2)) return v;
    if (*e == 's') return v * 1e3;
    if (*e == 'm') return v * 60e3;
    return v;
}

static wrk_res run_wrk(const char *wrk, uint16_t port, const char *path,
                       const char *script, int threads, int conns, int secs)
{
    wrk_res w = {0};
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -t%d -c%d -d%ds --latency %s%s%s "
             "'http://127.0.0.1:%u%s' 2>&1", wrk, threads, conns, secs,
             script ? "-s '" : "", script ? script : "", script ? "'" : "",
             (unsigned)port, path);
    FILE *f = popen(cmd, "r");
    if (!f) return w;
    char line[1024];
    int in_dist = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!strncmp(p, "Requests/sec:", 13)) {
            w.rps = strtod(p + 13, NULL);
            w.ok = 1;
        } else if (!strncmp(p, "Latency Distribution", 20)) {
            in_dist = 1;
        } else if (in_dist && isdigit((unsigned char)*p) && strchr(p, '%')) {
            double q = strtod(p, NULL);
            char *v = strchr(p, '%') + 1;
            while (*v == ' ') v++;
            double ms = wrk_time_ms(v);
            if (q == 50) w.p50 = ms;
            else if (q == 90) w.p90 = ms;
            else if (q == 99) w.p99 = ms;
        } else if (strstr(p, "requests in ")) {
            w.requests = strtod(p, NULL);
            in_dist = 0;
        } else if (!strncmp(p, "Non-2xx or 3xx responses:", 25)) {
            w.non2xx = strtod(p + 25, NULL);
        } else if (!strncmp(p, "Socket errors:", 14)) {
            unsigned a = 0, b = 0, c = 0, d = 0;
            sscanf(p, "Socket errors: connect %u, read %u, write %u, timeout %u",
                   &a, &b, &c, &d);
            w.sock_err = a + b + c + d;
        }
    }
    int st = pclose(f);
    if (st != 0) w.ok = 0;
    return w;
}

static const char *const lua_recommend =
    "-- Written by bench/serve: POST /v1/recommend for uniform random users.\n"
    "local nusers = %u\n"
    "local nthreads = 0\n"
    "function setup(thread) thread:set(\"tid\", nthreads); nthreads = nthreads + 1 end\n"
    "function init(args) math.randomseed(%u + 7919 * (tid or 0)) end\n"
    "wrk.method = \"POST\"\n"
    "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
    "function request()\n"
    "  local body = string.format('{\"user\":\"u%%d\",\"n\":10}', math.random(0, nusers - 1))\n"
    "  return wrk.format(nil, nil, nil, body)\n"
    "end\n";

static const char *const lua_events =
    "-- Written by bench/serve: POST /v1/events, %u events per request,\n"
    "-- 90%% impressions and 10%% clicks of random users and items.\n"
    "local nusers, nitems, batch = %u, %u, %u\n"
    "local nthreads = 0\n"
    "function setup(thread) thread:set(\"tid\", nthreads); nthreads = nthreads + 1 end\n"
    "function init(args) math.randomseed(%u + 104729 * (tid or 0)) end\n"
    "wrk.method = \"POST\"\n"
    "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
    "function request()\n"
    "  local t = {}\n"
    "  for i = 1, batch do\n"
    "    local ty = math.random() < 0.9 and 'impression' or 'click'\n"
    "    t[i] = string.format('{\"type\":\"%%s\",\"user\":\"u%%d\",\"item\":\"i%%d\"}',\n"
    "                         ty, math.random(0, nusers - 1), math.random(0, nitems - 1))\n"
    "  end\n"
    "  return wrk.format(nil, nil, nil, '[' .. table.concat(t, ',') .. ']')\n"
    "end\n";

/* ---- main -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: serve [--smoke] [--items N] [--users N] [--sessions N] [--trees N]\n"
        "             [--dir DIR] [--rankd PATH] [--rates R1,R2,...] [--seconds S]\n"
        "             [--warmup S] [--conns N] [--connect-gap-ms X] [--threads N]\n"
        "             [--no-wrk]\n"
        "             [--wrk-seconds S] [--wrk-conns N] [--wrk-threads N]\n"
        "             [--event-batch N]\n"
        "  --items N       catalog size (1000000); --users N (100000)\n"
        "  --sessions N    sessions of 10 impressions in the event log (200000)\n"
        "  --trees N       GBDT trees (300, depth 6)\n"
        "  --dir DIR       data directory, reused when its parameters match\n"
        "                  (default $TMPDIR/rankd-bench-serve-<params>)\n"
        "  --rankd PATH    the rankd binary ($RANKD, else ./build/rankd)\n"
        "  --rates LIST    paced request rates per second (250,500,1000,1500)\n"
        "  --seconds S     seconds per rate (20); --warmup S (5) at 200 req/s first\n"
        "  --conns N       load generator connections (64)\n"
        "  --connect-gap-ms X  pause between opening them (0: all at once,\n"
        "                  as connection pools and wrk do)\n"
        "  --threads N     rankd serve --threads (default: its own, one per CPU)\n"
        "  --wrk-*         wrk duration (10 s), connections (32), threads (1)\n"
        "  --event-batch N events per POST /v1/events (100)\n"
        "  --no-wrk        skip the wrk runs\n"
        "  --smoke         tiny run in a fresh directory (make test)\n");
}

int main(int argc, char **argv)
{
    int smoke = 0, no_wrk = 0, conns = 64, wrk_secs = 10, wrk_conns = 32, wrk_threads = 1;
    double seconds = 20, warmup = 5, gap_ms = 0;
    unsigned event_batch = 100;
    const char *dir_arg = NULL, *rankd = "./build/rankd", *rates_arg = NULL,
               *threads = NULL;
    params p = {1000000, 100000, 200000, 10, 300, 6, 64, 3};
    /* scripts/run-tests.sh exports the build's binary as RANKD. */
    if (getenv("RANKD") && *getenv("RANKD")) rankd = getenv("RANKD");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && (++i, 1))
        if (!strcmp(a, "--smoke")) smoke = 1;
        else if (!strcmp(a, "--no-wrk")) no_wrk = 1;
        else if (OPT("--items")) p.items = (uint32_t)strtoul(v, NULL, 10);
        else if (OPT("--users")) p.users = (uint32_t)strtoul(v, NULL, 10);
        else if (OPT("--sessions")) p.sessions = (uint32_t)strtoul(v, NULL, 10);
        else if (OPT("--trees")) p.trees = (uint32_t)strtoul(v, NULL, 10);
        else if (OPT("--dir")) dir_arg = v;
        else if (OPT("--rankd")) rankd = v;
        else if (OPT("--rates")) rates_arg = v;
        else if (OPT("--seconds")) seconds = strtod(v, NULL);
        else if (OPT("--warmup")) warmup = strtod(v, NULL);
        else if (OPT("--conns")) conns = atoi(v);
        else if (OPT("--connect-gap-ms")) gap_ms = strtod(v, NULL);
        else if (OPT("--threads")) threads = v;
        else if (OPT("--wrk-seconds")) wrk_secs = atoi(v);
        else if (OPT("--wrk-conns")) wrk_conns = atoi(v);
        else if (OPT("--wrk-threads")) wrk_threads = atoi(v);
        else if (OPT("--event-batch")) event_batch = (unsigned)strtoul(v, NULL, 10);
        else {
            usage(strcmp(a, "--help") ? stderr : stdout);
            return strcmp(a, "--help") ? 2 : 0;
        }
#undef OPT
    }
    double rates[16];
    int nrates = 0;
    if (smoke) {
        p = (params){2000, 200, 300, 10, 20, 6, 8, 2};
        seconds = 1;
        warmup = 0;
        wrk_secs = 1;
        rates[nrates++] = 200;
    } else {
        const char *r = rates_arg ? rates_arg : "250,500,1000,1500";
        while (*r && nrates < 16) {
            char *e;
            double x = strtod(r, &e);
            if (e == r || x <= 0) {
                usage(stderr);
                return 2;
            }
            rates[nrates++] = x;
            r = *e == ',' ? e + 1 : e;
        }
    }
    if (p.items < 1000 || p.users < 10 || p.sessions < 10 || conns < 1 ||
        conns > MAX_CONNS || seconds <= 0 || event_batch < 1) {
        usage(stderr);
        return 2;
    }
    if (access(rankd, X_OK)) {
        fprintf(stderr, "serve: %s: not an executable (build it, or --rankd)\n", rankd);
        return 1;
    }
    char key[256], dir[4096];
    snprintf(key, sizeof key, "i%u-u%u-s%u-m%u-t%u-d%u-f%u-n%u-v1", p.items, p.users,
             p.sessions, p.imps, p.trees, p.depth, p.factors, p.iters);
    const char *tmp = getenv("TMPDIR");
    if (smoke) {
        snprintf(dir, sizeof dir, "%s/rankd-bench-serve-smoke-XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) die("mkdtemp", NULL);
    } else if (dir_arg) {
        snprintf(dir, sizeof dir, "%s", dir_arg);
    } else {
        snprintf(dir, sizeof dir, "%s/rankd-bench-serve-%s", tmp ? tmp : "/tmp", key);
    }
    signal(SIGPIPE, SIG_IGN);
    double setup_s;
    uint64_t nevents;
    int reused = setup(dir, rankd, &p, key, &setup_s, &nevents);
    printf("{\"bench\":\"serve\",\"measure\":\"setup\",\"items\":%u,\"users\":%u,"
           "\"events\":%llu,\"trees\":%u,\"depth\":%u,\"factors\":%u,\"reused\":%s,"
           "\"seconds\":%.1f,\"dir\":\"%s\",\"smoke\":%s}\n",
           p.items, p.users, (unsigned long long)nevents, p.trees, p.depth, p.factors,
           reused ? "true" : "false", setup_s, dir, smoke ? "true" : "false");
    fflush(stdout);
    fprintf(stderr, "serve: data %s (%s), %u items, %u users, %llu events, GBDT %u "
            "trees depth %u, iALS k=%u\n", dir, reused ? "reused" : "built",
            p.items, p.users, (unsigned long long)nevents, p.trees, p.depth, p.factors);

    uint16_t port = server_start(rankd, dir, threads);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (warmup > 0) {
        paced w;
        run_paced(port, conns, gap_ms, 200, warmup, p.users, SEED ^ 0x3a3a, &w);
        fprintf(stderr, "serve: warm-up %.0f s at 200 req/s: p50 %.2f ms, p99 %.2f ms\n",
                warmup, w.p50, w.p99);
    }
    fprintf(stderr, "\n%-20s %7s %8s %6s %7s %7s %7s %8s %8s %8s %7s %6s %5s\n",
            "paced /v1/recommend", "rate", "achieved", "errors", "p50 ms", "p90 ms",
            "p99 ms", "p99.9 ms", "max ms", "svc p99", "degr", "cpu", "load");
    paced at_target = {0};
    int have_target = 0;
    for (int k = 0; k < nrates; k++) {
        double drained = wait_idle(server_pid, 120);
        msnap a = scrape(port);
        double la = loadavg1(), wa[16], wb[16];
        int nw = worker_cpu(server_pid, wa, 16);
        double j0, s0;
        machine_jiffies(&j0, &s0);
        paced r;
        run_paced(port, conns, gap_ms, rates[k], seconds, p.users, SEED + (uint64_t)k, &r);
        msnap b = scrape(port);
        double lb = loadavg1(), steal = steal_pct(j0, s0);
        char shares[256];
        if (worker_cpu(server_pid, wb, 16) != nw) nw = 0;
        worker_shares(wa, wb, nw, shares, sizeof shares);
        char j1[32], j2[32], j3[32], j4[32], j5[32];
        double cores = b.wall > a.wall ? (b.cpu - a.cpu) / (b.wall - a.wall) : 0;
        /* CPU per answered request: the figure that hypervisor steal and
         * other processes do not move much (the latencies they do). */
        double cpu_ms = r.completed ? (b.cpu - a.cpu) * 1e3 / (double)r.completed : 0;
        double stage[4];
        for (int i = 0; i < 4; i++) {
            double n = b.stage_cnt[i] - a.stage_cnt[i];
            stage[i] = n > 0 ? (b.stage_sum[i] - a.stage_sum[i]) / n * 1e3 : 0;
        }
        int met = r.p99 <= TARGET_P99_MS && r.errors + r.timeouts + r.http_errors == 0;
        printf("{\"bench\":\"serve\",\"measure\":\"paced\",\"endpoint\":\"/v1/recommend\","
               "\"rate\":%.0f,\"seconds\":%.1f,\"requests\":%llu,\"completed\":%llu,"
               "\"achieved_rps\":%.1f,\"errors\":%llu,\"http_errors\":%llu,"
               "\"timeouts\":%llu,\"reconnects\":%llu,\"conns\":%d,"
               "\"p50_ms\":%s,\"p90_ms\":%s,\"p99_ms\":%s,\"p999_ms\":%s,"
               "\"max_ms\":%s,\"service_p50_ms\":%.3f,\"service_p99_ms\":%.3f,"
               "\"degraded\":%llu,\"metrics_degraded_fewer\":%.0f,"
               "\"metrics_degraded_trending\":%.0f,\"metrics_errors\":%.0f,"
               "\"stage_mean_ms\":{\"retrieval\":%.3f,\"features\":%.3f,\"rank\":%.3f,"
               "\"rules\":%.3f},\"server_cpu_cores\":%.2f,\"cpu_ms_per_request\":%.3f,"
               "\"worker_cpu_share\":%s,"
               "\"connect_gap_ms\":%g,\"idle_wait_sec\":%.1f,\"steal_pct\":%.1f,"
               "\"cpus\":%ld,"
               "\"loadavg_before\":%.2f,\"loadavg_after\":%.2f,\"target_p99_ms\":%.1f,"
               "\"target_rate\":%d,\"p99_met\":%s,\"smoke\":%s}\n",
               r.rate, r.seconds, (unsigned long long)r.total,
               (unsigned long long)r.completed, r.achieved,
               (unsigned long long)r.errors, (unsigned long long)r.http_errors,
               (unsigned long long)r.timeouts, (unsigned long long)r.reconnects, conns,
               jms(r.p50, j1), jms(r.p90, j2), jms(r.p99, j3), jms(r.p999, j4),
               jms(r.max, j5), r.svc_p50,
               r.svc_p99, (unsigned long long)r.degraded, b.deg_fewer - a.deg_fewer,
               b.deg_trending - a.deg_trending, b.errors - a.errors, stage[0],
               stage[1], stage[2], stage[3], cores, cpu_ms, shares, gap_ms, drained, steal,
               ncpu, la,
               lb, TARGET_P99_MS,
               TARGET_RATE, met ? "true" : "false", smoke ? "true" : "false");
        fflush(stdout);
        fprintf(stderr, "%-20s %7.0f %8.1f %6llu %7.1f %7.1f %7.1f %8.1f %8.1f %8.2f "
                "%7llu %6.2f %5.2f\n", "", r.rate, r.achieved,
                (unsigned long long)(r.errors + r.http_errors + r.timeouts), r.p50,
                r.p90, r.p99, r.p999, r.max, r.svc_p99, (unsigned long long)r.degraded,
                cores, lb);
        fprintf(stderr, "%-20s stages (mean ms): retrieval %.2f, features %.2f, rank "
                "%.2f, rules %.2f; server CPU %.2f ms/request; HTTP worker CPU shares %s; "
                "steal %.0f%%\n", "", stage[0], stage[1], stage[2], stage[3], cpu_ms, shares,
                steal);
        if ((int)rates[k] == TARGET_RATE) {
            at_target = r;
            have_target = 1;
        }
    }
    if (have_target)
        fprintf(stderr, "target p99 <= %.0f ms at %d req/s: %s (p99 %.2f ms)\n",
                TARGET_P99_MS, TARGET_RATE,
                at_target.p99 <= TARGET_P99_MS ? "met" : "NOT met", at_target.p99);

    const char *wrk = no_wrk ? NULL : wrk_path();
    if (!wrk) {
        printf("{\"bench\":\"serve\",\"measure\":\"wrk\",\"skipped\":\"%s\",\"smoke\":%s}\n",
               no_wrk ? "--no-wrk" : "wrk not installed", smoke ? "true" : "false");
        fprintf(stderr, "wrk: skipped (%s; scripts/setup.sh installs it)\n",
                no_wrk ? "--no-wrk" : "not on PATH");
    } else {
        char lua_r[4200], lua_e[4200], text[4096];
        snprintf(lua_r, sizeof lua_r, "%s/wrk-recommend.lua", dir);
        snprintf(lua_e, sizeof lua_e, "%s/wrk-events.lua", dir);
        snprintf(text, sizeof text, lua_recommend, p.users, SEED);
        if (write_file(lua_r, text)) die(lua_r, NULL);
        snprintf(text, sizeof text, lua_events, event_batch, p.users, p.items,
                 event_batch, SEED);
        if (write_file(lua_e, text)) die(lua_e, NULL);
        struct {
            const char *name, *path, *script;
            wrk_res r;
            double cores, load;
        } runs[3] = {{"healthz", "/healthz", NULL, {0}, 0, 0},
                     {"recommend", "/v1/recommend", lua_r, {0}, 0, 0},
                     {"events", "/v1/events", lua_e, {0}, 0, 0}};
        fprintf(stderr, "\n%-20s %10s %10s %8s %8s %8s %8s %6s %5s\n", "wrk (max)",
                "req/s", "events/s*", "p50 ms", "p90 ms", "p99 ms", "non2xx", "cpu",
                "load");
        for (int k = 0; k < 3; k++) {
            wait_idle(server_pid, 120);
            double wa[16], wb[16];
            int nw = worker_cpu(server_pid, wa, 16);
            msnap ma = scrape(port);
            double c0 = proc_cpu(server_pid), w0 = (double)now_ns() / 1e9, j0, s0;
            machine_jiffies(&j0, &s0);
            runs[k].r = run_wrk(wrk, port, runs[k].path, runs[k].script, wrk_threads,
                                wrk_conns, wrk_secs);
            double c1 = proc_cpu(server_pid), w1 = (double)now_ns() / 1e9;
            runs[k].cores = w1 > w0 ? (c1 - c0) / (w1 - w0) : 0;
            double cpu_ms = runs[k].r.requests > 0 ? (c1 - c0) * 1e3 / runs[k].r.requests : 0;
            char shares[256];
            if (worker_cpu(server_pid, wb, 16) != nw) nw = 0;
            worker_shares(wa, wb, nw, shares, sizeof shares);
            runs[k].load = loadavg1();
            double steal = steal_pct(j0, s0);
            msnap mb = scrape(port);
            double degraded = (mb.deg_fewer - ma.deg_fewer) + (mb.deg_trending - ma.deg_trending);
            wrk_res *w = &runs[k].r;
            int ev = k == 2;
            double good = w->requests > 0 ? (w->requests - w->non2xx) / w->requests : 0;
            printf("{\"bench\":\"serve\",\"measure\":\"wrk\",\"endpoint\":\"%s\","
                   "\"ok\":%s,\"threads\":%d,\"conns\":%d,\"seconds\":%d,"
                   "\"requests\":%.0f,\"rps\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
                   "\"p99_ms\":%.3f,\"non2xx\":%.0f,\"socket_errors\":%.0f,",
                   runs[k].path, w->ok ? "true" : "false", wrk_threads, wrk_conns,
                   wrk_secs, w->requests, w->rps, w->p50, w->p90, w->p99, w->non2xx,
                   w->sock_err);
            if (ev) printf("\"event_batch\":%u,\"events_per_sec\":%.0f,", event_batch,
                           w->rps * event_batch * good);
            if (k == 1) printf("\"degraded_fewer\":%.0f,\"degraded_trending\":%.0f,",
                               mb.deg_fewer - ma.deg_fewer, mb.deg_trending - ma.deg_trending);
            printf("\"server_cpu_cores\":%.2f,\"cpu_ms_per_request\":%.4f,"
                   "\"worker_cpu_share\":%s,\"loadavg\":%.2f,\"steal_pct\":%.1f,"
                   "\"smoke\":%s}\n", runs[k].cores, cpu_ms, shares, runs[k].load, steal,
                   smoke ? "true" : "false");
            fflush(stdout);
            char evs[32] = "-";
            if (ev) snprintf(evs, sizeof evs, "%.0f", w->rps * event_batch * good);
            if (k == 1 && w->requests > 0)
                snprintf(evs, sizeof evs, "degr %.0f%%", 100 * degraded / w->requests);
            fprintf(stderr, "%-20s %10.1f %10s %8.2f %8.2f %8.2f %8.0f %6.2f %5.2f %s "
                    "steal %.0f%%, %.3f CPU ms/req%s\n", runs[k].path, w->rps, evs, w->p50,
                    w->p90, w->p99, w->non2xx, runs[k].cores, runs[k].load, shares, steal,
                    cpu_ms, w->ok ? "" : "  (wrk failed)");
        }
        double h = runs[0].r.rps;
        double rr = h > 0 ? runs[1].r.rps / h : 0, re = h > 0 ? runs[2].r.rps / h : 0;
        printf("{\"bench\":\"serve\",\"measure\":\"ratios\",\"healthz_rps\":%.1f,"
               "\"recommend_over_healthz\":%.5f,\"events_requests_over_healthz\":%.5f,"
               "\"smoke\":%s}\n", h, rr, re, smoke ? "true" : "false");
        fprintf(stderr, "(* /v1/recommend: share of answers degraded to meet the deadline)\n");
        fprintf(stderr, "ratio to the /healthz ceiling: /v1/recommend %.4f (%.1f%%), "
                "/v1/events requests %.4f (%.1f%%)\n", rr, rr * 100, re, re * 100);
    }
    fflush(stdout);
    server_stop();
    if (smoke) rm_tree(dir);
    return 0;
}
