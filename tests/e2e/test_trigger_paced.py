"""A trigger lifts pacing for a mailbox that already had a paced grant today
(docs/leasing.md: "a trigger lifts pacing for that mailbox's next grant; cooldown from
the last send and the caps still hold"). 60 mailboxes with target 30, at 00:00:30 UTC in
a 0-24 window: paced, each may send its first slot now and the next one 48 minutes
later. One agent runs 10 s without a trigger (each sends at most 1), then a trigger
should let every mailbox send its whole target at cooldown spacing.

Registered DISABLED: api/lease/lease_plan.c stores the pace time that ended a paced grant in
mailbox_leasing.next_at, which is meant to be "cooldown after the last slot", so the
due_at a trigger recomputes still waits for the pace time (see the issue-5 report)."""
import time

from e2elib import Agent, Sink, check, pool, today_sent, trigger
from kiln_test import ok, set_clock

set_clock("2026-06-10T00:00:30Z")
sink = Sink("pace")
targets = pool(60, [sink], ["UTC", "UTC", "UTC"], seed=9, target_lo=30, target_hi=30)
agent = Agent("pace")
time.sleep(10)
sent = today_sent()
check(all(sent.get(m, 0) <= 1 for m in targets), "pacing let a mailbox send more than one "
      "slot in its first 10 s: %r" % sorted(sent.values())[-5:])
ok("paced: %d sends from %d mailboxes in 10 s" % (sum(sent.values()), len(targets)))
deadline = time.time() + 60
while time.time() < deadline:
    trigger()
    sent = today_sent()
    if all(sent.get(m, 0) >= t for m, t in targets.items()):
        break
    time.sleep(2)
check(all(sent.get(m, 0) >= t for m, t in targets.items()),
      "60 s after the trigger only %d of %d sends went out: the trigger did not lift pacing "
      "for mailboxes with a paced grant" % (sum(sent.values()), sum(targets.values())))
ok("trigger: every mailbox sent its whole target")
check(agent.term() == 0, "agent did not drain")
