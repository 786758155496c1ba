/*
 * conf_fuzz.h — the body shared by fuzz_conf_yaml.c and fuzz_conf_json.c.
 *
 * Parses the input and, when it loads, walks the whole tree checking what
 * must hold for any document: paths match the keys and indexes that lead to
 * a node, rk_conf_find and rk_conf_get return the node they name, typed
 * reads either succeed on the right type or fail with a located
 * RK_ECONFIG, and nothing leaks. Then it parses again with one allocation
 * failing (chosen from the input) to exercise the out-of-memory paths.
 * Any broken expectation aborts, which libFuzzer reports as a crash.
 */
#ifndef RK_CONF_FUZZ_H
#define RK_CONF_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_core.h"

#define FZ_NAME "fuzz.conf"
#define FZ_PATH_CHECK 100 /* compare paths shorter than this */

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

typedef int (*fz_parse_fn)(rk_conf **, const char *, size_t, const char *,
                           rk_err *);

/* An accessor either succeeds or fails with a message located at n. */
static void fz_check_rc(int rc, const rk_err *err, int must_succeed)
{
    if (rc == 0) return;
    FZ_ASSERT(!must_succeed);
    FZ_ASSERT(rc == RK_ECONFIG && err->code == RK_ECONFIG);
    FZ_ASSERT(strncmp(err->msg, FZ_NAME ":", strlen(FZ_NAME) + 1) == 0);
}

/* A key rk_conf_find can address: no separators, not empty. */
static int fz_simple_key(const char *k)
{
    return k[0] && !strpbrk(k, ".[]");
}

static void fz_walk(const rk_conf_node *root, const rk_conf_node *n,
                    const char *expect, int known, int simple, int depth)
{
    static const char *const choices[] = {"a", "true", "1", "", NULL};
    rk_err err = {0};
    rk_conf_type t = rk_conf_node_type(n);
    const char *path = rk_conf_node_path(n);

    FZ_ASSERT(depth <= 64);
    FZ_ASSERT(path && strlen(path) < 128);
    FZ_ASSERT(strcmp(rk_conf_node_file(n), FZ_NAME) == 0);
    FZ_ASSERT(rk_conf_node_line(n) >= 1);
    FZ_ASSERT(strcmp(rk_conf_type_name(t), "unknown") != 0);
    if (known) {
        FZ_ASSERT(strcmp(path, expect) == 0);
        if (simple) FZ_ASSERT(rk_conf_find(root, expect) == n);
    }

    int b;
    int64_t i64;
    double d;
    const char *s;
    int idx;
    fz_check_rc(rk_conf_as_bool(n, 0, &b, &err), &err,
                t == RK_CONF_BOOL || t == RK_CONF_NULL);
    fz_check_rc(rk_conf_as_int(n, 0, &i64, &err), &err,
                t == RK_CONF_INT || t == RK_CONF_NULL);
    fz_check_rc(rk_conf_as_float(n, 0, &d, &err), &err,
                t == RK_CONF_INT || t == RK_CONF_FLOAT || t == RK_CONF_NULL);
    fz_check_rc(rk_conf_as_str(n, NULL, &s, &err), &err,
                t == RK_CONF_STR || t == RK_CONF_NULL);
    if (t == RK_CONF_STR) FZ_ASSERT(s != NULL);
    fz_check_rc(rk_conf_as_int_range(n, 0, -5, 5, &i64, &err), &err,
                t == RK_CONF_NULL);
    fz_check_rc(rk_conf_as_enum(n, 0, choices, &idx, &err), &err,
                t == RK_CONF_NULL);
    FZ_ASSERT(rk_conf_error(&err, n, "x") == RK_ECONFIG);

    size_t len = rk_conf_len(n);
    FZ_ASSERT(len == 0 || t == RK_CONF_MAP || t == RK_CONF_LIST);
    /* Allowed-key list: every key of the map, so the check must pass. */
    const char **keys = t == RK_CONF_MAP ? calloc(len + 1, sizeof *keys) : NULL;
    for (size_t i = 0; i < len; i++) {
        const char *key = "?";
        const rk_conf_node *k = rk_conf_at(n, i, &key);
        FZ_ASSERT(k != NULL);
        char sub[FZ_PATH_CHECK + 64];
        int sub_known = 0, sub_simple = simple;
        if (t == RK_CONF_MAP) {
            FZ_ASSERT(key != NULL);
            FZ_ASSERT(rk_conf_get(n, key) == k);
            if (keys) keys[i] = key;
            sub_simple = simple && fz_simple_key(key);
            if (known && strlen(expect) + strlen(key) + 2 < FZ_PATH_CHECK) {
                snprintf(sub, sizeof sub, "%s%s%s", expect, expect[0] ? "." : "",
                         key);
                sub_known = 1;
            }
        } else {
            FZ_ASSERT(key == NULL);
            if (known && strlen(expect) + 24 < FZ_PATH_CHECK) {
                snprintf(sub, sizeof sub, "%s[%zu]", expect, i);
                sub_known = 1;
            }
        }
        fz_walk(root, k, sub, sub_known, sub_simple, depth + 1);
    }
    FZ_ASSERT(rk_conf_at(n, len, NULL) == NULL);
    if (t == RK_CONF_MAP && keys) {
        FZ_ASSERT(rk_conf_check_keys(n, keys, &err) == 0);
        static const char *const none[] = {NULL};
        fz_check_rc(rk_conf_check_keys(n, none, &err), &err, len == 0);
    } else if (t != RK_CONF_MAP) {
        fz_check_rc(rk_conf_check_keys(n, choices, &err), &err, 0);
    }
    free(keys);
}

/* Runs one input through parse; returns the parse result code. */
static int fz_conf_one(fz_parse_fn parse, const uint8_t *data, size_t size)
{
    rk_mem_stats before, after;
    rk_mem_fail_at(0, 0);
    rk_mem_get_stats(&before);

    rk_conf *c = NULL;
    rk_err err = {0};
    int rc = parse(&c, (const char *)data, size, FZ_NAME, &err);
    uint64_t attempts = rk_mem_attempts();
    if (rc == 0) {
        const rk_conf_node *root = rk_conf_root(c);
        FZ_ASSERT(root != NULL);
        FZ_ASSERT(rk_conf_find(root, "") == root);
        fz_walk(root, root, "", 1, 1, 0);
        rk_conf_destroy(c);
    } else {
        FZ_ASSERT(c == NULL);
        FZ_ASSERT(rc == RK_EPARSE || rc == RK_ELIMIT);
        FZ_ASSERT(err.code == rc);
        FZ_ASSERT(strncmp(err.msg, FZ_NAME ":", strlen(FZ_NAME) + 1) == 0);
    }
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);

    /* Again with one allocation failing, picked from the input so a crash
     * reproduces. Every counted attempt happened before the first run
     * finished, so the result must be a clean RK_ENOMEM. */
    if (attempts > 0) {
        uint64_t h = 1469598103934665603u;
        for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211u;
        rk_mem_fail_at(1 + h % attempts, 0);
        rk_conf *c2 = NULL;
        int rc2 = parse(&c2, (const char *)data, size, FZ_NAME, &err);
        rk_mem_fail_at(0, 0);
        FZ_ASSERT(rc2 == RK_ENOMEM);
        FZ_ASSERT(c2 == NULL);
        rk_mem_get_stats(&after);
        FZ_ASSERT(after.in_use == before.in_use);
    }
    return rc;
}

#endif
