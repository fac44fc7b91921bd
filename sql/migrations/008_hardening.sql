-- Issue 10 hardening, the schema side.
--
-- smtp.allow_plaintext_auth: kiln-agent refuses AUTH on a connection without TLS unless
-- the mailbox allows it explicitly (loopback test servers do). Existing mailboxes get
-- false: a constant default, so PostgreSQL 11+ adds the column without a rewrite.
ALTER TABLE mailboxes ADD COLUMN smtp_allow_plaintext_auth boolean NOT NULL DEFAULT false;

-- kiln_mailboxes{state="disabled"} counts deleted mailboxes; mailbox_today (the metrics
-- snapshot's source) only holds live ones, so the snapshot counts these separately.
CREATE INDEX mailboxes_deleted_idx ON mailboxes (id) WHERE deleted_at IS NOT NULL;
