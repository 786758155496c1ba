/*
 * lmdb.c — the embedded storage backend on LMDB.
 *
 * One LMDB environment in the data directory with named databases:
 *   meta            format version, schema (JSON), entity counters
 *   ids.user/item   external id  -> u32 dense id
 *   rid.user/item   u32 dense id -> external id        (integer keys)
 *   users, items    u32 dense id -> entity record       (integer keys)
 *   events          u64 seq      -> event record        (integer keys, append)
 *   evid            xxh3-128 of an event id -> u64 seq  (de-duplication)
 *   datasets        name -> {u32 id, u64 next row seq, u64 rows}
 *   rows            u32 dataset id (BE) + u64 seq (BE) -> row record
 *
 * Only the store's writer thread writes, one transaction per group commit,
 * so the in-memory counters (next seq, next ids, dataset state) and the id
 * caches are touched by that thread alone. If a commit fails they are
 * reloaded from the last committed state. An flock on rankd.lock keeps a
 * second writing process out: its counters would collide with ours.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"

#define FORMAT_KEY "format"
#define FORMAT_VAL "rankd-store 1"

typedef struct counters {
    uint64_t hidden[RK_ENTITY_COUNT];
    uint64_t deleted[RK_ENTITY_COUNT];
} counters;

typedef struct dataset_state {
    uint32_t id;
    uint64_t next_seq;
    uint64_t rows;
    int dirty;
    char name[RK_NAME_MAX + 1];
} dataset_state;

typedef struct lm_be {
    MDB_env *env;
    MDB_dbi meta, ids[RK_ENTITY_COUNT], rids[RK_ENTITY_COUNT],
        ents[RK_ENTITY_COUNT], events, evid, datasets, rows, kv;
    int read_only;
    int lock_fd;
    rk_schema *schema;
    /* Writer state (writer thread only). */
    uint64_t next_seq;
    uint32_t next_id[RK_ENTITY_COUNT];
    counters cnt;
    int cnt_dirty;       /* cnt changed in the current transaction */
    rk_map *idcache[RK_ENTITY_COUNT];
    rk_map *dsindex; /* dataset name -> index in ds */
    RK_VEC(dataset_state) ds;
    uint32_t next_ds_id;
    rk_buf rec;
    rk_arena scratch;
    /* Cursor on `events` for the current write transaction, opened by its
     * first event. Appending through one cursor that stays on the last
     * leaf skips the root-to-leaf search (and its dirty-page lookups) that
     * a fresh cursor in every mdb_put costs. */
    MDB_cursor *evcur;
    MDB_cursor *ridcur[RK_ENTITY_COUNT]; /* same, for rid.user/item */
    const rk__merge_op *merge;  /* RK_KV_TABLES entries, owned by the store */
    rk_buf merged;              /* a merge function's output */
    int kv_code;                /* rk code of a failed kv op, 0 = none */
    unsigned kv_table;          /* its table */
    rk__changes *chg;           /* commit hook's change list, NULL = off */
    uint64_t last_txn;          /* number of the last commit */
} lm_be;

typedef struct lm_rd {
    lm_be *be;
    MDB_txn *txn;
} lm_rd;

static const char *const ids_names[] = {"ids.user", "ids.item"};
static const char *const rids_names[] = {"rid.user", "rid.item"};
static const char *const ents_names[] = {"users", "items"};

/* Maps an LMDB or errno code to an rk code with a message. */
static int lm_err(rk_err *err, int rc, const char *what)
{
    int code;
    switch (rc) {
    case MDB_NOTFOUND: code = RK_ENOTFOUND; break;
    case MDB_MAP_FULL:
        return rk_err_set(err, RK_EFULL, "%s: store is full (raise "
                          "store.map_size_mb)", what);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID: code = RK_ECORRUPT; break;
    case MDB_VERSION_MISMATCH: code = RK_EVERSION; break;
    case MDB_READERS_FULL: code = RK_EBUSY; break;
    case ENOMEM: code = RK_ENOMEM; break;
    default: code = rc > 0 ? RK_EIO : RK_ESTORE; break;
    }
    return rk_err_set(err, code, "%s: %s", what, mdb_strerror(rc));
}

/* ---- writer state ------------------------------------------------------- */

static int last_int_key(MDB_txn *txn, MDB_dbi dbi, uint64_t *out, int *found)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc) return rc;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    *found = rc == 0;
    if (rc == 0) {
        if (k.mv_size == 8) memcpy(out, k.mv_data, 8);
        else if (k.mv_size == 4) {
            uint32_t x;
            memcpy(&x, k.mv_data, 4);
            *out = x;
        } else rc = MDB_CORRUPTED;
    } else if (rc == MDB_NOTFOUND) rc = 0;
    mdb_cursor_close(c);
    return rc;
}

static int load_datasets(lm_be *be, MDB_txn *txn)
{
    MDB_cursor *c;
    MDB_val k, v;
    be->ds.n = 0;
    be->next_ds_id = 1;
    rk_map_clear(be->dsindex);
    int rc = mdb_cursor_open(txn, be->datasets, &c);
    if (rc) return rc;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        dataset_state d = {0};
        if (v.mv_size != 20 || k.mv_size > RK_NAME_MAX) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&d.id, v.mv_data, 4);
        memcpy(&d.next_seq, (char *)v.mv_data + 4, 8);
        memcpy(&d.rows, (char *)v.mv_data + 12, 8);
        memcpy(d.name, k.mv_data, k.mv_size);
        if (d.id >= be->next_ds_id) be->next_ds_id = d.id + 1;
        if (rk_vec_push(&be->ds, d) ||
            rk_map_put(be->dsindex, k.mv_data, k.mv_size, be->ds.n - 1)) {
            rc = ENOMEM;
            break;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* (Re)loads every counter the writer keeps in memory from committed data. */
static int load_state(lm_be *be, MDB_txn *txn)
{
    uint64_t last;
    int found, rc = last_int_key(txn, be->events, &last, &found);
    if (rc) return rc;
    be->next_seq = found ? last + 1 : 1;
    for (int e = 0; e < RK_ENTITY_COUNT; e++) {
        if ((rc = last_int_key(txn, be->rids[e], &last, &found))) return rc;
        be->next_id[e] = found ? (uint32_t)last + 1 : 0;
        rk_map_clear(be->idcache[e]);
    }
    MDB_val k = {8, "counters"}, v;
    memset(&be->cnt, 0, sizeof be->cnt);
    be->cnt_dirty = 0;
    rc = mdb_get(txn, be->meta, &k, &v);
    if (rc == 0 && v.mv_size == sizeof be->cnt) memcpy(&be->cnt, v.mv_data, v.mv_size);
    else if (rc == 0) return MDB_CORRUPTED;
    else if (rc != MDB_NOTFOUND) return rc;
    return load_datasets(be, txn);
}

static int reload_state(lm_be *be)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(be->env, NULL, MDB_RDONLY, &txn);
    if (rc) return rc;
    rc = load_state(be, txn);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- open / close -------------------------------------------------------- */

static int open_dbis(lm_be *be, MDB_txn *txn, unsigned create)
{
    int rc = mdb_dbi_open(txn, "meta", create, &be->meta);
    for (int e = 0; !rc && e < RK_ENTITY_COUNT; e++) {
        rc = mdb_dbi_open(txn, ids_names[e], create, &be->ids[e]);
        if (!rc) rc = mdb_dbi_open(txn, rids_names[e], create | MDB_INTEGERKEY,
                                   &be->rids[e]);
        if (!rc) rc = mdb_dbi_open(txn, ents_names[e], create | MDB_INTEGERKEY,
                                   &be->ents[e]);
    }
    if (!rc) rc = mdb_dbi_open(txn, "events", create | MDB_INTEGERKEY, &be->events);
    if (!rc) rc = mdb_dbi_open(txn, "evid", create, &be->evid);
    if (!rc) rc = mdb_dbi_open(txn, "datasets", create, &be->datasets);
    if (!rc) rc = mdb_dbi_open(txn, "rows", create, &be->rows);
    if (!rc) rc = mdb_dbi_open(txn, "kv", create, &be->kv);
    return rc;
}

static int put_schema(lm_be *be, MDB_txn *txn, const rk_schema *s)
{
    char *json;
    int rc = rk__schema_to_json(s, &json);
    if (rc) return ENOMEM;
    MDB_val k = {6, "schema"}, v = {strlen(json), json};
    rc = mdb_put(txn, be->meta, &k, &v, 0);
    rk_free(json);
    return rc;
}

/* Checks the format marker and merges schemas; writes them when writable. */
static int init_meta(lm_be *be, MDB_txn *txn, rk_schema *schema,
                     const rk_schema *declared, rk_err *err)
{
    MDB_val k = {sizeof FORMAT_KEY - 1, FORMAT_KEY}, v;
    int rc = mdb_get(txn, be->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        if (be->read_only)
            return rk_err_set(err, RK_ENOTFOUND, "no rankd store here");
        v.mv_data = FORMAT_VAL;
        v.mv_size = sizeof FORMAT_VAL - 1;
        if ((rc = mdb_put(txn, be->meta, &k, &v, 0)))
            return lm_err(err, rc, "write format");
    } else if (rc) {
        return lm_err(err, rc, "read format");
    } else if (v.mv_size != sizeof FORMAT_VAL - 1 ||
               memcmp(v.mv_data, FORMAT_VAL, v.mv_size) != 0) {
        return rk_err_set(err, RK_EVERSION,
                          "store format '%.*s' is not '%s'",
                          (int)(v.mv_size > 40 ? 40 : v.mv_size),
                          (const char *)v.mv_data, FORMAT_VAL);
    }
    MDB_val sk = {6, "schema"}, sv;
    rc = mdb_get(txn, be->meta, &sk, &sv);
    if (rc == 0) {
        rc = rk__schema_merge_json(schema, sv.mv_data, sv.mv_size, err);
        if (rc) return rc;
    } else if (rc != MDB_NOTFOUND) {
        return lm_err(err, rc, "read schema");
    }
    if (declared && (rc = rk__schema_merge(schema, declared, err)))
        return rc;
    if (!be->read_only && (rc = put_schema(be, txn, schema)))
        return lm_err(err, rc, "write schema");
    return 0;
}

static void lm_close(void *p)
{
    lm_be *be = p;
    if (!be) return;
    if (be->env) mdb_env_close(be->env);
    for (int e = 0; e < RK_ENTITY_COUNT; e++) rk_map_destroy(be->idcache[e]);
    rk_map_destroy(be->dsindex);
    rk_vec_free(&be->ds);
    rk_buf_free(&be->rec);
    rk_buf_free(&be->merged);
    rk_arena_free(&be->scratch);
    if (be->lock_fd >= 0) close(be->lock_fd);
    rk_free(be);
}

static int lm_open(void **out, const rk_store_opts *o, rk_schema *schema,
                   const rk_schema *declared, rk_err *err)
{
    lm_be *be = rk_calloc(1, sizeof *be);
    if (!be) return rk_err_set(err, RK_ENOMEM, "store: out of memory");
    be->lock_fd = -1;
    be->read_only = o->read_only;
    be->schema = schema;
    rk_buf_init(&be->rec, 0);
    rk_buf_init(&be->merged, RK_KV_VAL_MAX);
    rk_arena_init(&be->scratch, 64 << 10, 0);
    int rc;
    char lockpath[4096];

    if (!o->read_only && mkdir(o->path, 0755) != 0 && errno != EEXIST) {
        rc = rk_err_set(err, RK_EIO, "cannot create data directory %s: %s",
                        o->path, strerror(errno));
        goto fail;
    }
    if (!o->read_only) {
        snprintf(lockpath, sizeof lockpath, "%s/rankd.lock", o->path);
        be->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (be->lock_fd < 0) {
            rc = rk_err_set(err, RK_EIO, "cannot open %s: %s", lockpath,
                            strerror(errno));
            goto fail;
        }
        if (flock(be->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            rc = rk_err_set(err, RK_EBUSY,
                            "data directory %s is in use by another rankd "
                            "process", o->path);
            goto fail;
        }
    }
    for (int e = 0; e < RK_ENTITY_COUNT; e++)
        if (rk_map_create(&be->idcache[e], o->id_cache ? o->id_cache : 1)) {
            rc = rk_err_set(err, RK_ENOMEM, "store: out of memory");
            goto fail;
        }
    if (rk_map_create(&be->dsindex, 0)) {
        rc = rk_err_set(err, RK_ENOMEM, "store: out of memory");
        goto fail;
    }
    if ((rc = mdb_env_create(&be->env))) {
        rc = lm_err(err, rc, "lmdb env");
        goto fail;
    }
    mdb_env_set_maxdbs(be->env, 16);
    mdb_env_set_maxreaders(be->env, 512);
    if ((rc = mdb_env_set_mapsize(be->env, (size_t)o->map_size))) {
        rc = lm_err(err, rc, "lmdb map size");
        goto fail;
    }
    /* NOTLS: a read snapshot belongs to an rk_reader, not to a thread.
     * NOSYNC for everysec: commits reach the OS at once and the writer
     * calls mdb_env_sync at least once a second. */
    unsigned flags = MDB_NOTLS;
    if (o->read_only) flags |= MDB_RDONLY;
    if (o->fsync == RK_FSYNC_EVERYSEC) flags |= MDB_NOSYNC;
    if ((rc = mdb_env_open(be->env, o->path, flags, 0644))) {
        errno = rc;
        rc = lm_err(err, rc, o->read_only ? "open store (read-only)"
                                          : "open store");
        if (o->read_only && rc == RK_EIO && errno == ENOENT)
            rc = rk_err_set(err, RK_ENOTFOUND, "no rankd store at %s", o->path);
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(be->env, &dead);

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(be->env, NULL, o->read_only ? MDB_RDONLY : 0,
                            &txn))) {
        rc = lm_err(err, rc, "begin");
        goto fail;
    }
    rc = open_dbis(be, txn, o->read_only ? 0 : MDB_CREATE);
    if (rc) {
        if (o->read_only && rc == MDB_NOTFOUND)
            rc = rk_err_set(err, RK_ENOTFOUND, "%s is not a rankd store",
                            o->path);
        else
            rc = lm_err(err, rc, "open databases");
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = init_meta(be, txn, schema, declared, err)) ||
        (rc = load_state(be, txn))) {
        if (rc > 0 || rc < -100) rc = lm_err(err, rc, "load state");
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn))) {
        rc = lm_err(err, rc, "commit");
        goto fail;
    }
    *out = be;
    return 0;
fail:
    lm_close(be);
    return rc;
}

static int lm_sync(void *p, rk_err *err)
{
    lm_be *be = p;
    int rc = mdb_env_sync(be->env, 1);
    return rc ? lm_err(err, rc, "fsync") : 0;
}

/* ---- apply --------------------------------------------------------------- */

/* External id -> dense id, assigning a new id when create is set. Returns
 * MDB_NOTFOUND when absent and !create. */
static int resolve(lm_be *be, MDB_txn *txn, rk_entity e, const char *s,
                   uint16_t n, int create, uint32_t *id)
{
    uint64_t v;
    if (rk_map_get(be->idcache[e], s, n, &v) == 0) {
        *id = (uint32_t)v;
        return 0;
    }
    MDB_val k = {n, (void *)s}, d;
    int rc;
    if (create && be->next_id[e] != UINT32_MAX) {
        /* One search for both outcomes: NOOVERWRITE inserts a new id, or
         * fails with MDB_KEYEXIST and points d at the stored one without
         * touching any page. */
        uint32_t nid = be->next_id[e];
        d.mv_size = 4;
        d.mv_data = &nid;
        rc = mdb_put(txn, be->ids[e], &k, &d, MDB_NOOVERWRITE);
        if (rc == 0) {
            /* Dense ids grow by one: append through the transaction's
             * cursor, which stays on the last leaf. */
            MDB_val rk = {4, &nid}, rv = {n, (void *)s};
            if (!be->ridcur[e] &&
                (rc = mdb_cursor_open(txn, be->rids[e], &be->ridcur[e])))
                return rc;
            if ((rc = mdb_cursor_put(be->ridcur[e], &rk, &rv, MDB_APPEND)))
                return rc;
            be->next_id[e]++;
            *id = nid;
        } else if (rc != MDB_KEYEXIST) {
            return rc;
        } else if (d.mv_size != 4) {
            return MDB_CORRUPTED;
        } else {
            memcpy(id, d.mv_data, 4);
        }
    } else {
        /* Lookup only, or the 2^32 ids are used up: no new one. */
        if ((rc = mdb_get(txn, be->ids[e], &k, &d)))
            return rc == MDB_NOTFOUND && create ? MDB_MAP_FULL : rc;
        if (d.mv_size != 4) return MDB_CORRUPTED;
        memcpy(id, d.mv_data, 4);
    }
    /* A full cache gives up one entry; the cache is a speed-up only. */
    if (rk_map_put(be->idcache[e], s, n, *id) == RK_ELIMIT &&
        rk_map_evict_one(be->idcache[e]) == 0)
        rk_map_put(be->idcache[e], s, n, *id);
    return 0;
}

static int get_record(lm_be *be, MDB_txn *txn, rk_entity e, uint32_t id,
                      MDB_val *v)
{
    MDB_val k = {4, &id};
    int rc = mdb_get(txn, be->ents[e], &k, v);
    if (rc == MDB_NOTFOUND) {
        v->mv_data = NULL;
        v->mv_size = 0;
        return 0;
    }
    return rc;
}

static int put_record(lm_be *be, MDB_txn *txn, rk_entity e, uint32_t id)
{
    MDB_val k = {4, &id}, v = {be->rec.len, be->rec.data};
    return mdb_put(txn, be->ents[e], &k, &v, 0);
}

static uint32_t record_flags(const MDB_val *v)
{
    uint32_t f = 0;
    if (v->mv_data && v->mv_size >= 4) memcpy(&f, v->mv_data, 4);
    return f;
}

/* Tracks the hidden/deleted counters across a flag change. */
static void count_flags(lm_be *be, rk_entity e, uint32_t before, uint32_t after)
{
    if ((before ^ after) & RK_ENTITY_HIDDEN) {
        be->cnt.hidden[e] += (after & RK_ENTITY_HIDDEN) ? 1 : (uint64_t)-1;
        be->cnt_dirty = 1;
    }
    if ((before ^ after) & RK_ENTITY_DELETED) {
        be->cnt.deleted[e] += (after & RK_ENTITY_DELETED) ? 1 : (uint64_t)-1;
        be->cnt_dirty = 1;
    }
}

static int apply_event(lm_be *be, MDB_txn *txn, rk__rd *r, rk_write_result *res)
{
    rk__event_op op;
    memset(&op, 0, sizeof op);
    op.type = rk__rd_u8(r);
    op.flags = rk__rd_u8(r);
    op.user_len = rk__rd_u16(r);
    op.user = rk__rd_bytes(r, op.user_len);
    op.item_len = rk__rd_u16(r);
    op.item = rk__rd_bytes(r, op.item_len);
    op.ts_ms = (int64_t)rk__rd_u64(r);
    if (op.flags & RK__EV_VALUE) op.value = rk__rd_f64(r);
    if (op.flags & RK__EV_POSITION) op.position = (int32_t)rk__rd_u32(r);
    if (op.flags & RK__EV_REQUEST) {
        op.request_id_len = rk__rd_u16(r);
        op.request_id = rk__rd_bytes(r, op.request_id_len);
    }
    if (op.flags & RK__EV_CONTEXT) {
        op.context_len = rk__rd_u16(r);
        op.context = rk__rd_bytes(r, op.context_len);
    }
    if (op.flags & RK__EV_ID) {
        op.id_len = rk__rd_u16(r);
        op.id = rk__rd_bytes(r, op.id_len);
        op.id_hash = rk__rd_bytes(r, 16);
    }
    if (r->bad) return MDB_CORRUPTED;

    uint64_t seq = be->next_seq;
    int rc;
    if (op.id_hash) {
        MDB_val k = {16, (void *)op.id_hash}, v = {8, &seq};
        rc = mdb_put(txn, be->evid, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            res->duplicates++;
            return 0;
        }
        if (rc) return rc;
    }
    uint32_t uid, iid;
    if ((rc = resolve(be, txn, RK_ENTITY_USER, op.user, op.user_len, 1, &uid)) ||
        (rc = resolve(be, txn, RK_ENTITY_ITEM, op.item, op.item_len, 1, &iid)))
        return rc;
    rk_buf_reset(&be->rec);
    if (rk__event_encode(&be->rec, &op, uid, iid)) return ENOMEM;
    MDB_val k = {8, &seq}, v = {be->rec.len, be->rec.data};
    if (!be->evcur && (rc = mdb_cursor_open(txn, be->events, &be->evcur)))
        return rc;
    if ((rc = mdb_cursor_put(be->evcur, &k, &v, MDB_APPEND))) return rc;
    if (res->events == 0) res->first_seq = seq;
    be->next_seq++;
    res->events++;
    return 0;
}

/* Records a change for the commit hook; a failed push only marks the list
 * incomplete, so a full list never fails a write. */
static void note_change(lm_be *be, uint8_t kind, uint8_t table, uint8_t entity,
                        const void *key, size_t len)
{
    if (!be->chg || be->chg->lost) return;
    rk_commit_change c = {kind, table, entity, (uint32_t)len, key};
    if (rk_vec_push(&be->chg->v, c)) be->chg->lost = 1;
}

static int apply_upsert(lm_be *be, MDB_txn *txn, rk__rd *r, int64_t now,
                        rk_write_result *res)
{
    rk_entity e = (rk_entity)rk__rd_u8(r);
    int replace = rk__rd_u8(r);
    uint16_t idlen = rk__rd_u16(r);
    const char *id = rk__rd_bytes(r, idlen);
    uint16_t nattrs = rk__rd_u16(r);
    uint32_t alen = rk__rd_u32(r);
    const void *attrs = rk__rd_bytes(r, alen);
    if (r->bad || (unsigned)e >= RK_ENTITY_COUNT) return MDB_CORRUPTED;
    uint32_t dense;
    MDB_val old;
    int rc = resolve(be, txn, e, id, idlen, 1, &dense);
    if (rc || (rc = get_record(be, txn, e, dense, &old))) return rc;
    rk_buf_reset(&be->rec);
    rk_arena_reset(&be->scratch);
    rc = rk__entity_merge(&be->rec, old.mv_data, old.mv_size, attrs, alen,
                          nattrs, replace, now, &be->scratch);
    if (rc == RK_ENOMEM) return ENOMEM;
    if (rc) return MDB_CORRUPTED;
    count_flags(be, e, record_flags(&old), record_flags(&old) & ~RK_ENTITY_DELETED);
    if ((rc = put_record(be, txn, e, dense))) return rc;
    note_change(be, RK_CHANGE_ENTITY, 0, (uint8_t)e, id, idlen);
    res->entities++;
    return 0;
}

static int apply_flags(lm_be *be, MDB_txn *txn, rk__rd *r, int op, int64_t now,
                       rk_write_result *res)
{
    rk_entity e = (rk_entity)rk__rd_u8(r);
    int hidden = op == RK__OP_HIDE ? rk__rd_u8(r) : 0;
    uint16_t idlen = rk__rd_u16(r);
    const char *id = rk__rd_bytes(r, idlen);
    if (r->bad || (unsigned)e >= RK_ENTITY_COUNT) return MDB_CORRUPTED;
    uint32_t dense;
    int rc = resolve(be, txn, e, id, idlen, op == RK__OP_HIDE, &dense);
    if (rc == MDB_NOTFOUND) {
        res->not_found++;
        return 0;
    }
    MDB_val old;
    if (rc || (rc = get_record(be, txn, e, dense, &old))) return rc;
    rk_buf_reset(&be->rec);
    uint32_t set = 0, clear = 0;
    if (op == RK__OP_HIDE) {
        if (hidden) set = RK_ENTITY_HIDDEN; else clear = RK_ENTITY_HIDDEN;
    } else {
        set = RK_ENTITY_DELETED;
    }
    rc = rk__entity_set_flags(&be->rec, old.mv_data, old.mv_size, set, clear,
                              op == RK__OP_DELETE, now);
    if (rc == RK_ENOMEM) return ENOMEM;
    if (rc) return MDB_CORRUPTED;
    uint32_t before = record_flags(&old);
    count_flags(be, e, before, (before | set) & ~clear);
    if ((rc = put_record(be, txn, e, dense))) return rc;
    note_change(be, RK_CHANGE_ENTITY, 0, (uint8_t)e, id, idlen);
    res->entities++;
    return 0;
}

static int apply_row(lm_be *be, MDB_txn *txn, rk__rd *r, rk_write_result *res)
{
    uint16_t nlen = rk__rd_u16(r);
    const char *name = rk__rd_bytes(r, nlen);
    uint32_t rlen = rk__rd_u32(r);
    const void *row = rk__rd_bytes(r, rlen);
    if (r->bad || nlen > RK_NAME_MAX) return MDB_CORRUPTED;
    uint64_t idx;
    if (rk_map_get(be->dsindex, name, nlen, &idx) != 0) {
        dataset_state d = {0};
        d.id = be->next_ds_id;
        d.next_seq = 1;
        memcpy(d.name, name, nlen);
        if (rk_vec_push(&be->ds, d) ||
            rk_map_put(be->dsindex, name, nlen, be->ds.n - 1))
            return ENOMEM;
        be->next_ds_id++;
        idx = be->ds.n - 1;
    }
    dataset_state *d = &be->ds.v[idx];
    unsigned char key[12];
    /* Big-endian so that rows sort by dataset, then sequence. */
    for (int i = 0; i < 4; i++) key[i] = (unsigned char)(d->id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        key[4 + i] = (unsigned char)(d->next_seq >> (56 - 8 * i));
    MDB_val k = {12, key}, v = {rlen, (void *)row};
    int rc = mdb_put(txn, be->rows, &k, &v, 0);
    if (rc) return rc;
    d->next_seq++;
    d->rows++;
    d->dirty = 1;
    res->rows++;
    return 0;
}

/* Key-value ops. The stored key is the table byte then the key, so one
 * LMDB database holds every table and a table is a key prefix. Errors
 * that are not LMDB's are reported through be->kv_code. */
static int apply_kv(lm_be *be, MDB_txn *txn, rk__rd *r, int op)
{
    unsigned char key[1 + RK_KV_KEY_MAX];
    unsigned table = rk__rd_u8(r);
    uint16_t klen = rk__rd_u16(r);
    const void *kp = rk__rd_bytes(r, klen);
    uint32_t vlen = op == RK__OP_KV_DEL ? 0 : rk__rd_u32(r);
    const void *vp = op == RK__OP_KV_DEL ? NULL : rk__rd_bytes(r, vlen);
    if (r->bad || klen == 0 || klen > RK_KV_KEY_MAX) return MDB_CORRUPTED;
    key[0] = (unsigned char)table;
    memcpy(key + 1, kp, klen);
    note_change(be, RK_CHANGE_KV, (uint8_t)table, 0, kp, klen);
    MDB_val k = {(size_t)klen + 1, key}, v = {vlen, (void *)vp};
    if (op == RK__OP_KV_DEL) {
        int rc = mdb_del(txn, be->kv, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (op == RK__OP_KV_MERGE) {
        const rk__merge_op *m = be->merge ? &be->merge[table] : NULL;
        if (!m || !m->fn) {
            be->kv_code = RK_ESTATE;
            be->kv_table = table;
            return MDB_INCOMPATIBLE;
        }
        MDB_val old;
        int rc = mdb_get(txn, be->kv, &k, &old);
        if (rc && rc != MDB_NOTFOUND) return rc;
        rk_buf_reset(&be->merged);
        int mrc = m->fn(m->arg, kp, klen, rc ? NULL : old.mv_data,
                        rc ? 0 : old.mv_size, vp, vlen, &be->merged);
        if (mrc) {
            be->kv_code = mrc < 0 ? mrc : RK_EINTERNAL;
            be->kv_table = table;
            return MDB_INCOMPATIBLE;
        }
        if (be->merged.len == 0) {
            rc = rc ? 0 : mdb_del(txn, be->kv, &k, NULL);
            return rc == MDB_NOTFOUND ? 0 : rc;
        }
        v.mv_size = be->merged.len;
        v.mv_data = be->merged.data;
    }
    return mdb_put(txn, be->kv, &k, &v, 0);
}

static int apply_declare(lm_be *be, rk__rd *r, rk_schema *pending)
{
    rk_entity e = (rk_entity)rk__rd_u8(r);
    rk_attr_type t = (rk_attr_type)rk__rd_u8(r);
    uint32_t dim = rk__rd_u32(r);
    uint8_t nlen = rk__rd_u8(r);
    const char *name = rk__rd_bytes(r, nlen);
    if (r->bad) return MDB_CORRUPTED;
    char buf[256];
    memcpy(buf, name, nlen);
    buf[nlen] = '\0';
    (void)be;
    /* Conflicts were checked by rk_store_declare_attr; a race between two
     * declarers of the same name with different types loses here. */
    return rk_schema_add_attr(pending, e, buf, t, dim, NULL) ? MDB_INCOMPATIBLE
                                                             : 0;
}

static int flush_writer_meta(lm_be *be, MDB_txn *txn)
{
    /* Only when changed: rewriting it in every commit would copy and
     * write one more page per commit, which small commits feel. */
    int rc = 0;
    if (be->cnt_dirty) {
        MDB_val k = {8, "counters"}, v = {sizeof be->cnt, &be->cnt};
        rc = mdb_put(txn, be->meta, &k, &v, 0);
    }
    for (size_t i = 0; !rc && i < be->ds.n; i++) {
        dataset_state *d = &be->ds.v[i];
        if (!d->dirty) continue;
        unsigned char val[20];
        memcpy(val, &d->id, 4);
        memcpy(val + 4, &d->next_seq, 8);
        memcpy(val + 12, &d->rows, 8);
        MDB_val dk = {strlen(d->name), d->name}, dv = {20, val};
        rc = mdb_put(txn, be->datasets, &dk, &dv, 0);
    }
    return rc;
}

/* Closes the write transaction's append cursors (before commit or abort). */
static void close_cursors(lm_be *be)
{
    if (be->evcur) mdb_cursor_close(be->evcur);
    be->evcur = NULL;
    for (int e = 0; e < RK_ENTITY_COUNT; e++) {
        if (be->ridcur[e]) mdb_cursor_close(be->ridcur[e]);
        be->ridcur[e] = NULL;
    }
}

static int lm_apply(void *p, const rk_batch *const *batches, size_t n,
                    rk_write_result *results, rk_err *err)
{
    lm_be *be = p;
    MDB_txn *txn;
    rk_schema *pending = NULL;
    int64_t now = rk_clock_wall_ms();
    int rc = mdb_txn_begin(be->env, NULL, 0, &txn);
    if (rc) return lm_err(err, rc, "begin write");
    uint64_t txn_id = (uint64_t)mdb_txn_id(txn);
    if (be->chg) {
        be->chg->v.n = 0;
        be->chg->lost = 0;
    }
    for (size_t b = 0; !rc && b < n; b++) {
        rk_write_result *res = &results[b];
        memset(res, 0, sizeof *res);
        const rk_batch *bt = batches[b];
        rk__rd r = {(const unsigned char *)bt->buf.data,
                    (const unsigned char *)bt->buf.data + bt->buf.len, 0};
        while (!rc && r.p < r.end) {
            int op = rk__rd_u8(&r);
            switch (op) {
            case RK__OP_EVENT: rc = apply_event(be, txn, &r, res); break;
            case RK__OP_UPSERT: rc = apply_upsert(be, txn, &r, now, res); break;
            case RK__OP_HIDE:
            case RK__OP_DELETE: rc = apply_flags(be, txn, &r, op, now, res); break;
            case RK__OP_ROW: rc = apply_row(be, txn, &r, res); break;
            case RK__OP_KV_PUT:
            case RK__OP_KV_DEL:
            case RK__OP_KV_MERGE: rc = apply_kv(be, txn, &r, op); break;
            case RK__OP_DECLARE:
                if (!pending) {
                    if (rk_schema_create(&pending) ||
                        rk__schema_merge(pending, be->schema, NULL)) {
                        rc = ENOMEM;
                        break;
                    }
                }
                rc = apply_declare(be, &r, pending);
                break;
            default: rc = MDB_CORRUPTED; break;
            }
        }
    }
    close_cursors(be);
    if (!rc && pending) rc = put_schema(be, txn, pending);
    if (!rc) rc = flush_writer_meta(be, txn);
    if (!rc) rc = mdb_txn_commit(txn);
    else mdb_txn_abort(txn);
    if (rc) {
        int code;
        if (rc == MDB_INCOMPATIBLE && be->kv_code == RK_ESTATE)
            code = rk_err_set(err, RK_ESTATE, "merge into key-value table %u, "
                              "which has no merge function", be->kv_table);
        else if (rc == MDB_INCOMPATIBLE && be->kv_code)
            code = rk_err_set(err, be->kv_code, "merge function of key-value "
                              "table %u failed: %s", be->kv_table,
                              rk_strerror(be->kv_code));
        else if (rc == MDB_INCOMPATIBLE)
            code = rk_err_set(err, RK_ECONFIG, "conflicting attribute "
                              "declaration");
        else
            code = lm_err(err, rc, "write");
        be->kv_code = 0;
        /* Nothing was applied: forget what this transaction assigned. */
        int rrc = reload_state(be);
        if (rrc) rk_err_prefix(err, "(state reload failed: %s) ",
                               mdb_strerror(rrc));
        rk_schema_destroy(pending);
        return code;
    }
    for (size_t i = 0; i < be->ds.n; i++) be->ds.v[i].dirty = 0;
    be->cnt_dirty = 0;
    be->last_txn = txn_id;
    if (pending) {
        /* Publish new declarations only now that they are durable. */
        rk__schema_merge(be->schema, pending, NULL);
        rk_schema_destroy(pending);
    }
    return 0;
}

/* ---- readers ----------------------------------------------------------- */

static int lm_reader_open(void *p, void **out, rk_err *err)
{
    lm_be *be = p;
    lm_rd *rd = rk_calloc(1, sizeof *rd);
    if (!rd) return rk_err_set(err, RK_ENOMEM, "reader: out of memory");
    rd->be = be;
    int rc = mdb_txn_begin(be->env, NULL, MDB_RDONLY, &rd->txn);
    if (rc) {
        rk_free(rd);
        return lm_err(err, rc, "begin read");
    }
    *out = rd;
    return 0;
}

static uint64_t lm_reader_txn(void *p)
{
    return (uint64_t)mdb_txn_id(((lm_rd *)p)->txn);
}

static void lm_set_changes(void *p, rk__changes *chg)
{
    ((lm_be *)p)->chg = chg;
}

static uint64_t lm_last_txn(void *p)
{
    lm_be *be = p;
    MDB_envinfo info;
    /* Before the first write of this process, ask the environment. */
    if (!be->last_txn && mdb_env_info(be->env, &info) == 0)
        be->last_txn = (uint64_t)info.me_last_txnid;
    return be->last_txn;
}

static void lm_reader_close(void *p)
{
    lm_rd *rd = p;
    if (!rd) return;
    mdb_txn_abort(rd->txn);
    rk_free(rd);
}

static uint64_t dbi_entries(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
}

static int lm_stats(void *p, rk_store_stats *out, rk_err *err)
{
    lm_rd *rd = p;
    lm_be *be = rd->be;
    memset(out, 0, sizeof *out);
    for (int e = 0; e < RK_ENTITY_COUNT; e++) {
        out->ids[e] = dbi_entries(rd->txn, be->rids[e]);
        out->records[e] = dbi_entries(rd->txn, be->ents[e]);
    }
    MDB_val k = {8, "counters"}, v;
    counters c = {0};
    if (mdb_get(rd->txn, be->meta, &k, &v) == 0 && v.mv_size == sizeof c)
        memcpy(&c, v.mv_data, sizeof c);
    out->hidden_items = c.hidden[RK_ENTITY_ITEM];
    for (int e = 0; e < RK_ENTITY_COUNT; e++) out->deleted[e] = c.deleted[e];
    out->events = dbi_entries(rd->txn, be->events);
    out->event_ids = dbi_entries(rd->txn, be->evid);
    out->datasets = dbi_entries(rd->txn, be->datasets);
    out->rows = dbi_entries(rd->txn, be->rows);
    int found;
    int rc = last_int_key(rd->txn, be->events, &out->last_seq, &found);
    if (rc) return lm_err(err, rc, "stats");
    MDB_envinfo info;
    MDB_stat est;
    if (mdb_env_info(be->env, &info) == 0 && mdb_env_stat(be->env, &est) == 0)
        out->bytes = (uint64_t)(info.me_last_pgno + 1) * est.ms_psize;
    return 0;
}

static int lm_lookup(void *p, rk_entity e, const char *ext, size_t len,
                     uint32_t *id, rk_err *err)
{
    lm_rd *rd = p;
    if (len == 0 || len > RK_ID_MAX) return RK_ENOTFOUND;
    MDB_val k = {len, (void *)ext}, v;
    int rc = mdb_get(rd->txn, rd->be->ids[e], &k, &v);
    if (rc == MDB_NOTFOUND) return RK_ENOTFOUND;
    if (rc) return lm_err(err, rc, "lookup");
    if (v.mv_size != 4) return rk_err_set(err, RK_ECORRUPT, "bad id record");
    memcpy(id, v.mv_data, 4);
    return 0;
}

static int lm_external(void *p, rk_entity e, uint32_t id, const char **ext,
                       size_t *len, rk_err *err)
{
    lm_rd *rd = p;
    MDB_val k = {4, &id}, v;
    int rc = mdb_get(rd->txn, rd->be->rids[e], &k, &v);
    if (rc == MDB_NOTFOUND) return RK_ENOTFOUND;
    if (rc) return lm_err(err, rc, "external id");
    *ext = v.mv_data;
    *len = v.mv_size;
    return 0;
}

static int lm_entity_raw(void *p, rk_entity e, uint32_t id, const void **out,
                         size_t *n, rk_err *err)
{
    lm_rd *rd = p;
    MDB_val k = {4, &id}, v;
    int rc = mdb_get(rd->txn, rd->be->ents[e], &k, &v);
    if (rc == MDB_NOTFOUND) return RK_ENOTFOUND;
    if (rc) return lm_err(err, rc, "entity");
    *out = v.mv_data;
    *n = v.mv_size;
    return 0;
}

static int lm_event_by_id(void *p, const uint8_t hash[16], uint64_t *seq,
                          rk_err *err)
{
    lm_rd *rd = p;
    MDB_val k = {16, (void *)hash}, v;
    int rc = mdb_get(rd->txn, rd->be->evid, &k, &v);
    if (rc == MDB_NOTFOUND) return RK_ENOTFOUND;
    if (rc) return lm_err(err, rc, "event id");
    if (v.mv_size != 8) return rk_err_set(err, RK_ECORRUPT, "bad event id record");
    memcpy(seq, v.mv_data, 8);
    return 0;
}

/* Walks a cursor from `start` (or the first key) while keys satisfy the
 * optional prefix; calls fn(arg, key, val). */
static int walk(MDB_txn *txn, MDB_dbi dbi, MDB_val *start, const void *prefix,
                size_t plen, int (*fn)(void *, MDB_val *, MDB_val *),
                void *arg, rk_err *err)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc) return lm_err(err, rc, "cursor");
    if (start) k = *start;
    rc = mdb_cursor_get(c, &k, &v, start ? MDB_SET_RANGE : MDB_FIRST);
    int stop = 0;
    while (rc == 0) {
        if (prefix && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen)))
            break;
        if ((stop = fn(arg, &k, &v))) break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (stop) return stop;
    if (rc && rc != MDB_NOTFOUND) return lm_err(err, rc, "scan");
    return 0;
}

typedef struct walk_ctx {
    int (*seq_fn)(void *, uint64_t, const void *, size_t);
    int (*id_fn)(void *, uint32_t, const void *, size_t);
    rk_dataset_fn ds_fn;
    void *arg;
} walk_ctx;

static int walk_seq64(void *p, MDB_val *k, MDB_val *v)
{
    walk_ctx *w = p;
    uint64_t seq;
    if (k->mv_size != 8) return RK_ECORRUPT;
    memcpy(&seq, k->mv_data, 8);
    return w->seq_fn(w->arg, seq, v->mv_data, v->mv_size);
}

static int walk_id32(void *p, MDB_val *k, MDB_val *v)
{
    walk_ctx *w = p;
    uint32_t id;
    if (k->mv_size != 4) return RK_ECORRUPT;
    memcpy(&id, k->mv_data, 4);
    return w->id_fn(w->arg, id, v->mv_data, v->mv_size);
}

static int walk_rowkey(void *p, MDB_val *k, MDB_val *v)
{
    walk_ctx *w = p;
    if (k->mv_size != 12) return RK_ECORRUPT;
    const unsigned char *kb = k->mv_data;
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++) seq = seq << 8 | kb[4 + i];
    return w->seq_fn(w->arg, seq, v->mv_data, v->mv_size);
}

static int walk_dataset(void *p, MDB_val *k, MDB_val *v)
{
    walk_ctx *w = p;
    char name[RK_NAME_MAX + 1];
    uint64_t rows;
    if (k->mv_size > RK_NAME_MAX || v->mv_size != 20) return RK_ECORRUPT;
    memcpy(name, k->mv_data, k->mv_size);
    name[k->mv_size] = '\0';
    memcpy(&rows, (char *)v->mv_data + 12, 8);
    return w->ds_fn(w->arg, name, rows);
}

static int lm_scan_events(void *p, uint64_t from,
                          int (*fn)(void *, uint64_t, const void *, size_t),
                          void *arg, rk_err *err)
{
    lm_rd *rd = p;
    walk_ctx w = {.seq_fn = fn, .arg = arg};
    MDB_val start = {8, &from};
    return walk(rd->txn, rd->be->events, &start, NULL, 0, walk_seq64, &w, err);
}

static int lm_scan_entities(void *p, rk_entity e,
                            int (*fn)(void *, uint32_t, const void *, size_t),
                            void *arg, rk_err *err)
{
    lm_rd *rd = p;
    walk_ctx w = {.id_fn = fn, .arg = arg};
    return walk(rd->txn, rd->be->ents[e], NULL, NULL, 0, walk_id32, &w, err);
}

static int lm_scan_rows(void *p, const char *dataset,
                        int (*fn)(void *, uint64_t, const void *, size_t),
                        void *arg, rk_err *err)
{
    lm_rd *rd = p;
    MDB_val k = {strlen(dataset), (void *)dataset}, v;
    if (k.mv_size == 0 || k.mv_size > RK_NAME_MAX) return RK_ENOTFOUND;
    int rc = mdb_get(rd->txn, rd->be->datasets, &k, &v);
    if (rc == MDB_NOTFOUND) return RK_ENOTFOUND;
    if (rc) return lm_err(err, rc, "dataset");
    if (v.mv_size != 20) return rk_err_set(err, RK_ECORRUPT, "bad dataset record");
    uint32_t id;
    memcpy(&id, v.mv_data, 4);
    unsigned char key[12] = {0};
    for (int i = 0; i < 4; i++) key[i] = (unsigned char)(id >> (24 - 8 * i));
    MDB_val start = {12, key};
    walk_ctx w = {.seq_fn = fn, .arg = arg};
    return walk(rd->txn, rd->be->rows, &start, key, 4, walk_rowkey, &w, err);
}

static int lm_scan_datasets(void *p, rk_dataset_fn fn, void *arg, rk_err *err)
{
    lm_rd *rd = p;
    walk_ctx w = {.ds_fn = fn, .arg = arg};
    return walk(rd->txn, rd->be->datasets, NULL, NULL, 0, walk_dataset, &w, err);
}

static void lm_set_merge_table(void *p, const rk__merge_op *merge)
{
    ((lm_be *)p)->merge = merge;
}

static int kv_key(unsigned char *buf, unsigned table, const void *key,
                  size_t klen)
{
    if (table == 0 || table >= RK_KV_TABLES || klen > RK_KV_KEY_MAX) return -1;
    buf[0] = (unsigned char)table;
    if (klen) memcpy(buf + 1, key, klen);
    return 0;
}

static int lm_kv_get(void *p, unsigned table, const void *key, size_t klen,
                     const void **val, size_t *vlen, rk_err *err)
{
    lm_rd *rd = p;
    unsigned char kb[1 + RK_KV_KEY_MAX];
    if (klen == 0 || kv_key(kb, table, key, klen))
        return rk_err_set(err, RK_EINVAL, "bad key-value table or key");
    MDB_val k = {klen + 1, kb}, v;
    int rc = mdb_get(rd->txn, rd->be->kv, &k, &v);
    if (rc == MDB_NOTFOUND) return RK_ENOTFOUND;
    if (rc) return lm_err(err, rc, "key-value get");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return 0;
}

typedef struct kv_walk {
    rk_kv_fn fn;
    void *arg;
} kv_walk;

static int walk_kv(void *p, MDB_val *k, MDB_val *v)
{
    kv_walk *w = p;
    return w->fn(w->arg, (const char *)k->mv_data + 1, k->mv_size - 1,
                 v->mv_data, v->mv_size);
}

static int lm_kv_scan(void *p, unsigned table, const void *prefix, size_t plen,
                      const void *start, size_t slen, rk_kv_fn fn, void *arg,
                      rk_err *err)
{
    lm_rd *rd = p;
    unsigned char pb[1 + RK_KV_KEY_MAX], sb[1 + RK_KV_KEY_MAX];
    if (kv_key(pb, table, prefix, plen) ||
        (start && kv_key(sb, table, start, slen)))
        return rk_err_set(err, RK_EINVAL, "bad key-value table or key");
    MDB_val from = start ? (MDB_val){slen + 1, sb} : (MDB_val){plen + 1, pb};
    kv_walk w = {fn, arg};
    return walk(rd->txn, rd->be->kv, &from, pb, plen + 1, walk_kv, &w, err);
}

const rk__backend_ops rk__lmdb_backend = {
    .name = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .apply = lm_apply,
    .set_changes = lm_set_changes,
    .last_txn = lm_last_txn,
    .reader_txn = lm_reader_txn,
    .sync = lm_sync,
    .reader_open = lm_reader_open,
    .reader_close = lm_reader_close,
    .stats = lm_stats,
    .lookup = lm_lookup,
    .external = lm_external,
    .entity_raw = lm_entity_raw,
    .event_by_id = lm_event_by_id,
    .scan_events = lm_scan_events,
    .scan_entities = lm_scan_entities,
    .scan_rows = lm_scan_rows,
    .scan_datasets = lm_scan_datasets,
    .set_merge_table = lm_set_merge_table,
    .kv_get = lm_kv_get,
    .kv_scan = lm_kv_scan,
};
