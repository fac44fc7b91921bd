#!/usr/bin/env bash
# Leasing throughput: 100,000 mailboxes, full lease -> report cycle through nginx with
# 1, 8 and 32 concurrent leasers. Not part of `make test`; `make bench` calls it.
#   tests/bench/leasing/run.sh [seconds-per-level]   (KILN_BUILD_DIR: a build dir)
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
export KILN_SOURCE_DIR=$src KILN_BUILD_DIR=${KILN_BUILD_DIR:-$src/build}
# Caps out of the way: this measures the control plane, not the policy.
export KILN_GLOBAL_MINUTE_CAP=100000000 KILN_GLOBAL_HOURLY_CAP=1000000000
export KILN_RECIPIENT_DAILY_CAP=1000000 KILN_PAIR_GAP_DAYS=3 KILN_STATS_INTERVAL_S=30
export BENCH_SECONDS=${1:-20}
exec bash "$src/tests/lib/with_stack.sh" "$here/bench.py"
