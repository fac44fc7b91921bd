-- Inbox event ingestion, one index entry fewer per planned message (issue 13,
-- docs/benchmarks.md "Inbox event ingestion"). inbox_actions had two btree indexes: the
-- key on id and the pending actions by message (inbox_actions_due_idx, partial). Every
-- action row put an entry in both at its insert (a report's planned messages), and its
-- outcome (pending -> done: status is the partial index's predicate, so never a HOT
-- update) put its new version in the key again. What reads an action by id:
--   - an outcome (Q_OUTCOMES, api/lease/inbox_store.c) names its inbox and a pending
--     action: the pending actions of that inbox, read through inbox_actions_due_idx
--     (a few per inbox);
--   - whether a not-applied outcome names a known action (a duplicate) or not: a rare
--     read (a retried report), served by a BRIN range index on id (ids grow with the
--     table; a range summary per 4 pages, updated only when a range's bounds change);
--   - operators and tests (small tables, or the BRIN index).
-- Ids stay unique: they come only from the column's sequence (bigserial, never given
-- by a writer), which is what the key checked; they stay what the wire carried.
ALTER TABLE inbox_actions DROP CONSTRAINT inbox_actions_pkey;
CREATE INDEX inbox_actions_id_brin ON inbox_actions USING brin (id)
    WITH (pages_per_range = 4, autosummarize = on);

-- The singleton service row, counted. Never analyzed (one row, rarely 50 changes), the
-- planner took service for 10 pages, ~1,430 rows: kiln_due_for (022, 028) cross-joins it,
-- so the report's reply wake (kiln_refresh_due over ~150 mailboxes, api/lease/
-- lease_reply.c) was costed at 215,930 rows, above jit_above_cost: every call compiled
-- ~54 functions (JIT) and hashed all 100,000 mailbox_leasing rows. 0.6-1.0 s per call at
-- load 10 in the ingest bench (2,942 us/event of database time, 40 calls); 80-110 ms
-- once counted (index probes, no JIT). Autovacuum would count it after 50 changes.
ANALYZE service;
