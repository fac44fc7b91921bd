-- sends history, part 1 of 2 (021 swaps the table): the send id encodes its UTC
-- creation day, so `sends` can be range-partitioned by day on id and every lookup by id
-- (reports, actions, Message-ID verification, replies) prunes to one partition with no
-- change on the wire. docs/design.md "Sends: hot days and history".
--
--   id = epoch_day << 36 | (sends_id_seq mod 2^36)
--
-- 36 bits for the sequence part: 68.7 G sends per day before two ids could meet, and the
-- global sequence wraps (breaking id order inside one day, once) only after 68.7 G
-- sends in all (3.7 years at 50 M/day; 32 bits would wrap every 86 days). The ids stay
-- below 2^53 until the year 2328, so they are exact even in a JSON reader that parses
-- numbers as doubles. The day is the real UTC day of the inserting transaction (now(),
-- not kiln_now()): storage follows the wall clock, policy follows kiln_now(); the two
-- are the same in production, and a test clock moved by months never needs a partition.
--
-- Ids of the old schema are sequence values, all below 2^36 (day 0): they stay as they
-- are in one legacy partition, [MINVALUE, 2^36), attached by 021 without copying a row.
-- This migration only adds the functions and, on the old table, the constraint that
-- proves that range (NOT VALID: instant; 021 validates it without blocking writes).

CREATE FUNCTION kiln_sends_day_id(p_day date) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (p_day - date '1970-01-01')::bigint << 36
$$;

-- The next send id (the grant's ids and the column default).
CREATE FUNCTION kiln_send_id() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT kiln_sends_day_id((now() AT TIME ZONE 'UTC')::date)
           | (nextval('sends_id_seq') & 68719476735)
$$;

-- The UTC day a send id was created on.
CREATE FUNCTION kiln_send_id_day(p_id bigint) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date '1970-01-01' + (p_id >> 36)::integer
$$;

-- The lowest id of the UTC day p_days before today: a lower bound that lets a query by
-- mailbox, recipient or time prune the days it cannot need (stable: pruned when the
-- executor starts). A slot is created at most one lease TTL (<= 1 day) before its
-- scheduled time, so "scheduled_at > now - N days" implies "id >= kiln_sends_since(N + 1)".
CREATE FUNCTION kiln_sends_since(p_days integer) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT kiln_sends_day_id((now() AT TIME ZONE 'UTC')::date - p_days)
$$;

ALTER TABLE sends ADD CONSTRAINT sends_legacy_ids CHECK (id < 68719476736) NOT VALID;
