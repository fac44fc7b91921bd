-- The inbox side, registration (issue 13): IMAP access beside SMTP, and the mailbox's
-- inbox state.
--
-- IMAP access is optional and all of a piece: host, port, security, username, the sealed
-- secret and its kind are all set or all NULL (mailboxes_imap_complete). The secret is
-- sealed like smtp_secret (AES-256-GCM under the server key) with additional data naming
-- its kind ("kiln/imap/password" or "kiln/imap/oauth_token"), so it never opens as an SMTP
-- secret nor a password as a token. Security takes the SMTP type's three values.
--
-- inbox: 'unverified' until an agent has logged in with the access (and again after the
-- access changes), 'ok' while it works, 'error' with inbox_error (the last error) when it
-- fails. Existing mailboxes migrate without IMAP, 'unverified': constant defaults, so
-- PostgreSQL 11+ adds the columns without rewriting the table.
CREATE TYPE inbox_state AS ENUM ('unverified', 'ok', 'error');
CREATE TYPE imap_auth AS ENUM ('password', 'oauth_token');

ALTER TABLE mailboxes
    ADD COLUMN imap_host text,
    ADD COLUMN imap_port integer CHECK (imap_port BETWEEN 1 AND 65535),
    ADD COLUMN imap_security smtp_security,
    ADD COLUMN imap_username text,
    ADD COLUMN imap_auth imap_auth,
    ADD COLUMN imap_secret bytea,          -- AES-256-GCM sealed, never returned by a GET
    ADD COLUMN imap_allow_plaintext_auth boolean NOT NULL DEFAULT false,
    ADD COLUMN inbox inbox_state NOT NULL DEFAULT 'unverified',
    ADD COLUMN inbox_error text,
    ADD COLUMN inbox_error_at timestamptz,
    ADD CONSTRAINT mailboxes_imap_complete CHECK (
        num_nulls(imap_host, imap_port, imap_security, imap_username, imap_auth,
                  imap_secret) IN (0, 6));
