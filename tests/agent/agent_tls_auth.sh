#!/bin/bash
# kiln-agent against aiosmtpd with a CA and certificates made here: STARTTLS + AUTH
# and implicit TLS + AUTH deliver messages that arrive byte-exact; a UTF-8 recipient
# goes with SMTPUTF8 to the server that offers it and is `failed` at the one that does
# not; a wrong password is `auth`; a certificate for another host, or a CA the agent
# was not told to trust, is `tls`.
source "$(dirname "$0")/lib.sh"
$PY -c 'import aiosmtpd' 2>/dev/null || skip "python3-aiosmtpd not installed"
command -v openssl >/dev/null || skip "openssl not installed"

cd "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kiln test CA" \
    -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" 2>/dev/null
mkcert() { # name san
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$2" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
mkcert good "DNS:localhost,IP:127.0.0.1"
mkcert wrong "DNS:wrong.example"

mkdir -p st tl
P_ST=$(free_port)
P_TLS=$(free_port)
P_WRONG=$(free_port)
start_py "$HERE/aiosmtpd_server.py" --port "$P_ST" --mode starttls --cert good.pem --key good.key --save-dir st --smtputf8
start_py "$HERE/aiosmtpd_server.py" --port "$P_TLS" --mode tls --cert good.pem --key good.key --save-dir tl
start_py "$HERE/aiosmtpd_server.py" --port "$P_WRONG" --mode starttls --cert wrong.pem --key wrong.key

CA="$WORK/ca.pem"
# a CA path naming a FIFO nobody writes to, and a device: loading either must fail at
# once (regular files only, opened without blocking), never stall the agent
mkfifo "$WORK/ca.fifo"
make_jobs jobs.json \
    "1:127.0.0.1:$P_ST:starttls:anna1@acme.test:secret:$CA:2" \
    "2:localhost:$P_TLS:tls:anna2@acme.test:secret:$CA:2" \
    "3:127.0.0.1:$P_ST:starttls:anna3@acme.test:wrong-password:$CA:1" \
    "4:127.0.0.1:$P_WRONG:starttls:anna4@acme.test:secret:$CA:1" \
    "5:127.0.0.1:$P_ST:starttls:anna5@acme.test:secret:-:1" \
    "6:127.0.0.1:$P_TLS:tls:anna6@acme.test:secret:$CA:1" \
    "7:127.0.0.1:$P_ST:starttls:anna7@acme.test:secret:$WORK/ca.fifo:1" \
    "8:127.0.0.1:$P_ST:starttls:anna8@acme.test:secret:/dev/zero:1"
# the server checks user == --user: give each mailbox the right login. UTF-8
# recipients (raw UTF-8 in the file): josé@exämple.test on the STARTTLS server, which
# offers SMTPUTF8; 用户@例子.test on the implicit-TLS one, which does not.
$PY - jobs.json <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
for m in j["mailboxes"]:
    if m["smtp"]["password"] == "secret":
        m["smtp"]["username"] = "anna@acme.test"
    m["sends"][0]["subject"] = "Grüße aus Köln"
    m["sends"][0]["body"] = "Hallo Bob,\n.\nschöne Grüße\n" + "x" * 100 + "\n"
j["mailboxes"][0]["sends"][1]["to"] = "josé@exämple.test"
j["mailboxes"][1]["sends"][1]["to"] = "用户@例子.test"
json.dump(j, open(sys.argv[1], "w", encoding="utf-8"), ensure_ascii=False)
PYEOF
KILN_AGENT_MAX_ATTEMPTS=1 KILN_AGENT_TIMEOUT_COMMAND_MS=10000 timeout 60 "$AGENT" send --file jobs.json --threads 2 >res.jsonl 2>err ||
    fail "agent exited $? ($(cat err))"
status_of() { grep "\"send_id\":$1," res.jsonl | sed 's/.*"status":"\([a-z]*\)".*/\1/'; }
[ "$(status_of 1000)" = sent ] || fail "STARTTLS+AUTH: $(grep '"send_id":1000,' res.jsonl)"
[ "$(status_of 1001)" = sent ] || fail "STARTTLS+AUTH second slot: $(grep '"send_id":1001,' res.jsonl)"
[ "$(status_of 2000)" = sent ] || fail "implicit TLS by host name: $(grep '"send_id":2000,' res.jsonl)"
grep '"send_id":2001,' res.jsonl | grep -q '"status":"failed","smtp_code":null,.*"detail":"recipient needs SMTPUTF8, which the server does not offer"' ||
    fail "UTF-8 recipient without server SMTPUTF8 must be failed: $(grep '"send_id":2001,' res.jsonl)"
[ "$(status_of 6000)" = sent ] || fail "implicit TLS by IP: $(grep '"send_id":6000,' res.jsonl)"
[ "$(status_of 3000)" = auth ] || fail "wrong password must be auth: $(grep '"send_id":3000,' res.jsonl)"
grep '"send_id":3000,' res.jsonl | grep -q '"smtp_code":535' || fail "auth failure without 535"
[ "$(status_of 4000)" = tls ] || fail "wrong-host certificate must be tls: $(grep '"send_id":4000,' res.jsonl)"
grep '"send_id":4000,' res.jsonl | grep -qi 'hostname mismatch\|verif' || fail "tls detail: $(grep '"send_id":4000,' res.jsonl)"
[ "$(status_of 5000)" = tls ] || fail "untrusted CA must be tls: $(grep '"send_id":5000,' res.jsonl)"
for id in 7000 8000; do
    grep "\"send_id\":$id," res.jsonl | grep -q '"status":"tls".*not a regular file' ||
        fail "a CA path that is not a regular file must end tls at once: $(grep "\"send_id\":$id," res.jsonl)"
done

# byte-exact check of what the servers received
$PY - st tl <<'PYEOF' || fail "received messages differ from what was sent"
import glob, os, re, sys
msgs = {}
for d in sys.argv[1:]:
    for f in glob.glob(os.path.join(d, "*.eml")):
        data = open(f, "rb").read()
        env = open(f[:-4] + ".env", encoding="utf-8", errors="surrogateescape").read().split()
        mid = re.search(rb"^Message-ID: (\S+)\r$", data, re.M).group(1).decode()
        msgs[mid] = (data, env)
assert set(msgs) == {"<m1.0@acme.test>", "<m1.1@acme.test>", "<m2.0@acme.test>", "<m6.0@acme.test>"}, msgs.keys()
# Kiln's mail is known by the Message-ID the lease gave (each message carries exactly
# its slot's), never by a constant marker header.
for mid, (data, _env) in msgs.items():
    assert re.findall(rb"^Message-ID: (\S+)\r$", data, re.M) == [mid.encode()], (mid, data[:300])
    assert not re.search(rb"^X-Kiln", data, re.M | re.I), data[:300]
data, env = msgs["<m1.0@acme.test>"]
assert env == ["anna1@acme.test", "rcpt0@other.test", "-"], env
date = re.search(rb"^Date: ([^\r]*)\r\n", data, re.M).group(1)
assert re.fullmatch(rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000", date), date
want = (b"Date: " + date + b"\r\n"
        b"Message-ID: <m1.0@acme.test>\r\n"
        b"From: \"Anna\" <anna1@acme.test>\r\n"
        b"To: <rcpt0@other.test>\r\n"
        b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=UTF-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"Hallo Bob,\r\n"
        b"=2E\r\n"
        b"sch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n"
        + b"x" * 75 + b"=\r\n" + b"x" * 25 + b"\r\n")
assert data == want, (data, want)
for mid in "<m2.0@acme.test>", "<m6.0@acme.test>":
    assert msgs[mid][1][2] == "-", (mid, msgs[mid][1])
# the UTF-8 recipient: SMTPUTF8 on MAIL, the address raw in RCPT and in To (RFC 6532)
data, env = msgs["<m1.1@acme.test>"]
rcpt = "josé@exämple.test"
assert env == ["anna1@acme.test", rcpt, "SMTPUTF8"], env
date = re.search(rb"^Date: ([^\r]*)\r\n", data, re.M).group(1)
want = (b"Date: " + date + b"\r\n"
        b"Message-ID: <m1.1@acme.test>\r\n"
        b"From: \"Anna\" <anna1@acme.test>\r\n"
        b"To: <jos\xc3\xa9@ex\xc3\xa4mple.test>\r\n"
        b"Subject: Warmup 1\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=UTF-8\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"\r\n"
        b"Hello 1\r\n.\r\nbye\r\n")
assert data == want, (data, want)
import email
m = email.message_from_bytes(msgs["<m2.0@acme.test>"][0])
assert str(email.header.make_header(email.header.decode_header(m["Subject"]))) == "Grüße aus Köln"
assert m.get_payload(decode=True).decode() == "Hallo Bob,\r\n.\r\nschöne Grüße\r\n" + "x" * 100 + "\r\n"
PYEOF
echo "PASS agent_tls_auth"
