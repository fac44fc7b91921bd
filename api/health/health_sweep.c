/* The mailbox health judge (see health_sweep.h). */
#include "health_sweep.h"

#include "log.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expired quarantines and non-good bands not judged for a day are judged again: the
 * 7-day window slides even when no event arrives (mailbox_health_band_idx keeps these
 * scans to the few mailboxes outside 'good'). */
static const db_stmt Q_MARK_STALE = {
    "health_mark_stale",
    "UPDATE mailbox_health h SET dirty = true "
    "FROM (SELECT kiln_now() AS now OFFSET 0) c, mailboxes m "
    "WHERE m.id = h.mailbox_id AND NOT h.dirty AND h.band IN ('watch', 'quarantine', 'pause') "
    "AND ((h.band = 'quarantine' AND m.quarantine_until <= c.now) "
    "  OR h.judged_at < c.now - interval '1 day')"};

/* The senders the placements trigger queued (023: one health_queue row per placing
 * statement), popped in this pass's transaction: at least cfg->batch of them, whole
 * rows. They are judged beside the dirty rows without being marked dirty first. */
static const db_stmt Q_POP = {"health_pop", "SELECT kiln_health_pop($1::int)"};

/* The batch: the 7-day sums of each dirty or queued mailbox (a queued one may have no
 * mailbox_health row yet: 'new', no baseline). The window's first day is the later
 * of 6 days before today and the day the mailbox became active (UTC days for the
 * placement rollups, the mailbox's local days for mailbox_days). */
static const db_stmt Q_BATCH = {
    "health_batch",
    "WITH d AS (SELECT mailbox_id FROM mailbox_health WHERE dirty ORDER BY mailbox_id "
    "  LIMIT $1 FOR UPDATE SKIP LOCKED), "
    "b AS (SELECT mailbox_id FROM d UNION SELECT unnest($2::bigint[])) "
    "SELECT m.id, m.user_id, coalesce(h.band, 'new'), "
    "  coalesce(m.quarantine_until > c.now, false), m.state = 'active', "
    /* less the baseline of a resume day still in the window (015: mailbox_health.base_*) */
    "  coalesce(pd.inbox, 0) - CASE WHEN h.base_day >= w.day THEN h.base_inbox ELSE 0 END, "
    "  coalesce(pd.junk, 0) - CASE WHEN h.base_day >= w.day THEN h.base_junk ELSE 0 END, "
    "  coalesce(pd.other, 0) - CASE WHEN h.base_day >= w.day THEN h.base_other ELSE 0 END, "
    "  coalesce(pd.missing, 0) - CASE WHEN h.base_day >= w.day THEN h.base_missing ELSE 0 END, "
    "  coalesce(md.sent, 0) - CASE WHEN h.base_local_day >= w.local_day THEN h.base_sent "
    "    ELSE 0 END, "
    "  coalesce(md.failed, 0) - CASE WHEN h.base_local_day >= w.local_day THEN h.base_failed "
    "    ELSE 0 END, "
    "  coalesce(pd.auth_seen, 0) - CASE WHEN h.base_day >= w.day THEN h.base_auth_seen ELSE 0 END, "
    "  coalesce(pd.auth_failed, 0) - CASE WHEN h.base_day >= w.day THEN h.base_auth_failed "
    "    ELSE 0 END "
    "FROM b JOIN mailboxes m ON m.id = b.mailbox_id "
    "LEFT JOIN mailbox_health h ON h.mailbox_id = b.mailbox_id "
    "CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) c " /* once per statement */
    "CROSS JOIN LATERAL (SELECT greatest(c.now - interval '6 days', m.active_since) AS ws) s "
    "CROSS JOIN LATERAL (SELECT (s.ws AT TIME ZONE 'UTC')::date AS day, "
    "  (s.ws AT TIME ZONE m.timezone)::date AS local_day) w "
    "LEFT JOIN LATERAL (SELECT sum(inbox) AS inbox, sum(junk) AS junk, sum(other) AS other, "
    "  sum(missing) AS missing, sum(auth_seen) AS auth_seen, sum(auth_failed) AS auth_failed "
    "  FROM placement_days d WHERE d.mailbox_id = m.id "
    "  AND d.day >= w.day AND d.day <= (c.now AT TIME ZONE 'UTC')::date) pd ON true "
    "LEFT JOIN LATERAL (SELECT sum(sent) AS sent, sum(failed) AS failed FROM mailbox_days d "
    "  WHERE d.mailbox_id = m.id AND d.day >= w.local_day "
    "  AND d.day <= (c.now AT TIME ZONE m.timezone)::date) md ON true "
    "ORDER BY m.id"};

static const db_stmt Q_SAVE = {
    "health_save",
    "INSERT INTO mailbox_health AS h (mailbox_id, band, score, reason, judged_at, dirty) "
    "VALUES ($1, $2::health_band, $3::smallint, $4, kiln_now(), false) "
    "ON CONFLICT (mailbox_id) DO UPDATE SET band_since = CASE WHEN h.band <> excluded.band "
    "  THEN kiln_now() ELSE h.band_since END, band = excluded.band, score = excluded.score, "
    "  reason = excluded.reason, judged_at = excluded.judged_at, dirty = false"};

static const db_stmt Q_QUARANTINE = {
    "health_quarantine",
    "UPDATE mailboxes SET quarantine_from = kiln_now(), "
    "  quarantine_until = kiln_now() + make_interval(days => $2::int) WHERE id = $1 "
    "RETURNING kiln_iso(quarantine_until)"};

/* The existing mailboxes trigger (013) emits mailbox.paused. */
static const db_stmt Q_PAUSE = {
    "health_pause", "UPDATE mailboxes SET state = 'paused', last_error = 'health: ' || $2, "
                    "last_error_at = kiln_now(), updated_at = now() "
                    "WHERE id = $1 AND state = 'active' AND deleted_at IS NULL"};

typedef struct judged {
    int64_t id, user_id;
    health_band previous, band;
    bool held, active;
    health_result res;
} judged;

static void judge_row(const PGresult *r, int i, const health_config *cfg, judged *j)
{
    j->id = db_i64(r, i, 0);
    j->user_id = db_i64(r, i, 1);
    if (!health_band_parse(PQgetvalue(r, i, 2), &j->previous))
        j->previous = HEALTH_NEW;
    j->held = PQgetvalue(r, i, 3)[0] == 't';
    j->active = PQgetvalue(r, i, 4)[0] == 't';
    health_counts c = {.inbox = db_i64(r, i, 5),
                       .junk = db_i64(r, i, 6),
                       .other = db_i64(r, i, 7),
                       .missing = db_i64(r, i, 8),
                       .sent = db_i64(r, i, 9),
                       .bounced = db_i64(r, i, 10),
                       .auth_seen = db_i64(r, i, 11),
                       .auth_failed = db_i64(r, i, 12)};
    /* An expired quarantine is judged afresh (no hysteresis holding it): still at the
     * threshold means a new quarantine. */
    health_band prev = j->previous == HEALTH_QUARANTINE && !j->held ? HEALTH_WATCH : j->previous;
    health_judge(&c, &cfg->t, prev, &j->res);
    j->band = j->res.band;
    if (j->previous == HEALTH_QUARANTINE && j->held && j->band < HEALTH_QUARANTINE) {
        /* A quarantine lasts its days whatever the shares do meanwhile. */
        j->band = HEALTH_QUARANTINE;
        j->res.reason = "quarantined: held at the ramp's floor until quarantine_until";
    }
}

/* Acts on j's band change (webhook, quarantine, pause); -1 on a database error. */
static int act(db *d, arena *a, const health_config *cfg, const judged *j)
{
    bool renew = j->previous == HEALTH_QUARANTINE && j->band == HEALTH_QUARANTINE && !j->held;
    if (j->band == j->previous && !renew)
        return 0;
    char until[40] = "null";
    if (j->band == HEALTH_QUARANTINE) {
        const char *p[] = {db_i64_text(a, j->id), db_i64_text(a, cfg->quarantine_days)};
        PGresult *q = db_exec(d, a, &Q_QUARANTINE, 2, p);
        if (!q)
            return -1;
        if (PQntuples(q) == 1)
            snprintf(until, sizeof until, "\"%s\"", PQgetvalue(q, 0, 0));
    }
    if (j->band == HEALTH_PAUSE && j->active) {
        const char *p[] = {db_i64_text(a, j->id), j->res.reason};
        if (!db_exec(d, a, &Q_PAUSE, 2, p))
            return -1;
    }
    char score[16] = "null", payload[512];
    if (j->res.score >= 0)
        snprintf(score, sizeof score, "%d", j->res.score);
    /* reason and band names are static texts of health.c: no characters to escape. */
    snprintf(payload, sizeof payload,
             "{\"old_band\":\"%s\",\"new_band\":\"%s\",\"score\":%s,\"reason\":\"%s\","
             "\"quarantine_until\":%s}",
             health_band_name(j->previous), health_band_name(j->band), score, j->res.reason, until);
    return webhook_emit(d, a, j->user_id, WEBHOOK_MAILBOX_HEALTH_CHANGED, j->id, payload);
}

static int save(db *d, arena *a, const judged *j)
{
    const char *p[] = {db_i64_text(a, j->id), health_band_name(j->band),
                       j->res.score >= 0 ? db_i64_text(a, j->res.score) : NULL, j->res.reason};
    return db_exec(d, a, &Q_SAVE, 4, p) ? 0 : -1;
}

int health_sweep(db *d, arena *a, const health_config *cfg)
{
    if (!db_begin(d))
        goto fail;
    if (!db_exec(d, a, &Q_MARK_STALE, 0, NULL))
        goto fail;
    const char *p[] = {db_i64_text(a, cfg->batch), NULL};
    PGresult *q = db_exec(d, a, &Q_POP, 1, p);
    if (!q)
        goto fail;
    p[1] = PQgetvalue(q, 0, 0);
    PGresult *r = db_exec(d, a, &Q_BATCH, 2, p);
    if (!r)
        goto fail;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        judged j;
        memset(&j, 0, sizeof j);
        judge_row(r, i, cfg, &j);
        if (act(d, a, cfg, &j) != 0 || save(d, a, &j) != 0)
            goto fail;
    }
    if (!db_commit(d))
        goto fail;
    return n;
fail:
    log_warn("health: judging failed: %s", db_message(d));
    if (db_in_tx(d))
        db_rollback(d);
    return -1;
}
