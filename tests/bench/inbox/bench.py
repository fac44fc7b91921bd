#!/usr/bin/python3
"""`make bench BENCH=inbox` (issue 12): kiln-agent's inbox engine beside imapflow on one
local Dovecot with the legacy load: N accounts (default 10,000) on the legacy polling mix
(5 % high at 1 min with IDLE, 70 % medium at 5 min, 25 % low at 15 min: about 2,067
visits a minute at 10,000), each account holding a few warmup messages in INBOX and
Junk, new mail arriving during the run. Each client runs alone for the same window; the
CPU of the client and of Dovecot is read from /proc over the steady part of the window
(after the first-visit spread), with the client's peak RSS. Prints one line per client
and the ratios (CPU per visit, RSS).
  bench.py BUILD_DIR [ACCOUNTS] [DURATION_S]
Env: KILN_BENCH_INBOX_ACCOUNTS, KILN_BENCH_INBOX_DURATION_S, KILN_BENCH_MAX_CONNS (100),
KILN_BENCH_KILN_MAX_CONNS and KILN_BENCH_KILN_CONNS_PER_MIN (kiln's own cap and connect rate),
KILN_BENCH_CLIENTS (kiln-agent,imapflow: which run), KILN_BENCH_PERF (a perf.data path:
perf record -g of kiln-agent over the window), KILN_BENCH_KEEP=1 (keep the work dir),
KILN_MAIL_DOVECOT_EXTRA (appended to dovecot.conf; default `service imap { service_count =
0 }`: Dovecot's imap processes reused, as its performance advice says)."""
import json
import os
import random
import secrets
import smtplib
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def sh(script, env=None):
    return subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True, text=True).stdout


def proc_cpu_s(pids):
    """CPU seconds of pids, each with its reaped children (cutime, cstime), so the sum
    over a process tree only grows while children come and go."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def tree(root):
    """root and its descendants."""
    out, pending = [], [root]
    while pending:
        p = pending.pop()
        out.append(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                pending.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def dovecot_pids():
    """Dovecot's master and its children (every Dovecot process of this run)."""
    try:
        with open(os.path.join(WORK, "mail", "dc", "run", "master.pid")) as f:
            return tree(int(f.read().strip()))
    except (OSError, ValueError):
        return []


def proc_kb_mb(pids, name, key):
    """The sum of one kB figure of /proc/PID/name (key "VmRSS:" of status, "Pss:" of
    smaps_rollup) over pids, in MB."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/%s" % (pid, name)) as f:
                for line in f:
                    if line.startswith(key):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def rss_mb(pids):
    return proc_kb_mb(pids, "status", "VmRSS:")


def mail_env(ports, accounts):
    """The environment deploy/local/mailstack.sh gets for a bench's Dovecot. Its
    high-performance mode: imap processes serve many logins (service_count 0) instead of
    a fork per login, which at the legacy load kept Dovecot at a whole core and slowed
    every client it served (safe here: every account has the same uid)."""
    env = dict(os.environ, **ports, KILN_MAIL_IMAP_PROCESSES=str(max(1000, accounts // 10 + 300)))
    env.setdefault("KILN_MAIL_DOVECOT_EXTRA", "service imap {\n  service_count = 0\n}")
    return env


def seed_maildirs(users, per_user, junk_every):
    """per_user warmup messages per account written straight into Dovecot's Maildirs
    (INBOX, and every junk_every-th into Junk): seeding, not measured, and 100x faster
    than LMTP. Dovecot indexes them at the first SELECT."""
    root = os.path.join(WORK, "mail", "dc", "mail")
    n = 0
    for u in users:
        local, domain = u.split("@")
        base = os.path.join(root, domain, local)
        for k in range(per_user):
            folder = os.path.join(base, ".Junk") if k % junk_every == junk_every - 1 else base
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
            mid = "<%d.1%s@sender.test>" % (random.randint(1, 10**12), secrets.token_hex(12))
            with open(os.path.join(folder, "new", "%d.K%dP%d.bench" % (1764000000 + n, k, os.getpid())), "w") as f:
                f.write("From: s@sender.test\r\nTo: %s\r\nSubject: warmup %d\r\nMessage-ID: %s\r\n"
                        "Authentication-Results: mx.test; spf=pass; dkim=pass\r\n\r\nhello\r\n" % (u, k, mid))
            n += 1
    return n


def deliver(lmtp_port, users, per_user, junk_every):
    """per_user warmup messages to each user over LMTP (one recipient per transaction:
    smtplib does not read LMTP's per-recipient replies); every junk_every-th goes to
    Junk (the Sieve rule's test header)."""
    n = 0
    with smtplib.LMTP("127.0.0.1", lmtp_port) as l:
        for k in range(per_user):
            for rcpt in users:
                rcpts = [rcpt]
                junk = "X-Kiln-Test-Junk: yes\r\n" if (k % junk_every == junk_every - 1) else ""
                mid = "<%d.1%s@sender.test>" % (random.randint(1, 10**12), secrets.token_hex(12))
                l.sendmail("s@sender.test", rcpts,
                           "From: s@sender.test\r\nTo: undisclosed\r\nSubject: warmup %d\r\nMessage-ID: %s\r\n"
                           "Authentication-Results: mx.test; spf=pass; dkim=pass\r\n%s\r\nhello\r\n" % (k, mid, junk))
                n += len(rcpts)
    return n


def trickle(lmtp_port, users, rate, stop):
    """New warmup mail during a run: rate messages a second to users picked by a fixed
    seed (the same sequence for every client), until stop is set."""
    rng = random.Random(7)
    sent = 0
    with smtplib.LMTP("127.0.0.1", lmtp_port) as l:
        t0 = time.monotonic()
        while not stop.is_set():
            u = users[rng.randrange(len(users))]
            mid = "<%d.1%s@sender.test>" % (rng.randint(1, 10**12), "%024x" % rng.getrandbits(96))
            l.sendmail("s@sender.test", [u], "From: s@sender.test\r\nTo: %s\r\nSubject: new\r\nMessage-ID: %s\r\n"
                       "Authentication-Results: mx.test; spf=pass; dkim=pass\r\n\r\nhello\r\n" % (u, mid))
            sent += 1
            ahead = t0 + sent / rate - time.monotonic()
            if ahead > 0:
                stop.wait(ahead)
    return sent


def run_client(name, cmd, duration, warm_s, lmtp_port, users, rate):
    """Runs cmd for duration seconds with new mail trickling in; returns CPU (client,
    dovecot) over the window after warm_s and the client's peak RSS."""
    import threading
    stop = threading.Event()
    tr = threading.Thread(target=trickle, args=(lmtp_port, users, rate, stop), daemon=True)
    tr.start()
    p = subprocess.Popen(cmd, stdout=open(os.path.join(WORK, name + ".out"), "w"),
                         stderr=open(os.path.join(WORK, name + ".err"), "w"))
    t0 = time.monotonic()
    time.sleep(warm_s)
    c0, d0, w0 = proc_cpu_s(tree(p.pid)), proc_cpu_s(dovecot_pids()), time.monotonic()
    perf = None
    if os.environ.get("KILN_BENCH_PERF") and name == "kiln-agent":
        # a profile of the steady window (perf record -g), for finding kiln's own waste
        perf = subprocess.Popen(["perf", "record", "-g", "-o", os.environ["KILN_BENCH_PERF"],
                                 "-p", str(p.pid), "--", "sleep", str(max(1, duration - warm_s - 2))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while time.monotonic() - t0 < duration - 1 and p.poll() is None:
        peak = max(peak, rss_mb(tree(p.pid)))
        time.sleep(1)
    c1, d1, w1 = proc_cpu_s(tree(p.pid)), proc_cpu_s(dovecot_pids()), time.monotonic()
    total = proc_cpu_s(tree(p.pid))  # from the start: the whole run's visits
    load = os.getloadavg()[1]  # the 5-minute load average at the window's end
    if perf:
        perf.wait(timeout=30)
    stop.set()
    tr.join(timeout=10)
    try:
        p.wait(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return {"cpu_s": c1 - c0, "dovecot_cpu_s": d1 - d0, "window_s": w1 - w0, "rss_mb": peak,
            "total_cpu_s": total, "rc": p.returncode, "load": load}


def main():
    global WORK
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build"))
    accounts = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("KILN_BENCH_INBOX_ACCOUNTS", 10000))
    duration = int(sys.argv[3] if len(sys.argv) > 3 else os.environ.get("KILN_BENCH_INBOX_DURATION_S", 450))
    agent = os.path.join(build, "agent", "kiln-agent")
    WORK = tempfile.mkdtemp(prefix="kiln-bench-inbox.")
    os.chmod(WORK, 0o755)
    ports = {"KILN_IMAP_PORT": str(free_port()), "KILN_LMTP_PORT": str(free_port()), "KILN_MX_PORT": str(free_port())}
    env = mail_env(ports, accounts)
    users = ["u%05d@bench.test" % i for i in range(accounts)]
    setup = ("set -e; source %s/deploy/local/mailstack.sh; mail_init %s; mail_domain bench.test 0; "
             "cat %s/users >>\"$MAIL_DC/passwd\"; mail_dovecot_up" % (SRC, WORK, WORK))
    with open(os.path.join(WORK, "users"), "w") as f:
        f.write("".join("%s:{PLAIN}pw::::::\n" % u for u in users))
    t = time.monotonic()
    sh(setup, env)
    n = seed_maildirs(users, 3, 3)
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(WORK, "mail", "dc", "mail")], check=True)
    print("setup: Dovecot with %d accounts, %d messages delivered in %.0f s" % (accounts, n, time.monotonic() - t))
    classes = ["high"] * (accounts * 5 // 100) + ["medium"] * (accounts * 70 // 100)
    classes += ["low"] * (accounts - len(classes))
    random.Random(1).shuffle(classes)
    period = {"high": 60, "medium": 300, "low": 900}
    inboxes = [{"mailbox_id": i + 1, "address": u, "poll_class": c, "poll_interval_s": period[c],
                "warmup_folder": "kiln", "folders": [], "actions": [],
                "imap": {"host": "127.0.0.1", "port": int(ports["KILN_IMAP_PORT"]), "security": "plain",
                         "username": u, "password": "pw", "oauth_token": None, "ca_file": None,
                         "allow_plaintext_auth": True}}
               for i, (u, c) in enumerate(zip(users, classes))]
    with open(os.path.join(WORK, "inboxes.json"), "w") as f:
        json.dump(inboxes, f)
    expected = (classes.count("high") + classes.count("medium") / 5 + classes.count("low") / 15)
    print("mix: %d high (IDLE), %d medium, %d low: %.0f visits/min expected"
          % (classes.count("high"), classes.count("medium"), classes.count("low"), expected))
    warm = min(60, duration // 3)
    results = {}
    node_dir = HERE
    if not os.path.isdir(os.path.join(node_dir, "node_modules", "imapflow")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=node_dir, capture_output=True)
    clients = []
    usage = subprocess.run([agent, "inbox"], capture_output=True, text=True).stderr if os.access(agent, os.X_OK) else ""
    conns = os.environ.get("KILN_BENCH_MAX_CONNS", "100")
    if "inbox --file" in usage:
        # The same per-server cap on polling connections as the peer (whose IDLE
        # connections are outside its cap, while kiln's cap counts every connection: so
        # kiln's is the peer's plus the IDLE class); no connect-rate cap (the legacy
        # 200/min is per provider; this one local server stands for all of them).
        kiln_conns = str(int(conns) + classes.count("high"))
        # KILN_BENCH_KILN_MAX_CONNS / _CONNS_PER_MIN: kiln's own cap and connect rate (a cap
        # that holds every inbox lets kiln keep its polled connections between polls; the
        # rate then paces the first pass's logins, which a cap of 100 paced before)
        kiln_conns = os.environ.get("KILN_BENCH_KILN_MAX_CONNS", kiln_conns)
        kiln_rate = os.environ.get("KILN_BENCH_KILN_CONNS_PER_MIN", "1000000")
        clients.append(("kiln-agent", [agent, "inbox", "--file", os.path.join(WORK, "inboxes.json"),
                                       "--duration", str(duration), "--server-max-conns", kiln_conns,
                                       "--server-conns-per-min", kiln_rate]))
    else:
        print("kiln-agent has no `inbox` command in this build: only the peer runs")
    if os.path.isdir(os.path.join(node_dir, "node_modules", "imapflow")):
        clients.append(("imapflow", ["node", os.path.join(HERE, "imapflow_poll.js"),
                                     os.path.join(WORK, "inboxes.json"), str(duration),
                                     os.path.join(WORK, "imapflow.stats")]))
    only = os.environ.get("KILN_BENCH_CLIENTS")
    if only:
        clients = [c for c in clients if c[0] in only.split(",")]
    for name, cmd in clients:
        results[name] = run_client(name, cmd, duration, warm, int(ports["KILN_LMTP_PORT"]), users,
                                   max(1.0, accounts / 1000.0))
        r = results[name]
        share = 100.0 * r["cpu_s"] / r["window_s"]
        print("%-10s CPU %.2f s over %.0f s (%.1f %% of one core), peak RSS %.0f MB; Dovecot %.2f s (%.1f %%); "
              "load %.1f; rc %s"
              % (name, r["cpu_s"], r["window_s"], share, r["rss_mb"], r["dovecot_cpu_s"],
                 100.0 * r["dovecot_cpu_s"] / r["window_s"], r["load"], r["rc"]))
    visits = {}
    if os.path.exists(os.path.join(WORK, "imapflow.stats")):
        st = json.load(open(os.path.join(WORK, "imapflow.stats")))
        visits["imapflow"] = st["visits"]
        print("imapflow stats:", json.dumps(st))
    if os.path.exists(os.path.join(WORK, "kiln-agent.out")):
        n = found = 0
        for line in open(os.path.join(WORK, "kiln-agent.out")):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            n += e.get("type") == "folder_state" and e.get("role") == "inbox"
            found += e.get("type") == "found"
        visits["kiln-agent"] = n
        print("kiln-agent: %d visits (INBOX checks), %d found" % (n, found))
    for name, r in results.items():
        if visits.get(name):
            print("%-10s %.0f us CPU per visit over the whole run (%.2f s, %d visits)"
                  % (name, 1e6 * r["total_cpu_s"] / visits[name], r["total_cpu_s"], visits[name]))
    if visits.get("kiln-agent") and visits.get("imapflow"):
        k = results["kiln-agent"]["total_cpu_s"] / visits["kiln-agent"]
        p = results["imapflow"]["total_cpu_s"] / visits["imapflow"]
        print("ratio: imapflow uses %.1fx kiln-agent's CPU per visit" % (p / max(k, 1e-9)))
    if "kiln-agent" in results and "imapflow" in results:
        k, p = results["kiln-agent"], results["imapflow"]
        print("window: imapflow uses %.1fx kiln-agent's CPU over the same window and mix; RSS %.1fx"
              % (p["cpu_s"] / max(k["cpu_s"], 1e-3), p["rss_mb"] / max(k["rss_mb"], 1e-3)))
    sh("source %s/deploy/local/mailstack.sh; mail_init %s; mail_down" % (SRC, WORK), env)
    if os.environ.get("KILN_BENCH_KEEP") != "1":
        subprocess.run(["rm", "-rf", WORK])


if __name__ == "__main__":
    main()
