/* The IMAP servers the inbox engine talks to, keyed by host name: each one's limits
 * (net/host_limits: connection cap, connect rate, breaker, pause) and the inboxes
 * waiting for room there. A short list: a few providers serve most inboxes. */
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
