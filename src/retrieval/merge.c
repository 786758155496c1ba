/*
 * merge.c — the candidate merger: per-source quotas, dedupe, exclusions
 * (seen, explicit, hidden/deleted, attribute filters) and the output cap;
 * plus attribute filters over item records and a store-backed predicate.
 *
 * The merger itself knows nothing of the store: hidden and deleted items
 * arrive as a bitset or through the caller's `keep` predicate, so it can be
 * tested and reused (e.g. /v1/rank) without one. Work per call is linear in
 * the candidates given plus a sort in score mode; scratch is allocated per
 * call and freed before returning, so concurrent calls share nothing.
 *
 * Order of checks for a candidate: already taken (duplicate), seen,
 * explicitly excluded, blocked, then `keep` — cheapest first, and `keep`
 * (which may read the store) last and at most once per item: a rejection is
 * remembered, so the same item proposed by another source is not asked
 * again.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "retrieval/gen_int.h"

enum { ST_FREE = 0, ST_TAKEN = 1, ST_REJECTED = 2 };
enum { EX_SEEN = 1, EX_EXCLUDE = 2 };

typedef struct agg {
    float best;        /* best weighted normalized score over inputs */
    uint16_t sources;  /* bits of the sources that listed the item */
    uint8_t state;
} agg;

typedef struct merge_ctx {
    const rk_merge_opts *o;
    rk__u32map excl;   /* item -> EX_* */
    rk__u32map where;  /* item -> index in aggs */
    agg *aggs;
    rk_merge_stats *st;
} merge_ctx;

/* Per input: min-max normalization and weight, as one affine map. */
typedef struct norm {
    double lo, scale, weight;
} norm;

static float norm_score(const norm *nm, float s)
{
    if (!isfinite(s)) return 0;
    double v = nm->scale > 0 ? (s - nm->lo) * nm->scale : 1.0;
    return (float)(v * nm->weight);
}

/* 1 if the item may be taken now; counts the reason otherwise. */
static int admit(merge_ctx *m, uint32_t item, agg *a)
{
    const rk_merge_opts *o = m->o;
    m->st->considered++;
    if (a->state == ST_TAKEN) {
        m->st->duplicate++;
        return 0;
    }
    if (a->state == ST_REJECTED) {
        m->st->rejected++;
        return 0;
    }
    uint32_t *ex = m->excl.keys ? rk__u32map_get(&m->excl, item) : NULL;
    if (ex) {
        if (*ex == EX_SEEN) m->st->seen++;
        else m->st->excluded++;
        return 0;
    }
    if (rk__bit_get(o->blocked, o->nblocked, item)) {
        m->st->blocked++;
        return 0;
    }
    if (o->keep && !o->keep(o->keep_arg, item)) {
        a->state = ST_REJECTED;
        m->st->rejected++;
        return 0;
    }
    return 1;
}

typedef struct entry {
    float score;
    uint32_t input;
    uint32_t pos;
    uint32_t item;
} entry;

/* Best weighted score first, then earlier input, then smaller item. */
static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->input != y->input) return x->input < y->input ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

static void take(merge_ctx *m, const rk_candidate *c, agg *a, rk_candidate *out,
                 size_t *nout)
{
    a->state = ST_TAKEN;
    out[*nout] = (rk_candidate){.item = c->item, .score = a->best,
                                .source = c->source, .sources = a->sources};
    (*nout)++;
    if (c->source < RK_SRC_COUNT) m->st->taken[c->source]++;
}

int rk_merge(const rk_merge_input *in, size_t nin, const rk_merge_opts *o,
             rk_candidate *out, size_t *nout, rk_merge_stats *stats,
             rk_err *err)
{
    *nout = 0;
    rk_merge_stats local;
    merge_ctx m = {.o = o, .st = stats ? stats : &local};
    memset(m.st, 0, sizeof *m.st);
    if (nin > UINT32_MAX || (o->n && !out))
        return rk_err_set(err, RK_EINVAL, "merge: bad arguments");
    size_t total = 0;
    for (size_t i = 0; i < nin; i++) {
        if (in[i].n && !in[i].cands)
            return rk_err_set(err, RK_EINVAL, "merge: input %zu has no list", i);
        if (in[i].n > UINT32_MAX)
            return rk_err_set(err, RK_EINVAL, "merge: input %zu too long", i);
        if (in[i].quota) total += in[i].n;
    }
    if (o->n == 0 || total == 0) return 0;

    int rc = RK_ENOMEM;
    norm *nm = rk_calloc(nin, sizeof *nm);
    uint32_t *taken = rk_calloc(nin, sizeof *taken);
    size_t *cursor = rk_calloc(nin, sizeof *cursor);
    entry *ents = NULL;
    m.aggs = rk_malloc(total * sizeof *m.aggs);
    if (!nm || !taken || !cursor || !m.aggs ||
        rk__u32map_init(&m.where, total))
        goto done;
    if (o->nseen + o->nexclude) {
        if (rk__u32map_init(&m.excl, o->nseen + o->nexclude)) goto done;
        int ins;
        for (size_t k = 0; k < o->nexclude; k++)
            if (o->exclude[k] != UINT32_MAX)
                *rk__u32map_put(&m.excl, o->exclude[k], EX_EXCLUDE, &ins) = EX_EXCLUDE;
        /* Seen wins over exclude for the statistics: it is the more
         * common reason and the one worth watching. */
        for (size_t k = 0; k < o->nseen; k++)
            if (o->seen[k] != UINT32_MAX)
                *rk__u32map_put(&m.excl, o->seen[k], EX_SEEN, &ins) = EX_SEEN;
    }

    /* Normalize each input and fold every listing into its item's agg. */
    size_t naggs = 0;
    for (size_t i = 0; i < nin; i++) {
        if (!in[i].quota) continue;
        double lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; k < in[i].n; k++) {
            float s = in[i].cands[k].score;
            if (!isfinite(s)) continue;
            if (s < lo) lo = s;
            if (s > hi) hi = s;
        }
        nm[i].lo = lo;
        nm[i].scale = hi > lo ? 1.0 / (hi - lo) : 0;
        nm[i].weight = in[i].weight != 0 ? in[i].weight : 1.0;
        for (size_t k = 0; k < in[i].n; k++) {
            const rk_candidate *c = &in[i].cands[k];
            if (c->item == UINT32_MAX) continue;
            int ins;
            uint32_t *slot = rk__u32map_put(&m.where, c->item, (uint32_t)naggs, &ins);
            float s = norm_score(&nm[i], c->score);
            if (ins) m.aggs[naggs++] = (agg){s, 0, ST_FREE};
            agg *a = &m.aggs[*slot];
            if (s > a->best) a->best = s;
            if (c->source < 16) a->sources |= (uint16_t)(1u << c->source);
        }
    }

    if (o->mode == RK_MERGE_SCORE) {
        ents = rk_malloc(total * sizeof *ents);
        if (!ents) goto done;
        size_t ne = 0;
        for (size_t i = 0; i < nin; i++) {
            if (!in[i].quota) continue;
            for (size_t k = 0; k < in[i].n; k++) {
                const rk_candidate *c = &in[i].cands[k];
                if (c->item == UINT32_MAX) continue;
                ents[ne++] = (entry){norm_score(&nm[i], c->score), (uint32_t)i,
                                     (uint32_t)k, c->item};
            }
        }
        qsort(ents, ne, sizeof *ents, entry_cmp);
        for (size_t k = 0; k < ne && *nout < o->n; k++) {
            const entry *e = &ents[k];
            if (taken[e->input] >= in[e->input].quota) continue;
            agg *a = &m.aggs[*rk__u32map_get(&m.where, e->item)];
            if (!admit(&m, e->item, a)) continue;
            take(&m, &in[e->input].cands[e->pos], a, out, nout);
            taken[e->input]++;
        }
        /* The output score is the item's best over every input, which can
         * be above the entry that took it: sort once more by it. */
        qsort(out, *nout, sizeof *out, rk__cand_cmp);
    } else if (o->mode == RK_MERGE_INTERLEAVE) {
        while (*nout < o->n) {
            /* The input furthest behind its share: smallest taken/quota,
             * compared exactly as taken_i * quota_j < taken_j * quota_i. */
            size_t best = nin;
            for (size_t i = 0; i < nin; i++) {
                if (!in[i].quota || taken[i] >= in[i].quota || cursor[i] >= in[i].n)
                    continue;
                if (best == nin ||
                    (uint64_t)taken[i] * in[best].quota <
                        (uint64_t)taken[best] * in[i].quota)
                    best = i;
            }
            if (best == nin) break;
            /* Its best remaining admissible item; an input whose list runs
             * out simply drops out of the rotation. */
            while (cursor[best] < in[best].n) {
                const rk_candidate *c = &in[best].cands[cursor[best]++];
                if (c->item == UINT32_MAX) continue;
                agg *a = &m.aggs[*rk__u32map_get(&m.where, c->item)];
                if (!admit(&m, c->item, a)) continue;
                take(&m, c, a, out, nout);
                taken[best]++;
                break;
            }
        }
    } else {
        rc = rk_err_set(err, RK_EINVAL, "merge: unknown mode %d", (int)o->mode);
        goto done;
    }
    rc = 0;
done:
    if (rc == RK_ENOMEM) {
        *nout = 0;
        rk_err_set(err, rc, "merge: out of memory");
    }
    rk_free(nm);
    rk_free(taken);
    rk_free(cursor);
    rk_free(ents);
    rk_free(m.aggs);
    rk__u32map_free(&m.where);
    rk__u32map_free(&m.excl);
    return rc;
}

/* ---- attribute filters ---------------------------------------------------- */

static const rk_attr_val *find_attr(const rk_entity_view *v, uint32_t attr)
{
    for (uint32_t k = 0; k < v->nattrs; k++)
        if (v->attrs[k].attr == attr) return &v->attrs[k];
    return NULL;
}

static int in_set(const rk_filter_clause *c, const char *s, size_t len)
{
    for (size_t k = 0; k < c->nvalues; k++) {
        size_t l = c->lens ? c->lens[k] : strlen(c->values[k]);
        if (l == len && !memcmp(c->values[k], s, len)) return 1;
    }
    return 0;
}

static int clause_in(const rk_filter_clause *c, const rk_attr_val *a)
{
    switch (a->type) {
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT:
        return in_set(c, a->str, a->len);
    case RK_ATTR_CATEGORICAL_LIST:
        for (uint32_t t = 0; t < a->n; t++)
            if (in_set(c, a->list[t], a->list_lens[t])) return 1;
        return 0;
    default:
        return 0;
    }
}

int rk_merge_filter_match(const rk_filter *f, const rk_entity_view *v)
{
    if (!f) return 1;
    for (size_t i = 0; i < f->n; i++) {
        const rk_filter_clause *c = &f->clauses[i];
        const rk_attr_val *a = find_attr(v, c->attr);
        int ok;
        switch (c->op) {
        case RK_FILTER_IN:
            ok = a && clause_in(c, a);
            break;
        case RK_FILTER_NOT_IN:
            ok = !a || !clause_in(c, a);
            break;
        case RK_FILTER_RANGE: {
            double x;
            if (!a) ok = 0;
            else {
                if (a->type == RK_ATTR_NUMERIC) x = a->num;
                else if (a->type == RK_ATTR_TIMESTAMP) x = (double)a->ts_ms;
                else x = NAN;
                ok = x >= c->lo && x <= c->hi; /* NaN fails both */
            }
            break;
        }
        default:
            ok = 0;
        }
        if (!ok) return 0;
    }
    return 1;
}

int rk_merge_filter_check(const rk_filter *f, const rk_schema *schema,
                          rk_err *err)
{
    if (!f) return 0;
    for (size_t i = 0; i < f->n; i++) {
        const rk_filter_clause *c = &f->clauses[i];
        const rk_attr_def *d = rk_schema_attr(schema, RK_ENTITY_ITEM, c->attr);
        if (!d)
            return rk_err_set(err, RK_EINVAL,
                              "filter clause %zu: no item attribute #%u", i,
                              c->attr);
        if (c->op == RK_FILTER_IN || c->op == RK_FILTER_NOT_IN) {
            if (d->type != RK_ATTR_CATEGORICAL &&
                d->type != RK_ATTR_CATEGORICAL_LIST && d->type != RK_ATTR_TEXT)
                return rk_err_set(err, RK_EINVAL,
                                  "filter on '%s': 'in' needs a categorical, "
                                  "categorical_list or text attribute, not %s",
                                  d->name, rk_attr_type_name(d->type));
            if (c->nvalues && !c->values)
                return rk_err_set(err, RK_EINVAL, "filter on '%s': no values",
                                  d->name);
            for (size_t k = 0; k < c->nvalues; k++)
                if (!c->values[k])
                    return rk_err_set(err, RK_EINVAL,
                                      "filter on '%s': value %zu is NULL",
                                      d->name, k);
        } else if (c->op == RK_FILTER_RANGE) {
            if (d->type != RK_ATTR_NUMERIC && d->type != RK_ATTR_TIMESTAMP)
                return rk_err_set(err, RK_EINVAL,
                                  "filter on '%s': 'range' needs a numeric or "
                                  "timestamp attribute, not %s",
                                  d->name, rk_attr_type_name(d->type));
            if (isnan(c->lo) || isnan(c->hi) || c->lo > c->hi)
                return rk_err_set(err, RK_EINVAL,
                                  "filter on '%s': empty or undefined range",
                                  d->name);
        } else {
            return rk_err_set(err, RK_EINVAL, "filter on '%s': unknown op %d",
                              d->name, (int)c->op);
        }
    }
    return 0;
}

/* ---- store adapters -------------------------------------------------------- */

int rk_merge_reader_keep(void *ctx, uint32_t item)
{
    rk_merge_reader_ctx *c = ctx;
    rk_entity_view v;
    int rc = rk_reader_entity(c->reader, RK_ENTITY_ITEM, item, &v);
    if (rc == RK_ENOTFOUND) {
        memset(&v, 0, sizeof v);
        v.id = item;
    } else if (rc) {
        /* A store error must not serve an item that may be hidden. */
        return 0;
    }
    if (v.flags & (RK_ENTITY_HIDDEN | RK_ENTITY_DELETED)) return 0;
    return rk_merge_filter_match(c->filter, &v);
}

typedef struct blocked_scan {
    uint64_t *bits;
    uint32_t nbits;
} blocked_scan;

static int blocked_entity(void *arg, const rk_entity_view *v)
{
    blocked_scan *b = arg;
    if (v->id < b->nbits && (v->flags & (RK_ENTITY_HIDDEN | RK_ENTITY_DELETED)))
        rk__bit_set(b->bits, v->id);
    return 0;
}

int rk_merge_blocked_from_reader(rk_reader *r, uint64_t **bits,
                                 uint32_t *nbits, rk_err *err)
{
    rk_store_stats st;
    int rc = rk_reader_stats(r, &st);
    if (rc) return rk_err_set(err, rc, "merge: %s", rk_reader_errmsg(r));
    blocked_scan b = {NULL, (uint32_t)st.ids[RK_ENTITY_ITEM]};
    b.bits = rk_calloc((size_t)b.nbits / 64 + 1, sizeof *b.bits);
    if (!b.bits) return rk_err_set(err, RK_ENOMEM, "merge: out of memory");
    if ((rc = rk_reader_scan_entities(r, RK_ENTITY_ITEM, blocked_entity, &b))) {
        rk_free(b.bits);
        return rk_err_set(err, rc, "merge: %s", rk_reader_errmsg(r));
    }
    *bits = b.bits;
    *nbits = b.nbits;
    return 0;
}
