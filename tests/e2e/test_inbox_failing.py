"""An inbox whose IMAP server takes the login and then breaks every visit, end to end:
kiln-api + nginx + PostgreSQL (with_stack.sh), one kiln-agent watching two inboxes over
IMAP (tests/agent/imap_hostile_server.py: `good`, a correct server, and `bye_fetch`, which
answers a FETCH with BYE and hangs up).

What a user looks at: the good inbox becomes `ok` with no error; the broken one is shown
failing (`inbox_error` says the session broke after the login, `inbox_error_at` is when it
began failing and stays there while it keeps failing) and never reads `ok` — until session
34 the agent's `ok` came at the login and such an inbox read `ok`, so all the mail sent
to it was judged `missing` against its senders. Runs without SMTP: the service is
stopped, nothing is sent."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import PROCS, WORK, Agent, admin, check, control, expect, make_plan, make_user, psql, wait_agent  # noqa: E402

SRC = os.environ.get("KILN_SOURCE_DIR", ".")
T0 = time.monotonic()

ports_file = os.path.join(WORK, "imap-ports.json")
logs = os.path.join(WORK, "imap-logs")
os.makedirs(logs, exist_ok=True)
server_log = os.path.join(WORK, "imap-server.log")
server = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "agent", "imap_hostile_server.py"),
                           "--ports", ports_file, "--log-dir", logs,
                           "--scenarios", "good=1,bye_fetch=2"],
                          stdout=open(server_log, "w"), stderr=subprocess.STDOUT)
PROCS.append(server)
for _ in range(100):
    if "READY" in open(server_log).read() or server.poll() is not None:
        break
    time.sleep(0.1)
check("READY" in open(server_log).read(), "the IMAP server did not start: " + open(server_log).read())
ports = json.load(open(ports_file))

control("stop")  # the inbox side only
plan = make_plan("failing", ramp_start=3, ramp_step=1, daily_max=10)
user = make_user("owner", plan["id"], "UTC")
ids = {}
for name in ("good", "bye_fetch"):
    host, port = ports[name]
    addr = "%s@acme.test" % name.replace("_", "-")
    acc = {"host": host, "security": "plain", "username": addr, "password": "pw",
           "allow_plaintext_auth": True}
    body = {"user_id": user["id"], "address": addr, "display_name": name,
            "smtp": dict(acc, port=25), "imap": dict(acc, port=port), "timezone": "UTC",
            "window": {"start_hour": 0, "end_hour": 24}, "daily_target": 3}
    ids[name] = expect(admin("POST", "/api/mailboxes", body), 201, "mailbox " + name)["id"]

# Both inboxes were watched before and have mail newer than their folders' state since
# (the hostile server's INBOX and Junk: UIDVALIDITY 7 and 8): a visit fetches it, and
# bye_fetch hangs up on that FETCH. (An inbox seen for the first time reports only what
# comes later, so its first visit fetches nothing.)
for name in ids:
    psql("INSERT INTO inbox_folders (mailbox_id, name, role, uidvalidity, last_uid) "
         "VALUES (%d, 'INBOX', 'inbox', 7, 0), (%d, 'Junk', 'junk', 8, 0)" % (ids[name], ids[name]))
agent = Agent("watcher", env={"KILN_AGENT_MAX_INBOXES": "2", "KILN_AGENT_INBOX_REFRESH_S": "2",
                              "KILN_AGENT_IMAP_IDLE": "0", "KILN_AGENT_IMAP_POLL_MAX_MS": "2000",
                              "KILN_AGENT_IMAP_BACKOFF_BASE_MS": "300",
                              "KILN_AGENT_IMAP_BACKOFF_MAX_MS": "1000"})


def inbox(name):
    m = expect(admin("GET", "/api/mailboxes/%d" % ids[name]), 200, "get " + name)
    return m["inbox"], m["inbox_error"], m["inbox_error_at"]


def wait(what, cond, timeout):
    wait_agent(agent, what, cond, timeout, lambda: "good %r, bye_fetch %r; agent log:\n%s" % (
        inbox("good"), inbox("bye_fetch"), agent.tail(40)), every=0.5)


wait("the good inbox ok, the broken one failing",
     lambda: inbox("good") == ("ok", None, None) and
     "broke after the login" in (inbox("bye_fetch")[1] or ""), 60)
state, err, since = inbox("bye_fetch")
check(state == "unverified" and since, "the broken inbox: %r" % ((state, err, since),))
print("ok - good inbox ok; the broken one failing since %s: %s (%.0f s)"
      % (since, err, time.monotonic() - T0))

# It keeps failing, visit after visit: the time it began failing stays, it never reads ok.
conns0 = json.load(open(os.path.join(logs, "bye_fetch.json")))["conns"]
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if json.load(open(os.path.join(logs, "bye_fetch.json")))["conns"] >= conns0 + 3:
        break
    check(inbox("bye_fetch") == (state, err, since), "the broken inbox changed: %r"
          % (inbox("bye_fetch"),))
    time.sleep(0.5)
conns = json.load(open(os.path.join(logs, "bye_fetch.json")))["conns"]
check(conns >= conns0 + 3, "the broken server was visited %d more times in 30 s" % (conns - conns0))
time.sleep(3)  # the agent's next report
check(inbox("bye_fetch") == (state, err, since) and inbox("good") == ("ok", None, None),
      "after %d more visits: good %r, bye_fetch %r" % (conns - conns0, inbox("good"),
                                                     inbox("bye_fetch")))
print("ok - %d more broken visits: still failing since %s, never ok" % (conns - conns0, since))
check(agent.term() == 0, "the agent's drain failed:\n" + agent.tail())
print("PASS inbox_failing (%.0f s)" % (time.monotonic() - T0))
