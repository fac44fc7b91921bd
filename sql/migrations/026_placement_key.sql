-- Inbox event ingestion, one index entry fewer per placement (issue 13, `make bench
-- BENCH=ingest`): placements had two indexes, the key (send_id) and the senders' page
-- (mailbox_id, send_id; GET /api/mailboxes/{id}/placement). A send has one sender, so the
-- pair is as unique as the send id, and every reader that probes a send's placement knows
-- the send's sender (the report from the send it verified, the missing sweep and the poll
-- class from the sends row): the pair becomes the key and the second index goes. The
-- constraint keeps its name (placements_pkey: a lost insert race is recognised by it,
-- api/lease/inbox_report.c). Built once from the rows there are (no table rewrite).
CREATE UNIQUE INDEX placements_sender_send_key ON placements (mailbox_id, send_id);
ALTER TABLE placements DROP CONSTRAINT placements_pkey;
DROP INDEX placements_mailbox_send_idx;
ALTER TABLE placements ADD CONSTRAINT placements_pkey
    PRIMARY KEY USING INDEX placements_sender_send_key;

-- kiln_now() reads kiln_clock (the test clock): as a column default or in a per-row
-- expression it runs once per row written. The report's statements now read it once
-- (api/lease/inbox_store.c) and write the columns explicitly; 017's replies likewise.
-- Otherwise as in 017.
CREATE OR REPLACE FUNCTION kiln_schedule_replies(parents bigint[], dues bigint[]) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    WITH k AS MATERIALIZED (SELECT kiln_now() AS now),
    r AS (
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
                                     in_reply_to, thread_refs, reply_depth, created_at)
        SELECT r.recipient_id, r.mailbox_id, r.id, r.due,
               CASE WHEN r.subject ~* '^re:' THEN r.subject ELSE 'Re: ' || r.subject END,
               r.message_id,
               array_to_string(CASE WHEN cardinality(r.ids) <= 20 THEN r.ids
                                    ELSE r.ids[1:1] || r.ids[cardinality(r.ids) - 18:cardinality(r.ids)]
                               END, ' '),
               r.reply_depth + 1, k.now
        FROM r CROSS JOIN k ORDER BY r.ord
        ON CONFLICT (parent_send_id) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM ins
$$;
