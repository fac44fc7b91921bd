/* The IMAP session behind net's session interface (see imap_net.h). */
#include "imap_net.h"

#include <stdio.h>
#include <string.h>

/* IMAP's output, STARTTLS and done are net's; READY is the owner's business and never
 * reaches net/ (its bit is net's HOLD). */
_Static_assert((int)IMAP_EV_OUTPUT == (int)NET_EV_OUTPUT &&
                   (int)IMAP_EV_STARTTLS == (int)NET_EV_STARTTLS &&
                   (int)IMAP_EV_DONE == (int)NET_EV_DONE,
               "imap_event and net_ev disagree");

static const char *const status_names[IMAP_NET_STATUS_COUNT] = {
    [IMAP_NET_OK] = "ok",
    [IMAP_NET_AUTH] = "auth",
    [IMAP_NET_TLS] = "tls",
    [IMAP_NET_CONNECT] = "connect",
    [IMAP_NET_THROTTLED] = "throttled",
    [IMAP_NET_PROTOCOL] = "protocol",
};

const char *imap_net_status_name(int status)
{
    return status >= 0 && status < IMAP_NET_STATUS_COUNT ? status_names[status] : "protocol";
}

int imap_net_events(int imap_ev)
{
    return imap_ev & (NET_EV_OUTPUT | NET_EV_STARTTLS | NET_EV_DONE);
}

void imap_net_start(imap_net *n, const imap_session_params *p, const int64_t *timeout_ms,
                    const imap_net_hooks *hooks, void *owner)
{
    imap_session_init(&n->s, p);
    n->timeout_ms = timeout_ms;
    n->hooks = hooks;
    n->owner = owner;
    n->logged_in = n->ended = n->aborted = false;
    n->fault = NET_FAULT_IO;
    n->detail[0] = '\0';
}

void imap_net_clear(imap_net *n)
{
    imap_session_clear(&n->s);
}

/* The session's events after a step; logging in hands over to the owner. */
static int after_step(imap_net *n, int ev, int64_t now_ms)
{
    if (ev & IMAP_EV_READY) {
        n->logged_in = true;
        ev = (ev & ~IMAP_EV_READY) | n->hooks->ready(n->owner, n, now_ms);
    }
    if (ev & IMAP_EV_DONE)
        n->ended = true;
    return imap_net_events(ev);
}

static int on_connected(void *s, int64_t now_ms)
{
    imap_net *n = s;
    (void)now_ms;
    return n->s.params.security == IMAP_SEC_TLS ? NET_EV_STARTTLS : 0;
}

static int on_feed(void *s, const char *data, size_t len, int64_t now_ms)
{
    imap_net *n = s;
    return after_step(n, imap_session_feed(&n->s, data, len), now_ms);
}

static int on_tls_ready(void *s, int64_t now_ms)
{
    imap_net *n = s;
    /* implicit TLS: nothing to do, the greeting comes next */
    if (n->s.state != IMAP_S_TLS_WAIT)
        return 0;
    return after_step(n, imap_session_tls_ready(&n->s), now_ms);
}

static int on_settle(void *s, int ev, int64_t now_ms)
{
    imap_net *n = s;
    (void)now_ms;
    /* a server that answered LOGIN is alive whatever it said (the breaker) */
    if (n->s.state >= IMAP_S_AUTH || n->s.outcome == IMAP_OUT_AUTH)
        ev |= NET_EV_HOST_OK;
    return ev;
}

static buf *on_output(void *s)
{
    imap_net *n = s;
    return imap_session_output(&n->s);
}

static void on_phase(const void *s, net_phase *out)
{
    const imap_net *n = s;
    int st = n->s.state;
    out->id = st;
    out->name = imap_state_name(st);
    out->timeout_ms = n->timeout_ms[st];
    out->upload = false;
}

static void on_hold(void *s)
{
    (void)s; /* the IMAP session never holds */
}

static void on_abort(void *s, int fault, const char *detail, bool unsent, int64_t now_ms)
{
    imap_net *n = s;
    (void)unsent;
    (void)now_ms;
    if (n->ended)
        return;
    n->ended = n->aborted = true;
    n->fault = fault;
    n->state_at_end = n->s.state;
    snprintf(n->detail, sizeof n->detail, "%s",
             detail ? detail : "connection closed by the server");
    if (fault == NET_FAULT_EOF)
        imap_session_eof(&n->s);
}

int imap_net_status(const imap_net *n, const char **detail)
{
    const char *why = n->s.detail[0] ? n->s.detail : n->detail;
    *detail = why;
    switch (n->s.outcome) {
    case IMAP_OUT_AUTH:
        return IMAP_NET_AUTH;
    case IMAP_OUT_TLS:
        return IMAP_NET_TLS;
    case IMAP_OUT_PROTOCOL:
        return IMAP_NET_PROTOCOL;
    case IMAP_OUT_UNAVAILABLE:
        /* a server that closes after a login went well is not refusing us */
        if (n->logged_in)
            return IMAP_NET_OK;
        /* closed before a word: as good as refused */
        return n->aborted && n->state_at_end == IMAP_S_GREETING ? IMAP_NET_CONNECT
                                                                 : IMAP_NET_THROTTLED;
    default:
        break;
    }
    if (n->logged_in)
        return IMAP_NET_OK;
    if (n->aborted && n->fault == NET_FAULT_TLS)
        return IMAP_NET_TLS;
    *detail = n->detail[0] ? n->detail : why;
    return IMAP_NET_CONNECT;
}

const net_session_ops imap_net_ops = {
    .connected = on_connected,
    .feed = on_feed,
    .tls_ready = on_tls_ready,
    .settle = on_settle,
    .output = on_output,
    .phase = on_phase,
    .hold = on_hold,
    .abort = on_abort,
};
