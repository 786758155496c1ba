/*
 * conf_int.h — internals shared by the configuration tree (conf.c) and its
 * two front ends (conf_yaml.c, conf_json.c).
 *
 * A front end creates a document with rk__conf_create, then adds nodes top
 * down with rk__conf_add (a parent always exists before its children, which
 * both libyaml's event stream and a recursive walk of a jansson tree give)
 * and closes every container with rk__conf_close once its last child has
 * been added. Everything lives in the document's arena, so a failure at any
 * point is cleaned up by rk_conf_destroy alone.
 */
#ifndef RK_CONF_INT_H
#define RK_CONF_INT_H

#include "rk_core.h"

#define RK__CONF_MAX_DEPTH 64          /* nested maps/lists */
#define RK__CONF_MAX_INPUT (1u << 20)  /* bytes of document text */
#define RK__CONF_MAX_NODES 100000      /* value nodes per document */
/* Longest path string kept per node (NUL included). Longer paths are cut
 * and end in "..."; they only ever appear in messages, and a cap keeps a
 * hostile document with huge keys from costing nodes x key bytes. */
#define RK__CONF_PATH_MAX 128

struct rk_conf_node {
    rk_conf_type type;
    /* 1-based line: of the key for a map member (where a reader looks for
     * "store:" even when its value starts on the next line), of the value
     * otherwise. */
    int line;
    int path_cut;        /* path was truncated: children reuse it as is */
    size_t idx;          /* position in the parent */
    const char *file;    /* the document's name, shared by all nodes */
    const char *key;     /* key in the parent map, NULL otherwise */
    const char *path;
    rk_conf_node *next;  /* sibling chain, only used while building */
    union {
        int b;
        int64_t i;
        double f;
        const char *s;   /* NUL-free, NUL-terminated */
        struct {
            rk_conf_node **items;   /* document order */
            rk_conf_node **sorted;  /* maps only: by key, for lookups */
            size_t n;
            rk_conf_node *first, *last; /* chain while building */
        } c;
    } u;
};

struct rk_conf {
    rk_arena arena;
    const char *file;
    rk_conf_node *root;
    size_t nodes;
};

/* New empty document named name (NULL -> "<input>"). RK_ENOMEM. */
int rk__conf_create(rk_conf **out, const char *name, rk_err *err);
/* Copies n bytes into the document's arena; NULL when out of memory. */
char *rk__conf_strndup(rk_conf *c, const char *s, size_t n);
/* Adds a node of type t whose value starts at line. parent NULL makes it
 * the root; for a map parent, key (already in the arena) found at key_line
 * names it, and key_line becomes the node's line. Scalars get their value set
 * by the caller through *out. RK_ENOMEM, RK_ELIMIT (node count). */
int rk__conf_add(rk_conf *c, rk_conf_node *parent, const char *key,
                 int key_line, rk_conf_type t, int line, rk_conf_node **out,
                 rk_err *err);
/* Finishes a container: child arrays, key index and the duplicate key
 * check ("file:line: duplicate key 'x'", RK_EPARSE). RK_ENOMEM. */
int rk__conf_close(rk_conf *c, rk_conf_node *n, rk_err *err);
/* Writes at most max bytes of s into a message-friendly form ("abc" or
 * "abc..."), for quoting keys and values in errors. */
void rk__conf_quote(char *dst, size_t dstsize, const char *s, size_t n);

#endif
