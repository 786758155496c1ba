/*
 * crash_test.c — SIGKILL a writing process at random points, many times,
 * and check after each reopen that:
 *   - the store opens cleanly;
 *   - every batch the writer saw acknowledged is present in full;
 *   - no batch is present in part (a batch is all or nothing);
 *   - sequence numbers stay dense and ordered.
 * The writer is a forked child that reports each acknowledged batch number
 * on a pipe only after rk_store_write returned; the parent kills it after a
 * random delay. Runs under both fsync policies.
 */
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rk_store.h"
#include "test.h"

#define PER_BATCH 50
#define ROUNDS 25

static void child_writer(const char *dir, rk_fsync_policy pol, int start,
                         int fd)
{
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.fsync = pol;
    o.map_size = 256 << 20;
    rk_store *s;
    rk_err err = {0};
    if (rk_store_open(&s, &o, NULL, &err)) _exit(2);
    rk_batch *b;
    if (rk_batch_create(&b, s, 0)) _exit(3);
    char id[32], user[16], item[16];
    for (int n = start;; n++) {
        rk_batch_clear(b);
        for (int k = 0; k < PER_BATCH; k++) {
            snprintf(id, sizeof id, "b%d-%d", n, k);
            snprintf(user, sizeof user, "u%d", (n * 31 + k) % 500);
            snprintf(item, sizeof item, "i%d", (n + k * 17) % 3000);
            rk_event_in e = {.type = "click", .user = user, .item = item,
                             .ts_ms = 1000000 + n, .position = -1, .id = id};
            if (rk_batch_event(b, &e, &err)) _exit(4);
        }
        /* Also mutate entities so their records are rewritten mid-crash. */
        if (rk_batch_hide(b, RK_ENTITY_ITEM, item, n % 2, &err)) _exit(5);
        if (rk_store_write(s, b, NULL, &err)) _exit(6);
        if (write(fd, &n, sizeof n) != sizeof n) _exit(7);
    }
}

/* How many of batch n's events are present. */
static int present(rk_reader *r, int n)
{
    char id[32];
    int c = 0;
    for (int k = 0; k < PER_BATCH; k++) {
        uint64_t seq;
        snprintf(id, sizeof id, "b%d-%d", n, k);
        if (rk_reader_event_by_id(r, id, strlen(id), &seq) == 0) c++;
    }
    return c;
}

typedef struct dense {
    uint64_t expect;
    int ok;
} dense;

static int dense_cb(void *arg, const rk_event *e)
{
    dense *d = arg;
    if (e->seq != d->expect) d->ok = 0;
    d->expect++;
    return 0;
}

static void crash_rounds(rk_fsync_policy pol, const char *tag)
{
    const char *tmp = rk_test_tmpdir(tag);
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tmp);
    unsigned seed = 12345u + (unsigned)pol;
    int next = 0, acked_max = -1;
    long total_acked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_writer(dir, pol, next, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        /* Let it run between ~1 and ~60 ms, then kill it mid-flight. */
        seed = seed * 1103515245u + 12345u;
        usleep(1000 + (seed >> 8) % 60000);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        int n;
        while (read(fds[0], &n, sizeof n) == sizeof n) {
            if (n > acked_max) acked_max = n;
            total_acked++;
        }
        close(fds[0]);
        if (WIFEXITED(st)) {
            fprintf(stderr, "  writer exited with %d before the kill\n",
                    WEXITSTATUS(st));
            CHECK(0);
        }

        /* Reopen and verify. */
        rk_store_opts o;
        rk_store_opts_default(&o);
        o.path = dir;
        o.map_size = 256 << 20;
        rk_store *s;
        rk_err err = {0};
        int rc = rk_store_open(&s, &o, NULL, &err);
        if (rc) fprintf(stderr, "  reopen: %s\n", err.msg);
        CHECK_OK(rc);
        rk_reader *r;
        CHECK_OK(rk_store_reader(s, &r, &err));
        for (int b = 0; b <= acked_max; b++)
            if (present(r, b) != PER_BATCH) {
                fprintf(stderr, "  round %d: acknowledged batch %d has %d of "
                        "%d events\n", round, b, present(r, b), PER_BATCH);
                CHECK(0);
            }
        /* Batches after the last ack: all or nothing. */
        int b = acked_max + 1;
        for (; b < acked_max + 64; b++) {
            int p = present(r, b);
            if (p != 0 && p != PER_BATCH) {
                fprintf(stderr, "  round %d: batch %d is partial (%d)\n",
                        round, b, p);
                CHECK(0);
            }
            if (p == 0) break;
        }
        dense d = {1, 1};
        CHECK_OK(rk_reader_scan_events(r, 0, dense_cb, &d));
        CHECK(d.ok);
        rk_reader_close(r);
        rk_store_close(s);
        /* Next writer starts after whatever made it in. */
        next = b;
        if (acked_max < next - 1) acked_max = next - 1;
    }
    printf("# %s: %d kills, %ld acknowledged batches verified\n", tag, ROUNDS,
           total_acked);
    CHECK(total_acked > 0);
    rk_test_rmdir(dir);
}

/* Child: writes until the file size limit makes a commit fail, reports
 * each acknowledged batch and finally the error code (as -code - 1000). */
static void child_until_efbig(const char *dir, int fd)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4 << 20, 4 << 20};
    if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(8);
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.fsync = RK_FSYNC_ALWAYS;
    o.map_size = 256 << 20;
    rk_store *s;
    rk_err err = {0};
    if (rk_store_open(&s, &o, NULL, &err)) _exit(2);
    rk_batch *b;
    if (rk_batch_create(&b, s, 0)) _exit(3);
    char id[32], user[24];
    for (int n = 0; n < 100000; n++) {
        rk_batch_clear(b);
        for (int k = 0; k < PER_BATCH; k++) {
            snprintf(id, sizeof id, "b%d-%d", n, k);
            snprintf(user, sizeof user, "user-%d-%d", n, k);
            rk_event_in e = {.type = "click", .user = user, .item = "i",
                             .ts_ms = 1, .position = -1, .id = id};
            if (rk_batch_event(b, &e, &err)) _exit(4);
        }
        int rc = rk_store_write(s, b, NULL, &err);
        if (rc) {
            int code = -1000 + rc;
            if (write(fd, &code, sizeof code) != sizeof code) _exit(7);
            /* The store stays usable for reads and refuses nothing else
             * silently: a second attempt fails the same way. */
            int rc2 = rk_store_write(s, b, NULL, &err);
            code = -1000 + rc2;
            if (write(fd, &code, sizeof code) != sizeof code) _exit(7);
            break;
        }
        if (write(fd, &n, sizeof n) != sizeof n) _exit(7);
    }
    rk_batch_destroy(b);
    rk_store_close(s);
    _exit(0);
}

TEST(io_failure_file_size_limit)
{
    const char *tmp = rk_test_tmpdir("crash-efbig");
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tmp);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_until_efbig(dir, fds[1]);
    }
    close(fds[1]);
    int n, acked = -1, codes[2] = {0, 0}, ncodes = 0;
    while (read(fds[0], &n, sizeof n) == sizeof n) {
        if (n >= 0) acked = n;
        else if (ncodes < 2) codes[ncodes++] = n + 1000;
    }
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(ncodes, 2);
    if (codes[0] != RK_EIO)
        fprintf(stderr, "  first failure was %s\n", rk_errname(codes[0]));
    CHECK_EQ_INT(codes[0], RK_EIO);
    CHECK(codes[1] != 0);
    CHECK(acked > 0);

    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 256 << 20;
    rk_store *s;
    rk_err err = {0};
    CHECK_OK(rk_store_open(&s, &o, NULL, &err));
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    for (int b = 0; b <= acked; b++) CHECK_EQ_INT(present(r, b), PER_BATCH);
    CHECK_EQ_INT(present(r, acked + 1), 0);
    rk_store_stats ss;
    CHECK_OK(rk_reader_stats(r, &ss));
    CHECK_EQ_INT(ss.events, (acked + 1) * PER_BATCH);
    rk_reader_close(r);
    rk_store_close(s);
    printf("# efbig: failed cleanly after %d acknowledged batches\n", acked + 1);
    rk_test_rmdir(dir);
}

TEST(sigkill_everysec) { crash_rounds(RK_FSYNC_EVERYSEC, "crash-everysec"); }
TEST(sigkill_always) { crash_rounds(RK_FSYNC_ALWAYS, "crash-always"); }

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, sigkill_everysec, sigkill_always,
                 io_failure_file_size_limit);
}
