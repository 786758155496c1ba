/*
 * labels.c — label join: logged requests (the feature log) meet the events
 * that followed them and become training rows.
 *
 * Three passes over one reader snapshot, so every pass sees the same data:
 *  1. the feature log's time index over [from, to): request id -> ts for
 *     the requests whose window has closed (keys only, nothing decoded);
 *  2. the events from min_seq on: each event of a configured type that
 *     carries the id of one of those requests, and arrived before the end
 *     of its window, folds into a per-(request, item) state (largest gain,
 *     negative and exposure flags); with match_user_item, events without a
 *     request id are kept per (user, item) with their timestamps;
 *  3. the entries themselves, in time order: each served item with a
 *     logged vector, labelled from its state, goes to the consumer — a
 *     training set's row (rk_labels_join) or a caller's function
 *     (rk_labels_visit: `rankd drift` scores the served predictions).
 * Memory is the request map plus the states, bounded by max_index entries;
 * nothing grows with the number of events that do not match.
 */
#include <math.h>
#include <string.h>

#include "rk_features.h"

#define DEFAULT_WINDOW_MS (30 * 60 * 1000)
#define DEFAULT_MAX_INDEX 4000000u
#define DEFAULT_MAX_GAIN 10.0

/* Per (request, item) state, packed into a map value: gain as float bits
 * in the low word, flags above. */
#define F_EXPOSED 1u
#define F_NEGATIVE 2u

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

static void add_type(rk_label_conf *c, const char *name, rk_label_role role,
                     double weight)
{
    if (c->ntypes >= RK_MAX_EVENT_TYPES) return;
    rk_label_type *t = &c->types[c->ntypes++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->role = role;
    t->weight = weight;
}

void rk_label_conf_default(rk_label_conf *c, const rk_schema *schema)
{
    memset(c, 0, sizeof *c);
    c->window_ms = DEFAULT_WINDOW_MS;
    c->mode = RK_LABEL_WEIGHTED;
    c->max_gain = DEFAULT_MAX_GAIN;
    c->max_index = DEFAULT_MAX_INDEX;
    c->schema = schema;
    if (!schema) {
        add_type(c, "impression", RK_LABEL_EXPOSURE, 0);
        add_type(c, "click", RK_LABEL_POSITIVE, 1);
        add_type(c, "like", RK_LABEL_POSITIVE, 3);
        add_type(c, "purchase", RK_LABEL_POSITIVE, 10);
        add_type(c, "watch", RK_LABEL_VALUED, 1);
        add_type(c, "dislike", RK_LABEL_NEGATIVE, 0);
        return;
    }
    for (uint32_t i = 0; i < rk_schema_nevent_types(schema); i++) {
        const rk_event_type_def *d = rk_schema_event_type(schema, i);
        static const rk_label_role by_role[] = {
            [RK_ROLE_POSITIVE] = RK_LABEL_POSITIVE, [RK_ROLE_VALUED] = RK_LABEL_VALUED,
            [RK_ROLE_NEGATIVE] = RK_LABEL_NEGATIVE, [RK_ROLE_EXPOSURE] = RK_LABEL_EXPOSURE};
        if (d && (unsigned)d->role <= RK_ROLE_EXPOSURE)
            add_type(c, d->name, by_role[d->role], d->weight);
    }
}

/* A label window: a positive duration. */
static int parse_window(const rk_conf_node *n, int64_t *out, rk_err *err)
{
    int rc = rk_conf_as_duration_ms(n, *out, out, err);
    if (!rc && *out <= 0)
        rc = rk_conf_error(err, n, "expected a positive duration like 30m, 2h, "
                           "90s or 500ms");
    return rc;
}

static int find_type(const rk_label_conf *c, const char *name)
{
    for (uint32_t i = 0; i < c->ntypes; i++)
        if (strcmp(c->types[i].name, name) == 0) return (int)i;
    return -1;
}

/* Replaces every type of `role` with the ones listed in n: a list of names
 * (exposure, negative) or a map name -> weight (positive, valued). */
static int read_role(rk_label_conf *c, const rk_conf_node *n, rk_label_role role,
                     int weighted, rk_err *err)
{
    if (!n) return 0;
    rk_conf_type want = weighted ? RK_CONF_MAP : RK_CONF_LIST;
    if (rk_conf_node_type(n) != want)
        return rk_conf_error(err, n, "expected a %s, got %s", weighted ? "map of event type: weight"
                                                                       : "list of event types",
                             rk_conf_type_name(rk_conf_node_type(n)));
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->ntypes; i++)
        if (c->types[i].role != role) c->types[k++] = c->types[i];
    c->ntypes = k;
    for (size_t i = 0; i < rk_conf_len(n); i++) {
        const char *key = NULL, *name;
        const rk_conf_node *el = rk_conf_at(n, i, &key);
        double w = 0;
        int rc;
        if (weighted) {
            name = key;
            if ((rc = rk_conf_as_float(el, 0, &w, err))) return rc;
            if (!(w > 0) || !isfinite(w))
                return rk_conf_error(err, el, "expected a positive weight");
        } else if ((rc = rk_conf_as_str(el, NULL, &name, err))) {
            return rc;
        }
        if (!name || !*name || strlen(name) > RK_NAME_MAX)
            return rk_conf_error(err, el, "expected an event type name");
        if (c->schema && rk_schema_find_event_type(c->schema, name, strlen(name), &(uint32_t){0}))
            return rk_conf_error(err, el, "unknown event type '%s'", name);
        if (find_type(c, name) >= 0)
            return rk_conf_error(err, el, "event type '%s' has two roles", name);
        if (c->ntypes >= RK_MAX_EVENT_TYPES)
            return rk_conf_error(err, el, "more than %d event types", RK_MAX_EVENT_TYPES);
        add_type(c, name, role, w);
    }
    return 0;
}

int rk_label_conf_from_conf(rk_label_conf *c, const rk_conf_node *root,
                            const rk_schema *schema, rk_err *err)
{
    rk_label_conf_default(c, schema);
    const rk_conf_node *l = rk_conf_get(root, "labels");
    if (!l) return 0;
    static const char *const keys[] = {"window", "mode", "exposure", "require_exposure",
                                       "positive", "valued", "valued_min", "max_gain",
                                       "negative", "match_user_item", "max_index", NULL};
    static const char *const modes[] = {"weighted", "graded", NULL};
    int mode = 0, rc;
    int64_t maxi;
    if ((rc = rk_conf_check_keys(l, keys, err)) ||
        (rc = parse_window(rk_conf_get(l, "window"), &c->window_ms, err)) ||
        (rc = rk_conf_as_enum(rk_conf_get(l, "mode"), 0, modes, &mode, err)) ||
        (rc = rk_conf_as_bool(rk_conf_get(l, "require_exposure"), 0, &c->require_exposure,
                              err)) ||
        (rc = rk_conf_as_bool(rk_conf_get(l, "match_user_item"), 0, &c->match_user_item,
                              err)) ||
        (rc = rk_conf_as_float(rk_conf_get(l, "valued_min"), 0, &c->valued_min, err)) ||
        (rc = rk_conf_as_float(rk_conf_get(l, "max_gain"), DEFAULT_MAX_GAIN, &c->max_gain,
                               err)) ||
        (rc = rk_conf_as_int_range(rk_conf_get(l, "max_index"), DEFAULT_MAX_INDEX, 1000,
                                   INT64_C(1) << 40, &maxi, err)))
        return rc;
    if (!isfinite(c->valued_min))
        return rk_conf_error(err, rk_conf_get(l, "valued_min"), "expected a finite number");
    if (!(c->max_gain > 0) || !isfinite(c->max_gain))
        return rk_conf_error(err, rk_conf_get(l, "max_gain"), "expected a positive number");
    c->mode = (rk_label_mode)mode;
    c->max_index = (size_t)maxi;
    if ((rc = read_role(c, rk_conf_get(l, "exposure"), RK_LABEL_EXPOSURE, 0, err)) ||
        (rc = read_role(c, rk_conf_get(l, "positive"), RK_LABEL_POSITIVE, 1, err)) ||
        (rc = read_role(c, rk_conf_get(l, "valued"), RK_LABEL_VALUED, 1, err)) ||
        (rc = read_role(c, rk_conf_get(l, "negative"), RK_LABEL_NEGATIVE, 0, err)))
        return rc;
    if (c->require_exposure) {
        uint32_t i = 0;
        while (i < c->ntypes && c->types[i].role != RK_LABEL_EXPOSURE) i++;
        if (i == c->ntypes)
            return rk_conf_error(err, rk_conf_get(l, "require_exposure"),
                                 "require_exposure needs an exposure event type");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Join                                                                      */
/* ------------------------------------------------------------------------ */

/* An event without a request id, kept for match_user_item; chained per
 * (user, item) through `next` (index + 1, 0 ends). */
typedef struct loose_ev {
    int64_t ts;
    float gain;
    uint32_t flags;
    size_t next;
} loose_ev;

typedef struct join {
    rk_reader *r;
    const rk_label_conf *c;
    int64_t now_ms, from_ts, to_ts;
    uint32_t ndense;  /* logged vector width required, 0 any */
    rk_label_fn fn;   /* gets each labelled item */
    void *arg;
    rk_join_stats *st;
    rk_err *err;
    /* Event type index -> label type, -1 when the type plays no role. */
    int type_of[RK_MAX_EVENT_TYPES];
    rk_map *reqs;     /* request id -> ts */
    rk_map *pairs;    /* u32 item + request id -> packed state */
    rk_map *loose;    /* u32 user + u32 item -> head of a loose_ev chain */
    RK_VEC(loose_ev) evs;
} join;

static size_t indexed(const join *j)
{
    return rk_map_size(j->reqs) + rk_map_size(j->pairs) + j->evs.n;
}

static int over_limit(join *j)
{
    return rk_err_set(j->err, RK_ELIMIT,
                      "label join: more than %zu requests and events to index "
                      "(labels.max_index); join a shorter time range",
                      j->c->max_index);
}

static int req_cb(void *arg, const char *rid, size_t len, int64_t ts)
{
    join *j = arg;
    if (ts > INT64_MAX - j->c->window_ms || ts + j->c->window_ms > j->now_ms) {
        j->st->pending++;
        return 0;
    }
    if (indexed(j) >= j->c->max_index) return over_limit(j);
    int rc = rk_map_put(j->reqs, rid, len, (uint64_t)ts);
    return rc ? rk_err_set(j->err, rc, "label join: out of memory") : 0;
}

void rk_label_type_map(const rk_label_conf *c, int map[RK_MAX_EVENT_TYPES])
{
    for (int i = 0; i < RK_MAX_EVENT_TYPES; i++) map[i] = -1;
    for (uint32_t i = 0; c->schema && i < c->ntypes; i++) {
        uint32_t idx;
        const char *n = c->types[i].name;
        if (rk_schema_find_event_type(c->schema, n, strlen(n), &idx) == 0 &&
            idx < RK_MAX_EVENT_TYPES)
            map[idx] = (int)i;
    }
}

float rk_label_gain(const rk_label_conf *c, const rk_label_type *t, int has_value,
                    double value)
{
    double g = 0;
    if (t->role == RK_LABEL_POSITIVE) g = t->weight;
    else if (t->role == RK_LABEL_VALUED && has_value && value > c->valued_min)
        g = t->weight * value;
    if (g > c->max_gain) g = c->max_gain;
    return g > 0 ? (float)g : 0.0f;
}

int rk_label_value(const rk_label_conf *c, float gain, int negative, float *label,
                   float *weight)
{
    *label = 0;
    *weight = 1;
    if (negative || !(gain > 0)) return 0;
    if (c->mode == RK_LABEL_GRADED) *label = gain;
    else {
        *label = 1;
        *weight = gain;
    }
    return 1;
}

/* The gain and flags one event contributes. */
static void contribution(const join *j, const rk_event *ev, float *gain, uint32_t *flags)
{
    const rk_label_type *t = &j->c->types[j->type_of[ev->type]];
    *flags = t->role == RK_LABEL_EXPOSURE ? F_EXPOSED
             : t->role == RK_LABEL_NEGATIVE ? F_NEGATIVE : 0;
    *gain = rk_label_gain(j->c, t, ev->has_value, ev->value);
}

static uint64_t pack(float gain, uint32_t flags)
{
    uint32_t b;
    memcpy(&b, &gain, 4);
    return (uint64_t)flags << 32 | b;
}

static void unpack(uint64_t v, float *gain, uint32_t *flags)
{
    uint32_t b = (uint32_t)v;
    memcpy(gain, &b, 4);
    *flags = (uint32_t)(v >> 32);
}

static int event_cb(void *arg, const rk_event *ev)
{
    join *j = arg;
    j->st->events_scanned++;
    if (ev->seq > j->st->max_seq) j->st->max_seq = ev->seq;
    if (ev->type >= RK_MAX_EVENT_TYPES || j->type_of[ev->type] < 0) return 0;
    float gain;
    uint32_t flags;
    int rc;
    if (ev->request_id && ev->request_id_len) {
        uint64_t ts;
        if (rk_map_get(j->reqs, ev->request_id, ev->request_id_len, &ts) != 0) return 0;
        /* Only the end of the window bounds an event with the request's id:
         * it cannot belong to anything else, and a client clock running a
         * little behind the server's must not lose it. */
        if (ev->ts_ms >= (int64_t)ts + j->c->window_ms) return 0;
        unsigned char key[4 + RK_KV_KEY_MAX];
        if (ev->request_id_len > RK_KV_KEY_MAX) return 0;
        memcpy(key, &ev->item, 4);
        memcpy(key + 4, ev->request_id, ev->request_id_len);
        size_t kl = 4 + ev->request_id_len;
        contribution(j, ev, &gain, &flags);
        uint64_t old;
        float g0 = 0;
        uint32_t f0 = 0;
        if (rk_map_get(j->pairs, key, kl, &old) == 0) unpack(old, &g0, &f0);
        else if (indexed(j) >= j->c->max_index) return over_limit(j);
        if (gain > g0) g0 = gain;
        rc = rk_map_put(j->pairs, key, kl, pack(g0, f0 | flags));
        if (rc) return rk_err_set(j->err, rc, "label join: out of memory");
        j->st->events_matched++;
        return 0;
    }
    if (!j->c->match_user_item) return 0;
    /* Loose events matter only if some request in range could own them. */
    if (ev->ts_ms < j->from_ts ||
        (j->to_ts <= INT64_MAX - j->c->window_ms && ev->ts_ms >= j->to_ts + j->c->window_ms))
        return 0;
    if (indexed(j) >= j->c->max_index) return over_limit(j);
    uint32_t key[2] = {ev->user, ev->item};
    uint64_t head = 0;
    (void)rk_map_get(j->loose, key, sizeof key, &head);
    contribution(j, ev, &gain, &flags);
    loose_ev le = {ev->ts_ms, gain, flags, (size_t)head};
    if ((rc = rk_vec_push(&j->evs, le)) ||
        (rc = rk_map_put(j->loose, key, sizeof key, j->evs.n)))
        return rk_err_set(j->err, rc, "label join: out of memory");
    return 0;
}

static int entry_cb(void *arg, const rk_flog_entry *e)
{
    join *j = arg;
    size_t rl = strlen(e->request_id);
    uint64_t ts;
    /* Pending requests (and time keys the first pass did not take) are
     * absent from the map; they were counted there. */
    if (rk_map_get(j->reqs, e->request_id, rl, &ts) != 0 || (int64_t)ts != e->ts_ms) return 0;
    if (j->c->model && (strcmp(e->model, j->c->model) != 0 ||
                        (j->c->model_version && e->model_version != j->c->model_version))) {
        j->st->skipped++;
        return 0;
    }
    /* Items served without a vector (exploration slots, fallbacks) are
     * not rows; any other width means another feature space. */
    for (uint32_t i = 0; j->ndense && i < e->nitems; i++)
        if (e->items[i].x.ndense && e->items[i].x.ndense != j->ndense) {
            j->st->skipped++;
            return 0;
        }
    j->st->requests++;
    uint32_t user = 0;
    int have_user = j->c->match_user_item && e->user[0] &&
                    rk_reader_lookup(j->r, RK_ENTITY_USER, e->user, strlen(e->user), &user) == 0;
    for (uint32_t i = 0; i < e->nitems; i++) {
        const rk_flog_item *it = &e->items[i];
        if (!it->x.ndense) continue;
        float gain = 0;
        uint32_t flags = 0, item;
        if (rk_reader_lookup(j->r, RK_ENTITY_ITEM, it->item, strlen(it->item), &item) == 0) {
            unsigned char key[4 + RK_KV_KEY_MAX];
            uint64_t v;
            memcpy(key, &item, 4);
            memcpy(key + 4, e->request_id, rl);
            if (rl <= RK_KV_KEY_MAX && rk_map_get(j->pairs, key, 4 + rl, &v) == 0)
                unpack(v, &gain, &flags);
            uint32_t lk[2] = {user, item};
            uint64_t h;
            if (have_user && rk_map_get(j->loose, lk, sizeof lk, &h) == 0) {
                for (size_t k = (size_t)h; k; k = j->evs.v[k - 1].next) {
                    const loose_ev *le = &j->evs.v[k - 1];
                    if (le->ts < e->ts_ms || le->ts >= e->ts_ms + j->c->window_ms) continue;
                    if (le->gain > gain) gain = le->gain;
                    flags |= le->flags;
                    j->st->events_matched++;
                }
            }
        }
        if (j->c->require_exposure && !(flags & F_EXPOSED)) {
            j->st->unexposed++;
            continue;
        }
        float label, weight;
        if (rk_label_value(j->c, gain, flags & F_NEGATIVE, &label, &weight))
            j->st->positives++;
        else if (flags & F_NEGATIVE)
            j->st->negatives++;
        int rc = j->fn(j->arg, e, i, label, weight);
        if (rc < 0) {
            if (j->err && j->err->code != rc)
                rk_err_set(j->err, rc, "label join: %s", rk_strerror(rc));
            return rc;
        }
        if (rc > 0) j->st->skipped++;
        else j->st->rows++;
    }
    return 0;
}

/* rk_labels_join's consumer: each labelled item becomes a row of the set,
 * grouped by its request. */
typedef struct set_sink {
    rk_trainset *out;
    rk_err *err;
} set_sink;

static int add_row(void *arg, const rk_flog_entry *e, uint32_t i, float label, float weight)
{
    set_sink *k = arg;
    uint64_t group = rk_hash64(e->request_id, strlen(e->request_id), 0);
    if (group == 0) group = 1; /* 0 means "no group" */
    int rc = rk_trainset_add(k->out, &e->items[i].x, label, weight, group, e->ts_ms);
    /* A hashed index beyond the set's hash_bits: logged by a model with
     * another feature space. */
    if (rc == RK_EINVAL) return 1;
    if (rc)
        return rk_err_set(k->err, rc, "label join: training set: %s",
                          rc == RK_ELIMIT ? "memory budget exceeded" : "out of memory");
    return 0;
}

int rk_labels_visit(rk_reader *r, const rk_label_conf *c, int64_t now_ms,
                    int64_t from_ts, int64_t to_ts, uint32_t ndense,
                    rk_label_fn fn, void *arg, rk_join_stats *st, rk_err *err)
{
    rk_join_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    if (err) rk_err_clear(err);
    if (!c->schema)
        return rk_err_set(err, RK_EINVAL, "label join: the label config has no schema");
    if (c->window_ms <= 0)
        return rk_err_set(err, RK_EINVAL, "label join: window must be positive");
    if (from_ts >= to_ts) return 0;
    join j = {.r = r, .c = c, .now_ms = now_ms, .from_ts = from_ts, .to_ts = to_ts,
              .ndense = ndense, .fn = fn, .arg = arg, .st = st, .err = err};
    rk_label_type_map(c, j.type_of);
    int rc = rk_map_create(&j.reqs, 0);
    if (rc == 0) rc = rk_map_create(&j.pairs, 0);
    if (rc == 0) rc = rk_map_create(&j.loose, 0);
    if (rc) {
        rc = rk_err_set(err, rc, "label join: out of memory");
        goto done;
    }
    if ((rc = rk_flog_scan_keys(r, from_ts, to_ts, req_cb, &j, err))) goto done;
    if (rk_map_size(j.reqs) == 0) goto done;
    rc = rk_reader_scan_events(r, c->min_seq, event_cb, &j);
    if (rc) {
        /* event_cb sets err for its own failures; anything else is the
         * store's. */
        if (!err || err->code != rc)
            rk_err_set(err, rc, "label join: event scan: %s", rk_reader_errmsg(r));
        goto done;
    }
    rc = rk_flog_scan(r, from_ts, to_ts, entry_cb, &j, err);
done:
    rk_map_destroy(j.reqs);
    rk_map_destroy(j.pairs);
    rk_map_destroy(j.loose);
    rk_vec_free(&j.evs);
    return rc;
}

int rk_labels_join(rk_reader *r, const rk_label_conf *c, int64_t now_ms,
                   int64_t from_ts, int64_t to_ts, rk_trainset *out,
                   rk_join_stats *st, rk_err *err)
{
    set_sink k = {out, err};
    return rk_labels_visit(r, c, now_ms, from_ts, to_ts, out ? rk_trainset_ndense(out) : 0,
                           add_row, &k, st, err);
}
