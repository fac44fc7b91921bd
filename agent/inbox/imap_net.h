/* The IMAP session as net/ drives it (net_session.h), as smtp_net is for SMTP: the
 * login skeleton (imap_session) and, once logged in, whatever the owner asks next.
 * Implicit TLS asks net/ for the handshake at connect; STARTTLS comes from the
 * session. Each state has its own timeout (the whole reply awaited in it). Still no
 * I/O here: net/ moves the bytes, the owner (inbox_engine) decides what an ending
 * means. */
#ifndef KILN_IMAP_NET_H
#define KILN_IMAP_NET_H

#include "imap_session.h"
#include "net_session.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct imap_net imap_net;

/* What the owner answers; owner is the pointer given to imap_net_start. */
typedef struct imap_net_hooks {
    /* Logged in, capabilities read again: the owner's next step, as a mask of
     * imap_event (imap_session_logout's, say). */
    int (*ready)(void *owner, imap_net *n, int64_t now_ms);
} imap_net_hooks;

/* How a connection ended, in the words of the inbox events (InboxEventSession). */
enum imap_net_status {
    IMAP_NET_OK,        /* logged in (whatever came after) */
    IMAP_NET_AUTH,      /* credentials refused, or no safe way to send them */
    IMAP_NET_TLS,       /* TLS handshake or certificate, or STARTTLS missing */
    IMAP_NET_CONNECT,   /* refused, reset, timed out before login */
    IMAP_NET_THROTTLED, /* BYE, [UNAVAILABLE], [THROTTLED] before login */
    IMAP_NET_PROTOCOL,  /* the server broke the protocol */
    IMAP_NET_STATUS_COUNT
};
const char *imap_net_status_name(int status);

/* Lives inline in the owner's table (one per inbox); imap_net_clear frees its buffers. */
struct imap_net {
    imap_session s;
    const int64_t *timeout_ms; /* [IMAP_S_COUNT]: a whole reply, per state */
    const imap_net_hooks *hooks;
    void *owner;
    bool logged_in; /* IMAP_S_READY was reached */
    bool ended;     /* abort or the session's end was seen */
    int fault;      /* enum net_fault when the connection broke (ended by abort) */
    bool aborted;
    int state_at_end; /* the session's state when the connection broke */
    char detail[160]; /* net's reason when aborted */
};

extern const net_session_ops imap_net_ops;

void imap_net_start(imap_net *n, const imap_session_params *p, const int64_t *timeout_ms,
                    const imap_net_hooks *hooks, void *owner);
/* The connection's outcome once it is over (net's done): enum imap_net_status, and a
 * printable reason (may be ""). */
int imap_net_status(const imap_net *n, const char **detail);
/* The session's output to queue now (a step taken outside net's calls): events for
 * net_conn_resume. */
int imap_net_events(int imap_ev);
void imap_net_clear(imap_net *n);

#endif
