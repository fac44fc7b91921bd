/* A report's statements (see lease_store.h): the lease it names, the fence and the
 * apply, with its counters and quota in the same statement. Rules: docs/leasing.md
 * "Report"; why the apply has two forms: docs/design.md "Reports without row locks". */
#include "lease_store.h"

#include "lease_reply.h"
#include "mailbox_states.h"
#include "rand.h"

#include <string.h>

static const db_stmt Q_LEASE_GET = {
    "agent_lease_get",
    /* expired: it reached its expiry before it ended (a release before the expiry time is
     * not an expiry, however long ago it was) */
    "SELECT agent_id, ended_at IS NOT NULL AS ended, "
    "coalesce(ended_at, kiln_now()) >= expires_at AS expired, ttl_s, "
    "kind = 'inbox' AS inbox FROM leases "
    "WHERE id = $1::uuid"};

/* Which of the reported ids belong to this lease (the fence). */
static const db_stmt Q_REPORT_FENCE = {
    "agent_report_fence",
    "SELECT x.ord, (s.lease_id IS NOT DISTINCT FROM $1::uuid) AS ours FROM unnest($2::bigint[]) "
    "WITH ORDINALITY AS x (id, ord) LEFT JOIN sends s ON s.id = x.id "
    "AND s.id BETWEEN $3::bigint AND $4::bigint ORDER BY x.ord"};

/* The results, one row each ($9: the latency histogram label, picked in C). */
#define REPORT_ROWS                                                                                \
    "WITH r AS (SELECT * FROM unnest($2::bigint[], $3::send_status[], $4::int[], $5::text[], "     \
    "  $6::text[], $7::int[], $9::text[]) AS r (id, status, code, enh, detail, latency, lb)), "
/* The ids' range ($10, $11, from kiln-api): only their day partitions are read (the
 * lease_id probe alone would visit every day's index). Given as values, not read from r,
 * so the plan made for each call (below) is pruned to those days when it is made: with
 * the range from r, every report planned the update for every day partition kept
 * (KILN_SENDS_RETENTION_DAYS, 90) to prune them only when it ran. */
#define REPORT_RANGE "AND s.id BETWEEN $10::bigint AND $11::bigint "
#define REPORT_SET(x)                                                                              \
    "status = " x ".status, smtp_code = " x ".code, enhanced_code = " x ".enh, detail = " x        \
    ".detail, latency_ms = " x ".latency, reported_at = (SELECT kiln_now()) "
/* What upd (the slots the report moved, with their status before it: old) feeds, in
 * the same statement: the senders' day counts, their leasing rows (freed when nothing
 * is pending, with the due time of a freed row; the last send, 036), an authentication
 * failure on the mailbox, the counters.
 * agg: per sender and day, what the report adds to mailbox_days (dd writes it).
 * x: per sender, its slots that were leased, its last send, an authentication failure.
 * ml: one version of each sender's leasing row: this lease's slots off its pending count
 * (the row freed at 0) and the last send; a freed row (one this lease held and let go,
 * or one the lease guard found free already) gets its next due time in the same row
 * version: kiln_due_for's computation (032) on the day counts as dd leaves them (the
 * snapshot's row plus agg: a CTE does not see another's writes). A mailbox the snapshot
 * saw inactive (paused, deleted, its user not active, or an authentication failure in
 * this report) gets -infinity, not kiln_due_for's infinity: the next pick looks at it
 * with the state as it is then and moves it on (Q_PUSH). The snapshot can be older than
 * a resume that committed while the report ran, whose trigger (003) left the row alone
 * when it was at -infinity already: infinity written here would keep the resumed mailbox
 * out of the pool. (A due time at -infinity is not kept as such for an active one: a
 * row picked at -infinity would stay first in the pick's order after each send, and such
 * mailboxes took second sends while others waited, BENCH=scale.)
 * Until session 31 a second statement, kiln_refresh_due, wrote every freed row again:
 * one more non-HOT row version (due_at is indexed) per mailbox per report, ~33 us of
 * PostgreSQL per send at one million mailboxes.
 * kiln_now() in a scalar subquery: once per statement, not per row. A slot given back
 * (expired, cancelled) and then reported moves from that count to its reported status:
 * kiln_sends_total counts each slot once, by final status.
 * g: upd counted once, by (status, old, label); the counters come from its few groups.
 * Five scans of upd's 2,000 rows, sorted by their text labels, were ~3 ms of a 15 ms
 * report (session 29). */
#define REPORT_FREED_NOW                                                                           \
    "x.n > 0 AND (ml.lease_id IS NULL OR (ml.lease_id = $1::uuid AND ml.pending - x.n <= 0))"
#define REPORT_ACCOUNT                                                                             \
    "agg AS (SELECT mailbox_id, day, count(*) FILTER (WHERE status IN ('sent', 'unknown'))::int "  \
    "  AS sent, count(*) FILTER (WHERE status IN ('failed', 'auth', 'tls'))::int AS failed, "      \
    "  count(*) FILTER (WHERE old = 'leased')::int AS leased FROM upd GROUP BY 1, 2), "            \
    "dd AS (INSERT INTO mailbox_days (mailbox_id, day, sent, failed, in_flight) "                  \
    "  SELECT mailbox_id, day, sent, failed, -leased FROM agg ORDER BY 1, 2 "                      \
    "  ON CONFLICT (mailbox_id, day) DO UPDATE SET sent = mailbox_days.sent + excluded.sent, "     \
    "  failed = mailbox_days.failed + excluded.failed, "                                           \
    "  in_flight = greatest(mailbox_days.in_flight + excluded.in_flight, 0)), "                    \
    "x AS (SELECT mailbox_id, count(*) FILTER (WHERE old = 'leased')::int AS n, "                  \
    "  max(least(scheduled_at, (SELECT kiln_now()))) "                                             \
    "    FILTER (WHERE status IN ('sent', 'unknown')) AS last, bool_or(status = 'auth') AS auth, " \
    "  max(coalesce(detail, 'authentication failed')) FILTER (WHERE status = 'auth') AS detail "   \
    "  FROM upd GROUP BY 1), "                                                                     \
    "ml AS (UPDATE mailbox_leasing ml SET "                                                        \
    "  pending = CASE WHEN x.n > 0 AND ml.lease_id = $1::uuid "                                    \
    "    THEN greatest(ml.pending - x.n, 0) ELSE ml.pending END, "                                 \
    "  lease_id = CASE WHEN x.n > 0 AND ml.lease_id = $1::uuid AND ml.pending - x.n <= 0 "         \
    "    THEN NULL ELSE ml.lease_id END, "                                                         \
    "  last_send_at = CASE WHEN x.last IS NULL THEN ml.last_send_at "                              \
    "    ELSE greatest(ml.last_send_at, x.last) END, "                                             \
    "  due_at = CASE WHEN NOT (" REPORT_FREED_NOW ") THEN ml.due_at "                              \
    "    WHEN NOT " SENDING_STATES " OR x.auth "                                                   \
    "    THEN '-infinity' ELSE kiln_due_at_reply(k.now, m.timezone, "                              \
    "    m.window_start_hour, m.window_end_hour, kiln_mailbox_target(m, p, t.day), "               \
    "    CASE WHEN a.mailbox_id IS NULL THEN coalesce(d.sent, 0) + coalesce(d.in_flight, 0) "      \
    "      WHEN d.mailbox_id IS NULL THEN a.sent - a.leased "                                      \
    "      ELSE d.sent + a.sent + greatest(d.in_flight - a.leased, 0) END, ml.next_at, "           \
    "    NOT coalesce(sv.last_trigger_at > coalesce(ml.leased_at, '-infinity'), false), "          \
    "    true, " REPLY_DUE_MIN ") END "                                                            \
    "  FROM x JOIN mailboxes m ON m.id = x.mailbox_id JOIN users u ON u.id = m.user_id "           \
    "  JOIN plans p ON p.id = u.plan_id CROSS JOIN service sv "                                    \
    "  CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k "                                          \
    "  CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t "                \
    "  LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day "                         \
    "  LEFT JOIN agg a ON a.mailbox_id = m.id AND a.day = t.day "                                  \
    "  WHERE ml.mailbox_id = x.mailbox_id "                                                        \
    "  AND ((x.n > 0 AND ml.lease_id = $1::uuid) OR x.last IS NOT NULL)), "                        \
    "mb AS (UPDATE mailboxes m SET "                                                               \
    "  state = CASE WHEN m.state = 'active' THEN 'error'::mailbox_state ELSE m.state END, "        \
    "  last_error = x.detail, last_error_at = (SELECT kiln_now()) "                                \
    "  FROM x WHERE m.id = x.mailbox_id AND x.auth), "                                             \
    "g AS (SELECT status, old, lb, count(*) AS n, count(latency_ms) AS nl, "                       \
    "  coalesce(sum(latency_ms::bigint * 1000), 0)::bigint AS lat FROM upd GROUP BY 1, 2, 3), "    \
    "cnt AS (INSERT INTO counters (name, label, shard, value) "                                    \
    "  SELECT name, label, $8::smallint, sum(v) FROM ("                                            \
    "    SELECT 'sends' AS name, status::text AS label, n AS v FROM g "                            \
    "    UNION ALL SELECT 'sends', old::text, -n FROM g WHERE old IN ('expired', 'cancelled') "    \
    "    UNION ALL SELECT 'send_errors', status::text, n FROM g "                                  \
    "      WHERE status IN ('deferred', 'failed', 'auth', 'tls', 'unknown') "                      \
    "    UNION ALL SELECT 'send_latency_bucket', lb, nl FROM g WHERE nl > 0 "                      \
    "    UNION ALL SELECT 'send_latency_sum_us', '', lat FROM g WHERE nl > 0) c "                  \
    "  GROUP BY 1, 2 ORDER BY 1, 2 "                                                               \
    "  ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value) "   \
    "SELECT id FROM upd"

/* The common case, no row lock of its own: the slots of this lease still leased move
 * to their reported status in one UPDATE, whose WHERE PostgreSQL checks again on the
 * newest version of a row another transaction changed meanwhile (a sweep, a duplicate
 * report), so such a row is skipped here and old is 'leased' for every row it moves.
 * A batch this leaves short goes through Q_REPORT_LOCKED (lease_report.c). */
static const db_stmt Q_REPORT_LEASED = {
    "agent_report_leased",
    REPORT_ROWS "upd AS (UPDATE sends s SET " REPORT_SET(
        "r") "FROM r "
             "  WHERE s.id = r.id AND s.lease_id = $1::uuid AND s.status = 'leased' " REPORT_RANGE
             "  RETURNING s.id, s.mailbox_id, s.day, s.status, 'leased'::send_status AS old, "
             "  s.scheduled_at, s.latency_ms, s.detail, r.lb), " REPORT_ACCOUNT};

/* Every open slot of this lease (leased, or expired/cancelled when the mail went out
 * anyway); the previous status comes from the locked row (ids in order), so a
 * concurrent sweep or duplicate is accounted once. Slots a first pass applied already
 * are final and not open: running it after Q_REPORT_LEASED applies the rest only. */
static const db_stmt Q_REPORT_LOCKED = {
    "agent_report_locked", REPORT_ROWS
    "prev AS (SELECT s.id, s.status AS old, r.status, r.code, r.enh, r.detail, r.latency, r.lb "
    "  FROM sends s JOIN r ON r.id = s.id "
    "  WHERE s.lease_id = $1::uuid AND s.status IN ('leased', 'expired', 'cancelled') " REPORT_RANGE
    "  ORDER BY s.id FOR UPDATE OF s), "
    "upd AS (UPDATE sends s SET " REPORT_SET("p") "FROM prev p WHERE s.id = p.id "
                                                  "  RETURNING s.id, s.mailbox_id, s.day, "
                                                  "s.status, p.old, s.scheduled_at, s.latency_ms, "
                                                  "  s.detail, p.lb), " REPORT_ACCOUNT};

bool lease_store_get(db *d, arena *a, const char *lease_id, lease_info *out)
{
    const char *p[] = {lease_id};
    PGresult *r = db_exec(d, a, &Q_LEASE_GET, 1, p);
    if (!r)
        return false;
    memset(out, 0, sizeof *out);
    if (PQntuples(r) != 1)
        return true;
    static const char *const names[] = {"agent_id", "ended", "expired", "inbox"};
    int c[4];
    db_columns(r, names, c, 4);
    out->found = true;
    out->agent_id = db_i64(r, 0, c[0]);
    out->ended = PQgetvalue(r, 0, c[1])[0] == 't';
    out->expired = PQgetvalue(r, 0, c[2])[0] == 't';
    out->inbox = PQgetvalue(r, 0, c[3])[0] == 't';
    return true;
}

bool lease_store_report_fence(db *d, arena *a, const char *lease_id, const lease_report_batch *b,
                              const char *ids, int n, int *foreign)
{
    const char *p[] = {lease_id, ids, b->id_min, b->id_max};
    PGresult *r = db_exec(d, a, &Q_REPORT_FENCE, 4, p);
    if (!r)
        return false;
    int ours = PQfnumber(r, "ours");
    *foreign = -1;
    for (int i = 0; i < PQntuples(r) && i < n; i++) {
        if (PQgetvalue(r, i, ours)[0] != 't') {
            *foreign = i;
            break;
        }
    }
    return true;
}

bool lease_store_report_apply(db *d, arena *a, const char *lease_id, const lease_report_batch *b,
                              bool locked, int64_t **applied, int *napplied)
{
    const char *p[] = {
        lease_id,         b->ids,    b->status,     b->smtp_code,
        b->enhanced,      b->detail, b->latency_ms, db_i64_text(a, random_range(0, 15)),
        b->latency_label, b->id_min, b->id_max};
    /* Planned per call: a backend that settled on the generic plan (the id array
     * unsized) spent 244 us of wall time per send in it instead of 39 (session 26). */
    PGresult *r = db_exec_planned(d, a, locked ? &Q_REPORT_LOCKED : &Q_REPORT_LEASED, 11, p);
    if (!r)
        return false;
    static const char *const names[] = {"id"};
    int c[1];
    *napplied = PQntuples(r);
    *applied = arena_alloc(a, (size_t)(*napplied + 1) * sizeof **applied);
    if (*napplied == 0)
        return true;
    db_columns(r, names, c, 1);
    for (int i = 0; i < *napplied; i++)
        (*applied)[i] = db_i64(r, i, c[0]);
    return true;
}
