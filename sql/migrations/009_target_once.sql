-- A mailbox's target on a day, from its row and its plan's row: the one place that
-- spells out kiln_target()'s seven arguments. mailbox_today, kiln_due_for(), the lease
-- details join (api/lease/lease_store.c) and the per-day history (api/routes/h_warmup.c)
-- all call this. A SQL function of one expression: PostgreSQL inlines it and turns the
-- whole-row arguments' fields back into plain columns, so it costs nothing per row.
CREATE FUNCTION kiln_mailbox_target(m mailboxes, p plans, day date) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT kiln_target(p.ramp_start, p.ramp_step, p.daily_max, p.weekdays_only, m.daily_target,
                       m.warmup_start, day)
$$;

-- 005's view, its target through kiln_mailbox_target (same columns, same meaning).
CREATE OR REPLACE VIEW mailbox_today AS
SELECT m.id, m.user_id, m.address, m.state, m.timezone, m.window_start_hour,
       m.window_end_hour, m.last_error, m.last_error_at, m.last_send_at, u.state AS user_state,
       u.plan_id, t.local_ts, t.local_ts::date AS local_day,
       kiln_mailbox_target(m, p, t.local_ts::date) AS target,
       coalesce(d.sent, 0) AS sent, coalesce(d.failed, 0) AS failed,
       coalesce(d.in_flight, 0) AS in_flight,
       greatest(0.0, least(1.0,
           (extract(epoch FROM t.local_ts::time) / 3600.0 - m.window_start_hour)
           / (m.window_end_hour - m.window_start_hour))) AS window_elapsed
FROM (SELECT kiln_now() AS now OFFSET 0) c  -- OFFSET 0: keep it a subquery, evaluated once
CROSS JOIN mailboxes m
JOIN users u ON u.id = m.user_id
JOIN plans p ON p.id = u.plan_id
CROSS JOIN LATERAL (SELECT c.now AT TIME ZONE m.timezone AS local_ts) t
LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.local_ts::date
WHERE m.deleted_at IS NULL;

-- 003's kiln_due_for, its target through kiln_mailbox_target.
CREATE OR REPLACE FUNCTION kiln_due_for(p_ids bigint[])
RETURNS TABLE (mailbox_id bigint, due_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT m.id,
           kiln_due_at(k.now, m.timezone, m.window_start_hour, m.window_end_hour,
                       kiln_mailbox_target(m, p, t.day),
                       coalesce(d.sent, 0) + coalesce(d.in_flight, 0), ml.next_at,
                       NOT coalesce(s.last_trigger_at > coalesce(ml.leased_at, '-infinity'), false),
                       m.deleted_at IS NULL AND m.state = 'active' AND u.state = 'active')
    FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
    JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s
    CROSS JOIN (SELECT kiln_now() AS now) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY (p_ids)
$$;
