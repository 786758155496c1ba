/*
 * trainer.c — one retraining run of the learning loop: `rankd train
 * --ranker` as a child process (its memory and any crash stay out of the
 * server), on the feature log first and, when that gives no rows yet (no
 * served traffic, or every request still inside its label window), on
 * the event log replay. The child's --json answer says what it trained
 * and what the promotion gate decided.
 */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rk_loop.h"

extern char **environ;

/* Runs one child; its stdout goes to out_path (truncated), stderr to the
 * log. *status gets its exit status (-1 when killed). */
static int run(const char *exe, char *const *argv, const char *out_path,
               const char *log_path, const atomic_int *cancel, int *status,
               rk_err *err)
{
    int ofd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int lfd = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
                       : open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (ofd < 0 || lfd < 0) {
        if (ofd >= 0) close(ofd);
        if (lfd >= 0) close(lfd);
        return rk_err_set(err, RK_EIO, "loop: cannot open %s", ofd < 0 ? out_path
                                                                       : log_path);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ofd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, lfd, STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(ofd);
    close(lfd);
    if (rc) return rk_err_set(err, RK_EIO, "loop: cannot run %s: %s", exe, strerror(rc));
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (cancel && atomic_load(cancel)) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return rk_err_set(err, RK_ECLOSED, "loop: training cancelled");
        }
        usleep(20000);
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return 0;
}

static void parse(const char *path, rk_loop_result *res)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return;
    json_t *v;
    if ((v = json_object_get(j, "train_rows")) && json_is_integer(v))
        res->train_rows = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(j, "version")) && json_is_integer(v))
        res->version = (uint32_t)json_integer_value(v);
    res->promoted = json_is_true(json_object_get(j, "promoted"));
    if ((v = json_object_get(j, "reason")) && json_is_string(v))
        snprintf(res->reason, sizeof res->reason, "%s", json_string_value(v));
    json_t *va = json_object_get(j, "valid");
    if ((v = json_object_get(va, "auc")) && json_is_number(v))
        res->auc = json_number_value(v);
    if ((v = json_object_get(va, "logloss")) && json_is_number(v))
        res->logloss = json_number_value(v);
    res->ok = res->version != 0;
    json_decref(j);
}

int rk_loop_train(const char *exe, const char *data_dir, const char *config,
                  const rk_loop_opts *o, int64_t as_of_ms, const char *log_path,
                  const atomic_int *cancel, rk_loop_result *res, rk_err *err)
{
    char as_of[32], window[32];
    snprintf(as_of, sizeof as_of, "%lld", (long long)as_of_ms);
    snprintf(window, sizeof window, "%lldms", (long long)o->window_ms);
    memset(res, 0, sizeof *res);
    res->auc = res->logloss = NAN;
    char out_path[4200];
    snprintf(out_path, sizeof out_path, "%s/loop-train.json", data_dir);
    for (int from_log = 1; from_log >= 0; from_log--) {
        char *argv[16 + RK_LOOP_MAX_ARGS];
        size_t k = 0;
        argv[k++] = (char *)"rankd";
        argv[k++] = (char *)"train";
        argv[k++] = (char *)"--data";
        argv[k++] = (char *)data_dir;
        if (config) {
            argv[k++] = (char *)"--config";
            argv[k++] = (char *)config;
        }
        argv[k++] = (char *)"--ranker";
        argv[k++] = (char *)o->kind;
        argv[k++] = (char *)"--name";
        argv[k++] = (char *)o->ranker;
        if (from_log) {
            argv[k++] = (char *)"--from-log";
            argv[k++] = (char *)o->ranker;
            if (as_of_ms) {
                argv[k++] = (char *)"--as-of";
                argv[k++] = as_of;
            }
            if (o->window_ms) {
                argv[k++] = (char *)"--window";
                argv[k++] = window;
            }
        }
        for (size_t i = 0; i < o->nargs; i++) argv[k++] = (char *)o->args[i];
        argv[k++] = (char *)"--json";
        argv[k] = NULL;
        int status = -1;
        int rc = run(exe, argv, out_path, log_path, cancel, &status, err);
        if (rc) return rc;
        if (status == 0) {
            parse(out_path, res);
            res->from_log = from_log;
            if (!res->ok)
                snprintf(res->reason, sizeof res->reason, "rankd train gave no "
                         "readable answer (see the log)");
            return 0;
        }
        snprintf(res->reason, sizeof res->reason, "rankd train %s exited with %d "
                 "(see %s)", from_log ? "--from-log" : "(event log)", status,
                 log_path ? log_path : "its output");
    }
    return 0;
}
