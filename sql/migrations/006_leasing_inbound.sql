-- Leasing throughput: grants and reports no longer write the same rows, and the hot
-- leasing tables get vacuumed at the rate they churn. Measured in
-- docs/benchmarks-leasing.md.
--
-- Inbound accounting (slots granted to a recipient per its local day) moves out of
-- mailbox_days: a grant upserted the recipients' mailbox_days rows while reports
-- update the senders' rows of the same table, so a grant (holding the cap lock) could
-- wait on a report's row lock and every other leaser queued behind it. Only grants
-- write mailbox_inbound, and only under the cap lock, so a read under that lock is
-- exact. mailbox_days.received is no longer written (kept: 001 owns the table).
CREATE TABLE mailbox_inbound (
    mailbox_id bigint NOT NULL REFERENCES mailboxes (id),
    day        date NOT NULL,      -- the recipient's local day
    received   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, day)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);

INSERT INTO mailbox_inbound (mailbox_id, day, received)
SELECT mailbox_id, day, received FROM mailbox_days WHERE received > 0;

-- Every send row is inserted once and updated once (its report), on columns no index
-- covers: with room on the page that update is HOT and writes no index entry. New
-- pages only; existing rows keep their layout.
ALTER TABLE sends SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02,
                       autovacuum_vacuum_insert_scale_factor = 0.05);
-- Small tables updated on every grant/report: vacuum after a few percent changed, not
-- the default 20 %, so their dead versions do not pile up between runs.
ALTER TABLE mailbox_leasing SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE mailbox_days SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE slot_buckets SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE counters SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);
