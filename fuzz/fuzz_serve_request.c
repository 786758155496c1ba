/*
 * fuzz_serve_request.c — libFuzzer target for the HTTP API's request path
 * through rk_server_handle: route matching and percent-decoding, API-key
 * roles, the body limits checked before any parser, JSON parsing, and every
 * handler's validation of its body (events, items, users, recommend, rank,
 * score, similar, models, promote/rollback, experiments, metrics).
 *
 * Input: byte 0 picks a route of the table below, or, past its end, takes
 * "METHOD URL\n" from the input itself; byte 1 picks the API key (admin,
 * read, write, none, unknown); the rest is the body. Every answer must
 * carry a known status, and every JSON answer must be valid JSON with an
 * error body of exactly {error, detail, request_id} on failure; a 500 is
 * a bug. The server is created once over a small store in a temporary
 * directory (a catalog, an event log, an FTRL ranker "feed" and iALS)
 * and destroyed at exit. Inputs change its state (events, hidden items),
 * which is what a long-running server sees too. Seeds in
 * fuzz/corpus/serve_request/ are valid and invalid bodies per endpoint.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rk_features.h"
#include "rk_retrieval.h"
#include "rk_serve.h"
#include "rk_store.h"
#include "rk_train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char conf_yaml[] =
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
    "  hash_bits: 10\n"
    "  defs:\n"
    "    category: {kind: attribute, entity: item, attr: category}\n"
    "    price: {kind: attribute, entity: item, attr: price}\n"
    "    item_ctr: {kind: rate, key: item, num: [click], den: [impression], "
    "windows: [1d], prior: {mean: 0.1, strength: 10}}\n"
    "    hour: {kind: context, field: hour}\n"
    "serve:\n"
    "  ranker: feed\n"
    "  candidates: 40\n"
    "  max_n: 50\n"
    "  max_body_bytes: 65536\n"
    "  max_json_depth: 16\n"
    "  max_array: 1000\n"
    "  log_features: false\n"
    "  api_keys:\n"
    "    - {key: admin-key-0123456789, roles: [admin]}\n"
    "    - {key: read-key-0123456789, roles: [read]}\n"
    "    - {key: write-key-0123456789, roles: [write]}\n"
    "experiments:\n"
    "  - name: exp\n"
    "    variants:\n"
    "      - {name: a, weight: 1}\n"
    "      - {name: b, weight: 1, candidates: 20}\n";

static const struct {
    const char *method, *url;
} routes[] = {
    {"POST", "/v1/events"},
    {"PUT", "/v1/items/i1"},
    {"PUT", "/v1/items/new%20item"},
    {"DELETE", "/v1/items/i9"},
    {"GET", "/v1/items/i1"},
    {"PUT", "/v1/users/u1"},
    {"GET", "/v1/users/u1"},
    {"POST", "/v1/recommend"},
    {"POST", "/v1/rank"},
    {"POST", "/v1/score"},
    {"GET", "/v1/similar/i2?n=5"},
    {"GET", "/v1/models"},
    {"POST", "/v1/models/feed/promote"},
    {"POST", "/v1/models/feed/rollback"},
    {"GET", "/v1/experiments"},
    {"GET", "/metrics"},
    {"GET", "/readyz"},
    {"DELETE", "/v1/recommend"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static const char *const keys[] = {"admin-key-0123456789", "read-key-0123456789",
                                   "write-key-0123456789", NULL,
                                   "admin-key-012345678"};

static char dir[256];
static rk_conf *conf;
static rk_schema *schema;
static rk_store *store;
static rk_server *srv;
static rk_logger logger;

static void teardown(void)
{
    rk_server_destroy(srv);
    rk_store_close(store);
    rk_schema_destroy(schema);
    rk_conf_destroy(conf);
    srv = NULL;
    store = NULL;
    if (dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    }
}

/* 30 items, 40 users, 600 impressions with clicks on items of the user's
 * category (u % 5 == i % 5) a third of the time. */
static int fill(const rk_feat_spec *spec, rk_err *err)
{
    rk_batch *b;
    rk_reader *r;
    if (rk_batch_create(&b, store, 0)) return RK_ENOMEM;
    int rc = 0;
    char id[32], cat[8], user[32];
    for (int i = 0; !rc && i < 30; i++) {
        rk_attr_in a[2];
        memset(a, 0, sizeof a);
        snprintf(id, sizeof id, "i%d", i);
        snprintf(cat, sizeof cat, "c%d", i % 5);
        a[0].name = "category";
        a[0].type = RK_ATTR_CATEGORICAL;
        a[0].str = cat;
        a[0].len = strlen(cat);
        a[1].name = "price";
        a[1].type = RK_ATTR_NUMERIC;
        a[1].num = i;
        rc = rk_batch_upsert(b, RK_ENTITY_ITEM, id, a, 2, 0, err);
    }
    if (!rc) rc = rk_store_write(store, b, NULL, err);
    rk_batch_clear(b);
    if (!rc) rc = rk_store_reader(store, &r, err);
    if (rc) {
        rk_batch_destroy(b);
        return rc;
    }
    int64_t t0 = rk_clock_wall_ms() - 2 * 86400000LL;
    uint64_t x = 7;
    for (int k = 0; !rc && k < 600; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int u = (int)(x >> 33) % 40, it = (int)(x >> 45) % 30;
        snprintf(user, sizeof user, "u%d", u);
        snprintf(id, sizeof id, "i%d", it);
        rk_event_in ev = {0};
        ev.type = "impression";
        ev.user = user;
        ev.item = id;
        ev.ts_ms = t0 + k * 60000LL;
        ev.position = -1;
        rc = rk_feat_batch_event(spec, b, &ev, r, err);
        if (!rc && u % 5 == it % 5 && k % 3 == 0) {
            ev.type = "click";
            ev.ts_ms += 1000;
            rc = rk_feat_batch_event(spec, b, &ev, r, err);
        }
    }
    rk_reader_close(r);
    if (!rc) rc = rk_store_write(store, b, NULL, err);
    rk_batch_destroy(b);
    return rc;
}

/* An FTRL ranker "feed" on the replayed log, and iALS. */
static int train(const rk_feat_spec *spec0, rk_err *err)
{
    rk_feat_spec *spec = NULL;
    rk_trainset *ts = NULL;
    rk_ranker *model = NULL;
    rk_registry *reg = NULL;
    rk_reader *r = NULL;
    rk_interactions *m = NULL;
    rk_eval_model *ials = NULL;
    rk_buf specb, payload;
    rk_buf_init(&specb, 0);
    rk_buf_init(&payload, 0);
    (void)spec0;
    char mdir[300];
    snprintf(mdir, sizeof mdir, "%s/models", dir);
    int rc = rk_store_reader(store, &r, err);
    if (!rc) rc = rk_feat_spec_from_conf(&spec, rk_conf_root(conf), schema, err);
    if (!rc) rc = rk_trainset_create(&ts, rk_feat_ndense(spec), rk_feat_hash_bits(spec), 0);
    rk_feat_label_opts lo;
    rk_feat_label_opts_default(&lo);
    if (!rc) rc = rk_feat_trainset_from_replay(spec, r, &lo, ts, err);
    rk_ranker_opts o;
    rk_ranker_opts_default(&o);
    o.kind = RK_RANKER_FTRL;
    o.ftrl_train.epochs = 1;
    if (!rc) rc = rk_ranker_train(&model, ts, NULL, &o, err);
    if (!rc) rc = rk_feat_spec_save(spec, &specb);
    if (!rc) rc = rk_ranker_set_spec(model, specb.data, specb.len);
    if (!rc) rc = rk_ranker_save(model, &payload, err);
    if (!rc) rc = rk_registry_open(&reg, mdir, NULL, err);
    if (!rc) {
        rk_model_meta meta = {0};
        meta.name = "feed";
        meta.kind = "ftrl";
        rk_publish_result res;
        rc = rk_registry_publish(reg, &meta, RK_MODEL_FTRL, payload.data,
                                 payload.len, NULL, &res, err);
    }
    rk_inter_opts io;
    rk_inter_opts_default(&io);
    rk_ials_opts iopt;
    rk_ials_opts_default(&iopt);
    iopt.factors = 4;
    iopt.iterations = 2;
    iopt.threads = 1;
    if (!rc) rc = rk_interactions_from_store(&m, store, &io, err);
    if (!rc) rc = rk_eval_ials_create(&ials, &iopt, err);
    if (!rc) rc = rk_eval_model_train(ials, m, NULL, err);
    if (!rc) rc = rk_train_publish(ials, mdir, "{}", 0, NULL, err);
    rk_eval_model_destroy(ials);
    rk_interactions_free(m);
    rk_registry_close(reg);
    rk_buf_free(&specb);
    rk_buf_free(&payload);
    rk_ranker_destroy(model);
    rk_trainset_destroy(ts);
    rk_feat_spec_destroy(spec);
    rk_reader_close(r);
    return rc;
}

static int setup(void)
{
    rk_mem_hook_libraries();   /* as `rankd serve` does */
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rk-fuzz-serve-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return -1;
    }
    atexit(teardown);
    rk_err err = {0};
    rk_feat_spec *spec = NULL;
    int rc = rk_conf_parse_yaml(&conf, conf_yaml, strlen(conf_yaml), "fuzz.yaml", &err);
    if (!rc) rc = rk_schema_from_conf(&schema, rk_conf_root(conf), &err);
    rk_store_opts so;
    rk_store_opts_default(&so);
    so.path = dir;
    so.map_size = 512u << 20;
    if (!rc) rc = rk_store_open(&store, &so, schema, &err);
    if (!rc) rc = rk_feat_spec_from_conf(&spec, rk_conf_root(conf), schema, &err);
    if (!rc) rc = rk_feat_attach(spec, store, &err);
    if (!rc) rc = fill(spec, &err);
    if (!rc) rc = train(spec, &err);
    if (spec) rk_feat_detach(spec, store);
    rk_feat_spec_destroy(spec);
    rk_serve_opts o;
    rk_serve_opts_default(&o);
    rk_logger_init(&logger, RK_LOG_OFF, stderr);
    if (!rc) rc = rk_serve_opts_from_conf(&o, rk_conf_root(conf), &err);
    o.threads = 1;
    if (!rc) rc = rk_server_create(&srv, store, rk_conf_root(conf), &o, &logger, &err);
    if (rc) fprintf(stderr, "fuzz_serve_request setup: %s: %s\n", rk_errname(rc), err.msg);
    return rc;
}

/* libFuzzer checks for leaks after any input whose mallocs and frees do
 * not balance, which a server with background threads never guarantees;
 * and rk_map keeps long keys' pointers at an unaligned offset in its
 * slots, where LeakSanitizer cannot see them. Per-input leak checks would
 * report noise, so they are turned off here; the exit-time check (after
 * teardown frees everything) still runs in replay builds. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char *args[64];
    static char flag[] = "-detect_leaks=0";
    int n = *argc < 62 ? *argc : 62;
    for (int i = 0; i < n; i++) args[i] = (*argv)[i];
    args[n] = flag;
    args[n + 1] = NULL;
    *argc = n + 1;
    *argv = args;
    return 0;
}

static int known_status(int st)
{
    static const int ok[] = {200, 400, 401, 403, 404, 405, 409, 413, 503};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (st == ok[i]) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = 0;
    if (!ready) {
        if (setup()) abort();
        ready = 1;
    }
    if (size < 2) return 0;
    char method[16], url[600];
    const uint8_t *body = data + 2;
    size_t len = size - 2;
    if (data[0] < NROUTES) {
        snprintf(method, sizeof method, "%s", routes[data[0]].method);
        snprintf(url, sizeof url, "%s", routes[data[0]].url);
    } else {
        /* "METHOD URL\n" then the body. */
        const uint8_t *nl = memchr(body, '\n', len);
        const uint8_t *sp = nl ? memchr(body, ' ', (size_t)(nl - body)) : NULL;
        if (!sp || sp - body >= (long)sizeof method ||
            nl - sp - 1 >= (long)sizeof url)
            return 0;
        memcpy(method, body, (size_t)(sp - body));
        method[sp - body] = '\0';
        memcpy(url, sp + 1, (size_t)(nl - sp - 1));
        url[nl - sp - 1] = '\0';
        if (strlen(method) != (size_t)(sp - body) ||
            strlen(url) != (size_t)(nl - sp - 1))
            return 0;  /* NUL bytes: HTTP cannot carry them here */
        len -= (size_t)(nl + 1 - body);
        body = nl + 1;
    }
    const char *key = keys[data[1] % (sizeof keys / sizeof keys[0])];
    rk_buf out;
    rk_buf_init(&out, 0);
    int status = 0;
    int rc = rk_server_handle(srv, method, url, key, body, len, &status, &out);
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("RK_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s %s -> %d %.160s\n", method, url, status,
                out.data ? out.data : "");
    if (rc || !known_status(status)) {
        fprintf(stderr, "%s %s -> rc %d status %d: %.*s\n", method, url, rc,
                status, (int)(out.len < 500 ? out.len : 500),
                out.data ? out.data : "");
        abort();
    }
    /* The path without the query: /metrics answers text, /readyz may
     * answer 503 with its usual body while models load. */
    size_t pl = strcspn(url, "?");
    int metrics = pl == 8 && !strncmp(url, "/metrics", 8);
    int readyz = pl == 7 && !strncmp(url, "/readyz", 7);
    if (!(metrics && status == 200)) {
        json_error_t jerr;
        json_t *j = json_loadb(out.data ? out.data : "", out.len, 0, &jerr);
        int bad = !j || !json_is_object(j);
        if (!bad && status != 200 && !(readyz && status == 503))
            bad = json_object_size(j) != 3 ||
                  !json_is_string(json_object_get(j, "error")) ||
                  !json_is_string(json_object_get(j, "detail")) ||
                  !json_is_string(json_object_get(j, "request_id"));
        json_decref(j);
        if (bad) {
            fprintf(stderr, "%s %s -> %d: not a valid JSON answer (%s): %.*s\n",
                    method, url, status, jerr.text,
                    (int)(out.len < 500 ? out.len : 500), out.data ? out.data : "");
            abort();
        }
    }
    rk_buf_free(&out);
    return 0;
}
