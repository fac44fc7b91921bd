/* Leasing statements and their rows (see lease_store.h). Rules: DESIGN.md "Leasing
 * rules", docs/leasing.md; why each statement has its shape: docs/design.md. */
#include "lease_store.h"

#include "lease_pairing.h"
#include "lease_reply.h"
#include "log.h"
#include "mailbox_states.h"
#include "pgarr.h"
#include "rand.h"
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_BATCH 100

static const db_stmt Q_SWEEP = {"agent_sweep", "SELECT kiln_sweep_expired($1)"};
static const db_stmt Q_SEEN = {"agent_seen",
                               "UPDATE agents SET last_seen_at = kiln_now() WHERE id = $1"};
static const db_stmt Q_NOW = {"agent_now", "SELECT ceil(extract(epoch FROM kiln_now()))::bigint AS "
                                           "now_s, state::text AS state FROM service"};

/* The pick: an index range scan of the unleased mailboxes whose next slot is due
 * within the lease horizon, earliest first (due_at encodes how far behind a mailbox
 * is, see 003_leasing_due.sql). SKIP LOCKED; the lock re-checks lease_id and due_at
 * on the newest row version, so a mailbox granted meanwhile is skipped. */
static const db_stmt Q_PICK = {
    "agent_pick",
    "SELECT coalesce(array_agg(mailbox_id), '{}') FROM (SELECT mailbox_id FROM mailbox_leasing "
    "WHERE lease_id IS NULL AND due_at <= kiln_now() + make_interval(secs => $2) "
    "ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) x"};

/* The exact rules of DESIGN.md for the picked (locked) rows only, read in a statement
 * of its own so it sees what committed before the locks were taken. Eligible when the
 * due time computed from the current state (kiln_due_at: inside today's window, else
 * tomorrow's opening) is inside the horizon and today's target is not met; furthest
 * behind (sent/target, then longest idle) first. The earliest pending reply:
 * REPLY_DUE_MIN (lease_reply.h). */
static const db_stmt Q_DETAILS = {
    "agent_details",
    "SELECT ml.mailbox_id, m.user_id, m.pool_id, m.address, m.display_name, m.smtp_host, "
    "m.smtp_port, m.smtp_security::text AS smtp_security, m.smtp_username, "
    "encode(m.smtp_secret, 'hex') AS secret_hex, g.day::text AS day, g.target, g.done, "
    "extract(epoch FROM (g.day + make_interval(hours => m.window_start_hour)) "
    "  AT TIME ZONE m.timezone)::bigint AS window_start_s, "
    "extract(epoch FROM (g.day + make_interval(hours => m.window_end_hour)) "
    "  AT TIME ZONE m.timezone)::bigint AS window_end_s, "
    "coalesce(extract(epoch FROM ml.next_at), 0)::bigint AS next_at_s, "
    "coalesce(extract(epoch FROM coalesce(ml.last_send_at, m.last_send_at)), 0)::bigint "
    "AS last_send_s, "
    "p.cooldown_min_s, p.cooldown_max_s, p.user_minute_cap, p.user_hourly_cap, e.triggered, "
    "to_char(t.lts, 'FMDay') AS weekday, extract(epoch FROM e.due)::float8 AS due_s, "
    "(e.due <= k.now + make_interval(secs => $2) AND g.done < g.target) AS eligible, "
    "m.smtp_allow_plaintext_auth "
    "FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id "
    "JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s "
    "CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k "
    "CROSS JOIN LATERAL (SELECT k.now AT TIME ZONE m.timezone AS lts) t "
    "LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.lts::date "
    "CROSS JOIN LATERAL (SELECT t.lts::date AS day, kiln_mailbox_target(m, p, t.lts::date) "
    "  AS target, coalesce(d.sent, 0) + coalesce(d.in_flight, 0) AS done) g "
    "CROSS JOIN LATERAL (SELECT coalesce(s.last_trigger_at > coalesce(ml.leased_at, "
    "  '-infinity'), false) AS triggered) tr "
    "CROSS JOIN LATERAL (SELECT tr.triggered, kiln_due_at_reply(k.now, m.timezone, "
    "  m.window_start_hour, m.window_end_hour, g.target, g.done, ml.next_at, NOT tr.triggered, "
    "  " SENDING_STATES ", "
    "  " REPLY_DUE_MIN ") AS due) e "
    "WHERE ml.mailbox_id = ANY ($1::bigint[]) AND ml.lease_id IS NULL "
    "ORDER BY eligible DESC, coalesce(d.sent, 0)::float8 / nullif(g.target, 0) NULLS LAST, "
    "coalesce(ml.last_send_at, m.last_send_at) NULLS FIRST, ml.mailbox_id"};

/* Eligible mailboxes whose stored text cannot go into an answer (see row_text_problem):
 * out of the pool until someone fixes them (PATCH, then resume clears the error). */
static const db_stmt Q_TEXT_ERROR = {
    "agent_text_error",
    "UPDATE mailboxes m SET state = 'error', last_error = x.why, last_error_at = kiln_now(), "
    "updated_at = now() FROM unnest($1::bigint[], $2::text[]) AS x (id, why) "
    "WHERE m.id = x.id AND m.state = 'active'"};

/* Picked rows that got nothing move their due_at forward (they are locked by us). */
static const db_stmt Q_PUSH = {"agent_push",
                               "UPDATE mailbox_leasing ml SET due_at = to_timestamp(x.due) "
                               "FROM unnest($1::bigint[], $2::float8[]) AS x (mb, due) "
                               "WHERE ml.mailbox_id = x.mb AND ml.lease_id IS NULL"};

/* The buckets a plan from $4 (the grant's now) to $3 can touch: minutes from $4's, hours
 * from $2 ($4 floored to its hour). The bounds come from the grant's one now: kiln_now()
 * read here again can be later (the test clock moves between statements), and a bound an
 * hour on would leave the buckets the plan fills unread, so they would be granted past
 * their caps. Read by the primary key (width_s, user_id, at), a short range per user and
 * width: with no width given, PostgreSQL read slot_buckets_at_idx's range, every user's
 * buckets of the hour, and kept the lease's users: at 1,000,000 mailboxes (10,000 users)
 * 100-160 ms a lease (BENCH=scale, session 29). */
#define BUCKETS_OF(w, from)                                                                        \
    "SELECT user_id, width_s, extract(epoch FROM at)::bigint AS at_s, n FROM slot_buckets "        \
    "WHERE width_s = " w " AND user_id = ANY ($1::bigint[] || 0::bigint) "                         \
    "AND at >= to_timestamp(" from ") AND at <= to_timestamp($3) "
static const db_stmt Q_BUCKETS = {
    "agent_buckets",
    BUCKETS_OF("60", "$4::bigint / 60 * 60") "UNION ALL " BUCKETS_OF("3600", "$2::bigint")};
/* A plan again after a reservation fell short (another grant took the room meanwhile):
 * every bucket the plan can touch (the hours from $2, the minutes from $4's, to $3),
 * made to exist, then locked in the reservation's key order (users, then global), so
 * this plan's counts hold to commit. */
static const db_stmt Q_BUCKETS_ENSURE = {
    "agent_buckets_ensure",
    "INSERT INTO slot_buckets (user_id, width_s, at, n) "
    "SELECT u.u, w.w, to_timestamp(t), 0 "
    "FROM (SELECT DISTINCT unnest($1::bigint[] || 0::bigint) AS u) u "
    "CROSS JOIN (VALUES (60), (3600)) w (w) "
    "CROSS JOIN LATERAL generate_series(CASE w.w WHEN 60 THEN $4::bigint / 60 * 60 "
    "  ELSE $2::bigint END, $3::bigint, w.w) t "
    "ORDER BY u.u = 0, u.u, w.w, t ON CONFLICT DO NOTHING"};
static const db_stmt Q_BUCKETS_LOCK = {
    "agent_buckets_lock",
    "SELECT user_id, width_s, extract(epoch FROM at)::bigint AS at_s, n FROM slot_buckets "
    "WHERE width_s IN (60, 3600) AND user_id = ANY ($1::bigint[] || 0::bigint) "
    "AND at >= to_timestamp($2::bigint) AND at <= to_timestamp($3) "
    "AND (width_s = 3600 OR at >= to_timestamp($4::bigint / 60 * 60)) "
    "ORDER BY user_id = 0, user_id, width_s, at FOR UPDATE"};
static const db_stmt Q_PAIRS = {
    "agent_pairs",
    "SELECT mailbox_id, recipient_id FROM sends WHERE mailbox_id = ANY ($1::bigint[]) "
    "AND scheduled_at > (SELECT kiln_now()) - make_interval(days => $2::int) "
    "AND status <> 'cancelled' AND recipient_id IS NOT NULL "
    "AND id >= kiln_sends_since($2::int + 1)"};

/* Recipient candidates: a window of the pool starting at a random id (wrapping), so
 * successive leases spread over all of it without sorting it; with each its IMAP host
 * (its provider), its 7-day ledger (kiln_ledger_7d of 016_reciprocity.sql, spelled out
 * here: two short index scans per candidate, no history) and, from the same scan of
 * mailbox_inbound, its inbound count today (the first plan's view: no Q_INBOUND). now
 * is read once (OFFSET 0: kiln_now() per row cost more than the rest of the row). */
#define CANDIDATE_SELECT                                                                           \
    "SELECT m.id, m.user_id, m.pool_id, lower(split_part(m.address, '@', 2)) AS domain, "          \
    "m.address, m.display_name, c.day::text AS day, c.day AS local_day, m.imap_host "              \
    "FROM mailboxes m JOIN users u ON u.id = m.user_id "                                           \
    "CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k "                                            \
    "CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) c "                  \
    "WHERE " SENDING_STATES " "                                                                    \
    "AND (NOT $2::bool OR " INBOX_READABLE ") "                                                    \
    "AND m.pool_id = ANY ((SELECT array_agg(DISTINCT pool_id) FROM mailboxes "                     \
    "WHERE id = ANY ($3::bigint[]))::int[]) "
/* $2: KILN_RECIPIENTS_REQUIRE_INBOX (only inboxes that are watched, ok and not failing
 * receive: mail to an inbox whose visits keep failing is never found or engaged); $3:
 * the senders, whose pools the candidates come from (the planner keeps each slot in its
 * sender's pool, lease_plan.c). */
static const db_stmt Q_CANDIDATES = {
    "agent_candidates",
    "WITH b AS (SELECT floor(random() * (coalesce(max(id), 0) + 1))::bigint AS s FROM mailboxes), "
    "w AS ((" CANDIDATE_SELECT "AND m.id >= (SELECT s FROM b) ORDER BY m.id LIMIT $1) UNION ALL "
    "(" CANDIDATE_SELECT "AND m.id < (SELECT s FROM b) ORDER BY m.id LIMIT $1) LIMIT $1) "
    "SELECT w.*, (SELECT coalesce(sum(d.sent + d.in_flight), 0)::bigint FROM mailbox_days d "
    "  WHERE d.mailbox_id = w.id AND d.day BETWEEN w.local_day - 6 AND w.local_day) AS sent_7d, "
    "i.received_7d, i.received FROM w CROSS JOIN LATERAL (SELECT "
    "  coalesce(sum(i.received), 0)::bigint AS received_7d, "
    "  coalesce(sum(i.received) FILTER (WHERE i.day = w.local_day), 0)::bigint AS received "
    "  FROM mailbox_inbound i WHERE i.mailbox_id = w.id "
    "  AND i.day BETWEEN w.local_day - 6 AND w.local_day) i"};
/* The candidates' inbound counts on their local day, in candidate order: the plan's
 * view, unlocked (Q_RESERVE checks the counts the grant adds to). Read again for a plan
 * after a reservation fell short, or when replies added candidates to the pool. */
static const db_stmt Q_INBOUND = {
    "agent_inbound",
    "SELECT coalesce(i.received, 0) FROM unnest($1::bigint[], $2::date[]) WITH ORDINALITY "
    "AS x (mb, day, ord) LEFT JOIN mailbox_inbound i ON i.mailbox_id = x.mb AND i.day = x.day "
    "ORDER BY x.ord"};
static const db_stmt Q_TEMPLATES = {"agent_templates",
                                    "SELECT subject, body FROM message_templates ORDER BY id"};
static const db_stmt Q_TOPICS = {"agent_topics", "SELECT topic FROM message_topics ORDER BY id"};

/* Send ids carry their UTC day: the day partition of sends they go to (020, 021). The
 * lease keeps their range (022: a lease's slots are read by it, no index on lease_id). */
static const db_stmt Q_NEW_LEASE = {
    "agent_new_lease",
    "WITH ids AS (SELECT kiln_send_id() AS id FROM generate_series(1, $3::int)), "
    "l AS (INSERT INTO leases (agent_id, expires_at, ttl_s, send_id_min, send_id_max) "
    "SELECT $1::bigint, kiln_now() + make_interval(secs => $2::int), $2::int, min(id), max(id) "
    "FROM ids RETURNING id) "
    "SELECT (SELECT id::text FROM l) AS lease_id, ids.id AS send_id FROM ids ORDER BY ids.id"};

/* The writes of a grant but its counters in one statement: sends (with their subject,
 * and a reply's threading), the replies they carry, the mailboxes' leasing rows and
 * today's in_flight; all rows of the grant's locked senders, so no other grant waits on
 * them. Upserts are ordered by key so concurrent transactions lock rows in one order.
 * created_at is given, not left to its default: kiln_now() is a SQL function with a
 * FROM (never inlined), so the default ran the SQL-function executor once per row; a
 * scalar subquery runs it once per statement (issue 15, fourth pass). */
static const db_stmt Q_GRANT = {
    "agent_grant",
    "WITH s AS (INSERT INTO sends (id, mailbox_id, recipient_id, lease_id, day, scheduled_at, "
    "  message_id, subject, in_reply_to, thread_refs, reply_depth, created_at) "
    "  SELECT x.id, x.mb, x.rc, $1::uuid, x.day, to_timestamp(x.at), x.mid, x.subj, "
    "  pr.in_reply_to, pr.thread_refs, coalesce(pr.reply_depth, 0), (SELECT kiln_now()) "
    "  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::date[], $6::bigint[], "
    "  $7::text[], $11::text[], $12::bigint[]) AS x (id, mb, rc, day, at, mid, subj, rid) "
    "  LEFT JOIN pending_replies pr ON pr.id = x.rid), "
    /* A reply given a slot is bound to it (lease_reply.h). */
    "rp AS (UPDATE pending_replies pr SET send_id = x.id "
    "  FROM unnest($2::bigint[], $12::bigint[]) AS x (id, rid) "
    "  WHERE pr.id = x.rid AND pr.send_id IS NULL), "
    "ml AS (UPDATE mailbox_leasing ml SET lease_id = $1::uuid, pending = x.n, "
    "  next_at = to_timestamp(x.nx), leased_at = (SELECT kiln_now()) "
    "  FROM unnest($8::bigint[], $9::int[], $10::bigint[]) AS x (mb, n, nx) "
    "  WHERE ml.mailbox_id = x.mb), "
    "dd AS (INSERT INTO mailbox_days (mailbox_id, day, in_flight) "
    "  SELECT mb, day, count(*)::int FROM unnest($3::bigint[], $5::date[]) AS a (mb, day) "
    "  GROUP BY 1, 2 ORDER BY 1, 2 "
    "  ON CONFLICT (mailbox_id, day) DO UPDATE SET "
    "  in_flight = mailbox_days.in_flight + excluded.in_flight) "
    "SELECT 1"};

/* The grant's counters, last before commit (docs/leasing.md "Caps"): each row the plan
 * filled moves only while it stays within its cap; a row another grant holds makes this
 * one wait for its commit and re-check against the committed count, so the caps are
 * exact with no lock around planning. Key order, the same in every grant and in a plan
 * again's Q_BUCKETS_LOCK: users' buckets, then the global buckets, then recipients (bk
 * is read first, so it runs first); no deadlock between grants. Recipients first would
 * hold the global rows for less (not through ~2,000 recipient upserts), but a plan again
 * locks its buckets before it knows its recipients, so a grant holding a recipient while
 * it waits for a bucket deadlocks with it (leasing_caps and leasing_concurrent did when
 * issue 15's second pass tried it). The counts returned fall short when a cap would be
 * passed; the caller then rolls back to its savepoint and plans again. */
static const db_stmt Q_RESERVE = {
    "agent_reserve",
    "WITH bk AS (INSERT INTO slot_buckets (user_id, width_s, at, n, cap) "
    "  SELECT u, w, to_timestamp(a), n, c FROM unnest($5::bigint[], $6::int[], $7::bigint[], "
    "  $8::int[], $9::int[]) AS x (u, w, a, n, c) WHERE n <= c ORDER BY u = 0, u, w, a "
    "  ON CONFLICT (width_s, user_id, at) DO UPDATE SET n = slot_buckets.n + excluded.n, "
    "  cap = excluded.cap WHERE slot_buckets.n + excluded.n <= excluded.cap RETURNING 1), "
    "ib AS (INSERT INTO mailbox_inbound (mailbox_id, day, received) "
    "  SELECT mb, day, n FROM unnest($1::bigint[], $2::date[], $3::int[]) AS b (mb, day, n) "
    "  WHERE n <= $4 ORDER BY 1, 2 ON CONFLICT (mailbox_id, day) DO UPDATE SET "
    "  received = mailbox_inbound.received + excluded.received "
    "  WHERE mailbox_inbound.received + excluded.received <= $4 RETURNING 1) "
    "SELECT (SELECT count(*) FROM bk) AS buckets, (SELECT count(*) FROM ib) AS inbound"};
/* Once the grant holds its counters: is its plan still young? Its own statement, so the
 * clock is read after any wait of the reservation: now() is the transaction's start and
 * a statement's snapshot predates its lock waits. */
static const db_stmt Q_PLAN_FRESH = {
    "agent_plan_fresh",
    "SELECT clock_timestamp() + make_interval(secs => offset_s) <= to_timestamp($1) + "
    "make_interval(secs => $2) FROM kiln_clock"};

static const db_stmt Q_BUCKET_TRIM = {
    "agent_bucket_trim",
    "DELETE FROM slot_buckets WHERE ctid = ANY (ARRAY(SELECT ctid FROM slot_buckets "
    "WHERE at < kiln_now() - interval '2 hours' LIMIT 5000))"};

static const db_stmt Q_DURATION = {
    "agent_lease_duration",
    "INSERT INTO counters (name, label, shard, value) VALUES "
    "('lease_duration_bucket', $1, $3, 1), ('lease_duration_sum_us', '', $3, $2) "
    "ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value"};

/* Only a lease not past its expiry: one the sweep before it has not reached yet (it ends
 * at most SWEEP_BATCH, oldest first, SKIP LOCKED: after a fleet outage more wait) is
 * expired all the same, and its slots are back in the pool (409 lease_expired). */
static const db_stmt Q_RENEW = {
    "agent_renew", "UPDATE leases SET expires_at = kiln_now() + make_interval(secs => ttl_s) "
                   "WHERE id = $1::uuid AND ended_at IS NULL AND expires_at > kiln_now() "
                   "RETURNING kiln_iso(expires_at) AS expires_at, ttl_s"};
/* Slots the agent must drop: service stopped, mailbox or its user not active (the
 * lease's slots by its ids' range, kiln_lease_slots of 022). Read so while the service
 * is stopped (every slot goes); while it runs, Q_HELD_INACTIVE and Q_HELD_SLOTS. */
static const db_stmt Q_TO_CANCEL = {
    "agent_to_cancel",
    "SELECT s.id FROM unnest(kiln_lease_slots(ARRAY[$1::uuid])) AS x (id) "
    "JOIN sends s ON s.id = x.id JOIN mailboxes m ON m.id = s.mailbox_id "
    "JOIN users u ON u.id = m.user_id CROSS JOIN service sv "
    "WHERE s.status = 'leased' AND (sv.state <> 'running' OR NOT " SENDING_STATES ") "
    "ORDER BY s.id"};
/* The same while the service runs, in two steps: only a mailbox or user no longer active
 * cancels, so first the mailboxes the lease holds (mailbox_leasing_lease_idx) that are
 * not (usually none: the slots are not read at all), then their slots of this lease. A
 * mailbox is held until its last slot of the lease is reported or given back (its
 * pending count), so no open slot is missed. Q_TO_CANCEL read every slot of the lease's
 * id range, its own and other leases' interleaved: at production spacing (a lease of a
 * few slots per mailbox, thousands of mailboxes) that was the costliest statement per
 * send in BENCH=scale (session 29); as one statement joining sends, planning it for
 * every day partition kept cost most of what it saved. A lease without an id range (made
 * before 022) reads its mailboxes' slots of the last two days, as kiln_lease_slots does. */
static const db_stmt Q_HELD_INACTIVE = {
    "agent_held_inactive",
    "SELECT coalesce(array_agg(ml.mailbox_id), '{}') FROM mailbox_leasing ml "
    "JOIN mailboxes m ON m.id = ml.mailbox_id JOIN users u ON u.id = m.user_id "
    "WHERE ml.lease_id = $1::uuid "
    "AND NOT " SENDING_STATES};
static const db_stmt Q_HELD_SLOTS = {
    "agent_held_slots",
    "SELECT s.id FROM leases l JOIN sends s ON s.mailbox_id = ANY ($2::bigint[]) "
    "AND s.lease_id = l.id AND s.id BETWEEN coalesce(l.send_id_min, kiln_sends_since(2)) "
    "AND coalesce(l.send_id_max, 9223372036854775807) "
    "WHERE l.id = $1::uuid AND s.status = 'leased' ORDER BY s.id"};
/* The agent may not see this cancel in time (a lost answer, a slot already started) and
 * send the slot: its cap shares stay taken (false; migration 027). */
static const db_stmt Q_FINISH = {"agent_finish",
                                 "SELECT kiln_finish_slots($1::bigint[], 'cancelled', false)"};
static const db_stmt Q_RELEASE = {"agent_release",
                                  "SELECT kiln_end_leases(ARRAY[$1::uuid], 'cancelled')"};
/* ---- rows by name ---------------------------------------------------------------- */

enum detail_col {
    D_MAILBOX_ID,
    D_USER_ID,
    D_POOL_ID,
    D_ADDRESS,
    D_DISPLAY_NAME,
    D_SMTP_HOST,
    D_SMTP_PORT,
    D_SMTP_SECURITY,
    D_SMTP_USERNAME,
    D_SECRET_HEX,
    D_DAY,
    D_TARGET,
    D_DONE,
    D_WINDOW_START_S,
    D_WINDOW_END_S,
    D_NEXT_AT_S,
    D_LAST_SEND_S,
    D_COOLDOWN_MIN_S,
    D_COOLDOWN_MAX_S,
    D_USER_MINUTE_CAP,
    D_USER_HOURLY_CAP,
    D_TRIGGERED,
    D_WEEKDAY,
    D_DUE_S,
    D_ELIGIBLE,
    D_ALLOW_PLAINTEXT_AUTH,
    D_NCOLS
};
static const char *const DETAIL_COLS[D_NCOLS] = {
    [D_MAILBOX_ID] = "mailbox_id",
    [D_USER_ID] = "user_id",
    [D_POOL_ID] = "pool_id",
    [D_ADDRESS] = "address",
    [D_DISPLAY_NAME] = "display_name",
    [D_SMTP_HOST] = "smtp_host",
    [D_SMTP_PORT] = "smtp_port",
    [D_SMTP_SECURITY] = "smtp_security",
    [D_SMTP_USERNAME] = "smtp_username",
    [D_SECRET_HEX] = "secret_hex",
    [D_DAY] = "day",
    [D_TARGET] = "target",
    [D_DONE] = "done",
    [D_WINDOW_START_S] = "window_start_s",
    [D_WINDOW_END_S] = "window_end_s",
    [D_NEXT_AT_S] = "next_at_s",
    [D_LAST_SEND_S] = "last_send_s",
    [D_COOLDOWN_MIN_S] = "cooldown_min_s",
    [D_COOLDOWN_MAX_S] = "cooldown_max_s",
    [D_USER_MINUTE_CAP] = "user_minute_cap",
    [D_USER_HOURLY_CAP] = "user_hourly_cap",
    [D_TRIGGERED] = "triggered",
    [D_WEEKDAY] = "weekday",
    [D_DUE_S] = "due_s",
    [D_ELIGIBLE] = "eligible",
    [D_ALLOW_PLAINTEXT_AUTH] = "smtp_allow_plaintext_auth",
};

static bool col_bool(const PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col)[0] == 't';
}

static const char *domain_of(const char *address)
{
    const char *at = strrchr(address, '@');
    return at ? at + 1 : address;
}

static void read_detail(const PGresult *r, int i, const int *c, lease_row *row)
{
    lease_mailbox *m = &row->m;
    m->id = db_i64(r, i, c[D_MAILBOX_ID]);
    m->user_id = db_i64(r, i, c[D_USER_ID]);
    m->pool_id = db_i64(r, i, c[D_POOL_ID]);
    row->address = PQgetvalue(r, i, c[D_ADDRESS]);
    m->domain = domain_of(row->address);
    m->target = db_i64(r, i, c[D_TARGET]);
    m->done = db_i64(r, i, c[D_DONE]);
    m->window_start_s = db_i64(r, i, c[D_WINDOW_START_S]);
    m->window_end_s = db_i64(r, i, c[D_WINDOW_END_S]);
    m->next_at_s = db_i64(r, i, c[D_NEXT_AT_S]);
    m->last_send_s = db_i64(r, i, c[D_LAST_SEND_S]);
    m->cooldown_min_s = db_i64(r, i, c[D_COOLDOWN_MIN_S]);
    m->cooldown_max_s = db_i64(r, i, c[D_COOLDOWN_MAX_S]);
    m->user_minute_cap = db_i64(r, i, c[D_USER_MINUTE_CAP]);
    m->user_hour_cap = db_i64(r, i, c[D_USER_HOURLY_CAP]);
    m->triggered = col_bool(r, i, c[D_TRIGGERED]);
    row->display_name = PQgetvalue(r, i, c[D_DISPLAY_NAME]);
    row->smtp_host = PQgetvalue(r, i, c[D_SMTP_HOST]);
    row->smtp_port = db_i64(r, i, c[D_SMTP_PORT]);
    row->smtp_security = PQgetvalue(r, i, c[D_SMTP_SECURITY]);
    row->smtp_username = PQgetvalue(r, i, c[D_SMTP_USERNAME]);
    row->allow_plaintext_auth = col_bool(r, i, c[D_ALLOW_PLAINTEXT_AUTH]);
    row->secret_hex = PQgetvalue(r, i, c[D_SECRET_HEX]);
    row->day = PQgetvalue(r, i, c[D_DAY]);
    row->weekday = PQgetvalue(r, i, c[D_WEEKDAY]);
    row->due_s = strtod(PQgetvalue(r, i, c[D_DUE_S]), NULL);
    row->eligible = col_bool(r, i, c[D_ELIGIBLE]);
}

/* Array literal of n integers. */
static const char *ids_literal(arena *a, const int64_t *v, int n)
{
    pgarr arr;
    pgarr_open(&arr);
    for (int i = 0; i < n; i++)
        pgarr_i64(&arr, v[i]);
    return pgarr_done(&arr, a);
}

/* ---- lease ------------------------------------------------------------------------ */

bool lease_store_begin(db *d, arena *a, int64_t agent_id, int64_t *now_s, bool *running)
{
    if (!db_begin(d))
        return false;
    const char *sp[] = {db_i64_text(a, SWEEP_BATCH)};
    const char *seen[] = {db_i64_text(a, agent_id)};
    if (!db_exec(d, a, &Q_SWEEP, 1, sp) || !db_exec(d, a, &Q_SEEN, 1, seen))
        return false;
    if (random_range(0, 49) == 0 && !db_exec(d, a, &Q_BUCKET_TRIM, 0, NULL))
        return false;
    PGresult *r = db_exec(d, a, &Q_NOW, 0, NULL);
    if (!r || PQntuples(r) != 1)
        return false;
    static const char *const names[] = {"now_s", "state"};
    int c[2];
    db_columns(r, names, c, 2);
    *now_s = db_i64(r, 0, c[0]);
    *running = strcmp(PQgetvalue(r, 0, c[1]), "running") == 0;
    return true;
}

bool lease_store_pick(db *d, arena *a, int64_t max_mailboxes, int64_t ttl_s, lease_row **rows,
                      int *n)
{
    const char *pk[] = {db_i64_text(a, max_mailboxes), db_i64_text(a, ttl_s)};
    PGresult *pr = db_exec(d, a, &Q_PICK, 2, pk);
    if (!pr || PQntuples(pr) != 1)
        return false;
    const char *ep[] = {PQgetvalue(pr, 0, 0), db_i64_text(a, ttl_s)};
    PGresult *r = db_exec(d, a, &Q_DETAILS, 2, ep);
    if (!r)
        return false;
    *n = PQntuples(r);
    *rows = arena_calloc(a, (size_t)(*n + 1) * sizeof **rows);
    if (*n == 0)
        return true;
    int c[D_NCOLS];
    db_columns(r, DETAIL_COLS, c, D_NCOLS);
    for (int i = 0; i < *n; i++)
        read_detail(r, i, c, &(*rows)[i]);
    return true;
}

bool lease_store_set_error(db *d, arena *a, const int64_t *ids, const char *const *why, int n)
{
    if (n == 0)
        return true;
    pgarr whys;
    pgarr_open(&whys);
    for (int i = 0; i < n; i++)
        pgarr_str(&whys, why[i]);
    const char *p[] = {ids_literal(a, ids, n), pgarr_done(&whys, a)};
    return db_exec(d, a, &Q_TEXT_ERROR, 2, p) != NULL;
}

bool lease_store_push_due(db *d, arena *a, const lease_push *p)
{
    if (p->n == 0)
        return true;
    pgarr due;
    pgarr_open(&due);
    for (int i = 0; i < p->n; i++)
        pgarr_seconds(&due, p->due_s[i]);
    const char *pp[] = {ids_literal(a, p->mb, p->n), pgarr_done(&due, a)};
    return db_exec(d, a, &Q_PUSH, 2, pp) != NULL;
}

static const char **column_strings(arena *a, const PGresult *r, int col)
{
    int n = PQntuples(r);
    const char **out = arena_alloc(a, (size_t)(n + 1) * sizeof *out);
    for (int i = 0; i < n; i++)
        out[i] = PQgetvalue(r, i, col);
    return out;
}

static void read_candidates(arena *a, const PGresult *r, size_t n, lease_pool *pool)
{
    static const char *const names[] = {"id",           "user_id",  "domain",    "address",
                                        "display_name", "day",      "imap_host", "sent_7d",
                                        "received_7d",  "received", "pool_id"};
    int c[11];
    db_columns(r, names, c, 11);
    pool->cands = arena_calloc(a, (n + 1) * sizeof *pool->cands);
    pool->address = arena_alloc(a, (n + 1) * sizeof *pool->address);
    pool->display_name = arena_alloc(a, (n + 1) * sizeof *pool->display_name);
    pool->day = arena_alloc(a, (n + 1) * sizeof *pool->day);
    pool->inbound = arena_alloc(a, (n + 1) * sizeof *pool->inbound);
    for (size_t i = 0; i < n; i++) {
        pool->cands[i].id = db_i64(r, (int)i, c[0]);
        pool->cands[i].user_id = db_i64(r, (int)i, c[1]);
        pool->cands[i].domain = PQgetvalue(r, (int)i, c[2]);
        pool->address[i] = PQgetvalue(r, (int)i, c[3]);
        pool->display_name[i] = PQgetvalue(r, (int)i, c[4]);
        pool->day[i] = PQgetvalue(r, (int)i, c[5]);
        pool->cands[i].provider = lease_pairing_provider(
            PQgetisnull(r, (int)i, c[6]) ? NULL : PQgetvalue(r, (int)i, c[6]));
        pool->cands[i].sent_7d = db_i64(r, (int)i, c[7]);
        pool->cands[i].received_7d = db_i64(r, (int)i, c[8]);
        pool->inbound[i] = db_i64(r, (int)i, c[9]);
        pool->cands[i].pool_id = db_i64(r, (int)i, c[10]);
    }
    pool->ncand = n;
    pool->ninbound = n;
}

bool lease_store_load_pool(db *d, arena *a, const int64_t *senders, int nsenders,
                           int64_t pair_gap_days, int64_t ncand_want, bool require_inbox,
                           lease_pool *pool)
{
    memset(pool, 0, sizeof *pool);
    if (pair_gap_days > 0) {
        const char *pp[] = {ids_literal(a, senders, nsenders), db_i64_text(a, pair_gap_days)};
        PGresult *pr = db_exec(d, a, &Q_PAIRS, 2, pp);
        if (!pr)
            return false;
        static const char *const names[] = {"mailbox_id", "recipient_id"};
        int c[2];
        db_columns(pr, names, c, 2);
        pool->npairs = (size_t)PQntuples(pr);
        pool->pairs = arena_alloc(a, (pool->npairs + 1) * sizeof *pool->pairs);
        for (size_t i = 0; i < pool->npairs; i++) {
            pool->pairs[i].sender = db_i64(pr, (int)i, c[0]);
            pool->pairs[i].recipient = db_i64(pr, (int)i, c[1]);
        }
    }
    if (!lease_pairing_load(d, a, senders, nsenders, pool))
        return false;
    const char *cp[] = {db_i64_text(a, ncand_want), require_inbox ? "true" : "false",
                        ids_literal(a, senders, nsenders)};
    PGresult *cr = db_exec(d, a, &Q_CANDIDATES, 3, cp);
    PGresult *tr = cr ? db_exec(d, a, &Q_TEMPLATES, 0, NULL) : NULL;
    PGresult *topr = tr ? db_exec(d, a, &Q_TOPICS, 0, NULL) : NULL;
    if (!topr)
        return false;
    size_t ncand = (size_t)PQntuples(cr);
    read_candidates(a, cr, (int64_t)ncand > ncand_want ? (size_t)ncand_want : ncand, pool);
    pool->ntemplates = PQntuples(tr);
    pool->subjects = column_strings(a, tr, PQfnumber(tr, "subject"));
    pool->bodies = column_strings(a, tr, PQfnumber(tr, "body"));
    pool->ntopics = PQntuples(topr);
    pool->topics = column_strings(a, topr, PQfnumber(topr, "topic"));
    return true;
}

/* pool->cands[].received from mailbox_inbound now (Q_INBOUND). */
static bool load_inbound(db *d, arena *a, lease_pool *pool)
{
    pgarr ids, days;
    pgarr_open(&ids);
    pgarr_open(&days);
    for (size_t i = 0; i < pool->ncand; i++) {
        pgarr_i64(&ids, pool->cands[i].id);
        pgarr_str(&days, pool->day[i]);
    }
    const char *ip[] = {pgarr_done(&ids, a), pgarr_done(&days, a)};
    PGresult *ir = db_exec(d, a, &Q_INBOUND, 2, ip);
    if (!ir || (size_t)PQntuples(ir) < pool->ncand)
        return false;
    for (size_t i = 0; i < pool->ncand; i++)
        pool->cands[i].received = db_i64(ir, (int)i, 0);
    return true;
}

bool lease_store_load_caps(db *d, arena *a, const int64_t *users, int nusers, int64_t now_s,
                           int64_t horizon_s, bool lock, lease_pool *pool,
                           lease_bucket_delta **buckets, size_t *nbuckets)
{
    const char *bp[] = {ids_literal(a, users, nusers), db_i64_text(a, now_s - now_s % 3600),
                        db_i64_text(a, now_s + horizon_s), db_i64_text(a, now_s)};
    if (lock && !db_exec(d, a, &Q_BUCKETS_ENSURE, 4, bp))
        return false;
    PGresult *br = lock ? db_exec(d, a, &Q_BUCKETS_LOCK, 4, bp) : db_exec(d, a, &Q_BUCKETS, 4, bp);
    if (!br) /* a deadlock here is retried: nothing may run on the failed transaction */
        return false;
    /* The first plan counts on the inbound read with the candidates (when replies added
     * none); a plan again, after a competitor took room, reads it afresh. */
    if (!lock && pool->ninbound == pool->ncand) {
        for (size_t i = 0; i < pool->ncand; i++)
            pool->cands[i].received = pool->inbound[i];
    } else if (!load_inbound(d, a, pool)) {
        return false;
    }
    static const char *const names[] = {"user_id", "width_s", "at_s", "n"};
    int c[4];
    db_columns(br, names, c, 4);
    *nbuckets = (size_t)PQntuples(br);
    *buckets = arena_alloc(a, (*nbuckets + 1) * sizeof **buckets);
    for (size_t i = 0; i < *nbuckets; i++) {
        lease_bucket_delta *b = &(*buckets)[i];
        b->user_id = db_i64(br, (int)i, c[0]);
        b->width_s = db_i64(br, (int)i, c[1]);
        b->at_s = db_i64(br, (int)i, c[2]);
        b->n = db_i64(br, (int)i, c[3]);
    }
    return true;
}

bool lease_store_new_lease(db *d, arena *a, int64_t agent_id, int64_t ttl_s, int64_t total,
                           const char **lease_id, int64_t **send_ids)
{
    const char *lp[] = {db_i64_text(a, agent_id), db_i64_text(a, ttl_s), db_i64_text(a, total)};
    PGresult *r = db_exec(d, a, &Q_NEW_LEASE, 3, lp);
    if (!r || PQntuples(r) != total)
        return false;
    static const char *const names[] = {"lease_id", "send_id"};
    int c[2];
    db_columns(r, names, c, 2);
    *lease_id = PQgetvalue(r, 0, c[0]);
    *send_ids = arena_alloc(a, (size_t)total * sizeof **send_ids);
    for (int i = 0; i < (int)total; i++)
        (*send_ids)[i] = db_i64(r, i, c[1]);
    return true;
}

/* The grant's array parameters: $2..$7 per slot, $8..$10 per mailbox, then $11 (subject)
 * and $12 (the reply a slot carries, or NULL) per slot. */
static void grant_slot_arrays(arena *a, const lease_granted *g, int ng, const lease_pool *pool,
                              const char **p)
{
    pgarr id, mb, rc, day, at, mid, ml_mb, ml_n, ml_next, subj, rid;
    pgarr *all[] = {&id, &mb, &rc, &day, &at, &mid, &ml_mb, &ml_n, &ml_next, &subj, &rid};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pgarr_open(all[i]);
    for (int gi = 0; gi < ng; gi++) {
        const lease_granted *gr = &g[gi];
        for (int s = 0; s < gr->nslots; s++) {
            pgarr_i64(&id, gr->send_ids[s]);
            pgarr_i64(&mb, gr->r->m.id);
            pgarr_i64(&rc, pool->cands[gr->slots[s].candidate].id);
            pgarr_str(&day, gr->r->day);
            pgarr_i64(&at, gr->slots[s].at_s);
            pgarr_str(&mid, gr->message_ids[s]);
            pgarr_str(&subj, gr->subjects[s]);
            if (gr->replies && gr->replies[s])
                pgarr_i64(&rid, gr->replies[s]->id);
            else
                pgarr_null(&rid);
        }
        pgarr_i64(&ml_mb, gr->r->m.id);
        pgarr_i64(&ml_n, gr->nslots);
        pgarr_i64(&ml_next, gr->next_at_s);
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        p[i] = pgarr_done(all[i], a);
}

bool lease_store_grant(db *d, arena *a, const char *lease_id, const lease_granted *g, int ng,
                       const lease_pool *pool)
{
    const char *p[12];
    p[0] = lease_id;
    grant_slot_arrays(a, g, ng, pool, p + 1); /* $2..$12 */
    return db_exec(d, a, &Q_GRANT, 12, p) != NULL;
}

bool lease_store_reserve_caps(db *d, arena *a, const lease_pool *pool, int64_t recipient_daily_cap,
                              int64_t plan_now_s, const lease_bucket_delta *deltas, size_t nd,
                              enum lease_reserve *out)
{
    pgarr rmb, rday, rn, bu, bw, ba, bn, bc;
    pgarr *all[] = {&rmb, &rday, &rn, &bu, &bw, &ba, &bn, &bc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pgarr_open(all[i]);
    int64_t ninbound = 0;
    for (size_t i = 0; i < pool->ncand; i++) {
        if (pool->cands[i].assigned == 0)
            continue;
        pgarr_i64(&rmb, pool->cands[i].id);
        pgarr_str(&rday, pool->day[i]);
        pgarr_i64(&rn, pool->cands[i].assigned);
        ninbound++;
    }
    for (size_t i = 0; i < nd; i++) {
        pgarr_i64(&bu, deltas[i].user_id);
        pgarr_i64(&bw, deltas[i].width_s);
        pgarr_i64(&ba, deltas[i].at_s);
        pgarr_i64(&bn, deltas[i].n);
        pgarr_i64(&bc, deltas[i].cap);
    }
    const char *p[] = {pgarr_done(&rmb, a), pgarr_done(&rday, a),
                       pgarr_done(&rn, a),  db_i64_text(a, recipient_daily_cap),
                       pgarr_done(&bu, a),  pgarr_done(&bw, a),
                       pgarr_done(&ba, a),  pgarr_done(&bn, a),
                       pgarr_done(&bc, a)};
    PGresult *r = db_exec(d, a, &Q_RESERVE, 9, p);
    if (!r || PQntuples(r) != 1)
        return false;
    static const char *const names[] = {"inbound", "buckets"};
    int c[2];
    db_columns(r, names, c, 2);
    if (db_i64(r, 0, c[0]) != ninbound || db_i64(r, 0, c[1]) != (int64_t)nd) {
        *out = LEASE_RESERVE_SHORT;
        return true;
    }
    const char *q[] = {db_i64_text(a, plan_now_s), db_i64_text(a, LEASE_PLAN_MAX_AGE_S)};
    r = db_exec(d, a, &Q_PLAN_FRESH, 2, q);
    if (!r || PQntuples(r) != 1)
        return false;
    *out = PQgetvalue(r, 0, 0)[0] == 't' ? LEASE_RESERVE_OK : LEASE_RESERVE_STALE;
    return true;
}

bool lease_store_count_duration(db *d, arena *a, double seconds)
{
    int b = histogram_bucket(lease_duration_buckets, LEASE_DURATION_BUCKETS, seconds);
    char label[32];
    if (b < LEASE_DURATION_BUCKETS)
        snprintf(label, sizeof label, "%g", lease_duration_buckets[b]);
    else
        snprintf(label, sizeof label, "+Inf");
    const char *p[] = {label, db_i64_text(a, (int64_t)(seconds * 1e6)),
                       db_i64_text(a, random_range(0, 15))};
    return db_exec(d, a, &Q_DURATION, 3, p) != NULL;
}

/* ---- report, heartbeat, release ----------------------------------------------------- */

bool lease_store_renew(db *d, arena *a, int64_t agent_id, const char *lease_id, lease_renewal *out)
{
    memset(out, 0, sizeof *out);
    if (!db_begin(d))
        return false;
    const char *sp[] = {db_i64_text(a, SWEEP_BATCH)};
    const char *seen[] = {db_i64_text(a, agent_id)};
    const char *lp[] = {lease_id};
    PGresult *rr = NULL, *nowr = NULL, *cr = NULL;
    if (!db_exec(d, a, &Q_SWEEP, 1, sp) || !db_exec(d, a, &Q_SEEN, 1, seen) ||
        !(rr = db_exec(d, a, &Q_RENEW, 1, lp)) || !(nowr = db_exec(d, a, &Q_NOW, 0, NULL)))
        return false;
    if (PQntuples(rr) != 1) /* the sweep above may just have ended it: not revived */
        return db_commit(d);
    const char *service = PQgetvalue(nowr, 0, PQfnumber(nowr, "state"));
    if (strcmp(service, "running") != 0) {
        if (!(cr = db_exec(d, a, &Q_TO_CANCEL, 1, lp)))
            return false;
    } else {
        PGresult *hr = db_exec(d, a, &Q_HELD_INACTIVE, 1, lp);
        if (!hr || PQntuples(hr) != 1)
            return false;
        const char *hp[] = {lease_id, PQgetvalue(hr, 0, 0)};
        if (strcmp(hp[1], "{}") != 0 && !(cr = db_exec(d, a, &Q_HELD_SLOTS, 2, hp)))
            return false;
    }
    out->ncancel = cr ? PQntuples(cr) : 0;
    out->cancel = arena_alloc(a, (size_t)(out->ncancel + 1) * sizeof *out->cancel);
    for (int i = 0; i < out->ncancel; i++)
        out->cancel[i] = db_i64(cr, i, 0);
    const char *fp[] = {ids_literal(a, out->cancel, out->ncancel)};
    if (out->ncancel > 0 && !db_exec(d, a, &Q_FINISH, 1, fp))
        return false;
    if (!db_commit(d))
        return false;
    out->renewed = true;
    out->expires_at = PQgetvalue(rr, 0, PQfnumber(rr, "expires_at"));
    out->ttl_s = db_i64(rr, 0, PQfnumber(rr, "ttl_s"));
    out->service = service;
    return true;
}

bool lease_store_release(db *d, arena *a, const char *lease_id, int64_t *released)
{
    const char *lp[] = {lease_id};
    PGresult *r = NULL;
    if (!db_begin(d) || !(r = db_exec(d, a, &Q_RELEASE, 1, lp)) || !db_commit(d))
        return false;
    *released = db_i64(r, 0, 0);
    return true;
}
