/*
 * monitor.c — drift monitoring of the served rankers. Each loaded ranker
 * version keeps its reference histograms (meta.json: one per input
 * feature and the prediction, built from its training rows) and a live
 * window of what it served: the feature values and score of every item
 * returned by /v1/recommend and /v1/rank (the last `monitor.window` of
 * them, fixed memory). GET /v1/monitor/drift and /metrics compare the
 * two with the detector of src/monitor (docs/monitoring.md).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

int sv_monitor_attach(rk_server *s, sv_model *m, const char *dir, rk_err *err)
{
    char path[4700];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0; /* no metadata: nothing to monitor against */
    rk_buf b;
    rk_buf_init(&b, RK_META_MAX_BYTES);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = rk_buf_append(&b, chunk, n);
    fclose(f);
    if (!rc) rc = rk_model_meta_parse(&m->meta, b.data ? b.data : "", b.len, err);
    rk_buf_free(&b);
    if (rc) return rk_err_prefix(err, "%s", path);
    m->has_meta = 1;
    uint32_t nf = (uint32_t)m->meta.nfeatures + 1;
    if (nf < 2 || !s->o.monitor_window) return 0;
    m->mon_col = rk_calloc(nf, sizeof *m->mon_col);
    if (!m->mon_col) return rk_err_set(err, RK_ENOMEM, "monitor: out of memory");
    /* Reference histograms are named after the spec's dense columns. */
    for (uint32_t i = 0; i + 1 < nf; i++)
        m->mon_col[i] = rk_feat_dense_index(m->spec, m->meta.features[i]->name);
    /* Each row keeps its request's user and its item, so the report can
     * weigh rows that are not independent (docs/monitoring.md, "Grouped
     * rows and the noise gate"). */
    rk_drift_window_opts wo = {nf, s->o.monitor_window, NULL, 0, s->mon_span_ms > 0, 2};
    return rk_drift_window_create(&m->win, &wo, err);
}

uint32_t sv_monitor_user_key(const sv_req *q, const char *user, size_t len)
{
    if (user) return (uint32_t)rk_hash64(user, len, 0);
    return (uint32_t)rk_hash64(q->request_id, strlen(q->request_id), 1);
}

void sv_monitor_observe(sv_model *m, const rk_fvec *x, float score, int64_t ts_ms,
                        uint32_t user_key, uint32_t item)
{
    if (!m->win) return;
    uint32_t nf = (uint32_t)m->meta.nfeatures;
    float row[256], *rp = row;
    float *heap = NULL;
    if (nf + 1 > 256) {
        heap = rk_malloc((nf + 1) * sizeof *heap);
        if (!heap) return;
        rp = heap;
    }
    for (uint32_t i = 0; i < nf; i++) {
        int32_t c = m->mon_col[i];
        rp[i] = x && c >= 0 && (uint32_t)c < x->ndense ? x->dense[c] : NAN;
    }
    rp[nf] = score;
    uint32_t grp[2] = {user_key, item};
    (void)rk_drift_window_add_row_grouped(m->win, rp, ts_ms, grp);
    rk_free(heap);
}

/* Reference histograms from a window's samples (monitor.reference:
 * served), named as the training references are. */
static int served_reference(sv_model *b, const float *const *cur,
                            const size_t *ncur, rk_err *err)
{
    uint32_t nf = (uint32_t)b->meta.nfeatures + 1;
    rk_refhist **h = rk_calloc(nf, sizeof *h);
    if (!h) return rk_err_set(err, RK_ENOMEM, "monitor: out of memory");
    int rc = 0;
    for (uint32_t i = 0; !rc && i < nf; i++) {
        const rk_refhist *t = i + 1 < nf ? b->meta.features[i] : b->meta.prediction;
        rc = rk_refhist_numeric(&h[i], t ? t->name : "prediction", cur[i], ncur[i],
                                1, 0, err);
    }
    if (rc) {
        for (uint32_t i = 0; i < nf; i++) rk_refhist_free(h[i]);
        rk_free(h);
        return rc;
    }
    b->sref = h;
    atomic_store(&b->sref_ready, 1);
    return 0;
}

int sv_monitor_report(rk_server *s, sv_model *m, rk_drift_report **out,
                      uint64_t *rows, uint64_t *current, rk_err *err)
{
    *out = NULL;
    *rows = 0;
    if (current) *current = 0;
    if (!m->win) return 0;
    uint32_t nf = (uint32_t)m->meta.nfeatures + 1;
    uint32_t cap = rk_drift_window_capacity(m->win);
    uint32_t ng = rk_drift_window_groupings(m->win);
    float *buf = rk_malloc((size_t)nf * cap * sizeof *buf);
    uint32_t *gbuf = ng ? rk_malloc((size_t)ng * cap * sizeof *gbuf) : NULL;
    const float **cur = rk_malloc(nf * sizeof *cur);
    size_t *ncur = rk_malloc(nf * sizeof *ncur);
    int rc = buf && (gbuf || !ng) && cur && ncur
                 ? 0 : rk_err_set(err, RK_ENOMEM, "monitor: out of memory");
    /* monitor.span: the rows served in the last span of the server's clock;
     * one copy of every feature and the rows' groups, missing values
     * included (they are the window's missing rate). */
    int64_t since = s->mon_span_ms > 0 ? sv_now_ms(s) - s->mon_span_ms : INT64_MIN;
    size_t nrows = 0;
    if (!rc && (rc = rk_drift_window_rows(m->win, since, buf, gbuf, cap, &nrows)))
        rk_err_set(err, rc, "monitor: cannot read the window");
    for (uint32_t i = 0; !rc && i < nf; i++) {
        cur[i] = buf + (size_t)i * cap;
        ncur[i] = nrows;
    }
    if (current) *current = rc ? 0 : nrows;
    rk_drift_groups grp = {gbuf, ng, cap};
    *rows = rk_drift_window_seen(m->win, nf - 1);
    const rk_model_meta *meta = &m->meta;
    rk_model_meta sm;
    if (!rc && s->mon_ref_served) {
        /* The reference is the version's first full window: nothing to
         * compare until it is there. */
        sv_model *b = m->base ? m->base : m;
        if (!atomic_load(&b->sref_ready) && *rows >= cap) {
            pthread_mutex_lock(&s->mon_mu);
            if (!atomic_load(&b->sref_ready)) rc = served_reference(b, cur, ncur, err);
            pthread_mutex_unlock(&s->mon_mu);
        }
        if (rc || !atomic_load(&b->sref_ready)) goto out;
        sm = b->meta;
        sm.features = b->sref;
        sm.prediction = b->sref[nf - 1];
        meta = &sm;
    }
    if (!rc) rc = rk_drift_report_build_grouped(meta, cur, ncur, &grp, &s->drift_opts,
                                                out, err);
out:
    rk_free(buf);
    rk_free(gbuf);
    rk_free((void *)cur);
    rk_free(ncur);
    return rc;
}

int sv_h_monitor_drift(sv_req *q)
{
    rk_server *s = q->srv;
    int slot = 0;
    const char *v;
    size_t len;
    if (sv_query_get(q, "model", &v, &len)) {
        slot = -1;
        for (size_t i = 0; i < s->nslots; i++)
            if (s->slots[i].kind == SV_SLOT_RANKER &&
                strlen(s->slots[i].label) == len &&
                !strncmp(s->slots[i].label, v, len))
                slot = (int)i;
        if (slot < 0)
            return sv_error(q, SV_ERR_UNKNOWN_MODEL, "no served ranker '%.*s'",
                            (int)(len > 64 ? 64 : len), v);
    }
    sv_model *m = sv_slot_acquire(&s->slots[slot]);
    if (!m) return sv_error(q, SV_ERR_UNAVAILABLE, "no ranking model is loaded");
    rk_drift_report *r = NULL;
    uint64_t rows = 0;
    rk_err err = {0};
    uint64_t current = 0;
    int rc = sv_monitor_report(s, m, &r, &rows, &current, &err);
    if (rc) {
        sv_model_release(m);
        return sv_error_rk(q, rc, &err);
    }
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"model\":{\"name\":");
    sv_json_str(b, m->name);
    (void)rk_buf_printf(b, ",\"version\":%u},\"window\":{\"rows\":%llu,"
                        "\"capacity\":%u,\"current\":%llu,\"span_s\":", m->version,
                        (unsigned long long)rows,
                        m->win ? rk_drift_window_capacity(m->win) : 0,
                        (unsigned long long)current);
    if (s->mon_span_ms > 0) (void)rk_buf_printf(b, "%.3f", s->mon_span_ms / 1000.0);
    else (void)rk_buf_puts(b, "null");
    (void)rk_buf_puts(b, "},\"report\":");
    if (r) rk_drift_report_json(r, b);
    else (void)rk_buf_puts(b, "null");
    /* Concept drift: online metrics per version from delayed labels. */
    (void)rk_buf_puts(b, ",\"concept\":");
    sv_online_json(s, b);
    (void)rk_buf_putc(b, '}');
    rk_drift_report_free(r);
    sv_model_release(m);
    return 0;
}

void sv_monitor_metrics(rk_server *s, rk_buf *b)
{
    (void)rk_buf_puts(b, "# HELP rankd_drift_psi PSI of each input and the "
                         "prediction, live window vs training reference.\n"
                         "# TYPE rankd_drift_psi gauge\n");
    rk_buf tail;
    rk_buf_init(&tail, 0);
    (void)rk_buf_puts(&tail, "# TYPE rankd_drift gauge\n");
    rk_buf ds;
    rk_buf_init(&ds, 0);
    (void)rk_buf_puts(&ds, "# TYPE rankd_dataset_drift gauge\n");
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->slots[i].kind != SV_SLOT_RANKER || !s->slots[i].name[0]) continue;
        sv_model *m = sv_slot_acquire(&s->slots[i]);
        rk_drift_report *r = NULL;
        uint64_t rows;
        rk_err err = {0};
        if (m && !sv_monitor_report(s, m, &r, &rows, NULL, &err) && r && rows) {
            for (size_t k = 0; k < rk_drift_report_count(r); k++) {
                const char *name;
                const rk_drift_feature *f = rk_drift_report_get(r, k, &name);
                if (f->method == RK_DRIFT_NONE) continue;
                (void)rk_buf_printf(b, "rankd_drift_psi{model=\"%s\",feature=\"%s\"} %.6g\n",
                                    s->slots[i].label, name, isfinite(f->psi) ? f->psi : 0);
                (void)rk_buf_printf(&tail, "rankd_drift{model=\"%s\",feature=\"%s\"} %d\n",
                                    s->slots[i].label, name, f->drift);
            }
            rk_drift_dataset d;
            rk_drift_report_dataset(r, &d);
            (void)rk_buf_printf(&ds, "rankd_dataset_drift{model=\"%s\"} %d\n",
                                s->slots[i].label, d.drift);
        }
        rk_drift_report_free(r);
        sv_model_release(m);
    }
    if (tail.data) (void)rk_buf_append(b, tail.data, tail.len);
    if (ds.data) (void)rk_buf_append(b, ds.data, ds.len);
    rk_buf_free(&tail);
    rk_buf_free(&ds);
}
