#!/usr/bin/env bash
# test_dockerfiles_and_kubernetes_manifests_pass_offline_checks: see containers.py for
# what is checked; the kiln-api pod's nginx sidecar config also passes `nginx -t`.
. "$(dirname "$0")/lib.sh"
need /usr/bin/python3 objdump nginx
/usr/bin/python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml is not installed"
deploy_tmpdir
/usr/bin/python3 "$KILN_SOURCE_DIR/tests/deploy/containers.py" "$KILN_SOURCE_DIR" "$KILN_BUILD_DIR" "$T" ||
    fail "deploy/docker or deploy/k8s failed the offline checks (above)"
# The sidecar config, with its /tmp paths moved into $T, must satisfy nginx.
sed -e "s#/tmp/#$T/#g" "$T/sidecar-nginx.conf" >"$T/sidecar.conf"
out=$(nginx -t -c "$T/sidecar.conf" -e "$T/error.log" 2>&1) || { echo "$out" >&2; fail "nginx -t rejected the sidecar config"; }
ok "nginx -t accepts the kiln-api pod's sidecar config"
