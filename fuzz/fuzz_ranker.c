/*
 * fuzz_ranker.c — libFuzzer target for ranker payloads (rk_ranker_load:
 * header fields, part lengths, the embedded GBDT/FTRL/FM and calibration
 * formats, the linear models' input transform, the feature spec bytes).
 *
 * Whatever loads must then predict a few vectors of the widths its header
 * promises without a sanitizer report, and nothing may leak. Seeds in
 * fuzz/corpus/ranker/ are small FTRL, FM and GBDT rankers and broken
 * copies of them.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_mem_stats ms;
    rk_mem_get_stats(&ms);
    size_t before = ms.in_use;
    rk_err err = {0};
    rk_ranker *r = NULL;
    if (rk_ranker_load(&r, data, size, &err) == 0) {
        /* The header's widths sit at fixed offsets (rk_train.h). */
        uint32_t nd, hb;
        memcpy(&nd, data + 20, 4);
        memcpy(&hb, data + 24, 4);
        rk_fvec x = {0};
        if (rk_fvec_reset(&x, nd) == 0) {
            for (uint32_t j = 0; j < nd; j++) x.dense[j] = j % 3 ? (float)j : NAN;
            (void)rk_fvec_push(&x, 0, 1.0f);
            (void)rk_fvec_push(&x, (1u << hb) - 1, 2.0f);
            float p[1];
            int rc = rk_ranker_predict(r, &x, 1, p, &err);
            if (rc == 0 && rk_ranker_get_task(r) == RK_TASK_BINARY && !(p[0] >= 0 && p[0] <= 1)) {
                fprintf(stderr, "prediction %g outside [0, 1]\n", (double)p[0]);
                abort();
            }
        }
        rk_fvec_free(&x);
        rk_ranker_destroy(r);
    }
    rk_mem_get_stats(&ms);
    if (ms.in_use != before) {
        fprintf(stderr, "leak: %zu bytes\n", ms.in_use - before);
        abort();
    }
    return 0;
}
