/*
 * fuzz_ann_load.c — libFuzzer target for ANN index files (rk_ann_load's
 * image checks: header, checksums, section table, structure).
 *
 * Each input is opened twice: as it is, which almost always stops at a
 * checksum, and with its checksums recomputed, so mutations reach the
 * structural checks behind them (ranges, link targets, levels, labels,
 * vectors). Whatever opens must then survive searches, a delete and, for
 * small capacities, a heap copy that takes inserts: a structural check
 * that lets a bad graph through shows up here as a sanitizer report.
 * Nothing may leak: rk_malloc's bytes in use must be back where they
 * started. Seeds in fuzz/corpus/ann_load/ are written by ann_test's
 * fuzz_seeds case (RK_ANN_WRITE_CORPUS=dir).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retrieval/ann_int.h"
#include "rk_retrieval.h"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Searches with a few fixed queries; results must be live labels. */
static void exercise(rk_ann *a)
{
    rk_ann_params p;
    rk_ann_get_params(a, &p);
    float *q = calloc(p.dim, sizeof *q);
    FZ_ASSERT(q);
    uint32_t lab[16], n = 0;
    float sc[16];
    for (int t = 0; t < 3; t++) {
        for (uint32_t i = 0; i < p.dim; i++) q[i] = (float)((int)((i * 7 + t) % 5) - 2);
        int rc = rk_ann_search(a, q, 16, t == 2 ? 1 : 0, lab, sc, &n);
        FZ_ASSERT(rc == 0 || rc == RK_ENOMEM);
        FZ_ASSERT(n <= 16 && n <= rk_ann_size(a));
        for (uint32_t i = 0; rc == 0 && i < n; i++) FZ_ASSERT(rk_ann_contains(a, lab[i]));
    }
    if (n > 0) {
        FZ_ASSERT(rk_ann_delete(a, lab[0]) == 0);
        FZ_ASSERT(!rk_ann_contains(a, lab[0]));
        rk_ann_search(a, q, 16, 0, lab, sc, &n);
    }
    free(q);
}

static void open_one(const unsigned char *buf, size_t size)
{
    rk_ann *a = NULL;
    rk_err err = {0};
    int rc = rk__ann_open_image(&a, buf, size, "fuzz.ann", 0, &err);
    if (rc != 0) {
        FZ_ASSERT(a == NULL);
        FZ_ASSERT(err.code == rc && err.msg[0]);
        FZ_ASSERT(strncmp(err.msg, "fuzz.ann: ", 10) == 0);
        return;
    }
    exercise(a);
    rk_ann_params p;
    rk_ann_get_params(a, &p);
    rk_ann_destroy(a);
    /* The copy allocates the saved capacity: only for small ones. */
    if (p.max_elements > 4096) return;
    a = NULL;
    rc = rk__ann_open_image(&a, buf, size, "fuzz.ann", RK_ANN_LOAD_COPY, &err);
    FZ_ASSERT(rc == 0 || rc == RK_ENOMEM);
    if (rc) return;
    float *v = calloc(p.dim, sizeof *v);
    FZ_ASSERT(v);
    v[0] = 1;
    rc = rk_ann_add(a, 12345, v, &err);
    FZ_ASSERT(rc == 0 || rc == RK_ELIMIT);
    exercise(a);
    free(v);
    rk_ann_destroy(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_mem_stats before, after;
    rk_mem_get_stats(&before);
    /* Images must be 64-byte aligned, like a mapping. */
    unsigned char *buf = aligned_alloc(64, (size + 63) / 64 * 64 + 64);
    FZ_ASSERT(buf);
    for (int pass = 0; pass < 2; pass++) {
        memcpy(buf, data, size);
        if (pass) rk__ann_fix_checksums(buf, size);
        open_one(buf, size);
    }
    free(buf);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    return 0;
}
