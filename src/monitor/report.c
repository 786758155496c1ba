/*
 * report.c — a model version's drift report: every input feature and the
 * prediction, current samples against the reference histograms stored in
 * the version's meta.json (rk_refhist, numeric), through the detector of
 * drift.c; sorted so the most drifted features come first; written as
 * JSON (the server's /v1/monitor/drift, `rankd drift --json`), as an
 * aligned table, or as a self-contained HTML page with one inline SVG
 * per feature (reference vs current bin shares; no external assets).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_monitor.h"

struct rk_drift_report {
    size_t n;                 /* features + prediction (last) */
    const rk_refhist **ref;   /* borrowed from the meta */
    rk_drift_feature *f;
    double *cur_share;        /* n x (max bins): current share per ref bin */
    uint32_t maxbins;
    size_t *order;            /* most drifted first */
    rk_drift_dataset ds;      /* over the inputs, not the prediction */
};

static double key(double x) { return isfinite(x) ? x : -1; }

/* Drifted before not; then PSI alarms; then by PSI, then JS (NaN last). */
static int cmp_order(const void *a, const void *b, void *arg)
{
    const rk_drift_feature *f = arg;
    const rk_drift_feature *x = &f[*(const size_t *)a], *y = &f[*(const size_t *)b];
    if (x->drift != y->drift) return y->drift - x->drift;
    if (x->psi_alarm != y->psi_alarm) return y->psi_alarm - x->psi_alarm;
    if (key(x->psi) != key(y->psi)) return key(x->psi) < key(y->psi) ? 1 : -1;
    if (key(x->js) != key(y->js)) return key(x->js) < key(y->js) ? 1 : -1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Feature i is left out of the verdict: excluded by the options, or
 * categorical (references need the raw values' hashes, which logged
 * vectors do not carry). */
static int excluded(const rk_model_meta *meta, const rk_drift_opts *o, size_t i)
{
    const rk_refhist *h = i < meta->nfeatures ? meta->features[i] : meta->prediction;
    if (h->kind != RK_REFHIST_NUMERIC) return 1;
    for (size_t k = 0; i < meta->nfeatures && k < o->nexclude; k++)
        if (o->exclude[k] && !strcmp(o->exclude[k], h->name)) return 1;
    return 0;
}

int rk_drift_report_build(const rk_model_meta *meta, const float *const *cur,
                          const size_t *ncur, const rk_drift_opts *o,
                          rk_drift_report **out, rk_err *err)
{
    return rk_drift_report_build_grouped(meta, cur, ncur, NULL, o, out, err);
}

int rk_drift_report_build_grouped(const rk_model_meta *meta,
                                  const float *const *cur, const size_t *ncur,
                                  const rk_drift_groups *groups,
                                  const rk_drift_opts *o,
                                  rk_drift_report **out, rk_err *err)
{
    *out = NULL;
    rk_drift_opts dflt;
    if (!o) {
        rk_drift_opts_default(&dflt);
        o = &dflt;
    }
    size_t n = meta->nfeatures + (meta->prediction != NULL);
    rk_drift_report *r = rk_calloc(1, sizeof *r);
    if (!r) return rk_err_set(err, RK_ENOMEM, "drift report: out of memory");
    r->n = n;
    for (size_t i = 0; i < meta->nfeatures; i++)
        if (meta->features[i]->nbins > r->maxbins) r->maxbins = meta->features[i]->nbins;
    if (meta->prediction && meta->prediction->nbins > r->maxbins)
        r->maxbins = meta->prediction->nbins;
    if (!r->maxbins) r->maxbins = 1;
    r->ref = rk_calloc(n ? n : 1, sizeof *r->ref);
    r->f = rk_calloc(n ? n : 1, sizeof *r->f);
    r->order = rk_calloc(n ? n : 1, sizeof *r->order);
    r->cur_share = rk_calloc((n ? n : 1) * r->maxbins, sizeof *r->cur_share);
    if (!r->ref || !r->f || !r->order || !r->cur_share) {
        rk_drift_report_free(r);
        return rk_err_set(err, RK_ENOMEM, "drift report: out of memory");
    }
    /* The noise gate's level is family-wise over the features evaluated
     * (Bonferroni): one test per feature and window would otherwise flag
     * a feature by chance in every few windows. */
    rk_drift_opts go = *o;
    size_t ntests = 0;
    for (size_t i = 0; i < n; i++)
        ntests += !excluded(meta, o, i);
    if (ntests > 1) go.noise_alpha /= (double)ntests;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const rk_refhist *h = i < meta->nfeatures ? meta->features[i] : meta->prediction;
        r->ref[i] = h;
        r->order[i] = i;
        if (excluded(meta, o, i)) {
            /* Reported as not evaluated. */
            memset(&r->f[i], 0, sizeof r->f[i]);
            r->f[i].method = RK_DRIFT_NONE;
            r->f[i].psi = r->f[i].js = NAN;
            continue;
        }
        rc = rk_drift_refhist_numeric_grouped(h, cur[i], ncur[i],
                                              groups, &go,
                                              &r->f[i], err);
        uint64_t tot = 0;
        double *sh = r->cur_share + i * r->maxbins;
        for (size_t k = 0; !rc && k < ncur[i]; k++) {
            uint32_t b = rk_refhist_bin(h, cur[i][k]);
            if (b < h->nbins) {
                sh[b] += 1;
                tot++;
            }
        }
        for (uint32_t b = 0; tot && b < h->nbins; b++) sh[b] /= (double)tot;
    }
    if (rc) {
        rk_drift_report_free(r);
        return rc;
    }
    rk_drift_dataset_summary(r->f, meta->nfeatures, o, &r->ds);
    qsort_r(r->order, n, sizeof *r->order, cmp_order, r->f);
    *out = r;
    return 0;
}

void rk_drift_report_free(rk_drift_report *r)
{
    if (!r) return;
    rk_free(r->ref);
    rk_free(r->f);
    rk_free(r->order);
    rk_free(r->cur_share);
    rk_free(r);
}

size_t rk_drift_report_count(const rk_drift_report *r) { return r->n; }

const rk_drift_feature *rk_drift_report_get(const rk_drift_report *r, size_t rank,
                                            const char **name)
{
    if (rank >= r->n) return NULL;
    size_t i = r->order[rank];
    if (name) *name = r->ref[i]->name;
    return &r->f[i];
}

void rk_drift_report_dataset(const rk_drift_report *r, rk_drift_dataset *out)
{
    *out = r->ds;
}

int rk_drift_report_json(const rk_drift_report *r, rk_buf *b)
{
    (void)rk_buf_printf(b, "{\"dataset\":{\"drift\":%s,\"features\":%zu,"
                        "\"evaluated\":%zu,\"drifted\":%zu,\"share\":",
                        r->ds.drift ? "true" : "false", r->ds.nfeatures,
                        r->ds.nevaluated, r->ds.ndrifted);
    (void)rk_buf_put_json_num(b, r->ds.share);
    (void)rk_buf_puts(b, "},\"features\":[");
    for (size_t k = 0; k < r->n; k++) {
        size_t i = r->order[k];
        const rk_drift_feature *f = &r->f[i];
        (void)rk_buf_puts(b, k ? ",{\"name\":" : "{\"name\":");
        (void)rk_buf_put_json_str(b, r->ref[i]->name, strlen(r->ref[i]->name));
        (void)rk_buf_printf(b, ",\"prediction\":%s,\"method\":\"%s\",\"drift\":%s,"
                            "\"score\":", r->ref[i]->name && i == r->n - 1 &&
                            !strcmp(r->ref[i]->name, "prediction") ? "true" : "false",
                            rk_drift_method_name(f->method),
                            f->drift ? "true" : "false");
        (void)rk_buf_put_json_num(b, f->score);
        (void)rk_buf_puts(b, ",\"threshold\":");
        (void)rk_buf_put_json_num(b, f->threshold);
        (void)rk_buf_puts(b, ",\"psi\":");
        (void)rk_buf_put_json_num(b, f->psi);
        (void)rk_buf_printf(b, ",\"psi_alarm\":%s,\"js\":", f->psi_alarm ? "true" : "false");
        (void)rk_buf_put_json_num(b, f->js);
        (void)rk_buf_puts(b, ",\"chi2_p\":");
        (void)rk_buf_put_json_num(b, f->chi2_p);
        (void)rk_buf_puts(b, ",\"deff\":");
        (void)rk_buf_put_json_num(b, f->deff);
        (void)rk_buf_puts(b, ",\"chi2_p_adj\":");
        (void)rk_buf_put_json_num(b, f->chi2_p_adj);
        (void)rk_buf_puts(b, ",\"ref_missing_rate\":");
        (void)rk_buf_put_json_num(b, f->ref_missing_rate);
        (void)rk_buf_puts(b, ",\"cur_missing_rate\":");
        (void)rk_buf_put_json_num(b, f->cur_missing_rate);
        (void)rk_buf_printf(b, ",\"ref_count\":%llu,\"cur_count\":%llu}",
                            (unsigned long long)f->ref_count,
                            (unsigned long long)f->cur_count);
    }
    (void)rk_buf_puts(b, "]}");
    return b->len && b->data ? 0 : RK_ENOMEM;
}

void rk_drift_report_table(const rk_drift_report *r, FILE *out)
{
    fprintf(out, "%-28s %-13s %5s %9s %9s %8s %8s %9s %9s %7s\n", "feature",
            "method", "drift", "score", "threshold", "psi", "js", "miss ref",
            "miss cur", "deff");
    for (size_t k = 0; k < r->n; k++) {
        size_t i = r->order[k];
        const rk_drift_feature *f = &r->f[i];
        fprintf(out, "%-28.28s %-13s %5s %9.4g %9.4g %8.4f%s %8.4f %9.4f %9.4f %7.2f\n",
                r->ref[i]->name, rk_drift_method_name(f->method),
                f->drift ? "YES" : "no", f->score, f->threshold, f->psi,
                f->psi_alarm ? "!" : " ", f->js, f->ref_missing_rate,
                f->cur_missing_rate, f->deff);
    }
    fprintf(out, "dataset drift: %s (%zu of %zu evaluated features drifted, "
            "share %.2f)\n", r->ds.drift ? "YES" : "no", r->ds.ndrifted,
            r->ds.nevaluated, r->ds.share);
}

static void html_escape(FILE *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", o);
        else if (*s == '>') fputs("&gt;", o);
        else if (*s == '&') fputs("&amp;", o);
        else if (*s == '"') fputs("&quot;", o);
        else fputc(*s, o);
    }
}

/* Reference (grey) and current (blue or red when drifted) bin shares as
 * paired bars, 360 x 120 px. */
static void svg(FILE *o, const rk_refhist *h, const double *cur, int drift)
{
    const double W = 360, H = 100;
    double ref_tot = 0, mx = 1e-12;
    for (uint32_t b = 0; b < h->nbins; b++) ref_tot += (double)h->counts[b];
    for (uint32_t b = 0; b < h->nbins; b++) {
        double rs = ref_tot > 0 ? (double)h->counts[b] / ref_tot : 0;
        if (rs > mx) mx = rs;
        if (cur[b] > mx) mx = cur[b];
    }
    double bw = W / (h->nbins ? h->nbins : 1);
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\">", W, H + 20, W, H + 20);
    for (uint32_t b = 0; b < h->nbins; b++) {
        double rs = ref_tot > 0 ? (double)h->counts[b] / ref_tot : 0;
        double rh = H * rs / mx, ch = H * cur[b] / mx;
        fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"#9e9e9e\"><title>bin %u reference %.4f</title></rect>",
                b * bw + 1, H - rh, bw / 2 - 1, rh, b, rs);
        fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"%s\"><title>bin %u current %.4f</title></rect>",
                b * bw + bw / 2, H - ch, bw / 2 - 1, ch, drift ? "#d32f2f" : "#1976d2",
                b, cur[b]);
    }
    fprintf(o, "<line x1=\"0\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#333\"/>",
            H, W, H);
    if (h->nbins > 1 && h->edges)
        fprintf(o, "<text x=\"0\" y=\"%.0f\" font-size=\"10\">%.4g</text>"
                "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"end\">%.4g"
                "</text>", H + 14, h->edges[0], W, H + 14, h->edges[h->nbins - 2]);
    fputs("</svg>", o);
}

int rk_drift_report_html(const rk_drift_report *r, const char *title,
                         const char *extra, FILE *o)
{
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", o);
    html_escape(o, title);
    fputs("</title><style>body{font-family:sans-serif;margin:2em}"
          "table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:"
          "1px solid #ddd;text-align:left;vertical-align:middle}"
          ".yes{color:#d32f2f;font-weight:bold}</style></head><body><h1>", o);
    html_escape(o, title);
    fprintf(o, "</h1><p>Dataset drift: <b class=\"%s\">%s</b> — %zu of %zu "
            "evaluated features drifted (share %.2f). Grey: reference (training "
            "rows); blue: current window (red when the feature drifts).</p>",
            r->ds.drift ? "yes" : "", r->ds.drift ? "YES" : "no", r->ds.ndrifted,
            r->ds.nevaluated, r->ds.share);
    fputs("<table><tr><th>feature</th><th>method</th><th>drift</th><th>score"
          "</th><th>PSI</th><th>JS</th><th>missing ref / cur</th><th>deff</th>"
          "<th>reference vs current</th></tr>\n", o);
    for (size_t k = 0; k < r->n; k++) {
        size_t i = r->order[k];
        const rk_drift_feature *f = &r->f[i];
        fputs("<tr><td>", o);
        html_escape(o, r->ref[i]->name);
        fprintf(o, "</td><td>%s</td><td class=\"%s\">%s</td><td>%.4g (vs %.4g)"
                "</td><td>%.4f%s</td><td>%.4f</td><td>%.4f / %.4f</td><td>%.2f</td><td>",
                rk_drift_method_name(f->method), f->drift ? "yes" : "",
                f->drift ? "YES" : "no", f->score, f->threshold, f->psi,
                f->psi_alarm ? " (alarm)" : "", f->js, f->ref_missing_rate,
                f->cur_missing_rate, f->deff);
        if (r->ref[i]->kind == RK_REFHIST_NUMERIC)
            svg(o, r->ref[i], r->cur_share + i * r->maxbins, f->drift);
        fputs("</td></tr>\n", o);
    }
    fputs("</table>", o);
    if (extra) fputs(extra, o);
    fputs("</body></html>\n", o);
    return ferror(o) ? RK_EIO : 0;
}
