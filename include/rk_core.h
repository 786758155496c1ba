/*
 * rk_core.h — the foundation every rankd module builds on.
 *
 * Error codes (one table), the counting allocator with limits and fault
 * injection, arenas, a hash map, dynamic arrays, bounded string buffers and
 * strict number parsing, logging, clocks, a small thread pool and the
 * configuration tree (YAML or JSON).
 *
 * Conventions used throughout rankd:
 *  - every fallible function returns int: 0 on success, a negative RK_E* code
 *    otherwise; results come back through out-parameters;
 *  - handles are opaque; destroy(NULL) does nothing;
 *  - detailed messages travel in an rk_err (code + text) owned by the caller
 *    or kept by a handle for its last error.
 */
#ifndef RK_CORE_H
#define RK_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define RK_NODISCARD __attribute__((warn_unused_result))
#else
#define RK_PRINTF(a, b)
#define RK_NODISCARD
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* X(name, value, message). Codes are only ever appended, never renumbered,
 * because they travel over HTTP and into logs. */
#define RK_ERRNO_MAP(X)                                                    \
    X(OK, 0, "success")                                                    \
    X(NOMEM, -1, "out of memory")                                          \
    X(INVAL, -2, "invalid argument")                                       \
    X(IO, -3, "I/O error")                                                 \
    X(NOTFOUND, -4, "not found")                                           \
    X(EXIST, -5, "already exists")                                         \
    X(PARSE, -6, "malformed input")                                        \
    X(CONFIG, -7, "invalid configuration")                                 \
    X(CORRUPT, -8, "corrupted data")                                       \
    X(LIMIT, -9, "limit exceeded")                                         \
    X(STATE, -10, "invalid state")                                         \
    X(STORE, -11, "storage backend error")                                 \
    X(FULL, -12, "storage full")                                           \
    X(VERSION, -13, "incompatible format version")                         \
    X(TYPE, -14, "wrong type")                                             \
    X(CLOSED, -15, "closed")                                               \
    X(UNSUPPORTED, -16, "not supported")                                   \
    X(TIMEOUT, -17, "timed out")                                           \
    X(BUSY, -18, "resource busy")                                          \
    X(INTERNAL, -19, "internal error")

enum {
#define RK__ERR_ENUM(name, val, msg) RK_E##name = (val),
    RK_ERRNO_MAP(RK__ERR_ENUM)
#undef RK__ERR_ENUM
};
/* RK_OK is an alias for RK_EOK that reads better at call sites. */
#define RK_OK 0

/* Human message for a code ("out of memory"); never NULL, "unknown error"
 * for codes outside the table. Thread-safe, returns static storage. */
const char *rk_strerror(int code);
/* Stable upper-case name for a code ("NOMEM"); never NULL. Thread-safe. */
const char *rk_errname(int code);

/* A code plus a detailed message, e.g. "events.csv:12: bad timestamp 'x'".
 * Zero-initialise (or rk_err_clear) before use. Not thread-safe per object. */
#define RK_ERR_MSG_MAX 512
typedef struct rk_err {
    int code;
    char msg[RK_ERR_MSG_MAX];
} rk_err;

/* Records code and a formatted message in err (err may be NULL) and returns
 * code, so callers can write `return rk_err_set(err, RK_EINVAL, "...")`. */
int rk_err_set(rk_err *err, int code, const char *fmt, ...) RK_PRINTF(3, 4);
int rk_err_setv(rk_err *err, int code, const char *fmt, va_list ap);
/* Prefixes the existing message with a formatted context ("import: ").
 * Returns err->code. err may be NULL (returns RK_EINTERNAL then). */
int rk_err_prefix(rk_err *err, const char *fmt, ...) RK_PRINTF(2, 3);
void rk_err_clear(rk_err *err);
/* The message if set, else rk_strerror(code). err may be NULL ("success"). */
const char *rk_err_msg(const rk_err *err);

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */
/*
 * All rankd allocation goes through these functions. They count bytes in
 * use, the high-water mark and the number of allocations, enforce an
 * optional byte limit, and can be told to fail the Nth allocation (fault
 * injection for tests). The counters are process-wide atomics; the knobs
 * are set by the program (CLI from config, tests) before threads start.
 * All functions are thread-safe.
 */
void *rk_malloc(size_t size);
void *rk_calloc(size_t n, size_t size);
void *rk_realloc(void *p, size_t size);
void rk_free(void *p);
char *rk_strdup(const char *s);
char *rk_strndup(const char *s, size_t n);
void *rk_memdup(const void *p, size_t n);

typedef struct rk_mem_stats {
    size_t in_use;       /* bytes currently allocated */
    size_t peak;         /* high-water mark of in_use */
    size_t limit;        /* 0 = unlimited */
    uint64_t allocs;     /* successful allocations since start */
    uint64_t failures;   /* allocations refused (limit or injection) */
} rk_mem_stats;

void rk_mem_get_stats(rk_mem_stats *out);
/* Refuse allocations that would push in_use above limit bytes (0 = none). */
void rk_mem_set_limit(size_t limit);
/* Make the nth allocation from now fail (1 = the very next). If persist is
 * nonzero every allocation after it fails too. n = 0 disables injection. */
void rk_mem_fail_at(uint64_t n, int persist);
/* Number of allocation attempts since the last rk_mem_fail_at call; lets a
 * test loop "fail the 1st, 2nd, ... Nth" until an operation succeeds. */
uint64_t rk_mem_attempts(void);
/* Routes the allocations of the libraries that allow it (jansson) through
 * the counting allocator, so they show in bytes in use and the peak. They
 * are never refused by the limit or by fault injection: jansson 2.14
 * corrupts or crashes when an allocation fails in the middle of a token,
 * so its inputs are bounded instead. Process wide: call at start-up,
 * before other threads run. */
void rk_mem_hook_libraries(void);

/* ------------------------------------------------------------------------ */
/* Arena: bump allocation freed in one call                                  */
/* ------------------------------------------------------------------------ */
/*
 * Request-scoped memory. Chunks come from rk_malloc. max_bytes bounds the
 * total (0 = unbounded): `reserved`, the bytes taken from rk_malloc chunk
 * headers included, never exceeds it. chunk_size 0 means 8 KiB; a request
 * larger than a chunk gets a chunk of its own. Built with -DRK_NO_ARENA
 * every allocation is a separate rk_malloc so sanitizers see each one (and
 * reset keeps nothing). Pointers stay valid until reset or free. Not
 * thread-safe.
 */
typedef struct rk__arena_chunk rk__arena_chunk;
typedef struct rk_arena {
    rk__arena_chunk *head;
    size_t chunk_size;
    size_t max_bytes;
    size_t used;      /* bytes handed out */
    size_t reserved;  /* bytes obtained from rk_malloc */
} rk_arena;

void rk_arena_init(rk_arena *a, size_t chunk_size, size_t max_bytes);
/* 16-byte aligned; NULL when out of memory or over max_bytes. size 0
 * gives a distinct non-NULL pointer. */
void *rk_arena_alloc(rk_arena *a, size_t size);
void *rk_arena_memdup(rk_arena *a, const void *p, size_t n);
/* Copies n bytes and a terminating NUL. */
char *rk_arena_strndup(rk_arena *a, const char *s, size_t n);
char *rk_arena_sprintf(rk_arena *a, const char *fmt, ...) RK_PRINTF(2, 3);
/* Frees everything but keeps the first chunk for reuse. */
void rk_arena_reset(rk_arena *a);
/* Frees everything. The arena may be re-initialised afterwards. */
void rk_arena_free(rk_arena *a);

/* ------------------------------------------------------------------------ */
/* Dynamic arrays                                                            */
/* ------------------------------------------------------------------------ */
/*
 * RK_VEC(int) v = {0}; if (rk_vec_push(&v, 42)) ...; rk_vec_free(&v);
 * max (0 = unbounded) caps the element count: growth beyond returns RK_ELIMIT.
 */
#define RK_VEC(T) struct { T *v; size_t n, cap, max; }
/* Grows *v (holding *cap elements of elem bytes) to hold at least need
 * elements: 0, RK_ELIMIT (need > max, max != 0) or RK_ENOMEM. Capacity
 * doubles and is clamped to max. On failure *v and *cap are unchanged. */
int rk__vec_grow(void **v, size_t *cap, size_t max, size_t elem, size_t need);
/* The code rk__vec_grow returned after a failed growth to need elements,
 * recomputed without retrying the allocation (used by rk_vec_push). */
int rk__vec_grow_error(size_t max, size_t need);
#define rk_vec_reserve(vp, need)                                           \
    rk__vec_grow((void **)&(vp)->v, &(vp)->cap, (vp)->max, sizeof(*(vp)->v), (need))
/* Evaluates to 0 or a negative error (the vector is unchanged then). x is
 * evaluated at most once. */
#define rk_vec_push(vp, x)                                                 \
    ((vp)->n < (vp)->cap || rk_vec_reserve((vp), (vp)->n + 1) == 0         \
         ? ((vp)->v[(vp)->n++] = (x), 0)                                   \
         : rk__vec_grow_error((vp)->max, (vp)->n + 1))
#define rk_vec_free(vp) (rk_free((vp)->v), (vp)->v = NULL, (vp)->n = (vp)->cap = 0)

/* ------------------------------------------------------------------------ */
/* Bounded byte buffer and string helpers                                    */
/* ------------------------------------------------------------------------ */
/* A growable buffer with a hard maximum (like curl's dynbuf). Always NUL
 * terminated when len > 0 or after any append. max bounds len (the NUL is
 * extra), so cap <= max + 1. Appends are all or nothing: on RK_ELIMIT or
 * RK_ENOMEM the content is unchanged. data is owned by the buffer and moves
 * when it grows. Not thread-safe. */
typedef struct rk_buf {
    char *data;
    size_t len, cap, max;
} rk_buf;

void rk_buf_init(rk_buf *b, size_t max);           /* max 0 = unbounded */
int rk_buf_reserve(rk_buf *b, size_t extra);        /* RK_ENOMEM / RK_ELIMIT */
int rk_buf_append(rk_buf *b, const void *p, size_t n);
int rk_buf_puts(rk_buf *b, const char *s);
int rk_buf_putc(rk_buf *b, char c);
int rk_buf_printf(rk_buf *b, const char *fmt, ...) RK_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included, escaping controls
 * (\n \t ... or \u00XX), quote and backslash; each maximal invalid UTF-8
 * subpart (overlongs, surrogates, > U+10FFFF, truncations) becomes U+FFFD,
 * so the output is always valid UTF-8. */
int rk_buf_put_json_str(rk_buf *b, const char *s, size_t n);
/* A JSON number with 9 significant digits (a float round-trips), or null
 * for NaN and infinities, which JSON cannot carry. */
int rk_buf_put_json_num(rk_buf *b, double v);
void rk_buf_reset(rk_buf *b);                        /* len = 0, keeps memory */
void rk_buf_free(rk_buf *b);

/* Strict parsers: the whole [s, s+n) must be the number, no spaces, no
 * '+'. Return 0 or RK_EPARSE (also for overflow, NaN and infinities in
 * f64); *out is untouched on error. i64 takes -?[0-9]+ (leading zeros and
 * "-0" are fine), u64 [0-9]+. f64 takes -?digits[.digits][e[+-]digits]
 * with ".5" and "5." allowed, at most 511 characters; values that underflow
 * round to zero or a subnormal and are accepted. Thread-safe. */
int rk_parse_i64(const char *s, size_t n, int64_t *out);
int rk_parse_u64(const char *s, size_t n, uint64_t *out);
int rk_parse_f64(const char *s, size_t n, double *out);

/* Length of the valid UTF-8 prefix of s (== n if all valid). Overlong
 * forms, surrogates and code points above U+10FFFF are invalid. */
size_t rk_utf8_valid_prefix(const char *s, size_t n);
/* Appends Latin-1 bytes converted to UTF-8. */
int rk_buf_put_latin1(rk_buf *b, const char *s, size_t n);

/* ------------------------------------------------------------------------ */
/* Little-endian fields of file and record formats                           */
/* ------------------------------------------------------------------------ */
/* Any alignment, the same bytes on any host. On a little-endian host each
 * is one unaligned move (GCC -O2 keeps the byte-wise form as a loop, and
 * these sit under every aggregate key and record read); elsewhere byte by
 * byte. The caller guarantees the room. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline void rk_put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void rk_put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t rk_get_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t rk_get_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
#else
static inline void rk_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static inline void rk_put_u64(unsigned char *p, uint64_t v)
{
    rk_put_u32(p, (uint32_t)v);
    rk_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t rk_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static inline uint64_t rk_get_u64(const unsigned char *p)
{
    return (uint64_t)rk_get_u32(p) | (uint64_t)rk_get_u32(p + 4) << 32;
}
#endif
static inline void rk_put_f32(unsigned char *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    rk_put_u32(p, u);
}
static inline void rk_put_f64(unsigned char *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    rk_put_u64(p, u);
}
static inline float rk_get_f32(const unsigned char *p)
{
    uint32_t u = rk_get_u32(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}
static inline double rk_get_f64(const unsigned char *p)
{
    uint64_t u = rk_get_u64(p);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* mkdir -p: creates path and its missing parents (mode 0755); existing
 * ones are fine. RK_EIO naming the directory that failed, RK_EINVAL for a
 * path of 4 KiB or more. */
int rk_mkdir_p(const char *path, rk_err *err);

/* 64-bit and 128-bit hashes (xxh3) of a byte string; p may be NULL when
 * n is 0. The 128-bit one is written in canonical (big-endian) byte order
 * so stored hashes are portable. Thread-safe. */
uint64_t rk_hash64(const void *p, size_t n, uint64_t seed);
void rk_hash128(const void *p, size_t n, uint8_t out[16]);

/* ------------------------------------------------------------------------ */
/* Hash map: byte-string keys -> uint64 values                               */
/* ------------------------------------------------------------------------ */
/*
 * Open addressing with linear probing and backward-shift deletion. Keys are
 * copied into the map. max_entries bounds the size (0 = unbounded);
 * inserting a new key into a full map returns RK_ELIMIT so a caller can
 * evict (rk_map_evict_one) and retry. Not thread-safe for writers; get,
 * size and next never modify the map, so concurrent readers are safe while
 * no one writes. The hash seed is fixed, so iteration order is the same
 * from run to run; since that also lets crafted keys collide, maps fed by
 * untrusted input should set max_entries.
 */
typedef struct rk_map rk_map;

int rk_map_create(rk_map **out, size_t max_entries);
void rk_map_destroy(rk_map *m);
/* 0 and *val on hit, RK_ENOTFOUND on miss. */
int rk_map_get(const rk_map *m, const void *key, size_t klen, uint64_t *val);
/* Insert or overwrite. RK_ENOMEM, RK_ELIMIT; RK_EINVAL for a key of 4 GiB
 * or more. Keys up to 28 bytes are stored inline (no allocation). */
int rk_map_put(rk_map *m, const void *key, size_t klen, uint64_t val);
/* 0 if removed, RK_ENOTFOUND if absent. */
int rk_map_del(rk_map *m, const void *key, size_t klen);
/* Removes some entry to make room; RK_ENOTFOUND if empty. A clock hand
 * sweeps the slot array, so successive calls take entries in slot order,
 * which is unrelated to key or insertion order (random replacement). */
int rk_map_evict_one(rk_map *m);
size_t rk_map_size(const rk_map *m);
void rk_map_clear(rk_map *m);
/* Iteration: start with *it = 0; returns 1 while entries remain. Borrowed
 * key pointer valid until the next mutation. The map must not be modified
 * during an iteration (deletion shifts entries). Any out pointer may be
 * NULL. */
int rk_map_next(const rk_map *m, size_t *it, const void **key, size_t *klen,
                uint64_t *val);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */
typedef enum rk_log_level {
    RK_LOG_DEBUG = 0,
    RK_LOG_INFO = 1,
    RK_LOG_WARN = 2,
    RK_LOG_ERROR = 3,
    RK_LOG_OFF = 4
} rk_log_level;

/* A logger is a plain struct owned by the program and passed to modules.
 * A NULL logger discards everything. Lines are written whole
 * (thread-safe): "2026-11-22T10:00:00.123Z INFO store: opened ./data".
 * Each line is flushed; CR/LF inside a message become spaces and a line is
 * cut (ending "...") at 2 KiB, so one call is always exactly one line. */
typedef struct rk_logger {
    rk_log_level level;
    FILE *out;
} rk_logger;

void rk_logger_init(rk_logger *lg, rk_log_level level, FILE *out);
/* Parses "debug|info|warn|error|off" (any case, "warning" too);
 * RK_EINVAL otherwise. */
int rk_log_level_parse(const char *s, rk_log_level *out);
void rk_log(const rk_logger *lg, rk_log_level level, const char *module,
            const char *fmt, ...) RK_PRINTF(4, 5);

/* ------------------------------------------------------------------------ */
/* Clocks                                                                    */
/* ------------------------------------------------------------------------ */
uint64_t rk_clock_mono_ns(void);   /* monotonic, for durations */
int64_t rk_clock_wall_ms(void);    /* Unix epoch milliseconds */
void rk_sleep_ms(uint32_t ms);
/* Formats epoch ms as ISO-8601 UTC "2026-11-22T10:00:00.123Z" (any year
 * 0000-9999, also before 1970); rk_parse_time_ms reads it back exactly. */
void rk_format_time_ms(int64_t ms, char out[32]);
/* Epoch ms of midnight UTC on the proleptic Gregorian date y-m-d (m 1..12,
 * d 1..31; not range-checked). Thread-safe. */
int64_t rk_civil_ms(int64_t y, unsigned m, unsigned d);
/* Parses ISO-8601 ("2019-11-15T10:22:05Z", "2019-11-15 10:22:05",
 * "2019-11-15"), or a plain integer (seconds if < 1e11, else ms).
 * MIND's "11/15/2019 10:22:05 AM" form is accepted too.
 * Details: years 0000-9999; seconds optional ("T10:22"); a fraction of 1-9
 * digits is truncated to ms; zone Z, +hh, +hhmm or +hh:mm; no zone means
 * UTC; no leap second (:60). The MIND form is M/D/YYYY h:mm:ss AM|PM
 * (12 AM is midnight), taken as UTC. Integers with |v| < 1e11 are seconds,
 * negative allowed. Anything else, including surrounding spaces, is
 * RK_EPARSE. Thread-safe (no libc time zone state). */
int rk_parse_time_ms(const char *s, size_t n, int64_t *out);
/* Parses a duration: a non-negative number with a unit ms, s, m, h, d or
 * w ("500ms", "30m", "1.5h", "7d"), or without one in seconds; 0 to 100
 * years. RK_EPARSE for an empty or malformed string or an unknown unit
 * (*unit_bad set to 1 for the latter, when given), RK_ELIMIT beyond 100
 * years. Thread-safe. */
int rk_parse_duration_ms(const char *s, int64_t *out, int *unit_bad);

/* ------------------------------------------------------------------------ */
/* Thread pool                                                               */
/* ------------------------------------------------------------------------ */
/*
 * Fixed worker threads and a bounded FIFO of tasks. submit blocks while the
 * queue is full. All functions are thread-safe except destroy.
 * A task must not call rk_pool_wait (it would wait for itself) nor submit
 * to its own pool when it could fill the queue; it may call
 * rk_pool_parallel_for, which never waits for queue space.
 */
typedef struct rk_pool rk_pool;
typedef void (*rk_task_fn)(void *arg);
/* For parallel_for: process items [begin, end). */
typedef void (*rk_range_fn)(void *arg, size_t begin, size_t end);

/* nthreads 0 = one per online CPU (at most 1024, RK_EINVAL above);
 * queue_max 0 = 64 per thread. RK_ENOMEM if memory or threads run out. */
int rk_pool_create(rk_pool **out, unsigned nthreads, size_t queue_max);
/* RK_EINVAL for a NULL fn, RK_ECLOSED once destroy has begun. */
int rk_pool_submit(rk_pool *p, rk_task_fn fn, void *arg);
/* Waits until every submitted task has finished. */
void rk_pool_wait(rk_pool *p);
/* Splits [0, n) into contiguous ranges of at least grain items, runs them on
 * the pool and waits. Deterministic partitioning for a given n, grain and
 * thread count: k = min(n / grain, 4 * threads) (at least 1) ranges whose
 * sizes differ by at most one. The caller runs ranges too; it waits only
 * for its own ranges, not for unrelated tasks. grain 0 means 1. Needs no
 * allocation. RK_EINVAL for a NULL fn. */
int rk_pool_parallel_for(rk_pool *p, size_t n, size_t grain, rk_range_fn fn,
                         void *arg);
unsigned rk_pool_threads(const rk_pool *p);
/* Finishes queued tasks, joins the workers, frees. NULL is a no-op. */
void rk_pool_destroy(rk_pool *p);

/* ------------------------------------------------------------------------ */
/* Configuration tree                                                        */
/* ------------------------------------------------------------------------ */
/*
 * YAML (libyaml) and JSON (jansson) documents load into one tree of nodes.
 * Every node remembers the file and line it came from, so validation errors
 * read "rankd.yaml:12: store.fsync: expected always or everysec, got 'x'".
 * Scalars from YAML are typed by their plain form: true/false, null/~,
 * integers, floats, otherwise strings (quoted YAML scalars stay strings).
 * A tree is immutable after loading and may be read from many threads.
 * Limits: depth 64, 1 MiB input, 100k nodes (RK_ELIMIT beyond).
 */
typedef enum rk_conf_type {
    RK_CONF_NULL,
    RK_CONF_BOOL,
    RK_CONF_INT,
    RK_CONF_FLOAT,
    RK_CONF_STR,
    RK_CONF_LIST,
    RK_CONF_MAP
} rk_conf_type;

typedef struct rk_conf rk_conf; /* the whole document (owns all nodes) */
typedef struct rk_conf_node rk_conf_node;

/* Format chosen by extension: .json -> JSON, anything else -> YAML. */
int rk_conf_load_file(rk_conf **out, const char *path, rk_err *err);
/* name is used in messages (the file name). */
int rk_conf_parse_yaml(rk_conf **out, const char *buf, size_t len,
                       const char *name, rk_err *err);
int rk_conf_parse_json(rk_conf **out, const char *buf, size_t len,
                       const char *name, rk_err *err);
void rk_conf_destroy(rk_conf *c);
/* Root node (a map for any valid rankd config; may be NULL-typed for an
 * empty document). Borrowed, valid until rk_conf_destroy. */
const rk_conf_node *rk_conf_root(const rk_conf *c);

rk_conf_type rk_conf_node_type(const rk_conf_node *n);
const char *rk_conf_type_name(rk_conf_type t);  /* "map", "string", ... */
const char *rk_conf_node_file(const rk_conf_node *n);
int rk_conf_node_line(const rk_conf_node *n);
/* Dotted path of the node from the root, e.g. "store.fsync" or
 * "events.click.weight"; list elements appear as "[3]". */
const char *rk_conf_node_path(const rk_conf_node *n);

/* Map lookup by key (one level). NULL if n is not a map or key absent. */
const rk_conf_node *rk_conf_get(const rk_conf_node *n, const char *key);
/* Dotted lookup: rk_conf_find(root, "store.fsync"). */
const rk_conf_node *rk_conf_find(const rk_conf_node *n, const char *path);
/* Children of a map or list, in document order. For lists key is NULL. */
size_t rk_conf_len(const rk_conf_node *n);
const rk_conf_node *rk_conf_at(const rk_conf_node *n, size_t i,
                               const char **key);

/* Typed reads. n may be NULL: then *out = dflt and 0 is returned. A node of
 * the wrong type gives RK_ECONFIG with "file:line: path: expected X, got Y".
 * Integers are accepted where floats are expected. Returned strings are
 * borrowed from the tree. */
int rk_conf_as_bool(const rk_conf_node *n, int dflt, int *out, rk_err *err);
int rk_conf_as_int(const rk_conf_node *n, int64_t dflt, int64_t *out,
                   rk_err *err);
int rk_conf_as_float(const rk_conf_node *n, double dflt, double *out,
                     rk_err *err);
int rk_conf_as_str(const rk_conf_node *n, const char *dflt, const char **out,
                   rk_err *err);
/* Duration in ms: "500ms", "10s", "30m", "1h", "7d", "2w" or a number of
 * seconds, 0 to 100 years; anything else RK_ECONFIG naming the place. */
int rk_conf_as_duration_ms(const rk_conf_node *n, int64_t dflt, int64_t *out,
                           rk_err *err);
/* Ranged integer: also RK_ECONFIG when outside [lo, hi]. */
int rk_conf_as_int_range(const rk_conf_node *n, int64_t dflt, int64_t lo,
                         int64_t hi, int64_t *out, rk_err *err);
/* String that must be one of the NULL-terminated choices; *idx its index. */
int rk_conf_as_enum(const rk_conf_node *n, int dflt_idx,
                    const char *const *choices, int *idx, rk_err *err);
/* n must be a map whose keys all appear in the NULL-terminated allowed
 * list; otherwise RK_ECONFIG "file:line: unknown key 'x' in path (allowed:
 * a, b)". n may be NULL (ok). */
int rk_conf_check_keys(const rk_conf_node *n, const char *const *allowed,
                       rk_err *err);
/* Formats a config error at node n: "file:line: path: <message>". */
int rk_conf_error(rk_err *err, const rk_conf_node *n, const char *fmt, ...)
    RK_PRINTF(3, 4);

#ifdef __cplusplus
}
#endif
#endif /* RK_CORE_H */
