#!/bin/bash
# kiln-agent run and check read one configuration: agent.conf given with --config, the
# engines' knobs in it included, against a stand-in control plane (fake_control.py) and
# an IMAP server that drips its greeting (imap_stall_server.py), on loopback.
#  1. check takes the file's engine and IMAP knobs as run does: a bad KILN_AGENT_HELO_NAME
#     and a bad KILN_AGENT_IMAP_* value written in the file are problems named by key
#     (check once read only its own keys and called such a file good), and its IMAP login
#     (KILN_AGENT_CHECK_IMAP_* in the file) gives up on the greeting after the file's
#     KILN_AGENT_IMAP_TIMEOUT_GREETING_MS, not after built-in defaults.
#  2. SIGHUP applies the edited file: the report batch changes at once (the values of
#     the start no longer win over the file), while KILN_AGENT_CONCURRENCY, raising
#     KILN_AGENT_MAX_INBOXES from 0 and an engine knob (KILN_AGENT_HELO_NAME) are each
#     named in a log line as needing a restart and keep their running value: the lease
#     requests after the reload still ask for no inbox. SIGTERM then exits 0.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
API=$(free_port)
DRIP=$(free_port)
echo '{"lease_id":null,"ttl_s":60,"mailboxes":[],"retry_after_s":1,"service":"running"}' >lease.json
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl \
    --calls calls.log
touch drip.log
start_py "$HERE/imap_stall_server.py" --port "$DRIP" --log drip.log --drip-s 0.3
echo test-token-0123456789abcdef >agent.token
mkdir spool
base_conf() { # the keys every configuration here shares
    cat <<EOF
# kiln-agent test configuration
KILN_API_URL=http://127.0.0.1:$API
KILN_AGENT_TOKEN_FILE=$WORK/agent.token
KILN_AGENT_SPOOL_DIR=$WORK/spool
KILN_AGENT_THREADS=1
KILN_AGENT_LEASE_IDLE_MAX_S=1
KILN_AGENT_HTTP_ATTEMPTS=1
EOF
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- 1: check reads the file's engine and IMAP knobs ----
{
    base_conf
    echo 'KILN_AGENT_HELO_NAME=not a host name'
    echo 'KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=soon'
    echo "KILN_AGENT_CHECK_IMAP_HOST=127.0.0.1"
    echo "KILN_AGENT_CHECK_IMAP_PORT=$DRIP"
    echo "KILN_AGENT_CHECK_IMAP_SECURITY=plain"
    echo "KILN_AGENT_CHECK_IMAP_USER=anna"
    echo "KILN_AGENT_CHECK_IMAP_PASSWORD=s3cret"
} >bad.conf
rc=0
timeout 60 "$AGENT" check --config bad.conf >bad.out 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "check of a file with bad engine knobs exited $rc, expected 1: $(cat bad.out)"
grep -q "^PROBLEM: SMTP engine settings: .*KILN_AGENT_HELO_NAME" bad.out ||
    fail "check did not name the file's bad KILN_AGENT_HELO_NAME: $(cat bad.out)"
grep -q "^PROBLEM: IMAP login to anna@127.0.0.1:$DRIP (plain) not tried: KILN_AGENT_IMAP_TIMEOUT_GREETING_MS" bad.out ||
    fail "check did not name the file's bad KILN_AGENT_IMAP_TIMEOUT_GREETING_MS: $(cat bad.out)"
! grep -q "s3cret" bad.out || fail "check printed the IMAP password: $(cat bad.out)"
echo "ok - check names a bad KILN_AGENT_HELO_NAME and KILN_AGENT_IMAP_* value written in the file"

{
    base_conf
    echo "KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=800"
    echo "KILN_AGENT_CHECK_IMAP_HOST=127.0.0.1"
    echo "KILN_AGENT_CHECK_IMAP_PORT=$DRIP"
    echo "KILN_AGENT_CHECK_IMAP_SECURITY=plain"
    echo "KILN_AGENT_CHECK_IMAP_USER=anna"
    echo "KILN_AGENT_CHECK_IMAP_PASSWORD=s3cret"
} >imap.conf
t0=$(now_ms)
rc=0
timeout 60 "$AGENT" check --config imap.conf >imap.out 2>&1 || rc=$?
elapsed=$(($(now_ms) - t0))
[ "$rc" = 1 ] || fail "check against a greeting that never ends exited $rc, expected 1: $(cat imap.out)"
grep -q "^ok: *the control plane accepts the agent token\|^ok: *control plane at http://127.0.0.1:$API answers" imap.out ||
    fail "check did not reach the stand-in control plane: $(cat imap.out)"
grep -q "^PROBLEM: IMAP login to anna@127.0.0.1:$DRIP (plain) failed: connect: .*state greeting" imap.out ||
    fail "check's IMAP login: expected a greeting timeout, got: $(cat imap.out)"
# the greeting (about 80 bytes at 0.3 s each) would take 24 s; the file says 0.8 s
[ "$elapsed" -lt 10000 ] ||
    fail "check took $elapsed ms: the file's KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=800 was not used"
echo "ok - check's IMAP login gave up on the greeting after the file's 800 ms (check took $elapsed ms)"

# ---- 2: SIGHUP applies the edited file; what needs a restart is named and kept ----
{
    base_conf
    echo "KILN_AGENT_CONCURRENCY=10"
    echo "KILN_AGENT_REPORT_BATCH=100"
    echo "KILN_AGENT_MAX_INBOXES=0"
    echo "KILN_AGENT_HELO_NAME=a.example"
} >agent.conf
"$AGENT" run --config agent.conf >run.log 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
leases() { grep -c '^/api/agent/lease ' calls.log 2>/dev/null || true; }
leases_at_least() { [ "$(leases)" -ge "$1" ]; }
wait_for 20 grep -q "running as" run.log || fail "the agent did not start: $(tail -5 run.log)"
wait_for 10 leases_at_least 1 || fail "no lease request: $(tail -5 run.log)"
{
    base_conf
    echo "KILN_AGENT_CONCURRENCY=20"
    echo "KILN_AGENT_REPORT_BATCH=7"
    echo "KILN_AGENT_MAX_INBOXES=5"
    echo "KILN_AGENT_HELO_NAME=b.example"
} >agent.conf
before=$(leases)
kill -HUP "$AGENT_PID"
wait_for 10 grep -q "configuration reloaded" run.log ||
    fail "SIGHUP did not reload: $(tail -5 run.log)"
expect_log() { # pattern what
    grep -q -- "$1" run.log || fail "$2: expected a log line matching '$1': $(grep SIGHUP run.log)"
}
expect_log "configuration reloaded (report batch 7, max inboxes 0; 3 changed settings wait for a restart)" \
    "the edited file's report batch did not apply at once"
expect_log "SIGHUP: KILN_AGENT_CONCURRENCY=20 needs a restart (.*); keeping 10" "concurrency"
expect_log "SIGHUP: KILN_AGENT_MAX_INBOXES=5 needs a restart (.*); keeping 0" "max inboxes"
expect_log "SIGHUP: KILN_AGENT_HELO_NAME=b.example needs a restart (.*); keeping a.example" \
    "an engine knob"
wait_for 10 leases_at_least $((before + 2)) || fail "no lease request after the reload: $(cat calls.log) $(tail -5 run.log)"
after=$(tail -n +$((before + 1)) calls.log | grep '^/api/agent/lease ')
! echo "$after" | grep -q "max_inboxes=5" ||
    fail "the agent asked for inboxes it has no engine to watch: $after"
kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM after the reload: exit $rc: $(tail -5 run.log)"
echo "ok - SIGHUP applied the file's report batch; concurrency, max inboxes 0 -> 5 and HELO name named and kept until a restart"
echo "PASS agent_run_config"
