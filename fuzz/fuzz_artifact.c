/*
 * fuzz_artifact.c — libFuzzer target for the model registry's readers:
 * model artifacts (rk_artifact_parse), meta.json (rk_model_meta_parse),
 * reference histograms (rk_refhist_parse) and registry.json
 * (rk__reg_state_parse). Every input goes to all four; JSON inputs stop
 * at the artifact's magic and artifacts at the JSON syntax, so one corpus
 * serves them all.
 *
 * An artifact is also tried with its trailing checksum recomputed, so
 * mutations of the header reach the version and length checks behind it.
 * Whatever parses must write back out and parse again to the same text
 * (a fixed point after one round), and nothing may leak. Seeds in
 * fuzz/corpus/artifact/ come from registry_test's fuzz_seeds case
 * (RK_ARTIFACT_WRITE_CORPUS=dir).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_train.h"
#include "train/train_int.h"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void artifact(const uint8_t *data, size_t size)
{
    rk_artifact a;
    rk_err err = {0};
    int rc = rk_artifact_parse(data, size, "fuzz.rk", &a, &err);
    if (rc) {
        FZ_ASSERT(rc == RK_ECORRUPT || rc == RK_EVERSION);
        FZ_ASSERT(strncmp(err.msg, "fuzz.rk: ", 9) == 0);
        FZ_ASSERT(a.payload == NULL && a.len == 0);
        return;
    }
    FZ_ASSERT(a.version == RK_ARTIFACT_VERSION);
    FZ_ASSERT(a.len + RK_ARTIFACT_HEADER + RK_ARTIFACT_TRAILER == size);
    /* Re-encoding the payload gives the input back. */
    rk_buf b;
    rk_buf_init(&b, 0);
    FZ_ASSERT(rk_artifact_encode((rk_model_kind)a.kind, a.payload, a.len, &b) == 0);
    FZ_ASSERT(b.len == size && memcmp(b.data, data, size) == 0);
    rk_buf_free(&b);
}

static void artifact_fixed_sum(const uint8_t *data, size_t size)
{
    if (size < RK_ARTIFACT_TRAILER) return;
    uint8_t *copy = malloc(size);
    FZ_ASSERT(copy);
    memcpy(copy, data, size);
    uint64_t sum = rk_hash64(copy, size - RK_ARTIFACT_TRAILER, 0);
    for (int i = 0; i < 8; i++)
        copy[size - RK_ARTIFACT_TRAILER + i] = (uint8_t)(sum >> (8 * i));
    artifact(copy, size);
    free(copy);
}

static void meta(const uint8_t *data, size_t size)
{
    rk_model_meta m, m2;
    rk_err err = {0};
    if (rk_model_meta_parse(&m, (const char *)data, size, &err)) {
        FZ_ASSERT(m.owned == NULL && err.msg[0]);
        return;
    }
    rk_buf b1, b2;
    rk_buf_init(&b1, 0);
    rk_buf_init(&b2, 0);
    FZ_ASSERT(rk_model_meta_json(&m, &b1, &err) == 0);
    if (rk_model_meta_parse(&m2, b1.data, b1.len, &err) != 0) {
        fprintf(stderr, "meta written back does not parse: %s\n%s\n", err.msg,
                b1.data);
        abort();
    }
    FZ_ASSERT(rk_model_meta_json(&m2, &b2, &err) == 0);
    FZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    /* Whatever was read answers lookups without reading past arrays. */
    for (size_t i = 0; i < m.nmetrics; i++)
        FZ_ASSERT(rk_model_meta_metric(&m, m.metrics[i].name) != NULL);
    rk_model_meta_free(&m2);
    rk_model_meta_free(&m);
    rk_buf_free(&b1);
    rk_buf_free(&b2);
}

static void refhist(const uint8_t *data, size_t size)
{
    rk_refhist *h;
    rk_err err = {0};
    if (rk_refhist_parse(&h, (const char *)data, size, &err)) {
        FZ_ASSERT(h == NULL);
        return;
    }
    /* The bins a monitor would use are consistent with the edges. */
    if (h->kind == RK_REFHIST_NUMERIC) {
        FZ_ASSERT(h->nbins >= 1);
        for (uint32_t i = 0; i + 1 < h->nbins; i++)
            FZ_ASSERT(rk_refhist_bin(h, h->edges[i]) == i + 1);
        FZ_ASSERT(rk_refhist_bin(h, -1e308) == 0);
    }
    rk_buf b1, b2;
    rk_buf_init(&b1, 0);
    rk_buf_init(&b2, 0);
    FZ_ASSERT(rk_refhist_json(h, &b1) == 0);
    rk_refhist *h2;
    if (rk_refhist_parse(&h2, b1.data, b1.len, &err) != 0) {
        fprintf(stderr, "histogram written back does not parse: %s\n%s\n",
                err.msg, b1.data);
        abort();
    }
    FZ_ASSERT(rk_refhist_json(h2, &b2) == 0);
    FZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    rk_refhist_free(h2);
    rk_refhist_free(h);
    rk_buf_free(&b1);
    rk_buf_free(&b2);
}

static void state(const uint8_t *data, size_t size)
{
    rk__reg_state st, st2;
    rk_err err = {0};
    if (rk__reg_state_parse(&st, (const char *)data, size, &err)) {
        FZ_ASSERT(st.stack == NULL && st.hist == NULL);
        return;
    }
    rk_buf b1, b2;
    rk_buf_init(&b1, 0);
    rk_buf_init(&b2, 0);
    FZ_ASSERT(rk__reg_state_json(&st, &b1) == 0);
    if (rk__reg_state_parse(&st2, b1.data, b1.len, &err) != 0) {
        fprintf(stderr, "state written back does not parse: %s\n%s\n", err.msg,
                b1.data);
        abort();
    }
    FZ_ASSERT(rk__reg_state_json(&st2, &b2) == 0);
    FZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    rk__reg_state_free(&st2);
    rk__reg_state_free(&st);
    rk_buf_free(&b1);
    rk_buf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int hooked;
    if (!hooked) {
        rk_mem_hook_libraries();
        hooked = 1;
    }
    rk_mem_stats before, after;
    rk_mem_get_stats(&before);
    artifact(data, size);
    artifact_fixed_sum(data, size);
    meta(data, size);
    refhist(data, size);
    state(data, size);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    return 0;
}
