/*
 * io_test.c — the pure side of the io module: the record reader, the CSV
 * tokenizer, every format parser (valid and malformed hand-written
 * synthetic lines), format detection and the time/number helpers. No store
 * is opened here; io_import_test.c covers the driver and export.
 *
 * Parser tests are tables of {format, input, expected summary}: each
 * record parsed is rendered as a short text (see describe()) so a case
 * reads like the mapping it checks.
 */
#include <math.h>

#include "io/io_int.h"
#include "rk_io.h"
#include "test.h"

/* ---- rendering parsed records ------------------------------------------ */

static void put(rk_buf *b, const char *s) { (void)rk_buf_puts(b, s); }

static void describe_attr(rk_buf *b, const rk_attr_in *a)
{
    (void)rk_buf_printf(b, " %s=", a->name);
    switch (a->type) {
    case RK_ATTR_NUMERIC: (void)rk_buf_printf(b, "%g", a->num); break;
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT: (void)rk_buf_printf(b, "'%.*s'", (int)a->len, a->str); break;
    case RK_ATTR_TIMESTAMP: (void)rk_buf_printf(b, "@%lld", (long long)a->ts_ms); break;
    case RK_ATTR_CATEGORICAL_LIST:
        for (size_t i = 0; i < a->n; i++)
            (void)rk_buf_printf(b, "%s%s", i ? "|" : "[", a->list[i]);
        put(b, a->n ? "]" : "[]");
        break;
    case RK_ATTR_VECTOR:
        for (uint32_t i = 0; i < a->dim; i++)
            (void)rk_buf_printf(b, "%s%g", i ? ";" : "<", (double)a->vec[i]);
        put(b, ">");
        break;
    }
}

static void describe(rk_buf *b, const rk_io_record *r)
{
    switch (r->type) {
    case RK_IO_REC_EVENTS:
        for (size_t i = 0; i < r->nevents; i++) {
            const rk_event_in *e = &r->events[i];
            (void)rk_buf_printf(b, "%s(%s,%s,%s,%lld", i ? " " : "", e->type,
                                e->user, e->item, (long long)e->ts_ms);
            if (e->has_value) (void)rk_buf_printf(b, ",v=%g", e->value);
            if (e->position >= 0) (void)rk_buf_printf(b, ",p=%d", e->position);
            if (e->request_id) (void)rk_buf_printf(b, ",r=%s", e->request_id);
            if (e->context)
                (void)rk_buf_printf(b, ",c=%.*s", (int)e->context_len,
                                    e->context);
            if (e->id) (void)rk_buf_printf(b, ",id=%s", e->id);
            put(b, ")");
        }
        break;
    case RK_IO_REC_ENTITY: {
        const rk_io_entity *e = &r->entity;
        (void)rk_buf_printf(b, "%s %s", rk_entity_name(e->entity), e->id);
        if (e->hidden >= 0) (void)rk_buf_printf(b, " hidden=%d", e->hidden);
        if (e->deleted) put(b, " deleted");
        for (size_t i = 0; i < e->nattrs; i++) describe_attr(b, &e->attrs[i]);
        break;
    }
    case RK_IO_REC_ROW: {
        const rk_row_in *w = &r->row;
        (void)rk_buf_printf(b, "row %g", w->label);
        if (r->dataset) (void)rk_buf_printf(b, " ds=%s", r->dataset);
        if (w->group) (void)rk_buf_printf(b, " g=%.*s", (int)w->group_len, w->group);
        for (uint32_t i = 0; i < w->nnum; i++)
            (void)rk_buf_printf(b, " %u:%g", w->num_idx[i], w->num_val[i]);
        for (uint32_t i = 0; i < w->ncat; i++)
            (void)rk_buf_printf(b, " c%u=%.*s", w->cat_idx[i],
                                (int)w->cat_len[i], w->cat_val[i]);
        break;
    }
    default:
        break;
    }
}

/* Runs reader + parser over `in` and renders every non-skipped record,
 * separated by " / "; an error renders as "ERR(line): message". */
static char *run_l(rk_import_format f, rk_import_kind k, const rk_schema *sc,
                   const rk_rows_layout *l, const char *in, size_t inlen)
{
    rk_buf out;
    rk_buf_init(&out, 0);
    rk_err err = {0};
    rk_io_parser *p = NULL;
    rk_io_reader *rd = NULL;
    if (rk_io_parser_create(&p, f, k, sc, &err) ||
        (l && rk_io_parser_set_rows(p, l, &err)) ||
        rk_io_reader_open_mem(&rd, in, inlen, &err)) {
        (void)rk_buf_printf(&out, "CREATE: %s", err.msg);
        rk_io_parser_destroy(p);
        return out.data;
    }
    rk_io_reader_set_csv(rd, rk__io_join_sep(f));
    const char *rec;
    size_t len;
    uint64_t line;
    int first = 1;
    for (;;) {
        rk_err_clear(&err);
        int rc = rk_io_reader_next(rd, &rec, &len, &line, &err);
        if (rc == 0) break;
        rk_io_record r;
        if (rc > 0) rc = rk_io_parse(p, rec, len, &r, &err);
        if (rc == 0 && r.type == RK_IO_REC_SKIP) continue;
        if (!first) put(&out, " / ");
        first = 0;
        if (rc) (void)rk_buf_printf(&out, "ERR(%llu): %s",
                                    (unsigned long long)line, err.msg);
        else describe(&out, &r);
    }
    rk_io_reader_close(rd);
    rk_io_parser_destroy(p);
    if (!out.data) put(&out, "");
    return out.data;
}

static char *run(rk_import_format f, rk_import_kind k, const rk_schema *sc,
                 const char *in, size_t inlen)
{
    return run_l(f, k, sc, NULL, in, inlen);
}

typedef struct pcase {
    rk_import_format f;
    const char *in;
    const char *want;   /* exact rendering, or "~substring" */
} pcase;

static int check_cases(const pcase *cs, size_t n, rk_import_kind k,
                       const rk_schema *sc)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char *got = run(cs[i].f, k, sc, cs[i].in, strlen(cs[i].in));
        int ok = cs[i].want[0] == '~' ? strstr(got, cs[i].want + 1) != NULL
                                      : strcmp(got, cs[i].want) == 0;
        if (!ok) {
            fprintf(stderr, "  case %zu (%s): input \"%s\"\n    got  \"%s\"\n"
                            "    want \"%s\"\n",
                    i, rk_import_format_name(cs[i].f), cs[i].in, got,
                    cs[i].want);
            bad = 1;
        }
        rk_free(got);
    }
    return bad;
}

#define RUN_CASES(cs, k, sc)                                               \
    CHECK(check_cases(cs, sizeof cs / sizeof cs[0], k, sc) == 0)

/* ---- tokenizer and reader ---------------------------------------------- */

TEST(csv_split_table)
{
    static const struct {
        char sep;
        int quotes;
        const char *in, *want; /* fields joined by '|', or "!error" */
    } cs[] = {
        {',', 1, "a,b,c", "a|b|c"},
        {',', 1, "", ""},
        {',', 1, ",", "|"},
        {',', 1, "a,,c,", "a||c|"},
        {',', 1, "\"a,b\",c", "a,b|c"},
        {',', 1, "\"say \"\"hi\"\"\",x", "say \"hi\"|x"},
        {',', 1, "\"multi\nline\",2", "multi\nline|2"},
        {',', 1, "\"\"", ""},
        {',', 1, "ab\"c,d", "ab\"c|d"},          /* stray quote is data */
        {',', 1, "\"open,x", "!unterminated quoted field"},
        {',', 1, "\"a\"b,c", "!unexpected character after closing quote"},
        {'\t', 0, "\"a\"\t\"b", "\"a\"|\"b"},     /* quotes off: data */
        {'\t', 0, "x\t\t", "x||"},
        {'|', 0, "1|a|b", "1|a|b"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        rk_csv c;
        rk_csv_init(&c, cs[i].sep, cs[i].quotes);
        rk_err err = {0};
        int rc = rk_csv_split(&c, cs[i].in, strlen(cs[i].in), &err);
        char got[256] = "";
        if (rc) {
            snprintf(got, sizeof got, "!%s", err.msg);
        } else {
            for (size_t k = 0; k < c.n; k++) {
                if (k) strcat(got, "|");
                strcat(got, c.f[k]);
                CHECK_EQ_INT(strlen(c.f[k]), c.len[k]);
            }
        }
        rk_csv_free(&c);
        if (cs[i].want[0] == '!') CHECK_CONTAINS(got, cs[i].want + 1);
        else CHECK_STR(got, cs[i].want);
    }
}

TEST(csv_too_many_fields)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    for (int i = 0; i < RK_IO_MAX_FIELDS + 1; i++) CHECK_OK(rk_buf_putc(&b, ','));
    rk_csv c;
    rk_csv_init(&c, ',', 1);
    rk_err err = {0};
    CHECK(rk_csv_split(&c, b.data, b.len, &err) == RK_EPARSE);
    CHECK_CONTAINS(err.msg, "more than 4096 fields");
    CHECK_OK(rk_csv_split(&c, b.data, RK_IO_MAX_FIELDS - 1, &err));
    CHECK_EQ_INT(c.n, RK_IO_MAX_FIELDS);
    rk_csv_free(&c);
    rk_buf_free(&b);
}

TEST(csv_open_quote)
{
    CHECK(rk_csv_open_quote("a,\"b", 4, ',') == 1);
    CHECK(rk_csv_open_quote("a,\"b\"", 5, ',') == 0);
    CHECK(rk_csv_open_quote("a,\"b\"\"", 6, ',') == 1);
    CHECK(rk_csv_open_quote("a,b\"", 4, ',') == 0);
    CHECK(rk_csv_open_quote("", 0, ',') == 0);
}

/* Collects reader output as "line:record" pairs. */
static char *read_all(const char *in, size_t n, char sep)
{
    rk_buf out;
    rk_buf_init(&out, 0);
    rk_io_reader *r;
    rk_err err = {0};
    if (rk_io_reader_open_mem(&r, in, n, &err)) return NULL;
    rk_io_reader_set_csv(r, sep);
    const char *rec;
    size_t len;
    uint64_t line;
    int rc;
    while ((rc = rk_io_reader_next(r, &rec, &len, &line, &err)) != 0) {
        if (rc < 0) (void)rk_buf_printf(&out, "[%llu:ERR %s]",
                                        (unsigned long long)line, err.msg);
        else (void)rk_buf_printf(&out, "[%llu:%.*s]", (unsigned long long)line,
                                 (int)len, rec);
    }
    rk_io_reader_close(r);
    if (!out.data) put(&out, "");
    return out.data;
}

TEST(reader_lines_crlf_bom)
{
    static const struct {
        const char *in;
        char sep;
        const char *want;
    } cs[] = {
        {"a\nb\n", 0, "[1:a][2:b]"},
        {"a\r\nb\r\n", 0, "[1:a][2:b]"},
        {"a\nb", 0, "[1:a][2:b]"},
        {"\xEF\xBB\xBF" "id,x\n1,2\n", 0, "[1:id,x][2:1,2]"},
        {"\n\nx\n", 0, "[1:][2:][3:x]"},
        {"", 0, ""},
        {"a,\"b\nc\",d\ne\n", ',', "[1:a,\"b\nc\",d][3:e]"},
        {"a,\"b\r\nc\"\r\ne\r\n", ',', "[1:a,\"b\nc\"][3:e]"},
        {"a,\"b\nc\",d\ne\n", 0, "[1:a,\"b][2:c\",d][3:e]"},
        {"x,\"never closed\nmore\n", ',', "[1:x,\"never closed\nmore]"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char *got = read_all(cs[i].in, strlen(cs[i].in), cs[i].sep);
        CHECK(got);
        if (strcmp(got, cs[i].want) != 0)
            fprintf(stderr, "  case %zu: got %s\n", i, got);
        int same = strcmp(got, cs[i].want) == 0;
        rk_free(got);
        CHECK(same);
    }
}

TEST(reader_line_too_long)
{
    size_t big = RK_IO_MAX_LINE + 10;
    char *in = rk_malloc(big + 8);
    CHECK(in);
    memcpy(in, "ok\n", 3);
    memset(in + 3, 'x', big);
    memcpy(in + 3 + big, "\nz\n", 3);
    char *got = read_all(in, big + 6, 0);
    CHECK(got);
    int ok = strcmp(got, "[1:ok][2:ERR line too long (more than 1048576 bytes)]"
                         "[3:z]") == 0;
    if (!ok) fprintf(stderr, "  got %.200s\n", got);
    rk_free(got);

    /* The same through a file, where the line crosses buffer refills. */
    const char *dir = rk_test_tmpdir("io-long");
    char path[600];
    snprintf(path, sizeof path, "%s/long.txt", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fwrite(in, 1, big + 6, f);
    fwrite(in + 3, 1, big, f); /* overlong last line without newline */
    fclose(f);
    rk_free(in);
    CHECK(ok);
    rk_io_reader *r;
    rk_err err = {0};
    CHECK_OK(rk_io_reader_open(&r, path, &err));
    const char *rec;
    size_t len;
    uint64_t line;
    int rcs[5];
    uint64_t lines[5];
    for (int i = 0; i < 5; i++) {
        rcs[i] = rk_io_reader_next(r, &rec, &len, &line, &err);
        lines[i] = line;
    }
    CHECK(rk_io_reader_offset(r) == rk_io_reader_size(r));
    rk_io_reader_close(r);
    rk_test_rmdir(dir);
    CHECK_EQ_INT(rcs[0], 1);
    CHECK_EQ_INT(rcs[1], RK_ELIMIT);
    CHECK_EQ_INT(lines[1], 2);
    CHECK_EQ_INT(rcs[2], 1);
    CHECK_EQ_INT(rcs[3], RK_ELIMIT);
    CHECK_EQ_INT(lines[3], 4);
    CHECK_EQ_INT(rcs[4], 0);
}

TEST(reader_missing_file)
{
    rk_io_reader *r = NULL;
    rk_err err = {0};
    CHECK(rk_io_reader_open(&r, "/nonexistent/dir/x.csv", &err) == RK_EIO);
    CHECK(r == NULL);
    CHECK_CONTAINS(err.msg, "/nonexistent/dir/x.csv: No such file or directory");
}

/* ---- MovieLens --------------------------------------------------------- */

TEST(movielens_ratings_table)
{
    static const pcase cs[] = {
        {RK_FMT_ML_DATA, "7\t42\t4\t880000000\n",
         "(rating,7,42,880000000000,v=4,id=ml:7:42:880000000)"},
        {RK_FMT_ML_DATA, "7\t42\t4\t880000000\r\n8\t1\t5\t1\n",
         "(rating,7,42,880000000000,v=4,id=ml:7:42:880000000) / "
         "(rating,8,1,1000,v=5,id=ml:8:1:1)"},
        {RK_FMT_ML_DATA, "7\t42\t4\n", "ERR(1): expected 4 tab-separated fields, got 3"},
        {RK_FMT_ML_DATA, "7\t42\t4\t5\t6\n", "~expected 4 tab-separated fields, got 5"},
        {RK_FMT_ML_DATA, "7\t42\tfour\t880000000\n",
         "ERR(1): column 'rating': bad number 'four'"},
        {RK_FMT_ML_DATA, "7\t42\tnan\t880000000\n", "~column 'rating': bad number 'nan'"},
        {RK_FMT_ML_DATA, "7\t42\t4\tyesterday\n",
         "ERR(1): column 'timestamp': bad timestamp 'yesterday'"},
        {RK_FMT_ML_DATA, "7\t42\t4\t-5\n", "~column 'timestamp': bad timestamp '-5'"},
        {RK_FMT_ML_DATA, "\t42\t4\t1\n", "ERR(1): column 'user': empty"},
        {RK_FMT_ML_DATA, "7\t4\xff" "2\t4\t1\n", "ERR(1): column 'item': invalid UTF-8"},
        {RK_FMT_ML_RATINGS,
         "userId,movieId,rating,timestamp\n1,31,2.5,1300000001\n",
         "(rating,1,31,1300000001000,v=2.5,id=ml:1:31:1300000001)"},
        {RK_FMT_ML_RATINGS, "user,movie,rating,ts\n1,31,2.5,1\n",
         "ERR(1): expected header 'userId,movieId,rating,timestamp' / "
         "(rating,1,31,1000,v=2.5,id=ml:1:31:1)"},
        {RK_FMT_ML_RATINGS, "userId,movieId,rating,timestamp\n1,31,2.5\n",
         "ERR(2): expected 4 comma-separated fields, got 3"},
    };
    RUN_CASES(cs, RK_KIND_EVENTS, NULL);
}

TEST(movielens_items_users_table)
{
    static const pcase cs[] = {
        {RK_FMT_ML_ITEM,
         "5|Some Film (1994)|01-Jan-1994||http://x|0|1|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|1\n",
         "item 5 title='Some Film (1994)' year=1994 release=@757382400000 "
         "genres=[Action|Comedy|Western]"},
        /* Latin-1 title becomes UTF-8; no date means no release. */
        {RK_FMT_ML_ITEM,
         "6|Caf\xe9 Tale (1930)|||u|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
         "item 6 title='Caf\xc3\xa9 Tale (1930)' year=1930 genres=[unknown]"},
        /* Pre-1970 release dates are negative epoch ms. */
        {RK_FMT_ML_ITEM,
         "7|Old (1930)|15-Mar-1930||u|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n",
         "item 7 title='Old (1930)' year=1930 release=@-1255996800000 genres=[Drama]"},
        {RK_FMT_ML_ITEM, "8|T|||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
         "item 8 title='T'"},
        {RK_FMT_ML_ITEM, "9|T|||u|0|0|0\n", "ERR(1): expected 24 '|'-separated fields, got 8"},
        {RK_FMT_ML_ITEM, "9|T|||u|0|0|0|2|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
         "ERR(1): column 'Animation': expected 0 or 1, got '2'"},
        {RK_FMT_ML_ITEM, "9|T|1995-01-01||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
         "~column 'release_date': bad date '1995-01-01'"},
        {RK_FMT_ML_USER, "1|31|M|engineer|12345\n",
         "user 1 age=31 gender='M' occupation='engineer' zip='12345'"},
        {RK_FMT_ML_USER, "2|47|F|other|X9Z9Z\n",
         "user 2 age=47 gender='F' occupation='other' zip='X9Z9Z'"},
        {RK_FMT_ML_USER, "3|x|F|other|1\n", "ERR(1): column 'age': bad integer 'x'"},
        {RK_FMT_ML_USER, "3|-1|F|other|1\n", "~column 'age': out of range"},
        {RK_FMT_ML_USER, "3|20|F\n", "ERR(1): expected 5 '|'-separated fields, got 3"},
        {RK_FMT_ML_MOVIES,
         "movieId,title,genres\n11,\"Example, The (1995)\",Comedy|Drama\n"
         "99,Series (1975-1979),(no genres listed)\n12,No Year,\n",
         "item 11 title='Example, The (1995)' year=1995 genres=[Comedy|Drama] / "
         "item 99 title='Series (1975-1979)' year=1975 / item 12 title='No Year'"},
        {RK_FMT_ML_MOVIES, "movieId,title,genres\n13,\"Multi\nLine (2001)\",Drama\n14,X,Y\n",
         "item 13 title='Multi\nLine (2001)' year=2001 genres=[Drama] / item 14 title='X' genres=[Y]"},
        {RK_FMT_ML_MOVIES, "movieId,title,genres\n15,\"Bad \"quote\" (2001)\",Drama\n",
         "~unexpected character after closing quote"},
        {RK_FMT_ML_MOVIES, "movieId,title,genres\n16,T\xe9,Drama\n",
         "ERR(2): column 'title': invalid UTF-8"},
    };
    RUN_CASES(cs, RK_KIND_EVENTS, NULL);
}

/* ---- Criteo and svmlight ----------------------------------------------- */

TEST(criteo_table)
{
    static const pcase cs[] = {
        {RK_FMT_CRITEO,
         "1\t5\t\t-1\t\t\t\t\t\t\t\t\t\t7\taa01\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\tff09\n",
         "row 1 0:5 2:-1 12:7 c0=aa01 c25=ff09"},
        {RK_FMT_CRITEO,
         "0\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n",
         "row 0"},
        {RK_FMT_CRITEO, "1\t2\t3\n",
         "ERR(1): expected 40 tab-separated fields (label, I1..I13, C1..C26), got 3"},
        {RK_FMT_CRITEO,
         "2\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n",
         "ERR(1): column 'label': expected 0 or 1, got '2'"},
        {RK_FMT_CRITEO,
         "0\t1.5\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n",
         "ERR(1): column 'I1': bad integer '1.5'"},
        {RK_FMT_CRITEO,
         "0\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\xc3\n",
         "ERR(1): column 'C26': invalid UTF-8"},
    };
    RUN_CASES(cs, RK_KIND_ROWS, NULL);
}

TEST(svmlight_table)
{
    static const pcase cs[] = {
        {RK_FMT_SVMLIGHT, "2 qid:10 1:0.5 3:1 46:0.25 #docid = GX1 inc = 1\n",
         "row 2 g=10 1:0.5 3:1 46:0.25"},
        {RK_FMT_SVMLIGHT, "# comment only\n\n0 1:1\n", "row 0 1:1"},
        {RK_FMT_SVMLIGHT, "-1 7:2e-3\r\n", "row -1 7:0.002"},
        {RK_FMT_SVMLIGHT, "1\n", "row 1"},
        {RK_FMT_SVMLIGHT, "x qid:1 1:1\n", "ERR(1): column 'label': bad number 'x'"},
        {RK_FMT_SVMLIGHT, "1 qid:1 3:1 2:1\n", "ERR(1): feature index 2 not above the previous 3"},
        {RK_FMT_SVMLIGHT, "1 qid:1 3:1 3:1\n", "~feature index 3 not above"},
        {RK_FMT_SVMLIGHT, "1 qid:1 3:nan\n", "ERR(1): feature 3: bad number 'nan'"},
        {RK_FMT_SVMLIGHT, "1 qid:1 3\n", "ERR(1): expected index:value, got '3'"},
        {RK_FMT_SVMLIGHT, "1 qid:1 a:1\n", "ERR(1): bad feature index 'a'"},
        {RK_FMT_SVMLIGHT, "1 1:1 qid:1\n", "~qid must come once, before the features"},
        {RK_FMT_SVMLIGHT, "1 qid: 1:1\n", "ERR(1): column 'qid': empty"},
    };
    RUN_CASES(cs, RK_KIND_ROWS, NULL);
}

/* ---- MIND -------------------------------------------------------------- */

TEST(mind_behaviors_table)
{
    static const pcase cs[] = {
        {RK_FMT_MIND_BEHAVIORS,
         "9\tU1\t11/15/2019 10:22:05 AM\tN1 N2\tN7-0 N8-1\n",
         "(click,U1,N1,1573813324999,c={\"source\":\"history\"},id=mind:h:U1:N1) "
         "(click,U1,N2,1573813324999,c={\"source\":\"history\"},id=mind:h:U1:N2) "
         "(impression,U1,N7,1573813325000,p=0,r=mind-9,id=mind:9:N7:imp) "
         "(impression,U1,N8,1573813325000,p=1,r=mind-9,id=mind:9:N8:imp) "
         "(click,U1,N8,1573813325000,p=1,r=mind-9,id=mind:9:N8:click)"},
        /* Empty history; PM; unlabelled token (test-set format). */
        {RK_FMT_MIND_BEHAVIORS, "10\tU2\t11/9/2019 1:02:03 PM\t\tN5\n",
         "(impression,U2,N5,1573304523000,p=0,r=mind-10,id=mind:10:N5:imp)"},
        {RK_FMT_MIND_BEHAVIORS, "10\tU2\t11/9/2019 1:02:03 PM\tN1\n",
         "~expected 5 tab-separated fields"},
        {RK_FMT_MIND_BEHAVIORS, "10\tU2\tsometime\t\tN5-1\n",
         "ERR(1): column 'time': bad timestamp 'sometime'"},
        {RK_FMT_MIND_BEHAVIORS, "10\tU2\t11/9/2019 1:02:03 PM\tN1\t \n",
         "ERR(1): column 'impressions': empty"},
        {RK_FMT_MIND_BEHAVIORS, "10\t\t11/9/2019 1:02:03 PM\tN1\tN2-0\n",
         "ERR(1): column 'user': empty"},
    };
    RUN_CASES(cs, RK_KIND_EVENTS, NULL);
}

TEST(mind_news_table)
{
    static const pcase cs[] = {
        {RK_FMT_MIND_NEWS,
         "N1\tsports\tgolf\tA \"big\" day, really\tShort abstract.\thttps://x/1\t"
         "[{\"Label\": \"A\", \"WikidataId\": \"Q1\"}, {\"WikidataId\": \"Q2\"}]\t"
         "[{\"WikidataId\": \"Q2\"}, {\"WikidataId\": \"Q3\"}]\n",
         "item N1 category='sports' subcategory='golf' title='A \"big\" day, really' "
         "abstract='Short abstract.' entities=[Q1|Q2|Q3]"},
        {RK_FMT_MIND_NEWS, "N2\tnews\tus\tTitle\t\thttps://x/2\t[]\t\n",
         "item N2 category='news' subcategory='us' title='Title'"},
        {RK_FMT_MIND_NEWS, "N3\tnews\tus\tTitle\t\turl\t[{]\t[]\n",
         "~column 'title_entities': not a JSON array"},
        {RK_FMT_MIND_NEWS, "N4\tnews\tus\tTitle\n", "~expected 8 tab-separated fields"},
        {RK_FMT_MIND_NEWS, "N5\tnews\tus\tT\xe9\t\turl\t[]\t[]\n",
         "ERR(1): column 'title': invalid UTF-8"},
    };
    RUN_CASES(cs, RK_KIND_ITEMS, NULL);
}

/* ---- generic formats --------------------------------------------------- */

static rk_schema *test_schema(void)
{
    rk_schema *s = NULL;
    rk_err err = {0};
    if (rk_schema_create(&s)) return NULL;
    int rc = rk_schema_add_event_type(s, "click", RK_ROLE_POSITIVE, 1, &err);
    rc = rc ? rc : rk_schema_add_event_type(s, "watch", RK_ROLE_VALUED, 1, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_ITEM, "year", RK_ATTR_NUMERIC, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_ITEM, "cat", RK_ATTR_CATEGORICAL, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_ITEM, "tags", RK_ATTR_CATEGORICAL_LIST, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_ITEM, "title", RK_ATTR_TEXT, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_ITEM, "born", RK_ATTR_TIMESTAMP, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_ITEM, "emb", RK_ATTR_VECTOR, 3, &err);
    rc = rc ? rc : rk_schema_add_attr(s, RK_ENTITY_USER, "age", RK_ATTR_NUMERIC, 0, &err);
    if (rc) {
        rk_schema_destroy(s);
        return NULL;
    }
    return s;
}

TEST(csv_events_table)
{
    static const pcase cs[] = {
        {RK_FMT_CSV,
         "type,user,item,ts,value,position,request_id,context,id\n"
         "click,u1,i1,2019-11-15T10:22:05Z,,3,r1,\"{\"\"a\"\": 1}\",e1\n"
         "watch,u1,i2,1573813325,12.5,,,,\n",
         "(click,u1,i1,1573813325000,p=3,r=r1,c={\"a\":1},id=e1) / "
         "(watch,u1,i2,1573813325000,v=12.5)"},
        {RK_FMT_TSV, "user\titem\ttype\tts\nu1\ti1\tclick\t1573813325123\n",
         "(click,u1,i1,1573813325123)"},
        {RK_FMT_CSV, " Type , USER ,item,ts\nclick,u,i,1\n", "(click,u,i,1000)"},
        {RK_FMT_CSV, "type,user,item\nclick,u,i\n",
         "ERR(1): header: missing required column 'ts' / ERR(2): header: missing required column 'ts'"},
        {RK_FMT_CSV, "type,user,item,ts,when\n",
         "~header: unknown column 'when' (expected columns from type, user"},
        {RK_FMT_CSV, "type,user,item,ts,user\n", "~header: duplicate column 'user'"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,u,i\n", "ERR(2): expected 4 fields, got 3"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,u,i,1,2\n", "ERR(2): expected 4 fields, got 5"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,u,i,\n", "ERR(2): column 'ts': empty"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,u,i,32/13/2019\n",
         "ERR(2): column 'ts': bad timestamp '32/13/2019'"},
        {RK_FMT_CSV, "type,user,item,ts,value\nwatch,u,i,1,NaN\n",
         "ERR(2): column 'value': bad number 'NaN'"},
        {RK_FMT_CSV, "type,user,item,ts,value\nwatch,u,i,1,inf\n", "~bad number 'inf'"},
        {RK_FMT_CSV, "type,user,item,ts,position\nclick,u,i,1,-2\n",
         "ERR(2): column 'position': out of range '-2'"},
        {RK_FMT_CSV, "type,user,item,ts,context\nclick,u,i,1,[1]\n",
         "ERR(2): column 'context': must be a JSON object"},
        {RK_FMT_CSV, "type,user,item,ts,context\nclick,u,i,1,{x\n", "~column 'context': bad JSON"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,u\xc3\x28,i,1\n", "ERR(2): column 'user': invalid UTF-8"},
        {RK_FMT_CSV, "type,user,item,ts\nbuy,u,i,1\n",
         "ERR(2): column 'type': unknown event type 'buy' (declare it under events:)"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,\"u,1\",\"i\"\"2\",1\n",
         "(click,u,1,i\"2,1000)"},
        {RK_FMT_CSV, "type,user,item,ts\nclick,u,\"i\n", "~unterminated quoted field"},
    };
    rk_schema *sc = test_schema();
    CHECK(sc);
    int bad = check_cases(cs, sizeof cs / sizeof cs[0], RK_KIND_EVENTS, sc);
    rk_schema_destroy(sc);
    CHECK(bad == 0);
}

TEST(csv_entities_table)
{
    static const pcase cs[] = {
        {RK_FMT_CSV,
         "id,year,cat,tags,title,born,emb,hidden\n"
         "i1,1995,drama,a|b||c,\"Hello, world\",1995-01-01,0.5 -1 2,true\n"
         "i2,,,,,,,\n"
         "i3,,,,,,1;2;3,0\n",
         "item i1 hidden=1 year=1995 cat='drama' tags=[a|b|c] title='Hello, world' "
         "born=@788918400000 emb=<0.5;-1;2> / item i2 / item i3 hidden=0 emb=<1;2;3>"},
        {RK_FMT_CSV, "year,id\n1,x\n", "item x year=1"},
        {RK_FMT_CSV, "id,color\ni1,red\n",
         "ERR(1): header: unknown attribute 'color' for item (declare it under "
         "entities.item.attributes) / ERR(2): header: unknown attribute 'color'"
         " for item (declare it under entities.item.attributes)"},
        {RK_FMT_CSV, "year\n1\n", "~header: missing required column 'id'"},
        {RK_FMT_CSV, "id,emb\ni1,1 2\n", "ERR(2): column 'emb': expected 3 numbers, got 2"},
        {RK_FMT_CSV, "id,emb\ni1,1 2 3 4\n", "ERR(2): column 'emb': more than 3 numbers"},
        {RK_FMT_CSV, "id,emb\ni1,1 x 3\n", "ERR(2): column 'emb': bad number 'x'"},
        {RK_FMT_CSV, "id,year\ni1,19x5\n", "ERR(2): column 'year': bad number '19x5'"},
        {RK_FMT_CSV, "id,born\ni1,soon\n", "ERR(2): column 'born': bad timestamp 'soon'"},
        {RK_FMT_CSV, "id,hidden\ni1,maybe\n",
         "ERR(2): column 'hidden': expected true or false, got 'maybe'"},
        {RK_FMT_CSV, "id,title\ni1,\"caf\xe9\"\n", "ERR(2): column 'title': invalid UTF-8"},
        {RK_FMT_CSV, "id,year\n,1\n", "ERR(2): column 'id': empty"},
    };
    rk_schema *sc = test_schema();
    CHECK(sc);
    int bad = check_cases(cs, sizeof cs / sizeof cs[0], RK_KIND_ITEMS, sc);
    rk_schema_destroy(sc);
    CHECK(bad == 0);
}

TEST(jsonl_events_table)
{
    static const pcase cs[] = {
        {RK_FMT_JSONL,
         "{\"type\":\"click\",\"user\":\"u1\",\"item\":7,\"ts\":1573813325,"
         "\"position\":2,\"request_id\":\"r\",\"context\":{\"d\":\"m\", \"n\": [1, 2]},"
         "\"id\":\"e\"}\n"
         "{\"type\":\"watch\",\"user\":\"u1\",\"item\":\"i\",\"ts\":1573813325123,\"value\":3}\n"
         "{\"type\":\"click\",\"user\":\"u1\",\"item\":\"i\",\"ts\":\"2019-11-15T10:22:05.123Z\","
         "\"value\":null}\n",
         "(click,u1,7,1573813325000,p=2,r=r,c={\"d\":\"m\",\"n\":[1,2]},id=e) / "
         "(watch,u1,i,1573813325123,v=3) / (click,u1,i,1573813325123)"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\",\"ts\":1.5}\n",
         "(click,u,i,1500)"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\"}\n",
         "ERR(1): missing field 'ts'"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\",\"ts\":1,\"timestamp\":2}\n",
         "~unknown field 'timestamp'"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\"\n", "~bad JSON at column"},
        {RK_FMT_JSONL, "[1,2]\n", "ERR(1): expected a JSON object"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\",\"ts\":1,\"context\":\"x\"}\n",
         "ERR(1): field 'context': expected an object"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\",\"ts\":1,\"value\":\"3\"}\n",
         "ERR(1): field 'value': expected a number"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\",\"ts\":-5}\n",
         "ERR(1): field 'ts': before 1970"},
        {RK_FMT_JSONL, "{\"type\":\"click\",\"user\":\"u\",\"user\":\"v\",\"item\":\"i\",\"ts\":1}\n",
         "~bad JSON"},
        {RK_FMT_JSONL, "{\"type\":\"nope\",\"user\":\"u\",\"item\":\"i\",\"ts\":1}\n",
         "~unknown event type 'nope'"},
        {RK_FMT_JSONL, "  \n", ""},
    };
    rk_schema *sc = test_schema();
    CHECK(sc);
    int bad = check_cases(cs, sizeof cs / sizeof cs[0], RK_KIND_EVENTS, sc);
    rk_schema_destroy(sc);
    CHECK(bad == 0);
}

TEST(jsonl_entities_rows_table)
{
    static const pcase items[] = {
        {RK_FMT_JSONL,
         "{\"id\":\"i1\",\"hidden\":false,\"attributes\":{\"title\":\"x\",\"tags\":[\"a\"],"
         "\"year\":1995,\"emb\":[0.1,0.2,0.5],\"born\":\"1930-03-15T00:00:00.000Z\"}}\n"
         "{\"id\":2,\"cat\":\"c\",\"year\":null}\n{\"id\":\"i3\",\"deleted\":true}\n",
         "item i1 hidden=0 title='x' tags=[a] year=1995 emb=<0.1;0.2;0.5> born=@-1255996800000"
         " / item 2 cat='c' / item i3 deleted"},
        {RK_FMT_JSONL, "{\"id\":\"i1\",\"color\":\"red\"}\n",
         "ERR(1): unknown attribute 'color' for item (declare it under "
         "entities.item.attributes)"},
        {RK_FMT_JSONL, "{\"id\":\"i1\",\"year\":1,\"attributes\":{\"year\":2}}\n",
         "ERR(1): attribute 'year' given twice"},
        {RK_FMT_JSONL, "{\"year\":1}\n", "ERR(1): missing field 'id'"},
        {RK_FMT_JSONL, "{\"id\":\"i\",\"emb\":[1,2]}\n", "ERR(1): field 'emb': expected 3 numbers, got 2"},
        {RK_FMT_JSONL, "{\"id\":\"i\",\"tags\":[1]}\n", "ERR(1): field 'tags': expected an array of strings"},
        {RK_FMT_JSONL, "{\"id\":\"i\",\"hidden\":1}\n", "ERR(1): field 'hidden': expected a boolean"},
        {RK_FMT_JSONL, "{\"id\":\"i\",\"deleted\":true,\"year\":1}\n",
         "~a deleted item cannot carry attributes"},
    };
    static const pcase rows[] = {
        {RK_FMT_JSONL,
         "{\"label\":1,\"group\":\"q1\",\"num\":{\"0\":1.5,\"7\":-2},\"cat\":{\"3\":\"ab\"}}\n"
         "{\"dataset\":\"d2\",\"label\":0}\n",
         "row 1 g=q1 0:1.5 7:-2 c3=ab / row 0 ds=d2"},
        {RK_FMT_JSONL, "{\"label\":1,\"num\":{\"7\":1,\"3\":2}}\n",
         "ERR(1): field 'num': indexes must increase"},
        {RK_FMT_JSONL, "{\"num\":{}}\n", "ERR(1): missing field 'label'"},
        {RK_FMT_JSONL, "{\"label\":1,\"num\":{\"x\":1}}\n", "ERR(1): field 'num': bad index 'x'"},
        {RK_FMT_JSONL, "{\"label\":1,\"extra\":1}\n", "~unknown field 'extra'"},
    };
    rk_schema *sc = test_schema();
    CHECK(sc);
    int bad = check_cases(items, sizeof items / sizeof items[0], RK_KIND_ITEMS, sc);
    bad |= check_cases(rows, sizeof rows / sizeof rows[0], RK_KIND_ROWS, sc);
    rk_schema_destroy(sc);
    CHECK(bad == 0);
}

TEST(csv_rows_table)
{
    static const struct {
        rk_rows_layout l;
        rk_import_format f;
        const char *in, *want;
    } cs[] = {
        /* Header names, default label column, auto numeric, empty = missing. */
        {{0}, RK_FMT_CSV, "label,a,b\n1,0.5,\n0,,-2\n", "row 1 1:0.5 / row 0 2:-2"},
        /* Named label, ignored id, everything else categorical. */
        {{.label = "click", .ignore = "id", .categorical = "all"}, RK_FMT_CSV,
         "id,click,site\n7,1,ab\n8,0,\n", "row 1 c2=ab / row 0"},
        /* No header: positions name the columns; quoted UCI labels. */
        {{.label = "2", .no_header = 1}, RK_FMT_CSV, "0.1,3,'-1'\n0.2,4,'1'\n",
         "row -1 0:0.1 1:3 / row 1 0:0.2 1:4"},
        {{.label = "0", .group = "1", .categorical = "2", .no_header = 1},
         RK_FMT_TSV, "2\tq7\tx\t1.5\n", "row 2 g=q7 3:1.5 c2=x"},
        /* Errors name the column and the line. */
        {{0}, RK_FMT_CSV, "label,a\n1,abc\n", "ERR(2): column '1': bad number 'abc'"},
        {{0}, RK_FMT_CSV, "label,a\n1,2,3\n", "ERR(2): expected 2 fields, got 3"},
        {{0}, RK_FMT_CSV, "y,a\n1,2\n", "~no label column 'label'"},
        {{.group = "g"}, RK_FMT_CSV, "label,a\n1,2\n", "~no group column 'g'"},
        {{0}, RK_FMT_CSV, "label,a\nx,2\n", "~column '0'"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char *got = run_l(cs[i].f, RK_KIND_ROWS, NULL, &cs[i].l, cs[i].in,
                          strlen(cs[i].in));
        int ok = cs[i].want[0] == '~' ? strstr(got, cs[i].want + 1) != NULL
                                      : strcmp(got, cs[i].want) == 0;
        if (!ok) {
            fprintf(stderr, "  case %zu: got \"%s\" want \"%s\"\n", i, got,
                    cs[i].want);
            bad = 1;
        }
        rk_free(got);
    }
    CHECK(!bad);
}

TEST(parser_create_errors)
{
    rk_io_parser *p = NULL;
    rk_err err = {0};
    CHECK(rk_io_parser_create(&p, RK_FMT_AUTO, RK_KIND_EVENTS, NULL, &err) == RK_EINVAL);
    CHECK(rk_io_parser_create(&p, RK_FMT_CSV, RK_KIND_EVENTS, NULL, &err) == 0);
    rk_rows_layout l = {0};
    CHECK(rk_io_parser_set_rows(p, &l, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "kind rows");
    rk_io_parser_destroy(p);
    p = NULL;
    CHECK(rk_io_parser_create(&p, RK_FMT_JSONL, RK_KIND_USERS, NULL, &err) == RK_EINVAL);
    CHECK(p == NULL);
    rk_io_parser_destroy(NULL);
}

TEST(record_with_nul_byte)
{
    char *got = run(RK_FMT_SVMLIGHT, RK_KIND_ROWS, NULL, "1 1:1\0x\n", 8);
    int ok = strcmp(got, "ERR(1): NUL byte in record") == 0;
    rk_free(got);
    CHECK(ok);
}

TEST(overlong_line_is_a_row_error)
{
    size_t big = RK_IO_MAX_LINE + 1;
    char *in = rk_malloc(big + 32);
    CHECK(in);
    memset(in, 'x', big);
    memcpy(in + big, "\n1 2:3\n", 7);
    char *got = run(RK_FMT_SVMLIGHT, RK_KIND_ROWS, NULL, in, big + 7);
    rk_free(in);
    int ok = strcmp(got, "ERR(1): line too long (more than 1048576 bytes) / row 1 2:3") == 0;
    if (!ok) fprintf(stderr, "  got %.100s\n", got);
    rk_free(got);
    CHECK(ok);
}

/* ---- formats, detection, helpers --------------------------------------- */

TEST(format_names_and_detection)
{
    rk_err err = {0};
    for (int f = 0; f < RK_FMT_COUNT; f++) {
        rk_import_format g;
        CHECK_OK(rk_import_format_parse(rk_import_format_name((rk_import_format)f), &g, &err));
        CHECK_EQ_INT(g, f);
    }
    rk_import_format g;
    CHECK(rk_import_format_parse("xml", &g, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "unknown format 'xml'");
    rk_import_kind k;
    CHECK_OK(rk_import_kind_parse("items", &k, &err));
    CHECK_EQ_INT(k, RK_KIND_ITEMS);
    CHECK(rk_import_kind_parse("things", &k, &err) == RK_EINVAL);

    static const char criteo40[] =
        "0\t1\t\t\t\t\t\t\t\t\t\t\t\t\ta\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\tb\n";
    static const struct {
        const char *path, *head;
        rk_import_format want;
    } cs[] = {
        {"data/ml-100k/u.data", "1\t2\t3\t4\n", RK_FMT_ML_DATA},
        {"u1.base", "", RK_FMT_ML_DATA},
        {"ua.test", "", RK_FMT_ML_DATA},
        {"/x/u.item", "", RK_FMT_ML_ITEM},
        {"u.user", "", RK_FMT_ML_USER},
        {"r.csv", "userId,movieId,rating,timestamp\n", RK_FMT_ML_RATINGS},
        {"m.csv", "\xEF\xBB\xBFmovieId,title,genres\r\n", RK_FMT_ML_MOVIES},
        {"ev.csv", "type,user,item,ts\n", RK_FMT_CSV},
        {"x/behaviors.tsv", "", RK_FMT_MIND_BEHAVIORS},
        {"news.tsv", "", RK_FMT_MIND_NEWS},
        {"train.tsv", criteo40, RK_FMT_CRITEO},
        {"train.txt", criteo40, RK_FMT_CRITEO},
        {"Fold1/vali.txt", "0 qid:1 1:0.5\n", RK_FMT_SVMLIGHT},
        {"rank.train", "1 3:0.5 9:1\n", RK_FMT_SVMLIGHT},
        {"a.svm", "", RK_FMT_SVMLIGHT},
        {"ev.tsv", "type\tuser\titem\tts\n", RK_FMT_TSV},
        {"ev.jsonl", "{}", RK_FMT_JSONL},
        {"ev.ndjson", "", RK_FMT_JSONL},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        CHECK_OK(rk_import_detect(cs[i].path, cs[i].head, strlen(cs[i].head), &g, &err));
        if (g != cs[i].want) fprintf(stderr, "  %s -> %s\n", cs[i].path, rk_import_format_name(g));
        CHECK_EQ_INT(g, cs[i].want);
    }
    CHECK(rk_import_detect("notes.txt", "hello world\n", 12, &g, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "cannot detect the format of 'notes.txt' (use --format)");
    CHECK(rk_import_detect("blob.bin", NULL, 0, &g, &err) == RK_EINVAL);

    size_t n;
    const rk_io_attr_need *need = rk_io_format_attrs(RK_FMT_ML_ITEM, &n);
    CHECK_EQ_INT(n, 4);
    CHECK_STR(need[1].name, "genres");
    CHECK(rk_io_format_attrs(RK_FMT_CRITEO, &n) == NULL && n == 0);
    const char *const *types = rk_io_format_event_types(RK_FMT_MIND_BEHAVIORS, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_STR(types[0], "impression");
}

TEST(time_and_number_helpers)
{
    static const int64_t ts[] = {0, 1, 999, 1573813325123LL, -1, -1255824000000LL,
                                 253402300799999LL, -62135596800000LL /* year 1 */};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        char s[32];
        rk_format_time_ms(ts[i], s);
        int64_t back = 0;
        rk_err err = {0};
        CHECK_OK(rk__io_time("t", s, strlen(s), &back, &err));
        if (back != ts[i]) fprintf(stderr, "  %lld -> %s -> %lld\n", (long long)ts[i], s, (long long)back);
        CHECK(back == ts[i]);
    }
    char s[32];
    rk_format_time_ms(-1, s);
    CHECK_STR(s, "1969-12-31T23:59:59.999Z");
    rk_format_time_ms(1573813325123LL, s);
    CHECK_STR(s, "2019-11-15T10:22:05.123Z");
    int64_t v;
    rk_err err = {0};
    CHECK(rk__io_time("t", "2019-02-29T00:00:00.000Z", 24, &v, &err) == RK_EPARSE);

    static const double d[] = {0.1, 1.0 / 3, 1995, -2.5e-300, 1e20, 123456789012345678.0,
                               -0.0, 5e-324, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        rk_buf b;
        rk_buf_init(&b, 0);
        CHECK_OK(rk__io_put_double(&b, d[i]));
        double back = strtod(b.data, NULL);
        int same = back == d[i] && signbit(back) == signbit(d[i]);
        if (!same) fprintf(stderr, "  %.17g -> %s\n", d[i], b.data);
        rk_buf_free(&b);
        CHECK(same);
    }
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk__io_put_double(&b, 1995));
    CHECK_STR(b.data, "1995");
    rk_buf_reset(&b);
    CHECK_OK(rk__io_put_float(&b, 0.1f));
    CHECK_STR(b.data, "0.1");
    rk_buf_free(&b);
}

/* Every allocation of a parse failing in turn must give a clean error and
 * leak nothing (the harness checks the byte count). */
TEST(parser_allocation_failures)
{
    static const struct {
        rk_import_format f;
        rk_import_kind k;
        const char *in;
    } cs[] = {
        {RK_FMT_MIND_BEHAVIORS, RK_KIND_EVENTS, "9\tU1\t11/15/2019 10:22:05 AM\tN1 N2\tN7-0 N8-1\n"},
        {RK_FMT_CSV, RK_KIND_ITEMS, "id,tags,emb\ni1,a|b,1 2 3\n"},
        {RK_FMT_JSONL, RK_KIND_EVENTS, "{\"type\":\"click\",\"user\":\"u\",\"item\":\"i\",\"ts\":1,\"context\":{\"a\":1}}\n"},
        {RK_FMT_ML_ITEM, RK_KIND_ITEMS, "6|Caf\xe9 (1930)|||u|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"},
    };
    rk_schema *sc = test_schema();
    CHECK(sc);
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char *want = run(cs[i].f, cs[i].k, sc, cs[i].in, strlen(cs[i].in));
        for (uint64_t n = 1; n < 200; n++) {
            rk_mem_fail_at(n, 0);
            char *got = run(cs[i].f, cs[i].k, sc, cs[i].in, strlen(cs[i].in));
            uint64_t tried = rk_mem_attempts();
            rk_mem_fail_at(0, 0);
            rk_free(got);
            if (tried < n) break; /* the whole run needed fewer allocations */
        }
        rk_free(want);
    }
    rk_schema_destroy(sc);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, csv_split_table, csv_too_many_fields,
                 csv_open_quote, reader_lines_crlf_bom, reader_line_too_long,
                 reader_missing_file, movielens_ratings_table,
                 movielens_items_users_table, criteo_table, svmlight_table,
                 mind_behaviors_table, mind_news_table, csv_events_table,
                 csv_entities_table, jsonl_events_table,
                 jsonl_entities_rows_table, parser_create_errors, csv_rows_table,
                 record_with_nul_byte, overlong_line_is_a_row_error,
                 format_names_and_detection, time_and_number_helpers,
                 parser_allocation_failures);
}
