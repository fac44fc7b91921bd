"""test_every_answer_has_a_well_formed_head_with_cache_control_no_store: kiln-api's raw
FastCGI output (read straight from its socket, no nginx in between) has a head of
well-formed `Name: value` lines, a Content-Length equal to the body's length, and
exactly one `Cache-Control: no-store`, for every kind of answer (2xx with secrets,
204, 4xx, 413, HEAD); and nginx passes the header on to the client."""
import os
import re
import urllib.request
from kiln_test import *
import fastcgi_client as fcgi

SOCK = fcgi.socket_path()
HEADER_LINE = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*: [\x20-\x7e]*$")


def check_head(r, what, head_request=False):
    check(r.app_status == 0 and r.complete_head,
          "%s: expected a complete FastCGI answer, got %r" % (what, r))
    for line in r.head_lines:
        check(HEADER_LINE.match(line), "%s: malformed header line %r in %r" % (what, line, r))
        name = line.split(b":", 1)[0]
        value = line.split(b":", 1)[1]
        check(not re.search(rb"(^|\s)[A-Za-z-]+:\s", value),
              "%s: a header's value holds another header: %r" % (what, line))
        check(name.lower() not in (b"content-length",) or value.strip().isdigit(),
              "%s: Content-Length is not a number: %r" % (what, line))
    check(r.headers.get("cache-control") == ["no-store"],
          "%s: expected exactly one 'Cache-Control: no-store', got %r in %r"
          % (what, r.headers.get("cache-control"), r))
    names = [l.split(b":", 1)[0].lower() for l in r.head_lines]
    check(len(names) == len(set(names)) or names.count(b"allow") <= 1,
          "%s: a header appears twice: %r" % (what, r.head_lines))
    if r.status == 204:
        check(r.header("content-length") is None and r.body == b"",
              "%s: a 204 has no body and no Content-Length: %r" % (what, r))
    else:
        cl = r.header("content-length")
        check(cl is not None, "%s: no Content-Length in %r" % (what, r))
        if not head_request:
            check(int(cl) == len(r.body),
                  "%s: Content-Length %s but the body has %d bytes" % (what, cl, len(r.body)))
        else:
            check(r.body == b"", "%s: HEAD answered with a body: %r" % (what, r))
    return r


def fc(method, path, body=None, token=ADMIN, status=None, **kw):
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None
                                               else b"")
    r = fcgi.request(SOCK, method, path, raw, token=token, **kw)
    what = "FastCGI %s %s" % (method, path)
    check_head(r, what, head_request=(method == "HEAD"))
    if status is not None:
        check(r.status == status, "%s: expected status %d, got %r" % (what, status, r))
    if r.status >= 400 and method != "HEAD":
        j = json.loads(r.body)
        check(set(j["error"]) == {"code", "message", "field"},
              "%s: expected a JSON error body, got %r" % (what, r))
    return r


plan = fc("POST", "/api/plans", {"name": "raw", "ramp_start": 5, "ramp_step": 2,
                                 "daily_max": 30}, status=201)
plan_id = json.loads(plan.body)["id"]
user_id = json.loads(fc("POST", "/api/users", {"name": "raw-u", "plan_id": plan_id,
                                               "timezone": "UTC"}, status=201).body)["id"]
mb = fc("POST", "/api/mailboxes", mailbox_body(user_id, "raw@x.test"), status=201)
mb_id = json.loads(mb.body)["id"]
tok = fc("POST", "/api/tokens", {"scope": "tenant", "user_id": user_id}, status=201)
check("token" in json.loads(tok.body), "token creation answers the token: %r" % tok)
agent = fc("POST", "/api/agents", {"name": "raw-agent"}, status=201)
agent_token = json.loads(agent.body)["token"]
fc("POST", "/api/agent/lease", {"max_mailboxes": 5}, token=agent_token, status=200)
ok("2xx answers that carry secrets (tokens, leases) have a clean head with no-store")

fc("GET", "/healthz", token=None, status=200)
fc("HEAD", "/healthz", token=None, status=200)
fc("GET", "/metrics", status=200)
fc("GET", "/api/warmup/metrics?format=prometheus", status=200)
fc("GET", "/api/plans", status=200)
fc("GET", "/api/mailboxes/%d" % mb_id, status=200)
fc("POST", "/api/mailboxes/%d/pause" % mb_id, status=200)
fc("DELETE", "/api/mailboxes/%d" % mb_id, status=204)
ok("GET, HEAD, text/plain metrics and a 204 have a clean head with no-store")

fc("GET", "/api/plans", token=None, status=401)
fc("GET", "/api/agent/lease", status=405)
fc("GET", "/api/nope", status=404)
fc("POST", "/api/plans", b'{"name":', status=400)
fc("POST", "/api/plans", b"[" * 300000, status=400)
fc("POST", "/api/plans", b'{"a":' + b"[" * 300000, status=400)
fc("POST", "/api/plans", b'{"name\\u0000x":"a"}', status=400)
fc("POST", "/api/plans", b"x" * (1024 * 1024 + 1), status=413)
fc("POST", "/api/plans", b"{}", content_length=10, status=400)
for lie in ["abc", "-1", "1e3", " 5", "99999999999999999999", "-99999999999999999999", ""]:
    r = fc("POST", "/api/plans", b'{"name":"x"}', content_length=lie)
    check(400 <= r.status < 500, "CONTENT_LENGTH %r: expected a 4xx, got %r" % (lie, r))
r = fc("PUT", "/api/plans", status=405)
check(r.header("allow"), "405 carries Allow: %r" % r)
r = fc("GET", "/api/plans", token="x" * 40, status=401)
check(r.header("www-authenticate"), "401 carries WWW-Authenticate: %r" % r)
check(os.path.exists("/proc/" + open(os.path.join(VAR, "run", "kiln-api.pid")).read().strip()),
      "kiln-api is alive after the bad requests")
ok("4xx answers (401, 404, 405 with Allow, 400, 413, lying CONTENT_LENGTH) have a clean "
   "head with no-store")

# Through nginx: the header reaches the client once, on success and on error.
for method, path, body, token in [("GET", "/healthz", None, None),
                                  ("POST", "/api/tokens", {"scope": "metrics"}, ADMIN),
                                  ("POST", "/api/agent/lease", {"max_mailboxes": 1}, agent_token),
                                  ("GET", "/api/plans", None, None),
                                  ("POST", "/api/plans", {"x": 1}, ADMIN)]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        resp = urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        resp = e
    values = resp.headers.get_all("Cache-Control") or []
    check(values == ["no-store"], "nginx %s %s: expected one 'Cache-Control: no-store', got %r"
          % (method, path, values))
    cl = resp.headers.get("Content-Length")
    got = resp.read()
    check(cl is None or int(cl) == len(got), "nginx %s %s: Content-Length %s, body %d bytes"
          % (method, path, cl, len(got)))
ok("through nginx every answer carries exactly one Cache-Control: no-store")
