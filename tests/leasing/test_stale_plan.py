"""test_a_stalled_grant_is_not_written: a grant plans at the clock of its first statement
and reserves its cap shares last. When that reservation waits (here on a global hour
bucket another transaction holds) while the clock moves on, the plan's slots would start
in the past (a burst to the agent) and its buckets may be past the 2-hour trim, where a
fresh row counts from zero: leasing_caps saw a grant that waited 4.5 s while the test
clock jumped 3 h 45 min put the global hour 00:00 at 198 of 150. A plan older than
LEASE_PLAN_MAX_AGE_S (60 s) is therefore not written: the answer is empty with
retry_after_s 1, nothing is left in `sends`, and the next lease plans at the new clock.

The hold is a real PostgreSQL row lock from a second session (a psql the test keeps
open); the test then moves the test clock 3 hours and lets the lock go."""
import datetime
import os
import subprocess
import threading
import time
from leaselib import make_agent, make_pool, set_clock, lease, all_sends, utc, invariants
from kiln_test import SRC, VAR, BUILD, check, make_plan, psql, ok, wait_for

start = utc(2026, 3, 4, 10, 0, 0)
set_clock(start)
plan = make_plan("stale", ramp_start=10, ramp_step=0, daily_max=10, cooldown_min_s=30,
                 cooldown_max_s=60)
make_pool(plan["id"], "st", 3, 2)
tok = make_agent("stalled")

# A second session takes the global hour bucket of 10:00 (user 0, 3600 s) and keeps it.
holder = subprocess.Popen(
    ["bash", "-c", 'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
     'STACK_PG_PORT=$STACK_PG_PORT stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; '
     'stack_psql -tA -v ON_ERROR_STOP=1', SRC, VAR, BUILD],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
holder.stdin.write("BEGIN;\nINSERT INTO slot_buckets (user_id, width_s, at, n, cap) VALUES "
                   "(0, 3600, '2026-03-04 10:00:00+00', 0, 1000000) ON CONFLICT DO NOTHING;\n"
                   "SELECT 1 FROM slot_buckets WHERE user_id = 0 AND width_s = 3600 AND "
                   "at = '2026-03-04 10:00:00+00' FOR UPDATE;\nSELECT 'held';\n")
holder.stdin.flush()
line = ""
deadline = time.time() + 20
while "held" not in line and time.time() < deadline:
    line = holder.stdout.readline()
check("held" in line, "the second session holds the bucket row (%r)" % line)

answer = {}


def lease_in_thread():
    answer["a"] = lease(tok)


t = threading.Thread(target=lease_in_thread)
t.start()
wait_for(lambda: int(psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                          "AND query LIKE '%slot_buckets%'")[0]) > 0,
         "the grant's reservation waits for the held bucket", timeout=20)
set_clock(start + datetime.timedelta(hours=3))
holder.stdin.write("COMMIT;\n\\q\n")
holder.stdin.flush()
holder.wait(20)
t.join(30)
check(not t.is_alive() and "a" in answer, "the stalled lease call answered")
a = answer["a"]
if a["lease_id"]:
    early = psql("SELECT count(*), min(scheduled_at) FROM sends WHERE lease_id = '%s' AND "
                 "scheduled_at < kiln_now() - interval '60 seconds'" % a["lease_id"])[0]
    check(early.startswith("0|"), "a grant planned 3 h ago was written: %s slots of %d "
          "scheduled in the past (count|first)" % (early, len(all_sends(a))))
check(a["lease_id"] is None and a["retry_after_s"] == 1,
      "the stale grant answers empty, come back in 1 s: %r" % {k: a[k] for k in
                                                                ("lease_id", "retry_after_s")})
check(psql("SELECT count(*) FROM sends") == ["0"], "the stale grant left no sends")
log = open(os.path.join(VAR, "log", "kiln-api.log"), encoding="utf-8", errors="replace").read()
check("planned more than 60 s ago was not written" in log, "kiln-api logs the stale grant")

b = lease(tok)
slots = all_sends(b)
check(slots, "the next lease plans at the new clock and grants: %r" % b)
first = psql("SELECT min(scheduled_at) >= '2026-03-04 13:00:00+00', min(scheduled_at) "
             "FROM sends WHERE lease_id = '%s'" % b["lease_id"])[0].split("|")
check(first[0] == "t", "its slots start at the new clock: first %s" % first[1])
invariants()
ok("a grant whose reservation waited while the clock moved 3 h was not written (empty "
   "answer, retry in 1 s); the next lease planned at 13:00 with %d slots" % len(slots))
