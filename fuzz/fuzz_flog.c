/*
 * fuzz_flog.c — libFuzzer target for the feature-log entry decoder
 * (rk_flog_decode) and the training-set file loader
 * (rk_trainset_load_mem).
 *
 * The first byte picks the parser (even: feature-log entry, odd: training
 * set); the rest is its input. Each input is parsed twice: as it is, which
 * mostly stops at the checksum, and with the trailing xxh3 recomputed, so
 * mutations reach the structural checks behind it. Whatever decodes must
 * survive use: a decoded entry re-encodes and decodes to the same bytes; a
 * loaded training set exports (grouped dense, sparse) with every index in
 * range. Nothing may leak: rk_malloc's bytes in use must be back where
 * they started. Seeds in fuzz/corpus/flog/ start with the selector byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_features.h"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void flog_one(const uint8_t *p, size_t n)
{
    rk_arena a;
    rk_arena_init(&a, 0, 64u << 20);
    rk_flog_entry e;
    rk_err err = {0};
    int rc = rk_flog_decode(p, n, &a, &e, &err);
    if (rc == 0) {
        FZ_ASSERT(e.request_id && *e.request_id && e.ts_ms >= 0);
        FZ_ASSERT(e.nitems <= RK_FLOG_MAX_ITEMS);
        /* What decodes is what was encoded: the bytes come back exactly. */
        rk_buf b;
        rk_buf_init(&b, 0);
        rc = rk_flog_encode(&e, &b, &err);
        /* A decoded score may be non-finite or an item id may hold a NUL,
         * which encode refuses; anything else must round-trip. */
        if (rc == 0) {
            FZ_ASSERT(b.len == n && memcmp(b.data, p, n) == 0);
        } else {
            FZ_ASSERT(rc == RK_EINVAL);
        }
        rk_buf_free(&b);
    } else {
        FZ_ASSERT(rc == RK_ECORRUPT || rc == RK_EVERSION || rc == RK_ENOMEM);
        FZ_ASSERT(err.msg[0]);
    }
    rk_arena_free(&a);
}

static void trainset_one(const uint8_t *p, size_t n)
{
    rk_trainset *t = NULL;
    rk_err err = {0};
    int rc = rk_trainset_load_mem(&t, p, n, 64u << 20, &err);
    if (rc) {
        FZ_ASSERT(t == NULL && err.msg[0]);
        FZ_ASSERT(rc == RK_ECORRUPT || rc == RK_EVERSION || rc == RK_ELIMIT ||
                  rc == RK_ENOMEM);
        return;
    }
    rk_trainset_summary s;
    FZ_ASSERT(rk_trainset_summarize(t, &s) == 0 && s.rows == rk_trainset_rows(t));
    rk_tdense d;
    if (rk_trainset_dense(t, RK_TDENSE_GROUPED, 3, &d) == 0) {
        size_t total = 0;
        for (size_t g = 0; g < d.ngroups; g++) total += d.group_size[g];
        FZ_ASSERT(total == d.x.nrows);
        rk_tdense_free(&d);
    }
    rk_tsparse sp;
    if (rk_trainset_sparse(t, &sp) == 0) {
        for (size_t i = 0; i < sp.nrows; i++) {
            rk_sparse row;
            rk_tsparse_row(&sp, i, &row);
            for (uint32_t k = 0; k < row.n; k++) FZ_ASSERT(row.idx[k] < sp.dim);
        }
        rk_tsparse_free(&sp);
    }
    rk_trainset_destroy(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    rk_mem_stats before, after;
    rk_mem_get_stats(&before);
    int which = data[0] & 1;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    /* A copy of exactly n bytes, so sanitizers see any overread. */
    uint8_t *buf = malloc(n ? n : 1);
    FZ_ASSERT(buf);
    memcpy(buf, p, n);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (n < 8) break;
            uint64_t h = rk_hash64(buf, n - 8, 0);
            for (int i = 0; i < 8; i++) buf[n - 8 + i] = (uint8_t)(h >> (8 * i));
        }
        if (which == 0) flog_one(buf, n);
        else trainset_one(buf, n);
    }
    free(buf);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    return 0;
}
