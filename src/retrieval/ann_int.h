/*
 * ann_int.h — internals shared by the ANN index files of src/retrieval/:
 * the kernel dispatch table (kernels*.c), the index structure (ann.c, the
 * front: parameters, labels, persistence), the HNSW graph (hnsw.c) and the
 * exact scan (flat.c).
 *
 * Memory layout of an index with cap slots (slot = internal node id):
 *   rec     HNSW only: cap fixed-size level-0 records, 64-byte aligned:
 *           [M0 u32 links, unused ones = RK__ANN_NONE][vector]
 *           where vector is dim f32, or for int8 a f32 scale then dim int8
 *           codes. Links and vector sit together so that expanding a node
 *           and scoring its neighbours touch few, adjacent cache lines.
 *   upper   HNSW only: per slot, NULL or a block of levels[id] * M u32 links
 *           (level l at (l - 1) * M), same sentinel rule.
 *   fvec    float32 vectors, dim per slot: the flat index's data, and the
 *           re-rank copy of an int8 HNSW index with rerank on.
 *   labels, levels, dead: one entry per slot.
 * Link lists are packed: the used links come first, then sentinels.
 * A slot, once filled, never changes its vector: replacing a label fills a
 * new slot and tombstones the old one (it stays in the graph as a waypoint).
 */
#ifndef RK_ANN_INT_H
#define RK_ANN_INT_H

#include <pthread.h>
#include <stdint.h>

#include "rk_retrieval.h"

#define RK__ANN_NONE UINT32_MAX
/* Slot ids stay below 2^30: the search pool keeps two flags in the top
 * bits of an id. */
#define RK__ANN_MAX_SLOTS (1u << 30)
#define RK__ANN_MAX_LEVEL 32

/* ---- kernels ------------------------------------------------------------ */

/* Every kernel has a plain C reference (kernels_ref.c) and may have an
 * AVX2/FMA version (kernels_avx2.c). Tables are const; an index copies the
 * chosen one at create/load time, so there is no mutable global. */
typedef struct rk__ann_kernels {
    const char *name;
    /* sum a[i] * b[i] */
    float (*dot_f32)(const float *a, const float *b, size_t n);
    /* sum q[i] * x[i] with int8 codes x (the caller multiplies by the
     * vector's scale) */
    float (*dot_f32_i8)(const float *q, const int8_t *x, size_t n);
    /* out[j] = dot_f32(q, x + j * n) for j < m: a contiguous block, the
     * flat scan's inner loop */
    void (*dot_f32_rows)(const float *q, const float *x, size_t n, size_t m,
                         float *out);
    /* Writes the indices j < n with s[j] > thr to out in increasing order
     * and returns their count: the exact scan's filter against the k-th
     * best score so far. */
    size_t (*above)(const float *s, size_t n, float thr, uint32_t *out);
} rk__ann_kernels;

extern const rk__ann_kernels rk__ann_kernels_ref;
/* NULL fields where a kernel has no AVX2 version; name "avx2". Only call
 * when rk__ann_cpu_has_avx2() says so. */
extern const rk__ann_kernels rk__ann_kernels_avx2;

int rk__ann_cpu_has_avx2(void);
/* Fills *out with the reference table, then overrides it with AVX2
 * kernels when the CPU has AVX2 and FMA, unless RK_KERNELS says otherwise:
 * RK_KERNELS=ref forces the reference, =avx2 requires AVX2 (RK_EUNSUPPORTED
 * without it), =auto or unset picks; anything else is RK_EINVAL. */
int rk__ann_kernels_select(rk__ann_kernels *out, rk_err *err);

/* Symmetric per-vector quantization: scale = max|x| / 127 and
 * codes[i] = round(x[i] / scale), so x ~ scale * codes. Returns the scale
 * (0 for an all-zero vector: codes are then all 0). */
float rk__ann_quantize_i8(const float *x, size_t n, int8_t *codes);

/* ---- index -------------------------------------------------------------- */

/* Per-search scratch: a visited-epoch array over all slots and the buffers
 * of one search or one insertion. Owned by the index's bounded pool. */
typedef struct rk__ann_scratch {
    struct rk__ann_scratch *next;
    uint16_t *visited;       /* cap entries */
    uint16_t epoch;
    struct rk__ann_cand *pool; /* the sorted candidate list */
    uint32_t pool_cap;       /* entries pool can hold */
    float *q;                /* dim: the prepared query */
    float *qn;               /* dim: a decoded node vector (int8 builds) */
    float *sel;              /* M0 * dim: decoded selected neighbours */
    struct rk__ann_cand *cand; /* M0 + 1: pruning candidates */
    uint32_t *ids;           /* M0: unvisited neighbours of one expansion */
    uint32_t *links;         /* M0: a locked copy of one link list */
    float *scores;           /* flat scan block */
    uint32_t *hits;          /* flat scan block: indices above the bar */
    size_t bytes;            /* heap bytes held */
} rk__ann_scratch;

typedef struct rk__ann_cand {
    float d;                 /* distance: -score, lower is better */
    uint32_t id;             /* slot, plus RK__CAND_* flags */
} rk__ann_cand;

/* Open-addressing map label -> slot, sized at creation (2 * cap, power of
 * two) so it never grows; a label keeps its entry after deletion (pointing
 * at the tombstoned slot). */
typedef struct rk__ann_lmap {
    uint64_t *e;             /* (label << 32) | slot, or UINT64_MAX */
    uint64_t mask;
} rk__ann_lmap;

struct rk_ann {
    rk_ann_params p;
    rk__ann_kernels k;
    uint32_t M0;             /* level-0 links: 2M */
    size_t rec_size;         /* bytes per level-0 record */
    size_t vec_off;          /* offset of the vector in a record */
    uint32_t cap;            /* slots */
    uint32_t n;              /* slots used, live or tombstoned */
    uint32_t live;
    uint32_t entry;          /* entry point slot or RK__ANN_NONE */
    int max_level;
    double mult;             /* level multiplier 1 / ln M */
    uint64_t rng;            /* level generator state */
    unsigned char *rec;      /* HNSW level-0 records (aligned) */
    float *fvec;             /* float copies (flat; int8 with rerank) */
    int rerank_on;           /* int8: re-rank with fvec (rk_ann_set_rerank) */
    uint32_t *labels;
    uint8_t *levels;
    uint8_t *dead;
    uint32_t **upper;
    uint64_t upper_words;    /* u32 words in all upper blocks */
    rk__ann_lmap lmap;

    /* Storage: heap (owned blocks) or a mapping / borrowed buffer. */
    void *rec_raw, *fvec_raw;    /* unaligned heap blocks to free */
    const void *map;             /* file mapping or borrowed buffer */
    size_t map_len;
    int mapped;                  /* munmap map on destroy */
    int readonly;                /* rec/fvec/upper borrowed: no adds */
    size_t heap_bytes;           /* heap held, scratch excluded */

    /* Readers (searches, save) share; writers (add, delete) exclude. */
    pthread_rwlock_t rw;
    /* Entry point and maximum level during parallel insertion. */
    pthread_mutex_t gmu;
    /* Link-list locks (striped by slot) during a parallel batch only. */
    pthread_mutex_t *stripes;
    /* The bounded scratch pool. */
    pthread_mutex_t smu;
    pthread_cond_t scv;
    rk__ann_scratch *free_scratch;
    uint32_t nscratch, max_scratch;
    size_t scratch_bytes;
};

#define RK__ANN_STRIPES 4096
/* Rows the flat scan scores per kernel call (scratch sizes). */
#define RK__ANN_FLAT_BLOCK 256

static inline uint32_t *rk__ann_links0(const rk_ann *a, uint32_t id)
{
    return (uint32_t *)(void *)(a->rec + (size_t)id * a->rec_size);
}

static inline uint32_t *rk__ann_links(const rk_ann *a, uint32_t id, int lev)
{
    if (lev == 0) return rk__ann_links0(a, id);
    return a->upper[id] + (size_t)(lev - 1) * a->p.M;
}

static inline const void *rk__ann_vec(const rk_ann *a, uint32_t id)
{
    return a->rec + (size_t)id * a->rec_size + a->vec_off;
}

/* Scratch pool: get blocks until one is free (or creates one while fewer
 * than max_scratch exist); RK_ENOMEM when creating fails. */
int rk__ann_scratch_get(rk_ann *a, rk__ann_scratch **out);
void rk__ann_scratch_put(rk_ann *a, rk__ann_scratch *s);
/* Makes sure s->pool holds at least n candidates. */
int rk__ann_scratch_reserve(rk__ann_scratch *s, uint32_t n);
/* Makes sure at least n scratch blocks exist (insertion needs them before
 * it starts linking, where it must not fail). */
int rk__ann_scratch_prefill(rk_ann *a, uint32_t n);

/* The query as the kernels want it (normalized for cosine) into s->q. */
void rk__ann_prepare_query(const rk_ann *a, const float *q, float *out);

/* HNSW (hnsw.c). Record layout and parameters are set by the front. */
size_t rk__hnsw_record_size(const rk_ann_params *p, size_t *vec_off);
/* Links slot id (vector, level, label already in place) into the graph.
 * locked: other threads insert concurrently (stripes are live). s: scratch
 * with pool room for ef_construction. Cannot fail. */
void rk__hnsw_insert(rk_ann *a, uint32_t id, rk__ann_scratch *s, int locked);
/* Best k live slots for a prepared query; n_out <= k. */
int rk__hnsw_search(const rk_ann *a, rk__ann_scratch *s, const float *q,
                    uint32_t k, uint32_t ef, uint32_t *ids, float *scores,
                    uint32_t *n_out);
/* Structural checks of a loaded graph: RK_ECORRUPT with a message. */
int rk__hnsw_validate(const rk_ann *a, rk_err *err);

/* Flat (flat.c): the exact scan over fvec. */
int rk__flat_search(const rk_ann *a, rk__ann_scratch *s, const float *q,
                    uint32_t k, uint32_t *ids, float *scores,
                    uint32_t *n_out);
/* Exact top-k for a block of raw queries with one SGEMM per block of
 * slots; results as slot ids. */
int rk__flat_search_many(const rk_ann *a, const float *queries, size_t nq,
                         uint32_t k, uint32_t *ids, float *scores,
                         uint32_t *n_out);

/* Opens an index over an image of an index file (64-byte aligned). name
 * is used in messages. Without RK_ANN_LOAD_COPY in flags the index
 * borrows buf, which must stay valid and unchanged until destroy; with it
 * the index is a heap copy and buf may go. rk_ann_load maps the file and
 * calls this; the fuzz target calls it directly. */
int rk__ann_open_image(rk_ann **out, const void *buf, size_t len,
                       const char *name, unsigned flags, rk_err *err);
/* Recomputes the header and payload checksums of an image in place, so
 * the fuzz target can reach the structural checks behind them. Does
 * nothing when the image is too short or its section table is unusable. */
void rk__ann_fix_checksums(void *buf, size_t len);

#endif /* RK_ANN_INT_H */
