#!/usr/bin/env bash
# test_kubernetes_manifests_match_the_api_schemas: every object in deploy/k8s validates
# against the Kubernetes OpenAPI schema of its apiVersion/kind (kubernetes-models from
# npm, installed by deploy/tools/install-node-tools.sh; skipped when it is absent).
. "$(dirname "$0")/lib.sh"
need node /usr/bin/python3
tools=${KILN_NODE_TOOLS:-/opt/kiln/node-tools}
[ -d "$tools/node_modules/kubernetes-models" ] ||
    skip "kubernetes-models is not installed in $tools (run deploy/tools/install-node-tools.sh)"
/usr/bin/python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml is not installed"
deploy_tmpdir
# The agents' KILN_API_URL is one kiln-agent accepts: https:// (plain http only to
# loopback, agent/lease/agent_config.c). It was the in-cluster Service over http once.
/usr/bin/python3 - "$DEPLOY/k8s/config.yaml" <<'PY' || fail "deploy/k8s: the agents' KILN_API_URL is not https://"
import sys, yaml
cms = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "ConfigMap"]
urls = [d["data"]["KILN_API_URL"] for d in cms if "KILN_API_URL" in d.get("data", {})]
assert urls and all(u.startswith("https://") for u in urls), urls
PY
ok "the agents' KILN_API_URL in deploy/k8s/config.yaml is https://"
/usr/bin/python3 - "$DEPLOY/k8s" >"$T/objects.json" <<'PY'
import json, os, sys, yaml
objs = []
for f in sorted(os.listdir(sys.argv[1])):
    if f.endswith(".yaml"):
        for d in yaml.safe_load_all(open(os.path.join(sys.argv[1], f))):
            if d:
                objs.append({"file": f, "obj": d})
json.dump(objs, sys.stdout)
PY
# ESM resolves bare imports from the script's own directory: link the tools there.
ln -s "$tools/node_modules" "$T/node_modules"
cat >"$T/validate.mjs" <<'JS'
import { readFileSync } from "node:fs";
const [objectsFile] = process.argv.slice(2);
const objs = JSON.parse(readFileSync(objectsFile, "utf8"));
let bad = 0;
for (const { file, obj } of objs) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
  const mod = group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  const what = `${file}: ${obj.kind} ${obj.metadata?.name}`;
  let Model;
  try {
    Model = (await import(mod))[obj.kind];
  } catch (e) {
    Model = undefined;
  }
  if (!Model) { console.error(`FAIL: ${what}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`); bad++; continue; }
  try { new Model(obj).validate(); console.log(`ok - ${what} (${obj.apiVersion})`); }
  catch (e) { console.error(`FAIL: ${what}: ${e.message}`); bad++; }
}
process.exit(bad ? 1 : 0);
JS
node "$T/validate.mjs" "$T/objects.json" "$tools" || fail "Kubernetes manifests do not match the API schemas (above)"
# The checker must catch a wrong type: a port given as a string.
/usr/bin/python3 - "$T/objects.json" >"$T/broken.json" <<'PY'
import json, sys
objs = json.load(open(sys.argv[1]))
for o in objs:
    if o["obj"]["kind"] == "Service":
        o["obj"]["spec"]["ports"][0]["port"] = "eighty"
json.dump(objs, sys.stdout)
PY
if node "$T/validate.mjs" "$T/broken.json" "$tools" >/dev/null 2>&1; then
    fail "the schema check accepted a Service port 'eighty': it checks nothing"
fi
ok "the schema check rejects a wrong type"
