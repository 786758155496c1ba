/*
 * compute.c — rk_feat_compute: the one function that turns a request and
 * an item into a feature vector, online (aggregates from the store) and
 * offline (aggregates from a replay state), and the raw-value extraction
 * that fitting observes.
 *
 * A request is evaluated in two phases. The request phase parses the
 * context once, reads the user's record, derives the keys of aggregates
 * that do not depend on the item and extracts every request-level feature.
 * The item phase then reads the item's record, fetches item-level
 * aggregates and extracts the rest. Emission walks the features in
 * declaration order, so the vector's layout never depends on which phase
 * produced a value. Entity views are consumed before the next entity read
 * invalidates them: user features are fully extracted (categorical values
 * kept as hashes) before any item is read.
 */
#include <math.h>
#include <stdlib.h>

#include "feat_int.h"

typedef struct bagent {
    uint32_t coord;
    float count;
} bagent;

/* Per-request memo of item-level keys that do not contain the item (e.g.
 * [user, item.category]): candidates share them, and a store lookup costs
 * far more than a probe. Entries of older requests are ignored by their
 * generation. */
#define MEMO_BITS 11
#define MEMO_SLOTS (1u << MEMO_BITS)
typedef struct memo_ent {
    uint64_t gen, h;
    const unsigned char *rec;
    size_t len;
    int32_t idx;                          /* batch_attr_keys: index in bq2 */
} memo_ent;

struct rk_feat_source {
    const rk_feat_spec *s;
    rk_reader *r;
    const rk_feat_state *st;
    double *num;                          /* raw numeric outputs (nraw) */
    uint32_t *c0, *cn;                    /* per feature: range in cat */
    RK_VEC(uint64_t) cat;
    uint32_t *b0, *bn;                    /* per feature: range in bag */
    RK_VEC(bagent) bag;
    const unsigned char **rec;            /* per group: record, NULL = none */
    size_t *reclen;
    uint8_t *keyed;                       /* per group: key derived */
    int32_t *upos, *ipos;                 /* attribute index -> view slot */
    rk_entity_view uv, iv;
    uint8_t has_uv, has_iv, has_user, has_item;
    uint64_t uh, ih;
    json_t *ctx;
    const rk_feat_request *req;
    const rk_feat_item *item;
    size_t cat_req, bag_req;              /* lengths after the request phase */
    double *rownum;                       /* ncol_num */
    const char **rowcat;                  /* ncol_cat */
    uint32_t *rowcatlen;
    uint64_t qtok[FEAT_MAX_QTOK];         /* distinct query token hashes */
    uint32_t nq, qtf[FEAT_MAX_QTOK], dl;
    const char *qfield;                   /* field the tokens came from */
    uint8_t q_ready;
    memo_ent *memo;                       /* MEMO_SLOTS */
    uint64_t (*ctxh)[FEAT_MAX_PARTS];     /* per group: context part hashes */
    uint8_t (*ctxok)[FEAT_MAX_PARTS];     /* ... and whether present */
    uint64_t gen;
    rk_err *err;
    /* Read cache (spec->cache) for this request: on when reading a reader
     * of the attached store; ver is the reader's snapshot commit. */
    feat_cache *cache;
    uint64_t ver;
    rk_arena arena;                       /* cached records of one request */
    size_t blobcap;                       /* FEAT_ENT_BLOB_MAX */
    unsigned char *blob[2];               /* entity blobs: user, item */
    rk_attr_val *vals[2];                 /* their decoded attributes */
    RK_VEC(const char *) lists[2];        /* list attribute pointers */
    /* The candidates' cache probes, made in one batch before the item
     * loop (batch_probe): per item bstride queries, the item's record
     * first when bent, then one per item-level group with a column in
     * gcol (-1: probed one by one). NULL when the request is not batched. */
    fc_get *bq;
    size_t bq_n, cur;                     /* items in bq; the current one */
    uint64_t *bih;                        /* per item: its KP_ITEM hash */
    uint32_t bstride;
    uint8_t bent;
    int32_t *gcol;
    /* Item-level groups keyed by an item attribute (gcol2 >= 0), probed
     * in a second batch once the candidates' records are known: per item
     * ncol2 indices into bq2 (-1: a key part is missing). */
    int32_t *gcol2;
    uint32_t ncol2;
    fc_get *bq2;
    int32_t *bidx2;
    /* Item attributes used as key parts (distinct), whose key-part hashes
     * item blobs carry; kidx maps group part gi * FEAT_MAX_PARTS + k to
     * its index here. */
    uint32_t nka;
    uint32_t *ka;
    uint32_t *kidx;
    /* Item bundles (rk__feat_cache_set_bundle): gitem is the [item] group
     * (-1: none). In a batch with bund set, column 0 of bq probed each
     * candidate's bundle; bundle_resolve turns it into the result of an
     * entity probe (the blob) and brec/breclen, the [item] record. With
     * bund 2 the bundles are device bundles, which hold the candidate's
     * record of group gdev ([item, context.X]) too: bdrec/bdreclen. */
    int32_t gitem, gdev;
    uint8_t bund;
    const unsigned char **brec, **bdrec;
    uint32_t *breclen, *bdreclen;
    /* Pinned lock-free cache reader of the current request (-1: none, the
     * locked calls are used), and the slot to try first next time. */
    int rs;
    uint32_t rhint;
};

/* Entities whose encoded used attributes exceed this are not cached. */
#define FEAT_ENT_BLOB_MAX 16384

int rk_feat_source_create(rk_feat_source **out, const rk_feat_spec *s)
{
    *out = NULL;
    rk_feat_source *src = rk_calloc(1, sizeof *src);
    if (!src) return RK_ENOMEM;
    src->s = s;
    uint32_t nf = s->nfeat ? s->nfeat : 1, ng = s->ngroups ? s->ngroups : 1;
    src->num = rk_calloc(s->nraw ? s->nraw : 1, sizeof *src->num);
    src->c0 = rk_calloc(nf, sizeof *src->c0);
    src->cn = rk_calloc(nf, sizeof *src->cn);
    src->b0 = rk_calloc(nf, sizeof *src->b0);
    src->bn = rk_calloc(nf, sizeof *src->bn);
    src->rec = rk_calloc(ng, sizeof *src->rec);
    src->reclen = rk_calloc(ng, sizeof *src->reclen);
    src->keyed = rk_calloc(ng, 1);
    src->upos = rk_calloc(s->max_user_attr + 1, sizeof *src->upos);
    src->ipos = rk_calloc(s->max_item_attr + 1, sizeof *src->ipos);
    src->rownum = rk_calloc(s->ncol_num + 1, sizeof *src->rownum);
    src->rowcat = rk_calloc(s->ncol_cat + 1, sizeof *src->rowcat);
    src->rowcatlen = rk_calloc(s->ncol_cat + 1, sizeof *src->rowcatlen);
    src->memo = rk_calloc(MEMO_SLOTS, sizeof *src->memo);
    src->ctxh = rk_calloc(ng, sizeof *src->ctxh);
    src->ctxok = rk_calloc(ng, sizeof *src->ctxok);
    src->gcol = rk_calloc(ng, sizeof *src->gcol);
    src->gcol2 = rk_calloc(ng, sizeof *src->gcol2);
    src->ka = rk_calloc((size_t)ng * FEAT_MAX_PARTS, sizeof *src->ka);
    src->kidx = rk_calloc((size_t)ng * FEAT_MAX_PARTS, sizeof *src->kidx);
    src->rs = -1;
    src->gitem = rk__feat_item_group(s);
    src->gdev = rk__feat_item_ctx_group(s);
    if (src->ka && src->kidx)
        for (uint32_t gi = 0; gi < s->ngroups; gi++)
            for (uint32_t k = 0; k < s->g[gi].nparts; k++) {
                const kpart *kp = &s->g[gi].part[k];
                if (kp->kind != KP_ITEM_ATTR) continue;
                uint32_t j = 0;
                while (j < src->nka && src->ka[j] != kp->attr) j++;
                if (j == src->nka) src->ka[src->nka++] = kp->attr;
                src->kidx[gi * FEAT_MAX_PARTS + k] = j;
            }
    src->blobcap = FEAT_ENT_BLOB_MAX;
    for (int i = 0; i < 2; i++) {
        src->blob[i] = rk_malloc(src->blobcap);
        src->vals[i] = rk_calloc(RK_MAX_ATTRS, sizeof *src->vals[i]);
        src->lists[i].max = 1u << 20;
    }
    /* Records copied out of the cache live until the next request; 64 MiB
     * bounds a request of many thousand candidates. */
    rk_arena_init(&src->arena, 64 << 10, (size_t)64 << 20);
    src->cat.max = 1u << 20;
    src->bag.max = RK_FVEC_MAX_SPARSE;
    if (!src->num || !src->c0 || !src->cn || !src->b0 || !src->bn || !src->rec ||
        !src->reclen || !src->keyed || !src->upos || !src->ipos || !src->rownum ||
        !src->rowcat || !src->rowcatlen || !src->memo || !src->ctxh || !src->ctxok || !src->gcol ||
        !src->gcol2 || !src->ka || !src->kidx ||
        !src->blob[0] || !src->blob[1] || !src->vals[0] || !src->vals[1]) {
        rk_feat_source_destroy(src);
        return RK_ENOMEM;
    }
    *out = src;
    return 0;
}

void rk_feat_source_destroy(rk_feat_source *src)
{
    if (!src) return;
    rk_free(src->num);
    rk_free(src->c0);
    rk_free(src->cn);
    rk_free(src->b0);
    rk_free(src->bn);
    rk_vec_free(&src->cat);
    rk_vec_free(&src->bag);
    rk_free(src->rec);
    rk_free(src->reclen);
    rk_free(src->keyed);
    rk_free(src->upos);
    rk_free(src->ipos);
    rk_free(src->rownum);
    rk_free(src->rowcat);
    rk_free(src->rowcatlen);
    rk_free(src->memo);
    rk_free(src->ctxh);
    rk_free(src->ctxok);
    rk_free(src->gcol);
    rk_free(src->gcol2);
    rk_free(src->ka);
    rk_free(src->kidx);
    for (int i = 0; i < 2; i++) {
        rk_free(src->blob[i]);
        rk_free(src->vals[i]);
        rk_vec_free(&src->lists[i]);
    }
    rk_arena_free(&src->arena);
    json_decref(src->ctx);
    rk_free(src);
}

void rk_feat_source_set_reader(rk_feat_source *src, rk_reader *r) { src->r = r; }
void rk_feat_source_set_state(rk_feat_source *src, const rk_feat_state *st)
{
    src->st = st;
}

static int reader_fail(rk_feat_source *src, int rc, const char *what)
{
    return rk_err_set(src->err, rc, "features: %s: %s", what,
                      src->r ? rk_reader_errmsg(src->r) : rk_strerror(rc));
}

/* rk__feat_src_get with the key's batch probe pre (NULL: probe now). */
static int src_get(rk_feat_source *src, const unsigned char *key, const fc_get *pre,
                   const unsigned char **rec, size_t *len, rk_err *err)
{
    *rec = NULL;
    *len = 0;
    if (src->st) {
        *rec = rk__feat_state_get(src->st, key, len);
        return 0;
    }
    if (!src->r) return 0;
    fc_key ck = {rk__rd64(key + 1), rk__rd64(key + 9)};
    int cached = FC_BYPASS;
    if (pre) {
        cached = pre->rc;
        if (cached == FC_HIT) {
            *rec = pre->val;
            *len = pre->len;
            return 0;
        }
        if (cached == FC_ABSENT) return 0;
    } else if (src->cache && src->rs >= 0) {
        /* Pinned: the record is borrowed in place until request_end. */
        const unsigned char *v;
        cached = rk__feat_cache_find(src->cache, src->rs, ck, src->ver, &v, len);
        if (cached == FC_HIT) {
            *rec = v;
            return 0;
        }
        if (cached == FC_ABSENT) return 0;
    } else if (src->cache) {
        /* The record is copied into the request's arena: the shard lock is
         * not held while the caller reads it. Its size is the group's. */
        const agroup *g = rk__feat_group_by_layout(src->s, ck.a);
        size_t cap = g ? g->rec_size : 0;
        unsigned char *buf = cap ? rk_arena_alloc(&src->arena, cap) : NULL;
        if (buf) {
            cached = rk__feat_cache_get(src->cache, ck, src->ver, buf, cap, len);
            if (cached == FC_HIT) {
                *rec = buf;
                return 0;
            }
            if (cached == FC_ABSENT) return 0;
        }
    }
    const void *v;
    size_t n;
    int rc = rk_reader_kv_get(src->r, RK_KV_AGG, key, FEAT_KEY_LEN, &v, &n);
    if (rc == RK_ENOTFOUND) {
        if (cached == FC_MISS) rk__feat_cache_fill(src->cache, ck, src->ver, NULL, 0, 0);
        return 0;
    }
    if (rc) return rk_err_set(err, rc, "features: aggregate lookup: %s",
                              rk_reader_errmsg(src->r));
    if (cached == FC_MISS) rk__feat_cache_fill(src->cache, ck, src->ver, v, n, 1);
    *rec = v;
    *len = n;
    return 0;
}

int rk__feat_src_get(rk_feat_source *src, const unsigned char *key,
                     const unsigned char **rec, size_t *len, rk_err *err)
{
    return src_get(src, key, NULL, rec, len, err);
}

/* ---- entities --------------------------------------------------------------- */

static void index_view(const rk_entity_view *v, int32_t *pos, uint32_t max)
{
    for (uint32_t i = 0; i < max; i++) pos[i] = -1;
    for (uint32_t i = 0; i < v->nattrs; i++)
        if (v->attrs[i].attr < max) pos[v->attrs[i].attr] = (int32_t)i;
}

static const rk_attr_val *view_attr(const rk_entity_view *v, const int32_t *pos,
                                    uint32_t attr)
{
    int32_t i = pos[attr];
    return i < 0 ? NULL : &v->attrs[i];
}

/*
 * Entity blobs: the attributes of a view that the spec uses (index below
 * max_user_attr / max_item_attr), flattened for the read cache. In-process
 * only, native byte order. Layout: u32 id, u32 flags, i64 updated_ms, u32
 * n, u32 nk, then nk key-part entries (u64 hash, u64 present: the hashes
 * of the item attributes src->ka that aggregate keys use, so a batch
 * derives keys from the blob's first line without decoding it; 0 for
 * users), then n fixed entries, then the payloads they point at by
 * offset, each 8-byte aligned: string bytes; a list's u32 lengths then its
 * strings; a vector's floats.
 */
typedef struct blob_attr {
    uint32_t attr, type;
    double num;
    int64_t ts_ms;
    uint32_t len, n;          /* string bytes, or list count / vector dim */
    uint64_t off;
} blob_attr;

#define BLOB_HDR 24
#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

#define BLOB_KEY 16
/* States of an item record's cache aux word: the hash of key attribute
 * ka[0], or that the item has no categorical value of it. */
#define AUX_NOKEY 1
#define AUX_KEY 2
#define AUX_KEYBITS 3
/* An item bundle (bundle_resolve) sets AUX_BUNDLE, with AUX_REC when it
 * holds the [item] record (first, padded to 8 bytes), AUX_DREC when it
 * holds the [item, context.X] record (a device bundle; next, padded to 8
 * bytes) and AUX_ENT when it holds the item's blob (last), and the key
 * bits above. */
#define AUX_BUNDLE 4
#define AUX_REC 8
#define AUX_ENT 16
#define AUX_DREC 32

/* The key-part hash of item attribute attr in v, as fetch_group derives
 * it from the view (the last value of attr wins, as in index_view); 0
 * when v has no categorical value of it. */
static int view_key_attr(const rk_entity_view *v, uint32_t attr, uint64_t *h)
{
    const rk_attr_val *a = NULL;
    for (uint32_t i = 0; i < v->nattrs; i++)
        if (v->attrs[i].attr == attr) a = &v->attrs[i];
    if (!a || a->type != RK_ATTR_CATEGORICAL) return 0;
    *h = rk__feat_part_hash(KP_ITEM_ATTR, a->str, a->len);
    return 1;
}

/* Encodes v's used attributes into buf (with the key-part hashes of the
 * nk attributes ka); 0 when it does not fit in cap. */
static size_t blob_encode(const rk_entity_view *v, uint32_t max_attr, const uint32_t *ka,
                          uint32_t nk, unsigned char *buf, size_t cap)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->nattrs; i++)
        if (v->attrs[i].attr < max_attr) n++;
    size_t base = BLOB_HDR + (size_t)nk * BLOB_KEY;
    size_t off = base + (size_t)n * sizeof(blob_attr);
    if (off > cap) return 0;
    uint32_t hdr[2] = {v->id, v->flags};
    memcpy(buf, hdr, 8);
    memcpy(buf + 8, &v->updated_ms, 8);
    uint32_t h2[2] = {n, nk};
    memcpy(buf + 16, h2, 8);
    for (uint32_t j = 0; j < nk; j++) {
        uint64_t kh[2] = {0, 0};
        kh[1] = (uint64_t)view_key_attr(v, ka[j], &kh[0]);
        memcpy(buf + BLOB_HDR + (size_t)j * BLOB_KEY, kh, sizeof kh);
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < v->nattrs; i++) {
        const rk_attr_val *a = &v->attrs[i];
        if (a->attr >= max_attr) continue;
        blob_attr b = {a->attr, (uint32_t)a->type, a->num, a->ts_ms, 0, 0, off};
        size_t need = 0;
        if (a->type == RK_ATTR_CATEGORICAL || a->type == RK_ATTR_TEXT) {
            b.len = a->len;
            need = a->len;
        } else if (a->type == RK_ATTR_CATEGORICAL_LIST) {
            b.n = a->n;
            need = 4u * (size_t)a->n;
            for (uint32_t j = 0; j < a->n; j++) need += a->list_lens[j];
        } else if (a->type == RK_ATTR_VECTOR) {
            b.n = a->dim;
            need = 4u * (size_t)a->dim;
        }
        if (ALIGN8(off + need) > cap) return 0;
        unsigned char *p = buf + off;
        if (a->type == RK_ATTR_CATEGORICAL || a->type == RK_ATTR_TEXT) {
            if (a->len) memcpy(p, a->str, a->len);
        } else if (a->type == RK_ATTR_CATEGORICAL_LIST) {
            if (a->n) memcpy(p, a->list_lens, 4u * (size_t)a->n);
            p += 4u * (size_t)a->n;
            for (uint32_t j = 0; j < a->n; j++) {
                memcpy(p, a->list[j], a->list_lens[j]);
                p += a->list_lens[j];
            }
        } else if (a->type == RK_ATTR_VECTOR && a->dim) {
            memcpy(p, a->vec, 4u * (size_t)a->dim);
        }
        memcpy(buf + base + (size_t)k++ * sizeof b, &b, sizeof b);
        off = ALIGN8(off + need);
    }
    return off;
}

/* Rebuilds a view over blob (which must stay put while the view is used). */
static int blob_decode(rk_feat_source *src, int which, const unsigned char *buf,
                       rk_entity_view *v)
{
    rk_attr_val *vals = src->vals[which];
    uint32_t hdr[2], h2[2];
    memcpy(hdr, buf, 8);
    memcpy(&v->updated_ms, buf + 8, 8);
    memcpy(h2, buf + 16, 8);
    v->id = hdr[0];
    v->flags = hdr[1];
    v->nattrs = h2[0];
    /* The entries follow the key hashes. */
    const unsigned char *ent = buf + BLOB_HDR + (size_t)h2[1] * BLOB_KEY;
    v->attrs = vals;
    src->lists[which].n = 0;
    size_t nl = 0;
    for (uint32_t i = 0; i < v->nattrs; i++) {
        blob_attr b;
        memcpy(&b, ent + (size_t)i * sizeof b, sizeof b);
        if (b.type == RK_ATTR_CATEGORICAL_LIST) nl += b.n;
    }
    int rc = rk_vec_reserve(&src->lists[which], nl);
    if (rc) return rc;
    for (uint32_t i = 0; i < v->nattrs; i++) {
        blob_attr b;
        memcpy(&b, ent + (size_t)i * sizeof b, sizeof b);
        rk_attr_val *a = &vals[i];
        memset(a, 0, sizeof *a);
        a->attr = b.attr;
        a->type = (rk_attr_type)b.type;
        a->num = b.num;
        a->ts_ms = b.ts_ms;
        const unsigned char *p = buf + b.off;
        if (a->type == RK_ATTR_CATEGORICAL || a->type == RK_ATTR_TEXT) {
            a->str = (const char *)p;
            a->len = b.len;
        } else if (a->type == RK_ATTR_CATEGORICAL_LIST) {
            const char **lp = src->lists[which].v + src->lists[which].n;
            a->n = b.n;
            a->list_lens = (const uint32_t *)(const void *)p;
            const char *q = (const char *)p + 4u * (size_t)b.n;
            for (uint32_t j = 0; j < b.n; j++) {
                lp[j] = q;
                q += a->list_lens[j];
            }
            a->list = lp;
            src->lists[which].n += b.n;
        } else if (a->type == RK_ATTR_VECTOR) {
            a->dim = b.n;
            a->vec = (const float *)(const void *)p;
        }
    }
    return 0;
}

/* Reads an entity by external id (or dense id); *found 0 when unknown.
 * With the read cache on, an entity named by external id comes from the
 * cache, or is read and offered to it. */
static int read_entity(rk_feat_source *src, rk_entity e, const char *id,
                       size_t len, int has_dense, uint32_t dense,
                       rk_entity_view *v, int *found)
{
    *found = 0;
    if (!src->r || (!id && !has_dense)) return 0;
    int which = e == RK_ENTITY_ITEM, cached = FC_BYPASS;
    fc_key ck = {0, 0};
    const fc_get *pre = which && src->bq && src->bent && id
                            ? &src->bq[src->cur * src->bstride] : NULL;
    if (pre) {
        /* Probed in the request's batch (the blob is borrowed from the
         * cache or in the arena). */
        ck = pre->k;
        cached = pre->rc;
        if (cached == FC_ABSENT) return 0;
        if (cached == FC_HIT) {
            int rc = blob_decode(src, which, pre->val, v);
            if (rc) return rk_err_set(src->err, rc, "features: out of memory");
            *found = 1;
            return 0;
        }
    } else if (src->cache && id && src->rs >= 0) {
        const unsigned char *b;
        size_t n;
        ck = rk__feat_cache_entity_key((uint8_t)e, id, len);
        cached = rk__feat_cache_find(src->cache, src->rs, ck, src->ver, &b, &n);
        if (cached == FC_ABSENT) return 0;
        if (cached == FC_HIT) {
            int rc = blob_decode(src, which, b, v);
            if (rc) return rk_err_set(src->err, rc, "features: out of memory");
            *found = 1;
            return 0;
        }
    } else if (src->cache && id) {
        size_t n;
        ck = rk__feat_cache_entity_key((uint8_t)e, id, len);
        cached = rk__feat_cache_get(src->cache, ck, src->ver, src->blob[which],
                                    src->blobcap, &n);
        if (cached == FC_ABSENT) return 0;
        if (cached == FC_HIT) {
            int rc = blob_decode(src, which, src->blob[which], v);
            if (rc) return rk_err_set(src->err, rc, "features: out of memory");
            *found = 1;
            return 0;
        }
    }
    int rc = 0;
    if (!has_dense) rc = rk_reader_lookup(src->r, e, id, len, &dense);
    if (!rc) rc = rk_reader_entity(src->r, e, dense, v);
    if (rc == RK_ENOTFOUND) {
        if (cached == FC_MISS) rk__feat_cache_fill(src->cache, ck, src->ver, NULL, 0, 0);
        return 0;
    }
    if (rc) return reader_fail(src, rc, "entity read");
    if (cached == FC_MISS) {
        uint32_t max = which ? src->s->max_item_attr : src->s->max_user_attr;
        size_t n = blob_encode(v, max, src->ka, which ? src->nka : 0, src->blob[which],
                               src->blobcap);
        /* The first key-part hash rides in the slot too (AUX_*). */
        uint64_t kh = 0;
        uint8_t ast = which && src->nka ? (view_key_attr(v, src->ka[0], &kh) ? AUX_KEY : AUX_NOKEY) : 0;
        if (n) rk__feat_cache_fill_aux(src->cache, ck, src->ver, src->blob[which], n, 1, kh, ast);
    }
    *found = 1;
    return 0;
}

/* ---- aggregate keys ------------------------------------------------------------- */

static int ctx_value(const rk_feat_source *src, const char *field, char buf[48],
                     const char **p, size_t *n)
{
    if (!src->ctx) return -1;
    return rk__feat_json_str(json_object_get(src->ctx, field), buf, p, n);
}

/* Derives group gi's key for the current request/item and looks it up. */
static int fetch_group(rk_feat_source *src, uint32_t gi)
{
    const agroup *g = &src->s->g[gi];
    uint64_t parts[FEAT_MAX_PARTS];
    src->rec[gi] = NULL;
    src->reclen[gi] = 0;
    src->keyed[gi] = 0;
    if (src->bq2 && src->gcol2[gi] >= 0) {
        /* Derived and probed by batch_attr_keys: -1 a part is missing,
         * -2 not batched (derive it here). */
        int32_t x = src->bidx2[src->cur * src->ncol2 + (uint32_t)src->gcol2[gi]];
        if (x == -1) return 0;
        if (x >= 0) {
            src->keyed[gi] = 1;
            if (src->bq2[x].rc == FC_HIT) {
                src->rec[gi] = src->bq2[x].val;
                src->reclen[gi] = src->bq2[x].len;
            }
            return 0;
        }
    }
    if (src->bq && src->bund && (int32_t)gi == src->gitem && src->item && src->item->id) {
        /* In the candidate's bundle (bundle_resolve). */
        src->keyed[gi] = 1;
        src->rec[gi] = src->brec[src->cur];
        src->reclen[gi] = src->breclen[src->cur];
        return 0;
    }
    if (src->bq && src->bund == 2 && (int32_t)gi == src->gdev && src->item && src->item->id) {
        src->keyed[gi] = 1;
        src->rec[gi] = src->bdrec[src->cur];
        src->reclen[gi] = src->bdreclen[src->cur];
        return 0;
    }
    if (src->bq && g->item_level && src->gcol[gi] >= 0) {
        /* Found (or known absent) by batch_probe: the key is not needed
         * again. */
        const fc_get *pre =
            &src->bq[src->cur * src->bstride + src->bent + (uint32_t)src->gcol[gi]];
        if (pre->rc == FC_HIT || pre->rc == FC_ABSENT) {
            src->keyed[gi] = 1;
            if (pre->rc == FC_HIT) {
                src->rec[gi] = pre->val;
                src->reclen[gi] = pre->len;
            }
            return 0;
        }
    }
    for (uint32_t k = 0; k < g->nparts; k++) {
        const kpart *kp = &g->part[k];
        switch (kp->kind) {
        case KP_USER:
            if (!src->has_user) return 0;
            parts[k] = src->uh;
            break;
        case KP_ITEM:
            if (!src->has_item) return 0;
            parts[k] = src->ih;
            break;
        case KP_ITEM_ATTR: {
            const rk_attr_val *a = src->has_iv ? view_attr(&src->iv, src->ipos, kp->attr)
                                               : NULL;
            if (!a || a->type != RK_ATTR_CATEGORICAL) return 0;
            parts[k] = rk__feat_part_hash(KP_ITEM_ATTR, a->str, a->len);
            break;
        }
        case KP_CTX: /* hashed once per request, in request_begin */
            if (!src->ctxok[gi][k]) return 0;
            parts[k] = src->ctxh[gi][k];
            break;
        }
    }
    unsigned char key[FEAT_KEY_LEN];
    rk__feat_agg_key(g, parts, key);
    src->keyed[gi] = 1;
    if (!g->item_level || g->has_item_part) {
        const fc_get *pre = NULL;
        if (src->bq && g->item_level && src->gcol[gi] >= 0) {
            pre = &src->bq[src->cur * src->bstride + src->bent + (uint32_t)src->gcol[gi]];
            /* The batch could not derive the key (a part missing), so this
             * is a fresh probe; never the case when fetch_group got here. */
            if (pre->rc < 0) pre = NULL;
        }
        return src_get(src, key, pre, &src->rec[gi], &src->reclen[gi], src->err);
    }
    /* Shared by candidates: look up once per request. The key hash is
     * xxh3 output, so its low bits index the memo; a full slot is simply
     * overwritten. */
    uint64_t h = rk__rd64(key + 9) ^ g->layout;
    memo_ent *m = &src->memo[h & (MEMO_SLOTS - 1)];
    if (m->gen == src->gen && m->h == h) {
        src->rec[gi] = m->rec;
        src->reclen[gi] = m->len;
        return 0;
    }
    int rc = rk__feat_src_get(src, key, &src->rec[gi], &src->reclen[gi], src->err);
    if (!rc) {
        m->gen = src->gen;
        m->h = h;
        m->rec = src->rec[gi];
        m->len = src->reclen[gi];
    }
    return rc;
}

/* Candidates ahead of the one being computed whose cache slots are
 * prefetched: the probes of a request are independent, so their memory
 * misses can overlap instead of queueing one after another. */
#define PREFETCH_AHEAD 8

/* Prefetches the cache slots item it will probe: its record and the
 * aggregate keys that do not need its attributes. */
static void prefetch_item(const rk_feat_source *src, const rk_feat_item *it)
{
    const rk_feat_spec *s = src->s;
    if (!src->cache || !it->id) return;
    uint64_t ih = rk__feat_part_hash(KP_ITEM, it->id, it->len);
    if (s->uses_item_entity)
        rk__feat_cache_prefetch(src->cache, rk__feat_cache_entity_key_h(RK_ENTITY_ITEM, ih));
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        const agroup *g = &s->g[gi];
        if (!g->item_level || !g->has_item_part || g->uses_item_attr) continue;
        uint64_t parts[FEAT_MAX_PARTS];
        uint32_t k;
        for (k = 0; k < g->nparts; k++) {
            const kpart *kp = &g->part[k];
            if (kp->kind == KP_ITEM) {
                parts[k] = ih;
            } else if (kp->kind == KP_USER && src->has_user) {
                parts[k] = src->uh;
            } else if (kp->kind == KP_CTX && src->ctxok[gi][k]) {
                parts[k] = src->ctxh[gi][k];
            } else {
                break;
            }
        }
        if (k < g->nparts) continue;
        unsigned char key[FEAT_KEY_LEN];
        rk__feat_agg_key(g, parts, key);
        rk__feat_cache_prefetch(src->cache, (fc_key){rk__rd64(key + 1), rk__rd64(key + 9)});
    }
}

/* Probes the cache for every candidate at once, before the item loop:
 * the item's record when entity is set, and the keys of item-level groups
 * that contain the item and no item attribute (the others need the
 * item's record first and go one by one, most of them through the memo).
 * One lock per shard instead of one per key, and slots and values
 * prefetched ahead (rk__feat_cache_get_many). Leaves src->bq NULL, and
 * the loop probing key by key, when the cache is off or the arena full. */
static int batch_attr_keys(rk_feat_source *src, const rk_feat_item *items, size_t n);
static int bundle_resolve(rk_feat_source *src, const rk_feat_item *items, size_t n);

/* One column of a batch, planned per request (plan_group). */
typedef struct kplan {
    const agroup *g;
    uint32_t col;                         /* in each candidate's row */
    uint8_t imask;                        /* bit k: part k is the item */
    uint8_t amask;                        /* ... an item attribute */
    uint32_t kx[FEAT_MAX_PARTS];          /* its index in the blob's key hashes */
    uint64_t parts[FEAT_MAX_PARTS];       /* the others */
} kplan;

/* Plans group gi's keys for the request: the user's and context's parts
 * filled in (the same for every candidate), the item's and its
 * attributes' marked. 0 when the request lacks a user or context part:
 * the key is then derivable for no candidate, as fetch_group finds. */
static int plan_group(const rk_feat_source *src, uint32_t gi, uint32_t col, kplan *p)
{
    const agroup *g = &src->s->g[gi];
    p->g = g;
    p->col = col;
    p->imask = p->amask = 0;
    for (uint32_t k = 0; k < g->nparts; k++) {
        const kpart *kp = &g->part[k];
        p->parts[k] = 0;
        p->kx[k] = src->kidx[gi * FEAT_MAX_PARTS + k];
        if (kp->kind == KP_ITEM) p->imask |= (uint8_t)(1u << k);
        else if (kp->kind == KP_ITEM_ATTR) p->amask |= (uint8_t)(1u << k);
        else if (kp->kind == KP_USER && src->has_user) p->parts[k] = src->uh;
        else if (kp->kind == KP_CTX && src->ctxok[gi][k]) p->parts[k] = src->ctxh[gi][k];
        else return 0;
    }
    return 1;
}

static int batch_probe(rk_feat_source *src, const rk_feat_item *items, size_t n,
                       int entity, int copy)
{
    const rk_feat_spec *s = src->s;
    src->bq = NULL;
    src->bih = NULL;
    src->bq2 = NULL;
    if (!src->cache || !n) return 0;
    /* With bundles, column 0 probes the item's record and its [item]
     * record together, so that group gets no column of its own; with
     * device bundles (bund 2, when the request has the context field)
     * the [item, context.X] record too. */
    uint64_t blay = src->gitem >= 0 ? s->g[src->gitem].layout : 0;
    int bund = blay && rk__feat_cache_bundle_layout(src->cache) == blay;
    const agroup *dg = NULL;
    kplan dp;
    if (bund && src->gdev >= 0 &&
        rk__feat_cache_dbundle_layout(src->cache) == s->g[src->gdev].layout &&
        plan_group(src, (uint32_t)src->gdev, 0, &dp)) {
        dg = dp.g;
        bund = 2;
    }
    uint32_t ncol = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        const agroup *g = &s->g[gi];
        src->gcol[gi] = g->item_level && g->has_item_part && !g->uses_item_attr &&
                                !(bund && (int32_t)gi == src->gitem) &&
                                !(bund == 2 && (int32_t)gi == src->gdev)
                            ? (int32_t)ncol++ : -1;
    }
    uint32_t c0 = entity || bund ? 1u : 0u, stride = c0 + ncol;
    if (!stride) return 0;
    /* The columns' keys, planned once per request: every part but the
     * item's is the same for all candidates, and a part missing from the
     * request (no user, no such context field) leaves the column unprobed
     * for every candidate, as fetch_group would find it. */
    kplan *plan = rk_arena_alloc(&src->arena, (ncol ? ncol : 1) * sizeof *plan);
    if (!plan) return 0;
    uint32_t np = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        if (src->gcol[gi] >= 0 && plan_group(src, gi, c0 + (uint32_t)src->gcol[gi], &plan[np]))
            np++;
    fc_get *q = rk_arena_alloc(&src->arena, n * stride * sizeof *q);
    uint64_t *bih = rk_arena_alloc(&src->arena, n * sizeof *bih);
    src->brec = bund ? rk_arena_alloc(&src->arena, n * sizeof *src->brec) : NULL;
    src->breclen = bund ? rk_arena_alloc(&src->arena, n * sizeof *src->breclen) : NULL;
    src->bdrec = dg ? rk_arena_alloc(&src->arena, n * sizeof *src->bdrec) : NULL;
    src->bdreclen = dg ? rk_arena_alloc(&src->arena, n * sizeof *src->bdreclen) : NULL;
    if (!q || !bih || (bund && (!src->brec || !src->breclen)) ||
        (dg && (!src->bdrec || !src->bdreclen)))
        return 0;
    for (size_t i = 0; i < n; i++) {
        const rk_feat_item *it = &items[i];
        fc_get *row = q + i * stride;
        bih[i] = 0;
        for (uint32_t j = 0; j < stride; j++) {
            row[j].val = NULL;
            row[j].len = 0;
            row[j].rc = -1;
            row[j].auxst = 0;
            row[j].stamped = 0;
        }
        if (!it->id) continue;
        /* The item's one hash: its aggregate keys' part, its cache key,
         * and (bih) the item loop's src->ih. */
        uint64_t ih = rk__feat_part_hash(KP_ITEM, it->id, it->len);
        bih[i] = ih;
        if (dg) {
            /* Keyed by its [item, context.X] record, checked against the
             * item's stamp (its [item] key hash word). */
            uint64_t parts[FEAT_MAX_PARTS];
            for (uint32_t k = 0; k < dg->nparts; k++)
                parts[k] = dp.imask >> k & 1 ? ih : dp.parts[k];
            row[0].k = rk__feat_cache_bundle_key(dg->layout, rk__feat_agg_hash(dg, parts));
            row[0].ist = rk__feat_item_key_hash(blay, ih);
            row[0].stamped = 1;
            row[0].rc = FC_MISS;
        } else if (bund) {
            row[0].k = rk__feat_cache_bundle_key(blay, rk__feat_item_key_hash(blay, ih));
            row[0].rc = FC_MISS;
        } else if (entity) {
            row[0].k = rk__feat_cache_entity_key_h(RK_ENTITY_ITEM, ih);
            row[0].rc = FC_MISS;
        }
        for (uint32_t j = 0; j < np; j++) {
            const kplan *p = &plan[j];
            uint64_t parts[FEAT_MAX_PARTS];
            for (uint32_t k = 0; k < p->g->nparts; k++)
                parts[k] = p->imask >> k & 1 ? ih : p->parts[k];
            fc_get *x = &row[p->col];
            x->k = (fc_key){p->g->layout, rk__feat_agg_hash(p->g, parts)};
            x->rc = FC_MISS;
        }
    }
    if (src->rs >= 0 && !copy)
        rk__feat_cache_find_many(src->cache, src->rs, src->ver, q, n * stride);
    else rk__feat_cache_get_many(src->cache, src->ver, q, n * stride, &src->arena);
    src->bq = q;
    src->bih = bih;
    src->bq_n = n;
    src->bstride = stride;
    src->bent = (uint8_t)c0;
    src->bund = (uint8_t)bund;
    int rc = bund ? bundle_resolve(src, items, n) : 0;
    return rc ? rc : batch_attr_keys(src, items, n);
}

/* Reads one aggregate record from the store; *rv NULL when absent (valid
 * while the reader is). */
static int bundle_rec(rk_feat_source *src, uint64_t layout, uint64_t hash, const void **rv,
                      size_t *rn)
{
    unsigned char key[FEAT_KEY_LEN];
    key[0] = 'A';
    rk__le64(key + 1, layout);
    rk__le64(key + 9, hash);
    int rc = rk_reader_kv_get(src->r, RK_KV_AGG, key, FEAT_KEY_LEN, rv, rn);
    if (rc == RK_ENOTFOUND) {
        *rv = NULL;
        *rn = 0;
        return 0;
    }
    return rc ? rk_err_set(src->err, rc, "features: aggregate lookup: %s",
                           rk_reader_errmsg(src->r))
              : 0;
}

/* Reads candidate i's bundle from the store after a probe that did not
 * find it (e: its column 0): the item's record, as read_entity reads it,
 * its [item] record and, for a device bundle, its [item, context.X]
 * record; offers the bundle to the cache after a miss and leaves e,
 * brec[i] and bdrec[i] as bundle_resolve does for a hit. */
static int bundle_read(rk_feat_source *src, const rk_feat_item *it, size_t i, fc_get *e)
{
    const rk_feat_spec *s = src->s;
    const agroup *g = &s->g[src->gitem];
    const agroup *dg = src->bund == 2 ? &s->g[src->gdev] : NULL;
    rk_entity_view v;
    uint32_t dense = it->dense;
    int rc = it->has_dense ? 0 : rk_reader_lookup(src->r, RK_ENTITY_ITEM, it->id, it->len,
                                                  &dense);
    if (!rc) rc = rk_reader_entity(src->r, RK_ENTITY_ITEM, dense, &v);
    int found = rc == 0;
    if (rc && rc != RK_ENOTFOUND) return reader_fail(src, rc, "entity read");
    size_t bn = 0;
    uint64_t kh = 0;
    uint8_t ast = 0;
    if (found) {
        bn = blob_encode(&v, s->max_item_attr, src->ka, src->nka, src->blob[1], src->blobcap);
        if (src->nka) ast = view_key_attr(&v, src->ka[0], &kh) ? AUX_KEY : AUX_NOKEY;
    }
    const void *rv = NULL, *dv = NULL;
    size_t rn = 0, dn = 0;
    if ((rc = bundle_rec(src, g->layout, dg ? e->ist : e->k.b, &rv, &rn))) return rc;
    if (dg && (rc = bundle_rec(src, dg->layout, e->k.b, &dv, &dn))) return rc;
    /* The records as the store holds them (valid while the reader is). */
    src->brec[i] = rv;
    src->breclen[i] = (uint32_t)rn;
    if (dg) {
        src->bdrec[i] = dv;
        src->bdreclen[i] = (uint32_t)dn;
    }
    /* A bundle needs a blob that fits and records of their groups' sizes
     * (anything else is simply not cached). */
    size_t off = rv ? ALIGN8(g->rec_size) : 0, doff = dv ? ALIGN8(dg->rec_size) : 0;
    size_t tot = off + doff + bn;
    int fits = (!found || bn) && (!rv || rn == g->rec_size) && (!dv || dn == dg->rec_size);
    unsigned char *buf = fits && tot ? rk_arena_alloc(&src->arena, tot) : NULL;
    if (buf) {
        memset(buf, 0, off + doff);
        if (rv) memcpy(buf, rv, rn);
        if (dv) memcpy(buf + off, dv, dn);
        if (bn) memcpy(buf + off + doff, src->blob[1], bn);
    }
    uint8_t st = (uint8_t)(ast | AUX_BUNDLE | (rv ? AUX_REC : 0) | (dv ? AUX_DREC : 0) |
                           (found ? AUX_ENT : 0));
    if (e->rc == FC_MISS && fits && (buf || !tot)) {
        if (dg) rk__feat_cache_fill_stamped(src->cache, e->k, e->ist, src->ver, buf, tot, kh, st);
        else rk__feat_cache_fill_aux(src->cache, e->k, src->ver, buf, tot, 1, kh, st);
    }
    e->aux = kh;
    e->auxst = ast;
    e->val = NULL;
    e->len = 0;
    if (!found) {
        e->rc = FC_ABSENT;
    } else if (bn && buf) {
        e->rc = FC_HIT;
        e->val = buf + off + doff;
        e->len = (uint32_t)bn;
    } else if (bn && (e->val = rk_arena_memdup(&src->arena, src->blob[1], bn))) {
        e->rc = FC_HIT;
        e->len = (uint32_t)bn;
    } else {
        /* Too large to keep: the item loop reads it again. */
        e->rc = FC_BYPASS;
    }
    return 0;
}

/* Splits each candidate's bundle into the item's blob, left in column 0
 * as an entity probe leaves it (FC_HIT with the blob, FC_ABSENT for an
 * unknown item, aux its first key-part hash), its [item] record (brec)
 * and, in a device bundle, its [item, context.X] record (bdrec), from the
 * slot's aux state alone: the value is not touched. A bundle not found is
 * read from the store (bundle_read). */
static int bundle_resolve(rk_feat_source *src, const rk_feat_item *items, size_t n)
{
    const agroup *g = &src->s->g[src->gitem];
    const agroup *dg = src->bund == 2 ? &src->s->g[src->gdev] : NULL;
    uint32_t roff = (uint32_t)ALIGN8(g->rec_size), droff = dg ? (uint32_t)ALIGN8(dg->rec_size) : 0;
    for (size_t i = 0; i < n; i++) {
        fc_get *e = &src->bq[i * src->bstride];
        src->brec[i] = NULL;
        src->breclen[i] = 0;
        if (dg) {
            src->bdrec[i] = NULL;
            src->bdreclen[i] = 0;
        }
        if (!items[i].id) continue;
        if (e->rc != FC_HIT || !(e->auxst & AUX_BUNDLE)) {
            int rc = bundle_read(src, &items[i], i, e);
            if (rc) return rc;
            continue;
        }
        uint32_t off = 0;
        if (e->auxst & AUX_REC) {
            src->brec[i] = e->val;
            src->breclen[i] = g->rec_size;
            off = roff;
        }
        if (dg && (e->auxst & AUX_DREC)) {
            src->bdrec[i] = e->val + off;
            src->bdreclen[i] = dg->rec_size;
            off += droff;
        }
        if (e->auxst & AUX_ENT) {
            e->val += off;
            e->len -= off;
        } else {
            e->rc = FC_ABSENT;
            e->val = NULL;
            e->len = 0;
        }
        e->auxst &= AUX_KEYBITS;
    }
    return 0;
}

/* Starts loading the first lines of a probed value. */
static void prefetch_val(const fc_get *g, uint32_t lines)
{
    if (g->rc != FC_HIT) return;
    for (uint32_t k = 0; k < lines && 64u * k < g->len; k++)
        __builtin_prefetch(g->val + 64u * k);
}

/* The memo's word for the key parts of group g (batch_attr_keys), two
 * multiplies instead of six mixes: a sum of the parts (hashes already)
 * times odd constants, plus the layout. Two part lists of one group in
 * one request that differ in one part (the item attribute; the request's
 * parts are shared) never agree, since an odd multiplier is invertible
 * modulo 2^64; other pairs agree with probability ~2^-64, as two keys'
 * hashes do. Its top bits pick the memo slot. */
static uint64_t memo_parts(const agroup *g, const uint64_t *parts)
{
    static const uint64_t mul[FEAT_MAX_PARTS] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
                                                 0x165667b19e3779f9ull};
    uint64_t pm = g->layout;
    for (uint32_t k = 0; k < g->nparts; k++) pm += parts[k] * mul[k];
    return pm;
}

/* Items ahead whose record's first line phase B prefetches. */
#define PF_BLOB 16

/* The second batch (after batch_probe's first): keys of item-level groups
 * that contain an item attribute (e.g. [user, item.category]), derived
 * from the key-part hashes at the head of each candidate's cached record
 * (no decoding), shared keys deduplicated through the memo, then probed
 * in one batch. A candidate whose record missed the cache is read from
 * the store here, offered to the cache and its blob kept in the arena for
 * the item loop. Leaves bq2 NULL (every such group derived item by item)
 * when there is nothing to batch or the arena is full. */
static int batch_attr_keys(rk_feat_source *src, const rk_feat_item *items, size_t n)
{
    const rk_feat_spec *s = src->s;
    uint32_t ncol2 = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        const agroup *g = &s->g[gi];
        src->gcol2[gi] = g->item_level && g->uses_item_attr ? (int32_t)ncol2++ : -1;
    }
    src->ncol2 = ncol2;
    if (!ncol2) return 0;
    fc_get *q = rk_arena_alloc(&src->arena, n * ncol2 * sizeof *q);
    int32_t *idx = rk_arena_alloc(&src->arena, n * ncol2 * sizeof *idx);
    kplan *plan = rk_arena_alloc(&src->arena, ncol2 * sizeof *plan);
    if (!q || !idx || !plan) return 0;
    uint32_t np = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        if (src->gcol2[gi] >= 0 && plan_group(src, gi, (uint32_t)src->gcol2[gi], &plan[np]))
            np++;
    uint32_t stride = src->bstride;
    size_t m = 0;
    src->gen++; /* the memo holds bq2 indices below, then fresh records */
    for (size_t i = 0; i < n; i++) {
        if (src->bent && i + PF_BLOB < n && !src->bq[(i + PF_BLOB) * stride].auxst)
            prefetch_val(&src->bq[(i + PF_BLOB) * stride], 1);
        const rk_feat_item *it = &items[i];
        int32_t *row = idx + i * ncol2;
        for (uint32_t j = 0; j < ncol2; j++) row[j] = -1;
        /* Without entity reads the item has no attributes (as item_begin);
         * one named by dense id only is read item by item. */
        if (!src->bent) continue;
        if (!it->id) {
            for (uint32_t j = 0; j < ncol2; j++) row[j] = -2;
            continue;
        }
        fc_get *e = &src->bq[i * stride];
        if (e->rc != FC_HIT && e->rc != FC_ABSENT) {
            /* Not cached: read it now (read_entity fills the cache), and
             * keep its blob for the item loop. */
            rk_entity_view v;
            int found, rc;
            src->cur = i;
            if ((rc = read_entity(src, RK_ENTITY_ITEM, it->id, it->len, it->has_dense,
                                  it->dense, &v, &found)))
                return rc;
            size_t bn = found ? blob_encode(&v, s->max_item_attr, src->ka, src->nka,
                                            src->blob[1], src->blobcap)
                              : 0;
            unsigned char *copy = bn ? rk_arena_memdup(&src->arena, src->blob[1], bn) : NULL;
            e->auxst = 0;
            if (!found) {
                e->rc = FC_ABSENT;
            } else if (copy) {
                e->rc = FC_HIT;
                e->val = copy;
                e->len = (uint32_t)bn;
            } else {
                /* Too large to keep: the item loop reads it again. */
                e->rc = FC_BYPASS;
                for (uint32_t j = 0; j < ncol2; j++) row[j] = -2;
                continue;
            }
        }
        const unsigned char *blob = e->rc == FC_HIT ? e->val : NULL;
        uint64_t ih = src->bih[i];
        for (uint32_t j = 0; j < np; j++) {
            const kplan *p = &plan[j];
            const agroup *g = p->g;
            uint64_t parts[FEAT_MAX_PARTS];
            uint32_t k;
            /* The parts as fetch_group derives them. */
            for (k = 0; k < g->nparts; k++) {
                if (p->imask >> k & 1) {
                    parts[k] = ih;
                } else if (!(p->amask >> k & 1)) {
                    parts[k] = p->parts[k];
                } else if (!blob) {
                    break;
                } else if (p->kx[k] == 0 && e->auxst) {
                    /* From the slot: the record itself is not touched. */
                    if (e->auxst != AUX_KEY) break;
                    parts[k] = e->aux;
                } else {
                    uint64_t kh[2];
                    memcpy(kh, blob + BLOB_HDR + (size_t)p->kx[k] * BLOB_KEY, sizeof kh);
                    if (!kh[1]) break;
                    parts[k] = kh[0];
                }
            }
            if (k < g->nparts) continue;
            fc_get *x = &q[i * ncol2 + p->col];
            if (p->imask) {
                /* Parked at its own place until the pass below. */
                row[p->col] = -3;
                x->k = (fc_key){g->layout, rk__feat_agg_hash(g, parts)};
                continue;
            }
            /* Without the item the key depends on the parts alone, and
             * candidates share them (one category, many items): park the
             * parts and a cheap hash of them, and derive the key in the
             * pass below only for the first candidate with them. The memo
             * slot is fetched meanwhile (it is cold after the previous
             * request's computation). */
            uint64_t pm = memo_parts(g, parts);
            row[p->col] = -4;
            x->k = (fc_key){parts[0], g->nparts > 1 ? parts[1] : 0};
            x->h = g->nparts > 2 ? parts[2] : 0;
            x->aux = pm;
            __builtin_prefetch(&src->memo[pm >> (64 - MEMO_BITS)], 1);
        }
    }
    /* Deduplicate and compact the parked keys: q[m] never overtakes the
     * key being read (m <= its place). */
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < np; j++) {
            size_t pos = i * ncol2 + plan[j].col;
            if (idx[pos] != -3 && idx[pos] != -4) continue;
            const agroup *g = plan[j].g;
            fc_key ck = q[pos].k;
            int32_t *x = &idx[pos];
            if (*x == -4) {
                /* Shared by candidates: one derivation and one probe per
                 * request. */
                uint64_t h = q[pos].aux;
                memo_ent *me = &src->memo[h >> (64 - MEMO_BITS)];
                if (me->gen == src->gen && me->h == h) {
                    *x = me->idx;
                    continue;
                }
                me->gen = src->gen;
                me->h = h;
                me->idx = (int32_t)m;
                uint64_t parts[FEAT_MAX_PARTS] = {ck.a, ck.b, q[pos].h};
                ck = (fc_key){g->layout, rk__feat_agg_hash(g, parts)};
            }
            *x = (int32_t)m;
            q[m].k = ck;
            q[m].val = NULL;
            q[m].len = 0;
            q[m].rc = FC_MISS;
            q[m].stamped = 0;
            m++;
        }
    src->gen++;
    if (src->rs >= 0) rk__feat_cache_find_many(src->cache, src->rs, src->ver, q, m);
    else rk__feat_cache_get_many(src->cache, src->ver, q, m, &src->arena);
    /* Misses read the store (and fill) now, so the item loop only reads
     * results. */
    for (size_t j = 0; j < m; j++) {
        if (q[j].rc == FC_HIT || q[j].rc == FC_ABSENT) continue;
        unsigned char key[FEAT_KEY_LEN];
        key[0] = 'A';
        rk__le64(key + 1, q[j].k.a);
        rk__le64(key + 9, q[j].k.b);
        const unsigned char *rec;
        size_t len;
        int rc = src_get(src, key, &q[j], &rec, &len, src->err);
        if (rc) return rc;
        q[j].rc = rec ? FC_HIT : FC_ABSENT;
        q[j].val = rec;
        q[j].len = (uint32_t)len;
    }
    src->bq2 = q;
    src->bidx2 = idx;
    return 0;
}

/* Candidates ahead of the one being computed whose probed values (record,
 * aggregates) are prefetched, once batch_probe has located them. */
#define VAL_AHEAD 3

static void prefetch_values(const rk_feat_source *src, size_t i)
{
    for (uint32_t j = 0; j < src->bstride; j++) prefetch_val(&src->bq[i * src->bstride + j], 8);
    for (uint32_t j = 0; src->bq2 && j < src->ncol2; j++) {
        int32_t x = src->bidx2[i * src->ncol2 + j];
        if (x >= 0) prefetch_val(&src->bq2[x], 4);
    }
}

/* ---- raw extraction --------------------------------------------------------------- */

static int push_cat(rk_feat_source *src, uint64_t v)
{
    int rc = rk_vec_push(&src->cat, v);
    return rc ? rk_err_set(src->err, rc, "features: too many categorical values") : 0;
}

static int push_bag(rk_feat_source *src, uint32_t coord)
{
    bagent e = {coord, 1.0f};
    int rc = rk_vec_push(&src->bag, e);
    return rc ? rk_err_set(src->err, rc, "features: too many tokens") : 0;
}

typedef struct tokctx {
    rk_feat_source *src;
    const feat *f;
    int rc;
} tokctx;

static int tok_bag(void *arg, const char *w, size_t n)
{
    tokctx *t = arg;
    return t->rc = push_bag(t->src, (uint32_t)rk_hash64(w, n, t->f->seed) & t->src->s->mask);
}

static int bag_cmp(const void *a, const void *b)
{
    uint32_t x = ((const bagent *)a)->coord, y = ((const bagent *)b)->coord;
    return x < y ? -1 : x > y;
}

/* Tokenizes text into f's bag, merging repeated coordinates into counts. */
static int bag_text(rk_feat_source *src, const feat *f, const char *p, size_t n)
{
    size_t start = src->bag.n;
    tokctx t = {src, f, 0};
    rk_feat_tokenize(p, n, tok_bag, &t);
    if (t.rc) return t.rc;
    bagent *e = src->bag.v + start;
    size_t m = src->bag.n - start, k = 0;
    if (m > 16) {
        qsort(e, m, sizeof *e, bag_cmp);
    } else {
        /* Titles and short texts: insertion sort beats qsort's setup. */
        for (size_t i = 1; i < m; i++) {
            bagent x = e[i];
            size_t j = i;
            while (j > 0 && e[j - 1].coord > x.coord) {
                e[j] = e[j - 1];
                j--;
            }
            e[j] = x;
        }
    }
    for (size_t i = 0; i < m; i++) {
        if (k && e[k - 1].coord == e[i].coord) e[k - 1].count += 1;
        else e[k++] = e[i];
    }
    src->bag.n = start + k;
    return 0;
}

static double parse_num_str(const char *p, size_t n)
{
    double d;
    return rk_parse_f64(p, n, &d) ? NAN : d;
}

/* Query tokens (distinct hashes) of text_match feature f, cached per
 * request for the field they came from. */
typedef struct qctx {
    rk_feat_source *src;
} qctx;

static int tok_query(void *arg, const char *w, size_t n)
{
    rk_feat_source *src = ((qctx *)arg)->src;
    uint64_t h = rk__feat_vhash(w, n);
    for (uint32_t i = 0; i < src->nq; i++)
        if (src->qtok[i] == h) return 0;
    if (src->nq < FEAT_MAX_QTOK) src->qtok[src->nq++] = h;
    return 0;
}

static void query_tokens(rk_feat_source *src, const feat *f)
{
    if (src->q_ready && src->qfield && !strcmp(src->qfield, f->field)) return;
    src->nq = 0;
    src->q_ready = 1;
    src->qfield = f->field;
    const rk_feat_request *req = src->req;
    qctx q = {src};
    if (req->query) {
        rk_feat_tokenize(req->query, req->query_len, tok_query, &q);
        return;
    }
    char buf[48];
    const char *p;
    size_t n;
    if (!ctx_value(src, f->field, buf, &p, &n)) rk_feat_tokenize(p, n, tok_query, &q);
}

static int tok_doc(void *arg, const char *w, size_t n)
{
    rk_feat_source *src = ((qctx *)arg)->src;
    src->dl++;
    uint64_t h = rk__feat_vhash(w, n);
    for (uint32_t i = 0; i < src->nq; i++)
        if (src->qtok[i] == h) {
            src->qtf[i]++;
            break;
        }
    return 0;
}

static double bm25(rk_feat_source *src, const feat *f)
{
    query_tokens(src, f);
    if (!src->nq || !src->has_iv) return NAN;
    src->dl = 0;
    memset(src->qtf, 0, sizeof src->qtf);
    qctx q = {src};
    for (uint32_t k = 0; k < f->ntattr; k++) {
        const rk_attr_val *a = view_attr(&src->iv, src->ipos, f->tattr[k]);
        if (!a) continue;
        if (a->type == RK_ATTR_CATEGORICAL_LIST) {
            for (uint32_t i = 0; i < a->n; i++)
                rk_feat_tokenize(a->list[i], a->list_lens[i], tok_doc, &q);
        } else if (a->type == RK_ATTR_TEXT || a->type == RK_ATTR_CATEGORICAL) {
            rk_feat_tokenize(a->str, a->len, tok_doc, &q);
        }
    }
    const bm25fit *bm = &f->bm;
    double norm = bm->avgdl > 0 ? src->dl / bm->avgdl : 1.0, score = 0;
    for (uint32_t i = 0; i < src->nq; i++) {
        if (!src->qtf[i]) continue;
        double df = rk__feat_bm25_df(bm, src->qtok[i]), n = bm->ndocs;
        if (df > n) df = n;
        double idf = log(1 + (n - df + 0.5) / (df + 0.5));
        double tf = src->qtf[i];
        score += idf * tf * (f->k1 + 1) / (tf + f->k1 * (1 - f->b + f->b * norm));
    }
    return score;
}

static int64_t floordiv64(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Extracts f's raw value into num/cat/bag. */
static int extract(rk_feat_source *src, uint32_t fi)
{
    const rk_feat_spec *s = src->s;
    const feat *f = &s->f[fi];
    double *num = src->num + f->raw0;
    src->c0[fi] = (uint32_t)src->cat.n;
    src->b0[fi] = (uint32_t)src->bag.n;
    if (f->vt == VT_NUM)
        for (uint32_t k = 0; k < f->nout; k++) num[k] = NAN;
    int rc = 0;
    switch (f->kind) {
    case FK_ATTR: {
        int user = f->ent == RK_ENTITY_USER;
        const rk_attr_val *a = NULL;
        if (user ? src->has_uv : src->has_iv)
            a = view_attr(user ? &src->uv : &src->iv, user ? src->upos : src->ipos,
                          f->attr);
        if (!a || a->type != f->atype) break;
        switch (a->type) {
        case RK_ATTR_NUMERIC: num[0] = a->num; break;
        case RK_ATTR_TIMESTAMP:
            num[0] = (double)(src->req->ts_ms - a->ts_ms) / f->unit_ms;
            break;
        case RK_ATTR_VECTOR:
            for (uint32_t k = 0; k < f->nout && k < a->dim; k++) num[k] = a->vec[k];
            break;
        case RK_ATTR_CATEGORICAL: rc = push_cat(src, rk__feat_vhash(a->str, a->len)); break;
        case RK_ATTR_CATEGORICAL_LIST:
            for (uint32_t i = 0; !rc && i < a->n && i < FEAT_MAX_LIST; i++)
                rc = push_cat(src, rk__feat_vhash(a->list[i], a->list_lens[i]));
            break;
        case RK_ATTR_TEXT: rc = bag_text(src, f, a->str, a->len); break;
        }
        break;
    }
    case FK_COLUMN:
        if (!src->req->row) break;
        if (f->col_cat) {
            if (src->rowcat[f->col])
                rc = push_cat(src, rk__feat_vhash(src->rowcat[f->col],
                                                  src->rowcatlen[f->col]));
        } else {
            num[0] = src->rownum[f->col];
        }
        break;
    case FK_COUNTER: case FK_RATE: case FK_RECENCY: {
        const agroup *g = &s->g[f->group];
        if (!src->keyed[f->group]) break; /* a key part is missing */
        rk__feat_agg_read(s, g, &g->slot[f->slot], f, src->rec[f->group],
                          src->reclen[f->group], src->req->ts_ms, num);
        break;
    }
    case FK_SCORE:
        if (src->item && src->item->scores) num[0] = src->item->scores[f->score];
        break;
    case FK_CONTEXT: {
        char buf[48];
        const char *p = NULL;
        size_t n = 0;
        double v = NAN;
        if (f->ctx != CTX_FIELD) {
            int64_t t = src->req->ts_ms + s->utc_offset_ms;
            int64_t x = f->ctx == CTX_HOUR ? floordiv64(t, 3600000) % 24
                                           : (floordiv64(t, 86400000) + 3) % 7;
            if (x < 0) x += f->ctx == CTX_HOUR ? 24 : 7;
            v = (double)x;
            n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)x);
            p = buf;
        } else if (ctx_value(src, f->field, buf, &p, &n)) {
            break;
        }
        if (f->vt == VT_NUM)
            num[0] = f->ctx != CTX_FIELD ? v : parse_num_str(p, n);
        else if (f->vt == VT_CAT)
            rc = push_cat(src, rk__feat_vhash(p, n));
        else
            rc = bag_text(src, f, p, n);
        break;
    }
    case FK_CROSS: {
        /* Cartesian product of the components' values, capped; a missing
         * component means no cross. */
        uint64_t total = 1;
        for (uint32_t i = 0; i < f->ncomp; i++) total *= src->cn[f->comp[i]];
        if (total == 0) break;
        if (total > FEAT_MAX_CROSS_VALUES) total = FEAT_MAX_CROSS_VALUES;
        for (uint64_t x = 0; !rc && x < total; x++) {
            uint64_t h = f->seed, rem = x;
            for (uint32_t i = 0; i < f->ncomp; i++) {
                uint32_t c = f->comp[i], m = src->cn[c];
                h = rk__mix64(h ^ src->cat.v[src->c0[c] + rem % m]);
                rem /= m;
            }
            rc = push_cat(src, h);
        }
        break;
    }
    case FK_TEXT_MATCH:
        num[0] = bm25(src, f);
        break;
    }
    src->cn[fi] = (uint32_t)src->cat.n - src->c0[fi];
    src->bn[fi] = (uint32_t)src->bag.n - src->b0[fi];
    return rc;
}

/* Emits f's extracted value: dense columns and hashed coordinates. */
static int emit(rk_feat_source *src, uint32_t fi, rk_fvec *out)
{
    const rk_feat_spec *s = src->s;
    const feat *f = &s->f[fi];
    if (!f->emit) return 0;
    int rc = 0;
    switch (f->vt) {
    case VT_NUM:
        for (uint32_t k = 0; !rc && k < f->nout; k++)
            rc = rk__feat_emit_num(s, f, k, src->num[f->raw0 + k], out);
        break;
    case VT_CAT: {
        const uint64_t *v = src->cat.v + src->c0[fi];
        uint32_t n = src->cn[fi];
        if (f->enc == ENC_INDEX) {
            out->dense[f->dense0] = n ? (float)rk__feat_vocab_find(&f->voc, v[0]) : NAN;
            break;
        }
        for (uint32_t i = 0; !rc && i < n; i++) {
            uint64_t h;
            if (f->enc == ENC_HASH) {
                h = rk__mix64(v[i] ^ f->seed);
            } else {
                uint64_t idx = rk__feat_vocab_find(&f->voc, v[i]);
                h = rk__mix64(f->seed ^ ((idx + 1) * 0x9e3779b97f4a7c15ull) ^
                              0x6f6e65686f74ull);
            }
            rc = rk_fvec_push(out, (uint32_t)h & s->mask, 1.0f);
        }
        break;
    }
    case VT_BAG: {
        const bagent *e = src->bag.v + src->b0[fi];
        for (uint32_t i = 0; !rc && i < src->bn[fi]; i++)
            rc = rk_fvec_push(out, e[i].coord, f->tf_binary ? 1.0f : e[i].count);
        break;
    }
    }
    if (rc) return rk_err_set(src->err, rc, "features: vector: %s", rk_strerror(rc));
    return 0;
}

/* ---- phases ----------------------------------------------------------------------- */

static void request_end(rk_feat_source *src)
{
    if (src->rs >= 0) rk__feat_cache_unpin(src->cache, src->rs);
    src->rs = -1;
    src->bq = NULL;
    src->bih = NULL;
    src->bq2 = NULL;
    json_decref(src->ctx);
    src->ctx = NULL;
    src->has_uv = src->has_iv = 0;
    src->req = NULL;
}

/* Request phase: context, user, request-level aggregates and features. */
static int request_begin(rk_feat_source *src, const rk_feat_request *req,
                         int extract_features)
{
    const rk_feat_spec *s = src->s;
    src->req = req;
    src->item = NULL;
    src->q_ready = 0;
    src->gen++;
    src->bq = NULL;
    src->bih = NULL;
    src->bq2 = NULL;
    rk_arena_reset(&src->arena);
    if (src->rs >= 0) rk__feat_cache_unpin(src->cache, src->rs);
    src->rs = -1;
    src->cache = !src->st && src->r ? s->cache : NULL;
    if (src->cache) {
        src->ver = rk_reader_txn(src->r);
        /* Pinned for the whole request: records found in the cache are
         * read in place until request_end. */
        src->rs = rk__feat_cache_pin(src->cache, &src->rhint);
    }
    src->cat.n = src->bag.n = 0;
    src->has_item = src->has_iv = src->has_uv = 0;
    json_decref(src->ctx);
    src->ctx = (s->uses_ctx || s->uses_query) && req->context
                   ? rk__feat_json_parse(req->context, req->context_len)
                   : NULL;
    src->has_user = req->user != NULL;
    if (src->has_user)
        src->uh = rk__feat_part_hash(KP_USER, req->user, req->user_len);
    int rc, found;
    if (s->uses_user_attrs && src->has_user) {
        if ((rc = read_entity(src, RK_ENTITY_USER, req->user, req->user_len, 0, 0,
                              &src->uv, &found)))
            return rc;
        if (found) {
            index_view(&src->uv, src->upos, s->max_user_attr);
            src->has_uv = 1;
        }
    }
    if (req->row) {
        const rk_row *row = req->row;
        for (uint32_t j = 0; j < s->ncol_num; j++) src->rownum[j] = NAN;
        for (uint32_t j = 0; j < s->ncol_cat; j++) src->rowcat[j] = NULL;
        for (uint32_t i = 0; i < row->nnum; i++)
            if (row->num_idx[i] < s->ncol_num) src->rownum[row->num_idx[i]] = row->num_val[i];
        for (uint32_t i = 0; i < row->ncat; i++)
            if (row->cat_idx[i] < s->ncol_cat) {
                src->rowcat[row->cat_idx[i]] = row->cat_val[i];
                src->rowcatlen[row->cat_idx[i]] = row->cat_len[i];
            }
    }
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        for (uint32_t k = 0; k < s->g[gi].nparts; k++) {
            const kpart *kp = &s->g[gi].part[k];
            char buf[48];
            const char *p;
            size_t n;
            if (kp->kind != KP_CTX) continue;
            src->ctxok[gi][k] = !ctx_value(src, kp->name, buf, &p, &n);
            if (src->ctxok[gi][k]) src->ctxh[gi][k] = rk__feat_part_hash(KP_CTX, p, n);
        }
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        if (!s->g[gi].item_level && (rc = fetch_group(src, gi))) return rc;
    if (!extract_features) return 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < s->nfeat; i++) {
            const feat *f = &s->f[i];
            if (f->item_level || (f->kind == FK_CROSS) != pass) continue;
            if ((rc = extract(src, i))) return rc;
        }
    /* The user's view dies with the next entity read; nothing needs it. */
    src->has_uv = 0;
    src->cat_req = src->cat.n;
    src->bag_req = src->bag.n;
    return 0;
}

/* Item phase up to the aggregate fetch. */
static int item_begin(rk_feat_source *src, const rk_feat_item *it)
{
    const rk_feat_spec *s = src->s;
    src->item = it;
    src->has_item = it && it->id;
    src->has_iv = 0;
    if (src->has_item)
        src->ih = src->bq ? src->bih[src->cur] : rk__feat_part_hash(KP_ITEM, it->id, it->len);
    int rc, found;
    if (s->uses_item_entity && it) {
        if ((rc = read_entity(src, RK_ENTITY_ITEM, it->id, it->len, it->has_dense,
                              it->dense, &src->iv, &found)))
            return rc;
        if (found) {
            index_view(&src->iv, src->ipos, s->max_item_attr);
            src->has_iv = 1;
        }
    }
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        if (s->g[gi].item_level && (rc = fetch_group(src, gi))) return rc;
    return 0;
}

static int item_extract(rk_feat_source *src)
{
    const rk_feat_spec *s = src->s;
    src->cat.n = src->cat_req;
    src->bag.n = src->bag_req;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < s->nfeat; i++) {
            const feat *f = &s->f[i];
            if (!f->item_level || (f->kind == FK_CROSS) != pass) continue;
            int rc = extract(src, i);
            if (rc) return rc;
        }
    return 0;
}

int rk_feat_compute_batch(rk_feat_source *src, const rk_feat_request *req,
                          const rk_feat_item *items, size_t n, rk_fvec *out,
                          rk_err *err)
{
    const rk_feat_spec *s = src->s;
    src->err = err;
    if (s->needs_fit && !s->fitted)
        return rk_err_set(err, RK_ESTATE, "features: the spec has transforms that "
                          "need fitting (rk_feat_fit)");
    int rc = request_begin(src, req, 1);
    /* The candidates' records are copied into the arena, in shard order
     * with their misses overlapped: measured faster than reading them in
     * place scattered over the heap, item after item. */
    if (!rc) rc = batch_probe(src, items, n, s->uses_item_entity, 1);
    for (size_t i = 0; !rc && !src->bq && i < n && i < PREFETCH_AHEAD; i++)
        prefetch_item(src, &items[i]);
    for (size_t i = 0; !rc && i < (n ? n : 1); i++) {
        const rk_feat_item *it = n ? &items[i] : NULL;
        src->cur = i;
        if (!src->bq && i + PREFETCH_AHEAD < n) prefetch_item(src, &items[i + PREFETCH_AHEAD]);
        if (src->bq && i + VAL_AHEAD < n) prefetch_values(src, i + VAL_AHEAD);
        rc = item_begin(src, it);
        if (!rc) rc = item_extract(src);
        if (!rc && (rc = rk_fvec_reset(&out[i], s->ndense)))
            rk_err_set(err, rc, "features: out of memory");
        for (uint32_t fi = 0; !rc && fi < s->nfeat; fi++) rc = emit(src, fi, &out[i]);
        if (!n) break;
    }
    request_end(src);
    return rc;
}

int rk_feat_compute(rk_feat_source *src, const rk_feat_request *req,
                    const rk_feat_item *item, rk_fvec *out, rk_err *err)
{
    return rk_feat_compute_batch(src, req, item, item ? 1 : 0, out, err);
}

/* Where rk_feat_fetch finds an item-level group's result in the batches
 * (count_plan): the bundle's [item] or [item, context.X] record, a column
 * of the first batch, or one of the second. */
enum { CP_REC, CP_DREC, CP_COL, CP_ATTR };
typedef struct cplan {
    uint8_t kind;
    uint32_t off;
} cplan;

/* Plans batched_count for the request: the number of entries, or -1 when
 * some item-level group is not resolved by the batches (every candidate
 * goes through fetch_group). */
static int count_plan(const rk_feat_source *src, cplan *plan)
{
    const rk_feat_spec *s = src->s;
    int np = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++) {
        if (!s->g[gi].item_level) continue;
        cplan *p = &plan[np++];
        if (src->bund && (int32_t)gi == src->gitem) {
            p->kind = CP_REC;
        } else if (src->bund == 2 && (int32_t)gi == src->gdev) {
            p->kind = CP_DREC;
        } else if (src->gcol[gi] >= 0) {
            p->kind = CP_COL;
            p->off = src->bent + (uint32_t)src->gcol[gi];
        } else if (src->bq2 && src->gcol2[gi] >= 0) {
            p->kind = CP_ATTR;
            p->off = (uint32_t)src->gcol2[gi];
        } else {
            return -1;
        }
    }
    return np;
}

/* Records found for candidate i's item-level groups, read straight from
 * the batches when every one of its keys was resolved there (the common
 * case); -1 sends the candidate through fetch_group. */
static int batched_count(const rk_feat_source *src, size_t i, const cplan *plan, int np)
{
    if (!src->item->id) return -1;
    int cnt = 0;
    for (int j = 0; j < np; j++) {
        const cplan *p = &plan[j];
        int rc;
        int32_t x;
        switch (p->kind) {
        case CP_REC:
            cnt += src->brec[i] != NULL;
            break;
        case CP_DREC:
            cnt += src->bdrec[i] != NULL;
            break;
        case CP_COL:
            rc = src->bq[i * src->bstride + p->off].rc;
            if (rc != FC_HIT && rc != FC_ABSENT) return -1;
            cnt += rc == FC_HIT;
            break;
        default:
            x = src->bidx2[i * src->ncol2 + p->off];
            if (x < -1) return -1;
            cnt += x >= 0 && src->bq2[x].rc == FC_HIT;
            break;
        }
    }
    return cnt;
}

int rk_feat_fetch(rk_feat_source *src, const rk_feat_request *req,
                  const rk_feat_item *items, size_t n, size_t *found, rk_err *err)
{
    const rk_feat_spec *s = src->s;
    src->err = err;
    size_t cnt = 0;
    int rc = request_begin(src, req, 0);
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        if (!s->g[gi].item_level && src->rec[gi]) cnt++;
    /* Only keys need the item's record; skip it otherwise. */
    int need = 0;
    for (uint32_t gi = 0; gi < s->ngroups; gi++)
        if (s->g[gi].item_level && s->g[gi].uses_item_attr) need = 1;
    if (!rc) rc = batch_probe(src, items, n, need, 0);
    for (size_t i = 0; !rc && !src->bq && i < n && i < PREFETCH_AHEAD; i++)
        prefetch_item(src, &items[i]);
    cplan *plan = src->bq ? rk_arena_alloc(&src->arena, s->ngroups * sizeof *plan) : NULL;
    int np = plan ? count_plan(src, plan) : -1;
    for (size_t i = 0; !rc && i < n; i++) {
        const rk_feat_item *it = &items[i];
        src->cur = i;
        if (!src->bq && i + PREFETCH_AHEAD < n) prefetch_item(src, &items[i + PREFETCH_AHEAD]);
        src->item = it;
        src->has_item = it->id != NULL;
        src->has_iv = 0;
        int got = np >= 0 ? batched_count(src, i, plan, np) : -1;
        if (got >= 0) {
            cnt += (size_t)got;
            continue;
        }
        if (src->has_item)
            src->ih = src->bq ? src->bih[i] : rk__feat_part_hash(KP_ITEM, it->id, it->len);
        /* With the second batch the attribute keys are already resolved
         * (unless the item is named by dense id alone, or its record was
         * too large to keep in the batch). */
        if (need && (!src->bq2 || !it->id ||
                     (src->bent && src->bq[i * src->bstride].rc == FC_BYPASS))) {
            rc = read_entity(src, RK_ENTITY_ITEM, it->id, it->len, it->has_dense,
                             it->dense, &src->iv, &got);
            if (!rc && got) {
                index_view(&src->iv, src->ipos, s->max_item_attr);
                src->has_iv = 1;
            }
        }
        for (uint32_t gi = 0; !rc && gi < s->ngroups; gi++)
            if (s->g[gi].item_level) {
                rc = fetch_group(src, gi);
                if (!rc && src->rec[gi]) cnt++;
            }
    }
    request_end(src);
    if (found) *found = cnt;
    return rc;
}

int rk__feat_observe(rk_feat_source *src, const rk_feat_request *req,
                     const rk_feat_item *item, feat_fitter *fz, rk_err *err)
{
    const rk_feat_spec *s = src->s;
    src->err = err;
    int rc = request_begin(src, req, 1);
    if (!rc) rc = item_begin(src, item);
    if (!rc) rc = item_extract(src);
    for (uint32_t i = 0; !rc && i < s->nfeat; i++) {
        const feat *f = &s->f[i];
        if (f->vt == VT_NUM && f->num_fits)
            rc = rk__feat_fit_num(fz, i, src->num + f->raw0);
        else if (f->vt == VT_CAT && f->enc != ENC_HASH)
            rc = rk__feat_fit_cat(fz, i, src->cat.v + src->c0[i], src->cn[i]);
        if (rc) rk_err_set(err, rc, "features: fitting: %s", rk_strerror(rc));
    }
    request_end(src);
    return rc;
}
