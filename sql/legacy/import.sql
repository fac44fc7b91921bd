-- Imports the legacy system's send logs into kiln, normalizing the status column on the
-- way in. The legacy writer stored 'SENT' while its readers counted 'sent' (and other
-- paths wrote 'Sent', ' sent ', 'REPLIED'...), so its own counts were wrong; here every
-- spelling of a delivered send counts as one sent mail for that mailbox's local day.
--
-- Usage:  psql "$KILN_DB" -v ON_ERROR_STOP=1 -v csv=/path/to/legacy_logs.csv -f sql/legacy/import.sql
-- Input:  CSV with a header: mailbox_email,recipient_email,status,sent_at,message_id (may be empty)
--         (sent_at: any timestamp PostgreSQL accepts; without a zone it is taken as UTC).
-- Re-running with the same file changes nothing: each row is imported once (by content hash).
-- Rows whose mailbox is not registered in kiln are reported and left out.

\set ON_ERROR_STOP 1
BEGIN;

CREATE TABLE IF NOT EXISTS legacy_imports (
    row_hash    text PRIMARY KEY,
    imported_at timestamptz NOT NULL DEFAULT now()
);

CREATE TEMP TABLE legacy_stage (
    mailbox_email   text,
    recipient_email text,
    status          text,
    sent_at         text,
    message_id      text
) ON COMMIT DROP;

-- \copy does not interpolate variables itself: build the command, then run it.
\set copy_cmd '\\copy legacy_stage FROM ' :'csv' ' WITH (FORMAT csv, HEADER true)'
:copy_cmd

-- One normalized row per input row. Status spellings: any case, surrounding blanks.
CREATE TEMP TABLE legacy_norm ON COMMIT DROP AS
SELECT md5(concat_ws('|', s.mailbox_email, s.recipient_email, s.status, s.sent_at, s.message_id))
           AS row_hash,
       m.id AS mailbox_id, r.id AS recipient_id, m.timezone,
       (CASE WHEN s.sent_at ~ '([+-]\d\d(:?\d\d)?|Z)$' THEN s.sent_at::timestamptz
             ELSE (s.sent_at::timestamp AT TIME ZONE 'UTC') END) AS sent_at,
       CASE lower(btrim(s.status))
           WHEN 'sent' THEN 'sent' WHEN 'delivered' THEN 'sent' WHEN 'success' THEN 'sent'
           WHEN 'replied' THEN 'sent'
           WHEN 'failed' THEN 'failed' WHEN 'error' THEN 'failed' WHEN 'bounced' THEN 'failed'
           ELSE NULL END AS status,
       lower(btrim(s.status)) = 'replied' AS replied,
       nullif(btrim(s.message_id), '') AS message_id,
       s.mailbox_email
FROM legacy_stage s
LEFT JOIN mailboxes m ON lower(m.address) = lower(btrim(s.mailbox_email)) AND m.deleted_at IS NULL
LEFT JOIN mailboxes r ON lower(r.address) = lower(btrim(s.recipient_email)) AND r.deleted_at IS NULL;

\echo 'rows read, by outcome:'
SELECT CASE WHEN mailbox_id IS NULL THEN 'skipped: mailbox not registered'
            WHEN status IS NULL THEN 'skipped: not a send (pending/processing/unknown status)'
            WHEN row_hash IN (SELECT row_hash FROM legacy_imports) THEN 'skipped: imported before'
            ELSE 'imported as ' || status END AS outcome, count(*)
FROM legacy_norm GROUP BY 1 ORDER BY 1;

CREATE TEMP TABLE legacy_new ON COMMIT DROP AS
SELECT DISTINCT ON (row_hash) *, (sent_at AT TIME ZONE timezone)::date AS day
FROM legacy_norm
WHERE mailbox_id IS NOT NULL AND status IS NOT NULL
  AND row_hash NOT IN (SELECT row_hash FROM legacy_imports);

INSERT INTO legacy_imports (row_hash) SELECT row_hash FROM legacy_new;

INSERT INTO sends (mailbox_id, recipient_id, day, scheduled_at, status, detail, message_id,
                   created_at, reported_at)
SELECT mailbox_id, recipient_id, day, sent_at, status::send_status, 'imported from legacy logs',
       message_id, sent_at, sent_at
FROM legacy_new;

INSERT INTO mailbox_days AS d (mailbox_id, day, sent, failed, replied)
SELECT mailbox_id, day, count(*) FILTER (WHERE status = 'sent'),
       count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE replied)
FROM legacy_new GROUP BY mailbox_id, day
ON CONFLICT (mailbox_id, day) DO UPDATE
SET sent = d.sent + excluded.sent, failed = d.failed + excluded.failed,
    replied = d.replied + excluded.replied;

-- the last send lives on the leasing row since 036 (mailboxes.last_send_at: before it)
UPDATE mailbox_leasing ml SET last_send_at = greatest(ml.last_send_at, m.last_send_at, x.last)
FROM (SELECT mailbox_id, max(sent_at) AS last FROM legacy_new WHERE status = 'sent'
      GROUP BY mailbox_id) x, mailboxes m
WHERE ml.mailbox_id = x.mailbox_id AND m.id = x.mailbox_id;

COMMIT;
