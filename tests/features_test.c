/*
 * features_test.c — feature definitions and computation: each transform on
 * hand-computed values, config errors located at file:line, aggregate
 * decay/window/rate/recency math, TTL and admission bounds, online ==
 * offline (store vs replay, bit for bit), no leakage from later events,
 * replay determinism, training sets from replay and datasets, spec
 * serialization, and allocation failures.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "rk_features.h"
#include "rk_store.h"
#include "features/feat_int.h"
#include "test.h"

#define HOUR 3600000LL
#define DAY (24 * HOUR)

static const char *const base_yaml =
    "entities:\n"
    "  item:\n"
    "    attributes:\n"
    "      category: categorical\n"
    "      tags: categorical_list\n"
    "      title: text\n"
    "      price: numeric\n"
    "      published: timestamp\n"
    "  user:\n"
    "    attributes:\n"
    "      country: categorical\n"
    "      age: numeric\n"
    "events:\n"
    "  impression: {role: exposure}\n"
    "  click: {role: positive, weight: 1}\n"
    "  purchase: {role: positive, weight: 10}\n"
    "  watch: {role: valued}\n";

/* Everything a test needs: config, schema, store, spec (attached). */
typedef struct env {
    rk_conf *conf;
    rk_schema *schema;
    rk_store *store;
    rk_feat_spec *spec;
    char dir[256];
    rk_err err;
} env;

static int env_open(env *e, const char *features_yaml, const char *tag)
{
    memset(e, 0, sizeof *e);
    char text[8192];
    snprintf(text, sizeof text, "%s%s", base_yaml, features_yaml);
    if (rk_conf_parse_yaml(&e->conf, text, strlen(text), "test.yaml", &e->err) ||
        rk_schema_from_conf(&e->schema, rk_conf_root(e->conf), &e->err))
        return -1;
    if (tag) {
        snprintf(e->dir, sizeof e->dir, "%s", rk_test_tmpdir(tag));
        rk_store_opts o;
        rk_store_opts_default(&o);
        o.path = e->dir;
        o.map_size = 256 << 20;
        if (rk_store_open(&e->store, &o, e->schema, &e->err)) return -1;
    }
    if (rk_feat_spec_from_conf(&e->spec, rk_conf_root(e->conf), e->schema, &e->err))
        return -1;
    if (e->store && rk_feat_attach(e->spec, e->store, &e->err)) return -1;
    return 0;
}

static void env_close(env *e)
{
    if (e->spec && e->store) rk_feat_detach(e->spec, e->store);
    rk_store_close(e->store);
    rk_feat_spec_destroy(e->spec);
    rk_schema_destroy(e->schema);
    rk_conf_destroy(e->conf);
    if (e->dir[0]) rk_test_rmdir(e->dir);
    memset(e, 0, sizeof *e);
}

static int put_item(env *e, const char *id, const char *cat, const char *title,
                    double price)
{
    rk_batch *b;
    if (rk_batch_create(&b, e->store, 0)) return -1;
    rk_attr_in a[3];
    memset(a, 0, sizeof a);
    size_t n = 0;
    if (cat) {
        a[n].name = "category";
        a[n].type = RK_ATTR_CATEGORICAL;
        a[n].str = cat;
        a[n++].len = strlen(cat);
    }
    if (title) {
        a[n].name = "title";
        a[n].type = RK_ATTR_TEXT;
        a[n].str = title;
        a[n++].len = strlen(title);
    }
    if (!isnan(price)) {
        a[n].name = "price";
        a[n].type = RK_ATTR_NUMERIC;
        a[n++].num = price;
    }
    int rc = rk_batch_upsert(b, RK_ENTITY_ITEM, id, a, n, 0, &e->err);
    if (!rc) rc = rk_store_write(e->store, b, NULL, &e->err);
    rk_batch_destroy(b);
    return rc;
}

static int put_user(env *e, const char *id, const char *country, double age)
{
    rk_batch *b;
    if (rk_batch_create(&b, e->store, 0)) return -1;
    rk_attr_in a[2];
    memset(a, 0, sizeof a);
    size_t n = 0;
    if (country) {
        a[n].name = "country";
        a[n].type = RK_ATTR_CATEGORICAL;
        a[n].str = country;
        a[n++].len = strlen(country);
    }
    if (!isnan(age)) {
        a[n].name = "age";
        a[n].type = RK_ATTR_NUMERIC;
        a[n++].num = age;
    }
    int rc = rk_batch_upsert(b, RK_ENTITY_USER, id, a, n, 0, &e->err);
    if (!rc) rc = rk_store_write(e->store, b, NULL, &e->err);
    rk_batch_destroy(b);
    return rc;
}

static rk_event_in mkev(const char *type, const char *user, const char *item,
                        int64_t ts, const char *ctx)
{
    rk_event_in v = {0};
    v.type = type;
    v.user = user;
    v.item = item;
    v.ts_ms = ts;
    v.position = -1;
    v.context = ctx;
    v.context_len = ctx ? strlen(ctx) : 0;
    return v;
}

/* Writes one event with its aggregate merges, in its own batch. */
static int write_ev(env *e, rk_event_in v)
{
    rk_batch *b;
    rk_reader *r;
    if (rk_batch_create(&b, e->store, 0)) return -1;
    if (rk_store_reader(e->store, &r, &e->err)) {
        rk_batch_destroy(b);
        return -1;
    }
    int rc = rk_feat_batch_event(e->spec, b, &v, r, &e->err);
    rk_reader_close(r);
    if (!rc) rc = rk_store_write(e->store, b, NULL, &e->err);
    rk_batch_destroy(b);
    return rc;
}

/* The request of user at ts in context ctx (either may be NULL) for the
 * n items named in items, described in it (n entries). */
static rk_feat_request items_req(rk_feat_item *it, const char *const *items, size_t n,
                                 const char *user, int64_t ts, const char *ctx)
{
    memset(it, 0, n * sizeof *it);
    for (size_t i = 0; i < n; i++) {
        it[i].id = items[i];
        it[i].len = strlen(items[i]);
    }
    rk_feat_request req = {0};
    req.user = user;
    req.user_len = user ? strlen(user) : 0;
    req.ts_ms = ts;
    req.context = ctx;
    req.context_len = ctx ? strlen(ctx) : 0;
    return req;
}

/* Computes (user, item, ts, ctx) from the online store. */
static int online(env *e, const char *user, const char *item, int64_t ts,
                  const char *ctx, rk_fvec *out)
{
    rk_reader *r;
    rk_feat_source *src;
    if (rk_store_reader(e->store, &r, &e->err)) return -1;
    if (rk_feat_source_create(&src, e->spec)) {
        rk_reader_close(r);
        return -1;
    }
    rk_feat_source_set_reader(src, r);
    rk_feat_item it;
    rk_feat_request req = items_req(&it, &item, item ? 1 : 0, user, ts, ctx);
    int rc = rk_feat_compute(src, &req, item ? &it : NULL, out, &e->err);
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    return rc;
}

static int col(const rk_feat_spec *s, const char *name)
{
    for (uint32_t j = 0; j < rk_feat_ndense(s); j++)
        if (!strcmp(rk_feat_dense_name(s, j), name)) return (int)j;
    return -1;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-6 * (1 + fabs(b)); }

/* ---- transforms on labelled rows ---------------------------------------------- */

/* A rows dataset: column 0 numeric {1, 2, 3, 4, absent}, column 1
 * categorical {a, a, a, b, b, c}. */
static int write_rows(env *e, const char *name)
{
    static const double v0[] = {1, 2, 3, 4, NAN, 2};
    static const char *const c1[] = {"a", "a", "a", "b", "b", "c"};
    rk_batch *b;
    if (rk_batch_create(&b, e->store, 0)) return -1;
    int rc = 0;
    for (int i = 0; !rc && i < 6; i++) {
        uint32_t ni = 0, ci = 1;
        double nv = v0[i];
        const char *cv = c1[i];
        size_t cl = 1;
        rk_row_in row = {0};
        row.label = i % 2;
        row.group = i < 3 ? "q1" : "q2";
        row.group_len = 2;
        row.nnum = isnan(nv) ? 0 : 1;
        row.num_idx = &ni;
        row.num_val = &nv;
        row.ncat = 1;
        row.cat_idx = &ci;
        row.cat_val = &cv;
        row.cat_len = &cl;
        rc = rk_batch_row(b, name, &row, &e->err);
    }
    if (!rc) rc = rk_store_write(e->store, b, NULL, &e->err);
    rk_batch_destroy(b);
    return rc;
}

TEST(numeric_transforms)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  defs:\n"
        "    raw: {kind: column, num: 0}\n"
        "    lg: {kind: column, num: 0, log1p: true, clip: [0, 1.5]}\n"
        "    fill: {kind: column, num: 0, missing: -7, indicator: true}\n"
        "    mfill: {kind: column, num: 0, missing: mean}\n"
        "    z: {kind: column, num: 0, standardize: true}\n"
        "    q: {kind: column, num: 0, buckets: 3}\n"
        "    qh: {kind: column, num: 0, buckets: 2, bucket_output: onehot}\n",
        "feat-num"));
    CHECK_OK(write_rows(&e, "d"));
    const rk_feat_spec *s = e.spec;
    CHECK_EQ_INT(rk_feat_ndense(s), 7);
    CHECK_STR(rk_feat_dense_name(s, 3), "fill.missing");
    CHECK(rk_feat_needs_fit(s));
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_source *src;
    CHECK_OK(rk_feat_source_create(&src, s));
    rk_feat_source_set_reader(src, r);
    rk_fvec v = {0};
    rk_feat_request req = {0};
    CHECK_EQ_INT(rk_feat_compute(src, &req, NULL, &v, &e.err), RK_ESTATE);
    uint64_t h0 = rk_feat_schema_hash(s);
    rk_feat_fit_opts fo;
    rk_feat_fit_opts_default(&fo);
    fo.dataset = "d";
    CHECK_OK(rk_feat_fit(e.spec, r, &fo, &e.err));
    CHECK(!rk_feat_needs_fit(s));
    CHECK(rk_feat_schema_hash(s) != h0);

    /* Values 1, 2, 3, 4, 2 seen: mean 2.4, population sd sqrt(1.04). */
    double x = 3;
    uint32_t ni = 0;
    rk_row row = {0};
    row.nnum = 1;
    row.num_idx = &ni;
    row.num_val = &x;
    req.row = &row;
    CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
    CHECK(v.dense[0] == 3.0f);
    CHECK(near(v.dense[1], log1p(3.0)));            /* 1.386: not clipped */
    CHECK(v.dense[2] == 3.0f && v.dense[3] == 0.0f); /* present: indicator 0 */
    CHECK(v.dense[4] == 3.0f);
    CHECK(near(v.dense[5], (3 - 2.4) / sqrt(1.04)));
    /* Quantile edges from {1,2,2,3,4}: positions 1 and 3 -> 2 and 3;
     * 3 is in bucket 2 (two edges <= 3). */
    CHECK(v.dense[6] == 2.0f);
    CHECK_EQ_INT(v.nsparse, 1);                      /* qh one-hot */
    uint32_t coord3 = v.idx[0];

    x = 0.5;
    CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
    CHECK(near(v.dense[1], log1p(0.5)));
    CHECK(v.dense[6] == 0.0f);
    CHECK(v.idx[0] != coord3);

    x = 100;
    CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
    CHECK(v.dense[1] == 1.5f);                      /* clipped */

    row.nnum = 0;                                   /* missing */
    CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
    CHECK(isnan(v.dense[0]));
    CHECK(isnan(v.dense[1]));
    CHECK(v.dense[2] == -7.0f && v.dense[3] == 1.0f);
    CHECK(near(v.dense[4], 2.4));                   /* mean fill */
    CHECK(isnan(v.dense[5]));
    CHECK(isnan(v.dense[6]));
    CHECK_EQ_INT(v.nsparse, 1);                     /* the "missing" bucket */
    CHECK(v.idx[0] != coord3);

    rk_fvec_free(&v);
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    env_close(&e);
}

TEST(categorical_transforms)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  hash_bits: 20\n"
        "  defs:\n"
        "    h: {kind: column, cat: 1}\n"
        "    o: {kind: column, cat: 1, encode: onehot, vocab_max: 2}\n"
        "    i: {kind: column, cat: 1, encode: index, vocab_max: 2}\n"
        "    m: {kind: column, cat: 1, encode: index, min_count: 3}\n"
        "    h2: {kind: column, cat: 2}\n"
        "    x: {kind: cross, of: [h, h2]}\n",
        "feat-cat"));
    CHECK_OK(write_rows(&e, "d"));
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_fit_opts fo;
    rk_feat_fit_opts_default(&fo);
    fo.dataset = "d";
    CHECK_OK(rk_feat_fit(e.spec, r, &fo, &e.err));
    rk_feat_source *src;
    CHECK_OK(rk_feat_source_create(&src, e.spec));
    CHECK_EQ_INT(rk_feat_ndense(e.spec), 2);

    const char *vals[] = {"a", "b", "c", "zzz"};
    uint32_t hc[4], oc[4];
    float ic[4], mc[4];
    rk_fvec v = {0};
    for (int k = 0; k < 4; k++) {
        uint32_t ci = 1;
        size_t cl = strlen(vals[k]);
        rk_row row = {0};
        uint32_t cl32 = (uint32_t)cl;
        row.ncat = 1;
        row.cat_idx = &ci;
        row.cat_val = &vals[k];
        row.cat_len = &cl32;
        rk_feat_request req = {0};
        req.row = &row;
        CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
        CHECK_EQ_INT(v.nsparse, 2); /* h and o; h2 absent -> no cross */
        hc[k] = v.idx[0];
        oc[k] = v.idx[1];
        ic[k] = v.dense[0];
        mc[k] = v.dense[1];
    }
    /* Hashing keeps every value apart; the vocabulary of 2 keeps a and b
     * (counts 3 and 2), c and unseen values share the OOV index 2. */
    CHECK(hc[0] != hc[1] && hc[1] != hc[2] && hc[2] != hc[3]);
    CHECK(oc[0] != oc[1] && oc[1] != oc[2] && oc[2] == oc[3]);
    CHECK(ic[0] == 0.0f && ic[1] == 1.0f && ic[2] == 2.0f && ic[3] == 2.0f);
    /* min_count 3: only a. */
    CHECK(mc[0] == 0.0f && mc[1] == 1.0f && mc[3] == 1.0f);

    /* The same string in another column hashes elsewhere; with both
     * present the cross appears. */
    uint32_t cidx[2] = {1, 2};
    const char *cv[2] = {"a", "a"};
    uint32_t clen[2] = {1, 1};
    rk_row row = {0};
    row.ncat = 2;
    row.cat_idx = cidx;
    row.cat_val = cv;
    row.cat_len = clen;
    rk_feat_request req = {0};
    req.row = &row;
    CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
    CHECK_EQ_INT(v.nsparse, 4);
    CHECK(v.idx[0] == hc[0]);
    CHECK(v.idx[2] != hc[0]);
    uint32_t cross_a = v.idx[3];
    cv[1] = "b";
    CHECK_OK(rk_feat_compute(src, &req, NULL, &v, &e.err));
    CHECK(v.idx[3] != cross_a);
    rk_fvec_free(&v);
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    env_close(&e);
}

typedef struct words {
    char buf[256];
} words;

static int add_word(void *arg, const char *w, size_t n)
{
    words *x = arg;
    size_t o = strlen(x->buf);
    snprintf(x->buf + o, sizeof x->buf - o, "%s%.*s", o ? " " : "", (int)n, w);
    return 0;
}

TEST(tokenizer)
{
    words w = {""};
    const char *t = "The QUICK brown-fox, a x of 42 caf\xc3\xa9!";
    CHECK_OK(rk_feat_tokenize(t, strlen(t), add_word, &w));
    CHECK_STR(w.buf, "quick brown fox 42 caf\xc3\xa9");
    /* Stopwords at both ends of the list and of every length are dropped;
     * their prefixes, extensions and words past the longest are kept. */
    words w2 = {""};
    const char *t2 = "A about ABOUTS your yours you yo WOULD woul these within with wit";
    CHECK_OK(rk_feat_tokenize(t2, strlen(t2), add_word, &w2));
    CHECK_STR(w2.buf, "abouts yours yo woul within wit");
}

TEST(attributes_text_context_scores)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  utc_offset_minutes: 120\n"
        "  defs:\n"
        "    price: {kind: attribute, attr: price, log1p: true}\n"
        "    age: {kind: attribute, entity: user, attr: age, missing: -1}\n"
        "    item_age: {kind: attribute, attr: published, unit: d}\n"
        "    category: {kind: attribute, attr: category}\n"
        "    country: {kind: attribute, entity: user, attr: country}\n"
        "    title: {kind: attribute, attr: title}\n"
        "    bin_title: {kind: attribute, attr: title, tf: binary}\n"
        "    cx: {kind: cross, of: [country, category]}\n"
        "    dot: {kind: score}\n"
        "    covis: {kind: score, slot: cv}\n"
        "    hour: {kind: context, field: hour}\n"
        "    weekday: {kind: context, field: weekday}\n"
        "    hour_cat: {kind: context, field: hour, type: categorical}\n"
        "    device: {kind: context, field: device}\n"
        "    dist: {kind: context, field: distance, type: numeric}\n",
        "feat-attr"));
    CHECK_OK(put_item(&e, "i1", "shoes", "Red shoes, red laces", 99));
    CHECK_OK(put_user(&e, "u1", "fr", NAN));
    /* published 3 days before the request */
    int64_t t = rk_civil_ms(2026, 11, 22) + 10 * HOUR + 30 * 60000; /* Sunday 10:30Z */
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, e.store, 0));
    rk_attr_in pub = {0};
    pub.name = "published";
    pub.type = RK_ATTR_TIMESTAMP;
    pub.ts_ms = t - 3 * DAY;
    CHECK_OK(rk_batch_upsert(b, RK_ENTITY_ITEM, "i1", &pub, 1, 0, &e.err));
    CHECK_OK(rk_store_write(e.store, b, NULL, &e.err));
    rk_batch_destroy(b);

    const rk_feat_spec *s = e.spec;
    CHECK_EQ_INT(rk_feat_nscores(s), 2);
    uint32_t slot;
    CHECK_OK(rk_feat_score_slot(s, "cv", &slot));
    CHECK_EQ_INT(slot, 1);
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_source *src;
    CHECK_OK(rk_feat_source_create(&src, s));
    rk_feat_source_set_reader(src, r);
    const char *ctx = "{\"device\":\"tv\",\"distance\":2.5}";
    rk_feat_request req = {0};
    req.user = "u1";
    req.user_len = 2;
    req.ts_ms = t;
    req.context = ctx;
    req.context_len = strlen(ctx);
    float scores[2] = {0.75f, NAN};
    rk_feat_item it = {"i1", 2, 0, 0, scores};
    rk_fvec v = {0};
    CHECK_OK(rk_feat_compute(src, &req, &it, &v, &e.err));
    CHECK(near(v.dense[col(s, "price")], log1p(99.0)));
    CHECK(v.dense[col(s, "age")] == -1.0f);
    CHECK(near(v.dense[col(s, "item_age")], 3.0));
    CHECK(v.dense[col(s, "dot")] == 0.75f);
    CHECK(isnan(v.dense[col(s, "covis")]));
    CHECK(v.dense[col(s, "hour")] == 12.0f);   /* 10:30Z at UTC+2 */
    CHECK(v.dense[col(s, "weekday")] == 6.0f); /* Sunday, Monday = 0 */
    CHECK(v.dense[col(s, "dist")] == 2.5f);
    /* Sparse: category 1, country 1, title "red shoes red laces" -> red x2,
     * shoes, laces (3 coordinates, counts 2 1 1) twice (count, binary),
     * cross 1, hour_cat 1, device 1. */
    CHECK_EQ_INT(v.nsparse, 1 + 1 + 3 + 3 + 1 + 1 + 1);
    float sum = 0;
    for (uint32_t i = 2; i < 5; i++) sum += v.val[i];
    CHECK(sum == 4.0f);
    for (uint32_t i = 5; i < 8; i++) CHECK(v.val[i] == 1.0f);
    /* Another device changes one coordinate; no context drops it. */
    rk_fvec v2 = {0};
    req.context = "{\"device\":\"phone\"}";
    req.context_len = strlen(req.context);
    CHECK_OK(rk_feat_compute(src, &req, &it, &v2, &e.err));
    CHECK(v2.idx[v2.nsparse - 1] != v.idx[v.nsparse - 1]);
    CHECK(isnan(v2.dense[col(s, "dist")]));
    req.context = NULL;
    CHECK_OK(rk_feat_compute(src, &req, &it, &v2, &e.err));
    CHECK_EQ_INT(v2.nsparse, v.nsparse - 1);
    /* Unknown user: no country, so no cross either. */
    req.user = "nobody";
    req.user_len = 6;
    CHECK_OK(rk_feat_compute(src, &req, &it, &v2, &e.err));
    CHECK_EQ_INT(v2.nsparse, v.nsparse - 3);
    rk_fvec_free(&v);
    rk_fvec_free(&v2);
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    env_close(&e);
}

TEST(bm25_text_match)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  defs:\n"
        "    bm: {kind: text_match, attrs: [title, category], k1: 1.2, b: 0.75}\n",
        "feat-bm25"));
    CHECK_OK(put_item(&e, "i1", "shoes", "red running shoes", NAN)); /* 4 tokens */
    CHECK_OK(put_item(&e, "i2", "hats", "blue hat", NAN));          /* 3 */
    CHECK_OK(put_item(&e, "i3", "shoes", "red boots", NAN));        /* 3 */
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    CHECK_OK(rk_feat_fit(e.spec, r, NULL, &e.err));
    rk_feat_source *src;
    CHECK_OK(rk_feat_source_create(&src, e.spec));
    rk_feat_source_set_reader(src, r);
    rk_feat_request req = {0};
    req.query = "red shoes";
    req.query_len = strlen(req.query);
    rk_feat_item it[3] = {{"i1", 2, 0, 0, NULL}, {"i2", 2, 0, 0, NULL},
                          {"i3", 2, 0, 0, NULL}};
    rk_fvec v[3] = {{0}};
    CHECK_OK(rk_feat_compute_batch(src, &req, it, 3, v, &e.err));
    /* N = 3, avgdl = 10/3; df(red) = 2, df(shoes) = 2 (i1 has it twice
     * but counts once). */
    double n = 3, avgdl = 10.0 / 3, k1 = 1.2, bb = 0.75;
    double idf = log(1 + (n - 2 + 0.5) / (2 + 0.5));
    double i1 = idf * 1 * (k1 + 1) / (1 + k1 * (1 - bb + bb * 4 / avgdl)) +
                idf * 2 * (k1 + 1) / (2 + k1 * (1 - bb + bb * 4 / avgdl));
    double i3 = idf * 1 * (k1 + 1) / (1 + k1 * (1 - bb + bb * 3 / avgdl)) +
                idf * 1 * (k1 + 1) / (1 + k1 * (1 - bb + bb * 3 / avgdl));
    CHECK(near(v[0].dense[0], i1));
    CHECK(v[1].dense[0] == 0.0f);
    CHECK(near(v[2].dense[0], i3));
    /* The query can come from the context; none at all is missing. */
    req.query = NULL;
    req.context = "{\"query\":\"Red SHOES\"}";
    req.context_len = strlen(req.context);
    CHECK_OK(rk_feat_compute(src, &req, &it[0], &v[1], &e.err));
    CHECK(v[1].dense[0] == v[0].dense[0]);
    req.context = NULL;
    CHECK_OK(rk_feat_compute(src, &req, &it[0], &v[1], &e.err));
    CHECK(isnan(v[1].dense[0]));
    for (int i = 0; i < 3; i++) rk_fvec_free(&v[i]);
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    env_close(&e);
}

/* ---- config errors --------------------------------------------------------------- */

TEST(config_errors)
{
    static const struct {
        const char *yaml, *msg;
    } cases[] = {
        {"features:\n  hash_bit: 3\n", "test.yaml:19: unknown key 'hash_bit'"},
        {"features:\n  hash_bits: 31\n", "test.yaml:19: features.hash_bits"},
        {"features:\n  defs:\n    a: {kind: nope}\n", "test.yaml:20: features.defs.a.kind"},
        {"features:\n  defs:\n    a: {kind: attribute, attr: colour}\n",
         "test.yaml:20: features.defs.a.attr: item has no attribute 'colour'"},
        {"features:\n  defs:\n    a: {kind: attribute, attr: price, encode: hash}\n",
         "test.yaml:20: unknown key 'encode' in features.defs.a"},
        {"features:\n  defs:\n    a:\n      kind: counter\n      key: user\n"
         "      events: [clik]\n",
         "test.yaml:23: features.defs.a.events: unknown event type 'clik'"},
        {"features:\n  defs:\n    a: {kind: counter, key: user, events: [click],\n"
         "        half_life: 3 days}\n",
         "test.yaml:21: features.defs.a.half_life: unknown duration unit ' days'"},
        {"features:\n  defs:\n    a: {kind: counter, key: user, events: [click],\n"
         "        half_life: 1h, windows: [1d]}\n",
         "windows and half_life exclude each other"},
        {"features:\n  defs:\n    a: {kind: rate, key: [user, item.title], num: [click],"
         " den: [impression]}\n",
         "a key needs a categorical attribute"},
        {"features:\n  defs:\n    a: {kind: counter, key: [user, shop], events: [click]}\n",
         "key part 'shop'"},
        {"features:\n  defs:\n    p: {kind: attribute, attr: price}\n"
         "    x: {kind: cross, of: [p, q]}\n",
         "test.yaml:21: features.defs.x.of[0]: 'p' is not a categorical feature"},
        {"features:\n  defs:\n    x: {kind: cross, of: [p]}\n", "needs a list of 2..4"},
        {"features:\n  defs:\n    a: {kind: column, num: 1, cat: 2}\n", "either num"},
        {"features:\n  defs:\n    a: {kind: column, num: 1, clip: [3, 1]}\n",
         "clip needs lo <= hi"},
        {"features:\n  defs:\n    a: {kind: column, num: 1, buckets: 1}\n", "buckets: 0"},
        {"features:\n  state: {sketch_width: 1000}\n", "power of two"},
        {"features:\n  defs:\n    a: {kind: context}\n", "missing 'field'"},
        {"features:\n  defs:\n    a: {kind: rate, key: item, num: [click]}\n",
         "needs num and den"},
        {"features:\n  defs:\n    a: {kind: text_match, attrs: [price]}\n",
         "text_match reads"},
        {"features:\n  defs:\n    a.b: {kind: score}\n", "no spaces or dots"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        env e;
        int rc = env_open(&e, cases[i].yaml, NULL);
        if (rc == 0 || !strstr(e.err.msg, cases[i].msg))
            fprintf(stderr, "  case %zu: got '%s'\n", i, e.err.msg);
        CHECK(rc != 0);
        CHECK_EQ_INT(e.err.code, RK_ECONFIG);
        CHECK_CONTAINS(e.err.msg, cases[i].msg);
        env_close(&e);
    }
}

/* ---- aggregates ------------------------------------------------------------------ */

static const char *const agg_yaml =
    "features:\n"
    "  defs:\n"
    "    clicks: {kind: counter, key: user, events: [click], half_life: 1h}\n"
    "    life: {kind: counter, key: user, events: [click, purchase], weight: type}\n"
    "    watch: {kind: counter, key: user, events: [watch], weight: value}\n"
    "    win: {kind: counter, key: item, events: [impression],\n"
    "          windows: [1h, 4h], buckets_per_window: 4}\n"
    "    ctr: {kind: rate, key: item, num: [click], den: [impression],\n"
    "          prior: {mean: 0.1, strength: 10}}\n"
    "    ucat: {kind: rate, key: [user, item.category], num: [click],\n"
    "           den: [impression], prior: {alpha: 1, beta: 1}}\n"
    "    dev: {kind: counter, key: [item, context.device], events: [impression]}\n"
    "    since: {kind: recency, key: [user, item.category], events: [click]}\n";

TEST(aggregate_math)
{
    env e;
    CHECK_OK(env_open(&e, agg_yaml, "feat-aggmath"));
    const rk_feat_spec *s = e.spec;
    CHECK_OK(put_item(&e, "i1", "shoes", NULL, NAN));
    CHECK_OK(put_item(&e, "i2", "shoes", NULL, NAN));
    int64_t t0 = 1000 * HOUR; /* a whole number of hours */
    const char *tv = "{\"device\":\"tv\"}";
    /* decay: clicks at t0 and t0+1h */
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t0, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t0 + HOUR, NULL)));
    CHECK_OK(write_ev(&e, mkev("purchase", "u1", "i2", t0 + HOUR, NULL)));
    rk_event_in w = mkev("watch", "u1", "i2", t0 + HOUR, NULL);
    w.value = 42.5;
    w.has_value = 1;
    CHECK_OK(write_ev(&e, w));
    /* windows of 15 min (1h) and 1h (4h) buckets: impressions of i1 */
    int64_t imp[] = {0, 10, 50, 70, 130};
    for (size_t i = 0; i < 4; i++)
        CHECK_OK(write_ev(&e, mkev("impression", "u2", "i1", t0 + imp[i] * 60000,
                                   i < 2 ? tv : NULL)));
    rk_fvec v = {0};
    /* 75/15 = 5: the 1h window is buckets 2..5 -> 50 and 70 */
    CHECK_OK(online(&e, "u1", "i1", t0 + 75 * 60000, NULL, &v));
    CHECK(v.dense[col(s, "win.1h")] == 2.0f);
    CHECK(v.dense[col(s, "win.4h")] == 4.0f);
    CHECK_OK(write_ev(&e, mkev("impression", "u2", "i1", t0 + imp[4] * 60000, NULL)));
    CHECK_OK(online(&e, "u1", "i1", t0 + 3 * HOUR, NULL, &v));
    /* 1 * 2^-3 + 1 * 2^-2 */
    CHECK(near(v.dense[col(s, "clicks")], 0.375));
    CHECK(v.dense[col(s, "life")] == 12.0f); /* 1 + 1 + 10, no decay */
    CHECK(v.dense[col(s, "watch")] == 42.5f);
    /* at t0+135m: 1h window = buckets (135/15=9) 6..9 -> 130 only;
     * 4h window = 1h buckets (135/60=2) -1..2 -> all 5 */
    CHECK_OK(online(&e, "u1", "i1", t0 + 135 * 60000, NULL, &v));
    CHECK(v.dense[col(s, "win.1h")] == 1.0f);
    CHECK(v.dense[col(s, "win.4h")] == 5.0f);
    /* ctr of i1: 2 clicks, 5 impressions, prior 1/10 -> (2+1)/(5+10) */
    CHECK(near(v.dense[col(s, "ctr")], 3.0 / 15));
    /* user x category: u1 clicked shoes twice, never saw an impression:
     * (2+1)/(0+2) */
    CHECK(near(v.dense[col(s, "ucat")], 1.5));
    /* recency of u1's last click in shoes (t0+1h) */
    CHECK(near(v.dense[col(s, "since")], 1.25));
    CHECK(isnan(v.dense[col(s, "dev")])); /* no device in the request */
    CHECK_OK(online(&e, "u1", "i1", t0 + 3 * HOUR, tv, &v));
    CHECK(v.dense[col(s, "dev")] == 2.0f);
    /* unseen item: counts 0, rate = prior mean, recency missing for an
     * item without category */
    CHECK_OK(online(&e, "u3", "i9", t0, "{\"device\":\"tv\"}", &v));
    CHECK(v.dense[col(s, "dev")] == 0.0f);
    CHECK(near(v.dense[col(s, "ctr")], 0.1));
    CHECK(isnan(v.dense[col(s, "ucat")]));
    CHECK(isnan(v.dense[col(s, "since")]));
    CHECK(v.dense[col(s, "clicks")] == 0.0f);

    /* Out of order: a click at t0-1h arriving late adds its decayed
     * weight: at t0+3h, 0.375 + 2^-4. */
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t0 - HOUR, NULL)));
    CHECK_OK(online(&e, "u1", "i1", t0 + 3 * HOUR, NULL, &v));
    CHECK(near(v.dense[col(s, "clicks")], 0.4375));
    CHECK(near(v.dense[col(s, "since")], 2.0)); /* last stays t0+1h */
    /* An impression older than the 4h ring falls out of every window. */
    CHECK_OK(write_ev(&e, mkev("impression", "u2", "i1", t0 - 10 * HOUR, NULL)));
    CHECK_OK(online(&e, "u1", "i1", t0 + 135 * 60000, NULL, &v));
    CHECK(v.dense[col(s, "win.4h")] == 5.0f);
    rk_fvec_free(&v);

    rk_feat_online_stats st;
    rk_feat_online_stats_get(s, &st);
    CHECK(st.merges > 0 && st.created > 0 && st.refused == 0);
    env_close(&e);
}

static int count_cb(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (*(size_t *)arg)++;
    return 0;
}

static size_t agg_keys(env *e)
{
    rk_reader *r;
    size_t n = 0;
    if (rk_store_reader(e->store, &r, &e->err)) return (size_t)-1;
    if (rk_reader_kv_scan(r, RK_KV_AGG, NULL, 0, NULL, 0, count_cb, &n)) n = (size_t)-1;
    rk_reader_close(r);
    return n;
}

TEST(ttl_expiry_and_sweep)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  state: {ttl: 1d}\n"
        "  defs:\n"
        "    n: {kind: counter, key: user, events: [click]}\n"
        "    since: {kind: recency, key: user, events: [click]}\n",
        "feat-ttl"));
    int64_t t0 = 100 * DAY;
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i", t0, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i", t0 + HOUR, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u2", "i", t0 + 3 * DAY, NULL)));
    rk_fvec v = {0};
    CHECK_OK(online(&e, "u1", NULL, t0 + 2 * HOUR, NULL, &v));
    CHECK(v.dense[0] == 2.0f);
    /* More than a day after the newest event: empty. */
    CHECK_OK(online(&e, "u1", NULL, t0 + 2 * DAY, NULL, &v));
    CHECK(v.dense[0] == 0.0f && isnan(v.dense[1]));
    /* An update after expiry starts afresh. */
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i", t0 + 2 * DAY, NULL)));
    CHECK_OK(online(&e, "u1", NULL, t0 + 2 * DAY, NULL, &v));
    CHECK(v.dense[0] == 1.0f && v.dense[1] == 0.0f);
    CHECK_EQ_INT(agg_keys(&e), 2);
    /* Sweep at t0 + 3d + 1h: u1 (last t0+2d) is expired, u2 not. */
    uint64_t del;
    CHECK_OK(rk_feat_sweep(e.spec, e.store, t0 + 3 * DAY + HOUR, &del, &e.err));
    CHECK_EQ_INT(del, 1);
    CHECK_EQ_INT(agg_keys(&e), 1);
    CHECK_OK(rk_feat_sweep(e.spec, e.store, t0 + 10 * DAY, &del, &e.err));
    CHECK_EQ_INT(del, 1);
    CHECK_EQ_INT(agg_keys(&e), 0);
    rk_feat_online_stats st;
    rk_feat_online_stats_get(e.spec, &st);
    CHECK_EQ_INT(st.expired, 2);
    rk_fvec_free(&v);
    env_close(&e);
}

TEST(admission_bound)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  state: {admit_after: 3, sketch_width: 4096, sketch_depth: 4}\n"
        "  defs:\n"
        "    n: {kind: counter, key: item, events: [impression]}\n",
        "feat-admit"));
    /* 300 one-off items get no state at all. */
    rk_batch *b;
    rk_reader *r;
    CHECK_OK(rk_batch_create(&b, e.store, 0));
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "once%d", i);
        rk_event_in v = mkev("impression", "u", id, 1000 + i, NULL);
        CHECK_OK(rk_feat_batch_event(e.spec, b, &v, r, &e.err));
    }
    rk_reader_close(r);
    CHECK_EQ_INT(rk_batch_count(b), 600); /* event + merge each */
    CHECK_OK(rk_store_write(e.store, b, NULL, &e.err));
    rk_batch_destroy(b);
    CHECK_EQ_INT(agg_keys(&e), 0);
    /* A hot item is admitted at its third event; the count starts there. */
    rk_fvec v = {0};
    for (int i = 0; i < 5; i++) {
        CHECK_OK(write_ev(&e, mkev("impression", "u", "hot", 5000 + i, NULL)));
        CHECK_OK(online(&e, "u", "hot", 6000, NULL, &v));
        CHECK(v.dense[0] == (i < 2 ? 0.0f : (float)(i - 1)));
    }
    CHECK_EQ_INT(agg_keys(&e), 1);
    rk_feat_online_stats st;
    rk_feat_online_stats_get(e.spec, &st);
    CHECK_EQ_INT(st.refused, 302);
    CHECK_EQ_INT(st.sketch_bytes, 4096 * 4 * 4);
    rk_fvec_free(&v);
    env_close(&e);
}

/* ---- online == offline, leakage, determinism ---------------------------------------- */

static const char *const full_yaml =
    "features:\n"
    "  hash_bits: 18\n"
    "  state: {ttl: 30d}\n"
    "  defs:\n"
    "    price: {kind: attribute, attr: price, log1p: true}\n"
    "    category: {kind: attribute, attr: category}\n"
    "    country: {kind: attribute, entity: user, attr: country}\n"
    "    cx: {kind: cross, of: [country, category]}\n"
    "    device: {kind: context, field: device}\n"
    "    hour: {kind: context, field: hour}\n"
    "    uclicks: {kind: counter, key: user, events: [click], half_life: 2h}\n"
    "    ictr: {kind: rate, key: item, num: [click], den: [impression],\n"
    "           windows: [1h, 1d], prior: {mean: 0.05, strength: 20}}\n"
    "    ictr_d: {kind: rate, key: item, num: [click, purchase], den: [impression],\n"
    "             half_life: 6h, prior: {mean: 0.05, strength: 20}, log1p: true}\n"
    "    ucat: {kind: rate, key: [user, item.category], num: [click],\n"
    "           den: [impression], half_life: 1d, prior: {alpha: 1, beta: 9}}\n"
    "    idev: {kind: counter, key: [item, context.device], events: [impression],\n"
    "           windows: [30m, 6h]}\n"
    "    since: {kind: recency, key: [user, item.category], events: [click, purchase]}\n"
    "    uwatch: {kind: counter, key: user, events: [watch], weight: value,\n"
    "             half_life: 1d}\n";

typedef struct gen {
    uint64_t s;
} gen;

static uint32_t rnd(gen *g, uint32_t n)
{
    g->s = g->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((g->s >> 33) % n);
}

static int setup_catalog(env *e)
{
    static const char *const cats[] = {"shoes", "hats", "bags", "socks"};
    static const char *const countries[] = {"fr", "de", "us"};
    char id[16];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "i%d", i);
        if (put_item(e, id, i % 7 == 6 ? NULL : cats[i % 4], NULL, 5.0 + i)) return -1;
    }
    for (int u = 0; u < 20; u++) {
        snprintf(id, sizeof id, "u%d", u);
        if (u % 5 && put_user(e, id, countries[u % 3], 20 + u)) return -1;
    }
    return 0;
}

/* The k-th generated event (fixed seed). */
typedef struct gev {
    char type[16], user[8], item[8], ctx[40];
    int64_t ts;
    double value;
    int has_value;
} gev;

static void gen_events(gev *out, size_t n, int64_t t0, uint64_t seed)
{
    static const char *const dev[] = {"{\"device\":\"tv\"}", "{\"device\":\"phone\"}",
                                      "{\"device\":\"web\"}", ""};
    gen g = {seed};
    int64_t t = t0;
    for (size_t k = 0; k < n; k++) {
        gev *v = &out[k];
        memset(v, 0, sizeof *v);
        uint32_t x = rnd(&g, 100);
        snprintf(v->type, sizeof v->type, "%s",
                 x < 70 ? "impression" : x < 88 ? "click" : x < 93 ? "purchase" : "watch");
        snprintf(v->user, sizeof v->user, "u%u", rnd(&g, 20));
        snprintf(v->item, sizeof v->item, "i%u", rnd(&g, 30));
        snprintf(v->ctx, sizeof v->ctx, "%s", dev[rnd(&g, 4)]);
        t += 1 + rnd(&g, 40 * 60000); /* strictly increasing */
        v->ts = t;
        if (!strcmp(v->type, "watch")) {
            v->value = rnd(&g, 600) / 4.0;
            v->has_value = 1;
        }
    }
}

static rk_event_in gev_in(const gev *v)
{
    rk_event_in e = mkev(v->type, v->user, v->item, v->ts, v->ctx[0] ? v->ctx : NULL);
    e.value = v->value;
    e.has_value = v->has_value;
    return e;
}

/* Replay callback: the vector of every exposure, encoded, by seq. */
typedef struct capture {
    rk_reader *r;    /* the replay's reader: external ids */
    rk_buf *vec;     /* per seq (1-based), encoded */
    size_t n;
    rk_fvec x;
    rk_err *err;
    size_t calls;
} capture;

static int capture_cb(void *arg, rk_feat_source *src, const rk_event *ev)
{
    capture *c = arg;
    c->calls++;
    if (ev->seq >= c->n) return 0;
    rk_feat_request req = {0};
    rk_feat_item it = {0};
    /* The request an event makes, the way rk_feat_trainset_from_replay
     * builds it for exposures. */
    if (rk_reader_external(c->r, RK_ENTITY_USER, ev->user, &req.user, &req.user_len) ||
        rk_reader_external(c->r, RK_ENTITY_ITEM, ev->item, &it.id, &it.len))
        return -1;
    req.ts_ms = ev->ts_ms;
    req.context = ev->context;
    req.context_len = ev->context_len;
    int rc = rk_feat_compute(src, &req, &it, &c->x, c->err);
    if (rc) return rc;
    rk_buf_reset(&c->vec[ev->seq]);
    return rk_fvec_encode(&c->x, &c->vec[ev->seq]);
}

static int replay_capture(env *e, capture *c)
{
    rk_reader *r;
    if (rk_store_reader(e->store, &r, &e->err)) return -1;
    c->r = r;
    c->err = &e->err;
    int rc = rk_feat_replay(e->spec, r, NULL, capture_cb, c, NULL, &e->err);
    rk_reader_close(r);
    return rc;
}

static void capture_free(capture *c)
{
    for (size_t i = 0; i < c->n; i++) rk_buf_free(&c->vec[i]);
    rk_free(c->vec);
    rk_fvec_free(&c->x);
}

static int capture_init(capture *c, size_t n)
{
    memset(c, 0, sizeof *c);
    c->n = n + 1;
    c->vec = rk_calloc(c->n, sizeof *c->vec);
    return c->vec ? 0 : -1;
}

TEST(online_equals_offline)
{
    env e;
    CHECK_OK(env_open(&e, full_yaml, "feat-onoff"));
    CHECK_OK(setup_catalog(&e));
    enum { N = 400 };
    gev *evs = rk_malloc(N * sizeof *evs);
    CHECK(evs);
    gen_events(evs, N, 500 * DAY, 7);
    /* Online: before writing event k, compute (user_k, item_k) at ts_k. */
    rk_buf *on = rk_calloc(N, sizeof *on);
    CHECK(on);
    rk_fvec v = {0};
    int ok = 1;
    for (size_t k = 0; k < N && ok; k++) {
        ok = online(&e, evs[k].user, evs[k].item, evs[k].ts,
                    evs[k].ctx[0] ? evs[k].ctx : NULL, &v) == 0 &&
             rk_fvec_encode(&v, &on[k]) == 0 && write_ev(&e, gev_in(&evs[k])) == 0;
    }
    if (!ok) fprintf(stderr, "  %s\n", e.err.msg);
    CHECK(ok);
    capture c;
    CHECK_OK(capture_init(&c, N));
    CHECK_OK(replay_capture(&e, &c));
    CHECK_EQ_INT(c.calls, N);
    size_t same = 0, nonzero = 0;
    for (size_t k = 0; k < N; k++) {
        rk_buf *off = &c.vec[k + 1]; /* seq k + 1 */
        if (off->len == on[k].len && !memcmp(off->data, on[k].data, off->len)) same++;
        else if (same + 1 == k + 1) fprintf(stderr, "  first mismatch at event %zu\n", k);
    }
    /* Aggregates really were non-trivial. */
    rk_fvec_decode(&v, c.vec[N].data, c.vec[N].len, NULL, NULL);
    for (uint32_t j = 0; j < v.ndense; j++) nonzero += !isnan(v.dense[j]) && v.dense[j] != 0;
    for (size_t k = 0; k < N; k++) rk_buf_free(&on[k]);
    rk_free(on);
    capture_free(&c);
    rk_free(evs);
    rk_fvec_free(&v);
    env_close(&e);
    CHECK_EQ_INT(same, N);
    CHECK(nonzero >= 8);
}

TEST(no_leakage_and_deterministic_replay)
{
    env e;
    CHECK_OK(env_open(&e, full_yaml, "feat-leak"));
    CHECK_OK(setup_catalog(&e));
    enum { N = 300, M = 200 };
    gev *evs = rk_malloc((N + M) * sizeof *evs);
    CHECK(evs);
    gen_events(evs, N + M, 700 * DAY, 11);
    int ok = 1;
    for (size_t k = 0; k < N && ok; k++) ok = write_ev(&e, gev_in(&evs[k])) == 0;
    CHECK(ok);
    capture a, b, c;
    CHECK_OK(capture_init(&a, N + M));
    CHECK_OK(capture_init(&b, N + M));
    CHECK_OK(capture_init(&c, N + M));
    CHECK_OK(replay_capture(&e, &a));
    CHECK_OK(replay_capture(&e, &b));
    /* Later events (some of them written with timestamps inside the old
     * range would be a different test: these are all after). */
    for (size_t k = N; k < N + M && ok; k++) ok = write_ev(&e, gev_in(&evs[k])) == 0;
    CHECK(ok);
    CHECK_OK(replay_capture(&e, &c));
    size_t det = 0, leak_free = 0;
    for (size_t s = 1; s <= N; s++) {
        det += a.vec[s].len == b.vec[s].len && !memcmp(a.vec[s].data, b.vec[s].data,
                                                       a.vec[s].len);
        leak_free += a.vec[s].len == c.vec[s].len &&
                     !memcmp(a.vec[s].data, c.vec[s].data, a.vec[s].len);
    }
    capture_free(&a);
    capture_free(&b);
    capture_free(&c);
    rk_free(evs);
    env_close(&e);
    CHECK_EQ_INT(det, N);
    CHECK_EQ_INT(leak_free, N);
}

TEST(out_of_order_log_replays_in_time_order)
{
    /* Events written out of time order: replay sorts by (ts, seq), so a
     * vector at an event sees exactly the events before it in time. */
    env e;
    CHECK_OK(env_open(&e, agg_yaml, "feat-ooo"));
    CHECK_OK(put_item(&e, "i1", "shoes", NULL, NAN));
    int64_t t0 = 2000 * HOUR;
    CHECK_OK(write_ev(&e, mkev("impression", "u1", "i1", t0 + 3 * HOUR, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t0 + 1 * HOUR, NULL)));
    CHECK_OK(write_ev(&e, mkev("impression", "u1", "i1", t0 + 2 * HOUR, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t0 + 4 * HOUR, NULL)));
    capture c;
    CHECK_OK(capture_init(&c, 4));
    CHECK_OK(replay_capture(&e, &c));
    rk_fvec v = {0};
    /* seq 1 at t0+3h sees the click at 1h and the impression at 2h */
    CHECK_OK(rk_fvec_decode(&v, c.vec[1].data, c.vec[1].len, NULL, NULL));
    CHECK(near(v.dense[col(e.spec, "clicks")], 0.25));
    CHECK(near(v.dense[col(e.spec, "ctr")], 2.0 / 11));
    /* seq 2 at t0+1h sees nothing */
    CHECK_OK(rk_fvec_decode(&v, c.vec[2].data, c.vec[2].len, NULL, NULL));
    CHECK(v.dense[col(e.spec, "clicks")] == 0.0f);
    CHECK(isnan(v.dense[col(e.spec, "since")]));
    rk_fvec_free(&v);
    capture_free(&c);
    env_close(&e);
}

/* ---- training sets -------------------------------------------------------------------- */

TEST(trainset_from_replay_labels)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  defs:\n"
        "    n: {kind: counter, key: item, events: [click]}\n",
        "feat-tsreplay"));
    int64_t t0 = 3000 * HOUR;
    rk_event_in imp = mkev("impression", "u1", "i1", t0, NULL);
    imp.request_id = "req-1";
    CHECK_OK(write_ev(&e, imp));                                           /* 1: click */
    CHECK_OK(write_ev(&e, mkev("impression", "u1", "i2", t0, NULL)));      /* 2: purchase */
    CHECK_OK(write_ev(&e, mkev("impression", "u2", "i1", t0 + 1, NULL)));  /* 3: late */
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t0 + 10 * 60000, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i2", t0 + 20 * 60000, NULL)));
    CHECK_OK(write_ev(&e, mkev("purchase", "u1", "i2", t0 + 30 * 60000, NULL)));
    CHECK_OK(write_ev(&e, mkev("click", "u2", "i1", t0 + 2 * HOUR, NULL)));
    CHECK_OK(write_ev(&e, mkev("impression", "u3", "i1", t0 + 3 * HOUR, NULL))); /* immature */
    CHECK_OK(write_ev(&e, mkev("click", "u9", "i9", t0 + 3 * HOUR + 30 * 60000, NULL)));
    rk_trainset *ts;
    CHECK_OK(rk_trainset_create(&ts, rk_feat_ndense(e.spec), rk_feat_hash_bits(e.spec), 0));
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_label_opts lo;
    rk_feat_label_opts_default(&lo);
    CHECK_OK(rk_feat_trainset_from_replay(e.spec, r, &lo, ts, &e.err));
    CHECK_EQ_INT(rk_trainset_rows(ts), 3);
    rk_trow row;
    rk_trainset_get(ts, 0, &row);
    CHECK(row.label == 1.0f && row.weight == 1.0f && row.group != 0 && row.ts_ms == t0);
    CHECK(row.x.dense[0] == 0.0f);
    rk_trainset_get(ts, 1, &row);
    CHECK(row.label == 1.0f && row.weight == 10.0f && row.group == 0);
    rk_trainset_get(ts, 2, &row);
    CHECK(row.label == 0.0f && row.weight == 1.0f); /* click 2h later: outside 1h */
    /* graded labels, explicit positives, immature kept */
    rk_trainset_destroy(ts);
    CHECK_OK(rk_trainset_create(&ts, rk_feat_ndense(e.spec), rk_feat_hash_bits(e.spec), 0));
    static const char *const pos[] = {"click", NULL};
    static const double pw[] = {2.0};
    lo.positives = pos;
    lo.weights = pw;
    lo.graded = 1;
    lo.keep_immature = 1;
    lo.window_ms = 3 * HOUR;
    CHECK_OK(rk_feat_trainset_from_replay(e.spec, r, &lo, ts, &e.err));
    CHECK_EQ_INT(rk_trainset_rows(ts), 4);
    rk_trainset_get(ts, 2, &row);
    CHECK(row.label == 2.0f && row.weight == 1.0f);
    rk_trainset_get(ts, 3, &row);
    CHECK(row.label == 0.0f && row.x.dense[0] == 2.0f); /* i1 clicked twice before */
    static const char *const bad[] = {"nope", NULL};
    lo.exposures = bad;
    CHECK_EQ_INT(rk_feat_trainset_from_replay(e.spec, r, &lo, ts, &e.err), RK_EINVAL);
    rk_reader_close(r);
    rk_trainset_destroy(ts);
    env_close(&e);
}

TEST(trainset_from_dataset_default_spec)
{
    env e;
    CHECK_OK(env_open(&e, "", "feat-tsrows"));
    CHECK_OK(write_rows(&e, "d"));
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_spec *s;
    CHECK_EQ_INT(rk_feat_spec_for_dataset(&s, r, "nope", 16, &e.err), RK_ENOTFOUND);
    CHECK_OK(rk_feat_spec_for_dataset(&s, r, "d", 16, &e.err));
    CHECK_EQ_INT(rk_feat_ndense(s), 1);
    CHECK_EQ_INT(rk_feat_nfeatures(s), 3); /* num0, cat0, cat1 */
    CHECK_STR(rk_feat_dense_name(s, 0), "num0");
    rk_trainset *ts;
    CHECK_OK(rk_trainset_create(&ts, 1, 16, 0));
    CHECK_OK(rk_feat_trainset_from_dataset(s, r, "d", ts, &e.err));
    CHECK_EQ_INT(rk_trainset_rows(ts), 6);
    rk_trow a, b;
    rk_trainset_get(ts, 0, &a);
    rk_trainset_get(ts, 3, &b);
    CHECK(a.x.dense[0] == 1.0f && a.label == 0.0f && a.group != 0);
    CHECK(b.label == 1.0f && b.group != a.group && b.x.nsparse == 1);
    rk_trainset_get(ts, 4, &b);
    CHECK(isnan(b.x.dense[0]));
    rk_trainset_get(ts, 1, &b);
    CHECK(b.group == a.group && b.x.idx[0] == a.x.idx[0]); /* both "a" */
    CHECK(a.x.idx[0] < (1u << 16));
    rk_trainset_destroy(ts);
    CHECK_OK(rk_trainset_create(&ts, 2, 16, 0));
    CHECK_EQ_INT(rk_feat_trainset_from_dataset(s, r, "d", ts, &e.err), RK_EINVAL);
    rk_trainset_destroy(ts);
    rk_feat_spec_destroy(s);
    rk_reader_close(r);
    env_close(&e);
}

/* ---- spec serialization, hashing ------------------------------------------------------------ */

TEST(spec_save_load_and_hash)
{
    env e;
    CHECK_OK(env_open(&e, full_yaml, NULL));
    /* The canonical form compiles to the same spec. */
    rk_conf *c;
    const char *canon = rk_feat_canonical(e.spec);
    CHECK_OK(rk_conf_parse_json(&c, canon, strlen(canon), "canon", &e.err));
    rk_feat_spec *s2;
    CHECK_OK(rk_feat_spec_from_conf(&s2, rk_conf_root(c), e.schema, &e.err));
    rk_conf_destroy(c);
    CHECK_STR(rk_feat_canonical(s2), canon);
    CHECK(rk_feat_schema_hash(s2) == rk_feat_schema_hash(e.spec));
    rk_feat_spec_destroy(s2);
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_feat_spec_save(e.spec, &b));
    CHECK_OK(rk_feat_spec_load(&s2, b.data, b.len, e.schema, &e.err));
    CHECK(rk_feat_schema_hash(s2) == rk_feat_schema_hash(e.spec));
    CHECK_EQ_INT(rk_feat_ndense(s2), rk_feat_ndense(e.spec));
    rk_feat_spec_destroy(s2);
    /* Every truncation and a flipped byte in the definition are refused. */
    for (size_t n = 0; n < b.len; n += 7)
        CHECK(rk_feat_spec_load(&s2, b.data, n, e.schema, &e.err) != 0);
    b.data[40] ^= 0x20;
    CHECK(rk_feat_spec_load(&s2, b.data, b.len, e.schema, &e.err) != 0);
    rk_buf_free(&b);
    /* A different definition hashes differently. */
    env f;
    CHECK_OK(env_open(&f, "features:\n  defs:\n    h: {kind: context, field: hour}\n", NULL));
    env g;
    CHECK_OK(env_open(&g, "features:\n  defs:\n    h: {kind: context, field: weekday}\n", NULL));
    CHECK(rk_feat_schema_hash(f.spec) != rk_feat_schema_hash(g.spec));
    env_close(&g);
    env_close(&f);
    env_close(&e);
}

TEST(fitted_spec_roundtrip)
{
    env e;
    CHECK_OK(env_open(&e,
        "features:\n"
        "  defs:\n"
        "    z: {kind: column, num: 0, standardize: true, missing: mean}\n"
        "    q: {kind: column, num: 0, buckets: 3}\n"
        "    o: {kind: column, cat: 1, encode: onehot}\n",
        "feat-fitsave"));
    CHECK_OK(write_rows(&e, "d"));
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_fit_opts fo;
    rk_feat_fit_opts_default(&fo);
    fo.dataset = "d";
    CHECK_OK(rk_feat_fit(e.spec, r, &fo, &e.err));
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_feat_spec_save(e.spec, &b));
    rk_feat_spec *s2;
    CHECK_OK(rk_feat_spec_load(&s2, b.data, b.len, e.schema, &e.err));
    CHECK(!rk_feat_needs_fit(s2));
    CHECK(rk_feat_schema_hash(s2) == rk_feat_schema_hash(e.spec));
    /* Same vectors from both. */
    rk_trainset *t1, *t2;
    CHECK_OK(rk_trainset_create(&t1, 2, 20, 0));
    CHECK_OK(rk_trainset_create(&t2, 2, 20, 0));
    CHECK_OK(rk_feat_trainset_from_dataset(e.spec, r, "d", t1, &e.err));
    CHECK_OK(rk_feat_trainset_from_dataset(s2, r, "d", t2, &e.err));
    for (size_t i = 0; i < 6; i++) {
        rk_trow x, y;
        rk_trainset_get(t1, i, &x);
        rk_trainset_get(t2, i, &y);
        CHECK(!memcmp(x.x.dense, y.x.dense, 8) && x.x.nsparse == y.x.nsparse &&
              !memcmp(x.x.idx, y.x.idx, 4 * x.x.nsparse));
    }
    rk_trainset_destroy(t1);
    rk_trainset_destroy(t2);
    rk_feat_spec_destroy(s2);
    rk_buf_free(&b);
    rk_reader_close(r);
    env_close(&e);
}

/* ---- batches and fetch ----------------------------------------------------------------------- */

TEST(batch_event_all_or_nothing)
{
    env e;
    CHECK_OK(env_open(&e, agg_yaml, "feat-batch"));
    CHECK_OK(put_item(&e, "i1", "shoes", NULL, NAN));
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, e.store, 0));
    rk_event_in v = mkev("click", "u1", "i1", 1000, NULL);
    CHECK_OK(rk_feat_batch_event(e.spec, b, &v, r, &e.err));
    /* click: clicks, life (user), ctr (item), ucat + since (user x cat) */
    CHECK_EQ_INT(rk_batch_count(b), 4);
    size_t bytes = rk_batch_bytes(b);
    rk_event_in bad = mkev("clack", "u1", "i1", 1000, NULL);
    CHECK_EQ_INT(rk_feat_batch_event(e.spec, b, &bad, r, &e.err), RK_EINVAL);
    CHECK_EQ_INT(rk_batch_count(b), 4);
    CHECK_EQ_INT(rk_batch_bytes(b), bytes);
    /* Keys by item attribute need a reader. */
    CHECK_EQ_INT(rk_feat_batch_event(e.spec, b, &v, NULL, &e.err), RK_EINVAL);
    CHECK_EQ_INT(rk_batch_count(b), 4);
    rk_batch_destroy(b);
    /* A batch that fills up in the middle of the merges is rewound. */
    CHECK_OK(rk_batch_create(&b, e.store, 120));
    int rc = 0;
    size_t units = 0;
    while ((rc = rk_feat_batch_event(e.spec, b, &v, r, &e.err)) == 0) units++;
    CHECK_EQ_INT(rc, RK_ELIMIT);
    CHECK_EQ_INT(rk_batch_count(b), 4 * units);
    rk_batch_destroy(b);
    /* A resubmitted event (same id) does not count twice. */
    rk_event_in dup = mkev("click", "u7", "i1", 1500, NULL);
    dup.id = "ev-1";
    CHECK_OK(write_ev(&e, dup));
    CHECK_OK(write_ev(&e, dup));
    rk_fvec dv = {0};
    CHECK_OK(online(&e, "u7", "i1", 1500, NULL, &dv));
    CHECK(dv.dense[col(e.spec, "life")] == 1.0f);
    rk_fvec_free(&dv);
    /* Fetch counts the keys with state. */
    CHECK_OK(write_ev(&e, v));
    rk_reader_close(r);
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    rk_feat_source *src;
    CHECK_OK(rk_feat_source_create(&src, e.spec));
    rk_feat_source_set_reader(src, r);
    rk_feat_request req = {0};
    req.user = "u1";
    req.user_len = 2;
    req.ts_ms = 2000;
    rk_feat_item it[2] = {{"i1", 2, 0, 0, NULL}, {"i2", 2, 0, 0, NULL}};
    size_t found;
    CHECK_OK(rk_feat_fetch(src, &req, it, 2, &found, &e.err));
    CHECK_EQ_INT(found, 3); /* user, item i1, user x shoes */
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    env_close(&e);
}

/* ---- allocation failures ------------------------------------------------------------------------ */

TEST(alloc_failures)
{
    env e;
    CHECK_OK(env_open(&e, full_yaml, "feat-oom"));
    CHECK_OK(setup_catalog(&e));
    gev evs[40];
    gen_events(evs, 40, 900 * DAY, 3);
    for (int k = 0; k < 40; k++) CHECK_OK(write_ev(&e, gev_in(&evs[k])));
    char text[8192];
    snprintf(text, sizeof text, "%s%s", base_yaml, full_yaml);
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    int done = 0;
    /* Compiling, replaying and computing: each allocation in turn fails,
     * until the operation succeeds; each failure is a clean RK_ENOMEM
     * (the harness checks that nothing leaked). */
    for (uint64_t n = 1; !done && n < 100000; n++) {
        rk_feat_spec *s = NULL;
        rk_trainset *ts = NULL;
        rk_mem_fail_at(n, 0);
        int rc = rk_feat_spec_from_conf(&s, rk_conf_root(e.conf), e.schema, &e.err);
        if (!rc) rc = rk_trainset_create(&ts, rk_feat_ndense(s), rk_feat_hash_bits(s), 0);
        if (!rc) rc = rk_feat_trainset_from_replay(s, r, NULL, ts, &e.err);
        rk_mem_fail_at(0, 0);
        if (rc && rc != RK_ENOMEM) fprintf(stderr, "  n=%llu: %s\n",
                                           (unsigned long long)n, e.err.msg);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        done = rc == 0;
        rk_trainset_destroy(ts);
        rk_feat_spec_destroy(s);
    }
    CHECK(done);
    /* Writing through the merge function: the writer's transaction fails
     * whole and the store stays consistent. */
    done = 0;
    for (uint64_t n = 1; !done && n < 10000; n++) {
        rk_mem_fail_at(n, 0);
        int rc = write_ev(&e, mkev("click", "u1", "i1", 950 * DAY, NULL));
        rk_mem_fail_at(0, 0);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        done = rc == 0;
    }
    CHECK(done);
    rk_reader_close(r);
    env_close(&e);
}

/* ---- read cache ------------------------------------------------------------- */

static const char *const cache_yaml_fmt =
    "features:\n"
    "  state: {cache_keys: %s}\n"
    "  defs:\n"
    "    price: {kind: attribute, attr: price}\n"
    "    category: {kind: attribute, attr: category}\n"
    "    title: {kind: attribute, attr: title}\n"
    "    tags: {kind: attribute, attr: tags}\n"
    "    country: {kind: attribute, entity: user, attr: country}\n"
    "    age: {kind: attribute, entity: user, attr: age}\n"
    "    item_clicks: {kind: counter, key: item, events: [click], half_life: 1d}\n"
    "    user_clicks: {kind: counter, key: user, events: [click], windows: [1d]}\n"
    "    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click],\n"
    "                   den: [impression], half_life: 3d, prior: {alpha: 1, beta: 19}}\n"
    "    item_dev: {kind: counter, key: [item, context.device], events: [impression]}\n";

/* An env whose spec has the cache of `keys` capacity, and a second spec of
 * the same definition without a cache (not attached: it reads LMDB). */
static int cache_env(env *e, rk_conf **conf0, rk_feat_spec **spec0, const char *keys,
                     const char *tag)
{
    char y[4096], y0[4096], t0[8192];
    snprintf(y, sizeof y, cache_yaml_fmt, keys);
    snprintf(y0, sizeof y0, cache_yaml_fmt, "0");
    if (env_open(e, y, tag)) return -1;
    snprintf(t0, sizeof t0, "%s%s", base_yaml, y0);
    if (rk_conf_parse_yaml(conf0, t0, strlen(t0), "test0.yaml", &e->err) ||
        rk_feat_spec_from_conf(spec0, rk_conf_root(*conf0), e->schema, &e->err))
        return -1;
    return rk_feat_schema_hash(*spec0) == rk_feat_schema_hash(e->spec) ? 0 : -1;
}

static int same_vec(const rk_fvec *a, const rk_fvec *b)
{
    return a->ndense == b->ndense && a->nsparse == b->nsparse &&
           !memcmp(a->dense, b->dense, a->ndense * sizeof *a->dense) &&
           (!a->nsparse || (!memcmp(a->idx, b->idx, a->nsparse * sizeof *a->idx) &&
                            !memcmp(a->val, b->val, a->nsparse * sizeof *a->val)));
}

/* Computes n items for user at ts on one reader with both specs; returns
 * the number of vectors that differ, -1 on error. out gets the cached
 * spec's vector of item 0. */
static int cached_vs_lmdb(env *e, const rk_feat_spec *spec0, rk_reader *r,
                          const char *user, const char *const *items, size_t n,
                          int64_t ts, const char *ctx, rk_fvec *out0)
{
    rk_feat_source *a = NULL, *b = NULL;
    rk_feat_item it[64];
    rk_fvec va[64], vb[64];
    memset(va, 0, sizeof va);
    memset(vb, 0, sizeof vb);
    rk_feat_request req = items_req(it, items, n, user, ts, ctx);
    int diff = -1;
    if (!rk_feat_source_create(&a, e->spec) && !rk_feat_source_create(&b, spec0)) {
        rk_feat_source_set_reader(a, r);
        rk_feat_source_set_reader(b, r);
        rk_err err = {0};
        /* Twice with the cache: the first may fill, the second hits. */
        if (!rk_feat_compute_batch(a, &req, it, n, va, &err) &&
            !rk_feat_compute_batch(a, &req, it, n, va, &err) &&
            !rk_feat_compute_batch(b, &req, it, n, vb, &err)) {
            diff = 0;
            for (size_t i = 0; i < n; i++) diff += !same_vec(&va[i], &vb[i]);
            if (out0) rk_fvec_copy(out0, &va[0]);
        } else {
            fprintf(stderr, "  compute: %s\n", err.msg);
        }
    }
    for (size_t i = 0; i < 64; i++) {
        rk_fvec_free(&va[i]);
        rk_fvec_free(&vb[i]);
    }
    rk_feat_source_destroy(a);
    rk_feat_source_destroy(b);
    return diff;
}

static int check_now(env *e, const rk_feat_spec *spec0, const char *user,
                     const char *item, int64_t ts, rk_fvec *out)
{
    rk_reader *r;
    if (rk_store_reader(e->store, &r, &e->err)) return -1;
    const char *items[] = {item};
    int d = cached_vs_lmdb(e, spec0, r, user, items, 1, ts, "{\"device\":\"tv\"}", out);
    rk_reader_close(r);
    return d;
}

TEST(cache_coherent_with_writes)
{
    env e;
    rk_conf *conf0 = NULL;
    rk_feat_spec *spec0 = NULL;
    CHECK_OK(cache_env(&e, &conf0, &spec0, "1000", "feat-cache"));
    const rk_feat_spec *s = e.spec;
    int pc = col(s, "price"), ic = col(s, "item_clicks"), uc = col(s, "user_cat_ctr");
    CHECK(pc >= 0 && ic >= 0 && uc >= 0);
    CHECK_OK(put_item(&e, "i1", "shoes", "red running shoes", 10));
    CHECK_OK(put_user(&e, "u1", "fr", 30));
    int64_t t = 100 * DAY;
    rk_fvec v = {0};
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[pc] == 10);
    CHECK(v.dense[ic] == 0);
    /* An event: the cached aggregate must show it at once. */
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t - HOUR, "{\"device\":\"tv\"}")));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[ic] > 0.9);
    float before = v.dense[uc];
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t - HOUR, NULL)));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[ic] > 1.9);
    CHECK(v.dense[uc] > before);
    /* An upsert of the item: new price; a new category moves the
     * user x category key. */
    CHECK_OK(put_item(&e, "i1", "boots", NULL, 25));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[pc] == 25);
    /* The user record too. */
    CHECK_OK(put_user(&e, "u1", "de", 31));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[col(s, "age")] == 31);
    /* Hide keeps attributes; delete drops them. */
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, e.store, 0));
    CHECK_OK(rk_batch_hide(b, RK_ENTITY_ITEM, "i1", 1, &e.err));
    CHECK_OK(rk_store_write(e.store, b, NULL, &e.err));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[pc] == 25);
    rk_batch_clear(b);
    CHECK_OK(rk_batch_delete(b, RK_ENTITY_ITEM, "i1", &e.err));
    CHECK_OK(rk_store_write(e.store, b, NULL, &e.err));
    rk_batch_destroy(b);
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(isnan(v.dense[pc]));
    /* An item unknown when first read (cached as absent) appears. */
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i2", t, &v), 0);
    CHECK(isnan(v.dense[pc]));
    CHECK_OK(put_item(&e, "i2", "hats", "wool hat", 7));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i2", t, &v), 0);
    CHECK(v.dense[pc] == 7);
    /* An old reader keeps seeing its snapshot, cache or not. */
    rk_reader *old;
    CHECK_OK(rk_store_reader(e.store, &old, &e.err));
    CHECK_OK(put_item(&e, "i2", "hats", "wool hat", 8));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i2", t - HOUR, NULL)));
    const char *items[] = {"i2"};
    CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, old, "u1", items, 1, t, NULL, &v), 0);
    CHECK(v.dense[pc] == 7);
    rk_reader_close(old);
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i2", t, &v), 0);
    CHECK(v.dense[pc] == 8);
    rk_feat_cache_stats cs;
    rk_feat_cache_stats_get(e.spec, &cs);
    CHECK(cs.hits > 0 && cs.fills > 0 && cs.invalidations > 0);
    CHECK(cs.entries <= cs.max_entries && cs.bytes > 0);
    /* A spec with cache_keys 0 has none. */
    rk_feat_cache_stats_get(spec0, &cs);
    CHECK_EQ_INT((int)cs.max_entries, 0);
    rk_fvec_free(&v);
    rk_feat_spec_destroy(spec0);
    rk_conf_destroy(conf0);
    env_close(&e);
}

static void cache_catalog(env *e, int nitems, int nusers)
{
    static const char *const cats[] = {"a", "b", "c", "d"};
    char id[32], title[64];
    for (int i = 0; i < nitems; i++) {
        snprintf(id, sizeof id, "i%d", i);
        snprintf(title, sizeof title, "title word%d word%d", i % 7, i % 3);
        put_item(e, id, cats[i % 4], title, i);
    }
    for (int u = 0; u < nusers; u++) {
        snprintf(id, sizeof id, "u%d", u);
        put_user(e, id, u % 2 ? "fr" : "de", 20 + u);
    }
}

TEST(cache_eviction_tiny_capacity)
{
    env e;
    rk_conf *conf0 = NULL;
    rk_feat_spec *spec0 = NULL;
    CHECK_OK(cache_env(&e, &conf0, &spec0, "8", "feat-cache-tiny"));
    cache_catalog(&e, 40, 4);
    static const char *const dev[] = {"tv", "phone"};
    char user[16], item[16], ctx[32];
    for (int k = 0; k < 300; k++) {
        snprintf(user, sizeof user, "u%d", k % 4);
        snprintf(item, sizeof item, "i%d", (k * 7) % 40);
        snprintf(ctx, sizeof ctx, "{\"device\":\"%s\"}", dev[k % 2]);
        CHECK_OK(write_ev(&e, mkev(k % 3 ? "impression" : "click", user, item,
                                   DAY + k * 60000, ctx)));
    }
    char ids[40][16];
    const char *items[40];
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof ids[i], "i%d", i);
        items[i] = ids[i];
    }
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    for (int rep = 0; rep < 3; rep++)
        for (int u = 0; u < 4; u++) {
            snprintf(user, sizeof user, "u%d", u);
            CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, user, items, 40, 2 * DAY,
                                        "{\"device\":\"tv\"}", NULL), 0);
        }
    rk_reader_close(r);
    rk_feat_cache_stats cs;
    rk_feat_cache_stats_get(e.spec, &cs);
    CHECK(cs.evictions > 0);
    CHECK(cs.entries <= cs.max_entries && cs.max_entries <= 64);
    rk_feat_spec_destroy(spec0);
    rk_conf_destroy(conf0);
    env_close(&e);
}

/* Readers compare cached and LMDB-only vectors on one snapshot while a
 * writer keeps changing aggregates and items. */
typedef struct stress {
    env *e;
    const rk_feat_spec *spec0;
    _Atomic int stop;
    _Atomic long reads, diffs, errors, writes;
} stress;

static void *stress_writer(void *arg)
{
    stress *st = arg;
    env *e = st->e;
    rk_err err = {0};
    uint64_t x = 7;
    for (int k = 0; !atomic_load(&st->stop); k++) {
        rk_batch *b;
        rk_reader *r;
        if (rk_batch_create(&b, e->store, 0) || rk_store_reader(e->store, &r, &err)) {
            atomic_fetch_add(&st->errors, 1);
            break;
        }
        for (int j = 0; j < 20; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            char user[16], item[16];
            snprintf(user, sizeof user, "u%d", (int)(x >> 33) % 4);
            snprintf(item, sizeof item, "i%d", (int)(x >> 40) % 40);
            rk_event_in ev = mkev((x >> 20) % 3 ? "impression" : "click", user, item,
                                  DAY + k * 1000 + j, "{\"device\":\"tv\"}");
            if (rk_feat_batch_event(e->spec, b, &ev, r, &err))
                atomic_fetch_add(&st->errors, 1);
        }
        if (k % 5 == 0) {
            char item[16];
            snprintf(item, sizeof item, "i%d", k % 40);
            rk_attr_in a = {0};
            a.name = "price";
            a.type = RK_ATTR_NUMERIC;
            a.num = k;
            rk_attr_in c = {0};
            c.name = "category";
            c.type = RK_ATTR_CATEGORICAL;
            c.str = k % 2 ? "a" : "b";
            c.len = 1;
            rk_attr_in both[2] = {a, c};
            if (rk_batch_upsert(b, RK_ENTITY_ITEM, item, both, 2, 0, &err))
                atomic_fetch_add(&st->errors, 1);
        }
        rk_reader_close(r);
        if (rk_store_write(e->store, b, NULL, &err)) atomic_fetch_add(&st->errors, 1);
        rk_batch_destroy(b);
        atomic_fetch_add(&st->writes, 1);
    }
    return NULL;
}

static void *stress_reader(void *arg)
{
    stress *st = arg;
    char ids[40][16];
    const char *items[40];
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof ids[i], "i%d", i);
        items[i] = ids[i];
    }
    for (int k = 0; !atomic_load(&st->stop); k++) {
        rk_reader *r;
        rk_err err = {0};
        if (rk_store_reader(st->e->store, &r, &err)) {
            atomic_fetch_add(&st->errors, 1);
            break;
        }
        char user[16];
        snprintf(user, sizeof user, "u%d", k % 4);
        int d = cached_vs_lmdb(st->e, st->spec0, r, user, items, 40, 2 * DAY,
                               "{\"device\":\"tv\"}", NULL);
        rk_reader_close(r);
        if (d < 0) atomic_fetch_add(&st->errors, 1);
        else atomic_fetch_add(&st->diffs, d);
        atomic_fetch_add(&st->reads, 1);
    }
    return NULL;
}

TEST(cache_concurrent_readers_and_writer)
{
    env e;
    rk_conf *conf0 = NULL;
    rk_feat_spec *spec0 = NULL;
    /* Small enough that eviction runs concurrently with invalidation. */
    CHECK_OK(cache_env(&e, &conf0, &spec0, "200", "feat-cache-stress"));
    cache_catalog(&e, 40, 4);
    stress st = {&e, spec0, 0, 0, 0, 0, 0};
    pthread_t w, rd[2];
    CHECK(pthread_create(&w, NULL, stress_writer, &st) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&rd[i], NULL, stress_reader, &st) == 0);
    rk_sleep_ms(1500);
    atomic_store(&st.stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++) pthread_join(rd[i], NULL);
    CHECK_EQ_INT((int)atomic_load(&st.errors), 0);
    CHECK_EQ_INT((int)atomic_load(&st.diffs), 0);
    CHECK(atomic_load(&st.reads) > 0 && atomic_load(&st.writes) > 0);
    rk_feat_cache_stats cs;
    rk_feat_cache_stats_get(e.spec, &cs);
    CHECK(cs.hits > 0 && cs.invalidations > 0);
    rk_feat_spec_destroy(spec0);
    rk_conf_destroy(conf0);
    env_close(&e);
}

/* The cache's slot arrays start small and grow with the entries; batched
 * probes (one lock per shard) return what single probes return: every
 * filled value byte for byte, absent keys as absent, invalidated and
 * never-filled keys as misses, entries newer than the reader as misses. */
TEST(cache_growth_and_batch_probe)
{
    enum { NK = 20000 };
    feat_cache *c;
    CHECK_OK(rk__feat_cache_create(&c, 100000, (size_t)64 << 20, 4096));
    /* Commit 2 starts the cache (fills from older snapshots are refused);
     * commit 5 changes nothing and publishes 5. */
    rk_commit_change none = {0};
    rk__feat_cache_commit(c, 2, NULL, 0);
    rk__feat_cache_commit(c, 5, &none, 0);
    rk_feat_cache_stats cs0, cs1;
    rk__feat_cache_stats(c, &cs0);
    unsigned char val[200];
    for (uint32_t i = 0; i < NK; i++) {
        fc_key k = {rk__mix64(i + 1), rk__mix64(i + 7) | 1};
        size_t len = 1 + i % sizeof val;
        for (size_t j = 0; j < len; j++) val[j] = (unsigned char)(i * 31 + j);
        /* Every 7th key absent; every 11th read from commit 5 (newer than
         * the probing reader's 4 below, so a miss for it). */
        rk__feat_cache_fill(c, k, i % 11 == 0 ? 5 : 3, val, len, i % 7 != 0);
    }
    rk__feat_cache_stats(c, &cs1);
    CHECK_EQ_INT((int)cs1.entries, NK);
    CHECK(cs1.bytes > cs0.bytes && cs0.bytes < ((size_t)1 << 20));
    /* One key invalidated by commit 5. */
    unsigned char akey[FEAT_KEY_LEN] = {'A'};
    rk__le64(akey + 1, rk__mix64(1 + 1));
    rk__le64(akey + 9, rk__mix64(1 + 7) | 1);
    rk_commit_change ch = {0};
    ch.kind = RK_CHANGE_KV;
    ch.table = RK_KV_AGG;
    ch.key = akey;
    ch.len = FEAT_KEY_LEN;
    rk__feat_cache_commit(c, 6, &ch, 1);
    fc_get *q = rk_calloc(NK + 100, sizeof *q);
    CHECK(q != NULL);
    rk_arena a;
    rk_arena_init(&a, 64 << 10, (size_t)64 << 20);
    for (uint32_t i = 0; i < NK + 100; i++) {
        q[i].k = (fc_key){rk__mix64(i + 1), rk__mix64(i + 7) | 1};
        q[i].rc = FC_MISS;
    }
    rk__feat_cache_get_many(c, 4, q, NK + 100, &a);
    int bad = 0;
    for (uint32_t i = 0; i < NK + 100; i++) {
        int want = i >= NK || i == 1 || i % 11 == 0 ? FC_MISS
                   : i % 7 == 0                     ? FC_ABSENT
                                                    : FC_HIT;
        if (q[i].rc != want) bad++;
        if (want != FC_HIT) continue;
        size_t len = 1 + i % sizeof val;
        if (q[i].len != len) bad++;
        for (size_t j = 0; j < len && q[i].len == len; j++)
            if (q[i].val[j] != (unsigned char)(i * 31 + j)) bad++;
        /* The single probe agrees. */
        size_t n1;
        if (rk__feat_cache_get(c, q[i].k, 4, val, sizeof val, &n1) != FC_HIT || n1 != len)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* A reader newer than the last published commit bypasses. */
    q[2].rc = FC_MISS;
    rk__feat_cache_get_many(c, 7, q + 2, 1, &a);
    CHECK_EQ_INT(q[2].rc, FC_BYPASS);
    rk_arena_free(&a);
    rk_free(q);
    rk__feat_cache_destroy(c);
}

/* The lock-free path: pinned readers borrow values in place; a value
 * dropped (invalidated, replaced or evicted) while a reader is pinned
 * stays readable and counted as retired until the reader unpins, then is
 * freed; the byte bound counts retired values, so pressure from fills
 * while a reader is pinned never grows memory past it; with every reader
 * slot taken, pin refuses and the locked calls still serve. */
TEST(cache_lockfree_pin_and_reclaim)
{
    feat_cache *c;
    /* 16 shards x 4 KiB of values: a few dozen 200-byte values each, so
     * no shard's slot table grows (a retired table would count in
     * retired_bytes, which the bound below is about values). */
    CHECK_OK(rk__feat_cache_create(&c, 100000, (size_t)64 << 10, 4096));
    rk__feat_cache_commit(c, 2, NULL, 0);
    rk_commit_change none = {0};
    rk__feat_cache_commit(c, 3, &none, 0);
    unsigned char val[200];
    fc_key k0 = {rk__mix64(11), rk__mix64(12) | 1};
    memset(val, 0xab, sizeof val);
    rk__feat_cache_fill_aux(c, k0, 3, val, sizeof val, 1, 0x1234, 2);
    uint32_t hint = 0;
    int rs = rk__feat_cache_pin(c, &hint);
    CHECK(rs >= 0);
    fc_get g[2];
    memset(g, 0, sizeof g);
    g[0].k = k0;
    g[0].rc = FC_MISS;
    g[1].k = (fc_key){rk__mix64(13), rk__mix64(14) | 1};
    g[1].rc = FC_MISS;
    rk__feat_cache_find_many(c, rs, 3, g, 2);
    CHECK_EQ_INT(g[0].rc, FC_HIT);
    CHECK_EQ_INT(g[1].rc, FC_MISS);
    CHECK(g[0].len == sizeof val && g[0].val[0] == 0xab && g[0].val[199] == 0xab);
    CHECK(g[0].auxst == 2 && g[0].aux == 0x1234);
    const unsigned char *held = g[0].val;
    /* Commit 4 changes k0: dropped at once, its bytes retired, not freed. */
    unsigned char akey[FEAT_KEY_LEN] = {'A'};
    rk__le64(akey + 1, k0.a);
    rk__le64(akey + 9, k0.b);
    rk_commit_change ch = {0};
    ch.kind = RK_CHANGE_KV;
    ch.table = RK_KV_AGG;
    ch.key = akey;
    ch.len = FEAT_KEY_LEN;
    rk__feat_cache_commit(c, 4, &ch, 1);
    const unsigned char *v;
    size_t n;
    CHECK_EQ_INT(rk__feat_cache_find(c, rs, k0, 4, &v, &n), FC_MISS);
    rk_feat_cache_stats cs;
    rk__feat_cache_stats(c, &cs);
    CHECK(cs.retired_bytes >= sizeof val && cs.invalidations == 1);
    /* Still readable (ASan would flag a freed block). */
    CHECK(held[0] == 0xab && held[199] == 0xab);
    /* Pressure while pinned: fill far more than the byte bound. Evicted
     * values cannot be freed yet, so fills stop at the bound instead. */
    for (uint32_t i = 0; i < 20000; i++) {
        fc_key k = {rk__mix64(i + 100), rk__mix64(i + 200) | 1};
        rk__feat_cache_fill(c, k, 4, val, sizeof val, 1);
    }
    rk__feat_cache_stats(c, &cs);
    CHECK(cs.value_bytes + cs.retired_bytes <= cs.max_value_bytes);
    CHECK(cs.evictions > 0 && cs.entries > 0);
    CHECK(held[0] == 0xab);
    /* Every reader slot taken: pin refuses, locked probes still work. */
    int more[64];
    int nmore = 0;
    for (;;) {
        uint32_t h = 0;
        int r = rk__feat_cache_pin(c, &h);
        if (r < 0) break;
        more[nmore++] = r;
        CHECK(nmore < 64);
    }
    CHECK_EQ_INT(nmore, 63);
    rk__feat_cache_stats(c, &cs);
    CHECK(cs.unpinned == 1);
    fc_key kl = {rk__mix64(20000 - 1 + 100), rk__mix64(20000 - 1 + 200) | 1};
    unsigned char out[256];
    int lrc = rk__feat_cache_get(c, kl, 4, out, sizeof out, &n);
    CHECK(lrc == FC_HIT || lrc == FC_MISS);
    for (int i = 0; i < nmore; i++) rk__feat_cache_unpin(c, more[i]);
    /* Unpinned: the next commit frees everything retired. */
    rk__feat_cache_unpin(c, rs);
    rk__feat_cache_commit(c, 5, &none, 0);
    rk__feat_cache_stats(c, &cs);
    CHECK_EQ_INT((int)cs.retired_bytes, 0);
    /* And fills use the freed room again. */
    size_t before = cs.fills;
    for (uint32_t i = 0; i < 2000; i++) {
        fc_key k = {rk__mix64(i + 50000), rk__mix64(i + 60000) | 1};
        rk__feat_cache_fill(c, k, 5, val, sizeof val, 1);
    }
    rk__feat_cache_stats(c, &cs);
    CHECK(cs.fills > before && cs.value_bytes <= cs.max_value_bytes);
    rk__feat_cache_destroy(c);
}

/* With every lock-free reader slot taken by others, requests fall back to
 * the locked copies and still equal the LMDB-only vectors; the second
 * batch ([user, item.category] keys shared by candidates) gives the same
 * vectors and fetch counts for known, repeated and unknown items. */
TEST(cache_unpinned_fallback_and_attr_batch)
{
    env e;
    rk_conf *conf0 = NULL;
    rk_feat_spec *spec0 = NULL;
    CHECK_OK(cache_env(&e, &conf0, &spec0, "1000", "feat-cache-unpinned"));
    cache_catalog(&e, 40, 4);
    for (int k = 0; k < 60; k++) {
        char user[16], item[16];
        snprintf(user, sizeof user, "u%d", k % 4);
        snprintf(item, sizeof item, "i%d", (k * 7) % 13);
        CHECK_OK(write_ev(&e, mkev(k % 3 ? "impression" : "click", user, item,
                                   DAY + k * 60000, "{\"device\":\"tv\"}")));
    }
    const char *items[] = {"i0", "i1", "i2", "i3", "i7", "i9", "nope", "i12", "i1"};
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, "u1", items, 9, 2 * DAY,
                                    "{\"device\":\"tv\"}", NULL), 0);
        CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, NULL, items, 9, 2 * DAY, NULL, NULL), 0);
    }
    /* Take every reader slot: requests now lock and copy. */
    int pins[64], np = 0;
    for (;;) {
        uint32_t h = 0;
        int x = rk__feat_cache_pin(e.spec->cache, &h);
        if (x < 0) break;
        pins[np++] = x;
    }
    CHECK_EQ_INT(np, 64);
    CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, "u2", items, 9, 2 * DAY,
                                "{\"device\":\"tv\"}", NULL), 0);
    for (int i = 0; i < np; i++) rk__feat_cache_unpin(e.spec->cache, pins[i]);
    rk_feat_cache_stats cs;
    rk_feat_cache_stats_get(e.spec, &cs);
    CHECK(cs.unpinned >= 2 && cs.hits > 0);
    /* The fetch agrees with the computed vectors' key count. */
    rk_feat_source *a = NULL, *b = NULL;
    CHECK_OK(rk_feat_source_create(&a, e.spec));
    CHECK_OK(rk_feat_source_create(&b, spec0));
    rk_feat_source_set_reader(a, r);
    rk_feat_source_set_reader(b, r);
    rk_feat_item it[9];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 9; i++) {
        it[i].id = items[i];
        it[i].len = strlen(items[i]);
    }
    rk_feat_request req = {0};
    req.user = "u1";
    req.user_len = 2;
    req.ts_ms = 2 * DAY;
    req.context = "{\"device\":\"tv\"}";
    req.context_len = strlen(req.context);
    size_t fa = 0, fb = 0;
    CHECK_OK(rk_feat_fetch(a, &req, it, 9, &fa, &e.err));
    CHECK_OK(rk_feat_fetch(a, &req, it, 9, &fa, &e.err));
    CHECK_OK(rk_feat_fetch(b, &req, it, 9, &fb, &e.err));
    CHECK(fa == fb && fa > 0);
    rk_feat_source_destroy(a);
    rk_feat_source_destroy(b);
    rk_reader_close(r);
    rk_feat_spec_destroy(spec0);
    rk_conf_destroy(conf0);
    env_close(&e);
}

/* Slot tables that grow past 2 MiB are placed on huge-page boundaries
 * and zeroed by the kernel (MADV_DONTNEED) instead of memset: every key
 * filled through several such growths is found with its bytes, by the
 * lock-free and the locked probes, the memory is reported, and a locked
 * probe after the tables were replaced finds nothing stale. Entity keys
 * made from the id's key-part hash equal the ones made from the id, so
 * the commit hook's invalidation finds what the batch probes filled. */
TEST(cache_huge_tables_and_entity_keys)
{
    enum { NK = 400000 };
    feat_cache *c;
    CHECK_OK(rk__feat_cache_create(&c, 1000000, (size_t)256 << 20, 4096));
    rk_commit_change none = {0};
    rk__feat_cache_commit(c, 2, NULL, 0);
    rk__feat_cache_commit(c, 3, &none, 0);
    for (uint32_t i = 0; i < NK; i++) {
        fc_key k = {rk__mix64(i + 3), rk__mix64(i + 9) | 1};
        uint64_t v = rk__mix64(i);
        rk__feat_cache_fill(c, k, 3, &v, sizeof v, i % 5 != 0);
    }
    rk_feat_cache_stats cs;
    rk__feat_cache_stats(c, &cs);
    CHECK_EQ_INT((int)cs.entries, NK);
    /* 16 shards of 25,000 keys: tables of 65,536 64-byte slots. */
    CHECK(cs.bytes >= (size_t)NK * 64 * 2 && cs.bytes <= ((size_t)512 << 20));
    uint32_t hint = 0;
    int rs = rk__feat_cache_pin(c, &hint);
    CHECK(rs >= 0);
    fc_get *q = rk_calloc(NK, sizeof *q);
    CHECK(q != NULL);
    for (uint32_t i = 0; i < NK; i++) {
        q[i].k = (fc_key){rk__mix64(i + 3), rk__mix64(i + 9) | 1};
        q[i].rc = FC_MISS;
    }
    rk__feat_cache_find_many(c, rs, 3, q, NK);
    int bad = 0;
    for (uint32_t i = 0; i < NK; i++) {
        uint64_t v = rk__mix64(i), got = 0;
        if (q[i].rc != (i % 5 ? FC_HIT : FC_ABSENT)) bad++;
        if (i % 5 && (q[i].len != sizeof v || (memcpy(&got, q[i].val, sizeof got), got != v)))
            bad++;
        if (i % 1000 == 0) {
            size_t n;
            int rc = rk__feat_cache_get(c, q[i].k, 3, &got, sizeof got, &n);
            if (rc != (i % 5 ? FC_HIT : FC_ABSENT) || (i % 5 && got != v)) bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    rk__feat_cache_unpin(c, rs);
    rk_free(q);
    /* Entity keys: from the hash or from the id, the same key. */
    const char *id = "item-42";
    fc_key ki = rk__feat_cache_entity_key(RK_ENTITY_ITEM, id, strlen(id));
    fc_key kh = rk__feat_cache_entity_key_h(RK_ENTITY_ITEM,
                                            rk__feat_part_hash(KP_ITEM, id, strlen(id)));
    fc_key ku = rk__feat_cache_entity_key(RK_ENTITY_USER, id, strlen(id));
    CHECK(ki.a == kh.a && ki.b == kh.b && (ki.b & 1));
    /* Key-part hashes are rk_hash64 with a seed per kind (stored keys). */
    CHECK(rk__feat_part_hash(KP_ITEM, id, strlen(id)) == rk_hash64(id, strlen(id), 0x6974656d31ull));
    CHECK(rk__feat_part_hash(KP_USER, "", 0) == rk_hash64("", 0, 0x7573657231ull));
    CHECK(ku.a != ki.a || ku.b != ki.b);
    unsigned char blob[24] = {7};
    rk__feat_cache_fill(c, kh, 3, blob, sizeof blob, 1);
    size_t n;
    CHECK_EQ_INT(rk__feat_cache_get(c, ki, 3, blob, sizeof blob, &n), FC_HIT);
    /* The commit hook names the entity by id: the entry is dropped. */
    rk_commit_change ch = {0};
    ch.kind = RK_CHANGE_ENTITY;
    ch.entity = RK_ENTITY_ITEM;
    ch.key = id;
    ch.len = (uint32_t)strlen(id);
    rk__feat_cache_commit(c, 4, &ch, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, kh, 4, blob, sizeof blob, &n), FC_MISS);
    rk__feat_cache_destroy(c);
}

/* Fetch counts of the cached spec (twice: fill, then hit) and the
 * LMDB-only one for items on a fresh reader; -1 when they differ. */
static long fetch_both(env *e, const rk_feat_spec *spec0, const char *user,
                       const char *const *items, size_t n, int64_t ts)
{
    rk_reader *r;
    rk_feat_source *a = NULL, *b = NULL;
    rk_feat_item it[16];
    rk_feat_request req = items_req(it, items, n, user, ts, "{\"device\":\"tv\"}");
    size_t fa = 0, fa2 = 0, fb = 0;
    long ret = -1;
    if (!rk_store_reader(e->store, &r, &e->err)) {
        if (!rk_feat_source_create(&a, e->spec) && !rk_feat_source_create(&b, spec0)) {
            rk_feat_source_set_reader(a, r);
            rk_feat_source_set_reader(b, r);
            if (!rk_feat_fetch(a, &req, it, n, &fa, &e->err) &&
                !rk_feat_fetch(a, &req, it, n, &fa2, &e->err) &&
                !rk_feat_fetch(b, &req, it, n, &fb, &e->err) && fa == fb && fa2 == fb)
                ret = (long)fb;
        }
        rk_feat_source_destroy(a);
        rk_feat_source_destroy(b);
        rk_reader_close(r);
    }
    return ret;
}

/* Writes ev while a reader opened before it is still open, and computes
 * i1 for u1 at ts with ctx on that old reader (cached against LMDB-only):
 * 0 when the vectors agree, the old reader sees dense[c] in [lo, hi] (the
 * value before ev) and its fill is refused. */
static int old_reader_refused(env *e, const rk_feat_spec *spec0, rk_event_in ev, int64_t ts,
                              const char *ctx, int c, double lo, double hi)
{
    rk_reader *old;
    rk_feat_cache_stats cs0, cs1;
    rk_fvec v = {0};
    const char *one[] = {"i1"};
    if (rk_store_reader(e->store, &old, &e->err)) return -1;
    int bad = write_ev(e, ev) != 0;
    rk_feat_cache_stats_get(e->spec, &cs0);
    bad |= cached_vs_lmdb(e, spec0, old, "u1", one, 1, ts, ctx, &v) != 0;
    bad |= !v.dense || v.dense[c] < lo || v.dense[c] > hi;
    rk_reader_close(old);
    rk_feat_cache_stats_get(e->spec, &cs1);
    bad |= cs1.refused <= cs0.refused;
    rk_fvec_free(&v);
    return bad ? -1 : 0;
}

/* One stamped probe of a device bundle through both batch paths (locked
 * copy, pinned lock-free); -1 when the two disagree. */
static int dev_get(feat_cache *c, fc_key k, uint64_t ist, uint64_t ver)
{
    rk_arena a;
    rk_arena_init(&a, 4096, (size_t)1 << 20);
    fc_get q[2];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 2; i++) {
        q[i].k = k;
        q[i].ist = ist;
        q[i].stamped = 1;
        q[i].rc = FC_MISS;
    }
    rk__feat_cache_get_many(c, ver, &q[0], 1, &a);
    uint32_t hint = 0;
    int rs = rk__feat_cache_pin(c, &hint);
    if (rs >= 0) rk__feat_cache_find_many(c, rs, ver, &q[1], 1);
    rk__feat_cache_unpin(c, rs);
    rk_arena_free(&a);
    return rs >= 0 && q[0].rc == q[1].rc ? q[0].rc : -1;
}

/* Device bundles on a bare cache: an item's record, its [item] record and
 * its [item, context.device] record for one device share one entry, keyed
 * by the device record's key. The hook drops it when that record changes
 * and raises the item's stamp when the item or its [item] record changes:
 * a device bundle older than the stamp is never taken, and a fill older
 * than either change is refused. */
static void device_bundle_hook(void)
{
    const uint64_t lay = 0x1234567890abcdefull, dlay = 0x0fedcba987654321ull;
    feat_cache *c;
    CHECK_OK(rk__feat_cache_create(&c, 1000, (size_t)1 << 20, 4096));
    rk__feat_cache_set_bundle(c, lay, dlay);
    CHECK(rk__feat_cache_dbundle_layout(c) == dlay);
    rk_commit_change none = {0};
    rk__feat_cache_commit(c, 2, NULL, 0);
    rk__feat_cache_commit(c, 3, &none, 0);
    uint64_t ikh = rk__feat_item_key_hash(lay, rk__feat_part_hash(KP_ITEM, "i1", 2));
    uint64_t ikh2 = rk__feat_item_key_hash(lay, rk__feat_part_hash(KP_ITEM, "i2", 2));
    CHECK((ikh & 1023) != (ikh2 & 1023)); /* distinct item stamps */
    const uint64_t dkh = 0x5555aaaa5555aaaaull;
    fc_key dbk = rk__feat_cache_bundle_key(dlay, dkh);
    unsigned char val[48] = {1}, key[FEAT_KEY_LEN];
    rk__feat_cache_fill_stamped(c, dbk, ikh, 3, val, sizeof val, 0, 4);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 3), FC_HIT);
    rk_commit_change ch = {0};
    ch.kind = RK_CHANGE_KV;
    ch.table = RK_KV_AGG;
    ch.key = key;
    ch.len = FEAT_KEY_LEN;
    key[0] = 'A';
    /* Another group's record with the same hash word: kept. */
    rk__le64(key + 1, dlay ^ 1);
    rk__le64(key + 9, dkh);
    rk__feat_cache_commit(c, 4, &ch, 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 4), FC_HIT);
    /* The bundle's device record: dropped; a fill read before the change
     * is refused, one read after it kept. */
    rk__le64(key + 1, dlay);
    rk__feat_cache_commit(c, 5, &ch, 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 5), FC_MISS);
    rk__feat_cache_fill_stamped(c, dbk, ikh, 4, val, sizeof val, 0, 4);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 5), FC_MISS);
    rk__feat_cache_fill_stamped(c, dbk, ikh, 5, val, sizeof val, 0, 4);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 5), FC_HIT);
    /* The item's [item] record: the entry stays in the table but is no
     * longer taken (the item's stamp); older fills are refused. */
    rk__le64(key + 1, lay);
    rk__le64(key + 9, ikh);
    rk__feat_cache_commit(c, 6, &ch, 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 6), FC_MISS);
    /* ... also by a reader whose snapshot precedes that change. */
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 5), FC_MISS);
    rk_feat_cache_stats st0, st1;
    rk__feat_cache_stats(c, &st0);
    rk__feat_cache_fill_stamped(c, dbk, ikh, 5, val, sizeof val, 0, 4);
    rk__feat_cache_stats(c, &st1);
    CHECK_EQ_INT(st1.refused, st0.refused + 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 6), FC_MISS);
    rk__feat_cache_fill_stamped(c, dbk, ikh, 6, val, sizeof val, 0, 4);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 6), FC_HIT);
    /* Upserts: another item's leaves the bundle, the item's own retires
     * it. */
    ch.kind = RK_CHANGE_ENTITY;
    ch.entity = RK_ENTITY_ITEM;
    ch.key = "i2";
    ch.len = 2;
    rk__feat_cache_commit(c, 7, &ch, 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 7), FC_HIT);
    ch.key = "i1";
    rk__feat_cache_commit(c, 8, &ch, 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 8), FC_MISS);
    rk__feat_cache_stats(c, &st0);
    rk__feat_cache_fill_stamped(c, dbk, ikh, 7, val, sizeof val, 0, 4);
    rk__feat_cache_stats(c, &st1);
    CHECK_EQ_INT(st1.refused, st0.refused + 1);
    CHECK_EQ_INT(dev_get(c, dbk, ikh, 8), FC_MISS);
    rk__feat_cache_destroy(c);
}

/* Item bundles: an item's record and its [item] aggregate record share
 * one cache entry. The commit hook drops the bundle when either changes
 * (an aggregate merge names the record's key, an upsert the item's id),
 * and a fill read from a snapshot older than the change is refused, so
 * the next request sees the write; the same for device bundles (which
 * add the item's [item, context.device] record) under changes of each
 * of their parts; cached and LMDB-only vectors and fetch counts stay
 * equal throughout. */
TEST(cache_item_bundles)
{
    /* The hook alone, on a bare cache. */
    const uint64_t lay = 0x1234567890abcdefull;
    feat_cache *c;
    CHECK_OK(rk__feat_cache_create(&c, 1000, (size_t)1 << 20, 4096));
    rk__feat_cache_set_bundle(c, lay, 0);
    rk_commit_change none = {0};
    rk__feat_cache_commit(c, 2, NULL, 0);
    rk__feat_cache_commit(c, 3, &none, 0);
    const char *id = "i1";
    uint64_t kh = rk__feat_item_key_hash(lay, rk__feat_part_hash(KP_ITEM, id, 2));
    fc_key bk = rk__feat_cache_bundle_key(lay, kh), rk = {lay, kh};
    unsigned char val[40] = {1}, out[40], key[FEAT_KEY_LEN];
    size_t n;
    rk__feat_cache_fill(c, bk, 3, val, sizeof val, 1);
    rk__feat_cache_fill(c, rk, 3, val, sizeof val, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 3, out, sizeof out, &n), FC_HIT);
    /* A record of another group with the same hash word: kept. */
    rk_commit_change ch = {0};
    ch.kind = RK_CHANGE_KV;
    ch.table = RK_KV_AGG;
    key[0] = 'A';
    rk__le64(key + 1, lay ^ 1);
    rk__le64(key + 9, kh);
    ch.key = key;
    ch.len = FEAT_KEY_LEN;
    rk__feat_cache_commit(c, 4, &ch, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 4, out, sizeof out, &n), FC_HIT);
    /* The item's [item] record: the record's entry and the bundle go. */
    rk__le64(key + 1, lay);
    rk__feat_cache_commit(c, 5, &ch, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 5, out, sizeof out, &n), FC_MISS);
    CHECK_EQ_INT(rk__feat_cache_get(c, rk, 5, out, sizeof out, &n), FC_MISS);
    /* A bundle read before that commit is refused; one read after it is
     * kept. */
    rk__feat_cache_fill(c, bk, 4, val, sizeof val, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 5, out, sizeof out, &n), FC_MISS);
    rk__feat_cache_fill(c, bk, 5, val, sizeof val, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 5, out, sizeof out, &n), FC_HIT);
    /* An upsert of the item, named by id: the bundle goes; another
     * item's upsert leaves it. */
    ch.kind = RK_CHANGE_ENTITY;
    ch.entity = RK_ENTITY_ITEM;
    ch.key = "i2";
    ch.len = 2;
    rk__feat_cache_commit(c, 6, &ch, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 6, out, sizeof out, &n), FC_HIT);
    ch.key = id;
    rk__feat_cache_commit(c, 7, &ch, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 7, out, sizeof out, &n), FC_MISS);
    rk__feat_cache_fill(c, bk, 6, val, sizeof val, 1);
    CHECK_EQ_INT(rk__feat_cache_get(c, bk, 7, out, sizeof out, &n), FC_MISS);
    rk__feat_cache_destroy(c);
    device_bundle_hook();

    /* Through the store. */
    env e;
    rk_conf *conf0 = NULL;
    rk_feat_spec *spec0 = NULL;
    CHECK_OK(cache_env(&e, &conf0, &spec0, "1000", "feat-cache-bundle"));
    const rk_feat_spec *s = e.spec;
    int32_t gi = rk__feat_item_group(s);
    CHECK(gi >= 0 && rk__feat_cache_bundle_layout(s->cache) == s->g[gi].layout);
    uint64_t ih = rk__feat_part_hash(KP_ITEM, id, 2);
    CHECK(rk__feat_item_key_hash(s->g[gi].layout, ih) == rk__feat_agg_hash(&s->g[gi], &ih));
    /* The inlined key hashes are rk_hash64 over the parts (stored keys). */
    for (uint32_t k = 0; k < s->ngroups; k++) {
        uint64_t parts[FEAT_MAX_PARTS] = {ih, 0x1122334455667788ull, 42};
        unsigned char buf[8 * FEAT_MAX_PARTS];
        for (uint32_t j = 0; j < s->g[k].nparts; j++) rk__le64(buf + 8 * j, parts[j]);
        CHECK(rk__feat_agg_hash(&s->g[k], parts) ==
              rk_hash64(buf, 8u * s->g[k].nparts, s->g[k].layout));
    }
    int pc = col(s, "price"), ic = col(s, "item_clicks");
    CHECK_OK(put_item(&e, "i1", "shoes", "red running shoes", 10));
    CHECK_OK(put_item(&e, "i5", "hats", "wool hat", 3));
    CHECK_OK(put_user(&e, "u1", "fr", 30));
    int64_t t = 100 * DAY;
    const char *items[] = {"i1", "i5", "nope"};
    rk_fvec v = {0};
    /* i5 has no [item] record yet: its bundle holds the item alone. */
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i5", t, &v), 0);
    CHECK(v.dense[ic] == 0 && v.dense[pc] == 3);
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    long f0 = fetch_both(&e, spec0, "u1", items, 3, t);
    CHECK(f0 >= 0);
    rk_feat_cache_stats cs0, cs1;
    rk_feat_cache_stats_get(s, &cs0);
    /* Cached now: the next request hits, fills nothing. */
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    rk_feat_cache_stats_get(s, &cs1);
    CHECK(cs1.fills == cs0.fills && cs1.hits > cs0.hits);
    /* Aggregates written after the bundles were cached are seen at once:
     * a new [item] record for i5, a changed one for i1. */
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i5", t - HOUR, "{\"device\":\"tv\"}")));
    CHECK_OK(write_ev(&e, mkev("click", "u1", "i1", t - HOUR, "{\"device\":\"tv\"}")));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i5", t, &v), 0);
    CHECK(v.dense[ic] > 0.9);
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[ic] > 0.9 && v.dense[ic] < 1.1);
    long f1 = fetch_both(&e, spec0, "u1", items, 3, t);
    CHECK(f1 > f0);
    /* A reader older than a write fills from its snapshot: refused, and
     * the newer reader sees the write. */
    CHECK_OK(old_reader_refused(&e, spec0, mkev("click", "u1", "i1", t - HOUR, NULL), t, NULL,
                                ic, 0.9, 1.1));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[ic] > 1.9);
    /* An upsert of the item after its bundle was cached. */
    CHECK_EQ_INT(fetch_both(&e, spec0, "u1", items, 3, t) >= 0, 1);
    CHECK_OK(put_item(&e, "i1", "boots", NULL, 25));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[pc] == 25 && v.dense[ic] > 1.9);
    CHECK_EQ_INT(fetch_both(&e, spec0, "u1", items, 3, t) >= 0, 1);
    /* Device bundles: i1 on tv and phone, then an impression on tv (its
     * tv record is created), another one while an older reader fills, a
     * click (the [item] record) while an older reader fills, an upsert. */
    int32_t di = rk__feat_item_ctx_group(s);
    CHECK(di >= 0 && rk__feat_cache_dbundle_layout(s->cache) == s->g[di].layout);
    int dc = col(s, "item_dev");
    const char *tv = "{\"device\":\"tv\"}", *phone = "{\"device\":\"phone\"}";
    rk_reader *r;
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, "u1", items, 3, t, phone, &v), 0);
    CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, "u1", items, 3, t, tv, &v), 0);
    rk_reader_close(r);
    double ic0 = v.dense[ic];
    CHECK(dc >= 0 && v.dense[dc] == 0 && v.dense[pc] == 25);
    f0 = fetch_both(&e, spec0, "u1", items, 3, t);
    CHECK(f0 >= 0);
    rk_feat_cache_stats_get(s, &cs0);
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    rk_feat_cache_stats_get(s, &cs1);
    CHECK(cs1.fills == cs0.fills && cs1.hits > cs0.hits);
    CHECK_OK(write_ev(&e, mkev("impression", "u1", "i1", t - HOUR, tv)));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[dc] > 0.9 && v.dense[dc] < 1.1);
    CHECK(fetch_both(&e, spec0, "u1", items, 3, t) > f0);
    CHECK_OK(old_reader_refused(&e, spec0, mkev("impression", "u2", "i1", t - HOUR, tv), t, tv,
                                dc, 0.9, 1.1));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[dc] > 1.9 && v.dense[dc] < 2.1);
    CHECK_EQ_INT(fetch_both(&e, spec0, "u1", items, 3, t) >= 0, 1);
    CHECK_OK(old_reader_refused(&e, spec0, mkev("click", "u1", "i1", t - HOUR, NULL), t, tv,
                                ic, ic0, ic0));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[ic] > ic0 + 0.9 && v.dense[dc] > 1.9);
    CHECK_OK(rk_store_reader(e.store, &r, &e.err));
    CHECK_EQ_INT(cached_vs_lmdb(&e, spec0, r, "u1", items, 3, t, phone, &v), 0);
    rk_reader_close(r);
    CHECK(v.dense[ic] > ic0 + 0.9 && v.dense[dc] == 0);
    CHECK_EQ_INT(fetch_both(&e, spec0, "u1", items, 3, t) >= 0, 1);
    CHECK_OK(put_item(&e, "i1", "sandals", NULL, 40));
    CHECK_EQ_INT(check_now(&e, spec0, "u1", "i1", t, &v), 0);
    CHECK(v.dense[pc] == 40 && v.dense[ic] > ic0 + 0.9 && v.dense[dc] > 1.9);
    CHECK_EQ_INT(fetch_both(&e, spec0, "u1", items, 3, t) >= 0, 1);
    rk_fvec_free(&v);
    rk_feat_spec_destroy(spec0);
    rk_conf_destroy(conf0);
    env_close(&e);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, numeric_transforms, categorical_transforms, tokenizer,
                 attributes_text_context_scores, bm25_text_match, config_errors,
                 aggregate_math, ttl_expiry_and_sweep, admission_bound,
                 online_equals_offline, no_leakage_and_deterministic_replay,
                 out_of_order_log_replays_in_time_order, trainset_from_replay_labels,
                 trainset_from_dataset_default_spec, spec_save_load_and_hash,
                 fitted_spec_roundtrip, batch_event_all_or_nothing, alloc_failures,
                 cache_coherent_with_writes, cache_eviction_tiny_capacity,
                 cache_concurrent_readers_and_writer, cache_growth_and_batch_probe,
                 cache_lockfree_pin_and_reclaim, cache_unpinned_fallback_and_attr_batch,
                 cache_huge_tables_and_entity_keys, cache_item_bundles);
}
