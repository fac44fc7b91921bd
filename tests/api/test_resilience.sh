#!/usr/bin/env bash
# kill -9 of kiln-api under load: nginx answers a JSON 503 while it is gone and serves
# again once it is restarted; PostgreSQL going away gives 503 and kiln-api recovers by
# itself when it returns. Run through tests/lib/with_stack.sh.
set -euo pipefail
source "$KILN_SOURCE_DIR/deploy/local/stack.sh"
source "$KILN_STACK_VAR/stack.env"
stack_init "$KILN_STACK_VAR" "$KILN_BUILD_DIR" "$STACK_HTTP_PORT" >/dev/null
auth=(-H "Authorization: Bearer $KILN_ADMIN_TOKEN")
fail() { echo "FAIL: $*" >&2; exit 1; }
status() { curl -s -o /tmp/kiln-resp.$$ -w '%{http_code}' "${auth[@]}" "$@"; }

# Load: 4 clients creating plans for at most 30 s / 400 requests each.
load() {
    local i end=$((SECONDS + 30))
    for i in $(seq 1 400); do
        [ $SECONDS -lt $end ] || break
        curl -s -o /dev/null -w '%{http_code}\n' "${auth[@]}" \
            -d "{\"name\":\"p-$1-$i\",\"ramp_start\":1,\"ramp_step\":1,\"daily_max\":5}" \
            "$KILN_URL/api/plans"
    done
}
loaders=()
for c in 1 2 3 4; do load "$c" >"$KILN_STACK_VAR/load.$c" & loaders+=($!); done
sleep 1
stack_api_down KILL
sleep 0.5
code=$(status "$KILN_URL/api/plans")
[ "$code" = 503 ] || fail "with kiln-api killed, expected 503, got $code"
grep -q '"code":"api_unavailable"' /tmp/kiln-resp.$$ || fail "503 without the JSON error: $(cat /tmp/kiln-resp.$$)"
stack_api_up
wait "${loaders[@]}"
for i in $(seq 1 50); do
    code=$(status "$KILN_URL/api/plans?limit=1"); [ "$code" = 200 ] && break; sleep 0.2
done
[ "$code" = 200 ] || fail "after restart expected 200, got $code"
codes=$(cat "$KILN_STACK_VAR"/load.* | sort | uniq -c | tr '\n' ' ')
echo "load answers during the kill: $codes"
cat "$KILN_STACK_VAR"/load.* | grep -qv -E '^(201|503)$' && fail "unexpected answers under load: $codes"
made=$(stack_psql -tAc "SELECT count(*) FROM plans")
ok201=$(cat "$KILN_STACK_VAR"/load.* | grep -c '^201$' || true)
# Every acknowledged write is stored; at most one unacknowledged commit per client (the
# request kiln-api finished just as it was killed).
[ "$made" -ge "$ok201" ] && [ "$made" -le $((ok201 + 4)) ] ||
    fail "every 201 must be a stored plan: $ok201 answers, $made rows"
echo "ok - test_kill_9_under_load_then_restart_serves_again ($ok201 plans created, none lost)"

stack_pg_down
code=$(status "$KILN_URL/api/plans")
[ "$code" = 503 ] || fail "with PostgreSQL down, expected 503, got $code: $(cat /tmp/kiln-resp.$$)"
grep -q '"code":"db_unavailable"' /tmp/kiln-resp.$$ || fail "503 body: $(cat /tmp/kiln-resp.$$)"
code=$(curl -s -o /dev/null -w '%{http_code}' "$KILN_URL/healthz")
[ "$code" = 503 ] || fail "healthz with PostgreSQL down: $code"
kill -0 "$(cat "$KILN_STACK_VAR/run/kiln-api.pid")" || fail "kiln-api died when PostgreSQL went away"
stack_pg_up
for i in $(seq 1 50); do
    code=$(status "$KILN_URL/api/plans?limit=1"); [ "$code" = 200 ] && break; sleep 0.2
done
[ "$code" = 200 ] || fail "kiln-api did not recover after PostgreSQL came back: $code"
echo "ok - test_database_outage_is_503_and_recovers"
rm -f /tmp/kiln-resp.$$
