# Shell library (sourced): a real mail path on loopback for the local stack and the
# end-to-end tests (issue 14). Mail a kiln-agent sends is accepted by a Postfix instance
# of its own (config, queue and log under VAR/mail/postfix) and delivered over LMTP into
# a Dovecot run unprivileged (VAR/mail/dc), where a global Sieve script files a share of
# it into Junk per recipient domain: the stand-in for a provider's spam filter. The
# agent then finds it over IMAP, rescues it, marks it and files it away.
#
#   mail_init VAR_DIR                     paths and ports (KILN_MX_PORT 2526,
#                                         KILN_IMAP_PORT 1143, KILN_LMTP_PORT 2424)
#   mail_domain DOMAIN JUNK_PERCENT       a recipient domain and the share its "filter"
#                                         junks (0-100; call before mail_up)
#   mail_sender ADDRESS JUNK_PERCENT      a sender whose mail every domain junks at this
#                                         share (a poor reputation; before mail_up)
#   mail_user ADDRESS PASSWORD            an IMAP account (call before or after mail_up)
#   mail_users FILE                       many at once: FILE has "ADDRESS PASSWORD" lines
#                                         (benchmarks: 10,000 accounts in one pass)
#   mail_up / mail_down                   start / stop Dovecot then Postfix
#   mail_count ADDRESS FOLDER             messages in a folder (doveadm)
#   KILN_MAIL_IMAP_PROCESSES              Dovecot's imap process_limit (1000)
#   KILN_MAIL_IMAP_PREFORK                imap processes kept ready (0): hundreds of
#                                         inboxes logging in at once wait for no fork
#   KILN_MAIL_DOVECOT_EXTRA               text appended to dovecot.conf (a later section
#                                         of the same name overrides: benchmarks raise
#                                         service imap's client_limit there)
#
# Why Postfix: it is the MTA the tests already use (smtp-sink/smtp-source), Debian ships
# it, a second instance needs only its own config directory, and it speaks LMTP to
# Dovecot natively. Its master process must start as root (its daemons then run as the
# `postfix` user); without root, mail_up says so and fails, and `make up` keeps the
# smtp-sink. Dovecot runs as the invoking user, or `nobody` under root.
#
# The "filter" junks by the Message-ID kiln mints (<SENDID.KMAC@domain>): the first two
# hex digits of the MAC are uniform, so `MAC < share × 256` junks that share of mail,
# deterministically per message and without a Sieve extension program. A header
# `X-Kiln-Test-Junk: yes` always junks (tests use it to place one message).

MAIL_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MAIL_DOMAINS=()
MAIL_SENDERS=()

mail_init() {
    MAIL_VAR=$(mkdir -p "$1/mail" && cd "$1/mail" && pwd)
    MAIL_DC=$MAIL_VAR/dc # short: Dovecot's unix sockets live under it
    MAIL_PF=$MAIL_VAR/postfix
    MAIL_MX_PORT=${KILN_MX_PORT:-2526}
    MAIL_IMAP_PORT=${KILN_IMAP_PORT:-1143}
    MAIL_LMTP_PORT=${KILN_LMTP_PORT:-2424}
    MAIL_LOG=${MAIL_LOG:-$1/log}
    mkdir -p "$MAIL_DC"/{run,state,mail,home,sieve} "$MAIL_PF"/{etc,queue,data} "$MAIL_LOG"
    touch "$MAIL_DC/passwd"
    MAIL_USER=$(id -un) MAIL_GROUP=$(id -gn)
    MAIL_AS_USER=()
    if [ "$(id -u)" = 0 ]; then
        MAIL_USER=nobody MAIL_GROUP=nogroup
        getent group nogroup >/dev/null || MAIL_GROUP=$(id -gn nobody)
        MAIL_AS_USER=(setpriv --reuid="$MAIL_USER" --regid="$MAIL_GROUP" --clear-groups)
    fi
}

mail_domain() {
    case $2 in '' | *[!0-9]*) echo "mail_domain: junk share must be 0-100, got '$2'" >&2; return 2 ;; esac
    [ "$2" -le 100 ] || { echo "mail_domain: junk share must be 0-100, got '$2'" >&2; return 2; }
    MAIL_DOMAINS+=("$1:$2")
}

mail_sender() {
    case $2 in '' | *[!0-9]*) echo "mail_sender: junk share must be 0-100, got '$2'" >&2; return 2 ;; esac
    [ "$2" -le 100 ] || { echo "mail_sender: junk share must be 0-100, got '$2'" >&2; return 2; }
    case $1 in *'"'* | *'\\'* | *:*) echo "mail_sender: bad address '$1'" >&2; return 2 ;; esac
    MAIL_SENDERS+=("$1:$2")
}

mail_user() {
    local addr=$1 pw=$2
    case $addr$pw in *:* | *$'\n'*) echo "mail_user: ':' or newline in '$addr'" >&2; return 2 ;; esac
    grep -q "^$addr:" "$MAIL_DC/passwd" 2>/dev/null && return 0
    printf '%s:{PLAIN}%s::::::\n' "$addr" "$pw" >>"$MAIL_DC/passwd"
}

mail_users() {
    awk -v out="$MAIL_DC/passwd" '
        FILENAME == out { have[substr($0, 1, index($0, ":") - 1)] = 1; next }
        NF != 2 || $0 ~ /:/ { printf "mail_users: bad line %d: %s\n", FNR, $0 > "/dev/stderr"; bad = 1; exit 2 }
        !($1 in have) { have[$1] = 1; add[++n] = $1 ":{PLAIN}" $2 "::::::" }
        END { if (!bad) for (i = 1; i <= n; i++) print add[i] >> out }
    ' "$MAIL_DC/passwd" "$1"
}

# A POSIX ERE matching the two-hex-digit prefixes below threshold (0..256).
mail_mac_regex() {
    local t=$1 hex=0123456789abcdef hi lo alts=()
    [ "$t" -le 0 ] && { echo '^$'; return; }
    [ "$t" -ge 256 ] && { echo '[0-9a-f][0-9a-f]'; return; }
    hi=$((t / 16)) lo=$((t % 16))
    [ "$hi" -gt 0 ] && alts+=("[0-${hex:hi-1:1}][0-9a-f]")
    [ "$lo" -gt 0 ] && alts+=("${hex:hi:1}[0-${hex:lo-1:1}]")
    local IFS='|'
    echo "(${alts[*]})"
}

mail_sieve() {
    local d share t re
    {
        echo 'require ["fileinto", "mailbox", "envelope", "regex"];'
        echo 'if header :is "X-Kiln-Test-Junk" "yes" { fileinto :create "Junk"; stop; }'
        for d in "${MAIL_SENDERS[@]}"; do
            share=${d##*:}
            [ "$share" -gt 0 ] || continue
            re=$(mail_mac_regex $(((share * 256 + 50) / 100)))
            printf 'if allof (envelope :is "from" "%s",\n' "${d%:*}"
            printf '          header :regex "Message-ID" "^<[0-9]+\\\\.[0-9a-z]%s[0-9a-f]{22}@") {\n' "$re"
            echo '    fileinto :create "Junk"; stop;'
            echo '}'
        done
        for d in "${MAIL_DOMAINS[@]}"; do
            share=${d##*:}
            [ "$share" -gt 0 ] || continue
            t=$(((share * 256 + 50) / 100))
            re=$(mail_mac_regex "$t")
            printf 'if allof (envelope :domain :is "to" "%s",\n' "${d%:*}"
            printf '          header :regex "Message-ID" "^<[0-9]+\\\\.[0-9a-z]%s[0-9a-f]{22}@") {\n' "$re"
            echo '    fileinto :create "Junk"; stop;'
            echo '}'
        done
    } >"$MAIL_DC/sieve/before.sieve"
}

mail_dovecot_conf() {
    cat >"$MAIL_DC/dovecot.conf" <<CONF
# Written by deploy/local/mailstack.sh: the local stack's recipient mail server.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $MAIL_DC/run
state_dir = $MAIL_DC/state
log_path = $MAIL_LOG/dovecot.log
info_log_path = $MAIL_LOG/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $MAIL_USER
default_internal_group = $MAIL_GROUP
default_login_user = $MAIL_USER
postmaster_address = postmaster@kiln.test
mail_location = maildir:$MAIL_DC/mail/%d/%n
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $MAIL_DC/passwd
}
userdb {
  driver = static
  args = uid=$MAIL_USER gid=$MAIL_GROUP home=$MAIL_DC/home/%d/%n allow_all_users=yes
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Junk {
    special_use = \\Junk
    auto = create
  }
  mailbox Trash {
    special_use = \\Trash
    auto = create
  }
}
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
plugin {
  sieve_before = $MAIL_DC/sieve/before.sieve
  sieve = file:$MAIL_DC/home/%d/%n/sieve;active=$MAIL_DC/home/%d/%n/.dovecot.sieve
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $MAIL_IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
  chroot =
  # High-performance login mode: a few long-lived login processes, not one per login.
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}
service imap {
  process_limit = ${KILN_MAIL_IMAP_PROCESSES:-1000}
  process_min_avail = ${KILN_MAIL_IMAP_PREFORK:-0}
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $MAIL_LMTP_PORT
  }
}
service anvil {
  chroot =
}
service auth-worker {
  user = $MAIL_USER
}
# Postfix checks a demo mailbox's SMTP AUTH against the same passwd-file.
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
CONF
    [ -z "${KILN_MAIL_DOVECOT_EXTRA:-}" ] || printf '%s\n' "$KILN_MAIL_DOVECOT_EXTRA" >>"$MAIL_DC/dovecot.conf"
}

mail_postfix_conf() {
    local domains=() d
    for d in "${MAIL_DOMAINS[@]}"; do domains+=("${d%:*}"); done
    cat >"$MAIL_PF/etc/main.cf" <<CONF
# Written by deploy/local/mailstack.sh: the local stack's MTA (a Postfix instance of its
# own). It accepts mail from loopback and delivers the demo domains to Dovecot over LMTP.
compatibility_level = 3.6
queue_directory = $MAIL_PF/queue
data_directory = $MAIL_PF/data
maillog_file = $MAIL_LOG/postfix.log
maillog_file_prefixes = $MAIL_LOG
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.kiln.test
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = ${domains[*]}
virtual_transport = lmtp:inet:127.0.0.1:$MAIL_LMTP_PORT
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
smtputf8_enable = yes
# Dovecot restarted (tests, make up): deferred mail goes again within seconds, not minutes.
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 30s
# A demo mailbox AUTHs with its own password, checked by Dovecot (same passwd-file).
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $MAIL_DC/run/auth-postfix
smtpd_sasl_security_options = noanonymous
CONF
    cat >"$MAIL_PF/etc/master.cf" <<CONF
127.0.0.1:$MAIL_MX_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
}

mail_wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

mail_dovecot_up() {
    [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/lmtp ] ||
        { echo "mail: dovecot-imapd/-lmtpd not installed" >&2; return 1; }
    [ -f "$MAIL_DC/run/master.pid" ] && kill -0 "$(cat "$MAIL_DC/run/master.pid")" 2>/dev/null && return 0
    mail_sieve
    mail_dovecot_conf
    if [ "$(id -u)" = 0 ]; then
        chmod 755 "$MAIL_VAR"
        chown -R "$MAIL_USER:$MAIL_GROUP" "$MAIL_DC"
        touch "$MAIL_LOG/dovecot.log"
        chown "$MAIL_USER:$MAIL_GROUP" "$MAIL_LOG/dovecot.log"
    fi
    # dovecot daemonizes but keeps stdout: give it a file, never a pipe
    "${MAIL_AS_USER[@]}" /usr/sbin/dovecot -c "$MAIL_DC/dovecot.conf" >>"$MAIL_LOG/dovecot.log" 2>&1 ||
        { echo "mail: dovecot did not start (var/log/dovecot.log)" >&2; return 1; }
    mail_wait_port "$MAIL_IMAP_PORT" && mail_wait_port "$MAIL_LMTP_PORT" ||
        { echo "mail: dovecot is not listening on $MAIL_IMAP_PORT/$MAIL_LMTP_PORT" >&2; return 1; }
}

mail_postfix_up() {
    [ "$(id -u)" = 0 ] || { echo "mail: Postfix's master must start as root" >&2; return 1; }
    [ -x /usr/sbin/postfix ] || { echo "mail: postfix not installed" >&2; return 1; }
    mail_postfix_conf
    chown postfix "$MAIL_PF/data"
    chmod 755 "$MAIL_VAR" "$MAIL_PF"
    if postfix -c "$MAIL_PF/etc" status >/dev/null 2>&1; then
        postfix -c "$MAIL_PF/etc" reload >/dev/null 2>&1
        return 0
    fi
    postfix -c "$MAIL_PF/etc" start >>"$MAIL_LOG/postfix.log" 2>&1 ||
        { echo "mail: postfix did not start (var/log/postfix.log)" >&2; return 1; }
    mail_wait_port "$MAIL_MX_PORT" || { echo "mail: postfix is not listening on $MAIL_MX_PORT" >&2; return 1; }
}

mail_up() { mail_dovecot_up && mail_postfix_up; }

mail_down() {
    local pid
    [ -f "$MAIL_PF/etc/main.cf" ] && postfix -c "$MAIL_PF/etc" stop >/dev/null 2>&1
    pid=$(cat "$MAIL_DC/run/master.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
    local i
    for i in $(seq 1 50); do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    return 0
}

mail_count() {
    doveadm -c "$MAIL_DC/dovecot.conf" -f flow mailbox status -u "$1" messages "$2" 2>/dev/null |
        sed -n 's/.*messages=\([0-9]*\).*/\1/p'
}
