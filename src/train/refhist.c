/*
 * refhist.c — reference distributions of a model's inputs and output,
 * built from the training sample and stored in meta.json for the drift
 * monitor (definitions in rk_train.h, JSON in docs/models.md).
 *
 * Numeric bins are fixed once, at training time, by the quantiles of the
 * sample, so that every bin holds about the same share of training rows
 * and a live window can be compared bin by bin (PSI, Jensen-Shannon)
 * without re-binning. The edges are the only definition of a bin:
 * rk_refhist_bin is shared by the builder, the parser's checks and the
 * monitor. Categorical columns keep the top-K values with exact counts;
 * past RK_REFHIST_MAX_DISTINCT distinct values the candidates come from a
 * Misra-Gries summary and are then recounted, so memory stays bounded
 * whatever the column's cardinality.
 *
 * JSON numbers are printed with 17 significant digits so that a parsed
 * histogram bins values exactly as the one that was written.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_int.h"

static int alloc_hist(rk_refhist **out, const char *name,
                      rk_refhist_kind kind, rk_err *err)
{
    *out = NULL;
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > RK_REFHIST_NAME_MAX)
        return rk_err_set(err, RK_EINVAL, "reference: feature name must have "
                          "1 to %d bytes", RK_REFHIST_NAME_MAX);
    rk_refhist *h = rk_calloc(1, sizeof *h);
    if (h && !(h->name = rk_strdup(name))) {
        rk_free(h);
        h = NULL;
    }
    if (!h) return rk_err_set(err, RK_ENOMEM, "reference %s: out of memory",
                              name);
    h->kind = kind;
    h->min = h->max = h->mean = h->std = NAN;
    *out = h;
    return 0;
}

void rk_refhist_free(rk_refhist *h)
{
    if (!h) return;
    rk_free(h->name);
    rk_free(h->edges);
    rk_free(h->counts);
    rk_free(h->top_values);
    rk_free(h->top_counts);
    rk_free(h);
}

/* Number of edges <= x: the bin of x. */
static uint32_t bin_of(const double *edges, uint32_t nedges, double x)
{
    uint32_t lo = 0, hi = nedges;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (edges[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

uint32_t rk_refhist_bin(const rk_refhist *h, double x)
{
    if (h->kind != RK_REFHIST_NUMERIC || !isfinite(x)) return UINT32_MAX;
    return bin_of(h->edges, h->nbins - 1, x);
}

static int cmp_float(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return a < b ? -1 : a > b;
}

int rk_refhist_numeric(rk_refhist **out, const char *name, const float *x,
                       size_t n, size_t stride, uint32_t nbins, rk_err *err)
{
    *out = NULL;
    if (nbins == 0) nbins = 20;
    if (nbins > RK_REFHIST_MAX_BINS)
        return rk_err_set(err, RK_EINVAL, "reference %s: %u bins, at most %d",
                          name ? name : "?", nbins, RK_REFHIST_MAX_BINS);
    if (stride == 0) stride = 1;
    rk_refhist *h;
    int rc = alloc_hist(&h, name, RK_REFHIST_NUMERIC, err);
    if (rc) return rc;
    float *v = NULL;
    size_t m = 0;
    if (n > SIZE_MAX / sizeof *v ||
        (n > 0 && !(v = rk_malloc(n * sizeof *v))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        float f = x[i * stride];
        if (isfinite(f)) v[m++] = f;
    }
    h->count = m;
    h->missing = n - m;
    qsort(v, m, sizeof *v, cmp_float);

    /* Cut points at the quantiles j/nbins; a cut equal to the minimum
     * would make an empty first bin and a repeated one an empty middle
     * bin, so both are dropped. */
    h->edges = rk_malloc((nbins > 1 ? nbins - 1 : 1) * sizeof *h->edges);
    if (!h->edges) goto nomem;
    uint32_t ne = 0;
    for (uint32_t j = 1; j < nbins && m > 0; j++) {
        double c = v[(size_t)((double)j * (double)m / nbins)];
        if (c > v[0] && (ne == 0 || c > h->edges[ne - 1])) h->edges[ne++] = c;
    }
    h->nbins = ne + 1;
    if (!(h->counts = rk_calloc(h->nbins, sizeof *h->counts))) goto nomem;
    double sum = 0;
    for (size_t i = 0; i < m; i++) {
        h->counts[bin_of(h->edges, ne, v[i])]++;
        sum += v[i];
    }
    if (m > 0) {
        h->min = v[0];
        h->max = v[m - 1];
        double mean = sum / (double)m, ss = 0;
        for (size_t i = 0; i < m; i++) ss += (v[i] - mean) * (v[i] - mean);
        /* Rounding can put the mean of a constant column an ulp outside
         * [min, max]; the parser checks min <= mean <= max. */
        h->mean = mean < h->min ? h->min : mean > h->max ? h->max : mean;
        h->std = sqrt(ss / (double)m);
    }
    rk_free(v);
    *out = h;
    return 0;
nomem:
    rk_free(v);
    rk_err_set(err, RK_ENOMEM, "reference %s: out of memory", h->name);
    rk_refhist_free(h);
    return RK_ENOMEM;
}

/* ---- categorical ---------------------------------------------------------- */

typedef struct kv {
    uint64_t value, count;
} kv;

static int cmp_kv(const void *pa, const void *pb)
{
    const kv *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return a->value < b->value ? -1 : a->value > b->value;
}

/* Copies the map's entries into a fresh array (*n of them). */
static kv *map_entries(const rk_map *m, size_t *n)
{
    *n = rk_map_size(m);
    kv *e = rk_malloc((*n ? *n : 1) * sizeof *e);
    if (!e) return NULL;
    size_t it = 0, k = 0;
    const void *key;
    size_t klen;
    uint64_t val;
    while (rk_map_next(m, &it, &key, &klen, &val)) {
        memcpy(&e[k].value, key, sizeof e[k].value);
        e[k++].count = val;
    }
    return e;
}

/* Misra-Gries step when the map is full and a new value arrives: every
 * counter drops by one (the new value's implicit 1 with them) and
 * counters reaching zero free their slot. A step costs the map's size C
 * but takes C + 1 units out of the counters, which only rows put in, so
 * all steps together cost O(n). */
static int mg_decrement(rk_map *m)
{
    size_t ne;
    kv *e = map_entries(m, &ne);
    if (!e) return RK_ENOMEM;
    rk_map_clear(m);
    int rc = 0;
    for (size_t i = 0; i < ne && !rc; i++)
        if (e[i].count > 1)
            rc = rk_map_put(m, &e[i].value, sizeof e[i].value, e[i].count - 1);
    rk_free(e);
    return rc;
}

int rk_refhist_categorical(rk_refhist **out, const char *name,
                           const uint64_t *v, const uint8_t *missing,
                           size_t n, uint32_t k, rk_err *err)
{
    *out = NULL;
    if (k == 0) k = 20;
    if (k > RK_REFHIST_MAX_TOP)
        return rk_err_set(err, RK_EINVAL, "reference %s: top %u, at most %d",
                          name ? name : "?", k, RK_REFHIST_MAX_TOP);
    rk_refhist *h;
    int rc = alloc_hist(&h, name, RK_REFHIST_CATEGORICAL, err);
    if (rc) return rc;
    rk_map *m = NULL;
    kv *e = NULL;
    rc = rk_map_create(&m, RK_REFHIST_MAX_DISTINCT);
    int overflow = 0;
    /* Pass 1: exact counts while they fit, Misra-Gries after. */
    for (size_t i = 0; i < n && !rc; i++) {
        if (missing && missing[i]) {
            h->missing++;
            continue;
        }
        h->count++;
        uint64_t c = 0;
        if (rk_map_get(m, &v[i], sizeof v[i], &c) == 0) {
            rc = rk_map_put(m, &v[i], sizeof v[i], c + 1);
        } else if ((rc = rk_map_put(m, &v[i], sizeof v[i], 1)) == RK_ELIMIT) {
            overflow = 1;
            rc = mg_decrement(m);
        }
    }
    /* Pass 2 (only after an overflow): the survivors' exact counts. */
    if (!rc && overflow) {
        size_t ne;
        if (!(e = map_entries(m, &ne))) rc = RK_ENOMEM;
        for (size_t i = 0; i < ne && !rc; i++)
            rc = rk_map_put(m, &e[i].value, sizeof e[i].value, 0);
        for (size_t i = 0; i < n && !rc; i++) {
            uint64_t c;
            if ((missing && missing[i]) ||
                rk_map_get(m, &v[i], sizeof v[i], &c) != 0)
                continue;
            rc = rk_map_put(m, &v[i], sizeof v[i], c + 1);
        }
        rk_free(e);
        e = NULL;
    }
    size_t ne = 0;
    if (!rc && !(e = map_entries(m, &ne))) rc = RK_ENOMEM;
    if (!rc) {
        qsort(e, ne, sizeof *e, cmp_kv);
        h->ntop = (uint32_t)(ne < k ? ne : k);
        h->distinct = overflow ? (uint64_t)RK_REFHIST_MAX_DISTINCT + 1 : ne;
        h->distinct_exact = !overflow;
        h->top_values = rk_malloc((h->ntop ? h->ntop : 1) * sizeof(uint64_t));
        h->top_counts = rk_malloc((h->ntop ? h->ntop : 1) * sizeof(uint64_t));
        if (!h->top_values || !h->top_counts) rc = RK_ENOMEM;
    }
    if (!rc) {
        uint64_t in_top = 0;
        for (uint32_t i = 0; i < h->ntop; i++) {
            h->top_values[i] = e[i].value;
            h->top_counts[i] = e[i].count;
            in_top += e[i].count;
        }
        h->other = h->count - in_top;
    }
    rk_free(e);
    rk_map_destroy(m);
    if (rc) {
        rk_err_set(err, rc, "reference %s: %s", h->name, rk_strerror(rc));
        rk_refhist_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static int put_num(rk_buf *b, double x)
{
    if (!isfinite(x)) return rk_buf_puts(b, "null");
    return rk_buf_printf(b, "%.17g", x);
}

int rk_refhist_json(const rk_refhist *h, rk_buf *b)
{
    int rc = rk_buf_puts(b, "{\"name\":");
    rc = rc ? rc : rk_buf_put_json_str(b, h->name, strlen(h->name));
    rc = rc ? rc : rk_buf_printf(b, ",\"kind\":\"%s\",\"count\":%llu,"
                                    "\"missing\":%llu",
                                 h->kind == RK_REFHIST_NUMERIC ? "numeric"
                                                               : "categorical",
                                 (unsigned long long)h->count,
                                 (unsigned long long)h->missing);
    if (h->kind == RK_REFHIST_NUMERIC) {
        static const char *const names[] = {"min", "max", "mean", "std"};
        const double vals[] = {h->min, h->max, h->mean, h->std};
        for (int i = 0; i < 4 && !rc; i++) {
            rc = rk_buf_printf(b, ",\"%s\":", names[i]);
            rc = rc ? rc : put_num(b, vals[i]);
        }
        /* Said in the file too, so a reader needs no documentation to
         * bin a value the same way. */
        rc = rc ? rc : rk_buf_puts(b, ",\"bins\":\"quantile\",\"intervals\":"
                                      "\"[edges[i-1], edges[i]), first and "
                                      "last open\",\"edges\":[");
        for (uint32_t i = 0; i + 1 < h->nbins && !rc; i++) {
            rc = i ? rk_buf_putc(b, ',') : 0;
            rc = rc ? rc : put_num(b, h->edges[i]);
        }
        rc = rc ? rc : rk_buf_puts(b, "],\"counts\":[");
        for (uint32_t i = 0; i < h->nbins && !rc; i++)
            rc = rk_buf_printf(b, "%s%llu", i ? "," : "",
                               (unsigned long long)h->counts[i]);
        return rc ? rc : rk_buf_puts(b, "]}");
    }
    rc = rc ? rc : rk_buf_printf(b, ",\"distinct\":%llu,\"distinct_exact\":%s,"
                                    "\"top_values\":[",
                                 (unsigned long long)h->distinct,
                                 h->distinct_exact ? "true" : "false");
    /* Values as decimal strings: JSON numbers lose 64-bit hashes. */
    for (uint32_t i = 0; i < h->ntop && !rc; i++)
        rc = rk_buf_printf(b, "%s\"%llu\"", i ? "," : "",
                           (unsigned long long)h->top_values[i]);
    rc = rc ? rc : rk_buf_puts(b, "],\"top_counts\":[");
    for (uint32_t i = 0; i < h->ntop && !rc; i++)
        rc = rk_buf_printf(b, "%s%llu", i ? "," : "",
                           (unsigned long long)h->top_counts[i]);
    return rc ? rc : rk_buf_printf(b, "],\"other\":%llu}",
                                   (unsigned long long)h->other);
}

/* A non-negative JSON integer. */
static int get_count(const json_t *o, const char *key, const char *where,
                     uint64_t *out, rk_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: \"%s\" must be an integer "
                          ">= 0", where, key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* A finite number, or null (NaN) when allow_null. */
static int get_real(const json_t *o, const char *key, const char *where,
                    int allow_null, double *out, rk_err *err)
{
    json_t *v = json_object_get(o, key);
    if (allow_null && (!v || json_is_null(v))) {
        *out = NAN;
        return 0;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return rk_err_set(err, RK_ECORRUPT, "%s: \"%s\" must be a number%s",
                          where, key, allow_null ? " or null" : "");
    *out = json_number_value(v);
    return 0;
}

/* An array of at most max elements. */
static int get_array(const json_t *o, const char *key, const char *where,
                     size_t max, json_t **out, rk_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_array(v) || json_array_size(v) > max)
        return rk_err_set(err, RK_ECORRUPT, "%s: \"%s\" must be an array of "
                          "at most %zu elements", where, key, max);
    *out = v;
    return 0;
}

static int parse_numeric(rk_refhist *h, const json_t *o, const char *w,
                         rk_err *err)
{
    json_t *edges, *counts;
    int rc;
    if ((rc = get_real(o, "min", w, 1, &h->min, err)) ||
        (rc = get_real(o, "max", w, 1, &h->max, err)) ||
        (rc = get_real(o, "mean", w, 1, &h->mean, err)) ||
        (rc = get_real(o, "std", w, 1, &h->std, err)) ||
        (rc = get_array(o, "edges", w, RK_REFHIST_MAX_BINS - 1, &edges, err)) ||
        (rc = get_array(o, "counts", w, RK_REFHIST_MAX_BINS, &counts, err)))
        return rc;
    size_t ne = json_array_size(edges);
    if (json_array_size(counts) != ne + 1)
        return rk_err_set(err, RK_ECORRUPT, "%s: %zu counts for %zu edges "
                          "(want one more count than edges)", w,
                          json_array_size(counts), ne);
    h->nbins = (uint32_t)ne + 1;
    h->edges = rk_malloc((ne ? ne : 1) * sizeof *h->edges);
    h->counts = rk_malloc(h->nbins * sizeof *h->counts);
    if (!h->edges || !h->counts)
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", w);
    for (size_t i = 0; i < ne; i++) {
        json_t *e = json_array_get(edges, i);
        double x = json_number_value(e);
        if (!json_is_number(e) || !isfinite(x) ||
            (i > 0 && !(x > h->edges[i - 1])))
            return rk_err_set(err, RK_ECORRUPT, "%s: edges[%zu] is not a "
                              "finite number above the previous edge", w, i);
        h->edges[i] = x;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i <= ne; i++) {
        json_t *c = json_array_get(counts, i);
        if (!json_is_integer(c) || json_integer_value(c) < 0)
            return rk_err_set(err, RK_ECORRUPT, "%s: counts[%zu] must be an "
                              "integer >= 0", w, i);
        h->counts[i] = (uint64_t)json_integer_value(c);
        if (sum + h->counts[i] < sum)
            return rk_err_set(err, RK_ECORRUPT, "%s: counts overflow", w);
        sum += h->counts[i];
    }
    if (sum != h->count)
        return rk_err_set(err, RK_ECORRUPT, "%s: counts sum to %llu, count "
                          "is %llu", w, (unsigned long long)sum,
                          (unsigned long long)h->count);
    if (h->count == 0) {
        h->min = h->max = h->mean = h->std = NAN;
        return 0;
    }
    if (isnan(h->min) || isnan(h->max) || isnan(h->mean) || isnan(h->std) ||
        !(h->min <= h->mean && h->mean <= h->max) || h->std < 0)
        return rk_err_set(err, RK_ECORRUPT, "%s: min, mean, max and std must "
                          "be numbers with min <= mean <= max and std >= 0",
                          w);
    /* Edges are data values above the minimum, so every bin of the
     * training sample can be non-empty. */
    if (ne > 0 && !(h->edges[0] > h->min && h->edges[ne - 1] <= h->max))
        return rk_err_set(err, RK_ECORRUPT, "%s: edges outside (min, max]", w);
    return 0;
}

static int parse_categorical(rk_refhist *h, const json_t *o, const char *w,
                             rk_err *err)
{
    json_t *vals, *counts, *ex = json_object_get(o, "distinct_exact");
    int rc;
    if ((rc = get_count(o, "distinct", w, &h->distinct, err)) ||
        (rc = get_count(o, "other", w, &h->other, err)) ||
        (rc = get_array(o, "top_values", w, RK_REFHIST_MAX_TOP, &vals, err)) ||
        (rc = get_array(o, "top_counts", w, RK_REFHIST_MAX_TOP, &counts, err)))
        return rc;
    if (!json_is_boolean(ex))
        return rk_err_set(err, RK_ECORRUPT, "%s: \"distinct_exact\" must be "
                          "true or false", w);
    h->distinct_exact = json_is_true(ex);
    size_t nt = json_array_size(vals);
    if (json_array_size(counts) != nt)
        return rk_err_set(err, RK_ECORRUPT, "%s: %zu top values but %zu "
                          "counts", w, nt, json_array_size(counts));
    h->ntop = (uint32_t)nt;
    h->top_values = rk_malloc((nt ? nt : 1) * sizeof(uint64_t));
    h->top_counts = rk_malloc((nt ? nt : 1) * sizeof(uint64_t));
    if (!h->top_values || !h->top_counts)
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", w);
    uint64_t sum = h->other;
    for (size_t i = 0; i < nt; i++) {
        json_t *v = json_array_get(vals, i), *c = json_array_get(counts, i);
        if (!json_is_string(v) ||
            rk_parse_u64(json_string_value(v), json_string_length(v),
                         &h->top_values[i]) != 0)
            return rk_err_set(err, RK_ECORRUPT, "%s: top_values[%zu] must be "
                              "a decimal string", w, i);
        if (!json_is_integer(c) || json_integer_value(c) <= 0 ||
            (i > 0 && (uint64_t)json_integer_value(c) > h->top_counts[i - 1]))
            return rk_err_set(err, RK_ECORRUPT, "%s: top_counts[%zu] must be "
                              "an integer > 0, not above the previous one",
                              w, i);
        h->top_counts[i] = (uint64_t)json_integer_value(c);
        for (size_t j = 0; j < i; j++)
            if (h->top_values[j] == h->top_values[i])
                return rk_err_set(err, RK_ECORRUPT, "%s: top value %llu "
                                  "listed twice", w,
                                  (unsigned long long)h->top_values[i]);
        if (sum + h->top_counts[i] < sum)
            return rk_err_set(err, RK_ECORRUPT, "%s: counts overflow", w);
        sum += h->top_counts[i];
    }
    if (sum != h->count)
        return rk_err_set(err, RK_ECORRUPT, "%s: top counts and other sum to "
                          "%llu, count is %llu", w, (unsigned long long)sum,
                          (unsigned long long)h->count);
    if (h->distinct < nt || h->distinct > h->count)
        return rk_err_set(err, RK_ECORRUPT, "%s: distinct %llu with %zu top "
                          "values and %llu rows", w,
                          (unsigned long long)h->distinct, nt,
                          (unsigned long long)h->count);
    return 0;
}

int rk__refhist_from_json(const struct json_t *jo, const char *where,
                          rk_refhist **out, rk_err *err)
{
    *out = NULL;
    const json_t *o = jo;
    if (!json_is_object(o))
        return rk_err_set(err, RK_ECORRUPT, "%s: expected an object", where);
    json_t *jn = json_object_get(o, "name"), *jk = json_object_get(o, "kind");
    if (!json_is_string(jn) || json_string_length(jn) == 0 ||
        json_string_length(jn) > RK_REFHIST_NAME_MAX ||
        strlen(json_string_value(jn)) != json_string_length(jn))
        return rk_err_set(err, RK_ECORRUPT, "%s: \"name\" must be a string of "
                          "1 to %d bytes", where, RK_REFHIST_NAME_MAX);
    rk_refhist_kind kind;
    const char *ks = json_string_value(jk);
    if (ks && strcmp(ks, "numeric") == 0) kind = RK_REFHIST_NUMERIC;
    else if (ks && strcmp(ks, "categorical") == 0) kind = RK_REFHIST_CATEGORICAL;
    else
        return rk_err_set(err, RK_ECORRUPT, "%s: \"kind\" must be \"numeric\" "
                          "or \"categorical\"", where);
    rk_refhist *h;
    int rc = alloc_hist(&h, json_string_value(jn), kind, err);
    if (rc) return rc;
    char w[RK_REFHIST_NAME_MAX + 64];
    snprintf(w, sizeof w, "%s (%s)", where, h->name);
    if (!(rc = get_count(o, "count", w, &h->count, err)) &&
        !(rc = get_count(o, "missing", w, &h->missing, err)))
        rc = kind == RK_REFHIST_NUMERIC ? parse_numeric(h, o, w, err)
                                        : parse_categorical(h, o, w, err);
    if (rc) {
        rk_refhist_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int rk_refhist_parse(rk_refhist **out, const char *json, size_t len,
                     rk_err *err)
{
    *out = NULL;
    json_t *o;
    int rc = rk__train_json_load(json, len, "reference", &o, err);
    if (rc) return rc;
    rc = rk__refhist_from_json(o, "reference", out, err);
    json_decref(o);
    return rc;
}
