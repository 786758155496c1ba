/*
 * policy.c — the `loop:` config and the retraining decision: a pure
 * function of the options and what the loop has seen (time since the last
 * training, new labels, the drift verdict), so the policy is tested
 * without a server.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rk_loop.h"

void rk_loop_opts_default(rk_loop_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = "gbdt";
    o->on_drift = 1;
    o->cooldown_minutes = 5;
    o->drift_check_s = 30;
    o->min_drift_rows = 1000;
    o->on_concept_drift = 1;
    o->concept_window = 5000;
    o->concept_auc_drop = 0.05;
    o->concept_calibration = 0.25;
    o->concept_z = 3;
    o->online_refresh_s = 10;
    o->rollback = 1;
    o->rollback_margin = 0.02;
    o->rollback_min_labels = 1000;
}

int rk_loop_opts_from_conf(rk_loop_opts *o, const rk_conf_node *root,
                           rk_err *err)
{
    const rk_conf_node *n = root ? rk_conf_get(root, "loop") : NULL;
    if (!n) return 0;
    if (rk_conf_node_type(n) == RK_CONF_NULL) return 0;
    static const char *const allowed[] = {"enabled", "ranker", "kind", "args", "window",
                                          "every_minutes", "every_labels",
                                          "on_drift", "cooldown_minutes",
                                          "drift_check_s", "min_drift_rows",
                                          "online", "online_refresh_s", "online_half_life",
                                          "rollback",
                                          "rollback_margin", "rollback_relative",
                                          "rollback_min_labels", "on_concept_drift",
                                          "concept_window", "concept_auc_drop",
                                          "concept_calibration", "concept_z", NULL};
    static const char *const kinds[] = {"gbdt", "ftrl", "fm", NULL};
    int rc = rk_conf_check_keys(n, allowed, err);
    int k = 0;
    int64_t lab = 0, mdr = o->min_drift_rows;
    o->enabled = 1;
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(n, "enabled"), 1, &o->enabled, err);
    if (!rc) rc = rk_conf_as_str(rk_conf_get(n, "ranker"), o->ranker, &o->ranker, err);
    if (!rc) rc = rk_conf_as_enum(rk_conf_get(n, "kind"), 0, kinds, &k, err);
    if (!rc) o->kind = kinds[k];
    if (!rc) rc = rk_conf_as_duration_ms(rk_conf_get(n, "window"), 0, &o->window_ms, err);
    if (!rc) rc = rk_conf_as_float(rk_conf_get(n, "every_minutes"), 0,
                                   &o->every_minutes, err);
    if (!rc) rc = rk_conf_as_int_range(rk_conf_get(n, "every_labels"), 0, 0,
                                       INT64_MAX, &lab, err);
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(n, "on_drift"), 1, &o->on_drift, err);
    if (!rc) rc = rk_conf_as_float(rk_conf_get(n, "cooldown_minutes"),
                                   o->cooldown_minutes, &o->cooldown_minutes, err);
    if (!rc) rc = rk_conf_as_float(rk_conf_get(n, "drift_check_s"),
                                   o->drift_check_s, &o->drift_check_s, err);
    if (!rc) rc = rk_conf_as_int_range(rk_conf_get(n, "min_drift_rows"), mdr, 1,
                                       UINT32_MAX, &mdr, err);
    int64_t rml = (int64_t)o->rollback_min_labels, cw = o->concept_window;
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(n, "on_concept_drift"), o->on_concept_drift,
                                  &o->on_concept_drift, err);
    if (!rc) rc = rk_conf_as_int_range(rk_conf_get(n, "concept_window"), cw, 0,
                                       100000000, &cw, err);
    if (!rc) o->concept_window = (uint32_t)cw;
    static const char *const cnames[] = {"concept_auc_drop", "concept_calibration",
                                         "concept_z"};
    double *cvals[] = {&o->concept_auc_drop, &o->concept_calibration, &o->concept_z};
    for (int i = 0; i < 3 && !rc; i++) {
        const rk_conf_node *c = rk_conf_get(n, cnames[i]);
        rc = rk_conf_as_float(c, *cvals[i], cvals[i], err);
        if (!rc && (!(*cvals[i] >= 0) || !isfinite(*cvals[i])))
            return rk_conf_error(err, c, "must be a finite number >= 0");
    }
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(n, "online"), 0, &o->online, err);
    if (!rc) rc = rk_conf_as_float(rk_conf_get(n, "online_refresh_s"),
                                   o->online_refresh_s, &o->online_refresh_s, err);
    if (!rc) rc = rk_conf_as_duration_ms(rk_conf_get(n, "online_half_life"), 0,
                                         &o->online_half_life_ms, err);
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(n, "rollback"), 1, &o->rollback, err);
    if (!rc) rc = rk_conf_as_float(rk_conf_get(n, "rollback_margin"),
                                   o->rollback_margin, &o->rollback_margin, err);
    if (!rc) rc = rk_conf_as_bool(rk_conf_get(n, "rollback_relative"), 0,
                                  &o->rollback_relative, err);
    if (!rc) rc = rk_conf_as_int_range(rk_conf_get(n, "rollback_min_labels"), rml,
                                       1, INT64_MAX, &rml, err);
    if (rc) return rc;
    o->rollback_min_labels = (uint64_t)rml;
    if (!(o->online_refresh_s > 0) || !isfinite(o->online_refresh_s))
        return rk_conf_error(err, rk_conf_get(n, "online_refresh_s"),
                             "must be a number of seconds > 0");
    if (!(o->rollback_margin >= 0) || !isfinite(o->rollback_margin))
        return rk_conf_error(err, rk_conf_get(n, "rollback_margin"),
                             "must be a finite number >= 0");
    if (o->online && strcmp(o->kind, "gbdt") == 0)
        return rk_conf_error(err, rk_conf_get(n, "online"), "online learning "
                             "needs kind: ftrl or fm (trees do not learn online)");
    o->every_labels = (uint64_t)lab;
    o->min_drift_rows = (uint32_t)mdr;
    if (!(o->every_minutes >= 0) || !(o->cooldown_minutes >= 0) ||
        !(o->drift_check_s > 0) || !isfinite(o->every_minutes) ||
        !isfinite(o->cooldown_minutes) || !isfinite(o->drift_check_s))
        return rk_conf_error(err, n, "every_minutes and cooldown_minutes must "
                             "be >= 0, drift_check_s > 0");
    const rk_conf_node *a = rk_conf_get(n, "args");
    o->nargs = 0;
    if (a) {
        if (rk_conf_node_type(a) != RK_CONF_LIST)
            return rk_conf_error(err, a, "expected a list of `rankd train` "
                                 "options, e.g. [--trees, \"200\"]");
        for (size_t i = 0; i < rk_conf_len(a); i++) {
            if (o->nargs == RK_LOOP_MAX_ARGS)
                return rk_conf_error(err, a, "more than %d arguments",
                                     RK_LOOP_MAX_ARGS);
            const char *s;
            if ((rc = rk_conf_as_str(rk_conf_at(a, i, NULL), NULL, &s, err)))
                return rc;
            if (!s || !strcmp(s, "--data") || !strcmp(s, "--config") ||
                !strcmp(s, "--name") || !strcmp(s, "--ranker") ||
                !strcmp(s, "--from-log") || !strcmp(s, "--json") ||
                (o->window_ms && !strcmp(s, "--window")))
                return rk_conf_error(err, rk_conf_at(a, i, NULL), "'%s' is set "
                                     "by the loop itself", s ? s : "");
            o->args[o->nargs++] = s;
        }
    }
    return 0;
}

const char *rk_loop_trigger_name(rk_loop_trigger t)
{
    switch (t) {
    case RK_LOOP_PERIODIC: return "periodic";
    case RK_LOOP_LABELS: return "labels";
    case RK_LOOP_DRIFT: return "drift";
    case RK_LOOP_CONCEPT: return "concept_drift";
    case RK_LOOP_CATCH_UP: return "concept_catch_up";
    default: return "none";
    }
}

rk_loop_trigger rk_loop_decide(const rk_loop_opts *o, const rk_loop_state *s)
{
    if (!o->enabled || s->training) return RK_LOOP_NONE;
    double since_min = s->last_train_ms
                           ? (double)(s->now_ms - s->last_train_ms) / 60000.0
                           : INFINITY;
    if (s->last_train_ms && since_min < o->cooldown_minutes) return RK_LOOP_NONE;
    if (o->on_concept_drift && s->concept) return RK_LOOP_CONCEPT;
    if (o->on_concept_drift && s->change_ms > 0 && s->change_span_ms > 0 &&
        (!o->window_ms || s->change_span_ms < o->window_ms) &&
        s->now_ms - s->change_ms >= 2 * s->change_span_ms)
        return RK_LOOP_CATCH_UP;
    if (o->on_drift && s->drift && s->drift_rows >= o->min_drift_rows)
        return RK_LOOP_DRIFT;
    if (o->every_labels && s->new_labels >= o->every_labels) return RK_LOOP_LABELS;
    if (o->every_minutes > 0 && since_min >= o->every_minutes)
        return s->last_train_ms || s->new_labels ? RK_LOOP_PERIODIC : RK_LOOP_NONE;
    return RK_LOOP_NONE;
}

rk_loop_verdict rk_loop_rollback_check(const rk_loop_opts *o, double n_new,
                                       double logloss_new, double n_prev,
                                       double logloss_prev)
{
    double need = (double)o->rollback_min_labels;
    if (!o->rollback || !(n_new >= need) || !(n_prev >= need) ||
        !isfinite(logloss_new) || !isfinite(logloss_prev))
        return RK_LOOP_WAIT;
    double margin = o->rollback_relative ? o->rollback_margin * fabs(logloss_prev)
                                         : o->rollback_margin;
    return logloss_new > logloss_prev + margin ? RK_LOOP_ROLL_BACK : RK_LOOP_KEEP;
}

/* Hanley & McNeil (1982): the variance of an AUC from its positives and
 * negatives. */
static double auc_var(double a, double np, double nn)
{
    double q1 = a / (2 - a), q2 = 2 * a * a / (1 + a);
    return (a * (1 - a) + (np - 1) * (q1 - a * a) + (nn - 1) * (q2 - a * a)) /
           (np * nn);
}

rk_loop_verdict rk_loop_concept_check(const rk_loop_opts *o,
                                      const rk_concept_metrics *base,
                                      const rk_concept_metrics *recent,
                                      char *why, size_t cap)
{
    double w = (double)o->concept_window;
    if (why && cap) why[0] = 0;
    if (!(w > 0) || !(base->n >= w) || !(recent->n >= 0.75 * w)) return RK_LOOP_WAIT;
    int drift = 0;
    double drop = base->auc - recent->auc, z_auc = NAN;
    if (isfinite(drop)) {
        double v = auc_var(base->auc, base->positives, base->n - base->positives) +
                   auc_var(recent->auc, recent->positives, recent->n - recent->positives);
        z_auc = v > 0 ? drop / sqrt(v) : (drop > 0 ? INFINITY : 0);
        drift |= drop >= o->concept_auc_drop && drop > 0 && z_auc >= o->concept_z;
    }
    /* Σp/Σy of each window; its log's standard error is about
     * 1/sqrt(positives) (the predictions' sum varies far less). */
    double lr = NAN, z_cal = NAN;
    if (base->positives > 0 && recent->positives > 0 &&
        base->calibration > 0 && recent->calibration > 0) {
        lr = log(recent->calibration / base->calibration);
        z_cal = lr / sqrt(1 / base->positives + 1 / recent->positives);
        drift |= fabs(lr) >= log1p(o->concept_calibration) &&
                 fabs(z_cal) >= o->concept_z;
    }
    if (why && cap)
        snprintf(why, cap, "auc %.4f -> %.4f (z %.1f), calibration %.3f -> %.3f "
                 "(z %.1f), ctr %.4f -> %.4f over %.0f and %.0f labels",
                 base->auc, recent->auc, z_auc, base->calibration,
                 recent->calibration, z_cal, base->ctr, recent->ctr, base->n,
                 recent->n);
    return drift ? RK_LOOP_ROLL_BACK : RK_LOOP_KEEP;
}
