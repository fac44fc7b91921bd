-- A slot a heartbeat cancels keeps its cap shares (session 21, "a cancelled future slot
-- then sent could overrun a cap"). The heartbeat's cancel list is the agent's only word
-- that a slot is off: when that answer is lost, or comes after the slot started, the
-- mail goes out and is reported `sent` (a result for a cancelled slot counts: the mail
-- went out). 003's kiln_finish_slots gave a future slot's minute/hour bucket shares
-- back at the cancel, so a later grant could take that room and the bucket ended above
-- its cap. Now only the paths after which no agent can start the slot give the shares
-- back: expiry (the agent starts nothing past its lease's expiry) and release (the
-- agent dropped its unstarted slots first). A heartbeat's cancel keeps them until the
-- bucket's time passes; the slot's in_flight and the mailbox's pending are released as
-- before (a late `sent` counts in mailbox_days.sent). Rules: docs/leasing.md "Caps".
CREATE FUNCTION kiln_finish_slots(p_send_ids bigint[], p_final send_status,
                                  p_release_caps boolean)
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
    IF p_release_caps THEN
        UPDATE slot_buckets b SET n = greatest(b.n - x.n, 0)
        FROM (SELECT u.user_id, w.width_s,
                     to_timestamp(floor(extract(epoch FROM f.scheduled_at) / w.width_s)
                                  * w.width_s) AS at, count(*)::int AS n
              FROM kiln_finished f JOIN mailboxes m ON m.id = f.mailbox_id
              CROSS JOIN (VALUES (60), (3600)) w (width_s)
              CROSS JOIN LATERAL (VALUES (0::bigint), (m.user_id)) u (user_id)
              WHERE f.scheduled_at > kiln_now()
              GROUP BY 1, 2, 3) x
        WHERE b.user_id = x.user_id AND b.width_s = x.width_s AND b.at = x.at;
    END IF;
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

-- The two-argument form (expiry and release through kiln_end_leases, and a kiln-api of
-- before this migration while it is deployed) gives the shares back as before.
CREATE OR REPLACE FUNCTION kiln_finish_slots(p_send_ids bigint[], p_final send_status)
RETURNS integer
LANGUAGE sql AS $$
    SELECT kiln_finish_slots(p_send_ids, p_final, true)
$$;

-- The inbox part of a refresh carries what is new (session 21): an agent that sends the
-- `inbox_cursor` of the last answer it merged gets in full only the inboxes given to it
-- after that answer (assigned_at, the granting transaction's now(): real time, not the
-- test clock), and for the inboxes it holds only their due actions and a poll class
-- that changed (poll_class_sent: the class the last answer carried; _at: when, so an
-- answer the agent never merged is made good). Rules: docs/design.md "Inbox leasing
-- and placement". Nullable columns: no rewrite.
ALTER TABLE inbox_leasing ADD COLUMN assigned_at timestamptz,
    ADD COLUMN poll_class_sent text, ADD COLUMN poll_class_sent_at timestamptz;
COMMENT ON COLUMN inbox_leasing.assigned_at IS
    'now() of the transaction that gave the inbox to its lease (an answer''s inbox_cursor)';
COMMENT ON COLUMN inbox_leasing.poll_class_sent IS
    'the poll class the last lease answer carried for this inbox';
-- Inboxes held now count as given at this migration: an agent's first cursor comes from
-- a later answer, which lists them in full.
UPDATE inbox_leasing SET assigned_at = now() WHERE lease_id IS NOT NULL;
