#!/usr/bin/env bash
# test_systemd_units_verify_and_are_sandboxed: every unit in deploy/systemd passes
# `systemd-analyze verify` without a single warning (ExecStart pointed at the built
# binaries, since verify wants the executable to exist), template instances included,
# and the services keep their sandboxing (`systemd-analyze security --offline`).
. "$(dirname "$0")/lib.sh"
need systemd-analyze
deploy_tmpdir
for b in api/kiln-api agent/kiln-agent; do
    [ -x "$KILN_BUILD_DIR/$b" ] || fail "$KILN_BUILD_DIR/$b is not built"
done
mkdir -p "$T/units"
cp "$DEPLOY"/systemd/*.service "$DEPLOY"/systemd/*.socket "$T/units/"
sed -i -e "s#/usr/bin/kiln-api#$KILN_BUILD_DIR/api/kiln-api#g" \
    -e "s#/usr/bin/kiln-agent#$KILN_BUILD_DIR/agent/kiln-agent#g" "$T"/units/*
for unit in kiln-agent.service kiln-api.service kiln-api.socket kiln-api@2.service kiln-api@2.socket; do
    out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$T/units/$unit" 2>&1) ||
        fail "systemd-analyze verify $unit: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $unit warned: $out"
done
ok "systemd-analyze verify: kiln-agent.service, kiln-api.service/.socket, kiln-api@2.service/.socket"

# Exposure 0 (locked down) .. 10 (unprotected); both services must stay at or below 2.5.
for unit in kiln-agent.service kiln-api.service kiln-api@2.service; do
    systemd-analyze security --offline=yes --threshold=25 "$T/units/$unit" >"$T/sec.txt" 2>&1 ||
        fail "$unit: sandboxing got weaker: $(tail -1 "$T/sec.txt")"
done
ok "sandboxing exposure <= 2.5 for every service"

# What the deployment relies on, by name (reasons in the unit files).
expect() { grep -qx "$2" "$DEPLOY/systemd/$1" || fail "$1: expected the line '$2'"; }
expect kiln-agent.service 'ProtectSystem=strict'
expect kiln-agent.service 'NoNewPrivileges=yes'
expect kiln-agent.service 'ReadWritePaths=/var/lib/kiln/agent'
expect kiln-agent.service 'Restart=on-failure'
expect kiln-agent.service 'User=kiln'
grep -Eq '^LimitNOFILE=[0-9]{5,}$' "$DEPLOY/systemd/kiln-agent.service" ||
    fail "kiln-agent.service: LimitNOFILE must allow thousands of SMTP sessions"
grep -q '^SystemCallFilter=.*io_uring_setup' "$DEPLOY/systemd/kiln-agent.service" ||
    fail "kiln-agent.service: the syscall filter must let io_uring through"
# The agent reads agent.conf itself: through EnvironmentFile= the values of the start
# would sit in its environment and win over the edited file on reload (SIGHUP).
expect kiln-agent.service 'ExecStart=/usr/bin/kiln-agent run --config /etc/kiln/agent.conf'
expect kiln-agent.service 'ExecReload=/bin/kill -HUP $MAINPID'
! grep -qE '^(EnvironmentFile|Environment)=' "$DEPLOY/systemd/kiln-agent.service" ||
    fail "kiln-agent.service: settings belong in agent.conf, not in the unit's environment"
expect kiln-api.service 'Requires=kiln-api.socket'
# A kiln-api that dies anyway (a crash) is started again; the socket stays open meanwhile.
expect kiln-api.service 'Restart=on-failure'
expect kiln-api@.service 'Restart=on-failure'
expect kiln-api.socket 'ListenStream=/run/kiln/api.sock'
expect kiln-api@.socket 'ListenStream=/run/kiln/api-%i.sock'
# The nginx upstream and the sockets must agree.
grep -q 'server unix:/run/kiln/api.sock' "$KILN_SOURCE_DIR/nginx/kiln.conf" ||
    fail "nginx/kiln.conf does not use kiln-api.socket's path"
ok "units keep strict sandboxing, the spool, the fd limit, io_uring, socket activation and restarts; the agent reads agent.conf itself and reloads"

# The packaged config files are valid EnvironmentFiles: KEY=VALUE or comments only.
for f in "$DEPLOY"/config/agent.conf "$DEPLOY"/config/api.env; do
    bad=$(grep -vE '^(#.*|[A-Z][A-Z0-9_]*=.*|)$' "$f" || true)
    [ -z "$bad" ] || fail "$f: not KEY=VALUE: $bad"
done
ok "default config files are plain KEY=VALUE environment files"

# Every setting the agent's sample leaves commented out is a valid line once uncommented
# (a comment after a value would become part of it: KILN_AGENT_HEARTBEAT_S=0  (0: ...)
# stopped the agent). The agent's own parser reads the uncommented file; the environment
# keeps check off the network and away from a token file.
sed -E 's/^#([A-Z][A-Z0-9_]*=)/\1/' "$DEPLOY/config/agent.conf" >"$T/agent-uncommented.conf"
out=$(KILN_API_URL=http://127.0.0.1:1 KILN_AGENT_TOKEN=x KILN_API_CA_FILE='' \
    "$KILN_BUILD_DIR/agent/kiln-agent" check --config "$T/agent-uncommented.conf" 2>&1 || true)
echo "$out" | head -1 | grep -q '^ok: *configuration read' ||
    fail "agent.conf with its commented settings uncommented does not parse: $(echo "$out" | head -1)"
ok "agent.conf: every commented-out setting parses once uncommented"
