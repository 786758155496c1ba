/*
 * fm_int.h — factorization-machine internals for tests (fm.c).
 *
 * Parameters live in one row per coordinate, stride k + 1 floats: w_i then
 * v_i[0..k). The gradient check in tests/fm_test.c perturbs them in place
 * through these accessors.
 */
#ifndef RK_FM_INT_H
#define RK_FM_INT_H

#include <stdint.h>

#include "rk_rank.h"

/* Row of coordinate i < dim: w_i, then v_i[0..k). */
float *rk__fm_row(rk_fm *m, uint32_t i);
/* The global bias w0. */
double *rk__fm_w0(rk_fm *m);

#endif /* RK_FM_INT_H */
