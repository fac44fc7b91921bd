#!/usr/bin/python3
"""`make bench BENCH=inbox-idle` (issue 12): N concurrent IDLE connections on one local
Dovecot (default 10,000; the goal: kiln-agent's RSS <= 200 MB). Every account is of the
high class, so kiln-agent's `inbox --file` logs in, checks INBOX and Junk, and stays in
IDLE on INBOX; the peer (imapflow, the same idler as in bench.py) does the same in the
same run, after kiln-agent. Each client is sampled every 2 s (its IDLE sessions, its
RSS) until all N are in IDLE and have been held for HOLD_S, or its deadline; then it is
stopped (SIGTERM: kiln-agent ends IDLE and logs out). Prints per client the sessions
held, the RSS at the peak, the bytes per connection ((RSS at the peak - RSS before the
first login) / sessions), and Dovecot's memory (PSS over its processes) beside it.

Dovecot's process model: with `service imap { client_limit = 1 }` (the default, and
mailstack's) every logged-in connection is a process of a few MB; here the bench's own
Dovecot config (KILN_MAIL_DOVECOT_EXTRA, not the stack's defaults) puts
KILN_BENCH_IDLE_PER_PROC connections in each imap process (default 50) and raises
process_limit to match.
  idle.py BUILD_DIR [SESSIONS] [HOLD_S]
Env: KILN_BENCH_CLIENTS (kiln-agent,imapflow), KILN_BENCH_IDLE_DEADLINE_S (per client,
default 420), KILN_BENCH_KEEP=1."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the inbox bench's helpers: ports, /proc, seeding)

SRC = bench.SRC


def pss_mb(pids):
    """Proportional set size: shared pages split between the processes that map them."""
    return bench.proc_kb_mb(pids, "smaps_rollup", "Pss:")


def stop(p, wait_s):
    """SIGTERM (kiln-agent ends IDLE and logs out), then a kill after wait_s."""
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def kiln_idle(port):
    """(IDLE sessions, connections open: connecting, logged in or idling)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read()
    except OSError:
        return None
    state = dict((k.decode(), int(v)) for k, v in
                 re.findall(rb'^kiln_agent_inbox_sessions\{state="(\w+)"\} (\d+)', text, re.M))
    return state.get("idle", 0), state.get("connecting", 0) + state.get("active", 0) + state.get("idle", 0)


def imapflow_idle(err_path):
    """The last progress line of imapflow_poll.js: '..., N idle, ...' (every 10 s); the
    connections it has open are not counted there: its idlers are taken as all open."""
    try:
        with open(err_path, "rb") as f:
            f.seek(max(0, os.path.getsize(err_path) - 4096))
            found = re.findall(rb"(\d+) idle", f.read())
            n = int(found[-1]) if found else 0
            return n, n
    except OSError:
        return None


def floor_mb(cmd):
    """The client's RSS with the inboxes loaded and at most one connection (kiln-agent
    with --server-max-conns 1), after 10 s: what the connections' bytes are measured
    from."""
    cmd = list(cmd)
    cmd[cmd.index("--server-max-conns") + 1] = "1"
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(10)
    rss = bench.rss_mb(bench.tree(p.pid))
    stop(p, 30)
    return rss


def run_idle(name, cmd, count, want, hold_s, deadline_s):
    out = open(os.path.join(WORK, name + ".out"), "w")
    err = open(os.path.join(WORK, name + ".err"), "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=err)
    t0 = time.monotonic()
    peak = {"sessions": 0, "open": 0, "rss_mb": 0.0, "at_s": 0.0}
    held_since = None
    while time.monotonic() - t0 < deadline_s and p.poll() is None:
        time.sleep(2)
        got = count()
        rss = bench.rss_mb(bench.tree(p.pid))
        if got is None:
            continue
        n, nopen = got
        peak["max_rss_mb"] = max(peak.get("max_rss_mb", 0.0), rss)
        peak["max_open"] = max(peak.get("max_open", 0), nopen)
        if n >= peak["sessions"]:
            peak = {"sessions": n, "open": nopen, "rss_mb": rss, "at_s": time.monotonic() - t0,
                    "max_rss_mb": peak["max_rss_mb"], "max_open": peak["max_open"],
                    "dovecot_pss_mb": pss_mb(bench.dovecot_pids()),
                    "dovecot_procs": len(bench.dovecot_pids()), "load": os.getloadavg()[1]}
        if n >= want:
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= hold_s:
                peak["rss_end_mb"] = rss
                break
    cpu = bench.proc_cpu_s(bench.tree(p.pid))
    stop(p, 60)
    peak.update(cpu_s=cpu, rc=p.returncode, held=held_since is not None)
    return peak


def main():
    global WORK
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build"))
    sessions = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("KILN_BENCH_IDLE_SESSIONS", 10000))
    hold = int(sys.argv[3] if len(sys.argv) > 3 else 30)
    deadline = int(os.environ.get("KILN_BENCH_IDLE_DEADLINE_S", 420))
    per = int(os.environ.get("KILN_BENCH_IDLE_PER_PROC", 50))
    agent = os.path.join(build, "agent", "kiln-agent")
    WORK = bench.WORK = tempfile.mkdtemp(prefix="kiln-bench-idle.")
    os.chmod(WORK, 0o755)
    ports = {"KILN_IMAP_PORT": str(bench.free_port()), "KILN_LMTP_PORT": str(bench.free_port()),
             "KILN_MX_PORT": str(bench.free_port())}
    procs = sessions // per + 100
    # service_count = 0: a process keeps serving (the default 1 ends it after one client)
    extra = ("service imap {\n  client_limit = %d\n  process_limit = %d\n  service_count = 0\n}\n"
             "service imap-login {\n  process_limit = 200\n}\n"
             "service anvil {\n  client_limit = %d\n}\n"
             "service auth {\n  client_limit = %d\n}\n" % (per, procs, procs + 2000, procs + 2000))
    env = dict(os.environ, **ports, KILN_MAIL_IMAP_PROCESSES=str(procs), KILN_MAIL_DOVECOT_EXTRA=extra)
    users = ["i%05d@idle.test" % i for i in range(sessions)]
    with open(os.path.join(WORK, "users"), "w") as f:
        f.write("".join("%s:{PLAIN}pw::::::\n" % u for u in users))
    t = time.monotonic()
    bench.sh("set -e; source %s/deploy/local/mailstack.sh; mail_init %s; mail_domain idle.test 0; "
             "cat %s/users >>\"$MAIL_DC/passwd\"; mail_dovecot_up" % (SRC, WORK, WORK), env)
    bench.seed_maildirs(users, 1, 2)  # one message in INBOX: the first SELECT indexes little
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(WORK, "mail", "dc", "mail")], check=True)
    print("setup: Dovecot with %d accounts (imap: %d connections a process, %d processes) in %.0f s"
          % (sessions, per, procs, time.monotonic() - t))
    inboxes = [{"mailbox_id": i + 1, "address": u, "poll_class": "high", "poll_interval_s": 60,
                "warmup_folder": "kiln", "folders": [], "actions": [],
                "imap": {"host": "127.0.0.1", "port": int(ports["KILN_IMAP_PORT"]), "security": "plain",
                         "username": u, "password": "pw", "oauth_token": None, "ca_file": None,
                         "allow_plaintext_auth": True}}
               for i, u in enumerate(users)]
    with open(os.path.join(WORK, "inboxes.json"), "w") as f:
        json.dump(inboxes, f)
    clients = []
    mport = bench.free_port()
    if os.access(agent, os.X_OK):
        # every connection of one server: the cap is the sessions (the legacy 100 is per
        # provider; holding N IDLE connections on one server needs N), the logins spread
        # over a minute (Dovecot's login and auth processes queue a burst of 10,000)
        clients.append(("kiln-agent", [agent, "inbox", "--file", os.path.join(WORK, "inboxes.json"),
                                       "--duration", str(deadline + 60), "--metrics-port", str(mport),
                                       "--server-max-conns", str(sessions + 16),
                                       "--server-conns-per-min", str(sessions)],
                        lambda: kiln_idle(mport)))
    if not os.path.isdir(os.path.join(HERE, "node_modules", "imapflow")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True)
    if os.path.isdir(os.path.join(HERE, "node_modules", "imapflow")):
        # KILN_BENCH_SPREAD: its idlers start at random within a minute, as kiln-agent's
        # connect rate (SESSIONS a minute) spreads its logins
        clients.append(("imapflow", ["env", "KILN_BENCH_SPREAD=1", "node", os.path.join(HERE, "imapflow_poll.js"),
                                     os.path.join(WORK, "inboxes.json"), str(deadline + 60),
                                     os.path.join(WORK, "imapflow.stats")],
                        lambda: imapflow_idle(os.path.join(WORK, "imapflow.err"))))
    only = os.environ.get("KILN_BENCH_CLIENTS")
    if only:
        clients = [c for c in clients if c[0] in only.split(",")]
    results = {}
    for name, cmd, count in clients:
        base = floor_mb(cmd) if "--server-max-conns" in cmd else 0.0
        r = results[name] = run_idle(name, cmd, count, sessions, hold, deadline)
        r["base_mb"] = base
        # bytes per open connection (an IDLE session or one on its way there: each holds
        # its session's memory from the connect on): the highest RSS over the floor, per
        # connection at the most open at once (freed memory is not given back at once)
        per_conn = (r["max_rss_mb"] - base) * 1048576 / max(r["max_open"], 1)
        r["per_conn_b"] = per_conn
        print("%-10s %d of %d in IDLE%s after %.0f s, %d connections open: RSS %.1f MB (floor %.1f MB "
              "with the inboxes loaded; %.1f KB per open connection); most connections open %d, "
              "highest RSS %.1f MB; CPU %.1f s; Dovecot PSS %.0f MB over %d processes (%.1f KB per "
              "IDLE session); load %.1f; rc %s"
              % (name, r["sessions"], sessions, " (held %d s)" % hold if r["held"] else " (not all)",
                 r["at_s"], r["open"], r["rss_mb"], base, per_conn / 1024, r["max_open"],
                 r["max_rss_mb"], r["cpu_s"], r.get("dovecot_pss_mb", 0), r.get("dovecot_procs", 0),
                 r.get("dovecot_pss_mb", 0) * 1024 / max(r["sessions"], 1), r.get("load", 0), r["rc"]))
    k = results.get("kiln-agent")
    if k and k["sessions"] < sessions:
        print("kiln-agent held %d in IDLE: at %d its RSS would be %.0f MB (floor %.0f MB + %.1f KB each)"
              % (k["sessions"], sessions, k["base_mb"] + k["per_conn_b"] * sessions / 1048576,
                 k["base_mb"], k["per_conn_b"] / 1024))
    if k and "imapflow" in results:
        p = results["imapflow"]
        print("ratio: imapflow's RSS is %.1fx kiln-agent's (%.1f KB vs %.1f KB per connection)"
              % (p["rss_mb"] / max(k["rss_mb"], 1e-3), p["per_conn_b"] / 1024, k["per_conn_b"] / 1024))
    bench.sh("source %s/deploy/local/mailstack.sh; mail_init %s; mail_down" % (SRC, WORK), env)
    if os.environ.get("KILN_BENCH_KEEP") != "1":
        subprocess.run(["rm", "-rf", WORK])


if __name__ == "__main__":
    main()
