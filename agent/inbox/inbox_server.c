/* The IMAP servers the inbox engine talks to, keyed by host name: each one's limits
 * (net/host_limits: connection cap, connect rate, breaker, pause) and the inboxes
 * waiting there, in order. A short list: a few providers serve most inboxes.
 *
 * Admission: an inbox goes behind those already waiting at its server; only the queue's
 * head asks the limits. A head refused for room (the cap) waits for a connection's end
 * (the engine's kick); one refused for a time (a token of the connect rate, the
 * breaker's cooldown, a pause) arms the server's one timer for that time. So a refill
 * wakes one server, which admits its waiters in order, one token each, until the next
 * has to wait: no timer per waiter, no herd. */
#include "inbox_internal.h"

#include "clock.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

inbox_server *inbox_server_get(inbox_engine *e, const char *host)
{
    for (inbox_server *s = e->servers; s; s = s->next)
        if (!strcmp(s->host, host))
            return s;
    inbox_server *s = xcalloc(1, sizeof *s);
    s->host = xstrdup(host);
    /* port 0: the limits hold for the host whatever port an inbox names */
    s->limits = host_table_get(e->hosts, host, 0, e->loop.now_ms);
    pthread_mutex_lock(&e->srv_mu);
    s->next = e->servers;
    e->servers = s;
    pthread_mutex_unlock(&e->srv_mu);
    return s;
}

void inbox_server_free_all(inbox_engine *e)
{
    while (e->servers) {
        inbox_server *s = e->servers;
        e->servers = s->next;
        free(s->host);
        free(s);
    }
}

/* A host name as a label value: printable ASCII without quote or backslash. */
static void label_value(buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c > 0x20 && c < 0x7f && c != '"' && c != '\\';
        char ch = '_';
        if (plain)
            ch = (char)c;
        buf_putc(out, ch);
    }
}

static void server_line(buf *out, const char *name, const char *host, unsigned long long v)
{
    buf_printf(out, "%s{server=\"", name);
    label_value(out, host);
    buf_printf(out, "\"} %llu\n", v);
}

void inbox_server_metrics(inbox_engine *e, buf *out)
{
    static const char *const breaker_names[] = {"closed", "open", "half_open"};
    buf_puts(out, "# HELP kiln_agent_inbox_server_connections IMAP connections open per server.\n"
                  "# TYPE kiln_agent_inbox_server_connections gauge\n"
                  "# HELP kiln_agent_inbox_server_breaker Breaker state per server (1 on the "
                  "current state).\n"
                  "# TYPE kiln_agent_inbox_server_breaker gauge\n"
                  "# HELP kiln_agent_inbox_server_paused 1 while a server's pause "
                  "([THROTTLED], BYE) holds new connections back.\n"
                  "# TYPE kiln_agent_inbox_server_paused gauge\n"
                  "# HELP kiln_agent_inbox_server_connects_total Connections started per "
                  "server.\n"
                  "# TYPE kiln_agent_inbox_server_connects_total counter\n"
                  "# HELP kiln_agent_inbox_server_throttles_total [THROTTLED] or BYE answers "
                  "per server.\n"
                  "# TYPE kiln_agent_inbox_server_throttles_total counter\n"
                  "# HELP kiln_agent_inbox_server_failures_total Connections that failed per "
                  "server (connect, TLS, protocol).\n"
                  "# TYPE kiln_agent_inbox_server_failures_total counter\n");
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&e->srv_mu);
    for (inbox_server *s = e->servers; s; s = s->next) {
        host_limits_view v;
        host_limits_look(s->limits, now, &v);
        server_line(out, "kiln_agent_inbox_server_connections", s->host, (unsigned)v.active);
        for (int b = 0; b < 3; b++) {
            buf_puts(out, "kiln_agent_inbox_server_breaker{server=\"");
            label_value(out, s->host);
            buf_printf(out, "\",state=\"%s\"} %d\n", breaker_names[b], v.breaker == b);
        }
        server_line(out, "kiln_agent_inbox_server_paused", s->host, v.paused);
        server_line(out, "kiln_agent_inbox_server_connects_total", s->host,
                    atomic_load(&s->connects));
        server_line(out, "kiln_agent_inbox_server_throttles_total", s->host,
                    atomic_load(&s->throttles));
        server_line(out, "kiln_agent_inbox_server_failures_total", s->host,
                    atomic_load(&s->failures));
    }
    pthread_mutex_unlock(&e->srv_mu);
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

/* The server's timer at at_ms (an earlier one armed already stands: its head asks the
 * limits again then). */
static void server_arm(inbox_engine *e, inbox_server *s, int64_t at_ms)
{
    if (s->wake_armed && s->wake_ms <= at_ms)
        return;
    s->wake_armed = true;
    s->wake_ms = at_ms;
    timer_heap_push(&e->srv_timers, at_ms, s);
}

/* The limits' answer to the queue's head (or to an inbox with nobody before it): go
 * (counted), or why it waits: room (full) or a time (the server's timer). */
static bool ask_limits(inbox_engine *e, inbox_server *s)
{
    int64_t rc = host_limits_acquire(s->limits, 0, e->loop.now_ms);
    s->full = rc == SHAPER_FULL;
    if (rc > 0)
        server_arm(e, s, e->loop.now_ms + rc);
    return rc == SHAPER_GO;
}

bool inbox_server_admit(inbox_engine *e, inbox *ib)
{
    inbox_server *s = ib->srv;
    if (!e->loop.free_conns) {
        inbox_enter(e, ib, IB_QUEUED);
        queue_push(&e->slot_head, &e->slot_tail, ib);
        return false;
    }
    if (!s->wait_head && ask_limits(e, s)) {
        inbox_start_session(e, ib);
        return true;
    }
    inbox_enter(e, ib, IB_QUEUED);
    queue_push(&s->wait_head, &s->wait_tail, ib);
    s->nwaiting++;
    if (s->full)
        inbox_evict_kept(e, s);
    return false;
}

/* The server's queue, from its head, until one has to wait. */
static void run_queue(inbox_engine *e, inbox_server *s)
{
    while (s->wait_head) {
        inbox *ib = s->wait_head;
        bool gone = e->stopping || ib->dropped;
        if (!gone) {
            if (!e->loop.free_conns)
                break; /* the table is full: a connection's end looks again */
            if (!ask_limits(e, s)) {
                if (s->full)
                    inbox_evict_kept(e, s);
                return;
            }
        }
        queue_pop(&s->wait_head, &s->wait_tail);
        s->nwaiting--;
        if (gone)
            inbox_enter(e, ib, IB_DONE);
        else
            inbox_start_session(e, ib);
    }
    s->full = false;
}

void inbox_retry_waiting(inbox_engine *e)
{
    e->kick = false;
    while (e->slot_head && e->loop.free_conns) {
        inbox *ib = queue_pop(&e->slot_head, &e->slot_tail);
        if (e->stopping || ib->dropped)
            inbox_enter(e, ib, IB_DONE);
        else
            inbox_server_admit(e, ib);
    }
    for (inbox_server *s = e->servers; s; s = s->next)
        if (s->wait_head && (!s->wake_armed || e->stopping))
            run_queue(e, s); /* a head that waits for a time waits for its timer */
}

void inbox_server_fire_due(inbox_engine *e)
{
    while (timer_heap_next_ms(&e->srv_timers) <= e->loop.now_ms) {
        inbox_server *s = timer_heap_pop(&e->srv_timers);
        if (!s->wake_armed || s->wake_ms > e->loop.now_ms)
            continue; /* a stale entry: re-armed since */
        s->wake_armed = false;
        run_queue(e, s);
    }
}
