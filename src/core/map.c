/*
 * map.c — byte-string keys to uint64 values; the writer's id cache.
 *
 * Open addressing with linear probing over a power-of-two slot array. Each
 * slot keeps the key's full 64-bit hash, so probes compare hashes and touch
 * the key bytes only on a probable hit, and growth rehashes without reading
 * keys. Keys up to MAP_INLINE bytes (typical ids) live inside the slot:
 * a lookup over a large map then costs one cache miss instead of two, and
 * inserting one allocates nothing. Longer keys are copied with rk_malloc.
 * Deletion shifts later entries of the cluster back instead of leaving
 * tombstones, so probe sequences never lengthen with churn and a cache that
 * evicts and inserts forever keeps its speed.
 *
 * Invariants: a slot is occupied iff meta != 0 (meta = key length + 1);
 * every occupied slot is reachable by probing from its home slot
 * (hash & mask) without crossing an empty slot; size <= 3/4 of the slot
 * count; size <= max when max != 0.
 */
#include <string.h>

#include "rk_core.h"

#define MAP_MIN_SLOTS 16
/* Fixed so iteration order, and thus anything derived from it, is the same
 * from run to run. */
#define MAP_SEED 0x9E3779B97F4A7C15ULL

/* 28 inline bytes make a slot exactly 48 bytes. A long key's pointer is
 * kept in the same bytes; they are only 4-byte aligned, so it is read and
 * written with memcpy. */
#define MAP_INLINE 28

typedef struct map_slot {
    uint64_t hash;
    uint64_t val;
    /* The key (or a pointer to its copy) comes first, 8-byte aligned, so
     * leak checkers scanning for pointers see a long key's copy. */
    unsigned char k[MAP_INLINE];
    uint32_t meta; /* 0 = empty, else key length + 1 */
} map_slot;

_Static_assert(sizeof(map_slot) == 48, "map_slot layout");

static inline unsigned char *slot_ptr(const map_slot *s)
{
    unsigned char *p;
    memcpy(&p, s->k, sizeof p);
    return p;
}

static inline const unsigned char *slot_key(const map_slot *s)
{
    return s->meta - 1 <= MAP_INLINE ? s->k : slot_ptr(s);
}

static inline void slot_free_key(map_slot *s)
{
    if (s->meta - 1 > MAP_INLINE) rk_free(slot_ptr(s));
    s->meta = 0;
}

struct rk_map {
    map_slot *slots;
    size_t mask;  /* slot count - 1 */
    size_t size;  /* occupied slots */
    size_t max;   /* max_entries, 0 = unbounded */
    size_t hand;  /* clock hand: where rk_map_evict_one looks next */
};

int rk_map_create(rk_map **out, size_t max_entries)
{
    rk_map *m = rk_malloc(sizeof *m);
    if (!m) return RK_ENOMEM;
    m->slots = rk_calloc(MAP_MIN_SLOTS, sizeof *m->slots);
    if (!m->slots) {
        rk_free(m);
        return RK_ENOMEM;
    }
    m->mask = MAP_MIN_SLOTS - 1;
    m->size = 0;
    m->max = max_entries;
    m->hand = 0;
    *out = m;
    return 0;
}

static void free_keys(rk_map *m)
{
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].meta) slot_free_key(&m->slots[i]);
}

void rk_map_destroy(rk_map *m)
{
    if (!m) return;
    free_keys(m);
    rk_free(m->slots);
    rk_free(m);
}

/* Index of the slot holding key, or of the empty slot that ends its probe
 * sequence. The load factor bound guarantees an empty slot exists. */
static size_t find(const rk_map *m, const void *key, size_t klen, uint64_t h)
{
    size_t i = (size_t)h & m->mask;
    for (;;) {
        const map_slot *s = &m->slots[i];
        if (!s->meta) return i;
        if (s->hash == h && s->meta - 1 == klen &&
            memcmp(slot_key(s), key, klen) == 0)
            return i;
        i = (i + 1) & m->mask;
    }
}

int rk_map_get(const rk_map *m, const void *key, size_t klen, uint64_t *val)
{
    uint64_t h = rk_hash64(key, klen, MAP_SEED);
    size_t i = find(m, key, klen, h);
    if (!m->slots[i].meta) return RK_ENOTFOUND;
    if (val) *val = m->slots[i].val;
    return 0;
}

/* Doubles the slot array, placing entries by their stored hashes. */
static int grow(rk_map *m)
{
    size_t ncap = (m->mask + 1) * 2;
    if (ncap > SIZE_MAX / sizeof(map_slot)) return RK_ENOMEM;
    map_slot *ns = rk_calloc(ncap, sizeof *ns);
    if (!ns) return RK_ENOMEM;
    size_t nmask = ncap - 1;
    for (size_t i = 0; i <= m->mask; i++) {
        map_slot *s = &m->slots[i];
        if (!s->meta) continue;
        size_t j = (size_t)s->hash & nmask;
        while (ns[j].meta) j = (j + 1) & nmask;
        ns[j] = *s;
    }
    rk_free(m->slots);
    m->slots = ns;
    m->mask = nmask;
    m->hand &= nmask;
    return 0;
}

int rk_map_put(rk_map *m, const void *key, size_t klen, uint64_t val)
{
    /* meta stores klen + 1 in 32 bits. */
    if (klen >= UINT32_MAX) return RK_EINVAL;
    uint64_t h = rk_hash64(key, klen, MAP_SEED);
    size_t i = find(m, key, klen, h);
    if (m->slots[i].meta) {
        m->slots[i].val = val;
        return 0;
    }
    if (m->max && m->size >= m->max) return RK_ELIMIT;
    /* Copy a long key before growing so a failure leaves the map untouched
     * apart from (harmless) extra capacity. */
    unsigned char *copy = NULL;
    if (klen > MAP_INLINE) {
        copy = rk_memdup(key, klen);
        if (!copy) return RK_ENOMEM;
    }
    if (m->size + 1 > (m->mask + 1) / 4 * 3) {
        int rc = grow(m);
        if (rc) {
            rk_free(copy);
            return rc;
        }
        i = find(m, key, klen, h);
    }
    map_slot *s = &m->slots[i];
    s->hash = h;
    s->val = val;
    s->meta = (uint32_t)klen + 1;
    if (copy)
        memcpy(s->k, &copy, sizeof copy);
    else if (klen)
        memcpy(s->k, key, klen);
    m->size++;
    return 0;
}

/* Empties slot i and closes the gap: each later entry of the cluster whose
 * home is not cyclically within (i, j] moves back into the hole, which then
 * moves to where that entry was. */
static void remove_at(rk_map *m, size_t i)
{
    slot_free_key(&m->slots[i]);
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        map_slot *s = &m->slots[j];
        if (!s->meta) break;
        size_t home = (size_t)s->hash & m->mask;
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        m->slots[i] = *s;
        i = j;
    }
    m->slots[i].meta = 0;
    m->size--;
}

int rk_map_del(rk_map *m, const void *key, size_t klen)
{
    uint64_t h = rk_hash64(key, klen, MAP_SEED);
    size_t i = find(m, key, klen, h);
    if (!m->slots[i].meta) return RK_ENOTFOUND;
    remove_at(m, i);
    return 0;
}

int rk_map_evict_one(rk_map *m)
{
    if (m->size == 0) return RK_ENOTFOUND;
    size_t i = m->hand & m->mask;
    while (!m->slots[i].meta) i = (i + 1) & m->mask;
    remove_at(m, i);
    /* The hand stays on i: the backward shift may have moved a not yet
     * visited entry into it, and that one is next in clock order. */
    m->hand = i;
    return 0;
}

size_t rk_map_size(const rk_map *m)
{
    return m->size;
}

void rk_map_clear(rk_map *m)
{
    free_keys(m);
    m->size = 0;
    m->hand = 0;
}

int rk_map_next(const rk_map *m, size_t *it, const void **key, size_t *klen,
                uint64_t *val)
{
    for (size_t i = *it; i <= m->mask; i++) {
        const map_slot *s = &m->slots[i];
        if (!s->meta) continue;
        if (key) *key = slot_key(s);
        if (klen) *klen = s->meta - 1;
        if (val) *val = s->val;
        *it = i + 1;
        return 1;
    }
    *it = m->mask + 1;
    return 0;
}
