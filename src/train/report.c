/*
 * report.c — an evaluation report as a table for people and as JSON for
 * programs.
 *
 * Both carry what is needed to reproduce and judge a run: the data and its
 * size, the protocol and every parameter of it, the seed, each model's
 * parameters, the size of every split, per-split and mean ± std metrics,
 * and the time taken. The JSON layout is documented in docs/retrieval.md.
 */
#include <math.h>
#include <string.h>

#include "train_int.h"

static double frac_in_catalog(const rk_eval_report *r)
{
    uint64_t in = 0, all = 0;
    for (uint32_t s = 0; s < r->nsplits; s++) {
        in += r->splits[s].scored_in_catalog;
        all += r->splits[s].scored_all;
    }
    return all ? (double)in / (double)all : 0;
}

static int restricted(const rk_eval_report *r)
{
    if (r->opts.restrict_catalog >= 0) return r->opts.restrict_catalog;
    return r->opts.protocol != RK_EVAL_IMPRESSIONS;
}

static uint32_t minpos(const rk_eval_report *r)
{
    if (r->opts.min_positives) return r->opts.min_positives;
    return r->opts.protocol == RK_EVAL_HELDOUT ? 5
           : r->opts.protocol == RK_EVAL_LOO   ? 2
                                               : 1;
}

/* ---- table ------------------------------------------------------------------ */

static void describe_protocol(const rk_eval_report *r, FILE *f)
{
    const rk_eval_opts *o = &r->opts;
    char t[32];
    switch (o->protocol) {
    case RK_EVAL_HELDOUT:
        fprintf(f, "protocol  heldout (Liang et al. 2018): %u folds over users "
                   "with >= %u positive items; each test user's items split "
                   "%.0f%% folded in / %.0f%% scored; seed %llu\n",
                o->folds, minpos(r), 100 * (1 - o->test_fraction),
                100 * o->test_fraction, (unsigned long long)o->seed);
        break;
    case RK_EVAL_TEMPORAL:
        rk_format_time_ms(r->splits[0].split_ts, t);
        if (o->split_ts == INT64_MIN)
            fprintf(f, "protocol  temporal: train on events before %s "
                       "(quantile %.2f of event times), score each "
                       "training user's new items after it\n",
                    t, o->split_quantile);
        else
            fprintf(f, "protocol  temporal: train on events before %s, "
                       "score each training user's new items after it\n", t);
        break;
    case RK_EVAL_LOO:
        fprintf(f, "protocol  loo: each user's last positive item held out "
                   "(users with >= %u); ties broken with seed %llu\n",
                minpos(r), (unsigned long long)o->seed);
        break;
    default:
        rk_format_time_ms(r->splits[0].split_ts, t);
        fprintf(f, "protocol  impressions: train on events without a "
                   "request (histories) and requests before %s%s; each "
                   "later request with a positive event is a case, fold-in "
                   "= the user's training history\n",
                t, o->split_ts == INT64_MIN ? " (quantile of request times)" : "");
        break;
    }
}

void rk_eval_report_table(const rk_eval_report *r, FILE *f)
{
    const rk_eval_opts *o = &r->opts;
    fprintf(f, "data      %s: %u users, %u items, %llu feedback events, "
               "%llu positive pairs",
            r->data_name, r->nusers, r->nitems,
            (unsigned long long)r->nevents,
            (unsigned long long)r->positives);
    if (r->data_from_store)
        fprintf(f, " (valued events count when value >= %g)",
                r->data_opts.valued_min);
    fputc('\n', f);
    describe_protocol(r, f);
    uint32_t cmin = UINT32_MAX, cmax = 0, kmin = UINT32_MAX, kmax = 0;
    for (uint32_t s = 0; s < r->nsplits; s++) {
        const rk__eval_split_info *i = &r->splits[s];
        if (i->cases < cmin) cmin = i->cases;
        if (i->cases > cmax) cmax = i->cases;
        if (i->catalog < kmin) kmin = i->catalog;
        if (i->catalog > kmax) kmax = i->catalog;
    }
    fprintf(f, "splits    %u; test cases %u..%u per split; catalog %u..%u "
               "items; scored items in catalog %.1f%% (%s)\n",
            r->nsplits, cmin, cmax, kmin, kmax, 100 * frac_in_catalog(r),
            restricted(r) ? "others dropped" : "others count as misses");
    fprintf(f, "ranking   full catalog, fold-in items excluded; %u threads; "
               "wall %.2f s\n\n", r->threads, r->wall_sec);
    fprintf(f, "%-14s %5s  %-16s %-16s %-16s %-16s %8s %8s %8s %8s\n",
            "model", "K", "Recall@K", "NDCG@K", "MAP@K", "HitRate@K",
            "Coverage", "MeanPop", "train s", "score s");
    for (size_t m = 0; m < r->nmodels; m++) {
        double tr = 0, sc = 0;
        for (uint32_t s = 0; s < r->nsplits; s++) {
            tr += r->train_sec[m * r->nsplits + s];
            sc += r->score_sec[m * r->nsplits + s];
        }
        for (size_t k = 0; k < o->nks; k++) {
            rk_eval_metrics mu, sd;
            rk_eval_report_get(r, m, k, -1, &mu, &sd);
            char cell[4][32];
            const double v[4][2] = {{mu.recall, sd.recall},
                                    {mu.ndcg, sd.ndcg},
                                    {mu.map, sd.map},
                                    {mu.hit, sd.hit}};
            for (int i = 0; i < 4; i++)
                snprintf(cell[i], sizeof cell[i], "%.4f ± %.4f", v[i][0],
                         v[i][1]);
            fprintf(f, "%-14s %5u  %-17s %-17s %-17s %-17s %8.3f %8.1f",
                    k == 0 ? r->names[m] : "", o->ks[k], cell[0], cell[1],
                    cell[2], cell[3], mu.coverage, mu.popularity);
            if (k == 0) fprintf(f, " %8.2f %8.2f", tr, sc);
            fputc('\n', f);
        }
    }
    fprintf(f, "\nmean ± sample std over %u split%s; Recall and MAP "
               "normalised by min(K, |held-out|); MeanPop = mean training "
               "users per recommended item\n",
            r->nsplits, r->nsplits == 1 ? "" : "s");
}

/* ---- JSON ---------------------------------------------------------------------- */

static int num(rk_buf *b, double x)
{
    if (!isfinite(x)) return rk_buf_puts(b, "null");
    return rk_buf_printf(b, "%.10g", x);
}

static int metrics_obj(rk_buf *b, const rk_eval_metrics *m)
{
    int rc = rk_buf_puts(b, "{\"recall\":");
    rc = rc ? rc : num(b, m->recall);
    rc = rc ? rc : rk_buf_puts(b, ",\"ndcg\":");
    rc = rc ? rc : num(b, m->ndcg);
    rc = rc ? rc : rk_buf_puts(b, ",\"map\":");
    rc = rc ? rc : num(b, m->map);
    rc = rc ? rc : rk_buf_puts(b, ",\"hit_rate\":");
    rc = rc ? rc : num(b, m->hit);
    rc = rc ? rc : rk_buf_puts(b, ",\"coverage\":");
    rc = rc ? rc : num(b, m->coverage);
    rc = rc ? rc : rk_buf_puts(b, ",\"mean_popularity\":");
    rc = rc ? rc : num(b, m->popularity);
    return rc ? rc : rk_buf_putc(b, '}');
}

/* {"20": {...}, "50": {...}} for one model and one split (or -1). */
static int by_k(rk_buf *b, const rk_eval_report *r, size_t m, int split,
                int want_std)
{
    int rc = rk_buf_putc(b, '{');
    for (size_t k = 0; k < r->opts.nks && !rc; k++) {
        rk_eval_metrics mu, sd;
        rk_eval_report_get(r, m, k, split, &mu, &sd);
        rc = rk_buf_printf(b, "%s\"%u\":", k ? "," : "", r->opts.ks[k]);
        rc = rc ? rc : metrics_obj(b, want_std ? &sd : &mu);
    }
    return rc ? rc : rk_buf_putc(b, '}');
}

static int str(rk_buf *b, const char *s)
{
    return rk_buf_put_json_str(b, s, strlen(s));
}

int rk_eval_report_json(const rk_eval_report *r, rk_buf *b)
{
    const rk_eval_opts *o = &r->opts;
    char t[32];
    rk_format_time_ms(r->started_ms, t);
    int rc = rk_buf_puts(b, "{\"rankd_eval\":1,\"started\":");
    rc = rc ? rc : str(b, t);
    rc = rc ? rc : rk_buf_puts(b, ",\"data\":{\"source\":");
    rc = rc ? rc : str(b, r->data_name);
    rc = rc ? rc : rk_buf_printf(b, ",\"users\":%u,\"items\":%u,"
                                    "\"feedback_events\":%llu,"
                                    "\"positive_pairs\":%llu",
                                 r->nusers, r->nitems,
                                 (unsigned long long)r->nevents,
                                 (unsigned long long)r->positives);
    if (r->data_from_store) {
        rc = rc ? rc : rk_buf_puts(b, ",\"valued_min\":");
        rc = rc ? rc : num(b, r->data_opts.valued_min);
        rc = rc ? rc : rk_buf_printf(b, ",\"value_as_weight\":%s,"
                                        "\"negatives_remove\":%s",
                                     r->data_opts.value_as_weight ? "true" : "false",
                                     r->data_opts.negatives_remove ? "true" : "false");
    }
    rc = rc ? rc : rk_buf_puts(b, "},\"protocol\":{\"name\":");
    rc = rc ? rc : str(b, rk_eval_protocol_name(o->protocol));
    rc = rc ? rc : rk_buf_printf(b, ",\"splits\":%u,\"seed\":%llu,"
                                    "\"min_positives\":%u,"
                                    "\"restrict_catalog\":%s",
                                 r->nsplits, (unsigned long long)o->seed,
                                 minpos(r), restricted(r) ? "true" : "false");
    if (o->protocol == RK_EVAL_HELDOUT) {
        rc = rc ? rc : rk_buf_printf(b, ",\"folds\":%u,\"test_fraction\":",
                                     o->folds);
        rc = rc ? rc : num(b, o->test_fraction);
    }
    if (o->protocol == RK_EVAL_TEMPORAL || o->protocol == RK_EVAL_IMPRESSIONS) {
        rk_format_time_ms(r->splits[0].split_ts, t);
        rc = rc ? rc : rk_buf_puts(b, ",\"split_time\":");
        rc = rc ? rc : str(b, t);
        if (o->split_ts == INT64_MIN) {
            rc = rc ? rc : rk_buf_puts(b, ",\"split_quantile\":");
            rc = rc ? rc : num(b, o->split_quantile);
        }
    }
    rc = rc ? rc : rk_buf_puts(b, ",\"ranking\":\"full catalog, fold-in "
                                  "items excluded\"},\"ks\":[");
    for (size_t k = 0; k < o->nks && !rc; k++)
        rc = rk_buf_printf(b, "%s%u", k ? "," : "", o->ks[k]);
    rc = rc ? rc : rk_buf_printf(b, "],\"threads\":%u,\"splits\":[", r->threads);
    for (uint32_t s = 0; s < r->nsplits && !rc; s++) {
        const rk__eval_split_info *i = &r->splits[s];
        rc = rk_buf_printf(b, "%s{\"index\":%u,\"cases\":%u,"
                              "\"train_users\":%u,\"catalog\":%u,"
                              "\"train_pairs\":%llu,\"foldin_pairs\":%llu,"
                              "\"scored_pairs\":%llu,"
                              "\"scored_in_catalog\":%llu,"
                              "\"scored_before_restriction\":%llu}",
                           s ? "," : "", s, i->cases, i->train_users,
                           i->catalog, (unsigned long long)i->train_nnz,
                           (unsigned long long)i->foldin,
                           (unsigned long long)i->scored,
                           (unsigned long long)i->scored_in_catalog,
                           (unsigned long long)i->scored_all);
    }
    rc = rc ? rc : rk_buf_puts(b, "],\"models\":[");
    for (size_t m = 0; m < r->nmodels && !rc; m++) {
        rc = rk_buf_puts(b, m ? ",{\"name\":" : "{\"name\":");
        rc = rc ? rc : str(b, r->names[m]);
        rc = rc ? rc : rk_buf_puts(b, ",\"kind\":");
        rc = rc ? rc : str(b, r->kinds[m]);
        rc = rc ? rc : rk_buf_puts(b, ",\"params\":");
        rc = rc ? rc : rk_buf_puts(b, r->params[m]);
        rc = rc ? rc : rk_buf_puts(b, ",\"splits\":[");
        for (uint32_t s = 0; s < r->nsplits && !rc; s++) {
            rc = rk_buf_printf(b, "%s{\"index\":%u,\"train_seconds\":",
                               s ? "," : "", s);
            rc = rc ? rc : num(b, r->train_sec[m * r->nsplits + s]);
            rc = rc ? rc : rk_buf_puts(b, ",\"score_seconds\":");
            rc = rc ? rc : num(b, r->score_sec[m * r->nsplits + s]);
            rc = rc ? rc : rk_buf_puts(b, ",\"metrics\":");
            rc = rc ? rc : by_k(b, r, m, (int)s, 0);
            rc = rc ? rc : rk_buf_putc(b, '}');
        }
        rc = rc ? rc : rk_buf_puts(b, "],\"mean\":");
        rc = rc ? rc : by_k(b, r, m, -1, 0);
        rc = rc ? rc : rk_buf_puts(b, ",\"std\":");
        rc = rc ? rc : by_k(b, r, m, -1, 1);
        rc = rc ? rc : rk_buf_putc(b, '}');
    }
    rc = rc ? rc : rk_buf_puts(b, "],\"wall_seconds\":");
    rc = rc ? rc : num(b, r->wall_sec);
    rc = rc ? rc : rk_buf_puts(b, "}\n");
    return rc;
}
