/*
 * ab.c — A/B experiments from the `experiments:` config. A user enters the
 * first experiment whose traffic share admits them and gets the variant
 * picked by a hash of (experiment, user) against the variants' weights,
 * so assignment is sticky, needs no state and splits independently per
 * experiment. A variant may serve another ranker (a registry name, or a
 * pinned version of it) or another candidate count. Served request ids are
 * remembered (bounded) with their variant; events that carry a request id
 * count impressions, clicks and watch value per variant, and
 * /v1/experiments reports CTR and mean watch value per impression with
 * 95% confidence intervals and each variant's difference from the first
 * (control) with a two-sided z-test.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

static int parse_variant(rk_server *s, sv_experiment *x, const rk_conf_node *n,
                         rk_err *err)
{
    static const char *const allowed[] = {"name", "weight", "ranker", "version",
                                          "candidates", NULL};
    if (rk_conf_node_type(n) != RK_CONF_MAP)
        return rk_conf_error(err, n, "expected {name, weight, ranker, version, "
                             "candidates}");
    int rc = rk_conf_check_keys(n, allowed, err);
    if (rc) return rc;
    if (x->nvariants == SV_MAX_VARIANTS)
        return rk_conf_error(err, n, "more than %d variants", SV_MAX_VARIANTS);
    sv_variant *v = &x->v[x->nvariants];
    memset(v, 0, sizeof *v);
    const char *name, *ranker;
    int64_t version, cand;
    if ((rc = rk_conf_as_str(rk_conf_get(n, "name"), NULL, &name, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(n, "weight"), 1.0, &v->weight, err)) ||
        (rc = rk_conf_as_str(rk_conf_get(n, "ranker"), NULL, &ranker, err)) ||
        (rc = rk_conf_as_int_range(rk_conf_get(n, "version"), 0, 0, UINT32_MAX,
                                   &version, err)) ||
        (rc = rk_conf_as_int_range(rk_conf_get(n, "candidates"), 0, 0, 100000,
                                   &cand, err)))
        return rc;
    if (!name || !*name || strlen(name) >= sizeof v->name)
        return rk_conf_error(err, n, "name: expected 1 to %zu characters",
                             sizeof v->name - 1);
    for (size_t i = 0; i < x->nvariants; i++)
        if (strcmp(x->v[i].name, name) == 0)
            return rk_conf_error(err, n, "duplicate variant '%s'", name);
    if (!(v->weight > 0) || !isfinite(v->weight))
        return rk_conf_error(err, rk_conf_get(n, "weight"), "expected a "
                             "positive number");
    strcpy(v->name, name);
    v->candidates = (uint32_t)cand;
    v->ranker_slot = -1;
    if (version && !ranker) ranker = s->o.ranker;
    if (version && !ranker)
        return rk_conf_error(err, n, "version needs a ranker (or serve.ranker)");
    if (ranker) {
        int slot = sv_slot_add(s, ranker, SV_SLOT_RANKER, (uint32_t)version, err);
        if (slot < 0) return slot;
        v->ranker_slot = slot;
    }
    pthread_mutex_init(&v->mu, NULL);
    x->total_weight += v->weight;
    x->nvariants++;
    return 0;
}

int sv_ab_init(rk_server *s, rk_err *err)
{
    const rk_conf_node *ex = s->root ? rk_conf_get(s->root, "experiments") : NULL;
    if (!ex) return 0;
    if (rk_conf_node_type(ex) != RK_CONF_LIST)
        return rk_conf_error(err, ex, "expected a list of {name, traffic, "
                             "variants}");
    static const char *const allowed[] = {"name", "traffic", "variants", NULL};
    for (size_t i = 0; i < rk_conf_len(ex); i++) {
        const rk_conf_node *n = rk_conf_at(ex, i, NULL);
        if (s->nexps == SV_MAX_EXPERIMENTS)
            return rk_conf_error(err, n, "more than %d experiments",
                                 SV_MAX_EXPERIMENTS);
        if (rk_conf_node_type(n) != RK_CONF_MAP)
            return rk_conf_error(err, n, "expected {name, traffic, variants}");
        int rc = rk_conf_check_keys(n, allowed, err);
        sv_experiment *x = &s->exps[s->nexps];
        memset(x, 0, sizeof *x);
        const char *name;
        if (!rc) rc = rk_conf_as_str(rk_conf_get(n, "name"), NULL, &name, err);
        if (!rc) rc = rk_conf_as_float(rk_conf_get(n, "traffic"), 1.0,
                                       &x->traffic, err);
        if (rc) return rc;
        if (!name || !*name || strlen(name) >= sizeof x->name)
            return rk_conf_error(err, n, "name: expected 1 to %zu characters",
                                 sizeof x->name - 1);
        if (!(x->traffic > 0 && x->traffic <= 1))
            return rk_conf_error(err, rk_conf_get(n, "traffic"), "expected a "
                                 "share in (0, 1]");
        strcpy(x->name, name);
        const rk_conf_node *vs = rk_conf_get(n, "variants");
        if (!vs || rk_conf_node_type(vs) != RK_CONF_LIST || rk_conf_len(vs) < 2)
            return rk_conf_error(err, vs ? vs : n, "variants: expected a list "
                                 "of at least two variants");
        s->nexps++; /* counted now so sv_ab_free releases partial work */
        for (size_t j = 0; j < rk_conf_len(vs); j++)
            if ((rc = parse_variant(s, x, rk_conf_at(vs, j, NULL), err))) return rc;
    }
    return 0;
}

void sv_ab_free(rk_server *s)
{
    for (size_t i = 0; i < s->nexps; i++)
        for (size_t j = 0; j < s->exps[i].nvariants; j++)
            pthread_mutex_destroy(&s->exps[i].v[j].mu);
    s->nexps = 0;
}

/* A uniform number in [0, 1) from a hash of (salt, experiment, user). */
static double unit_hash(const char *exp, const char *user, size_t len,
                        uint64_t salt)
{
    uint64_t h = rk_hash64(exp, strlen(exp), salt);
    h = rk_hash64(user, len, h);
    return (double)(h >> 11) * 0x1.0p-53;
}

void sv_ab_assign(rk_server *s, const char *user, size_t len, int *exp, int *var)
{
    *exp = *var = -1;
    for (size_t i = 0; i < s->nexps; i++) {
        const sv_experiment *x = &s->exps[i];
        if (x->traffic < 1 && unit_hash(x->name, user, len, 0x7aff1c) >= x->traffic)
            continue;
        double u = unit_hash(x->name, user, len, 0xab) * x->total_weight, c = 0;
        size_t j = 0;
        for (; j + 1 < x->nvariants; j++) {
            c += x->v[j].weight;
            if (u < c) break;
        }
        *exp = (int)i;
        *var = (int)j;
        atomic_fetch_add(&s->exps[i].v[j].requests, 1);
        return;
    }
}

void sv_ab_served(rk_server *s, const char *request_id, int exp, int var)
{
    pthread_mutex_lock(&s->ab_mu);
    if (rk_map_size(s->ab_map) >= s->o.ab_requests) rk_map_evict_one(s->ab_map);
    (void)rk_map_put(s->ab_map, request_id, strlen(request_id),
                     (uint64_t)exp << 8 | (uint64_t)var);
    pthread_mutex_unlock(&s->ab_mu);
}

void sv_ab_event(rk_server *s, const char *request_id, const char *type,
                 int has_value, double value)
{
    if (!s->nexps) return;
    uint64_t v;
    pthread_mutex_lock(&s->ab_mu);
    int rc = rk_map_get(s->ab_map, request_id, strlen(request_id), &v);
    pthread_mutex_unlock(&s->ab_mu);
    if (rc) return;
    size_t e = (size_t)(v >> 8), k = (size_t)(v & 0xff);
    if (e >= s->nexps || k >= s->exps[e].nvariants) return;
    sv_variant *var = &s->exps[e].v[k];
    uint32_t t;
    if (rk_schema_find_event_type(s->schema, type, strlen(type), &t)) return;
    const rk_event_type_def *d = rk_schema_event_type(s->schema, t);
    if (d->role == RK_ROLE_EXPOSURE) {
        atomic_fetch_add(&var->impressions, 1);
    } else if (d->role == RK_ROLE_POSITIVE && strcmp(d->name, "click") == 0) {
        atomic_fetch_add(&var->clicks, 1);
    } else if (d->role == RK_ROLE_VALUED && has_value && isfinite(value)) {
        atomic_fetch_add(&var->watches, 1);
        pthread_mutex_lock(&var->mu);
        var->watch_sum += value;
        var->watch_sq += value * value;
        pthread_mutex_unlock(&var->mu);
    }
}

typedef struct vstat {
    double n, p, p_se, w, w_se;
} vstat;

static vstat variant_stat(sv_variant *v)
{
    vstat st;
    st.n = (double)atomic_load(&v->impressions);
    double clicks = (double)atomic_load(&v->clicks);
    pthread_mutex_lock(&v->mu);
    double sum = v->watch_sum, sq = v->watch_sq;
    pthread_mutex_unlock(&v->mu);
    st.p = st.n > 0 ? clicks / st.n : NAN;
    st.p_se = st.n > 0 ? sqrt(st.p * (1 - st.p) / st.n) : NAN;
    /* Watch value per impression: impressions without a watch count 0. */
    st.w = st.n > 0 ? sum / st.n : NAN;
    double var = st.n > 1 ? (sq - st.n * st.w * st.w) / (st.n - 1) : NAN;
    st.w_se = st.n > 1 && var >= 0 ? sqrt(var / st.n) : NAN;
    return st;
}

static void ci(rk_buf *b, const char *name, double m, double se)
{
    (void)rk_buf_printf(b, ",\"%s\":", name);
    sv_json_num(b, m);
    (void)rk_buf_printf(b, ",\"%s_ci95\":[", name);
    sv_json_num(b, m - 1.959964 * se);
    (void)rk_buf_putc(b, ',');
    sv_json_num(b, m + 1.959964 * se);
    (void)rk_buf_putc(b, ']');
}

static void diff(rk_buf *b, const char *name, double a, double sa, double c,
                 double sc)
{
    double d = a - c, se = sqrt(sa * sa + sc * sc);
    double z = se > 0 ? d / se : NAN;
    (void)rk_buf_printf(b, ",\"%s_diff\":", name);
    sv_json_num(b, d);
    (void)rk_buf_printf(b, ",\"%s_diff_ci95\":[", name);
    sv_json_num(b, d - 1.959964 * se);
    (void)rk_buf_putc(b, ',');
    sv_json_num(b, d + 1.959964 * se);
    (void)rk_buf_printf(b, "],\"%s_p_value\":", name);
    sv_json_num(b, isfinite(z) ? erfc(fabs(z) / sqrt(2.0)) : NAN);
}

int sv_h_experiments(sv_req *q)
{
    rk_server *s = q->srv;
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"experiments\":[");
    for (size_t i = 0; i < s->nexps; i++) {
        sv_experiment *x = &s->exps[i];
        (void)rk_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        sv_json_str(b, x->name);
        (void)rk_buf_printf(b, ",\"traffic\":%g,\"variants\":[", x->traffic);
        vstat c0 = variant_stat(&x->v[0]);
        for (size_t j = 0; j < x->nvariants; j++) {
            sv_variant *v = &x->v[j];
            vstat st = variant_stat(v);
            (void)rk_buf_puts(b, j ? ",{\"name\":" : "{\"name\":");
            sv_json_str(b, v->name);
            (void)rk_buf_printf(b, ",\"weight\":%g,\"share\":%g", v->weight,
                                v->weight / x->total_weight);
            if (v->ranker_slot >= 0) {
                (void)rk_buf_puts(b, ",\"ranker\":");
                sv_json_str(b, s->slots[v->ranker_slot].name);
                if (s->slots[v->ranker_slot].pinned)
                    (void)rk_buf_printf(b, ",\"version\":%u",
                                        s->slots[v->ranker_slot].pinned);
            }
            (void)rk_buf_printf(b, ",\"requests\":%llu,\"impressions\":%llu,"
                                "\"clicks\":%llu,\"watches\":%llu",
                                (unsigned long long)atomic_load(&v->requests),
                                (unsigned long long)atomic_load(&v->impressions),
                                (unsigned long long)atomic_load(&v->clicks),
                                (unsigned long long)atomic_load(&v->watches));
            ci(b, "ctr", st.p, st.p_se);
            ci(b, "watch_per_impression", st.w, st.w_se);
            if (j) {
                diff(b, "ctr", st.p, st.p_se, c0.p, c0.p_se);
                diff(b, "watch_per_impression", st.w, st.w_se, c0.w, c0.w_se);
            }
            (void)rk_buf_putc(b, '}');
        }
        (void)rk_buf_puts(b, "]}");
    }
    (void)rk_buf_puts(b, "]}");
    return 0;
}
