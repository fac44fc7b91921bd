-- pgbench script: the statement GET /api/mailboxes/{id}/health runs (api/routes/h_health.c:
-- Q_HEALTH, same SQL: the judged state and the 1/7/30-day counts per provider in one
-- statement) for a random mailbox, straight into PostgreSQL: no HTTP, no FastCGI, no
-- JSON. The peer the endpoint is compared with.
\set id random(:first, :last)
SELECT m.id AS mailbox_id, h.score, coalesce(h.band::text, 'new') AS band,
       coalesce(h.reason, 'nothing to judge yet') AS reason,
       kiln_iso(coalesce(h.band_since, m.active_since)) AS band_since,
       kiln_iso(h.judged_at) AS judged_at,
       CASE WHEN m.quarantine_until > c.now THEN kiln_iso(m.quarantine_until) END AS quarantine_until,
       w.*
FROM (SELECT now, (now AT TIME ZONE 'UTC')::date AS today FROM (SELECT kiln_now() AS now OFFSET 0) c0) c
CROSS JOIN mailboxes m LEFT JOIN mailbox_health h ON h.mailbox_id = m.id
CROSS JOIN LATERAL (SELECT
       coalesce(sum(inbox) FILTER (WHERE provider = 'gmail' AND day > c.today - 1), 0), coalesce(sum(junk) FILTER (WHERE provider = 'gmail' AND day > c.today - 1), 0), coalesce(sum(other) FILTER (WHERE provider = 'gmail' AND day > c.today - 1), 0), coalesce(sum(missing) FILTER (WHERE provider = 'gmail' AND day > c.today - 1), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'gmail' AND day > c.today - 7), 0), coalesce(sum(junk) FILTER (WHERE provider = 'gmail' AND day > c.today - 7), 0), coalesce(sum(other) FILTER (WHERE provider = 'gmail' AND day > c.today - 7), 0), coalesce(sum(missing) FILTER (WHERE provider = 'gmail' AND day > c.today - 7), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'gmail' AND day > c.today - 30), 0), coalesce(sum(junk) FILTER (WHERE provider = 'gmail' AND day > c.today - 30), 0), coalesce(sum(other) FILTER (WHERE provider = 'gmail' AND day > c.today - 30), 0), coalesce(sum(missing) FILTER (WHERE provider = 'gmail' AND day > c.today - 30), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'outlook' AND day > c.today - 1), 0), coalesce(sum(junk) FILTER (WHERE provider = 'outlook' AND day > c.today - 1), 0), coalesce(sum(other) FILTER (WHERE provider = 'outlook' AND day > c.today - 1), 0), coalesce(sum(missing) FILTER (WHERE provider = 'outlook' AND day > c.today - 1), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'outlook' AND day > c.today - 7), 0), coalesce(sum(junk) FILTER (WHERE provider = 'outlook' AND day > c.today - 7), 0), coalesce(sum(other) FILTER (WHERE provider = 'outlook' AND day > c.today - 7), 0), coalesce(sum(missing) FILTER (WHERE provider = 'outlook' AND day > c.today - 7), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'outlook' AND day > c.today - 30), 0), coalesce(sum(junk) FILTER (WHERE provider = 'outlook' AND day > c.today - 30), 0), coalesce(sum(other) FILTER (WHERE provider = 'outlook' AND day > c.today - 30), 0), coalesce(sum(missing) FILTER (WHERE provider = 'outlook' AND day > c.today - 30), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'yahoo' AND day > c.today - 1), 0), coalesce(sum(junk) FILTER (WHERE provider = 'yahoo' AND day > c.today - 1), 0), coalesce(sum(other) FILTER (WHERE provider = 'yahoo' AND day > c.today - 1), 0), coalesce(sum(missing) FILTER (WHERE provider = 'yahoo' AND day > c.today - 1), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'yahoo' AND day > c.today - 7), 0), coalesce(sum(junk) FILTER (WHERE provider = 'yahoo' AND day > c.today - 7), 0), coalesce(sum(other) FILTER (WHERE provider = 'yahoo' AND day > c.today - 7), 0), coalesce(sum(missing) FILTER (WHERE provider = 'yahoo' AND day > c.today - 7), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'yahoo' AND day > c.today - 30), 0), coalesce(sum(junk) FILTER (WHERE provider = 'yahoo' AND day > c.today - 30), 0), coalesce(sum(other) FILTER (WHERE provider = 'yahoo' AND day > c.today - 30), 0), coalesce(sum(missing) FILTER (WHERE provider = 'yahoo' AND day > c.today - 30), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'other' AND day > c.today - 1), 0), coalesce(sum(junk) FILTER (WHERE provider = 'other' AND day > c.today - 1), 0), coalesce(sum(other) FILTER (WHERE provider = 'other' AND day > c.today - 1), 0), coalesce(sum(missing) FILTER (WHERE provider = 'other' AND day > c.today - 1), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'other' AND day > c.today - 7), 0), coalesce(sum(junk) FILTER (WHERE provider = 'other' AND day > c.today - 7), 0), coalesce(sum(other) FILTER (WHERE provider = 'other' AND day > c.today - 7), 0), coalesce(sum(missing) FILTER (WHERE provider = 'other' AND day > c.today - 7), 0),
       coalesce(sum(inbox) FILTER (WHERE provider = 'other' AND day > c.today - 30), 0), coalesce(sum(junk) FILTER (WHERE provider = 'other' AND day > c.today - 30), 0), coalesce(sum(other) FILTER (WHERE provider = 'other' AND day > c.today - 30), 0), coalesce(sum(missing) FILTER (WHERE provider = 'other' AND day > c.today - 30), 0)
FROM placement_days WHERE mailbox_id = m.id AND day > c.today - 30 AND day <= c.today) w
WHERE m.id = :id AND m.deleted_at IS NULL AND (0::bigint = 0 OR m.user_id = 0);
