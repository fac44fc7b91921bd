#!/usr/bin/env bash
# `make bench`: every benchmark, each measuring kiln beside its peer in the same run and
# printing the ratio. Loopback only. Figures go to docs/benchmarks.md by hand, with the
# date and machine, because the machines are noisy and only same-run ratios compare.
#   tests/bench/run.sh BUILD_DIR [api|leasing|agent|e2e|inbox|inbox-poll|inbox-idle|health|ingest|seed|scale|history ...]
#   (default: all but seed, scale and history, which write millions of rows: ask for them;
#   inbox is inbox-poll, the legacy polling mix, then inbox-idle, 10,000 IDLE connections)
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
shift || true
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(api leasing agent e2e inbox health ingest)
# Every suite's PostgreSQL runs in huge pages where this is root (stack_pg_hugepages in
# deploy/local/stack.sh: this VM's page faults cost ~15 us each); the kernel's reservation
# goes back to what it was when the benches end.
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
hugepages0=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || true)
restore_hugepages() {
    [ -z "$hugepages0" ] || [ ! -w /proc/sys/vm/nr_hugepages ] ||
        echo "$hugepages0" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
}
trap restore_hugepages EXIT
rc=0
for s in "${suites[@]}"; do
    echo
    echo "################ bench: $s ($(date -u +%FT%TZ), $(nproc) cores)"
    case $s in
    api) bash "$src/tests/bench/api/run.sh" "$build" || rc=1 ;;
    leasing) KILN_BUILD_DIR=$build bash "$src/tests/bench/leasing/run.sh" || rc=1 ;;
    agent) bash "$src/tests/bench/agent/run.sh" "$build" || rc=1 ;;
    e2e) KILN_BUILD_DIR=$build bash "$src/tests/bench/e2e/run.sh" || rc=1 ;;
    inbox)
        /usr/bin/python3 "$src/tests/bench/inbox/bench.py" "$build" || rc=1
        /usr/bin/python3 "$src/tests/bench/inbox/idle.py" "$build" || rc=1
        ;;
    inbox-poll) /usr/bin/python3 "$src/tests/bench/inbox/bench.py" "$build" || rc=1 ;;
    inbox-idle) /usr/bin/python3 "$src/tests/bench/inbox/idle.py" "$build" || rc=1 ;;
    health) bash "$src/tests/bench/health/run.sh" "$build" || rc=1 ;;
    ingest) bash "$src/tests/bench/ingest/run.sh" "$build" || rc=1 ;;
    seed) bash "$src/tests/bench/seed/run.sh" "$build" || rc=1 ;;
    scale) bash "$src/tests/bench/scale/run.sh" "$build" || rc=1 ;;
    history) KILN_BUILD_DIR=$build bash "$src/tests/bench/history/run.sh" || rc=1 ;;
    *) echo "unknown suite $s (api, leasing, agent, e2e, inbox, inbox-poll, inbox-idle, health, ingest, seed, scale, history)" >&2; rc=2 ;;
    esac
done
exit $rc
