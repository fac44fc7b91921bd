-- sends history, part 2 of 2 (020 has the id encoding): `sends` becomes a table
-- partitioned by RANGE (id), one partition per UTC day (sends_pYYYYMMDD, made ahead and
-- dropped after KILN_SENDS_RETENTION_DAYS by kiln_sends_rotate(), which kiln-api's
-- stats thread runs), and the old table, renamed sends_legacy, becomes the partition of
-- the old ids [MINVALUE, 2^36). No row is copied or rewritten: the swap holds its
-- exclusive lock for catalog changes only. docs/design.md "Sends: hot days and history".

-- Proves the legacy range with a scan that takes SHARE UPDATE EXCLUSIVE only: grants and
-- reports go on while it reads (a large table scans for a while). ATTACH below finds the
-- valid constraint and skips its own scan.
ALTER TABLE sends VALIDATE CONSTRAINT sends_legacy_ids;

-- A view or a trigger on sends would follow the old table, not the new one: stop here
-- and say so rather than leave it reading the legacy partition alone.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
               WHERE d.refobjid = 'sends'::regclass AND d.classid = 'pg_rewrite'::regclass)
       OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'sends'::regclass
                  AND NOT tgisinternal) THEN
        RAISE EXCEPTION '021: a view or trigger depends on sends; recreate it on the '
                        'partitioned table in this migration';
    END IF;
END
$$;

ALTER TABLE sends RENAME TO sends_legacy;
ALTER TABLE sends_legacy RENAME CONSTRAINT sends_pkey TO sends_legacy_pkey;
-- The sequence outlives the legacy partition (retention drops it one day).
ALTER TABLE sends_legacy ALTER COLUMN id DROP DEFAULT;
ALTER SEQUENCE sends_id_seq OWNED BY NONE;

-- Same columns, defaults and CHECK constraints (whatever migrations before this one
-- added), partitioned; the legacy range check is the legacy partition's alone.
CREATE TABLE sends (LIKE sends_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                    INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)
    PARTITION BY RANGE (id);
ALTER TABLE sends DROP CONSTRAINT sends_legacy_ids;
ALTER TABLE sends ALTER COLUMN id SET DEFAULT kiln_send_id();
ALTER TABLE sends ADD CONSTRAINT sends_pkey PRIMARY KEY (id);

-- Every index of the old table under its own name on the parent (sends_lease_idx,
-- sends_mailbox_idx, sends_recipient_idx and any an earlier migration added); the
-- legacy copies are renamed legacy_* and attached to them by ATTACH (same definition:
-- nothing is built).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'sends_legacy'::regclass AND NOT i.indisprimary
             ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.name, left('legacy_' || r.name, 63));
        EXECUTE regexp_replace(r.def, ' ON (\S+\.)?sends_legacy ', ' ON sends ');
    END LOOP;
END
$$;

ALTER TABLE sends ATTACH PARTITION sends_legacy FOR VALUES FROM (MINVALUE) TO (68719476736);

-- One day's partition: created standalone and attached, so only SHARE UPDATE EXCLUSIVE
-- is taken on sends (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and
-- stall grants and reports behind it). Storage as the hot table had (006): every row is
-- inserted once and updated once (its report) on columns no index covers, so with room
-- on the page the update is HOT; vacuumed after 2 % changed, unthrottled while the
-- partition is today's. Returns false when it exists already.
CREATE FUNCTION kiln_sends_partition(p_day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'sends_p' || to_char(p_day, 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE sends INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
                   'WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02, '
                   'autovacuum_vacuum_insert_scale_factor = 0.05, '
                   'autovacuum_vacuum_cost_delay = 0)', part);
    EXECUTE format('ALTER TABLE sends ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', part,
                   kiln_sends_day_id(p_day), kiln_sends_day_id(p_day + 1));
    RETURN true;
END
$$;

-- The retention job (kiln-api's stats thread, every KILN_SENDS_ROTATE_S): makes the
-- partitions of today and the next p_ahead_days, drops the day partitions older than
-- p_retention_days (a day goes once all of it is older) and the legacy partition once
-- its newest row is. Never a DELETE. Several kiln-api processes: the one that gets the
-- advisory lock works, the others return no row. DROP takes ACCESS EXCLUSIVE on sends
-- for a moment; lock_timeout bounds how long grants queue behind it, and a drop that
-- times out is retried at the next run. Counted in counters ('sends_partitions').
CREATE FUNCTION kiln_sends_rotate(p_retention_days integer, p_ahead_days integer)
RETURNS TABLE (created integer, dropped integer, partitions integer, oldest date)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    cutoff date := (now() AT TIME ZONE 'UTC')::date - p_retention_days;
    newest timestamptz;
    r record;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7351903) THEN
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '500ms', true);
    created := 0;
    dropped := 0;
    FOR d IN 0 .. greatest(p_ahead_days, 0) LOOP
        IF kiln_sends_partition(today + d) THEN
            created := created + 1;
        END IF;
    END LOOP;
    FOR r IN SELECT c.relname, to_date(substr(c.relname, 8), 'YYYYMMDD') AS day
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'sends'::regclass AND c.relname ~ '^sends_p[0-9]{8}$'
    LOOP
        IF r.day < cutoff THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    IF to_regclass('sends_legacy') IS NOT NULL THEN
        EXECUTE 'SELECT created_at FROM sends_legacy ORDER BY id DESC LIMIT 1' INTO newest;
        IF newest IS NULL OR newest < cutoff::timestamp AT TIME ZONE 'UTC' THEN
            DROP TABLE sends_legacy;
            dropped := dropped + 1;
        END IF;
    END IF;
    INSERT INTO counters (name, label, shard, value)
    SELECT 'sends_partitions', x.label, 0, x.n
    FROM (VALUES ('created', created), ('dropped', dropped)) x (label, n) WHERE x.n > 0
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value;
    SELECT count(*)::int, min(to_date(substr(c.relname, 8), 'YYYYMMDD'))
    INTO partitions, oldest
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'sends'::regclass AND c.relname ~ '^sends_p[0-9]{8}$';
    RETURN NEXT;
END
$$;

-- Today's partition and three days ahead, so grants never wait for the first rotation.
SELECT kiln_sends_partition((now() AT TIME ZONE 'UTC')::date + d) FROM generate_series(0, 3) d;

-- Hot tables (docs/operations.md "Vacuum"): small, updated on every grant or report, so
-- dead versions pile up between autovacuum passes at the default 20 %. Vacuum them after
-- a few percent (or a fixed number of rows for the tiny ones) and without the cost delay
-- (they are small: a pass takes milliseconds). fillfactor leaves room for HOT updates
-- where the updated columns are not indexed. Only tables that exist are touched (another
-- migration may have replaced one).
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('mailbox_leasing', 'fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 500, autovacuum_vacuum_cost_delay = 0'),
        ('mailbox_days', 'fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 500, autovacuum_vacuum_cost_delay = 0'),
        ('mailbox_inbound', 'fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 500, autovacuum_vacuum_cost_delay = 0'),
        ('inbox_leasing', 'fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 500, autovacuum_vacuum_cost_delay = 0'),
        ('counters', 'fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0'),
        ('slot_buckets', 'fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0'),
        ('leases', 'fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0')
    ) v (name, opts)
    LOOP
        IF to_regclass(t.name) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I SET (%s)', t.name, t.opts);
        END IF;
    END LOOP;
END
$$;
