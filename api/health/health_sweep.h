/* The mailbox health judge (docs/design.md "Mailbox health"): picks a bounded batch of
 * mailboxes whose rollups changed (senders queued by the placements trigger, 023, and
 * mailbox_health.dirty, set by 015's bounce trigger, resumes and stale bands), sums
 * their last 7 days (from when each became active, if later) from placement_days and
 * mailbox_days, judges them with health_judge and acts on a band change: the
 * mailbox.health_changed webhook, quarantine (mailboxes.quarantine_from/_until, which
 * kiln_mailbox_target reads) and pause (mailboxes.state = 'paused'). Run by the stats
 * refresher between snapshots, never by an API request. */
#ifndef KILN_HEALTH_SWEEP_H
#define KILN_HEALTH_SWEEP_H

#include "arena.h"
#include "db.h"
#include "health.h"

#include <stdint.h>

typedef struct health_config {
    health_thresholds t;
    int64_t quarantine_days; /* how long a quarantine holds the target at the floor (3) */
    int64_t batch;           /* mailboxes judged per transaction (500) */
} health_config;

/* Judges up to cfg->batch dirty mailboxes in one transaction. Returns how many were
 * judged, or -1 on a database error (logged; the transaction is rolled back). */
int health_sweep(db *d, arena *a, const health_config *cfg);

#endif
