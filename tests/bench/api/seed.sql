-- Benchmark data: 1,000 users × 100 mailboxes = 100,000 mailboxes with a day of history
-- (yesterday: every mailbox sent its target, one sends row each; today: partly sent).
-- Used by tests/bench/api/run.sh; written straight into PostgreSQL for speed (the API's
-- own registration rate is measured separately).
\set ON_ERROR_STOP 1
INSERT INTO plans (name, ramp_start, ramp_step, daily_max, max_mailboxes, user_hourly_cap)
VALUES ('bench', 5, 2, 30, 100000, 100000);
INSERT INTO users (name, plan_id, timezone)
SELECT 'user' || u, (SELECT id FROM plans WHERE name = 'bench'),
       (ARRAY['Europe/Berlin','America/New_York','Asia/Tokyo','UTC','Australia/Sydney'])[1 + u % 5]
FROM generate_series(1, 1000) u;
INSERT INTO mailboxes (user_id, address, display_name, smtp_host, smtp_port, smtp_security,
                       smtp_username, smtp_secret, smtp_allow_plaintext_auth, timezone,
                       warmup_start)
SELECT u.id, 'm' || i || '@' || u.name || '.test', 'M ' || i, '127.0.0.1', 2525, 'plain',
       'm' || i || '@' || u.name || '.test', '\x6b31'::bytea, true, u.timezone,
       (kiln_now() AT TIME ZONE u.timezone)::date - (u.id % 20)::int
FROM users u CROSS JOIN generate_series(1, 100) i;
-- yesterday, complete
INSERT INTO mailbox_days (mailbox_id, day, sent)
SELECT id, local_day - 1, kiln_target(5, 2, 30, false, NULL, warmup_start, local_day - 1)
FROM (SELECT m.id, m.warmup_start, (kiln_now() AT TIME ZONE m.timezone)::date AS local_day
      FROM mailboxes m) x;
INSERT INTO sends (mailbox_id, recipient_id, day, scheduled_at, status, smtp_code, latency_ms,
                   created_at, reported_at)
SELECT d.mailbox_id, 1 + (d.mailbox_id * 7919 + g) % 100000, d.day,
       kiln_now() - interval '1 day' + g * interval '20 minutes', 'sent', 250, 40,
       kiln_now() - interval '1 day', kiln_now() - interval '1 day'
FROM mailbox_days d CROSS JOIN LATERAL generate_series(1, d.sent) g;
-- today, partly sent (about a third of the mailboxes are done)
INSERT INTO mailbox_days (mailbox_id, day, sent, failed)
SELECT id, local_day, CASE WHEN id % 3 = 0 THEN t ELSE t / 3 END, (id % 50 = 0)::int
FROM (SELECT m.id, (kiln_now() AT TIME ZONE m.timezone)::date AS local_day,
             kiln_target(5, 2, 30, false, NULL, m.warmup_start,
                         (kiln_now() AT TIME ZONE m.timezone)::date) AS t
      FROM mailboxes m) x;
VACUUM ANALYZE;
