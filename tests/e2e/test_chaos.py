"""Chaos during a compressed day (E2E_CHAOS_MAILBOXES, default 300, over 3 users and
zones, targets 5-30, as in test_day.py): two agents lease and send while
  - one is killed with SIGKILL mid-lease; it is restarted on its spool (the replay
    reports intents without an outcome as `unknown` and releases its old leases) and a
    third, fresh agent joins;
  - kiln-api is restarted;
  - PostgreSQL is stopped for 20 s;
  - one SMTP host answers 421 for the first 15 s, another refuses one mailbox's AUTH
    with 535.
Afterwards: no message reached a server twice, every message received is counted (sent
or unknown), every slot counted as sent was received, the mailbox with bad credentials
is in `error` with the server's reason, and every other mailbox met its target exactly."""
import os
import time

from e2elib import Agent, Sink, Triggerer, check, check_exactly_once, pool, psql, run_until_met, \
    stack, trigger
from kiln_test import ok, set_clock

N = int(os.environ.get("E2E_CHAOS_MAILBOXES", "300"))
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo"]
set_clock("2026-06-10T12:00:00Z")
bad_addr = "m2@u2-d2.test"  # pool(): mailbox 2 sends through the third sink
sinks = [Sink("ok"), Sink("busy", busy=True), Sink("auth", bad_user=bad_addr)]
targets = pool(N, sinks, ZONES, seed=11)
bad_id = int(psql("SELECT id FROM mailboxes WHERE address = '%s'" % bad_addr)[0])
trigger()
triggers = Triggerer()
# each agent holds at most 1,200 slots, so the work is spread and the killed one is
# surely mid-lease
small = {"KILN_AGENT_MAX_OUTSTANDING": "1200"}
a1, a2 = Agent("chaos-1", small), Agent("chaos-2", small)
agents = [a1, a2]


def received():
    return sum(len(s.received()) for s in sinks)


def wait_received(n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline and received() < n:
        time.sleep(0.2)


t0 = time.time()
wait_received(300)
check("lease " in open(a1.log).read(), "chaos-1 holds no lease to be killed in")
a1.kill9()
ok("agent chaos-1 killed with SIGKILL after %d messages" % received())
a1.start()
a3 = Agent("chaos-3", small)
agents.append(a3)
ok("chaos-1 restarted on its spool, chaos-3 joined")

wait_received(received() + 300)
stack("stack_api_down", "stack_api_up")
ok("kiln-api restarted")

wait_received(received() + 300)
stack("stack_pg_down")
time.sleep(20)
stack("stack_pg_up")
ok("PostgreSQL was down for 20 s")
sinks[1].set_busy(False)
ok("the busy host accepts mail again after %.0f s" % (time.time() - t0))

run_until_met(targets, timeout=float(os.environ.get("E2E_CHAOS_TIMEOUT_S", "120")),
              skip={bad_id}, agents=agents)
ok("every mailbox but the one with bad credentials met its target (%.0f s in all)"
   % (time.time() - t0))

triggers.stop()
for a in agents:
    rc = a.term()
    check(rc == 0, "agent %s exited %r after SIGTERM:\n%s" % (a.name, rc, a.tail()))

state = psql("SELECT state, last_error FROM mailboxes WHERE id = %d" % bad_id)[0].split("|", 1)
check(state[0] == "error", "mailbox %s is %r, expected error" % (bad_addr, state))
check("535" in state[1] or "uthentication" in state[1],
      "mailbox %s last_error does not give the server's reason: %r" % (bad_addr, state[1]))
ok("%s is in error: %s" % (bad_addr, state[1]))

over = psql("""SELECT m.id, m.daily_target, d.sent FROM mailboxes m JOIN mailbox_days d
    ON d.mailbox_id = m.id AND d.day = (kiln_now() AT TIME ZONE m.timezone)::date
    WHERE d.sent <> m.daily_target AND m.id <> %d""" % bad_id)
check(not over, "%d mailboxes did not send exactly their target: %r" % (len(over), over[:5]))
n = check_exactly_once(sinks)
unknown = int(psql("SELECT count(*) FROM sends WHERE status = 'unknown'")[0])
deferred = int(psql("SELECT count(*) FROM sends WHERE status = 'deferred'")[0])
ok("%d messages received, none twice, all counted; %d slots unknown after the SIGKILL, "
   "%d deferred and granted again" % (n, unknown, deferred))
replay = open(a1.log).read()
check("spool replay" in replay, "chaos-1 did not replay its spool after the SIGKILL")
ok("chaos-1 replayed its spool after the restart")
