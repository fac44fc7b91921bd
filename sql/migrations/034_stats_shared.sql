-- The quota/health snapshot (api/db/stats.c) is one aggregate over every live mailbox:
-- ~0.56 s of a backend's CPU at 100,000 mailboxes (after 033), ~10x that at 1,000,000.
-- Each kiln-api computed its own every KILN_STATS_INTERVAL_S, so N processes behind one
-- nginx (issue 15, "Many control planes") cost N aggregates a period. Now one row holds
-- the last snapshot; a refresher uses it while it is younger than its period, and
-- otherwise the first process to take the advisory lock computes and publishes it.
-- v: the snapshot's counters in the order of stats.c's snapshot_field (append only).
CREATE TABLE stats_snapshot (
    id smallint PRIMARY KEY CHECK (id = 1),
    computed_at timestamptz NOT NULL,
    took_ms bigint NOT NULL,
    running boolean NOT NULL,
    v bigint[] NOT NULL
);
COMMENT ON TABLE stats_snapshot IS
    'the last quota/health snapshot, shared by every kiln-api (api/db/stats.c)';
