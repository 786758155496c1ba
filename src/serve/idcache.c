/*
 * idcache.c — dense item id -> external id, in memory. The store never
 * reuses or renames a dense id, so an entry, once filled, is valid for
 * ever: the table is append-only and read without locks (an entry is
 * published with one compare-and-swap; a racing second filler frees its
 * copy). Chunks of 65,536 slots are allocated on first use; ids at or
 * beyond max_ids are not cached (the caller reads the store), so memory is
 * bounded by max_ids x (8 bytes + the id).
 */
#include <string.h>

#include "serve/serve_int.h"

#define CHUNK_BITS 16
#define CHUNK (1u << CHUNK_BITS)

struct sv_idcache {
    uint32_t max_ids, nchunks;
    _Atomic(char *) *_Atomic *chunks;   /* nchunks pointers */
    atomic_size_t bytes, entries;
};

int sv_idcache_create(sv_idcache **out, uint32_t max_ids)
{
    sv_idcache *c = rk_calloc(1, sizeof *c);
    if (!c) return RK_ENOMEM;
    c->max_ids = max_ids;
    c->nchunks = (uint32_t)(((uint64_t)max_ids + CHUNK - 1) >> CHUNK_BITS);
    c->chunks = rk_calloc(c->nchunks ? c->nchunks : 1, sizeof *c->chunks);
    if (!c->chunks) {
        rk_free(c);
        return RK_ENOMEM;
    }
    *out = c;
    return 0;
}

void sv_idcache_destroy(sv_idcache *c)
{
    if (!c) return;
    for (uint32_t i = 0; i < c->nchunks; i++) {
        _Atomic(char *) *ch = atomic_load(&c->chunks[i]);
        if (!ch) continue;
        for (uint32_t j = 0; j < CHUNK; j++) rk_free(atomic_load(&ch[j]));
        rk_free((void *)ch);
    }
    rk_free((void *)c->chunks);
    rk_free(c);
}

int sv_idcache_get(sv_idcache *c, rk_reader *r, uint32_t id, const char **ext,
                   size_t *len)
{
    if (id >= c->max_ids)
        return rk_reader_external(r, RK_ENTITY_ITEM, id, ext, len);
    _Atomic(char *) *ch = atomic_load_explicit(&c->chunks[id >> CHUNK_BITS],
                                               memory_order_acquire);
    if (ch) {
        char *s = atomic_load_explicit(&ch[id & (CHUNK - 1)], memory_order_acquire);
        if (s) {
            /* Stored as a length byte pair then the id and a NUL. */
            *len = (size_t)(unsigned char)s[0] | (size_t)(unsigned char)s[1] << 8;
            *ext = s + 2;
            return 0;
        }
    }
    const char *e;
    size_t n;
    int rc = rk_reader_external(r, RK_ENTITY_ITEM, id, &e, &n);
    if (rc) return rc;
    *ext = e;
    *len = n;
    if (!ch) {
        _Atomic(char *) *fresh = rk_calloc(CHUNK, sizeof *fresh);
        if (!fresh) return 0;
        _Atomic(char *) *expect = NULL;
        if (atomic_compare_exchange_strong(&c->chunks[id >> CHUNK_BITS], &expect,
                                           fresh)) {
            ch = fresh;
            atomic_fetch_add(&c->bytes, CHUNK * sizeof *fresh);
        } else {
            rk_free((void *)fresh);
            ch = expect;
        }
    }
    char *s = rk_malloc(n + 3);
    if (!s) return 0;
    s[0] = (char)(n & 0xff);
    s[1] = (char)(n >> 8);
    memcpy(s + 2, e, n);
    s[n + 2] = '\0';
    char *expect = NULL;
    if (atomic_compare_exchange_strong(&ch[id & (CHUNK - 1)], &expect, s)) {
        atomic_fetch_add(&c->bytes, n + 3);
        atomic_fetch_add(&c->entries, 1);
    } else {
        rk_free(s);
    }
    return 0;
}

void sv_idcache_stats(sv_idcache *c, size_t *entries, size_t *bytes)
{
    *entries = atomic_load(&c->entries);
    *bytes = atomic_load(&c->bytes) + c->nchunks * sizeof *c->chunks;
}
