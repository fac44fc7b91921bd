#!/usr/bin/env bash
# Runs one integration test against a throwaway stack: a fresh PostgreSQL cluster,
# kiln-api and nginx under a temporary directory, torn down afterwards whatever happens.
#   with_stack.sh TEST [ARGS...]   (TEST: a .py file run with /usr/bin/python3, or a .sh)
# The test gets KILN_URL, KILN_ADMIN_TOKEN, KILN_STACK_VAR, KILN_BUILD_DIR, KILN_SOURCE_DIR
# and can source deploy/local/stack.sh (then call stack_init "$KILN_STACK_VAR" ...) to
# restart pieces (stack_api_down/up, stack_pg_down/up).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${KILN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
build=${KILN_BUILD_DIR:-$src/build}
test=$1
shift
for bin in nginx curl /usr/bin/python3; do
    command -v "$bin" >/dev/null || { echo "SKIP: $bin is not installed" >&2; exit 77; }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "SKIP: no PostgreSQL server" >&2; exit 77; }

var=$(mktemp -d /tmp/kiln-test.XXXXXX)
chmod 755 "$var"
# shellcheck source=../../deploy/local/stack.sh
source "$src/deploy/local/stack.sh"
cleanup() {
    local rc=$?
    stack_down >/dev/null 2>&1 || true
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
        echo "--- kiln-api log (last 40 lines) ---" >&2
        tail -40 "$var/log/kiln-api.log" >&2 2>/dev/null || true
        echo "--- nginx error log ---" >&2
        tail -10 "$var/log/nginx-error.log" >&2 2>/dev/null || true
    fi
    rm -rf "$var"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export STACK_PG_FSYNC=${STACK_PG_FSYNC:-off}
export KILN_STATS_INTERVAL_S=${KILN_STATS_INTERVAL_S:-1}
stack_init "$var" "$build"
stack_up
export KILN_URL=$STACK_URL KILN_STACK_VAR=$var KILN_BUILD_DIR=$build KILN_SOURCE_DIR=$src
KILN_ADMIN_TOKEN=$(stack_admin_token)
export KILN_ADMIN_TOKEN
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
case "$test" in
*.py) /usr/bin/python3 "$test" "$@" ;;
*) bash "$test" "$@" ;;
esac
