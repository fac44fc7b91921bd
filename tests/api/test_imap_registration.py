"""The inbox side's registration (issue 13) through nginx: a mailbox's IMAP access is
created, shown without its secret (inbox "unverified"), changed and removed; every field
is validated like smtp's (a 400 naming it, nothing changed); the secret is sealed at rest
with additional data of its own (it does not open as the SMTP secret) and never returned
or logged; tenants see only their own; and migration 010 upgrades a database that
already holds mailboxes.
  test_imap_registration.py [part]   (part: registration, bad_input, sealing, tenant,
                                      upgrade; all when absent)"""
import os
import shutil
import subprocess
import sys
import tempfile
from kiln_test import *

PASSWORD = "imap-Pa55word-unique-marker"
TOKEN = "ya29.unique-oauth-TOKEN-marker_~+/=="


def imap(**kw):
    body = {"host": "imap.acme.test", "port": 993, "security": "tls",
            "username": "anna@acme.test", "password": PASSWORD}
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


def get(mid, token=None):
    return expect(call("GET", "/api/mailboxes/%d" % mid, token=token or ADMIN), 200,
                  "GET mailbox %d" % mid)


def row(mid, cols):
    return psql("SELECT %s FROM mailboxes WHERE id = %d" % (cols, mid))[0].split("|")


def part_registration():
    plan = make_plan("p")
    user = make_user("acme", plan["id"])
    mb = make_mailbox(user["id"], "anna@acme.test", imap=imap(username=None, security=None))
    want = {"host": "imap.acme.test", "port": 993, "security": "tls",
            "username": "anna@acme.test", "password_set": True, "oauth_token_set": False,
            "allow_plaintext_auth": False}
    check(mb["imap"] == want, "created imap access (defaults tls, the address): %r" % mb["imap"])
    check(mb["inbox"] == "unverified" and mb["inbox_error"] is None and
          mb["inbox_error_at"] is None, "a new IMAP access is unverified: %r" % mb)
    check(get(mb["id"]) == mb, "GET equals the created mailbox")
    check(PASSWORD not in json.dumps(mb), "the IMAP password is echoed: %r" % mb)
    ok("test_create_with_imap_shows_access_without_secret_and_unverified")

    plain = make_mailbox(user["id"], "bob@acme.test")
    check(plain["imap"] is None and plain["inbox"] == "unverified",
          "a mailbox without IMAP: imap null, inbox unverified: %r" % plain)
    nul = make_mailbox(user["id"], "nul@acme.test", imap=None)
    check(nul["imap"] is None, "imap: null on a create is no IMAP: %r" % nul)
    tok = make_mailbox(user["id"], "carl@acme.test",
                       imap={"host": "outlook.office365.com", "port": 993,
                             "oauth_token": TOKEN})
    check(tok["imap"]["oauth_token_set"] and not tok["imap"]["password_set"] and
          tok["imap"]["username"] == "carl@acme.test", "token access: %r" % tok["imap"])
    check(row(tok["id"], "imap_auth")[0] == "oauth_token", "the stored kind is oauth_token")
    ok("test_create_without_imap_and_with_an_oauth_token")

    # Any change of the access makes it unverified again and clears the last error.
    psql("UPDATE mailboxes SET inbox = 'error', inbox_error = 'LOGIN failed', "
         "inbox_error_at = now() WHERE id = %d" % mb["id"])
    g = get(mb["id"])
    check(g["inbox"] == "error" and g["inbox_error"] == "LOGIN failed" and g["inbox_error_at"],
          "the inbox error shows in GET: %r" % g)
    p = expect(admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"imap": {"port": 143,
               "security": "starttls"}}), 200, "patch imap port")
    check(p["imap"]["port"] == 143 and p["imap"]["security"] == "starttls" and
          p["imap"]["host"] == "imap.acme.test" and p["imap"]["password_set"],
          "patched imap keeps what was not given: %r" % p["imap"])
    check(p["inbox"] == "unverified" and p["inbox_error"] is None and p["inbox_error_at"] is None,
          "a changed access is unverified again: %r" % p)
    before = row(mb["id"], "encode(imap_secret, 'hex')")[0]
    p = expect(admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"display_name": "Anna"}), 200,
               "patch without imap")
    check(p["imap"]["port"] == 143 and row(mb["id"], "encode(imap_secret, 'hex')")[0] == before,
          "a patch without imap leaves the access and its secret alone")
    p = expect(admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"imap": {"oauth_token": TOKEN}}),
               200, "patch to a token")
    check(p["imap"]["oauth_token_set"] and not p["imap"]["password_set"],
          "a token replaces the password: %r" % p["imap"])
    p = expect(admin("PATCH", "/api/mailboxes/%d" % mb["id"],
                     {"imap": {"password": "x" + PASSWORD, "allow_plaintext_auth": True}}),
               200, "patch back to a password")
    check(p["imap"]["password_set"] and p["imap"]["allow_plaintext_auth"] is True,
          "a password replaces the token: %r" % p["imap"])
    check(p["smtp"]["host"] == "127.0.0.1" and p["smtp"]["password_set"],
          "smtp untouched by imap patches: %r" % p["smtp"])
    p = expect(admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"imap": None}), 200, "remove")
    check(p["imap"] is None and p["inbox"] == "unverified", "imap: null removes it: %r" % p)
    check(row(mb["id"], "imap_secret IS NULL, imap_auth IS NULL") == ["t", "t"],
          "the removed secret is gone from the row")
    ok("test_patch_changes_adds_switches_and_removes_imap")

    r = admin("PATCH", "/api/mailboxes/%d" % plain["id"], {"imap": {"port": 993}})
    expect_error(r, 422, "invalid_field", "imap", "partial imap on a mailbox without one")
    check(get(plain["id"])["imap"] is None, "the refused patch changed nothing")
    p = expect(admin("PATCH", "/api/mailboxes/%d" % plain["id"],
                     {"address": "bobby@acme.test",
                      "imap": {"host": "127.0.0.1", "port": 1143, "password": PASSWORD}}),
               200, "add imap by patch")
    check(p["imap"]["username"] == "bobby@acme.test" and p["imap"]["security"] == "tls",
          "added access gets the defaults (the new address, tls): %r" % p["imap"])
    ok("test_patch_adding_imap_needs_host_port_and_secret")

    for path in ("/api/mailboxes", "/api/mailboxes/%d" % tok["id"], "/api/warmup/quota",
                 "/api/warmup/mailbox?id=%d" % tok["id"]):
        r = admin("GET", path)
        check(r.status == 200 and PASSWORD not in r.raw and TOKEN not in r.raw,
              "GET %s reveals an IMAP secret" % path)
    logs = ""
    for name in os.listdir(os.path.join(VAR, "log")):
        with open(os.path.join(VAR, "log", name), errors="replace") as f:
            logs += f.read()
    check(PASSWORD not in logs and TOKEN not in logs, "an IMAP secret is in the logs")
    ok("test_imap_secret_is_never_returned_or_logged")


def part_bad_input():
    plan = make_plan("p")
    user = make_user("u", plan["id"])
    mb = make_mailbox(user["id"], "ok@x.test", imap=imap())
    snapshot = get(mb["id"])
    secret = row(mb["id"], "encode(imap_secret, 'hex')")[0]

    def create_body(**kw):
        return mailbox_body(user["id"], "new@x.test", imap=imap(**kw))

    def imap_text(field, value_text):
        """The imap object's JSON text with field's value written as value_text."""
        members = {"host": '"h.x.test"', "port": "993", "password": '"pw"'}
        if field == "oauth_token":
            del members["password"]
        members[field] = value_text
        return "{" + ",".join('"%s":%s' % kv for kv in members.items()) + "}"

    cases = []  # (imap members, raw JSON text of the imap object or None, field, code)
    for f in ("host", "username", "password", "oauth_token"):
        others = {"password": None} if f == "oauth_token" else {}
        for wrong in (12345, True, [], {}, ["x"], "", "a\nb", "a\rb", "a\x01b", "x" * 5000):
            cases.append((dict(others, **{f: wrong}), None, "imap." + f, "invalid_field"))
        for esc in ("\\u0000", "\\ud800", "\\udc00", "\\ud800\\u0041"):
            cases.append((None, imap_text(f, '"a%sb"' % esc), "imap." + f, "invalid_field"))
    for wrong in ("993", 0, 65536, -1, 1.5, True, [], 10 ** 20):
        cases.append(({"port": wrong}, None, "imap.port", "invalid_field"))
    for wrong in ("ssl", "TLS", "", 1):
        cases.append(({"security": wrong}, None, "imap.security", "invalid_field"))
    for wrong in ("true", 1):
        cases.append(({"allow_plaintext_auth": wrong}, None, "imap.allow_plaintext_auth",
                      "invalid_field"))
    cases += [
        ({"host": "bad host!"}, None, "imap.host", "invalid_field"),
        ({"host": "-lead.x.test"}, None, "imap.host", "invalid_field"),
        ({"host": "h.x.test\x00.evil"}, None, "imap.host", "invalid_field"),
        ({"password": "pw", "oauth_token": TOKEN}, None, "imap.oauth_token", "invalid_field"),
        ({"password": None, "oauth_token": "has space"}, None, "imap.oauth_token",
         "invalid_field"),
        ({"password": None, "oauth_token": "=abc"}, None, "imap.oauth_token", "invalid_field"),
        ({"password": None}, None, "imap.password", "missing_field"),
        ({"host": None}, None, "imap.host", "missing_field"),
        ({"port": None}, None, "imap.port", "missing_field"),
        ({"tls_mode": "x"}, None, "imap.tls_mode", "unknown_field"),
        ({"ca_file": "/etc/shadow"}, None, "imap.ca_file", "unknown_field"),
    ]
    n = 0
    for members, raw, field, code in cases:
        if raw is not None:
            body = json.dumps(mailbox_body(user["id"], "new@x.test", imap="@IMAP@"))
            data = body.replace('"@IMAP@"', raw).encode()
            r = call("POST", "/api/mailboxes", raw=data, token=ADMIN)
            what = "create with imap %s" % raw
        else:
            r = admin("POST", "/api/mailboxes", create_body(**members))
            what = "create with imap %r" % (members,)
        expect_error(r, 400, code, field, what)
        n += 1
        if raw is None and code != "missing_field":
            only = {k: v for k, v in members.items() if v is not None}
            r = admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"imap": only})
            expect_error(r, 400, code, field, "patch with imap %r" % (only,))
            n += 1
    for wrong in ("x", 1, [], True):
        expect_error(admin("POST", "/api/mailboxes",
                           mailbox_body(user["id"], "new@x.test", imap=wrong)), 400,
                     "invalid_field", "imap", "imap %r" % (wrong,))
        expect_error(admin("PATCH", "/api/mailboxes/%d" % mb["id"], {"imap": wrong}), 400,
                     "invalid_field", "imap", "patch imap %r" % (wrong,))
        n += 2
    check(psql("SELECT count(*) FROM mailboxes")[0] == "1", "bad input created a mailbox")
    check(get(mb["id"]) == snapshot, "bad input changed the mailbox")
    check(row(mb["id"], "encode(imap_secret, 'hex')")[0] == secret, "bad input changed the secret")
    ok("test_bad_imap_input_is_a_400_naming_the_field_and_changes_nothing (%d requests)" % n)


def part_sealing():
    set_clock("2026-03-04T10:00:00Z")  # a Wednesday
    plan = make_plan("p", ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60,
                     cooldown_max_s=90)
    users = [make_user("s%d" % i, plan["id"]) for i in range(2)]
    same = "same-secret-for-both"
    boxes = [make_mailbox(u["id"], "m@s%d.test" % i, timezone="UTC",
                          window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01",
                          smtp={"host": "127.0.0.1", "port": 2525, "security": "plain",
                                "password": same, "allow_plaintext_auth": True},
                          imap={"host": "127.0.0.1", "port": 1143, "password": same})
             for i, u in enumerate(users)]
    mid = boxes[0]["id"]
    smtp_hex, imap_hex = row(mid, "encode(smtp_secret, 'hex'), encode(imap_secret, 'hex')")
    check(same.encode().hex() not in imap_hex and len(imap_hex) // 2 >= len(same) + 30,
          "the IMAP secret must be sealed at rest (nonce + ciphertext + tag): %s" % imap_hex)
    check(smtp_hex != imap_hex, "the same password seals differently (random nonce)")
    # Put the sealed IMAP secret where the SMTP one belongs: it must not open there.
    psql("UPDATE mailboxes SET smtp_secret = imap_secret WHERE id = %d" % mid)
    agent = expect(admin("POST", "/api/agents", {"name": "a"}), 201, "agent")["token"]
    lease = expect(call("POST", "/api/agent/lease", {"max_mailboxes": 10, "max_sends": 10,
                                                      "max_inboxes": 5}, token=agent),
                   200, "lease")
    got = {m["id"]: m["smtp"]["password"] for m in lease["mailboxes"]}
    check(mid in got and boxes[1]["id"] in got, "both mailboxes leased: %r" % lease)
    check(got[mid] is None, "a sealed IMAP secret opened as an SMTP secret: %r" % got[mid])
    check(got[boxes[1]["id"]] == same, "the SMTP secret opens: %r" % got)
    imap_got = {i["mailbox_id"]: i["imap"]["password"] for i in lease.get("inboxes", [])}
    check(imap_got == {mid: same, boxes[1]["id"]: same},
          "the IMAP secrets open (with their own additional data) in the inbox lease: %r"
          % imap_got)
    expect_error(call("POST", "/api/agent/lease", {"max_inboxes": 10001}, token=agent), 400,
                 "invalid_field", "max_inboxes", "max_inboxes over the limit")
    reset_clock()
    ok("test_imap_secret_is_sealed_with_its_own_additional_data")


def part_tenant():
    plan = make_plan("p")
    a, b = make_user("a", plan["id"]), make_user("b", plan["id"])
    ta = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": a["id"]}), 201,
                "token a")["token"]
    tb = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": b["id"]}), 201,
                "token b")["token"]
    ma = expect(call("POST", "/api/mailboxes", {"address": "x@a.test", "smtp": {
        "host": "smtp.a.test", "port": 587, "password": "pw"}, "imap": imap()}, token=ta),
        201, "tenant a creates with imap")
    check(ma["imap"]["password_set"] and ma["user_id"] == a["id"], "tenant create: %r" % ma)
    expect_error(call("PATCH", "/api/mailboxes/%d" % ma["id"], {"imap": {"port": 1}}, token=tb),
                 404, "not_found", None, "tenant b patches a's imap")
    expect_error(call("PATCH", "/api/mailboxes/%d" % ma["id"], {"imap": None}, token=tb),
                 404, "not_found", None, "tenant b removes a's imap")
    expect_error(call("GET", "/api/mailboxes/%d" % ma["id"], token=tb), 404, "not_found", None,
                 "tenant b reads a's mailbox")
    check(get(ma["id"], ta)["imap"]["port"] == 993, "a's access is unchanged")
    lst = expect(call("GET", "/api/mailboxes", token=tb), 200, "b's list")
    check(lst["items"] == [], "tenant b sees none of a's mailboxes: %r" % lst)
    ok("test_imap_access_is_tenant_isolated")


def part_upgrade():
    db = "kiln_upgrade"
    psql("CREATE DATABASE %s" % db)
    old = tempfile.mkdtemp(prefix="kiln-mig-")
    try:
        os.mkdir(os.path.join(old, "migrations"))
        mig = os.path.join(SRC, "sql", "migrations")
        names = sorted(n for n in os.listdir(mig) if n.endswith(".sql"))
        check("010_imap.sql" in names, "010_imap.sql exists: %r" % names)
        for n in names[:names.index("010_imap.sql")]:
            shutil.copy(os.path.join(mig, n), os.path.join(old, "migrations", n))
        migrate = ('KILN_DB="${KILN_DB/dbname=kiln /dbname=%s }" KILN_SQL_DIR="$1" '
                   '"$STACK_BUILD/api/kiln-api" migrate' % db)
        q = ('"$(stack_pg_bin)/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$STACK_PGSOCK" '
             '-p "$STACK_PG_PORT" -U postgres -d %s -c "$1"' % db)
        stack_bash(migrate, old)
        check(stack_bash(q, "SELECT count(*) FROM information_schema.columns "
                            "WHERE table_name = 'mailboxes' AND column_name = 'inbox'") == ["0"],
              "the old schema has no inbox column")
        stack_bash(q, "INSERT INTO plans (name, ramp_start, ramp_step, daily_max) "
                      "VALUES ('p', 5, 2, 30); "
                      "INSERT INTO users (name, plan_id, timezone) VALUES ('u', 1, 'UTC'); "
                      "INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, "
                      "smtp_username, smtp_secret, timezone, warmup_start) VALUES "
                      "(1, 'old1@u.test', 'h.test', 587, 'old1', '\\x00', 'UTC', '2026-01-01'), "
                      "(1, 'old2@u.test', 'h.test', 587, 'old2', '\\x00', 'UTC', '2026-01-01')")
        stack_bash(migrate, os.path.join(SRC, "sql"))
        rows = stack_bash(q, "SELECT address, inbox, inbox_error IS NULL, imap_host IS NULL, "
                             "imap_secret IS NULL, imap_allow_plaintext_auth FROM mailboxes "
                             "ORDER BY id")
        check(rows == ["old1@u.test|unverified|t|t|t|f", "old2@u.test|unverified|t|t|t|f"],
              "existing mailboxes migrate without IMAP, unverified: %r" % rows)
        stack_bash(migrate, os.path.join(SRC, "sql"))  # a second run is a no-op
        check(stack_bash(q, "SELECT count(*) FROM schema_migrations WHERE version = "
                            "'010_imap.sql'") == ["1"], "010 recorded once")
        out = subprocess.run(
            ["bash", "-c", 'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
             'STACK_PG_PORT=$STACK_PG_PORT stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; '
             '"$(stack_pg_bin)/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$STACK_PGSOCK" '
             '-p "$STACK_PG_PORT" -U postgres -d %s -c "UPDATE mailboxes SET imap_host = '
             "'half.test' WHERE id = 1\"" % db, SRC, VAR, BUILD], capture_output=True, text=True)
        check(out.returncode != 0 and "mailboxes_imap_complete" in out.stderr,
              "half an IMAP access is refused by the schema: %r" % out.stderr)
    finally:
        shutil.rmtree(old, ignore_errors=True)
        psql("DROP DATABASE IF EXISTS %s" % db)
    ok("test_migration_010_upgrades_existing_mailboxes_without_imap")


PARTS = {"registration": part_registration, "bad_input": part_bad_input,
         "sealing": part_sealing, "tenant": part_tenant, "upgrade": part_upgrade}
if len(sys.argv) > 1:
    PARTS[sys.argv[1]]()
else:
    for f in PARTS.values():
        f()
