/*
 * fuzz_rank_model.c — libFuzzer target for the byte formats of the linear
 * and factorization models and the calibrator (rk_ftrl_load, rk_fm_load,
 * rk_calib_load).
 *
 * Every input goes to all three loaders, twice: as it is, which mostly
 * stops at the magic or the checksum, and with its trailing checksum
 * recomputed, so mutations reach the field checks behind it. Whatever
 * loads must then predict, take an update, and save to bytes that load
 * again and save identically. An allocation limit keeps a header that
 * claims 2^30 coordinates from taking the machine: such a load must fail
 * cleanly with RK_ENOMEM. Nothing may leak. Seeds in
 * fuzz/corpus/rank_model/ are written by the ftrl, fm and calib tests'
 * fuzz_seeds cases (RK_RANK_WRITE_CORPUS=dir).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/ftrl_int.h"
#include "rk_rank.h"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failed load leaves no model and explains itself. */
static void check_failure(int rc, const void *model, const rk_err *err)
{
    FZ_ASSERT(model == NULL);
    FZ_ASSERT(rc == RK_ECORRUPT || rc == RK_EVERSION || rc == RK_ENOMEM);
    FZ_ASSERT(err->code == rc && err->msg[0]);
}

static void same_bytes(const rk_buf *a, const rk_buf *b)
{
    FZ_ASSERT(a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
}

static void try_ftrl(const unsigned char *p, size_t n)
{
    rk_ftrl *m = NULL, *m2 = NULL;
    rk_err err = {0};
    int rc = rk_ftrl_load(&m, p, n, &err);
    if (rc) {
        check_failure(rc, m, &err);
        return;
    }
    uint32_t dim = rk_ftrl_dim(m);
    uint32_t idx[4] = {0, dim / 2, dim - 1, dim / 3};
    float val[4] = {1, -2, 0.5f, 3}, q = -1;
    rk_sparse x = {idx, val, 4};
    /* Stored states may hold weights of both infinite signs (finite z over
     * a tiny denominator); their sum is refused, anything else predicts. */
    rc = rk_ftrl_predict(m, &x, &q);
    FZ_ASSERT(rc == 0 || rc == RK_EINVAL);
    FZ_ASSERT(rc != 0 || (q >= 0 && q <= 1));
    rk_buf a, b;
    rk_buf_init(&a, 0);
    rk_buf_init(&b, 0);
    rc = rk_ftrl_save(m, &a, &err);
    FZ_ASSERT(rc == 0 || rc == RK_ENOMEM);
    if (rc == 0 && rk_ftrl_load(&m2, a.data, a.len, &err) == 0 &&
        rk_ftrl_save(m2, &b, &err) == 0)
        same_bytes(&a, &b);
    q = -1;
    rc = rk_ftrl_update(m, &x, 1.0f, 1.0f, &q);
    FZ_ASSERT(rc == 0 || rc == RK_EINVAL);
    FZ_ASSERT(rc != 0 || (q >= 0 && q <= 1));
    rk_ftrl_destroy(m);
    rk_ftrl_destroy(m2);
    rk_buf_free(&a);
    rk_buf_free(&b);
}

static void try_fm(const unsigned char *p, size_t n)
{
    rk_fm *m = NULL, *m2 = NULL;
    rk_err err = {0};
    int rc = rk_fm_load(&m, p, n, &err);
    if (rc) {
        check_failure(rc, m, &err);
        return;
    }
    uint32_t dim = rk_fm_dim(m);
    uint32_t idx[4] = {0, dim / 2, dim - 1, dim / 3};
    float val[4] = {1, -2, 0.5f, 3}, q = -1;
    rk_sparse x = {idx, val, 4};
    rc = rk_fm_predict(m, &x, &q);
    /* Extreme but finite stored values may overflow the margin: refused. */
    FZ_ASSERT(rc == 0 || rc == RK_EINVAL);
    FZ_ASSERT(rc != 0 || (q >= 0 && q <= 1));
    rk_buf a, b;
    rk_buf_init(&a, 0);
    rk_buf_init(&b, 0);
    rc = rk_fm_save(m, &a, &err);
    FZ_ASSERT(rc == 0 || rc == RK_ENOMEM);
    if (rc == 0 && rk_fm_load(&m2, a.data, a.len, &err) == 0 &&
        rk_fm_save(m2, &b, &err) == 0)
        same_bytes(&a, &b);
    rc = rk_fm_update(m, &x, 0.0f, 1.0f, &q);
    FZ_ASSERT(rc == 0 || rc == RK_EINVAL);
    rk_fm_destroy(m);
    rk_fm_destroy(m2);
    rk_buf_free(&a);
    rk_buf_free(&b);
}

static void try_calib(const unsigned char *p, size_t n)
{
    rk_calib *c = NULL, *c2 = NULL;
    rk_err err = {0};
    int rc = rk_calib_load(&c, p, n, &err);
    if (rc) {
        check_failure(rc, c, &err);
        return;
    }
    float prev = -1;
    for (int i = 0; i <= 64; i++) {
        float v = rk_calib_apply(c, (float)i / 64);
        /* Every chain is monotone in the score and stays in [0, 1]. */
        FZ_ASSERT(v >= 0 && v <= 1);
        rk_calib_params prm;
        rk_calib_get_params(c, &prm);
        double a, b;
        rk_calib_platt_coef(c, &a, &b);
        if (prm.method != RK_CALIB_PLATT || a >= 0) FZ_ASSERT(v >= prev);
        prev = v;
    }
    rk_buf a, b;
    rk_buf_init(&a, 0);
    rk_buf_init(&b, 0);
    rc = rk_calib_save(c, &a, &err);
    FZ_ASSERT(rc == 0 || rc == RK_ENOMEM);
    if (rc == 0 && rk_calib_load(&c2, a.data, a.len, &err) == 0 &&
        rk_calib_save(c2, &b, &err) == 0)
        same_bytes(&a, &b);
    rk_calib_destroy(c);
    rk_calib_destroy(c2);
    rk_buf_free(&a);
    rk_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_mem_set_limit((size_t)64 << 20);
    rk_mem_stats before, after;
    rk_mem_get_stats(&before);
    /* An exact-size copy, so reading past the input is caught. */
    unsigned char *buf = malloc(size ? size : 1);
    FZ_ASSERT(buf);
    for (int pass = 0; pass < 2; pass++) {
        memcpy(buf, data, size);
        if (pass) {
            if (size < 16) break;
            rk_put_u64(buf + size - 8, rk_hash64(buf, size - 8, 0));
        }
        try_ftrl(buf, size);
        try_fm(buf, size);
        try_calib(buf, size);
    }
    free(buf);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    return 0;
}
