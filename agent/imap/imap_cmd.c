/* IMAP command builder (see imap_cmd.h). Every command goes through begin/finish, and
 * every string argument through put_string, the one place that decides between atom,
 * quoted string and literal and refuses CR, LF and NUL. */
#include "imap_cmd.h"

#include "codec.h"
#include "imap_resp.h"
#include "xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void imap_cmdgen_init(imap_cmdgen *g)
{
    g->next_tag = 1;
    g->caps = 0;
}

void imap_cmd_init(imap_cmd *c)
{
    memset(c, 0, sizeof *c);
    buf_init(&c->bytes);
}

void imap_cmd_free(imap_cmd *c)
{
    buf_free(&c->bytes);
}

int imap_cmd_take(imap_cmd *c, buf *out)
{
    unsigned k = c->next_chunk;
    if (k > c->nstops)
        return IMAP_CMD_END; /* all out already */
    size_t from = k ? c->stops[k - 1] : 0;
    size_t to = k < c->nstops ? c->stops[k] : c->bytes.len;
    buf_append(out, c->bytes.data + from, to - from);
    c->next_chunk++;
    return k < c->nstops ? IMAP_CMD_WAIT : IMAP_CMD_END;
}

/* ---- framing ---- */

static void begin(imap_cmdgen *g, imap_cmd *c, const char *verb)
{
    buf_reset(&c->bytes);
    c->nstops = 0;
    c->next_chunk = 0;
    char digits[FMT_I64_MAX];
    size_t nd = fmt_i64(digits, g->next_tag ? g->next_tag : 1); /* a uint32: 10 at most */
    c->tag[0] = 'K';
    memcpy(c->tag + 1, digits, nd);
    c->tag[1 + nd] = '\0';
    buf_puts(&c->bytes, c->tag);
    buf_putc(&c->bytes, ' ');
    buf_puts(&c->bytes, verb);
}

static int finish(imap_cmdgen *g, imap_cmd *c)
{
    buf_puts(&c->bytes, "\r\n");
    g->next_tag = g->next_tag + 1 ? g->next_tag + 1 : 1;
    return 0;
}

static int refuse(imap_cmd *c)
{
    buf_reset(&c->bytes);
    c->nstops = 0;
    c->next_chunk = 0;
    c->tag[0] = '\0';
    return -EINVAL;
}

/* ---- arguments ---- */

static bool atom_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("(){ %*\"\\]", ch);
}

/* How put_string may write its argument. */
enum {
    AS_STRING = 0,   /* quoted or literal (ID values) */
    AS_ATOM_OK = 1,  /* an atom where the bytes allow (astring) */
    AS_NO_SPACE = 2, /* first in a list: no space before it */
};

/* Writes s[0..n) after a space as an atom (when allowed and possible), a quoted string
 * (7-bit) or a literal (8-bit). -1 on CR, LF or NUL, or too many synchronising
 * literals. */
static int put_string(imap_cmdgen *g, imap_cmd *c, const char *s, size_t n, int how)
{
    bool atom = n > 0 && (how & AS_ATOM_OK), quotable = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            return -1;
        if (!atom_char(ch))
            atom = false;
        if (ch >= 0x80)
            quotable = false;
    }
    if (!(how & AS_NO_SPACE))
        buf_putc(&c->bytes, ' ');
    if (atom) {
        buf_append(&c->bytes, s, n);
    } else if (quotable) {
        buf_putc(&c->bytes, '"');
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\')
                buf_putc(&c->bytes, '\\');
            buf_putc(&c->bytes, s[i]);
        }
        buf_putc(&c->bytes, '"');
    } else {
        bool plus = (g->caps & IMAP_CAP_LITERAL_PLUS) ||
                    ((g->caps & IMAP_CAP_LITERAL_MINUS) && n <= IMAP_LITERAL_MINUS_MAX);
        buf_printf(&c->bytes, "{%zu%s}\r\n", n, plus ? "+" : "");
        if (!plus) {
            if (c->nstops >= IMAP_CMD_STOPS_MAX)
                return -1;
            c->stops[c->nstops++] = c->bytes.len;
        }
        buf_append(&c->bytes, s, n);
    }
    return 0;
}

static int put_cstring(imap_cmdgen *g, imap_cmd *c, const char *s, int how)
{
    return s ? put_string(g, c, s, strlen(s), how) : -1;
}

/* A uid or sequence set as the caller built it: digits, ':', ',' and '*' only. */
static int put_set(imap_cmd *c, const char *set)
{
    size_t n = set ? strlen(set) : 0;
    if (!n)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789:,*", set[i]))
            return -1;
    buf_putc(&c->bytes, ' ');
    buf_append(&c->bytes, set, n);
    return 0;
}

/* A flag ("\Seen", "$Warmup") or a header field name: atom characters only, a flag
 * with one leading backslash. */
static bool token_ok(const char *s, bool flag)
{
    if (!s)
        return false;
    if (flag && *s == '\\')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (!atom_char((unsigned char)*s) || (!flag && *s == ':'))
            return false;
    return true;
}

/* ---- commands without arguments ---- */

static int simple(imap_cmdgen *g, imap_cmd *c, const char *verb)
{
    begin(g, c, verb);
    return finish(g, c);
}

int imap_cmd_capability(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "CAPABILITY");
}

int imap_cmd_noop(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "NOOP");
}

int imap_cmd_unselect(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "UNSELECT");
}

int imap_cmd_starttls(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "STARTTLS");
}

int imap_cmd_namespace(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "NAMESPACE");
}

int imap_cmd_logout(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "LOGOUT");
}

int imap_cmd_idle(imap_cmdgen *g, imap_cmd *c)
{
    return simple(g, c, "IDLE");
}

void imap_cmd_idle_done(buf *out)
{
    buf_puts(out, "DONE\r\n");
}

/* ---- authentication ---- */

int imap_cmd_login(imap_cmdgen *g, imap_cmd *c, const char *user, const char *password)
{
    begin(g, c, "LOGIN");
    if (put_cstring(g, c, user, AS_ATOM_OK) < 0 || put_cstring(g, c, password, AS_ATOM_OK) < 0)
        return refuse(c);
    return finish(g, c);
}

static bool sasl_text_ok(const char *s, bool nonempty)
{
    if (!s || (nonempty && !*s))
        return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || *s == '\x01')
            return false;
    return true;
}

/* The SASL initial response of a, unencoded. -1 when a field is refused. */
static int sasl_message(const imap_auth *a, buf *m)
{
    if (!sasl_text_ok(a->user, true) || !sasl_text_ok(a->secret, true))
        return -1;
    switch (a->mech) {
    case IMAP_SASL_PLAIN:
        buf_putc(m, '\0');
        buf_puts(m, a->user);
        buf_putc(m, '\0');
        buf_puts(m, a->secret);
        return 0;
    case IMAP_SASL_XOAUTH2:
        buf_printf(m,
                   "user=%s\x01"
                   "auth=Bearer %s\x01\x01",
                   a->user, a->secret);
        return 0;
    case IMAP_SASL_OAUTHBEARER:
        /* gs2 header "n,a=<saslname>," with ',' and '=' escaped (RFC 5801) */
        buf_puts(m, "n,a=");
        for (const char *u = a->user; *u; u++) {
            if (*u == ',')
                buf_puts(m, "=2C");
            else if (*u == '=')
                buf_puts(m, "=3D");
            else
                buf_putc(m, *u);
        }
        buf_puts(m, ",\x01");
        if (a->host) {
            if (!sasl_text_ok(a->host, true))
                return -1;
            buf_printf(m, "host=%s\x01", a->host);
        }
        if (a->port > 0)
            buf_printf(m, "port=%d\x01", a->port);
        buf_printf(m, "auth=Bearer %s\x01\x01", a->secret);
        return 0;
    default:
        return -1;
    }
}

int imap_cmd_authenticate(imap_cmdgen *g, imap_cmd *c, const imap_auth *a)
{
    static const char *const mechs[] = {"AUTHENTICATE PLAIN", "AUTHENTICATE XOAUTH2",
                                        "AUTHENTICATE OAUTHBEARER"};
    buf m = BUF_INIT;
    if (a->mech < IMAP_SASL_PLAIN || a->mech > IMAP_SASL_OAUTHBEARER || sasl_message(a, &m) < 0) {
        buf_free(&m);
        return refuse(c);
    }
    begin(g, c, mechs[a->mech]);
    if (g->caps & IMAP_CAP_SASL_IR) {
        buf_putc(&c->bytes, ' ');
    } else {
        buf_puts(&c->bytes, "\r\n");
        c->stops[c->nstops++] = c->bytes.len;
    }
    base64_append(&c->bytes, m.data, m.len);
    /* the secret is in m: wipe it before letting go */
    memset(m.data, 0, m.len);
    buf_free(&m);
    return finish(g, c);
}

void imap_cmd_sasl_error_reply(int mech, buf *out)
{
    /* RFC 7628 §3.2.3: OAUTHBEARER answers an error challenge with %x01; XOAUTH2 (and
     * anything else) with an empty response */
    buf_puts(out, mech == IMAP_SASL_OAUTHBEARER ? "AQ==\r\n" : "\r\n");
}

/* ---- mailbox and message commands ---- */

int imap_cmd_id(imap_cmdgen *g, imap_cmd *c, const char *const *kv, size_t npairs)
{
    begin(g, c, "ID");
    if (!npairs) {
        buf_puts(&c->bytes, " NIL");
        return finish(g, c);
    }
    buf_puts(&c->bytes, " (");
    for (size_t i = 0; i < 2 * npairs; i++) {
        if (put_cstring(g, c, kv[i], i ? AS_STRING : AS_NO_SPACE) < 0)
            return refuse(c);
    }
    buf_putc(&c->bytes, ')');
    return finish(g, c);
}

int imap_cmd_list(imap_cmdgen *g, imap_cmd *c, unsigned ret)
{
    begin(g, c, "LIST \"\" \"*\"");
    if (ret & (IMAP_LIST_RET_SPECIAL_USE | IMAP_LIST_RET_STATUS)) {
        buf_puts(&c->bytes, " RETURN (");
        if (ret & IMAP_LIST_RET_SPECIAL_USE)
            buf_puts(&c->bytes, ret & IMAP_LIST_RET_STATUS ? "SPECIAL-USE " : "SPECIAL-USE");
        if (ret & IMAP_LIST_RET_STATUS)
            buf_puts(&c->bytes, "STATUS (UIDNEXT UIDVALIDITY)");
        buf_puts(&c->bytes, ")");
    }
    return finish(g, c);
}

int imap_cmd_select(imap_cmdgen *g, imap_cmd *c, const char *mbox, size_t len, bool read_only)
{
    begin(g, c, read_only ? "EXAMINE" : "SELECT");
    if (!mbox || put_string(g, c, mbox, len, AS_ATOM_OK) < 0)
        return refuse(c);
    return finish(g, c);
}

int imap_cmd_status(imap_cmdgen *g, imap_cmd *c, const char *mbox, size_t len)
{
    begin(g, c, "STATUS");
    if (!mbox || put_string(g, c, mbox, len, AS_ATOM_OK) < 0)
        return refuse(c);
    buf_puts(&c->bytes, " (UIDNEXT UIDVALIDITY)");
    return finish(g, c);
}

int imap_cmd_create(imap_cmdgen *g, imap_cmd *c, const char *mbox, size_t len)
{
    begin(g, c, "CREATE");
    if (!mbox || !len || put_string(g, c, mbox, len, AS_ATOM_OK) < 0)
        return refuse(c);
    return finish(g, c);
}

int imap_cmd_uid_fetch(imap_cmdgen *g, imap_cmd *c, const char *set, unsigned items,
                       const char *const *fields, size_t nfields)
{
    begin(g, c, "UID FETCH");
    if (put_set(c, set) < 0)
        return refuse(c);
    buf_puts(&c->bytes, " (UID");
    if (items & IMAP_FETCH_FLAGS)
        buf_puts(&c->bytes, " FLAGS");
    if (items & IMAP_FETCH_INTERNALDATE)
        buf_puts(&c->bytes, " INTERNALDATE");
    if (items & IMAP_FETCH_GM_LABELS)
        buf_puts(&c->bytes, " X-GM-LABELS");
    if (nfields) {
        buf_puts(&c->bytes, " BODY.PEEK[HEADER.FIELDS (");
        for (size_t i = 0; i < nfields; i++) {
            if (!token_ok(fields[i], false))
                return refuse(c);
            if (i)
                buf_putc(&c->bytes, ' ');
            buf_puts(&c->bytes, fields[i]);
        }
        buf_puts(&c->bytes, ")]");
    }
    buf_putc(&c->bytes, ')');
    return finish(g, c);
}

int imap_cmd_uid_search_from(imap_cmdgen *g, imap_cmd *c, uint32_t from)
{
    if (!from)
        return refuse(c);
    begin(g, c, "UID SEARCH UID");
    buf_printf(&c->bytes, " %u:*", (unsigned)from);
    return finish(g, c);
}

static int set_and_mailbox(imap_cmdgen *g, imap_cmd *c, const char *verb, const char *set,
                           const char *mbox, size_t len)
{
    begin(g, c, verb);
    if (put_set(c, set) < 0 || !mbox || !len || put_string(g, c, mbox, len, AS_ATOM_OK) < 0)
        return refuse(c);
    return finish(g, c);
}

int imap_cmd_uid_move(imap_cmdgen *g, imap_cmd *c, const char *set, const char *mbox, size_t len)
{
    return set_and_mailbox(g, c, "UID MOVE", set, mbox, len);
}

int imap_cmd_uid_copy(imap_cmdgen *g, imap_cmd *c, const char *set, const char *mbox, size_t len)
{
    return set_and_mailbox(g, c, "UID COPY", set, mbox, len);
}

int imap_cmd_uid_store(imap_cmdgen *g, imap_cmd *c, const char *set, char op, bool silent,
                       const char *const *flags, size_t nflags)
{
    begin(g, c, "UID STORE");
    if (put_set(c, set) < 0 || (op != '+' && op != '-' && op != 0))
        return refuse(c);
    buf_putc(&c->bytes, ' ');
    if (op)
        buf_putc(&c->bytes, op);
    buf_puts(&c->bytes, silent ? "FLAGS.SILENT (" : "FLAGS (");
    for (size_t i = 0; i < nflags; i++) {
        if (!token_ok(flags[i], true))
            return refuse(c);
        if (i)
            buf_putc(&c->bytes, ' ');
        buf_puts(&c->bytes, flags[i]);
    }
    buf_putc(&c->bytes, ')');
    return finish(g, c);
}

int imap_cmd_uid_expunge(imap_cmdgen *g, imap_cmd *c, const char *set)
{
    begin(g, c, "UID EXPUNGE");
    /* never "*": an expunge names exactly the messages it means */
    if (!set || strchr(set, '*') || put_set(c, set) < 0)
        return refuse(c);
    return finish(g, c);
}

/* ---- uid sets ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int imap_uidset_build(buf *out, const uint32_t *uids, size_t n)
{
    if (!n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!uids[i])
            return -EINVAL;
    uint32_t *u = xmalloc(n * sizeof *u);
    memcpy(u, uids, n * sizeof *u);
    qsort(u, n, sizeof *u, cmp_u32);
    size_t i = 0;
    bool first = true;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && (u[j + 1] == u[j] || u[j + 1] == u[j] + 1))
            j++;
        buf_printf(out, first ? "%u" : ",%u", (unsigned)u[i]);
        if (u[j] != u[i])
            buf_printf(out, ":%u", (unsigned)u[j]);
        first = false;
        i = j + 1;
    }
    free(u);
    return 0;
}
