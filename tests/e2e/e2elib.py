"""Helpers of the end-to-end tests: SMTP sinks (sink.py) and kiln-agent processes on
127.0.0.1, a pool of users and mailboxes, waiting for quotas, and the checks every test
shares (exactly one message per sent slot, matched by Message-ID). Every process started
here is killed at exit, whatever happens."""
import atexit
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from kiln_test import URL, admin, check, expect, fail, make_plan, make_user, psql  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("KILN_BUILD_DIR", "build")
AGENT = os.path.join(BUILD, "agent", "kiln-agent")
WORK = tempfile.mkdtemp(prefix="kiln-e2e.")
PROCS = []


def _cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if os.environ.get("E2E_KEEP"):
        print("kept " + WORK, file=sys.stderr)
    else:
        subprocess.run(["rm", "-rf", WORK])


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))


def need_mail_stack():
    """Exits 77 (skipped) unless deploy/local/mailstack.sh can run here."""
    import shutil
    why = None
    if os.geteuid() != 0:
        why = "Postfix's master must start as root"
    for tool in ("postfix", "doveadm"):
        if not why and not shutil.which(tool):
            why = tool + " is not installed"
    if not why and (not os.path.exists("/usr/lib/dovecot/lmtp") or
                    not os.path.exists("/usr/lib/dovecot/modules/lib90_sieve_plugin.so")):
        why = "dovecot-lmtpd or dovecot-sieve is not installed"
    if why:
        print("SKIP: " + why)
        sys.exit(77)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sink:
    """sink.py on a free port; received() gives [(user, message_id)]."""

    def __init__(self, name, bad_user="", busy=False):
        self.port = free_port()
        self.out = os.path.join(WORK, "sink-%s.log" % name)
        self.busy_file = os.path.join(WORK, "sink-%s.busy" % name)
        if busy:
            open(self.busy_file, "w").close()
        log = open(os.path.join(WORK, "sink-%s.stderr" % name), "w")
        self.p = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "sink.py"), "--port", str(self.port),
             "--out", self.out, "--bad-user", bad_user, "--busy-file", self.busy_file],
            stdout=subprocess.PIPE, stderr=log, text=True)
        PROCS.append(self.p)
        line = self.p.stdout.readline()
        check(line.strip() == "READY", "sink %s did not start: %r" % (name, line))

    def set_busy(self, busy):
        if busy:
            open(self.busy_file, "w").close()
        elif os.path.exists(self.busy_file):
            os.unlink(self.busy_file)

    def received(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [tuple(l.split(" ", 1)) for l in f.read().splitlines() if l]


class Agent:
    """One kiln-agent run process with its own token, spool and log."""

    def __init__(self, name, env=None, token=None):
        self.name = name
        self.spool = os.path.join(WORK, "spool-" + name)
        self.token_file = os.path.join(WORK, name + ".token")
        self.log = os.path.join(WORK, "agent-%s.log" % name)
        if token is None:
            token = expect(admin("POST", "/api/agents", {"name": name}), 201, "agent " + name)["token"]
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        self.env = dict(os.environ)
        self.env.update({"KILN_API_URL": URL, "KILN_AGENT_TOKEN_FILE": self.token_file,
                         "KILN_AGENT_SPOOL_DIR": self.spool, "KILN_AGENT_NAME": name,
                         "KILN_AGENT_CONCURRENCY": "200", "KILN_AGENT_THREADS": "1",
                         "KILN_AGENT_HEARTBEAT_S": "3", "KILN_AGENT_LEASE_IDLE_MAX_S": "2",
                         "KILN_AGENT_REPORT_INTERVAL_MS": "200", "KILN_AGENT_HTTP_TIMEOUT_S": "10",
                         "KILN_AGENT_DRAIN_TIMEOUT_S": "20",
                         "KILN_AGENT_BACKOFF_BASE_MS": "500", "KILN_AGENT_BACKOFF_MAX_MS": "2000",
                         "KILN_AGENT_LEASE_MARGIN_MS": "2000",
                         # the sinks are ours: no per-host politeness needed
                         "KILN_AGENT_HOST_CONNS_PER_MIN": "6000000", "KILN_AGENT_HOST_MAX_CONNS": "1000",
                         # ASan: leaks are reported at exit, which a drain test checks
                         "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") or "detect_leaks=1"})
        self.env.update(env or {})
        self.p = None
        self.start()

    def start(self):
        logf = open(self.log, "a")
        self.p = subprocess.Popen([AGENT, "run", "--config", "/dev/null"], env=self.env,
                                  stdout=logf, stderr=subprocess.STDOUT)
        PROCS.append(self.p)

    def kill9(self):
        self.p.kill()
        self.p.wait()

    def term(self, timeout=60):
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("agent %s did not finish its drain in %d s; log:\n%s"
                 % (self.name, timeout, self.tail()))

    def alive(self):
        return self.p.poll() is None

    def tail(self, n=30):
        with open(self.log) as f:
            return "".join(f.readlines()[-n:])


def wait_agent(agent, what, cond, timeout, describe, every=1.0):
    """Polls cond() every `every` s until it holds, failing at once if the agent dies;
    after timeout s fails with what and describe() (the state worth seeing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        check(agent.alive(), "the agent died:\n" + agent.tail())
        time.sleep(every)
    check(False, "%s: not within %d s; %s" % (what, timeout, describe()))


def pool(n, sinks, zones, plan_kw=None, seed=7, target_lo=5, target_hi=30):
    """3 users (one per zone) with n mailboxes over them; mailbox i uses sink i % len.
    Returns {mailbox_id: target}."""
    rnd = random.Random(seed)
    kw = {"cooldown_min_s": 1, "cooldown_max_s": 2, "user_hourly_cap": 10000000,
          "user_minute_cap": 1000000, "max_mailboxes": 1000000}
    kw.update(plan_kw or {})
    plan = make_plan("e2e", **kw)
    users = [make_user("u%d" % i, plan["id"], tz) for i, tz in enumerate(zones)]
    targets = {}
    for i in range(n):
        u = users[i % len(users)]
        sink = sinks[i % len(sinks)]
        addr = "m%d@u%d-d%d.test" % (i, i % len(users), i % 7)
        body = {"user_id": u["id"], "address": addr, "display_name": "M%d" % i,
                "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "plain",
                         "username": addr, "password": "pw-%d" % i,
                         "allow_plaintext_auth": True},
                "timezone": zones[i % len(zones)], "window": {"start_hour": 0, "end_hour": 24},
                "daily_target": rnd.randint(target_lo, target_hi)}
        m = expect(admin("POST", "/api/mailboxes", body), 201, "mailbox " + addr)
        targets[m["id"]] = body["daily_target"]
    return targets


def trigger():
    expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")


def control(action):
    return expect(admin("POST", "/api/warmup/control", {"action": action}), 200, action)


def today_sent():
    """{mailbox_id: sent} for each mailbox's local today (mailbox_days)."""
    rows = psql("""SELECT m.id, coalesce(d.sent, 0) FROM mailboxes m LEFT JOIN mailbox_days d
        ON d.mailbox_id = m.id AND d.day = (kiln_now() AT TIME ZONE m.timezone)::date""")
    return dict((int(a), int(b)) for a, b in (r.split("|") for r in rows))


def run_until_met(targets, timeout, skip=(), every=3.0, agents=(), on_tick=None):
    """Triggers every few seconds until every mailbox (but skip) met its target."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        trigger()
        sent = today_sent()
        short = [m for m, t in targets.items() if m not in skip and sent.get(m, 0) < t]
        if not short:
            return sent
        if on_tick:
            on_tick(sent)
        for a in agents:
            if not a.alive() and getattr(a, "must_live", True):
                fail("agent %s died (exit %r):\n%s" % (a.name, a.p.returncode, a.tail()))
        last = (len(short), sum(sent.values()))
        time.sleep(every)
    short = [m for m, t in targets.items() if m not in skip and today_sent().get(m, 0) < t][:3]
    detail = psql("""SELECT ml.mailbox_id, m.state, ml.lease_id, ml.pending, ml.due_at, ml.next_at,
        ml.leased_at, kiln_now(), (SELECT string_agg(status || ':' || n, ',') FROM (SELECT
        status, count(*) n FROM sends s WHERE s.mailbox_id = ml.mailbox_id GROUP BY 1) x)
        FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
        WHERE ml.mailbox_id = ANY('{%s}')""" % ",".join(map(str, short)))
    fail("after %d s, %d mailboxes are short of their target (%r sent); e.g.\n%s"
         % (timeout, last[0], last[1], "\n".join(detail)))


def sent_message_ids():
    """Message-IDs of every slot the control plane counts as sent."""
    return psql("SELECT message_id FROM sends WHERE status = 'sent'")


def check_exactly_once(sinks, allow_unknown_missing=True):
    """Every message received was counted (sent or unknown) and none twice; every slot
    counted as sent was received. Returns the number received."""
    received = [mid for s in sinks for (_, mid) in s.received()]
    dup = len(received) - len(set(received))
    check(dup == 0, "%d messages received twice" % dup)
    counted = set(psql("SELECT message_id FROM sends WHERE status IN ('sent', 'unknown')"))
    sent = set(sent_message_ids())
    stray = set(received) - counted
    check(not stray, "%d messages received but not counted, e.g. %r" % (len(stray), list(stray)[:3]))
    missing = sent - set(received)
    check(not missing, "%d slots counted as sent never reached a server, e.g. %r"
          % (len(missing), list(missing)[:3]))
    return len(received)


def check_endpoints_agree(targets):
    """The quota endpoint, the metrics and the sends table say the same."""
    quota = {}
    cursor = None
    for _ in range(100):
        r = expect(admin("GET", "/api/warmup/quota?status=all&limit=1000" +
                         ("&cursor=" + cursor if cursor else "")), 200, "quota")
        for item in r["page"]["items"]:
            quota[item["mailbox_id"]] = item["sent"]
        cursor = r["page"]["next_cursor"]
        if not cursor:
            break
    truth = today_sent()
    diff = [k for k in truth if truth[k] != quota.get(k)]
    check(not diff, "quota endpoint disagrees with mailbox_days for %d mailboxes, e.g. %r"
          % (len(diff), [(k, truth[k], quota.get(k)) for k in diff[:3]]))
    all_sent = int(psql("SELECT count(*) FROM sends WHERE status = 'sent'")[0])
    m = expect(admin("GET", "/api/warmup/metrics"), 200, "metrics")
    check(m["sends_total"]["sent"] == all_sent, "metrics sends_total.sent %r vs sends table %d"
          % (m["sends_total"], all_sent))
    prom = admin("GET", "/metrics").raw
    check('kiln_sends_total{status="sent"} %d' % all_sent in prom,
          "prometheus kiln_sends_total{status=\"sent\"} is not %d" % all_sent)
    return all_sent


def stack(*cmds):
    """Runs deploy/local/stack.sh functions on the test's stack (stack_api_down, ...)."""
    src = os.environ.get("KILN_SOURCE_DIR", ".")
    var = os.environ.get("KILN_STACK_VAR", "")
    script = ('source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
              'STACK_PG_PORT=$STACK_PG_PORT stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; '
              + "; ".join(cmds))
    r = subprocess.run(["bash", "-c", script, src, var, BUILD], capture_output=True, text=True)
    check(r.returncode == 0, "stack %s failed: %s" % (cmds, r.stderr[-500:]))


def mailbox_ids_by_sink(targets, sinks, sink):
    """Mailboxes of pool() that send through the given sink."""
    ids = sorted(targets)
    return [m for k, m in enumerate(ids) if sinks[k % len(sinks)] is sink]


class Triggerer:
    """Triggers every `every` seconds in the background, ignoring failures (the API or
    the database may be down on purpose). A grant is unpaced only when a trigger came
    after the mailbox's previous grant (docs/leasing.md), so a compressed day needs them
    all along, not only at the end."""

    def __init__(self, every=2.0):
        import threading
        self.stop_ev = threading.Event()
        self.every = every
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        from kiln_test import call
        while not self.stop_ev.wait(self.every):
            try:
                call("POST", "/api/warmup/control", {"action": "trigger"}, token=os.environ.get(
                    "KILN_ADMIN_TOKEN", ""), timeout=5)
            except Exception:  # noqa: BLE001 - down on purpose; try again next tick
                pass

    def stop(self):
        self.stop_ev.set()
        self.t.join()
