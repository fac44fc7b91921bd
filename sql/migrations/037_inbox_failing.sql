-- A failing inbox (session 34): its IMAP login works, or worked, but its visits do not
-- complete (a server down or throttling, a BYE or a drop after the login). The API keeps
-- it in inbox_error / inbox_error_at (the detail, and when it began failing) while the
-- inbox state stays; an agent's 'ok' (a visit done) clears both (api/lease/inbox_store.c
-- Q_SESSIONS). This migration lets the customer hear of it:
--
-- mailbox.inbox_failing, a webhook event sent once per failing episode when an inbox has
-- been failing for KILN_INBOX_FAILING_NOTIFY_S (3600): a blip that mends within it sends
-- nothing. inbox_failing_notified_at is when the last one was sent: an episode is
-- notified when that is before the episode's start (inbox_error_at), so nothing needs
-- resetting when the inbox mends or fails again.

ALTER TABLE mailboxes ADD COLUMN inbox_failing_notified_at timestamptz;

-- The inboxes failing now (few, whatever the pool's size): the background pass reads
-- the ones past the delay through it, never the whole table.
CREATE INDEX mailboxes_inbox_failing_idx ON mailboxes (inbox_error_at)
    WHERE inbox_error IS NOT NULL AND inbox <> 'error' AND deleted_at IS NULL;

ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_events_check,
    ADD CONSTRAINT webhook_endpoints_events_check CHECK (cardinality(events) > 0 AND events <@ ARRAY[
        'mailbox.paused', 'mailbox.error', 'mailbox.health_changed', 'mailbox.inbox_error',
        'mailbox.inbox_failing']::text[]);
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_type_check,
    ADD CONSTRAINT webhook_events_type_check CHECK (type IN ('mailbox.paused', 'mailbox.error',
        'mailbox.health_changed', 'mailbox.inbox_error', 'mailbox.inbox_failing'));

-- One pass: the inboxes failing for at least p_after_s and not notified of this episode
-- get their event (for the endpoints that subscribe to it) and are marked, at most
-- p_limit of them (the oldest episodes first); the count is returned.
CREATE FUNCTION kiln_inbox_failing_notify(p_after_s integer, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := kiln_now();
    v_n integer := 0;
    r record;
BEGIN
    FOR r IN SELECT m.id, m.user_id, m.address, m.inbox, m.inbox_error, m.inbox_error_at
             FROM mailboxes m
             WHERE m.inbox_error IS NOT NULL AND m.inbox <> 'error' AND m.deleted_at IS NULL
               AND m.inbox_error_at <= v_now - make_interval(secs => p_after_s)
               AND (m.inbox_failing_notified_at IS NULL
                    OR m.inbox_failing_notified_at < m.inbox_error_at)
             ORDER BY m.inbox_error_at LIMIT p_limit
             FOR UPDATE OF m SKIP LOCKED
    LOOP
        UPDATE mailboxes SET inbox_failing_notified_at = v_now WHERE id = r.id;
        PERFORM kiln_webhook_emit(r.user_id, 'mailbox.inbox_failing', r.id,
            jsonb_build_object('address', r.address, 'inbox', r.inbox::text,
                               'inbox_error', r.inbox_error,
                               'inbox_error_at', kiln_iso(r.inbox_error_at),
                               'failing_for_s',
                               floor(extract(epoch FROM v_now - r.inbox_error_at))::bigint));
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;
