-- Ending a lease without a scan of mailbox_leasing (issue 15). kiln_end_leases (022)
-- frees the mailboxes still held by the ended leases with
--   UPDATE mailbox_leasing SET lease_id = NULL, pending = 0 WHERE lease_id = ANY (ids)
-- and kiln_lease_slots' fallback (leases without a send id range) joins on the same
-- column; with no index on lease_id both read the whole table: one row per mailbox, for
-- every release an agent makes after each lease it has reported (kiln-agent releases
-- every lease: agent/lease/leasing.c) and every expired lease the sweep ends. At 100,000
-- mailboxes that was a 1,287-page sequential scan per release (EXPLAIN in
-- docs/benchmarks.md, "Leasing"), growing with the mailboxes.
--
-- Only the rows a lease holds are indexed (a partial index: lease_id IS NOT NULL), so it
-- stays as small as the mailboxes leased at once. Its cost is one index entry per
-- mailbox a grant takes: the grant's UPDATE of lease_id is not HOT anyway (lease_id is
-- in mailbox_leasing_due_idx's predicate), and the report's UPDATE that frees a mailbox
-- (lease_id NULL) adds none. Built in this migration's transaction: it reads the table
-- once (about a second at 1,000,000 mailboxes) and blocks the leasing writes meanwhile.
CREATE INDEX mailbox_leasing_lease_idx ON mailbox_leasing (lease_id)
    WHERE lease_id IS NOT NULL;
