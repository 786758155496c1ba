/*
 * parser.c — the parser object, the format table (names, detection, the
 * attributes and event types each known format needs) and the field
 * helpers every format uses.
 *
 * The helpers exist so that every format rejects the same things with the
 * same words: "column 'rating': bad number 'x'", "column 'user': invalid
 * UTF-8". A user fixing a file should never have to learn a second
 * vocabulary per format.
 */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io_int.h"

/* ---- format table ------------------------------------------------------ */

static const char *const fmt_names[RK_FMT_COUNT] = {
    "auto",     "ml-data",        "ml-item",   "ml-user", "ml-ratings",
    "ml-movies", "criteo",        "svmlight",  "mind-behaviors",
    "mind-news", "csv",           "tsv",       "jsonl"};

static const char *const kind_names[] = {"events", "users", "items", "rows"};

const char *rk_import_format_name(rk_import_format f)
{
    return (unsigned)f < RK_FMT_COUNT ? fmt_names[f] : "unknown";
}

int rk_import_format_parse(const char *name, rk_import_format *out,
                           rk_err *err)
{
    for (int i = 0; i < RK_FMT_COUNT; i++) {
        if (strcmp(name, fmt_names[i]) == 0) {
            *out = (rk_import_format)i;
            return 0;
        }
    }
    return rk_err_set(err, RK_EINVAL,
                      "unknown format '%s' (expected auto, ml-data, ml-item, "
                      "ml-user, ml-ratings, ml-movies, criteo, svmlight, "
                      "mind-behaviors, mind-news, csv, tsv or jsonl)",
                      name);
}

const char *rk_import_kind_name(rk_import_kind k)
{
    return (unsigned)k <= RK_KIND_ROWS ? kind_names[k] : "unknown";
}

int rk_import_kind_parse(const char *name, rk_import_kind *out, rk_err *err)
{
    for (int i = 0; i <= RK_KIND_ROWS; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (rk_import_kind)i;
            return 0;
        }
    }
    return rk_err_set(err, RK_EINVAL,
                      "unknown kind '%s' (expected events, users, items or "
                      "rows)",
                      name);
}

rk_import_kind rk_import_format_kind(rk_import_format f, rk_import_kind dflt)
{
    switch (f) {
    case RK_FMT_ML_DATA:
    case RK_FMT_ML_RATINGS:
    case RK_FMT_MIND_BEHAVIORS:
        return RK_KIND_EVENTS;
    case RK_FMT_ML_ITEM:
    case RK_FMT_ML_MOVIES:
    case RK_FMT_MIND_NEWS:
        return RK_KIND_ITEMS;
    case RK_FMT_ML_USER:
        return RK_KIND_USERS;
    case RK_FMT_CRITEO:
    case RK_FMT_SVMLIGHT:
        return RK_KIND_ROWS;
    default:
        return dflt;
    }
}

static const rk_io_attr_need ml_item_attrs[] = {
    {RK_ENTITY_ITEM, "title", RK_ATTR_TEXT},
    {RK_ENTITY_ITEM, "genres", RK_ATTR_CATEGORICAL_LIST},
    {RK_ENTITY_ITEM, "year", RK_ATTR_NUMERIC},
    {RK_ENTITY_ITEM, "release", RK_ATTR_TIMESTAMP},
};
static const rk_io_attr_need ml_movie_attrs[] = {
    {RK_ENTITY_ITEM, "title", RK_ATTR_TEXT},
    {RK_ENTITY_ITEM, "genres", RK_ATTR_CATEGORICAL_LIST},
    {RK_ENTITY_ITEM, "year", RK_ATTR_NUMERIC},
};
static const rk_io_attr_need ml_user_attrs[] = {
    {RK_ENTITY_USER, "age", RK_ATTR_NUMERIC},
    {RK_ENTITY_USER, "gender", RK_ATTR_CATEGORICAL},
    {RK_ENTITY_USER, "occupation", RK_ATTR_CATEGORICAL},
    {RK_ENTITY_USER, "zip", RK_ATTR_CATEGORICAL},
};
static const rk_io_attr_need mind_news_attrs[] = {
    {RK_ENTITY_ITEM, "category", RK_ATTR_CATEGORICAL},
    {RK_ENTITY_ITEM, "subcategory", RK_ATTR_CATEGORICAL},
    {RK_ENTITY_ITEM, "title", RK_ATTR_TEXT},
    {RK_ENTITY_ITEM, "abstract", RK_ATTR_TEXT},
    {RK_ENTITY_ITEM, "entities", RK_ATTR_CATEGORICAL_LIST},
};

const rk_io_attr_need *rk_io_format_attrs(rk_import_format f, size_t *n)
{
#define RET(t) return (*n = sizeof t / sizeof t[0], t)
    switch (f) {
    case RK_FMT_ML_ITEM: RET(ml_item_attrs);
    case RK_FMT_ML_MOVIES: RET(ml_movie_attrs);
    case RK_FMT_ML_USER: RET(ml_user_attrs);
    case RK_FMT_MIND_NEWS: RET(mind_news_attrs);
    default: *n = 0; return NULL;
    }
#undef RET
}

static const char *const ev_rating[] = {"rating"};
static const char *const ev_mind[] = {"impression", "click"};

const char *const *rk_io_format_event_types(rk_import_format f, size_t *n)
{
    switch (f) {
    case RK_FMT_ML_DATA:
    case RK_FMT_ML_RATINGS:
        *n = 1;
        return ev_rating;
    case RK_FMT_MIND_BEHAVIORS:
        *n = 2;
        return ev_mind;
    default:
        *n = 0;
        return NULL;
    }
}

char rk__io_join_sep(rk_import_format f)
{
    switch (f) {
    case RK_FMT_CSV:
    case RK_FMT_ML_RATINGS:
    case RK_FMT_ML_MOVIES:
        return ',';
    case RK_FMT_TSV:
        return '\t';
    default:
        return 0;
    }
}

/* ---- detection ---------------------------------------------------------- */

static int name_is(const char *base, const char *lit)
{
    return strcmp(base, lit) == 0;
}

/* u.data and the official split files u1.base..u5.test, ua/ub.*. */
static int is_ml_split(const char *base)
{
    if (name_is(base, "u.data")) return 1;
    if (base[0] != 'u' || !base[1] || base[2] != '.') return 0;
    if (!(isdigit((unsigned char)base[1]) || base[1] == 'a' || base[1] == 'b'))
        return 0;
    return name_is(base + 3, "base") || name_is(base + 3, "test");
}

static size_t count_char(const char *s, size_t n, char c)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

/* Looks like "<number> qid:..." or "<number> <int>:<number>". */
static int looks_svmlight(const char *s, size_t n)
{
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s) return 0;
    double v;
    if (rk_parse_f64(s, (size_t)(sp - s), &v)) return 0;
    const char *t = sp + 1;
    size_t rest = n - (size_t)(t - s);
    if (rest >= 4 && memcmp(t, "qid:", 4) == 0) return 1;
    const char *colon = memchr(t, ':', rest);
    if (!colon || colon == t) return 0;
    uint64_t idx;
    return rk_parse_u64(t, (size_t)(colon - t), &idx) == 0;
}

int rk_import_detect(const char *path, const char *head, size_t head_len,
                     rk_import_format *out, rk_err *err)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    const char *ext = dot ? dot + 1 : "";
    /* First line of the content, without BOM and line ending. */
    const char *l = head ? head : "";
    size_t ln = head ? head_len : 0;
    if (ln >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) {
        l += 3;
        ln -= 3;
    }
    const char *nl = ln ? memchr(l, '\n', ln) : NULL;
    if (nl) ln = (size_t)(nl - l);
    if (ln && l[ln - 1] == '\r') ln--;

    rk_import_format f = RK_FMT_AUTO;
    if (is_ml_split(base)) f = RK_FMT_ML_DATA;
    else if (name_is(base, "u.item")) f = RK_FMT_ML_ITEM;
    else if (name_is(base, "u.user")) f = RK_FMT_ML_USER;
    else if (name_is(base, "behaviors.tsv")) f = RK_FMT_MIND_BEHAVIORS;
    else if (name_is(base, "news.tsv")) f = RK_FMT_MIND_NEWS;
    else if (rk__io_eq(ext, strlen(ext), "csv")) {
        if (ln >= 31 && rk__io_eq(l, 31, "userId,movieId,rating,timestamp"))
            f = RK_FMT_ML_RATINGS;
        else if (ln >= 20 && rk__io_eq(l, 20, "movieId,title,genres"))
            f = RK_FMT_ML_MOVIES;
        else f = RK_FMT_CSV;
    } else if (rk__io_eq(ext, strlen(ext), "jsonl") ||
               rk__io_eq(ext, strlen(ext), "ndjson") ||
               rk__io_eq(ext, strlen(ext), "json")) {
        f = RK_FMT_JSONL;
    } else if (rk__io_eq(ext, strlen(ext), "svm") ||
               rk__io_eq(ext, strlen(ext), "svmlight") ||
               rk__io_eq(ext, strlen(ext), "libsvm")) {
        f = RK_FMT_SVMLIGHT;
    } else if (rk__io_eq(ext, strlen(ext), "tsv") ||
               rk__io_eq(ext, strlen(ext), "txt") || ext[0] == '\0' ||
               rk__io_eq(ext, strlen(ext), "train") ||
               rk__io_eq(ext, strlen(ext), "test")) {
        size_t tabs = count_char(l, ln, '\t');
        if (tabs == 39) f = RK_FMT_CRITEO;
        else if (looks_svmlight(l, ln)) f = RK_FMT_SVMLIGHT;
        else if (rk__io_eq(ext, strlen(ext), "tsv")) f = RK_FMT_TSV;
    }
    if (f == RK_FMT_AUTO)
        return rk_err_set(err, RK_EINVAL,
                          "cannot detect the format of '%s' (use --format)",
                          path);
    *out = f;
    return 0;
}

/* ---- parser object ------------------------------------------------------ */

int rk_io_parser_create(rk_io_parser **out, rk_import_format f,
                        rk_import_kind kind, const rk_schema *schema,
                        rk_err *err)
{
    *out = NULL;
    if (f <= RK_FMT_AUTO || f >= RK_FMT_COUNT)
        return rk_err_set(err, RK_EINVAL, "parser: a concrete format is "
                                          "required");
    if ((unsigned)kind > RK_KIND_ROWS)
        return rk_err_set(err, RK_EINVAL, "parser: bad kind");
    kind = rk_import_format_kind(f, kind);
    int generic = f == RK_FMT_CSV || f == RK_FMT_TSV || f == RK_FMT_JSONL;
    if (generic && (kind == RK_KIND_USERS || kind == RK_KIND_ITEMS) && !schema)
        return rk_err_set(err, RK_EINVAL,
                          "parser: importing %s needs the schema",
                          kind_names[kind]);
    rk_io_parser *p = rk_calloc(1, sizeof *p);
    if (!p) return rk_err_set(err, RK_ENOMEM, "parser: out of memory");
    p->fmt = f;
    p->kind = kind;
    p->entity = kind == RK_KIND_USERS ? RK_ENTITY_USER : RK_ENTITY_ITEM;
    p->schema = schema;
    /* A 1 MiB record can expand (Latin-1 doubles, events per token), so
     * the bound is generous but finite. */
    rk_arena_init(&p->arena, 64 * 1024, 256u << 20);
    char sep = 0;
    int quotes = 0;
    switch (f) {
    case RK_FMT_CSV:
    case RK_FMT_ML_RATINGS:
    case RK_FMT_ML_MOVIES:
        sep = ',';
        quotes = 1;
        break;
    case RK_FMT_TSV:
        sep = '\t';
        quotes = 1;
        break;
    case RK_FMT_ML_ITEM:
    case RK_FMT_ML_USER:
        sep = '|';
        break;
    default:
        sep = '\t';
        break;
    }
    rk_csv_init(&p->csv, sep, quotes);
    *out = p;
    return 0;
}

void rk_io_parser_reset(rk_io_parser *p)
{
    p->nrec = 0;
    p->have_header = 0;
    p->header_bad = 0;
    p->header_msg[0] = '\0';
    rk_arena_reset(&p->arena);
}

void rk_io_parser_destroy(rk_io_parser *p)
{
    if (!p) return;
    rk_arena_free(&p->arena);
    rk_csv_free(&p->csv);
    rk_free(p->cols);
    rk_free(p->rows_label);
    rk_free(p->rows_group);
    rk_free(p->rows_ignore);
    rk_free(p->rows_cat);
    rk_free(p);
}

static int dup_opt(char **dst, const char *src)
{
    rk_free(*dst);
    *dst = NULL;
    if (!src) return 0;
    *dst = rk_strdup(src);
    return *dst ? 0 : RK_ENOMEM;
}

int rk_io_parser_set_rows(rk_io_parser *p, const rk_rows_layout *l,
                          rk_err *err)
{
    if ((p->fmt != RK_FMT_CSV && p->fmt != RK_FMT_TSV) ||
        p->kind != RK_KIND_ROWS)
        return rk_err_set(err, RK_EINVAL, "a rows layout applies to csv/tsv "
                          "files of kind rows");
    if (dup_opt(&p->rows_label, l->label) || dup_opt(&p->rows_group, l->group) ||
        dup_opt(&p->rows_ignore, l->ignore) ||
        dup_opt(&p->rows_cat, l->categorical))
        return rk_err_set(err, RK_ENOMEM, "parser: out of memory");
    p->rows_no_header = l->no_header;
    return 0;
}

int rk_io_parse(rk_io_parser *p, const char *rec, size_t len,
                rk_io_record *out, rk_err *err)
{
    rk_arena_reset(&p->arena);
    memset(out, 0, sizeof *out);
    p->nrec++;
    if (len && memchr(rec, '\0', len))
        return rk_err_set(err, RK_EPARSE, "NUL byte in record");
    switch (p->fmt) {
    case RK_FMT_ML_DATA:
    case RK_FMT_ML_ITEM:
    case RK_FMT_ML_USER:
    case RK_FMT_ML_RATINGS:
    case RK_FMT_ML_MOVIES:
        return rk__io_parse_ml(p, rec, len, out, err);
    case RK_FMT_CRITEO:
        return rk__io_parse_criteo(p, rec, len, out, err);
    case RK_FMT_SVMLIGHT:
        return rk__io_parse_svmlight(p, rec, len, out, err);
    case RK_FMT_MIND_BEHAVIORS:
    case RK_FMT_MIND_NEWS:
        return rk__io_parse_mind(p, rec, len, out, err);
    case RK_FMT_CSV:
    case RK_FMT_TSV:
        return rk__io_parse_csv(p, rec, len, out, err);
    case RK_FMT_JSONL:
        return rk__io_parse_jsonl(p, rec, len, out, err);
    default:
        return rk_err_set(err, RK_EINVAL, "parser: bad format");
    }
}

/* ---- field helpers ------------------------------------------------------ */

const char *rk__io_show(const char *s, size_t n, char out[48])
{
    size_t max = 32, k = n < max ? n : max;
    /* Never cut a UTF-8 sequence in half or pass invalid bytes on. */
    size_t ok = rk_utf8_valid_prefix(s, k);
    size_t j = 0;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && i >= ok)) out[j++] = '?';
        else out[j++] = (char)c;
    }
    if (n > k) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
    return out;
}

int rk__io_eq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (m != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != tolower((unsigned char)lit[i]))
            return 0;
    return 1;
}

int rk__io_dup(rk_io_parser *p, const char *s, size_t n, const char **out,
               rk_err *err)
{
    char *d = rk_arena_strndup(&p->arena, s, n);
    if (!d) return rk_err_set(err, RK_ENOMEM, "parse: out of memory");
    *out = d;
    return 0;
}

int rk__io_cat(rk_io_parser *p, const char **out, rk_err *err,
               const char *a, const char *b, const char *c, const char *d)
{
    const char *parts[4] = {a, b, c, d};
    size_t lens[4], total = 0;
    for (int i = 0; i < 4; i++) {
        lens[i] = parts[i] ? strlen(parts[i]) : 0;
        total += lens[i];
    }
    if (total > RK_ID_MAX)
        return rk_err_set(err, RK_EPARSE, "event id '%.40s...' longer than %d "
                                          "bytes", a, RK_ID_MAX);
    char *s = rk_arena_alloc(&p->arena, total + 1);
    if (!s) return rk_err_set(err, RK_ENOMEM, "parse: out of memory");
    size_t k = 0;
    for (int i = 0; i < 4; i++) {
        memcpy(s + k, parts[i] ? parts[i] : "", lens[i]);
        k += lens[i];
    }
    s[k] = '\0';
    *out = s;
    return 0;
}

int rk__io_id(rk_io_parser *p, const char *col, const char *s, size_t n,
              const char **out, rk_err *err)
{
    if (n == 0) return rk_err_set(err, RK_EPARSE, "column '%s': empty", col);
    if (n > RK_ID_MAX)
        return rk_err_set(err, RK_EPARSE,
                          "column '%s': longer than %d bytes", col, RK_ID_MAX);
    if (rk_utf8_valid_prefix(s, n) != n)
        return rk_err_set(err, RK_EPARSE, "column '%s': invalid UTF-8", col);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return rk_err_set(err, RK_EPARSE,
                              "column '%s': control character in id", col);
    }
    return rk__io_dup(p, s, n, out, err);
}

int rk__io_text(rk_io_parser *p, const char *col, const char *s, size_t n,
                size_t max, const char **out, rk_err *err)
{
    if (n > max)
        return rk_err_set(err, RK_EPARSE, "column '%s': longer than %zu bytes",
                          col, max);
    if (rk_utf8_valid_prefix(s, n) != n)
        return rk_err_set(err, RK_EPARSE, "column '%s': invalid UTF-8", col);
    return rk__io_dup(p, s, n, out, err);
}

int rk__io_latin1(rk_io_parser *p, const char *s, size_t n, const char **out,
                  size_t *outlen, rk_err *err)
{
    /* Each Latin-1 byte becomes at most two UTF-8 bytes. */
    char *d = rk_arena_alloc(&p->arena, 2 * n + 1);
    if (!d) return rk_err_set(err, RK_ENOMEM, "parse: out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            d[j++] = (char)c;
        } else {
            d[j++] = (char)(0xC0 | (c >> 6));
            d[j++] = (char)(0x80 | (c & 0x3F));
        }
    }
    d[j] = '\0';
    *out = d;
    *outlen = j;
    return 0;
}

int rk__io_f64(const char *col, const char *s, size_t n, double *out,
               rk_err *err)
{
    char show[48];
    if (rk_parse_f64(s, n, out) != 0)
        return rk_err_set(err, RK_EPARSE, "column '%s': bad number '%s'", col,
                          rk__io_show(s, n, show));
    return 0;
}

int rk__io_i64(const char *col, const char *s, size_t n, int64_t *out,
               rk_err *err)
{
    char show[48];
    if (rk_parse_i64(s, n, out) != 0)
        return rk_err_set(err, RK_EPARSE, "column '%s': bad integer '%s'", col,
                          rk__io_show(s, n, show));
    return 0;
}

int rk__io_time(const char *col, const char *s, size_t n, int64_t *out,
                rk_err *err)
{
    char show[48];
    if (n && rk_parse_time_ms(s, n, out) == 0) return 0;
    return rk_err_set(err, RK_EPARSE, "column '%s': bad timestamp '%s'", col,
                      rk__io_show(s, n, show));
}

int rk__io_secs(const char *col, const char *s, size_t n, int64_t *out_ms,
                rk_err *err)
{
    char show[48];
    int64_t v;
    if (rk_parse_i64(s, n, &v) != 0 || v < 0 || v > INT64_MAX / 1000)
        return rk_err_set(err, RK_EPARSE, "column '%s': bad timestamp '%s'",
                          col, rk__io_show(s, n, show));
    *out_ms = v * 1000;
    return 0;
}

int rk__io_put_double(rk_buf *b, double v)
{
    char tmp[40];
    if (v == 0) return rk_buf_puts(b, signbit(v) ? "-0.0" : "0");
    /* Integral values print as integers (1995, not 1995.0) while jansson
     * can still read them back as a 64-bit integer exactly. */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(tmp, sizeof tmp, "%.0f", v);
        return rk_buf_puts(b, tmp);
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* "1e+20" is a valid JSON number but reads back as a real only with a
     * '.' or exponent, which %g always gives for non-integers. */
    return rk_buf_puts(b, tmp);
}

int rk__io_put_float(rk_buf *b, float v)
{
    char tmp[40];
    if (v == 0) return rk_buf_puts(b, signbit(v) ? "-0.0" : "0");
    if (v == floorf(v) && fabsf(v) < 1e7f) {
        snprintf(tmp, sizeof tmp, "%.0f", (double)v);
        return rk_buf_puts(b, tmp);
    }
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
        if (strtof(tmp, NULL) == v) break;
    }
    return rk_buf_puts(b, tmp);
}

/* jansson's dump callback appending into a bounded rk_buf. */
static int dump_cb(const char *buf, size_t size, void *data)
{
    return rk_buf_append((rk_buf *)data, buf, size) ? -1 : 0;
}

int rk__io_context(rk_io_parser *p, const char *col, const char *s, size_t n,
                   const char **out, size_t *outlen, rk_err *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return rk_err_set(err, RK_EPARSE, "column '%s': bad JSON: %s", col,
                          jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return rk_err_set(err, RK_EPARSE,
                          "column '%s': must be a JSON object", col);
    }
    rk_buf b;
    rk_buf_init(&b, RK_MAX_CONTEXT + 1);
    int rc = json_dump_callback(j, dump_cb, &b, JSON_COMPACT);
    json_decref(j);
    if (rc != 0 || b.len > RK_MAX_CONTEXT) {
        rk_buf_free(&b);
        return rk_err_set(err, RK_EPARSE,
                          "column '%s': longer than %d bytes", col,
                          RK_MAX_CONTEXT);
    }
    rc = rk__io_dup(p, b.data, b.len, out, err);
    *outlen = b.len;
    rk_buf_free(&b);
    return rc;
}

int rk__io_vector(rk_io_parser *p, const char *col, const char *s, size_t n,
                  uint32_t dim, const float **out, rk_err *err)
{
    float *v = rk_arena_alloc(&p->arena, (dim ? dim : 1) * sizeof *v);
    if (!v) return rk_err_set(err, RK_ENOMEM, "parse: out of memory");
    uint32_t k = 0;
    size_t i = 0;
    char show[48];
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == ';' || s[i] == ',')) i++;
        if (i >= n) break;
        size_t j = i;
        while (j < n && s[j] != ' ' && s[j] != ';' && s[j] != ',') j++;
        double d;
        if (rk_parse_f64(s + i, j - i, &d) != 0 || fabs(d) > 3.4e38)
            return rk_err_set(err, RK_EPARSE, "column '%s': bad number '%s'",
                              col, rk__io_show(s + i, j - i, show));
        if (k == dim)
            return rk_err_set(err, RK_EPARSE,
                              "column '%s': more than %u numbers", col, dim);
        v[k++] = (float)d;
        i = j;
    }
    if (k != dim)
        return rk_err_set(err, RK_EPARSE,
                          "column '%s': expected %u numbers, got %u", col, dim,
                          k);
    *out = v;
    return 0;
}

int rk__io_list(rk_io_parser *p, const char *col, const char *s, size_t n,
                char sep, const char *const **out, const size_t **lens,
                size_t *count, rk_err *err)
{
    size_t parts = count_char(s, n, sep) + 1;
    const char **v = rk_arena_alloc(&p->arena, parts * sizeof *v);
    size_t *l = rk_arena_alloc(&p->arena, parts * sizeof *l);
    if (!v || !l) return rk_err_set(err, RK_ENOMEM, "parse: out of memory");
    size_t k = 0, i = 0;
    while (i <= n) {
        const char *e = i < n ? memchr(s + i, sep, n - i) : NULL;
        size_t j = e ? (size_t)(e - s) : n;
        if (j > i) {
            int rc = rk__io_text(p, col, s + i, j - i, RK_MAX_TEXT, &v[k], err);
            if (rc) return rc;
            l[k++] = j - i;
        }
        i = j + 1;
    }
    *out = v;
    *lens = l;
    *count = k;
    return 0;
}
