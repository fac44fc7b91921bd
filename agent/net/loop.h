/* An I/O thread's loop: its ring, its eventfd and its preallocated table of
 * connections. The owner (the scheduler) runs the loop and hears of each connection's
 * end through net_owner_ops; net/ itself never decides what happens to a send. */
#ifndef KILN_NET_LOOP_H
#define KILN_NET_LOOP_H

#include "buf.h"

#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct net_conn;

/* How the loop reaches its owner. owner is the pointer given to net_loop_init. */
typedef struct net_owner_ops {
    /* When c is cut whatever it waits for (the lease deadline); it may move later. */
    int64_t (*deadline_ms)(void *owner, struct net_conn *c);
    /* c failed to connect: may it try the destination's next address now? */
    bool (*may_reconnect)(void *owner, struct net_conn *c);
    /* c is over and the kernel holds nothing of it: the owner settles the session's
     * outcome; net/ frees the connection's own part after. host_ok: the host is not
     * to blame (for the breaker). */
    void (*done)(void *owner, struct net_conn *c, bool host_ok);
    /* The eventfd fired (net_wake). False: stop listening, the loop is ending. */
    bool (*woken)(void *owner);
} net_owner_ops;

/* The timeouts net/ applies itself; a session names the others (net_phase). */
typedef struct net_timeouts {
    int64_t connect_ms;
    int64_t tls_ms;
    int64_t data_block_ms; /* each step of an upload's progress */
} net_timeouts;

/* One per I/O thread; the fields are net/'s, read-only for the owner (now_ms above
 * all: the loop's clock, taken once per turn). */
typedef struct net_loop {
    struct io_uring ring;
    int efd;
    uint64_t efd_val;
    struct net_conn *conns;
    struct net_conn *free_conns; /* never empty while an entry is left (fresh or reused) */
    uint32_t nconns;
    uint32_t nfresh; /* entries handed out at least once: conns[0..nfresh) */
    bool ring_up;
    int64_t now_ms;
    /* A min-heap of the connections waiting for a reply, by their deadline (timer_ms):
     * one timer per connection in user space, looked at once per turn, instead of a
     * linked timeout on each recv (an SQE, an hrtimer and a CQE per round trip). */
    struct net_conn **timers;
    uint32_t ntimers, timers_cap;
    net_timeouts timeouts;
    buf plain;                    /* scratch for decrypted bytes */
    atomic_llong *connect_errors; /* counted for the owner's metrics (may be NULL) */
    const net_owner_ops *owner_ops;
    void *owner;
} net_loop;

/* On the creating thread: the eventfd and the connection table. -1 with err. */
int net_loop_init(net_loop *l, uint32_t nconns, const net_timeouts *to, const net_owner_ops *ops,
                  void *owner, char *err, size_t errlen);
/* Puts the next never-used table entry on the free list when the list is empty (the
 * table is touched only as far as it is used; net_conn_take calls it). */
void net_loop_fresh_conn(net_loop *l);
/* On the loop's own thread: the ring and the eventfd's first read. */
int net_loop_start(net_loop *l, bool *fast, char *err, size_t errlen);
/* The loop's clock, read once per turn. */
void net_loop_clock(net_loop *l);
/* Sets when c is handed to net_conn_timer (INT64_MAX: never); O(log n). */
void net_loop_timer_set(net_loop *l, struct net_conn *c, int64_t at_ms);
/* Submits, waits for a completion or until wake_ms (INT64_MAX: no limit), then
 * handles every completion and every connection deadline that came. now_ms is fresh
 * after. */
void net_loop_wait(net_loop *l, int64_t wake_ms);
/* Closes what is left (connections the owner has already let go of) and the ring. */
void net_loop_destroy(net_loop *l);

#endif
