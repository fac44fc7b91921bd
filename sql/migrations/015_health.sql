-- Mailbox health (issue 13): per-day placement rollups maintained with the placements,
-- one health row per judged mailbox, and quarantine in the day's target. The rules:
-- docs/design.md "Mailbox health"; the judge: api/health/health_sweep.c (run by the
-- stats refresher); the score and bands: api/health/health.c.

-- Where a sender's mail landed, per UTC day (of decided_at) and recipient provider. A
-- placement is decided once (placements is insert-only), so a statement trigger on its
-- INSERT keeps these exact; health never scans placements history.
CREATE TABLE placement_days (
    mailbox_id bigint NOT NULL,        -- the sender
    day        date NOT NULL,          -- UTC day of decided_at
    provider   mail_provider NOT NULL, -- the recipient's
    inbox      integer NOT NULL DEFAULT 0,
    junk       integer NOT NULL DEFAULT 0,
    other      integer NOT NULL DEFAULT 0,
    missing    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, day, provider)
) WITH (fillfactor = 70);

-- The same across the pool, for kiln_inbox_rate{provider} (the snapshot thread reads 7
-- days x 4 providers x 16 shards, whatever the pool's size). shard = sender id % 16 so
-- concurrent reports rarely wait on one counter row.
CREATE TABLE placement_pool_days (
    day      date NOT NULL,
    provider mail_provider NOT NULL,
    shard    smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    inbox    bigint NOT NULL DEFAULT 0,
    junk     bigint NOT NULL DEFAULT 0,
    other    bigint NOT NULL DEFAULT 0,
    missing  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider, shard)
) WITH (fillfactor = 70);

CREATE TYPE health_band AS ENUM ('new', 'good', 'watch', 'quarantine', 'pause');

-- A mailbox's last judgement. dirty: its rollups (placements, bounces) changed since;
-- the judge picks dirty rows a bounded batch at a time. A mailbox without a row is 'new'.
CREATE TABLE mailbox_health (
    mailbox_id bigint PRIMARY KEY REFERENCES mailboxes (id),
    band       health_band NOT NULL DEFAULT 'new',
    score      smallint CHECK (score BETWEEN 0 AND 100), -- NULL while nothing is judged
    reason     text NOT NULL DEFAULT 'nothing to judge yet',
    judged_at  timestamptz,
    band_since timestamptz NOT NULL DEFAULT kiln_now(),
    dirty      boolean NOT NULL DEFAULT true,
    -- What the rollups of the day the mailbox became active again held at that moment
    -- (set on resume): the judge subtracts it, so mail from before a resume never counts
    -- after it although the rollups are per day. base_day: UTC (placement_days);
    -- base_local_day: the mailbox's local day (mailbox_days).
    base_day       date,
    base_inbox     integer NOT NULL DEFAULT 0,
    base_junk      integer NOT NULL DEFAULT 0,
    base_other     integer NOT NULL DEFAULT 0,
    base_missing   integer NOT NULL DEFAULT 0,
    base_local_day date,
    base_sent      integer NOT NULL DEFAULT 0,
    base_failed    integer NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
CREATE INDEX mailbox_health_dirty_idx ON mailbox_health (mailbox_id) WHERE dirty;
CREATE INDEX mailbox_health_band_idx ON mailbox_health (band);

-- Quarantine holds the day's target at the plan's ramp_start on the local days from
-- quarantine_from's to quarantine_until's (exclusive). The columns live on mailboxes
-- because kiln_mailbox_target takes the mailboxes row: every caller (quota, leasing,
-- metrics, history) sees the quarantine with no join.
ALTER TABLE mailboxes ADD COLUMN quarantine_from timestamptz,
                      ADD COLUMN quarantine_until timestamptz;

-- One expression (no FROM) so PostgreSQL still inlines it (009's reason for it).
CREATE OR REPLACE FUNCTION kiln_mailbox_target(m mailboxes, p plans, day date) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN m.quarantine_until IS NOT NULL
                     AND day >= (m.quarantine_from AT TIME ZONE m.timezone)::date
                     AND day < (m.quarantine_until AT TIME ZONE m.timezone)::date
                THEN least(p.ramp_start,
                           kiln_target(p.ramp_start, p.ramp_step, p.daily_max, p.weekdays_only,
                                       m.daily_target, m.warmup_start, day))
                ELSE kiln_target(p.ramp_start, p.ramp_step, p.daily_max, p.weekdays_only,
                                 m.daily_target, m.warmup_start, day) END
$$;

-- The senders' newest placements first (GET /api/mailboxes/{id}/placement).
CREATE INDEX placements_mailbox_send_idx ON placements (mailbox_id, send_id);

CREATE FUNCTION kiln_placements_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO placement_days AS d (mailbox_id, day, provider, inbox, junk, other, missing)
    SELECT mailbox_id, (decided_at AT TIME ZONE 'UTC')::date, provider,
           count(*) FILTER (WHERE placement = 'inbox'), count(*) FILTER (WHERE placement = 'junk'),
           count(*) FILTER (WHERE placement = 'other'),
           count(*) FILTER (WHERE placement = 'missing')
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (mailbox_id, day, provider) DO UPDATE
        SET inbox = d.inbox + excluded.inbox, junk = d.junk + excluded.junk,
            other = d.other + excluded.other, missing = d.missing + excluded.missing;
    INSERT INTO placement_pool_days AS d (day, provider, shard, inbox, junk, other, missing)
    SELECT (decided_at AT TIME ZONE 'UTC')::date, provider, mailbox_id % 16,
           count(*) FILTER (WHERE placement = 'inbox'), count(*) FILTER (WHERE placement = 'junk'),
           count(*) FILTER (WHERE placement = 'other'),
           count(*) FILTER (WHERE placement = 'missing')
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, provider, shard) DO UPDATE
        SET inbox = d.inbox + excluded.inbox, junk = d.junk + excluded.junk,
            other = d.other + excluded.other, missing = d.missing + excluded.missing;
    INSERT INTO mailbox_health AS h (mailbox_id)
    SELECT DISTINCT mailbox_id FROM new_rows n WHERE EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = n.mailbox_id)
    ORDER BY 1
    ON CONFLICT (mailbox_id) DO UPDATE SET dirty = true WHERE NOT h.dirty;
    RETURN NULL;
END
$$;
CREATE TRIGGER placements_rollup AFTER INSERT ON placements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION kiln_placements_rollup();

-- A bounce (mailbox_days.failed rising) changes the bounce share: judge again.
CREATE FUNCTION kiln_health_bounced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailbox_health AS h (mailbox_id) VALUES (NEW.mailbox_id)
    ON CONFLICT (mailbox_id) DO UPDATE SET dirty = true WHERE NOT h.dirty;
    RETURN NULL;
END
$$;
CREATE TRIGGER mailbox_days_bounce_ins AFTER INSERT ON mailbox_days FOR EACH ROW
    WHEN (NEW.failed > 0) EXECUTE FUNCTION kiln_health_bounced();
CREATE TRIGGER mailbox_days_bounce_upd AFTER UPDATE OF failed ON mailbox_days FOR EACH ROW
    WHEN (NEW.failed > OLD.failed) EXECUTE FUNCTION kiln_health_bounced();

-- A mailbox turning active again (resumed after a pause) is judged afresh from that
-- moment (its window starts at active_since, 014): the day's counts so far become its
-- baseline, so a health pause does not outlive the resume.
CREATE FUNCTION kiln_health_resumed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    now_ts timestamptz := kiln_now();
    utc_day date := (now_ts AT TIME ZONE 'UTC')::date;
    local_day date := (now_ts AT TIME ZONE NEW.timezone)::date;
BEGIN
    INSERT INTO mailbox_health AS h (mailbox_id, base_day, base_inbox, base_junk, base_other,
                                     base_missing, base_local_day, base_sent, base_failed)
    SELECT NEW.id, utc_day, coalesce(sum(p.inbox), 0), coalesce(sum(p.junk), 0),
           coalesce(sum(p.other), 0), coalesce(sum(p.missing), 0), local_day,
           coalesce((SELECT d.sent FROM mailbox_days d WHERE d.mailbox_id = NEW.id AND d.day = local_day), 0),
           coalesce((SELECT d.failed FROM mailbox_days d WHERE d.mailbox_id = NEW.id AND d.day = local_day), 0)
    FROM placement_days p WHERE p.mailbox_id = NEW.id AND p.day = utc_day
    ON CONFLICT (mailbox_id) DO UPDATE
        SET dirty = true, base_day = excluded.base_day, base_inbox = excluded.base_inbox,
            base_junk = excluded.base_junk, base_other = excluded.base_other,
            base_missing = excluded.base_missing, base_local_day = excluded.base_local_day,
            base_sent = excluded.base_sent, base_failed = excluded.base_failed;
    RETURN NULL;
END
$$;
CREATE TRIGGER mailboxes_health_resumed AFTER UPDATE OF state ON mailboxes FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM 'active' AND NEW.state = 'active')
    EXECUTE FUNCTION kiln_health_resumed();

-- Backfill: the rollups of placements recorded before this migration.
INSERT INTO placement_days (mailbox_id, day, provider, inbox, junk, other, missing)
SELECT mailbox_id, (decided_at AT TIME ZONE 'UTC')::date, provider,
       count(*) FILTER (WHERE placement = 'inbox'), count(*) FILTER (WHERE placement = 'junk'),
       count(*) FILTER (WHERE placement = 'other'), count(*) FILTER (WHERE placement = 'missing')
FROM placements GROUP BY 1, 2, 3;
INSERT INTO placement_pool_days (day, provider, shard, inbox, junk, other, missing)
SELECT (decided_at AT TIME ZONE 'UTC')::date, provider, mailbox_id % 16,
       count(*) FILTER (WHERE placement = 'inbox'), count(*) FILTER (WHERE placement = 'junk'),
       count(*) FILTER (WHERE placement = 'other'), count(*) FILTER (WHERE placement = 'missing')
FROM placements GROUP BY 1, 2, 3;
INSERT INTO mailbox_health (mailbox_id)
SELECT DISTINCT p.mailbox_id FROM placements p JOIN mailboxes m ON m.id = p.mailbox_id;
