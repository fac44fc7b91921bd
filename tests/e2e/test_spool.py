"""The report spool end to end (one agent, one SMTP sink, 120 mailboxes):
  - the control plane is unreachable for 15 s (nginx stopped) while the agent sends the
    slots it holds: nothing is lost, every result reaches kiln-api once it is back;
  - after a SIGKILL, a torn record at the end of the spool (half a record, as a crash
    in write(2) leaves it) is detected and cut, the agent starts and goes on;
  - the agent's /metrics shows it: report failures and unreported results during the
    outage, then reports accepted and nothing left unreported.
At the end: every mailbox met its target exactly, one message per sent slot."""
import os
import socket
import struct
import time
import urllib.request

from e2elib import Agent, Sink, Triggerer, check, check_exactly_once, pool, psql, \
    run_until_met, stack, trigger
from kiln_test import ok, set_clock

set_clock("2026-06-10T12:00:00Z")
sink = Sink("spool")
targets = pool(120, [sink], ["UTC", "UTC", "UTC"], seed=3, target_lo=20, target_hi=30)
trigger()
triggers = Triggerer()
with socket.socket() as s_:
    s_.bind(("127.0.0.1", 0))
    MPORT = s_.getsockname()[1]
agent = Agent("spool", env={"KILN_AGENT_METRICS_PORT": str(MPORT)})


def agent_metrics():
    """The agent's /metrics as {series: value}."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = opener.open("http://127.0.0.1:%d/metrics" % MPORT, timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in body.splitlines() if line and not line.startswith("#")}


def received():
    return len(sink.received())


deadline = time.time() + 30
while received() < 200 and time.time() < deadline:
    time.sleep(0.2)
stack("stack_nginx_down")
down_at = received()
time.sleep(15)
during = received() - down_at
m = agent_metrics()
stack("stack_nginx_up")
check(during > 0, "the agent sent nothing while the control plane was away")
check(m["kiln_agent_leases_total"] >= 1 and m["kiln_agent_report_failures_total"] >= 1
      and m["kiln_agent_results_unreported"] >= 1 and m["kiln_agent_spool_bytes"] > 0,
      "the agent's metrics do not show the outage: %r"
      % {k: v for k, v in m.items() if "lease" in k or "report" in k or "spool" in k})
ok("agent metrics during the outage: %d report failures, %d results unreported"
   % (m["kiln_agent_report_failures_total"], m["kiln_agent_results_unreported"]))
ok("control plane unreachable for 15 s; the agent sent %d messages meanwhile" % during)

# The agent goes on sending meanwhile: each check is of one reading (received first, so a
# message that lands between the two reads is not counted as unreported).
deadline = time.time() + 30
while time.time() < deadline:
    got = received()
    counted = int(psql("SELECT count(*) FROM sends WHERE status IN ('sent', 'unknown')")[0])
    if counted >= got:
        break
    time.sleep(0.5)
check(counted >= got, "only %d of %d received messages reported 30 s after the control "
      "plane came back" % (counted, got))
check("kept in the spool" in open(agent.log).read(), "the agent did not say it kept results")
ok("every result of the outage reached kiln-api once it was back (%d counted)" % counted)
deadline = time.time() + 15
m = agent_metrics()
while m["kiln_agent_results_unreported"] > 0 and time.time() < deadline:
    time.sleep(0.3)
    m = agent_metrics()
check(m["kiln_agent_results_unreported"] == 0 and m["kiln_agent_reported_total"] >= counted
      and abs(m["kiln_agent_last_report_timestamp_seconds"] - time.time()) < 60,
      "the agent's metrics after the outage: %r"
      % {k: v for k, v in m.items() if "report" in k})
ok("agent metrics after it: %d reported, none left unreported" % m["kiln_agent_reported_total"])

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
