/*
 * movielens.c — MovieLens files: 100k's u.data/u.item/u.user and the
 * "latest" CSV files ratings.csv/movies.csv.
 *
 * Ratings become events of type "rating" whose value is the rating and
 * whose id is "ml:<user>:<item>:<ts seconds>", so importing a file twice
 * adds nothing. Movies become items with title (text), genres
 * (categorical_list), year (numeric, from the "(1995)" in the title) and,
 * for u.item, release (timestamp). Users become users with age, gender,
 * occupation and zip.
 *
 * The 100k files are Latin-1. A field that is already valid UTF-8 is kept
 * as is, because Latin-1 text with accents almost never forms valid UTF-8
 * sequences while a re-encoded copy of the file always does; this keeps a
 * converted copy from being double-encoded.
 */
#include <string.h>

#include "io_int.h"

/* u.item's 19 genre flags, in file order (u.genre). */
static const char *const ml_genres[19] = {
    "unknown", "Action",    "Adventure", "Animation", "Children's",
    "Comedy",  "Crime",     "Documentary", "Drama",   "Fantasy",
    "Film-Noir", "Horror",  "Musical",   "Mystery",   "Romance",
    "Sci-Fi",  "Thriller",  "War",       "Western"};

static int want_fields(const rk_csv *c, size_t n, const char *what,
                       rk_err *err)
{
    if (c->n != n)
        return rk_err_set(err, RK_EPARSE,
                          "expected %zu %s fields, got %zu", n, what, c->n);
    return 0;
}

/* Year from the last "(dddd)" or "(dddd-" in a title: "Toy Story (1995)",
 * "Fawlty Towers (1975-1979)". 0 when there is none. */
static int title_year(const char *t, size_t n, double *year)
{
    for (size_t i = n; i-- > 0;) {
        if (t[i] != '(' || i + 6 > n) continue;
        const char *d = t + i + 1;
        int ok = 1;
        for (int k = 0; k < 4; k++)
            if (d[k] < '0' || d[k] > '9') ok = 0;
        if (!ok || (d[4] != ')' && d[4] != '-')) continue;
        *year = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 +
                (d[3] - '0');
        return 1;
    }
    return 0;
}

/* "01-Jan-1995" (u.item release dates; one file line has "4-Feb-1971",
 * so the day may have one digit) to epoch ms. */
static int ml_date(const char *s, size_t n, int64_t *out, rk_err *err)
{
    static const char *const mon[12] = {"jan", "feb", "mar", "apr",
                                        "may", "jun", "jul", "aug",
                                        "sep", "oct", "nov", "dec"};
    char show[48];
    unsigned d = 0, y = 0, m = 0;
    size_t dl = n >= 2 && s[1] == '-' ? 1 : 2; /* digits in the day */
    int ok = n == dl + 9 && s[dl] == '-' && s[dl + 4] == '-';
    for (size_t i = 0; ok && i < dl; i++)
        ok = s[i] >= '0' && s[i] <= '9', d = d * 10 + (unsigned)(s[i] - '0');
    for (size_t i = dl + 5; ok && i < n; i++)
        ok = s[i] >= '0' && s[i] <= '9', y = y * 10 + (unsigned)(s[i] - '0');
    if (ok) {
        ok = 0;
        for (unsigned k = 0; k < 12; k++)
            if (rk__io_eq(s + dl + 1, 3, mon[k])) m = k + 1, ok = 1;
    }
    if (!ok || d < 1 || d > 31)
        return rk_err_set(err, RK_EPARSE,
                          "column 'release_date': bad date '%s' (expected "
                          "DD-Mon-YYYY)",
                          rk__io_show(s, n, show));
    *out = rk_civil_ms(y, m, d);
    return 0;
}

/* Text that is Latin-1 unless it is already valid UTF-8 (see top). */
static int ml_text(rk_io_parser *p, const char *col, const char *s, size_t n,
                   const char **out, size_t *outlen, rk_err *err)
{
    if (rk_utf8_valid_prefix(s, n) == n) {
        *outlen = n;
        return rk__io_text(p, col, s, n, RK_MAX_TEXT, out, err);
    }
    int rc = rk__io_latin1(p, s, n, out, outlen, err);
    if (rc == 0 && *outlen > RK_MAX_TEXT)
        return rk_err_set(err, RK_EPARSE, "column '%s': longer than %d bytes",
                          col, RK_MAX_TEXT);
    return rc;
}

static rk_attr_in *attrs_new(rk_io_parser *p, size_t n, rk_err *err)
{
    rk_attr_in *a = rk_arena_alloc(&p->arena, n * sizeof *a);
    if (!a) {
        rk_err_set(err, RK_ENOMEM, "parse: out of memory");
        return NULL;
    }
    memset(a, 0, n * sizeof *a);
    return a;
}

static int rating(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_csv *c = &p->csv;
    int rc = want_fields(c, 4, p->fmt == RK_FMT_ML_DATA ? "tab-separated"
                                                         : "comma-separated",
                         err);
    if (rc) return rc;
    rk_event_in *ev = rk_arena_alloc(&p->arena, sizeof *ev);
    if (!ev) return rk_err_set(err, RK_ENOMEM, "parse: out of memory");
    memset(ev, 0, sizeof *ev);
    ev->type = "rating";
    ev->position = -1;
    ev->has_value = 1;
    if ((rc = rk__io_id(p, "user", c->f[0], c->len[0], &ev->user, err)) ||
        (rc = rk__io_id(p, "item", c->f[1], c->len[1], &ev->item, err)) ||
        (rc = rk__io_f64("rating", c->f[2], c->len[2], &ev->value, err)) ||
        (rc = rk__io_secs("timestamp", c->f[3], c->len[3], &ev->ts_ms, err)))
        return rc;
    /* The id uses the seconds as parsed, so "0880000101" and "880000101"
     * name the same rating. Built by hand: a printf here costs more than
     * parsing the rest of the line. */
    char secs[24];
    int64_t v = ev->ts_ms / 1000;
    size_t k = sizeof secs;
    secs[--k] = '\0';
    do {
        secs[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    const char *mid;
    if ((rc = rk__io_cat(p, &mid, err, ev->user, ":", ev->item, ":")) ||
        (rc = rk__io_cat(p, &ev->id, err, "ml:", mid, secs + k, NULL)))
        return rc;
    out->type = RK_IO_REC_EVENTS;
    out->events = ev;
    out->nevents = 1;
    return 0;
}

static int item_100k(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_csv *c = &p->csv;
    int rc = want_fields(c, 24, "'|'-separated", err);
    if (rc) return rc;
    rk_io_entity *e = &out->entity;
    e->entity = RK_ENTITY_ITEM;
    e->hidden = -1;
    if ((rc = rk__io_id(p, "movie_id", c->f[0], c->len[0], &e->id, err)))
        return rc;
    rk_attr_in *a = attrs_new(p, 4, err);
    const char **genres = rk_arena_alloc(&p->arena, 19 * sizeof *genres);
    if (!a || !genres) return rk_err_set(err, RK_ENOMEM, "out of memory");
    size_t na = 0, ng = 0;
    if (c->len[1]) {
        a[na].name = "title";
        a[na].type = RK_ATTR_TEXT;
        if ((rc = ml_text(p, "title", c->f[1], c->len[1], &a[na].str,
                          &a[na].len, err)))
            return rc;
        double year;
        na++;
        if (title_year(a[na - 1].str, a[na - 1].len, &year)) {
            a[na].name = "year";
            a[na].type = RK_ATTR_NUMERIC;
            a[na].num = year;
            na++;
        }
    }
    if (c->len[2]) {
        a[na].name = "release";
        a[na].type = RK_ATTR_TIMESTAMP;
        if ((rc = ml_date(c->f[2], c->len[2], &a[na].ts_ms, err))) return rc;
        na++;
    }
    for (int g = 0; g < 19; g++) {
        const char *f = c->f[5 + g];
        if (c->len[5 + g] != 1 || (f[0] != '0' && f[0] != '1')) {
            char show[48];
            return rk_err_set(err, RK_EPARSE,
                              "column '%s': expected 0 or 1, got '%s'",
                              ml_genres[g],
                              rk__io_show(f, c->len[5 + g], show));
        }
        if (f[0] == '1') genres[ng++] = ml_genres[g];
    }
    if (ng) {
        a[na].name = "genres";
        a[na].type = RK_ATTR_CATEGORICAL_LIST;
        a[na].list = genres;
        a[na].n = ng;
        na++;
    }
    e->attrs = a;
    e->nattrs = na;
    out->type = RK_IO_REC_ENTITY;
    return 0;
}

static int user_100k(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_csv *c = &p->csv;
    int rc = want_fields(c, 5, "'|'-separated", err);
    if (rc) return rc;
    rk_io_entity *e = &out->entity;
    e->entity = RK_ENTITY_USER;
    e->hidden = -1;
    if ((rc = rk__io_id(p, "user_id", c->f[0], c->len[0], &e->id, err)))
        return rc;
    rk_attr_in *a = attrs_new(p, 4, err);
    if (!a) return RK_ENOMEM;
    size_t na = 0;
    if (c->len[1]) {
        int64_t age;
        if ((rc = rk__io_i64("age", c->f[1], c->len[1], &age, err))) return rc;
        if (age < 0 || age > 200) {
            char show[48];
            return rk_err_set(err, RK_EPARSE, "column 'age': out of range '%s'",
                              rk__io_show(c->f[1], c->len[1], show));
        }
        a[na].name = "age";
        a[na].type = RK_ATTR_NUMERIC;
        a[na].num = (double)age;
        na++;
    }
    static const char *const names[] = {"gender", "occupation", "zip"};
    for (int k = 0; k < 3; k++) {
        if (!c->len[2 + k]) continue;
        a[na].name = names[k];
        a[na].type = RK_ATTR_CATEGORICAL;
        if ((rc = ml_text(p, names[k], c->f[2 + k], c->len[2 + k], &a[na].str,
                          &a[na].len, err)))
            return rc;
        na++;
    }
    e->attrs = a;
    e->nattrs = na;
    out->type = RK_IO_REC_ENTITY;
    return 0;
}

static int movie_csv(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_csv *c = &p->csv;
    int rc = want_fields(c, 3, "comma-separated", err);
    if (rc) return rc;
    rk_io_entity *e = &out->entity;
    e->entity = RK_ENTITY_ITEM;
    e->hidden = -1;
    if ((rc = rk__io_id(p, "movieId", c->f[0], c->len[0], &e->id, err)))
        return rc;
    rk_attr_in *a = attrs_new(p, 3, err);
    if (!a) return RK_ENOMEM;
    size_t na = 0;
    if (c->len[1]) {
        a[na].name = "title";
        a[na].type = RK_ATTR_TEXT;
        a[na].len = c->len[1];
        if ((rc = rk__io_text(p, "title", c->f[1], c->len[1], RK_MAX_TEXT,
                              &a[na].str, err)))
            return rc;
        na++;
        double year;
        if (title_year(c->f[1], c->len[1], &year)) {
            a[na].name = "year";
            a[na].type = RK_ATTR_NUMERIC;
            a[na].num = year;
            na++;
        }
    }
    /* "(no genres listed)" is MovieLens' way of saying none. */
    if (c->len[2] && strcmp(c->f[2], "(no genres listed)") != 0) {
        a[na].name = "genres";
        a[na].type = RK_ATTR_CATEGORICAL_LIST;
        if ((rc = rk__io_list(p, "genres", c->f[2], c->len[2], '|',
                              &a[na].list, &a[na].list_lens, &a[na].n, err)))
            return rc;
        if (a[na].n) na++;
    }
    e->attrs = a;
    e->nattrs = na;
    out->type = RK_IO_REC_ENTITY;
    return 0;
}

/* Checks a CSV header against the expected column names. */
static int header(rk_io_parser *p, const char *const *names, size_t n,
                  const char *expect, rk_err *err)
{
    rk_csv *c = &p->csv;
    int ok = c->n == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = rk__io_eq(c->f[i], c->len[i], names[i]);
    if (!ok)
        return rk_err_set(err, RK_EPARSE, "expected header '%s'", expect);
    return 0;
}

int rk__io_parse_ml(rk_io_parser *p, const char *rec, size_t len,
                    rk_io_record *out, rk_err *err)
{
    if (len == 0) return 0;
    int rc = rk_csv_split(&p->csv, rec, len, err);
    if (rc) return rc;
    switch (p->fmt) {
    case RK_FMT_ML_DATA:
        return rating(p, out, err);
    case RK_FMT_ML_ITEM:
        return item_100k(p, out, err);
    case RK_FMT_ML_USER:
        return user_100k(p, out, err);
    case RK_FMT_ML_RATINGS:
        if (!p->have_header) {
            p->have_header = 1;
            static const char *const h[] = {"userId", "movieId", "rating",
                                            "timestamp"};
            return header(p, h, 4, "userId,movieId,rating,timestamp", err);
        }
        return rating(p, out, err);
    case RK_FMT_ML_MOVIES:
        if (!p->have_header) {
            p->have_header = 1;
            static const char *const h[] = {"movieId", "title", "genres"};
            return header(p, h, 3, "movieId,title,genres", err);
        }
        return movie_csv(p, out, err);
    default:
        return rk_err_set(err, RK_EINVAL, "movielens: bad format");
    }
}
