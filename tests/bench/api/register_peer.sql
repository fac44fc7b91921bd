-- pgbench script: the same row as POST /api/mailboxes, inserted directly (no HTTP, no
-- validation, no encryption): the floor the API's registration rate is compared with.
\set n random(1, 1000000000)
\set user_id random(:first, :last)
INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_security, smtp_username,
                       smtp_secret, timezone, warmup_start)
VALUES (:user_id, 'peer-' || :client_id || '-' || :n || '-' || random() || '@bench-peer.test',
        'smtp.bench-peer.test', 587, 'starttls', 'u', '\x6b31', 'UTC', current_date);
