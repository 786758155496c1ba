/*
 * metrics.c — what the server counts and how /metrics shows it: lock-free
 * counters and fixed-bucket latency histograms per endpoint, errors per
 * stable code, degraded answers by reason, pipeline stage latencies, cache
 * sizes and hit rates, loaded model versions and load failures, in the
 * Prometheus text exposition format (version 0.0.4). /healthz and /readyz
 * live here too.
 */
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

const double sv_bucket_us[SV_NBUCKETS] = {
    100, 250, 500, 1000, 2000, 3000, 5000, 7500, 10000, 20000, 50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

static const char *const ep_names[SV_EP_COUNT] = {
    "events", "item_put", "item_delete", "item_get", "user_put", "user_get",
    "recommend", "rank", "score", "similar", "models", "promote", "rollback",
    "experiments", "metrics", "healthz", "readyz", "openapi", "monitor_drift",
    "monitor_events", "other"};

static const char *const stage_names[4] = {"retrieval", "features", "rank",
                                           "rules"};
static const char *const deg_names[SV_DEG_COUNT] = {"none", "fewer_candidates",
                                                    "trending"};

void sv_hist_add(sv_hist *h, uint64_t ns)
{
    double us = (double)ns / 1000.0;
    size_t i = 0;
    while (i < SV_NBUCKETS && us > sv_bucket_us[i]) i++;
    atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

double sv_hist_quantile(const sv_hist *h, double q)
{
    uint64_t n = atomic_load(&h->count);
    if (!n) return 0;
    double target = q * (double)n, cum = 0;
    for (size_t i = 0; i <= SV_NBUCKETS; i++) {
        double c = (double)atomic_load(&h->b[i]);
        if (cum + c >= target && c > 0) {
            if (i == SV_NBUCKETS) return sv_bucket_us[SV_NBUCKETS - 1];
            double lo = i ? sv_bucket_us[i - 1] : 0, hi = sv_bucket_us[i];
            return lo + (hi - lo) * (target - cum) / c;
        }
        cum += c;
    }
    return sv_bucket_us[SV_NBUCKETS - 1];
}

void sv_metrics_observe(rk_server *s, sv_ep ep, int status, uint64_t ns)
{
    if ((unsigned)ep >= SV_EP_COUNT) ep = SV_EP_OTHER;
    sv_hist_add(&s->m.lat[ep], ns);
    int cls = status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    atomic_fetch_add_explicit(&s->m.status[ep][cls], 1, memory_order_relaxed);
}

static void hist_out(rk_buf *b, const char *name, const char *label,
                     const char *lv, const sv_hist *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= SV_NBUCKETS; i++) {
        cum += atomic_load(&h->b[i]);
        if (i < SV_NBUCKETS)
            (void)rk_buf_printf(b, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name,
                                label, lv, sv_bucket_us[i] / 1e6,
                                (unsigned long long)cum);
        else
            (void)rk_buf_printf(b, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n",
                                name, label, lv, (unsigned long long)cum);
    }
    (void)rk_buf_printf(b, "%s_sum{%s=\"%s\"} %.9f\n%s_count{%s=\"%s\"} %llu\n",
                        name, label, lv, (double)atomic_load(&h->sum_ns) / 1e9,
                        name, label, lv,
                        (unsigned long long)atomic_load(&h->count));
}

int sv_h_metrics(sv_req *q)
{
    rk_server *s = q->srv;
    rk_buf *b = q->out;
    q->ctype = "text/plain; version=0.0.4; charset=utf-8";
    (void)rk_buf_puts(b, "# HELP rankd_requests_total Requests by endpoint and "
                         "status class.\n# TYPE rankd_requests_total counter\n");
    for (size_t e = 0; e < SV_EP_COUNT; e++)
        for (int c = 1; c <= 5; c++) {
            uint64_t v = atomic_load(&s->m.status[e][c]);
            if (v)
                (void)rk_buf_printf(b, "rankd_requests_total{endpoint=\"%s\","
                                    "code=\"%dxx\"} %llu\n", ep_names[e], c,
                                    (unsigned long long)v);
        }
    (void)rk_buf_puts(b, "# HELP rankd_request_duration_seconds Request "
                         "latency by endpoint.\n# TYPE "
                         "rankd_request_duration_seconds histogram\n");
    for (size_t e = 0; e < SV_EP_COUNT; e++)
        if (atomic_load(&s->m.lat[e].count))
            hist_out(b, "rankd_request_duration_seconds", "endpoint",
                     ep_names[e], &s->m.lat[e]);
    (void)rk_buf_puts(b, "# HELP rankd_errors_total Error responses by code.\n"
                         "# TYPE rankd_errors_total counter\n");
    for (size_t c = 0; c < SV_ERR_COUNT; c++)
        (void)rk_buf_printf(b, "rankd_errors_total{code=\"%s\"} %llu\n",
                            sv_errcode_name((sv_errcode)c),
                            (unsigned long long)atomic_load(&s->m.errors[c]));
    (void)rk_buf_puts(b, "# HELP rankd_recommend_degraded_total Answers "
                         "degraded to meet the deadline, by reason.\n# TYPE "
                         "rankd_recommend_degraded_total counter\n");
    for (size_t d = 1; d < SV_DEG_COUNT; d++)
        (void)rk_buf_printf(b, "rankd_recommend_degraded_total{reason=\"%s\"} "
                            "%llu\n", deg_names[d],
                            (unsigned long long)atomic_load(&s->m.degraded[d]));
    (void)rk_buf_puts(b, "# HELP rankd_stage_duration_seconds /v1/recommend "
                         "pipeline stages.\n# TYPE rankd_stage_duration_seconds"
                         " histogram\n");
    for (size_t i = 0; i < 4; i++)
        hist_out(b, "rankd_stage_duration_seconds", "stage", stage_names[i],
                 &s->m.stage[i]);
    (void)rk_buf_printf(b, "# TYPE rankd_events_ingested_total counter\n"
                        "rankd_events_ingested_total %llu\n",
                        (unsigned long long)atomic_load(&s->m.events_ingested));
    (void)rk_buf_puts(b, "# HELP rankd_events_total Events acknowledged, by type.\n"
                         "# TYPE rankd_events_total counter\n");
    for (uint32_t t = 0; t < rk_schema_nevent_types(s->schema) && t < RK_MAX_EVENT_TYPES; t++)
        (void)rk_buf_printf(b, "rankd_events_total{type=\"%s\"} %llu\n",
                            rk_schema_event_type(s->schema, t)->name,
                            (unsigned long long)atomic_load(&s->m.events_by_type[t]));
    (void)rk_buf_printf(b, "# TYPE rankd_candidates_ranked_total counter\n"
                        "rankd_candidates_ranked_total %llu\n",
                        (unsigned long long)atomic_load(&s->m.candidates_total));
    (void)rk_buf_printf(b, "# TYPE rankd_feature_log_total counter\n"
                        "rankd_feature_log_total{result=\"written\"} %llu\n"
                        "rankd_feature_log_total{result=\"failed\"} %llu\n",
                        (unsigned long long)atomic_load(&s->m.flog_written),
                        (unsigned long long)atomic_load(&s->m.flog_failed));

    /* models */
    (void)rk_buf_puts(b, "# HELP rankd_model_version Loaded version per model "
                         "slot (0 = none).\n# TYPE rankd_model_version gauge\n");
    for (size_t i = 0; i < s->nslots; i++) {
        sv_model *m = sv_slot_acquire(&s->slots[i]);
        if (!s->slots[i].name[0]) {
            sv_model_release(m);
            continue;
        }
        (void)rk_buf_printf(b, "rankd_model_version{model=\"%s\"} %u\n",
                            s->slots[i].label, m ? m->version : 0);
        sv_model_release(m);
    }
    (void)rk_buf_puts(b, "# TYPE rankd_model_loads_total counter\n");
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i].name[0])
        (void)rk_buf_printf(b, "rankd_model_loads_total{model=\"%s\","
                            "result=\"ok\"} %llu\nrankd_model_loads_total{"
                            "model=\"%s\",result=\"failed\"} %llu\n",
                            s->slots[i].label,
                            (unsigned long long)atomic_load(&s->slots[i].loads),
                            s->slots[i].label,
                            (unsigned long long)atomic_load(&s->slots[i].failures));

    /* caches */
    size_t ce, cb;
    uint64_t ch, cm, cev;
    sv_ccache_stats(s->ccache, &ce, &cb, &ch, &cm, &cev);
    (void)rk_buf_puts(b, "# HELP rankd_cache_entries Entries per cache.\n"
                         "# TYPE rankd_cache_entries gauge\n");
    (void)rk_buf_printf(b, "rankd_cache_entries{cache=\"candidates\"} %zu\n"
                        "rankd_cache_entries{cache=\"histories\"} %zu\n", ce,
                        sv_history_users(s->hist));
    pthread_mutex_lock(&s->ab_mu);
    size_t abn = rk_map_size(s->ab_map);
    pthread_mutex_unlock(&s->ab_mu);
    (void)rk_buf_printf(b, "rankd_cache_entries{cache=\"ab_requests\"} %zu\n", abn);
    size_t ide, idb;
    sv_idcache_stats(s->ids, &ide, &idb);
    (void)rk_buf_printf(b, "rankd_cache_entries{cache=\"item_ids\"} %zu\n", ide);
    rk_feat_cache_stats fc;
    memset(&fc, 0, sizeof fc);
    if (s->online) rk_feat_cache_stats_get(s->online, &fc);
    (void)rk_buf_printf(b, "rankd_cache_entries{cache=\"features\"} %llu\n",
                        (unsigned long long)fc.entries);
    (void)rk_buf_puts(b, "# TYPE rankd_cache_bytes gauge\n");
    (void)rk_buf_printf(b, "rankd_cache_bytes{cache=\"candidates\"} %zu\n"
                        "rankd_cache_bytes{cache=\"histories\"} %zu\n"
                        "rankd_cache_bytes{cache=\"features\"} %llu\n"
                        "rankd_cache_bytes{cache=\"item_ids\"} %zu\n", cb,
                        sv_history_bytes(s->hist), (unsigned long long)fc.bytes,
                        idb);
    (void)rk_buf_puts(b, "# TYPE rankd_cache_requests_total counter\n");
    (void)rk_buf_printf(b, "rankd_cache_requests_total{cache=\"candidates\","
                        "result=\"hit\"} %llu\nrankd_cache_requests_total{cache="
                        "\"candidates\",result=\"miss\"} %llu\n"
                        "rankd_cache_requests_total{cache=\"features\",result="
                        "\"hit\"} %llu\nrankd_cache_requests_total{cache="
                        "\"features\",result=\"miss\"} %llu\n",
                        (unsigned long long)ch, (unsigned long long)cm,
                        (unsigned long long)fc.hits,
                        (unsigned long long)fc.misses);
    (void)rk_buf_printf(b, "# TYPE rankd_cache_evictions_total counter\n"
                        "rankd_cache_evictions_total{cache=\"candidates\"} %llu\n"
                        "rankd_cache_evictions_total{cache=\"histories\"} %llu\n"
                        "rankd_cache_evictions_total{cache=\"features\"} %llu\n",
                        (unsigned long long)cev,
                        (unsigned long long)sv_history_evictions(s->hist),
                        (unsigned long long)fc.evictions);
    sv_monitor_metrics(s, b);
    sv_learn_metrics(s, b);
    rk_mem_stats ms;
    rk_mem_get_stats(&ms);
    (void)rk_buf_printf(b, "# TYPE rankd_memory_bytes gauge\n"
                        "rankd_memory_bytes %llu\n# TYPE rankd_memory_peak_bytes"
                        " gauge\nrankd_memory_peak_bytes %llu\n"
                        "# TYPE rankd_uptime_seconds gauge\n"
                        "rankd_uptime_seconds %.3f\n",
                        (unsigned long long)ms.in_use,
                        (unsigned long long)ms.peak,
                        (double)(rk_clock_wall_ms() - s->started_ms) / 1000.0);
    return 0;
}

int sv_h_healthz(sv_req *q)
{
    /* The server's clock (serve.clock): a simulation driving a clock: event
     * server reads where it stands. */
    char t[32];
    rk_format_time_ms(q->now_ms, t);
    (void)rk_buf_printf(q->out, "{\"status\":\"ok\",\"request_id\":\"%s\","
                        "\"clock\":\"%s\",\"now\":\"%s\",\"now_ms\":%lld}",
                        q->request_id, q->srv->o.clock_event ? "event" : "wall", t,
                        (long long)q->now_ms);
    return 0;
}

int sv_h_readyz(sv_req *q)
{
    rk_server *s = q->srv;
    rk_buf *b = q->out;
    /* Ready once every configured model that exists in the registry is
     * loaded (a model never trained is not waited for). */
    int ready = s->ready;
    for (size_t i = 0; i < s->nslots; i++) {
        sv_slot *sl = &s->slots[i];
        if (!sl->name[0]) continue;
        pthread_mutex_lock(&sl->mu);
        if (!sl->cur && !sl->absent) ready = 0;
        pthread_mutex_unlock(&sl->mu);
    }
    (void)rk_buf_printf(b, "{\"status\":\"%s\",\"request_id\":\"%s\","
                        "\"models\":{", ready ? "ready" : "loading",
                        q->request_id);
    size_t k = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        if (!s->slots[i].name[0]) continue;
        sv_model *m = sv_slot_acquire(&s->slots[i]);
        (void)rk_buf_printf(b, "%s", k++ ? "," : "");
        sv_json_str(b, s->slots[i].label);
        (void)rk_buf_printf(b, ":%u", m ? m->version : 0);
        sv_model_release(m);
    }
    pthread_mutex_lock(&s->gen_mu);
    int trending = s->trending != NULL, fresh = s->fresh != NULL;
    pthread_mutex_unlock(&s->gen_mu);
    (void)rk_buf_printf(b, "},\"trending\":%s,\"fresh\":%s}",
                        trending ? "true" : "false", fresh ? "true" : "false");
    if (!ready) q->status = 503;
    return 0;
}
