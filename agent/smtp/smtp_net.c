/* The SMTP session behind net's session interface (see smtp_net.h). */
#include "smtp_net.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* SMTP's events are net's: the session's output, STARTTLS, done, and the gate. */
_Static_assert((int)SMTP_EV_OUTPUT == (int)NET_EV_OUTPUT &&
                   (int)SMTP_EV_STARTTLS == (int)NET_EV_STARTTLS &&
                   (int)SMTP_EV_DONE == (int)NET_EV_DONE && (int)SMTP_EV_GATE == (int)NET_EV_HOLD,
               "smtp_event and net_ev disagree");

/* A payload buffer that grew past this (a big message) is not kept for the next
 * session. */
#define PAYLOAD_KEEP 16384

void smtp_net_begin(smtp_net *sm, size_t n)
{
    sm->slots = xcalloc(n, sizeof *sm->slots);
    sm->nslots = n;
    sm->gated = false;
    /* payload keeps its storage from the entry's last session */
}

void smtp_net_add(smtp_net *sm, size_t k, const smtp_message *m, buf *scratch)
{
    buf_reset(scratch);
    smtp_message_build(m, scratch);
    size_t at = sm->payload.len;
    smtp_dot_stuff(scratch->data, scratch->len, &sm->payload);
    sm->slots[k].rcpt = m->to_addr;
    sm->slots[k].payload_len = sm->payload.len - at; /* placed by smtp_net_start */
}

void smtp_net_start(smtp_net *sm, const smtp_session_params *p, const int64_t *timeout_ms,
                    const smtp_net_hooks *hooks, void *owner)
{
    size_t at = 0; /* the buffer may have moved while it grew: point into it now */
    for (size_t k = 0; k < sm->nslots; k++) {
        sm->slots[k].payload = sm->payload.data + at;
        at += sm->slots[k].payload_len;
    }
    sm->timeout_ms = timeout_ms;
    sm->hooks = hooks;
    sm->owner = owner;
    smtp_session_init(&sm->smtp, p, sm->slots, sm->nslots);
    sm->settled_state = sm->smtp.state;
}

void smtp_net_clear(smtp_net *sm)
{
    smtp_session_clear(&sm->smtp);
    free(sm->slots);
    sm->slots = NULL;
    sm->nslots = 0;
    if (sm->payload.cap > PAYLOAD_KEEP)
        buf_free(&sm->payload);
    else
        buf_reset(&sm->payload);
}

void smtp_net_dispose(smtp_net *sm)
{
    if (sm->slots)
        smtp_session_clear(&sm->smtp);
    free(sm->slots);
    sm->slots = NULL;
    buf_free(&sm->payload);
}

int smtp_net_gate_open(smtp_net *sm, bool ok, int64_t now_ms)
{
    sm->gated = false;
    int ev = ok && now_ms >= sm->hooks->start_limit_ms(sm->owner)
                 ? smtp_session_payload_go(
                       &sm->smtp, false, "not sent: lease deadline reached before the data", now_ms)
                 : smtp_session_payload_go(
                       &sm->smtp, ok, "not sent: the spool could not record the intent", now_ms);
    if (!ok)
        ev |= NET_EV_HOST_OK; /* our disk, not the host's fault */
    return ev;
}

static int on_connected(void *s, int64_t now_ms)
{
    smtp_net *sm = s;
    return sm->smtp.params.security == SMTP_SEC_TLS ? NET_EV_STARTTLS : 0;
}

static int on_feed(void *s, const char *data, size_t n, bool out_pending, int64_t now_ms)
{
    smtp_net *sm = s;
    sm->smtp.out_pending = out_pending;
    return smtp_session_feed(&sm->smtp, data, n, now_ms);
}

static int on_tls_ready(void *s, int64_t now_ms)
{
    smtp_net *sm = s;
    /* implicit TLS: nothing to do, the greeting comes next */
    return sm->smtp.state == SMTP_S_TLS_WAIT ? smtp_session_tls_ready(&sm->smtp) : 0;
}

/* The start limit, checked where a message could begin: a new transaction, and a
 * payload the server waits for. */
static int on_settle(void *s, int ev, int64_t now_ms)
{
    smtp_net *sm = s;
    int keep = ev & NET_EV_HOST_OK;
    int prev = sm->settled_state;
    int st = sm->smtp.state;
    sm->settled_state = st;
    int64_t limit = sm->hooks->start_limit_ms(sm->owner);
    if (st == SMTP_S_MAIL && prev != SMTP_S_MAIL && now_ms >= limit) {
        /* a new transaction would begin too close to the lease end: nothing of it
         * has left yet, so its slots (and the ones after it) are simply not sent */
        buf_reset(smtp_session_output(&sm->smtp));
        smtp_session_abort(&sm->smtp, SMTP_ST_DEFERRED, "not sent: lease deadline reached", now_ms);
        sm->settled_state = sm->smtp.state;
        return NET_EV_CLOSE | NET_EV_HOST_OK;
    }
    if ((ev & SMTP_EV_GATE) && !sm->gated && (now_ms >= limit || !sm->hooks->gate)) {
        /* the server waits for the data: no payload starts past the limit */
        bool go = now_ms < limit;
        if (!go)
            keep |= NET_EV_HOST_OK;
        ev = smtp_session_payload_go(&sm->smtp, go,
                                     "not sent: lease deadline reached before the data", now_ms);
        sm->settled_state = sm->smtp.state;
    }
    return ev | keep;
}

static buf *on_output(void *s)
{
    smtp_net *sm = s;
    return smtp_session_output(&sm->smtp);
}

static void on_phase(const void *s, net_phase *out)
{
    const smtp_net *sm = s;
    int st = sm->smtp.state;
    out->id = st;
    out->name = smtp_state_name(st);
    out->timeout_ms = sm->timeout_ms[st];
    out->upload = st == SMTP_S_DOT;
}

static void on_hold(void *s)
{
    smtp_net *sm = s;
    if (sm->gated || !sm->hooks->gate)
        return;
    sm->gated = true;
    sm->hooks->gate(sm->owner, sm->smtp.cur);
}

/* The session layer makes a message whose final dot went out `unknown` (the server
 * may have accepted it; never retried); it cannot see net's buffers, so a message
 * whose dot never left them, which cannot exist at the server, is `deferred`. */
static void on_abort(void *s, int fault, const char *detail, bool unsent, int64_t now_ms)
{
    smtp_net *sm = s;
    smtp_session *ss = &sm->smtp;
    bool eof = fault == NET_FAULT_EOF;
    bool in_dot = ss->state == SMTP_S_DOT && ss->cur < ss->nslots &&
                  sm->slots[ss->cur].status == SMTP_ST_PENDING;
    smtp_slot *cur = in_dot ? &sm->slots[ss->cur] : NULL;
    if (eof)
        smtp_session_eof(ss, now_ms);
    else
        smtp_session_abort(ss, fault == NET_FAULT_TLS ? SMTP_ST_TLS : SMTP_ST_DEFERRED, detail,
                           now_ms);
    if (in_dot && unsent && cur->status == SMTP_ST_UNKNOWN) {
        cur->status = SMTP_ST_DEFERRED;
        snprintf(cur->detail, sizeof cur->detail, "%s (message not fully sent)",
                 eof ? "connection closed by server" : detail);
    }
}

const net_session_ops smtp_net_ops = {
    .connected = on_connected,
    .feed = on_feed,
    .tls_ready = on_tls_ready,
    .settle = on_settle,
    .output = on_output,
    .phase = on_phase,
    .hold = on_hold,
    .abort = on_abort,
};
