/*
 * rk_store.h — the durable store: schema, id dictionaries, users and items
 * with typed attributes, the event log, labelled-row datasets.
 *
 * Writes are collected into an rk_batch by any thread and handed to
 * rk_store_write, which queues it for the store's single writer thread. The
 * writer group-commits every queued batch in one backend transaction and
 * wakes the producers once the commit is durable under the fsync policy:
 *   - "always":   the transaction was fsync'd before rk_store_write returns;
 *   - "everysec": it reached the operating system (survives a crash or
 *                 SIGKILL of the process) and is fsync'd within a second,
 *                 like Redis' appendfsync everysec.
 * A batch is all or nothing: after a crash either every op of it is present
 * or none is. Readers see consistent snapshots and never block the writer.
 *
 * The embedded backend is LMDB (one data directory); other backends (Redis)
 * implement the same internal function table (store_int.h).
 */
#ifndef RK_STORE_H
#define RK_STORE_H

#include "rk_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Schema                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum rk_entity {
    RK_ENTITY_USER = 0,
    RK_ENTITY_ITEM = 1,
    RK_ENTITY_COUNT
} rk_entity;

typedef enum rk_attr_type {
    RK_ATTR_NUMERIC = 0,      /* double */
    RK_ATTR_CATEGORICAL,      /* one string */
    RK_ATTR_CATEGORICAL_LIST, /* list of strings (tags, genres) */
    RK_ATTR_TEXT,             /* UTF-8 text */
    RK_ATTR_TIMESTAMP,        /* epoch milliseconds */
    RK_ATTR_VECTOR            /* float32[dim] */
} rk_attr_type;

typedef enum rk_event_role {
    RK_ROLE_POSITIVE = 0, /* implicit positive with a weight (click 1, like 3) */
    RK_ROLE_VALUED,       /* carries a value (watch seconds, rating) */
    RK_ROLE_NEGATIVE,     /* dislike, not interested */
    RK_ROLE_EXPOSURE      /* impression */
} rk_event_role;

#define RK_ID_MAX 256            /* bytes of an external id */
#define RK_NAME_MAX 64           /* bytes of an attribute or event type name */
#define RK_MAX_ATTRS 128         /* attributes per entity type */
#define RK_MAX_EVENT_TYPES 64
#define RK_MAX_VECTOR_DIM 4096
#define RK_MAX_CONTEXT 4096      /* bytes of an event's context JSON */
#define RK_MAX_TEXT 65536        /* bytes of a text attribute */

typedef struct rk_attr_def {
    char name[RK_NAME_MAX + 1];
    rk_attr_type type;
    uint32_t dim; /* vectors only */
} rk_attr_def;

typedef struct rk_event_type_def {
    char name[RK_NAME_MAX + 1];
    rk_event_role role;
    double weight; /* confidence weight for positives and valued events */
} rk_event_type_def;

/*
 * A schema declares attributes per entity type and the event types. It is
 * append-only: declared attributes and event types keep their index
 * forever, because stored records refer to them by index. Lookups are
 * thread-safe against concurrent appends (counts are published with release
 * semantics); appends must come from one thread at a time.
 */
typedef struct rk_schema rk_schema;

int rk_schema_create(rk_schema **out);
void rk_schema_destroy(rk_schema *s);
/* Builds a schema from a config tree's `entities:` and `events:` sections:
 *   entities: { item: { attributes: { year: numeric,
 *                                     emb: {type: vector, dim: 32} } } }
 *   events:   { click: {role: positive, weight: 1}, watch: {role: valued} }
 * A config without `events:` gets the default event types (see
 * docs/config.md). Errors are RK_ECONFIG with "file:line: ..." messages. */
int rk_schema_from_conf(rk_schema **out, const rk_conf_node *root, rk_err *err);
/* Declares an attribute; re-declaring with the same type and dim is a
 * no-op, with another type RK_ECONFIG. */
int rk_schema_add_attr(rk_schema *s, rk_entity e, const char *name,
                       rk_attr_type type, uint32_t dim, rk_err *err);
int rk_schema_add_event_type(rk_schema *s, const char *name,
                             rk_event_role role, double weight, rk_err *err);
uint32_t rk_schema_nattrs(const rk_schema *s, rk_entity e);
uint32_t rk_schema_nevent_types(const rk_schema *s);
/* Borrowed; valid for the schema's lifetime. NULL when idx out of range. */
const rk_attr_def *rk_schema_attr(const rk_schema *s, rk_entity e, uint32_t idx);
const rk_event_type_def *rk_schema_event_type(const rk_schema *s, uint32_t idx);
/* RK_ENOTFOUND when absent. */
int rk_schema_find_attr(const rk_schema *s, rk_entity e, const char *name,
                        size_t len, uint32_t *idx);
int rk_schema_find_event_type(const rk_schema *s, const char *name, size_t len,
                              uint32_t *idx);

const char *rk_entity_name(rk_entity e);         /* "user", "item" */
const char *rk_attr_type_name(rk_attr_type t);   /* "numeric", ... */
const char *rk_event_role_name(rk_event_role r); /* "positive", ... */
int rk_attr_type_parse(const char *s, rk_attr_type *out);
int rk_event_role_parse(const char *s, rk_event_role *out);

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum rk_fsync_policy {
    RK_FSYNC_ALWAYS = 0,
    RK_FSYNC_EVERYSEC = 1
} rk_fsync_policy;

typedef struct rk_store_opts {
    const char *path;          /* data directory (created if missing) */
    const char *backend;       /* "lmdb" (default) */
    rk_fsync_policy fsync;     /* default RK_FSYNC_EVERYSEC */
    uint64_t map_size;         /* LMDB map size in bytes, default 8 GiB */
    uint32_t commit_max_ops;   /* ops per group commit, default 65536 */
    uint32_t queue_max;        /* pending batches before producers wait, 1024 */
    uint32_t id_cache;         /* writer's id cache entries, default 1M */
    int read_only;             /* open for reading only (export, stats) */
    const rk_logger *log;      /* may be NULL */
} rk_store_opts;

void rk_store_opts_default(rk_store_opts *o);
/* Reads the `store:` section (path, backend, fsync, map_size_mb,
 * commit_max_ops, queue_max, id_cache) over the defaults in o. String
 * pointers are borrowed from the config tree. */
int rk_store_opts_from_conf(rk_store_opts *o, const rk_conf_node *root,
                            rk_err *err);

typedef struct rk_store rk_store;

/* Opens (creating if needed) the store. The store's persisted schema is
 * merged with `schema` (may be NULL): new attributes and event types are
 * appended and persisted; a conflicting redeclaration is RK_ECONFIG. Starts
 * the writer thread. Errors: RK_EIO, RK_ESTORE, RK_ECORRUPT, RK_EVERSION,
 * RK_ECONFIG, RK_ENOMEM, with details in err. */
int rk_store_open(rk_store **out, const rk_store_opts *o,
                  const rk_schema *schema, rk_err *err);
/* Drains queued writes, syncs, stops the writer and closes. NULL no-op.
 * All readers must be closed first. */
void rk_store_close(rk_store *s);
/* The store's schema (merged). Borrowed, valid until close. */
const rk_schema *rk_store_schema(const rk_store *s);
/* The data directory the store was opened on (borrowed, valid until
 * close). Models live under <path>/models. */
const char *rk_store_path(const rk_store *s);
/* Declares a new attribute durably (goes through the writer). Thread-safe. */
int rk_store_declare_attr(rk_store *s, rk_entity e, const char *name,
                          rk_attr_type type, uint32_t dim, rk_err *err);
/* Forces an fsync now (useful before reporting "done" under everysec). */
int rk_store_sync(rk_store *s, rk_err *err);

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

/* An event as submitted. Strings are copied into the batch. */
typedef struct rk_event_in {
    const char *type;          /* declared event type name */
    const char *user;          /* external ids, NUL-terminated */
    const char *item;
    int64_t ts_ms;             /* epoch ms, >= 0 */
    double value;              /* used when has_value */
    int has_value;
    int32_t position;          /* -1 = none */
    const char *request_id;    /* NULL = none */
    const char *context;       /* JSON object text or NULL */
    size_t context_len;
    const char *id;            /* event id for de-duplication, NULL = none */
} rk_event_in;

/* An attribute value as submitted; `type` must match the declaration. */
typedef struct rk_attr_in {
    const char *name;
    rk_attr_type type;
    double num;                 /* numeric */
    int64_t ts_ms;              /* timestamp */
    const char *str;            /* categorical, text */
    size_t len;
    const char *const *list;    /* categorical_list: n strings */
    const size_t *list_lens;    /* their lengths, or NULL for strlen */
    size_t n;
    const float *vec;           /* vector: dim floats */
    uint32_t dim;
} rk_attr_in;

/* A labelled feature row (Criteo, LETOR/svmlight): sparse numeric features
 * by index, categorical features by index, optional query group. */
typedef struct rk_row_in {
    double label;
    const char *group;          /* query id, NULL = none */
    size_t group_len;
    uint32_t nnum;
    const uint32_t *num_idx;
    const double *num_val;      /* finite; a missing value is simply absent */
    uint32_t ncat;
    const uint32_t *cat_idx;
    const char *const *cat_val;
    const size_t *cat_len;
} rk_row_in;

typedef struct rk_batch rk_batch;

/* max_bytes bounds the encoded size (0 = 64 MiB). Not thread-safe: one
 * producer fills a batch; batches may be written from any thread. */
int rk_batch_create(rk_batch **out, const rk_store *s, size_t max_bytes);
void rk_batch_destroy(rk_batch *b);
void rk_batch_clear(rk_batch *b);
size_t rk_batch_count(const rk_batch *b);
size_t rk_batch_bytes(const rk_batch *b);
/* Drops the ops added since the batch held `count` ops in `bytes` bytes
 * (rk_batch_count and rk_batch_bytes taken earlier), so a producer adding
 * several ops as one unit (an event and its aggregate merges) can undo a
 * partly added unit. RK_EINVAL when the batch is smaller than that. */
int rk_batch_rewind(rk_batch *b, size_t count, size_t bytes);

/* The add functions validate against the schema and return RK_EINVAL
 * (unknown event type or attribute, bad id, non-finite number, wrong type,
 * oversize field) with a message in err, leaving the batch unchanged, or
 * RK_ELIMIT when the batch is full. */
int rk_batch_event(rk_batch *b, const rk_event_in *ev, rk_err *err);
/* flags for rk_batch_upsert */
#define RK_UPSERT_REPLACE 1u   /* drop attributes not given (PUT semantics) */
int rk_batch_upsert(rk_batch *b, rk_entity e, const char *id,
                    const rk_attr_in *attrs, size_t nattrs, unsigned flags,
                    rk_err *err);
/* hidden = 1 hides, 0 unhides. Hiding an unknown item creates its id. */
int rk_batch_hide(rk_batch *b, rk_entity e, const char *id, int hidden,
                  rk_err *err);
/* Deletes the entity's attributes and marks it deleted; its id and past
 * events stay (ids are never reused). Unknown ids are counted in
 * rk_write_result.not_found. */
int rk_batch_delete(rk_batch *b, rk_entity e, const char *id, rk_err *err);
/* Appends a row to a named dataset (created on first use). */
int rk_batch_row(rk_batch *b, const char *dataset, const rk_row_in *row,
                 rk_err *err);

/*
 * Key-value tables: small key spaces inside the store for state derived
 * from events (feature aggregates, the feature log), written in the same
 * durable transaction as the events of the batch. A table is a number in
 * 1..RK_KV_TABLES-1 owned by one module (the RK_KV_* constants below);
 * keys are 1..RK_KV_KEY_MAX bytes, values up to RK_KV_VAL_MAX bytes.
 *
 * A merge op hands an operand to the table's merge function (see
 * rk_store_set_merge), which the writer calls inside the transaction with
 * the key's current value, so concurrent producers can update one key
 * (add to a counter) without a read-modify-write race. Ops of a batch are
 * applied in order, batches in submission order.
 */
#define RK_KV_TABLES 256
#define RK_KV_KEY_MAX 480
#define RK_KV_VAL_MAX (16u << 20)
#define RK_KV_AGG 1          /* features: online aggregates */
#define RK_KV_FLOG 2         /* features: feature log, by request id */
#define RK_KV_FLOG_TIME 3    /* features: feature log, by time */
#define RK_KV_LABEL 4        /* features: label join state */

int rk_batch_kv_put(rk_batch *b, unsigned table, const void *key, size_t klen,
                    const void *val, size_t vlen, rk_err *err);
int rk_batch_kv_del(rk_batch *b, unsigned table, const void *key, size_t klen,
                    rk_err *err);
int rk_batch_kv_merge(rk_batch *b, unsigned table, const void *key,
                      size_t klen, const void *operand, size_t olen,
                      rk_err *err);

typedef struct rk_write_result {
    uint64_t first_seq;    /* sequence number of the batch's first new event */
    uint32_t events;       /* events appended */
    uint32_t duplicates;   /* events skipped because their id was known */
    uint32_t entities;     /* upserts, hides and deletes applied */
    uint32_t not_found;    /* deletes of unknown ids */
    uint32_t rows;         /* dataset rows appended */
} rk_write_result;

/* Submits the batch and blocks until it is durable (see top of file) or
 * failed; on failure nothing of the batch was applied. Thread-safe; many
 * producers may call concurrently and share group commits. The batch is
 * left unchanged (clear it to reuse). res may be NULL. Errors: RK_EFULL,
 * RK_EIO, RK_ESTORE, RK_ECLOSED, RK_ENOMEM. */
int rk_store_write(rk_store *s, const rk_batch *b, rk_write_result *res,
                   rk_err *err);

/* A table's merge function: computes the new value of `key` from its
 * current value (old == NULL and oldlen == 0 when absent) and one operand,
 * writing it to out (empty: out->len == 0 deletes the key). Runs on the
 * writer thread inside the write transaction; must be deterministic and
 * must not call back into the store. A non-zero return fails the whole
 * transaction (nothing of it is applied) with that code. */
typedef int (*rk_kv_merge_fn)(void *arg, const void *key, size_t klen,
                              const void *old, size_t oldlen,
                              const void *operand, size_t olen, rk_buf *out);
/* Sets table's merge function (NULL removes it). Call before any write
 * carrying merge ops for the table; not safe concurrently with writes.
 * A write whose batch merges into a table without a function fails with
 * RK_ESTATE. RK_EINVAL for a bad table number. */
int rk_store_set_merge(rk_store *s, unsigned table, rk_kv_merge_fn fn,
                       void *arg);

/*
 * Commit hook: lets an in-process cache of store contents (the features
 * module's aggregate and entity cache) stay coherent with writes. After
 * every successful commit, and before the producers of that commit are
 * woken, the writer thread calls fn with the commit's number (the
 * rk_reader_txn of every reader that sees it, increasing) and what it
 * changed: each key-value op (put, delete, merge; the key) and each entity
 * upsert, hide or delete (the external id). An op is listed once per
 * occurrence, in apply order. When the writer could not record the list
 * (out of memory, or more than RK_COMMIT_CHANGES_MAX changes) it passes
 * changes NULL: anything may have changed. Pointers are valid during the
 * call only. fn must be quick and must not call into the store (it delays
 * every acknowledgement).
 *
 * Setting a hook calls fn once at once with the current commit number and
 * no changes, so the subscriber learns where it starts. One hook per
 * store; NULL removes it. Not safe concurrently with writes (like
 * rk_store_set_merge).
 */
#define RK_COMMIT_CHANGES_MAX (1u << 22)
enum { RK_CHANGE_KV = 1, RK_CHANGE_ENTITY = 2 };
typedef struct rk_commit_change {
    uint8_t kind;            /* RK_CHANGE_KV or RK_CHANGE_ENTITY */
    uint8_t table;           /* kv: table number */
    uint8_t entity;          /* entity: rk_entity */
    uint32_t len;
    const void *key;         /* kv key, or the entity's external id */
} rk_commit_change;
typedef void (*rk_commit_fn)(void *arg, uint64_t txn,
                             const rk_commit_change *changes, size_t n);
int rk_store_set_commit_hook(rk_store *s, rk_commit_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

/* An attribute value as read. Pointers borrow from the reader and stay
 * valid until the next rk_reader_get_entity on that reader or its close. */
typedef struct rk_attr_val {
    uint32_t attr;              /* index in the schema */
    rk_attr_type type;
    double num;
    int64_t ts_ms;
    const char *str;            /* categorical, text; not NUL-terminated */
    uint32_t len;
    const char *const *list;    /* categorical_list */
    const uint32_t *list_lens;
    uint32_t n;
    const float *vec;           /* vector */
    uint32_t dim;
} rk_attr_val;

#define RK_ENTITY_HIDDEN 1u
#define RK_ENTITY_DELETED 2u

typedef struct rk_entity_view {
    uint32_t id;
    uint32_t flags;             /* RK_ENTITY_* */
    int64_t updated_ms;         /* last upsert/hide/delete, 0 if never */
    uint32_t nattrs;
    const rk_attr_val *attrs;
} rk_entity_view;

/* An event as read. Strings borrow from the reader's snapshot and stay
 * valid until the reader is closed. */
typedef struct rk_event {
    uint64_t seq;
    uint32_t type;              /* event type index */
    uint32_t user, item;        /* dense ids */
    int64_t ts_ms;
    double value;
    int has_value;
    int32_t position;           /* -1 = none */
    const char *request_id;     /* NULL when none */
    uint32_t request_id_len;
    const char *context;        /* NULL when none */
    uint32_t context_len;
    const char *id;             /* de-duplication id, NULL when none */
    uint32_t id_len;
} rk_event;

typedef struct rk_row {
    uint64_t seq;
    double label;
    const char *group;          /* NULL when none */
    uint32_t group_len;
    uint32_t nnum;
    const uint32_t *num_idx;
    const double *num_val;
    uint32_t ncat;
    const uint32_t *cat_idx;
    const char *const *cat_val;
    const uint32_t *cat_len;
} rk_row;

typedef struct rk_store_stats {
    uint64_t ids[RK_ENTITY_COUNT];       /* ids ever assigned */
    uint64_t records[RK_ENTITY_COUNT];   /* entities with a record */
    uint64_t hidden_items;
    uint64_t deleted[RK_ENTITY_COUNT];
    uint64_t events;
    uint64_t last_seq;                   /* 0 when no events */
    uint64_t event_ids;                  /* events carrying a dedup id */
    uint64_t datasets;
    uint64_t rows;
    uint64_t bytes;                      /* backend size on disk */
} rk_store_stats;

/* A read snapshot. One reader per thread at a time; cheap to open. Keep it
 * short: a long-lived reader stops the backend from reusing space. */
typedef struct rk_reader rk_reader;

int rk_store_reader(rk_store *s, rk_reader **out, rk_err *err);
void rk_reader_close(rk_reader *r);
/* The commit number of the reader's snapshot: the number the commit hook
 * reported for the last commit this reader sees. Thread-safe. */
uint64_t rk_reader_txn(const rk_reader *r);
/* Last error message of this reader. */
const char *rk_reader_errmsg(const rk_reader *r);

int rk_reader_stats(rk_reader *r, rk_store_stats *out);
/* External id -> dense id; RK_ENOTFOUND if never seen. */
int rk_reader_lookup(rk_reader *r, rk_entity e, const char *ext, size_t len,
                     uint32_t *id);
/* Dense id -> external id (borrowed, valid until close); RK_ENOTFOUND. */
int rk_reader_external(rk_reader *r, rk_entity e, uint32_t id,
                       const char **ext, size_t *len);
/* RK_ENOTFOUND if the id has no record (never upserted/hidden). */
int rk_reader_entity(rk_reader *r, rk_entity e, uint32_t id,
                     rk_entity_view *out);
/* Sequence number of the event with this dedup id; RK_ENOTFOUND. */
int rk_reader_event_by_id(rk_reader *r, const char *id, size_t len,
                          uint64_t *seq);

/* Scans events with seq >= from_seq in order; the callback returns 0 to go
 * on, anything else to stop (that value is returned). */
typedef int (*rk_event_fn)(void *arg, const rk_event *ev);
int rk_reader_scan_events(rk_reader *r, uint64_t from_seq, rk_event_fn fn,
                          void *arg);
/* Scans entities with a record, in id order. */
typedef int (*rk_entity_fn)(void *arg, const rk_entity_view *v);
int rk_reader_scan_entities(rk_reader *r, rk_entity e, rk_entity_fn fn,
                            void *arg);
/* Scans a dataset's rows in insertion order; RK_ENOTFOUND if no dataset. */
typedef int (*rk_row_fn)(void *arg, const rk_row *row);
int rk_reader_scan_rows(rk_reader *r, const char *dataset, rk_row_fn fn,
                        void *arg);
/* Datasets in name order; the callback gets the name and its row count. */
typedef int (*rk_dataset_fn)(void *arg, const char *name, uint64_t rows);
int rk_reader_scan_datasets(rk_reader *r, rk_dataset_fn fn, void *arg);

/* A key-value table's value for key: *val borrows the reader's snapshot
 * (valid until the reader is closed). RK_ENOTFOUND, RK_EINVAL. */
int rk_reader_kv_get(rk_reader *r, unsigned table, const void *key,
                     size_t klen, const void **val, size_t *vlen);
/* Scans a table's keys that start with prefix (plen 0: all), in byte
 * order from the first key >= start (NULL: from the prefix). The callback
 * returns 0 to go on, anything else to stop (that value is returned). */
typedef int (*rk_kv_fn)(void *arg, const void *key, size_t klen,
                        const void *val, size_t vlen);
int rk_reader_kv_scan(rk_reader *r, unsigned table, const void *prefix,
                      size_t plen, const void *start, size_t slen,
                      rk_kv_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* RK_STORE_H */
