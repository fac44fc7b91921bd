#!/bin/bash
# The lease loop's inbox half end to end (issues 12/13): `kiln-agent run` with a stand-in
# inbox engine (inbox_fake_engine.c, behind inbox_feed.h) against a stand-in control
# plane (fake_control.py) that grants an inbox lease in every lease answer.
#  1. The control plane refuses every inbox report (503): the engine's events stay in the
#     spool; the agent is SIGKILLed once they have been offered.
#  2. A new agent on the same spool: the control plane takes reports (each checked
#     against api/openapi.yaml). The replayed events arrive exactly as first offered, each
#     action's outcome once (the engine's second outcome was refused, the actions done are
#     not handed to the new engine again), the entry with a bad port is reported as a
#     session event naming the field, heartbeats renew the inbox lease, a drop in a
#     heartbeat answer unwatches that inbox, a later answer listing the same inboxes
#     changes nothing, and SIGTERM stops the engine and releases the lease (exit 0).
#  3. No engine linked: the inbox lease is held, renewed and released, only the bad
#     entry reported.
source "$(dirname "$0")/lib.sh"
$PY -c 'import jsonschema, yaml' 2>/dev/null || skip "python3-jsonschema or python3-yaml missing"
ENGINE="$KILN_BUILD_DIR/tests/agent/inbox_fake_engine"
[ -x "$ENGINE" ] || fail "$ENGINE not built"
cd "$WORK"
LID=6f1c2b7e-0d4a-4e8b-9a51-3c2d1e0f9a88
$PY - inbox.json "$LID" <<'PYEOF'
import json, sys
out, lid = sys.argv[1], sys.argv[2]
def inbox(mid, actions=(), **imap):
    acc = {"host": "imap.acme.test", "port": 993, "security": "tls", "username": "u%d" % mid,
           "password": "pw%d" % mid, "oauth_token": None, "ca_file": None,
           "allow_plaintext_auth": False}
    acc.update(imap)
    return {"mailbox_id": mid, "address": "box%d@acme.test" % mid, "imap": acc,
            "poll_class": "medium", "poll_interval_s": 300, "warmup_folder": "Warmup",
            "folders": [{"name": "INBOX", "role": "inbox", "uidvalidity": 7, "last_uid": 10},
                        {"name": "Junk", "role": "junk", "uidvalidity": 8, "last_uid": 3}],
            "actions": list(actions)}
acts = [{"id": 501, "kind": "rescue", "folder": "Junk", "uidvalidity": 8, "uid": 3, "flags": [],
         "target": "inbox", "not_before_s": 0},
        {"id": 502, "kind": "mark", "folder": "INBOX", "uidvalidity": 7, "uid": 9,
         "flags": ["\\Seen", "\\Flagged"], "target": None, "not_before_s": 0}]
doc = {"inbox_lease": {"lease_id": lid, "ttl_s": 600, "heartbeat_s": 10},
       "inboxes": [inbox(11, acts), inbox(12), inbox(13, port=70000),
                   inbox(14, password=None, oauth_token="ya29.tok")]}
json.dump(doc, open(out, "w"))
PYEOF
echo '{"lease_id":null,"ttl_s":60,"mailboxes":[],"retry_after_s":1,"service":"running"}' >lease.json
API=$(free_port)
mkdir spool
run_agent() { # log: starts the agent with the fake engine in the background (AGENT_PID)
    KILN_API_URL="http://127.0.0.1:$API" KILN_AGENT_TOKEN=test-token-0123456789abcdef \
        KILN_AGENT_SPOOL_DIR="$WORK/spool" KILN_AGENT_NAME=inbox KILN_AGENT_CONCURRENCY=10 \
        KILN_AGENT_THREADS=1 KILN_AGENT_REPORT_INTERVAL_MS=100 KILN_AGENT_HEARTBEAT_S=1 \
        KILN_AGENT_LEASE_IDLE_MAX_S=1 KILN_AGENT_MAX_INBOXES=100 KILN_AGENT_HTTP_ATTEMPTS=1 \
        FAKE_ENGINE_LOG="$WORK/$1.engine" "$ENGINE" >"$1.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
}

# ---- 1: nothing is accepted; the events are offered, then the agent dies ----
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl \
    --inbox-file inbox.json --attempts attempts1.jsonl --calls calls1.log \
    --fail-inbox-reports 1000
CONTROL_PID=${PIDS[-1]}
run_agent one
# 3 good inboxes x (session + 2 found + 2 folder_state) + 2 outcomes + 1 set-aside = 18
taken() { [ -f one.engine ] && [ "$(grep -c -- '-> 0$' one.engine)" -ge 17 ]; }
wait_for 15 taken || fail "the engine's events were not taken: $(cat one.engine 2>/dev/null)"
offered() { [ -f attempts1.jsonl ] && $PY -c '
import json, sys
last = [json.loads(l) for l in open("attempts1.jsonl")][-1]
sys.exit(0 if len(last["inbox_events"]) == 18 else 1)'; }
wait_for 20 offered || fail "all 18 events were never offered: $(tail -c 600 attempts1.jsonl)"
grep -q "^emit action 11 501 -> -1$" one.engine || fail "a second outcome of action 501 was taken: $(grep 501 one.engine)"
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
kill "$CONTROL_PID"
wait "$CONTROL_PID" 2>/dev/null || true

# ---- 2: a new agent on the same spool; the control plane takes reports ----
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl \
    --inbox-file inbox.json --attempts attempts2.jsonl --calls calls2.log --events events.jsonl \
    --schema-root "$KILN_SOURCE_DIR" --schema-errors schema_errors.log --drop-at-heartbeat 2:12
run_agent two
dropped() { [ -f two.engine ] && grep -q "^unwatch 12$" two.engine; }
wait_for 20 dropped || fail "inbox 12 was not unwatched after the drop: $(cat two.engine calls2.log)"
beats() { [ "$(grep -c "heartbeat $LID" calls2.log)" -ge 3 ] && [ "$(grep -c '/api/agent/lease' calls2.log)" -ge 3 ]; }
wait_for 20 beats || fail "fewer than 3 heartbeats of the inbox lease: $(cat calls2.log)"
reported() { [ -f events.jsonl ] && [ "$(wc -l <events.jsonl)" -ge 18 ]; }
wait_for 20 reported || fail "the replayed events were not reported: $(cat two.log)"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent run exited $? after SIGTERM: $(tail -5 two.log)"

[ ! -s schema_errors.log ] || fail "reports off the contract: $(cat schema_errors.log)"
$PY - "$LID" <<'PYEOF' || fail "phase 2 checks (see above); engine log: $(cat two.engine)"
import json, sys
lid = sys.argv[1]
offered = [json.loads(l) for l in open("attempts1.jsonl")][-1]["inbox_events"]
got = [json.loads(l) for l in open("events.jsonl")]
assert all(g["lease_id"] == lid for g in got), got
events = [g["event"] for g in got]
# the replay: what the first agent offered arrives first, the same events in the same order
assert events[:len(offered)] == offered, (events[:3], offered[:3])
outcomes = [e for e in events if e["type"] == "action"]
assert sorted(e["action_id"] for e in outcomes) == [501, 502], outcomes
assert all(e["status"] == "done" for e in outcomes), outcomes
rescue = [e for e in outcomes if e["action_id"] == 501][0]
assert rescue["folder"] == "INBOX" and rescue["uid"] == 100, rescue
bad = [e for e in events if e["type"] == "session" and e["mailbox_id"] == 13]
assert len(bad) >= 1 and bad[0]["status"] == "protocol", bad
assert "inboxes[2].imap.port" in bad[0]["detail"], bad[0]
found = {(e["mailbox_id"], e["folder"], e["uid"]) for e in events if e["type"] == "found"}
assert {(11, "INBOX", 11), (11, "Junk", 4), (12, "INBOX", 11), (14, "Junk", 4)} <= found, found
assert not any(e["mailbox_id"] == 13 and e["type"] != "session" for e in events)
PYEOF
# the new engine was not handed the actions done before the crash, nor an unchanged inbox twice
grep -q "^watch 11 actions= password=set$" two.engine || fail "inbox 11 handed with its done actions: $(grep 'watch 11' two.engine)"
grep -q "^watch 14 actions= password=none$" two.engine || fail "inbox 14 (token) not watched: $(cat two.engine)"
[ "$(grep -c '^watch 11 ' two.engine)" = 1 ] || fail "an unchanged inbox was handed over again: $(grep watch two.engine)"
[ "$(grep -c '^watch 12 ' two.engine)" = 1 ] || fail "a dropped inbox came back: $(grep 'watch 12' two.engine)"
if grep -q '^watch 13' one.engine two.engine; then fail "the bad entry was watched"; fi
grep -q "^stop$" two.engine || fail "SIGTERM did not stop the engine"
grep -q "^unwatch 11$" two.engine || fail "inbox 11 not unwatched at shutdown"
[ "$(grep -c "release $LID" calls2.log)" = 1 ] || fail "the inbox lease was not released once at SIGTERM: $(cat calls2.log)"
[ "$(tail -1 calls2.log)" = "/api/agent/release $LID" ] || fail "the release was not the last call: $(tail -3 calls2.log)"
if grep -q "release $LID" calls1.log; then fail "the first agent released the lease it held"; fi

# ---- 3: no engine linked (what kiln-agent run is until the inbox engine is wired) ----
LID3=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
sed "s/$LID/$LID3/" inbox.json >inbox3.json
API=$(free_port)
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl \
    --inbox-file inbox3.json --calls calls3.log --events events3.jsonl
rm -rf spool && mkdir spool
FAKE_ENGINE_NONE=1 run_agent three
beats3() { [ -f calls3.log ] && [ "$(grep -c "heartbeat $LID3" calls3.log)" -ge 2 ] &&
    [ "$(grep -c "/api/agent/lease" calls3.log)" -ge 3 ]; }
wait_for 15 beats3 || fail "no engine: the inbox lease was not renewed: $(cat calls3.log three.log)"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent run (no engine) exited $? after SIGTERM: $(tail -5 three.log)"
grep -q "no inbox engine is linked" three.log || fail "no warning that nothing is watched"
[ "$(grep -c "release $LID3" calls3.log)" = 1 ] || fail "no engine: the inbox lease was not released: $(cat calls3.log)"
[ ! -s three.engine ] || fail "an engine was called: $(cat three.engine)"
# only the set-aside entry is reported (nothing else is watched), once though every
# answer lists it again
$PY - <<'PYEOF' || fail "no engine: events $(cat events3.jsonl 2>/dev/null)"
import json
evs = [json.loads(l)["event"] for l in open("events3.jsonl")]
assert len(evs) == 1 and evs[0]["type"] == "session" and evs[0]["mailbox_id"] == 13, evs
PYEOF
echo "ok: inbox lease granted, events durable across a crash and replayed as offered, one outcome per action, heartbeats, drop, release; without an engine the lease is held, renewed and released"
