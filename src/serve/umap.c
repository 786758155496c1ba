/*
 * umap.c — the per-user state the server keeps in memory (histories,
 * candidate lists) lives in bounded, sharded maps from dense user id to an
 * owned object. A full shard evicts the entry under its clock hand (the
 * map's slot order, unrelated to activity: cheap random replacement) and
 * frees it with the owner's destructor, so memory never grows past the
 * configured number of users. Each shard has its own mutex.
 */
#include <string.h>

#include "serve/serve_int.h"
#include "serve/umap.h"

int sv_umap_init(sv_umap *m, size_t max_users, void (*free_fn)(void *))
{
    memset(m, 0, sizeof *m);
    m->free_fn = free_fn;
    size_t per = max_users / SV_UMAP_SHARDS + 1;
    m->per_shard = per;
    for (size_t i = 0; i < SV_UMAP_SHARDS; i++) {
        pthread_mutex_init(&m->sh[i].mu, NULL);
        if (rk_map_create(&m->sh[i].map, per + 1)) return RK_ENOMEM;
    }
    return 0;
}

void sv_umap_free(sv_umap *m)
{
    for (size_t i = 0; i < SV_UMAP_SHARDS; i++) {
        if (!m->sh[i].map) continue;
        size_t it = 0;
        uint64_t v;
        while (rk_map_next(m->sh[i].map, &it, NULL, NULL, &v))
            m->free_fn((void *)(uintptr_t)v);
        rk_map_destroy(m->sh[i].map);
        pthread_mutex_destroy(&m->sh[i].mu);
    }
}

sv_umap_shard *sv_umap_lock(sv_umap *m, uint32_t user)
{
    sv_umap_shard *sh = &m->sh[(user * 2654435761u) >> 26 & (SV_UMAP_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    return sh;
}

void sv_umap_unlock(sv_umap_shard *sh) { pthread_mutex_unlock(&sh->mu); }

void *sv_umap_get(sv_umap_shard *sh, uint32_t user)
{
    uint64_t v;
    return rk_map_get(sh->map, &user, sizeof user, &v) ? NULL
                                                       : (void *)(uintptr_t)v;
}

int sv_umap_put(sv_umap *m, sv_umap_shard *sh, uint32_t user, void *obj)
{
    if (rk_map_size(sh->map) >= m->per_shard) {
        /* Evict the entry under the clock hand. */
        const void *key;
        size_t klen;
        uint64_t v;
        size_t it = sh->hand;
        if (!rk_map_next(sh->map, &it, &key, &klen, &v)) {
            it = 0;
            if (!rk_map_next(sh->map, &it, &key, &klen, &v)) return RK_ENOMEM;
        }
        sh->hand = it;
        uint32_t victim;
        memcpy(&victim, key, sizeof victim);
        m->free_fn((void *)(uintptr_t)v);
        rk_map_del(sh->map, &victim, sizeof victim);
        atomic_fetch_add(&m->evictions, 1);
    }
    return rk_map_put(sh->map, &user, sizeof user, (uint64_t)(uintptr_t)obj);
}

void sv_umap_del(sv_umap *m, sv_umap_shard *sh, uint32_t user)
{
    uint64_t v;
    if (rk_map_get(sh->map, &user, sizeof user, &v)) return;
    m->free_fn((void *)(uintptr_t)v);
    rk_map_del(sh->map, &user, sizeof user);
}

size_t sv_umap_size(sv_umap *m)
{
    size_t n = 0;
    for (size_t i = 0; i < SV_UMAP_SHARDS; i++) {
        pthread_mutex_lock(&m->sh[i].mu);
        n += rk_map_size(m->sh[i].map);
        pthread_mutex_unlock(&m->sh[i].mu);
    }
    return n;
}

void sv_umap_each(sv_umap *m, void (*fn)(void *arg, const void *obj), void *arg)
{
    for (size_t i = 0; i < SV_UMAP_SHARDS; i++) {
        sv_umap_shard *sh = &m->sh[i];
        pthread_mutex_lock(&sh->mu);
        size_t it = 0;
        uint64_t v;
        while (rk_map_next(sh->map, &it, NULL, NULL, &v))
            fn(arg, (const void *)(uintptr_t)v);
        pthread_mutex_unlock(&sh->mu);
    }
}
