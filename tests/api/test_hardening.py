"""API hardening of issue 10, one part per CTest (test_hardening.py PART, each against its
own stack): display names a header can carry (5), smtp.allow_plaintext_auth end to end (7),
one bad mailbox never poisons a lease (10), the plan's mailbox cap under released-together
creates (11), kiln_sends_total counting each slot once (14), token revocation, refused time
zones and the disabled-mailbox gauge (15)."""
import http.client
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "leasing"))
from kiln_test import *  # noqa: E402,F401,F403
from leaselib import make_agent, set_clock, lease, report, sent, all_sends, utc  # noqa: E402

FULL_DAY = {"start_hour": 0, "end_hour": 24}


def leasable_mailbox(user_id, address, **kw):
    """A mailbox that is due at once under the test clock of set_clock(2026-03-04 10:00)."""
    kw.setdefault("timezone", "UTC")
    kw.setdefault("window", FULL_DAY)
    kw.setdefault("warmup_start", "2026-03-01")
    return make_mailbox(user_id, address, **kw)


def prometheus_sample(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


# ---- item 5: display names ---------------------------------------------------------

def part_display_name():
    plan = make_plan("p", max_mailboxes=100)
    u = make_user("u", plan["id"])
    bad = {
        "a tab": "Anna\tBerg",
        "a CR": "Anna\rBcc: victim@evil.test",
        "an LF": "Anna\nBerg",
        "CRLF": "Anna\r\nSubject: hi",
        "an escape": "Anna\x1b[31mBerg",
        "DEL": "Anna\x7fBerg",
        "a C1 control (NEL)": "Anna\x85Berg",
        "a C1 control (CSI)": "Anna\x9bBerg",
        "a line separator": "Anna\u2028Berg",
        "a paragraph separator": "Anna\u2029Berg",
        "201 characters": "a" * 201,
        "2,000 characters": "x" * 2000,
        "201 two-byte characters": "\u00e9" * 201,
    }
    for i, (what, name) in enumerate(bad.items()):
        expect_error(admin("POST", "/api/mailboxes",
                           mailbox_body(u["id"], "n%d@x.test" % i, display_name=name)),
                     400, "invalid_field", "display_name", "POST display_name with " + what)
    check(psql("SELECT count(*) FROM mailboxes") == ["0"],
          "no mailbox may be stored from a rejected display name")
    # Up to 200 characters of any script are fine, whatever their byte count.
    long_ok = "\u00e9" * 200
    m = make_mailbox(u["id"], "ok@x.test", display_name=long_ok)
    check(m["display_name"] == long_ok, "200 characters (400 bytes) round-trip: %r" % m)
    m2 = make_mailbox(u["id"], "ok2@x.test", display_name="Zo\u00eb M\u00fcller-L\u00fcdenscheidt "
                      "(Sales) \u5c71\u7530 \U0001f525")
    check(m2["display_name"].endswith("\U0001f525"), "unicode display name: %r" % m2)
    for what, name in bad.items():
        expect_error(admin("PATCH", "/api/mailboxes/%d" % m["id"], {"display_name": name}),
                     400, "invalid_field", "display_name", "PATCH display_name with " + what)
    got = expect(admin("GET", "/api/mailboxes/%d" % m["id"]), 200, "get")
    check(got["display_name"] == long_ok, "a rejected PATCH changes nothing: %r" % got)
    ok("test_display_name_over_200_characters_or_with_control_characters_is_400")


# ---- item 7: smtp.allow_plaintext_auth -----------------------------------------------

def part_plaintext_auth():
    set_clock(utc(2026, 3, 4, 10, 0, 0))
    plan = make_plan("p", ramp_start=4, ramp_step=0, daily_max=4, cooldown_min_s=60,
                     cooldown_max_s=90)
    users = [make_user("u%d" % i, plan["id"]) for i in range(2)]
    want = {}
    for i in range(4):
        smtp = {"host": "127.0.0.1", "port": 2525, "security": "plain",
                "username": "m%d" % i, "password": "pw-%d" % i}
        if i % 2 == 0:
            smtp["allow_plaintext_auth"] = True
        m = leasable_mailbox(users[i % 2]["id"], "m%d@d%d.test" % (i, i), smtp=smtp)
        check(m["smtp"].get("allow_plaintext_auth") is (i % 2 == 0),
              "create echoes allow_plaintext_auth (default false): %r" % m["smtp"])
        want[m["id"]] = i % 2 == 0
    for mid, flag in want.items():
        g = expect(admin("GET", "/api/mailboxes/%d" % mid), 200, "get")
        check(g["smtp"]["allow_plaintext_auth"] is flag, "GET: %r" % g["smtp"])
    page = expect(admin("GET", "/api/mailboxes"), 200, "list")
    check({m["id"]: m["smtp"]["allow_plaintext_auth"] for m in page["items"]} == want,
          "list: %r" % page)
    # PATCH sets and clears it and leaves it alone when absent.
    one = list(want)[1]
    p = expect(admin("PATCH", "/api/mailboxes/%d" % one, {"smtp": {"allow_plaintext_auth": True}}),
               200, "patch on")
    check(p["smtp"]["allow_plaintext_auth"] is True, "patched on: %r" % p)
    p = expect(admin("PATCH", "/api/mailboxes/%d" % one, {"display_name": "x"}), 200, "patch")
    check(p["smtp"]["allow_plaintext_auth"] is True, "absent leaves it: %r" % p)
    p = expect(admin("PATCH", "/api/mailboxes/%d" % one, {"smtp": {"allow_plaintext_auth": False}}),
               200, "patch off")
    check(p["smtp"]["allow_plaintext_auth"] is False, "patched off: %r" % p)
    for v in ("true", 1, 0, None, [], {}):
        body = mailbox_body(users[0]["id"], "bad@x.test")
        body["smtp"]["allow_plaintext_auth"] = v
        expect_error(admin("POST", "/api/mailboxes", body), 400, "invalid_field",
                     "smtp.allow_plaintext_auth", "POST allow_plaintext_auth=%r" % (v,))
        expect_error(admin("PATCH", "/api/mailboxes/%d" % one, {"smtp": {"allow_plaintext_auth": v}}),
                     400, "invalid_field", "smtp.allow_plaintext_auth",
                     "PATCH allow_plaintext_auth=%r" % (v,))
    # Rows that existed before the migration (or are written without the column) get false.
    col = psql("SELECT column_default, is_nullable FROM information_schema.columns "
               "WHERE table_name = 'mailboxes' AND column_name = 'smtp_allow_plaintext_auth'")
    check(col == ["false|NO"], "the column is NOT NULL DEFAULT false: %r" % col)
    ok("test_allow_plaintext_auth_is_accepted_validated_stored_and_returned")

    tok = make_agent("host-a")
    a = lease(tok)
    got = {m["id"]: m["smtp"] for m in a["mailboxes"]}
    check(set(got) == set(want), "all 4 mailboxes leased: %r" % sorted(got))
    for mid, smtp in got.items():
        check(smtp.get("allow_plaintext_auth") is want[mid],
              "lease smtp of mailbox %d carries allow_plaintext_auth=%r: %r" % (mid, want[mid], smtp))
    ok("test_lease_emits_allow_plaintext_auth_per_mailbox")


# ---- item 10: one bad mailbox never poisons a lease -----------------------------------

def seal(plain):
    """Seals bytes the way kiln-api does (common/secret.c: "k1" nonce ciphertext tag)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    with open(os.path.join(VAR, "secret.key")) as f:
        key = bytes.fromhex(f.read().strip())
    nonce = os.urandom(12)
    return b"k1" + nonce + AESGCM(key).encrypt(nonce, plain, None)


def raw_lease(token):
    body = json.dumps({"agent": "t", "max_mailboxes": 200, "max_sends": 2000}).encode()
    req = urllib.request.Request(URL + "/api/agent/lease", data=body, method="POST")
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        check(r.status == 200, "lease status %d" % r.status)
        return r.read()


def part_lease_poison():
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("SKIP: python3-cryptography is needed to seal a corrupt secret", file=sys.stderr)
        sys.exit(77)
    set_clock(utc(2026, 3, 4, 10, 0, 0))
    plan = make_plan("p", ramp_start=3, ramp_step=0, daily_max=3, cooldown_min_s=60,
                     cooldown_max_s=90)
    users = [make_user("u%d" % i, plan["id"]) for i in range(3)]
    boxes = [leasable_mailbox(users[i % 3]["id"], "m%d@d%d.test" % (i, i)) for i in range(9)]
    # Legacy rows: secrets that are not text (a NUL, a lone surrogate, a stray byte).
    corrupt = {boxes[0]["id"]: b"pw\x00trailing", boxes[4]["id"]: b"pw\xed\xa0\x80",
               boxes[8]["id"]: b"\xff\xfepw"}
    for mid, plain in corrupt.items():
        psql("UPDATE mailboxes SET smtp_secret = '\\x%s'::bytea WHERE id = %d"
             % (seal(plain).hex(), mid))
    good = {m["id"] for m in boxes} - set(corrupt)
    tok = make_agent("host-a")
    raw = raw_lease(tok)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail("the lease answer is not valid UTF-8 (%s): one bad mailbox poisoned it" % e)
    check("\\u0000" not in text and "\x00" not in text, "the lease answer carries a NUL")
    check("\ufffd" not in text, "a bad secret was emitted as a replacement character")
    a = json.loads(text)
    leased = {m["id"] for m in a["mailboxes"]}
    check(leased == good, "the lease holds every good mailbox and no bad one: got %r, want %r"
          % (sorted(leased), sorted(good)))
    for m in a["mailboxes"]:
        check(m["smtp"]["password"] == "pw-" + m["address"], "good secrets intact: %r" % m["smtp"])
    for mid in corrupt:
        g = expect(admin("GET", "/api/mailboxes/%d" % mid), 200, "get bad mailbox")
        check(g["state"] == "error" and g["last_error"] and "UTF-8" in g["last_error"]
              and g["last_error_at"], "a bad mailbox goes to error with last_error: %r" % g)
        row = psql("SELECT lease_id IS NULL, pending FROM mailbox_leasing WHERE mailbox_id = %d"
                   % mid)
        check(row == ["t|0"], "a bad mailbox holds no slot: %r" % row)
        check(psql("SELECT count(*) FROM sends WHERE mailbox_id = %d" % mid) == ["0"],
              "no send was written for a bad mailbox")
    log = open(os.path.join(VAR, "log", "kiln-api.log"), "rb").read()
    check(b"pw\xed\xa0\x80" not in log and b"trailing" not in log, "a secret reached the log")
    check(b"not valid UTF-8" in log, "the left-out mailboxes are logged")
    ok("test_a_mailbox_with_a_corrupt_secret_is_left_out_of_the_lease_and_errored")

    # Not re-leased forever: a second agent finds nothing to lease (the good ones are
    # leased, the bad ones in error), and the lease that left them out was whole.
    b = json.loads(raw_lease(make_agent("host-b")).decode("utf-8"))
    check(b["lease_id"] is None and b["mailboxes"] == [], "nothing left to lease: %r" % b)
    report(tok, a["lease_id"], [sent(s["id"]) for s in all_sends(a)])
    ok("test_the_rest_of_the_lease_is_unaffected")


# ---- item 11: the plan's mailbox cap under parallel creates --------------------------

def part_plan_cap():
    plan = make_plan("cap10", max_mailboxes=10)
    host = urllib.parse.urlsplit(URL)
    threads_n, rounds = 50, 5
    for rnd in range(rounds):
        u = make_user("r%d" % rnd, plan["id"])
        barrier = threading.Barrier(threads_n)
        results = [None] * threads_n

        def worker(i, uid=u["id"], rnd=rnd, barrier=barrier, results=results):
            body = json.dumps(mailbox_body(uid, "m%d@r%d.test" % (i, rnd)))
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
            try:
                conn.connect()
                barrier.wait()
                conn.request("POST", "/api/mailboxes", body,
                             {"Authorization": "Bearer " + ADMIN,
                              "Content-Type": "application/json"})
                r = conn.getresponse()
                results[i] = (r.status, r.read().decode("utf-8", "replace"))
            except Exception as e:  # reported below
                results[i] = (0, repr(e))
            finally:
                conn.close()

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        created = [r for r in results if r[0] == 201]
        refused = [r for r in results if r[0] == 422 and '"plan_limit"' in r[1]]
        check(len(created) + len(refused) == threads_n,
              "round %d: every answer is 201 or 422 plan_limit: %r"
              % (rnd, [r for r in results if r not in created and r not in refused][:3]))
        stored = int(psql("SELECT count(*) FROM mailboxes WHERE user_id = %d AND deleted_at IS NULL"
                          % u["id"])[0])
        check(len(created) == 10 and stored == 10,
              "round %d: max_mailboxes=10 must hold under %d parallel creates: %d created, "
              "%d stored" % (rnd, threads_n, len(created), stored))
    ok("test_plan_mailbox_cap_holds_under_50_released_together_creates_%d_rounds" % rounds)


# ---- item 14: kiln_sends_total counts each slot once ---------------------------------

def sends_total():
    """The JSON counters, checked equal to /metrics' at one moment. The expiry sweep
    runs on its own thread, so a reading counts only when the JSON is the same before
    and after the scrape (CI once caught the sweep between the two requests)."""
    def json_totals():
        return expect(admin("GET", "/api/warmup/metrics"), 200, "json metrics")["sends_total"]
    for _ in range(20):
        j = json_totals()
        text = expect_text(admin("GET", "/metrics"))
        if json_totals() != j:
            time.sleep(0.05)
            continue
        for st, v in j.items():
            p = prometheus_sample(text, 'kiln_sends_total{status="%s"}' % st)
            check(p == v, "prometheus %s %r vs json %r" % (st, p, v))
        return j
    check(False, "the send counters kept moving through 20 readings")


def expect_text(r):
    check(r.status == 200, "/metrics: %r" % r)
    return r.raw


def part_sends_total():
    set_clock(utc(2026, 3, 4, 10, 0, 0))
    plan = make_plan("p", ramp_start=4, ramp_step=0, daily_max=4, cooldown_min_s=60,
                     cooldown_max_s=90)
    users = [make_user("u%d" % i, plan["id"]) for i in range(2)]
    for i in range(4):
        leasable_mailbox(users[i % 2]["id"], "m%d@d%d.test" % (i, i))
    tok = make_agent("host-a")

    a = lease(tok)
    sa = all_sends(a)
    check(len(sa) >= 2, "lease A has slots: %r" % a)
    r = expect(call("POST", "/api/agent/release", {"lease_id": a["lease_id"]}, token=tok), 200,
               "release")
    check(r["released"] == len(sa), "all of lease A released: %r" % r)
    check(sends_total()["cancelled"] == len(sa), "released slots count as cancelled")
    # The agent had sent one before the release reached it: the report still counts.
    report(tok, a["lease_id"], [sent(sa[0]["id"])])
    report(tok, a["lease_id"], [sent(sa[1]["id"], status="deferred")])
    t = sends_total()
    check(t["sent"] == 1 and t["deferred"] == 1 and t["cancelled"] == len(sa) - 2,
          "a cancelled slot reported later counts once, by its final status: %r (%d slots)"
          % (t, len(sa)))
    check(sum(t.values()) == len(sa), "each slot counted once: %r for %d slots" % (t, len(sa)))
    ok("test_a_released_then_reported_slot_counts_once_by_final_status")

    # Expiry: a later lease whose deadline passes with no agent calling.
    set_clock(utc(2026, 3, 4, 12, 0, 0))
    expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")
    b = lease(tok)
    sb = all_sends(b)
    check(len(sb) >= 1 and b["lease_id"], "lease B has slots: %r" % b)
    expect(admin("POST", "/api/warmup/control", {"action": "stop"}), 200, "stop")
    set_clock(utc(2026, 3, 4, 13, 0, 0))  # past B's 600 s
    wait_for(lambda: sends_total()["expired"] == len(sb), "lease B's slots expired")
    report(tok, b["lease_id"], [sent(sb[0]["id"])])
    t = sends_total()
    check(t["sent"] == 2 and t["expired"] == len(sb) - 1,
          "an expired slot reported later counts once: %r (%d slots in B)" % (t, len(sb)))
    check(sum(t.values()) == len(sa) + len(sb), "each slot counted once: %r for %d slots"
          % (t, len(sa) + len(sb)))
    # A duplicate report moves nothing.
    report(tok, b["lease_id"], [sent(sb[0]["id"])])
    check(sends_total() == t, "a duplicate report changes no counter")
    counted = int(psql("SELECT count(*) FROM sends WHERE status <> 'leased'")[0])
    check(sum(t.values()) == counted, "counters %r agree with %d finished sends rows" % (t, counted))
    ok("test_an_expired_then_reported_slot_counts_once_by_final_status")


# ---- item 15: tokens, time zones, disabled mailboxes ---------------------------------

def new_token(scope, user_id=None):
    body = {"scope": scope}
    if user_id:
        body["user_id"] = user_id
    return expect(admin("POST", "/api/tokens", body), 201, "token " + scope)


def works(token):
    return call("GET", "/api/plans", token=token).status == 200


def part_tokens():
    plan = make_plan("p")
    u1, u2 = make_user("one", plan["id"]), make_user("two", plan["id"])
    t1, t1b, t2 = new_token("tenant", u1["id"]), new_token("tenant", u1["id"]), \
        new_token("tenant", u2["id"])
    adm2, met = new_token("admin"), new_token("metrics")
    for t in (t1, t1b, t2, adm2):
        check(works(t["token"]), "token %r works before revocation" % t["id"])

    # A tenant revokes only its own user's tokens; anything else is a 404.
    for other in (t2, adm2, met):
        expect_error(call("DELETE", "/api/tokens/%d" % other["id"], token=t1["token"]), 404,
                     "not_found", None, "tenant revoking token %d of someone else" % other["id"])
    check(works(t2["token"]) and works(adm2["token"]), "a refused revocation changes nothing")
    r = call("DELETE", "/api/tokens/%d" % t1b["id"], token=t1["token"])
    check(r.status == 204, "tenant revokes its own other token: %r" % r)
    expect_error(call("GET", "/api/plans", token=t1b["token"]), 401, "unauthorized", None,
                 "a revoked token is refused at once")
    expect_error(call("DELETE", "/api/tokens/%d" % t1b["id"], token=t1["token"]), 404,
                 "not_found", None, "revoking twice")
    check(works(t1["token"]), "the revoking tenant token still works")

    # The metrics scope may not revoke; an admin revokes any token, agents' too.
    expect_error(call("DELETE", "/api/tokens/%d" % t2["id"], token=met["token"]), 403, "forbidden")
    r = admin("DELETE", "/api/tokens/%d" % t2["id"])
    check(r.status == 204, "admin revokes a tenant token: %r" % r)
    check(not works(t2["token"]), "revoked tenant token refused")
    agent_tok = make_agent("host-a")
    page = expect(admin("GET", "/api/tokens?limit=1000"), 200, "list tokens")
    check(all(set(t) == {"id", "scope", "user_id", "agent_id", "created_at", "revoked_at"}
              for t in page["items"]), "token list shape (never the hash): %r" % page["items"][:2])
    check(all(agent_tok not in json.dumps(t) for t in page["items"]), "token list leaks a token")
    agent_ids = [t["id"] for t in page["items"] if t["scope"] == "agent"]
    check(len(agent_ids) == 1, "the agent's token is listed: %r" % page)
    revoked = {t["id"] for t in page["items"] if t["revoked_at"]}
    check(revoked == {t1b["id"], t2["id"]}, "revoked_at set on revoked tokens: %r" % page)
    check(call("POST", "/api/agent/lease", {}, token=agent_tok).status == 200, "agent works")
    r = admin("DELETE", "/api/tokens/%d" % agent_ids[0])
    check(r.status == 204, "admin revokes an agent token: %r" % r)
    expect_error(call("POST", "/api/agent/lease", {}, token=agent_tok), 401, "unauthorized")
    mine = expect(call("GET", "/api/tokens", token=t1["token"]), 200, "tenant lists tokens")
    check({t["id"] for t in mine["items"]} == {t1["id"], t1b["id"]},
          "a tenant lists only its own user's tokens: %r" % mine)
    for bad in ("999999", "0", "abc", "-1"):
        expect_error(admin("DELETE", "/api/tokens/" + bad), 404, "not_found", None, "id " + bad)
    # A tenant may revoke the very token it calls with (logging out).
    r = call("DELETE", "/api/tokens/%d" % t1["id"], token=t1["token"])
    check(r.status == 204 and not works(t1["token"]), "self-revocation: %r" % r)
    check(works(adm2["token"]) and works(ADMIN), "admin tokens untouched")
    ok("test_token_revocation_admin_any_tenant_own_revoked_is_401_at_once")


def part_timezones():
    plan = make_plan("p")
    u = make_user("u", plan["id"])
    m = make_mailbox(u["id"], "m@x.test")
    for tz in ("localtime", "Factory", "posixrules"):
        expect_error(admin("POST", "/api/users", {"name": "x-" + tz, "plan_id": plan["id"],
                                                  "timezone": tz}),
                     400, "invalid_field", "timezone", "user with time zone " + tz)
        expect_error(admin("POST", "/api/mailboxes",
                           mailbox_body(u["id"], "%s@x.test" % tz.lower(), timezone=tz)),
                     400, "invalid_field", "timezone", "mailbox with time zone " + tz)
        expect_error(admin("PATCH", "/api/mailboxes/%d" % m["id"], {"timezone": tz}),
                     400, "invalid_field", "timezone", "patch to time zone " + tz)
    check(psql("SELECT count(*) FROM users") == ["1"], "no user stored with a refused zone")
    for tz in ("UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"):
        expect(admin("PATCH", "/api/mailboxes/%d" % m["id"], {"timezone": tz}), 200, "tz " + tz)
    ok("test_time_zones_localtime_factory_posixrules_are_refused")


def part_disabled_metric():
    plan = make_plan("p")
    u = make_user("u", plan["id"])
    ms = [make_mailbox(u["id"], "m%d@x.test" % i) for i in range(3)]
    for m in ms[:2]:
        expect(admin("DELETE", "/api/mailboxes/%d" % m["id"]), 204, "delete")

    def snapshot():
        text = expect_text(admin("GET", "/metrics"))
        d = prometheus_sample(text, 'kiln_mailboxes{state="disabled"}')
        a = prometheus_sample(text, 'kiln_mailboxes{state="active"}')
        return (d, a) if d == 2 and a == 1 else None

    wait_for(snapshot, 'kiln_mailboxes{state="disabled"} 2 and active 1 after deleting two of '
             'three mailboxes', timeout=10)
    j = expect(admin("GET", "/api/warmup/metrics"), 200, "json metrics")
    check(j["mailboxes"]["disabled"] == 2 and j["mailboxes"]["active"] == 1,
          "json metrics mailboxes: %r" % j["mailboxes"])
    ok("test_deleted_mailboxes_count_as_disabled")


PARTS = {
    "display_name": part_display_name,
    "plaintext_auth": part_plaintext_auth,
    "lease_poison": part_lease_poison,
    "plan_cap": part_plan_cap,
    "sends_total": part_sends_total,
    "tokens": part_tokens,
    "timezones": part_timezones,
    "disabled_metric": part_disabled_metric,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PARTS:
        fail("usage: test_hardening.py {%s}" % "|".join(PARTS))
    started = time.time()
    PARTS[sys.argv[1]]()
    print("# %s: %.1fs" % (sys.argv[1], time.time() - started))
