/*
 * log.c — leveled, line-oriented logging to a FILE.
 *
 * Each record is formatted completely into a stack buffer and written with
 * one fwrite under flockfile, so lines from different threads never
 * interleave. The logger is a plain struct passed by the program; a NULL
 * logger (or RK_LOG_OFF) discards, which keeps library code free of "is
 * logging on?" checks. Newlines inside a message are replaced by spaces so
 * one record is always exactly one line, whatever text the input carried.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rk_core.h"

/* Longer messages are cut and end in "..."; logs are for people. */
#define LOG_LINE_MAX 2048

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR",
                                          "OFF"};

void rk_logger_init(rk_logger *lg, rk_log_level level, FILE *out)
{
    lg->level = level;
    lg->out = out;
}

int rk_log_level_parse(const char *s, rk_log_level *out)
{
    if (!s) return RK_EINVAL;
    for (int i = RK_LOG_DEBUG; i <= RK_LOG_OFF; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (rk_log_level)i;
            return 0;
        }
    }
    /* "warning" is what people type as often as "warn". */
    if (strcasecmp(s, "warning") == 0) {
        *out = RK_LOG_WARN;
        return 0;
    }
    return RK_EINVAL;
}

void rk_log(const rk_logger *lg, rk_log_level level, const char *module,
            const char *fmt, ...)
{
    if (!lg || !lg->out || (unsigned)level >= RK_LOG_OFF ||
        (unsigned)level < (unsigned)lg->level)
        return;
    char line[LOG_LINE_MAX];
    rk_format_time_ms(rk_clock_wall_ms(), line);
    size_t len = strlen(line);
    /* The module name is capped so the prefix always leaves room. */
    int k = snprintf(line + len, sizeof line - len, " %s %.64s: ",
                     level_names[level], module ? module : "-");
    if (k < 0) return;
    len += (size_t)k;
    size_t head = len;

    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + len, sizeof line - len, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    /* Room is kept for the trailing newline; mark truncation visibly. */
    if ((size_t)k > sizeof line - 2 - len) {
        len = sizeof line - 2;
        memcpy(line + len - 3, "...", 3);
    } else {
        len += (size_t)k;
    }
    for (size_t i = head; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[len++] = '\n';

    flockfile(lg->out);
    fwrite(line, 1, len, lg->out);
    fflush(lg->out);
    funlockfile(lg->out);
}
