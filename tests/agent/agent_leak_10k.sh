#!/bin/bash
# 10,000 one-message sessions against Postfix smtp-sink; under AddressSanitizer (the
# `make test` build) LeakSanitizer fails the run if any session leaks memory.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
PORT=$(free_port)
start_sink "$PORT"
$PY - jobs.json "$PORT" <<'PYEOF'
import json, sys
port = int(sys.argv[2])
mbs = [{"id": i, "address": "m%d@acme.test" % i, "display_name": "M",
        "smtp": {"host": "127.0.0.1", "port": port, "security": "plain"},
        "sends": [{"id": i, "not_before_s": 0, "to": "r%d@other.test" % i,
                   "subject": "s", "body": "x" * 1024}]} for i in range(1, 10001)]
json.dump({"lease_id": "leak", "ttl_s": 300, "mailboxes": mbs}, open(sys.argv[1], "w"))
PYEOF
if nm -C "$AGENT" 2>/dev/null | grep -q __asan_init; then echo "ASan build: leaks are checked"; fi
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 150 "$AGENT" send --file jobs.json \
    --concurrency 200 --host-max-conns 200 --host-conns-per-min 100000000 >res.jsonl 2>err ||
    fail "agent exited $? ($(tail -20 err))"
grep -q "LeakSanitizer" err && fail "leak: $(head -30 err)"
sent=$(count_status res.jsonl sent)
[ "$sent" = 10000 ] || fail "expected 10000 sent, got $sent: $(grep -v '"sent"' res.jsonl | head -3)"
echo "PASS agent_leak_10k"
