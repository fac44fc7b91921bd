/* SMTP reply parser (see smtp_reply.h). A byte-at-a-time state machine, so any split
 * of the input gives the same result and no line is ever copied whole: the text is
 * kept bounded in the reply, everything else is position state. */
#include "smtp_reply.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Room a new line is sure to have in the reply's text: a full RFC 5321 reply line. */
#define SMTP_REPLY_LINE_KEEP 512

enum {
    sw_start = 0, /* first digit of a line */
    sw_code2,
    sw_code3,
    sw_sep,   /* ' ', '-', or end of line right after the code */
    sw_text,  /* text up to CR or LF */
    sw_lf,    /* CR seen, LF expected */
    sw_error, /* sticky */
};

void smtp_reply_parser_init(smtp_reply_parser *p)
{
    memset(p, 0, sizeof *p);
    p->state = sw_start;
}

bool smtp_reply_parser_mid(const smtp_reply_parser *p)
{
    return p->state != sw_start || p->reply.lines > 0;
}

static void text_put(smtp_reply *r, char c)
{
    if (r->text_len + 1 < sizeof r->text) {
        r->text[r->text_len++] = c;
        r->text[r->text_len] = '\0';
    }
}

/* Enhanced status code "c.sss.ddd" at the start of s (RFC 3463): class 2, 4 or 5,
 * subject and detail of 1-3 digits. Returns its length, or 0. */
static size_t enhanced_code_len(const char *s, size_t n)
{
    size_t i = 0;
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < n && isdigit((unsigned char)s[i]) && i - start < 3)
            i++;
        if (i == start)
            return 0;
        if (part == 0) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < n && !isspace((unsigned char)s[i]))
        return 0;
    return i;
}

static void reply_finish(smtp_reply_parser *p, smtp_reply *out)
{
    smtp_reply *r = &p->reply;
    r->code = p->code;
    const char *last = r->text + r->last_line;
    size_t last_len = r->text_len - r->last_line;
    size_t elen = enhanced_code_len(last, last_len);
    /* Enhanced codes must agree with the reply's class to be trusted. */
    if (elen && elen < sizeof r->enhanced && last[0] == '0' + p->code / 100) {
        memcpy(r->enhanced, last, elen);
        r->enhanced[elen] = '\0';
    } else {
        r->enhanced[0] = '\0';
    }
    *out = *r;
    int keep_state = sw_start;
    memset(&p->reply, 0, sizeof p->reply);
    p->state = keep_state;
    p->code = 0;
    p->line_len = 0;
}

static int fail(smtp_reply_parser *p, const char *why)
{
    p->state = sw_error;
    p->error = why;
    return SMTP_REPLY_ERROR;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && !strncasecmp(w, kw, n);
}

/* Reads the extension keyword (and AUTH's mechanisms) of the line just ended. The
 * obsolete "AUTH=PLAIN LOGIN" form some servers still add counts as well. */
static void line_ext(smtp_reply *r)
{
    const char *line = r->text + r->last_line;
    size_t n = r->text_len - r->last_line, i = 0;
    while (i < n && line[i] != ' ' && line[i] != '=')
        i++;
    if (word_is(line, i, "PIPELINING")) {
        r->ext |= SMTP_EXT_PIPELINING;
    } else if (word_is(line, i, "STARTTLS")) {
        r->ext |= SMTP_EXT_STARTTLS;
    } else if (word_is(line, i, "SMTPUTF8")) {
        r->ext |= SMTP_EXT_SMTPUTF8;
    } else if (word_is(line, i, "AUTH")) {
        while (i < n) {
            while (i < n && (line[i] == ' ' || line[i] == '='))
                i++;
            size_t st = i;
            while (i < n && line[i] != ' ')
                i++;
            if (word_is(line + st, i - st, "PLAIN"))
                r->ext |= SMTP_EXT_AUTH_PLAIN;
            else if (word_is(line + st, i - st, "LOGIN"))
                r->ext |= SMTP_EXT_AUTH_LOGIN;
            else if (word_is(line + st, i - st, "XOAUTH2"))
                r->ext |= SMTP_EXT_AUTH_XOAUTH2;
        }
    }
}

/* End of one line: either the reply is complete or another line follows. */
static int line_end(smtp_reply_parser *p, smtp_reply *out)
{
    line_ext(&p->reply);
    if (p->last) {
        reply_finish(p, out);
        return SMTP_REPLY_DONE;
    }
    text_put(&p->reply, '\n');
    p->state = sw_start;
    p->line_len = 0;
    return SMTP_REPLY_NEED_MORE;
}

int smtp_reply_feed(smtp_reply_parser *p, const char *data, size_t n, size_t *consumed,
                    smtp_reply *out)
{
    size_t i;
    if (p->state == sw_error) {
        *consumed = 0;
        return SMTP_REPLY_ERROR;
    }
    for (i = 0; i < n; i++) {
        char c = data[i];
        if (++p->line_len > SMTP_REPLY_LINE_MAX) {
            *consumed = i;
            return fail(p, "reply line too long");
        }
        switch (p->state) {
        case sw_start:
            if (c < '2' || c > '5') {
                *consumed = i;
                return fail(p, "reply does not start with a 2xx-5xx code");
            }
            if (p->reply.lines >= SMTP_REPLY_LINES_MAX) {
                *consumed = i;
                return fail(p, "reply has too many lines");
            }
            /* a new line that might not fit: earlier lines already gave their
             * extensions, so their text makes room (the final line is what
             * details quote) */
            if (p->reply.text_len + SMTP_REPLY_LINE_KEEP >= sizeof p->reply.text) {
                p->reply.text_len = 0;
                p->reply.text[0] = '\0';
            }
            p->reply.lines++;
            p->reply.last_line = p->reply.text_len;
            p->line_code = (c - '0') * 100;
            p->state = sw_code2;
            break;
        case sw_code2:
        case sw_code3:
            if (!isdigit((unsigned char)c)) {
                *consumed = i;
                return fail(p, "reply code is not three digits");
            }
            p->line_code += (c - '0') * (p->state == sw_code2 ? 10 : 1);
            p->state = p->state == sw_code2 ? sw_code3 : sw_sep;
            break;
        case sw_sep:
            if (p->reply.lines == 1)
                p->code = p->line_code;
            else if (p->line_code != p->code) {
                *consumed = i;
                return fail(p, "multi-line reply changes its code");
            }
            if (c == '-') {
                p->last = false;
                p->state = sw_text;
            } else if (c == ' ') {
                p->last = true;
                p->state = sw_text;
            } else if (c == '\r') {
                p->last = true;
                p->state = sw_lf;
            } else if (c == '\n') {
                p->last = true;
                if (line_end(p, out) == SMTP_REPLY_DONE) {
                    *consumed = i + 1;
                    return SMTP_REPLY_DONE;
                }
            } else {
                *consumed = i;
                return fail(p, "bad separator after reply code");
            }
            break;
        case sw_text:
            if (c == '\r') {
                p->state = sw_lf;
            } else if (c == '\n') {
                /* bare LF: tolerated from servers, as most clients do */
                if (line_end(p, out) == SMTP_REPLY_DONE) {
                    *consumed = i + 1;
                    return SMTP_REPLY_DONE;
                }
            } else {
                text_put(&p->reply, c);
            }
            break;
        case sw_lf:
            if (c != '\n') {
                *consumed = i;
                return fail(p, "CR not followed by LF in reply");
            }
            if (line_end(p, out) == SMTP_REPLY_DONE) {
                *consumed = i + 1;
                return SMTP_REPLY_DONE;
            }
            break;
        default:
            *consumed = i;
            return fail(p, "parser in an unknown state");
        }
    }
    *consumed = n;
    return SMTP_REPLY_NEED_MORE;
}

const char *smtp_reply_detail(const smtp_reply *r, size_t *len)
{
    const char *s = r->text + r->last_line;
    size_t n = r->text_len - r->last_line;
    size_t elen = enhanced_code_len(s, n);
    if (elen && r->enhanced[0]) {
        s += elen;
        n -= elen;
        while (n && *s == ' ') {
            s++;
            n--;
        }
    }
    *len = n;
    return s;
}

bool smtp_reply_has_keyword(const smtp_reply *r, const char *keyword, const char **args,
                            size_t *args_len)
{
    size_t klen = strlen(keyword);
    size_t pos = 0;
    while (pos < r->text_len) {
        const char *line = r->text + pos;
        const char *nl = memchr(line, '\n', r->text_len - pos);
        size_t llen = nl ? (size_t)(nl - line) : r->text_len - pos;
        if (llen >= klen && !strncasecmp(line, keyword, klen) &&
            (llen == klen || line[klen] == ' ' || line[klen] == '=')) {
            if (args) {
                *args = line + klen;
                *args_len = llen - klen;
            }
            return true;
        }
        pos += llen + 1;
    }
    return false;
}
