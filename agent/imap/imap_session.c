/* IMAP client session (see imap_session.h). One switch on the state handles each
 * tagged answer (on_tagged); untagged data only updates what the session knows
 * (capabilities) or ends it (BYE). Every command goes out through send_cmd, every
 * end through finish, so the walk can be read top to bottom. Credentials never go
 * over plaintext unless the caller allowed it, and capabilities are read again after
 * STARTTLS and after login (what a server offers before either is not to be trusted). */
#include "imap_session.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[IMAP_S_COUNT] = {
    "greeting", "capability", "starttls", "tls_wait", "auth", "capability2", "ready", "done",
};

static const char *const outcome_names[IMAP_OUT_COUNT] = {
    "none", "ok", "auth", "tls", "unavailable", "protocol", "throttled",
};

const char *imap_state_name(int state)
{
    return state >= 0 && state < IMAP_S_COUNT ? state_names[state] : "invalid";
}

const char *imap_outcome_name(int outcome)
{
    return outcome >= 0 && outcome < IMAP_OUT_COUNT ? outcome_names[outcome] : "invalid";
}

void imap_session_init(imap_session *s, const imap_session_params *p)
{
    memset(s, 0, sizeof *s);
    s->params = *p;
    s->state = IMAP_S_GREETING;
    s->tls_active = p->security == IMAP_SEC_TLS;
    s->auth_mech = -1;
    imap_resp_parser_init(&s->parser, NULL);
    imap_cmdgen_init(&s->gen);
    imap_cmd_init(&s->cmd);
    buf_init(&s->out);
}

void imap_session_clear(imap_session *s)
{
    imap_resp_parser_free(&s->parser);
    imap_cmd_free(&s->cmd);
    buf_free(&s->out);
}

buf *imap_session_output(imap_session *s)
{
    return &s->out;
}

static void set_detail(imap_session *s, const char *text, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof s->detail; i++) {
        unsigned char c = (unsigned char)text[i];
        s->detail[k++] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
    }
    s->detail[k] = '\0';
}

/* Sends the command just built into s->cmd (up to its first synchronising literal). */
static int send_cmd(imap_session *s, int built, int next_state)
{
    if (built < 0)
        return -1;
    s->cmd_waiting = imap_cmd_take(&s->cmd, &s->out) == IMAP_CMD_WAIT;
    s->state = next_state;
    return IMAP_EV_OUTPUT;
}

/* LOGOUT goes out and the connection closes behind it: the server's BYE and tagged OK
 * are not waited for (RFC 9051 §6.1.3 asks nothing of the client after LOGOUT; Postfix's
 * smtp_skip_quit_response does the same for SMTP's QUIT). The server has the command
 * before our FIN and logs a normal logout; a visit saves a round trip and the wake-ups
 * of reading the answer and the server's close. */
static int logout_and_close(imap_session *s, int outcome)
{
    if (!s->outcome)
        s->outcome = outcome;
    imap_cmd_logout(&s->gen, &s->cmd);
    return send_cmd(s, 0, IMAP_S_DONE) | IMAP_EV_DONE;
}

/* Ends the session with outcome; a LOGOUT goes out first unless the connection is
 * past saving (protocol error, BYE) or the caller must close at once. */
static int finish(imap_session *s, int outcome, const char *why, bool logout)
{
    if (why && !s->detail[0])
        set_detail(s, why, strlen(why));
    if (logout && s->state != IMAP_S_DONE)
        return logout_and_close(s, outcome);
    if (!s->outcome)
        s->outcome = outcome;
    s->state = IMAP_S_DONE;
    return IMAP_EV_DONE;
}

/* Replies can no longer be matched to commands: close at once. An outcome already
 * decided (a refused login whose LOGOUT is answered with garbage) stays. */
static int protocol_error(imap_session *s, const char *why)
{
    buf_reset(&s->out);
    return finish(s, IMAP_OUT_PROTOCOL, why, false);
}

/* After the capabilities of this phase are known: STARTTLS, or the credentials. */
static int after_capability(imap_session *s)
{
    if (s->params.security == IMAP_SEC_STARTTLS && !s->tls_active) {
        if (!(s->caps & IMAP_CAP_STARTTLS))
            return finish(s, IMAP_OUT_TLS, "STARTTLS required and not offered", true);
        imap_cmd_starttls(&s->gen, &s->cmd);
        return send_cmd(s, 0, IMAP_S_STARTTLS);
    }
    if (!s->tls_active && !s->params.allow_plaintext_auth)
        return finish(s, IMAP_OUT_AUTH, "refusing to send credentials without TLS", true);
    s->gen.caps = s->caps;
    const imap_session_params *p = &s->params;
    if (p->oauth_token) {
        imap_auth a = {
            .user = p->username, .secret = p->oauth_token, .host = p->host, .port = p->port};
        if (s->caps & IMAP_CAP_AUTH_OAUTHBEARER)
            a.mech = IMAP_SASL_OAUTHBEARER;
        else if (s->caps & IMAP_CAP_AUTH_XOAUTH2)
            a.mech = IMAP_SASL_XOAUTH2;
        else
            return finish(s, IMAP_OUT_AUTH, "server offers no OAuth mechanism", true);
        s->auth_mech = a.mech;
        if (send_cmd(s, imap_cmd_authenticate(&s->gen, &s->cmd, &a), IMAP_S_AUTH) < 0)
            return finish(s, IMAP_OUT_AUTH, "credentials hold characters IMAP cannot carry", true);
        return IMAP_EV_OUTPUT;
    }
    int built;
    if (s->caps & IMAP_CAP_LOGINDISABLED) {
        if (!(s->caps & IMAP_CAP_AUTH_PLAIN))
            return finish(s, IMAP_OUT_AUTH, "LOGINDISABLED and no AUTH=PLAIN", true);
        imap_auth a = {.mech = IMAP_SASL_PLAIN, .user = p->username, .secret = p->password};
        s->auth_mech = IMAP_SASL_PLAIN;
        built = imap_cmd_authenticate(&s->gen, &s->cmd, &a);
    } else {
        s->auth_mech = -1;
        built = imap_cmd_login(&s->gen, &s->cmd, p->username, p->password);
    }
    if (send_cmd(s, built, IMAP_S_AUTH) < 0)
        return finish(s, IMAP_OUT_AUTH, "credentials hold characters IMAP cannot carry", true);
    return IMAP_EV_OUTPUT;
}

/* Lowercase needles; Outlook's churn errors end a session it just accepted. */
static const char *const throttle_words[] = {
    "throttl",
    "too many connections",
    "too many simultaneous",
    "user is authenticated but not connected",
    "server unavailable. 15",
    "connection is closed. 13",
    "connection is closed. 14",
};

static bool contains_ci(const char *text, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && (char)tolower((unsigned char)text[i + j]) == needle[j])
            j++;
        if (j == k)
            return true;
    }
    return false;
}

bool imap_text_is_throttle(const char *text, size_t n)
{
    for (size_t i = 0; text && i < sizeof throttle_words / sizeof throttle_words[0]; i++)
        if (contains_ci(text, n, throttle_words[i]))
            return true;
    return false;
}

int imap_refusal_outcome(const imap_resp *r, int otherwise)
{
    if (r->code.code == IMAP_CODE_THROTTLED || imap_text_is_throttle(r->text, r->text_len))
        return IMAP_OUT_THROTTLED;
    if (r->code.code == IMAP_CODE_UNAVAILABLE)
        return IMAP_OUT_UNAVAILABLE;
    return otherwise;
}

static int on_tagged(imap_session *s, const imap_resp *r)
{
    bool ok = r->status == IMAP_STATUS_OK;
    if (r->caps)
        s->caps = r->caps; /* [CAPABILITY ...] in the tagged OK */
    switch (s->state) {
    case IMAP_S_CAPABILITY:
        if (!ok || !s->caps_fresh)
            return protocol_error(s, "CAPABILITY not answered with a list");
        return after_capability(s);
    case IMAP_S_STARTTLS:
        if (!ok) {
            set_detail(s, r->text, r->text_len);
            return finish(s, IMAP_OUT_TLS, NULL, true);
        }
        s->state = IMAP_S_TLS_WAIT;
        return IMAP_EV_STARTTLS;
    case IMAP_S_AUTH:
        if (!ok) {
            set_detail(s, r->text, r->text_len);
            return finish(s, imap_refusal_outcome(r, IMAP_OUT_AUTH), NULL, true);
        }
        /* a list in the login's OK is the one after login (Dovecot sends it): no
         * CAPABILITY round trip; without one, ask (the list before login does not count) */
        if (r->caps) {
            s->gen.caps = s->caps;
            s->state = IMAP_S_READY;
            return IMAP_EV_READY;
        }
        s->caps_fresh = false;
        if (s->cap_tag[0]) { /* already on its way behind the LOGIN */
            memcpy(s->cmd.tag, s->cap_tag, sizeof s->cmd.tag);
            s->cap_tag[0] = '\0';
            s->state = IMAP_S_CAPABILITY2;
            return 0;
        }
        imap_cmd_capability(&s->gen, &s->cmd);
        return send_cmd(s, 0, IMAP_S_CAPABILITY2);
    case IMAP_S_CAPABILITY2:
        if (!ok || !s->caps_fresh)
            return protocol_error(s, "CAPABILITY not answered with a list");
        s->gen.caps = s->caps;
        s->state = IMAP_S_READY;
        return IMAP_EV_READY;
    default:
        return protocol_error(s, "tagged answer in a state that sent no command");
    }
}

static int on_greeting(imap_session *s, const imap_resp *r)
{
    if (r->kind != IMAP_RESP_UNTAGGED || r->data != IMAP_DATA_NONE)
        return protocol_error(s, "no greeting");
    if (r->status == IMAP_STATUS_BYE) {
        set_detail(s, r->text, r->text_len);
        return finish(s, imap_refusal_outcome(r, IMAP_OUT_UNAVAILABLE), NULL, false);
    }
    s->caps = r->caps;
    if (r->status == IMAP_STATUS_PREAUTH) {
        /* logged in already: over plaintext with STARTTLS required, TLS can never come */
        if (s->params.security == IMAP_SEC_STARTTLS && !s->tls_active)
            return finish(s, IMAP_OUT_TLS, "PREAUTH over plaintext where TLS is required", true);
        s->caps_fresh = false;
        imap_cmd_capability(&s->gen, &s->cmd);
        return send_cmd(s, 0, IMAP_S_CAPABILITY2);
    }
    if (r->status != IMAP_STATUS_OK)
        return protocol_error(s, "greeting is not OK, PREAUTH or BYE");
    if (r->code.code == IMAP_CODE_CAPABILITY)
        return after_capability(s);
    imap_cmd_capability(&s->gen, &s->cmd);
    return send_cmd(s, 0, IMAP_S_CAPABILITY);
}

static int on_continue(imap_session *s)
{
    if (s->cmd_waiting) {
        s->cmd_waiting = imap_cmd_take(&s->cmd, &s->out) == IMAP_CMD_WAIT;
        return IMAP_EV_OUTPUT;
    }
    if (s->state == IMAP_S_AUTH && s->auth_mech >= 0) {
        /* a SASL challenge after the whole response: an error report (XOAUTH2,
         * OAUTHBEARER) the server wants answered before its NO */
        imap_cmd_sasl_error_reply(s->auth_mech, &s->out);
        return IMAP_EV_OUTPUT;
    }
    return protocol_error(s, "continuation no command asked for");
}

static int on_resp(imap_session *s, const imap_resp *r)
{
    if (s->state == IMAP_S_GREETING)
        return on_greeting(s, r);
    if (r->kind == IMAP_RESP_CONTINUE)
        return on_continue(s);
    if (r->kind == IMAP_RESP_TAGGED) {
        if (strcmp(r->tag, s->cmd.tag) != 0)
            return protocol_error(s, "tagged answer for a command never sent");
        return on_tagged(s, r);
    }
    if (r->status == IMAP_STATUS_BYE) {
        set_detail(s, r->text, r->text_len);
        return finish(s, imap_refusal_outcome(r, IMAP_OUT_UNAVAILABLE), NULL, false);
    }
    if (r->data == IMAP_DATA_CAPABILITY) {
        s->caps = r->caps;
        s->caps_fresh = true;
    }
    return 0;
}

static int feed(imap_session *s, const char *data, size_t n, size_t *consumed, bool to_ready)
{
    int ev = 0;
    size_t off = 0;
    while (off < n && s->state != IMAP_S_DONE && !(to_ready && s->state == IMAP_S_READY)) {
        if (s->state == IMAP_S_TLS_WAIT)
            break; /* RFC 3501 §6.2.1: nothing sent in plaintext after the OK counts */
        size_t used = 0;
        const imap_resp *r = NULL;
        int rc = imap_resp_feed(&s->parser, data + off, n - off, &used, &r);
        off += used;
        if (rc == IMAP_RESP_ERROR) {
            *consumed = n;
            return protocol_error(s, s->parser.error);
        }
        if (rc == IMAP_RESP_NEED_MORE)
            break;
        ev |= on_resp(s, r);
        imap_resp_release(&s->parser);
    }
    *consumed = off;
    if (s->state == IMAP_S_DONE)
        ev = (ev & IMAP_EV_OUTPUT) | IMAP_EV_DONE;
    return ev;
}

int imap_session_feed(imap_session *s, const char *data, size_t n)
{
    size_t consumed;
    return feed(s, data, n, &consumed, false);
}

int imap_session_feed_to_ready(imap_session *s, const char *data, size_t n, size_t *consumed)
{
    return feed(s, data, n, consumed, true);
}

int imap_session_tls_ready(imap_session *s)
{
    if (s->state != IMAP_S_TLS_WAIT)
        return protocol_error(s, "TLS ready outside STARTTLS");
    s->tls_active = true;
    s->caps = 0;
    s->caps_fresh = false;
    /* the parser may hold a partial plaintext line: it must not survive into TLS */
    imap_resp_parser_free(&s->parser);
    imap_resp_parser_init(&s->parser, NULL);
    imap_cmd_capability(&s->gen, &s->cmd);
    return send_cmd(s, 0, IMAP_S_CAPABILITY);
}

int imap_session_logout(imap_session *s)
{
    if (s->state != IMAP_S_READY)
        return 0;
    return logout_and_close(s, IMAP_OUT_OK);
}

void imap_session_eof(imap_session *s)
{
    if (s->state == IMAP_S_DONE)
        return;
    if (!s->outcome) {
        s->outcome = IMAP_OUT_UNAVAILABLE;
        const char *why = "connection closed by the server";
        set_detail(s, why, strlen(why));
    }
    s->state = IMAP_S_DONE;
}
