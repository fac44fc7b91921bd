"""Bad input to every agent endpoint: a 4xx JSON error, and nothing changes."""
from leaselib import make_agent, set_clock, lease, utc, all_sends
from kiln_test import (ADMIN, call, check, expect_error, make_plan, make_user, make_mailbox,
                       psql, ok)

set_clock(utc(2026, 3, 4, 12, 0, 0))
plan = make_plan("p", ramp_start=5, ramp_step=0, daily_max=5, cooldown_min_s=10, cooldown_max_s=20)
u1, u2 = make_user("a", plan["id"]), make_user("b", plan["id"])
for u in (u1, u2):
    for j in range(2):
        make_mailbox(u["id"], "m%d@u%d.test" % (j, u["id"]), timezone="UTC",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
tok = make_agent("host-a")
other = make_agent("host-b")
a = lease(tok, max_mailboxes=1)
sid = all_sends(a)[0]["id"]
L = a["lease_id"]


def state():
    return psql("""SELECT (SELECT count(*) FROM sends), (SELECT count(*) FROM leases),
        (SELECT string_agg(status::text || coalesce(smtp_code::text, ''), ',' ORDER BY id) FROM sends),
        (SELECT coalesce(sum(sent + failed + in_flight + received), 0) FROM mailbox_days),
        (SELECT coalesce(sum(received), 0) FROM mailbox_inbound),
        (SELECT string_agg(state::text, ',' ORDER BY id) FROM mailboxes),
        (SELECT string_agg(coalesce(expires_at::text, '') || coalesce(ended_at::text, ''), ','
                ORDER BY id) FROM leases),
        (SELECT coalesce(sum(value), 0) FROM counters WHERE name LIKE 'send%')""")


before = state()
big = "x" * 2000
cases = {
    "/api/agent/lease": [
        b"not json", b"[1,2]", b'"str"', b"{", b'{"max_mailboxes":0}', b'{"max_mailboxes":-3}',
        b'{"max_mailboxes":1e30}', b'{"max_mailboxes":"10"}', b'{"max_sends":100001}',
        b'{"max_sends":1.5}', b'{"agent":42}', b'{"agent":""}', b'{"bogus":1}',
        b'{"max_mailboxes":null}', b'{"agent":"' + big.encode() + b'"}', b'\xff\xfe'],
    "/api/agent/report": [
        b"{}", b"[]", b'{"lease_id":"' + L.encode() + b'"}',
        b'{"lease_id":"' + L.encode() + b'","results":[]}',
        b'{"lease_id":"' + L.encode() + b'","results":{}}',
        b'{"lease_id":"' + L.encode() + b'","results":[1]}',
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d}]}' % sid,
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"SENT"}]}' % sid,
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":-1,"status":"sent"}]}',
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":"1","status":"sent"}]}',
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent","smtp_code":1000}]}' % sid,
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent","latency_ms":-1}]}' % sid,
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent","detail":"' % sid
        + big.encode() + b'"}]}',
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent","extra":1}]}' % sid,
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent"},'
        b'{"send_id":%d,"status":"nope"}]}' % (sid, sid),
        b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent"},'
        b'{"send_id":987654321,"status":"sent"}]}' % sid,
        b'{"lease_id":"not-a-uuid","results":[{"send_id":1,"status":"sent"}]}',
        b'{"lease_id":"00000000-0000-0000-0000-000000000000","results":[{"send_id":1,"status":"sent"}]}',
        b'{"lease_id":"\'; DROP TABLE sends; --","results":[{"send_id":1,"status":"sent"}]}',
    ],
    "/api/agent/heartbeat": [
        b"{}", b'{"lease_id":5}', b'{"lease_id":"x"}', b'{"lease_id":"' + L.encode() + b'","x":1}',
        b'{"lease_id":"00000000-0000-0000-0000-000000000000"}', b"nope"],
    "/api/agent/release": [
        b"{}", b'{"lease_id":null}', b'{"lease_id":"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"}',
        b'{"lease_id":"00000000-0000-0000-0000-000000000000"}', b"\x00"],
}
n = 0
for path, bodies in cases.items():
    for body in bodies:
        r = call("POST", path, raw=body, token=tok)
        check(400 <= r.status < 500, "%s %r: expected a 4xx, got %r" % (path, body[:80], r))
        expect_error(r, r.status, what="%s %r" % (path, body[:80]))
        n += 1
    # Foreign agent, no token, wrong scope, wrong method.
    for t, want in ((other, None), (None, 401), (ADMIN, 403)):
        body = b'{"lease_id":"' + L.encode() + b'","results":[{"send_id":%d,"status":"sent"}]}' % sid
        if path in ("/api/agent/heartbeat", "/api/agent/release"):
            body = b'{"lease_id":"' + L.encode() + b'"}'
        if path == "/api/agent/lease":
            body = b"{}"
            if t is other:
                continue
        r = call("POST", path, raw=body, token=t)
        if want:
            check(r.status == want, "%s: expected %d, got %r" % (path, want, r))
        else:
            check(r.status == 403, "%s by a foreign agent: expected 403, got %r" % (path, r))
        n += 1
    r = call("GET", path, token=tok)
    check(r.status == 405, "GET %s: expected 405, got %r" % (path, r))
after = state()
check(before == after, "bad input changed state:\n%r\n%r" % (before, after))
ok("%d bad requests to the agent endpoints: all 4xx, nothing changed" % n)
