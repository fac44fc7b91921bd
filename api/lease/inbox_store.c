/* Inbox leasing statements (see inbox_store.h). Rules: docs/design.md "Inbox leasing
 * and placement"; tables: sql/migrations/011_inbox.sql. */
#include "inbox_store.h"

#include "mailbox_states.h"
#include "pgarr.h"
#include "rand.h"

#include <stdlib.h>
#include <string.h>

#define SWEEP_BATCH "100"

/* An inbox an agent may watch: IMAP access, WATCHED_STATES (mailbox_states.h: a paused
 * mailbox's inbox stays watched), the inbox not in error (a refused login waits for the
 * access to change). */
#define WATCHABLE "m.imap_host IS NOT NULL AND " WATCHED_STATES " AND m.inbox <> 'error' "

static const db_stmt Q_BEGIN_SWEEP = {"inbox_sweep", "SELECT kiln_sweep_expired(" SWEEP_BATCH ")"};
static const db_stmt Q_WANTED = {
    "inbox_wanted", "UPDATE agents SET last_seen_at = kiln_now(), inbox_wanted_at = kiln_now() "
                    "WHERE id = $1"};
static const db_stmt Q_AGENT_LEASE = {
    "inbox_agent_lease",
    "SELECT l.id::text AS lease_id, (SELECT count(*) FROM inbox_leasing il "
    "WHERE il.lease_id = l.id) AS held FROM leases l WHERE l.agent_id = $1 AND l.kind = 'inbox' "
    "AND l.ended_at IS NULL AND l.expires_at > kiln_now() ORDER BY l.created_at DESC LIMIT 1"};
/* Other agents that want inboxes: those holding a live inbox lease, and those that asked
 * within $2 seconds (twice the longest lease retry), so a dead agent stops counting once
 * its lease expired and its inboxes went free. */
static const db_stmt Q_COUNTS = {
    "inbox_counts",
    "SELECT (SELECT count(*) FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE " WATCHABLE
    ") AS watchable, (SELECT count(*) FROM agents a WHERE a.id <> $1 AND (a.inbox_wanted_at > "
    "kiln_now() - make_interval(secs => $2) OR EXISTS (SELECT 1 FROM leases l WHERE l.agent_id "
    "= a.id AND l.kind = 'inbox' AND l.ended_at IS NULL AND l.expires_at > kiln_now()))) "
    "AS others"};
static const db_stmt Q_PICK = {
    "inbox_pick",
    "SELECT coalesce(array_agg(mailbox_id ORDER BY mailbox_id), '{}') FROM (SELECT il.mailbox_id "
    "FROM inbox_leasing il JOIN mailboxes m ON m.id = il.mailbox_id JOIN users u ON u.id = "
    "m.user_id WHERE il.lease_id IS NULL AND " WATCHABLE
    "ORDER BY il.mailbox_id LIMIT $1 FOR UPDATE OF il SKIP LOCKED) x"};
static const db_stmt Q_NEW_LEASE = {"inbox_new_lease",
                                    "INSERT INTO leases (agent_id, expires_at, ttl_s, kind) VALUES "
                                    "($1, kiln_now() + make_interval(secs => $2), $2, 'inbox') "
                                    "RETURNING id::text"};
static const db_stmt Q_EXTEND = {
    "inbox_extend", "UPDATE leases SET expires_at = kiln_now() + make_interval(secs => ttl_s) "
                    "WHERE id = $1::uuid AND ended_at IS NULL"};
static const db_stmt Q_ASSIGN = {
    "inbox_assign", "UPDATE inbox_leasing il SET lease_id = $1::uuid, imap_gen = m.imap_gen, "
                    "leased_at = kiln_now(), assigned_at = now() FROM mailboxes m "
                    "WHERE il.mailbox_id = ANY ($2::bigint[]) "
                    "AND m.id = il.mailbox_id AND il.lease_id IS NULL"};

/* Expected arrivals: sends to the inbox not yet placed, from two hours back (sent, not
 * found yet) to one hour ahead (high) or six (medium). */
#define EXPECTED(ahead)                                                                            \
    "EXISTS (SELECT 1 FROM sends s WHERE s.recipient_id = m.id AND s.scheduled_at BETWEEN "        \
    "k.now - interval '2 hours' AND k.now + interval '" ahead "' AND s.status IN ('leased', "      \
    "'sent', 'unknown') AND s.id >= kiln_sends_since(2) "                                          \
    "AND NOT EXISTS (SELECT 1 FROM placements p WHERE p.mailbox_id = s.mailbox_id "                \
    "AND p.send_id = s.id))"
/* What the agent's last merged answer ($2: its inbox_cursor, microseconds of that
 * answer's now(); NULL: none) lacks: fresh, an inbox given to it since (carried in full);
 * class_after, a poll class some answer carried since (the agent may not have it). */
#define US(t) "(extract(epoch FROM " t ") * 1000000)::bigint"
#define HELD_NEWS                                                                                  \
    "($2::bigint IS NULL OR il.assigned_at IS NULL OR " US(                                        \
        "il.assigned_at") " > $2) AS fresh, "                                                      \
                          "coalesce(il.poll_class_sent, '') AS class_sent, "                       \
                          "coalesce(" US("il.poll_class_sent_at") " > $2, false) AS class_after "
static const db_stmt Q_HELD = {
    "inbox_held",
    "SELECT il.mailbox_id, m.address, m.imap_host, m.imap_port, m.imap_security::text AS "
    "security, m.imap_username, m.imap_auth::text AS auth, encode(m.imap_secret, 'hex') AS "
    "secret_hex, m.imap_allow_plaintext_auth, CASE WHEN " EXPECTED(
        "1 hour") " THEN 'high' "
                  "WHEN " EXPECTED(
                      "6 hours") " THEN 'medium' ELSE 'low' END AS poll_class, " HELD_NEWS
                                 "FROM inbox_leasing il JOIN mailboxes m ON m.id = il.mailbox_id "
                                 "JOIN users u ON u.id = m.user_id CROSS JOIN (SELECT kiln_now() "
                                 "AS now) k "
                                 "WHERE il.lease_id = $1::uuid AND il.imap_gen = m.imap_gen "
                                 "AND " WATCHABLE "ORDER BY il.mailbox_id"};
/* The cursor of this answer: its transaction's now() (an inbox assigned in it is at it). */
static const db_stmt Q_CURSOR = {"inbox_cursor", "SELECT " US("now()")};
/* The poll classes an answer carries, where they differ from the last carried. */
static const db_stmt Q_CLASS_SENT = {
    "inbox_class_sent",
    "UPDATE inbox_leasing il SET poll_class_sent = x.c, poll_class_sent_at = now() "
    "FROM unnest($1::bigint[], $2::text[]) AS x (id, c) WHERE il.mailbox_id = x.id"};
static const db_stmt Q_FOLDERS = {
    "inbox_folders", "SELECT mailbox_id, name, role::text AS role, uidvalidity, last_uid "
                     "FROM inbox_folders WHERE mailbox_id = ANY ($1::bigint[]) "
                     "ORDER BY mailbox_id, name"};
/* Per message its pending action (at most one since 031; the order by due time, kind
 * (rescue, mark, file, prune) and id is the one 031 kept older plans' first by). The
 * inbox's pending actions are the key's range (mailbox_id, 'pending'). */
static const db_stmt Q_DUE = {
    "inbox_due",
    "SELECT * FROM (SELECT DISTINCT ON (a.mailbox_id, a.send_id) a.mailbox_id, a.id, "
    "a.kind::text AS kind, a.folder, a.uidvalidity, a.uid, array_to_string(a.flags, ' ') AS "
    "flags, a.target::text AS target, least(604800, greatest(0, ceil(extract(epoch FROM "
    "a.not_before - k.now))))::bigint AS not_before_s, s.message_id FROM inbox_actions a "
    "LEFT JOIN sends s ON s.id = a.send_id "
    "CROSS JOIN (SELECT kiln_now() AS now) k WHERE a.mailbox_id = ANY ($1::bigint[]) "
    "AND a.status = 'pending' ORDER BY a.mailbox_id, a.send_id, a.not_before, a.kind, a.id) x "
    "WHERE x.not_before_s <= $2 ORDER BY x.mailbox_id, x.not_before_s, x.id"};

static const db_stmt Q_HELD_STATE = {
    "inbox_held_state",
    "SELECT il.mailbox_id, (il.imap_gen = m.imap_gen AND " WATCHABLE ") AS keep "
    "FROM inbox_leasing il JOIN mailboxes m ON m.id = il.mailbox_id "
    "JOIN users u ON u.id = m.user_id WHERE il.lease_id = $1::uuid "
    "ORDER BY il.mailbox_id FOR UPDATE OF il"};
static const db_stmt Q_FREE = {"inbox_free",
                               "UPDATE inbox_leasing SET lease_id = NULL WHERE lease_id = $1::uuid "
                               "AND mailbox_id = ANY ($2::bigint[])"};
static const db_stmt Q_HELD_COUNT = {
    "inbox_held_count", "SELECT count(*) FROM inbox_leasing WHERE lease_id = $1::uuid"};
static const db_stmt Q_END = {"inbox_end", "SELECT kiln_end_leases(ARRAY[$1::uuid], 'cancelled')"};

/* The report's inboxes by key, then which this lease holds: the fence (OFFSET 0) keeps
 * the planner from also reading the lease's whole index range (every inbox it holds,
 * thousands) to intersect it with the few hundred the report names. Each row also
 * carries the report's clock (now_s: one report is one moment) and what the engagement
 * policy needs of the inbox as a recipient: its plan's members and its zone, the columns
 * and rules of kiln_engage_inputs (012), read here with the inbox instead of again per
 * found send (a verified send's recipient is the inbox it was found in). The zone's
 * spans come NULL: the report takes them from its process's cache
 * (lease_reply_zone_spans), not from kiln_tz_spans per zone per report. */
static const db_stmt Q_LEASE_INBOXES = {
    "inbox_lease_inboxes",
    "SELECT il.mailbox_id, m.imap_host, m.address, k.now_s, 0::bigint AS send_id, "
    "  il.mailbox_id AS recipient_id, p.open_rate, p.important_rate, p.rescue_rate, "
    "  p.reply_rate, p.untouched_rate, p.dwell_median_min, p.dwell_max_min, "
    "  p.quiet_start_hour, p.quiet_end_hour, p.retention_days, p.max_reply_depth, "
    "  0 AS reply_depth, NULL::bigint[] AS tz_from_s, NULL::integer[] AS tz_offset_s, "
    "  m.timezone "
    "FROM (SELECT mailbox_id, lease_id FROM inbox_leasing "
    "  WHERE mailbox_id = ANY ($2::bigint[]) OFFSET 0) il "
    "JOIN mailboxes m ON m.id = il.mailbox_id JOIN users u ON u.id = m.user_id "
    "JOIN plans p ON p.id = u.plan_id "
    "CROSS JOIN (SELECT ceil(extract(epoch FROM kiln_now()))::bigint AS now_s) k "
    "WHERE il.lease_id = $1::uuid"};
static const db_stmt Q_SENDS = {"inbox_sends", "SELECT id, mailbox_id, recipient_id, reply_depth "
                                               "FROM sends WHERE id = ANY ($1::bigint[])"};

/* New finds (the caller removed in-batch repeats of a key): the ords whose key is
 * neither a sighting nor its message's current place (inbox_messages). A message's
 * current place is not a sighting too (023): only the places it left are, written when
 * it leaves them. A first find (no message yet) is decided by the message's insert
 * (Q_MESSAGES, a plain INSERT: a concurrent report of the same find fails on
 * inbox_messages_pkey and is retried, then finds it known); of a message found at
 * several places in one report, the places before its last become sightings. A known
 * message found elsewhere (moved): the place it leaves and the new one become
 * sightings, and the new one's insert decides. */
static const db_stmt Q_SIGHT = {
    "inbox_sight",
    "WITH x AS (SELECT * FROM unnest($1::int[], $2::bigint[], $3::text[], $4::bigint[], "
    "  $5::bigint[], $6::bigint[]) AS x (ord, mb, f, v, u, s)), "
    "y AS (SELECT x.*, m.send_id IS NOT NULL AS known, m.folder AS mf, m.uidvalidity AS mv, "
    "  m.uid AS mu, row_number() OVER (PARTITION BY x.mb, x.s ORDER BY x.ord DESC) AS nth "
    "  FROM x LEFT JOIN inbox_messages m ON m.mailbox_id = x.mb AND m.send_id = x.s "
    "  WHERE NOT EXISTS (SELECT 1 FROM inbox_sightings t WHERE t.mailbox_id = x.mb "
    "  AND t.folder = x.f AND t.uidvalidity = x.v AND t.uid = x.u) AND (m.send_id IS NULL OR "
    "  (m.folder, m.uidvalidity, m.uid) <> (x.f, x.v, x.u))), "
    "gone_from AS (INSERT INTO inbox_sightings (mailbox_id, folder, uidvalidity, uid, send_id) "
    "  SELECT mb, f, v, u, s FROM (SELECT DISTINCT mb, mf AS f, mv AS v, mu AS u, s FROM y "
    "  WHERE known UNION SELECT mb, f, v, u, s FROM y WHERE NOT known AND nth > 1) o "
    "  ORDER BY mb, f, v, u ON CONFLICT DO NOTHING), "
    "ins AS (INSERT INTO inbox_sightings (mailbox_id, folder, uidvalidity, uid, send_id) "
    "  SELECT mb, f, v, u, s FROM y WHERE known ORDER BY mb, f, v, u ON CONFLICT DO NOTHING "
    "  RETURNING mailbox_id, folder, uidvalidity, uid) "
    "SELECT ord, known FROM (SELECT y.ord, false AS known FROM y WHERE NOT y.known UNION ALL "
    "SELECT y.ord, true FROM y JOIN ins ON ins.mailbox_id = y.mb AND ins.folder = y.f "
    "AND ins.uidvalidity = y.v AND ins.uid = y.u) z ORDER BY ord"};

/* The messages' current place (a later find moves it: an update) and new messages (a
 * plain insert of those Q_SIGHT found unknown: a report that committed the same message
 * since fails it on inbox_messages_pkey, and the retry finds it known), the first placements (a
 * plain insert; a find after missing fills folder and found_at only; the missing sweep inserting
 * the same send meanwhile fails the insert on placements_pkey, retried). Counters in the same
 * statement. Returns the sends whose message is new. */
static const db_stmt Q_MESSAGES = {
    "inbox_messages",
    "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::folder_role[], "
    "  $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::placement_folder[], $10::text[], "
    "  $11::mail_provider[], $12::auth_verdict[], $13::auth_verdict[], $14::auth_verdict[], "
    "  $16::boolean[]) AS x (mb, sid, f, role, v, u, flags, sender, pl, ff, prov, spf, dkim, "
    "  dmarc, known)), "
    "k AS MATERIALIZED (SELECT kiln_now() AS now), "
    "moved AS (UPDATE inbox_messages im SET folder = x.f, role = x.role, uidvalidity = x.v, "
    "  uid = x.u, flags = x.flags::text[], moved_at = k.now FROM x CROSS JOIN k "
    "  WHERE x.known AND im.mailbox_id = x.mb AND im.send_id = x.sid), "
    "msg AS (INSERT INTO inbox_messages (mailbox_id, send_id, folder, role, uidvalidity, uid, "
    "  flags, found_at) SELECT mb, sid, f, role, v, u, flags::text[], k.now FROM x CROSS JOIN k "
    "  WHERE NOT x.known ORDER BY mb, sid RETURNING send_id), "
    "had AS (SELECT x.sid, p.placement = 'missing' AND p.found_at IS NULL AS late FROM x "
    "  JOIN placements p ON p.mailbox_id = x.sender AND p.send_id = x.sid), "
    "late AS (UPDATE placements p SET folder = x.ff, found_at = k.now FROM k, x JOIN had "
    "  ON had.sid = x.sid AND had.late WHERE p.mailbox_id = x.sender AND p.send_id = x.sid "
    "  AND p.placement = 'missing' AND p.found_at IS NULL), "
    "pl AS (INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, folder, "
    "  found_at, decided_at, provider, spf, dkim, dmarc) SELECT sid, sender, mb, pl, ff, k.now, "
    "  k.now, prov, spf, dkim, dmarc FROM x CROSS JOIN k WHERE x.sid NOT IN (SELECT sid FROM had) "
    "  ORDER BY sender, sid RETURNING provider, placement), "
    "cnt AS (INSERT INTO counters (name, label, shard, value) SELECT 'placement', "
    "  provider::text || ':' || placement::text, $15::smallint, count(*) FROM pl "
    "  GROUP BY 2 ORDER BY 2 ON CONFLICT (name, label, shard) DO UPDATE "
    "  SET value = counters.value + excluded.value) "
    "SELECT send_id FROM msg ORDER BY send_id"};

/* A message's plan is one row: its first action, the rest (kind, flags, target, due) in
 * rest, issued one at a time as outcomes come (Q_OUTCOMES): actions never reached (a
 * message gone, pruned) are never written. The caller lists each message's actions
 * consecutively, in plan order. */
static const db_stmt Q_ADD_ACTIONS = {
    "inbox_add_actions",
    "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::inbox_action_kind[], "
    "  $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::folder_role[], $9::bigint[]) "
    "  WITH ORDINALITY AS x (mb, sid, kind, f, v, u, flags, target, nb, ord)), "
    "g AS (SELECT min(ord) AS first, jsonb_agg(jsonb_strip_nulls(jsonb_build_object('k', kind, "
    "  'f', nullif(flags::text[], '{}'), 't', target, 'at', nb)) ORDER BY ord) AS plan "
    "  FROM x GROUP BY mb, sid), "
    "ins AS (INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, "
    "  flags, target, not_before, rest, created_at) SELECT x.mb, x.sid, x.kind, x.f, x.v, x.u, "
    "  x.flags::text[], x.target, to_timestamp(x.nb), nullif(g.plan - 0, '[]'), k.now "
    "  FROM g JOIN x ON x.ord = g.first CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k "
    "  ORDER BY x.ord RETURNING kind) "
    "INSERT INTO counters (name, label, shard, value) SELECT 'actions', kind::text || ':issued', "
    "  $10::smallint, count(*) FROM ins GROUP BY 2 ORDER BY 2 ON CONFLICT (name, label, shard) "
    "  DO UPDATE SET value = counters.value + excluded.value"};

/* Outcomes: the first counts (only pending actions change). An action is read by the key
 * (mailbox_id, status, id): a pending one in one probe; where an outcome applies nothing,
 * whether it named a known action (a duplicate) is one probe per status (a fenced
 * LATERAL: each probe names all three key columns, whatever the planner guesses of the
 * inbox's size), for those rows only (031). A message has at most one pending action
 * (its plan's rest waits in the row, 023; 031 folded older plans). An outcome that goes
 * on (done but a prune, refused, failed) issues the next action of the plan (next, from
 * rest), where the message is now: after a move that was done, at the reported place.
 * Gone, stale and a done prune end the plan (the rest is never issued), except a stale
 * action whose message was found again in the same folder under another UIDVALIDITY (the
 * folder was rebuilt): the plan follows it there and the action is issued again (again:
 * a new id, due when it was). */
static const db_stmt Q_OUTCOMES = {
    "inbox_outcomes",
    "WITH r AS (SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], "
    "  $4::inbox_action_status[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], "
    "  $9::text[]) AS r (ord, mb, id, status, f, v, u, flags, detail)), "
    "upd AS (UPDATE inbox_actions a SET status = r.status, outcome = r.detail, "
    "  reported_at = kiln_now() FROM r WHERE a.id = r.id AND a.mailbox_id = r.mb "
    "  AND a.status = 'pending' RETURNING a.id, a.mailbox_id, a.send_id, a.kind, a.target, "
    "  a.status, a.folder AS af, a.uidvalidity AS av, a.uid AS au, a.flags AS aflags, "
    "  a.not_before, a.rest, r.f, r.v, r.u, r.flags), "
    "upd2 AS (SELECT u.id, u.mailbox_id, u.send_id, u.kind, u.status, u.aflags, u.not_before, "
    "  CASE WHEN moved THEN NULL ELSE u.target END AS target, "
    "  CASE WHEN moved THEN m.folder ELSE u.f END AS f, "
    "  CASE WHEN moved THEN m.uidvalidity ELSE u.v END AS v, "
    "  CASE WHEN moved THEN m.uid ELSE u.u END AS u, moved, u.af "
    "  FROM upd u LEFT JOIN inbox_messages m ON m.mailbox_id = u.mailbox_id "
    "  AND m.send_id = u.send_id CROSS JOIN LATERAL (SELECT coalesce(u.status = 'stale' "
    "  AND m.folder = u.af AND m.uidvalidity <> u.av, false) AS moved) z), "
    "again AS (INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, "
    "  flags, target, not_before, rest) SELECT a.mailbox_id, a.send_id, a.kind, a.folder, u.v, "
    "  u.u, a.flags, a.target, a.not_before, a.rest FROM upd2 u JOIN inbox_actions a "
    "  ON a.mailbox_id = u.mailbox_id AND a.send_id = u.send_id AND a.id = u.id "
    "  AND a.status = 'pending' WHERE u.moved ORDER BY u.id RETURNING kind), "
    "next AS (INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, "
    "  flags, target, not_before, rest) SELECT u.mailbox_id, u.send_id, "
    "  (u.rest->0->>'k')::inbox_action_kind, CASE WHEN z.mv THEN u.f ELSE u.af END, "
    "  CASE WHEN z.mv THEN u.v ELSE u.av END, CASE WHEN z.mv THEN u.u ELSE u.au END, "
    "  ARRAY(SELECT jsonb_array_elements_text(u.rest->0->'f')), "
    "  (u.rest->0->>'t')::folder_role, to_timestamp((u.rest->0->>'at')::bigint), "
    "  nullif(u.rest - 0, '[]') FROM upd u CROSS JOIN LATERAL (SELECT u.status = 'done' "
    "  AND u.kind IN ('rescue', 'file') AND u.f IS NOT NULL AND u.v IS NOT NULL "
    "  AND u.u IS NOT NULL AS mv) z WHERE jsonb_array_length(u.rest) > 0 "
    "  AND (u.status IN ('refused', 'failed') OR (u.status = 'done' AND u.kind <> 'prune')) "
    "  ORDER BY u.id RETURNING kind), "
    "ev AS (SELECT DISTINCT ON (mailbox_id, send_id) mailbox_id, send_id, target, "
    "  ((status IN ('gone', 'stale') AND NOT moved) OR kind = 'prune') AS stop, f, v, u "
    "  FROM upd2 WHERE status IN ('gone', 'stale') OR (status = 'done' AND (kind = 'prune' OR "
    "  (kind IN ('rescue', 'file') AND f IS NOT NULL AND v IS NOT NULL AND u IS NOT NULL))) "
    "  ORDER BY mailbox_id, send_id, id DESC), "
    /* One update per message (a row updated twice in a statement keeps one change):
     * its new place after a move and its flags after a mark. */
    "msg AS (UPDATE inbox_messages m SET folder = coalesce(x.f, m.folder), "
    "  role = coalesce(x.target, m.role), uidvalidity = coalesce(x.v, m.uidvalidity), "
    "  uid = coalesce(x.u, m.uid), flags = coalesce(x.flags::text[], m.flags), "
    "  moved_at = CASE WHEN x.f IS NULL THEN m.moved_at ELSE kiln_now() END "
    "  FROM (SELECT coalesce(e.mailbox_id, k.mailbox_id) AS mailbox_id, "
    "    coalesce(e.send_id, k.send_id) AS send_id, e.f, e.target, e.v, e.u, k.flags "
    "    FROM (SELECT * FROM ev WHERE NOT stop) e FULL JOIN (SELECT DISTINCT ON "
    "    (mailbox_id, send_id) mailbox_id, send_id, flags FROM upd WHERE kind = 'mark' AND "
    "    status = 'done' AND flags IS NOT NULL ORDER BY mailbox_id, send_id, id DESC) k "
    "    ON k.mailbox_id = e.mailbox_id AND k.send_id = e.send_id) x "
    "  WHERE m.mailbox_id = x.mailbox_id AND m.send_id = x.send_id), "
    /* The place a moved message leaves becomes a sighting (its new one is its current
     * place: a find there is a duplicate, see Q_SIGHT). */
    "st AS (INSERT INTO inbox_sightings (mailbox_id, folder, uidvalidity, uid, send_id) "
    "  SELECT m.mailbox_id, m.folder, m.uidvalidity, m.uid, m.send_id FROM ev JOIN "
    "  inbox_messages m ON m.mailbox_id = ev.mailbox_id AND m.send_id = ev.send_id "
    "  WHERE NOT ev.stop AND ev.f IS NOT NULL AND (m.folder, m.uidvalidity, m.uid) IS DISTINCT "
    "  FROM (ev.f, ev.v, ev.u) ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING), "
    "cnt AS (INSERT INTO counters (name, label, shard, value) SELECT 'actions', "
    "  kind::text || ':' || status, $10::smallint, count(*) FROM (SELECT kind, status::text "
    "  FROM upd UNION ALL SELECT kind, 'issued' FROM again "
    "  UNION ALL SELECT kind, 'issued' FROM next) c "
    "  GROUP BY 2 ORDER BY 2 ON CONFLICT (name, label, shard) DO UPDATE "
    "  SET value = counters.value + excluded.value) "
    "SELECT r.ord, (u.id IS NOT NULL) AS applied, (kn.k IS NOT NULL) AS known FROM r "
    "LEFT JOIN upd u ON u.id = r.id LEFT JOIN LATERAL (SELECT true AS k "
    "  FROM unnest(enum_range(NULL::inbox_action_status)) st (s) CROSS JOIN LATERAL (SELECT 1 "
    "  FROM inbox_actions a WHERE a.mailbox_id = r.mb AND a.status = st.s AND a.id = r.id "
    "  OFFSET 0) a WHERE u.id IS NULL LIMIT 1) kn ON true "
    "ORDER BY r.ord"};

/* Folder states, forward only: a row changes when its last_uid grows or its uidvalidity
 * differs (a resync: the new state replaces the old). At most 16 folders per mailbox: a
 * new name past the bound is refused.
 *
 * Two statements so that the bound holds when reports of one mailbox run together
 * (a hostile or confused agent; lease handover): Q_FOLDER_STATE first takes a
 * transaction-scoped advisory lock per mailbox that has a name it does not know
 * (ascending, so two reports cannot deadlock on them; the InitPlan runs before the
 * UPDATE locks any row) and moves the known folders forward. Only when it saw a new
 * name, Q_FOLDER_NEW runs — with a snapshot taken after the locks, so another report's
 * new folders are committed and counted — and admits new names in report order up to
 * the bound (the count of rows there is compared with each name's rank, not per row:
 * one report of 200 new names stores 16). In steady state no name is new: one
 * statement, no lock. */
#define FOLDERS_MAX "16"
#define FOLDER_ROWS                                                                                \
    "x AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::folder_role[], $4::bigint[], "       \
    "  $5::bigint[]) WITH ORDINALITY AS x (mb, name, role, v, last, ord)), "                       \
    "fresh AS (SELECT x.* FROM x WHERE NOT EXISTS (SELECT 1 FROM inbox_folders f "                 \
    "  WHERE f.mailbox_id = x.mb AND f.name = x.name)) "
static const db_stmt Q_FOLDER_STATE = {
    "inbox_folder_state",
    "WITH " FOLDER_ROWS ", "
    "lk AS (SELECT count(pg_advisory_xact_lock(hashtext('kiln_folders'), "
    "  (mb % 2147483647)::int)) AS n FROM (SELECT DISTINCT mb FROM fresh ORDER BY mb) m), "
    "up AS (UPDATE inbox_folders f SET role = x.role, uidvalidity = x.v, last_uid = x.last, "
    "  updated_at = kiln_now() FROM x WHERE (SELECT n FROM lk) >= 0 AND f.mailbox_id = x.mb "
    "  AND f.name = x.name AND (f.uidvalidity <> x.v OR x.last > f.last_uid) RETURNING 1) "
    "SELECT (SELECT count(*) FROM up) AS changed, (SELECT count(*) FROM fresh) AS fresh"};
static const db_stmt Q_FOLDER_NEW = {
    "inbox_folder_new",
    "WITH " FOLDER_ROWS ", "
    "ok AS (SELECT x.* FROM x WHERE NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.ord = x.ord) "
    "  UNION ALL SELECT r.mb, r.name, r.role, r.v, r.last, r.ord FROM (SELECT fresh.*, "
    "  row_number() OVER (PARTITION BY mb ORDER BY ord) AS k FROM fresh) r "
    "  WHERE r.k <= " FOLDERS_MAX " - (SELECT count(*) FROM inbox_folders f "
    "  WHERE f.mailbox_id = r.mb)), "
    "up AS (INSERT INTO inbox_folders AS f (mailbox_id, name, role, uidvalidity, last_uid) "
    "  SELECT mb, name, role, v, last FROM ok ORDER BY mb, name ON CONFLICT (mailbox_id, name) "
    "  DO UPDATE SET role = excluded.role, uidvalidity = excluded.uidvalidity, "
    "  last_uid = excluded.last_uid, updated_at = kiln_now() "
    "  WHERE f.uidvalidity <> excluded.uidvalidity OR excluded.last_uid > f.last_uid "
    "  RETURNING 1) "
    "SELECT (SELECT count(*) FROM up) AS changed, "
    "(SELECT count(*) FROM x) - (SELECT count(*) FROM ok) AS refused"};

/* Sessions (openapi InboxEventSession): `ok` (a visit's work done) makes the inbox `ok`
 * and clears its error; `auth` and `tls` put it in `error` with the detail; a transient
 * outcome (connect, throttled, protocol) leaves the state and records the failure:
 * inbox_error is its detail and inbox_error_at when the inbox began failing (kept while
 * it keeps failing), until a visit completes. An inbox in `error` keeps its reason. The
 * missing sweep does not judge mail to a failing inbox (Q_SWEEP_LOAD). */
#define SESSION_DETAIL "coalesce(x.detail, x.st || ' failed')"
#define SESSION_FINAL "x.st IN ('auth', 'tls')"
static const db_stmt Q_SESSIONS = {
    "inbox_sessions",
    "UPDATE mailboxes m SET inbox = CASE WHEN x.st = 'ok' THEN 'ok'::inbox_state "
    "  WHEN " SESSION_FINAL " THEN 'error'::inbox_state ELSE m.inbox END, "
    "inbox_error = CASE WHEN x.st = 'ok' THEN NULL ELSE " SESSION_DETAIL " END, "
    "inbox_error_at = CASE WHEN x.st = 'ok' THEN NULL WHEN " SESSION_FINAL " THEN kiln_now() "
    "  ELSE coalesce(m.inbox_error_at, kiln_now()) END "
    "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS x (mb, st, detail) "
    "WHERE m.id = x.mb AND (CASE "
    "  WHEN x.st = 'ok' THEN m.inbox <> 'ok' OR m.inbox_error IS NOT NULL "
    "  WHEN " SESSION_FINAL " THEN m.inbox <> 'error' OR m.inbox_error IS DISTINCT FROM "
    "  " SESSION_DETAIL " "
    "  ELSE m.inbox <> 'error' AND m.inbox_error IS DISTINCT FROM " SESSION_DETAIL " END) "
    "RETURNING m.id"};

/* The missing sweep: sends after the watermark, in id order. judged: its time plus the
 * deadline has passed and it is final; missing: sent, not placed, to an inbox that is
 * watched (IMAP, inbox ok and not failing, WATCHABLE's states, and held by a live inbox
 * lease: mail to a mailbox deleted since, of a user disabled since, to an inbox whose
 * visits keep failing, or to one no agent holds (the agents' KILN_AGENT_MAX_INBOXES short
 * of the pool) cannot be found and is not held against its sender; a later find still
 * places it). Until session 35 an inbox no agent held was judged all the same. */
#define SWEEP_RECIPIENT_WATCHED WATCHED_STATES_OF("rm", "ru")
#define SWEEP_RECIPIENT_READABLE INBOX_READABLE_OF("rm")
#define SWEEP_RECIPIENT_HELD                                                                       \
    "EXISTS (SELECT 1 FROM inbox_leasing il JOIN leases l ON l.id = il.lease_id "                  \
    "WHERE il.mailbox_id = rm.id AND l.ended_at IS NULL AND l.expires_at > (SELECT kiln_now()))"
static const db_stmt Q_SWEEP_LOAD = {
    "inbox_sweep_load",
    "WITH w AS (SELECT last_send_id FROM placement_sweep FOR UPDATE SKIP LOCKED) "
    "SELECT s.id, s.mailbox_id, coalesce(s.recipient_id, 0) AS recipient_id, "
    "(s.scheduled_at <= kiln_now() - make_interval(secs => $1) AND s.status <> 'leased') "
    "  AS judged, "
    "(s.status IN ('sent', 'unknown') AND rm.imap_host IS NOT NULL "
    "  AND " SWEEP_RECIPIENT_READABLE " AND " SWEEP_RECIPIENT_WATCHED " AND "
    "  " SWEEP_RECIPIENT_HELD " AND NOT "
    "  EXISTS (SELECT 1 FROM placements p WHERE p.mailbox_id = s.mailbox_id "
    "  AND p.send_id = s.id)) AS missing, rm.imap_host, "
    "rm.address FROM sends s LEFT JOIN mailboxes rm ON rm.id = s.recipient_id "
    "LEFT JOIN users ru ON ru.id = rm.user_id "
    /* A scalar bound, not a join: the day partitions below it are pruned and each is
     * read in id order from the bound (a join read every partition whole). */
    "WHERE s.id > (SELECT last_send_id FROM w) ORDER BY s.id LIMIT $2"};
static const db_stmt Q_SWEEP_WRITE = {
    "inbox_sweep_write",
    "WITH pl AS (INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, provider) "
    "  SELECT s, mb, rc, 'missing', prov FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], "
    "  $4::mail_provider[]) AS x (s, mb, rc, prov) ORDER BY s ON CONFLICT DO NOTHING "
    "  RETURNING provider), "
    "cnt AS (INSERT INTO counters (name, label, shard, value) SELECT 'placement', "
    "  provider::text || ':missing', $6::smallint, count(*) FROM pl GROUP BY 2 ORDER BY 2 "
    "  ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value) "
    "UPDATE placement_sweep SET last_send_id = greatest(last_send_id, $5)"};

static const char *shard(arena *a)
{
    return db_i64_text(a, random_range(0, 15));
}

static bool col_bool(const PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col)[0] == 't';
}

static const char *ids_literal(arena *a, const int64_t *v, int n)
{
    pgarr arr;
    pgarr_open(&arr);
    for (int i = 0; i < n; i++)
        pgarr_i64(&arr, v[i]);
    return pgarr_done(&arr, a);
}

/* Parses an int8[] literal ("{1,2}") into the arena. */
static int64_t *parse_ids(arena *a, const char *lit, int *n)
{
    int cap = 1;
    for (const char *p = lit; *p; p++)
        cap += *p == ',';
    int64_t *out = arena_alloc(a, (size_t)cap * sizeof *out);
    *n = 0;
    for (const char *p = lit; *p;) {
        if (*p >= '0' && *p <= '9') {
            char *end = NULL;
            out[(*n)++] = strtoll(p, &end, 10);
            p = end;
        } else {
            p++;
        }
    }
    return out;
}

/* ---- grant ---------------------------------------------------------------------------- */

bool inbox_store_begin(db *d, arena *a, int64_t agent_id)
{
    const char *p[] = {db_i64_text(a, agent_id)};
    return db_begin(d) && db_exec(d, a, &Q_BEGIN_SWEEP, 0, NULL) && db_exec(d, a, &Q_WANTED, 1, p);
}

bool inbox_store_agent_lease(db *d, arena *a, int64_t agent_id, const char **lease_id,
                             int64_t *held)
{
    const char *p[] = {db_i64_text(a, agent_id)};
    PGresult *r = db_exec(d, a, &Q_AGENT_LEASE, 1, p);
    if (!r)
        return false;
    *lease_id = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : NULL;
    *held = PQntuples(r) == 1 ? db_i64(r, 0, 1) : 0;
    return true;
}

bool inbox_store_counts(db *d, arena *a, int64_t agent_id, int64_t window_s, int64_t *watchable,
                        int64_t *others)
{
    const char *p[] = {db_i64_text(a, agent_id), db_i64_text(a, window_s)};
    PGresult *r = db_exec(d, a, &Q_COUNTS, 2, p);
    if (!r || PQntuples(r) != 1)
        return false;
    *watchable = db_i64(r, 0, 0);
    *others = db_i64(r, 0, 1);
    return true;
}

bool inbox_store_pick(db *d, arena *a, int64_t n, int64_t **ids, int *nids)
{
    const char *p[] = {db_i64_text(a, n)};
    PGresult *r = db_exec(d, a, &Q_PICK, 1, p);
    if (!r || PQntuples(r) != 1)
        return false;
    *ids = parse_ids(a, PQgetvalue(r, 0, 0), nids);
    return true;
}

bool inbox_store_new_lease(db *d, arena *a, int64_t agent_id, int64_t ttl_s, const char **lease_id)
{
    const char *p[] = {db_i64_text(a, agent_id), db_i64_text(a, ttl_s)};
    PGresult *r = db_exec(d, a, &Q_NEW_LEASE, 2, p);
    if (!r || PQntuples(r) != 1)
        return false;
    *lease_id = PQgetvalue(r, 0, 0);
    return true;
}

bool inbox_store_extend(db *d, arena *a, const char *lease_id)
{
    const char *p[] = {lease_id};
    return db_exec(d, a, &Q_EXTEND, 1, p) != NULL;
}

bool inbox_store_assign(db *d, arena *a, const char *lease_id, const int64_t *ids, int n)
{
    if (n == 0)
        return true;
    const char *p[] = {lease_id, ids_literal(a, ids, n)};
    return db_exec(d, a, &Q_ASSIGN, 2, p) != NULL;
}

static void read_rows(const PGresult *r, inbox_held *out, arena *a)
{
    static const char *const names[] = {"mailbox_id", "address",    "imap_host",
                                        "imap_port",  "security",   "imap_username",
                                        "auth",       "secret_hex", "imap_allow_plaintext_auth",
                                        "poll_class", "fresh",      "class_sent",
                                        "class_after"};
    int c[13];
    db_columns(r, names, c, 13);
    out->nrows = PQntuples(r);
    out->rows = arena_calloc(a, (size_t)(out->nrows + 1) * sizeof *out->rows);
    for (int i = 0; i < out->nrows; i++) {
        inbox_row *w = &out->rows[i];
        w->mailbox_id = db_i64(r, i, c[0]);
        w->address = PQgetvalue(r, i, c[1]);
        w->host = PQgetvalue(r, i, c[2]);
        w->port = db_i64(r, i, c[3]);
        w->security = PQgetvalue(r, i, c[4]);
        w->username = PQgetvalue(r, i, c[5]);
        w->auth = PQgetvalue(r, i, c[6]);
        w->secret_hex = PQgetvalue(r, i, c[7]);
        w->allow_plaintext_auth = col_bool(r, i, c[8]);
        w->poll_class = PQgetvalue(r, i, c[9]);
        w->fresh = col_bool(r, i, c[10]);
        w->class_recorded = strcmp(w->poll_class, PQgetvalue(r, i, c[11])) == 0;
        w->class_news = col_bool(r, i, c[12]) || !w->class_recorded;
        w->listed = true;
    }
}

static void read_folders(const PGresult *r, inbox_held *out, arena *a)
{
    out->nfolders = PQntuples(r);
    out->folders = arena_calloc(a, (size_t)(out->nfolders + 1) * sizeof *out->folders);
    for (int i = 0; i < out->nfolders; i++) {
        inbox_folder_row *f = &out->folders[i];
        f->mailbox_id = db_i64(r, i, 0);
        f->name = PQgetvalue(r, i, 1);
        f->role = PQgetvalue(r, i, 2);
        f->uidvalidity = db_i64(r, i, 3);
        f->last_uid = db_i64(r, i, 4);
    }
}

static void read_actions(const PGresult *r, inbox_held *out, arena *a)
{
    static const char *const names[] = {"mailbox_id",   "id",        "kind",  "folder",
                                        "uidvalidity",  "uid",       "flags", "target",
                                        "not_before_s", "message_id"};
    int c[10];
    db_columns(r, names, c, 10);
    out->nactions = PQntuples(r);
    out->actions = arena_calloc(a, (size_t)(out->nactions + 1) * sizeof *out->actions);
    for (int i = 0; i < out->nactions; i++) {
        inbox_action_row *x = &out->actions[i];
        x->mailbox_id = db_i64(r, i, c[0]);
        x->id = db_i64(r, i, c[1]);
        x->kind = PQgetvalue(r, i, c[2]);
        x->folder = PQgetvalue(r, i, c[3]);
        x->uidvalidity = db_i64(r, i, c[4]);
        x->uid = db_i64(r, i, c[5]);
        x->flags = PQgetvalue(r, i, c[6]);
        x->target = PQgetisnull(r, i, c[7]) ? NULL : PQgetvalue(r, i, c[7]);
        x->not_before_s = db_i64(r, i, c[8]);
        x->message_id = PQgetisnull(r, i, c[9]) ? NULL : PQgetvalue(r, i, c[9]);
    }
}

bool inbox_store_load(db *d, arena *a, const char *lease_id, int64_t horizon_s, const char *cursor,
                      inbox_held *out)
{
    const char *p[] = {lease_id, cursor};
    PGresult *r = db_exec(d, a, &Q_HELD, 2, p);
    PGresult *cr = r ? db_exec(d, a, &Q_CURSOR, 0, NULL) : NULL;
    if (!cr)
        return false;
    out->cursor = PQgetvalue(cr, 0, 0);
    out->delta = cursor != NULL;
    read_rows(r, out, a);
    int64_t *ids = arena_alloc(a, (size_t)(out->nrows + 1) * sizeof *ids);
    for (int i = 0; i < out->nrows; i++)
        ids[i] = out->rows[i].mailbox_id;
    const char *fp[] = {ids_literal(a, ids, out->nrows), db_i64_text(a, horizon_s)};
    PGresult *fr = db_exec(d, a, &Q_FOLDERS, 1, fp);
    PGresult *ar = fr ? db_exec(d, a, &Q_DUE, 2, fp) : NULL;
    if (!ar)
        return false;
    read_folders(fr, out, a);
    read_actions(ar, out, a);
    return true;
}

bool inbox_store_class_sent(db *d, arena *a, const char *ids, const char *classes)
{
    const char *p[] = {ids, classes};
    return db_exec(d, a, &Q_CLASS_SENT, 2, p) != NULL;
}

/* ---- renewal, release ------------------------------------------------------------------ */

bool inbox_store_drop(db *d, arena *a, int64_t agent_id, const char *lease_id, int64_t **dropped,
                      int *ndropped)
{
    const char *lp[] = {lease_id};
    int64_t watchable = 0, others = 0;
    PGresult *r = NULL;
    if (!db_begin(d) ||
        !inbox_store_counts(d, a, agent_id, INBOX_WANT_WINDOW_S, &watchable, &others) ||
        !(r = db_exec(d, a, &Q_HELD_STATE, 1, lp)))
        return false;
    int n = PQntuples(r), kept = 0;
    int64_t share = others > 0 ? (watchable + others) / (others + 1) : 0;
    *dropped = arena_alloc(a, (size_t)(n + 1) * sizeof **dropped);
    *ndropped = 0;
    for (int i = 0; i < n; i++) {
        bool keep = col_bool(r, i, 1);
        if (keep && (share == 0 || kept < share)) {
            kept++;
            continue;
        }
        (*dropped)[(*ndropped)++] = db_i64(r, i, 0);
    }
    const char *fp[] = {lease_id, ids_literal(a, *dropped, *ndropped)};
    if (*ndropped > 0 && !db_exec(d, a, &Q_FREE, 2, fp))
        return false;
    return db_commit(d);
}

bool inbox_store_release(db *d, arena *a, const char *lease_id, int64_t *released)
{
    const char *p[] = {lease_id};
    PGresult *r = NULL;
    if (!db_begin(d) || !(r = db_exec(d, a, &Q_HELD_COUNT, 1, p)) || !db_exec(d, a, &Q_END, 1, p) ||
        !db_commit(d))
        return false;
    *released = db_i64(r, 0, 0);
    return true;
}

/* ---- reports ---------------------------------------------------------------------------- */

bool inbox_store_lease_inboxes(db *d, arena *a, const char *lease_id, const char *ids,
                               PGresult **out)
{
    const char *p[] = {lease_id, ids};
    return (*out = db_exec(d, a, &Q_LEASE_INBOXES, 2, p)) != NULL;
}

bool inbox_store_sends(db *d, arena *a, const char *ids, PGresult **out)
{
    const char *p[] = {ids};
    return (*out = db_exec(d, a, &Q_SENDS, 1, p)) != NULL;
}

bool inbox_store_sight(db *d, arena *a, const inbox_found_batch *b, int64_t **fresh, bool **known,
                       int *nfresh)
{
    const char *p[] = {b->ord, b->mailbox_id, b->folder, b->uidvalidity, b->uid, b->send_id};
    PGresult *r = db_exec(d, a, &Q_SIGHT, 6, p);
    if (!r)
        return false;
    *nfresh = PQntuples(r);
    *fresh = arena_alloc(a, (size_t)(*nfresh + 1) * sizeof **fresh);
    *known = arena_alloc(a, (size_t)(*nfresh + 1) * sizeof **known);
    for (int i = 0; i < *nfresh; i++) {
        (*fresh)[i] = db_i64(r, i, 0);
        (*known)[i] = col_bool(r, i, 1);
    }
    return true;
}

bool inbox_store_messages(db *d, arena *a, const inbox_message_batch *b, int64_t **created,
                          int *ncreated)
{
    const char *p[] = {b->mailbox_id,  b->send_id,      b->folder,   b->role,
                       b->uidvalidity, b->uid,          b->flags,    b->sender_id,
                       b->placement,   b->first_folder, b->provider, b->spf,
                       b->dkim,        b->dmarc,        shard(a),    b->known};
    PGresult *r = db_exec(d, a, &Q_MESSAGES, 16, p);
    if (!r)
        return false;
    *ncreated = PQntuples(r);
    *created = arena_alloc(a, (size_t)(*ncreated + 1) * sizeof **created);
    for (int i = 0; i < *ncreated; i++)
        (*created)[i] = db_i64(r, i, 0);
    return true;
}

bool inbox_store_add_actions(db *d, arena *a, const inbox_action_batch *b)
{
    const char *p[] = {b->mailbox_id, b->send_id, b->kind,   b->folder,       b->uidvalidity,
                       b->uid,        b->flags,   b->target, b->not_before_s, shard(a)};
    return db_exec(d, a, &Q_ADD_ACTIONS, 10, p) != NULL;
}

bool inbox_store_outcomes(db *d, arena *a, const inbox_outcome_batch *b, int n, char *result)
{
    const char *p[] = {b->ord,         b->mailbox_id, b->action_id, b->status, b->folder,
                       b->uidvalidity, b->uid,        b->flags,     b->detail, shard(a)};
    PGresult *r = db_exec(d, a, &Q_OUTCOMES, 10, p);
    if (!r || PQntuples(r) != n)
        return false;
    for (int i = 0; i < n; i++)
        result[i] = (char)(col_bool(r, i, 1) ? 'a' : col_bool(r, i, 2) ? 'd' : 'i');
    return true;
}

bool inbox_store_folders(db *d, arena *a, const inbox_folder_batch *b, int n, int *changed,
                         int *refused)
{
    (void)n;
    const char *p[] = {b->mailbox_id, b->name, b->role, b->uidvalidity, b->last_uid};
    PGresult *r = db_exec(d, a, &Q_FOLDER_STATE, 5, p);
    if (!r || PQntuples(r) != 1)
        return false;
    *changed = (int)db_i64(r, 0, 0);
    *refused = 0;
    if (db_i64(r, 0, 1) == 0)
        return true;
    if (!(r = db_exec(d, a, &Q_FOLDER_NEW, 5, p)) || PQntuples(r) != 1)
        return false;
    *changed += (int)db_i64(r, 0, 0);
    *refused = (int)db_i64(r, 0, 1);
    return true;
}

bool inbox_store_sessions(db *d, arena *a, const char *mailbox_ids, const char *status,
                          const char *detail, int *changed)
{
    const char *p[] = {mailbox_ids, status, detail};
    PGresult *r = db_exec(d, a, &Q_SESSIONS, 3, p);
    if (!r)
        return false;
    *changed = PQntuples(r);
    return true;
}

bool inbox_store_sweep_load(db *d, arena *a, int64_t deadline_s, int64_t limit, bool *locked,
                            PGresult **out)
{
    const char *p[] = {db_i64_text(a, deadline_s), db_i64_text(a, limit)};
    *locked = false;
    if (!(*out = db_exec(d, a, &Q_SWEEP_LOAD, 2, p)))
        return false;
    *locked = PQntuples(*out) > 0;
    return true;
}

static const db_stmt Q_FAILING_NOTIFY = {"inbox_failing_notify",
                                         "SELECT kiln_inbox_failing_notify($1::int, $2::int)"};

bool inbox_store_failing_notify(db *d, arena *a, int64_t after_s, int64_t limit, int64_t *sent)
{
    *sent = 0;
    if (!db_begin(d))
        return false;
    const char *p[] = {db_i64_text(a, after_s), db_i64_text(a, limit)};
    PGresult *r = db_exec(d, a, &Q_FAILING_NOTIFY, 2, p);
    if (!r || PQntuples(r) != 1 || !db_commit(d)) {
        db_rollback(d);
        return false;
    }
    *sent = db_i64(r, 0, 0);
    return true;
}

bool inbox_store_sweep_write(db *d, arena *a, const inbox_missing_batch *b, int64_t last_id)
{
    const char *p[] = {
        b->send_id, b->sender_id, b->recipient_id, b->provider, db_i64_text(a, last_id), shard(a)};
    return db_exec(d, a, &Q_SWEEP_WRITE, 6, p) != NULL;
}
