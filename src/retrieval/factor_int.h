/*
 * factor_int.h — internals shared by the factor models (ials.c, ease.c)
 * and their kernels (factor_kernels_ref.c, factor_kernels_avx2.c).
 *
 * The kernels are the two halves of every iALS row solve: t = Y p (a dot
 * product per gathered row) and out += Y^T s (a weighted sum of rows), plus
 * the k x k double-precision Cholesky solve of the exact solver and the
 * fold-in.
 * A table holds one implementation of each; it is filled with the plain C
 * reference first and overridden with AVX2/FMA when the CPU has it, unless
 * the environment variable RK_KERNELS says "ref" (or "avx2", which fails
 * loudly on a CPU without it). The table lives in the caller's context, so
 * there is no process-wide state.
 */
#ifndef RK_FACTOR_INT_H
#define RK_FACTOR_INT_H

#include <stddef.h>
#include <stdint.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "rk_core.h"

typedef struct rk__fk {
    const char *name; /* "ref" or "avx2" */
    /* t[j] = Y[j*ld .. j*ld+k) . p[0..k) for j < n (ld >= k). */
    void (*dots)(const float *Y, size_t n, size_t k, size_t ld,
                 const float *p, float *t);
    /* out[c] += sum_{j<n} s[j] * Y[j*ld + c] for c < k. */
    void (*axpys)(const float *Y, size_t n, size_t k, size_t ld,
                  const float *s, float *out);
    /* Solves A x = b for a symmetric positive definite k x k A given by
     * its upper triangle (row-major, A[i*k + j] for j >= i; the rest is
     * not read), in double: Cholesky A = U^T U in place (A's upper triangle
     * becomes U), then the two triangular solves; b becomes x. Returns 0,
     * or -1 when a pivot is not positive (A not positive definite). */
    int (*cholsolve)(double *A, size_t k, double *b);
} rk__fk;

void rk__fk_ref(rk__fk *t);
/* Overrides t with the AVX2/FMA kernels: 0, or RK_EUNSUPPORTED when they
 * were not compiled in or the CPU lacks AVX2 or FMA (t unchanged). */
int rk__fk_avx2(rk__fk *t);
/* Reference, then the best the CPU has, honouring RK_KERNELS=ref|avx2|auto
 * (the same variable and values as the ANN kernels). RK_EUNSUPPORTED when
 * it asks for a path this CPU cannot run, RK_EINVAL for another value. */
int rk__fk_select(rk__fk *t, rk_err *err);

/* ---- model files --------------------------------------------------------- */
/*
 * Both models are stored as: a fixed header (8-byte magic, u32 version,
 * u32 header size, u32 byte-order mark, then model-specific fields), a
 * payload of arrays, and a trailing u64 checksum, rk_hash64(everything
 * before it, seed 0), computed in streaming form. Numbers are
 * in the host's byte order; a byte-order mark in the header makes a file
 * from a machine of the other order fail as corrupt rather than load
 * garbage. Files are written to "<path>.tmp.<pid>", fsync'd, renamed.
 */
#define RK__FF_BOM 0x01020304u

typedef struct rk__ff_part {
    const void *p;
    size_t n;
} rk__ff_part;

/* Writes the parts in order plus the checksum, atomically. */
int rk__ff_write(const char *path, const rk__ff_part *parts, size_t nparts,
                 rk_err *err);

/* Sequential reader that hashes as it goes, so a multi-gigabyte payload is
 * read straight into its final buffers. Usage: open (reads and checks the
 * header's magic), expect (the exact size the header implies, checked
 * before anything large is allocated), read..., finish (checksum), close.
 * what names the model kind in messages ("iALS model"). */
typedef struct rk__ff_reader {
    XXH3_state_t st; /* first: it wants 64-byte alignment */
    int fd;
    const char *path, *what;
    uint64_t size, pos;
} rk__ff_reader;

/* Opens path and reads hdr_size bytes into hdr; the first 8 must be magic
 * (RK_EPARSE otherwise). RK_EIO, RK_ECORRUPT (shorter than a header). */
int rk__ff_open(rk__ff_reader *r, const char *path, const char magic[8],
                const char *what, void *hdr, size_t hdr_size, rk_err *err);
/* RK_ECORRUPT unless the file is exactly `bytes` (header included) plus
 * the checksum. */
int rk__ff_expect(rk__ff_reader *r, uint64_t bytes, rk_err *err);
int rk__ff_read(rk__ff_reader *r, void *dst, size_t n, rk_err *err);
/* Reads the trailing checksum and compares: RK_ECORRUPT on mismatch. */
int rk__ff_finish(rk__ff_reader *r, rk_err *err);
void rk__ff_close(rk__ff_reader *r);

#endif
