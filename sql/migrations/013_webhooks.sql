-- Webhooks (issue 13): per-tenant endpoints, an outbox of events written in the same
-- transaction as the change they report, and one delivery row per (endpoint, event) that
-- the delivery worker (api/webhook/webhook_worker.c) claims with FOR UPDATE SKIP LOCKED.
-- docs/webhooks.md tells the whole story.
--
-- Clocks: events carry kiln_now() (the domain clock tests move); delivery scheduling uses
-- now(), the wall clock, since it times real HTTP requests and signatures.

CREATE TABLE webhook_endpoints (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- a non-empty subset of the event types (kiln_webhook_emit matches with ANY)
    events      text[] NOT NULL CHECK (cardinality(events) > 0 AND events <@ ARRAY[
                    'mailbox.paused', 'mailbox.error', 'mailbox.health_changed',
                    'mailbox.inbox_error']::text[]),
    secret      bytea NOT NULL,   -- AES-256-GCM sealed (aad "kiln/webhook/secret"), never returned
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT kiln_now(),
    updated_at  timestamptz NOT NULL DEFAULT kiln_now()
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id);

-- The outbox. xact makes an event idempotent per (transaction, mailbox, type): the
-- trigger below and an explicit webhook_emit in the same transaction make one event.
CREATE TABLE webhook_events (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type IN ('mailbox.paused', 'mailbox.error',
                    'mailbox.health_changed', 'mailbox.inbox_error')),
    mailbox_id  bigint,
    payload     jsonb NOT NULL DEFAULT '{}',
    xact        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at  timestamptz NOT NULL DEFAULT kiln_now(),
    CONSTRAINT webhook_events_once UNIQUE (xact, mailbox_id, type)
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

CREATE TYPE webhook_delivery_status AS ENUM ('pending', 'delivered', 'failed');

CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    endpoint_id     bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        bigint NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    status          webhook_delivery_status NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT now(),  -- NULL once delivered or failed
    last_attempt_at timestamptz,
    last_code       integer,                    -- HTTP status of the last attempt; NULL: none
    last_error      text,                       -- why the last attempt failed (no secrets)
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- Emits one event for p_user's active endpoints that subscribe to p_type: nothing when
-- there are none (tenants without webhooks pay one index probe). Runs in the caller's
-- transaction. A second emit of the same (mailbox, type) in one transaction merges its
-- payload into the first. Returns the event id or NULL.
CREATE FUNCTION kiln_webhook_emit(p_user bigint, p_type text, p_mailbox bigint, p_payload jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints
                   WHERE user_id = p_user AND active AND p_type = ANY (events)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events AS e (user_id, type, mailbox_id, payload)
    VALUES (p_user, p_type, p_mailbox,
            coalesce(p_payload, '{}') || jsonb_build_object('mailbox_id', p_mailbox))
    ON CONFLICT ON CONSTRAINT webhook_events_once
        DO UPDATE SET payload = e.payload || excluded.payload
    RETURNING id INTO v_id;
    INSERT INTO webhook_deliveries (endpoint_id, event_id)
    SELECT id, v_id FROM webhook_endpoints
    WHERE user_id = p_user AND active AND p_type = ANY (events)
    ORDER BY id
    ON CONFLICT ON CONSTRAINT webhook_deliveries_once DO NOTHING;
    RETURN v_id;
END
$$;

-- Every transition of mailboxes.state to 'paused' or 'error' and of mailboxes.inbox to
-- 'error' emits its event, whichever statement makes it (the pause endpoint, a PATCH, the
-- leasing poison path, an auth failure in a report, the health work): the emit cannot be
-- forgotten at a new call site and always shares the change's transaction.
CREATE FUNCTION kiln_mailbox_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NEW.state IN ('paused', 'error') THEN
        PERFORM kiln_webhook_emit(NEW.user_id, 'mailbox.' || NEW.state::text, NEW.id,
            jsonb_build_object('address', NEW.address, 'state', NEW.state::text,
                               'previous_state', OLD.state::text,
                               'last_error', NEW.last_error,
                               'last_error_at', kiln_iso(NEW.last_error_at)));
    END IF;
    IF NEW.inbox IS DISTINCT FROM OLD.inbox AND NEW.inbox = 'error' THEN
        PERFORM kiln_webhook_emit(NEW.user_id, 'mailbox.inbox_error', NEW.id,
            jsonb_build_object('address', NEW.address, 'inbox', NEW.inbox::text,
                               'previous_inbox', OLD.inbox::text,
                               'inbox_error', NEW.inbox_error,
                               'inbox_error_at', kiln_iso(NEW.inbox_error_at)));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER mailboxes_webhooks AFTER UPDATE OF state, inbox ON mailboxes
    FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state OR NEW.inbox IS DISTINCT FROM OLD.inbox)
    EXECUTE FUNCTION kiln_mailbox_webhooks();
