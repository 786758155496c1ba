/*
 * gen_int.h — internals shared by the heuristic generators (covis.c,
 * popular.c, content.c) and the merger (merge.c): how an event becomes a
 * weight, bounded top-k selection, neighbour lists in CSR form with their
 * query and file format, and a fixed-size uint32 hash map for per-request
 * scratch. Not part of the public API.
 */
#ifndef RK_GEN_INT_H
#define RK_GEN_INT_H

#include "rk_retrieval.h"

/* The weight an event contributes to the heuristic generators under o (the
 * rules of rk_interactions_from_store), or 0 when it does not count:
 * exposures and negatives never count, valued events below valued_min
 * neither, nor events outside [from_ts, to_ts). */
float rk__gen_event_weight(const rk_schema *sc, const rk_inter_opts *o,
                           const rk_event *ev);

/* The order of every candidate list: higher score first, then smaller
 * item. NaN scores never reach here (builders only produce finite ones). */
static inline int rk__cand_better(float sa, uint32_t ia, float sb, uint32_t ib)
{
    return sa > sb || (sa == sb && ia < ib);
}
/* qsort comparator for rk_candidate, best first. */
int rk__cand_cmp(const void *a, const void *b);

/* Bounded selection of the k best candidates: a min-heap whose root is the
 * worst kept one. buf holds k entries and is owned by the caller. */
typedef struct rk__topk {
    rk_candidate *v;
    size_t n, k;
} rk__topk;

void rk__topk_init(rk__topk *t, rk_candidate *buf, size_t k);
void rk__topk_push(rk__topk *t, uint32_t item, float score, uint8_t src);
/* Sorts the kept candidates best first; returns their count. */
size_t rk__topk_finish(rk__topk *t);

/* Item -> neighbour lists, best first: the neighbours of x are
 * item[ptr[x] .. ptr[x+1]) with score[...]; at most top_n each. */
typedef struct rk__nbrs {
    uint32_t nitems, top_n;
    uint64_t nnz;
    uint64_t *ptr;   /* nitems + 1 */
    uint32_t *item;  /* nnz */
    float *score;    /* nnz */
} rk__nbrs;

void rk__nbrs_free(rk__nbrs *nb);
void rk__nbrs_get(const rk__nbrs *nb, uint32_t x, const uint32_t **items,
                  const float **scores, size_t *n);
/* Sum of seed.weight * score over the seeds' lists, seeds left out, k best
 * written to out with source src. */
int rk__nbrs_query(const rk__nbrs *nb, const rk_seed *seeds, size_t nseeds,
                   size_t k, uint8_t src, rk_candidate *out, size_t *nout);
/* File format (little-endian, as every platform rankd targets):
 *   magic[8] | u32 version | u32 nmeta | u32 nitems | u32 top_n | u64 nnz
 *   | f64 meta[nmeta] | u64 ptr[nitems+1] | u32 item[nnz] | f32 score[nnz]
 *   | u64 checksum
 * The checksum chains rk_hash64 over the sections in order, so writing and
 * checking never need the whole file in one buffer. meta carries the build
 * options for the record. */
#define RK__NBRS_VERSION 1u
int rk__nbrs_save(const rk__nbrs *nb, const char magic[8], const double *meta,
                  uint32_t nmeta, const char *path, rk_err *err);
/* meta receives up to nmeta values (missing ones are left untouched). */
int rk__nbrs_load(rk__nbrs *nb, const char magic[8], double *meta,
                  uint32_t nmeta, const char *path, rk_err *err);

/* A fixed-capacity open-addressing map uint32 -> uint32 for per-call
 * scratch (never grows: the caller knows the most keys it will insert).
 * UINT32_MAX is the empty key and cannot be stored. */
typedef struct rk__u32map {
    uint32_t *keys, *vals;
    size_t mask;
} rk__u32map;

int rk__u32map_init(rk__u32map *m, size_t max_keys);
void rk__u32map_free(rk__u32map *m);
/* Pointer to key's value, inserting it with value `dflt` when absent
 * (*inserted = 1). Never fails while at most max_keys distinct keys. */
uint32_t *rk__u32map_put(rk__u32map *m, uint32_t key, uint32_t dflt,
                         int *inserted);
/* Pointer to key's value or NULL. */
uint32_t *rk__u32map_get(const rk__u32map *m, uint32_t key);

static inline int rk__bit_get(const uint64_t *bits, uint32_t nbits, uint32_t i)
{
    return bits && i < nbits && (bits[i >> 6] >> (i & 63)) & 1u;
}
static inline void rk__bit_set(uint64_t *bits, uint32_t i)
{
    bits[i >> 6] |= (uint64_t)1 << (i & 63);
}

#endif /* RK_GEN_INT_H */
