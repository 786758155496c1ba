/*
 * conf.c — the configuration tree: building it (for conf_yaml.c and
 * conf_json.c), looking nodes up, typed reads that explain what is wrong
 * with a value, and file loading.
 *
 * Invariants: every node, string and array of a document lives in the
 * document's arena, so rk_conf_destroy is one arena free and a half-built
 * tree after an error is released the same way. Each node carries its file,
 * line and dotted path, computed once while building, so that after loading
 * the tree is immutable and may be read from many threads without locks.
 * Map keys are unique (checked when a map is closed) and every map keeps a
 * second array of its children sorted by key for O(log n) lookups.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/conf_int.h"

#define CONF_ARENA_CHUNK 16384

/* ------------------------------------------------------------------------ */
/* Building                                                                  */
/* ------------------------------------------------------------------------ */

int rk__conf_create(rk_conf **out, const char *name, rk_err *err)
{
    *out = NULL;
    rk_conf *c = rk_malloc(sizeof *c);
    if (!c) return rk_err_set(err, RK_ENOMEM, "config: out of memory");
    memset(c, 0, sizeof *c);
    rk_arena_init(&c->arena, CONF_ARENA_CHUNK, 0);
    if (!name) name = "<input>";
    c->file = rk_arena_strndup(&c->arena, name, strlen(name));
    if (!c->file) {
        rk_conf_destroy(c);
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", name);
    }
    *out = c;
    return 0;
}

char *rk__conf_strndup(rk_conf *c, const char *s, size_t n)
{
    return rk_arena_strndup(&c->arena, s, n);
}

void rk__conf_quote(char *dst, size_t dstsize, const char *s, size_t n)
{
    /* Messages are single lines: control bytes would break them up, and
     * a key of a megabyte would drown the rest of the message. */
    const size_t show = 60;
    size_t o = 0;
    if (dstsize == 0) return;
    for (size_t i = 0; i < n && i < show && o + 1 < dstsize; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (n > show && o + 4 < dstsize) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* Appends n bytes of s to a path buffer of RK__CONF_PATH_MAX bytes; returns
 * 0 once the buffer is full so the caller can mark the path as cut. */
static int path_append(char *buf, size_t *len, const char *s, size_t n)
{
    size_t room = RK__CONF_PATH_MAX - 1 - *len;
    size_t take = n < room ? n : room;
    memcpy(buf + *len, s, take);
    *len += take;
    return take == n;
}

/* Sets n->path from its parent's path and its own key or index. */
static int make_path(rk_conf *c, rk_conf_node *parent, rk_conf_node *n)
{
    if (!parent) {
        n->path = "";
        return 0;
    }
    if (parent->path_cut) {
        /* Every descendant of a cut path shares its string. */
        n->path = parent->path;
        n->path_cut = 1;
        return 0;
    }
    char buf[RK__CONF_PATH_MAX];
    size_t len = 0, plen = strlen(parent->path);
    int fits = path_append(buf, &len, parent->path, plen);
    if (parent->type == RK_CONF_MAP) {
        if (plen) fits = fits && path_append(buf, &len, ".", 1);
        fits = fits && path_append(buf, &len, n->key, strlen(n->key));
    } else {
        char ix[32];
        int k = snprintf(ix, sizeof ix, "[%zu]", n->idx);
        fits = fits && path_append(buf, &len, ix, (size_t)k);
    }
    if (!fits) {
        /* Cut to leave room for "...", backing off to the start of a
         * UTF-8 sequence so the string stays valid. */
        len = RK__CONF_PATH_MAX - 4;
        while (len > 0 && ((unsigned char)buf[len] & 0xC0) == 0x80) len--;
        memcpy(buf + len, "...", 3);
        len += 3;
        n->path_cut = 1;
    }
    n->path = rk_arena_strndup(&c->arena, buf, len);
    return n->path ? 0 : RK_ENOMEM;
}

int rk__conf_add(rk_conf *c, rk_conf_node *parent, const char *key,
                 int key_line, rk_conf_type t, int line, rk_conf_node **out,
                 rk_err *err)
{
    *out = NULL;
    if (c->nodes >= RK__CONF_MAX_NODES)
        return rk_err_set(err, RK_ELIMIT, "%s:%d: more than %d nodes",
                          c->file, line, RK__CONF_MAX_NODES);
    rk_conf_node *n = rk_arena_alloc(&c->arena, sizeof *n);
    if (!n) return rk_err_set(err, RK_ENOMEM, "%s: out of memory", c->file);
    memset(n, 0, sizeof *n);
    n->type = t;
    n->line = line;
    n->file = c->file;
    if (parent && parent->type == RK_CONF_MAP) {
        n->key = key;
        n->line = key_line;
    }
    if (parent) n->idx = parent->u.c.n;
    if (make_path(c, parent, n) != 0)
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", c->file);
    if (parent) {
        if (parent->u.c.last)
            parent->u.c.last->next = n;
        else
            parent->u.c.first = n;
        parent->u.c.last = n;
        parent->u.c.n++;
    } else {
        c->root = n;
    }
    c->nodes++;
    *out = n;
    return 0;
}

/* Orders map children by key, then by position so that equal keys sit in
 * document order (the duplicate check relies on it). */
static int cmp_key(const void *a, const void *b)
{
    const rk_conf_node *x = *(rk_conf_node *const *)a;
    const rk_conf_node *y = *(rk_conf_node *const *)b;
    int r = strcmp(x->key, y->key);
    if (r) return r;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int rk__conf_close(rk_conf *c, rk_conf_node *n, rk_err *err)
{
    size_t cnt = n->u.c.n;
    if (cnt == 0) return 0;
    int is_map = n->type == RK_CONF_MAP;
    /* Both arrays come from one allocation; cnt <= RK__CONF_MAX_NODES so
     * the size cannot overflow. */
    rk_conf_node **arr =
        rk_arena_alloc(&c->arena, (is_map ? 2 : 1) * cnt * sizeof *arr);
    if (!arr) return rk_err_set(err, RK_ENOMEM, "%s: out of memory", c->file);
    size_t i = 0;
    for (rk_conf_node *k = n->u.c.first; k; k = k->next) arr[i++] = k;
    n->u.c.items = arr;
    if (!is_map) return 0;
    n->u.c.sorted = arr + cnt;
    memcpy(n->u.c.sorted, arr, cnt * sizeof *arr);
    qsort(n->u.c.sorted, cnt, sizeof *arr, cmp_key);
    /* Equal keys are adjacent and in document order; report the earliest
     * repetition in the document, which is what a reader would fix first. */
    const rk_conf_node *dup = NULL;
    for (i = 1; i < cnt; i++) {
        const rk_conf_node *b = n->u.c.sorted[i];
        if (strcmp(n->u.c.sorted[i - 1]->key, b->key) == 0 &&
            (!dup || b->idx < dup->idx))
            dup = b;
    }
    if (dup) {
        char q[80];
        rk__conf_quote(q, sizeof q, dup->key, strlen(dup->key));
        return rk_err_set(err, RK_EPARSE, "%s:%d: duplicate key '%s'",
                          c->file, dup->line, q);
    }
    return 0;
}

void rk_conf_destroy(rk_conf *c)
{
    if (!c) return;
    rk_arena_free(&c->arena);
    rk_free(c);
}

/* ------------------------------------------------------------------------ */
/* Loading files                                                             */
/* ------------------------------------------------------------------------ */

/* Reads the whole file into an rk_malloc buffer, refusing more than the
 * input limit. Reads until EOF rather than trusting st_size so pipes and
 * files that change size are handled too. */
static int read_file(const char *path, char **out, size_t *outlen, rk_err *err)
{
    *out = NULL;
    *outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rk_err_set(err, RK_EIO, "%s: cannot open: %s", path,
                          strerror(errno));
    struct stat st;
    size_t cap = 4096;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > RK__CONF_MAX_INPUT) {
            close(fd);
            return rk_err_set(err, RK_ELIMIT,
                              "%s: file is %lld bytes; the limit is %u",
                              path, (long long)st.st_size, RK__CONF_MAX_INPUT);
        }
        cap = (size_t)st.st_size + 1; /* +1 to see EOF without regrowing */
    }
    char *buf = rk_malloc(cap);
    size_t len = 0;
    int rc = 0;
    if (!buf) {
        rc = rk_err_set(err, RK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        if (len == cap) {
            if (cap > RK__CONF_MAX_INPUT) {
                rc = rk_err_set(err, RK_ELIMIT,
                                "%s: file is larger than the limit of %u bytes",
                                path, RK__CONF_MAX_INPUT);
                goto done;
            }
            size_t ncap = cap * 2 > RK__CONF_MAX_INPUT + 1
                              ? RK__CONF_MAX_INPUT + 1
                              : cap * 2;
            char *nb = rk_realloc(buf, ncap);
            if (!nb) {
                rc = rk_err_set(err, RK_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = rk_err_set(err, RK_EIO, "%s: cannot read: %s", path,
                            strerror(errno));
            goto done;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (len > RK__CONF_MAX_INPUT)
        rc = rk_err_set(err, RK_ELIMIT,
                        "%s: file is larger than the limit of %u bytes", path,
                        RK__CONF_MAX_INPUT);
done:
    close(fd);
    if (rc) {
        rk_free(buf);
        return rc;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int rk_conf_load_file(rk_conf **out, const char *path, rk_err *err)
{
    *out = NULL;
    if (!path) return rk_err_set(err, RK_EINVAL, "config: no file name");
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, err);
    if (rc) return rc;
    size_t pl = strlen(path);
    if (pl >= 5 && strcasecmp(path + pl - 5, ".json") == 0)
        rc = rk_conf_parse_json(out, buf, len, path, err);
    else
        rc = rk_conf_parse_yaml(out, buf, len, path, err);
    rk_free(buf);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Navigation                                                                */
/* ------------------------------------------------------------------------ */

const rk_conf_node *rk_conf_root(const rk_conf *c)
{
    return c ? c->root : NULL;
}

rk_conf_type rk_conf_node_type(const rk_conf_node *n)
{
    return n ? n->type : RK_CONF_NULL;
}

const char *rk_conf_type_name(rk_conf_type t)
{
    switch (t) {
    case RK_CONF_NULL: return "null";
    case RK_CONF_BOOL: return "bool";
    case RK_CONF_INT: return "int";
    case RK_CONF_FLOAT: return "float";
    case RK_CONF_STR: return "string";
    case RK_CONF_LIST: return "list";
    case RK_CONF_MAP: return "map";
    }
    return "unknown";
}

const char *rk_conf_node_file(const rk_conf_node *n)
{
    return n ? n->file : "";
}

int rk_conf_node_line(const rk_conf_node *n)
{
    return n ? n->line : 0;
}

const char *rk_conf_node_path(const rk_conf_node *n)
{
    return n ? n->path : "";
}

/* Binary search of a map's sorted children for the key s[0..len). */
static const rk_conf_node *map_lookup(const rk_conf_node *n, const char *s,
                                      size_t len)
{
    if (!n || n->type != RK_CONF_MAP) return NULL;
    size_t lo = 0, hi = n->u.c.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k = n->u.c.sorted[mid]->key;
        /* Compare as strcmp would against a NUL-terminated copy of s. */
        int r = strncmp(k, s, len);
        if (r == 0 && k[len] != '\0') r = 1;
        if (r == 0) return n->u.c.sorted[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const rk_conf_node *rk_conf_get(const rk_conf_node *n, const char *key)
{
    if (!key) return NULL;
    return map_lookup(n, key, strlen(key));
}

const rk_conf_node *rk_conf_find(const rk_conf_node *n, const char *path)
{
    if (!path) return NULL;
    const char *p = path;
    /* Segments are keys separated by '.', each optionally followed by
     * list indexes "[i]", the same syntax rk_conf_node_path produces. */
    while (n && *p) {
        if (*p == '[') {
            char *end;
            if (p[1] < '0' || p[1] > '9') return NULL;
            errno = 0;
            unsigned long long ix = strtoull(p + 1, &end, 10);
            if (errno || *end != ']') return NULL;
            if (n->type != RK_CONF_LIST || ix >= n->u.c.n) return NULL;
            n = n->u.c.items[ix];
            p = end + 1;
            if (*p == '.') {
                p++;
                if (*p == '\0' || *p == '.' || *p == '[') return NULL;
            }
            continue;
        }
        size_t len = strcspn(p, ".[");
        n = map_lookup(n, p, len);
        p += len;
        if (*p == '.') {
            p++;
            if (*p == '\0') return NULL;
        }
    }
    return n;
}

size_t rk_conf_len(const rk_conf_node *n)
{
    if (!n || (n->type != RK_CONF_MAP && n->type != RK_CONF_LIST)) return 0;
    return n->u.c.n;
}

const rk_conf_node *rk_conf_at(const rk_conf_node *n, size_t i,
                               const char **key)
{
    if (key) *key = NULL;
    if (i >= rk_conf_len(n)) return NULL;
    const rk_conf_node *k = n->u.c.items[i];
    if (key) *key = k->key;
    return k;
}

/* ------------------------------------------------------------------------ */
/* Errors and typed reads                                                    */
/* ------------------------------------------------------------------------ */

/* The path as it reads in a message; the root has an empty path. */
static const char *path_label(const rk_conf_node *n)
{
    return n->path[0] ? n->path : "top level";
}

static int conf_errorv(rk_err *err, const rk_conf_node *n, const char *fmt,
                       va_list ap)
{
    char msg[RK_ERR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (!n) return rk_err_set(err, RK_ECONFIG, "%s", msg);
    return rk_err_set(err, RK_ECONFIG, "%s:%d: %s: %s", n->file, n->line,
                      path_label(n), msg);
}

int rk_conf_error(rk_err *err, const rk_conf_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = conf_errorv(err, n, fmt, ap);
    va_end(ap);
    return rc;
}

/* Describes a node's value for "got ..." ("string 'x'", "int 5", "map"). */
static void describe(const rk_conf_node *n, char *buf, size_t size)
{
    char q[80];
    switch (n->type) {
    case RK_CONF_BOOL:
        snprintf(buf, size, "bool %s", n->u.b ? "true" : "false");
        break;
    case RK_CONF_INT:
        snprintf(buf, size, "int %lld", (long long)n->u.i);
        break;
    case RK_CONF_FLOAT:
        snprintf(buf, size, "float %g", n->u.f);
        break;
    case RK_CONF_STR:
        rk__conf_quote(q, sizeof q, n->u.s, strlen(n->u.s));
        snprintf(buf, size, "string '%s'", q);
        break;
    default:
        snprintf(buf, size, "%s", rk_conf_type_name(n->type));
        break;
    }
}

static int wrong_type(const rk_conf_node *n, const char *want, rk_err *err)
{
    char got[128];
    describe(n, got, sizeof got);
    return rk_conf_error(err, n, "expected %s, got %s", want, got);
}

/* A missing node and an explicit null ("key:" or "key: ~" in YAML) both
 * mean "use the default", the usual reading of an empty YAML value. */
static int is_absent(const rk_conf_node *n)
{
    return !n || n->type == RK_CONF_NULL;
}

int rk_conf_as_bool(const rk_conf_node *n, int dflt, int *out, rk_err *err)
{
    *out = dflt;
    if (is_absent(n)) return 0;
    if (n->type != RK_CONF_BOOL) return wrong_type(n, "bool", err);
    *out = n->u.b;
    return 0;
}

int rk_conf_as_int(const rk_conf_node *n, int64_t dflt, int64_t *out,
                   rk_err *err)
{
    *out = dflt;
    if (is_absent(n)) return 0;
    if (n->type != RK_CONF_INT) return wrong_type(n, "int", err);
    *out = n->u.i;
    return 0;
}

int rk_conf_as_float(const rk_conf_node *n, double dflt, double *out,
                     rk_err *err)
{
    *out = dflt;
    if (is_absent(n)) return 0;
    if (n->type == RK_CONF_INT)
        *out = (double)n->u.i;
    else if (n->type == RK_CONF_FLOAT)
        *out = n->u.f;
    else
        return wrong_type(n, "float", err);
    return 0;
}

int rk_conf_as_str(const rk_conf_node *n, const char *dflt, const char **out,
                   rk_err *err)
{
    *out = dflt;
    if (is_absent(n)) return 0;
    if (n->type != RK_CONF_STR) return wrong_type(n, "string", err);
    *out = n->u.s;
    return 0;
}

int rk_conf_as_duration_ms(const rk_conf_node *n, int64_t dflt, int64_t *out,
                           rk_err *err)
{
    *out = dflt;
    if (is_absent(n)) return 0;
    rk_conf_type t = n->type;
    if (t == RK_CONF_INT || t == RK_CONF_FLOAT) {
        double sec;
        int rc = rk_conf_as_float(n, 0, &sec, err);
        if (rc) return rc;
        if (!(sec >= 0 && sec <= 3.2e9))
            return rk_conf_error(err, n, "duration out of range 0..100 years");
        *out = (int64_t)llround(sec * 1000);
        return 0;
    }
    const char *s;
    int rc = rk_conf_as_str(n, NULL, &s, err);
    if (rc) return rc;
    int unit_bad = 0;
    rc = rk_parse_duration_ms(s, out, &unit_bad);
    if (rc == RK_ELIMIT)
        return rk_conf_error(err, n, "duration out of range 0..100 years");
    if (rc && unit_bad)
        return rk_conf_error(err, n, "unknown duration unit '%s' (ms, s, m, "
                             "h, d, w)", s + strspn(s, "0123456789."));
    if (rc)
        return rk_conf_error(err, n, "expected a duration like 30s, 15m, 1h, "
                             "7d (or seconds); got '%s'", s);
    return 0;
}

int rk_conf_as_int_range(const rk_conf_node *n, int64_t dflt, int64_t lo,
                         int64_t hi, int64_t *out, rk_err *err)
{
    int64_t v;
    int rc = rk_conf_as_int(n, dflt, &v, err);
    if (rc) return rc;
    if (!is_absent(n) && (v < lo || v > hi)) {
        *out = dflt;
        return rk_conf_error(err, n, "expected int in [%lld, %lld]; got %lld",
                             (long long)lo, (long long)hi, (long long)v);
    }
    *out = v;
    return 0;
}

/* Appends "a, b, c" (the NULL-terminated list) to buf, truncating. */
static void join_list(char *buf, size_t size, const char *const *list)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; list && list[i] && o + 1 < size; i++) {
        int k = snprintf(buf + o, size - o, "%s%s", i ? ", " : "", list[i]);
        if (k < 0) break;
        o += (size_t)k;
    }
}

int rk_conf_as_enum(const rk_conf_node *n, int dflt_idx,
                    const char *const *choices, int *idx, rk_err *err)
{
    *idx = dflt_idx;
    if (is_absent(n)) return 0;
    if (n->type == RK_CONF_STR && choices) {
        for (int i = 0; choices[i]; i++) {
            if (strcmp(choices[i], n->u.s) == 0) {
                *idx = i;
                return 0;
            }
        }
    }
    char list[256], got[128];
    join_list(list, sizeof list, choices);
    if (n->type == RK_CONF_STR) {
        char q[80];
        rk__conf_quote(q, sizeof q, n->u.s, strlen(n->u.s));
        snprintf(got, sizeof got, "'%s'", q);
    } else {
        describe(n, got, sizeof got);
    }
    return rk_conf_error(err, n, "expected one of %s; got %s", list, got);
}

int rk_conf_check_keys(const rk_conf_node *n, const char *const *allowed,
                       rk_err *err)
{
    if (!n) return 0;
    if (n->type != RK_CONF_MAP) return wrong_type(n, "map", err);
    for (size_t i = 0; i < n->u.c.n; i++) {
        const rk_conf_node *k = n->u.c.items[i];
        int ok = 0;
        for (size_t j = 0; allowed && allowed[j] && !ok; j++)
            ok = strcmp(allowed[j], k->key) == 0;
        if (ok) continue;
        char q[80], list[256];
        rk__conf_quote(q, sizeof q, k->key, strlen(k->key));
        join_list(list, sizeof list, allowed);
        if (n->path[0])
            return rk_err_set(err, RK_ECONFIG,
                              "%s:%d: unknown key '%s' in %s (allowed: %s)",
                              k->file, k->line, q, n->path, list);
        return rk_err_set(err, RK_ECONFIG,
                          "%s:%d: unknown key '%s' at top level (allowed: %s)",
                          k->file, k->line, q, list);
    }
    return 0;
}
