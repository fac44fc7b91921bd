#!/usr/bin/env bash
# test_agent_sends_under_the_shipped_seccomp_profile: deploy/seccomp/kiln-agent.json (the
# profile deploy/k8s/agents.yaml names) is compiled with libseccomp and loaded the way
# runc loads it (seccomp_exec.py), then the real kiln-agent runs under it: every slot of
# a job file reaches Postfix smtp-sink on 127.0.0.1 (status sent) and its metrics
# endpoint answers, so the allow list covers the agent's threads, io_uring, DNS and
# sockets. The same profile without the three io_uring syscalls must stop the agent
# with an io_uring error: the filter is really applied, and io_uring is what the
# runtime default lacks.
source "$(dirname "$0")/../agent/lib.sh"
SELF="$(cd "$(dirname "$0")" && pwd)"
PROFILE="$SELF/../../deploy/seccomp/kiln-agent.json"
$PY -c 'import seccomp' 2>/dev/null || skip "python3-seccomp is not installed"
[ -x "$AGENT" ] || fail "no kiln-agent at $AGENT (build first)"
under_profile() { # [--without a,b] -- cmd...: runs cmd under the profile
    $PY "$SELF/seccomp_exec.py" "$PROFILE" "$@"
}
# LeakSanitizer needs ptrace, which the profile refuses (as it should); leaks are the
# other agent tests' business.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

under_profile --check || fail "the profile failed its static checks (above)"

PORT=$(free_port)
start_sink "$PORT"
specs=()
for i in $(seq 1 40); do specs+=("$i:127.0.0.1:$PORT:plain:-:-:-:2"); done
specs+=("900:localhost:$PORT:plain:-:-:-:3")     # through the resolver
specs+=("901:127.0.0.1:$PORT:plain:-:-:-:1:6")   # due in 6 s: time to scrape the metrics
make_jobs "$WORK/jobs.json" "${specs[@]}"
MPORT=$(free_port)
under_profile -- "$AGENT" send --file "$WORK/jobs.json" --threads 2 --concurrency 20 \
    --metrics-port "$MPORT" --metrics-addr 127.0.0.1 >"$WORK/res.jsonl" 2>"$WORK/err" &
APID=$!
PIDS+=("$APID")
wait_port "$MPORT"
$PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics').read().decode())" \
    >"$WORK/metrics" || fail "metrics scrape of the agent under the profile"
grep -q '^kiln_agent_sends_total{status="sent"}' "$WORK/metrics" ||
    fail "metrics text under the profile: $(head -3 "$WORK/metrics")"
wait $APID || fail "kiln-agent under the profile exited $?: $(cat "$WORK/err")"
sent=$(count_status "$WORK/res.jsonl" sent)
[ "$sent" = 84 ] || fail "expected 84 slots sent under the profile, got $sent: $(grep -v '"sent"' "$WORK/res.jsonl" | head -3) $(cat "$WORK/err")"
echo "ok - kiln-agent sent 84/84 slots and served its metrics under the profile"

set +e
under_profile --without io_uring_setup,io_uring_enter,io_uring_register -- \
    "$AGENT" send --file "$WORK/jobs.json" >"$WORK/res2.jsonl" 2>"$WORK/err2"
rc=$?
set -e
[ "$rc" = 1 ] || fail "without io_uring: expected exit 1, got $rc ($(cat "$WORK/err2"))"
grep -q 'kiln-agent: .*io_uring' "$WORK/err2" ||
    fail "without io_uring: expected an io_uring error, got: $(cat "$WORK/err2")"
[ -s "$WORK/res2.jsonl" ] && fail "without io_uring the agent still printed results"
echo "ok - without io_uring_setup/enter/register the agent stops: $(grep -m1 io_uring "$WORK/err2")"
echo "PASS seccomp_profile"
