#!/usr/bin/env bash
# `make down`: stops everything `make up` started (agent, sink, Postfix and Dovecot, nginx, kiln-api and its
# restart loop, PostgreSQL). Data stays in var/ for the next `make up`; `rm -rf var` forgets it.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
var=$src/var
[ -f "$var/stack.env" ] || { echo "down: nothing to stop (no var/stack.env)"; exit 0; }
# shellcheck source=stack.sh
source "$src/deploy/local/stack.sh"
# The ports and the cells of the running stack.
# shellcheck source=/dev/null
source "$var/stack.env"
port=$STACK_HTTP_PORT
stack_init "$var" "${1:-$src/build}" "$port" 2>/dev/null || stack_init "$var" "$src" "$port"
stack_kill_pidfile "$var/run/kiln-agent.pid" TERM
stack_kill_pidfile "$var/run/smtp-sink.pid" TERM
if [ -d "$var/mail" ]; then
    # shellcheck source=mailstack.sh
    source "$src/deploy/local/mailstack.sh"
    mail_init "$var"
    mail_down
fi
stack_down
echo "kiln stopped (data kept in var/)"
