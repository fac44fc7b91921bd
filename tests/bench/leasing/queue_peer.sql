-- pgbench script: the bare PostgreSQL-backed queue the lease -> report cycle is compared
-- with (issue 15): claim 100 jobs FOR UPDATE SKIP LOCKED in one transaction, complete
-- them in another; one pgbench transaction = 100 jobs. No pacing, caps, recipients,
-- content or HTTP: the limit of a queue on this PostgreSQL.
BEGIN;
UPDATE bench_queue q SET state = 1, owner = :client_id
FROM (SELECT id FROM bench_queue WHERE state = 0 ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) c
WHERE q.id = c.id;
COMMIT;
UPDATE bench_queue SET state = 2 WHERE owner = :client_id AND state = 1;
