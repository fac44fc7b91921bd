-- Cap accounting without the cap lock (issue 15). Grants used to serialise on one
-- advisory lock from the bucket read to commit; now each grant plans from an unlocked
-- read and then reserves exactly the counter rows it fills, in one statement at the end
-- of its transaction: per recipient and day (mailbox_inbound), per user and minute/hour
-- bucket, then per global minute/hour bucket (slot_buckets), always in that key order
-- so two grants never deadlock on them. Each row moves only under a condition:
--   INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n
--   WHERE slot_buckets.n + excluded.n <= excluded.cap
-- A competitor holding the row makes the grant wait for its commit and re-check against
-- the committed count, so a cap is exact; a grant that cannot reserve everything rolls
-- back to its savepoint and plans again from fresh counts (lease_grant.c). Two grants
-- for disjoint users and recipients wait on each other only for the global buckets they
-- share, and only from that statement to commit. Rules: docs/leasing.md "Caps".
--
-- cap carries, into the ON CONFLICT clause, the cap the grant checked the row against
-- (the plan's cap for a user row, KILN_GLOBAL_*_CAP for user 0): the last grant's value,
-- for reading only. Adding a nullable column rewrites nothing.
ALTER TABLE slot_buckets ADD COLUMN cap integer;
COMMENT ON COLUMN slot_buckets.cap IS
    'the cap the last grant reserved this bucket under (ON CONFLICT needs it in excluded)';
