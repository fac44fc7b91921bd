"""Tenant tokens see and change only their own user's data: another tenant's mailbox is a
404 on every path, lists are filtered, admin-only endpoints are 403, no token is 401."""
from kiln_test import *

plan = make_plan("p")
ua = make_user("tenant-a", plan["id"])
ub = make_user("tenant-b", plan["id"])
ta = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": ua["id"]}), 201, "token a")["token"]
tb = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": ub["id"]}), 201, "token b")["token"]

ma = make_mailbox(ua["id"], "a1@a.test", token=ta)
mb = make_mailbox(ub["id"], "b1@b.test", token=tb)
# A tenant may omit user_id: it is its own.
body = mailbox_body(ua["id"], "a2@a.test")
del body["user_id"]
expect(call("POST", "/api/mailboxes", body, token=ta), 201, "tenant create without user_id")
expect_error(call("POST", "/api/mailboxes", mailbox_body(ub["id"], "x@a.test"), token=ta), 404,
             "not_found", None, "tenant a creating for user b")
ok("test_tenant_creates_only_for_itself")

for method, path, payload in [("GET", "/api/mailboxes/%d", None),
                              ("PATCH", "/api/mailboxes/%d", {"display_name": "pwned"}),
                              ("POST", "/api/mailboxes/%d/pause", None),
                              ("POST", "/api/mailboxes/%d/resume", None),
                              ("DELETE", "/api/mailboxes/%d", None)]:
    expect_error(call(method, path % mb["id"], payload, token=ta), 404, "not_found", None,
                 "tenant a: %s %s on b's mailbox" % (method, path))
expect_error(call("GET", "/api/warmup/mailbox?id=%d" % mb["id"], token=ta), 404, "not_found",
             None, "tenant a: warmup/mailbox of b")
still = expect(admin("GET", "/api/mailboxes/%d" % mb["id"]), 200, "b's mailbox untouched")
check(still["display_name"] == "b1" and still["state"] == "active", "b unchanged: %r" % still)
ok("test_other_tenants_mailbox_is_404_everywhere_and_unchanged")

la = expect(call("GET", "/api/mailboxes", token=ta), 200, "list a")
check({m["user_id"] for m in la["items"]} == {ua["id"]} and len(la["items"]) == 2, "list a: %r" % la)
qa = expect(call("GET", "/api/warmup/quota?status=all", token=ta), 200, "quota a")
check({m["user_id"] for m in qa["page"]["items"]} == {ua["id"]}, "quota a: %r" % qa)
check("summary" not in qa, "tenant quota has no global summary: %r" % qa)
ua_list = expect(call("GET", "/api/users", token=ta), 200, "users a")
check([u["id"] for u in ua_list["items"]] == [ua["id"]], "tenant sees only itself: %r" % ua_list)
expect_error(call("GET", "/api/users/%d" % ub["id"], token=ta), 404, "not_found", None, "user b")
ok("test_lists_are_filtered_to_the_tenant")

for method, path in [("GET", "/api/warmup/control"), ("POST", "/api/plans"),
                     ("POST", "/api/users"), ("POST", "/api/agents"), ("POST", "/api/tokens"),
                     ("GET", "/metrics"), ("GET", "/api/warmup/metrics"),
                     ("GET", "/api/warmup/health")]:
    expect_error(call(method, path, {}, token=ta), 403, "forbidden", None, "tenant on " + path)
expect_error(call("GET", "/api/mailboxes"), 401, "unauthorized", None, "no token")
expect_error(call("GET", "/api/mailboxes", token="kiln_" + "x" * 43), 401, "unauthorized", None,
             "unknown token")
expect_error(call("GET", "/api/mailboxes", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401,
             "unauthorized", None, "basic auth")
m = expect(admin("POST", "/api/tokens", {"scope": "metrics"}), 201, "metrics token")["token"]
expect(call("GET", "/metrics", token=m), 200, "metrics token on /metrics")
expect_error(call("GET", "/api/mailboxes", token=m), 403, "forbidden", None, "metrics on mailboxes")
ok("test_scopes_are_enforced")
