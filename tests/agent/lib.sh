# Shared helpers for kiln-agent integration scripts: free ports, server start-up
# with readiness checks, process cleanup, job files. Loopback (127.0.0.1) only.
set -eu
PY=/usr/bin/python3
AGENT="${KILN_BUILD_DIR:?}/agent/kiln-agent"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d /tmp/kiln-agent-test.XXXXXX)"
PIDS=()

cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

skip() {
    echo "SKIP: $*" >&2
    exit 77
}

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port: waits until something accepts on 127.0.0.1:port (5 s)
    for _ in $(seq 1 100); do
        if $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    fail "no server came up on port $1"
}

start_sink() { # port [extra args]: Postfix smtp-sink on 127.0.0.1:port
    [ -x /usr/sbin/smtp-sink ] || skip "Postfix smtp-sink not installed"
    local port=$1
    shift
    local user=()
    [ "$(id -u)" = 0 ] && user=(-u nobody)
    /usr/sbin/smtp-sink "${user[@]}" "$@" 127.0.0.1:"$port" 2000 >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port "$port"
}

start_py() { # script args...: a python server that prints READY
    local log="$WORK/server.$RANDOM.log"
    $PY "$@" >"$log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        grep -q READY "$log" 2>/dev/null && return 0
        sleep 0.05
    done
    cat "$log" >&2
    fail "python server $1 did not start"
}

# wait_for seconds command...: runs the command every 0.1 s until it succeeds (0), or
# gives up after that many seconds (1). inbox_lease_run.sh has its own, over events.
wait_for() { # seconds command...: polls every 0.1 s
    local n=$(($1 * 10))
    shift
    for _ in $(seq 1 "$n"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# make_jobs out.json spec...: each spec is
#   mbid:host:port:security:user:password:ca_file:nsends[:not_before_s]
# ("-" for none). Send ids are mbid*1000+k. A mailbox with a user on security plain
# (loopback test servers) sets smtp.allow_plaintext_auth. JOBS_TTL_S sets the lease
# ttl (default 120).
make_jobs() {
    local out=$1
    shift
    $PY - "$out" "$@" <<'PYEOF'
import json, os, sys
out, specs = sys.argv[1], sys.argv[2:]
mbs = []
for spec in specs:
    f = spec.split(":")
    mbid, host, port, sec, user, pw, ca, n = f[:8]
    nb = int(f[8]) if len(f) > 8 else 0
    none = lambda v: None if v == "-" else v
    mbid = int(mbid)
    sends = [{"id": mbid * 1000 + k, "not_before_s": nb, "to": "rcpt%d@other.test" % k,
              "subject": "Warmup %d" % k, "body": "Hello %d\n.\nbye\n" % k,
              "message_id": "<m%d.%d@acme.test>" % (mbid, k)} for k in range(int(n))]
    smtp = {"host": host, "port": int(port), "security": sec, "username": none(user),
            "password": none(pw), "oauth_token": None, "ca_file": none(ca)}
    if sec == "plain" and none(user):
        smtp["allow_plaintext_auth"] = True
    mbs.append({"id": mbid, "address": "anna%d@acme.test" % mbid, "display_name": "Anna",
                "smtp": smtp, "sends": sends})
ttl = int(os.environ.get("JOBS_TTL_S", "120"))
json.dump({"lease_id": "test", "ttl_s": ttl, "mailboxes": mbs}, open(out, "w"))
PYEOF
}

# count_status results.jsonl status: number of lines with that status
count_status() {
    grep -c "\"status\":\"$2\"" "$1" || true
}
