#!/bin/bash
# Kept connections (KILN_AGENT_IMAP_KEEP, default on) against a real Dovecot:
# 1. three medium-class inboxes polled every 0.5 s under a cap that holds them all: each
#    logs in once (Dovecot's log) while polls go on on the kept connections
#    (kiln_agent_inbox_kept_visits_total), and mail delivered meanwhile is found;
# 2. a kept connection Dovecot closes between polls (doveadm kick) is seen as closed
#    (kiln_agent_inbox_kept_closed_total), the next poll logs in again and finds what
#    was delivered after the kick;
# 3. under a cap of 2 for three inboxes the least recently used kept connection is logged
#    out for the one that waits (kiln_agent_inbox_kept_evicted_total) and all three
#    inboxes find their new message.
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh"
specs=()
for i in 1 2 3; do
    dovecot_user "u$i@acme.test" "pw$i"
    specs+=("$i:127.0.0.1:$IMAP_PORT:plain:u$i@acme.test:pw$i:-:medium")
done
dovecot_start
cd "$WORK"
make_inboxes in.json "${specs[@]}"

logins() { # user: LOGINs Dovecot logged for it
    grep -c "imap-login: .*Login: user=<$1>" "$D/dovecot.log" || true
}

run_agent() { # cap duration: the agent in the background, its metrics port in MPORT
    KILN_AGENT_IMAP_SERVER_MAX_CONNS=$1 KILN_AGENT_IMAP_POLL_MAX_MS=500 \
        "$AGENT" inbox --file in.json --duration "$2" --metrics-port 0 >ev.jsonl 2>err.log &
    AG=$!
    PIDS+=($AG)
    MPORT=$(metrics_port err.log) || fail "no metrics port: $(cat err.log)"
}

metric() { # name{labels} (curl: a python per sample is too slow on a loaded box)
    curl -s --max-time 2 "http://127.0.0.1:$MPORT/metrics" |
        awk -v n="$1" '$1 == n { v = $2 } END { print v == "" ? 0 : v }'
}

wait_metric() { # name min seconds
    for _ in $(seq 1 $(($3 * 10))); do
        [ "$(metric "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 is $(metric "$1") after $3 s (expected >= $2): $(tail -3 err.log)"
}

wait_found() { # message-id seconds
    for _ in $(seq 1 $(($2 * 10))); do
        grep -qF "\"message_id\":\"$1\"" ev.jsonl && return 0
        sleep 0.1
    done
    fail "$1 not found within $2 s"
}

# 1. reuse
run_agent 3 30
polls() { echo $(($(metric kiln_agent_inbox_polls_total) + $(metric kiln_agent_inbox_kept_visits_total))); }
for _ in $(seq 1 100); do [ "$(polls)" -ge 6 ] && break; sleep 0.1; done
[ "$(polls)" -ge 6 ] || fail "fewer than 6 polls in 10 s: $(tail -3 err.log)"
for i in 1 2 3; do
    [ "$(logins "u$i@acme.test")" = 1 ] ||
        fail "u$i logged in $(logins "u$i@acme.test") times in $(polls) polls (expected once: its connection kept)"
done
M1=$(kiln_id 61)
deliver u1@acme.test "$M1"
wait_found "$M1" 5
[ "$(logins u1@acme.test)" = 1 ] || fail "u1 logged in again to find the new message"
echo "ok - 3 inboxes, one login each, $(metric kiln_agent_inbox_kept_visits_total) polls on kept connections"

# 2. a kept connection the server closed
closed=0
for _ in 1 2 3; do # (a kick that lands during a poll is a dropped poll, not a kept close)
    c0=$(metric kiln_agent_inbox_kept_closed_total)
    "${DC_AS[@]}" doveadm -c "$D/dovecot.conf" kick u2@acme.test >/dev/null 2>&1 ||
        fail "doveadm kick failed"
    for _ in $(seq 1 30); do
        [ "$(metric kiln_agent_inbox_kept_closed_total)" -gt "$c0" ] && closed=1 && break
        sleep 0.1
    done
    [ $closed = 1 ] && break
done
[ $closed = 1 ] || fail "the kicked kept connection was not seen closed: $(tail -3 err.log)"
M2=$(kiln_id 62)
deliver u2@acme.test "$M2"
wait_found "$M2" 5
[ "$(logins u2@acme.test)" -ge 2 ] || fail "u2 did not log in again after the kick"
kill -TERM $AG
wait $AG || true
echo "ok - a kept connection closed by Dovecot: seen, logged in again, $M2 found"

# 3. eviction under the cap
run_agent 2 30
wait_metric kiln_agent_inbox_kept_evicted_total 1 15
declare -A mids
for i in 1 2 3; do mids[$i]=$(kiln_id $((70 + i))); done
$PY - "$LMTP_PORT" "${mids[1]}" "${mids[2]}" "${mids[3]}" <<'PYEOF' || fail "LMTP delivery failed"
import smtplib, sys
with smtplib.LMTP("127.0.0.1", int(sys.argv[1])) as lmtp:
    for i, mid in enumerate(sys.argv[2:], 1):
        lmtp.sendmail("bob@other.test", ["u%d@acme.test" % i],
                      "From: bob@other.test\r\nSubject: hi\r\nMessage-ID: %s\r\n\r\nhello\r\n" % mid)
PYEOF
for i in 1 2 3; do wait_found "${mids[$i]}" 10; done
kill -TERM $AG
wait $AG || true
echo "ok - cap 2 for 3 inboxes: $(grep -c . ev.jsonl) events, kept connections evicted, 3 of 3 found"
echo "PASS imap_keep"
