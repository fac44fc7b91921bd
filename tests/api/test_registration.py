"""Registration round trips through nginx: plans, users, mailboxes (create, get, list with
cursor pagination, patch, pause/resume, delete), the SMTP secret sealed at rest and never
returned, the plan's mailbox cap, duplicates."""
from kiln_test import *

plan = make_plan("standard", max_mailboxes=3, cooldown_min_s=60, cooldown_max_s=90,
                 reply_rate=0.25, weekdays_only=True)
check(plan["ramp_start"] == 5 and plan["max_mailboxes"] == 3 and plan["weekdays_only"] is True,
      "plan echoes its fields: %r" % plan)
check(plan["reply_rate"] == 0.25, "reply_rate round-trips exactly: %r" % plan)
got = expect(admin("GET", "/api/plans/%d" % plan["id"]), 200, "get plan")
check(got == plan, "GET plan equals the created plan: %r vs %r" % (got, plan))
expect_error(admin("POST", "/api/plans", {"name": "standard", "ramp_start": 1, "ramp_step": 1,
                                          "daily_max": 5}), 409, "conflict", "name", "dup plan")
ok("test_plan_round_trip_and_duplicate_name_is_409")

user = make_user("acme", plan["id"], "Europe/Berlin")
check(user["timezone"] == "Europe/Berlin" and user["mailboxes"] == 0, "user: %r" % user)
expect_error(admin("POST", "/api/users", {"name": "x", "plan_id": 999999}), 422,
             "invalid_reference", "plan_id", "user with unknown plan")
ok("test_user_round_trip")

password = "s3cret-Pa55word-unique-marker"
mb = make_mailbox(user["id"], "Anna@acme.test", display_name="Anna",
                  smtp={"host": "smtp.acme.test", "port": 587, "security": "starttls",
                        "username": "anna@acme.test", "password": password},
                  window={"start_hour": 7, "end_hour": 21}, daily_target=12)
check(mb["timezone"] == "Europe/Berlin", "mailbox inherits the user's timezone: %r" % mb)
check(mb["window"] == {"start_hour": 7, "end_hour": 21}, "window: %r" % mb)
check(mb["daily_target"] == 12 and mb["state"] == "active", "mailbox: %r" % mb)
check(password not in json.dumps(mb) and "password" not in mb["smtp"], "secret echoed: %r" % mb)
for path in ("/api/mailboxes/%d" % mb["id"], "/api/mailboxes", "/api/warmup/mailbox?id=%d" % mb["id"],
             "/api/warmup/quota"):
    r = admin("GET", path)
    check(r.status == 200 and password not in r.raw, "GET %s must not reveal the secret" % path)
stored = psql("SELECT encode(smtp_secret, 'hex') FROM mailboxes WHERE id = %d" % mb["id"])[0]
check(password.encode().hex() not in stored and len(stored) // 2 >= len(password) + 30,
      "secret must be sealed at rest (AES-GCM: nonce + ciphertext + tag), got %s" % stored)
ok("test_mailbox_secret_is_sealed_and_never_returned")

expect_error(admin("POST", "/api/mailboxes", mailbox_body(user["id"], "anna@ACME.test")), 409,
             "conflict", "address", "same address, other case")
make_mailbox(user["id"], "bob@acme.test")
make_mailbox(user["id"], "carl@acme.test")
expect_error(admin("POST", "/api/mailboxes", mailbox_body(user["id"], "dora@acme.test")), 422,
             "plan_limit", None, "fourth mailbox over max_mailboxes=3")
ok("test_plan_mailbox_cap_is_enforced")

page1 = expect(admin("GET", "/api/mailboxes?limit=2"), 200, "page 1")
check(len(page1["items"]) == 2 and page1["next_cursor"], "page 1: %r" % page1)
page2 = expect(admin("GET", "/api/mailboxes?limit=2&cursor=" + page1["next_cursor"]), 200, "page 2")
check(len(page2["items"]) == 1 and page2["next_cursor"] is None, "page 2: %r" % page2)
ids = [m["id"] for m in page1["items"] + page2["items"]]
check(ids == sorted(ids) and len(set(ids)) == 3, "pages cover all mailboxes once: %r" % ids)
ok("test_cursor_pagination_covers_everything_once")

p = expect(admin("PATCH", "/api/mailboxes/%d" % mb["id"],
                 {"display_name": "Anna B.", "window": {"end_hour": 23}, "daily_target": None,
                  "smtp": {"password": "new-password"}}), 200, "patch")
check(p["display_name"] == "Anna B." and p["window"]["end_hour"] == 23 and
      p["window"]["start_hour"] == 7 and p["daily_target"] is None, "patched: %r" % p)
expect_error(admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"window": {"start_hour": 23}}), 422,
             None, "window.end_hour", "window start after end")
ok("test_patch_changes_only_given_fields")

p = expect(admin("POST", "/api/mailboxes/%d/pause" % mb["id"]), 200, "pause")
check(p["state"] == "paused", "paused: %r" % p)
p = expect(admin("POST", "/api/mailboxes/%d/resume" % mb["id"]), 200, "resume")
check(p["state"] == "active", "resumed: %r" % p)
expect(admin("DELETE", "/api/mailboxes/%d" % mb["id"]), 204, "delete")
expect_error(admin("GET", "/api/mailboxes/%d" % mb["id"]), 404, "not_found", None, "deleted")
expect_error(admin("DELETE", "/api/mailboxes/%d" % mb["id"]), 404, "not_found", None, "deleted twice")
again = make_mailbox(user["id"], "anna@acme.test")
check(again["id"] != mb["id"], "a deleted address can be registered again")
ok("test_pause_resume_delete")

a = expect(admin("POST", "/api/agents", {"name": "host-a"}), 201, "agent")
check(a["token"].startswith("kiln_") and len(a["token"]) > 40, "agent token: %r" % a)
rows = psql("SELECT hash FROM tokens WHERE agent_id = %d" % a["id"])
check(len(rows) == 1 and a["token"] not in rows[0], "token is stored hashed")
expect_error(call("GET", "/api/plans", token=a["token"]), 403, "forbidden", None, "agent token on /api")
ok("test_agent_token_is_shown_once_and_stored_hashed")
