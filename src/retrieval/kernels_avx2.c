/*
 * kernels_avx2.c — AVX2/FMA versions of the ANN distance kernels.
 *
 * Each function carries __attribute__((target("avx2,fma"))), so only this
 * file's code uses those instructions and the rest of the build stays
 * generic; kernels.c calls them only after checking the CPU. Loads are
 * unaligned (vectors of a mapped file or a caller's buffer have no
 * alignment promise beyond 4 bytes). Four independent accumulators hide
 * the FMA latency; tails shorter than 8 go through a scalar loop.
 */
#include <immintrin.h>

#include "retrieval/ann_int.h"

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 static float avx2_dot_f32(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                             _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16),
                             _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24),
                             _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1),
                                    _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Sign-extends 8 codes to 8 floats. */
AVX2 static inline __m256 load_i8x8(const int8_t *x)
{
    __m128i c = _mm_loadl_epi64((const __m128i *)(const void *)x);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c));
}

AVX2 static float avx2_dot_f32_i8(const float *q, const int8_t *x, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_i8x8(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_i8x8(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16),
                             load_i8x8(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24),
                             load_i8x8(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_i8x8(x + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1),
                                    _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += q[i] * (float)x[i];
    return s;
}

/* Four rows at a time share each load of the query. */
AVX2 static void avx2_dot_f32_rows(const float *q, const float *x, size_t n,
                                   size_t m, float *out)
{
    size_t j = 0;
    for (; j + 4 <= m; j += 4) {
        const float *r0 = x + j * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            s0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r0 + i), s0);
            s1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r1 + i), s1);
            s2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r2 + i), s2);
            s3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r3 + i), s3);
        }
        float t0 = hsum256(s0), t1 = hsum256(s1), t2 = hsum256(s2),
              t3 = hsum256(s3);
        for (; i < n; i++) {
            t0 += q[i] * r0[i];
            t1 += q[i] * r1[i];
            t2 += q[i] * r2[i];
            t3 += q[i] * r3[i];
        }
        out[j] = t0;
        out[j + 1] = t1;
        out[j + 2] = t2;
        out[j + 3] = t3;
    }
    for (; j < m; j++) out[j] = avx2_dot_f32(q, x + j * n, n);
}

/* Eight comparisons per step; almost every step finds nothing above the
 * bar, so the cost is a compare and a test per 8 scores. */
AVX2 static size_t avx2_above(const float *s, size_t n, float thr, uint32_t *out)
{
    __m256 t = _mm256_set1_ps(thr);
    size_t c = 0, j = 0;
    for (; j + 8 <= n; j += 8) {
        unsigned m = (unsigned)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_loadu_ps(s + j), t, _CMP_GT_OQ));
        while (m) {
            out[c++] = (uint32_t)(j + (unsigned)__builtin_ctz(m));
            m &= m - 1;
        }
    }
    for (; j < n; j++)
        if (s[j] > thr) out[c++] = (uint32_t)j;
    return c;
}

const rk__ann_kernels rk__ann_kernels_avx2 = {
    .name = "avx2",
    .dot_f32 = avx2_dot_f32,
    .dot_f32_i8 = avx2_dot_f32_i8,
    .dot_f32_rows = avx2_dot_f32_rows,
    .above = avx2_above,
};
