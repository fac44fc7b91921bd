-- The inbox side, control plane (issue 13): inbox leases, folder state handed from one
-- holder to the next, the actions due in each inbox, and where each send landed
-- (placement). The rules: docs/design.md "Inbox leasing and placement"; the wire:
-- api/openapi.yaml (InboxLease, LeaseInbox, InboxEvent); kiln-api's api/lease/inbox_*.c.

-- An inbox lease is a row of leases with kind 'inbox' (one live one per agent): the
-- agent endpoints (heartbeat, report, release) take its id like a send lease's, and
-- kiln_sweep_expired ends it when it is not renewed.
CREATE TYPE lease_kind AS ENUM ('send', 'inbox');
ALTER TABLE leases ADD COLUMN kind lease_kind NOT NULL DEFAULT 'send';
CREATE INDEX leases_inbox_agent_idx ON leases (agent_id) WHERE kind = 'inbox' AND ended_at IS NULL;

-- When the agent last asked for inboxes: the agents that want inboxes share them
-- (each holds at most ceil(watchable / wanting agents)).
ALTER TABLE agents ADD COLUMN inbox_wanted_at timestamptz;

-- imap_gen moves on every change of the IMAP access (a trigger, so no writer can forget
-- it): a holder granted under an older generation drops the inbox at its heartbeat.
ALTER TABLE mailboxes ADD COLUMN imap_gen integer NOT NULL DEFAULT 0;
CREATE FUNCTION kiln_imap_gen() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.imap_gen := OLD.imap_gen + 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER mailboxes_imap_gen BEFORE UPDATE ON mailboxes FOR EACH ROW
    WHEN (OLD.imap_host IS DISTINCT FROM NEW.imap_host OR OLD.imap_port IS DISTINCT FROM NEW.imap_port
          OR OLD.imap_security IS DISTINCT FROM NEW.imap_security
          OR OLD.imap_username IS DISTINCT FROM NEW.imap_username
          OR OLD.imap_auth IS DISTINCT FROM NEW.imap_auth
          OR OLD.imap_secret IS DISTINCT FROM NEW.imap_secret
          OR OLD.imap_allow_plaintext_auth IS DISTINCT FROM NEW.imap_allow_plaintext_auth)
    EXECUTE FUNCTION kiln_imap_gen();

-- One narrow row per mailbox: which inbox lease watches it. Leasers lock free rows
-- FOR UPDATE SKIP LOCKED, so two concurrent leasers never get the same inbox.
CREATE TABLE inbox_leasing (
    mailbox_id bigint PRIMARY KEY REFERENCES mailboxes (id),
    lease_id   uuid REFERENCES leases (id),
    imap_gen   integer NOT NULL DEFAULT 0, -- mailboxes.imap_gen when granted
    leased_at  timestamptz
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX inbox_leasing_lease_idx ON inbox_leasing (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX inbox_leasing_free_idx ON inbox_leasing (mailbox_id) WHERE lease_id IS NULL;
INSERT INTO inbox_leasing (mailbox_id) SELECT id FROM mailboxes;

CREATE FUNCTION kiln_inbox_leasing_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO inbox_leasing (mailbox_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER mailboxes_inbox_leasing_row AFTER INSERT ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION kiln_inbox_leasing_row();

-- An inbox lease that ends (released, or expired by kiln_sweep_expired) frees its
-- inboxes for the next leaser, which resumes from inbox_folders.
CREATE FUNCTION kiln_inbox_lease_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE inbox_leasing SET lease_id = NULL WHERE lease_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER leases_inbox_ended AFTER UPDATE OF ended_at ON leases FOR EACH ROW
    WHEN (NEW.kind = 'inbox' AND OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION kiln_inbox_lease_ended();

CREATE TYPE folder_role AS ENUM ('inbox', 'junk', 'warmup', 'other');

-- Per folder of a watched inbox, the state the last holder reported: where the next
-- holder resumes (UID FETCH last_uid+1:*). At most 16 folders per mailbox (the report
-- ignores more). last_uid only moves forward; a new uidvalidity replaces the row's state.
CREATE TABLE inbox_folders (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes (id),
    name        text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 1000),
    role        folder_role NOT NULL,
    uidvalidity bigint NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    last_uid    bigint NOT NULL CHECK (last_uid BETWEEN 0 AND 4294967295),
    updated_at  timestamptz NOT NULL DEFAULT kiln_now(),
    PRIMARY KEY (mailbox_id, name)
) WITH (fillfactor = 70);

-- A kiln message in a recipient's inbox (one per send): where it is now, as found and
-- then moved by actions. Actions address it there.
CREATE TABLE inbox_messages (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes (id), -- the recipient
    send_id     bigint NOT NULL,
    folder      text NOT NULL,
    role        folder_role NOT NULL,
    uidvalidity bigint NOT NULL,
    uid         bigint NOT NULL,
    flags       text[] NOT NULL DEFAULT '{}',
    found_at    timestamptz NOT NULL DEFAULT kiln_now(),
    moved_at    timestamptz,
    PRIMARY KEY (mailbox_id, send_id)
);

-- Every place a message was seen or moved to, the key of found events' idempotency:
-- a found event at a known (mailbox, folder, uidvalidity, uid) is a duplicate, however
-- late or out of order it comes.
CREATE TABLE inbox_sightings (
    mailbox_id  bigint NOT NULL,
    folder      text NOT NULL,
    uidvalidity bigint NOT NULL,
    uid         bigint NOT NULL,
    send_id     bigint NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT kiln_now(),
    PRIMARY KEY (mailbox_id, folder, uidvalidity, uid)
);

CREATE TYPE inbox_action_kind AS ENUM ('rescue', 'mark', 'file', 'prune');
-- pending until the agent reports an outcome (the first one counts); cancelled when an
-- earlier action of the same message found it gone/stale or pruned it.
CREATE TYPE inbox_action_status AS ENUM ('pending', 'done', 'gone', 'stale', 'refused',
                                         'failed', 'cancelled');
CREATE TABLE inbox_actions (
    id          bigserial PRIMARY KEY,
    mailbox_id  bigint NOT NULL REFERENCES mailboxes (id), -- the inbox acted in
    send_id     bigint NOT NULL,
    kind        inbox_action_kind NOT NULL,
    folder      text NOT NULL,        -- where the message is (follows its moves)
    uidvalidity bigint NOT NULL,
    uid         bigint NOT NULL,
    flags       text[] NOT NULL DEFAULT '{}' CHECK (cardinality(flags) <= 8),
    target      folder_role CHECK (target IS NULL OR target IN ('inbox', 'warmup')),
    not_before  timestamptz NOT NULL,
    status      inbox_action_status NOT NULL DEFAULT 'pending',
    outcome     text CHECK (octet_length(outcome) <= 1000), -- the agent's detail
    created_at  timestamptz NOT NULL DEFAULT kiln_now(),
    reported_at timestamptz
);
-- The due actions of an inbox (lease answers), and the actions of one message (chains).
CREATE INDEX inbox_actions_due_idx ON inbox_actions (mailbox_id, send_id, id)
    WHERE status = 'pending';

-- Where each send landed, decided once: the folder of its first find (inbox, junk,
-- other) or missing (not found within KILN_PLACEMENT_DEADLINE_S). A later find elsewhere
-- (rescued, moved) does not change it; a find after missing fills folder and found_at
-- but the placement stays missing. provider: the recipient's, from its IMAP host;
-- spf/dkim/dmarc: the Authentication-Results the recipient's provider wrote.
CREATE TYPE placement_folder AS ENUM ('inbox', 'junk', 'other', 'missing');
CREATE TYPE mail_provider AS ENUM ('gmail', 'outlook', 'yahoo', 'other');
CREATE TYPE auth_verdict AS ENUM ('pass', 'fail', 'none');
CREATE TABLE placements (
    send_id      bigint PRIMARY KEY,
    mailbox_id   bigint NOT NULL,   -- the sender
    recipient_id bigint NOT NULL,
    placement    placement_folder NOT NULL,
    folder       text,              -- the folder name first found in
    found_at     timestamptz,
    decided_at   timestamptz NOT NULL DEFAULT kiln_now(),
    provider     mail_provider NOT NULL,
    spf          auth_verdict NOT NULL DEFAULT 'none',
    dkim         auth_verdict NOT NULL DEFAULT 'none',
    dmarc        auth_verdict NOT NULL DEFAULT 'none'
);
CREATE INDEX placements_mailbox_idx ON placements (mailbox_id, decided_at);
CREATE INDEX placements_recipient_idx ON placements (recipient_id, decided_at);

-- Expected arrivals per inbox (the poll class) without scanning sends.
CREATE INDEX sends_recipient_idx ON sends (recipient_id, scheduled_at);

-- The missing sweep's watermark: sends up to last_send_id were judged. It starts at the
-- newest send, so sends before this migration are never judged missing.
CREATE TABLE placement_sweep (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_send_id bigint NOT NULL
);
INSERT INTO placement_sweep (last_send_id) SELECT coalesce(max(id), 0) FROM sends;
