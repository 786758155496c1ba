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

#endif
