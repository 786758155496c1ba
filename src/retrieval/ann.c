/*
 * ann.c — the ANN index front: parameters, storage, the label map, the
 * bounded pool of search scratch, insertion and deletion, search dispatch
 * to HNSW (hnsw.c) or the exact scan (flat.c), and the file format.
 *
 * Invariants:
 *  - slots [0, n) are filled; a slot's vector never changes once filled;
 *  - live == number of slots in [0, n) with dead[slot] == 0, and each live
 *    label has exactly one live slot, the one the label map points at;
 *  - every mutation holds the write side of a->rw; searches hold the read
 *    side, so a search never sees a half-inserted node or a moving array;
 *  - insertion first does everything that can fail (checks, allocation),
 *    then writes; an error leaves the index unchanged.
 *
 * File format (little-endian), version 1:
 *   header (ANN_HDR_SIZE bytes, struct ann_hdr below, xxh3 of itself with
 *   the hash field zeroed), then four sections at 64-byte aligned offsets,
 *   zero bytes in the gaps, each with its own xxh3:
 *     slots    n x {u32 label, u8 level, u8 dead, u16 0}
 *     records  n x rec_size (HNSW level-0 links + vectors)
 *     upper    upper_words x u32 (upper-level blocks in slot order)
 *     fvec     n x dim x f32 (flat, or int8 with rerank)
 * A loaded file is checked completely before use: header, every checksum,
 * then structure (ranges, link targets, levels, labels, finite vectors), so
 * neither a damaged file nor one crafted to pass the checksums can make a
 * search read out of bounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "retrieval/ann_int.h"

#define ANN_MAGIC "RKANNIDX"
#define ANN_VERSION 1u
#define ANN_HDR_SIZE 256u
#define ANN_NSEC 4
enum { SEC_SLOTS, SEC_RECORDS, SEC_UPPER, SEC_FVEC };
static const char *const sec_name[ANN_NSEC] = {"slots", "records", "upper",
                                               "vectors"};

typedef struct ann_sec {
    uint64_t off, len, hash;
} ann_sec;

typedef struct ann_hdr {
    char magic[8];
    uint32_t version, header_size;
    uint32_t type, metric, quant, rerank;
    uint32_t dim, M, M0, ef_construction;
    uint32_t ef_search, max_elements, max_searchers, n;
    uint32_t live, entry, max_level, rec_size;
    uint32_t vec_off, reserved;
    uint64_t seed, rng, upper_words, file_size;
    ann_sec sec[ANN_NSEC];
    uint64_t header_hash;
    unsigned char pad[ANN_HDR_SIZE - 224];
} ann_hdr;

_Static_assert(sizeof(ann_hdr) == ANN_HDR_SIZE, "header layout");
_Static_assert(offsetof(ann_hdr, header_hash) == 216, "header layout");

typedef struct ann_slot {
    uint32_t label;
    uint8_t level, dead;
    uint16_t zero;
} ann_slot;

#define HASH_SEED 0x524b414e4e494458ull /* "RKANNIDX" */

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

/* ---- parameters ----------------------------------------------------------- */

void rk_ann_params_default(rk_ann_params *p)
{
    memset(p, 0, sizeof *p);
    p->type = RK_ANN_HNSW;
    p->metric = RK_ANN_IP;
    p->quant = RK_ANN_F32;
    p->M = 16;
    p->ef_construction = 200;
    p->ef_search = 64;
    p->max_searchers = 16;
    p->seed = 42;
}

/* Fills zero knobs with defaults and range-checks everything. */
static int params_check(rk_ann_params *p, rk_err *err)
{
    if (p->M == 0) p->M = 16;
    if (p->ef_construction == 0) p->ef_construction = 200;
    if (p->ef_search == 0) p->ef_search = 64;
    if (p->max_searchers == 0) p->max_searchers = 16;
    if ((unsigned)p->type > RK_ANN_FLAT)
        return rk_err_set(err, RK_EINVAL, "ann: unknown index type %d",
                          (int)p->type);
    if ((unsigned)p->metric > RK_ANN_COSINE)
        return rk_err_set(err, RK_EINVAL, "ann: unknown metric %d",
                          (int)p->metric);
    if ((unsigned)p->quant > RK_ANN_INT8)
        return rk_err_set(err, RK_EINVAL, "ann: unknown quantization %d",
                          (int)p->quant);
    if (p->type == RK_ANN_FLAT && p->quant != RK_ANN_F32)
        return rk_err_set(err, RK_EINVAL,
                          "ann: a flat index stores float32 vectors "
                          "(quant must be RK_ANN_F32)");
    if (p->dim < 1 || p->dim > RK_ANN_MAX_DIM)
        return rk_err_set(err, RK_EINVAL, "ann: dim %u outside 1..%u", p->dim,
                          RK_ANN_MAX_DIM);
    if (p->M < 2 || p->M > RK_ANN_MAX_M)
        return rk_err_set(err, RK_EINVAL, "ann: M %u outside 2..%u", p->M,
                          RK_ANN_MAX_M);
    if (p->ef_construction > RK_ANN_MAX_EF || p->ef_search > RK_ANN_MAX_EF)
        return rk_err_set(err, RK_EINVAL, "ann: ef above %u", RK_ANN_MAX_EF);
    if (p->max_elements < 1 || p->max_elements > RK_ANN_MAX_ELEMENTS)
        return rk_err_set(err, RK_EINVAL, "ann: max_elements %u outside 1..%u",
                          p->max_elements, RK_ANN_MAX_ELEMENTS);
    if (p->max_searchers > 4096)
        return rk_err_set(err, RK_EINVAL, "ann: max_searchers %u above 4096",
                          p->max_searchers);
    p->rerank = p->quant == RK_ANN_INT8 && p->rerank ? 1 : 0;
    return 0;
}

static int has_fvec(const rk_ann_params *p)
{
    return p->type == RK_ANN_FLAT || p->rerank;
}

/* ---- label map ------------------------------------------------------------- */

#define LMAP_EMPTY UINT64_MAX

static uint64_t lmap_slot0(const rk__ann_lmap *m, uint32_t label)
{
    /* Fibonacci hashing: dense ids spread evenly over the table. */
    return ((uint64_t)label * 0x9e3779b97f4a7c15ull >> 20) & m->mask;
}

static int lmap_init(rk__ann_lmap *m, uint32_t cap, size_t *bytes)
{
    uint64_t size = 16;
    while (size < 2 * (uint64_t)cap) size *= 2;
    m->e = rk_malloc(size * sizeof *m->e);
    if (!m->e) return RK_ENOMEM;
    memset(m->e, 0xff, size * sizeof *m->e);
    m->mask = size - 1;
    *bytes += size * sizeof *m->e;
    return 0;
}

static uint32_t lmap_get(const rk__ann_lmap *m, uint32_t label)
{
    for (uint64_t i = lmap_slot0(m, label);; i = (i + 1) & m->mask) {
        uint64_t e = m->e[i];
        if (e == LMAP_EMPTY) return RK__ANN_NONE;
        if ((uint32_t)(e >> 32) == label) return (uint32_t)e;
    }
}

/* Maps label to slot; returns the slot it mapped to before or NONE. The
 * table holds at most cap labels in 2 * cap entries, so a free entry is
 * always found. */
static uint32_t lmap_put(rk__ann_lmap *m, uint32_t label, uint32_t slot)
{
    for (uint64_t i = lmap_slot0(m, label);; i = (i + 1) & m->mask) {
        uint64_t e = m->e[i];
        if (e == LMAP_EMPTY || (uint32_t)(e >> 32) == label) {
            m->e[i] = (uint64_t)label << 32 | slot;
            return e == LMAP_EMPTY ? RK__ANN_NONE : (uint32_t)e;
        }
    }
}

/* ---- scratch pool ---------------------------------------------------------- */

static void scratch_free(rk__ann_scratch *s)
{
    if (!s) return;
    rk_free(s->visited);
    rk_free(s->pool);
    rk_free(s->q);
    rk_free(s->qn);
    rk_free(s->sel);
    rk_free(s->cand);
    rk_free(s->ids);
    rk_free(s->links);
    rk_free(s->scores);
    rk_free(s->hits);
    rk_free(s);
}

static int scratch_new(const rk_ann *a, rk__ann_scratch **out)
{
    rk__ann_scratch *s = rk_calloc(1, sizeof *s);
    if (!s) return RK_ENOMEM;
    size_t dim = a->p.dim, m0 = a->M0;
    s->q = rk_malloc(dim * sizeof(float));
    s->qn = rk_malloc(dim * sizeof(float));
    s->bytes = sizeof *s + 2 * dim * sizeof(float);
    int ok = s->q && s->qn;
    if (a->p.type == RK_ANN_HNSW) {
        s->visited = rk_calloc(a->cap, sizeof *s->visited);
        s->sel = rk_malloc(m0 * dim * sizeof(float));
        s->cand = rk_malloc((m0 + 1) * sizeof *s->cand);
        s->ids = rk_malloc(m0 * sizeof *s->ids);
        s->links = rk_malloc(m0 * sizeof *s->links);
        s->bytes += (size_t)a->cap * sizeof *s->visited +
                    m0 * dim * sizeof(float) + (m0 + 1) * sizeof *s->cand +
                    2 * m0 * sizeof(uint32_t);
        ok = ok && s->visited && s->sel && s->cand && s->ids && s->links;
    } else {
        s->scores = rk_malloc(RK__ANN_FLAT_BLOCK * sizeof *s->scores);
        s->hits = rk_malloc(RK__ANN_FLAT_BLOCK * sizeof *s->hits);
        s->bytes += RK__ANN_FLAT_BLOCK * (sizeof *s->scores + sizeof *s->hits);
        ok = ok && s->scores && s->hits;
    }
    if (!ok) {
        scratch_free(s);
        return RK_ENOMEM;
    }
    *out = s;
    return 0;
}

int rk__ann_scratch_reserve(rk__ann_scratch *s, uint32_t n)
{
    if (s->pool_cap >= n) return 0;
    rk__ann_cand *p = rk_realloc(s->pool, (size_t)n * sizeof *p);
    if (!p) return RK_ENOMEM;
    s->bytes += (size_t)(n - s->pool_cap) * sizeof *p;
    s->pool = p;
    s->pool_cap = n;
    return 0;
}

int rk__ann_scratch_get(rk_ann *a, rk__ann_scratch **out)
{
    pthread_mutex_lock(&a->smu);
    while (!a->free_scratch && a->nscratch >= a->max_scratch)
        pthread_cond_wait(&a->scv, &a->smu);
    rk__ann_scratch *s = a->free_scratch;
    if (s) {
        a->free_scratch = s->next;
        pthread_mutex_unlock(&a->smu);
        *out = s;
        return 0;
    }
    /* Claim a place for a new block, then allocate outside the lock. */
    a->nscratch++;
    pthread_mutex_unlock(&a->smu);
    int rc = scratch_new(a, &s);
    pthread_mutex_lock(&a->smu);
    if (rc) {
        a->nscratch--;
        pthread_cond_signal(&a->scv);
    } else {
        a->scratch_bytes += s->bytes;
    }
    pthread_mutex_unlock(&a->smu);
    *out = s;
    return rc;
}

void rk__ann_scratch_put(rk_ann *a, rk__ann_scratch *s)
{
    pthread_mutex_lock(&a->smu);
    /* Pool growth since the block was taken is accounted on return. */
    s->next = a->free_scratch;
    a->free_scratch = s;
    pthread_cond_signal(&a->scv);
    pthread_mutex_unlock(&a->smu);
}

/* Recomputes scratch_bytes from the free list (all blocks are free when
 * the write lock is held). */
static void scratch_account(rk_ann *a)
{
    size_t b = 0;
    pthread_mutex_lock(&a->smu);
    for (rk__ann_scratch *s = a->free_scratch; s; s = s->next) b += s->bytes;
    a->scratch_bytes = b;
    pthread_mutex_unlock(&a->smu);
}

/* Pool room for a beam of L: L entries plus room for tombstones that
 * ride along (see hnsw.c), plus one for the insert-then-trim step. */
static uint32_t pool_need(uint32_t L) { return L + L / 2 + 9; }

int rk__ann_scratch_prefill(rk_ann *a, uint32_t n)
{
    /* Called with the write lock held: no search holds a block, so every
     * existing block is on the free list. */
    rk__ann_scratch *got = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rk__ann_scratch *s;
        rc = rk__ann_scratch_get(a, &s);
        if (rc == 0) {
            rc = rk__ann_scratch_reserve(s, pool_need(a->p.ef_construction));
            s->next = got;
            got = s;
        }
    }
    while (got) {
        rk__ann_scratch *nx = got->next;
        rk__ann_scratch_put(a, got);
        got = nx;
    }
    scratch_account(a);
    return rc;
}

/* ---- storage ---------------------------------------------------------------- */

static void *alloc_aligned(size_t size, void **raw)
{
    unsigned char *p = rk_malloc(size + 63);
    *raw = p;
    if (!p) return NULL;
    return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Allocates a shell: struct, locks, kernels. Storage comes after. */
static int ann_shell(rk_ann **out, const rk_ann_params *p, uint32_t cap,
                     rk_err *err)
{
    rk_ann *a = rk_calloc(1, sizeof *a);
    if (!a) return rk_err_set(err, RK_ENOMEM, "ann: out of memory");
    a->p = *p;
    a->p.max_elements = cap;
    a->cap = cap;
    a->M0 = 2 * p->M;
    a->entry = RK__ANN_NONE;
    a->mult = 1.0 / log((double)p->M);
    a->rng = p->seed;
    a->rerank_on = p->rerank;
    a->max_scratch = p->max_searchers;
    a->heap_bytes = sizeof *a;
    if (p->type == RK_ANN_HNSW) a->rec_size = rk__hnsw_record_size(p, &a->vec_off);
    int rc = rk__ann_kernels_select(&a->k, err);
    if (rc) {
        rk_free(a);
        return rc;
    }
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Writers (item updates) must not starve under a steady search load. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&a->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&a->gmu, NULL);
    pthread_mutex_init(&a->smu, NULL);
    pthread_cond_init(&a->scv, NULL);
    *out = a;
    return 0;
}

/* Per-slot arrays and the label map; rec/fvec too unless borrowed. */
static int ann_alloc(rk_ann *a, int borrowed)
{
    size_t cap = a->cap;
    a->labels = rk_malloc(cap * sizeof *a->labels);
    a->dead = rk_calloc(cap, 1);
    a->heap_bytes += cap * (sizeof *a->labels + 1);
    if (!a->labels || !a->dead) return RK_ENOMEM;
    if (a->p.type == RK_ANN_HNSW) {
        a->levels = rk_calloc(cap, 1);
        a->upper = rk_calloc(cap, sizeof *a->upper);
        a->heap_bytes += cap * (1 + sizeof *a->upper);
        if (!a->levels || !a->upper) return RK_ENOMEM;
        if (!borrowed) {
            a->rec = alloc_aligned(cap * a->rec_size, &a->rec_raw);
            if (!a->rec) return RK_ENOMEM;
            a->heap_bytes += cap * a->rec_size;
        }
    }
    if (has_fvec(&a->p) && !borrowed) {
        a->fvec = alloc_aligned(cap * a->p.dim * sizeof(float), &a->fvec_raw);
        if (!a->fvec) return RK_ENOMEM;
        a->heap_bytes += cap * a->p.dim * sizeof(float);
    }
    return lmap_init(&a->lmap, a->cap, &a->heap_bytes);
}

void rk_ann_destroy(rk_ann *a)
{
    if (!a) return;
    while (a->free_scratch) {
        rk__ann_scratch *s = a->free_scratch;
        a->free_scratch = s->next;
        scratch_free(s);
    }
    if (a->upper && !a->readonly)
        for (uint32_t i = 0; i < a->n; i++) rk_free(a->upper[i]);
    rk_free(a->upper);
    rk_free(a->levels);
    rk_free(a->labels);
    rk_free(a->dead);
    rk_free(a->lmap.e);
    rk_free(a->rec_raw);
    rk_free(a->fvec_raw);
    if (a->mapped) munmap((void *)a->map, a->map_len);
    pthread_rwlock_destroy(&a->rw);
    pthread_mutex_destroy(&a->gmu);
    pthread_mutex_destroy(&a->smu);
    pthread_cond_destroy(&a->scv);
    rk_free(a);
}

int rk_ann_create(rk_ann **out, const rk_ann_params *params, rk_err *err)
{
    if (!out || !params) return rk_err_set(err, RK_EINVAL, "ann: NULL argument");
    *out = NULL;
    rk_ann_params p = *params;
    int rc = params_check(&p, err);
    if (rc) return rc;
    rk_ann *a;
    rc = ann_shell(&a, &p, p.max_elements, err);
    if (rc) return rc;
    if (ann_alloc(a, 0) != 0) {
        rk_ann_destroy(a);
        return rk_err_set(err, RK_ENOMEM,
                          "ann: out of memory for %u slots of dim %u",
                          p.max_elements, p.dim);
    }
    *out = a;
    return 0;
}

/* ---- queries and vectors ------------------------------------------------------ */

void rk__ann_prepare_query(const rk_ann *a, const float *q, float *out)
{
    size_t dim = a->p.dim;
    memcpy(out, q, dim * sizeof *out);
    if (a->p.metric == RK_ANN_COSINE) {
        float nn = a->k.dot_f32(out, out, dim);
        /* A zero vector stays zero: it scores 0 against everything. */
        if (nn > 0) {
            float inv = 1.0f / sqrtf(nn);
            for (size_t i = 0; i < dim; i++) out[i] *= inv;
        }
    }
}

/* Stores vec in slot id's record (and float copy). tmp: dim floats. */
static void put_vector(rk_ann *a, uint32_t id, const float *vec, float *tmp)
{
    size_t dim = a->p.dim;
    rk__ann_prepare_query(a, vec, tmp);
    if (a->fvec) memcpy(a->fvec + (size_t)id * dim, tmp, dim * sizeof(float));
    if (a->p.type != RK_ANN_HNSW) return;
    unsigned char *r = a->rec + (size_t)id * a->rec_size;
    /* Sentinel links, zero padding: saved files are byte-identical for
     * the same inputs. */
    memset(r, 0xff, a->M0 * sizeof(uint32_t));
    memset(r + a->vec_off, 0, a->rec_size - a->vec_off);
    if (a->p.quant == RK_ANN_F32) {
        memcpy(r + a->vec_off, tmp, dim * sizeof(float));
    } else {
        float scale = rk__ann_quantize_i8(tmp, dim, (int8_t *)(r + a->vec_off + 4));
        memcpy(r + a->vec_off, &scale, sizeof scale);
    }
}

/* splitmix64: the level generator. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* floor(-ln(U) * mult) with U uniform in (0, 1], capped. */
static int draw_level(uint64_t *rng, double mult)
{
    double u = (double)((rng_next(rng) >> 11) + 1) * 0x1p-53;
    double l = -log(u) * mult;
    return l >= RK__ANN_MAX_LEVEL ? RK__ANN_MAX_LEVEL : (int)l;
}

/* ---- insertion ------------------------------------------------------------------ */

typedef struct build_job {
    rk_ann *a;
    uint32_t first, n;
    atomic_uint next;
} build_job;

static void build_worker(void *arg, size_t begin, size_t end)
{
    build_job *j = arg;
    for (size_t w = begin; w < end; w++) {
        rk__ann_scratch *s;
        /* Blocks were prefilled for every worker: this does not allocate
         * and cannot fail. */
        if (rk__ann_scratch_get(j->a, &s) != 0) return;
        for (;;) {
            uint32_t i = atomic_fetch_add(&j->next, 1);
            if (i >= j->n) break;
            rk__hnsw_insert(j->a, j->first + i, s, 1);
        }
        rk__ann_scratch_put(j->a, s);
    }
}

static int add_locked(rk_ann *a, const uint32_t *labels, const float *vecs,
                      size_t n, rk_pool *pool, rk_err *err)
{
    size_t dim = a->p.dim;
    if (a->readonly)
        return rk_err_set(err, RK_ESTATE,
                          "ann: index was loaded read-only (mapped); load "
                          "with RK_ANN_LOAD_COPY to insert");
    if (n > (size_t)(a->cap - a->n))
        return rk_err_set(err, RK_ELIMIT,
                          "ann: index full: %u of %u slots used, %zu more "
                          "requested (deleted and replaced entries keep "
                          "their slots until a rebuild)",
                          a->n, a->cap, n);
    for (size_t i = 0; i < n * dim; i++)
        if (!isfinite(vecs[i]))
            return rk_err_set(err, RK_EINVAL,
                              "ann: vector %zu (label %u) has a non-finite "
                              "component %zu",
                              i / dim, labels[i / dim], i % dim);
    int hnsw = a->p.type == RK_ANN_HNSW;
    unsigned workers = 1;
    if (pool && hnsw && n > 1) {
        workers = rk_pool_threads(pool) + 1;
        if (workers > a->max_scratch) workers = a->max_scratch;
        if ((size_t)workers > n) workers = (unsigned)n;
    }

    /* Phase 1: everything that can fail. Levels are drawn from a copy of
     * the generator, committed only on success; upper-level blocks are
     * allocated here so that linking never allocates. */
    uint64_t rng = a->rng;
    uint8_t lev1 = 0;
    uint32_t *blk1 = NULL;
    uint8_t *lev = &lev1;
    uint32_t **blk = &blk1;
    int rc = 0;
    if (hnsw && n > 1) {
        lev = rk_malloc(n);
        blk = rk_calloc(n, sizeof *blk);
        if (!lev || !blk) rc = RK_ENOMEM;
    }
    uint64_t words = 0;
    for (size_t i = 0; hnsw && rc == 0 && i < n; i++) {
        lev[i] = (uint8_t)draw_level(&rng, a->mult);
        if (lev[i] > 0) {
            size_t w = (size_t)lev[i] * a->p.M;
            blk[i] = rk_malloc(w * sizeof(uint32_t));
            if (!blk[i]) rc = RK_ENOMEM;
            else memset(blk[i], 0xff, w * sizeof(uint32_t));
            words += w;
        }
    }
    rk__ann_scratch *s = NULL;
    if (rc == 0) rc = rk__ann_scratch_prefill(a, workers);
    if (rc == 0) rc = rk__ann_scratch_get(a, &s);
    if (rc == 0 && workers > 1) {
        a->stripes = rk_malloc(RK__ANN_STRIPES * sizeof *a->stripes);
        if (!a->stripes) rc = RK_ENOMEM;
        else
            for (int i = 0; i < RK__ANN_STRIPES; i++)
                pthread_mutex_init(&a->stripes[i], NULL);
    }
    if (rc) {
        if (hnsw && blk)
            for (size_t i = 0; i < n; i++) rk_free(blk[i]);
        if (lev != &lev1) rk_free(lev);
        if (blk != &blk1) rk_free(blk);
        if (s) rk__ann_scratch_put(a, s);
        return rk_err_set(err, rc, "ann: out of memory inserting %zu vectors", n);
    }

    /* Phase 2: fill the slots. Nothing below can fail. */
    a->rng = rng;
    uint32_t first = a->n;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = first + (uint32_t)i;
        a->labels[id] = labels[i];
        a->dead[id] = 0;
        if (hnsw) {
            a->levels[id] = lev[i];
            a->upper[id] = blk[i];
        }
        put_vector(a, id, vecs + i * dim, s->q);
        uint32_t old = lmap_put(&a->lmap, labels[i], id);
        if (old != RK__ANN_NONE && !a->dead[old]) {
            a->dead[old] = 1;
            a->live--;
        }
        a->live++;
    }
    a->n += (uint32_t)n;
    a->upper_words += words;
    if (lev != &lev1) rk_free(lev);
    if (blk != &blk1) rk_free(blk);

    /* Phase 3: link into the graph. */
    if (hnsw && workers == 1) {
        for (size_t i = 0; i < n; i++) rk__hnsw_insert(a, first + (uint32_t)i, s, 0);
    }
    rk__ann_scratch_put(a, s);
    if (hnsw && workers > 1) {
        build_job j = {.a = a, .first = first, .n = (uint32_t)n};
        atomic_init(&j.next, 0);
        rk_pool_parallel_for(pool, workers, 1, build_worker, &j);
        for (int i = 0; i < RK__ANN_STRIPES; i++)
            pthread_mutex_destroy(&a->stripes[i]);
        rk_free(a->stripes);
        a->stripes = NULL;
    }
    scratch_account(a);
    return 0;
}

int rk_ann_add_batch(rk_ann *a, const uint32_t *labels, const float *vecs,
                     size_t n, rk_pool *pool, rk_err *err)
{
    if (!a || (n && (!labels || !vecs)))
        return rk_err_set(err, RK_EINVAL, "ann: NULL argument");
    if (n == 0) return 0;
    pthread_rwlock_wrlock(&a->rw);
    int rc = add_locked(a, labels, vecs, n, pool, err);
    pthread_rwlock_unlock(&a->rw);
    return rc;
}

int rk_ann_add(rk_ann *a, uint32_t label, const float *vec, rk_err *err)
{
    return rk_ann_add_batch(a, &label, vec, 1, NULL, err);
}

int rk_ann_delete(rk_ann *a, uint32_t label)
{
    if (!a) return RK_EINVAL;
    pthread_rwlock_wrlock(&a->rw);
    uint32_t id = lmap_get(&a->lmap, label);
    int rc = RK_ENOTFOUND;
    if (id != RK__ANN_NONE && !a->dead[id]) {
        a->dead[id] = 1;
        a->live--;
        rc = 0;
    }
    pthread_rwlock_unlock(&a->rw);
    return rc;
}

int rk_ann_contains(rk_ann *a, uint32_t label)
{
    if (!a) return 0;
    pthread_rwlock_rdlock(&a->rw);
    uint32_t id = lmap_get(&a->lmap, label);
    int r = id != RK__ANN_NONE && !a->dead[id];
    pthread_rwlock_unlock(&a->rw);
    return r;
}

/* ---- search ------------------------------------------------------------------------ */

static int search_locked(rk_ann *a, rk__ann_scratch *s, const float *query,
                         uint32_t k, uint32_t ef, uint32_t *labels,
                         float *scores, uint32_t *n_out)
{
    *n_out = 0;
    if (a->live == 0) return 0;
    rk__ann_prepare_query(a, query, s->q);
    uint32_t m = 0;
    int rc;
    if (a->p.type == RK_ANN_HNSW) {
        uint32_t L = ef ? ef : a->p.ef_search;
        if (L < k) L = k;
        rc = rk__ann_scratch_reserve(s, pool_need(L));
        if (rc == 0) rc = rk__hnsw_search(a, s, s->q, k, L, labels, scores, &m);
    } else {
        rc = rk__flat_search(a, s, s->q, k, labels, scores, &m);
    }
    if (rc) return rc;
    for (uint32_t i = 0; i < m; i++) labels[i] = a->labels[labels[i]];
    *n_out = m;
    return 0;
}

static int search_args(const rk_ann *a, const float *q, size_t nq, uint32_t k,
                       uint32_t ef, const uint32_t *labels, const uint32_t *n_out)
{
    if (!a || !q || !labels || !n_out || k == 0 || k > RK_ANN_MAX_EF ||
        ef > RK_ANN_MAX_EF)
        return RK_EINVAL;
    /* A NaN would make every comparison false: refuse it up front. */
    for (size_t i = 0; i < nq * a->p.dim; i++)
        if (!isfinite(q[i])) return RK_EINVAL;
    return 0;
}

int rk_ann_search(rk_ann *a, const float *query, uint32_t k, uint32_t ef,
                  uint32_t *labels, float *scores, uint32_t *n_out)
{
    int rc = search_args(a, query, 1, k, ef, labels, n_out);
    if (rc) return rc;
    *n_out = 0;
    rk__ann_scratch *s;
    pthread_rwlock_rdlock(&a->rw);
    rc = rk__ann_scratch_get(a, &s);
    if (rc == 0) {
        rc = search_locked(a, s, query, k, ef, labels, scores, n_out);
        rk__ann_scratch_put(a, s);
    }
    pthread_rwlock_unlock(&a->rw);
    return rc;
}

typedef struct batch_job {
    rk_ann *a;
    const float *q;
    uint32_t k, ef;
    uint32_t *labels;
    float *scores;
    uint32_t *n_out;
    atomic_int rc;
} batch_job;

static void batch_range(void *arg, size_t begin, size_t end)
{
    batch_job *j = arg;
    size_t dim = j->a->p.dim;
    for (size_t i = begin; i < end; i++) {
        int rc = rk_ann_search(j->a, j->q + i * dim, j->k, j->ef,
                               j->labels + i * j->k,
                               j->scores ? j->scores + i * j->k : NULL,
                               j->n_out + i);
        if (rc) atomic_store(&j->rc, rc);
    }
}

int rk_ann_search_batch(rk_ann *a, const float *queries, size_t nq,
                        uint32_t k, uint32_t ef, uint32_t *labels,
                        float *scores, uint32_t *n_out, rk_pool *pool)
{
    if (nq == 0) return 0;
    int rc = search_args(a, queries, nq, k, ef, labels, n_out);
    if (rc) return rc;
    if (a->p.type == RK_ANN_FLAT) {
        pthread_rwlock_rdlock(&a->rw);
        rc = rk__flat_search_many(a, queries, nq, k, labels, scores, n_out);
        if (rc == 0)
            for (size_t i = 0; i < nq; i++)
                for (uint32_t j = 0; j < n_out[i]; j++)
                    labels[i * k + j] = a->labels[labels[i * k + j]];
        pthread_rwlock_unlock(&a->rw);
        return rc;
    }
    batch_job j = {.a = a, .q = queries, .k = k, .ef = ef, .labels = labels,
                   .scores = scores, .n_out = n_out};
    atomic_init(&j.rc, 0);
    if (pool) rk_pool_parallel_for(pool, nq, 16, batch_range, &j);
    else batch_range(&j, 0, nq);
    return atomic_load(&j.rc);
}

int rk_ann_set_rerank(rk_ann *a, int on)
{
    if (!a) return RK_EINVAL;
    if (a->p.type != RK_ANN_HNSW || !a->fvec) return RK_ESTATE;
    pthread_rwlock_wrlock(&a->rw);
    a->rerank_on = on != 0;
    pthread_rwlock_unlock(&a->rw);
    return 0;
}

size_t rk_ann_size(rk_ann *a)
{
    if (!a) return 0;
    pthread_rwlock_rdlock(&a->rw);
    size_t n = a->live;
    pthread_rwlock_unlock(&a->rw);
    return n;
}

size_t rk_ann_memory_bytes(rk_ann *a)
{
    if (!a) return 0;
    pthread_rwlock_rdlock(&a->rw);
    /* Upper-level blocks are separate heap blocks unless mapped. */
    size_t b = a->heap_bytes + a->map_len +
               (a->readonly ? 0 : (size_t)a->upper_words * sizeof(uint32_t));
    pthread_rwlock_unlock(&a->rw);
    pthread_mutex_lock(&a->smu);
    b += a->scratch_bytes;
    pthread_mutex_unlock(&a->smu);
    return b;
}

void rk_ann_get_params(const rk_ann *a, rk_ann_params *out)
{
    *out = a->p;
}

const char *rk_ann_kernels(const rk_ann *a)
{
    return a->k.name;
}

/* ---- saving -------------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = write(fd, b, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static const unsigned char zeros64[64];

/* Section layout of an index with the given sizes. */
static void layout(ann_hdr *h, const uint64_t len[ANN_NSEC])
{
    uint64_t off = ANN_HDR_SIZE;
    for (int i = 0; i < ANN_NSEC; i++) {
        h->sec[i].off = off;
        h->sec[i].len = len[i];
        off = align64(off + len[i]);
    }
    /* The file ends right after the last section's data. */
    h->file_size = h->sec[ANN_NSEC - 1].off + h->sec[ANN_NSEC - 1].len;
}

static uint64_t header_hash(const ann_hdr *h)
{
    ann_hdr c = *h;
    c.header_hash = 0;
    return rk_hash64(&c, sizeof c, HASH_SEED);
}

static int save_locked(rk_ann *a, const char *path, rk_err *err)
{
    int hnsw = a->p.type == RK_ANN_HNSW;
    size_t n = a->n, dim = a->p.dim;
    ann_slot *slots = rk_calloc(n ? n : 1, sizeof *slots);
    uint32_t *up = rk_malloc(a->upper_words ? a->upper_words * 4 : 1);
    char *tmp = rk_malloc(strlen(path) + 16);
    if (!slots || !up || !tmp) {
        rk_free(slots);
        rk_free(up);
        rk_free(tmp);
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory saving", path);
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) {
        slots[i].label = a->labels[i];
        slots[i].dead = a->dead[i];
        if (hnsw) {
            slots[i].level = a->levels[i];
            size_t cnt = (size_t)a->levels[i] * a->p.M;
            if (cnt) memcpy(up + w, a->upper[i], cnt * 4);
            w += cnt;
        }
    }
    ann_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, ANN_MAGIC, 8);
    h.version = ANN_VERSION;
    h.header_size = ANN_HDR_SIZE;
    h.type = (uint32_t)a->p.type;
    h.metric = (uint32_t)a->p.metric;
    h.quant = (uint32_t)a->p.quant;
    h.rerank = (uint32_t)a->p.rerank;
    h.dim = a->p.dim;
    h.M = a->p.M;
    h.M0 = a->M0;
    h.ef_construction = a->p.ef_construction;
    h.ef_search = a->p.ef_search;
    h.max_elements = a->cap;
    h.max_searchers = a->p.max_searchers;
    h.n = a->n;
    h.live = a->live;
    h.entry = a->entry;
    h.max_level = (uint32_t)a->max_level;
    h.rec_size = (uint32_t)a->rec_size;
    h.vec_off = (uint32_t)a->vec_off;
    h.seed = a->p.seed;
    h.rng = a->rng;
    h.upper_words = a->upper_words;
    uint64_t len[ANN_NSEC] = {n * sizeof *slots, hnsw ? n * a->rec_size : 0,
                              a->upper_words * 4,
                              a->fvec ? n * dim * sizeof(float) : 0};
    layout(&h, len);
    const void *data[ANN_NSEC] = {slots, a->rec, up, a->fvec};
    for (int i = 0; i < ANN_NSEC; i++)
        h.sec[i].hash = rk_hash64(len[i] ? data[i] : NULL, len[i], HASH_SEED);
    h.header_hash = header_hash(&h);

    /* Temporary name in the same directory, so rename is atomic. */
    snprintf(tmp, strlen(path) + 16, "%s.tmp.XXXXXX", path);
    int rc = 0, fd = mkstemp(tmp);
    const char *what = "create";
    if (fd < 0) {
        rc = RK_EIO;
    } else {
        what = "write";
        uint64_t pos = 0;
        if (write_all(fd, &h, sizeof h) != 0) rc = RK_EIO;
        pos = sizeof h;
        for (int i = 0; i < ANN_NSEC && rc == 0; i++) {
            if (len[i] == 0) continue;
            if (h.sec[i].off > pos &&
                write_all(fd, zeros64, (size_t)(h.sec[i].off - pos)) != 0)
                rc = RK_EIO;
            if (rc == 0 && write_all(fd, data[i], (size_t)len[i]) != 0)
                rc = RK_EIO;
            pos = h.sec[i].off + len[i];
        }
        if (rc == 0 && pos < h.file_size &&
            write_all(fd, zeros64, (size_t)(h.file_size - pos)) != 0)
            rc = RK_EIO;
        if (rc == 0 && fsync(fd) != 0) {
            what = "fsync";
            rc = RK_EIO;
        }
        if (close(fd) != 0 && rc == 0) {
            what = "close";
            rc = RK_EIO;
        }
        if (rc == 0 && rename(tmp, path) != 0) {
            what = "rename";
            rc = RK_EIO;
        }
    }
    if (rc) {
        int e = errno;
        if (fd >= 0) unlink(tmp);
        rk_err_set(err, rc, "%s: %s: %s", fd >= 0 ? path : tmp, what,
                   strerror(e));
    } else {
        /* Make the rename durable: fsync the directory. */
        char *dir = rk_strdup(path);
        if (dir) {
            char *sl = strrchr(dir, '/');
            const char *d = ".";
            if (sl == dir) d = "/";
            else if (sl) {
                *sl = '\0';
                d = dir;
            }
            int dfd = open(d, O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            rk_free(dir);
        }
    }
    rk_free(slots);
    rk_free(up);
    rk_free(tmp);
    return rc;
}

int rk_ann_save(rk_ann *a, const char *path, rk_err *err)
{
    if (!a || !path) return rk_err_set(err, RK_EINVAL, "ann: NULL argument");
    pthread_rwlock_rdlock(&a->rw);
    int rc = save_locked(a, path, err);
    pthread_rwlock_unlock(&a->rw);
    return rc;
}

/* ---- loading ---------------------------------------------------------------------------- */

/* Header, checksums and section table; fills *h. */
static int check_header(const unsigned char *buf, size_t len, const char *name,
                        ann_hdr *h, rk_err *err)
{
    if (len < ANN_HDR_SIZE)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: truncated: %zu bytes, an index header needs %u",
                          name, len, ANN_HDR_SIZE);
    memcpy(h, buf, sizeof *h);
    if (memcmp(h->magic, ANN_MAGIC, 8) != 0)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: not a rankd ANN index (bad magic)", name);
    if (h->version != ANN_VERSION)
        return rk_err_set(err, RK_EVERSION,
                          "%s: index format version %u, this build reads "
                          "version %u",
                          name, h->version, ANN_VERSION);
    if (h->header_size != ANN_HDR_SIZE || header_hash(h) != h->header_hash)
        return rk_err_set(err, RK_ECORRUPT, "%s: header checksum mismatch",
                          name);
    if (h->file_size != len)
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: %s: file has %zu bytes, the header says %llu",
                          name, len < h->file_size ? "truncated" : "trailing data",
                          len, (unsigned long long)h->file_size);
    uint64_t pos = ANN_HDR_SIZE;
    for (int i = 0; i < ANN_NSEC; i++) {
        const ann_sec *s = &h->sec[i];
        if (s->off % 64 || s->off < pos || s->off > len || s->len > len - s->off)
            return rk_err_set(err, RK_ECORRUPT,
                              "%s: %s section [%llu, +%llu) outside the file "
                              "or misplaced",
                              name, sec_name[i], (unsigned long long)s->off,
                              (unsigned long long)s->len);
        for (uint64_t j = pos; j < s->off; j++)
            if (buf[j] != 0)
                return rk_err_set(err, RK_ECORRUPT,
                                  "%s: nonzero padding at byte %llu", name,
                                  (unsigned long long)j);
        if (rk_hash64(s->len ? buf + s->off : NULL, s->len, HASH_SEED) != s->hash)
            return rk_err_set(err, RK_ECORRUPT,
                              "%s: %s section checksum mismatch", name,
                              sec_name[i]);
        pos = s->off + s->len;
    }
    if (pos != len)
        return rk_err_set(err, RK_ECORRUPT, "%s: %llu unaccounted bytes at the end",
                          name, (unsigned long long)(len - pos));
    return 0;
}

/* Parameters and sizes in the header against each other. */
static int check_params(const ann_hdr *h, const char *name, rk_ann_params *p,
                        rk_err *err)
{
    rk_ann_params_default(p);
    p->type = (rk_ann_type)h->type;
    p->metric = (rk_ann_metric)h->metric;
    p->quant = (rk_ann_quant)h->quant;
    p->rerank = (int)h->rerank;
    p->dim = h->dim;
    p->M = h->M;
    p->ef_construction = h->ef_construction;
    p->ef_search = h->ef_search;
    p->max_elements = h->max_elements;
    p->max_searchers = h->max_searchers;
    p->seed = h->seed;
    rk_err e2 = {0};
    /* params_check fills zero knobs with defaults; a file must say exactly
     * what it was built with, so zeros are refused first. */
    if (h->type > 1 || h->metric > 1 || h->quant > 1 || h->rerank > 1 ||
        h->M == 0 || h->ef_construction == 0 || h->ef_search == 0 ||
        h->max_searchers == 0 || params_check(p, &e2) != 0 ||
        p->rerank != (int)h->rerank || p->M != h->M)
        return rk_err_set(err, RK_ECORRUPT, "%s: bad parameters: %s", name,
                          e2.code ? rk_err_msg(&e2) : "enum out of range");
    int hnsw = p->type == RK_ANN_HNSW;
    size_t vec_off = 0, rec = hnsw ? rk__hnsw_record_size(p, &vec_off) : 0;
    uint64_t n = h->n;
    if (n > h->max_elements || h->live > n || h->M0 != 2 * h->M ||
        h->rec_size != rec || h->vec_off != vec_off ||
        h->max_level > RK__ANN_MAX_LEVEL ||
        (hnsw ? (n == 0) != (h->entry == RK__ANN_NONE) || (n && h->entry >= n)
              : h->entry != RK__ANN_NONE || h->max_level || h->upper_words))
        return rk_err_set(err, RK_ECORRUPT, "%s: inconsistent counts in header",
                          name);
    uint64_t want[ANN_NSEC] = {n * sizeof(ann_slot), n * rec,
                               h->upper_words * 4,
                               has_fvec(p) ? n * h->dim * sizeof(float) : 0};
    for (int i = 0; i < ANN_NSEC; i++)
        if (h->sec[i].len != want[i])
            return rk_err_set(err, RK_ECORRUPT,
                              "%s: %s section has %llu bytes, expected %llu",
                              name, sec_name[i],
                              (unsigned long long)h->sec[i].len,
                              (unsigned long long)want[i]);
    return 0;
}

/* Slot table into the index arrays; upper pointers into the image. */
static int load_slots(rk_ann *a, const unsigned char *buf, const ann_hdr *h,
                      const char *name, rk_err *err)
{
    const ann_slot *sl = (const ann_slot *)(const void *)(buf + h->sec[SEC_SLOTS].off);
    uint32_t *up = (uint32_t *)(uintptr_t)(buf + h->sec[SEC_UPPER].off);
    uint64_t w = 0, live = 0;
    int hnsw = a->p.type == RK_ANN_HNSW;
    for (uint32_t i = 0; i < h->n; i++) {
        ann_slot s = sl[i];
        if (s.dead > 1 || s.zero || (!hnsw && s.level) || s.level > h->max_level)
            return rk_err_set(err, RK_ECORRUPT, "%s: slot %u: bad flags or level",
                              name, i);
        a->labels[i] = s.label;
        a->dead[i] = s.dead;
        live += !s.dead;
        if (!hnsw) continue;
        a->levels[i] = s.level;
        uint64_t cnt = (uint64_t)s.level * a->p.M;
        if (cnt > h->upper_words - w)
            return rk_err_set(err, RK_ECORRUPT,
                              "%s: upper links section too short for the levels",
                              name);
        a->upper[i] = cnt ? up + w : NULL;
        w += cnt;
    }
    if (w != h->upper_words || live != h->live ||
        (hnsw && h->n && a->levels[h->entry] != h->max_level))
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: slot table disagrees with the header (levels, "
                          "live count or entry point)",
                          name);
    /* Labels: a live label must appear once; the newest slot of a dead one
     * wins, like a sequence of inserts would leave it. */
    for (uint32_t i = 0; i < h->n; i++) {
        uint32_t old = lmap_put(&a->lmap, a->labels[i], i);
        if (old != RK__ANN_NONE && !a->dead[old]) {
            if (!a->dead[i])
                return rk_err_set(err, RK_ECORRUPT,
                                  "%s: label %u is live in slots %u and %u",
                                  name, a->labels[i], old, i);
            lmap_put(&a->lmap, a->labels[i], old);
        }
    }
    return 0;
}

static int check_vectors(const rk_ann *a, const char *name, rk_err *err)
{
    size_t dim = a->p.dim;
    for (uint32_t i = 0; i < a->n; i++) {
        if (a->fvec) {
            const float *v = a->fvec + (size_t)i * dim;
            for (size_t j = 0; j < dim; j++)
                if (!isfinite(v[j]))
                    return rk_err_set(err, RK_ECORRUPT,
                                      "%s: slot %u: non-finite vector", name, i);
        }
        if (a->p.type != RK_ANN_HNSW) continue;
        const unsigned char *r = rk__ann_vec(a, i);
        if (a->p.quant == RK_ANN_F32) {
            for (size_t j = 0; j < dim; j++) {
                float x;
                memcpy(&x, r + 4 * j, 4);
                if (!isfinite(x))
                    return rk_err_set(err, RK_ECORRUPT,
                                      "%s: slot %u: non-finite vector", name, i);
            }
        } else {
            float sc;
            memcpy(&sc, r, 4);
            if (!isfinite(sc) || sc < 0)
                return rk_err_set(err, RK_ECORRUPT, "%s: slot %u: bad scale",
                                  name, i);
        }
    }
    return 0;
}

/* Builds a read-only index over a checked image. */
static int open_image(rk_ann **out, const unsigned char *buf, size_t len,
                      const char *name, rk_err *err)
{
    *out = NULL;
    if ((uintptr_t)buf % 64)
        return rk_err_set(err, RK_EINVAL, "%s: image not 64-byte aligned", name);
    ann_hdr h;
    rk_ann_params p;
    int rc = check_header(buf, len, name, &h, err);
    if (rc == 0) rc = check_params(&h, name, &p, err);
    if (rc) return rc;
    rk_ann *a;
    /* Read-only: capacity is what the file holds (at least one slot, so
     * the arrays are never empty). */
    rc = ann_shell(&a, &p, h.n ? h.n : 1, err);
    if (rc) return rk_err_prefix(err, "%s: ", name);
    a->p.max_elements = h.max_elements;
    a->readonly = 1;
    a->map = buf;
    a->map_len = len;
    if (ann_alloc(a, 1) != 0) {
        rk_ann_destroy(a);
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory loading", name);
    }
    if (a->p.type == RK_ANN_HNSW)
        a->rec = (unsigned char *)(uintptr_t)(buf + h.sec[SEC_RECORDS].off);
    if (has_fvec(&a->p))
        a->fvec = (float *)(uintptr_t)(buf + h.sec[SEC_FVEC].off);
    a->n = h.n;
    a->live = h.live;
    a->entry = h.entry;
    a->max_level = (int)h.max_level;
    a->rng = h.rng;
    a->upper_words = h.upper_words;
    rc = load_slots(a, buf, &h, name, err);
    if (rc == 0 && a->p.type == RK_ANN_HNSW) {
        rc = rk__hnsw_validate(a, err);
        if (rc) rk_err_prefix(err, "%s: ", name);
    }
    if (rc == 0) rc = check_vectors(a, name, err);
    if (rc) {
        rk_ann_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* A heap copy of a checked read-only index, with its saved capacity. */
static int copy_index(rk_ann **out, rk_ann *ro, const char *name, rk_err *err)
{
    rk_ann_params p = ro->p;
    rk_ann *a;
    int rc = rk_ann_create(&a, &p, err);
    if (rc) return rk_err_prefix(err, "%s: ", name);
    size_t n = ro->n, dim = p.dim;
    memcpy(a->labels, ro->labels, n * sizeof *a->labels);
    memcpy(a->dead, ro->dead, n);
    /* The label map is rebuilt (its size follows the capacity): newest
     * slot first, then each label's live slot wins, as in open_image. */
    for (size_t i = 0; i < n; i++) lmap_put(&a->lmap, ro->labels[i], (uint32_t)i);
    for (size_t i = 0; i < n; i++)
        if (!ro->dead[i]) lmap_put(&a->lmap, ro->labels[i], (uint32_t)i);
    if (ro->fvec) memcpy(a->fvec, ro->fvec, n * dim * sizeof(float));
    if (p.type == RK_ANN_HNSW) {
        memcpy(a->rec, ro->rec, n * a->rec_size);
        memcpy(a->levels, ro->levels, n);
        for (size_t i = 0; i < n; i++) {
            size_t cnt = (size_t)ro->levels[i] * p.M * sizeof(uint32_t);
            if (!cnt) continue;
            a->upper[i] = rk_memdup(ro->upper[i], cnt);
            if (!a->upper[i]) {
                a->n = (uint32_t)n; /* destroy frees the blocks so far */
                rk_ann_destroy(a);
                return rk_err_set(err, RK_ENOMEM, "%s: out of memory loading",
                                  name);
            }
        }
    }
    a->n = ro->n;
    a->live = ro->live;
    a->entry = ro->entry;
    a->max_level = ro->max_level;
    a->rng = ro->rng;
    a->upper_words = ro->upper_words;
    *out = a;
    return 0;
}

int rk__ann_open_image(rk_ann **out, const void *buf, size_t len,
                       const char *name, unsigned flags, rk_err *err)
{
    rk_ann *ro;
    *out = NULL;
    int rc = open_image(&ro, buf, len, name, err);
    if (rc || !(flags & RK_ANN_LOAD_COPY)) {
        *out = rc ? NULL : ro;
        return rc;
    }
    rc = copy_index(out, ro, name, err);
    rk_ann_destroy(ro);
    return rc;
}

int rk_ann_load(rk_ann **out, const char *path, unsigned flags, rk_err *err)
{
    if (!out || !path) return rk_err_set(err, RK_EINVAL, "ann: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rk_err_set(err, RK_EIO, "%s: open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rk_err_set(err, RK_EIO, "%s: stat: %s", path, strerror(e));
    }
    size_t len = (size_t)st.st_size;
    if (len < ANN_HDR_SIZE) {
        close(fd);
        return rk_err_set(err, RK_ECORRUPT,
                          "%s: truncated: %zu bytes, an index header needs %u",
                          path, len, ANN_HDR_SIZE);
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return rk_err_set(err, RK_EIO, "%s: mmap: %s", path, strerror(e));
    /* The checksum pass reads every page once, in order. */
    madvise(m, len, MADV_WILLNEED);
    rk_ann *a;
    int rc = rk__ann_open_image(&a, m, len, path, flags, err);
    if (rc == 0 && !(flags & RK_ANN_LOAD_COPY)) {
        a->mapped = 1; /* unmapped by destroy */
        *out = a;
        return 0;
    }
    munmap(m, len);
    if (rc == 0) *out = a;
    return rc;
}

void rk__ann_fix_checksums(void *buf, size_t len)
{
    if (len < ANN_HDR_SIZE) return;
    ann_hdr h;
    memcpy(&h, buf, sizeof h);
    h.file_size = len;
    for (int i = 0; i < ANN_NSEC; i++) {
        const ann_sec *s = &h.sec[i];
        if (s->off <= len && s->len <= len - s->off)
            h.sec[i].hash = rk_hash64(s->len ? (unsigned char *)buf + s->off : NULL,
                                      s->len, HASH_SEED);
    }
    h.header_hash = header_hash(&h);
    memcpy(buf, &h, sizeof h);
}
