/* One inbox's life in the engine (inbox_internal.h): its timer fires, its server's name
 * is resolved (never blocking: the resolver thread answers through the loop's
 * eventfd), its server's limits admit a connection (or it queues), the IMAP session
 * runs over net/, and when the connection is over the next poll is scheduled: the
 * poll interval after a good pass, a backoff with jitter after a failure, and a pause
 * for the whole server when it said [THROTTLED] or BYE. */
#include "inbox_internal.h"

#include "log.h"
#include "rand.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[IB_STATE_COUNT] = {
    "waiting", "backoff", "resolving", "queued", "connecting", "active", "idle", "done"};

const char *inbox_state_name(int state)
{
    return state >= 0 && state < IB_STATE_COUNT ? state_names[state] : "?";
}

/* The one place an inbox changes state; a move the design does not have is a bug. */
void inbox_enter(inbox_engine *e, inbox *ib, int state)
{
    bool ok;
    switch (state) {
    case IB_WAIT:
    case IB_BACKOFF: /* after a connection, a failed lookup, a shaper's wait; or an
                        inbox handed over again */
        ok = true;
        break;
    case IB_RESOLVE:
    case IB_QUEUED:
        ok = ib->state == IB_WAIT || ib->state == IB_BACKOFF || ib->state == IB_RESOLVE ||
             ib->state == IB_QUEUED;
        break;
    case IB_CONNECTING:
        ok = ib->state == IB_WAIT || ib->state == IB_BACKOFF || ib->state == IB_RESOLVE ||
             ib->state == IB_QUEUED;
        break;
    case IB_ACTIVE:
        ok = ib->state == IB_CONNECTING || ib->state == IB_IDLE || ib->state == IB_ACTIVE;
        break;
    case IB_IDLE:
        ok = ib->state == IB_ACTIVE;
        break;
    case IB_DONE:
        ok = true;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        log_error("inbox %lld: no move from state %s to %s", (long long)ib->spec->mailbox_id,
                  inbox_state_name(ib->state), inbox_state_name(state));
        abort();
    }
    atomic_fetch_sub(&e->by_state[ib->state], 1);
    atomic_fetch_add(&e->by_state[state], 1);
    ib->state = state;
}

/* Waits until at_ms in state (IB_WAIT or IB_BACKOFF). An earlier entry of the heap for
 * this inbox is recognised when it pops (timer_ms moved) and dropped. */
void inbox_arm(inbox_engine *e, inbox *ib, int state, int64_t at_ms)
{
    inbox_enter(e, ib, state);
    ib->timer_ms = at_ms;
    ib->timer_armed = true;
    timer_heap_push(&e->timers, at_ms, ib);
}

void inbox_emit(inbox_engine *e, const inbox_event *ev)
{
    if (e->fn)
        e->fn(e->fn_arg, ev);
}

static void emit_session(inbox_engine *e, inbox *ib, int status, const char *detail)
{
    atomic_fetch_add(&e->sessions[status], 1);
    if (status == ib->last_status)
        return; /* sent on the first login and whenever the outcome changes */
    ib->last_status = status;
    inbox_event ev = {.type = INBOX_EV_SESSION,
                      .mailbox_id = ib->spec->mailbox_id,
                      .status = status,
                      .detail = detail && *detail ? detail : NULL};
    inbox_emit(e, &ev);
}

/* The inbox's pass is over (once) or it is no longer watched. */
static void finish_pass(inbox_engine *e, inbox *ib)
{
    if (!ib->pass_done) {
        ib->pass_done = true;
        atomic_fetch_add(&e->passes_done, 1);
    }
}

static int64_t poll_interval_ms(const inbox_engine *e, const inbox *ib)
{
    if (e->cfg.use_interval && ib->spec->poll_interval_s > 0)
        return ib->spec->poll_interval_s * 1000;
    int c = ib->spec->poll_class;
    return e->cfg.poll_ms[c >= 0 && c < INBOX_POLL_COUNT ? c : INBOX_POLL_MEDIUM];
}

static tls_ctx *ctx_for(inbox_engine *e, const char *ca_file, const char **err)
{
    const char *key = ca_file ? ca_file : "";
    for (size_t i = 0; i < e->nctxs; i++)
        if (!strcmp(e->ctxs[i].ca_file, key)) {
            *err = e->ctxs[i].err;
            return e->ctxs[i].ctx;
        }
    if (e->nctxs == CTX_MAX) {
        *err = "too many CA files in use";
        return NULL;
    }
    size_t k = e->nctxs++;
    e->ctxs[k].ca_file = xstrdup(key);
    e->ctxs[k].ctx = tls_ctx_new(ca_file, e->ctxs[k].err, sizeof e->ctxs[k].err);
    *err = e->ctxs[k].err;
    return e->ctxs[k].ctx;
}

static void queue_push(inbox **head, inbox **tail, inbox *ib)
{
    ib->wait_next = NULL;
    if (*tail)
        (*tail)->wait_next = ib;
    else
        *head = ib;
    *tail = ib;
}

static inbox *queue_pop(inbox **head, inbox **tail)
{
    inbox *ib = *head;
    if (ib) {
        *head = ib->wait_next;
        if (!*head)
            *tail = NULL;
        ib->wait_next = NULL;
    }
    return ib;
}

static int on_ready(void *owner, imap_net *n, int64_t now_ms);
static const imap_net_hooks hooks = {.ready = on_ready};

/* Room at the server and a free connection: the session starts. */
static void start_session(inbox_engine *e, inbox *ib, net_conn *c)
{
    inbox_spec *s = ib->spec;
    const char *tls_err = "";
    tls_ctx *ctx = s->security == INBOX_SEC_PLAIN ? NULL : ctx_for(e, s->ca_file, &tls_err);
    imap_session_params p = {.security = s->security,
                             .username = s->username,
                             .password = s->password,
                             .oauth_token = s->oauth_token,
                             .host = s->host,
                             .port = s->port,
                             .allow_plaintext_auth = s->allow_plaintext_auth};
    imap_net_start(&ib->net, &p, e->timeout_ms, &hooks, ib);
    ib->conn = c;
    e->conns_active++;
    atomic_fetch_add(&e->polls, 1);
    atomic_fetch_add(&ib->srv->connects, 1);
    inbox_enter(e, ib, IB_CONNECTING);
    net_conn_params cp = {
        .dest = &ib->dest, .tls = ctx, .tls_err = tls_err, .ops = &imap_net_ops, .session = &ib->net};
    net_conn_start(&e->loop, c, &cp);
}

/* The server's limits, then a connection of the table. False when the inbox had to
 * wait (queued or timed). */
static bool try_connect(inbox_engine *e, inbox *ib)
{
    if (!e->loop.free_conns) {
        inbox_enter(e, ib, IB_QUEUED);
        queue_push(&e->slot_head, &e->slot_tail, ib);
        return false;
    }
    int64_t rc = host_limits_acquire(ib->srv->limits, 0, e->loop.now_ms);
    if (rc == SHAPER_FULL) {
        inbox_enter(e, ib, IB_QUEUED);
        queue_push(&ib->srv->wait_head, &ib->srv->wait_tail, ib);
        return false;
    }
    if (rc > 0) { /* the connect rate, the breaker or a pause: come back then */
        inbox_arm(e, ib, ib->state == IB_BACKOFF ? IB_BACKOFF : IB_WAIT, e->loop.now_ms + rc);
        return false;
    }
    start_session(e, ib, net_conn_take(&e->loop));
    return true;
}

static void schedule_after(inbox_engine *e, inbox *ib, int status, bool unexpected);

/* Resolves the server's name (cache, or the resolver thread), then try_connect. */
static void begin(inbox_engine *e, inbox *ib)
{
    if (e->stopping) {
        inbox_enter(e, ib, IB_DONE);
        return;
    }
    char err[200];
    int permanent = 0;
    bool was_resolving = ib->state == IB_RESOLVE;
    int rc = resolver_lookup(e->res, ib->spec->host, ib->spec->port, e->loop.efd, e->loop.now_ms,
                             &ib->dest.addrs, &permanent, err, sizeof err);
    if (rc == RESOLVER_PENDING) {
        if (!was_resolving) {
            inbox_enter(e, ib, IB_RESOLVE);
            e->dns_waiting++;
        }
        return;
    }
    if (was_resolving)
        e->dns_waiting--;
    if (rc == RESOLVER_FAILED) {
        emit_session(e, ib, IMAP_NET_CONNECT, err);
        schedule_after(e, ib, IMAP_NET_CONNECT, false);
        return;
    }
    try_connect(e, ib);
}

void inbox_fire(inbox_engine *e, inbox *ib)
{
    if (!ib->timer_armed || ib->timer_ms > e->loop.now_ms)
        return; /* a stale entry: the inbox was re-armed since */
    ib->timer_armed = false;
    if (ib->state == IB_WAIT || ib->state == IB_BACKOFF)
        begin(e, ib);
}

void inbox_retry_dns(inbox_engine *e)
{
    for (size_t i = 0; i < e->ninboxes && e->dns_waiting; i++)
        if (e->inboxes[i]->state == IB_RESOLVE)
            begin(e, e->inboxes[i]);
}

/* Room may have appeared (a connection ended): queued inboxes try again, in order,
 * each queue until one has to wait again. */
void inbox_retry_waiting(inbox_engine *e)
{
    e->kick = false;
    while (e->slot_head && e->loop.free_conns) {
        inbox *ib = queue_pop(&e->slot_head, &e->slot_tail);
        if (e->stopping) {
            inbox_enter(e, ib, IB_DONE);
            continue;
        }
        try_connect(e, ib);
    }
    for (inbox_server *s = e->servers; s; s = s->next)
        while (s->wait_head) {
            inbox *ib = queue_pop(&s->wait_head, &s->wait_tail);
            if (e->stopping) {
                inbox_enter(e, ib, IB_DONE);
                continue;
            }
            if (!try_connect(e, ib) && ib->state == IB_QUEUED)
                break; /* it queued again: no more room here */
        }
}

/* Logged in: the session reports ok, then does the inbox's work. */
static int on_ready(void *owner, imap_net *n, int64_t now_ms)
{
    inbox *ib = owner;
    inbox_engine *e = ib->engine;
    (void)now_ms;
    ib->attempts = 0;
    inbox_enter(e, ib, IB_ACTIVE);
    emit_session(e, ib, IMAP_NET_OK, NULL);
    return imap_session_logout(&n->s);
}

/* What comes after a connection: the next poll, a backoff, or the end. */
static void schedule_after(inbox_engine *e, inbox *ib, int status, bool unexpected)
{
    if (ib->next_spec) {
        inbox_spec_free(ib->spec);
        ib->spec = ib->next_spec;
        ib->next_spec = NULL;
        ib->last_status = -1;
    }
    int64_t now = e->loop.now_ms;
    if (ib->dropped || e->stopping || e->cfg.once) {
        finish_pass(e, ib);
        inbox_enter(e, ib, IB_DONE);
        return;
    }
    finish_pass(e, ib);
    if (status == IMAP_NET_OK && !unexpected) {
        ib->attempts = 0;
        inbox_arm(e, ib, IB_WAIT, now + poll_interval_ms(e, ib));
        return;
    }
    if (ib->attempts < 30)
        ib->attempts++;
    double jitter = (double)random_range(0, 999999) / 1e6;
    int64_t delay = backoff_delay_ms(&e->shaping, ib->attempts, jitter);
    /* refused credentials or a bad certificate do not mend in seconds */
    if ((status == IMAP_NET_AUTH || status == IMAP_NET_TLS) && delay < poll_interval_ms(e, ib))
        delay = poll_interval_ms(e, ib);
    inbox_arm(e, ib, IB_BACKOFF, now + delay);
}

/* ---- net/'s owner ---- */

static int64_t owner_deadline(void *owner, net_conn *c)
{
    inbox_engine *e = owner;
    (void)c;
    return e->stopping ? e->drain_until_ms : INT64_MAX;
}

static bool owner_may_reconnect(void *owner, net_conn *c)
{
    inbox_engine *e = owner;
    (void)c;
    return !e->stopping;
}

static void owner_done(void *owner, net_conn *c, bool host_ok)
{
    inbox_engine *e = owner;
    imap_net *n = c->session;
    inbox *ib = n->owner;
    const char *detail = "";
    int status = imap_net_status(n, &detail);
    int64_t now = e->loop.now_ms;
    host_limits_release(ib->srv->limits, host_ok, now);
    e->kick = true;
    e->conns_active--;
    ib->conn = NULL;
    if (status == IMAP_NET_THROTTLED) {
        atomic_fetch_add(&ib->srv->throttles, 1);
        host_limits_pause(ib->srv->limits, now + e->cfg.throttle_pause_ms);
    } else if (status != IMAP_NET_OK && status != IMAP_NET_AUTH) {
        atomic_fetch_add(&ib->srv->failures, 1);
    }
    /* a session that logged in but did not end with its LOGOUT answered */
    bool unexpected = n->logged_in && n->s.outcome != IMAP_OUT_OK;
    if (status != IMAP_NET_OK)
        emit_session(e, ib, status, detail);
    if (e->cfg.verbose || status != IMAP_NET_OK || unexpected)
        log_info("inbox %lld (%s): session %s%s%s", (long long)ib->spec->mailbox_id,
                 ib->spec->host, imap_net_status_name(status), *detail ? ": " : "", detail);
    imap_net_clear(n);
    schedule_after(e, ib, status, unexpected);
}

static bool owner_woken(void *owner)
{
    inbox_engine *e = owner;
    e->kick = true; /* commands, DNS answers */
    return true;
}

const net_owner_ops inbox_owner_ops = {
    .deadline_ms = owner_deadline,
    .may_reconnect = owner_may_reconnect,
    .done = owner_done,
    .woken = owner_woken,
};

/* The engine stops: an inbox that waits ends now; a session under way finishes. */
void inbox_stop_one(inbox_engine *e, inbox *ib)
{
    switch (ib->state) {
    case IB_WAIT:
    case IB_BACKOFF:
        ib->timer_armed = false;
        inbox_enter(e, ib, IB_DONE);
        break;
    case IB_RESOLVE:
        e->dns_waiting--;
        inbox_enter(e, ib, IB_DONE);
        break;
    default: /* queued ones end when their queue is next looked at */
        break;
    }
}
