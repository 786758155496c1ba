/*
 * conf_json.c — JSON front end of the configuration tree (jansson).
 *
 * jansson validates the text (syntax, UTF-8, duplicate keys, number
 * ranges) and decodes strings and numbers, but it keeps no positions. So
 * the tree is built by walking the text itself with a small cursor, in
 * document order, taking each value from the jansson tree as the cursor
 * reaches it: the cursor supplies the line of every node and the order of
 * map keys, jansson supplies the values. Because jansson has accepted the
 * text, the cursor only has to skip well-formed tokens; should the two ever
 * disagree the load fails with RK_EINTERNAL rather than guessing.
 */
#include <jansson.h>
#include <string.h>

#include "core/conf_int.h"

typedef struct jwalk {
    rk_conf *c;
    rk_err *err;
    const char *p, *end; /* cursor into the text */
    int line;
} jwalk;

static void skip_ws(jwalk *w)
{
    while (w->p < w->end) {
        char ch = *w->p;
        if (ch == '\n') w->line++;
        else if (ch != ' ' && ch != '\t' && ch != '\r') break;
        w->p++;
    }
}

/* Skips a string token starting at '"'; valid JSON strings hold no raw
 * newlines, so the line does not change. Returns 0 if unterminated. */
static int skip_string(jwalk *w)
{
    const char *q = w->p + 1;
    while (q < w->end && *q != '"') {
        if (*q == '\\' && w->end - q < 2) return 0;
        q += *q == '\\' ? 2 : 1;
    }
    if (q >= w->end) return 0;
    w->p = q + 1;
    return 1;
}

static int desync(jwalk *w)
{
    return rk_err_set(w->err, RK_EINTERNAL,
                      "%s:%d: JSON text and parsed tree disagree", w->c->file,
                      w->line);
}

/* Decodes a raw key token (quotes included) that contains escapes. The
 * result is a jansson string the caller must release. */
static json_t *decode_key(const char *raw, size_t n)
{
    return json_loadb(raw, n, JSON_DECODE_ANY, NULL);
}

static int walk(jwalk *w, json_t *v, rk_conf_node *parent, const char *key,
                int key_line, int depth);

static int walk_object(jwalk *w, json_t *obj, rk_conf_node *node, int depth)
{
    size_t seen = 0;
    w->p++; /* '{' */
    for (;;) {
        skip_ws(w);
        if (w->p < w->end && *w->p == ',') {
            w->p++;
            skip_ws(w);
        }
        if (w->p >= w->end) return desync(w);
        if (*w->p == '}') {
            w->p++;
            break;
        }
        if (*w->p != '"') return desync(w);
        const char *raw = w->p;
        int key_line = w->line;
        if (!skip_string(w)) return desync(w);
        size_t rawlen = (size_t)(w->p - raw);
        /* Most keys need no decoding: the bytes between the quotes are the
         * key. Only keys with escapes go back through jansson. */
        json_t *dec = NULL;
        const char *ks = raw + 1;
        size_t kn = rawlen - 2;
        if (memchr(ks, '\\', kn)) {
            dec = decode_key(raw, rawlen);
            if (!json_is_string(dec)) {
                json_decref(dec);
                return dec ? desync(w)
                           : rk_err_set(w->err, RK_ENOMEM, "%s: out of memory",
                                        w->c->file);
            }
            ks = json_string_value(dec);
            kn = json_string_length(dec);
        }
        json_t *val = json_object_getn(obj, ks, kn);
        char *k = val ? rk__conf_strndup(w->c, ks, kn) : NULL;
        json_decref(dec);
        if (!val) return desync(w);
        if (!k)
            return rk_err_set(w->err, RK_ENOMEM, "%s: out of memory",
                              w->c->file);
        skip_ws(w);
        if (w->p >= w->end || *w->p != ':') return desync(w);
        w->p++;
        int rc = walk(w, val, node, k, key_line, depth);
        if (rc) return rc;
        seen++;
    }
    return seen == json_object_size(obj) ? 0 : desync(w);
}

static int walk_array(jwalk *w, json_t *arr, rk_conf_node *node, int depth)
{
    size_t n = json_array_size(arr);
    w->p++; /* '[' */
    for (size_t i = 0; i < n; i++) {
        skip_ws(w);
        if (i > 0) {
            if (w->p >= w->end || *w->p != ',') return desync(w);
            w->p++;
        }
        int rc = walk(w, json_array_get(arr, i), node, NULL, 0, depth);
        if (rc) return rc;
    }
    skip_ws(w);
    if (w->p >= w->end || *w->p != ']') return desync(w);
    w->p++;
    return 0;
}

/* Adds value v (whose text starts at the cursor, after blanks) under
 * parent and advances the cursor past it. depth counts open containers. */
static int walk(jwalk *w, json_t *v, rk_conf_node *parent, const char *key,
                int key_line, int depth)
{
    skip_ws(w);
    if (w->p >= w->end) return desync(w);
    rk_conf_type t;
    switch (json_typeof(v)) {
    case JSON_OBJECT: t = RK_CONF_MAP; break;
    case JSON_ARRAY: t = RK_CONF_LIST; break;
    case JSON_STRING: t = RK_CONF_STR; break;
    case JSON_INTEGER: t = RK_CONF_INT; break;
    case JSON_REAL: t = RK_CONF_FLOAT; break;
    case JSON_TRUE:
    case JSON_FALSE: t = RK_CONF_BOOL; break;
    default: t = RK_CONF_NULL; break;
    }
    /* The first byte tells the token's kind; check it against jansson's
     * value so a cursor that slipped is caught at once. */
    char ch = *w->p;
    int ok = t == RK_CONF_MAP    ? ch == '{'
             : t == RK_CONF_LIST ? ch == '['
             : t == RK_CONF_STR  ? ch == '"'
             : t == RK_CONF_BOOL ? ch == 't' || ch == 'f'
             : t == RK_CONF_NULL ? ch == 'n'
                                 : ch == '-' || (ch >= '0' && ch <= '9');
    if (!ok) return desync(w);
    if ((t == RK_CONF_MAP || t == RK_CONF_LIST) && depth >= RK__CONF_MAX_DEPTH)
        return rk_err_set(w->err, RK_ELIMIT, "%s:%d: nesting deeper than %d levels",
                          w->c->file, w->line, RK__CONF_MAX_DEPTH);

    rk_conf_node *node;
    int rc = rk__conf_add(w->c, parent, key, key_line, t, w->line, &node,
                          w->err);
    if (rc) return rc;
    switch (t) {
    case RK_CONF_MAP:
        rc = walk_object(w, v, node, depth + 1);
        return rc ? rc : rk__conf_close(w->c, node, w->err);
    case RK_CONF_LIST:
        rc = walk_array(w, v, node, depth + 1);
        return rc ? rc : rk__conf_close(w->c, node, w->err);
    case RK_CONF_STR:
        /* jansson refuses \u0000 unless asked (JSON_ALLOW_NUL), so the
         * value is a proper C string. */
        node->u.s = rk__conf_strndup(w->c, json_string_value(v),
                                     json_string_length(v));
        if (!node->u.s)
            return rk_err_set(w->err, RK_ENOMEM, "%s: out of memory",
                              w->c->file);
        return skip_string(w) ? 0 : desync(w);
    case RK_CONF_INT: node->u.i = json_integer_value(v); break;
    case RK_CONF_FLOAT: node->u.f = json_real_value(v); break;
    case RK_CONF_BOOL: node->u.b = json_is_true(v); break;
    default: break;
    }
    /* Literals and numbers end at a delimiter. */
    while (w->p < w->end && *w->p && !strchr(",]} \t\r\n", *w->p)) w->p++;
    return 0;
}

/* Extracts the key from jansson's "duplicate object key near '"x"'". */
static void dup_key_name(const char *text, char *out, size_t size)
{
    const char *s = strstr(text, "near '");
    if (!s) {
        snprintf(out, size, "?");
        return;
    }
    s += 6;
    size_t n = strlen(s);
    if (n && s[n - 1] == '\'') n--;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') s++, n -= 2;
    rk__conf_quote(out, size, s, n);
}

static int load_error(const json_error_t *je, const char *file, rk_err *err)
{
    /* When jansson cannot allocate its lexer it returns before writing any
     * error at all; an empty message can mean nothing else. */
    if (je->text[0] == '\0')
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", file);
    switch (json_error_code(je)) {
    case json_error_out_of_memory:
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", file);
    case json_error_stack_overflow:
        return rk_err_set(err, RK_ELIMIT, "%s:%d: nesting deeper than %d levels",
                          file, je->line, RK__CONF_MAX_DEPTH);
    case json_error_duplicate_key: {
        char q[80];
        dup_key_name(je->text, q, sizeof q);
        return rk_err_set(err, RK_EPARSE, "%s:%d: duplicate key '%s'", file,
                          je->line, q);
    }
    default:
        return rk_err_set(err, RK_EPARSE, "%s:%d:%d: %s", file, je->line,
                          je->column, je->text);
    }
}

int rk_conf_parse_json(rk_conf **out, const char *buf, size_t len,
                       const char *name, rk_err *err)
{
    *out = NULL;
    if (!buf && len) return rk_err_set(err, RK_EINVAL, "config: no input");
    const char *file = name ? name : "<input>";
    if (len > RK__CONF_MAX_INPUT)
        return rk_err_set(err, RK_ELIMIT, "%s: input is %zu bytes; the limit is %u",
                          file, len, RK__CONF_MAX_INPUT);
    jwalk w = {0};
    w.err = err;
    w.p = buf;
    w.end = buf + len;
    w.line = 1;
    int rc = rk__conf_create(&w.c, name, err);
    if (rc) return rc;

    /* Blank input is an empty configuration, as in YAML. */
    skip_ws(&w);
    if (w.p == w.end) {
        rk_conf_node *root;
        rc = rk__conf_add(w.c, NULL, NULL, 0, RK_CONF_NULL, 1, &root, err);
        goto done;
    }
    w.line = 1;
    w.p = buf;

    /* A raw NUL is never valid JSON, but jansson skips one that directly
     * follows a number ("[1\0]" loads as [1]); the text walk would then
     * disagree with the tree, so refuse it here with its position. */
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        int line = 1, col = 1;
        for (const char *q = buf; q < nul; q++) {
            if (*q == '\n') line++, col = 1;
            else col++;
        }
        rc = rk_err_set(err, RK_EPARSE, "%s:%d:%d: NUL byte in input",
                        w.c->file, line, col);
        goto done;
    }

    json_error_t je;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                             &je);
    if (!doc) {
        rc = load_error(&je, w.c->file, err);
        goto done;
    }
    rc = walk(&w, doc, NULL, NULL, 0, 0);
    json_decref(doc);
done:
    if (rc) {
        rk_conf_destroy(w.c);
        return rc;
    }
    *out = w.c;
    return 0;
}
