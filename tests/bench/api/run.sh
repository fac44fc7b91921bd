#!/usr/bin/env bash
# Control-plane read/registration benchmark (issue 2), kiln beside its peer in one run:
#  - GET /metrics and GET /api/warmup/quota?status=behind&limit=100 through nginx with
#    100,000 mailboxes and a day of history: median/p99 latency and requests/s under wrk,
#    beside nginx serving the same bytes as a static file (the HTTP floor);
#  - registration: mailboxes created per second through the API, beside pgbench inserting
#    the same rows straight into PostgreSQL;
#  - proof that the metrics paths never read the sends table (pg_stat counters).
# Usage: run.sh BUILD_DIR   (an optimized build: make bench passes build/)
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
dur=${KILN_BENCH_SECONDS:-10}
conn_levels=${KILN_BENCH_CONNS:-4 16}
var=$(mktemp -d /tmp/kiln-bench-api.XXXXXX)
chmod 755 "$var"
source "$src/deploy/local/stack.sh"
cleanup() {
    [ -f "$var/run/peer-nginx.pid" ] && kill -QUIT "$(cat "$var/run/peer-nginx.pid")" 2>/dev/null
    stack_down >/dev/null 2>&1 || true
    rm -rf "$var"
}
trap cleanup EXIT
export KILN_THREADS=${KILN_THREADS:-8} KILN_LOG_LEVEL=warn
stack_init "$var" "$build"
stack_up
token=$(stack_admin_token)
echo "== seeding 1,000 users x 100 mailboxes and a day of history (about a minute)"
t0=$SECONDS
stack_psql -f "$src/tests/bench/api/seed.sql" >/dev/null
echo "   seeded in $((SECONDS - t0)) s: $(stack_psql -tAc "SELECT count(*) FROM mailboxes") mailboxes, $(stack_psql -tAc "SELECT count(*) FROM sends") sends rows"
sleep $((${KILN_STATS_INTERVAL_S:-5} + 1)) # let the snapshot cover the seeded data

# The peer: nginx serving a static copy of each answer, same machine, same wrk settings.
peer_port=$(stack_free_port)
mkdir -p "$var/peer/html"
curl -s -H "Authorization: Bearer $token" "$STACK_URL/metrics" >"$var/peer/html/metrics"
curl -s -H "Authorization: Bearer $token" "$STACK_URL/api/warmup/quota?status=behind&limit=100" \
    >"$var/peer/html/quota"
chmod -R a+rX "$var/peer"
cat >"$var/peer/nginx.conf" <<CONF
worker_processes 2;
pid $var/run/peer-nginx.pid;
error_log $var/log/peer-nginx.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $var/peer/tmp;
    server { listen 127.0.0.1:$peer_port; root $var/peer/html; default_type text/plain; }
}
CONF
nginx -e "$var/log/peer-nginx.log" -c "$var/peer/nginx.conf"

sends_reads() {
    stack_psql -tAc "SELECT coalesce(seq_scan,0) + coalesce(idx_scan,0) FROM pg_stat_user_tables WHERE relname = 'sends'"
}
# wrk_run NAME URL [wrk args...] -> prints "rps p50_ms p99_ms"
wrk_run() {
    local url=$1; shift
    local out
    out=$(wrk -t2 -c"$conns" -d"${dur}s" --latency "$@" "$url")
    echo "$out" >>"$var/log/wrk.log"
    local rps p50 p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -z "$non2xx" ] || { echo "   error: $non2xx non-2xx answers" >&2; }
    echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { # wrk prints 1.23ms / 456.00us / 1.02s
    awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else printf "%.2f", v*1000 }'
}
auth=(-H "Authorization: Bearer $token")
before=$(sends_reads)
for conns in $conn_levels; do
printf '\n%-44s %10s %9s %9s\n' "endpoint ($conns connections, ${dur}s)" "req/s" "p50 ms" "p99 ms"
for ep in metrics quota; do
    case $ep in
    metrics) path=/metrics ;;
    quota) path="/api/warmup/quota?status=behind&limit=100" ;;
    esac
    read -r rps p50 p99 < <(wrk_run "$STACK_URL$path" "${auth[@]}")
    printf '%-44s %10s %9s %9s\n' "kiln GET $path" "$rps" "$p50" "$p99"
    read -r prps pp50 pp99 < <(wrk_run "http://127.0.0.1:$peer_port/$ep")
    printf '%-44s %10s %9s %9s\n' "  peer: nginx static copy" "$prps" "$pp50" "$pp99"
    printf '%-44s %10s\n' "  kiln / peer throughput" "$(awk -v a="$rps" -v b="$prps" 'BEGIN{printf "%.3f", a/b}')"
done
done
after=$(sends_reads)
echo
if [ "$before" = "$after" ]; then
    echo "sends table reads during the metrics/quota runs: 0 (seq+idx scans $before -> $after)"
else
    echo "sends table reads during the metrics/quota runs: $((after - before)) (FAIL: must be 0)"
fi

echo
conns=16
echo "== registration throughput (POST /api/mailboxes vs pgbench INSERT, $conns connections, ${dur}s)"
first=$(stack_psql -tAc "SELECT min(id) FROM users")
last=$(stack_psql -tAc "SELECT max(id) FROM users")
stack_psql -c "UPDATE plans SET max_mailboxes = 10000000 WHERE name = 'bench'"
n0=$(stack_psql -tAc "SELECT count(*) FROM mailboxes")
out=$(KILN_BENCH_TOKEN=$token KILN_BENCH_USER_FIRST=$first KILN_BENCH_USER_LAST=$last wrk -t2 -c"$conns" -d"${dur}s" \
    -s "$src/tests/bench/api/register.lua" "$STACK_URL/api/mailboxes")
n1=$(stack_psql -tAc "SELECT count(*) FROM mailboxes")
api_rate=$(awk -v n=$((n1 - n0)) -v d="$dur" 'BEGIN{printf "%.0f", n/d}')
echo "kiln API: $((n1 - n0)) mailboxes created in ${dur}s = $api_rate/s ($(echo "$out" | awk '/Non-2xx/ {print $NF" non-2xx"}'))"
pgb=$(stack_as_pg "$(stack_pg_bin)/pgbench" -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" -U postgres -n \
    -c "$conns" -j 2 -T "$dur" -D first="$first" -D last="$last" -f "$src/tests/bench/api/register_peer.sql" kiln 2>&1)
peer_rate=$(echo "$pgb" | awk -F'= ' '/^tps/ {printf "%.0f", $2; exit}')
echo "peer: pgbench INSERT of the same row: $peer_rate/s"
echo "kiln / peer: $(awk -v a="$api_rate" -v b="$peer_rate" 'BEGIN{printf "%.3f", a/b}')"
