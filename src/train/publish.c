/*
 * publish.c — writing a trained model where servers can find it, and its
 * meta.json.
 *
 * Layout: <models>/<name>/<version>/ holds the model's files and
 * meta.json; <models>/<name>/current is a symlink to the version servers
 * load. A version is written into a hidden temporary directory, every
 * file and the directory fsync'd, then renamed into place, and only then
 * promoted — by the registry (registry.c), which commits registry.json
 * and renames fresh symlinks over `current` and `previous` — so a reader
 * that follows `current` sees either the old model or the new one, never
 * a mix. Older versions beyond `keep` are removed so retraining does not
 * fill the disk; the current and previous versions never are.
 *
 * meta.json is written once, inside the version directory before it
 * becomes visible, and never changed: what changes over a version's life
 * (its status, gate decisions) lives in registry.json. The parser accepts
 * every field as optional because the retrieval models of `rankd train`
 * write a smaller document than the ranking models do.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_int.h"

#define PATH_LEN 4096

static int io_err(rk_err *err, const char *what, const char *path)
{
    return rk_err_set(err, RK_EIO, "%s %s: %s", what, path, strerror(errno));
}

int rk__train_fsync_path(const char *path, int dir, rk_err *err)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return io_err(err, "cannot open", path);
    int rc = fsync(fd);
    close(fd);
    return rc ? io_err(err, "cannot fsync", path) : 0;
}

int rk__train_write_file(const char *dir, const char *name, const void *data,
                         size_t n, rk_err *err)
{
    char path[PATH_LEN];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return rk_err_set(err, RK_EINVAL, "path too long: %s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return io_err(err, "cannot create", path);
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int rc = io_err(err, "cannot write", path);
            close(fd);
            return rc;
        }
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int rc = io_err(err, "cannot fsync", path);
        close(fd);
        return rc;
    }
    if (close(fd) != 0) return io_err(err, "cannot close", path);
    return 0;
}

int rk__train_read_file(const char *path, size_t max, char **out, size_t *n,
                        rk_err *err)
{
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? rk_err_set(err, RK_ENOTFOUND, "%s: no such file", path)
                   : io_err(err, "cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rk_err_set(err, RK_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return rk_err_set(err, RK_ELIMIT, "%s: %lld bytes, at most %zu", path,
                          (long long)st.st_size, max);
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = rk_malloc(size + 1);
    if (!buf) {
        close(fd);
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", path);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int rc = io_err(err, "cannot read", path);
            close(fd);
            rk_free(buf);
            return rc;
        }
        if (r == 0) break; /* shrank meanwhile: take what is there */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *n = got;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int rk__train_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint32_t rk__train_version_of(const char *s)
{
    if (!*s || *s == '0' || strlen(s) > 9) return 0;
    uint32_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (uint32_t)(*s - '0');
    }
    return v;
}

int rk__train_check_name(const char *name, rk_err *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 200 || name[0] == '.' ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_.-") != n)
        return rk_err_set(err, RK_EINVAL,
                          "model name '%s': use 1 to 200 letters, digits, "
                          "'_', '.' and '-', not starting with '.'",
                          name ? name : "");
    return 0;
}

int rk__train_json_load(const char *text, size_t len, const char *what,
                        json_t **out, rk_err *err)
{
    rk_mem_stats a, b;
    json_error_t je;
    rk_mem_get_stats(&a);
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    rk_mem_get_stats(&b);
    /* jansson 2.14's lexer ignores a failed growth of its token buffer:
     * the token silently loses characters, or the parse fails with a
     * syntax error. Any failed allocation during the parse therefore
     * discards the result, whatever jansson says. */
    if (b.failures != a.failures ||
        (!*out && json_error_code(&je) == json_error_out_of_memory)) {
        json_decref(*out);
        *out = NULL;
        return rk_err_set(err, RK_ENOMEM, "%s: out of memory", what);
    }
    if (*out) return 0;
    return rk_err_set(err, RK_EPARSE, "%s: line %d: %s", what, je.line,
                      je.text);
}

/* ---- rk_train_publish ---------------------------------------------------------- */

typedef struct save_arg {
    const rk_eval_model *m;
    const char *meta_json;
} save_arg;

static int save_version(void *arg, const char *tmpdir, uint32_t version,
                        rk_err *err)
{
    (void)version;
    const save_arg *a = arg;
    int rc = rk_eval_model_save(a->m, tmpdir, err);
    return rc ? rc : rk__train_write_file(tmpdir, "meta.json", a->meta_json,
                                          strlen(a->meta_json), err);
}

int rk_train_publish(const rk_eval_model *m, const char *models_dir,
                     const char *meta_json, unsigned keep, uint32_t *version,
                     rk_err *err)
{
    const char *name = rk_eval_model_name(m);
    int rc = rk__train_check_name(name, err);
    if (rc) return rc;
    if (keep == 0) keep = 3;
    char dir[PATH_LEN];
    if (snprintf(dir, sizeof dir, "%s/%s", models_dir, name) >= (int)sizeof dir)
        return rk_err_set(err, RK_EINVAL, "path too long: %s", models_dir);
    if ((rc = rk_mkdir_p(dir, err))) return rc;
    int lock;
    if ((rc = rk__reg_lock(dir, &lock, err))) return rc;
    save_arg a = {m, meta_json};
    uint32_t v = 0;
    if (!(rc = rk__reg_new_version(dir, save_version, &a, &v, err)) &&
        !(rc = rk__reg_promote_locked(dir, v, "publish", NULL, err))) {
        /* Old versions go next; a failure there is retried by the next
         * publish and does not undo this one. */
        rk_err gerr = {0};
        rk__reg_gc_locked(dir, keep, &gerr);
    }
    rk__reg_unlock(lock);
    if (!rc && version) *version = v;
    return rc;
}

/* ---- meta.json: writing ----------------------------------------------------------- */

static int put_num(rk_buf *b, double x)
{
    if (!isfinite(x)) return rk_buf_puts(b, "null");
    return rk_buf_printf(b, "%.17g", x);
}

static int put_time(rk_buf *b, int64_t ms)
{
    char t[32];
    rk_format_time_ms(ms, t);
    return rk_buf_printf(b, "\"%s\"", t);
}

static int put_str(rk_buf *b, const char *s)
{
    return rk_buf_put_json_str(b, s, strlen(s));
}

static int put_window(rk_buf *b, const char *key, int64_t from, int64_t to)
{
    if (from == 0 && to == 0) return 0;
    int rc = rk_buf_printf(b, ",\"%s\":{\"from\":", key);
    rc = rc ? rc : put_time(b, from);
    rc = rc ? rc : rk_buf_puts(b, ",\"to\":");
    rc = rc ? rc : put_time(b, to);
    return rc ? rc : rk_buf_putc(b, '}');
}

/* Metric names are JSON keys and gate rule names: plain ASCII only. */
static int metric_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < RK_METRIC_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_.@-") == n;
}

int rk_model_meta_json(const rk_model_meta *m, rk_buf *b, rk_err *err)
{
    if (m->nmetrics > RK_META_MAX_METRICS)
        return rk_err_set(err, RK_EINVAL, "meta: %zu metrics, at most %d",
                          m->nmetrics, RK_META_MAX_METRICS);
    for (size_t i = 0; i < m->nmetrics; i++) {
        if (!metric_name_ok(m->metrics[i].name))
            return rk_err_set(err, RK_EINVAL, "meta: bad metric name '%s' "
                              "(letters, digits, _ . @ -)",
                              m->metrics[i].name ? m->metrics[i].name : "");
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->metrics[i].name, m->metrics[j].name) == 0)
                return rk_err_set(err, RK_EINVAL, "meta: metric '%s' listed "
                                  "twice", m->metrics[i].name);
    }
    if (m->params_json) {
        /* Checked here so that a bad object cannot make meta.json invalid. */
        json_t *p;
        int rc = rk__train_json_load(m->params_json, strlen(m->params_json),
                                     "meta: params", &p, err);
        if (rc == RK_ENOMEM) return rc;
        int ok = !rc && json_is_object(p);
        json_decref(p);
        if (!ok)
            return rk_err_set(err, RK_EINVAL, "meta: params must be a JSON "
                              "object");
    }
    int rc = rk_buf_puts(b, "{\"rankd_meta\":1");
    if (m->name) {
        rc = rc ? rc : rk_buf_puts(b, ",\"name\":");
        rc = rc ? rc : put_str(b, m->name);
    }
    if (m->version) rc = rc ? rc : rk_buf_printf(b, ",\"version\":%u", m->version);
    if (m->kind) {
        rc = rc ? rc : rk_buf_puts(b, ",\"kind\":");
        rc = rc ? rc : put_str(b, m->kind);
    }
    if (m->created_ms) {
        rc = rc ? rc : rk_buf_puts(b, ",\"created\":");
        rc = rc ? rc : put_time(b, m->created_ms);
    }
    rc = rc ? rc : put_window(b, "train_window", m->train_from_ms, m->train_to_ms);
    rc = rc ? rc : put_window(b, "valid_window", m->valid_from_ms, m->valid_to_ms);
    rc = rc ? rc : rk_buf_printf(b, ",\"rows\":{\"train\":%llu,\"valid\":%llu}",
                                 (unsigned long long)m->train_rows,
                                 (unsigned long long)m->valid_rows);
    if (m->feature_schema_hash)
        rc = rc ? rc : rk_buf_printf(b, ",\"feature_schema_hash\":\"%016llx\"",
                                     (unsigned long long)m->feature_schema_hash);
    rc = rc ? rc : rk_buf_puts(b, ",\"metrics\":{");
    for (size_t i = 0; i < m->nmetrics && !rc; i++) {
        rc = rk_buf_printf(b, "%s\"%s\":", i ? "," : "", m->metrics[i].name);
        rc = rc ? rc : put_num(b, m->metrics[i].value);
    }
    rc = rc ? rc : rk_buf_putc(b, '}');
    if (m->params_json) {
        rc = rc ? rc : rk_buf_puts(b, ",\"params\":");
        rc = rc ? rc : rk_buf_puts(b, m->params_json);
    }
    if (m->artifact) {
        rc = rc ? rc : rk_buf_puts(b, ",\"artifact\":{\"file\":");
        rc = rc ? rc : put_str(b, m->artifact);
        rc = rc ? rc : rk_buf_printf(b, ",\"format_version\":%u,\"bytes\":%llu,"
                                        "\"checksum\":\"%016llx\"}",
                                     RK_ARTIFACT_VERSION,
                                     (unsigned long long)m->artifact_bytes,
                                     (unsigned long long)m->artifact_checksum);
    }
    if (m->nfeatures || m->prediction) {
        rc = rc ? rc : rk_buf_puts(b, ",\"reference\":{\"features\":[");
        for (size_t i = 0; i < m->nfeatures && !rc; i++) {
            rc = i ? rk_buf_putc(b, ',') : 0;
            rc = rc ? rc : rk_refhist_json(m->features[i], b);
        }
        rc = rc ? rc : rk_buf_putc(b, ']');
        if (m->prediction) {
            rc = rc ? rc : rk_buf_puts(b, ",\"prediction\":");
            rc = rc ? rc : rk_refhist_json(m->prediction, b);
        }
        rc = rc ? rc : rk_buf_putc(b, '}');
    }
    rc = rc ? rc : rk_buf_puts(b, "}\n");
    return rc ? rk_err_set(err, rc, "meta: %s", rk_strerror(rc)) : 0;
}

/* ---- meta.json: reading ------------------------------------------------------------- */

/* Everything a parsed meta owns. */
typedef struct meta_store {
    char *name, *kind, *params, *artifact;
    rk_metric *metrics;
    size_t nmetrics;
    rk_refhist **features;
    size_t nfeatures;
    rk_refhist *prediction;
} meta_store;

void rk_model_meta_free(rk_model_meta *m)
{
    if (!m) return;
    meta_store *s = m->owned;
    if (s) {
        rk_free(s->name);
        rk_free(s->kind);
        rk_free(s->params);
        rk_free(s->artifact);
        for (size_t i = 0; i < s->nmetrics; i++)
            rk_free((char *)s->metrics[i].name);
        rk_free(s->metrics);
        for (size_t i = 0; i < s->nfeatures; i++) rk_refhist_free(s->features[i]);
        rk_free(s->features);
        rk_refhist_free(s->prediction);
        rk_free(s);
    }
    memset(m, 0, sizeof *m);
}

const rk_metric *rk_model_meta_metric(const rk_model_meta *m, const char *name)
{
    for (size_t i = 0; i < m->nmetrics; i++)
        if (strcmp(m->metrics[i].name, name) == 0) return &m->metrics[i];
    return NULL;
}

static int bad(rk_err *err, const char *field, const char *want)
{
    return rk_err_set(err, RK_ECORRUPT, "meta.json: \"%s\" must be %s", field,
                      want);
}

/* A string field copied into *out (absent: NULL). */
static int get_str(const json_t *o, const char *key, size_t max, char **out,
                   rk_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return bad(err, key, "a string without NUL bytes");
    if (!(*out = rk_strdup(json_string_value(v))))
        return rk_err_set(err, RK_ENOMEM, "meta.json: out of memory");
    return 0;
}

static int get_time(const json_t *v, const char *field, int64_t *out,
                    rk_err *err)
{
    if (!v) return 0;
    int64_t t;
    /* Years 0000-9999 only: what rk_format_time_ms writes back. */
    if (!json_is_string(v) ||
        rk_parse_time_ms(json_string_value(v), json_string_length(v), &t) ||
        t < rk_civil_ms(0, 1, 1) || t >= rk_civil_ms(10000, 1, 1))
        return bad(err, field, "an ISO-8601 time");
    *out = t;
    return 0;
}

static int get_window(const json_t *o, const char *key, int64_t *from,
                      int64_t *to, rk_err *err)
{
    json_t *w = json_object_get(o, key);
    if (!w) return 0;
    if (!json_is_object(w)) return bad(err, key, "an object {from, to}");
    int rc = get_time(json_object_get(w, "from"), key, from, err);
    return rc ? rc : get_time(json_object_get(w, "to"), key, to, err);
}

static int get_u64_field(const json_t *o, const char *key, const char *field,
                         uint64_t *out, rk_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(err, field, "an integer >= 0");
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_hex(const json_t *v, const char *field, uint64_t *out,
                   rk_err *err)
{
    if (!v) return 0;
    const char *s = json_string_value(v);
    size_t n = s ? json_string_length(v) : 0;
    if (!s || n == 0 || n > 16 || strspn(s, "0123456789abcdefABCDEF") != n)
        return bad(err, field, "1 to 16 hex digits");
    *out = strtoull(s, NULL, 16);
    return 0;
}

static int parse_metrics(meta_store *s, const json_t *o, rk_err *err)
{
    json_t *mo = json_object_get(o, "metrics");
    if (!mo) return 0;
    if (!json_is_object(mo) || json_object_size(mo) > RK_META_MAX_METRICS)
        return bad(err, "metrics", "an object of at most 64 numbers");
    size_t n = json_object_size(mo);
    if (n && !(s->metrics = rk_calloc(n, sizeof *s->metrics)))
        return rk_err_set(err, RK_ENOMEM, "meta.json: out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(mo, key, v) {
        if (!metric_name_ok(key))
            return rk_err_set(err, RK_ECORRUPT, "meta.json: bad metric name");
        if (!json_is_null(v) && !json_is_number(v))
            return rk_err_set(err, RK_ECORRUPT, "meta.json: metric \"%s\" "
                              "must be a number or null", key);
        rk_metric *m = &s->metrics[s->nmetrics];
        if (!(m->name = rk_strdup(key)))
            return rk_err_set(err, RK_ENOMEM, "meta.json: out of memory");
        m->value = json_is_null(v) ? NAN : json_number_value(v);
        s->nmetrics++;
    }
    return 0;
}

static int parse_reference(meta_store *s, const json_t *o, rk_err *err)
{
    json_t *r = json_object_get(o, "reference");
    if (!r) return 0;
    if (!json_is_object(r)) return bad(err, "reference", "an object");
    json_t *f = json_object_get(r, "features"), *p;
    if (f && (!json_is_array(f) || json_array_size(f) > RK__REG_MAX_ENTRIES))
        return bad(err, "reference.features", "an array");
    size_t n = json_array_size(f);
    if (n && !(s->features = rk_calloc(n, sizeof *s->features)))
        return rk_err_set(err, RK_ENOMEM, "meta.json: out of memory");
    for (size_t i = 0; i < n; i++) {
        char where[64];
        snprintf(where, sizeof where, "meta.json: reference.features[%zu]", i);
        int rc = rk__refhist_from_json(json_array_get(f, i), where,
                                       &s->features[i], err);
        if (rc) return rc;
        s->nfeatures++;
    }
    if ((p = json_object_get(r, "prediction")))
        return rk__refhist_from_json(p, "meta.json: reference.prediction",
                                     &s->prediction, err);
    return 0;
}

static int parse_meta(rk_model_meta *m, meta_store *s, const json_t *o,
                      rk_err *err)
{
    int rc;
    json_t *v = json_object_get(o, "rankd_meta");
    if (v && !json_is_integer(v)) return bad(err, "rankd_meta", "1");
    if (v && json_integer_value(v) != 1)
        return rk_err_set(err, RK_EVERSION, "meta.json: rankd_meta %lld; this "
                          "build reads 1", (long long)json_integer_value(v));
    if ((rc = get_str(o, "name", 255, &s->name, err)) ||
        (rc = get_str(o, "kind", 64, &s->kind, err)))
        return rc;
    if ((v = json_object_get(o, "version"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 999999999)
            return bad(err, "version", "an integer in 1..999999999");
        m->version = (uint32_t)json_integer_value(v);
    }
    /* Retrieval models written by `rankd train` say trained_at. */
    v = json_object_get(o, "created");
    if ((rc = get_time(v ? v : json_object_get(o, "trained_at"), "created",
                       &m->created_ms, err)) ||
        (rc = get_window(o, "train_window", &m->train_from_ms, &m->train_to_ms,
                         err)) ||
        (rc = get_window(o, "valid_window", &m->valid_from_ms, &m->valid_to_ms,
                         err)))
        return rc;
    if ((v = json_object_get(o, "rows"))) {
        if (!json_is_object(v)) return bad(err, "rows", "an object");
        if ((rc = get_u64_field(v, "train", "rows.train", &m->train_rows, err)) ||
            (rc = get_u64_field(v, "valid", "rows.valid", &m->valid_rows, err)))
            return rc;
    }
    if ((rc = get_hex(json_object_get(o, "feature_schema_hash"),
                      "feature_schema_hash", &m->feature_schema_hash, err)) ||
        (rc = parse_metrics(s, o, err)))
        return rc;
    if ((v = json_object_get(o, "params"))) {
        if (!json_is_object(v)) return bad(err, "params", "an object");
        char *txt = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (txt) {
            s->params = rk_strdup(txt);
            /* json_dumps used jansson's allocator (rk_malloc once
             * rk_mem_hook_libraries ran; malloc otherwise). */
            json_free_t jfree;
            json_get_alloc_funcs(NULL, &jfree);
            jfree(txt);
        }
        if (!s->params)
            return rk_err_set(err, RK_ENOMEM, "meta.json: out of memory");
    }
    if ((v = json_object_get(o, "artifact"))) {
        if (!json_is_object(v)) return bad(err, "artifact", "an object");
        if ((rc = get_str(v, "file", 255, &s->artifact, err)) ||
            (rc = get_u64_field(v, "bytes", "artifact.bytes", &m->artifact_bytes,
                                err)) ||
            (rc = get_hex(json_object_get(v, "checksum"), "artifact.checksum",
                          &m->artifact_checksum, err)))
            return rc;
    }
    return parse_reference(s, o, err);
}

int rk_model_meta_parse(rk_model_meta *m, const char *json, size_t len,
                        rk_err *err)
{
    memset(m, 0, sizeof *m);
    json_t *o;
    int rc = rk__train_json_load(json, len, "meta.json", &o, err);
    if (rc) return rc;
    meta_store *s = rk_calloc(1, sizeof *s);
    if (!s) rc = rk_err_set(err, RK_ENOMEM, "meta.json: out of memory");
    else if (!json_is_object(o)) rc = rk_err_set(err, RK_ECORRUPT,
                                                 "meta.json: not an object");
    m->owned = s;
    if (!rc) rc = parse_meta(m, s, o, err);
    json_decref(o);
    if (rc) {
        rk_model_meta_free(m);
        return rc;
    }
    m->name = s->name;
    m->kind = s->kind;
    m->params_json = s->params;
    m->artifact = s->artifact;
    m->metrics = s->metrics;
    m->nmetrics = s->nmetrics;
    m->features = s->features;
    m->nfeatures = s->nfeatures;
    m->prediction = s->prediction;
    return 0;
}
