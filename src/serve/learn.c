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
    uint64_t seen = 0;
    int drift = 0;
    if (m && !sv_monitor_report(s, m, &r, &seen, &err) && r) {
        rk_drift_dataset d;
        rk_drift_report_dataset(r, &d);
        drift = d.drift;
        /* Items now in the window, not all ever observed. */
        uint32_t cap = rk_drift_window_capacity(m->win);
        *rows = seen < cap ? seen : cap;
    }
    rk_drift_report_free(r);
    sv_model_release(m);
    return drift;
}

static void *loop_main(void *arg)
{
    rk_server *s = arg;
    const rk_loop_opts *o = &s->loop;
    uint64_t base = positives(s);
    int64_t last_train = 0, last_check = 0;
    int drift = 0;
    uint64_t drift_rows = 0;
    char log_path[4200];
    snprintf(log_path, sizeof log_path, "%s/loop.log", rk_store_path(s->store));
    while (!atomic_load(&s->loop_stop)) {
        int64_t now = rk_clock_wall_ms();
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
        }
        rk_loop_state st = {now, last_train, positives(s) - base, drift, drift_rows, 0};
        rk_loop_trigger t = rk_loop_decide(o, &st);
        if (t != RK_LOOP_NONE) {
            char det[256];
            snprintf(det, sizeof det, "trigger %s: %llu new labels, drift %s",
                     rk_loop_trigger_name(t), (unsigned long long)st.new_labels,
                     drift ? "yes" : "no");
            rk_audit_add(s->audit, now, "training", o->ranker, 0, det);
            atomic_store(&s->loop_training, 1);
            last_train = now;
            base = positives(s);
            rk_loop_result res;
            rk_err err = {0};
            int rc = rk_loop_train(s->o.exe, rk_store_path(s->store), s->o.config_path,
                                   o, log_path, &s->loop_stop, &res, &err);
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
    return NULL;
}

int sv_learn_start(rk_server *s, rk_err *err)
{
    int rc = rk_loop_opts_from_conf(&s->loop, s->root, err);
    if (rc) return rc;
    if (!s->loop.ranker) s->loop.ranker = s->o.ranker;
    char path[4200];
    snprintf(path, sizeof path, "%s/audit.jsonl", rk_store_path(s->store));
    if ((rc = rk_audit_open(&s->audit, path, 1000, err))) return rc;
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
}
