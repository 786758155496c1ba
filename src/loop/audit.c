/*
 * audit.c — the learning loop's audit log: every decision as a record
 * {ts, kind, model, version, detail}. The last `keep` live in a ring in
 * memory (GET /v1/monitor/events); each is also appended as one JSON line
 * to a file that is only ever appended to and fsync'd per record, so the
 * history survives restarts. Counts per kind feed /metrics.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rk_loop.h"

#define KIND_MAX 32
#define MAX_KINDS 16

typedef struct arec {
    int64_t ts;
    char kind[KIND_MAX];
    char model[128];
    uint32_t version;
    char detail[512];
} arec;

struct rk_audit {
    pthread_mutex_t mu;
    int fd;                     /* -1 = memory only */
    int64_t (*now)(void *);     /* the owner's clock; NULL = the wall clock */
    void *now_arg;
    arec *ring;
    size_t keep, n, head;       /* head = next slot */
    char kinds[MAX_KINDS][KIND_MAX];
    uint64_t counts[MAX_KINDS];
    size_t nkinds;
};

int rk_audit_open(rk_audit **out, const char *path, size_t keep, rk_err *err)
{
    *out = NULL;
    rk_audit *a = rk_calloc(1, sizeof *a);
    if (!a) return rk_err_set(err, RK_ENOMEM, "audit: out of memory");
    a->keep = keep ? keep : 1000;
    a->ring = rk_calloc(a->keep, sizeof *a->ring);
    a->fd = -1;
    if (!a->ring) {
        rk_free(a);
        return rk_err_set(err, RK_ENOMEM, "audit: out of memory");
    }
    if (path) {
        a->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (a->fd < 0) {
            rk_free(a->ring);
            rk_free(a);
            return rk_err_set(err, RK_EIO, "audit: cannot open %s", path);
        }
    }
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return 0;
}

void rk_audit_set_clock(rk_audit *a, int64_t (*now)(void *), void *arg)
{
    a->now = now;
    a->now_arg = arg;
}

void rk_audit_close(rk_audit *a)
{
    if (!a) return;
    if (a->fd >= 0) close(a->fd);
    pthread_mutex_destroy(&a->mu);
    rk_free(a->ring);
    rk_free(a);
}

static void rec_json(rk_buf *b, const arec *r)
{
    char t[32];
    rk_format_time_ms(r->ts, t);
    (void)rk_buf_printf(b, "{\"ts\":\"%s\",\"kind\":", t);
    (void)rk_buf_put_json_str(b, r->kind, strlen(r->kind));
    (void)rk_buf_puts(b, ",\"model\":");
    (void)rk_buf_put_json_str(b, r->model, strlen(r->model));
    (void)rk_buf_printf(b, ",\"version\":%u,\"detail\":", r->version);
    size_t dl = strlen(r->detail);
    (void)rk_buf_put_json_str(b, r->detail, rk_utf8_valid_prefix(r->detail, dl));
    (void)rk_buf_putc(b, '}');
}

void rk_audit_add(rk_audit *a, int64_t ts_ms, const char *kind,
                  const char *model, uint32_t version, const char *detail)
{
    if (!a) return;
    arec r;
    memset(&r, 0, sizeof r);
    r.ts = ts_ms ? ts_ms : a->now ? a->now(a->now_arg) : rk_clock_wall_ms();
    snprintf(r.kind, sizeof r.kind, "%s", kind ? kind : "");
    snprintf(r.model, sizeof r.model, "%s", model ? model : "");
    r.version = version;
    snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
    rk_buf line;
    rk_buf_init(&line, 0);
    rec_json(&line, &r);
    (void)rk_buf_putc(&line, '\n');
    pthread_mutex_lock(&a->mu);
    a->ring[a->head] = r;
    a->head = (a->head + 1) % a->keep;
    if (a->n < a->keep) a->n++;
    size_t k = 0;
    while (k < a->nkinds && strcmp(a->kinds[k], r.kind)) k++;
    if (k == a->nkinds && k < MAX_KINDS) {
        snprintf(a->kinds[k], KIND_MAX, "%s", r.kind);
        a->nkinds++;
    }
    if (k < MAX_KINDS) a->counts[k]++;
    if (a->fd >= 0 && line.data) {
        /* A short write leaves a partial last line; readers skip it. */
        ssize_t w = write(a->fd, line.data, line.len);
        if (w == (ssize_t)line.len) (void)fsync(a->fd);
    }
    pthread_mutex_unlock(&a->mu);
    rk_buf_free(&line);
}

int rk_audit_json(rk_audit *a, rk_buf *b)
{
    (void)rk_buf_putc(b, '[');
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++) {
        const arec *r = &a->ring[(a->head + a->keep - 1 - i) % a->keep];
        if (i) (void)rk_buf_putc(b, ',');
        rec_json(b, r);
    }
    pthread_mutex_unlock(&a->mu);
    (void)rk_buf_putc(b, ']');
    return b->data ? 0 : RK_ENOMEM;
}

uint64_t rk_audit_count(rk_audit *a, const char *kind)
{
    uint64_t c = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t k = 0; k < a->nkinds; k++)
        if (!strcmp(a->kinds[k], kind)) c = a->counts[k];
    pthread_mutex_unlock(&a->mu);
    return c;
}

size_t rk_audit_kinds(rk_audit *a, const char **kinds, uint64_t *counts,
                      size_t cap)
{
    pthread_mutex_lock(&a->mu);
    size_t n = a->nkinds < cap ? a->nkinds : cap;
    for (size_t k = 0; k < n; k++) {
        kinds[k] = a->kinds[k];
        counts[k] = a->counts[k];
    }
    pthread_mutex_unlock(&a->mu);
    return n;
}
