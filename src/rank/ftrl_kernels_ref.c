/*
 * ftrl_kernels_ref.c — the plain C FTRL kernels and the choice of kernels.
 *
 * These define the results: the AVX2 update must match them bit for bit
 * (tests/ftrl_test.c checks), the AVX2 dot product within rounding.
 */
#include <stdlib.h>
#include <string.h>

#include "rank/ftrl_int.h"

static float ref_dot(const rk__ftrl_rec *st, const uint32_t *idx,
                     const float *val, uint32_t n)
{
    float s = 0.0f;
    if (val)
        for (uint32_t k = 0; k < n; k++) s += st[idx[k]].w * val[k];
    else
        for (uint32_t k = 0; k < n; k++) s += st[idx[k]].w;
    return s;
}

static void ref_update(rk__ftrl_rec *st, const uint32_t *idx,
                       const float *val, uint32_t n, float gs,
                       const rk__ftrl_hp *hp)
{
    if (val)
        for (uint32_t k = 0; k < n; k++)
            rk__ftrl_step(&st[idx[k]], gs * val[k], hp);
    else
        for (uint32_t k = 0; k < n; k++) rk__ftrl_step(&st[idx[k]], gs, hp);
}

void rk__ftrl_kernels_ref(rk__ftrl_kernels *k)
{
    k->name = "ref";
    k->dot = ref_dot;
    k->update = ref_update;
}

int rk__ftrl_kernels_select(rk__ftrl_kernels *k, rk_err *err)
{
    rk__ftrl_kernels_ref(k);
    const char *env = getenv("RK_KERNELS");
    if (env && (strcmp(env, "ref") == 0 || strcmp(env, "scalar") == 0))
        return 0;
    int rc = rk__ftrl_kernels_avx2(k);
    if (env && strcmp(env, "avx2") == 0) {
        if (rc != 0)
            return rk_err_set(err, RK_EUNSUPPORTED,
                              "RK_KERNELS=avx2 but this CPU or build has no "
                              "AVX2");
    } else if (env && *env && strcmp(env, "auto") != 0) {
        return rk_err_set(err, RK_EINVAL, "RK_KERNELS=%s: expected ref, "
                          "scalar, avx2 or auto", env);
    }
    return 0;
}
