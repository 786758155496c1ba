/*
 * test.h — the tiny table-driven test harness used by every tests/<module>_test.c.
 *
 * A test is a function; CHECK records a failure with file:line and returns
 * from the test. Each test must leave rk_malloc's bytes-in-use where it found
 * them, so leaks of rankd allocations fail the test even without sanitizers.
 * The binary prints one line per test and a final "# N passed, N failed"
 * that scripts/run-tests.sh sums across binaries.
 *
 *   TEST(map_basic) { CHECK(1 + 1 == 2); }
 *   int main(int argc, char **argv) { RK_TEST_MAIN(argc, argv, map_basic); }
 */
#ifndef RK_TEST_H
#define RK_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_core.h"

extern int rk__test_failed;
extern const char *rk__test_argv0;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                      \
            rk__test_failed = 1;                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

/* CHECK_OK(expr): expr must return 0; prints the code name otherwise. */
#define CHECK_OK(expr)                                                     \
    do {                                                                   \
        int rk__rc = (expr);                                               \
        if (rk__rc != 0) {                                                 \
            fprintf(stderr, "  %s:%d: %s returned %s\n", __FILE__,         \
                    __LINE__, #expr, rk_errname(rk__rc));                  \
            rk__test_failed = 1;                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                 \
    do {                                                                   \
        long long rk__a = (long long)(a), rk__b = (long long)(b);          \
        if (rk__a != rk__b) {                                              \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n",  \
                    __FILE__, __LINE__, #a, rk__a, #b, rk__b);             \
            rk__test_failed = 1;                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                    \
    do {                                                                   \
        const char *rk__a = (a), *rk__b = (b);                             \
        if (!rk__a || !rk__b || strcmp(rk__a, rk__b) != 0) {               \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n",    \
                    __FILE__, __LINE__, #a, rk__a ? rk__a : "(null)",      \
                    rk__b ? rk__b : "(null)");                             \
            rk__test_failed = 1;                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

/* Substring check, handy for error messages. */
#define CHECK_CONTAINS(hay, needle)                                        \
    do {                                                                   \
        const char *rk__h = (hay);                                         \
        if (!rk__h || !strstr(rk__h, (needle))) {                          \
            fprintf(stderr, "  %s:%d: \"%s\" does not contain \"%s\"\n",   \
                    __FILE__, __LINE__, rk__h ? rk__h : "(null)", needle); \
            rk__test_failed = 1;                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

typedef struct rk_test_case {
    const char *name;
    void (*fn)(void);
} rk_test_case;

int rk_test_run_all(int argc, char **argv, const rk_test_case *cases,
                    size_t n);
/* A fresh empty directory under $TMPDIR (or /tmp) named after the test;
 * returned string is static storage valid until the next call. */
const char *rk_test_tmpdir(const char *tag);
/* rm -rf of a directory made by rk_test_tmpdir. */
void rk_test_rmdir(const char *path);
/* Directory of the shared datasets (../shared/data relative to the repo),
 * or NULL when absent; tests that need it print a skip message. */
const char *rk_test_shared_data(void);

#define RK__TC(f) {#f, f},
#define RK_TEST_MAIN(argc, argv, ...)                                      \
    do {                                                                   \
        static const rk_test_case rk__cases[] = {RK__FOREACH(__VA_ARGS__)}; \
        return rk_test_run_all((argc), (argv), rk__cases,                  \
                               sizeof rk__cases / sizeof rk__cases[0]);    \
    } while (0)

/* Expands RK__TC over up to 64 arguments. */
#define RK__N(...) RK__N_(__VA_ARGS__, 64, 63, 62, 61, 60, 59, 58, 57, 56, 55, \
    54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37,   \
    36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,   \
    18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define RK__N_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14,  \
    _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28,    \
    _29, _30, _31, _32, _33, _34, _35, _36, _37, _38, _39, _40, _41, _42,    \
    _43, _44, _45, _46, _47, _48, _49, _50, _51, _52, _53, _54, _55, _56,    \
    _57, _58, _59, _60, _61, _62, _63, _64, N, ...) N
#define RK__CAT(a, b) RK__CAT_(a, b)
#define RK__CAT_(a, b) a##b
#define RK__FOREACH(...) RK__CAT(RK__FE_, RK__N(__VA_ARGS__))(__VA_ARGS__)
#define RK__FE_1(a) RK__TC(a)
#define RK__FE_2(a, ...) RK__TC(a) RK__FE_1(__VA_ARGS__)
#define RK__FE_3(a, ...) RK__TC(a) RK__FE_2(__VA_ARGS__)
#define RK__FE_4(a, ...) RK__TC(a) RK__FE_3(__VA_ARGS__)
#define RK__FE_5(a, ...) RK__TC(a) RK__FE_4(__VA_ARGS__)
#define RK__FE_6(a, ...) RK__TC(a) RK__FE_5(__VA_ARGS__)
#define RK__FE_7(a, ...) RK__TC(a) RK__FE_6(__VA_ARGS__)
#define RK__FE_8(a, ...) RK__TC(a) RK__FE_7(__VA_ARGS__)
#define RK__FE_9(a, ...) RK__TC(a) RK__FE_8(__VA_ARGS__)
#define RK__FE_10(a, ...) RK__TC(a) RK__FE_9(__VA_ARGS__)
#define RK__FE_11(a, ...) RK__TC(a) RK__FE_10(__VA_ARGS__)
#define RK__FE_12(a, ...) RK__TC(a) RK__FE_11(__VA_ARGS__)
#define RK__FE_13(a, ...) RK__TC(a) RK__FE_12(__VA_ARGS__)
#define RK__FE_14(a, ...) RK__TC(a) RK__FE_13(__VA_ARGS__)
#define RK__FE_15(a, ...) RK__TC(a) RK__FE_14(__VA_ARGS__)
#define RK__FE_16(a, ...) RK__TC(a) RK__FE_15(__VA_ARGS__)
#define RK__FE_17(a, ...) RK__TC(a) RK__FE_16(__VA_ARGS__)
#define RK__FE_18(a, ...) RK__TC(a) RK__FE_17(__VA_ARGS__)
#define RK__FE_19(a, ...) RK__TC(a) RK__FE_18(__VA_ARGS__)
#define RK__FE_20(a, ...) RK__TC(a) RK__FE_19(__VA_ARGS__)
#define RK__FE_21(a, ...) RK__TC(a) RK__FE_20(__VA_ARGS__)
#define RK__FE_22(a, ...) RK__TC(a) RK__FE_21(__VA_ARGS__)
#define RK__FE_23(a, ...) RK__TC(a) RK__FE_22(__VA_ARGS__)
#define RK__FE_24(a, ...) RK__TC(a) RK__FE_23(__VA_ARGS__)
#define RK__FE_25(a, ...) RK__TC(a) RK__FE_24(__VA_ARGS__)
#define RK__FE_26(a, ...) RK__TC(a) RK__FE_25(__VA_ARGS__)
#define RK__FE_27(a, ...) RK__TC(a) RK__FE_26(__VA_ARGS__)
#define RK__FE_28(a, ...) RK__TC(a) RK__FE_27(__VA_ARGS__)
#define RK__FE_29(a, ...) RK__TC(a) RK__FE_28(__VA_ARGS__)
#define RK__FE_30(a, ...) RK__TC(a) RK__FE_29(__VA_ARGS__)
#define RK__FE_31(a, ...) RK__TC(a) RK__FE_30(__VA_ARGS__)
#define RK__FE_32(a, ...) RK__TC(a) RK__FE_31(__VA_ARGS__)
#define RK__FE_33(a, ...) RK__TC(a) RK__FE_32(__VA_ARGS__)
#define RK__FE_34(a, ...) RK__TC(a) RK__FE_33(__VA_ARGS__)
#define RK__FE_35(a, ...) RK__TC(a) RK__FE_34(__VA_ARGS__)
#define RK__FE_36(a, ...) RK__TC(a) RK__FE_35(__VA_ARGS__)
#define RK__FE_37(a, ...) RK__TC(a) RK__FE_36(__VA_ARGS__)
#define RK__FE_38(a, ...) RK__TC(a) RK__FE_37(__VA_ARGS__)
#define RK__FE_39(a, ...) RK__TC(a) RK__FE_38(__VA_ARGS__)
#define RK__FE_40(a, ...) RK__TC(a) RK__FE_39(__VA_ARGS__)
#define RK__FE_41(a, ...) RK__TC(a) RK__FE_40(__VA_ARGS__)
#define RK__FE_42(a, ...) RK__TC(a) RK__FE_41(__VA_ARGS__)
#define RK__FE_43(a, ...) RK__TC(a) RK__FE_42(__VA_ARGS__)
#define RK__FE_44(a, ...) RK__TC(a) RK__FE_43(__VA_ARGS__)
#define RK__FE_45(a, ...) RK__TC(a) RK__FE_44(__VA_ARGS__)
#define RK__FE_46(a, ...) RK__TC(a) RK__FE_45(__VA_ARGS__)
#define RK__FE_47(a, ...) RK__TC(a) RK__FE_46(__VA_ARGS__)
#define RK__FE_48(a, ...) RK__TC(a) RK__FE_47(__VA_ARGS__)
#define RK__FE_49(a, ...) RK__TC(a) RK__FE_48(__VA_ARGS__)
#define RK__FE_50(a, ...) RK__TC(a) RK__FE_49(__VA_ARGS__)
#define RK__FE_51(a, ...) RK__TC(a) RK__FE_50(__VA_ARGS__)
#define RK__FE_52(a, ...) RK__TC(a) RK__FE_51(__VA_ARGS__)
#define RK__FE_53(a, ...) RK__TC(a) RK__FE_52(__VA_ARGS__)
#define RK__FE_54(a, ...) RK__TC(a) RK__FE_53(__VA_ARGS__)
#define RK__FE_55(a, ...) RK__TC(a) RK__FE_54(__VA_ARGS__)
#define RK__FE_56(a, ...) RK__TC(a) RK__FE_55(__VA_ARGS__)
#define RK__FE_57(a, ...) RK__TC(a) RK__FE_56(__VA_ARGS__)
#define RK__FE_58(a, ...) RK__TC(a) RK__FE_57(__VA_ARGS__)
#define RK__FE_59(a, ...) RK__TC(a) RK__FE_58(__VA_ARGS__)
#define RK__FE_60(a, ...) RK__TC(a) RK__FE_59(__VA_ARGS__)
#define RK__FE_61(a, ...) RK__TC(a) RK__FE_60(__VA_ARGS__)
#define RK__FE_62(a, ...) RK__TC(a) RK__FE_61(__VA_ARGS__)
#define RK__FE_63(a, ...) RK__TC(a) RK__FE_62(__VA_ARGS__)
#define RK__FE_64(a, ...) RK__TC(a) RK__FE_63(__VA_ARGS__)

/* Fails the 1st, 2nd, ... allocation of `call` until it succeeds, at
 * most max_iter tries; every failure must be a clean RK_ENOMEM (and,
 * checked by the harness, leak nothing). `cleanup` runs after the
 * successful call. */
#define RK_FAIL_LOOP(call, cleanup, max_iter)                                  \
    do {                                                                       \
        int done = 0;                                                          \
        for (uint64_t nth = 1; nth < (max_iter) && !done; nth++) {            \
            rk_mem_fail_at(nth, 0);                                            \
            int rc = (call);                                                   \
            rk_mem_fail_at(0, 0);                                              \
            if (rc == 0) {                                                     \
                done = 1;                                                      \
                cleanup;                                                       \
            } else if (rc != RK_ENOMEM) {                                      \
                fprintf(stderr, "  allocation %llu: %s\n",                     \
                        (unsigned long long)nth, rk_errname(rc));              \
                CHECK(rc == RK_ENOMEM);                                        \
            }                                                                  \
        }                                                                      \
        CHECK(done);                                                           \
    } while (0)

#endif
