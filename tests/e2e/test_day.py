"""A compressed warmup day end to end: E2E_MAILBOXES mailboxes (default 2,000, the issue's
size: ~34,000 slots, about 55 s of sending on 2 shared cores under ASan) across 3 users
in 3 time zones, daily targets 5-30, three kiln-agent processes
leasing from kiln-api through nginx and sending to three SMTP sinks on 127.0.0.1.
The day is compressed by configuration only: the plan's cooldown is 1-2 s, the window
0-24, and a trigger every few seconds lifts the pacing (docs/leasing.md), so each
mailbox sends its whole target at cooldown spacing. At the end: every mailbox met its
target exactly, the sinks received exactly one message per `sent` slot (by Message-ID),
and the quota endpoint, the metrics and the sends table agree; a SIGTERM drains each
agent to exit 0 with its spool empty."""
import os
import time

from e2elib import Agent, Sink, check, check_endpoints_agree, check_exactly_once, pool, psql, \
    run_until_met, trigger, Triggerer
from kiln_test import ok, set_clock

N = int(os.environ.get("E2E_MAILBOXES", "2000"))
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo"]
# noon UTC: mid-day in all three zones for hours, so no local midnight inside the run
set_clock("2026-06-10T12:00:00Z")
sinks = [Sink("a"), Sink("b"), Sink("c")]
t0 = time.time()
targets = pool(N, sinks, ZONES)
ok("%d mailboxes over 3 users and 3 zones, %d slots owed (%.1f s)"
   % (N, sum(targets.values()), time.time() - t0))

# before the first lease: a grant after a trigger is not paced (a paced first grant
# stores the next pace time in next_at, which a later trigger does not lift)
trigger()
triggers = Triggerer()
agents = [Agent("day-%d" % i) for i in range(3)]
t0 = time.time()
run_until_met(targets, timeout=float(os.environ.get("E2E_DAY_TIMEOUT_S", "150")), agents=agents)
elapsed = time.time() - t0
ok("every mailbox reached its target in %.1f s (%.0f sends/s)"
   % (elapsed, sum(targets.values()) / elapsed))

triggers.stop()
for a in agents:
    rc = a.term()
    check(rc == 0, "agent %s exited %r after SIGTERM:\n%s" % (a.name, rc, a.tail()))
    size = os.path.getsize(os.path.join(a.spool, "results.spool"))
    check(size == 0, "agent %s left %d bytes in its spool after a clean drain" % (a.name, size))
ok("SIGTERM drained all three agents (exit 0, spools empty)")

over = psql("""SELECT m.id, m.daily_target, d.sent FROM mailboxes m JOIN mailbox_days d
    ON d.mailbox_id = m.id AND d.day = (kiln_now() AT TIME ZONE m.timezone)::date
    WHERE d.sent <> m.daily_target""")
check(not over, "%d mailboxes did not send exactly their target: %r" % (len(over), over[:5]))
leased = int(psql("SELECT count(*) FROM sends WHERE status = 'leased'")[0])
check(leased == 0, "%d slots still leased after every agent drained and released" % leased)
ok("every mailbox sent exactly its target; no slot left leased")

received = check_exactly_once(sinks)
ok("the sinks received %d messages: one per sent slot, by Message-ID" % received)
total = check_endpoints_agree(targets)
ok("quota endpoint, metrics and sends table agree (%d sent)" % total)
per_agent = psql("""SELECT a.name, count(*) FROM sends s JOIN leases l ON l.id = s.lease_id
    JOIN agents a ON a.id = l.agent_id WHERE s.status = 'sent' GROUP BY 1 ORDER BY 1""")
ok("work spread over the agents: %s" % ", ".join(per_agent))
