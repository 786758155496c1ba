/*
 * vec.c — the growth step behind the RK_VEC macros in rk_core.h.
 *
 * Capacity doubles (starting small) so n pushes cost O(n) copies in total,
 * and is clamped to the vector's max so a bounded vector never holds more
 * memory than its bound. Asking for more than max is RK_ELIMIT; running out
 * of memory, or a size that cannot be represented, is RK_ENOMEM. On failure
 * the vector is left exactly as it was.
 */
#include "rk_core.h"

#define VEC_MIN_CAP 8

int rk__vec_grow(void **v, size_t *cap, size_t max, size_t elem, size_t need)
{
    if (need <= *cap) return 0;
    if (max && need > max) return RK_ELIMIT;
    if (elem == 0) return RK_EINVAL;
    size_t limit = SIZE_MAX / elem;
    if (need > limit) return RK_ENOMEM;
    size_t ncap = *cap ? *cap : VEC_MIN_CAP;
    while (ncap < need) ncap = ncap > limit / 2 ? limit : ncap * 2;
    if (max && ncap > max) ncap = max;
    void *nv = rk_realloc(*v, ncap * elem);
    if (!nv) return RK_ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

int rk__vec_grow_error(size_t max, size_t need)
{
    return max && need > max ? RK_ELIMIT : RK_ENOMEM;
}
