/*
 * eval.c — the evaluation harness: every model on every split, full
 * ranking over the catalog.
 *
 * For each split the models are trained on its matrix, then every test
 * case is scored from its fold-in items into a dense array over the whole
 * catalog; the fold-in items are set to -inf (a user is never recommended
 * what they already have), and the best max(K) items are kept with a
 * bounded heap. Ties go to the lower column so a ranking never depends on
 * the order threads finish in. Metrics are computed afterwards, serially,
 * from the stored lists, so the numbers are the same for any thread count.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "train_int.h"

/* ---- top-K selection -------------------------------------------------------- */

typedef struct scored {
    float s;
    uint32_t item;
} scored;

/* a ranks before b. */
static int better(scored a, scored b)
{
    return a.s > b.s || (a.s == b.s && a.item < b.item);
}

/* Min-heap on "better": the root is the worst item kept so far. */
static void sift_down(scored *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(h[w], h[l])) w = l;
        if (r < n && better(h[w], h[r])) w = r;
        if (w == i) return;
        scored t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static int cmp_better(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    return better(*x, *y) ? -1 : better(*y, *x) ? 1 : 0;
}

/* The best k items of scores[0..n) (skipping -inf and NaN) into out,
 * best first; returns how many. heap has room for k. */
static uint32_t top_k(const float *scores, uint32_t n, uint32_t k,
                      scored *heap, uint32_t *out)
{
    size_t hn = 0;
    for (uint32_t i = 0; i < n; i++) {
        float s = scores[i];
        if (!(s > -INFINITY)) continue; /* also drops NaN */
        scored x = {s, i};
        if (hn < k) {
            /* Sift up. */
            size_t j = hn++;
            heap[j] = x;
            while (j > 0 && better(heap[(j - 1) / 2], heap[j])) {
                scored t = heap[j];
                heap[j] = heap[(j - 1) / 2];
                heap[(j - 1) / 2] = t;
                j = (j - 1) / 2;
            }
        } else if (better(x, heap[0])) {
            heap[0] = x;
            sift_down(heap, hn, 0);
        }
    }
    qsort(heap, hn, sizeof *heap, cmp_better);
    for (size_t i = 0; i < hn; i++) out[i] = heap[i].item;
    return (uint32_t)hn;
}

/* ---- scoring in parallel -------------------------------------------------------- */

typedef struct score_job {
    const rk_eval_split *s;
    const rk_eval_model *m;
    uint32_t kmax;
    uint32_t *lists;   /* ncases x kmax */
    uint32_t *lens;    /* ncases */
    pthread_mutex_t mu;
    int rc;            /* first error, under mu */
    rk_err err;
} score_job;

static void job_fail(score_job *j, int rc, const rk_err *e)
{
    pthread_mutex_lock(&j->mu);
    if (!j->rc) {
        j->rc = rc;
        if (e) j->err = *e;
        else rk_err_set(&j->err, rc, "eval: out of memory");
    }
    pthread_mutex_unlock(&j->mu);
}

static void score_range(void *arg, size_t begin, size_t end)
{
    score_job *j = arg;
    const rk_eval_split *s = j->s;
    uint32_t nitems = s->train->nitems;
    float *sc = rk_malloc(sizeof(float) * ((size_t)nitems + 1));
    scored *heap = rk_malloc(sizeof(scored) * ((size_t)j->kmax + 1));
    if (!sc || !heap) {
        job_fail(j, RK_ENOMEM, NULL);
        goto done;
    }
    for (size_t c = begin; c < end; c++) {
        pthread_mutex_lock(&j->mu);
        int stop = j->rc;
        pthread_mutex_unlock(&j->mu);
        if (stop) break;
        uint64_t a = s->foldin_ptr[c], n = s->foldin_ptr[c + 1] - a;
        rk_err e = {0};
        int rc = rk_eval_model_score(j->m, s->foldin_items + a,
                                     s->foldin_weight + a, n, sc, &e);
        if (rc) {
            job_fail(j, rc, &e);
            break;
        }
        for (uint64_t k = a; k < a + n; k++) sc[s->foldin_items[k]] = -INFINITY;
        j->lens[c] = top_k(sc, nitems, j->kmax, heap,
                           j->lists + c * (size_t)j->kmax);
    }
done:
    rk_free(sc);
    rk_free(heap);
}

/* ---- metrics of one model on one split ------------------------------------------- */

static int split_metrics(const rk_eval_split *s, const rk_eval_opts *o,
                         const uint32_t *lists, const uint32_t *lens,
                         uint32_t kmax, rk_eval_metrics *out /* [nks] */)
{
    uint32_t *cat = rk_malloc(sizeof(uint32_t) * ((size_t)s->ncases * kmax + 1));
    if (!cat) return RK_ENOMEM;
    for (size_t ki = 0; ki < o->nks; ki++) {
        uint32_t K = o->ks[ki];
        double sum[4] = {0, 0, 0, 0};
        size_t ncat = 0;
        for (uint32_t c = 0; c < s->ncases; c++) {
            const uint32_t *l = lists + (size_t)c * kmax;
            uint32_t len = lens[c] < K ? lens[c] : K;
            uint64_t a = s->scored_ptr[c], n = s->scored_ptr[c + 1] - a;
            rk_metrics_at m;
            rk_metrics_at_k(l, len, s->scored_items + a, n, s->scored_total[c],
                            K, &m);
            sum[0] += m.recall;
            sum[1] += m.ndcg;
            sum[2] += m.map;
            sum[3] += m.hit;
            memcpy(cat + ncat, l, sizeof(uint32_t) * len);
            ncat += len;
        }
        rk_eval_metrics *r = &out[ki];
        double nc = s->ncases ? (double)s->ncases : 1;
        r->recall = sum[0] / nc;
        r->ndcg = sum[1] / nc;
        r->map = sum[2] / nc;
        r->hit = sum[3] / nc;
        if (rk_metrics_coverage(cat, ncat, s->train->nitems, &r->coverage)) {
            rk_free(cat);
            return RK_ENOMEM;
        }
        r->popularity = rk_metrics_mean_popularity(cat, ncat, s->popularity);
    }
    rk_free(cat);
    return 0;
}

/* ---- the report --------------------------------------------------------------------- */

void rk_eval_report_free(rk_eval_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nmodels; i++) {
        if (r->names) rk_free(r->names[i]);
        if (r->kinds) rk_free(r->kinds[i]);
        if (r->params) rk_free(r->params[i]);
    }
    rk_free(r->names);
    rk_free(r->kinds);
    rk_free(r->params);
    rk_free(r->data_name);
    rk_free(r->splits);
    rk_free(r->m);
    rk_free(r->train_sec);
    rk_free(r->score_sec);
    rk_free(r);
}

static rk_eval_report *report_alloc(const rk_eval_data *d,
                                    const rk_eval_opts *o,
                                    rk_eval_model *const *models,
                                    size_t nmodels)
{
    rk_eval_report *r = rk_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->opts = *o;
    r->opts.data_name = NULL;
    r->opts.log = NULL;
    r->nmodels = nmodels;
    r->nsplits = rk_eval_nsplits(o);
    r->nusers = d->nusers;
    r->nitems = d->nitems;
    r->nevents = d->n;
    r->positives = d->all->nnz;
    r->data_from_store = d->from_store;
    r->data_opts = d->opts;
    size_t nm = nmodels ? nmodels : 1;
    r->names = rk_calloc(nm, sizeof(char *));
    r->kinds = rk_calloc(nm, sizeof(char *));
    r->params = rk_calloc(nm, sizeof(char *));
    r->splits = rk_calloc(r->nsplits, sizeof *r->splits);
    r->m = rk_calloc(nm * r->nsplits * o->nks, sizeof *r->m);
    r->train_sec = rk_calloc(nm * r->nsplits, sizeof(double));
    r->score_sec = rk_calloc(nm * r->nsplits, sizeof(double));
    r->data_name = rk_strdup(o->data_name ? o->data_name : "(memory)");
    if (!r->names || !r->kinds || !r->params || !r->splits || !r->m ||
        !r->train_sec || !r->score_sec || !r->data_name)
        goto fail;
    for (size_t i = 0; i < nmodels; i++) {
        rk_buf b;
        rk_buf_init(&b, 1 << 16);
        r->names[i] = rk_strdup(rk_eval_model_name(models[i]));
        r->kinds[i] = rk_strdup(rk_eval_model_kind(models[i]));
        if (rk_eval_model_params(models[i], &b) || !b.data) {
            rk_buf_free(&b);
            goto fail;
        }
        r->params[i] = b.data; /* the buffer's memory is rk_malloc'd */
        if (!r->names[i] || !r->kinds[i]) goto fail;
    }
    return r;
fail:
    rk_eval_report_free(r);
    return NULL;
}

size_t rk_eval_report_nmodels(const rk_eval_report *r) { return r->nmodels; }
uint32_t rk_eval_report_nsplits(const rk_eval_report *r) { return r->nsplits; }

static rk_eval_metrics *metric_at(const rk_eval_report *r, size_t model,
                                  uint32_t split, size_t k)
{
    return &r->m[(model * r->nsplits + split) * r->opts.nks + k];
}

int rk_eval_report_get(const rk_eval_report *r, size_t model, size_t k,
                       int split, rk_eval_metrics *mean, rk_eval_metrics *std)
{
    if (model >= r->nmodels || k >= r->opts.nks ||
        (split >= 0 && (uint32_t)split >= r->nsplits) || split < -1)
        return RK_EINVAL;
    if (split >= 0) {
        *mean = *metric_at(r, model, (uint32_t)split, k);
        if (std) memset(std, 0, sizeof *std);
        return 0;
    }
    /* Six doubles side by side: treat the struct as an array. */
    enum { NM = sizeof(rk_eval_metrics) / sizeof(double) };
    double mu[NM] = {0}, var[NM] = {0};
    for (uint32_t s = 0; s < r->nsplits; s++) {
        const double *x = (const double *)metric_at(r, model, s, k);
        for (int i = 0; i < NM; i++) mu[i] += x[i] / r->nsplits;
    }
    for (uint32_t s = 0; s < r->nsplits; s++) {
        const double *x = (const double *)metric_at(r, model, s, k);
        for (int i = 0; i < NM; i++) var[i] += (x[i] - mu[i]) * (x[i] - mu[i]);
    }
    memcpy(mean, mu, sizeof *mean);
    if (std) {
        double *sd = (double *)std;
        for (int i = 0; i < NM; i++)
            sd[i] = r->nsplits > 1 ? sqrt(var[i] / (r->nsplits - 1)) : 0;
    }
    return 0;
}

/* ---- the run -------------------------------------------------------------------------- */

int rk_eval_run(const rk_eval_data *d, const rk_eval_opts *o,
                rk_eval_model *const *models, size_t nmodels,
                rk_eval_report **out, rk_err *err)
{
    int rc = rk_eval_opts_check(o, err);
    if (rc) return rc;
    uint64_t t0 = rk_clock_mono_ns();
    rk_eval_report *r = report_alloc(d, o, models, nmodels);
    if (!r) return rk_err_set(err, RK_ENOMEM, "eval: out of memory");
    r->started_ms = rk_clock_wall_ms();
    rk_pool *pool = NULL;
    if ((rc = rk_pool_create(&pool, o->threads, 0))) {
        rk_eval_report_free(r);
        return rk_err_set(err, rc, "eval: cannot start %u threads", o->threads);
    }
    r->threads = rk_pool_threads(pool);
    uint32_t kmax = o->ks[o->nks - 1];
    for (uint32_t si = 0; si < r->nsplits && !rc; si++) {
        rk_eval_split *s = NULL;
        if ((rc = rk_eval_split_make(d, o, si, &s, err))) break;
        rk__eval_split_info *inf = &r->splits[si];
        inf->cases = s->ncases;
        inf->train_users = s->train->nusers;
        inf->catalog = s->train->nitems;
        inf->train_nnz = s->train->nnz;
        inf->scored = s->scored_ptr[s->ncases];
        inf->foldin = s->foldin_ptr[s->ncases];
        inf->scored_all = s->scored_all;
        inf->scored_in_catalog = s->scored_in_catalog;
        inf->split_ts = s->split_ts;
        uint32_t *lists = rk_malloc(sizeof(uint32_t) *
                                    ((size_t)s->ncases * kmax + 1));
        uint32_t *lens = rk_calloc((size_t)s->ncases + 1, sizeof(uint32_t));
        if (!lists || !lens) rc = rk_err_set(err, RK_ENOMEM, "eval: out of memory");
        for (size_t mi = 0; mi < nmodels && !rc; mi++) {
            uint64_t a = rk_clock_mono_ns();
            if ((rc = rk_eval_model_train(models[mi], s->train, pool, err))) {
                rk_err_prefix(err, "%s: ", rk_eval_model_name(models[mi]));
                break;
            }
            uint64_t b = rk_clock_mono_ns();
            score_job j = {.s = s, .m = models[mi], .kmax = kmax,
                           .lists = lists, .lens = lens};
            pthread_mutex_init(&j.mu, NULL);
            rk_pool_parallel_for(pool, s->ncases, 8, score_range, &j);
            pthread_mutex_destroy(&j.mu);
            if (j.rc) {
                rc = j.rc;
                if (err) *err = j.err;
                rk_err_prefix(err, "%s: ", rk_eval_model_name(models[mi]));
                break;
            }
            uint64_t c = rk_clock_mono_ns();
            if ((rc = split_metrics(s, o, lists, lens, kmax,
                                    metric_at(r, mi, si, 0)))) {
                rk_err_set(err, rc, "eval: out of memory");
                break;
            }
            r->train_sec[mi * r->nsplits + si] = (double)(b - a) / 1e9;
            r->score_sec[mi * r->nsplits + si] = (double)(c - b) / 1e9;
            const rk_eval_metrics *m0 = metric_at(r, mi, si, 0);
            rk_log(o->log, RK_LOG_INFO, "eval",
                   "split %u/%u: %s: %u cases, recall@%u %.4f, ndcg@%u "
                   "%.4f, train %.2f s, score %.2f s",
                   si + 1, r->nsplits, rk_eval_model_name(models[mi]),
                   s->ncases, o->ks[0], m0->recall, o->ks[0], m0->ndcg,
                   (double)(b - a) / 1e9, (double)(c - b) / 1e9);
        }
        rk_free(lists);
        rk_free(lens);
        rk_eval_split_free(s);
    }
    rk_pool_destroy(pool);
    if (rc) {
        rk_eval_report_free(r);
        return rc;
    }
    r->wall_sec = (double)(rk_clock_mono_ns() - t0) / 1e9;
    *out = r;
    return 0;
}
