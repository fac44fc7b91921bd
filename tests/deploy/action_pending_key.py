"""inbox_actions under one key (mailbox_id, status, id) (migration 031, docs/benchmarks.md
"Inbox event ingestion", session 23): a database at 030 with actions in it (plans of
023's shape, one row with its rest; plans written before 023, a pending row per action;
done and cancelled rows) migrates to 031; every row but the older plans' later pending
actions is kept as it was, those become their first pending action's rest in the same
order (the first keeps its id), so a message has at most one pending action; the only
index is the key; an outcome's read, the duplicate check (one probe per status, a few
buffers however many actions the inbox has) and the lease answer's due actions read it;
new actions take ids after the old ones.
Run by with_stack.sh; it builds its own database beside the stack's."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
from kiln_test import check, db_psql, migrate_before, ok, stack_bash  # noqa: E402


def up(sql):
    return db_psql("kiln_up", sql)


def seed_old():
    """Inbox 2: messages 1-300 with one action row of 023's shape each (a third done, a
    tenth cancelled, the rest pending, half with a rest); messages 301-320 with a plan
    written before 023: rescue, mark, file, prune as four pending rows, inserted out of
    order (prune first), message 320's rescue done already; 20,000 done actions of
    inbox 2 (history the duplicate check must not scan)."""
    up("""
INSERT INTO plans (name, ramp_start, ramp_step, daily_max) VALUES ('p', 5, 2, 30);
INSERT INTO users (name, plan_id) VALUES ('u', 1);
INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_username, smtp_secret,
                       timezone, warmup_start)
SELECT 1, x || '@old.test', '127.0.0.1', 2525, x, '\\x00', 'UTC', current_date
FROM unnest(ARRAY['a', 'b']) x;
INSERT INTO inbox_messages (mailbox_id, send_id, folder, role, uidvalidity, uid)
SELECT 2, i, 'INBOX', 'inbox', 7, i FROM generate_series(1, 320) i;
INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, flags,
                           target, not_before, status, rest)
SELECT 2, i, (ARRAY['mark', 'file', 'rescue'])[1 + i % 3]::inbox_action_kind, 'INBOX', 7, i,
       CASE WHEN i % 3 = 0 THEN '{\\\\Seen}' ELSE '{}' END::text[],
       CASE WHEN i % 3 = 1 THEN 'warmup' END::folder_role,
       '2026-12-01T00:00:00Z'::timestamptz + i * interval '1 minute',
       CASE WHEN i % 3 = 0 THEN 'done' WHEN i % 10 = 1 THEN 'cancelled'
            ELSE 'pending' END::inbox_action_status,
       CASE WHEN i % 2 = 0 THEN '[{"k": "prune", "at": 1900000000}]'::jsonb END
FROM generate_series(1, 300) i ORDER BY i;
INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, flags,
                           target, not_before, status)
SELECT 2, i, k.kind::inbox_action_kind, 'Junk', 3, i,
       CASE WHEN k.kind = 'mark' THEN '{\\\\Seen}' ELSE '{}' END::text[],
       CASE k.kind WHEN 'rescue' THEN 'inbox' WHEN 'file' THEN 'warmup' END::folder_role,
       '2026-12-01T00:00:00Z'::timestamptz + k.h * interval '1 hour',
       CASE WHEN i = 320 AND k.kind = 'rescue' THEN 'done' ELSE 'pending' END::inbox_action_status
FROM generate_series(301, 320) i,
     (VALUES ('prune', 900), ('rescue', 1), ('file', 3), ('mark', 2)) k (kind, h)
ORDER BY i, k.h DESC;
INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, not_before,
                           status)
SELECT 2, 1000 + i, 'mark', 'INBOX', 7, i, now(), 'done' FROM generate_series(1, 20000) i;
ANALYZE inbox_actions;""")


# Rows of 023's shape and every finished action: unchanged by 031.
KEPT = ("SELECT md5(string_agg(a::text, ',' ORDER BY id)) || ' ' || count(*) FROM inbox_actions a "
        "WHERE send_id <= 300 OR send_id > 320 OR status <> 'pending'")
# Every message's pending and planned actions, in plan order (ids and which of them is
# issued aside: an older plan's later actions go from pending to planned).
PLANS = ("SELECT string_agg(send_id || ':' || kind || ':' || "
         "floor(extract(epoch FROM not_before)) || ':' || array_to_string(flags, ' ') || ':' || "
         "coalesce(target::text, ''), ',' ORDER BY send_id, not_before, kind) "
         "FROM inbox_action_plan WHERE status IN ('pending', 'planned')")

def buffers(sql):
    """Shared buffers one run of sql touched (EXPLAIN ANALYZE, BUFFERS)."""
    plan = " ".join(up("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql))
    return sum(int(n) for n in re.findall(r"shared hit=(\d+)", plan)[:1]), plan


def check_reads():
    pend = up("SELECT id FROM inbox_actions WHERE status = 'pending' ORDER BY id LIMIT 1")[0]
    done = up("SELECT max(id) FROM inbox_actions WHERE status = 'done'")[0]
    # Q_OUTCOMES' duplicate check (api/lease/inbox_store.c): a probe per status.
    known = ("SELECT kn.k FROM (SELECT 2::bigint AS mb, id FROM unnest('{%s}'::bigint[]) id) r "
             "LEFT JOIN LATERAL (SELECT true AS k FROM unnest(enum_range(NULL::inbox_action_status)) "
             "st (s) CROSS JOIN LATERAL (SELECT 1 FROM inbox_actions a WHERE a.mailbox_id = r.mb "
             "AND a.status = st.s AND a.id = r.id OFFSET 0) a LIMIT 1) kn ON true")
    for sql, want in (("SELECT 1 FROM inbox_actions a WHERE a.id = %s AND a.mailbox_id = 2 "
                       "AND a.status = 'pending'" % pend, ["1"]),
                      (known % done, ["t"]), (known % pend, ["t"]), (known % 99999999, []),
                      (known.replace("2::bigint", "1::bigint") % pend, [])):
        got = " ".join(up("SET enable_seqscan = off; EXPLAIN (COSTS OFF) " + sql))
        check(re.search(r"inbox_actions_pkey .*Index Cond: \(\(mailbox_id = [^)]*\) AND "
                        r"\(status = [^)]*\) AND \(id = [^)]*\)\)", got) is not None,
              "%s probes the key on its three columns: %s" % (sql, got))
        check(up(sql) == want, "%s: %s, wanted %s" % (sql, up(sql), want))
    # The duplicate check in an inbox of 20,000 finished actions: seven probes an id.
    hits, plan = buffers(known % 99999999)
    check(0 < hits <= 40, "an unknown id costs a few buffers, not a scan: %d (%s)" % (hits, plan))
    ids = ",".join(str(99999000 + i) for i in range(500))
    hits, plan = buffers(known % ids)
    check(0 < hits <= 500 * 20, "500 unknown ids: %d buffers (%s)" % (hits, plan))
    due = " ".join(up("SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM inbox_actions "
                      "WHERE mailbox_id = ANY ('{2}'::bigint[]) AND status = 'pending'"))
    check("inbox_actions_pkey" in due, "the due actions read the key's range: %s" % due)


def test_upgrade_folds_older_plans_and_keeps_one_key():
    db_psql("postgres", "CREATE DATABASE kiln_up")
    try:
        migrate_before("kiln_up", "031")
        seed_old()
        kept, plans = up(KEPT), up(PLANS)
        firsts = up("SELECT string_agg(id::text, ',' ORDER BY send_id) FROM (SELECT DISTINCT ON "
                    "(send_id) send_id, id FROM inbox_actions WHERE status = 'pending' AND "
                    "send_id BETWEEN 301 AND 320 ORDER BY send_id, not_before, kind, id) x")
        stack_bash('KILN_DB="host=$STACK_PGSOCK port=$STACK_PG_PORT dbname=kiln_up user=postgres" '
                   '"$STACK_BUILD/api/kiln-api" migrate')
        check(up(KEPT) == kept, "023's rows and finished actions kept: %s -> %s" % (kept, up(KEPT)))
        check(up(PLANS) == plans, "every plan reads the same, in order:\n%s\n%s" % (plans, up(PLANS)))
        one = up("SELECT count(*) FROM (SELECT 1 FROM inbox_actions WHERE status = 'pending' "
                 "GROUP BY mailbox_id, send_id HAVING count(*) > 1) x")
        check(one == ["0"], "at most one pending action per message: %s" % one)
        got = up("SELECT string_agg(id::text, ',' ORDER BY send_id) FROM inbox_actions "
                 "WHERE status = 'pending' AND send_id BETWEEN 301 AND 320")
        check(got == firsts, "the first pending action kept its id: %s -> %s" % (firsts, got))
        rest = up("SELECT rest = jsonb_build_array(jsonb_build_object('k', 'mark', 'f', "
                  "ARRAY[chr(92) || 'Seen'], 'at', 1796090400), jsonb_build_object('k', 'file', "
                  "'t', 'warmup', 'at', 1796094000), jsonb_build_object('k', 'prune', 'at', "
                  "1799323200)) FROM inbox_actions WHERE send_id = 301 AND status = 'pending'")
        check(rest == ["t"], "the later actions in its rest, in 023's form: %s" % up(
            "SELECT rest FROM inbox_actions WHERE send_id = 301 AND status = 'pending'"))
        idx = up("SELECT string_agg(pg_get_indexdef(indexrelid), ' | ') FROM pg_index "
                 "WHERE indrelid = 'inbox_actions'::regclass")
        check(idx == ["CREATE UNIQUE INDEX inbox_actions_pkey ON public.inbox_actions USING btree "
                      "(mailbox_id, status, id)"],
              "inbox_actions has one index, the key (mailbox_id, status, id): %s" % idx)
        ident = up("SELECT relreplident FROM pg_class WHERE relname = 'inbox_actions'")
        check(ident == ["d"], "the key is the replica identity: %s" % ident)
        check_reads()
        up("INSERT INTO inbox_actions (mailbox_id, send_id, kind, folder, uidvalidity, uid, "
           "not_before) SELECT 2, i, 'mark', 'INBOX', 7, i, now() FROM generate_series(50001, "
           "50010) i")
        dup = up("SELECT count(*) - count(DISTINCT id), min(id) FILTER (WHERE send_id > 50000) > "
                 "max(id) FILTER (WHERE send_id <= 50000) FROM inbox_actions")
        check(dup == ["0|t"], "ten new actions after the old ids, none repeated: %s" % dup)
    finally:
        db_psql("postgres", "DROP DATABASE IF EXISTS kiln_up WITH (FORCE)")
    ok("030 -> 031: older plans folded (first ids kept, same order), 023's rows kept, one key "
       "(mailbox_id, status, id) read by outcomes, duplicates (a few buffers among 20,000) and "
       "due actions, new ids after the old")


test_upgrade_folds_older_plans_and_keeps_one_key()
