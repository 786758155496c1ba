/*
 * conf_test.c — the configuration tree: YAML and JSON loading, scalar
 * typing, paths and lines in messages, typed accessors, limits, malformed
 * input, file loading, and clean failure when any allocation fails.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

typedef enum { YAML, JSON } fmt;

static int parse(fmt f, const char *text, rk_conf **c, rk_err *err)
{
    rk_err_clear(err);
    if (f == YAML) return rk_conf_parse_yaml(c, text, strlen(text), "t.yaml", err);
    return rk_conf_parse_json(c, text, strlen(text), "t.json", err);
}

/* ---- scalar typing --------------------------------------------------- */

typedef struct scalar_case {
    fmt f;
    const char *text; /* a document with key "v" */
    rk_conf_type type;
    int64_t i;        /* int, or bool */
    double d;         /* float */
    const char *s;    /* string */
} scalar_case;

static const scalar_case scalar_cases[] = {
    {YAML, "v: true", RK_CONF_BOOL, 1, 0, NULL},
    {YAML, "v: false", RK_CONF_BOOL, 0, 0, NULL},
    {YAML, "v: True", RK_CONF_BOOL, 1, 0, NULL},
    {YAML, "v: yes", RK_CONF_STR, 0, 0, "yes"},      /* YAML 1.1 only */
    {YAML, "v: no", RK_CONF_STR, 0, 0, "no"},
    {YAML, "v: null", RK_CONF_NULL, 0, 0, NULL},
    {YAML, "v: ~", RK_CONF_NULL, 0, 0, NULL},
    {YAML, "v:", RK_CONF_NULL, 0, 0, NULL},
    {YAML, "v: 42", RK_CONF_INT, 42, 0, NULL},
    {YAML, "v: -7", RK_CONF_INT, -7, 0, NULL},
    {YAML, "v: +7", RK_CONF_INT, 7, 0, NULL},
    {YAML, "v: 9223372036854775807", RK_CONF_INT, INT64_MAX, 0, NULL},
    {YAML, "v: -9223372036854775808", RK_CONF_INT, INT64_MIN, 0, NULL},
    {YAML, "v: 1.5", RK_CONF_FLOAT, 0, 1.5, NULL},
    {YAML, "v: 1e3", RK_CONF_FLOAT, 0, 1000, NULL},
    {YAML, "v: .5", RK_CONF_FLOAT, 0, 0.5, NULL},
    {YAML, "v: -2.5E-1", RK_CONF_FLOAT, 0, -0.25, NULL},
    {YAML, "v: 3.", RK_CONF_FLOAT, 0, 3, NULL},
    {YAML, "v: 1e", RK_CONF_STR, 0, 0, "1e"},
    {YAML, "v: 0x1f", RK_CONF_STR, 0, 0, "0x1f"},
    {YAML, "v: .inf", RK_CONF_STR, 0, 0, ".inf"},
    {YAML, "v: 1.2.3", RK_CONF_STR, 0, 0, "1.2.3"},
    {YAML, "v: hello world", RK_CONF_STR, 0, 0, "hello world"},
    {YAML, "v: \"42\"", RK_CONF_STR, 0, 0, "42"},
    {YAML, "v: 'true'", RK_CONF_STR, 0, 0, "true"},
    {YAML, "v: \"\"", RK_CONF_STR, 0, 0, ""},
    {YAML, "v: |\n  line1\n  line2\n", RK_CONF_STR, 0, 0, "line1\nline2\n"},
    {YAML, "v: !!str 12", RK_CONF_STR, 0, 0, "12"},
    {YAML, "v: !!float 12", RK_CONF_FLOAT, 0, 12, NULL},
    {YAML, "v: !!int \"12\"", RK_CONF_INT, 12, 0, NULL},
    {YAML, "v: \"caf\\u00e9\"", RK_CONF_STR, 0, 0, "caf\xc3\xa9"},
    {JSON, "{\"v\": true}", RK_CONF_BOOL, 1, 0, NULL},
    {JSON, "{\"v\": false}", RK_CONF_BOOL, 0, 0, NULL},
    {JSON, "{\"v\": null}", RK_CONF_NULL, 0, 0, NULL},
    {JSON, "{\"v\": -12}", RK_CONF_INT, -12, 0, NULL},
    {JSON, "{\"v\": 9223372036854775807}", RK_CONF_INT, INT64_MAX, 0, NULL},
    {JSON, "{\"v\": 2.5}", RK_CONF_FLOAT, 0, 2.5, NULL},
    {JSON, "{\"v\": 1e3}", RK_CONF_FLOAT, 0, 1000, NULL},
    {JSON, "{\"v\": \"42\"}", RK_CONF_STR, 0, 0, "42"},
    {JSON, "{\"v\": \"a\\\"b\\n\"}", RK_CONF_STR, 0, 0, "a\"b\n"},
    {JSON, "{\"\\u0076\": \"esc key\"}", RK_CONF_STR, 0, 0, "esc key"},
};

TEST(scalar_types)
{
    for (size_t i = 0; i < sizeof scalar_cases / sizeof scalar_cases[0]; i++) {
        const scalar_case *sc = &scalar_cases[i];
        rk_conf *c;
        rk_err err;
        int rc = parse(sc->f, sc->text, &c, &err);
        if (rc) fprintf(stderr, "  case %zu: %s\n", i, rk_err_msg(&err));
        CHECK_OK(rc);
        const rk_conf_node *v = rk_conf_get(rk_conf_root(c), "v");
        int ok = v && rk_conf_node_type(v) == sc->type;
        int64_t iv = 0;
        double dv = 0;
        const char *sv = NULL;
        int bv = 0;
        if (ok) switch (sc->type) {
        case RK_CONF_BOOL:
            ok = rk_conf_as_bool(v, -1, &bv, NULL) == 0 && bv == sc->i;
            break;
        case RK_CONF_INT:
            ok = rk_conf_as_int(v, 0, &iv, NULL) == 0 && iv == sc->i;
            break;
        case RK_CONF_FLOAT:
            ok = rk_conf_as_float(v, 0, &dv, NULL) == 0 && dv == sc->d;
            break;
        case RK_CONF_STR:
            ok = rk_conf_as_str(v, NULL, &sv, NULL) == 0 && !strcmp(sv, sc->s);
            break;
        default:
            break;
        }
        if (!ok)
            fprintf(stderr, "  case %zu (%s): got type %s\n", i, sc->text,
                    v ? rk_conf_type_name(rk_conf_node_type(v)) : "(none)");
        rk_conf_destroy(c);
        CHECK(ok);
    }
}

/* ---- structure, lines and paths --------------------------------------- */

static const char nested_yaml[] =
    "# rankd config\n"                /* 1 */
    "store:\n"                        /* 2 */
    "  path: ./data\n"                /* 3 */
    "  fsync: everysec\n"             /* 4 */
    "events:\n"                       /* 5 */
    "  click:\n"                      /* 6 */
    "    weight: 1.5\n"               /* 7 */
    "sources:\n"                      /* 8 */
    "  - name: als\n"                 /* 9 */
    "    quota: 100\n"                /* 10 */
    "  - name: popular\n"             /* 11 */
    "    quota: 20\n"                 /* 12 */
    "  - {name: fresh, quota: 5}\n"   /* 13 */
    "tags: [a, b, c]\n";              /* 14 */

static const char nested_json[] =
    "{\n"                                              /* 1 */
    "  \"store\": {\"path\": \"./data\",\n"            /* 2 */
    "            \"fsync\": \"everysec\"},\n"          /* 3 */
    "  \"events\": {\n"                                /* 4 */
    "    \"click\": {\"weight\": 1.5}\n"               /* 5 */
    "  },\n"                                           /* 6 */
    "  \"sources\": [\n"                               /* 7 */
    "    {\"name\": \"als\", \"quota\": 100},\n"       /* 8 */
    "    {\"name\": \"popular\",\n"                    /* 9 */
    "     \"quota\": 20},\n"                           /* 10 */
    "    {\"name\": \"fresh\", \"quota\": 5}\n"        /* 11 */
    "  ],\n"                                           /* 12 */
    "  \"tags\": [\"a\", \"b\",\n"                     /* 13 */
    "           \"c\"]\n"                              /* 14 */
    "}\n";

typedef struct where_case {
    const char *path;
    int yaml_line, json_line;
    rk_conf_type type;
} where_case;

static const where_case where_cases[] = {
    {"", 2, 1, RK_CONF_MAP},
    {"store", 2, 2, RK_CONF_MAP},
    {"store.fsync", 4, 3, RK_CONF_STR},
    {"events.click.weight", 7, 5, RK_CONF_FLOAT},
    {"sources", 8, 7, RK_CONF_LIST},
    {"sources[0]", 9, 8, RK_CONF_MAP},
    {"sources[1].quota", 12, 10, RK_CONF_INT},
    {"sources[2].name", 13, 11, RK_CONF_STR},
    {"tags[2]", 14, 14, RK_CONF_STR},
};

static void check_nested(fmt f)
{
    rk_conf *c;
    rk_err err;
    CHECK_OK(parse(f, f == YAML ? nested_yaml : nested_json, &c, &err));
    const rk_conf_node *root = rk_conf_root(c);
    for (size_t i = 0; i < sizeof where_cases / sizeof where_cases[0]; i++) {
        const where_case *w = &where_cases[i];
        const rk_conf_node *n = rk_conf_find(root, w->path);
        int line = f == YAML ? w->yaml_line : w->json_line;
        int ok = n && rk_conf_node_type(n) == w->type &&
                 rk_conf_node_line(n) == line &&
                 !strcmp(rk_conf_node_path(n), w->path) &&
                 !strcmp(rk_conf_node_file(n), f == YAML ? "t.yaml" : "t.json");
        if (!ok)
            fprintf(stderr, "  %s: %s line %d path '%s'\n", w->path,
                    n ? rk_conf_type_name(rk_conf_node_type(n)) : "missing",
                    rk_conf_node_line(n), rk_conf_node_path(n));
        if (!ok) rk_conf_destroy(c);
        CHECK(ok);
    }
    /* Document order, keys from rk_conf_at, and lookups that miss. */
    const char *key;
    const rk_conf_node *first = rk_conf_at(root, 0, &key);
    int ok = first && !strcmp(key, "store") && rk_conf_len(root) == 4 &&
             rk_conf_at(root, 3, &key) && !strcmp(key, "tags") &&
             !rk_conf_at(root, 4, &key) && !key &&
             rk_conf_len(rk_conf_find(root, "sources")) == 3 &&
             rk_conf_at(rk_conf_find(root, "tags"), 1, &key) && key == NULL &&
             rk_conf_len(rk_conf_find(root, "store.path")) == 0 &&
             !rk_conf_find(root, "store.nope") && !rk_conf_find(root, "tags[3]") &&
             !rk_conf_find(root, "tags.x") && !rk_conf_find(root, "store[0]") &&
             !rk_conf_find(root, "store.") && !rk_conf_find(root, "tags[x]") &&
             !rk_conf_get(rk_conf_find(root, "tags"), "a") &&
             rk_conf_find(root, "events.click") ==
                 rk_conf_get(rk_conf_get(root, "events"), "click");
    rk_conf_destroy(c);
    CHECK(ok);
}

TEST(nested_yaml_lines_paths) { check_nested(YAML); }
TEST(nested_json_lines_paths) { check_nested(JSON); }

TEST(root_list_paths)
{
    rk_conf *c;
    rk_err err;
    CHECK_OK(parse(YAML, "- a\n- [x, {k: v}]\n", &c, &err));
    const rk_conf_node *n = rk_conf_find(rk_conf_root(c), "[1][1].k");
    int ok = n && !strcmp(rk_conf_node_path(n), "[1][1].k") &&
             rk_conf_node_line(n) == 2;
    rk_conf_destroy(c);
    CHECK(ok);
}

TEST(long_paths_are_cut)
{
    /* Paths are capped; descendants of a cut path share its text. */
    char doc[2048];
    char key[301];
    memset(key, 'k', 300);
    key[300] = '\0';
    snprintf(doc, sizeof doc, "%s:\n  a:\n    b: 1\n", key);
    rk_conf *c;
    rk_err err;
    CHECK_OK(parse(YAML, doc, &c, &err));
    const rk_conf_node *k = rk_conf_get(rk_conf_root(c), key);
    const rk_conf_node *b = rk_conf_find(k, "a.b");
    const char *p = rk_conf_node_path(b);
    size_t len = strlen(p);
    int ok = k && b && len < 128 && len > 100 && !strcmp(p + len - 3, "...") &&
             !strncmp(p, key, 100);
    rk_conf_destroy(c);
    CHECK(ok);
}

TEST(empty_documents)
{
    static const struct { fmt f; const char *text; } cases[] = {
        {YAML, ""}, {YAML, "# only a comment\n"}, {YAML, "---\n"},
        {YAML, "~\n"}, {JSON, ""}, {JSON, " \n\t\n"}, {JSON, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_conf *c;
        rk_err err;
        CHECK_OK(parse(cases[i].f, cases[i].text, &c, &err));
        const rk_conf_node *root = rk_conf_root(c);
        int ok = root && rk_conf_node_type(root) == RK_CONF_NULL &&
                 rk_conf_len(root) == 0 && !rk_conf_get(root, "x") &&
                 rk_conf_check_keys(NULL, NULL, NULL) == 0;
        rk_conf_destroy(c);
        CHECK(ok);
    }
    rk_conf_destroy(NULL);
    CHECK(rk_conf_root(NULL) == NULL);
}

/* ---- malformed input --------------------------------------------------- */

typedef struct bad_case {
    fmt f;
    const char *text;
    int code;
    const char *msg; /* expected substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {YAML, "a: 1\nb: 2\na: 3\n", RK_EPARSE, "t.yaml:3: duplicate key 'a'"},
    {YAML, "m:\n  x: 1\n  y: 2\n  x: 3\n  y: 4\n", RK_EPARSE,
     "t.yaml:4: duplicate key 'x'"},
    {YAML, "{a: 1, a: 2}", RK_EPARSE, "t.yaml:1: duplicate key 'a'"},
    {YAML, "base: &b {x: 1}\nother: *b\n", RK_EPARSE,
     "t.yaml:1:7: anchors and aliases are not supported"},
    {YAML, "a: &x 1\n", RK_EPARSE, "anchors and aliases"},
    {YAML, "? [a, b]\n: 1\n", RK_EPARSE, "t.yaml:1:3: map keys must be scalars"},
    {YAML, "{? {a: 1} : 2}", RK_EPARSE, "map keys must be scalars"},
    {YAML, "a: 1\n---\nb: 2\n", RK_EPARSE, "t.yaml:2:1: only one document"},
    {YAML, "a:\n\tb: 1\n", RK_EPARSE, "t.yaml:2:1: found character that cannot start any token"},
    {YAML, "a: [1, 2\n", RK_EPARSE, "t.yaml:2:1:"},
    {YAML, "a: {b: 1\n", RK_EPARSE, "t.yaml:"},
    {YAML, "a: \"unterminated\n", RK_EPARSE, "t.yaml:"},
    {YAML, "a: 1\n b: 2\n", RK_EPARSE, "t.yaml:2:"},
    {YAML, "v: 9223372036854775808", RK_EPARSE, "t.yaml:1:4: number out of range"},
    {YAML, "v: 1e999", RK_EPARSE, "number out of range"},
    {YAML, "v: !!int abc", RK_EPARSE, "does not match its tag !!int"},
    {YAML, "v: !custom x", RK_EPARSE, "unsupported tag '!custom'"},
    {YAML, "v: !!set {a}", RK_EPARSE, "unsupported tag"},
    {YAML, "!k v: 1", RK_EPARSE, "t.yaml:1:1: unsupported tag '!k'"},
    {YAML, "v: \"a\\0b\"", RK_EPARSE, "NUL character"},
    {YAML, "v: \xff\xfe\xfd", RK_EPARSE, "t.yaml:1:4:"},
    {JSON, "{\"a\": 1, \"b\": 2, \"a\": 3}", RK_EPARSE, "t.json:1: duplicate key 'a'"},
    {JSON, "{\"a\": [1, 2}", RK_EPARSE, "t.json:1:"},
    {JSON, "{\"a\": 1,\n \"b\": [1,\n", RK_EPARSE, "t.json:3:"},
    {JSON, "{\"a\": 1,}", RK_EPARSE, "t.json:1:"},
    {JSON, "{\"a\": 1} x", RK_EPARSE, "t.json:1:"},
    {JSON, "{'a': 1}", RK_EPARSE, "t.json:1:"},
    {JSON, "{\"a\": \"x\\u0000y\"}", RK_EPARSE, "t.json:1:"},
    {JSON, "{\"a\": 99999999999999999999}", RK_EPARSE, "t.json:1:"},
    {JSON, "{\"a\": \"\xff\"}", RK_EPARSE, "t.json:1:"},
};

TEST(malformed_input)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *b = &bad_cases[i];
        rk_conf *c = (rk_conf *)1;
        rk_err err;
        int rc = parse(b->f, b->text, &c, &err);
        int ok = rc == b->code && err.code == b->code && c == NULL &&
                 strstr(err.msg, b->msg) != NULL;
        if (!ok)
            fprintf(stderr, "  case %zu: rc %s, msg \"%s\", want \"%s\"\n", i,
                    rk_errname(rc), err.msg, b->msg);
        if (rc == 0) rk_conf_destroy(c);
        CHECK(ok);
    }
}

/* ---- limits ------------------------------------------------------------ */

/* Builds depth nested lists "[[...]]" (valid in both formats). */
static char *nested_lists(int depth)
{
    char *s = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) {
        s[i] = '[';
        s[depth * 2 - 1 - i] = ']';
    }
    s[depth * 2] = '\0';
    return s;
}

TEST(depth_limit)
{
    for (int f = YAML; f <= JSON; f++) {
        char *ok64 = nested_lists(64), *bad65 = nested_lists(65),
             *deep = nested_lists(5000);
        rk_conf *c;
        rk_err err;
        int rc1 = parse((fmt)f, ok64, &c, &err);
        if (rc1 == 0) rk_conf_destroy(c);
        int rc2 = parse((fmt)f, bad65, &c, &err);
        int msg_ok = strstr(err.msg, "nesting deeper than 64 levels") != NULL;
        int rc3 = parse((fmt)f, deep, &c, &err);
        free(ok64);
        free(bad65);
        free(deep);
        CHECK_EQ_INT(rc1, 0);
        CHECK_EQ_INT(rc2, RK_ELIMIT);
        CHECK(msg_ok);
        CHECK_EQ_INT(rc3, RK_ELIMIT);
    }
}

TEST(node_and_size_limits)
{
    /* A list of n zeros is n + 1 nodes. */
    size_t n = 100000;
    char *s = malloc(n * 2 + 3);
    size_t o = 0;
    s[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        s[o++] = '0';
        s[o++] = ',';
    }
    s[o - 1] = ']';
    s[o] = '\0';
    rk_conf *c;
    rk_err err;
    int rc_y = parse(YAML, s, &c, &err);
    int msg_ok = strstr(err.msg, "more than 100000 nodes") != NULL;
    int rc_j = parse(JSON, s, &c, &err);
    /* One element fewer fits exactly. */
    s[o - 3] = ']';
    s[o - 2] = '\0';
    int rc_fit = parse(JSON, s, &c, &err);
    if (rc_fit == 0) rk_conf_destroy(c);
    free(s);
    CHECK_EQ_INT(rc_y, RK_ELIMIT);
    CHECK(msg_ok);
    CHECK_EQ_INT(rc_j, RK_ELIMIT);
    CHECK_EQ_INT(rc_fit, 0);

    size_t big = (1u << 20) + 1;
    char *b = malloc(big);
    memset(b, ' ', big);
    int rc1 = rk_conf_parse_yaml(&c, b, big, "big.yaml", &err);
    int rc2 = rk_conf_parse_json(&c, b, big, "big.json", &err);
    int rc3 = rk_conf_parse_json(&c, b, big - 1, "big.json", &err);
    if (rc3 == 0) rk_conf_destroy(c);
    free(b);
    CHECK_EQ_INT(rc1, RK_ELIMIT);
    CHECK_EQ_INT(rc2, RK_ELIMIT);
    CHECK_EQ_INT(rc3, 0);
}

/* ---- typed accessors ----------------------------------------------------- */

static const char access_yaml[] =
    "store:\n"
    "  fsync: sometimes\n"
    "  batch: 5000\n"
    "  ratio: 2\n"
    "  name: 12\n"
    "  flag: maybe\n"
    "  cache:\n"
    "  path: [a]\n"
    "sources:\n"
    "  - name: als\n"
    "    quoat: 3\n";

/* Each row is one accessor call on a bad value and the message it must
 * produce: file, line, path and what is wrong. */
TEST(accessor_messages)
{
    static const char *const fsync_modes[] = {"always", "everysec", NULL};
    static const char *const source_keys[] = {"name", "quota", NULL};
    static const char *const top_keys[] = {"store", NULL};
    rk_conf *c;
    rk_err err;
    CHECK_OK(parse(YAML, access_yaml, &c, &err));
    const rk_conf_node *root = rk_conf_root(c);
    const rk_conf_node *store = rk_conf_get(root, "store");
    int64_t iv;
    double dv;
    const char *sv;
    int bv, idx;
    char got[16][RK_ERR_MSG_MAX];
    int codes[16];
    size_t k = 0;
#define ROW(call) (rk_err_clear(&err), codes[k] = (call), \
                   snprintf(got[k], sizeof got[k], "%s", err.msg), k++)
    ROW(rk_conf_as_enum(rk_conf_get(store, "fsync"), 1, fsync_modes, &idx, &err));
    ROW(rk_conf_as_int_range(rk_conf_get(store, "batch"), 10, 1, 1000, &iv, &err));
    ROW(rk_conf_as_str(rk_conf_get(store, "name"), "x", &sv, &err));
    ROW(rk_conf_as_bool(rk_conf_get(store, "flag"), 0, &bv, &err));
    ROW(rk_conf_as_int(rk_conf_get(store, "path"), 0, &iv, &err));
    ROW(rk_conf_as_float(store, 0, &dv, &err));
    ROW(rk_conf_check_keys(rk_conf_find(root, "sources[0]"), source_keys, &err));
    ROW(rk_conf_check_keys(root, top_keys, &err));
    ROW(rk_conf_as_enum(rk_conf_get(store, "batch"), 0, fsync_modes, &idx, &err));
    ROW(rk_conf_error(&err, rk_conf_find(root, "sources[0].name"),
                      "source '%s' is not built", "als"));
    ROW(rk_conf_check_keys(rk_conf_get(store, "batch"), top_keys, &err));
#undef ROW
    static const char *const want[] = {
        "t.yaml:2: store.fsync: expected one of always, everysec; got 'sometimes'",
        "t.yaml:3: store.batch: expected int in [1, 1000]; got 5000",
        "t.yaml:5: store.name: expected string, got int 12",
        "t.yaml:6: store.flag: expected bool, got string 'maybe'",
        "t.yaml:8: store.path: expected int, got list",
        "t.yaml:1: store: expected float, got map",
        "t.yaml:11: unknown key 'quoat' in sources[0] (allowed: name, quota)",
        "t.yaml:9: unknown key 'sources' at top level (allowed: store)",
        "t.yaml:3: store.batch: expected one of always, everysec; got int 5000",
        "t.yaml:10: sources[0].name: source 'als' is not built",
        "t.yaml:3: store.batch: expected map, got int 5000",
    };
    rk_conf_destroy(c);
    CHECK_EQ_INT(k, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < k; i++) {
        CHECK_EQ_INT(codes[i], RK_ECONFIG);
        CHECK_STR(got[i], want[i]);
    }
}

TEST(accessor_values_and_defaults)
{
    static const char *const modes[] = {"always", "everysec", NULL};
    static const char *const keys[] = {"fsync", "batch", "ratio", "name",
                                       "flag", "cache", "path", NULL};
    rk_conf *c;
    rk_err err;
    CHECK_OK(parse(YAML, "s:\n  fsync: everysec\n  batch: 50\n  ratio: 2\n"
                         "  f: 0.25\n  on: true\n  null_v: ~\n", &c, &err));
    const rk_conf_node *s = rk_conf_get(rk_conf_root(c), "s");
    int64_t iv = 0;
    double dv = 0;
    const char *sv = NULL;
    int bv = 0, idx = -1, ok = 1;
    ok &= rk_conf_as_enum(rk_conf_get(s, "fsync"), 0, modes, &idx, NULL) == 0 && idx == 1;
    ok &= rk_conf_as_enum(rk_conf_get(s, "none"), 0, modes, &idx, NULL) == 0 && idx == 0;
    ok &= rk_conf_as_int_range(rk_conf_get(s, "batch"), 1, 1, 50, &iv, NULL) == 0 && iv == 50;
    ok &= rk_conf_as_int_range(NULL, 7, 1, 5, &iv, NULL) == 0 && iv == 7;
    /* Integers are accepted where floats are expected. */
    ok &= rk_conf_as_float(rk_conf_get(s, "ratio"), 0, &dv, NULL) == 0 && dv == 2.0;
    ok &= rk_conf_as_float(rk_conf_get(s, "f"), 0, &dv, NULL) == 0 && dv == 0.25;
    ok &= rk_conf_as_int(rk_conf_get(s, "f"), 0, &iv, NULL) == RK_ECONFIG;
    ok &= rk_conf_as_bool(rk_conf_get(s, "on"), 0, &bv, NULL) == 0 && bv == 1;
    /* Missing and null nodes give the default. */
    ok &= rk_conf_as_str(rk_conf_get(s, "null_v"), "dflt", &sv, NULL) == 0 &&
          !strcmp(sv, "dflt");
    ok &= rk_conf_as_int(NULL, 9, &iv, NULL) == 0 && iv == 9;
    ok &= rk_conf_as_bool(NULL, 1, &bv, NULL) == 0 && bv == 1;
    ok &= rk_conf_as_float(rk_conf_get(s, "null_v"), 1.5, &dv, NULL) == 0 && dv == 1.5;
    ok &= rk_conf_check_keys(s, keys, &err) == RK_ECONFIG; /* f, on, null_v */
    ok &= strstr(err.msg, "t.yaml:5: unknown key 'f' in s") != NULL;
    ok &= !strcmp(rk_conf_type_name(RK_CONF_MAP), "map") &&
          !strcmp(rk_conf_type_name(RK_CONF_STR), "string") &&
          !strcmp(rk_conf_type_name((rk_conf_type)99), "unknown");
    ok &= rk_conf_node_type(NULL) == RK_CONF_NULL && rk_conf_node_line(NULL) == 0 &&
          !strcmp(rk_conf_node_path(NULL), "") && rk_conf_len(NULL) == 0;
    rk_conf_destroy(c);
    CHECK(ok);
}

/* ---- files ------------------------------------------------------------- */

static int write_file(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(text, 1, n, f);
    return (fclose(f) != 0 || w != n) ? -1 : 0;
}

#define NO_FILE ((const char *)0)   /* do not create anything */
#define A_DIR ((const char *)1)     /* create a directory instead */
#define TOO_BIG ((const char *)2)   /* a file over the 1 MiB limit */

typedef struct file_case {
    const char *name;
    const char *text;
    int code;
    int64_t a;        /* value of key "a" on success */
    const char *msg;  /* expected substring of the error */
} file_case;

static const file_case file_cases[] = {
    {"rankd.yaml", "a: 1\nb: [x]\n", 0, 1, NULL},
    {"rankd.yml", "a: 3\n", 0, 3, NULL},
    {"rankd.json", "{\"a\": 5,\n \"b\": \"\\u0041\"}", 0, 5, NULL},
    {"RANKD.JSON", "{\"a\": 2}", 0, 2, NULL},
    /* Valid YAML, but the extension says JSON. */
    {"yaml.json", "a: 4\n", RK_EPARSE, 0, "yaml.json:1:1:"},
    {"bad.yml", "a: 1\nb: [1,\n", RK_EPARSE, 0, "bad.yml:3:1:"},
    {"nope.yaml", NO_FILE, RK_EIO, 0,
     "nope.yaml: cannot open: No such file or directory"},
    {"sub.yaml", A_DIR, RK_EIO, 0, "sub.yaml: cannot read: Is a directory"},
    {"big.yaml", TOO_BIG, RK_ELIMIT, 0, "big.yaml: file is 1048577 bytes"},
};

TEST(load_file)
{
    const char *dir = rk_test_tmpdir("conf");
    for (size_t i = 0; i < sizeof file_cases / sizeof file_cases[0]; i++) {
        const file_case *fc = &file_cases[i];
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, fc->name);
        int w = 0;
        if (fc->text == A_DIR) {
            w = mkdir(path, 0700);
        } else if (fc->text == TOO_BIG) {
            size_t n = (1u << 20) + 1;
            char *big = malloc(n);
            memset(big, '#', n);
            w = write_file(path, big, n);
            free(big);
        } else if (fc->text != NO_FILE) {
            w = write_file(path, fc->text, strlen(fc->text));
        }
        rk_conf *c = (rk_conf *)1;
        rk_err err;
        rk_err_clear(&err);
        int rc = rk_conf_load_file(&c, path, &err);
        int64_t a = -1;
        int same_file = 1;
        if (rc == 0) {
            const rk_conf_node *root = rk_conf_root(c);
            rk_conf_as_int(rk_conf_get(root, "a"), -1, &a, NULL);
            same_file = !strcmp(rk_conf_node_file(root), path);
            rk_conf_destroy(c);
        }
        if (rc != fc->code || (rc && !strstr(err.msg, fc->msg)))
            fprintf(stderr, "  %s: %s %s\n", fc->name, rk_errname(rc), err.msg);
        if (w != 0 || rc != fc->code) rk_test_rmdir(dir);
        CHECK_EQ_INT(w, 0);
        CHECK_EQ_INT(rc, fc->code);
        if (rc == 0) {
            CHECK_EQ_INT(a, fc->a);
            CHECK(same_file);
        } else {
            CHECK(c == NULL);
            CHECK_EQ_INT(err.code, fc->code);
            if (!strstr(err.msg, fc->msg)) rk_test_rmdir(dir);
            CHECK_CONTAINS(err.msg, fc->msg);
        }
    }
    rk_test_rmdir(dir);
    rk_conf *c = (rk_conf *)1;
    CHECK_EQ_INT(rk_conf_load_file(&c, NULL, NULL), RK_EINVAL);
    CHECK(c == NULL);
}

/* ---- allocation failure ----------------------------------------------- */

static const char fault_yaml[] =
    "store:\n  path: ./data\n  fsync: everysec\n  batch: 100\n"
    "events:\n  click: {weight: 1.5, decay: 0.9}\n  buy: {weight: 5}\n"
    "sources:\n  - {name: als, quota: 100, tags: [a, b, c]}\n"
    "  - name: popular\n    quota: 20\n"
    "  - \"quoted string with some length to it, more than a few words\"\n";

static const char fault_json[] =
    "{\"store\": {\"path\": \"./data\", \"fsync\": \"everysec\", \"batch\": 100},\n"
    " \"events\": {\"click\": {\"weight\": 1.5, \"decay\": 0.9},\n"
    "            \"b\\u0075y\": {\"weight\": 5}},\n"
    " \"sources\": [{\"name\": \"als\", \"quota\": 100, \"tags\": [\"a\", \"b\"]},\n"
    "             {\"name\": \"popular\", \"quota\": 20}, null, true]}\n";

/* Fails the 1st, 2nd, ... allocation until the parse succeeds; every
 * failure must be a clean RK_ENOMEM with nothing leaked. */
static void fault_loop(fmt f, const char *text, int allow_parse_error)
{
    rk_mem_stats base, now;
    rk_mem_get_stats(&base);
    int succeeded = 0;
    for (uint64_t n = 1; n < 10000 && !succeeded; n++) {
        rk_conf *c = (rk_conf *)1;
        rk_err err;
        rk_mem_fail_at(n, 0);
        int rc = parse(f, text, &c, &err);
        rk_mem_fail_at(0, 0);
        if (rc == 0) {
            const rk_conf_node *w = rk_conf_find(rk_conf_root(c), "sources[1].quota");
            int64_t q = 0;
            int ok = rk_conf_as_int(w, 0, &q, NULL) == 0 && q == 20;
            rk_conf_destroy(c);
            CHECK(ok);
            succeeded = 1;
        } else {
            int ok = rc == RK_ENOMEM || (allow_parse_error && rc == RK_EPARSE);
            if (!ok)
                fprintf(stderr, "  n=%llu: %s %s\n", (unsigned long long)n,
                        rk_errname(rc), err.msg);
            CHECK(ok);
            CHECK(c == NULL);
        }
        rk_mem_get_stats(&now);
        CHECK_EQ_INT(now.in_use, base.in_use);
    }
    CHECK(succeeded);
}

TEST(alloc_failure_yaml) { fault_loop(YAML, fault_yaml, 0); }
/* Here only rankd's own allocations fail: jansson keeps the system
 * allocator (the harness routes it through rk_malloc before each test). */
TEST(alloc_failure_json)
{
    json_set_alloc_funcs(malloc, free);
    fault_loop(JSON, fault_json, 0);
    rk_mem_hook_libraries();
}

static void *jansson_rk_malloc(size_t n) { return rk_malloc(n); }
static void jansson_rk_free(void *p) { rk_free(p); }

/* jansson normally uses the system allocator. Routed through rk_malloc
 * here, its own allocations fail too: the load must still fail cleanly and
 * leak nothing. jansson reports some of its out-of-memory cases as syntax
 * errors (a string it could not copy becomes an invalid token), so
 * RK_EPARSE is tolerated in this one test. */
TEST(alloc_failure_json_inside_jansson)
{
    json_set_alloc_funcs(jansson_rk_malloc, jansson_rk_free);
    fault_loop(JSON, fault_json, 1);
    rk_mem_hook_libraries();
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, scalar_types, nested_yaml_lines_paths,
                 nested_json_lines_paths, root_list_paths, long_paths_are_cut,
                 empty_documents, malformed_input, depth_limit,
                 node_and_size_limits, accessor_messages,
                 accessor_values_and_defaults, load_file, alloc_failure_yaml,
                 alloc_failure_json, alloc_failure_json_inside_jansson);
}
