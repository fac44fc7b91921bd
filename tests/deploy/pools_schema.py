"""Warmup pools in one cell (migration 024, docs/scale.md "Past one primary: pools").

test_every_table_reaches_the_pool_key: from the catalog, every table of the schema either
carries pool_id, or reaches it by a mailbox/user column or a foreign key chain, or is on
the short list of cell-wide tables below (a new table that is none of these fails here).
test_upgrade_adds_the_pool_without_rewriting: a database at 023 with rows in it migrates
to 024 with users and mailboxes keeping their files (no rewrite), every old row in pool 1.
test_pairing_never_crosses_pools: tenants of two pools in one database, mailboxes of both
interleaved by id; leases over all of them give every slot a recipient of its sender's
pool, and both pools send. Moving a user (an offline operation) carries its mailboxes; a
mailbox created later joins its owner's pool; a tenant token carries its pool ("kiln2_").
Run by with_stack.sh (one cell) with KILN_PAIR_GAP_DAYS=0."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
from kiln_test import (admin, call, check, expect, expect_error, make_mailbox,  # noqa: E402
                       make_plan, make_user, migrate_before, db_psql, ok, psql, stack_bash)
from leaselib import make_agent, lease, report, sent, all_sends, set_clock, utc  # noqa: E402

# Tables of the whole cell, not of a tenant: configuration copied to every cell (plans,
# content), the cell's own machinery (agents and their leases, the clock, service state,
# migrations, the placement sweep's cursor) and its metric aggregates (one scrape per
# cell, summed in PromQL).
CELL_WIDE = {"plans", "message_templates", "message_topics", "agents", "leases", "service",
             "kiln_clock", "schema_migrations", "counters", "placement_sweep",
             "placement_pool_days",
             # the health judge's work queue (023): arrays of sender ids, each row lives
             # until the next judge pass; the mailboxes it names carry their pools
             "health_queue",
             # the cell's published quota/health snapshot (034): one row, its aggregates
             "stats_snapshot"}
# The rows a lease or a report touches: each must reach the pool by its own columns.
HOT = {"mailboxes", "mailbox_leasing", "mailbox_days", "mailbox_inbound", "slot_buckets",
       "sends", "placements", "placement_days", "pending_replies", "mailbox_health",
       "inbox_leasing"}


def test_every_table_reaches_the_pool_key():
    cols = {}
    for row in psql("SELECT c.relname, a.attname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                    "AND NOT a.attisdropped WHERE n.nspname = 'public' "
                    "AND c.relkind IN ('r', 'p') AND NOT c.relispartition"):
        t, a = row.split("|")
        cols.setdefault(t, set()).add(a)
    fks = [r.split("|") for r in psql(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND connamespace = 'public'::regnamespace")]
    reach = {t: "pool_id" for t, c in cols.items() if "pool_id" in c}
    check(set(reach) == {"users", "mailboxes"},
          "pool_id is on users and mailboxes only (docs/scale.md says why), got %s" % sorted(reach))
    for t, c in cols.items():
        if t not in reach and c & {"mailbox_id", "user_id"}:
            reach[t] = "by its %s" % ", ".join(sorted(c & {"mailbox_id", "user_id"}))
    for _ in range(len(cols)):
        for t, target in fks:
            if t not in reach and target in reach and target not in CELL_WIDE:
                reach[t] = "by a foreign key to " + target
    missing = sorted(set(cols) - set(reach) - CELL_WIDE)
    check(not missing, "tables that reach no pool and are not cell-wide: %s" % missing)
    for t in sorted(HOT):
        check(t in cols and t in reach and not reach[t].startswith("by a foreign"),
              "hot table %s carries the pool key or a mailbox/user key: %s"
              % (t, reach.get(t, "no")))
    nn = psql("SELECT attrelid::regclass::text FROM pg_attribute WHERE attname = 'pool_id' "
              "AND attnotnull AND attrelid IN ('users'::regclass, 'mailboxes'::regclass) ORDER BY 1")
    check(nn == ["mailboxes", "users"], "pool_id is NOT NULL on users and mailboxes: %s" % nn)
    fk = psql("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
              "WHERE conname = 'mailboxes_user_pool_fkey'")
    check(len(fk) == 1 and "(user_id, pool_id) REFERENCES users(id, pool_id)" in fk[0]
          and "ON UPDATE CASCADE" in fk[0], "mailboxes' (user, pool) key: %s" % fk)
    ok("every table reaches the pool key (%d directly or by a mailbox/user key, %d through a "
       "foreign key, %d cell-wide)" % (sum(not v.startswith("by a foreign") for v in reach.values()),
                                      sum(v.startswith("by a foreign") for v in reach.values()),
                                      len(CELL_WIDE & set(cols))))


def test_upgrade_adds_the_pool_without_rewriting():
    db_psql("postgres", "CREATE DATABASE kiln_up")
    try:
        migrate_before("kiln_up", "024")
        up = 'KILN_DB="host=$STACK_PGSOCK port=$STACK_PG_PORT dbname=kiln_up user=postgres" '
        db_psql("kiln_up", """
INSERT INTO plans (name, ramp_start, ramp_step, daily_max) VALUES ('p', 5, 2, 30);
INSERT INTO users (name, plan_id) SELECT 'u' || i, 1 FROM generate_series(1, 3) i;
INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_username, smtp_secret,
                       timezone, warmup_start)
SELECT 1 + i % 3, 'm' || i || '@old.test', '127.0.0.1', 2525, 'm', '\\x00', 'UTC', current_date
FROM generate_series(1, 2000) i;""")
        files = "SELECT string_agg(pg_relation_filenode(t)::text, ',' ORDER BY t) " \
                "FROM unnest(ARRAY['users'::regclass, 'mailboxes'::regclass]) t"
        before = db_psql("kiln_up", files)
        stack_bash(up + '"$STACK_BUILD/api/kiln-api" migrate')
        check(db_psql("kiln_up", files) == before,
              "024 rewrote users or mailboxes (filenodes %s -> %s)" % (before, db_psql("kiln_up", files)))
        pools = db_psql("kiln_up", "SELECT (SELECT string_agg(DISTINCT pool_id::text, ',') FROM users)"
                        " || '/' || (SELECT string_agg(DISTINCT pool_id::text, ',') FROM mailboxes)")
        check(pools == ["1/1"], "rows from before 024 are in pool 1: %s" % pools)
        db_psql("kiln_up", "ALTER TABLE mailboxes VALIDATE CONSTRAINT mailboxes_user_pool_fkey")
    finally:
        db_psql("postgres", "DROP DATABASE IF EXISTS kiln_up WITH (FORCE)")
    ok("023 -> 024 with 2,000 mailboxes: no rewrite, old rows in pool 1, the (user, pool) key "
       "validates")


def test_pairing_never_crosses_pools():
    start = utc(2026, 3, 4, 0, 0, 0)
    set_clock(start)
    plan = make_plan("pools", ramp_start=10, ramp_step=0, daily_max=10, cooldown_min_s=1,
                     cooldown_max_s=2, user_minute_cap=100, user_hourly_cap=1000)
    users = [make_user("pl%d" % i, plan["id"]) for i in range(8)]
    check(all(u["pool"] == 1 for u in users), "tenants join the cell's pool (1): %r" % users[0])
    for u in users:
        for j in range(6):
            make_mailbox(u["id"], "x%d@pl%d.test" % (j, u["id"]), timezone="UTC",
                         window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
    odd = [str(u["id"]) for u in users[1::2]]
    # An offline move: the (user, pool) key carries the user's mailboxes along.
    psql("UPDATE users SET pool_id = 2 WHERE id IN (%s)" % ",".join(odd))
    moved = psql("SELECT count(*) FILTER (WHERE m.pool_id = u.pool_id), count(*) FROM mailboxes m "
                 "JOIN users u ON u.id = m.user_id")
    check(moved == ["48|48"], "every mailbox follows its user's pool: %s" % moved)
    later = make_mailbox(users[1]["id"], "late@pl%d.test" % users[1]["id"], timezone="UTC",
                         window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
    check(psql("SELECT pool_id FROM mailboxes WHERE id = %d" % later["id"]) == ["2"],
          "a mailbox created for a pool-2 user is in pool 2")
    got = expect(admin("GET", "/api/users/%s" % odd[0]), 200, "get moved user")
    check(got["pool"] == 2, "GET /api/users/{id} shows the pool: %r" % got)
    tok = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": int(odd[0])}), 201,
                 "tenant token in pool 2")["token"]
    check(tok.startswith("kiln2_") and len(tok) == len("kiln2_") + 43, "pool-2 token: %r" % tok)
    # This stack has one cell (pool 1): nginx knows no cell for pool 2 and says so itself.
    expect_error(call("GET", "/api/mailboxes", token=tok), 401, "unauthorized", None,
                 "a pool no cell serves")
    expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")

    agent = make_agent("pools-agent")
    n = 0
    for _ in range(12):
        a = lease(agent, max_mailboxes=20, max_sends=40)
        sends = all_sends(a)
        if a.get("lease_id") and sends:
            report(agent, a["lease_id"], [sent(s["id"]) for s in sends])
            n += len(sends)
        if n >= 150:
            break
    rows = psql("SELECT ms.pool_id, mr.pool_id, count(*) FROM sends s "
                "JOIN mailboxes ms ON ms.id = s.mailbox_id JOIN mailboxes mr ON mr.id = s.recipient_id "
                "GROUP BY 1, 2 ORDER BY 1, 2")
    check(rows and all(r.split("|")[0] == r.split("|")[1] for r in rows),
          "every slot's recipient is in its sender's pool (sender pool|recipient pool|sends): %s" % rows)
    check({r.split("|")[0] for r in rows} == {"1", "2"}, "both pools sent: %s" % rows)
    ok("%d slots over two interleaved pools, none across (%s)" % (n, "; ".join(rows)))


test_every_table_reaches_the_pool_key()
test_upgrade_adds_the_pool_without_rewriting()
test_pairing_never_crosses_pools()
