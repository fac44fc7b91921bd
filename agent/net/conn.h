/* A connection of the loop's table: connect with address rotation, TLS over memory
 * BIOs, recv and send through the ring, and per-phase deadlines (one entry in the
 * loop's deadline heap at the earliest of the phase's and the owner's deadline). A
 * protocol session (net_session.h) rides on it; when it ends the owner hears of it
 * (net_owner_ops.done) and decides what becomes of the session's work. */
#ifndef KILN_NET_CONN_H
#define KILN_NET_CONN_H

#include "buf.h"
#include "loop.h"
#include "net_session.h"
#include "resolver.h"
#include "tls_conn.h"

#include <stdbool.h>
#include <stdint.h>

#define NET_RECV_BUF_SIZE 2048

/* A connection's life; every change goes through one function (conn.c). */
enum net_conn_state {
    NET_C_FREE,       /* in the free list */
    NET_C_CONNECTING, /* socket and connect posted (maybe on a later address) */
    NET_C_TLS,        /* TLS handshake (implicit, or after the session's STARTTLS) */
    NET_C_SESSION,    /* the protocol session runs */
    NET_C_CLOSING,    /* waiting for the kernel to give every operation back */
};

/* Where a session's payload is (a phase with upload set). The end-of-data timer
 * runs only once the peer has every byte (RFC 5321 §4.5.3.2.6); until then a
 * progress timer (data block, §4.5.3.2.5) bounds each step of the upload. */
enum net_upload {
    NET_UPLOAD_NONE,   /* no payload on its way */
    NET_UPLOAD_USER,   /* bytes (the final dot among them) still in our buffers */
    NET_UPLOAD_KERNEL, /* all in the socket; the peer has not acknowledged them all */
    NET_UPLOAD_DONE,   /* the peer has it all: waiting for the phase's reply */
};

/* A destination as one thread sees it: its addresses (the owner resolves them) and
 * where the next connection starts among them. Owned by the owner. */
typedef struct net_dest {
    char *name;
    int port;
    resolver_addrs addrs;
    int addr_first; /* moves past an address that failed */
} net_dest;

/* What a connection starts with; the pointers must outlive it. */
typedef struct net_conn_params {
    net_dest *dest;
    tls_ctx *tls; /* NULL: TLS cannot start, tls_err says why */
    const char *tls_err;
    const net_session_ops *ops;
    void *session;
} net_conn_params;

/* One entry of the preallocated table; fields are net/'s (the owner reads idx, gen
 * and state). */
typedef struct net_conn {
    uint32_t idx;
    uint32_t gen; /* bumped at each reuse: a stale completion or token is dropped */
    int state;    /* enum net_conn_state */
    int fd;
    int inflight; /* operations (not link timeouts) still owned by the kernel */
    bool recv_posted, send_posted;
    bool close_after_send;
    bool host_ok;        /* the host answered properly (breaker bookkeeping) */
    bool greeted;        /* the peer sent session bytes */
    uint8_t upload;      /* enum net_upload */
    uint8_t addr_idx;    /* the destination address being tried */
    uint8_t addrs_tried; /* addresses that failed to connect in this connection */
    int phase_id;        /* the session's phase at the end of the last step */
    uint32_t timer_pos;  /* 1 + its place in the loop's deadline heap, 0: not there */
    int64_t timer_ms;    /* when the deadline heap hands it to net_conn_timer */
    net_dest *dest;
    tls_ctx *tls_ctx;
    const char *tls_err;
    tls_conn *tls;
    const net_session_ops *ops;
    void *session;
    buf sendq;   /* bytes waiting to be sent */
    buf sending; /* bytes owned by the send in flight */
    /* The reply awaited must be complete by then, however its bytes trickle in
     * (Postfix's smtp_per_record_deadline); the owner's deadline bounds it too. */
    int64_t reply_deadline_ms;
    int64_t upload_progress_ms;
    int upload_outq; /* unacknowledged bytes at the last look (NET_UPLOAD_KERNEL) */
    struct __kernel_timespec connect_ts;
    struct net_conn *next_free;
    char rbuf[NET_RECV_BUF_SIZE];
} net_conn;

/* A free table entry (removed from the free list), or NULL when all are in use. */
net_conn *net_conn_take(net_loop *l);
/* Opens the socket and posts the connect (the destination's addresses must be
 * resolved). Failures come back through the session's abort and the owner's done. */
void net_conn_start(net_loop *l, net_conn *c, const net_conn_params *p);
/* Events of a session step taken outside net's calls (an owner's go-ahead). */
void net_conn_resume(net_loop *l, net_conn *c, int ev);
/* A completion of op (enum net_op) for c, from the loop. */
void net_conn_complete(net_loop *l, net_conn *c, int op, int res);
/* c's deadline came (the loop's deadline heap, c already taken out of it). */
void net_conn_timer(net_loop *l, net_conn *c);
/* At shutdown: closes the socket and frees what c holds, in use or not. */
void net_conn_dispose(net_conn *c);

#endif
