-- Leasing without a full scan: each mailbox carries due_at, the UTC instant of its next
-- possible slot, and leasers range-scan a partial index of the unleased ones instead of
-- evaluating time zones, targets and counters for every mailbox on every call.
--
-- due_at is a lower bound ("no slot is possible before this"), kept so by:
--   * kiln_refresh_due() when a mailbox returns to the pool (report, expiry, release,
--     cancel) and for mailboxes a lease call picked but could not use;
--   * triggers that lower it to '-infinity' (re-check at the next pick) when a change
--     could make a mailbox due sooner: mailbox, user or plan edits, a trigger, a clock
--     moved backwards. A change that makes it due later needs nothing: the pick
--     re-checks every row exactly and pushes a stale one forward.
-- Ordering: due_at = greatest(window open, pace time of the next send, cooldown end).
-- The pace time (window open + done/target of the window) is what encodes "furthest
-- behind": the earlier a mailbox's next send was due, the further behind it is.

ALTER TABLE mailbox_leasing ADD COLUMN due_at timestamptz NOT NULL DEFAULT '-infinity';
CREATE INDEX mailbox_leasing_due_idx ON mailbox_leasing (due_at) WHERE lease_id IS NULL;

-- The next slot time of one mailbox as of p_now ('infinity' when it cannot send; the
-- next local day's window open when today is done or over). p_done = sent + in_flight
-- of the local day of p_now; p_paced is false after a trigger (pacing lifted).
CREATE FUNCTION kiln_due_at(p_now timestamptz, p_tz text, p_ws integer, p_we integer,
                            p_target integer, p_done integer, p_next_at timestamptz,
                            p_paced boolean, p_active boolean) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN NOT p_active THEN 'infinity'::timestamptz
        WHEN p_done < p_target AND c.at < c.close AND c.now_l < c.close THEN c.at AT TIME ZONE p_tz
        ELSE (c.day + 1 + make_interval(hours => p_ws)) AT TIME ZONE p_tz
    END
    FROM (SELECT l.day, l.close, l.now_l,
                 greatest(l.open, coalesce(p_next_at AT TIME ZONE p_tz, l.open),
                          CASE WHEN p_paced AND p_target > 0
                               THEN l.open + (l.close - l.open) * (p_done::float8 / p_target)
                               ELSE l.open END) AS at
          FROM (SELECT q.now_l, q.now_l::date AS day,
                       q.now_l::date + make_interval(hours => p_ws) AS open,
                       q.now_l::date + make_interval(hours => p_we) AS close
                FROM (SELECT p_now AT TIME ZONE p_tz AS now_l) q) l) c
$$;

-- due_at of the given mailboxes from their current state.
CREATE FUNCTION kiln_due_for(p_ids bigint[]) RETURNS TABLE (mailbox_id bigint, due_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT m.id,
           kiln_due_at(k.now, m.timezone, m.window_start_hour, m.window_end_hour,
                       kiln_target(p.ramp_start, p.ramp_step, p.daily_max, p.weekdays_only,
                                   m.daily_target, m.warmup_start, t.day),
                       coalesce(d.sent, 0) + coalesce(d.in_flight, 0), ml.next_at,
                       NOT coalesce(s.last_trigger_at > coalesce(ml.leased_at, '-infinity'), false),
                       m.deleted_at IS NULL AND m.state = 'active' AND u.state = 'active')
    FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
    JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s
    CROSS JOIN (SELECT kiln_now() AS now) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY (p_ids)
$$;

-- Recomputes due_at of the unleased mailboxes among p_ids (all when NULL), never
-- earlier than p_not_before. Returns the rows changed.
CREATE FUNCTION kiln_refresh_due(p_ids bigint[], p_not_before timestamptz DEFAULT '-infinity')
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF p_ids IS NULL THEN
        p_ids := ARRAY(SELECT mailbox_id FROM mailbox_leasing WHERE lease_id IS NULL);
    END IF;
    UPDATE mailbox_leasing ml SET due_at = greatest(x.due_at, p_not_before)
    FROM (SELECT f.mailbox_id, f.due_at FROM kiln_due_for(p_ids) f ORDER BY 1) x
    WHERE ml.mailbox_id = x.mailbox_id AND ml.lease_id IS NULL
      AND ml.due_at IS DISTINCT FROM greatest(x.due_at, p_not_before);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- 002's kiln_finish_slots and kiln_end_leases, plus: mailboxes that return to the pool
-- get their due_at recomputed in the same transaction.
CREATE OR REPLACE FUNCTION kiln_finish_slots(p_send_ids bigint[], p_final send_status)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    freed bigint[];
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS kiln_finished (
        id bigint, mailbox_id bigint, lease_id uuid, day date, scheduled_at timestamptz
    ) ON COMMIT DELETE ROWS;
    DELETE FROM kiln_finished;
    WITH s AS (
        UPDATE sends SET status = p_final, reported_at = kiln_now()
        WHERE id = ANY (p_send_ids) AND status = 'leased'
        RETURNING id, mailbox_id, lease_id, day, scheduled_at
    )
    INSERT INTO kiln_finished SELECT * FROM s;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    UPDATE mailbox_days md SET in_flight = greatest(md.in_flight - x.n, 0)
    FROM (SELECT mailbox_id, day, count(*)::int AS n FROM kiln_finished GROUP BY 1, 2
          ORDER BY 1, 2) x
    WHERE md.mailbox_id = x.mailbox_id AND md.day = x.day;
    UPDATE slot_buckets b SET n = greatest(b.n - x.n, 0)
    FROM (SELECT u.user_id, w.width_s,
                 to_timestamp(floor(extract(epoch FROM f.scheduled_at) / w.width_s) * w.width_s)
                   AS at, count(*)::int AS n
          FROM kiln_finished f JOIN mailboxes m ON m.id = f.mailbox_id
          CROSS JOIN (VALUES (60), (3600)) w (width_s)
          CROSS JOIN LATERAL (VALUES (0::bigint), (m.user_id)) u (user_id)
          WHERE f.scheduled_at > kiln_now()
          GROUP BY 1, 2, 3) x
    WHERE b.user_id = x.user_id AND b.width_s = x.width_s AND b.at = x.at;
    INSERT INTO counters (name, label, shard, value)
    VALUES ('sends', p_final::text, floor(random() * 16)::smallint, n)
    ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value;
    -- Only the rows freed here are refreshed: they are locked by this transaction
    -- already, so the refresh never waits for a leaser holding a pool row.
    WITH r AS (
        UPDATE mailbox_leasing ml
        SET pending = greatest(ml.pending - x.n, 0),
            lease_id = CASE WHEN ml.pending - x.n <= 0 THEN NULL ELSE ml.lease_id END,
            next_at = CASE WHEN ml.pending - x.n <= 0
                           THEN least(ml.next_at,
                                      kiln_now() + make_interval(secs => x.cooldown_min_s))
                           ELSE ml.next_at END
        FROM (SELECT f.mailbox_id, f.lease_id, count(*)::int AS n, p.cooldown_min_s
              FROM kiln_finished f JOIN mailboxes m ON m.id = f.mailbox_id
              JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id
              GROUP BY 1, 2, 4) x
        WHERE ml.mailbox_id = x.mailbox_id AND ml.lease_id = x.lease_id
        RETURNING ml.mailbox_id, ml.lease_id)
    SELECT array_agg(mailbox_id) FILTER (WHERE lease_id IS NULL) INTO freed FROM r;
    IF freed IS NOT NULL THEN
        PERFORM kiln_refresh_due(freed);
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION kiln_end_leases(p_ids uuid[], p_final send_status) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    freed bigint[];
BEGIN
    UPDATE leases SET ended_at = kiln_now() WHERE id = ANY (p_ids) AND ended_at IS NULL;
    n := kiln_finish_slots(ARRAY(SELECT id FROM sends WHERE lease_id = ANY (p_ids)
                                 AND status = 'leased'), p_final);
    -- A mailbox whose slots were all reported already is free; this catches the rest.
    WITH f AS (UPDATE mailbox_leasing SET lease_id = NULL, pending = 0
               WHERE lease_id = ANY (p_ids) RETURNING mailbox_id)
    SELECT array_agg(mailbox_id) INTO freed FROM f;
    IF freed IS NOT NULL THEN
        PERFORM kiln_refresh_due(freed);
    END IF;
    RETURN n;
END
$$;

-- Changes that can make a mailbox due sooner than its stored due_at: re-check it at the
-- next pick ('-infinity' sorts first; the pick computes the exact value).
CREATE FUNCTION kiln_due_reset_mailbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_leasing SET due_at = '-infinity'
    WHERE mailbox_id = NEW.id AND due_at <> '-infinity';
    RETURN NULL;
END
$$;
CREATE TRIGGER mailboxes_due_reset AFTER UPDATE ON mailboxes FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.timezone IS DISTINCT FROM NEW.timezone
          OR OLD.window_start_hour IS DISTINCT FROM NEW.window_start_hour
          OR OLD.window_end_hour IS DISTINCT FROM NEW.window_end_hour
          OR OLD.daily_target IS DISTINCT FROM NEW.daily_target
          OR OLD.warmup_start IS DISTINCT FROM NEW.warmup_start
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION kiln_due_reset_mailbox();

CREATE FUNCTION kiln_due_reset_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_leasing ml SET due_at = '-infinity' FROM mailboxes m
    WHERE m.user_id = NEW.id AND ml.mailbox_id = m.id AND ml.due_at <> '-infinity';
    RETURN NULL;
END
$$;
CREATE TRIGGER users_due_reset AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.plan_id IS DISTINCT FROM NEW.plan_id
          OR OLD.timezone IS DISTINCT FROM NEW.timezone)
    EXECUTE FUNCTION kiln_due_reset_user();

CREATE FUNCTION kiln_due_reset_plan() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_leasing ml SET due_at = '-infinity' FROM mailboxes m JOIN users u
    ON u.id = m.user_id WHERE u.plan_id = NEW.id AND ml.mailbox_id = m.id
    AND ml.due_at <> '-infinity';
    RETURN NULL;
END
$$;
CREATE TRIGGER plans_due_reset AFTER UPDATE ON plans FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION kiln_due_reset_plan();

-- A trigger lifts pacing for every mailbox not leased since: recompute them all now
-- (one set-based pass, an admin action). Starting the service needs nothing: due_at
-- stayed a valid lower bound while it was stopped.
CREATE FUNCTION kiln_due_on_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kiln_refresh_due(NULL);
    RETURN NULL;
END
$$;
CREATE TRIGGER service_due_trigger AFTER UPDATE ON service FOR EACH ROW
    WHEN (OLD.last_trigger_at IS DISTINCT FROM NEW.last_trigger_at)
    EXECUTE FUNCTION kiln_due_on_trigger();

-- The test clock: moving forward keeps every due_at a valid lower bound; moving back
-- does not, so recompute all (tests only; production never moves the clock).
CREATE TRIGGER kiln_clock_due_back AFTER UPDATE ON kiln_clock FOR EACH ROW
    WHEN (NEW.offset_s < OLD.offset_s)
    EXECUTE FUNCTION kiln_due_on_trigger();

SELECT kiln_refresh_due(NULL);
