/*
 * store_int.h — internals shared by the store's files: the backend function
 * table, the encoded form of batches, and the record codecs.
 *
 * A batch is a flat byte buffer of ops (see RK__OP_*), built and validated
 * by batch.c on the producer's thread; backends only decode it. Records
 * (entities, events, rows) have one binary layout, little-endian, written
 * by codec.c; every backend stores those bytes as values, so a record means
 * the same thing whatever holds it.
 */
#ifndef RK_STORE_INT_H
#define RK_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "rk_store.h"

/* ---- batch ops ---------------------------------------------------------- */

enum {
    RK__OP_EVENT = 1,
    RK__OP_UPSERT = 2,
    RK__OP_HIDE = 3,
    RK__OP_DELETE = 4,
    RK__OP_ROW = 5,
    RK__OP_DECLARE = 6,
    RK__OP_KV_PUT = 7,   /* u8 table, u16 klen, key, u32 vlen, val */
    RK__OP_KV_DEL = 8,   /* u8 table, u16 klen, key */
    RK__OP_KV_MERGE = 9  /* u8 table, u16 klen, key, u32 olen, operand */
};

/* Merge functions per key-value table, owned by the store and read by the
 * backend's writer. */
typedef struct rk__merge_op {
    rk_kv_merge_fn fn;
    void *arg;
} rk__merge_op;

/* What one commit changed, for the commit hook. `lost` is set when an
 * entry could not be recorded (the hook then reports "anything"). */
typedef struct rk__changes {
    RK_VEC(rk_commit_change) v;
    int lost;
} rk__changes;

/* Event op flags, also used in the stored event record. */
enum {
    RK__EV_VALUE = 1,
    RK__EV_POSITION = 2,
    RK__EV_REQUEST = 4,
    RK__EV_CONTEXT = 8,
    RK__EV_ID = 16
};

struct rk_batch {
    const rk_schema *schema;
    rk_buf buf;          /* encoded ops */
    size_t count;        /* number of ops */
};

/* Appends the op that makes an attribute declaration durable. */
int rk__batch_declare(rk_batch *b, rk_entity e, const char *name,
                      rk_attr_type type, uint32_t dim);

/* A cursor over a batch's encoded ops. */
typedef struct rk__rd {
    const unsigned char *p, *end;
    int bad; /* set when a read ran past the end */
} rk__rd;

uint8_t rk__rd_u8(rk__rd *r);
uint16_t rk__rd_u16(rk__rd *r);
uint32_t rk__rd_u32(rk__rd *r);
uint64_t rk__rd_u64(rk__rd *r);
double rk__rd_f64(rk__rd *r);
/* Borrow n bytes; NULL (and bad set) past the end. */
const void *rk__rd_bytes(rk__rd *r, size_t n);

int rk__wr_u8(rk_buf *b, uint8_t v);
int rk__wr_u16(rk_buf *b, uint16_t v);
int rk__wr_u32(rk_buf *b, uint32_t v);
int rk__wr_u64(rk_buf *b, uint64_t v);
int rk__wr_f64(rk_buf *b, double v);

/* Decoded event op (borrowed from the batch buffer). */
typedef struct rk__event_op {
    uint8_t type, flags;
    const char *user, *item;
    uint16_t user_len, item_len;
    int64_t ts_ms;
    double value;
    int32_t position;
    const char *request_id, *context;
    uint16_t request_id_len, context_len;
    const char *id;         /* when RK__EV_ID */
    uint16_t id_len;
    const uint8_t *id_hash; /* 16 bytes when RK__EV_ID */
} rk__event_op;

/* Encodes a stored event record (without seq) into b. */
int rk__event_encode(rk_buf *b, const rk__event_op *op, uint32_t user,
                     uint32_t item);
/* Decodes a stored event; RK_ECORRUPT when malformed. */
int rk__event_decode(const void *p, size_t n, uint64_t seq, rk_event *out);

/* Entity record: u32 flags, i64 updated_ms, u16 nattrs, attrs... The attr
 * list encoding is also what an upsert op carries. */
typedef struct rk__attr_scratch rk__attr_scratch;
/* Decodes an attribute list from r into vals (capacity RK_MAX_ATTRS) using
 * arena a for lists/vectors; RK_ECORRUPT when malformed. */
int rk__attrs_decode(rk__rd *r, uint16_t n, rk_attr_val *vals, rk_arena *a);
/* Encodes one attribute value. */
int rk__attr_encode(rk_buf *b, const rk_attr_val *v);
/* Decodes a full entity record into view/vals. */
int rk__entity_decode(const void *p, size_t n, uint32_t id,
                      rk_entity_view *view, rk_attr_val *vals, rk_arena *a);
/* Merges an upsert's attrs into an existing record (or none: old NULL) and
 * writes the new record into out. */
int rk__entity_merge(rk_buf *out, const void *old, size_t old_n,
                     const void *attrs, size_t attrs_n, uint16_t nattrs,
                     int replace, int64_t now_ms, rk_arena *a);
/* Writes a record with new flags (hide/delete) keeping or dropping attrs. */
int rk__entity_set_flags(rk_buf *out, const void *old, size_t old_n,
                         uint32_t set, uint32_t clear, int drop_attrs,
                         int64_t now_ms);

/* Rows: f64 label, u16 group_len + bytes, u32 nnum, (u32, f64)*, u32 ncat,
 * (u32 idx, u32 len, bytes)*. */
int rk__row_encode(rk_buf *b, const rk_row_in *row);
int rk__row_decode(const void *p, size_t n, uint64_t seq, rk_row *out,
                   rk_arena *a);

/* ---- schema internals ---------------------------------------------------- */

/* Serialises a schema to JSON text (rk_malloc'd, NUL-terminated). */
int rk__schema_to_json(const rk_schema *s, char **out);
/* Merges JSON-serialised declarations into s (adding what is missing);
 * RK_ECONFIG on a conflict. */
int rk__schema_merge_json(rk_schema *s, const char *json, size_t len,
                          rk_err *err);
/* Copies every declaration of src into dst (conflicts: RK_ECONFIG). */
int rk__schema_merge(rk_schema *dst, const rk_schema *src, rk_err *err);

/* ---- backends ------------------------------------------------------------ */

typedef struct rk__backend_ops {
    const char *name;
    /* Opens the backend. `schema` starts empty: the backend adds its
     * persisted declarations first (their indexes are fixed), then those of
     * `declared` (may be NULL), and persists the union unless read-only. */
    int (*open)(void **be, const rk_store_opts *o, rk_schema *schema,
                const rk_schema *declared, rk_err *err);
    void (*close)(void *be);
    /* Writer thread only: applies n batches in one durable transaction.
     * results[i] receives batch i's counts. On failure nothing is applied
     * and the backend's in-memory state is reset to the last commit. */
    int (*apply)(void *be, const rk_batch *const *batches, size_t n,
                 rk_write_result *results, rk_err *err);
    /* Writer thread: from the next apply on, record its changes in chg
     * (NULL: stop). Entries borrow the batches' buffers. */
    void (*set_changes)(void *be, rk__changes *chg);
    /* Number of the last commit (writer thread or no writes running). */
    uint64_t (*last_txn)(void *be);
    /* Commit number of a reader's snapshot. */
    uint64_t (*reader_txn)(void *rd);
    /* Flushes to stable storage (everysec policy and rk_store_sync). */
    int (*sync)(void *be, rk_err *err);

    /* Readers: a snapshot handle per rk_reader. */
    int (*reader_open)(void *be, void **rd, rk_err *err);
    void (*reader_close)(void *rd);
    int (*stats)(void *rd, rk_store_stats *out, rk_err *err);
    int (*lookup)(void *rd, rk_entity e, const char *ext, size_t len,
                  uint32_t *id, rk_err *err);
    int (*external)(void *rd, rk_entity e, uint32_t id, const char **ext,
                    size_t *len, rk_err *err);
    /* Raw entity record bytes (borrowed for the snapshot's life). */
    int (*entity_raw)(void *rd, rk_entity e, uint32_t id, const void **p,
                      size_t *n, rk_err *err);
    int (*event_by_id)(void *rd, const uint8_t hash[16], uint64_t *seq,
                       rk_err *err);
    /* Iterators hand raw records to the callback. */
    int (*scan_events)(void *rd, uint64_t from,
                       int (*fn)(void *, uint64_t seq, const void *, size_t),
                       void *arg, rk_err *err);
    int (*scan_entities)(void *rd, rk_entity e,
                         int (*fn)(void *, uint32_t id, const void *, size_t),
                         void *arg, rk_err *err);
    int (*scan_rows)(void *rd, const char *dataset,
                     int (*fn)(void *, uint64_t seq, const void *, size_t),
                     void *arg, rk_err *err);
    int (*scan_datasets)(void *rd, rk_dataset_fn fn, void *arg, rk_err *err);
    /* Key-value tables; the writer reads merge functions from `merge`
     * (RK_KV_TABLES entries owned by the store), given once after open. */
    void (*set_merge_table)(void *be, const rk__merge_op *merge);
    int (*kv_get)(void *rd, unsigned table, const void *key, size_t klen,
                  const void **val, size_t *vlen, rk_err *err);
    int (*kv_scan)(void *rd, unsigned table, const void *prefix, size_t plen,
                   const void *start, size_t slen, rk_kv_fn fn, void *arg,
                   rk_err *err);
} rk__backend_ops;

extern const rk__backend_ops rk__lmdb_backend;

/* Hash of an event's dedup id (xxh3-128). */
void rk__event_id_hash(const char *id, size_t len, uint8_t out[16]);

#endif
