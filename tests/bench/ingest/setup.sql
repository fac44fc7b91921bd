-- Benchmark data for inbox event ingestion (tests/bench/ingest/run.sh), on top of
-- `kiln-api seed` (100,000 mailboxes): every mailbox gets IMAP access (the four provider
-- hosts in turn) and a working inbox; each bench agent (ingest-0 .. ingest-K-1, made
-- through the API) holds one inbox lease over the mailboxes with id % K = its number;
-- and 2 x :n sends reported sent an hour ago, each to a mailbox of another tenant (the
-- first :n for kiln, the next :n for the pgbench peer, in the same shape).
-- psql variables: agents (K), n. Prints the first send id of each half.
\set ON_ERROR_STOP 1
UPDATE mailboxes SET imap_host = (ARRAY['imap.gmail.com', 'outlook.office365.com',
                                        'imap.mail.yahoo.com', 'mail.example.test'])[1 + id % 4],
       imap_port = 993, imap_security = 'tls', imap_username = address, imap_auth = 'password',
       imap_secret = '\x00'::bytea, inbox = 'ok';
INSERT INTO leases (agent_id, expires_at, ttl_s, kind)
SELECT id, kiln_now() + interval '6 hours', 21600, 'inbox' FROM agents WHERE name LIKE 'ingest-%';
UPDATE inbox_leasing il SET lease_id = l.id, imap_gen = m.imap_gen, leased_at = kiln_now()
FROM mailboxes m, agents a, leases l
WHERE m.id = il.mailbox_id AND a.name = 'ingest-' || (m.id % :agents) AND l.agent_id = a.id
  AND l.kind = 'inbox';
-- Send i goes to mailbox 1 + (i * 7919) % M (spread over the leases) from the mailbox
-- half the pool away (another user: users hold 100 consecutive ids... or not, but never
-- the same mailbox).
CREATE TEMP TABLE ids AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id FROM mailboxes;
CREATE INDEX ON ids (k);
ANALYZE ids;
SELECT count(*) AS m FROM ids \gset
INSERT INTO sends (mailbox_id, recipient_id, day, scheduled_at, status, reported_at)
SELECT s.id, r.id, current_date, kiln_now() - interval '1 hour', 'sent', kiln_now()
FROM generate_series(0::bigint, 2 * :n - 1) i
JOIN ids r ON r.k = (i * 7919) % :m
JOIN ids s ON s.k = (i * 7919 + :m / 2) % :m
ORDER BY i;
VACUUM ANALYZE sends;
VACUUM ANALYZE inbox_leasing;
VACUUM ANALYZE mailboxes;
SELECT min(id) AS kiln_first, min(id) + :n AS peer_first FROM sends;
