/*
 * agg.c — aggregate state: record layout, the merge math (one function for
 * the store's merge and the replay), the read math (one function for
 * online and offline computation), admission, the store merge function,
 * rk_feat_batch_event and the TTL sweep.
 *
 * Record (little-endian, g->rec_size bytes):
 *   header  u8 version 1, u8 0, u16 nslots, u32 rec_size, i64 newest ts
 *   slot    i64 last event ts (INT64_MIN = never), then
 *           decayed sums: f64 v[nch], each decayed to `last`; or
 *           per window: i64 head bucket (INT64_MIN = none),
 *                       f64 count[nch][nbuck], bucket b at b mod nbuck.
 * Operand: u8 version 1, u8 op (1 update, 2 expire), u16 n, i64 ts, then n
 * times u16 slot, u8 channel, u8 0, f64 weight.
 *
 * Determinism: the new record is a pure function of the old record, the
 * operand and (with admission) the sketch, which itself only depends on
 * the sequence of ops it saw. Decay is exp2 of an exact ratio, so the
 * same events in the same order give the same bits online and in replay.
 */
#include <math.h>
#include <stdatomic.h>

#include "feat_int.h"

/* Key hashes run several times per candidate of every request (its id,
 * its [item] key, its other aggregate keys): XXH3 is inlined here, the
 * same function rk_hash64 calls (XXH3_64bits_withSeed, bit for bit),
 * without the call into the shared library, and with the length known at
 * compile time for the one-part and two-part keys. */
#define XXH_INLINE_ALL
#include <xxhash.h>

static const unsigned char no_bytes[1];

#define NEVER INT64_MIN
#define OP_UPDATE 1
#define OP_EXPIRE 2
#define OPERAND_HDR 12
#define OPERAND_UPD 12

struct feat_online {
    const rk_feat_spec *spec;
    feat_sketch sk;
    _Atomic uint64_t merges, created, refused, unknown, expired;
};

/* ---- keys --------------------------------------------------------------- */

uint64_t rk__feat_part_hash(uint8_t kind, const void *p, size_t n)
{
    static const uint64_t seeds[] = {0x7573657231ull, 0x6974656d31ull,
                                     0x6174747231ull, 0x63747831ull};
    return XXH3_64bits_withSeed(n ? p : no_bytes, n, seeds[kind & 3]);
}

uint64_t rk__feat_agg_hash(const agroup *g, const uint64_t *parts)
{
    unsigned char buf[8 * FEAT_MAX_PARTS];
    /* One case per length: a loop here compiles to a `rep movs`, slower
     * than the hash itself. */
    switch (g->nparts) {
    case 1:
        rk__le64(buf, parts[0]);
        return XXH3_64bits_withSeed(buf, 8, g->layout);
    case 2:
        rk__le64(buf, parts[0]);
        rk__le64(buf + 8, parts[1]);
        return XXH3_64bits_withSeed(buf, 16, g->layout);
    default:
        for (uint32_t i = 0; i < g->nparts; i++) rk__le64(buf + 8 * i, parts[i]);
        return XXH3_64bits_withSeed(g->nparts ? buf : no_bytes, 8u * g->nparts, g->layout);
    }
}

uint64_t rk__feat_item_key_hash(uint64_t layout, uint64_t ih)
{
    unsigned char buf[8];
    rk__le64(buf, ih);
    return XXH3_64bits_withSeed(buf, 8, layout);
}

void rk__feat_agg_key(const agroup *g, const uint64_t *parts,
                      unsigned char key[FEAT_KEY_LEN])
{
    key[0] = 'A';
    rk__le64(key + 1, g->layout);
    rk__le64(key + 9, rk__feat_agg_hash(g, parts));
}

int32_t rk__feat_item_group(const rk_feat_spec *s)
{
    for (uint32_t i = 0; i < s->ngroups; i++)
        if (s->g[i].nparts == 1 && s->g[i].part[0].kind == KP_ITEM) return (int32_t)i;
    return -1;
}

int32_t rk__feat_item_ctx_group(const rk_feat_spec *s)
{
    for (uint32_t i = 0; i < s->ngroups; i++) {
        const agroup *g = &s->g[i];
        if (g->nparts != 2) continue;
        uint8_t a = g->part[0].kind, b = g->part[1].kind;
        if ((a == KP_ITEM && b == KP_CTX) || (a == KP_CTX && b == KP_ITEM)) return (int32_t)i;
    }
    return -1;
}

const agroup *rk__feat_group_by_layout(const rk_feat_spec *s, uint64_t lay)
{
    for (uint32_t i = 0; i < s->ngroups; i++)
        if (s->g[i].layout == lay) return &s->g[i];
    return NULL;
}

/* ---- admission sketch ----------------------------------------------------- */

int rk__feat_sketch_init(feat_sketch *k, const rk_feat_spec *s)
{
    memset(k, 0, sizeof *k);
    k->admit = s->admit_after;
    if (s->admit_after <= 1) return 0;
    k->width = s->sketch_width;
    k->depth = s->sketch_depth;
    k->c = rk_calloc((size_t)k->width * k->depth, sizeof *k->c);
    return k->c ? 0 : RK_ENOMEM;
}

void rk__feat_sketch_free(feat_sketch *k)
{
    rk_free(k->c);
    memset(k, 0, sizeof *k);
}

/* Counts one sighting of h with conservative update (only the minimal
 * counters grow, which keeps over-estimates low) and returns the estimate.
 * Every 8 x width sightings all counters halve, so keys seen long ago
 * fade instead of saturating the sketch. */
static uint32_t sketch_add(feat_sketch *k, uint64_t h)
{
    uint32_t idx[8], min = UINT32_MAX;
    for (uint32_t d = 0; d < k->depth; d++) {
        idx[d] = d * k->width +
                 ((uint32_t)rk__mix64(h + d * 0x9e3779b97f4a7c15ull) & (k->width - 1));
        if (k->c[idx[d]] < min) min = k->c[idx[d]];
    }
    for (uint32_t d = 0; d < k->depth; d++)
        if (k->c[idx[d]] == min && min < UINT32_MAX) k->c[idx[d]]++;
    if (++k->incs >= 8ull * k->width) {
        for (size_t i = 0; i < (size_t)k->width * k->depth; i++) k->c[i] >>= 1;
        k->incs = 0;
    }
    return min + 1;
}

/* ---- merge and read math ---------------------------------------------------- */

static int64_t rdi(const unsigned char *p) { return (int64_t)rk__rd64(p); }
static void wri(unsigned char *p, int64_t v) { rk__le64(p, (uint64_t)v); }

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floormod(int64_t a, int64_t b)
{
    return a - floordiv(a, b) * b;
}

/* A record is usable when its header matches the group's layout. */
static int rec_ok(const agroup *g, const unsigned char *rec, size_t len)
{
    return rec && len == g->rec_size && rec[0] == 1 &&
           (rec[2] | rec[3] << 8) == (int)g->nslots &&
           (uint32_t)(rec[4] | rec[5] << 8 | rec[6] << 16 | (uint32_t)rec[7] << 24) ==
               g->rec_size;
}

static int expired(const rk_feat_spec *s, const unsigned char *rec, int64_t t)
{
    if (!s->ttl_ms) return 0;
    int64_t last = rdi(rec + 8);
    return t > last && (uint64_t)t - (uint64_t)last > (uint64_t)s->ttl_ms;
}

static void rec_init(const agroup *g, unsigned char *out)
{
    memset(out, 0, g->rec_size);
    out[0] = 1;
    out[2] = (unsigned char)g->nslots;
    out[3] = (unsigned char)(g->nslots >> 8);
    for (int i = 0; i < 4; i++) out[4 + i] = (unsigned char)(g->rec_size >> (8 * i));
    wri(out + 8, NEVER);
    for (uint32_t i = 0; i < g->nslots; i++) {
        const aslot *sl = &g->slot[i];
        unsigned char *p = out + sl->off;
        wri(p, NEVER);
        for (uint32_t w = 0; w < sl->nwin; w++)
            wri(p + 8 + (size_t)w * (8 + 8u * sl->nch * sl->nbuck), NEVER);
    }
}

static double decay(double hl, int64_t dt)
{
    return hl > 0 && dt > 0 ? exp2(-(double)dt / hl) : 1.0;
}

static void slot_apply(const aslot *sl, unsigned char *p, int64_t ts, uint8_t ch,
                       double w)
{
    int64_t last = rdi(p);
    if (sl->nwin == 0) {
        if (sl->nch == 0) {
            if (last == NEVER || ts > last) wri(p, ts);
            return;
        }
        unsigned char *v = p + 8;
        if (last == NEVER) {
            wri(p, ts);
        } else if (ts >= last) {
            /* Bring every channel to the new time first, so the slot's
             * channels always share one reference time. */
            double f = decay(sl->half_life_ms, ts - last);
            if (f != 1.0)
                for (uint32_t c = 0; c < sl->nch; c++)
                    rk__lef64(v + 8 * c, rk__rdf64(v + 8 * c) * f);
            wri(p, ts);
        } else {
            /* Out of order: the event's weight as it would have decayed
             * by now. */
            w *= decay(sl->half_life_ms, last - ts);
        }
        rk__lef64(v + 8 * ch, rk__rdf64(v + 8 * ch) + w);
        return;
    }
    if (last == NEVER || ts > last) wri(p, ts);
    unsigned char *q = p + 8;
    for (uint32_t wi = 0; wi < sl->nwin; wi++, q += 8 + 8u * sl->nch * sl->nbuck) {
        int64_t b = floordiv(ts, sl->width[wi]), head = rdi(q);
        unsigned char *cnt = q + 8;
        if (head == NEVER) {
            wri(q, b);
        } else if (b > head) {
            /* Advance the ring: buckets between the old head and b are
             * emptied before they are reused. */
            if (b - head >= sl->nbuck) {
                memset(cnt, 0, 8u * sl->nch * sl->nbuck);
            } else {
                for (int64_t x = head + 1; x <= b; x++)
                    for (uint32_t c = 0; c < sl->nch; c++)
                        rk__lef64(cnt + 8 * (c * sl->nbuck + floormod(x, sl->nbuck)), 0.0);
            }
            wri(q, b);
        } else if (b <= head - sl->nbuck) {
            continue; /* older than the ring: every window has passed it */
        }
        unsigned char *e = cnt + 8 * (ch * sl->nbuck + floormod(b, sl->nbuck));
        rk__lef64(e, rk__rdf64(e) + w);
    }
}

int rk__feat_agg_apply(const rk_feat_spec *s, const agroup *g,
                       feat_sketch *k, uint64_t keyhash,
                       const unsigned char *old, size_t oldlen, int64_t ts,
                       const agg_upd *u, size_t nu, unsigned char *out,
                       int *created)
{
    *created = 0;
    int present = rec_ok(g, old, oldlen) && !expired(s, old, ts);
    if (!present) {
        if (k && k->admit > 1 && k->c && sketch_add(k, keyhash ^ g->layout) < k->admit)
            return 1;
        rec_init(g, out);
        *created = 1;
    } else if (out != old) {
        memcpy(out, old, g->rec_size);
    }
    int64_t newest = rdi(out + 8);
    if (newest == NEVER || ts > newest) wri(out + 8, ts);
    for (size_t i = 0; i < nu; i++) {
        const aslot *sl = &g->slot[u[i].slot];
        slot_apply(sl, out + sl->off, ts, u[i].ch, u[i].w);
    }
    return 0;
}

/* Sum of a window's buckets that are inside (t - window, t] at bucket
 * granularity and still held by the ring. */
static double window_sum(const aslot *sl, const unsigned char *q, uint32_t wi,
                         uint32_t ch, int64_t t)
{
    int64_t head = rdi(q);
    if (head == NEVER) return 0;
    int64_t cur = floordiv(t, sl->width[wi]);
    int64_t lo = cur - sl->nbuck + 1, hi = cur;
    if (head - sl->nbuck + 1 > lo) lo = head - sl->nbuck + 1;
    if (head < hi) hi = head;
    double sum = 0;
    if (lo > hi) return 0;
    /* One division for the first bucket, then step around the ring: the
     * same buckets added in the same order as b mod nbuck for each b. */
    const unsigned char *row = q + 8 + 8u * ch * sl->nbuck;
    uint32_t idx = (uint32_t)floormod(lo, sl->nbuck);
    for (int64_t b = lo; b <= hi; b++) {
        sum += rk__rdf64(row + 8u * idx);
        if (++idx == sl->nbuck) idx = 0;
    }
    return sum;
}

static void channel_values(const aslot *sl, const unsigned char *p, int64_t t,
                           uint32_t ch, double *out)
{
    if (sl->nwin == 0) {
        int64_t last = rdi(p);
        double v = last == NEVER ? 0 : rk__rdf64(p + 8 + 8 * ch);
        out[0] = last == NEVER ? 0 : v * decay(sl->half_life_ms, t - last);
        return;
    }
    const unsigned char *q = p + 8;
    for (uint32_t wi = 0; wi < sl->nwin; wi++, q += 8 + 8u * sl->nch * sl->nbuck)
        out[wi] = window_sum(sl, q, wi, ch, t);
}

void rk__feat_agg_read(const rk_feat_spec *s, const agroup *g,
                       const aslot *sl, const feat *f,
                       const unsigned char *rec, size_t len, int64_t t,
                       double *raw)
{
    int ok = rec_ok(g, rec, len) && !expired(s, rec, t);
    const unsigned char *p = ok ? rec + sl->off : NULL;
    uint32_t nout = sl->nwin ? sl->nwin : 1;
    if (f->kind == FK_RECENCY) {
        int64_t last = p ? rdi(p) : NEVER;
        raw[0] = last == NEVER ? NAN : (t > last ? (double)(t - last) : 0.0) / f->unit_ms;
        return;
    }
    if (f->kind == FK_COUNTER) {
        if (!p)
            for (uint32_t k = 0; k < nout; k++) raw[k] = 0;
        else
            channel_values(sl, p, t, 0, raw);
        return;
    }
    double num[FEAT_MAX_WIN], den[FEAT_MAX_WIN];
    if (!p) {
        for (uint32_t k = 0; k < nout; k++) num[k] = den[k] = 0;
    } else {
        channel_values(sl, p, t, 0, num);
        channel_values(sl, p, t, 1, den);
    }
    for (uint32_t k = 0; k < nout; k++) {
        double d = den[k] + f->alpha + f->beta;
        raw[k] = d > 0 ? (num[k] + f->alpha) / d : NAN;
    }
}

/* ---- event -> updates ------------------------------------------------------- */

int rk__feat_evops_init(feat_evops *e, const rk_feat_spec *s)
{
    uint32_t maxr = 0;
    for (uint32_t t = 0; t < s->ntypes; t++)
        if (s->nroute[t] > maxr) maxr = s->nroute[t];
    e->ngroups = s->ngroups;
    e->cap = maxr;
    e->nupd = 0;
    if (s->ngroups <= EVOPS_INLINE_GROUPS && maxr <= EVOPS_INLINE_UPD) {
        e->heap = 0;
        e->state = e->st_in;
        e->parts = e->parts_in;
        e->ug = e->ug_in;
        e->upd = e->upd_in;
        return 0;
    }
    e->heap = 1;
    e->state = rk_malloc(s->ngroups ? s->ngroups : 1);
    e->parts = rk_malloc((s->ngroups ? s->ngroups : 1) * sizeof *e->parts);
    e->ug = rk_malloc((maxr ? maxr : 1) * sizeof *e->ug);
    e->upd = rk_malloc((maxr ? maxr : 1) * sizeof *e->upd);
    if (!e->state || !e->parts || !e->ug || !e->upd) {
        rk__feat_evops_free(e);
        return RK_ENOMEM;
    }
    return 0;
}

void rk__feat_evops_free(feat_evops *e)
{
    if (e->heap) {
        rk_free(e->state);
        rk_free(e->parts);
        rk_free(e->ug);
        rk_free(e->upd);
    }
    e->heap = 0;
    e->state = NULL;
}

json_t *rk__feat_json_parse(const char *p, size_t n)
{
    if (!p || !n) return NULL;
    json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int rk__feat_json_str(const json_t *v, char buf[48], const char **p, size_t *n)
{
    if (json_is_string(v)) {
        *p = json_string_value(v);
        *n = json_string_length(v);
        return 0;
    }
    int k;
    if (json_is_integer(v))
        k = snprintf(buf, 48, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        k = snprintf(buf, 48, "%.17g", json_real_value(v));
    else if (json_is_true(v))
        k = snprintf(buf, 48, "true");
    else if (json_is_false(v))
        k = snprintf(buf, 48, "false");
    else
        return -1;
    *p = buf;
    *n = (size_t)k;
    return 0;
}

int rk__feat_event_ops(const rk_feat_spec *s, const feat_event *ev,
                       feat_item_attr_fn item_attr, void *arg,
                       feat_evops *out)
{
    out->nupd = 0;
    if (ev->type >= s->ntypes || s->nroute[ev->type] == 0) return 0;
    memset(out->state, 0, s->ngroups);
    json_t *ctx = NULL;
    int ctx_parsed = 0;
    const route *r = s->routes + s->route0[ev->type];
    for (uint32_t i = 0; i < s->nroute[ev->type]; i++, r++) {
        const agroup *g = &s->g[r->group];
        if (out->state[r->group] == 0) {
            /* First route into this group: derive its key, once. */
            uint8_t st = 1;
            for (uint32_t k = 0; k < g->nparts && st == 1; k++) {
                const kpart *kp = &g->part[k];
                uint64_t *h = &out->parts[r->group][k];
                switch (kp->kind) {
                case KP_USER:
                    if (ev->has_user) *h = ev->uh;
                    else st = 2;
                    break;
                case KP_ITEM:
                    if (ev->has_item) *h = ev->ih;
                    else st = 2;
                    break;
                case KP_ITEM_ATTR:
                    if (!ev->has_item || !item_attr || item_attr(arg, kp->attr, h))
                        st = 2;
                    break;
                case KP_CTX: {
                    if (!ctx_parsed) {
                        ctx = rk__feat_json_parse(ev->ctx, ev->ctx_len);
                        ctx_parsed = 1;
                    }
                    char buf[48];
                    const char *p;
                    size_t n;
                    if (!ctx || rk__feat_json_str(json_object_get(ctx, kp->name), buf,
                                                  &p, &n))
                        st = 2;
                    else
                        *h = rk__feat_part_hash(KP_CTX, p, n);
                    break;
                }
                }
            }
            out->state[r->group] = st;
        }
        if (out->state[r->group] != 1) continue;
        double w = r->wmode == WM_ONE ? 1.0 : r->wmode == WM_TYPE ? r->w : ev->value;
        if (r->wmode == WM_VALUE && (!ev->has_value || !isfinite(ev->value))) continue;
        out->ug[out->nupd] = r->group;
        out->upd[out->nupd].slot = r->slot;
        out->upd[out->nupd].ch = r->ch;
        out->upd[out->nupd].w = w;
        out->nupd++;
    }
    json_decref(ctx);
    return 0;
}

/* ---- the store's merge function ----------------------------------------------- */

static int copy_old(rk_buf *out, const void *old, size_t oldlen)
{
    return old ? rk_buf_append(out, old, oldlen) : 0;
}

static int feat_merge(void *arg, const void *key, size_t klen, const void *old,
                      size_t oldlen, const void *operand, size_t olen, rk_buf *out)
{
    feat_online *on = arg;
    const rk_feat_spec *s = on->spec;
    const unsigned char *k = key, *o = operand;
    atomic_fetch_add_explicit(&on->merges, 1, memory_order_relaxed);
    if (olen < OPERAND_HDR || o[0] != 1) return RK_ECORRUPT;
    uint32_t n = (uint32_t)(o[2] | o[3] << 8);
    int64_t ts = rdi(o + 4);
    if (olen != OPERAND_HDR + (size_t)n * OPERAND_UPD) return RK_ECORRUPT;
    const agroup *g = klen == FEAT_KEY_LEN && k[0] == 'A'
                          ? rk__feat_group_by_layout(s, rk__rd64(k + 1))
                          : NULL;
    if (o[1] == OP_EXPIRE) {
        if (!g || !rec_ok(g, old, oldlen) || expired(s, old, ts)) {
            if (old) atomic_fetch_add_explicit(&on->expired, 1, memory_order_relaxed);
            return 0; /* empty output deletes */
        }
        return copy_old(out, old, oldlen);
    }
    if (o[1] != OP_UPDATE) return RK_ECORRUPT;
    if (!g) {
        /* Written by a spec with other groups: leave the record alone
         * rather than fail every batch committed with it. */
        atomic_fetch_add_explicit(&on->unknown, 1, memory_order_relaxed);
        return copy_old(out, old, oldlen);
    }
    agg_upd u[EVOPS_INLINE_UPD];
    agg_upd *up = n <= EVOPS_INLINE_UPD ? u : rk_malloc(n * sizeof *up);
    if (!up) return RK_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = o + OPERAND_HDR + (size_t)i * OPERAND_UPD;
        up[i].slot = (uint16_t)(e[0] | e[1] << 8);
        up[i].ch = e[2];
        up[i].w = rk__rdf64(e + 4);
        if (up[i].slot >= g->nslots ||
            up[i].ch >= (g->slot[up[i].slot].nch ? g->slot[up[i].slot].nch : 1)) {
            if (up != u) rk_free(up);
            return RK_ECORRUPT;
        }
    }
    int rc = rk_buf_reserve(out, g->rec_size);
    if (rc) {
        if (up != u) rk_free(up);
        return rc;
    }
    int created;
    int refused = rk__feat_agg_apply(s, g, &on->sk, rk__rd64(k + 9), old, oldlen, ts,
                                     up, n, (unsigned char *)out->data, &created);
    if (up != u) rk_free(up);
    if (refused) {
        atomic_fetch_add_explicit(&on->refused, 1, memory_order_relaxed);
        return 0;
    }
    if (created) atomic_fetch_add_explicit(&on->created, 1, memory_order_relaxed);
    out->len = g->rec_size;
    return 0;
}

void rk__feat_online_free(rk_feat_spec *s)
{
    if (!s->cache_shared) rk__feat_cache_destroy(s->cache);
    s->cache = NULL;
    s->cache_shared = 0;
    if (!s->online) return;
    rk__feat_sketch_free(&s->online->sk);
    rk_free(s->online);
    s->online = NULL;
}

static void cache_hook(void *arg, uint64_t txn, const rk_commit_change *ch, size_t n)
{
    rk__feat_cache_commit(arg, txn, ch, n);
}

int rk_feat_attach(rk_feat_spec *spec, rk_store *s, rk_err *err)
{
    if (!spec->online) {
        feat_online *on = rk_calloc(1, sizeof *on);
        if (!on) return rk_err_set(err, RK_ENOMEM, "features: out of memory");
        on->spec = spec;
        if (rk__feat_sketch_init(&on->sk, spec)) {
            rk_free(on);
            return rk_err_set(err, RK_ENOMEM, "features: out of memory for the "
                              "admission sketch");
        }
        spec->online = on;
    }
    int rc = rk_store_set_merge(s, RK_KV_AGG, feat_merge, spec->online);
    if (rc) return rk_err_set(err, rc, "features: cannot attach the merge function");
    if (spec->cache_keys && !spec->cache) {
        /* A value bigger than this is read from the store every time: the
         * largest aggregate record, or an entity record of 16 KiB (with
         * its [item] and [item, context.X] records, in a bundle). */
        int32_t gi = rk__feat_item_group(spec), di = rk__feat_item_ctx_group(spec);
        size_t max_val = 16384 + (gi >= 0 ? 8 + (size_t)spec->g[gi].rec_size : 0) +
                         (gi >= 0 && di >= 0 ? 8 + (size_t)spec->g[di].rec_size : 0);
        for (uint32_t i = 0; i < spec->ngroups; i++)
            if (spec->g[i].rec_size > max_val) max_val = spec->g[i].rec_size;
        if (rk__feat_cache_create(&spec->cache, spec->cache_keys,
                                  (size_t)spec->cache_mb << 20, max_val))
            return rk_err_set(err, RK_ENOMEM, "features: out of memory for the "
                              "read cache");
        if (gi >= 0)
            rk__feat_cache_set_bundle(spec->cache, spec->g[gi].layout,
                                      di >= 0 ? spec->g[di].layout : 0);
    }
    /* Setting the hook publishes the store's current commit to the cache. */
    if (spec->cache) rk_store_set_commit_hook(s, cache_hook, spec->cache);
    return 0;
}

int rk_feat_share_cache(rk_feat_spec *spec, const rk_feat_spec *attached,
                        rk_err *err)
{
    if (!attached->cache)
        return rk_err_set(err, RK_ESTATE, "features: the attached spec has no "
                          "read cache");
    if (spec->cache && !spec->cache_shared)
        return rk_err_set(err, RK_ESTATE, "features: the spec has its own cache");
    /* Cached values are raw records encoded by what the spec reads: the
     * same aggregate groups (layouts) and the same attribute bounds give
     * the same encoding, so the two specs may share entries. */
    int same = spec->ngroups == attached->ngroups &&
               spec->max_user_attr == attached->max_user_attr &&
               spec->max_item_attr == attached->max_item_attr;
    for (uint32_t i = 0; same && i < spec->ngroups; i++)
        same = spec->g[i].layout == attached->g[i].layout;
    if (!same)
        return rk_err_set(err, RK_EINVAL, "features: the specs read different "
                          "aggregates or attributes; the cache cannot be shared");
    spec->cache = attached->cache;
    spec->cache_shared = 1;
    return 0;
}

void rk_feat_detach(rk_feat_spec *spec, rk_store *s)
{
    if (s) {
        rk_store_set_merge(s, RK_KV_AGG, NULL, NULL);
        if (spec->cache) rk_store_set_commit_hook(s, NULL, NULL);
    }
    rk__feat_online_free(spec);
}

void rk_feat_cache_stats_get(const rk_feat_spec *spec, rk_feat_cache_stats *out)
{
    rk__feat_cache_stats(spec->cache, out);
}

void rk_feat_online_stats_get(const rk_feat_spec *spec, rk_feat_online_stats *o)
{
    memset(o, 0, sizeof *o);
    const feat_online *on = spec->online;
    if (!on) return;
    o->merges = atomic_load_explicit(&on->merges, memory_order_relaxed);
    o->created = atomic_load_explicit(&on->created, memory_order_relaxed);
    o->refused = atomic_load_explicit(&on->refused, memory_order_relaxed);
    o->unknown = atomic_load_explicit(&on->unknown, memory_order_relaxed);
    o->expired = atomic_load_explicit(&on->expired, memory_order_relaxed);
    o->sketch_bytes = (size_t)on->sk.width * on->sk.depth * sizeof(uint32_t);
}

/* ---- producers ------------------------------------------------------------------ */

static void put_operand_hdr(unsigned char *p, int op, uint32_t n, int64_t ts)
{
    p[0] = 1;
    p[1] = (unsigned char)op;
    p[2] = (unsigned char)n;
    p[3] = (unsigned char)(n >> 8);
    wri(p + 4, ts);
}

/* The item's attribute values through a reader, the entity read once. */
typedef struct item_attrs {
    rk_reader *r;
    const char *id;
    size_t len;
    int state; /* 0 not read, 1 read, 2 absent */
    rk_entity_view v;
} item_attrs;

static int item_attr_from_reader(void *arg, uint32_t attr, uint64_t *hash)
{
    item_attrs *ia = arg;
    if (ia->state == 0) {
        uint32_t id;
        ia->state = 2;
        if (ia->r && rk_reader_lookup(ia->r, RK_ENTITY_ITEM, ia->id, ia->len, &id) == 0 &&
            rk_reader_entity(ia->r, RK_ENTITY_ITEM, id, &ia->v) == 0)
            ia->state = 1;
    }
    if (ia->state != 1) return -1;
    for (uint32_t i = 0; i < ia->v.nattrs; i++) {
        const rk_attr_val *a = &ia->v.attrs[i];
        if (a->attr == attr && a->type == RK_ATTR_CATEGORICAL) {
            *hash = rk__feat_part_hash(KP_ITEM_ATTR, a->str, a->len);
            return 0;
        }
    }
    return -1;
}

/* Appends the merge ops of ev's updates, one per touched group. */
static int append_merges(const rk_feat_spec *s, rk_batch *b, const feat_evops *e,
                         int64_t ts, rk_err *err)
{
    unsigned char buf[OPERAND_HDR + OPERAND_UPD * EVOPS_INLINE_UPD];
    unsigned char *op = e->nupd <= EVOPS_INLINE_UPD
                            ? buf
                            : rk_malloc(OPERAND_HDR + (size_t)OPERAND_UPD * e->nupd);
    if (!op) return rk_err_set(err, RK_ENOMEM, "features: out of memory");
    int rc = 0;
    for (uint32_t gi = 0; !rc && gi < s->ngroups; gi++) {
        if (e->state[gi] != 1) continue;
        uint32_t n = 0;
        for (uint32_t i = 0; i < e->nupd; i++) {
            if (e->ug[i] != gi) continue;
            unsigned char *q = op + OPERAND_HDR + (size_t)n * OPERAND_UPD;
            q[0] = (unsigned char)e->upd[i].slot;
            q[1] = (unsigned char)(e->upd[i].slot >> 8);
            q[2] = e->upd[i].ch;
            q[3] = 0;
            rk__lef64(q + 4, e->upd[i].w);
            n++;
        }
        if (!n) continue;
        put_operand_hdr(op, OP_UPDATE, n, ts);
        unsigned char key[FEAT_KEY_LEN];
        rk__feat_agg_key(&s->g[gi], e->parts[gi], key);
        rc = rk_batch_kv_merge(b, RK_KV_AGG, key, sizeof key, op,
                               OPERAND_HDR + (size_t)n * OPERAND_UPD, err);
    }
    if (op != buf) rk_free(op);
    return rc;
}

int rk_feat_batch_event(const rk_feat_spec *spec, rk_batch *b,
                        const rk_event_in *ev, rk_reader *r, rk_err *err)
{
    size_t count = rk_batch_count(b), bytes = rk_batch_bytes(b);
    int rc = rk_batch_event(b, ev, err);
    if (rc || !spec->ngroups) return rc;
    uint32_t t;
    for (t = 0; t < spec->ntypes; t++)
        if (!strcmp(spec->type_names[t], ev->type)) break;
    if (t == spec->ntypes || !spec->nroute[t]) return 0;
    /* A resubmitted event the store already holds is dropped by the
     * writer; its merges must not count it a second time. */
    uint64_t seq;
    if (ev->id && r && rk_reader_event_by_id(r, ev->id, strlen(ev->id), &seq) == 0)
        return 0;
    feat_event fe = {0};
    fe.type = t;
    size_t ulen = strlen(ev->user), ilen = strlen(ev->item);
    fe.has_user = 1;
    fe.uh = rk__feat_part_hash(KP_USER, ev->user, ulen);
    fe.has_item = 1;
    fe.ih = rk__feat_part_hash(KP_ITEM, ev->item, ilen);
    fe.ts = ev->ts_ms;
    fe.value = ev->value;
    fe.has_value = (uint8_t)(ev->has_value != 0);
    fe.ctx = ev->context;
    fe.ctx_len = ev->context ? (ev->context_len ? ev->context_len : strlen(ev->context))
                             : 0;
    item_attrs ia = {r, ev->item, ilen, 0, {0}};
    feat_evops e;
    if ((rc = rk__feat_evops_init(&e, spec))) {
        rk_batch_rewind(b, count, bytes);
        return rk_err_set(err, rc, "features: out of memory");
    }
    rc = rk__feat_event_ops(spec, &fe, item_attr_from_reader, &ia, &e);
    for (uint32_t gi = 0; !rc && !r && gi < spec->ngroups; gi++)
        if (e.state[gi] && spec->g[gi].uses_item_attr)
            rc = rk_err_set(err, RK_EINVAL, "features: aggregates keyed by item "
                            "attributes need a reader");
    if (!rc) rc = append_merges(spec, b, &e, fe.ts, err);
    rk__feat_evops_free(&e);
    if (rc) rk_batch_rewind(b, count, bytes);
    return rc;
}

/* ---- backfill -------------------------------------------------------------------- */

/* Group state in the store is marked with 'M' + layout -> the last event
 * sequence number the backfill covered, so it runs once per group. */
#define MARK_LEN 9

static void mark_key(const agroup *g, unsigned char key[MARK_LEN])
{
    key[0] = 'M';
    memcpy(key + 1, &g->layout, 8);
}

static int any_record(void *arg, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    *(int *)arg = 1;
    return 1;
}

typedef struct backfill {
    const rk_feat_spec *s;
    rk_store *st;
    rk_reader *r;
    rk_batch *b;
    const uint8_t *need;
    feat_evops e;
    uint64_t events, last_seq;
    rk_err *err;
} backfill;

static int backfill_flush(backfill *w)
{
    if (!rk_batch_count(w->b)) return 0;
    int rc = rk_store_write(w->st, w->b, NULL, w->err);
    rk_batch_clear(w->b);
    return rc;
}

static int backfill_event(void *arg, const rk_event *ev)
{
    backfill *w = arg;
    const rk_feat_spec *s = w->s;
    w->last_seq = ev->seq;
    const rk_event_type_def *td =
        rk_schema_event_type(rk_store_schema(w->st), ev->type);
    if (!td) return 0;
    uint32_t t;
    for (t = 0; t < s->ntypes; t++)
        if (!strcmp(s->type_names[t], td->name)) break;
    if (t == s->ntypes || !s->nroute[t]) return 0;
    const char *u, *it;
    size_t ul, il;
    if (rk_reader_external(w->r, RK_ENTITY_USER, ev->user, &u, &ul) ||
        rk_reader_external(w->r, RK_ENTITY_ITEM, ev->item, &it, &il))
        return 0;
    feat_event fe = {0};
    fe.type = t;
    fe.has_user = 1;
    fe.uh = rk__feat_part_hash(KP_USER, u, ul);
    fe.has_item = 1;
    fe.ih = rk__feat_part_hash(KP_ITEM, it, il);
    fe.ts = ev->ts_ms;
    fe.value = ev->value;
    fe.has_value = (uint8_t)(ev->has_value != 0);
    fe.ctx = ev->context;
    fe.ctx_len = ev->context ? ev->context_len : 0;
    item_attrs ia = {w->r, it, il, 0, {0}};
    int rc = rk__feat_event_ops(s, &fe, item_attr_from_reader, &ia, &w->e);
    for (uint32_t gi = 0; !rc && gi < s->ngroups; gi++)
        if (!w->need[gi]) w->e.state[gi] = 0;
    if (!rc) rc = append_merges(s, w->b, &w->e, fe.ts, w->err);
    w->events++;
    if (!rc && rk_batch_count(w->b) >= 20000) rc = backfill_flush(w);
    return rc;
}

int rk_feat_backfill(const rk_feat_spec *spec, rk_store *s, uint64_t *events,
                     uint32_t *groups, rk_err *err)
{
    if (events) *events = 0;
    if (groups) *groups = 0;
    if (!spec->ngroups) return 0;
    rk_reader *r;
    int rc = rk_store_reader(s, &r, err);
    if (rc) return rc;
    uint8_t *need = rk_calloc(spec->ngroups, 1);
    backfill w = {spec, s, r, NULL, need, {0}, 0, 0, err};
    uint32_t nneed = 0, nmark = 0;
    if (!need) rc = rk_err_set(err, RK_ENOMEM, "backfill: out of memory");
    for (uint32_t gi = 0; !rc && gi < spec->ngroups; gi++) {
        unsigned char mk[MARK_LEN];
        mark_key(&spec->g[gi], mk);
        const void *v;
        size_t vl;
        if (!rk_reader_kv_get(r, RK_KV_AGG, mk, sizeof mk, &v, &vl)) continue;
        /* Unmarked: records already there were merged live (a writer used
         * rk_feat_batch_event from the start), so only mark it. */
        unsigned char pre[9];
        pre[0] = 'A';
        memcpy(pre + 1, &spec->g[gi].layout, 8);
        int found = 0;
        (void)rk_reader_kv_scan(r, RK_KV_AGG, pre, sizeof pre, NULL, 0,
                                any_record, &found);
        need[gi] = (uint8_t)(found ? 2 : 1);
        nmark++;
        if (!found) nneed++;
    }
    if (!rc && nmark) rc = rk_batch_create(&w.b, s, 0);
    if (!rc && nmark) rc = rk__feat_evops_init(&w.e, spec);
    if (!rc && nneed) {
        for (uint32_t gi = 0; gi < spec->ngroups; gi++)
            if (need[gi] == 2) need[gi] = 0;
        rc = rk_reader_scan_events(r, 0, backfill_event, &w);
        if (rc && !err->msg[0])
            rk_err_set(err, rc, "backfill: %s", rk_reader_errmsg(r));
        for (uint32_t gi = 0; gi < spec->ngroups; gi++)
            if (!need[gi]) need[gi] = 2;
    }
    if (!rc && nmark) {
        /* Mark every group checked, in the last write of the backfill. */
        unsigned char v8[8];
        rk_put_u64(v8, w.last_seq);
        for (uint32_t gi = 0; !rc && gi < spec->ngroups; gi++) {
            if (!need[gi]) continue;
            unsigned char mk[MARK_LEN];
            mark_key(&spec->g[gi], mk);
            rc = rk_batch_kv_put(w.b, RK_KV_AGG, mk, sizeof mk, v8, sizeof v8, err);
        }
        if (!rc) rc = backfill_flush(&w);
    }
    if (nmark) rk__feat_evops_free(&w.e);
    rk_batch_destroy(w.b);
    rk_free(need);
    rk_reader_close(r);
    if (!rc && events) *events = w.events;
    if (!rc && groups) *groups = nneed;
    return rc;
}

/* ---- sweep ------------------------------------------------------------------------ */

typedef struct sweep {
    const rk_feat_spec *s;
    rk_store *st;
    rk_batch *b;
    int64_t now;
    unsigned char op[OPERAND_HDR];
    rk_err *err;
    int rc;
} sweep;

static int sweep_flush(sweep *w)
{
    if (!rk_batch_count(w->b)) return 0;
    int rc = rk_store_write(w->st, w->b, NULL, w->err);
    rk_batch_clear(w->b);
    return rc;
}

static int sweep_key(void *arg, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    sweep *w = arg;
    const unsigned char *k = key;
    const agroup *g = klen == FEAT_KEY_LEN ? rk__feat_group_by_layout(w->s, rk__rd64(k + 1))
                                           : NULL;
    if (g && rec_ok(g, val, vlen) && !expired(w->s, val, w->now)) return 0;
    int rc = rk_batch_kv_merge(w->b, RK_KV_AGG, key, klen, w->op, sizeof w->op, w->err);
    if (!rc && rk_batch_count(w->b) >= 10000) rc = sweep_flush(w);
    return w->rc = rc;
}

int rk_feat_sweep(const rk_feat_spec *spec, rk_store *s, int64_t now_ms,
                  uint64_t *deleted, rk_err *err)
{
    if (deleted) *deleted = 0;
    if (!spec->online)
        return rk_err_set(err, RK_ESTATE, "features: sweep needs the spec attached "
                          "(rk_feat_attach)");
    uint64_t before = atomic_load(&spec->online->expired);
    sweep w = {spec, s, NULL, now_ms, {0}, err, 0};
    put_operand_hdr(w.op, OP_EXPIRE, 0, now_ms);
    int rc = rk_batch_create(&w.b, s, 0);
    if (rc) return rk_err_set(err, rc, "features: out of memory");
    rk_reader *r;
    if ((rc = rk_store_reader(s, &r, err))) {
        rk_batch_destroy(w.b);
        return rc;
    }
    rc = rk_reader_kv_scan(r, RK_KV_AGG, "A", 1, NULL, 0, sweep_key, &w);
    if (rc && !w.rc) rk_err_set(err, rc, "features: sweep: %s", rk_reader_errmsg(r));
    rk_reader_close(r);
    if (!rc) rc = sweep_flush(&w);
    rk_batch_destroy(w.b);
    if (deleted) *deleted = atomic_load(&spec->online->expired) - before;
    return rc;
}
