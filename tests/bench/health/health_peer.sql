-- pgbench script: the two statements GET /api/mailboxes/{id}/health runs (api/routes/
-- h_health.c: Q_HEALTH and Q_HEALTH_WINDOWS, same SQL) for a random mailbox, straight
-- into PostgreSQL: no HTTP, no FastCGI, no JSON. The peer the endpoint is compared with.
-- (The second statement's date is a parameter in kiln: the first one's last column;
-- current_date here, as cheap.)
\set id random(:first, :last)
SELECT m.id AS mailbox_id, h.score, coalesce(h.band::text, 'new') AS band,
       coalesce(h.reason, 'nothing to judge yet') AS reason,
       kiln_iso(coalesce(h.band_since, m.active_since)) AS band_since,
       kiln_iso(h.judged_at) AS judged_at,
       CASE WHEN m.quarantine_until > c.now THEN kiln_iso(m.quarantine_until) END AS quarantine_until,
       (c.now AT TIME ZONE 'UTC')::date::text AS today
FROM (SELECT kiln_now() AS now OFFSET 0) c CROSS JOIN mailboxes m
LEFT JOIN mailbox_health h ON h.mailbox_id = m.id
WHERE m.id = :id AND m.deleted_at IS NULL AND (0::bigint = 0 OR m.user_id = 0);
SELECT d.provider::text,
       coalesce(sum(inbox) FILTER (WHERE day > current_date - 1), 0), coalesce(sum(junk) FILTER (WHERE day > current_date - 1), 0),
       coalesce(sum(other) FILTER (WHERE day > current_date - 1), 0), coalesce(sum(missing) FILTER (WHERE day > current_date - 1), 0),
       coalesce(sum(inbox) FILTER (WHERE day > current_date - 7), 0), coalesce(sum(junk) FILTER (WHERE day > current_date - 7), 0),
       coalesce(sum(other) FILTER (WHERE day > current_date - 7), 0), coalesce(sum(missing) FILTER (WHERE day > current_date - 7), 0),
       coalesce(sum(inbox) FILTER (WHERE day > current_date - 30), 0), coalesce(sum(junk) FILTER (WHERE day > current_date - 30), 0),
       coalesce(sum(other) FILTER (WHERE day > current_date - 30), 0), coalesce(sum(missing) FILTER (WHERE day > current_date - 30), 0)
FROM placement_days d WHERE d.mailbox_id = :id AND d.day > current_date - 30 AND d.day <= current_date
GROUP BY d.provider;
