#!/bin/bash
# kiln-agent run and check read one configuration: agent.conf given with --config, the
# engines' knobs in it included, against an IMAP server that drips its greeting
# (imap_stall_server.py), on loopback. No control plane listens at the file's URL: check
# names that as a problem too, and its other lines are what is checked here.
#  1. check takes the file's engine and IMAP knobs as run does: a bad KILN_AGENT_HELO_NAME
#     and a bad KILN_AGENT_IMAP_* value written in the file are problems named by key
#     (check once read only its own keys and called such a file good), and its IMAP login
#     (KILN_AGENT_CHECK_IMAP_* in the file) gives up on the greeting after the file's
#     KILN_AGENT_IMAP_TIMEOUT_GREETING_MS, not after built-in defaults.
# (SIGHUP's reload of the file, against the real control plane: tests/e2e/test_agent_reload.py.)
source "$(dirname "$0")/lib.sh"
cd "$WORK"
API=$(free_port)
DRIP=$(free_port)
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
grep -q "^PROBLEM: IMAP login to anna@127.0.0.1:$DRIP (plain) failed: connect: .*state greeting" imap.out ||
    fail "check's IMAP login: expected a greeting timeout, got: $(cat imap.out)"
# the greeting (about 80 bytes at 0.3 s each) would take 24 s; the file says 0.8 s
[ "$elapsed" -lt 10000 ] ||
    fail "check took $elapsed ms: the file's KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=800 was not used"
echo "ok - check's IMAP login gave up on the greeting after the file's 800 ms (check took $elapsed ms)"

echo "PASS agent_run_config"
