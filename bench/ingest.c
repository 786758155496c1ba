/*
 * ingest.c — durable event ingest: rankd's store against Redis streams at
 * equal durability, side by side in one run.
 *
 * For each fsync policy (always, everysec), producer batch size (1, 100,
 * 10000) and producer count, the same pre-generated events (click and
 * impression mix, ~100k users and ~20k items with power-law popularity,
 * fixed seed) are written
 *   - to a fresh rankd store: rk_batch_event per event, rk_store_write per
 *     batch, one batch in flight per producer thread;
 *   - to a fresh redis-server (appendonly, appendfsync always|everysec) as
 *     pipelined XADDs, one hiredis connection per producer thread.
 * Each configuration stops after --events events or --seconds seconds,
 * whichever comes first, and is then checked: the store's event count (or
 * XLEN) must equal the number of acknowledged events.
 *
 * Results: one JSON line per configuration on stdout (throughput per wall
 * second and per CPU second, acknowledge latency p50/p95/p99 per batch),
 * then a table with rankd/redis ratios on stderr. CPU is getrusage of this
 * process for rankd (producers and writer) and /proc/<pid>/stat of the
 * server for Redis (its client's CPU is reported separately). A last
 * rankd-only row pins the whole process to one CPU: the "one core" figure.
 * See bench/README.md for how to read the numbers.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis.h>

#include "rk_store.h"

#define NUSERS 100000
#define NITEMS 20000
#define SEED 20261122u

/* ---- workload -------------------------------------------------------------- */

/* One pre-generated event, its strings inline as they would be in a
 * request or file buffer (reading them through a shared id table instead
 * would add a cache miss per id that real ingest does not have). The
 * strings Redis needs (ts, value) are formatted here too, so neither side
 * spends timed work on generating input. */
typedef struct ev {
    int64_t ts_ms;
    uint16_t value;       /* dwell seconds when has_value */
    uint8_t click, has_value;
    char user[8];         /* "u12345" */
    char item[8];         /* "i1234" */
    char ts[14];          /* ts_ms as decimal text */
    char val[4];          /* value as decimal text */
} ev;

typedef struct workload {
    ev *ev;
    size_t n;
} workload;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1p-53; }

/* Cumulative Zipf(s) weights over k ranks, for inverse-CDF sampling. */
static double *zipf_cdf(size_t k, double s)
{
    double *c = malloc(k * sizeof *c), sum = 0;
    if (!c) return NULL;
    for (size_t i = 0; i < k; i++) c[i] = sum += 1.0 / pow((double)(i + 1), s);
    for (size_t i = 0; i < k; i++) c[i] /= sum;
    return c;
}

static uint32_t zipf_draw(const double *cdf, size_t k, uint64_t *s)
{
    double u = unit(s);
    size_t lo = 0, hi = k - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u) lo = mid + 1; else hi = mid;
    }
    return (uint32_t)lo;
}

/* A fixed permutation of 0..k-1 so that popularity is not id order. */
static uint32_t *shuffled(size_t k, uint64_t *s)
{
    uint32_t *p = malloc(k * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < k; i++) p[i] = (uint32_t)i;
    for (size_t i = k - 1; i > 0; i--) {
        size_t j = splitmix(s) % (i + 1);
        uint32_t t = p[i]; p[i] = p[j]; p[j] = t;
    }
    return p;
}

/* Writes an optional prefix letter and v in decimal, NUL-terminated (the
 * caller's buffer is large enough); snprintf made generation slow. */
static void fmt_id(char *out, char prefix, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    if (prefix) *out++ = prefix;
    while (n) *out++ = tmp[--n];
    *out = '\0';
}

/* Items follow Zipf(1.1) (a few hits, a long tail); users a milder Zipf(0.7)
 * so most of the 100k users appear. 80% impressions, 20% clicks, half of the
 * clicks carry a dwell time. Timestamps advance 0..3 ms per event. */
static int workload_make(workload *w, size_t n)
{
    uint64_t s = SEED;
    memset(w, 0, sizeof *w);
    w->n = n;
    w->ev = malloc(n * sizeof *w->ev);
    double *ucdf = zipf_cdf(NUSERS, 0.7), *icdf = zipf_cdf(NITEMS, 1.1);
    uint32_t *uperm = shuffled(NUSERS, &s), *iperm = shuffled(NITEMS, &s);
    int ok = w->ev && ucdf && icdf && uperm && iperm;
    if (ok) {
        int64_t ts = 1763800000000LL;
        for (size_t i = 0; i < n; i++) {
            ev *e = &w->ev[i];
            memset(e, 0, sizeof *e);
            fmt_id(e->user, 'u', uperm[zipf_draw(ucdf, NUSERS, &s)]);
            fmt_id(e->item, 'i', iperm[zipf_draw(icdf, NITEMS, &s)]);
            ts += (int64_t)(splitmix(&s) % 4);
            e->ts_ms = ts;
            e->click = unit(&s) < 0.2;
            e->has_value = e->click && (splitmix(&s) & 1);
            if (e->has_value) e->value = (uint16_t)(1 + splitmix(&s) % 300);
            fmt_id(e->ts, 0, (uint64_t)ts);
            fmt_id(e->val, 0, e->value);
        }
    }
    free(ucdf);
    free(icdf);
    free(uperm);
    free(iperm);
    return ok ? 0 : -1;
}

static void workload_free(workload *w)
{
    free(w->ev);
}

/* ---- helpers ---------------------------------------------------------------- */

static double cpu_self_sec(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of another process (all its threads), in seconds. */
static double cpu_of_pid(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the ")" closing the command name start at field 3. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Bytes a process caused to be written to storage (write_bytes of
 * /proc/<pid>/io: counted when a page cache page is first dirtied), or -1. */
static double disk_bytes_of_pid(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    double v = -1;
    unsigned long long x;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %llu", &x) == 1) v = (double)x;
    fclose(f);
    return v;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP) rmdir(p); else unlink(p);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
    if (n == 0) return 0;
    size_t i = (size_t)(p * (double)n + 0.999999);
    if (i == 0) i = 1;
    if (i > n) i = n;
    return (double)v[i - 1] / 1e3;
}

static int find_in_path(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        if (len > 0) {
            snprintf(out, cap, "%.*s/%s", (int)len, path, name);
            if (access(out, X_OK) == 0) return 0;
        }
        path += len + (path[len] == ':');
    }
    return -1;
}

/* ---- one configuration ------------------------------------------------------ */

typedef struct config {
    int always;          /* fsync always (else everysec) */
    size_t batch;
    unsigned producers;
    int pinned;          /* whole process on one CPU (rankd only) */
} config;

typedef struct result {
    int ran;
    size_t events;
    double seconds, cpu, client_cpu;
    double disk_bytes;   /* written to storage by the system under test */
    int capped;
    double p50, p95, p99;
} result;

/* State shared by the producers of one configuration. Producers claim
 * chunks of `batch` events from next_chunk; chunk c is events
 * [c*batch, min((c+1)*batch, limit)) and its latency goes to lat[c]. The
 * deadline is checked before claiming, so executed chunks are a prefix
 * (unless a producer failed, and then the run is reported as failed). */
typedef struct run {
    const workload *w;
    size_t batch, limit;
    uint64_t deadline_ns;
    atomic_size_t next_chunk;
    atomic_size_t done_events;
    atomic_size_t done_chunks;
    atomic_int failed;
    atomic_int capped;
    uint64_t *lat;
    pthread_barrier_t start;
    rk_store *store;       /* rankd */
    int port;              /* redis */
} run;

/* Claims the next chunk; 0 when there is none or time is up. Every
 * producer gets at least one chunk (first set), so even a configuration
 * whose first fsync outlasts the time cap reports a latency. */
static int claim(run *r, int first, size_t *c, size_t *lo, size_t *hi)
{
    if (atomic_load(&r->failed)) return 0;
    if (!first && rk_clock_mono_ns() >= r->deadline_ns) {
        atomic_store(&r->capped, 1);
        return 0;
    }
    *c = atomic_fetch_add(&r->next_chunk, 1);
    *lo = *c * r->batch;
    if (*lo >= r->limit) return 0;
    *hi = *lo + r->batch < r->limit ? *lo + r->batch : r->limit;
    return 1;
}

static void done_chunk(run *r, size_t c, size_t events, uint64_t ns)
{
    r->lat[c] = ns;
    atomic_fetch_add(&r->done_events, events);
    atomic_fetch_add(&r->done_chunks, 1);
}

static void *rankd_producer(void *arg)
{
    run *r = arg;
    rk_batch *b = NULL;
    rk_err err = {0};
    if (rk_batch_create(&b, r->store, 0)) {
        fprintf(stderr, "ingest: rankd: cannot create a batch\n");
        atomic_store(&r->failed, 1);
    }
    pthread_barrier_wait(&r->start);
    size_t c, lo, hi;
    for (int first = 1; b && claim(r, first, &c, &lo, &hi); first = 0) {
        rk_batch_clear(b);
        for (size_t i = lo; i < hi; i++) {
            const ev *e = &r->w->ev[i];
            rk_event_in in = {
                .type = e->click ? "click" : "impression",
                .user = e->user,
                .item = e->item,
                .ts_ms = e->ts_ms,
                .value = e->value,
                .has_value = e->has_value,
                .position = -1,
            };
            if (rk_batch_event(b, &in, &err)) {
                fprintf(stderr, "ingest: rankd: batch: %s\n", rk_err_msg(&err));
                atomic_store(&r->failed, 1);
                goto out;
            }
        }
        uint64_t t0 = rk_clock_mono_ns();
        int rc = rk_store_write(r->store, b, NULL, &err);
        uint64_t t1 = rk_clock_mono_ns();
        if (rc) {
            fprintf(stderr, "ingest: rankd: write: %s\n", rk_err_msg(&err));
            atomic_store(&r->failed, 1);
            break;
        }
        done_chunk(r, c, hi - lo, t1 - t0);
    }
out:
    rk_batch_destroy(b);
    return NULL;
}

static void *redis_producer(void *arg)
{
    run *r = arg;
    struct timeval tv = {5, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!ctx || ctx->err) {
        fprintf(stderr, "ingest: redis: connect: %s\n",
                ctx ? ctx->errstr : "out of memory");
        atomic_store(&r->failed, 1);
        if (ctx) redisFree(ctx);
        ctx = NULL;
    }
    pthread_barrier_wait(&r->start);
    size_t c, lo, hi;
    for (int first = 1; ctx && claim(r, first, &c, &lo, &hi); first = 0) {
        uint64_t t0 = rk_clock_mono_ns();
        for (size_t i = lo; i < hi; i++) {
            const ev *e = &r->w->ev[i];
            const char *argv[13] = {
                "XADD", "events", "*", "type",
                e->click ? "click" : "impression", "user", e->user, "item",
                e->item, "ts", e->ts, "value", e->val};
            redisAppendCommandArgv(ctx, e->has_value ? 13 : 11, argv, NULL);
        }
        for (size_t i = lo; i < hi; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(ctx, (void **)&rep) != REDIS_OK || !rep ||
                rep->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "ingest: redis: XADD: %s\n",
                        rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                              : ctx->errstr);
                if (rep) freeReplyObject(rep);
                atomic_store(&r->failed, 1);
                goto out;
            }
            freeReplyObject(rep);
        }
        done_chunk(r, c, hi - lo, rk_clock_mono_ns() - t0);
    }
out:
    if (ctx) redisFree(ctx);
    return NULL;
}

/* Runs the producers of one configuration against r->store or r->port.
 * other_pid > 0: that process's CPU is what result.cpu reports (Redis). */
static int drive(run *r, const config *cf, void *(*fn)(void *), pid_t other_pid,
                 double cap_sec, result *out)
{
    size_t nchunks = (r->limit + r->batch - 1) / r->batch;
    pthread_t *th = calloc(cf->producers, sizeof *th);
    r->lat = calloc(nchunks ? nchunks : 1, sizeof *r->lat);
    if (!th || !r->lat) {
        free(th);
        free(r->lat);
        return -1;
    }
    atomic_init(&r->next_chunk, 0);
    atomic_init(&r->done_events, 0);
    atomic_init(&r->done_chunks, 0);
    atomic_init(&r->failed, 0);
    atomic_init(&r->capped, 0);
    pthread_barrier_init(&r->start, NULL, cf->producers + 1);
    r->deadline_ns = UINT64_MAX;
    unsigned started = 0;
    for (; started < cf->producers; started++)
        if (pthread_create(&th[started], NULL, fn, r) != 0) break;
    if (started < cf->producers) {
        /* The barrier cannot be released; nothing sensible to do. */
        fprintf(stderr, "ingest: cannot start %u threads\n", cf->producers);
        exit(1);
    }
    pid_t sut = other_pid > 0 ? other_pid : getpid();
    double other0 = other_pid > 0 ? cpu_of_pid(other_pid) : 0;
    double disk0 = disk_bytes_of_pid(sut);
    double cpu0 = cpu_self_sec();
    uint64_t t0 = rk_clock_mono_ns();
    r->deadline_ns = t0 + (uint64_t)(cap_sec * 1e9);
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < cf->producers; i++) pthread_join(th[i], NULL);
    uint64_t t1 = rk_clock_mono_ns();
    double cpu1 = cpu_self_sec();
    double other1 = other_pid > 0 ? cpu_of_pid(other_pid) : 0;
    double disk1 = disk_bytes_of_pid(sut);
    pthread_barrier_destroy(&r->start);
    free(th);

    size_t ns = atomic_load(&r->done_chunks);
    qsort(r->lat, ns, sizeof *r->lat, cmp_u64);
    memset(out, 0, sizeof *out);
    out->ran = 1;
    out->events = atomic_load(&r->done_events);
    out->seconds = (double)(t1 - t0) / 1e9;
    out->capped = atomic_load(&r->capped) && out->events < r->limit;
    out->p50 = pct_us(r->lat, ns, 0.50);
    out->p95 = pct_us(r->lat, ns, 0.95);
    out->p99 = pct_us(r->lat, ns, 0.99);
    out->disk_bytes = disk0 >= 0 && disk1 >= 0 ? disk1 - disk0 : -1;
    if (other_pid > 0) {
        out->cpu = other1 - other0;
        out->client_cpu = cpu1 - cpu0;
    } else {
        out->cpu = cpu1 - cpu0;
    }
    free(r->lat);
    r->lat = NULL;
    return atomic_load(&r->failed) ? -1 : 0;
}

/* ---- rankd ------------------------------------------------------------------ */

static int run_rankd(const workload *w, const config *cf, const char *dir,
                     size_t limit, double cap_sec, result *out)
{
    cpu_set_t saved;
    int pinned = 0;
    if (cf->pinned && sched_getaffinity(0, sizeof saved, &saved) == 0) {
        /* Threads inherit the creator's mask: the store's writer and every
         * producer end up on the first CPU we may use. */
        cpu_set_t one;
        CPU_ZERO(&one);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &saved)) {
                CPU_SET(c, &one);
                break;
            }
        pinned = sched_setaffinity(0, sizeof one, &one) == 0;
    }
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.fsync = cf->always ? RK_FSYNC_ALWAYS : RK_FSYNC_EVERYSEC;
    rk_store *s = NULL;
    rk_err err = {0};
    int rc = rk_store_open(&s, &o, NULL, &err);
    if (rc) {
        fprintf(stderr, "ingest: rankd: open %s: %s\n", dir, rk_err_msg(&err));
    } else {
        run r = {.w = w, .batch = cf->batch, .limit = limit, .store = s};
        rc = drive(&r, cf, rankd_producer, 0, cap_sec, out);
        rk_reader *rd;
        rk_store_stats st;
        if (rc == 0 && rk_store_reader(s, &rd, &err) == 0) {
            if (rk_reader_stats(rd, &st) != 0 || st.events != out->events) {
                fprintf(stderr, "ingest: rankd: store holds %llu events, "
                        "%zu were acknowledged\n",
                        (unsigned long long)st.events, out->events);
                rc = -1;
            }
            rk_reader_close(rd);
        } else if (rc == 0) {
            fprintf(stderr, "ingest: rankd: reader: %s\n", rk_err_msg(&err));
            rc = -1;
        }
        rk_store_close(s);
    }
    if (pinned) sched_setaffinity(0, sizeof saved, &saved);
    rm_rf(dir);
    return rc;
}

/* ---- redis ------------------------------------------------------------------ */

typedef struct redis_srv {
    pid_t pid;
    int port;
} redis_srv;

/* A port the kernel just gave out on loopback; free again once closed. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int redis_ping(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return ok;
}

static void redis_stop(redis_srv *r)
{
    if (r->pid <= 0) return;
    kill(r->pid, SIGTERM);
    int st;
    for (int i = 0; i < 1000; i++) { /* 10 s for a clean shutdown */
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        rk_sleep_ms(10);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, &st, 0);
    r->pid = 0;
}

/* Starts redis-server on a free loopback port with AOF in dir and waits
 * until it answers PING. Its output goes to dir/redis.log. */
static int redis_start(redis_srv *r, const char *exe, const char *dir,
                       int always)
{
    char log[PATH_MAX + 16], port[16];
    snprintf(log, sizeof log, "%s/redis.log", dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (r->port < 0) return -1;
        snprintf(port, sizeof port, "%d", r->port);
        pid_t parent = getpid();
        r->pid = fork();
        if (r->pid < 0) return -1;
        if (r->pid == 0) {
            /* Die with the benchmark, whatever way it ends. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
            /* No auto AOF rewrite: a forked rewrite mid-run would compete
             * for the second core and blur the steady state. */
            execl(exe, "redis-server", "--port", port, "--bind", "127.0.0.1",
                  "--appendonly", "yes", "--appendfsync",
                  always ? "always" : "everysec", "--save", "", "--dir", dir,
                  "--auto-aof-rewrite-percentage", "0", "--daemonize", "no",
                  "--logfile", "", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 500; i++) { /* 10 s */
            int st;
            if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
                r->pid = 0;
                break; /* died: port taken, bad flag... retry, then give up */
            }
            if (redis_ping(r->port)) return 0;
            rk_sleep_ms(20);
        }
        redis_stop(r);
    }
    fprintf(stderr, "ingest: redis-server did not start; see %s\n", log);
    return -1;
}

static long long redis_xlen(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    long long n = -1;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "XLEN events");
        if (rep && rep->type == REDIS_REPLY_INTEGER) n = rep->integer;
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return n;
}

static int run_redis(const workload *w, const config *cf, const char *exe,
                     const char *dir, size_t limit, double cap_sec,
                     result *out)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "ingest: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    redis_srv srv = {0};
    int rc = redis_start(&srv, exe, dir, cf->always);
    if (rc == 0) {
        run r = {.w = w, .batch = cf->batch, .limit = limit, .port = srv.port};
        rc = drive(&r, cf, redis_producer, srv.pid, cap_sec, out);
        long long n = rc == 0 ? redis_xlen(srv.port) : 0;
        if (rc == 0 && n != (long long)out->events) {
            fprintf(stderr, "ingest: redis: XLEN is %lld, %zu XADDs were "
                    "acknowledged\n", n, out->events);
            rc = -1;
        }
    }
    redis_stop(&srv);
    rm_rf(dir);
    return rc;
}

/* ---- main ------------------------------------------------------------------- */

static void print_json(const char *sys, const config *cf, const result *r,
                       int cores)
{
    printf("{\"bench\":\"ingest\",\"system\":\"%s\",\"fsync\":\"%s\","
           "\"batch\":%zu,\"producers\":%u,\"events\":%zu,\"seconds\":%.3f,"
           "\"events_per_sec\":%.0f,\"events_per_cpu_sec\":%.0f,"
           "\"p50_us\":%.1f,\"p95_us\":%.1f,\"p99_us\":%.1f,"
           "\"cpu_sec\":%.3f,",
           sys, cf->always ? "always" : "everysec", cf->batch, cf->producers,
           r->events, r->seconds, r->events / r->seconds,
           r->cpu > 0 ? r->events / r->cpu : 0.0, r->p50, r->p95, r->p99,
           r->cpu);
    if (strcmp(sys, "redis") == 0)
        printf("\"client_cpu_sec\":%.3f,", r->client_cpu);
    if (r->disk_bytes >= 0 && r->events > 0)
        printf("\"disk_bytes_per_event\":%.0f,", r->disk_bytes / r->events);
    printf("\"cores\":%d,\"capped\":%s}\n", cores, r->capped ? "true" : "false");
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ingest [--smoke] [--events N] [--seconds S] "
            "[--only rankd|redis]\n"
            "              [--fsync always|everysec] [--batch N] "
            "[--producers N]\n"
            "  --events N    events per configuration at most (default "
            "6000000)\n"
            "  --seconds S   time cap per configuration (default 4)\n"
            "  --only SYS    run one side: rankd or redis\n"
            "  --fsync P, --batch N, --producers N\n"
            "                run only the matching configurations (profiling)\n"
            "  --smoke       tiny run of every code path (make test)\n");
}

static const char *fmt_rate(char *buf, size_t n, double v)
{
    if (v <= 0) snprintf(buf, n, "-");
    else if (v >= 1e6) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%.1fk", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
    return buf;
}

static const char *fmt_ratio(char *buf, size_t n, double a, double b)
{
    if (a <= 0 || b <= 0) snprintf(buf, n, "-");
    else snprintf(buf, n, "%.2fx", a / b);
    return buf;
}

static const char *fmt_us(char *buf, size_t n, const result *r, double us)
{
    if (r->ran) snprintf(buf, n, "%.1f", us);
    else snprintf(buf, n, "-");
    return buf;
}

/* Bytes written to storage per event, or "-". */
static const char *fmt_bytes(char *buf, size_t n, const result *r)
{
    if (r->ran && r->events > 0 && r->disk_bytes >= 0)
        snprintf(buf, n, "%.0f", r->disk_bytes / (double)r->events);
    else snprintf(buf, n, "-");
    return buf;
}

int main(int argc, char **argv)
{
    size_t events = 6000000;
    double cap = 4.0;
    int smoke = 0, want_rankd = 1, want_redis = 1;
    /* Filters for profiling one configuration: -1 = all. */
    long only_fsync = -1, only_batch = -1, only_prod = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
            events = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            cap = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            i++;
            want_rankd = strcmp(argv[i], "rankd") == 0;
            want_redis = strcmp(argv[i], "redis") == 0;
            if (!want_rankd && !want_redis) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--fsync") == 0 && i + 1 < argc) {
            i++;
            only_fsync = strcmp(argv[i], "always") == 0     ? 1
                         : strcmp(argv[i], "everysec") == 0 ? 0
                                                            : -2;
            if (only_fsync == -2) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            only_batch = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--producers") == 0 && i + 1 < argc) {
            only_prod = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (smoke) {
        events = 3000;
        cap = 0.1;
    }
    if (events == 0 || !(cap > 0)) {
        usage(stderr);
        return 2;
    }

    char exe[PATH_MAX];
    if (want_redis && find_in_path("redis-server", exe, sizeof exe) != 0) {
        fprintf(stderr, "ingest: redis-server not found in PATH: skipping the "
                "Redis side (scripts/setup.sh installs it)\n");
        want_redis = 0;
    }

    const char *tmp = getenv("TMPDIR");
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/rankd-ingest-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "ingest: mkdtemp %s: %s\n", root, strerror(errno));
        return 1;
    }

    workload w;
    uint64_t g0 = rk_clock_mono_ns();
    if (workload_make(&w, events) != 0) {
        fprintf(stderr, "ingest: out of memory generating %zu events\n", events);
        rm_rf(root);
        return 1;
    }
    fprintf(stderr, "ingest: generated %zu events in %.1f s (not timed)\n",
            events, (double)(rk_clock_mono_ns() - g0) / 1e9);
    cpu_set_t cs;
    int ncpu = sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : 1;

    static const struct {
        size_t batch;
        unsigned producers;
    } shapes[] = {{1, 1}, {1, 64}, {100, 1}, {100, 8}, {10000, 1}, {10000, 4}};
    enum { NSHAPES = sizeof shapes / sizeof shapes[0] };
    config cfgs[2 * NSHAPES + 1];
    size_t ncfg = 0;
    for (int always = 1; always >= 0; always--)
        for (size_t i = 0; i < NSHAPES; i++)
            cfgs[ncfg++] = (config){always, shapes[i].batch,
                                    shapes[i].producers, 0};
    cfgs[ncfg++] = (config){0, 10000, 1, 1}; /* one core, rankd only */
    result rk[2 * NSHAPES + 1], rd[2 * NSHAPES + 1];
    memset(rk, 0, sizeof rk);
    memset(rd, 0, sizeof rd);

    int failed = 0;
    for (size_t i = 0; i < ncfg && !failed; i++) {
        const config *cf = &cfgs[i];
        if ((only_fsync >= 0 && only_fsync != cf->always) ||
            (only_batch >= 0 && (size_t)only_batch != cf->batch) ||
            (only_prod >= 0 && (unsigned long)only_prod != cf->producers))
            continue;
        char dir[PATH_MAX + 64];
        snprintf(dir, sizeof dir, "%s/%s-%s-b%zu-p%u%s", root, "rankd",
                 cf->always ? "always" : "everysec", cf->batch, cf->producers,
                 cf->pinned ? "-1cpu" : "");
        if (want_rankd) {
            if (run_rankd(&w, cf, dir, events, cap, &rk[i]) != 0) failed = 1;
            else print_json("rankd", cf, &rk[i], cf->pinned ? 1 : ncpu);
        }
        if (want_redis && !cf->pinned && !failed) {
            snprintf(dir, sizeof dir, "%s/redis-%s-b%zu-p%u", root,
                     cf->always ? "always" : "everysec", cf->batch,
                     cf->producers);
            if (run_redis(&w, cf, exe, dir, events, cap, &rd[i]) != 0)
                failed = 1;
            else print_json("redis", cf, &rd[i], ncpu);
        }
    }
    rm_rf(root);
    workload_free(&w);

    /* The human table: throughput and latency side by side. */
    fprintf(stderr,
            "\ningest: %zu events max or %.1f s per configuration, %d CPUs; "
            "latency = one batch acknowledged; ratio = rankd/redis;\n"
            "B/ev = bytes written to storage per event\n"
            "%-8s %6s %4s | %8s %8s %6s | %8s %8s %6s | %8s %8s | %8s %8s "
            "| %6s %6s\n",
            events, cap, ncpu, "fsync", "batch", "prod", "rankd/s", "redis/s",
            "ratio", "rk/cpu-s", "rd/cpu-s", "ratio", "rk p50us", "rd p50us",
            "rk p99us", "rd p99us", "rk B/ev", "rd B/ev");
    for (size_t i = 0; i < ncfg; i++) {
        const config *cf = &cfgs[i];
        const result *a = &rk[i], *b = &rd[i];
        if (!a->ran && !b->ran) continue;
        char s[12][32];
        double ars = a->ran ? a->events / a->seconds : 0;
        double brs = b->ran ? b->events / b->seconds : 0;
        double arc = a->ran && a->cpu > 0 ? a->events / a->cpu : 0;
        double brc = b->ran && b->cpu > 0 ? b->events / b->cpu : 0;
        fprintf(stderr,
                "%-8s %6zu %4u | %8s %8s %6s | %8s %8s %6s | %8s %8s | "
                "%8s %8s | %6s %6s%s%s\n",
                cf->always ? "always" : "everysec", cf->batch, cf->producers,
                fmt_rate(s[0], 32, ars), fmt_rate(s[1], 32, brs),
                fmt_ratio(s[2], 32, ars, brs), fmt_rate(s[3], 32, arc),
                fmt_rate(s[4], 32, brc), fmt_ratio(s[5], 32, arc, brc),
                fmt_us(s[6], 32, a, a->p50), fmt_us(s[7], 32, b, b->p50),
                fmt_us(s[8], 32, a, a->p99), fmt_us(s[9], 32, b, b->p99),
                fmt_bytes(s[10], 32, a), fmt_bytes(s[11], 32, b),
                cf->pinned ? "  rankd on 1 CPU" : "",
                a->capped && b->capped ? "  capped: both"
                : a->capped            ? "  capped: rankd"
                : b->capped            ? "  capped: redis"
                                       : "");
    }
    /* The target: >= 1M events per second on one core, everysec. */
    const result *one = &rk[ncfg - 1];
    if (one->ran)
        fprintf(stderr, "one core, everysec, batch 10000: %.0f events/s wall "
                "pinned to 1 CPU, %.0f events per CPU-second (target "
                "1000000: %s)\n",
                one->events / one->seconds,
                one->cpu > 0 ? one->events / one->cpu : 0.0,
                smoke ? "not judged on a smoke run"
                : one->events / one->seconds >= 1e6 ? "met" : "MISSED");
    if (failed) fprintf(stderr, "ingest: FAILED\n");
    return failed ? 1 : 0;
}
