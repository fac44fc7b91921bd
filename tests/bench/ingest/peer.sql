-- pgbench script, the peer of tests/bench/ingest/run.sh. One transaction writes what one
-- report of "batch" found events writes in kiln (api/lease/inbox_report.c), straight
-- into PostgreSQL (no HTTP, no JSON, no MAC check, no policy, no idempotency reads). The
-- same rows into the same tables: the messages (a first find is no sighting since 023),
-- the placements (whose trigger updates the rollups and queues the senders' health), the
-- placement counters, the actions (one row per planned message, the rest of its plan in
-- the row's rest: as many rows per event as kiln wrote in the same run, "acts_per_1000",
-- and as many planned actions in rest per row, "rest_per_1000") with their counters, and
-- the replies
-- (the same share, "replies_per_1000", through kiln_schedule_replies as kiln does). The
-- clock (kiln_now(), a read of kiln_clock) is read once per statement and the time columns
-- written explicitly, as kiln's statements do since 026. Each
-- transaction takes the next "batch" sends of the peer's half (a sequence numbers them);
-- role and flags follow the send id as in driver.py. No pgbench variables in comments:
-- pgbench would bind them as parameters of the next statement.
SELECT nextval('bench_peer_batch') - 1 AS b \gset
\set lo :first + :b * :batch
\set hi :lo + :batch
BEGIN;
WITH x AS (
  SELECT s.id, s.mailbox_id AS sender, s.recipient_id AS mb,
         CASE WHEN s.id % 20 < 3 THEN 'junk' WHEN s.id % 20 = 3 THEN 'other' ELSE 'inbox' END AS role,
         CASE WHEN s.id % 20 < 3 THEN 'Junk' WHEN s.id % 20 = 3 THEN 'Archive' ELSE 'INBOX' END AS folder,
         CASE WHEN s.id % 3 = 0 THEN '{\\Seen}' ELSE '{}' END::text[] AS flags,
         (enum_range(NULL::mail_provider))[1 + s.recipient_id % 4] AS provider,
         s.id % 4294967295 + 1 AS uid
  FROM sends s WHERE s.id >= :lo::bigint AND s.id < :hi::bigint AND s.id < :last::bigint),
k AS MATERIALIZED (SELECT kiln_now() AS now),
im AS (INSERT INTO inbox_messages (mailbox_id, send_id, folder, role, uidvalidity, uid, flags,
                                   found_at)
  SELECT mb, id, folder, role::folder_role, 1, uid, flags, k.now FROM x, k ORDER BY mb, id),
pl AS (INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, folder, found_at,
                               decided_at, provider, spf, dkim, dmarc)
  SELECT id, sender, mb, role::placement_folder, folder, k.now, k.now, provider, 'pass', 'pass',
         'pass' FROM x, k ORDER BY sender, id RETURNING provider, placement),
pc AS (INSERT INTO counters (name, label, shard, value)
  SELECT 'placement', provider::text || ':' || placement::text, (:b::bigint % 16)::smallint, count(*)
  FROM pl GROUP BY 2 ORDER BY 2
  ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value),
ac AS (INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, flags,
                                  target, not_before, rest, created_at)
  SELECT mb, id, (ARRAY['mark', 'file', 'prune', 'rescue']::inbox_action_kind[])[1 + id % 4],
         folder, 1, uid, CASE WHEN id % 4 = 0 THEN '{\\Seen}' ELSE '{}' END::text[],
         CASE id % 4 WHEN 1 THEN 'warmup' WHEN 3 THEN 'inbox' END::folder_role,
         k.now + interval '1 hour',
         (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                     'k', (ARRAY['file', 'prune', 'mark'])[g], 't', CASE g WHEN 1 THEN 'warmup' END,
                     'at', 1800000000 + g * 3600)) ORDER BY g)
          FROM generate_series(1, 3) g WHERE g * 1000 <= :rest_per_1000::int + (id * 13) % 1000),
         k.now
  FROM x, k WHERE (id * 7) % 1000 < :acts_per_1000::int ORDER BY id RETURNING kind),
acn AS (INSERT INTO counters (name, label, shard, value)
  SELECT 'actions', kind::text || ':' || 'issued', (:b::bigint % 16)::smallint, count(*) FROM ac GROUP BY 2
  ORDER BY 2 ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value)
SELECT kiln_schedule_replies(coalesce(array_agg(id ORDER BY id), '{}'),
                             coalesce(array_agg(extract(epoch FROM k.now)::bigint + 7200 ORDER BY id), '{}'))
FROM x, k WHERE id % 1000 < :replies_per_1000::int;
UPDATE mailbox_leasing ml SET due_at = x.due
FROM (SELECT pr.mailbox_id, min(pr.due_at) AS due FROM pending_replies pr
  WHERE pr.parent_send_id >= :lo::bigint AND pr.parent_send_id < :hi::bigint
  AND pr.send_id IS NULL GROUP BY 1 ORDER BY 1) x
WHERE ml.mailbox_id = x.mailbox_id AND ml.lease_id IS NULL AND ml.due_at > x.due
  AND ml.due_at < 'infinity';
END;
