"""test_cancelled_slot_reported_sent_never_overruns_a_cap: a heartbeat cancels a lease's
future slots (the service stopped), but the agent may still send one: the heartbeat's
answer was lost, or came after the slot had started. The mail went out, so its report
counts it as sent; the caps must still hold, so the cancel keeps the slot's share of its
minute/hour buckets (docs/leasing.md "Caps") and no later grant takes that room.

Tight user caps (2 a minute, 3 an hour), two users with three mailboxes each (each
other's recipients): agent A fills both users' hour, the service stops, A's heartbeat cancels its slots, the service starts again,
agent B leases, then A reports every cancelled slot as sent. Asserted from `sends`: per
user and hour (and minute) the slots leased or reported sent stay within the caps, A's
cancelled slots are recorded as sent, and B was not granted the cancelled room."""
import datetime
from leaselib import make_agent, set_clock, lease, report, sent, all_sends, utc, invariants
from kiln_test import admin, call, check, expect, make_plan, make_user, make_mailbox, psql, ok

MINUTE_CAP, HOUR_CAP = 2, 3
start = utc(2026, 3, 4, 10, 0, 0)
set_clock(start)
plan = make_plan("cancel", ramp_start=20, ramp_step=0, daily_max=20, cooldown_min_s=60,
                 cooldown_max_s=90, user_minute_cap=MINUTE_CAP, user_hourly_cap=HOUR_CAP)
users = [make_user("cc%d" % i, plan["id"]) for i in range(2)]
for u in users:
    for j in range(3):
        make_mailbox(u["id"], "c%d@cc%d.test" % (j, u["id"]), timezone="UTC",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")
tok_a, tok_b = make_agent("cancelled"), make_agent("later")

a = lease(tok_a)
a_ids = [s["id"] for s in all_sends(a)]
check(len(a_ids) == 2 * HOUR_CAP, "A fills the users' hour: %d slots of %d: %r"
      % (len(a_ids), 2 * HOUR_CAP, a))
# the service stops; some of A's slots are still in the future when its heartbeat cancels them
set_clock(start + datetime.timedelta(seconds=1))
future = psql("SELECT count(*) FROM sends WHERE lease_id = '%s' AND scheduled_at > kiln_now()"
              % a["lease_id"])[0]
check(int(future) > 0, "A holds future slots to cancel: %s" % future)
expect(admin("POST", "/api/warmup/control", {"action": "stop"}), 200, "stop")
h = expect(call("POST", "/api/agent/heartbeat", {"lease_id": a["lease_id"]}, token=tok_a), 200,
           "heartbeat")
check(sorted(h["cancel"]) == sorted(a_ids), "the stop cancels A's slots: %r" % h)
expect(admin("POST", "/api/warmup/control", {"action": "start"}), 200, "start")
expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")

b = lease(tok_b)
b_ids = [s["id"] for s in all_sends(b)]
# A never saw the cancel (its heartbeat answer was lost): its slots went out.
report(tok_a, a["lease_id"], [sent(i) for i in a_ids])
rows = psql("SELECT status, count(*) FROM sends WHERE id IN (%s) GROUP BY 1"
            % ",".join(str(i) for i in a_ids))
check(rows == ["sent|%d" % len(a_ids)], "a mail that went out is recorded sent: %r" % rows)
check(psql("SELECT sum(sent) FROM mailbox_days") == [str(len(a_ids))],
      "the senders' day counts hold A's mails")

for width, cap in ((60, MINUTE_CAP), (3600, HOUR_CAP)):
    over = psql("""SELECT to_timestamp(floor(extract(epoch FROM s.scheduled_at) / %d) * %d),
                   count(*) FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id
                   WHERE s.status IN ('leased', 'sent', 'unknown')
                   GROUP BY m.user_id, 1 HAVING count(*) > %d""" % (width, width, cap))
    check(not over, "user %ds cap %d exceeded by granted or sent slots: %r (B got %d slots)"
          % (width, cap, over, len(b_ids)))
check(not b_ids, "B gets none of the hour A's cancelled slots still hold: %r" % b_ids)
invariants()
ok("test_cancelled_slot_reported_sent_never_overruns_a_cap")
