#!/bin/bash
# IDLE for the high class against a real Dovecot (STARTTLS with a CA made here):
# `kiln-agent inbox --file` keeps one connection in IDLE (metrics: 1 idle session); a
# message delivered over LMTP is reported within a second; Dovecot restarted under the
# IDLE connection: the agent reconnects (backoff), idles again and finds the next
# message; the metrics name the polls, the found messages by role and the server;
# SIGTERM ends the run with 143, the IDLE session logged out.
source "$(dirname "$0")/lib.sh"
DOVECOT_TLS=1
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dovecot_start
cd "$WORK"
make_inboxes in.json "3:localhost:$IMAP_PORT:starttls:anna@acme.test:s3cret:$DC_CA:high"
KILN_AGENT_IMAP_BACKOFF_BASE_MS=500 "$AGENT" inbox --file in.json --duration 55 \
    --metrics-port 0 --progress-s 1 >ev.jsonl 2>err.log &
AG=$!
PIDS+=($AG)
mport=$(metrics_port err.log) || fail "no metrics port: $(cat err.log)"
metric() { # name{labels} -> value
    $PY - "$mport" "$1" <<'PYEOF'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
for line in body.splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(line.split()[-1])
PYEOF
}
wait_idle() { # what: until the metrics show one IDLE session (15 s)
    for _ in $(seq 1 150); do
        [ "$(metric kiln_agent_inbox_idle_sessions)" = 1 ] && return 0
        sleep 0.1
    done
    fail "no IDLE session $1: $(cat ev.jsonl err.log | tail -20)"
}
# deliver_and_time MESSAGE-ID: seconds until its found event is in ev.jsonl (or 99)
deliver_and_time() {
    $PY - "$LMTP_PORT" "$1" <<'PYEOF'
import json, smtplib, sys, time
port, mid = int(sys.argv[1]), sys.argv[2]
msg = (f"From: bob@other.test\r\nTo: anna@acme.test\r\nSubject: hi\r\nMessage-ID: {mid}\r\n"
       "Date: Thu, 03 Dec 2026 03:00:00 +0000\r\n\r\nhello\r\n")
with smtplib.LMTP("127.0.0.1", port) as lmtp:
    lmtp.sendmail("bob@other.test", ["anna@acme.test"], msg)
t0 = time.monotonic()
while time.monotonic() - t0 < 20:
    for line in open("ev.jsonl"):
        e = json.loads(line)
        if e["type"] == "found" and e["message_id"] == mid:
            print("%.3f" % (time.monotonic() - t0))
            sys.exit(0)
    time.sleep(0.02)
print(99)
PYEOF
}
wait_idle "after the first login"
t=$(deliver_and_time "$(kiln_id 41)")
# IDLE answers in milliseconds; the bound leaves room for a loaded box (ASan, STARTTLS)
# and is still far below any poll interval.
$PY -c "import sys; sys.exit(0 if float('$t') <= 2.5 else 1)" ||
    fail "IDLE: the message was reported after $t s (expected within 2.5 s)"
echo "IDLE: found $t s after delivery"
polls=$(metric kiln_agent_inbox_polls_total)
[ "$(metric 'kiln_agent_inbox_idle_wakes_total')" -ge 1 ] || fail "no IDLE wake counted"

dovecot_restart
for _ in $(seq 1 150); do
    p=$(metric kiln_agent_inbox_polls_total)
    [ "$p" -gt "$polls" ] && [ "$(metric kiln_agent_inbox_idle_sessions)" = 1 ] && break
    sleep 0.1
done
[ "$(metric kiln_agent_inbox_polls_total)" -gt "$polls" ] ||
    fail "no reconnect after the restart: $(tail -5 err.log)"
wait_idle "after Dovecot's restart"
t=$(deliver_and_time "$(kiln_id 42)")
$PY -c "import sys; sys.exit(0 if float('$t') <= 2.5 else 1)" ||
    fail "after the restart the message was reported after $t s"
[ "$(metric 'kiln_agent_inbox_found_total{role="inbox"}')" = 2 ] || fail "found_total: $(metric 'kiln_agent_inbox_found_total{role="inbox"}')"
[ "$(metric 'kiln_agent_inbox_server_breaker{server="localhost",state="closed"}')" = 1 ] ||
    fail "the server's breaker is not closed"
grep -q "found, 0 actions" err.log || fail "no progress line on stderr: $(tail -3 err.log)"
[ "$(events ev.jsonl "e['type']=='session'" | wc -l)" = 1 ] ||
    fail "a session event for a reconnect that logged in as before: $(cat ev.jsonl)"

kill -TERM $AG
rc=0
wait $AG || rc=$?
[ "$rc" = 143 ] || fail "SIGTERM: exit $rc, expected 143 ($(tail -3 err.log))"
# Dovecot's log process writes a moment after the session ends.
for _ in $(seq 1 50); do
    grep -qE "imap\(anna@acme.test\).*Logged out" "$D/dovecot.log" && break
    sleep 0.1
done
n_out=$(grep -cE "imap\(anna@acme.test\).*Logged out" "$D/dovecot.log" || true)
[ "$n_out" -ge 1 ] || fail "the IDLE session did not log out at SIGTERM: $(tail -5 "$D/dovecot.log")"
echo "PASS imap_idle"
