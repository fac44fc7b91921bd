/* The one interface between net/ and a protocol session (SMTP today, IMAP later).
 * net/ moves bytes, runs TLS and keeps the deadlines; the session turns plaintext into
 * output and events, and names the phase it is in with that phase's timeout. This
 * header holds no I/O: a protocol core includes it and nothing else of net/. */
#ifndef KILN_NET_SESSION_H
#define KILN_NET_SESSION_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the session asks of its connection after a step (bit set). */
enum net_ev {
    NET_EV_OUTPUT = 1,   /* ops->output has bytes to send */
    NET_EV_STARTTLS = 2, /* start the TLS handshake now (after the output) */
    NET_EV_DONE = 4,     /* over: send what is left, then close */
    NET_EV_HOLD = 8,     /* the session waits for its owner's go-ahead: ops->hold */
    NET_EV_CLOSE = 16,   /* the session settled every outcome itself: close at once,
                            discarding its output */
    NET_EV_HOST_OK = 32, /* the host is not to blame for how this ends (breaker) */
};

/* Why the connection ends under a session that still waits for something. */
enum net_fault {
    NET_FAULT_IO,  /* refused, reset, timed out, a local error: worth another try */
    NET_FAULT_TLS, /* the handshake or the certificate failed */
    NET_FAULT_EOF, /* the peer closed the connection */
};

/* Where the session is, for its deadline and for messages. */
typedef struct net_phase {
    int id;             /* changes when the session moves on */
    const char *name;   /* "mail", "dot", ... */
    int64_t timeout_ms; /* the whole reply awaited in this phase must come within it */
    bool upload;        /* a payload is on its way: progress timer, then timeout_ms */
} net_phase;

/* A protocol session as net/ drives it. Every function gets the session pointer
 * given to net_conn_start; now_ms is the loop's clock. Functions returning int return
 * a mask of enum net_ev. */
typedef struct net_session_ops {
    /* The connection is up. NET_EV_STARTTLS asks for TLS at once (implicit TLS). */
    int (*connected)(void *s, int64_t now_ms);
    /* Plaintext from the peer. out_pending: bytes of the session's earlier output are
     * still in our buffers, not yet in the socket, so nothing of this can answer them
     * (SMTP: a reply before the message's end has left is not its reply). */
    int (*feed)(void *s, const char *data, size_t n, bool out_pending, int64_t now_ms);
    /* The TLS handshake finished. */
    int (*tls_ready)(void *s, int64_t now_ms);
    /* Once per step, on the events of the step's calls together: the session's own
     * checks that span them (SMTP: the lease's start limit). Returns the events. */
    int (*settle)(void *s, int ev, int64_t now_ms);
    /* The bytes to send; net/ empties the buffer. */
    buf *(*output)(void *s);
    void (*phase)(const void *s, net_phase *out);
    /* NET_EV_HOLD was returned and the output is queued: ask the owner for its go. */
    void (*hold)(void *s);
    /* The connection ends before the session is over. unsent: part of the last
     * payload never left our buffers, so the peer cannot hold that message. */
    void (*abort)(void *s, int fault, const char *detail, bool unsent, int64_t now_ms);
} net_session_ops;

#endif
