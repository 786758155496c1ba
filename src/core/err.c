/*
 * err.c — the one table of error codes and the rk_err detail buffer.
 * Codes come from RK_ERRNO_MAP in rk_core.h; names and messages are generated
 * from the same table so they can never drift apart.
 */
#include <stdio.h>
#include <string.h>

#include "rk_core.h"

typedef struct err_entry {
    int code;
    const char *name;
    const char *msg;
} err_entry;

static const err_entry err_table[] = {
#define RK__ERR_ROW(name, val, msg) {(val), #name, (msg)},
    RK_ERRNO_MAP(RK__ERR_ROW)
#undef RK__ERR_ROW
};

static const err_entry *err_lookup(int code)
{
    /* Codes are dense from 0 downwards, so index directly. */
    size_t i = (size_t)(code <= 0 ? -code : 0);
    if (code > 0 || i >= sizeof err_table / sizeof err_table[0]) return NULL;
    return &err_table[i];
}

const char *rk_strerror(int code)
{
    const err_entry *e = err_lookup(code);
    return e ? e->msg : "unknown error";
}

const char *rk_errname(int code)
{
    const err_entry *e = err_lookup(code);
    return e ? e->name : "UNKNOWN";
}

int rk_err_setv(rk_err *err, int code, const char *fmt, va_list ap)
{
    if (!err) return code;
    err->code = code;
    if (fmt)
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    else
        snprintf(err->msg, sizeof err->msg, "%s", rk_strerror(code));
    return code;
}

int rk_err_set(rk_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rk_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int rk_err_prefix(rk_err *err, const char *fmt, ...)
{
    if (!err) return RK_EINTERNAL;
    char head[RK_ERR_MSG_MAX], old[RK_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s",
             err->msg[0] ? err->msg : rk_strerror(err->code));
    size_t hl = strlen(head), ol = strlen(old);
    if (hl > sizeof err->msg - 1) hl = sizeof err->msg - 1;
    if (ol > sizeof err->msg - 1 - hl) ol = sizeof err->msg - 1 - hl;
    memcpy(err->msg, head, hl);
    memcpy(err->msg + hl, old, ol);
    err->msg[hl + ol] = '\0';
    return err->code;
}

void rk_err_clear(rk_err *err)
{
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *rk_err_msg(const rk_err *err)
{
    if (!err) return rk_strerror(0);
    return err->msg[0] ? err->msg : rk_strerror(err->code);
}
