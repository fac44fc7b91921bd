"""Offline checks of deploy/docker and deploy/k8s (no Docker engine, no cluster here).

Dockerfiles: multi-stage, pinned bases, non-root final user, exec-form entrypoint, tidy
apt use, COPY sources that exist, and runtime packages that provide every shared library
the built binary needs (from objdump + dpkg -S on this Debian 12 machine).
Kubernetes: every object well-formed; selectors match pod labels; Service ports, volume
mounts, ConfigMap/Secret references resolve; containers non-root with limits; the HPA
targets the agents on kiln_queue_depth and the adapter rule serves that metric; agents
serve their metrics on a non-loopback address (image and ConfigMap) at the port the pod
declares, so Prometheus can scrape them; a Localhost seccomp profile is shipped in
deploy/seccomp/ and lets io_uring through (tests/deploy/seccomp_profile.sh runs the agent
under it).
Usage: containers.py SOURCE_DIR BUILD_DIR OUT_DIR (writes OUT_DIR/sidecar-nginx.conf)."""
import ipaddress, json, os, re, subprocess, sys
import yaml

src, build, out = sys.argv[1:4]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

def metrics_non_loopback(where, env):
    """The agent's metrics must answer on the pod/container address, not only loopback."""
    addr = env.get("KILN_AGENT_METRICS_ADDR", "127.0.0.1")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        check(False, f"{where}: KILN_AGENT_METRICS_ADDR={addr!r} is not an IP address")
        return
    check(not ip.is_loopback, f"{where}: KILN_AGENT_METRICS_ADDR={addr} is loopback: Prometheus cannot scrape the agent")
    check(env.get("KILN_AGENT_METRICS_PORT", "0") not in ("", "0"), f"{where}: KILN_AGENT_METRICS_PORT is off")

# ---------------------------------------------------------------- Dockerfiles
def instructions(path):
    text = open(path).read().replace("\\\n", " ")
    res = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        res.append((op.upper(), rest.strip()))
    return res

def needed_packages(binary):
    """Debian packages providing the shared libraries the binary links directly."""
    dyn = subprocess.run(["objdump", "-p", binary], capture_output=True, text=True).stdout
    needed = re.findall(r"NEEDED\s+(\S+)", dyn)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    pkgs = {}
    for lib in needed:
        if re.match(r"lib(asan|ubsan|c|m|gcc_s|pthread|dl|rt)\.so", lib) or lib.startswith("ld-linux"):
            continue
        p = paths.get(lib)
        if not p:
            continue
        real = os.path.realpath(p)
        for cand in (p, real, real.replace("/usr/lib", "/lib", 1), p.replace("/lib/", "/usr/lib/", 1)):
            r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs[lib] = r.stdout.split(":")[0]
                break
    return pkgs

for name, binary in (("Dockerfile.api", "api/kiln-api"), ("Dockerfile.agent", "agent/kiln-agent")):
    path = os.path.join(src, "deploy/docker", name)
    ins = instructions(path)
    froms = [i for i, (op, _) in enumerate(ins) if op == "FROM"]
    check(len(froms) >= 2, f"{name}: not multi-stage")
    for i in froms:
        image = ins[i][1].split()[0]
        check(":" in image and not image.endswith(":latest"), f"{name}: base image {image} is not pinned to a tag")
    check(re.search(r"\bAS\s+build\b", ins[froms[0]][1], re.I), f"{name}: first stage is not named 'build'")
    final = ins[froms[-1]:]
    users = [rest for op, rest in final if op == "USER"]
    check(users and users[-1].split(":")[0] not in ("0", "root"), f"{name}: final stage does not run as a non-root USER")
    last_user = max(i for i, (op, _) in enumerate(final) if op == "USER") if users else -1
    check(all(op != "RUN" for op, _ in final[last_user + 1:]), f"{name}: RUN after USER in the final stage")
    check(any(op == "COPY" and "--from=build" in rest for op, rest in final), f"{name}: final stage copies nothing from the build stage")
    ep = [rest for op, rest in final if op == "ENTRYPOINT"]
    check(ep and ep[-1].startswith("["), f"{name}: ENTRYPOINT missing or not in exec form")
    if ep:
        check(json.loads(ep[-1])[0] == "/usr/bin/" + os.path.basename(binary), f"{name}: ENTRYPOINT is not the binary")
    for op, rest in ins:
        check(not (op == "ADD" and re.search(r"https?://", rest)), f"{name}: ADD from a URL")
        check(not re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", rest), f"{name}: pipes a download into a shell")
        if op == "RUN" and "apt-get install" in rest:
            check("--no-install-recommends" in rest, f"{name}: apt-get install without --no-install-recommends")
            check("rm -rf /var/lib/apt/lists" in rest, f"{name}: apt lists left in the layer")
            check("apt-get update" in rest, f"{name}: apt-get install without update in the same RUN")
        if op == "COPY" and "--from=" not in rest:
            for s in rest.split()[:-1]:
                check(os.path.exists(os.path.join(src, s)), f"{name}: COPY source {s} does not exist")
    # Runtime libraries: every shared library of the binary comes from a package the
    # final stage installs.
    runtime = " ".join(rest for op, rest in final if op == "RUN")
    bpath = os.path.join(build, binary)
    if os.path.exists(bpath):
        for lib, pkg in needed_packages(bpath).items():
            check(re.search(rf"(^|\s){re.escape(pkg)}(\s|$)", runtime), f"{name}: runtime stage lacks {pkg} (for {lib})")
    check(os.path.exists(path + ".dockerignore"), f"{name}: no {name}.dockerignore beside it")
    if name == "Dockerfile.agent":
        env = dict(kv for op, rest in final if op == "ENV" for kv in re.findall(r"(\w+)=(\S+)", rest))
        metrics_non_loopback(f"{name} ENV", env)

# ---------------------------------------------------------------- Kubernetes
docs = []
for f in sorted(os.listdir(os.path.join(src, "deploy/k8s"))):
    if f.endswith(".yaml"):
        for d in yaml.safe_load_all(open(os.path.join(src, "deploy/k8s", f))):
            if d:
                docs.append((f, d))
by_kind = {}
for f, d in docs:
    for k in ("apiVersion", "kind", "metadata"):
        check(k in d, f"{f}: object without {k}")
    check(d.get("metadata", {}).get("name"), f"{f}: {d.get('kind')} without a name")
    by_kind.setdefault(d["kind"], []).append(d)
names = lambda kind: {d["metadata"]["name"] for d in by_kind.get(kind, [])}
for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Secret", "Job"):
    check(kind in by_kind, f"no {kind} in deploy/k8s")
deps = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
check({"kiln-api", "kiln-agent"} <= set(deps), f"Deployments kiln-api and kiln-agent expected, have {sorted(deps)}")

def pod_checks(owner, spec):
    vols = {v["name"] for v in spec.get("volumes", [])}
    for v in spec.get("volumes", []):
        if "configMap" in v:
            check(v["configMap"]["name"] in names("ConfigMap"), f"{owner}: ConfigMap {v['configMap']['name']} not defined")
        if "secret" in v:
            check(v["secret"]["secretName"] in names("Secret"), f"{owner}: Secret {v['secret']['secretName']} not defined")
    psc = spec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{owner}: pod does not set runAsNonRoot")
    for c in spec["containers"]:
        cn = f"{owner}/{c['name']}"
        img = c.get("image", "")
        check(re.search(r":[\w.-]+$", img) and not img.endswith(":latest"), f"{cn}: image {img!r} not pinned")
        r = c.get("resources", {})
        check("requests" in r and "limits" in r, f"{cn}: resources requests and limits expected")
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False, f"{cn}: allowPrivilegeEscalation must be false")
        check(sc.get("readOnlyRootFilesystem") is True, f"{cn}: readOnlyRootFilesystem expected")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cn}: capabilities must drop ALL")
        check(sc.get("runAsUser", 1) != 0, f"{cn}: runs as root")
        for m in c.get("volumeMounts", []):
            check(m["name"] in vols, f"{cn}: mounts undefined volume {m['name']}")
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                check(e["configMapRef"]["name"] in names("ConfigMap"), f"{cn}: envFrom ConfigMap {e['configMapRef']['name']} not defined")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                sec = [s for s in by_kind.get("Secret", []) if s["metadata"]["name"] == ref["name"]]
                check(sec and ref["key"] in sec[0].get("stringData", {}), f"{cn}: secret {ref['name']}/{ref['key']} not defined")

for name, d in deps.items():
    tpl = d["spec"]["template"]
    labels = tpl["metadata"].get("labels", {})
    sel = d["spec"]["selector"]["matchLabels"]
    check(all(labels.get(k) == v for k, v in sel.items()), f"Deployment {name}: selector does not match its pod labels")
    pod_checks(f"Deployment {name}", tpl["spec"])
for j in by_kind.get("Job", []):
    pod_checks(f"Job {j['metadata']['name']}", j["spec"]["template"]["spec"])

api = deps.get("kiln-api")
if api:
    spec = api["spec"]["template"]["spec"]
    cs = {c["name"]: c for c in spec["containers"]}
    check({"kiln-api", "nginx"} <= set(cs), "kiln-api pod needs containers kiln-api and nginx (sidecar)")
    if {"kiln-api", "nginx"} <= set(cs):
        mounts = lambda c: {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        check(mounts(cs["kiln-api"]).get("run") == "/run/kiln" == mounts(cs["nginx"]).get("run"),
              "kiln-api and nginx must share the socket volume at /run/kiln")
        env = {e["name"]: e.get("value") for e in cs["kiln-api"].get("env", [])}
        check(env.get("KILN_FCGI_SOCKET") == "/run/kiln/api.sock", "kiln-api container must listen on /run/kiln/api.sock")
        ports = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
        check("readinessProbe" in cs["nginx"], "nginx sidecar needs a readiness probe")
        for s in by_kind.get("Service", []):
            if s["metadata"]["name"] == "kiln-api":
                check(s["spec"]["selector"] == {"app": "kiln-api"} or all(
                    api["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in s["spec"]["selector"].items()),
                    "Service kiln-api selects no kiln-api pod")
                for p in s["spec"]["ports"]:
                    check(p["targetPort"] in ports, f"Service kiln-api targets unknown port {p['targetPort']}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        ml = pdb["spec"]["selector"]["matchLabels"]
        check(all(api["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in ml.items()), "PDB selects no kiln-api pod")
        check(pdb["spec"].get("minAvailable", 0) < api["spec"]["replicas"], "PDB minAvailable leaves no room for a drain")
    cm = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] == "kiln-nginx"]
    check(cm, "ConfigMap kiln-nginx (sidecar config) missing")
    if cm:
        conf = cm[0]["data"]["nginx.conf"]
        check("unix:/run/kiln/api.sock" in conf, "sidecar nginx does not use /run/kiln/api.sock")
        check(not re.search(r"^[^#]*fastcgi_keep_conn", conf, re.M), "sidecar nginx uses fastcgi_keep_conn")
        open(os.path.join(out, "sidecar-nginx.conf"), "w").write(conf)

hpas = by_kind.get("HorizontalPodAutoscaler", [])
check(any(h["spec"]["scaleTargetRef"]["name"] == "kiln-agent" and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
          and any(m.get("external", {}).get("metric", {}).get("name") == "kiln_queue_depth" for m in h["spec"]["metrics"])
          for h in hpas), "no HPA scales Deployment kiln-agent on the external metric kiln_queue_depth")
for h in hpas:
    check(h["spec"]["minReplicas"] >= 1 and h["spec"]["maxReplicas"] > h["spec"]["minReplicas"], "HPA replica bounds")
adapter = [c for c in by_kind.get("ConfigMap", []) if "config.yaml" in c.get("data", {})]
check(adapter, "prometheus-adapter ConfigMap missing")
if adapter:
    rules = yaml.safe_load(adapter[0]["data"]["config.yaml"]).get("externalRules", [])
    check(any(r.get("name", {}).get("as") == "kiln_queue_depth" and "kiln_queue_depth" in r.get("seriesQuery", "")
              and "<<.Series>>" in r.get("metricsQuery", "") for r in rules),
          "prometheus-adapter externalRules do not serve kiln_queue_depth")
agent = deps.get("kiln-agent")
if agent:
    c = agent["spec"]["template"]["spec"]["containers"][0]
    envs = {e["name"] for e in c.get("env", [])}
    check("KILN_AGENT_TOKEN_FILE" in envs, "agent container lacks KILN_AGENT_TOKEN_FILE")
    check(agent["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) >= 60, "agents need time to drain")
    # Metrics: the ConfigMap the container reads binds them off loopback, on the port the
    # pod declares and annotates for Prometheus.
    env = {}
    for e in c.get("envFrom", []):
        for cm in by_kind.get("ConfigMap", []):
            if cm["metadata"]["name"] == e.get("configMapRef", {}).get("name"):
                env.update(cm.get("data", {}))
    env.update({e["name"]: e.get("value") for e in c.get("env", [])})
    metrics_non_loopback("Deployment kiln-agent (kiln-agent-config)", env)
    port = env.get("KILN_AGENT_METRICS_PORT")
    check(any(str(p.get("containerPort")) == port for p in c.get("ports", [])),
          f"agent container does not declare its metrics port {port}")
    ann = agent["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/port") == port, f"agent pod's prometheus.io/port is not {port}")

# Localhost seccomp profiles: the file a pod names is shipped in deploy/seccomp/ (installed
# on the nodes as <kubelet root>/seccomp/<localhostProfile>) and, for the agents, lets
# io_uring through.
for f, d in docs:
    spec = d.get("spec", {}).get("template", {}).get("spec", {})
    sp = spec.get("securityContext", {}).get("seccompProfile", {})
    if sp.get("type") != "Localhost":
        continue
    lp = sp.get("localhostProfile", "")
    shipped = os.path.join(src, "deploy/seccomp", os.path.basename(lp))
    check(lp == "profiles/" + os.path.basename(lp) and os.path.exists(shipped),
          f"{f}: localhostProfile {lp!r} is not profiles/<a file of deploy/seccomp/>")
    if os.path.exists(shipped):
        prof = json.load(open(shipped))
        allowed = {n for r in prof.get("syscalls", []) if r.get("action") == "SCMP_ACT_ALLOW" for n in r["names"]}
        check(prof.get("defaultAction") == "SCMP_ACT_ERRNO", f"{shipped}: default action is not SCMP_ACT_ERRNO")
        if d["metadata"]["name"] == "kiln-agent":
            check({"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed,
                  f"{shipped}: io_uring is not allowed, the agent cannot start")

if errors:
    print("\n".join("FAIL: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"ok - Dockerfiles and {len(docs)} Kubernetes objects pass the offline checks")
