/*
 * ials_index.c — the serving index of an iALS model: an HNSW graph (inner
 * product, float32) over the item factors, labelled by dense item id, so
 * the top items for a folded-in user vector are found without scoring the
 * whole catalog. Built with fixed parameters and seed, so the same model
 * gives the same graph when built without a pool.
 */
#include <string.h>

#include "rk_retrieval.h"

int rk_ials_index(const rk_ials_model *m, rk_pool *pool, rk_ann **out,
                  rk_err *err)
{
    *out = NULL;
    uint32_t n = rk_ials_nitems(m), k = rk_ials_k(m);
    rk_ann_params p;
    rk_ann_params_default(&p);
    p.dim = k;
    p.max_elements = n ? n : 1;
    rk_ann *a;
    int rc = rk_ann_create(&a, &p, err);
    if (rc) return rc;
    uint32_t *labels = rk_malloc((n ? n : 1) * sizeof *labels);
    if (!labels) {
        rk_ann_destroy(a);
        return rk_err_set(err, RK_ENOMEM, "ials index: out of memory");
    }
    for (uint32_t i = 0; i < n; i++) labels[i] = i;
    rc = n ? rk_ann_add_batch(a, labels, rk_ials_item_factors(m), n, pool, err)
           : 0;
    rk_free(labels);
    if (rc) {
        rk_ann_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

int rk_ials_build_index(const rk_ials_model *m, const char *path,
                        rk_pool *pool, rk_err *err)
{
    rk_ann *a;
    int rc = rk_ials_index(m, pool, &a, err);
    if (rc) return rc;
    rc = rk_ann_save(a, path, err);
    rk_ann_destroy(a);
    return rc;
}
