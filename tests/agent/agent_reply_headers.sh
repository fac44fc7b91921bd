#!/bin/bash
# A reply slot end to end (issue 13): kiln-agent send --file against aiosmtpd on
# loopback (implicit TLS, AUTH); the message the server receives carries In-Reply-To and
# References as the lease gave them (References folded at 78 columns, oldest first), a
# fresh slot carries neither, and a reply slot with a bad msg-id is refused with the
# field named, nothing of it sent (the lease loop sets such an entry aside and sends the
# rest: test_agent_wire).
source "$(dirname "$0")/lib.sh"
$PY -c 'import aiosmtpd' 2>/dev/null || skip "python3-aiosmtpd not installed"
command -v openssl >/dev/null || skip "openssl not installed"

cd "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kiln test CA" \
    -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >srv.ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile srv.ext -out srv.pem 2>/dev/null

mkdir -p got
PORT=$(free_port)
start_py "$HERE/aiosmtpd_server.py" --port "$PORT" --mode tls --cert srv.pem --key srv.key --save-dir got

make_jobs jobs.json "1:127.0.0.1:$PORT:tls:anna@acme.test:secret:$WORK/ca.pem:2"
make_jobs bad.json "2:127.0.0.1:$PORT:tls:anna@acme.test:secret:$WORK/ca.pem:1"
$PY - jobs.json <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
refs = ["<%d.1%s@thread%d.test>" % (i, "ab" * 12, i) for i in range(1, 21)]
reply = j["mailboxes"][0]["sends"][0]
reply.update({"to": "bob@other.test", "subject": "Re: Quick question",
              "in_reply_to": refs[-1], "references": refs})
json.dump(refs, open("refs.json", "w"))
json.dump(j, open(sys.argv[1], "w"))
j = json.load(open("bad.json"))
j["mailboxes"][0]["sends"][0].update({"to": "carol@other.test", "subject": "Re: x",
                                      "in_reply_to": "<not an id@x.test>",
                                      "references": ["<a@b.test>"]})
json.dump(j, open("bad.json", "w"))
PYEOF
set +e
KILN_AGENT_MAX_ATTEMPTS=1 timeout 60 "$AGENT" send --file bad.json >bad.jsonl 2>bad.err
rc=$?
set -e
[ "$rc" = 2 ] || fail "a reply slot with a bad in_reply_to: expected exit 2, got $rc ($(cat bad.err))"
grep -q "sends\[0\].in_reply_to: must be a msg-id" bad.err || fail "reason: $(cat bad.err)"

KILN_AGENT_MAX_ATTEMPTS=1 timeout 60 "$AGENT" send --file jobs.json >res.jsonl 2>err ||
    fail "send --file: exit $? ($(cat err))"
[ "$(count_status res.jsonl sent)" = 2 ] || fail "expected 2 sent: $(cat res.jsonl) $(cat err)"

$PY - got refs.json <<'PYEOF' || exit 1
import email, email.policy, glob, json, sys
refs = json.load(open(sys.argv[2]))
msgs = {}
for path in sorted(glob.glob(sys.argv[1] + "/*.eml")):
    raw = open(path, "rb").read()
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    msgs[m["To"].strip("<>")] = (raw, m)
def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
if sorted(msgs) != ["bob@other.test", "rcpt1@other.test"]:
    fail("delivered to %r (nothing of the refused file may go out)" % sorted(msgs))
raw, m = msgs["bob@other.test"]
if m["Subject"] != "Re: Quick question":
    fail("subject %r" % m["Subject"])
if m["In-Reply-To"] != refs[-1]:
    fail("In-Reply-To %r, want %r" % (m["In-Reply-To"], refs[-1]))
got = m["References"].split()
if got != refs:
    fail("References %r, want %r" % (got, refs))
head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
start = [i for i, l in enumerate(head) if l.startswith(b"References:")][0]
lines = [head[start]]
for l in head[start + 1:]:
    if not l.startswith(b" "):
        break
    lines.append(l)
if len(lines) < 10 or any(len(l) > 78 for l in lines):
    fail("References not folded at 78: %r" % lines)
if any(len(l) > 998 for l in head):
    fail("a header line over 998 octets")
_, fresh = msgs["rcpt1@other.test"]
if fresh["In-Reply-To"] is not None or fresh["References"] is not None:
    fail("a fresh message carries threading headers")
print("ok: the delivered reply carries In-Reply-To and %d References over %d lines"
      % (len(got), len(lines)))
PYEOF
echo "ok: reply slots reach the server with their threading headers"
