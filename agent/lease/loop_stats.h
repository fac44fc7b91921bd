/* The lease loop's counters and gauges, for its log lines and for /metrics. Written by
 * the control thread, read by the metrics thread (atomics only). */
#ifndef KILN_LOOP_STATS_H
#define KILN_LOOP_STATS_H

#include "buf.h"
#include "spool.h"

#include <stdatomic.h>

typedef struct loop_stats {
    atomic_llong leases, lease_failures, slots, reported, report_failures, dropped;
    atomic_llong heartbeat_failures, leases_lost;
    atomic_llong held, outstanding, unreported; /* copies, published every turn */
    atomic_llong last_lease_unix_ms, last_report_unix_ms;
    atomic_bool draining;
    /* the inbox side */
    atomic_llong inbox_leases, inbox_events, inbox_events_refused, inbox_reported;
    atomic_llong inbox_dropped, inbox_report_failures, inbox_heartbeat_failures;
    atomic_llong inbox_leases_held, inboxes_held, inbox_unreported; /* gauges */
    spool *sp;                                                      /* for kiln_agent_spool_bytes */
    void (*inbox_metrics)(void *, buf *); /* the inbox engine's series, when one is linked */
    void *inbox_engine;
} loop_stats;

/* The series of docs/agent-run.md ("Metrics"), after the engine's; arg is the
 * loop_stats (a metrics_http_extra_fn, on the metrics thread). */
void loop_stats_metrics(void *arg, buf *out);

#endif
