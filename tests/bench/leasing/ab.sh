#!/usr/bin/env bash
# A/B of the lease path on one box state: two builds, each with its own source tree's
# migrations (stack.sh points KILN_SQL_DIR at the source tree), on fresh stacks back to
# back, in the order A B B A ... (ROUNDS pairs), each level as bench.py runs it (this
# tree's bench.py for both, so both print the same figures). The load average is printed
# before each run. Defaults: 8 leasers, 15 s, 10,000 mailboxes, no peers. Warm levels:
# kiln-api prepares each statement per connection and PostgreSQL plans it for its
# parameters for its first five executions (and PL/pgSQL the functions' statements), so a
# level of a few leases per connection measures planning and never the cached generic
# plans a long-lived connection runs: BENCH_LEVELS="8 8 8" BENCH_USERS=200 and read the
# last level (docs/benchmarks.md "Leasing", fourth pass).
#   tests/bench/leasing/ab.sh SRC_A BUILD_A SRC_B BUILD_B [ROUNDS]
# e.g. git -C /work/main archive main | tar -x -C /tmp/src-main, then
#   nice -n 19 tests/bench/leasing/ab.sh /tmp/src-main /tmp/rel-main . /tmp/rel-NAME 2
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 4 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
srcs=("$(cd "$1" && pwd)" "$(cd "$3" && pwd)")
builds=("$(cd "$2" && pwd)" "$(cd "$4" && pwd)")
rounds=${5:-1}
export KILN_GLOBAL_MINUTE_CAP=100000000 KILN_GLOBAL_HOURLY_CAP=1000000000
export KILN_RECIPIENT_DAILY_CAP=1000000 KILN_PAIR_GAP_DAYS=3 KILN_STATS_INTERVAL_S=30
export BENCH_SECONDS=${BENCH_SECONDS:-15} BENCH_LEVELS=${BENCH_LEVELS:-8}
export BENCH_USERS=${BENCH_USERS:-100} BENCH_PEER=${BENCH_PEER:-0}
order=()
for ((r = 0; r < rounds; r++)); do
    if ((r % 2 == 0)); then order+=(0 1); else order+=(1 0); fi
done
for i in "${order[@]}"; do
    name=$([ "$i" -eq 0 ] && echo A || echo B)
    echo "######## $name: build ${builds[$i]}, schema ${srcs[$i]}/sql ($(date -u +%T) UTC," \
        "load average $(cut -d' ' -f1-3 /proc/loadavg))"
    KILN_SOURCE_DIR=${srcs[$i]} KILN_BUILD_DIR=${builds[$i]} \
        bash "${srcs[$i]}/tests/lib/with_stack.sh" "$here/bench.py" 2>&1 | sed "s/^/$name /"
done
