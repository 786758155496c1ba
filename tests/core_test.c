/*
 * core_test.c — errors, allocator, arena, vectors, buffers, number parsing,
 * UTF-8 and hashing, plus allocation-failure sweeps over each container:
 * fail the 1st, 2nd, ... allocation until the operation succeeds, and check
 * every failure is a clean RK_ENOMEM that leaks nothing.
 * (Maps, logging, clocks and the thread pool are in core2_test.c.)
 */
#include "test.h"

#include <stdint.h>

/* ---- helpers ----------------------------------------------------------- */

static size_t mem_in_use(void)
{
    rk_mem_stats st;
    rk_mem_get_stats(&st);
    return st.in_use;
}

/* An operation run under fault injection: 0 on success, a negative code on
 * failure; it must free everything it allocated either way. */
typedef int (*fault_op)(void);

/* Fails the 1st, 2nd, ... allocation of op until op succeeds; on each run
 * checks the error is RK_ENOMEM, that the injected failure was actually
 * reached, and that nothing leaked. Returns the number of runs, 0 on a
 * problem (after printing it). */
static unsigned fault_sweep(fault_op op, int persist)
{
    for (uint64_t n = 1; n < 100000; n++) {
        size_t before = mem_in_use();
        rk_mem_fail_at(n, persist);
        int rc = op();
        uint64_t attempts = rk_mem_attempts();
        rk_mem_fail_at(0, 0);
        size_t after = mem_in_use();
        if (after != before) {
            fprintf(stderr, "  fault n=%llu: leaked %zu bytes (rc %s)\n",
                    (unsigned long long)n, after - before, rk_errname(rc));
            return 0;
        }
        if (rc == 0) {
            /* Success must mean the nth allocation was never attempted,
             * not that a failure was swallowed. */
            if (attempts >= n) {
                fprintf(stderr, "  fault n=%llu: failure swallowed\n",
                        (unsigned long long)n);
                return 0;
            }
            return (unsigned)n;
        }
        if (rc != RK_ENOMEM) {
            fprintf(stderr, "  fault n=%llu: got %s, want NOMEM\n",
                    (unsigned long long)n, rk_errname(rc));
            return 0;
        }
    }
    fprintf(stderr, "  fault sweep did not converge\n");
    return 0;
}

/* ---- errors ------------------------------------------------------------ */

TEST(err_table)
{
    static const struct {
        int code;
        const char *name, *msg;
    } rows[] = {
        {RK_OK, "OK", "success"},
        {RK_ENOMEM, "NOMEM", "out of memory"},
        {RK_EINVAL, "INVAL", "invalid argument"},
        {RK_EPARSE, "PARSE", "malformed input"},
        {RK_ELIMIT, "LIMIT", "limit exceeded"},
        {RK_ECLOSED, "CLOSED", "closed"},
        {RK_EINTERNAL, "INTERNAL", "internal error"},
        {1, "UNKNOWN", "unknown error"},
        {-20, "UNKNOWN", "unknown error"},
        {-1000000, "UNKNOWN", "unknown error"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK_STR(rk_errname(rows[i].code), rows[i].name);
        CHECK_STR(rk_strerror(rows[i].code), rows[i].msg);
    }
    /* Every code in the table has its own name. */
    for (int c = RK_OK; c >= RK_EINTERNAL; c--) {
        CHECK(strcmp(rk_errname(c), "UNKNOWN") != 0);
        for (int d = c - 1; d >= RK_EINTERNAL; d--)
            CHECK(strcmp(rk_errname(c), rk_errname(d)) != 0);
    }
}

TEST(err_detail)
{
    rk_err e = {0};
    CHECK_STR(rk_err_msg(&e), "success");
    CHECK_STR(rk_err_msg(NULL), "success");
    CHECK_EQ_INT(rk_err_set(&e, RK_EPARSE, "line %d: bad '%s'", 12, "x"),
                 RK_EPARSE);
    CHECK_EQ_INT(e.code, RK_EPARSE);
    CHECK_STR(rk_err_msg(&e), "line 12: bad 'x'");
    CHECK_EQ_INT(rk_err_prefix(&e, "%s: ", "events.csv"), RK_EPARSE);
    CHECK_STR(rk_err_msg(&e), "events.csv: line 12: bad 'x'");
    rk_err_clear(&e);
    CHECK_EQ_INT(e.code, 0);
    CHECK_EQ_INT(rk_err_set(NULL, RK_EIO, "ignored"), RK_EIO);
    CHECK_EQ_INT(rk_err_prefix(NULL, "x"), RK_EINTERNAL);
    /* Overlong messages are cut, never overflow. */
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rk_err_set(&e, RK_EIO, "%s", big);
    CHECK_EQ_INT(strlen(e.msg), RK_ERR_MSG_MAX - 1);
    rk_err_prefix(&e, "ctx: ");
    CHECK_EQ_INT(strlen(e.msg), RK_ERR_MSG_MAX - 1);
    CHECK(strncmp(e.msg, "ctx: aaa", 8) == 0);
}

/* ---- allocator --------------------------------------------------------- */

TEST(alloc_counting)
{
    rk_mem_stats s0, s1;
    rk_mem_get_stats(&s0);
    char *p = rk_malloc(1000);
    CHECK(p);
    CHECK(((uintptr_t)p & 15) == 0);
    rk_mem_get_stats(&s1);
    CHECK_EQ_INT(s1.in_use, s0.in_use + 1000);
    CHECK(s1.peak >= s1.in_use);
    CHECK_EQ_INT(s1.allocs, s0.allocs + 1);
    p = rk_realloc(p, 5000);
    CHECK(p);
    rk_mem_get_stats(&s1);
    CHECK_EQ_INT(s1.in_use, s0.in_use + 5000);
    p = rk_realloc(p, 10);
    rk_mem_get_stats(&s1);
    CHECK_EQ_INT(s1.in_use, s0.in_use + 10);
    rk_free(p);
    rk_free(NULL);
    CHECK_EQ_INT(mem_in_use(), s0.in_use);

    int *z = rk_calloc(100, sizeof *z);
    CHECK(z);
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(z[i], 0);
    rk_free(z);
    CHECK(rk_calloc(SIZE_MAX / 2, 4) == NULL); /* n * size overflows */
    CHECK(rk_malloc(SIZE_MAX) == NULL);

    char *s = rk_strdup("hello");
    CHECK_STR(s, "hello");
    char *t = rk_strndup("hello", 3);
    CHECK_STR(t, "hel");
    char *u = rk_memdup("xyz", 3);
    CHECK(u && memcmp(u, "xyz", 3) == 0);
    rk_free(s);
    rk_free(t);
    rk_free(u);
    CHECK_EQ_INT(mem_in_use(), s0.in_use);
}

TEST(alloc_limit)
{
    rk_mem_stats s0, s1;
    rk_mem_get_stats(&s0);
    rk_mem_set_limit(s0.in_use + 4096);
    void *a = rk_malloc(4000);
    CHECK(a);
    void *b = rk_malloc(200); /* would pass the limit */
    rk_mem_get_stats(&s1);
    CHECK(b == NULL);
    CHECK_EQ_INT(s1.failures, s0.failures + 1);
    CHECK_EQ_INT(s1.limit, s0.in_use + 4096);
    CHECK(rk_realloc(a, 8000) == NULL); /* growth counts too */
    void *c = rk_realloc(a, 100);       /* shrinking always works */
    CHECK(c);
    b = rk_malloc(200);
    CHECK(b);
    rk_mem_set_limit(0);
    rk_free(b);
    rk_free(c);
}

TEST(alloc_fail_at)
{
    void *p[6];
    rk_mem_fail_at(3, 0);
    for (int i = 0; i < 6; i++) p[i] = rk_malloc(8);
    CHECK(p[0] && p[1] && !p[2] && p[3] && p[4] && p[5]);
    CHECK_EQ_INT(rk_mem_attempts(), 6);
    for (int i = 0; i < 6; i++) rk_free(p[i]);

    rk_mem_fail_at(2, 1); /* persistent: the 2nd and everything after */
    for (int i = 0; i < 6; i++) p[i] = rk_malloc(8);
    CHECK(p[0] && !p[1] && !p[2] && !p[5]);
    rk_free(p[0]);
    rk_mem_fail_at(0, 0);
    p[0] = rk_malloc(8);
    CHECK(p[0]);
    rk_free(p[0]);
}

/* ---- arena ------------------------------------------------------------- */

TEST(arena_alignment_and_content)
{
    static const size_t chunks[] = {0, 64, 256, 4096};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        rk_arena a;
        rk_arena_init(&a, chunks[c], 0);
        unsigned char *ptrs[300];
        size_t sizes[300];
        for (size_t i = 0; i < 300; i++) {
            sizes[i] = (i * 37) % 700; /* includes 0 and sizes > chunk */
            ptrs[i] = rk_arena_alloc(&a, sizes[i]);
            CHECK(ptrs[i]);
            CHECK(((uintptr_t)ptrs[i] & 15) == 0);
            memset(ptrs[i], (int)(i & 0xff), sizes[i]);
        }
        /* No allocation overlapped another. */
        for (size_t i = 0; i < 300; i++)
            for (size_t k = 0; k < sizes[i]; k++)
                CHECK(ptrs[i][k] == (unsigned char)(i & 0xff));
        CHECK(a.used >= 300);
        CHECK(a.reserved >= a.used);
        char *s = rk_arena_strndup(&a, "hello world", 5);
        CHECK_STR(s, "hello");
        char *f = rk_arena_sprintf(&a, "%s-%d-%0*d", "x", 42, 300, 7);
        CHECK(f && strlen(f) == 5 + 300);
        CHECK(strncmp(f, "x-42-000", 8) == 0 && f[304] == '7');
        int *m = rk_arena_memdup(&a, (int[]){1, 2, 3}, 3 * sizeof(int));
        CHECK(m && m[0] == 1 && m[2] == 3);
        rk_arena_free(&a);
        CHECK_EQ_INT(a.used, 0);
        CHECK_EQ_INT(a.reserved, 0);
    }
}

TEST(arena_max_bytes)
{
    rk_arena a;
    rk_arena_init(&a, 1024, 4096);
    size_t got = 0;
    for (int i = 0; i < 1000; i++) {
        void *p = rk_arena_alloc(&a, 100);
        if (!p) break;
        got += 100;
    }
    CHECK(got > 0 && got < 4096);
    CHECK(a.reserved <= 4096);
    CHECK(rk_arena_alloc(&a, 100) == NULL);
    CHECK(rk_arena_alloc(&a, 1 << 20) == NULL);
    CHECK(rk_arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(rk_arena_sprintf(&a, "%0*d", 5000, 1) == NULL);
    /* Reset makes the budget available again. */
    rk_arena_reset(&a);
    CHECK(rk_arena_alloc(&a, 100) != NULL);
    rk_arena_free(&a);

    /* A single request bigger than the bound fails without allocating. */
    size_t before = mem_in_use();
    rk_arena_init(&a, 1024, 512);
    CHECK(rk_arena_alloc(&a, 1000) == NULL);
    CHECK_EQ_INT(mem_in_use(), before);
    rk_arena_free(&a);
}

TEST(arena_reset_reuses_first_chunk)
{
    rk_arena a;
    rk_arena_init(&a, 4096, 0);
    void *first = rk_arena_alloc(&a, 32);
    CHECK(first);
    for (int i = 0; i < 100; i++) CHECK(rk_arena_alloc(&a, 500));
    CHECK(rk_arena_alloc(&a, 100000)); /* an oversized chunk */
    size_t before_reset = mem_in_use();
    rk_arena_reset(&a);
    CHECK_EQ_INT(a.used, 0);
    CHECK(mem_in_use() < before_reset);
#ifndef RK_NO_ARENA
    /* One chunk survives and is reused from its start. */
    CHECK_EQ_INT(a.reserved, 4096);
    CHECK(rk_arena_alloc(&a, 32) == first);
#else
    CHECK_EQ_INT(a.reserved, 0);
#endif
    rk_arena_free(&a);
    rk_arena_free(&a); /* freeing twice is harmless */

    /* Reset of an arena whose first chunk was oversized keeps nothing. */
    rk_arena_init(&a, 256, 0);
    CHECK(rk_arena_alloc(&a, 10000));
    rk_arena_reset(&a);
    CHECK_EQ_INT(a.reserved, 0);
    rk_arena_free(&a);
}

static int arena_op(void)
{
    rk_arena a;
    rk_arena_init(&a, 512, 0);
    for (int i = 0; i < 200; i++) {
        char *p = rk_arena_alloc(&a, (size_t)(i * 13 % 900));
        char *s = p ? rk_arena_sprintf(&a, "item %d", i) : NULL;
        if (!s) {
            rk_arena_free(&a);
            return RK_ENOMEM;
        }
    }
    rk_arena_free(&a);
    return 0;
}

TEST(arena_fault_sweep)
{
    CHECK(fault_sweep(arena_op, 0) > 1);
    CHECK(fault_sweep(arena_op, 1) > 1);
}

/* ---- vectors ----------------------------------------------------------- */

TEST(vec_push_and_limits)
{
    RK_VEC(int) v = {0};
    for (int i = 0; i < 10000; i++) CHECK_OK(rk_vec_push(&v, i));
    CHECK_EQ_INT(v.n, 10000);
    CHECK(v.cap >= 10000);
    for (int i = 0; i < 10000; i++) CHECK_EQ_INT(v.v[i], i);
    rk_vec_free(&v);
    CHECK(v.v == NULL && v.n == 0 && v.cap == 0);

    RK_VEC(double) b = {.max = 100};
    for (int i = 0; i < 100; i++) CHECK_OK(rk_vec_push(&b, i * 0.5));
    CHECK_EQ_INT(b.cap, 100); /* growth clamps to max */
    CHECK_EQ_INT(rk_vec_push(&b, 1.0), RK_ELIMIT);
    CHECK_EQ_INT(b.n, 100);
    CHECK_EQ_INT(rk_vec_reserve(&b, 101), RK_ELIMIT);
    CHECK_OK(rk_vec_reserve(&b, 50));
    rk_vec_free(&b);

    RK_VEC(char) c = {0};
    CHECK_EQ_INT(rk_vec_reserve(&c, SIZE_MAX), RK_ENOMEM);
    CHECK_OK(rk_vec_reserve(&c, 3));
    CHECK(c.cap >= 3);
    rk_vec_free(&c);
}

TEST(vec_push_transient_failure)
{
    /* A push whose growth fails must report the failure even if the very
     * next allocation would succeed, and must leave the vector intact. */
    RK_VEC(int) v = {0};
    CHECK_OK(rk_vec_push(&v, 1));
    while (v.n < v.cap) CHECK_OK(rk_vec_push(&v, 2));
    size_t n = v.n;
    rk_mem_fail_at(1, 0);
    int x = 7;
    CHECK_EQ_INT(rk_vec_push(&v, x++), RK_ENOMEM);
    CHECK_EQ_INT(x, 7); /* not evaluated when nothing is pushed */
    CHECK_EQ_INT(v.n, n);
    CHECK_OK(rk_vec_push(&v, 9));
    CHECK_EQ_INT(v.v[n], 9);
    CHECK_EQ_INT(v.v[0], 1);
    rk_vec_free(&v);
}

static int vec_op(void)
{
    RK_VEC(uint64_t) v = {0};
    for (uint64_t i = 0; i < 5000; i++) {
        int rc = rk_vec_push(&v, i * 3);
        if (rc) {
            /* Everything pushed before the failure is still there. */
            int ok = v.n == i;
            for (size_t k = 0; ok && k < v.n; k++) ok = v.v[k] == k * 3;
            rk_vec_free(&v);
            return ok ? rc : RK_EINTERNAL;
        }
    }
    rk_vec_free(&v);
    return 0;
}

TEST(vec_fault_sweep)
{
    CHECK(fault_sweep(vec_op, 0) > 1);
    CHECK(fault_sweep(vec_op, 1) > 1);
}

/* ---- buffers ----------------------------------------------------------- */

TEST(buf_basic)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK(b.data == NULL && b.len == 0);
    CHECK_OK(rk_buf_append(&b, "", 0));
    CHECK_STR(b.data, ""); /* NUL-terminated after any append */
    CHECK_OK(rk_buf_puts(&b, "abc"));
    CHECK_OK(rk_buf_putc(&b, 'd'));
    CHECK_OK(rk_buf_printf(&b, "-%d-%s", 42, "x"));
    CHECK_STR(b.data, "abcd-42-x");
    CHECK_EQ_INT(b.len, 9);
    rk_buf_reset(&b);
    CHECK_STR(b.data, "");
    CHECK_EQ_INT(b.len, 0);
    /* printf that does not fit the spare room. */
    CHECK_OK(rk_buf_printf(&b, "%0*d", 10000, 5));
    CHECK_EQ_INT(b.len, 10000);
    CHECK(b.data[9999] == '5' && b.data[10000] == '\0');
    /* Embedded NUL bytes are kept. */
    rk_buf_reset(&b);
    CHECK_OK(rk_buf_append(&b, "a\0b", 3));
    CHECK_EQ_INT(b.len, 3);
    CHECK(memcmp(b.data, "a\0b", 4) == 0);
    for (int i = 0; i < 100000; i++) CHECK_OK(rk_buf_putc(&b, 'z'));
    CHECK_EQ_INT(b.len, 100003);
    CHECK(b.data[b.len] == '\0');
    rk_buf_free(&b);
    CHECK(b.data == NULL);
    rk_buf_free(&b);
}

TEST(buf_bounds)
{
    rk_buf b;
    rk_buf_init(&b, 10);
    CHECK_OK(rk_buf_puts(&b, "0123456789"));
    CHECK(b.cap <= 11); /* never more than max + NUL */
    CHECK_EQ_INT(rk_buf_putc(&b, 'x'), RK_ELIMIT);
    CHECK_EQ_INT(rk_buf_puts(&b, "x"), RK_ELIMIT);
    CHECK_EQ_INT(rk_buf_reserve(&b, 1), RK_ELIMIT);
    CHECK_OK(rk_buf_reserve(&b, 0));
    CHECK_STR(b.data, "0123456789");
    rk_buf_reset(&b);
    CHECK_OK(rk_buf_puts(&b, "abc"));
    /* Failing appends leave the content exactly as it was. */
    CHECK_EQ_INT(rk_buf_printf(&b, "%s", "12345678"), RK_ELIMIT);
    CHECK_STR(b.data, "abc");
    CHECK_EQ_INT(rk_buf_put_json_str(&b, "hello!", 6), RK_ELIMIT);
    CHECK_STR(b.data, "abc");
    CHECK_EQ_INT(rk_buf_put_latin1(&b, "\xe9\xe9\xe9\xe9", 4), RK_ELIMIT);
    CHECK_STR(b.data, "abc");
    CHECK_OK(rk_buf_printf(&b, "%s", "1234567"));
    CHECK_STR(b.data, "abc1234567");
    CHECK_EQ_INT(rk_buf_reserve(&b, SIZE_MAX), RK_ELIMIT);
    rk_buf_free(&b);

    rk_buf_init(&b, 0);
    CHECK_EQ_INT(rk_buf_reserve(&b, SIZE_MAX), RK_ENOMEM);
    /* A real allocation failure (via the byte limit: sanitizers abort on
     * absurd sizes instead of returning NULL). */
    rk_mem_set_limit(mem_in_use() + 1000);
    CHECK_EQ_INT(rk_buf_reserve(&b, 100000), RK_ENOMEM);
    rk_mem_set_limit(0);
    CHECK(b.data == NULL);
    rk_buf_free(&b);
}

TEST(buf_json_escaping)
{
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } rows[] = {
        {"", 0, "\"\""},
        {"plain", 5, "\"plain\""},
        {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
        {"\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""},           /* valid 2-byte */
        {"\xe2\x82\xac", 3, "\"\xe2\x82\xac\""},         /* euro sign */
        {"\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\""}, /* emoji */
        {"\xff", 1, "\"\xef\xbf\xbd\""},                 /* never valid */
        {"a\xc3", 2, "\"a\xef\xbf\xbd\""},               /* truncated */
        {"\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""}, /* overlong '/' */
        {"\xed\xa0\x80", 3,                              /* surrogate */
         "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xe2\x82x", 3, "\"\xef\xbf\xbdx\""},           /* maximal subpart */
        {"\xf4\x90\x80\x80", 4,                          /* > U+10FFFF */
         "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\x80\"", 2, "\"\xef\xbf\xbd\\\"\""},
    };
    rk_buf b;
    rk_buf_init(&b, 0);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rk_buf_reset(&b);
        CHECK_OK(rk_buf_put_json_str(&b, rows[i].in, rows[i].n));
        if (strcmp(b.data, rows[i].out) != 0)
            fprintf(stderr, "  row %zu: got %s\n", i, b.data);
        CHECK_STR(b.data, rows[i].out);
        CHECK_EQ_INT(b.len, strlen(rows[i].out));
        /* The output is always valid UTF-8. */
        CHECK_EQ_INT(rk_utf8_valid_prefix(b.data, b.len), b.len);
    }
    /* Appends after existing content. */
    rk_buf_reset(&b);
    CHECK_OK(rk_buf_puts(&b, "{\"k\":"));
    CHECK_OK(rk_buf_put_json_str(&b, "v", 1));
    CHECK_OK(rk_buf_putc(&b, '}'));
    CHECK_STR(b.data, "{\"k\":\"v\"}");
    rk_buf_free(&b);
}

TEST(utf8_valid_prefix_table)
{
    static const struct {
        const char *s;
        size_t n, want;
    } rows[] = {
        {"", 0, 0},
        {"ascii", 5, 5},
        {"a\0b", 3, 3},
        {"\xc3\xa9", 2, 2},
        {"\xc3", 1, 0},
        {"ab\xc3", 3, 2},
        {"\xc2\x80", 2, 2},             /* U+0080, smallest 2-byte */
        {"\xc1\xbf", 2, 0},             /* overlong */
        {"\xe0\x9f\xbf", 3, 0},         /* overlong 3-byte */
        {"\xe0\xa0\x80", 3, 3},         /* U+0800 */
        {"\xed\x9f\xbf", 3, 3},         /* U+D7FF */
        {"\xed\xa0\x80", 3, 0},         /* U+D800 surrogate */
        {"\xed\xbf\xbf", 3, 0},         /* U+DFFF surrogate */
        {"\xee\x80\x80", 3, 3},         /* U+E000 */
        {"\xef\xbf\xbf", 3, 3},         /* U+FFFF */
        {"\xf0\x8f\xbf\xbf", 4, 0},     /* overlong 4-byte */
        {"\xf0\x90\x80\x80", 4, 4},     /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, 4},     /* U+10FFFF */
        {"\xf4\x90\x80\x80", 4, 0},     /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xf8\x88\x80\x80\x80", 5, 0}, /* old 5-byte form */
        {"x\x80y", 3, 1},               /* lone continuation */
        {"\xe2\x82\xac\xe2\x82", 5, 3}, /* valid then truncated */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rk_utf8_valid_prefix(rows[i].s, rows[i].n) != rows[i].want)
            fprintf(stderr, "  row %zu\n", i);
        CHECK_EQ_INT(rk_utf8_valid_prefix(rows[i].s, rows[i].n), rows[i].want);
    }
}

TEST(buf_latin1)
{
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } rows[] = {
        {"", 0, ""},
        {"abc", 3, "abc"},
        {"caf\xe9", 4, "caf\xc3\xa9"},
        {"\x80\xff", 2, "\xc2\x80\xc3\xbf"},
        {"\xa0x\xbf", 3, "\xc2\xa0x\xc2\xbf"},
    };
    rk_buf b;
    rk_buf_init(&b, 0);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rk_buf_reset(&b);
        CHECK_OK(rk_buf_put_latin1(&b, rows[i].in, rows[i].n));
        CHECK_STR(b.data ? b.data : "", rows[i].out);
        CHECK_EQ_INT(rk_utf8_valid_prefix(b.data, b.len), b.len);
    }
    /* Every Latin-1 byte round-trips to a valid UTF-8 character. */
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    rk_buf_reset(&b);
    CHECK_OK(rk_buf_put_latin1(&b, all, 256));
    CHECK_EQ_INT(b.len, 128 + 2 * 128);
    CHECK_EQ_INT(rk_utf8_valid_prefix(b.data, b.len), b.len);
    rk_buf_free(&b);
}

static int buf_op(void)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    for (int i = 0; i < 300; i++) {
        size_t len = b.len;
        int rc;
        switch (i % 4) {
        case 0: rc = rk_buf_printf(&b, "row %d, ", i); break;
        case 1: rc = rk_buf_put_json_str(&b, "x\"y\n\xff", 5); break;
        case 2: rc = rk_buf_put_latin1(&b, "\xe9t\xe9", 3); break;
        default: rc = rk_buf_append(&b, "0123456789abcdef", 16); break;
        }
        if (rc) {
            /* All or nothing: a failed append leaves len and the NUL. */
            int ok = b.len == len && (!b.data || b.data[len] == '\0');
            rk_buf_free(&b);
            return ok ? rc : RK_EINTERNAL;
        }
    }
    rk_buf_free(&b);
    return 0;
}

TEST(buf_fault_sweep)
{
    CHECK(fault_sweep(buf_op, 0) > 1);
    CHECK(fault_sweep(buf_op, 1) > 1);
}

/* ---- number parsing ---------------------------------------------------- */

TEST(parse_i64_table)
{
    static const struct {
        const char *s;
        int rc;
        int64_t v;
    } rows[] = {
        {"0", 0, 0},
        {"-0", 0, 0},
        {"7", 0, 7},
        {"007", 0, 7},
        {"-42", 0, -42},
        {"9223372036854775807", 0, INT64_MAX},
        {"-9223372036854775808", 0, INT64_MIN},
        {"9223372036854775808", RK_EPARSE, 0},
        {"-9223372036854775809", RK_EPARSE, 0},
        {"99999999999999999999", RK_EPARSE, 0},
        {"", RK_EPARSE, 0},
        {"-", RK_EPARSE, 0},
        {"+1", RK_EPARSE, 0},
        {" 1", RK_EPARSE, 0},
        {"1 ", RK_EPARSE, 0},
        {"1.0", RK_EPARSE, 0},
        {"1e3", RK_EPARSE, 0},
        {"0x10", RK_EPARSE, 0},
        {"--1", RK_EPARSE, 0},
        {"12a", RK_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t v = 12345;
        int rc = rk_parse_i64(rows[i].s, strlen(rows[i].s), &v);
        if (rc != rows[i].rc) fprintf(stderr, "  row '%s'\n", rows[i].s);
        CHECK_EQ_INT(rc, rows[i].rc);
        if (rc == 0) CHECK(v == rows[i].v);
        else CHECK_EQ_INT(v, 12345); /* untouched on error */
    }
    /* The span is honoured: digits after n are not read. */
    int64_t v;
    CHECK_OK(rk_parse_i64("123456", 3, &v));
    CHECK_EQ_INT(v, 123);
}

TEST(parse_u64_table)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t v;
    } rows[] = {
        {"0", 0, 0},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", RK_EPARSE, 0},
        {"118446744073709551615", RK_EPARSE, 0},
        {"-0", RK_EPARSE, 0},
        {"-1", RK_EPARSE, 0},
        {"", RK_EPARSE, 0},
        {" 1", RK_EPARSE, 0},
        {"1\n", RK_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t v = 0;
        int rc = rk_parse_u64(rows[i].s, strlen(rows[i].s), &v);
        if (rc != rows[i].rc) fprintf(stderr, "  row '%s'\n", rows[i].s);
        CHECK_EQ_INT(rc, rows[i].rc);
        if (rc == 0) CHECK(v == rows[i].v);
    }
}

TEST(parse_f64_table)
{
    static const struct {
        const char *s;
        int rc;
        double v;
    } rows[] = {
        {"0", 0, 0.0},
        {"-0", 0, -0.0},
        {"1.5", 0, 1.5},
        {"-2.25", 0, -2.25},
        {".5", 0, 0.5},
        {"5.", 0, 5.0},
        {"1e3", 0, 1000.0},
        {"1E-2", 0, 0.01},
        {"2.5e+2", 0, 250.0},
        {"1.7976931348623157e308", 0, 1.7976931348623157e308},
        {"1e-400", 0, 0.0}, /* underflow rounds to zero */
        {"1e400", RK_EPARSE, 0},
        {"-1e400", RK_EPARSE, 0},
        {"nan", RK_EPARSE, 0},
        {"NaN", RK_EPARSE, 0},
        {"inf", RK_EPARSE, 0},
        {"-inf", RK_EPARSE, 0},
        {"infinity", RK_EPARSE, 0},
        {"0x1p3", RK_EPARSE, 0},
        {"", RK_EPARSE, 0},
        {".", RK_EPARSE, 0},
        {"-", RK_EPARSE, 0},
        {"e5", RK_EPARSE, 0},
        {"1e", RK_EPARSE, 0},
        {"1e+", RK_EPARSE, 0},
        {" 1", RK_EPARSE, 0},
        {"1 ", RK_EPARSE, 0},
        {"+1", RK_EPARSE, 0},
        {"1,5", RK_EPARSE, 0},
        {"1.2.3", RK_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double v = 123.0;
        int rc = rk_parse_f64(rows[i].s, strlen(rows[i].s), &v);
        if (rc != rows[i].rc) fprintf(stderr, "  row '%s'\n", rows[i].s);
        CHECK_EQ_INT(rc, rows[i].rc);
        if (rc == 0) CHECK(v == rows[i].v);
        else CHECK(v == 123.0);
    }
    double v;
    CHECK_OK(rk_parse_f64("-0", 2, &v));
    CHECK(signbit(v));
    CHECK_OK(rk_parse_f64("2.5xyz", 3, &v)); /* span, not NUL, ends it */
    CHECK(v == 2.5);
    /* Very long but valid text is refused rather than truncated. */
    char longnum[1000];
    memset(longnum, '1', sizeof longnum);
    CHECK_EQ_INT(rk_parse_f64(longnum, sizeof longnum, &v), RK_EPARSE);
}

/* ---- hashing ----------------------------------------------------------- */

TEST(hash_values)
{
    /* Reference values of XXH3 on the empty input (from xxHash's tests). */
    CHECK(rk_hash64("", 0, 0) == 0x2D06800538D394C2ULL);
    CHECK(rk_hash64(NULL, 0, 0) == 0x2D06800538D394C2ULL);
    uint8_t h[16], h2[16];
    rk_hash128("", 0, h);
    static const uint8_t empty128[16] = {0x99, 0xaa, 0x06, 0xd3, 0x01, 0x47,
                                         0x98, 0xd8, 0x60, 0x01, 0xc3, 0x24,
                                         0x46, 0x8d, 0x49, 0x7f};
    CHECK(memcmp(h, empty128, 16) == 0);
    /* Deterministic, seed-sensitive, content-sensitive. */
    CHECK(rk_hash64("abc", 3, 1) == rk_hash64("abc", 3, 1));
    CHECK(rk_hash64("abc", 3, 1) != rk_hash64("abc", 3, 2));
    CHECK(rk_hash64("abc", 3, 1) != rk_hash64("abd", 3, 1));
    rk_hash128("abc", 3, h);
    rk_hash128("abc", 3, h2);
    CHECK(memcmp(h, h2, 16) == 0);
    rk_hash128("abd", 3, h2);
    CHECK(memcmp(h, h2, 16) != 0);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, err_table, err_detail, alloc_counting,
                 alloc_limit, alloc_fail_at, arena_alignment_and_content,
                 arena_max_bytes, arena_reset_reuses_first_chunk,
                 arena_fault_sweep, vec_push_and_limits,
                 vec_push_transient_failure, vec_fault_sweep, buf_basic,
                 buf_bounds, buf_json_escaping, utf8_valid_prefix_table,
                 buf_latin1, buf_fault_sweep, parse_i64_table, parse_u64_table,
                 parse_f64_table, hash_values);
}
