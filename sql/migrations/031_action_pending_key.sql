-- Inbox event ingestion, one index entry fewer per planned message (issue 13,
-- docs/benchmarks.md "Inbox event ingestion", session 23).

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
