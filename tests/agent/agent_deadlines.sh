#!/bin/bash
# kiln-agent deadlines that hold (issue 10, item 3), against slow_server.py on loopback:
#  - a greeting dripped one byte every 0.5 s ends deferred within the greeting timeout
#    (a reply's timeout covers the whole reply, not the gap between two bytes);
#  - a slot due at 3600 s in a 10 s lease is returned at once, not waited for;
#  - a 6 MB message to a server that reads it slowly but steadily is sent under a 2 s
#    end-of-data timeout (that timer starts once the peer has the final dot), while an
#    upload the server stops reading ends deferred under the data-block timeout;
#  - a session stalled at MAIL is cut at the lease deadline;
#  - no payload and no new MAIL starts past the lease deadline minus the margin.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
SRV="$HERE/slow_server.py"
declare -A PORT
server() { # name args...
    local name=$1
    shift
    PORT[$name]=$(free_port)
    start_py "$SRV" --port "${PORT[$name]}" --log "$WORK/$name.log" "$@"
    touch "$WORK/$name.log"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# run name timeout-s env... -- agent args: runs kiln-agent send, keeps res/err/elapsed
run() {
    local name=$1 limit=$2
    shift 2
    local envs=()
    while [ "$1" != -- ]; do
        envs+=("$1")
        shift
    done
    shift
    local t0
    t0=$(now_ms)
    set +e
    env "${envs[@]}" timeout "$limit" "$AGENT" send "$@" >"$name.jsonl" 2>"$name.err"
    local rc=$?
    set -e
    ELAPSED=$(($(now_ms) - t0))
    [ $rc = 0 ] || fail "$name: agent exited $rc after $ELAPSED ms ($(tail -3 "$name.err"))"
}
expect() { # file send_id status detail-substring
    local line
    line=$(grep "\"send_id\":$2," "$1") || fail "$1: no result for $2"
    echo "$line" | grep -q "\"status\":\"$3\"" || fail "$1: send $2: expected $3, got $line"
    echo "$line" | grep -q "$4" || fail "$1: send $2: expected detail '$4', got $line"
}

# 1. dripped greeting: one byte every 0.5 s must not keep the session alive
server drip --drip-s 0.5
make_jobs drip.json "1:127.0.0.1:${PORT[drip]}:plain:-:-:-:1"
run drip 15 KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_TIMEOUT_GREETING_MS=2000 -- --file drip.json
expect drip.jsonl 1000 deferred "state greeting"
[ "$ELAPSED" -lt 4500 ] || fail "dripped greeting: ended after $ELAPSED ms, greeting timeout 2000 ms"

# 2. a slot due long after the lease's end is returned at once
server fast
JOBS_TTL_S=10 make_jobs far.json "2:127.0.0.1:${PORT[fast]}:plain:-:-:-:1:3600" \
    "3:127.0.0.1:${PORT[fast]}:plain:-:-:-:1"
run far 15 -- --file far.json
expect far.jsonl 2000 deferred "not sent: due after the lease deadline"
expect far.jsonl 3000 sent "Ok"
[ "$ELAPSED" -lt 3000 ] || fail "slot at 3600 s in a 10 s lease: took $ELAPSED ms"

# 3. a 6 MB message read at ~1.5 MB/s through a 64 KiB window: about 4 s of upload,
# then the end-of-data timer (2 s) starts once the server has every byte
$PY - big.json "${PORT[fast]}" <<'PYEOF'
import json, sys
out, port = sys.argv[1], int(sys.argv[2])
body = ("0123456789" * 7 + "abcdef\n") * (6 * 1024 * 1024 // 77)
json.dump({"lease_id": "big", "ttl_s": 120, "mailboxes": [
    {"id": 4, "address": "big@acme.test", "display_name": "B",
     "smtp": {"host": "127.0.0.1", "port": port, "security": "plain"},
     "sends": [{"id": 4000, "not_before_s": 0, "to": "r@other.test", "subject": "big",
                "body": body}]}]}, open(out, "w"))
PYEOF
server slowread --read-rate 1500000 --rcvbuf 65536
sed "s/\"port\": ${PORT[fast]}/\"port\": ${PORT[slowread]}/" big.json >slow.json
run slow 60 KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_TIMEOUT_DATA_END_MS=2000 -- --file slow.json
expect slow.jsonl 4000 sent "Ok"
[ "$ELAPSED" -gt 2500 ] || fail "the slow reader took only $ELAPSED ms: the test proves nothing"
grep -Eq '^MESSAGE [0-9]{7}$' slowread.log || fail "slow reader: $(cat slowread.log)"
[ "$(grep -c MESSAGE slowread.log)" = 1 ] || fail "slow reader got $(grep -c MESSAGE slowread.log) copies"

# 3b. a server that stops reading mid-message: the upload's progress timer ends it,
# deferred (the final dot never left: no `unknown`, retried on the next attempt)
server stopread --read-stop 200000 --rcvbuf 65536
sed "s/\"port\": ${PORT[fast]}/\"port\": ${PORT[stopread]}/" big.json >stop.json
run stop 30 KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_TIMEOUT_DATA_BLOCK_MS=1500 \
    KILN_AGENT_TIMEOUT_DATA_END_MS=60000 -- --file stop.json
expect stop.jsonl 4000 deferred "timeout sending the message"
[ "$ELAPSED" -lt 8000 ] || fail "stalled upload: ended after $ELAPSED ms (data block 1500 ms)"

# 4. a session stalled at MAIL is cut at the lease deadline (4 s), not after the
# 300 s command timeout
server stallmail --stall MAIL
JOBS_TTL_S=4 make_jobs cut.json "5:127.0.0.1:${PORT[stallmail]}:plain:-:-:-:1"
run cut 20 KILN_AGENT_LEASE_MARGIN_MS=1000 -- --file cut.json
expect cut.jsonl 5000 deferred "lease deadline reached in state mail"
[ "$ELAPSED" -ge 3500 ] && [ "$ELAPSED" -lt 6500 ] ||
    fail "session at MAIL: cut after $ELAPSED ms, the lease deadline was at 4000 ms"

# 5. the 354 comes after the start limit (deadline 6 s - margin 4 s = 2 s): the payload
# is not sent, the server never sees a message
server late354 --delay DATA=3
JOBS_TTL_S=6 make_jobs late.json "6:127.0.0.1:${PORT[late354]}:plain:-:-:-:1"
run late 20 KILN_AGENT_LEASE_MARGIN_MS=4000 -- --file late.json
expect late.jsonl 6000 deferred "lease deadline reached before the data"
grep -q MESSAGE late354.log && fail "a payload went out past the lease's start limit: $(cat late354.log)"

# 6. the first message's reply comes after the start limit: the second transaction
# (same session) does not begin; the first counts as sent
server latedot --delay DOT=3
JOBS_TTL_S=6 make_jobs two.json "7:127.0.0.1:${PORT[latedot]}:plain:-:-:-:2"
run two 20 KILN_AGENT_LEASE_MARGIN_MS=4000 -- --file two.json
expect two.jsonl 7000 sent "Ok"
expect two.jsonl 7001 deferred "not sent: lease deadline reached"
[ "$(grep -c MAIL latedot.log)" = 1 ] || fail "a MAIL went out past the start limit: $(cat latedot.log)"
echo "ok: deadlines hold"
