/*
 * kernels_ref.c — plain C reference versions of the ANN distance kernels.
 *
 * These define the results every other implementation is tested against
 * (within a floating-point tolerance: SIMD versions sum in another order)
 * and are what runs on CPUs without AVX2 or under RK_KERNELS=ref. They are
 * written to be obviously right, not fast; the compiler may vectorize them
 * for the baseline ISA.
 */
#include <math.h>

#include "retrieval/ann_int.h"

static float ref_dot_f32(const float *a, const float *b, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float ref_dot_f32_i8(const float *q, const int8_t *x, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++) s += q[i] * (float)x[i];
    return s;
}

static void ref_dot_f32_rows(const float *q, const float *x, size_t n,
                             size_t m, float *out)
{
    for (size_t j = 0; j < m; j++) out[j] = ref_dot_f32(q, x + j * n, n);
}

static size_t ref_above(const float *s, size_t n, float thr, uint32_t *out)
{
    size_t c = 0;
    for (size_t j = 0; j < n; j++)
        if (s[j] > thr) out[c++] = (uint32_t)j;
    return c;
}

const rk__ann_kernels rk__ann_kernels_ref = {
    .name = "ref",
    .dot_f32 = ref_dot_f32,
    .dot_f32_i8 = ref_dot_f32_i8,
    .dot_f32_rows = ref_dot_f32_rows,
    .above = ref_above,
};

float rk__ann_quantize_i8(const float *x, size_t n, int8_t *codes)
{
    float amax = 0;
    for (size_t i = 0; i < n; i++) {
        float v = fabsf(x[i]);
        if (v > amax) amax = v;
    }
    if (!(amax > 0)) {
        for (size_t i = 0; i < n; i++) codes[i] = 0;
        return 0;
    }
    /* Symmetric: the largest component maps to +-127 and zero stays exact.
     * -128 is never produced, so negating a code cannot overflow. */
    float scale = amax / 127.0f, inv = 127.0f / amax;
    for (size_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * inv);
        if (v > 127) v = 127;
        if (v < -127) v = -127;
        codes[i] = (int8_t)v;
    }
    return scale;
}
