/*
 * generator_models.c — heuristic candidate generators (trending,
 * co-visitation) behind the evaluation model interface, so their
 * candidate recall is measured by the same harness as the factor models.
 *
 * A generator proposes some items and says nothing of the rest; those get
 * -inf, which the harness leaves out of the ranking, so a generator is
 * never credited for items it did not propose.
 */
#include <math.h>
#include <string.h>

#include "train_int.h"

/* ---- trending ------------------------------------------------------------------ */

typedef struct trending {
    rk_popular_opts o;
    rk_popular *p;
    uint32_t nitems;
} trending;

static int trend_train(void *self, const rk_interactions *m, rk_pool *pool,
                       rk_err *err)
{
    (void)pool;
    trending *t = self;
    rk_popular *p;
    int rc = rk_popular_build_from_interactions(&p, m, &t->o, err);
    if (rc) return rc;
    rk_popular_destroy(t->p);
    t->p = p;
    t->nitems = m->nitems;
    return 0;
}

static int trend_score(const void *self, const uint32_t *items,
                       const float *weights, size_t n, float *scores,
                       rk_err *err)
{
    (void)items;
    (void)weights;
    (void)n;
    const trending *t = self;
    if (!t->p) return rk_err_set(err, RK_ESTATE, "trending: not trained");
    for (uint32_t i = 0; i < t->nitems; i++) {
        double s = rk_popular_score(t->p, RK_POPULAR_TRENDING, i);
        scores[i] = s > 0 ? (float)s : -INFINITY;
    }
    return 0;
}

static int trend_params(const void *self, rk_buf *b)
{
    const trending *t = self;
    return rk_buf_printf(b, "{\"half_life_hours\":%.9g,\"now\":\"newest "
                            "training interaction\"}",
                         t->o.half_life_ms / 3600000.0);
}

static void trend_destroy(void *self)
{
    trending *t = self;
    rk_popular_destroy(t->p);
    rk_free(t);
}

static const rk_eval_model_ops trending_ops = {
    "trending", trend_train, trend_score, trend_params, NULL, trend_destroy};

int rk_eval_trending_create(rk_eval_model **out, const rk_popular_opts *o,
                            rk_err *err)
{
    trending *t = rk_calloc(1, sizeof *t);
    if (!t) return rk_err_set(err, RK_ENOMEM, "trending: out of memory");
    if (o) t->o = *o;
    else rk_popular_opts_default(&t->o);
    /* Point in time: as of the split's newest training interaction. */
    t->o.now_ms = 0;
    if (rk_eval_model_wrap(out, NULL, &trending_ops, t))
        return rk_err_set(err, RK_ENOMEM, "trending: out of memory");
    return 0;
}

/* ---- co-visitation ----------------------------------------------------------------- */

typedef struct covis {
    rk_covis_opts o;
    rk_covis *c;
    uint32_t nitems;
} covis;

static int covis_train(void *self, const rk_interactions *m, rk_pool *pool,
                       rk_err *err)
{
    (void)pool;
    covis *a = self;
    rk_covis *c;
    int rc = rk_covis_build(&c, m, &a->o, err);
    if (rc) return rc;
    rk_covis_destroy(a->c);
    a->c = c;
    a->nitems = m->nitems;
    return 0;
}

static int covis_score(const void *self, const uint32_t *items,
                       const float *weights, size_t n, float *scores,
                       rk_err *err)
{
    const covis *a = self;
    if (!a->c) return rk_err_set(err, RK_ESTATE, "covis: not trained");
    for (uint32_t i = 0; i < a->nitems; i++) scores[i] = -INFINITY;
    /* The same aggregation as rk_covis_query, over every neighbour rather
     * than a top k, so the harness ranks the full list. */
    for (size_t h = 0; h < n; h++) {
        const uint32_t *nb;
        const float *sc;
        size_t nn;
        rk_covis_neighbors(a->c, items[h], &nb, &sc, &nn);
        float w = weights ? weights[h] : 1.0f;
        for (size_t j = 0; j < nn; j++) {
            if (nb[j] >= a->nitems) continue;
            float *s = &scores[nb[j]];
            *s = (*s == -INFINITY ? 0 : *s) + w * sc[j];
        }
    }
    return 0;
}

static int covis_params(const void *self, rk_buf *b)
{
    const rk_covis_opts *o = &((const covis *)self)->o;
    return rk_buf_printf(b, "{\"window_hours\":%.9g,\"tau_hours\":%.9g,"
                            "\"symmetric\":%s,\"normalize\":\"%s\","
                            "\"top_n\":%u,\"max_events_per_user\":%u}",
                         (double)o->window_ms / 3600000.0,
                         o->tau_ms / 3600000.0, o->symmetric ? "true" : "false",
                         o->norm == RK_COVIS_NORM_COSINE ? "cosine" : "none",
                         o->top_n, o->max_events_per_user);
}

static int covis_save(const void *self, const char *dir, rk_err *err)
{
    const covis *a = self;
    if (!a->c) return rk_err_set(err, RK_ESTATE, "covis: not trained");
    char path[4096];
    snprintf(path, sizeof path, "%s/covis.bin", dir);
    return rk_covis_save(a->c, path, err);
}

static void covis_destroy(void *self)
{
    covis *a = self;
    rk_covis_destroy(a->c);
    rk_free(a);
}

static const rk_eval_model_ops covis_ops = {
    "covis", covis_train, covis_score, covis_params, covis_save, covis_destroy};

int rk_eval_covis_create(rk_eval_model **out, const rk_covis_opts *o,
                         rk_err *err)
{
    covis *a = rk_calloc(1, sizeof *a);
    if (!a) return rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    if (o) a->o = *o;
    else rk_covis_opts_default(&a->o);
    if (rk_eval_model_wrap(out, NULL, &covis_ops, a))
        return rk_err_set(err, RK_ENOMEM, "covis: out of memory");
    return 0;
}
