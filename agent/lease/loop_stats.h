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
    spool *sp; /* for kiln_agent_spool_bytes */
} loop_stats;

/* The series of docs/agent-run.md ("Metrics"), after the engine's; arg is the
 * loop_stats (a metrics_http_extra_fn, on the metrics thread). */
void loop_stats_metrics(void *arg, buf *out);

#endif
