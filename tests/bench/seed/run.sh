#!/usr/bin/env bash
# Seeding benchmark (issue 15): `kiln-api seed` (COPY, every SMTP secret sealed under the
# server key) beside its peer in the same run, PostgreSQL writing the same rows alone
# (INSERT ... SELECT generate_series, one constant secret, no client): both into an empty
# schema, per size. Disk: ~0.5 GB per million mailboxes.
# Usage: run.sh BUILD_DIR   (sizes: KILN_SEED_SIZES, default "100000 1000000")
set -euo pipefail
# PostgreSQL's shared memory in huge pages, as root (deploy/local/stack.sh stack_pg_hugepages).
export STACK_PG_HUGEPAGES=${STACK_PG_HUGEPAGES:-reserve}
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
sizes=${KILN_SEED_SIZES:-100000 1000000}
var=$(mktemp -d /tmp/kiln-bench-seed.XXXXXX)
chmod 755 "$var"
source "$src/deploy/local/stack.sh"
cleanup() {
    stack_down >/dev/null 2>&1 || true
    rm -rf "$var"
}
trap cleanup EXIT
export KILN_LOG_LEVEL=warn
stack_init "$var" "$build"
stack_pg_up
stack_api_up
empty() {
    stack_psql -c "SET client_min_messages = warning; TRUNCATE plans, users, mailboxes, mailbox_leasing CASCADE" >/dev/null
    stack_psql -c "VACUUM" >/dev/null
}
now() { date +%s.%N; }
for n in $sizes; do
    users=$((n / 100))
    empty
    t0=$(now)
    "$build/api/kiln-api" seed --count "$n" --users "$users" --name "b$n" 2>"$var/seed.err"
    t1=$(now)
    tail -1 "$var/seed.err"
    empty
    t2=$(now)
    stack_psql >/dev/null <<SQL
BEGIN;
INSERT INTO plans (name, ramp_start, ramp_step, daily_max, max_mailboxes) VALUES ('p$n', 5, 2, 50, 100);
INSERT INTO users (name, plan_id, timezone)
SELECT 'p$n-u' || u, (SELECT id FROM plans WHERE name = 'p$n'), 'UTC' FROM generate_series(1, $users) u;
INSERT INTO mailboxes (user_id, address, display_name, smtp_host, smtp_port, smtp_security,
                       smtp_username, smtp_secret, smtp_allow_plaintext_auth, timezone,
                       window_start_hour, window_end_hour, warmup_start, active_since)
SELECT u.id, 'm' || i || '@' || u.name || '.test', 'M ' || i, '127.0.0.1', 2525, 'plain',
       'm' || i || '@' || u.name || '.test', decode(repeat('ab', 60), 'hex'), true, 'UTC', 0, 24,
       current_date, now()
FROM users u CROSS JOIN generate_series(1, 100) i;
COMMIT;
ANALYZE users, mailboxes, mailbox_leasing;
SQL
    t3=$(now)
    /usr/bin/python3 - "$n" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:])
k, p = t1 - t0, t3 - t2
print("%9d mailboxes: kiln-api seed %.1f s (%.0f/s) | peer SQL INSERT..SELECT %.1f s (%.0f/s) | ratio %.2f"
      % (n, k, n / k, p, n / p, p / k))
PY
done
echo "database size: $(stack_psql -tAc "SELECT pg_size_pretty(pg_database_size('kiln'))") (after the last peer run)"
