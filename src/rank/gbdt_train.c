/*
 * gbdt_train.c — GBDT training through XGBoost's C API.
 *
 * The inputs are checked here first (labels, weights, groups, parameter
 * ranges), so most mistakes get a message naming the field rather than
 * XGBoost's; whatever XGBoost still refuses comes back with its own text
 * (XGBGetLastError) in the rk_err. XGBoost allocates with its own C++
 * allocator, outside rk_malloc's accounting; every handle is freed on every
 * path. The trained booster leaves as its JSON model, which
 * rk_gbdt_from_xgb_json turns into a serving model, so trained and loaded
 * models go through the same validation and layout code.
 *
 * Determinism: XGBoost's CPU builders are deterministic for a given seed
 * and thread count; the seed is always passed explicitly. Early stopping
 * keeps rounds [0, best] by slicing the booster, so the saved model is
 * exactly what is served.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xgboost/c_api.h>

#include "rank/rank_int.h"

void rk_gbdt_params_default(rk_gbdt_params *p)
{
    memset(p, 0, sizeof *p);
    p->objective = RK_GBDT_BINARY;
    p->ntrees = 100;
    p->max_depth = 6;
    p->eta = 0.3;
    p->min_child_weight = 1;
    p->subsample = 1;
    p->colsample_bytree = 1;
    p->lambda = 1;
    p->alpha = 0;
    p->gamma = 0;
    p->scale_pos_weight = 1;
    p->base_score = NAN;
    p->max_bin = 256;
    p->tree_method = RK_GBDT_HIST;
    p->nthread = 0;
    p->seed = 0;
    p->early_stopping_rounds = 0;
    p->eval_metric = RK_GBDT_METRIC_DEFAULT;
    p->eval_at = 10;
    p->log = NULL;
}

static const char *objective_name(rk_gbdt_objective o)
{
    switch (o) {
    case RK_GBDT_BINARY: return "binary:logistic";
    case RK_GBDT_RANK_NDCG: return "rank:ndcg";
    case RK_GBDT_REGRESSION: return "reg:squarederror";
    }
    return NULL;
}

static rk_gbdt_metric default_metric(rk_gbdt_objective o)
{
    return o == RK_GBDT_BINARY      ? RK_GBDT_METRIC_LOGLOSS
           : o == RK_GBDT_RANK_NDCG ? RK_GBDT_METRIC_NDCG
                                    : RK_GBDT_METRIC_RMSE;
}

/* ---- checks ---------------------------------------------------------------------- */

static int in_range(double v, double lo, double hi) { return v >= lo && v <= hi; }

static int check_params(const rk_gbdt_params *p, rk_err *err)
{
#define BAD(...) return rk_err_set(err, RK_EINVAL, "gbdt: " __VA_ARGS__)
    if (!objective_name(p->objective)) BAD("unknown objective %d", (int)p->objective);
    if (p->ntrees < 1 || p->ntrees > 1000000) BAD("ntrees %u: expected 1..1000000", p->ntrees);
    if (p->max_depth < 1 || p->max_depth > 30) BAD("max_depth %u: expected 1..30", p->max_depth);
    if (!(p->eta > 0 && p->eta <= 1)) BAD("eta %g: expected (0, 1]", p->eta);
    if (!in_range(p->min_child_weight, 0, 1e30)) BAD("min_child_weight %g: expected >= 0", p->min_child_weight);
    if (!(p->subsample > 0 && p->subsample <= 1)) BAD("subsample %g: expected (0, 1]", p->subsample);
    if (!(p->colsample_bytree > 0 && p->colsample_bytree <= 1))
        BAD("colsample_bytree %g: expected (0, 1]", p->colsample_bytree);
    if (!in_range(p->lambda, 0, 1e30)) BAD("lambda %g: expected >= 0", p->lambda);
    if (!in_range(p->alpha, 0, 1e30)) BAD("alpha %g: expected >= 0", p->alpha);
    if (!in_range(p->gamma, 0, 1e30)) BAD("gamma %g: expected >= 0", p->gamma);
    if (!(p->scale_pos_weight > 0 && p->scale_pos_weight < 1e30))
        BAD("scale_pos_weight %g: expected > 0", p->scale_pos_weight);
    if (!isnan(p->base_score)) {
        if (!isfinite(p->base_score)) BAD("base_score must be finite");
        if (p->objective == RK_GBDT_BINARY && !(p->base_score > 0 && p->base_score < 1))
            BAD("base_score %g: a probability in (0, 1) for binary", p->base_score);
    }
    if (p->max_bin < 2 || p->max_bin > 65535) BAD("max_bin %u: expected 2..65535", p->max_bin);
    if ((unsigned)p->tree_method > RK_GBDT_EXACT) BAD("unknown tree_method %d", (int)p->tree_method);
    if (p->nthread > 4096) BAD("nthread %u: expected 0..4096", p->nthread);
    if ((unsigned)p->eval_metric > RK_GBDT_METRIC_RMSE) BAD("unknown eval_metric %d", (int)p->eval_metric);
    if (p->eval_at > 100000) BAD("eval_at %u: expected 0..100000", p->eval_at);
    return 0;
#undef BAD
}

/* use_groups: the set's query groups go to XGBoost (the ranking objective,
 * or the ndcg/map metric on the validation set); they are required then,
 * and weights are per group. Otherwise groups are ignored and weights are
 * per row. */
static int check_data(const rk_gbdt_data *d, const char *what, const rk_gbdt_params *p,
                      int use_groups, rk_err *err)
{
    const rk_dmat *x = &d->x;
    if (x->nrows == 0) return rk_err_set(err, RK_EINVAL, "gbdt: %s: no rows", what);
    if (x->ncols == 0) return rk_err_set(err, RK_EINVAL, "gbdt: %s: no columns", what);
    if (!x->x || !d->y) return rk_err_set(err, RK_EINVAL, "gbdt: %s: NULL x or y", what);
    if (x->stride < x->ncols)
        return rk_err_set(err, RK_EINVAL, "gbdt: %s: stride %zu < ncols %zu", what,
                          x->stride, x->ncols);
    if (x->nrows > UINT32_MAX || x->ncols > UINT32_MAX)
        return rk_err_set(err, RK_EINVAL, "gbdt: %s: too many rows or columns", what);
    for (size_t i = 0; i < x->nrows; i++) {
        float y = d->y[i];
        if (!isfinite(y)) return rk_err_set(err, RK_EINVAL, "gbdt: %s: label %zu is not finite", what, i);
        if (p->objective == RK_GBDT_BINARY && !(y >= 0 && y <= 1))
            return rk_err_set(err, RK_EINVAL, "gbdt: %s: label %zu is %g, binary needs [0, 1]",
                              what, i, (double)y);
        if (p->objective == RK_GBDT_RANK_NDCG && (y < 0 || y > 31))
            return rk_err_set(err, RK_EINVAL,
                              "gbdt: %s: label %zu is %g, rank:ndcg needs a relevance "
                              "grade in [0, 31]", what, i, (double)y);
    }
    if (use_groups) {
        if (!d->groups)
            return rk_err_set(err, RK_EINVAL, "gbdt: %s: query groups are required (%s)", what,
                              p->objective == RK_GBDT_RANK_NDCG ? "rank:ndcg" : "ndcg/map metric");
        uint64_t sum = 0;
        for (size_t g = 0; g < d->ngroups; g++) {
            if (d->groups[g] == 0)
                return rk_err_set(err, RK_EINVAL, "gbdt: %s: group %zu is empty", what, g);
            sum += d->groups[g];
        }
        if (sum != x->nrows)
            return rk_err_set(err, RK_EINVAL, "gbdt: %s: group sizes add up to %llu, not %zu rows",
                              what, (unsigned long long)sum, x->nrows);
        /* XGBoost then weighs whole groups; per-row weights of another
         * objective have no meaning there. */
        if (d->w && p->objective != RK_GBDT_RANK_NDCG)
            return rk_err_set(err, RK_EINVAL,
                              "gbdt: %s: weights cannot be combined with the ndcg/map metric "
                              "unless the objective is rank:ndcg", what);
    }
    if (d->w) {
        size_t nw = use_groups ? d->ngroups : x->nrows;
        for (size_t i = 0; i < nw; i++)
            if (!(d->w[i] >= 0 && d->w[i] < INFINITY))
                return rk_err_set(err, RK_EINVAL, "gbdt: %s: weight %zu is %g", what, i,
                                  (double)d->w[i]);
    }
    return 0;
}

/* ---- XGBoost calls -------------------------------------------------------------- */

static int xgb_fail(rk_err *err, int code, const char *what)
{
    return rk_err_set(err, code, "gbdt: xgboost %s: %s", what, XGBGetLastError());
}

/* A DMatrix of d with its labels, weights and groups. XGBoost wants
 * contiguous rows: a strided matrix is packed into a temporary copy. */
static int make_dmatrix(const rk_gbdt_data *d, int use_groups, DMatrixHandle *out,
                        rk_err *err)
{
    const rk_dmat *x = &d->x;
    float *packed = NULL;
    const float *src = x->x;
    *out = NULL;
    if (x->stride != x->ncols) {
        if (x->nrows > SIZE_MAX / sizeof(float) / x->ncols)
            return rk_err_set(err, RK_EINVAL, "gbdt: matrix too large");
        packed = rk_malloc(x->nrows * x->ncols * sizeof(float));
        if (!packed) return rk_err_set(err, RK_ENOMEM, "gbdt: out of memory");
        for (size_t i = 0; i < x->nrows; i++)
            memcpy(packed + i * x->ncols, x->x + i * x->stride, x->ncols * sizeof(float));
        src = packed;
    }
    DMatrixHandle h = NULL;
    int rc = 0;
    if (XGDMatrixCreateFromMat(src, (bst_ulong)x->nrows, (bst_ulong)x->ncols, NAN, &h) != 0)
        rc = xgb_fail(err, RK_EINVAL, "DMatrix");
    rk_free(packed);
    if (rc == 0 && XGDMatrixSetFloatInfo(h, "label", d->y, (bst_ulong)x->nrows) != 0)
        rc = xgb_fail(err, RK_EINVAL, "labels");
    if (rc == 0 && d->w) {
        size_t nw = use_groups ? d->ngroups : x->nrows;
        if (XGDMatrixSetFloatInfo(h, "weight", d->w, (bst_ulong)nw) != 0)
            rc = xgb_fail(err, RK_EINVAL, "weights");
    }
    if (rc == 0 && use_groups &&
        XGDMatrixSetUIntInfo(h, "group", d->groups, (bst_ulong)d->ngroups) != 0)
        rc = xgb_fail(err, RK_EINVAL, "groups");
    if (rc != 0) {
        if (h) XGDMatrixFree(h);
        return rc;
    }
    *out = h;
    return 0;
}

static int set_param(BoosterHandle b, const char *k, const char *v, rk_err *err)
{
    if (XGBoosterSetParam(b, k, v) != 0) {
        char what[96];
        snprintf(what, sizeof what, "parameter %s=%s", k, v);
        return xgb_fail(err, RK_EINVAL, what);
    }
    return 0;
}

static int set_paramf(BoosterHandle b, const char *k, double v, rk_err *err)
{
    char s[40];
    snprintf(s, sizeof s, "%.17g", v);
    return set_param(b, k, s, err);
}

static int set_paramu(BoosterHandle b, const char *k, unsigned long long v, rk_err *err)
{
    char s[24];
    snprintf(s, sizeof s, "%llu", v);
    return set_param(b, k, s, err);
}

static void metric_name(rk_gbdt_metric m, uint32_t at, char *out, size_t n)
{
    switch (m) {
    case RK_GBDT_METRIC_LOGLOSS: snprintf(out, n, "logloss"); break;
    case RK_GBDT_METRIC_AUC: snprintf(out, n, "auc"); break;
    case RK_GBDT_METRIC_RMSE: snprintf(out, n, "rmse"); break;
    case RK_GBDT_METRIC_NDCG:
    case RK_GBDT_METRIC_MAP:
        if (at) snprintf(out, n, "%s@%u", m == RK_GBDT_METRIC_NDCG ? "ndcg" : "map", at);
        else snprintf(out, n, "%s", m == RK_GBDT_METRIC_NDCG ? "ndcg" : "map");
        break;
    default: snprintf(out, n, "?"); break;
    }
}

static int set_params(BoosterHandle b, const rk_gbdt_params *p, rk_gbdt_metric metric,
                      int have_valid, rk_err *err)
{
    static const char *const methods[] = {"hist", "approx", "exact"};
    int rc;
    /* XGBoost prints warnings and progress on stderr unless told not to;
     * errors still reach us through XGBGetLastError. */
    if ((rc = set_param(b, "verbosity", "0", err)) ||
        (rc = set_param(b, "objective", objective_name(p->objective), err)) ||
        (rc = set_param(b, "booster", "gbtree", err)) ||
        (rc = set_param(b, "tree_method", methods[p->tree_method], err)) ||
        (rc = set_paramu(b, "max_depth", p->max_depth, err)) ||
        (rc = set_paramf(b, "eta", p->eta, err)) ||
        (rc = set_paramf(b, "min_child_weight", p->min_child_weight, err)) ||
        (rc = set_paramf(b, "subsample", p->subsample, err)) ||
        (rc = set_paramf(b, "colsample_bytree", p->colsample_bytree, err)) ||
        (rc = set_paramf(b, "lambda", p->lambda, err)) ||
        (rc = set_paramf(b, "alpha", p->alpha, err)) ||
        (rc = set_paramf(b, "gamma", p->gamma, err)) ||
        (rc = set_paramu(b, "max_bin", p->max_bin, err)) ||
        (rc = set_paramu(b, "seed", p->seed, err)))
        return rc;
    if (p->nthread && (rc = set_paramu(b, "nthread", p->nthread, err))) return rc;
    if (!isnan(p->base_score) && (rc = set_paramf(b, "base_score", p->base_score, err)))
        return rc;
    /* Only the logistic objectives read it; XGBoost warns about unused
     * parameters otherwise. */
    if (p->objective == RK_GBDT_BINARY &&
        (rc = set_paramf(b, "scale_pos_weight", p->scale_pos_weight, err)))
        return rc;
    if (have_valid) {
        char name[32];
        metric_name(metric, p->eval_at, name, sizeof name);
        if ((rc = set_param(b, "eval_metric", name, err))) return rc;
    }
    return 0;
}

/* The value after the last ':' of "[3]\tvalid-ndcg@10:0.8123". */
static int parse_eval(const char *s, double *out)
{
    const char *c = s ? strrchr(s, ':') : NULL;
    if (!c) return -1;
    char *end;
    double v = strtod(c + 1, &end);
    if (end == c + 1 || isnan(v)) return -1;
    *out = v;
    return 0;
}

int rk_gbdt_train(rk_gbdt **out, const rk_gbdt_data *train, const rk_gbdt_data *valid,
                  const rk_gbdt_params *p, rk_err *err)
{
    if (!out) return rk_err_set(err, RK_EINVAL, "gbdt: NULL out");
    *out = NULL;
    if (!train || !p) return rk_err_set(err, RK_EINVAL, "gbdt: NULL train data or params");
    int rc = check_params(p, err);
    if (rc) return rc;
    rk_gbdt_metric metric = p->eval_metric == RK_GBDT_METRIC_DEFAULT
                                ? default_metric(p->objective)
                                : p->eval_metric;
    int ranked_metric = metric == RK_GBDT_METRIC_NDCG || metric == RK_GBDT_METRIC_MAP;
    int higher_better = metric == RK_GBDT_METRIC_AUC || ranked_metric;
    int tgroups = p->objective == RK_GBDT_RANK_NDCG, vgroups = tgroups || ranked_metric;
    if ((rc = check_data(train, "train", p, tgroups, err))) return rc;
    if (valid) {
        if (valid->x.ncols != train->x.ncols)
            return rk_err_set(err, RK_EINVAL, "gbdt: valid has %zu columns, train %zu",
                              valid->x.ncols, train->x.ncols);
        if ((rc = check_data(valid, "valid", p, vgroups, err))) return rc;
    } else if (p->early_stopping_rounds) {
        return rk_err_set(err, RK_EINVAL, "gbdt: early stopping needs a validation set");
    }

    DMatrixHandle dtrain = NULL, dvalid = NULL;
    BoosterHandle b = NULL, sliced = NULL;
    if ((rc = make_dmatrix(train, tgroups, &dtrain, err))) goto done;
    if (valid && (rc = make_dmatrix(valid, vgroups, &dvalid, err))) goto done;
    DMatrixHandle cache[2] = {dtrain, dvalid};
    if (XGBoosterCreate(cache, valid ? 2 : 1, &b) != 0) {
        rc = xgb_fail(err, RK_EINTERNAL, "booster");
        goto done;
    }
    if ((rc = set_params(b, p, metric, valid != NULL, err))) goto done;

    double best = NAN, last = NAN;
    uint32_t best_it = p->ntrees - 1, rounds = 0;
    for (uint32_t it = 0; it < p->ntrees; it++) {
        if (XGBoosterUpdateOneIter(b, (int)it, dtrain) != 0) {
            /* Data or parameters XGBoost refuses surface here. */
            rc = xgb_fail(err, RK_EINVAL, "training");
            goto done;
        }
        rounds = it + 1;
        if (!valid) continue;
        const char *names[1] = {"valid"}, *res = NULL;
        double v;
        if (XGBoosterEvalOneIter(b, (int)it, &dvalid, names, 1, &res) != 0) {
            rc = xgb_fail(err, RK_EINTERNAL, "evaluation");
            goto done;
        }
        if (parse_eval(res, &v) != 0) {
            rc = rk_err_set(err, RK_EINTERNAL, "gbdt: cannot read xgboost's evaluation '%.80s'",
                            res ? res : "");
            goto done;
        }
        last = v;
        if (isnan(best) || (higher_better ? v > best : v < best)) {
            best = v;
            best_it = it;
        }
        rk_log(p->log, RK_LOG_INFO, "gbdt", "round %u: %s (best %.6g at round %u)", it,
               res, best, best_it);
        if (p->early_stopping_rounds && it - best_it >= p->early_stopping_rounds) break;
    }
    /* Without early stopping every round is kept: the record is the last
     * round and its score. */
    if (!valid || !p->early_stopping_rounds) {
        best_it = rounds - 1;
        best = last;
    }

    BoosterHandle final = b;
    if (best_it + 1 < rounds) {
        if (XGBoosterSlice(b, 0, (int)best_it + 1, 1, &sliced) != 0) {
            rc = xgb_fail(err, RK_EINTERNAL, "slice");
            goto done;
        }
        final = sliced;
    }
    char s[40];
    snprintf(s, sizeof s, "%u", best_it);
    if (XGBoosterSetAttr(final, "best_iteration", s) != 0) {
        rc = xgb_fail(err, RK_EINTERNAL, "attribute");
        goto done;
    }
    if (valid) {
        snprintf(s, sizeof s, "%.17g", best);
        if (XGBoosterSetAttr(final, "best_score", s) != 0) {
            rc = xgb_fail(err, RK_EINTERNAL, "attribute");
            goto done;
        }
    }
    bst_ulong len = 0;
    const char *json = NULL;
    if (XGBoosterSaveModelToBuffer(final, "{\"format\":\"json\"}", &len, &json) != 0) {
        rc = xgb_fail(err, RK_EINTERNAL, "save");
        goto done;
    }
    rc = rk_gbdt_from_xgb_json(out, json, (size_t)len, err);
    if (rc != 0 && rc != RK_ENOMEM) {
        /* XGBoost wrote something we cannot serve: a bug on one side. */
        rk_err_prefix(err, "gbdt: trained model: ");
        if (err) err->code = RK_EINTERNAL;
        rc = RK_EINTERNAL;
    }
done:
    if (sliced) XGBoosterFree(sliced);
    if (b) XGBoosterFree(b);
    if (dvalid) XGDMatrixFree(dvalid);
    if (dtrain) XGDMatrixFree(dtrain);
    return rc;
}
