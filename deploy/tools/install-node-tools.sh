#!/usr/bin/env bash
# Installs the npm tools the deploy tests use (from registry.npmjs.org, pinned) into
# ${KILN_NODE_TOOLS:-/opt/kiln/node-tools}: kubernetes-models validates the Kubernetes
# manifests against the Kubernetes OpenAPI schemas offline (tests/deploy/k8s_schema.sh).
# Idempotent: exits at once when the pinned versions are there.
set -euo pipefail
dir=${KILN_NODE_TOOLS:-/opt/kiln/node-tools}
want="kubernetes-models@5.1.0"
command -v npm >/dev/null || { echo "install-node-tools: npm is not installed (apt-get install npm)" >&2; exit 1; }
if [ -f "$dir/node_modules/kubernetes-models/package.json" ] &&
    grep -q '"version": "5.1.0"' "$dir/node_modules/kubernetes-models/package.json"; then
    exit 0
fi
mkdir -p "$dir"
echo "install-node-tools: installing $want into $dir" >&2
npm install --prefix "$dir" --no-audit --no-fund --silent "$want"
