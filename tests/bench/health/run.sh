#!/usr/bin/env bash
# Mailbox health read benchmark (issue 13), kiln beside its peers in one run:
# GET /api/mailboxes/{id}/health for random mailboxes through nginx with 100,000
# mailboxes and 30 days of placement rollups (tests/bench/health/seed.sql), p50/p99 under
# wrk, beside
#  - pgbench running the endpoint's own statement straight into PostgreSQL
#    (health_peer.sql): what the database alone costs;
#  - wrk against GET /healthz through the same nginx and kiln-api: the HTTP floor.
# Prints the p99 ratios and whether p99 < 20 ms (the goal of issue 13).
# Usage: run.sh BUILD_DIR   (an optimized build: make bench passes build/)
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
dur=${KILN_BENCH_SECONDS:-10}
conns=${KILN_BENCH_CONNS:-8}
var=$(mktemp -d /tmp/kiln-bench-health.XXXXXX)
chmod 755 "$var"
source "$src/deploy/local/stack.sh"
cleanup() {
    stack_down >/dev/null 2>&1 || true
    rm -rf "$var"
}
trap cleanup EXIT
keep_log() { cp "$var/log/wrk.log" "${KILN_BENCH_LOG:-/tmp/kiln-bench-health-wrk.log}" 2>/dev/null || true; }
export KILN_THREADS=${KILN_THREADS:-8} KILN_LOG_LEVEL=warn
stack_init "$var" "$build"
stack_up
token=$(stack_admin_token)
echo "== seeding 100,000 mailboxes x 30 days x 2 providers of rollups (a minute or two)"
t0=$SECONDS
stack_psql -f "$src/tests/bench/health/seed.sql" >/dev/null
first=$(stack_psql -tAc "SELECT min(id) FROM mailboxes")
last=$(stack_psql -tAc "SELECT max(id) FROM mailboxes")
echo "   seeded in $((SECONDS - t0)) s: $(stack_psql -tAc "SELECT count(*) FROM mailboxes") mailboxes, $(stack_psql -tAc "SELECT count(*) FROM placement_days") placement_days rows"
check=$(curl -s -H "Authorization: Bearer $token" "$STACK_URL/api/mailboxes/$last/health")
echo "$check" | grep -q '"days":30' || { echo "unexpected answer: $check" >&2; exit 1; }

to_ms() { # wrk prints 1.23ms / 456.00us / 1.02s
    awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else printf "%.2f", v*1000 }'
}
# wrk_run URL [wrk args...] -> "rps p50_ms p99_ms"
wrk_run() {
    local url=$1; shift
    local out
    out=$(wrk -t2 -c"$conns" -d"${dur}s" --latency "$@" "$url")
    echo "$out" >>"$var/log/wrk.log"
    local non2xx
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -z "$non2xx" ] || echo "   error: $non2xx non-2xx answers" >&2
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')") $(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")"
}

# Warm-up (not measured): every kiln-api thread's connection prepares its statements and
# plans them (PostgreSQL custom-plans the first 5 executions), and the rollup pages come
# into the cache: the run below measures the steady state, as production sees it.
KILN_BENCH_TOKEN=$token KILN_BENCH_FIRST=$first KILN_BENCH_LAST=$last \
    wrk -t2 -c"$conns" -d3s -s "$src/tests/bench/health/health.lua" "$STACK_URL/" >/dev/null
wrk -t2 -c"$conns" -d2s "$STACK_URL/healthz" >/dev/null

printf '\n%-52s %10s %9s %9s\n' "($conns connections, ${dur}s)" "req/s" "p50 ms" "p99 ms"
read -r rps p50 p99 < <(KILN_BENCH_TOKEN=$token KILN_BENCH_FIRST=$first KILN_BENCH_LAST=$last \
    wrk_run "$STACK_URL/" -s "$src/tests/bench/health/health.lua")
printf '%-52s %10s %9s %9s\n' "kiln GET /api/mailboxes/{random}/health" "$rps" "$p50" "$p99"

mkdir -p "$var/pgb" && chmod 777 "$var/pgb"
(cd "$var/pgb" && stack_as_pg "$(stack_pg_bin)/pgbench" -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" \
    -U postgres -n -M prepared -c "$conns" -j 2 -T "$dur" -l -D first="$first" -D last="$last" \
    -f "$src/tests/bench/health/health_peer.sql" kiln >"$var/pgb/out" 2>&1)
read -r prps pp50 pp99 < <(cat "$var"/pgb/pgbench_log.* | awk '{print $3}' | sort -n |
    awk -v d="$dur" '{v[NR]=$1} END {printf "%.0f %.2f %.2f\n", NR/d, v[int(NR*0.5)+1]/1000, v[int(NR*0.99)+1]/1000}')
printf '%-52s %10s %9s %9s\n' "  peer: pgbench, the endpoint's SQL (no HTTP)" "$prps" "$pp50" "$pp99"
read -r hrps hp50 hp99 < <(wrk_run "$STACK_URL/healthz")
printf '%-52s %10s %9s %9s\n' "  floor: GET /healthz (nginx + kiln-api, SELECT 1)" "$hrps" "$hp50" "$hp99"
keep_log
echo
echo "p99 kiln / pgbench (the SQL alone): $(awk -v a="$p99" -v b="$pp99" 'BEGIN{printf "%.2f", a/b}')"
echo "p99 kiln / /healthz (the HTTP floor): $(awk -v a="$p99" -v b="$hp99" 'BEGIN{printf "%.2f", a/b}')"
if awk -v a="$p99" 'BEGIN{exit !(a < 20)}'; then
    echo "goal p99 < 20 ms: met ($p99 ms)"
else
    echo "goal p99 < 20 ms: MISSED ($p99 ms)"
    exit 1
fi
