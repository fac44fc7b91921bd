#!/usr/bin/env bash
# `make bench BENCH=scale` (issue 15): the control plane at a million mailboxes, agents in
# dry-run mode (no SMTP; labelled), several kiln-api processes behind nginx. See sim.py
# for what it measures. Disk: ~0.6 GB per million mailboxes; seeding 1 M takes ~40 s.
#   tests/bench/scale/run.sh BUILD_DIR   (Release/RelWithDebInfo advised)
#   BENCH_MAILBOXES (1000000), BENCH_SECONDS (120), BENCH_WARMUP_S (20), BENCH_AGENTS (2),
#   BENCH_DRY_RUN_MS (20), KILN_API_PROCESSES (2), BENCH_DAYS_BEHIND (0: empty day partitions
#   of sends before today, as retention keeps them), BENCH_PGSS=1 (per statement, tests/lib/pgss.py)
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
export KILN_SOURCE_DIR=$src KILN_BUILD_DIR=$(cd "${1:-$src/build}" && pwd)
# Global caps and the pair gap out of the way: this measures the control plane's cost
# per send, not policy. Stats every 30 s as in production.
export KILN_GLOBAL_MINUTE_CAP=100000000 KILN_GLOBAL_HOURLY_CAP=1000000000
export KILN_RECIPIENT_DAILY_CAP=1000000 KILN_PAIR_GAP_DAYS=0 KILN_STATS_INTERVAL_S=30
export KILN_LOG_LEVEL=warn KILN_API_PROCESSES=${KILN_API_PROCESSES:-2} KILN_LEASE_TTL_S=${KILN_LEASE_TTL_S:-120}
export PYTHONDONTWRITEBYTECODE=1
exec bash "$src/tests/lib/with_stack.sh" "$here/sim.py"
