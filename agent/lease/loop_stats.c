/* The lease loop's metrics on /metrics (see loop_stats.h). */
#include "loop_stats.h"

static void metric(buf *out, const char *name, const char *type, const char *help, double v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* The lease loop's inbox side (docs/agent-run.md, "Inbox leases"). */
static void inbox_metrics(loop_stats *m, buf *out)
{
    metric(out, "kiln_agent_inbox_leases_total", "counter",
           "Inbox lease answers taken (a new lease or the same one listed again).",
           (double)atomic_load(&m->inbox_leases));
    metric(out, "kiln_agent_inbox_events_total", "counter",
           "Inbox events taken into the spool (found, action, folder_state, session).",
           (double)atomic_load(&m->inbox_events));
    metric(out, "kiln_agent_inbox_events_refused_total", "counter",
           "Inbox events refused: malformed, for an inbox not held, or a second outcome of "
           "one action.",
           (double)atomic_load(&m->inbox_events_refused));
    metric(out, "kiln_agent_inbox_events_reported_total", "counter",
           "Inbox events the control plane accepted.", (double)atomic_load(&m->inbox_reported));
    metric(out, "kiln_agent_inbox_events_dropped_total", "counter",
           "Inbox events the control plane refused for good.",
           (double)atomic_load(&m->inbox_dropped));
    metric(out, "kiln_agent_inbox_report_failures_total", "counter",
           "Inbox event reports that failed and were kept in the spool.",
           (double)atomic_load(&m->inbox_report_failures));
    metric(out, "kiln_agent_inbox_heartbeat_failures_total", "counter",
           "Inbox lease heartbeats without an answer.",
           (double)atomic_load(&m->inbox_heartbeat_failures));
    metric(out, "kiln_agent_inbox_leases_held", "gauge", "Inbox leases this agent holds now.",
           (double)atomic_load(&m->inbox_leases_held));
    metric(out, "kiln_agent_inboxes_held", "gauge", "Inboxes held (watched when an engine runs).",
           (double)atomic_load(&m->inboxes_held));
    metric(out, "kiln_agent_inbox_events_unreported", "gauge",
           "Inbox events in the spool not yet accepted by the control plane.",
           (double)atomic_load(&m->inbox_unreported));
}

void loop_stats_metrics(void *arg, buf *out)
{
    loop_stats *m = arg;
    metric(out, "kiln_agent_leases_total", "counter", "Leases granted with work.",
           (double)atomic_load(&m->leases));
    metric(out, "kiln_agent_lease_failures_total", "counter",
           "Lease requests without a usable answer (network, 5xx, 4xx, bad JSON).",
           (double)atomic_load(&m->lease_failures));
    metric(out, "kiln_agent_leased_slots_total", "counter", "Slots received in leases.",
           (double)atomic_load(&m->slots));
    metric(out, "kiln_agent_reported_total", "counter", "Results the control plane accepted.",
           (double)atomic_load(&m->reported));
    metric(out, "kiln_agent_report_failures_total", "counter",
           "Report calls that failed and were kept in the spool for another try.",
           (double)atomic_load(&m->report_failures));
    metric(out, "kiln_agent_results_dropped_total", "counter",
           "Results the control plane refused for good (foreign or unknown send, gone lease).",
           (double)atomic_load(&m->dropped));
    metric(out, "kiln_agent_heartbeat_failures_total", "counter",
           "Heartbeats without an answer (retried in 5 s).",
           (double)atomic_load(&m->heartbeat_failures));
    metric(out, "kiln_agent_leases_lost_total", "counter",
           "Leases the control plane ended under the agent (expired, released, unknown).",
           (double)atomic_load(&m->leases_lost));
    metric(out, "kiln_agent_leases_held", "gauge", "Leases this agent holds now.",
           (double)atomic_load(&m->held));
    metric(out, "kiln_agent_slots_outstanding", "gauge", "Leased slots without a final result yet.",
           (double)atomic_load(&m->outstanding));
    metric(out, "kiln_agent_results_unreported", "gauge",
           "Results in the spool not yet accepted by the control plane.",
           (double)atomic_load(&m->unreported));
    metric(out, "kiln_agent_spool_bytes", "gauge", "Size of the report spool file.",
           (double)spool_file_bytes(m->sp));
    metric(out, "kiln_agent_last_lease_timestamp_seconds", "gauge",
           "Unix time of the last lease answer (with or without work); 0 before the first.",
           (double)atomic_load(&m->last_lease_unix_ms) / 1000.0);
    metric(out, "kiln_agent_last_report_timestamp_seconds", "gauge",
           "Unix time the control plane last accepted a report; 0 before the first.",
           (double)atomic_load(&m->last_report_unix_ms) / 1000.0);
    metric(out, "kiln_agent_draining", "gauge", "1 while a SIGTERM drain is under way.",
           atomic_load(&m->draining) ? 1 : 0);
    inbox_metrics(m, out);
    if (m->inbox_metrics && m->inbox_engine)
        m->inbox_metrics(m->inbox_engine, out);
}
