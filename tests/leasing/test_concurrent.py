"""8 concurrent leasers: no mailbox in two live leases, no slot granted twice, global
and per-user caps never exceeded for any minute or hour (caps set low on purpose)."""
import datetime
import threading
from leaselib import make_agent, make_pool, set_clock, lease, report, sent, all_sends, utc
from leaselib import invariants
from kiln_test import check, make_plan, psql, ok
from kiln_test import URL  # noqa: F401  (the stack under test)

GLOBAL_MINUTE, GLOBAL_HOUR, USER_MINUTE, USER_HOUR = 20, 150, 4, 30  # see CMakeLists.txt
start = utc(2026, 3, 4, 9, 0, 0)
set_clock(start)
plan = make_plan("tight", ramp_start=20, ramp_step=0, daily_max=20, cooldown_min_s=30,
                 cooldown_max_s=60, user_minute_cap=USER_MINUTE, user_hourly_cap=USER_HOUR)
make_pool(plan["id"], "c", 12, 15)
tokens = [make_agent("hammer-%d" % i) for i in range(8)]

granted = []
lock = threading.Lock()
errors = []


def hammer(tok, n):
    try:
        for _ in range(n):
            a = lease(tok, max_mailboxes=7, max_sends=25)
            if a["lease_id"]:
                with lock:
                    granted.append((tok, a))
    except SystemExit as e:  # fail() inside a thread
        errors.append(e)
    except Exception as e:  # noqa: BLE001
        errors.append(e)


for rnd in range(6):
    granted.clear()
    threads = [threading.Thread(target=hammer, args=(t, 4)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "leasers failed: %r" % errors)
    seen = {}
    for tok, a in granted:
        for m in a["mailboxes"]:
            check(m["id"] not in seen, "mailbox %d in two live leases %s and %s"
                  % (m["id"], seen.get(m["id"]), a["lease_id"]))
            seen[m["id"]] = a["lease_id"]
    ids = [s["id"] for _, a in granted for s in all_sends(a)]
    check(len(ids) == len(set(ids)), "a slot id was granted twice")
    # Everything goes out, then time moves on by 10 minutes.
    for tok, a in granted:
        report(tok, a["lease_id"], [sent(s["id"]) for s in all_sends(a)])
    invariants()
    set_clock(start + datetime.timedelta(minutes=10 * (rnd + 1)))

total = int(psql("SELECT count(*) FROM sends WHERE status = 'sent'")[0])
check(total > 100, "the hammering granted work (%d sends)" % total)
live = "status NOT IN ('cancelled', 'expired')"
worst = psql("""SELECT coalesce(max(n), 0) FROM (SELECT date_trunc('minute', scheduled_at), count(*) n
                FROM sends WHERE %s GROUP BY 1) x""" % live)[0]
check(int(worst) <= GLOBAL_MINUTE, "global minute cap %d exceeded: %s" % (GLOBAL_MINUTE, worst))
worst = psql("""SELECT coalesce(max(n), 0) FROM (SELECT date_trunc('hour', scheduled_at), count(*) n
                FROM sends WHERE %s GROUP BY 1) x""" % live)[0]
check(int(worst) <= GLOBAL_HOUR, "global hour cap %d exceeded: %s" % (GLOBAL_HOUR, worst))
for unit, cap in (("minute", USER_MINUTE), ("hour", USER_HOUR)):
    worst = psql("""SELECT coalesce(max(n), 0) FROM (SELECT m.user_id, date_trunc('%s', s.scheduled_at),
                    count(*) n FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id WHERE s.%s
                    GROUP BY 1, 2) x""" % (unit, live))[0]
    check(int(worst) <= cap, "user %s cap %d exceeded: %s" % (unit, cap, worst))
hit = psql("""SELECT count(*) FROM (SELECT date_trunc('hour', scheduled_at), count(*) n FROM sends
              WHERE %s GROUP BY 1) x WHERE n = %d""" % (live, GLOBAL_HOUR))[0]
ok("8 concurrent leasers: %d sends, no double lease, caps held (hour cap reached %s times)"
   % (total, hit))
