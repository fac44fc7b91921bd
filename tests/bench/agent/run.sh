#!/bin/bash
# kiln-agent benchmarks (loopback only): kiln-agent vs Postfix smtp-source and vs
# nodemailer against one smtp-sink (1 KiB bodies, one connection per message, 50 and
# 500 sessions), STARTTLS + AUTH PLAIN against aiosmtpd vs nodemailer, and peak RSS
# with 10,000 concurrent plain and 2,000 concurrent TLS sessions.
# Usage: tests/bench/agent/run.sh [BUILD_DIR]   (env: BENCH_N, BENCH_TLS_N)
set -eu
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/tests/bench/agent"
BUILD="${1:-$ROOT/build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
AGENT="$BUILD/agent/kiln-agent"
PY=/usr/bin/python3
N=${BENCH_N:-20000}
RSS_N=${BENCH_RSS_N:-10000}
TLS_N=${BENCH_TLS_N:-2000}
THREADS=${BENCH_THREADS:-1}
WORK="$(mktemp -d /tmp/kiln-agent-bench.XXXXXX)"
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$AGENT" ] || { echo "build kiln-agent first ($AGENT)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        $PY -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server on $1 did not start" >&2
    exit 1
}
USER_OPT=()
[ "$(id -u)" = 0 ] && USER_OPT=(-u nobody)
start_sink() { # port [args]
    local port=$1
    shift
    /usr/sbin/smtp-sink "${USER_OPT[@]}" "$@" 127.0.0.1:"$port" 4096 >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port "$port"
}
if [ ! -d "$HERE/node_modules/nodemailer" ]; then
    (cd "$HERE" && npm install --no-audit --no-fund >/dev/null 2>&1) || echo "nodemailer unavailable" >&2
fi
have_node=0
[ -d "$HERE/node_modules/nodemailer" ] && command -v node >/dev/null && have_node=1

field() { $PY -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
report() { # label json n
    local wall cpu rss
    wall=$(field "$2" wall_s)
    cpu=$(field "$2" cpu_s)
    rss=$(field "$2" rss_mb)
    $PY -c "import sys; n,w,c=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print('%-34s %8d msgs %8.2f s %9.0f msgs/s %7.3f cpu-s/1k msgs %7.1f MiB' % (sys.argv[4], n, w, n/w, c*1000/n, float(sys.argv[5])))" "$3" "$wall" "$cpu" "$1" "$rss"
}
kiln_sent() { grep -c '"status":"sent"' "$1" || true; }

SINK=$(free_port)
start_sink "$SINK"
$PY "$HERE/make_jobs.py" "$WORK/plain.json" "$SINK" "$N"
echo "== plain SMTP to smtp-sink, $N messages of 1 KiB, one connection each (threads=$THREADS)"
for C in 50 500; do
    m=$($PY "$HERE/measure.py" "$WORK/k.out" -- "$AGENT" send --file "$WORK/plain.json" \
        --concurrency "$C" --threads "$THREADS" --host-max-conns "$C" --host-conns-per-min 100000000)
    echo "kiln-agent c=$C: sent $(kiln_sent "$WORK/k.out")/$N" >&2
    k_line=$(report "kiln-agent c=$C" "$m" "$N")
    k_json=$m
    m=$($PY "$HERE/measure.py" "$WORK/s.out" -- /usr/sbin/smtp-source -s "$C" -m "$N" -l 1024 \
        -f bench@acme.test -t sink@other.test 127.0.0.1:"$SINK")
    s_line=$(report "smtp-source -s $C" "$m" "$N")
    s_json=$m
    echo "$k_line"
    echo "$s_line"
    $PY - "$k_json" "$s_json" "$C" <<'PYEOF'
import json, sys
k, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("  ratio c=%s: rate kiln/smtp-source = %.2fx (goal >= 1.2), cpu/msg kiln/smtp-source = %.2fx (goal <= 0.8)"
      % (sys.argv[3], s["wall_s"] / k["wall_s"], k["cpu_s"] / s["cpu_s"]))
PYEOF
    if [ $have_node = 1 ]; then
        NN=$((N / 4))
        m=$($PY "$HERE/measure.py" "$WORK/n.out" -- node "$HERE/nodemailer_send.js" "$SINK" "$NN" "$C")
        echo "nodemailer c=$C: $(cat "$WORK/n.out")" >&2
        n_line=$(report "nodemailer c=$C" "$m" "$NN")
        echo "$n_line"
        $PY - "$k_json" "$m" "$N" "$NN" "$C" <<'PYEOF'
import json, sys
k, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
kn, nn = int(sys.argv[3]), int(sys.argv[4])
print("  ratio c=%s: rate kiln/nodemailer = %.1fx (goal >= 8), cpu/msg nodemailer/kiln = %.1fx"
      % (sys.argv[5], (kn / k["wall_s"]) / (nn / n["wall_s"]), (n["cpu_s"] / nn) / (k["cpu_s"] / kn)))
PYEOF
    fi
done

echo "== STARTTLS + AUTH PLAIN to aiosmtpd (python), $TLS_N messages, c=50"
cd "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >srv.ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile srv.ext \
    -out srv.pem 2>/dev/null
TLSP=$(free_port)
$PY "$ROOT/tests/agent/aiosmtpd_server.py" --port "$TLSP" --mode starttls --cert srv.pem --key srv.key \
    --user bench@acme.test --password pw >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$TLSP"
$PY "$HERE/make_jobs.py" tls.json "$TLSP" "$TLS_N" starttls "$WORK/ca.pem" bench@acme.test pw
m=$($PY "$HERE/measure.py" k.out -- "$AGENT" send --file tls.json --concurrency 50 --threads "$THREADS" \
    --host-conns-per-min 100000000)
echo "kiln-agent tls: sent $(kiln_sent k.out)/$TLS_N" >&2
report "kiln-agent STARTTLS+AUTH c=50" "$m" "$TLS_N"
k_json=$m
if [ $have_node = 1 ]; then
    m=$($PY "$HERE/measure.py" n.out -- node "$HERE/nodemailer_send.js" "$TLSP" "$TLS_N" 50 starttls \
        "$WORK/ca.pem" bench@acme.test pw)
    echo "nodemailer tls: $(cat n.out)" >&2
    report "nodemailer STARTTLS+AUTH c=50" "$m" "$TLS_N"
    $PY - "$k_json" "$m" <<'PYEOF'
import json, sys
k, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("  ratio: rate kiln/nodemailer = %.2fx, cpu/msg nodemailer/kiln = %.1fx (the python server bounds both rates)"
      % (n["wall_s"] / k["wall_s"], n["cpu_s"] / k["cpu_s"]))
PYEOF
fi

echo "== memory: kiln-agent with every session held open by the server (RSS sampled 2.5 s in)"
# rss_run label file n: runs the agent, samples its RSS and open sessions 2.5 s in
rss_run() {
    local label=$1 file=$2 n=$3 port=$4
    KILN_AGENT_TIMEOUT_GREETING_MS=${KILN_AGENT_TIMEOUT_GREETING_MS:-30000} KILN_AGENT_MAX_ATTEMPTS=1 \
        $PY "$HERE/measure.py" k.out -- "$AGENT" send --file "$file" --concurrency "$n" \
        --threads "$THREADS" --host-max-conns "$n" --host-conns-per-min 100000000 >m.json 2>/dev/null &
    local mp=$!
    sleep 2.5
    local apid rss=0 open=0
    apid=$(pgrep -n -f "kiln-agent send --file $file" || true)
    if [ -n "$apid" ]; then
        rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$apid/status" 2>/dev/null || echo 0)
        open=$(ss -Htn state established "( dport = :$port )" 2>/dev/null | wc -l)
    fi
    wait "$mp" || true
    local m
    m=$(cat m.json)
    echo "kiln-agent $label: $open sessions open at the sample, RSS then ${rss} MiB; peak RSS of the run $(field "$m" rss_mb) MiB (includes parsing the lease file); sent $(kiln_sent k.out)/$n in $(field "$m" wall_s) s"
}
# smtp-sink -w cannot hold 10,000 sessions at once here, so a scripted asyncio server
# that never answers the end of data holds them; the agent's 3 s end-of-data timeout
# then ends them as deferred (expected: only the memory is measured).
SLOW=$(free_port)
$PY "$ROOT/tests/agent/script_server.py" --port "$SLOW" --stall DOT --backlog 4096 >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$SLOW"
$PY "$HERE/make_jobs.py" rss.json "$SLOW" "$RSS_N"
KILN_AGENT_TIMEOUT_DATA_END_MS=3000 rss_run "$RSS_N concurrent plain sessions (goal <= 100 MiB)" \
    rss.json "$RSS_N" "$SLOW"
TLS2=$(free_port)
$PY "$ROOT/tests/agent/aiosmtpd_server.py" --port "$TLS2" --mode starttls --cert srv.pem --key srv.key \
    --user bench@acme.test --password pw --data-delay 4 >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$TLS2"
$PY "$HERE/make_jobs.py" tls2k.json "$TLS2" 2000 starttls "$WORK/ca.pem" bench@acme.test pw
rss_run "2000 concurrent STARTTLS sessions" tls2k.json 2000 "$TLS2"
