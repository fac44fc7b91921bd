#!/usr/bin/env bash
# Installs the Debian 12 packages kiln needs to build, run the local stack and run its tests.
# Idempotent: exits quickly when everything is already there. Never starts a system service.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang clang-tidy clang-format libclang-rt-14-dev
  libpq-dev libfcgi-dev libyajl-dev liburing-dev libssl-dev
  libcurl4-openssl-dev libc-ares-dev libcmocka-dev
  postgresql postgresql-contrib nginx-light
  postfix python3 python3-aiosmtpd python3-cryptography
  prometheus wrk curl openssl procps psmisc
  systemd dpkg-dev fakeroot binutils python3-yaml python3-seccomp
  dovecot-imapd dovecot-lmtpd dovecot-sieve python3-jsonschema
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js + npm: the deploy tests' offline Kubernetes schema check and the agent's
# nodemailer benchmark peer. Any Node >= 18 will do (Debian's or one already installed).
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -eq 0 ]; then
  bash "$(dirname "$0")/../tools/install-node-tools.sh" ||
    echo "install-deps: npm tools not installed; the Kubernetes schema test will be skipped" >&2
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix: its smtp-sink/smtp-source tools, and a private instance under var/ (mailstack.sh);
# the system instance is never configured or started.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# Keep package scripts from starting system services (nginx, postgresql, postfix) on install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
bash "$(dirname "$0")/../tools/install-node-tools.sh" ||
  echo "install-deps: npm tools not installed; the Kubernetes schema test will be skipped" >&2
