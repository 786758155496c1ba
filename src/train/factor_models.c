/*
 * factor_models.c — the retrieval module's factor models (iALS, EASE)
 * behind the evaluation model interface.
 *
 * The adapters own the trained model and its options. Scoring goes
 * through the same calls a server uses at request time (iALS fold-in then
 * a dot product with every item, EASE's x . B), so offline numbers measure
 * the serving path, not a training-time shortcut.
 */
#include <string.h>

#include "train_int.h"

/* ---- iALS --------------------------------------------------------------------- */

typedef struct ials {
    rk_ials_opts o;
    rk_ials_model *m;
} ials;

static int ials_train(void *self, const rk_interactions *x, rk_pool *pool,
                      rk_err *err)
{
    ials *a = self;
    rk_ials_opts o = a->o;
    o.pool = pool;
    rk_ials_model *m;
    int rc = rk_ials_train(x, &o, &m, err);
    if (rc) return rc;
    rk_ials_free(a->m);
    a->m = m;
    return 0;
}

static int ials_score(const void *self, const uint32_t *items,
                      const float *weights, size_t n, float *scores,
                      rk_err *err)
{
    const ials *a = self;
    if (!a->m) return rk_err_set(err, RK_ESTATE, "ials: not trained");
    float *u = rk_malloc(sizeof(float) * rk_ials_k(a->m));
    if (!u) return rk_err_set(err, RK_ENOMEM, "ials: out of memory");
    int rc = rk_ials_fold_in(a->m, items, weights, n, u, err);
    if (!rc) rk_ials_score_all(a->m, u, scores);
    rk_free(u);
    return rc;
}

static int ials_params(const void *self, rk_buf *b)
{
    const rk_ials_opts *o = &((const ials *)self)->o;
    return rk_buf_printf(
        b,
        "{\"factors\":%u,\"iterations\":%u,\"reg\":%.9g,\"reg_exp\":%.9g,"
        "\"alpha\":%.9g,\"log_eps\":%.9g,\"unobserved_weight\":%.9g,"
        "\"solver\":\"%s\",\"cg_steps\":%u,\"init_std\":%.9g,\"seed\":%llu}",
        o->factors, o->iterations, o->reg, o->reg_exp, o->alpha, o->log_eps,
        o->unobserved_weight, o->solver == RK_IALS_CHOLESKY ? "cholesky" : "cg",
        o->cg_steps, o->init_std, (unsigned long long)o->seed);
}

static int ials_save(const void *self, const char *dir, rk_err *err)
{
    const ials *a = self;
    if (!a->m) return rk_err_set(err, RK_ESTATE, "ials: not trained");
    char path[4096];
    snprintf(path, sizeof path, "%s/ials.bin", dir);
    int rc = rk_ials_save(a->m, path, err);
    if (rc) return rc;
    /* The serving index over the item factors goes into the same version,
     * so a server maps it instead of building it at every start. */
    snprintf(path, sizeof path, "%s/items.ann", dir);
    return rk_ials_build_index(a->m, path, NULL, err);
}

static void ials_destroy(void *self)
{
    ials *a = self;
    rk_ials_free(a->m);
    rk_free(a);
}

static const rk_eval_model_ops ials_ops = {
    "ials", ials_train, ials_score, ials_params, ials_save, ials_destroy};

int rk_eval_ials_create(rk_eval_model **out, const rk_ials_opts *o,
                        rk_err *err)
{
    ials *a = rk_calloc(1, sizeof *a);
    if (!a) return rk_err_set(err, RK_ENOMEM, "ials: out of memory");
    if (o) a->o = *o;
    else rk_ials_opts_default(&a->o);
    /* The callback's context would dangle in a copy kept for later runs. */
    a->o.pool = NULL;
    a->o.on_iter = NULL;
    a->o.on_iter_ctx = NULL;
    if (rk_eval_model_wrap(out, NULL, &ials_ops, a))
        return rk_err_set(err, RK_ENOMEM, "ials: out of memory");
    return 0;
}

/* ---- EASE ---------------------------------------------------------------------- */

typedef struct ease {
    rk_ease_opts o;
    rk_ease_model *m;
} ease;

static int ease_train(void *self, const rk_interactions *x, rk_pool *pool,
                      rk_err *err)
{
    (void)pool; /* LAPACK/OpenBLAS bring their own threads */
    ease *a = self;
    rk_ease_model *m;
    int rc = rk_ease_train(x, &a->o, &m, err);
    if (rc) return rc;
    rk_ease_free(a->m);
    a->m = m;
    return 0;
}

static int ease_score(const void *self, const uint32_t *items,
                      const float *weights, size_t n, float *scores,
                      rk_err *err)
{
    const ease *a = self;
    if (!a->m) return rk_err_set(err, RK_ESTATE, "ease: not trained");
    return rk_ease_score(a->m, items, weights, n, scores, err);
}

static int ease_params(const void *self, rk_buf *b)
{
    const rk_ease_opts *o = &((const ease *)self)->o;
    return rk_buf_printf(b, "{\"lambda\":%.9g,\"max_items\":%u}", o->lambda,
                         o->max_items);
}

static int ease_save(const void *self, const char *dir, rk_err *err)
{
    const ease *a = self;
    if (!a->m) return rk_err_set(err, RK_ESTATE, "ease: not trained");
    char path[4096];
    snprintf(path, sizeof path, "%s/ease.bin", dir);
    return rk_ease_save(a->m, path, err);
}

static void ease_destroy(void *self)
{
    ease *a = self;
    rk_ease_free(a->m);
    rk_free(a);
}

static const rk_eval_model_ops ease_ops = {
    "ease", ease_train, ease_score, ease_params, ease_save, ease_destroy};

int rk_eval_ease_create(rk_eval_model **out, const rk_ease_opts *o,
                        rk_err *err)
{
    ease *a = rk_calloc(1, sizeof *a);
    if (!a) return rk_err_set(err, RK_ENOMEM, "ease: out of memory");
    if (o) a->o = *o;
    else rk_ease_opts_default(&a->o);
    if (rk_eval_model_wrap(out, NULL, &ease_ops, a))
        return rk_err_set(err, RK_ENOMEM, "ease: out of memory");
    return 0;
}
