"""test_killing_one_of_three_kiln_api_processes_fails_no_agent_request: runs under
tests/lib/with_stack.sh with KILN_API_PROCESSES=3 and STACK_API_RESTART=1 (three
kiln-api processes behind one nginx upstream, each under its own restart loop).

Six agent-like threads run lease -> report loops through nginx against a pool of 160
mailboxes while the test clock moves on half an hour every 0.4 s; one of the three
processes is killed with SIGKILL mid-run. A client retries a failed request once (as the
agent does). Asserted: no request fails twice (after one retry nothing non-2xx reaches
the caller), every send handed out was reported and is `sent` exactly once, no slot was
handed out twice, the daily targets and the minute/hour caps held, and the killed process
came back under its loop, logged, and answers on its own socket. Then stack_api_down
(what `make down` calls) stops all three processes and their loops."""
import datetime
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
from leaselib import make_agent, set_clock, sent, all_sends, utc, invariants  # noqa: E402
from kiln_test import call, check, make_plan, make_user, make_mailbox  # noqa: E402
from kiln_test import psql, ok, VAR, SRC  # noqa: E402
import fastcgi_client  # noqa: E402

USER_MINUTE, USER_HOUR = 6, 40  # the plan's caps; global caps come from CMakeLists.txt
GLOBAL_MINUTE = int(os.environ.get("KILN_GLOBAL_MINUTE_CAP", "0"))
RUN_S, KILL_AT_S, AGENTS = 16.0, 6.0, 6


def pidfile(n, kind="pid"):
    sfx = "" if n == 1 else "-%d" % n
    name = {"pid": "kiln-api%s.pid", "loop": "kiln-api%s-supervisor.pid"}[kind] % sfx
    try:
        return int(open(os.path.join(VAR, "run", name)).read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


for n in (1, 2, 3):
    check(alive(pidfile(n)) and alive(pidfile(n, "loop")),
          "kiln-api process %d and its restart loop run (KILN_API_PROCESSES=3, "
          "STACK_API_RESTART=1)" % n)
    check(os.path.exists(os.path.join(VAR, "run", "api%s.sock" % ("" if n == 1 else "-%d" % n))),
          "process %d has its own socket" % n)
conf = open(os.path.join(VAR, "nginx", "nginx.conf")).read()
check(sum(l.count("server unix:") for l in conf.splitlines()
          if not l.lstrip().startswith("#")) == 3, "nginx's upstream lists the three sockets:\n" + conf)
ok("three kiln-api processes, each with its own socket and loop, in one nginx upstream")

start = utc(2026, 3, 4, 0, 0, 0)
set_clock(start)
plan = make_plan("procs", ramp_start=20, ramp_step=0, daily_max=20, cooldown_min_s=1,
                 cooldown_max_s=5, user_minute_cap=USER_MINUTE, user_hourly_cap=USER_HOUR)
users = [make_user("p%d" % i, plan["id"]) for i in range(8)]
for u in users:
    for j in range(20):
        make_mailbox(u["id"], "x%d@p%d.test" % (j, u["id"]), timezone="UTC",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
tokens = [make_agent("proc-agent-%d" % i) for i in range(AGENTS)]

lock = threading.Lock()
stats = {"requests": 0, "busy": 0, "first_failures": 0, "final_failures": [], "leases": 0,
         "first_failed": {"/api/agent/lease": 0, "/api/agent/report": 0}}
handed = {}     # send id -> lease id, for every send a lease answer handed out
reported = set()
errors = []
stop = threading.Event()


def is_busy(r):
    """503 "busy": kiln-api retried its transaction against concurrent work and asks the
    caller to send it again (kiln-agent does). Not a lost process: not a failure here."""
    return r.status == 503 and r.json and (r.json.get("error") or {}).get("code") == "busy"


def once_retried(path, body, token):
    """One agent request: retried once after a non-2xx answer or a broken connection (and
    up to 5 times more while the answer is "busy")."""
    last = None
    for attempt in (1, 2):
        try:
            r = call("POST", path, body, token=token, timeout=30)
            for _ in range(5):
                if not is_busy(r):
                    break
                with lock:
                    stats["busy"] += 1
                time.sleep(0.2)
                r = call("POST", path, body, token=token, timeout=30)
            last = r
            if 200 <= r.status < 300:
                return r
        except OSError as e:  # connection reset, refused, timeout
            last = e
        with lock:
            if attempt == 1:
                stats["first_failures"] += 1
                stats["first_failed"][path] += 1
        time.sleep(0.1)
    with lock:
        stats["final_failures"].append("%s: %r" % (path, last))
    return None


def agent(token):
    try:
        while not stop.is_set():
            with lock:
                stats["requests"] += 1
            r = once_retried("/api/agent/lease", {"agent": "p", "max_mailboxes": 6,
                                                  "max_sends": 30}, token)
            if r is None or not r.json.get("lease_id"):
                time.sleep(0.05)
                continue
            sends = all_sends(r.json)
            with lock:
                stats["leases"] += 1
                for s in sends:
                    if s["id"] in handed:
                        errors.append("send %s handed out twice" % s["id"])
                    handed[s["id"]] = r.json["lease_id"]
            if not sends:
                continue
            with lock:
                stats["requests"] += 1
            rr = once_retried("/api/agent/report", {"lease_id": r.json["lease_id"],
                                                    "results": [sent(s["id"]) for s in sends]},
                              token)
            if rr is not None:
                with lock:
                    reported.update(s["id"] for s in sends)
    except Exception as e:  # noqa: BLE001  (a thread must not die silently)
        errors.append(repr(e))


threads = [threading.Thread(target=agent, args=(t,)) for t in tokens]
t0 = time.time()
for t in threads:
    t.start()
killed = None
step = 0
while time.time() - t0 < RUN_S:
    time.sleep(0.4)
    step += 1
    set_clock(start + datetime.timedelta(minutes=30 * step))
    if killed is None and time.time() - t0 >= KILL_AT_S:
        killed = pidfile(2)
        with lock:
            before_kill = stats["requests"]
        os.kill(killed, 9)
stop.set()
for t in threads:
    t.join(60)
check(not any(t.is_alive() for t in threads), "agent threads did not finish")
check(not errors, "agent threads failed: %r" % errors[:5])
check(killed and stats["requests"] > before_kill + 20,
      "the load ran on after the kill (%d requests before, %d in all)"
      % (before_kill, stats["requests"]))
check(not stats["final_failures"],
      "%d agent requests failed even after one retry (of %d; first attempts failed: %d): %s"
      % (len(stats["final_failures"]), stats["requests"], stats["first_failures"],
         stats["final_failures"][:3]))
# nginx replays a report that died with its process (idempotent by send id), never a
# lease: a report's first attempt never reaches the caller as a failure.
check(stats["first_failed"]["/api/agent/report"] == 0,
      "%d reports failed at their first attempt: nginx should have replayed them on another "
      "process (fastcgi_next_upstream non_idempotent)" % stats["first_failed"]["/api/agent/report"])
ok("%d agent requests, %d leases, %d sends over %.0f s; kiln-api pid %d killed with SIGKILL at "
   "%.0f s; first attempts failed: %d leases, 0 reports; none after one retry; %d busy answers "
   "sent again" % (stats["requests"], stats["leases"], len(handed), time.time() - t0, killed,
                   KILL_AT_S, stats["first_failed"]["/api/agent/lease"], stats["busy"]))

# Every send handed out was reported, and each is `sent` once: the database's sent rows
# are exactly the reported ones (a lease whose answer was lost with the killed process
# holds slots nobody saw; they stay leased or expire, never sent).
check(len(handed) > 200, "the run handed out work (%d sends)" % len(handed))
check(reported == set(handed), "%d sends handed out but never reported"
      % len(set(handed) - reported))
rows = psql("SELECT id, status FROM sends WHERE status IN ('sent', 'unknown')")
db_sent = {int(r.split("|")[0]) for r in rows}
check(len(rows) == len(db_sent), "a send row twice")
check(db_sent == set(handed), "sent rows in the database (%d) are not the sends reported (%d): "
      "%d extra, %d missing" % (len(db_sent), len(handed), len(db_sent - set(handed)),
                                len(set(handed) - db_sent)))
invariants()
ok("every one of the %d sends was reported and is sent exactly once; counters agree"
   % len(handed))

live = "status NOT IN ('cancelled', 'expired')"
over = psql("""SELECT d.mailbox_id, d.day, d.sent FROM mailbox_days d JOIN mailboxes m
               ON m.id = d.mailbox_id JOIN users u ON u.id = m.user_id JOIN plans p
               ON p.id = u.plan_id WHERE d.sent > p.daily_max""")
check(not over, "daily targets exceeded: %r" % over[:5])
if GLOBAL_MINUTE:
    worst = int(psql("""SELECT coalesce(max(n), 0) FROM (SELECT date_trunc('minute', scheduled_at),
                        count(*) n FROM sends WHERE %s GROUP BY 1) x""" % live)[0])
    check(worst <= GLOBAL_MINUTE, "global minute cap %d exceeded: %d" % (GLOBAL_MINUTE, worst))
for unit, cap in (("minute", USER_MINUTE), ("hour", USER_HOUR)):
    worst = int(psql("""SELECT coalesce(max(n), 0) FROM (SELECT m.user_id,
                        date_trunc('%s', s.scheduled_at), count(*) n FROM sends s
                        JOIN mailboxes m ON m.id = s.mailbox_id WHERE s.%s GROUP BY 1, 2) x"""
                     % (unit, live))[0])
    check(worst <= cap, "user %s cap %d exceeded: %d" % (unit, cap, worst))
ok("daily targets, the global minute cap and the user minute/hour caps held")

# The killed process is back under its loop, logged, on its own socket.
new = None
for _ in range(100):
    new = pidfile(2)
    if new and new != killed and alive(new):
        break
    time.sleep(0.1)
check(new and new != killed and alive(new), "kiln-api process 2 was not restarted (pid %r)" % new)
restarts = open(os.path.join(VAR, "log", "kiln-api-2-restarts.log")).read()
check("kiln-api (pid %d) exited" % killed in restarts,
      "the restart is not in log/kiln-api-2-restarts.log: %r" % restarts)
sock2 = os.path.join(VAR, "run", "api-2.sock")
r = None
for _ in range(50):
    try:
        r = fastcgi_client.request(sock2, "GET", "/healthz", timeout=5)
        if r.status == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)
check(r is not None and r.status == 200, "the restarted process does not answer /healthz on api-2.sock")
check(alive(pidfile(1)) and alive(pidfile(3)), "the other two processes kept running")
ok("the killed process came back as pid %d (restart logged) and serves on its own socket" % new)

# `make down` (stack_api_down) stops every process and every loop; nothing comes back.
pids = [pidfile(n) for n in (1, 2, 3)] + [pidfile(n, "loop") for n in (1, 2, 3)]
build = os.environ.get("KILN_BUILD_DIR", "build")
subprocess.run(["bash", "-c", 'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
                'stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; stack_api_down',
                SRC, VAR, build], check=True)
time.sleep(1.5)
check(not any(alive(p) for p in pids), "stack_api_down left processes running: %r"
      % [p for p in pids if alive(p)])
check(not any(alive(pidfile(n)) for n in (1, 2, 3)), "a kiln-api process came back after down")
r = call("GET", "/healthz")
check(r.status == 503, "with every process down nginx answers 503, got %r" % r)
ok("stack_api_down stops all three processes and their loops")
