# A throwaway Dovecot for agent tests (source after lib.sh): unprivileged (as nobody
# when the test runs as root), runtime/state/log/mail under $WORK/dc (short: unix
# socket paths), passwd-file users, IMAP and LMTP on 127.0.0.1 high ports.
#   dovecot_user USER PASSWORD        before dovecot_start
#   DOVECOT_TLS=1                     a CA ($DC_CA) and a certificate for the name
#                                     localhost only (connecting to 127.0.0.1 by address
#                                     is "a certificate for another name") made here;
#                                     IMAP offers STARTTLS and implicit TLS ($IMAPS_PORT)
#   DOVECOT_SIEVE=1                   a global Sieve script files mail with the header
#                                     "X-Test-Junk: yes" into Junk (dovecot-sieve)
#   DOVECOT_NO_MOVE=1                 the capability list after login lacks MOVE
#   DOVECOT_RAWLOG=1                  what clients send after login is kept under
#                                     $D/home/USER/rawlog (*.in files)
#   dovecot_start / dovecot_stop / dovecot_restart
#   deliver USER MESSAGE-ID [junk]    one message over LMTP
# Ports: $IMAP_PORT (plain, STARTTLS when TLS), $IMAPS_PORT, $LMTP_PORT.
[ -x /usr/sbin/dovecot ] || skip "dovecot not installed (dovecot-imapd, dovecot-lmtpd)"
[ -x /usr/lib/dovecot/lmtp ] || skip "dovecot-lmtpd not installed"

D="$WORK/dc"
mkdir -p "$D/run" "$D/state" "$D/mail" "$D/home" "$D/sieve"
DC_USER=$(id -un) DC_GROUP=$(id -gn)
DC_AS=()
if [ "$(id -u)" = 0 ]; then
    DC_USER=nobody DC_GROUP=nogroup
    getent group nogroup >/dev/null || DC_GROUP=$(id -gn nobody)
    chmod 711 "$WORK"
    DC_AS=(setpriv --reuid="$DC_USER" --regid="$DC_GROUP" --clear-groups)
fi
IMAP_PORT=$(free_port)
IMAPS_PORT=$(free_port)
LMTP_PORT=$(free_port)
: >"$D/passwd"

dovecot_user() { # user password
    printf '%s:{PLAIN}%s::::::\n' "$1" "$2" >>"$D/passwd"
}

DC_SAN="DNS:localhost"
dc_make_certs() {
    command -v openssl >/dev/null || skip "openssl not installed"
    (
        cd "$D"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kiln test CA" \
            -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key \
            -out server.csr 2>/dev/null
        printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$DC_SAN" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem 2>/dev/null
    )
    DC_CA="$D/ca.pem"
}

dc_write_conf() {
    local ssl=no tls_conf="" imaps_port=0 lmtp_plugins="" sieve_conf="" caps=""
    if [ "${DOVECOT_TLS:-0}" = 1 ]; then
        [ -f "$D/ca.pem" ] && DC_CA="$D/ca.pem" || dc_make_certs
        ssl=yes
        imaps_port=$IMAPS_PORT
        tls_conf="ssl_cert = <$D/server.pem
ssl_key = <$D/server.key
ssl_min_protocol = TLSv1.2"
    fi
    if [ "${DOVECOT_SIEVE:-0}" = 1 ]; then
        [ -f /usr/lib/dovecot/modules/lib90_sieve_plugin.so ] || skip "dovecot-sieve not installed"
        cat >"$D/sieve/before.sieve" <<'SIEVE'
require ["fileinto", "mailbox"];
if header :is "X-Test-Junk" "yes" {
  fileinto :create "Junk";
  stop;
}
SIEVE
        lmtp_plugins="protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}"
        sieve_conf="plugin {
  sieve_before = $D/sieve/before.sieve
}"
    fi
    local imap_plugins=""
    if [ "${DOVECOT_RAWLOG:-0}" = 1 ]; then
        imap_plugins="  rawlog_dir = $D/home/%u/rawlog"
        while IFS=: read -r u _; do mkdir -p "$D/home/$u/rawlog"; done <"$D/passwd"
    fi
    caps="protocol imap {
$imap_plugins
}"
    if [ "${DOVECOT_NO_MOVE:-0}" = 1 ]; then
        caps="protocol imap {
$imap_plugins
  imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY SPECIAL-USE
}"
    fi
    rm -f "$D/dovecot.conf"
    cat >"$D/dovecot.conf" <<CONF
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
info_log_path = $D/dovecot.log
ssl = $ssl
$tls_conf
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
default_internal_user = $DC_USER
default_internal_group = $DC_GROUP
default_login_user = $DC_USER
postmaster_address = postmaster@acme.test
mail_location = maildir:$D/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/passwd
}
userdb {
  driver = static
  args = uid=$DC_USER gid=$DC_GROUP home=$D/home/%u allow_all_users=yes
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
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
  chroot =
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service anvil {
  chroot =
}
service auth-worker {
  user = $DC_USER
}
$lmtp_plugins
$sieve_conf
$caps
CONF
}

dovecot_start() {
    [ -f "$D/dovecot.conf" ] || dc_write_conf
    [ "$(id -u)" = 0 ] && chown -R "$DC_USER:$DC_GROUP" "$D"
    # dovecot daemonizes but keeps stdout: give it a file, never a pipe
    "${DC_AS[@]}" /usr/sbin/dovecot -c "$D/dovecot.conf" >"$D/start.log" 2>&1 ||
        fail "dovecot did not start: $(cat "$D/start.log" "$D/dovecot.log" 2>/dev/null | tail -20)"
    wait_port "$IMAP_PORT"
    wait_port "$LMTP_PORT"
    [ "${DOVECOT_TLS:-0}" = 1 ] && wait_port "$IMAPS_PORT"
    return 0
}

dovecot_stop() {
    local pid=""
    pid=$(cat "$D/run/master.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
}

dovecot_restart() { # after changing DOVECOT_* settings, the configuration is written again
    dovecot_stop
    dc_write_conf
    dovecot_start
}

trap 'rc=$?; dovecot_stop; (exit $rc); cleanup' EXIT

deliver() { # user message-id [junk]
    $PY - "$LMTP_PORT" "$1" "$2" "${3:-}" <<'PYEOF' || fail "LMTP delivery failed: $(tail -20 "$D/dovecot.log")"
import smtplib, sys
port, user, mid, junk = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
extra = "X-Test-Junk: yes\r\n" if junk else ""
msg = (f"From: Bob <bob@other.test>\r\nTo: {user}\r\nSubject: warmup\r\n"
       f"Message-ID: {mid}\r\nDate: Thu, 03 Dec 2026 03:00:00 +0000\r\n{extra}"
       f"Authentication-Results: mx.acme.test; spf=pass smtp.mailfrom=other.test\r\n\r\nhello\r\n")
with smtplib.LMTP("127.0.0.1", port) as lmtp:
    lmtp.sendmail("bob@other.test", [user], msg)
PYEOF
}

# folder_ids USER PASSWORD FOLDER: the Message-IDs in a folder, one per line (imaplib,
# a client independent of kiln's)
folder_ids() {
    $PY - "$IMAP_PORT" "$1" "$2" "$3" <<'PYEOF'
import imaplib, sys
port, user, pw, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
m = imaplib.IMAP4("127.0.0.1", port)
m.login(user, pw)
typ, _ = m.select(folder, readonly=True)
if typ == "OK":
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    for item in data:
        if isinstance(item, tuple):
            for line in item[1].decode().splitlines():
                if line.lower().startswith("message-id:"):
                    print(line.split(":", 1)[1].strip())
m.logout()
PYEOF
}

# make_inboxes out.json spec...: each spec is
#   mbid:host:port:security:user:password:ca_file[:poll_class]   ("-" for none)
# as an inbox lease's list (openapi LeaseInbox); plain security allows plaintext auth.
# INBOX_ACTIONS_JSON (a JSON object {mbid: [actions]}) and INBOX_FOLDERS_JSON (the same
# for folders) add those.
make_inboxes() {
    local out=$1
    shift
    $PY - "$out" "$@" <<'PYEOF'
import json, os, sys
out, specs = sys.argv[1], sys.argv[2:]
acts = json.loads(os.environ.get("INBOX_ACTIONS_JSON", "{}"))
folders = json.loads(os.environ.get("INBOX_FOLDERS_JSON", "{}"))
none = lambda v: None if v == "-" else v
res = []
for spec in specs:
    f = spec.split(":")
    mbid, host, port, sec, user, pw, ca = f[:7]
    cls = f[7] if len(f) > 7 else "medium"
    # the address must be a mail address (the lease loop's parser checks it)
    res.append({"mailbox_id": int(mbid), "address": user if "@" in user else user + "@acme.test",
                "imap": {"host": host, "port": int(port), "security": sec, "username": user,
                         "password": none(pw), "oauth_token": None, "ca_file": none(ca),
                         "allow_plaintext_auth": sec == "plain"},
                "poll_class": cls, "poll_interval_s": {"high": 60, "medium": 300, "low": 900}[cls],
                "warmup_folder": "kiln", "folders": folders.get(mbid, []),
                "actions": acts.get(mbid, [])})
json.dump(res, open(out, "w"))
PYEOF
}

# metrics_port LOG: the port a `kiln-agent inbox --metrics-port 0` printed on stderr
# (LOG), waiting up to 5 s; fails (1) when none came
metrics_port() {
    local p i
    for i in $(seq 1 100); do
        p=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$1")
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.05
    done
    return 1
}

# events FILE EXPR: the events of an `inbox --file` output (one JSON object a line) for
# which the Python expression EXPR over e is true, one JSON line each
events() {
    $PY -c 'import json,signal,sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a reader that stops early (grep -q)
for l in open(sys.argv[1]):
    e = json.loads(l)
    if eval(sys.argv[2]): print(json.dumps(e, separators=(",", ":")))' "$1" "$2"
}

# kiln_id N: a Message-ID of the shape kiln mints for send N
kiln_id() {
    printf '<%s.a%024x@acme.test>' "$1" "$1"
}

# folders_of FILE MBID: the folder_state events of an `inbox --file` output as
# INBOX_FOLDERS_JSON for that mailbox
folders_of() {
    $PY -c 'import json,sys
fs = [json.loads(l) for l in open(sys.argv[1])]
print(json.dumps({sys.argv[2]: [{"name": e["folder"], "role": e["role"], "uidvalidity": e["uidvalidity"],
                  "last_uid": e["last_uid"]} for e in fs if e["type"] == "folder_state"]}))' "$1" "$2"
}

# field JSONLINE NAME: one member of a JSON object
field() {
    $PY -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}
