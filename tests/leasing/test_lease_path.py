"""The lease path's shape (issue 15, docs/benchmarks.md "Leasing"):

- test_a_lease_fills_from_a_window_its_own_size: 600 mailboxes; a lease of 500 slots over
  20 senders reads a window of 500 recipient candidates (not 1,000) and still grants all
  500, every recipient of another user, under its daily cap, no pair twice.
- test_recipients_are_reserved_before_the_global_buckets: with every global cap bucket of
  the horizon held by another transaction, a grant waits in its reservation only after
  it has written its recipients' inbound counts (so the rows every grant shares are held
  from their upsert to commit, not through ~2,000 recipient upserts); once the holder
  lets go the grant completes and the global counts are exact.
- test_ending_a_lease_reads_only_its_mailboxes: a release frees the lease's mailboxes
  through mailbox_leasing_lease_idx (025), without a sequential scan of mailbox_leasing.
The window's size is lease_plan_window (unit-tested in test_lease_unit.c).
"""
import subprocess
import time
from leaselib import (make_agent, lease, report, sent, all_sends, set_clock, utc, invariants,
                      clone_mailboxes)
from kiln_test import (SRC, VAR, BUILD, admin, call, check, expect, make_plan, make_user,
                       make_mailbox, psql, ok, stack_bash)

USERS, PER_USER = 30, 20
# 23:00 on a 0-24 window at 30 a day: ~29 of each mailbox's slots are due by now.
set_clock(utc(2026, 3, 4, 23, 0, 0))
plan = make_plan("path", ramp_start=30, ramp_step=0, daily_max=30, cooldown_min_s=0,
                 cooldown_max_s=0, user_minute_cap=100000, user_hourly_cap=1000000)
users = [make_user("p0", plan["id"])]
first = make_mailbox(users[0]["id"], "x0@p0.test", timezone="UTC",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
# The rest straight into the tables, copying the first one's sealed secret (the API
# would take a minute for 600).
psql("INSERT INTO users (name, plan_id, timezone) SELECT 'p' || g, %d, 'UTC' "
     "FROM generate_series(1, %d) g" % (plan["id"], USERS - 1))
n = clone_mailboxes(first, users[0]["id"], "p", PER_USER)
psql("ANALYZE")
check(n == USERS * PER_USER, "%d mailboxes, expected %d" % (n, USERS * PER_USER))
expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")


def held_session(sql):
    """A psql session that runs sql in an open transaction and keeps it open; returns the
    process (write ROLLBACK and close stdin to end it) once sql has answered."""
    p = subprocess.Popen(
        ["bash", "-c", 'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
         'stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; stack_psql -tA -v ON_ERROR_STOP=1',
         SRC, VAR, BUILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p.stdin.write("BEGIN;\n%s;\n\\echo held\n" % sql)
    p.stdin.flush()
    held = False
    for _ in range(100000):  # its rows, then "held"; bounded by the rows it can print
        line = p.stdout.readline()
        if not line or line.strip() == "held":
            held = line.strip() == "held"
            break
    if not held:
        p.kill()
    check(held, "the holding session ended early")
    return p


def test_recipients_are_reserved_before_the_global_buckets(token):
    # Every global minute and hour row a grant of the next hours can touch, then held.
    psql("""INSERT INTO slot_buckets (user_id, width_s, at, n)
            SELECT 0, w, t, 0 FROM (VALUES (60), (3600)) v (w)
            CROSS JOIN LATERAL generate_series(date_trunc('hour', kiln_now()) - interval '1 hour',
              kiln_now() + interval '3 hours', make_interval(secs => w)) t
            ON CONFLICT DO NOTHING""")
    size0 = int(psql("SELECT pg_relation_size('mailbox_inbound')")[0])
    check(size0 == 0, "mailbox_inbound has %d bytes before any grant" % size0)
    holder = held_session("SELECT 1 FROM slot_buckets WHERE user_id = 0 FOR UPDATE")
    out = {}

    def grant():
        out["r"] = call("POST", "/api/agent/lease", {"agent": "t", "max_mailboxes": 20,
                                                     "max_sends": 300}, token=token, timeout=60)

    import threading
    t = threading.Thread(target=grant)
    t.start()
    waiting = []
    for _ in range(150):
        waiting = psql("""SELECT wait_event_type FROM pg_stat_activity
                          WHERE query LIKE '%%INSERT INTO slot_buckets%%'
                            AND query LIKE '%%INSERT INTO mailbox_inbound%%'
                            AND state = 'active'""")
        if waiting == ["Lock"]:
            break
        time.sleep(0.1)
    size1 = int(psql("SELECT pg_relation_size('mailbox_inbound')")[0])
    holder.stdin.write("ROLLBACK;\n")
    holder.stdin.close()
    holder.wait(timeout=30)
    t.join(timeout=60)
    check(waiting == ["Lock"], "the grant's reservation never waited on the held global "
          "buckets (sampled %r)" % waiting)
    check(size1 > 0, "the grant waited on the global buckets before writing its recipients' "
          "inbound rows (mailbox_inbound still 0 bytes)")
    r = out.get("r")
    check(r is not None and r.status == 200, "lease after the holder let go: %r" % r)
    granted = len(all_sends(r.json))
    check(granted == 300, "granted %d of 300 slots" % granted)
    g = psql("""SELECT coalesce(sum(n), 0) FROM slot_buckets WHERE user_id = 0 AND width_s = 3600""")
    check(int(g[0]) == granted, "global hour buckets count %s, granted %d" % (g[0], granted))
    report(token, r.json["lease_id"], [sent(s["id"]) for s in all_sends(r.json)])
    ok("test_recipients_are_reserved_before_the_global_buckets (inbound written while "
       "waiting: %d bytes)" % size1)


def test_a_lease_fills_from_a_window_its_own_size(token):
    a = lease(token, max_mailboxes=20, max_sends=500)
    sends = all_sends(a)
    check(len(sends) == 500, "granted %d of 500 slots" % len(sends))
    check(len(a["mailboxes"]) <= 20, "%d mailboxes in a lease of 20" % len(a["mailboxes"]))
    rows = psql("""SELECT s.mailbox_id, s.recipient_id, ms.user_id, mr.user_id
                   FROM sends s JOIN mailboxes ms ON ms.id = s.mailbox_id
                   JOIN mailboxes mr ON mr.id = s.recipient_id
                   WHERE s.lease_id = '%s'""" % a["lease_id"])
    check(len(rows) == 500, "%d sends rows for the lease" % len(rows))
    pairs = set()
    for row in rows:
        mb, rc, us, ur = row.split("|")
        check(us != ur, "mailbox %s sent to %s of its own user" % (mb, rc))
        check((mb, rc) not in pairs, "pair %s -> %s twice in one lease" % (mb, rc))
        pairs.add((mb, rc))
    over = psql("SELECT mailbox_id, received FROM mailbox_inbound WHERE received > 50")
    check(not over, "recipients over their daily cap of 50: %r" % over[:5])
    report(token, a["lease_id"], [sent(s["id"]) for s in sends])
    ok("test_a_lease_fills_from_a_window_its_own_size (500 slots, %d recipients)"
       % len({p[1] for p in pairs}))


def end_lease_plans(lease_id):
    """Runs kiln_end_leases (what a release runs) in a psql session with auto_explain
    sending every nested statement's plan back as a notice; returns the output."""
    out = stack_bash('stack_psql -tA "$@" 2>&1', "-c", "LOAD 'auto_explain'",
                     "-c", "SET auto_explain.log_min_duration = 0",
                     "-c", "SET auto_explain.log_nested_statements = on",
                     "-c", "SET auto_explain.log_level = notice",
                     "-c", "SELECT kiln_end_leases(ARRAY['%s'::uuid], 'cancelled')" % lease_id)
    return "\n".join(out)


def test_ending_a_lease_reads_only_its_mailboxes(token):
    for how in ("release", "kiln_end_leases"):
        a = lease(token, max_mailboxes=10, max_sends=100)
        sends = all_sends(a)
        check(sends, "nothing granted")
        held = {m["id"] for m in a["mailboxes"]}
        # Half reported: those mailboxes keep the lease (pending > 0) until it ends.
        report(token, a["lease_id"], [sent(s["id"]) for s in sends[::2]])
        if how == "release":
            r = call("POST", "/api/agent/release", {"lease_id": a["lease_id"]}, token=token)
            expect(r, 200, "release")
        else:
            plans = end_lease_plans(a["lease_id"])
            free = plans[plans.find("UPDATE mailbox_leasing SET lease_id = NULL"):]
            check("mailbox_leasing_lease_idx" in free and "Seq Scan on mailbox_leasing"
                  not in free, "kiln_end_leases frees the mailboxes without "
                  "mailbox_leasing_lease_idx:\n%s" % free[:1500])
        left = psql("SELECT count(*) FROM mailbox_leasing WHERE lease_id = '%s'" % a["lease_id"])
        check(left == ["0"], "%s mailboxes still hold the ended lease (%s)" % (left[0], how))
        freed = psql("SELECT count(*) FROM mailbox_leasing WHERE mailbox_id IN (%s) "
                     "AND lease_id IS NULL" % ",".join(str(x) for x in held))
        check(int(freed[0]) == len(held), "%s of %d mailboxes freed (%s)"
              % (freed[0], len(held), how))
    ok("test_ending_a_lease_reads_only_its_mailboxes")


token = make_agent("path")
test_recipients_are_reserved_before_the_global_buckets(token)
test_a_lease_fills_from_a_window_its_own_size(token)
test_ending_a_lease_reads_only_its_mailboxes(token)
invariants()
