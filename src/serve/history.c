/*
 * history.c — each user's recent events in memory: what the pipeline
 * folds into the user vector, seeds co-visitation with, and filters as
 * "seen". Built at start from the event log and appended to by every
 * acknowledged /v1/events write, so it is always a function of the
 * durable log. A ring per user grows by doubling up to `per_user` entries;
 * at most max_users users are held (umap.c evicts beyond), so memory is
 * bounded by max_users x per_user x 24 bytes in the worst case. Each
 * user's version counts their events: the candidate cache keys on it.
 */
#include <string.h>

#include "serve/serve_int.h"
#include "serve/umap.h"

typedef struct hent {
    uint32_t item;
    float w;
    int64_t ts;
    uint32_t seen;
} hent;

typedef struct hring {
    uint32_t cap, n, head;   /* head = index of the oldest entry */
    uint64_t version;
    hent e[];
} hring;

struct sv_history {
    sv_umap map;
    uint32_t per_user;
};

static void ring_free(void *p) { rk_free(p); }

int sv_history_create(sv_history **out, size_t max_users, uint32_t per_user)
{
    sv_history *h = rk_calloc(1, sizeof *h);
    if (!h) return RK_ENOMEM;
    h->per_user = per_user ? per_user : 1;
    if (sv_umap_init(&h->map, max_users, ring_free)) {
        sv_umap_free(&h->map);
        rk_free(h);
        return RK_ENOMEM;
    }
    *out = h;
    return 0;
}

void sv_history_destroy(sv_history *h)
{
    if (!h) return;
    sv_umap_free(&h->map);
    rk_free(h);
}

void sv_history_add(sv_history *h, uint32_t user, uint32_t item, int64_t ts,
                    float weight, int seen)
{
    sv_umap_shard *sh = sv_umap_lock(&h->map, user);
    hring *r = sv_umap_get(sh, user);
    if (!r) {
        uint32_t cap = h->per_user < 8 ? h->per_user : 8;
        r = rk_calloc(1, sizeof *r + cap * sizeof(hent));
        if (!r) goto out;
        r->cap = cap;
        if (sv_umap_put(&h->map, sh, user, r)) {
            rk_free(r);
            goto out;
        }
    } else if (r->n == r->cap && r->cap < h->per_user) {
        uint32_t cap = r->cap * 2 < h->per_user ? r->cap * 2 : h->per_user;
        hring *g = rk_malloc(sizeof *g + cap * sizeof(hent));
        if (g) {
            *g = *r;
            for (uint32_t i = 0; i < r->n; i++)
                g->e[i] = r->e[(r->head + i) % r->cap];
            g->head = 0;
            g->cap = cap;
            rk_map_put(sh->map, &user, sizeof user, (uint64_t)(uintptr_t)g);
            rk_free(r);
            r = g;
        }
    }
    hent e = {item, weight, ts, (uint32_t)seen};
    if (r->n < r->cap) {
        r->e[(r->head + r->n) % r->cap] = e;
        r->n++;
    } else {
        r->e[r->head] = e;
        r->head = (r->head + 1) % r->cap;
    }
    r->version++;
out:
    sv_umap_unlock(sh);
}

size_t sv_history_get(sv_history *h, uint32_t user, uint32_t *items,
                      int64_t *ts, float *w, size_t cap, int seen_only)
{
    sv_umap_shard *sh = sv_umap_lock(&h->map, user);
    hring *r = sv_umap_get(sh, user);
    size_t k = 0;
    if (r)
        for (uint32_t i = 0; i < r->n && k < cap; i++) {
            const hent *e = &r->e[(r->head + i) % r->cap];
            if (seen_only && !e->seen) continue;
            if (items) items[k] = e->item;
            if (ts) ts[k] = e->ts;
            if (w) w[k] = e->w;
            k++;
        }
    sv_umap_unlock(sh);
    return k;
}

uint64_t sv_history_version(sv_history *h, uint32_t user)
{
    sv_umap_shard *sh = sv_umap_lock(&h->map, user);
    hring *r = sv_umap_get(sh, user);
    uint64_t v = r ? r->version : 0;
    sv_umap_unlock(sh);
    return v;
}

size_t sv_history_users(sv_history *h) { return sv_umap_size(&h->map); }

uint64_t sv_history_evictions(sv_history *h)
{
    return atomic_load(&h->map.evictions);
}

static void ring_bytes(void *arg, const void *obj)
{
    *(size_t *)arg += sizeof(hring) + ((const hring *)obj)->cap * sizeof(hent);
}

size_t sv_history_bytes(sv_history *h)
{
    size_t n = 0;
    sv_umap_each(&h->map, ring_bytes, &n);
    return n;
}
