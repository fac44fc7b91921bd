-- The peer of the scale simulation: the bare PostgreSQL job queue over the same number of
-- rows, one job per mailbox in due order. Claim 100 with FOR UPDATE SKIP LOCKED, then
-- complete them: the least a Postgres-backed queue writes per job (two row versions).
BEGIN;
WITH c AS (SELECT id FROM peer_q WHERE status = 0 ORDER BY due LIMIT 100 FOR UPDATE SKIP LOCKED)
UPDATE peer_q q SET status = 1, owner = :client_id FROM c WHERE q.id = c.id;
COMMIT;
UPDATE peer_q SET status = 2, done_at = now() WHERE owner = :client_id AND status = 1;
