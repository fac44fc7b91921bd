#!/bin/bash
# kiln-agent send --file (issue 10, item 8), against slow_server.py on loopback:
#  - each result line is written as it happens, not when a progress report or the end
#    of the run flushes stdout;
#  - SIGTERM cancels what has not started, loses no line already decided, and exits
#    128 + 15 within the drain bound;
#  - --helo and KILN_AGENT_HELO_NAME take only a domain name or an address literal
#    (no CR/LF, no spaces); good ones reach the server's EHLO as given;
#  - KILN_AGENT_CONCURRENCY and KILN_AGENT_THREADS are read (a bad value refused by name);
#  - KILN_AGENT_DRY_RUN_MS (the scale simulation's sender, issue 15) reports every slot
#    sent after the latency, labelled, and never opens a connection; a bad value is
#    refused.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
FAST=$(free_port)
STALL=$(free_port)
start_py "$HERE/slow_server.py" --port "$FAST" --log fast.log
start_py "$HERE/slow_server.py" --port "$STALL" --stall GREETING
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# 1. one slot goes out at once, one session hangs at the greeting, one slot is due in
# a minute: the first line must be readable while the run goes on
make_jobs jobs.json "1:127.0.0.1:$FAST:plain:-:-:-:1" "2:127.0.0.1:$STALL:plain:-:-:-:1" \
    "3:127.0.0.1:$FAST:plain:-:-:-:1:60"
"$AGENT" send --file jobs.json --progress-s 60 >res.jsonl 2>err &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
t0=$(now_ms)
while ! grep -q '"send_id":1000,' res.jsonl 2>/dev/null; do
    [ $(($(now_ms) - t0)) -lt 3000 ] || fail "no line for the sent slot after 3 s (stdout held back): $(cat err)"
    sleep 0.05
done
grep '"send_id":1000,' res.jsonl | grep -q '"status":"sent"' || fail "slot 1000: $(cat res.jsonl)"
kill -0 "$AGENT_PID" 2>/dev/null || fail "the run ended early: $(cat err)"

# 2. SIGTERM: the slot not started is cancelled (its line says so), the one under way
# gets the drain bound, every decided line is there, exit 143
kill -TERM "$AGENT_PID"
t0=$(now_ms)
set +e
wait "$AGENT_PID"
rc=$?
set -e
elapsed=$(($(now_ms) - t0))
[ "$rc" = 143 ] || fail "exit code after SIGTERM: expected 143, got $rc ($(cat err))"
[ "$elapsed" -lt 8000 ] || fail "SIGTERM took $elapsed ms"
grep '"send_id":1000,' res.jsonl | grep -q '"status":"sent"' || fail "the sent line was lost: $(cat res.jsonl)"
grep '"send_id":3000,' res.jsonl | grep -q 'cancelled before it started' ||
    fail "the slot not started has no line: $(cat res.jsonl)"
grep -q "interrupted: 1 of 3 slots without a result" err || fail "no interruption note: $(cat err)"
[ "$(grep -c MESSAGE fast.log)" = 1 ] || fail "the fast server got $(grep -c MESSAGE fast.log) messages"

# 3. --helo: bad names refused with a message, exit 2, nothing sent
make_jobs one.json "4:127.0.0.1:$FAST:plain:-:-:-:1"
for bad in "bad name" $'mail.test\r\nMAIL FROM:<x@y>' $'mail.test\n' "-lead.test" "trail-.test" \
    "a..b" ".a" "a.b." "under_score.test" "[1.2.3]" "[IPv6:zz::1]" "[mail.test]" "" \
    "$(printf 'a%.0s' $(seq 1 64)).test"; do
    set +e
    "$AGENT" send --file one.json --helo "$bad" >out 2>err
    rc=$?
    set -e
    [ "$rc" = 2 ] || fail "--helo '$bad': expected exit 2, got $rc"
    grep -q -- "--helo needs a domain name or an address literal" err || fail "--helo '$bad': $(cat err)"
    [ -s out ] && fail "--helo '$bad': printed results"
done
set +e
KILN_AGENT_HELO_NAME=$'x\r\nRSET' "$AGENT" send --file one.json >out 2>err
rc=$?
set -e
[ "$rc" = 2 ] && grep -q KILN_AGENT_HELO_NAME err || fail "bad KILN_AGENT_HELO_NAME: exit $rc, $(cat err)"
# KILN_AGENT_CONCURRENCY and KILN_AGENT_THREADS reach send as they reach run (send ignored
# them): a bad value is refused by name, a good one is taken
for kv in KILN_AGENT_CONCURRENCY=0 KILN_AGENT_THREADS=-1 KILN_AGENT_THREADS=2000; do
    set +e
    env "$kv" "$AGENT" send --file one.json >out 2>err
    rc=$?
    set -e
    [ "$rc" = 2 ] && grep -q "${kv%%=*}" err || fail "bad $kv: exit $rc, $(cat err)"
done
KILN_AGENT_CONCURRENCY=1 KILN_AGENT_THREADS=1 timeout 20 "$AGENT" send --file one.json >out 2>err ||
    fail "KILN_AGENT_CONCURRENCY=1 KILN_AGENT_THREADS=1: exit $? ($(cat err))"
grep -q '"status":"sent"' out || fail "with KILN_AGENT_CONCURRENCY=1: $(cat out)"

# good names go out as given
for good in "mail.example.com" "localhost" "[127.0.0.1]" "[IPv6:::1]" "x-1.b2.test"; do
    : >fast.log
    timeout 20 "$AGENT" send --file one.json --helo "$good" >out 2>err || fail "--helo '$good': exit $? ($(cat err))"
    grep -q '"status":"sent"' out || fail "--helo '$good': $(cat out)"
    grep -qxF "EHLO $good" fast.log || fail "--helo '$good': the server saw $(grep EHLO fast.log)"
done
# 4. dry run: three slots at the fast server, none reaches it; each line says sent and
# dry run; the latency is honoured; bad values are refused
: >fast.log
make_jobs dry.json "5:127.0.0.1:$FAST:plain:-:-:-:3"
t0=$(now_ms)
KILN_AGENT_DRY_RUN_MS=400 timeout 20 "$AGENT" send --file dry.json >out 2>err || fail "dry run: exit $? ($(cat err))"
elapsed=$(($(now_ms) - t0))
[ "$(grep -c '"status":"sent"' out)" = 3 ] || fail "dry run: $(cat out)"
[ "$(grep -c 'dry run: simulated' out)" = 3 ] || fail "dry run lines not labelled: $(cat out)"
[ "$elapsed" -ge 400 ] || fail "dry run took $elapsed ms, under its 400 ms latency"
grep -q "DRY RUN" err || fail "no dry-run banner: $(cat err)"
[ -s fast.log ] && fail "dry run reached the server: $(cat fast.log)"
for bad in -1 abc 600001 "1 0"; do
    set +e
    KILN_AGENT_DRY_RUN_MS="$bad" "$AGENT" send --file dry.json >out 2>err
    rc=$?
    set -e
    [ "$rc" = 2 ] && grep -q KILN_AGENT_DRY_RUN_MS err || fail "KILN_AGENT_DRY_RUN_MS='$bad': exit $rc, $(cat err)"
    [ -s out ] && fail "KILN_AGENT_DRY_RUN_MS='$bad': printed results"
done
echo "ok: send --file writes lines as they come, drains on SIGTERM, checks --helo; dry run sends nothing"
