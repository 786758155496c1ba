/*
 * handlers.c — the write endpoints and the simple reads: /v1/events (one
 * event, a list, or {"events": [...]}; all or nothing, acknowledged only
 * once durable, aggregates merged in the same write), PUT/DELETE/GET
 * /v1/items/{id}, PUT/GET /v1/users/{id}, /v1/score (rows of features
 * scored by the ranker), /v1/openapi.json. After a write is durable the
 * in-memory state follows: users' histories, the candidate cache, the
 * hidden-item bitset, the A/B counters.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"


/* ---- /v1/events -------------------------------------------------------------- */

#define MAX_EVENTS_PER_REQUEST 100000

int sv_h_events(sv_req *q)
{
    rk_server *s = q->srv;
    sv_worker *w = q->w;
    json_t *list = NULL;
    if (!q->json)
        return sv_error(q, SV_ERR_BAD_REQUEST, "body: expected an event object, "
                        "a list of events or {\"events\": [...]}");
    if (json_is_array(q->json)) {
        list = q->json;
    } else if (json_is_object(q->json) && json_object_get(q->json, "events")) {
        if (json_object_size(q->json) != 1)
            return sv_error(q, SV_ERR_BAD_REQUEST, "body: {\"events\": [...]} "
                            "takes no other field");
        list = json_object_get(q->json, "events");
        if (!json_is_array(list))
            return sv_error(q, SV_ERR_BAD_REQUEST, "field 'events': expected a "
                            "list");
    }
    size_t n = list ? json_array_size(list) : 1;
    if (!n) return sv_error(q, SV_ERR_BAD_REQUEST, "no events");
    if (n > MAX_EVENTS_PER_REQUEST)
        return sv_error(q, SV_ERR_LIMIT_EXCEEDED, "%zu events, at most %d per "
                        "request", n, MAX_EVENTS_PER_REQUEST);
    rk_reader *r;
    rk_err err = {0};
    int rc = rk_store_reader(s->store, &r, &err);
    if (rc) return sv_error_rk(q, rc, &err);
    /* Per event: type index, and its external ids (for the histories). */
    uint32_t *types = rk_arena_alloc(&w->arena, n * sizeof *types);
    const char **users = rk_arena_alloc(&w->arena, n * sizeof *users);
    const char **items = rk_arena_alloc(&w->arena, n * sizeof *items);
    const char **rids = rk_arena_alloc(&w->arena, n * sizeof *rids);
    const char **eids = rk_arena_alloc(&w->arena, n * sizeof *eids);
    int64_t *ts = rk_arena_alloc(&w->arena, n * sizeof *ts);
    double *vals = rk_arena_alloc(&w->arena, n * sizeof *vals);
    uint8_t *hasv = rk_arena_alloc(&w->arena, n);
    if (!types || !users || !items || !rids || !eids || !ts || !vals || !hasv) {
        rk_reader_close(r);
        return sv_error(q, SV_ERR_UNAVAILABLE, "out of memory");
    }
    rk_batch_clear(w->batch);
    for (size_t i = 0; i < n; i++) {
        json_t *o = list ? json_array_get(list, i) : q->json;
        char where[48];
        if (list) snprintf(where, sizeof where, "events[%zu]: ", i);
        else where[0] = '\0';
        if (!json_is_object(o)) {
            rk_reader_close(r);
            return sv_error(q, SV_ERR_BAD_REQUEST, "%sexpected an event object",
                            where);
        }
        /* The API defaults an event's time to now. */
        json_t *tsv = json_object_get(o, "ts");
        if (!tsv || json_is_null(tsv))
            json_object_set_new(o, "ts", json_integer(q->now_ms));
        rk_io_record rec;
        rc = rk_io_parse_json(w->p_events, o, &rec, &err);
        if (!rc && rec.type != RK_IO_REC_EVENTS)
            rc = rk_err_set(&err, RK_EPARSE, "expected an event");
        if (rc) {
            rk_reader_close(r);
            return sv_error(q, SV_ERR_BAD_REQUEST, "%s%s", where, err.msg);
        }
        const rk_event_in *ev = &rec.events[0];
        rc = s->online ? rk_feat_batch_event(s->online, w->batch, ev, r, &err)
                       : rk_batch_event(w->batch, ev, &err);
        if (rc) {
            rk_reader_close(r);
            return rc == RK_ELIMIT
                       ? sv_error(q, SV_ERR_LIMIT_EXCEEDED, "%s%s", where, err.msg)
                       : sv_error(q, SV_ERR_BAD_REQUEST, "%s%s", where, err.msg);
        }
        uint32_t t = 0;
        rk_schema_find_event_type(s->schema, ev->type, strlen(ev->type), &t);
        types[i] = t;
        users[i] = rk_arena_strndup(&w->arena, ev->user, strlen(ev->user));
        items[i] = rk_arena_strndup(&w->arena, ev->item, strlen(ev->item));
        rids[i] = ev->request_id
                      ? rk_arena_strndup(&w->arena, ev->request_id,
                                         strlen(ev->request_id))
                      : NULL;
        eids[i] = ev->id ? rk_arena_strndup(&w->arena, ev->id, strlen(ev->id)) : NULL;
        ts[i] = ev->ts_ms;
        vals[i] = ev->value;
        hasv[i] = (uint8_t)ev->has_value;
        if (!users[i] || !items[i] || (ev->request_id && !rids[i]) ||
            (ev->id && !eids[i])) {
            rk_reader_close(r);
            return sv_error(q, SV_ERR_UNAVAILABLE, "out of memory");
        }
    }
    rk_reader_close(r);
    rk_write_result res;
    rc = rk_store_write(s->store, w->batch, &res, &err);
    rk_batch_clear(w->batch);
    if (rc) return sv_error_rk(q, rc, &err);
    atomic_fetch_add(&s->m.events_ingested, res.events);
    if (s->o.clock_event) {
        int64_t newest = ts[0];
        for (size_t i = 1; i < n; i++)
            if (ts[i] > newest) newest = ts[i];
        sv_clock_seen(s, newest);
    }
    /* Durable: now the in-memory views follow, for the events the store
     * appended only. An event whose id was already known (a client's
     * retry) was skipped as a duplicate and must not count twice in the
     * histories or the A/B counters. The batch's new events got the
     * consecutive numbers from first_seq on, in order, so an event with
     * an id is new exactly when its id maps to the next of them. */
    if (res.events && !rk_store_reader(s->store, &r, &err)) {
        uint64_t next = res.first_seq;
        for (size_t i = 0; i < n; i++) {
            if (res.duplicates && eids[i]) {
                uint64_t seq;
                if (rk_reader_event_by_id(r, eids[i], strlen(eids[i]), &seq) ||
                    seq != next)
                    continue;
            }
            next++;
            if (types[i] < RK_MAX_EVENT_TYPES)
                atomic_fetch_add(&s->m.events_by_type[types[i]], 1);
            uint32_t u, it;
            const rk_event_type_def *t = rk_schema_event_type(s->schema, types[i]);
            if (!t || rk_reader_lookup(r, RK_ENTITY_USER, users[i], strlen(users[i]), &u) ||
                rk_reader_lookup(r, RK_ENTITY_ITEM, items[i], strlen(items[i]), &it))
                continue;
            int seen = t->role != RK_ROLE_EXPOSURE && t->role != RK_ROLE_NEGATIVE;
            float wt = t->weight > 0 ? (float)t->weight : 1.0f;
            sv_history_add(s->hist, u, it, ts[i], wt, seen);
            if (seen) sv_ccache_invalidate(s->ccache, u);
            if (rids[i]) {
                sv_ab_event(s, rids[i], t->name, hasv[i], vals[i]);
                sv_online_event(s, rids[i], items[i], types[i], hasv[i], vals[i]);
            }
        }
        rk_reader_close(r);
    }
    (void)rk_buf_printf(q->out, "{\"request_id\":\"%s\",\"accepted\":%u,"
                        "\"duplicates\":%u}", q->request_id, res.events,
                        res.duplicates);
    return 0;
}

/* ---- entities ------------------------------------------------------------------- */

static int entity_write(sv_req *q, rk_entity e, int del)
{
    rk_server *s = q->srv;
    sv_worker *w = q->w;
    rk_err err = {0};
    int rc;
    rk_batch_clear(w->batch);
    int hidden = -1;
    if (del) {
        rk_reader *r;
        if ((rc = rk_store_reader(s->store, &r, &err))) return sv_error_rk(q, rc, &err);
        uint32_t id;
        int known = !rk_reader_lookup(r, e, q->param, strlen(q->param), &id);
        rk_reader_close(r);
        if (!known)
            return sv_error(q, SV_ERR_UNKNOWN_ITEM, "unknown item '%.64s'",
                            q->param);
        rc = rk_batch_delete(w->batch, e, q->param, &err);
    } else {
        json_t *o = q->json ? q->json : json_object();
        if (!o || !json_is_object(o)) {
            if (!q->json && o) json_decref(o);
            return sv_error(q, SV_ERR_BAD_REQUEST, "body: expected an object of "
                            "attributes (and optionally \"hidden\")");
        }
        json_t *id = json_object_get(o, "id");
        if (id && (!json_is_string(id) || strcmp(json_string_value(id), q->param))) {
            if (!q->json) json_decref(o);
            return sv_error(q, SV_ERR_BAD_REQUEST, "field 'id' differs from the "
                            "id in the path");
        }
        if (!id) json_object_set_new(o, "id", json_string(q->param));
        rk_io_record rec;
        rc = rk_io_parse_json(e == RK_ENTITY_ITEM ? w->p_items : w->p_users, o, &rec, &err);
        if (!q->json) json_decref(o);
        if (rc) return sv_error(q, SV_ERR_BAD_REQUEST, "%s", err.msg);
        if (rec.entity.deleted)
            return sv_error(q, SV_ERR_BAD_REQUEST, "use DELETE to delete");
        hidden = rec.entity.hidden;
        rc = rk_batch_upsert(w->batch, e, rec.entity.id, rec.entity.attrs,
                             rec.entity.nattrs, 0, &err);
        if (!rc && hidden >= 0)
            rc = rk_batch_hide(w->batch, e, rec.entity.id, hidden, &err);
    }
    if (rc) return sv_error_rk(q, rc, &err);
    rk_write_result res;
    rc = rk_store_write(s->store, w->batch, &res, &err);
    rk_batch_clear(w->batch);
    if (rc) return sv_error_rk(q, rc, &err);
    if (e == RK_ENTITY_ITEM && (del || hidden >= 0)) {
        rk_reader *r;
        uint32_t id;
        if (!rk_store_reader(s->store, &r, &err)) {
            if (!rk_reader_lookup(r, e, q->param, strlen(q->param), &id) &&
                sv_set_blocked(s, id, del ? 1 : hidden))
                rk_log(s->log, RK_LOG_ERROR, "serve", "hidden set: out of memory");
            rk_reader_close(r);
        }
    }
    (void)rk_buf_puts(q->out, "{\"request_id\":");
    sv_json_str(q->out, q->request_id);
    (void)rk_buf_printf(q->out, ",\"%s\":", rk_entity_name(e));
    sv_json_str(q->out, q->param);
    (void)rk_buf_printf(q->out, ",\"%s\":true}", del ? "deleted" : "stored");
    return 0;
}

int sv_h_item_put(sv_req *q) { return entity_write(q, RK_ENTITY_ITEM, 0); }
int sv_h_item_delete(sv_req *q) { return entity_write(q, RK_ENTITY_ITEM, 1); }
int sv_h_user_put(sv_req *q) { return entity_write(q, RK_ENTITY_USER, 0); }

static void attr_json(rk_buf *b, const rk_attr_def *d, const rk_attr_val *v)
{
    sv_json_str(b, d->name);
    (void)rk_buf_putc(b, ':');
    switch (v->type) {
    case RK_ATTR_NUMERIC: sv_json_num(b, v->num); break;
    case RK_ATTR_TIMESTAMP: {
        char t[32];
        rk_format_time_ms(v->ts_ms, t);
        sv_json_str(b, t);
        break;
    }
    case RK_ATTR_CATEGORICAL:
    case RK_ATTR_TEXT:
        (void)rk_buf_put_json_str(b, v->str, v->len);
        break;
    case RK_ATTR_CATEGORICAL_LIST:
        (void)rk_buf_putc(b, '[');
        for (uint32_t i = 0; i < v->n; i++) {
            if (i) (void)rk_buf_putc(b, ',');
            (void)rk_buf_put_json_str(b, v->list[i], v->list_lens[i]);
        }
        (void)rk_buf_putc(b, ']');
        break;
    case RK_ATTR_VECTOR:
        (void)rk_buf_putc(b, '[');
        for (uint32_t i = 0; i < v->dim; i++) {
            if (i) (void)rk_buf_putc(b, ',');
            sv_json_num(b, v->vec[i]);
        }
        (void)rk_buf_putc(b, ']');
        break;
    default: (void)rk_buf_puts(b, "null");
    }
}

int sv_h_entity_get(sv_req *q)
{
    rk_server *s = q->srv;
    rk_entity e = q->ep == SV_EP_ITEM_GET ? RK_ENTITY_ITEM : RK_ENTITY_USER;
    rk_reader *r;
    rk_err err = {0};
    int rc = rk_store_reader(s->store, &r, &err);
    if (rc) return sv_error_rk(q, rc, &err);
    uint32_t id;
    rk_entity_view v;
    int known = !rk_reader_lookup(r, e, q->param, strlen(q->param), &id);
    /* An id that only events brought in has no record: it is known, with
     * no attributes (a user who only clicked still has a history). */
    if (known && (rc = rk_reader_entity(r, e, id, &v)) == RK_ENOTFOUND) {
        memset(&v, 0, sizeof v);
        rc = 0;
    }
    if (known && rc) {
        rk_reader_close(r);
        return sv_error_rk(q, rc, &err);
    }
    if (!known || (v.flags & RK_ENTITY_DELETED)) {
        rk_reader_close(r);
        return sv_error(q, e == RK_ENTITY_ITEM ? SV_ERR_UNKNOWN_ITEM : SV_ERR_UNKNOWN_USER,
                        "unknown %s '%.64s'", rk_entity_name(e), q->param);
    }
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"id\":");
    sv_json_str(b, q->param);
    if (e == RK_ENTITY_ITEM)
        (void)rk_buf_printf(b, ",\"hidden\":%s",
                            v.flags & RK_ENTITY_HIDDEN ? "true" : "false");
    (void)rk_buf_puts(b, ",\"attributes\":{");
    for (uint32_t i = 0; i < v.nattrs; i++) {
        const rk_attr_def *d = rk_schema_attr(s->schema, e, v.attrs[i].attr);
        if (!d) continue;
        if (i) (void)rk_buf_putc(b, ',');
        attr_json(b, d, &v.attrs[i]);
    }
    (void)rk_buf_puts(b, "}");
    if (e == RK_ENTITY_USER) {
        uint32_t items[20];
        int64_t ts[20];
        size_t n = sv_history_get(s->hist, id, items, ts, NULL, 20, 0);
        (void)rk_buf_printf(b, ",\"recent_events\":%zu", n);
    }
    (void)rk_buf_puts(b, "}");
    rk_reader_close(r);
    return 0;
}

/* ---- /v1/score ---------------------------------------------------------------- */

/* {"rows": [{"features": {"amount": 12.5, "country": "DE"}}, ...]} or
 * {"rows": [{"num": {"0": 1.5}, "cat": {"3": "abc"}}]} for row-spec models:
 * each row is scored by the ranker through its own feature spec. Named
 * features become the request's context, so `context` features of the
 * spec read them; rows of labelled-dataset specs use num/cat indexes. */
static const char *const score_keys[] = {"rows", "model", NULL};

int sv_h_score(sv_req *q)
{
    rk_server *s = q->srv;
    sv_worker *w = q->w;
    if (!q->json || !json_is_object(q->json))
        return sv_error(q, SV_ERR_BAD_REQUEST, "body: expected {\"rows\": [...]}");
    if (sv_check_keys(q, q->json, "body", score_keys)) return -1;
    json_t *rows = sv_field(q, "rows");
    if (!rows || !json_is_array(rows) || !json_array_size(rows))
        return sv_error(q, SV_ERR_BAD_REQUEST, "field 'rows': expected a "
                        "non-empty list of rows");
    size_t n = json_array_size(rows);
    const char *mname = NULL;
    if (sv_get_str(q, q->json, "model", &mname, NULL, SV_NAME_MAX - 1) < 0) return -1;
    int slot = 0;
    if (mname) {
        slot = -1;
        for (size_t i = 0; i < s->nslots; i++)
            if (s->slots[i].kind == SV_SLOT_RANKER && !s->slots[i].pinned &&
                strcmp(s->slots[i].name, mname) == 0)
                slot = (int)i;
        if (slot < 0)
            return sv_error(q, SV_ERR_UNKNOWN_MODEL, "model '%s' is not served "
                            "(serve.ranker or an experiment names the served "
                            "rankers)", mname);
    }
    sv_model *m = sv_slot_acquire(&s->slots[slot]);
    if (!m) return sv_error(q, SV_ERR_UNAVAILABLE, "no ranking model is loaded");
    rk_feat_source *src = sv_worker_source(w, m->spec);
    rk_err err = {0};
    int rc = !src || sv_worker_fvecs(w, n) ? RK_ENOMEM : 0;
    rk_reader *r = NULL;
    if (!rc) rc = rk_store_reader(s->store, &r, &err);
    if (!rc) rk_feat_source_set_reader(src, r);
    /* Row storage for dataset specs. */
    uint32_t *nidx = rk_arena_alloc(&w->arena, 4096 * sizeof *nidx);
    double *nval = rk_arena_alloc(&w->arena, 4096 * sizeof *nval);
    uint32_t *cidx = rk_arena_alloc(&w->arena, 4096 * sizeof *cidx);
    const char **cval = rk_arena_alloc(&w->arena, 4096 * sizeof *cval);
    uint32_t *clen = rk_arena_alloc(&w->arena, 4096 * sizeof *clen);
    if (!nidx || !nval || !cidx || !cval || !clen) rc = RK_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *row = json_array_get(rows, i);
        if (!json_is_object(row)) {
            rc = RK_EINVAL;
            rk_err_set(&err, rc, "rows[%zu]: expected an object", i);
            break;
        }
        json_t *feats = json_object_get(row, "features");
        json_t *num = json_object_get(row, "num"), *cat = json_object_get(row, "cat");
        if (json_object_size(row) != (size_t)(!!feats + !!num + !!cat) ||
            (feats && !json_is_object(feats)) || (num && !json_is_object(num)) ||
            (cat && !json_is_object(cat))) {
            rc = RK_EINVAL;
            rk_err_set(&err, rc, "rows[%zu]: expected {\"features\": {...}} or "
                       "{\"num\": {...}, \"cat\": {...}}", i);
            break;
        }
        rk_feat_request fr;
        memset(&fr, 0, sizeof fr);
        fr.ts_ms = q->now_ms;
        char *ctx = NULL;
        rk_row rr;
        memset(&rr, 0, sizeof rr);
        if (feats) {
            const char *key;
            json_t *v;
            json_object_foreach(feats, key, v) {
                if (!json_is_number(v) && !json_is_string(v) && !json_is_null(v)) {
                    rc = RK_EINVAL;
                    rk_err_set(&err, rc, "rows[%zu].features.%.64s: expected a "
                               "number, string or null", i, key);
                    break;
                }
            }
            if (rc) break;
            ctx = json_dumps(feats, JSON_COMPACT);
            if (!ctx) rc = RK_ENOMEM;
            else if (strlen(ctx) > RK_MAX_CONTEXT)
                rc = rk_err_set(&err, RK_ELIMIT, "rows[%zu]: features over %d "
                                "bytes", i, RK_MAX_CONTEXT);
            fr.context = ctx;
            fr.context_len = ctx ? strlen(ctx) : 0;
        }
        if (!rc && (num || cat)) {
            const char *key;
            json_t *v;
            uint32_t nn = 0, nc = 0;
            json_object_foreach(num, key, v) {
                uint64_t idx;
                if (nn == 4096 || rk_parse_u64(key, strlen(key), &idx) ||
                    idx > UINT32_MAX || !json_is_number(v) ||
                    !isfinite(json_number_value(v))) {
                    rc = rk_err_set(&err, RK_EINVAL, "rows[%zu].num.%.32s: "
                                    "expected index: finite number", i, key);
                    break;
                }
                nidx[nn] = (uint32_t)idx;
                nval[nn++] = json_number_value(v);
            }
            json_object_foreach(cat, key, v) {
                if (rc) break;
                uint64_t idx;
                if (nc == 4096 || rk_parse_u64(key, strlen(key), &idx) ||
                    idx > UINT32_MAX || !json_is_string(v)) {
                    rc = rk_err_set(&err, RK_EINVAL, "rows[%zu].cat.%.32s: "
                                    "expected index: string", i, key);
                    break;
                }
                cidx[nc] = (uint32_t)idx;
                cval[nc] = json_string_value(v);
                clen[nc++] = (uint32_t)json_string_length(v);
            }
            rr.nnum = nn;
            rr.num_idx = nidx;
            rr.num_val = nval;
            rr.ncat = nc;
            rr.cat_idx = cidx;
            rr.cat_val = cval;
            rr.cat_len = clen;
            fr.row = &rr;
        }
        if (!rc) rc = rk_feat_compute(src, &fr, NULL, &w->fv[i], &err);
        /* json_dumps allocated with jansson's allocator, which is rk_malloc
         * once rk_mem_hook_libraries ran: free() here would abort. */
        if (ctx) {
            json_free_t jfree;
            json_get_alloc_funcs(NULL, &jfree);
            jfree(ctx);
        }
    }
    if (r) {
        rk_feat_source_set_reader(src, NULL);
        rk_reader_close(r);
    }
    float *out = rc ? NULL : rk_arena_alloc(&w->arena, n * sizeof *out);
    if (!rc && !out) rc = RK_ENOMEM;
    if (!rc) rc = rk_ranker_predict(m->ranker, w->fv, n, out, &err);
    if (rc) {
        sv_model_release(m);
        if (rc == RK_ENOMEM) return sv_error(q, SV_ERR_UNAVAILABLE, "out of memory");
        return sv_error_rk(q, rc, &err);
    }
    rk_buf *b = q->out;
    (void)rk_buf_puts(b, "{\"request_id\":");
    sv_json_str(b, q->request_id);
    (void)rk_buf_puts(b, ",\"scores\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) (void)rk_buf_putc(b, ',');
        sv_json_num(b, out[i]);
    }
    (void)rk_buf_printf(b, "],\"model\":{\"name\":\"%s\",\"version\":%u}}",
                        m->name, m->version);
    sv_model_release(m);
    return 0;
}
