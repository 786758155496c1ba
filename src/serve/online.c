/*
 * online.c — delayed labels inside `rankd serve`. Every ranking served by
 * a model is remembered (request id, model version, items, served scores
 * and, when the loop learns online, the feature vectors) until the label
 * window (`labels.window`, counted from when it was served) has passed;
 * events carrying the request id mark its items exposed, positive or
 * negative as the `labels:` roles say. A ripe request becomes labelled
 * examples: they feed the per-version online metrics (log loss, AUC,
 * calibration: concept drift, compared with the version's offline
 * validation values), and the online learner's queue. Memory is bounded
 * by `monitor.label_requests` requests and `monitor.label_bytes`; beyond
 * them the oldest pending request is dropped and counted.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

typedef struct ol_item {
    const char *id;             /* external id, in the entry's blob */
    float score;
    float gain;                 /* the largest gain of its events, as the join */
    uint8_t exposed, positive, negative;
    rk_fvec x;                  /* arrays in the blob; ndense 0 = none */
} ol_item;

typedef struct ol_entry {
    struct ol_entry *next;
    int64_t ts_ms;              /* server clock when served */
    uint32_t stat;              /* index into the version table */
    uint32_t n;
    size_t bytes;
    char rid[48];
    ol_item items[];
} ol_entry;

#define OL_RING 4

/* Per model version: what its served predictions scored once labelled. */
typedef struct ol_stat {
    char name[SV_NAME_MAX];
    uint32_t version, prev;     /* prev: the version served before it */
    int used, checked;
    uint64_t born;              /* creation order (o->stat_clock) */
    rk_concept_acc acc;
    /* Concept drift: its first concept_window labels (the baseline), then
     * the latest ones in OL_RING chunks of concept_window / OL_RING. */
    rk_concept_acc base;
    rk_concept_acc ring[OL_RING];
    int64_t ring_from_ms[OL_RING]; /* served time of each chunk's first label */
    uint32_t ring_cur;             /* the chunk being filled */
} ol_stat;

#define OL_MAX_STATS 32
#define OL_MAX_EXAMPLES 100000

struct sv_online {
    pthread_mutex_t mu;
    rk_map *map;                /* request id -> ol_entry* */
    ol_entry *head, *tail;      /* oldest first */
    size_t count, bytes, max_count, max_bytes;
    int64_t window_ms;
    int keep_vectors;
    int require_exposure;
    double concept_window;      /* labels of the baseline and recent windows */
    const rk_label_conf *lc;    /* the server's labels: section */
    int type_of[RK_MAX_EVENT_TYPES]; /* event type -> index in lc->types */
    uint64_t dropped, late, labelled, unscored;
    /* versions (guarded by mu) */
    ol_stat stats[OL_MAX_STATS];
    uint64_t stat_clock;
    /* examples for the online learner (guarded by mu) */
    sv_example *ex_head, *ex_tail;
    size_t nex;
    uint64_t ex_dropped;
};

int sv_online_create(rk_server *s, size_t max_requests, size_t max_bytes,
                     int keep_vectors, rk_err *err)
{
    sv_online *o = rk_calloc(1, sizeof *o);
    if (!o) return rk_err_set(err, RK_ENOMEM, "labels: out of memory");
    if (rk_map_create(&o->map, max_requests ? max_requests : 1)) {
        rk_free(o);
        return rk_err_set(err, RK_ENOMEM, "labels: out of memory");
    }
    pthread_mutex_init(&o->mu, NULL);
    o->max_count = max_requests;
    o->max_bytes = max_bytes;
    o->keep_vectors = keep_vectors;
    o->window_ms = s->labels.window_ms;
    o->require_exposure = s->labels.require_exposure;
    o->concept_window = (double)s->loop.concept_window;
    o->lc = &s->labels;
    rk_label_type_map(&s->labels, o->type_of);
    s->onl = o;
    return 0;
}

/* Unlinks the oldest pending request (o->head, not NULL) from the queue,
 * the map and the counts. mu held. */
static ol_entry *pop_head(sv_online *o)
{
    ol_entry *e = o->head;
    o->head = e->next;
    if (!o->head) o->tail = NULL;
    (void)rk_map_del(o->map, e->rid, strlen(e->rid));
    o->count--;
    o->bytes -= e->bytes;
    return e;
}

static void free_list(ol_entry *e)
{
    while (e) {
        ol_entry *n = e->next;
        rk_free(e);
        e = n;
    }
}

void sv_example_free(sv_example *e)
{
    while (e) {
        sv_example *n = e->next;
        rk_free(e);
        e = n;
    }
}

void sv_online_destroy(rk_server *s)
{
    sv_online *o = s->onl;
    if (!o) return;
    free_list(o->head);
    sv_example_free(o->ex_head);
    rk_map_destroy(o->map);
    pthread_mutex_destroy(&o->mu);
    rk_free(o);
    s->onl = NULL;
}

/* The table entry of (name, version), created when absent (the least
 * recently created entry is replaced when the table is full). mu held. */
static uint32_t stat_of(sv_online *o, const char *name, uint32_t version)
{
    uint32_t victim = 0, prev = 0;
    uint64_t newest = 0;
    for (uint32_t i = 0; i < OL_MAX_STATS; i++) {
        ol_stat *st = &o->stats[i];
        if (st->used && !strcmp(st->name, name)) {
            if (st->version == version) return i;
            /* The predecessor: the newest other version of the name. */
            if (st->born > newest) {
                newest = st->born;
                prev = st->version;
            }
        }
        /* A free entry, else the oldest one, makes room. */
        ol_stat *v = &o->stats[victim];
        if (v->used && (!st->used || st->born < v->born)) victim = i;
    }
    ol_stat *st = &o->stats[victim];
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", name);
    st->version = version;
    st->prev = prev;
    st->used = 1;
    st->born = ++o->stat_clock;
    return victim;
}

void sv_online_served(rk_server *s, const char *request_id, int64_t now_ms,
                      const sv_model *m, const char *const *ids,
                      const float *scores, const rk_fvec *const *x, size_t n)
{
    sv_online *o = s->onl;
    if (!o || !m || !n || strlen(request_id) >= sizeof ((ol_entry *)0)->rid) return;
    size_t bytes = sizeof(ol_entry) + n * sizeof(ol_item);
    for (size_t i = 0; i < n; i++) {
        bytes += strlen(ids[i]) + 1;
        if (o->keep_vectors && x[i])
            bytes += x[i]->ndense * sizeof(float) +
                     x[i]->nsparse * (sizeof(uint32_t) + sizeof(float)) + 8;
    }
    ol_entry *e = rk_malloc(bytes);
    if (!e) return;
    memset(e, 0, sizeof *e + n * sizeof(ol_item));
    e->ts_ms = now_ms;
    e->n = (uint32_t)n;
    e->bytes = bytes;
    strcpy(e->rid, request_id);
    char *p = (char *)&e->items[n];
    for (size_t i = 0; i < n; i++) {
        ol_item *it = &e->items[i];
        it->score = scores[i];
        if (o->keep_vectors && x[i]) {
            /* Floats first (aligned at 4), then indices. */
            p = (char *)(((uintptr_t)p + 3) & ~(uintptr_t)3);
            it->x.ndense = x[i]->ndense;
            it->x.dense = (float *)p;
            memcpy(p, x[i]->dense, x[i]->ndense * sizeof(float));
            p += x[i]->ndense * sizeof(float);
            it->x.nsparse = it->x.cap = x[i]->nsparse;
            it->x.val = (float *)p;
            memcpy(p, x[i]->val, x[i]->nsparse * sizeof(float));
            p += x[i]->nsparse * sizeof(float);
            it->x.idx = (uint32_t *)p;
            memcpy(p, x[i]->idx, x[i]->nsparse * sizeof(uint32_t));
            p += x[i]->nsparse * sizeof(uint32_t);
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ids[i]) + 1;
        memcpy(p, ids[i], l);
        e->items[i].id = p;
        p += l;
    }
    pthread_mutex_lock(&o->mu);
    e->stat = stat_of(o, m->name, m->version);
    /* Room first: the oldest pending requests go (their labels are lost). */
    while (o->head && (o->count >= o->max_count || o->bytes + bytes > o->max_bytes)) {
        o->dropped++;
        rk_free(pop_head(o));
    }
    if (rk_map_put(o->map, e->rid, strlen(e->rid), (uint64_t)(uintptr_t)e)) {
        pthread_mutex_unlock(&o->mu);
        rk_free(e);
        return;
    }
    if (o->tail) o->tail->next = e;
    else o->head = e;
    o->tail = e;
    o->count++;
    o->bytes += bytes;
    pthread_mutex_unlock(&o->mu);
}

void sv_online_event(rk_server *s, const char *request_id, const char *item,
                     uint32_t type, int has_value, double value)
{
    sv_online *o = s->onl;
    if (!o || type >= RK_MAX_EVENT_TYPES || o->type_of[type] < 0) return;
    const rk_label_type *t = &o->lc->types[o->type_of[type]];
    pthread_mutex_lock(&o->mu);
    uint64_t v;
    if (rk_map_get(o->map, request_id, strlen(request_id), &v)) {
        o->late++;
        pthread_mutex_unlock(&o->mu);
        return;
    }
    ol_entry *e = (ol_entry *)(uintptr_t)v;
    for (uint32_t i = 0; i < e->n; i++) {
        ol_item *it = &e->items[i];
        if (strcmp(it->id, item)) continue;
        switch (t->role) {
        case RK_LABEL_EXPOSURE: it->exposed = 1; break;
        case RK_LABEL_NEGATIVE: it->negative = 1; break;
        case RK_LABEL_POSITIVE: it->positive = 1; break;
        case RK_LABEL_VALUED:
            if (has_value && value > o->lc->valued_min) it->positive = 1;
            break;
        default: break;
        }
        /* The gain as the label join computes it; the largest is kept. */
        float g = rk_label_gain(o->lc, t, has_value, value);
        if (g > it->gain) it->gain = g;
        break;
    }
    pthread_mutex_unlock(&o->mu);
}

/* One label into the version's baseline, or once that is full into its
 * recent chunks (the oldest chunk restarts when the newest fills). */
static void concept_add(const sv_online *o, ol_stat *st, int64_t ts_ms, float p,
                        float y)
{
    double win = o->concept_window;
    if (!(win > 0)) return;
    if (st->base.n < win) {
        (void)rk_concept_add(&st->base, p, y, 1.0f);
        return;
    }
    rk_concept_acc *c = &st->ring[st->ring_cur];
    if (c->n >= win / OL_RING) {
        st->ring_cur = (st->ring_cur + 1) % OL_RING;
        c = &st->ring[st->ring_cur];
        rk_concept_reset(c);
    }
    if (c->n == 0) st->ring_from_ms[st->ring_cur] = ts_ms;
    (void)rk_concept_add(c, p, y, 1.0f);
}

/* Turns one ripe entry into metrics and, when wanted, examples. mu held. */
static void ripen(sv_online *o, ol_entry *e)
{
    ol_stat *st = &o->stats[e->stat];
    for (uint32_t i = 0; i < e->n; i++) {
        ol_item *it = &e->items[i];
        if (o->require_exposure && !it->exposed) continue;
        float y = it->positive && !it->negative ? 1.0f : 0.0f;
        if (rk_concept_add(&st->acc, it->score, y, 1.0f)) o->unscored++;
        else {
            o->labelled++;
            concept_add(o, st, e->ts_ms, it->score, y);
        }
        if (!o->keep_vectors || !it->x.ndense) continue;
        if (o->nex >= OL_MAX_EXAMPLES) {
            o->ex_dropped++;
            continue;
        }
        size_t nd = it->x.ndense, ns = it->x.nsparse;
        sv_example *x = rk_malloc(sizeof *x + nd * sizeof(float) +
                                  ns * (sizeof(float) + sizeof(uint32_t)));
        if (!x) continue;
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "%s", st->name);
        x->version = st->version;
        /* Label and weight as `rankd train --from-log` gives the row
         * (rk_label_value): a positive with a gain is weighted by it, or
         * labelled with it in graded mode. */
        x->y = y;
        x->w = 1.0f;
        if (y > 0 && it->gain > 0) (void)rk_label_value(o->lc, it->gain, 0, &x->y, &x->w);
        x->p = it->score;
        float *f = (float *)(x + 1);
        x->x.ndense = (uint32_t)nd;
        x->x.dense = f;
        memcpy(f, it->x.dense, nd * sizeof(float));
        x->x.nsparse = x->x.cap = (uint32_t)ns;
        x->x.val = f + nd;
        memcpy(x->x.val, it->x.val, ns * sizeof(float));
        x->x.idx = (uint32_t *)(f + nd + ns);
        memcpy(x->x.idx, it->x.idx, ns * sizeof(uint32_t));
        if (o->ex_tail) o->ex_tail->next = x;
        else o->ex_head = x;
        o->ex_tail = x;
        o->nex++;
    }
}

void sv_online_tick(rk_server *s, int64_t now_ms)
{
    sv_online *o = s->onl;
    if (!o) return;
    ol_entry *done = NULL, **tail = &done;
    pthread_mutex_lock(&o->mu);
    while (o->head && o->head->ts_ms + o->window_ms <= now_ms) {
        ol_entry *e = pop_head(o);
        ripen(o, e);
        e->next = NULL;
        *tail = e;
        tail = &e->next;
    }
    pthread_mutex_unlock(&o->mu);
    free_list(done);
}

sv_example *sv_online_take(rk_server *s, size_t *n)
{
    sv_online *o = s->onl;
    *n = 0;
    if (!o) return NULL;
    pthread_mutex_lock(&o->mu);
    sv_example *l = o->ex_head;
    *n = o->nex;
    o->ex_head = o->ex_tail = NULL;
    o->nex = 0;
    pthread_mutex_unlock(&o->mu);
    return l;
}

int sv_online_get(rk_server *s, const char *name, uint32_t version,
                  rk_concept_metrics *out, uint32_t *prev, int *checked)
{
    sv_online *o = s->onl;
    int found = 0;
    if (!o) return 0;
    pthread_mutex_lock(&o->mu);
    for (uint32_t i = 0; i < OL_MAX_STATS && !found; i++) {
        ol_stat *st = &o->stats[i];
        if (!st->used || st->version != version || strcmp(st->name, name)) continue;
        rk_concept_get(&st->acc, out);
        if (prev) *prev = st->prev;
        if (checked) *checked = st->checked;
        found = 1;
    }
    pthread_mutex_unlock(&o->mu);
    return found;
}

/* A version's concept windows as metrics: its first labels, its latest
 * (merged into tmp) and the served time of the oldest of those. mu held. */
static void concept_view(const ol_stat *st, rk_concept_acc *tmp, rk_concept_metrics *base,
                         rk_concept_metrics *recent, int64_t *from_ms)
{
    rk_concept_reset(tmp);
    *from_ms = 0;
    /* Oldest first: the chunks after the one being filled (those not
     * reached yet are empty), then that one. */
    for (uint32_t k = 1; k <= OL_RING; k++) {
        uint32_t c = (st->ring_cur + k) % OL_RING;
        if (st->ring[c].n <= 0) continue;
        if (!*from_ms) *from_ms = st->ring_from_ms[c];
        rk_concept_merge(tmp, &st->ring[c]);
    }
    rk_concept_get(&st->base, base);
    rk_concept_get(tmp, recent);
}

int sv_online_concept(rk_server *s, const char *name, uint32_t version,
                      rk_concept_metrics *base, rk_concept_metrics *recent,
                      int64_t *recent_from_ms)
{
    sv_online *o = s->onl;
    int found = 0;
    if (!o || !(o->concept_window > 0)) return 0;
    rk_concept_acc *acc = rk_malloc(sizeof *acc);
    if (!acc) return 0;
    pthread_mutex_lock(&o->mu);
    for (uint32_t i = 0; i < OL_MAX_STATS && !found; i++) {
        ol_stat *st = &o->stats[i];
        if (!st->used || st->version != version || strcmp(st->name, name)) continue;
        found = 1;
        concept_view(st, acc, base, recent, recent_from_ms);
    }
    pthread_mutex_unlock(&o->mu);
    rk_free(acc);
    return found;
}

void sv_online_set_checked(rk_server *s, const char *name, uint32_t version)
{
    sv_online *o = s->onl;
    if (!o) return;
    pthread_mutex_lock(&o->mu);
    uint32_t i = stat_of(o, name, version);
    o->stats[i].checked = 1;
    pthread_mutex_unlock(&o->mu);
}

/* The offline validation value of a metric, NaN when the model has none. */
static double offline(const sv_model *m, const char *metric)
{
    const rk_metric *x = m && m->has_meta ? rk_model_meta_metric(&m->meta, metric) : NULL;
    return x ? x->value : NAN;
}

/* What the JSON shows of one version, copied under the lock. */
typedef struct ol_view {
    char name[SV_NAME_MAX];
    int used;
    uint32_t version, prev;
    rk_concept_metrics all, first, recent;
    int64_t recent_from_ms;
} ol_view;

/* Copies every version's metrics into cp[OL_MAX_STATS], and with tmp (a
 * scratch accumulator) its concept windows too. mu held. */
static void views_copy(const sv_online *o, ol_view *cp, rk_concept_acc *tmp)
{
    for (uint32_t i = 0; i < OL_MAX_STATS; i++) {
        const ol_stat *st = &o->stats[i];
        ol_view *v = &cp[i];
        v->used = st->used;
        if (!st->used) continue;
        snprintf(v->name, sizeof v->name, "%s", st->name);
        v->version = st->version;
        v->prev = st->prev;
        rk_concept_get(&st->acc, &v->all);
        if (tmp) concept_view(st, tmp, &v->first, &v->recent, &v->recent_from_ms);
    }
}

static const char *const metric_names[] = {"logloss", "auc", "calibration", "ctr",
                                           "mean_prediction"};

/* The value of metric_names[k]. */
static double metric_at(const rk_concept_metrics *c, int k)
{
    switch (k) {
    case 0: return c->logloss;
    case 1: return c->auc;
    case 2: return c->calibration;
    case 3: return c->ctr;
    default: return c->mean_p;
    }
}

/* ,"logloss":..,"auc":..,"calibration":..,"ctr":..,"mean_prediction":.. */
static void metrics_json(rk_buf *b, const rk_concept_metrics *c)
{
    for (int k = 0; k < 5; k++) {
        (void)rk_buf_printf(b, ",\"%s\":", metric_names[k]);
        sv_json_num(b, metric_at(c, k));
    }
}

/* One version's online metrics, its concept-drift windows (when on) and,
 * for the one serving, the offline validation values they are compared
 * with, as a JSON object. */
static void stat_json(rk_buf *b, const ol_view *st, const sv_model *m, double window)
{
    const rk_concept_metrics *c = &st->all;
    (void)rk_buf_puts(b, "{\"model\":");
    sv_json_str(b, st->name);
    (void)rk_buf_printf(b, ",\"version\":%u,\"previous\":%u,\"labels\":%.0f,"
                        "\"positives\":%.0f", st->version, st->prev, c->n, c->positives);
    metrics_json(b, c);
    if (window > 0) {
        (void)rk_buf_printf(b, ",\"first\":{\"labels\":%.0f,\"positives\":%.0f",
                            st->first.n, st->first.positives);
        metrics_json(b, &st->first);
        (void)rk_buf_printf(b, "},\"recent\":{\"labels\":%.0f,\"positives\":%.0f,"
                            "\"since_ms\":%lld", st->recent.n, st->recent.positives,
                            (long long)st->recent_from_ms);
        metrics_json(b, &st->recent);
        (void)rk_buf_putc(b, '}');
    }
    if (m) {
        (void)rk_buf_puts(b, ",\"offline\":{");
        for (int k = 0; k < 3; k++) {
            (void)rk_buf_printf(b, "%s\"%s\":", k ? "," : "", metric_names[k]);
            sv_json_num(b, offline(m, metric_names[k]));
        }
        (void)rk_buf_puts(b, "},\"serving\":true");
    }
    (void)rk_buf_putc(b, '}');
}

/* The model currently served under name (any slot), or NULL. */
static sv_model *serving(rk_server *s, const char *name, uint32_t version)
{
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->slots[i].kind != SV_SLOT_RANKER || strcmp(s->slots[i].name, name)) continue;
        sv_model *m = sv_slot_acquire(&s->slots[i]);
        if (m && m->version == version) return m;
        sv_model_release(m);
    }
    return NULL;
}

void sv_online_json(rk_server *s, rk_buf *b)
{
    sv_online *o = s->onl;
    (void)rk_buf_puts(b, "{\"window_ms\":");
    (void)rk_buf_printf(b, "%lld", (long long)(o ? o->window_ms : 0));
    if (!o) {
        (void)rk_buf_puts(b, ",\"versions\":[]}");
        return;
    }
    /* Copy under the lock, render outside it (serving() takes slot locks). */
    ol_view *cp = rk_malloc(OL_MAX_STATS * sizeof *cp);
    rk_concept_acc *tmp = rk_malloc(sizeof *tmp);
    if (!cp || !tmp) {
        rk_free(cp);
        rk_free(tmp);
        (void)rk_buf_puts(b, ",\"versions\":[]}");
        return;
    }
    pthread_mutex_lock(&o->mu);
    views_copy(o, cp, tmp);
    (void)rk_buf_printf(b, ",\"concept_window\":%.0f,\"pending_requests\":%zu,\"labelled\":%llu,"
                        "\"dropped\":%llu,\"late_events\":%llu,\"versions\":[",
                        o->concept_window, o->count, (unsigned long long)o->labelled,
                        (unsigned long long)o->dropped, (unsigned long long)o->late);
    pthread_mutex_unlock(&o->mu);
    int k = 0;
    for (uint32_t i = 0; i < OL_MAX_STATS; i++) {
        if (!cp[i].used) continue;
        sv_model *m = serving(s, cp[i].name, cp[i].version);
        if (k++) (void)rk_buf_putc(b, ',');
        stat_json(b, &cp[i], m, o->concept_window);
        sv_model_release(m);
    }
    (void)rk_buf_puts(b, "]}");
    rk_free(cp);
    rk_free(tmp);
}

void sv_online_metrics(rk_server *s, rk_buf *b)
{
    sv_online *o = s->onl;
    if (!o) return;
    ol_view *cp = rk_malloc(OL_MAX_STATS * sizeof *cp);
    if (!cp) return;
    pthread_mutex_lock(&o->mu);
    views_copy(o, cp, NULL);
    uint64_t lab = o->labelled, drop = o->dropped, late = o->late;
    size_t pend = o->count;
    pthread_mutex_unlock(&o->mu);
    (void)rk_buf_printf(b, "# HELP rankd_online_labels_total Served items labelled "
                        "after the label window.\n# TYPE rankd_online_labels_total "
                        "counter\nrankd_online_labels_total %llu\n"
                        "# TYPE rankd_online_pending_requests gauge\n"
                        "rankd_online_pending_requests %zu\n"
                        "# HELP rankd_online_dropped_total Served requests dropped "
                        "unlabelled (memory bound).\n# TYPE rankd_online_dropped_total "
                        "counter\nrankd_online_dropped_total %llu\n"
                        "# TYPE rankd_online_late_events_total counter\n"
                        "rankd_online_late_events_total %llu\n",
                        (unsigned long long)lab, pend, (unsigned long long)drop,
                        (unsigned long long)late);
    for (int k = 0; k < 4; k++) { /* mean_prediction is not exported */
        (void)rk_buf_printf(b, "# HELP rankd_online_%s Online %s of the served "
                            "predictions from delayed labels, per model version.\n"
                            "# TYPE rankd_online_%s gauge\n", metric_names[k], metric_names[k],
                            metric_names[k]);
        for (uint32_t i = 0; i < OL_MAX_STATS; i++) {
            if (!cp[i].used) continue;
            double v = metric_at(&cp[i].all, k);
            if (isnan(v)) continue;
            (void)rk_buf_printf(b, "rankd_online_%s{model=\"%s\",version=\"%u\"} %.6g\n",
                                metric_names[k], cp[i].name, cp[i].version, v);
        }
    }
    rk_free(cp);
}
