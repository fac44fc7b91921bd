-- Reciprocity and the health score's authentication input (issue 13). The rules:
-- docs/leasing.md "Reciprocity" (the ledger and the recipient choice, api/lease/lease_plan.c)
-- and docs/design.md "Mailbox health" (the score, api/health/health.c).

-- The ledger of a mailbox over its last 7 local days (today and the 6 before), from the
-- counters the lease path already keeps, so it costs no write. Both sides count a slot
-- when it is granted, so a day's sends and receipts are compared alike: sent from
-- mailbox_days (sent + in_flight: its slots granted, less those that failed or were given
-- back; by its local day), received from mailbox_inbound (slots addressed to it, by its
-- local day, written by grants under the cap lock). Two index range scans of at most 7
-- rows each; a table function of one SELECT, so PostgreSQL inlines it into the candidate
-- query (no call per row).
CREATE FUNCTION kiln_ledger_7d(mb bigint, today date)
RETURNS TABLE (sent_7d bigint, received_7d bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (SELECT coalesce(sum(d.sent + d.in_flight), 0)::bigint FROM mailbox_days d
            WHERE d.mailbox_id = mb AND d.day BETWEEN today - 6 AND today),
           (SELECT coalesce(sum(i.received), 0)::bigint FROM mailbox_inbound i
            WHERE i.mailbox_id = mb AND i.day BETWEEN today - 6 AND today)
$$;

-- What the recipients' providers wrote in Authentication-Results, rolled up with the
-- placements (015's trigger, extended): auth_seen counts placements whose header gave
-- any spf/dkim/dmarc verdict, auth_failed those with at least one fail; per method the
-- fails. The judge takes the 7-day fail share (auth_failed / auth_seen) into the score.
ALTER TABLE placement_days ADD COLUMN auth_seen   integer NOT NULL DEFAULT 0,
                           ADD COLUMN auth_failed integer NOT NULL DEFAULT 0,
                           ADD COLUMN spf_fail    integer NOT NULL DEFAULT 0,
                           ADD COLUMN dkim_fail   integer NOT NULL DEFAULT 0,
                           ADD COLUMN dmarc_fail  integer NOT NULL DEFAULT 0;

-- The rollup trigger that fills them is kiln_placements_rollup, as 017 redefines it.

-- A resume's baseline (015) holds the authentication counts too.
ALTER TABLE mailbox_health ADD COLUMN base_auth_seen   integer NOT NULL DEFAULT 0,
                           ADD COLUMN base_auth_failed integer NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION kiln_health_resumed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    now_ts timestamptz := kiln_now();
    utc_day date := (now_ts AT TIME ZONE 'UTC')::date;
    local_day date := (now_ts AT TIME ZONE NEW.timezone)::date;
BEGIN
    INSERT INTO mailbox_health AS h (mailbox_id, base_day, base_inbox, base_junk, base_other,
                                     base_missing, base_auth_seen, base_auth_failed,
                                     base_local_day, base_sent, base_failed)
    SELECT NEW.id, utc_day, coalesce(sum(p.inbox), 0), coalesce(sum(p.junk), 0),
           coalesce(sum(p.other), 0), coalesce(sum(p.missing), 0),
           coalesce(sum(p.auth_seen), 0), coalesce(sum(p.auth_failed), 0), local_day,
           coalesce((SELECT d.sent FROM mailbox_days d WHERE d.mailbox_id = NEW.id AND d.day = local_day), 0),
           coalesce((SELECT d.failed FROM mailbox_days d WHERE d.mailbox_id = NEW.id AND d.day = local_day), 0)
    FROM placement_days p WHERE p.mailbox_id = NEW.id AND p.day = utc_day
    ON CONFLICT (mailbox_id) DO UPDATE
        SET dirty = true, base_day = excluded.base_day, base_inbox = excluded.base_inbox,
            base_junk = excluded.base_junk, base_other = excluded.base_other,
            base_missing = excluded.base_missing, base_auth_seen = excluded.base_auth_seen,
            base_auth_failed = excluded.base_auth_failed,
            base_local_day = excluded.base_local_day,
            base_sent = excluded.base_sent, base_failed = excluded.base_failed;
    RETURN NULL;
END
$$;

-- Backfill the authentication counts of the placements recorded before this migration.
UPDATE placement_days d
SET auth_seen = x.seen, auth_failed = x.failed, spf_fail = x.spf, dkim_fail = x.dkim,
    dmarc_fail = x.dmarc
FROM (SELECT mailbox_id, (decided_at AT TIME ZONE 'UTC')::date AS day, provider,
             count(*) FILTER (WHERE spf <> 'none' OR dkim <> 'none' OR dmarc <> 'none') AS seen,
             count(*) FILTER (WHERE spf = 'fail' OR dkim = 'fail' OR dmarc = 'fail') AS failed,
             count(*) FILTER (WHERE spf = 'fail') AS spf, count(*) FILTER (WHERE dkim = 'fail') AS dkim,
             count(*) FILTER (WHERE dmarc = 'fail') AS dmarc
      FROM placements GROUP BY 1, 2, 3) x
WHERE d.mailbox_id = x.mailbox_id AND d.day = x.day AND d.provider = x.provider AND x.seen > 0;
