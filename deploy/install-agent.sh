#!/bin/sh
# Installs (or upgrades) kiln-agent on a sending host and points it at the control plane.
#
#   install-agent.sh --api URL --token-file FILE [--ca FILE] [--deb FILE] [--no-start]
#
#   --api URL         control plane base URL, e.g. https://kiln.example.com
#   --token-file F    file holding this agent's token (POST /api/agents, shown once)
#   --ca F            CA bundle for the control plane's certificate (default: the one
#                     configured by an earlier run, else the system store)
#   --deb F           install this kiln-agent .deb instead of the one from apt
#   --no-start        write everything, but do not enable or start the service
#
# Idempotent: a second run with the same arguments changes nothing and leaves a running
# agent alone; a run with a newer .deb (or a newer package in apt) upgrades it. Nothing
# is touched before the control plane has answered GET /healthz.
# Environment for tests: KILN_ETC (default /etc/kiln).
set -eu

ETC=${KILN_ETC:-/etc/kiln}
CONF=$ETC/agent.conf
api="" token_file="" ca="" deb="" start=1

say() { echo "install-agent: $*"; }
die() { echo "install-agent: error: $*" >&2; exit 1; }
usage() {
    echo "usage:" >&2
    sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --api) [ $# -ge 2 ] || usage; api=$2; shift 2 ;;
    --token-file) [ $# -ge 2 ] || usage; token_file=$2; shift 2 ;;
    --ca) [ $# -ge 2 ] || usage; ca=$2; shift 2 ;;
    --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    -h | --help) usage ;;
    *) echo "install-agent: unknown argument: $1" >&2; usage ;;
    esac
done
if [ -z "$api" ] || [ -z "$token_file" ]; then usage; fi

# --- preflight: nothing on the host changes until all of this holds -------------------
[ "$(id -u)" -eq 0 ] || die "run me as root (I install a package and write $ETC)"
case "$api" in
https://*) ;;
http://127.* | http://localhost* | http://\[::1\]*) say "warning: plain HTTP to $api (loopback only)" ;;
*) die "--api must be an https:// URL (got '$api')" ;;
esac
api=${api%/}
[ -r "$token_file" ] || die "cannot read the token file $token_file"
token=$(tr -d ' \t\r\n' <"$token_file")
[ -n "$token" ] || die "the token file $token_file is empty"
# A re-run without --ca keeps the CA an earlier run installed.
kept_ca=""
if [ -z "$ca" ] && [ -f "$CONF" ]; then
    kept_ca=$(sed -n 's/^KILN_API_CA_FILE=\(..*\)$/\1/p' "$CONF" | tail -1)
    [ -z "$kept_ca" ] || [ -r "$kept_ca" ] || kept_ca=""
fi
if [ -n "$ca" ]; then
    [ -r "$ca" ] || die "cannot read the CA file $ca"
    grep -q 'BEGIN CERTIFICATE' "$ca" || die "$ca holds no PEM certificate"
fi
if [ -n "$deb" ]; then
    [ -r "$deb" ] || die "cannot read $deb"
    [ "$(dpkg-deb -f "$deb" Package 2>/dev/null)" = kiln-agent ] || die "$deb is not a kiln-agent package"
fi
command -v curl >/dev/null || die "curl is needed to check the control plane (apt install curl)"
set -- --silent --show-error --fail --max-time 10 --output /dev/null
[ -z "$ca$kept_ca" ] || set -- "$@" --cacert "${ca:-$kept_ca}"
if ! err=$(curl "$@" "$api/healthz" 2>&1); then
    die "the control plane at $api does not answer GET /healthz: $err
  (check the URL, DNS, firewall and, for a private CA, --ca)"
fi
say "control plane $api answers"

# --- package --------------------------------------------------------------------------
installed=$(dpkg-query -W -f='${Status} ${Version}' kiln-agent 2>/dev/null || true)
case "$installed" in
"install ok installed "*) have=${installed##* } ;;
*) have="" ;;
esac
export DEBIAN_FRONTEND=noninteractive
if [ -n "$deb" ]; then
    want=$(dpkg-deb -f "$deb" Version)
    if [ "$have" = "$want" ]; then
        say "kiln-agent $have is already installed"
    else
        say "installing kiln-agent $want${have:+ (over $have)}"
        case "$deb" in /*) ;; *) deb=$PWD/$deb ;; esac
        # apt resolves Depends from the configured repositories; dpkg is the fallback.
        apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "$deb" \
            >/dev/null 2>&1 || dpkg -i --force-confold "$deb" >/dev/null ||
            die "could not install $deb (missing dependencies? try apt-get -f install)"
    fi
else
    say "installing or upgrading kiln-agent from apt"
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold kiln-agent \
        >/dev/null || die "apt-get install kiln-agent failed (is the kiln repository configured?)"
fi
command -v kiln-agent >/dev/null || die "kiln-agent is not on PATH after the install"
say "$(kiln-agent --version)"

# --- configuration --------------------------------------------------------------------
changed=0
# put_file SRC DEST: copy with root:kiln 0640 when the content differs.
put_file() {
    if ! cmp -s "$1" "$2" 2>/dev/null; then
        install -o root -g kiln -m 0640 "$1" "$2"
        changed=1
        say "wrote $2"
    fi
}
install -d -o root -g kiln -m 0750 "$ETC"
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.conf"' EXIT
printf '%s\n' "$token" >"$tmp"
put_file "$tmp" "$ETC/agent.token"
if [ -n "$ca" ]; then
    put_file "$ca" "$ETC/ca.pem"
fi

# agent.conf: set our keys, keep every other line (the operator's tuning) as it is.
[ -f "$CONF" ] || : >"$CONF"
set_key() { # set_key KEY VALUE (VALUE empty: comment the key out)
    if [ -n "$2" ]; then line="$1=$2"; else line="#$1="; fi
    awk -v k="$1" -v line="$line" '
        BEGIN { done = 0 }
        $0 ~ "^#?" k "=" { if (!done) { print line; done = 1 } ; next }
        { print }
        END { if (!done) print line }' "$tmp.conf" >"$tmp.conf.new"
    mv "$tmp.conf.new" "$tmp.conf"
}
cp "$CONF" "$tmp.conf"
set_key KILN_API_URL "$api"
set_key KILN_AGENT_TOKEN_FILE "$ETC/agent.token"
if [ -n "$ca" ]; then
    set_key KILN_API_CA_FILE "$ETC/ca.pem"
elif [ -z "$kept_ca" ]; then
    set_key KILN_API_CA_FILE ""
fi
put_file "$tmp.conf" "$CONF"

# kiln-agent check: config, token, reachability, io_uring, in plain words. It reads the
# file as the service does (--config), engine and IMAP settings included.
if kiln-agent --help 2>&1 | grep -q 'kiln-agent check'; then
    if ! kiln-agent check --config "$CONF"; then
        die "kiln-agent check found a problem (above); fix it and run me again"
    fi
else
    say "this kiln-agent has no 'check' command; skipped"
fi

# --- service --------------------------------------------------------------------------
if [ "$start" -eq 0 ]; then
    say "--no-start: not enabling or starting kiln-agent.service"
elif [ ! -d /run/systemd/system ]; then
    say "systemd is not running here: start the agent yourself"
    say "  (kiln-agent run --config $CONF; SIGHUP re-reads the file)"
else
    systemctl daemon-reload
    systemctl enable --quiet kiln-agent.service
    if [ "$changed" -eq 1 ] || ! systemctl is-active --quiet kiln-agent.service; then
        systemctl restart kiln-agent.service
    fi
    i=0
    until systemctl is-active --quiet kiln-agent.service; do
        i=$((i + 1))
        if [ $i -ge 30 ]; then
            journalctl -u kiln-agent.service -n 20 --no-pager >&2 || true
            die "kiln-agent.service did not become active (journal above)"
        fi
        sleep 1
    done
    say "kiln-agent.service is active"
fi
port=$(sed -n 's/^KILN_AGENT_METRICS_PORT=\([0-9]*\)$/\1/p' "$CONF" | tail -1)
addr=$(sed -n 's/^KILN_AGENT_METRICS_ADDR=//p' "$CONF" | tail -1 | tr -d "\"'")
case "${port:-9465}:${addr:-127.0.0.1}" in
0:*) ;;
*:127.* | *:::1)
    say "metrics listen on ${addr:-127.0.0.1} only: for a Prometheus on another host set"
    say "  KILN_AGENT_METRICS_ADDR=0.0.0.0 in $CONF and firewall port ${port:-9465} to it"
    ;;
esac
say "done. Prometheus file_sd entry: [{\"targets\":[\"$(hostname -f 2>/dev/null || hostname):${port:-9465}\"]}]"
