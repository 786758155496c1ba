/*
 * factor_kernels_ref.c — plain C reference kernels of the factor models and
 * the dispatch that picks the fastest path the CPU supports.
 *
 * The reference is the definition the SIMD paths are tested against
 * (tests/factor_test.c): straightforward loops, float accumulation in
 * index order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "factor_int.h"

static void ref_dots(const float *Y, size_t n, size_t k, size_t ld,
                     const float *p, float *t)
{
    for (size_t j = 0; j < n; j++) {
        const float *y = Y + j * ld;
        float s = 0;
        for (size_t c = 0; c < k; c++) s += y[c] * p[c];
        t[j] = s;
    }
}

static void ref_axpys(const float *Y, size_t n, size_t k, size_t ld,
                      const float *s, float *out)
{
    for (size_t j = 0; j < n; j++) {
        const float *y = Y + j * ld;
        float a = s[j];
        for (size_t c = 0; c < k; c++) out[c] += a * y[c];
    }
}

/* Right-looking Cholesky on the upper triangle: row j of U is row j of
 * the updated A scaled by 1 / sqrt(pivot), and every later row i loses
 * U[j][i] times it. All inner loops run along contiguous rows. */
static int ref_cholsolve(double *A, size_t k, double *b)
{
    for (size_t j = 0; j < k; j++) {
        double *Uj = A + j * k;
        if (!(Uj[j] > 0)) return -1;
        double u = sqrt(Uj[j]), inv = 1.0 / u;
        Uj[j] = u;
        for (size_t l = j + 1; l < k; l++) Uj[l] *= inv;
        for (size_t i = j + 1; i < k; i++) {
            double a = Uj[i], *Ai = A + i * k;
            for (size_t l = i; l < k; l++) Ai[l] -= a * Uj[l];
        }
    }
    /* U^T y = b (forward, by rows of U), then U x = y (backward). */
    for (size_t j = 0; j < k; j++) {
        const double *Uj = A + j * k;
        b[j] /= Uj[j];
        for (size_t l = j + 1; l < k; l++) b[l] -= b[j] * Uj[l];
    }
    for (size_t i = k; i-- > 0;) {
        const double *Ui = A + i * k;
        double s = b[i];
        for (size_t l = i + 1; l < k; l++) s -= Ui[l] * b[l];
        b[i] = s / Ui[i];
    }
    return 0;
}

void rk__fk_ref(rk__fk *t)
{
    t->name = "ref";
    t->dots = ref_dots;
    t->axpys = ref_axpys;
    t->cholsolve = ref_cholsolve;
}

int rk__fk_select(rk__fk *t, rk_err *err)
{
    rk__fk_ref(t);
    const char *env = getenv("RK_KERNELS");
    if (env && strcmp(env, "ref") == 0) return 0;
    int rc = rk__fk_avx2(t);
    if (env && strcmp(env, "avx2") == 0) {
        if (rc != 0)
            return rk_err_set(err, RK_EUNSUPPORTED,
                              "RK_KERNELS=avx2 but this CPU or build has "
                              "no AVX2/FMA");
    } else if (env && *env && strcmp(env, "auto") != 0) {
        return rk_err_set(err, RK_EINVAL,
                          "RK_KERNELS=%s: expected ref, avx2 or auto", env);
    }
    return 0;
}
