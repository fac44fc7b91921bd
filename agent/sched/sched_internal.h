/* The scheduler's insides, shared by its files (never included outside sched/):
 * engine.c (threads, inbox, lifecycle, the public API), engine_config.c, results.c
 * (the result queue and metrics) and sched.c (works, host queues, dispatch, sessions
 * and the retry decision). Each I/O thread owns its net_loop, its works and hosts; it
 * shares with the others only its inbox, the resolver, the host limits and the
 * result queue. */
#ifndef KILN_SCHED_INTERNAL_H
#define KILN_SCHED_INTERNAL_H

#include "buf.h"
#include "conn.h"
#include "engine.h"
#include "host_limits.h"
#include "i64map.h"
#include "jobs.h"
#include "loop.h"
#include "resolver.h"
#include "smtp_net.h"
#include "timer_heap.h"
#include "tls_conn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOST_BUCKETS 1024

/* A submitted mailbox; freed when its last slot has a final result. */
struct mbox {
    job_mailbox *m;
    int64_t lease_start_ms;
    int64_t deadline_ms;
    uint64_t lease_key; /* engine_extend moves deadline_ms of every mbox with this key */
    unsigned ext_seen;  /* the extension table's version deadline_ms reflects */
    size_t remaining;
    tls_ctx *tls; /* the CA store its TLS verifies with (engine's; NULL: tls_err) */
    char tls_err[160];
};

struct lease_ext {
    uint64_t key;
    int64_t deadline_ms;
};

/* Slots of one mailbox to be sent together by one session. */
struct work {
    struct mbox *mb;
    struct host *host;
    uint32_t *sends; /* indices into mb->m->sends */
    size_t n;
    int attempt;
    int64_t due_ms;
    bool dry_run;      /* simulation: due_ms is when it ends "sent" (engine dry_run_ms) */
    struct work *next; /* host wait queue */
};

enum dns_state { DNS_NONE, DNS_PENDING, DNS_OK };

/* A destination as one I/O thread sees it: its DNS answer and its queue of work. */
struct host {
    net_dest dest; /* name, port, addresses */
    host_limits *limits;
    int dns;
    int64_t addr_expires_ms;
    struct work *wait_head, *wait_tail;
    bool queued; /* on the thread's ready list */
    struct host *ready_next;
    struct host *hash_next;
};

/* A session of the thread's table, beside the net_conn of the same index. */
struct session {
    struct work *w; /* NULL: free */
    struct io_thread *t;
    int64_t start_ms;
    smtp_net smtp;
};

struct ctx_entry {
    char *ca_file;
    tls_ctx *ctx;
    struct ctx_entry *next;
};

struct inbox_item {
    job_mailbox *m;
    int64_t lease_start_ms, deadline_ms;
    uint64_t lease_key;
    tls_ctx *tls;
    char tls_err[160];
    struct inbox_item *next;
};

/* Control messages to an I/O thread: intent go-aheads and cancels. */
struct control_item {
    uint64_t token; /* intent: the session's token */
    bool ok;
    int64_t *cancel_ids; /* cancel: owned */
    size_t ncancel;
    struct control_item *next;
};

struct io_thread {
    engine *e;
    pthread_t tid;
    net_loop net; /* the ring, the eventfd, the connection table; net.now_ms is the clock */
    struct session *sessions; /* [net.nconns] */
    buf msg_scratch;          /* one message before dot-stuffing */
    uint64_t rng;             /* xorshift state for backoff jitter (seeded from the CSPRNG) */
    pthread_mutex_t inbox_mu;
    struct inbox_item *inbox;
    struct control_item *controls;
    i64map cancelled; /* send ids cancelled on this thread (checked before a retry) */
    timer_heap works; /* works by wake time: due time, or their lease's start limit */
    struct host *hosts[HOST_BUCKETS];
    struct host *ready;
    shaping_cfg shaping; /* backoff (the per-host limits live in host_limits) */
    engine_result *results;
    size_t nresults, results_cap;
    int id;
    int ring_ready; /* 1 ok, -1 failed */
    bool cancel_all_req;
    bool stop;
    bool cancel_all;            /* draining: nothing new starts */
    atomic_bool hosts_released; /* another thread freed room at a host we wait on */
};

#define LAT_BUCKETS 12
extern const double sched_lat_bounds_s[LAT_BUCKETS];

struct engine {
    engine_config cfg;
    int nthreads;
    struct io_thread *threads;
    resolver *res;
    host_table *limits;
    /* CA stores, loaded on the submitting thread (never on an I/O thread) */
    pthread_mutex_t ctx_mu;
    struct ctx_entry *ctxs;
    /* renewed lease deadlines (engine_extend), read by the I/O threads only when the
     * version moved since a mailbox last looked */
    pthread_mutex_t ext_mu;
    struct lease_ext *ext;
    size_t next_ext, ext_cap;
    atomic_uint ext_version;
    atomic_uint next_thread;
    pthread_mutex_t res_mu;
    pthread_cond_t res_cv;
    engine_result *results;
    size_t nresults, results_cap;
    /* a consumer blocked in engine_poll_results wants a wake-up at this many results
     * (0: nobody waits): the I/O threads signal once per batch, not once per turn */
    size_t res_want;
    /* metrics */
    atomic_llong m_status[SMTP_ST_COUNT];
    atomic_llong m_sessions;
    atomic_llong m_sessions_active;
    atomic_llong m_connect_errors;
    atomic_llong m_retries;
    atomic_llong m_lat_bucket[LAT_BUCKETS + 1];
    atomic_llong m_lat_sum_ms;
};

/* results.c */
void sched_result_push(struct io_thread *t, const engine_result *r);
/* Hands the thread's finished results to the engine queue, once per loop turn. */
void sched_results_flush(struct io_thread *t);

/* sched.c */
/* net_owner_ops of the thread's loop (engine.c adds woken) */
int64_t sched_conn_deadline(void *owner, net_conn *c);
bool sched_conn_may_reconnect(void *owner, net_conn *c);
void sched_conn_done(void *owner, net_conn *c, bool host_ok);
/* A submitted mailbox becomes works in the thread's heap. */
void sched_mailbox_accept(struct io_thread *t, struct inbox_item *it);
/* Starts what may start; returns the earliest time something blocked may go. */
int64_t sched_dispatch(struct io_thread *t);
/* Applies the thread's cancels to every work not started. */
void sched_cancel_pending(struct io_thread *t);
void sched_cancel_add(struct io_thread *t, int64_t send_id);
/* The go-ahead (or not) for a session's payload waiting at the gate. */
void sched_intent_done(struct io_thread *t, uint64_t token, bool ok);
/* Gives every host with waiting work another look (DNS answered, room freed). */
void sched_hosts_recheck(struct io_thread *t, bool released);
/* Frees everything of a stopped thread that sched holds: works, hosts, sessions. */
void sched_thread_cleanup(struct io_thread *t);
/* The intent token of a session: thread (8 bits) | generation (24) | index (32). */
uint64_t sched_token(const struct io_thread *t, const net_conn *c);
/* Wakes the thread (any thread). */
void sched_thread_wake(struct io_thread *t);

#endif
