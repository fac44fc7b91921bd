-- Inbox event ingestion, one index entry fewer per placement (issue 13, `make bench
-- BENCH=ingest`): placements had two indexes, the key (send_id) and the senders' page
-- (mailbox_id, send_id; GET /api/mailboxes/{id}/placement). A send has one sender, so the
-- pair is as unique as the send id, and every reader that probes a send's placement knows
-- the send's sender (the report from the send it verified, the missing sweep and the poll
-- class from the sends row): the pair becomes the key and the second index goes. The
-- constraint keeps its name (placements_pkey: a lost insert race is recognised by it,
-- api/lease/inbox_report.c). Built once from the rows there are (no table rewrite).
CREATE UNIQUE INDEX placements_sender_send_key ON placements (mailbox_id, send_id);
ALTER TABLE placements DROP CONSTRAINT placements_pkey;
DROP INDEX placements_mailbox_send_idx;
ALTER TABLE placements ADD CONSTRAINT placements_pkey
    PRIMARY KEY USING INDEX placements_sender_send_key;
