"""Webhooks (issue 13) through nginx, with a loopback receiver that verifies every delivery
as docs/webhooks.md tells receivers to (tests/lib/webhook_receiver.py): pausing a mailbox
delivers a signed mailbox.paused; other state changes emit from the same transaction; a
receiver answering 500 twice gets the event on the third attempt after backoff; a hanging
receiver never slows the API; tenants see and receive only their own; bad input on every
field is a 400 naming it with nothing changed; the secret is shown once, sealed at rest and
never logged; the delivery log and the metric tell what happened.
  test_webhooks.py [part]   (part: signed, report_auth, retry, hang, slow_neighbour, tls, tenant,
                             bad_input, secret, inbox_failing; all when absent)
Run with KILN_WEBHOOK_BACKOFF_BASE_MS, KILN_WEBHOOK_POLL_MS and KILN_WEBHOOK_TIMEOUT_MS
small (tests/api/CMakeLists.txt sets them)."""
import glob
import os
import time
import urllib.error
import urllib.request
from kiln_test import *
from webhook_receiver import Receiver, verify

EVENTS = ["mailbox.paused", "mailbox.error", "mailbox.health_changed", "mailbox.inbox_error",
          "mailbox.inbox_failing"]


def tenant_token(user_id):
    return expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": user_id}), 201,
                  "tenant token")["token"]


def setup(name):
    plan = make_plan("p-" + name)
    user = make_user(name, plan["id"])
    return user, tenant_token(user["id"])


def create_endpoint(rcv, path, token, **kw):
    body = {"url": rcv.url(path)}
    body.update(kw)
    wh = expect(call("POST", "/api/webhooks", body, token=token), 201, "create endpoint " + path)
    rcv.secrets[path] = wh["secret"]
    return wh


def pause(mid, token):
    t0 = time.monotonic()
    r = call("POST", "/api/mailboxes/%d/pause" % mid, token=token)
    took = time.monotonic() - t0
    check(expect(r, 200, "pause")["state"] == "paused", "paused: %r" % r)
    return took


def deliveries(wid, token, **q):
    qs = "&".join("%s=%s" % kv for kv in q.items())
    return expect(call("GET", "/api/webhooks/%d/deliveries%s" % (wid, "?" + qs if qs else ""),
                       token=token), 200, "delivery log")


def metric(name):
    for line in expect_text(admin("GET", "/metrics")).splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    fail("no metric %s" % name)


def expect_text(r):
    check(r.status == 200, "GET /metrics: %r" % r)
    return r.raw


def part_signed():
    rcv = Receiver()
    try:
        user, tok = setup("acme")
        mb = make_mailbox(user["id"], "anna@acme.test", token=tok)
        wh = create_endpoint(rcv, "/ok/a", tok)
        check(wh["events"] == EVENTS and wh["active"] is True and wh["user_id"] == user["id"] and
              wh["secret"].startswith("whsec_") and len(wh["secret"]) == 70,
              "defaults: all events, active, a whsec_ secret: %r" % wh)
        pause(mb["id"], tok)
        got = wait_for(lambda: rcv.received("/ok/a"), "a signed mailbox.paused", timeout=10)
        d = got[0]
        ev = d["json"]
        check(d["problem"] is None, "the delivery verifies: %r" % d["problem"])
        check(ev["type"] == "mailbox.paused" and d["headers"]["Kiln-Event-Type"] ==
              "mailbox.paused" and ev["user_id"] == user["id"], "event: %r" % ev)
        check(ev["data"]["mailbox_id"] == mb["id"] and ev["data"]["address"] == "anna@acme.test"
              and ev["data"]["state"] == "paused" and ev["data"]["previous_state"] == "active",
              "event data: %r" % ev["data"])
        check(d["headers"]["Content-Type"] == "application/json", "content type: %r" % d["headers"])
        ok("test_pausing_a_mailbox_delivers_a_signed_mailbox_paused")

        # What a receiver must refuse: the same delivery replayed later, or altered.
        hdr, body = d["headers"]["Kiln-Signature"], d["body"]
        t = int(hdr.split(",")[0][2:])
        check(verify(wh["secret"], hdr, body, now=t + 301) is not None,
              "a delivery replayed 301 s later is refused")
        check(verify(wh["secret"], hdr, body, now=t + 299) is None, "within 5 min it verifies")
        check(verify(wh["secret"], hdr, body.replace(b"paused", b"active", 1)) is not None,
              "an altered body is refused")
        check(verify("whsec_" + "0" * 64, hdr, body) is not None, "another secret is refused")
        req = urllib.request.Request(rcv.url("/ok/a"), data=body, method="POST", headers={
            "Kiln-Signature": hdr, "Kiln-Event-Id": d["headers"]["Kiln-Event-Id"],
            "Kiln-Event-Type": "mailbox.paused", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=5)
            fail("the receiver accepted a replayed event")
        except urllib.error.HTTPError as e:
            check(e.code == 400, "replay refused with 400: %r" % e.code)
        check(rcv.all()[-1]["problem"] == "replayed event id", "replay: %r" % rcv.all()[-1])
        ok("test_receiver_rejects_replayed_old_or_altered_deliveries")

        # The other transitions emit from whatever statement makes them (the trigger).
        mb2 = make_mailbox(user["id"], "bob@acme.test", token=tok)
        psql("UPDATE mailboxes SET state = 'error', last_error = 'smtp auth failed' "
             "WHERE id = %d" % mb2["id"])
        psql("UPDATE mailboxes SET inbox = 'error', inbox_error = 'LOGIN refused' "
             "WHERE id = %d" % mb2["id"])
        psql("UPDATE mailboxes SET inbox = 'error', inbox_error = 'again' WHERE id = %d" % mb2["id"])
        types = wait_for(lambda: [x["json"]["type"] for x in rcv.received("/ok/a")
                                  if x["json"]["data"]["mailbox_id"] == mb2["id"]]
                         if len(rcv.received("/ok/a")) >= 3 else None, "error events")
        check(sorted(types) == ["mailbox.error", "mailbox.inbox_error"],
              "one event per transition (inbox already in error sends nothing): %r" % types)
        errs = {x["json"]["type"]: x["json"]["data"] for x in rcv.received("/ok/a")}
        check(errs["mailbox.error"]["last_error"] == "smtp auth failed" and
              errs["mailbox.inbox_error"]["inbox_error"] == "LOGIN refused",
              "error events carry the error: %r" % errs)
        # A transaction that rolls back emits nothing.
        psql("BEGIN; UPDATE mailboxes SET state = 'paused' WHERE id = %d; ROLLBACK" % mb2["id"])
        check(psql("SELECT count(*) FROM webhook_events WHERE mailbox_id = %d AND "
                   "type = 'mailbox.paused'" % mb2["id"]) == ["0"],
              "a rolled-back pause left no event")
        # Two emits of one type for one mailbox in one transaction are one event.
        psql("BEGIN; UPDATE mailboxes SET state = 'active' WHERE id = %d; "
             "UPDATE mailboxes SET state = 'paused' WHERE id = %d; "
             "SELECT kiln_webhook_emit(%d, 'mailbox.paused', %d, '{\"reason\": \"test\"}'); "
             "COMMIT" % (mb2["id"], mb2["id"], user["id"], mb2["id"]))
        ev = wait_for(lambda: [x["json"] for x in rcv.received("/ok/a")
                               if x["json"]["type"] == "mailbox.paused" and
                               x["json"]["data"]["mailbox_id"] == mb2["id"]], "merged pause")
        time.sleep(1.0)
        again = [x for x in rcv.received("/ok/a") if x["json"]["type"] == "mailbox.paused" and
                 x["json"]["data"]["mailbox_id"] == mb2["id"]]
        check(len(again) == 1 and ev[0]["data"]["reason"] == "test" and
              ev[0]["data"]["previous_state"] == "active",
              "trigger + explicit emit in one transaction: one event, payloads merged: %r" % again)
        ok("test_state_transitions_emit_in_the_same_transaction_once")

        log = deliveries(wh["id"], tok)
        items = log["items"]
        check(len(items) == 4 and [i["id"] for i in items] == sorted([i["id"] for i in items],
                                                                      reverse=True),
              "four deliveries, newest first: %r" % items)
        first = items[-1]
        check(first["event_type"] == "mailbox.paused" and first["status"] == "delivered" and
              first["attempts"] == 1 and first["last_code"] == 200 and
              first["mailbox_id"] == mb["id"] and first["delivered_at"] and
              first["next_attempt_at"] is None and first["last_error"] is None,
              "delivery log row: %r" % first)
        page1 = deliveries(wh["id"], tok, limit=3)
        page2 = deliveries(wh["id"], tok, limit=3, cursor=page1["next_cursor"])
        check(len(page1["items"]) == 3 and page1["next_cursor"] and len(page2["items"]) == 1 and
              page2["next_cursor"] is None and page2["items"][0]["id"] == first["id"],
              "paging: %r / %r" % (page1, page2))
        expect_error(call("GET", "/api/webhooks/%d/deliveries?limit=0" % wh["id"], token=tok),
                     400, "invalid_query", "limit", "limit=0")
        wait_for(lambda: metric('kiln_webhook_deliveries_total{status="delivered"}') == 4,
                 "kiln_webhook_deliveries_total{status=delivered} to count 4")
        ok("test_delivery_log_is_paged_newest_first")

        # An inactive endpoint or one not subscribed gets nothing.
        off = create_endpoint(rcv, "/ok/off", tok, active=False)
        only = create_endpoint(rcv, "/ok/only", tok, events=["mailbox.inbox_error"])
        check(only["events"] == ["mailbox.inbox_error"] and off["active"] is False, "filters")
        mb3 = make_mailbox(user["id"], "carl@acme.test", token=tok)
        pause(mb3["id"], tok)
        wait_for(lambda: len(rcv.received("/ok/a")) >= 5, "the pause of carl")
        time.sleep(1.0)
        check(rcv.received("/ok/off", None) == [] and rcv.received("/ok/only", None) == [],
              "inactive and unsubscribed endpoints received nothing")
        expect(call("PATCH", "/api/webhooks/%d" % only["id"], {"events": ["mailbox.paused"]},
                    token=tok), 200, "patch events")
        expect(call("POST", "/api/mailboxes/%d/resume" % mb3["id"], token=tok), 200, "resume")
        pause(mb3["id"], tok)
        wait_for(lambda: rcv.received("/ok/only"), "a pause at the re-subscribed endpoint")
        ok("test_event_filter_and_active_flag_choose_the_endpoints")
    finally:
        rcv.stop()


def part_report_auth():
    """An SMTP auth failure an agent reports puts the mailbox in error inside the report's
    set-based statement: the trigger emits mailbox.error from that same transaction."""
    sys.path.insert(0, os.path.join(SRC, "tests", "leasing"))
    from leaselib import make_agent, lease, report, set_clock as lease_clock, utc
    rcv = Receiver()
    try:
        lease_clock(utc(2026, 3, 4, 10, 0, 0))
        plan = make_plan("p", ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60,
                         cooldown_max_s=90)
        users = [make_user("u%d" % i, plan["id"]) for i in range(2)]
        boxes = [make_mailbox(u["id"], "m%d@d%d.test" % (j, u["id"]), timezone="UTC",
                              window={"start_hour": 0, "end_hour": 24},
                              warmup_start="2026-03-01") for u in users for j in range(2)]
        tok = tenant_token(users[0]["id"])
        wh = create_endpoint(rcv, "/ok/r", tok, events=["mailbox.error"])
        agent = make_agent("host-a")
        a = lease(agent)
        mine = [m for m in a["mailboxes"] if m["id"] in (boxes[0]["id"], boxes[1]["id"])]
        check(mine and mine[0]["sends"], "user 0's mailboxes were leased: %r" % a)
        mb = mine[0]
        report(agent, a["lease_id"], [{"send_id": mb["sends"][0]["id"], "status": "auth",
                                       "smtp_code": 535, "detail": "535 5.7.8 bad credentials"}])
        got = wait_for(lambda: rcv.received("/ok/r"), "mailbox.error from the report")
        ev = got[0]["json"]
        check(got[0]["problem"] is None and ev["type"] == "mailbox.error" and
              ev["data"]["mailbox_id"] == mb["id"] and
              ev["data"]["last_error"] == "535 5.7.8 bad credentials" and
              ev["data"]["previous_state"] == "active", "mailbox.error: %r" % ev)
        check(deliveries(wh["id"], tok)["items"][0]["event_type"] == "mailbox.error", "log")
        ok("test_an_auth_failure_in_a_report_delivers_mailbox_error")
    finally:
        rcv.stop()


def part_retry():
    rcv = Receiver()
    try:
        user, tok = setup("flaky")
        mb = make_mailbox(user["id"], "f@flaky.test", token=tok)
        wh = create_endpoint(rcv, "/flaky/a/2", tok)
        pause(mb["id"], tok)
        wait_for(lambda: rcv.received("/flaky/a/2"), "the third attempt", timeout=20)
        got = rcv.received("/flaky/a/2", None)
        check([d["status"] for d in got] == [500, 500, 200], "500, 500, 200: %r" %
              [d["status"] for d in got])
        check(len({d["json"]["id"] for d in got}) == 1, "one event id on every attempt")
        gap1, gap2 = got[1]["at"] - got[0]["at"], got[2]["at"] - got[1]["at"]
        base = int(os.environ.get("KILN_WEBHOOK_BACKOFF_BASE_MS", "30000")) / 1000
        # equal jitter: the n-th retry waits within [base*2^(n-1)/2, base*2^(n-1)]
        check(gap1 >= base / 2 - 0.05 and gap2 >= base - 0.05,
              "backoff grows: waited %.2f s then %.2f s (base %.2f s)" % (gap1, gap2, base))
        # The receiver logs an attempt before it answers, and kiln-api records the answer
        # (the row and its counters, one statement) after: wait for that record.
        row = wait_for(lambda: [r for r in deliveries(wh["id"], tok)["items"]
                                if r["status"] == "delivered"], "the 3rd attempt recorded",
                       timeout=20)[0]
        check(row["status"] == "delivered" and row["attempts"] == 3 and row["last_code"] == 200,
              "delivered on the 3rd attempt: %r" % row)
        check(metric('kiln_webhook_deliveries_total{status="retrying"}') == 2 and
              metric('kiln_webhook_deliveries_total{status="delivered"}') == 1,
              "metric: 2 retrying, 1 delivered")
        ok("test_500_twice_then_200_is_delivered_on_the_third_attempt_with_backoff")

        # An endpoint that always fails ends 'failed' after KILN_WEBHOOK_MAX_ATTEMPTS.
        dead = create_endpoint(rcv, "/flaky/dead/1000", tok)
        mb2 = make_mailbox(user["id"], "g@flaky.test", token=tok)
        pause(mb2["id"], tok)
        maxa = int(os.environ.get("KILN_WEBHOOK_MAX_ATTEMPTS", "10"))
        row = wait_for(lambda: [r for r in deliveries(dead["id"], tok)["items"]
                                if r["status"] == "failed"], "failed", timeout=40)[0]
        check(row["attempts"] == maxa and row["last_code"] == 500 and
              row["last_error"] == "HTTP 500" and row["next_attempt_at"] is None,
              "failed after %d attempts: %r" % (maxa, row))
        check(metric('kiln_webhook_deliveries_total{status="failed"}') == 1, "metric: 1 failed")
        ok("test_a_receiver_that_always_fails_ends_failed_after_max_attempts")
    finally:
        rcv.stop()


def part_hang():
    rcv = Receiver()
    try:
        user, tok = setup("slow")
        wh = create_endpoint(rcv, "/hang/a", tok)
        mbs = [make_mailbox(user["id"], "h%d@slow.test" % i, token=tok) for i in range(3)]
        took = [pause(m["id"], tok) for m in mbs]
        wait_for(lambda: rcv.received("/hang/a", None), "a hanging delivery")
        took += [pause(make_mailbox(user["id"], "late@slow.test", token=tok)["id"], tok)]
        # An API request waiting on a delivery would take the worker's 2 s timeout or the
        # receiver's 6 s hang; 1.5 s leaves room for a loaded test machine.
        check(max(took) < 1.5, "pauses answered fast while the receiver hangs: %r" % took)
        t0 = time.monotonic()
        check(expect(call("GET", "/api/webhooks/%d" % wh["id"], token=tok), 200, "get")["id"] ==
              wh["id"] and time.monotonic() - t0 < 1.5, "the API answers during the hang")
        row = wait_for(lambda: [r for r in deliveries(wh["id"], tok)["items"]
                                if r["last_error"]], "a timed-out attempt", timeout=20)[0]
        check(row["status"] == "pending" and row["last_code"] is None and
              "timed out" in row["last_error"].lower() and row["next_attempt_at"],
              "a hang is a timeout, retried later: %r" % row)
        ok("test_a_hanging_receiver_never_slows_the_api_and_times_out")
    finally:
        rcv.stop()


def part_slow_neighbour():
    """A receiver that hangs holds at most KILN_WEBHOOK_ENDPOINT_CONCURRENCY (4) requests
    and never delays another tenant's delivery: nothing waits for the slowest request."""
    rcv = Receiver()
    try:
        ua, ta = setup("hangs")
        ub, tb = setup("quick")
        create_endpoint(rcv, "/hang/iso", ta)
        create_endpoint(rcv, "/ok/quick", tb)
        for i in range(6):
            pause(make_mailbox(ua["id"], "n%d@hangs.test" % i, token=ta)["id"], ta)
        first = wait_for(lambda: rcv.received("/hang/iso", None), "the hanging receiver's "
                         "first request")[0]["at"]
        time.sleep(0.3)
        mb = make_mailbox(ub["id"], "q@quick.test", token=tb)
        t0 = time.time()
        pause(mb["id"], tb)
        got = wait_for(lambda: rcv.received("/ok/quick"), "the other tenant's event", timeout=10)
        late = got[0]["at"] - t0
        time.sleep(max(0.0, first + 1.5 - time.time()))
        hanging = [d for d in rcv.received("/hang/iso", None) if d["at"] < first + 1.5]
        # Before: one round of up to 16 requests, sent together and recorded together, so
        # the quick event waited for the hanging ones' 2 s timeout.
        check(late < 1.0, "the quick tenant's event arrived %.2f s after its pause, while "
              "another receiver hung (timeout 2 s)" % late)
        check(len(hanging) <= 4, "%d requests at once to the hanging receiver (at most 4)"
              % len(hanging))
        wait_for(lambda: len({d["json"]["id"] for d in rcv.received("/hang/iso", None)}) == 6,
                 "all six events tried in turn", timeout=20)
        ok("test_a_hanging_receiver_holds_four_slots_and_delays_no_other_tenant")
    finally:
        rcv.stop()


def part_tls():
    """TLS verification is on: a receiver whose certificate no trusted CA signed gets no
    event (the attempt fails with a certificate error), though it serves TLS well to a
    client that trusts its certificate."""
    import ssl
    import subprocess
    import tempfile
    tmp = tempfile.mkdtemp()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    rcv = Receiver(tls=(cert, key))
    try:
        user, tok = setup("tls")
        wh = create_endpoint(rcv, "/ok/t", tok)
        check(wh["url"].startswith("https://"), "an https endpoint: %r" % wh)
        ctx = ssl.create_default_context(cafile=cert)
        try:
            urllib.request.urlopen(urllib.request.Request(rcv.url("/ok/t"), data=b"{}",
                                                          method="POST"), timeout=5,
                                   context=ctx)
        except urllib.error.HTTPError as e:
            check(e.code == 400, "the receiver answers over TLS (400: unsigned): %r" % e.code)
        check(len(rcv.received("/ok/t", None)) == 1, "the receiver's TLS works")
        mb = make_mailbox(user["id"], "t@tls.test", token=tok)
        pause(mb["id"], tok)
        row = wait_for(lambda: [r for r in deliveries(wh["id"], tok)["items"]
                                if r["last_error"]], "a failed TLS attempt")[0]
        check(row["status"] in ("pending", "failed") and row["last_code"] is None and
              "certificate" in row["last_error"].lower(),
              "kiln refused the untrusted certificate: %r" % row)
        check(len(rcv.received("/ok/t", None)) == 1, "no event reached the untrusted receiver")
        ok("test_tls_verification_refuses_an_untrusted_receiver")
    finally:
        rcv.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def part_tenant():
    rcv = Receiver()
    try:
        a, ta = setup("a")
        b, tb = setup("b")
        wa = create_endpoint(rcv, "/ok/a", ta)
        wb = create_endpoint(rcv, "/ok/b", tb)
        for m, p in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/deliveries")):
            r = call(m, "/api/webhooks/%d%s" % (wa["id"], p), {"active": False}
                     if m == "PATCH" else None, token=tb)
            expect_error(r, 404, "not_found", None, "tenant b %s a's endpoint%s" % (m, p))
        lst = expect(call("GET", "/api/webhooks", token=tb), 200, "b's list")["items"]
        check([w["id"] for w in lst] == [wb["id"]] and all("secret" not in w for w in lst),
              "b lists only its own, without secrets: %r" % lst)
        check(expect(call("GET", "/api/webhooks/%d" % wa["id"], token=ta), 200, "a's get")
              ["active"] is True, "a's endpoint unchanged by b")
        expect_error(call("POST", "/api/webhooks", {"user_id": a["id"], "url": rcv.url("/ok/x")},
                          token=tb), 404, "not_found", "user_id", "b creates for a")
        all_ = expect(admin("GET", "/api/webhooks?user_id=%d" % a["id"]), 200, "admin list")
        check([w["id"] for w in all_["items"]] == [wa["id"]], "admin filters by user_id")
        ma = make_mailbox(a["id"], "x@a.test", token=ta)
        pause(ma["id"], ta)
        wait_for(lambda: rcv.received("/ok/a"), "a's event")
        time.sleep(1.0)
        check(rcv.received("/ok/b", None) == [], "b received nothing of a's")
        expect(call("DELETE", "/api/webhooks/%d" % wa["id"], token=ta), 204, "a deletes")
        expect_error(call("GET", "/api/webhooks/%d" % wa["id"], token=ta), 404, "not_found",
                     None, "deleted")
        check(psql("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %d" % wa["id"])
              == ["0"], "its deliveries went with it")
        ok("test_webhooks_are_tenant_isolated")
    finally:
        rcv.stop()


def snapshot():
    return psql("SELECT id, url, array_to_string(events, ','), active, updated_at, "
                "encode(secret, 'hex') FROM webhook_endpoints ORDER BY id")


def part_bad_input():
    user, tok = setup("bad")
    good = expect(call("POST", "/api/webhooks", {"url": "https://hooks.bad.test/k"}, token=tok),
                  201, "good")
    before = snapshot()
    cases = [
        ({}, "missing_field", "url"),
        ({"url": 5}, "invalid_field", "url"),
        ({"url": ""}, "invalid_field", "url"),
        ({"url": "https://h.test/" + "a" * 2040}, "invalid_field", "url"),
        ({"url": "ftp://h.test/"}, "invalid_field", "url"),
        ({"url": "h.test/hook"}, "invalid_field", "url"),
        ({"url": "http://hooks.example.com/"}, "invalid_field", "url"),
        ({"url": "http://10.0.0.1/"}, "invalid_field", "url"),
        ({"url": "https://user:pw@h.test/"}, "invalid_field", "url"),
        ({"url": "https://h.test/#frag"}, "invalid_field", "url"),
        ({"url": "https://h .test/"}, "invalid_field", "url"),
        ({"url": "https://h.test/\u00e9"}, "invalid_field", "url"),
        ({"url": "https://h.test:0/"}, "invalid_field", "url"),
        ({"url": "https://h.test:70000/"}, "invalid_field", "url"),
        ({"url": "https://h.test:/"}, "invalid_field", "url"),
        ({"url": "https:///path"}, "invalid_field", "url"),
        ({"url": "https://[::1/"}, "invalid_field", "url"),
        ({"url": "https://bad_host!/"}, "invalid_field", "url"),
        ({"url": "https://h.test/", "events": "mailbox.paused"}, "invalid_field", "events"),
        ({"url": "https://h.test/", "events": []}, "invalid_field", "events"),
        ({"url": "https://h.test/", "events": ["mailbox.nope"]}, "invalid_field", "events[0]"),
        ({"url": "https://h.test/", "events": ["mailbox.paused", 3]}, "invalid_field",
         "events[1]"),
        ({"url": "https://h.test/", "events": ["mailbox.paused", "mailbox.paused"]},
         "invalid_field", "events[1]"),
        ({"url": "https://h.test/", "events": EVENTS + ["mailbox.error"]}, "invalid_field",
         "events"),
        ({"url": "https://h.test/", "active": "yes"}, "invalid_field", "active"),
        ({"url": "https://h.test/", "secret": "mine"}, "unknown_field", "secret"),
        ({"url": "https://h.test/", "user_id": "x"}, "invalid_field", "user_id"),
    ]
    for body, code, field in cases:
        expect_error(call("POST", "/api/webhooks", body, token=tok), 400, code, field,
                     "create %r" % body)
        # The same member alone on a PATCH: the same error (user_id is no PATCH member).
        key = field.split("[")[0]
        if body:
            patch = {key: body[key]}
            want = "unknown_field" if key == "user_id" else code
            expect_error(call("PATCH", "/api/webhooks/%d" % good["id"], patch, token=tok), 400,
                         want, key if want == "unknown_field" else field, "patch %r" % patch)
    expect_error(call("POST", "/api/webhooks", raw=b"{", token=tok), 400, None, None, "bad json")
    expect_error(admin("POST", "/api/webhooks", {"url": "https://h.test/"}), 400,
                 "missing_field", "user_id", "admin without user_id")
    expect_error(admin("POST", "/api/webhooks", {"url": "https://h.test/", "user_id": 99999}),
                 422, "invalid_reference", "user_id", "admin, unknown user")
    expect_error(call("GET", "/api/webhooks/abc", token=tok), 404, "not_found", None, "bad id")
    expect_error(call("GET", "/api/webhooks?user_id=0", token=tok), 400, "invalid_query",
                 "user_id", "bad user_id")
    check(snapshot() == before, "nothing changed after bad input")
    ok("test_bad_input_on_every_field_is_a_400_naming_it_and_changes_nothing")

    # Accepted edge cases: loopback http, an IPv6 literal, a port, a query.
    for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]:8080/x",
                "https://[2001:db8::1]:8443/hook?tenant=1", "HTTPS://Hooks.Example.COM/a"):
        expect(call("POST", "/api/webhooks", {"url": url}, token=tok), 201, "accept " + url)
    for i in range(4):
        expect(call("POST", "/api/webhooks", {"url": "https://h%d.test/" % i}, token=tok), 201,
               "endpoint %d" % i)
    n = len(snapshot())
    check(n == 10, "ten endpoints: %d" % n)
    expect_error(call("POST", "/api/webhooks", {"url": "https://h11.test/"}, token=tok), 422,
                 "limit_reached", "user_id", "the 11th endpoint")
    check(len(snapshot()) == 10, "still ten")
    ok("test_a_user_has_at_most_ten_endpoints")


def part_secret():
    rcv = Receiver()
    try:
        user, tok = setup("sec")
        wh = create_endpoint(rcv, "/ok/s", tok)
        secret = wh["secret"]
        got = expect(call("GET", "/api/webhooks/%d" % wh["id"], token=tok), 200, "get")
        lst = expect(call("GET", "/api/webhooks", token=tok), 200, "list")
        patched = expect(call("PATCH", "/api/webhooks/%d" % wh["id"], {"active": True},
                              token=tok), 200, "patch")
        for what, doc in (("GET", got), ("list", lst), ("PATCH", patched)):
            check(secret not in json.dumps(doc) and "secret" not in json.dumps(doc),
                  "%s does not return the secret: %r" % (what, doc))
        check(psql("SELECT position(convert_to('%s', 'UTF8') IN secret) FROM webhook_endpoints "
                   "WHERE id = %d" % (secret, wh["id"])) == ["0"], "the secret is sealed at rest")
        two = create_endpoint(rcv, "/ok/s2", tok)
        check(two["secret"] != secret, "every endpoint gets its own secret")
        mb = make_mailbox(user["id"], "s@sec.test", token=tok)
        pause(mb["id"], tok)
        wait_for(lambda: rcv.received("/ok/s") and rcv.received("/ok/s2"), "deliveries")
        # A secret that no longer opens (key rotated without re-sealing) is a failed
        # attempt with a reason, never a crash or an unsigned request.
        psql("UPDATE webhook_endpoints SET secret = '\\x6b3100' WHERE id = %d" % two["id"])
        mb2 = make_mailbox(user["id"], "t@sec.test", token=tok)
        pause(mb2["id"], tok)
        row = wait_for(lambda: [r for r in deliveries(two["id"], tok)["items"]
                                if r["last_error"]], "the unopenable secret's attempt")[0]
        check("secret" in row["last_error"] and len(rcv.received("/ok/s2", None)) == 1,
              "not sent, recorded: %r" % row)
        logs = ""
        for f in glob.glob(os.path.join(VAR, "log", "*")):
            with open(f, errors="replace") as fh:
                logs += fh.read()
        check(len(logs) > 0, "found the stack's logs")
        check(secret not in logs and two["secret"] not in logs, "a secret is in the logs")
        ok("test_the_secret_is_shown_once_sealed_at_rest_and_never_logged")
    finally:
        rcv.stop()


def part_inbox_failing():
    """An inbox whose visits keep failing (inbox_error set, state not error: session 34)
    sends mailbox.inbox_failing once it has failed for KILN_INBOX_FAILING_NOTIFY_S (3600),
    once per failing episode; a shorter failure sends nothing; an endpoint that does not
    subscribe gets nothing."""
    rcv = Receiver()
    try:
        user, tok = setup("failing")
        mb = make_mailbox(user["id"], "fay@acme.test", token=tok,
                          imap={"host": "imap.acme.test", "port": 993, "password": "pw"})
        create_endpoint(rcv, "/ok/f", tok)  # every event: mailbox.inbox_failing included
        create_endpoint(rcv, "/ok/other", tok, events=["mailbox.inbox_error"])
        fail_since = lambda: psql(  # noqa: E731
            "UPDATE mailboxes SET inbox = 'ok', inbox_error = 'the session broke after the "
            "login: BYE', inbox_error_at = kiln_now() WHERE id = %d" % mb["id"])
        fail_since()
        # The background pass runs every KILN_STATS_INTERVAL_S (1 s here): 3 s of passes
        # with the inbox failing for less than an hour send nothing.
        time.sleep(3)
        events = lambda: psql("SELECT count(*) FROM webhook_events WHERE mailbox_id = %d "  # noqa: E731
                              "AND type = 'mailbox.inbox_failing'" % mb["id"])[0]
        check(events() == "0", "an inbox failing for seconds sent mailbox.inbox_failing")
        set_clock(psql("SELECT to_char((kiln_now() + interval '61 minutes') AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")[0])
        got = wait_for(lambda: rcv.received("/ok/f"), "mailbox.inbox_failing")
        ev = got[0]["json"]
        check(got[0]["problem"] is None and ev["type"] == "mailbox.inbox_failing" and
              ev["data"]["mailbox_id"] == mb["id"] and ev["data"]["inbox"] == "ok" and
              ev["data"]["inbox_error"] == "the session broke after the login: BYE" and
              ev["data"]["inbox_error_at"] and 3600 <= ev["data"]["failing_for_s"] < 4000,
              "mailbox.inbox_failing, signed, with the failure: %r" % got[0])
        time.sleep(3)
        check(events() == "1" and len(rcv.received("/ok/f")) == 1,
              "one event per failing episode: %s" % events())
        check(not rcv.received("/ok/other"), "an endpoint without the event got it")
        # It mends, fails again: a new episode, a new event after the delay.
        psql("UPDATE mailboxes SET inbox_error = NULL, inbox_error_at = NULL WHERE id = %d"
             % mb["id"])
        fail_since()
        set_clock(psql("SELECT to_char((kiln_now() + interval '61 minutes') AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")[0])
        wait_for(lambda: len(rcv.received("/ok/f")) == 2, "the second episode's event")
        check(events() == "2", "two episodes, two events: %s" % events())
        ok("test_an_inbox_failing_for_an_hour_delivers_mailbox_inbox_failing_once_per_episode")
    finally:
        reset_clock()
        rcv.stop()


PARTS = {"signed": part_signed, "report_auth": part_report_auth, "retry": part_retry, "hang": part_hang, "slow_neighbour": part_slow_neighbour, "tls": part_tls, "tenant": part_tenant,
         "bad_input": part_bad_input, "secret": part_secret, "inbox_failing": part_inbox_failing}
if len(sys.argv) > 1:
    PARTS[sys.argv[1]]()
else:
    for f in PARTS.values():
        f()
