/*
 * learn.c — the learning loop inside `rankd serve` (the `loop:` section,
 * src/loop/, docs/loop.md). A thread of its own watches what the server
 * sees — new positive events since the last training, the served ranker's
 * drift verdict (edge-triggered drift alarms) — and when the policy says
 * so runs `rankd train --ranker` on the feature log as a child process;
 * the registry's gate decides promotion, and a promoted version is loaded
 * at once. Every decision goes to the audit log (GET /v1/monitor/events,
 * /metrics, DIR/audit.jsonl).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

/* Positive events acknowledged so far (the labels that make retraining
 * worthwhile). */
static uint64_t positives(rk_server *s)
{
    uint64_t n = 0;
    for (uint32_t t = 0; t < rk_schema_nevent_types(s->schema) && t < RK_MAX_EVENT_TYPES; t++) {
        const rk_event_type_def *d = rk_schema_event_type(s->schema, t);
        if (d->role == RK_ROLE_POSITIVE || d->role == RK_ROLE_VALUED)
            n += atomic_load(&s->m.events_by_type[t]);
    }
    return n;
}

/* The served ranker's dataset drift and window size (slot 0). */
static int drift_now(rk_server *s, uint64_t *rows)
{
    *rows = 0;
    sv_model *m = sv_slot_acquire(&s->slots[0]);
    rk_drift_report *r = NULL;
    rk_err err = {0};
    uint64_t seen = 0, cur = 0;
    int drift = 0;
    if (m && !sv_monitor_report(s, m, &r, &seen, &cur, &err) && r) {
        rk_drift_dataset d;
        rk_drift_report_dataset(r, &d);
        drift = d.drift;
        *rows = cur; /* items now compared, not all ever observed */
    }
    rk_drift_report_free(r);
    sv_model_release(m);
    return drift;
}

/* The served ranker's concept-drift verdict (its recent online quality
 * against its first labels); *from_ms the served time of the oldest
 * recent label, *version the version judged. */
static rk_loop_verdict concept_now(rk_server *s, uint32_t *version, int64_t *from_ms,
                                   char *why, size_t cap)
{
    *version = 0;
    *from_ms = 0;
    sv_model *m = sv_slot_acquire(&s->slots[0]);
    if (!m) return RK_LOOP_WAIT;
    *version = m->version;
    sv_model_release(m);
    rk_concept_metrics b, r;
    if (!sv_online_concept(s, s->loop.ranker, *version, &b, &r, from_ms))
        return RK_LOOP_WAIT;
    return rk_loop_concept_check(&s->loop, &b, &r, why, cap);
}

/* ---- automatic rollback ------------------------------------------------------ */

/* Rolls the loop's ranker back when its current version's online log loss
 * is worse than its predecessor's by the configured margin (each version
 * is judged once, when both have enough labels). */
static void rollback_check(rk_server *s)
{
    const rk_loop_opts *o = &s->loop;
    sv_model *m = sv_slot_acquire(&s->slots[0]);
    if (!m) return;
    uint32_t v = m->version, prev = 0;
    sv_model_release(m);
    rk_concept_metrics cn, cp;
    int checked = 1;
    if (!o->rollback || !sv_online_get(s, o->ranker, v, &cn, &prev, &checked) ||
        checked || !prev || !sv_online_get(s, o->ranker, prev, &cp, NULL, NULL))
        return;
    rk_loop_verdict vd = rk_loop_rollback_check(o, cn.n, cn.logloss, cp.n, cp.logloss);
    if (vd == RK_LOOP_WAIT) return;
    sv_online_set_checked(s, o->ranker, v);
    char det[400];
    snprintf(det, sizeof det, "online logloss %.4f over %.0f labels vs %.4f over "
             "%.0f of version %u (margin %g%s)", cn.logloss, cn.n, cp.logloss, cp.n,
             prev, o->rollback_margin, o->rollback_relative ? " relative" : "");
    if (vd == RK_LOOP_KEEP) {
        rk_audit_add(s->audit, 0, "online_check_passed", o->ranker, v, det);
        return;
    }
    uint32_t now = 0;
    rk_err err = {0};
    if (sv_models_rollback(s, o->ranker, &now, &err)) {
        char d2[700];
        snprintf(d2, sizeof d2, "rollback of version %u failed: %s", v, err.msg);
        rk_audit_add(s->audit, 0, "failed", o->ranker, v, d2);
        return;
    }
    sv_online_set_checked(s, o->ranker, now);
    rk_audit_add(s->audit, 0, "rolled_back", o->ranker, now, det);
    rk_log(s->log, RK_LOG_WARN, "loop", "%s: version %u rolled back to %u: %s",
           o->ranker, v, now, det);
}

/* ---- online learning ------------------------------------------------------------ */

typedef struct learner {
    rk_ranker *r;               /* private copy, updated in place */
    sv_model *base;             /* the loaded version it started from (ref) */
    uint64_t updates, pending;
    int64_t last_snapshot_ms;
    int64_t last_decay_ms;      /* when the gradient sums last decayed */
    uint32_t refused_version;   /* a version that cannot learn (logged once) */
} learner;

static void learner_reset(learner *l)
{
    rk_ranker_destroy(l->r);
    sv_model_release(l->base);
    l->r = NULL;
    l->base = NULL;
    l->updates = l->pending = 0;
}

/* Follows the slot: a newly loaded version restarts learning from it. */
static void learner_follow(rk_server *s, learner *l)
{
    sv_model *cur = sv_slot_acquire(&s->slots[0]);
    if (!cur) return;
    sv_model *base = cur->base ? cur->base : cur;
    if (base != l->base) {
        learner_reset(l);
        rk_ranker_kind k = rk_ranker_get_kind(cur->ranker);
        rk_err err = {0};
        if (k == RK_RANKER_GBDT) {
            if (l->refused_version != base->version) {
                l->refused_version = base->version;
                rk_audit_add(s->audit, 0, "failed", s->loop.ranker, base->version,
                             "online learning: a gbdt version does not learn "
                             "online; waiting for an ftrl or fm version");
            }
        } else if (rk_ranker_clone(&l->r, cur->ranker, &err)) {
            rk_log(s->log, RK_LOG_ERROR, "loop", "online learning: %s", err.msg);
        } else {
            atomic_fetch_add(&base->ref, 1);
            l->base = base;
            l->last_snapshot_ms = l->last_decay_ms = sv_now_ms(s);
            char det[128];
            snprintf(det, sizeof det, "learning online from version %u, snapshot "
                     "every %g s", base->version, s->loop.online_refresh_s);
            rk_audit_add(s->audit, 0, "online_learning", s->loop.ranker,
                         base->version, det);
        }
    }
    sv_model_release(cur);
}

/* Applies the queued labelled examples and, every online_refresh_s,
 * swaps a snapshot of the learner into the slot. */
static void learner_step(rk_server *s, learner *l, int64_t now)
{
    size_t n;
    sv_example *ex = sv_online_take(s, &n);
    learner_follow(s, l);
    for (sv_example *e = ex; l->r && e; e = e->next) {
        if (strcmp(e->name, s->loop.ranker)) continue;
        rk_err err = {0};
        if (rk_ranker_update(l->r, &e->x, e->y, e->w, NULL, &err)) {
            atomic_fetch_add(&s->learn_errors, 1);
            continue;
        }
        l->updates++;
        l->pending++;
        atomic_fetch_add(&s->learn_updates, 1);
        atomic_fetch_add(&s->learn_weight_milli, (uint64_t)llround(e->w * 1000.0));
    }
    sv_example_free(ex);
    /* The gradient sums decay by the elapsed share of the half-life (in
     * 64 steps per half-life), so the learner adapts at the rate of one
     * that has seen about 1.44 half-lives of labels (at least a millionth
     * kept when the clock jumps). */
    const int64_t hl = s->loop.online_half_life_ms;
    if (l->r && hl > 0 && now - l->last_decay_ms >= hl / 64) {
        double keep = exp2(-(double)(now - l->last_decay_ms) / (double)hl);
        if (!rk_ranker_forget(l->r, keep > 1e-6 ? keep : 1e-6, NULL))
            atomic_fetch_add(&s->learn_decays, 1);
        l->last_decay_ms = now;
    }
    if (!l->r || !l->pending ||
        now - l->last_snapshot_ms < (int64_t)(s->loop.online_refresh_s * 1000))
        return;
    l->last_snapshot_ms = now;
    sv_model *d = rk_malloc(sizeof *d);
    rk_err err = {0};
    if (!d) return;
    memcpy(d, l->base, sizeof *d);
    atomic_init(&d->ref, 1);
    d->next_dead = NULL;
    d->ranker = NULL;
    d->loaded_ms = now;
    d->online_updates = l->updates;
    d->base = l->base;
    if (rk_ranker_clone(&d->ranker, l->r, &err)) {
        rk_free(d);
        return;
    }
    atomic_fetch_add(&l->base->ref, 1);
    if (sv_slot_swap_derived(&s->slots[0], l->base, d)) {
        sv_model_release(d);    /* a new version came in meanwhile */
        return;
    }
    l->pending = 0;
    atomic_fetch_add(&s->learn_snapshots, 1);
}

/* The user's own --window among the extra training options. */
static int has_window_arg(const rk_loop_opts *o)
{
    for (size_t i = 0; i < o->nargs; i++)
        if (!strcmp(o->args[i], "--window")) return 1;
    return 0;
}

static void *loop_main(void *arg)
{
    rk_server *s = arg;
    const rk_loop_opts *o = &s->loop;
    uint64_t base = positives(s);
    int64_t last_train = 0, last_check = 0;
    int drift = 0, concept = 0;
    uint32_t concept_version = 0;
    int64_t concept_from = 0, change_ms = 0, change_span = 0;
    uint64_t drift_rows = 0;
    learner l;
    memset(&l, 0, sizeof l);
    char log_path[4200];
    snprintf(log_path, sizeof log_path, "%s/loop.log", rk_store_path(s->store));
    while (!atomic_load(&s->loop_stop)) {
        int64_t now = sv_now_ms(s);
        if (now - last_check >= (int64_t)(o->drift_check_s * 1000)) {
            last_check = now;
            int d = drift_now(s, &drift_rows);
            if (d != drift && drift_rows >= o->min_drift_rows) {
                sv_model *m = sv_slot_acquire(&s->slots[0]);
                char det[128];
                snprintf(det, sizeof det, "%llu served items in the window",
                         (unsigned long long)drift_rows);
                rk_audit_add(s->audit, 0, d ? "drift_alarm" : "drift_cleared",
                             o->ranker, m ? m->version : 0, det);
                sv_model_release(m);
                drift = d;
            }
            /* Concept drift, edge-triggered per version: a new version
             * starts without a verdict. */
            char why[300];
            uint32_t cv;
            rk_loop_verdict c = concept_now(s, &cv, &concept_from, why, sizeof why);
            if (cv != concept_version) concept = 0;
            concept_version = cv;
            if (c != RK_LOOP_WAIT && (c == RK_LOOP_ROLL_BACK) != concept) {
                concept = c == RK_LOOP_ROLL_BACK;
                rk_audit_add(s->audit, 0, concept ? "concept_drift_alarm"
                                                  : "concept_drift_cleared",
                             o->ranker, cv, why);
            }
        }
        rollback_check(s);
        if (o->online) learner_step(s, &l, now);
        rk_loop_state st = {now, last_train, positives(s) - base, drift, drift_rows, 0,
                            concept, change_ms, change_span};
        rk_loop_trigger t = rk_loop_decide(o, &st);
        if (t != RK_LOOP_NONE) {
            char det[256];
            /* After a change in the concept the rows before it teach the
             * old one: train on the recent labels' span only, then catch
             * up on all rows since as they double (up to the configured
             * window). */
            rk_loop_opts to = *o;
            if (t == RK_LOOP_CONCEPT && concept_from > 0 && concept_from < now)
                change_ms = concept_from;
            if ((t == RK_LOOP_CONCEPT || t == RK_LOOP_CATCH_UP) && change_ms > 0 &&
                change_ms < now && !has_window_arg(o)) {
                change_span = now - change_ms;
                if (!o->window_ms || change_span < o->window_ms)
                    to.window_ms = change_span;
            }
            char win[32] = "all rows";
            if (to.window_ms)
                snprintf(win, sizeof win, "the last %.2f h", (double)to.window_ms / 3.6e6);
            snprintf(det, sizeof det, "trigger %s: %llu new labels, drift %s, "
                     "concept drift %s; training on %s", rk_loop_trigger_name(t),
                     (unsigned long long)st.new_labels, drift ? "yes" : "no",
                     concept ? "yes" : "no", win);
            rk_audit_add(s->audit, now, "training", o->ranker, 0, det);
            atomic_store(&s->loop_training, 1);
            last_train = now;
            base = positives(s);
            rk_loop_result res;
            rk_err err = {0};
            int rc = rk_loop_train(s->o.exe, rk_store_path(s->store), s->o.config_path,
                                   &to, s->o.clock_event ? now : 0, log_path, &s->loop_stop, &res, &err);
            atomic_store(&s->loop_training, 0);
            if (rc == RK_ECLOSED) break;
            char d2[700];
            if (rc || !res.ok) {
                snprintf(d2, sizeof d2, "%s", rc ? err.msg : res.reason);
                rk_audit_add(s->audit, 0, "failed", o->ranker, 0, d2);
            } else {
                snprintf(d2, sizeof d2, "%llu rows from the %s; valid auc %.4f, "
                         "logloss %.4f; %s", (unsigned long long)res.train_rows,
                         res.from_log ? "feature log" : "event log", res.auc,
                         res.logloss, res.reason);
                rk_audit_add(s->audit, 0, "trained", o->ranker, res.version, d2);
                rk_audit_add(s->audit, 0, res.promoted ? "promoted" : "rejected",
                             o->ranker, res.version, res.reason);
                if (res.promoted) sv_models_reload(s);
            }
            rk_log(s->log, RK_LOG_INFO, "loop", "%s: %s", rk_loop_trigger_name(t), d2);
        }
        rk_sleep_ms(200);
    }
    learner_reset(&l);
    return NULL;
}

static int64_t audit_now(void *s) { return sv_now_ms(s); }

int sv_learn_start(rk_server *s, rk_err *err)
{
    rk_loop_opts_default(&s->loop);
    int rc = rk_loop_opts_from_conf(&s->loop, s->root, err);
    if (rc) return rc;
    if (!s->loop.ranker) s->loop.ranker = s->o.ranker;
    char path[4200];
    snprintf(path, sizeof path, "%s/audit.jsonl", rk_store_path(s->store));
    if ((rc = rk_audit_open(&s->audit, path, 1000, err))) return rc;
    rk_audit_set_clock(s->audit, audit_now, s);
    if (s->labels_ok &&
        (rc = sv_online_create(s, s->label_requests, s->label_bytes,
                               s->loop.enabled && s->loop.online, err)))
        return rc;
    if (!s->loop.enabled) return 0;
    if (!s->loop.ranker)
        return rk_err_set(err, RK_ECONFIG, "loop: needs loop.ranker or serve.ranker");
    if (!s->o.exe || !s->o.config_path)
        return rk_err_set(err, RK_ECONFIG, "loop: needs the rankd binary and the "
                          "config file path (run it through `rankd serve --config`)");
    if (pthread_create(&s->loop_thread, NULL, loop_main, s))
        return rk_err_set(err, RK_ENOMEM, "loop: cannot start a thread");
    s->loop_started = 1;
    return 0;
}

void sv_learn_stop(rk_server *s)
{
    atomic_store(&s->loop_stop, 1);
    if (s->loop_started) {
        pthread_join(s->loop_thread, NULL);
        s->loop_started = 0;
    }
}

int sv_h_monitor_events(sv_req *q)
{
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_printf(b, ",\"loop\":{\"enabled\":%s,\"training\":%s},\"events\":",
                        q->srv->loop.enabled ? "true" : "false",
                        atomic_load(&q->srv->loop_training) ? "true" : "false");
    rk_audit_json(q->srv->audit, b);
    (void)rk_buf_putc(b, '}');
    return 0;
}

void sv_learn_metrics(rk_server *s, rk_buf *b)
{
    if (!s->audit) return;
    const char *kinds[16];
    uint64_t counts[16];
    size_t n = rk_audit_kinds(s->audit, kinds, counts, 16);
    (void)rk_buf_puts(b, "# HELP rankd_loop_decisions_total Learning-loop and "
                         "registry decisions, by kind.\n# TYPE "
                         "rankd_loop_decisions_total counter\n");
    for (size_t i = 0; i < n; i++)
        (void)rk_buf_printf(b, "rankd_loop_decisions_total{kind=\"%s\"} %llu\n",
                            kinds[i], (unsigned long long)counts[i]);
    (void)rk_buf_printf(b, "# TYPE rankd_loop_training gauge\nrankd_loop_training %d\n",
                        atomic_load(&s->loop_training));
    if (s->loop.online)
        (void)rk_buf_printf(b, "# HELP rankd_online_learner_updates_total Labelled "
                            "examples the online learner applied.\n# TYPE "
                            "rankd_online_learner_updates_total counter\n"
                            "rankd_online_learner_updates_total %llu\n"
                            "# HELP rankd_online_learner_weight_total Sum of the "
                            "applied examples' weights (the label join's gains).\n"
                            "# TYPE rankd_online_learner_weight_total counter\n"
                            "rankd_online_learner_weight_total %.3f\n"
                            "# TYPE rankd_online_learner_errors_total counter\n"
                            "rankd_online_learner_errors_total %llu\n"
                            "# TYPE rankd_online_learner_snapshots_total counter\n"
                            "rankd_online_learner_snapshots_total %llu\n"
                            "# HELP rankd_online_learner_decays_total Decays of the "
                            "learner's gradient sums (loop.online_half_life).\n"
                            "# TYPE rankd_online_learner_decays_total counter\n"
                            "rankd_online_learner_decays_total %llu\n",
                            (unsigned long long)atomic_load(&s->learn_updates),
                            (double)atomic_load(&s->learn_weight_milli) / 1000.0,
                            (unsigned long long)atomic_load(&s->learn_errors),
                            (unsigned long long)atomic_load(&s->learn_snapshots),
                            (unsigned long long)atomic_load(&s->learn_decays));
    sv_online_metrics(s, b);
}
