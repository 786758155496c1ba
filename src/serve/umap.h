/* umap.h — bounded sharded map from dense user id to an owned object
 * (umap.c); internal to src/serve/. */
#ifndef RK_SERVE_UMAP_H
#define RK_SERVE_UMAP_H

#include <pthread.h>
#include <stdatomic.h>

#include "rk_core.h"

#define SV_UMAP_SHARDS 64

typedef struct sv_umap_shard {
    pthread_mutex_t mu;
    rk_map *map;             /* user id -> object pointer */
    size_t hand;             /* eviction clock hand */
} sv_umap_shard;

typedef struct sv_umap {
    sv_umap_shard sh[SV_UMAP_SHARDS];
    size_t per_shard;
    void (*free_fn)(void *);
    atomic_uint_fast64_t evictions;
} sv_umap;

int sv_umap_init(sv_umap *m, size_t max_users, void (*free_fn)(void *));
void sv_umap_free(sv_umap *m);
/* Locks and returns the user's shard; every call below needs it held. */
sv_umap_shard *sv_umap_lock(sv_umap *m, uint32_t user);
void sv_umap_unlock(sv_umap_shard *sh);
void *sv_umap_get(sv_umap_shard *sh, uint32_t user);
/* Inserts (the user must be absent), evicting one entry when full. */
int sv_umap_put(sv_umap *m, sv_umap_shard *sh, uint32_t user, void *obj);
void sv_umap_del(sv_umap *m, sv_umap_shard *sh, uint32_t user);
size_t sv_umap_size(sv_umap *m);
/* Calls fn for every object, each shard locked in turn (for statistics). */
void sv_umap_each(sv_umap *m, void (*fn)(void *arg, const void *obj), void *arg);

#endif
