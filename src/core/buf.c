/*
 * buf.c — bounded byte buffers, strict number parsing, UTF-8 helpers and
 * hashing.
 *
 * An rk_buf never holds more than max content bytes (plus its terminating
 * NUL), so input-driven growth has a hard ceiling. Appends are all or
 * nothing: when one fails (RK_ELIMIT or RK_ENOMEM) the buffer keeps its
 * previous content and stays NUL-terminated, so a caller may report the
 * error or fall back without cleaning up half-written output.
 *
 * The number parsers exist because strtol/strtod skip leading spaces, accept
 * partial input, "nan", "inf" and hex, and report overflow only via errno;
 * data files must be read exactly, so each span is validated byte by byte.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "rk_core.h"

#define BUF_MIN_CAP 64

void rk_buf_init(rk_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int rk_buf_reserve(rk_buf *b, size_t extra)
{
    /* need counts content bytes; the NUL needs one more. */
    if (extra > SIZE_MAX - 2 - b->len) return b->max ? RK_ELIMIT : RK_ENOMEM;
    size_t need = b->len + extra;
    if (b->max && need > b->max) return RK_ELIMIT;
    if (need + 1 <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : BUF_MIN_CAP;
    while (ncap < need + 1) ncap = ncap > SIZE_MAX / 2 ? need + 1 : ncap * 2;
    if (b->max && b->max < SIZE_MAX && ncap > b->max + 1) ncap = b->max + 1;
    char *nd = rk_realloc(b->data, ncap);
    if (!nd) return RK_ENOMEM;
    if (!b->data) nd[0] = '\0';
    b->data = nd;
    b->cap = ncap;
    return 0;
}

int rk_buf_append(rk_buf *b, const void *p, size_t n)
{
    int rc = rk_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int rk_buf_puts(rk_buf *b, const char *s)
{
    return rk_buf_append(b, s, strlen(s));
}

int rk_buf_putc(rk_buf *b, char c)
{
    if (b->len + 1 < b->cap && (!b->max || b->len < b->max)) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return rk_buf_append(b, &c, 1);
}

int rk_buf_printf(rk_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    /* Try to format into the spare room first; most calls fit. */
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int k = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    int rc = 0;
    if (k < 0) {
        rc = RK_EINVAL;
    } else if ((size_t)k >= room || (b->max && b->len + (size_t)k > b->max)) {
        rc = rk_buf_reserve(b, (size_t)k);
        if (rc == 0) vsnprintf(b->data + b->len, (size_t)k + 1, fmt, ap2);
    }
    va_end(ap2);
    if (rc == 0) {
        b->len += (size_t)k;
    } else if (b->data) {
        b->data[b->len] = '\0'; /* undo a truncated first attempt */
    }
    return rc;
}

void rk_buf_reset(rk_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void rk_buf_free(rk_buf *b)
{
    rk_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length (1-4) of the well-formed UTF-8 sequence at s, or 0 when it is not
 * well formed; then *bad is the length of its maximal subpart (Unicode
 * §3.9 "U+FFFD substitution of maximal subparts"), which is at least 1.
 * Overlong forms, surrogates and code points above U+10FFFF are rejected by
 * narrowing the allowed range of the second byte (Unicode Table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return len;
}

size_t rk_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i, &bad);
        if (!k) break;
        i += k;
    }
    return i;
}

int rk_buf_put_latin1(rk_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t high = 0;
    for (size_t i = 0; i < n; i++) high += u[i] >> 7;
    if (high > SIZE_MAX - n) return RK_ENOMEM;
    int rc = rk_buf_reserve(b, n + high);
    if (rc) return rc;
    char *d = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        if (u[i] < 0x80) {
            *d++ = (char)u[i];
        } else {
            *d++ = (char)(0xC0 | (u[i] >> 6));
            *d++ = (char)(0x80 | (u[i] & 0x3F));
        }
    }
    b->len += n + high;
    b->data[b->len] = '\0';
    return 0;
}

/* ---- JSON strings ------------------------------------------------------ */

/* Writes the escaped body of s to d (when d is not NULL) and returns its
 * length. Run twice, once to size and once to write, so the buffer grows
 * exactly once and a limit is detected before anything is written. */
static size_t json_escape(const unsigned char *s, size_t n, char *d)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 0, i = 0, bad;
    while (i < n) {
        unsigned c = s[i];
        const char *esc = NULL;
        size_t elen = 0, adv = 1;
        char ubuf[6];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            if (d) d[out] = (char)c;
            out++;
            i++;
            continue;
        }
        if (c >= 0x80) {
            adv = utf8_seq(s + i, n - i, &bad);
            if (adv) {
                esc = (const char *)s + i; /* valid sequence, copy as is */
                elen = adv;
            } else {
                esc = "\xEF\xBF\xBD"; /* U+FFFD */
                elen = 3;
                adv = bad;
            }
        } else if (c == '"' || c == '\\') {
            ubuf[0] = '\\';
            ubuf[1] = (char)c;
            esc = ubuf;
            elen = 2;
        } else {
            /* A control character: the short escape JSON has for it, else
             * the \u00XX form. */
            elen = 2;
            switch (c) {
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            default:
                memcpy(ubuf, "\\u00", 4);
                ubuf[4] = hex[c >> 4];
                ubuf[5] = hex[c & 15];
                esc = ubuf;
                elen = 6;
                break;
            }
        }
        if (d) memcpy(d + out, esc, elen);
        out += elen;
        i += adv;
    }
    return out;
}

int rk_buf_put_json_num(rk_buf *b, double v)
{
    return isfinite(v) ? rk_buf_printf(b, "%.9g", v) : rk_buf_puts(b, "null");
}

int rk_buf_put_json_str(rk_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t body = json_escape(u, n, NULL);
    int rc = rk_buf_reserve(b, body + 2);
    if (rc) return rc;
    char *d = b->data + b->len;
    d[0] = '"';
    json_escape(u, n, d + 1);
    d[body + 1] = '"';
    b->len += body + 2;
    b->data[b->len] = '\0';
    return 0;
}

/* ---- strict number parsing --------------------------------------------- */

/* Accumulates the decimal digits of [s, s+n) into *out, failing on any
 * non-digit, on an empty span and on values above lim. */
static int parse_digits(const char *s, size_t n, uint64_t lim, uint64_t *out)
{
    if (n == 0) return RK_EPARSE;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return RK_EPARSE;
        if (v > (lim - d) / 10) return RK_EPARSE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int rk_parse_i64(const char *s, size_t n, int64_t *out)
{
    int neg = n > 0 && s[0] == '-';
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v;
    int rc = parse_digits(s + neg, n - (size_t)neg, lim, &v);
    if (rc) return rc;
    /* -(INT64_MIN) is not representable, so negate in unsigned arithmetic. */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int rk_parse_u64(const char *s, size_t n, uint64_t *out)
{
    return parse_digits(s, n, UINT64_MAX, out);
}

/* Longest decimal float text we accept; strtod needs a NUL-terminated copy. */
#define F64_MAX_TEXT 511

int rk_parse_f64(const char *s, size_t n, double *out)
{
    /* Validate the grammar first: -?digits[.digits][(e|E)[+-]digits] with
     * at least one mantissa digit. This rejects what strtod would otherwise
     * take: spaces, '+', hex floats, "inf", "nan", trailing garbage. */
    size_t i = 0, mant = 0, exp = 0;
    if (i < n && s[i] == '-') i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, mant++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, mant++;
    }
    if (mant == 0) return RK_EPARSE;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, exp++;
        if (exp == 0) return RK_EPARSE;
    }
    if (i != n || n > F64_MAX_TEXT) return RK_EPARSE;
    char tmp[F64_MAX_TEXT + 1];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + n) return RK_EPARSE;
    /* ERANGE also flags underflow; a value too small to represent is
     * rounded towards zero and accepted, only overflow is an error. */
    if (!isfinite(v)) return RK_EPARSE;
    *out = v;
    return 0;
}

/* ---- hashing ----------------------------------------------------------- */

uint64_t rk_hash64(const void *p, size_t n, uint64_t seed)
{
    static const char empty[1];
    return XXH3_64bits_withSeed(n ? p : empty, n, seed);
}

void rk_hash128(const void *p, size_t n, uint8_t out[16])
{
    static const char empty[1];
    XXH128_hash_t h = XXH3_128bits(n ? p : empty, n);
    XXH128_canonical_t c;
    /* Canonical (big-endian) form so stored hashes do not depend on the
     * host's byte order. */
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, 16);
}
