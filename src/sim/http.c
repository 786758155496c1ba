/*
 * http.c — the simulator's HTTP client: one libcurl easy handle per worker
 * thread, reused so the connection stays alive between requests. Response
 * bodies are collected into a buffer bounded by SIM_MAX_BODY; a larger
 * answer is an error, not a reallocation without end. Error answers are
 * decoded with jansson ({"error", "detail"}) for the message.
 */
#include <jansson.h>
#include <pthread.h>
#include <string.h>

#include "sim_int.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

/* curl_global_init is not thread-safe; it runs once per process. */
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    sim_http *c = arg;
    size_t len = size * n;
    if (c->len + len + 1 > SIM_MAX_BODY) {
        c->overflow = 1;
        return 0;   /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + len + 1) cap *= 2;
        char *b = rk_realloc(c->body, cap);
        if (!b) return 0;
        c->body = b;
        c->cap = cap;
    }
    memcpy(c->body + c->len, p, len);
    c->len += len;
    c->body[c->len] = '\0';
    return len;
}

int rk__sim_http_init(sim_http *c, const char *api_key, uint32_t timeout_ms,
                      rk_err *err)
{
    memset(c, 0, sizeof *c);
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return rk_err_set(err, RK_EIO, "libcurl: %s", curl_easy_strerror(global_rc));
    if (!(c->h = curl_easy_init()))
        return rk_err_set(err, RK_ENOMEM, "libcurl: cannot create a handle");
    c->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    /* Without this curl waits a second for "100 Continue" on big bodies. */
    if (c->hdrs) c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    if (c->hdrs && api_key) {
        char h[512];
        snprintf(h, sizeof h, "X-API-Key: %s", api_key);
        struct curl_slist *n = curl_slist_append(c->hdrs, h);
        if (!n) {
            curl_slist_free_all(c->hdrs);
            c->hdrs = NULL;
        } else {
            c->hdrs = n;
        }
    }
    if (!c->hdrs) {
        rk__sim_http_free(c);
        return rk_err_set(err, RK_ENOMEM, "libcurl: out of memory");
    }
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_KEEPALIVE, 1L);
    return 0;
}

void rk__sim_http_free(sim_http *c)
{
    if (!c) return;
    if (c->h) curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hdrs);
    rk_free(c->body);
    memset(c, 0, sizeof *c);
}

/* "404 UNKNOWN_ITEM: detail" from an error body, or the raw start of it. */
static void describe_error(const sim_http *c, char *out, size_t cap)
{
    json_error_t je;
    json_t *j = c->len ? json_loadb(c->body, c->len, 0, &je) : NULL;
    const char *code = NULL, *detail = NULL;
    if (json_is_object(j)) {
        code = json_string_value(json_object_get(j, "error"));
        detail = json_string_value(json_object_get(j, "detail"));
    }
    if (code)
        snprintf(out, cap, "%ld %s: %s", c->status, code, detail ? detail : "");
    else
        snprintf(out, cap, "%ld: %.200s", c->status, c->len ? c->body : "(empty)");
    json_decref(j);
}

int rk__sim_http(sim_http *c, const char *method, const char *url,
                 const char *body, size_t len, rk_err *err)
{
    c->len = 0;
    c->overflow = 0;
    c->status = 0;
    c->errbuf[0] = '\0';
    if (c->body) c->body[0] = '\0';
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c->h);
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_getinfo(c->h, CURLINFO_TOTAL_TIME, &c->seconds);
    if (rc != CURLE_OK) {
        if (c->overflow)
            return rk_err_set(err, RK_ELIMIT, "%s %s: answer larger than %u bytes",
                              method, url, SIM_MAX_BODY);
        return rk_err_set(err, RK_EIO, "%s %s: %s", method, url,
                          c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    }
    if (c->status < 200 || c->status > 299) {
        char d[400];
        describe_error(c, d, sizeof d);
        return rk_err_set(err, RK_EIO, "%s %s: %s", method, url, d);
    }
    return 0;
}
