#!/bin/bash
# The inbox engine's deadlines, now kept in the loop's deadline heap (agent/net/loop.c)
# instead of a linked timeout on each recv, against imap_stall_server.py on loopback:
# 1. one `inbox --once` pass over four inboxes on four servers, the greeting timeout
#    (KILN_AGENT_IMAP_TIMEOUT_GREETING_MS) 1 s and the session's command timeout
#    (KILN_AGENT_IMAP_TIMEOUT_SESSION_MS) 2 s: a greeting dripped one byte every 0.3 s is
#    cut 1 s after the connection (the whole reply, not the gap between bytes; the
#    greeting once waited the session timeout, its own knob read for nothing), a LOGIN
#    never answered 2 s after it went out, each reported as its inbox's session event,
#    while the two healthy inboxes beside them finish their visits;
# 2. a kept connection (logged in between polls) whose next poll's STATUS is never
#    answered is cut at the session timeout (1.5 s after the STATUS went out), not at
#    the kept connection's own day-long deadline: a deadline that moves earlier while
#    a recv is pending.
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh" # make_inboxes (no Dovecot is started)
cd "$WORK"
SRV="$HERE/imap_stall_server.py"
declare -A PORT
server() { # name args...
    local name=$1
    shift
    PORT[$name]=$(free_port)
    touch "$WORK/$name.log"
    start_py "$SRV" --port "${PORT[$name]}" --log "$WORK/$name.log" "$@"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# every inbox with stored state for INBOX and Junk: a visit is LOGIN+STATUS, LOGOUT
stored='[{"name":"INBOX","role":"inbox","uidvalidity":1,"last_uid":3},{"name":"Junk","role":"junk","uidvalidity":1,"last_uid":3}]'
export INBOX_FOLDERS_JSON="{\"1\":$stored,\"2\":$stored,\"3\":$stored,\"4\":$stored}"

# 1. deadlines of different connections in one loop
server drip --drip-s 0.3
server login --stall-at LOGIN
server ok1
server ok2
make_inboxes once.json "1:127.0.0.1:${PORT[drip]}:plain:u1:pw:-" \
    "2:127.0.0.1:${PORT[login]}:plain:u2:pw:-" "3:127.0.0.1:${PORT[ok1]}:plain:u3:pw:-" \
    "4:127.0.0.1:${PORT[ok2]}:plain:u4:pw:-"
t0=$(now_ms)
set +e
KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=1000 KILN_AGENT_IMAP_TIMEOUT_SESSION_MS=2000 \
    timeout 30 "$AGENT" inbox --file once.json --once >once.jsonl 2>once.err
rc=$?
set -e
elapsed=$(($(now_ms) - t0))
[ $rc = 3 ] || fail "inbox --once exited $rc (expected 3: two failed logins): $(tail -3 once.err)"
session() { # mailbox_id: its session event
    events once.jsonl "e['type'] == 'session' and e['mailbox_id'] == $1"
}
session 1 | grep -q 'timeout waiting for the server in state greeting' ||
    fail "dripped greeting: expected a greeting timeout, got: $(session 1) $(tail -3 once.err)"
session 2 | grep -q 'timeout waiting for the server in state login' ||
    fail "unanswered LOGIN: expected a login timeout, got: $(session 2) $(tail -3 once.err)"
for id in 3 4; do
    session $id | grep -q '"status":"ok"' || fail "healthy inbox $id: not ok: $(session $id)"
    events once.jsonl "e['type'] == 'folder_state' and e['mailbox_id'] == $id and e['role'] == 'inbox'" |
        grep -q '"last_uid":3' || fail "healthy inbox $id: no folder state for INBOX"
done
[ "$elapsed" -ge 1900 ] || fail "the pass ended after $elapsed ms, before the 2 s LOGIN timeout"
[ "$elapsed" -lt 9000 ] || fail "the pass took $elapsed ms (timeout 2 s)"
gap_ms() { # log from-event: ms from the first "from" to the first "closed" in a server log
    local a b
    a=$(awk -v w="$2" '$2 == w { print $NF; exit }' "$1")
    b=$(awk '$2 == "closed" { print $NF; exit }' "$1")
    [ -n "$a" ] && [ -n "$b" ] || fail "$1: no $2/closed: $(cat "$1")"
    $PY -c "print(int(($b - $a) * 1000))"
}
gap=$(gap_ms drip.log open)
[ "$gap" -ge 900 ] && [ "$gap" -lt 1800 ] ||
    fail "dripped greeting: the agent closed $gap ms after connecting (greeting timeout 1000 ms, session timeout 2000 ms)"
gap2=$(gap_ms login.log stall)
[ "$gap2" -ge 1800 ] && [ "$gap2" -lt 5000 ] ||
    fail "stalled LOGIN: the agent closed $gap2 ms after the LOGIN (timeout 2000 ms)"
echo "ok - greeting drip cut at $gap ms, unanswered LOGIN cut at $gap2 ms, two healthy visits done (pass $elapsed ms)"

# 2. a kept connection's next poll stalls at STATUS: the deadline moves from a day to 1.5 s
server kept --stall-at STATUS --stall-after 2
make_inboxes kept.json "1:127.0.0.1:${PORT[kept]}:plain:u1:pw:-"
KILN_AGENT_IMAP_POLL_MAX_MS=500 KILN_AGENT_IMAP_TIMEOUT_SESSION_MS=1500 \
    KILN_AGENT_IMAP_SERVER_MAX_CONNS=5 \
    timeout 30 "$AGENT" inbox --file kept.json --duration 6 >kept.jsonl 2>kept.err || true
grep -q '^1 stall STATUS' kept.log ||
    fail "the kept connection's second poll never sent its STATUS: $(cat kept.log) $(tail -3 kept.err)"
grep "^1 " kept.log >kept1.log
gap=$(gap_ms kept1.log stall)
[ "$gap" -ge 1300 ] && [ "$gap" -lt 4000 ] ||
    fail "kept connection stalled at STATUS: closed $gap ms after it (command timeout 1500 ms)"
[ "$(grep -c ' open ' kept.log)" -ge 2 ] || fail "no new connection after the cut kept one: $(cat kept.log)"
echo "ok - a kept connection's stalled poll cut $gap ms after its STATUS, the next poll connected again"
echo "PASS imap_deadlines"
