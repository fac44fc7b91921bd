#!/bin/bash
# kiln-agent run with inbox leases (KILN_AGENT_MAX_INBOXES) against a stand-in control
# plane (fake_control.py: every lease answer carries inbox lease "inbox-1" listing one
# high-class inbox, as the control plane lists held inboxes again) and a real Dovecot:
# the session and folder_state events are reported as inbox_events (in batches of two:
# every event arrives once, valid JSON, in order), the inbox idles,
# a message delivered over LMTP comes back as a `found` event within seconds, the
# answers listing the inbox again are merged without a new connection, the inbox lease
# is renewed by heartbeat, a bad inbox entry is set aside by name, an inbox the
# heartbeat's inboxes_dropped names stops (its IDLE session logs out), and SIGTERM
# stops the engine, reports and releases inbox-1.
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dovecot_start
cd "$WORK"
make_inboxes inboxes.json "21:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-:high" \
    "22:127.0.0.1:0:plain:anna@acme.test:s3cret:-:low"
echo '{"lease_id":null,"ttl_s":60,"mailboxes":[],"retry_after_s":1,"service":"running"}' >lease.json
API=$(free_port)
MPORT=$(free_port)
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl \
    --inbox-file inboxes.json --inbox-reports ir.jsonl --requests req.log --inbox-heartbeat-s 1 \
    --drop-file drop.txt
mkdir spool
KILN_API_URL="http://127.0.0.1:$API" KILN_AGENT_TOKEN=test-token-0123456789abcdef \
    KILN_AGENT_SPOOL_DIR="$WORK/spool" KILN_AGENT_NAME=inb KILN_AGENT_THREADS=1 \
    KILN_AGENT_MAX_INBOXES=10 KILN_AGENT_REPORT_INTERVAL_MS=100 KILN_AGENT_REPORT_BATCH=2 KILN_AGENT_LEASE_IDLE_MAX_S=1 \
    KILN_AGENT_METRICS_PORT=$MPORT "$AGENT" run >agent.log 2>&1 &
AG=$!
PIDS+=("$AG")
wait_for() { # what python-expr-over-events seconds
    for _ in $(seq 1 $(($3 * 10))); do
        [ -f ir.jsonl ] && events ir.jsonl "$2" | grep -q . && return 0
        sleep 0.1
    done
    fail "no $1 reported within $3 s: $(cat ir.jsonl 2>/dev/null; tail -5 agent.log)"
}
metric() {
    $PY -c 'import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=2).read().decode()
print(next((l.split()[-1] for l in body.splitlines() if l.startswith(sys.argv[2] + " ")), ""))' \
        "$MPORT" "$1"
}
wait_for "session ok" "e['type']=='session' and e['status']=='ok' and e['mailbox_id']==21" 15
wait_for "folder state" "e['type']=='folder_state' and e['folder']=='INBOX'" 10
for _ in $(seq 1 100); do [ "$(metric kiln_agent_inbox_idle_sessions)" = 1 ] && break; sleep 0.1; done
[ "$(metric kiln_agent_inbox_idle_sessions)" = 1 ] || fail "no IDLE session: $(tail -5 agent.log)"
M=$(kiln_id 3301)
deliver anna@acme.test "$M"
wait_for "found event" "e['type']=='found' and e['message_id']=='$M' and e['role']=='inbox'" 5
sleep 2 # two more lease answers listing the inbox again
[ "$(grep -c '^/api/agent/lease' req.log)" -ge 3 ] || fail "the agent asked for leases $(grep -c '^/api/agent/lease' req.log) times"
[ "$(metric kiln_agent_inbox_polls_total)" = 1 ] ||
    fail "the inbox listed again reconnected: $(metric kiln_agent_inbox_polls_total) connections"
grep -q '^/api/agent/heartbeat inbox-1$' req.log || fail "the inbox lease was never renewed"
[ "$(metric kiln_agent_inbox_events_reported_total)" -ge 4 ] || fail "events reported: $(metric kiln_agent_inbox_events_reported_total)"
grep -q "inbox entries set aside: inboxes\[1\].imap.port" agent.log ||
    fail "the bad inbox entry was not set aside by name: $(grep -i inbox agent.log | tail -3)"
! events ir.jsonl "e['mailbox_id']==22" | grep -q . || fail "events for the bad entry"
# the control plane drops inbox 21 (heartbeat's inboxes_dropped): its IDLE connection
# logs out and nothing of it runs any more
echo 21 >drop.txt
for _ in $(seq 1 100); do
    [ "$(metric 'kiln_agent_inbox_sessions{state="done"}')" = 1 ] && break
    sleep 0.1
done
[ "$(metric 'kiln_agent_inbox_sessions{state="done"}')" = 1 ] &&
    [ "$(metric kiln_agent_inbox_idle_sessions)" = 0 ] ||
    fail "inbox 21 still watched after inboxes_dropped: $(tail -3 agent.log)"
grep -qE "imap\(anna@acme.test\).*Logged out" "$D/dovecot.log" ||
    fail "the dropped inbox's IDLE session did not log out"
$PY - ir.jsonl <<'PYEOF' || fail "the reported events: $(cat ir.jsonl)"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert ev[0]["type"] == "session", ev[0]
keys = [json.dumps(e, sort_keys=True) for e in ev]
assert len(keys) == len(set(keys)), "an event reported twice"
PYEOF
kill -TERM "$AG"
rc=0
for _ in $(seq 1 150); do kill -0 "$AG" 2>/dev/null || break; sleep 0.1; done
wait "$AG" || rc=$?
[ "$rc" = 0 ] || fail "run after SIGTERM: exit $rc ($(tail -5 agent.log))"
grep -q '^/api/agent/release inbox-1$' req.log || fail "inbox-1 was not released: $(tail -5 agent.log)"
echo "PASS inbox_lease_run"
