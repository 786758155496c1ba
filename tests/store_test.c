/*
 * store_test.c — unit tests of the store: schema, batches and validation,
 * events and de-duplication, entities and flags, datasets, concurrency,
 * durability policies, locking, full stores and allocation failure.
 */
#include <pthread.h>

#include "rk_store.h"
#include "store/store_int.h"
#include "test.h"

static rk_store *open_store(const char *dir, rk_fsync_policy p, rk_err *err)
{
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.fsync = p;
    o.map_size = 256 << 20;
    rk_store *s = NULL;
    if (rk_store_open(&s, &o, NULL, err) != 0) return NULL;
    return s;
}

static rk_event_in ev(const char *type, const char *user, const char *item,
                      int64_t ts)
{
    rk_event_in e = {0};
    e.type = type;
    e.user = user;
    e.item = item;
    e.ts_ms = ts;
    e.position = -1;
    return e;
}

typedef struct collect {
    rk_event evs[64];
    char rid[64][32];
    size_t n;
} collect;

static int collect_cb(void *arg, const rk_event *e)
{
    collect *c = arg;
    if (c->n < 64) {
        c->evs[c->n] = *e;
        if (e->request_id)
            snprintf(c->rid[c->n], 32, "%.*s", (int)e->request_id_len,
                     e->request_id);
    }
    c->n++;
    return 0;
}

TEST(open_fresh_and_reopen)
{
    const char *dir = rk_test_tmpdir("store-open");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    rk_store_stats st;
    CHECK_OK(rk_reader_stats(r, &st));
    CHECK_EQ_INT(st.events, 0);
    CHECK_EQ_INT(st.ids[RK_ENTITY_USER], 0);
    rk_reader_close(r);
    /* Default event types are declared. */
    uint32_t idx;
    CHECK_OK(rk_schema_find_event_type(rk_store_schema(s), "click", 5, &idx));
    rk_store_close(s);
    s = open_store(dir, RK_FSYNC_ALWAYS, &err);
    CHECK(s);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(events_roundtrip)
{
    const char *dir = rk_test_tmpdir("store-events");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_ALWAYS, &err);
    CHECK(s);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    rk_event_in e1 = ev("click", "u1", "i1", 1000);
    e1.request_id = "req-1";
    e1.position = 3;
    e1.context = "{\"device\":\"tv\"}";
    e1.context_len = strlen(e1.context);
    rk_event_in e2 = ev("watch", "u2", "i1", 2000);
    e2.value = 42.5;
    e2.has_value = 1;
    rk_event_in e3 = ev("impression", "u1", "i2", 3000);
    CHECK_OK(rk_batch_event(b, &e1, &err));
    CHECK_OK(rk_batch_event(b, &e2, &err));
    CHECK_OK(rk_batch_event(b, &e3, &err));
    CHECK_EQ_INT(rk_batch_count(b), 3);
    rk_write_result res;
    CHECK_OK(rk_store_write(s, b, &res, &err));
    CHECK_EQ_INT(res.events, 3);
    CHECK_EQ_INT(res.first_seq, 1);
    rk_batch_destroy(b);

    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    collect c = {0};
    CHECK_OK(rk_reader_scan_events(r, 0, collect_cb, &c));
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_INT(c.evs[0].seq, 1);
    CHECK_EQ_INT(c.evs[0].user, 0);
    CHECK_EQ_INT(c.evs[0].item, 0);
    CHECK_EQ_INT(c.evs[0].position, 3);
    CHECK_STR(c.rid[0], "req-1");
    CHECK_EQ_INT(c.evs[0].context_len, strlen("{\"device\":\"tv\"}"));
    CHECK_EQ_INT(c.evs[1].user, 1);
    CHECK(c.evs[1].has_value && c.evs[1].value == 42.5);
    CHECK_EQ_INT(c.evs[1].position, -1);
    CHECK_EQ_INT(c.evs[2].item, 1);
    CHECK_EQ_INT(c.evs[2].ts_ms, 3000);
    uint32_t id;
    CHECK_OK(rk_reader_lookup(r, RK_ENTITY_ITEM, "i2", 2, &id));
    CHECK_EQ_INT(id, 1);
    CHECK_EQ_INT(rk_reader_lookup(r, RK_ENTITY_ITEM, "nope", 4, &id),
                 RK_ENOTFOUND);
    const char *ext;
    size_t len;
    CHECK_OK(rk_reader_external(r, RK_ENTITY_USER, 1, &ext, &len));
    CHECK(len == 2 && memcmp(ext, "u2", 2) == 0);
    /* Scanning from a later sequence skips the earlier ones. */
    collect c2 = {0};
    CHECK_OK(rk_reader_scan_events(r, 3, collect_cb, &c2));
    CHECK_EQ_INT(c2.n, 1);
    rk_reader_close(r);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(event_ids_deduplicate)
{
    const char *dir = rk_test_tmpdir("store-dedup");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    char id[32];
    for (int i = 0; i < 100; i++) {
        rk_event_in e = ev("click", "u", "i", 1000 + i);
        snprintf(id, sizeof id, "ev-%d", i % 50); /* each id twice */
        e.id = id;
        CHECK_OK(rk_batch_event(b, &e, &err));
    }
    rk_write_result res;
    CHECK_OK(rk_store_write(s, b, &res, &err));
    CHECK_EQ_INT(res.events, 50);
    CHECK_EQ_INT(res.duplicates, 50);
    rk_store_close(s);
    /* Re-running after a reopen adds nothing. */
    s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_batch_destroy(b);
    CHECK_OK(rk_batch_create(&b, s, 0));
    for (int i = 0; i < 50; i++) {
        rk_event_in e = ev("click", "u", "i", 1000 + i);
        snprintf(id, sizeof id, "ev-%d", i);
        e.id = id;
        CHECK_OK(rk_batch_event(b, &e, &err));
    }
    CHECK_OK(rk_store_write(s, b, &res, &err));
    CHECK_EQ_INT(res.events, 0);
    CHECK_EQ_INT(res.duplicates, 50);
    rk_batch_destroy(b);
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    rk_store_stats st;
    CHECK_OK(rk_reader_stats(r, &st));
    CHECK_EQ_INT(st.events, 50);
    CHECK_EQ_INT(st.event_ids, 50);
    uint64_t seq;
    CHECK_OK(rk_reader_event_by_id(r, "ev-7", 4, &seq));
    CHECK_EQ_INT(seq, 8);
    collect c = {0};
    CHECK_OK(rk_reader_scan_events(r, 8, collect_cb, &c));
    CHECK(c.evs[0].id_len == 4 && memcmp(c.evs[0].id, "ev-7", 4) == 0);
    CHECK_EQ_INT(rk_reader_event_by_id(r, "ev-99", 5, &seq), RK_ENOTFOUND);
    rk_reader_close(r);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

static rk_schema *item_schema(void)
{
    rk_schema *sc;
    if (rk_schema_create(&sc)) return NULL;
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "title", RK_ATTR_TEXT, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "year", RK_ATTR_NUMERIC, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "genres", RK_ATTR_CATEGORICAL_LIST,
                       0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "cat", RK_ATTR_CATEGORICAL, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "released", RK_ATTR_TIMESTAMP, 0,
                       NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "emb", RK_ATTR_VECTOR, 3, NULL);
    rk_schema_add_event_type(sc, "click", RK_ROLE_POSITIVE, 1, NULL);
    return sc;
}

static rk_store *open_with(const char *dir, const rk_schema *sc, rk_err *err)
{
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 64 << 20;
    rk_store *s = NULL;
    if (rk_store_open(&s, &o, sc, err) != 0) return NULL;
    return s;
}

static const rk_attr_val *find_attr(const rk_entity_view *v, const rk_schema *sc,
                                    const char *name)
{
    uint32_t idx;
    if (rk_schema_find_attr(sc, RK_ENTITY_ITEM, name, strlen(name), &idx))
        return NULL;
    for (uint32_t i = 0; i < v->nattrs; i++)
        if (v->attrs[i].attr == idx) return &v->attrs[i];
    return NULL;
}

TEST(entities_upsert_merge_hide_delete)
{
    const char *dir = rk_test_tmpdir("store-ent");
    rk_err err = {0};
    rk_schema *sc = item_schema();
    CHECK(sc);
    rk_store *s = open_with(dir, sc, &err);
    rk_schema_destroy(sc);
    CHECK(s);
    const rk_schema *S = rk_store_schema(s);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    const char *genres[] = {"Comedy", "Drama"};
    float emb[3] = {0.5f, -1.0f, 2.0f};
    rk_attr_in a[6] = {
        {.name = "title", .type = RK_ATTR_TEXT, .str = "Toy Story", .len = 9},
        {.name = "year", .type = RK_ATTR_NUMERIC, .num = 1995},
        {.name = "genres", .type = RK_ATTR_CATEGORICAL_LIST, .list = genres, .n = 2},
        {.name = "cat", .type = RK_ATTR_CATEGORICAL, .str = "film", .len = 4},
        {.name = "released", .type = RK_ATTR_TIMESTAMP, .ts_ms = 815097600000LL},
        {.name = "emb", .type = RK_ATTR_VECTOR, .vec = emb, .dim = 3},
    };
    CHECK_OK(rk_batch_upsert(b, RK_ENTITY_ITEM, "m1", a, 6, 0, &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    rk_batch_clear(b);
    /* A partial upsert merges; REPLACE drops what is not given. */
    rk_attr_in y = {.name = "year", .type = RK_ATTR_NUMERIC, .num = 1996};
    CHECK_OK(rk_batch_upsert(b, RK_ENTITY_ITEM, "m1", &y, 1, 0, &err));
    CHECK_OK(rk_batch_upsert(b, RK_ENTITY_ITEM, "m2", &y, 1, 0, &err));
    CHECK_OK(rk_batch_upsert(b, RK_ENTITY_ITEM, "m2", a, 1, RK_UPSERT_REPLACE,
                             &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    rk_batch_clear(b);

    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    uint32_t id;
    CHECK_OK(rk_reader_lookup(r, RK_ENTITY_ITEM, "m1", 2, &id));
    rk_entity_view v;
    CHECK_OK(rk_reader_entity(r, RK_ENTITY_ITEM, id, &v));
    CHECK_EQ_INT(v.nattrs, 6);
    CHECK_EQ_INT(v.flags, 0);
    const rk_attr_val *t = find_attr(&v, S, "title");
    CHECK(t && t->len == 9 && memcmp(t->str, "Toy Story", 9) == 0);
    CHECK(find_attr(&v, S, "year")->num == 1996);
    const rk_attr_val *g = find_attr(&v, S, "genres");
    CHECK(g && g->n == 2 && g->list_lens[1] == 5 && !memcmp(g->list[1], "Drama", 5));
    CHECK(find_attr(&v, S, "released")->ts_ms == 815097600000LL);
    const rk_attr_val *e = find_attr(&v, S, "emb");
    CHECK(e && e->dim == 3 && e->vec[1] == -1.0f && e->vec[2] == 2.0f);
    CHECK_OK(rk_reader_lookup(r, RK_ENTITY_ITEM, "m2", 2, &id));
    CHECK_OK(rk_reader_entity(r, RK_ENTITY_ITEM, id, &v));
    CHECK_EQ_INT(v.nattrs, 1);
    CHECK(find_attr(&v, S, "title") && !find_attr(&v, S, "year"));
    rk_reader_close(r);

    /* Hidden is visible to the next reader as soon as write returns. */
    CHECK_OK(rk_batch_hide(b, RK_ENTITY_ITEM, "m1", 1, &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    rk_batch_clear(b);
    CHECK_OK(rk_store_reader(s, &r, &err));
    CHECK_OK(rk_reader_lookup(r, RK_ENTITY_ITEM, "m1", 2, &id));
    CHECK_OK(rk_reader_entity(r, RK_ENTITY_ITEM, id, &v));
    CHECK(v.flags & RK_ENTITY_HIDDEN);
    CHECK_EQ_INT(v.nattrs, 6);
    rk_store_stats st;
    CHECK_OK(rk_reader_stats(r, &st));
    CHECK_EQ_INT(st.hidden_items, 1);
    rk_reader_close(r);

    rk_write_result res;
    CHECK_OK(rk_batch_hide(b, RK_ENTITY_ITEM, "m1", 0, &err));
    CHECK_OK(rk_batch_delete(b, RK_ENTITY_ITEM, "m2", &err));
    CHECK_OK(rk_batch_delete(b, RK_ENTITY_ITEM, "never-seen", &err));
    CHECK_OK(rk_store_write(s, b, &res, &err));
    CHECK_EQ_INT(res.entities, 2);
    CHECK_EQ_INT(res.not_found, 1);
    CHECK_OK(rk_store_reader(s, &r, &err));
    CHECK_OK(rk_reader_stats(r, &st));
    CHECK_EQ_INT(st.hidden_items, 0);
    CHECK_EQ_INT(st.deleted[RK_ENTITY_ITEM], 1);
    CHECK_OK(rk_reader_lookup(r, RK_ENTITY_ITEM, "m2", 2, &id));
    CHECK_OK(rk_reader_entity(r, RK_ENTITY_ITEM, id, &v));
    CHECK(v.flags & RK_ENTITY_DELETED);
    CHECK_EQ_INT(v.nattrs, 0);
    CHECK_EQ_INT(rk_reader_lookup(r, RK_ENTITY_ITEM, "never-seen", 10, &id),
                 RK_ENOTFOUND);
    rk_reader_close(r);
    rk_batch_destroy(b);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

/* Each row: a function that adds one bad op and the message it must give. */
typedef struct bad_case {
    const char *what;
    int (*add)(rk_batch *b, rk_err *err);
    const char *msg;
} bad_case;

static int bad_type(rk_batch *b, rk_err *err)
{
    rk_event_in e = ev("teleport", "u", "i", 1);
    return rk_batch_event(b, &e, err);
}
static int bad_user(rk_batch *b, rk_err *err)
{
    rk_event_in e = ev("click", "", "i", 1);
    return rk_batch_event(b, &e, err);
}
static int bad_nan(rk_batch *b, rk_err *err)
{
    rk_event_in e = ev("click", "u", "i", 1);
    e.value = NAN;
    e.has_value = 1;
    return rk_batch_event(b, &e, err);
}
static int bad_ts(rk_batch *b, rk_err *err)
{
    rk_event_in e = ev("click", "u", "i", -5);
    return rk_batch_event(b, &e, err);
}
static int bad_ctx(rk_batch *b, rk_err *err)
{
    rk_event_in e = ev("click", "u", "i", 1);
    e.context = "[1,2]";
    e.context_len = 5;
    return rk_batch_event(b, &e, err);
}
static int bad_utf8(rk_batch *b, rk_err *err)
{
    rk_event_in e = ev("click", "u\xff", "i", 1);
    return rk_batch_event(b, &e, err);
}
static int bad_attr(rk_batch *b, rk_err *err)
{
    rk_attr_in a = {.name = "colour", .type = RK_ATTR_TEXT, .str = "x", .len = 1};
    return rk_batch_upsert(b, RK_ENTITY_ITEM, "m", &a, 1, 0, err);
}
static int bad_attr_type(rk_batch *b, rk_err *err)
{
    rk_attr_in a = {.name = "year", .type = RK_ATTR_TEXT, .str = "x", .len = 1};
    return rk_batch_upsert(b, RK_ENTITY_ITEM, "m", &a, 1, 0, err);
}
static int bad_dim(rk_batch *b, rk_err *err)
{
    float v[2] = {1, 2};
    rk_attr_in a = {.name = "emb", .type = RK_ATTR_VECTOR, .vec = v, .dim = 2};
    return rk_batch_upsert(b, RK_ENTITY_ITEM, "m", &a, 1, 0, err);
}
static int bad_inf(rk_batch *b, rk_err *err)
{
    rk_attr_in a = {.name = "year", .type = RK_ATTR_NUMERIC, .num = INFINITY};
    return rk_batch_upsert(b, RK_ENTITY_ITEM, "m", &a, 1, 0, err);
}
static int bad_twice(rk_batch *b, rk_err *err)
{
    rk_attr_in a[2] = {{.name = "year", .type = RK_ATTR_NUMERIC, .num = 1},
                       {.name = "year", .type = RK_ATTR_NUMERIC, .num = 2}};
    return rk_batch_upsert(b, RK_ENTITY_ITEM, "m", a, 2, 0, err);
}
static int bad_label(rk_batch *b, rk_err *err)
{
    rk_row_in row = {.label = NAN};
    return rk_batch_row(b, "ds", &row, err);
}
static int bad_long_id(rk_batch *b, rk_err *err)
{
    char id[RK_ID_MAX + 2];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    return rk_batch_hide(b, RK_ENTITY_ITEM, id, 1, err);
}

TEST(batch_validation)
{
    static const bad_case cases[] = {
        {"unknown event type", bad_type, "unknown event type 'teleport'"},
        {"empty user", bad_user, "event user: missing id"},
        {"NaN value", bad_nan, "not a finite number"},
        {"negative ts", bad_ts, "outside 1970..9999"},
        {"context not object", bad_ctx, "not a JSON object"},
        {"bad utf8", bad_utf8, "not valid UTF-8"},
        {"unknown attribute", bad_attr, "unknown attribute 'colour' for item"},
        {"wrong attr type", bad_attr_type, "attribute 'year' is numeric, got a text value"},
        {"vector dim", bad_dim, "expected 3 values, got 2"},
        {"inf numeric", bad_inf, "not a finite number"},
        {"attribute twice", bad_twice, "given twice"},
        {"NaN label", bad_label, "label is not finite"},
        {"long id", bad_long_id, "longer than 256"},
    };
    const char *dir = rk_test_tmpdir("store-bad");
    rk_err err = {0};
    rk_schema *sc = item_schema();
    rk_store *s = open_with(dir, sc, &err);
    rk_schema_destroy(sc);
    CHECK(s);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    rk_event_in good = ev("click", "u", "i", 1);
    CHECK_OK(rk_batch_event(b, &good, &err));
    size_t bytes = rk_batch_bytes(b);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_err_clear(&err);
        int rc = cases[i].add(b, &err);
        if (rc != RK_EINVAL || !strstr(err.msg, cases[i].msg)) {
            fprintf(stderr, "  case '%s': rc %s msg '%s'\n", cases[i].what,
                    rk_errname(rc), err.msg);
            CHECK(0);
        }
        /* A rejected op leaves the batch untouched. */
        CHECK_EQ_INT(rk_batch_count(b), 1);
        CHECK_EQ_INT(rk_batch_bytes(b), bytes);
    }
    rk_batch_destroy(b);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(batch_limit)
{
    const char *dir = rk_test_tmpdir("store-blimit");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 200));
    rk_event_in e = ev("click", "user", "item", 1);
    int rc = 0, n = 0;
    while ((rc = rk_batch_event(b, &e, &err)) == 0) n++;
    CHECK_EQ_INT(rc, RK_ELIMIT);
    CHECK(n > 0);
    CHECK_EQ_INT(rk_batch_count(b), n);
    rk_batch_destroy(b);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

typedef struct ds_seen {
    int n;
    double labels[8];
    char group[8][8];
    uint32_t nnum[8], ncat[8];
    char cat0[8][16];
} ds_seen;

static int row_cb(void *arg, const rk_row *row)
{
    ds_seen *d = arg;
    if (d->n < 8) {
        d->labels[d->n] = row->label;
        snprintf(d->group[d->n], 8, "%.*s", (int)row->group_len,
                 row->group ? row->group : "");
        d->nnum[d->n] = row->nnum;
        d->ncat[d->n] = row->ncat;
        if (row->ncat)
            snprintf(d->cat0[d->n], 16, "%.*s", (int)row->cat_len[0],
                     row->cat_val[0]);
    }
    d->n++;
    return 0;
}

static int ds_cb(void *arg, const char *name, uint64_t rows)
{
    char *out = arg;
    char line[96];
    snprintf(line, sizeof line, "%s=%llu;", name, (unsigned long long)rows);
    strcat(out, line);
    return 0;
}

TEST(datasets_rows)
{
    const char *dir = rk_test_tmpdir("store-rows");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    uint32_t ni[2] = {0, 5};
    double nv[2] = {1.5, -2};
    uint32_t ci[1] = {3};
    const char *cv[1] = {"a1b2c3d4"};
    for (int i = 0; i < 3; i++) {
        rk_row_in row = {.label = i, .group = "q1", .group_len = 2, .nnum = 2,
                         .num_idx = ni, .num_val = nv, .ncat = 1,
                         .cat_idx = ci, .cat_val = cv};
        CHECK_OK(rk_batch_row(b, i == 1 ? "other" : "letor", &row, &err));
    }
    rk_write_result res;
    CHECK_OK(rk_store_write(s, b, &res, &err));
    CHECK_EQ_INT(res.rows, 3);
    /* A second write continues the sequence after a reopen. */
    rk_store_close(s);
    s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_batch_destroy(b);
    CHECK_OK(rk_batch_create(&b, s, 0));
    rk_row_in row = {.label = 7};
    CHECK_OK(rk_batch_row(b, "letor", &row, &err));
    CHECK_OK(rk_store_write(s, b, &res, &err));
    rk_batch_destroy(b);

    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    ds_seen d = {0};
    CHECK_OK(rk_reader_scan_rows(r, "letor", row_cb, &d));
    CHECK_EQ_INT(d.n, 3);
    CHECK(d.labels[0] == 0 && d.labels[1] == 2 && d.labels[2] == 7);
    CHECK_STR(d.group[0], "q1");
    CHECK_STR(d.group[2], "");
    CHECK_EQ_INT(d.nnum[0], 2);
    CHECK_STR(d.cat0[1], "a1b2c3d4");
    CHECK_EQ_INT(rk_reader_scan_rows(r, "missing", row_cb, &d), RK_ENOTFOUND);
    char names[256] = "";
    CHECK_OK(rk_reader_scan_datasets(r, ds_cb, names));
    CHECK_STR(names, "letor=3;other=1;");
    rk_reader_close(r);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(declare_attr_persists)
{
    const char *dir = rk_test_tmpdir("store-declare");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    CHECK_OK(rk_store_declare_attr(s, RK_ENTITY_USER, "age", RK_ATTR_NUMERIC,
                                   0, &err));
    /* Same declaration again: no-op. Another type: refused. */
    CHECK_OK(rk_store_declare_attr(s, RK_ENTITY_USER, "age", RK_ATTR_NUMERIC,
                                   0, &err));
    CHECK_EQ_INT(rk_store_declare_attr(s, RK_ENTITY_USER, "age",
                                       RK_ATTR_TEXT, 0, &err),
                 RK_ECONFIG);
    CHECK_CONTAINS(err.msg, "types cannot change");
    CHECK_EQ_INT(rk_store_declare_attr(s, RK_ENTITY_USER, "bad name!",
                                       RK_ATTR_TEXT, 0, &err),
                 RK_ECONFIG);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    rk_attr_in a = {.name = "age", .type = RK_ATTR_NUMERIC, .num = 31};
    CHECK_OK(rk_batch_upsert(b, RK_ENTITY_USER, "alice", &a, 1, 0, &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    rk_batch_destroy(b);
    rk_store_close(s);

    /* Reopen: the declaration survived; a config declaring a conflicting
     * type is refused with the reason. */
    s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    uint32_t idx;
    CHECK_OK(rk_schema_find_attr(rk_store_schema(s), RK_ENTITY_USER, "age", 3,
                                 &idx));
    rk_store_close(s);
    rk_schema *sc;
    CHECK_OK(rk_schema_create(&sc));
    CHECK_OK(rk_schema_add_attr(sc, RK_ENTITY_USER, "age", RK_ATTR_TEXT, 0,
                                NULL));
    CHECK(open_with(dir, sc, &err) == NULL);
    rk_schema_destroy(sc);
    CHECK_EQ_INT(err.code, RK_ECONFIG);
    CHECK_CONTAINS(err.msg, "user attribute 'age' is numeric");
    rk_test_rmdir(dir);
}

TEST(second_writer_is_refused)
{
    const char *dir = rk_test_tmpdir("store-lock");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    rk_store *s2 = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s2 == NULL);
    CHECK_EQ_INT(err.code, RK_EBUSY);
    CHECK_CONTAINS(err.msg, "in use by another rankd process");
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(read_only_missing)
{
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = "/nonexistent/rankd-data";
    o.read_only = 1;
    rk_store *s = NULL;
    rk_err err = {0};
    int rc = rk_store_open(&s, &o, NULL, &err);
    CHECK_EQ_INT(rc, RK_ENOTFOUND);
    CHECK(s == NULL);
}

typedef struct prod {
    rk_store *s;
    int tid, batches, per;
    int rc;
} prod;

static void *producer(void *arg)
{
    prod *p = arg;
    rk_batch *b;
    rk_err err = {0};
    if ((p->rc = rk_batch_create(&b, p->s, 0))) return NULL;
    char user[32], item[32], id[48];
    for (int i = 0; i < p->batches && !p->rc; i++) {
        rk_batch_clear(b);
        for (int k = 0; k < p->per; k++) {
            snprintf(user, sizeof user, "u%d", (i * 7 + k) % 97);
            snprintf(item, sizeof item, "i%d", (k * 13 + p->tid) % 211);
            snprintf(id, sizeof id, "t%d-%d-%d", p->tid, i, k);
            rk_event_in e = ev("click", user, item, 1000 + i);
            e.id = id;
            if ((p->rc = rk_batch_event(b, &e, &err))) break;
        }
        if (!p->rc) p->rc = rk_store_write(p->s, b, NULL, &err);
    }
    rk_batch_destroy(b);
    return NULL;
}

typedef struct seqcheck {
    uint64_t last;
    int ordered;
    size_t n;
} seqcheck;

static int seq_cb(void *arg, const rk_event *e)
{
    seqcheck *c = arg;
    if (e->seq <= c->last) c->ordered = 0;
    c->last = e->seq;
    c->n++;
    return 0;
}

static void *scanner(void *arg)
{
    rk_store *s = arg;
    rk_err err = {0};
    for (int i = 0; i < 20; i++) {
        rk_reader *r;
        if (rk_store_reader(s, &r, &err)) return (void *)1;
        seqcheck c = {0, 1, 0};
        int rc = rk_reader_scan_events(r, 0, seq_cb, &c);
        rk_reader_close(r);
        if (rc || !c.ordered) return (void *)1;
    }
    return NULL;
}

TEST(concurrent_producers_and_readers)
{
    const char *dir = rk_test_tmpdir("store-conc");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    enum { NP = 4 };
    pthread_t th[NP], sc;
    prod ps[NP];
    for (int i = 0; i < NP; i++) {
        ps[i] = (prod){s, i, 50, 40, 0};
        pthread_create(&th[i], NULL, producer, &ps[i]);
    }
    pthread_create(&sc, NULL, scanner, s);
    for (int i = 0; i < NP; i++) pthread_join(th[i], NULL);
    void *scan_rc;
    pthread_join(sc, &scan_rc);
    for (int i = 0; i < NP; i++) CHECK_OK(ps[i].rc);
    CHECK(scan_rc == NULL);
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    rk_store_stats st;
    CHECK_OK(rk_reader_stats(r, &st));
    CHECK_EQ_INT(st.events, NP * 50 * 40);
    CHECK_EQ_INT(st.last_seq, NP * 50 * 40);
    CHECK_EQ_INT(st.ids[RK_ENTITY_USER], 97);
    int seen_items[211] = {0}, distinct = 0;
    for (int t = 0; t < NP; t++)
        for (int k = 0; k < 40; k++)
            if (!seen_items[(k * 13 + t) % 211]++) distinct++;
    CHECK_EQ_INT(st.ids[RK_ENTITY_ITEM], distinct);
    rk_reader_close(r);
    CHECK_OK(rk_store_sync(s, &err));
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(store_full_is_clean)
{
    const char *dir = rk_test_tmpdir("store-full");
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 1 << 20; /* 1 MiB */
    rk_store *s = NULL;
    rk_err err = {0};
    CHECK_OK(rk_store_open(&s, &o, NULL, &err));
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    char user[32];
    int rc = 0, written = 0;
    for (int i = 0; i < 1000 && rc == 0; i++) {
        rk_batch_clear(b);
        for (int k = 0; k < 200; k++) {
            snprintf(user, sizeof user, "user-%d-%d", i, k);
            rk_event_in e = ev("click", user, "item", 1);
            CHECK_OK(rk_batch_event(b, &e, &err));
        }
        rc = rk_store_write(s, b, NULL, &err);
        if (rc == 0) written += 200;
    }
    CHECK_EQ_INT(rc, RK_EFULL);
    CHECK_CONTAINS(err.msg, "map_size");
    rk_batch_destroy(b);
    /* Everything acknowledged is there; nothing of the failed batch. */
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    rk_store_stats st;
    CHECK_OK(rk_reader_stats(r, &st));
    CHECK_EQ_INT(st.events, written);
    CHECK_EQ_INT(st.ids[RK_ENTITY_USER], written);
    rk_reader_close(r);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

/* Allocation failure anywhere in open, write and read gives a clean error
 * and leaks nothing (the harness checks bytes in use after the test). */
TEST(allocation_failures)
{
    const char *dir = rk_test_tmpdir("store-oom");
    int completed = 0;
    for (uint64_t n = 1; n < 5000 && !completed; n++) {
        rk_test_rmdir(dir);
        rk_err err = {0};
        rk_store *s = NULL;
        rk_batch *b = NULL;
        rk_reader *r = NULL;
        rk_mem_fail_at(n, 0);
        rk_store_opts o;
        rk_store_opts_default(&o);
        o.path = dir;
        o.map_size = 16 << 20;
        int rc = rk_store_open(&s, &o, NULL, &err);
        if (rc == 0) rc = rk_batch_create(&b, s, 0);
        for (int i = 0; rc == 0 && i < 20; i++) {
            char item[16];
            snprintf(item, sizeof item, "i%d", i);
            rk_event_in e = ev("click", "u", item, 5);
            e.id = item;
            rc = rk_batch_event(b, &e, &err);
        }
        if (rc == 0) rc = rk_store_write(s, b, NULL, &err);
        if (rc == 0) rc = rk_store_reader(s, &r, &err);
        collect c = {0};
        if (rc == 0) rc = rk_reader_scan_events(r, 0, collect_cb, &c);
        if (rc == 0 && c.n == 20) completed = 1;
        if (rc != 0 && rc != RK_ENOMEM) {
            fprintf(stderr, "  n=%llu: unexpected %s: %s\n",
                    (unsigned long long)n, rk_errname(rc), err.msg);
            CHECK(0);
        }
        rk_mem_fail_at(0, 0);
        rk_reader_close(r);
        rk_batch_destroy(b);
        rk_store_close(s);
    }
    CHECK(completed);
    rk_test_rmdir(dir);
}

/* Truncated or garbled records decode to RK_ECORRUPT, never out of bounds. */
TEST(codec_rejects_corruption)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    rk__event_op op = {0};
    op.type = 2;
    op.flags = RK__EV_VALUE | RK__EV_REQUEST | RK__EV_CONTEXT;
    op.value = 3;
    op.request_id = "abc";
    op.request_id_len = 3;
    op.context = "{}";
    op.context_len = 2;
    op.ts_ms = 77;
    CHECK_OK(rk__event_encode(&b, &op, 5, 6));
    rk_event e;
    CHECK_OK(rk__event_decode(b.data, b.len, 1, &e));
    CHECK(e.user == 5 && e.item == 6 && e.value == 3 && e.ts_ms == 77);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK_EQ_INT(rk__event_decode(b.data, cut, 1, &e), RK_ECORRUPT);
    /* Entity records: every truncation is rejected. */
    rk_buf rec;
    rk_buf_init(&rec, 0);
    rk_arena a;
    rk_arena_init(&a, 4096, 0);
    rk_buf attrs;
    rk_buf_init(&attrs, 0);
    const char *l[2] = {"x", "yz"};
    uint32_t ll[2] = {1, 2};
    rk_attr_val v = {.attr = 1, .type = RK_ATTR_CATEGORICAL_LIST, .list = l,
                     .list_lens = ll, .n = 2};
    CHECK_OK(rk__attr_encode(&attrs, &v));
    CHECK_OK(rk__entity_merge(&rec, NULL, 0, attrs.data, attrs.len, 1, 0, 9,
                              &a));
    rk_entity_view view;
    rk_attr_val vals[RK_MAX_ATTRS];
    CHECK_OK(rk__entity_decode(rec.data, rec.len, 3, &view, vals, &a));
    CHECK(view.nattrs == 1 && vals[0].n == 2);
    for (size_t cut = 0; cut < rec.len; cut++)
        CHECK_EQ_INT(rk__entity_decode(rec.data, cut, 3, &view, vals, &a),
                     RK_ECORRUPT);
    rk_arena_free(&a);
    rk_buf_free(&attrs);
    rk_buf_free(&rec);
    rk_buf_free(&b);
}

static int schema_from_yaml(const char *yaml, rk_schema **out, rk_err *err)
{
    rk_conf *c;
    int rc = rk_conf_parse_yaml(&c, yaml, strlen(yaml), "rankd.yaml", err);
    if (rc) return rc;
    rc = rk_schema_from_conf(out, rk_conf_root(c), err);
    rk_conf_destroy(c);
    return rc;
}

TEST(schema_from_config)
{
    static const char good[] =
        "entities:\n"
        "  item:\n"
        "    attributes:\n"
        "      title: text\n"
        "      emb: {type: vector, dim: 8}\n"
        "  user:\n"
        "    attributes:\n"
        "      age: numeric\n"
        "events:\n"
        "  view: {role: exposure}\n"
        "  buy: {role: positive, weight: 10}\n"
        "  stars: valued\n";
    rk_schema *sc = NULL;
    rk_err err = {0};
    CHECK_OK(schema_from_yaml(good, &sc, &err));
    CHECK_EQ_INT(rk_schema_nattrs(sc, RK_ENTITY_ITEM), 2);
    CHECK_EQ_INT(rk_schema_attr(sc, RK_ENTITY_ITEM, 1)->dim, 8);
    CHECK_EQ_INT(rk_schema_nevent_types(sc), 3);
    CHECK(rk_schema_event_type(sc, 1)->weight == 10);
    CHECK(rk_schema_event_type(sc, 0)->weight == 0);
    CHECK_EQ_INT(rk_schema_event_type(sc, 2)->role, RK_ROLE_VALUED);
    uint32_t idx;
    /* An explicit events: section replaces the defaults. */
    CHECK_EQ_INT(rk_schema_find_event_type(sc, "click", 5, &idx), RK_ENOTFOUND);
    rk_schema_destroy(sc);

    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"entities:\n  item:\n    attributes:\n      t: txt\n",
         "rankd.yaml:4:"},
        {"entities:\n  item:\n    attributes:\n      v: vector\n",
         "needs {type: vector, dim: N}"},
        {"entities:\n  thing: {}\n", "unknown key 'thing'"},
        {"events:\n  click: {role: positive, weight: -1}\n",
         "weight must be finite and >= 0"},
        {"events:\n  click: {role: sometimes}\n", "rankd.yaml:2:"},
        {"entities:\n  item:\n    attributes:\n      \"bad name\": text\n",
         "not an identifier"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_err_clear(&err);
        sc = NULL;
        int rc = schema_from_yaml(bad[i].yaml, &sc, &err);
        if (rc != RK_ECONFIG || !strstr(err.msg, bad[i].msg)) {
            fprintf(stderr, "  case %zu: %s '%s'\n", i, rk_errname(rc), err.msg);
            rk_schema_destroy(sc);
            CHECK(0);
        }
    }
    /* No config at all: the default event types. */
    CHECK_OK(rk_schema_from_conf(&sc, NULL, &err));
    CHECK_OK(rk_schema_find_event_type(sc, "purchase", 8, &idx));
    CHECK(rk_schema_event_type(sc, idx)->weight == 10);
    rk_schema_destroy(sc);
}

/* A merge function that adds a little-endian int64 operand to the value;
 * an operand of -1 deletes the key and -2 fails. */
static int add_merge(void *arg, const void *key, size_t klen, const void *old,
                     size_t oldlen, const void *op, size_t olen, rk_buf *out)
{
    (void)key;
    (void)klen;
    (*(int *)arg)++;
    int64_t v = 0, d;
    if (olen != 8) return RK_EINVAL;
    memcpy(&d, op, 8);
    if (d == -2) return RK_EINVAL;
    if (d == -1) return 0; /* empty output deletes */
    if (old && oldlen == 8) memcpy(&v, old, 8);
    v += d;
    return rk_buf_append(out, &v, 8);
}

static int kv_collect(void *arg, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    char *acc = arg;
    size_t n = strlen(acc);
    (void)val;
    snprintf(acc + n, 256 - n, "%.*s:%zu;", (int)klen, (const char *)key, vlen);
    return 0;
}

static int64_t kv_int(rk_reader *r, unsigned t, const char *key)
{
    const void *v;
    size_t n;
    if (rk_reader_kv_get(r, t, key, strlen(key), &v, &n) != 0 || n != 8) return -99;
    int64_t x;
    memcpy(&x, v, 8);
    return x;
}

TEST(kv_tables_put_merge_scan)
{
    const char *dir = rk_test_tmpdir("store-kv");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_ALWAYS, &err);
    CHECK(s);
    int calls = 0;
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    int64_t one = 1, five = 5, del = -1, bad = -2;
    /* Merging into a table without a function fails the whole write. */
    CHECK_OK(rk_batch_kv_put(b, 7, "p", 1, "x", 1, &err));
    CHECK_OK(rk_batch_kv_merge(b, 9, "c", 1, &one, 8, &err));
    CHECK_EQ_INT(rk_store_write(s, b, NULL, &err), RK_ESTATE);
    CHECK_CONTAINS(err.msg, "table 9");
    rk_batch_clear(b);
    CHECK_OK(rk_store_set_merge(s, 9, add_merge, &calls));
    CHECK_EQ_INT(rk_store_set_merge(s, 0, add_merge, &calls), RK_EINVAL);
    CHECK_OK(rk_batch_kv_merge(b, 9, "c", 1, &one, 8, &err));
    CHECK_OK(rk_batch_kv_merge(b, 9, "c", 1, &five, 8, &err));
    CHECK_OK(rk_batch_kv_merge(b, 9, "d", 1, &one, 8, &err));
    CHECK_OK(rk_batch_kv_put(b, 7, "a2", 2, "xyz", 3, &err));
    CHECK_OK(rk_batch_kv_put(b, 7, "a1", 2, "", 0, &err));
    CHECK_OK(rk_batch_kv_put(b, 7, "b1", 2, "q", 1, &err));
    CHECK_OK(rk_batch_kv_put(b, 8, "a3", 2, "q", 1, &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    CHECK_EQ_INT(calls, 3);
    /* Validation. */
    CHECK_EQ_INT(rk_batch_kv_put(b, 0, "k", 1, "v", 1, &err), RK_EINVAL);
    CHECK_EQ_INT(rk_batch_kv_put(b, 256, "k", 1, "v", 1, &err), RK_EINVAL);
    CHECK_EQ_INT(rk_batch_kv_put(b, 1, "", 0, "v", 1, &err), RK_EINVAL);
    char big[RK_KV_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    CHECK_EQ_INT(rk_batch_kv_put(b, 1, big, sizeof big, "v", 1, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "key");

    /* A failing merge function aborts the transaction: the put in the
     * same batch is not applied either. */
    rk_batch_clear(b);
    CHECK_OK(rk_batch_kv_put(b, 7, "zz", 2, "v", 1, &err));
    CHECK_OK(rk_batch_kv_merge(b, 9, "c", 1, &bad, 8, &err));
    CHECK_EQ_INT(rk_store_write(s, b, NULL, &err), RK_EINVAL);
    CHECK_CONTAINS(err.msg, "merge function");
    rk_batch_clear(b);
    CHECK_OK(rk_batch_kv_merge(b, 9, "d", 1, &del, 8, &err));
    CHECK_OK(rk_batch_kv_del(b, 7, "b1", 2, &err));
    CHECK_OK(rk_batch_kv_del(b, 7, "nope", 4, &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    rk_batch_destroy(b);
    rk_store_close(s);

    /* Everything is durable across a reopen. */
    s = open_store(dir, RK_FSYNC_ALWAYS, &err);
    CHECK(s);
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    CHECK_EQ_INT(kv_int(r, 9, "c"), 6);
    CHECK_EQ_INT(kv_int(r, 9, "d"), -99);
    const void *v;
    size_t n;
    CHECK_EQ_INT(rk_reader_kv_get(r, 7, "zz", 2, &v, &n), RK_ENOTFOUND);
    CHECK_OK(rk_reader_kv_get(r, 7, "a2", 2, &v, &n));
    CHECK(n == 3 && memcmp(v, "xyz", 3) == 0);
    char acc[256] = "";
    CHECK_OK(rk_reader_kv_scan(r, 7, "a", 1, NULL, 0, kv_collect, acc));
    CHECK_STR(acc, "a1:0;a2:3;");
    acc[0] = '\0';
    CHECK_OK(rk_reader_kv_scan(r, 7, NULL, 0, "a2", 2, kv_collect, acc));
    CHECK_STR(acc, "a2:3;"); /* "p" went with the failed first write */
    acc[0] = '\0';
    CHECK_OK(rk_reader_kv_scan(r, 8, NULL, 0, NULL, 0, kv_collect, acc));
    CHECK_STR(acc, "a3:1;");
    rk_reader_close(r);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

/* The commit hook sees every commit, in order, with its number (what
 * readers of it report) and its kv and entity changes. */
typedef struct hook_log {
    int calls;
    uint64_t txn[8];
    size_t n[8];
    int saw_put, saw_del, saw_item, null_changes;
} hook_log;

static void hook_fn(void *arg, uint64_t txn, const rk_commit_change *c, size_t n)
{
    hook_log *h = arg;
    if (h->calls < 8) {
        h->txn[h->calls] = txn;
        h->n[h->calls] = n;
    }
    h->calls++;
    if (!c) h->null_changes++;
    for (size_t i = 0; c && i < n; i++) {
        if (c[i].kind == RK_CHANGE_KV && c[i].table == 9 && c[i].len == 2 &&
            !memcmp(c[i].key, "k1", 2))
            h->saw_put++;
        if (c[i].kind == RK_CHANGE_KV && c[i].table == 9 && c[i].len == 2 &&
            !memcmp(c[i].key, "k2", 2))
            h->saw_del++;
        if (c[i].kind == RK_CHANGE_ENTITY && c[i].entity == RK_ENTITY_ITEM &&
            c[i].len == 2 && !memcmp(c[i].key, "i1", 2))
            h->saw_item++;
    }
}

TEST(commit_hook_reports_changes)
{
    const char *dir = rk_test_tmpdir("store-hook");
    rk_err err = {0};
    rk_store *s = open_store(dir, RK_FSYNC_EVERYSEC, &err);
    CHECK(s);
    hook_log h = {0};
    CHECK_OK(rk_store_set_commit_hook(s, hook_fn, &h));
    /* Called at once with the current commit and no changes. */
    CHECK_EQ_INT(h.calls, 1);
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    CHECK(h.txn[0] == rk_reader_txn(r));
    rk_reader_close(r);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    CHECK_OK(rk_batch_kv_put(b, 9, "k1", 2, "v", 1, &err));
    CHECK_OK(rk_batch_kv_del(b, 9, "k2", 2, &err));
    CHECK_OK(rk_batch_hide(b, RK_ENTITY_ITEM, "i1", 1, &err));
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    /* The hook ran before the write was acknowledged. */
    CHECK_EQ_INT(h.calls, 2);
    CHECK_EQ_INT((int)h.n[1], 3);
    CHECK_EQ_INT(h.saw_put, 1);
    CHECK_EQ_INT(h.saw_del, 1);
    CHECK_EQ_INT(h.saw_item, 1);
    CHECK(h.txn[1] > h.txn[0]);
    CHECK_OK(rk_store_reader(s, &r, &err));
    CHECK(rk_reader_txn(r) == h.txn[1]);
    rk_reader_close(r);
    /* A failed write calls nothing. */
    rk_batch_clear(b);
    CHECK_OK(rk_batch_kv_merge(b, 9, "k3", 2, "x", 1, &err));
    CHECK(rk_store_write(s, b, NULL, &err) == RK_ESTATE);
    CHECK_EQ_INT(h.calls, 2);
    CHECK_EQ_INT(h.null_changes, 1);
    rk_batch_destroy(b);
    CHECK_OK(rk_store_set_commit_hook(s, NULL, NULL));
    rk_store_close(s);
    rk_test_rmdir(dir);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, open_fresh_and_reopen, events_roundtrip,
                 event_ids_deduplicate, entities_upsert_merge_hide_delete,
                 batch_validation, batch_limit, datasets_rows,
                 declare_attr_persists, second_writer_is_refused,
                 read_only_missing, concurrent_producers_and_readers,
                 store_full_is_clean, allocation_failures,
                 codec_rejects_corruption, schema_from_config,
                 kv_tables_put_merge_scan, commit_hook_reports_changes);
}
