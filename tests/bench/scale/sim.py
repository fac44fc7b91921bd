"""The control plane at a million mailboxes (issue 15): seed N mailboxes across N/100
users with `kiln-api seed` (COPY), give them 50 sends/day from day one with half the
day's window gone (25 due each, N x 25 in the backlog), and let agents in dry-run mode
(KILN_AGENT_DRY_RUN_MS: no SMTP, every due slot reported sent after a latency) lease and
report through nginx and KILN_API_PROCESSES kiln-api processes. Measures, over a window
after a warm-up:
  - sends/s the control plane counts as sent, and the headroom over 50 M/day;
  - per send: rows written (pg_stat_user_tables), WAL bytes, CPU us in PostgreSQL,
    kiln-api, the agents and nginx;
  - p50/p99 of the quota list (a page of 100 behind-schedule mailboxes) and of /metrics,
    sampled while the load runs;
  - the order of service: the histogram of today's sends per mailbox. Under a backlog a
    lease grants a mailbox's slots after its first only KILN_LEASE_BACKLOG_AHEAD_S (60 s)
    ahead (docs/leasing.md "Backlog"), so with a 60-120 s cooldown a mailbox gets a second
    send before others their first only on a 60 s draw, never a third.
Peer, same PostgreSQL, same run, after kiln's window: the bare queue (peer.sql in pgbench,
claim 100 with FOR UPDATE SKIP LOCKED and complete, over N rows in due order), with
the same per-job figures: the floor a Postgres-backed queue pays per job on this box.
Run by tests/bench/scale/run.sh under tests/lib/with_stack.sh. Not part of `make test`."""
import datetime
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_DIR"], "tests", "lib"))
sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_DIR"], "tests", "e2e"))
from e2elib import Agent  # noqa: E402
from kiln_test import call, check, psql, set_clock  # noqa: E402
from pgss import pgss_reset, pgss_setup, pgss_summary  # noqa: E402
from proc_cpu import cpu_of, pidfile, tree_cpu  # noqa: E402

N = int(os.environ.get("BENCH_MAILBOXES", "1000000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "120"))
WARMUP = float(os.environ.get("BENCH_WARMUP_S", "20"))
AGENTS = int(os.environ.get("BENCH_AGENTS", "2"))
DRY_MS = os.environ.get("BENCH_DRY_RUN_MS", "20")
PGSS = os.environ.get("BENCH_PGSS") == "1"  # per statement over the window (tests/lib/pgss.py)
# Day partitions of sends behind today, empty (BENCH_DAYS_BEHIND): a running system keeps
# KILN_SENDS_RETENTION_DAYS (90) of them, and every statement on sends that PostgreSQL
# cannot prune when it plans pays for each.
DAYS_BEHIND = int(os.environ.get("BENCH_DAYS_BEHIND", "0"))
VAR = os.environ["KILN_STACK_VAR"]
BUILD = os.environ["KILN_BUILD_DIR"]
TOKEN = os.environ["KILN_ADMIN_TOKEN"]

today = datetime.datetime.now(datetime.timezone.utc).date()
set_clock("%sT12:00:00Z" % today.isoformat())
t0 = time.time()
subprocess.run([os.path.join(BUILD, "api", "kiln-api"), "seed", "--count", str(N),
                "--users", str(max(N // 100, 1)), "--name", "sim", "--smtp-port", "9"],
               check=True, stderr=sys.stderr)
# 50/day from day one, the whole day a window, user caps out of the way: the backlog is
# N x 25. A cooldown of 1-2 min between a mailbox's sends (production's are longer) keeps
# a lease from granting one mailbox its whole backlog at once, so the order of service
# shows: a million mailboxes can take ~10,000 sends/s at that spacing, more than one box
# serves, so who is served first is the leasing's choice
psql("""UPDATE plans SET ramp_start = 50, ramp_step = 0, daily_max = 50, cooldown_min_s = 60,
          cooldown_max_s = 120, user_minute_cap = 100000000, user_hourly_cap = 1000000000""")
psql("UPDATE mailboxes SET window_start_hour = 0, window_end_hour = 24, timezone = 'UTC'")
if DAYS_BEHIND:
    psql("SELECT count(*) FILTER (WHERE kiln_sends_partition(kiln_now()::date - d)) "
         "FROM generate_series(1, %d) d" % DAYS_BEHIND)
psql("VACUUM ANALYZE")
n = int(psql("SELECT count(*) FROM mailboxes")[0])
print("setup: %d mailboxes, %d users in %.0f s; backlog %d sends (25 due each); %d day "
      "partitions of sends" % (n, max(N // 100, 1), time.time() - t0, n * 25,
                               int(psql("SELECT count(*) FROM pg_inherits "
                                        "WHERE inhparent = 'sends'::regclass")[0])), flush=True)

if PGSS:
    pgss_setup()
agents = [Agent("sim%d" % i, {"KILN_AGENT_DRY_RUN_MS": DRY_MS,
                              "KILN_AGENT_CONCURRENCY": "2000", "KILN_AGENT_THREADS": "1",
                              "KILN_AGENT_REPORT_BATCH": "1000",
                              "KILN_AGENT_REPORT_INTERVAL_MS": "500",
                              "KILN_AGENT_HEARTBEAT_S": "0", "KILN_LOG_LEVEL": "warn",
                              "ASAN_OPTIONS": "detect_leaks=0"})
          for i in range(AGENTS)]


run = os.path.join(VAR, "run")
api_pids = [pidfile(os.path.join(run, f)) for f in os.listdir(run)
            if f.startswith("kiln-api") and f.endswith(".pid") and "supervisor" not in f]
pg_pid = pidfile(os.path.join(VAR, "pg", "data", "postmaster.pid"))
nginx_pid = pidfile(os.path.join(run, "nginx.pid"))


def cpu():
    return {"postgresql": tree_cpu(pg_pid), "kiln-api": sum(cpu_of(p) for p in api_pids),
            "agents": sum(cpu_of(a.p.pid) for a in agents), "nginx": tree_cpu(nginx_pid)}


def counts():
    r = psql("""SELECT (SELECT coalesce(sum(value), 0) FROM counters
                         WHERE name = 'sends' AND label = 'sent'),
                       (SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables),
                       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')""")[0].split("|")
    return int(r[0]), int(r[1]), float(r[2])


def tables():
    out = {}
    for row in psql("SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del "
                    "FROM pg_stat_user_tables"):
        f = row.split("|")
        out[f[0]] = [int(x) for x in f[1:]]
    return out


lat = {"quota": [], "metrics": []}
stop = threading.Event()


def sampler():
    paths = {"quota": "/api/warmup/quota?status=behind&limit=100", "metrics": "/metrics"}
    deadline = time.time() + WARMUP + SECONDS + 60
    while not stop.is_set() and time.time() < deadline:
        for k, p in paths.items():
            t = time.perf_counter()
            r = call("GET", p, token=TOKEN, timeout=30)
            if r.status == 200:
                lat[k].append(1000 * (time.perf_counter() - t))
        stop.wait(0.5)


time.sleep(WARMUP)
# Statistics as a running system has them: the setup analysed sends, mailbox_days and
# pending_replies empty, and kiln-api's backends keep the plans they made then (PL/pgSQL
# caches kiln_refresh_due's, for one) until an ANALYZE of those tables invalidates them:
# autovacuum's first within a minute or two on a fresh install, possibly after the window.
# A plan that reads mailbox_days by a sequential scan per mailbox made each refresh of 32
# mailboxes cost ~80 ms instead of ~2 at 50,000 mailboxes (session 29).
psql("ANALYZE")
if PGSS:
    pgss_reset()
s0, rows0, wal0 = counts()
tab0 = tables()
c0, t0 = cpu(), time.time()
th = threading.Thread(target=sampler, daemon=True)
th.start()
samples = []
while time.time() - t0 < SECONDS:
    time.sleep(10)
    samples.append((time.time() - t0, counts()[0]))
    check(all(a.alive() for a in agents), "an agent died: " + agents[0].tail())
s1, rows1, wal1 = counts()
tab1 = tables()
c1, t1 = cpu(), time.time()
stop.set()
th.join(35)
dt, sends = t1 - t0, max(s1 - s0, 1)
if PGSS:
    pgss_summary(sends)
rate = sends / dt
print("window: %.0f s after %.0f s warm-up, %d agents (dry run %s ms), %s kiln-api processes"
      % (dt, WARMUP, AGENTS, DRY_MS, len(api_pids)))
prev = (0.0, s0)
for t, s in samples:
    print("  t=%5.0fs  %6.0f sends/s" % (t, (s - prev[1]) / (t - prev[0])))
    prev = (t, s)
day = 50.0 * n
print("rate: %.0f sends/s; %d mailboxes x 50/day = %.0f sends/day = %.0f/s on average: "
      "%.2fx headroom" % (rate, n, day, day / 86400, rate / (day / 86400)))
print("per send: %.1f rows written, %.0f WAL bytes" % ((rows1 - rows0) / sends,
                                                       (wal1 - wal0) / sends))
per = sorted(((sum(tab1[t][i] - tab0.get(t, [0] * 4)[i] for i in (0, 1, 3)) / sends, t)
              for t in tab1), reverse=True)
print("rows written per send, by table (inserts+updates+deletes; HOT share of updates):")
for w, t in per[:10]:
    if w >= 0.01:
        upd = tab1[t][1] - tab0.get(t, [0] * 4)[1]
        hot = tab1[t][2] - tab0.get(t, [0] * 4)[2]
        print("  %-22s %5.2f  (HOT %3.0f%%)" % (t, w, 100 * hot / upd if upd else 0))
total = sum(c1[k] - c0[k] for k in c1)
print("CPU over the window (%.2f of %d cores busy):" % (total / dt, os.cpu_count()))
for k in c1:
    used = c1[k] - c0[k]
    print("  %-10s %6.1f s  %5.1f%%  %6.0f us/send" % (k, used, 100 * used / total if total else 0,
                                                     1e6 * used / sends))
own = sum(c1[k] - c0[k] for k in ("postgresql", "kiln-api"))
print("control plane (PostgreSQL + kiln-api): %.0f us/send -> %.2f cores at 50 M/day average, "
      "%.2f at a 4x peak" % (1e6 * own / sends, own / sends * day / 86400,
                             4 * own / sends * day / 86400))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


for k, xs in lat.items():
    print("%-8s p50 %7.1f ms  p99 %7.1f ms  (%d requests during the load)"
          % (k, pct(xs, 0.5), pct(xs, 0.99), len(xs)))
hist = psql("""SELECT coalesce(d.sent, 0) AS s, count(*) FROM mailboxes m
               LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = kiln_now()::date
               GROUP BY 1 ORDER BY 1""")
print("today's sends per mailbox (sends: mailboxes): " +
      ", ".join("%s: %s" % tuple(h.split("|")) for h in hist))
lo, hi = int(hist[0].split("|")[0]), int(hist[-1].split("|")[0])
print("order of service: spread %d sends between the least and the most served mailbox "
      "(furthest behind first; a %s s lease, later slots %s s ahead under a backlog)"
      % (hi - lo, os.environ.get("KILN_LEASE_TTL_S", "?"),
         os.environ.get("KILN_LEASE_BACKLOG_AHEAD_S", "60")))
for a in agents:
    a.term(timeout=120)
kiln = {"rate": rate, "rows": (rows1 - rows0) / sends, "wal": (wal1 - wal0) / sends,
        "pg_us": 1e6 * (c1["postgresql"] - c0["postgresql"]) / sends}

# ---- the peer: the bare queue over the same number of rows ----
psql("""CREATE TABLE peer_q (id bigint PRIMARY KEY, due timestamptz NOT NULL,
          status smallint NOT NULL DEFAULT 0, owner int, done_at timestamptz)
        WITH (fillfactor = 70)""")
psql("""INSERT INTO peer_q (id, due) SELECT g, now() - random() * interval '12 hours'
        FROM generate_series(1, %d) g""" % n)
psql("CREATE INDEX peer_q_due ON peer_q (due) WHERE status = 0")
psql("CREATE INDEX peer_q_owner ON peer_q (owner) WHERE status = 1")
psql("VACUUM ANALYZE peer_q")
clients = os.environ.get("BENCH_PEER_CLIENTS", "2")
peer_s = int(min(SECONDS, 60))


def peer_snapshot():
    """Jobs done, rows, WAL, PostgreSQL CPU, time: taken while pgbench runs (its end
    would count its connections' teardown too)."""
    done = int(psql("SELECT count(*) FROM peer_q WHERE status = 2")[0])
    _, rows, wal = counts()
    return done, rows, wal, cpu()["postgresql"], time.time()


pgb = subprocess.Popen(
    ["bash", "-c", 'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
     'STACK_PG_PORT=$STACK_PG_PORT stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; '
     'stack_as_pg "$(stack_pg_bin)/pgbench" -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" -U postgres '
     '-n -c "$3" -j "$3" -T "$4" -f "$5" kiln',
     os.environ["KILN_SOURCE_DIR"], VAR, BUILD, clients, str(peer_s + 600),
     os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer.sql")],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
time.sleep(5)
q0, prow0, pwal0, pc0, pt0 = peer_snapshot()
time.sleep(peer_s)
q1, prow1, pwal1, pc1, pt1 = peer_snapshot()
alive = pgb.poll() is None
os.killpg(pgb.pid, signal.SIGTERM)  # its window is measured; its summary is not needed
out = pgb.communicate()[0]
done = q1 - q0
check(alive, "the peer's pgbench ended early:\n" + out)
check(done > 0, "the peer's queue of %d jobs emptied before its window (BENCH_MAILBOXES too "
      "small for a measurement)" % n)
prate = done / (pt1 - pt0)
peer = {"rate": prate, "rows": (prow1 - prow0) / done, "wal": (pwal1 - pwal0) / done,
        "pg_us": 1e6 * (pc1 - pc0) / done}
print("peer: bare SKIP LOCKED queue over %d rows (pgbench, %s clients, batches of 100): "
      "%.0f jobs/s" % (n, clients, prate))
print("%-26s %12s %12s %12s" % ("per send / per job", "kiln", "bare queue", "kiln/queue"))
for k, label in (("rate", "rate (/s)"), ("rows", "rows written"), ("wal", "WAL bytes"),
                 ("pg_us", "PostgreSQL CPU (us)")):
    print("%-26s %12.1f %12.1f %11.2fx" % (label, kiln[k], peer[k], kiln[k] / peer[k]))
