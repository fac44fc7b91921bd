#!/bin/bash
# kiln-agent against misbehaving servers: 421/451/550/535 replies classified as
# deferred/failed/auth, a stall past each phase's timeout, a drop in the middle of
# DATA, a refused connection; a 4xx retried with backoff until sent; the circuit
# breaker stops hammering a dead host; the connect rate limit holds; the per-host
# limits hold for the agent as a whole when several I/O threads share a host.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
SRV="$HERE/script_server.py"
declare -A PORT
server() { # name args...
    local name=$1
    shift
    PORT[$name]=$(free_port)
    start_py "$SRV" --port "${PORT[$name]}" "$@"
}
server greet421 --greeting "421 4.3.2 too busy"
server mail451 --reply MAIL="451 4.3.0 local problem"
server rcpt550 --reply RCPT="550 5.1.1 no such user"
server auth535 --reply AUTH="535 5.7.8 bad credentials"
server drop --drop-in-data
for phase in GREETING EHLO MAIL RCPT DATA DOT; do server "stall$phase" --stall "$phase"; done
server nopipe --caps "SIZE 1000" --stall RCPT
REFUSED=$(free_port)

specs=(
    "1:127.0.0.1:${PORT[greet421]}:plain:-:-:-:1"
    "2:127.0.0.1:${PORT[mail451]}:plain:-:-:-:1"
    "3:127.0.0.1:${PORT[rcpt550]}:plain:-:-:-:1"
    "4:127.0.0.1:${PORT[auth535]}:plain:u:p:-:1"
    "5:127.0.0.1:${PORT[drop]}:plain:-:-:-:1"
    "6:127.0.0.1:$REFUSED:plain:-:-:-:1"
    "11:127.0.0.1:${PORT[stallGREETING]}:plain:-:-:-:1"
    "12:127.0.0.1:${PORT[stallEHLO]}:plain:-:-:-:1"
    "13:127.0.0.1:${PORT[stallMAIL]}:plain:-:-:-:1"
    "14:127.0.0.1:${PORT[stallRCPT]}:plain:-:-:-:1"
    "15:127.0.0.1:${PORT[stallDATA]}:plain:-:-:-:1"
    "16:127.0.0.1:${PORT[stallDOT]}:plain:-:-:-:1"
    "17:127.0.0.1:${PORT[nopipe]}:plain:-:-:-:1"
)
make_jobs jobs.json "${specs[@]}"
start=$(date +%s%N)
KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_TIMEOUT_GREETING_MS=400 KILN_AGENT_TIMEOUT_COMMAND_MS=400 \
    KILN_AGENT_TIMEOUT_DATA_INIT_MS=400 KILN_AGENT_TIMEOUT_DATA_END_MS=400 \
    timeout 30 "$AGENT" send --file jobs.json >res.jsonl 2>err || fail "agent exited $? ($(cat err))"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ "$elapsed_ms" -lt 5000 ] || fail "stalls were not cut by the 400 ms timeouts (took $elapsed_ms ms)"
expect() { # send_id status code detail-substring
    local line
    line=$(grep "\"send_id\":$1," res.jsonl) || fail "no result for $1"
    echo "$line" | grep -q "\"status\":\"$2\"" || fail "send $1: expected $2, got $line"
    [ "$3" = - ] || echo "$line" | grep -q "\"smtp_code\":$3" || fail "send $1: expected code $3, got $line"
    echo "$line" | grep -q "$4" || fail "send $1: expected detail '$4', got $line"
}
expect 1000 deferred 421 "too busy"
expect 2000 deferred 451 "MAIL: local problem"
expect 3000 failed 550 "RCPT: no such user"
expect 4000 auth 535 "bad credentials"
expect 5000 unknown - "connection closed by server after the final dot"
expect 6000 deferred - "Connection refused"
expect 11000 deferred - "state greeting"
expect 12000 deferred - "state ehlo"
expect 13000 deferred - "state mail"
expect 14000 deferred - "state rcpt"
expect 15000 deferred - "state data"
expect 16000 unknown - "state dot.*after the final dot"
expect 17000 deferred - "state rcpt"
grep '"send_id":2000,' res.jsonl | grep -q '"enhanced_code":"4.3.0"' || fail "enhanced code of 451"

# a 4xx is retried with backoff while the lease lasts, and then goes through
server flaky --fail-first 2
make_jobs retry.json "21:127.0.0.1:${PORT[flaky]}:plain:-:-:-:1"
KILN_AGENT_MAX_ATTEMPTS=5 KILN_AGENT_BACKOFF_BASE_MS=100 timeout 30 "$AGENT" send --file retry.json \
    >res2.jsonl 2>err || fail "agent exited $? ($(cat err))"
grep -q '"status":"sent".*"attempts":3' res2.jsonl || fail "retry: $(cat res2.jsonl)"

# circuit breaker: after 3 refused connections the host is left alone until the
# lease runs out (margin set so the lease ends 2 s after start)
specs=()
for i in $(seq 100 119); do specs+=("$i:127.0.0.1:$REFUSED:plain:-:-:-:1"); done
make_jobs breaker.json "${specs[@]}"
KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_BREAKER_THRESHOLD=3 KILN_AGENT_BREAKER_COOLDOWN_MS=60000 \
    KILN_AGENT_LEASE_MARGIN_MS=118000 timeout 30 "$AGENT" send --file breaker.json --threads 1 \
    --host-max-conns 1 >res3.jsonl 2>err || fail "agent exited $? ($(cat err))"
refused=$(grep -c "Connection refused" res3.jsonl || true)
expired=$(grep -c "lease deadline" res3.jsonl || true)
[ "$refused" = 3 ] && [ "$expired" = 17 ] ||
    fail "breaker: expected 3 connection attempts and 17 held back, got $refused and $expired"
# the same with four I/O threads: the breaker is the host's, not each thread's
KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_BREAKER_THRESHOLD=3 KILN_AGENT_BREAKER_COOLDOWN_MS=60000 \
    KILN_AGENT_LEASE_MARGIN_MS=118000 timeout 30 "$AGENT" send --file breaker.json --threads 4 \
    --host-max-conns 1 >res3b.jsonl 2>err || fail "agent exited $? ($(cat err))"
refused=$(grep -c "Connection refused" res3b.jsonl || true)
[ "$refused" = 3 ] || fail "breaker with 4 threads: expected 3 connection attempts, got $refused"

# concurrency cap shared by four threads: at most 2 connections to the host at once
server slow --hold-ms 300 --peak-file "$WORK/peak"
specs=()
for i in $(seq 300 311); do specs+=("$i:127.0.0.1:${PORT[slow]}:plain:-:-:-:1"); done
make_jobs shared.json "${specs[@]}"
timeout 30 "$AGENT" send --file shared.json --threads 4 --host-max-conns 2 >res5.jsonl 2>err ||
    fail "agent exited $? ($(cat err))"
[ "$(count_status res5.jsonl sent)" = 12 ] || fail "shared cap: not all sent: $(cat res5.jsonl)"
[ "$(cat "$WORK/peak")" = 2 ] ||
    fail "shared cap: expected at most (and at the end exactly) 2 connections at once, saw $(cat "$WORK/peak")"

# connect rate: 60/min gives a burst of 10, then one a second
PORT_SINK=$(free_port)
start_sink "$PORT_SINK"
specs=()
for i in $(seq 200 212); do specs+=("$i:127.0.0.1:$PORT_SINK:plain:-:-:-:1"); done
make_jobs rate.json "${specs[@]}"
start=$(date +%s%N)
timeout 30 "$AGENT" send --file rate.json --threads 1 --host-conns-per-min 60 >res4.jsonl 2>err ||
    fail "agent exited $? ($(cat err))"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ "$(count_status res4.jsonl sent)" = 13 ] || fail "rate: not all sent: $(cat res4.jsonl)"
[ "$elapsed_ms" -ge 2500 ] || fail "rate limit not applied: 13 connects in $elapsed_ms ms"
echo "PASS agent_errors"
