-- Benchmark data for GET /api/mailboxes/{id}/health: 1,000 users x 100 mailboxes =
-- 100,000 mailboxes, each with 30 days of placement rollups (two recipient providers a
-- day: 6,000,000 placement_days rows) and a judged mailbox_health row. Written straight
-- into PostgreSQL (generate_series) for speed; used by tests/bench/health/run.sh.
\set ON_ERROR_STOP 1
INSERT INTO plans (name, ramp_start, ramp_step, daily_max, max_mailboxes, user_hourly_cap)
VALUES ('bench', 5, 2, 30, 100000, 100000);
INSERT INTO users (name, plan_id, timezone)
SELECT 'user' || u, (SELECT id FROM plans WHERE name = 'bench'), 'UTC'
FROM generate_series(1, 1000) u;
INSERT INTO mailboxes (user_id, address, display_name, smtp_host, smtp_port, smtp_security,
                       smtp_username, smtp_secret, smtp_allow_plaintext_auth, timezone,
                       warmup_start)
SELECT u.id, 'm' || i || '@' || u.name || '.test', 'M ' || i, '127.0.0.1', 2525, 'plain',
       'm' || i || '@' || u.name || '.test', '\x6b31'::bytea, true, u.timezone,
       current_date - 40
FROM users u CROSS JOIN generate_series(1, 100) i;
-- The rollups in key order (as the trigger would have built them day by day).
INSERT INTO placement_days (mailbox_id, day, provider, inbox, junk, other, missing)
SELECT m.id, (kiln_now() AT TIME ZONE 'UTC')::date - d,
       (enum_range(NULL::mail_provider))[1 + (m.id + d + k) % 4],
       8 + (m.id + d) % 5, (m.id * 7 + d) % 3, (d % 7 = 0)::int, (m.id + d) % 2
FROM mailboxes m CROSS JOIN generate_series(0, 29) d CROSS JOIN generate_series(0, 1) k
ORDER BY 1, 2, 3;
INSERT INTO mailbox_health (mailbox_id, band, score, reason, judged_at, dirty)
SELECT id, (ARRAY['good', 'good', 'good', 'watch', 'quarantine']::health_band[])[1 + id % 5],
       60 + id % 40, 'within every threshold', kiln_now(), false
FROM mailboxes;
VACUUM ANALYZE placement_days;
VACUUM ANALYZE mailbox_health;
VACUUM ANALYZE mailboxes;
