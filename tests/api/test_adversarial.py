"""test_every_endpoint_survives_hostile_input: every endpoint of api/openapi.yaml is sent
hostile input through nginx: bodies nested 300,000 deep and one level past the limit,
\\u0000 and unpaired surrogate escapes in every string and member name, raw bytes that
are not UTF-8, huge numbers (1e400, -0 where 0 is out of range, 2^63,
99999999999999999999), huge bodies, duplicate members, wrong types, malformed JSON; and
hostile paths and query strings. For each request: a 4xx with kiln's JSON error body
(naming the member where the parser refuses a string or a member), nothing changed in
PostgreSQL (every table dumped before and after each endpoint's attacks), and the same
kiln-api process alive afterwards. Each endpoint's untouched body is then accepted, so
every refusal above was for the attack, not for a body that was bad anyway. A
raw-FastCGI pass sends the parser attacks straight to kiln-api's socket and checks the
answer's head (Cache-Control: no-store, Content-Length) as well."""
import os
import urllib.parse
from kiln_test import *
from kiln_test import URL
import fastcgi_client as fcgi

RAWSEP = "\u2063RAW\u2063"  # marks where raw bytes or raw escapes go in a dumped body
counts = {"requests": 0}


# ---- the database, before and after ----------------------------------------------------

# Every table but stats_snapshot, which the stats thread rewrites each second whatever
# the requests do (the published quota/health snapshot, 034); the columns reading or
# authenticating may touch are left out.
GUARD = StackGuard(psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'stats_snapshot' ORDER BY 1"))
dump, check_unchanged, check_alive, PID = (GUARD.dump, GUARD.check_unchanged, GUARD.check_alive,
                                           GUARD.pid)


# ---- a world to attack: plans, users, mailboxes, tokens, an agent with a live lease -----

set_clock("2026-03-04T10:00:00Z")  # a Wednesday, 10:00 UTC
plan = make_plan("adv", ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60,
                 cooldown_max_s=90)
users = [make_user("adv%d" % i, plan["id"]) for i in range(2)]
boxes = [make_mailbox(u["id"], "m%d@adv%d.test" % (j, u["id"]), timezone="UTC",
                      window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
         for u in users for j in range(2)]
TENANT = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": users[0]["id"]}),
                201, "tenant token")["token"]
AGENT = expect(admin("POST", "/api/agents", {"name": "adv-agent"}), 201, "agent")["token"]
lease = expect(call("POST", "/api/agent/lease", {"agent": "adv", "max_mailboxes": 10,
                                                 "max_sends": 100}, token=AGENT), 200, "lease")
check(lease["lease_id"] and lease["mailboxes"], "the setup lease granted slots: %r" % lease)
LEASE = lease["lease_id"]
SEND = lease["mailboxes"][0]["sends"][0]["id"]
MB = boxes[0]["id"]  # users[0]'s, so the tenant token may touch it
TOKENS = {"admin": ADMIN, "tenant": TENANT, "agent": AGENT}

# Endpoints that take a body: (method, path, token, a body it accepts, fields whose
# minimum is above 0 so -0 is out of range). The bodies are sent whole only at the end.
n = [0]


def unique(prefix):
    n[0] += 1
    return "%s-%d" % (prefix, n[0])


BODY_ENDPOINTS = [
    ("POST", "/api/warmup/control", "admin", lambda: {"action": "trigger"}, []),
    ("POST", "/api/plans", "admin", lambda: {
        "name": unique("plan"), "ramp_start": 5, "ramp_step": 2, "daily_max": 30,
        "cooldown_min_s": 60, "cooldown_max_s": 90, "reply_rate": 0.25,
        "weekdays_only": False, "max_mailboxes": 50}, []),
    ("POST", "/api/users", "admin", lambda: {
        "name": unique("user"), "plan_id": plan["id"], "timezone": "Europe/Berlin"},
     ["plan_id"]),
    ("POST", "/api/mailboxes", "admin", lambda: {
        "user_id": users[1]["id"], "address": unique("a") + "@adv.test", "display_name": "A",
        "smtp": {"host": "127.0.0.1", "port": 2525, "security": "plain",
                 "username": "u@adv.test", "password": "pw-secret"},
        "imap": {"host": "imap.adv.test", "port": 993, "security": "tls",
                 "username": "u@adv.test", "password": "imap-pw",
                 "allow_plaintext_auth": False},
        "timezone": "UTC", "window": {"start_hour": 6, "end_hour": 22}, "daily_target": 5,
        "warmup_start": "2026-03-02"}, ["user_id", "smtp.port", "imap.port",
                                        "window.end_hour"]),
    ("POST", "/api/mailboxes", "tenant", lambda: {
        "address": unique("t") + "@adv.test",
        "smtp": {"host": "smtp.adv.test", "port": 587, "security": "starttls",
                 "username": "t@adv.test", "password": "tenant-pw"},
        "imap": {"host": "imap.adv.test", "port": 143, "oauth_token": "tok.EN-1~+/="}},
     ["smtp.port", "imap.port"]),
    ("PATCH", "/api/mailboxes/%d" % MB, "tenant", lambda: {
        "display_name": unique("Renamed"), "smtp": {"host": "smtp2.adv.test", "port": 465,
                                                    "password": "new-pw"},
        "imap": {"host": "imap2.adv.test", "port": 993, "security": "starttls",
                 "username": "m@adv.test", "password": "imap-new-pw",
                 "allow_plaintext_auth": True},
        "window": {"start_hour": 0, "end_hour": 24}}, ["smtp.port", "imap.port",
                                                       "window.end_hour"]),
    ("POST", "/api/agents", "admin", lambda: {"name": unique("agent")}, []),
    ("POST", "/api/tokens", "admin", lambda: {"scope": "tenant", "user_id": users[1]["id"]},
     ["user_id"]),
    ("POST", "/api/agent/lease", "agent", lambda: {"agent": "host-adv", "max_mailboxes": 5,
                                                   "max_sends": 50, "max_inboxes": 3},
     ["max_mailboxes", "max_sends"]),
    ("POST", "/api/agent/heartbeat", "agent", lambda: {"lease_id": LEASE}, []),
    ("POST", "/api/agent/report", "agent", lambda: {"lease_id": LEASE, "results": [
        {"send_id": SEND, "status": "sent", "smtp_code": 250, "enhanced_code": "2.0.0",
         "detail": "ok", "latency_ms": 12}]}, ["results[0].send_id"]),
    ("POST", "/api/agent/release", "agent", lambda: {"lease_id": LEASE}, []),
]


# ---- building hostile bodies ------------------------------------------------------------

def path_str(path):
    out = ""
    for p in path:
        out += "[%d]" % p if isinstance(p, int) else ("." if out else "") + p
    return out


def leaves(v, path=()):
    """(path, value) of every scalar, object and array below the root."""
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else []
    for k, x in items:
        yield path + (k,), x
        yield from leaves(x, path + (k,))


def keys(v, path=()):
    """(path of the object, key) of every member name."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield path, k
            yield from keys(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from keys(x, path + (i,))


def copy(v):
    return json.loads(json.dumps(v))


def put(body, path, value):
    b = copy(body)
    cur = b
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return b


def rename(body, opath, key, new):
    b = copy(body)
    cur = b
    for p in opath:
        cur = cur[p]
    cur[new] = cur.pop(key)
    return b


def encode(body, raw=b""):
    """JSON bytes with the RAWSEP marker replaced by raw bytes: a string that is only the
    marker becomes the raw bytes as a value, a marker inside a string or key is replaced
    in place."""
    text = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    mark = RAWSEP.encode()
    return text.replace(b'"' + mark + b'"', raw).replace(mark, raw)


def depth_of(path):
    return 1 + sum(1 for _ in path)  # the root object plus one container per step


def attacks(body, positive):
    """(label, raw body, status, code or None, field or None, field must equal)."""
    out = []
    first = next(iter(body))
    # Depth: 300,000 '[' open or closed inside a member, bare, and nested objects.
    out.append(("300,000 '[' in a member", encode({first: RAWSEP}, b"[" * 300000), 400,
                "malformed_json", None))
    out.append(("300,000 '[' closed in a member",
                encode({first: RAWSEP}, b"[" * 300000 + b"]" * 300000), 400, "malformed_json",
                None))
    out.append(("300,000 '[' as the body", b"[" * 300000, 400, "not_an_object", None))
    out.append(("150,000 nested objects", b'{"a":' * 150000 + b"1" + b"}" * 150000, 400,
                "malformed_json", None))
    # One level past the limit at every member; exactly the limit is no parse error.
    for path, v in leaves(body):
        d = depth_of(path[:-1])
        out.append(("65 levels at %s" % path_str(path),
                    encode(put(body, path, RAWSEP), b"[" * (65 - d) + b"]" * (65 - d)), 400,
                    "malformed_json", None))
        out.append(("64 levels at %s" % path_str(path),
                    encode(put(body, path, RAWSEP), b"[" * (64 - d) + b"]" * (64 - d)), 400,
                    "invalid_field", None))
    strings = [(p, v) for p, v in leaves(body) if isinstance(v, str)]
    escapes = [b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud800x", b"\\ud800\\u0041",
               b"\\udbff\\udbff", b"\\ude00\\ud83d"]
    raws = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"]
    for i, (path, v) in enumerate(strings):
        f = path_str(path)
        out.append(("\\u0000 in %s" % f, encode(put(body, path, v[:2] + "\x00" + v[2:])), 400,
                    "invalid_field", f))
        for e in escapes[1:]:
            out.append(("%s in %s" % (e.decode(), f),
                        encode(put(body, path, v[:1] + RAWSEP + v[1:]), e), 400,
                        "invalid_field", f))
        for r in raws:
            out.append(("raw %r in %s" % (r, f), encode(put(body, path, v + RAWSEP), r), 400,
                        "invalid_utf8", f))
        out.append(("1,000,000 characters in %s" % f, encode(put(body, path, "a" * 1000000)),
                    400, "invalid_field", f))
    for opath, k in keys(body):
        parent = path_str(opath)
        named = (parent + "." if parent else "") + k
        out.append(("\\u0000 in member name %s" % named,
                    encode(rename(body, opath, k, k + "\x00zz")), 400, "invalid_field",
                    named + "\\u0000zz"))
        out.append(("\\ud800 in member name %s" % named,
                    encode(rename(body, opath, k, k + RAWSEP), b"\\ud800"), 400,
                    "invalid_field", None))
        out.append(("raw \\xff in member name %s" % named,
                    encode(rename(body, opath, k, k + RAWSEP), b"\xff"), 400,
                    "invalid_utf8", None))
        # Duplicates: the same member again, same value and another one, at the end.
        text = encode(body).decode()
        val = body
        for p in opath:
            val = val[p]
        dup = json.dumps(k) + ":" + json.dumps(val[k])
        obj_text = json.dumps(val, ensure_ascii=False)
        for extra in (dup, json.dumps(k) + ":" + json.dumps(val[k] if not isinstance(val[k], str)
                                                            else val[k] + "-other")):
            new_obj = obj_text[:-1] + "," + extra + "}"
            out.append(("duplicate member %s (%s)" % (named, extra[:40]),
                        text.replace(obj_text, new_obj, 1).encode(), 400, "invalid_field",
                        named))
    # Numbers and types.
    huge = [b"1e400", b"-1e400", b"9223372036854775808", b"99999999999999999999",
            b"-9223372036854775809", b"1e2"]
    for path, v in leaves(body):
        f = path_str(path)
        if isinstance(v, bool):
            wrong = ["false", 0, 1, [], {}]
        elif isinstance(v, int):
            for h in huge:
                out.append(("%s at %s" % (h.decode(), f), encode(put(body, path, RAWSEP), h),
                            400, None, f))
            if f in positive:
                out.append(("-0 at %s" % f, encode(put(body, path, RAWSEP), b"-0"), 400, None,
                            f))
            wrong = [str(v), True, 1.5, [], {}]
        elif isinstance(v, float):
            for h in huge[:5]:
                out.append(("%s at %s" % (h.decode(), f), encode(put(body, path, RAWSEP), h),
                            400, None, f))
            wrong = [str(v), True, [], {}]
        elif isinstance(v, str):
            wrong = [12345, True, [], {}, [v]]
        elif isinstance(v, dict):
            wrong = ["x", 1, [], True]
        else:
            wrong = ["x", 1, {}, True]
        for w in wrong:
            out.append(("%s at %s" % (json.dumps(w), f), encode(put(body, path, w)), 400, None,
                        f))
    # Shapes and syntax.
    good = encode(body)
    out += [
        ("2 MiB body", b'{"x":"' + b"a" * (2 << 20) + b'"}', 413, "body_too_large", None),
        ("60,000 unknown members", encode({"k%d" % i: i for i in range(60000)}), 400,
         "unknown_field", None),
        ("empty body", b"", 400, "empty_body", None),
        ("whitespace body", b" \r\n\t ", 400, None, None),
        ("array body", b"[]", 400, "not_an_object", None),
        ("string body", b'"x"', 400, "not_an_object", None),
        ("null body", b"null", 400, "not_an_object", None),
        ("number body", b"1e400", 400, "not_an_object", None),
        ("BOM before the body", b"\xef\xbb\xbf" + good, 400, None, None),
        ("NUL byte after the body", good + b"\x00", 400, "invalid_utf8", None),
        ("trailing garbage", good + b"x", 400, "malformed_json", None),
        ("two bodies", good + good, 400, "malformed_json", None),
        ("truncated body", good[:-1], 400, "malformed_json", None),
        ("trailing comma", good[:-1] + b",}", 400, "malformed_json", None),
        ("comment", b"/*c*/" + good, 400, None, None),
        ("single quotes", good.replace(b'"', b"'"), 400, None, None),
        ("NaN", encode({first: RAWSEP}, b"NaN"), 400, "malformed_json", None),
        ("Infinity", encode({first: RAWSEP}, b"Infinity"), 400, "malformed_json", None),
        ("raw control byte in a string", encode({first: "a" + RAWSEP}, b"\x01"), 400,
         "malformed_json", None),
    ]
    return out


def expect_refused(r, label, status, code, field):
    counts["requests"] += 1
    ok_status = r.status == status if status else 400 <= r.status < 500
    if not ok_status or not r.json or not isinstance(r.json.get("error"), dict) or \
            set(r.json["error"]) != {"code", "message", "field"}:
        fail("%s: expected HTTP %s with a JSON error body, got %r" % (label, status, r))
    err = r.json["error"]
    if code and err["code"] != code:
        fail("%s: expected error code %s, got %r" % (label, code, r))
    if field is not None and err["field"] != field:
        fail("%s: expected field %r, got %r" % (label, field, r))


def attack_body_endpoint(method, path, tok, make, positive):
    body = make()
    before = dump()
    where = "%s %s (%s)" % (method, path, tok)
    for label, raw, status, code, field in attacks(body, positive):
        r = call(method, path, token=TOKENS[tok], raw=raw, timeout=60)
        expect_refused(r, "%s: %s" % (where, label), status, code, field)
    check_unchanged(before, where)
    check_alive(where)
    # The untouched body is accepted: each refusal above was for its attack alone.
    r = call(method, path, make(), token=TOKENS[tok])
    check(200 <= r.status < 300, "%s: the untouched body is refused: %r" % (where, r))


# The cases of issue 10, as reported.
before = dump()
TENANT_BOX = BODY_ENDPOINTS[4][3]
for path, tok, raw, field in [
        ("/api/warmup/control", "admin", b'{"action\\u0000zz":"start"}', "action\\u0000zz"),
        ("/api/mailboxes", "tenant",
         encode(put(TENANT_BOX(), ("smtp", "host"), "127.0.0.1\x00.evil")), "smtp.host"),
        ("/api/mailboxes", "tenant",
         encode(put(TENANT_BOX(), ("smtp", "password"), "pass" + RAWSEP + "word"), b"\\udc00"),
         "smtp.password"),
        ("/api/mailboxes", "tenant",
         encode(put(TENANT_BOX(), ("smtp", "password"), "pass" + RAWSEP), b"\\ud800"),
         "smtp.password")]:
    expect_refused(call("POST", path, token=TOKENS[tok], raw=raw), "issue 10: %r" % raw[:60],
                   400, "invalid_field", field)
check_unchanged(before, "the cases of issue 10")
ok("issue 10: a NUL in a member name or a host, a lone surrogate in a password: 400 naming it")

for method, path, tok, make, positive in BODY_ENDPOINTS:
    attack_body_endpoint(method, path, tok, make, positive)
ok("every endpoint with a body refuses depth, NUL, surrogates, bad UTF-8, huge numbers, "
   "huge bodies, duplicates, wrong types and bad JSON with a JSON 4xx, changing nothing "
   "(%d requests)" % counts["requests"])


# ---- paths and query strings of every endpoint ------------------------------------------

ROUTES = [("GET", "/healthz", "admin"), ("GET", "/metrics", "admin"),
          ("GET", "/api/warmup/metrics", "admin"), ("GET", "/api/warmup/health", "admin"),
          ("GET", "/api/warmup/quota", "tenant"), ("GET", "/api/warmup/mailbox", "tenant"),
          ("GET", "/api/warmup/control", "admin"), ("POST", "/api/warmup/control", "admin"),
          ("POST", "/api/plans", "admin"), ("GET", "/api/plans", "tenant"),
          ("GET", "/api/plans/{}", "tenant"), ("POST", "/api/users", "admin"),
          ("GET", "/api/users", "tenant"), ("GET", "/api/users/{}", "tenant"),
          ("POST", "/api/mailboxes", "tenant"), ("GET", "/api/mailboxes", "tenant"),
          ("GET", "/api/mailboxes/{}", "tenant"), ("PATCH", "/api/mailboxes/{}", "tenant"),
          ("DELETE", "/api/mailboxes/{}", "tenant"),
          ("POST", "/api/mailboxes/{}/pause", "tenant"),
          ("POST", "/api/mailboxes/{}/resume", "tenant"),
          ("GET", "/api/mailboxes/{}/health", "tenant"),
          ("GET", "/api/mailboxes/{}/placement", "tenant"), ("POST", "/api/agents", "admin"),
          ("GET", "/api/agents", "admin"), ("POST", "/api/tokens", "admin"),
          ("POST", "/api/agent/lease", "agent"), ("POST", "/api/agent/report", "agent"),
          ("POST", "/api/agent/heartbeat", "agent"), ("POST", "/api/agent/release", "agent")]
BAD_QUERIES = ["a=%00", "a=%ff", "a=%ed%a0%80", "a=%c0%af", "a=%e2%82", "%00=1", "a=%zz",
               "a=%"]
BAD_IDS = ["99999999999999999999", "9223372036854775808", "-0", "0", "1e400", "0x10", "%20" + "1",
           "1.0", "%ff", "%ed%a0%80"]
NUMERIC_QUERIES = {"limit": ["1e400", "-0", "0", "9223372036854775808",
                             "99999999999999999999", "1.5", "abc", ""],
                   "cursor": ["1e400", "9223372036854775808", "99999999999999999999", "-1",
                              "abc"],
                   "id": ["1e400", "-0", "0", "9223372036854775808", "99999999999999999999"],
                   "user_id": ["1e400", "-0", "9223372036854775808", "abc"]}
LISTS = {"/api/plans", "/api/users", "/api/mailboxes", "/api/agents",
         "/api/mailboxes/{}/placement"}

before = dump()
for method, route, tok in ROUTES:
    path = route.replace("{}", str(MB))
    body = {} if method in ("POST", "PATCH") else None
    for q in BAD_QUERIES:
        r = call(method, path + "?" + q, body, token=TOKENS[tok])
        expect_refused(r, "%s %s?%s" % (method, path, q), 400, None, None)
    r = call(method, path + "?a=" + "b" * 20000, body, token=TOKENS[tok])
    expect_refused(r, "%s %s with a 20,000-byte query" % (method, path), 414, "uri_too_long",
                   None)
    r = call(method, path[:2] + "%00" + path[2:], body, token=TOKENS[tok])
    expect_refused(r, "%s %s with %%00 in the path" % (method, path), 400, None, None)
    if "{}" in route:
        for bad in BAD_IDS:
            p = route.replace("{}", bad)
            r = call(method, p, body, token=TOKENS[tok])
            expect_refused(r, "%s %s" % (method, p), None, None, None)
    params = (["limit", "cursor"] + (["user_id"] if route == "/api/mailboxes" else [])) \
        if route in LISTS and method == "GET" else (["id"] if route == "/api/warmup/mailbox"
                                                     else [])
    for name in params:
        for v in NUMERIC_QUERIES[name]:
            r = call(method, path + "?" + name + "=" + v, token=TOKENS[tok])
            expect_refused(r, "%s %s?%s=%s" % (method, path, name, v), 400, "invalid_query", name)
check_unchanged(before, "hostile paths and query strings")
check_alive("hostile paths and query strings")
ok("every endpoint refuses hostile paths and query strings (%00, bad UTF-8, encoded "
   "surrogates, huge and negative ids, 414) with a JSON 4xx, changing nothing")


# ---- the same parser attacks straight over FastCGI --------------------------------------

SOCK = fcgi.socket_path()
before = dump()
for method, path, tok, make, positive in BODY_ENDPOINTS:
    body = make()
    for label, raw, status, code, field in attacks(body, positive):
        if status == 413 or not any(s in label for s in ("300,000", "65 levels", "\\u0000",
                                                          "\\ud8", "\\udc", "duplicate",
                                                          "raw", "1e400")):
            continue
        r = fcgi.request(SOCK, method, path, raw, token=TOKENS[tok], timeout=60)
        what = "FastCGI %s %s: %s" % (method, path, label)
        check(r.complete_head and r.headers.get("cache-control") == ["no-store"],
              "%s: expected a head with one 'Cache-Control: no-store', got %r" % (what, r))
        cl = r.header("content-length")
        check(cl and cl.isdigit() and int(cl) == len(r.body),
              "%s: Content-Length %r for a body of %d bytes" % (what, cl, len(r.body)))
        resp = type("R", (), {})()
        resp.status, resp.raw = r.status, r.body
        try:
            resp.json = json.loads(r.body)
        except ValueError:
            resp.json = None
        expect_refused(resp, what, status, code, field)
    r = fcgi.request(SOCK, method, path, b"{}", token=TOKENS[tok], content_length=2 << 20)
    check(r.status == 413 and r.headers.get("cache-control") == ["no-store"],
          "FastCGI %s %s with CONTENT_LENGTH 2 MiB: expected 413 with no-store, got %r"
          % (method, path, r))
check_unchanged(before, "the FastCGI pass")
check_alive("the FastCGI pass")
ok("straight over FastCGI the parser attacks get a clean 4xx head with no-store, "
   "changing nothing, with kiln-api alive (pid %s)" % PID)
