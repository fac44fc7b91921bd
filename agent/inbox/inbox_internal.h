/* The inbox engine's insides, shared by its files (not part of its interface):
 * inbox_engine.c runs the thread, the commands and the metrics; inbox_watch.c is one
 * inbox's life (schedule, resolve, shaping, connect, session, next poll);
 * inbox_server.c is the table of IMAP servers. */
#ifndef KILN_INBOX_INTERNAL_H
#define KILN_INBOX_INTERNAL_H

#include "conn.h"
#include "i64map.h"
#include "host_limits.h"
#include "imap_net.h"
#include "inbox_engine.h"
#include "loop.h"
#include "resolver.h"
#include "shaping.h"
#include "timer_heap.h"

#include <pthread.h>
#include <stdatomic.h>

/* An inbox's life; every change goes through inbox_enter (inbox_watch.c). */
enum inbox_state {
    IB_WAIT,       /* until its next poll (timer) */
    IB_BACKOFF,    /* after a failure, until its retry (timer) */
    IB_RESOLVE,    /* its server's name is being resolved */
    IB_QUEUED,     /* waiting its turn: the server's cap, connect rate, breaker or pause, or
                      the connection table */
    IB_CONNECTING, /* connected or connecting, not logged in yet */
    IB_ACTIVE,     /* logged in, working */
    IB_IDLE,       /* logged in, in IDLE */
    IB_KEPT,       /* logged in between polls (cfg.keep), in its server's LRU; timer: next poll */
    IB_DONE,       /* nothing more (its pass ended under --once, dropped, stopped) */
    IB_STATE_COUNT
};
const char *inbox_state_name(int state);

struct inbox_server;

/* One watched inbox; owned by the engine's thread (its table), freed at destroy. */
typedef struct inbox {
    struct inbox_engine *engine;
    inbox_spec *spec;
    inbox_spec *next_spec; /* a replacement that waits for the connection to end */
    int state;
    int64_t timer_ms;
    bool timer_armed;
    bool pass_done; /* its first pass ended (--once, progress) */
    bool dropped;
    int attempts;    /* consecutive failures, for the backoff */
    int last_status; /* enum imap_net_status last reported, -1 none */
    struct inbox_server *srv;
    net_dest dest;
    net_conn *conn;
    int64_t added_ms;      /* when the spec was handed over: actions' not_before_s */
    int64_t conn_start_ms; /* when the connection began */
    bool stop_sent;        /* the session was told to log out */
    bool recycle;          /* its IDLE connection ended for a full pass: reconnect now */
    bool idler;            /* its session may IDLE: counted in srv->idlers */
    int64_t wakes_seen;    /* the connection's WAKEs counted in the metrics */
    /* kept connections (IB_KEPT) */
    int64_t visit_at_ms;   /* the next poll on the kept connection */
    int64_t kept_since_ms; /* when it was kept (its life, when evicted) */
    int64_t resume_at_ms;  /* after an eviction or a close while kept: the poll planned */
    bool evicted;          /* logged out to make room: its poll stays where it was */
    bool kept_visit;       /* the poll under way is on a kept connection */
    bool visit_done;       /* this connection's visit did its work (inbox_visit_done) */
    bool noted;            /* this session's note (a folder not checked) is logged */
    int visit_events;      /* events of that poll (none: the connection was dead) */
    struct inbox *kept_prev, *kept_next; /* its server's LRU, least recent first */
    int64_t *done_ids;                   /* actions reported, the latest INBOX_DONE_IDS (a ring) */
    size_t ndone, done_next;
    imap_net net;
    struct inbox *wait_next; /* in its server's or the table's wait queue */
    struct inbox *now_next;  /* in the engine's queue of timers due now (in_now_q) */
    bool in_now_q;
} inbox;

/* An IMAP server (by host name): its shared limits and who waits there, in order: one
 * queue whatever its head waits for (room under the cap: a connection's end looks again;
 * a token of the connect rate, the breaker's or a pause's end: the server's one timer). */
typedef struct inbox_server {
    char *host;
    host_limits *limits;
    inbox *wait_head, *wait_tail;
    int idlers;   /* sessions that may IDLE: at most KILN_AGENT_IMAP_IDLE_SHARE of the cap */
    int nwaiting; /* in wait_head's queue */
    bool full;    /* the queue's head waits for room under the cap (not for a time) */
    bool wake_armed;
    int64_t wake_ms;              /* the server's timer (engine's srv_timers): its head's time */
    inbox *kept_head, *kept_tail; /* kept connections, least recently used first */
    int evicting;                 /* kept ones told to log out for room, not gone yet */
    int64_t last_evict_ms;        /* 0: never */
    int64_t kept_life_ms;         /* how long kept connections lived until evicted (EWMA) */
    unsigned caps; /* the capabilities at the last login here (a first visit's pipeline) */
    atomic_ullong connects, throttles, failures;
    struct inbox_server *next;
} inbox_server;

#define CTX_MAX 8

struct inbox_engine {
    inbox_engine_config cfg;
    shaping_cfg shaping;
    inbox_event_fn fn;
    void *fn_arg;
    net_loop loop;
    resolver *res;
    host_table *hosts;
    pthread_t thread;
    bool thread_started;

    /* commands from other threads, under mu */
    pthread_mutex_t mu;
    inbox_spec **add_q;
    size_t nadd, add_cap;
    int64_t *drop_q;
    size_t ndrop, drop_cap;
    bool stop_req;
    int64_t drain_ms;
    atomic_bool hard_stop;
    atomic_bool finished;
    int done_fd; /* an eventfd written when the thread ends (inbox_engine_done_fd) */

    /* the engine thread's own */
    inbox **inboxes;
    size_t ninboxes, inbox_cap;
    i64map by_id;                 /* mailbox_id -> its inbox (one each: a later one is merged) */
    timer_heap timers;            /* inboxes, by their timer_ms */
    timer_heap srv_timers;        /* servers whose queue's head waits for a time */
    inbox *now_head, *now_tail;   /* armed for now: fired in the order armed */
    inbox *slot_head, *slot_tail; /* waiting for a free connection */
    bool kick;                    /* room may have appeared: look at the wait queues */
    bool emitted;                 /* events went out since the last events_flush */
    int64_t flush_due_ms;         /* the next events_flush may come then (EVENTS_FLUSH_MS) */
    size_t dns_waiting;
    size_t conns_active;
    bool stopping;
    int64_t drain_until_ms;
    struct {
        char *ca_file;
        tls_ctx *ctx;
        char err[200];
    } ctxs[CTX_MAX];
    size_t nctxs;

    /* servers: added by the engine thread, read by the metrics thread, under srv_mu */
    pthread_mutex_t srv_mu;
    inbox_server *servers;

    /* metrics (written by the engine thread, read anywhere) */
    atomic_size_t by_state[IB_STATE_COUNT];
    atomic_size_t ninboxes_seen, passes_done;
    atomic_ullong polls, found[INBOX_ROLE_COUNT], actions[INBOX_ACT_COUNT][INBOX_AST_COUNT];
    atomic_ullong sessions[IMAP_NET_STATUS_COUNT], idle_wakes;
    atomic_ullong kept_visits, kept_evicted, kept_closed;
    atomic_ullong visits_broken; /* logged in, then ended without the visit's clean end */
};

/* inbox_server.c */
inbox_server *inbox_server_get(inbox_engine *e, const char *host);
void inbox_server_free_all(inbox_engine *e);
void inbox_server_metrics(inbox_engine *e, buf *out);
/* The inbox asks its server for a connection: admitted (started) when nobody waits there
 * before it and the limits say go, else it queues (false). */
bool inbox_server_admit(inbox_engine *e, inbox *ib);
/* Room may have appeared (a connection ended, a command): the table's and the servers'
 * queues are looked at, in order, each until its head has to wait. */
void inbox_retry_waiting(inbox_engine *e);
/* Servers whose timer is due let their queue's head try again. */
void inbox_server_fire_due(inbox_engine *e);
/* Connections waiting for room at s (kept ones give way to them). */
static inline int inbox_server_room_waiters(const inbox_server *s)
{
    return s->full ? s->nwaiting : 0;
}

/* inbox_watch.c */
void inbox_enter(inbox_engine *e, inbox *ib, int state);
void inbox_arm(inbox_engine *e, inbox *ib, int state, int64_t at_ms);
void inbox_fire(inbox_engine *e, inbox *ib);
/* Fires the inboxes armed for now, in the order they were armed. */
void inbox_fire_now(inbox_engine *e);
/* Starts the session of an admitted inbox on a free connection of the table. */
void inbox_start_session(inbox_engine *e, inbox *ib);
void inbox_retry_dns(inbox_engine *e);
void inbox_emit(inbox_engine *e, const inbox_event *ev);
void inbox_stop_one(inbox_engine *e, inbox *ib);
/* A logged-in session (active, idle, kept) takes its owner's step now. */
void inbox_poke(inbox_engine *e, inbox *ib);
/* The inbox's pass is over (progress, --once). */
void inbox_finish_pass(inbox_engine *e, inbox *ib);
/* A visit's work is done (its LOGOUT, its IDLE, its kept connection): the backoff resets
 * and the inbox's session event says `ok`. */
void inbox_visit_done(inbox_engine *e, inbox *ib);
/* Its poll interval (class or its own, at most cfg.poll_max_ms). */
int64_t inbox_poll_interval_ms(const inbox_engine *e, const inbox *ib);
/* When its first action not due yet at now comes due (INT64_MAX: none). */
int64_t inbox_next_action_due_ms(const inbox *ib, int64_t now);

/* inbox_keep.c */
void inbox_kept_remove(inbox_server *s, inbox *ib);
/* Connections wait for room at s: kept ones log out, the least recently used first. */
void inbox_evict_kept(inbox_engine *e, inbox_server *s);
/* A poll's work is done on a session with keep: kept (0) or logged out (its events). */
int inbox_keep_or_leave(inbox_engine *e, inbox *ib, imap_net *n, int64_t now);
/* Whether the inbox has action id (to do, or reported). */
bool inbox_knows_action(const inbox *ib, int64_t id);
/* A new action of the spec: a logged-in session takes it at once. */
void inbox_offer_action(inbox_engine *e, inbox *ib, const inbox_action *a);

#define INBOX_DONE_IDS 1024
extern const net_owner_ops inbox_owner_ops;

#endif
