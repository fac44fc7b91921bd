"""test_a_heartbeat_never_revives_an_expired_lease: a lease past its expiry that the
sweep has not ended yet is not renewed by a late heartbeat (409 lease_expired, as
docs/leasing.md says). A call's sweep ends at most 100 expired leases, oldest first, so
after a fleet outage more wait; the stats thread's sweep is off here (CMakeLists.txt)
and 150 older expired leases stand before this one. Until session 35 the heartbeat
extended it, and its agent kept slots that were already back in the pool."""
import datetime
from leaselib import make_agent, set_clock, lease, all_sends, utc
from kiln_test import call, check, expect, expect_error, make_plan, make_user, make_mailbox, psql, ok

start = utc(2026, 3, 4, 10, 0, 0)
set_clock(start)
plan = make_plan("renew", ramp_start=4, ramp_step=0, daily_max=4, cooldown_min_s=60,
                 cooldown_max_s=90)
users = [make_user("r%d" % i, plan["id"]) for i in range(2)]
for u in users:
    make_mailbox(u["id"], "m@r%d.test" % u["id"], timezone="UTC",
                 window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
tok = make_agent("late")
a = lease(tok)
check(all_sends(a), "the lease has slots: %r" % a)
agent_id = psql("SELECT agent_id FROM leases WHERE id = '%s'" % a["lease_id"])[0]
# a live lease renews (and its call sweeps whatever expired before it)
h = expect(call("POST", "/api/agent/heartbeat", {"lease_id": a["lease_id"]}, token=tok), 200,
           "heartbeat of the live lease")
check(h["ttl_s"] == a["ttl_s"], "renewed: %r" % h)
# 150 leases of a fleet gone quiet, expired before this one: the next call's sweep ends 100
psql("INSERT INTO leases (agent_id, expires_at, ttl_s) SELECT %s, kiln_now() - interval '1 hour', "
     "600 FROM generate_series(1, 150)" % agent_id)
set_clock(start + datetime.timedelta(seconds=2 * a["ttl_s"]))
expect_error(call("POST", "/api/agent/heartbeat", {"lease_id": a["lease_id"]}, token=tok), 409,
             "lease_expired", "lease_id", "the late heartbeat of the expired lease")
check(psql("SELECT expires_at <= kiln_now() FROM leases WHERE id = '%s'" % a["lease_id"])
      == ["t"], "the expired lease was not extended")
ok("test_a_heartbeat_never_revives_an_expired_lease")
