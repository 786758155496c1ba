/*
 * serve_test.c — the serving loop in process, through rk_server_handle (no
 * sockets): JSON input limits, every error path with its status and stable
 * code, API-key roles, events changing the next answer, hidden and deleted
 * items never served, A/B split proportions and per-variant counts,
 * duplicate events counted once, model hot-swap under concurrent load with
 * no failed request, a version that fails to load leaving the previous one
 * serving, deadline degradation, /metrics as valid Prometheus text, and
 * /v1/rank, /v1/score, /v1/similar.
 *
 * One template data directory is built before the tests (a generated
 * catalog and event log, a GBDT ranker "feed", an FTRL ranker "alt", iALS
 * and co-visitation in its registry); each test serves a private copy of
 * it, so tests are independent and may publish, hide and delete freely.
 * Everything is seeded: the outcome does not depend on timing.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "rk_features.h"
#include "rk_retrieval.h"
#include "rk_serve.h"
#include "rk_store.h"
#include "rk_train.h"
#include "test.h"

#define NUSERS 200
#define NITEMS 80
#define NCATS 6

static const char schema_yaml[] =
    "entities:\n"
    "  item:\n"
    "    attributes:\n"
    "      category: categorical\n"
    "      price: numeric\n"
    "  user:\n"
    "    attributes:\n"
    "      country: categorical\n"
    "events:\n"
    "  impression: {role: exposure}\n"
    "  click: {role: positive, weight: 1}\n"
    "  watch: {role: valued, weight: 1}\n"
    "features:\n"
    "  hash_bits: 12\n"
    "  defs:\n"
    "    category: {kind: attribute, entity: item, attr: category}\n"
    "    price: {kind: attribute, entity: item, attr: price}\n"
    "    item_ctr: {kind: rate, key: item, num: [click], den: [impression], "
    "windows: [1d], prior: {mean: 0.1, strength: 10}}\n"
    "    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click], "
    "den: [impression], half_life: 3d}\n"
    "    hour: {kind: context, field: hour}\n";

static char tpl_dir[512];

/* ---- the template data directory ---------------------------------------- */

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int put_entities(rk_store *st, rk_err *err)
{
    rk_batch *b;
    if (rk_batch_create(&b, st, 0)) return RK_ENOMEM;
    int rc = 0;
    char id[32], cat[16];
    for (int i = 0; !rc && i < NITEMS; i++) {
        rk_attr_in a[2];
        memset(a, 0, sizeof a);
        snprintf(id, sizeof id, "i%d", i);
        snprintf(cat, sizeof cat, "c%d", i % NCATS);
        a[0].name = "category";
        a[0].type = RK_ATTR_CATEGORICAL;
        a[0].str = cat;
        a[0].len = strlen(cat);
        a[1].name = "price";
        a[1].type = RK_ATTR_NUMERIC;
        a[1].num = 1 + i % 10;
        rc = rk_batch_upsert(b, RK_ENTITY_ITEM, id, a, 2, 0, err);
    }
    for (int u = 0; !rc && u < NUSERS; u++) {
        rk_attr_in a;
        memset(&a, 0, sizeof a);
        snprintf(id, sizeof id, "u%d", u);
        a.name = "country";
        a.type = RK_ATTR_CATEGORICAL;
        a.str = u % 2 ? "DE" : "FR";
        a.len = 2;
        rc = rk_batch_upsert(b, RK_ENTITY_USER, id, &a, 1, 0, err);
    }
    if (!rc) rc = rk_store_write(st, b, NULL, err);
    rk_batch_destroy(b);
    return rc;
}

/* Six sessions per user of five impressions each, spread over the three
 * days before two hours ago (labels are mature). A user clicks items of
 * their preferred category (u % NCATS) half the time, others rarely; half
 * of the impressions come from the preferred category. */
static int put_events(rk_store *st, const rk_feat_spec *spec, rk_err *err)
{
    uint64_t seed = 42;
    int64_t now = rk_clock_wall_ms() / 3600000 * 3600000;
    int64_t t0 = now - 3 * 86400000LL, span = 3 * 86400000LL - 2 * 3600000LL;
    int rc = 0;
    for (int u = 0; !rc && u < NUSERS; u++) {
        rk_batch *b;
        rk_reader *r;
        if (rk_batch_create(&b, st, 0)) return RK_ENOMEM;
        if ((rc = rk_store_reader(st, &r, err))) {
            rk_batch_destroy(b);
            return rc;
        }
        char user[32], item[32], ctx[32];
        snprintf(user, sizeof user, "u%d", u);
        for (int k = 0; !rc && k < 6; k++) {
            int64_t ts = t0 + span * (k * NUSERS + u) / (6 * NUSERS);
            snprintf(ctx, sizeof ctx, "{\"hour\":%d}", (int)(ts / 3600000 % 24));
            for (int j = 0; !rc && j < 5; j++) {
                int it = (int)(mix(&seed) % NITEMS);
                if (mix(&seed) % 2) it = (int)((it / NCATS) * NCATS + u % NCATS) % NITEMS;
                int match = it % NCATS == u % NCATS;
                snprintf(item, sizeof item, "i%d", it);
                rk_event_in ev = {0};
                ev.type = "impression";
                ev.user = user;
                ev.item = item;
                ev.ts_ms = ts + j;
                ev.position = j;
                ev.context = ctx;
                ev.context_len = strlen(ctx);
                rc = rk_feat_batch_event(spec, b, &ev, r, err);
                if (!rc && (double)(mix(&seed) % 1000) < (match ? 500 : 50)) {
                    ev.type = "click";
                    ev.ts_ms = ts + 5000 + j;
                    ev.position = -1;
                    rc = rk_feat_batch_event(spec, b, &ev, r, err);
                }
            }
        }
        rk_reader_close(r);
        if (!rc) rc = rk_store_write(st, b, NULL, err);
        rk_batch_destroy(b);
    }
    return rc;
}

/* Trains a ranker on the replayed event log and publishes it as name. */
static int train_ranker(rk_store *st, const rk_conf_node *root, const char *name,
                        rk_ranker_kind kind, rk_err *err)
{
    rk_feat_spec *spec = NULL;
    rk_trainset *all = NULL, *tr = NULL, *va = NULL;
    rk_ranker *model = NULL;
    rk_registry *reg = NULL;
    rk_reader *r = NULL;
    rk_buf specb, payload;
    rk_buf_init(&specb, 0);
    rk_buf_init(&payload, 0);
    int64_t cut = 0;
    int rc = rk_store_reader(st, &r, err);
    if (!rc) rc = rk_feat_spec_from_conf(&spec, root, rk_store_schema(st), err);
    if (!rc && rk_feat_needs_fit(spec)) {
        rk_feat_fit_opts fo;
        rk_feat_fit_opts_default(&fo);
        rc = rk_feat_fit(spec, r, &fo, err);
    }
    if (!rc) rc = rk_trainset_create(&all, rk_feat_ndense(spec), rk_feat_hash_bits(spec), 0);
    rk_feat_label_opts lo;
    rk_feat_label_opts_default(&lo);
    if (!rc) rc = rk_feat_trainset_from_replay(spec, r, &lo, all, err);
    if (!rc) rc = rk_trainset_split_point(all, 0.2, 1, &cut);
    if (!rc) rc = rk_trainset_split_time(all, cut, &tr, &va);
    rk_ranker_opts o;
    rk_ranker_opts_default(&o);
    o.kind = kind;
    o.gbdt.ntrees = 15;
    o.gbdt.max_depth = 3;
    o.gbdt.nthread = 1;
    o.ftrl_train.epochs = 2;
    if (!rc) rc = rk_ranker_train(&model, tr, va, &o, err);
    if (!rc) rc = rk_feat_spec_save(spec, &specb);
    if (!rc) rc = rk_ranker_set_spec(model, specb.data, specb.len);
    if (!rc) rc = rk_ranker_save(model, &payload, err);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", rk_store_path(st));
    if (!rc) rc = rk_registry_open(&reg, dir, NULL, err);
    /* Reference histograms of every input and the prediction, as `rankd
     * train --ranker` stores them: what the drift monitor compares with. */
    uint32_t nd = spec ? rk_feat_ndense(spec) : 0;
    size_t nrows = tr ? rk_trainset_rows(tr) : 0;
    rk_refhist **hs = rk_calloc(nd + 1, sizeof *hs);
    rk_refhist *pred = NULL;
    float *colv = rk_malloc((nrows + 1) * sizeof *colv);
    if (!rc && (!hs || !colv)) rc = RK_ENOMEM;
    for (uint32_t j = 0; !rc && j < nd; j++) {
        for (size_t i = 0; i < nrows; i++) {
            rk_trow row;
            rk_trainset_get(tr, i, &row);
            colv[i] = row.x.dense[j];
        }
        rc = rk_refhist_numeric(&hs[j], rk_feat_dense_name(spec, j), colv, nrows, 1,
                                0, err);
    }
    if (!rc) rc = rk_ranker_predict_set(model, tr, colv, err);
    if (!rc) rc = rk_refhist_numeric(&pred, "prediction", colv, nrows, 1, 0, err);
    if (!rc) {
        rk_model_meta meta = {0};
        meta.name = name;
        meta.kind = rk_ranker_kind_name(kind);
        meta.nfeatures = nd;
        meta.features = hs;
        meta.prediction = pred;
        meta.train_rows = nrows;
        rk_publish_result res;
        rc = rk_registry_publish(reg, &meta, kind == RK_RANKER_GBDT ? RK_MODEL_GBDT
                                                                     : RK_MODEL_FTRL,
                                 payload.data, payload.len, NULL, &res, err);
    }
    for (uint32_t j = 0; hs && j < nd; j++) rk_refhist_free(hs[j]);
    rk_free(hs);
    rk_refhist_free(pred);
    rk_free(colv);
    rk_registry_close(reg);
    rk_buf_free(&specb);
    rk_buf_free(&payload);
    rk_ranker_destroy(model);
    rk_trainset_destroy(all);
    rk_trainset_destroy(tr);
    rk_trainset_destroy(va);
    rk_feat_spec_destroy(spec);
    rk_reader_close(r);
    return rc;
}

/* iALS and co-visitation on the interactions, published as ials, covis. */
static int train_retrieval(rk_store *st, rk_err *err)
{
    rk_inter_opts io;
    rk_inter_opts_default(&io);
    rk_interactions *m = NULL;
    int rc = rk_interactions_from_store(&m, st, &io, err);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", rk_store_path(st));
    rk_ials_opts ialso;
    rk_ials_opts_default(&ialso);
    ialso.factors = 8;
    ialso.iterations = 4;
    ialso.threads = 1;
    for (int k = 0; !rc && k < 2; k++) {
        rk_eval_model *mod = NULL;
        rc = k == 0 ? rk_eval_ials_create(&mod, &ialso, err)
                    : rk_eval_covis_create(&mod, NULL, err);
        if (!rc) rc = rk_eval_model_train(mod, m, NULL, err);
        if (!rc) rc = rk_train_publish(mod, dir, "{}", 0, NULL, err);
        rk_eval_model_destroy(mod);
    }
    rk_interactions_free(m);
    return rc;
}

static int tpl_build(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tpl_dir, sizeof tpl_dir, "%s/rk-serve-tpl-%ld",
             base && *base ? base : "/tmp", (long)getpid());
    rk_test_rmdir(tpl_dir);
    rk_err err = {0};
    rk_conf *conf = NULL;
    rk_schema *schema = NULL;
    rk_store *st = NULL;
    rk_feat_spec *spec = NULL;
    int rc = rk_conf_parse_yaml(&conf, schema_yaml, strlen(schema_yaml), "t.yaml", &err);
    if (!rc) rc = rk_schema_from_conf(&schema, rk_conf_root(conf), &err);
    rk_store_opts so;
    rk_store_opts_default(&so);
    so.path = tpl_dir;
    so.map_size = 256u << 20;
    if (!rc) rc = rk_store_open(&st, &so, schema, &err);
    if (!rc) rc = rk_feat_spec_from_conf(&spec, rk_conf_root(conf), rk_store_schema(st), &err);
    if (!rc) rc = rk_feat_attach(spec, st, &err);
    if (!rc) rc = put_entities(st, &err);
    if (!rc) rc = put_events(st, spec, &err);
    if (!rc) rc = train_ranker(st, rk_conf_root(conf), "feed", RK_RANKER_GBDT, &err);
    if (!rc) rc = train_ranker(st, rk_conf_root(conf), "alt", RK_RANKER_FTRL, &err);
    if (!rc) rc = train_retrieval(st, &err);
    if (spec && st) rk_feat_detach(spec, st);
    rk_feat_spec_destroy(spec);
    rk_store_close(st);
    rk_schema_destroy(schema);
    rk_conf_destroy(conf);
    if (rc) fprintf(stderr, "template: %s: %s\n", rk_errname(rc), err.msg);
    return rc;
}

/* ---- a served copy of the template ---------------------------------------- */

typedef struct fx {
    char dir[512];
    rk_conf *conf;
    rk_schema *schema;
    rk_store *store;
    rk_server *srv;
    rk_logger log;
    rk_err err;
    rk_buf out;         /* the last response body */
    int status;         /* the last response status */
} fx;

static int fx_open(fx *f, const char *tag, const char *extra_yaml)
{
    memset(f, 0, sizeof *f);
    rk_buf_init(&f->out, 0);
    snprintf(f->dir, sizeof f->dir, "%s", rk_test_tmpdir(tag));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -a '%s/.' '%s/'", tpl_dir, f->dir);
    if (system(cmd) != 0) return -1;
    size_t n = strlen(schema_yaml) + strlen(extra_yaml) + 1;
    char *text = malloc(n);
    if (!text) return -1;
    snprintf(text, n, "%s%s", schema_yaml, extra_yaml);
    int rc = rk_conf_parse_yaml(&f->conf, text, strlen(text), "test.yaml", &f->err);
    free(text);
    if (!rc) rc = rk_schema_from_conf(&f->schema, rk_conf_root(f->conf), &f->err);
    rk_store_opts so;
    rk_store_opts_default(&so);
    so.path = f->dir;
    so.map_size = 256u << 20;
    if (!rc) rc = rk_store_open(&f->store, &so, f->schema, &f->err);
    rk_serve_opts o;
    rk_serve_opts_default(&o);
    rk_logger_init(&f->log, RK_LOG_OFF, stderr);
    if (!rc) rc = rk_serve_opts_from_conf(&o, rk_conf_root(f->conf), &f->err);
    if (!rc) rc = rk_server_create(&f->srv, f->store, rk_conf_root(f->conf), &o,
                                   &f->log, &f->err);
    if (rc) fprintf(stderr, "  fx_open: %s: %s\n", rk_errname(rc), f->err.msg);
    return rc;
}

static void fx_close(fx *f)
{
    rk_server_destroy(f->srv);
    rk_store_close(f->store);
    rk_schema_destroy(f->schema);
    rk_conf_destroy(f->conf);
    rk_buf_free(&f->out);
    if (f->dir[0]) rk_test_rmdir(f->dir);
    memset(f, 0, sizeof *f);
}

/* One request; the body is kept NUL-terminated in f->out. */
static int call(fx *f, const char *method, const char *url, const char *key,
                const char *body)
{
    rk_buf_reset(&f->out);
    f->status = 0;
    int rc = rk_server_handle(f->srv, method, url, key, body,
                              body ? strlen(body) : 0, &f->status, &f->out);
    (void)rk_buf_putc(&f->out, '\0');
    f->out.len--;
    return rc ? -rc : f->status;
}

/* One request whose JSON answer is parsed (NULL when not JSON). The caller
 * owns the result (json_decref). */
static json_t *callj(fx *f, const char *method, const char *url,
                     const char *key, const char *body)
{
    call(f, method, url, key, body);
    return json_loadb(f->out.data ? f->out.data : "", f->out.len, 0, NULL);
}

static int is_rid(json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) != 16) return 0;
    for (const char *p = json_string_value(v); *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

/* The request must fail with status and code, and the body must be exactly
 * {error, detail, request_id}. 0 when so; prints what differs otherwise. */
static int expect_err(fx *f, const char *method, const char *url,
                      const char *key, const char *body, size_t len,
                      int status, const char *code)
{
    rk_buf_reset(&f->out);
    f->status = 0;
    rk_server_handle(f->srv, method, url, key, body, len, &f->status, &f->out);
    json_t *j = json_loadb(f->out.data ? f->out.data : "", f->out.len, 0, NULL);
    int ok = j && json_is_object(j) && json_object_size(j) == 3 &&
             json_is_string(json_object_get(j, "error")) &&
             strcmp(json_string_value(json_object_get(j, "error")), code) == 0 &&
             json_is_string(json_object_get(j, "detail")) &&
             json_string_length(json_object_get(j, "detail")) > 0 &&
             is_rid(json_object_get(j, "request_id")) && f->status == status;
    if (!ok)
        fprintf(stderr, "  %s %s %.80s: expected %d %s, got %d %.*s\n", method,
                url, body ? body : "", status, code, f->status,
                (int)(f->out.len < 300 ? f->out.len : 300),
                f->out.data ? f->out.data : "");
    json_decref(j);
    return ok ? 0 : -1;
}
static size_t len_of(const char *s) { return s ? strlen(s) : 0; }
#define EXPECT_ERR(f, m, u, k, b, st, code) \
    CHECK(expect_err(f, m, u, k, b, len_of(b), st, code) == 0)

/* The value of one Prometheus sample line "name{labels} value" (-1 when
 * absent). */
static double metric(fx *f, const char *series)
{
    call(f, "GET", "/metrics", NULL, NULL);
    size_t n = strlen(series);
    const char *p = f->out.data;
    while (p && *p) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

static const char *str_of(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* 1 when the answer's "items" list holds id. */
static int has_item(json_t *ans, const char *id)
{
    json_t *items = json_object_get(ans, "items"), *it;
    size_t i;
    json_array_foreach(items, i, it) {
        const char *s = str_of(it, "id");
        if (s && strcmp(s, id) == 0) return 1;
    }
    return 0;
}

static const char *item_at(json_t *ans, size_t i)
{
    return str_of(json_array_get(json_object_get(ans, "items"), i), "id");
}

/* ---- serve.clock ------------------------------------------------------------ */

/* The clock option: wall by default, event when asked, anything else a
 * config error naming the place. */
TEST(serve_clock_option)
{
    static const struct {
        const char *yaml;
        int rc, event;
    } cases[] = {
        {"serve:\n  ranker: feed\n", 0, 0},
        {"serve:\n  clock: wall\n", 0, 0},
        {"serve:\n  clock: event\n", 0, 1},
        {"serve:\n  clock: lunar\n", RK_ECONFIG, 0},
        {"serve:\n  clock: [event]\n", RK_ECONFIG, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_conf *c = NULL;
        rk_err err = {0};
        CHECK_OK(rk_conf_parse_yaml(&c, cases[i].yaml, strlen(cases[i].yaml),
                                    "clock.yaml", &err));
        rk_serve_opts o;
        rk_serve_opts_default(&o);
        CHECK_EQ_INT(o.clock_event, 0);
        CHECK_EQ_INT(rk_serve_opts_from_conf(&o, rk_conf_root(c), &err), cases[i].rc);
        if (cases[i].rc) CHECK_CONTAINS(err.msg, "clock.yaml:2");
        else CHECK_EQ_INT(o.clock_event, cases[i].event);
        if (i == 3) CHECK_CONTAINS(err.msg, "expected wall or event");
        rk_conf_destroy(c);
    }
}

/* ---- rk_serve_json_limits -------------------------------------------------- */

TEST(json_limits_table)
{
    static const struct {
        const char *json;
        unsigned depth;
        size_t array;
        int rc;
    } cases[] = {
        {"[1,2,3]", 4, 3, 0},
        {"[1,2,3]", 4, 2, RK_ELIMIT},
        {"[]", 4, 1, 0},
        {"[ ]", 4, 1, 0},
        {"[1]", 4, 1, 0},
        {"[1,2]", 4, 1, RK_ELIMIT},
        {"[[1,2],[3,4]]", 4, 2, 0},
        {"[[1,2,3]]", 4, 2, RK_ELIMIT},
        {"[[],[],[]]", 4, 2, RK_ELIMIT},
        {"{\"a\":1,\"b\":2,\"c\":3}", 4, 1, 0},      /* objects are not arrays */
        {"[{\"a\":1,\"b\":2}]", 4, 1, 0},
        {"[\"a,b,c,d\"]", 4, 1, 0},                 /* commas inside strings */
        {"\"[[[[[[[[\"", 1, 1, 0},                  /* brackets inside strings */
        {"[\"]]]\",[[1]]]", 3, 5, 0},
        {"[\"]]]\",[[[1]]]]", 3, 5, RK_ELIMIT},
        {"[\"\\\"[[[[\"]", 1, 5, 0},                /* escaped quote */
        {"[\"a\\\\\",[[[1]]]]", 3, 5, RK_ELIMIT},    /* escaped backslash ends it */
        {"[[[]]]", 3, 5, 0},
        {"[[[]]]", 2, 5, RK_ELIMIT},
        {"{\"a\":{\"b\":{\"c\":{}}}}", 3, 5, RK_ELIMIT},
        {"]]]][[[", 1, 5, 0},                       /* malformed: the parser's */
        {"[1,2,", 4, 5, 0},
        {"\"abc\\", 1, 1, 0},                        /* backslash at the end */
        {"[\"abc", 1, 1, 0},                         /* unterminated string */
        {"", 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_err err = {0};
        int rc = rk_serve_json_limits(cases[i].json, strlen(cases[i].json),
                                      cases[i].depth, cases[i].array, &err);
        if (rc != cases[i].rc)
            fprintf(stderr, "  case %zu %s: got %s\n", i, cases[i].json, rk_errname(rc));
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc) CHECK_CONTAINS(err.msg, " at byte ");
    }
    /* The offset is reported; n bounds the scan. */
    rk_err err = {0};
    CHECK_EQ_INT(rk_serve_json_limits("[[[]]]", 6, 2, 10, &err), RK_ELIMIT);
    CHECK_CONTAINS(err.msg, "deeper than 2 at byte 2");
    CHECK_EQ_INT(rk_serve_json_limits("[1,2,3,4]", 3, 4, 2, &err), 0);
    CHECK_EQ_INT(rk_serve_json_limits("[1,2,3,4]", 9, 4, 3, &err), RK_ELIMIT);
    CHECK_CONTAINS(err.msg, "more than 3 elements at byte 6");
    /* A depth limit over 1000 is capped at 1000: 1001 levels are refused. */
    char deep[1002];
    memset(deep, '[', 1001);
    deep[1001] = '\0';
    CHECK_EQ_INT(rk_serve_json_limits(deep, 1001, 5000, 10, &err), RK_ELIMIT);
    CHECK_EQ_INT(rk_serve_json_limits(deep, 1000, 5000, 10, &err), 0);
}

/* ---- error paths ---------------------------------------------------------- */

static const char errors_yaml[] =
    "serve:\n"
    "  ranker: feed\n"
    "  max_body_bytes: 4096\n"
    "  max_json_depth: 8\n"
    "  max_array: 100\n";

TEST(errors_have_status_and_stable_code)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-errors", errors_yaml));
    static const struct {
        const char *method, *url, *body;
        int status;
        const char *code;
    } cases[] = {
        {"POST", "/v1/recommend", "{", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "{\"user\": NaN}", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"n\": Infinity}", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\"} x", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "{\"user\": \"\xff\xfe\"}", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "{\"user\":\"u1\",\"user\":\"u2\"}", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "null", 400, "BAD_JSON"},
        {"POST", "/v1/recommend", "", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "[1, 2]", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": 5}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"n\": \"5\"}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"n\": 1.5}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"n\": 0}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"n\": 201}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"\"}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"bogus\": 1}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"explain\": 1}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"context\": [1]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"deadline_ms\": -1}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"exclude\": \"i1\"}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"exclude\": [1]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"filters\": {\"nope\": [\"x\"]}}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"filters\": {\"category\": []}}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"user\": \"u1\", \"filters\": {\"price\": {\"min\": \"a\"}}}", 400, "BAD_REQUEST"},
        {"POST", "/v1/recommend", "{\"context\": [[[[[[[[[1]]]]]]]]]}", 400, "LIMIT_EXCEEDED"},
        {"POST", "/v1/rank", "{}", 400, "BAD_REQUEST"},
        {"POST", "/v1/rank", "{\"candidates\": []}", 400, "BAD_REQUEST"},
        {"POST", "/v1/rank", "{\"candidates\": [1]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/rank", "{\"candidates\": [\"i1\"], \"n\": 2}", 400, "BAD_REQUEST"},
        {"POST", "/v1/rank", "{\"candidates\": [{\"id\": \"i1\", \"x\": 1}]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/rank", "{\"candidates\": [{\"id\": \"i1\", \"features\": {\"nope\": 1}}]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/score", "{\"rows\": []}", 400, "BAD_REQUEST"},
        {"POST", "/v1/score", "{\"rows\": [1]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/score", "{\"rows\": [{\"features\": {\"a\": [1]}}]}", 400, "BAD_REQUEST"},
        {"POST", "/v1/score", "{\"rows\": [{\"features\": {}}], \"model\": \"nope\"}", 404, "UNKNOWN_MODEL"},
        {"POST", "/v1/events", "[]", 400, "BAD_REQUEST"},
        {"POST", "/v1/events", "{\"type\": \"click\", \"user\": \"u1\"}", 400, "BAD_REQUEST"},
        {"POST", "/v1/events", "{\"type\": \"nope\", \"user\": \"u1\", \"item\": \"i1\"}", 400, "BAD_REQUEST"},
        {"POST", "/v1/events", "{\"type\": \"click\", \"user\": \"u1\", \"item\": \"i1\", \"when\": 1}", 400, "BAD_REQUEST"},
        {"POST", "/v1/events", "{\"events\": {}}", 400, "BAD_REQUEST"},
        {"POST", "/v1/events", "{\"events\": [], \"x\": 1}", 400, "BAD_REQUEST"},
        {"POST", "/v1/events", "[{\"type\": \"click\", \"user\": \"u1\", \"item\": \"i1\"}, 7]", 400, "BAD_REQUEST"},
        {"PUT", "/v1/items/i1", "{\"id\": \"i2\"}", 400, "BAD_REQUEST"},
        {"PUT", "/v1/items/i1", "{\"deleted\": true}", 400, "BAD_REQUEST"},
        {"PUT", "/v1/items/i1", "{\"hidden\": 1}", 400, "BAD_REQUEST"},
        {"PUT", "/v1/items/i1", "{\"colour\": \"red\"}", 400, "BAD_REQUEST"},
        {"PUT", "/v1/items/i1", "[]", 400, "BAD_REQUEST"},
        {"PUT", "/v1/users/u1", "{\"age\": 3}", 400, "BAD_REQUEST"},
        {"GET", "/v1/nope", NULL, 404, "NOT_FOUND"},
        {"GET", "/v1/items/", NULL, 404, "NOT_FOUND"},
        {"GET", "/v1/items/i1/extra", NULL, 404, "NOT_FOUND"},
        {"DELETE", "/v1/recommend", NULL, 405, "METHOD_NOT_ALLOWED"},
        {"GET", "/v1/events", NULL, 405, "METHOD_NOT_ALLOWED"},
        {"POST", "/v1/items/i1", "{}", 405, "METHOD_NOT_ALLOWED"},
        {"GET", "/v1/items/nope", NULL, 404, "UNKNOWN_ITEM"},
        {"DELETE", "/v1/items/nope", NULL, 404, "UNKNOWN_ITEM"},
        {"GET", "/v1/similar/nope", NULL, 404, "UNKNOWN_ITEM"},
        {"GET", "/v1/similar/i1?n=0", NULL, 400, "BAD_REQUEST"},
        {"GET", "/v1/similar/i1?n=x", NULL, 400, "BAD_REQUEST"},
        {"GET", "/v1/users/nope", NULL, 404, "UNKNOWN_USER"},
        {"GET", "/v1/items/%zz", NULL, 400, "BAD_REQUEST"},
        {"GET", "/v1/items/a%00b", NULL, 400, "BAD_REQUEST"},
        {"POST", "/v1/models/nope/promote", "{\"version\": 1}", 404, "UNKNOWN_MODEL"},
        {"POST", "/v1/models/feed/promote", "{}", 400, "BAD_REQUEST"},
        {"POST", "/v1/models/feed/promote", "{\"version\": 0}", 400, "BAD_REQUEST"},
        {"POST", "/v1/models/feed/promote", "{\"version\": 1, \"x\": 1}", 400, "BAD_REQUEST"},
        {"POST", "/v1/models/feed/promote", "{\"version\": 99}", 404, "UNKNOWN_MODEL"},
        {"POST", "/v1/models/feed/rollback", NULL, 409, "CONFLICT"},
        {"POST", "/v1/models/nope/rollback", NULL, 404, "UNKNOWN_MODEL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        EXPECT_ERR(&f, cases[i].method, cases[i].url, NULL, cases[i].body,
                   cases[i].status, cases[i].code);

    /* Arrays and bodies over the configured limits. */
    rk_buf b;
    rk_buf_init(&b, 0);
    (void)rk_buf_puts(&b, "{\"user\": \"u1\", \"exclude\": [");
    for (int i = 0; i < 101; i++) (void)rk_buf_printf(&b, "%s\"i%d\"", i ? "," : "", i);
    (void)rk_buf_puts(&b, "]}");
    int rc = expect_err(&f, "POST", "/v1/recommend", NULL, b.data, b.len, 400,
                        "LIMIT_EXCEEDED");
    rk_buf_reset(&b);
    (void)rk_buf_puts(&b, "{\"user\": \"u1\", \"context\": {\"pad\": \"");
    while (b.len < 5000) (void)rk_buf_putc(&b, 'x');
    (void)rk_buf_puts(&b, "\"}}");
    if (!rc) rc = expect_err(&f, "POST", "/v1/recommend", NULL, b.data, b.len,
                             413, "PAYLOAD_TOO_LARGE");
    /* Oversize is refused whatever the route's body handling. */
    if (!rc) rc = expect_err(&f, "POST", "/v1/events", NULL, b.data, b.len,
                             413, "PAYLOAD_TOO_LARGE");
    rk_buf_free(&b);
    CHECK(rc == 0);

    /* Brackets and escapes inside strings count for nothing. */
    json_t *j = callj(&f, "POST", "/v1/recommend", NULL,
                      "{\"user\": \"[[[[[[[[[[[[{{{{{{{{\\\"\\\\\", \"n\": 3, "
                      "\"exclude\": [\"]]]]]]]]]]]]]]]]]\", \",,,,\"]}");
    CHECK(f.status == 200);
    CHECK(json_array_size(json_object_get(j, "items")) == 3);
    json_decref(j);

    /* Each code is counted in /metrics. */
    CHECK(metric(&f, "rankd_errors_total{code=\"BAD_JSON\"}") >= 7);
    CHECK(metric(&f, "rankd_errors_total{code=\"PAYLOAD_TOO_LARGE\"}") == 2);
    CHECK(metric(&f, "rankd_errors_total{code=\"METHOD_NOT_ALLOWED\"}") == 3);
    CHECK(metric(&f, "rankd_errors_total{code=\"UNKNOWN_USER\"}") == 1);

    /* rk_server_handle appends to out: an error keeps what was there. */
    rk_buf keep;
    rk_buf_init(&keep, 0);
    (void)rk_buf_puts(&keep, "PREFIX");
    int st = 0;
    rk_server_handle(f.srv, "GET", "/v1/nope", NULL, NULL, 0, &st, &keep);
    int prefix_kept = keep.len > 6 && memcmp(keep.data, "PREFIX{", 7) == 0;
    rk_buf_free(&keep);
    CHECK(st == 404);
    CHECK(prefix_kept);
    fx_close(&f);
}

/* ---- API keys ---------------------------------------------------------------- */

static const char auth_yaml[] =
    "serve:\n"
    "  ranker: feed\n"
    "  api_keys:\n"
    "    - {key: read-key-0123456789, roles: [read], name: reader}\n"
    "    - {key: write-key-0123456789, roles: [write], name: writer}\n"
    "    - {key: admin-key-0123456789, roles: [admin], name: ops}\n";

TEST(api_key_roles)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-auth", auth_yaml));
    const char *rec = "{\"user\": \"u1\", \"n\": 3}";
    const char *ev = "{\"type\": \"click\", \"user\": \"u1\", \"item\": \"i1\"}";
    const char *R = "read-key-0123456789", *W = "write-key-0123456789",
               *A = "admin-key-0123456789";
    EXPECT_ERR(&f, "POST", "/v1/recommend", NULL, rec, 401, "UNAUTHORIZED");
    EXPECT_ERR(&f, "POST", "/v1/recommend", "read-key-012345678", rec, 401, "UNAUTHORIZED");
    EXPECT_ERR(&f, "POST", "/v1/recommend", "read-key-01234567890", rec, 401, "UNAUTHORIZED");
    EXPECT_ERR(&f, "POST", "/v1/recommend", "", rec, 401, "UNAUTHORIZED");
    CHECK(call(&f, "POST", "/v1/recommend", R, rec) == 200);
    CHECK(call(&f, "POST", "/v1/recommend", A, rec) == 200);
    EXPECT_ERR(&f, "POST", "/v1/recommend", W, rec, 403, "FORBIDDEN");
    EXPECT_ERR(&f, "POST", "/v1/events", R, ev, 403, "FORBIDDEN");
    CHECK(call(&f, "POST", "/v1/events", W, ev) == 200);
    CHECK(call(&f, "POST", "/v1/events", A, ev) == 200);
    EXPECT_ERR(&f, "PUT", "/v1/items/i1", R, "{\"hidden\": false}", 403, "FORBIDDEN");
    CHECK(call(&f, "GET", "/v1/items/i1", R, NULL) == 200);
    EXPECT_ERR(&f, "GET", "/v1/models", R, NULL, 403, "FORBIDDEN");
    EXPECT_ERR(&f, "GET", "/v1/models", W, NULL, 403, "FORBIDDEN");
    EXPECT_ERR(&f, "POST", "/v1/models/feed/promote", W, "{\"version\": 1}", 403, "FORBIDDEN");
    EXPECT_ERR(&f, "POST", "/v1/models/feed/promote", NULL, "{\"version\": 1}", 401, "UNAUTHORIZED");
    EXPECT_ERR(&f, "GET", "/v1/experiments", R, NULL, 403, "FORBIDDEN");
    CHECK(call(&f, "GET", "/v1/models", A, NULL) == 200);
    CHECK(call(&f, "POST", "/v1/models/feed/promote", A, "{\"version\": 1}") == 200);
    CHECK(call(&f, "GET", "/v1/experiments", A, NULL) == 200);
    /* Probes and metrics are open. */
    CHECK(call(&f, "GET", "/healthz", NULL, NULL) == 200);
    CHECK(call(&f, "GET", "/readyz", NULL, NULL) == 200);
    CHECK(call(&f, "GET", "/metrics", NULL, NULL) == 200);
    /* Unknown routes are 404 before any key check. */
    EXPECT_ERR(&f, "GET", "/v1/nope", NULL, NULL, 404, "NOT_FOUND");
    CHECK(metric(&f, "rankd_errors_total{code=\"UNAUTHORIZED\"}") == 5);
    fx_close(&f);
}

/* ---- events, hidden and deleted items -------------------------------------- */

static const char plain_yaml[] = "serve:\n  ranker: feed\n";

TEST(events_change_the_next_answer)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-events", plain_yaml));
    /* A user the store has never seen gets a cold-start answer. */
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL, "{\"user\": \"newbie\", \"n\": 10}");
    CHECK(f.status == 200);
    CHECK(json_is_true(json_object_get(a, "cold_start")));
    CHECK(json_array_size(json_object_get(a, "items")) == 10);
    CHECK(is_rid(json_object_get(a, "request_id")));
    char first[32], second[32];
    snprintf(first, sizeof first, "%s", item_at(a, 0));
    snprintf(second, sizeof second, "%s", item_at(a, 1));
    json_decref(a);
    EXPECT_ERR(&f, "GET", "/v1/users/newbie", NULL, NULL, 404, "UNKNOWN_USER");
    char body[256];
    snprintf(body, sizeof body, "{\"events\": [{\"type\": \"click\", \"user\": \"newbie\", "
             "\"item\": \"%s\"}, {\"type\": \"click\", \"user\": \"newbie\", \"item\": \"%s\"}]}",
             first, second);
    json_t *ack = callj(&f, "POST", "/v1/events", NULL, body);
    CHECK(f.status == 200);
    CHECK(json_integer_value(json_object_get(ack, "accepted")) == 2);
    json_decref(ack);
    json_t *u = callj(&f, "GET", "/v1/users/newbie", NULL, NULL);
    CHECK(f.status == 200);
    CHECK(json_integer_value(json_object_get(u, "recent_events")) == 2);
    json_decref(u);
    /* The clicked items are seen now: the next answer is personal and
     * leaves them out. */
    json_t *b = callj(&f, "POST", "/v1/recommend", NULL, "{\"user\": \"newbie\", \"n\": 10}");
    CHECK(f.status == 200);
    CHECK(json_object_get(b, "cold_start") == NULL);
    CHECK(json_array_size(json_object_get(b, "items")) == 10);
    int has1 = has_item(b, first), has2 = has_item(b, second);
    json_decref(b);
    CHECK(!has1 && !has2);
    CHECK(metric(&f, "rankd_events_ingested_total") == 2);
    fx_close(&f);
}

/* Every answer for users u0..u59 and a cold user, normal and degraded,
 * and the similar lists of every item: none holds id. */
static int never_served(fx *f, const char *x, const char *y)
{
    char body[128], url[64];
    for (int u = -1; u < 60; u++) {
        for (int deg = 0; deg < 2; deg++) {
            if (u < 0) snprintf(body, sizeof body, "{\"n\": 50%s}",
                                deg ? ", \"deadline_ms\": 0.001" : "");
            else snprintf(body, sizeof body, "{\"user\": \"u%d\", \"n\": 50%s}", u,
                          deg ? ", \"deadline_ms\": 0.001" : "");
            json_t *a = callj(f, "POST", "/v1/recommend", NULL, body);
            int bad = f->status != 200 || json_array_size(json_object_get(a, "items")) == 0 ||
                      has_item(a, x) || has_item(a, y);
            json_decref(a);
            if (bad) {
                fprintf(stderr, "  %s -> %d %.300s\n", body, f->status, f->out.data);
                return -1;
            }
        }
    }
    for (int i = 0; i < NITEMS; i++) {
        snprintf(url, sizeof url, "/v1/similar/i%d?n=50", i);
        json_t *a = callj(f, "GET", url, NULL, NULL);
        int bad = f->status != 200 || has_item(a, x) || has_item(a, y);
        json_decref(a);
        if (bad) {
            fprintf(stderr, "  %s -> %d %.300s\n", url, f->status, f->out.data);
            return -1;
        }
    }
    return 0;
}

TEST(hidden_and_deleted_items_are_never_served)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-hide", plain_yaml));
    /* The two most popular items: the cold-start answer leads with them. */
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL, "{\"n\": 2}");
    CHECK(f.status == 200 && json_array_size(json_object_get(a, "items")) == 2);
    char x[32], y[32], url[64];
    snprintf(x, sizeof x, "%s", item_at(a, 0));
    snprintf(y, sizeof y, "%s", item_at(a, 1));
    json_decref(a);

    snprintf(url, sizeof url, "/v1/items/%s", x);
    json_t *r = callj(&f, "PUT", url, NULL, "{\"hidden\": true}");
    CHECK(f.status == 200 && json_is_true(json_object_get(r, "stored")));
    json_decref(r);
    r = callj(&f, "GET", url, NULL, NULL);
    CHECK(f.status == 200 && json_is_true(json_object_get(r, "hidden")));
    /* Hiding keeps the attributes. */
    CHECK(json_is_string(json_object_get(json_object_get(r, "attributes"), "category")));
    json_decref(r);
    snprintf(url, sizeof url, "/v1/items/%s", y);
    r = callj(&f, "DELETE", url, NULL, NULL);
    CHECK(f.status == 200 && json_is_true(json_object_get(r, "deleted")));
    json_decref(r);
    EXPECT_ERR(&f, "GET", url, NULL, NULL, 404, "UNKNOWN_ITEM");

    CHECK(never_served(&f, x, y) == 0);

    /* Unhidden, x comes back at the top of the cold-start answer (so the
     * check above was not vacuous). */
    snprintf(url, sizeof url, "/v1/items/%s", x);
    CHECK(call(&f, "PUT", url, NULL, "{\"hidden\": false}") == 200);
    a = callj(&f, "POST", "/v1/recommend", NULL, "{\"n\": 10}");
    int back = has_item(a, x), gone = !has_item(a, y);
    json_decref(a);
    CHECK(back && gone);
    fx_close(&f);
}

/* ---- A/B experiments ---------------------------------------------------------- */

static const char ab_yaml[] =
    "serve:\n"
    "  ranker: feed\n"
    "  log_features: false\n"
    "experiments:\n"
    "  - name: half\n"
    "    traffic: 0.5\n"
    "    variants:\n"
    "      - {name: control, weight: 1}\n"
    "      - {name: treatment, weight: 1, ranker: alt}\n"
    "  - name: skew\n"
    "    variants:\n"
    "      - {name: big, weight: 80}\n"
    "      - {name: small, weight: 20}\n";

static json_t *variant_of(json_t *exps, const char *exp, const char *var)
{
    size_t i, j;
    json_t *x, *v;
    json_array_foreach(json_object_get(exps, "experiments"), i, x) {
        if (!str_of(x, "name") || strcmp(str_of(x, "name"), exp)) continue;
        json_array_foreach(json_object_get(x, "variants"), j, v)
            if (str_of(v, "name") && !strcmp(str_of(v, "name"), var)) return v;
    }
    return NULL;
}

TEST(ab_split_proportions_and_counts)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-ab", ab_yaml));
    enum { N = 20000 };
    static const char *const names[4] = {"control", "treatment", "big", "small"};
    static const char *const model_of[4] = {"feed", "alt", "feed", "feed"};
    long cnt[4] = {0};
    int bad = 0;
    /* The first 300 users see one impression each, every third clicks. */
    long imps[4] = {0}, clicks[4] = {0};
    rk_buf evs;
    rk_buf_init(&evs, 0);
    (void)rk_buf_puts(&evs, "{\"events\": [");
    size_t nev = 0;
    for (int u = 0; u < N && !bad; u++) {
        char body[128];
        snprintf(body, sizeof body, "{\"user\": \"ab%d\", \"candidates\": [\"i1\", \"i2\"], "
                 "\"n\": 1}", u);
        json_t *a = callj(&f, "POST", "/v1/rank", NULL, body);
        const char *var = str_of(a, "variant");
        const char *model = str_of(json_object_get(a, "model"), "name");
        int k = 0;
        while (k < 4 && var && strcmp(var, names[k])) k++;
        if (f.status != 200 || k == 4 || !model || strcmp(model, model_of[k])) {
            fprintf(stderr, "  %s -> %d %.300s\n", body, f.status, f.out.data);
            bad = 1;
        } else {
            cnt[k]++;
            if (u < 300) {
                (void)rk_buf_printf(&evs, "%s{\"type\": \"impression\", \"user\": \"ab%d\", "
                                    "\"item\": \"i1\", \"request_id\": \"%s\"}",
                                    nev++ ? "," : "", u, str_of(a, "request_id"));
                imps[k]++;
                if (u % 3 == 0) {
                    (void)rk_buf_printf(&evs, ",{\"type\": \"click\", \"user\": \"ab%d\", "
                                        "\"item\": \"i1\", \"request_id\": \"%s\"}",
                                        u, str_of(a, "request_id"));
                    nev++;
                    clicks[k]++;
                }
            }
        }
        json_decref(a);
    }
    (void)rk_buf_puts(&evs, "]}");
    (void)rk_buf_putc(&evs, '\0');
    int st = call(&f, "POST", "/v1/events", NULL, evs.data);
    rk_buf_free(&evs);
    CHECK(!bad);
    CHECK(st == 200);
    double half = (double)(cnt[0] + cnt[1]) / N;
    double ctl = (double)cnt[0] / (double)(cnt[0] + cnt[1]);
    double big = (double)cnt[2] / (double)(cnt[2] + cnt[3]);
    if (fabs(half - 0.5) > 0.03 || fabs(ctl - 0.5) > 0.03 || fabs(big - 0.8) > 0.03)
        fprintf(stderr, "  shares: in half %.4f, control %.4f, big %.4f\n", half, ctl, big);
    CHECK(fabs(half - 0.5) <= 0.03);
    CHECK(fabs(ctl - 0.5) <= 0.03);
    CHECK(fabs(big - 0.8) <= 0.03);

    /* /v1/experiments counts the same requests, impressions and clicks. */
    json_t *x = callj(&f, "GET", "/v1/experiments", NULL, NULL);
    CHECK(f.status == 200);
    int mismatch = 0;
    for (int k = 0; k < 4; k++) {
        json_t *v = variant_of(x, k < 2 ? "half" : "skew", names[k]);
        if (!v || json_integer_value(json_object_get(v, "requests")) != cnt[k] ||
            json_integer_value(json_object_get(v, "impressions")) != imps[k] ||
            json_integer_value(json_object_get(v, "clicks")) != clicks[k]) {
            fprintf(stderr, "  variant %s: expected %ld requests, %ld impressions, "
                    "%ld clicks in %.600s\n", names[k], cnt[k], imps[k], clicks[k],
                    f.out.data);
            mismatch = 1;
        }
    }
    json_t *t = variant_of(x, "half", "treatment");
    int ranker_shown = t && str_of(t, "ranker") && !strcmp(str_of(t, "ranker"), "alt");
    json_decref(x);
    CHECK(!mismatch);
    CHECK(ranker_shown);

    /* /v1/recommend names the experiment and the variant. */
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL, "{\"user\": \"ab7\", \"n\": 5}");
    CHECK(f.status == 200);
    CHECK(str_of(a, "experiment") && str_of(a, "variant"));
    json_decref(a);
    fx_close(&f);
}

TEST(duplicate_events_are_counted_once)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-dup", ab_yaml));
    json_t *a = callj(&f, "POST", "/v1/rank", NULL,
                      "{\"user\": \"dupuser\", \"candidates\": [\"i1\"]}");
    CHECK(f.status == 200);
    char rid[40], var[64], body[512];
    snprintf(rid, sizeof rid, "%s", str_of(a, "request_id"));
    snprintf(var, sizeof var, "%s", str_of(a, "variant"));
    json_decref(a);
    snprintf(body, sizeof body, "[{\"type\": \"impression\", \"user\": \"dupuser\", "
             "\"item\": \"i1\", \"request_id\": \"%s\", \"id\": \"e-1\"}, "
             "{\"type\": \"click\", \"user\": \"dupuser\", \"item\": \"i1\", "
             "\"request_id\": \"%s\", \"id\": \"e-2\"}]", rid, rid);
    /* A client retry sends the same events again; the second time is all
     * duplicates, and a third request repeats one inside a new batch. */
    json_t *r1 = callj(&f, "POST", "/v1/events", NULL, body);
    int acc1 = (int)json_integer_value(json_object_get(r1, "accepted"));
    json_decref(r1);
    json_t *r2 = callj(&f, "POST", "/v1/events", NULL, body);
    int acc2 = (int)json_integer_value(json_object_get(r2, "accepted"));
    int dup2 = (int)json_integer_value(json_object_get(r2, "duplicates"));
    json_decref(r2);
    snprintf(body, sizeof body, "[{\"type\": \"click\", \"user\": \"dupuser\", "
             "\"item\": \"i1\", \"request_id\": \"%s\", \"id\": \"e-2\"}, "
             "{\"type\": \"click\", \"user\": \"dupuser\", \"item\": \"i2\", "
             "\"request_id\": \"%s\", \"id\": \"e-3\"}, "
             "{\"type\": \"click\", \"user\": \"dupuser\", \"item\": \"i2\", "
             "\"request_id\": \"%s\", \"id\": \"e-3\"}]", rid, rid, rid);
    json_t *r3 = callj(&f, "POST", "/v1/events", NULL, body);
    int acc3 = (int)json_integer_value(json_object_get(r3, "accepted"));
    json_decref(r3);
    CHECK(acc1 == 2 && acc2 == 0 && dup2 == 2 && acc3 == 1);
    json_t *u = callj(&f, "GET", "/v1/users/dupuser", NULL, NULL);
    long recent = (long)json_integer_value(json_object_get(u, "recent_events"));
    json_decref(u);
    json_t *x = callj(&f, "GET", "/v1/experiments", NULL, NULL);
    json_t *v = variant_of(x, "half", var);
    if (!v) v = variant_of(x, "skew", var);
    long imps = v ? (long)json_integer_value(json_object_get(v, "impressions")) : -1;
    long clicks = v ? (long)json_integer_value(json_object_get(v, "clicks")) : -1;
    json_decref(x);
    if (recent != 3 || imps != 1 || clicks != 2)
        fprintf(stderr, "  recent %ld, impressions %ld, clicks %ld\n", recent, imps, clicks);
    CHECK(recent == 3);
    CHECK(imps == 1 && clicks == 2);
    fx_close(&f);
}

/* ---- models: hot swap, failed loads ------------------------------------------ */

typedef struct load_ctx {
    fx *f;
    atomic_int stop;
    atomic_int failures;
    atomic_long requests;
    atomic_int valid[64];    /* versions of feed that exist */
    int id;
} load_ctx;

typedef struct load_arg {
    load_ctx *c;
    int id;
} load_arg;

static void *load_main(void *p)
{
    load_arg *la = p;
    load_ctx *c = la->c;
    rk_buf out;
    rk_buf_init(&out, 0);
    char body[96];
    for (int i = 0; !atomic_load(&c->stop); i++) {
        snprintf(body, sizeof body, "{\"user\": \"u%d\", \"n\": 10}",
                 (la->id * 37 + i) % NUSERS);
        rk_buf_reset(&out);
        int st = 0;
        rk_server_handle(c->f->srv, "POST", "/v1/recommend", NULL, body,
                         strlen(body), &st, &out);
        json_t *a = json_loadb(out.data ? out.data : "", out.len, 0, NULL);
        json_t *m = json_object_get(a, "model");
        const char *name = str_of(m, "name");
        json_int_t v = json_integer_value(json_object_get(m, "version"));
        int ok = st == 200 && name && !strcmp(name, "feed") && v > 0 && v < 64 &&
                 atomic_load(&c->valid[v]) &&
                 json_array_size(json_object_get(a, "items")) == 10;
        if (!ok && atomic_fetch_add(&c->failures, 1) < 3)
            fprintf(stderr, "  load: %d %.300s\n", st, out.data ? out.data : "");
        json_decref(a);
        atomic_fetch_add(&c->requests, 1);
    }
    rk_buf_free(&out);
    return NULL;
}

/* Reads the artifact of feed version 1 (later publishes may remove the
 * version's directory: the registry keeps the newest few). */
static int feed_artifact(fx *f, rk_artifact *art)
{
    char path[700];
    snprintf(path, sizeof path, "%s/models/feed/1/model.rk", f->dir);
    rk_err err = {0};
    return rk_artifact_read(path, art, &err);
}

/* Publishes art's payload again as a new version of feed. */
static int republish(fx *f, const rk_artifact *art, int promote, uint32_t *version)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", f->dir);
    rk_registry *reg = NULL;
    rk_err err = {0};
    int rc = rk_registry_open(&reg, dir, NULL, &err);
    if (!rc) {
        rk_model_meta meta = {0};
        meta.name = "feed";
        meta.kind = "gbdt";
        rk_publish_opts po = {0};
        po.no_promote = !promote;
        rk_publish_result res;
        rc = rk_registry_publish(reg, &meta, RK_MODEL_GBDT, art->payload, art->len,
                                 &po, &res, &err);
        *version = res.version;
    }
    rk_registry_close(reg);
    if (rc) fprintf(stderr, "  republish: %s\n", err.msg);
    return rc;
}

TEST(hot_swap_under_load_fails_no_request)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-swap", "serve:\n  ranker: feed\n  reload_ms: 50\n"
                                        "  log_features: false\n"
                                        "  deadline_ms: 60000\n"));
    rk_artifact art;
    CHECK_OK(feed_artifact(&f, &art));
    static load_ctx c;
    memset(&c, 0, sizeof c);
    c.f = &f;
    atomic_store(&c.valid[1], 1);
    enum { NT = 4 };
    pthread_t th[NT];
    load_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (load_arg){&c, i};
        CHECK(pthread_create(&th[i], NULL, load_main, &args[i]) == 0);
    }
    uint32_t next = 2, v = 0;
    int rc = 0, promote_fail = 0;
    for (int round = 0; round < 12 && !rc; round++) {
        /* The version is valid from the moment it may become current. */
        atomic_store(&c.valid[next], 1);
        rc = republish(&f, &art, 1, &v);
        if (!rc && v != next) {
            fprintf(stderr, "  published version %u, expected %u\n", v, next);
            rc = -1;
        }
        next++;
        rk_sleep_ms(30);
        char body[64];
        if (round % 3 == 1) {
            if (call(&f, "POST", "/v1/models/feed/rollback", NULL, NULL) != 200)
                promote_fail++;
        } else if (round % 3 == 2) {
            snprintf(body, sizeof body, "{\"version\": %u}", v);
            if (call(&f, "POST", "/v1/models/feed/promote", NULL, body) != 200)
                promote_fail++;
        }
        rk_sleep_ms(30);
    }
    /* Keep the load on until the requests clearly overlapped the swaps. */
    while (atomic_load(&c.requests) < 200) rk_sleep_ms(10);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    rk_artifact_free(&art);
    CHECK(rc == 0);
    CHECK(promote_fail == 0);
    if (atomic_load(&c.failures))
        fprintf(stderr, "  %d of %ld requests failed\n", atomic_load(&c.failures),
                atomic_load(&c.requests));
    CHECK(atomic_load(&c.failures) == 0);
    /* The server ends on the registry's current version. */
    json_t *m = callj(&f, "GET", "/v1/models", NULL, NULL);
    json_t *srv = json_array_get(json_object_get(m, "serving"), 0);
    json_int_t serving = json_integer_value(json_object_get(srv, "serving"));
    json_int_t current = -1;
    size_t i;
    json_t *reg;
    json_array_foreach(json_object_get(m, "registry"), i, reg)
        if (str_of(reg, "name") && !strcmp(str_of(reg, "name"), "feed"))
            current = json_integer_value(json_object_get(reg, "current"));
    json_decref(m);
    CHECK(serving == current);
    CHECK(metric(&f, "rankd_model_loads_total{model=\"feed\",result=\"failed\"}") == 0);
    fx_close(&f);
}

/* Promotes version of feed in the registry directly, as another process
 * (`rankd models promote`, a training job) would. */
static int promote_outside(fx *f, uint32_t version)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", f->dir);
    rk_registry *reg = NULL;
    rk_err err = {0};
    int rc = rk_registry_open(&reg, dir, NULL, &err);
    if (!rc) rc = rk_registry_promote(reg, "feed", version, &err);
    rk_registry_close(reg);
    if (rc) fprintf(stderr, "  promote: %s\n", err.msg);
    return rc;
}

TEST(failed_load_keeps_previous_version)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-badload", "serve:\n  ranker: feed\n  reload_ms: 50\n"));
    uint32_t v = 0;
    rk_artifact art;
    CHECK_OK(feed_artifact(&f, &art));
    int prc = republish(&f, &art, 0, &v);
    CHECK(prc == 0 && v == 2);
    /* Version 2 is a candidate; break its artifact. */
    char path[700];
    snprintf(path, sizeof path, "%s/models/feed/2/model.rk", f.dir);
    FILE *fp = fopen(path, "wb");
    CHECK(fp);
    fputs("RKMODEL garbage, not a model", fp);
    fclose(fp);
    /* The API refuses to promote what this server cannot load ... */
    EXPECT_ERR(&f, "POST", "/v1/models/feed/promote", NULL, "{\"version\": 2}", 409,
               "CONFLICT");
    /* ... but the registry may be changed behind its back: the poll
     * fails to load version 2 and version 1 keeps serving. */
    CHECK_OK(promote_outside(&f, 2));
    double failed = 0;
    for (int i = 0; i < 500 && failed < 1; i++) {
        rk_sleep_ms(20);
        failed = metric(&f, "rankd_model_loads_total{model=\"feed\",result=\"failed\"}");
    }
    CHECK(failed == 1);
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL, "{\"user\": \"u3\"}");
    CHECK(f.status == 200);
    json_int_t ver = json_integer_value(json_object_get(json_object_get(a, "model"), "version"));
    json_decref(a);
    CHECK(ver == 1);
    json_t *m = callj(&f, "GET", "/v1/models", NULL, NULL);
    json_t *s0 = json_array_get(json_object_get(m, "serving"), 0);
    int ok = str_of(s0, "name") && !strcmp(str_of(s0, "name"), "feed") &&
             json_integer_value(json_object_get(s0, "serving")) == 1 &&
             json_integer_value(json_object_get(s0, "failed_version")) == 2 &&
             str_of(s0, "load_error") && strlen(str_of(s0, "load_error")) > 0 &&
             json_integer_value(json_object_get(s0, "load_failures")) == 1;
    if (!ok) fprintf(stderr, "  %s\n", f.out.data);
    json_decref(m);
    CHECK(ok);
    /* The broken version is not retried on every poll. */
    rk_sleep_ms(200);
    CHECK(metric(&f, "rankd_model_loads_total{model=\"feed\",result=\"failed\"}") == 1);
    CHECK(metric(&f, "rankd_model_version{model=\"feed\"}") == 1);
    /* A good version after it is picked up by the poll. */
    prc = republish(&f, &art, 1, &v);
    rk_artifact_free(&art);
    CHECK(prc == 0 && v == 3);
    json_int_t now = 0;
    for (int i = 0; i < 500 && now != 3; i++) {
        rk_sleep_ms(20);
        now = (json_int_t)metric(&f, "rankd_model_version{model=\"feed\"}");
    }
    CHECK(now == 3);
    fx_close(&f);
}

/* ---- deadline, metrics, rank, score, similar --------------------------------- */

TEST(tiny_deadline_degrades_and_is_counted)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-deadline", plain_yaml));
    const char *series = "rankd_recommend_degraded_total{reason=\"trending\"}";
    double before = metric(&f, series);
    CHECK(before == 0);
    for (int i = 0; i < 5; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"user\": \"u%d\", \"n\": 8, \"deadline_ms\": 0.001}", i);
        json_t *a = callj(&f, "POST", "/v1/recommend", NULL, body);
        int ok = f.status == 200 && str_of(a, "degraded") &&
                 json_array_size(json_object_get(a, "items")) == 8;
        json_decref(a);
        CHECK(ok);
    }
    CHECK(metric(&f, series) == 5);
    /* The unranked fallback still leaves out what the user has seen and
     * honours the request's filters. */
    json_t *c = callj(&f, "POST", "/v1/recommend", NULL, "{\"n\": 1}");
    char top[32];
    snprintf(top, sizeof top, "%s", item_at(c, 0) ? item_at(c, 0) : "");
    json_decref(c);
    char ev[160];
    snprintf(ev, sizeof ev, "{\"type\": \"click\", \"user\": \"deg-user\", \"item\": \"%s\"}",
             top);
    CHECK(call(&f, "POST", "/v1/events", NULL, ev) == 200);
    c = callj(&f, "POST", "/v1/recommend", NULL,
              "{\"user\": \"deg-user\", \"n\": 20, \"deadline_ms\": 0.001}");
    int seen_ok = f.status == 200 && str_of(c, "degraded") && !has_item(c, top);
    json_decref(c);
    CHECK(seen_ok);
    c = callj(&f, "POST", "/v1/recommend", NULL,
              "{\"user\": \"u2\", \"n\": 5, \"deadline_ms\": 0.001, "
              "\"filters\": {\"category\": [\"c1\"]}}");
    int filt_ok = f.status == 200 && str_of(c, "degraded");
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(c, "items"), i, it) {
        const char *id = str_of(it, "id");
        if (!id || atoi(id + 1) % NCATS != 1) filt_ok = 0;
    }
    if (!filt_ok) fprintf(stderr, "  %s\n", f.out.data);
    json_decref(c);
    CHECK(filt_ok);
    /* A generous deadline is not degraded. */
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL,
                      "{\"user\": \"u1\", \"deadline_ms\": 60000}");
    CHECK(f.status == 200 && !json_object_get(a, "degraded"));
    json_decref(a);
    fx_close(&f);
}

/* Checks Prometheus text format 0.0.4: HELP/TYPE lines, sample syntax,
 * each family contiguous with its TYPE first, no duplicate series,
 * histogram buckets cumulative up to +Inf == _count. Returns 0 or the
 * 1-based number of the first bad line. */
static int prom_check(const char *text, char *why, size_t wl)
{
    enum { MAXF = 256, MAXS = 2048 };
    static char fam[MAXF][128], ftype[MAXF][16], series[MAXS][256];
    size_t nf = 0, ns = 0;
    char cur[128] = "";
    int line = 0;
    double last_bucket = -1;
    const char *p = text;
    while (*p) {
        line++;
        const char *e = strchr(p, '\n');
        if (!e) {
            snprintf(why, wl, "no newline at the end");
            return line;
        }
        char l[1024];
        size_t n = (size_t)(e - p);
        if (n >= sizeof l) n = sizeof l - 1;
        memcpy(l, p, n);
        l[n] = '\0';
        p = e + 1;
        if (l[0] == '#') {
            char kw[8], name[128], rest[256] = "";
            if (sscanf(l, "# %7s %127s %255[^\n]", kw, name, rest) < 2 ||
                (strcmp(kw, "HELP") && strcmp(kw, "TYPE"))) {
                snprintf(why, wl, "bad comment");
                return line;
            }
            if (!strcmp(kw, "TYPE")) {
                for (size_t i = 0; i < nf; i++)
                    if (!strcmp(fam[i], name)) {
                        snprintf(why, wl, "second TYPE for %s", name);
                        return line;
                    }
                if (strcmp(rest, "counter") && strcmp(rest, "gauge") &&
                    strcmp(rest, "histogram") && strcmp(rest, "summary") &&
                    strcmp(rest, "untyped")) {
                    snprintf(why, wl, "bad type '%s'", rest);
                    return line;
                }
                if (nf == MAXF) return line;
                snprintf(fam[nf], sizeof fam[nf], "%s", name);
                snprintf(ftype[nf++], sizeof ftype[0], "%s", rest);
                snprintf(cur, sizeof cur, "%s", name);
                last_bucket = -1;
            }
            continue;
        }
        /* name{labels} value */
        size_t i = 0;
        if (!((l[0] >= 'a' && l[0] <= 'z') || (l[0] >= 'A' && l[0] <= 'Z') ||
              l[0] == '_' || l[0] == ':')) {
            snprintf(why, wl, "bad metric name");
            return line;
        }
        while ((l[i] >= 'a' && l[i] <= 'z') || (l[i] >= 'A' && l[i] <= 'Z') ||
               (l[i] >= '0' && l[i] <= '9') || l[i] == '_' || l[i] == ':')
            i++;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)i, l);
        int is_bucket = 0, is_inf = 0;
        if (l[i] == '{') {
            i++;
            while (l[i] != '}') {
                size_t k0 = i;
                while ((l[i] >= 'a' && l[i] <= 'z') || (l[i] >= 'A' && l[i] <= 'Z') ||
                       (l[i] >= '0' && l[i] <= '9') || l[i] == '_')
                    i++;
                if (i == k0 || l[i] != '=' || l[i + 1] != '"') {
                    snprintf(why, wl, "bad label");
                    return line;
                }
                int le = i - k0 == 2 && !strncmp(l + k0, "le", 2);
                i += 2;
                size_t v0 = i;
                while (l[i] && l[i] != '"') {
                    if (l[i] == '\\') {
                        if (l[i + 1] != '\\' && l[i + 1] != '"' && l[i + 1] != 'n') {
                            snprintf(why, wl, "bad escape");
                            return line;
                        }
                        i++;
                    }
                    i++;
                }
                if (!l[i]) {
                    snprintf(why, wl, "unterminated label value");
                    return line;
                }
                if (le) {
                    is_bucket = 1;
                    is_inf = !strncmp(l + v0, "+Inf\"", 5);
                }
                i++;
                if (l[i] == ',') i++;
                else if (l[i] != '}') {
                    snprintf(why, wl, "bad label list");
                    return line;
                }
            }
            i++;
        }
        if (l[i] != ' ') {
            snprintf(why, wl, "no value");
            return line;
        }
        const char *vs = l + i + 1;
        char *end;
        double val = strtod(vs, &end);
        if (end == vs || (*end && *end != ' ')) {
            snprintf(why, wl, "bad value '%s'", vs);
            return line;
        }
        /* The family: the name, or its histogram base. */
        char base[128];
        snprintf(base, sizeof base, "%s", name);
        static const char *const sfx[] = {"_bucket", "_sum", "_count"};
        for (int k = 0; k < 3; k++) {
            size_t bl = strlen(name), sl = strlen(sfx[k]);
            if (bl > sl && !strcmp(name + bl - sl, sfx[k])) {
                char b2[128];
                snprintf(b2, sizeof b2, "%.*s", (int)(bl - sl), name);
                for (size_t j = 0; j < nf; j++)
                    if (!strcmp(fam[j], b2) && !strcmp(ftype[j], "histogram"))
                        snprintf(base, sizeof base, "%s", b2);
            }
        }
        if (strcmp(base, cur) != 0) {
            /* A sample without TYPE starts an untyped family, which must
             * not have been seen before. */
            for (size_t j = 0; j < nf; j++)
                if (!strcmp(fam[j], base)) {
                    snprintf(why, wl, "family %s is not contiguous", base);
                    return line;
                }
            if (nf == MAXF) return line;
            snprintf(fam[nf], sizeof fam[nf], "%s", base);
            snprintf(ftype[nf++], sizeof ftype[0], "untyped");
            snprintf(cur, sizeof cur, "%s", base);
        }
        /* Series identity: the line up to the value. */
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)i, l);
        for (size_t j = 0; j < ns; j++)
            if (!strcmp(series[j], key)) {
                snprintf(why, wl, "duplicate series %s", key);
                return line;
            }
        if (ns < MAXS) snprintf(series[ns++], sizeof series[0], "%s", key);
        if (is_bucket) {
            if (val < last_bucket) {
                snprintf(why, wl, "buckets not cumulative");
                return line;
            }
            last_bucket = is_inf ? -1 : val;
            if (is_inf) last_bucket = -1;
        }
    }
    return 0;
}

TEST(metrics_are_prometheus_text)
{
    char why[256] = "";
    /* The checker itself refuses what it must. */
    CHECK(prom_check("a 1\n", why, sizeof why) == 0);
    CHECK(prom_check("a{x=\"1\"} 1\na{x=\"1\"} 2\n", why, sizeof why) == 2);
    CHECK(prom_check("a 1\nb 1\na 2\n", why, sizeof why) == 3);
    CHECK(prom_check("a{x=1} 1\n", why, sizeof why) == 1);
    CHECK(prom_check("a one\n", why, sizeof why) == 1);
    CHECK(prom_check("# TYPE a counter\n# TYPE a counter\n", why, sizeof why) == 2);

    /* A pinned variant serves the same registry name as the default
     * ranker: its series must stay distinct. */
    fx f;
    CHECK_OK(fx_open(&f, "serve-metrics", "serve:\n  ranker: feed\n"
                     "experiments:\n  - name: pin\n    traffic: 0.5\n    variants:\n"
                     "      - {name: live}\n      - {name: pinned, ranker: feed, version: 1}\n"));
    /* Some traffic of each kind first. */
    CHECK(call(&f, "POST", "/v1/recommend", NULL, "{\"user\": \"u1\"}") == 200);
    CHECK(call(&f, "POST", "/v1/recommend", NULL, "{\"user\": \"u2\", \"deadline_ms\": 0.001}") == 200);
    CHECK(call(&f, "POST", "/v1/events", NULL,
               "{\"type\": \"click\", \"user\": \"u1\", \"item\": \"i4\"}") == 200);
    CHECK(call(&f, "GET", "/v1/nope", NULL, NULL) == 404);
    CHECK(call(&f, "GET", "/v1/similar/i2", NULL, NULL) == 200);
    CHECK(call(&f, "GET", "/metrics", NULL, NULL) == 200);
    int bad = prom_check(f.out.data, why, sizeof why);
    if (bad) {
        const char *l = f.out.data;
        for (int i = 1; i < bad && l; i++) l = strchr(l, '\n') + 1;
        fprintf(stderr, "  /metrics line %d: %s: %.120s\n", bad, why, l);
    }
    CHECK(bad == 0);
    CHECK_CONTAINS(f.out.data, "rankd_requests_total{endpoint=\"recommend\",code=\"2xx\"} 2\n");
    CHECK_CONTAINS(f.out.data, "rankd_requests_total{endpoint=\"other\",code=\"4xx\"} 1\n");
    CHECK_CONTAINS(f.out.data, "rankd_request_duration_seconds_count{endpoint=\"recommend\"} 2\n");
    CHECK_CONTAINS(f.out.data, "rankd_model_version{model=\"feed\"} 1\n");
    CHECK_CONTAINS(f.out.data, "rankd_model_version{model=\"ials\"} 1\n");
    CHECK_CONTAINS(f.out.data, "rankd_events_ingested_total 1\n");
    fx_close(&f);
}

TEST(rank_score_and_similar)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-rank", plain_yaml));
    /* /v1/rank orders the caller's candidates, unknown ids included. */
    json_t *a = callj(&f, "POST", "/v1/rank", NULL,
                      "{\"user\": \"u1\", \"candidates\": [\"i1\", \"i2\", \"i3\", "
                      "\"i4\", \"brand-new\"], \"n\": 4}");
    CHECK(f.status == 200);
    json_t *items = json_object_get(a, "items");
    int ok = json_array_size(items) == 4;
    double prev = INFINITY;
    for (size_t i = 0; ok && i < 4; i++) {
        json_t *it = json_array_get(items, i);
        double sc = json_number_value(json_object_get(it, "score"));
        const char *src = str_of(it, "source");
        ok = json_is_number(json_object_get(it, "score")) && sc <= prev &&
             src && !strcmp(src, "external");
        prev = sc;
    }
    const char *mname = str_of(json_object_get(a, "model"), "name");
    ok = ok && mname && !strcmp(mname, "feed");
    json_decref(a);
    CHECK(ok);
    /* explain gives the features of each row. */
    a = callj(&f, "POST", "/v1/rank", NULL,
              "{\"user\": \"u1\", \"candidates\": [{\"id\": \"i1\"}, \"i2\"], \"explain\": true}");
    CHECK(f.status == 200);
    json_t *feat = json_object_get(json_array_get(json_object_get(a, "items"), 0), "features");
    ok = json_is_object(feat) && json_object_get(feat, "item_ctr") != NULL;
    json_decref(a);
    CHECK(ok);

    /* /v1/score: one finite probability per row. */
    a = callj(&f, "POST", "/v1/score", NULL,
              "{\"rows\": [{\"features\": {\"hour\": 3}}, {\"features\": {}}, "
              "{\"features\": {\"hour\": null, \"x\": \"y\"}}]}");
    CHECK(f.status == 200);
    json_t *sc = json_object_get(a, "scores");
    ok = json_array_size(sc) == 3;
    for (size_t i = 0; ok && i < 3; i++) {
        double v = json_number_value(json_array_get(sc, i));
        ok = json_is_number(json_array_get(sc, i)) && v >= 0 && v <= 1;
    }
    ok = ok && json_integer_value(json_object_get(json_object_get(a, "model"), "version")) == 1;
    json_decref(a);
    CHECK(ok);

    /* /v1/similar: never the item itself, at most n, from co-visitation. */
    for (int i = 0; i < NITEMS; i += 7) {
        char url[64], self[16];
        snprintf(url, sizeof url, "/v1/similar/i%d?n=5", i);
        snprintf(self, sizeof self, "i%d", i);
        a = callj(&f, "GET", url, NULL, NULL);
        size_t n = json_array_size(json_object_get(a, "items"));
        const char *src = str_of(a, "source");
        ok = f.status == 200 && n >= 1 && n <= 5 && !has_item(a, self) && src &&
             (!strcmp(src, "covis") || !strcmp(src, "ann")) &&
             !strcmp(str_of(a, "item"), self);
        if (!ok) fprintf(stderr, "  %s -> %s\n", url, f.out.data);
        json_decref(a);
        CHECK(ok);
    }
    /* A percent-escaped id is decoded. */
    a = callj(&f, "GET", "/v1/similar/%69%31?n=3", NULL, NULL);
    ok = f.status == 200 && str_of(a, "item") && !strcmp(str_of(a, "item"), "i1");
    json_decref(a);
    CHECK(ok);
    /* The other read endpoints answer too. */
    CHECK(call(&f, "GET", "/v1/openapi.json", NULL, NULL) == 200);
    a = callj(&f, "GET", "/readyz", NULL, NULL);
    ok = f.status == 200 && str_of(a, "status") && !strcmp(str_of(a, "status"), "ready");
    json_decref(a);
    CHECK(ok);
    fx_close(&f);
}

/* A request context is an object handed to the context features; it is
 * serialised with jansson, whose allocator is rankd's once
 * rk_mem_hook_libraries ran (as in `rankd serve`). */
TEST(context_objects_are_accepted)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-context", plain_yaml));
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL,
                      "{\"user\": \"u1\", \"n\": 3, \"context\": {\"hour\": 9, "
                      "\"q\": \"[[[{{{\\\"\"}}");
    int ok = f.status == 200 && json_array_size(json_object_get(a, "items")) == 3;
    json_decref(a);
    CHECK(ok);
    a = callj(&f, "POST", "/v1/rank", NULL,
              "{\"user\": \"u1\", \"candidates\": [\"i1\", \"i2\"], "
              "\"context\": {\"hour\": 21}}");
    ok = f.status == 200 && json_array_size(json_object_get(a, "items")) == 2;
    json_decref(a);
    CHECK(ok);
    fx_close(&f);
}

/* No train/serve skew: the feature vectors and scores logged for a served
 * request are recomputed offline, from the log entry alone (user, time,
 * context, items) with the model's own spec, bit for bit. */
TEST(logged_features_recompute_bit_identical)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-skew", plain_yaml));
    json_t *a = callj(&f, "POST", "/v1/recommend", NULL,
                      "{\"user\": \"u3\", \"n\": 8, \"context\": {\"hour\": 9}}");
    CHECK(f.status == 200);
    char rid[64];
    snprintf(rid, sizeof rid, "%s", str_of(a, "request_id"));
    json_decref(a);
    rk_arena ar;
    rk_arena_init(&ar, 64 << 10, 64u << 20);
    rk_flog_entry e;
    rk_err err = {0};
    int found = 0;
    /* The log is written by the server's writer thread: wait for it. */
    for (int i = 0; i < 1000 && !found; i++) {
        rk_reader *r;
        CHECK_OK(rk_store_reader(f.store, &r, &err));
        found = rk_flog_get(r, rid, strlen(rid), &ar, &e, &err) == 0;
        rk_reader_close(r);
        if (!found) rk_sleep_ms(10);
    }
    CHECK(found);
    CHECK(e.nitems == 8 && strcmp(e.user, "u3") == 0);
    char path[800];
    snprintf(path, sizeof path, "%s/models/%s/%u/model.rk", f.dir, e.model,
             e.model_version);
    rk_artifact art;
    CHECK_OK(rk_artifact_read(path, &art, &err));
    rk_ranker *model;
    CHECK_OK(rk_ranker_load(&model, art.payload, art.len, &err));
    size_t sn;
    const void *sp = rk_ranker_spec(model, &sn);
    rk_feat_spec *spec;
    CHECK_OK(rk_feat_spec_load(&spec, sp, sn, f.schema, &err));
    rk_feat_source *src;
    CHECK_OK(rk_feat_source_create(&src, spec));
    rk_reader *r;
    CHECK_OK(rk_store_reader(f.store, &r, &err));
    rk_feat_source_set_reader(src, r);
    rk_feat_request fr;
    memset(&fr, 0, sizeof fr);
    fr.user = e.user;
    fr.user_len = strlen(e.user);
    fr.ts_ms = e.ts_ms;
    fr.context = e.context;
    fr.context_len = e.context_len;
    size_t checked = 0;
    for (uint32_t i = 0; i < e.nitems; i++) {
        const rk_flog_item *it = &e.items[i];
        if (!it->x.ndense) continue; /* an exploration slot: not ranked */
        rk_feat_item fi;
        memset(&fi, 0, sizeof fi);
        fi.id = it->item;
        fi.len = strlen(it->item);
        rk_fvec v;
        memset(&v, 0, sizeof v);
        CHECK_OK(rk_feat_compute(src, &fr, &fi, &v, &err));
        CHECK(v.ndense == it->x.ndense && v.nsparse == it->x.nsparse);
        for (uint32_t j = 0; j < v.ndense; j++)
            if (memcmp(&v.dense[j], &it->x.dense[j], sizeof(float)))
                fprintf(stderr, "  %s column %u (%s): served %.9g, offline %.9g\n",
                        it->item, j, rk_feat_dense_name(spec, j),
                        it->x.dense[j], v.dense[j]);
        CHECK(memcmp(v.dense, it->x.dense, v.ndense * sizeof *v.dense) == 0);
        CHECK(v.nsparse == 0 ||
              (memcmp(v.idx, it->x.idx, v.nsparse * sizeof *v.idx) == 0 &&
               memcmp(v.val, it->x.val, v.nsparse * sizeof *v.val) == 0));
        float score;
        CHECK_OK(rk_ranker_predict(model, &v, 1, &score, &err));
        CHECK(memcmp(&score, &it->score, sizeof score) == 0);
        rk_fvec_free(&v);
        checked++;
    }
    CHECK(checked >= 4);
    rk_feat_source_destroy(src);
    rk_reader_close(r);
    rk_feat_spec_destroy(spec);
    rk_ranker_destroy(model);
    rk_artifact_free(&art);
    rk_arena_free(&ar);
    fx_close(&f);
}

/* The drift monitor: what /v1/recommend serves fills the ranker's live
 * window, /v1/monitor/drift compares it with the training reference
 * (every input and the prediction, sorted most drifted first), and
 * /metrics exports the same PSI values. */
TEST(monitor_drift_report)
{
    fx f;
    CHECK_OK(fx_open(&f, "serve-monitor", plain_yaml));
    for (int i = 0; i < 30; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"user\": \"u%d\", \"n\": 5}", i % 50);
        CHECK(call(&f, "POST", "/v1/recommend", NULL, body) == 200);
    }
    json_t *a = callj(&f, "GET", "/v1/monitor/drift", NULL, NULL);
    CHECK(f.status == 200);
    json_t *feats = json_object_get(json_object_get(a, "report"), "features");
    json_t *win = json_object_get(a, "window");
    int ok = json_integer_value(json_object_get(win, "rows")) == 150 &&
             json_array_size(feats) >= 5; /* 5 declared inputs + prediction */
    int has_pred = 0, sorted = 1;
    double prev = 1e300;
    int prev_drift = 1;
    for (size_t i = 0; i < json_array_size(feats); i++) {
        json_t *e = json_array_get(feats, i);
        if (json_is_true(json_object_get(e, "prediction"))) has_pred = 1;
        int d = json_is_true(json_object_get(e, "drift"));
        if (d > prev_drift) sorted = 0; /* drifted features come first */
        if (d == prev_drift && !json_is_true(json_object_get(e, "psi_alarm")) &&
            json_is_number(json_object_get(e, "psi")) &&
            json_number_value(json_object_get(e, "psi")) > prev + 1e-12 &&
            !prev_drift)
            sorted = 0;
        if (json_is_number(json_object_get(e, "psi")))
            prev = json_number_value(json_object_get(e, "psi"));
        prev_drift = d;
        /* Rows are grouped by user and item: every evaluated feature has
         * its design effect and corrected p-value. */
        if (strcmp(json_string_value(json_object_get(e, "method")), "none") &&
            !(json_number_value(json_object_get(e, "deff")) >= 1 &&
              json_is_number(json_object_get(e, "chi2_p_adj"))))
            ok = 0;
        /* The missing rate is the window's: rows without the value. */
        double rows = (double)json_integer_value(json_object_get(win, "current"));
        double present = (double)json_integer_value(json_object_get(e, "cur_count"));
        if (json_is_number(json_object_get(e, "cur_missing_rate")) &&
            fabs(json_number_value(json_object_get(e, "cur_missing_rate")) -
                 (rows - present) / rows) > 1e-9)
            ok = 0;
    }
    json_decref(a);
    CHECK(ok && has_pred && sorted);
    CHECK(call(&f, "GET", "/metrics", NULL, NULL) == 200);
    CHECK(strstr(f.out.data, "rankd_drift_psi{model=\"feed\",feature=\"prediction\"}") != NULL);
    CHECK(strstr(f.out.data, "rankd_dataset_drift{model=\"feed\"}") != NULL);
    CHECK_OK(expect_err(&f, "GET", "/v1/monitor/drift?model=nope", NULL, NULL, 0,
                        404, "UNKNOWN_MODEL"));
    fx_close(&f);
    /* The noise gate's level: 0 (off) or in (0, 1). */
    CHECK_OK(fx_open(&f, "serve-monitor-gate",
                     "serve:\n  ranker: feed\nmonitor:\n  noise_alpha: 0.05\n"));
    fx_close(&f);
    CHECK(fx_open(&f, "serve-monitor-gate",
                  "serve:\n  ranker: feed\nmonitor:\n  noise_alpha: 1.5\n") == RK_ECONFIG);
    CHECK_CONTAINS(f.err.msg, "monitor.noise_alpha: noise_alpha must be");
    fx_close(&f);
}

int main(int argc, char **argv)
{
    rk_mem_hook_libraries();
    if (tpl_build()) {
        rk_test_rmdir(tpl_dir);
        printf("# 0 passed, 1 failed\n");
        return 1;
    }
    static const rk_test_case cases[] = {
        {"serve_clock_option", serve_clock_option},
        {"json_limits_table", json_limits_table},
        {"errors_have_status_and_stable_code", errors_have_status_and_stable_code},
        {"api_key_roles", api_key_roles},
        {"events_change_the_next_answer", events_change_the_next_answer},
        {"hidden_and_deleted_items_are_never_served", hidden_and_deleted_items_are_never_served},
        {"ab_split_proportions_and_counts", ab_split_proportions_and_counts},
        {"duplicate_events_are_counted_once", duplicate_events_are_counted_once},
        {"hot_swap_under_load_fails_no_request", hot_swap_under_load_fails_no_request},
        {"failed_load_keeps_previous_version", failed_load_keeps_previous_version},
        {"tiny_deadline_degrades_and_is_counted", tiny_deadline_degrades_and_is_counted},
        {"metrics_are_prometheus_text", metrics_are_prometheus_text},
        {"rank_score_and_similar", rank_score_and_similar},
        {"context_objects_are_accepted", context_objects_are_accepted},
        {"logged_features_recompute_bit_identical", logged_features_recompute_bit_identical},
        {"monitor_drift_report", monitor_drift_report},
    };
    int rc = rk_test_run_all(argc, argv, cases, sizeof cases / sizeof cases[0]);
    rk_test_rmdir(tpl_dir);
    return rc;
}
