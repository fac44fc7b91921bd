/* One io_uring per I/O thread (after liburing's examples/proxy.c): creating and
 * probing it, reserving submission entries, the user_data encoding that lets a late
 * completion for a reused connection be recognised, and the eventfd that wakes a
 * thread from elsewhere. */
#ifndef KILN_NET_RING_H
#define KILN_NET_RING_H

#include "log.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* io_uring operations, the top byte of user_data. */
enum net_op {
    NET_OP_EVENTFD = 1,
    NET_OP_CONNECT,
    NET_OP_RECV,
    NET_OP_SEND,
    NET_OP_LINK_TIMEOUT,
    NET_OP_CLOSE,
};

/* user_data = op (8 bits) | generation (24 bits) | connection index (32 bits) */
static inline uint64_t net_ud(int op, uint32_t gen, uint32_t idx)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xFFFFFF) << 32) | idx;
}
static inline int net_ud_op(uint64_t ud)
{
    return (int)(ud >> 56);
}
static inline uint32_t net_ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xFFFFFF;
}
static inline uint32_t net_ud_idx(uint64_t ud)
{
    return (uint32_t)ud;
}

/* Reserves n consecutive SQEs, submitting first when the queue is short of room, so
 * a linked pair never straddles two submissions. */
static inline struct io_uring_sqe *net_ring_sqes(struct io_uring *ring, unsigned n)
{
    while (io_uring_sq_space_left(ring) < n) {
        int rc = io_uring_submit(ring);
        if (rc < 0 && rc != -EAGAIN && rc != -EINTR) {
            log_error("io_uring_submit: %s", strerror(-rc));
            abort();
        }
    }
    return io_uring_get_sqe(ring);
}

static inline void net_ts_set(struct __kernel_timespec *ts, int64_t ms)
{
    ts->tv_sec = ms / 1000;
    ts->tv_nsec = (ms % 1000) * 1000000;
}

/* Checks that io_uring is there with every operation the agent uses; -1 with err. */
int net_ring_probe(char *err, size_t errlen);
/* Creates the ring on the thread that uses it (SINGLE_ISSUER / DEFER_TASKRUN tie a
 * ring to its submitter). Falls back to a plain ring on older kernels (*fast false). */
int net_ring_setup(struct io_uring *ring, unsigned entries, bool *fast, char *err, size_t errlen);
/* Wakes the thread that reads efd (any thread). */
void net_wake(int efd);

#endif
