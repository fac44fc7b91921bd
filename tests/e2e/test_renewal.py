"""Heartbeats renew a lease, and the agent's engine follows: with a 10 s lease ttl, a
2 s lease margin and a heartbeat every 2 s, slots the planner put near the end of the
lease horizon are sent after the first expiry instead of ending `deferred` with "not
sent: lease deadline reached" (docs/agent-run.md, engine_extend). 40 mailboxes,
triggered every 2 s for 30 s against one smtp-sink."""
import time

from e2elib import Agent, Sink, Triggerer, check, pool, psql, trigger
from kiln_test import ok, set_clock

set_clock("2026-06-10T12:00:00Z")
sink = Sink("renew")
pool(40, [sink], ["UTC", "UTC", "UTC"], seed=5, target_lo=20, target_hi=30)
trigger()
triggers = Triggerer()
agent = Agent("renew", env={"KILN_AGENT_HEARTBEAT_S": "2"})
time.sleep(30)
triggers.stop()
check(agent.term() == 0, "agent did not drain:\n%s" % agent.tail())
sent = int(psql("SELECT count(*) FROM sends WHERE status = 'sent'")[0])
late = int(psql("SELECT count(*) FROM sends WHERE detail LIKE '%lease deadline%'")[0])
beats = open(agent.log).read().count("heartbeat")
check(sent >= 200, "only %d slots sent in 30 s" % sent)
check(late == 0, "%d slots ended 'lease deadline reached' although every lease was renewed "
      "(%d sent)" % (late, sent))
ok("%d slots sent over leases of 10 s renewed every 2 s; none cut by the first expiry" % sent)
