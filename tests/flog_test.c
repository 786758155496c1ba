/*
 * flog_test.c — unit tests of the feature log (encoding, validation,
 * record/get/scan through the store, retention) and of the label join
 * (a scenario table over one logged request, pending windows, model
 * filter, graded labels, exposure, user+item matching, configuration,
 * allocation failure, the join handed to a function with served scores).
 */
#include <math.h>

#include "rk_features.h"
#include "rk_monitor.h"
#include "rk_store.h"
#include "test.h"

static rk_store *open_store(const char *dir, rk_err *err)
{
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 256 << 20;
    rk_store *s = NULL;
    if (rk_store_open(&s, &o, NULL, err) != 0) return NULL;
    return s;
}

/* Served items with vectors of 3 dense values (one NaN) and k + 1 sparse
 * coordinates. */
typedef struct served {
    rk_flog_item items[16];
    char ids[16][16];
} served;

static int make_items(served *s, uint32_t n, int seed)
{
    memset(s, 0, sizeof *s);
    for (uint32_t k = 0; k < n; k++) {
        rk_flog_item *it = &s->items[k];
        snprintf(s->ids[k], sizeof s->ids[k], "%c", 'A' + k);
        it->item = s->ids[k];
        it->position = (int32_t)k;
        it->score = 0.5f + (float)k / 64 + (float)seed;
        if (rk_fvec_reset(&it->x, 3)) return -1;
        it->x.dense[0] = (float)k + (float)seed * 0.25f;
        it->x.dense[2] = -1.0f / (float)(k + 3);
        for (uint32_t j = 0; j <= k % 4; j++)
            if (rk_fvec_push(&it->x, (k * 97 + j * 13 + (uint32_t)seed) & 1023, 1.0f + (float)j))
                return -1;
    }
    return 0;
}

static void free_items(served *s)
{
    for (int k = 0; k < 16; k++) rk_fvec_free(&s->items[k].x);
}

static rk_flog_entry make_entry(const char *rid, int64_t ts, const char *user,
                                served *s, uint32_t n)
{
    rk_flog_entry e = {0};
    e.request_id = rid;
    e.ts_ms = ts;
    e.user = user;
    e.model = "gbdt";
    e.model_version = 7;
    e.experiment = "exp1";
    e.arm = "b";
    e.context = "{\"device\":\"tv\"}";
    e.context_len = strlen(e.context);
    e.nitems = n;
    e.items = s->items;
    return e;
}

static int same_vec(const rk_fvec *a, const rk_fvec *b)
{
    return a->ndense == b->ndense && a->nsparse == b->nsparse &&
           (a->ndense == 0 || memcmp(a->dense, b->dense, 4 * a->ndense) == 0) &&
           (a->nsparse == 0 || (memcmp(a->idx, b->idx, 4 * a->nsparse) == 0 &&
                                memcmp(a->val, b->val, 4 * a->nsparse) == 0));
}

static int same_entry(const rk_flog_entry *a, const rk_flog_entry *b)
{
    if (strcmp(a->request_id, b->request_id) || a->ts_ms != b->ts_ms ||
        strcmp(a->user ? a->user : "", b->user ? b->user : "") ||
        strcmp(a->model, b->model) || a->model_version != b->model_version ||
        strcmp(a->experiment, b->experiment) || strcmp(a->arm, b->arm) ||
        a->context_len != b->context_len ||
        (a->context_len && memcmp(a->context, b->context, a->context_len)) ||
        a->nitems != b->nitems)
        return 0;
    for (uint32_t i = 0; i < a->nitems; i++) {
        const rk_flog_item *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->item, y->item) || x->position != y->position ||
            memcmp(&x->score, &y->score, 4) || !same_vec(&x->x, &y->x))
            return 0;
    }
    return 1;
}

TEST(flog_encode_decode_roundtrip)
{
    served s;
    CHECK_OK(make_items(&s, 5, 1));
    rk_flog_entry e = make_entry("req-1", 1700000000123, "u1", &s, 5), d;
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_err err = {0};
    CHECK_OK(rk_flog_encode(&e, &b, &err));
    rk_arena a;
    rk_arena_init(&a, 0, 0);
    CHECK_OK(rk_flog_decode(b.data, b.len, &a, &d, &err));
    CHECK(same_entry(&e, &d));
    CHECK(isnan(d.items[0].x.dense[1])); /* NaN = missing survives */
    /* An entry without items, user or context. */
    rk_flog_entry m = {0};
    m.request_id = "r";
    rk_buf_reset(&b);
    CHECK_OK(rk_flog_encode(&m, &b, &err));
    CHECK_OK(rk_flog_decode(b.data, b.len, &a, &d, &err));
    CHECK_STR(d.request_id, "r");
    CHECK_STR(d.user, "");
    CHECK(d.nitems == 0 && d.context == NULL);
    rk_arena_free(&a);
    rk_buf_free(&b);
    free_items(&s);
}

TEST(flog_encode_validation)
{
    served s;
    CHECK_OK(make_items(&s, 2, 0));
    rk_flog_entry e = make_entry("r1", 5, "u", &s, 2);
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_err err = {0};
    static const struct {
        int field;
        int code;
        const char *msg;
    } cases[] = {
        {0, RK_EINVAL, "empty request_id"}, {1, RK_EINVAL, "request_id of 300"},
        {2, RK_EINVAL, "negative timestamp"}, {3, RK_EINVAL, "non-finite score"},
        {4, RK_ELIMIT, "items in one request"}, {5, RK_EINVAL, "id of 0 bytes"},
        {6, RK_EINVAL, "context of 5000"},
    };
    char longid[301];
    memset(longid, 'x', 300);
    longid[300] = 0;
    static char ctx[5000];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_flog_entry x = e;
        rk_flog_item items[2] = {s.items[0], s.items[1]};
        x.items = items;
        switch (cases[i].field) {
        case 0: x.request_id = ""; break;
        case 1: x.request_id = longid; break;
        case 2: x.ts_ms = -1; break;
        case 3: items[1].score = NAN; break;
        case 4: x.nitems = RK_FLOG_MAX_ITEMS + 1; break;
        case 5: items[0].item = ""; break;
        case 6: x.context = ctx; x.context_len = sizeof ctx; break;
        }
        CHECK_EQ_INT(rk_flog_encode(&x, &b, &err), cases[i].code);
        CHECK_CONTAINS(err.msg, cases[i].msg);
        CHECK_EQ_INT(b.len, 0);
    }
    /* The byte limit: items with big vectors. */
    rk_flog_item big[20]; /* 20 * 240 KB > 4 MiB */
    for (int k = 0; k < 20; k++) {
        big[k] = s.items[0];
        memset(&big[k].x, 0, sizeof big[k].x);
        CHECK_OK(rk_fvec_reset(&big[k].x, 60000));
    }
    rk_flog_entry x = e;
    x.items = big;
    x.nitems = 20;
    CHECK_EQ_INT(rk_flog_encode(&x, &b, &err), RK_ELIMIT);
    CHECK_CONTAINS(err.msg, "exceeds");
    CHECK_EQ_INT(b.len, 0);
    for (int k = 0; k < 20; k++) rk_fvec_free(&big[k].x);
    rk_buf_free(&b);
    free_items(&s);
}

TEST(flog_decode_refuses_corruption)
{
    served s;
    CHECK_OK(make_items(&s, 4, 2));
    rk_flog_entry e = make_entry("req-x", 99, "u9", &s, 4), d;
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_err err = {0};
    CHECK_OK(rk_flog_encode(&e, &b, &err));
    rk_arena a;
    rk_arena_init(&a, 0, 1 << 20);
    unsigned char *p = (unsigned char *)b.data;
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            p[i] ^= (unsigned char)(1u << bit);
            int rc = rk_flog_decode(p, b.len, &a, &d, &err);
            p[i] ^= (unsigned char)(1u << bit);
            CHECK(rc == RK_ECORRUPT || rc == RK_EVERSION);
            CHECK(err.msg[0]);
            rk_arena_reset(&a);
        }
    }
    for (size_t n = 0; n < b.len; n++) {
        CHECK(rk_flog_decode(p, n, &a, &d, &err) == RK_ECORRUPT);
        rk_arena_reset(&a);
    }
    CHECK_EQ_INT(rk_flog_decode(p, 5, &a, &d, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "truncated");
    p[b.len - 1] ^= 1;
    CHECK_EQ_INT(rk_flog_decode(p, b.len, &a, &d, &err), RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "checksum");
    p[b.len - 1] ^= 1;
    /* A tiny arena: decoding fails cleanly with ENOMEM. */
    rk_arena small;
    rk_arena_init(&small, 64, 64);
    int rc = rk_flog_decode(p, b.len, &small, &d, &err);
#ifndef RK_NO_ARENA
    CHECK_EQ_INT(rc, RK_ENOMEM);
#else
    (void)rc;
#endif
    rk_arena_free(&small);
    /* Allocation failure at every step of a decode. */
    for (uint64_t fail = 1;; fail++) {
        rk_arena f;
        rk_arena_init(&f, 256, 0);
        rk_mem_fail_at(fail, 0);
        rc = rk_flog_decode(p, b.len, &f, &d, &err);
        rk_mem_fail_at(0, 0);
        if (rc == 0) {
            CHECK(same_entry(&e, &d));
            rk_arena_free(&f);
            break;
        }
        CHECK_EQ_INT(rc, RK_ENOMEM);
        CHECK_CONTAINS(err.msg, "out of memory");
        rk_arena_free(&f);
    }
    rk_arena_free(&a);
    rk_buf_free(&b);
    free_items(&s);
}

typedef struct seen {
    char rid[32][16];
    int64_t ts[32];
    size_t n;
    const rk_flog_entry *want;  /* when set, entries must equal it */
    int mismatch;
} seen;

static int seen_cb(void *arg, const rk_flog_entry *e)
{
    seen *s = arg;
    if (s->n < 32) {
        snprintf(s->rid[s->n], 16, "%s", e->request_id);
        s->ts[s->n] = e->ts_ms;
    }
    if (s->want && !same_entry(s->want, e)) s->mismatch = 1;
    s->n++;
    return 0;
}

static int write_entries(rk_store *st, const rk_flog_entry *es, size_t n, rk_err *err)
{
    rk_batch *b;
    int rc = rk_batch_create(&b, st, 0);
    for (size_t i = 0; rc == 0 && i < n; i++) rc = rk_flog_record(b, &es[i], err);
    if (rc == 0) rc = rk_store_write(st, b, NULL, err);
    rk_batch_destroy(b);
    return rc;
}

TEST(flog_store_record_get_scan_expire)
{
    const char *dir = rk_test_tmpdir("flog-store");
    rk_err err = {0};
    rk_store *st = open_store(dir, &err);
    CHECK(st);
    served s;
    CHECK_OK(make_items(&s, 6, 3));
    /* Out of time order on purpose; "r-b" and "r-c" share a timestamp. */
    rk_flog_entry es[4] = {
        make_entry("r-c", 3000, "u1", &s, 6), make_entry("r-a", 1000, "u2", &s, 6),
        make_entry("r-b", 3000, "u1", &s, 2), make_entry("r-d", 9000, "", &s, 0),
    };
    CHECK_OK(write_entries(st, es, 4, &err));
    rk_reader *r;
    CHECK_OK(rk_store_reader(st, &r, &err));
    rk_arena a;
    rk_arena_init(&a, 0, 0);
    rk_flog_entry d;
    CHECK_OK(rk_flog_get(r, "r-c", 3, &a, &d, &err));
    CHECK(same_entry(&es[0], &d));
    CHECK_OK(rk_flog_get(r, "r-d", 3, &a, &d, &err));
    CHECK(same_entry(&es[3], &d));
    CHECK_EQ_INT(rk_flog_get(r, "r-z", 3, &a, &d, &err), RK_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "r-z");
    seen sn = {0};
    CHECK_OK(rk_flog_scan(r, 0, 10000, seen_cb, &sn, &err));
    CHECK_EQ_INT(sn.n, 4);
    CHECK_STR(sn.rid[0], "r-a");
    CHECK_STR(sn.rid[1], "r-b"); /* ties by request id */
    CHECK_STR(sn.rid[2], "r-c");
    CHECK_STR(sn.rid[3], "r-d");
    memset(&sn, 0, sizeof sn);
    CHECK_OK(rk_flog_scan(r, 1001, 9000, seen_cb, &sn, &err)); /* [from, to) */
    CHECK_EQ_INT(sn.n, 2);
    memset(&sn, 0, sizeof sn);
    sn.want = &es[0];
    CHECK_OK(rk_flog_scan(r, 3000, 3001, seen_cb, &sn, &err));
    CHECK_EQ_INT(sn.n, 2);
    CHECK(sn.mismatch); /* r-b differs from r-c */
    rk_reader_close(r);

    /* Re-recording r-a later replaces it; its old time key is stale. */
    rk_flog_entry again = make_entry("r-a", 5000, "u2", &s, 3);
    CHECK_OK(write_entries(st, &again, 1, &err));
    CHECK_OK(rk_store_reader(st, &r, &err));
    memset(&sn, 0, sizeof sn);
    CHECK_OK(rk_flog_scan(r, 0, 10000, seen_cb, &sn, &err));
    CHECK_EQ_INT(sn.n, 4);
    CHECK_STR(sn.rid[2], "r-a");
    CHECK_EQ_INT(sn.ts[2], 5000);
    rk_reader_close(r);

    /* Expire everything before 4000: r-b, r-c and r-a's stale key go;
     * r-a (now at 5000) stays. */
    uint64_t del = 0;
    CHECK_OK(rk_flog_expire(st, 4000, &del, &err));
    CHECK_EQ_INT(del, 2);
    CHECK_OK(rk_store_reader(st, &r, &err));
    memset(&sn, 0, sizeof sn);
    CHECK_OK(rk_flog_scan(r, INT64_MIN, INT64_MAX, seen_cb, &sn, &err));
    CHECK_EQ_INT(sn.n, 2);
    CHECK_STR(sn.rid[0], "r-a");
    CHECK_STR(sn.rid[1], "r-d");
    CHECK_EQ_INT(rk_flog_get(r, "r-b", 3, &a, &d, &err), RK_ENOTFOUND);
    CHECK_OK(rk_flog_get(r, "r-a", 3, &a, &d, &err));
    rk_reader_close(r);
    CHECK_OK(rk_flog_expire(st, 4000, &del, &err));
    CHECK_EQ_INT(del, 0);
    rk_arena_free(&a);
    free_items(&s);
    rk_store_close(st);
    rk_test_rmdir(dir);
}

TEST(flog_expire_many)
{
    const char *dir = rk_test_tmpdir("flog-expire");
    rk_err err = {0};
    rk_store *st = open_store(dir, &err);
    CHECK(st);
    served s;
    CHECK_OK(make_items(&s, 1, 0));
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, st, 0));
    for (int i = 0; i < 2500; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "q%05d", i);
        rk_flog_entry e = make_entry(rid, 10 * (int64_t)i, "u", &s, 1);
        CHECK_OK(rk_flog_record(b, &e, &err));
    }
    CHECK_OK(rk_store_write(st, b, NULL, &err));
    rk_batch_destroy(b);
    uint64_t del;
    CHECK_OK(rk_flog_expire(st, 22000, &del, &err)); /* several rounds */
    CHECK_EQ_INT(del, 2200);
    rk_reader *r;
    CHECK_OK(rk_store_reader(st, &r, &err));
    seen sn = {0};
    CHECK_OK(rk_flog_scan(r, 0, INT64_MAX, seen_cb, &sn, &err));
    CHECK_EQ_INT(sn.n, 300);
    CHECK_STR(sn.rid[0], "q02200");
    rk_reader_close(r);
    free_items(&s);
    rk_store_close(st);
    rk_test_rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* Label join                                                                */
/* ------------------------------------------------------------------------ */

#define T0 INT64_C(1700000000000)
#define MIN_MS INT64_C(60000)

typedef struct ev_spec {
    const char *type, *user, *item, *rid;
    int64_t dt;          /* ms after T0 */
    double value;        /* > 0: has_value */
} ev_spec;

/* R1 at T0 by user u1 serves items A..I; the events below decide each
 * item's label. */
static const ev_spec scenario_events[] = {
    {"click", "u1", "A", "R1", 1 * MIN_MS, 0},     /* A: click in window -> 1 */
    {"click", "u1", "B", "R1", 31 * MIN_MS, 0},    /* B: after the window -> 0 */
    /* C: nothing -> 0 */
    {"click", "u1", "D", NULL, 2 * MIN_MS, 0},     /* D: no request id -> 0 */
    {"click", "u1", "E", "R1", 3 * MIN_MS, 0},     /* E: purchase wins -> w 10 */
    {"purchase", "u1", "E", "R1", 5 * MIN_MS, 0},
    {"click", "u1", "F", "R1", 1 * MIN_MS, 0},     /* F: dislike overrides -> 0 */
    {"dislike", "u1", "F", "R1", 2 * MIN_MS, 0},
    {"watch", "u1", "G", "R1", 4 * MIN_MS, 2.5},   /* G: valued -> w 2.5 */
    {"like", "u1", "H", "R9", 1 * MIN_MS, 0},      /* H: other request id -> 0 */
    {"click", "u1", "I", "R1", -1000, 0},          /* I: clock skew -> 1 */
    {"click", "u1", "Z", "R1", 1 * MIN_MS, 0},     /* not served: ignored */
    {"impression", "u1", "A", "R1", 0, 0},
    {"impression", "u1", "E", "R1", 0, 0},
    {"click", "u2", "A", "R2", 1 * MIN_MS, 0},     /* R2 pending */
};

static const struct {
    const char *item;
    float label, weight;          /* weighted mode */
    float glabel;                 /* graded mode (weight 1) */
} scenario_want[] = {
    {"A", 1, 1, 1}, {"B", 0, 1, 0}, {"C", 0, 1, 0}, {"D", 0, 1, 0}, {"E", 1, 10, 10},
    {"F", 0, 1, 0}, {"G", 1, 2.5f, 2.5f}, {"H", 0, 1, 0}, {"I", 1, 1, 1},
};

#define NSERVED 9
#define NOW (T0 + 40 * MIN_MS)

static int setup_scenario(rk_store *st, served *s, rk_err *err)
{
    if (make_items(s, NSERVED, 0)) return RK_ENOMEM;
    rk_batch *b;
    int rc = rk_batch_create(&b, st, 0);
    for (size_t i = 0; rc == 0 && i < sizeof scenario_events / sizeof scenario_events[0]; i++) {
        const ev_spec *x = &scenario_events[i];
        rk_event_in e = {0};
        e.type = x->type;
        e.user = x->user;
        e.item = x->item;
        e.ts_ms = T0 + x->dt;
        e.position = -1;
        e.request_id = x->rid;
        e.value = x->value;
        e.has_value = x->value > 0;
        rc = rk_batch_event(b, &e, err);
    }
    /* Items must exist for the join's item lookups even if never clicked. */
    for (uint32_t k = 0; rc == 0 && k < NSERVED; k++)
        rc = rk_batch_hide(b, RK_ENTITY_ITEM, s->ids[k], 0, err);
    rk_flog_entry es[4] = {
        make_entry("R1", T0, "u1", s, NSERVED),
        make_entry("R2", NOW - 10 * MIN_MS, "u2", s, 2),   /* window open */
        make_entry("R0", T0 - 100 * MIN_MS, "u1", s, 2),   /* before range */
        make_entry("R3", T0 + 1, "u3", s, 2),
    };
    es[3].model = "ftrl";
    for (size_t i = 0; rc == 0 && i < 4; i++) rc = rk_flog_record(b, &es[i], err);
    if (rc == 0) rc = rk_store_write(st, b, NULL, err);
    rk_batch_destroy(b);
    return rc;
}

static int find_row(const rk_trainset *t, const served *s, const char *item, rk_trow *out)
{
    int k = item[0] - 'A';
    int found = 0;
    for (size_t i = 0; i < rk_trainset_rows(t); i++) {
        rk_trow r;
        rk_trainset_get(t, i, &r);
        if (r.ts_ms == T0 && same_vec(&r.x, &s->items[k].x)) {
            *out = r;
            found++;
        }
    }
    return found == 1;
}

/* The scenario in a fresh store, a reader on it and the default label
 * rules for model gbdt. */
typedef struct scenario {
    const char *dir;
    rk_store *st;
    rk_reader *r;
    served s;
    rk_label_conf c;
} scenario;

static int scenario_open(scenario *x, const char *name, rk_err *err)
{
    memset(x, 0, sizeof *x);
    x->dir = rk_test_tmpdir(name);
    x->st = open_store(x->dir, err);
    if (!x->st) return RK_EIO;
    int rc = setup_scenario(x->st, &x->s, err);
    if (!rc) rc = rk_store_reader(x->st, &x->r, err);
    rk_label_conf_default(&x->c, rk_store_schema(x->st));
    x->c.model = "gbdt";
    return rc;
}

static void scenario_close(scenario *x)
{
    rk_reader_close(x->r);
    free_items(&x->s);
    rk_store_close(x->st);
    rk_test_rmdir(x->dir);
}

TEST(labels_join_scenarios)
{
    rk_err err = {0};
    scenario x;
    CHECK_OK(scenario_open(&x, "labels-join", &err));
    rk_reader *r = x.r;
    served *s = &x.s;
    rk_label_conf c = x.c;
    for (int graded = 0; graded < 2; graded++) {
        c.mode = graded ? RK_LABEL_GRADED : RK_LABEL_WEIGHTED;
        rk_trainset *t;
        CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
        rk_join_stats js;
        CHECK_OK(rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err));
        CHECK_EQ_INT(js.requests, 1);
        CHECK_EQ_INT(js.pending, 1);
        CHECK_EQ_INT(js.skipped, 1); /* R3: other model */
        CHECK_EQ_INT(js.rows, NSERVED);
        CHECK_EQ_INT(js.positives, 4);
        CHECK_EQ_INT(js.negatives, 1);
        CHECK_EQ_INT(js.events_scanned, sizeof scenario_events / sizeof scenario_events[0]);
        CHECK_EQ_INT(rk_trainset_rows(t), NSERVED);
        uint64_t group = 0;
        for (size_t i = 0; i < NSERVED; i++) {
            rk_trow row;
            CHECK(find_row(t, s, scenario_want[i].item, &row));
            if (graded) {
                CHECK(row.label == scenario_want[i].glabel);
                CHECK(row.weight == 1);
            } else {
                if (row.label != scenario_want[i].label || row.weight != scenario_want[i].weight)
                    fprintf(stderr, "  item %s: label %g weight %g\n", scenario_want[i].item,
                            row.label, row.weight);
                CHECK(row.label == scenario_want[i].label);
                CHECK(row.weight == scenario_want[i].weight);
            }
            CHECK(row.group != 0 && (group == 0 || row.group == group));
            group = row.group;
        }
        rk_trainset_destroy(t);
    }
    /* Without a model filter R3 joins too (2 more rows); with a later now
     * R2's window has closed (its click on A is a positive). */
    c.model = NULL;
    c.mode = RK_LABEL_WEIGHTED;
    rk_trainset *t;
    CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
    rk_join_stats js;
    CHECK_OK(rk_labels_join(r, &c, NOW + 60 * MIN_MS, T0 - 10 * MIN_MS, NOW, t, &js, &err));
    CHECK_EQ_INT(js.requests, 3);
    CHECK_EQ_INT(js.pending, 0);
    CHECK_EQ_INT(js.rows, NSERVED + 4);
    CHECK_EQ_INT(js.positives, 5);
    rk_trainset_destroy(t);
    /* match_user_item: D's click without request id now counts. */
    c.model = "gbdt";
    c.match_user_item = 1;
    CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
    CHECK_OK(rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err));
    rk_trow row;
    CHECK(find_row(t, s, "D", &row));
    CHECK(row.label == 1);
    CHECK_EQ_INT(js.positives, 5);
    rk_trainset_destroy(t);
    /* require_exposure: only A and E had impressions. */
    c.match_user_item = 0;
    c.require_exposure = 1;
    CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
    CHECK_OK(rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err));
    CHECK_EQ_INT(js.rows, 2);
    CHECK_EQ_INT(js.unexposed, NSERVED - 2);
    rk_trainset_destroy(t);
    c.require_exposure = 0;
    /* A set of another width skips the requests. */
    CHECK_OK(rk_trainset_create(&t, 4, 10, 0));
    CHECK_OK(rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err));
    CHECK_EQ_INT(js.rows, 0);
    CHECK_EQ_INT(js.skipped, 2);
    rk_trainset_destroy(t);
    /* The index bound. */
    c.max_index = 3;
    CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
    CHECK_EQ_INT(rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err), RK_ELIMIT);
    CHECK_CONTAINS(err.msg, "max_index");
    rk_trainset_destroy(t);
    c.max_index = 1000;
    /* Allocation failure anywhere in a join: a clean ENOMEM, no leak. */
    for (uint64_t fail = 1;; fail++) {
        CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
        rk_mem_fail_at(fail, 0);
        int rc = rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err);
        rk_mem_fail_at(0, 0);
        if (rc == 0) {
            CHECK_EQ_INT(rk_trainset_rows(t), NSERVED);
            rk_trainset_destroy(t);
            break;
        }
        CHECK_EQ_INT(rc, RK_ENOMEM);
        CHECK(err.msg[0]);
        rk_trainset_destroy(t);
    }
    scenario_close(&x);
}

/* What rk_labels_visit hands over, and what a consumer answers. */
typedef struct visit_log {
    size_t n;
    uint32_t version;
    float score[NSERVED], label[NSERVED], weight[NSERVED];
    char item[NSERVED];
    int answer;              /* returned for every item */
    rk_concept_acc acc;
} visit_log;

static int visit_cb(void *arg, const rk_flog_entry *e, uint32_t i, float label, float weight)
{
    visit_log *v = arg;
    if (v->n < NSERVED) {
        v->score[v->n] = e->items[i].score;
        v->label[v->n] = label;
        v->weight[v->n] = weight;
        v->item[v->n] = e->items[i].item[0];
        v->n++;
    }
    v->version = e->model_version;
    (void)rk_concept_add(&v->acc, e->items[i].score, label > 0, 1.0f);
    return v->answer;
}

/* The join handed to a function (`rankd drift`'s concept metrics): the
 * same items and labels as the rows rk_labels_join adds, with their served
 * scores; the version filter; what the function's answer does; and the
 * online metrics of those scores against rk_metrics_* on the scenario's
 * expected labels. */
TEST(labels_visit_served_scores)
{
    rk_err err = {0};
    scenario x;
    CHECK_OK(scenario_open(&x, "labels-visit", &err));
    rk_reader *r = x.r;
    rk_label_conf c = x.c;
    c.model_version = 7;
    visit_log v;
    memset(&v, 0, sizeof v);
    rk_concept_reset(&v.acc);
    rk_join_stats js;
    CHECK_OK(rk_labels_visit(r, &c, NOW, T0 - 10 * MIN_MS, NOW, 3, visit_cb, &v, &js, &err));
    CHECK_EQ_INT(js.rows, NSERVED);
    CHECK_EQ_INT(js.pending, 1);
    CHECK_EQ_INT(v.n, NSERVED);
    CHECK_EQ_INT(v.version, 7);
    float y[NSERVED];
    for (size_t k = 0; k < v.n; k++) {
        int w = v.item[k] - 'A';
        CHECK(w >= 0 && w < NSERVED);
        if (w < 0 || w >= NSERVED) break;
        CHECK(v.score[k] == x.s.items[w].score);
        CHECK(v.label[k] == scenario_want[w].label);
        CHECK(v.weight[k] == scenario_want[w].weight);
        y[k] = scenario_want[w].label;
    }
    /* Scores 1/64 apart fall in distinct bins: the binned AUC is exact. */
    rk_concept_metrics m;
    rk_concept_get(&v.acc, &m);
    double auc, ll;
    CHECK_OK(rk_metrics_auc(v.score, y, NULL, v.n, &auc, &err));
    CHECK_OK(rk_metrics_logloss(v.score, y, NULL, v.n, &ll, &err));
    CHECK(m.n == NSERVED && m.positives == 4);
    CHECK(fabs(m.auc - auc) < 1e-12);
    CHECK(fabs(m.logloss - ll) < 1e-9);
    /* Another version of the model: nothing, the request skipped. */
    c.model_version = 8;
    memset(&v, 0, sizeof v);
    CHECK_OK(rk_labels_visit(r, &c, NOW, T0 - 10 * MIN_MS, NOW, 0, visit_cb, &v, &js, &err));
    CHECK_EQ_INT(v.n, 0);
    CHECK_EQ_INT(js.requests, 0);
    CHECK_EQ_INT(js.skipped, 2); /* R1: version 7; R3: another model */
    /* A function leaving items out; one stopping the join. */
    c.model_version = 0;
    memset(&v, 0, sizeof v);
    v.answer = 1;
    CHECK_OK(rk_labels_visit(r, &c, NOW, T0 - 10 * MIN_MS, NOW, 0, visit_cb, &v, &js, &err));
    CHECK_EQ_INT(js.rows, 0);
    CHECK_EQ_INT(js.skipped, NSERVED + 1);
    memset(&v, 0, sizeof v);
    v.answer = RK_EIO;
    CHECK_EQ_INT(rk_labels_visit(r, &c, NOW, T0 - 10 * MIN_MS, NOW, 0, visit_cb, &v, &js, &err),
                 RK_EIO);
    CHECK_EQ_INT(err.code, RK_EIO);
    CHECK_EQ_INT(v.n, 1);
    /* A required width the entries do not have. */
    memset(&v, 0, sizeof v);
    CHECK_OK(rk_labels_visit(r, &c, NOW, T0 - 10 * MIN_MS, NOW, 4, visit_cb, &v, &js, &err));
    CHECK_EQ_INT(v.n, 0);
    scenario_close(&x);
}

/* Items served without a vector (an exploration slot) are not rows; the
 * request's other items still are (they once made the whole request read
 * as another feature space). */
TEST(labels_join_skips_items_without_vectors)
{
    const char *dir = rk_test_tmpdir("labels-explore");
    rk_err err = {0};
    rk_store *st = open_store(dir, &err);
    CHECK(st);
    served s;
    CHECK(make_items(&s, 3, 0) == 0);
    rk_fvec_free(&s.items[1].x);
    memset(&s.items[1].x, 0, sizeof s.items[1].x);
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, st, 0));
    for (uint32_t k = 0; k < 3; k++)
        CHECK_OK(rk_batch_hide(b, RK_ENTITY_ITEM, s.ids[k], 0, &err));
    rk_event_in e = {0};
    e.type = "click";
    e.user = "u1";
    e.item = "A";
    e.ts_ms = T0 + MIN_MS;
    e.position = -1;
    e.request_id = "RX";
    CHECK_OK(rk_batch_event(b, &e, &err));
    rk_flog_entry en = make_entry("RX", T0, "u1", &s, 3);
    CHECK_OK(rk_flog_record(b, &en, &err));
    CHECK_OK(rk_store_write(st, b, NULL, &err));
    rk_batch_destroy(b);
    rk_reader *r;
    CHECK_OK(rk_store_reader(st, &r, &err));
    rk_label_conf c;
    rk_label_conf_default(&c, rk_store_schema(st));
    c.model = "gbdt";
    rk_trainset *t;
    CHECK_OK(rk_trainset_create(&t, 3, 10, 0));
    rk_join_stats js;
    CHECK_OK(rk_labels_join(r, &c, NOW, T0 - 10 * MIN_MS, NOW, t, &js, &err));
    CHECK_EQ_INT(js.requests, 1);
    CHECK_EQ_INT(js.skipped, 0);
    CHECK_EQ_INT(rk_trainset_rows(t), 2);
    CHECK_EQ_INT(js.positives, 1);
    rk_trainset_destroy(t);
    rk_reader_close(r);
    free_items(&s);
    rk_store_close(st);
    rk_test_rmdir(dir);
}

TEST(labels_conf)
{
    static const char yaml[] =
        "labels:\n"
        "  window: 10m\n"
        "  mode: graded\n"
        "  positive: {click: 1, purchase: 4}\n"
        "  valued: {watch: 0.05}\n"
        "  valued_min: 10\n"
        "  negative: [dislike]\n"
        "  require_exposure: true\n"
        "  max_gain: 4\n";
    rk_err err = {0};
    rk_conf *cf;
    CHECK_OK(rk_conf_parse_yaml(&cf, yaml, sizeof yaml - 1, "t.yaml", &err));
    rk_schema *sc;
    CHECK_OK(rk_schema_from_conf(&sc, rk_conf_root(cf), &err));
    rk_label_conf c;
    CHECK_OK(rk_label_conf_from_conf(&c, rk_conf_root(cf), sc, &err));
    CHECK_EQ_INT(c.window_ms, 10 * MIN_MS);
    CHECK(c.mode == RK_LABEL_GRADED && c.require_exposure && c.valued_min == 10);
    CHECK(c.max_gain == 4);
    int pos = 0, val = 0, neg = 0, expo = 0;
    for (uint32_t i = 0; i < c.ntypes; i++) {
        if (c.types[i].role == RK_LABEL_POSITIVE) pos++;
        if (c.types[i].role == RK_LABEL_VALUED) {
            val++;
            CHECK_STR(c.types[i].name, "watch");
            CHECK(c.types[i].weight == 0.05);
        }
        if (c.types[i].role == RK_LABEL_NEGATIVE) neg++;
        if (c.types[i].role == RK_LABEL_EXPOSURE) expo++;
    }
    CHECK(pos == 2 && val == 1 && neg == 1 && expo == 1); /* impression kept */
    rk_conf_destroy(cf);

    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"labels: {window: soon}\n", "duration"},
        {"labels: {window: -5}\n", "labels.window: duration out of range"},
        {"labels: {window: 0}\n", "positive duration"},
        {"labels: {mode: best}\n", "labels.mode"},
        {"labels: {positive: {tap: 1}}\n", "unknown event type 'tap'"},
        {"labels: {positive: {click: 0}}\n", "positive weight"},
        {"labels: {positive: [click]}\n", "map of event type"},
        {"labels: {positive: {click: 1}, negative: [click]}\n", "two roles"},
        {"labels: {windw: 5m}\n", "unknown key 'windw'"},
        {"labels: {exposure: [], require_exposure: true}\n", "needs an exposure"},
        {"labels: {max_gain: 0}\n", "positive number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_OK(rk_conf_parse_yaml(&cf, bad[i].yaml, strlen(bad[i].yaml), "t.yaml", &err));
        CHECK_EQ_INT(rk_label_conf_from_conf(&c, rk_conf_root(cf), sc, &err), RK_ECONFIG);
        CHECK_CONTAINS(err.msg, bad[i].msg);
        CHECK_CONTAINS(err.msg, "t.yaml:1");
        rk_conf_destroy(cf);
    }
    /* Durations. */
    static const struct { const char *v; int64_t ms; } dur[] = {
        {"90s", 90000}, {"2h", 7200000}, {"500ms", 500}, {"1d", 86400000}, {"45", 45000},
        {"1.5m", 90000},
    };
    for (size_t i = 0; i < sizeof dur / sizeof dur[0]; i++) {
        char y[64];
        snprintf(y, sizeof y, "labels: {window: '%s'}\n", dur[i].v);
        CHECK_OK(rk_conf_parse_yaml(&cf, y, strlen(y), "t.yaml", &err));
        CHECK_OK(rk_label_conf_from_conf(&c, rk_conf_root(cf), sc, &err));
        CHECK_EQ_INT(c.window_ms, dur[i].ms);
        rk_conf_destroy(cf);
    }
    /* No labels section: the schema's roles. */
    CHECK_OK(rk_conf_parse_yaml(&cf, "{}", 2, "t.yaml", &err));
    CHECK_OK(rk_label_conf_from_conf(&c, rk_conf_root(cf), sc, &err));
    CHECK_EQ_INT(c.window_ms, 30 * MIN_MS);
    CHECK(c.schema == sc);
    rk_conf_destroy(cf);
    rk_schema_destroy(sc);
    /* Without a schema the join refuses. */
    rk_label_conf_default(&c, NULL);
    CHECK_EQ_INT(rk_labels_join(NULL, &c, 0, 0, 1, NULL, NULL, &err), RK_EINVAL);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, flog_encode_decode_roundtrip, flog_encode_validation,
                 flog_decode_refuses_corruption, flog_store_record_get_scan_expire,
                 flog_expire_many, labels_join_scenarios,
                 labels_visit_served_scores, labels_join_skips_items_without_vectors,
                 labels_conf);
}
