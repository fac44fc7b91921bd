#!/usr/bin/env bash
# test_nginx_production_site_serves_kiln_api: runs under tests/lib/with_stack.sh (a real
# PostgreSQL and kiln-api). Starts nginx with the production site on loopback ports and
# a second, socket-activated kiln-api (as kiln-api@2.socket would), then checks over
# HTTPS/HTTP2: health, the two-instance upstream surviving the loss of one, the /metrics
# network ACL, the body limit, agent rate limiting, the HTTP->HTTPS redirect and the
# JSON access log, and nginx's own errors as kiln's JSON (tests/deploy/nginx_errors.py).
. "$KILN_SOURCE_DIR/tests/deploy/lib.sh"
need nginx openssl curl systemd-socket-activate
: "${KILN_STACK_VAR:?run me through tests/lib/with_stack.sh}"
deploy_tmpdir
api2_pid=""
DEPLOY_CLEANUP() {
    [ ! -f "$T/ngx/nginx.pid" ] || kill -QUIT "$(cat "$T/ngx/nginx.pid")" 2>/dev/null || true
    [ -z "$api2_pid" ] || kill -TERM "$api2_pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        { [ -z "$api2_pid" ] || ! kill -0 "$api2_pid" 2>/dev/null; } && break
        sleep 0.1
    done
    [ -z "$api2_pid" ] || kill -KILL "$api2_pid" 2>/dev/null || true
}
http=$(free_port)
tls=$(free_port)
sock1=$KILN_STACK_VAR/run/api.sock
sock2=$T/api-2.sock
render_nginx "$T/ngx" "$http" "$tls" "$sock1" "$sock2"

# Second instance: systemd-socket-activate passes the listening socket as fd 3, exactly
# as kiln-api@2.socket does in production.
( exec systemd-socket-activate -l "$sock2" \
    -E KILN_DB -E KILN_SECRET_KEY_FILE -E KILN_SQL_DIR -E KILN_STATS_INTERVAL_S \
    -E ASAN_OPTIONS -E UBSAN_OPTIONS \
    "$KILN_BUILD_DIR/api/kiln-api" serve ) >"$T/api2.log" 2>&1 &
api2_pid=$!
for i in $(seq 1 50); do [ -S "$sock2" ] && break; sleep 0.1; done
[ -S "$sock2" ] || fail "systemd-socket-activate did not create $sock2"
chmod 666 "$sock2" # nginx workers run as nobody here (SocketMode=0660 + group in production)

nginx -c "$T/ngx/nginx.conf" -e "$T/ngx/log/error.log" || fail "nginx did not start with the production site"
base=https://kiln.example.com:$tls
c() { curl -s --max-time 10 --resolve "kiln.example.com:$tls:127.0.0.1" --cacert "$T/ngx/tls/fullchain.pem" "$@"; }
for i in $(seq 1 50); do c -o /dev/null "$base/healthz" && break; sleep 0.1; done

got=$(c -o "$T/body" -w '%{http_code} %{http_version}' --http2 "$base/healthz")
[ "$got" = "200 2" ] || fail "GET /healthz over TLS: expected '200 2' (status, HTTP/2), got '$got': $(cat "$T/body")"
ok "HTTPS with HTTP/2 reaches kiln-api (/healthz 200)"

got=$(c -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $KILN_ADMIN_TOKEN" "$base/metrics")
[ "$got" = 200 ] && grep -q '^kiln_queue_depth ' "$T/body" ||
    fail "GET /metrics from 127.0.0.1 with the admin token: expected 200 with kiln_queue_depth, got $got: $(head -c 300 "$T/body")"
got=$(c -o "$T/body" -w '%{http_code}' --interface 127.0.0.3 -H "Authorization: Bearer $KILN_ADMIN_TOKEN" "$base/metrics")
[ "$got" = 403 ] && grep -q '"code":"forbidden"' "$T/body" ||
    fail "GET /metrics from 127.0.0.3 (outside the scrape network): expected a JSON 403, got $got: $(cat "$T/body")"
ok "/metrics answers the scrape network and refuses others with a JSON 403"

got=$(c -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer kiln7_$(printf 'A%.0s' $(seq 43))" "$base/api/plans")
[ "$got" = 401 ] && grep -q '"code":"unauthorized"' "$T/body" ||
    fail "a token of a pool no cell serves (kiln7_): expected nginx's JSON 401, got $got: $(cat "$T/body")"
ok "a token naming a pool no cell serves gets a JSON 401 from nginx"

head -c 2000000 /dev/zero | tr '\0' 'x' >"$T/big"
got=$(c -o "$T/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $KILN_ADMIN_TOKEN" --data-binary "@$T/big" "$base/api/users")
[ "$got" = 413 ] && grep -q '"code":"body_too_large"' "$T/body" ||
    fail "POST of 2 MB: expected a JSON 413 from nginx, got $got: $(head -c 300 "$T/body")"
ok "bodies over 1 MiB get a JSON 413"

# 80 heartbeats on one kept connection with one token: past the burst, nginx says 429.
urls=()
for i in $(seq 1 80); do urls+=(-o /dev/null "$base/api/agent/heartbeat"); done
codes=$(c -w '%{http_code}\n' -X POST -H 'Authorization: Bearer agent-rate-test' \
    -H 'Content-Type: application/json' -d '{}' "${urls[@]}" | sort | uniq -c)
echo "$codes" | grep -q ' 429$' || fail "80 rapid agent requests with one token: expected some 429, got: $codes"
ok "agent endpoints are rate limited per token ($(echo "$codes" | tr -s ' \n' ' '))"

got=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$http/api/users")
case "$got" in
"301 https://"*) ;;
*) fail "plain HTTP: expected a 301 to https, got '$got'" ;;
esac
ok "plain HTTP redirects to HTTPS"

# nginx's own errors (malformed requests, TRACE, 414, 413, plain HTTP to the TLS port) are
# kiln's JSON, on both server blocks, sent as raw bytes.
/usr/bin/python3 "$KILN_SOURCE_DIR/tests/deploy/nginx_errors.py" --port "$tls" \
    --tls "$T/ngx/tls/fullchain.pem" --host kiln.example.com --plain-port "$http" ||
    fail "the production site answers some of its own errors without kiln's JSON shape"

# Losing one instance: nginx moves on to the other (both sockets are in the upstream).
(source "$KILN_SOURCE_DIR/deploy/local/stack.sh" && stack_init "$KILN_STACK_VAR" "$KILN_BUILD_DIR" \
    "$(grep -o 'STACK_HTTP_PORT=[0-9]*' "$KILN_STACK_VAR/stack.env" | cut -d= -f2)" && stack_api_down)
rm -f "$sock1"
for i in $(seq 1 6); do
    got=$(c -o "$T/body" -w '%{http_code}' "$base/healthz")
    [ "$got" = 200 ] || { cat "$T/ngx/log/kiln-error.log" "$T/api2.log" >&2; false; } || fail "GET /healthz #$i with instance 1 down: expected 200 from instance 2, got $got: $(cat "$T/body")"
done
ok "with one kiln-api instance down, the other serves every request"

kill -USR1 "$(cat "$T/ngx/nginx.pid")" # reopen = flush the buffered access log
sleep 0.5
/usr/bin/python3 - "$T/ngx/log/kiln-access.json" "$sock2" <<'PY' || fail "the access log is not one JSON object per line with the expected fields"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert len(lines) >= 10, f"only {len(lines)} access log lines"
recs = [json.loads(l) for l in lines]
for r in recs:
    for k in ("time", "remote", "method", "uri", "status", "request_time", "upstream"):
        assert k in r, f"field {k} missing in {r}"
assert any(sys.argv[2] in r["upstream"] for r in recs), "no request went to instance 2"
assert any(r["status"] == 429 for r in recs), "the 429s are not in the log"
PY
ok "access log: one JSON object per request, both instances used"
