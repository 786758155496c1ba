/*
 * arena.c — request-scoped bump allocation freed in one call.
 *
 * Memory comes from rk_malloc in chunks; each allocation is rounded up to 16
 * bytes so every returned pointer is 16-byte aligned (chunk headers are a
 * multiple of 16 and rk_malloc itself returns 16-byte aligned blocks).
 * Invariants: a->reserved is the sum of the chunk sizes obtained from
 * rk_malloc (headers included) and never exceeds a->max_bytes when that is
 * set; a->used is the sum of the rounded sizes handed out.
 *
 * With -DRK_NO_ARENA every allocation becomes its own rk_malloc block linked
 * into a list, so AddressSanitizer sees each one with exact bounds and
 * catches overruns that a bump allocator would silently absorb.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rk_core.h"

#define ARENA_ALIGN 16
#define ARENA_DEFAULT_CHUNK 8192

struct rk__arena_chunk {
    rk__arena_chunk *next;
    size_t size; /* bytes of data[] */
    size_t off;  /* bytes of data[] already handed out */
    size_t pad_; /* keeps data[] 16-byte aligned */
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

_Static_assert(sizeof(rk__arena_chunk) % ARENA_ALIGN == 0,
               "chunk header must keep data 16-byte aligned");

/* Rounds n up to the alignment; 0 on overflow (callers treat 0 as error). */
static size_t round_up(size_t n)
{
    if (n == 0) n = 1; /* distinct pointers even for empty requests */
    if (n > SIZE_MAX - (ARENA_ALIGN - 1)) return 0;
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void rk_arena_init(rk_arena *a, size_t chunk_size, size_t max_bytes)
{
    memset(a, 0, sizeof *a);
    a->chunk_size = chunk_size ? chunk_size : ARENA_DEFAULT_CHUNK;
    a->max_bytes = max_bytes;
}

#ifdef RK_NO_ARENA

/* Every allocation is a chunk holding exactly one object. */
void *rk_arena_alloc(rk_arena *a, size_t size)
{
    size_t need = round_up(size);
    if (!need || need > SIZE_MAX - sizeof(rk__arena_chunk)) return NULL;
    size_t total = sizeof(rk__arena_chunk) + need;
    if (a->max_bytes && (a->reserved > a->max_bytes ||
                         total > a->max_bytes - a->reserved))
        return NULL;
    /* Allocate only the bytes asked for so ASan flags any overrun. */
    rk__arena_chunk *c = rk_malloc(sizeof *c + (size ? size : 1));
    if (!c) return NULL;
    c->size = need;
    c->off = need;
    c->next = a->head;
    a->head = c;
    a->reserved += total;
    a->used += need;
    return c->data;
}

void rk_arena_reset(rk_arena *a)
{
    rk_arena_free(a);
}

#else

void *rk_arena_alloc(rk_arena *a, size_t size)
{
    size_t need = round_up(size);
    if (!need) return NULL;
    rk__arena_chunk *h = a->head;
    if (h && h->size - h->off >= need) {
        void *p = h->data + h->off;
        h->off += need;
        a->used += need;
        return p;
    }
    if (need > SIZE_MAX - sizeof(rk__arena_chunk)) return NULL;
    /* A new chunk is normally chunk_size bytes; a large request gets a chunk
     * of its own size. Near max_bytes we settle for whatever still fits. */
    size_t data = a->chunk_size > sizeof(rk__arena_chunk)
                      ? a->chunk_size - sizeof(rk__arena_chunk)
                      : 0;
    if (data < need) data = need;
    if (a->max_bytes) {
        size_t left = a->reserved < a->max_bytes ? a->max_bytes - a->reserved : 0;
        if (left < sizeof(rk__arena_chunk) + need) return NULL;
        if (data > left - sizeof(rk__arena_chunk))
            data = (left - sizeof(rk__arena_chunk)) & ~(size_t)(ARENA_ALIGN - 1);
    }
    rk__arena_chunk *c = rk_malloc(sizeof *c + data);
    if (!c) return NULL;
    c->size = data;
    c->off = need;
    /* An oversized chunk goes behind the current head so the head's free
     * tail stays available for the small allocations that follow. */
    if (h && data == need && h->size - h->off > 0) {
        c->next = h->next;
        h->next = c;
    } else {
        c->next = h;
        a->head = c;
    }
    a->reserved += sizeof *c + data;
    a->used += need;
    return c->data;
}

void rk_arena_reset(rk_arena *a)
{
    /* Keep the oldest chunk of normal size (the list runs newest first) so
     * a reused arena starts with memory in hand, but never pin a one-off
     * oversized block. */
    rk__arena_chunk *keep = NULL;
    for (rk__arena_chunk *c = a->head; c; c = c->next)
        if (sizeof *c + c->size <= a->chunk_size) keep = c;
    rk__arena_chunk *c = a->head;
    while (c) {
        rk__arena_chunk *next = c->next;
        if (c != keep) rk_free(c);
        c = next;
    }
    a->head = keep;
    a->used = 0;
    a->reserved = 0;
    if (keep) {
        keep->off = 0;
        keep->next = NULL;
        a->reserved = sizeof *keep + keep->size;
    }
}

#endif /* RK_NO_ARENA */

void rk_arena_free(rk_arena *a)
{
    rk__arena_chunk *c = a->head;
    while (c) {
        rk__arena_chunk *next = c->next;
        rk_free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
    a->reserved = 0;
}

void *rk_arena_memdup(rk_arena *a, const void *p, size_t n)
{
    void *q = rk_arena_alloc(a, n);
    if (q && n) memcpy(q, p, n);
    return q;
}

char *rk_arena_strndup(rk_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    char *q = rk_arena_alloc(a, n + 1);
    if (!q) return NULL;
    if (n) memcpy(q, s, n);
    q[n] = '\0';
    return q;
}

char *rk_arena_sprintf(rk_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *q = NULL;
    if (len >= 0) {
        q = rk_arena_alloc(a, (size_t)len + 1);
        if (q) vsnprintf(q, (size_t)len + 1, fmt, ap2);
    }
    va_end(ap2);
    return q;
}
