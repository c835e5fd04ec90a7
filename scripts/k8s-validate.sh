#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes/ without a cluster:
#  1. kubernetes-validate (PyPI, pinned, in its own venv under the tools dir scripts/infra.sh
#     uses) checks every manifest against the Kubernetes OpenAPI schemas in strict mode
#     (unknown fields are errors) for each version in LOOM_K8S_VERSIONS; an error or a warning
#     (e.g. an apiVersion it has no schema for) fails the run.
#  2. Consistency checks against the code: the ten per-service Services carry the names and ports
#     of cluster.toml and reach the matching container ports; every environment variable the
#     manifests set is a real LOOM_* override of common/config/src/env.rs (a rename there breaks
#     this); the seeds, the cluster port, the headless Service, the probes, the shutdown grace
#     period and the Secret placeholders agree with each other and with the node's config.
# Run by scripts/test.sh; alone: scripts/k8s-validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${LOOM_TOOLS_DIR:-$HOME/.cache/loom/tools}
KV_VERSION=1.37.0
# The oldest Kubernetes release the manifests claim, and the newest the pinned tool knows
# (kubernetes-validate 1.37.0 ships schemas for 1.25.0 to 1.37.0).
K8S_VERSIONS=${LOOM_K8S_VERSIONS:-1.30.0 1.37.0}
MANIFESTS=deploy/kubernetes

log() { printf 'k8s-validate: %s\n' "$*" >&2; }

mkdir -p "$TOOLS"
if ! "$TOOLS/k8s-validate/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KV_VERSION"; then
  log "installing kubernetes-validate $KV_VERSION (Kubernetes schema validation of deploy/kubernetes)"
  python3 -m venv "$TOOLS/k8s-validate"
  "$TOOLS/k8s-validate/bin/pip" install -q "kubernetes-validate==$KV_VERSION" >/dev/null
fi
KV="$TOOLS/k8s-validate/bin/kubernetes-validate"
PY="$TOOLS/k8s-validate/bin/python"

# Every manifest but kustomization.yaml (a kustomize file, not a Kubernetes resource).
files=()
for f in "$MANIFESTS"/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || files+=("$f")
done
[ "${#files[@]}" -gt 0 ] || { log "no manifests in $MANIFESTS"; exit 1; }

status=0
for version in $K8S_VERSIONS; do
  # --quiet prints only warnings and failures: any line is a problem.
  if ! out=$("$KV" --strict --quiet -k "$version" "${files[@]}" 2>&1) || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    log "FAIL: kubernetes-validate $KV_VERSION --strict -k $version"
    status=1
  else
    log "ok: ${#files[@]} manifests valid (kubernetes-validate $KV_VERSION --strict -k $version)"
  fi
done
[ "$status" -eq 0 ] || exit 1

"$PY" - "$MANIFESTS" <<'PYTHON'
"""Consistency checks of deploy/kubernetes against cluster.toml and common/config/src."""
import re
import sys
import tomllib
from pathlib import Path

import yaml

root = Path(sys.argv[1])
failures = []
passed = 0


def check(name, problems):
    global passed
    if problems:
        for p in problems:
            failures.append(f"{name}: {p}")
            print(f"k8s-validate: FAIL {name}: {p}", file=sys.stderr)
    else:
        passed += 1
        print(f"k8s-validate: ok: {name}", file=sys.stderr)


docs = {}  # (kind, name) -> object
by_file = {}
for path in sorted(root.glob("*.yaml")):
    if path.name == "kustomization.yaml":
        continue
    objs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    by_file[path.name] = objs
    for d in objs:
        docs[(d["kind"], d["metadata"]["name"])] = d


def only(kind):
    found = [d for (k, _), d in docs.items() if k == kind]
    assert len(found) == 1, f"exactly one {kind} expected, found {len(found)}"
    return found[0]


sts = only("StatefulSet")
hpa = only("HorizontalPodAutoscaler")
pdb = only("PodDisruptionBudget")
pod = sts["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
(container,) = pod["spec"]["containers"]
env_list = container.get("env", [])
env = {e["name"]: e for e in env_list}
container_ports = {p["name"]: p for p in container["ports"]}


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    if not m:
        raise ValueError(f"duration {text!r}")
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]


def resolve_port(ref, protocol="TCP"):
    """A container port (number) for a numeric or named port reference."""
    if isinstance(ref, int):
        hits = [p for p in container["ports"] if p["containerPort"] == ref and p.get("protocol", "TCP") == protocol]
    else:
        hits = [p for p in container["ports"] if p["name"] == ref and p.get("protocol", "TCP") == protocol]
    return hits[0]["containerPort"] if hits else None


# 1. Every file has a header comment; the kustomization lists exactly the manifests.
problems = []
for path in sorted(root.glob("*.yaml")):
    if not path.read_text().startswith("# "):
        problems.append(f"{path.name} does not open with a header comment")
kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
listed = set(kustomization.get("resources", []))
present = set(by_file)
if listed != present:
    problems.append(f"kustomization.yaml lists {sorted(listed)}, the directory has {sorted(present)}")
check("every manifest has a header comment and is listed in kustomization.yaml", problems)

# 2. The ten per-service Services: names and ports of cluster.toml, reaching the container.
config = tomllib.loads(Path("cluster.toml").read_text())
documented = {name: table["port"] for name, table in config["services"].items()}
problems = []
if len(documented) != 10:
    problems.append(f"cluster.toml documents {len(documented)} services, expected 10")
headless_name = sts["spec"]["serviceName"]
services = {n: d for (k, n), d in docs.items() if k == "Service" and n != headless_name}
if set(services) != set(documented):
    problems.append(f"per-service Services {sorted(services)} != cluster.toml services {sorted(documented)}")
for name, port in sorted(documented.items()):
    svc = services.get(name)
    if svc is None:
        continue
    spec = svc["spec"]
    if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("clusterIP") == "None":
        problems.append(f"Service {name} is not a ClusterIP Service")
    if [p["port"] for p in spec["ports"]] != [port]:
        problems.append(f"Service {name} ports {[p['port'] for p in spec['ports']]}, cluster.toml says {port}")
    for p in spec["ports"]:
        target = resolve_port(p.get("targetPort", p["port"]), p.get("protocol", "TCP"))
        if target != port:
            problems.append(f"Service {name} targetPort {p.get('targetPort')!r} reaches container port {target}, not {port}")
    if not set(spec["selector"].items()) <= set(pod_labels.items()):
        problems.append(f"Service {name} selector {spec['selector']} does not select the pods {pod_labels}")
http_ports = {p["containerPort"] for p in container["ports"] if p["name"] not in ("cluster-tcp", "cluster-udp", "cluster-data")}
if http_ports != set(documented.values()):
    problems.append(f"container HTTP ports {sorted(http_ports)} != cluster.toml ports {sorted(documented.values())}")
for pname in container_ports:
    if len(pname) > 15 or not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", pname) or "--" in pname:
        problems.append(f"container port name {pname!r} is not an IANA service name (<= 15 chars)")
check("ten ClusterIP Services named after the services, on their cluster.toml ports", problems)

# 3. Every environment variable the manifests set is a real override of the config.
env_rs = Path("common/config/src/env.rs").read_text()
known = set(re.findall(r'^\s*"(LOOM_[A-Z0-9_]+)"\s*=>', env_rs, re.M))
# Not config overrides: inputs of $(...) substitution and the process environment.
NON_LOOM = {"POD_NAMESPACE", "HOME"}
problems = []
if len(known) < 50:
    problems.append(f"only {len(known)} overrides parsed from common/config/src/env.rs: the table moved?")
sources = {}  # variable -> where it is set
for e in env_list:
    sources.setdefault(e["name"], []).append("statefulset env")
for ref in container.get("envFrom", []):
    kind, key = ("ConfigMap", "configMapRef") if "configMapRef" in ref else ("Secret", "secretRef")
    obj = docs.get((kind, ref[key]["name"]))
    if obj is None:
        problems.append(f"envFrom names {kind} {ref[key]['name']}, which is not in the manifests")
        continue
    for var in list(obj.get("data", {})) + list(obj.get("stringData", {})):
        sources.setdefault(var, []).append(f"{kind} {ref[key]['name']}")
for var, where in sorted(sources.items()):
    if len(where) > 1:
        problems.append(f"{var} is set twice ({', '.join(where)})")
    if var.startswith("LOOM_"):
        if var not in known:
            problems.append(f"{var} ({where[0]}) is not an override in common/config/src/env.rs")
    elif var not in NON_LOOM:
        problems.append(f"{var} ({where[0]}) is neither a LOOM_* override nor an allowed helper {sorted(NON_LOOM)}")
for i, e in enumerate(env_list):
    for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
        if ref not in [x["name"] for x in env_list[:i]]:
            problems.append(f"{e['name']} expands $({ref}), which is not defined before it")
check(f"every env var the manifests set ({len(sources)}) is a LOOM_* override of common/config/src/env.rs or an allowed helper", problems)

# Values the node will see (ConfigMap and Secret through envFrom, then env).
values = {}
for ref in container.get("envFrom", []):
    kind, key = ("ConfigMap", "configMapRef") if "configMapRef" in ref else ("Secret", "secretRef")
    obj = docs.get((kind, ref[key]["name"]), {})
    values.update(obj.get("data", {}))
    values.update(obj.get("stringData", {}))
values.update({e["name"]: e.get("value") for e in env_list if "value" in e})

# 4. Node identity, seeds and the cluster port.
problems = []
field = lambda var: env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
if field("LOOM_NODE_NAME") != "metadata.name":
    problems.append("LOOM_NODE_NAME must come from metadata.name (the stable pod name)")
if field("LOOM_ADVERTISE_ADDR") != "status.podIP":
    problems.append("LOOM_ADVERTISE_ADDR must be the pod IP: the advertised address is what peers dial")
cluster_data_port = int(values.get("LOOM_CLUSTER_DATA_PORT", config["cluster"]["data_port"]))
if resolve_port("cluster-data", "TCP") != cluster_data_port:
    problems.append(f"container port cluster-data/TCP is not the data port {cluster_data_port}")
if field("POD_NAMESPACE") != "metadata.namespace":
    problems.append("POD_NAMESPACE must come from metadata.namespace")
cluster_port = int(values.get("LOOM_CLUSTER_PORT", config["cluster"]["port"]))
for proto, pname in (("TCP", "cluster-tcp"), ("UDP", "cluster-udp")):
    if resolve_port(pname, proto) != cluster_port:
        problems.append(f"container port {pname}/{proto} is not the cluster port {cluster_port}")
headless = docs.get(("Service", headless_name))
if headless is None:
    problems.append(f"no headless Service {headless_name} (StatefulSet serviceName)")
else:
    hs = headless["spec"]
    if hs.get("clusterIP") != "None":
        problems.append(f"{headless_name} is not headless (clusterIP: None)")
    if hs.get("publishNotReadyAddresses") is not True:
        problems.append(f"{headless_name} must publish not-ready addresses (peers join before ready)")
    want = sorted([(cluster_port, "TCP"), (cluster_port, "UDP"), (cluster_data_port, "TCP")])
    if sorted((p["port"], p.get("protocol", "TCP")) for p in hs["ports"]) != want:
        problems.append(f"{headless_name} must carry the cluster port {cluster_port} on TCP (sessions) and UDP (gossip) and the data port {cluster_data_port} (TCP)")
    if not set(hs["selector"].items()) <= set(pod_labels.items()):
        problems.append(f"{headless_name} does not select the pods")
seeds = [s.strip() for s in values.get("LOOM_SEEDS", "").split(",") if s.strip()]
if not seeds:
    problems.append("LOOM_SEEDS is empty")
min_replicas = hpa["spec"].get("minReplicas", 1)
for s in seeds:
    host, _, port = s.rpartition(":")
    m = re.fullmatch(re.escape(sts["metadata"]["name"]) + r"-(\d+)\." + re.escape(headless_name)
                     + r"\.(\$\(POD_NAMESPACE\)|[a-z0-9-]+)\.svc\.cluster\.local", host)
    if not m:
        problems.append(f"seed {s!r} is not <pod>.{headless_name}.<namespace>.svc.cluster.local:<port>")
    elif int(m[1]) >= min_replicas:
        problems.append(f"seed {s!r} names a pod beyond the HPA minimum of {min_replicas}")
    if not port.isdigit() or int(port) != cluster_port:
        problems.append(f"seed {s!r} is not on the cluster port {cluster_port} (host:port)")
if "LOOM_COOKIE" not in values:
    problems.append("LOOM_COOKIE must be set: the config requires it as soon as seeds are set")
check("pod name, pod IP, seeds and the headless Service agree on the cluster port", problems)

# 5. Probes, shutdown and the filesystem.
problems = []
probes = {k: container.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
expect = {"startupProbe": "/health", "readinessProbe": "/ready", "livenessProbe": "/health"}
for kind, probe in probes.items():
    if not probe:
        problems.append(f"no {kind}")
        continue
    get = probe.get("httpGet", {})
    if get.get("path") != expect[kind]:
        problems.append(f"{kind} must GET {expect[kind]}, not {get.get('path')}")
    if resolve_port(get.get("port")) not in documented.values():
        problems.append(f"{kind} port {get.get('port')!r} is not one of the service ports")
shutdown = duration_s(values.get("LOOM_SHUTDOWN_TIMEOUT", config["node"]["shutdown_timeout"]))
pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
if grace < shutdown + pause + 5:
    problems.append(f"terminationGracePeriodSeconds {grace} < shutdown_timeout {shutdown}s + preStop {pause}s + 5s")
if shutdown < duration_s(config["http"]["request_timeout"]):
    problems.append(f"LOOM_SHUTDOWN_TIMEOUT {shutdown}s is shorter than http.request_timeout: requests are cut")
psc, csc = pod["spec"].get("securityContext", {}), container.get("securityContext", {})
if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
    problems.append("pods must run as a numeric non-root user (the image's user has no fixed UID)")
if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation") is not False:
    problems.append("the container must have a read-only root filesystem and no privilege escalation")
mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
if values.get("LOOM_DATA_DIR") not in mounts:
    problems.append(f"LOOM_DATA_DIR {values.get('LOOM_DATA_DIR')} is not a mounted volume")
if "replicas" in sts["spec"]:
    problems.append("the StatefulSet sets spec.replicas: the HPA owns it (a re-apply would reset it)")
target = hpa["spec"]["scaleTargetRef"]
if (target["kind"], target["name"]) != ("StatefulSet", sts["metadata"]["name"]):
    problems.append(f"the HPA scales {target}, not the StatefulSet")
if pdb["spec"].get("maxUnavailable") != 1 or not set(pdb["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels.items()):
    problems.append("the PodDisruptionBudget must allow one unavailable Loom pod")
check("probes, shutdown grace, security context, HPA and PDB", problems)

# 6. The shipped Secret holds placeholders only.
problems = []
secret = only("Secret")
for var in ("LOOM_COOKIE", "LOOM_AUTH_TOKENS", "LOOM_DEVICE_MASTER_KEY", "LOOM_DATABASE_URL", "LOOM_S3_SECRET_KEY"):
    if "REPLACE" not in secret.get("stringData", {}).get(var, ""):
        problems.append(f"{var} in the Secret is not an obvious placeholder (REPLACE...)")
check("the Secret ships placeholders only", problems)

if failures:
    print(f"k8s-validate: {len(failures)} problem(s) in {root}", file=sys.stderr)
    sys.exit(1)
print(f"k8s-validate: {passed} consistency checks passed", file=sys.stderr)
PYTHON
