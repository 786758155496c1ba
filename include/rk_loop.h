/*
 * rk_loop.h — the learning loop's decisions: when to retrain a ranker
 * (periodically, after N new labelled events, or when its inputs drift),
 * how (a `rankd train --ranker` run on the feature log, falling back to
 * the event log, behind the registry's promotion gate), and the audit log
 * of every decision (trained, promoted, rejected, rolled back, drift
 * alarm, failed). `rankd serve` runs the loop in a background thread
 * (docs/loop.md); the pieces here are pure or self-contained so they can
 * be tested alone.
 *
 * Threading: rk_audit is thread-safe; the policy functions are pure;
 * rk_loop_train blocks for the training run.
 */
#ifndef RK_LOOP_H
#define RK_LOOP_H

#include <stdatomic.h>

#include "rk_core.h"
#include "rk_monitor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- policy -------------------------------------------------------------- */

#define RK_LOOP_MAX_ARGS 32

/* The `loop:` section of the config. Strings are borrowed from the tree. */
typedef struct rk_loop_opts {
    int enabled;                /* the section is present and not off */
    const char *ranker;         /* registry name (default serve.ranker) */
    const char *kind;           /* gbdt | ftrl | fm (default gbdt) */
    const char *args[RK_LOOP_MAX_ARGS]; /* extra `rankd train` options */
    size_t nargs;
    int64_t window_ms;          /* train on requests served within it, 0 = all */
    double every_minutes;       /* periodic retraining, 0 = off */
    uint64_t every_labels;      /* after N new positive events, 0 = off */
    int on_drift;               /* retrain when the inputs drift (default 1) */
    double cooldown_minutes;    /* least time between trainings (default 5) */
    double drift_check_s;       /* how often drift is evaluated (default 30) */
    uint32_t min_drift_rows;    /* served items before drift counts (1000) */
    /* concept drift: the served version's recent online quality against
     * its own first labels (delayed labels, docs/loop.md) */
    int on_concept_drift;       /* retrain when it falls (default 1) */
    uint32_t concept_window;    /* labels of each window (5000); 0 = off */
    double concept_auc_drop;    /* recent AUC below the first by (0.05) */
    double concept_calibration; /* Σp/Σy moved by this fraction (0.25) */
    double concept_z;           /* and by this many standard errors (3) */
    /* continuous online learning (ftrl or fm rankers) */
    int online;                 /* update from each labelled example (0) */
    double online_refresh_s;    /* served snapshot refreshed every (10) */
    int64_t online_half_life_ms; /* its gradient sums decay with this
                                    half-life, so it keeps a young learning
                                    rate (0 = never: the default) */
    /* automatic rollback on online log loss */
    int rollback;               /* (1) */
    double rollback_margin;     /* worse than the predecessor by (0.02) */
    int rollback_relative;      /* margin as a fraction of its log loss (0) */
    uint64_t rollback_min_labels; /* labels of each version first (1000) */
} rk_loop_opts;

void rk_loop_opts_default(rk_loop_opts *o);
/* Reads `loop:` of the config root (may be NULL). RK_ECONFIG file:line. */
int rk_loop_opts_from_conf(rk_loop_opts *o, const rk_conf_node *root,
                           rk_err *err);

typedef enum rk_loop_trigger {
    RK_LOOP_NONE = 0,
    RK_LOOP_PERIODIC,
    RK_LOOP_LABELS,
    RK_LOOP_DRIFT,
    RK_LOOP_CONCEPT,
    RK_LOOP_CATCH_UP
} rk_loop_trigger;

/* "none", "periodic", "labels", "drift", "concept_drift",
 * "concept_catch_up". */
const char *rk_loop_trigger_name(rk_loop_trigger t);

/* What the loop has seen since its last training. */
typedef struct rk_loop_state {
    int64_t now_ms;
    int64_t last_train_ms;      /* start of the last training; 0 = never */
    uint64_t new_labels;        /* positive events since then */
    int drift;                  /* the served ranker's inputs drift now */
    uint64_t drift_rows;        /* served items in the monitor's window */
    int training;               /* a training run is in progress */
    int concept;                /* the served version's concept drifts now */
    int64_t change_ms;          /* start of the rows the last concept-drift
                                   training used (0 = none yet) */
    int64_t change_span_ms;     /* the span the last training since then used */
} rk_loop_state;

/* Which trigger fires now, if any: none while training or within the
 * cooldown; else concept drift (when on_concept_drift); then the catch-up
 * after one: a concept-drift training learns from the rows since the
 * change only, so once that span has doubled the loop trains again on all
 * of it, and so on until the span reaches window_ms (without a window,
 * at every doubling); then input drift (when on_drift and enough rows),
 * labels, periodic. Pure. */
rk_loop_trigger rk_loop_decide(const rk_loop_opts *o, const rk_loop_state *s);

/* The rollback verdict on a version from its online log loss and its
 * predecessor's, each over n labels: RK_LOOP_WAIT until both have
 * rollback_min_labels (or when rollback is off), RK_LOOP_ROLL_BACK when
 * the new one is worse by more than the margin, RK_LOOP_KEEP otherwise.
 * Pure. */
typedef enum rk_loop_verdict {
    RK_LOOP_WAIT = 0, RK_LOOP_KEEP, RK_LOOP_ROLL_BACK
} rk_loop_verdict;
rk_loop_verdict rk_loop_rollback_check(const rk_loop_opts *o, double n_new,
                                       double logloss_new, double n_prev,
                                       double logloss_prev);

/* The concept-drift verdict on a version from its online metrics over its
 * first concept_window labels (base) and its latest ones (recent):
 * RK_LOOP_WAIT until base holds the window and recent three quarters of
 * it (or when concept_window is 0), RK_LOOP_ROLL_BACK ("drifts") when the
 * recent AUC is below the base AUC by concept_auc_drop and by concept_z
 * standard errors (Hanley–McNeil), or when the calibration Σp/Σy moved by
 * the factor 1 + concept_calibration either way and by concept_z
 * standard errors of its logarithm (1/positives of each window),
 * RK_LOOP_KEEP otherwise. why (may be NULL) gets the numbers. Pure. */
rk_loop_verdict rk_loop_concept_check(const rk_loop_opts *o,
                                      const rk_concept_metrics *base,
                                      const rk_concept_metrics *recent,
                                      char *why, size_t cap);

/* ---- audit log --------------------------------------------------------------- */

typedef struct rk_audit rk_audit;

/* A bounded log of the last `keep` decisions in memory, each also
 * appended as one JSON line to path (NULL = memory only; the file is
 * opened in append mode and fsync'd per record, so it survives restarts
 * and is never rewritten). RK_EIO naming the path, RK_ENOMEM. */
int rk_audit_open(rk_audit **out, const char *path, size_t keep, rk_err *err);
/* The clock "now" means for records added with ts_ms 0 (default: the wall
 * clock); a server passes its own (serve.clock). Call before sharing a. */
void rk_audit_set_clock(rk_audit *a, int64_t (*now)(void *), void *arg);
void rk_audit_close(rk_audit *a);
/* Records a decision: kind ("trained", "promoted", "rejected",
 * "rolled_back", "drift_alarm", "drift_cleared", "failed", ...), the
 * model, its version (0 = none) and a detail message. ts_ms 0 = now (the
 * audit's clock). */
void rk_audit_add(rk_audit *a, int64_t ts_ms, const char *kind,
                  const char *model, uint32_t version, const char *detail);
/* The records, newest first, as a JSON array appended to b. */
int rk_audit_json(rk_audit *a, rk_buf *b);
/* Records of one kind since the start (for /metrics). */
uint64_t rk_audit_count(rk_audit *a, const char *kind);
/* Kinds seen so far (for /metrics): *n set, borrowed names. */
size_t rk_audit_kinds(rk_audit *a, const char **kinds, uint64_t *counts,
                      size_t cap);

/* ---- training -------------------------------------------------------------------- */

typedef struct rk_loop_result {
    int ok;                     /* the training run succeeded */
    uint32_t version;           /* published version, 0 = none */
    int promoted;
    int from_log;               /* rows came from the feature log */
    uint64_t train_rows;
    double auc, logloss;        /* on the validation rows (NaN = none) */
    char reason[512];           /* gate reason, or the error */
} rk_loop_result;

/*
 * Runs `exe train --data DIR --config CONF --ranker KIND --name NAME
 * [--from-log NAME [--as-of MS]] ARGS... --json` as a child process (exe: the rankd
 * binary, usually /proc/self/exe), first on the feature log and, when
 * that gives no rows, on the event log; as_of_ms (0 = none) is the
 * server's clock, the time the label join judges windows at (--as-of);
 * its output goes to log_path
 * (appended). Blocks until it ends. The registry gate decides promotion.
 * Fills *res; returns 0 when a run finished (res->ok says whether it
 * trained), RK_EIO when no child could be started, RK_ECLOSED when
 * *cancel (may be NULL) became non-zero: the child is then killed.
 */
int rk_loop_train(const char *exe, const char *data_dir, const char *config,
                  const rk_loop_opts *o, int64_t as_of_ms, const char *log_path,
                  const atomic_int *cancel, rk_loop_result *res, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif
