"""A busy period of leasing and reporting (4 leasers, the test clock moving 5 minutes a
round, ~100 s of wall time): dead rows on the hot tables stay bounded and autovacuum
runs on them with the per-table settings of migration 021 (docs/operations.md "Vacuum").
Sampled from pg_stat_user_tables every second: for each hot table that churned (updates
and deletes), the most dead rows seen stay a small share of that churn, and autovacuum
ran on every table whose dead rows stayed at its trigger (threshold + scale x live) for
5 s. Without vacuum keeping pace, dead rows grow with the churn and this fails."""
import datetime
import threading
import time
from leaselib import make_agent, make_pool, set_clock, lease, report, sent, all_sends, utc, invariants
from kiln_test import check, make_plan, psql, ok

BUSY_S = 100
SUSTAIN_S = 5  # seconds over a table's vacuum trigger that call for an autovacuum run
LEASERS = 4
HOT = ["mailbox_leasing", "mailbox_days", "counters", "slot_buckets", "leases",
       "mailbox_inbound"]
TODAY_PART = "sends_p" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")

# The cluster is the test's own: autovacuum looks every 2 s (10 s is the recommended
# production value, docs/operations.md; the busy hour is compressed here).
psql("ALTER SYSTEM SET autovacuum_naptime = '2s'")
psql("SELECT pg_reload_conf()")

start = utc(2026, 3, 4, 8, 0, 0)
set_clock(start)
plan = make_plan("busy", ramp_start=1000, ramp_step=0, daily_max=1000, cooldown_min_s=30,
                 cooldown_max_s=60, user_minute_cap=10000, user_hourly_cap=100000)
make_pool(plan["id"], "v", 6, 20)
tokens = [make_agent("busy-%d" % i) for i in range(LEASERS)]


def stats():
    rows = psql("SELECT relname, n_live_tup, n_dead_tup, n_tup_upd + n_tup_del, "
                "autovacuum_count FROM pg_stat_user_tables WHERE relname = ANY ('{%s}')"
                % ",".join(HOT + [TODAY_PART]))
    return {r.split("|")[0]: [int(x) for x in r.split("|")[1:]] for r in rows}


def vacuum_trigger():
    """Dead rows at which autovacuum takes each table: threshold + scale x live."""
    opt = ("coalesce((SELECT split_part(o, '=', 2)::float8 FROM unnest(c.reloptions) o "
           "WHERE o LIKE 'autovacuum_vacuum_%s=%%'), current_setting('autovacuum_vacuum_%s')"
           "::float8)")
    rows = psql("SELECT c.relname, (%s + %s * greatest(c.reltuples, 0))::bigint FROM pg_class c "
                "WHERE c.relname = ANY ('{%s}')" % (opt % ("threshold", "threshold"),
                                                     opt % ("scale_factor", "scale_factor"),
                                                     ",".join(HOT + [TODAY_PART])))
    return {r.split("|")[0]: int(r.split("|")[1]) for r in rows}


errors = []
sends = [0]
lock = threading.Lock()


def leaser(tok, stop_at):
    try:
        while time.time() < stop_at:
            a = lease(tok, max_mailboxes=30, max_sends=90)
            if not a["lease_id"]:
                return
            got = all_sends(a)
            report(tok, a["lease_id"], [sent(s["id"]) for s in got])
            with lock:
                sends[0] += len(got)
    except BaseException as e:  # noqa: BLE001  (fail() raises SystemExit in a thread)
        errors.append(e)


before = stats()
samples = []
stop_at = time.time() + BUSY_S
rounds = 0
while time.time() < stop_at and rounds < 400:
    threads = [threading.Thread(target=leaser, args=(t, stop_at)) for t in tokens]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        samples.append(stats())
        time.sleep(1)
    for t in threads:
        t.join()
    check(not errors, "leasers failed: %r" % errors[:3])
    rounds += 1
    set_clock(start + datetime.timedelta(minutes=5 * rounds))
time.sleep(6)  # one more naptime or two: the last round's rows get their pass
after = stats()
samples.append(after)
trigger = vacuum_trigger()
invariants()
check(sends[0] >= 2000, "a busy period: %d sends in %d rounds" % (sends[0], rounds))

print("%d sends in %d rounds, %d samples" % (sends[0], rounds, len(samples)))
print("%-18s %8s %8s %8s %9s %8s %6s" % ("table", "live", "max dead", "trigger", "churn",
                                          "dead end", "vacuums"))
judged = vacuumed = 0
for t in HOT + [TODAY_PART]:
    live, dead_end, churn_end, av_end = after[t]
    churn = churn_end - before.get(t, [0, 0, 0, 0])[2]
    vacuums = av_end - before.get(t, [0, 0, 0, 0])[3]
    max_dead = max(s[t][1] for s in samples if t in s)
    print("%-18s %8d %8d %8d %9d %8d %6d" % (t, live, max_dead, trigger[t], churn, dead_end,
                                             vacuums))
    if churn < 2000:
        continue  # too little churn to judge (e.g. a table this run barely touches)
    judged += 1
    check(max_dead <= 0.25 * churn,
          "%s: %d dead rows at most, against %d updated or deleted (vacuum keeps pace)"
          % (t, max_dead, churn))
    # HOT pruning removes most dead versions on its own; where dead rows stayed at the
    # table's trigger, autovacuum must have taken it. "Stayed": for SUSTAIN_S samples
    # (1 s apart) in a row, more than two of autovacuum's 2 s looks. A peak that pruning
    # itself took back within a look needs no vacuum (session 34's CI rehearsal:
    # mailbox_days at 518 against a trigger of 501 in one sample, 320 at the end).
    run = longest = 0
    for smp in samples:
        run = run + 1 if t in smp and smp[t][1] >= trigger[t] else 0
        longest = max(longest, run)
    check(vacuums >= 1 or longest < SUSTAIN_S,
          "%s: dead rows at or over the trigger %d for %d s (at most %d) and autovacuum "
          "never ran" % (t, trigger[t], longest, max_dead))
    vacuumed += vacuums > 0
check(judged >= 3, "at least three hot tables churned enough to judge: %d" % judged)
check(vacuumed >= 1, "autovacuum ran on a hot table during the busy period")
ok("dead rows on the hot tables stay bounded during a busy period, autovacuum runs")
