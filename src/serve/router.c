/*
 * router.c — one request from method + path to a handler: route match
 * with a {id} segment, API-key roles (constant-time comparison), body
 * limits (size, JSON depth, array length) checked before any JSON parser
 * sees the body, the request id, JSON error bodies with stable codes, and
 * the per-endpoint metrics. Both the HTTP front end and rk_server_handle
 * come through rk__serve_dispatch.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

static const struct {
    const char *name;
    int status;
} errs[] = {
#define SV__T(name, st) {#name, st},
    SV_ERRORS(SV__T)
#undef SV__T
};

const char *sv_errcode_name(sv_errcode c)
{
    return (unsigned)c < SV_ERR_COUNT ? errs[c].name : "INTERNAL";
}

int sv_errcode_status(sv_errcode c)
{
    return (unsigned)c < SV_ERR_COUNT ? errs[c].status : 500;
}

typedef int (*sv_handler)(sv_req *q);

typedef struct route {
    const char *method;
    const char *pattern;   /* '*' = one path segment, the {id} */
    sv_ep ep;
    unsigned role;         /* 0 = open */
    int body;              /* 1: a JSON body is parsed (may be empty) */
    sv_handler fn;
} route;

static const route routes[] = {
    {"POST", "/v1/events", SV_EP_EVENTS, RK_ROLE_WRITE, 1, sv_h_events},
    {"PUT", "/v1/items/*", SV_EP_ITEM_PUT, RK_ROLE_WRITE, 1, sv_h_item_put},
    {"DELETE", "/v1/items/*", SV_EP_ITEM_DELETE, RK_ROLE_WRITE, 0, sv_h_item_delete},
    {"GET", "/v1/items/*", SV_EP_ITEM_GET, RK_ROLE_READ, 0, sv_h_entity_get},
    {"PUT", "/v1/users/*", SV_EP_USER_PUT, RK_ROLE_WRITE, 1, sv_h_user_put},
    {"GET", "/v1/users/*", SV_EP_USER_GET, RK_ROLE_READ, 0, sv_h_entity_get},
    {"POST", "/v1/recommend", SV_EP_RECOMMEND, RK_ROLE_READ, 1, sv_h_recommend},
    {"POST", "/v1/rank", SV_EP_RANK, RK_ROLE_READ, 1, sv_h_rank},
    {"POST", "/v1/score", SV_EP_SCORE, RK_ROLE_READ, 1, sv_h_score},
    {"GET", "/v1/similar/*", SV_EP_SIMILAR, RK_ROLE_READ, 0, sv_h_similar},
    {"GET", "/v1/models", SV_EP_MODELS, RK_ROLE_ADMIN, 0, sv_h_models},
    {"POST", "/v1/models/*/promote", SV_EP_PROMOTE, RK_ROLE_ADMIN, 1, sv_h_promote},
    {"POST", "/v1/models/*/rollback", SV_EP_ROLLBACK, RK_ROLE_ADMIN, 1, sv_h_rollback},
    {"GET", "/v1/experiments", SV_EP_EXPERIMENTS, RK_ROLE_ADMIN, 0, sv_h_experiments},
    {"GET", "/metrics", SV_EP_METRICS, 0, 0, sv_h_metrics},
    {"GET", "/healthz", SV_EP_HEALTHZ, 0, 0, sv_h_healthz},
    {"GET", "/readyz", SV_EP_READYZ, 0, 0, sv_h_readyz},
    {"GET", "/v1/openapi.json", SV_EP_OPENAPI, 0, 0, sv_h_openapi},
    {"GET", "/v1/monitor/drift", SV_EP_MONITOR_DRIFT, RK_ROLE_ADMIN, 0, sv_h_monitor_drift},
    {"GET", "/v1/monitor/events", SV_EP_MONITOR_EVENTS, RK_ROLE_ADMIN, 0, sv_h_monitor_events},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Matches path against pattern; the '*' segment is copied (percent-decoded
 * unless already decoded) into param. 1 on match. */
static int match(const char *pat, const char *path, int decoded, char *param,
                 size_t cap, int *bad_param)
{
    while (*pat && *path) {
        if (*pat == '*') {
            size_t n = 0;
            const char *p = path;
            while (*p && *p != '/') {
                int c = (unsigned char)*p++;
                if (!decoded && c == '%') {
                    int h = hexval(p[0]), l = h >= 0 ? hexval(p[1]) : -1;
                    if (l < 0) {
                        *bad_param = 1;
                        return 1;
                    }
                    c = h * 16 + l;
                    p += 2;
                }
                if (c == 0 || n + 1 >= cap) {
                    *bad_param = 1;
                    return 1;
                }
                param[n++] = (char)c;
            }
            if (!n) return 0;
            param[n] = '\0';
            path = p;
            pat++;
            continue;
        }
        if (*pat != *path) return 0;
        pat++;
        path++;
    }
    return *pat == '\0' && *path == '\0';
}

/* Constant-time comparison: the time depends on the lengths only. */
static int key_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    size_t n = la > lb ? la : lb;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        d |= (unsigned char)(x ^ y);
    }
    return d == 0;
}

static unsigned key_roles(const rk_server *s, const char *key)
{
    unsigned roles = 0;
    if (!key) return 0;
    /* Every key is compared, so timing does not reveal which one matched. */
    for (size_t i = 0; i < s->o.nkeys; i++)
        if (key_equal(key, s->o.keys[i].key)) roles |= s->o.keys[i].roles;
    return roles;
}

int sv_query_get(const sv_req *q, const char *name, const char **val,
                 size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = q->query; *p;) {
        const char *e = strchr(p, '&');
        size_t pl = e ? (size_t)(e - p) : strlen(p);
        if (pl > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            *val = p + nl + 1;
            *len = pl - nl - 1;
            return 1;
        }
        p += pl + (e != NULL);
    }
    return 0;
}

void sv_json_str(rk_buf *b, const char *s)
{
    (void)rk_buf_put_json_str(b, s ? s : "", s ? strlen(s) : 0);
}

void sv_json_num(rk_buf *b, double v) { (void)rk_buf_put_json_num(b, v); }

int sv_error(sv_req *q, sv_errcode code, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    rk_buf_reset(q->out);
    q->status = sv_errcode_status(code);
    q->ctype = "application/json";
    (void)rk_buf_puts(q->out, "{\"error\":");
    sv_json_str(q->out, sv_errcode_name(code));
    (void)rk_buf_puts(q->out, ",\"detail\":");
    /* Details may quote input: keep only valid UTF-8. */
    size_t n = strlen(detail);
    (void)rk_buf_put_json_str(q->out, detail, rk_utf8_valid_prefix(detail, n));
    (void)rk_buf_puts(q->out, ",\"request_id\":");
    sv_json_str(q->out, q->request_id);
    (void)rk_buf_puts(q->out, "}");
    atomic_fetch_add(&q->srv->m.errors[code], 1);
    return -1;
}

int sv_error_rk(sv_req *q, int rc, const rk_err *err)
{
    const char *msg = err && err->msg[0] ? err->msg : rk_strerror(rc);
    switch (rc) {
    case RK_EPARSE:
    case RK_EINVAL:
    case RK_ETYPE: return sv_error(q, SV_ERR_BAD_REQUEST, "%s", msg);
    case RK_ELIMIT: return sv_error(q, SV_ERR_LIMIT_EXCEEDED, "%s", msg);
    case RK_ENOTFOUND: return sv_error(q, SV_ERR_NOT_FOUND, "%s", msg);
    case RK_ESTATE: return sv_error(q, SV_ERR_CONFLICT, "%s", msg);
    case RK_EBUSY:
    case RK_EFULL:
    case RK_ECLOSED:
    case RK_ETIMEOUT: return sv_error(q, SV_ERR_UNAVAILABLE, "%s", msg);
    default: return sv_error(q, SV_ERR_INTERNAL, "%s", msg);
    }
}

int rk_serve_json_limits(const char *s, size_t n, unsigned max_depth,
                         size_t max_array, rk_err *err)
{
    /* counts[d] = elements seen so far in the array open at depth d (or
     * SIZE_MAX for an object); depth is bounded by max_depth <= 1000. */
    size_t counts[1001];
    int nonempty[1001];
    unsigned depth = 0;
    if (max_depth > 1000) max_depth = 1000;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            if (depth && counts[depth] != SIZE_MAX) nonempty[depth] = 1;
            continue;
        }
        if (c == '[' || c == '{') {
            if (depth && counts[depth] != SIZE_MAX) nonempty[depth] = 1;
            if (++depth > max_depth)
                return rk_err_set(err, RK_ELIMIT, "JSON nested deeper than %u "
                                  "at byte %zu", max_depth, i);
            counts[depth] = c == '[' ? 0 : SIZE_MAX;
            nonempty[depth] = 0;
        } else if (c == ']' || c == '}') {
            if (!depth) return 0; /* malformed: the parser reports it */
            if (c == ']' && counts[depth] != SIZE_MAX && nonempty[depth] &&
                counts[depth] + 1 > max_array)
                return rk_err_set(err, RK_ELIMIT, "JSON array of more than "
                                  "%zu elements at byte %zu", max_array, i);
            depth--;
        } else if (c == ',' && depth && counts[depth] != SIZE_MAX) {
            if (++counts[depth] + 1 > max_array)
                return rk_err_set(err, RK_ELIMIT, "JSON array of more than "
                                  "%zu elements at byte %zu", max_array, i);
        } else if (depth && counts[depth] != SIZE_MAX && c != ' ' &&
                   c != '\n' && c != '\r' && c != '\t') {
            nonempty[depth] = 1;
        }
    }
    return 0;
}

json_t *sv_field(sv_req *q, const char *name)
{
    return q->json && json_is_object(q->json) ? json_object_get(q->json, name)
                                              : NULL;
}

int sv_check_keys(sv_req *q, json_t *obj, const char *where,
                  const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0) i++;
        if (!allowed[i]) {
            char list[512] = "";
            size_t off = 0;
            for (size_t j = 0; allowed[j] && off < sizeof list - 64; j++)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s",
                                        j ? ", " : "", allowed[j]);
            char show[64];
            size_t kl = rk_utf8_valid_prefix(key, strlen(key) < 40 ? strlen(key) : 40);
            memcpy(show, key, kl);
            show[kl] = '\0';
            return sv_error(q, SV_ERR_BAD_REQUEST, "%s: unknown field '%s' "
                            "(expected %s)", where, show, list);
        }
    }
    return 0;
}

int sv_get_str(sv_req *q, json_t *obj, const char *name, const char **out,
               size_t *len, size_t max_len)
{
    json_t *v = obj ? json_object_get(obj, name) : NULL;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_string(v))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field '%s': expected a string",
                        name);
    size_t n = json_string_length(v);
    if (!n || n > max_len)
        return sv_error(q, SV_ERR_BAD_REQUEST, "field '%s': expected 1 to %zu "
                        "bytes, got %zu", name, max_len, n);
    if (memchr(json_string_value(v), '\0', n))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field '%s': NUL byte", name);
    *out = json_string_value(v);
    if (len) *len = n;
    return 0;
}

int sv_get_uint(sv_req *q, json_t *obj, const char *name, uint64_t lo,
                uint64_t hi, uint64_t *out)
{
    json_t *v = obj ? json_object_get(obj, name) : NULL;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) < lo ||
        (uint64_t)json_integer_value(v) > hi)
        return sv_error(q, SV_ERR_BAD_REQUEST, "field '%s': expected an "
                        "integer in [%llu, %llu]", name, (unsigned long long)lo,
                        (unsigned long long)hi);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int sv_get_bool(sv_req *q, json_t *obj, const char *name, int *out)
{
    json_t *v = obj ? json_object_get(obj, name) : NULL;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_boolean(v))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field '%s': expected true or "
                        "false", name);
    *out = json_is_true(v);
    return 0;
}

int rk__serve_dispatch(rk_server *s, const char *method, const char *path,
                       const char *query, int path_decoded, const char *api_key,
                       const void *body, size_t len, int too_big, int *status,
                       rk_buf *out, const char **ctype, char *rid);

int rk__serve_dispatch(rk_server *s, const char *method, const char *path,
                       const char *query, int path_decoded, const char *api_key,
                       const void *body, size_t len, int too_big, int *status,
                       rk_buf *out, const char **ctype, char *rid)
{
    sv_req q;
    memset(&q, 0, sizeof q);
    q.srv = s;
    q.method = method;
    q.path = path;
    q.query = query ? query : "";
    q.body = body;
    q.body_len = body ? len : 0;
    /* The response is appended to out, but an error replaces whatever a
     * handler had written so far (sv_error resets q->out). So when out
     * already holds something, the response is built in a buffer of its
     * own and appended at the end, and the caller's bytes stay. */
    rk_buf scratch;
    rk_buf_init(&scratch, 0);
    q.out = out->len ? &scratch : out;
    q.ctype = "application/json";
    q.status = 200;
    q.t0_ns = rk_clock_mono_ns();
    q.now_ms = sv_now_ms(s);
    q.ep = SV_EP_OTHER;
    uint64_t no = atomic_fetch_add(&s->reqno, 1);
    snprintf(q.request_id, sizeof q.request_id, "%016llx",
             (unsigned long long)rk_hash64(&no, sizeof no, s->id_seed));

    const route *rt = NULL;
    int path_hit = 0, bad_param = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        int bp = 0;
        if (!match(routes[i].pattern, path, path_decoded, q.param_buf,
                    sizeof q.param_buf, &bp))
            continue;
        path_hit = 1;
        if (strcmp(routes[i].method, method) == 0) {
            rt = &routes[i];
            bad_param = bp;
            break;
        }
    }
    if (!rt) {
        if (path_hit)
            sv_error(&q, SV_ERR_METHOD_NOT_ALLOWED, "%s is not allowed on %s",
                     method, path);
        else
            sv_error(&q, SV_ERR_NOT_FOUND, "no such endpoint: %s %s", method,
                     path);
        goto done;
    }
    q.ep = rt->ep;
    if (strchr(rt->pattern, '*')) q.param = q.param_buf;
    if (rt->role && s->o.nkeys) {
        unsigned roles = key_roles(s, api_key);
        if (!api_key || !roles) {
            sv_error(&q, SV_ERR_UNAUTHORIZED, "%s: an API key is required "
                     "(header X-API-Key or Authorization: Bearer)",
                     api_key ? "unknown API key" : "no API key");
            goto done;
        }
        if (!(roles & rt->role)) {
            sv_error(&q, SV_ERR_FORBIDDEN, "this API key lacks the %s role",
                     rt->role == RK_ROLE_READ ? "read"
                     : rt->role == RK_ROLE_WRITE ? "write" : "admin");
            goto done;
        }
    }
    if (bad_param) {
        sv_error(&q, SV_ERR_BAD_REQUEST, "bad id in path (bad percent "
                 "escape, NUL byte or longer than %zu bytes)",
                 sizeof q.param_buf - 1);
        goto done;
    }
    if (too_big) {
        sv_error(&q, SV_ERR_PAYLOAD_TOO_LARGE, "request body larger than %zu "
                 "bytes (serve.max_body_bytes)", s->o.max_body_bytes);
        goto done;
    }
    if (rt->body && q.body_len) {
        rk_err err = {0};
        if (rk_serve_json_limits(q.body, q.body_len, s->o.max_json_depth,
                                 s->o.max_array, &err)) {
            sv_error(&q, SV_ERR_LIMIT_EXCEEDED, "%s", err.msg);
            goto done;
        }
        json_error_t jerr;
        q.json = json_loadb(q.body, q.body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!q.json) {
            sv_error(&q, SV_ERR_BAD_JSON, "line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
            goto done;
        }
    }
    q.w = sv_worker_get(s);
    if (!q.w) {
        sv_error(&q, SV_ERR_UNAVAILABLE, "out of memory for request scratch");
        goto done;
    }
    rt->fn(&q);
    sv_worker_put(s, q.w);
done:
    if (q.json) json_decref(q.json);
    int rc = 0;
    if (q.out != out) {
        rc = rk_buf_append(out, scratch.data ? scratch.data : "", scratch.len)
                 ? RK_ENOMEM : 0;
        rk_buf_free(&scratch);
    }
    if (out->len && (out->data == NULL)) out->len = 0;
    *status = q.status;
    *ctype = q.ctype;
    memcpy(rid, q.request_id, sizeof q.request_id);
    sv_metrics_observe(s, q.ep, q.status, rk_clock_mono_ns() - q.t0_ns);
    return rc;
}
