# Shared by the maintainer scripts of kiln-agent and kiln-api (pasted into each by
# deploy/packaging.cmake at configure time, so the packages carry no runtime helper).

# The `kiln` system user both daemons run as; created once, shared by both packages.
kiln_user_create() {
    if ! getent group kiln >/dev/null; then
        addgroup --system --quiet kiln
    fi
    if ! getent passwd kiln >/dev/null; then
        adduser --system --quiet --ingroup kiln --home /var/lib/kiln --no-create-home \
            --shell /usr/sbin/nologin --gecos "kiln warmup" kiln
    fi
    install -d -o root -g kiln -m 0750 /etc/kiln
    install -d -o kiln -g kiln -m 0750 /var/lib/kiln
}

# On purge of the last kiln package: the user and its empty directories go too.
kiln_user_remove_if_last() {
    other="$1"
    if dpkg-query -W -f='${Status}' "$other" 2>/dev/null | grep -q 'ok installed\|config-files'; then
        return 0
    fi
    rmdir /var/lib/kiln 2>/dev/null || true
    rmdir /etc/kiln 2>/dev/null || true
    if getent passwd kiln >/dev/null && command -v deluser >/dev/null; then
        deluser --system --quiet kiln >/dev/null 2>&1 || true
    fi
    if getent group kiln >/dev/null && command -v delgroup >/dev/null; then
        delgroup --system --quiet kiln >/dev/null 2>&1 || true
    fi
}

# systemd is optional (containers, chroots): reload only where it runs.
kiln_systemd_reload() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
}
