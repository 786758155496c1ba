/*
 * clock.c — clocks, sleeping, and the one timestamp parser/formatter.
 *
 * Calendar conversion uses Howard Hinnant's days-from-civil algorithms on
 * the proleptic Gregorian calendar instead of timegm/gmtime_r: they are
 * pure arithmetic (thread-safe, no TZ environment, no locale), exact for
 * any int64 millisecond value, and easy to test against known dates.
 *
 * Parsing is strict: the whole span must be one accepted form, otherwise
 * RK_EPARSE. Times without a zone are taken as UTC, because event files
 * (MIND, MovieLens) carry no zone and rankd works in UTC throughout.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rk_core.h"

#define MS_PER_DAY 86400000LL

uint64_t rk_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t rk_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rk_sleep_ms(uint32_t ms)
{
    struct timespec req = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    /* Resume after signals so callers get at least the time they asked. */
    while (nanosleep(&req, &req) != 0 && errno == EINTR) {
    }
}

/* Days since 1970-01-01 of the civil date y-m-d (m 1..12, d 1..31). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);                      /* [0, 399] */
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;         /* [0, 146096] */
    return era * 146097 + (int64_t)doe - 719468;
}

/* Inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

int64_t rk_civil_ms(int64_t y, unsigned m, unsigned d)
{
    return days_from_civil(y, m, d) * MS_PER_DAY;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned char dm[12] = {31, 28, 31, 30, 31, 30,
                                         31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return dm[m - 1] + (m == 2 && leap);
}

void rk_format_time_ms(int64_t ms, char out[32])
{
    /* Floor division so times before 1970 format correctly. */
    int64_t days = ms / MS_PER_DAY, rem = ms % MS_PER_DAY;
    if (rem < 0) {
        rem += MS_PER_DAY;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    unsigned msec = (unsigned)(rem % 1000), sec = (unsigned)(rem / 1000);
    /* The widest int64 input gives a 10-character year and 30 characters
     * in all; the compiler cannot see that bound, hence the wide scratch. */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ",
             (long long)y, m, d, sec / 3600, sec / 60 % 60, sec % 60, msec);
    memcpy(out, tmp, 31);
    out[31] = '\0';
}

/* ---- parsing ----------------------------------------------------------- */

typedef struct cursor {
    const char *s;
    size_t n, i;
} cursor;

/* Reads between min and max decimal digits into *v. */
static int cur_digits(cursor *c, int min, int max, unsigned *v)
{
    unsigned x = 0;
    int k = 0;
    while (k < max && c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        x = x * 10 + (unsigned)(c->s[c->i++] - '0');
        k++;
    }
    if (k < min) return 0;
    *v = x;
    return 1;
}

static int cur_char(cursor *c, char ch)
{
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

static int valid_date(unsigned y, unsigned m, unsigned d)
{
    return m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

static int64_t to_ms(unsigned y, unsigned mo, unsigned d, unsigned h,
                     unsigned mi, unsigned s)
{
    return days_from_civil(y, mo, d) * MS_PER_DAY +
           ((int64_t)h * 3600 + mi * 60 + s) * 1000;
}

/* YYYY-MM-DD[(T|t| )HH:MM[:SS[.frac]][Z|z|(+|-)HH[[:]MM]]] */
static int parse_iso(cursor *c, int64_t *out)
{
    unsigned y, mo, d, h = 0, mi = 0, s = 0, ms = 0;
    if (!cur_digits(c, 4, 4, &y) || !cur_char(c, '-') ||
        !cur_digits(c, 2, 2, &mo) || !cur_char(c, '-') ||
        !cur_digits(c, 2, 2, &d) || !valid_date(y, mo, d))
        return RK_EPARSE;
    int64_t offset_min = 0;
    if (c->i < c->n) {
        char sep = c->s[c->i++];
        if (sep != 'T' && sep != 't' && sep != ' ') return RK_EPARSE;
        if (!cur_digits(c, 2, 2, &h) || !cur_char(c, ':') ||
            !cur_digits(c, 2, 2, &mi) || h > 23 || mi > 59)
            return RK_EPARSE;
        if (cur_char(c, ':')) {
            /* No leap seconds: event times never carry them in practice and
             * :60 would make two strings map to one instant. */
            if (!cur_digits(c, 2, 2, &s) || s > 59) return RK_EPARSE;
            if (cur_char(c, '.')) {
                /* Up to nanoseconds; digits below the millisecond are
                 * dropped (truncation keeps 10:00:00.9999 in second 0). */
                unsigned frac, k0 = (unsigned)c->i;
                if (!cur_digits(c, 1, 9, &frac)) return RK_EPARSE;
                unsigned k = (unsigned)c->i - k0;
                while (k > 3) frac /= 10, k--;
                while (k < 3) frac *= 10, k++;
                ms = frac;
            }
        }
        if (cur_char(c, 'Z') || cur_char(c, 'z')) {
            /* UTC */
        } else if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-')) {
            int neg = c->s[c->i++] == '-';
            unsigned oh, om = 0;
            if (!cur_digits(c, 2, 2, &oh) || oh > 23) return RK_EPARSE;
            if (cur_char(c, ':')) {
                if (!cur_digits(c, 2, 2, &om)) return RK_EPARSE;
            } else if (c->i < c->n) {
                if (!cur_digits(c, 2, 2, &om)) return RK_EPARSE;
            }
            if (om > 59) return RK_EPARSE;
            offset_min = (int64_t)(oh * 60 + om) * (neg ? -1 : 1);
        }
    }
    if (c->i != c->n) return RK_EPARSE;
    /* Local time = UTC + offset, so UTC = local - offset. */
    *out = to_ms(y, mo, d, h, mi, s) + ms - offset_min * 60000;
    return 0;
}

/* MIND's behaviors.tsv form: M/D/YYYY h:mm:ss AM|PM (12-hour clock). */
static int parse_us(cursor *c, int64_t *out)
{
    unsigned y, mo, d, h, mi, s;
    if (!cur_digits(c, 1, 2, &mo) || !cur_char(c, '/') ||
        !cur_digits(c, 1, 2, &d) || !cur_char(c, '/') ||
        !cur_digits(c, 4, 4, &y) || !valid_date(y, mo, d) ||
        !cur_char(c, ' ') || !cur_digits(c, 1, 2, &h) || !cur_char(c, ':') ||
        !cur_digits(c, 2, 2, &mi) || !cur_char(c, ':') ||
        !cur_digits(c, 2, 2, &s) || !cur_char(c, ' ') || c->n - c->i != 2)
        return RK_EPARSE;
    char a = c->s[c->i], b = c->s[c->i + 1];
    int pm;
    if ((a == 'A' || a == 'a') && (b == 'M' || b == 'm'))
        pm = 0;
    else if ((a == 'P' || a == 'p') && (b == 'M' || b == 'm'))
        pm = 1;
    else
        return RK_EPARSE;
    if (h < 1 || h > 12 || mi > 59 || s > 59) return RK_EPARSE;
    /* 12 AM is midnight, 12 PM is noon. */
    h = h % 12 + (pm ? 12 : 0);
    *out = to_ms(y, mo, d, h, mi, s);
    return 0;
}

int rk_parse_time_ms(const char *s, size_t n, int64_t *out)
{
    cursor c = {s, n, 0};
    if (n >= 10 && s[4] == '-') return parse_iso(&c, out);
    for (size_t i = 0; i < n && i < 3; i++)
        if (s[i] == '/') return parse_us(&c, out);
    /* Plain integer: Unix seconds up to 1e11 (year 5138), otherwise
     * milliseconds (1e11 ms is 1973, so both cover real event times). */
    int64_t v;
    if (rk_parse_i64(s, n, &v)) return RK_EPARSE;
    if (v < 100000000000LL && v > -100000000000LL) v *= 1000;
    *out = v;
    return 0;
}

int rk_parse_duration_ms(const char *s, int64_t *out, int *unit_bad)
{
    if (unit_bad) *unit_bad = 0;
    size_t len = strlen(s), i = 0;
    while (i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) i++;
    double v;
    if (i == 0 || rk_parse_f64(s, i, &v)) return RK_EPARSE;
    const char *u = s + i;
    double mult;
    if (!strcmp(u, "ms")) mult = 1;
    else if (!strcmp(u, "s") || !*u) mult = 1e3;
    else if (!strcmp(u, "m")) mult = 60e3;
    else if (!strcmp(u, "h")) mult = 3600e3;
    else if (!strcmp(u, "d")) mult = 86400e3;
    else if (!strcmp(u, "w")) mult = 7 * 86400e3;
    else {
        if (unit_bad) *unit_bad = 1;
        return RK_EPARSE;
    }
    double ms = v * mult;
    if (!(ms <= 3.2e12)) return RK_ELIMIT;
    *out = (int64_t)llround(ms);
    return 0;
}
