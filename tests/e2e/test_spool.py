"""The report spool end to end (one agent, one SMTP sink, 120 mailboxes):
  - the control plane is unreachable for 15 s (nginx stopped) while the agent sends the
    slots it holds: nothing is lost, every result reaches kiln-api once it is back;
  - after a SIGKILL, a torn record at the end of the spool (half a record, as a crash
    in write(2) leaves it) is detected and cut, the agent starts and goes on.
At the end: every mailbox met its target exactly, one message per sent slot."""
import os
import struct
import time

from e2elib import Agent, Sink, Triggerer, check, check_exactly_once, pool, psql, \
    run_until_met, stack, trigger
from kiln_test import ok, set_clock

set_clock("2026-06-10T12:00:00Z")
sink = Sink("spool")
targets = pool(120, [sink], ["UTC", "UTC", "UTC"], seed=3, target_lo=20, target_hi=30)
trigger()
triggers = Triggerer()
agent = Agent("spool")


def received():
    return len(sink.received())


deadline = time.time() + 30
while received() < 200 and time.time() < deadline:
    time.sleep(0.2)
stack("stack_nginx_down")
down_at = received()
time.sleep(15)
during = received() - down_at
stack("stack_nginx_up")
check(during > 0, "the agent sent nothing while the control plane was away")
ok("control plane unreachable for 15 s; the agent sent %d messages meanwhile" % during)

deadline = time.time() + 30
while time.time() < deadline:
    counted = int(psql("SELECT count(*) FROM sends WHERE status IN ('sent', 'unknown')")[0])
    if counted >= received():
        break
    time.sleep(0.5)
check(counted >= received(), "only %d of %d received messages reported 30 s after the control "
      "plane came back" % (counted, received()))
check("kept in the spool" in open(agent.log).read(), "the agent did not say it kept results")
ok("every result of the outage reached kiln-api once it was back (%d counted)" % counted)

agent.kill9()
spool_file = os.path.join(agent.spool, "results.spool")
size = os.path.getsize(spool_file)
with open(spool_file, "ab") as f:
    # a record header promising 200 payload bytes, and only 10 of them
    f.write(struct.pack("<III", 0x3150534B, 200, 0) + b"x" * 10)
agent.start()
deadline = time.time() + 10
while "spool replay" not in open(agent.log).read() and time.time() < deadline:
    time.sleep(0.2)
log = open(agent.log).read()
check("22 torn bytes cut" in log, "the torn record was not reported as cut:\n%s" % agent.tail())
ok("torn last record after SIGKILL detected and cut (spool was %d bytes)" % size)

run_until_met(targets, timeout=90, agents=[agent])
triggers.stop()
rc = agent.term()
check(rc == 0, "agent exited %r after SIGTERM" % rc)
over = [k for k, v in targets.items() if v != int(psql(
    "SELECT coalesce(max(sent), 0) FROM mailbox_days WHERE mailbox_id = %d" % k)[0])]
check(not over, "mailboxes not exactly at their target: %r" % over[:5])
n = check_exactly_once([sink])
ok("every mailbox met its target; %d messages, none lost, none twice" % n)
