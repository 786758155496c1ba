/*
 * io_int.h — internals shared by the files of the io module: the parser
 * object, the per-format parse entry points and small field helpers that
 * produce uniform, column-naming error messages.
 *
 * Memory rule: everything a parse produces lives in the parser's arena,
 * which is reset at the start of every rk_io_parse call, or in its CSV
 * tokenizer buffer, which is rewritten by the next split. Nothing survives
 * a record.
 */
#ifndef RK_IO_INT_H
#define RK_IO_INT_H

#include "rk_io.h"

/* Columns of the generic events formats (CSV/TSV header names and JSONL
 * keys). */
enum {
    RK__EV_TYPE = 0,
    RK__EV_USER,
    RK__EV_ITEM,
    RK__EV_TS,
    RK__EV_VALUE,
    RK__EV_REQUEST_ID,
    RK__EV_POSITION,
    RK__EV_CONTEXT,
    RK__EV_ID,
    RK__EV_NCOLS
};
extern const char *const rk__io_event_cols[RK__EV_NCOLS];

/* Special column roles of the generic users/items CSV header; attribute
 * columns hold the attribute's schema index (>= 0). */
#define RK__COL_ID (-1)
#define RK__COL_HIDDEN (-2)
#define RK__COL_DELETED (-3)

struct rk_io_parser {
    rk_import_format fmt;
    rk_import_kind kind;
    rk_entity entity;           /* users/items kinds */
    const rk_schema *schema;    /* borrowed; generic users/items only */
    rk_arena arena;             /* per-record output memory */
    rk_csv csv;                 /* tokenizer for separated formats */
    uint64_t nrec;              /* records seen since create/reset */
    /* Generic CSV/TSV header state. */
    int have_header;
    int header_bad;             /* the header was rejected: stop */
    char header_msg[RK_ERR_MSG_MAX];
    int evcol[RK__EV_NCOLS];    /* events: field index of each column, -1 */
    int *cols;                  /* users/items: role of each field;
                                   rows: RK__ROWCOL_* or 0 numeric, 1 cat */
    size_t ncols;
    /* CSV/TSV rows layout (copied strings; NULL = default). */
    char *rows_label, *rows_group, *rows_ignore, *rows_cat;
    int rows_no_header;
};

enum { RK__ROWCOL_NUM = 0, RK__ROWCOL_CAT = 1, RK__ROWCOL_LABEL = 2,
       RK__ROWCOL_GROUP = 3, RK__ROWCOL_SKIP = 4 };

/* Per-format parsers; rec is one record without its line ending. */
int rk__io_parse_ml(rk_io_parser *p, const char *rec, size_t len,
                    rk_io_record *out, rk_err *err);
int rk__io_parse_criteo(rk_io_parser *p, const char *rec, size_t len,
                        rk_io_record *out, rk_err *err);
int rk__io_parse_svmlight(rk_io_parser *p, const char *rec, size_t len,
                          rk_io_record *out, rk_err *err);
int rk__io_parse_mind(rk_io_parser *p, const char *rec, size_t len,
                      rk_io_record *out, rk_err *err);
int rk__io_parse_csv(rk_io_parser *p, const char *rec, size_t len,
                     rk_io_record *out, rk_err *err);
int rk__io_parse_jsonl(rk_io_parser *p, const char *rec, size_t len,
                       rk_io_record *out, rk_err *err);

/* The separator whose quoted fields may span lines (the reader must join
 * them), or 0. */
char rk__io_join_sep(rk_import_format f);

/* ---- field helpers (parser.c) ------------------------------------------ */

/* Writes a printable, truncated copy of [s, s+n) for error messages. */
const char *rk__io_show(const char *s, size_t n, char out[48]);
/* Arena copy with a terminating NUL; RK_ENOMEM through err. */
int rk__io_dup(rk_io_parser *p, const char *s, size_t n, const char **out,
               rk_err *err);
/* An external id: non-empty, at most RK_ID_MAX bytes, valid UTF-8, no
 * control characters. Copied to the arena. */
int rk__io_id(rk_io_parser *p, const char *col, const char *s, size_t n,
              const char **out, rk_err *err);
/* Concatenates up to four strings (NULL = none) into an arena event id,
 * RK_EPARSE when longer than RK_ID_MAX. Cheaper than a printf. */
int rk__io_cat(rk_io_parser *p, const char **out, rk_err *err,
               const char *a, const char *b, const char *c, const char *d);
/* Text (valid UTF-8, at most max bytes), copied to the arena. */
int rk__io_text(rk_io_parser *p, const char *col, const char *s, size_t n,
                size_t max, const char **out, rk_err *err);
/* Latin-1 bytes converted to UTF-8 in the arena. */
int rk__io_latin1(rk_io_parser *p, const char *s, size_t n, const char **out,
                  size_t *outlen, rk_err *err);
int rk__io_f64(const char *col, const char *s, size_t n, double *out,
               rk_err *err);
int rk__io_i64(const char *col, const char *s, size_t n, int64_t *out,
               rk_err *err);
/* Timestamps: whatever rk_parse_time_ms accepts (ISO-8601, including what
 * export writes, or epoch seconds/ms), with a column-naming error. */
int rk__io_time(const char *col, const char *s, size_t n, int64_t *out,
                rk_err *err);
/* Epoch seconds (integer) to ms with overflow and sign checks. */
int rk__io_secs(const char *col, const char *s, size_t n, int64_t *out_ms,
                rk_err *err);
/* Appends the shortest decimal that reads back as the same double. */
int rk__io_put_double(rk_buf *b, double v);
int rk__io_put_float(rk_buf *b, float v);
/* Parses a JSON object text and writes it compacted (keys in document
 * order) to the arena; RK_EPARSE unless it is an object of at most
 * RK_MAX_CONTEXT bytes once compacted. */
int rk__io_context(rk_io_parser *p, const char *col, const char *s, size_t n,
                   const char **out, size_t *outlen, rk_err *err);
/* Case-insensitive equality of [s, s+n) with the C string lit. */
int rk__io_eq(const char *s, size_t n, const char *lit);
/* Splits a vector cell (floats separated by spaces, ';' or ',') into dim
 * floats in the arena. */
int rk__io_vector(rk_io_parser *p, const char *col, const char *s, size_t n,
                  uint32_t dim, const float **out, rk_err *err);
/* Splits a '|'-separated list cell into arena strings (empty parts are
 * dropped). */
int rk__io_list(rk_io_parser *p, const char *col, const char *s, size_t n,
                char sep, const char *const **out, const size_t **lens,
                size_t *count, rk_err *err);

/* ---- progress bar (progress.c) ----------------------------------------- */
typedef struct rk__io_progress {
    int on;                 /* drawing at all (stderr is a terminal) */
    uint64_t start_ns, last_ns;
    const char *name;
    int drawn;
} rk__io_progress;

void rk__io_progress_start(rk__io_progress *pg, int want, const char *name);
/* Redraws at most ten times a second. */
void rk__io_progress_update(rk__io_progress *pg, uint64_t done,
                            uint64_t total, uint64_t records,
                            uint64_t rejected, const char *phase);
void rk__io_progress_end(rk__io_progress *pg);

#endif /* RK_IO_INT_H */
