/*
 * models.c — hot-swappable model snapshots. Each slot follows one registry
 * name (or a pinned version, for A/B variants): the background thread
 * polls the registry, loads a changed version completely off the request
 * path, and swaps the slot's pointer under the slot mutex. Requests take a
 * reference for their whole duration, so a swap never changes a model
 * under a running request and the old snapshot is freed by its last user.
 * A version that fails to load leaves the previous one serving; the
 * failure is counted per slot (/metrics) and logged once per version.
 * Also the /v1/models, promote and rollback handlers.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "serve/serve_int.h"

sv_model *sv_slot_acquire(sv_slot *sl)
{
    pthread_mutex_lock(&sl->mu);
    sv_model *m = sl->cur;
    if (m) atomic_fetch_add(&m->ref, 1);
    pthread_mutex_unlock(&sl->mu);
    return m;
}

static void model_free(sv_model *m)
{
    if (m->base) {
        /* A derived snapshot owns its ranker only. */
        rk_ranker_destroy(m->ranker);
        sv_model_release(m->base);
        rk_free(m);
        return;
    }
    if (m->sref) {
        for (size_t i = 0; i <= m->meta.nfeatures; i++) rk_refhist_free(m->sref[i]);
        rk_free(m->sref);
    }
    if (m->has_meta) rk_model_meta_free(&m->meta);
    rk_drift_window_destroy(m->win);
    rk_free(m->mon_col);
    rk_ranker_destroy(m->ranker);
    rk_feat_spec_destroy(m->spec);
    rk_ann_destroy(m->ann);
    rk_ials_free(m->ials);
    rk_covis_destroy(m->covis);
    rk_free(m);
}

void sv_model_release(sv_model *m)
{
    if (!m || atomic_fetch_sub(&m->ref, 1) != 1) return;
    rk_server *s = m->owner;
    pthread_mutex_lock(&s->dead_mu);
    m->next_dead = s->dead;
    s->dead = m;
    pthread_mutex_unlock(&s->dead_mu);
}

void sv_models_bury(rk_server *s)
{
    pthread_mutex_lock(&s->dead_mu);
    sv_model *m = s->dead;
    s->dead = NULL;
    pthread_mutex_unlock(&s->dead_mu);
    while (m) {
        sv_model *n = m->next_dead;
        model_free(m);
        m = n;
    }
}

int sv_slot_add(rk_server *s, const char *name, sv_slot_kind kind,
                uint32_t pinned, rk_err *err)
{
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i].kind == kind && s->slots[i].pinned == pinned &&
            strcmp(s->slots[i].name, name) == 0)
            return (int)i;
    if (s->nslots == SV_MAX_SLOTS)
        return rk_err_set(err, RK_ELIMIT, "serve: more than %d model slots",
                          SV_MAX_SLOTS);
    if (strlen(name) >= SV_NAME_MAX)
        return rk_err_set(err, RK_EINVAL, "serve: model name too long");
    sv_slot *sl = &s->slots[s->nslots];
    memset(sl, 0, sizeof *sl);
    strcpy(sl->name, name);
    sl->kind = kind;
    sl->pinned = pinned;
    if (pinned) snprintf(sl->label, sizeof sl->label, "%s@%u", name, pinned);
    else snprintf(sl->label, sizeof sl->label, "%s", name);
    pthread_mutex_init(&sl->mu, NULL);
    return (int)s->nslots++;
}

int sv_models_init(rk_server *s, rk_err *err)
{
    /* Slot 0: the default ranker (its name may be empty: no ranker). */
    int rc = sv_slot_add(s, s->o.ranker ? s->o.ranker : "", SV_SLOT_RANKER, 0,
                         err);
    if (rc >= 0) rc = sv_slot_add(s, s->o.factors ? s->o.factors : "",
                                  SV_SLOT_FACTORS, 0, err);
    if (rc >= 0) rc = sv_slot_add(s, s->o.covis ? s->o.covis : "",
                                  SV_SLOT_COVIS, 0, err);
    return rc < 0 ? rc : 0;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Maps the spec's score slots to retrieval sources by name: a `score`
 * feature named after a source ("ann", "covis", ...) gets that source's
 * score; "retrieval" gets the merged normalized score. */
static void map_scores(sv_model *m)
{
    m->nscores = rk_feat_nscores(m->spec);
    if (m->nscores > 8) m->nscores = 8;
    for (uint32_t i = 0; i < 8; i++) m->score_src[i] = -1;
    for (unsigned src = 1; src < RK_SRC_COUNT; src++) {
        uint32_t slot;
        if (!rk_feat_score_slot(m->spec, rk_source_name(src), &slot) &&
            slot < 8)
            m->score_src[slot] = (int)src;
    }
    uint32_t slot;
    if (!rk_feat_score_slot(m->spec, "retrieval", &slot) && slot < 8)
        m->score_src[slot] = 0;
    if (!rk_feat_score_slot(m->spec, "dot", &slot) && slot < 8)
        m->score_src[slot] = RK_SRC_ANN;
}

static int load_version(rk_server *s, sv_slot *sl, uint32_t v, sv_model **out,
                        rk_err *err)
{
    char dir[4608], path[4700];
    snprintf(dir, sizeof dir, "%s/%s/%u", s->models_dir, sl->name, v);
    sv_model *m = rk_calloc(1, sizeof *m);
    if (!m) return rk_err_set(err, RK_ENOMEM, "out of memory");
    atomic_init(&m->ref, 1);
    m->owner = s;
    m->kind = sl->kind;
    m->version = v;
    snprintf(m->name, sizeof m->name, "%s", sl->name);
    m->loaded_ms = sv_now_ms(s);
    int rc = 0;
    if (sl->kind == SV_SLOT_RANKER) {
        snprintf(path, sizeof path, "%s/model.rk", dir);
        rk_artifact a;
        rc = rk_artifact_read(path, &a, err);
        if (!rc) {
            if (a.kind != RK_MODEL_GBDT && a.kind != RK_MODEL_FTRL &&
                a.kind != RK_MODEL_FM)
                rc = rk_err_set(err, RK_EINVAL, "%s: a %s model is not a "
                                "ranker", path, rk_model_kind_name(a.kind));
            else
                rc = rk_ranker_load(&m->ranker, a.payload, a.len, err);
            rk_artifact_free(&a);
        }
        if (!rc) {
            size_t n;
            const void *sp = rk_ranker_spec(m->ranker, &n);
            if (!sp)
                rc = rk_err_set(err, RK_EINVAL, "%s: the ranker carries no "
                                "feature spec (train it with rankd train "
                                "--ranker)", path);
            else
                rc = rk_feat_spec_load(&m->spec, sp, n, s->schema, err);
        }
        if (!rc) map_scores(m);
        /* Read through the served spec's cache when the model reads the
         * same aggregates (the usual case: trained from the config). */
        rk_err e2 = {0};
        if (!rc && s->online && rk_feat_share_cache(m->spec, s->online, &e2))
            rk_log(s->log, RK_LOG_INFO, "serve", "%s %u: features read the "
                   "store directly: %s", sl->name, v, e2.msg);
        if (!rc) rc = sv_monitor_attach(s, m, dir, err);
    } else if (sl->kind == SV_SLOT_FACTORS) {
        snprintf(path, sizeof path, "%s/ials.bin", dir);
        rc = rk_ials_load(path, &m->ials, err);
        if (!rc) {
            snprintf(path, sizeof path, "%s/items.ann", dir);
            if (file_exists(path)) {
                rc = rk_ann_load(&m->ann, path, 0, err);
            } else {
                rk_log(s->log, RK_LOG_INFO, "serve", "%s %u: no items.ann, "
                       "building the index (%u items)", sl->name, v,
                       rk_ials_nitems(m->ials));
                rc = rk_ials_index(m->ials, NULL, &m->ann, err);
            }
            if (!rc && rk_ials_nitems(m->ials) != (uint32_t)rk_ann_size(m->ann))
                rc = rk_err_set(err, RK_ECORRUPT, "%s: the index holds %zu "
                                "items, the factors %u", path,
                                rk_ann_size(m->ann), rk_ials_nitems(m->ials));
        }
    } else {
        snprintf(path, sizeof path, "%s/covis.bin", dir);
        rc = rk_covis_load(&m->covis, path, err);
    }
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static void reload_slot(rk_server *s, sv_slot *sl)
{
    if (!sl->name[0]) return;
    uint32_t want = sl->pinned, prev = 0;
    rk_err err = {0};
    if (!want) {
        pthread_mutex_lock(&s->reg_mu);
        int rc = rk_registry_current(s->reg, sl->name, &want, &prev, &err);
        pthread_mutex_unlock(&s->reg_mu);
        /* Not trained yet: nothing to serve, and nothing to wait for. */
        pthread_mutex_lock(&sl->mu);
        sl->absent = rc != 0 || !want;
        pthread_mutex_unlock(&sl->mu);
        if (rc) return;
    }
    if (!want) return;
    pthread_mutex_lock(&sl->mu);
    uint32_t have = sl->cur ? sl->cur->version : 0;
    uint32_t failed = sl->failed_version;
    pthread_mutex_unlock(&sl->mu);
    if (have == want || failed == want) return;
    sv_model *m = NULL;
    uint64_t t0 = rk_clock_mono_ns();
    int rc = load_version(s, sl, want, &m, &err);
    if (rc) {
        atomic_fetch_add(&sl->failures, 1);
        pthread_mutex_lock(&sl->mu);
        sl->failed_version = want;
        snprintf(sl->last_error, sizeof sl->last_error, "%s", err.msg);
        pthread_mutex_unlock(&sl->mu);
        rk_log(s->log, RK_LOG_ERROR, "serve", "model %s version %u failed to "
               "load, still serving %u: %s", sl->name, want, have, err.msg);
        rk_audit_add(s->audit, 0, "load_failed", sl->name, want, err.msg);
        return;
    }
    pthread_mutex_lock(&sl->mu);
    sv_model *old = sl->cur;
    sl->cur = m;
    sl->failed_version = 0;
    sl->last_error[0] = '\0';
    pthread_mutex_unlock(&sl->mu);
    atomic_fetch_add(&sl->loads, 1);
    sv_model_release(old);
    rk_log(s->log, RK_LOG_INFO, "serve", "model %s: now serving version %u "
           "(was %u; loaded in %.1f ms)", sl->name, want, have,
           (double)(rk_clock_mono_ns() - t0) / 1e6);
}

int sv_slot_swap_derived(sv_slot *sl, sv_model *base, sv_model *derived)
{
    pthread_mutex_lock(&sl->mu);
    sv_model *old = sl->cur;
    int ok = old && (old == base || old->base == base);
    if (ok) sl->cur = derived;
    pthread_mutex_unlock(&sl->mu);
    if (!ok) return -1;
    sv_model_release(old);
    return 0;
}

int sv_models_rollback(rk_server *s, const char *name, uint32_t *now, rk_err *err)
{
    pthread_mutex_lock(&s->reg_mu);
    int rc = rk_registry_rollback(s->reg, name, now, err);
    pthread_mutex_unlock(&s->reg_mu);
    if (rc) return rc;
    /* Switch this server at once instead of at the next poll. */
    for (size_t i = 0; i < s->nslots; i++)
        if (strcmp(s->slots[i].name, name) == 0) reload_slot(s, &s->slots[i]);
    return 0;
}

void sv_models_reload(rk_server *s)
{
    for (size_t i = 0; i < s->nslots; i++) reload_slot(s, &s->slots[i]);
}

void sv_models_free(rk_server *s)
{
    for (size_t i = 0; i < s->nslots; i++) {
        sv_model_release(s->slots[i].cur);
        s->slots[i].cur = NULL;
        pthread_mutex_destroy(&s->slots[i].mu);
    }
    s->nslots = 0;
    sv_models_bury(s);
}

/* ---- handlers ------------------------------------------------------------- */

static void slot_json(rk_buf *b, sv_slot *sl)
{
    sv_model *m = sv_slot_acquire(sl);
    (void)rk_buf_puts(b, "{\"name\":");
    sv_json_str(b, sl->name);
    (void)rk_buf_printf(b, ",\"role\":\"%s\",\"serving\":%u",
                        sl->kind == SV_SLOT_RANKER ? "ranker"
                        : sl->kind == SV_SLOT_FACTORS ? "factors" : "covis",
                        m ? m->version : 0);
    if (sl->pinned) (void)rk_buf_printf(b, ",\"pinned\":%u", sl->pinned);
    if (m) {
        char t[32];
        rk_format_time_ms(m->loaded_ms, t);
        (void)rk_buf_printf(b, ",\"loaded_at\":\"%s\"", t);
        if (m->base)
            (void)rk_buf_printf(b, ",\"online_updates\":%llu",
                                (unsigned long long)m->online_updates);
    }
    pthread_mutex_lock(&sl->mu);
    if (sl->failed_version) {
        (void)rk_buf_printf(b, ",\"failed_version\":%u,\"load_error\":",
                            sl->failed_version);
        sv_json_str(b, sl->last_error);
    }
    pthread_mutex_unlock(&sl->mu);
    (void)rk_buf_printf(b, ",\"loads\":%llu,\"load_failures\":%llu}",
                        (unsigned long long)atomic_load(&sl->loads),
                        (unsigned long long)atomic_load(&sl->failures));
    sv_model_release(m);
}

int sv_h_models(sv_req *q)
{
    rk_server *s = q->srv;
    rk_buf *b = q->out;
    (void)rk_buf_printf(b, "{\"request_id\":\"%s\",\"serving\":[", q->request_id);
    size_t k = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        if (!s->slots[i].name[0]) continue;
        if (k++) (void)rk_buf_putc(b, ',');
        slot_json(b, &s->slots[i]);
    }
    (void)rk_buf_puts(b, "],\"registry\":[");
    rk_err err = {0};
    char **names = NULL;
    size_t n = 0;
    pthread_mutex_lock(&s->reg_mu);
    int rc = rk_registry_names(s->reg, &names, &n, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        uint32_t cur = 0, prev = 0;
        rk_version_info *v = NULL;
        size_t nv = 0;
        (void)rk_registry_current(s->reg, names[i], &cur, &prev, NULL);
        if (rk_registry_versions(s->reg, names[i], &v, &nv, NULL)) nv = 0;
        if (i) (void)rk_buf_putc(b, ',');
        (void)rk_buf_puts(b, "{\"name\":");
        sv_json_str(b, names[i]);
        (void)rk_buf_printf(b, ",\"current\":%u,\"previous\":%u,\"versions\":[",
                            cur, prev);
        for (size_t j = 0; j < nv; j++) {
            (void)rk_buf_printf(b, "%s{\"version\":%u,\"status\":\"%s\"", j ? "," : "",
                                v[j].version, rk_version_status_name(v[j].status));
            if (v[j].meta.kind) {
                (void)rk_buf_puts(b, ",\"kind\":");
                sv_json_str(b, v[j].meta.kind);
            }
            (void)rk_buf_putc(b, '}');
        }
        (void)rk_buf_puts(b, "]}");
        rk_registry_versions_free(v, nv);
    }
    pthread_mutex_unlock(&s->reg_mu);
    rk_registry_names_free(names, n);
    if (rc) return sv_error_rk(q, rc, &err);
    (void)rk_buf_puts(b, "]}");
    return 0;
}

static int model_op(sv_req *q, int promote)
{
    rk_server *s = q->srv;
    const char *name = q->param;
    uint64_t version = 0;
    if (q->json) {
        if (!json_is_object(q->json))
            return sv_error(q, SV_ERR_BAD_REQUEST, "body: expected an object");
        static const char *const allowed[] = {"version", NULL};
        static const char *const none[] = {NULL};
        if (sv_check_keys(q, q->json, "body", promote ? allowed : none)) return -1;
        if (sv_get_uint(q, q->json, "version", 1, UINT32_MAX, &version) < 0)
            return -1;
    }
    if (promote && !version)
        return sv_error(q, SV_ERR_BAD_REQUEST, "field 'version' is required");
    rk_err err = {0};
    uint32_t now = 0, prev = 0;
    pthread_mutex_lock(&s->reg_mu);
    int rc = rk_registry_current(s->reg, name, &now, &prev, &err);
    if (!rc && promote) {
        rk_version_info vi;
        memset(&vi, 0, sizeof vi);
        rc = rk_registry_show(s->reg, name, (uint32_t)version, &vi, &err);
        rk_version_info_clear(&vi);
    }
    pthread_mutex_unlock(&s->reg_mu);
    /* A version this server cannot load is refused before the registry
     * changes, so a promote never leaves the current pointer on a model
     * that nobody can serve. */
    for (size_t i = 0; !rc && promote && i < s->nslots; i++) {
        sv_slot *sl = &s->slots[i];
        if (strcmp(sl->name, name) || sl->pinned) continue;
        sv_model *m = NULL;
        rk_err le = {0};
        if (load_version(s, sl, (uint32_t)version, &m, &le)) {
            rk_log(s->log, RK_LOG_WARN, "serve", "promote %s %llu refused: %s",
                   name, (unsigned long long)version, le.msg);
            return sv_error(q, SV_ERR_CONFLICT, "version %llu of '%s' does not "
                            "load (%s); still serving %u",
                            (unsigned long long)version, name, le.msg, now);
        }
        model_free(m);
        break;
    }
    if (!rc && promote) {
        pthread_mutex_lock(&s->reg_mu);
        rc = rk_registry_promote(s->reg, name, (uint32_t)version, &err);
        pthread_mutex_unlock(&s->reg_mu);
        if (!rc) now = (uint32_t)version;
        /* Switch this server at once instead of at the next poll. */
        for (size_t i = 0; !rc && i < s->nslots; i++)
            if (strcmp(s->slots[i].name, name) == 0) reload_slot(s, &s->slots[i]);
    } else if (!rc) {
        rc = sv_models_rollback(s, name, &now, &err);
    }
    if (rc == RK_ENOTFOUND) return sv_error(q, SV_ERR_UNKNOWN_MODEL, "%s", err.msg);
    if (rc) return sv_error_rk(q, rc, &err);
    (void)rk_buf_puts(q->out, "{\"request_id\":");
    sv_json_str(q->out, q->request_id);
    (void)rk_buf_puts(q->out, ",\"model\":");
    sv_json_str(q->out, name);
    (void)rk_buf_printf(q->out, ",\"current\":%u}", now);
    rk_log(s->log, RK_LOG_INFO, "serve", "%s %s: current is now %u",
           promote ? "promote" : "rollback", name, now);
    rk_audit_add(s->audit, 0, promote ? "promoted" : "rolled_back", name, now,
                 "over HTTP");
    return 0;
}

int sv_h_promote(sv_req *q) { return model_op(q, 1); }
int sv_h_rollback(sv_req *q) { return model_op(q, 0); }
