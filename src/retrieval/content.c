/*
 * content.c — item-item similarity from attributes: TF-IDF vectors over
 * "attr=value" tokens, cosine similarity through an inverted index, top_n
 * neighbours per item. It is what lets an item nobody has touched yet have
 * neighbours, and what answers "similar to X" for such items.
 *
 * Building: tokens are collected item by item into (item, token, tf)
 * entries, then finish() sorts them, caps tokens per item, computes
 * document frequencies and idf, L2-normalizes each item's vector and builds
 * the postings (token -> items), each sorted by weight descending. Item i's
 * neighbours come from walking, for each of its tokens, the first
 * max_postings entries of that token's postings into a dense accumulator:
 * the walk is the dot product restricted to items sharing a token, and the
 * cut keeps the cost of very common tokens bounded (the items dropped are
 * those where the token weighs least). Items are scored in fixed blocks,
 * optionally on a thread pool; each block's result is independent of which
 * thread ran it, so the model is the same for any thread count.
 *
 * Invariants of a built rk_content: lists best first, at most top_n, never
 * the item itself, scores in (min_sim, 1] up to rounding.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "retrieval/gen_int.h"
#include "rk_features.h"

#define BLOCK_ITEMS 256
static const char CONTENT_MAGIC[8] = {'R', 'K', 'C', 'O', 'N', 'T', 'N', '1'};

struct rk_content {
    rk__nbrs nb;
};

typedef struct tok_ent {
    uint32_t item, tok;
    float tf;
} tok_ent;

/* One token of the record being tokenized. */
typedef struct view_tok {
    const char *p;
    uint32_t len;
    uint32_t seq;   /* order of first appearance */
    float w;        /* attribute weight */
    float count;
} view_tok;

struct rk_content_builder {
    rk_content_opts o;
    uint32_t nitems;
    rk_map *vocab;                   /* token -> id, ids in order of arrival */
    uint32_t ntok;
    RK_VEC(tok_ent) ents;
    /* Attribute weights resolved against the schema last seen (0 = the
     * attribute is not tokenized). The schema is append-only, so the
     * resolution only needs to grow when new attributes appear. */
    const rk_schema *schema;
    uint32_t nresolved;
    float attr_w[RK_MAX_ATTRS];
    rk_buf text;                     /* scratch: the record's token strings */
    RK_VEC(view_tok) vt;             /* scratch: the record's tokens */
    RK_VEC(uint32_t) off;            /* scratch: offsets into text */
};

void rk_content_opts_default(rk_content_opts *o)
{
    o->attrs = NULL;
    o->nattrs = 0;
    o->top_n = 50;
    o->max_tokens_per_item = 256;
    o->max_postings = 2000;
    o->max_df_ratio = 1.0;
    o->max_vocab = 4u << 20;
    o->min_sim = 0;
    o->pool = NULL;
}

int rk_content_opts_from_conf(rk_content_opts *o, const rk_conf_node *node,
                              rk_err *err)
{
    static const char *const keys[] = {"top_n", "max_tokens_per_item",
                                       "max_postings", "max_df_ratio",
                                       "max_vocab", "min_sim", NULL};
    int rc;
    int64_t v;
    double d;
    if ((rc = rk_conf_check_keys(node, keys, err))) return rc;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "top_n"), o->top_n, 1,
                                   100000, &v, err)))
        return rc;
    o->top_n = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_tokens_per_item"),
                                   o->max_tokens_per_item, 1, 1000000, &v, err)))
        return rc;
    o->max_tokens_per_item = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_postings"),
                                   o->max_postings, 1, UINT32_MAX, &v, err)))
        return rc;
    o->max_postings = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(node, "max_vocab"),
                                   (int64_t)o->max_vocab, 1, UINT32_MAX - 1, &v,
                                   err)))
        return rc;
    o->max_vocab = (uint64_t)v;
    if ((rc = rk_conf_as_float(rk_conf_get(node, "max_df_ratio"),
                               o->max_df_ratio, &d, err)))
        return rc;
    if (!(d > 0 && d <= 1))
        return rk_conf_error(err, rk_conf_get(node, "max_df_ratio"),
                             "expected a ratio in (0, 1]");
    o->max_df_ratio = d;
    if ((rc = rk_conf_as_float(rk_conf_get(node, "min_sim"), o->min_sim, &d,
                               err)))
        return rc;
    if (!(d >= 0 && d < 1))
        return rk_conf_error(err, rk_conf_get(node, "min_sim"),
                             "expected a similarity in [0, 1)");
    o->min_sim = (float)d;
    return 0;
}

/* ---- builder ------------------------------------------------------------ */

int rk_content_builder_create(rk_content_builder **out, uint32_t nitems,
                              const rk_content_opts *o, rk_err *err)
{
    rk_content_opts dflt;
    if (!o) {
        rk_content_opts_default(&dflt);
        o = &dflt;
    }
    if (o->top_n == 0 || o->max_tokens_per_item == 0 || o->max_postings == 0 ||
        !(o->max_df_ratio > 0 && o->max_df_ratio <= 1) || o->max_vocab == 0 ||
        o->max_vocab >= UINT32_MAX || !(o->min_sim >= 0))
        return rk_err_set(err, RK_EINVAL, "content: invalid options");
    for (size_t i = 0; i < o->nattrs; i++)
        if (!o->attrs[i].name || !(o->attrs[i].weight > 0) ||
            !isfinite(o->attrs[i].weight))
            return rk_err_set(err, RK_EINVAL,
                              "content: attribute %zu needs a name and a "
                              "positive weight",
                              i);
    rk_content_builder *b = rk_calloc(1, sizeof *b);
    if (!b) return rk_err_set(err, RK_ENOMEM, "content: out of memory");
    b->o = *o;
    b->nitems = nitems;
    rk_buf_init(&b->text, 0);
    if (rk_map_create(&b->vocab, (size_t)o->max_vocab)) {
        rk_free(b);
        return rk_err_set(err, RK_ENOMEM, "content: out of memory");
    }
    *out = b;
    return 0;
}

void rk_content_builder_destroy(rk_content_builder *b)
{
    if (!b) return;
    rk_map_destroy(b->vocab);
    rk_vec_free(&b->ents);
    rk_buf_free(&b->text);
    rk_vec_free(&b->vt);
    rk_vec_free(&b->off);
    rk_free(b);
}

int rk_content_builder_add(rk_content_builder *b, uint32_t item,
                           const char *token, size_t len, float tf,
                           rk_err *err)
{
    if (item >= b->nitems || len == 0 || !(tf > 0) || !isfinite(tf))
        return rk_err_set(err, RK_EINVAL,
                          "content: item %u out of range (%u items), empty "
                          "token or tf not positive",
                          item, b->nitems);
    uint64_t id;
    if (rk_map_get(b->vocab, token, len, &id) != 0) {
        int rc = rk_map_put(b->vocab, token, len, b->ntok);
        if (rc == RK_ELIMIT)
            return rk_err_set(err, rc,
                              "content: more than max_vocab (%llu) distinct "
                              "tokens",
                              (unsigned long long)b->o.max_vocab);
        if (rc) return rk_err_set(err, rc, "content: out of memory");
        id = b->ntok++;
    }
    tok_ent e = {item, (uint32_t)id, tf};
    if (rk_vec_push(&b->ents, e)) {
        /* Keep the vocabulary consistent with the entries: a token that
         * was just added and has no entry is harmless (df 0). */
        return rk_err_set(err, RK_ENOMEM, "content: out of memory");
    }
    return 0;
}

/* Appends "name=value" to the record scratch as one token. */
static int view_push(rk_content_builder *b, const char *name, const char *val,
                     size_t len, float w)
{
    size_t off = b->text.len;
    if (rk_buf_puts(&b->text, name) || rk_buf_putc(&b->text, '=') ||
        rk_buf_append(&b->text, val, len))
        return RK_ENOMEM;
    view_tok t = {NULL, (uint32_t)(b->text.len - off), (uint32_t)b->vt.n, w, 1};
    if (rk_vec_push(&b->off, (uint32_t)off) || rk_vec_push(&b->vt, t))
        return RK_ENOMEM;
    return 0;
}

/* Words of a text attribute, by the tokenizer feature text uses too
 * (rk_feat_tokenize), so content similarity and text features agree on
 * what a word is. */
typedef struct text_tok {
    rk_content_builder *b;
    const char *name;
    float w;
} text_tok;

static int text_word(void *arg, const char *word, size_t len)
{
    text_tok *t = arg;
    return view_push(t->b, t->name, word, len, t->w);
}

static int tokenize_text(rk_content_builder *b, const char *name,
                         const char *s, size_t n, float w)
{
    text_tok t = {b, name, w};
    return rk_feat_tokenize(s, n, text_word, &t);
}

static int vt_cmp_str(const void *a, const void *b)
{
    const view_tok *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Heaviest first, then first met. */
static int vt_cmp_weight(const void *a, const void *b)
{
    const view_tok *x = a, *y = b;
    float wx = x->w * (1 + logf(x->count)), wy = y->w * (1 + logf(y->count));
    if (wx != wy) return wx > wy ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int vt_cmp_seq(const void *a, const void *b)
{
    const view_tok *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int resolve_attrs(rk_content_builder *b, const rk_schema *sc,
                         rk_err *err)
{
    uint32_t n = rk_schema_nattrs(sc, RK_ENTITY_ITEM);
    if (sc == b->schema && n == b->nresolved) return 0;
    if (sc != b->schema) b->nresolved = 0;
    for (uint32_t a = b->nresolved; a < n && a < RK_MAX_ATTRS; a++) {
        const rk_attr_def *d = rk_schema_attr(sc, RK_ENTITY_ITEM, a);
        int textual = d->type == RK_ATTR_CATEGORICAL ||
                      d->type == RK_ATTR_CATEGORICAL_LIST ||
                      d->type == RK_ATTR_TEXT;
        b->attr_w[a] = 0;
        if (!b->o.attrs) {
            b->attr_w[a] = textual ? 1.0f : 0.0f;
            continue;
        }
        for (size_t k = 0; k < b->o.nattrs; k++)
            if (!strcmp(b->o.attrs[k].name, d->name)) {
                if (!textual)
                    return rk_err_set(err, RK_ECONFIG,
                                      "content: item attribute '%s' is %s; "
                                      "only categorical, categorical_list and "
                                      "text are tokenized",
                                      d->name, rk_attr_type_name(d->type));
                b->attr_w[a] = b->o.attrs[k].weight;
            }
    }
    b->schema = sc;
    b->nresolved = n;
    return 0;
}

int rk_content_builder_add_view(rk_content_builder *b, const rk_schema *schema,
                                const rk_entity_view *v, rk_err *err)
{
    if (v->flags & (RK_ENTITY_HIDDEN | RK_ENTITY_DELETED)) return 0;
    int rc = resolve_attrs(b, schema, err);
    if (rc) return rc;
    rk_buf_reset(&b->text);
    b->vt.n = 0;
    b->off.n = 0;
    for (uint32_t k = 0; k < v->nattrs && !rc; k++) {
        const rk_attr_val *a = &v->attrs[k];
        if (a->attr >= b->nresolved || b->attr_w[a->attr] <= 0) continue;
        float w = b->attr_w[a->attr];
        const char *name = rk_schema_attr(schema, RK_ENTITY_ITEM, a->attr)->name;
        if (a->type == RK_ATTR_CATEGORICAL) {
            if (a->len) rc = view_push(b, name, a->str, a->len, w);
        } else if (a->type == RK_ATTR_CATEGORICAL_LIST) {
            for (uint32_t t = 0; t < a->n && !rc; t++)
                if (a->list_lens[t])
                    rc = view_push(b, name, a->list[t], a->list_lens[t], w);
        } else if (a->type == RK_ATTR_TEXT) {
            rc = tokenize_text(b, name, a->str, a->len, w);
        }
    }
    if (rc) return rk_err_set(err, rc, "content: out of memory");
    size_t n = b->vt.n;
    if (n == 0) return 0;
    /* The scratch text may have moved while growing: pointers only now. */
    for (size_t k = 0; k < n; k++) b->vt.v[k].p = b->text.data + b->off.v[k];
    qsort(b->vt.v, n, sizeof(view_tok), vt_cmp_str);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        view_tok *t = &b->vt.v[k];
        if (m && b->vt.v[m - 1].len == t->len &&
            !memcmp(b->vt.v[m - 1].p, t->p, t->len))
            b->vt.v[m - 1].count += 1; /* seq stays the first one's */
        else
            b->vt.v[m++] = *t;
    }
    if (m > b->o.max_tokens_per_item) {
        qsort(b->vt.v, m, sizeof(view_tok), vt_cmp_weight);
        m = b->o.max_tokens_per_item;
    }
    /* Adding in order of appearance gives new tokens ids in that order,
     * which keeps the vocabulary independent of sorting details. */
    qsort(b->vt.v, m, sizeof(view_tok), vt_cmp_seq);
    for (size_t k = 0; k < m; k++) {
        const view_tok *t = &b->vt.v[k];
        rc = rk_content_builder_add(b, v->id, t->p, t->len,
                                    t->w * (1 + logf(t->count)), err);
        if (rc) return rc;
    }
    return 0;
}

/* ---- finish: weights, postings, similarities ----------------------------- */

static int ent_cmp(const void *a, const void *b)
{
    const tok_ent *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->tok != y->tok) return x->tok < y->tok ? -1 : 1;
    return x->tf < y->tf ? -1 : x->tf > y->tf;
}

static int ent_cmp_heavy(const void *a, const void *b)
{
    const tok_ent *x = a, *y = b;
    if (x->tf != y->tf) return x->tf > y->tf ? -1 : 1;
    return x->tok < y->tok ? -1 : x->tok > y->tok;
}

typedef struct posting {
    float w;
    uint32_t item;
} posting;

/* Heaviest first, then smaller item: the walk's cut keeps the largest
 * products. */
static int posting_cmp(const void *a, const void *b)
{
    const posting *x = a, *y = b;
    if (x->w != y->w) return x->w > y->w ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

typedef struct block_res {
    uint32_t cnt[BLOCK_ITEMS];
    uint32_t *item;
    float *score;
    int rc;
} block_res;

typedef struct inv_index {
    uint32_t nitems, ntok;
    uint64_t *iptr;      /* nitems + 1 */
    uint32_t *itok;
    float *iw;
    uint64_t *pptr;      /* ntok + 1 */
    posting *post;
    const rk_content_opts *o;
    block_res *blocks;
} inv_index;

static void score_blocks(void *arg, size_t b0, size_t b1)
{
    inv_index *ix = arg;
    const rk_content_opts *o = ix->o;
    float *acc = rk_calloc((size_t)ix->nitems + 1, sizeof *acc);
    uint32_t *mark = rk_calloc((size_t)ix->nitems + 1, sizeof *mark);
    uint32_t *touched = rk_malloc(((size_t)ix->nitems + 1) * sizeof *touched);
    rk_candidate *heap = rk_malloc((size_t)o->top_n * sizeof *heap);
    for (size_t bi = b0; bi < b1; bi++) {
        block_res *br = &ix->blocks[bi];
        uint32_t lo = (uint32_t)(bi * BLOCK_ITEMS);
        uint32_t hi = lo + BLOCK_ITEMS < ix->nitems ? lo + BLOCK_ITEMS : ix->nitems;
        br->item = rk_malloc((size_t)(hi - lo) * o->top_n * sizeof *br->item + 1);
        br->score = rk_malloc((size_t)(hi - lo) * o->top_n * sizeof *br->score + 1);
        if (!acc || !mark || !touched || !heap || !br->item || !br->score) {
            br->rc = RK_ENOMEM;
            continue;
        }
        size_t pos = 0;
        for (uint32_t i = lo; i < hi; i++) {
            size_t nt = 0;
            for (uint64_t k = ix->iptr[i]; k < ix->iptr[i + 1]; k++) {
                uint32_t t = ix->itok[k];
                float wi = ix->iw[k];
                uint64_t pe = ix->pptr[t + 1];
                if (pe - ix->pptr[t] > o->max_postings) pe = ix->pptr[t] + o->max_postings;
                for (uint64_t p = ix->pptr[t]; p < pe; p++) {
                    uint32_t j = ix->post[p].item;
                    if (j == i) continue;
                    /* i + 1 as the mark: no clearing between items. */
                    if (mark[j] != i + 1) {
                        mark[j] = i + 1;
                        acc[j] = 0;
                        touched[nt++] = j;
                    }
                    acc[j] += wi * ix->post[p].w;
                }
            }
            rk__topk t;
            rk__topk_init(&t, heap, o->top_n);
            for (size_t k = 0; k < nt; k++)
                if (acc[touched[k]] > o->min_sim)
                    rk__topk_push(&t, touched[k], acc[touched[k]], RK_SRC_CONTENT);
            size_t m = rk__topk_finish(&t);
            for (size_t k = 0; k < m; k++) {
                br->item[pos + k] = heap[k].item;
                br->score[pos + k] = heap[k].score;
            }
            br->cnt[i - lo] = (uint32_t)m;
            pos += m;
        }
    }
    rk_free(acc);
    rk_free(mark);
    rk_free(touched);
    rk_free(heap);
}

static void index_free(inv_index *ix, size_t nblocks)
{
    rk_free(ix->iptr);
    rk_free(ix->itok);
    rk_free(ix->iw);
    rk_free(ix->pptr);
    rk_free(ix->post);
    if (ix->blocks)
        for (size_t b = 0; b < nblocks; b++) {
            rk_free(ix->blocks[b].item);
            rk_free(ix->blocks[b].score);
        }
    rk_free(ix->blocks);
}

int rk_content_builder_finish(rk_content_builder *b, rk_content **out,
                              rk_err *err)
{
    const rk_content_opts *o = &b->o;
    uint32_t nitems = b->nitems, ntok = b->ntok;
    size_t nblocks = ((size_t)nitems + BLOCK_ITEMS - 1) / BLOCK_ITEMS;
    inv_index ix = {.nitems = nitems, .ntok = ntok, .o = o};
    uint32_t *df = NULL;
    double *norm = NULL;
    uint64_t *fill = NULL;
    rk_content *c = NULL;
    int rc = RK_ENOMEM;
    tok_ent *e = b->ents.v;
    size_t n = b->ents.n;

    /* Merge repeated (item, token) adds, then cap each item's tokens. */
    qsort(e, n, sizeof *e, ent_cmp);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (m && e[m - 1].item == e[k].item && e[m - 1].tok == e[k].tok)
            e[m - 1].tf += e[k].tf;
        else
            e[m++] = e[k];
    }
    n = m;
    m = 0;
    for (size_t k = 0; k < n;) {
        size_t end = k;
        while (end < n && e[end].item == e[k].item) end++;
        size_t len = end - k;
        if (len > o->max_tokens_per_item) {
            qsort(e + k, len, sizeof *e, ent_cmp_heavy);
            len = o->max_tokens_per_item;
            qsort(e + k, len, sizeof *e, ent_cmp);
        }
        memmove(e + m, e + k, len * sizeof *e);
        m += len;
        k = end;
    }
    n = m;

    df = rk_calloc((size_t)ntok + 1, sizeof *df);
    norm = rk_calloc((size_t)nitems + 1, sizeof *norm);
    ix.iptr = rk_calloc((size_t)nitems + 1, sizeof *ix.iptr);
    if (!df || !norm || !ix.iptr) goto done;
    uint64_t ndocs = 0;
    for (size_t k = 0; k < n; k++) {
        df[e[k].tok]++;
        if (k == 0 || e[k].item != e[k - 1].item) ndocs++;
    }
    /* Tokens in more than max_df_ratio of the items are stop words for
     * this catalog: they are dropped from both vectors and index. */
    double max_df = o->max_df_ratio >= 1 ? INFINITY : o->max_df_ratio * (double)ndocs;
    m = 0;
    for (size_t k = 0; k < n; k++) {
        if ((double)df[e[k].tok] > max_df) continue;
        double idf = log((1.0 + (double)ndocs) / (1.0 + df[e[k].tok])) + 1.0;
        e[m] = e[k];
        e[m].tf = (float)(e[k].tf * idf);
        norm[e[m].item] += (double)e[m].tf * e[m].tf;
        m++;
    }
    n = m;
    /* Recount over what is left: dropped tokens get empty postings. */
    memset(df, 0, ((size_t)ntok + 1) * sizeof *df);
    for (size_t k = 0; k < n; k++) df[e[k].tok]++;

    /* Item-major vectors, normalized. */
    ix.itok = rk_malloc((n ? n : 1) * sizeof *ix.itok);
    ix.iw = rk_malloc((n ? n : 1) * sizeof *ix.iw);
    ix.pptr = rk_calloc((size_t)ntok + 1, sizeof *ix.pptr);
    ix.post = rk_malloc((n ? n : 1) * sizeof *ix.post);
    fill = rk_malloc(((size_t)ntok + 1) * sizeof *fill);
    if (!ix.itok || !ix.iw || !ix.pptr || !ix.post || !fill) goto done;
    for (size_t k = 0; k < n; k++) {
        ix.iptr[e[k].item + 1]++;
        ix.itok[k] = e[k].tok;
        ix.iw[k] = (float)(e[k].tf / sqrt(norm[e[k].item]));
    }
    for (uint32_t i = 0; i < nitems; i++) ix.iptr[i + 1] += ix.iptr[i];
    /* Postings by counting sort over tokens, then heaviest first. */
    for (uint32_t t = 0; t < ntok; t++) ix.pptr[t + 1] = ix.pptr[t] + df[t];
    memcpy(fill, ix.pptr, ((size_t)ntok + 1) * sizeof *fill);
    for (size_t k = 0; k < n; k++)
        ix.post[fill[e[k].tok]++] = (posting){ix.iw[k], e[k].item};
    for (uint32_t t = 0; t < ntok; t++)
        qsort(ix.post + ix.pptr[t], (size_t)(ix.pptr[t + 1] - ix.pptr[t]),
              sizeof(posting), posting_cmp);
    /* The token entries are no longer needed: give their memory back
     * before the similarity pass allocates its own. */
    rk_vec_free(&b->ents);
    rk_map_destroy(b->vocab);
    b->vocab = NULL;
    rk_free(fill);
    fill = NULL;
    rk_free(df);
    df = NULL;
    rk_free(norm);
    norm = NULL;

    ix.blocks = rk_calloc(nblocks + 1, sizeof *ix.blocks);
    if (!ix.blocks) goto done;
    if (o->pool && nblocks > 1) {
        if ((rc = rk_pool_parallel_for(o->pool, nblocks, 1, score_blocks, &ix))) {
            rk_err_set(err, rc, "content: thread pool: %s", rk_strerror(rc));
            goto done;
        }
        rc = RK_ENOMEM;
    } else {
        score_blocks(&ix, 0, nblocks);
    }
    uint64_t nnz = 0;
    for (size_t bi = 0; bi < nblocks; bi++) {
        if (ix.blocks[bi].rc) goto done;
        for (uint32_t k = 0; k < BLOCK_ITEMS; k++) nnz += ix.blocks[bi].cnt[k];
    }
    c = rk_calloc(1, sizeof *c);
    if (!c) goto done;
    c->nb.nitems = nitems;
    c->nb.top_n = o->top_n;
    c->nb.nnz = nnz;
    c->nb.ptr = rk_calloc((size_t)nitems + 1, sizeof *c->nb.ptr);
    c->nb.item = rk_malloc((nnz ? nnz : 1) * sizeof *c->nb.item);
    c->nb.score = rk_malloc((nnz ? nnz : 1) * sizeof *c->nb.score);
    if (!c->nb.ptr || !c->nb.item || !c->nb.score) goto done;
    uint64_t pos = 0;
    for (size_t bi = 0; bi < nblocks; bi++) {
        block_res *br = &ix.blocks[bi];
        uint32_t lo = (uint32_t)(bi * BLOCK_ITEMS);
        size_t bpos = 0;
        for (uint32_t k = 0; k < BLOCK_ITEMS && lo + k < nitems; k++) {
            memcpy(c->nb.item + pos, br->item + bpos, br->cnt[k] * sizeof(uint32_t));
            memcpy(c->nb.score + pos, br->score + bpos, br->cnt[k] * sizeof(float));
            pos += br->cnt[k];
            bpos += br->cnt[k];
            c->nb.ptr[lo + k + 1] = pos;
        }
    }
    *out = c;
    c = NULL;
    rc = 0;
done:
    if (rc == RK_ENOMEM) rk_err_set(err, rc, "content: out of memory");
    rk_content_destroy(c);
    index_free(&ix, nblocks);
    rk_free(df);
    rk_free(norm);
    rk_free(fill);
    rk_content_builder_destroy(b);
    return rc;
}

/* ---- from the store ------------------------------------------------------ */

typedef struct content_scan {
    rk_content_builder *b;
    const rk_schema *sc;
    rk_err *err;
    int rc;
} content_scan;

static int content_entity(void *arg, const rk_entity_view *v)
{
    content_scan *c = arg;
    if (v->id >= c->b->nitems) return 0;
    c->rc = rk_content_builder_add_view(c->b, c->sc, v, c->err);
    return c->rc ? 1 : 0;
}

int rk_content_build_from_store(rk_content **out, rk_store *s,
                                const rk_content_opts *o, rk_err *err)
{
    rk_content_opts dflt;
    if (!o) {
        rk_content_opts_default(&dflt);
        o = &dflt;
    }
    const rk_schema *sc = rk_store_schema(s);
    /* A configured attribute the schema does not know is a typo. */
    for (size_t i = 0; i < o->nattrs; i++) {
        uint32_t idx;
        if (o->attrs[i].name &&
            rk_schema_find_attr(sc, RK_ENTITY_ITEM, o->attrs[i].name,
                                strlen(o->attrs[i].name), &idx) != 0)
            return rk_err_set(err, RK_ECONFIG, "content: no item attribute '%s'",
                              o->attrs[i].name);
    }
    rk_reader *r;
    int rc = rk_store_reader(s, &r, err);
    if (rc) return rc;
    rk_store_stats st;
    if ((rc = rk_reader_stats(r, &st))) {
        rc = rk_err_set(err, rc, "content: %s", rk_reader_errmsg(r));
        rk_reader_close(r);
        return rc;
    }
    rk_content_builder *b;
    if ((rc = rk_content_builder_create(&b, (uint32_t)st.ids[RK_ENTITY_ITEM], o,
                                        err))) {
        rk_reader_close(r);
        return rc;
    }
    content_scan c = {b, sc, err, 0};
    rc = rk_reader_scan_entities(r, RK_ENTITY_ITEM, content_entity, &c);
    if (c.rc) rc = c.rc;
    else if (rc) rc = rk_err_set(err, rc, "content: %s", rk_reader_errmsg(r));
    rk_reader_close(r);
    if (rc) {
        rk_content_builder_destroy(b);
        return rc;
    }
    return rk_content_builder_finish(b, out, err);
}

/* ---- queries and files --------------------------------------------------- */

void rk_content_destroy(rk_content *c)
{
    if (!c) return;
    rk__nbrs_free(&c->nb);
    rk_free(c);
}

uint32_t rk_content_nitems(const rk_content *c) { return c->nb.nitems; }

void rk_content_neighbors(const rk_content *c, uint32_t item,
                          const uint32_t **items, const float **scores,
                          size_t *n)
{
    rk__nbrs_get(&c->nb, item, items, scores, n);
}

size_t rk_content_similar(const rk_content *c, uint32_t item, size_t k,
                          rk_candidate *out)
{
    const uint32_t *it;
    const float *sc;
    size_t n;
    rk__nbrs_get(&c->nb, item, &it, &sc, &n);
    if (n > k) n = k;
    for (size_t i = 0; i < n; i++)
        out[i] = (rk_candidate){.item = it[i], .score = sc[i],
                                .source = RK_SRC_CONTENT,
                                .sources = 1u << RK_SRC_CONTENT};
    return n;
}

int rk_content_query(const rk_content *c, const rk_seed *seeds, size_t nseeds,
                     size_t k, rk_candidate *out, size_t *nout)
{
    return rk__nbrs_query(&c->nb, seeds, nseeds, k, RK_SRC_CONTENT, out, nout);
}

int rk_content_save(const rk_content *c, const char *path, rk_err *err)
{
    int rc = rk__nbrs_save(&c->nb, CONTENT_MAGIC, NULL, 0, path, err);
    if (rc) rk_err_prefix(err, "content: ");
    return rc;
}

int rk_content_load(rk_content **out, const char *path, rk_err *err)
{
    rk_content *c = rk_calloc(1, sizeof *c);
    if (!c) return rk_err_set(err, RK_ENOMEM, "content: out of memory");
    int rc = rk__nbrs_load(&c->nb, CONTENT_MAGIC, NULL, 0, path, err);
    if (rc) {
        rk_free(c);
        rk_err_prefix(err, "content: ");
        return rc;
    }
    *out = c;
    return 0;
}
