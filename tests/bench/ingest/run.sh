#!/usr/bin/env bash
# Inbox event ingestion benchmark (issue 13), kiln beside its peer in one run: agents
# report found events through nginx (POST /api/agent/report, inbox_events: MAC verified,
# idempotent by sighting, placement and rollups recorded, the engagement policy's actions
# planned) with 100,000 mailboxes seeded by `kiln-api seed` (COPY), beside pgbench
# inserting the same rows into the same tables (peer.sql): what the database alone costs.
# Prints events/s of both, the ratio, whether kiln reaches 20,000 events/s, and what each
# side wrote per event: rows and index entries by table (writes.py), WAL bytes, and
# kiln's WAL by relation and record kind (pg_waldump, walrel.py).
# Usage: run.sh BUILD_DIR   (an optimized build: make bench passes build/)
# Env: KILN_BENCH_INGEST_EVENTS (200000 per side), KILN_BENCH_INGEST_BATCH (events per
#      report, 500), KILN_BENCH_CONNS (agents = connections = pgbench clients, 8),
#      KILN_BENCH_MAILBOXES (100000), KILN_BENCH_PG_CONF (lines added to postgresql.conf,
#      e.g. auto_explain settings for profiling; the log is in $var/log/, kept with
#      KILN_BENCH_HOLD), KILN_BENCH_PERF (a file: `perf record -a -g` over kiln's run, and
#      the PostgreSQL backends' pids beside it in FILE.pids; read with
#      `perf report -i FILE --pid "$(cat FILE.pids)" --no-children --sort symbol`).
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
here=$src/tests/bench/ingest
n=${KILN_BENCH_INGEST_EVENTS:-200000}
batch=${KILN_BENCH_INGEST_BATCH:-500}
conns=${KILN_BENCH_CONNS:-8}
boxes=${KILN_BENCH_MAILBOXES:-100000}
var=$(mktemp -d /tmp/kiln-bench-ingest.XXXXXX)
chmod 755 "$var"
source "$src/deploy/local/stack.sh"
cleanup() {
    if [ -n "${KILN_BENCH_HOLD:-}" ]; then # profiling: keep the stack until the file goes
        echo "holding the stack in $var (source $var/stack.env); rm $var/hold to end"
        touch "$var/hold"
        while [ -e "$var/hold" ]; do sleep 5; done
    fi
    stack_down >/dev/null 2>&1 || true
    rm -rf "$var"
}
trap cleanup EXIT
export KILN_THREADS=${KILN_THREADS:-8} KILN_LOG_LEVEL=warn
stack_init "$var" "$build"
# pg_stat_statements: where the database's time goes, printed per statement below.
stack_pg_up
# (track_planning: a statement with 500-element array parameters is planned per call
# when its custom plans cost less than the generic one; the planning shows apart.)
printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_planning = on\n" \
    >>"$STACK_PGDATA/postgresql.conf"
[ -z "${KILN_BENCH_PG_CONF:-}" ] || printf '%s\n' "$KILN_BENCH_PG_CONF" >>"$STACK_PGDATA/postgresql.conf"
stack_pg_down
stack_pg_up
stack_psql -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
echo "== PostgreSQL: $(stack_pg_hugepages_status)"
stack_api_up
stack_nginx_up
token=$(stack_admin_token)
echo "== seeding $boxes mailboxes (kiln-api seed), $conns agents with an inbox lease each, 2 x $n sends"
t0=$SECONDS
"$build/api/kiln-api" seed --count "$boxes" --users "$((boxes / 100))" --name ingest 2>"$var/seed.err" ||
    { cat "$var/seed.err" >&2; exit 1; }
: >"$var/tokens"
for ((k = 0; k < conns; k++)); do
    t=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"name\":\"ingest-$k\"}" "$STACK_URL/api/agents" |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    echo "$k|$t" >>"$var/tokens"
done
read -r kiln_first peer_first < <(stack_psql -v agents="$conns" -v n="$n" -tA -F ' ' \
    -f "$here/setup.sql" | tail -1)
stack_psql -tAc "SELECT id FROM sends ORDER BY id" |
    /usr/bin/python3 "$here/driver.py" mint "$KILN_SECRET_KEY_FILE" >"$var/msgids"
stack_psql >/dev/null <<SQL
CREATE TEMP TABLE m (id bigint, message_id text);
\\copy m FROM '$var/msgids' WITH (DELIMITER '|')
UPDATE sends s SET message_id = m.message_id FROM m WHERE m.id = s.id;
VACUUM ANALYZE sends;
SQL
stack_psql -tA -F '|' -c "SELECT substr(a.name, 8), l.id FROM agents a JOIN leases l ON
    l.agent_id = a.id AND l.kind = 'inbox' WHERE a.name LIKE 'ingest-%'" |
    join -t '|' <(sort "$var/tokens") <(sort -) >"$var/agents"
stack_psql -tA -F '|' -c "SELECT id, recipient_id FROM sends WHERE id >= $kiln_first
    AND id < $peer_first ORDER BY id" >"$var/sends"
echo "   ready in $((SECONDS - t0)) s: $(stack_psql -tAc "SELECT count(*) FROM mailboxes") mailboxes," \
    "$(stack_psql -tAc "SELECT count(*) FROM sends") sends"

# What a run wrote: per table the rows inserted, updated and deleted, how many of the
# updates were HOT (no index entry), and its index count (BRIN left out: an entry per
# range of pages, not per row); and the WAL position. Backends
# report their table counts when idle for 10 s (PostgreSQL 15), hence the pause.
writes() {
    sleep 11
    stack_psql -tA -F ' ' -c "SELECT t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_del,
        t.n_tup_hot_upd, (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = t.relid AND am.amname <> 'brin')
        FROM pg_stat_user_tables t ORDER BY 1" >"$1"
    stack_psql -tAc "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn" >>"$1"
}

# One kiln run, then the peer: each writes its own half of the sends' placements.
stack_psql -c "CHECKPOINT" >/dev/null
stack_psql -c "SELECT pg_stat_statements_reset()" >/dev/null
writes "$var/w0"
pg_root=$(head -1 "$STACK_PGDATA/postmaster.pid")
cpu() { /usr/bin/python3 "$here/cpu.py" "$@"; }
api_root=$(cat "$(stack_api_file 1 pid)")
nginx_root=$(cat "$var/run/nginx.pid")
read -r pg0 api0 ngx0 < <(echo "$(cpu "$pg_root") $(cpu "$api_root") $(cpu "$nginx_root")")
load0=$(cut -d' ' -f1 /proc/loadavg)
perf_pid=
if [ -n "${KILN_BENCH_PERF:-}" ]; then
    perf record -q -F 499 -g -a -o "$KILN_BENCH_PERF" 2>/dev/null &
    perf_pid=$!
fi
read -r events secs eps reports p50 p99 applied dups ignored < <(/usr/bin/python3 "$here/driver.py" \
    "$STACK_URL" "$KILN_SECRET_KEY_FILE" "$var/sends" "$var/agents" "$batch")
load1=$(cut -d' ' -f1 /proc/loadavg)
if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" && wait "$perf_pid" || true
    pgrep -d, -P "$pg_root" >"$KILN_BENCH_PERF.pids" || true
fi
read -r pg1 api1 ngx1 < <(echo "$(cpu "$pg_root") $(cpu "$api_root") $(cpu "$nginx_root")")
writes "$var/w1"
# Where kiln's WAL went, by relation (its segments are still there: no checkpoint since).
stack_psql -tA -F '|' -c "SELECT relfilenode, relname FROM pg_class WHERE relfilenode <> 0" \
    >"$var/relnames"
stack_as_pg "$(stack_pg_bin)/pg_waldump" -p "$STACK_PGDATA/pg_wal" -s "$(tail -1 "$var/w0" |
    /usr/bin/python3 -c 'import sys; n = int(sys.stdin.read()); print("%X/%X" % (n >> 32, n & 0xffffffff))')" \
    -e "$(tail -1 "$var/w1" | /usr/bin/python3 -c 'import sys; n = int(sys.stdin.read()); print("%X/%X" % (n >> 32, n & 0xffffffff))')" \
    2>/dev/null | /usr/bin/python3 "$here/walrel.py" "$var/relnames" "$events" >"$var/walrel" || true
# The database's time per statement over kiln's run, per event.
stack_psql -tA -F '|' -c "SELECT round((total_exec_time * 1000 / $n)::numeric, 1),
    round((total_plan_time * 1000 / $n)::numeric, 1), calls, jit_functions,
    left(regexp_replace(query, '\s+', ' ', 'g'), 70) FROM pg_stat_statements
    WHERE calls > 0 ORDER BY total_exec_time + total_plan_time DESC LIMIT 10" >"$var/statements"
[ "$applied" -eq "$events" ] || { echo "kiln applied $applied of $events events (dup $dups, ignored $ignored)" >&2; exit 1; }
# What one event wrote (the peer writes as much): actions and replies per find.
read -r acts rest replies < <(stack_psql -tA -F ' ' -c "SELECT (SELECT count(*) FROM inbox_actions),
    (SELECT coalesce(sum(jsonb_array_length(rest)), 0) FROM inbox_actions),
    (SELECT count(*) FROM pending_replies)")
stack_psql -c "CHECKPOINT" >/dev/null
stack_psql -c "CREATE SEQUENCE bench_peer_batch" >/dev/null
writes "$var/w2"
mkdir -p "$var/pgb" && chmod 777 "$var/pgb"
per_client=$(((n / batch + conns - 1) / conns))
load2=$(cut -d' ' -f1 /proc/loadavg)
pg2=$(cpu "$pg_root")
(cd "$var/pgb" && stack_as_pg "$(stack_pg_bin)/pgbench" -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" \
    -U postgres -n -M prepared -c "$conns" -j 2 -t "$per_client" -D first="$peer_first" \
    -D batch="$batch" -D last="$((peer_first + n))" -D acts_per_1000="$((acts * 1000 / events))" \
    -D rest_per_1000="$((rest * 1000 / (acts > 0 ? acts : 1)))" \
    -D replies_per_1000="$((replies * 1000 / events))" \
    -f "$here/peer.sql" kiln >"$var/pgb/out" 2>&1) || { head -5 "$var/pgb/out" >&2; exit 1; }
load3=$(cut -d' ' -f1 /proc/loadavg)
pg3=$(cpu "$pg_root")
writes "$var/w3"
peer_rows=$(stack_psql -tAc "SELECT count(*) FROM placements WHERE send_id >= $peer_first")
peer_tps=$(awk '/^tps/ {print $3; exit}' "$var/pgb/out")
peer_eps=$(awk -v t="$peer_tps" -v b="$batch" 'BEGIN {printf "%.0f", t * b}')
sum3() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN {print a + b + c}'; }
us() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (b - a) * 1e6 / n}'; }
printf '\n%-54s %9s %8s %8s %8s %9s\n' "($conns agents, $batch events a report)" "events/s" "p50 ms" \
    "p99 ms" "pg us/ev" "all us/ev"
printf '%-54s %9s %8s %8s %8s %9s\n' "kiln POST /api/agent/report (inbox_events) via nginx" "$eps" \
    "$p50" "$p99" "$(us "$pg0" "$pg1" "$events")" \
    "$(us "$(sum3 "$pg0" "$api0" "$ngx0")" "$(sum3 "$pg1" "$api1" "$ngx1")" "$events")"
printf '%-54s %9s %8s %8s %8s %9s\n' "  peer: pgbench, the same rows into the same tables" "$peer_eps" \
    "" "" "$(us "$pg2" "$pg3" "$peer_rows")" "$(us "$pg2" "$pg3" "$peer_rows")"
echo "(us/ev: CPU microseconds per event of PostgreSQL, and of PostgreSQL + kiln-api + nginx;"
echo " kiln-api alone: $(us "$api0" "$api1" "$events") us/ev. The box's 2 cores give at most"
echo " 2,000,000 / (all us/ev) events/s whatever its load.)"
echo
echo "PostgreSQL time per event over kiln's run, by statement (us/event executing, planning; calls; JIT-compiled functions):"
sed 's/^/  /' "$var/statements"
echo
echo "rows per event: actions $(awk -v a="$acts" -v e="$events" 'BEGIN {printf "%.2f", a / e}')" \
    "(planned after them, in rest: $(awk -v a="$rest" -v e="$events" 'BEGIN {printf "%.2f", a / e}'))," \
    "replies $(awk -v a="$replies" -v e="$events" 'BEGIN {printf "%.3f", a / e}'); peer placements $peer_rows"
echo
echo "rows written per event by table (kiln | peer): inserted+updated+deleted, (HOT updates), indexes"
/usr/bin/python3 "$here/writes.py" "$var/w0" "$var/w1" "$events" "$var/w2" "$var/w3" "$peer_rows"
cat "$var/walrel"
echo "load average: $load0 -> $load1 (kiln), $load2 -> $load3 (peer)"
echo "events/s kiln / pgbench: $(awk -v a="$eps" -v b="$peer_eps" 'BEGIN {printf "%.2f", a / b}')"
if [ "$eps" -ge 20000 ]; then
    echo "goal >= 20,000 events/s: met ($eps)"
else
    echo "goal >= 20,000 events/s: MISSED ($eps)"
    exit 1
fi
