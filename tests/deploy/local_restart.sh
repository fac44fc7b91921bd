#!/usr/bin/env bash
# test_local_stack_restarts_a_dead_kiln_api: runs under tests/lib/with_stack.sh. The
# local stack's kiln-api under its restart loop (STACK_API_RESTART=1, as `make up` runs
# it): killed with SIGSEGV it comes back with a new pid and serves through nginx again,
# the restart is logged under var/log/, and stack_api_down (what `make down` calls)
# stops both the loop and kiln-api, which then stay down.
. "$KILN_SOURCE_DIR/tests/deploy/lib.sh"
: "${KILN_STACK_VAR:?run me through tests/lib/with_stack.sh}"
# shellcheck source=../../deploy/local/stack.sh
source "$KILN_SOURCE_DIR/deploy/local/stack.sh"
source "$KILN_STACK_VAR/stack.env"
stack_init "$KILN_STACK_VAR" "$KILN_BUILD_DIR" "$STACK_HTTP_PORT" >/dev/null
run=$KILN_STACK_VAR/run
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$STACK_URL/healthz")" = 200 ]; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

stack_api_down
STACK_API_RESTART=1 stack_api_up || fail "stack_api_up under the restart loop did not start kiln-api"
loop=$(cat "$run/kiln-api-supervisor.pid" 2>/dev/null || true)
pid1=$(cat "$run/kiln-api.pid")
alive "$loop" || fail "the restart loop is not running"
alive "$pid1" || fail "kiln-api is not running"
for i in $(seq 1 50); do healthy && break; sleep 0.1; done
healthy || fail "GET /healthz through nginx: kiln-api under the loop does not answer"
ok "kiln-api runs under the restart loop (loop $loop, kiln-api $pid1)"

kill -SEGV "$pid1"
pid2=""
for i in $(seq 1 150); do
    pid2=$(cat "$run/kiln-api.pid" 2>/dev/null || true)
    [ -n "$pid2" ] && [ "$pid2" != "$pid1" ] && alive "$pid2" && healthy && break
    sleep 0.1
done
[ -n "$pid2" ] && [ "$pid2" != "$pid1" ] || fail "kiln-api was not restarted after SIGSEGV (pid file: '$pid2')"
healthy || fail "the restarted kiln-api (pid $pid2) does not answer /healthz through nginx"
alive "$pid1" && fail "the crashed kiln-api $pid1 is still there"
grep -q "kiln-api (pid $pid1) exited" "$KILN_STACK_VAR/log/kiln-api-restarts.log" ||
    fail "the restart is not logged in var/log/kiln-api-restarts.log: $(cat "$KILN_STACK_VAR/log/kiln-api-restarts.log" 2>&1)"
ok "after SIGSEGV kiln-api came back as pid $pid2, serving, restart logged: $(tail -1 "$KILN_STACK_VAR/log/kiln-api-restarts.log")"

stack_api_down
alive "$loop" && fail "stack_api_down left the restart loop $loop running"
alive "$pid2" && fail "stack_api_down left kiln-api $pid2 running"
sleep 2
[ -f "$run/kiln-api.pid" ] && alive "$(cat "$run/kiln-api.pid")" && fail "kiln-api came back after stack_api_down"
ok "stack_api_down (make down) stops the loop and kiln-api; nothing restarts it"

# Without STACK_API_RESTART (the tests' default) a dead kiln-api stays dead.
stack_api_up || fail "stack_api_up did not start kiln-api"
pid3=$(cat "$run/kiln-api.pid")
[ -f "$run/kiln-api-supervisor.pid" ] && fail "a restart loop runs without STACK_API_RESTART=1"
ok "without STACK_API_RESTART=1 no loop runs (kiln-api $pid3)"
