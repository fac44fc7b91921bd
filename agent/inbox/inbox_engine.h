/* The inbox engine: watches a set of inboxes over IMAP on one io_uring loop of its own
 * (net/), as the SMTP engine sends on its threads. Per inbox it schedules polls by
 * class (high / medium / low: 1 / 5 / 15 minutes by default, or the inbox's own
 * interval), keeps one IDLE connection where the server offers IDLE for the high
 * class, and reconnects with exponential backoff and jitter. Per IMAP server (keyed
 * by host): a connection cap, a connect rate, a breaker, and a pause when the server
 * says [THROTTLED] or BYE (net/host_limits). What it finds and does comes out as
 * events through the owner's callback, on the engine's thread. */
#ifndef KILN_INBOX_ENGINE_H
#define KILN_INBOX_ENGINE_H

#include "buf.h"
#include "inbox_spec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct inbox_engine inbox_engine;

enum inbox_event_type { INBOX_EV_FOUND, INBOX_EV_ACTION, INBOX_EV_FOLDER_STATE, INBOX_EV_SESSION };

/* One event (openapi InboxEvent). Pointers are borrowed for the callback's duration. */
typedef struct inbox_event {
    int type; /* enum inbox_event_type */
    int64_t mailbox_id;
    /* session: enum imap_net_status (ok, auth, tls, connect, throttled, protocol) */
    int status;
    const char *detail; /* session, action: may be NULL */
    /* found, folder_state, action (where the message is now) */
    const char *folder;
    int role; /* enum inbox_role */
    uint32_t uidvalidity;
    uint32_t uid;      /* found, action */
    uint32_t last_uid; /* folder_state */
    const char *message_id;
    const char *const *flags;
    size_t nflags;
    const char *const *labels; /* NULL: the server has no labels */
    size_t nlabels;
    const char *authentication_results; /* NULL when none */
    const char *internal_date;          /* ISO 8601 UTC, or NULL */
    int64_t action_id;
    int action_status; /* enum inbox_action_status */
} inbox_event;

/* A session event's status by its wire name: "ok", "auth", "tls", "connect",
 * "throttled", "protocol". */
const char *inbox_session_status_name(int status);
/* Session statuses that mean a login went well. */
#define INBOX_SESSION_OK 0

typedef void (*inbox_event_fn)(void *arg, const inbox_event *ev);

typedef struct inbox_engine_config {
    int64_t poll_ms[INBOX_POLL_COUNT]; /* default 60 s, 300 s, 900 s */
    bool use_interval;   /* an inbox's poll_interval_s wins over poll_ms (default true) */
    int64_t poll_max_ms; /* 0: none; else no poll interval is longer (tests, demos) */
    bool once;           /* one pass over every inbox, then the engine ends */
    bool login_only;     /* log in and out, nothing else (kiln-agent check) */
    bool idle;           /* IDLE for the high class where offered (default true) */
    int64_t idle_ms;     /* IDLE is re-issued after this (default 28 min; RFC 2177: < 29) */
    /* Keep a polled inbox's connection logged in between polls (default true): the next
     * poll is one STATUS round trip on it. Kept connections count against the server's
     * cap; the least recently used is logged out when a new connection needs room, and
     * a server whose kept connections are evicted before their next poll keeps none
     * for a while (inbox_watch.c, may_keep). */
    bool keep;
    uint32_t max_conns; /* the loop's connection table (default 10,240) */
    /* per IMAP server */
    int server_max_conns;      /* default 100 */
    int idle_share_pct;        /* IDLE holds at most this % of them (default 50) */
    int server_conns_per_min;  /* default 200 */
    int breaker_threshold;     /* default 5 consecutive failures */
    int64_t backoff_base_ms;   /* per account: first retry delay (default 2 s) */
    int64_t backoff_max_ms;    /* default 15 min */
    int64_t throttle_pause_ms; /* a server's pause after [THROTTLED] / BYE (default 60 s) */
    /* timeouts: connect_ms and tls_ms (the handshake) for every connection; greeting_ms
     * for every connection's greeting; command_ms for each answer of the bare login
     * (login_only: kiln-agent check) */
    int64_t connect_ms, tls_ms, greeting_ms, command_ms; /* 10, 10, 30, 30 s */
    /* an inbox session's command timeout; FETCH and moves twice it */
    int64_t session_command_ms; /* 60 s */
    bool verbose;               /* log each session's end */
    /* Optional: called on the engine's thread with the callback's arg before the thread
     * sleeps, after a turn of its loop that emitted events, at most every 100 ms (a
     * writer that buffers its event lines flushes them here: no other thread woken; the
     * first line after a quiet moment goes out at once, a busy stream's within 100 ms). */
    void (*events_flush)(void *arg);
} inbox_engine_config;

void inbox_engine_config_defaults(inbox_engine_config *c);
/* KILN_AGENT_IMAP_* variables over the defaults (docs/agent.md); -1 with err. */
int inbox_engine_config_from_env(inbox_engine_config *c, char *err, size_t errlen);

/* Starts the engine's thread. fn gets every event on that thread. NULL with err. */
inbox_engine *inbox_engine_create(const inbox_engine_config *cfg, inbox_event_fn fn, void *arg,
                                  char *err, size_t errlen);
/* Hands an inbox over (any thread); the engine owns s from here. An inbox with the
 * mailbox id of one already watched replaces it (its state and actions); the
 * connection under way finishes first. */
void inbox_engine_add(inbox_engine *e, inbox_spec *s);
/* inbox_engine_add of n specs at once: one lock and one wake-up of the engine's thread
 * (a 10,000-inbox file is handed over in one go). */
void inbox_engine_add_many(inbox_engine *e, inbox_spec *const *specs, size_t n);
/* Stops watching an inbox (its connection logs out). */
void inbox_engine_drop(inbox_engine *e, int64_t mailbox_id);
/* No new connection; IDLE sessions log out; sessions under way get drain_ms to end,
 * then are cut. The engine ends when none is left (inbox_engine_finished). */
void inbox_engine_stop(inbox_engine *e, int64_t drain_ms);
/* The engine's thread has ended (once: every inbox had its pass; or stopped). */
bool inbox_engine_finished(inbox_engine *e);
/* A descriptor that becomes readable when the engine's thread ends: a waiter sleeps in
 * poll() on it instead of polling inbox_engine_finished (never read or close it). */
int inbox_engine_done_fd(const inbox_engine *e);
/* Joins the thread (stopping it at once if still running) and frees everything. */
void inbox_engine_destroy(inbox_engine *e);

/* Counters for a progress line (any thread). */
typedef struct inbox_engine_progress {
    size_t inboxes, passes_done; /* passes_done: inboxes whose first pass ended */
    size_t polls, idle_sessions, found, actions, failures;
} inbox_engine_progress;
void inbox_engine_progress_get(inbox_engine *e, inbox_engine_progress *out);
/* Prometheus text (kiln_agent_inbox_*), from the metrics thread. */
void inbox_engine_metrics(inbox_engine *e, buf *out);

#endif
