"""The sends history (migrations 020/021, docs/design.md "Sends: hot days and history"):
an upgrade from the schema before 020 with sends in several states and days keeps every
row readable (quota and 7-day history through the API, a report on a slot leased before
the upgrade), new sends go to today's day partition with their day in the id and a
Message-ID that carries it, kiln-api's rotation makes partitions ahead, and a drop
removes only the days past KILN_SENDS_RETENTION_DAYS (never a DELETE).
Run by with_stack.sh with KILN_SENDS_ROTATE_S=1; the stack's database is rebuilt here."""
import datetime
import hashlib
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
import kiln_test  # noqa: E402
from kiln_test import (SRC, admin, check, expect, fail, make_mailbox, make_user, ok,  # noqa: E402
                       psql, stack_bash, wait_for)
from leaselib import make_agent, lease, report, sent, all_sends  # noqa: E402

AGENT_TOKEN = "kiln-old-agent-token-0123456789abcdef"
COLS = ("id, mailbox_id, recipient_id, lease_id, day, scheduled_at, status, smtp_code, "
        "message_id, created_at, reported_at")
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
EPOCH = datetime.date(1970, 1, 1)


def day_id(d):
    return (d - EPOCH).days << 36


def pg(sql):
    """psql against the maintenance database (the stack's kiln is dropped here)."""
    return stack_bash('"$(stack_pg_bin)/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$STACK_PGSOCK" '
                      '-p "$STACK_PG_PORT" -U postgres -d postgres -c "$1"', sql)


def partitions():
    return psql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'sends'::regclass ORDER BY 1")


def old_schema():
    """The database as the release before 020 left it: migrations up to 019 only."""
    stack_bash("stack_api_down")
    pg("DROP DATABASE kiln WITH (FORCE)")
    pg("CREATE DATABASE kiln")
    old = tempfile.mkdtemp(prefix="kiln-mig-")
    mig = os.path.join(SRC, "sql", "migrations")
    os.mkdir(os.path.join(old, "migrations"))
    for n in sorted(os.listdir(mig)):
        if n.endswith(".sql") and n < "020":
            shutil.copy(os.path.join(mig, n), os.path.join(old, "migrations", n))
    stack_bash('KILN_SQL_DIR="$1" "$STACK_BUILD/api/kiln-api" migrate', old)
    shutil.rmtree(old)
    check(psql("SELECT relkind FROM pg_class WHERE relname = 'sends'") == ["r"],
          "before 020 sends is a plain table")


def seed_old():
    """Mailboxes a, b, c; five days of sends from a and b to c (sent, failed, expired,
    deferred), and a live lease holding four of a's slots today, as the old kiln wrote
    them (ids from sends_id_seq); mailbox_days and mailbox_leasing agree with them."""
    token_hash = hashlib.sha256(AGENT_TOKEN.encode()).hexdigest()
    psql("""
INSERT INTO plans (name, ramp_start, ramp_step, daily_max) VALUES ('p', 5, 2, 30);
INSERT INTO users (name, plan_id, timezone) VALUES ('u', 1, 'UTC');
INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_username, smtp_secret,
                       timezone, warmup_start, window_start_hour, window_end_hour)
SELECT 1, x || '@old.test', '127.0.0.1', 2525, x, '\\x00', 'UTC', current_date - 10, 0, 24
FROM unnest(ARRAY['a', 'b', 'c']) x;
INSERT INTO agents (name) VALUES ('old-agent');
INSERT INTO tokens (scope, agent_id, hash) VALUES ('agent', 1, '%s');
INSERT INTO leases (id, agent_id, created_at, expires_at, ttl_s)
VALUES ('00000000-0000-4000-8000-000000000001', 1, now(), now() + interval '1 hour', 3600);
INSERT INTO sends (mailbox_id, recipient_id, day, scheduled_at, status, smtp_code,
                   message_id, created_at, reported_at)
SELECT mb, 3, (now() AT TIME ZONE 'UTC')::date - d,
       date_trunc('day', now()) - make_interval(days => d, hours => -1 - k), st, 250,
       '<old-' || mb || '-' || d || '-' || k || '@old.test>',
       date_trunc('day', now()) - make_interval(days => d, hours => -k),
       date_trunc('day', now()) - make_interval(days => d, hours => -1 - k)
FROM generate_series(1, 2) mb, generate_series(0, 4) d, generate_series(0, 5) k,
     LATERAL (SELECT (ARRAY['sent', 'sent', 'sent', 'failed', 'expired', 'deferred'])[k + 1]
              ::send_status AS st) s;
INSERT INTO sends (mailbox_id, recipient_id, lease_id, day, scheduled_at, status, message_id)
SELECT 1, 3, '00000000-0000-4000-8000-000000000001', (now() AT TIME ZONE 'UTC')::date,
       now() - interval '1 minute', 'leased', '<old-leased-' || k || '@old.test>'
FROM generate_series(1, 4) k;
INSERT INTO mailbox_days (mailbox_id, day, sent, failed, in_flight)
SELECT mailbox_id, day, count(*) FILTER (WHERE status = 'sent'),
       count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'leased')
FROM sends GROUP BY 1, 2;
UPDATE mailbox_leasing SET lease_id = '00000000-0000-4000-8000-000000000001', pending = 4
WHERE mailbox_id = 1;
""" % token_hash)


def upgrade():
    before = psql("SELECT %s FROM sends ORDER BY id" % COLS)
    check(len(before) == 64, "seeded 60 finished sends and 4 leased: %d" % len(before))
    stack_bash("stack_api_up")
    kiln_test.ADMIN = stack_bash('rm -f "$STACK_VAR/admin.token"; stack_admin_token')[0]
    after = psql("SELECT %s FROM sends ORDER BY id" % COLS)
    check(after == before, "every sends row is still there, unchanged, under its id")
    check(psql("SELECT relkind FROM pg_class WHERE relname = 'sends'") == ["p"],
          "sends is partitioned after 021")
    bound = psql("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
                 "WHERE c.relname = 'sends_legacy'")
    check(bound == ["FOR VALUES FROM (MINVALUE) TO ('68719476736')"],
          "the old table is the legacy partition of the old ids: %r" % bound)
    check(psql("SELECT count(*) FROM sends_legacy") == ["64"], "no row was copied out of it")
    idx = psql("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
               "WHERE i.indrelid = 'sends'::regclass ORDER BY 1")
    # 022 dropped sends_lease_idx (a lease keeps its slots' id range instead).
    check(idx == ["sends_mailbox_idx", "sends_pkey", "sends_recipient_idx"],
          "the indexes of today under their names on the parent: %r" % idx)
    bad = psql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
               "JOIN pg_index x ON x.indexrelid = c.oid WHERE NOT x.indisvalid")
    check(not bad, "every partition's index is attached and valid: %r" % bad)
    want = ["sends_legacy"] + ["sends_p" + (TODAY + datetime.timedelta(days=d)).strftime("%Y%m%d")
                               for d in range(4)]
    check(partitions() == want, "legacy, today and three days ahead: %r" % partitions())
    ok("upgrade keeps every row, attaches the old table, makes today's partitions")


def mailbox_detail(mid):
    return expect(admin("GET", "/api/warmup/mailbox?id=%d" % mid), 200, "mailbox %d" % mid)


def history_readable():
    a = mailbox_detail(1)
    today = a["today"]
    check(today["sent"] == 3 and today["failed"] == 1 and today["in_flight"] == 4,
          "a's quota today through the API (3 sent, 1 failed, 4 in flight): %r" % today)
    days = {d["day"]: d["sent"] for d in a["last_7_days"]}
    for d in range(1, 5):
        key = (TODAY - datetime.timedelta(days=d)).isoformat()
        check(days.get(key) == 3, "a's history on %s: 3 sent (%r)" % (key, days))
    ok("quota and the last days read the same after the upgrade")


def report_old_lease():
    ids = [int(x) for x in psql("SELECT id FROM sends WHERE status = 'leased' ORDER BY id")]
    r = report(AGENT_TOKEN, "00000000-0000-4000-8000-000000000001",
               [sent(ids[0]), sent(ids[1]), sent(ids[2], "failed")])
    check(r["applied"] == 3 and r["rejected"] == 0, "report answer: %r" % r)
    rows = psql("SELECT status FROM sends WHERE id IN (%d, %d, %d) ORDER BY id"
                % (ids[0], ids[1], ids[2]))
    check(rows == ["sent", "sent", "failed"], "reported slots of the old lease: %r" % rows)
    today = mailbox_detail(1)["today"]
    check(today["sent"] == 5 and today["failed"] == 2 and today["in_flight"] == 1,
          "quota after the report (5 sent, 2 failed, 1 in flight): %r" % today)
    ok("a report on slots leased before the upgrade is applied")


def new_sends():
    # a and b carry a placeholder secret (sealed by no key): new senders, made by the API.
    psql("UPDATE mailboxes SET state = 'paused' WHERE id IN (1, 2)")
    u2 = make_user("u2", 1)  # a recipient is always another tenant's mailbox
    for x, uid in (("d", 1), ("e", u2["id"])):
        make_mailbox(uid, x + "@new.test", window={"start_hour": 0, "end_hour": 24})
    # Active since yesterday: their whole target is due now (014), with no test clock.
    psql("UPDATE mailboxes SET active_since = now() - interval '1 day' WHERE id > 3; "
         "UPDATE mailbox_leasing SET due_at = '-infinity' WHERE mailbox_id > 3")
    token = make_agent("new-agent")
    ans = lease(token, max_sends=6)
    got = all_sends(ans)
    check(got, "a lease after the upgrade grants slots: %r" % ans)
    part = "sends_p" + TODAY.strftime("%Y%m%d")
    for s in got:
        check(s["id"] >> 36 == (TODAY - EPOCH).days,
              "send id %d carries today's UTC day" % s["id"])
        check(s["message_id"].startswith("<%d." % s["id"]),
              "the Message-ID carries the id: %r" % s["message_id"])
        where = psql("SELECT tableoid::regclass FROM sends WHERE id = %d" % s["id"])
        check(where == [part], "send %d lives in %s: %r" % (s["id"], part, where))
    check(all(s["id"] < 2 ** 53 for s in got), "ids stay exact as JSON doubles")
    report(token, ans["lease_id"], [sent(s["id"]) for s in got])
    n = psql("SELECT count(*) FROM sends WHERE id = ANY ('{%s}') AND status = 'sent'"
             % ",".join(str(s["id"]) for s in got))
    check(n == [str(len(got))], "the new slots are reported: %r" % n)
    ok("new sends go to today's partition with the day in their id")


def metric(name, label):
    r = admin("GET", "/metrics")
    for line in r.raw.splitlines():
        if line.startswith('%s{action="%s"}' % (name, label)):
            return int(line.split()[-1])
    fail("no %s{action=%s} in /metrics" % (name, label))


def rotation_by_api():
    ahead = "sends_p" + (TODAY + datetime.timedelta(days=3)).strftime("%Y%m%d")
    psql("DROP TABLE %s" % ahead)
    wait_for(lambda: ahead in partitions(), "kiln-api's rotation makes %s again" % ahead,
             timeout=30)
    check(metric("kiln_sends_partitions_total", "created") >= 1,
          "kiln_sends_partitions_total{action=created} counts it")
    ok("kiln-api's stats thread makes the partitions ahead")


def retention_drop():
    total = int(psql("SELECT count(*) FROM sends")[0])
    # One transaction: kiln-api's rotation (every second) may drop an old day at once.
    sql = []
    for d in (100, 91, 90, 89):
        day = TODAY - datetime.timedelta(days=d)
        sql.append("SELECT kiln_sends_partition('%s'); INSERT INTO sends (id, mailbox_id, "
                   "recipient_id, day, scheduled_at, status, created_at) SELECT %d + k, 2, 3, "
                   "'%s', '%s'::date + interval '12 hours', 'sent', '%s'::date + interval "
                   "'12 hours' FROM generate_series(1, 10) k" % (day, day_id(day), day, day, day))
    psql("; ".join(sql))
    old = ["sends_p" + (TODAY - datetime.timedelta(days=d)).strftime("%Y%m%d") for d in (100, 91)]
    wait_for(lambda: not set(old) & set(partitions()),
             "kiln-api drops the partitions older than 90 days", timeout=30)
    left = int(psql("SELECT count(*) FROM sends")[0])
    check(left == total + 20, "the rows of the two old days went, the rest stayed: %d + 40 "
          "inserted -> %d" % (total, left))
    for d in (90, 89):
        day = TODAY - datetime.timedelta(days=d)
        n = psql("SELECT count(*) FROM sends WHERE id >= %d AND id < %d"
                 % (day_id(day), day_id(day + datetime.timedelta(days=1))))
        check(n == ["10"], "day %s (within the retention) keeps its rows: %r" % (day, n))
    check(psql("SELECT count(*) FROM sends_legacy") == ["64"], "the legacy rows are kept")
    check(metric("kiln_sends_partitions_total", "dropped") == 2,
          "kiln_sends_partitions_total{action=dropped} is 2")
    log = stack_bash('grep "sends retention:" "$STACK_VAR/log/kiln-api.log" | tail -1')
    check(log and "dropped" in log[0], "the drop is logged: %r" % log)
    # The legacy partition goes once its newest row is older than the retention.
    stack_bash("stack_api_down")
    psql("UPDATE sends_legacy SET created_at = created_at - interval '200 days'")
    r = psql("SELECT dropped FROM kiln_sends_rotate(90, 3)")
    check(r == ["1"] and psql("SELECT to_regclass('sends_legacy') IS NULL") == ["t"],
          "the legacy partition is dropped once all of it is old: %r" % r)
    check(psql("SELECT count(*) FROM sends")[0] == str(left - 64),
          "only the legacy rows went with it")
    ok("retention drops only the days past it, never a DELETE")


old_schema()
seed_old()
upgrade()
history_readable()
report_old_lease()
new_sends()
rotation_by_api()
retention_drop()
