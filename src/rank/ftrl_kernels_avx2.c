/*
 * ftrl_kernels_avx2.c — AVX2 versions of the FTRL kernels.
 *
 * The update works on eight coordinates at once: it loads their eight
 * 16-byte records (z, s, w, mark), transposes them into one vector per
 * field, does the step, transposes back and stores. The arithmetic is the
 * reference's, operation for operation (sqrt and division are correctly
 * rounded, and the file is compiled for AVX2 without FMA so no multiply-add
 * is ever fused), which makes the two kernels agree to the bit and the
 * trained model independent of the CPU. The mark field only travels
 * through shuffles, which move bits without interpreting them.
 *
 * The dot product gathers the cached weights; it sums in another order
 * than the reference and so agrees only within rounding.
 */
#include "rank/ftrl_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define RK_AVX2 __attribute__((target("avx2")))

RK_AVX2 static inline float hsum(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

RK_AVX2 static float avx2_dot(const rk__ftrl_rec *st, const uint32_t *idx,
                              const float *val, uint32_t n)
{
    /* Record i's weight sits 16 i bytes after st[0].w: gather with index
     * 2 i and scale 8, which stays below 2^31 for i < 2^30. */
    const float *wb = &st[0].w;
    __m256 acc = _mm256_setzero_ps();
    uint32_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256i vi = _mm256_loadu_si256((const __m256i *)(const void *)(idx + k));
        __m256 w = _mm256_i32gather_ps(wb, _mm256_slli_epi32(vi, 1), 8);
        acc = val ? _mm256_add_ps(acc, _mm256_mul_ps(w, _mm256_loadu_ps(val + k)))
                  : _mm256_add_ps(acc, w);
    }
    float s = hsum(acc);
    for (; k < n; k++) s += st[idx[k]].w * (val ? val[k] : 1.0f);
    return s;
}

RK_AVX2 static inline __m256 load2(const rk__ftrl_rec *a, const rk__ftrl_rec *b)
{
    return _mm256_insertf128_ps(
        _mm256_castps128_ps256(_mm_loadu_ps((const float *)(const void *)a)),
        _mm_loadu_ps((const float *)(const void *)b), 1);
}

RK_AVX2 static inline void store2(rk__ftrl_rec *a, rk__ftrl_rec *b, __m256 v)
{
    _mm_storeu_ps((float *)(void *)a, _mm256_castps256_ps128(v));
    _mm_storeu_ps((float *)(void *)b, _mm256_extractf128_ps(v, 1));
}

/* rk__ftrl_step on eight records at once, with gradients g (lane j of g
 * for record r[j]). The records must be distinct. Forced inline: as a call
 * it costs a 32-byte-aligned frame per group of eight. */
#define RK_INLINE __attribute__((always_inline)) inline
RK_AVX2 static RK_INLINE void step8(rk__ftrl_rec *const r[8], __m256 g,
                                    const rk__ftrl_hp *hp)
{
    const __m256 inv_a = _mm256_set1_ps(hp->inv_alpha);
    const __m256 beta = _mm256_set1_ps(hp->beta), l1 = _mm256_set1_ps(hp->l1);
    const __m256 l2 = _mm256_set1_ps(hp->l2), fmin = _mm256_set1_ps(FLT_MIN);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    /* Lane j of the low half holds record j, of the high half j + 4. */
    __m256 a0 = load2(r[0], r[4]), a1 = load2(r[1], r[5]);
    __m256 a2 = load2(r[2], r[6]), a3 = load2(r[3], r[7]);
    __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpacklo_ps(a2, a3);
    __m256 t2 = _mm256_unpackhi_ps(a0, a1), t3 = _mm256_unpackhi_ps(a2, a3);
    __m256 z = _mm256_shuffle_ps(t0, t1, 0x44);
    __m256 s = _mm256_shuffle_ps(t0, t1, 0xee);
    __m256 w = _mm256_shuffle_ps(t2, t3, 0x44);
    __m256 mk = _mm256_shuffle_ps(t2, t3, 0xee);

    __m256 gg = _mm256_mul_ps(g, g);
    __m256 s1 = _mm256_sqrt_ps(_mm256_add_ps(_mm256_mul_ps(s, s), gg));
    __m256 sigma = _mm256_mul_ps(
        _mm256_div_ps(gg, _mm256_add_ps(_mm256_add_ps(s1, s), fmin)), inv_a);
    z = _mm256_add_ps(z, _mm256_sub_ps(g, _mm256_mul_ps(sigma, w)));
    /* rk__ftrl_weight: -copysign(|z| - l1, z) / den where |z| > l1. */
    __m256 a = _mm256_andnot_ps(sign, z);
    __m256 num = _mm256_or_ps(_mm256_sub_ps(a, l1), _mm256_and_ps(z, sign));
    __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(beta, s1), inv_a), l2);
    w = _mm256_div_ps(_mm256_xor_ps(num, sign), den);
    w = _mm256_and_ps(w, _mm256_cmp_ps(a, l1, _CMP_GT_OQ));

    __m256 u0 = _mm256_unpacklo_ps(z, s1), u1 = _mm256_unpackhi_ps(z, s1);
    __m256 u2 = _mm256_unpacklo_ps(w, mk), u3 = _mm256_unpackhi_ps(w, mk);
    store2(r[0], r[4], _mm256_shuffle_ps(u0, u2, 0x44));
    store2(r[1], r[5], _mm256_shuffle_ps(u0, u2, 0xee));
    store2(r[2], r[6], _mm256_shuffle_ps(u1, u3, 0x44));
    store2(r[3], r[7], _mm256_shuffle_ps(u1, u3, 0xee));
}

RK_AVX2 static void avx2_update(rk__ftrl_rec *st, const uint32_t *idx,
                                const float *val, uint32_t n, float gs,
                                const rk__ftrl_hp *hp)
{
    const __m256 vgs = _mm256_set1_ps(gs);
    rk__ftrl_rec *r[8];
    uint32_t k = 0;
    for (; k + 8 <= n; k += 8) {
        for (int j = 0; j < 8; j++) r[j] = st + idx[k + j];
        step8(r, val ? _mm256_mul_ps(vgs, _mm256_loadu_ps(val + k)) : vgs, hp);
    }
    /* The last 0..7 coordinates take the scalar step, which computes the
     * same bits. (Padding them into one more vector step with scratch
     * records measured slower.) */
    for (; k < n; k++) rk__ftrl_step(&st[idx[k]], val ? gs * val[k] : gs, hp);
}

int rk__ftrl_kernels_avx2(rk__ftrl_kernels *k)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return RK_EUNSUPPORTED;
    k->name = "avx2";
    k->dot = avx2_dot;
    k->update = avx2_update;
    return 0;
}

#else

int rk__ftrl_kernels_avx2(rk__ftrl_kernels *k)
{
    (void)k;
    return RK_EUNSUPPORTED;
}

#endif
