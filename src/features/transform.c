/*
 * transform.c — value transforms of the features module: the numeric
 * pipeline (missing-value fill, signed log1p, clip, standardize, quantile
 * buckets), vocabularies, BM25 document frequencies and the text
 * tokenizer shared with content similarity.
 *
 * The numeric pipeline is one function per step so that fitting sees the
 * exact values serving transforms: statistics are taken of prep(x) (fill,
 * log1p, clip) over the non-missing raw values, and serving applies
 * standardize or bucketing to prep(x) with those statistics.
 */
#include <math.h>
#include <stdlib.h>

#include "feat_int.h"

double rk__feat_slog1p(double x)
{
    return x >= 0 ? log1p(x) : -log1p(-x);
}

double rk__feat_prep(const numtf *tf, const numfit *fp, double x)
{
    if (isnan(x)) {
        if (tf->missing == MISS_CONST) x = tf->fill;
        else if (tf->missing == MISS_MEAN && fp && fp->count) x = fp->mean_raw;
        else return NAN;
    }
    if (tf->log1p) x = rk__feat_slog1p(x);
    if (tf->clip) x = x < tf->lo ? tf->lo : x > tf->hi ? tf->hi : x;
    return x;
}

/* Number of edges <= x: buckets are [-inf, e0), [e0, e1), ..., [e_last, inf). */
static uint32_t bucket_of(const numfit *fp, double x)
{
    uint32_t lo = 0, hi = fp->nedges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (fp->edges[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int rk__feat_emit_num(const rk_feat_spec *s, const feat *f, uint32_t k,
                      double x, rk_fvec *out)
{
    if (!f->emit) return 0;
    const numtf *tf = &f->tf;
    const numfit *fp = &f->fit[k];
    int onehot = tf->buckets && tf->bucket_out == BOUT_ONEHOT;
    uint32_t per = (uint32_t)!onehot + tf->indicator;
    uint32_t col = f->dense0 + k * per;
    double y = rk__feat_prep(tf, fp, x);
    if (tf->buckets) {
        int64_t b = isnan(y) ? -1 : (int64_t)bucket_of(fp, y);
        if (!onehot) {
            out->dense[col++] = b < 0 ? NAN : (float)b;
        } else {
            uint64_t h = rk__mix64(f->seed ^ ((uint64_t)k << 32 | (uint64_t)(b + 1)) ^
                                   0x6275636bull);
            int rc = rk_fvec_push(out, (uint32_t)h & s->mask, 1.0f);
            if (rc) return rc;
        }
    } else {
        if (tf->standardize && !isnan(y)) y = (y - fp->mu) / fp->sd;
        out->dense[col++] = (float)y;
    }
    if (tf->indicator) out->dense[col] = isnan(x) ? 1.0f : 0.0f;
    return 0;
}

/* ---- vocabularies ---------------------------------------------------------- */

uint32_t rk__feat_vocab_find(const vocab *v, uint64_t h)
{
    if (!v->cap) return v->n;
    for (uint32_t i = (uint32_t)h & (v->cap - 1);; i = (i + 1) & (v->cap - 1)) {
        uint32_t e = v->slot[i];
        if (!e) return v->n;
        if (v->hash[e - 1] == h) return e - 1;
    }
}

int rk__feat_vocab_build(vocab *v, const uint64_t *hashes, uint32_t n)
{
    rk__feat_vocab_free(v);
    uint32_t cap = 8;
    while (cap < 2 * (uint64_t)n) cap *= 2;
    v->hash = rk_malloc(n ? (size_t)n * 8 : 8);
    v->slot = rk_calloc(cap, sizeof *v->slot);
    if (!v->hash || !v->slot) {
        rk__feat_vocab_free(v);
        return RK_ENOMEM;
    }
    v->cap = cap;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (uint32_t)hashes[k] & (cap - 1);
        while (v->slot[i]) {
            if (v->hash[v->slot[i] - 1] == hashes[k]) break; /* duplicate: keep first */
            i = (i + 1) & (cap - 1);
        }
        v->hash[k] = hashes[k];
        if (!v->slot[i]) v->slot[i] = k + 1;
    }
    v->n = n;
    return 0;
}

void rk__feat_vocab_free(vocab *v)
{
    rk_free(v->hash);
    rk_free(v->slot);
    memset(v, 0, sizeof *v);
}

double rk__feat_bm25_df(const bm25fit *b, uint64_t h)
{
    uint32_t lo = 0, hi = b->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (b->hash[mid] < h) lo = mid + 1;
        else hi = mid;
    }
    return lo < b->n && b->hash[lo] == h ? b->df[lo] : 1;
}

/* ---- tokens ------------------------------------------------------------------ */

/* A small English stopword list, sorted for bsearch. Only function words:
 * content words, even frequent ones, are left to idf. */
static const char *const stopwords[] = {
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as",
    "at", "be", "been", "but", "by", "can", "could", "did", "do", "does",
    "for", "from", "had", "has", "have", "he", "her", "his", "how", "i",
    "if", "in", "into", "is", "it", "its", "me", "more", "my", "no", "not",
    "of", "on", "or", "our", "out", "she", "so", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "up",
    "us", "was", "we", "were", "what", "when", "which", "who", "will",
    "with", "would", "you", "your",
};

/* The longest stopword's length: longer words (most content words) skip
 * the search. */
#define STOP_MAXLEN 5

/* strcmp for words of at most STOP_MAXLEN letters, inlined: the search
 * runs for most tokens of every title. */
static int stop_cmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int is_stopword(const char *w, size_t len)
{
    if (len > STOP_MAXLEN) return 0;
    size_t lo = 0, hi = sizeof stopwords / sizeof *stopwords;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = stop_cmp(w, stopwords[mid]);
        if (!c) return 1;
        if (c > 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int wordch(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch >= 0x80;
}

int rk_feat_tokenize(const char *s, size_t n, rk_feat_token_fn fn, void *arg)
{
    char word[RK_FEAT_WORD_MAX + 1];
    size_t i = 0;
    while (i < n) {
        if (!wordch((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t len = 0, j = i;
        for (; j < n && wordch((unsigned char)s[j]); j++) {
            unsigned char ch = (unsigned char)s[j];
            if (len < RK_FEAT_WORD_MAX)
                word[len] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
            len++;
        }
        i = j;
        /* One-letter words carry nothing; over-long "words" are hashes,
         * URLs or binary junk. */
        if (len < 2 || len > RK_FEAT_WORD_MAX) continue;
        word[len] = 0;
        if (is_stopword(word, len)) continue;
        int rc = fn(arg, word, len);
        if (rc) return rc;
    }
    return 0;
}
