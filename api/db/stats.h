/* The quota/health snapshot behind /metrics, /api/warmup/metrics and health: one
 * aggregate over mailbox_today (never over sends), refreshed by a background thread
 * every KILN_STATS_INTERVAL_S so scrapes stay cheap at 100,000+ mailboxes. */
#ifndef KILN_STATS_H
#define KILN_STATS_H

#include "arena.h"
#include "db.h"

#include <stdbool.h>
#include <stdint.h>

/* SQL: a live send lease, as kiln_agents_active, kiln_leases_active and
 * GET /api/warmup/control count them. Inbox leases (long-lived, one per watching agent)
 * are counted apart (kiln_inbox_leases_active): counted here, an agent that only watches
 * inboxes kept KilnNoActiveAgent quiet while no mail was leased. */
#define STATS_LIVE_SEND_LEASE "ended_at IS NULL AND expires_at > kiln_now() AND kind = 'send'"

#define STATS_BANDS 5
#define STATS_PROVIDERS 4
#define STATS_INBOX_STATES 5
extern const char *const stats_band_names[STATS_BANDS];
extern const char *const stats_provider_names[STATS_PROVIDERS];
/* none (no IMAP access), unverified, ok, failing (ok, its visits not completing:
 * inbox_error set), error. */
extern const char *const stats_inbox_state_names[STATS_INBOX_STATES];

typedef struct stats_snapshot {
    int64_t computed_at_ms; /* wall clock; 0 = never */
    int64_t mailboxes_active, mailboxes_paused, mailboxes_error, mailboxes_disabled;
    int64_t target_today, sent_today, failed_today, in_flight, due_now;
    int64_t behind, met, queue_depth;
    int64_t agents_active, leases_active;
    bool service_running;
    /* Mailbox health (015): live mailboxes per band (new, good, watch, quarantine,
     * pause) and the pool's placements over the last 7 UTC days per recipient provider
     * (gmail, outlook, yahoo, other) from placement_pool_days. */
    int64_t by_band[STATS_BANDS];
    int64_t placed_7d[STATS_PROVIDERS], inbox_7d[STATS_PROVIDERS], junk_7d[STATS_PROVIDERS];
    /* Live mailboxes by inbox state (stats_inbox_state_names). */
    int64_t by_inbox[STATS_INBOX_STATES];
    /* Sent today by the active mailboxes only: what due_now and target_today (active
     * only) are compared with. sent_today also counts the mailboxes paused or in error
     * since they sent, which made the completion read higher than it was (session 35). */
    int64_t sent_active;
} stats_snapshot;

typedef struct stats stats;

stats *stats_create(const char *conninfo, int64_t interval_s);
/* A job the refresher runs before each snapshot on its own connection (the health
 * judge: api/health/health_sweep.h); set before stats_start. */
typedef void (*stats_job)(db *d, arena *a, void *ctx);
void stats_set_job(stats *s, stats_job job, void *ctx);
/* Starts the refresh thread. */
int stats_start(stats *s);
void stats_stop(stats *s);
void stats_destroy(stats *s);
/* Copies the latest snapshot; computes one with d when none exists yet or the
 * refresher has fallen behind. Returns false when the database is unavailable. */
bool stats_get(stats *s, db *d, arena *a, stats_snapshot *out);
/* Computes a fresh snapshot with d (no caching). */
bool stats_compute(db *d, arena *a, stats_snapshot *out);

enum health_level { HEALTH_HEALTHY = 0, HEALTH_DEGRADED = 1, HEALTH_CRITICAL = 2 };

#define HEALTH_MAX_REASONS 4
/* Judges a snapshot with the legacy thresholds, against what is due by now:
 * completion (the active mailboxes' sent / due by now) < 80 % degraded, < 50 % critical; failure
 * rate 5-10 % degraded, > 10 % critical; no agent while sends are owed: degraded. Fills up to
 * HEALTH_MAX_REASONS one-line reasons; returns the level. */
enum health_level stats_health(const stats_snapshot *s, char reasons[][160], int *nreasons,
                               double *completion, double *failure_rate);
const char *health_name(enum health_level h);
/* What the active mailboxes sent today over their targets (1 when no target):
 * kiln_quota_completion_ratio and the JSON metrics' completion_ratio. */
double stats_completion_ratio(const stats_snapshot *s);

/* Latency histogram buckets (seconds, upper bounds; +Inf implied). */
#define SEND_LATENCY_BUCKETS 10
#define LEASE_DURATION_BUCKETS 10
extern const double send_latency_buckets[SEND_LATENCY_BUCKETS];
extern const double lease_duration_buckets[LEASE_DURATION_BUCKETS];
/* Index of the bucket a value falls in (n = +Inf). */
int histogram_bucket(const double *bounds, int n, double value);

#endif
