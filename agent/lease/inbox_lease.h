/* The lease loop's inbox side (openapi InboxLease): the inbox engine fed from the lease
 * answers' "inboxes" (merged by mailbox id), the inbox lease renewed by heartbeat (its
 * inboxes_dropped dropped, a lost lease drops them all), the engine's events reported
 * in batches as "inbox_events", and at the drain: the engine stopped, what is left
 * reported, the lease released. Runs on the control thread; the engine's events come
 * in from its thread under a mutex. Events are kept in memory (not in the spool yet):
 * a crash loses the unreported ones, and the next holder re-finds them from the
 * folder state last reported. */
#ifndef KILN_INBOX_LEASE_H
#define KILN_INBOX_LEASE_H

#include "agent_config.h"
#include "buf.h"
#include "control.h"
#include "inbox_engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct inbox_lease {
    inbox_engine *ie;
    const agent_config *cfg;
    /* events from the engine's thread: InboxEvent objects, comma-separated */
    pthread_mutex_t mu;
    buf pending;
    size_t npending;
    size_t *ends; /* where each pending event ends in pending */
    size_t ends_cap;
    /* the control thread's */
    bool held;
    char lease_id[65];
    int64_t ttl_s, heartbeat_ms, next_hb_ms;
    int64_t *mailboxes; /* the mailbox ids handed to the engine */
    size_t nmailboxes, mailbox_cap;
    buf sending; /* a report's events, kept until the control plane has them */
    size_t nsending;
    int64_t next_report_ms, report_backoff_ms, first_pending_ms;
    bool stopping, released;
    atomic_llong reported, report_failures, heartbeats, lost;
} inbox_lease;

/* Starts the inbox engine (KILN_AGENT_IMAP_* tuning). -1 with err. */
int inbox_lease_start(inbox_lease *il, const agent_config *cfg, char *err, size_t errlen);
/* A lease answer's body (200): its inbox lease and inboxes, if any. */
void inbox_lease_answer(inbox_lease *il, const char *data, size_t len, int64_t now);
/* Heartbeat, reports, and at the drain the release. */
void inbox_lease_tick(inbox_lease *il, control *ctl, int64_t now, bool draining);
/* The drain is over: the engine ended, every event reported (or given up), released. */
bool inbox_lease_drained(inbox_lease *il);
void inbox_lease_free(inbox_lease *il);
/* The engine's and the reports' metrics (from the metrics thread). */
void inbox_lease_metrics(inbox_lease *il, buf *out);

#endif
