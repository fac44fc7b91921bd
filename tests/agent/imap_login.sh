#!/bin/bash
# kiln-agent's IMAP connections against a real Dovecot with a CA and a certificate made
# here (for the name localhost only): `inbox --file --once` logs in over implicit TLS
# and over STARTTLS, with a password and with an OAuth token (session ok); a wrong password is `auth`; a server certificate for
# another name (the address 127.0.0.1) and a CA the agent was not told to trust (the
# system store) are `tls`; a port where nothing listens is `connect`; --once exits 3
# when a login failed or an entry was set aside (named), 2 for a file with no usable entry. `kiln-agent check` with KILN_AGENT_CHECK_IMAP_* logs in and out,
# and names the failure for a wrong password.
source "$(dirname "$0")/lib.sh"
DOVECOT_TLS=1
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dovecot_user tok@acme.test ya29.kiln-test-token # XOAUTH2/OAUTHBEARER: the token is the password
dovecot_start
cd "$WORK"
dead=$(free_port)
make_inboxes inboxes.json \
    "1:localhost:$IMAPS_PORT:tls:anna@acme.test:s3cret:$DC_CA" \
    "2:localhost:$IMAP_PORT:starttls:anna@acme.test:s3cret:$DC_CA" \
    "3:localhost:$IMAPS_PORT:tls:anna@acme.test:wrong:$DC_CA" \
    "4:127.0.0.1:$IMAPS_PORT:tls:anna@acme.test:s3cret:$DC_CA" \
    "5:localhost:$IMAP_PORT:starttls:anna@acme.test:s3cret:-" \
    "6:127.0.0.1:$dead:tls:anna@acme.test:s3cret:$DC_CA" \
    "7:localhost:$IMAPS_PORT:tls:tok@acme.test:-:$DC_CA"
# inbox 7 logs in with an OAuth token instead of a password
$PY - inboxes.json <<'PYEOF'
import json, sys
v = json.load(open(sys.argv[1]))
v[-1]["imap"]["oauth_token"] = "ya29.kiln-test-token"
json.dump(v, open(sys.argv[1], "w"))
PYEOF
rc=0
timeout 50 "$AGENT" inbox --file inboxes.json --once >events.jsonl 2>err.log || rc=$?
[ "$rc" = 3 ] || fail "inbox --once: exit $rc, expected 3 (a login failed): $(cat err.log)"
status_of() { # mailbox id -> its session status
    $PY -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["type"] == "session" and e["mailbox_id"] == int(sys.argv[2]): print(e["status"])' \
        events.jsonl "$1"
}
expect() { # mbid status why
    local got
    got=$(status_of "$1")
    [ "$got" = "$2" ] || fail "inbox $1 ($3): session '$got', expected '$2'; events: $(cat events.jsonl); log: $(cat err.log)"
}
expect 1 ok "implicit TLS"
expect 2 ok "STARTTLS"
expect 3 auth "wrong password"
expect 4 tls "certificate for another name"
expect 5 tls "CA not trusted"
expect 6 connect "nothing listens"
expect 7 ok "OAuth token (SASL)"
grep -qE "user=<tok@acme.test>, method=(XOAUTH2|OAUTHBEARER)" "$D/dovecot.log" ||
    fail "the token login did not use XOAUTH2/OAUTHBEARER: $(grep tok@ "$D/dovecot.log" | tail -2)"
grep -q '"mailbox_id":3,"status":"auth","detail":"[^"]' events.jsonl ||
    fail "the auth event names no detail: $(grep '"mailbox_id":3' events.jsonl)"
! grep -q s3cret events.jsonl err.log || fail "a password appears in the output"

# check: one login, then LOGOUT (Dovecot logs both)
export KILN_API_URL=http://127.0.0.1:$dead KILN_AGENT_TOKEN=x KILN_AGENT_SPOOL_DIR=$WORK/spool
export KILN_AGENT_CHECK_IMAP_HOST=localhost KILN_AGENT_CHECK_IMAP_PORT=$IMAPS_PORT
export KILN_AGENT_CHECK_IMAP_USER=anna@acme.test KILN_AGENT_CHECK_IMAP_PASSWORD=s3cret
export KILN_AGENT_CHECK_IMAP_CA_FILE=$DC_CA
timeout 40 "$AGENT" check >check.out 2>&1 || true
grep -q "^ok: *IMAP login to anna@acme.test@localhost:$IMAPS_PORT (tls) works" check.out ||
    fail "check did not log in: $(cat check.out)"
grep -q "Logged out" "$D/dovecot.log" || fail "Dovecot saw no LOGOUT: $(tail -5 "$D/dovecot.log")"
KILN_AGENT_CHECK_IMAP_PASSWORD=nope timeout 40 "$AGENT" check >check2.out 2>&1 || true
grep -q "^PROBLEM: IMAP login to .* failed: auth" check2.out ||
    fail "check with a wrong password: $(cat check2.out)"
# a file whose only entry is bad (port 0) is refused (exit 2), naming the field; nothing
# connects
make_inboxes bad.json "1:localhost:0:tls:anna@acme.test:s3cret:$DC_CA"
rc=0
"$AGENT" inbox --file bad.json --once >bad.out 2>bad.err || rc=$?
[ "$rc" = 2 ] && grep -q "inboxes\[0\].imap.port" bad.err && [ ! -s bad.out ] ||
    fail "a bad inbox file: exit $rc, $(cat bad.err bad.out)"
# the same parser as a lease answer: a bad entry beside a good one is set aside by name
# (stderr, and a session event, protocol, on stdout) and the good one is watched; --once
# counts the entry set aside as a failed login (exit 3)
make_inboxes mixed.json "1:localhost:$IMAPS_PORT:tls:anna@acme.test:s3cret:$DC_CA" \
    "2:localhost:0:tls:anna@acme.test:s3cret:$DC_CA"
rc=0
timeout 40 "$AGENT" inbox --file mixed.json --once >mixed.out 2>mixed.err || rc=$?
[ "$rc" = 3 ] && grep -q "inboxes\[1\].imap.port: .*(entry set aside)" mixed.err &&
    events mixed.out "e['mailbox_id']==2 and e['type']=='session' and e['status']=='protocol' and 'imap.port' in e['detail']" | grep -q . &&
    events mixed.out "e['mailbox_id']==1 and e['type']=='session' and e['status']=='ok'" | grep -q . ||
    fail "a file with one bad entry: exit $rc, $(cat mixed.err mixed.out)"
rc=0
"$AGENT" inbox --once >/dev/null 2>bad.err || rc=$?
[ "$rc" = 2 ] || fail "inbox without --file: exit $rc"
echo "PASS imap_login"
