/*
 * factor_kernels_avx2.c — AVX2/FMA versions of the factor-model kernels.
 *
 * Compiled for every x86-64 build through target attributes (the rest of
 * the tree stays baseline x86-64) and used only after the CPU reports AVX2
 * and FMA. Both kernels keep enough independent accumulators in flight to
 * cover the FMA latency (4 cycles, 2 per cycle): dots keeps a column block
 * of p in registers and reduces four rows at once, axpys keeps a 64-column
 * block of the output in eight registers while it streams the rows.
 * Results differ from the reference only by summation order.
 */
#include <math.h>

#include "factor_int.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define RK_AVX2 __attribute__((target("avx2,fma")))

RK_AVX2 static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four rows at a time against a 64- (then 32-) column block of p held in
 * registers;
 * each row has one accumulator chain, and consecutive groups of rows are
 * independent, so out-of-order execution overlaps them to cover the FMA
 * latency. Blocks after the first add into t. */
RK_AVX2 static void avx2_dots(const float *Y, size_t n, size_t k, size_t ld,
                              const float *p, float *t)
{
    size_t c0 = 0;
    for (; c0 + 64 <= k; c0 += 64) {
        const float *q = p + c0;
        __m256 p0 = _mm256_loadu_ps(q), p1 = _mm256_loadu_ps(q + 8);
        __m256 p2 = _mm256_loadu_ps(q + 16), p3 = _mm256_loadu_ps(q + 24);
        __m256 p4 = _mm256_loadu_ps(q + 32), p5 = _mm256_loadu_ps(q + 40);
        __m256 p6 = _mm256_loadu_ps(q + 48), p7 = _mm256_loadu_ps(q + 56);
#define ROW64(acc, y)                                                      \
    acc = _mm256_mul_ps(_mm256_loadu_ps(y), p0);                           \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 8), p1, acc);              \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 16), p2, acc);             \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 24), p3, acc);             \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 32), p4, acc);             \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 40), p5, acc);             \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 48), p6, acc);             \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 56), p7, acc)
        size_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float *y0 = Y + j * ld + c0;
            __m256 a0, a1, a2, a3;
            ROW64(a0, y0);
            ROW64(a1, y0 + ld);
            ROW64(a2, y0 + 2 * ld);
            ROW64(a3, y0 + 3 * ld);
            /* After the three hadds each 128-bit lane holds one partial
             * sum per row; adding the lanes gives the four dots. */
            __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            if (c0) r = _mm_add_ps(r, _mm_loadu_ps(t + j));
            _mm_storeu_ps(t + j, r);
        }
        for (; j < n; j++) {
            __m256 a0;
            ROW64(a0, Y + j * ld + c0);
            float v = hsum(a0);
            t[j] = c0 ? t[j] + v : v;
        }
#undef ROW64
    }
    if (c0 + 32 <= k) {
        const float *q = p + c0;
        __m256 p0 = _mm256_loadu_ps(q), p1 = _mm256_loadu_ps(q + 8);
        __m256 p2 = _mm256_loadu_ps(q + 16), p3 = _mm256_loadu_ps(q + 24);
#define ROW32(acc, y)                                                      \
    acc = _mm256_mul_ps(_mm256_loadu_ps(y), p0);                           \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 8), p1, acc);              \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 16), p2, acc);             \
    acc = _mm256_fmadd_ps(_mm256_loadu_ps((y) + 24), p3, acc)
        size_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float *y0 = Y + j * ld + c0;
            __m256 a0, a1, a2, a3;
            ROW32(a0, y0);
            ROW32(a1, y0 + ld);
            ROW32(a2, y0 + 2 * ld);
            ROW32(a3, y0 + 3 * ld);
            __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            if (c0) r = _mm_add_ps(r, _mm_loadu_ps(t + j));
            _mm_storeu_ps(t + j, r);
        }
        for (; j < n; j++) {
            __m256 a0;
            ROW32(a0, Y + j * ld + c0);
            float v = hsum(a0);
            t[j] = c0 ? t[j] + v : v;
        }
#undef ROW32
        c0 += 32;
    }
    if (c0 == k) return;
    /* Columns past the last 32-block (all of them when k < 32). */
    const size_t k8 = c0 + ((k - c0) & ~(size_t)7);
    for (size_t j = 0; j < n; j++) {
        const float *y = Y + j * ld;
        __m256 a = _mm256_setzero_ps(), b = a;
        size_t c = c0;
        for (; c + 16 <= k8; c += 16) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(y + c), _mm256_loadu_ps(p + c), a);
            b = _mm256_fmadd_ps(_mm256_loadu_ps(y + c + 8), _mm256_loadu_ps(p + c + 8), b);
        }
        if (c < k8) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(y + c), _mm256_loadu_ps(p + c), a);
            c += 8;
        }
        float o = hsum(_mm256_add_ps(a, b));
        for (; c < k; c++) o += y[c] * p[c];
        t[j] = c0 ? t[j] + o : o;
    }
}

RK_AVX2 static void avx2_axpys(const float *Y, size_t n, size_t k,
                               size_t ld, const float *s, float *out)
{
    size_t c = 0;
    /* 64-column blocks: eight independent accumulator chains per row. */
    for (; c + 64 <= k; c += 64) {
        float *o = out + c;
        __m256 o0 = _mm256_loadu_ps(o), o1 = _mm256_loadu_ps(o + 8);
        __m256 o2 = _mm256_loadu_ps(o + 16), o3 = _mm256_loadu_ps(o + 24);
        __m256 o4 = _mm256_loadu_ps(o + 32), o5 = _mm256_loadu_ps(o + 40);
        __m256 o6 = _mm256_loadu_ps(o + 48), o7 = _mm256_loadu_ps(o + 56);
        const float *y = Y + c;
        for (size_t j = 0; j < n; j++, y += ld) {
            __m256 a = _mm256_broadcast_ss(s + j);
            o0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y), o0);
            o1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 8), o1);
            o2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 16), o2);
            o3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 24), o3);
            o4 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 32), o4);
            o5 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 40), o5);
            o6 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 48), o6);
            o7 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 56), o7);
        }
        _mm256_storeu_ps(o, o0);
        _mm256_storeu_ps(o + 8, o1);
        _mm256_storeu_ps(o + 16, o2);
        _mm256_storeu_ps(o + 24, o3);
        _mm256_storeu_ps(o + 32, o4);
        _mm256_storeu_ps(o + 40, o5);
        _mm256_storeu_ps(o + 48, o6);
        _mm256_storeu_ps(o + 56, o7);
    }
    /* 32-column block: two rows at a time into two accumulator sets. */
    if (c + 32 <= k) {
        float *o = out + c;
        __m256 o0 = _mm256_loadu_ps(o), o1 = _mm256_loadu_ps(o + 8);
        __m256 o2 = _mm256_loadu_ps(o + 16), o3 = _mm256_loadu_ps(o + 24);
        __m256 q0 = _mm256_setzero_ps(), q1 = q0, q2 = q0, q3 = q0;
        const float *y = Y + c;
        size_t j = 0;
        for (; j + 2 <= n; j += 2, y += 2 * ld) {
            __m256 a = _mm256_broadcast_ss(s + j), b = _mm256_broadcast_ss(s + j + 1);
            o0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y), o0);
            o1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 8), o1);
            o2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 16), o2);
            o3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 24), o3);
            q0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(y + ld), q0);
            q1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(y + ld + 8), q1);
            q2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(y + ld + 16), q2);
            q3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(y + ld + 24), q3);
        }
        if (j < n) {
            __m256 a = _mm256_broadcast_ss(s + j);
            o0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y), o0);
            o1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 8), o1);
            o2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 16), o2);
            o3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(y + 24), o3);
        }
        _mm256_storeu_ps(o, _mm256_add_ps(o0, q0));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(o1, q1));
        _mm256_storeu_ps(o + 16, _mm256_add_ps(o2, q2));
        _mm256_storeu_ps(o + 24, _mm256_add_ps(o3, q3));
        c += 32;
    }
    /* Remaining 8-column vectors, four rows in flight. */
    for (; c + 8 <= k; c += 8) {
        __m256 o0 = _mm256_loadu_ps(out + c), o1 = _mm256_setzero_ps();
        __m256 o2 = o1, o3 = o1;
        const float *y = Y + c;
        size_t j = 0;
        for (; j + 4 <= n; j += 4, y += 4 * ld) {
            o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + j), _mm256_loadu_ps(y), o0);
            o1 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + j + 1), _mm256_loadu_ps(y + ld), o1);
            o2 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + j + 2), _mm256_loadu_ps(y + 2 * ld), o2);
            o3 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + j + 3), _mm256_loadu_ps(y + 3 * ld), o3);
        }
        for (; j < n; j++, y += ld)
            o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + j), _mm256_loadu_ps(y), o0);
        _mm256_storeu_ps(out + c, _mm256_add_ps(_mm256_add_ps(o0, o1), _mm256_add_ps(o2, o3)));
    }
    /* Columns past the last full vector. */
    for (; c < k; c++) {
        float a = out[c];
        for (size_t j = 0; j < n; j++) a += s[j] * Y[j * ld + c];
        out[c] = a;
    }
}

/* dst[l] -= a * src[l] + b * src2[l] for l in [from, k), four doubles at a
 * time; the scalar head aligns nothing, it only covers what the vectors
 * cannot (loads are unaligned). */
RK_AVX2 static inline void axpy2d(double *dst, const double *s1, double a,
                                  const double *s2, double b, size_t from,
                                  size_t k)
{
    __m256d va = _mm256_set1_pd(a), vb = _mm256_set1_pd(b);
    size_t l = from;
    for (; l + 4 <= k; l += 4) {
        __m256d d = _mm256_loadu_pd(dst + l);
        d = _mm256_fnmadd_pd(va, _mm256_loadu_pd(s1 + l), d);
        d = _mm256_fnmadd_pd(vb, _mm256_loadu_pd(s2 + l), d);
        _mm256_storeu_pd(dst + l, d);
    }
    for (; l < k; l++) dst[l] -= a * s1[l] + b * s2[l];
}

RK_AVX2 static inline void axpy1d(double *dst, const double *s1, double a,
                                  size_t from, size_t k)
{
    __m256d va = _mm256_set1_pd(a);
    size_t l = from;
    for (; l + 4 <= k; l += 4)
        _mm256_storeu_pd(dst + l, _mm256_fnmadd_pd(va, _mm256_loadu_pd(s1 + l),
                                                   _mm256_loadu_pd(dst + l)));
    for (; l < k; l++) dst[l] -= a * s1[l];
}

/* The reference's right-looking Cholesky, two pivots at a time: the
 * trailing rows take a rank-2 update, so each element of A is loaded and
 * stored once per two pivots instead of once per pivot. */
RK_AVX2 static int avx2_cholsolve(double *A, size_t k, double *b)
{
    size_t j = 0;
    for (; j < k; j += 2) {
        double *U0 = A + j * k;
        if (!(U0[j] > 0)) return -1;
        double u = sqrt(U0[j]), inv = 1.0 / u;
        U0[j] = u;
        for (size_t l = j + 1; l < k; l++) U0[l] *= inv;
        if (j + 1 == k) break;
        /* Row j+1 first receives the update of pivot j, then becomes U. */
        double *U1 = A + (j + 1) * k;
        axpy1d(U1, U0, U0[j + 1], j + 1, k);
        if (!(U1[j + 1] > 0)) return -1;
        u = sqrt(U1[j + 1]);
        inv = 1.0 / u;
        U1[j + 1] = u;
        for (size_t l = j + 2; l < k; l++) U1[l] *= inv;
        for (size_t i = j + 2; i < k; i++)
            axpy2d(A + i * k, U0, U0[i], U1, U1[i], i, k);
    }
    for (j = 0; j < k; j++) {
        const double *Uj = A + j * k;
        b[j] /= Uj[j];
        axpy1d(b, Uj, b[j], j + 1, k);
    }
    for (size_t i = k; i-- > 0;) {
        const double *Ui = A + i * k;
        __m256d acc = _mm256_setzero_pd();
        size_t l = i + 1;
        for (; l + 4 <= k; l += 4)
            acc = _mm256_fmadd_pd(_mm256_loadu_pd(Ui + l), _mm256_loadu_pd(b + l), acc);
        __m128d h = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
        double s = b[i] - _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
        for (; l < k; l++) s -= Ui[l] * b[l];
        b[i] = s / Ui[i];
    }
    return 0;
}

int rk__fk_avx2(rk__fk *t)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return RK_EUNSUPPORTED;
    t->name = "avx2";
    t->dots = avx2_dots;
    t->axpys = avx2_axpys;
    t->cholsolve = avx2_cholsolve;
    return 0;
}

#else

int rk__fk_avx2(rk__fk *t)
{
    (void)t;
    return RK_EUNSUPPORTED;
}

#endif
