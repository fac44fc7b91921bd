#!/usr/bin/env bash
# Shared helpers of the deploy tests (sourced). Each test makes its own temporary
# directory, cleans it up on exit, and exits 77 when the machine lacks a tool.
set -euo pipefail
KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KILN_BUILD_DIR=${KILN_BUILD_DIR:-$KILN_SOURCE_DIR/build}
DEPLOY=$KILN_SOURCE_DIR/deploy # used by the tests that source this file
export DEPLOY

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
need() { local t; for t in "$@"; do command -v "$t" >/dev/null || skip "$t is not installed"; done; }
ok() { echo "ok - $*"; }

# deploy_tmpdir: a fresh directory in $T, removed on exit (after the optional
# DEPLOY_CLEANUP function runs).
deploy_tmpdir() {
    T=$(mktemp -d /tmp/kiln-deploy.XXXXXX)
    chmod 755 "$T"
    trap 'rc=$?; if declare -F DEPLOY_CLEANUP >/dev/null; then DEPLOY_CLEANUP || true; fi; rm -rf "$T"; exit $rc' EXIT
    trap 'exit 130' INT TERM
}

# A free TCP port on 127.0.0.1.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# render_nginx DIR HTTP_PORT TLS_PORT SOCK1 SOCK2: the production site nginx/kiln.conf,
# moved onto loopback ports and the test's own paths, wrapped in a complete nginx.conf
# at DIR/nginx.conf, with a self-signed certificate for kiln.example.com.
render_nginx() {
    local d=$1 http=$2 tls=$3 s1=$4 s2=$5
    mkdir -p "$d"/{tls,log,tmp}
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kiln.example.com \
        -addext subjectAltName=DNS:kiln.example.com \
        -keyout "$d/tls/privkey.pem" -out "$d/tls/fullchain.pem" 2>/dev/null ||
        fail "openssl could not make a self-signed certificate"
    sed -e "s#listen 80;#listen 127.0.0.1:$http;#" \
        -e "s#listen 443 ssl http2;#listen 127.0.0.1:$tls ssl http2;#" \
        -e '/listen \[::\]/d' \
        -e "s#/etc/kiln/tls/#$d/tls/#g" \
        -e "s#/var/log/nginx/#$d/log/#g" \
        -e "s#unix:/run/kiln/api.sock#unix:$s1#" \
        -e "s#unix:/run/kiln/api-2.sock#unix:$s2#" \
        "$KILN_SOURCE_DIR/nginx/kiln.conf" >"$d/kiln.conf"
    # The rewrite must have caught every system path: the test never binds 80/443.
    if grep -nE 'listen (80|443)|/etc/kiln/|/var/log/|/run/kiln/' "$d/kiln.conf"; then
        fail "nginx/kiln.conf has lines the test cannot move to its own paths (above)"
    fi
    local user_line=""
    [ "$(id -u)" -ne 0 ] || user_line="user nobody nogroup;"
    cat >"$d/nginx.conf" <<CONF
$user_line
worker_processes 1;
pid $d/nginx.pid;
error_log $d/log/error.log warn;
events { worker_connections 256; }
http {
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    include $d/kiln.conf;
}
CONF
    [ "$(id -u)" -ne 0 ] || chown -R nobody:nogroup "$d/tmp" "$d/log"
}
