#!/usr/bin/env bash
# The local stack's real mail path (deploy/local/mailstack.sh, issue 14): SMTP into a
# Postfix instance of its own, LMTP into an unprivileged Dovecot, a global Sieve script
# that junks a per-domain share of kiln's Message-IDs. 600 messages with kiln-shaped
# Message-IDs (random MACs) go to two domains set to junk 40 % and 5 %; the shares found
# in Junk over IMAP must be within 4.5 standard deviations of those; a message with
# X-Kiln-Test-Junk: yes lands in Junk whatever its Message-ID; nothing is lost (every
# message is in INBOX or Junk); SMTP AUTH is checked against the mailboxes' passwords;
# mail_down stops both servers.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "Postfix's master must start as root"
need postfix doveadm
[ -x /usr/lib/dovecot/lmtp ] || skip "dovecot-lmtpd not installed"
[ -f /usr/lib/dovecot/modules/lib90_sieve_plugin.so ] || skip "dovecot-sieve not installed"
deploy_tmpdir
source "$DEPLOY/local/mailstack.sh"
KILN_MX_PORT=$(free_port) KILN_IMAP_PORT=$(free_port) KILN_LMTP_PORT=$(free_port)
export KILN_MX_PORT KILN_IMAP_PORT KILN_LMTP_PORT
mail_init "$T"
DEPLOY_CLEANUP() { mail_down; }
mail_domain a.test 40
mail_domain b.test 5
mail_user anna@a.test pw-a
mail_user bert@b.test pw-b
mail_up || fail "mail stack did not start: $(tail -20 "$T"/log/*.log)"
ok "postfix on $KILN_MX_PORT, dovecot imap $KILN_IMAP_PORT lmtp $KILN_LMTP_PORT"

python3 - "$KILN_MX_PORT" "$KILN_IMAP_PORT" <<'PY' || fail "placement shares (logs: $(tail -5 "$T"/log/*.log))"
import imaplib, math, secrets, smtplib, sys, time
mx, imap = int(sys.argv[1]), int(sys.argv[2])
N = 300
with smtplib.SMTP("127.0.0.1", mx, timeout=30) as s:
    s.ehlo()
    try:
        s.login("anna@a.test", "wrong")
        raise SystemExit("AUTH with a wrong password was accepted")
    except smtplib.SMTPAuthenticationError:
        pass
    s.login("anna@a.test", "pw-a")
    for rcpt in ("anna@a.test", "bert@b.test"):
        for i in range(N):
            mid = "<%d.1%s@sender.test>" % (i + 1, secrets.token_hex(12))
            s.sendmail("x@sender.test", [rcpt],
                       "From: x@sender.test\r\nTo: %s\r\nSubject: t\r\nMessage-ID: %s\r\n\r\nhi\r\n" % (rcpt, mid))
    s.sendmail("x@sender.test", ["bert@b.test"],
               "From: x@sender.test\r\nTo: bert@b.test\r\nSubject: forced\r\n"
               "Message-ID: <1.1ffffffffffffffffffffffff@sender.test>\r\nX-Kiln-Test-Junk: yes\r\n\r\nhi\r\n")

def counts(user, pw, want):
    deadline = time.monotonic() + 60
    while True:
        c = imaplib.IMAP4("127.0.0.1", imap)
        c.login(user, pw)
        n = {}
        for f in ("INBOX", "Junk"):
            typ, data = c.select(f, readonly=True)
            n[f] = int(data[0])
        c.logout()
        if n["INBOX"] + n["Junk"] >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.5)

for user, pw, share, extra in (("anna@a.test", "pw-a", 102 / 256, 0), ("bert@b.test", "pw-b", 13 / 256, 1)):
    n = counts(user, pw, N + extra)
    total = n["INBOX"] + n["Junk"]
    assert total == N + extra, "%s: %d of %d delivered" % (user, total, N + extra)
    junk = n["Junk"] - extra
    sd = math.sqrt(N * share * (1 - share))
    assert abs(junk - N * share) <= 4.5 * sd, "%s: %d junked, expected %.0f +- %.0f" % (user, junk, N * share, 4.5 * sd)
    print("ok - %s: %d/%d in Junk (share %.3f, expected %.3f)" % (user, junk, N, junk / N, share))
c = imaplib.IMAP4("127.0.0.1", imap)
c.login("bert@b.test", "pw-b")
c.select("Junk", readonly=True)
typ, data = c.search(None, "HEADER", "Subject", "forced")
assert data[0].split(), "X-Kiln-Test-Junk: yes did not land in Junk"
c.logout()
print("ok - X-Kiln-Test-Junk: yes lands in Junk")
PY
[ -s "$T/log/postfix.log" ] && [ -s "$T/log/dovecot.log" ] || fail "no logs under var/log"
mail_down
postfix -c "$MAIL_PF/etc" status >/dev/null 2>&1 && fail "postfix still running after mail_down"
[ -f "$MAIL_DC/run/master.pid" ] && kill -0 "$(cat "$MAIL_DC/run/master.pid")" 2>/dev/null &&
    fail "dovecot still running after mail_down"
ok "mail_down stopped postfix and dovecot"
echo "PASS mailstack"
