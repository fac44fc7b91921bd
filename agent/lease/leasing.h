/* The lease loop's state, wired by run.c, and its calls to the control plane: lease
 * when there is room, heartbeat (renew, cancel) each lease, release a lease with
 * nothing left, and the replay of the spool at start. Everything here runs on the
 * control thread. */
#ifndef KILN_LEASING_H
#define KILN_LEASING_H

#include "agent_config.h"
#include "control.h"
#include "engine.h"
#include "inbox_leases.h"
#include "lease_table.h"
#include "loop_stats.h"
#include "report_queue.h"
#include "spool.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct lease_loop {
    agent_config cfg; /* reloaded in place on SIGHUP */
    engine *e;
    control *ctl; /* replaced on SIGHUP when the URL, token or CA changed */
    spool *sp;
    lease_table leases;
    report_queue reports;
    inbox_leases inboxes; /* the inbox side: its leases, the engine's events */
    loop_stats stats;
    int64_t next_lease_ms, lease_backoff_ms;
    int64_t next_inbox_ms; /* held inboxes are listed again (new actions) from then on */
    int64_t last_ttl_s;    /* of the last lease: sizes the capacity */
    bool draining;
    volatile bool abort_http; /* set when a drain must not wait on retries */
} lease_loop;

/* POST /api/agent/lease when there is room, and hand what comes to the engine. */
void leasing_lease(lease_loop *lp, int64_t now);
/* Heartbeats every lease whose time has come (not while draining). */
void leasing_heartbeats(lease_loop *lp, int64_t now);
/* Releases leases with nothing left in the engine (or all, draining) and nothing left
 * to report. */
void leasing_release_idle(lease_loop *lp, int64_t now, bool all);
/* The spool's replay at start: results to report, leases of the previous run to
 * release at once. */
void leasing_replay(lease_loop *lp, const spool_replay *rep);

#endif
