-- The lease path's costs (issue 15, leasing throughput; measured in docs/benchmarks.md,
-- "Leasing", the before/after of each change):
--
-- 1. kiln_now() once per statement. kiln_now() is a SQL function over kiln_clock that
--    PostgreSQL cannot inline, and a `CROSS JOIN (SELECT kiln_now() AS now) k` subquery
--    is flattened into its query, so the call ran once per row and per reference (about
--    5 us each: more than the rest of a candidate's or a picked mailbox's row). OFFSET 0
--    keeps the subquery a subquery, evaluated once, as mailbox_today (009) already does.
--    Same result, same columns. (The lease statements in api/lease do the same.)
-- 2. No index on sends.lease_id: below.

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

-- A lease's slots without sends_lease_idx. Every grant inserted one entry per send into
-- an index on lease_id (one random leaf of a large index per lease, its 2,000 equal keys
-- deduplicated over and over), while only ending a lease (sweep, release) and a
-- heartbeat's cancel list read it. A lease's send ids are made together by one
-- statement (agent_new_lease): the lease row now keeps their range, and those readers
-- scan the ids' range (one short primary-key range per day partition it spans) with
-- lease_id as a filter. Inbox leases have no sends: their range stays NULL.
ALTER TABLE leases ADD COLUMN send_id_min bigint, ADD COLUMN send_id_max bigint;
COMMENT ON COLUMN leases.send_id_min IS
    'the lowest send id the grant made (with send_id_max: the range its slots are in)';

-- Live leases made before this migration get their range from the index, before it goes.
UPDATE leases l SET send_id_min = x.lo, send_id_max = x.hi
FROM (SELECT s.lease_id, min(s.id) AS lo, max(s.id) AS hi FROM sends s
      WHERE s.lease_id IN (SELECT id FROM leases WHERE ended_at IS NULL) GROUP BY 1) x
WHERE l.id = x.lease_id;

-- The slots of these leases still leased. A send lease with no range (made by a kiln-api
-- of before this migration while it was deployed) is found through its mailboxes'
-- leasing rows (a scan of mailbox_leasing: only then).
CREATE FUNCTION kiln_lease_slots(p_ids uuid[]) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ids bigint[];
BEGIN
    ids := ARRAY(SELECT s.id FROM leases l
                 JOIN sends s ON s.id BETWEEN l.send_id_min AND l.send_id_max
                             AND s.lease_id = l.id
                 WHERE l.id = ANY (p_ids) AND s.status = 'leased' ORDER BY s.id);
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

-- 003's kiln_end_leases, the slots through kiln_lease_slots.
CREATE OR REPLACE FUNCTION kiln_end_leases(p_ids uuid[], p_final send_status) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    freed bigint[];
BEGIN
    UPDATE leases SET ended_at = kiln_now() WHERE id = ANY (p_ids) AND ended_at IS NULL;
    n := kiln_finish_slots(kiln_lease_slots(p_ids), p_final);
    -- A mailbox whose slots were all reported already is free; this catches the rest.
    WITH f AS (UPDATE mailbox_leasing SET lease_id = NULL, pending = 0
               WHERE lease_id = ANY (p_ids) RETURNING mailbox_id)
    SELECT array_agg(mailbox_id) INTO freed FROM f;
    IF freed IS NOT NULL THEN
        PERFORM kiln_refresh_due(freed);
    END IF;
    RETURN n;
END
$$;

-- On the partitioned sends: drops every partition's copy with it.
DROP INDEX sends_lease_idx;
