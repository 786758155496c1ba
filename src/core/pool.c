/*
 * pool.c — a fixed set of worker threads fed from a bounded FIFO.
 *
 * One mutex guards the queue (a ring of queue_max slots) and the counts;
 * three condition variables signal "queue has work", "queue has room" and
 * "everything finished". submit blocks while the ring is full, which is the
 * back-pressure that keeps producers from queueing without bound.
 *
 * parallel_for needs no allocation: its job lives on the caller's stack,
 * chunks are claimed through an atomic counter by "helper" tasks and by the
 * caller itself. Before returning, the caller withdraws helpers that are
 * still queued (they have not touched the job) and waits for running ones,
 * so the stack job is never used after return. Because the caller works
 * too and never blocks on queue space, parallel_for may be called from
 * inside a pool task without deadlocking.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "rk_core.h"

#define POOL_MAX_THREADS 1024
#define POOL_QUEUE_PER_THREAD 64
/* parallel_for cuts at most this many chunks per thread: enough to even out
 * uneven chunks, few enough that claiming costs nothing. */
#define PF_CHUNKS_PER_THREAD 4

typedef struct pool_task {
    rk_task_fn fn;
    void *arg;
} pool_task;

struct rk_pool {
    pthread_mutex_t mu;
    pthread_cond_t has_work; /* count > 0 or stopping */
    pthread_cond_t has_room; /* count < qcap or stopping */
    pthread_cond_t idle;     /* count == 0 and active == 0 */
    pool_task *q;
    size_t qcap, head, count;
    size_t active; /* tasks being run right now */
    int stopping;
    unsigned nthreads;
    pthread_t *threads;
};

static void *worker_main(void *vp)
{
    rk_pool *p = vp;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->count == 0 && !p->stopping)
            pthread_cond_wait(&p->has_work, &p->mu);
        /* Stopping only ends a worker once the queue is drained, so every
         * task accepted by submit runs. */
        if (p->count == 0) break;
        pool_task t = p->q[p->head];
        p->head = (p->head + 1) % p->qcap;
        p->count--;
        p->active++;
        pthread_cond_signal(&p->has_room);
        pthread_mutex_unlock(&p->mu);
        t.fn(t.arg);
        pthread_mutex_lock(&p->mu);
        p->active--;
        if (p->count == 0 && p->active == 0) pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_free(rk_pool *p)
{
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->has_room);
    pthread_cond_destroy(&p->has_work);
    pthread_mutex_destroy(&p->mu);
    rk_free(p->threads);
    rk_free(p->q);
    rk_free(p);
}

/* Tells the workers to stop once the queue is empty and joins the first n. */
static void stop_and_join(rk_pool *p, unsigned n)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->has_work);
    pthread_cond_broadcast(&p->has_room);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < n; i++) pthread_join(p->threads[i], NULL);
}

int rk_pool_create(rk_pool **out, unsigned nthreads, size_t queue_max)
{
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cpus > 0 ? (unsigned)(cpus < POOL_MAX_THREADS ? cpus : POOL_MAX_THREADS) : 1;
    }
    if (nthreads > POOL_MAX_THREADS) return RK_EINVAL;
    if (queue_max == 0) queue_max = (size_t)nthreads * POOL_QUEUE_PER_THREAD;
    if (queue_max > SIZE_MAX / sizeof(pool_task)) return RK_EINVAL;

    rk_pool *p = rk_calloc(1, sizeof *p);
    if (!p) return RK_ENOMEM;
    p->q = rk_malloc(queue_max * sizeof *p->q);
    p->threads = rk_calloc(nthreads, sizeof *p->threads);
    if (!p->q || !p->threads) {
        rk_free(p->q);
        rk_free(p->threads);
        rk_free(p);
        return RK_ENOMEM;
    }
    p->qcap = queue_max;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->has_work, NULL);
    pthread_cond_init(&p->has_room, NULL);
    pthread_cond_init(&p->idle, NULL);
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            stop_and_join(p, i);
            pool_free(p);
            return RK_ENOMEM;
        }
    }
    *out = p;
    return 0;
}

/* Appends a task; the caller holds p->mu and has checked there is room. */
static void enqueue_locked(rk_pool *p, rk_task_fn fn, void *arg)
{
    size_t tail = (p->head + p->count) % p->qcap;
    p->q[tail].fn = fn;
    p->q[tail].arg = arg;
    p->count++;
}

int rk_pool_submit(rk_pool *p, rk_task_fn fn, void *arg)
{
    if (!p || !fn) return RK_EINVAL;
    pthread_mutex_lock(&p->mu);
    while (p->count == p->qcap && !p->stopping)
        pthread_cond_wait(&p->has_room, &p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        return RK_ECLOSED;
    }
    enqueue_locked(p, fn, arg);
    pthread_cond_signal(&p->has_work);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void rk_pool_wait(rk_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    while (p->count || p->active) pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

unsigned rk_pool_threads(const rk_pool *p)
{
    return p ? p->nthreads : 0;
}

void rk_pool_destroy(rk_pool *p)
{
    if (!p) return;
    stop_and_join(p, p->nthreads);
    pool_free(p);
}

/* ---- parallel_for ------------------------------------------------------ */

typedef struct pf_job {
    rk_pool *pool;
    rk_range_fn fn;
    void *arg;
    size_t n, k;          /* items, chunks */
    _Atomic size_t next;  /* next chunk to claim */
    size_t helpers;       /* queued or running helpers; under pool->mu */
    pthread_cond_t done;  /* helpers reached 0 */
} pf_job;

/* Chunk i of k over [0, n): the first n % k chunks get one extra item.
 * Written without i * n so huge n cannot overflow. */
static void pf_run_chunks(pf_job *j)
{
    size_t base = j->n / j->k, extra = j->n % j->k;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->k) return;
        size_t b = i * base + (i < extra ? i : extra);
        size_t e = b + base + (i < extra);
        j->fn(j->arg, b, e);
    }
}

static void pf_helper(void *vp)
{
    pf_job *j = vp;
    rk_pool *p = j->pool; /* j may be gone once the mutex is released */
    pf_run_chunks(j);
    pthread_mutex_lock(&p->mu);
    if (--j->helpers == 0) pthread_cond_signal(&j->done);
    pthread_mutex_unlock(&p->mu);
}

/* Removes this job's helpers that no worker has picked up yet, keeping the
 * FIFO order of everything else. Caller holds p->mu. */
static void pf_withdraw_locked(rk_pool *p, pf_job *j)
{
    size_t kept = 0, removed = 0;
    for (size_t r = 0; r < p->count; r++) {
        pool_task t = p->q[(p->head + r) % p->qcap];
        if (t.fn == pf_helper && t.arg == j) {
            removed++;
            continue;
        }
        p->q[(p->head + kept) % p->qcap] = t;
        kept++;
    }
    if (!removed) return;
    p->count = kept;
    j->helpers -= removed;
    pthread_cond_broadcast(&p->has_room);
    if (p->count == 0 && p->active == 0) pthread_cond_broadcast(&p->idle);
}

int rk_pool_parallel_for(rk_pool *p, size_t n, size_t grain, rk_range_fn fn,
                         void *arg)
{
    if (!p || !fn) return RK_EINVAL;
    if (n == 0) return 0;
    if (grain == 0) grain = 1;
    /* The partition depends only on n, grain and the thread count. */
    size_t k = n / grain;
    size_t kmax = (size_t)p->nthreads * PF_CHUNKS_PER_THREAD;
    if (k > kmax) k = kmax;
    if (k == 0) k = 1;

    pf_job j = {.pool = p, .fn = fn, .arg = arg, .n = n, .k = k};
    atomic_init(&j.next, 0);
    pthread_cond_init(&j.done, NULL);

    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        pthread_cond_destroy(&j.done);
        return RK_ECLOSED;
    }
    /* The caller takes chunks too, so k - 1 helpers at most; only as many
     * as fit now, since waiting for room could deadlock a nested call. */
    size_t want = k - 1 < p->nthreads ? k - 1 : p->nthreads;
    while (j.helpers < want && p->count < p->qcap) {
        enqueue_locked(p, pf_helper, &j);
        j.helpers++;
    }
    if (j.helpers) pthread_cond_broadcast(&p->has_work);
    pthread_mutex_unlock(&p->mu);

    pf_run_chunks(&j);

    pthread_mutex_lock(&p->mu);
    pf_withdraw_locked(p, &j);
    while (j.helpers) pthread_cond_wait(&j.done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&j.done);
    return 0;
}
