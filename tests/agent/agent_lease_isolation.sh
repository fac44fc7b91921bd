#!/bin/bash
# kiln-agent run: one bad mailbox never poisons a lease (issue 10). A stand-in control
# plane hands out one lease whose second mailbox has invalid UTF-8 in its password and
# whose third has a port out of range; the two good mailboxes are sent to a scripted
# SMTP server, the bad ones' slots are reported `failed` with a detail naming the field,
# and nothing of the lease waits for its expiry.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
SMTP=$(free_port)
API=$(free_port)
start_py "$HERE/slow_server.py" --port "$SMTP" --log smtp.log
$PY - lease.json "$SMTP" <<'PYEOF'
import json, sys
out, port = sys.argv[1], int(sys.argv[2])
def mb(mid, smtp):
    return {"id": mid, "address": "m%d@acme.test" % mid, "display_name": "M", "smtp": smtp,
            "sends": [{"id": mid * 100 + k, "not_before_s": 0, "to": "r%d@other.test" % k,
                       "subject": "s", "body": "b", "message_id": None}
                      for k in range(1, 3 if mid == 2 else 2)]}
good = {"host": "127.0.0.1", "port": port, "security": "plain"}
lease = {"lease_id": "L-iso", "ttl_s": 60, "mailboxes": [
    mb(1, good),
    mb(2, dict(good, username="u", password="PASSWORD", allow_plaintext_auth=True)),
    mb(3, dict(good, port=70000)),
    mb(4, good)]}
data = json.dumps(lease).encode().replace(b"PASSWORD", b"pa\xffss")
open(out, "wb").write(data)
PYEOF
start_py "$HERE/fake_control.py" --port "$API" --lease-file lease.json --reports reports.jsonl
mkdir spool
KILN_API_URL="http://127.0.0.1:$API" KILN_AGENT_TOKEN=test-token-0123456789abcdef \
    KILN_AGENT_SPOOL_DIR="$WORK/spool" KILN_AGENT_NAME=iso KILN_AGENT_CONCURRENCY=10 \
    KILN_AGENT_THREADS=1 KILN_AGENT_REPORT_INTERVAL_MS=100 \
    "$AGENT" run >agent.log 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
for _ in $(seq 1 100); do
    [ -f reports.jsonl ] && [ "$(wc -l <reports.jsonl)" -ge 5 ] && break
    sleep 0.1
done
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent run exited $? after SIGTERM: $(tail -5 agent.log)"
[ -f reports.jsonl ] || fail "nothing reported: the lease was refused whole? $(grep -i lease agent.log | tail -3)"
$PY - reports.jsonl <<'PYEOF' || fail "reports: $(cat reports.jsonl)"
import json, sys
rs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rs[r["send_id"]] = r
assert set(rs) == {101, 201, 202, 301, 401}, sorted(rs)
for sid in (101, 401):
    assert rs[sid]["status"] == "sent", rs[sid]
for sid in (201, 202):
    assert rs[sid]["status"] == "failed", rs[sid]
    assert "mailboxes[1].smtp.password: not valid UTF-8" in rs[sid]["detail"], rs[sid]
assert rs[301]["status"] == "failed" and "mailboxes[2].smtp.port" in rs[301]["detail"], rs[301]
PYEOF
[ "$(grep -c MESSAGE smtp.log)" = 2 ] || fail "the SMTP server should have received 2 messages: $(cat smtp.log)"
echo "ok: the good mailboxes of a lease were sent, the bad ones reported failed"
