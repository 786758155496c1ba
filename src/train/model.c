/*
 * model.c — the model handle the harness drives, and the popularity
 * baseline.
 *
 * A model is a table of functions over the model's own state (see
 * rk_eval_model_ops); the handle adds a display name, so one kind can be
 * evaluated under several parameter settings side by side.
 *
 * Popularity scores every item by its number of training users. It
 * ignores the user, which is exactly what makes it the floor every
 * personalised model must beat, and it is what "mean popularity of
 * recommended items" is measured against.
 */
#include <string.h>

#include "train_int.h"

int rk_eval_model_wrap(rk_eval_model **out, const char *name,
                       const rk_eval_model_ops *ops, void *self)
{
    rk_eval_model *m = rk_calloc(1, sizeof *m);
    char *nm = rk_strdup(name ? name : ops->kind);
    if (!m || !nm) {
        rk_free(m);
        rk_free(nm);
        if (ops->destroy) ops->destroy(self);
        return RK_ENOMEM;
    }
    m->name = nm;
    m->ops = ops;
    m->self = self;
    *out = m;
    return 0;
}

void rk_eval_model_destroy(rk_eval_model *m)
{
    if (!m) return;
    if (m->ops->destroy) m->ops->destroy(m->self);
    rk_free(m->name);
    rk_free(m);
}

const char *rk_eval_model_name(const rk_eval_model *m) { return m->name; }
const char *rk_eval_model_kind(const rk_eval_model *m) { return m->ops->kind; }

int rk_eval_model_train(rk_eval_model *m, const rk_interactions *x,
                        rk_pool *pool, rk_err *err)
{
    return m->ops->train(m->self, x, pool, err);
}

int rk_eval_model_score(const rk_eval_model *m, const uint32_t *items,
                        const float *weights, size_t n, float *scores,
                        rk_err *err)
{
    return m->ops->score(m->self, items, weights, n, scores, err);
}

int rk_eval_model_params(const rk_eval_model *m, rk_buf *json)
{
    if (!m->ops->params) return rk_buf_puts(json, "{}");
    return m->ops->params(m->self, json);
}

int rk_eval_model_save(const rk_eval_model *m, const char *dir, rk_err *err)
{
    if (!m->ops->save)
        return rk_err_set(err, RK_EUNSUPPORTED, "model %s cannot be saved",
                          m->name);
    return m->ops->save(m->self, dir, err);
}

/* ---- popularity ----------------------------------------------------------- */

typedef struct popularity {
    uint32_t nitems;
    float *count;
} popularity;

static int pop_train(void *self, const rk_interactions *m, rk_pool *pool,
                     rk_err *err)
{
    (void)pool;
    popularity *p = self;
    float *c = rk_calloc((size_t)m->nitems + 1, sizeof *c);
    if (!c) return rk_err_set(err, RK_ENOMEM, "popularity: out of memory");
    /* Users, not summed weights: one enthusiastic user should not make an
     * item popular. */
    for (uint64_t k = 0; k < m->nnz; k++) c[m->items[k]] += 1;
    rk_free(p->count);
    p->count = c;
    p->nitems = m->nitems;
    return 0;
}

static int pop_score(const void *self, const uint32_t *items,
                     const float *weights, size_t n, float *scores,
                     rk_err *err)
{
    (void)items;
    (void)weights;
    (void)n;
    const popularity *p = self;
    if (!p->count) return rk_err_set(err, RK_ESTATE, "popularity: not trained");
    memcpy(scores, p->count, sizeof(float) * p->nitems);
    return 0;
}

static int pop_params(const void *self, rk_buf *json)
{
    (void)self;
    return rk_buf_puts(json, "{\"score\":\"training users per item\"}");
}

/*
 * popularity.bin, little-endian: "RKPOP001" (8 bytes), uint32 nitems,
 * uint32 0, float32 count[nitems], uint64 xxh3-64 (seed 0) of all the
 * bytes before it. Item i is the store's dense item id i.
 */
static int pop_save(const void *self, const char *dir, rk_err *err)
{
    const popularity *p = self;
    if (!p->count) return rk_err_set(err, RK_ESTATE, "popularity: not trained");
    size_t n = 16 + sizeof(float) * (size_t)p->nitems + 8;
    unsigned char *b = rk_malloc(n);
    if (!b) return rk_err_set(err, RK_ENOMEM, "popularity: out of memory");
    memcpy(b, "RKPOP001", 8);
    uint32_t hdr[2] = {p->nitems, 0};
    memcpy(b + 8, hdr, 8);
    memcpy(b + 16, p->count, sizeof(float) * (size_t)p->nitems);
    uint64_t h = rk_hash64(b, n - 8, 0);
    memcpy(b + n - 8, &h, 8);
    int rc = rk__train_write_file(dir, "popularity.bin", b, n, err);
    rk_free(b);
    return rc;
}

static void pop_destroy(void *self)
{
    popularity *p = self;
    rk_free(p->count);
    rk_free(p);
}

static const rk_eval_model_ops popularity_ops = {
    "popularity", pop_train, pop_score, pop_params, pop_save, pop_destroy};

int rk_eval_popularity_create(rk_eval_model **out, rk_err *err)
{
    popularity *p = rk_calloc(1, sizeof *p);
    if (!p || rk_eval_model_wrap(out, NULL, &popularity_ops, p)) {
        if (!p) rk_free(p);
        return rk_err_set(err, RK_ENOMEM, "popularity: out of memory");
    }
    return 0;
}
