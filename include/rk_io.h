/*
 * rk_io.h — importing data into the store and exporting it again.
 *
 * Three layers, each usable on its own:
 *
 *  1. A bounded record reader (rk_io_reader) that splits a file or a memory
 *     buffer into records: it strips a UTF-8 byte order mark and CRLF line
 *     endings, caps a record at RK_IO_MAX_LINE bytes and, for CSV formats,
 *     joins physical lines while a quoted field is still open.
 *
 *  2. Pure record parsers (rk_io_parser) that turn one record of a known
 *     format into the store operations it stands for — events, one user or
 *     item upsert, or one dataset row — or reject it with RK_EPARSE and a
 *     reason ("column 'rating': bad number 'x'"). They need no open store
 *     (only a schema for the generic users/items formats), allocate only
 *     through rk_malloc, and are what the fuzz targets exercise. The RFC 4180
 *     tokenizer (rk_csv) underneath is public too.
 *
 *  3. The store-facing driver rk_import_file (batches, strict mode,
 *     de-duplication, progress, statistics) and rk_export_jsonl, whose
 *     output rk_import_file reads back losslessly (format "jsonl").
 *
 * docs/import.md describes every format and its mapping in user terms.
 */
#ifndef RK_IO_H
#define RK_IO_H

#include "rk_core.h"
#include "rk_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest record (a line, or a CSV record spanning lines) in bytes, without
 * its line ending. Longer records are rejected with "line too long". */
#define RK_IO_MAX_LINE (1u << 20)
/* Most fields in one CSV/TSV record. */
#define RK_IO_MAX_FIELDS 4096

/* ------------------------------------------------------------------------ */
/* Formats                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum rk_import_format {
    RK_FMT_AUTO = 0,       /* detect from the file name and first line */
    RK_FMT_ML_DATA,        /* "ml-data":  MovieLens 100k u.data (and u1.base...) */
    RK_FMT_ML_ITEM,        /* "ml-item":  MovieLens 100k u.item (Latin-1) */
    RK_FMT_ML_USER,        /* "ml-user":  MovieLens 100k u.user (Latin-1) */
    RK_FMT_ML_RATINGS,     /* "ml-ratings": MovieLens ratings.csv */
    RK_FMT_ML_MOVIES,      /* "ml-movies":  MovieLens movies.csv */
    RK_FMT_CRITEO,         /* "criteo":  label, I1..I13, C1..C26 (TSV) */
    RK_FMT_SVMLIGHT,       /* "svmlight": label [qid:Q] idx:val ... [# c] */
    RK_FMT_MIND_BEHAVIORS, /* "mind-behaviors": MIND behaviors.tsv */
    RK_FMT_MIND_NEWS,      /* "mind-news": MIND news.tsv */
    RK_FMT_CSV,            /* "csv":  generic, header row, kind decides */
    RK_FMT_TSV,            /* "tsv":  same with TAB separators */
    RK_FMT_JSONL,          /* "jsonl": one JSON object per line */
    RK_FMT_COUNT
} rk_import_format;

/* What a generic format (csv, tsv, jsonl) holds. Known formats imply it. */
typedef enum rk_import_kind {
    RK_KIND_EVENTS = 0,
    RK_KIND_USERS,
    RK_KIND_ITEMS,
    RK_KIND_ROWS
} rk_import_kind;

/* "ml-data", ...; "auto" for RK_FMT_AUTO; never NULL. Thread-safe. */
const char *rk_import_format_name(rk_import_format f);
/* Parses a format name; RK_EINVAL (listing the names in err) otherwise. */
int rk_import_format_parse(const char *name, rk_import_format *out,
                           rk_err *err);
/* "events", "users", "items", "rows". */
const char *rk_import_kind_name(rk_import_kind k);
int rk_import_kind_parse(const char *name, rk_import_kind *out, rk_err *err);
/* The kind a format implies (generic formats return `dflt`). */
rk_import_kind rk_import_format_kind(rk_import_format f, rk_import_kind dflt);

/* Detects a format from the file name (basename rules such as u.data,
 * ratings.csv, behaviors.tsv, *.jsonl) and, where the name is ambiguous,
 * from `head`, the first bytes of the file (may be NULL/0). Returns 0 and
 * *out, or RK_EINVAL "cannot detect the format of 'x' (use --format)". */
int rk_import_detect(const char *path, const char *head, size_t head_len,
                     rk_import_format *out, rk_err *err);

/* An attribute a known format writes; the driver declares these with
 * rk_store_declare_attr before importing. */
typedef struct rk_io_attr_need {
    rk_entity entity;
    const char *name;
    rk_attr_type type;
} rk_io_attr_need;

/* Static tables (never freed) of the attributes and event types a format
 * needs; *n = 0 for formats that need none. Thread-safe. */
const rk_io_attr_need *rk_io_format_attrs(rk_import_format f, size_t *n);
const char *const *rk_io_format_event_types(rk_import_format f, size_t *n);

/* ------------------------------------------------------------------------ */
/* Record reader                                                             */
/* ------------------------------------------------------------------------ */
/*
 * Reads records from a FILE (owned by the reader) or borrows a memory
 * buffer. A record is one line without its "\n" or "\r\n"; with csv_sep set
 * it continues over line breaks inside a double-quoted field (the breaks
 * are kept as "\n"). A byte order mark at the very start is skipped. Memory:
 * one read buffer of RK_IO_MAX_LINE + 64 KiB plus a joining buffer of at
 * most RK_IO_MAX_LINE. Not thread-safe.
 */
typedef struct rk_io_reader rk_io_reader;

/* RK_EIO ("path: No such file or directory") or RK_ENOMEM. */
int rk_io_reader_open(rk_io_reader **out, const char *path, rk_err *err);
/* The buffer is borrowed and must outlive the reader. */
int rk_io_reader_open_mem(rk_io_reader **out, const char *buf, size_t len,
                          rk_err *err);
/* csv_sep = ',' or '\t' enables quoted-newline joining; 0 disables it. */
void rk_io_reader_set_csv(rk_io_reader *r, char csv_sep);
/* Next record: returns 1 with *rec and *len (borrowed until the next call) and
 * *line (1-based number of the record's first line), 0 at end of input, or
 * a negative error: RK_ELIMIT when the record was longer than
 * RK_IO_MAX_LINE (it was skipped; *line tells where; reading may go on),
 * RK_EIO on a read error (fatal). */
int rk_io_reader_next(rk_io_reader *r, const char **rec, size_t *len,
                      uint64_t *line, rk_err *err);
/* Bytes consumed so far and the file size (0 when unknown). */
uint64_t rk_io_reader_offset(const rk_io_reader *r);
uint64_t rk_io_reader_size(const rk_io_reader *r);
/* Starts again from the beginning (files are rewound). RK_EIO. */
int rk_io_reader_rewind(rk_io_reader *r, rk_err *err);
void rk_io_reader_close(rk_io_reader *r);

/* ------------------------------------------------------------------------ */
/* CSV/TSV tokenizer (RFC 4180)                                              */
/* ------------------------------------------------------------------------ */
/*
 * Splits one record into fields. With quotes on, a field that starts with
 * '"' is quoted: separators and line breaks inside it are data, "" is one
 * quote, and only a separator or the end may follow the closing quote. A
 * quote inside an unquoted field is data (lenient, like most exporters).
 * Fields are copied NUL-terminated into the tokenizer's buffer and stay
 * valid until the next split or free. Not thread-safe.
 */
typedef struct rk_csv {
    char sep;
    int quotes;
    size_t n;           /* fields of the last split */
    char **f;           /* f[i]: NUL-terminated field i */
    size_t *len;        /* len[i]: its length in bytes */
    /* internal */
    char *buf;
    size_t bufcap, cap;
} rk_csv;

void rk_csv_init(rk_csv *c, char sep, int quotes);
/* RK_EPARSE ("unterminated quoted field", "unexpected character after
 * closing quote", "more than 4096 fields"), RK_ENOMEM. An empty record has
 * one empty field. */
int rk_csv_split(rk_csv *c, const char *s, size_t n, rk_err *err);
void rk_csv_free(rk_csv *c);
/* 1 when [s, s+n) ends inside an open quoted field (the record continues on
 * the next line), else 0. */
int rk_csv_open_quote(const char *s, size_t n, char sep);

/* ------------------------------------------------------------------------ */
/* Record parsers                                                            */
/* ------------------------------------------------------------------------ */

typedef enum rk_io_rec_type {
    RK_IO_REC_SKIP = 0,  /* header, blank or comment line: nothing to do */
    RK_IO_REC_EVENTS,    /* events[0..nevents) */
    RK_IO_REC_ENTITY,    /* one user or item */
    RK_IO_REC_ROW        /* one dataset row */
} rk_io_rec_type;

/* One user or item: upsert the attributes (merge), then hide/unhide when
 * hidden >= 0; or delete when deleted is set (attributes are then none). */
typedef struct rk_io_entity {
    rk_entity entity;
    const char *id;
    int hidden;              /* -1 = leave as is, 0 = unhide, 1 = hide */
    int deleted;
    const rk_attr_in *attrs;
    size_t nattrs;
} rk_io_entity;

/* A parsed record. Every pointer borrows from the parser (and possibly from
 * the input record) and is valid until the next rk_io_parse or
 * rk_io_parser_reset/destroy on that parser. */
typedef struct rk_io_record {
    rk_io_rec_type type;
    const rk_event_in *events;
    size_t nevents;
    rk_io_entity entity;
    rk_row_in row;
    const char *dataset;     /* rows from JSONL may name one, else NULL */
} rk_io_record;

typedef struct rk_io_parser rk_io_parser;

/*
 * How a CSV/TSV file of labelled rows (kind rows) maps to a dataset row.
 * Columns are named by their header or, with no_header, by their 0-based
 * position ("0", "1", ...). Every column that is not the label, the group
 * or ignored is a feature whose index is its 0-based position in the file;
 * it is categorical when listed in `categorical` (or that is "all"), else
 * numeric (an empty cell is a missing value). Labels may be quoted with
 * single quotes ('1', as some UCI files write them).
 */
typedef struct rk_rows_layout {
    const char *label;        /* default "label", or column 0 with no_header */
    const char *group;        /* query-group column, NULL = none */
    const char *ignore;       /* comma-separated columns to skip, or NULL */
    const char *categorical;  /* comma-separated columns, "all", or NULL */
    int no_header;
} rk_rows_layout;

/* Sets the layout of CSV/TSV rows (kind rows) before the first record;
 * the strings are copied. RK_EINVAL for other formats, RK_ENOMEM. */
int rk_io_parser_set_rows(rk_io_parser *p, const rk_rows_layout *l,
                          rk_err *err);

/* Creates a parser for a concrete format (not RK_FMT_AUTO). kind matters
 * for csv/tsv/jsonl only. schema is required for users/items of the
 * generic formats (cells are converted by declared attribute type) and
 * borrowed for the parser's lifetime; it may be NULL otherwise. RK_EINVAL,
 * RK_ENOMEM. */
int rk_io_parser_create(rk_io_parser **out, rk_import_format f,
                        rk_import_kind kind, const rk_schema *schema,
                        rk_err *err);
void rk_io_parser_destroy(rk_io_parser *p);
/* Forgets the header and line count so a new pass over a file can begin. */
void rk_io_parser_reset(rk_io_parser *p);
/*
 * Parses one record (as returned by rk_io_reader_next). The first record of
 * formats with a header row is the header: it is checked (unknown or
 * duplicate columns, missing required ones) and RK_IO_REC_SKIP returned.
 * Errors: RK_EPARSE with a reason naming the column where one applies (the
 * caller adds "path:line: "); for a generic CSV/TSV header error the error
 * is RK_EINVAL, and every later record fails the same way — a caller should
 * stop. RK_ENOMEM.
 */
int rk_io_parse(rk_io_parser *p, const char *rec, size_t len,
                rk_io_record *out, rk_err *err);

/*
 * The same as rk_io_parse for a jsonl parser, from a JSON object already
 * parsed with jansson (struct json_t, borrowed for the call): the HTTP API
 * parses a request body once and feeds each event or entity object here.
 * The record's pointers borrow from the parser as with rk_io_parse.
 * RK_EINVAL when p is not a jsonl parser; otherwise rk_io_parse's errors.
 */
struct json_t;
int rk_io_parse_json(rk_io_parser *p, const struct json_t *obj,
                     rk_io_record *out, rk_err *err);
/* A JSON time value as events carry it: a number of seconds (|v| < 1e11)
 * or milliseconds, or a time string (rk_parse_time_ms). RK_EPARSE with
 * "field 'KEY': ..." in err. */
int rk_io_json_time(const char *key, const struct json_t *v, int64_t *out,
                    rk_err *err);

/* ------------------------------------------------------------------------ */
/* Import driver                                                             */
/* ------------------------------------------------------------------------ */

/* Called for each rejected row that is shown: msg is "path:line: reason". */
typedef void (*rk_import_error_fn)(void *arg, const char *msg);

typedef struct rk_import_opts {
    rk_import_format format;   /* RK_FMT_AUTO (default) = detect */
    rk_import_kind kind;       /* generic formats; default RK_KIND_EVENTS */
    const char *dataset;       /* rows: default "criteo" for criteo, the
                                  file's base name without extension else */
    const rk_rows_layout *rows; /* csv/tsv rows; NULL = defaults */
    int strict;                /* first bad row aborts; nothing is written */
    int progress;              /* progress bar on stderr if it is a tty */
    size_t batch_rows;         /* records per write batch, default 10000 */
    size_t max_errors_shown;   /* rejected rows reported, default 20 */
    rk_import_error_fn on_error;  /* NULL: rows are logged as warnings */
    void *on_error_arg;
    const rk_logger *log;      /* may be NULL */
} rk_import_opts;

void rk_import_opts_default(rk_import_opts *o);

typedef struct rk_import_stats {
    rk_import_format format;   /* the format used (after detection) */
    uint64_t bytes;            /* bytes read */
    uint64_t records;          /* data records read (no header or blanks) */
    uint64_t imported;         /* records accepted and written */
    uint64_t rejected;         /* records rejected */
    uint64_t events;           /* events appended */
    uint64_t duplicates;       /* events skipped: their id was known */
    uint64_t entities;         /* upserts, hides and deletes applied */
    uint64_t rows;             /* dataset rows appended */
    double seconds;            /* wall time of the import */
    double records_per_sec;
} rk_import_stats;

/*
 * Imports one file into the store.
 *
 * Known formats first declare the attributes they write (rk_io_format_attrs)
 * and check that the event types they write are declared in the schema,
 * failing fast with RK_ECONFIG naming the type otherwise. Records are then
 * converted by rk_io_parse and written through rk_batch/rk_store_write in
 * batches of batch_rows records; every batch is all or nothing. A record is
 * added to a batch whole or not at all.
 *
 * Malformed records are skipped and counted; the first max_errors_shown are
 * reported as "path:line: reason" through on_error (or logged). The call
 * still returns 0 — look at st->rejected.
 *
 * Strict mode makes a first, validating pass over the whole file (parse and
 * schema checks against a scratch batch that is never written) and returns
 * RK_EPARSE with "path:line: reason" at the first bad record, so nothing is
 * written; only when the file is clean is it read again and written.
 * Attribute declarations are made before that pass and stay. Strict mode
 * needs a file that can be read twice (not a pipe: RK_EIO on rewind).
 *
 * Events with an id are de-duplicated by the store, so importing a file
 * again adds nothing; duplicates are counted in st->duplicates.
 *
 * Errors: RK_EIO (missing or unreadable file, with strerror), RK_EINVAL
 * (undetectable format, bad options, a generic header that cannot work),
 * RK_ECONFIG (schema conflicts, missing event types), RK_EPARSE (strict),
 * and whatever rk_store_write returns (batches written before stay).
 * st (may be NULL) is zeroed first and filled even on failure.
 * Thread-safe: concurrent imports into one store are fine.
 */
int rk_import_file(rk_store *s, const char *path, const rk_import_opts *o,
                   rk_import_stats *st, rk_err *err);

/* ------------------------------------------------------------------------ */
/* Export                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Writes `what` ("events", "users", "items" or "rows") from one read
 * snapshot of the store as JSON lines, using external ids and type and
 * attribute names, in a form rk_import_file reads back (format jsonl, kind
 * = what):
 *   events: {"type":"click","user":"u1","item":"i9",
 *            "ts":"2019-11-15T10:22:05.000Z","value":1.5,"position":3,
 *            "request_id":"r1","context":{...},"id":"e1"}   (absent fields omitted)
 *   users/items: {"id":"i9","hidden":true,"attributes":{"year":1995,
 *            "genres":["a","b"],"release":"1995-01-01T00:00:00.000Z",
 *            "emb":[0.25,-1]}}   or {"id":"i3","deleted":true}
 *   rows:   {"label":1,"group":"q7","num":{"0":1.5},"cat":{"3":"a1b2c3d4"}}
 *           with "dataset":"name" first when dataset is NULL (all datasets).
 * Events are written in sequence order, entities in id order, rows in
 * insertion order. Events that carry a dedup id export it as "id", so
 * re-importing an export into the same store adds nothing. Numbers are written with the fewest digits that read back
 * to the same double (float for vectors).
 * Errors: RK_EINVAL (bad what), RK_ENOTFOUND (unknown dataset), RK_EIO
 * (write failed), store reader errors. Thread-safe (own reader snapshot).
 */
int rk_export_jsonl(rk_store *s, const char *what, const char *dataset,
                    FILE *out, rk_err *err);

#ifdef __cplusplus
}
#endif
#endif /* RK_IO_H */
