/*
 * spec.c — feature definitions: compiling the `features:` config section
 * into an rk_feat_spec, its canonical form, schema hash, accessors and
 * serialization.
 *
 * Compilation resolves every name (attributes, event types, cross
 * components) once, assigns dense columns in declaration order, groups the
 * aggregates by key template and lays out their records. The canonical
 * form is generated from the compiled spec with every default spelled out,
 * so two configs that mean the same thing hash the same, and it is the
 * text a saved spec is recompiled from: one parser for both.
 */
#include <math.h>
#include <stdlib.h>

#include "feat_int.h"

#define SPEC_MAGIC "RKFSPEC1"
#define DEFAULT_HASH_BITS 20
#define DEFAULT_REPLAY_KEYS 4000000u
#define DEFAULT_CACHE_KEYS 1000000
#define DEFAULT_CACHE_MB 1024

const char *const rk__feat_kind_names[] = {
    "attribute", "column", "counter", "rate", "recency", "score", "context",
    "cross", "text_match", NULL};

/* ---- small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s) { return rk_strdup(s ? s : ""); }

static int nomem(rk_err *err)
{
    return rk_err_set(err, RK_ENOMEM, "features: out of memory");
}

/* Shortest exact label of a duration: "90m", "1h", "7d", "1500ms". */
static void fmt_duration(int64_t ms, char *buf, size_t n)
{
    static const struct { int64_t m; const char *u; } units[] = {
        {7 * 86400000LL, "w"}, {86400000LL, "d"}, {3600000LL, "h"},
        {60000LL, "m"}, {1000LL, "s"}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (ms > 0 && ms % units[i].m == 0) {
            snprintf(buf, n, "%lld%s", (long long)(ms / units[i].m), units[i].u);
            return;
        }
    snprintf(buf, n, "%lldms", (long long)ms);
}

/* A list of strings (or one string) as a borrowed array. */
static int str_list(const rk_conf_node *n, const char **v, uint32_t max,
                    uint32_t *cnt, rk_err *err)
{
    *cnt = 0;
    if (rk_conf_node_type(n) == RK_CONF_STR) {
        *cnt = 1;
        return rk_conf_as_str(n, NULL, &v[0], err);
    }
    if (rk_conf_node_type(n) != RK_CONF_LIST)
        return rk_conf_error(err, n, "expected a string or a list of strings");
    size_t len = rk_conf_len(n);
    if (len == 0 || len > max)
        return rk_conf_error(err, n, "expected 1..%u names, got %zu", max, len);
    for (size_t i = 0; i < len; i++) {
        const rk_conf_node *e = rk_conf_at(n, i, NULL);
        if (rk_conf_node_type(e) != RK_CONF_STR)
            return rk_conf_error(err, e, "expected a string");
        int rc = rk_conf_as_str(e, NULL, &v[i], err);
        if (rc) return rc;
    }
    *cnt = (uint32_t)len;
    return 0;
}

static void strv_free(char **v, uint32_t n)
{
    for (uint32_t i = 0; v && i < n; i++) rk_free(v[i]);
    rk_free(v);
}

static char **strv_dup(const char *const *v, uint32_t n)
{
    char **o = rk_calloc(n ? n : 1, sizeof *o);
    if (!o) return NULL;
    for (uint32_t i = 0; i < n; i++)
        if (!(o[i] = xstrdup(v[i]))) {
            strv_free(o, n);
            return NULL;
        }
    return o;
}

/* ---- destroy and accessors ---------------------------------------------- */

void rk__feat_fit_clear(rk_feat_spec *s)
{
    for (uint32_t i = 0; i < s->nfeat; i++) {
        feat *f = &s->f[i];
        if (f->fit)
            for (uint32_t k = 0; k < f->nout; k++) {
                rk_free(f->fit[k].edges);
                memset(&f->fit[k], 0, sizeof f->fit[k]);
                f->fit[k].sd = 1;
            }
        rk__feat_vocab_free(&f->voc);
        rk_free(f->bm.hash);
        rk_free(f->bm.df);
        memset(&f->bm, 0, sizeof f->bm);
    }
    s->fitted = 0;
}

void rk_feat_spec_destroy(rk_feat_spec *s)
{
    if (!s) return;
    rk__feat_online_free(s);
    rk__feat_fit_clear(s);
    for (uint32_t i = 0; i < s->nfeat; i++) {
        feat *f = &s->f[i];
        rk_free(f->name);
        rk_free(f->attr_name);
        rk_free(f->field);
        rk_free(f->fit);
        strv_free(f->ev_a, f->nev_a);
        strv_free(f->ev_b, f->nev_b);
        for (uint32_t k = 0; k < f->ntattr; k++) rk_free(f->tattr_name[k]);
    }
    rk_free(s->f);
    strv_free(s->dense_names, s->ndense);
    for (uint32_t i = 0; i < s->ngroups; i++) {
        for (uint32_t k = 0; k < s->g[i].nparts; k++) rk_free(s->g[i].part[k].name);
        rk_free(s->g[i].slot);
    }
    rk_free(s->g);
    strv_free(s->score_names, s->nscores);
    strv_free(s->type_names, s->ntypes);
    rk_free(s->type_role);
    rk_free(s->type_weight);
    rk_free(s->route0);
    rk_free(s->nroute);
    rk_free(s->routes);
    rk_free(s->canon);
    rk_free(s);
}

uint32_t rk_feat_ndense(const rk_feat_spec *s) { return s->ndense; }
uint32_t rk_feat_hash_bits(const rk_feat_spec *s) { return s->hash_bits; }
uint32_t rk_feat_nfeatures(const rk_feat_spec *s) { return s->nfeat; }
uint64_t rk_feat_schema_hash(const rk_feat_spec *s) { return s->hash; }
int rk_feat_needs_fit(const rk_feat_spec *s) { return s->needs_fit && !s->fitted; }
const char *rk_feat_canonical(const rk_feat_spec *s) { return s->canon; }
uint32_t rk_feat_nscores(const rk_feat_spec *s) { return s->nscores; }

const char *rk_feat_name(const rk_feat_spec *s, uint32_t i)
{
    return i < s->nfeat ? s->f[i].name : NULL;
}

const char *rk_feat_dense_name(const rk_feat_spec *s, uint32_t j)
{
    return j < s->ndense ? s->dense_names[j] : NULL;
}

int32_t rk_feat_dense_index(const rk_feat_spec *s, const char *name)
{
    for (uint32_t j = 0; j < s->ndense; j++)
        if (!strcmp(s->dense_names[j], name)) return (int32_t)j;
    return -1;
}

int rk_feat_score_slot(const rk_feat_spec *s, const char *name, uint32_t *slot)
{
    for (uint32_t i = 0; i < s->nscores; i++)
        if (!strcmp(s->score_names[i], name)) {
            *slot = i;
            return 0;
        }
    return RK_ENOTFOUND;
}

/* ---- compiling ---------------------------------------------------------- */

typedef struct compiler {
    rk_feat_spec *s;
    const rk_schema *schema;
    rk_err *err;
    const rk_conf_node *nodes[FEAT_MAX];  /* each feature's definition */
    char *tmpl[256];                      /* group key templates */
    RK_VEC(route) routes;
    RK_VEC(uint32_t) rtype;               /* event type of each route */
} compiler;

static const char *const num_keys[] = {"missing", "indicator", "log1p", "clip",
                                       "standardize", "buckets",
                                       "bucket_output", NULL};
static const char *const cat_keys[] = {"encode", "vocab_max", "min_count", NULL};
static const char *const bag_keys[] = {"tf", NULL};

/* Checks a definition's keys: the kind's own plus its value shape's. */
static int check_def_keys(const rk_conf_node *n, const char *const *own,
                          int vt, rk_err *err)
{
    const char *all[40];
    size_t k = 0;
    all[k++] = "kind";
    all[k++] = "emit";
    for (size_t i = 0; own[i]; i++) all[k++] = own[i];
    const char *const *extra = vt == VT_NUM ? num_keys : vt == VT_CAT ? cat_keys
                                                                       : bag_keys;
    for (size_t i = 0; extra[i]; i++) all[k++] = extra[i];
    all[k] = NULL;
    return rk_conf_check_keys(n, all, err);
}

static int parse_numtf(const rk_conf_node *n, feat *f, rk_err *err)
{
    numtf *t = &f->tf;
    int b, rc;
    const rk_conf_node *m = rk_conf_get(n, "missing");
    t->missing = MISS_NAN;
    if (m && rk_conf_node_type(m) == RK_CONF_STR) {
        static const char *const ch[] = {"nan", "const", "mean", NULL};
        int idx;
        if ((rc = rk_conf_as_enum(m, 0, ch, &idx, err))) return rc;
        if (idx == 1) return rk_conf_error(err, m, "give the value as a number");
        t->missing = (uint8_t)idx;
    } else if (m && rk_conf_node_type(m) != RK_CONF_NULL) {
        if ((rc = rk_conf_as_float(m, 0, &t->fill, err))) return rc;
        t->missing = MISS_CONST;
    }
    if ((rc = rk_conf_as_bool(rk_conf_get(n, "indicator"), 0, &b, err))) return rc;
    t->indicator = (uint8_t)b;
    if ((rc = rk_conf_as_bool(rk_conf_get(n, "log1p"), 0, &b, err))) return rc;
    t->log1p = (uint8_t)b;
    if ((rc = rk_conf_as_bool(rk_conf_get(n, "standardize"), 0, &b, err))) return rc;
    t->standardize = (uint8_t)b;
    const rk_conf_node *c = rk_conf_get(n, "clip");
    if (c && rk_conf_node_type(c) != RK_CONF_NULL) {
        if (rk_conf_node_type(c) != RK_CONF_LIST || rk_conf_len(c) != 2)
            return rk_conf_error(err, c, "expected [lo, hi]");
        if ((rc = rk_conf_as_float(rk_conf_at(c, 0, NULL), 0, &t->lo, err)) ||
            (rc = rk_conf_as_float(rk_conf_at(c, 1, NULL), 0, &t->hi, err)))
            return rc;
        if (!(t->lo <= t->hi)) return rk_conf_error(err, c, "clip needs lo <= hi");
        t->clip = 1;
    }
    int64_t nb;
    const rk_conf_node *bn = rk_conf_get(n, "buckets");
    if ((rc = rk_conf_as_int_range(bn, 0, 0, 1000, &nb, err))) return rc;
    if (nb == 1) return rk_conf_error(err, bn, "buckets: 0 (none) or 2..1000");
    t->buckets = (uint16_t)nb;
    static const char *const bo[] = {"index", "onehot", NULL};
    int idx;
    if ((rc = rk_conf_as_enum(rk_conf_get(n, "bucket_output"), 0, bo, &idx, err)))
        return rc;
    t->bucket_out = (uint8_t)idx;
    if (t->buckets && t->standardize)
        return rk_conf_error(err, bn, "buckets and standardize exclude each other");
    return 0;
}

static int parse_catcfg(const rk_conf_node *n, feat *f, int list, rk_err *err)
{
    static const char *const enc[] = {"hash", "onehot", "index", NULL};
    int idx, rc;
    if ((rc = rk_conf_as_enum(rk_conf_get(n, "encode"), 0, enc, &idx, err)))
        return rc;
    if (list && idx == ENC_INDEX)
        return rk_conf_error(err, rk_conf_get(n, "encode"),
                             "a list of values cannot be one index column");
    f->enc = (uint8_t)idx;
    int64_t v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(n, "vocab_max"), 1000, 1,
                                   10000000, &v, err)))
        return rc;
    f->vocab_max = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(n, "min_count"), 1, 1,
                                   INT64_MAX / 2, &v, err)))
        return rc;
    f->min_count = (uint64_t)v;
    return 0;
}

static int parse_bagcfg(const rk_conf_node *n, feat *f, rk_err *err)
{
    static const char *const tfc[] = {"count", "binary", NULL};
    int idx, rc;
    if ((rc = rk_conf_as_enum(rk_conf_get(n, "tf"), 0, tfc, &idx, err))) return rc;
    f->tf_binary = (uint8_t)idx;
    return 0;
}

static int parse_unit(const rk_conf_node *n, double dflt, double *ms, rk_err *err)
{
    static const char *const u[] = {"ms", "s", "m", "h", "d", NULL};
    static const double mult[] = {1, 1e3, 60e3, 3600e3, 86400e3};
    int idx = 3, rc;
    for (int i = 0; i < 5; i++)
        if (mult[i] == dflt) idx = i;
    if ((rc = rk_conf_as_enum(n, idx, u, &idx, err))) return rc;
    *ms = mult[idx];
    return 0;
}

static int find_attr(compiler *c, const rk_conf_node *n, rk_entity e,
                     const char *name, uint32_t *idx)
{
    if (rk_schema_find_attr(c->schema, e, name, strlen(name), idx))
        return rk_conf_error(c->err, n, "%s has no attribute '%s' (declare it "
                             "under entities.%s.attributes)", rk_entity_name(e),
                             name, rk_entity_name(e));
    return 0;
}

/* Key parts "user", "item", "item.<attr>", "context.<field>", sorted so
 * that [user, item.category] and [item.category, user] are one template. */
static int parse_key(compiler *c, const rk_conf_node *n, agroup *out,
                     char *tmpl, size_t tsize)
{
    const char *v[FEAT_MAX_PARTS];
    uint32_t cnt;
    int rc = str_list(n, v, FEAT_MAX_PARTS, &cnt, c->err);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < cnt; i++) {
        kpart p = {0};
        const char *name = NULL;
        if (!strcmp(v[i], "user")) p.kind = KP_USER;
        else if (!strcmp(v[i], "item")) p.kind = KP_ITEM;
        else if (!strncmp(v[i], "item.", 5) && v[i][5]) {
            p.kind = KP_ITEM_ATTR;
            name = v[i] + 5;
            if ((rc = find_attr(c, n, RK_ENTITY_ITEM, name, &p.attr))) return rc;
            const rk_attr_def *d = rk_schema_attr(c->schema, RK_ENTITY_ITEM, p.attr);
            if (d->type != RK_ATTR_CATEGORICAL)
                return rk_conf_error(c->err, n, "key part item.%s: a key needs a "
                                     "categorical attribute, it is %s", name,
                                     rk_attr_type_name(d->type));
        } else if (!strncmp(v[i], "context.", 8) && v[i][8]) {
            p.kind = KP_CTX;
            name = v[i] + 8;
        } else {
            return rk_conf_error(c->err, n, "key part '%s': expected user, item, "
                                 "item.<attribute> or context.<field>", v[i]);
        }
        /* insertion sort by (kind, name) */
        uint32_t j = out->nparts;
        while (j > 0) {
            kpart *q = &out->part[j - 1];
            int cmp = q->kind != p.kind ? (q->kind > p.kind ? 1 : -1)
                                        : strcmp(q->name ? q->name : "",
                                                 name ? name : "");
            if (cmp == 0)
                return rk_conf_error(c->err, n, "key part '%s' given twice", v[i]);
            if (cmp < 0) break;
            out->part[j] = *q;
            j--;
        }
        p.name = name ? (char *)name : NULL; /* borrowed until copied */
        out->part[j] = p;
        out->nparts++;
    }
    size_t o = 0;
    tmpl[0] = 0;
    for (uint32_t i = 0; i < out->nparts; i++) {
        static const char *const kn[] = {"user", "item", "item.", "context."};
        const kpart *p = &out->part[i];
        o += (size_t)snprintf(tmpl + o, tsize - o, "%s%s%s", i ? "," : "",
                              kn[p->kind], p->name ? p->name : "");
        if (o >= tsize) return rk_conf_error(c->err, n, "key too long");
    }
    return 0;
}

/* Finds or creates the group of a key template. */
static int group_for(compiler *c, const rk_conf_node *n, uint32_t *gi)
{
    rk_feat_spec *s = c->s;
    agroup g;
    char tmpl[512];
    int rc = parse_key(c, n, &g, tmpl, sizeof tmpl);
    if (rc) return rc;
    for (uint32_t i = 0; i < s->ngroups; i++)
        if (!strcmp(c->tmpl[i], tmpl)) {
            *gi = i;
            return 0;
        }
    if (s->ngroups >= 256)
        return rk_conf_error(c->err, n, "more than 256 aggregate key templates");
    agroup *ng = rk_realloc(s->g, (s->ngroups + 1) * sizeof *ng);
    if (!ng) return nomem(c->err);
    s->g = ng;
    for (uint32_t i = 0; i < g.nparts; i++) {
        if (g.part[i].name && !(g.part[i].name = rk_strdup(g.part[i].name))) {
            for (uint32_t j = 0; j < i; j++) rk_free(g.part[j].name);
            return nomem(c->err);
        }
        if (g.part[i].kind == KP_ITEM || g.part[i].kind == KP_ITEM_ATTR)
            g.item_level = 1;
        if (g.part[i].kind == KP_CTX) g.uses_ctx = 1;
        if (g.part[i].kind == KP_ITEM_ATTR) g.uses_item_attr = 1;
        if (g.part[i].kind == KP_ITEM) g.has_item_part = 1;
    }
    if (!(c->tmpl[s->ngroups] = rk_strdup(tmpl))) {
        for (uint32_t j = 0; j < g.nparts; j++) rk_free(g.part[j].name);
        return nomem(c->err);
    }
    s->g[s->ngroups] = g;
    *gi = s->ngroups++;
    return 0;
}

static int add_route(compiler *c, const rk_conf_node *n, const char *ev,
                     uint32_t gi, uint32_t slot, uint8_t ch, uint8_t wmode)
{
    uint32_t t;
    if (rk_schema_find_event_type(c->schema, ev, strlen(ev), &t))
        return rk_conf_error(c->err, n, "unknown event type '%s' (declare it "
                             "under events)", ev);
    const rk_event_type_def *d = rk_schema_event_type(c->schema, t);
    route r = {(uint16_t)gi, (uint16_t)slot, ch, wmode, d->weight};
    if (rk_vec_push(&c->routes, r) || rk_vec_push(&c->rtype, t))
        return nomem(c->err);
    return 0;
}

static int parse_aggregate(compiler *c, const rk_conf_node *n, feat *f)
{
    rk_err *err = c->err;
    int rc;
    static const char *const ck[] = {"key", "events", "weight", "half_life",
                                     "windows", "buckets_per_window", NULL};
    static const char *const rk[] = {"key", "num", "den", "half_life", "windows",
                                     "buckets_per_window", "prior", NULL};
    static const char *const yk[] = {"key", "events", "unit", NULL};
    const char *const *own = f->kind == FK_COUNTER ? ck : f->kind == FK_RATE ? rk : yk;
    f->vt = VT_NUM;
    if ((rc = check_def_keys(n, own, VT_NUM, err))) return rc;
    const rk_conf_node *key = rk_conf_get(n, "key");
    if (!key) return rk_conf_error(err, n, "missing 'key' (user, item, "
                                   "[user, item.<attribute>], ...)");
    uint32_t gi = 0;
    if ((rc = group_for(c, key, &gi))) return rc;
    agroup *g = &c->s->g[gi];
    aslot sl = {0};
    sl.feat = (uint32_t)(f - c->s->f);
    sl.nch = f->kind == FK_COUNTER ? 1 : f->kind == FK_RATE ? 2 : 0;
    if (f->kind != FK_RECENCY) {
        int64_t hl;
        if ((rc = rk_conf_as_duration_ms(rk_conf_get(n, "half_life"), 0, &hl, err))) return rc;
        const rk_conf_node *w = rk_conf_get(n, "windows");
        if (w && rk_conf_node_type(w) != RK_CONF_NULL) {
            if (hl) return rk_conf_error(err, w, "windows and half_life exclude "
                                         "each other");
            if (rk_conf_node_type(w) != RK_CONF_LIST || rk_conf_len(w) == 0 ||
                rk_conf_len(w) > FEAT_MAX_WIN)
                return rk_conf_error(err, w, "expected a list of 1..%d durations",
                                     FEAT_MAX_WIN);
            int64_t nb;
            if ((rc = rk_conf_as_int_range(rk_conf_get(n, "buckets_per_window"),
                                           8, 2, 64, &nb, err)))
                return rc;
            sl.nbuck = (uint16_t)nb;
            sl.nwin = (uint8_t)rk_conf_len(w);
            for (uint32_t i = 0; i < sl.nwin; i++) {
                const rk_conf_node *e = rk_conf_at(w, i, NULL);
                if ((rc = rk_conf_as_duration_ms(e, 0, &sl.win_ms[i], err))) return rc;
                if (sl.win_ms[i] < nb || sl.win_ms[i] % nb)
                    return rk_conf_error(err, e, "window must be a positive "
                                         "multiple of buckets_per_window (%lld) ms",
                                         (long long)nb);
                sl.width[i] = sl.win_ms[i] / nb;
                for (uint32_t j = 0; j < i; j++)
                    if (sl.win_ms[j] == sl.win_ms[i])
                        return rk_conf_error(err, e, "window given twice");
            }
        } else if (rk_conf_get(n, "buckets_per_window")) {
            return rk_conf_error(err, rk_conf_get(n, "buckets_per_window"),
                                 "buckets_per_window needs windows");
        }
        sl.half_life_ms = (double)hl;
    }
    f->nout = sl.nwin ? sl.nwin : 1;
    sl.size = 8;
    if (sl.nwin)
        sl.size += sl.nwin * (8 + 8u * sl.nch * sl.nbuck);
    else
        sl.size += 8u * sl.nch;
    f->group = gi;
    f->slot = g->nslots;
    aslot *ns = rk_realloc(g->slot, (g->nslots + 1) * sizeof *ns);
    if (!ns) return nomem(err);
    g->slot = ns;
    g->slot[g->nslots++] = sl;

    /* Events and their routes. */
    const char *v[RK_MAX_EVENT_TYPES];
    uint32_t cnt;
    if (f->kind == FK_RATE) {
        const rk_conf_node *nn = rk_conf_get(n, "num"), *dn = rk_conf_get(n, "den");
        if (!nn || !dn) return rk_conf_error(err, n, "a rate needs num and den "
                                             "event types");
        if ((rc = str_list(nn, v, RK_MAX_EVENT_TYPES, &cnt, err))) return rc;
        for (uint32_t i = 0; i < cnt; i++)
            if ((rc = add_route(c, nn, v[i], gi, f->slot, 0, WM_ONE))) return rc;
        if (!(f->ev_a = strv_dup(v, cnt))) return nomem(err);
        f->nev_a = cnt;
        if ((rc = str_list(dn, v, RK_MAX_EVENT_TYPES, &cnt, err))) return rc;
        for (uint32_t i = 0; i < cnt; i++)
            if ((rc = add_route(c, dn, v[i], gi, f->slot, 1, WM_ONE))) return rc;
        if (!(f->ev_b = strv_dup(v, cnt))) return nomem(err);
        f->nev_b = cnt;
        const rk_conf_node *pr = rk_conf_get(n, "prior");
        f->alpha = f->beta = 0;
        if (pr && rk_conf_node_type(pr) != RK_CONF_NULL) {
            static const char *const pk[] = {"alpha", "beta", "mean", "strength",
                                             NULL};
            if ((rc = rk_conf_check_keys(pr, pk, err))) return rc;
            const rk_conf_node *mn = rk_conf_get(pr, "mean");
            if (mn) {
                double mean, str;
                if (rk_conf_get(pr, "alpha") || rk_conf_get(pr, "beta"))
                    return rk_conf_error(err, pr, "give alpha and beta, or mean "
                                         "and strength");
                if ((rc = rk_conf_as_float(mn, 0, &mean, err)) ||
                    (rc = rk_conf_as_float(rk_conf_get(pr, "strength"), 1, &str, err)))
                    return rc;
                if (!(mean >= 0 && mean <= 1) || !(str >= 0 && str < 1e12))
                    return rk_conf_error(err, pr, "prior mean must be in [0, 1] "
                                         "and strength >= 0");
                f->alpha = mean * str;
                f->beta = (1 - mean) * str;
            } else {
                if ((rc = rk_conf_as_float(rk_conf_get(pr, "alpha"), 0, &f->alpha, err)) ||
                    (rc = rk_conf_as_float(rk_conf_get(pr, "beta"), 0, &f->beta, err)))
                    return rc;
                if (!(f->alpha >= 0 && f->beta >= 0 && f->alpha < 1e12 &&
                      f->beta < 1e12))
                    return rk_conf_error(err, pr, "alpha and beta must be >= 0");
            }
        }
    } else {
        const rk_conf_node *en = rk_conf_get(n, "events");
        if (!en) return rk_conf_error(err, n, "missing 'events'");
        if ((rc = str_list(en, v, RK_MAX_EVENT_TYPES, &cnt, err))) return rc;
        int wm = WM_ONE;
        if (f->kind == FK_COUNTER) {
            static const char *const wmn[] = {"one", "type", "value", NULL};
            if ((rc = rk_conf_as_enum(rk_conf_get(n, "weight"), 0, wmn, &wm, err)))
                return rc;
        } else {
            if ((rc = parse_unit(rk_conf_get(n, "unit"), 3600e3, &f->unit_ms, err)))
                return rc;
        }
        f->wmode = (uint8_t)wm;
        for (uint32_t i = 0; i < cnt; i++)
            if ((rc = add_route(c, en, v[i], gi, f->slot, 0, (uint8_t)wm))) return rc;
        if (!(f->ev_a = strv_dup(v, cnt))) return nomem(err);
        f->nev_a = cnt;
    }
    f->item_level = g->item_level;
    return 0;
}

static int parse_feature(compiler *c, const rk_conf_node *n, feat *f)
{
    rk_err *err = c->err;
    int rc, kind, b;
    if (rk_conf_node_type(n) != RK_CONF_MAP)
        return rk_conf_error(err, n, "expected a map with a 'kind'");
    const rk_conf_node *kn = rk_conf_get(n, "kind");
    if (!kn) return rk_conf_error(err, n, "missing 'kind' (attribute, column, "
                                  "counter, rate, recency, score, context, cross, "
                                  "text_match)");
    if ((rc = rk_conf_as_enum(kn, 0, rk__feat_kind_names, &kind, err))) return rc;
    f->kind = (uint8_t)kind;
    if ((rc = rk_conf_as_bool(rk_conf_get(n, "emit"), 1, &b, err))) return rc;
    f->emit = (uint8_t)b;
    f->nout = 1;
    f->vt = VT_NUM;
    switch (kind) {
    case FK_ATTR: {
        static const char *const own[] = {"entity", "attr", "unit", NULL};
        static const char *const ents[] = {"user", "item", NULL};
        int e;
        const char *an;
        if ((rc = rk_conf_as_enum(rk_conf_get(n, "entity"), RK_ENTITY_ITEM, ents,
                                  &e, err)) ||
            (rc = rk_conf_as_str(rk_conf_get(n, "attr"), NULL, &an, err)))
            return rc;
        if (!an) return rk_conf_error(err, n, "missing 'attr'");
        f->ent = (uint8_t)e;
        if ((rc = find_attr(c, rk_conf_get(n, "attr"), (rk_entity)e, an, &f->attr)))
            return rc;
        if (!(f->attr_name = rk_strdup(an))) return nomem(err);
        const rk_attr_def *d = rk_schema_attr(c->schema, (rk_entity)e, f->attr);
        f->atype = (uint8_t)d->type;
        switch (d->type) {
        case RK_ATTR_NUMERIC: case RK_ATTR_TIMESTAMP: f->vt = VT_NUM; break;
        case RK_ATTR_VECTOR:
            f->vt = VT_NUM;
            if (d->dim > FEAT_MAX_OUT)
                return rk_conf_error(err, n, "vector of %u > %d dimensions",
                                     d->dim, FEAT_MAX_OUT);
            f->nout = d->dim;
            break;
        case RK_ATTR_CATEGORICAL: case RK_ATTR_CATEGORICAL_LIST: f->vt = VT_CAT; break;
        case RK_ATTR_TEXT: f->vt = VT_BAG; break;
        }
        if ((rc = check_def_keys(n, own, f->vt, err))) return rc;
        if (rk_conf_get(n, "unit") && d->type != RK_ATTR_TIMESTAMP)
            return rk_conf_error(err, rk_conf_get(n, "unit"),
                                 "unit applies to timestamp attributes");
        if ((rc = parse_unit(rk_conf_get(n, "unit"), 3600e3, &f->unit_ms, err)))
            return rc;
        f->item_level = e == RK_ENTITY_ITEM;
        if (f->vt == VT_CAT &&
            (rc = parse_catcfg(n, f, d->type == RK_ATTR_CATEGORICAL_LIST, err)))
            return rc;
        break;
    }
    case FK_COLUMN: {
        static const char *const own[] = {"num", "cat", NULL};
        const rk_conf_node *nn = rk_conf_get(n, "num"), *cn = rk_conf_get(n, "cat");
        if (!!nn == !!cn) return rk_conf_error(err, n, "a column is either "
                                               "num: <index> or cat: <index>");
        int64_t v;
        f->vt = cn ? VT_CAT : VT_NUM;
        if ((rc = check_def_keys(n, own, f->vt, err)) ||
            (rc = rk_conf_as_int_range(cn ? cn : nn, 0, 0, 99999, &v, err)))
            return rc;
        f->col = (uint32_t)v;
        f->col_cat = cn != NULL;
        if (cn && (rc = parse_catcfg(n, f, 0, err))) return rc;
        f->item_level = 1;
        break;
    }
    case FK_COUNTER: case FK_RATE: case FK_RECENCY:
        if ((rc = parse_aggregate(c, n, f))) return rc;
        break;
    case FK_SCORE: {
        static const char *const own[] = {"slot", NULL};
        const char *slot;
        if ((rc = check_def_keys(n, own, VT_NUM, err)) ||
            (rc = rk_conf_as_str(rk_conf_get(n, "slot"), f->name, &slot, err)))
            return rc;
        uint32_t i;
        if (rk_feat_score_slot(c->s, slot, &i) != 0) {
            char **ns = rk_realloc(c->s->score_names,
                                   (c->s->nscores + 1) * sizeof *ns);
            if (!ns) return nomem(err);
            c->s->score_names = ns;
            if (!(ns[c->s->nscores] = rk_strdup(slot))) return nomem(err);
            i = c->s->nscores++;
        }
        f->score = i;
        f->item_level = 1;
        break;
    }
    case FK_CONTEXT: {
        static const char *const own[] = {"field", "type", NULL};
        static const char *const types[] = {"numeric", "categorical", "text", NULL};
        const char *field;
        if ((rc = rk_conf_as_str(rk_conf_get(n, "field"), NULL, &field, err)))
            return rc;
        if (!field || !*field) return rk_conf_error(err, n, "missing 'field' "
                                                    "(hour, weekday or a context "
                                                    "JSON field)");
        f->ctx = !strcmp(field, "hour") ? CTX_HOUR
                 : !strcmp(field, "weekday") ? CTX_WEEKDAY : CTX_FIELD;
        int t;
        if ((rc = rk_conf_as_enum(rk_conf_get(n, "type"),
                                  f->ctx == CTX_FIELD ? CT_CATEGORICAL : CT_NUMERIC,
                                  types, &t, err)))
            return rc;
        if (f->ctx != CTX_FIELD && t == CT_TEXT)
            return rk_conf_error(err, rk_conf_get(n, "type"),
                                 "%s is numeric or categorical", field);
        f->ctype = (uint8_t)t;
        f->vt = t == CT_NUMERIC ? VT_NUM : t == CT_CATEGORICAL ? VT_CAT : VT_BAG;
        if ((rc = check_def_keys(n, own, f->vt, err))) return rc;
        if (!(f->field = rk_strdup(field))) return nomem(err);
        if (f->vt == VT_CAT && (rc = parse_catcfg(n, f, 0, err))) return rc;
        break;
    }
    case FK_CROSS: {
        static const char *const own[] = {"kind", "emit", "of", NULL};
        f->vt = VT_CAT;
        f->enc = ENC_HASH;
        if ((rc = rk_conf_check_keys(n, own, err))) return rc;
        const rk_conf_node *of = rk_conf_get(n, "of");
        if (!of || rk_conf_node_type(of) != RK_CONF_LIST || rk_conf_len(of) < 2 ||
            rk_conf_len(of) > FEAT_MAX_CROSS)
            return rk_conf_error(err, of ? of : n, "'of' needs a list of 2..%d "
                                 "categorical features", FEAT_MAX_CROSS);
        break; /* components resolved once every feature exists */
    }
    case FK_TEXT_MATCH: {
        static const char *const own[] = {"attrs", "k1", "b", "query_field", NULL};
        if ((rc = check_def_keys(n, own, VT_NUM, err))) return rc;
        const char *v[FEAT_MAX_TATTRS];
        uint32_t cnt;
        const rk_conf_node *an = rk_conf_get(n, "attrs");
        if (!an) return rk_conf_error(err, n, "missing 'attrs' (item text "
                                      "attributes)");
        if ((rc = str_list(an, v, FEAT_MAX_TATTRS, &cnt, err))) return rc;
        for (uint32_t i = 0; i < cnt; i++) {
            if ((rc = find_attr(c, an, RK_ENTITY_ITEM, v[i], &f->tattr[i]))) return rc;
            rk_attr_type t = rk_schema_attr(c->schema, RK_ENTITY_ITEM, f->tattr[i])->type;
            if (t != RK_ATTR_TEXT && t != RK_ATTR_CATEGORICAL &&
                t != RK_ATTR_CATEGORICAL_LIST)
                return rk_conf_error(err, an, "item.%s is %s; text_match reads "
                                     "text, categorical or categorical_list", v[i],
                                     rk_attr_type_name(t));
            if (!(f->tattr_name[i] = rk_strdup(v[i]))) return nomem(err);
            f->ntattr = i + 1;
        }
        if ((rc = rk_conf_as_float(rk_conf_get(n, "k1"), 1.2, &f->k1, err)) ||
            (rc = rk_conf_as_float(rk_conf_get(n, "b"), 0.75, &f->b, err)))
            return rc;
        if (!(f->k1 >= 0 && f->k1 <= 100) || !(f->b >= 0 && f->b <= 1))
            return rk_conf_error(err, n, "BM25 needs 0 <= k1 <= 100, 0 <= b <= 1");
        const char *qf;
        if ((rc = rk_conf_as_str(rk_conf_get(n, "query_field"), "query", &qf, err)))
            return rc;
        if (!(f->field = rk_strdup(qf))) return nomem(err);
        f->item_level = 1;
        break;
    }
    }
    if (f->vt == VT_NUM && f->kind != FK_CROSS && (rc = parse_numtf(n, f, err)))
        return rc;
    if (f->vt == VT_BAG && (rc = parse_bagcfg(n, f, err))) return rc;
    return 0;
}

static int resolve_cross(compiler *c, feat *f)
{
    const rk_conf_node *of = rk_conf_get(c->nodes[f - c->s->f], "of");
    for (size_t i = 0; i < rk_conf_len(of); i++) {
        const rk_conf_node *e = rk_conf_at(of, i, NULL);
        const char *name;
        int rc = rk_conf_as_str(e, NULL, &name, c->err);
        if (rc) return rc;
        if (!name) return rk_conf_error(c->err, e, "expected a feature name");
        uint32_t j;
        for (j = 0; j < c->s->nfeat; j++)
            if (!strcmp(c->s->f[j].name, name)) break;
        if (j == c->s->nfeat)
            return rk_conf_error(c->err, e, "no feature named '%s'", name);
        const feat *g = &c->s->f[j];
        if (g->vt != VT_CAT || g->kind == FK_CROSS)
            return rk_conf_error(c->err, e, "'%s' is not a categorical feature "
                                 "(crosses combine categorical values)", name);
        f->comp[f->ncomp++] = j;
        if (g->item_level) f->item_level = 1;
    }
    return 0;
}

/* Names the dense columns and counts them. */
static int assign_columns(rk_feat_spec *s, rk_err *err)
{
    RK_VEC(char *) names = {0};
    uint32_t raw = 0;
    for (uint32_t i = 0; i < s->nfeat; i++) {
        feat *f = &s->f[i];
        f->dense0 = (uint32_t)names.n;
        if (f->vt == VT_NUM) {
            f->raw0 = raw;
            raw += f->nout;
            f->num_fits = f->tf.missing == MISS_MEAN || f->tf.standardize ||
                          f->tf.buckets;
            if (f->num_fits) s->needs_fit = 1;
            if (!(f->fit = rk_calloc(f->nout, sizeof *f->fit))) goto oom;
            for (uint32_t k = 0; k < f->nout; k++) f->fit[k].sd = 1;
        }
        if (f->kind == FK_TEXT_MATCH) s->needs_fit = 1;
        if (f->vt == VT_CAT && f->enc != ENC_HASH) s->needs_fit = 1;
        if (!f->emit) continue;
        for (uint32_t k = 0; f->vt == VT_NUM && k < f->nout; k++) {
            char base[RK_NAME_MAX * 2 + 32], lab[32];
            if (f->nout == 1) {
                snprintf(base, sizeof base, "%s", f->name);
            } else if ((f->kind == FK_COUNTER || f->kind == FK_RATE)) {
                fmt_duration(s->g[f->group].slot[f->slot].win_ms[k], lab, sizeof lab);
                snprintf(base, sizeof base, "%s.%s", f->name, lab);
            } else {
                snprintf(base, sizeof base, "%s.%u", f->name, k);
            }
            if (!(f->tf.buckets && f->tf.bucket_out == BOUT_ONEHOT)) {
                char *nm = rk_strdup(base);
                if (!nm || rk_vec_push(&names, nm)) { rk_free(nm); goto oom; }
            }
            if (f->tf.indicator) {
                char buf[sizeof base + 16];
                snprintf(buf, sizeof buf, "%s.missing", base);
                char *nm = rk_strdup(buf);
                if (!nm || rk_vec_push(&names, nm)) { rk_free(nm); goto oom; }
            }
        }
        if (f->vt == VT_CAT && f->enc == ENC_INDEX) {
            char *nm = rk_strdup(f->name);
            if (!nm || rk_vec_push(&names, nm)) { rk_free(nm); goto oom; }
        }
        f->ndense = (uint32_t)names.n - f->dense0;
    }
    if (names.n > (1u << 16)) {
        strv_free(names.v, (uint32_t)names.n);
        return rk_err_set(err, RK_ECONFIG, "features: %zu dense columns, at most "
                          "65536", names.n);
    }
    s->dense_names = names.v;
    s->ndense = (uint32_t)names.n;
    s->nraw = raw;
    return 0;
oom:
    strv_free(names.v, (uint32_t)names.n);
    return nomem(err);
}

/* Per event type route tables, and each group's record layout and hash. */
static int finish_groups(compiler *c)
{
    rk_feat_spec *s = c->s;
    uint32_t nt = rk_schema_nevent_types(c->schema);
    s->ntypes = nt;
    s->type_names = rk_calloc(nt ? nt : 1, sizeof *s->type_names);
    s->type_role = rk_calloc(nt ? nt : 1, 1);
    s->type_weight = rk_calloc(nt ? nt : 1, sizeof *s->type_weight);
    s->route0 = rk_calloc(nt + 1, sizeof *s->route0);
    s->nroute = rk_calloc(nt ? nt : 1, sizeof *s->nroute);
    s->routes = rk_calloc(c->routes.n ? c->routes.n : 1, sizeof *s->routes);
    if (!s->type_names || !s->type_role || !s->type_weight || !s->route0 ||
        !s->nroute || !s->routes)
        return nomem(c->err);
    for (uint32_t t = 0; t < nt; t++) {
        const rk_event_type_def *d = rk_schema_event_type(c->schema, t);
        if (!(s->type_names[t] = rk_strdup(d->name))) return nomem(c->err);
        s->type_role[t] = (uint8_t)d->role;
        s->type_weight[t] = d->weight;
    }
    /* Routes sorted by type (stable: declaration order within a type). */
    uint32_t k = 0;
    for (uint32_t t = 0; t < nt; t++) {
        s->route0[t] = k;
        for (size_t i = 0; i < c->routes.n; i++)
            if (c->rtype.v[i] == t) s->routes[k++] = c->routes.v[i];
        s->nroute[t] = k - s->route0[t];
    }
    s->route0[nt] = k;
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        agroup *g = &s->g[gi];
        rk_buf d;
        rk_buf_init(&d, 0);
        int rc = rk_buf_printf(&d, "%s|", c->tmpl[gi]);
        uint32_t off = FEAT_REC_HDR;
        for (uint32_t i = 0; !rc && i < g->nslots; i++) {
            aslot *sl = &g->slot[i];
            sl->off = off;
            off += sl->size;
            rc = rk_buf_printf(&d, "%u/%u/%u/%.17g", sl->nch, sl->nwin, sl->nbuck,
                               sl->half_life_ms);
            for (uint32_t w = 0; !rc && w < sl->nwin; w++)
                rc = rk_buf_printf(&d, "/%lld", (long long)sl->win_ms[w]);
            for (size_t r = 0; !rc && r < c->routes.n; r++) {
                const route *ro = &c->routes.v[r];
                if (ro->group == gi && ro->slot == i)
                    rc = rk_buf_printf(&d, ";%s:%u:%u:%.17g",
                                       s->type_names[c->rtype.v[r]], ro->ch,
                                       ro->wmode, ro->wmode == WM_TYPE ? ro->w : 0);
            }
            if (!rc) rc = rk_buf_putc(&d, '|');
        }
        if (rc) {
            rk_buf_free(&d);
            return nomem(c->err);
        }
        g->rec_size = off;
        g->layout = rk_hash64(d.data, d.len, 0x61676772656731ull);
        rk_buf_free(&d);
    }
    return 0;
}

/* ---- canonical form ----------------------------------------------------- */

/* Integers print as integers, anything else with round-trip precision. */
static void num_str(double v, char buf[40])
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, 40, "%lld", (long long)v);
    else
        snprintf(buf, 40, "%.17g", v);
}

static int put_num(rk_buf *b, const char *key, double v)
{
    char s[40];
    num_str(v, s);
    return rk_buf_printf(b, ",\"%s\":%s", key, s);
}

static int put_strs(rk_buf *b, const char *key, char **v, uint32_t n)
{
    int rc = rk_buf_printf(b, ",\"%s\":[", key);
    for (uint32_t i = 0; !rc && i < n; i++) {
        if (i) rc = rk_buf_putc(b, ',');
        if (!rc) rc = rk_buf_put_json_str(b, v[i], strlen(v[i]));
    }
    return rc ? rc : rk_buf_putc(b, ']');
}

static int canon_feature(const rk_feat_spec *s, const feat *f, rk_buf *b)
{
    int rc = rk_buf_put_json_str(b, f->name, strlen(f->name));
    rc = rc ? rc : rk_buf_printf(b, ":{\"kind\":\"%s\",\"emit\":%s",
                                 rk__feat_kind_names[f->kind],
                                 f->emit ? "true" : "false");
    static const char *const units[] = {"ms", "s", "m", "h", "d"};
    static const double umult[] = {1, 1e3, 60e3, 3600e3, 86400e3};
    const char *unit = "h";
    for (int i = 0; i < 5; i++)
        if (umult[i] == f->unit_ms) unit = units[i];
    switch (f->kind) {
    case FK_ATTR:
        rc = rc ? rc : rk_buf_printf(b, ",\"entity\":\"%s\",\"attr\":",
                                     rk_entity_name((rk_entity)f->ent));
        rc = rc ? rc : rk_buf_put_json_str(b, f->attr_name, strlen(f->attr_name));
        if (f->atype == RK_ATTR_TIMESTAMP)
            rc = rc ? rc : rk_buf_printf(b, ",\"unit\":\"%s\"", unit);
        break;
    case FK_COLUMN:
        rc = rc ? rc : rk_buf_printf(b, ",\"%s\":%u", f->col_cat ? "cat" : "num",
                                     f->col);
        break;
    case FK_COUNTER: case FK_RATE: case FK_RECENCY: {
        const agroup *g = &s->g[f->group];
        const aslot *sl = &g->slot[f->slot];
        rc = rc ? rc : rk_buf_puts(b, ",\"key\":[");
        for (uint32_t i = 0; !rc && i < g->nparts; i++) {
            static const char *const kn[] = {"user", "item", "item.", "context."};
            char part[RK_NAME_MAX * 2 + 16];
            snprintf(part, sizeof part, "%s%s", kn[g->part[i].kind],
                     g->part[i].name ? g->part[i].name : "");
            if (i) rc = rk_buf_putc(b, ',');
            if (!rc) rc = rk_buf_put_json_str(b, part, strlen(part));
        }
        rc = rc ? rc : rk_buf_putc(b, ']');
        if (f->kind == FK_RATE) {
            rc = rc ? rc : put_strs(b, "num", f->ev_a, f->nev_a);
            rc = rc ? rc : put_strs(b, "den", f->ev_b, f->nev_b);
            char na[40], nb[40];
            num_str(f->alpha, na);
            num_str(f->beta, nb);
            rc = rc ? rc : rk_buf_printf(b, ",\"prior\":{\"alpha\":%s,"
                                         "\"beta\":%s}", na, nb);
        } else {
            rc = rc ? rc : put_strs(b, "events", f->ev_a, f->nev_a);
        }
        if (f->kind == FK_COUNTER) {
            static const char *const wm[] = {"one", "type", "value"};
            rc = rc ? rc : rk_buf_printf(b, ",\"weight\":\"%s\"", wm[f->wmode]);
        }
        if (f->kind == FK_RECENCY)
            rc = rc ? rc : rk_buf_printf(b, ",\"unit\":\"%s\"", unit);
        if (f->kind != FK_RECENCY && sl->nwin) {
            rc = rc ? rc : rk_buf_puts(b, ",\"windows\":[");
            for (uint32_t w = 0; !rc && w < sl->nwin; w++) {
                char lab[32];
                fmt_duration(sl->win_ms[w], lab, sizeof lab);
                rc = rk_buf_printf(b, "%s\"%s\"", w ? "," : "", lab);
            }
            rc = rc ? rc : rk_buf_printf(b, "],\"buckets_per_window\":%u", sl->nbuck);
        } else if (f->kind != FK_RECENCY && sl->half_life_ms > 0) {
            char lab[32];
            fmt_duration((int64_t)sl->half_life_ms, lab, sizeof lab);
            rc = rc ? rc : rk_buf_printf(b, ",\"half_life\":\"%s\"", lab);
        }
        break;
    }
    case FK_SCORE:
        rc = rc ? rc : rk_buf_puts(b, ",\"slot\":");
        rc = rc ? rc : rk_buf_put_json_str(b, s->score_names[f->score],
                                           strlen(s->score_names[f->score]));
        break;
    case FK_CONTEXT: {
        static const char *const ct[] = {"numeric", "categorical", "text"};
        rc = rc ? rc : rk_buf_puts(b, ",\"field\":");
        rc = rc ? rc : rk_buf_put_json_str(b, f->field, strlen(f->field));
        rc = rc ? rc : rk_buf_printf(b, ",\"type\":\"%s\"", ct[f->ctype]);
        break;
    }
    case FK_CROSS:
        rc = rc ? rc : rk_buf_puts(b, ",\"of\":[");
        for (uint32_t i = 0; !rc && i < f->ncomp; i++) {
            const char *nm = s->f[f->comp[i]].name;
            if (i) rc = rk_buf_putc(b, ',');
            if (!rc) rc = rk_buf_put_json_str(b, nm, strlen(nm));
        }
        rc = rc ? rc : rk_buf_putc(b, ']');
        break;
    case FK_TEXT_MATCH:
        rc = rc ? rc : put_strs(b, "attrs", (char **)f->tattr_name, f->ntattr);
        rc = rc ? rc : put_num(b, "k1", f->k1);
        rc = rc ? rc : put_num(b, "b", f->b);
        rc = rc ? rc : rk_buf_puts(b, ",\"query_field\":");
        rc = rc ? rc : rk_buf_put_json_str(b, f->field, strlen(f->field));
        break;
    }
    if (f->vt == VT_NUM && f->kind != FK_CROSS) {
        const numtf *t = &f->tf;
        if (t->missing == MISS_CONST) rc = rc ? rc : put_num(b, "missing", t->fill);
        else rc = rc ? rc : rk_buf_printf(b, ",\"missing\":\"%s\"",
                                          t->missing == MISS_MEAN ? "mean" : "nan");
        rc = rc ? rc : rk_buf_printf(b, ",\"indicator\":%s,\"log1p\":%s,"
                                     "\"standardize\":%s",
                                     t->indicator ? "true" : "false",
                                     t->log1p ? "true" : "false",
                                     t->standardize ? "true" : "false");
        if (t->clip) {
            char lo[40], hi[40];
            num_str(t->lo, lo);
            num_str(t->hi, hi);
            rc = rc ? rc : rk_buf_printf(b, ",\"clip\":[%s,%s]", lo, hi);
        }
        if (t->buckets)
            rc = rc ? rc : rk_buf_printf(b, ",\"buckets\":%u,\"bucket_output\":\"%s\"",
                                         t->buckets, t->bucket_out ? "onehot" : "index");
    }
    if (f->vt == VT_CAT && f->kind != FK_CROSS) {
        static const char *const en[] = {"hash", "onehot", "index"};
        rc = rc ? rc : rk_buf_printf(b, ",\"encode\":\"%s\"", en[f->enc]);
        if (f->enc != ENC_HASH)
            rc = rc ? rc : rk_buf_printf(b, ",\"vocab_max\":%u,\"min_count\":%llu",
                                         f->vocab_max,
                                         (unsigned long long)f->min_count);
    }
    if (f->vt == VT_BAG)
        rc = rc ? rc : rk_buf_printf(b, ",\"tf\":\"%s\"",
                                     f->tf_binary ? "binary" : "count");
    return rc ? rc : rk_buf_putc(b, '}');
}

static int make_canonical(rk_feat_spec *s)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    char ttl[32];
    fmt_duration(s->ttl_ms, ttl, sizeof ttl);
    int rc = rk_buf_printf(&b, "{\"features\":{\"hash_bits\":%u,"
                           "\"utc_offset_minutes\":%lld,\"state\":{\"ttl\":\"%s\","
                           "\"admit_after\":%u,\"sketch_width\":%u,"
                           "\"sketch_depth\":%u,\"replay_max_keys\":%llu},\"defs\":{",
                           s->hash_bits, (long long)(s->utc_offset_ms / 60000),
                           s->ttl_ms ? ttl : "0s", s->admit_after, s->sketch_width,
                           s->sketch_depth, (unsigned long long)s->replay_max_keys);
    for (uint32_t i = 0; !rc && i < s->nfeat; i++) {
        if (i) rc = rk_buf_putc(&b, ',');
        if (!rc) rc = canon_feature(s, &s->f[i], &b);
    }
    rc = rc ? rc : rk_buf_puts(&b, "}}}");
    if (rc) {
        rk_buf_free(&b);
        return rc;
    }
    rk_free(s->canon);
    s->canon = b.data;
    s->canon_len = b.len;
    return 0;
}

int rk__feat_rehash(rk_feat_spec *s)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    int rc = rk_buf_append(&b, s->canon, s->canon_len);
    if (!rc && s->fitted) rc = rk__feat_fit_save(s, &b);
    if (!rc) s->hash = rk_hash64(b.data, b.len, 0x7370656331ull);
    rk_buf_free(&b);
    return rc;
}

/* ---- the entry points ----------------------------------------------------- */

static int spec_alloc(rk_feat_spec **out, rk_err *err)
{
    rk_feat_spec *s = rk_calloc(1, sizeof *s);
    if (!s) return nomem(err);
    s->hash_bits = DEFAULT_HASH_BITS;
    s->admit_after = 1;
    s->sketch_width = 1u << 18;
    s->sketch_depth = 4;
    s->replay_max_keys = DEFAULT_REPLAY_KEYS;
    s->cache_keys = DEFAULT_CACHE_KEYS;
    s->cache_mb = DEFAULT_CACHE_MB;
    *out = s;
    return 0;
}

static int finish_spec(rk_feat_spec *s, rk_err *err)
{
    s->mask = s->hash_bits >= 32 ? 0xffffffffu : (1u << s->hash_bits) - 1;
    for (uint32_t i = 0; i < s->nfeat; i++) {
        feat *f = &s->f[i];
        f->seed = rk_hash64(f->name, strlen(f->name), 0x66656174ull);
        if (f->kind == FK_ATTR && f->ent == RK_ENTITY_USER) {
            s->uses_user_attrs = 1;
            if (f->attr + 1 > s->max_user_attr) s->max_user_attr = f->attr + 1;
        }
        if (f->kind == FK_ATTR && f->ent == RK_ENTITY_ITEM) {
            s->uses_item_entity = 1;
            if (f->attr + 1 > s->max_item_attr) s->max_item_attr = f->attr + 1;
        }
        if (f->kind == FK_TEXT_MATCH) {
            s->uses_item_entity = 1;
            s->uses_query = 1;
            for (uint32_t k = 0; k < f->ntattr; k++)
                if (f->tattr[k] + 1 > s->max_item_attr) s->max_item_attr = f->tattr[k] + 1;
        }
        if (f->kind == FK_CONTEXT && f->ctx == CTX_FIELD) s->uses_ctx = 1;
        if (f->kind == FK_COLUMN) {
            if (f->col_cat && f->col + 1 > s->ncol_cat) s->ncol_cat = f->col + 1;
            if (!f->col_cat && f->col + 1 > s->ncol_num) s->ncol_num = f->col + 1;
        }
    }
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        const agroup *g = &s->g[gi];
        if (g->uses_ctx) s->uses_ctx = 1;
        for (uint32_t k = 0; k < g->nparts; k++)
            if (g->part[k].kind == KP_ITEM_ATTR) {
                s->uses_item_entity = 1;
                if (g->part[k].attr + 1 > s->max_item_attr)
                    s->max_item_attr = g->part[k].attr + 1;
            }
    }
    int rc = assign_columns(s, err);
    if (rc) return rc;
    if (make_canonical(s) || rk__feat_rehash(s)) return nomem(err);
    return 0;
}

int rk_feat_spec_from_conf(rk_feat_spec **out, const rk_conf_node *root,
                           const rk_schema *schema, rk_err *err)
{
    *out = NULL;
    rk_feat_spec *s = NULL;
    int rc = spec_alloc(&s, err);
    if (rc) return rc;
    compiler *c = rk_calloc(1, sizeof *c);
    if (!c) {
        rk_free(s);
        return nomem(err);
    }
    c->s = s;
    c->schema = schema;
    c->err = err;
    const rk_conf_node *fs = root ? rk_conf_get(root, "features") : NULL;
    if (fs && rk_conf_node_type(fs) == RK_CONF_NULL) fs = NULL;
    static const char *const top[] = {"hash_bits", "utc_offset_minutes", "state",
                                      "defs", NULL};
    static const char *const st[] = {"ttl", "admit_after", "sketch_width",
                                     "sketch_depth", "replay_max_keys", "cache_keys",
                                     "cache_mb", NULL};
    int64_t v;
    if ((rc = rk_conf_check_keys(fs, top, err))) goto fail;
    if ((rc = rk_conf_as_int_range(rk_conf_get(fs, "hash_bits"), DEFAULT_HASH_BITS,
                                   1, 30, &v, err)))
        goto fail;
    s->hash_bits = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(fs, "utc_offset_minutes"), 0,
                                   -24 * 60, 24 * 60, &v, err)))
        goto fail;
    s->utc_offset_ms = v * 60000;
    const rk_conf_node *sn = rk_conf_get(fs, "state");
    if ((rc = rk_conf_check_keys(sn, st, err)) ||
        (rc = rk_conf_as_duration_ms(rk_conf_get(sn, "ttl"), 0, &s->ttl_ms, err)))
        goto fail;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sn, "admit_after"), 1, 1, 1000000,
                                   &v, err)))
        goto fail;
    s->admit_after = (uint32_t)v;
    const rk_conf_node *wn = rk_conf_get(sn, "sketch_width");
    if ((rc = rk_conf_as_int_range(wn, 1 << 18, 64, 1 << 28, &v, err))) goto fail;
    if (v & (v - 1)) {
        rc = rk_conf_error(err, wn, "sketch_width must be a power of two");
        goto fail;
    }
    s->sketch_width = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sn, "sketch_depth"), 4, 1, 8, &v,
                                   err)))
        goto fail;
    s->sketch_depth = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sn, "replay_max_keys"),
                                   DEFAULT_REPLAY_KEYS, 1000, (int64_t)1 << 34, &v,
                                   err)))
        goto fail;
    s->replay_max_keys = (uint64_t)v;
    /* The read cache's bounds are serving settings, not part of the
     * definition: they stay out of the canonical text and the schema hash,
     * since they never change a computed value. */
    if ((rc = rk_conf_as_int_range(rk_conf_get(sn, "cache_keys"), DEFAULT_CACHE_KEYS,
                                   0, (int64_t)1 << 32, &v, err)))
        goto fail;
    s->cache_keys = (uint64_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(sn, "cache_mb"), DEFAULT_CACHE_MB, 1,
                                   (int64_t)1 << 20, &v, err)))
        goto fail;
    s->cache_mb = (uint64_t)v;

    const rk_conf_node *defs = rk_conf_get(fs, "defs");
    if (defs && rk_conf_node_type(defs) != RK_CONF_NULL &&
        rk_conf_node_type(defs) != RK_CONF_MAP) {
        rc = rk_conf_error(err, defs, "expected a map of feature name -> "
                           "definition");
        goto fail;
    }
    size_t nd = rk_conf_node_type(defs) == RK_CONF_MAP ? rk_conf_len(defs) : 0;
    if (nd > FEAT_MAX) {
        rc = rk_conf_error(err, defs, "%zu features, at most %d", nd, FEAT_MAX);
        goto fail;
    }
    if (nd && !(s->f = rk_calloc(nd, sizeof *s->f))) {
        rc = nomem(err);
        goto fail;
    }
    for (size_t i = 0; i < nd; i++) {
        const char *name;
        const rk_conf_node *n = rk_conf_at(defs, i, &name);
        feat *f = &s->f[i];
        s->nfeat = (uint32_t)i + 1;
        c->nodes[i] = n;
        if (!*name || strlen(name) > RK_NAME_MAX || strpbrk(name, " \t\n.")) {
            rc = rk_conf_error(err, n, "feature name '%s': 1..%d characters, no "
                               "spaces or dots", name, RK_NAME_MAX);
            goto fail;
        }
        if (!(f->name = rk_strdup(name))) {
            rc = nomem(err);
            goto fail;
        }
        if ((rc = parse_feature(c, n, f))) goto fail;
    }
    for (uint32_t i = 0; i < s->nfeat; i++)
        if (s->f[i].kind == FK_CROSS && (rc = resolve_cross(c, &s->f[i]))) goto fail;
    if ((rc = finish_groups(c)) || (rc = finish_spec(s, err))) goto fail;
    for (uint32_t i = 0; i < s->ngroups; i++) rk_free(c->tmpl[i]);
    rk_vec_free(&c->routes);
    rk_vec_free(&c->rtype);
    rk_free(c);
    *out = s;
    return 0;
fail:
    for (uint32_t i = 0; i < s->ngroups; i++) rk_free(c->tmpl[i]);
    rk_vec_free(&c->routes);
    rk_vec_free(&c->rtype);
    rk_free(c);
    rk_feat_spec_destroy(s);
    return rc;
}

int rk_feat_spec_for_rows(rk_feat_spec **out, uint32_t nnum, uint32_t ncat,
                          uint32_t hash_bits, rk_err *err)
{
    *out = NULL;
    if (hash_bits > 30 || (uint64_t)nnum + ncat > FEAT_MAX)
        return rk_err_set(err, RK_EINVAL, "features: %u + %u columns (at most "
                          "%d) or hash_bits %u (at most 30)", nnum, ncat, FEAT_MAX,
                          hash_bits);
    rk_feat_spec *s = NULL;
    int rc = spec_alloc(&s, err);
    if (rc) return rc;
    if (hash_bits) s->hash_bits = hash_bits;
    uint32_t n = nnum + ncat;
    if (n && !(s->f = rk_calloc(n, sizeof *s->f))) {
        rk_free(s);
        return nomem(err);
    }
    for (uint32_t i = 0; i < n; i++) {
        feat *f = &s->f[i];
        char name[32];
        int cat = i >= nnum;
        snprintf(name, sizeof name, "%s%u", cat ? "cat" : "num", cat ? i - nnum : i);
        s->nfeat = i + 1;
        if (!(f->name = rk_strdup(name))) {
            rk_feat_spec_destroy(s);
            return nomem(err);
        }
        f->kind = FK_COLUMN;
        f->emit = 1;
        f->nout = 1;
        f->item_level = 1;
        f->col = cat ? i - nnum : i;
        f->col_cat = (uint8_t)cat;
        f->vt = cat ? VT_CAT : VT_NUM;
        f->enc = ENC_HASH;
        f->vocab_max = 1000;
        f->min_count = 1;
    }
    /* No events are routed, but the per-type tables must exist. */
    s->route0 = rk_calloc(1, sizeof *s->route0);
    s->routes = rk_calloc(1, sizeof *s->routes);
    s->type_names = rk_calloc(1, sizeof *s->type_names);
    s->type_role = rk_calloc(1, 1);
    s->type_weight = rk_calloc(1, sizeof *s->type_weight);
    s->nroute = rk_calloc(1, sizeof *s->nroute);
    if (!s->route0 || !s->routes || !s->type_names || !s->type_role ||
        !s->type_weight || !s->nroute ||
        (rc = finish_spec(s, err))) {
        rk_feat_spec_destroy(s);
        return rc ? rc : nomem(err);
    }
    *out = s;
    return 0;
}

typedef struct colscan {
    uint32_t nnum, ncat;
} colscan;

static int colscan_row(void *arg, const rk_row *row)
{
    colscan *c = arg;
    for (uint32_t i = 0; i < row->nnum; i++)
        if (row->num_idx[i] + 1 > c->nnum) c->nnum = row->num_idx[i] + 1;
    for (uint32_t i = 0; i < row->ncat; i++)
        if (row->cat_idx[i] + 1 > c->ncat) c->ncat = row->cat_idx[i] + 1;
    return 0;
}

int rk_feat_spec_for_dataset(rk_feat_spec **out, rk_reader *r,
                             const char *dataset, uint32_t hash_bits,
                             rk_err *err)
{
    *out = NULL;
    colscan c = {0, 0};
    int rc = rk_reader_scan_rows(r, dataset, colscan_row, &c);
    if (rc == RK_ENOTFOUND)
        return rk_err_set(err, rc, "features: no dataset '%s'", dataset);
    if (rc) return rk_err_set(err, rc, "features: %s", rk_reader_errmsg(r));
    return rk_feat_spec_for_rows(out, c.nnum, c.ncat, hash_bits, err);
}

/* ---- fitted parameters and serialization ---------------------------------- */

static int put64(rk_buf *b, uint64_t x)
{
    unsigned char p[8];
    rk__le64(p, x);
    return rk_buf_append(b, p, 8);
}

static int putf(rk_buf *b, double d)
{
    unsigned char p[8];
    rk__lef64(p, d);
    return rk_buf_append(b, p, 8);
}

int rk__feat_fit_save(const rk_feat_spec *s, rk_buf *out)
{
    int rc = 0;
    for (uint32_t i = 0; !rc && i < s->nfeat; i++) {
        const feat *f = &s->f[i];
        if (f->vt == VT_NUM && f->num_fits)
            for (uint32_t k = 0; !rc && k < f->nout; k++) {
                const numfit *p = &f->fit[k];
                rc = putf(out, p->mean_raw);
                rc = rc ? rc : putf(out, p->mu);
                rc = rc ? rc : putf(out, p->sd);
                rc = rc ? rc : put64(out, p->count);
                rc = rc ? rc : put64(out, p->nedges);
                for (uint32_t e = 0; !rc && e < p->nedges; e++)
                    rc = putf(out, p->edges[e]);
            }
        if (!rc && f->vt == VT_CAT && f->enc != ENC_HASH) {
            rc = put64(out, f->voc.n);
            for (uint32_t e = 0; !rc && e < f->voc.n; e++) rc = put64(out, f->voc.hash[e]);
        }
        if (!rc && f->kind == FK_TEXT_MATCH) {
            rc = putf(out, f->bm.ndocs);
            rc = rc ? rc : putf(out, f->bm.avgdl);
            rc = rc ? rc : put64(out, f->bm.n);
            for (uint32_t e = 0; !rc && e < f->bm.n; e++) {
                rc = put64(out, f->bm.hash[e]);
                rc = rc ? rc : put64(out, f->bm.df[e]);
            }
        }
    }
    return rc;
}

typedef struct rdr {
    const unsigned char *p, *end;
    int bad;
} rdr;

static uint64_t rd64(rdr *r)
{
    if (r->end - r->p < 8) {
        r->bad = 1;
        return 0;
    }
    uint64_t x = rk__rd64(r->p);
    r->p += 8;
    return x;
}

static double rdf(rdr *r)
{
    uint64_t x = rd64(r);
    double d;
    memcpy(&d, &x, 8);
    return d;
}

int rk__feat_fit_load(rk_feat_spec *s, const unsigned char *p, size_t n,
                      rk_err *err)
{
    rdr r = {p, p + n, 0};
    rk__feat_fit_clear(s);
    for (uint32_t i = 0; !r.bad && i < s->nfeat; i++) {
        feat *f = &s->f[i];
        if (f->vt == VT_NUM && f->num_fits)
            for (uint32_t k = 0; !r.bad && k < f->nout; k++) {
                numfit *q = &f->fit[k];
                q->mean_raw = rdf(&r);
                q->mu = rdf(&r);
                q->sd = rdf(&r);
                q->count = rd64(&r);
                uint64_t ne = rd64(&r);
                if (r.bad || ne > 1000 || ne * 8 > (uint64_t)(r.end - r.p)) {
                    r.bad = 1;
                    break;
                }
                if (ne && !(q->edges = rk_malloc(ne * 8))) goto oom;
                q->nedges = (uint32_t)ne;
                for (uint32_t e = 0; e < ne; e++) q->edges[e] = rdf(&r);
                if (!(q->sd > 0) || !isfinite(q->mu)) r.bad = 1;
            }
        if (!r.bad && f->vt == VT_CAT && f->enc != ENC_HASH) {
            uint64_t nv = rd64(&r);
            if (r.bad || nv > f->vocab_max || nv * 8 > (uint64_t)(r.end - r.p)) {
                r.bad = 1;
                break;
            }
            uint64_t *h = rk_malloc(nv ? nv * 8 : 1);
            if (!h) goto oom;
            for (uint64_t e = 0; e < nv; e++) h[e] = rd64(&r);
            int rc = rk__feat_vocab_build(&f->voc, h, (uint32_t)nv);
            rk_free(h);
            if (rc) goto oom;
        }
        if (!r.bad && f->kind == FK_TEXT_MATCH) {
            f->bm.ndocs = rdf(&r);
            f->bm.avgdl = rdf(&r);
            uint64_t nv = rd64(&r);
            if (r.bad || nv * 16 > (uint64_t)(r.end - r.p)) {
                r.bad = 1;
                break;
            }
            f->bm.hash = rk_malloc(nv ? nv * 8 : 1);
            f->bm.df = rk_malloc(nv ? nv * 4 : 1);
            if (!f->bm.hash || !f->bm.df) goto oom;
            f->bm.n = (uint32_t)nv;
            for (uint64_t e = 0; e < nv; e++) {
                f->bm.hash[e] = rd64(&r);
                f->bm.df[e] = (uint32_t)rd64(&r);
                if (e && f->bm.hash[e] <= f->bm.hash[e - 1]) r.bad = 1;
            }
        }
    }
    if (r.bad || r.p != r.end) {
        rk__feat_fit_clear(s);
        return rk_err_set(err, RK_ECORRUPT, "feature spec: fitted parameters "
                          "malformed");
    }
    s->fitted = 1;
    return 0;
oom:
    rk__feat_fit_clear(s);
    return nomem(err);
}

int rk_feat_spec_save(const rk_feat_spec *s, rk_buf *out)
{
    size_t mark = out->len;
    rk_buf fit;
    rk_buf_init(&fit, 0);
    int rc = s->fitted ? rk__feat_fit_save(s, &fit) : 0;
    rc = rc ? rc : rk_buf_append(out, SPEC_MAGIC, 8);
    rc = rc ? rc : put64(out, s->canon_len);
    rc = rc ? rc : rk_buf_append(out, s->canon, s->canon_len);
    rc = rc ? rc : put64(out, s->fitted);
    rc = rc ? rc : put64(out, fit.len);
    rc = rc ? rc : rk_buf_append(out, fit.data, fit.len);
    rc = rc ? rc : put64(out, s->hash);
    rk_buf_free(&fit);
    if (rc) out->len = mark;
    return rc;
}

int rk_feat_spec_load(rk_feat_spec **out, const void *p, size_t n,
                      const rk_schema *schema, rk_err *err)
{
    *out = NULL;
    rdr r = {p, (const unsigned char *)p + n, 0};
    if (n < 8 || memcmp(p, SPEC_MAGIC, 7) != 0)
        return rk_err_set(err, RK_ECORRUPT, "feature spec: bad magic");
    if (((const char *)p)[7] != SPEC_MAGIC[7])
        return rk_err_set(err, RK_EVERSION, "feature spec: unknown version '%c'",
                          ((const char *)p)[7]);
    r.p += 8;
    uint64_t clen = rd64(&r);
    if (r.bad || clen > (uint64_t)(r.end - r.p))
        return rk_err_set(err, RK_ECORRUPT, "feature spec: truncated");
    const unsigned char *canon = r.p;
    r.p += clen;
    uint64_t fitted = rd64(&r), flen = rd64(&r);
    if (r.bad || fitted > 1 || flen > (uint64_t)(r.end - r.p))
        return rk_err_set(err, RK_ECORRUPT, "feature spec: truncated");
    const unsigned char *fit = r.p;
    r.p += flen;
    uint64_t hash = rd64(&r);
    if (r.bad || r.p != r.end)
        return rk_err_set(err, RK_ECORRUPT, "feature spec: bad length");
    rk_conf *c;
    int rc = rk_conf_parse_json(&c, (const char *)canon, clen, "feature-spec", err);
    if (rc) return rc == RK_ENOMEM ? rc : rk_err_set(err, RK_ECORRUPT,
                                                     "feature spec: %s",
                                                     rk_err_msg(err));
    rk_feat_spec *s = NULL;
    rc = rk_feat_spec_from_conf(&s, rk_conf_root(c), schema, err);
    rk_conf_destroy(c);
    if (rc) return rc;
    if (fitted && (rc = rk__feat_fit_load(s, fit, flen, err))) goto fail;
    if ((rc = rk__feat_rehash(s))) {
        rc = nomem(err);
        goto fail;
    }
    if (s->hash != hash) {
        rc = rk_err_set(err, RK_ECORRUPT, "feature spec: schema hash mismatch "
                        "(%016llx stored, %016llx recomputed)",
                        (unsigned long long)hash, (unsigned long long)s->hash);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    rk_feat_spec_destroy(s);
    return rc;
}
