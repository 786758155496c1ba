/*
 * schema.c — declarations of entity attributes and event types.
 *
 * The schema is append-only: an attribute or event type keeps its index for
 * ever because stored records refer to it by index. Entries live in fixed
 * arrays and the counts are published with release stores, so readers on
 * other threads can look things up while the writer appends, without locks.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "store_int.h"

struct rk_schema {
    rk_attr_def attrs[RK_ENTITY_COUNT][RK_MAX_ATTRS];
    _Atomic uint32_t nattrs[RK_ENTITY_COUNT];
    rk_event_type_def events[RK_MAX_EVENT_TYPES];
    _Atomic uint32_t nevents;
};

static const char *const entity_names[RK_ENTITY_COUNT] = {"user", "item"};
/* NULL-terminated: also the choice lists of rk_conf_as_enum. */
static const char *const attr_type_names[] = {
    "numeric", "categorical", "categorical_list", "text", "timestamp",
    "vector", NULL};
static const char *const role_names[] = {"positive", "valued", "negative",
                                         "exposure", NULL};

/* Event types every store knows unless the config lists its own. */
static const struct {
    const char *name;
    rk_event_role role;
    double weight;
} default_events[] = {
    {"impression", RK_ROLE_EXPOSURE, 0},  {"click", RK_ROLE_POSITIVE, 1},
    {"like", RK_ROLE_POSITIVE, 3},        {"share", RK_ROLE_POSITIVE, 5},
    {"purchase", RK_ROLE_POSITIVE, 10},   {"watch", RK_ROLE_VALUED, 1},
    {"rating", RK_ROLE_VALUED, 1},        {"dislike", RK_ROLE_NEGATIVE, 1},
};

const char *rk_entity_name(rk_entity e)
{
    return (unsigned)e < RK_ENTITY_COUNT ? entity_names[e] : "unknown";
}

const char *rk_attr_type_name(rk_attr_type t)
{
    return (unsigned)t <= RK_ATTR_VECTOR ? attr_type_names[t] : "unknown";
}

const char *rk_event_role_name(rk_event_role r)
{
    return (unsigned)r <= RK_ROLE_EXPOSURE ? role_names[r] : "unknown";
}

int rk_attr_type_parse(const char *s, rk_attr_type *out)
{
    for (unsigned i = 0; i <= RK_ATTR_VECTOR; i++)
        if (strcmp(s, attr_type_names[i]) == 0) {
            *out = (rk_attr_type)i;
            return 0;
        }
    return RK_EINVAL;
}

int rk_event_role_parse(const char *s, rk_event_role *out)
{
    for (unsigned i = 0; i <= RK_ROLE_EXPOSURE; i++)
        if (strcmp(s, role_names[i]) == 0) {
            *out = (rk_event_role)i;
            return 0;
        }
    return RK_EINVAL;
}

int rk_schema_create(rk_schema **out)
{
    *out = rk_calloc(1, sizeof(rk_schema));
    return *out ? 0 : RK_ENOMEM;
}

void rk_schema_destroy(rk_schema *s)
{
    rk_free(s);
}

uint32_t rk_schema_nattrs(const rk_schema *s, rk_entity e)
{
    if ((unsigned)e >= RK_ENTITY_COUNT) return 0;
    return atomic_load_explicit(&((rk_schema *)s)->nattrs[e],
                                memory_order_acquire);
}

uint32_t rk_schema_nevent_types(const rk_schema *s)
{
    return atomic_load_explicit(&((rk_schema *)s)->nevents,
                                memory_order_acquire);
}

const rk_attr_def *rk_schema_attr(const rk_schema *s, rk_entity e, uint32_t idx)
{
    if (idx >= rk_schema_nattrs(s, e)) return NULL;
    return &s->attrs[e][idx];
}

const rk_event_type_def *rk_schema_event_type(const rk_schema *s, uint32_t idx)
{
    if (idx >= rk_schema_nevent_types(s)) return NULL;
    return &s->events[idx];
}

static int name_eq(const char *a, const char *b, size_t blen)
{
    return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

int rk_schema_find_attr(const rk_schema *s, rk_entity e, const char *name,
                        size_t len, uint32_t *idx)
{
    uint32_t n = rk_schema_nattrs(s, e);
    for (uint32_t i = 0; i < n; i++)
        if (name_eq(s->attrs[e][i].name, name, len)) {
            *idx = i;
            return 0;
        }
    return RK_ENOTFOUND;
}

int rk_schema_find_event_type(const rk_schema *s, const char *name, size_t len,
                              uint32_t *idx)
{
    uint32_t n = rk_schema_nevent_types(s);
    for (uint32_t i = 0; i < n; i++)
        if (name_eq(s->events[i].name, name, len)) {
            *idx = i;
            return 0;
        }
    return RK_ENOTFOUND;
}

/* Names are identifiers: letters, digits, '_', '-', '.', 1..RK_NAME_MAX. */
static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > RK_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

int rk_schema_add_attr(rk_schema *s, rk_entity e, const char *name,
                       rk_attr_type type, uint32_t dim, rk_err *err)
{
    if ((unsigned)e >= RK_ENTITY_COUNT || (unsigned)type > RK_ATTR_VECTOR)
        return rk_err_set(err, RK_EINVAL, "bad entity or attribute type");
    if (!valid_name(name))
        return rk_err_set(err, RK_ECONFIG,
                          "attribute name '%.80s' is not an identifier "
                          "(letters, digits, _ - .; at most %d bytes)",
                          name, RK_NAME_MAX);
    if (type == RK_ATTR_VECTOR && (dim == 0 || dim > RK_MAX_VECTOR_DIM))
        return rk_err_set(err, RK_ECONFIG,
                          "vector attribute '%s' needs dim in 1..%d", name,
                          RK_MAX_VECTOR_DIM);
    if (type != RK_ATTR_VECTOR) dim = 0;
    uint32_t idx;
    if (rk_schema_find_attr(s, e, name, strlen(name), &idx) == 0) {
        const rk_attr_def *d = &s->attrs[e][idx];
        if (d->type == type && d->dim == dim) return 0;
        return rk_err_set(err, RK_ECONFIG,
                          "%s attribute '%s' is %s (dim %u) in the store but "
                          "declared %s (dim %u); types cannot change",
                          entity_names[e], name, attr_type_names[d->type],
                          d->dim, attr_type_names[type], dim);
    }
    uint32_t n = rk_schema_nattrs(s, e);
    if (n >= RK_MAX_ATTRS)
        return rk_err_set(err, RK_ELIMIT, "more than %d %s attributes",
                          RK_MAX_ATTRS, entity_names[e]);
    rk_attr_def *d = &s->attrs[e][n];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = type;
    d->dim = dim;
    atomic_store_explicit(&s->nattrs[e], n + 1, memory_order_release);
    return 0;
}

int rk_schema_add_event_type(rk_schema *s, const char *name,
                             rk_event_role role, double weight, rk_err *err)
{
    if ((unsigned)role > RK_ROLE_EXPOSURE)
        return rk_err_set(err, RK_EINVAL, "bad event role");
    if (!valid_name(name))
        return rk_err_set(err, RK_ECONFIG,
                          "event type name '%.80s' is not an identifier",
                          name);
    if (!isfinite(weight) || weight < 0)
        return rk_err_set(err, RK_ECONFIG,
                          "event type '%s': weight must be finite and >= 0",
                          name);
    uint32_t idx;
    if (rk_schema_find_event_type(s, name, strlen(name), &idx) == 0) {
        rk_event_type_def *d = &s->events[idx];
        if (d->role != role)
            return rk_err_set(err, RK_ECONFIG,
                              "event type '%s' is %s in the store but "
                              "declared %s; roles cannot change",
                              name, role_names[d->role], role_names[role]);
        /* Weights are training parameters and may be retuned. */
        d->weight = weight;
        return 0;
    }
    uint32_t n = rk_schema_nevent_types(s);
    if (n >= RK_MAX_EVENT_TYPES)
        return rk_err_set(err, RK_ELIMIT, "more than %d event types",
                          RK_MAX_EVENT_TYPES);
    rk_event_type_def *d = &s->events[n];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->role = role;
    d->weight = weight;
    atomic_store_explicit(&s->nevents, n + 1, memory_order_release);
    return 0;
}

static int add_defaults(rk_schema *s, rk_err *err)
{
    for (size_t i = 0; i < sizeof default_events / sizeof default_events[0];
         i++) {
        int rc = rk_schema_add_event_type(s, default_events[i].name,
                                          default_events[i].role,
                                          default_events[i].weight, err);
        if (rc) return rc;
    }
    return 0;
}

/* entities: { user: { attributes: { name: type | {type, dim} } } } */
static int conf_entities(rk_schema *s, const rk_conf_node *ents, rk_err *err)
{
    static const char *const ent_keys[] = {"user", "item", NULL};
    static const char *const sect_keys[] = {"attributes", NULL};
    static const char *const attr_keys[] = {"type", "dim", NULL};
    int rc = rk_conf_check_keys(ents, ent_keys, err);
    if (rc) return rc;
    for (int e = 0; e < RK_ENTITY_COUNT; e++) {
        const rk_conf_node *sect = rk_conf_get(ents, entity_names[e]);
        if (!sect) continue;
        if ((rc = rk_conf_check_keys(sect, sect_keys, err))) return rc;
        const rk_conf_node *attrs = rk_conf_get(sect, "attributes");
        if (!attrs) continue;
        if (rk_conf_node_type(attrs) != RK_CONF_MAP)
            return rk_conf_error(err, attrs, "expected a map of name: type");
        for (size_t i = 0; i < rk_conf_len(attrs); i++) {
            const char *name;
            const rk_conf_node *a = rk_conf_at(attrs, i, &name);
            const rk_conf_node *tnode = a;
            int64_t dim = 0;
            if (rk_conf_node_type(a) == RK_CONF_MAP) {
                if ((rc = rk_conf_check_keys(a, attr_keys, err))) return rc;
                tnode = rk_conf_get(a, "type");
                if (!tnode) return rk_conf_error(err, a, "missing 'type'");
                rc = rk_conf_as_int_range(rk_conf_get(a, "dim"), 0, 1,
                                          RK_MAX_VECTOR_DIM, &dim, err);
                if (rc) return rc;
            }
            int t;
            rc = rk_conf_as_enum(tnode, -1, attr_type_names, &t, err);
            if (rc) return rc;
            if (t == RK_ATTR_VECTOR && dim == 0)
                return rk_conf_error(err, a,
                                     "vector attribute needs {type: vector, "
                                     "dim: N}");
            rk_err sub = {0};
            rc = rk_schema_add_attr(s, (rk_entity)e, name, (rk_attr_type)t,
                                    (uint32_t)dim, &sub);
            if (rc) return rk_conf_error(err, a, "%s", sub.msg);
        }
    }
    return 0;
}

/* events: { click: {role: positive, weight: 1} | role-name } */
static int conf_events(rk_schema *s, const rk_conf_node *evs, rk_err *err)
{
    static const char *const ev_keys[] = {"role", "weight", NULL};
    if (rk_conf_node_type(evs) != RK_CONF_MAP)
        return rk_conf_error(err, evs, "expected a map of event types");
    for (size_t i = 0; i < rk_conf_len(evs); i++) {
        const char *name;
        const rk_conf_node *ev = rk_conf_at(evs, i, &name);
        const rk_conf_node *rnode = ev;
        double weight = 1;
        int rc;
        if (rk_conf_node_type(ev) == RK_CONF_MAP) {
            if ((rc = rk_conf_check_keys(ev, ev_keys, err))) return rc;
            rnode = rk_conf_get(ev, "role");
            if (!rnode) return rk_conf_error(err, ev, "missing 'role'");
            if ((rc = rk_conf_as_float(rk_conf_get(ev, "weight"), 1, &weight,
                                       err)))
                return rc;
        }
        int role;
        if ((rc = rk_conf_as_enum(rnode, -1, role_names, &role, err)))
            return rc;
        if (role == RK_ROLE_EXPOSURE && rk_conf_get(ev, "weight") == NULL)
            weight = 0;
        rk_err sub = {0};
        rc = rk_schema_add_event_type(s, name, (rk_event_role)role, weight,
                                      &sub);
        if (rc) return rk_conf_error(err, ev, "%s", sub.msg);
    }
    return 0;
}

int rk_schema_from_conf(rk_schema **out, const rk_conf_node *root, rk_err *err)
{
    rk_schema *s;
    int rc = rk_schema_create(&s);
    if (rc) return rk_err_set(err, rc, "schema: out of memory");
    const rk_conf_node *ents = root ? rk_conf_get(root, "entities") : NULL;
    const rk_conf_node *evs = root ? rk_conf_get(root, "events") : NULL;
    if (ents) rc = conf_entities(s, ents, err);
    if (!rc) rc = evs ? conf_events(s, evs, err) : add_defaults(s, err);
    if (rc) {
        rk_schema_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

int rk__schema_merge(rk_schema *dst, const rk_schema *src, rk_err *err)
{
    for (int e = 0; e < RK_ENTITY_COUNT; e++)
        for (uint32_t i = 0; i < rk_schema_nattrs(src, (rk_entity)e); i++) {
            const rk_attr_def *d = &src->attrs[e][i];
            int rc = rk_schema_add_attr(dst, (rk_entity)e, d->name, d->type,
                                        d->dim, err);
            if (rc) return rc;
        }
    for (uint32_t i = 0; i < rk_schema_nevent_types(src); i++) {
        const rk_event_type_def *d = &src->events[i];
        int rc = rk_schema_add_event_type(dst, d->name, d->role, d->weight,
                                          err);
        if (rc) return rc;
    }
    return 0;
}

/* The persisted form is JSON so that a data directory can be inspected with
 * standard tools: {"version":1,"user":[{"name","type","dim"}],"item":[..],
 * "events":[{"name","role","weight"}]}. */
int rk__schema_to_json(const rk_schema *s, char **out)
{
    json_t *root = json_object();
    int rc = RK_ENOMEM;
    if (!root) return RK_ENOMEM;
    if (json_object_set_new(root, "version", json_integer(1))) goto done;
    for (int e = 0; e < RK_ENTITY_COUNT; e++) {
        json_t *arr = json_array();
        if (!arr || json_object_set_new(root, entity_names[e], arr)) goto done;
        for (uint32_t i = 0; i < rk_schema_nattrs(s, (rk_entity)e); i++) {
            const rk_attr_def *d = &s->attrs[e][i];
            json_t *o = json_pack("{s:s,s:s,s:i}", "name", d->name, "type",
                                  attr_type_names[d->type], "dim",
                                  (json_int_t)d->dim);
            if (!o || json_array_append_new(arr, o)) goto done;
        }
    }
    json_t *evs = json_array();
    if (!evs || json_object_set_new(root, "events", evs)) goto done;
    for (uint32_t i = 0; i < rk_schema_nevent_types(s); i++) {
        const rk_event_type_def *d = &s->events[i];
        json_t *o = json_pack("{s:s,s:s,s:f}", "name", d->name, "role",
                              role_names[d->role], "weight", d->weight);
        if (!o || json_array_append_new(evs, o)) goto done;
    }
    char *txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt) goto done;
    *out = rk_strdup(txt);
    /* json_dumps allocates with jansson's current allocator. */
    json_free_t jfree;
    json_get_alloc_funcs(NULL, &jfree);
    jfree(txt);
    rc = *out ? 0 : RK_ENOMEM;
done:
    json_decref(root);
    return rc;
}

int rk__schema_merge_json(rk_schema *s, const char *json, size_t len,
                          rk_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return rk_err_set(err, RK_ECORRUPT, "stored schema: %s", jerr.text);
    int rc = 0;
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        rc = rk_err_set(err, RK_EVERSION, "stored schema has version %lld; "
                        "this rankd reads version 1",
                        (long long)json_integer_value(ver));
        goto done;
    }
    for (int e = 0; e < RK_ENTITY_COUNT && !rc; e++) {
        json_t *arr = json_object_get(root, entity_names[e]);
        size_t i;
        json_t *o;
        json_array_foreach(arr, i, o) {
            const char *name = json_string_value(json_object_get(o, "name"));
            const char *type = json_string_value(json_object_get(o, "type"));
            json_int_t dim = json_integer_value(json_object_get(o, "dim"));
            rk_attr_type t;
            if (!name || !type || rk_attr_type_parse(type, &t)) {
                rc = rk_err_set(err, RK_ECORRUPT, "stored schema: bad %s "
                                "attribute #%zu", entity_names[e], i);
                break;
            }
            if ((rc = rk_schema_add_attr(s, (rk_entity)e, name, t,
                                         (uint32_t)dim, err)))
                break;
        }
    }
    json_t *evs = json_object_get(root, "events");
    size_t i;
    json_t *o;
    json_array_foreach(evs, i, o) {
        if (rc) break;
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *role = json_string_value(json_object_get(o, "role"));
        rk_event_role r;
        if (!name || !role || rk_event_role_parse(role, &r)) {
            rc = rk_err_set(err, RK_ECORRUPT, "stored schema: bad event "
                            "type #%zu", i);
            break;
        }
        rc = rk_schema_add_event_type(
            s, name, r, json_number_value(json_object_get(o, "weight")), err);
    }
done:
    json_decref(root);
    return rc;
}
