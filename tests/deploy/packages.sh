#!/usr/bin/env bash
# test_deb_packages_build_install_upgrade_and_purge_cleanly, with the agent installer:
#  1. cpack builds kiln-agent and kiln-api .debs from the build under test;
#  2. dpkg-deb shows the right control fields, conffiles, maintainer scripts and files;
#  3. deploy/install-agent.sh refuses bad input and an unreachable control plane without
#     touching the host, then installs the agent against a loopback HTTPS control plane
#     with its own CA, is a no-op when re-run, and upgrades to a newer .deb;
#  4. kiln-api installs beside it (kiln user, secret key), both run --version;
#  5. purging both leaves no file, directory or user behind.
# It installs packages on this machine, so it runs alone (RESOURCE_LOCK dpkg) and only
# where no kiln package or user was there before.
. "$(dirname "$0")/lib.sh"
need cpack dpkg-deb dpkg-shlibdeps fakeroot openssl curl /usr/bin/python3
[ "$(id -u)" -eq 0 ] || skip "installing packages needs root"
for p in kiln-agent kiln-api; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed\|config-files'; then
        skip "package $p is already on this machine; not touching it"
    fi
done
getent passwd kiln >/dev/null && skip "a user 'kiln' already exists here; not touching it"
deploy_tmpdir
srv_pid=""
DEPLOY_CLEANUP() {
    [ -z "$srv_pid" ] || kill "$srv_pid" 2>/dev/null || true
    dpkg --purge kiln-agent kiln-api >/dev/null 2>&1 || true
}

# --- 1. build ----------------------------------------------------------------------
for b in api/kiln-api agent/kiln-agent; do
    [ -x "$KILN_BUILD_DIR/$b" ] || fail "$KILN_BUILD_DIR/$b is not built"
done
[ -f "$KILN_BUILD_DIR/CPackConfig.cmake" ] ||
    fail "$KILN_BUILD_DIR has no CPackConfig.cmake: is include(deploy/packaging.cmake) in CMakeLists.txt?"
(cd "$KILN_BUILD_DIR" && cpack -G DEB -B "$T/pkg") >"$T/cpack.log" 2>&1 || { cat "$T/cpack.log" >&2; fail "cpack -G DEB failed"; }
agent_deb=$(ls "$T"/pkg/kiln-agent_*.deb 2>/dev/null | head -1)
api_deb=$(ls "$T"/pkg/kiln-api_*.deb 2>/dev/null | head -1)
[ -n "$agent_deb" ] && [ -n "$api_deb" ] || fail "cpack made no kiln-agent/kiln-api .deb: $(ls "$T/pkg")"
ok "cpack built $(basename "$agent_deb") and $(basename "$api_deb")"

# --- 2. inspect ----------------------------------------------------------------------
field() { dpkg-deb -f "$1" "$2"; }
# (grep -q closes the pipe early: list first, then search, so pipefail stays quiet)
has_file() { local l; l=$(dpkg-deb -c "$1" | awk '{print $6}'); echo "$l" | grep -qx "./$2" || fail "$(basename "$1") lacks /$2"; }
version=$(field "$agent_deb" Version)
[ "$(field "$agent_deb" Package)" = kiln-agent ] || fail "agent package name: $(field "$agent_deb" Package)"
[ "$(field "$api_deb" Package)" = kiln-api ] || fail "api package name: $(field "$api_deb" Package)"
for d in "$agent_deb" "$api_deb"; do
    deps=$(field "$d" Depends)
    for want in adduser libc6 libssl3; do
        echo "$deps" | grep -q "$want" || fail "$(basename "$d") Depends lacks $want: $deps"
    done
    info=$(dpkg-deb -I "$d")
    for s in postinst prerm postrm; do
        echo "$info" | grep -Eq "lines +\* +$s " || fail "$(basename "$d"): no executable $s"
    done
done
field "$agent_deb" Depends | grep -q liburing || fail "kiln-agent Depends lacks liburing"
field "$api_deb" Depends | grep -q libpq5 || fail "kiln-api Depends lacks libpq5"
[ "$(dpkg-deb --ctrl-tarfile "$agent_deb" | tar -xO ./conffiles)" = /etc/kiln/agent.conf ] || fail "agent.conf is not a conffile"
[ "$(dpkg-deb --ctrl-tarfile "$api_deb" | tar -xO ./conffiles)" = /etc/kiln/api.env ] || fail "api.env is not a conffile"
for f in usr/bin/kiln-agent lib/systemd/system/kiln-agent.service etc/kiln/agent.conf \
    usr/share/kiln/kiln-install-agent usr/share/doc/kiln-agent/operations.md; do has_file "$agent_deb" "$f"; done
for f in usr/bin/kiln-api lib/systemd/system/kiln-api.service lib/systemd/system/kiln-api.socket \
    lib/systemd/system/kiln-api@.service lib/systemd/system/kiln-api@.socket etc/kiln/api.env \
    usr/share/kiln/sql/migrations/001_core.sql usr/share/kiln/nginx/kiln.conf; do has_file "$api_deb" "$f"; done
case "$(dpkg-deb -c "$agent_deb")" in *kiln-api*) fail "kiln-agent ships kiln-api files" ;; esac
ok "dpkg-deb: names, Depends (shlibdeps + adduser), conffiles, maintainer scripts, file lists"

# --- 3. installer ------------------------------------------------------------------
inst=$DEPLOY/install-agent.sh
echo "agent-token-123" >"$T/agent.token"
# A loopback HTTPS "control plane" with its own CA, answering /healthz.
mkdir -p "$T/cp"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$T/cp/key.pem" -out "$T/cp/ca.pem" 2>/dev/null
port=$(free_port)
/usr/bin/python3 - "$port" "$T/cp" >"$T/cp/log" 2>&1 <<'PY' &
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/healthz" else 404
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'{"status":"ok"}')
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2] + "/ca.pem", sys.argv[2] + "/key.pem")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.timeout = 1
import time
end = time.time() + 240
while time.time() < end:
    srv.handle_request()
PY
srv_pid=$!
api=https://localhost:$port
for i in $(seq 1 50); do curl -s -o /dev/null --cacert "$T/cp/ca.pem" "$api/healthz" && break; sleep 0.1; done

expect_fail() { # expect_fail "what" "message fragment" args...
    local what=$1 frag=$2; shift 2
    if out=$(sh "$inst" "$@" 2>&1); then fail "installer accepted $what"; fi
    echo "$out" | grep -q "$frag" || fail "installer on $what: expected '$frag', got: $out"
    dpkg-query -W kiln-agent >/dev/null 2>&1 && fail "installer installed the package despite $what"
    return 0
}
expect_fail "no --api" "usage" --token-file "$T/agent.token"
expect_fail "an http:// URL" "must be an https" --api http://kiln.example.com --token-file "$T/agent.token"
expect_fail "a missing token file" "cannot read the token file" --api "$api" --token-file "$T/nope"
expect_fail "an unreachable control plane" "does not answer GET /healthz" \
    --api "https://localhost:$(free_port)" --token-file "$T/agent.token" --deb "$agent_deb"
expect_fail "a control plane with an unknown CA" "does not answer GET /healthz" \
    --api "$api" --token-file "$T/agent.token" --deb "$agent_deb"
ok "installer refuses bad arguments and an unreachable or untrusted control plane, host untouched"

sh "$inst" --api "$api" --token-file "$T/agent.token" --ca "$T/cp/ca.pem" --deb "$agent_deb" >"$T/run1" 2>&1 ||
    { cat "$T/run1" >&2; fail "installer failed on a clean host"; }
[ "$(dpkg-query -W -f='${Version}' kiln-agent)" = "$version" ] || fail "kiln-agent $version is not installed"
[ "$(kiln-agent --version)" = "kiln-agent $version" ] || fail "kiln-agent --version: $(kiln-agent --version 2>&1)"
getent passwd kiln >/dev/null || fail "the package did not create the kiln user"
grep -qx "KILN_API_URL=$api" /etc/kiln/agent.conf || fail "agent.conf lacks KILN_API_URL=$api"
grep -qx "KILN_AGENT_TOKEN_FILE=/etc/kiln/agent.token" /etc/kiln/agent.conf || fail "agent.conf lacks the token file"
grep -qx "KILN_API_CA_FILE=/etc/kiln/ca.pem" /etc/kiln/agent.conf || fail "agent.conf lacks the CA file"
grep -qx "KILN_AGENT_SPOOL_DIR=/var/lib/kiln/agent" /etc/kiln/agent.conf || fail "agent.conf lost the packaged defaults"
[ "$(cat /etc/kiln/agent.token)" = agent-token-123 ] || fail "agent.token content"
[ "$(stat -c '%U:%G %a' /etc/kiln/agent.token)" = "root:kiln 640" ] || fail "agent.token owner/mode: $(stat -c '%U:%G %a' /etc/kiln/agent.token)"
[ "$(stat -c '%U:%G %a' /etc/kiln/agent.conf)" = "root:kiln 640" ] || fail "agent.conf owner/mode: $(stat -c '%U:%G %a' /etc/kiln/agent.conf)"
cmp -s /etc/kiln/ca.pem "$T/cp/ca.pem" || fail "the CA was not copied"
ok "installer: package installed, kiln user, config, token (0640 root:kiln) and CA written"

# Re-run: nothing changes (no reinstall, no rewrite), an operator's tuning line survives.
echo "KILN_AGENT_CONCURRENCY=1234" >>/etc/kiln/agent.conf
before=$(stat -c %Y:%i /etc/kiln/agent.conf /etc/kiln/agent.token /usr/bin/kiln-agent)
sleep 1
sh "$inst" --api "$api" --token-file "$T/agent.token" --ca "$T/cp/ca.pem" --deb "$agent_deb" >"$T/run2" 2>&1 ||
    { cat "$T/run2" >&2; fail "installer re-run failed"; }
grep -q "already installed" "$T/run2" || fail "re-run reinstalled the package: $(cat "$T/run2")"
if grep -q "wrote" "$T/run2"; then fail "re-run rewrote files: $(cat "$T/run2")"; fi
[ "$(stat -c %Y:%i /etc/kiln/agent.conf /etc/kiln/agent.token /usr/bin/kiln-agent)" = "$before" ] || fail "re-run touched files"
ok "installer re-run with the same arguments is a no-op and keeps the operator's tuning"

# Upgrade: a newer .deb (same content, version +test1) replaces the installed one.
dpkg-deb -R "$agent_deb" "$T/newer"
sed -i "s/^Version: .*/Version: ${version}+test1/" "$T/newer/DEBIAN/control"
fakeroot dpkg-deb -b "$T/newer" "$T/kiln-agent-newer.deb" >/dev/null
sh "$inst" --api "$api" --token-file "$T/agent.token" --deb "$T/kiln-agent-newer.deb" >"$T/run3" 2>&1 ||
    { cat "$T/run3" >&2; fail "installer upgrade failed"; }
[ "$(dpkg-query -W -f='${Version}' kiln-agent)" = "${version}+test1" ] || fail "upgrade did not install ${version}+test1"
grep -qx "KILN_AGENT_CONCURRENCY=1234" /etc/kiln/agent.conf || fail "upgrade lost the operator's tuning in agent.conf"
grep -qx "KILN_API_CA_FILE=/etc/kiln/ca.pem" /etc/kiln/agent.conf || fail "a re-run without --ca dropped the CA installed before"
ok "installer upgrades to a newer .deb, conffile edits kept"

# --- 4. kiln-api beside it ------------------------------------------------------------
dpkg -i "$api_deb" >"$T/api-install" 2>&1 || { cat "$T/api-install" >&2; fail "dpkg -i kiln-api"; }
[ "$(kiln-api --version 2>&1)" = "kiln-api $version" ] || fail "kiln-api --version: $(kiln-api --version 2>&1)"
[ "$(stat -c '%U:%G %a' /etc/kiln/secret.key)" = "root:kiln 640" ] || fail "secret.key owner/mode: $(stat -c '%U:%G %a' /etc/kiln/secret.key 2>&1)"
grep -Eqx '[0-9a-f]{64}' /etc/kiln/secret.key || fail "secret.key is not 64 hex characters"
key=$(cat /etc/kiln/secret.key)
dpkg -i "$api_deb" >>"$T/api-install" 2>&1 || { cat "$T/api-install" >&2; fail "reinstall of kiln-api"; }
[ "$(cat /etc/kiln/secret.key)" = "$key" ] || fail "reinstalling kiln-api replaced the secret key"
ok "kiln-api installs beside the agent: --version, secret key made once (0640 root:kiln)"

# --- 5. remove and purge --------------------------------------------------------------
dpkg -r kiln-agent >/dev/null 2>&1 || fail "dpkg -r kiln-agent"
[ ! -e /usr/bin/kiln-agent ] || fail "removing kiln-agent left /usr/bin/kiln-agent"
[ -f /etc/kiln/agent.conf ] || fail "removing (not purging) kiln-agent dropped its conffile"
getent passwd kiln >/dev/null || fail "removing kiln-agent deleted the user kiln-api still uses"
dpkg --purge kiln-agent kiln-api >"$T/purge" 2>&1 || { cat "$T/purge" >&2; fail "dpkg --purge"; }
left=""
for p in /etc/kiln /var/lib/kiln /usr/share/kiln /usr/bin/kiln-agent /usr/bin/kiln-api \
    /lib/systemd/system/kiln-agent.service /lib/systemd/system/kiln-api.socket \
    /usr/share/doc/kiln-agent /usr/share/doc/kiln-api; do
    [ ! -e "$p" ] || left="$left $p"
done
[ -z "$left" ] || fail "purge left:$left"
getent passwd kiln >/dev/null && fail "purge left the kiln user"
getent group kiln >/dev/null && fail "purge left the kiln group"
if dpkg-query -W -f='${Status}\n' kiln-agent kiln-api 2>/dev/null | grep -qv 'not-installed'; then
    fail "dpkg still knows the packages: $(dpkg-query -W -f='${Package} ${Status}\n' kiln-agent kiln-api 2>&1)"
fi
ok "purge removes every file, directory, the kiln user and group"
