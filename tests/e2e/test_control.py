"""Service control end to end (one agent, heartbeat every 2 s, one SMTP sink):
  - stop: the agent stops sending within one heartbeat (+ a second for the round trip),
    the slots it held but had not sent become `cancelled`, and none stays `leased`;
  - start: sending resumes; SIGHUP reloads the configuration without a pause;
  - trigger: behind mailboxes (it is noon, half their day is gone and they sent nothing)
    send their whole target at cooldown spacing within a minute, where pacing alone
    would spread it until midnight."""
import signal
import time

from e2elib import Agent, Sink, check, control, pool, psql, today_sent, trigger
from kiln_test import ok, set_clock

HEARTBEAT_S = 2
set_clock("2026-06-10T12:00:00Z")
sink = Sink("ctl")
# three users: recipients are always another user's mailboxes
targets = pool(120, [sink], ["UTC", "UTC", "UTC"], seed=5, target_lo=20, target_hi=30)
trigger()
agent = Agent("ctl", {"KILN_AGENT_HEARTBEAT_S": str(HEARTBEAT_S)})


def received():
    return len(sink.received())


deadline = time.time() + 30
while received() < 300 and time.time() < deadline:
    time.sleep(0.2)
check(received() >= 300, "only %d messages in 30 s before the stop" % received())

control("stop")
stopped_at = time.time()
# Quiet for a heartbeat and a second: the stop reached the agent. Within three heartbeats
# of the stop (one heartbeat slowed by a loaded box is not a failure; sending on is).
settled, last_new = received(), time.time()
while time.time() - last_new < HEARTBEAT_S + 1 and time.time() < stopped_at + 3 * HEARTBEAT_S + 2:
    time.sleep(0.25)
    n = received()
    if n != settled:
        settled, last_new = n, time.time()
check(time.time() - last_new >= HEARTBEAT_S + 1,
      "the agent kept sending after the stop: %d messages, the last %.1f s after it"
      % (settled, last_new - stopped_at))
time.sleep(2 * HEARTBEAT_S + 1)
after = received()
check(after == settled, "the agent sent again after the stop: %d messages, then %d %.1f s later"
      % (settled, after, 2 * HEARTBEAT_S + 1))
ok("stop: the last message seen %.1f s after the stop (%d sent in all), none %.0f s later"
   % (last_new - stopped_at, settled, 2 * HEARTBEAT_S + 1))

deadline = time.time() + 15
while time.time() < deadline:
    leased = int(psql("SELECT count(*) FROM sends WHERE status = 'leased'")[0])
    if leased == 0:
        break
    time.sleep(0.5)
check(leased == 0, "%d slots still leased %.0f s after the stop" % (leased, time.time() - stopped_at))
cancelled = int(psql("SELECT count(*) FROM sends WHERE status = 'cancelled'")[0])
check(cancelled > 0, "no slot was cancelled by the stop")
ok("stop: %d leased-but-unsent slots cancelled, none left leased" % cancelled)

control("start")
trigger()
deadline = time.time() + 20
while received() <= after and time.time() < deadline:
    time.sleep(0.2)
check(received() > after, "nothing sent within 20 s of start")
ok("start: sending resumed (%d messages)" % received())

agent.p.send_signal(signal.SIGHUP)
deadline = time.time() + 5
while "configuration reloaded" not in open(agent.log).read() and time.time() < deadline:
    time.sleep(0.1)
check("configuration reloaded" in open(agent.log).read() and agent.alive(),
      "SIGHUP did not reload the configuration:\n%s" % agent.tail())
ok("SIGHUP: configuration reloaded while sending")

# trigger: run to completion, each mailbox at cooldown spacing
t0 = time.time()
deadline = t0 + 90
while time.time() < deadline:
    trigger()
    sent = today_sent()
    short = [m for m, t in targets.items() if sent.get(m, 0) < t]
    if not short:
        break
    time.sleep(2)
check(not short, "%d behind mailboxes still short 90 s after the triggers" % len(short))
over = [m for m, t in targets.items() if sent.get(m, 0) != t]
check(not over, "mailboxes over their target: %r" % over[:5])
ok("trigger: %d behind mailboxes sent their whole target (%d) %.0f s after start; paced, "
   "they would have spread it until midnight" % (len(targets), sum(targets.values()),
                                                 time.time() - t0))
rc = agent.term()
check(rc == 0, "agent exited %r after SIGTERM" % rc)
dups = len(sink.received()) - len(set(m for _, m in sink.received()))
check(dups == 0, "%d messages received twice" % dups)
