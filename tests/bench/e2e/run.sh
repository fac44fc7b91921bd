#!/usr/bin/env bash
# The whole loop on this machine: one kiln-agent leasing from kiln-api (through nginx,
# PostgreSQL behind it) and sending to Postfix smtp-sink on 127.0.0.1; 100,000 mailboxes
# whose day is compressed by configuration (cooldown 1-2 s, window 0-24, a trigger every
# 2 s). Prints sustained end-to-end sends/s (slots the control plane counts as sent),
# the CPU split between agent, kiln-api, PostgreSQL, nginx and the sink, and the legacy
# figures beside it. Not part of `make test`.
#   tests/bench/e2e/run.sh [seconds]   (KILN_BUILD_DIR: a build dir, Release advised)
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
[ -x /usr/sbin/smtp-sink ] || { echo "SKIP: Postfix smtp-sink is not installed" >&2; exit 77; }
export KILN_SOURCE_DIR=$src KILN_BUILD_DIR=${KILN_BUILD_DIR:-$src/build}
# Caps out of the way and a short lease ttl: this measures throughput, not policy.
export KILN_GLOBAL_MINUTE_CAP=100000000 KILN_GLOBAL_HOURLY_CAP=1000000000
export KILN_RECIPIENT_DAILY_CAP=1000000 KILN_PAIR_GAP_DAYS=0 KILN_STATS_INTERVAL_S=30
export KILN_LEASE_TTL_S=${BENCH_LEASE_TTL_S:-120}
export PYTHONDONTWRITEBYTECODE=1
export BENCH_SECONDS=${1:-${BENCH_SECONDS:-60}}
# 1. sending only, into smtp-sink (issue 5); 2. the whole loop through Postfix and
# Dovecot with the inboxes watched (issue 14, loop.py: BENCH_LOOP_MAILBOXES, 10,000).
# BENCH_E2E_PARTS picks ("send loop").
rc=0
for part in ${BENCH_E2E_PARTS:-send loop}; do
    case $part in
    send) bash "$src/tests/lib/with_stack.sh" "$here/bench.py" || rc=1 ;;
    loop) BENCH_SECONDS=${BENCH_LOOP_SECONDS:-120} bash "$src/tests/lib/with_stack.sh" "$here/loop.py" || rc=1 ;;
    *) echo "BENCH_E2E_PARTS: unknown part '$part' (send, loop)" >&2; rc=2 ;;
    esac
done
exit $rc
