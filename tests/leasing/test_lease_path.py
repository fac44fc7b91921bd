"""The lease path's shape (issue 15, docs/benchmarks.md "Leasing"):

- test_a_lease_fills_from_a_window_its_own_size: 600 mailboxes; a lease of 500 slots over
  20 senders reads a window of 500 recipient candidates (not 1,000) and still grants all
  500, every recipient of another user, under its daily cap, no pair twice.
- test_ending_a_lease_reads_only_its_mailboxes: a release frees the lease's mailboxes
  through mailbox_leasing_lease_idx (025), without a sequential scan of mailbox_leasing,
  and reads the lease's slots by its id range even in the generic plan a long-lived
  connection caches (032; 022's join scanned the day's sends from a connection's sixth
  release on).
- test_due_times_with_replies_cost_what_they_did: kiln_due_at_reply (in a report's
  update of the mailboxes it frees and the lease's agent_details) gives 028's due times
  over a grid of inputs, and kiln_due_for of 300 mailboxes costs about what it did before 028 in
  backend CPU (029; with 028's SQL version: 68 ticks against 6, with 029's: 9 against 7).
- test_a_lease_and_its_report_run_no_sql_function_per_send (032, issue 15's fourth pass):
  a lease of 500 slots and its report call kiln_now() (a SQL function with a FROM, never
  inlined) a few times, not once per send (sends.created_at's default did), and the
  due times of the picked and freed mailboxes run no SQL function per mailbox
  (kiln_due_at, kiln_reply_due); kiln_due_at, now PL/pgSQL, gives 003's due times over
  a grid of inputs.
The window's size is lease_plan_window (unit-tested in test_lease_unit.c).
"""
import os
import tempfile
import time

from leaselib import (make_agent, lease, report, sent, all_sends, set_clock, utc, invariants,
                      clone_mailboxes)
from kiln_test import (admin, call, check, expect, make_plan, make_user,
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


def end_lease_plans(lease_id, plan_mode="auto"):
    """Runs kiln_end_leases (what a release runs) in a psql session with auto_explain
    sending every nested statement's plan back as a notice; returns the output.
    plan_mode force_generic_plan: the plans a kiln-api connection caches from its sixth
    call of a function on."""
    out = stack_bash('stack_psql -tA "$@" 2>&1', "-c", "LOAD 'auto_explain'",
                     "-c", "SET auto_explain.log_min_duration = 0",
                     "-c", "SET auto_explain.log_nested_statements = on",
                     "-c", "SET auto_explain.log_level = notice",
                     "-c", "SET plan_cache_mode = " + plan_mode,
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
            # In the plans a long-lived connection caches (032): the lease's slots by its
            # id range, not a scan of the day's sends.
            plans = end_lease_plans(a["lease_id"], "force_generic_plan")
            free = plans[plans.find("UPDATE mailbox_leasing SET lease_id = NULL"):]
            check("mailbox_leasing_lease_idx" in free and "Seq Scan on mailbox_leasing"
                  not in free, "kiln_end_leases frees the mailboxes without "
                  "mailbox_leasing_lease_idx:\n%s" % free[:1500])
            slots = plans[plans.find("ids := ARRAY(SELECT s.id FROM leases l"):]
            slots = slots[:slots.find("Query Text:", 20)]
            check("Index Cond: ((id >= l.send_id_min) AND (id <= l.send_id_max))" in slots
                  and "Hash Join" not in slots,
                  "kiln_lease_slots reads the day's sends, not the lease's id range, in a "
                  "cached generic plan:\n%s" % slots[:2500])
        left = psql("SELECT count(*) FROM mailbox_leasing WHERE lease_id = '%s'" % a["lease_id"])
        check(left == ["0"], "%s mailboxes still hold the ended lease (%s)" % (left[0], how))
        freed = psql("SELECT count(*) FROM mailbox_leasing WHERE mailbox_id IN (%s) "
                     "AND lease_id IS NULL" % ",".join(str(x) for x in held))
        check(int(freed[0]) == len(held), "%s of %d mailboxes freed (%s)"
              % (freed[0], len(held), how))
    ok("test_ending_a_lease_reads_only_its_mailboxes")


# The due times of 300 mailboxes as before 028 (no reply term): the yardstick of the
# cost check below.
DUE_027 = """CREATE FUNCTION test_due_027(bigint[]) RETURNS TABLE (mailbox_id bigint, due_at timestamptz)
    LANGUAGE sql STABLE AS $f$ SELECT m.id, kiln_due_at(k.now, m.timezone, m.window_start_hour,
      m.window_end_hour, kiln_mailbox_target(m, p, t.day),
      coalesce(d.sent, 0) + coalesce(d.in_flight, 0), ml.next_at,
      NOT coalesce(s.last_trigger_at > coalesce(ml.leased_at, '-infinity'), false),
      m.deleted_at IS NULL AND m.state = 'active' AND u.state = 'active')
    FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
    JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s
    CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY ($1) $f$"""


def backend_cpu_ticks(statements, times=10):
    """CPU clock ticks (1/100 s) of one PostgreSQL backend running each statement `times`
    times, each in its own transaction, after one warm-up run of each (the session's
    first calls load the catalogs). CPU, not wall time: the box is shared, a wall time
    under load says more about the other processes than about the statement."""
    tick = "\\! awk '{print \"ticks\", $14 + $15}' /proc/$PGPID/stat\n"
    script = "SELECT pg_backend_pid() AS pid \\gset\n\\setenv PGPID :pid\n"
    script += "".join(sql + ";\n" for sql in statements) + tick
    for sql in statements:
        script += (sql + ";\n") * times + tick
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        out = stack_bash('stack_psql -tA -f "$1"', f.name)
    finally:
        os.unlink(f.name)
    t = [int(l.split()[1]) for l in out if l.startswith("ticks ")]
    check(len(t) == len(statements) + 1, "backend CPU: %r" % out[:8])
    return [t[i + 1] - t[i] for i in range(len(statements))]


def test_due_times_with_replies_cost_what_they_did():
    psql(DUE_027)
    # The values: kiln_due_at_reply against 028's CASE over a grid of inputs (time zones,
    # windows, targets, done counts, cooldowns, paced or not, active or not, no reply, a
    # reply due long ago, just now, later today, tomorrow).
    diff = psql("""WITH g AS (SELECT timestamptz '2026-03-04 13:37:00+00' AS now, tz, ws, we,
                     target, done, now_next, paced, active, rd
                   FROM unnest(ARRAY['UTC', 'America/New_York', 'Asia/Kolkata']) tz,
                        (VALUES (0, 24), (8, 18), (20, 23)) w (ws, we),
                        (VALUES (0), (10), (30)) t (target), generate_series(0, 31, 3) done,
                        (VALUES (NULL::timestamptz), ('2026-03-04 14:00+00'),
                                ('2026-03-04 12:00+00')) n (now_next),
                        (VALUES (true), (false)) p (paced), (VALUES (true), (false)) a (active),
                        (VALUES (NULL::timestamptz), ('2026-02-01 00:00+00'),
                                ('2026-03-04 13:30+00'), ('2026-03-04 16:00+00'),
                                ('2026-03-05 09:00+00')) r (rd)),
                 v AS (SELECT kiln_due_at_reply(now, tz, ws, we, target, done, now_next, paced,
                                                active, rd) AS got,
                              CASE WHEN rd IS NULL OR NOT paced
                              THEN kiln_due_at(now, tz, ws, we, target, done, now_next, paced,
                                               active)
                              ELSE least(kiln_due_at(now, tz, ws, we, target, done, now_next,
                                                     true, active),
                                         greatest(kiln_due_at(now, tz, ws, we, target, done,
                                                              now_next, false, active), rd))
                              END AS want,
                              kiln_due_at(now, tz, ws, we, target, done, now_next, paced,
                                          active) AS no_reply FROM g)
                 SELECT count(*), count(*) FILTER (WHERE got IS DISTINCT FROM want),
                        count(*) FILTER (WHERE want IS DISTINCT FROM no_reply) FROM v""")
    n, differ, by_reply = (int(x) for x in diff[0].split("|"))
    check(n > 10000, "%d inputs" % n)
    check(differ == 0, "%d of %d due times differ from 028's" % (differ, n))
    check(by_reply > 0, "no due time moved by a pending reply: the test checks nothing")
    ids = "ARRAY(SELECT id FROM mailboxes ORDER BY id LIMIT 300)"
    now, old = backend_cpu_ticks(["SELECT count(*) FROM kiln_due_for(%s)" % ids,
                                  "SELECT count(*) FROM test_due_027(%s)" % ids])
    # 028's SQL kiln_due_at_reply set up the nested kiln_due_at afresh per row: ~7x the
    # due times without the reply term; 029's PL/pgSQL one: ~1.3x.
    check(now <= 2 * old + 3, "300 mailboxes' due times, 10 times: %d CPU ticks, %d without "
          "the reply term" % (now, old))
    ok("test_due_times_with_replies_cost_what_they_did (%d moved by a reply; %d CPU ticks, "
       "%d without the reply term)" % (by_reply, now, old))


# 003's kiln_due_at, the SQL body 032 replaced: the yardstick of its values.
DUE_AT_003 = """CREATE FUNCTION test_due_at_003(p_now timestamptz, p_tz text, p_ws integer,
    p_we integer, p_target integer, p_done integer, p_next_at timestamptz, p_paced boolean,
    p_active boolean) RETURNS timestamptz LANGUAGE sql STABLE AS $f$
    SELECT CASE
        WHEN NOT p_active THEN 'infinity'::timestamptz
        WHEN p_done < p_target AND c.at < c.close AND c.now_l < c.close THEN c.at AT TIME ZONE p_tz
        ELSE (c.day + 1 + make_interval(hours => p_ws)) AT TIME ZONE p_tz
    END
    FROM (SELECT l.day, l.close, l.now_l,
                 greatest(l.open, coalesce(p_next_at AT TIME ZONE p_tz, l.open),
                          CASE WHEN p_paced AND p_target > 0
                               THEN l.open + (l.close - l.open) * (p_done::float8 / p_target)
                               ELSE l.open END) AS at
          FROM (SELECT q.now_l, q.now_l::date AS day,
                       q.now_l::date + make_interval(hours => p_ws) AS open,
                       q.now_l::date + make_interval(hours => p_we) AS close
                FROM (SELECT p_now AT TIME ZONE p_tz AS now_l) q) l) c $f$"""

SQL_FUNCS = ("kiln_now", "kiln_due_at", "kiln_reply_due")


def function_calls():
    """Calls so far of the functions the lease path must not run per row through the
    SQL-function executor, from pg_stat_user_functions (track_functions = all counts a
    SQL function that is not inlined), once the backends have flushed their counts (an
    idle backend flushes within 10 s)."""
    time.sleep(11)
    rows = psql("SELECT funcname, calls FROM pg_stat_user_functions WHERE funcname IN (%s)"
                % ",".join("'%s'" % f for f in SQL_FUNCS))
    got = dict((r.split("|")[0], int(r.split("|")[1])) for r in rows)
    return {f: got.get(f, 0) for f in SQL_FUNCS}


def test_a_lease_and_its_report_run_no_sql_function_per_send(token):
    psql(DUE_AT_003)
    diff = psql("""WITH g AS (SELECT timestamptz '2026-03-04 13:37:00+00' + make_interval(hours => h)
                     AS now, tz, ws, we, target, done, nx, paced, active
                   FROM unnest(ARRAY['UTC', 'America/New_York', 'Asia/Kolkata', 'Pacific/Chatham'])
                        tz, (VALUES (0), (11), (22)) hh (h), (VALUES (0, 24), (8, 18), (20, 23),
                        (9, 9)) w (ws, we), (VALUES (0), (10), (30)) t (target),
                        generate_series(0, 31, 5) done,
                        (VALUES (NULL::timestamptz), ('2026-03-04 14:00+00'),
                                ('2026-03-05 02:00+00')) n (nx),
                        (VALUES (true), (false)) p (paced), (VALUES (true), (false), (NULL)) a (active))
                 SELECT count(*), count(*) FILTER (WHERE kiln_due_at(now, tz, ws, we, target, done,
                   nx, paced, active) IS DISTINCT FROM test_due_at_003(now, tz, ws, we, target,
                   done, nx, paced, active)) FROM g""")
    n, differ = (int(x) for x in diff[0].split("|"))
    check(n > 10000 and differ == 0, "%d of %d due times differ from 003's" % (differ, n))
    psql("ALTER SYSTEM SET track_functions = 'all'")
    psql("SELECT pg_reload_conf()")
    try:
        before = function_calls()
        a = lease(token, max_mailboxes=20, max_sends=500)
        sends = all_sends(a)
        check(len(sends) == 500, "granted %d of 500 slots" % len(sends))
        report(token, a["lease_id"], [sent(s["id"]) for s in sends])
        after = function_calls()
    finally:
        psql("ALTER SYSTEM RESET track_functions")
        psql("SELECT pg_reload_conf()")
    calls = {f: after[f] - before[f] for f in SQL_FUNCS}
    # A few per statement, and the webhook thread's polls (the stats thread is off here:
    # KILN_STATS_INTERVAL_S in CMakeLists.txt). Before 032: kiln_now 500+, one per send,
    # and kiln_reply_due and a SQL kiln_due_at per picked and per freed mailbox.
    check(calls["kiln_now"] < 150, "kiln_now() ran %d times for 500 sends: per row?"
          % calls["kiln_now"])
    check(calls["kiln_reply_due"] == 0, "kiln_reply_due ran per mailbox: %r" % calls)
    lang = psql("SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                "WHERE p.proname = 'kiln_due_at'")
    check(lang == ["plpgsql"], "kiln_due_at is %s, not PL/pgSQL" % lang)
    ok("test_a_lease_and_its_report_run_no_sql_function_per_send (%d due times as 003's; "
       "calls for 500 sends: %r)" % (n, calls))


token = make_agent("path")
test_a_lease_fills_from_a_window_its_own_size(token)
test_ending_a_lease_reads_only_its_mailboxes(token)
test_due_times_with_replies_cost_what_they_did()
test_a_lease_and_its_report_run_no_sql_function_per_send(token)
invariants()
