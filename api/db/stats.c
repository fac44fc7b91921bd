/* Quota/health snapshot with a background refresher (see stats.h). */
#include "stats.h"

#include "clock.h"
#include "log.h"
#include "pgarr.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stats {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    stats_snapshot snap;
    char *conninfo;
    int64_t interval_s;
    int64_t period_ms; /* the refresher's actual period: interval, or longer when slow */
    bool running;
    bool started;
    pthread_t thread;
    stats_job job;
    void *job_ctx;
};

static const db_stmt Q_STATS = {
    "stats_snapshot",
    "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'paused'), "
    "count(*) FILTER (WHERE state = 'error'), "
    /* mailbox_today holds live mailboxes only; deleted ones are disabled too (008's
     * partial index keeps this count small). */
    "count(*) FILTER (WHERE state = 'disabled') + "
    "(SELECT count(*) FROM mailboxes WHERE deleted_at IS NOT NULL), "
    "coalesce(sum(target) FILTER (WHERE state = 'active'), 0), coalesce(sum(sent), 0), "
    "coalesce(sum(failed), 0), coalesce(sum(in_flight), 0), "
    "coalesce(sum(least(target, floor(target * window_elapsed)::int)) "
    "  FILTER (WHERE state = 'active'), 0), "
    "count(*) FILTER (WHERE state = 'active' AND sent < target), "
    "count(*) FILTER (WHERE state = 'active' AND sent >= target AND target > 0), "
    "coalesce(sum(greatest(target - sent, 0)) FILTER (WHERE state = 'active' "
    "  AND user_state = 'active'), 0), "
    "(SELECT count(DISTINCT agent_id) FROM leases WHERE " STATS_LIVE_SEND_LEASE "), "
    "(SELECT count(*) FROM leases WHERE " STATS_LIVE_SEND_LEASE "), "
    "(SELECT state = 'running' FROM service), "
    "coalesce(sum(sent) FILTER (WHERE state = 'active'), 0) "
    /* Each row's target once: read through the view directly, its expression (the
     * ramp, the quarantine, the local day) was inlined into each of the five aggregates
     * that use it, and evaluated five times per mailbox. OFFSET 0 keeps the subquery's
     * columns computed once per row: 1.62 -> 1.03 s at 200,000 mailboxes (session 30). */
    "FROM (SELECT state, user_state, target, sent, failed, in_flight, window_elapsed "
    "FROM mailbox_today OFFSET 0) mailbox_today"};

const char *const stats_band_names[STATS_BANDS] = {"new", "good", "watch", "quarantine", "pause"};
const char *const stats_provider_names[STATS_PROVIDERS] = {"gmail", "outlook", "yahoo", "other"};
const char *const stats_inbox_state_names[STATS_INBOX_STATES] = {"none", "unverified", "ok",
                                                                 "failing", "error"};

/* Live mailboxes per band (those without a mailbox_health row are 'new') and inbox
 * state, in the one scan of mailboxes: grouped by the raw columns (at most 6 x 3 x 2 x 2
 * groups) and named in C, so no text is built per row (a CASE naming the state per row
 * was the dearer of the two forms tried at 1,000,000 mailboxes). */
static const db_stmt Q_STATS_BANDS = {
    "stats_bands", "SELECT h.band, m.inbox, m.imap_host IS NULL, m.inbox_error IS NOT NULL, "
                   "count(*) FROM mailboxes m LEFT JOIN mailbox_health h ON h.mailbox_id = m.id "
                   "WHERE m.deleted_at IS NULL GROUP BY 1, 2, 3, 4"};
/* The pool's last 7 UTC days: at most 7 x 4 x 16 counter rows. */
static const db_stmt Q_STATS_POOL = {
    "stats_pool",
    "SELECT provider::text, sum(inbox + junk + other + missing), sum(inbox), sum(junk) "
    "FROM placement_pool_days WHERE day >= (kiln_now() AT TIME ZONE 'UTC')::date - 6 "
    "AND day <= (kiln_now() AT TIME ZONE 'UTC')::date GROUP BY 1"};

static int name_index(const char *const *names, int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], v))
            return i;
    return -1;
}

static bool stats_compute_health(db *d, arena *a, stats_snapshot *out)
{
    PGresult *r = db_exec(d, a, &Q_STATS_BANDS, 0, NULL);
    if (!r)
        return false;
    memset(out->by_band, 0, sizeof out->by_band);
    memset(out->by_inbox, 0, sizeof out->by_inbox);
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t n = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        const char *band = PQgetisnull(r, i, 0) ? "new" : PQgetvalue(r, i, 0);
        const char *inbox = PQgetvalue(r, i, 1);
        if (PQgetvalue(r, i, 2)[0] == 't')
            inbox = "none";
        else if (!strcmp(inbox, "ok") && PQgetvalue(r, i, 3)[0] == 't')
            inbox = "failing";
        int b = name_index(stats_band_names, STATS_BANDS, band);
        if (b >= 0)
            out->by_band[b] += n;
        int st = name_index(stats_inbox_state_names, STATS_INBOX_STATES, inbox);
        if (st >= 0)
            out->by_inbox[st] += n;
    }
    r = db_exec(d, a, &Q_STATS_POOL, 0, NULL);
    if (!r)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        int p = name_index(stats_provider_names, STATS_PROVIDERS, PQgetvalue(r, i, 0));
        if (p < 0)
            continue;
        out->placed_7d[p] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        out->inbox_7d[p] = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        out->junk_7d[p] = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    }
    return true;
}

/* The snapshot is shared by every kiln-api on the database (034): one row, its values
 * in the order of snapshot_field, published by whichever process computed it. */
static const db_stmt Q_SHARED_READ = {
    "stats_shared_read",
    "SELECT (extract(epoch FROM clock_timestamp() - s.computed_at) * 1000)::bigint AS age_ms, "
    "s.took_ms, s.running, x.val FROM stats_snapshot s CROSS JOIN LATERAL unnest(s.v) "
    "WITH ORDINALITY AS x (val, ord) WHERE s.id = 1 ORDER BY x.ord"};
static const db_stmt Q_SHARED_LOCK = {"stats_shared_lock",
                                      "SELECT pg_try_advisory_xact_lock(hashtext('kiln_stats'))"};
static const db_stmt Q_SHARED_WRITE = {
    "stats_shared_write",
    "INSERT INTO stats_snapshot (id, computed_at, took_ms, running, v) "
    "VALUES (1, clock_timestamp(), $1, $2, $3::bigint[]) ON CONFLICT (id) DO UPDATE SET "
    "computed_at = excluded.computed_at, took_ms = excluded.took_ms, "
    "running = excluded.running, v = excluded.v"};

#define SNAPSHOT_FIELDS (14 + STATS_BANDS + 3 * STATS_PROVIDERS + STATS_INBOX_STATES + 1)

/* Field i of the shared row's values (append only: a kiln-api of an older release reads
 * the prefix it knows, a newer one leaves what an older one did not write at 0). */
static int64_t *snapshot_field(stats_snapshot *s, int i)
{
    int64_t *scalars[] = {&s->mailboxes_active,
                          &s->mailboxes_paused,
                          &s->mailboxes_error,
                          &s->mailboxes_disabled,
                          &s->target_today,
                          &s->sent_today,
                          &s->failed_today,
                          &s->in_flight,
                          &s->due_now,
                          &s->behind,
                          &s->met,
                          &s->queue_depth,
                          &s->agents_active,
                          &s->leases_active};
    if (i < 14)
        return scalars[i];
    i -= 14;
    if (i < STATS_BANDS)
        return &s->by_band[i];
    i -= STATS_BANDS;
    if (i < 3 * STATS_PROVIDERS) {
        int64_t *per[] = {s->placed_7d, s->inbox_7d, s->junk_7d};
        return &per[i / STATS_PROVIDERS][i % STATS_PROVIDERS];
    }
    i -= 3 * STATS_PROVIDERS;
    if (i < STATS_INBOX_STATES)
        return &s->by_inbox[i]; /* session 34 */
    return &s->sent_active;     /* session 35 */
}

/* The published snapshot into out: 1 with its age and the time it took to compute, 0
 * when none was published yet, -1 on a database error. */
static int read_shared(db *d, arena *a, stats_snapshot *out, int64_t *age_ms, int64_t *took_ms)
{
    PGresult *r = db_exec(d, a, &Q_SHARED_READ, 0, NULL);
    if (!r)
        return -1;
    int n = PQntuples(r);
    if (n == 0)
        return 0;
    memset(out, 0, sizeof *out);
    *age_ms = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *took_ms = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    out->service_running = PQgetvalue(r, 0, 2)[0] == 't';
    for (int i = 0; i < n && i < SNAPSHOT_FIELDS; i++)
        *snapshot_field(out, i) = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    /* published by a kiln-api older than sent_active (its last field): the nearest it
     * has, not a 0 that would read as nothing sent (a false critical mid-upgrade) */
    if (n < SNAPSHOT_FIELDS)
        out->sent_active = out->sent_today;
    out->computed_at_ms = clock_wall_ms() - (*age_ms > 0 ? *age_ms : 0);
    return 1;
}

static bool publish(db *d, arena *a, stats_snapshot *snap, int64_t took_ms)
{
    pgarr v;
    pgarr_open(&v);
    for (int i = 0; i < SNAPSHOT_FIELDS; i++)
        pgarr_i64(&v, *snapshot_field(snap, i));
    const char *p[] = {db_i64_text(a, took_ms), snap->service_running ? "true" : "false",
                       pgarr_done(&v, a)};
    return db_exec(d, a, &Q_SHARED_WRITE, 3, p) != NULL;
}

/* One refresher turn's snapshot: the published one while it is younger than the
 * period; else whichever kiln-api takes the advisory lock first computes and publishes
 * it (the others keep the published one until their next turn), so N processes cost
 * PostgreSQL one aggregate a period, not N. *took_ms: what computing it took. */
static bool refresh_shared(db *d, arena *a, int64_t period_ms, stats_snapshot *out,
                           int64_t *took_ms)
{
    int64_t age_ms = 0;
    int rc = read_shared(d, a, out, &age_ms, took_ms);
    if (rc < 0)
        return false;
    if (rc == 1 && age_ms < period_ms)
        return true;
    if (!db_begin(d))
        return false;
    PGresult *r = db_exec(d, a, &Q_SHARED_LOCK, 0, NULL);
    if (!r || PQgetvalue(r, 0, 0)[0] != 't') {
        db_rollback(d);
        return r && rc == 1;
    }
    /* Under the lock: another process may have published since the read above. */
    rc = read_shared(d, a, out, &age_ms, took_ms);
    if (rc < 0) {
        db_rollback(d);
        return false;
    }
    if (rc == 1 && age_ms < period_ms) {
        db_rollback(d);
        return true;
    }
    memset(out, 0, sizeof *out);
    int64_t t0 = clock_mono_ms();
    if (!stats_compute(d, a, out)) {
        db_rollback(d);
        return false;
    }
    *took_ms = clock_mono_ms() - t0;
    if (!publish(d, a, out, *took_ms) || !db_commit(d)) {
        log_warn("stats: publishing the snapshot failed: %s", db_message(d));
        db_rollback(d);
    }
    return true;
}

/* Expiry with no agent calling: the refresher also ends leases past their deadline. */
static const db_stmt Q_SWEEP_EXPIRED = {"stats_sweep_expired", "SELECT kiln_sweep_expired(100)"};

bool stats_compute(db *d, arena *a, stats_snapshot *out)
{
    PGresult *r = db_exec(d, a, &Q_STATS, 0, NULL);
    if (!r || PQntuples(r) != 1)
        return false;
    int64_t *f[] = {&out->mailboxes_active,
                    &out->mailboxes_paused,
                    &out->mailboxes_error,
                    &out->mailboxes_disabled,
                    &out->target_today,
                    &out->sent_today,
                    &out->failed_today,
                    &out->in_flight,
                    &out->due_now,
                    &out->behind,
                    &out->met,
                    &out->queue_depth,
                    &out->agents_active,
                    &out->leases_active};
    for (int i = 0; i < 14; i++)
        *f[i] = strtoll(PQgetvalue(r, 0, i), NULL, 10);
    out->service_running = PQgetvalue(r, 0, 14)[0] == 't';
    out->sent_active = strtoll(PQgetvalue(r, 0, 15), NULL, 10);
    if (!stats_compute_health(d, a, out))
        return false;
    out->computed_at_ms = clock_wall_ms();
    return true;
}

stats *stats_create(const char *conninfo, int64_t interval_s)
{
    stats *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    s->conninfo = xstrdup(conninfo);
    s->interval_s = interval_s;
    s->period_ms = interval_s * 1000;
    return s;
}

static void *refresher(void *arg)
{
    stats *s = arg;
    db *d = db_open(s->conninfo);
    arena *a = arena_create(4096);
    pthread_mutex_lock(&s->lock);
    while (s->running) {
        pthread_mutex_unlock(&s->lock);
        stats_snapshot snap;
        memset(&snap, 0, sizeof snap);
        if (!db_exec(d, a, &Q_SWEEP_EXPIRED, 0, NULL))
            log_warn("stats: expiry sweep failed: %s", db_message(d));
        if (s->job) {
            s->job(d, a, s->job_ctx);
            arena_reset(a);
        }
        pthread_mutex_lock(&s->lock);
        int64_t period_ms = s->period_ms;
        pthread_mutex_unlock(&s->lock);
        int64_t took_ms = 0;
        bool ok = refresh_shared(d, a, period_ms, &snap, &took_ms);
        arena_reset(a);
        pthread_mutex_lock(&s->lock);
        if (ok && snap.computed_at_ms >= s->snap.computed_at_ms)
            s->snap = snap;
        /* The aggregate grows with the mailbox count: never spend more than a fifth of
         * the time computing it (10x the mailboxes stretches the period, not the CPU). */
        s->period_ms = s->interval_s * 1000 > took_ms * 5 ? s->interval_s * 1000 : took_ms * 5;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->period_ms / 1000;
        until.tv_nsec += (s->period_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (s->running && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    arena_destroy(a);
    db_close(d);
    return NULL;
}

void stats_set_job(stats *s, stats_job job, void *ctx)
{
    s->job = job;
    s->job_ctx = ctx;
}

int stats_start(stats *s)
{
    s->running = true;
    if (pthread_create(&s->thread, NULL, refresher, s) != 0) {
        s->running = false;
        return -1;
    }
    s->started = true;
    return 0;
}

void stats_stop(stats *s)
{
    if (!s->started)
        return;
    pthread_mutex_lock(&s->lock);
    s->running = false;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->started = false;
}

void stats_destroy(stats *s)
{
    if (!s)
        return;
    stats_stop(s);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s->conninfo);
    free(s);
}

bool stats_get(stats *s, db *d, arena *a, stats_snapshot *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->snap;
    /* Two refresher periods plus slack: older means the refresher is stuck (database
     * down), and the caller computes one itself. */
    int64_t max_age_ms = 2 * s->period_ms + 1000;
    pthread_mutex_unlock(&s->lock);
    if (out->computed_at_ms && clock_wall_ms() - out->computed_at_ms <= max_age_ms)
        return true;
    stats_snapshot fresh;
    memset(&fresh, 0, sizeof fresh);
    if (!stats_compute(d, a, &fresh))
        return false;
    pthread_mutex_lock(&s->lock);
    if (fresh.computed_at_ms > s->snap.computed_at_ms)
        s->snap = fresh;
    pthread_mutex_unlock(&s->lock);
    *out = fresh;
    return true;
}

const double send_latency_buckets[SEND_LATENCY_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,
                                                           2.5,  5,   10,   30,  60};
const double lease_duration_buckets[LEASE_DURATION_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                               0.25,  0.5,  1,     2.5,  5};

int histogram_bucket(const double *bounds, int n, double value)
{
    for (int i = 0; i < n; i++)
        if (value <= bounds[i])
            return i;
    return n;
}

double stats_completion_ratio(const stats_snapshot *s)
{
    return s->target_today > 0 ? (double)s->sent_active / (double)s->target_today : 1.0;
}

const char *health_name(enum health_level h)
{
    return h == HEALTH_CRITICAL ? "critical" : h == HEALTH_DEGRADED ? "degraded" : "healthy";
}

enum health_level stats_health(const stats_snapshot *s, char reasons[][160], int *nreasons,
                               double *completion, double *failure_rate)
{
    enum health_level level = HEALTH_HEALTHY;
    int n = 0;
    *completion = s->due_now > 0 ? (double)s->sent_active / (double)s->due_now : 1.0;
    if (*completion > 1.0)
        *completion = 1.0;
    int64_t attempts = s->sent_today + s->failed_today;
    *failure_rate = attempts > 0 ? (double)s->failed_today / (double)attempts : 0.0;
    if (*completion < 0.5) {
        level = HEALTH_CRITICAL;
        snprintf(reasons[n++], 160, "quota completion %.1f%% of what is due by now (< 50%%)",
                 *completion * 100);
    } else if (*completion < 0.8) {
        level = HEALTH_DEGRADED;
        snprintf(reasons[n++], 160, "quota completion %.1f%% of what is due by now (< 80%%)",
                 *completion * 100);
    }
    if (*failure_rate > 0.10) {
        level = HEALTH_CRITICAL;
        snprintf(reasons[n++], 160, "failure rate %.1f%% today (> 10%%)", *failure_rate * 100);
    } else if (*failure_rate >= 0.05) {
        if (level < HEALTH_DEGRADED)
            level = HEALTH_DEGRADED;
        snprintf(reasons[n++], 160, "failure rate %.1f%% today (5-10%%)", *failure_rate * 100);
    }
    if (s->service_running && s->agents_active == 0 && s->due_now > s->sent_active) {
        if (level < HEALTH_DEGRADED)
            level = HEALTH_DEGRADED;
        snprintf(reasons[n++], 160, "no active agent while %lld sends are due by now",
                 (long long)(s->due_now - s->sent_active));
    }
    if (!s->service_running && n < HEALTH_MAX_REASONS)
        snprintf(reasons[n++], 160, "service is stopped");
    *nreasons = n;
    return level;
}
