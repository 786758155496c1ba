/*
 * registry.c — model versions, their status, promotion, rollback, the
 * promotion gate and publishing with it (layout in rk_train.h and
 * docs/models.md).
 *
 * The state of a model name is its version directories plus
 * registry.json: the promotion stack (versions in the order they became
 * current, the current one last), the versions rolled back, and a short
 * history. registry.json is replaced atomically and is the commit point
 * of every promotion and rollback; the `current` and `previous` symlinks
 * that servers follow are derived from it afterwards. A writer killed
 * between the two leaves links that lag the state by one step, and the
 * next writer, which always starts by re-deriving the links under the
 * lock, finishes the job (roll forward). Readers take no lock: they read
 * registry.json, which is always complete, and ignore entries whose
 * version directory is gone.
 *
 * Rollback pops the stack, so two rollbacks go two steps back; a rolled
 * back version leaves the stack and only an explicit promote brings it
 * back. Without registry.json (a directory from before the registry) the
 * stack is [previous, current] read from the links.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_int.h"

#define PATH_LEN 4096
#define STATE_FILE "registry.json"
#define STATE_MAX_BYTES (16u << 20)
#define REASON_MAX 4096

struct rk_registry {
    char *dir;
    rk_registry_opts o;
};

/* ---- registry.json ---------------------------------------------------------- */

void rk__reg_state_free(rk__reg_state *st)
{
    for (size_t i = 0; i < st->nhist; i++) rk_free(st->hist[i].reason);
    rk_free(st->hist);
    rk_free(st->stack);
    rk_free(st->rolled);
    memset(st, 0, sizeof *st);
}

static int corrupt(rk_err *err, const char *what)
{
    return rk_err_set(err, RK_ECORRUPT, "registry.json: %s", what);
}

/* An array of distinct version numbers. */
static int parse_versions(const json_t *a, const char *key, uint32_t **out,
                          size_t *n, rk_err *err)
{
    if (!json_is_array(a) || json_array_size(a) > RK__REG_MAX_ENTRIES)
        return rk_err_set(err, RK_ECORRUPT, "registry.json: \"%s\" must be "
                          "an array of versions", key);
    size_t k = json_array_size(a);
    if (k && !(*out = rk_malloc(k * sizeof **out)))
        return rk_err_set(err, RK_ENOMEM, "registry.json: out of memory");
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 999999999)
            return rk_err_set(err, RK_ECORRUPT, "registry.json: %s[%zu] is "
                              "not a version number", key, i);
        uint32_t x = (uint32_t)json_integer_value(v);
        /* Distinct, so that the stack reads as an order of promotions. A
         * quadratic check is fine: the registry keeps it small. */
        for (size_t j = 0; j < *n; j++)
            if ((*out)[j] == x)
                return rk_err_set(err, RK_ECORRUPT, "registry.json: version "
                                  "%u twice in %s", x, key);
        (*out)[(*n)++] = x;
    }
    return 0;
}

static int parse_event(rk__reg_event *e, const json_t *o, rk_err *err)
{
    json_t *ts = json_object_get(o, "ts"), *ac = json_object_get(o, "action");
    json_t *ve = json_object_get(o, "version"), *fr = json_object_get(o, "from");
    json_t *pa = json_object_get(o, "passed"), *re = json_object_get(o, "reason");
    e->passed = -1;
    if (!json_is_object(o) || !json_is_string(ts) ||
        rk_parse_time_ms(json_string_value(ts), json_string_length(ts),
                         &e->ts_ms) ||
        e->ts_ms < rk_civil_ms(0, 1, 1) || e->ts_ms >= rk_civil_ms(10000, 1, 1) ||
        !json_is_string(ac) || json_string_length(ac) == 0 ||
        json_string_length(ac) >= sizeof e->action ||
        strspn(json_string_value(ac), "abcdefghijklmnopqrstuvwxyz_") !=
            json_string_length(ac) ||
        !json_is_integer(ve) || json_integer_value(ve) < 1 ||
        json_integer_value(ve) > 999999999 ||
        (fr && (!json_is_integer(fr) || json_integer_value(fr) < 0 ||
                json_integer_value(fr) > 999999999)) ||
        (pa && !json_is_boolean(pa)) ||
        (re && (!json_is_string(re) || json_string_length(re) > REASON_MAX ||
                strlen(json_string_value(re)) != json_string_length(re))))
        return corrupt(err, "bad history entry");
    memcpy(e->action, json_string_value(ac), json_string_length(ac) + 1);
    e->version = (uint32_t)json_integer_value(ve);
    e->from = fr ? (uint32_t)json_integer_value(fr) : 0;
    if (pa) e->passed = json_is_true(pa);
    if (re && !(e->reason = rk_strdup(json_string_value(re))))
        return rk_err_set(err, RK_ENOMEM, "registry.json: out of memory");
    return 0;
}

int rk__reg_state_parse(rk__reg_state *st, const char *text, size_t len,
                        rk_err *err)
{
    memset(st, 0, sizeof *st);
    json_t *o;
    int rc = rk__train_json_load(text, len, "registry.json", &o, err);
    if (rc) return rc;
    json_t *v = json_object_get(o, "rankd_registry");
    json_t *h = json_object_get(o, "history");
    if (!json_is_object(o) || !json_is_integer(v)) {
        rc = corrupt(err, "not a rankd registry state");
    } else if (json_integer_value(v) != 1) {
        rc = rk_err_set(err, RK_EVERSION, "registry.json: rankd_registry %lld;"
                        " this build reads 1", (long long)json_integer_value(v));
    } else if (!(rc = parse_versions(json_object_get(o, "stack"), "stack",
                                     &st->stack, &st->nstack, err)) &&
               !(rc = parse_versions(json_object_get(o, "rolled_back"),
                                     "rolled_back", &st->rolled, &st->nrolled,
                                     err))) {
        if (h && (!json_is_array(h) || json_array_size(h) > RK__REG_MAX_ENTRIES))
            rc = corrupt(err, "\"history\" must be an array");
        size_t n = json_array_size(h);
        if (!rc && n && !(st->hist = rk_calloc(n, sizeof *st->hist)))
            rc = rk_err_set(err, RK_ENOMEM, "registry.json: out of memory");
        for (size_t i = 0; i < n && !rc; i++) {
            rc = parse_event(&st->hist[i], json_array_get(h, i), err);
            st->nhist++;
        }
    }
    json_decref(o);
    if (rc) rk__reg_state_free(st);
    return rc;
}

int rk__reg_state_json(const rk__reg_state *st, rk_buf *b)
{
    int rc = rk_buf_puts(b, "{\"rankd_registry\":1,\"stack\":[");
    for (size_t i = 0; i < st->nstack && !rc; i++)
        rc = rk_buf_printf(b, "%s%u", i ? "," : "", st->stack[i]);
    rc = rc ? rc : rk_buf_puts(b, "],\"rolled_back\":[");
    for (size_t i = 0; i < st->nrolled && !rc; i++)
        rc = rk_buf_printf(b, "%s%u", i ? "," : "", st->rolled[i]);
    rc = rc ? rc : rk_buf_puts(b, "],\"history\":[");
    for (size_t i = 0; i < st->nhist && !rc; i++) {
        const rk__reg_event *e = &st->hist[i];
        char t[32];
        rk_format_time_ms(e->ts_ms, t);
        rc = rk_buf_printf(b, "%s\n{\"ts\":\"%s\",\"action\":\"%s\","
                              "\"version\":%u", i ? "," : "", t, e->action,
                           e->version);
        if (e->from) rc = rc ? rc : rk_buf_printf(b, ",\"from\":%u", e->from);
        if (e->passed >= 0)
            rc = rc ? rc : rk_buf_printf(b, ",\"passed\":%s",
                                         e->passed ? "true" : "false");
        if (e->reason) {
            rc = rc ? rc : rk_buf_puts(b, ",\"reason\":");
            rc = rc ? rc : rk_buf_put_json_str(b, e->reason, strlen(e->reason));
        }
        rc = rc ? rc : rk_buf_putc(b, '}');
    }
    return rc ? rc : rk_buf_puts(b, "]}\n");
}

/* ---- files and links ------------------------------------------------------------ */

static int path2(char *out, const char *a, const char *b, rk_err *err)
{
    if (snprintf(out, PATH_LEN, "%s/%s", a, b) >= PATH_LEN)
        return rk_err_set(err, RK_EINVAL, "path too long: %s/%s", a, b);
    return 0;
}

static int version_exists(const char *name_dir, uint32_t v)
{
    char p[PATH_LEN];
    struct stat st;
    snprintf(p, sizeof p, "%s/%u", name_dir, v);
    return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The version a link points at, 0 when absent or not a version. */
static uint32_t link_version(const char *name_dir, const char *link)
{
    char p[PATH_LEN], t[64];
    snprintf(p, sizeof p, "%s/%s", name_dir, link);
    ssize_t n = readlink(p, t, sizeof t - 1);
    if (n <= 0) return 0;
    t[n] = '\0';
    return rk__train_version_of(t);
}

static int contains(const uint32_t *a, size_t n, uint32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

static void remove_value(uint32_t *a, size_t *n, uint32_t v)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (a[i] != v) a[k++] = a[i];
    *n = k;
}

/* Loads the state; without registry.json, derives it from the links. */
static int state_load(const char *name_dir, rk__reg_state *st, rk_err *err)
{
    memset(st, 0, sizeof *st);
    char p[PATH_LEN], *txt;
    size_t n;
    int rc = path2(p, name_dir, STATE_FILE, err);
    if (rc) return rc;
    rc = rk__train_read_file(p, STATE_MAX_BYTES, &txt, &n, err);
    if (rc == RK_ENOTFOUND) {
        uint32_t cur = link_version(name_dir, "current");
        uint32_t prev = link_version(name_dir, "previous");
        if (!cur) return 0;
        if (!(st->stack = rk_malloc(2 * sizeof *st->stack)))
            return rk_err_set(err, RK_ENOMEM, "registry: out of memory");
        if (prev && prev != cur) st->stack[st->nstack++] = prev;
        st->stack[st->nstack++] = cur;
        return 0;
    }
    if (rc) return rc;
    rc = rk__reg_state_parse(st, txt, n, err);
    rk_free(txt);
    if (rc) rk_err_prefix(err, "%s: ", name_dir);
    return rc;
}

/* Current and previous: the top two stack entries whose directory
 * exists. */
static void effective(const char *name_dir, const rk__reg_state *st,
                      uint32_t *cur, uint32_t *prev)
{
    *cur = *prev = 0;
    for (size_t i = st->nstack; i-- > 0;) {
        if (!version_exists(name_dir, st->stack[i])) continue;
        if (!*cur) {
            *cur = st->stack[i];
        } else {
            *prev = st->stack[i];
            return;
        }
    }
}

static int add_event(rk__reg_state *st, const char *action, uint32_t version,
                     uint32_t from, int passed, const char *reason)
{
    if (st->nhist >= RK__REG_HISTORY_MAX) {
        /* Oldest first: drop from the front. */
        size_t drop = st->nhist - RK__REG_HISTORY_MAX + 1;
        for (size_t i = 0; i < drop; i++) rk_free(st->hist[i].reason);
        memmove(st->hist, st->hist + drop,
                (st->nhist - drop) * sizeof *st->hist);
        st->nhist -= drop;
    }
    rk__reg_event *h = rk_realloc(st->hist, (st->nhist + 1) * sizeof *h);
    if (!h) return RK_ENOMEM;
    st->hist = h;
    rk__reg_event *e = &h[st->nhist];
    memset(e, 0, sizeof *e);
    e->ts_ms = rk_clock_wall_ms();
    snprintf(e->action, sizeof e->action, "%s", action);
    e->version = version;
    e->from = from;
    e->passed = passed;
    if (reason && !(e->reason = rk_strndup(reason, strnlen(reason, REASON_MAX))))
        return RK_ENOMEM;
    st->nhist++;
    return 0;
}

/* Writes registry.json atomically: temporary file, fsync, rename,
 * directory fsync. Entries of versions that no longer exist are dropped
 * first so the file stays as small as the directory. */
static int state_commit(const char *name_dir, rk__reg_state *st, rk_err *err)
{
    size_t k = 0;
    for (size_t i = 0; i < st->nstack; i++)
        if (version_exists(name_dir, st->stack[i])) st->stack[k++] = st->stack[i];
    st->nstack = k;
    k = 0;
    for (size_t i = 0; i < st->nrolled; i++)
        if (version_exists(name_dir, st->rolled[i]))
            st->rolled[k++] = st->rolled[i];
    st->nrolled = k;
    rk_buf b;
    rk_buf_init(&b, STATE_MAX_BYTES);
    int rc = rk__reg_state_json(st, &b);
    if (rc) {
        rk_buf_free(&b);
        return rk_err_set(err, rc, "registry.json: %s", rk_strerror(rc));
    }
    char tmp[PATH_LEN], fin[PATH_LEN];
    if (!(rc = path2(tmp, name_dir, "." STATE_FILE ".tmp", err)) &&
        !(rc = path2(fin, name_dir, STATE_FILE, err)) &&
        !(rc = rk__train_write_file(name_dir, "." STATE_FILE ".tmp", b.data,
                                    b.len, err))) {
        if (rename(tmp, fin) != 0)
            rc = rk_err_set(err, RK_EIO, "cannot rename %s: %s", tmp,
                            strerror(errno));
        else
            rc = rk__train_fsync_path(name_dir, 1, err);
    }
    rk_buf_free(&b);
    return rc;
}

/* Points link at version (0: removes it) unless it already does, by
 * renaming a fresh symlink over it. *changed is set when it did. */
static int set_link(const char *name_dir, const char *link, uint32_t version,
                    int *changed, rk_err *err)
{
    char p[PATH_LEN], tmp[PATH_LEN], target[16];
    snprintf(p, sizeof p, "%s/%s", name_dir, link);
    if (link_version(name_dir, link) == version) {
        struct stat st;
        if (version || lstat(p, &st) != 0) return 0;
    }
    *changed = 1;
    if (!version) {
        if (unlink(p) != 0 && errno != ENOENT)
            return rk_err_set(err, RK_EIO, "cannot remove %s: %s", p,
                              strerror(errno));
        return 0;
    }
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", name_dir, link);
    snprintf(target, sizeof target, "%u", version);
    unlink(tmp);
    if (symlink(target, tmp) != 0)
        return rk_err_set(err, RK_EIO, "cannot create %s: %s", tmp,
                          strerror(errno));
    if (rename(tmp, p) != 0)
        return rk_err_set(err, RK_EIO, "cannot rename %s: %s", tmp,
                          strerror(errno));
    return 0;
}

/* Makes the links say what the state says. `previous` goes first: a
 * crash in between leaves `current` on the old version, which is what a
 * reader should keep seeing until the whole switch is durable. */
static int links_sync(const char *name_dir, const rk__reg_state *st,
                      rk_err *err)
{
    uint32_t cur, prev;
    int changed = 0;
    effective(name_dir, st, &cur, &prev);
    int rc = set_link(name_dir, "previous", prev, &changed, err);
    rc = rc ? rc : set_link(name_dir, "current", cur, &changed, err);
    if (!rc && changed) rc = rk__train_fsync_path(name_dir, 1, err);
    return rc;
}

/* Removes what killed writers left: temporary directories and links,
 * half-deleted versions. Only safe under the lock. */
static void cleanup_locked(const char *name_dir)
{
    DIR *d = opendir(name_dir);
    if (!d) return;
    struct dirent *de;
    char p[PATH_LEN];
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strncmp(n, ".tmp-", 5) == 0 || strncmp(n, ".del-", 5) == 0 ||
            strcmp(n, ".current.tmp") == 0 || strcmp(n, ".previous.tmp") == 0 ||
            strcmp(n, "." STATE_FILE ".tmp") == 0) {
            snprintf(p, sizeof p, "%s/%s", name_dir, n);
            rk__train_rm_rf(p);
        }
    }
    closedir(d);
}

int rk__reg_lock(const char *name_dir, int *fd, rk_err *err)
{
    char p[PATH_LEN];
    int rc = path2(p, name_dir, ".lock", err);
    if (rc) return rc;
    int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return rk_err_set(err, RK_EIO, "cannot open %s: %s", p, strerror(errno));
    while (flock(f, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        rc = rk_err_set(err, RK_EIO, "cannot lock %s: %s", p, strerror(errno));
        close(f);
        return rc;
    }
    /* Every writer starts by finishing what a killed one left. */
    cleanup_locked(name_dir);
    rk__reg_state st;
    if (!(rc = state_load(name_dir, &st, err))) {
        rc = links_sync(name_dir, &st, err);
        rk__reg_state_free(&st);
    }
    if (rc) {
        close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

void rk__reg_unlock(int fd)
{
    if (fd >= 0) close(fd); /* closing releases the flock */
}

/* Version directories of name_dir, newest first (rk_malloc'd). */
static int list_versions(const char *name_dir, uint32_t **out, size_t *n,
                         rk_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(name_dir);
    if (!d)
        return rk_err_set(err, errno == ENOENT ? RK_ENOTFOUND : RK_EIO,
                          "cannot read %s: %s", name_dir, strerror(errno));
    RK_VEC(uint32_t) v = {0};
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL && !rc) {
        uint32_t x = rk__train_version_of(de->d_name);
        if (x && version_exists(name_dir, x)) rc = rk_vec_push(&v, x);
    }
    closedir(d);
    if (rc) {
        rk_vec_free(&v);
        return rk_err_set(err, rc, "%s: out of memory", name_dir);
    }
    /* Insertion sort, newest first: a name has a handful of versions. */
    for (size_t i = 1; i < v.n; i++)
        for (size_t j = i; j > 0 && v.v[j - 1] < v.v[j]; j--) {
            uint32_t t = v.v[j];
            v.v[j] = v.v[j - 1];
            v.v[j - 1] = t;
        }
    *out = v.v;
    *n = v.n;
    return 0;
}

int rk__reg_new_version(const char *name_dir, rk__version_writer write,
                        void *arg, uint32_t *version, rk_err *err)
{
    uint32_t *vers, next = 1;
    size_t nv;
    rk__reg_state st;
    int rc = list_versions(name_dir, &vers, &nv, err);
    if (rc) return rc;
    if (nv) next = vers[0] + 1;
    rk_free(vers);
    /* Numbers mentioned by the state are never reused either, so a
     * version deleted by hand cannot come back as a different model. */
    if ((rc = state_load(name_dir, &st, err))) return rc;
    for (size_t i = 0; i < st.nstack; i++)
        if (st.stack[i] >= next) next = st.stack[i] + 1;
    for (size_t i = 0; i < st.nrolled; i++)
        if (st.rolled[i] >= next) next = st.rolled[i] + 1;
    for (size_t i = 0; i < st.nhist; i++)
        if (st.hist[i].version >= next) next = st.hist[i].version + 1;
    rk__reg_state_free(&st);
    if (next > 999999999)
        return rk_err_set(err, RK_ELIMIT, "%s: out of version numbers",
                          name_dir);
    char tmp[PATH_LEN], fin[PATH_LEN];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%u", name_dir, next);
    snprintf(fin, sizeof fin, "%s/%u", name_dir, next);
    if (rk__train_rm_rf(tmp) != 0)
        return rk_err_set(err, RK_EIO, "cannot remove %s: %s", tmp,
                          strerror(errno));
    if (mkdir(tmp, 0755) != 0)
        return rk_err_set(err, RK_EIO, "cannot create directory %s: %s", tmp,
                          strerror(errno));
    if ((rc = write(arg, tmp, next, err)) ||
        (rc = rk__train_fsync_path(tmp, 1, err))) {
        rk__train_rm_rf(tmp);
        return rc;
    }
    if (rename(tmp, fin) != 0) {
        rc = rk_err_set(err, RK_EIO, "cannot rename %s: %s", tmp,
                        strerror(errno));
        rk__train_rm_rf(tmp);
        return rc;
    }
    if ((rc = rk__train_fsync_path(name_dir, 1, err))) return rc;
    *version = next;
    return 0;
}

/* Appends one event to the history and commits it. */
static int record_locked(const char *name_dir, const char *action,
                         uint32_t version, uint32_t from, int passed,
                         const char *reason, rk_err *err)
{
    rk__reg_state st;
    int rc = state_load(name_dir, &st, err);
    if (rc) return rc;
    if ((rc = add_event(&st, action, version, from, passed, reason)))
        rc = rk_err_set(err, rc, "registry: out of memory");
    else
        rc = state_commit(name_dir, &st, err);
    rk__reg_state_free(&st);
    return rc;
}

int rk__reg_promote_locked(const char *name_dir, uint32_t version,
                           const char *action, const char *reason,
                           rk_err *err)
{
    if (!version_exists(name_dir, version))
        return rk_err_set(err, RK_ENOTFOUND, "%s: no version %u", name_dir,
                          version);
    rk__reg_state st;
    int rc = state_load(name_dir, &st, err);
    if (rc) return rc;
    uint32_t cur, prev;
    effective(name_dir, &st, &cur, &prev);
    if (cur == version) {
        rk__reg_state_free(&st);
        return 0;
    }
    remove_value(st.stack, &st.nstack, version);
    remove_value(st.rolled, &st.nrolled, version);
    uint32_t *s = rk_realloc(st.stack, (st.nstack + 1) * sizeof *s);
    if (!s) {
        rk__reg_state_free(&st);
        return rk_err_set(err, RK_ENOMEM, "registry: out of memory");
    }
    st.stack = s;
    s[st.nstack++] = version;
    if ((rc = add_event(&st, action, version, cur, -1, reason)))
        rc = rk_err_set(err, rc, "registry: out of memory");
    if (!rc && !(rc = state_commit(name_dir, &st, err)))
        rc = links_sync(name_dir, &st, err);
    rk__reg_state_free(&st);
    return rc;
}

static int rollback_locked(const char *name_dir, const char *name,
                           uint32_t *now, rk_err *err)
{
    rk__reg_state st;
    int rc = state_load(name_dir, &st, err);
    if (rc) return rc;
    uint32_t cur, prev;
    effective(name_dir, &st, &cur, &prev);
    if (!cur || !prev) {
        rk__reg_state_free(&st);
        return cur ? rk_err_set(err, RK_ESTATE, "model '%s': no earlier "
                                "version to roll back to (current is %u; "
                                "promote one explicitly)", name, cur)
                   : rk_err_set(err, RK_ESTATE, "model '%s': no current "
                                "version", name);
    }
    /* Pop everything above prev (the current one and any entries whose
     * directory is gone). */
    while (st.nstack > 0 && st.stack[st.nstack - 1] != prev) st.nstack--;
    uint32_t *r = rk_realloc(st.rolled, (st.nrolled + 1) * sizeof *r);
    if (!r) {
        rk__reg_state_free(&st);
        return rk_err_set(err, RK_ENOMEM, "registry: out of memory");
    }
    st.rolled = r;
    remove_value(st.rolled, &st.nrolled, cur);
    st.rolled[st.nrolled++] = cur;
    if ((rc = add_event(&st, "rollback", prev, cur, -1, NULL)))
        rc = rk_err_set(err, rc, "registry: out of memory");
    if (!rc && !(rc = state_commit(name_dir, &st, err)))
        rc = links_sync(name_dir, &st, err);
    rk__reg_state_free(&st);
    if (!rc && now) *now = prev;
    return rc;
}

int rk__reg_gc_locked(const char *name_dir, unsigned keep, rk_err *err)
{
    uint32_t *vers;
    size_t nv;
    int rc = list_versions(name_dir, &vers, &nv, err);
    if (rc) return rc;
    rk__reg_state st;
    if ((rc = state_load(name_dir, &st, err))) {
        rk_free(vers);
        return rc;
    }
    uint32_t cur, prev;
    effective(name_dir, &st, &cur, &prev);
    int removed = 0;
    for (size_t i = keep; i < nv && !rc; i++) {
        if (vers[i] == cur || vers[i] == prev) continue;
        /* Renamed away first, so no half-deleted directory ever sits under
         * a version number; the next writer sweeps a leftover .del-. */
        char p[PATH_LEN], d[PATH_LEN];
        snprintf(p, sizeof p, "%s/%u", name_dir, vers[i]);
        snprintf(d, sizeof d, "%s/.del-%u", name_dir, vers[i]);
        rk__train_rm_rf(d);
        if (rename(p, d) != 0)
            rc = rk_err_set(err, RK_EIO, "cannot rename %s: %s", p,
                            strerror(errno));
        else if (rk__train_rm_rf(d) != 0)
            rc = rk_err_set(err, RK_EIO, "cannot remove %s: %s", d,
                            strerror(errno));
        removed++;
    }
    if (!rc && removed) rc = state_commit(name_dir, &st, err);
    rk__reg_state_free(&st);
    rk_free(vers);
    return rc;
}

/* ---- the gate ------------------------------------------------------------------- */

rk_metric_dir rk_metric_direction(const char *name)
{
    static const char *const higher[] = {"auc", "gauc", "pr_auc", "ndcg",
                                         "map", "recall", "hit", "precision",
                                         NULL};
    static const char *const lower[] = {"logloss", "ne", "rmse", "mae", NULL};
    for (int i = 0; higher[i]; i++) {
        size_t n = strlen(higher[i]);
        /* "ndcg@10", "map@5", "recall@20" share their family's direction;
         * "auc" must not match "aucpr" style names by accident. */
        if (strncmp(name, higher[i], n) == 0 &&
            (name[n] == '\0' || name[n] == '@' || (i >= 3 && name[n] == '_')))
            return RK_METRIC_HIGHER;
    }
    for (int i = 0; lower[i]; i++)
        if (strcmp(name, lower[i]) == 0) return RK_METRIC_LOWER;
    if (strcmp(name, "calibration") == 0) return RK_METRIC_TARGET_ONE;
    return RK_METRIC_AUTO;
}

static const rk_metric *find_metric(const rk_metric_set *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (s->metrics[i].name && strcmp(s->metrics[i].name, name) == 0)
            return &s->metrics[i];
    return NULL;
}

/* Appends to the reason, marking a cut with "...". */
static void say(char *r, const char *fmt, ...) RK_PRINTF(2, 3);
static void say(char *r, const char *fmt, ...)
{
    size_t n = strlen(r);
    if (n + 4 >= RK_GATE_REASON_MAX) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(r + n, RK_GATE_REASON_MAX - n, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= RK_GATE_REASON_MAX - n)
        memcpy(r + RK_GATE_REASON_MAX - 4, "...", 4);
}

static void fmt_window(char *out, size_t n, int64_t from, int64_t to)
{
    char a[32], b[32];
    rk_format_time_ms(from, a);
    rk_format_time_ms(to, b);
    snprintf(out, n, "[%s, %s)", a, b);
}

/* One rule: 1 passed, 0 failed, -1 skipped; the verdict goes into r. */
static int one_rule(const rk_gate_rule *ru, const rk_metric_set *cand,
                    const rk_metric_set *cur, char *r)
{
    const rk_metric *c = find_metric(cand, ru->metric);
    const rk_metric *u = find_metric(cur, ru->metric);
    rk_metric_dir dir = ru->dir ? ru->dir : rk_metric_direction(ru->metric);
    if (!c || isnan(c->value)) {
        say(r, "; %s: candidate has no value%s", ru->metric,
            ru->required ? "" : " (skipped)");
        return ru->required ? 0 : -1;
    }
    if (!u || isnan(u->value)) {
        say(r, "; %s: current has no value (skipped)", ru->metric);
        return -1;
    }
    double loss = dir == RK_METRIC_HIGHER ? u->value - c->value
                : dir == RK_METRIC_LOWER ? c->value - u->value
                : fabs(c->value - 1) - fabs(u->value - 1);
    double allowed = ru->relative ? ru->max_loss * fabs(u->value) : ru->max_loss;
    /* A hair of slack so that an equal metric recomputed in another order
     * never fails a zero tolerance. */
    int pass = loss <= allowed + 1e-12;
    const char *better = dir == RK_METRIC_HIGHER ? "higher is better"
                       : dir == RK_METRIC_LOWER ? "lower is better"
                                                : "closer to 1 is better";
    if (loss <= 0)
        say(r, "; %s %.6g vs %.6g: not worse (%s)", ru->metric, c->value,
            u->value, better);
    else
        say(r, "; %s %.6g vs %.6g: worse by %.6g, %s %.6g (%s)", ru->metric,
            c->value, u->value, loss, pass ? "within" : "over the allowed",
            allowed, better);
    return pass;
}

int rk_registry_gate(const rk_metric_set *cand, const rk_metric_set *cur,
                     const rk_gate_opts *o, rk_gate_decision *out, rk_err *err)
{
    static const rk_gate_opts dflt = {0};
    if (!o) o = &dflt;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < o->nrules; i++) {
        const rk_gate_rule *ru = &o->rules[i];
        rk_metric_dir d = ru->dir ? ru->dir
                        : ru->metric ? rk_metric_direction(ru->metric)
                                     : RK_METRIC_AUTO;
        if (!ru->metric || !*ru->metric)
            return rk_err_set(err, RK_EINVAL, "gate rule %zu: no metric", i);
        if (d < RK_METRIC_HIGHER || d > RK_METRIC_TARGET_ONE)
            return rk_err_set(err, RK_EINVAL, "gate rule '%s': unknown "
                              "direction; say whether higher or lower is "
                              "better", ru->metric);
        if (!(ru->max_loss >= 0) || !isfinite(ru->max_loss))
            return rk_err_set(err, RK_EINVAL, "gate rule '%s': max_loss must "
                              "be a number >= 0", ru->metric);
    }
    char *r = out->reason;
    if (!o->allow_window_mismatch &&
        (cand->valid_from_ms || cand->valid_to_ms) &&
        (cur->valid_from_ms || cur->valid_to_ms) &&
        (cand->valid_from_ms != cur->valid_from_ms ||
         cand->valid_to_ms != cur->valid_to_ms)) {
        char a[80], b[80];
        fmt_window(a, sizeof a, cand->valid_from_ms, cand->valid_to_ms);
        fmt_window(b, sizeof b, cur->valid_from_ms, cur->valid_to_ms);
        say(r, "gate failed: validation windows differ: candidate %s, "
               "current %s; evaluate the current model on the candidate's "
               "window", a, b);
        return 0;
    }
    int failed = 0, compared = 0;
    if (o->nrules) {
        for (size_t i = 0; i < o->nrules; i++) {
            int v = one_rule(&o->rules[i], cand, cur, r);
            if (v == 0) failed++;
            if (v >= 0) compared++;
        }
    } else {
        /* Default: every metric both sides have whose direction is known. */
        for (size_t i = 0; i < cand->n; i++) {
            const char *name = cand->metrics[i].name;
            if (!name || !rk_metric_direction(name) || !find_metric(cur, name))
                continue;
            rk_gate_rule ru = {name, RK_METRIC_AUTO, 0.001, 0, 0};
            int v = one_rule(&ru, cand, cur, r);
            if (v == 0) failed++;
            if (v >= 0) compared++;
        }
    }
    /* A gate that compared nothing has no evidence the candidate is not
     * worse: it fails, and an operator can still promote by hand. */
    char verdict[96];
    if (failed) snprintf(verdict, sizeof verdict, "gate failed (%d of %d "
                         "metrics worse than allowed)", failed, compared);
    else if (!compared) snprintf(verdict, sizeof verdict, "gate failed: no "
                                 "metric to compare");
    else snprintf(verdict, sizeof verdict, "gate passed (%d metric%s)",
                  compared, compared == 1 ? "" : "s");
    out->pass = !failed && compared > 0;
    char rest[RK_GATE_REASON_MAX];
    memcpy(rest, out->reason, sizeof rest);
    out->reason[0] = '\0';
    say(out->reason, "%s%s", verdict, rest);
    return 0;
}

/* ---- the handle and listing --------------------------------------------------------- */

int rk_registry_open(rk_registry **out, const char *models_dir,
                     const rk_registry_opts *o, rk_err *err)
{
    *out = NULL;
    if (!models_dir || !*models_dir || strlen(models_dir) > PATH_LEN - 512)
        return rk_err_set(err, RK_EINVAL, "registry: bad models directory");
    int rc = rk_mkdir_p(models_dir, err);
    if (rc) return rc;
    rk_registry *r = rk_calloc(1, sizeof *r);
    if (!r || !(r->dir = rk_strdup(models_dir))) {
        rk_free(r);
        return rk_err_set(err, RK_ENOMEM, "registry: out of memory");
    }
    if (o) r->o = *o;
    if (r->o.keep == 0) r->o.keep = 5;
    *out = r;
    return 0;
}

void rk_registry_close(rk_registry *r)
{
    if (!r) return;
    rk_free(r->dir);
    rk_free(r);
}

const char *rk_registry_dir(const rk_registry *r) { return r->dir; }

const char *rk_version_status_name(rk_version_status s)
{
    switch (s) {
    case RK_VERSION_CANDIDATE: return "candidate";
    case RK_VERSION_CURRENT: return "current";
    case RK_VERSION_PREVIOUS: return "previous";
    case RK_VERSION_RETIRED: return "retired";
    case RK_VERSION_ROLLED_BACK: return "rolled_back";
    }
    return "unknown";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void rk_registry_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++) rk_free(names[i]);
    rk_free(names);
}

int rk_registry_names(rk_registry *r, char ***names, size_t *n, rk_err *err)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(r->dir);
    if (!d)
        return rk_err_set(err, RK_EIO, "cannot read %s: %s", r->dir,
                          strerror(errno));
    RK_VEC(char *) v = {0};
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL && !rc) {
        char p[PATH_LEN];
        struct stat st;
        if (rk__train_check_name(de->d_name, NULL)) continue;
        snprintf(p, sizeof p, "%s/%s", r->dir, de->d_name);
        if (lstat(p, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        char *s = rk_strdup(de->d_name);
        if (!s || rk_vec_push(&v, s)) {
            rk_free(s);
            rc = RK_ENOMEM;
        }
    }
    closedir(d);
    if (rc) {
        rk_registry_names_free(v.v, v.n);
        return rk_err_set(err, rc, "registry: out of memory");
    }
    if (v.n) qsort(v.v, v.n, sizeof *v.v, cmp_str);
    *names = v.v;
    *n = v.n;
    return 0;
}

/* name's directory, RK_ENOTFOUND listing the names that exist. */
static int name_dir_of(rk_registry *r, const char *name, char *out,
                       rk_err *err)
{
    int rc = rk__train_check_name(name, err);
    if (rc) return rc;
    snprintf(out, PATH_LEN, "%s/%s", r->dir, name);
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    char **names;
    size_t n;
    char list[400] = "";
    if (rk_registry_names(r, &names, &n, NULL) == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(list);
            if (l + strlen(names[i]) + 8 >= sizeof list) {
                snprintf(list + l, sizeof list - l, ", ...");
                break;
            }
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "",
                     names[i]);
        }
        rk_registry_names_free(names, n);
    }
    return rk_err_set(err, RK_ENOTFOUND, "no model named '%s' in %s (%s%s)",
                      name, r->dir, *list ? "models: " : "no models",
                      list);
}

void rk_version_info_clear(rk_version_info *v)
{
    if (!v) return;
    rk_model_meta_free(&v->meta);
    rk_free(v->meta_error);
    rk_free(v->gate_reason);
    memset(v, 0, sizeof *v);
}

void rk_registry_versions_free(rk_version_info *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) rk_version_info_clear(&v[i]);
    rk_free(v);
}

/* Fills one version's info: status, meta.json and last gate decision. */
static int fill_info(const char *name_dir, const rk__reg_state *st,
                     uint32_t cur, uint32_t prev, uint32_t v,
                     rk_version_info *info, rk_err *err)
{
    memset(info, 0, sizeof *info);
    info->version = v;
    info->status = v == cur ? RK_VERSION_CURRENT
                 : v == prev ? RK_VERSION_PREVIOUS
                 : contains(st->stack, st->nstack, v) ? RK_VERSION_RETIRED
                 : contains(st->rolled, st->nrolled, v) ? RK_VERSION_ROLLED_BACK
                                                        : RK_VERSION_CANDIDATE;
    for (size_t i = st->nhist; i-- > 0;) {
        const rk__reg_event *e = &st->hist[i];
        if (e->version != v || strcmp(e->action, "gate") != 0) continue;
        info->gated = 1;
        info->gate_pass = e->passed > 0;
        if (e->reason && !(info->gate_reason = rk_strdup(e->reason)))
            return rk_err_set(err, RK_ENOMEM, "registry: out of memory");
        break;
    }
    char p[PATH_LEN], *txt;
    size_t n;
    rk_err merr = {0};
    snprintf(p, sizeof p, "%s/%u/meta.json", name_dir, v);
    int rc = rk__train_read_file(p, RK_META_MAX_BYTES, &txt, &n, &merr);
    if (!rc) {
        rc = rk_model_meta_parse(&info->meta, txt, n, &merr);
        rk_free(txt);
    }
    if (rc == RK_ENOMEM) return rk_err_set(err, rc, "%s", merr.msg);
    /* A damaged meta.json is reported with the version, not fatal to the
     * listing: the operator needs to see the other versions. */
    if (rc && !(info->meta_error = rk_strdup(merr.msg)))
        return rk_err_set(err, RK_ENOMEM, "registry: out of memory");
    return 0;
}

int rk_registry_versions(rk_registry *r, const char *name,
                         rk_version_info **out, size_t *n, rk_err *err)
{
    *out = NULL;
    *n = 0;
    char dir[PATH_LEN];
    int rc = name_dir_of(r, name, dir, err);
    if (rc) return rc;
    uint32_t *vers;
    size_t nv;
    if ((rc = list_versions(dir, &vers, &nv, err))) return rc;
    rk__reg_state st;
    if ((rc = state_load(dir, &st, err))) {
        rk_free(vers);
        return rc;
    }
    uint32_t cur, prev;
    effective(dir, &st, &cur, &prev);
    rk_version_info *info = rk_calloc(nv ? nv : 1, sizeof *info);
    if (!info) rc = rk_err_set(err, RK_ENOMEM, "registry: out of memory");
    size_t k = 0;
    for (; k < nv && !rc; k++)
        rc = fill_info(dir, &st, cur, prev, vers[k], &info[k], err);
    rk__reg_state_free(&st);
    rk_free(vers);
    if (rc) {
        rk_registry_versions_free(info, k);
        return rc;
    }
    *out = info;
    *n = nv;
    return 0;
}

int rk_registry_show(rk_registry *r, const char *name, uint32_t version,
                     rk_version_info *out, rk_err *err)
{
    memset(out, 0, sizeof *out);
    rk_version_info *all;
    size_t n;
    int rc = rk_registry_versions(r, name, &all, &n, err);
    if (rc) return rc;
    size_t at = n;
    for (size_t i = 0; i < n; i++)
        if (version ? all[i].version == version
                    : all[i].status == RK_VERSION_CURRENT)
            at = i;
    if (at == n) {
        char list[300] = "";
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(list);
            if (l + 16 >= sizeof list) {
                snprintf(list + l, sizeof list - l, ", ...");
                break;
            }
            snprintf(list + l, sizeof list - l, "%s%u", i ? ", " : "",
                     all[i].version);
        }
        rc = version ? rk_err_set(err, RK_ENOTFOUND, "model '%s' has no "
                                  "version %u (versions: %s)", name, version,
                                  n ? list : "none")
                     : rk_err_set(err, RK_ENOTFOUND, "model '%s' has no "
                                  "current version (versions: %s)", name,
                                  n ? list : "none");
        rk_registry_versions_free(all, n);
        return rc;
    }
    *out = all[at];
    memset(&all[at], 0, sizeof all[at]);
    rk_registry_versions_free(all, n);
    return 0;
}

int rk_registry_current(rk_registry *r, const char *name, uint32_t *current,
                        uint32_t *previous, rk_err *err)
{
    char dir[PATH_LEN];
    int rc = name_dir_of(r, name, dir, err);
    if (rc) return rc;
    rk__reg_state st;
    if ((rc = state_load(dir, &st, err))) return rc;
    uint32_t cur, prev;
    effective(dir, &st, &cur, &prev);
    rk__reg_state_free(&st);
    if (current) *current = cur;
    if (previous) *previous = prev;
    return 0;
}

int rk_registry_promote(rk_registry *r, const char *name, uint32_t version,
                        rk_err *err)
{
    char dir[PATH_LEN];
    int rc = name_dir_of(r, name, dir, err);
    if (rc) return rc;
    if (!version) return rk_err_set(err, RK_EINVAL, "no version given");
    if (!version_exists(dir, version)) {
        /* Through show for the message that lists the versions. */
        rk_version_info vi;
        rc = rk_registry_show(r, name, version, &vi, err);
        if (!rc) rk_version_info_clear(&vi); /* raced: it appeared */
        return rc ? rc : rk_err_set(err, RK_ENOTFOUND, "model '%s': no "
                                    "version %u", name, version);
    }
    int lock;
    if ((rc = rk__reg_lock(dir, &lock, err))) return rc;
    rc = rk__reg_promote_locked(dir, version, "promote", "by hand", err);
    rk__reg_unlock(lock);
    return rc;
}

int rk_registry_rollback(rk_registry *r, const char *name, uint32_t *now,
                         rk_err *err)
{
    char dir[PATH_LEN];
    int rc = name_dir_of(r, name, dir, err);
    if (rc) return rc;
    int lock;
    if ((rc = rk__reg_lock(dir, &lock, err))) return rc;
    rc = rollback_locked(dir, name, now, err);
    rk__reg_unlock(lock);
    return rc;
}

/* ---- publishing ranking models ------------------------------------------------------- */

typedef struct pub_arg {
    const rk_model_meta *meta;
    rk_model_kind kind;
    const void *payload;
    size_t len;
    const char *name;
} pub_arg;

static int write_published(void *arg, const char *tmpdir, uint32_t version,
                           rk_err *err)
{
    const pub_arg *a = arg;
    rk_model_meta m = *a->meta;
    m.name = a->name;
    m.version = version;
    if (!m.kind) m.kind = rk_model_kind_name(a->kind);
    if (!m.created_ms) m.created_ms = rk_clock_wall_ms();
    m.artifact = "model.rk";
    int rc = rk__artifact_write(tmpdir, "model.rk", a->kind, a->payload, a->len,
                                &m.artifact_checksum, &m.artifact_bytes, err);
    if (rc) return rc;
    rk_buf b;
    rk_buf_init(&b, RK_META_MAX_BYTES);
    if (!(rc = rk_model_meta_json(&m, &b, err)))
        rc = rk__train_write_file(tmpdir, "meta.json", b.data, b.len, err);
    rk_buf_free(&b);
    return rc;
}

/* The current version's own metrics and window, from its meta.json. */
static int current_metrics(const char *name_dir, uint32_t cur,
                           rk_model_meta *meta, rk_err *err)
{
    char p[PATH_LEN], *txt;
    size_t n;
    snprintf(p, sizeof p, "%s/%u/meta.json", name_dir, cur);
    int rc = rk__train_read_file(p, RK_META_MAX_BYTES, &txt, &n, err);
    if (rc) return rc;
    rc = rk_model_meta_parse(meta, txt, n, err);
    rk_free(txt);
    if (rc) rk_err_prefix(err, "%s: ", p);
    return rc;
}

static int gate_and_promote(const char *name_dir, uint32_t v,
                            const rk_model_meta *meta,
                            const rk_publish_opts *o, rk_publish_result *res,
                            rk_err *err)
{
    int rc;
    if (o && o->no_promote) {
        snprintf(res->reason, sizeof res->reason, "candidate only: not "
                 "promoted (no_promote)");
        return record_locked(name_dir, "publish", v, 0, -1, res->reason, err);
    }
    if (!o || !o->gate) {
        snprintf(res->reason, sizeof res->reason, "promoted (no gate)");
        rc = rk__reg_promote_locked(name_dir, v, "publish", res->reason, err);
        res->promoted = !rc;
        return rc;
    }
    rk__reg_state st;
    if ((rc = state_load(name_dir, &st, err))) return rc;
    uint32_t cur, prev;
    effective(name_dir, &st, &cur, &prev);
    rk__reg_state_free(&st);
    if (!cur) {
        snprintf(res->reason, sizeof res->reason, "promoted: no current "
                 "version to compare with");
        rc = rk__reg_promote_locked(name_dir, v, "publish", res->reason, err);
        res->promoted = !rc;
        return rc;
    }
    rk_model_meta cm = {0};
    rk_metric_set cand = {meta->metrics, meta->nmetrics, meta->valid_from_ms,
                          meta->valid_to_ms};
    rk_metric_set curset;
    if (o->current) {
        curset = *o->current;
    } else {
        if ((rc = current_metrics(name_dir, cur, &cm, err))) return rc;
        curset = (rk_metric_set){cm.metrics, cm.nmetrics, cm.valid_from_ms,
                                 cm.valid_to_ms};
    }
    rk_gate_decision d;
    rc = rk_registry_gate(&cand, &curset, o->gate, &d, err);
    rk_model_meta_free(&cm);
    if (rc) return rc;
    snprintf(res->reason, sizeof res->reason, "%s (against version %u)",
             d.reason, cur);
    if ((rc = record_locked(name_dir, "gate", v, cur, d.pass, res->reason,
                            err)))
        return rc;
    if (!d.pass) return 0;
    rc = rk__reg_promote_locked(name_dir, v, "promote", "gate passed", err);
    res->promoted = !rc;
    return rc;
}

int rk_registry_publish(rk_registry *r, const rk_model_meta *meta,
                        rk_model_kind kind, const void *payload, size_t len,
                        const rk_publish_opts *o, rk_publish_result *res,
                        rk_err *err)
{
    memset(res, 0, sizeof *res);
    if (!meta) return rk_err_set(err, RK_EINVAL, "publish: no metadata");
    int rc = rk__train_check_name(meta->name, err);
    if (rc) return rc;
    if (len && !payload) return rk_err_set(err, RK_EINVAL, "publish: no payload");
    char dir[PATH_LEN];
    snprintf(dir, sizeof dir, "%s/%s", r->dir, meta->name);
    if ((rc = rk_mkdir_p(dir, err))) return rc;
    int lock;
    if ((rc = rk__reg_lock(dir, &lock, err))) return rc;
    pub_arg a = {meta, kind, payload, len, meta->name};
    uint32_t v = 0;
    if (!(rc = rk__reg_new_version(dir, write_published, &a, &v, err))) {
        res->version = v;
        rc = gate_and_promote(dir, v, meta, o, res, err);
    }
    /* Removing old versions is housekeeping: the version is published
     * whatever happens here, and the next publish tries again. */
    if (!rc) {
        rk_err gerr = {0};
        rk__reg_gc_locked(dir, r->o.keep, &gerr);
    }
    rk__reg_unlock(lock);
    return rc;
}
