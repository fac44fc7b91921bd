-- The lease path's functions, same signatures and results, cheaper plans (issue 15,
-- fourth pass; docs/benchmarks.md "Leasing", docs/leasing.md): the due-time functions
-- without the SQL-function executor, and a lease's slots read by its id range in any
-- cached plan (the last part of this file).
--
-- kiln_due_at (003) is a SQL function with a FROM, so PostgreSQL never inlines it: every
-- call, from kiln_due_at_reply (029, PL/pgSQL: one or two calls per mailbox) in a lease's
-- agent_details (~100 mailboxes) and a report's kiln_refresh_due (~70), ran the
-- SQL-function executor (executor start, run, end per call). kiln_reply_due (028) is one
-- too, called once per row by the same two. In the leasing bench (8 leasers, 10,000
-- mailboxes) fmgr_sql was 12 % of PostgreSQL's sampled CPU; about half of it was
-- sends.created_at's default (kiln_now(), also SQL with a FROM: the grant now sets it
-- once per statement, lease_store.c), the rest these calls.
--
-- Now kiln_due_at is PL/pgSQL whose statements are simple expressions (evaluated without
-- an executor), and kiln_due_for reads the earliest pending reply as a correlated
-- subquery of its own plan (pending_replies_due_idx, as kiln_reply_due did), not through
-- a function call per row. kiln_reply_due stays (kiln-api builds before this one call it
-- from agent_details).
--
-- CREATE OR REPLACE keeps the functions' oids and every caller (kiln_due_at_reply,
-- kiln_refresh_due, kiln-api builds of before this migration): online-safe, no table is
-- touched. tests/leasing/test_lease_path.py compares kiln_due_at with 003's SQL body over
-- a grid of inputs.
CREATE OR REPLACE FUNCTION kiln_due_at(p_now timestamptz, p_tz text, p_ws integer, p_we integer,
                                       p_target integer, p_done integer,
                                       p_next_at timestamptz, p_paced boolean,
                                       p_active boolean) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    v_now timestamp;
    v_day date;
    v_open timestamp;
    v_close timestamp;
    v_at timestamp;
BEGIN
    IF NOT p_active THEN
        RETURN 'infinity'::timestamptz;
    END IF;
    v_now := p_now AT TIME ZONE p_tz;
    v_day := v_now::date;
    v_open := v_day + make_interval(hours => p_ws);
    v_close := v_day + make_interval(hours => p_we);
    v_at := greatest(v_open, coalesce(p_next_at AT TIME ZONE p_tz, v_open),
                     CASE WHEN p_paced AND p_target > 0
                          THEN v_open + (v_close - v_open) * (p_done::float8 / p_target)
                          ELSE v_open END);
    IF p_done < p_target AND v_at < v_close AND v_now < v_close THEN
        RETURN v_at AT TIME ZONE p_tz;
    END IF;
    RETURN (v_day + 1 + make_interval(hours => p_ws)) AT TIME ZONE p_tz;
END
$$;

-- 028's kiln_due_for, the reply's due time as a subquery (kiln_reply_due's body).
CREATE OR REPLACE FUNCTION kiln_due_for(p_ids bigint[])
RETURNS TABLE (mailbox_id bigint, due_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT m.id,
           kiln_due_at_reply(k.now, m.timezone, m.window_start_hour, m.window_end_hour,
                             kiln_mailbox_target(m, p, t.day),
                             coalesce(d.sent, 0) + coalesce(d.in_flight, 0), ml.next_at,
                             NOT coalesce(s.last_trigger_at > coalesce(ml.leased_at, '-infinity'),
                                          false),
                             m.deleted_at IS NULL AND m.state = 'active' AND u.state = 'active',
                             (SELECT min(pr.due_at) FROM pending_replies pr
                              WHERE pr.mailbox_id = m.id AND pr.send_id IS NULL
                                AND pr.due_at > k.now - interval '3 days'))
    FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
    JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s
    CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY (p_ids)
$$;

-- A lease's slots (022's kiln_lease_slots) whatever plan PostgreSQL caches. 022 joined
-- leases to sends on the lease's id range in one statement; PL/pgSQL plans a statement
-- for its parameters for the first five calls of a session and then, when it looks no
-- dearer, once for any: that generic plan did not know how many leases p_ids held, so it
-- hash-joined them to a sequential scan of every day partition the range could touch.
-- kiln-api's connections live for hours: from a connection's sixth release on, every
-- release (and every heartbeat's cancel list, every expiry) read all of today's sends
-- (the leasing bench's second 15 s level at 8 leasers: 111-140 us of statement time per
-- send, the largest of all; 8-10 in the first level). Each lease's range is now read by
-- a lateral subquery, a nested loop whose inner side is the primary-key range of that
-- lease, in any plan (tests/leasing/test_lease_path.py checks it under
-- plan_cache_mode = force_generic_plan).
CREATE OR REPLACE FUNCTION kiln_lease_slots(p_ids uuid[]) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ids bigint[];
BEGIN
    ids := ARRAY(SELECT s.id FROM leases l
                 CROSS JOIN LATERAL (SELECT s.id FROM sends s
                                     WHERE s.id BETWEEN l.send_id_min AND l.send_id_max
                                       AND s.lease_id = l.id AND s.status = 'leased'
                                     OFFSET 0) s
                 WHERE l.id = ANY (p_ids) ORDER BY s.id);
    IF EXISTS (SELECT 1 FROM leases WHERE id = ANY (p_ids) AND send_id_min IS NULL
               AND kind = 'send') THEN
        ids := ids || ARRAY(SELECT s.id FROM leases l
                            JOIN mailbox_leasing ml ON ml.lease_id = l.id
                            JOIN sends s ON s.mailbox_id = ml.mailbox_id AND s.lease_id = l.id
                            WHERE l.id = ANY (p_ids) AND l.send_id_min IS NULL
                              AND s.status = 'leased' AND s.id >= kiln_sends_since(2)
                            ORDER BY s.id);
    END IF;
    RETURN ids;
END
$$;
