/*
 * io_import_test.c — the import driver and export against a real store in
 * a temporary directory: counts, rejected rows and their file:line
 * messages, strict mode, re-import de-duplication, schema checks, batch
 * boundaries, the export -> import -> export round trip, and (when
 * ../shared/data exists) the real public datasets with their known counts.
 * Every fixture here is synthetic and written by the test.
 */
#include "rk_io.h"
#include "rk_store.h"
#include "test.h"

static rk_store *open_store(const char *dir, const rk_schema *sc, rk_err *err)
{
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 512u << 20;
    rk_store *s = NULL;
    if (rk_store_open(&s, &o, sc, err) != 0) return NULL;
    return s;
}

static const char *write_file(const char *dir, const char *name,
                              const char *content, size_t n)
{
    static char path[8][700];
    static int k;
    char *p = path[k++ & 7];
    snprintf(p, 700, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    fwrite(content, 1, n, f);
    fclose(f);
    return p;
}
#define WRITE(dir, name, lit) write_file(dir, name, lit, sizeof(lit) - 1)

/* Rejected-row messages, one per line. */
typedef struct msgs {
    char text[4096];
    int n;
} msgs;

static void on_error(void *arg, const char *msg)
{
    msgs *m = arg;
    size_t l = strlen(m->text);
    snprintf(m->text + l, sizeof m->text - l, "%s\n", msg);
    m->n++;
}

static rk_store_stats stats_of(rk_store *s)
{
    rk_store_stats st;
    memset(&st, 0, sizeof st);
    rk_reader *r;
    rk_err err = {0};
    if (rk_store_reader(s, &r, &err) == 0) {
        rk_reader_stats(r, &st);
        rk_reader_close(r);
    }
    return st;
}

TEST(import_ml_data_counts_and_reimport)
{
    const char *dir = rk_test_tmpdir("io-mldata");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    const char *path = WRITE(dir, "u.data",
                             "1\t10\t5\t880000101\n"
                             "1\t11\t3\t880000102\n"
                             "2\t10\tx\t880000103\n"
                             "\n"
                             "3\t12\t4\n"
                             "2\t12\t1\t880000104\n");
    msgs m = {{0}, 0};
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.on_error = on_error;
    o.on_error_arg = &m;
    rk_import_stats st;
    CHECK_OK(rk_import_file(s, path, &o, &st, &err));
    CHECK_EQ_INT(st.format, RK_FMT_ML_DATA);
    CHECK_EQ_INT(st.records, 5);
    CHECK_EQ_INT(st.imported, 3);
    CHECK_EQ_INT(st.rejected, 2);
    CHECK_EQ_INT(st.events, 3);
    CHECK_EQ_INT(st.duplicates, 0);
    char want[1400];
    snprintf(want, sizeof want,
             "%s:3: column 'rating': bad number 'x'\n"
             "%s:5: expected 4 tab-separated fields, got 3\n",
             path, path);
    CHECK_STR(m.text, want);
    rk_store_stats ss = stats_of(s);
    CHECK_EQ_INT(ss.events, 3);
    CHECK_EQ_INT(ss.ids[RK_ENTITY_USER], 2);
    CHECK_EQ_INT(ss.ids[RK_ENTITY_ITEM], 3);

    /* Again: every event is a duplicate, nothing is added. */
    m.text[0] = '\0';
    CHECK_OK(rk_import_file(s, path, &o, &st, &err));
    CHECK_EQ_INT(st.events, 0);
    CHECK_EQ_INT(st.duplicates, 3);
    CHECK_EQ_INT(stats_of(s).events, 3);

    /* max_errors_shown bounds the messages, not the count. */
    m.text[0] = '\0';
    m.n = 0;
    o.max_errors_shown = 1;
    CHECK_OK(rk_import_file(s, path, &o, &st, &err));
    CHECK_EQ_INT(m.n, 1);
    CHECK_EQ_INT(st.rejected, 2);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(strict_mode_writes_nothing)
{
    const char *dir = rk_test_tmpdir("io-strict");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    const char *bad = WRITE(dir, "bad.csv",
                            "type,user,item,ts\n"
                            "click,u1,i1,1\nclick,u1,i2,2\nclick,u1,i3,3\n"
                            "click,u1,i4,not-a-time\nclick,u1,i5,5\n");
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.strict = 1;
    o.batch_rows = 2; /* a flush would happen before the bad row */
    rk_import_stats st;
    CHECK(rk_import_file(s, bad, &o, &st, &err) == RK_EPARSE);
    char want[800];
    snprintf(want, sizeof want, "%s:5: column 'ts': bad timestamp 'not-a-time'",
             bad);
    CHECK_STR(err.msg, want);
    CHECK_EQ_INT(stats_of(s).events, 0);
    CHECK_EQ_INT(stats_of(s).ids[RK_ENTITY_USER], 0);

    const char *good = WRITE(dir, "good.csv",
                             "type,user,item,ts\nclick,u1,i1,1\nclick,u1,i2,2\n"
                             "click,u1,i3,3\n");
    CHECK_OK(rk_import_file(s, good, &o, &st, &err));
    CHECK_EQ_INT(st.records, 3);
    CHECK_EQ_INT(st.imported, 3);
    CHECK_EQ_INT(st.events, 3);
    CHECK_EQ_INT(stats_of(s).events, 3);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(missing_empty_and_undetectable_files)
{
    const char *dir = rk_test_tmpdir("io-missing");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    rk_import_stats st;
    char path[700];
    snprintf(path, sizeof path, "%s/nope.csv", dir);
    CHECK(rk_import_file(s, path, NULL, &st, &err) == RK_EIO);
    CHECK_CONTAINS(err.msg, "nope.csv: No such file or directory");
    const char *empty = WRITE(dir, "empty.jsonl", "");
    CHECK_OK(rk_import_file(s, empty, NULL, &st, &err));
    CHECK_EQ_INT(st.records, 0);
    const char *odd = WRITE(dir, "notes.md", "hello\n");
    CHECK(rk_import_file(s, odd, NULL, &st, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "use --format");
    /* A header that cannot work stops the import at once. */
    const char *hdr = WRITE(dir, "h.csv", "type,user,item,when\nclick,u,i,1\n");
    CHECK(rk_import_file(s, hdr, NULL, &st, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "h.csv:1: header: unknown column 'when'");
    rk_store_close(s);
    rk_test_rmdir(dir);
}

typedef struct evs {
    char line[8][200];
    int n;
    rk_reader *r;
} evs;

static int ev_cb(void *arg, const rk_event *e)
{
    evs *x = arg;
    if (x->n >= 8) return 0;
    const char *u, *i;
    size_t ul, il;
    rk_reader_external(x->r, RK_ENTITY_USER, e->user, &u, &ul);
    rk_reader_external(x->r, RK_ENTITY_ITEM, e->item, &i, &il);
    snprintf(x->line[x->n++], 200, "%.*s %.*s %lld p=%d r=%.*s c=%.*s",
             (int)ul, u, (int)il, i, (long long)e->ts_ms, e->position,
             (int)e->request_id_len, e->request_id ? e->request_id : "",
             (int)e->context_len, e->context ? e->context : "");
    return 0;
}

TEST(csv_bom_crlf_quoted_events)
{
    const char *dir = rk_test_tmpdir("io-crlf");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    const char *path = WRITE(dir, "ev.csv",
                             "\xEF\xBB\xBFtype,user,item,ts,position,request_id,context\r\n"
                             "impression,u1,i1,2019-11-15T10:22:05Z,0,r1,\"{\"\"dev\"\":\r\n"
                             "\"\"tv\"\"}\"\r\n"
                             "click,u1,i1,1573813326,,,\r\n");
    rk_import_stats st;
    CHECK_OK(rk_import_file(s, path, NULL, &st, &err));
    CHECK_EQ_INT(st.rejected, 0);
    CHECK_EQ_INT(st.events, 2);
    evs x = {{{0}}, 0, NULL};
    CHECK_OK(rk_store_reader(s, &x.r, &err));
    rk_reader_scan_events(x.r, 0, ev_cb, &x);
    rk_reader_close(x.r);
    CHECK_EQ_INT(x.n, 2);
    CHECK_STR(x.line[0], "u1 i1 1573813325000 p=0 r=r1 c={\"dev\":\"tv\"}");
    CHECK_STR(x.line[1], "u1 i1 1573813326000 p=-1 r= c=");
    rk_store_close(s);
    rk_test_rmdir(dir);
}

/* Looks an entity up and renders one attribute. */
static int attr_text(rk_store *s, rk_entity e, const char *id, const char *name,
                     char *out, size_t cap)
{
    rk_reader *r;
    rk_err err = {0};
    out[0] = '\0';
    if (rk_store_reader(s, &r, &err)) return -1;
    uint32_t dense, idx;
    rk_entity_view v;
    int rc = rk_reader_lookup(r, e, id, strlen(id), &dense);
    rc = rc ? rc : rk_reader_entity(r, e, dense, &v);
    rc = rc ? rc : rk_schema_find_attr(rk_store_schema(s), e, name, strlen(name), &idx);
    if (!rc) {
        rc = RK_ENOTFOUND;
        for (uint32_t i = 0; i < v.nattrs; i++) {
            const rk_attr_val *a = &v.attrs[i];
            if (a->attr != idx) continue;
            rc = 0;
            switch (a->type) {
            case RK_ATTR_NUMERIC: snprintf(out, cap, "%g", a->num); break;
            case RK_ATTR_TIMESTAMP: snprintf(out, cap, "%lld", (long long)a->ts_ms); break;
            case RK_ATTR_CATEGORICAL_LIST:
                for (uint32_t k = 0; k < a->n; k++) {
                    size_t l = strlen(out);
                    snprintf(out + l, cap - l, "%s%.*s", k ? "|" : "",
                             (int)a->list_lens[k], a->list[k]);
                }
                break;
            default: snprintf(out, cap, "%.*s", (int)a->len, a->str); break;
            }
        }
    }
    rk_reader_close(r);
    return rc;
}

TEST(movielens_items_and_users)
{
    const char *dir = rk_test_tmpdir("io-mlitem");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    const char *items = WRITE(dir, "u.item",
                              "1|Caf\xe9 Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                              "2|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                              "3|Bad|||\n");
    const char *users = WRITE(dir, "u.user", "1|31|M|engineer|12345\n2|47|F|other|X9Z9Z\n");
    rk_import_stats st;
    msgs m = {{0}, 0};
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.on_error = on_error;
    o.on_error_arg = &m;
    CHECK_OK(rk_import_file(s, items, &o, &st, &err));
    CHECK_EQ_INT(st.format, RK_FMT_ML_ITEM);
    CHECK_EQ_INT(st.entities, 2);
    CHECK_EQ_INT(st.rejected, 1);
    CHECK_CONTAINS(m.text, "u.item:3: expected 24 '|'-separated fields, got 5");
    CHECK_OK(rk_import_file(s, users, &o, &st, &err));
    CHECK_EQ_INT(st.entities, 2);
    char v[256];
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "1", "title", v, sizeof v));
    CHECK_STR(v, "Caf\xc3\xa9 Story (1995)");
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "1", "genres", v, sizeof v));
    CHECK_STR(v, "Animation|Children's|Comedy");
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "1", "year", v, sizeof v));
    CHECK_STR(v, "1995");
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "1", "release", v, sizeof v));
    CHECK_STR(v, "788918400000");
    CHECK(attr_text(s, RK_ENTITY_ITEM, "2", "release", v, sizeof v) == RK_ENOTFOUND);
    CHECK_OK(attr_text(s, RK_ENTITY_USER, "2", "zip", v, sizeof v));
    CHECK_STR(v, "X9Z9Z");
    CHECK_OK(attr_text(s, RK_ENTITY_USER, "1", "age", v, sizeof v));
    CHECK_STR(v, "31");
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(schema_checks_fail_fast)
{
    const char *dir = rk_test_tmpdir("io-schema");
    rk_err err = {0};
    rk_schema *sc = NULL;
    CHECK_OK(rk_schema_create(&sc));
    CHECK_OK(rk_schema_add_event_type(sc, "click", RK_ROLE_POSITIVE, 1, &err));
    CHECK_OK(rk_schema_add_attr(sc, RK_ENTITY_ITEM, "year", RK_ATTR_CATEGORICAL, 0, &err));
    rk_store *s = open_store(dir, sc, &err);
    rk_schema_destroy(sc);
    CHECK(s);
    const char *data = WRITE(dir, "u.data", "1\t2\t3\t4\n");
    rk_import_stats st;
    CHECK(rk_import_file(s, data, NULL, &st, &err) == RK_ECONFIG);
    CHECK_CONTAINS(err.msg, "format ml-data writes events of type 'rating', which the "
                            "schema does not declare");
    const char *item = WRITE(dir, "u.item", "1|T|||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n");
    CHECK(rk_import_file(s, item, NULL, &st, &err) == RK_ECONFIG);
    CHECK_CONTAINS(err.msg, "format ml-item needs item attribute 'year' (numeric)");
    CHECK_EQ_INT(stats_of(s).records[RK_ENTITY_ITEM], 0);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(mind_import_and_history_dedup)
{
    const char *dir = rk_test_tmpdir("io-mind");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    const char *beh = WRITE(dir, "behaviors.tsv",
                            "1\tU1\t11/11/2019 9:00:00 AM\tN1 N2\tN5-0 N6-1 N7-0\n"
                            "2\tU1\t11/12/2019 9:00:00 AM\tN1 N2 N6\tN8-1\n"
                            "3\tU2\t11/12/2019 9:00:00 PM\t\tN5-1 N5-0\n"
                            "4\tU2\tnot a time\t\tN5-1\n");
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.batch_rows = 1;
    rk_import_stats st;
    CHECK_OK(rk_import_file(s, beh, &o, &st, &err));
    CHECK_EQ_INT(st.format, RK_FMT_MIND_BEHAVIORS);
    CHECK_EQ_INT(st.records, 4);
    CHECK_EQ_INT(st.rejected, 1);
    /* impressions 3+1+1, clicks 1+1+1, history 2+1 new (N1 N2 repeat). */
    CHECK_EQ_INT(st.events, 6 + 3 + 2);
    /* U1's repeated N1, N2 and U2's repeated N5 impression id. */
    CHECK_EQ_INT(st.duplicates, 2 + 1);
    const char *news = WRITE(dir, "news.tsv",
                             "N1\tsports\tgolf\tTitle one\tAbs\thttps://x\t"
                             "[{\"WikidataId\": \"Q1\"}]\t[]\n"
                             "N2\tnews\tus\tTitle two\t\thttps://y\t\t\n");
    CHECK_OK(rk_import_file(s, news, &o, &st, &err));
    CHECK_EQ_INT(st.entities, 2);
    char v[64];
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "N1", "entities", v, sizeof v));
    CHECK_STR(v, "Q1");
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "N2", "subcategory", v, sizeof v));
    CHECK_STR(v, "us");
    rk_store_close(s);
    rk_test_rmdir(dir);
}

typedef struct dsl {
    char text[256];
} dsl;

static int ds_cb(void *arg, const char *name, uint64_t rows)
{
    dsl *d = arg;
    size_t l = strlen(d->text);
    snprintf(d->text + l, sizeof d->text - l, "%s=%llu ", name,
             (unsigned long long)rows);
    return 0;
}

TEST(rows_criteo_and_svmlight)
{
    const char *dir = rk_test_tmpdir("io-rows");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    const char *cr = WRITE(dir, "day.tsv",
                           "1\t1\t\t\t\t\t\t\t\t\t\t\t\t\ta\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\tb\n"
                           "0\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n"
                           "1\t2\t3\n");
    rk_import_stats st;
    CHECK_OK(rk_import_file(s, cr, NULL, &st, &err));
    CHECK_EQ_INT(st.format, RK_FMT_CRITEO);
    CHECK_EQ_INT(st.rows, 2);
    CHECK_EQ_INT(st.rejected, 1);
    const char *svm = WRITE(dir, "vali.txt",
                            "2 qid:1 1:0.5 2:1 #doc a\n0 qid:1 1:0 2:0\n1 qid:2 1:1 2:0.5\n");
    CHECK_OK(rk_import_file(s, svm, NULL, &st, &err));
    CHECK_EQ_INT(st.format, RK_FMT_SVMLIGHT);
    CHECK_EQ_INT(st.rows, 3);
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.dataset = "letor";
    CHECK_OK(rk_import_file(s, svm, &o, &st, &err));
    dsl d = {{0}};
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    rk_reader_scan_datasets(r, ds_cb, &d);
    rk_reader_close(r);
    CHECK_CONTAINS(d.text, "criteo=2 ");
    CHECK_CONTAINS(d.text, "vali=3 ");
    CHECK_CONTAINS(d.text, "letor=3 ");
    rk_store_close(s);
    rk_test_rmdir(dir);
}

/* Reads a whole file into a rk_malloc'd string. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    rk_buf b;
    rk_buf_init(&b, 0);
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) rk_buf_append(&b, tmp, k);
    fclose(f);
    *n = b.len;
    if (!b.data) rk_buf_putc(&b, 0);
    return b.data;
}

static int export_to(rk_store *s, const char *what, const char *path,
                     rk_err *err)
{
    FILE *f = fopen(path, "wb");
    if (!f) return RK_EIO;
    int rc = rk_export_jsonl(s, what, NULL, f, err);
    fclose(f);
    return rc;
}

static rk_schema *roundtrip_schema(void)
{
    rk_schema *sc = NULL;
    rk_err err = {0};
    if (rk_schema_from_conf(&sc, NULL, &err)) return NULL;
    int rc = rk_schema_add_attr(sc, RK_ENTITY_ITEM, "year", RK_ATTR_NUMERIC, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_ITEM, "genre", RK_ATTR_CATEGORICAL, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_ITEM, "tags", RK_ATTR_CATEGORICAL_LIST, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_ITEM, "title", RK_ATTR_TEXT, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_ITEM, "release", RK_ATTR_TIMESTAMP, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_ITEM, "emb", RK_ATTR_VECTOR, 3, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_USER, "age", RK_ATTR_NUMERIC, 0, &err);
    rc = rc ? rc : rk_schema_add_attr(sc, RK_ENTITY_USER, "country", RK_ATTR_CATEGORICAL, 0, &err);
    if (rc) {
        rk_schema_destroy(sc);
        return NULL;
    }
    return sc;
}

TEST(export_import_roundtrip_is_lossless)
{
    const char *dir = rk_test_tmpdir("io-roundtrip");
    char da[700], db[700];
    snprintf(da, sizeof da, "%s/a", dir);
    snprintf(db, sizeof db, "%s/b", dir);
    rk_err err = {0};
    rk_schema *sc = roundtrip_schema();
    CHECK(sc);
    rk_store *a = open_store(da, sc, &err);
    CHECK(a);
    const char *items = WRITE(dir, "items.jsonl",
                              "{\"id\":\"i1\",\"attributes\":{\"year\":1995,\"genre\":\"drama\","
                              "\"tags\":[\"x\",\"y \\\"q\\\"\"],\"title\":\"Caf\xc3\xa9\\n\\ttab\","
                              "\"release\":\"1930-03-15T12:00:00.250Z\",\"emb\":[0.1,-2.5,3e-5]}}\n"
                              "{\"id\":\"i2\",\"hidden\":true,\"year\":0.30000000000000004}\n"
                              "{\"id\":\"i3\",\"genre\":\"gone\"}\n"
                              "{\"id\":\"i4\"}\n");
    const char *gone = WRITE(dir, "gone.jsonl", "{\"id\":\"i3\",\"deleted\":true}\n"
                                                "{\"id\":\"i9\",\"deleted\":true}\n");
    const char *users = WRITE(dir, "users.csv", "id,age,country\nu1,31,fr\nu2,,\n");
    const char *events = WRITE(dir, "events.csv",
                               "type,user,item,ts,value,position,request_id,context,id\n"
                               "impression,u1,i1,2019-11-15T10:22:05.123Z,,0,r1,\"{\"\"k\"\":[1,2.5,\"\"\\u00e9\"\"]}\",e1\n"
                               "click,u1,i1,1573813326,,0,r1,,e2\n"
                               "watch,u2,i2,1573813327,12.75,,,,\n"
                               "rating,u3,i5,1,4.5,,,,\n");
    const char *rows = WRITE(dir, "rows.jsonl",
                             "{\"dataset\":\"d1\",\"label\":1,\"group\":\"q\",\"num\":{\"0\":1.5,\"9\":-0.1},"
                             "\"cat\":{\"2\":\"ab\"}}\n{\"dataset\":\"d2\",\"label\":0}\n");
    rk_import_opts o;
    rk_import_opts_default(&o);
    rk_import_stats st;
    msgs m = {{0}, 0};
    o.on_error = on_error;
    o.on_error_arg = &m;
    o.kind = RK_KIND_ITEMS;
    CHECK_OK(rk_import_file(a, items, &o, &st, &err));
    if (st.rejected) fprintf(stderr, "%s", m.text);
    CHECK_EQ_INT(st.rejected, 0);
    CHECK_OK(rk_import_file(a, gone, &o, &st, &err));
    o.kind = RK_KIND_USERS;
    CHECK_OK(rk_import_file(a, users, &o, &st, &err));
    CHECK_EQ_INT(st.rejected, 0);
    o.kind = RK_KIND_EVENTS;
    CHECK_OK(rk_import_file(a, events, &o, &st, &err));
    CHECK_EQ_INT(st.rejected, 0);
    CHECK_EQ_INT(st.events, 4);
    o.kind = RK_KIND_ROWS;
    CHECK_OK(rk_import_file(a, rows, &o, &st, &err));
    CHECK_EQ_INT(st.rows, 2);

    static const char *const what[] = {"items", "users", "events", "rows"};
    char p1[4][800], p2[4][800];
    for (int i = 0; i < 4; i++) {
        snprintf(p1[i], sizeof p1[i], "%s/1-%s.jsonl", dir, what[i]);
        snprintf(p2[i], sizeof p2[i], "%s/2-%s.jsonl", dir, what[i]);
        CHECK_OK(export_to(a, what[i], p1[i], &err));
    }
    rk_store_close(a);

    rk_store *b = open_store(db, sc, &err);
    rk_schema_destroy(sc);
    CHECK(b);
    for (int i = 0; i < 4; i++) {
        o.kind = (rk_import_kind)(i == 0 ? RK_KIND_ITEMS : i == 1 ? RK_KIND_USERS
                                  : i == 2 ? RK_KIND_EVENTS : RK_KIND_ROWS);
        o.format = RK_FMT_JSONL;
        CHECK_OK(rk_import_file(b, p1[i], &o, &st, &err));
        CHECK_EQ_INT(st.rejected, 0);
        CHECK_OK(export_to(b, what[i], p2[i], &err));
    }
    rk_store_close(b);
    for (int i = 0; i < 4; i++) {
        size_t n1, n2;
        char *t1 = slurp(p1[i], &n1), *t2 = slurp(p2[i], &n2);
        int same = t1 && t2 && n1 == n2 && memcmp(t1, t2, n1) == 0;
        if (!same) fprintf(stderr, "  %s differs:\n%s---\n%s", what[i], t1, t2);
        if (i == 0) {
            /* Spot checks of the exported form. */
            same = same && strstr(t1, "\"release\":\"1930-03-15T12:00:00.250Z\"") &&
                   strstr(t1, "{\"id\":\"i2\",\"hidden\":true,\"attributes\":"
                              "{\"year\":0.30000000000000004}}") &&
                   strstr(t1, "{\"id\":\"i3\",\"deleted\":true}") &&
                   strstr(t1, "{\"id\":\"i9\",\"deleted\":true}") &&
                   strstr(t1, "\"emb\":[0.1,-2.5,3e-05]");
        }
        if (i == 2)
            same = same && strstr(t1, "{\"type\":\"impression\",\"user\":\"u1\",\"item\":\"i1\","
                                      "\"ts\":\"2019-11-15T10:22:05.123Z\",\"position\":0,"
                                      "\"request_id\":\"r1\",\"context\":{\"k\":[1,2.5,\"\xc3\xa9\"]},"
                                      "\"id\":\"e1\"}\n");
        if (!same && t1) fprintf(stderr, "  %s export:\n%s", what[i], t1);
        rk_free(t1);
        rk_free(t2);
        CHECK(same);
    }
    rk_test_rmdir(dir);
}

TEST(export_errors)
{
    const char *dir = rk_test_tmpdir("io-experr");
    rk_err err = {0};
    rk_store *s = open_store(dir, NULL, &err);
    CHECK(s);
    FILE *f = tmpfile();
    CHECK(f);
    CHECK(rk_export_jsonl(s, "things", NULL, f, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "unknown 'things'");
    CHECK(rk_export_jsonl(s, "rows", "nope", f, &err) == RK_ENOTFOUND);
    CHECK_OK(rk_export_jsonl(s, "events", NULL, f, &err));
    CHECK_EQ_INT(ftell(f), 0);
    fclose(f);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

/* ---- the real datasets ------------------------------------------------- */

typedef struct real_case {
    const char *file;
    rk_import_format fmt;
    uint64_t records, events, entities, rows;
} real_case;

static int import_real(rk_store *s, const char *base, const real_case *c,
                       double *rate)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", base, c->file);
    rk_import_stats st;
    rk_err err = {0};
    msgs m = {{0}, 0};
    rk_import_opts o;
    rk_import_opts_default(&o);
    o.on_error = on_error;
    o.on_error_arg = &m;
    int rc = rk_import_file(s, path, &o, &st, &err);
    if (rc) {
        fprintf(stderr, "  %s: %s\n", c->file, err.msg);
        return 1;
    }
    int bad = st.format != c->fmt || st.records != c->records ||
              st.rejected != 0 || st.events != c->events ||
              st.entities != c->entities || st.rows != c->rows;
    printf("  %s: %s %llu records, %llu events, %llu entities, %llu rows, "
           "%llu duplicates in %.3f s (%.0f records/s)\n",
           c->file, rk_import_format_name(st.format),
           (unsigned long long)st.records, (unsigned long long)st.events,
           (unsigned long long)st.entities, (unsigned long long)st.rows,
           (unsigned long long)st.duplicates, st.seconds, st.records_per_sec);
    if (bad) fprintf(stderr, "  %s: unexpected counts (rejected %llu)\n%s", c->file,
                     (unsigned long long)st.rejected, m.text);
    if (rate) *rate = st.records_per_sec;
    return bad;
}

TEST(real_datasets)
{
    const char *data = rk_test_shared_data();
    if (!data) {
        printf("skip: ../shared/data not found\n");
        return;
    }
    static const real_case ml100k[] = {
        {"movielens-100k/u.data", RK_FMT_ML_DATA, 100000, 100000, 0, 0},
        {"movielens-100k/u.item", RK_FMT_ML_ITEM, 1682, 0, 1682, 0},
        {"movielens-100k/u.user", RK_FMT_ML_USER, 943, 0, 943, 0},
    };
    static const real_case mlsmall[] = {
        {"movielens-latest-small-2016/ratings.csv", RK_FMT_ML_RATINGS, 100004, 100004, 0, 0},
        {"movielens-latest-small-2016/movies.csv", RK_FMT_ML_MOVIES, 9125, 0, 9125, 0},
    };
    static const real_case rows[] = {
        {"criteo-kaggle-sample-8k/train.tsv", RK_FMT_CRITEO, 7200, 0, 0, 7200},
        {"letor4-mq2008/Fold1/vali.txt", RK_FMT_SVMLIGHT, 2707, 0, 0, 2707},
    };
    /* MIND: 189,359 impressions + 7,542 clicks + the distinct (user,
     * history item) pairs, counted below. */
    static const real_case mind[] = {
        {"mind-small-sample/news.tsv", RK_FMT_MIND_NEWS, 2000, 0, 2000, 0},
    };
    const char *dir = rk_test_tmpdir("io-real");
    char p[700];
    rk_err err = {0};
    int bad = 0;
    double rate;

    snprintf(p, sizeof p, "%s/ml100k", dir);
    rk_store *s = open_store(p, NULL, &err);
    CHECK(s);
    for (size_t i = 0; i < 3; i++) bad |= import_real(s, data, &ml100k[i], &rate);
    rk_store_stats ss = stats_of(s);
    CHECK_EQ_INT(ss.events, 100000);
    CHECK_EQ_INT(ss.ids[RK_ENTITY_USER], 943);
    CHECK_EQ_INT(ss.ids[RK_ENTITY_ITEM], 1682);
    CHECK_EQ_INT(ss.records[RK_ENTITY_ITEM], 1682);
    char v[256];
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "1", "title", v, sizeof v));
    CHECK_STR(v, "Toy Story (1995)");
    CHECK_OK(attr_text(s, RK_ENTITY_ITEM, "1", "genres", v, sizeof v));
    CHECK_STR(v, "Animation|Children's|Comedy");
    /* Re-importing adds nothing. */
    real_case again = ml100k[0];
    again.events = 0;
    bad |= import_real(s, data, &again, NULL);
    CHECK_EQ_INT(stats_of(s).events, 100000);
    rk_store_close(s);

    snprintf(p, sizeof p, "%s/mlsmall", dir);
    s = open_store(p, NULL, &err);
    CHECK(s);
    for (size_t i = 0; i < 2; i++) bad |= import_real(s, data, &mlsmall[i], NULL);
    CHECK_EQ_INT(stats_of(s).ids[RK_ENTITY_USER], 671);
    rk_store_close(s);

    snprintf(p, sizeof p, "%s/rows", dir);
    s = open_store(p, NULL, &err);
    CHECK(s);
    for (size_t i = 0; i < 2; i++) bad |= import_real(s, data, &rows[i], NULL);
    rk_store_close(s);

    snprintf(p, sizeof p, "%s/mind", dir);
    s = open_store(p, NULL, &err);
    CHECK(s);
    bad |= import_real(s, data, &mind[0], NULL);
    char path[1024];
    snprintf(path, sizeof path, "%s/mind-small-sample/behaviors.tsv", data);
    rk_import_stats st;
    CHECK_OK(rk_import_file(s, path, NULL, &st, &err));
    printf("  behaviors.tsv: %llu records, %llu events, %llu duplicates in %.3f s\n",
           (unsigned long long)st.records, (unsigned long long)st.events,
           (unsigned long long)st.duplicates, st.seconds);
    CHECK_EQ_INT(st.records, 5000);
    CHECK_EQ_INT(st.rejected, 0);
    /* Every candidate and click is new; history adds at most 159,802. */
    CHECK(st.events >= 189359 + 7542);
    CHECK(st.events + st.duplicates == 189359 + 7542 + 159802);
    rk_store_close(s);
    rk_test_rmdir(dir);
    CHECK(bad == 0);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, import_ml_data_counts_and_reimport,
                 strict_mode_writes_nothing, missing_empty_and_undetectable_files,
                 csv_bom_crlf_quoted_events, movielens_items_and_users,
                 schema_checks_fail_fast, mind_import_and_history_dedup,
                 rows_criteo_and_svmlight, export_import_roundtrip_is_lossless,
                 export_errors, real_datasets);
}
