"""The stats snapshot reads every live mailbox of mailbox_today each KILN_STATS_INTERVAL_S
(api/db/stats.c); 014's kiln_window_elapsed (a SQL function with a FROM) ran per row
through the SQL-function executor, ~35 % of the snapshot's time at 100,000 mailboxes.

- test_window_elapsed_is_014s: 033's one-expression kiln_window_elapsed gives 014's
  result for every input of a grid (two days at 7-minute steps, every window, active
  since before, at, inside and after the window, never).
- test_the_snapshot_runs_no_sql_function_per_mailbox: with 400 mailboxes and
  track_functions = all, the stats thread's refreshes (every second here) call
  kiln_window_elapsed through the executor zero times (014's form: once per mailbox per
  refresh, thousands in the window), and the snapshot still counts every mailbox.
- test_today_is_the_functions_applied (035): mailbox_today's target and window_elapsed,
  read through its lateral local times, equal the functions applied to each mailbox's
  own columns, for mailboxes in several zones, windows and activation times.
- test_three_processes_share_one_snapshot (034; this test runs three kiln-api processes
  behind nginx, KILN_API_PROCESSES=3, refreshing every second): over 10 s the published
  snapshot (stats_snapshot) is computed about once a second in all, not once a second
  by each process, and every process serves the same counts through nginx."""
import time

from leaselib import clone_mailboxes
from kiln_test import admin, check, expect, make_plan, make_user, make_mailbox, psql, ok

WINDOW_ELAPSED_014 = """CREATE FUNCTION test_window_elapsed_014(local_ts timestamp,
    start_hour integer, end_hour integer, active_local timestamp) RETURNS numeric
    LANGUAGE sql IMMUTABLE AS $f$
    SELECT CASE WHEN eff >= end_hour THEN 0.0
                ELSE greatest(0.0, least(1.0, (now_h - eff) / (end_hour - eff))) END
    FROM (SELECT extract(epoch FROM local_ts::time) / 3600.0 AS now_h,
                 CASE WHEN active_local::date = local_ts::date
                      THEN greatest(start_hour::numeric, extract(epoch FROM active_local::time) / 3600.0)
                      ELSE start_hour::numeric END AS eff) x $f$"""


def test_window_elapsed_is_014s():
    psql(WINDOW_ELAPSED_014)
    row = psql("""SELECT count(*), count(*) FILTER (WHERE kiln_window_elapsed(l, s, e, a)
                    IS DISTINCT FROM test_window_elapsed_014(l, s, e, a))
                  FROM generate_series('2026-03-04 00:00'::timestamp, '2026-03-05 23:59',
                                       '7 minutes') l
                  CROSS JOIN generate_series(0, 23) s CROSS JOIN generate_series(1, 24) e
                  CROSS JOIN (VALUES (NULL::timestamp), ('2026-03-01 10:00'),
                              ('2026-03-04 00:00'), ('2026-03-04 09:17:31'),
                              ('2026-03-04 23:59:59'), ('2026-03-05 12:00'),
                              ('2026-03-06 01:00')) x (a)
                  WHERE s < e""")[0]
    n, differ = (int(x) for x in row.split("|"))
    check(n > 500000 and differ == 0, "%d of %d window shares differ from 014's" % (differ, n))
    ok("test_window_elapsed_is_014s (%d inputs)" % n)


def calls():
    """kiln_window_elapsed's calls through the SQL-function executor so far, once the
    backends flushed their counts (an idle backend flushes within 10 s)."""
    time.sleep(11)
    rows = psql("SELECT calls FROM pg_stat_user_functions WHERE funcname = 'kiln_window_elapsed'")
    return int(rows[0]) if rows else 0


def test_the_snapshot_runs_no_sql_function_per_mailbox():
    plan = make_plan("snap")
    users = [make_user("snap%d" % i, plan["id"]) for i in range(4)]
    first = make_mailbox(users[0]["id"], "x0@snap0.test", timezone="UTC",
                         window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
    n = clone_mailboxes(first, users[0]["id"], "snap", 100)
    check(n == 400, "%d mailboxes, expected 400" % n)
    psql("ALTER SYSTEM SET track_functions = 'all'")
    psql("SELECT pg_reload_conf()")
    try:
        before = calls()
        time.sleep(3)  # three more refreshes at KILN_STATS_INTERVAL_S=1
        after = calls()
    finally:
        psql("ALTER SYSTEM RESET track_functions")
        psql("SELECT pg_reload_conf()")
    check(after - before == 0, "kiln_window_elapsed ran %d times through the SQL-function "
          "executor over ~14 refreshes of 400 mailboxes: per row?" % (after - before))
    m = admin("GET", "/metrics")
    check(m.status == 200 and 'kiln_mailboxes{state="active"} 400\n' in m.raw,
          "the snapshot counts the 400 active mailboxes: %r" % m)
    h = expect(admin("GET", "/api/warmup/health"), 200, "warmup health")
    target = int(psql("SELECT sum(target) FROM mailbox_today WHERE state = 'active'")[0])
    check(h["target_today"] == target and target > 0,
          "the snapshot's target_today %r is mailbox_today's %d" % (h["target_today"], target))
    ok("test_the_snapshot_runs_no_sql_function_per_mailbox (400 mailboxes)")


def test_today_is_the_functions_applied():
    """Runs after the 400 mailboxes above: spreads them over zones, windows and
    activation times, then compares every row of the view with the functions applied
    to the mailbox's own columns (014's way of passing them)."""
    psql("""UPDATE mailboxes SET timezone = (ARRAY['UTC', 'Asia/Tokyo', 'America/New_York',
              'Australia/Sydney', 'Asia/Kolkata'])[1 + id % 5],
              window_start_hour = id % 10, window_end_hour = 12 + id % 12,
              active_since = kiln_now() - make_interval(mins => ((id % 97) * 31)::int)""")
    rows = psql("""SELECT count(*), count(*) FILTER (WHERE t.window_elapsed IS DISTINCT FROM
                     kiln_window_elapsed(kiln_now() AT TIME ZONE m.timezone, m.window_start_hour,
                       m.window_end_hour, m.active_since AT TIME ZONE m.timezone)
                     OR t.target IS DISTINCT FROM kiln_mailbox_target(m, p,
                       (kiln_now() AT TIME ZONE m.timezone)::date)
                     OR t.local_ts IS DISTINCT FROM kiln_now() AT TIME ZONE m.timezone),
                   count(DISTINCT t.window_elapsed)
                   FROM mailbox_today t JOIN mailboxes m ON m.id = t.id
                   JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id""")
    n, differ, distinct = map(int, rows[0].split("|"))
    check(n == 400 and differ == 0, "%d of %d mailbox_today rows differ from the functions "
          "applied to their mailbox" % (differ, n))
    check(distinct > 10, "only %d distinct window_elapsed values: the spread did not take"
          % distinct)
    ok("test_today_is_the_functions_applied (%d mailboxes, %d distinct elapsed shares)"
       % (n, distinct))


def test_three_processes_share_one_snapshot():
    seen = set()
    t0 = time.time()
    while time.time() - t0 < 10:
        seen.add(psql("SELECT computed_at FROM stats_snapshot")[0])
        time.sleep(0.1)
    # One a second in all (a turn that finds the row a second old computes it); three
    # processes each computing their own would publish ~30 in 10 s.
    check(5 <= len(seen) <= 15, "%d snapshots published in 10 s by 3 processes (one a second "
          "in all expected, ~30 if each computed its own)" % len(seen))
    counts = set()
    for _ in range(9):  # nginx spreads these over the three processes
        m = admin("GET", "/metrics")
        check(m.status == 200, "metrics: %r" % m)
        line = [x for x in m.raw.splitlines() if x.startswith('kiln_mailboxes{state="active"}')]
        counts.add(line[0] if line else None)
    check(counts == {'kiln_mailboxes{state="active"} 400'},
          "every process serves the shared snapshot: %r" % counts)
    ok("test_three_processes_share_one_snapshot (%d snapshots in 10 s)" % len(seen))


test_window_elapsed_is_014s()
test_the_snapshot_runs_no_sql_function_per_mailbox()
test_today_is_the_functions_applied()
test_three_processes_share_one_snapshot()
