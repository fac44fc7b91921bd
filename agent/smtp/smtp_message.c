/* Message builder (see smtp_message.h). Header values from jobs are never trusted:
 * CR and LF are dropped so no input can start a header of its own. */
#include "smtp_message.h"

#include "codec.h"
#include "rand.h"
#include "wire.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static bool is_plain_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

/* Length of the UTF-8 sequence starting with byte c (1 for stray bytes). */
static size_t utf8_seq_len(unsigned char c)
{
    if (c >= 0xF0 && c < 0xF8)
        return 4;
    if (c >= 0xE0)
        return 3;
    if (c >= 0xC0)
        return 2;
    return 1;
}

/* Copies s without CR/LF (header injection guard) into a fresh buf. */
static void strip_crlf(const char *s, buf *out)
{
    while (*s) {
        size_t run = strcspn(s, "\r\n");
        buf_append(out, s, run);
        s += run;
        if (*s)
            s++;
    }
}

void smtp_header_encode(const char *value, size_t used, buf *out)
{
    buf clean = BUF_INIT;
    strip_crlf(value ? value : "", &clean);
    if (is_plain_ascii(clean.data ? clean.data : "", clean.len) && used + clean.len <= 998) {
        buf_append(out, clean.data ? clean.data : "", clean.len);
        buf_free(&clean);
        return;
    }
    /* Each encoded word is at most 75 chars: "=?UTF-8?B?" + 4*k/3 + "?=", so up to
     * 45 raw bytes per word, cut only between UTF-8 sequences. */
    const unsigned char *p = (const unsigned char *)(clean.data ? clean.data : "");
    size_t n = clean.len, i = 0;
    bool first = true;
    while (i < n) {
        size_t start = i;
        while (i < n) {
            size_t l = utf8_seq_len(p[i]);
            if (i + l > n)
                l = n - i;
            if (i - start + l > 45)
                break;
            i += l;
        }
        if (i == start)
            i = start + 1 > n ? n : start + 1;
        if (!first)
            buf_puts(out, "\r\n ");
        buf_puts(out, "=?UTF-8?B?");
        base64_append(out, p + start, i - start);
        buf_puts(out, "?=");
        first = false;
    }
    buf_free(&clean);
}

static bool qp_literal_run_byte(unsigned char c)
{
    return c >= 33 && c <= 126 && c != '=';
}

void smtp_qp_encode(const char *text, size_t n, buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    buf_reserve(out, n + n / 32 + 8);
    size_t col = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)text[i];
        /* hard line break: CRLF, bare LF or bare CR */
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < n && text[i + 1] == '\n')
                i++;
            buf_puts(out, "\r\n");
            col = 0;
            i++;
            continue;
        }
        /* a run of printable bytes that stay as they are, up to the line limit, is
         * copied at once (a '.' opening a line is left to the byte path below) */
        if (col < 75 && qp_literal_run_byte(c) && !(c == '.' && col == 0)) {
            size_t j = i + 1, stop = i + (75 - col);
            while (j < n && j < stop && qp_literal_run_byte((unsigned char)text[j]))
                j++;
            buf_append(out, text + i, j - i);
            col += j - i;
            i = j;
            continue;
        }
        bool at_eol = i + 1 == n || text[i + 1] == '\r' || text[i + 1] == '\n';
        bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol);
        /* A '.' opening a line is encoded so no line can be a lone "." even unstuffed. */
        if (c == '.' && col == 0)
            literal = false;
        size_t w = literal ? 1 : 3;
        if (col + w > 75) {
            buf_puts(out, "=\r\n");
            col = 0;
            continue; /* the byte starts the next line: it may be a '.' there */
        }
        if (literal) {
            buf_putc(out, (char)c);
        } else {
            char e[3] = {'=', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 3);
        }
        col += w;
        i++;
    }
}

void smtp_date(int64_t unix_s, char *out, size_t outlen)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Header lines stay within RFC 5322's 998 octets (§2.1.1): a value that would not
 * fit is folded into encoded words, or (for a Message-ID, which cannot be folded)
 * replaced by one the builder makes. */
#define HEADER_LINE_MAX 998
/* Longest Message-ID kept as given: "Message-ID: " and it stay well inside a line. */
#define MESSAGE_ID_MAX 900

/* Display name: a quoted-string when ASCII and the From line fits, encoded words
 * (folded, so any length fits) otherwise. addr_len is what follows on the line. */
static void put_display_name(const char *name, size_t addr_len, buf *out)
{
    buf clean = BUF_INIT;
    strip_crlf(name, &clean);
    const char *s = clean.data ? clean.data : "";
    size_t quoted = 2 + clean.len;
    for (size_t i = 0; i < clean.len; i++)
        quoted += s[i] == '"' || s[i] == '\\';
    if (is_plain_ascii(s, clean.len) && 6 + quoted + 1 + addr_len + 2 <= HEADER_LINE_MAX) {
        buf_putc(out, '"');
        for (size_t i = 0; i < clean.len; i++) {
            if (s[i] == '"' || s[i] == '\\')
                buf_putc(out, '\\');
            buf_putc(out, s[i]);
        }
        buf_putc(out, '"');
    } else {
        /* used = the line limit: encoded words even for ASCII, folded at 76 */
        smtp_header_encode(s, HEADER_LINE_MAX, out);
    }
    buf_free(&clean);
}

/* Body needs quoted-printable when it is not 7-bit text with lines of at most 998. */
static bool body_needs_qp(const char *s, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\r') {
            line = 0;
            continue;
        }
        if (c >= 0x80 || c == 0 || ++line > 998)
            return true;
    }
    return false;
}

/* Plain body with every line end made CRLF. */
static void put_crlf_text(const char *s, size_t n, buf *out)
{
    buf_reserve(out, n + n / 32 + 2);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        buf_append(out, s + i, j - i);
        if (j == n)
            break;
        if (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n')
            j++;
        buf_puts(out, "\r\n");
        i = j + 1;
    }
}

/* In-Reply-To and References of a reply: only msg-ids are written (anything else is
 * dropped), References folded before 78 columns, one msg-id per line at worst, so no
 * line passes 998 (a msg-id is at most WIRE_MSGID_MAX). */
static void put_threading(const smtp_message *m, buf *out)
{
    if (m->in_reply_to && wire_msgid_ok(m->in_reply_to, strlen(m->in_reply_to))) {
        buf_puts(out, "In-Reply-To: ");
        buf_puts(out, m->in_reply_to);
        buf_puts(out, "\r\n");
    }
    size_t col = 0, written = 0;
    for (size_t i = 0; m->references && i < m->nreferences && written < WIRE_MAX_REFERENCES; i++) {
        const char *id = m->references[i];
        size_t n = id ? strlen(id) : 0;
        if (!wire_msgid_ok(id, n))
            continue;
        if (written == 0) {
            buf_puts(out, "References:");
            col = 11;
        }
        if (written > 0 && col + 1 + n > 78) {
            buf_puts(out, "\r\n");
            col = 0;
        }
        buf_putc(out, ' ');
        buf_append(out, id, n);
        col += 1 + n;
        written++;
    }
    if (written)
        buf_puts(out, "\r\n");
}

void smtp_message_build(const smtp_message *m, buf *out)
{
    /* most messages of a busy thread share their second: format it once */
    static _Thread_local int64_t date_s = -1;
    static _Thread_local char date[64];
    if (m->date_unix_s != date_s) {
        smtp_date(m->date_unix_s, date, sizeof date);
        date_s = m->date_unix_s;
    }
    buf_puts(out, "Date: ");
    buf_puts(out, date);
    buf_puts(out, "\r\n");

    buf_puts(out, "Message-ID: ");
    buf mid = BUF_INIT;
    if (m->message_id)
        strip_crlf(m->message_id, &mid);
    if (mid.len && mid.len <= MESSAGE_ID_MAX) {
        buf_append(out, mid.data, mid.len);
    } else {
        unsigned char rnd[12];
        char hex[25];
        random_bytes(rnd, sizeof rnd);
        hex_encode(rnd, sizeof rnd, hex);
        const char *at = strchr(m->from_addr, '@');
        const char *domain = at ? at + 1 : "kiln.invalid";
        if (strlen(domain) > 255)
            domain = "kiln.invalid";
        buf_printf(out, "<%s@%s>", hex, domain);
    }
    buf_free(&mid);
    buf_puts(out, "\r\n");
    put_threading(m, out);

    buf_puts(out, "From: ");
    if (m->from_name && m->from_name[0]) {
        put_display_name(m->from_name, strlen(m->from_addr), out);
        buf_puts(out, " ");
    }
    /* addresses stay raw, UTF-8 included: RFC 6532 allows it in an SMTPUTF8
     * transaction, and encoded words are not allowed in an addr-spec */
    buf_puts(out, "<");
    strip_crlf(m->from_addr, out);
    buf_puts(out, ">\r\nTo: <");
    strip_crlf(m->to_addr, out);
    buf_puts(out, ">\r\nSubject: ");
    smtp_header_encode(m->subject ? m->subject : "", 9, out);
    buf_puts(out, "\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: text/plain; charset=UTF-8\r\n");
    const char *body = m->body ? m->body : "";
    size_t blen = strlen(body);
    bool qp = body_needs_qp(body, blen);
    buf_puts(out, qp ? "Content-Transfer-Encoding: quoted-printable\r\n"
                     : "Content-Transfer-Encoding: 7bit\r\n");
    /* No constant marker header (a fixed header is a fingerprint filters learn): the
     * inbox side recognises kiln's mail by its Message-ID (api/lease/msgid.h). */
    buf_puts(out, "\r\n");
    if (qp)
        smtp_qp_encode(body, blen, out);
    else
        put_crlf_text(body, blen, out);
    if (out->len < 2 || out->data[out->len - 2] != '\r' || out->data[out->len - 1] != '\n')
        buf_puts(out, "\r\n");
}

void smtp_dot_stuff(const char *data, size_t n, buf *out)
{
    buf_reserve(out, n + n / 64 + 8);
    bool bol = true;
    size_t i = 0;
    while (i < n) {
        /* copy a run of ordinary bytes at once */
        if (bol && data[i] == '.')
            buf_putc(out, '.');
        size_t j = i;
        while (j < n && data[j] != '\r' && data[j] != '\n')
            j++;
        buf_append(out, data + i, j - i);
        if (j == n) {
            bol = false;
            break;
        }
        if (data[j] == '\r' && j + 1 < n && data[j + 1] == '\n')
            j++;
        buf_puts(out, "\r\n");
        bol = true;
        i = j + 1;
    }
    if (!bol)
        buf_puts(out, "\r\n");
    buf_puts(out, ".\r\n");
}
