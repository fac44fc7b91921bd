"""Helpers for kiln's integration tests: HTTP through nginx with stdlib only, the
stack's psql, and assertions that say what was expected and what came."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

URL = os.environ.get("KILN_URL", "http://127.0.0.1:8080")
ADMIN = os.environ.get("KILN_ADMIN_TOKEN", "")
SRC = os.environ.get("KILN_SOURCE_DIR", ".")
VAR = os.environ.get("KILN_STACK_VAR", "")
BUILD = os.environ.get("KILN_BUILD_DIR", "build")


class Resp:
    def __init__(self, status, body, headers):
        self.status = status
        self.raw = body
        self.headers = headers
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "HTTP %d %s" % (self.status, self.raw[:300])


def call(method, path, body=None, token=None, raw=None, headers=None, timeout=30):
    """One request; body is JSON-encoded, raw is sent as is (bytes)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(URL + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Resp(r.status, r.read().decode("utf-8", "replace"), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.read().decode("utf-8", "replace"), dict(e.headers))


def admin(method, path, body=None, **kw):
    return call(method, path, body, token=ADMIN, **kw)


def expect(resp, status, what):
    if resp.status != status:
        fail("%s: expected HTTP %d, got %r" % (what, status, resp))
    return resp.json


def expect_error(resp, status, code=None, field=None, what=""):
    j = expect(resp, status, what)
    if not j or "error" not in j or set(j["error"]) != {"code", "message", "field"}:
        fail("%s: expected a JSON error body, got %r" % (what, resp))
    if code and j["error"]["code"] != code:
        fail("%s: expected error code %s, got %r" % (what, code, resp))
    if field and j["error"]["field"] != field:
        fail("%s: expected field %s, got %r" % (what, field, resp))
    return j


def check(cond, msg):
    if not cond:
        fail(msg)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class PsqlError(subprocess.CalledProcessError):
    """A failed psql call that says what PostgreSQL said, not only the exit status."""

    def __str__(self):
        return "psql exited %d: %s\n  for: %s" % (self.returncode, (self.stderr or "").strip()[-2000:],
                                                 " ".join(str(self.cmd).split())[:300])


def psql(sql, *args):
    """Runs SQL through the stack's psql (-v params as :'p1'...), returns stdout rows."""
    cmd = ["bash", "-c",
           'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
           'STACK_PG_PORT=$STACK_PG_PORT stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; '
           'shift 3; stack_psql -tA "$@"',
           SRC, VAR, os.environ.get("KILN_BUILD_DIR", "build"), "x", "-c", sql]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise PsqlError(out.returncode, sql, out.stdout, out.stderr)
    return [l for l in out.stdout.splitlines() if l]


def stack_bash(script, *args):
    """Runs script with the stack's environment (stack.sh functions, KILN_DB, ...)."""
    cmd = ["bash", "-c", 'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
           'STACK_PG_PORT=$STACK_PG_PORT stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; '
           'shift 2; ' + script, SRC, VAR, BUILD] + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        fail("%s: exit %d: %s %s" % (script[:60], out.returncode, out.stdout, out.stderr))
    return [l for l in out.stdout.splitlines() if l]


def make_plan(name, **kw):
    body = {"name": name, "ramp_start": 5, "ramp_step": 2, "daily_max": 30}
    body.update(kw)
    return expect(admin("POST", "/api/plans", body), 201, "create plan " + name)


def make_user(name, plan_id, tz="UTC"):
    return expect(admin("POST", "/api/users", {"name": name, "plan_id": plan_id, "timezone": tz}),
                  201, "create user " + name)


def mailbox_body(user_id, address, **kw):
    body = {"user_id": user_id, "address": address, "display_name": address.split("@")[0],
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "plain",
                     "username": address, "password": "pw-" + address,
                     "allow_plaintext_auth": True}}
    body.update(kw)
    return body


def make_mailbox(user_id, address, token=None, **kw):
    r = call("POST", "/api/mailboxes", mailbox_body(user_id, address, **kw), token=token or ADMIN)
    return expect(r, 201, "create mailbox " + address)


def db_psql(db, sql):
    """psql on database db of the stack's PostgreSQL (not the stack's own kiln database):
    the upgrade tests' databases at an older schema."""
    return stack_bash('"$(stack_pg_bin)/psql" -X -q -tA -v ON_ERROR_STOP=1 -h "$STACK_PGSOCK" '
                      '-p "$STACK_PG_PORT" -U postgres -d "$1" -c "$2"', db, sql)


def migrate_before(dbname, version):
    """Migrates database dbname (on the stack's PostgreSQL, created by the caller) with the
    migrations numbered below version only: the schema an older release left (upgrade
    tests). `kiln-api migrate` against it afterwards applies the rest."""
    import shutil
    import tempfile
    old = tempfile.mkdtemp(prefix="kiln-mig-")
    try:
        mig = os.path.join(SRC, "sql", "migrations")
        os.mkdir(os.path.join(old, "migrations"))
        for n in sorted(os.listdir(mig)):
            if n.endswith(".sql") and n < version:
                shutil.copy(os.path.join(mig, n), os.path.join(old, "migrations", n))
        stack_bash('KILN_DB="host=$STACK_PGSOCK port=$STACK_PG_PORT dbname=$2 user=postgres" '
                   'KILN_SQL_DIR="$1" "$STACK_BUILD/api/kiln-api" migrate', old, dbname)
    finally:
        shutil.rmtree(old)


def ok(name):
    print("ok - " + name)


def set_clock(iso):
    """Moves kiln_now() to the given instant (e.g. '2026-11-28T12:00:00Z')."""
    psql("UPDATE kiln_clock SET offset_s = extract(epoch FROM ('%s'::timestamptz - now()))"
         % iso.replace("'", ""))


def reset_clock():
    psql("UPDATE kiln_clock SET offset_s = 0")


def wait_for(pred, what, timeout=15.0, interval=0.2):
    """Polls pred() until it returns a truthy value; fails after timeout seconds."""
    import time
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    fail("timed out waiting for %s (last: %r)" % (what, last))


class StackGuard:
    """What a hostile-input test checks after its attacks: the named tables are as they
    were (the volatile columns, which reading or authenticating may touch, left out) and
    kiln-api is the same process, still serving."""

    def __init__(self, tables, volatile=("last_seen_at",)):
        self.tables = list(tables)
        self.pid_file = os.path.join(VAR, "run", "kiln-api.pid")
        self.pid = open(self.pid_file).read().strip()
        self.sql = " UNION ALL ".join(
            "SELECT '%s', coalesce(jsonb_agg(to_jsonb(t) %s ORDER BY to_jsonb(t)::text), "
            "'[]')::text FROM %s t" % (t, "".join(" - '%s'" % c for c in volatile), t)
            for t in self.tables)

    def dump(self):
        return dict(line.split("|", 1) for line in psql(self.sql))

    def check_unchanged(self, before, what):
        after = self.dump()
        changed = [t for t in self.tables if before.get(t) != after.get(t)]
        check(not changed, "%s changed PostgreSQL tables %s: before %r after %r" % (
            what, changed, [before.get(t, "")[:300] for t in changed],
            [after.get(t, "")[:300] for t in changed]))

    def check_alive(self, what):
        now = open(self.pid_file).read().strip() if os.path.exists(self.pid_file) else ""
        check(now == self.pid and os.path.exists("/proc/" + self.pid),
              "%s: kiln-api %s died (pid file now %r)" % (what, self.pid, now))
        check(call("GET", "/healthz").status == 200, "%s: /healthz no longer answers" % what)
