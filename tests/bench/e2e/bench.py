"""End-to-end throughput: one kiln-agent, kiln-api, PostgreSQL, nginx, smtp-sink."""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_DIR"], "tests", "lib"))
sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_DIR"], "tests", "e2e"))
from e2elib import PROCS, Agent, Triggerer, free_port  # noqa: E402
from kiln_test import admin, expect, make_mailbox, make_plan, make_user, psql, set_clock  # noqa: E402
from proc_cpu import cpu_of, tree_cpu  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
WARMUP = float(os.environ.get("BENCH_WARMUP_S", "20"))
USERS, PER_USER = 1000, 100

port = free_port()
sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:%d" % port, "4096"]
                        if os.getuid() == 0 else
                        ["/usr/sbin/smtp-sink", "127.0.0.1:%d" % port, "4096"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
PROCS.append(sink)
set_clock("2026-06-10T12:00:00Z")
plan = make_plan("bench", ramp_start=30, ramp_step=0, daily_max=30, cooldown_min_s=1,
                 cooldown_max_s=2, user_hourly_cap=10000000, user_minute_cap=1000000,
                 max_mailboxes=1000)
u0 = make_user("bench0", plan["id"])
make_mailbox(u0["id"], "seed@bench0.test", timezone="UTC",
             window={"start_hour": 0, "end_hour": 24}, warmup_start="2020-01-01",
             smtp={"host": "127.0.0.1", "port": port, "security": "plain",
                   "username": "seed", "password": "pw", "allow_plaintext_auth": True})
t0 = time.time()
psql("""INSERT INTO users (name, plan_id, timezone) SELECT 'bench' || g, %d, 'UTC'
        FROM generate_series(1, %d) g""" % (plan["id"], USERS - 1))
psql("""INSERT INTO mailboxes (user_id, address, display_name, smtp_host, smtp_port,
          smtp_security, smtp_username, smtp_secret, smtp_allow_plaintext_auth, timezone,
          window_start_hour, window_end_hour, warmup_start)
        SELECT u.id, 'box' || g || '@' || u.name || '.test', 'Box ' || g, s.smtp_host, s.smtp_port,
          s.smtp_security, 'box' || g, s.smtp_secret, s.smtp_allow_plaintext_auth, 'UTC', 0, 24,
          '2020-01-01'
        FROM users u CROSS JOIN generate_series(1, %d) g
        CROSS JOIN (SELECT * FROM mailboxes LIMIT 1) s
        WHERE u.name <> 'bench0' OR g > 1""" % PER_USER)
psql("VACUUM ANALYZE")
n = int(psql("SELECT count(*) FROM mailboxes")[0])
print("setup: %d mailboxes in %.1fs (sink on 127.0.0.1:%d)" % (n, time.time() - t0, port),
      flush=True)
expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")
triggers = Triggerer(2.0)
agent = Agent("bench", {"KILN_AGENT_CONCURRENCY": os.environ.get("BENCH_CONCURRENCY", "2000"),
                        "KILN_AGENT_THREADS": os.environ.get("BENCH_THREADS", "1"),
                        "KILN_AGENT_REPORT_BATCH": "1000", "KILN_AGENT_REPORT_INTERVAL_MS": "500",
                        "KILN_AGENT_HEARTBEAT_S": "0", "KILN_LOG_LEVEL": "warn"})


def sent():
    return int(psql("SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'sends' "
                    "AND label = 'sent'")[0])


var = os.environ["KILN_STACK_VAR"]
api_pid = int(open(os.path.join(var, "run", "kiln-api.pid")).read())
pg_pid = int(open(os.path.join(var, "pg", "data", "postmaster.pid")).readline())
nginx_pid = int(open(os.path.join(var, "run", "nginx.pid")).read())


def cpu():
    """CPU seconds so far: agent, kiln-api, PostgreSQL and nginx (their process trees,
    exited backends and workers included), sink."""
    return {"agent": cpu_of(agent.p.pid), "kiln-api": cpu_of(api_pid),
            "postgresql": tree_cpu(pg_pid), "nginx": tree_cpu(nginx_pid),
            "smtp-sink": cpu_of(sink.pid)}


time.sleep(WARMUP)
s0, c0, t0 = sent(), cpu(), time.time()
samples = []
while time.time() - t0 < SECONDS:
    time.sleep(5)
    samples.append((time.time() - t0, sent()))
s1, c1, t1 = sent(), cpu(), time.time()
triggers.stop()
dt = t1 - t0
rate = (s1 - s0) / dt
print("window: %.0f s after %.0f s warm-up; %d sends counted as sent" % (dt, WARMUP, s1 - s0))
prev = (0.0, s0)
for t, s in samples:
    print("  t=%5.1fs  %6.0f sends/s" % (t, (s - prev[1]) / (t - prev[0])))
    prev = (t, s)
print("e2e: %.0f sends/s = %.0f sends/hour (goal 1,000,000/h: %.2fx)" % (rate, rate * 3600,
                                                                        rate * 3600 / 1e6))
print("legacy: 50,000 sends/hour with 10 workers, 187,500 with 50: %.1fx and %.1fx"
      % (rate * 3600 / 50000, rate * 3600 / 187500))
total = sum(c1[k] - c0[k] for k in c1)
print("CPU over the window (%.1f cores busy of %d):" % (total / dt, os.cpu_count()))
for k in c1:
    used = c1[k] - c0[k]
    print("  %-10s %6.1f s  %5.1f%%  %6.0f us/send" % (k, used, 100 * used / total if total else 0,
                                                     1e6 * used / max(s1 - s0, 1)))
rc = agent.term(timeout=120)
print("agent drained: exit %d" % rc)
