-- The lease path reads kiln_now() once per statement (issue 15, leasing throughput).
-- kiln_now() is a SQL function over kiln_clock that PostgreSQL cannot inline, and a
-- `CROSS JOIN (SELECT kiln_now() AS now) k` subquery is flattened into its query, so
-- the call ran once per row and per reference (about 5 us each: more than the rest of
-- a candidate or a picked mailbox's row). OFFSET 0 keeps the subquery a subquery,
-- evaluated once, as mailbox_today (009) already does. Same result, same columns.
-- Measured in docs/benchmarks.md ("Leasing", the before/after of each change).

-- 009's kiln_due_for (due_at of a report's freed mailboxes, of kiln_refresh_due),
-- its now read once.
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
    CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY (p_ids)
$$;
