/*
 * gen_util.c — pieces shared by the heuristic generators and the merger:
 * source names, query seeds from a user's history, event weights, top-k
 * selection, neighbour-list queries and their versioned, checksummed file
 * format, and a fixed-size scratch map.
 *
 * Everything here is deterministic: equal inputs give equal outputs
 * regardless of thread count or allocation addresses, because every order
 * is decided by values (score, then item id) and never by hashing.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "retrieval/gen_int.h"

/* ---- sources ------------------------------------------------------------ */

static const char *const source_names[RK_SRC_COUNT] = {
    "none", "ann", "covis", "trending", "popular", "fresh", "content", "ease",
    "external",
};

const char *rk_source_name(unsigned src)
{
    return src < RK_SRC_COUNT ? source_names[src] : "unknown";
}

int rk_source_parse(const char *name, size_t len, rk_source *out)
{
    for (unsigned i = 1; i < RK_SRC_COUNT; i++)
        if (strlen(source_names[i]) == len && !memcmp(source_names[i], name, len)) {
            *out = (rk_source)i;
            return 0;
        }
    return RK_ENOTFOUND;
}

/* ---- event weights ------------------------------------------------------ */

float rk__gen_event_weight(const rk_schema *sc, const rk_inter_opts *o,
                           const rk_event *ev)
{
    if (ev->ts_ms < o->from_ts || ev->ts_ms >= o->to_ts) return 0;
    const rk_event_type_def *t = rk_schema_event_type(sc, ev->type);
    if (!t) return 0;
    double w;
    switch (t->role) {
    case RK_ROLE_POSITIVE:
        w = t->weight;
        break;
    case RK_ROLE_VALUED:
        if (ev->has_value && ev->value < o->valued_min) return 0;
        w = t->weight;
        if (o->value_as_weight && ev->has_value) w *= ev->value;
        break;
    default:
        /* Negatives say "not this", which does not make two items alike;
         * exposures are not feedback at all. */
        return 0;
    }
    if (!(w > 0) || !isfinite(w)) return 0;
    return (float)w;
}

/* ---- candidates and top-k ---------------------------------------------- */

int rk__cand_cmp(const void *a, const void *b)
{
    const rk_candidate *x = a, *y = b;
    if (rk__cand_better(x->score, x->item, y->score, y->item)) return -1;
    if (rk__cand_better(y->score, y->item, x->score, x->item)) return 1;
    return 0;
}

void rk__topk_init(rk__topk *t, rk_candidate *buf, size_t k)
{
    t->v = buf;
    t->n = 0;
    t->k = k;
}

/* Heap order: a parent is worse than its children, so v[0] is the worst
 * kept candidate and the one a better newcomer replaces. */
static inline int worse(const rk_candidate *a, const rk_candidate *b)
{
    return rk__cand_better(b->score, b->item, a->score, a->item);
}

static void sift_down(rk_candidate *v, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && worse(&v[l], &v[m])) m = l;
        if (l + 1 < n && worse(&v[l + 1], &v[m])) m = l + 1;
        if (m == i) return;
        rk_candidate tmp = v[i];
        v[i] = v[m];
        v[m] = tmp;
        i = m;
    }
}

void rk__topk_push(rk__topk *t, uint32_t item, float score, uint8_t src)
{
    rk_candidate c = {.item = item, .score = score, .source = src,
                      .sources = (uint16_t)(src < 16 ? 1u << src : 0)};
    if (t->k == 0) return;
    if (t->n < t->k) {
        /* Sift up. */
        size_t i = t->n++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(&c, &t->v[p])) break;
            t->v[i] = t->v[p];
            i = p;
        }
        t->v[i] = c;
        return;
    }
    if (!rk__cand_better(score, item, t->v[0].score, t->v[0].item)) return;
    t->v[0] = c;
    sift_down(t->v, t->n, 0);
}

size_t rk__topk_finish(rk__topk *t)
{
    qsort(t->v, t->n, sizeof *t->v, rk__cand_cmp);
    return t->n;
}

/* ---- scratch map -------------------------------------------------------- */

#define U32_EMPTY UINT32_MAX

int rk__u32map_init(rk__u32map *m, size_t max_keys)
{
    size_t cap = 16;
    /* At most half full, so probes stay short. */
    while (cap < 2 * max_keys) cap *= 2;
    m->keys = rk_malloc(cap * sizeof *m->keys);
    m->vals = rk_malloc(cap * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        rk__u32map_free(m);
        return RK_ENOMEM;
    }
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->mask = cap - 1;
    return 0;
}

void rk__u32map_free(rk__u32map *m)
{
    rk_free(m->keys);
    rk_free(m->vals);
    m->keys = m->vals = NULL;
}

static inline size_t u32_hash(uint32_t k)
{
    /* Murmur3's finalizer: item ids are dense, so spread them. */
    k ^= k >> 16;
    k *= 0x85ebca6bu;
    k ^= k >> 13;
    k *= 0xc2b2ae35u;
    k ^= k >> 16;
    return k;
}

uint32_t *rk__u32map_put(rk__u32map *m, uint32_t key, uint32_t dflt,
                         int *inserted)
{
    size_t i = u32_hash(key) & m->mask;
    while (m->keys[i] != U32_EMPTY) {
        if (m->keys[i] == key) {
            *inserted = 0;
            return &m->vals[i];
        }
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->vals[i] = dflt;
    *inserted = 1;
    return &m->vals[i];
}

uint32_t *rk__u32map_get(const rk__u32map *m, uint32_t key)
{
    size_t i = u32_hash(key) & m->mask;
    while (m->keys[i] != U32_EMPTY) {
        if (m->keys[i] == key) return &m->vals[i];
        i = (i + 1) & m->mask;
    }
    return NULL;
}

/* ---- seeds -------------------------------------------------------------- */

typedef struct seed_ev {
    int64_t ts;
    uint32_t item;
    float w;
} seed_ev;

/* Latest first, then smaller item, then larger weight: the first event of
 * an item in this order is the one that represents it. */
static int seed_ev_cmp(const void *a, const void *b)
{
    const seed_ev *x = a, *y = b;
    if (x->ts != y->ts) return x->ts > y->ts ? -1 : 1;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->w != y->w) return x->w > y->w ? -1 : 1;
    return 0;
}

int rk_seeds_from_events(const uint32_t *items, const int64_t *ts,
                         const float *w, size_t n, int64_t now_ms,
                         double half_life_ms, rk_seed *out, size_t max_seeds,
                         size_t *nout)
{
    *nout = 0;
    if (n == 0 || max_seeds == 0) return 0;
    seed_ev *ev = rk_malloc(n * sizeof *ev);
    if (!ev) return RK_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ev[i].ts = ts[i];
        ev[i].item = items[i];
        ev[i].w = w ? w[i] : 1.0f;
    }
    qsort(ev, n, sizeof *ev, seed_ev_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n && k < max_seeds; i++) {
        /* Seeds are few (tens), so a linear duplicate check beats a map. */
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++) dup = out[j].item == ev[i].item;
        if (dup) continue;
        double age = (double)(now_ms - ev[i].ts);
        if (age < 0) age = 0;
        double r = half_life_ms > 0 ? exp2(-age / half_life_ms) : 1.0;
        out[k].item = ev[i].item;
        out[k].weight = (float)(ev[i].w * r);
        k++;
    }
    rk_free(ev);
    *nout = k;
    return 0;
}

/* ---- neighbour lists ---------------------------------------------------- */

void rk__nbrs_free(rk__nbrs *nb)
{
    rk_free(nb->ptr);
    rk_free(nb->item);
    rk_free(nb->score);
    memset(nb, 0, sizeof *nb);
}

void rk__nbrs_get(const rk__nbrs *nb, uint32_t x, const uint32_t **items,
                  const float **scores, size_t *n)
{
    if (x >= nb->nitems || !nb->ptr) {
        *items = NULL;
        *scores = NULL;
        *n = 0;
        return;
    }
    uint64_t b = nb->ptr[x], e = nb->ptr[x + 1];
    *items = nb->item + b;
    *scores = nb->score + b;
    *n = (size_t)(e - b);
}

int rk__nbrs_query(const rk__nbrs *nb, const rk_seed *seeds, size_t nseeds,
                   size_t k, uint8_t src, rk_candidate *out, size_t *nout)
{
    *nout = 0;
    if (k == 0 || nseeds == 0) return 0;
    size_t touched = 0;
    for (size_t s = 0; s < nseeds; s++)
        if (seeds[s].item < nb->nitems)
            touched += (size_t)(nb->ptr[seeds[s].item + 1] - nb->ptr[seeds[s].item]);
    if (touched == 0) return 0;
    /* Sums are kept in double so the result does not depend on how many
     * seeds there are beyond the usual rounding. */
    rk__u32map idx;
    double *acc = rk_malloc(touched * sizeof *acc);
    uint32_t *who = rk_malloc(touched * sizeof *who);
    rk_candidate *heap = rk_malloc((k < touched ? k : touched) * sizeof *heap);
    if (!acc || !who || !heap || rk__u32map_init(&idx, touched + nseeds)) {
        rk_free(acc);
        rk_free(who);
        rk_free(heap);
        return RK_ENOMEM;
    }
    size_t m = 0;
    for (size_t s = 0; s < nseeds; s++) {
        const uint32_t *it;
        const float *sc;
        size_t len;
        rk__nbrs_get(nb, seeds[s].item, &it, &sc, &len);
        for (size_t j = 0; j < len; j++) {
            int ins;
            uint32_t *slot = rk__u32map_put(&idx, it[j], (uint32_t)m, &ins);
            if (ins) {
                who[m] = it[j];
                acc[m++] = 0;
            }
            acc[*slot] += (double)seeds[s].weight * sc[j];
        }
    }
    /* Seeds are what the user already has: never recommend them back. */
    for (size_t s = 0; s < nseeds; s++) {
        uint32_t *slot = rk__u32map_get(&idx, seeds[s].item);
        if (slot) acc[*slot] = NAN;
    }
    rk__topk t;
    rk__topk_init(&t, heap, k < touched ? k : touched);
    for (size_t i = 0; i < m; i++)
        if (!isnan(acc[i]) && acc[i] > 0) rk__topk_push(&t, who[i], (float)acc[i], src);
    size_t n = rk__topk_finish(&t);
    memcpy(out, heap, n * sizeof *out);
    *nout = n;
    rk__u32map_free(&idx);
    rk_free(acc);
    rk_free(who);
    rk_free(heap);
    return 0;
}

/* ---- file format -------------------------------------------------------- */

#define HDR_SIZE 32


/* Writes n bytes and extends the checksum chain over them. */
static int write_sec(FILE *f, const void *p, size_t n, uint64_t *h)
{
    *h = rk_hash64(p, n, *h);
    return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        dir[0] = '.';
        dir[1] = 0;
    } else {
        size_t len = (size_t)(slash - path);
        if (len == 0) len = 1; /* "/file" lives in "/" */
        if (len >= sizeof dir) return -1;
        memcpy(dir, path, len);
        dir[len] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int rk__nbrs_save(const rk__nbrs *nb, const char magic[8], const double *meta,
                  uint32_t nmeta, const char *path, rk_err *err)
{
    size_t plen = strlen(path);
    char *tmp = rk_malloc(plen + 5);
    if (!tmp) return rk_err_set(err, RK_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = rk_err_set(err, RK_EIO, "%s: %s", tmp, strerror(errno));
        rk_free(tmp);
        return rc;
    }
    unsigned char hdr[HDR_SIZE];
    memcpy(hdr, magic, 8);
    rk_put_u32(hdr + 8, RK__NBRS_VERSION);
    rk_put_u32(hdr + 12, nmeta);
    rk_put_u32(hdr + 16, nb->nitems);
    rk_put_u32(hdr + 20, nb->top_n);
    rk_put_u64(hdr + 24, nb->nnz);
    uint64_t h = 0;
    /* An empty model (no items) still has ptr[0] = 0. */
    uint64_t zero = 0;
    const uint64_t *ptr = nb->ptr ? nb->ptr : &zero;
    int bad = write_sec(f, hdr, HDR_SIZE, &h) ||
              write_sec(f, meta, nmeta * sizeof(double), &h) ||
              write_sec(f, ptr, ((size_t)nb->nitems + 1) * sizeof(uint64_t), &h) ||
              write_sec(f, nb->item, nb->nnz * sizeof(uint32_t), &h) ||
              write_sec(f, nb->score, nb->nnz * sizeof(float), &h);
    unsigned char tail[8];
    rk_put_u64(tail, h);
    if (!bad) bad = fwrite(tail, 1, 8, f) != 8;
    if (!bad) bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int saved = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    /* rename after fsync: a reader sees the old file or the whole new
     * one, never a torn one; the directory fsync makes the name durable. */
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        saved = errno;
    }
    if (bad) {
        unlink(tmp);
        int rc = rk_err_set(err, RK_EIO, "%s: write failed: %s", path,
                            strerror(saved));
        rk_free(tmp);
        return rc;
    }
    rk_free(tmp);
    if (fsync_dir_of(path) != 0)
        return rk_err_set(err, RK_EIO, "%s: fsync of directory failed: %s",
                          path, strerror(errno));
    return 0;
}

static int read_sec(FILE *f, void *p, size_t n, uint64_t *h)
{
    if (n && fread(p, 1, n, f) != n) return -1;
    *h = rk_hash64(p, n, *h);
    return 0;
}

int rk__nbrs_load(rk__nbrs *nb, const char magic[8], double *meta,
                  uint32_t nmeta, const char *path, rk_err *err)
{
    memset(nb, 0, sizeof *nb);
    FILE *f = fopen(path, "rb");
    if (!f) return rk_err_set(err, RK_EIO, "%s: %s", path, strerror(errno));
    int rc = 0;
    double *fmeta = NULL;
    struct stat st;
    unsigned char hdr[HDR_SIZE];
    uint64_t h = 0;
    if (fstat(fileno(f), &st) != 0) {
        rc = rk_err_set(err, RK_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < HDR_SIZE + 8 || read_sec(f, hdr, HDR_SIZE, &h)) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: truncated (%llu bytes)", path,
                        (unsigned long long)size);
        goto out;
    }
    if (memcmp(hdr, magic, 8) != 0) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: not a %.7s file (bad magic)",
                        path, magic);
        goto out;
    }
    uint32_t version = rk_get_u32(hdr + 8), fnmeta = rk_get_u32(hdr + 12);
    if (version != RK__NBRS_VERSION) {
        rc = rk_err_set(err, RK_EVERSION,
                        "%s: format version %u, this build reads %u", path,
                        version, RK__NBRS_VERSION);
        goto out;
    }
    nb->nitems = rk_get_u32(hdr + 16);
    nb->top_n = rk_get_u32(hdr + 20);
    nb->nnz = rk_get_u64(hdr + 24);
    /* Check the size before allocating anything, so a corrupt count cannot
     * ask for terabytes. Every term is bounded, so the sum cannot wrap. */
    if (fnmeta > 1024 || nb->nnz > (uint64_t)nb->nitems * nb->top_n ||
        size != HDR_SIZE + 8ull * fnmeta + 8ull * ((uint64_t)nb->nitems + 1) +
                    8ull * nb->nnz + 8) {
        rc = rk_err_set(err, RK_ECORRUPT,
                        "%s: size %llu does not match its header (truncated "
                        "or corrupted)",
                        path, (unsigned long long)size);
        goto out;
    }
    fmeta = rk_malloc((fnmeta ? fnmeta : 1) * sizeof *fmeta);
    nb->ptr = rk_malloc(((size_t)nb->nitems + 1) * sizeof *nb->ptr);
    nb->item = rk_malloc((nb->nnz ? nb->nnz : 1) * sizeof *nb->item);
    nb->score = rk_malloc((nb->nnz ? nb->nnz : 1) * sizeof *nb->score);
    if (!fmeta || !nb->ptr || !nb->item || !nb->score) {
        rc = rk_err_set(err, RK_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    unsigned char tail[8];
    if (read_sec(f, fmeta, fnmeta * sizeof(double), &h) ||
        read_sec(f, nb->ptr, ((size_t)nb->nitems + 1) * sizeof(uint64_t), &h) ||
        read_sec(f, nb->item, nb->nnz * sizeof(uint32_t), &h) ||
        read_sec(f, nb->score, nb->nnz * sizeof(float), &h) ||
        fread(tail, 1, 8, f) != 8) {
        rc = rk_err_set(err, RK_EIO, "%s: read failed", path);
        goto out;
    }
    if (rk_get_u64(tail) != h) {
        rc = rk_err_set(err, RK_ECORRUPT, "%s: checksum mismatch", path);
        goto out;
    }
    /* The checksum catches accidents; these checks make sure even a file
     * crafted to pass it cannot send a query out of bounds. */
    if (nb->ptr[0] != 0 || nb->ptr[nb->nitems] != nb->nnz) goto bad;
    for (uint32_t x = 0; x < nb->nitems; x++)
        if (nb->ptr[x + 1] < nb->ptr[x] || nb->ptr[x + 1] - nb->ptr[x] > nb->top_n)
            goto bad;
    for (uint64_t j = 0; j < nb->nnz; j++)
        if (nb->item[j] >= nb->nitems || !isfinite(nb->score[j])) goto bad;
    for (uint32_t i = 0; i < nmeta && i < fnmeta; i++) meta[i] = fmeta[i];
    goto out;
bad:
    rc = rk_err_set(err, RK_ECORRUPT, "%s: inconsistent neighbour lists", path);
out:
    fclose(f);
    rk_free(fmeta);
    if (rc) rk__nbrs_free(nb);
    return rc;
}
