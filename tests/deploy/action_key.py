"""inbox_actions without the key on id (migration 030, docs/benchmarks.md "Inbox event
ingestion"): a database at 029 with actions in it (pending, done, cancelled; plans with a
rest) migrates to 030 without rewriting the table; every row is still there as it was;
the indexes are the pending actions by message (btree, partial) and a BRIN range index on
id; an outcome's read of a pending action (inbox and id) goes through the pending index
and a by-id read of any action through the BRIN one; new actions take ids after the old
ones, none repeated; inbox_action_plan still lists every action.
Run by with_stack.sh; it builds its own database beside the stack's."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
from kiln_test import check, migrate_before, ok, stack_bash  # noqa: E402


def db_psql(db, sql):
    return stack_bash('"$(stack_pg_bin)/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$STACK_PGSOCK" '
                      '-p "$STACK_PG_PORT" -U postgres -d "$1" -c "$2"', db, sql)


def up(sql):
    return db_psql("kiln_up", sql)


def seed_old():
    """A recipient inbox (mailbox 2) with 300 messages, each with one action row of the
    023 shape: a third done, a tenth cancelled, the rest pending, half with a rest."""
    up("""
INSERT INTO plans (name, ramp_start, ramp_step, daily_max) VALUES ('p', 5, 2, 30);
INSERT INTO users (name, plan_id) VALUES ('u', 1);
INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_username, smtp_secret,
                       timezone, warmup_start)
SELECT 1, x || '@old.test', '127.0.0.1', 2525, x, '\\x00', 'UTC', current_date
FROM unnest(ARRAY['a', 'b']) x;
INSERT INTO inbox_messages (mailbox_id, send_id, folder, role, uidvalidity, uid)
SELECT 2, i, 'INBOX', 'inbox', 7, i FROM generate_series(1, 300) i;
INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, flags,
                           target, not_before, status, rest)
SELECT 2, i, (ARRAY['mark', 'file', 'rescue'])[1 + i % 3]::inbox_action_kind, 'INBOX', 7, i,
       CASE WHEN i % 3 = 0 THEN '{\\\\Seen}' ELSE '{}' END::text[],
       CASE WHEN i % 3 = 1 THEN 'warmup' END::folder_role, now() + i * interval '1 minute',
       CASE WHEN i % 3 = 0 THEN 'done' WHEN i % 10 = 1 THEN 'cancelled'
            ELSE 'pending' END::inbox_action_status,
       CASE WHEN i % 2 = 0 THEN '[{"k": "prune", "at": 1900000000}]'::jsonb END
FROM generate_series(1, 300) i ORDER BY i;""")


ROWS = "SELECT md5(string_agg(a::text, ',' ORDER BY id)) || ' ' || count(*) FROM inbox_actions a"
PLAN = "SELECT md5(string_agg(p::text, ',' ORDER BY id, step)) || ' ' || count(*) FROM inbox_action_plan p"
FILE = "SELECT pg_relation_filenode('inbox_actions')"


def test_upgrade_keeps_every_action_and_drops_the_key():
    db_psql("postgres", "CREATE DATABASE kiln_up")
    try:
        migrate_before("kiln_up", "030")
        seed_old()
        rows, plan, filenode = up(ROWS), up(PLAN), up(FILE)
        stack_bash('KILN_DB="host=$STACK_PGSOCK port=$STACK_PG_PORT dbname=kiln_up user=postgres" '
                   '"$STACK_BUILD/api/kiln-api" migrate')
        check(up(ROWS) == rows, "every action kept as it was: %s -> %s" % (rows, up(ROWS)))
        check(up(PLAN) == plan, "the plans read the same: %s -> %s" % (plan, up(PLAN)))
        check(up(FILE) == filenode, "030 rewrote inbox_actions")
        idx = up("SELECT string_agg(pg_get_indexdef(indexrelid), ' | ' ORDER BY indexrelid::regclass::text) "
                 "FROM pg_index WHERE indrelid = 'inbox_actions'::regclass")
        check(idx == ["CREATE INDEX inbox_actions_due_idx ON public.inbox_actions USING btree "
                      "(mailbox_id, send_id, id) WHERE (status = 'pending'::inbox_action_status) | "
                      "CREATE INDEX inbox_actions_id_brin ON public.inbox_actions USING brin (id) "
                      "WITH (pages_per_range='4', autosummarize='on')"],
              "inbox_actions has two indexes, the pending one and a BRIN on id: %s" % idx)
        # An outcome's read (api/lease/inbox_store.c, Q_OUTCOMES) and the duplicate check.
        pend = up("SELECT id FROM inbox_actions WHERE status = 'pending' ORDER BY id LIMIT 1")[0]
        for sql, want in (("SELECT 1 FROM inbox_actions a WHERE a.id = %s AND a.mailbox_id = 2 "
                           "AND a.status = 'pending'" % pend, "inbox_actions_due_idx"),
                          ("SELECT 1 FROM inbox_actions a WHERE a.id = %s AND a.mailbox_id = 2"
                           % pend, "inbox_actions_id_brin")):
            got = " ".join(up("SET enable_seqscan = off; EXPLAIN (COSTS OFF) " + sql))
            check(want in got, "%s reads %s: %s" % (sql, want, got))
            check(up(sql) == ["1"], "%s finds the action" % sql)
        # New actions continue the sequence: no id given twice.
        up("INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, "
           "not_before) SELECT 2, i, 'mark', 'INBOX', 7, i, now() FROM generate_series(301, 310) i")
        dup = up("SELECT count(*) - count(DISTINCT id), min(id) FILTER (WHERE send_id > 300) > "
                 "max(id) FILTER (WHERE send_id <= 300) FROM inbox_actions")
        check(dup == ["0|t"], "ten new actions after the old ids, none repeated: %s" % dup)
    finally:
        db_psql("postgres", "DROP DATABASE IF EXISTS kiln_up WITH (FORCE)")
    ok("029 -> 030 with 300 actions: none rewritten or changed, two indexes (pending, BRIN id), "
       "outcome and duplicate reads use them, new ids after the old")


test_upgrade_keeps_every_action_and_drops_the_key()
