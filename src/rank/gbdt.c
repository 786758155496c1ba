/*
 * gbdt.c — GBDT models for serving: XGBoost's JSON model read into rankd's
 * own layout, prediction, the saved format, info and feature importance.
 *
 * Reading a model validates everything before anything is evaluated: the
 * document's shape, array lengths, that every node reachable from a root is
 * reached exactly once through valid child indices (so no cycle or shared
 * subtree can make a walk loop or run off the array), feature indices below
 * num_feature, finite thresholds and leaf values. Nodes XGBoost pruned are
 * left in its arrays but are unreachable; they are skipped, not checked.
 *
 * Trees are then renumbered breadth first into the serving layout described
 * in rank_int.h. The model keeps a copy of the JSON so that rk_gbdt_save can
 * write it back verbatim. A model is immutable after construction.
 *
 * XGBoost semantics reproduced here (1.7's CPU predictor): a row goes left
 * when value < split_condition, a missing value (NaN) follows default_left;
 * a leaf's value is its split_conditions entry; the margin starts from
 * base_score mapped through the objective's ProbToMargin (logit for the
 * logistic objectives, identity otherwise), leaves are added in float in
 * tree order, and the logistic objectives output XGBoost's Sigmoid.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rank/rank_int.h"

struct rk_gbdt {
    rk__rank_forest forest;      /* points into the arrays below */
    rk__rank_gbdt_node *nodes;
    uint32_t *tree_off;
    uint32_t *tree_depth;
    rk__rank_gbdt_cnode *cnodes;
    float *cleaves;
    uint32_t *complete_off, *cleaf_off;
    size_t ntrees, nnodes;
    uint32_t nfeatures, max_depth;
    int logistic;                /* output = Sigmoid(margin) */
    const char *objective;       /* static string from the table below */
    float base_score;
    int64_t best_iteration;
    double best_score;
    /* Importance, sparse: the features some split uses, ascending, with
     * their totals. Sized by the splits present, not by num_feature, so a
     * model claiming billions of features costs nothing extra. */
    uint32_t *imp_feature;
    double *imp;                 /* 3 per entry: splits, gain, cover */
    size_t nimp;
    char *json;                  /* the XGBoost model, NUL terminated */
    size_t json_len;
    const rk__rank_gbdt_kernels *kern;
};

/* Objectives whose predictions we know how to reproduce. */
static const struct {
    const char *name;
    int logistic;
} objectives[] = {
    {"binary:logistic", 1}, {"reg:logistic", 1},  {"binary:logitraw", 0},
    {"reg:squarederror", 0}, {"rank:ndcg", 0},    {"rank:pairwise", 0},
    {"rank:map", 0},
};

/* ---- JSON access with paths in messages ------------------------------------ */

#define PFX "xgboost model: "

static json_t *get_typed(json_t *obj, const char *key, json_type type,
                         const char *path, int *rc, rk_err *err)
{
    static const char *const names[] = {"an object", "an array", "a string",
                                        "an integer", "a number", "true",
                                        "false", "null"};
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!v) {
        *rc = rk_err_set(err, RK_EPARSE, PFX "%s.%s: missing", path, key);
        return NULL;
    }
    if (json_typeof(v) != type) {
        *rc = rk_err_set(err, RK_EPARSE, PFX "%s.%s: expected %s", path, key,
                         names[type]);
        return NULL;
    }
    return v;
}

/* XGBoost writes scalar parameters as strings ("5E-1", "40"); newer
 * versions bracket some of them ("[5E-1]"). */
static int str_f64(json_t *v, double *out)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') s++, n -= 2;
    return rk_parse_f64(s, n, out);
}

static int str_u64(json_t *v, uint64_t *out)
{
    return rk_parse_u64(json_string_value(v), json_string_length(v), out);
}

/* A string parameter parsed as an unsigned integer <= max. */
static int param_u64(json_t *obj, const char *key, const char *path,
                     uint64_t max, uint64_t *out, rk_err *err)
{
    int rc = 0;
    json_t *v = get_typed(obj, key, JSON_STRING, path, &rc, err);
    if (!v) return rc;
    if (str_u64(v, out) != 0 || *out > max)
        return rk_err_set(err, RK_ECORRUPT, PFX "%s.%s: bad value '%.40s'",
                          path, key, json_string_value(v));
    return 0;
}

/* ---- one tree --------------------------------------------------------------- */

/* One split's contribution to importance. */
typedef struct split_stat {
    uint32_t feature;
    uint32_t seq; /* position in the model, to sum in model order */
    float gain, cover;
} split_stat;

/* State of a load: scratch reused from tree to tree, and the output. */
typedef struct loader {
    rk_err *err;
    uint32_t nfeatures;
    /* scratch, sized for the largest tree so far */
    int64_t *newid;     /* JSON index -> layout index, -1 = not reached */
    uint32_t *order;    /* layout index -> JSON index */
    uint32_t *level;    /* depth of each JSON index */
    size_t scap;
    RK_VEC(rk__rank_gbdt_node) nodes;
    RK_VEC(split_stat) splits; /* one per internal node, model order */
} loader;

static int grow_scratch(loader *L, size_t n)
{
    if (n <= L->scap) return 0;
    rk_free(L->newid);
    rk_free(L->order);
    rk_free(L->level);
    L->newid = rk_malloc(n * sizeof *L->newid);
    L->order = rk_malloc(n * sizeof *L->order);
    L->level = rk_malloc(n * sizeof *L->level);
    if (!L->newid || !L->order || !L->level) {
        L->scap = 0;
        return rk_err_set(L->err, RK_ENOMEM, PFX "out of memory");
    }
    L->scap = n;
    return 0;
}

/* The per-node arrays of one tree, all of length n. Optional ones are NULL
 * when absent. */
typedef struct tree_arrays {
    json_t *split_indices, *split_conditions, *left, *right, *default_left;
    json_t *loss_changes, *sum_hessian, *base_weights, *parents;
    size_t n;
} tree_arrays;

static int tree_array(json_t *tree, const char *key, int required,
                      size_t t, json_t **out, size_t *n, rk_err *err)
{
    json_t *v = json_object_get(tree, key);
    *out = NULL;
    if (!v) {
        if (!required) return 0;
        return rk_err_set(err, RK_EPARSE, PFX "tree %zu: %s: missing", t, key);
    }
    if (!json_is_array(v))
        return rk_err_set(err, RK_EPARSE, PFX "tree %zu: %s: expected an array",
                          t, key);
    if (*n == SIZE_MAX) {
        *n = json_array_size(v);
    } else if (json_array_size(v) != *n) {
        return rk_err_set(err, RK_ECORRUPT,
                          PFX "tree %zu: %s has %zu entries, split_indices %zu",
                          t, key, json_array_size(v), *n);
    }
    *out = v;
    return 0;
}

/* Element i of an integer array, or an error naming tree, node and key. */
static int int_at(json_t *arr, size_t i, size_t t, const char *key,
                  json_int_t *out, rk_err *err)
{
    json_t *v = json_array_get(arr, i);
    if (!json_is_integer(v))
        return rk_err_set(err, RK_EPARSE,
                          PFX "tree %zu node %zu: %s: expected an integer", t,
                          i, key);
    *out = json_integer_value(v);
    return 0;
}

/* Element i of a number array as a finite float. */
static int float_at(json_t *arr, size_t i, size_t t, const char *key,
                    float *out, rk_err *err)
{
    json_t *v = json_array_get(arr, i);
    if (!json_is_number(v))
        return rk_err_set(err, RK_EPARSE,
                          PFX "tree %zu node %zu: %s: expected a number", t, i,
                          key);
    double d = json_number_value(v);
    float f = (float)d;
    if (!isfinite(f))
        return rk_err_set(err, RK_ECORRUPT,
                          PFX "tree %zu node %zu: %s %g is not a finite float",
                          t, i, key, d);
    *out = f;
    return 0;
}

/* default_left is 0/1 in XGBoost 1.x JSON; older writers used booleans. */
static int bool_at(json_t *arr, size_t i, size_t t, int *out, rk_err *err)
{
    json_t *v = json_array_get(arr, i);
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    return rk_err_set(err, RK_ECORRUPT,
                      PFX "tree %zu node %zu: default_left: expected 0 or 1",
                      t, i);
}

static int check_tree_meta(json_t *tree, size_t t, size_t n, rk_err *err)
{
    json_t *id = json_object_get(tree, "id");
    if (!json_is_integer(id))
        return rk_err_set(err, RK_EPARSE, PFX "tree %zu: id: missing or not an integer", t);
    if (json_integer_value(id) < 0 || (uint64_t)json_integer_value(id) != t)
        return rk_err_set(err, RK_ECORRUPT, PFX "tree %zu: id is %lld", t,
                          (long long)json_integer_value(id));
    /* Categorical splits and vector leaves change what a node means. */
    json_t *st = json_object_get(tree, "split_type");
    if (st) {
        if (!json_is_array(st) || json_array_size(st) != n)
            return rk_err_set(err, RK_ECORRUPT,
                              PFX "tree %zu: split_type has the wrong shape", t);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(st, i);
            if (!json_is_integer(v))
                return rk_err_set(err, RK_EPARSE,
                                  PFX "tree %zu node %zu: split_type: expected an integer",
                                  t, i);
            if (json_integer_value(v) != 0)
                return rk_err_set(err, RK_EUNSUPPORTED,
                                  PFX "tree %zu node %zu: categorical splits are "
                                      "not supported", t, i);
        }
    }
    json_t *cats = json_object_get(tree, "categories");
    if (cats && (!json_is_array(cats) || json_array_size(cats) != 0))
        return rk_err_set(err, RK_EUNSUPPORTED,
                          PFX "tree %zu: categorical splits are not supported", t);
    json_t *tp = json_object_get(tree, "tree_param");
    if (tp) {
        if (!json_is_object(tp))
            return rk_err_set(err, RK_EPARSE, PFX "tree %zu: tree_param: expected an object", t);
        json_t *v = json_object_get(tp, "num_nodes");
        uint64_t u;
        if (v && (!json_is_string(v) || str_u64(v, &u) != 0 || u != n))
            return rk_err_set(err, RK_ECORRUPT,
                              PFX "tree %zu: tree_param.num_nodes does not match "
                                  "its %zu nodes", t, n);
        v = json_object_get(tp, "size_leaf_vector");
        if (v && (!json_is_string(v) || str_u64(v, &u) != 0 || u > 1))
            return rk_err_set(err, RK_EUNSUPPORTED,
                              PFX "tree %zu: vector leaves (multi-target) are "
                                  "not supported", t);
    }
    return 0;
}

/* Validates tree t and appends it to L->nodes in serving layout. Sets
 * *depth to its depth (0 for a lone leaf). */
static int load_tree(loader *L, json_t *tree, size_t t, uint32_t *depth)
{
    rk_err *err = L->err;
    tree_arrays a;
    int rc;
    if (!json_is_object(tree))
        return rk_err_set(err, RK_EPARSE, PFX "tree %zu: expected an object", t);
    a.n = SIZE_MAX;
    if ((rc = tree_array(tree, "split_indices", 1, t, &a.split_indices, &a.n, err)) ||
        (rc = tree_array(tree, "split_conditions", 1, t, &a.split_conditions, &a.n, err)) ||
        (rc = tree_array(tree, "left_children", 1, t, &a.left, &a.n, err)) ||
        (rc = tree_array(tree, "right_children", 1, t, &a.right, &a.n, err)) ||
        (rc = tree_array(tree, "default_left", 1, t, &a.default_left, &a.n, err)) ||
        (rc = tree_array(tree, "loss_changes", 0, t, &a.loss_changes, &a.n, err)) ||
        (rc = tree_array(tree, "sum_hessian", 0, t, &a.sum_hessian, &a.n, err)) ||
        (rc = tree_array(tree, "base_weights", 0, t, &a.base_weights, &a.n, err)) ||
        (rc = tree_array(tree, "parents", 0, t, &a.parents, &a.n, err)))
        return rc;
    size_t n = a.n;
    if (n == 0) return rk_err_set(err, RK_ECORRUPT, PFX "tree %zu: no nodes", t);
    if (n > INT32_MAX)
        return rk_err_set(err, RK_ECORRUPT, PFX "tree %zu: %zu nodes", t, n);
    if ((rc = check_tree_meta(tree, t, n, err)) != 0) return rc;
    if ((rc = grow_scratch(L, n)) != 0) return rc;
    for (size_t i = 0; i < n; i++) L->newid[i] = -1;

    /* Breadth-first walk from the root. Each node is queued at most once
     * (a second arrival is an error), so this terminates on any input,
     * and queueing both children together makes them adjacent. */
    size_t cnt = 1;
    uint32_t maxd = 0;
    L->order[0] = 0;
    L->newid[0] = 0;
    L->level[0] = 0;
    for (size_t h = 0; h < cnt; h++) {
        uint32_t o = L->order[h];
        json_int_t l, r;
        if ((rc = int_at(a.left, o, t, "left_children", &l, err)) ||
            (rc = int_at(a.right, o, t, "right_children", &r, err)))
            return rc;
        if (l == -1 && r == -1) continue;
        if (l < 0 || r < 0 || (uint64_t)l >= n || (uint64_t)r >= n || l == r)
            return rk_err_set(err, RK_ECORRUPT,
                              PFX "tree %zu node %u: bad children %lld, %lld "
                                  "(%zu nodes)", t, o, (long long)l, (long long)r, n);
        if (L->newid[l] >= 0 || L->newid[r] >= 0)
            return rk_err_set(err, RK_ECORRUPT,
                              PFX "tree %zu node %u: child %lld reached twice "
                                  "(cycle or shared subtree)", t, o,
                              (long long)(L->newid[l] >= 0 ? l : r));
        if (a.parents) {
            json_int_t pl, pr;
            if ((rc = int_at(a.parents, (size_t)l, t, "parents", &pl, err)) ||
                (rc = int_at(a.parents, (size_t)r, t, "parents", &pr, err)))
                return rc;
            if (pl != o || pr != o)
                return rk_err_set(err, RK_ECORRUPT,
                                  PFX "tree %zu node %u: its children's parents "
                                      "entries say %lld and %lld", t, o,
                                  (long long)pl, (long long)pr);
        }
        L->newid[l] = (int64_t)cnt;
        L->order[cnt++] = (uint32_t)l;
        L->newid[r] = (int64_t)cnt;
        L->order[cnt++] = (uint32_t)r;
        L->level[l] = L->level[r] = L->level[o] + 1;
        if (L->level[l] > maxd) maxd = L->level[l];
    }

    /* Emit in layout order, validating the payload of reachable nodes. */
    if (rk_vec_reserve(&L->nodes, L->nodes.n + cnt) != 0)
        return rk_err_set(err, RK_ENOMEM, PFX "out of memory");
    for (size_t h = 0; h < cnt; h++) {
        uint32_t o = L->order[h];
        rk__rank_gbdt_node nd;
        float cond;
        json_int_t l;
        if ((rc = float_at(a.split_conditions, o, t, "split_conditions", &cond, err)) ||
            (rc = int_at(a.left, o, t, "left_children", &l, err)))
            return rc;
        if (l == -1) {
            nd.col = 0;
            nd.thr = NAN;
            nd.left = (uint32_t)h;
            nd.value = cond;
        } else {
            json_int_t f = 0;
            int dl = 0;
            if ((rc = int_at(a.split_indices, o, t, "split_indices", &f, err)) ||
                (rc = bool_at(a.default_left, o, t, &dl, err)))
                return rc;
            if (f < 0 || (uint64_t)f >= L->nfeatures)
                return rk_err_set(err, RK_ECORRUPT,
                                  PFX "tree %zu node %u: feature %lld out of "
                                      "range (num_feature %u)", t, o,
                                  (long long)f, L->nfeatures);
            nd.col = (uint32_t)f + (dl ? 0 : L->nfeatures);
            nd.thr = cond;
            nd.left = (uint32_t)L->newid[l];
            nd.value = 0;
            float g = 0, c = 0;
            if (a.loss_changes &&
                (rc = float_at(a.loss_changes, o, t, "loss_changes", &g, err)))
                return rc;
            if (a.sum_hessian &&
                (rc = float_at(a.sum_hessian, o, t, "sum_hessian", &c, err)))
                return rc;
            split_stat sp = {(uint32_t)f, (uint32_t)L->splits.n, g, c};
            if (rk_vec_push(&L->splits, sp) != 0)
                return rk_err_set(err, RK_ENOMEM, PFX "out of memory");
        }
        L->nodes.v[L->nodes.n++] = nd;
    }
    *depth = maxd;
    return 0;
}

static int cmp_split(const void *a, const void *b)
{
    const split_stat *x = a, *y = b;
    if (x->feature != y->feature) return x->feature < y->feature ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Totals per feature, summed in double in model order. */
static int build_importance(rk_gbdt *m, loader *L, rk_err *err)
{
    size_t n = L->splits.n, u = 0;
    if (n == 0) return 0;
    qsort(L->splits.v, n, sizeof *L->splits.v, cmp_split);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || L->splits.v[i].feature != L->splits.v[i - 1].feature) u++;
    m->imp_feature = rk_malloc(u * sizeof *m->imp_feature);
    m->imp = rk_calloc(3 * u, sizeof *m->imp);
    if (!m->imp_feature || !m->imp) return rk_err_set(err, RK_ENOMEM, PFX "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const split_stat *sp = &L->splits.v[i];
        if (i > 0 && sp->feature != L->splits.v[i - 1].feature) k++;
        m->imp_feature[k] = sp->feature;
        m->imp[3 * k] += 1;
        m->imp[3 * k + 1] += sp->gain;
        m->imp[3 * k + 2] += sp->cover;
    }
    m->nimp = u;
    return 0;
}

/* ---- the whole document ---------------------------------------------------- */

static int json_error_to_rc(const json_error_t *je)
{
    return json_error_code(je) == json_error_out_of_memory ? RK_ENOMEM : RK_EPARSE;
}

static int load_document(rk_gbdt *m, json_t *root, loader *L, rk_err *err)
{
    int rc = 0;
    json_t *learner = get_typed(root, "learner", JSON_OBJECT, "(root)", &rc, err);
    if (!learner) return rc;
    json_t *ver = json_object_get(root, "version");
    if (ver && (!json_is_array(ver) || !json_is_integer(json_array_get(ver, 0))))
        return rk_err_set(err, RK_EPARSE, PFX "version: expected [major, minor, patch]");
    if (ver && json_integer_value(json_array_get(ver, 0)) > 2)
        return rk_err_set(err, RK_EUNSUPPORTED, PFX "XGBoost version %lld models are not supported",
                          (long long)json_integer_value(json_array_get(ver, 0)));

    /* Objective. */
    json_t *obj = get_typed(learner, "objective", JSON_OBJECT, "learner", &rc, err);
    if (!obj) return rc;
    json_t *oname = get_typed(obj, "name", JSON_STRING, "learner.objective", &rc, err);
    if (!oname) return rc;
    m->objective = NULL;
    for (size_t i = 0; i < sizeof objectives / sizeof objectives[0]; i++)
        if (strcmp(json_string_value(oname), objectives[i].name) == 0) {
            m->objective = objectives[i].name;
            m->logistic = objectives[i].logistic;
        }
    if (!m->objective)
        return rk_err_set(err, RK_EUNSUPPORTED, PFX "objective '%.60s' is not supported",
                          json_string_value(oname));

    /* Model parameters. */
    const char *mpp = "learner.learner_model_param";
    json_t *mp = get_typed(learner, "learner_model_param", JSON_OBJECT, "learner", &rc, err);
    if (!mp) return rc;
    uint64_t nf, ncls = 0, ntgt = 1;
    if ((rc = param_u64(mp, "num_feature", mpp, INT32_MAX, &nf, err)) != 0)
        return rc;
    if (json_object_get(mp, "num_class") &&
        (rc = param_u64(mp, "num_class", mpp, UINT32_MAX, &ncls, err)) != 0)
        return rc;
    if (json_object_get(mp, "num_target") &&
        (rc = param_u64(mp, "num_target", mpp, UINT32_MAX, &ntgt, err)) != 0)
        return rc;
    if (ncls > 1)
        return rk_err_set(err, RK_EUNSUPPORTED,
                          PFX "multi-class models (num_class %llu) are not supported",
                          (unsigned long long)ncls);
    if (ntgt != 1)
        return rk_err_set(err, RK_EUNSUPPORTED,
                          PFX "models with %llu targets are not supported",
                          (unsigned long long)ntgt);
    json_t *bs = get_typed(mp, "base_score", JSON_STRING, mpp, &rc, err);
    if (!bs) return rc;
    double bsd;
    if (str_f64(bs, &bsd) != 0 || !isfinite((float)bsd))
        return rk_err_set(err, RK_ECORRUPT, PFX "%s.base_score: bad value '%.40s'", mpp,
                          json_string_value(bs));
    m->nfeatures = (uint32_t)nf;
    m->base_score = (float)bsd;
    if (m->logistic) {
        /* XGBoost's LogisticRegression::ProbToMargin, in float. */
        if (!(m->base_score > 0.0f && m->base_score < 1.0f))
            return rk_err_set(err, RK_ECORRUPT,
                              PFX "base_score %g must be in (0, 1) for %s",
                              bsd, m->objective);
        m->forest.base_margin = -logf(1.0f / m->base_score - 1.0f);
    } else {
        m->forest.base_margin = m->base_score;
    }

    json_t *ftypes = json_object_get(learner, "feature_types");
    if (ftypes && json_is_array(ftypes))
        for (size_t i = 0; i < json_array_size(ftypes); i++) {
            json_t *v = json_array_get(ftypes, i);
            if (json_is_string(v) && strcmp(json_string_value(v), "c") == 0)
                return rk_err_set(err, RK_EUNSUPPORTED,
                                  PFX "feature %zu is categorical: not supported", i);
        }

    /* Early-stopping record, if any. */
    m->best_iteration = -1;
    m->best_score = NAN;
    json_t *attrs = json_object_get(learner, "attributes");
    if (attrs && json_is_object(attrs)) {
        json_t *v = json_object_get(attrs, "best_iteration");
        uint64_t u;
        if (v && (!json_is_string(v) || str_u64(v, &u) != 0 || u > INT32_MAX))
            return rk_err_set(err, RK_ECORRUPT, PFX "attributes.best_iteration: bad value");
        if (v) m->best_iteration = (int64_t)u;
        v = json_object_get(attrs, "best_score");
        double d;
        if (v && (!json_is_string(v) || str_f64(v, &d) != 0))
            return rk_err_set(err, RK_ECORRUPT, PFX "attributes.best_score: bad value");
        if (v) m->best_score = d;
    }

    /* Booster. */
    json_t *gb = get_typed(learner, "gradient_booster", JSON_OBJECT, "learner", &rc, err);
    if (!gb) return rc;
    json_t *gname = get_typed(gb, "name", JSON_STRING, "learner.gradient_booster", &rc, err);
    if (!gname) return rc;
    if (strcmp(json_string_value(gname), "gbtree") != 0)
        return rk_err_set(err, RK_EUNSUPPORTED, PFX "booster '%.40s' is not supported "
                                                    "(only gbtree)", json_string_value(gname));
    const char *mdp = "learner.gradient_booster.model";
    json_t *model = get_typed(gb, "model", JSON_OBJECT, "learner.gradient_booster", &rc, err);
    if (!model) return rc;
    json_t *trees = get_typed(model, "trees", JSON_ARRAY, mdp, &rc, err);
    if (!trees) return rc;
    json_t *tinfo = get_typed(model, "tree_info", JSON_ARRAY, mdp, &rc, err);
    if (!tinfo) return rc;
    size_t ntrees = json_array_size(trees);
    if (json_array_size(tinfo) != ntrees)
        return rk_err_set(err, RK_ECORRUPT, PFX "%zu trees but %zu tree_info entries",
                          ntrees, json_array_size(tinfo));
    for (size_t t = 0; t < ntrees; t++) {
        json_t *v = json_array_get(tinfo, t);
        if (!json_is_integer(v))
            return rk_err_set(err, RK_EPARSE, PFX "tree_info[%zu]: expected an integer", t);
        if (json_integer_value(v) != 0)
            return rk_err_set(err, RK_EUNSUPPORTED,
                              PFX "tree %zu belongs to output group %lld: multi-output "
                                  "models are not supported", t,
                              (long long)json_integer_value(v));
    }
    uint64_t npar = 1;
    json_t *gp = json_object_get(model, "gbtree_model_param");
    if (gp) {
        const char *gpp = "learner.gradient_booster.model.gbtree_model_param";
        uint64_t nt;
        if ((rc = param_u64(gp, "num_trees", gpp, SIZE_MAX, &nt, err)) != 0) return rc;
        if (nt != ntrees)
            return rk_err_set(err, RK_ECORRUPT, PFX "num_trees says %llu, %zu trees present",
                              (unsigned long long)nt, ntrees);
        if (json_object_get(gp, "num_parallel_tree") &&
            (rc = param_u64(gp, "num_parallel_tree", gpp, UINT32_MAX, &npar, err)) != 0)
            return rc;
        if (npar == 0) npar = 1;
    }

    /* Trees. */
    L->err = err;
    L->nfeatures = m->nfeatures;
    m->tree_off = rk_malloc((ntrees + 1) * sizeof *m->tree_off);
    m->tree_depth = rk_malloc((ntrees ? ntrees : 1) * sizeof *m->tree_depth);
    if (!m->tree_off || !m->tree_depth)
        return rk_err_set(err, RK_ENOMEM, PFX "out of memory");
    for (size_t t = 0; t < ntrees; t++) {
        m->tree_off[t] = (uint32_t)L->nodes.n;
        if ((rc = load_tree(L, json_array_get(trees, t), t, &m->tree_depth[t])) != 0)
            return rc;
        if (L->nodes.n > UINT32_MAX)
            return rk_err_set(err, RK_ELIMIT, PFX "more than 2^32 nodes");
        if (m->tree_depth[t] > m->max_depth) m->max_depth = m->tree_depth[t];
    }
    m->tree_off[ntrees] = (uint32_t)L->nodes.n;
    if ((rc = build_importance(m, L, err)) != 0) return rc;
    m->ntrees = ntrees;
    m->nnodes = L->nodes.n;
    /* Without an early-stopping record the last round is the best one. */
    if (m->best_iteration < 0) m->best_iteration = (int64_t)(ntrees / npar) - 1;
    return 0;
}

/* ---- complete layout (rank_int.h) -------------------------------------------- */

static int build_complete(rk_gbdt *m, rk_err *err)
{
    size_t nt = m->ntrees, nin = 0, nlv = 0;
    m->complete_off = rk_malloc((nt ? nt : 1) * sizeof *m->complete_off);
    m->cleaf_off = rk_malloc((nt ? nt : 1) * sizeof *m->cleaf_off);
    if (!m->complete_off || !m->cleaf_off) return rk_err_set(err, RK_ENOMEM, PFX "out of memory");
    for (size_t t = 0; t < nt; t++) {
        uint32_t d = m->tree_depth[t];
        size_t in = ((size_t)1 << d) - 1;
        if (d > RK__GBDT_COMPLETE_MAX || nin + in >= RK__GBDT_GENERAL ||
            nlv + in + 1 >= RK__GBDT_GENERAL) {
            m->complete_off[t] = m->cleaf_off[t] = RK__GBDT_GENERAL;
            continue;
        }
        m->complete_off[t] = (uint32_t)nin;
        m->cleaf_off[t] = (uint32_t)nlv;
        nin += in;
        nlv += in + 1;
    }
    m->cnodes = rk_malloc((nin ? nin : 1) * sizeof *m->cnodes);
    m->cleaves = rk_malloc((nlv ? nlv : 1) * sizeof *m->cleaves);
    if (!m->cnodes || !m->cleaves) return rk_err_set(err, RK_ENOMEM, PFX "out of memory");
    /* map[p]: the general node at heap position p, or the leaf it pads. */
    uint32_t map[(size_t)2 << RK__GBDT_COMPLETE_MAX];
    for (size_t t = 0; t < nt; t++) {
        if (m->complete_off[t] == RK__GBDT_GENERAL) continue;
        const rk__rank_gbdt_node *nd = m->nodes + m->tree_off[t];
        rk__rank_gbdt_cnode *cn = m->cnodes + m->complete_off[t];
        float *lv = m->cleaves + m->cleaf_off[t];
        size_t in = ((size_t)1 << m->tree_depth[t]) - 1;
        map[0] = 0;
        for (size_t p = 0; p < in; p++) {
            uint32_t g = map[p];
            if (nd[g].left != g) {
                cn[p].col = nd[g].col;
                cn[p].thr = nd[g].thr;
                map[2 * p + 1] = nd[g].left;
                map[2 * p + 2] = nd[g].left + 1;
            } else {
                /* Both ways lead to copies of the same leaf. */
                cn[p].col = 0;
                cn[p].thr = 0;
                map[2 * p + 1] = map[2 * p + 2] = g;
            }
        }
        /* At the tree's full depth every node is a leaf. */
        for (size_t q = 0; q <= in; q++) lv[q] = nd[map[in + q]].value;
    }
    return 0;
}

int rk_gbdt_from_xgb_json(rk_gbdt **out, const char *json, size_t n, rk_err *err)
{
    if (!out) return rk_err_set(err, RK_EINVAL, "gbdt: NULL out");
    *out = NULL;
    if (!json && n) return rk_err_set(err, RK_EINVAL, "gbdt: NULL json");
    rk_gbdt *m = rk_calloc(1, sizeof *m);
    if (!m) return rk_err_set(err, RK_ENOMEM, "gbdt: out of memory");
    loader L;
    memset(&L, 0, sizeof L);
    int rc = rk__rank_gbdt_kernels_select(&m->kern, err);
    if (rc != 0) goto fail;
    m->json = rk_malloc(n + 1);
    if (!m->json) {
        rc = rk_err_set(err, RK_ENOMEM, "gbdt: out of memory");
        goto fail;
    }
    if (n) memcpy(m->json, json, n);
    m->json[n] = '\0';
    m->json_len = n;

    json_error_t je;
    json_t *root = json_loadb(json ? json : "", n, 0, &je);
    if (!root) {
        rc = json_error_to_rc(&je);
        if (rc == RK_ENOMEM) rk_err_set(err, rc, PFX "out of memory");
        else rk_err_set(err, rc, PFX "line %d column %d: %s", je.line, je.column, je.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        rc = rk_err_set(err, RK_EPARSE, PFX "expected a JSON object");
        goto fail;
    }
    rc = load_document(m, root, &L, err);
    json_decref(root);
    if (rc != 0) goto fail;

    m->nodes = L.nodes.v;
    L.nodes.v = NULL;
    if (!m->nodes) { /* a model without trees still needs a valid array */
        m->nodes = rk_malloc(sizeof *m->nodes);
        if (!m->nodes) {
            rc = rk_err_set(err, RK_ENOMEM, "gbdt: out of memory");
            goto fail;
        }
    }
    if ((rc = build_complete(m, err)) != 0) goto fail;
    m->forest.nodes = m->nodes;
    m->forest.tree_off = m->tree_off;
    m->forest.tree_depth = m->tree_depth;
    m->forest.ntrees = m->ntrees;
    m->forest.nfeatures = m->nfeatures;
    m->forest.cnodes = m->cnodes;
    m->forest.cleaves = m->cleaves;
    m->forest.complete_off = m->complete_off;
    m->forest.cleaf_off = m->cleaf_off;
    rk_free(L.newid);
    rk_free(L.order);
    rk_free(L.level);
    rk_vec_free(&L.splits);
    *out = m;
    return 0;
fail:
    rk_vec_free(&L.nodes);
    rk_vec_free(&L.splits);
    rk_free(L.newid);
    rk_free(L.order);
    rk_free(L.level);
    rk_gbdt_destroy(m);
    return rc;
}

void rk_gbdt_destroy(rk_gbdt *m)
{
    if (!m) return;
    rk_free(m->nodes);
    rk_free(m->cnodes);
    rk_free(m->cleaves);
    rk_free(m->complete_off);
    rk_free(m->cleaf_off);
    rk_free(m->tree_off);
    rk_free(m->tree_depth);
    rk_free(m->imp_feature);
    rk_free(m->imp);
    rk_free(m->json);
    rk_free(m);
}

/* ---- prediction -------------------------------------------------------------- */

/* XGBoost's common::Sigmoid (1.7): the exponent is capped so expf cannot
 * overflow, and a tiny epsilon guards the division. */
static inline float xgb_sigmoid(float x)
{
    float e = fminf(-x, 88.7f);
    return 1.0f / (expf(e) + 1.0f + 1e-16f);
}

int rk_gbdt_predict(const rk_gbdt *m, const rk_dmat *x, float *out, unsigned flags)
{
    if (!m || !x || (flags & ~RK_GBDT_MARGIN)) return RK_EINVAL;
    if (x->ncols != m->nfeatures || x->stride < x->ncols) return RK_EINVAL;
    if (x->nrows == 0) return 0;
    if (!x->x || !out) return RK_EINVAL;
    m->kern->margins(&m->forest, x->x, x->stride, x->nrows, out);
    if (m->logistic && !(flags & RK_GBDT_MARGIN))
        for (size_t i = 0; i < x->nrows; i++) out[i] = xgb_sigmoid(out[i]);
    return 0;
}

/* ---- saved format ------------------------------------------------------------ */

#define MAGIC "RKGBDT\r\n"
#define VERSION 1u
#define HEADER 32u





int rk_gbdt_save(const rk_gbdt *m, rk_buf *out)
{
    if (!m || !out) return RK_EINVAL;
    unsigned char h[HEADER];
    memcpy(h, MAGIC, 8);
    rk_put_u32(h + 8, VERSION);
    rk_put_u32(h + 12, HEADER);
    rk_put_u64(h + 16, m->json_len);
    rk_put_u64(h + 24, rk_hash64(m->json, m->json_len, 0));
    /* Reserve both parts first so the append is all or nothing. */
    int rc = rk_buf_reserve(out, HEADER + m->json_len);
    if (rc == 0) rc = rk_buf_append(out, h, HEADER);
    if (rc == 0) rc = rk_buf_append(out, m->json, m->json_len);
    return rc;
}

int rk_gbdt_load(rk_gbdt **out, const void *p, size_t n, rk_err *err)
{
    if (!out) return rk_err_set(err, RK_EINVAL, "gbdt: NULL out");
    *out = NULL;
    const unsigned char *b = p;
    if (!b && n) return rk_err_set(err, RK_EINVAL, "gbdt: NULL input");
    if (n < 8 || memcmp(b, MAGIC, 8) != 0)
        return rk_err_set(err, RK_ECORRUPT, "gbdt model: bad magic (not a rankd GBDT model)");
    if (n < HEADER)
        return rk_err_set(err, RK_ECORRUPT, "gbdt model: truncated header (%zu bytes)", n);
    uint32_t ver = rk_get_u32(b + 8), hsz = rk_get_u32(b + 12);
    if (ver != VERSION)
        return rk_err_set(err, RK_EVERSION, "gbdt model: format version %u, this build reads %u",
                          ver, VERSION);
    if (hsz != HEADER)
        return rk_err_set(err, RK_ECORRUPT, "gbdt model: header size %u, expected %u", hsz,
                          HEADER);
    uint64_t len = rk_get_u64(b + 16), sum = rk_get_u64(b + 24);
    if (len != n - HEADER)
        return rk_err_set(err, RK_ECORRUPT,
                          "gbdt model: header says %llu bytes of model, %zu present%s",
                          (unsigned long long)len, n - HEADER,
                          len > n - HEADER ? " (truncated)" : "");
    if (rk_hash64(b + HEADER, (size_t)len, 0) != sum)
        return rk_err_set(err, RK_ECORRUPT, "gbdt model: checksum mismatch");
    int rc = rk_gbdt_from_xgb_json(out, (const char *)b + HEADER, (size_t)len, err);
    /* Inside a checksummed file, a model that does not parse is damage. */
    if (rc == RK_EPARSE) {
        rc = RK_ECORRUPT;
        if (err) err->code = rc;
    }
    if (rc != 0) rk_err_prefix(err, "gbdt model: ");
    return rc;
}

/* ---- introspection --------------------------------------------------------------- */

const char *rk_gbdt_xgb_json(const rk_gbdt *m, size_t *len)
{
    if (len) *len = m->json_len;
    return m->json;
}

void rk_gbdt_info_get(const rk_gbdt *m, rk_gbdt_info *out)
{
    memset(out, 0, sizeof *out);
    out->ntrees = m->ntrees;
    out->nfeatures = m->nfeatures;
    out->nodes = m->nnodes;
    out->max_depth = m->max_depth;
    out->objective = m->objective;
    out->base_score = m->base_score;
    out->best_iteration = m->best_iteration;
    out->best_score = m->best_score;
    out->kernels = m->kern->name;
}

int rk_gbdt_importance(const rk_gbdt *m, rk_gbdt_importance_type type, double *out,
                       size_t n)
{
    if (!m || (m->nfeatures && !out) || n < m->nfeatures || (unsigned)type > 2)
        return RK_EINVAL;
    for (size_t i = 0; i < m->nfeatures; i++) out[i] = 0;
    for (size_t i = 0; i < m->nimp; i++) out[m->imp_feature[i]] = m->imp[3 * i + type];
    return 0;
}

const rk__rank_forest *rk__rank_gbdt_forest(const rk_gbdt *m) { return &m->forest; }

const rk__rank_gbdt_kernels *rk__rank_gbdt_kernels_of(const rk_gbdt *m) { return m->kern; }
