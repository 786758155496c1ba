/*
 * cache.c — the online read cache: aggregate records (keyed like
 * RK_KV_AGG) and item/user attribute records, held in process memory so a
 * request's ~1,500 lookups are hash probes instead of LMDB B-tree reads.
 *
 * Bounds: at most max_keys entries and max_bytes of values (both split
 * evenly over the shards; values waiting for reclamation count against
 * max_bytes too); a full shard evicts with CLOCK (second chance: a hit
 * sets the entry's reference bit, the hand clears it and evicts the first
 * entry found clear). Absent keys are cached too, as empty entries.
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
 * Bundles (rk__feat_cache_set_bundle) copy records of several keys into one
 * entry. An item bundle (the item's record and its [item] record) has a key
 * the hook derives from either change. A device bundle adds the item's
 * record of an [item, context.X] group and is keyed by that record's key,
 * so the hook drops it on that record's change; an item has one per value
 * of X, which the hook cannot list from a change of the item or of its
 * [item] record, so those raise the item's stamp instead (istamp, indexed
 * by the [item] key's hash word, several items may share one) before
 * `applied` is published, and a device bundle is taken only when its
 * version E is at least that stamp: a change of the item in (E, V] has
 * raised it above E once V <= applied. Fills older than the stamp are
 * refused as well (they could never be taken).
 *
 * Threads. Writers (fills from request threads, invalidations from the
 * store's writer) take the shard's mutex. Readers come in two kinds:
 *   - pinned readers (rk__feat_cache_pin, one per request) probe without
 *     any lock and borrow values in place. Each slot is a 64-byte line with
 *     a sequence number, odd while a writer changes it (a seqlock): a
 *     reader copies the slot's words and takes them only when the number
 *     was even and unchanged. Values are immutable once published; a value
 *     (or a slot array replaced by growth) that leaves the table is
 *     retired, not freed, and freed only once no pinned reader can still
 *     hold it (epochs below). A probe racing a writer can at worst miss (an
 *     entry being shifted back over its gap), which only costs a store
 *     read; it never returns bytes the snapshot does not hold, since the
 *     slot's key, version and value pointer are read as one.
 *   - unpinned readers (every reader slot busy) take the shard's mutex and
 *     copy the value out (rk__feat_cache_get, rk__feat_cache_get_many).
 *
 * Epochs. A global counter; a pinned reader announces the counter's value
 * in its reader slot before its first probe (then a full fence) and clears
 * it when the request ends. Retiring takes a tag R with fetch-and-add on
 * the counter after unlinking; the block is freed when every announced
 * epoch is 0 or above R: a reader that read the counter after the
 * increment also sees the unlink, and one whose announcement a reclaimer
 * missed was ordered after the reclaimer's fence, so it sees the unlink
 * too. A reader that stays pinned holds back frees only, never writers;
 * fills stop when retired bytes fill the shard's byte bound.
 *
 * Memory: a shard's slot array starts small and doubles (rehashing under
 * the shard's lock) while it holds more than half its slots, up to twice
 * the shard's key bound, so a small deployment pays for the keys it holds.
 * A table carries its own mask, so a reader always sees an array and its
 * size together. Tables of 2 MiB and more sit on huge pages (tab_new); 16
 * shards rather than more keep a few hundred thousand keys' tables that
 * large. A grown-out table is freed at once when no reader is pinned.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "feat_int.h"

#define SHARD_BITS 4
#define NSHARDS (1u << SHARD_BITS)
#define INIT_SLOTS 64u      /* slots per shard before the first growth */
#define FC_READERS 64u      /* concurrently pinned readers */
#define RECLAIM_BATCH 64u   /* retired blocks that trigger a reclaim */

/* Relaxed atomic access to words read by lock-free readers. */
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Header of every block a reader may borrow: values and slot tables. */
typedef struct fc_blk {
    struct fc_blk *next;    /* retire list, oldest first */
    uint64_t tag;           /* epoch counter when retired */
    size_t bytes;           /* accounted size (value bytes or table bytes) */
    uint32_t table;         /* 1: a slot table */
    uint32_t pad;
} fc_blk;

typedef struct fc_ent {
    _Alignas(64) uint32_t seq; /* odd while a writer changes the slot */
    uint32_t len;
    uint64_t a, b;          /* key; a == 0 && b == 0 marks an empty slot */
    uint64_t ver;           /* commit number of the snapshot read */
    unsigned char *data;    /* after an fc_blk; NULL when len 0 */
    uint64_t aux;           /* the filler's word about the value */
    uint8_t ref, present;   /* ref: written by readers, always atomic */
    uint8_t auxst;          /* aux state (fc_get.auxst) */
} fc_ent;

typedef struct fc_tab {
    fc_blk hdr;
    uint32_t mask;
    fc_ent *slot;           /* mask + 1 slots, 64-byte aligned, in this block */
} fc_tab;

typedef struct fc_shard {
    pthread_mutex_t mu;
    fc_tab *tab;            /* replaced when it grows (readers load it) */
    uint32_t n, max, hand;
    uint32_t max_mask;      /* the table's final size - 1 */
    uint64_t *stamp;        /* invalidation stamps, stamp_mask + 1 */
    uint32_t stamp_mask;
    uint64_t floor;         /* fills below this commit are refused */
    size_t bytes, max_bytes;
    fc_blk *rhead, *rtail;  /* retired blocks */
    size_t rbytes, rtab;    /* retired value bytes, retired table bytes */
    uint32_t nretired;
    uint64_t hits, misses, fills, evictions, invalidations, refused;
} fc_shard;

/* A pinned reader's announcement and counters, one line each. */
typedef struct fc_reader {
    _Alignas(64) _Atomic uint64_t epoch; /* 0: free */
    _Atomic uint64_t hits, misses;
} fc_reader;

struct feat_cache {
    fc_reader rd[FC_READERS];
    _Alignas(64) _Atomic uint64_t epoch;
    _Atomic uint64_t applied;
    _Atomic uint64_t bypassed, unpinned;
    void *raw;              /* the allocation (this struct is aligned in it) */
    size_t max_val;
    uint64_t bundle;        /* layout of the [item] group of bundles; 0: none */
    uint64_t dbundle;       /* layout of the [item, context.X] group; 0: none */
    uint64_t *istamp;       /* item stamps (device bundles), imask + 1 */
    uint32_t imask;
    fc_shard sh[NSHARDS];
};

static uint64_t key_hash(fc_key k)
{
    return rk__mix64(k.a ^ rk__mix64(k.b));
}

/* Slot tables of at least HUGE_TAB bytes sit on 2 MiB boundaries under
 * transparent huge pages: probes land anywhere in a table, and with 4 KiB
 * pages nearly every one also misses the TLB (16 tables of 4 MiB span
 * 16,384 pages, ten times what the second-level TLB holds). The bytes
 * before the aligned slots (up to 2 MiB) are counted but never touched. */
#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_TAB HUGE_PAGE

static size_t tab_bytes(uint32_t nslots)
{
    size_t slots = (size_t)nslots * sizeof(fc_ent);
    /* Room to align the slots to a huge page (accounted: the allocator
     * counts it; the pages before the slots are never touched). */
    if (slots >= HUGE_TAB) return sizeof(fc_tab) + HUGE_PAGE + slots;
    return sizeof(fc_tab) + 63 + slots;
}

/* Zeroes slots [p, p + n) of a fresh table. A huge-page table is advised
 * MADV_HUGEPAGE and then dropped with MADV_DONTNEED, which leaves zeroed
 * memory that faults in as huge pages on first touch (a memset would
 * fault it in as 4 KiB pages, and reused heap memory stays in 4 KiB
 * pages). rk_malloc's memory is private anonymous (glibc malloc or the
 * sanitizers' allocator), where MADV_DONTNEED means zero-fill on the next
 * touch; the range lies inside this table's allocation. memset when the
 * advice fails. */
static void tab_zero(void *p, size_t n)
{
#if defined(MADV_HUGEPAGE) && defined(MADV_DONTNEED)
    if (n >= HUGE_TAB && !((uintptr_t)p & (HUGE_PAGE - 1)) && !(n & (HUGE_PAGE - 1))) {
        (void)madvise(p, n, MADV_HUGEPAGE);
        if (!madvise(p, n, MADV_DONTNEED)) return;
    }
#endif
    memset(p, 0, n);
}

/* A zeroed table of nslots (a power of 2) slots, or NULL. */
static fc_tab *tab_new(uint32_t nslots)
{
    size_t n = tab_bytes(nslots), slots = (size_t)nslots * sizeof(fc_ent);
    fc_tab *t = rk_malloc(n);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->hdr.bytes = n;
    t->hdr.table = 1;
    t->mask = nslots - 1;
    uintptr_t al = slots >= HUGE_TAB ? HUGE_PAGE : 64;
    t->slot = (fc_ent *)(((uintptr_t)(t + 1) + al - 1) & ~(al - 1));
    tab_zero(t->slot, slots);
    return t;
}

static unsigned char *blk_data(fc_blk *b) { return (unsigned char *)(b + 1); }
static fc_blk *data_blk(unsigned char *d) { return (fc_blk *)(void *)d - 1; }

int rk__feat_cache_create(feat_cache **out, size_t max_keys, size_t max_bytes,
                          size_t max_val)
{
    *out = NULL;
    void *raw = rk_calloc(1, sizeof(feat_cache) + 63);
    if (!raw) return RK_ENOMEM;
    feat_cache *c = (feat_cache *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    c->raw = raw;
    c->max_val = max_val;
    atomic_store(&c->epoch, 1);
    size_t per = (max_keys + NSHARDS - 1) / NSHARDS;
    if (per < 1) per = 1;
    /* Slots at load factor <= 1/2 keep linear probes short. The tables
     * start at INIT_SLOTS and grow with the entries (grow()). */
    uint32_t cap = 8;
    while (cap < 2 * per) cap <<= 1;
    uint32_t init = cap < INIT_SLOTS ? cap : INIT_SLOTS;
    /* Item stamps: one word per ~16 keys (1 MiB at 2 M keys), so a
     * request's reads of them mostly hit the CPU's caches; items sharing
     * a word only share misses. */
    uint32_t icap = 1024;
    while (icap < max_keys / 16 && icap < (1u << 20)) icap <<= 1;
    c->istamp = rk_calloc(icap, sizeof *c->istamp);
    c->imask = icap - 1;
    if (!c->istamp) {
        rk_free(raw);
        return RK_ENOMEM;
    }
    for (uint32_t i = 0; i < NSHARDS; i++) {
        fc_shard *s = &c->sh[i];
        pthread_mutex_init(&s->mu, NULL);
        s->tab = tab_new(init);
        s->stamp = rk_calloc(init, sizeof *s->stamp);
        s->max_mask = cap - 1;
        s->stamp_mask = init - 1;
        s->max = (uint32_t)per;
        s->max_bytes = max_bytes / NSHARDS;
        if (!s->tab || !s->stamp) {
            rk__feat_cache_destroy(c);
            return RK_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

static void blk_free_list(fc_blk *b)
{
    while (b) {
        fc_blk *x = b->next;
        rk_free(b);
        b = x;
    }
}

void rk__feat_cache_destroy(feat_cache *c)
{
    if (!c) return;
    for (uint32_t i = 0; i < NSHARDS; i++) {
        fc_shard *s = &c->sh[i];
        if (s->tab) {
            for (uint32_t j = 0; j <= s->tab->mask; j++)
                if (s->tab->slot[j].data) rk_free(data_blk(s->tab->slot[j].data));
            rk_free(s->tab);
        }
        blk_free_list(s->rhead);
        rk_free(s->stamp);
        pthread_mutex_destroy(&s->mu);
    }
    rk_free(c->istamp);
    rk_free(c->raw);
}

static int empty(const fc_ent *e) { return !e->a && !e->b; }

/* ---- writers (shard lock held) -------------------------------------------- */

/* Seqlock brackets around a change of slot e. */
static void slot_begin(fc_ent *e)
{
    ST(e->seq, e->seq + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void slot_end(fc_ent *e)
{
    __atomic_store_n(&e->seq, e->seq + 1, __ATOMIC_RELEASE);
}

/* Writes an entry's words into slot e (seq and the reference bit aside). */
static void slot_set(fc_ent *e, uint64_t a, uint64_t b, uint64_t ver, uint32_t len,
                     uint8_t present, unsigned char *data, uint8_t ref, uint64_t aux,
                     uint8_t auxst)
{
    slot_begin(e);
    ST(e->aux, aux);
    ST(e->auxst, auxst);
    ST(e->a, a);
    ST(e->b, b);
    ST(e->ver, ver);
    ST(e->len, len);
    ST(e->present, present);
    ST(e->data, data);
    ST(e->ref, ref);
    slot_end(e);
}

/* Frees the retired blocks no pinned reader can hold any more. */
static void reclaim(feat_cache *c, fc_shard *s)
{
    if (!s->rhead) return;
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < FC_READERS; i++) {
        uint64_t e = atomic_load_explicit(&c->rd[i].epoch, memory_order_relaxed);
        if (e && e < min) min = e;
    }
    while (s->rhead && s->rhead->tag < min) {
        fc_blk *b = s->rhead;
        s->rhead = b->next;
        if (b->table) s->rtab -= b->bytes;
        else s->rbytes -= b->bytes;
        s->nretired--;
        rk_free(b);
    }
    if (!s->rhead) s->rtail = NULL;
}

/* Puts a block that just left the table on the retire list. */
static void retire(feat_cache *c, fc_shard *s, fc_blk *b)
{
    b->next = NULL;
    b->tag = atomic_fetch_add_explicit(&c->epoch, 1, memory_order_seq_cst);
    if (s->rtail) s->rtail->next = b;
    else s->rhead = b;
    s->rtail = b;
    if (b->table) s->rtab += b->bytes;
    else s->rbytes += b->bytes;
    if (++s->nretired >= RECLAIM_BATCH) reclaim(c, s);
}

static void retire_value(feat_cache *c, fc_shard *s, unsigned char *d)
{
    if (d) retire(c, s, data_blk(d));
}

/* Slot of key k in s, or the empty slot ending its probe sequence. */
static uint32_t probe(const fc_shard *s, fc_key k, uint64_t h)
{
    const fc_tab *t = s->tab;
    uint32_t i = (uint32_t)h & t->mask;
    while (!empty(&t->slot[i]) && (t->slot[i].a != k.a || t->slot[i].b != k.b))
        i = (i + 1) & t->mask;
    return i;
}

/* Doubles s's slot table and its stamp table. Each new stamp starts as
 * the old stamp its keys mapped to (index & old mask), so no key's stamp
 * goes down. The old table is retired (readers may be in it). 0 on
 * success; on failure the shard keeps its old tables. */
static int grow(feat_cache *c, fc_shard *s)
{
    fc_tab *o = s->tab;
    uint32_t ncap = (o->mask + 1) * 2;
    fc_tab *nt = tab_new(ncap);
    uint64_t *ns = rk_calloc(ncap, sizeof *ns);
    if (!nt || !ns) {
        rk_free(nt);
        rk_free(ns);
        return RK_ENOMEM;
    }
    for (uint32_t i = 0; i < ncap; i++) ns[i] = s->stamp[i & s->stamp_mask];
    for (uint32_t j = 0; j <= o->mask; j++) {
        const fc_ent *e = &o->slot[j];
        if (empty(e)) continue;
        uint32_t i = (uint32_t)key_hash((fc_key){e->a, e->b}) & (ncap - 1);
        while (!empty(&nt->slot[i])) i = (i + 1) & (ncap - 1);
        fc_ent *x = &nt->slot[i];
        x->a = e->a;
        x->b = e->b;
        x->ver = e->ver;
        x->len = e->len;
        x->present = e->present;
        x->data = e->data;
        x->aux = e->aux;
        x->auxst = e->auxst;
        x->ref = LD(e->ref);
    }
    /* Release: a reader that loads the new table sees its slots. */
    __atomic_store_n(&s->tab, nt, __ATOMIC_RELEASE);
    retire(c, s, &o->hdr);
    /* A table is large: free it now unless a pinned reader may hold it,
     * rather than after RECLAIM_BATCH more retirements. */
    reclaim(c, s);
    rk_free(s->stamp);
    s->stamp = ns;
    s->stamp_mask = ncap - 1;
    s->hand = 0;
    return 0;
}

/* Retires slot i's value and closes the gap by backward shift, so probes
 * never need tombstones. Each slot changes under its seqlock; a reader
 * walking the sequence meanwhile may miss the moving entry, never find a
 * wrong one. */
static void remove_at(feat_cache *c, fc_shard *s, uint32_t i)
{
    fc_tab *t = s->tab;
    fc_ent *e = &t->slot[i];
    s->bytes -= e->len;
    unsigned char *d = e->data;
    slot_set(e, 0, 0, 0, 0, 0, NULL, 0, 0, 0);
    retire_value(c, s, d);
    s->n--;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        fc_ent *x = &t->slot[j];
        if (empty(x)) break;
        uint32_t home = (uint32_t)key_hash((fc_key){x->a, x->b}) & t->mask;
        /* x may move to i when i lies cyclically in [home, j). */
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            slot_set(&t->slot[i], x->a, x->b, x->ver, x->len, x->present, x->data,
                     LD(x->ref), x->aux, x->auxst);
            slot_set(x, 0, 0, 0, 0, 0, NULL, 0, 0, 0);
            i = j;
        }
    }
}

/* CLOCK: clears reference bits until an unreferenced entry comes by. */
static void evict_one(feat_cache *c, fc_shard *s)
{
    fc_tab *t = s->tab;
    for (uint32_t steps = 0; s->n && steps <= 2 * (t->mask + 1); steps++) {
        uint32_t i = s->hand;
        fc_ent *e = &t->slot[i];
        if (empty(e)) {
            s->hand = (i + 1) & t->mask;
        } else if (LD(e->ref)) {
            ST(e->ref, 0);
            s->hand = (i + 1) & t->mask;
        } else {
            /* The backward shift may pull a later entry into i: leave the
             * hand here so it is looked at. */
            remove_at(c, s, i);
            s->evictions++;
            return;
        }
    }
}

static fc_shard *shard_of(feat_cache *c, uint64_t h)
{
    return &c->sh[h >> (64 - SHARD_BITS)];
}

/* Prefetches the home slot of hash h without the lock: the table may be
 * replaced meanwhile, and a prefetch of a stale address never faults. */
static void prefetch_home(feat_cache *c, uint64_t h)
{
    const fc_tab *t = __atomic_load_n(&shard_of(c, h)->tab, __ATOMIC_RELAXED);
    __builtin_prefetch(&t->slot[(uint32_t)h & t->mask]);
}

void rk__feat_cache_prefetch(feat_cache *c, fc_key k)
{
    prefetch_home(c, key_hash(k));
}

/* ---- pinned (lock-free) readers -------------------------------------------- */

int rk__feat_cache_pin(feat_cache *c, uint32_t *hint)
{
    uint64_t e = atomic_load_explicit(&c->epoch, memory_order_acquire);
    for (uint32_t k = 0; k < FC_READERS; k++) {
        uint32_t i = (*hint + k) % FC_READERS;
        uint64_t zero = 0;
        if (atomic_load_explicit(&c->rd[i].epoch, memory_order_relaxed) ||
            !atomic_compare_exchange_strong(&c->rd[i].epoch, &zero, e))
            continue;
        /* The announcement is ordered before every probe (see Epochs). */
        atomic_thread_fence(memory_order_seq_cst);
        *hint = i;
        return (int)i;
    }
    atomic_fetch_add_explicit(&c->unpinned, 1, memory_order_relaxed);
    return -1;
}

void rk__feat_cache_unpin(feat_cache *c, int rs)
{
    if (rs >= 0 && (uint32_t)rs < FC_READERS)
        atomic_store_explicit(&c->rd[rs].epoch, 0, memory_order_release);
}

static uint64_t *istamp_of(feat_cache *c, uint64_t ist)
{
    return &c->istamp[ist & c->imask];
}

/* The version a query's entry must reach: its item stamp (0: none). */
static uint64_t min_ver(feat_cache *c, const fc_get *g)
{
    return g->stamped ? LD(*istamp_of(c, g->ist)) : 0;
}

/* One lock-free probe of table t: FC_HIT/FC_ABSENT with g's val/len set,
 * or FC_MISS. The entry's version must lie in [minv, ver]. */
static int find_in(const fc_tab *t, fc_get *g, uint64_t ver, uint64_t minv)
{
    uint32_t mask = t->mask, i = (uint32_t)g->h & mask;
    for (uint32_t steps = 0; steps <= mask; steps++, i = (i + 1) & mask) {
        fc_ent *e = &t->slot[i];
        uint64_t a, b, ev, aux;
        unsigned char *d;
        uint32_t len, s1;
        uint8_t pr, ast;
        for (uint32_t tries = 0;; tries++) {
            s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
            a = LD(e->a);
            b = LD(e->b);
            ev = LD(e->ver);
            d = LD(e->data);
            len = LD(e->len);
            pr = LD(e->present);
            aux = LD(e->aux);
            ast = LD(e->auxst);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (!(s1 & 1) && LD(e->seq) == s1) break;
            /* A writer is in this slot; give up (a miss) rather than wait
             * on a descheduled one. */
            if (tries >= 64) return FC_MISS;
        }
        if (!a && !b) return FC_MISS;
        if (a != g->k.a || b != g->k.b) continue;
        if (ev > ver || ev < minv) return FC_MISS;
        /* Second chance for CLOCK; skip the store when set, so hot keys'
         * lines are not dirtied by every reader. */
        if (!LD(e->ref)) ST(e->ref, 1);
        g->val = d;
        g->len = len;
        g->aux = aux;
        g->auxst = ast;
        return pr ? FC_HIT : FC_ABSENT;
    }
    return FC_MISS;
}

/* Distance, in keys, of the home-slot prefetch of a batch. */
#define PF_SLOT 32

void rk__feat_cache_find_many(feat_cache *c, int rs, uint64_t ver, fc_get *q, size_t n)
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
    /* Hash everything first: the prefetch needs the hashes ahead. */
    for (size_t i = 0; i < n; i++)
        if (q[i].rc == FC_MISS) q[i].h = key_hash(q[i].k);
    size_t pf = 0, hits = 0, misses = 0;
    for (size_t i = 0; i < n; i++) {
        for (; pf < n && pf < i + PF_SLOT; pf++)
            if (q[pf].rc == FC_MISS) {
                prefetch_home(c, q[pf].h);
                if (q[pf].stamped) __builtin_prefetch(istamp_of(c, q[pf].ist));
            }
        fc_get *g = &q[i];
        if (g->rc != FC_MISS) continue;
        const fc_tab *t = __atomic_load_n(&shard_of(c, g->h)->tab, __ATOMIC_ACQUIRE);
        /* The stamps a commit raised are visible once its `applied` is
         * (acquired above). */
        g->rc = find_in(t, g, ver, min_ver(c, g));
        if (g->rc == FC_MISS) misses++;
        else hits++;
    }
    fc_reader *r = &c->rd[rs];
    atomic_store_explicit(&r->hits, atomic_load_explicit(&r->hits, memory_order_relaxed) + hits,
                          memory_order_relaxed);
    atomic_store_explicit(&r->misses,
                          atomic_load_explicit(&r->misses, memory_order_relaxed) + misses,
                          memory_order_relaxed);
}

int rk__feat_cache_find(feat_cache *c, int rs, fc_key k, uint64_t ver,
                        const unsigned char **val, size_t *len)
{
    fc_get g;
    memset(&g, 0, sizeof g);
    g.k = k;
    g.rc = FC_MISS;
    g.val = NULL;
    g.len = 0;
    rk__feat_cache_find_many(c, rs, ver, &g, 1);
    *val = g.val;
    *len = g.len;
    return g.rc;
}

/* ---- unpinned readers (shard lock) ----------------------------------------- */

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
    fc_ent *e = &s->tab->slot[probe(s, k, h)];
    if (!empty(e) && e->ver <= ver && e->len <= cap) {
        if (e->len) memcpy(buf, e->data, e->len);
        *len = e->len;
        ST(e->ref, 1);
        rc = e->present ? FC_HIT : FC_ABSENT;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Distances, in keys, of the two prefetch stages of a locked batch: the
 * home slot PF_SLOT keys ahead, then (once it has arrived, and under the
 * shard's lock so the entry is stable) the value PF_VAL keys ahead. */
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
        const fc_tab *t = s->tab;
        for (size_t j = j0; j < j1; j++) {
            if (j + PF_SLOT < m) prefetch_home(c, q[ord[j + PF_SLOT]].h);
            if (j + PF_VAL < j1) {
                /* Same shard, lock held: the home slot is stable. */
                const fc_get *x = &q[ord[j + PF_VAL]];
                const fc_ent *e = &t->slot[(uint32_t)x->h & t->mask];
                if (e->a == x->k.a && e->b == x->k.b && e->data) {
                    __builtin_prefetch(e->data);
                    if (e->len > 64) __builtin_prefetch(e->data + 64);
                }
            }
            fc_get *g = &q[ord[j]];
            fc_ent *e = &t->slot[probe(s, g->k, g->h)];
            if (!empty(e) && e->ver <= ver && e->ver >= min_ver(c, g)) {
                unsigned char *d = e->len ? rk_arena_alloc(arena, e->len) : NULL;
                if (e->len && !d) {
                    s->misses++;
                    continue;
                }
                if (e->len) memcpy(d, e->data, e->len);
                g->val = d;
                g->len = e->len;
                g->aux = e->aux;
                g->auxst = e->auxst;
                g->rc = e->present ? FC_HIT : FC_ABSENT;
                ST(e->ref, 1);
                s->hits++;
            } else {
                s->misses++;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---- fills and invalidation ------------------------------------------------- */

void rk__feat_cache_fill(feat_cache *c, fc_key k, uint64_t ver, const void *val,
                         size_t len, int present)
{
    rk__feat_cache_fill_aux(c, k, ver, val, len, present, 0, 0);
}

/* A fill; with ist, refused below that item stamp too. */
static void fill_in(feat_cache *c, fc_key k, uint64_t ver, const void *val, size_t len,
                    int present, uint64_t aux, uint8_t auxst, const uint64_t *ist)
{
    if (len > c->max_val) return;
    if (ver > atomic_load_explicit(&c->applied, memory_order_acquire)) return;
    uint64_t h = key_hash(k);
    fc_shard *s = shard_of(c, h);
    /* Copy outside the lock; most fills succeed. */
    fc_blk *b = len ? rk_malloc(sizeof *b + len) : NULL;
    if (len && !b) return;
    unsigned char *d = NULL;
    if (b) {
        memset(b, 0, sizeof *b);
        b->bytes = len;
        d = blk_data(b);
        memcpy(d, val, len);
    }
    pthread_mutex_lock(&s->mu);
    if (ver < s->floor || ver < s->stamp[h & s->stamp_mask] || (ist && ver < LD(*ist))) {
        s->refused++;
        pthread_mutex_unlock(&s->mu);
        rk_free(b);
        return;
    }
    uint32_t i = probe(s, k, h);
    fc_ent *e = &s->tab->slot[i];
    if (!empty(e)) {
        /* Present from another thread's fill: keep the older version, which
         * serves more snapshots (both hold the same bytes), unless it is
         * older than the item stamp (never taken again). */
        int stale = ist && e->ver < LD(*ist);
        if ((stale || e->ver > ver) && s->bytes + s->rbytes + len <= s->max_bytes) {
            unsigned char *old = e->data;
            s->bytes = s->bytes - e->len + len;
            slot_set(e, e->a, e->b, ver, (uint32_t)len, (uint8_t)(present != 0), d,
                     LD(e->ref), aux, auxst);
            retire_value(c, s, old);
            b = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        rk_free(b);
        return;
    }
    if (s->n >= s->max || s->bytes + s->rbytes + len > s->max_bytes) {
        reclaim(c, s);
        /* An evicted value is freed once no pinned reader can hold it.
         * While readers hold half the byte bound, evicting for bytes would
         * only empty the shard: the fill is dropped instead. */
        while (s->n && (s->n >= s->max || (s->bytes + s->rbytes + len > s->max_bytes &&
                                           s->rbytes <= s->max_bytes / 2))) {
            evict_one(c, s);
            reclaim(c, s);
        }
        if (s->n >= s->max || s->bytes + s->rbytes + len > s->max_bytes) {
            pthread_mutex_unlock(&s->mu);
            rk_free(b);
            return;
        }
        i = probe(s, k, h); /* eviction moved entries */
    }
    if (2 * (s->n + 1) > s->tab->mask + 1 && s->tab->mask < s->max_mask) {
        /* Over half full: grow. Without memory the shard stays as it is
         * and the fill is dropped once the table is 3/4 full. */
        if (!grow(c, s)) {
            i = probe(s, k, h);
        } else if (4 * (s->n + 1) > 3 * (s->tab->mask + 1)) {
            pthread_mutex_unlock(&s->mu);
            rk_free(b);
            return;
        }
    }
    slot_set(&s->tab->slot[i], k.a, k.b, ver, (uint32_t)len, (uint8_t)(present != 0), d, 0,
             aux, auxst);
    s->n++;
    s->bytes += len;
    s->fills++;
    pthread_mutex_unlock(&s->mu);
}

void rk__feat_cache_fill_aux(feat_cache *c, fc_key k, uint64_t ver, const void *val,
                             size_t len, int present, uint64_t aux, uint8_t auxst)
{
    fill_in(c, k, ver, val, len, present, aux, auxst, NULL);
}

void rk__feat_cache_fill_stamped(feat_cache *c, fc_key k, uint64_t ist, uint64_t ver,
                                 const void *val, size_t len, uint64_t aux, uint8_t auxst)
{
    fill_in(c, k, ver, val, len, 1, aux, auxst, istamp_of(c, ist));
}

static void invalidate(feat_cache *c, fc_key k, uint64_t txn)
{
    uint64_t h = key_hash(k);
    fc_shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    uint64_t *st = &s->stamp[h & s->stamp_mask];
    if (*st < txn) *st = txn;
    uint32_t i = probe(s, k, h);
    if (!empty(&s->tab->slot[i])) {
        remove_at(c, s, i);
        s->invalidations++;
    }
    pthread_mutex_unlock(&s->mu);
}

/* An entity's key is its id's key-part hash spread over the two words:
 * two ids that collided here would collide in every aggregate key too, so
 * this adds no failure of its own, and a caller that has the item's hash
 * (every candidate's aggregate keys need it) derives the key with two
 * multiplies instead of hashing the id again. */
fc_key rk__feat_cache_entity_key_h(uint8_t entity, uint64_t h)
{
    fc_key k;
    k.a = h ^ (0x656e746974793161ull + entity);
    k.b = rk__mix64(h ^ (0x656e746974793262ull + entity)) | 1; /* never empty */
    return k;
}

fc_key rk__feat_cache_entity_key(uint8_t entity, const void *id, size_t len)
{
    uint8_t kind = entity == RK_ENTITY_USER ? KP_USER : KP_ITEM;
    return rk__feat_cache_entity_key_h(entity, rk__feat_part_hash(kind, id, len));
}

void rk__feat_cache_set_bundle(feat_cache *c, uint64_t layout, uint64_t dlayout)
{
    c->bundle = layout;
    c->dbundle = layout ? dlayout : 0;
}

uint64_t rk__feat_cache_bundle_layout(const feat_cache *c) { return c->bundle; }
uint64_t rk__feat_cache_dbundle_layout(const feat_cache *c) { return c->dbundle; }

/* Raises item stamp ist to txn (the hook is the only writer). */
static void istamp_raise(feat_cache *c, uint64_t ist, uint64_t txn)
{
    uint64_t *st = istamp_of(c, ist);
    if (LD(*st) < txn) ST(*st, txn);
}

/* A bundle's key is an aggregate key it holds with the first word
 * tweaked: an item bundle's is its item's [item] key, which the hook
 * derives from either thing that changes it (the aggregate key itself, or
 * the item's id through the key's hash); a device bundle's is its
 * [item, context.X] key. */
fc_key rk__feat_cache_bundle_key(uint64_t layout, uint64_t item_key_hash)
{
    return (fc_key){layout ^ 0x62756e646c653161ull, item_key_hash};
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
            fc_tab *t = s->tab;
            for (uint32_t j = 0; j <= t->mask; j++)
                if (!empty(&t->slot[j])) {
                    unsigned char *d = t->slot[j].data;
                    slot_set(&t->slot[j], 0, 0, 0, 0, 0, NULL, 0, 0, 0);
                    retire_value(c, s, d);
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
            p[0] == 'A') {
            fc_key k = {rk__rd64(p + 1), rk__rd64(p + 9)};
            invalidate(c, k, txn);
            /* An item's [item] record: its bundle holds a copy, and so do
             * its device bundles (through the item stamp). An
             * [item, context.X] record: its device bundle holds a copy. */
            if (c->bundle && k.a == c->bundle) {
                invalidate(c, rk__feat_cache_bundle_key(k.a, k.b), txn);
                istamp_raise(c, k.b, txn);
            } else if (c->dbundle && k.a == c->dbundle) {
                invalidate(c, rk__feat_cache_bundle_key(k.a, k.b), txn);
            }
        } else if (x->kind == RK_CHANGE_ENTITY) {
            uint8_t item = x->entity == RK_ENTITY_ITEM;
            uint64_t h = rk__feat_part_hash(item ? KP_ITEM : KP_USER, x->key, x->len);
            invalidate(c, rk__feat_cache_entity_key_h(x->entity, h), txn);
            /* An item's record: its bundles hold it too. */
            if (c->bundle && item) {
                uint64_t ikh = rk__feat_item_key_hash(c->bundle, h);
                invalidate(c, rk__feat_cache_bundle_key(c->bundle, ikh), txn);
                istamp_raise(c, ikh, txn);
            }
        }
    }
    atomic_store_explicit(&c->applied, txn, memory_order_release);
    /* Free what the pinned readers have let go since the last commit. */
    for (uint32_t i = 0; i < NSHARDS; i++) {
        fc_shard *s = &c->sh[i];
        if (!__atomic_load_n(&s->rhead, __ATOMIC_RELAXED)) continue;
        pthread_mutex_lock(&s->mu);
        reclaim(c, s);
        pthread_mutex_unlock(&s->mu);
    }
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
        o->bytes += s->bytes + s->tab->hdr.bytes + (size_t)(s->stamp_mask + 1) * sizeof *s->stamp +
                    (size_t)s->n * sizeof(fc_blk) + s->rbytes + s->rtab +
                    (size_t)s->nretired * sizeof(fc_blk);
        o->retired_bytes += s->rbytes + s->rtab;
        o->hits += s->hits;
        o->misses += s->misses;
        o->fills += s->fills;
        o->evictions += s->evictions;
        o->invalidations += s->invalidations;
        o->refused += s->refused;
        pthread_mutex_unlock(&s->mu);
    }
    for (uint32_t i = 0; i < FC_READERS; i++) {
        o->hits += atomic_load_explicit(&c->rd[i].hits, memory_order_relaxed);
        o->misses += atomic_load_explicit(&c->rd[i].misses, memory_order_relaxed);
    }
    o->bytes += sizeof *c + (size_t)(c->imask + 1) * sizeof *c->istamp;
    o->unpinned = atomic_load_explicit(&c->unpinned, memory_order_relaxed);
    o->bypassed = atomic_load_explicit(&c->bypassed, memory_order_relaxed);
    o->applied = atomic_load_explicit(&c->applied, memory_order_acquire);
}
