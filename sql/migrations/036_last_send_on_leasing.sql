-- A mailbox's last send moves to its leasing row (issue 15). Every report wrote the
-- mailboxes row once per sent slot only for last_send_at: a wide row (addresses, sealed
-- secrets, schedule) on a table without fillfactor, so mostly a non-HOT update with an
-- entry in each of its indexes, and two row triggers' WHEN clauses evaluated. The report
-- updates the mailbox's mailbox_leasing row anyway (pending, lease_id; fillfactor 50,
-- narrow): last_send_at is set there, in that same row version. One row version and its
-- index entries per send less; the mailboxes row is written by a report only for an
-- authentication failure.
--
-- Online-safe without a backfill: the new column starts empty (adding a nullable column
-- rewrites nothing), and readers take coalesce(mailbox_leasing.last_send_at,
-- mailboxes.last_send_at): the leasing row's value is newer whenever it is set (every
-- send from this migration on), the mailboxes column keeps the last send before it and is
-- no longer written by kiln (sql/legacy/import.sql writes the leasing row too).
ALTER TABLE mailbox_leasing ADD COLUMN last_send_at timestamptz;
COMMENT ON COLUMN mailbox_leasing.last_send_at IS
    'the mailbox''s last send (036); NULL: none since 036, mailboxes.last_send_at has it';
COMMENT ON COLUMN mailboxes.last_send_at IS
    'the last send before 036; read only where mailbox_leasing.last_send_at is NULL';

-- 035's view with the last send read as above (the scalar subquery is evaluated only
-- where a query selects last_send_at: the stats snapshot does not).
CREATE OR REPLACE VIEW mailbox_today AS
SELECT m.id, m.user_id, m.address, m.state, m.timezone, m.window_start_hour,
       m.window_end_hour, m.last_error, m.last_error_at,
       coalesce((SELECT ml.last_send_at FROM mailbox_leasing ml WHERE ml.mailbox_id = m.id),
                m.last_send_at) AS last_send_at,
       u.state AS user_state,
       u.plan_id, t.local_ts, t.local_ts::date AS local_day,
       kiln_mailbox_target(m, p, t.local_ts::date) AS target,
       coalesce(d.sent, 0) AS sent, coalesce(d.failed, 0) AS failed,
       coalesce(d.in_flight, 0) AS in_flight,
       kiln_window_elapsed(t.local_ts, m.window_start_hour, m.window_end_hour,
                           t.active_local) AS window_elapsed
FROM (SELECT kiln_now() AS now OFFSET 0) c  -- OFFSET 0: keep it a subquery, evaluated once
CROSS JOIN mailboxes m
JOIN users u ON u.id = m.user_id
JOIN plans p ON p.id = u.plan_id
CROSS JOIN LATERAL (SELECT c.now AT TIME ZONE m.timezone AS local_ts,
                           m.active_since AT TIME ZONE m.timezone AS active_local
                    OFFSET 0) t
LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.local_ts::date
WHERE m.deleted_at IS NULL;
