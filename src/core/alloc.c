/*
 * alloc.c — the counting allocator every rankd allocation goes through.
 *
 * Each block carries a 16-byte header holding its size, so frees can be
 * counted without a lookup table. Counters are atomics shared by the whole
 * process: bytes in use, the high-water mark, successful allocations and
 * refusals. Two knobs make failure testable: a byte limit (refuse what would
 * exceed it) and "fail the Nth allocation attempt from now" injection.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rk_core.h"

#define HDR 16 /* keeps the user pointer 16-byte aligned */

static _Atomic size_t mem_in_use;
static _Atomic size_t mem_peak;
static _Atomic size_t mem_limit;
static _Atomic uint64_t mem_allocs;
static _Atomic uint64_t mem_failures;
static _Atomic uint64_t mem_attempts;
static _Atomic uint64_t mem_fail_n;     /* 0 = no injection */
static _Atomic int mem_fail_persist;

/* Records one allocation that brought bytes in use to `now`. */
static void mem_counted(size_t now)
{
    size_t peak = atomic_load(&mem_peak);
    while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now)) {
    }
    atomic_fetch_add(&mem_allocs, 1);
}

/* Decides whether an allocation of `grow` more bytes may proceed and, if
 * so, accounts for it. */
static int mem_admit(size_t grow)
{
    uint64_t n = atomic_fetch_add(&mem_attempts, 1) + 1;
    uint64_t f = atomic_load(&mem_fail_n);
    if (f && (n == f || (n > f && atomic_load(&mem_fail_persist)))) {
        atomic_fetch_add(&mem_failures, 1);
        return 0;
    }
    size_t lim = atomic_load(&mem_limit);
    size_t now = atomic_fetch_add(&mem_in_use, grow) + grow;
    if (lim && now > lim) {
        atomic_fetch_sub(&mem_in_use, grow);
        atomic_fetch_add(&mem_failures, 1);
        return 0;
    }
    mem_counted(now);
    return 1;
}

void *rk_malloc(size_t size)
{
    if (size > SIZE_MAX - HDR) return NULL;
    if (!mem_admit(size)) return NULL;
    unsigned char *p = malloc(size + HDR);
    if (!p) {
        atomic_fetch_sub(&mem_in_use, size);
        atomic_fetch_add(&mem_failures, 1);
        return NULL;
    }
    memcpy(p, &size, sizeof size);
    return p + HDR;
}

void *rk_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = rk_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void rk_free(void *p)
{
    if (!p) return;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t size;
    memcpy(&size, base, sizeof size);
    atomic_fetch_sub(&mem_in_use, size);
    free(base);
}

void *rk_realloc(void *p, size_t size)
{
    if (!p) return rk_malloc(size);
    if (size == 0) {
        rk_free(p);
        return NULL;
    }
    if (size > SIZE_MAX - HDR) return NULL;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    /* Account for growth up front; shrinking always succeeds. */
    if (size > old && !mem_admit(size - old)) return NULL;
    unsigned char *nb = realloc(base, size + HDR);
    if (!nb) {
        if (size > old) atomic_fetch_sub(&mem_in_use, size - old);
        atomic_fetch_add(&mem_failures, 1);
        return NULL;
    }
    if (size < old) atomic_fetch_sub(&mem_in_use, old - size);
    memcpy(nb, &size, sizeof size);
    return nb + HDR;
}

void *rk_memdup(const void *p, size_t n)
{
    void *q = rk_malloc(n ? n : 1);
    if (q && n) memcpy(q, p, n);
    return q;
}

char *rk_strndup(const char *s, size_t n)
{
    char *q = rk_malloc(n + 1);
    if (!q) return NULL;
    memcpy(q, s, n);
    q[n] = '\0';
    return q;
}

char *rk_strdup(const char *s)
{
    return rk_strndup(s, strlen(s));
}

void rk_mem_get_stats(rk_mem_stats *out)
{
    out->in_use = atomic_load(&mem_in_use);
    out->peak = atomic_load(&mem_peak);
    out->limit = atomic_load(&mem_limit);
    out->allocs = atomic_load(&mem_allocs);
    out->failures = atomic_load(&mem_failures);
}

void rk_mem_set_limit(size_t limit)
{
    atomic_store(&mem_limit, limit);
}

void rk_mem_fail_at(uint64_t n, int persist)
{
    atomic_store(&mem_fail_persist, persist);
    atomic_store(&mem_attempts, 0);
    atomic_store(&mem_fail_n, n);
}

uint64_t rk_mem_attempts(void)
{
    return atomic_load(&mem_attempts);
}

/* jansson takes plain malloc/free-shaped hooks. */
/* jansson's allocations are counted (bytes in use, peak) but never refused:
 * jansson 2.14 does not survive an allocation failure in the middle of a
 * token longer than 15 bytes (it drops characters or crashes), so a limit
 * or an injected failure there would corrupt a document instead of
 * failing cleanly. What it allocates is bounded by the inputs rankd gives
 * it (capped bodies, files and records). */
static void *json_malloc_hook(size_t n)
{
    if (n > SIZE_MAX - HDR) return NULL;
    unsigned char *p = malloc(n + HDR);
    if (!p) return NULL;
    mem_counted(atomic_fetch_add(&mem_in_use, n) + n);
    memcpy(p, &n, sizeof n);
    return p + HDR;
}
static void json_free_hook(void *p) { rk_free(p); }

void rk_mem_hook_libraries(void)
{
    json_set_alloc_funcs(json_malloc_hook, json_free_hook);
}
