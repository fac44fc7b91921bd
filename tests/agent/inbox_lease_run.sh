#!/bin/bash
# kiln-agent run with inbox leases (KILN_AGENT_MAX_INBOXES) and the REAL inbox engine
# (agent/inbox/ behind inbox_feed.h: lease/inbox_feed_imap.c) against a stand-in control
# plane (fake_control.py: every lease answer carries one inbox lease listing one
# high-class inbox and one bad entry, as the control plane lists held inboxes again) and
# a real Dovecot: the session and folder_state events go through the spool and are
# reported as inbox_events (in batches of two: every event arrives once, valid JSON, in
# order), the inbox idles, a message delivered over LMTP comes back as a `found` event
# within seconds, the answers listing the inbox again are merged without a new
# connection, the inbox lease is renewed by heartbeat, the bad entry is set aside by
# name (one session event, protocol), an inbox the heartbeat's inboxes_dropped names
# stops (its IDLE session logs out), and SIGTERM stops the engine, reports and releases
# the inbox lease. (agent_inbox_lease covers the loop's spool, replay and refusals with a
# stand-in engine; this test, the real engine under the loop.)
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dovecot_start
cd "$WORK"
make_inboxes list.json "21:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-:high" \
    "22:127.0.0.1:0:plain:anna@acme.test:s3cret:-:low"
LID=5b0c7a1e-3f2d-4c6b-8e9a-0d1c2b3a4f5e
$PY -c 'import json, sys
print(json.dumps({"inbox_lease": {"lease_id": sys.argv[2], "ttl_s": 1800, "heartbeat_s": 10},
                  "inboxes": json.load(open(sys.argv[1]))}))' list.json "$LID" >inboxes.json
echo '{"lease_id":null,"ttl_s":60,"mailboxes":[],"retry_after_s":1,"service":"running"}' >lease.json
API=$(free_port)
MPORT=$(free_port)
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl \
    --inbox-file inboxes.json --events ev.jsonl --calls req.log --drop-file drop.txt
mkdir spool
KILN_API_URL="http://127.0.0.1:$API" KILN_AGENT_TOKEN=test-token-0123456789abcdef \
    KILN_AGENT_SPOOL_DIR="$WORK/spool" KILN_AGENT_NAME=inb KILN_AGENT_THREADS=1 \
    KILN_AGENT_MAX_INBOXES=10 KILN_AGENT_HEARTBEAT_S=1 KILN_AGENT_REPORT_INTERVAL_MS=100 KILN_AGENT_REPORT_BATCH=2 KILN_AGENT_LEASE_IDLE_MAX_S=1 \
    KILN_AGENT_METRICS_PORT=$MPORT "$AGENT" run >agent.log 2>&1 &
AG=$!
PIDS+=("$AG")
sync_ir() { # ir.jsonl: the events the control plane took, one InboxEvent a line
    [ -f ev.jsonl ] || return 0
    $PY -c 'import json, sys
for l in open(sys.argv[1]): print(json.dumps(json.loads(l)["event"], separators=(",", ":")))' \
        ev.jsonl >ir.jsonl
}
wait_for() { # what python-expr-over-events seconds
    for _ in $(seq 1 $(($3 * 10))); do
        sync_ir
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
for _ in $(seq 1 150); do grep -q "^/api/agent/heartbeat $LID$" req.log && break; sleep 0.1; done
grep -q "^/api/agent/heartbeat $LID$" req.log || fail "the inbox lease was never renewed"
[ "$(metric kiln_agent_inbox_events_reported_total)" -ge 4 ] || fail "events reported: $(metric kiln_agent_inbox_events_reported_total)"
grep -q "inbox 22 not watched, its entry is invalid: inboxes\[1\].imap.port" agent.log ||
    fail "the bad inbox entry was not set aside by name: $(grep -i inbox agent.log | tail -3)"
sync_ir
[ "$(events ir.jsonl "e['mailbox_id']==22" | wc -l)" = 1 ] &&
    events ir.jsonl "e['mailbox_id']==22 and e['type']=='session' and e['status']=='protocol' and 'imap.port' in e['detail']" | grep -q . ||
    fail "the bad entry: not one session event (protocol) naming imap.port: $(grep '"mailbox_id":22' ir.jsonl)"
# the control plane drops inbox 21 (heartbeat's inboxes_dropped): its IDLE connection
# logs out and nothing of it runs any more
echo 21 >drop.txt
for _ in $(seq 1 150); do
    [ "$(metric 'kiln_agent_inbox_sessions{state="done"}')" = 1 ] && break
    sleep 0.1
done
[ "$(metric 'kiln_agent_inbox_sessions{state="done"}')" = 1 ] &&
    [ "$(metric kiln_agent_inbox_idle_sessions)" = 0 ] ||
    fail "inbox 21 still watched after inboxes_dropped: $(tail -3 agent.log)"
for _ in $(seq 1 50); do # Dovecot's log process writes a moment after the session ends
    grep -qE "imap\(anna@acme.test\).*Logged out" "$D/dovecot.log" && break
    sleep 0.1
done
grep -qE "imap\(anna@acme.test\).*Logged out" "$D/dovecot.log" ||
    fail "the dropped inbox's IDLE session did not log out"
sync_ir
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
grep -q "^/api/agent/release $LID$" req.log || fail "the inbox lease was not released: $(tail -5 agent.log)"
echo "PASS inbox_lease_run"
