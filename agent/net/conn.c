/* Connections (see conn.h): bytes, TLS and timers for a protocol session. Nothing
 * here knows the protocol: the session says what to send, which phase it is in and
 * how long that phase may wait; the owner decides what an ending means. */
#include "conn.h"

#include "log.h"
#include "ring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* While the kernel still holds unacknowledged bytes of a payload, how often the
 * connection looks whether the peer is still taking them. */
#define UPLOAD_POLL_MS 250
/* A connection's buffers stay with its table entry for the next session unless they
 * grew past this (a big message), so a steady stream of sessions allocates nothing. */
#define CONN_BUF_KEEP 16384

static void conn_close(net_loop *l, net_conn *c);

/* The one place a connection changes state; a move the design does not have is a
 * bug, and stops the agent before it can send anything twice. */
static void conn_enter(net_conn *c, int state)
{
    bool ok;
    switch (state) {
    case NET_C_FREE:
        ok = c->state == NET_C_CLOSING;
        break;
    case NET_C_CONNECTING: /* a fresh entry, or the next address */
        ok = c->state == NET_C_FREE || c->state == NET_C_CONNECTING;
        break;
    case NET_C_TLS: /* implicit TLS once connected, or the session's STARTTLS */
        ok = c->state == NET_C_CONNECTING || c->state == NET_C_SESSION;
        break;
    case NET_C_SESSION:
        ok = c->state == NET_C_CONNECTING || c->state == NET_C_TLS;
        break;
    case NET_C_CLOSING:
        ok = c->state != NET_C_FREE && c->state != NET_C_CLOSING;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        log_error("connection %u: no move from state %d to %d", c->idx, c->state, state);
        abort();
    }
    c->state = state;
}

static void buf_recycle(buf *b)
{
    if (b->cap > CONN_BUF_KEEP)
        buf_free(b);
    else
        buf_reset(b);
}

/* The connect's own timer: a linked timeout (once per connection; the deadline heap
 * takes over from the first reply awaited). */
static void link_timeout(net_loop *l, net_conn *c, struct __kernel_timespec *ts, int64_t ms)
{
    net_ts_set(ts, ms);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring); /* room reserved by net_ring_sqes */
    io_uring_prep_link_timeout(sqe, ts, 0);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_LINK_TIMEOUT, c->gen, c->idx));
}

static int64_t owner_deadline(net_loop *l, net_conn *c)
{
    return l->owner_ops->deadline_ms(l->owner, c);
}

/* When the connection must have what it waits for: the reply's (or the upload
 * step's) deadline, never later than the owner's. */
static int64_t conn_deadline(net_loop *l, net_conn *c)
{
    int64_t hard = owner_deadline(l, c);
    return c->reply_deadline_ms < hard ? c->reply_deadline_ms : hard;
}

/* A recv is posted whenever the session waits for the peer; it carries no timer: the
 * connection's deadline is its entry in the loop's heap (conn_arm), which a recv's
 * completion does not touch. */
static void post_recv(net_loop *l, net_conn *c)
{
    if (c->recv_posted)
        return;
    struct io_uring_sqe *sqe = net_ring_sqes(&l->ring, 1);
    io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof c->rbuf, 0);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_RECV, c->gen, c->idx));
    c->recv_posted = true;
    c->inflight++;
}

/* What the session waits for now must be complete within ms, however its bytes
 * trickle in: set when a command goes out (or the connection, the TLS handshake or
 * an upload step begins), not when a byte comes. The heap holds the earlier of it and
 * the owner's deadline; an owner's deadline that moves later is seen when the entry
 * comes due (net_conn_timer puts it back). */
static void conn_arm(net_loop *l, net_conn *c, int64_t ms)
{
    c->reply_deadline_ms = l->now_ms + ms;
    net_loop_timer_set(l, c, conn_deadline(l, c));
}

/* Starts a send of everything queued when no send is in flight. */
static void flush_send(net_loop *l, net_conn *c)
{
    if (c->send_posted || !c->sendq.len)
        return;
    buf tmp = c->sending;
    c->sending = c->sendq;
    c->sendq = tmp;
    buf_reset(&c->sendq);
    /* No timer of its own: the connection's deadline stays in the heap until it
     * closes, and its expiry closes the socket, which ends a send stuck on a peer that
     * stopped reading. */
    struct io_uring_sqe *sqe = net_ring_sqes(&l->ring, 1);
    io_uring_prep_send(sqe, c->fd, c->sending.data, c->sending.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_SEND, c->gen, c->idx));
    c->send_posted = true;
    c->inflight++;
}

/* The connection is over and the kernel owns nothing of it any more: the owner
 * settles the session, then the entry goes back to the free list. */
static void conn_finish(net_loop *l, net_conn *c)
{
    if (c->fd >= 0) {
        struct io_uring_sqe *sqe = net_ring_sqes(&l->ring, 1);
        io_uring_prep_close(sqe, c->fd);
        io_uring_sqe_set_data64(sqe, net_ud(NET_OP_CLOSE, c->gen, c->idx));
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    l->owner_ops->done(l->owner, c, c->host_ok);
    tls_conn_free(c->tls);
    c->tls = NULL;
    buf_recycle(&c->sendq);
    buf_recycle(&c->sending);
    c->ops = NULL;
    c->session = NULL;
    c->dest = NULL;
    c->fd = -1;
    conn_enter(c, NET_C_FREE);
    c->gen = (c->gen + 1) & 0xFFFFFF;
    c->next_free = l->free_conns;
    l->free_conns = c;
}

/* Begins closing: the kernel gives the pending operations back (shutdown wakes a
 * waiting recv), and conn_finish runs once nothing is in flight. */
static void conn_close(net_loop *l, net_conn *c)
{
    if (c->state != NET_C_CLOSING) {
        conn_enter(c, NET_C_CLOSING);
        net_loop_timer_set(l, c, INT64_MAX);
        if (c->inflight && c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    }
    if (!c->inflight)
        conn_finish(l, c);
}

/* The connection ends under the session: it settles what is pending, then closes. */
static void conn_fail(net_loop *l, net_conn *c, int fault, const char *detail)
{
    c->ops->abort(c->session, fault, detail, c->upload == NET_UPLOAD_USER, l->now_ms);
    conn_close(l, c);
}

/* Starts the TLS handshake (after the session's STARTTLS, or at once for implicit
 * TLS) and queues its first bytes. False when it failed: c is closing. */
static bool conn_start_tls(net_loop *l, net_conn *c)
{
    if (!c->tls_ctx) {
        c->host_ok = true; /* our CA file, not the host's fault */
        conn_fail(l, c, NET_FAULT_TLS, c->tls_err);
        return false;
    }
    c->tls = tls_conn_new(c->tls_ctx, c->dest->name);
    conn_enter(c, NET_C_TLS);
    conn_arm(l, c, l->timeouts.tls_ms); /* the whole handshake */
    if (tls_conn_handshake(c->tls) == TLS_ERROR) {
        conn_fail(l, c, NET_FAULT_TLS, tls_conn_error(c->tls));
        return false;
    }
    tls_conn_take(c->tls, &c->sendq);
    return true;
}

/* The session may have moved on: re-arm the reply deadline when output went out or
 * the phase changed, and follow a payload's upload. */
static void conn_track(net_loop *l, net_conn *c, int ev)
{
    net_phase ph;
    c->ops->phase(c->session, &ph);
    int prev = c->phase_id;
    c->phase_id = ph.id;
    if (ph.upload && ph.id != prev) {
        c->upload = NET_UPLOAD_USER;
        c->upload_progress_ms = l->now_ms;
        int64_t tick = l->timeouts.data_block_ms;
        conn_arm(l, c, tick < UPLOAD_POLL_MS ? tick : UPLOAD_POLL_MS);
        return;
    }
    if (!ph.upload)
        c->upload = NET_UPLOAD_NONE;
    if ((ev & NET_EV_OUTPUT) || ph.id != prev)
        conn_arm(l, c, ph.timeout_ms);
}

/* Acts on the events of one session step: moves its output to the socket (through
 * TLS when up), starts TLS, holds, closes. */
static void conn_step(net_loop *l, net_conn *c, int ev)
{
    ev = c->ops->settle(c->session, ev, l->now_ms);
    if (ev & NET_EV_HOST_OK)
        c->host_ok = true;
    if (ev & NET_EV_CLOSE) {
        conn_close(l, c);
        return;
    }
    conn_track(l, c, ev);
    buf *out = c->ops->output(c->session);
    if (out->len) {
        if (c->tls) {
            if (tls_conn_write(c->tls, out->data, out->len) < 0) {
                buf_reset(out);
                conn_fail(l, c, NET_FAULT_IO, tls_conn_error(c->tls));
                return;
            }
            tls_conn_take(c->tls, &c->sendq);
        } else {
            buf_append(&c->sendq, out->data, out->len);
        }
        /* a message payload passed through: give its memory back now */
        if (out->cap > 1024)
            buf_free(out);
        else
            buf_reset(out);
    }
    if ((ev & NET_EV_STARTTLS) && !conn_start_tls(l, c))
        return;
    if (ev & NET_EV_HOLD)
        c->ops->hold(c->session);
    if (ev & NET_EV_DONE) {
        c->close_after_send = true;
        if (!c->sendq.len && !c->send_posted) {
            conn_close(l, c);
            return;
        }
    }
    flush_send(l, c);
    if (!(ev & NET_EV_DONE))
        post_recv(l, c);
}

void net_conn_resume(net_loop *l, net_conn *c, int ev)
{
    conn_step(l, c, ev);
}

/* Bytes the session wrote are still ours: queued, or in a send the kernel has not
 * finished taking (TLS moves its records to sendq as they are written). */
static bool out_pending(const net_conn *c)
{
    return c->sending.len > 0 || c->sendq.len > 0;
}

static void conn_on_data(net_loop *l, net_conn *c, const char *data, size_t n)
{
    int ev;
    if (!c->tls) {
        if (!c->greeted)
            c->greeted = c->host_ok = true;
        ev = c->ops->feed(c->session, data, n, out_pending(c), l->now_ms);
        conn_step(l, c, ev);
        return;
    }
    tls_conn_feed(c->tls, data, n);
    ev = 0;
    if (c->state == NET_C_TLS) {
        int rc = tls_conn_handshake(c->tls);
        if (rc == TLS_ERROR) {
            conn_fail(l, c, NET_FAULT_TLS, tls_conn_error(c->tls));
            return;
        }
        tls_conn_take(c->tls, &c->sendq);
        if (rc == TLS_WANT) {
            flush_send(l, c);
            post_recv(l, c);
            return;
        }
        conn_enter(c, NET_C_SESSION);
        /* the session's phase has its own deadline again (implicit TLS: the
         * greeting's; after STARTTLS the session moves on and re-arms) */
        ev = c->ops->tls_ready(c->session, l->now_ms);
        net_phase ph;
        c->ops->phase(c->session, &ph);
        conn_arm(l, c, ph.timeout_ms);
    }
    bool closed = false;
    buf_reset(&l->plain);
    if (tls_conn_read(c->tls, &l->plain, &closed) < 0) {
        conn_fail(l, c, NET_FAULT_IO, tls_conn_error(c->tls));
        return;
    }
    if (l->plain.len) {
        if (!c->greeted)
            c->greeted = c->host_ok = true;
        ev |= c->ops->feed(c->session, l->plain.data, l->plain.len, out_pending(c), l->now_ms);
    }
    if (closed && !(ev & NET_EV_DONE)) {
        c->ops->abort(c->session, NET_FAULT_EOF, NULL, c->upload == NET_UPLOAD_USER, l->now_ms);
        ev |= NET_EV_DONE;
    }
    conn_step(l, c, ev);
}

/* Opens the socket and posts the connect with its deadline. */
static void conn_connect(net_loop *l, net_conn *c)
{
    conn_enter(c, NET_C_CONNECTING);
    const struct sockaddr_storage *addr = &c->dest->addrs.addr[c->addr_idx];
    c->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        char why[96];
        snprintf(why, sizeof why, "socket: %s", strerror(errno));
        c->host_ok = true; /* our limit, not the host's fault */
        conn_fail(l, c, NET_FAULT_IO, why);
        return;
    }
    struct io_uring_sqe *sqe = net_ring_sqes(&l->ring, 2);
    io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)addr,
                          c->dest->addrs.len[c->addr_idx]);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_CONNECT, c->gen, c->idx));
    sqe->flags |= IOSQE_IO_LINK;
    int64_t ms = l->timeouts.connect_ms;
    int64_t left = owner_deadline(l, c) - l->now_ms;
    if (left < ms)
        ms = left < 1 ? 1 : left;
    link_timeout(l, c, &c->connect_ts, ms);
    c->inflight++;
}

net_conn *net_conn_take(net_loop *l)
{
    net_conn *c = l->free_conns;
    if (c) {
        l->free_conns = c->next_free;
        net_loop_fresh_conn(l);
    }
    return c;
}

void net_conn_start(net_loop *l, net_conn *c, const net_conn_params *p)
{
    c->dest = p->dest;
    c->tls_ctx = p->tls;
    c->tls_err = p->tls_err;
    c->ops = p->ops;
    c->session = p->session;
    c->host_ok = false;
    c->greeted = false;
    c->close_after_send = false;
    c->recv_posted = c->send_posted = false;
    c->upload = NET_UPLOAD_NONE;
    c->inflight = 0;
    c->reply_deadline_ms = INT64_MAX;
    c->addr_idx = (uint8_t)c->dest->addr_first;
    c->addrs_tried = 0;
    net_phase ph;
    c->ops->phase(c->session, &ph);
    c->phase_id = ph.id;
    conn_connect(l, c);
}

/* A connect failed: the connection moves on to the destination's next address while
 * one is left, and the destination's later connections start past the one that
 * failed. */
static void conn_connect_failed(net_loop *l, net_conn *c, const char *why)
{
    net_dest *d = c->dest;
    int n = d->addrs.n;
    c->addrs_tried++;
    if (c->addrs_tried < n && l->owner_ops->may_reconnect(l->owner, c)) {
        char at[INET6_ADDRSTRLEN];
        resolver_addr_text(&d->addrs.addr[c->addr_idx], at, sizeof at);
        log_debug("connect to %s (%s) port %d: %s; trying its next address", d->name, at, d->port,
                  why);
        if (d->addr_first == c->addr_idx)
            d->addr_first = (c->addr_idx + 1) % n;
        close(c->fd); /* nothing of the kernel's is pending on it: the connect is back */
        c->fd = -1;
        c->addr_idx = (uint8_t)((c->addr_idx + 1) % n);
        conn_connect(l, c);
        return;
    }
    char detail[160];
    if (n > 1)
        snprintf(detail, sizeof detail, "connect: %s (%d addresses tried)", why, n);
    else
        snprintf(detail, sizeof detail, "connect: %s", why);
    conn_fail(l, c, NET_FAULT_IO, detail);
}

static void on_connect(net_loop *l, net_conn *c, int res)
{
    if (c->state == NET_C_CLOSING) {
        conn_close(l, c);
        return;
    }
    if (res < 0) {
        if (l->connect_errors)
            atomic_fetch_add(l->connect_errors, 1);
        if (res == -ECANCELED && l->now_ms >= owner_deadline(l, c)) {
            c->host_ok = true; /* our deadline, not the host's fault */
            conn_fail(l, c, NET_FAULT_IO, "connect: lease deadline reached");
            return;
        }
        conn_connect_failed(l, c, res == -ECANCELED ? "timed out" : strerror(-res));
        return;
    }
    int ev = c->ops->connected(c->session, l->now_ms);
    if (ev & NET_EV_STARTTLS) {
        if (!conn_start_tls(l, c))
            return;
        flush_send(l, c);
    } else {
        conn_enter(c, NET_C_SESSION);
        net_phase ph;
        c->ops->phase(c->session, &ph);
        conn_arm(l, c, ph.timeout_ms);
    }
    post_recv(l, c);
}

/* Unacknowledged bytes in the socket's send queue, or -1. */
static int socket_outq(int fd)
{
    int outq = 0;
    return ioctl(fd, SIOCOUTQ, &outq) == 0 ? outq : -1;
}

/* While a payload is on its way the recv's timer ticks every UPLOAD_POLL_MS (a reply
 * in the meantime ends the wait as usual, so a quick server costs nothing extra): each
 * tick looks at the upload's progress, bytes taken by the socket (on_send) and then
 * bytes acknowledged by the peer, and gives up when there was none for a data block
 * timeout. Once the peer has acknowledged every byte the phase's own timer starts.
 * Returns false when the upload stalled. */
static bool conn_upload_tick(net_loop *l, net_conn *c)
{
    if (c->upload == NET_UPLOAD_KERNEL) {
        int outq = socket_outq(c->fd);
        if (outq <= 0) { /* all acknowledged (or cannot tell): the peer has it all */
            c->upload = NET_UPLOAD_DONE;
            net_phase ph;
            c->ops->phase(c->session, &ph);
            conn_arm(l, c, ph.timeout_ms);
            return true;
        }
        if (outq < c->upload_outq)
            c->upload_progress_ms = l->now_ms;
        c->upload_outq = outq;
    }
    int64_t stalled_at = c->upload_progress_ms + l->timeouts.data_block_ms;
    if (l->now_ms >= stalled_at)
        return false;
    int64_t next = l->now_ms + UPLOAD_POLL_MS;
    conn_arm(l, c, (next < stalled_at ? next : stalled_at) - l->now_ms);
    return true;
}

/* The connection's deadline came (the loop's heap; c is out of it): a payload's
 * upload tick, a deadline that moved later (back into the heap), or the end. */
void net_conn_timer(net_loop *l, net_conn *c)
{
    if (c->state != NET_C_TLS && c->state != NET_C_SESSION)
        return;
    int64_t hard = owner_deadline(l, c);
    bool uploading = c->upload == NET_UPLOAD_USER || c->upload == NET_UPLOAD_KERNEL;
    net_phase ph;
    c->ops->phase(c->session, &ph);
    if (l->now_ms < hard && uploading && l->now_ms >= c->reply_deadline_ms &&
        !conn_upload_tick(l, c)) {
        char why[120];
        snprintf(why, sizeof why, "timeout sending the message (state %s)", ph.name);
        c->host_ok = false;
        conn_fail(l, c, NET_FAULT_IO, why);
        return;
    }
    int64_t due = conn_deadline(l, c);
    if (l->now_ms < due) {
        /* the deadline moved later meanwhile (renewal, upload tick): wait on */
        net_loop_timer_set(l, c, due);
        return;
    }
    char why[120];
    const char *state = c->state == NET_C_TLS ? "tls_handshake" : ph.name;
    if (l->now_ms >= hard) {
        snprintf(why, sizeof why, "lease deadline reached in state %s", state);
        c->host_ok = c->greeted;
    } else {
        snprintf(why, sizeof why, "timeout waiting for the server in state %s", state);
        c->host_ok = false;
    }
    conn_fail(l, c, NET_FAULT_IO, why);
}

static void on_recv(net_loop *l, net_conn *c, int res)
{
    c->recv_posted = false;
    if (c->state == NET_C_CLOSING) {
        conn_close(l, c);
        return;
    }
    if (res == 0) {
        if (c->state == NET_C_TLS) {
            conn_fail(l, c, NET_FAULT_TLS, "connection closed during the TLS handshake");
            return;
        }
        c->ops->abort(c->session, NET_FAULT_EOF, NULL, c->upload == NET_UPLOAD_USER, l->now_ms);
        if (c->greeted) /* a host that spoke and then closed is not a dead host */
            c->host_ok = true;
        conn_close(l, c);
        return;
    }
    if (res < 0) {
        char why[120];
        snprintf(why, sizeof why, "recv: %s", strerror(-res));
        c->host_ok = false;
        conn_fail(l, c, NET_FAULT_IO, why);
        return;
    }
    conn_on_data(l, c, c->rbuf, (size_t)res);
}

static void on_send(net_loop *l, net_conn *c, int res)
{
    c->send_posted = false;
    if (c->state == NET_C_CLOSING) {
        conn_close(l, c);
        return;
    }
    if (res < 0) {
        char why[120];
        snprintf(why, sizeof why, "send: %s", res == -ECANCELED ? "timed out" : strerror(-res));
        conn_fail(l, c, NET_FAULT_IO, why);
        return;
    }
    buf_consume(&c->sending, (size_t)res);
    if (c->sending.len) {
        /* short write: the rest goes first, ahead of anything queued since */
        buf_append(&c->sending, c->sendq.data, c->sendq.len);
        buf_reset(&c->sendq);
        buf tmp = c->sendq;
        c->sendq = c->sending;
        c->sending = tmp;
    }
    if (!c->sending.len && c->sending.cap > 1024)
        buf_free(&c->sending);
    if (c->upload == NET_UPLOAD_USER) {
        /* progress; the upload tick looks at it (no timer moves here) */
        c->upload_progress_ms = l->now_ms;
        if (!c->sending.len && !c->sendq.len) {
            /* the final dot is in the socket: from here the peer may hold it */
            c->upload = NET_UPLOAD_KERNEL;
            c->upload_outq = INT_MAX;
        }
    }
    if (c->close_after_send && !c->sendq.len) {
        conn_close(l, c);
        return;
    }
    flush_send(l, c);
}

void net_conn_complete(net_loop *l, net_conn *c, int op, int res)
{
    c->inflight--;
    switch (op) {
    case NET_OP_CONNECT:
        on_connect(l, c, res);
        break;
    case NET_OP_RECV:
        on_recv(l, c, res);
        break;
    case NET_OP_SEND:
        on_send(l, c, res);
        break;
    default:
        log_error("unknown io_uring operation %d in a completion", op);
        abort();
    }
}

void net_conn_dispose(net_conn *c)
{
    buf_free(&c->sendq); /* free entries keep theirs for the next session */
    buf_free(&c->sending);
    if (c->state == NET_C_FREE)
        return;
    if (c->fd >= 0)
        close(c->fd);
    tls_conn_free(c->tls);
    c->tls = NULL;
}
