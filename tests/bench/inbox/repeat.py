#!/usr/bin/python3
"""A/B of kiln-agent builds on the inbox bench's two kinds of visit (issue 12): one local
Dovecot with N accounts seeded as bench.py seeds them; each build runs `inbox --file
--once` twice over all N: a first visit (nothing known: NAMESPACE, LIST, ...), then a
repeat visit with the folders' state the first pass reported (what a poll after the first
is). CPU per visit of each pass is the process's own (getrusage of the child), start-up
included.
The builds alternate (A B A B ...) so the box's load falls on both alike. Not part of
`make bench`: a tool for finding and proving a cut.
  repeat.py ACCOUNTS ROUNDS AGENT [AGENT ...]
Env: KILN_BENCH_PERF (a directory: perf record -g of each pass of the first agent's
first round, first.data and repeat.data), KILN_BENCH_MAX_CONNS (100)."""
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def cpu_of(rusage_before, rusage_after):
    return ((rusage_after.ru_utime - rusage_before.ru_utime)
            + (rusage_after.ru_stime - rusage_before.ru_stime))


def run_pass(agent, path, out, conns, perf=None):
    """One `--once` pass; returns (CPU s, wall s, INBOX checks, failed logins, found)."""
    import resource
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    cmd = [agent, "inbox", "--file", path, "--once", "--server-max-conns", conns,
           "--server-conns-per-min", "1000000"]
    if perf:
        cmd = ["perf", "record", "-g", "-q", "-o", perf, "--"] + cmd
    with open(out, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, timeout=900)
    wall = time.monotonic() - t0
    cpu = cpu_of(r0, resource.getrusage(resource.RUSAGE_CHILDREN))
    visits = failed = found = 0
    state = {}
    for line in open(out):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("type") == "folder_state":
            visits += e.get("role") == "inbox"
            state.setdefault(e["mailbox_id"], {})[e["folder"]] = e
        failed += e.get("type") == "session" and e.get("status") != "ok"
        found += e.get("type") == "found"
    return cpu, wall, visits, failed, found, state


def with_state(inboxes, state):
    out = []
    for ib in inboxes:
        ib = dict(ib)
        ib["folders"] = [{"name": f["folder"], "role": f["role"], "uidvalidity": f["uidvalidity"],
                          "last_uid": f["last_uid"]} for f in state.get(ib["mailbox_id"], {}).values()]
        out.append(ib)
    return out


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    accounts, rounds, agents = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    work = tempfile.mkdtemp(prefix="kiln-bench-repeat.")
    os.chmod(work, 0o755)
    bench.WORK = work
    ports = {"KILN_IMAP_PORT": str(bench.free_port()), "KILN_LMTP_PORT": str(bench.free_port()),
             "KILN_MX_PORT": str(bench.free_port())}
    env = bench.mail_env(ports, accounts)
    users = ["u%05d@bench.test" % i for i in range(accounts)]
    with open(os.path.join(work, "users"), "w") as f:
        f.write("".join("%s:{PLAIN}pw::::::\n" % u for u in users))
    src = bench.SRC
    bench.sh("set -e; source %s/deploy/local/mailstack.sh; mail_init %s; mail_domain bench.test 0; "
             "cat %s/users >>\"$MAIL_DC/passwd\"; mail_dovecot_up" % (src, work, work), env)
    try:
        bench.seed_maildirs(users, 3, 3)
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(work, "mail", "dc", "mail")],
                           check=True)
        inboxes = [{"mailbox_id": i + 1, "address": u, "poll_class": "medium", "poll_interval_s": 300,
                    "warmup_folder": "kiln", "folders": [], "actions": [],
                    "imap": {"host": "127.0.0.1", "port": int(ports["KILN_IMAP_PORT"]),
                             "security": "plain", "username": u, "password": "pw",
                             "oauth_token": None, "ca_file": None, "allow_plaintext_auth": True}}
                   for i, u in enumerate(users)]
        first = os.path.join(work, "first.json")
        with open(first, "w") as f:
            json.dump(inboxes, f)
        conns = os.environ.get("KILN_BENCH_MAX_CONNS", "100")
        perf_dir = os.environ.get("KILN_BENCH_PERF")
        # Dovecot indexes each Maildir at its first SELECT: one untimed pass first
        _, _, _, _, _, state = run_pass(agents[0], first, os.path.join(work, "warm.out"), conns)
        repeat = os.path.join(work, "repeat.json")
        with open(repeat, "w") as f:
            json.dump(with_state(inboxes, state), f)
        print("%d accounts, load %.1f; CPU per visit (us), first visit / repeat visit"
              % (accounts, os.getloadavg()[0]))
        totals = {a: [0.0, 0, 0.0, 0] for a in agents}
        for rnd in range(rounds):
            order = agents if rnd % 2 == 0 else list(reversed(agents))
            for a in order:
                perf1 = perf2 = None
                if perf_dir and rnd == 0 and a == agents[0]:
                    perf1, perf2 = (os.path.join(perf_dir, n) for n in ("first.data", "repeat.data"))
                c1, w1, v1, f1, _, _ = run_pass(a, first, os.path.join(work, "a.out"), conns, perf1)
                c2, w2, v2, f2, n2, _ = run_pass(a, repeat, os.path.join(work, "b.out"), conns, perf2)
                t = totals[a]
                t[0] += c1
                t[1] += v1
                t[2] += c2
                t[3] += v2
                print("round %d %-40s first %5.0f us (%d visits, %d failed, %.1f s)  "
                      "repeat %5.0f us (%d visits, %d failed, %d found, %.1f s)  load %.1f"
                      % (rnd, a, 1e6 * c1 / max(v1, 1), v1, f1, w1, 1e6 * c2 / max(v2, 1), v2, f2, n2,
                         w2, os.getloadavg()[0]), flush=True)
        for a in agents:
            t = totals[a]
            print("all rounds %-40s first %5.0f us  repeat %5.0f us"
                  % (a, 1e6 * t[0] / max(t[1], 1), 1e6 * t[2] / max(t[3], 1)))
    finally:
        bench.sh("source %s/deploy/local/mailstack.sh; mail_init %s; mail_down" % (src, work), env)
        if os.environ.get("KILN_BENCH_KEEP") != "1":
            subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    random.seed(1)
    main()
