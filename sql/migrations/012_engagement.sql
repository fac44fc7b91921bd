-- The engagement plan and replies (issue 13).
--
-- plans: what recipients do with warmup mail (api/engage/engage.h holds the same defaults;
-- docs/design.md "Engagement plan" says why each default and range). reply_rate exists
-- since 001. Constant defaults: PostgreSQL 11+ adds the columns without a rewrite.
ALTER TABLE plans
    ADD COLUMN open_rate        real NOT NULL DEFAULT 0.9 CHECK (open_rate BETWEEN 0 AND 1),
    ADD COLUMN important_rate   real NOT NULL DEFAULT 0.05 CHECK (important_rate BETWEEN 0 AND 0.5),
    ADD COLUMN rescue_rate      real NOT NULL DEFAULT 1.0 CHECK (rescue_rate BETWEEN 0 AND 1),
    ADD COLUMN untouched_rate   real NOT NULL DEFAULT 0.05 CHECK (untouched_rate BETWEEN 0 AND 0.5),
    ADD COLUMN dwell_median_min integer NOT NULL DEFAULT 30 CHECK (dwell_median_min BETWEEN 1 AND 720),
    ADD COLUMN dwell_max_min    integer NOT NULL DEFAULT 480 CHECK (dwell_max_min BETWEEN 1 AND 1440),
    ADD COLUMN quiet_start_hour integer NOT NULL DEFAULT 23 CHECK (quiet_start_hour BETWEEN 0 AND 23),
    ADD COLUMN quiet_end_hour   integer NOT NULL DEFAULT 7 CHECK (quiet_end_hour BETWEEN 0 AND 23),
    ADD COLUMN retention_days   integer NOT NULL DEFAULT 30 CHECK (retention_days BETWEEN 3 AND 365),
    ADD COLUMN max_reply_depth  integer NOT NULL DEFAULT 2 CHECK (max_reply_depth BETWEEN 0 AND 5),
    ADD CONSTRAINT plans_dwell_order CHECK (dwell_max_min >= dwell_median_min);

-- sends: the subject as granted (a reply quotes it), and a reply's threading (RFC 5322
-- 3.6.4): in_reply_to is the parent's Message-ID, thread_refs the References msg-ids
-- oldest first, space separated (the last is in_reply_to); reply_depth 0 for warmup
-- mail, 1 for a reply to it, ... NULL subject: granted before this migration.
ALTER TABLE sends
    ADD COLUMN subject     text,
    ADD COLUMN in_reply_to text CHECK (length(in_reply_to) <= 250),
    ADD COLUMN thread_refs text CHECK (length(thread_refs) <= 20 * 251),
    ADD COLUMN reply_depth smallint NOT NULL DEFAULT 0 CHECK (reply_depth BETWEEN 0 AND 10),
    ADD CONSTRAINT sends_reply_complete CHECK ((in_reply_to IS NULL) = (thread_refs IS NULL));

-- A reply waiting for a slot: mailbox_id (the recipient of the parent) answers
-- recipient_id (its sender) not before due_at. The grant gives it the next slot of
-- mailbox_id at or after due_at that its caps, window and cooldown allow (api/lease/
-- lease_reply.c); send_id is that slot. One reply per received message (parent_send_id
-- unique). A reply that found no slot within reply_ttl of its due time is not sent.
CREATE TABLE pending_replies (
    id             bigserial PRIMARY KEY,
    mailbox_id     bigint NOT NULL REFERENCES mailboxes (id),
    recipient_id   bigint NOT NULL REFERENCES mailboxes (id),
    parent_send_id bigint NOT NULL UNIQUE,
    due_at         timestamptz NOT NULL,
    subject        text NOT NULL,
    in_reply_to    text NOT NULL CHECK (length(in_reply_to) <= 250),
    thread_refs    text NOT NULL CHECK (length(thread_refs) <= 20 * 251),
    reply_depth    smallint NOT NULL CHECK (reply_depth BETWEEN 1 AND 10),
    send_id        bigint,
    created_at     timestamptz NOT NULL DEFAULT kiln_now()
);
CREATE INDEX pending_replies_due_idx ON pending_replies (mailbox_id, due_at)
    WHERE send_id IS NULL;

-- Schedules the reply to a received send: from its recipient back to its sender, subject
-- "Re: " + the parent's (once: a "Re:" is not doubled), In-Reply-To the parent's
-- Message-ID, References the parent's References + its Message-ID, capped at 20 ids
-- (the first kept, then the newest, as RFC 5322 3.6.4 allows trimming). Returns the
-- pending reply's id; NULL when the parent is unknown, has no recipient or Message-ID,
-- is already answered, or is deeper than 9.
CREATE FUNCTION kiln_schedule_reply(parent bigint, due timestamptz) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    WITH p AS (
        SELECT s.id, s.mailbox_id, s.recipient_id, s.message_id, s.reply_depth,
               coalesce(nullif(s.subject, ''), 'your note') AS subject,
               string_to_array(coalesce(s.thread_refs, ''), ' ') || s.message_id AS refs
        FROM sends s
        WHERE s.id = parent AND s.recipient_id IS NOT NULL AND s.message_id IS NOT NULL
          AND s.reply_depth < 10),
    r AS (SELECT p.*, array_remove(p.refs, '') AS ids FROM p),
    capped AS (
        SELECT r.*, CASE WHEN cardinality(r.ids) <= 20 THEN r.ids
                         ELSE r.ids[1:1] || r.ids[cardinality(r.ids) - 18:cardinality(r.ids)]
                    END AS keep
        FROM r)
    INSERT INTO pending_replies (mailbox_id, recipient_id, parent_send_id, due_at, subject,
                                 in_reply_to, thread_refs, reply_depth)
    SELECT c.recipient_id, c.mailbox_id, c.id, due,
           CASE WHEN c.subject ~* '^re:' THEN c.subject ELSE 'Re: ' || c.subject END,
           c.message_id, array_to_string(c.keep, ' '), c.reply_depth + 1
    FROM capped c
    ON CONFLICT (parent_send_id) DO NOTHING
    RETURNING id
$$;

-- The UTC offsets of an IANA zone from a time on, as the spans api/engage/engage.h reads
-- (from_s, offset_s): the offset at from_ts's hour, then each change within hours, found
-- on a 15-minute grid from that hour (every zone's transitions fall on a quarter hour, so
-- the grid hits them exactly).
CREATE FUNCTION kiln_tz_spans(tz text, from_ts timestamptz, hours integer)
RETURNS TABLE (from_s bigint, offset_s integer)
LANGUAGE sql STABLE AS $$
    WITH g AS (
        SELECT t, extract(epoch FROM (t AT TIME ZONE tz) - (t AT TIME ZONE 'UTC'))::integer AS off
        FROM generate_series(date_trunc('hour', from_ts), from_ts + make_interval(hours => hours),
                             interval '15 minutes') AS t),
    c AS (SELECT t, off, lag(off) OVER (ORDER BY t) AS prev FROM g)
    SELECT extract(epoch FROM t)::bigint, off FROM c
    WHERE prev IS NULL OR prev <> off
    ORDER BY t
$$;

-- What the engagement policy (api/engage) needs beside a found event, for received sends:
-- the recipient's plan's engagement members, the send's reply depth, and the recipient's
-- time zone spans from from_ts over 96 hours (a dwell, the quiet hours, a reply's dwell:
-- everything the policy schedules but the prune falls inside), computed once per zone.
-- Rows in the order of send_ids; unknown sends (or without a recipient) are left out.
CREATE FUNCTION kiln_engage_inputs(send_ids bigint[], from_ts timestamptz)
RETURNS TABLE (send_id bigint, recipient_id bigint, open_rate real, important_rate real,
               rescue_rate real, reply_rate real, untouched_rate real,
               dwell_median_min integer, dwell_max_min integer, quiet_start_hour integer,
               quiet_end_hour integer, retention_days integer, max_reply_depth integer,
               reply_depth smallint, tz_from_s bigint[], tz_offset_s integer[])
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT x.ord, s.id, s.recipient_id, s.reply_depth, m.timezone, p.open_rate,
               p.important_rate, p.rescue_rate, p.reply_rate, p.untouched_rate,
               p.dwell_median_min, p.dwell_max_min, p.quiet_start_hour, p.quiet_end_hour,
               p.retention_days, p.max_reply_depth
        FROM unnest(send_ids) WITH ORDINALITY AS x (id, ord)
        JOIN sends s ON s.id = x.id
        JOIN mailboxes m ON m.id = s.recipient_id
        JOIN users u ON u.id = m.user_id
        JOIN plans p ON p.id = u.plan_id),
    z AS (
        SELECT d.tz, array_agg(sp.from_s ORDER BY sp.from_s) AS f,
               array_agg(sp.offset_s ORDER BY sp.from_s) AS o
        FROM (SELECT DISTINCT timezone AS tz FROM r) d
        CROSS JOIN LATERAL kiln_tz_spans(d.tz, from_ts, 96) sp
        GROUP BY d.tz)
    SELECT r.id, r.recipient_id, r.open_rate, r.important_rate, r.rescue_rate, r.reply_rate,
           r.untouched_rate, r.dwell_median_min, r.dwell_max_min, r.quiet_start_hour,
           r.quiet_end_hour, r.retention_days, r.max_reply_depth, r.reply_depth, z.f, z.o
    FROM r JOIN z ON z.tz = r.timezone
    ORDER BY r.ord
$$;
