/*
 * conf_yaml.c — YAML front end of the configuration tree (libyaml's event
 * parser).
 *
 * Events arrive in document order, so the tree is built top down with an
 * explicit stack of open containers; the depth limit bounds that stack, so
 * it is a fixed array and deep input costs neither recursion nor memory.
 * Only the plain data subset of YAML that a config needs is accepted: one
 * document, no anchors or aliases (they would make one node appear under
 * several paths and allow "billion laughs" blow-ups), scalar map keys, no
 * duplicate keys and no custom tags. Plain scalars are typed with the YAML
 * 1.2 core schema minus its rarely meant forms (0x/0o integers, .inf, .nan):
 * true/false, null/~/empty, decimal integers, decimal floats, otherwise
 * string. Quoted and block scalars are always strings.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/conf_int.h"

#define YTAG "tag:yaml.org,2002:"

typedef struct yframe {
    rk_conf_node *node;
    const char *key; /* maps: pending key; NULL while a key is expected */
    int key_line;
} yframe;

typedef struct yload {
    rk_conf *c;
    rk_err *err;
    int docs;
    int depth;
    yframe stack[RK__CONF_MAX_DEPTH];
} yload;

/* Formats a parse error at an event's start. */
static int ev_error(yload *y, int code, const yaml_event_t *ev, const char *what)
{
    return rk_err_set(y->err, code, "%s:%d:%d: %s", y->c->file,
                      (int)ev->start_mark.line + 1,
                      (int)ev->start_mark.column + 1, what);
}

static int ev_line(const yaml_event_t *ev)
{
    return (int)ev->start_mark.line + 1;
}

/* Matches the core schema's decimal integer: [-+]?[0-9]+. Returns 1 and
 * the value, 0 if s is not of that form, -1 if it is but overflows. */
static int parse_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n) return 0;
    /* Accumulate as a negative number: its range is one larger. */
    int64_t v = 0;
    int overflow = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        int d = s[i] - '0';
        if (v < (INT64_MIN + d) / 10) overflow = 1;
        else v = v * 10 - d;
    }
    if (overflow || (!neg && v == INT64_MIN)) return -1;
    *out = neg ? v : -v;
    return 1;
}

/* Matches [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?. Returns 1 and
 * the value, 0 if s is not of that form, -1 if it overflows a double.
 * s must be NUL-terminated at n (libyaml guarantees it). */
static int parse_float(const char *s, size_t n, double *out)
{
    size_t i = 0, d1 = 0, d2 = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, d1++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, d2++;
    }
    if (d1 == 0 && d2 == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t de = 0;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, de++;
        if (de == 0) return 0;
    }
    if (i != n) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s + n) return 0;
    /* Underflow to zero or a denormal is harmless; overflow is not. */
    if (isinf(v)) return -1;
    *out = v;
    return 1;
}

/* Types a plain scalar. Sets *t and the node value fields through v;
 * returns 0, or -1 when a number is out of range. */
static int resolve_plain(const char *s, size_t n, rk_conf_type *t,
                         int64_t *iv, double *fv, int *bv)
{
    if (n == 0 || (n == 1 && s[0] == '~') ||
        (n == 4 && (!strcmp(s, "null") || !strcmp(s, "Null") ||
                    !strcmp(s, "NULL")))) {
        *t = RK_CONF_NULL;
        return 0;
    }
    if ((n == 4 && (!strcmp(s, "true") || !strcmp(s, "True") ||
                    !strcmp(s, "TRUE"))) ||
        (n == 5 && (!strcmp(s, "false") || !strcmp(s, "False") ||
                    !strcmp(s, "FALSE")))) {
        *t = RK_CONF_BOOL;
        *bv = n == 4;
        return 0;
    }
    int r = parse_int(s, n, iv);
    if (r != 0) {
        *t = RK_CONF_INT;
        return r < 0 ? -1 : 0;
    }
    r = parse_float(s, n, fv);
    if (r != 0) {
        *t = RK_CONF_FLOAT;
        return r < 0 ? -1 : 0;
    }
    *t = RK_CONF_STR;
    return 0;
}

/* Checks a container's tag: none, or the standard one for its kind. */
static int check_tag(yload *y, const yaml_event_t *ev, const char *tag,
                     const char *want)
{
    if (!tag || !strcmp(tag, want)) return 0;
    char q[80], msg[128];
    rk__conf_quote(q, sizeof q, tag, strlen(tag));
    snprintf(msg, sizeof msg, "unsupported tag '%s'", q);
    return ev_error(y, RK_EPARSE, ev, msg);
}

/* Adds a node for the current event under the innermost open container,
 * consuming the pending key when that container is a map. */
static int add_node(yload *y, const yaml_event_t *ev, rk_conf_type t,
                    rk_conf_node **out)
{
    rk_conf_node *parent = NULL;
    const char *key = NULL;
    int key_line = 0;
    if (y->depth > 0) {
        yframe *f = &y->stack[y->depth - 1];
        parent = f->node;
        key = f->key;
        key_line = f->key_line;
        f->key = NULL;
    }
    return rk__conf_add(y->c, parent, key, key_line, t, ev_line(ev), out,
                        y->err);
}

/* True when the innermost open container is a map waiting for a key. */
static int expects_key(const yload *y)
{
    if (y->depth == 0) return 0;
    const yframe *f = &y->stack[y->depth - 1];
    return f->node->type == RK_CONF_MAP && f->key == NULL;
}

static int on_scalar(yload *y, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    /* Strings are handed out as C strings, so an escaped NUL ("\0") would
     * silently cut them short. */
    if (memchr(s, '\0', n))
        return ev_error(y, RK_EPARSE, ev, "NUL character in a scalar");
    if (expects_key(y)) {
        /* Any scalar can be a key; its text is the key ("1", "true").
         * Custom tags are refused here as they are on values. */
        if (tag && strcmp(tag, "!") && strncmp(tag, YTAG, strlen(YTAG)))
            return check_tag(y, ev, tag, YTAG "str");
        yframe *f = &y->stack[y->depth - 1];
        char *k = rk__conf_strndup(y->c, s, n);
        if (!k) return rk_err_set(y->err, RK_ENOMEM, "%s: out of memory",
                                  y->c->file);
        f->key = k;
        f->key_line = ev_line(ev);
        return 0;
    }

    rk_conf_type t = RK_CONF_STR;
    int64_t iv = 0;
    double fv = 0;
    int bv = 0;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (!tag) {
        if (plain && resolve_plain(s, n, &t, &iv, &fv, &bv) < 0)
            return ev_error(y, RK_EPARSE, ev, "number out of range");
    } else if (!strcmp(tag, "!") || !strcmp(tag, YTAG "str")) {
        t = RK_CONF_STR; /* "!" is YAML's non-specific tag: a string */
    } else {
        /* An explicit core tag must agree with the text: "!!int abc" is
         * a mistake, not a string. */
        rk_conf_type want;
        if (!strcmp(tag, YTAG "int")) want = RK_CONF_INT;
        else if (!strcmp(tag, YTAG "float")) want = RK_CONF_FLOAT;
        else if (!strcmp(tag, YTAG "bool")) want = RK_CONF_BOOL;
        else if (!strcmp(tag, YTAG "null")) want = RK_CONF_NULL;
        else return check_tag(y, ev, tag, YTAG "str");
        if (resolve_plain(s, n, &t, &iv, &fv, &bv) < 0)
            return ev_error(y, RK_EPARSE, ev, "number out of range");
        if (want == RK_CONF_FLOAT && t == RK_CONF_INT) {
            t = RK_CONF_FLOAT;
            fv = (double)iv;
        }
        if (t != want) {
            char msg[160];
            snprintf(msg, sizeof msg, "value does not match its tag !!%s",
                     tag + strlen(YTAG));
            return ev_error(y, RK_EPARSE, ev, msg);
        }
    }

    rk_conf_node *node;
    int rc = add_node(y, ev, t, &node);
    if (rc) return rc;
    switch (t) {
    case RK_CONF_BOOL: node->u.b = bv; break;
    case RK_CONF_INT: node->u.i = iv; break;
    case RK_CONF_FLOAT: node->u.f = fv; break;
    case RK_CONF_STR:
        node->u.s = rk__conf_strndup(y->c, s, n);
        if (!node->u.s)
            return rk_err_set(y->err, RK_ENOMEM, "%s: out of memory",
                              y->c->file);
        break;
    default: break;
    }
    return 0;
}

static int on_open(yload *y, const yaml_event_t *ev, rk_conf_type t)
{
    const char *tag = (const char *)(t == RK_CONF_MAP
                                         ? ev->data.mapping_start.tag
                                         : ev->data.sequence_start.tag);
    int rc = check_tag(y, ev, tag, t == RK_CONF_MAP ? YTAG "map" : YTAG "seq");
    if (rc) return rc;
    if (expects_key(y))
        return ev_error(y, RK_EPARSE, ev, "map keys must be scalars");
    if (y->depth >= RK__CONF_MAX_DEPTH) {
        char msg[64];
        snprintf(msg, sizeof msg, "nesting deeper than %d levels",
                 RK__CONF_MAX_DEPTH);
        return ev_error(y, RK_ELIMIT, ev, msg);
    }
    rk_conf_node *node;
    rc = add_node(y, ev, t, &node);
    if (rc) return rc;
    y->stack[y->depth].node = node;
    y->stack[y->depth].key = NULL;
    y->stack[y->depth].key_line = 0;
    y->depth++;
    return 0;
}

/* The anchor of a node event, if any. */
static const void *ev_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT: return ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT: return ev->data.mapping_start.anchor;
    default: return NULL;
    }
}

static int on_event(yload *y, const yaml_event_t *ev)
{
    if (ev->type == YAML_ALIAS_EVENT || ev_anchor(ev))
        return ev_error(y, RK_EPARSE, ev,
                        "anchors and aliases are not supported");
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++y->docs > 1)
            return ev_error(y, RK_EPARSE, ev, "only one document is allowed");
        return 0;
    case YAML_SCALAR_EVENT:
        return on_scalar(y, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_open(y, ev, RK_CONF_LIST);
    case YAML_MAPPING_START_EVENT:
        return on_open(y, ev, RK_CONF_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        /* libyaml balances start and end events, so depth > 0 here. */
        if (y->depth == 0)
            return ev_error(y, RK_EINTERNAL, ev, "unbalanced YAML events");
        y->depth--;
        return rk__conf_close(y->c, y->stack[y->depth].node, y->err);
    default:
        return 0; /* stream start/end, document end */
    }
}

/* Turns libyaml's error state into "file:line:col: problem (context)". */
static int parser_error(yload *y, const yaml_parser_t *p, const char *buf,
                        size_t len)
{
    const char *file = y->c->file;
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->error == YAML_MEMORY_ERROR)
        return rk_err_set(y->err, RK_ENOMEM, "%s: out of memory", file);
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding) carry a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n') line++, col = 1;
            else col++;
        }
        if (p->problem_value != -1)
            return rk_err_set(y->err, RK_EPARSE, "%s:%d:%d: %s (byte 0x%02X)",
                              file, line, col, problem, p->problem_value);
        return rk_err_set(y->err, RK_EPARSE, "%s:%d:%d: %s", file, line, col,
                          problem);
    }
    int line = (int)p->problem_mark.line + 1;
    int col = (int)p->problem_mark.column + 1;
    if (p->context)
        return rk_err_set(y->err, RK_EPARSE, "%s:%d:%d: %s (%s at line %d)",
                          file, line, col, problem, p->context,
                          (int)p->context_mark.line + 1);
    return rk_err_set(y->err, RK_EPARSE, "%s:%d:%d: %s", file, line, col,
                      problem);
}

int rk_conf_parse_yaml(rk_conf **out, const char *buf, size_t len,
                       const char *name, rk_err *err)
{
    *out = NULL;
    if (!buf && len) return rk_err_set(err, RK_EINVAL, "config: no input");
    if (len > RK__CONF_MAX_INPUT)
        return rk_err_set(err, RK_ELIMIT, "%s: input is %zu bytes; the limit is %u",
                          name ? name : "<input>", len, RK__CONF_MAX_INPUT);
    yload y;
    memset(&y, 0, sizeof y);
    y.err = err;
    int rc = rk__conf_create(&y.c, name, err);
    if (rc) return rc;

    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        rk_conf_destroy(y.c);
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory",
                          name ? name : "<input>");
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)(buf ? buf : ""),
                                 len);
    for (int done = 0; !done && rc == 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = parser_error(&y, &p, buf, len);
            break;
        }
        rc = on_event(&y, &ev);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);

    /* A stream without any document (empty, or only comments) is an empty
     * configuration: a null root. */
    if (rc == 0 && !y.c->root) {
        rk_conf_node *root;
        rc = rk__conf_add(y.c, NULL, NULL, 0, RK_CONF_NULL, 1, &root, err);
    }
    if (rc) {
        rk_conf_destroy(y.c);
        return rc;
    }
    *out = y.c;
    return 0;
}
