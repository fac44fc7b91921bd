/* SMTP client session (see smtp_session.h). One switch on the state handles each
 * reply; every transition goes through set_state so the walk can be read top to
 * bottom in on_reply. Failures before a transaction settle all pending slots;
 * failures inside one settle only its slot, and the session moves on to the next.
 * The one way to `sent` is a 2xx answer to the slot's own final dot: any step takes
 * a 2xx as its positive answer (RFC 5321 §4.2.1, the first digit decides), a 2xx
 * where a refusal is read is never a success, the payload goes only after a 3xx to
 * DATA, and a reply that answers no command (a doubled greeting, an extra line) ends
 * the session deferred. After the dot, a lost reply makes the slot `unknown`.
 * A transaction whose envelope is not ASCII carries SMTPUTF8 (RFC 6531); slots the
 * server cannot take for want of it are settled before the first MAIL. */
#include "smtp_session.h"

#include "codec.h"
#include "wire.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *state_names[SMTP_S_COUNT] = {
    "greeting", "ehlo", "helo", "starttls", "tls_wait", "auth", "auth_user", "auth_pass",
    "mail",     "rcpt", "data", "dot",      "rset",     "quit", "done",      "gate",
};

const char *smtp_state_name(int state)
{
    return state >= 0 && state < SMTP_S_COUNT ? state_names[state] : "invalid";
}

static bool has_non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* The final outcomes are the wire's statuses, in the wire's order (common/wire.h). */
_Static_assert((int)SMTP_ST_SENT - 1 == (int)WIRE_SENT &&
                   (int)SMTP_ST_DEFERRED - 1 == (int)WIRE_DEFERRED &&
                   (int)SMTP_ST_FAILED - 1 == (int)WIRE_FAILED &&
                   (int)SMTP_ST_AUTH - 1 == (int)WIRE_AUTH &&
                   (int)SMTP_ST_TLS - 1 == (int)WIRE_TLS &&
                   (int)SMTP_ST_UNKNOWN - 1 == (int)WIRE_UNKNOWN,
               "enum smtp_status and enum wire_status disagree");

const char *smtp_status_name(int status)
{
    if (status >= SMTP_ST_SENT && status < SMTP_ST_COUNT)
        return wire_status_names[status - SMTP_ST_SENT];
    return "pending";
}

void smtp_session_init(smtp_session *s, const smtp_session_params *p, smtp_slot *slots,
                       size_t nslots)
{
    memset(s, 0, sizeof *s);
    s->params = *p;
    s->slots = slots;
    s->nslots = nslots;
    s->state = SMTP_S_GREETING;
    s->tls_active = p->security == SMTP_SEC_TLS;
    s->sender_utf8 = has_non_ascii(p->mail_from);
    s->replies_due = 1; /* the greeting */
    smtp_reply_parser_init(&s->parser);
    buf_init(&s->out);
    for (size_t i = 0; i < nslots; i++) {
        slots[i].status = SMTP_ST_PENDING;
        slots[i].code = 0;
        slots[i].enhanced[0] = '\0';
        slots[i].detail[0] = '\0';
        slots[i].done_ms = 0;
    }
}

void smtp_session_clear(smtp_session *s)
{
    buf_free(&s->out);
}

buf *smtp_session_output(smtp_session *s)
{
    return &s->out;
}

static void set_state(smtp_session *s, int state)
{
    s->state = state;
}

/* Copies text as printable ASCII (anything else becomes '?'), bounded. */
static void copy_detail(char *dst, size_t cap, const char *src, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[k++] = (char)((c >= 0x20 && c < 0x7f) ? c : '?');
    }
    dst[k] = '\0';
}

static void settle(smtp_slot *slot, int status, const smtp_reply *r, const char *prefix,
                   int64_t now_ms)
{
    if (slot->status != SMTP_ST_PENDING)
        return;
    slot->status = status;
    slot->done_ms = now_ms;
    if (r) {
        size_t dlen;
        const char *d = smtp_reply_detail(r, &dlen);
        char text[160];
        copy_detail(text, sizeof text, d, dlen);
        slot->code = r->code;
        snprintf(slot->enhanced, sizeof slot->enhanced, "%s", r->enhanced);
        size_t k = 0;
        if (prefix) {
            k = strlen(prefix) < sizeof slot->detail - 3 ? strlen(prefix) : sizeof slot->detail - 3;
            memcpy(slot->detail, prefix, k);
            slot->detail[k++] = ':';
            slot->detail[k++] = ' ';
        }
        copy_detail(slot->detail + k, sizeof slot->detail - k, text, strlen(text));
    } else {
        slot->code = 0;
        slot->enhanced[0] = '\0';
        copy_detail(slot->detail, sizeof slot->detail, prefix ? prefix : "",
                    strlen(prefix ? prefix : ""));
    }
}

static void settle_all(smtp_session *s, int status, const smtp_reply *r, const char *prefix,
                       int64_t now_ms)
{
    for (size_t i = 0; i < s->nslots; i++)
        settle(&s->slots[i], status, r, prefix, now_ms);
}

static bool is_2xx(int code)
{
    return code >= 200 && code < 300;
}

static bool is_3xx(int code)
{
    return code >= 300 && code < 400;
}

/* The class of a refusal: 5xx failed, anything else deferred. Never `sent`: a slot
 * becomes sent only in SMTP_S_DOT. */
static int refusal_class(int code)
{
    return code >= 500 && code < 600 ? SMTP_ST_FAILED : SMTP_ST_DEFERRED;
}

/* One command line (or payload) is in the output: its reply is owed. */
static void reply_owed(smtp_session *s)
{
    s->replies_due++;
    s->replies_unflushed++;
}

static void send_quit(smtp_session *s)
{
    if (!s->quit_sent) {
        buf_puts(&s->out, "QUIT\r\n");
        reply_owed(s);
    }
    s->quit_sent = true;
    set_state(s, SMTP_S_QUIT);
}

/* The server broke the protocol (a reply out of place, of a class no step allows):
 * replies can no longer be matched to commands, so the session closes at once and
 * every pending slot is deferred; one whose dot is out is unknown. */
static void protocol_error(smtp_session *s, const smtp_reply *r, const char *why, int64_t now_ms)
{
    if (s->state == SMTP_S_DOT && !s->txn_failed && s->cur < s->nslots)
        settle(&s->slots[s->cur], SMTP_ST_UNKNOWN, r, why, now_ms);
    settle_all(s, SMTP_ST_DEFERRED, r, why, now_ms);
    buf_reset(&s->out);
    set_state(s, SMTP_S_DONE);
}

/* Ends the session after a session-wide failure: every pending slot gets status. */
static void give_up(smtp_session *s, int status, const smtp_reply *r, const char *prefix,
                    int64_t now_ms)
{
    settle_all(s, status, r, prefix, now_ms);
    send_quit(s);
}

static void send_ehlo(smtp_session *s)
{
    memset(&s->caps, 0, sizeof s->caps);
    buf_printf(&s->out, "EHLO %s\r\n", s->params.helo_name);
    reply_owed(s);
    set_state(s, SMTP_S_EHLO);
}

/* Extensions from every line of the EHLO reply, however long (smtp_reply.ext). */
static void parse_caps(smtp_session *s, const smtp_reply *r)
{
    s->caps.esmtp = true;
    s->caps.pipelining = r->ext & SMTP_EXT_PIPELINING;
    s->caps.starttls = r->ext & SMTP_EXT_STARTTLS;
    s->caps.smtputf8 = r->ext & SMTP_EXT_SMTPUTF8;
    s->caps.auth_plain = r->ext & SMTP_EXT_AUTH_PLAIN;
    s->caps.auth_login = r->ext & SMTP_EXT_AUTH_LOGIN;
    s->caps.auth_xoauth2 = r->ext & SMTP_EXT_AUTH_XOAUTH2;
}

static void start_transaction(smtp_session *s, int64_t now_ms);

/* True when a slot at index from or later still waits. */
static bool pending_from(const smtp_session *s, size_t from)
{
    for (size_t i = from; i < s->nslots; i++)
        if (s->slots[i].status == SMTP_ST_PENDING)
            return true;
    return false;
}

static bool needs_smtputf8(const smtp_session *s, const smtp_slot *slot)
{
    return s->sender_utf8 || has_non_ascii(slot->rcpt);
}

/* Without SMTPUTF8 a non-ASCII envelope cannot be sent to this server at all, so
 * retrying would not help: those slots fail before any MAIL, and the rest go on. */
static void refuse_utf8_slots(smtp_session *s, int64_t now_ms)
{
    if (s->caps.smtputf8)
        return;
    const char *why = s->sender_utf8 ? "sender needs SMTPUTF8, which the server does not offer"
                                     : "recipient needs SMTPUTF8, which the server does not offer";
    for (size_t i = 0; i < s->nslots; i++)
        if (needs_smtputf8(s, &s->slots[i]))
            settle(&s->slots[i], SMTP_ST_FAILED, NULL, why, now_ms);
}

/* After EHLO/HELO (and after TLS): STARTTLS, AUTH, or the first transaction. */
static void after_hello(smtp_session *s, int64_t now_ms)
{
    const smtp_session_params *p = &s->params;
    if (p->security == SMTP_SEC_STARTTLS && !s->tls_active) {
        if (!s->caps.starttls) {
            give_up(s, SMTP_ST_TLS, NULL, "server does not offer STARTTLS", now_ms);
            return;
        }
        buf_puts(&s->out, "STARTTLS\r\n");
        reply_owed(s);
        set_state(s, SMTP_S_STARTTLS);
        return;
    }
    /* this EHLO's extensions are final: settle what they rule out before AUTH, and
     * so that pending_from sees only slots that will really be sent */
    refuse_utf8_slots(s, now_ms);
    if (!pending_from(s, 0)) {
        send_quit(s);
        return;
    }
    if (p->username && p->username[0] && !s->authed) {
        if (!s->tls_active && !p->allow_plaintext_auth) {
            give_up(s, SMTP_ST_AUTH, NULL,
                    "AUTH refused: the connection has no TLS and the mailbox does not allow "
                    "credentials in clear (smtp.allow_plaintext_auth)",
                    now_ms);
            return;
        }
        buf sec = BUF_INIT;
        if (p->oauth_token && p->oauth_token[0] && s->caps.auth_xoauth2) {
            buf_printf(&sec, "user=%s\001auth=Bearer %s\001\001", p->username, p->oauth_token);
            buf_puts(&s->out, "AUTH XOAUTH2 ");
            base64_append(&s->out, sec.data, sec.len);
            buf_puts(&s->out, "\r\n");
        } else if (p->password && s->caps.auth_plain) {
            buf_putc(&sec, '\0');
            buf_puts(&sec, p->username);
            buf_putc(&sec, '\0');
            buf_puts(&sec, p->password);
            buf_puts(&s->out, "AUTH PLAIN ");
            base64_append(&s->out, sec.data, sec.len);
            buf_puts(&s->out, "\r\n");
        } else if (p->password && s->caps.auth_login) {
            buf_puts(&s->out, "AUTH LOGIN\r\n");
        } else {
            buf_free(&sec);
            give_up(s, SMTP_ST_AUTH, NULL, "server offers no AUTH mechanism we can use", now_ms);
            return;
        }
        /* the secret is wiped before the buffer goes back to the allocator */
        if (sec.data)
            memset(sec.data, 0, sec.cap);
        buf_free(&sec);
        reply_owed(s);
        s->auth_retry_sent = false;
        set_state(s, SMTP_S_AUTH);
        return;
    }
    start_transaction(s, now_ms);
}

/* Next pending slot's MAIL (with RCPT and DATA when pipelining), or QUIT. */
static void start_transaction(smtp_session *s, int64_t now_ms)
{
    while (s->cur < s->nslots && s->slots[s->cur].status != SMTP_ST_PENDING)
        s->cur++;
    if (s->cur >= s->nslots) {
        send_quit(s);
        return;
    }
    s->txn_failed = false;
    s->txn_pipelined = s->caps.pipelining;
    /* the body is 7-bit (quoted-printable when not ASCII): no BODY=8BITMIME */
    buf_printf(&s->out, "MAIL FROM:<%s>%s\r\n", s->params.mail_from,
               needs_smtputf8(s, &s->slots[s->cur]) ? " SMTPUTF8" : "");
    reply_owed(s);
    if (s->txn_pipelined) {
        buf_printf(&s->out, "RCPT TO:<%s>\r\nDATA\r\n", s->slots[s->cur].rcpt);
        reply_owed(s);
        reply_owed(s);
    }
    set_state(s, SMTP_S_MAIL);
    (void)now_ms;
}

/* A transaction ended (either way): RSET after a failure, then the next one. */
static void end_transaction(smtp_session *s, bool failed, int64_t now_ms)
{
    s->cur++;
    if (!pending_from(s, s->cur)) {
        send_quit(s);
        return;
    }
    if (failed) {
        buf_puts(&s->out, "RSET\r\n");
        reply_owed(s);
        set_state(s, SMTP_S_RSET);
        return;
    }
    start_transaction(s, now_ms);
}

/* The transaction's slot failed at MAIL or RCPT. */
static void txn_fail(smtp_session *s, const smtp_reply *r, const char *what, int64_t now_ms)
{
    settle(&s->slots[s->cur], refusal_class(r->code), r, what, now_ms);
    s->txn_failed = true;
}

static void send_payload(smtp_session *s)
{
    smtp_slot *slot = &s->slots[s->cur];
    buf_append(&s->out, slot->payload, slot->payload_len);
    reply_owed(s);
    /* a reply begun before the payload was even queued cannot answer its end */
    s->dot_early = smtp_reply_parser_mid(&s->parser);
    /* RFC 2920: QUIT may follow the end of the message in the same group. */
    if (s->caps.pipelining && !pending_from(s, s->cur + 1)) {
        buf_puts(&s->out, "QUIT\r\n");
        reply_owed(s);
        s->quit_sent = true;
    }
    set_state(s, SMTP_S_DOT);
}

static bool is_auth_failure(int code)
{
    return code == 535 || code == 534 || code == 530 || code == 538 || code == 500 || code == 501 ||
           code == 502 || code == 504;
}

/* The transition table: one reply, in one state. */
static void on_reply(smtp_session *s, const smtp_reply *r, int64_t now_ms)
{
    int code = r->code;
    if (s->replies_due <= s->replies_unflushed) {
        protocol_error(s, r, "protocol error: a reply that answers no command", now_ms);
        return;
    }
    s->replies_due--;
    switch (s->state) {
    case SMTP_S_GREETING:
        if (is_2xx(code))
            send_ehlo(s);
        else if (is_3xx(code))
            protocol_error(s, r, "protocol error: greeting", now_ms);
        else
            give_up(s, refusal_class(code), r, "greeting", now_ms);
        break;
    case SMTP_S_EHLO:
        if (is_2xx(code)) {
            parse_caps(s, r);
            after_hello(s, now_ms);
        } else if (is_3xx(code)) {
            protocol_error(s, r, "protocol error: EHLO", now_ms);
        } else if (code >= 500 && !s->tls_active) {
            buf_printf(&s->out, "HELO %s\r\n", s->params.helo_name);
            reply_owed(s);
            set_state(s, SMTP_S_HELO);
        } else {
            give_up(s, refusal_class(code), r, "EHLO", now_ms);
        }
        break;
    case SMTP_S_HELO:
        if (is_2xx(code)) {
            memset(&s->caps, 0, sizeof s->caps);
            after_hello(s, now_ms);
        } else if (is_3xx(code)) {
            protocol_error(s, r, "protocol error: HELO", now_ms);
        } else {
            give_up(s, refusal_class(code), r, "HELO", now_ms);
        }
        break;
    case SMTP_S_STARTTLS:
        if (is_2xx(code))
            set_state(s, SMTP_S_TLS_WAIT);
        else if (is_3xx(code))
            protocol_error(s, r, "protocol error: STARTTLS", now_ms);
        else
            give_up(s, code < 500 ? SMTP_ST_DEFERRED : SMTP_ST_TLS, r, "STARTTLS", now_ms);
        break;
    case SMTP_S_AUTH:
    case SMTP_S_AUTH_USER:
    case SMTP_S_AUTH_PASS:
        /* 235 is the RFC 4954 answer; any 2xx is a positive completion (RFC 5321
         * §4.2.1), and some servers (Postfix's smtp-sink among them) answer 250. */
        if (is_2xx(code)) {
            s->authed = true;
            start_transaction(s, now_ms);
        } else if (code == 334 && s->state == SMTP_S_AUTH && s->caps.auth_xoauth2 &&
                   s->params.oauth_token && s->params.oauth_token[0]) {
            /* XOAUTH2 error challenge: an empty line fetches the final 5xx */
            if (s->auth_retry_sent) {
                give_up(s, SMTP_ST_AUTH, r, "AUTH", now_ms);
            } else {
                buf_puts(&s->out, "\r\n");
                reply_owed(s);
                s->auth_retry_sent = true;
            }
        } else if (code == 334 && s->state == SMTP_S_AUTH) {
            base64_append(&s->out, s->params.username, strlen(s->params.username));
            buf_puts(&s->out, "\r\n");
            reply_owed(s);
            set_state(s, SMTP_S_AUTH_USER);
        } else if (code == 334 && s->state == SMTP_S_AUTH_USER) {
            base64_append(&s->out, s->params.password, strlen(s->params.password));
            buf_puts(&s->out, "\r\n");
            reply_owed(s);
            set_state(s, SMTP_S_AUTH_PASS);
        } else if (code >= 400 && code < 500) {
            give_up(s, SMTP_ST_DEFERRED, r, "AUTH", now_ms);
        } else if (is_auth_failure(code) || code >= 500) {
            give_up(s, SMTP_ST_AUTH, r, "AUTH", now_ms);
        } else {
            give_up(s, SMTP_ST_AUTH, r, "AUTH unexpected reply", now_ms);
        }
        break;
    case SMTP_S_MAIL:
        if (is_3xx(code)) {
            protocol_error(s, r, "protocol error: MAIL", now_ms);
            break;
        }
        if (!is_2xx(code))
            txn_fail(s, r, "MAIL", now_ms);
        if (s->txn_pipelined) {
            set_state(s, SMTP_S_RCPT);
        } else if (s->txn_failed) {
            end_transaction(s, true, now_ms);
        } else {
            buf_printf(&s->out, "RCPT TO:<%s>\r\n", s->slots[s->cur].rcpt);
            reply_owed(s);
            set_state(s, SMTP_S_RCPT);
        }
        break;
    case SMTP_S_RCPT:
        /* a 354 here is a pipelined group answered short (DATA's reply read as
         * RCPT's): the replies no longer line up */
        if (is_3xx(code)) {
            protocol_error(s, r, "protocol error: RCPT", now_ms);
            break;
        }
        if (!is_2xx(code) && !s->txn_failed)
            txn_fail(s, r, "RCPT", now_ms);
        if (s->txn_pipelined) {
            set_state(s, SMTP_S_DATA);
        } else if (s->txn_failed) {
            end_transaction(s, true, now_ms);
        } else {
            buf_puts(&s->out, "DATA\r\n");
            reply_owed(s);
            set_state(s, SMTP_S_DATA);
        }
        break;
    case SMTP_S_DATA:
        if (is_3xx(code) && s->txn_failed) {
            /* a pipelined DATA accepted although no recipient was: the payload must
             * not go, only the lone dot that ends the empty transaction (RFC 2920
             * §3.1); its reply decides nothing */
            buf_puts(&s->out, ".\r\n");
            reply_owed(s);
            set_state(s, SMTP_S_DOT);
        } else if (is_3xx(code) && s->params.gate_payload) {
            set_state(s, SMTP_S_GATE);
        } else if (is_3xx(code)) {
            send_payload(s);
        } else if (is_2xx(code)) {
            /* "250" to DATA: the server does not wait for a message */
            protocol_error(s, r, "protocol error: DATA answered without 3xx", now_ms);
        } else {
            if (!s->txn_failed)
                txn_fail(s, r, "DATA", now_ms);
            end_transaction(s, true, now_ms);
        }
        break;
    case SMTP_S_DOT: {
        bool failed = s->txn_failed;
        if (s->dot_early) {
            /* Begun before the message's end left our buffers: never its acceptance.
             * The session ends, but what is queued (the rest of the message, its dot)
             * still goes out as the connection closes, so only a 5xx stands as the
             * message's refusal; anything else leaves it unknown (never retried: a
             * server that does not behave may hold it). */
            if (!failed && code >= 500 && code < 600) {
                settle(&s->slots[s->cur], SMTP_ST_FAILED, r, NULL, now_ms);
                s->txn_failed = true;
            }
            protocol_error(s, r, "protocol error: a reply before the end of the message had left",
                           now_ms);
            break;
        }
        if (!failed && is_2xx(code) && code != 250) {
            /* RFC 5321 §4.3.2: the end of data succeeds with 250 only. A 221 here is
             * the pipelined QUIT's answer with the message's own reply missing. */
            protocol_error(s, r, "protocol error: end of data answered with a 2xx other than 250",
                           now_ms);
            break;
        }
        if (!failed) {
            if (is_2xx(code))
                settle(&s->slots[s->cur], SMTP_ST_SENT, r, NULL, now_ms);
            else if (code >= 400 && code < 600)
                settle(&s->slots[s->cur], refusal_class(code), r, NULL, now_ms);
            else {
                protocol_error(s, r, "protocol error: end of data", now_ms);
                break;
            }
            failed = !is_2xx(code);
        }
        if (s->quit_sent) {
            s->cur++;
            set_state(s, SMTP_S_QUIT);
        } else {
            end_transaction(s, failed, now_ms);
        }
        break;
    }
    case SMTP_S_RSET:
        /* a failed RSET leaves the rest untried: deferred, whatever its code */
        if (is_2xx(code))
            start_transaction(s, now_ms);
        else
            give_up(s, SMTP_ST_DEFERRED, r, "RSET", now_ms);
        break;
    case SMTP_S_QUIT:
        settle_all(s, SMTP_ST_DEFERRED, NULL, "session ended before the message was sent", now_ms);
        set_state(s, SMTP_S_DONE);
        break;
    case SMTP_S_TLS_WAIT:
    case SMTP_S_GATE: /* the server speaks while it should wait for the data */
    case SMTP_S_DONE:
    default:
        protocol_error(s, r, "protocol error: unexpected reply", now_ms);
        break;
    }
}

static int events_of(smtp_session *s)
{
    int ev = 0;
    if (s->out.len)
        ev |= SMTP_EV_OUTPUT;
    if (s->state == SMTP_S_TLS_WAIT)
        ev |= SMTP_EV_STARTTLS;
    if (s->state == SMTP_S_DONE)
        ev |= SMTP_EV_DONE;
    if (s->state == SMTP_S_GATE)
        ev |= SMTP_EV_GATE;
    return ev;
}

int smtp_session_feed(smtp_session *s, const char *data, size_t n, int64_t now_ms)
{
    size_t off = 0;
    smtp_reply reply;         /* on the stack: sessions stay small when thousands are open */
    s->replies_unflushed = 0; /* what was queued before this feed has gone out */
    bool fresh = false;       /* a payload was queued during this feed */
    while (off < n && s->state != SMTP_S_DONE && s->state != SMTP_S_TLS_WAIT) {
        /* bytes now, in the gate or with the payload still ours (queued in this very
         * read, or not yet in the socket), are no answer to the end of data */
        if (s->state == SMTP_S_GATE || (s->state == SMTP_S_DOT && (s->out_pending || fresh)))
            s->dot_early = true;
        size_t used = 0;
        int rc = smtp_reply_feed(&s->parser, data + off, n - off, &used, &reply);
        off += used;
        if (rc == SMTP_REPLY_ERROR) {
            char why[120];
            snprintf(why, sizeof why, "malformed reply: %s", s->parser.error);
            protocol_error(s, NULL, why, now_ms);
            break;
        }
        if (rc == SMTP_REPLY_NEED_MORE)
            break;
        int was = s->state;
        on_reply(s, &reply, now_ms);
        if (s->state == SMTP_S_DOT && was != SMTP_S_DOT)
            fresh = true;
    }
    return events_of(s);
}

int smtp_session_tls_ready(smtp_session *s)
{
    if (s->state == SMTP_S_TLS_WAIT) {
        s->tls_active = true;
        smtp_reply_parser_init(&s->parser);
        s->replies_due = 0; /* nothing said in clear is owed any more */
        send_ehlo(s);
    }
    return events_of(s);
}

int smtp_session_payload_go(smtp_session *s, bool ok, const char *detail, int64_t now_ms)
{
    if (s->state != SMTP_S_GATE)
        return events_of(s);
    if (ok) {
        send_payload(s);
    } else {
        settle_all(s, SMTP_ST_DEFERRED, NULL, detail, now_ms);
        set_state(s, SMTP_S_DONE);
    }
    return events_of(s);
}

/* After the final dot, silence is not a refusal: the server may hold the message. */
static void settle_uncertain(smtp_session *s, const char *cause, int64_t now_ms)
{
    if (s->state != SMTP_S_DOT || s->txn_failed || s->cur >= s->nslots)
        return;
    char why[160];
    snprintf(why, sizeof why, "%s after the final dot: the server may have the message",
             cause && cause[0] ? cause : "connection lost");
    settle(&s->slots[s->cur], SMTP_ST_UNKNOWN, NULL, why, now_ms);
}

void smtp_session_abort(smtp_session *s, int status, const char *detail, int64_t now_ms)
{
    settle_uncertain(s, detail, now_ms);
    settle_all(s, status, NULL, detail, now_ms);
    set_state(s, SMTP_S_DONE);
}

void smtp_session_eof(smtp_session *s, int64_t now_ms)
{
    settle_uncertain(s, "connection closed by server", now_ms);
    if (s->state == SMTP_S_QUIT)
        settle_all(s, SMTP_ST_DEFERRED, NULL, "session ended before the message was sent", now_ms);
    else
        settle_all(s, SMTP_ST_DEFERRED, NULL, "connection closed by server", now_ms);
    set_state(s, SMTP_S_DONE);
}
