-- Warmup pools (issue 15, "Past one primary"; docs/scale.md "Past one primary: pools").
-- Pairing happens inside a pool: a sender's recipients are mailboxes of its own pool, so
-- pools share no rows and can live on different PostgreSQL primaries ("cells"). A tenant
-- (user) belongs to one pool; its mailboxes carry the same pool, so the candidate query
-- filters on it without a join to users.
--
-- Where the key lives, and why not everywhere: users and mailboxes carry pool_id. Every
-- other per-tenant row is keyed by a mailbox or a user (mailbox_leasing, mailbox_days,
-- mailbox_inbound, sends, placements, placement_days, slot_buckets' user rows, ...) and
-- reaches its pool through that key; a column there would add bytes to every send and
-- every counter update and buy nothing: routing is by cell (every row in a cell's
-- database belongs to one of its pools), and moving a pool copies its rows by mailbox or
-- user id. Leases belong to an agent and agents to a cell: one lease may serve several
-- pools of its cell (each slot's recipient comes from its sender's pool). slot_buckets'
-- user 0 rows are the cell's global caps (KILN_GLOBAL_*_CAP is per cell).
-- tests/deploy/pools_schema.py checks, from the catalog, that every table is one of these.
--
-- Online-safe on a big table: ADD COLUMN with a constant default writes no row (PG 11+
-- stores the default in the catalog), and the pool FK on mailboxes is added NOT VALID:
-- it holds for every row written from now on, and the rows before this migration hold it
-- by construction (pool 1 on both sides); `VALIDATE CONSTRAINT mailboxes_user_pool_fkey`
-- can run later without blocking writes. Nothing here scans mailboxes.

ALTER TABLE users ADD COLUMN pool_id integer NOT NULL DEFAULT 1;
ALTER TABLE users ADD CONSTRAINT users_pool_id_check CHECK (pool_id BETWEEN 1 AND 999999999);
-- The target of mailboxes' (user_id, pool_id) key; users is small (10,000 at 1 M mailboxes).
ALTER TABLE users ADD CONSTRAINT users_id_pool_key UNIQUE (id, pool_id);
COMMENT ON COLUMN users.pool_id IS
    'the warmup pool: pairing stays inside it; its cell serves the tenant (docs/scale.md)';

ALTER TABLE mailboxes ADD COLUMN pool_id integer NOT NULL DEFAULT 1;
COMMENT ON COLUMN mailboxes.pool_id IS
    'the owner''s pool (set from users on insert, follows it on update): pairing''s filter';

-- The pair (user, pool) replaces the user key: a mailbox cannot sit in another pool than
-- its owner, and moving a user (an offline operation) carries its mailboxes along.
ALTER TABLE mailboxes DROP CONSTRAINT mailboxes_user_id_fkey;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_user_pool_fkey FOREIGN KEY (user_id, pool_id)
    REFERENCES users (id, pool_id) ON UPDATE CASCADE NOT VALID;

-- Writers (the API, the seeder's COPY, tests' SQL) name only the user: the pool comes from
-- it. Left as given when the user does not exist, so the FK reports the missing user.
CREATE FUNCTION kiln_mailbox_pool() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.pool_id := coalesce((SELECT pool_id FROM users WHERE id = NEW.user_id), NEW.pool_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER mailboxes_pool BEFORE INSERT ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION kiln_mailbox_pool();
