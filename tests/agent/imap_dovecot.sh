#!/bin/bash
# The IMAP protocol core against a real Dovecot (Debian dovecot-imapd/-lmtpd 2.3):
# Dovecot (dovecot_lib.sh) runs unprivileged with its runtime, state and log in the
# test dir, a passwd-file user and IMAP/LMTP on 127.0.0.1 high ports; three messages go in over
# LMTP; imap_dovecot_client drives CAPABILITY, LOGIN, CAPABILITY, LIST RETURN
# (SPECIAL-USE), SELECT, UID FETCH of Message-IDs, CREATE of a non-ASCII folder, UID
# MOVE with COPYUID and LOGOUT through imap_cmd/imap_resp and checks the outcome; then
# imap_inbox_dovecot runs the inbox session (imap_inbox) against the same server.
# KILN_IMAP_TRANSCRIPT=path keeps what the server sent (the fuzz corpus seed).
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh"
CLIENT="${KILN_BUILD_DIR:?}/tests/agent/imap_dovecot_client"
[ -x "$CLIENT" ] || fail "$CLIENT not built"
INBOX_DRIVER="${KILN_BUILD_DIR:?}/tests/agent/imap_inbox_dovecot"
[ -x "$INBOX_DRIVER" ] || fail "$INBOX_DRIVER not built"

dovecot_user anna@acme.test "s3cret pw"
dovecot_start
imap_port=$IMAP_PORT
lmtp_port=$LMTP_PORT

ids=("<k1.a9f3@acme.test>" "<k2.77c1@acme.test>" "<k3.0b2e@acme.test>")
$PY - "$lmtp_port" "${ids[@]}" <<'PYEOF' || fail "LMTP delivery failed: $(tail -20 "$D/dovecot.log")"
import smtplib, sys
port, ids = int(sys.argv[1]), sys.argv[2:]
with smtplib.LMTP("127.0.0.1", port) as lmtp:
    for i, mid in enumerate(ids):
        msg = (f"From: Bob <bob@other.test>\r\nTo: anna@acme.test\r\nSubject: warmup {i}\r\n"
               f"Message-ID: {mid}\r\nDate: Thu, 03 Dec 2026 03:00:00 +0000\r\n\r\nhello {i}\r\n")
        lmtp.sendmail("bob@other.test", ["anna@acme.test"], msg)
PYEOF

# the first id names the message moved: the last delivered, so its new UID differs
"$CLIENT" "$imap_port" anna@acme.test "s3cret pw" "$WORK/transcript" "${ids[2]}" "${ids[0]}" "${ids[1]}" ||
    fail "IMAP client against Dovecot (log: $(tail -20 "$D/dovecot.log"))"
[ -n "${KILN_IMAP_TRANSCRIPT:-}" ] && cp "$WORK/transcript" "$KILN_IMAP_TRANSCRIPT"

# the inbox session (imap_inbox) on the same server: never watched, new mail found,
# file / mark / gone / stale, IDLE woken by an LMTP delivery, re-discovery after a crash
"$INBOX_DRIVER" "$imap_port" "$lmtp_port" anna@acme.test "s3cret pw" >"$WORK/inbox.log" 2>&1 ||
    fail "inbox session against Dovecot: $(tail -40 "$WORK/inbox.log") (log: $(tail -5 "$D/dovecot.log"))"
[ -n "${KILN_VERBOSE:-}" ] && cat "$WORK/inbox.log"
echo "PASS imap_dovecot"
