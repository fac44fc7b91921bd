#!/bin/bash
# A host name with several addresses: when one refuses, the session moves on to the
# next, and when all refuse the slot is deferred naming how many were tried. The
# names live in a hosts file the test bind-mounts over /etc/hosts in a private mount
# namespace (so getaddrinfo really returns two addresses), which needs root.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
[ "$(id -u)" = 0 ] || skip "needs root for a private mount namespace (unshare -m)"
unshare -m true 2>/dev/null || skip "unshare -m is not permitted here"
[ -x /usr/sbin/smtp-sink ] || skip "Postfix smtp-sink not installed"
PORT=$(free_port)
/usr/sbin/smtp-sink -u nobody 127.0.0.2:"$PORT" 100 >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    $PY -c "import socket; socket.create_connection(('127.0.0.2',$PORT),0.2).close()" 2>/dev/null && break
    sleep 0.05
done
# 127.0.0.3 and 127.0.0.4 have nothing listening on PORT: connects are refused
printf '127.0.0.1 localhost\n127.0.0.3 multi.test\n127.0.0.2 multi.test\n127.0.0.3 dead.test\n127.0.0.4 dead.test\n' >hosts
IN_NS=(unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$WORK/hosts")
order=$("${IN_NS[@]}" getent ahostsv4 multi.test | awk '$2 == "STREAM" {print $1}' | tr '\n' ' ')
[ "$order" = "127.0.0.3 127.0.0.2 " ] || fail "the hosts file did not give two addresses in order: '$order'"

make_jobs jobs.json "1:multi.test:$PORT:plain:-:-:-:2" "2:multi.test:$PORT:plain:-:-:-:1" \
    "3:dead.test:$PORT:plain:-:-:-:1"
KILN_AGENT_MAX_ATTEMPTS=1 timeout 30 "${IN_NS[@]}" "$AGENT" send --file jobs.json --threads 1 \
    --concurrency 1 >res.jsonl 2>err || fail "agent exited $? ($(cat err))"
[ "$(count_status res.jsonl sent)" = 3 ] || fail "multi.test: expected 3 sent: $(cat res.jsonl)"
grep '"send_id":3000,' res.jsonl | grep '"status":"deferred"' |
    grep -q 'Connection refused (2 addresses tried)' || fail "dead.test: $(grep '"send_id":3000,' res.jsonl)"
echo "PASS agent_dns_fallback"
