"""Bad input gets the right 4xx with the JSON error shape, never a 5xx, never a crash,
and changes nothing; the next request is served."""
import os
from kiln_test import *

plan = make_plan("p")
user = make_user("u", plan["id"])
mb = make_mailbox(user["id"], "ok@x.test")
seen = []


def bad(method, path, status, body=None, raw=None, field=None, code=None, token=ADMIN):
    r = call(method, path, body, token=token, raw=raw)
    seen.append(r.status)
    expect_error(r, status, code, field, "%s %s %s" % (method, path, repr(body or raw or "")[:80]))


good = mailbox_body(user["id"], "new@x.test")
def variant(**changes):
    b = json.loads(json.dumps(good))
    for k, v in changes.items():
        if "." in k:
            a, c = k.split(".")
            if v is None:
                b[a].pop(c, None)
            else:
                b[a][c] = v
        elif v is None:
            b.pop(k, None)
        else:
            b[k] = v
    return b


P = "/api/mailboxes"
bad("POST", P, 400, raw=b'{"user_id":1,', code="malformed_json")
bad("POST", P, 400, raw=b"", code="empty_body")
bad("POST", P, 400, raw=b"[1,2,3]", code="not_an_object")
bad("POST", P, 400, raw=b'"just a string"', code="not_an_object")
bad("POST", P, 400, raw=b'{"address":"a\xff\xfe@x.test"}', code="invalid_utf8")
bad("POST", P, 400, raw=b'{"address":"a@x.test"}\x00{"x":1}', code="invalid_utf8")
bad("POST", P, 400, raw=b"[" * 10000 + b"]" * 10000, code="not_an_object")
bad("POST", P, 400, raw=b"{" * 5000)
bad("POST", P, 400, variant(address=None), field="address", code="missing_field")
bad("POST", P, 400, variant(smtp=None), field="smtp", code="missing_field")
bad("POST", P, 400, variant(**{"smtp.password": None}), field="smtp.password", code="missing_field")
bad("POST", P, 400, variant(surprise=1), field="surprise", code="unknown_field")
bad("POST", P, 400, variant(**{"smtp.tls_mode": "x"}), field="smtp.tls_mode", code="unknown_field")
bad("POST", P, 400, variant(address=42), field="address")
bad("POST", P, 400, variant(address="not-an-address"), field="address")
bad("POST", P, 400, variant(address="a@b"), field="address")
bad("POST", P, 400, variant(address="x" * 300 + "@x.test"), field="address")
bad("POST", P, 400, variant(address="'; DROP TABLE mailboxes; --@x.test"), field="address")
bad("POST", P, 400, variant(user_id="1"), field="user_id")
bad("POST", P, 400, variant(user_id=-1), field="user_id")
bad("POST", P, 400, variant(user_id=99999999999999999999999), field="user_id")
bad("POST", P, 400, variant(user_id=1.5), field="user_id")
bad("POST", P, 400, variant(**{"smtp.port": 0}), field="smtp.port")
bad("POST", P, 400, variant(**{"smtp.port": 65536}), field="smtp.port")
bad("POST", P, 400, variant(**{"smtp.port": "587"}), field="smtp.port")
bad("POST", P, 400, variant(**{"smtp.host": "bad host!"}), field="smtp.host")
bad("POST", P, 400, variant(**{"smtp.host": "-lead.test"}), field="smtp.host")
bad("POST", P, 400, variant(**{"smtp.security": "ssl"}), field="smtp.security")
bad("POST", P, 400, variant(timezone="Mars/Olympus"), field="timezone")
bad("POST", P, 400, variant(timezone="Europe/Berlin'; --"), field="timezone")
bad("POST", P, 400, variant(window={"start_hour": -1}), field="window.start_hour")
bad("POST", P, 400, variant(window={"end_hour": 25}), field="window.end_hour")
bad("POST", P, 422, variant(window={"start_hour": 10, "end_hour": 9}), field="window.end_hour")
bad("POST", P, 400, variant(window=[6, 22]), field="window")
bad("POST", P, 400, variant(daily_target=-5), field="daily_target")
bad("POST", P, 400, variant(daily_target=10 ** 12), field="daily_target")
bad("POST", P, 400, variant(display_name="a\u0001b"), field="display_name")
# In shape but not a calendar date (or out of 2000-2100): bad_value, as the contract says;
# not in shape: invalid_field.
for d in ("2026-13-45", "2026-02-29", "2024-02-30", "1999-12-31", "2101-01-01"):
    bad("POST", P, 400, variant(warmup_start=d), field="warmup_start", code="bad_value")
    bad("PATCH", "%s/%d" % (P, mb["id"]), 400, {"warmup_start": d}, field="warmup_start",
        code="bad_value")
bad("POST", P, 400, variant(warmup_start="2026-2-28"), field="warmup_start", code="invalid_field")
# Signs inside the date reached PostgreSQL's ::date, whose refusal named no field.
for d in ("2026-+1-01", "2026-01-+1", "+026-01-01", "2026--1-01", "2026-1 -01"):
    bad("POST", P, 400, variant(warmup_start=d), field="warmup_start", code="invalid_field")
    bad("PATCH", "%s/%d" % (P, mb["id"]), 400, {"warmup_start": d}, field="warmup_start",
        code="invalid_field")
bad("POST", P, 400, variant(surprise=1, user_id="x"), field="surprise", code="unknown_field")
bad("POST", P, 422, variant(user_id=424242), field="user_id", code="invalid_reference")
bad("POST", "/api/plans", 400, {"name": "x", "ramp_start": 1, "ramp_step": 1}, field="daily_max")
bad("POST", "/api/plans", 400, {"name": "x", "ramp_start": 1, "ramp_step": 1, "daily_max": 5,
                                "reply_rate": 1.5}, field="reply_rate")
bad("POST", "/api/plans", 422, {"name": "x", "ramp_start": 1, "ramp_step": 1, "daily_max": 5,
                                "cooldown_min_s": 300, "cooldown_max_s": 10}, field="cooldown_max_s")
bad("POST", "/api/plans", 400, {"name": "", "ramp_start": 1, "ramp_step": 1, "daily_max": 5}, field="name")
bad("POST", "/api/plans", 400, {"name": "x", "ramp_start": True, "ramp_step": 1, "daily_max": 5}, field="ramp_start")
bad("POST", "/api/users", 400, {"name": "x", "plan_id": plan["id"], "timezone": ""}, field="timezone")
bad("POST", "/api/tokens", 400, {"scope": "root"}, field="scope")
bad("POST", "/api/tokens", 422, {"scope": "tenant"}, field="user_id")
bad("POST", "/api/warmup/control", 400, {"action": ["start"]}, field="action")
ok("test_bad_bodies_get_field_level_4xx")

bad("GET", "/api/mailboxes?limit=abc", 400, field="limit")
bad("GET", "/api/mailboxes?limit=0", 400, field="limit")
bad("GET", "/api/mailboxes?limit=100000", 400, field="limit")
bad("GET", "/api/mailboxes?cursor=-3", 400, field="cursor")
bad("GET", "/api/mailboxes?state=gone", 400, field="state")
bad("GET", "/api/mailboxes?user_id=1%20OR%201=1", 400, field="user_id")
bad("GET", "/api/warmup/mailbox?id=1;DROP%20TABLE%20sends", 400, field="id")
bad("GET", "/api/warmup/mailbox?id=%ff", 400, code="invalid_query")
bad("GET", "/api/warmup/quota?status=%00", 400, code="invalid_query")
bad("GET", "/api/warmup/quota?status=%zz", 400, code="invalid_query")
bad("GET", "/api/warmup/metrics?format=xml", 400, field="format")
bad("GET", "/api/mailboxes/abc", 404, code="not_found")
bad("GET", "/api/mailboxes/99999999999999999999999", 404, code="not_found")
bad("GET", "/api/mailboxes/-1", 404, code="not_found")
# An id has one spelling (api/openapi.yaml, parameter Id): "+1" and "01" answered as id 1.
for spelled in ("%2B1", "01", "0%d" % mb["id"], "%%2B%d" % mb["id"]):
    bad("GET", "/api/mailboxes/" + spelled, 404, code="not_found")
    bad("GET", "/api/plans/" + spelled, 404, code="not_found")
bad("GET", "/api/mailboxes?limit=%2B5", 400, field="limit")
bad("GET", "/api/mailboxes?limit=05", 400, field="limit")
bad("GET", "/api/mailboxes?user_id=0%d" % user["id"], 400, field="user_id")
bad("GET", "/api/warmup/mailbox?id=%2B1", 400, field="id")
check(admin("GET", "/api/mailboxes/%d" % mb["id"]).status == 200, "the id's own spelling answers")
bad("GET", "/api/nope", 404, code="not_found")
bad("GET", "/", 404, code="not_found")
bad("PUT", "/api/mailboxes", 405, code="method_not_allowed")
bad("DELETE", "/api/plans", 405, code="method_not_allowed")
bad("POST", "/healthz", 405, code="method_not_allowed")
ok("test_bad_queries_paths_and_methods")

bad("POST", P, 413, raw=b'{"x":"' + b"a" * (2 * 1024 * 1024) + b'"}', code="body_too_large")
ok("test_oversized_body_is_413")

check(all(400 <= s < 500 for s in seen), "every answer was a 4xx: %r" % sorted(set(seen)))
n = psql("SELECT count(*) FROM mailboxes")[0]
check(n == "1", "bad input created nothing: %s mailboxes" % n)
check(psql("SELECT count(*) FROM plans")[0] == "1", "no stray plans")
check(call("GET", "/healthz").status == 200, "still serving")
pid = open(os.path.join(VAR, "run", "kiln-api.pid")).read().strip()
check(os.path.exists("/proc/" + pid), "kiln-api process is alive")
ok("test_server_survives_and_nothing_changed")

# Names count characters, as the contract's maxLength and the tables' CHECK do: 100
# Cyrillic letters (200 bytes of UTF-8) are a name, 101 are not; a tab is a control
# character. (They were counted in bytes: a 60-letter Cyrillic name was refused.)
long_ok, too_long = "ж" * 100, "ж" * 101
p2 = expect(admin("POST", "/api/plans", {"name": long_ok, "ramp_start": 1, "ramp_step": 1,
                                         "daily_max": 5}), 201, "a 100-character plan name")
check(p2["name"] == long_ok, "the plan's name comes back whole: %r" % p2["name"][:10])
expect(admin("POST", "/api/users", {"name": long_ok, "plan_id": p2["id"]}), 201,
       "a 100-character user name")
expect(admin("POST", "/api/agents", {"name": long_ok}), 201, "a 100-character agent name")
for path, body in (("/api/plans", {"ramp_start": 1, "ramp_step": 1, "daily_max": 5}),
                   ("/api/users", {"plan_id": p2["id"]}), ("/api/agents", {})):
    bad("POST", path, 400, dict(body, name=too_long), field="name", code="invalid_field")
    bad("POST", path, 400, dict(body, name="a\tb"), field="name", code="invalid_field")
ok("test_names_count_characters_not_bytes")
