/*
 * cache.c — the online read cache: aggregate records (keyed like
 * RK_KV_AGG) and item/user attribute records, held in process memory so a
 * request's ~1,500 lookups are hash probes instead of LMDB B-tree reads.
 *
 * Bounds: at most max_keys entries and max_bytes of values (both split
 * evenly over the shards); a full shard evicts with CLOCK (second chance:
 * a hit sets the entry's reference bit, the hand clears it and evicts the
 * first entry found clear). Absent keys are cached too, as empty entries.
 *
 * Coherence with the store. Every entry carries the commit number of the
 * reader snapshot it was read from (rk_reader_txn). The store's commit hook
 * calls rk__feat_cache_commit after each commit T with the keys T changed:
 * each is dropped, the key's invalidation stamp (a small table indexed by
 * the key hash, several keys may share a stamp) is raised to T, and then
 * `applied` is published as T. A reader with snapshot V:
 *   - uses the cache only when V <= applied (otherwise its snapshot holds
 *     a commit whose invalidations have not run yet: it reads the store and
 *     fills nothing);
 *   - takes an entry only when its version E <= V: no commit in (E, V]
 *     changed the key, since that would have dropped the entry (V <=
 *     applied) or, if the fill came later, refused it by the stamp;
 *   - fills only when V >= the key's stamp, so a value read from an old
 *     snapshot never lands after the invalidation of a newer commit.
 * So a cached read returns exactly the bytes the reader's snapshot holds.
 *
 * Threads: request threads probe and fill concurrently, the writer thread
 * invalidates; each shard has its own mutex, held for a probe and a copy
 * of the value (a few hundred bytes), never across a store read. A
 * request's candidate keys are probed together (rk__feat_cache_get_many):
 * sorted by shard, each shard's lock is taken once for all its keys, and
 * slots and values are prefetched ahead so their memory misses overlap.
 *
 * Memory: a shard's slot array starts small and doubles (rehashing under
 * the shard's lock) while it holds more than half its slots, up to twice
 * the shard's key bound, so a small deployment pays for the keys it holds.
 * The array pointer and mask are read without the lock only to prefetch:
 * a stale pair at worst prefetches a freed line, which never faults.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "feat_int.h"

#define SHARD_BITS 6
#define NSHARDS (1u << SHARD_BITS)
#define INIT_SLOTS 64u      /* slots per shard before the first growth */

typedef struct fc_ent {
    uint64_t a, b;          /* key; a == 0 && b == 0 marks an empty slot */
    uint64_t ver;           /* commit number of the snapshot read */
    uint32_t len;
    uint8_t ref, present;
    unsigned char *data;    /* rk_malloc'd, len bytes; NULL when len 0 */
} fc_ent;

typedef struct fc_shard {
    pthread_mutex_t mu;
    fc_ent *slot;           /* mask + 1 slots; replaced when it grows */
    uint32_t mask, n, max, hand;
    uint32_t max_mask;      /* the array's final size - 1 */
    uint64_t *stamp;        /* invalidation stamps, stamp_mask + 1 */
    uint32_t stamp_mask;
    uint64_t floor;         /* fills below this commit are refused */
    size_t bytes, max_bytes;
    uint64_t hits, misses, fills, evictions, invalidations, refused;
} fc_shard;

struct feat_cache {
    fc_shard sh[NSHARDS];
    size_t max_val;
    _Atomic uint64_t applied;
    _Atomic uint64_t bypassed;
};

static uint64_t key_hash(fc_key k)
{
    return rk__mix64(k.a ^ rk__mix64(k.b));
}

/* Asks for transparent huge pages under a large slot array: probes land
 * anywhere in it, and with 4 KiB pages nearly every one also misses the
 * TLB. Advice only; failure changes nothing. */
static void advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t pg = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), e = ((uintptr_t)p + n) & ~(pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

int rk__feat_cache_create(feat_cache **out, size_t max_keys, size_t max_bytes,
                          size_t max_val)
{
    *out = NULL;
    feat_cache *c = rk_calloc(1, sizeof *c);
    if (!c) return RK_ENOMEM;
    c->max_val = max_val;
    size_t per = (max_keys + NSHARDS - 1) / NSHARDS;
    if (per < 1) per = 1;
    /* Slots at load factor <= 1/2 keep linear probes short. The arrays
     * start at INIT_SLOTS and grow with the entries (grow()). */
    uint32_t cap = 8;
    while (cap < 2 * per) cap <<= 1;
    uint32_t init = cap < INIT_SLOTS ? cap : INIT_SLOTS;
    for (uint32_t i = 0; i < NSHARDS; i++) {
        fc_shard *s = &c->sh[i];
        pthread_mutex_init(&s->mu, NULL);
        s->slot = rk_calloc(init, sizeof *s->slot);
        s->stamp = rk_calloc(init, sizeof *s->stamp);
        s->mask = init - 1;
        s->max_mask = cap - 1;
        s->stamp_mask = init - 1;
        s->max = (uint32_t)per;
        s->max_bytes = max_bytes / NSHARDS;
        if (!s->slot || !s->stamp) {
            rk__feat_cache_destroy(c);
            return RK_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void rk__feat_cache_destroy(feat_cache *c)
{
    if (!c) return;
    for (uint32_t i = 0; i < NSHARDS; i++) {
        fc_shard *s = &c->sh[i];
        if (s->slot)
            for (uint32_t j = 0; j <= s->mask; j++) rk_free(s->slot[j].data);
        rk_free(s->slot);
        rk_free(s->stamp);
        pthread_mutex_destroy(&s->mu);
    }
    rk_free(c);
}

static int empty(const fc_ent *e) { return !e->a && !e->b; }

/* Slot of key k in s, or the empty slot ending its probe sequence. */
static uint32_t probe(const fc_shard *s, fc_key k, uint64_t h)
{
    uint32_t i = (uint32_t)h & s->mask;
    while (!empty(&s->slot[i]) && (s->slot[i].a != k.a || s->slot[i].b != k.b))
        i = (i + 1) & s->mask;
    return i;
}

/* Doubles s's slot array and its stamp table. Each new stamp starts as
 * the old stamp its keys mapped to (index & old mask), so no key's stamp
 * goes down. 0 on success; on failure the shard keeps its old arrays. */
static int grow(fc_shard *s)
{
    uint32_t ncap = (s->mask + 1) * 2;
    fc_ent *ns = rk_calloc(ncap, sizeof *ns);
    uint64_t *nt = rk_calloc(ncap, sizeof *nt);
    if (!ns || !nt) {
        rk_free(ns);
        rk_free(nt);
        return RK_ENOMEM;
    }
    if ((size_t)ncap * sizeof *ns >= ((size_t)4 << 20)) advise_huge(ns, (size_t)ncap * sizeof *ns);
    for (uint32_t i = 0; i < ncap; i++) nt[i] = s->stamp[i & s->stamp_mask];
    for (uint32_t j = 0; j <= s->mask; j++) {
        const fc_ent *e = &s->slot[j];
        if (empty(e)) continue;
        uint32_t i = (uint32_t)key_hash((fc_key){e->a, e->b}) & (ncap - 1);
        while (!empty(&ns[i])) i = (i + 1) & (ncap - 1);
        ns[i] = *e;
    }
    rk_free(s->slot);
    rk_free(s->stamp);
    /* Published with atomic stores for the lock-free prefetch. */
    __atomic_store_n(&s->slot, ns, __ATOMIC_RELAXED);
    __atomic_store_n(&s->mask, ncap - 1, __ATOMIC_RELAXED);
    s->stamp = nt;
    s->stamp_mask = ncap - 1;
    s->hand = 0;
    return 0;
}

/* Frees slot i's value and closes the gap by backward shift, so probes
 * never need tombstones. */
static void remove_at(fc_shard *s, uint32_t i)
{
    fc_ent *e = &s->slot[i];
    s->bytes -= e->len;
    rk_free(e->data);
    memset(e, 0, sizeof *e);
    s->n--;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        fc_ent *x = &s->slot[j];
        if (empty(x)) break;
        uint32_t home = (uint32_t)key_hash((fc_key){x->a, x->b}) & s->mask;
        /* x may move to i when i lies cyclically in [home, j). */
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slot[i] = *x;
            memset(x, 0, sizeof *x);
            i = j;
        }
    }
}

/* CLOCK: clears reference bits until an unreferenced entry comes by. */
static void evict_one(fc_shard *s)
{
    for (uint32_t steps = 0; s->n && steps <= 2 * (s->mask + 1); steps++) {
        uint32_t i = s->hand;
        fc_ent *e = &s->slot[i];
        if (empty(e)) {
            s->hand = (i + 1) & s->mask;
        } else if (e->ref) {
            e->ref = 0;
            s->hand = (i + 1) & s->mask;
        } else {
            /* The backward shift may pull a later entry into i: leave the
             * hand here so it is looked at. */
            remove_at(s, i);
            s->evictions++;
            return;
        }
    }
}

static fc_shard *shard_of(feat_cache *c, uint64_t h)
{
    return &c->sh[h >> (64 - SHARD_BITS)];
}

/* Prefetches the home slot of hash h without the lock: the array may be
 * replaced meanwhile (see the file comment), and a prefetch of a stale
 * address never faults. */
static void prefetch_home(feat_cache *c, uint64_t h)
{
    fc_shard *s = shard_of(c, h);
    fc_ent *slot = __atomic_load_n(&s->slot, __ATOMIC_RELAXED);
    uint32_t mask = __atomic_load_n(&s->mask, __ATOMIC_RELAXED);
    __builtin_prefetch(&slot[(uint32_t)h & mask]);
}

void rk__feat_cache_prefetch(feat_cache *c, fc_key k)
{
    prefetch_home(c, key_hash(k));
}

int rk__feat_cache_get(feat_cache *c, fc_key k, uint64_t ver, void *buf,
                       size_t cap, size_t *len)
{
    if (ver > atomic_load_explicit(&c->applied, memory_order_acquire)) {
        atomic_fetch_add_explicit(&c->bypassed, 1, memory_order_relaxed);
        return FC_BYPASS;
    }
    uint64_t h = key_hash(k);
    fc_shard *s = shard_of(c, h);
    int rc = FC_MISS;
    pthread_mutex_lock(&s->mu);
    fc_ent *e = &s->slot[probe(s, k, h)];
    if (!empty(e) && e->ver <= ver && e->len <= cap) {
        if (e->len) memcpy(buf, e->data, e->len);
        *len = e->len;
        e->ref = 1;
        rc = e->present ? FC_HIT : FC_ABSENT;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Distances, in keys, of the two prefetch stages of a batch: the home
 * slot PF_SLOT keys ahead, then (once it has arrived, and under the
 * shard's lock so the entry is stable) the value PF_VAL keys ahead. */
#define PF_SLOT 16
#define PF_VAL 6

void rk__feat_cache_get_many(feat_cache *c, uint64_t ver, fc_get *q, size_t n,
                             rk_arena *arena)
{
    if (!n) return;
    if (ver > atomic_load_explicit(&c->applied, memory_order_acquire)) {
        size_t live = 0;
        for (size_t i = 0; i < n; i++)
            if (q[i].rc == FC_MISS) {
                q[i].rc = FC_BYPASS;
                live++;
            }
        atomic_fetch_add_explicit(&c->bypassed, live, memory_order_relaxed);
        return;
    }
    /* Counting sort of the live queries by shard. */
    uint32_t cnt[NSHARDS + 1];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++)
        if (q[i].rc == FC_MISS) {
            q[i].h = key_hash(q[i].k);
            cnt[(q[i].h >> (64 - SHARD_BITS)) + 1]++;
        }
    for (uint32_t i = 0; i < NSHARDS; i++) cnt[i + 1] += cnt[i];
    size_t m = cnt[NSHARDS];
    uint32_t *ord = rk_arena_alloc(arena, (m ? m : 1) * sizeof *ord);
    if (!ord) return; /* every query stays a miss */
    uint32_t pos[NSHARDS];
    memcpy(pos, cnt, sizeof pos);
    for (size_t i = 0; i < n; i++)
        if (q[i].rc == FC_MISS) ord[pos[q[i].h >> (64 - SHARD_BITS)]++] = (uint32_t)i;
    for (size_t j = 0; j < m && j < PF_SLOT; j++) prefetch_home(c, q[ord[j]].h);
    for (uint32_t si = 0; si < NSHARDS; si++) {
        size_t j0 = cnt[si], j1 = cnt[si + 1];
        if (j0 == j1) continue;
        fc_shard *s = &c->sh[si];
        pthread_mutex_lock(&s->mu);
        for (size_t j = j0; j < j1; j++) {
            if (j + PF_SLOT < m) prefetch_home(c, q[ord[j + PF_SLOT]].h);
            if (j + PF_VAL < j1) {
                /* Same shard, lock held: the home slot is stable. */
                const fc_get *x = &q[ord[j + PF_VAL]];
                const fc_ent *e = &s->slot[(uint32_t)x->h & s->mask];
                if (e->a == x->k.a && e->b == x->k.b && e->data) {
                    __builtin_prefetch(e->data);
                    if (e->len > 64) __builtin_prefetch(e->data + 64);
                }
            }
            fc_get *g = &q[ord[j]];
            fc_ent *e = &s->slot[probe(s, g->k, g->h)];
            if (!empty(e) && e->ver <= ver) {
                unsigned char *d = rk_arena_alloc(arena, e->len);
                if (!d) {
                    s->misses++;
                    continue;
                }
                if (e->len) memcpy(d, e->data, e->len);
                g->val = d;
                g->len = e->len;
                g->rc = e->present ? FC_HIT : FC_ABSENT;
                e->ref = 1;
                s->hits++;
            } else {
                s->misses++;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

void rk__feat_cache_fill(feat_cache *c, fc_key k, uint64_t ver, const void *val,
                         size_t len, int present)
{
    if (len > c->max_val) return;
    if (ver > atomic_load_explicit(&c->applied, memory_order_acquire)) return;
    uint64_t h = key_hash(k);
    fc_shard *s = shard_of(c, h);
    /* Copy outside the lock; most fills succeed. */
    unsigned char *d = len ? rk_malloc(len) : NULL;
    if (len && !d) return;
    if (len) memcpy(d, val, len);
    pthread_mutex_lock(&s->mu);
    if (ver < s->floor || ver < s->stamp[h & s->stamp_mask]) {
        s->refused++;
        pthread_mutex_unlock(&s->mu);
        rk_free(d);
        return;
    }
    uint32_t i = probe(s, k, h);
    if (!empty(&s->slot[i])) {
        /* Present from another thread's fill: keep the older version, which
         * serves more snapshots (both hold the same bytes). */
        if (s->slot[i].ver > ver) {
            s->bytes -= s->slot[i].len;
            rk_free(s->slot[i].data);
            s->slot[i].data = d;
            s->slot[i].len = (uint32_t)len;
            s->slot[i].ver = ver;
            s->bytes += len;
            d = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        rk_free(d);
        return;
    }
    if (s->n >= s->max || s->bytes + len > s->max_bytes) {
        while (s->n && (s->n >= s->max || s->bytes + len > s->max_bytes)) evict_one(s);
        if (s->bytes + len > s->max_bytes) {
            pthread_mutex_unlock(&s->mu);
            rk_free(d);
            return;
        }
        i = probe(s, k, h); /* eviction moved entries */
    }
    if (2 * (s->n + 1) > s->mask + 1 && s->mask < s->max_mask) {
        /* Over half full: grow. Without memory the shard stays as it is
         * and the fill is dropped once the array is 3/4 full. */
        if (!grow(s)) {
            i = probe(s, k, h);
        } else if (4 * (s->n + 1) > 3 * (s->mask + 1)) {
            pthread_mutex_unlock(&s->mu);
            rk_free(d);
            return;
        }
    }
    fc_ent *e = &s->slot[i];
    e->a = k.a;
    e->b = k.b;
    e->ver = ver;
    e->len = (uint32_t)len;
    e->ref = 0;
    e->present = (uint8_t)(present != 0);
    e->data = d;
    s->n++;
    s->bytes += len;
    s->fills++;
    pthread_mutex_unlock(&s->mu);
}

static void invalidate(feat_cache *c, fc_key k, uint64_t txn)
{
    uint64_t h = key_hash(k);
    fc_shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    uint64_t *st = &s->stamp[h & s->stamp_mask];
    if (*st < txn) *st = txn;
    uint32_t i = probe(s, k, h);
    if (!empty(&s->slot[i])) {
        remove_at(s, i);
        s->invalidations++;
    }
    pthread_mutex_unlock(&s->mu);
}

fc_key rk__feat_cache_entity_key(uint8_t entity, const void *id, size_t len)
{
    fc_key k;
    k.a = rk_hash64(id, len, 0x656e746974793161ull + entity);
    k.b = rk_hash64(id, len, 0x656e746974793262ull + entity) | 1; /* never empty */
    return k;
}

void rk__feat_cache_commit(feat_cache *c, uint64_t txn,
                           const rk_commit_change *ch, size_t n)
{
    if (!ch && txn > atomic_load_explicit(&c->applied, memory_order_relaxed)) {
        /* Unknown changes (or the first call): drop everything and refuse
         * fills from snapshots before txn. The first call finds the cache
         * empty. */
        for (uint32_t i = 0; i < NSHARDS; i++) {
            fc_shard *s = &c->sh[i];
            pthread_mutex_lock(&s->mu);
            for (uint32_t j = 0; j <= s->mask; j++)
                if (!empty(&s->slot[j])) {
                    rk_free(s->slot[j].data);
                    memset(&s->slot[j], 0, sizeof s->slot[j]);
                }
            s->n = 0;
            s->bytes = 0;
            s->floor = txn;
            pthread_mutex_unlock(&s->mu);
        }
    }
    for (size_t i = 0; ch && i < n; i++) {
        const rk_commit_change *x = &ch[i];
        const unsigned char *p = x->key;
        if (x->kind == RK_CHANGE_KV && x->table == RK_KV_AGG && x->len == FEAT_KEY_LEN &&
            p[0] == 'A')
            invalidate(c, (fc_key){rk__rd64(p + 1), rk__rd64(p + 9)}, txn);
        else if (x->kind == RK_CHANGE_ENTITY)
            invalidate(c, rk__feat_cache_entity_key(x->entity, x->key, x->len), txn);
    }
    atomic_store_explicit(&c->applied, txn, memory_order_release);
}

void rk__feat_cache_stats(feat_cache *c, rk_feat_cache_stats *o)
{
    memset(o, 0, sizeof *o);
    if (!c) return;
    for (uint32_t i = 0; i < NSHARDS; i++) {
        fc_shard *s = &c->sh[i];
        pthread_mutex_lock(&s->mu);
        o->entries += s->n;
        o->max_entries += s->max;
        o->value_bytes += s->bytes;
        o->max_value_bytes += s->max_bytes;
        o->bytes += s->bytes + (size_t)(s->mask + 1) * sizeof *s->slot +
                    (size_t)(s->stamp_mask + 1) * sizeof *s->stamp + (size_t)s->n * 16;
        o->hits += s->hits;
        o->misses += s->misses;
        o->fills += s->fills;
        o->evictions += s->evictions;
        o->invalidations += s->invalidations;
        o->refused += s->refused;
        pthread_mutex_unlock(&s->mu);
    }
    o->bypassed = atomic_load_explicit(&c->bypassed, memory_order_relaxed);
    o->applied = atomic_load_explicit(&c->applied, memory_order_acquire);
}
