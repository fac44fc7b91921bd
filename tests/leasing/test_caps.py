"""test_32_leasers_never_exceed_a_cap: 32 concurrent leasers (KILN_THREADS=32, so 32
transactions grant at once) run lease -> report loops through nginx against 32 users of
two plans with tight caps, while the test clock jumps 25 minutes every 0.5 s (so grants
straddle minute and hour boundaries, and leases expire under the leasers).

Asserted from the `sends` table (every slot not expired or cancelled, by minute and hour
of its scheduled time, as the caps are defined in docs/leasing.md): the global minute and
hour caps, each user's minute and hour caps of its own plan, the recipients' daily inbound
cap and the daily targets were never exceeded; the caps were reached (so they bound the
run and the test can fail); no slot was handed out twice; counters agree with the sends."""
import datetime
import threading
import time
from leaselib import make_agent, set_clock, sent, all_sends, utc, invariants, clone_mailboxes
from kiln_test import call, check, expect, admin, make_plan, make_user, make_mailbox, psql, ok

GLOBAL_MINUTE, GLOBAL_HOUR, RECIPIENT_DAY = 24, 150, 8  # see CMakeLists.txt
PLANS = {"capa": (2, 12), "capb": (3, 20)}               # user minute, user hour
LEASERS, USERS, PER_USER = 32, 32, 8
STEPS, STEP_S, STEP_MIN, MAX_S = 16, 0.5, 25, 100.0     # 16 steps: under a day

start = utc(2026, 3, 4, 0, 0, 0)
set_clock(start)
plans = {name: make_plan(name, ramp_start=20, ramp_step=0, daily_max=20, cooldown_min_s=1,
                         cooldown_max_s=3, user_minute_cap=um, user_hourly_cap=uh)
         for name, (um, uh) in PLANS.items()}
users = [make_user("k%d" % i, plans["capa" if i % 2 else "capb"]["id"]) for i in range(USERS)]
first = make_mailbox(users[0]["id"], "x0@k0.test", timezone="UTC",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
# The rest copy the first one's sealed secret: the API would take minutes for 256.
n = clone_mailboxes(first, users[0]["id"], "k", PER_USER)
check(n == USERS * PER_USER, "%d mailboxes, expected %d" % (n, USERS * PER_USER))
expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")
tokens = [make_agent("caps-%d" % i) for i in range(LEASERS)]

lock = threading.Lock()
handed = set()
errors = []
stats = {"leases": 0, "empty": 0}
stop = threading.Event()
go = threading.Barrier(LEASERS + 1)


def busy_retried(path, body, token):
    """An agent call, sent again (at most 5 times) while kiln-api answers 503 "busy": it
    retried its own transaction already and asks the caller to, as kiln-agent does."""
    for _ in range(5):
        r = call("POST", path, body, token=token, timeout=60)
        if r.status != 503 or not r.json or (r.json.get("error") or {}).get("code") != "busy":
            break
        time.sleep(0.2)
    return r


def leaser(token):
    try:
        go.wait()
        while not stop.is_set():
            r = busy_retried("/api/agent/lease", {"agent": "c", "max_mailboxes": 4,
                                                  "max_sends": 12}, token)
            check(r.status == 200, "lease answered %r" % r)
            sends = all_sends(r.json)
            with lock:
                dup = handed.intersection(s["id"] for s in sends)
                handed.update(s["id"] for s in sends)
                stats["leases" if sends else "empty"] += 1
            check(not dup, "sends handed out twice: %r" % sorted(dup)[:5])
            if not sends:
                time.sleep(0.1)
                continue
            rr = busy_retried("/api/agent/report", {"lease_id": r.json["lease_id"],
                                                    "results": [sent(s["id"]) for s in sends]},
                              token)
            check(rr.status == 200, "report answered %r" % rr)
    except SystemExit as e:  # check() inside a thread
        errors.append(str(e))
    except Exception as e:  # noqa: BLE001  (a thread must not die silently)
        errors.append(repr(e))


threads = [threading.Thread(target=leaser, args=(t,)) for t in tokens]
for t in threads:
    t.start()
go.wait()
t0 = time.time()
step = 0
while step < STEPS and time.time() - t0 < MAX_S:  # steps, not seconds: the box may be slow
    time.sleep(STEP_S)
    step += 1
    set_clock(start + datetime.timedelta(minutes=STEP_MIN * step))
stop.set()
for t in threads:
    t.join(90)
check(not any(t.is_alive() for t in threads), "leaser threads did not finish")
check(not errors, "leasers failed: %r" % errors[:5])
summary = ("%d leasers: %d leases (%d empty answers), %d sends over %d clock steps of %d min"
           % (LEASERS, stats["leases"], stats["empty"], len(handed), step, STEP_MIN))
check(len(handed) > 300, "the run handed out too little work to test the caps: " + summary)
invariants()
ok(summary)

# The caps as docs/leasing.md defines them: slots per minute / hour of scheduled time
# (floor of the epoch second, UTC), every slot that may go out (not expired/cancelled).
LIVE = "s.status NOT IN ('cancelled', 'expired')"


def worst(group, join="", cap_expr=None):
    """Largest count over the groups, and how many groups are over cap_expr."""
    over = "0" if cap_expr is None else "count(*) FILTER (WHERE n > cap)"
    row = psql("""SELECT coalesce(max(n), 0), %s FROM (SELECT %s, %s AS cap, count(*) n
                  FROM sends s %s WHERE %s GROUP BY 1, 2, 3) x"""
               % (over, group, cap_expr or "0", join, LIVE))[0].split("|")
    return int(row[0]), int(row[1])


def bucket(width):
    return "to_timestamp(floor(extract(epoch FROM s.scheduled_at) / %d) * %d)" % (width, width)


def grants_into(width, cap, join="", key="1"):
    """For a failure message: the grants (kiln_now() at the lease's insert) that put slots
    into the fullest bucket over cap."""
    return psql("""WITH b AS (SELECT %s AS k, %s AS at FROM sends s %s WHERE %s
                   GROUP BY 1, 2 HAVING count(*) > %d ORDER BY count(*) DESC LIMIT 1)
                   SELECT b.at, l.created_at, count(*) FROM b JOIN sends s ON %s = b.at
                   %s JOIN leases l ON l.id = s.lease_id WHERE %s AND %s = b.k
                   GROUP BY 1, 2 ORDER BY 2"""
                % (key, bucket(width), join, LIVE, cap, bucket(width), join, LIVE, key))


for width, cap, name in ((60, GLOBAL_MINUTE, "minute"), (3600, GLOBAL_HOUR, "hour")):
    top, _ = worst("1, " + bucket(width))
    check(top <= cap, "global %s cap %d exceeded: %d; bucket, grant time, slots:\n%s"
          % (name, cap, top, "\n".join(grants_into(width, cap))))
    check(top == cap, "the global %s cap %d was never reached (at most %d): the run did not "
          "test it" % (name, cap, top))
plan_join = ("JOIN mailboxes m ON m.id = s.mailbox_id JOIN users u ON u.id = m.user_id "
             "JOIN plans p ON p.id = u.plan_id")
for width, col, name in ((60, "user_minute_cap", "minute"), (3600, "user_hourly_cap", "hour")):
    top, nover = worst("m.user_id, " + bucket(width), plan_join, "p." + col)
    check(nover == 0, "user %s caps exceeded in %d buckets (largest count %d); bucket, grant "
          "time, slots of the worst:\n%s" % (name, nover, top, "\n".join(
              grants_into(width, top - 1, plan_join, "m.user_id"))))
    at_cap = int(psql("""SELECT count(*) FROM (SELECT count(*) n, min(p.%s) cap FROM sends s %s
                         WHERE %s GROUP BY m.user_id, %s) x WHERE n = cap"""
                      % (col, plan_join, LIVE, bucket(width)))[0])
    check(at_cap > 0, "no user ever reached its %s cap: the run did not test it" % name)
top, _ = worst("s.recipient_id, s.day")
check(top <= RECIPIENT_DAY, "recipient daily cap %d exceeded: %d" % (RECIPIENT_DAY, top))
over = psql("""SELECT d.mailbox_id, d.day, d.sent FROM mailbox_days d JOIN mailboxes m
               ON m.id = d.mailbox_id JOIN users u ON u.id = m.user_id JOIN plans p
               ON p.id = u.plan_id WHERE d.sent > p.daily_max""")
check(not over, "daily targets exceeded: %r" % over[:5])
ok("global minute/hour caps, every user's plan caps, the recipients' daily cap and the "
   "daily targets held under %d leasers, and each cap was reached" % LEASERS)
