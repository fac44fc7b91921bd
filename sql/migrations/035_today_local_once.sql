-- mailbox_today with each mailbox's local times computed once per row. Once inlined (033),
-- kiln_window_elapsed's expression repeats its two timestamp arguments (now and the
-- mailbox's active_since, each in the mailbox's zone) about twelve times, and the
-- target's repeats the local day; 014's view passed them as expressions, so every
-- repetition was another AT TIME ZONE with a named zone, per mailbox. The lateral
-- subquery now yields both as columns (OFFSET 0 keeps it from being flattened back
-- into expressions), and the functions' inlined bodies read those columns.
-- The stats snapshot (Q_STATS, every live mailbox each KILN_STATS_INTERVAL_S) at
-- 100,000 mailboxes in five zones: 478-513 ms -> 261-278 ms (docs/benchmarks.md, session
-- 26); the quota list and a mailbox's row read as before (2.5-3.4 ms for 100 rows, under
-- 1 ms for one). The same columns, rows and values (leasing_stats_snapshot compares
-- window_elapsed and target with the functions applied to mailboxes directly).
CREATE OR REPLACE VIEW mailbox_today AS
SELECT m.id, m.user_id, m.address, m.state, m.timezone, m.window_start_hour,
       m.window_end_hour, m.last_error, m.last_error_at, m.last_send_at, u.state AS user_state,
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
