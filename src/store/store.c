/*
 * store.c — the store front end: options, the single writer thread with
 * group commit, and read snapshots, all on top of a backend function table.
 *
 * Producers enqueue a ticket (pointing at their batch) and sleep on the
 * ticket's own condition variable, so a commit wakes exactly the producers
 * it completed (a shared one woke all of them, most to sleep again: with
 * 64 producers half the CPU went to the scheduler). The writer takes every
 * queued ticket up to commit_max_ops, applies them in one backend
 * transaction, and wakes them all with the one result. The queue is bounded
 * by queue_max so a burst of producers waits instead of growing memory.
 *
 * Under the everysec policy a separate syncer thread fsyncs at least once a
 * second while commits are unsynced, like Redis' background fsync: the
 * writer never waits for the disk, so a slow fsync delays durability on
 * disk, not acknowledgements. `commits` counts applied transactions and
 * `synced` how many of them an fsync has covered; both change under mu.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "store_int.h"

enum { TICKET_WRITE, TICKET_SYNC };

typedef struct ticket {
    int kind;
    const rk_batch *batch;
    pthread_cond_t cv;       /* signalled under mu when done is set */
    int done;
    int rc;
    rk_write_result res;
    rk_err err;
    struct ticket *next;
} ticket;

struct rk_store {
    const rk__backend_ops *ops;
    void *be;
    rk_schema *schema;
    rk_store_opts opts;
    char *path;
    pthread_t writer, syncer;
    int writer_started, syncer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* writer waits for tickets */
    pthread_cond_t cv_space; /* producers wait for queue space */
    pthread_cond_t cv_sync;  /* syncer's timed wait; close wakes it */
    ticket *head, *tail;
    size_t queued;
    int stopping;
    uint64_t commits;        /* transactions applied */
    uint64_t synced;         /* of those, covered by an fsync */
    uint64_t last_sync_ns;   /* start of the last fsync (or attempt) */
    pthread_mutex_t declare_mu; /* one declarer at a time */
    rk__merge_op merge[RK_KV_TABLES]; /* key-value merge functions */
    rk_commit_fn hook;       /* commit hook (writer thread), NULL = none */
    void *hook_arg;
    rk__changes changes;     /* the writer's change list for the hook */
};

struct rk_reader {
    rk_store *s;
    void *rd;
    rk_arena arena;
    rk_err err;
    rk_attr_val vals[RK_MAX_ATTRS];
};

void rk_store_opts_default(rk_store_opts *o)
{
    memset(o, 0, sizeof *o);
    o->path = "./data";
    o->backend = "lmdb";
    o->fsync = RK_FSYNC_EVERYSEC;
    o->map_size = (uint64_t)16 << 30;
    o->commit_max_ops = 65536;
    o->queue_max = 1024;
    o->id_cache = 1u << 20;
}

int rk_store_opts_from_conf(rk_store_opts *o, const rk_conf_node *root,
                            rk_err *err)
{
    static const char *const keys[] = {"path", "backend", "fsync",
                                       "map_size_mb", "commit_max_ops",
                                       "queue_max", "id_cache", NULL};
    static const char *const fsyncs[] = {"always", "everysec", NULL};
    static const char *const backends[] = {"lmdb", NULL};
    const rk_conf_node *st = root ? rk_conf_get(root, "store") : NULL;
    if (!st) return 0;
    int rc = rk_conf_check_keys(st, keys, err);
    int idx;
    int64_t v;
    if (rc || (rc = rk_conf_as_str(rk_conf_get(st, "path"), o->path, &o->path,
                                   err)))
        return rc;
    if ((rc = rk_conf_as_enum(rk_conf_get(st, "backend"), 0, backends, &idx,
                              err)))
        return rc;
    o->backend = backends[idx];
    if ((rc = rk_conf_as_enum(rk_conf_get(st, "fsync"), (int)o->fsync, fsyncs,
                              &idx, err)))
        return rc;
    o->fsync = (rk_fsync_policy)idx;
    if ((rc = rk_conf_as_int_range(rk_conf_get(st, "map_size_mb"),
                                   (int64_t)(o->map_size >> 20), 1,
                                   (int64_t)1 << 30, &v, err)))
        return rc;
    o->map_size = (uint64_t)v << 20;
    if ((rc = rk_conf_as_int_range(rk_conf_get(st, "commit_max_ops"),
                                   o->commit_max_ops, 1, 1 << 24, &v, err)))
        return rc;
    o->commit_max_ops = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(st, "queue_max"), o->queue_max,
                                   1, 1 << 20, &v, err)))
        return rc;
    o->queue_max = (uint32_t)v;
    if ((rc = rk_conf_as_int_range(rk_conf_get(st, "id_cache"), o->id_cache,
                                   1, (int64_t)1 << 28, &v, err)))
        return rc;
    o->id_cache = (uint32_t)v;
    return 0;
}

/* ---- writer and syncer --------------------------------------------------- */

static void deadline_in_ns(struct timespec *ts, uint64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec += (long)(ns % 1000000000u);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

#define SEC_NS 1000000000ull

/* Everysec only: fsyncs once a second while there are unsynced commits.
 * The fsync runs without mu, concurrently with the writer's next commits;
 * it covers at least the `commits` counted when it started. */
static void *syncer_main(void *arg)
{
    rk_store *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        uint64_t now = rk_clock_mono_ns();
        uint64_t due = s->last_sync_ns + SEC_NS;
        if (s->synced == s->commits || now < due) {
            /* Idle or synced recently: look again when the second is up,
             * or in a second (a commit may come meanwhile). */
            struct timespec ts;
            deadline_in_ns(&ts, now < due ? due - now : SEC_NS);
            pthread_cond_timedwait(&s->cv_sync, &s->mu, &ts);
            continue;
        }
        uint64_t gen = s->commits;
        pthread_mutex_unlock(&s->mu);
        rk_err err = {0};
        uint64_t t0 = rk_clock_mono_ns();
        int rc = s->ops->sync(s->be, &err);
        if (rc)
            rk_log(s->opts.log, RK_LOG_ERROR, "store", "fsync failed: %s",
                   rk_err_msg(&err));
        pthread_mutex_lock(&s->mu);
        if (rc == 0 && gen > s->synced) s->synced = gen;
        /* After a failure too, so that a broken disk is retried once a
         * second rather than in a tight loop. */
        s->last_sync_ns = t0;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

#define GROUP_MAX 1024

static void *writer_main(void *arg)
{
    rk_store *s = arg;
    const int everysec = s->opts.fsync == RK_FSYNC_EVERYSEC;
    ticket *group[GROUP_MAX];
    const rk_batch *batches[GROUP_MAX];
    rk_write_result results[GROUP_MAX];

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping) pthread_cond_wait(&s->cv_work, &s->mu);
        if (!s->head && s->stopping) break;

        /* Take a group: whole batches up to commit_max_ops (at least one). */
        size_t n = 0, ops = 0;
        int want_sync = 0;
        while (s->head && n < GROUP_MAX) {
            ticket *t = s->head;
            size_t c = t->kind == TICKET_WRITE ? t->batch->count : 0;
            if (n > 0 && ops + c > s->opts.commit_max_ops) break;
            s->head = t->next;
            if (!s->head) s->tail = NULL;
            s->queued--;
            group[n++] = t;
            ops += c;
            if (t->kind == TICKET_SYNC) want_sync = 1;
        }
        pthread_cond_broadcast(&s->cv_space);
        pthread_mutex_unlock(&s->mu);

        size_t nb = 0;
        for (size_t i = 0; i < n; i++)
            if (group[i]->kind == TICKET_WRITE) batches[nb++] = group[i]->batch;
        rk_err err = {0}, serr = {0};
        int rc = 0, src = 0;
        if (nb) {
            rc = s->ops->apply(s->be, batches, nb, results, &err);
            if (rc)
                rk_log(s->opts.log, RK_LOG_ERROR, "store",
                       "group commit of %zu batches failed: %s", nb,
                       rk_err_msg(&err));
            /* The hook runs after the commit is visible to new readers and
             * before any producer of it is woken, so a cache it keeps is
             * coherent by the time a write is acknowledged. */
            else if (s->hook)
                s->hook(s->hook_arg, s->ops->last_txn(s->be),
                        s->changes.lost ? NULL : s->changes.v.v,
                        s->changes.lost ? 0 : s->changes.v.n);
        }
        /* An explicit sync under everysec: fsync here, after this group's
         * commit, so that it covers every write acknowledged before it.
         * Under always every commit was fsync'd already. */
        uint64_t t0 = rk_clock_mono_ns();
        if (want_sync && everysec) {
            src = s->ops->sync(s->be, &serr);
            if (src)
                rk_log(s->opts.log, RK_LOG_ERROR, "store", "fsync failed: %s",
                       rk_err_msg(&serr));
        }

        pthread_mutex_lock(&s->mu);
        if (nb && rc == 0) {
            s->commits++;
            if (!everysec) s->synced = s->commits; /* fsync'd by the commit */
        }
        if (want_sync && everysec && src == 0) {
            s->synced = s->commits;
            s->last_sync_ns = t0;
        }
        size_t bi = 0;
        for (size_t i = 0; i < n; i++) {
            ticket *t = group[i];
            if (t->kind == TICKET_WRITE) {
                /* A failed fsync does not undo a commit: writes keep their
                 * own result and only sync tickets report it. */
                t->rc = rc;
                if (rc) t->err = err;
                else t->res = results[bi];
                bi++;
            } else {
                t->rc = src ? src : (everysec ? 0 : rc);
                if (src) t->err = serr;
                else if (t->rc) t->err = err;
            }
            /* Under mu: the producer cannot see done, return and destroy
             * t->cv before this signal is finished. */
            t->done = 1;
            pthread_cond_signal(&t->cv);
        }
    }
    int unsynced = s->synced != s->commits;
    pthread_mutex_unlock(&s->mu);
    if (unsynced) {
        rk_err e = {0};
        if (s->ops->sync(s->be, &e))
            rk_log(s->opts.log, RK_LOG_ERROR, "store", "fsync failed: %s",
                   rk_err_msg(&e));
    }
    return NULL;
}

/* Queues a ticket and waits for the writer to complete it. */
static int submit(rk_store *s, ticket *t, rk_err *err)
{
    pthread_cond_init(&t->cv, NULL);
    pthread_mutex_lock(&s->mu);
    while (s->queued >= s->opts.queue_max && !s->stopping)
        pthread_cond_wait(&s->cv_space, &s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&t->cv);
        return rk_err_set(err, RK_ECLOSED, "store is closing");
    }
    t->next = NULL;
    if (s->tail) s->tail->next = t; else s->head = t;
    s->tail = t;
    s->queued++;
    pthread_cond_signal(&s->cv_work);
    while (!t->done) pthread_cond_wait(&t->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&t->cv);
    if (t->rc && err) *err = t->err;
    return t->rc;
}

int rk_store_write(rk_store *s, const rk_batch *b, rk_write_result *res,
                   rk_err *err)
{
    if (s->opts.read_only)
        return rk_err_set(err, RK_ESTATE, "store is open read-only");
    if (b->count == 0) {
        if (res) memset(res, 0, sizeof *res);
        return 0;
    }
    ticket t = {0};
    t.kind = TICKET_WRITE;
    t.batch = b;
    int rc = submit(s, &t, err);
    if (rc == 0 && res) *res = t.res;
    return rc;
}

int rk_store_sync(rk_store *s, rk_err *err)
{
    if (s->opts.read_only) return 0;
    ticket t = {0};
    t.kind = TICKET_SYNC;
    return submit(s, &t, err);
}

/* ---- open / close -------------------------------------------------------- */

/* Stops the writer (which drains the queue and syncs) and the syncer. */
static void stop_threads(rk_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv_work);
    pthread_cond_broadcast(&s->cv_space);
    pthread_cond_broadcast(&s->cv_sync);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_started) pthread_join(s->writer, NULL);
    if (s->syncer_started) pthread_join(s->syncer, NULL);
    s->writer_started = s->syncer_started = 0;
}

static void destroy_sync(rk_store *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->declare_mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_space);
    pthread_cond_destroy(&s->cv_sync);
}

int rk_store_open(rk_store **out, const rk_store_opts *o,
                  const rk_schema *schema, rk_err *err)
{
    if (!o->path || !*o->path)
        return rk_err_set(err, RK_EINVAL, "store: no data directory given");
    if (o->backend && strcmp(o->backend, "lmdb") != 0)
        return rk_err_set(err, RK_EUNSUPPORTED,
                          "store: unknown backend '%s' (available: lmdb)",
                          o->backend);
    rk_store *s = rk_calloc(1, sizeof *s);
    if (!s) return rk_err_set(err, RK_ENOMEM, "store: out of memory");
    s->opts = *o;
    s->ops = &rk__lmdb_backend;
    s->path = rk_strdup(o->path);
    rk_schema *defaults = NULL;
    int rc = 0;
    if (!s->path || rk_schema_create(&s->schema)) {
        rc = rk_err_set(err, RK_ENOMEM, "store: out of memory");
        goto fail;
    }
    s->opts.path = s->path;
    s->opts.backend = s->ops->name;
    if (s->opts.commit_max_ops == 0) s->opts.commit_max_ops = 65536;
    if (s->opts.queue_max == 0) s->opts.queue_max = 1024;
    if (s->opts.map_size == 0) s->opts.map_size = (uint64_t)16 << 30;
    if (!schema && !o->read_only) {
        if ((rc = rk_schema_from_conf(&defaults, NULL, err))) goto fail;
        schema = defaults;
    }
    if ((rc = s->ops->open(&s->be, &s->opts, s->schema, schema, err)))
        goto fail;
    s->ops->set_merge_table(s->be, s->merge);
    rk_schema_destroy(defaults);
    defaults = NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->declare_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv_work, &ca);
    pthread_cond_init(&s->cv_sync, &ca); /* timed waits on CLOCK_MONOTONIC */
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->cv_space, NULL);
    s->last_sync_ns = rk_clock_mono_ns();
    if (!o->read_only) {
        if ((rc = pthread_create(&s->writer, NULL, writer_main, s)) == 0) {
            s->writer_started = 1;
            if (o->fsync == RK_FSYNC_EVERYSEC &&
                (rc = pthread_create(&s->syncer, NULL, syncer_main, s)) == 0)
                s->syncer_started = 1;
        }
        if (rc != 0) {
            rc = rk_err_set(err, RK_ENOMEM, "store: cannot start %s: %s",
                            s->writer_started ? "syncer" : "writer",
                            strerror(rc));
            stop_threads(s);
            s->ops->close(s->be);
            s->be = NULL;
            destroy_sync(s);
            goto fail;
        }
    }
    rk_log(o->log, RK_LOG_DEBUG, "store", "opened %s (lmdb, fsync %s%s)",
           s->path, o->fsync == RK_FSYNC_ALWAYS ? "always" : "everysec",
           o->read_only ? ", read-only" : "");
    *out = s;
    return 0;
fail:
    rk_schema_destroy(defaults);
    rk_schema_destroy(s->schema);
    rk_free(s->path);
    rk_free(s);
    return rc;
}

void rk_store_close(rk_store *s)
{
    if (!s) return;
    stop_threads(s);
    s->ops->close(s->be);
    destroy_sync(s);
    rk_vec_free(&s->changes.v);
    rk_schema_destroy(s->schema);
    rk_free(s->path);
    rk_free(s);
}

const rk_schema *rk_store_schema(const rk_store *s)
{
    return s->schema;
}

const char *rk_store_path(const rk_store *s)
{
    return s->path;
}

int rk_store_declare_attr(rk_store *s, rk_entity e, const char *name,
                          rk_attr_type type, uint32_t dim, rk_err *err)
{
    /* Validate against a scratch copy first so that a bad declaration is
     * reported here with its reason instead of failing a commit. */
    rk_schema *probe;
    if (rk_schema_create(&probe)) return rk_err_set(err, RK_ENOMEM, "out of memory");
    pthread_mutex_lock(&s->declare_mu);
    int rc = rk__schema_merge(probe, s->schema, err);
    uint32_t before = rk_schema_nattrs(probe, e);
    if (!rc) rc = rk_schema_add_attr(probe, e, name, type, dim, err);
    int is_new = !rc && rk_schema_nattrs(probe, e) > before;
    rk_schema_destroy(probe);
    if (!rc && is_new) {
        if (s->opts.read_only) {
            rc = rk_err_set(err, RK_ESTATE, "store is open read-only");
        } else {
            rk_batch *b;
            if ((rc = rk_batch_create(&b, s, 0))) {
                rc = rk_err_set(err, rc, "out of memory");
            } else {
                rc = rk__batch_declare(b, e, name, type, dim);
                if (!rc) rc = rk_store_write(s, b, NULL, err);
                else rk_err_set(err, rc, "out of memory");
                rk_batch_destroy(b);
            }
        }
    }
    pthread_mutex_unlock(&s->declare_mu);
    return rc;
}

/* ---- readers --------------------------------------------------------------- */

int rk_store_reader(rk_store *s, rk_reader **out, rk_err *err)
{
    rk_reader *r = rk_calloc(1, sizeof *r);
    if (!r) return rk_err_set(err, RK_ENOMEM, "reader: out of memory");
    r->s = s;
    rk_arena_init(&r->arena, 16 << 10, 0);
    int rc = s->ops->reader_open(s->be, &r->rd, err);
    if (rc) {
        rk_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void rk_reader_close(rk_reader *r)
{
    if (!r) return;
    r->s->ops->reader_close(r->rd);
    rk_arena_free(&r->arena);
    rk_free(r);
}

const char *rk_reader_errmsg(const rk_reader *r)
{
    return rk_err_msg(&r->err);
}

int rk_reader_stats(rk_reader *r, rk_store_stats *out)
{
    return r->s->ops->stats(r->rd, out, &r->err);
}

static int bad_entity(rk_reader *r, rk_entity e)
{
    if ((unsigned)e < RK_ENTITY_COUNT) return 0;
    return rk_err_set(&r->err, RK_EINVAL, "bad entity type %d", (int)e);
}

int rk_reader_lookup(rk_reader *r, rk_entity e, const char *ext, size_t len,
                     uint32_t *id)
{
    int rc = bad_entity(r, e);
    return rc ? rc : r->s->ops->lookup(r->rd, e, ext, len, id, &r->err);
}

int rk_reader_external(rk_reader *r, rk_entity e, uint32_t id,
                       const char **ext, size_t *len)
{
    int rc = bad_entity(r, e);
    return rc ? rc : r->s->ops->external(r->rd, e, id, ext, len, &r->err);
}

int rk_reader_entity(rk_reader *r, rk_entity e, uint32_t id,
                     rk_entity_view *out)
{
    const void *p;
    size_t n;
    int rc = bad_entity(r, e);
    if (rc || (rc = r->s->ops->entity_raw(r->rd, e, id, &p, &n, &r->err)))
        return rc;
    rk_arena_reset(&r->arena);
    rc = rk__entity_decode(p, n, id, out, r->vals, &r->arena);
    if (rc == RK_ECORRUPT)
        return rk_err_set(&r->err, rc, "%s %u: corrupted record",
                          rk_entity_name(e), id);
    if (rc) return rk_err_set(&r->err, rc, "%s %u: out of memory",
                              rk_entity_name(e), id);
    return 0;
}

int rk_reader_event_by_id(rk_reader *r, const char *id, size_t len,
                          uint64_t *seq)
{
    uint8_t h[16];
    rk__event_id_hash(id, len, h);
    return r->s->ops->event_by_id(r->rd, h, seq, &r->err);
}

typedef struct scan_ctx {
    rk_reader *r;
    rk_event_fn ev_fn;
    rk_entity_fn ent_fn;
    rk_row_fn row_fn;
    void *arg;
    rk_entity e;
} scan_ctx;

static int scan_event_cb(void *p, uint64_t seq, const void *v, size_t n)
{
    scan_ctx *c = p;
    rk_event ev;
    if (rk__event_decode(v, n, seq, &ev))
        return rk_err_set(&c->r->err, RK_ECORRUPT,
                          "event %llu: corrupted record",
                          (unsigned long long)seq);
    return c->ev_fn(c->arg, &ev);
}

int rk_reader_scan_events(rk_reader *r, uint64_t from_seq, rk_event_fn fn,
                          void *arg)
{
    scan_ctx c = {.r = r, .ev_fn = fn, .arg = arg};
    return r->s->ops->scan_events(r->rd, from_seq, scan_event_cb, &c, &r->err);
}

static int scan_entity_cb(void *p, uint32_t id, const void *v, size_t n)
{
    scan_ctx *c = p;
    rk_entity_view view;
    rk_arena_reset(&c->r->arena);
    int rc = rk__entity_decode(v, n, id, &view, c->r->vals, &c->r->arena);
    if (rc)
        return rk_err_set(&c->r->err, rc, "%s %u: %s", rk_entity_name(c->e),
                          id, rc == RK_ECORRUPT ? "corrupted record"
                                                : "out of memory");
    return c->ent_fn(c->arg, &view);
}

int rk_reader_scan_entities(rk_reader *r, rk_entity e, rk_entity_fn fn,
                            void *arg)
{
    int rc = bad_entity(r, e);
    if (rc) return rc;
    scan_ctx c = {.r = r, .ent_fn = fn, .arg = arg, .e = e};
    return r->s->ops->scan_entities(r->rd, e, scan_entity_cb, &c, &r->err);
}

static int scan_row_cb(void *p, uint64_t seq, const void *v, size_t n)
{
    scan_ctx *c = p;
    rk_row row;
    rk_arena_reset(&c->r->arena);
    int rc = rk__row_decode(v, n, seq, &row, &c->r->arena);
    if (rc)
        return rk_err_set(&c->r->err, rc, "row %llu: %s",
                          (unsigned long long)seq,
                          rc == RK_ECORRUPT ? "corrupted record"
                                            : "out of memory");
    return c->row_fn(c->arg, &row);
}

int rk_reader_scan_rows(rk_reader *r, const char *dataset, rk_row_fn fn,
                        void *arg)
{
    scan_ctx c = {.r = r, .row_fn = fn, .arg = arg};
    int rc = r->s->ops->scan_rows(r->rd, dataset, scan_row_cb, &c, &r->err);
    if (rc == RK_ENOTFOUND && !r->err.code)
        rk_err_set(&r->err, rc, "no dataset named '%s'", dataset);
    return rc;
}

int rk_reader_scan_datasets(rk_reader *r, rk_dataset_fn fn, void *arg)
{
    return r->s->ops->scan_datasets(r->rd, fn, arg, &r->err);
}

/* ---- key-value tables ---------------------------------------------------- */

int rk_store_set_merge(rk_store *s, unsigned table, rk_kv_merge_fn fn,
                       void *arg)
{
    if (table == 0 || table >= RK_KV_TABLES) return RK_EINVAL;
    s->merge[table].fn = fn;
    s->merge[table].arg = arg;
    return 0;
}

int rk_store_set_commit_hook(rk_store *s, rk_commit_fn fn, void *arg)
{
    s->hook = fn;
    s->hook_arg = arg;
    s->changes.v.max = RK_COMMIT_CHANGES_MAX;
    s->changes.v.n = 0;
    s->changes.lost = 0;
    s->ops->set_changes(s->be, fn ? &s->changes : NULL);
    if (fn) fn(arg, s->ops->last_txn(s->be), NULL, 0);
    return 0;
}

uint64_t rk_reader_txn(const rk_reader *r)
{
    return r->s->ops->reader_txn(r->rd);
}

int rk_reader_kv_get(rk_reader *r, unsigned table, const void *key,
                     size_t klen, const void **val, size_t *vlen)
{
    return r->s->ops->kv_get(r->rd, table, key, klen, val, vlen, &r->err);
}

int rk_reader_kv_scan(rk_reader *r, unsigned table, const void *prefix,
                      size_t plen, const void *start, size_t slen,
                      rk_kv_fn fn, void *arg)
{
    return r->s->ops->kv_scan(r->rd, table, prefix, plen, start, slen, fn, arg,
                              &r->err);
}
