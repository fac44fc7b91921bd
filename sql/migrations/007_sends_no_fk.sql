-- sends without foreign keys. A grant inserts thousands of sends rows in one statement,
-- and each row fired three referential checks (mailbox, recipient, lease): an SPI query
-- plus a FOR KEY SHARE row lock each, ~25 ms of every 2,000-slot grant, all of it
-- under the cap lock (docs/benchmarks-leasing.md: grant 38 -> 13 ms, 8 leasers
-- 18k -> 32k sends/s). The references hold by construction, since the grant is the
-- only writer of sends rows: mailbox_id comes from mailbox_leasing rows the grant holds
-- locked, recipient_id from mailboxes read in the same transaction, lease_id from the
-- lease it inserts; mailboxes and leases are never deleted (mailboxes are soft-deleted
-- with deleted_at). The leasing tests check that no send references a missing row
-- (tests/leasing/leaselib.py, invariants()).
ALTER TABLE sends DROP CONSTRAINT IF EXISTS sends_mailbox_id_fkey,
                  DROP CONSTRAINT IF EXISTS sends_recipient_id_fkey,
                  DROP CONSTRAINT IF EXISTS sends_lease_id_fkey;
