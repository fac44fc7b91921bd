-- Inbox event ingestion, one index entry fewer per planned message and the zone spans
-- at a quarter of the cost (issue 13, docs/benchmarks.md "Inbox event ingestion",
-- session 23).

-- inbox_actions had two btree indexes: the key on id and the pending actions by message
-- (inbox_actions_due_idx, partial). Every planned message's action row put an entry into
-- both. One key serves every read now, (mailbox_id, status, id):
--   - the lease answer's due actions (Q_DUE, api/lease/inbox_store.c): an inbox's
--     pending actions, the range (mailbox_id, 'pending');
--   - an outcome (Q_OUTCOMES) names its inbox and a pending action: one probe
--     (mailbox_id, 'pending', id); a stale action issued again reads it the same way;
--   - whether an outcome that applied nothing named a known action (a duplicate) or not:
--     one probe per status (mailbox_id, status, id), seven in all — microseconds, as
--     with the key on id (030 tried a BRIN index on id instead: ~6 ms per unknown id);
--   - the key is a replica identity, as before.
-- What the old index's (mailbox_id, send_id) order served, the other pending actions of
-- one message (Q_OUTCOMES' chain: re-addressed after a move, cancelled when the plan
-- ended), only ever existed for plans written before 023 (a row per action). Those are
-- folded below into their first pending action's rest, as 023 writes a plan, so every
-- message has at most one pending action and the chain is gone. An action's status is in
-- the key: an outcome moves its row to another key (its update was never HOT: status was
-- the partial index's predicate).

-- Plans before 023: per message, the first pending action (in the lease answer's order:
-- due time, kind, id; the one an agent may hold) keeps its id; the later ones become its
-- rest, in the same order ("at": their due time in epoch seconds, as 023's rest).
WITH p AS (
    SELECT id, mailbox_id, send_id, kind, flags, target, not_before,
           row_number() OVER (PARTITION BY mailbox_id, send_id
                              ORDER BY not_before, kind, id) AS n
    FROM inbox_actions WHERE status = 'pending'),
later AS (
    SELECT mailbox_id, send_id,
           jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'k', kind, 'f', nullif(flags, '{}'), 't', target,
               'at', floor(extract(epoch FROM not_before))::bigint)) ORDER BY n) AS plan
    FROM p WHERE n > 1 GROUP BY mailbox_id, send_id),
folded AS (
    UPDATE inbox_actions a SET rest = coalesce(a.rest, '[]'::jsonb) || later.plan
    FROM p JOIN later ON later.mailbox_id = p.mailbox_id AND later.send_id = p.send_id
    WHERE p.n = 1 AND a.id = p.id)
DELETE FROM inbox_actions a USING p WHERE p.n > 1 AND a.id = p.id;

DROP INDEX inbox_actions_due_idx;
ALTER TABLE inbox_actions DROP CONSTRAINT inbox_actions_pkey,
    ADD CONSTRAINT inbox_actions_pkey PRIMARY KEY (mailbox_id, status, id);

-- The UTC offsets of an IANA zone (012's contract, the same rows): read at every hour
-- from from_ts's hour, and on the 15-minute grid only inside an hour whose two ends
-- differ and after the last whole hour. 012 read all ~385 quarter hours of 96 hours, two
-- zone conversions each, once per zone and report (~1.1 ms a zone; the report's lease
-- check computes it for every zone of its inboxes). The rows are those of the full grid
-- as long as no zone changes its offset and back within one hour (none does; transitions
-- are months apart).
CREATE OR REPLACE FUNCTION kiln_tz_spans(tz text, from_ts timestamptz, hours integer)
RETURNS TABLE (from_s bigint, offset_s integer)
LANGUAGE sql STABLE AS $$
    WITH h AS (
        SELECT t, extract(epoch FROM (t AT TIME ZONE tz) - (t AT TIME ZONE 'UTC'))::integer AS off
        FROM generate_series(date_trunc('hour', from_ts), from_ts + make_interval(hours => hours),
                             interval '1 hour') AS t),
    q AS (
        SELECT g.t, extract(epoch FROM (g.t AT TIME ZONE tz) - (g.t AT TIME ZONE 'UTC'))::integer
               AS off
        FROM (SELECT t, off, lead(off) OVER (ORDER BY t) AS next FROM h) x
        CROSS JOIN LATERAL generate_series(x.t + interval '15 minutes',
                                           least(x.t + interval '45 minutes',
                                                 from_ts + make_interval(hours => hours)),
                                           interval '15 minutes') AS g (t)
        WHERE x.next IS DISTINCT FROM x.off),
    c AS (SELECT t, off, lag(off) OVER (ORDER BY t) AS prev
          FROM (SELECT t, off FROM h UNION ALL SELECT t, off FROM q) a)
    SELECT extract(epoch FROM t)::bigint, off FROM c
    WHERE prev IS NULL OR prev <> off
    ORDER BY t
$$;
