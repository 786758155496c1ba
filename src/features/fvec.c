/*
 * fvec.c — feature vectors: a dense block plus hashed sparse coordinates.
 *
 * Encoding (little-endian): u32 ndense, u32 nsparse, ndense f32, then
 * nsparse (u32 idx, f32 val) pairs. Decoding checks the lengths against
 * the bytes available before touching them, so a truncated or corrupted
 * record is an error, never an out-of-bounds read.
 */
#include <math.h>
#include <string.h>

#include "rk_features.h"

#define MAX_DENSE (1u << 16)

int rk_fvec_reset(rk_fvec *v, uint32_t ndense)
{
    if (ndense > MAX_DENSE) return RK_ELIMIT;
    if (ndense > v->ndense || (ndense && !v->dense)) {
        float *d = rk_realloc(v->dense, (size_t)ndense * sizeof *d);
        if (!d) return RK_ENOMEM;
        v->dense = d;
    }
    v->ndense = ndense;
    for (uint32_t i = 0; i < ndense; i++) v->dense[i] = NAN;
    v->nsparse = 0;
    return 0;
}

static int reserve(rk_fvec *v, uint32_t need)
{
    if (need <= v->cap) return 0;
    if (need > RK_FVEC_MAX_SPARSE) return RK_ELIMIT;
    uint32_t cap = v->cap ? v->cap : 16;
    while (cap < need) cap = cap > RK_FVEC_MAX_SPARSE / 2 ? RK_FVEC_MAX_SPARSE : cap * 2;
    uint32_t *idx = rk_realloc(v->idx, (size_t)cap * sizeof *idx);
    if (!idx) return RK_ENOMEM;
    v->idx = idx;
    float *val = rk_realloc(v->val, (size_t)cap * sizeof *val);
    if (!val) return RK_ENOMEM;
    v->val = val;
    v->cap = cap;
    return 0;
}

int rk_fvec_push(rk_fvec *v, uint32_t idx, float val)
{
    int rc = reserve(v, v->nsparse + 1);
    if (rc) return rc;
    v->idx[v->nsparse] = idx;
    v->val[v->nsparse++] = val;
    return 0;
}

int rk_fvec_copy(rk_fvec *dst, const rk_fvec *src)
{
    int rc = rk_fvec_reset(dst, src->ndense);
    if (rc == 0) rc = reserve(dst, src->nsparse);
    if (rc) return rc;
    if (src->ndense) memcpy(dst->dense, src->dense, src->ndense * sizeof(float));
    if (src->nsparse) {
        memcpy(dst->idx, src->idx, src->nsparse * sizeof(uint32_t));
        memcpy(dst->val, src->val, src->nsparse * sizeof(float));
    }
    dst->nsparse = src->nsparse;
    return 0;
}

void rk_fvec_free(rk_fvec *v)
{
    if (!v) return;
    rk_free(v->dense);
    rk_free(v->idx);
    rk_free(v->val);
    memset(v, 0, sizeof *v);
}

void rk_fvec_as_sparse(const rk_fvec *v, uint32_t *idx_buf, float *val_buf,
                       rk_sparse *out)
{
    uint32_t n = 0;
    for (uint32_t j = 0; j < v->ndense; j++) {
        if (isnan(v->dense[j])) continue;
        idx_buf[n] = j;
        val_buf[n++] = v->dense[j];
    }
    for (uint32_t i = 0; i < v->nsparse; i++) {
        idx_buf[n] = v->ndense + v->idx[i];
        val_buf[n++] = v->val[i];
    }
    out->idx = idx_buf;
    out->val = val_buf;
    out->n = n;
}





int rk_fvec_encode(const rk_fvec *v, rk_buf *out)
{
    size_t n = 8 + 4 * (size_t)v->ndense + 8 * (size_t)v->nsparse;
    int rc = rk_buf_reserve(out, n);
    if (rc) return rc;
    unsigned char *p = (unsigned char *)out->data + out->len;
    rk_put_u32(p, v->ndense);
    rk_put_u32(p + 4, v->nsparse);
    p += 8;
    for (uint32_t j = 0; j < v->ndense; j++, p += 4) rk_put_f32(p, v->dense[j]);
    for (uint32_t i = 0; i < v->nsparse; i++, p += 8) {
        rk_put_u32(p, v->idx[i]);
        rk_put_f32(p + 4, v->val[i]);
    }
    out->len += n;
    return 0;
}

int rk_fvec_decode(rk_fvec *v, const void *data, size_t n, size_t *used,
                   rk_err *err)
{
    const unsigned char *p = data;
    if (n < 8)
        return rk_err_set(err, RK_ECORRUPT, "feature vector: %zu bytes, header needs 8", n);
    uint32_t nd = rk_get_u32(p), ns = rk_get_u32(p + 4);
    if (nd > MAX_DENSE || ns > RK_FVEC_MAX_SPARSE)
        return rk_err_set(err, RK_ECORRUPT,
                          "feature vector: %u dense / %u sparse values exceed the limits",
                          nd, ns);
    size_t need = 8 + 4 * (size_t)nd + 8 * (size_t)ns;
    if (need > n)
        return rk_err_set(err, RK_ECORRUPT,
                          "feature vector truncated: needs %zu bytes, has %zu", need, n);
    int rc = rk_fvec_reset(v, nd);
    if (rc == 0) rc = reserve(v, ns);
    if (rc) return rk_err_set(err, rc, "feature vector: out of memory");
    p += 8;
    for (uint32_t j = 0; j < nd; j++, p += 4) v->dense[j] = rk_get_f32(p);
    for (uint32_t i = 0; i < ns; i++, p += 8) {
        v->idx[i] = rk_get_u32(p);
        v->val[i] = rk_get_f32(p + 4);
    }
    v->nsparse = ns;
    if (used) *used = need;
    return 0;
}
