#!/usr/bin/env bash
# History growth (issue 15): the lease -> report cycle at 8 leasers over 10,000 mailboxes
# on day 1, then with 30 past days of sends (10,000 x 30/day = 9 M rows, one partition
# per day) in the same stack: the rate on day 31 beside day 1's (goal >= 0.90x), and the
# time to drop the oldest day's partition (goal < 1 s). The leasing bench's driver.
#   tests/bench/history/run.sh [seconds-per-level, default 8]   (KILN_BUILD_DIR: a build dir)
# 8 s: on a quiet box 8 leasers spend the day's 300,000 sends in ~11 s, and a level must
# end before its day does (one that runs out reports its rate over the busy part).
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
here=$(cd "$(dirname "$0")" && pwd)
export BENCH_USERS=${BENCH_USERS:-100} BENCH_HISTORY_DAYS=${BENCH_HISTORY_DAYS:-30}
exec bash "$here/../leasing/run.sh" "${1:-8}"
