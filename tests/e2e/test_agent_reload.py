"""kiln-agent reloads agent.conf on SIGHUP, against the real control plane (kiln-api +
nginx + PostgreSQL, with_stack.sh): the agent reads the file itself (--config, nothing in
its environment), as the shipped systemd unit now runs it.

What an operator checks after `systemctl reload kiln-agent`:
- the edited file applies: the log says the new report batch;
- a setting that needs a restart keeps its running value and is named: raising
  KILN_AGENT_MAX_INBOXES from 0 leases no inbox, since the agent started without an inbox
  engine to watch one. Before session 35 the reload took it, and the agent would have
  held inboxes nobody watched; and under the unit's EnvironmentFile= no edit applied at all.
A second agent started with KILN_AGENT_MAX_INBOXES=5 does get an inbox lease of the same
mailboxes: the first one's "none" is the reload's doing, not the pool's. The service is
stopped (inboxes are leased while it is, sends are not), so nothing is sent."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import AGENT, PROCS, URL, WORK, admin, check, control, expect, make_plan, make_user, psql  # noqa: E402

control("stop")
plan = make_plan("reload", ramp_start=3, ramp_step=1, daily_max=10)
user = make_user("owner", plan["id"], "UTC")
for i in range(3):
    acc = {"host": "127.0.0.1", "security": "plain", "username": "m%d@acme.test" % i,
           "password": "pw", "allow_plaintext_auth": True}
    expect(admin("POST", "/api/mailboxes", {
        "user_id": user["id"], "address": "m%d@acme.test" % i, "display_name": "M%d" % i,
        "smtp": dict(acc, port=25), "imap": dict(acc, port=1), "timezone": "UTC",
        "window": {"start_hour": 0, "end_hour": 24}, "daily_target": 3}), 201, "mailbox %d" % i)


def start(name, settings):
    """kiln-agent run --config FILE with only PATH (and ASan's options) in its environment."""
    token = expect(admin("POST", "/api/agents", {"name": name}), 201, "agent " + name)["token"]
    base = os.path.join(WORK, name)
    os.makedirs(base + "-spool")
    with open(base + ".token", "w") as f:
        f.write(token + "\n")
    conf = base + ".conf"
    write_conf(conf, name, settings)
    env = {"PATH": os.environ["PATH"],
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") or "detect_leaks=1"}
    log = base + ".log"
    p = subprocess.Popen([AGENT, "run", "--config", conf], env=env, stdout=open(log, "w"),
                         stderr=subprocess.STDOUT)
    PROCS.append(p)
    agent_id = int(psql("SELECT id FROM agents WHERE name = '%s'" % name)[0])
    return p, conf, log, agent_id


def write_conf(conf, name, settings):
    base = os.path.join(WORK, name)
    lines = ["KILN_API_URL=" + URL, "KILN_AGENT_TOKEN_FILE=%s.token" % base,
             "KILN_AGENT_SPOOL_DIR=%s-spool" % base, "KILN_AGENT_NAME=" + name,
             "KILN_AGENT_THREADS=1", "KILN_AGENT_HEARTBEAT_S=3", "KILN_AGENT_LEASE_IDLE_MAX_S=1"]
    lines += ["%s=%s" % kv for kv in settings.items()]
    with open(conf, "w") as f:
        f.write("# written by test_agent_reload.py\n" + "\n".join(lines) + "\n")


def wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    check(False, what)


def inbox_leases(agent_id):
    return int(psql("SELECT count(*) FROM leases WHERE agent_id = %d AND kind = 'inbox'"
                    % agent_id)[0])


def seen_at(agent_id):
    """When the agent last called (a lease call marks it), as text; "" before its first."""
    return psql("SELECT coalesce(extract(epoch FROM last_seen_at)::text, 'never') FROM agents "
                "WHERE id = %d" % agent_id)[0].replace("never", "")


a, conf, log, a_id = start("reloaded", {"KILN_AGENT_MAX_INBOXES": "0",
                                        "KILN_AGENT_REPORT_BATCH": "100",
                                        "KILN_AGENT_CONCURRENCY": "10"})
wait(lambda: seen_at(a_id) != "", 20, "the agent never called the control plane: "
     + open(log).read()[-2000:])
write_conf(conf, "reloaded", {"KILN_AGENT_MAX_INBOXES": "5", "KILN_AGENT_REPORT_BATCH": "7",
                              "KILN_AGENT_CONCURRENCY": "20"})
a.send_signal(signal.SIGHUP)
wait(lambda: "configuration reloaded" in open(log).read(), 10,
     "SIGHUP did not reload: " + open(log).read()[-2000:])
text = open(log).read()
check("configuration reloaded (report batch 7, max inboxes 0;" in text,
      "the edited file's report batch applies at once, max inboxes stays 0: "
      + [l for l in text.splitlines() if "SIGHUP" in l].__repr__())
check("KILN_AGENT_MAX_INBOXES=5 needs a restart" in text
      and "KILN_AGENT_CONCURRENCY=20 needs a restart" in text,
      "the settings that need a restart are named: %r" % [l for l in text.splitlines() if "SIGHUP" in l])
# several lease calls after the reload (one a second while idle): none asks for inboxes
before = seen_at(a_id)
wait(lambda: seen_at(a_id) != before, 10, "the agent stopped calling after the reload")
time.sleep(4)
check(a.poll() is None, "the agent died after the reload: " + open(log).read()[-2000:])
check(inbox_leases(a_id) == 0, "the reloaded agent leased inboxes it has no engine to watch: %d"
      % inbox_leases(a_id))
print("ok - SIGHUP applied the file's report batch; max inboxes 0 -> 5 and concurrency kept, "
      "and no inbox was leased", flush=True)

b, _, b_log, b_id = start("started-with-inboxes", {"KILN_AGENT_MAX_INBOXES": "5"})
wait(lambda: inbox_leases(b_id) == 1, 20, "an agent started with KILN_AGENT_MAX_INBOXES=5 got "
     "no inbox lease: " + open(b_log).read()[-2000:])
print("ok - an agent started with KILN_AGENT_MAX_INBOXES=5 leases the same inboxes", flush=True)

for p in (a, b):
    p.send_signal(signal.SIGTERM)
for p, lg in ((a, log), (b, b_log)):
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, "SIGTERM: exit %r: %s" % (rc, open(lg).read()[-2000:]))
print("ok - test_agent_reload_applies_the_file_and_keeps_what_needs_a_restart", flush=True)
