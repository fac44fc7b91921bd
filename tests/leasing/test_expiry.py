"""Expiry with no agent calling, and a leaser that vanishes: after its ttl the stats
refresher's sweep ends the lease (slots 'expired', mailboxes back in the pool) without
any lease or heartbeat call; another leaser then takes the mailboxes and every
mailbox still sends exactly its quota by the end of its window."""
import datetime
import time
from leaselib import make_agent, set_clock, lease, report, sent, all_sends, utc, invariants
from kiln_test import call, check, expect_error, make_plan, make_user, make_mailbox, psql, ok

TARGET = 4
start = utc(2026, 3, 4, 10, 0, 0)  # a Wednesday; windows are 10:00-12:00 UTC
set_clock(start)
plan = make_plan("expiry", ramp_start=TARGET, ramp_step=0, daily_max=TARGET, cooldown_min_s=60,
                 cooldown_max_s=90)
users = [make_user("e%d" % i, plan["id"]) for i in range(3)]
for u in users:
    for j in range(2):
        make_mailbox(u["id"], "v%d@e%d.test" % (j, u["id"]), timezone="UTC",
                     window={"start_hour": 10, "end_hour": 12}, warmup_start="2026-03-01")
tok_a = make_agent("vanishing")
tok_b = make_agent("survivor")

a = lease(tok_a)
a_boxes = {m["id"] for m in a["mailboxes"]}
check(len(a_boxes) == 6, "the first leaser holds all 6 mailboxes: %r" % a)
a_slots = len(all_sends(a))
check(psql("SELECT count(*) FROM sends WHERE lease_id = '%s' AND status = 'leased'"
           % a["lease_id"]) == [str(a_slots)], "slots leased before the ttl")

# The leaser vanishes: no report, heartbeat or release. Past its ttl, with nobody
# calling the agent endpoints, the stats refresher (KILN_STATS_INTERVAL_S=1) sweeps.
set_clock(start + datetime.timedelta(seconds=a["ttl_s"] + 1))
deadline = time.monotonic() + 15
state = None
while time.monotonic() < deadline:
    state = psql("""SELECT (SELECT ended_at IS NOT NULL FROM leases WHERE id = '%s'),
        (SELECT count(*) FROM sends WHERE lease_id = '%s' AND status = 'expired'),
        (SELECT count(*) FROM mailbox_leasing WHERE lease_id = '%s')"""
                 % ((a["lease_id"],) * 3))[0]
    if state == "t|%d|0" % a_slots:
        break
    time.sleep(0.3)
check(state == "t|%d|0" % a_slots,
      "lease ended, %d slots expired, mailboxes free without an agent call; got %s"
      % (a_slots, state))
check(psql("SELECT coalesce(sum(in_flight), 0) FROM mailbox_days") == ["0"],
      "expired slots no longer count in flight")
invariants()
ok("a lease expires with no agent calling: %d slots 'expired', mailboxes back in the pool"
   % a_slots)

# Another leaser takes the mailboxes and runs the rest of the window: every slot it
# gets goes out on time, reported at the next step.
t = start + datetime.timedelta(seconds=a["ttl_s"] + 1)
first = lease(tok_b)
check({m["id"] for m in first["mailboxes"]} == a_boxes,
      "the survivor takes the vanished leaser's mailboxes: %r" % first["mailboxes"])
pending = [(first["lease_id"], [s["id"] for s in all_sends(first)])]
end = utc(2026, 3, 4, 12, 10, 0)
for _ in range(30):
    if t > end:
        break
    t += datetime.timedelta(seconds=600)
    set_clock(t)
    for lease_id, ids in pending:
        report(tok_b, lease_id, [sent(i) for i in ids])
    pending = []
    b = lease(tok_b)
    if b["lease_id"]:
        pending.append((b["lease_id"], [s["id"] for s in all_sends(b)]))
for lease_id, ids in pending:
    report(tok_b, lease_id, [sent(i) for i in ids])
invariants()
short = psql("""SELECT m.id, coalesce(d.sent, 0) FROM mailboxes m LEFT JOIN mailbox_days d
                ON d.mailbox_id = m.id AND d.day = '2026-03-04' WHERE coalesce(d.sent, 0) <> %d"""
             % TARGET)
check(not short, "every mailbox sends exactly %d, short/over: %r" % (TARGET, short))
late = psql("""SELECT s.id FROM sends s WHERE s.status = 'sent' AND
               (s.scheduled_at < '2026-03-04 10:00Z' OR s.scheduled_at >= '2026-03-04 12:00Z')""")
check(not late, "sends outside the window: %r" % late)
check(psql("SELECT count(*) FROM sends WHERE lease_id = '%s' AND status <> 'expired'"
           % a["lease_id"]) == ["0"], "the vanished leaser's slots stay 'expired'")
expect_error(call("POST", "/api/agent/heartbeat", {"lease_id": a["lease_id"]}, token=tok_a), 409)
ok("after the vanished leaser's ttl the survivor met the quota (%d x %d sends)"
   % (len(a_boxes), TARGET))
