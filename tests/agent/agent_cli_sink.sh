#!/bin/bash
# kiln-agent against Postfix smtp-sink (plain SMTP on loopback): every slot sent,
# one JSON line per slot in the DESIGN.md shape, sessions carrying several slots,
# host names through the resolver, metrics on 127.0.0.1, --version, and bad input
# files rejected with exit code 2.
source "$(dirname "$0")/lib.sh"

"$AGENT" --version | grep -Eq '^kiln-agent [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version output"

# bad input: exit 2 and a message, never a crash
printf '{"mailboxes":[{"id":1}]}' >"$WORK/bad1.json"
printf 'not json' >"$WORK/bad2.json"
printf '' >"$WORK/bad3.json"
printf '{"mailboxes":[{"id":1,"address":"a@b","smtp":{"host":"h","port":99999,"security":"plain"},"sends":[]}]}' >"$WORK/bad4.json"
head -c 3000 /dev/urandom >"$WORK/bad5.json"
for f in bad1 bad2 bad3 bad4 bad5 missing; do
    set +e
    "$AGENT" send --file "$WORK/$f.json" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    set -e
    [ $rc = 2 ] || fail "$f.json: expected exit 2, got $rc ($(cat "$WORK/err"))"
    grep -q "kiln-agent: " "$WORK/err" || fail "$f.json: no error message"
    [ -s "$WORK/out" ] && fail "$f.json: printed results"
done
set +e
"$AGENT" send >/dev/null 2>&1
[ $? = 2 ] || fail "send without --file must exit 2"
"$AGENT" send --file x --concurrency abc >/dev/null 2>&1
[ $? = 2 ] || fail "bad --concurrency must exit 2"
set -e

PORT=$(free_port)
start_sink "$PORT"
specs=()
for i in $(seq 1 300); do specs+=("$i:127.0.0.1:$PORT:plain:-:-:-:1"); done
specs+=("900:localhost:$PORT:plain:-:-:-:3")  # one session with three slots, via DNS
make_jobs "$WORK/jobs.json" "${specs[@]}"
timeout 60 "$AGENT" send --file "$WORK/jobs.json" --concurrency 50 --threads 2 --host-conns-per-min 1000000 \
    >"$WORK/res.jsonl" 2>"$WORK/err" || fail "agent exited $? ($(cat "$WORK/err"))"
lines=$(wc -l <"$WORK/res.jsonl")
[ "$lines" = 303 ] || fail "expected 303 result lines, got $lines"
sent=$(count_status "$WORK/res.jsonl" sent)
[ "$sent" = 303 ] || fail "expected 303 sent, got $sent: $(grep -v '"sent"' "$WORK/res.jsonl" | head -3)"
$PY - "$WORK/res.jsonl" <<'PYEOF' || fail "result lines do not match the wire shape"
import json, sys
ids = set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    for k in ("send_id", "status", "smtp_code", "enhanced_code", "detail", "latency_ms"):
        assert k in r, (k, r)
    assert r["smtp_code"] == 250 and isinstance(r["latency_ms"], int), r
    ids.add(r["send_id"])
want = {i * 1000 for i in range(1, 301)} | {900000, 900001, 900002}
assert ids == want, want ^ ids
PYEOF

# metrics: a slot due in 6 s keeps the agent alive while we scrape it (two Python
# start-ups on a loaded box took most of 2 s)
MPORT=$(free_port)
make_jobs "$WORK/later.json" "1:127.0.0.1:$PORT:plain:-:-:-:1:6"
timeout 30 "$AGENT" send --file "$WORK/later.json" --metrics-port "$MPORT" >"$WORK/res2" 2>&1 &
APID=$!
PIDS+=($APID)
wait_port "$MPORT"
$PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics').read().decode())" >"$WORK/metrics" ||
    fail "metrics scrape"
grep -q '^kiln_agent_sends_total{status="sent"} 0' "$WORK/metrics" || fail "metrics text: $(head -5 "$WORK/metrics")"
grep -q '^kiln_agent_send_latency_seconds_bucket{le="+Inf"}' "$WORK/metrics" || fail "latency histogram"
wait $APID || fail "agent with metrics exited non-zero"
grep -q '"status":"sent"' "$WORK/res2" || fail "delayed slot not sent: $(cat "$WORK/res2")"
echo "PASS agent_cli_sink"
