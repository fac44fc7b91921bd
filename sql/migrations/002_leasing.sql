-- Leasing: which mailbox is held by which lease, rate-cap accounting per minute/hour,
-- message templates, and the set-based functions that end slots and leases. The
-- algorithm is described in docs/leasing.md; kiln-api's api/lease.c drives it.

-- One narrow row per mailbox with its leasing state. It is the row leasers lock
-- (FOR UPDATE SKIP LOCKED) and re-check: lease_id lives on the locked row itself, so a
-- leaser that waited for another's commit sees the new lease_id and skips the mailbox.
-- Kept apart from mailboxes so the hot updates stay small and HOT (fillfactor).
CREATE TABLE mailbox_leasing (
    mailbox_id bigint PRIMARY KEY REFERENCES mailboxes (id),
    lease_id   uuid REFERENCES leases (id),
    pending    integer NOT NULL DEFAULT 0,  -- slots of lease_id not yet reported
    next_at    timestamptz,                 -- no slot before this (cooldown after the last)
    leased_at  timestamptz                  -- last grant: a trigger after it lifts pacing
) WITH (fillfactor = 50);

INSERT INTO mailbox_leasing (mailbox_id) SELECT id FROM mailboxes;

CREATE FUNCTION kiln_mailbox_leasing_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailbox_leasing (mailbox_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER mailboxes_leasing_row AFTER INSERT ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION kiln_mailbox_leasing_row();

-- Slots granted per minute and per hour of their scheduled time, globally (user_id 0)
-- and per user. Written only under the cap lock (see lease.c), so a read-then-grant
-- never races another leaser.
CREATE TABLE slot_buckets (
    user_id bigint NOT NULL,      -- 0 = global
    width_s integer NOT NULL,     -- 60 or 3600
    at      timestamptz NOT NULL, -- start of the minute/hour
    n       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (width_s, user_id, at)
) WITH (fillfactor = 70);
CREATE INDEX slot_buckets_at_idx ON slot_buckets (at);

-- Warmup content: subjects and bodies with {from}, {to}, {weekday}, {topic}
-- substituted per send, so no two consecutive mails look alike.
CREATE TABLE message_templates (
    id      serial PRIMARY KEY,
    subject text NOT NULL,
    body    text NOT NULL
);
CREATE TABLE message_topics (
    id    serial PRIMARY KEY,
    topic text NOT NULL
);

INSERT INTO message_templates (subject, body) VALUES
('Quick question about {topic}', E'Hi {to},\n\nDo you have a minute this {weekday} to talk about {topic}? I had a few thoughts after our last exchange.\n\nBest,\n{from}'),
('Re: {topic}', E'Hey {to},\n\nThanks for the notes on {topic}. I went through them and most of it makes sense to me.\n\nCheers,\n{from}'),
('Following up', E'Hi {to},\n\nJust following up on {topic}. No rush, whenever you get a chance.\n\nThanks,\n{from}'),
('{weekday} catch-up', E'Hello {to},\n\nAre we still on for the {weekday} catch-up? I would like to go over {topic} if there is time.\n\n{from}'),
('Notes from today', E'Hi {to},\n\nHere are my notes from today. The main point was {topic}; the rest can wait.\n\nRegards,\n{from}'),
('Thanks!', E'{to},\n\nThank you for the help with {topic}. It saved me a lot of time.\n\n{from}'),
('Idea for {topic}', E'Hi {to},\n\nI had an idea about {topic} on my way in this morning. Can I run it by you?\n\nTalk soon,\n{from}'),
('Small update', E'Hello {to},\n\nSmall update: {topic} is moving along. I will share more on {weekday}.\n\nBest wishes,\n{from}'),
('Coffee this week?', E'Hi {to},\n\nWould you be up for a coffee this week? Happy to hear how {topic} is going.\n\n{from}'),
('Checking in', E'Hey {to},\n\nChecking in to see how things are. Anything new with {topic}?\n\nAll the best,\n{from}'),
('Re: our call', E'Hi {to},\n\nGood talking earlier. As promised, a short summary: we agreed to look at {topic} again next week.\n\n{from}'),
('Draft for review', E'Hi {to},\n\nI put together a rough draft on {topic}. Let me know what you think when you have time.\n\nThanks a lot,\n{from}'),
('Happy {weekday}', E'Hi {to},\n\nHappy {weekday}! Hope the week is treating you well. I am still thinking about {topic}.\n\nCheers,\n{from}'),
('One more thing', E'{to},\n\nOne more thing I forgot to mention: {topic} might need another look before we decide.\n\n{from}'),
('Agenda', E'Hi {to},\n\nFor the next meeting I would suggest we start with {topic}. Anything you would like to add?\n\nBest,\n{from}'),
('Got it', E'Hi {to},\n\nGot it, thanks. I will take care of {topic} by {weekday}.\n\n{from}'),
('Question', E'Hello {to},\n\nA quick question: who else is involved in {topic}? I would like to loop them in.\n\nThanks,\n{from}'),
('Recommendation', E'Hi {to},\n\nI read something about {topic} that reminded me of you. Worth a look if you have a spare moment.\n\n{from}'),
('Schedule', E'Hey {to},\n\nDoes {weekday} afternoon still work for you? We could cover {topic} then.\n\nRegards,\n{from}'),
('Welcome back', E'Hi {to},\n\nWelcome back! When you have settled in, let us pick up {topic} again.\n\nBest,\n{from}');

INSERT INTO message_topics (topic) VALUES
('the quarterly plan'), ('the new website'), ('the budget review'), ('the team offsite'),
('the product launch'), ('the customer feedback'), ('the hiring plan'), ('the roadmap'),
('the training session'), ('the office move'), ('the partner meeting'), ('the newsletter'),
('the conference talk'), ('the onboarding guide'), ('the design review'), ('the support queue'),
('the spring campaign'), ('the annual report'), ('the workshop'), ('the migration project');

-- Ends the still-leased slots among p_send_ids with p_final ('expired' or 'cancelled'):
-- in_flight goes down (today's quota is granted again later), future slots give back
-- their cap room (a past one may have gone out, so it keeps counting), the metric
-- counter moves, and a mailbox with no pending slot left returns to the pool with its
-- next slot no sooner than a cooldown after now (anything sent was sent by now).
CREATE FUNCTION kiln_finish_slots(p_send_ids bigint[], p_final send_status) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
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
    UPDATE mailbox_leasing ml
    SET pending = greatest(ml.pending - x.n, 0),
        lease_id = CASE WHEN ml.pending - x.n <= 0 THEN NULL ELSE ml.lease_id END,
        next_at = CASE WHEN ml.pending - x.n <= 0
                       THEN least(ml.next_at, kiln_now() + make_interval(secs => x.cooldown_min_s))
                       ELSE ml.next_at END
    FROM (SELECT f.mailbox_id, f.lease_id, count(*)::int AS n, p.cooldown_min_s
          FROM kiln_finished f JOIN mailboxes m ON m.id = f.mailbox_id
          JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id
          GROUP BY 1, 2, 4) x
    WHERE ml.mailbox_id = x.mailbox_id AND ml.lease_id = x.lease_id;
    RETURN n;
END
$$;

-- Ends leases (released or expired): their unsent slots get p_final and their
-- mailboxes return to the pool. Returns the number of slots ended.
CREATE FUNCTION kiln_end_leases(p_ids uuid[], p_final send_status) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE leases SET ended_at = kiln_now() WHERE id = ANY (p_ids) AND ended_at IS NULL;
    n := kiln_finish_slots(ARRAY(SELECT id FROM sends WHERE lease_id = ANY (p_ids)
                                 AND status = 'leased'), p_final);
    -- A mailbox whose slots were all reported already is free; this catches the rest.
    UPDATE mailbox_leasing SET lease_id = NULL, pending = 0 WHERE lease_id = ANY (p_ids);
    RETURN n;
END
$$;

-- Expires up to p_limit leases past their deadline. Called at the start of lease and
-- heartbeat calls, so expiry needs no agent of the dead lease and no extra daemon.
-- SKIP LOCKED: two sweepers never wait for each other.
CREATE FUNCTION kiln_sweep_expired(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    ids := ARRAY(SELECT id FROM leases WHERE ended_at IS NULL AND expires_at <= kiln_now()
                 ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED);
    IF cardinality(ids) = 0 THEN
        RETURN 0;
    END IF;
    RETURN kiln_end_leases(ids, 'expired');
END
$$;
