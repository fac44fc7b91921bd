"""test_global_caps_of_0_are_no_cap: KILN_GLOBAL_MINUTE_CAP=0 and KILN_GLOBAL_HOURLY_CAP=0
(set for this test in CMakeLists.txt) lift the global caps, as deploy/config/api.env says;
until session 35 a 0 granted nothing at all. The plan's user caps still bind: a user whose
plan has user_minute_cap 0 gets no slot."""
from leaselib import make_agent, set_clock, lease, all_sends, utc, invariants
from kiln_test import admin, check, expect, make_plan, make_user, make_mailbox, psql, ok

set_clock(utc(2026, 3, 4, 10, 0, 0))
plan = make_plan("open", ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60,
                 cooldown_max_s=90, user_minute_cap=1000, user_hourly_cap=10000)
shut = make_plan("shut", ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60,
                 cooldown_max_s=90, user_minute_cap=0, user_hourly_cap=10000)
users = [make_user("open%d" % i, plan["id"]) for i in range(3)]
closed = make_user("closed", shut["id"])
for u in users + [closed]:
    for j in range(4):
        make_mailbox(u["id"], "m%d@u%d.test" % (j, u["id"]), timezone="UTC",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")

a = lease(make_agent("caps-off"))
slots = all_sends(a)
owners = {m["id"]: int(psql("SELECT user_id FROM mailboxes WHERE id = %d" % m["id"])[0])
          for m in a["mailboxes"] if m["sends"]}
open_ids = {u["id"] for u in users}
check(len(slots) >= 12, "with both global caps 0 the lease has slots for the 12 open "
      "mailboxes: %d slots" % len(slots))
check(set(owners.values()) == open_ids, "every open user's mailboxes are granted, the user "
      "whose plan caps a minute at 0 none: owners %r" % sorted(set(owners.values())))
caps = psql("SELECT DISTINCT cap FROM slot_buckets WHERE user_id = 0 AND n > 0")
check(caps == ["2147483647"], "the global buckets were reserved under no cap: %r" % caps)
invariants()
ok("test_global_caps_of_0_are_no_cap")
