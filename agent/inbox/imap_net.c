/* The IMAP session behind net's session interface (see imap_net.h). */
#include "imap_net.h"

#include <stdio.h>
#include <string.h>

/* IMAP's output, STARTTLS and done are net's; READY is this adapter's business and
 * never reaches net/ (its bit is net's HOLD). */
_Static_assert((int)IMAP_EV_OUTPUT == (int)NET_EV_OUTPUT &&
                   (int)IMAP_EV_STARTTLS == (int)NET_EV_STARTTLS &&
                   (int)IMAP_EV_DONE == (int)NET_EV_DONE,
               "imap_event and net_ev disagree");

#define NET_EVS (NET_EV_OUTPUT | NET_EV_STARTTLS | NET_EV_DONE)

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

static void reset(imap_net *n, const imap_net_hooks *hooks, void *owner)
{
    n->ib = NULL;
    n->s_live = false;
    n->hooks = hooks;
    n->owner = owner;
    n->logged_in = n->wake = n->ended = n->aborted = n->starttls = false;
    n->fault = NET_FAULT_IO;
    n->state_at_end = 0;
    n->wakes = 0;
    n->detail[0] = '\0';
}

static void on_inbox_event(void *ctx, const imap_inbox_event *ev)
{
    imap_net *n = ctx;
    if (ev->type == IMAP_INBOX_EV_WAKE) {
        n->wake = true;
        return;
    }
    if (ev->type == IMAP_INBOX_EV_LOGGED_IN)
        n->logged_in = true;
    n->hooks->event(n->owner, n, ev);
}

bool imap_net_start_inbox(imap_net *n, const imap_session_params *p, const imap_inbox_job *job,
                          const imap_net_hooks *hooks, void *owner)
{
    reset(n, hooks, owner);
    n->security = p->security;
    n->ib = imap_inbox_new(p, job, on_inbox_event, n);
    return n->ib != NULL;
}

void imap_net_start_login(imap_net *n, const imap_session_params *p, int64_t greeting_ms,
                          int64_t command_ms, const imap_net_hooks *hooks, void *owner)
{
    reset(n, hooks, owner);
    n->security = p->security;
    imap_session_init(&n->s, p);
    n->s_live = true;
    n->greeting_ms = greeting_ms;
    n->login_ms = command_ms;
}

void imap_net_clear(imap_net *n)
{
    if (n->ib)
        imap_inbox_free(n->ib);
    n->ib = NULL;
    if (n->s_live)
        imap_session_clear(&n->s);
    n->s_live = false;
}

/* The bare login's events: logging in means LOGOUT at once. */
static int login_step(imap_net *n, int ev)
{
    if (ev & IMAP_EV_READY) {
        n->logged_in = true;
        imap_inbox_event li = {.type = IMAP_INBOX_EV_LOGGED_IN};
        n->hooks->event(n->owner, n, &li);
        ev |= imap_session_logout(&n->s);
    }
    return ev;
}

/* After a step: a WAKE is answered (DONE, fetch, IDLE again). */
static int after(imap_net *n, int ev, int64_t now_ms)
{
    if (n->wake && n->ib) {
        n->wake = false;
        n->wakes++;
        ev |= imap_inbox_wake(n->ib, now_ms);
    }
    if (ev & IMAP_EV_DONE)
        n->ended = true;
    if (ev & IMAP_EV_STARTTLS)
        n->starttls = true;
    return ev & NET_EVS;
}

static int on_connected(void *sess, int64_t now_ms)
{
    imap_net *n = sess;
    (void)now_ms;
    return n->security == IMAP_SEC_TLS ? NET_EV_STARTTLS : 0;
}

static int on_feed(void *sess, const char *data, size_t len, bool out_pending, int64_t now_ms)
{
    (void)out_pending; /* IMAP commands are small; a tagged answer names its command */
    imap_net *n = sess;
    int ev = n->ib ? imap_inbox_feed(n->ib, data, len, now_ms)
                   : login_step(n, imap_session_feed(&n->s, data, len));
    return after(n, ev, now_ms);
}

static int on_tls_ready(void *sess, int64_t now_ms)
{
    imap_net *n = sess;
    /* implicit TLS: nothing to do, the greeting comes next */
    if (!n->starttls)
        return 0;
    n->starttls = false;
    if (n->ib)
        return after(n, imap_inbox_tls_ready(n->ib, now_ms), now_ms);
    return after(n, login_step(n, imap_session_tls_ready(&n->s)), now_ms);
}

static int outcome(const imap_net *n)
{
    return n->ib ? imap_inbox_outcome(n->ib) : n->s.outcome;
}

static int on_settle(void *sess, int ev, int64_t now_ms)
{
    imap_net *n = sess;
    /* a server that answered the login is alive whatever it said (the breaker) */
    if (n->logged_in || outcome(n) == IMAP_OUT_AUTH)
        ev |= NET_EV_HOST_OK;
    if (!n->ended)
        ev |= after(n, n->hooks->stepped(n->owner, n, now_ms), now_ms);
    return ev;
}

static buf *on_output(void *sess)
{
    imap_net *n = sess;
    return n->ib ? imap_inbox_output(n->ib) : imap_session_output(&n->s);
}

static void on_phase(const void *sess, net_phase *out)
{
    const imap_net *n = sess;
    if (n->ib) {
        imap_inbox_phase(n->ib, out);
        return;
    }
    out->id = n->s.state;
    out->name = imap_state_name(n->s.state);
    out->timeout_ms = n->s.state == IMAP_S_GREETING ? n->greeting_ms : n->login_ms;
    out->upload = false;
}

static void on_hold(void *sess)
{
    (void)sess; /* the IMAP session never holds */
}

static void on_abort(void *sess, int fault, const char *detail, bool unsent, int64_t now_ms)
{
    imap_net *n = sess;
    (void)unsent;
    (void)now_ms;
    if (n->ended)
        return;
    n->ended = n->aborted = true;
    n->fault = fault;
    n->state_at_end = n->ib ? imap_inbox_state(n->ib) : n->s.state;
    snprintf(n->detail, sizeof n->detail, "%s",
             detail ? detail : "connection closed by the server");
    if (fault == NET_FAULT_EOF) {
        if (n->ib)
            imap_inbox_eof(n->ib);
        else
            imap_session_eof(&n->s);
    }
}

int imap_net_status(const imap_net *n, const char **detail)
{
    const char *sd = n->ib ? imap_inbox_detail(n->ib) : n->s.detail;
    *detail = sd && sd[0] ? sd : n->detail;
    if (n->logged_in)
        return IMAP_NET_OK;
    switch (outcome(n)) {
    case IMAP_OUT_AUTH:
        return IMAP_NET_AUTH;
    case IMAP_OUT_TLS:
        return IMAP_NET_TLS;
    case IMAP_OUT_PROTOCOL:
        return IMAP_NET_PROTOCOL;
    case IMAP_OUT_THROTTLED:
        return IMAP_NET_THROTTLED;
    case IMAP_OUT_UNAVAILABLE:
        /* closed before a word: as good as refused */
        if (n->aborted && n->fault == NET_FAULT_EOF) {
            *detail = n->detail;
            return IMAP_NET_CONNECT;
        }
        return IMAP_NET_THROTTLED;
    default:
        break;
    }
    if (n->aborted && n->fault == NET_FAULT_TLS)
        return IMAP_NET_TLS;
    *detail = n->detail[0] ? n->detail : *detail;
    return IMAP_NET_CONNECT;
}

bool imap_net_clean_end(const imap_net *n)
{
    return outcome(n) == IMAP_OUT_OK && !n->aborted;
}

bool imap_net_dropped(const imap_net *n)
{
    return n->aborted;
}

int imap_net_tick(imap_net *n, int64_t now_ms)
{
    return n->ib ? imap_inbox_tick(n->ib, now_ms) : 0;
}

int imap_net_stop(imap_net *n, int64_t now_ms)
{
    return n->ib ? imap_inbox_stop(n->ib, now_ms) : 0; /* a bare login logs out itself */
}

int64_t imap_net_next_tick_ms(const imap_net *n)
{
    return n->ib ? imap_inbox_next_tick_ms(n->ib) : INT64_MAX;
}

bool imap_net_idling(const imap_net *n)
{
    return n->ib && imap_inbox_state(n->ib) == IMAP_IB_IDLING;
}

bool imap_net_kept(const imap_net *n)
{
    return n->ib && imap_inbox_state(n->ib) == IMAP_IB_KEPT;
}

int imap_net_visit(imap_net *n, int64_t now_ms)
{
    return n->ib ? imap_inbox_visit(n->ib, now_ms) : 0;
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
