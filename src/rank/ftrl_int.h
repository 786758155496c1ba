/*
 * ftrl_int.h — internals of the linear and factorization models
 * (ftrl.c, ftrl_kernels_*.c, fm.c) and the byte-format helpers that the
 * FTRL, FM and calibration files share (calib.c).
 *
 * FTRL state is one 16-byte record per coordinate: z, s = sqrt(n), the
 * weight w cached as a function of (z, s), and a scratch word that update
 * uses to spot repeated coordinates. Caching w is exact, not an
 * approximation: w_i only changes when z_i or n_i do, which is exactly when
 * the update kernel rewrites the record. Keeping sqrt(n) instead of n
 * saves a square root per coordinate, and with the step
 *     sigma = (sqrt(n + g^2) - sqrt(n)) / alpha = g^2 / (s' + s) / alpha
 * it also avoids the cancellation the first form suffers in float once n
 * is large and g small.
 *
 * Kernels: a table filled with the plain C reference and overridden with
 * AVX2 after CPU detection; RK_KERNELS=ref|scalar (reference), avx2 or auto
 * forces a path. The AVX2 update does the reference's operations in the
 * same order without FMA contraction, so both give identical bits; only
 * the predict dot product sums in another order.
 */
#ifndef RK_FTRL_INT_H
#define RK_FTRL_INT_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rk_core.h"
#include "rk_rank.h"

/* ---- FTRL state and kernels ---------------------------------------------- */

typedef struct rk__ftrl_rec {
    float z;       /* sum of adjusted gradients */
    float s;       /* sqrt(n): root of the sum of squared gradients */
    float w;       /* weight, always rk__ftrl_weight(z, s) */
    uint32_t mark; /* update's tick of the last example that touched it */
} rk__ftrl_rec;

/* Hyper-parameters in the form the kernels use. */
typedef struct rk__ftrl_hp {
    float inv_alpha, beta, l1, l2;
} rk__ftrl_hp;

/* The weight of a coordinate with state (z, s): Algorithm 1's closed form.
 * |z| - l1 taken on magnitudes equals z - sgn(z) l1 with the same rounding
 * and is what the vector kernel computes too. */
static inline float rk__ftrl_weight(float z, float s, const rk__ftrl_hp *hp)
{
    float a = fabsf(z);
    if (!(a > hp->l1)) return 0.0f;
    float num = copysignf(a - hp->l1, z);
    return -num / ((hp->beta + s) * hp->inv_alpha + hp->l2);
}

/* One coordinate's step with gradient g. FLT_MIN keeps 0/0 away when g^2
 * underflows on a fresh coordinate; it is below the rounding of any s
 * that matters. */
static inline void rk__ftrl_step(rk__ftrl_rec *r, float g,
                                 const rk__ftrl_hp *hp)
{
    float s = r->s, gg = g * g;
    float s1 = sqrtf(s * s + gg);
    float sigma = gg / ((s1 + s) + FLT_MIN) * hp->inv_alpha;
    float z = r->z + (g - sigma * r->w);
    r->z = z;
    r->s = s1;
    r->w = rk__ftrl_weight(z, s1, hp);
}

typedef struct rk__ftrl_kernels {
    const char *name; /* "ref" or "avx2" */
    /* sum_k st[idx[k]].w * val[k] (val NULL: all 1). */
    float (*dot)(const rk__ftrl_rec *st, const uint32_t *idx,
                 const float *val, uint32_t n);
    /* rk__ftrl_step on st[idx[k]] with g = gs * val[k] (val NULL: gs) for
     * every k. The indices must be distinct. */
    void (*update)(rk__ftrl_rec *st, const uint32_t *idx, const float *val,
                   uint32_t n, float gs, const rk__ftrl_hp *hp);
} rk__ftrl_kernels;

void rk__ftrl_kernels_ref(rk__ftrl_kernels *k);
/* Overrides k with the AVX2 kernels: 0, or RK_EUNSUPPORTED when the CPU or
 * the build lacks AVX2 (k unchanged). */
int rk__ftrl_kernels_avx2(rk__ftrl_kernels *k);
/* Reference, then the best the CPU has, honouring RK_KERNELS. */
int rk__ftrl_kernels_select(rk__ftrl_kernels *k, rk_err *err);

/* Test hooks: the model's kernel table and its record array. */
const rk__ftrl_kernels *rk__ftrl_kernels_of(const rk_ftrl *m);
rk__ftrl_rec *rk__ftrl_state(rk_ftrl *m);

/* e^x for |x| <= 30: x = k ln2 + r with |r| <= ln2 / 2 (ln2 split into a
 * part exact in float and a correction), e^r by its Taylor series to r^7
 * (truncation below 1e-8 relative) evaluated in Estrin's form, whose
 * dependency chain is a third of Horner's: the sigmoid sits between the
 * two passes of every update. Then scaled by 2^k through the exponent. */
static inline float rk__exp_small(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f;     /* 8 significant bits: k*hi exact */
    const float ln2_lo = -2.12194440e-4f;  /* ln2 - ln2_hi */
    const float round = 12582912.0f;       /* 1.5 * 2^23: rounds to integer */
    float k = (x * log2e + round) - round;
    float r = (x - k * ln2_hi) - k * ln2_lo;
    float r2 = r * r, r4 = r2 * r2;
    float a = 1.0f + r, b = 0.5f + r * (1.0f / 6.0f);
    float c = 1.0f / 24.0f + r * (1.0f / 120.0f);
    float d = 1.0f / 720.0f + r * (1.0f / 5040.0f);
    float q = (a + r2 * b) + r4 * (c + r2 * d);
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return q * scale;
}

/* The logistic function of a margin, within a few ulp of the exact value.
 * The margin is clamped to |m| <= 30, where the result is already 1e-13
 * from 0 or 1, which keeps the exponent in range; m must not be NaN
 * (callers reject NaN margins before they get here). Its own
 * exp is cheaper than the C library's and the same on every platform, so
 * trained bytes do not depend on the libm version. */
static inline float rk__sigmoid(float m)
{
    if (m > 30.0f) m = 30.0f;
    else if (m < -30.0f) m = -30.0f;
    return 1.0f / (1.0f + rk__exp_small(-m));
}

/* ---- sparse examples -------------------------------------------------------- */

/* Checks x against dim (index < dim, finite values): 0 or RK_EINVAL with a
 * message in err (may be NULL). */
int rk__rank_sparse_check(const rk_sparse *x, uint32_t dim, rk_err *err);

/* 1 if x repeats an index, 0 if not, RK_ENOMEM (only for n > 4096, which
 * sorts a copy). Read-only; a small bitmap on the stack filters the
 * common case. */
int rk__rank_sparse_has_dups(const rk_sparse *x);

/* Merges repeated indices of x into one entry holding the sum of values.
 * Uses ibuf/vbuf (RK__MERGE_STACK entries) when n fits, else allocates
 * *heap (freed by the caller with rk_free, NULL otherwise). out borrows
 * the buffers. RK_ENOMEM. */
#define RK__MERGE_STACK 256u
int rk__rank_sparse_merge(const rk_sparse *x, uint32_t *ibuf, float *vbuf,
                     rk_sparse *out, void **heap);

/* ---- model bytes -------------------------------------------------------------- */
/*
 * Every model file is: an 8-byte magic, u32 version, u32 header size, the
 * model's header fields, its records, and a u64 checksum = rk_hash64(all
 * bytes before it, seed 0). Numbers are little-endian whatever the host.
 * Writers reserve the exact size first so an append is all or nothing.
 */

/* Validates the frame of a model file of `what` ("FTRL model"): length at
 * least hdr_min + 8, magic, version (RK_EVERSION when newer than
 * `version`), header size == hdr_size, and the trailing checksum once the
 * caller has computed the exact expected length (expect_len, or 0 to skip
 * that step: then only magic, version and header are checked). */
int rk__rank_model_check_frame(const unsigned char *p, size_t n,
                          const char magic[8], uint32_t version,
                          uint32_t hdr_size, const char *what, rk_err *err);
int rk__rank_model_check_tail(const unsigned char *p, size_t n, size_t expect_len,
                         const char *what, rk_err *err);
/* Appends the checksum of b->data[start .. b->len) (space reserved). */
void rk__rank_model_put_checksum(rk_buf *b, size_t start);

/* A prefetch the compiler cannot drop. GCC 12 deletes a loop whose only
 * statements are __builtin_prefetch when it can count its iterations (it
 * treats the loop as free of side effects), which silently removed the
 * record prefetching of batch training; a volatile asm survives. */
static inline void rk__prefetch(const void *p)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 0, 3);
#endif
}

/* rk_malloc'd, zeroed memory for large model tables, backed by huge
 * pages where the system allows (they cut TLB misses on random access).
 * Freed with rk_free. */
void *rk__rank_huge_zalloc(size_t bytes);

/* splitmix64, for shuffles and FM's initial values. */
static inline uint64_t rk__splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A permutation of [0, n) for epoch `epoch` of a run seeded by seed
 * (Fisher-Yates). */
void rk__rank_shuffle(size_t *perm, size_t n, uint64_t seed, uint32_t epoch);

#endif /* RK_FTRL_INT_H */
