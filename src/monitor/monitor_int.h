/*
 * monitor_int.h — internals shared by the files of src/monitor/.
 */
#ifndef RK_MONITOR_INT_H
#define RK_MONITOR_INT_H

#include "rk_monitor.h"

/* Sorts the finite values of both samples (rk_drift_sort) into one
 * rk_malloc'd buffer *buf: the reference's na values, then the current
 * sample's nb. The caller frees *buf. RK_ENOMEM, RK_ELIMIT. */
int rk__drift_sort_pair(const float *ref, size_t nref, const float *cur,
                        size_t ncur, double **buf, size_t *na, size_t *nb,
                        rk_err *err);

/* w divided by the population std of the sorted sample a[0..na), na > 0:
 * 0 when both are 0, +inf when only the std is. */
double rk__drift_wnorm(double w, const double *a, size_t na);

#endif
