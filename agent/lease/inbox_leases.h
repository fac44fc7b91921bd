/* The inbox leases this agent holds (issues 12 and 13; openapi InboxLease): which inboxes,
 * with their access, poll class, folder state and pending actions as last leased; their
 * renewal by heartbeat before the TTL, the drops a heartbeat names, the release on a
 * SIGTERM drain; and the events an inbox engine hands back (inbox_feed.h), made durable
 * in the report spool and reported in batches per lease (inbox_reports.c).
 *
 * Threads: everything runs on the control thread but inbox_leases_emit, which the engine
 * calls from its own thread; what both touch is under mu. An inbox is watched only while
 * its lease is known to be alive: when heartbeats fail until the lease's TTL has passed
 * (counted from the last renewal's request), its inboxes are unwatched, since the control
 * plane is about to give them to another agent. */
#ifndef KILN_INBOX_LEASES_H
#define KILN_INBOX_LEASES_H

#include "agent_config.h"
#include "agent_wire.h"
#include "control.h"
#include "i64map.h"
#include "inbox_feed.h"
#include "loop_stats.h"
#include "spool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One inbox lease. */
typedef struct inbox_lease {
    char id[SPOOL_LEASE_ID_MAX + 1];
    int64_t ttl_s, heartbeat_s;
    int64_t next_hb_ms;
    int64_t expires_ms; /* the last renewal's request + ttl: past it the inboxes are not ours */
    int64_t next_release_ms;
    size_t ninboxes;   /* inboxes held under it */
    size_t unreported; /* its events queued, not acknowledged */
    bool gone;         /* ended (server, expiry, previous run): release once reported */
    struct inbox_lease *next;
} inbox_lease;

/* One inbox held: the entry as last leased, with its actions narrowed to those still to
 * do (absolute not_before_ms). */
typedef struct held_inbox {
    wire_inbox *w;
    inbox_lease *lease;
} held_inbox;

/* An event in the spool, waiting for the control plane (json owned). */
typedef struct queued_event {
    spool_inbox_event e;
    uint64_t seq; /* its record's sequence number (for spool_sync); 0: done */
    int64_t queued_ms;
} queued_event;

typedef struct inbox_leases {
    inbox_lease *head;
    size_t count;
    i64map held;     /* mailbox id -> held_inbox * (control thread) */
    i64map rejected; /* mailbox id -> hash of the reason its entry was last set aside */
    const inbox_feed_engine *ops;
    void *engine; /* NULL: no engine linked (the inboxes are held, not watched) */
    bool stopping;
    /* inbox_lease.cursor of the last answer merged (sent as inbox_cursor: the held
     * inboxes then come as updates); 0 after anything that may leave it short of an
     * inbox the control plane counts as ours (a lease ended here, an update for an
     * inbox not held): the next answer lists every inbox in full */
    int64_t cursor;
    bool cursor_lost;
    spool *sp;
    loop_stats *stats;
    const agent_config *cfg;
    const volatile bool *abort; /* a drain: one try per call */
    /* the report queue (control thread) */
    queued_event *q;
    size_t nq, qcap;
    int64_t backoff_ms, next_report_ms;
    /* shared with the engine's thread */
    pthread_mutex_t mu;
    i64map lease_of;     /* mailbox id -> inbox_lease * of the inboxes held */
    i64map actions_done; /* action id -> 0 (outcome taken) or the ack's time in ms */
    queued_event *in;    /* taken by emit, not yet in q */
    size_t nin, incap;
} inbox_leases;

void inbox_leases_init(inbox_leases *il, spool *sp, loop_stats *stats, const agent_config *cfg,
                       const volatile bool *abort);
/* Starts the engine (ops may be NULL: none). 0, or -1 with err. */
int inbox_leases_start(inbox_leases *il, const inbox_feed_engine *ops, char *err, size_t errlen);
/* Frees everything (the engine is destroyed first). */
void inbox_leases_free(inbox_leases *il);

/* max_inboxes for a lease request: KILN_AGENT_MAX_INBOXES less the inboxes held (0
 * while stopping). */
size_t inbox_leases_room(const inbox_leases *il);
/* Inboxes watched now (0 while stopping). */
size_t inbox_leases_held(const inbox_leases *il);
/* A lease answer's inbox part: a new lease or the same one again; inboxes added, changed
 * (access, poll class, warmup folder, new actions) or kept; entries set aside reported as
 * session events (protocol). asked_ms/got_ms: when the request left and the answer came. */
void inbox_leases_grant(inbox_leases *il, const wire_inbox_part *part, int64_t asked_ms,
                        int64_t got_ms);
/* Heartbeats the leases whose time has come; unwatches the inboxes of a lease past its
 * TTL without a renewal. */
void inbox_leases_heartbeats(inbox_leases *il, control *ctl, int64_t now);
/* Releases the leases that ended (all, when draining) once their events are reported. */
void inbox_leases_release(inbox_leases *il, control *ctl, int64_t now, bool all);
/* SIGTERM: the engine stops within drain_ms; the leases are released once it finished
 * and their events are reported. */
void inbox_leases_stop(inbox_leases *il, int64_t drain_ms);
/* Nothing held, nothing to report (a drain may end). */
bool inbox_leases_idle(inbox_leases *il);
/* The spool's replay at start: events to report, leases of the previous run to release. */
void inbox_leases_replay(inbox_leases *il, const spool_replay *rep);

/* ---- events (inbox_reports.c) ---- */

/* The feed_emit_fn handed to the engine (arg: the inbox_leases); any thread. */
int inbox_leases_emit(void *arg, const feed_event *ev);
/* Takes what emit queued into the report queue (control thread, every turn). */
void inbox_reports_collect(inbox_leases *il, int64_t now);
/* Reports what is due (a full batch, or events older than the report interval; all when
 * force). */
void inbox_reports_flush(inbox_leases *il, control *ctl, int64_t now, bool force);
/* Forgets acknowledged action ids after a while (a later answer may still name one the
 * control plane had not heard of when it answered). */
void inbox_reports_prune(inbox_leases *il, int64_t now);

/* Inside the module: a held inbox leaves (unwatched, maps updated). */
void inbox_leases_forget(inbox_leases *il, int64_t mailbox_id, const char *why);

#endif
