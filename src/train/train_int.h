/*
 * train_int.h — internals shared by the files of src/train/: the data
 * layout, the seeded random numbers every protocol uses, and the model
 * handle.
 */
#ifndef RK_TRAIN_INT_H
#define RK_TRAIN_INT_H

#include "rk_train.h"

/* The raw feedback events, one array per field (see rk_eval_data in
 * rk_train.h), plus the collapsed matrix of them all. */
struct rk_eval_data {
    uint32_t nusers, nitems;
    size_t n;
    uint32_t *user, *item;
    int64_t *ts;
    float *weight;
    uint32_t *request;   /* RK_EVAL_NO_REQUEST when none */
    uint32_t nrequests;
    rk_interactions *all;
    int from_store;          /* opts below are meaningful */
    rk_eval_data_opts opts;
};

struct rk_eval_model {
    char *name;
    const rk_eval_model_ops *ops;
    void *self;
};

/* What a split looked like, for the report. */
typedef struct rk__eval_split_info {
    uint32_t cases, train_users, catalog;
    uint64_t train_nnz, scored, scored_all, scored_in_catalog, foldin;
    int64_t split_ts;
} rk__eval_split_info;

struct rk_eval_report {
    rk_eval_opts opts;           /* data_name and log cleared */
    char *data_name;
    uint32_t nusers, nitems;
    uint64_t nevents, positives;
    int data_from_store;
    rk_eval_data_opts data_opts;
    unsigned threads;
    size_t nmodels;
    char **names, **kinds, **params;  /* params: JSON objects */
    uint32_t nsplits;
    rk__eval_split_info *splits;
    rk_eval_metrics *m;          /* [model][split][k] */
    double *train_sec, *score_sec; /* [model][split] */
    int64_t started_ms;
    double wall_sec;
};

/* splitmix64: a full-period generator whose output is a good hash of its
 * state, so seeding it with (seed, user) gives independent streams per
 * user without a shared generator. Same numbers on every platform. */
static inline uint64_t rk__train_mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform integer below n (n > 0) by Lemire's multiply-shift; the
 * bias is below n / 2^64, irrelevant here. */
static inline uint32_t rk__train_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((rk__train_mix(s) >> 32) * (uint64_t)n) >> 32);
}

/* Seed of a stream keyed by (seed, a, b). */
static inline uint64_t rk__train_seed(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t s = seed ^ (a * 0xD6E8FEB86659FD93ull);
    uint64_t x = rk__train_mix(&s);
    s = x ^ (b * 0xA0761D6478BD642Full);
    return rk__train_mix(&s);
}

/* Writes data[0..n) to dir/name and fsyncs it; RK_EIO with the path.
 * (publish.c) */
int rk__train_write_file(const char *dir, const char *name, const void *data,
                         size_t n, rk_err *err);


/* ---- registry internals (publish.c, registry.c, refhist.c, artifact.c) ---- */

struct json_t;

/* A reference histogram from a parsed JSON object; where names it in
 * messages. (refhist.c) */
int rk__refhist_from_json(const struct json_t *o, const char *where,
                          rk_refhist **out, rk_err *err);

/* Parses JSON text (duplicate keys refused) into *out (json_decref it).
 * RK_EPARSE "<what>: line N: ...", or RK_ENOMEM when any allocation
 * failed on the way: jansson does not always report those, and can
 * return a damaged document after one. (publish.c) */
int rk__train_json_load(const char *text, size_t len, const char *what,
                        struct json_t **out, rk_err *err);

/* Filesystem helpers (publish.c). All return RK_EIO with the path. */
int rk__train_fsync_path(const char *path, int is_dir, rk_err *err);
/* rm -rf; a missing path is fine. 0 or -1 (errno set). */
int rk__train_rm_rf(const char *path);
/* Reads a whole file of at most max bytes into rk_malloc memory,
 * NUL-terminated. RK_EIO, RK_ENOTFOUND (no such file), RK_ELIMIT,
 * RK_ENOMEM. */
int rk__train_read_file(const char *path, size_t max, char **out, size_t *n,
                        rk_err *err);
/* A version directory name: digits only, no leading zero, below 10^9;
 * its number, else 0. */
uint32_t rk__train_version_of(const char *s);
/* RK_EINVAL unless name is 1-200 of [A-Za-z0-9_.-], not starting '.'. */
int rk__train_check_name(const char *name, rk_err *err);

/* Writes an artifact and reports its checksum and file size. (artifact.c) */
int rk__artifact_write(const char *dir, const char *name, rk_model_kind kind,
                       const void *payload, size_t len, uint64_t *checksum,
                       uint64_t *bytes, rk_err *err);

/* The promotion state of one model name (registry.json). stack holds
 * promoted versions, oldest first, the current one last; rolled the
 * versions taken off it by rollbacks; history the newest events (at most
 * RK__REG_HISTORY_MAX). */
#define RK__REG_HISTORY_MAX 100
#define RK__REG_MAX_ENTRIES 100000
typedef struct rk__reg_event {
    int64_t ts_ms;
    char action[16];         /* publish, promote, rollback, gate */
    uint32_t version, from;  /* from 0 = none */
    int passed;              /* gate: 1 / 0; else -1 */
    char *reason;            /* rk_malloc'd or NULL */
} rk__reg_event;

typedef struct rk__reg_state {
    uint32_t *stack;
    size_t nstack;
    uint32_t *rolled;
    size_t nrolled;
    rk__reg_event *hist;
    size_t nhist;
} rk__reg_state;

/* Parses registry.json text. RK_EPARSE, RK_ECORRUPT, RK_EVERSION,
 * RK_ENOMEM; *st is empty on error. (registry.c) */
int rk__reg_state_parse(rk__reg_state *st, const char *json, size_t len,
                        rk_err *err);
int rk__reg_state_json(const rk__reg_state *st, rk_buf *out);
void rk__reg_state_free(rk__reg_state *st);

/* Exclusive lock of <models>/<name>/.lock for writers: *fd to pass to
 * rk__reg_unlock. (registry.c) */
int rk__reg_lock(const char *name_dir, int *fd, rk_err *err);
void rk__reg_unlock(int fd);

/* Writes a new version directory of the model in name_dir (locked by the
 * caller): picks the next number, calls write(arg, tmpdir, version) to
 * fill <name_dir>/.tmp-<version>/, fsyncs it and renames it into place.
 * Leftovers of killed writers (.tmp-*, .del-*) are removed first.
 * (registry.c) */
typedef int (*rk__version_writer)(void *arg, const char *tmpdir,
                                  uint32_t version, rk_err *err);
int rk__reg_new_version(const char *name_dir, rk__version_writer write,
                        void *arg, uint32_t *version, rk_err *err);

/* Under the lock: promote version (push it on the stack, commit
 * registry.json, switch the links) recording action and reason (may be
 * NULL); and keep the newest `keep` versions plus current and previous.
 * (registry.c) */
int rk__reg_promote_locked(const char *name_dir, uint32_t version,
                           const char *action, const char *reason,
                           rk_err *err);
int rk__reg_gc_locked(const char *name_dir, unsigned keep, rk_err *err);

#endif
