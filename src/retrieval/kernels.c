/*
 * kernels.c — chooses the ANN kernel implementation.
 *
 * The choice is a table of function pointers filled with the reference
 * kernels first, then overridden entry by entry with the AVX2/FMA ones when
 * the CPU has both (so a kernel without an AVX2 version keeps its reference).
 * RK_KERNELS=ref|avx2|auto forces a path, for tests and for comparing
 * speed. The result is copied into each index at create/load time: there is
 * no global mutable state, and the environment is read once per index, not
 * per search.
 */
#include <stdlib.h>
#include <string.h>

#include "retrieval/ann_int.h"

int rk__ann_cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int rk__ann_kernels_select(rk__ann_kernels *out, rk_err *err)
{
    *out = rk__ann_kernels_ref;
    const char *env = getenv("RK_KERNELS");
    int want_ref = 0, want_avx2 = 0;
    if (env && *env && strcmp(env, "auto") != 0) {
        if (strcmp(env, "ref") == 0) want_ref = 1;
        else if (strcmp(env, "avx2") == 0) want_avx2 = 1;
        else
            return rk_err_set(err, RK_EINVAL,
                              "RK_KERNELS=%s: expected ref, avx2 or auto", env);
    }
    int has = rk__ann_cpu_has_avx2();
    if (want_avx2 && !has)
        return rk_err_set(err, RK_EUNSUPPORTED,
                          "RK_KERNELS=avx2 but this CPU lacks AVX2/FMA");
    if (has && !want_ref) {
        const rk__ann_kernels *v = &rk__ann_kernels_avx2;
        out->name = v->name;
        if (v->dot_f32) out->dot_f32 = v->dot_f32;
        if (v->dot_f32_i8) out->dot_f32_i8 = v->dot_f32_i8;
        if (v->dot_f32_rows) out->dot_f32_rows = v->dot_f32_rows;
        if (v->above) out->above = v->above;
    }
    return 0;
}
