"""Placements keyed by (sender, send) (migration 026, docs/benchmarks.md "Inbox event
ingestion"): a database at 025 with placements in it (found and missing, two senders)
migrates to 026 without rewriting the table; every row is still there, the key is the
pair and the senders' page index is gone (one index entry per placement); the page of
GET /api/mailboxes/{id}/placement and a send's probe read the key; a second placement of a
send is refused by placements_pkey (the name the report's race retry looks for); the
rollup trigger and kiln_schedule_replies (redefined by 026) still work.
Run by with_stack.sh; it builds its own database beside the stack's."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
from kiln_test import check, db_psql, migrate_before, ok, stack_bash  # noqa: E402

UP = 'KILN_DB="host=$STACK_PGSOCK port=$STACK_PG_PORT dbname=kiln_up user=postgres" '


def up(sql):
    return db_psql("kiln_up", sql)


def seed_old():
    """Two senders a, b and a recipient c; 60 sends of a, 40 of b, placed by the old
    schema (inbox, junk, missing)."""
    up("""
INSERT INTO plans (name, ramp_start, ramp_step, daily_max) VALUES ('p', 5, 2, 30);
INSERT INTO users (name, plan_id) VALUES ('u', 1);
INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_username, smtp_secret,
                       timezone, warmup_start)
SELECT 1, x || '@old.test', '127.0.0.1', 2525, x, '\\x00', 'UTC', current_date
FROM unnest(ARRAY['a', 'b', 'c']) x;
SELECT kiln_sends_rotate(90, 3);
INSERT INTO sends (mailbox_id, recipient_id, day, scheduled_at, status, message_id, subject)
SELECT CASE WHEN i <= 60 THEN 1 ELSE 2 END, 3, current_date, now() - interval '1 hour', 'sent',
       '<old-' || i || '@old.test>', 'hello'
FROM generate_series(1, 100) i;
INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, folder, found_at, provider)
SELECT id, mailbox_id, 3, (ARRAY['inbox', 'junk', 'missing'])[1 + id % 3]::placement_folder,
       CASE WHEN id % 3 = 2 THEN NULL ELSE 'INBOX' END,
       CASE WHEN id % 3 = 2 THEN NULL ELSE now() END, 'gmail'
FROM sends ORDER BY id;""")


ROWS = "SELECT md5(string_agg(p::text, ',' ORDER BY send_id)) || ' ' || count(*) FROM placements p"
FILE = "SELECT pg_relation_filenode('placements')"


def test_upgrade_keeps_every_placement_and_drops_an_index():
    db_psql("postgres", "CREATE DATABASE kiln_up")
    try:
        migrate_before("kiln_up", "026")
        seed_old()
        rows, filenode = up(ROWS), up(FILE)
        days = up("SELECT string_agg(mailbox_id || ':' || inbox || '/' || junk || '/' || missing, "
                  "' ' ORDER BY mailbox_id) FROM placement_days")
        stack_bash(UP + '"$STACK_BUILD/api/kiln-api" migrate')
        check(up(ROWS) == rows, "every placement kept as it was: %s -> %s" % (rows, up(ROWS)))
        check(up(FILE) == filenode, "026 rewrote placements")
        idx = up("SELECT string_agg(indexrelid::regclass || '=' || "
                 "pg_get_indexdef(indexrelid), ' ') FROM pg_index WHERE indrelid = 'placements'::regclass")
        check(idx == ["placements_pkey=CREATE UNIQUE INDEX placements_pkey ON public.placements "
                      "USING btree (mailbox_id, send_id)"],
              "placements has one index, the key (sender, send): %s" % idx)
        # The senders' page (api/routes/h_health.c) and a send's probe read the key.
        b_send = up("SELECT min(id) FROM sends WHERE mailbox_id = 2")[0]
        for sql in ("SELECT send_id FROM placements WHERE mailbox_id = 1 AND send_id < %s "
                    "ORDER BY send_id DESC LIMIT 10" % b_send,
                    "SELECT 1 FROM placements WHERE mailbox_id = 2 AND send_id = %s" % b_send):
            plan = " ".join(up("SET enable_seqscan = off; EXPLAIN (COSTS OFF) " + sql))
            check("placements_pkey" in plan, "%s reads the key: %s" % (sql, plan))
        page = up("SELECT string_agg(send_id::text, ',' ORDER BY send_id DESC) FROM (SELECT send_id "
                  "FROM placements WHERE mailbox_id = 1 ORDER BY send_id DESC LIMIT 3) x")
        newest = up("SELECT string_agg(id::text, ',' ORDER BY id DESC) FROM (SELECT id FROM sends "
                    "WHERE mailbox_id = 1 ORDER BY id DESC LIMIT 3) x")
        check(page == newest, "the sender's newest placements first: %s, sends %s" % (page, newest))
        # A second placement of a send is refused by the key the report's retry knows.
        err = stack_bash('"$(stack_pg_bin)/psql" -X -q -tA -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" '
                         '-U postgres -d kiln_up -v VERBOSITY=verbose -c "$1" 2>&1 || true',
                         "INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, "
                         "provider) VALUES (%s, 2, 3, 'inbox', 'gmail')" % b_send)
        check(any("placements_pkey" in line for line in err),
              "a send placed twice fails on placements_pkey: %s" % err)
        # New rows still roll up (the statement trigger) and replies are still scheduled.
        up("INSERT INTO sends (mailbox_id, recipient_id, day, scheduled_at, status, message_id, "
           "subject) VALUES (2, 3, current_date, now(), 'sent', '<new@old.test>', 'hi')")
        new_id = up("SELECT max(id) FROM sends")[0]
        up("INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, provider) "
           "VALUES (%s, 2, 3, 'junk', 'gmail')" % new_id)
        after = up("SELECT string_agg(mailbox_id || ':' || inbox || '/' || junk || '/' || missing, "
                   "' ' ORDER BY mailbox_id) FROM placement_days")
        check(days != after and after[0].split(" ")[0] == days[0].split(" ")[0],
              "the new junk placement rolled up for sender 2 only: %s -> %s" % (days, after))
        n = up("SELECT kiln_schedule_replies(ARRAY[%s, %s]::bigint[], ARRAY[1, 2]::bigint[])"
               % (new_id, new_id))
        check(n == ["1"], "one reply scheduled for the new send (listed twice): %s" % n)
        reply = up("SELECT mailbox_id || ' ' || recipient_id || ' ' || subject || ' ' || "
                   "(created_at IS NOT NULL) FROM pending_replies")
        check(reply == ["3 2 Re: hi true"], "the reply goes back from c to b: %s" % reply)
    finally:
        db_psql("postgres", "DROP DATABASE IF EXISTS kiln_up WITH (FORCE)")
    ok("025 -> 026 with 100 placements: none rewritten or lost, one index (the key), the page "
       "and probes read it, duplicates refused by placements_pkey, rollups and replies work")


test_upgrade_keeps_every_placement_and_drops_an_index()
