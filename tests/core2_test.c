/*
 * core2_test.c — hash map (against a reference model), logging, clocks and
 * time parsing, and the thread pool. (Errors, allocator, arena, vectors,
 * buffers and number parsing are in core_test.c.)
 */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

static size_t mem_in_use(void)
{
    rk_mem_stats st;
    rk_mem_get_stats(&st);
    return st.in_use;
}

/* splitmix64: a fixed-seed generator so every run sees the same data. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- map --------------------------------------------------------------- */

/* Key of id i: its 4 bytes (so the id can be recovered while iterating)
 * followed by 0..40 bytes that depend on i, NUL bytes included; so some
 * keys are stored inline in the map and some are allocated. */
static size_t make_key(uint32_t i, unsigned char key[48])
{
    memcpy(key, &i, 4);
    uint64_t s = i;
    size_t extra = (size_t)(rng_next(&s) % 41);
    for (size_t k = 0; k < extra; k++) key[4 + k] = (unsigned char)rng_next(&s);
    return 4 + extra;
}

TEST(map_basic)
{
    rk_map *m;
    CHECK_OK(rk_map_create(&m, 0));
    uint64_t v = 99;
    CHECK_EQ_INT(rk_map_get(m, "a", 1, &v), RK_ENOTFOUND);
    CHECK_EQ_INT(v, 99);
    CHECK_OK(rk_map_put(m, "a", 1, 1));
    CHECK_OK(rk_map_put(m, "ab", 2, 2));
    CHECK_OK(rk_map_put(m, "", 0, 3)); /* the empty key is a key */
    CHECK_OK(rk_map_put(m, "a\0b", 3, 4));
    CHECK_EQ_INT(rk_map_size(m), 4);
    CHECK_OK(rk_map_get(m, "a", 1, &v));
    CHECK_EQ_INT(v, 1);
    CHECK_OK(rk_map_get(m, "", 0, &v));
    CHECK_EQ_INT(v, 3);
    CHECK_OK(rk_map_get(m, "a\0b", 3, &v));
    CHECK_EQ_INT(v, 4);
    CHECK_OK(rk_map_get(m, "ab", 2, NULL));
    CHECK_OK(rk_map_put(m, "a", 1, 10)); /* overwrite */
    CHECK_EQ_INT(rk_map_size(m), 4);
    CHECK_OK(rk_map_get(m, "a", 1, &v));
    CHECK_EQ_INT(v, 10);
    CHECK_OK(rk_map_del(m, "a", 1));
    CHECK_EQ_INT(rk_map_del(m, "a", 1), RK_ENOTFOUND);
    CHECK_EQ_INT(rk_map_get(m, "a", 1, &v), RK_ENOTFOUND);
    CHECK_EQ_INT(rk_map_size(m), 3);
    /* Keys are copied: changing the caller's bytes changes nothing. */
    char k[4] = "key";
    CHECK_OK(rk_map_put(m, k, 3, 5));
    k[0] = 'X';
    CHECK_OK(rk_map_get(m, "key", 3, &v));
    CHECK_EQ_INT(v, 5);
    rk_map_clear(m);
    CHECK_EQ_INT(rk_map_size(m), 0);
    CHECK_EQ_INT(rk_map_get(m, "key", 3, &v), RK_ENOTFOUND);
    size_t it = 0;
    CHECK_EQ_INT(rk_map_next(m, &it, NULL, NULL, NULL), 0);
    CHECK_OK(rk_map_put(m, "key", 3, 6));
    CHECK_EQ_INT(rk_map_size(m), 1);
    rk_map_destroy(m);
    rk_map_destroy(NULL);
}

TEST(map_random_vs_reference)
{
    enum { NKEYS = 100000, NOPS = 400000 };
    uint8_t *present = calloc(NKEYS, 1);
    uint64_t *vals = calloc(NKEYS, sizeof *vals);
    CHECK(present && vals);
    rk_map *m;
    CHECK_OK(rk_map_create(&m, 0));
    uint64_t seed = 42;
    size_t live = 0;
    unsigned char key[48];
    int bad = 0;
    for (int op = 0; op < NOPS && !bad; op++) {
        uint64_t r = rng_next(&seed);
        /* Ids are drawn from a range that grows with time, so the map
         * grows through several resizes while deletions churn it. */
        uint32_t id = (uint32_t)(r % (1 + (uint64_t)NKEYS * (op + 1) / NOPS));
        size_t klen = make_key(id, key);
        unsigned kind = (unsigned)(r >> 40) % 100;
        uint64_t got;
        if (kind < 55) {
            uint64_t v = r >> 8;
            if (rk_map_put(m, key, klen, v)) bad = 1;
            if (!present[id]) live++;
            present[id] = 1;
            vals[id] = v;
        } else if (kind < 80) {
            int rc = rk_map_del(m, key, klen);
            if (rc != (present[id] ? 0 : RK_ENOTFOUND)) bad = 2;
            if (present[id]) live--;
            present[id] = 0;
        } else {
            int rc = rk_map_get(m, key, klen, &got);
            if (rc != (present[id] ? 0 : RK_ENOTFOUND)) bad = 3;
            if (!rc && got != vals[id]) bad = 4;
        }
        if (rk_map_size(m) != live) bad = 5;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(live > 10000);
    /* Full comparison by lookup... */
    for (uint32_t id = 0; id < NKEYS; id++) {
        size_t klen = make_key(id, key);
        uint64_t got;
        int rc = rk_map_get(m, key, klen, &got);
        CHECK_EQ_INT(rc, present[id] ? 0 : RK_ENOTFOUND);
        if (!rc) CHECK(got == vals[id]);
    }
    /* ...and by iteration: each live key exactly once, nothing else. */
    uint8_t *seen = calloc(NKEYS, 1);
    CHECK(seen);
    size_t it = 0, count = 0, klen;
    const void *k;
    uint64_t v;
    while (rk_map_next(m, &it, &k, &klen, &v)) {
        uint32_t id;
        memcpy(&id, k, 4);
        CHECK(id < NKEYS && present[id] && !seen[id]);
        CHECK(klen == make_key(id, key) && memcmp(k, key, klen) == 0);
        CHECK(v == vals[id]);
        seen[id] = 1;
        count++;
    }
    CHECK_EQ_INT(count, live);
    CHECK_EQ_INT(rk_map_next(m, &it, &k, &klen, &v), 0);
    /* Delete everything; the map must end empty and consistent. */
    for (uint32_t id = 0; id < NKEYS; id++) {
        if (!present[id]) continue;
        size_t kl = make_key(id, key);
        CHECK_OK(rk_map_del(m, key, kl));
    }
    CHECK_EQ_INT(rk_map_size(m), 0);
    it = 0;
    CHECK_EQ_INT(rk_map_next(m, &it, &k, &klen, &v), 0);
    free(seen);
    free(present);
    free(vals);
    rk_map_destroy(m);
}

TEST(map_limit_and_evict)
{
    enum { MAX = 1000, N = 5000 };
    rk_map *m;
    CHECK_OK(rk_map_create(&m, MAX));
    CHECK_EQ_INT(rk_map_evict_one(m), RK_ENOTFOUND);
    unsigned char key[48];
    size_t evictions = 0;
    for (uint32_t i = 0; i < N; i++) {
        size_t kl = make_key(i, key);
        int rc = rk_map_put(m, key, kl, i);
        if (rc == RK_ELIMIT) {
            CHECK_EQ_INT(rk_map_size(m), MAX);
            CHECK_OK(rk_map_evict_one(m));
            evictions++;
            rc = rk_map_put(m, key, kl, i);
        }
        CHECK_OK(rc);
        CHECK(rk_map_size(m) <= MAX);
    }
    CHECK_EQ_INT(evictions, N - MAX);
    /* Overwriting an existing key in a full map is not an insertion. */
    size_t it = 0, kl;
    const void *k;
    uint64_t v;
    CHECK(rk_map_next(m, &it, &k, &kl, &v));
    memcpy(key, k, kl);
    CHECK_OK(rk_map_put(m, key, kl, 12345));
    /* Every surviving entry has the value it was stored with. */
    it = 0;
    size_t count = 0;
    while (rk_map_next(m, &it, &k, &kl, &v)) {
        uint32_t id;
        memcpy(&id, k, 4);
        CHECK(v == id || v == 12345);
        count++;
    }
    CHECK_EQ_INT(count, MAX);
    /* The clock hand eventually takes everything. */
    for (size_t i = 0; i < MAX; i++) CHECK_OK(rk_map_evict_one(m));
    CHECK_EQ_INT(rk_map_size(m), 0);
    CHECK_EQ_INT(rk_map_evict_one(m), RK_ENOTFOUND);
    rk_map_destroy(m);
}

TEST(map_evict_is_spread)
{
    /* Successive evictions walk the table instead of hammering one spot:
     * after evicting half, the survivors are not simply the newest keys. */
    rk_map *m;
    CHECK_OK(rk_map_create(&m, 0));
    unsigned char key[48];
    for (uint32_t i = 0; i < 2000; i++) {
        size_t kl = make_key(i, key);
        CHECK_OK(rk_map_put(m, key, kl, i));
    }
    for (int i = 0; i < 1000; i++) CHECK_OK(rk_map_evict_one(m));
    size_t old_alive = 0, it = 0, kl;
    const void *k;
    uint64_t v;
    while (rk_map_next(m, &it, &k, &kl, &v)) old_alive += v < 1000;
    CHECK(old_alive > 100 && old_alive < 900);
    rk_map_destroy(m);
}

static int map_op(void)
{
    rk_map *m;
    int rc = rk_map_create(&m, 0);
    if (rc) return rc;
    unsigned char key[48];
    /* 500 inserts cross five resizes; the sweep is quadratic in this. */
    for (uint32_t i = 0; i < 500; i++) {
        size_t kl = make_key(i, key);
        rc = rk_map_put(m, key, kl, i);
        if (rc == 0 && i % 3 == 0) rc = rk_map_del(m, key, kl);
        if (rc) {
            /* A failed insert leaves the map as it was. */
            int ok = rk_map_get(m, key, kl, NULL) == RK_ENOTFOUND;
            for (uint32_t j = 0; ok && j < i; j++) {
                uint64_t v;
                kl = make_key(j, key);
                int g = rk_map_get(m, key, kl, &v);
                ok = j % 3 == 0 ? g == RK_ENOTFOUND : (g == 0 && v == j);
            }
            ok = ok && rk_map_size(m) == i - (i + 2) / 3;
            rk_map_destroy(m);
            return ok ? rc : RK_EINTERNAL;
        }
    }
    rk_map_destroy(m);
    return 0;
}

/* Same sweep as core_test.c's: fail the nth allocation, n = 1, 2, ... */
static unsigned fault_sweep(int (*op)(void), int persist)
{
    for (uint64_t n = 1; n < 100000; n++) {
        size_t before = mem_in_use();
        rk_mem_fail_at(n, persist);
        int rc = op();
        uint64_t attempts = rk_mem_attempts();
        rk_mem_fail_at(0, 0);
        if (mem_in_use() != before) {
            fprintf(stderr, "  fault n=%llu: leak\n", (unsigned long long)n);
            return 0;
        }
        if (rc == 0) return attempts < n ? (unsigned)n : 0;
        if (rc != RK_ENOMEM) {
            fprintf(stderr, "  fault n=%llu: %s\n", (unsigned long long)n,
                    rk_errname(rc));
            return 0;
        }
    }
    return 0;
}

TEST(map_fault_sweep)
{
    CHECK(fault_sweep(map_op, 0) > 100);
    CHECK(fault_sweep(map_op, 1) > 100);
}

/* ---- logging ----------------------------------------------------------- */

/* Reads the whole of f (rewound) into a malloc'd string. */
static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    return s;
}

/* "2026-11-22T10:00:00.123Z " */
static int is_stamp(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return 0;
    }
    return 1;
}

TEST(log_format_and_levels)
{
    FILE *f = tmpfile();
    CHECK(f);
    rk_logger lg;
    rk_logger_init(&lg, RK_LOG_INFO, f);
    rk_log(&lg, RK_LOG_DEBUG, "store", "hidden %d", 1);
    rk_log(&lg, RK_LOG_INFO, "store", "opened %s", "./data");
    rk_log(&lg, RK_LOG_WARN, "io", "two\nlines\r");
    rk_log(&lg, RK_LOG_ERROR, NULL, "no module");
    rk_log(&lg, RK_LOG_OFF, "x", "never");
    rk_log(NULL, RK_LOG_ERROR, "x", "discarded");
    char *s = slurp(f);
    fclose(f);
    CHECK(s);
    const char *l1 = s, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    int ok = is_stamp(l1) && is_stamp(l2) && is_stamp(l3) &&
             strncmp(l1 + 25, "INFO store: opened ./data\n", 26) == 0 &&
             strncmp(l2 + 25, "WARN io: two lines \n", 20) == 0 &&
             strcmp(l3 + 25, "ERROR -: no module\n") == 0;
    if (!ok) fprintf(stderr, "  log was:\n%s", s);
    free(s);
    CHECK(ok);

    /* Long messages are cut but still one terminated line. */
    f = tmpfile();
    CHECK(f);
    rk_logger_init(&lg, RK_LOG_DEBUG, f);
    char *big = malloc(10000);
    CHECK(big);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    rk_log(&lg, RK_LOG_DEBUG, "m", "%s", big);
    free(big);
    s = slurp(f);
    fclose(f);
    CHECK(s);
    size_t n = strlen(s);
    ok = n > 1000 && n <= 2048 && strcmp(s + n - 4, "...\n") == 0 &&
         strchr(s, '\n') == s + n - 1 && strncmp(s + 25, "DEBUG m: xxx", 12) == 0;
    free(s);
    CHECK(ok);

    /* OFF logs nothing. */
    f = tmpfile();
    CHECK(f);
    rk_logger_init(&lg, RK_LOG_OFF, f);
    rk_log(&lg, RK_LOG_ERROR, "m", "nothing");
    CHECK_EQ_INT(ftell(f), 0);
    fclose(f);
}

typedef struct log_thread_arg {
    rk_logger *lg;
    int id;
} log_thread_arg;

static void *log_thread(void *vp)
{
    log_thread_arg *a = vp;
    for (int i = 0; i < 500; i++)
        rk_log(a->lg, RK_LOG_INFO, "t", "thread %d line %d %s", a->id, i,
               "padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

TEST(log_lines_whole_under_threads)
{
    FILE *f = tmpfile();
    CHECK(f);
    setvbuf(f, NULL, _IOFBF, 64); /* tiny buffer: writes would split */
    rk_logger lg;
    rk_logger_init(&lg, RK_LOG_INFO, f);
    pthread_t th[4];
    log_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].lg = &lg;
        args[i].id = i;
        CHECK(pthread_create(&th[i], NULL, log_thread, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    char *s = slurp(f);
    fclose(f);
    CHECK(s);
    int lines = 0, bad = 0, next[4] = {0};
    for (char *p = s; *p; lines++) {
        char *e = strchr(p, '\n');
        if (!e) { bad = 1; break; }
        *e = '\0';
        int t, i;
        if (!is_stamp(p) || sscanf(p + 25, "INFO t: thread %d line %d", &t, &i) != 2 ||
            t < 0 || t > 3 || i != next[t]++ || !strstr(p, "padding-padding\0"))
            bad = 1;
        p = e + 1;
    }
    free(s);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(lines, 2000);
}

TEST(log_level_parse_table)
{
    static const struct {
        const char *s;
        int rc;
        rk_log_level lv;
    } rows[] = {
        {"debug", 0, RK_LOG_DEBUG}, {"info", 0, RK_LOG_INFO},
        {"warn", 0, RK_LOG_WARN},   {"warning", 0, RK_LOG_WARN},
        {"error", 0, RK_LOG_ERROR}, {"off", 0, RK_LOG_OFF},
        {"INFO", 0, RK_LOG_INFO},   {"", RK_EINVAL, RK_LOG_INFO},
        {"inf", RK_EINVAL, 0},      {"info ", RK_EINVAL, 0},
        {"trace", RK_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rk_log_level lv = RK_LOG_ERROR;
        CHECK_EQ_INT(rk_log_level_parse(rows[i].s, &lv), rows[i].rc);
        if (rows[i].rc == 0) CHECK_EQ_INT(lv, rows[i].lv);
    }
    rk_log_level lv;
    CHECK_EQ_INT(rk_log_level_parse(NULL, &lv), RK_EINVAL);
}

/* ---- clocks and time --------------------------------------------------- */

TEST(clock_basics)
{
    uint64_t a = rk_clock_mono_ns();
    rk_sleep_ms(5);
    uint64_t b = rk_clock_mono_ns();
    CHECK(b >= a + 5000000u); /* a lower bound only: never a timing test */
    rk_sleep_ms(0);
    CHECK(rk_clock_wall_ms() > 1577836800000LL); /* after 2020-01-01 */
}

TEST(time_format_table)
{
    static const struct {
        int64_t ms;
        const char *s;
    } rows[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {1573813325123LL, "2019-11-15T10:22:05.123Z"},
        {951782400000LL, "2000-02-29T00:00:00.000Z"},
        {4107542400000LL, "2100-03-01T00:00:00.000Z"},
        {-11676096000000LL, "1600-01-01T00:00:00.000Z"},
        {-62135596800000LL, "0001-01-01T00:00:00.000Z"},
        {253402300799999LL, "9999-12-31T23:59:59.999Z"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rk_format_time_ms(rows[i].ms, out);
        CHECK_STR(out, rows[i].s);
    }
    /* Extremes do not overflow the buffer. */
    rk_format_time_ms(INT64_MAX, out);
    CHECK(strlen(out) < 32);
    rk_format_time_ms(INT64_MIN, out);
    CHECK(strlen(out) < 32);
}

TEST(time_format_matches_gmtime_and_roundtrips)
{
    uint64_t seed = 7;
    const int64_t lo = -62167219200000LL; /* 0000-01-01 */
    const int64_t hi = 253402300800000LL; /* 10000-01-01 */
    for (int i = 0; i < 200000; i++) {
        int64_t ms = lo + (int64_t)(rng_next(&seed) % (uint64_t)(hi - lo));
        char out[32], ref[64];
        rk_format_time_ms(ms, out);
        time_t t = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
        struct tm tm;
        CHECK(gmtime_r(&t, &tm));
        snprintf(ref, sizeof ref, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(((ms % 1000) + 1000) % 1000));
        if (strcmp(out, ref) != 0) fprintf(stderr, "  ms=%lld\n", (long long)ms);
        CHECK_STR(out, ref);
        int64_t back;
        CHECK_OK(rk_parse_time_ms(out, strlen(out), &back));
        CHECK(back == ms);
    }
}

TEST(time_parse_table)
{
    static const struct {
        const char *s;
        int rc;
        int64_t ms;
    } rows[] = {
        {"1970-01-01T00:00:00Z", 0, 0},
        {"2019-11-15T10:22:05Z", 0, 1573813325000LL},
        {"2019-11-15t10:22:05z", 0, 1573813325000LL},
        {"2019-11-15 10:22:05", 0, 1573813325000LL},
        {"2019-11-15T10:22:05", 0, 1573813325000LL},
        {"2019-11-15", 0, 1573776000000LL},
        {"2019-11-15T10:22Z", 0, 1573813320000LL},
        {"2019-11-15T10:22:05.123Z", 0, 1573813325123LL},
        {"2019-11-15T10:22:05.1Z", 0, 1573813325100LL},
        {"2019-11-15T10:22:05.12", 0, 1573813325120LL},
        {"2019-11-15T10:22:05.123456789Z", 0, 1573813325123LL},
        {"2019-11-15T12:22:05+02:00", 0, 1573813325000LL},
        {"2019-11-15T05:22:05-0500", 0, 1573813325000LL},
        {"2019-11-15T15:52:05+05:30", 0, 1573813325000LL},
        {"2019-11-15T10:22:05+00", 0, 1573813325000LL},
        {"2019-11-16T00:22:05+14:00", 0, 1573813325000LL},
        {"1969-12-31T23:59:59.999Z", 0, -1},
        {"2024-02-29", 0, 1709164800000LL},
        {"2000-02-29", 0, 951782400000LL},
        {"2000-03-01", 0, 951868800000LL},
        {"9999-12-31T23:59:59Z", 0, 253402300799000LL},
        /* MIND behaviors.tsv */
        {"11/15/2019 10:22:05 AM", 0, 1573813325000LL},
        {"11/15/2019 10:22:05 PM", 0, 1573856525000LL},
        {"11/15/2019 12:00:00 AM", 0, 1573776000000LL},
        {"11/15/2019 12:30:00 PM", 0, 1573821000000LL},
        {"1/5/2019 1:02:03 pm", 0, 1546693323000LL},
        {"2/29/2020 11:59:59 PM", 0, 1583020799000LL},
        /* integers: seconds below 1e11, milliseconds from there on */
        {"0", 0, 0},
        {"1573813325", 0, 1573813325000LL},
        {"1573813325000", 0, 1573813325000LL},
        {"99999999999", 0, 99999999999000LL},
        {"100000000000", 0, 100000000000LL},
        {"-1", 0, -1000},
        /* rejected */
        {"", RK_EPARSE, 0},
        {" 2019-11-15", RK_EPARSE, 0},
        {"2019-11-15 ", RK_EPARSE, 0},
        {"2019-11-15T", RK_EPARSE, 0},
        {"2019-11-15T10", RK_EPARSE, 0},
        {"2019-11-15T10:22:05ZZ", RK_EPARSE, 0},
        {"2019-11-15T10:22:05Zjunk", RK_EPARSE, 0},
        {"2019-11-15X10:22:05", RK_EPARSE, 0},
        {"2019-13-01", RK_EPARSE, 0},
        {"2019-00-10", RK_EPARSE, 0},
        {"2019-11-00", RK_EPARSE, 0},
        {"2019-11-31", RK_EPARSE, 0},
        {"2023-02-29", RK_EPARSE, 0},
        {"1900-02-29", RK_EPARSE, 0},
        {"2100-02-29", RK_EPARSE, 0},
        {"2019-1-15", RK_EPARSE, 0},
        {"19-11-15", RK_EPARSE, 0},
        {"2019-11-15T24:00:00Z", RK_EPARSE, 0},
        {"2019-11-15T10:60:00Z", RK_EPARSE, 0},
        {"2019-11-15T10:22:60Z", RK_EPARSE, 0},
        {"2019-11-15T1:22:05Z", RK_EPARSE, 0},
        {"2019-11-15T10:22:05.Z", RK_EPARSE, 0},
        {"2019-11-15T10:22:05.1234567890Z", RK_EPARSE, 0},
        {"2019-11-15T10:22:05+25:00", RK_EPARSE, 0},
        {"2019-11-15T10:22:05+02:60", RK_EPARSE, 0},
        {"2019-11-15T10:22:05+2", RK_EPARSE, 0},
        {"2019-11-15T10:22:05+02:", RK_EPARSE, 0},
        {"2019-11-15T10:22:05+020", RK_EPARSE, 0},
        {"13/15/2019 10:22:05 AM", RK_EPARSE, 0},
        {"11/31/2019 10:22:05 AM", RK_EPARSE, 0},
        {"2/29/2019 10:22:05 AM", RK_EPARSE, 0},
        {"11/15/2019 13:22:05 PM", RK_EPARSE, 0},
        {"11/15/2019 0:22:05 AM", RK_EPARSE, 0},
        {"11/15/2019 10:22:05", RK_EPARSE, 0},
        {"11/15/2019 10:22:05 XM", RK_EPARSE, 0},
        {"11/15/2019 10:22:05 AMX", RK_EPARSE, 0},
        {"11/15/2019  10:22:05 AM", RK_EPARSE, 0},
        {"11/15/19 10:22:05 AM", RK_EPARSE, 0},
        {"2019/11/15", RK_EPARSE, 0},
        {"abc", RK_EPARSE, 0},
        {"12a", RK_EPARSE, 0},
        {"1e9", RK_EPARSE, 0},
        {"1.5", RK_EPARSE, 0},
        {"99999999999999999999", RK_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t ms = 777;
        int rc = rk_parse_time_ms(rows[i].s, strlen(rows[i].s), &ms);
        if (rc != rows[i].rc || (rc == 0 && ms != rows[i].ms))
            fprintf(stderr, "  row '%s': rc %d ms %lld\n", rows[i].s, rc,
                    (long long)ms);
        CHECK_EQ_INT(rc, rows[i].rc);
        if (rc == 0) CHECK(ms == rows[i].ms);
    }
    /* The span is honoured: bytes after n are not read. */
    int64_t ms;
    CHECK_OK(rk_parse_time_ms("2019-11-15T10:22:05Zgarbage", 20, &ms));
    CHECK(ms == 1573813325000LL);
}

TEST(parse_duration_table)
{
    static const struct {
        const char *s;
        int rc, unit_bad;
        int64_t ms;
    } rows[] = {
        {"500ms", 0, 0, 500},
        {"10s", 0, 0, 10000},
        {"10", 0, 0, 10000},
        {"1.5h", 0, 0, 5400000},
        {"30m", 0, 0, 1800000},
        {"7d", 0, 0, 604800000},
        {"2w", 0, 0, 1209600000},
        {"0", 0, 0, 0},
        {"", RK_EPARSE, 0, 0},
        {"h", RK_EPARSE, 0, 0},
        {"-1h", RK_EPARSE, 0, 0},
        {"1x", RK_EPARSE, 1, 0},
        {"1 h", RK_EPARSE, 1, 0},
        {"1hh", RK_EPARSE, 1, 0},
        {"1..2h", RK_EPARSE, 0, 0},
        {"5300w", RK_ELIMIT, 0, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t ms = 777;
        int bad = -1;
        int rc = rk_parse_duration_ms(rows[i].s, &ms, &bad);
        if (rc != rows[i].rc || bad != rows[i].unit_bad || (rc == 0 && ms != rows[i].ms))
            fprintf(stderr, "  row '%s': rc %d unit_bad %d ms %lld\n", rows[i].s, rc, bad,
                    (long long)ms);
        CHECK_EQ_INT(rc, rows[i].rc);
        CHECK_EQ_INT(bad, rows[i].unit_bad);
        if (rc == 0) CHECK(ms == rows[i].ms);
    }
    int64_t ms;
    CHECK_OK(rk_parse_duration_ms("3h", &ms, NULL));
    CHECK(ms == 10800000);
}

/* ---- thread pool ------------------------------------------------------- */

typedef struct sum_ctx {
    _Atomic uint64_t sum;
    _Atomic uint64_t calls;
    uint8_t *hits;
    size_t grain, n;
    _Atomic int small;
} sum_ctx;

static void sum_range(void *vp, size_t b, size_t e)
{
    sum_ctx *c = vp;
    uint64_t s = 0;
    for (size_t i = b; i < e; i++) {
        s += i;
        c->hits[i]++; /* ranges are disjoint, so no race */
    }
    if (e - b < c->grain && e - b != c->n) atomic_store(&c->small, 1);
    atomic_fetch_add(&c->sum, s);
    atomic_fetch_add(&c->calls, 1);
}

TEST(pool_parallel_for_sums)
{
    static const unsigned threads[] = {1, 2, 4, 7};
    static const size_t ns[] = {0, 1, 7, 1000, 100003};
    static const size_t grains[] = {0, 1, 64, 5000, 1000000};
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        rk_pool *p;
        CHECK_OK(rk_pool_create(&p, threads[t], 4));
        CHECK_EQ_INT(rk_pool_threads(p), threads[t]);
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                sum_ctx c = {.grain = grains[g], .n = ns[a]};
                c.hits = calloc(ns[a] + 1, 1);
                CHECK(c.hits);
                CHECK_OK(rk_pool_parallel_for(p, ns[a], grains[g], sum_range, &c));
                uint64_t n = ns[a];
                int ok = atomic_load(&c.sum) == (n ? n * (n - 1) / 2 : 0) &&
                         !atomic_load(&c.small);
                for (size_t i = 0; ok && i < n; i++) ok = c.hits[i] == 1;
                free(c.hits);
                CHECK(ok);
                if (n == 0) CHECK_EQ_INT(atomic_load(&c.calls), 0);
            }
        }
        rk_pool_destroy(p);
    }
}

typedef struct range_log {
    pthread_mutex_t mu;
    size_t n;
    size_t r[256][2];
} range_log;

static void log_range(void *vp, size_t b, size_t e)
{
    range_log *l = vp;
    pthread_mutex_lock(&l->mu);
    if (l->n < 256) {
        l->r[l->n][0] = b;
        l->r[l->n][1] = e;
        l->n++;
    }
    pthread_mutex_unlock(&l->mu);
}

static int cmp_range(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

TEST(pool_parallel_for_deterministic)
{
    rk_pool *p;
    CHECK_OK(rk_pool_create(&p, 3, 16));
    static range_log l1, l2;
    memset(&l1, 0, sizeof l1);
    memset(&l2, 0, sizeof l2);
    pthread_mutex_init(&l1.mu, NULL);
    pthread_mutex_init(&l2.mu, NULL);
    CHECK_OK(rk_pool_parallel_for(p, 100001, 100, log_range, &l1));
    for (int i = 0; i < 5; i++) rk_pool_parallel_for(p, 10, 1, log_range, &l2);
    l2.n = 0;
    CHECK_OK(rk_pool_parallel_for(p, 100001, 100, log_range, &l2));
    qsort(l1.r, l1.n, sizeof l1.r[0], cmp_range);
    qsort(l2.r, l2.n, sizeof l2.r[0], cmp_range);
    CHECK_EQ_INT(l1.n, l2.n);
    CHECK(l1.n > 1);
    CHECK(memcmp(l1.r, l2.r, l1.n * sizeof l1.r[0]) == 0);
    /* Contiguous cover of [0, n), sizes differing by at most one. */
    size_t lo = SIZE_MAX, hi = 0;
    for (size_t i = 0; i < l1.n; i++) {
        CHECK_EQ_INT(l1.r[i][0], i ? l1.r[i - 1][1] : 0);
        size_t len = l1.r[i][1] - l1.r[i][0];
        if (len < lo) lo = len;
        if (len > hi) hi = len;
    }
    CHECK_EQ_INT(l1.r[l1.n - 1][1], 100001);
    CHECK(hi - lo <= 1 && lo >= 100);
    pthread_mutex_destroy(&l1.mu);
    pthread_mutex_destroy(&l2.mu);
    rk_pool_destroy(p);
}

static void bump(void *vp)
{
    atomic_fetch_add((_Atomic uint64_t *)vp, 1);
}

typedef struct producer_arg {
    rk_pool *pool;
    _Atomic uint64_t *counter;
    int rc;
} producer_arg;

static void *producer(void *vp)
{
    producer_arg *a = vp;
    for (int i = 0; i < 20000 && !a->rc; i++) {
        a->rc = rk_pool_submit(a->pool, bump, a->counter);
        if (i % 5000 == 4999) rk_pool_wait(a->pool); /* waits interleaved */
    }
    return NULL;
}

TEST(pool_submit_wait_contention)
{
    rk_pool *p;
    CHECK_OK(rk_pool_create(&p, 4, 4)); /* tiny queue: submit blocks */
    _Atomic uint64_t counter = 0;
    pthread_t th[4];
    producer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (producer_arg){p, &counter, 0};
        CHECK(pthread_create(&th[i], NULL, producer, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK_OK(args[i].rc);
    rk_pool_wait(p);
    CHECK_EQ_INT(atomic_load(&counter), 80000);
    rk_pool_wait(p); /* idle pool: returns at once */
    rk_pool_destroy(p);
}

static void slow_bump(void *vp)
{
    rk_sleep_ms(20);
    bump(vp);
}

TEST(pool_destroy_drains_queue)
{
    rk_pool *p;
    CHECK_OK(rk_pool_create(&p, 1, 200));
    _Atomic uint64_t counter = 0;
    CHECK_OK(rk_pool_submit(p, slow_bump, &counter));
    for (int i = 0; i < 150; i++) CHECK_OK(rk_pool_submit(p, bump, &counter));
    rk_pool_destroy(p); /* no wait: destroy itself runs the queue */
    CHECK_EQ_INT(atomic_load(&counter), 151);
}

typedef struct nested_arg {
    rk_pool *pool;
    _Atomic int failures;
} nested_arg;

static void nested_task(void *vp)
{
    nested_arg *a = vp;
    uint8_t *hits = calloc(20000, 1);
    sum_ctx c = {.grain = 10, .n = 20000, .hits = hits};
    if (!hits || rk_pool_parallel_for(a->pool, 20000, 10, sum_range, &c) ||
        atomic_load(&c.sum) != 20000ULL * 19999 / 2)
        atomic_fetch_add(&a->failures, 1);
    free(hits);
}

TEST(pool_nested_parallel_for)
{
    /* Every worker runs a task that itself calls parallel_for on the same
     * pool; this must finish, not deadlock. */
    rk_pool *p;
    CHECK_OK(rk_pool_create(&p, 2, 2));
    nested_arg a = {.pool = p};
    for (int i = 0; i < 20; i++) CHECK_OK(rk_pool_submit(p, nested_task, &a));
    rk_pool_wait(p);
    CHECK_EQ_INT(atomic_load(&a.failures), 0);
    rk_pool_destroy(p);
}

static void *pf_caller(void *vp)
{
    nested_arg *a = vp;
    for (int i = 0; i < 50; i++) nested_task(a);
    return NULL;
}

TEST(pool_parallel_for_concurrent_callers)
{
    rk_pool *p;
    CHECK_OK(rk_pool_create(&p, 3, 8));
    nested_arg a = {.pool = p};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, pf_caller, &a) == 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&a.failures), 0);
    rk_pool_destroy(p);
}

TEST(pool_arguments)
{
    rk_pool *p;
    CHECK_EQ_INT(rk_pool_create(&p, 100000, 4), RK_EINVAL);
    CHECK_OK(rk_pool_create(&p, 0, 0)); /* one per CPU, default queue */
    CHECK(rk_pool_threads(p) >= 1);
    CHECK_EQ_INT(rk_pool_submit(p, NULL, NULL), RK_EINVAL);
    CHECK_EQ_INT(rk_pool_parallel_for(p, 10, 1, NULL, NULL), RK_EINVAL);
    rk_pool_destroy(p);
    rk_pool_destroy(NULL);
    CHECK_EQ_INT(rk_pool_threads(NULL), 0);
}

static int pool_op(void)
{
    rk_pool *p;
    int rc = rk_pool_create(&p, 2, 8);
    if (rc) return rc;
    rk_pool_destroy(p);
    return 0;
}

TEST(pool_fault_sweep)
{
    CHECK(fault_sweep(pool_op, 0) > 1);
    CHECK(fault_sweep(pool_op, 1) > 1);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, map_basic, map_random_vs_reference,
                 map_limit_and_evict, map_evict_is_spread, map_fault_sweep,
                 log_format_and_levels, log_lines_whole_under_threads,
                 log_level_parse_table, clock_basics, time_format_table,
                 time_format_matches_gmtime_and_roundtrips, time_parse_table,
                 parse_duration_table,
                 pool_parallel_for_sums, pool_parallel_for_deterministic,
                 pool_submit_wait_contention, pool_destroy_drains_queue,
                 pool_nested_parallel_for, pool_parallel_for_concurrent_callers,
                 pool_arguments, pool_fault_sweep);
}
