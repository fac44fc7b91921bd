/* Modified UTF-7 for mailbox names (see imap_utf7.h). Both directions work on code
 * points: UTF-8 is read strictly (no overlong forms, no surrogates, nothing past
 * U+10FFFF), UTF-16 runs are decoded with their padding bits checked. */
#include "imap_utf7.h"

#include <stdbool.h>
#include <stdint.h>

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

/* Undoes what a failed call appended. */
static int undo(buf *out, size_t len)
{
    out->len = len;
    if (out->data)
        out->data[len] = '\0';
    return -1;
}

/* One code point from s[*i..n) (strict UTF-8); -1 when malformed. */
static int32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    unsigned char c = s[*i];
    int32_t cp;
    size_t more;
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        cp = c & 0x1f;
        more = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        cp = c & 0x0f;
        more = 2;
    } else if (c >= 0xf0 && c <= 0xf4) {
        cp = c & 0x07;
        more = 3;
    } else {
        return -1;
    }
    if (n - *i <= more)
        return -1;
    for (size_t k = 1; k <= more; k++) {
        unsigned char cc = s[*i + k];
        if ((cc & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (cc & 0x3f);
    }
    static const int32_t min_of[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_of[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += more + 1;
    return cp;
}

static void utf8_put(buf *out, uint32_t cp)
{
    if (cp < 0x80) {
        buf_putc(out, (char)cp);
    } else if (cp < 0x800) {
        buf_putc(out, (char)(0xc0 | (cp >> 6)));
        buf_putc(out, (char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        buf_putc(out, (char)(0xe0 | (cp >> 12)));
        buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(out, (char)(0x80 | (cp & 0x3f)));
    } else {
        buf_putc(out, (char)(0xf0 | (cp >> 18)));
        buf_putc(out, (char)(0x80 | ((cp >> 12) & 0x3f)));
        buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(out, (char)(0x80 | (cp & 0x3f)));
    }
}

typedef struct b64_run {
    uint32_t bits;
    unsigned nbits;
    bool open;
} b64_run;

static void run_put16(buf *out, b64_run *r, uint32_t unit)
{
    r->bits = (r->bits << 16) | unit;
    r->nbits += 16;
    while (r->nbits >= 6) {
        r->nbits -= 6;
        buf_putc(out, b64_chars[(r->bits >> r->nbits) & 0x3f]);
    }
    r->bits &= (1u << r->nbits) - 1;
}

static void run_close(buf *out, b64_run *r)
{
    if (!r->open)
        return;
    if (r->nbits)
        buf_putc(out, b64_chars[(r->bits << (6 - r->nbits)) & 0x3f]);
    buf_putc(out, '-');
    r->bits = 0;
    r->nbits = 0;
    r->open = false;
}

int imap_utf7_encode(const char *utf8, size_t n, buf *out)
{
    const unsigned char *s = (const unsigned char *)utf8;
    size_t start = out->len, i = 0;
    b64_run run = {0, 0, false};
    while (i < n) {
        int32_t cp = utf8_next(s, n, &i);
        if (cp <= 0)
            return undo(out, start);
        if (cp >= 0x20 && cp <= 0x7e) {
            run_close(out, &run);
            if (cp == '&')
                buf_puts(out, "&-");
            else
                buf_putc(out, (char)cp);
            continue;
        }
        if (!run.open) {
            buf_putc(out, '&');
            run.open = true;
        }
        if (cp >= 0x10000) {
            uint32_t v = (uint32_t)cp - 0x10000;
            run_put16(out, &run, 0xd800 | (v >> 10));
            run_put16(out, &run, 0xdc00 | (v & 0x3ff));
        } else {
            run_put16(out, &run, (uint32_t)cp);
        }
    }
    run_close(out, &run);
    return 0;
}

/* One base64 run s[st..end) (between '&' and '-'): UTF-16 to UTF-8. */
static int decode_run(const char *s, size_t st, size_t end, buf *out)
{
    uint32_t bits = 0, high = 0;
    unsigned nbits = 0;
    for (size_t i = st; i < end; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return -1;
        bits = (bits << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits < 16)
            continue;
        nbits -= 16;
        uint32_t unit = (bits >> nbits) & 0xffff;
        bits &= (1u << nbits) - 1;
        if (high) {
            if (unit < 0xdc00 || unit > 0xdfff)
                return -1;
            utf8_put(out, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00));
            high = 0;
        } else if (unit >= 0xd800 && unit <= 0xdbff) {
            high = unit;
        } else if ((unit >= 0xdc00 && unit <= 0xdfff) || unit == 0 ||
                   (unit >= 0x20 && unit <= 0x7e)) {
            return -1; /* a low surrogate alone, NUL, or ASCII that stands for itself */
        } else {
            utf8_put(out, unit);
        }
    }
    /* leftover: at most 4 padding bits, all zero; no half pair */
    if (high || nbits >= 6 || bits)
        return -1;
    return 0;
}

int imap_utf7_decode(const char *s, size_t n, buf *out)
{
    size_t start = out->len, i = 0;
    bool after_run = false;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e)
            return undo(out, start);
        if (c != '&') {
            buf_putc(out, (char)c);
            after_run = false;
            i++;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '-') {
            buf_putc(out, '&');
            after_run = false;
            i += 2;
            continue;
        }
        size_t st = i + 1, end = st;
        while (end < n && s[end] != '-')
            end++;
        if (end >= n || after_run || decode_run(s, st, end, out) < 0)
            return undo(out, start);
        after_run = true;
        i = end + 1;
    }
    return 0;
}
