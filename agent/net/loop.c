/* An I/O thread's loop (see loop.h): the connection table, the eventfd, and the one
 * completion switch, which hands each connection's completions to conn.c. */
#include "loop.h"

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "ring.h"
#include "xalloc.h"

#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int net_loop_init(net_loop *l, uint32_t nconns, const net_timeouts *to, const net_owner_ops *ops,
                  void *owner, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->timeouts = *to;
    l->owner_ops = ops;
    l->owner = owner;
    l->nconns = nconns;
    /* the table's pages stay untouched until an entry is first handed out (an inbox
     * engine's 10,240 entries are 23 MB): the free list holds one fresh entry ahead */
    l->conns = xcalloc(nconns, sizeof *l->conns);
    net_loop_fresh_conn(l);
    l->now_ms = clock_mono_ms();
    l->efd = eventfd(0, EFD_CLOEXEC);
    if (l->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void net_loop_fresh_conn(net_loop *l)
{
    if (l->free_conns || l->nfresh >= l->nconns)
        return;
    net_conn *c = &l->conns[l->nfresh];
    c->idx = l->nfresh++;
    c->fd = -1;
    c->next_free = NULL;
    l->free_conns = c;
}

static void post_eventfd_read(net_loop *l)
{
    struct io_uring_sqe *sqe = net_ring_sqes(&l->ring, 1);
    io_uring_prep_read(sqe, l->efd, &l->efd_val, sizeof l->efd_val, 0);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_EVENTFD, 0, 0));
}

int net_loop_start(net_loop *l, bool *fast, char *err, size_t errlen)
{
    if (net_ring_setup(&l->ring, 4096, fast, err, errlen) < 0)
        return -1;
    l->ring_up = true;
    post_eventfd_read(l);
    return 0;
}

void net_loop_clock(net_loop *l)
{
    l->now_ms = clock_mono_ms();
}

static void handle_cqe(net_loop *l, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    int op = net_ud_op(ud);
    if (op == NET_OP_EVENTFD) {
        if (l->owner_ops->woken(l->owner))
            post_eventfd_read(l);
        return;
    }
    if (op == NET_OP_LINK_TIMEOUT || op == NET_OP_CLOSE)
        return; /* outcomes show on the linked operation */
    uint32_t idx = net_ud_idx(ud);
    if (idx >= l->nconns)
        return;
    net_conn *c = &l->conns[idx];
    if (c->state == NET_C_FREE || c->gen != net_ud_gen(ud)) {
        log_warn("dropping a late completion for a reused session");
        return;
    }
    net_conn_complete(l, c, op, cqe->res);
}

/* ---- the connections' deadlines: a binary min-heap of the connections by timer_ms,
 * each knowing its place (timer_pos, 1-based), so a deadline that moves (every command
 * sent) is a sift, not a new entry ---- */

static void timer_place(net_loop *l, uint32_t i, net_conn *c)
{
    l->timers[i] = c;
    c->timer_pos = i + 1;
}

static void timer_sift_up(net_loop *l, uint32_t i)
{
    net_conn *c = l->timers[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (l->timers[p]->timer_ms <= c->timer_ms)
            break;
        timer_place(l, i, l->timers[p]);
        i = p;
    }
    timer_place(l, i, c);
}

static void timer_sift_down(net_loop *l, uint32_t i)
{
    net_conn *c = l->timers[i];
    for (;;) {
        uint32_t k = 2 * i + 1;
        if (k >= l->ntimers)
            break;
        if (k + 1 < l->ntimers && l->timers[k + 1]->timer_ms < l->timers[k]->timer_ms)
            k++;
        if (l->timers[k]->timer_ms >= c->timer_ms)
            break;
        timer_place(l, i, l->timers[k]);
        i = k;
    }
    timer_place(l, i, c);
}

static void timer_remove(net_loop *l, net_conn *c)
{
    uint32_t i = c->timer_pos - 1;
    c->timer_pos = 0;
    net_conn *last = l->timers[--l->ntimers];
    if (i == l->ntimers)
        return;
    timer_place(l, i, last);
    if (i > 0 && l->timers[(i - 1) / 2]->timer_ms > last->timer_ms)
        timer_sift_up(l, i);
    else
        timer_sift_down(l, i);
}

void net_loop_timer_set(net_loop *l, net_conn *c, int64_t at_ms)
{
    if (at_ms == INT64_MAX) {
        if (c->timer_pos)
            timer_remove(l, c);
        return;
    }
    if (c->timer_pos) {
        int64_t was = c->timer_ms;
        c->timer_ms = at_ms;
        if (at_ms < was)
            timer_sift_up(l, c->timer_pos - 1);
        else if (at_ms > was)
            timer_sift_down(l, c->timer_pos - 1);
        return;
    }
    if (l->ntimers == l->timers_cap) {
        l->timers_cap = l->timers_cap ? 2 * l->timers_cap : 64;
        /* an array of pointers: sizeof a pointer is meant */
        l->timers =
            xrealloc(l->timers,
                     l->timers_cap * sizeof *l->timers); // NOLINT(bugprone-sizeof-expression)
    }
    c->timer_ms = at_ms;
    l->timers[l->ntimers++] = c;
    timer_sift_up(l, l->ntimers - 1);
}

/* Hands each connection whose deadline came to conn.c, once out of the heap (it may
 * put itself back, later). */
static void timers_fire(net_loop *l)
{
    while (l->ntimers && l->timers[0]->timer_ms <= l->now_ms) {
        net_conn *c = l->timers[0];
        timer_remove(l, c);
        net_conn_timer(l, c);
    }
}

void net_loop_wait(net_loop *l, int64_t wake_ms)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts, *tsp = NULL;
    int rc;
    if (l->ntimers && l->timers[0]->timer_ms < wake_ms)
        wake_ms = l->timers[0]->timer_ms;
    if (wake_ms != INT64_MAX) {
        int64_t d = wake_ms - l->now_ms;
        net_ts_set(&ts, d < 1 ? 1 : d);
        tsp = &ts;
    }
    rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, tsp, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        log_error("io_uring wait: %s", strerror(-rc));
        abort();
    }
    l->now_ms = clock_mono_ms();
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&l->ring, head, cqe)
    {
        handle_cqe(l, cqe);
        seen++;
    }
    io_uring_cq_advance(&l->ring, seen);
    timers_fire(l);
}

void net_loop_destroy(net_loop *l)
{
    if (l->conns)
        for (uint32_t i = 0; i < l->nfresh; i++)
            net_conn_dispose(&l->conns[i]);
    if (l->ring_up)
        io_uring_queue_exit(&l->ring);
    l->ring_up = false;
    free(l->conns);
    l->conns = NULL;
    free(l->timers);
    l->timers = NULL;
    l->ntimers = l->timers_cap = 0;
    if (l->efd >= 0)
        close(l->efd);
    l->efd = -1;
    buf_free(&l->plain);
}
