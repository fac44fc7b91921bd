/* What the inbox session reads out of a fetched message (see imap_inbox_internal.h):
 * header fields of a BODY[HEADER.FIELDS (...)] block, unfolded and made printable; the
 * Message-ID token; the shape of a kiln Message-ID; INTERNALDATE in ISO 8601; the strings of a
 * FLAGS or X-GM-LABELS list. Nothing here trusts the server: every length is bounded. */
#include "imap_inbox_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void ib_set_text(char *dst, size_t cap, const char *text, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; text && i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        dst[k++] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
    }
    dst[k] = '\0';
}

static bool name_at(const char *p, size_t left, const char *name)
{
    size_t k = strlen(name);
    if (left < k + 1 || p[k] != ':')
        return false;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)p[i]) != tolower((unsigned char)name[i]))
            return false;
    return true;
}

bool ib_header_value(const char *blk, size_t n, const char *name, size_t cap, buf *out)
{
    buf_reset(out);
    size_t i = 0;
    while (i < n) {
        /* i is at the start of a line */
        if (blk[i] != ' ' && blk[i] != '\t' && name_at(blk + i, n - i, name))
            break;
        while (i < n && blk[i] != '\n')
            i++;
        i++;
    }
    if (i >= n)
        return false;
    i += strlen(name) + 1;
    bool space = true; /* drops leading whitespace, folds runs into one space */
    for (; i < n; i++) {
        unsigned char c = (unsigned char)blk[i];
        if (c == '\r')
            continue;
        if (c == '\n') {
            if (i + 1 < n && (blk[i + 1] == ' ' || blk[i + 1] == '\t'))
                continue; /* a folded line goes on */
            break;
        }
        if (c == ' ' || c == '\t') {
            space = true;
            continue;
        }
        if (space && out->len) {
            if (out->len >= cap)
                break;
            buf_putc(out, ' ');
        }
        space = false;
        if (out->len >= cap)
            break;
        buf_putc(out, (char)(c >= 0x21 && c < 0x7f ? c : '?'));
    }
    if (!out->data)
        buf_puts(out, "");
    return true;
}

bool ib_msgid_token(const char *v, size_t n, buf *out)
{
    buf_reset(out);
    const char *lt = memchr(v, '<', n);
    if (!lt)
        return false;
    const char *gt = memchr(lt, '>', n - (size_t)(lt - v));
    if (!gt)
        return false;
    buf_append(out, lt, (size_t)(gt - lt) + 1);
    return true;
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* <SENDID.K MAC@domain>: api/lease/msgid.h mints it, openapi pins the shape. */
bool imap_inbox_msgid_shape_ok(const char *id, size_t len)
{
    if (len < 3 || id[0] != '<' || id[len - 1] != '>')
        return false;
    const char *p = id + 1, *end = id + len - 1;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 20)
        p++, digits++;
    if (digits < 1 || digits > 19 || p >= end || *p++ != '.')
        return false;
    if (p >= end || !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
        return false;
    p++;
    size_t hex = 0;
    while (p < end && is_hex_lower(*p) && hex < 64)
        p++, hex++;
    if (hex < 15 || hex > 63 || p >= end || *p++ != '@')
        return false;
    size_t dom = (size_t)(end - p);
    if (dom < 1 || dom > 253 || *p == '.' || end[-1] == '.')
        return false;
    for (const char *q = p; q < end; q++) {
        char c = *q;
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || (c == '.' && q[1] != '.');
        if (!ok)
            return false;
    }
    return true;
}

size_t ib_node_strings(const imap_node *list, const char **v, size_t max)
{
    size_t k = 0;
    if (!list || list->type != IMAP_N_LIST)
        return 0;
    for (const imap_node *n = list->child; n && k < max; n = n->next)
        if ((n->type == IMAP_N_ATOM || n->type == IMAP_N_STRING) && n->len &&
            strlen(n->s) == n->len)
            v[k++] = n->s;
    return k;
}

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian; H. Hinnant's
 * algorithms), so no time zone or locale of the process is involved. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

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

/* Reads exactly k digits at *p (< end) into *v. */
static bool digits(const char **p, const char *end, int k, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < k; i++, (*p)++) {
        if (*p >= end || **p < '0' || **p > '9')
            return false;
        *v = *v * 10 + (unsigned)(**p - '0');
    }
    return true;
}

static bool lit(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

bool ib_internaldate_iso(const char *s, size_t n, char out[24])
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    const char *p = s, *end = s + n;
    unsigned day, mon = 0, year, hh, mm, ss, zh, zm;
    if (p < end && *p == ' ')
        p++;
    if (!digits(&p, end, 1, &day))
        return false;
    if (p < end && *p >= '0' && *p <= '9')
        day = day * 10 + (unsigned)(*p++ - '0');
    if (!lit(&p, end, '-') || end - p < 3)
        return false;
    for (size_t i = 0; i < 12 && !mon; i++)
        if (tolower((unsigned char)p[0]) == months[3 * i] &&
            tolower((unsigned char)p[1]) == months[3 * i + 1] &&
            tolower((unsigned char)p[2]) == months[3 * i + 2])
            mon = (unsigned)i + 1;
    p += 3;
    if (!mon || !lit(&p, end, '-') || !digits(&p, end, 4, &year) || !lit(&p, end, ' ') ||
        !digits(&p, end, 2, &hh) || !lit(&p, end, ':') || !digits(&p, end, 2, &mm) ||
        !lit(&p, end, ':') || !digits(&p, end, 2, &ss) || !lit(&p, end, ' ') || p >= end)
        return false;
    int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0;
    p++;
    if (!sign || !digits(&p, end, 2, &zh) || !digits(&p, end, 2, &zm) || p != end)
        return false;
    if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zh > 23 || zm > 59)
        return false;
    int64_t t = days_from_civil(year, mon, day) * 86400 + (int64_t)hh * 3600 + (int64_t)mm * 60 +
                ss - sign * ((int64_t)zh * 3600 + (int64_t)zm * 60);
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400, y;
    int64_t secs = t - days * 86400;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return false;
    snprintf(out, 24, "%04d-%02u-%02uT%02u:%02u:%02uZ", (int)y, m, d, (unsigned)(secs / 3600),
             (unsigned)(secs / 60 % 60), (unsigned)(secs % 60));
    return true;
}
