/*
 * ccache.c — per-user candidate lists: the retrieval stage's output for a
 * user, kept so that a returning user skips retrieval. An entry is valid
 * while its stamp (the user's history version mixed with the retrieval
 * models' versions) matches and it is younger than the TTL; a new event of
 * the user invalidates it at once and queues the user, so the background
 * thread recomputes the list before the user's next request (precompute
 * for active users). Bounded: max_users entries (umap.c evicts beyond) and
 * a pending queue of 4,096 users (further ones are simply recomputed on
 * their next request).
 */
#include <string.h>

#include "serve/serve_int.h"
#include "serve/umap.h"

#define PENDING_MAX 4096

typedef struct centry {
    uint64_t stamp;
    int64_t at_ms;
    size_t n;
    rk_candidate c[];
} centry;

struct sv_ccache {
    sv_umap map;
    uint32_t ttl_s;
    int off;
    atomic_uint_fast64_t hits, misses;
    pthread_mutex_t pmu;
    uint32_t pending[PENDING_MAX];
    size_t npending;
};

static void entry_free(void *p) { rk_free(p); }

int sv_ccache_create(sv_ccache **out, size_t max_users, uint32_t ttl_s)
{
    sv_ccache *c = rk_calloc(1, sizeof *c);
    if (!c) return RK_ENOMEM;
    c->ttl_s = ttl_s;
    c->off = max_users == 0;
    pthread_mutex_init(&c->pmu, NULL);
    if (sv_umap_init(&c->map, max_users ? max_users : 1, entry_free)) {
        sv_umap_free(&c->map);
        rk_free(c);
        return RK_ENOMEM;
    }
    *out = c;
    return 0;
}

void sv_ccache_destroy(sv_ccache *c)
{
    if (!c) return;
    sv_umap_free(&c->map);
    pthread_mutex_destroy(&c->pmu);
    rk_free(c);
}

int sv_ccache_get(sv_ccache *c, uint32_t user, uint64_t stamp, int64_t now_ms,
                  rk_candidate *out, size_t cap, size_t *n)
{
    if (c->off) return 0;
    sv_umap_shard *sh = sv_umap_lock(&c->map, user);
    centry *e = sv_umap_get(sh, user);
    int hit = e && e->stamp == stamp &&
              now_ms - e->at_ms < (int64_t)c->ttl_s * 1000 && e->n <= cap;
    if (hit) {
        memcpy(out, e->c, e->n * sizeof *out);
        *n = e->n;
    }
    sv_umap_unlock(sh);
    atomic_fetch_add(hit ? &c->hits : &c->misses, 1);
    return hit;
}

void sv_ccache_put(sv_ccache *c, uint32_t user, uint64_t stamp, int64_t now_ms,
                   const rk_candidate *cands, size_t n)
{
    if (c->off) return;
    centry *e = rk_malloc(sizeof *e + n * sizeof *cands);
    if (!e) return;
    e->stamp = stamp;
    e->at_ms = now_ms;
    e->n = n;
    memcpy(e->c, cands, n * sizeof *cands);
    sv_umap_shard *sh = sv_umap_lock(&c->map, user);
    if (sv_umap_get(sh, user)) sv_umap_del(&c->map, sh, user);
    if (sv_umap_put(&c->map, sh, user, e)) rk_free(e);
    sv_umap_unlock(sh);
}

void sv_ccache_invalidate(sv_ccache *c, uint32_t user)
{
    if (c->off) return;
    sv_umap_shard *sh = sv_umap_lock(&c->map, user);
    int had = sv_umap_get(sh, user) != NULL;
    sv_umap_unlock(sh);
    /* The entry's stamp no longer matches (the history version moved);
     * queue the user so the list is ready before their next request. */
    if (!had) return;
    pthread_mutex_lock(&c->pmu);
    if (c->npending < PENDING_MAX) c->pending[c->npending++] = user;
    pthread_mutex_unlock(&c->pmu);
}

size_t sv_ccache_pending(sv_ccache *c, uint32_t *users, size_t cap)
{
    pthread_mutex_lock(&c->pmu);
    size_t n = c->npending < cap ? c->npending : cap;
    memcpy(users, c->pending + (c->npending - n), n * sizeof *users);
    c->npending -= n;
    pthread_mutex_unlock(&c->pmu);
    return n;
}

static void entry_bytes(void *arg, const void *obj)
{
    size_t *acc = arg;
    acc[0]++;
    acc[1] += sizeof(centry) + ((const centry *)obj)->n * sizeof(rk_candidate);
}

void sv_ccache_stats(sv_ccache *c, size_t *entries, size_t *bytes,
                     uint64_t *hits, uint64_t *misses, uint64_t *evictions)
{
    size_t acc[2] = {0, 0};
    if (!c->off) sv_umap_each(&c->map, entry_bytes, acc);
    *entries = acc[0];
    *bytes = acc[1];
    *evictions = atomic_load(&c->map.evictions);
    *hits = atomic_load(&c->hits);
    *misses = atomic_load(&c->misses);
}
