-- Inbox event ingestion at scale (issue 13, `make bench BENCH=ingest`): what a report of
-- found events costs PostgreSQL per event, cut where it bought nothing.

-- Nothing reads placements by (sender, decided_at) or (recipient, decided_at) since the
-- health and metrics read the rollups (015): two index entries fewer per placement. The
-- placement page reads placements_mailbox_send_idx; the sweeps read the primary key.
DROP INDEX placements_mailbox_idx;
DROP INDEX placements_recipient_idx;

-- The replies to many received sends in one statement (kiln_schedule_reply once per
-- parent planned and ran its statement per row: a fifth of a report's time). Same rows
-- as kiln_schedule_reply (012): from the recipient back to the sender, "Re: " once,
-- In-Reply-To the parent's Message-ID, References capped at 20 ids; a parent unknown,
-- without recipient or Message-ID, at depth 10 or already answered is skipped, and of a
-- parent listed twice the first counts. dues: epoch seconds. Returns how many were
-- scheduled.
CREATE FUNCTION kiln_schedule_replies(parents bigint[], dues bigint[]) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    WITH r AS (
        SELECT x.ord, to_timestamp(x.due) AS due, s.id, s.mailbox_id, s.recipient_id,
               s.message_id, s.reply_depth,
               coalesce(nullif(s.subject, ''), 'your note') AS subject,
               array_remove(string_to_array(coalesce(s.thread_refs, ''), ' ') || s.message_id,
                            '') AS ids
        FROM unnest(parents, dues) WITH ORDINALITY AS x (parent, due, ord)
        JOIN sends s ON s.id = x.parent
        WHERE s.recipient_id IS NOT NULL AND s.message_id IS NOT NULL AND s.reply_depth < 10),
    ins AS (
        INSERT INTO pending_replies (mailbox_id, recipient_id, parent_send_id, due_at, subject,
                                     in_reply_to, thread_refs, reply_depth)
        SELECT r.recipient_id, r.mailbox_id, r.id, r.due,
               CASE WHEN r.subject ~* '^re:' THEN r.subject ELSE 'Re: ' || r.subject END,
               r.message_id,
               array_to_string(CASE WHEN cardinality(r.ids) <= 20 THEN r.ids
                                    ELSE r.ids[1:1] || r.ids[cardinality(r.ids) - 18:cardinality(r.ids)]
                               END, ' '),
               r.reply_depth + 1
        FROM r ORDER BY r.ord
        ON CONFLICT (parent_send_id) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM ins
$$;

-- The pool's placement rollups were sharded by sender id % 16, so every report (hundreds
-- of senders) locked all 16 shards of each (day, provider) row until it committed, and
-- concurrent reports queued behind each other. Sharded by the writing backend instead:
-- a report touches one shard per (day, provider) and concurrent reports (one backend
-- each) rarely share it. Readers sum the shards, as before. Otherwise as in 015.
CREATE OR REPLACE FUNCTION kiln_placements_rollup() RETURNS trigger
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
    SELECT (decided_at AT TIME ZONE 'UTC')::date, provider, pg_backend_pid() % 16,
           count(*) FILTER (WHERE placement = 'inbox'), count(*) FILTER (WHERE placement = 'junk'),
           count(*) FILTER (WHERE placement = 'other'),
           count(*) FILTER (WHERE placement = 'missing')
    FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
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
