#!/bin/bash
# The IMAP protocol core against a real Dovecot (Debian dovecot-imapd/-lmtpd 2.3):
# Dovecot runs unprivileged with its runtime, state and log in the test dir, a
# passwd-file user and IMAP/LMTP on 127.0.0.1 high ports; three messages go in over
# LMTP; imap_dovecot_client drives CAPABILITY, LOGIN, CAPABILITY, LIST RETURN
# (SPECIAL-USE), SELECT, UID FETCH of Message-IDs, CREATE of a non-ASCII folder, UID
# MOVE with COPYUID and LOGOUT through imap_cmd/imap_resp and checks the outcome; then
# imap_inbox_dovecot runs the inbox session (imap_inbox) against the same server.
# KILN_IMAP_TRANSCRIPT=path keeps what the server sent (the fuzz corpus seed).
source "$(dirname "$0")/lib.sh"
[ -x /usr/sbin/dovecot ] || skip "dovecot not installed (dovecot-imapd, dovecot-lmtpd)"
[ -x /usr/lib/dovecot/lmtp ] || skip "dovecot-lmtpd not installed"
CLIENT="${KILN_BUILD_DIR:?}/tests/agent/imap_dovecot_client"
[ -x "$CLIENT" ] || fail "$CLIENT not built"
INBOX_DRIVER="${KILN_BUILD_DIR:?}/tests/agent/imap_inbox_dovecot"
[ -x "$INBOX_DRIVER" ] || fail "$INBOX_DRIVER not built"

D="$WORK/dc" # short: Dovecot's unix sockets live under it
mkdir -p "$D/run" "$D/state" "$D/mail" "$D/home"
user=$(id -un) group=$(id -gn)
as_user=()
if [ "$(id -u)" = 0 ]; then
    user=nobody group=nogroup
    getent group nogroup >/dev/null || group=$(id -gn nobody)
    chmod 711 "$WORK"
    chown -R "$user:$group" "$D"
    as_user=(setpriv --reuid="$user" --regid="$group" --clear-groups)
fi
imap_port=$(free_port)
lmtp_port=$(free_port)
printf 'anna@acme.test:{PLAIN}s3cret pw::::::\n' >"$D/passwd"
cat >"$D/dovecot.conf" <<CONF
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
info_log_path = $D/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
postmaster_address = postmaster@acme.test
mail_location = maildir:$D/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/passwd
}
userdb {
  driver = static
  args = uid=$user gid=$group home=$D/home/%u allow_all_users=yes
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Junk {
    special_use = \Junk
    auto = create
  }
  mailbox Trash {
    special_use = \Trash
    auto = create
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
  chroot =
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
service anvil {
  chroot =
}
service auth-worker {
  user = $user
}
CONF
chown "$user:$group" "$D/passwd" "$D/dovecot.conf" 2>/dev/null || true

# dovecot daemonizes but keeps stdout: give it a file, never a pipe
"${as_user[@]}" /usr/sbin/dovecot -c "$D/dovecot.conf" >"$D/start.log" 2>&1 ||
    fail "dovecot did not start: $(cat "$D/start.log" "$D/dovecot.log" 2>/dev/null | tail -20)"
stop_dovecot() {
    local pid=""
    pid=$(cat "$D/run/master.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}
trap 'rc=$?; stop_dovecot; (exit $rc); cleanup' EXIT
wait_port "$imap_port"
wait_port "$lmtp_port"

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
