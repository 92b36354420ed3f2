#!/usr/bin/env python3
"""tests/ops/check_kubernetes.py against manifests broken on purpose: each
rule must fail on what it forbids (and only then), so a green check means
something.

The rendered overlays are broken one way at a time in memory; an overlay on
disk (a temporary kustomization over ops/kubernetes/base with patches that
break it) goes through the whole path, kustomize included.

Run by ops/test.sh from target/test-venv; by hand:
    target/test-venv/bin/python tests/ops/test_check_kubernetes.py
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kubernetes as k  # noqa: E402
from checks import Checks  # noqa: E402

check = Checks("kubernetes-checker")


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def container(docs: list[dict], kind: str, name: str) -> dict:
    return k.pod_spec(find(docs, kind, name))["containers"][0]


def env(docs: list[dict], deployment: str, variable: str) -> dict:
    return next(e for e in container(docs, "Deployment", deployment)["env"] if e["name"] == variable)


def broken(overlay: str, breaks: Callable[[list[dict]], object]) -> list[dict]:
    docs = copy.deepcopy(k.rendered(overlay))
    breaks(docs)
    return docs


def remove(docs: list[dict], kind: str, name: str) -> None:
    docs.remove(find(docs, kind, name))


def expect(found: list[str], wanted: str, case: str) -> None:
    assert any(wanted in problem for problem in found), f"{case}: no problem says {wanted!r}; found {found}"


# What breaks, in which overlay, and the words the checker must then say.
POLICY_CASES: list[tuple[str, str, Callable[[list[dict]], object], str]] = [
    ("no readiness probe", "production", lambda d: container(d, "Deployment", "gateway").pop("readinessProbe"),
     "Deployment/gateway container gateway has no readinessProbe"),
    ("no liveness probe", "dev", lambda d: container(d, "StatefulSet", "redis").pop("livenessProbe"),
     "StatefulSet/redis container redis has no livenessProbe"),
    ("no limits", "production", lambda d: container(d, "Deployment", "orders")["resources"].pop("limits"),
     "container orders has no memory limit"),
    ("no CPU request", "dev", lambda d: container(d, "Job", "shop-migrate")["resources"]["requests"].pop("cpu"),
     "container migrate has no cpu request"),
    ("image :latest", "production", lambda d: container(d, "Deployment", "users").update(image="shop:latest"),
     "image shop:latest is not pinned"),
    ("image with no tag", "dev", lambda d: container(d, "StatefulSet", "nats").update(image="nats"),
     "image nats has no tag"),
    ("may run as root", "production", lambda d: k.pod_spec(find(d, "Deployment", "inventory"))["securityContext"].pop(
        "runAsNonRoot"), "container inventory may run as root"),
    ("uid 0", "dev", lambda d: container(d, "StatefulSet", "postgres").setdefault("securityContext", {}).update(
        runAsUser=0), "runs as uid 0"),
    ("writable root", "production", lambda d: container(d, "Deployment", "notifications")["securityContext"].update(
        readOnlyRootFilesystem=False), "container notifications's root filesystem is writable"),
    ("privilege escalation", "production", lambda d: container(d, "Deployment", "gateway")["securityContext"].pop(
        "allowPrivilegeEscalation"), "may escalate privileges"),
    ("capabilities kept", "production", lambda d: container(d, "Deployment", "users")["securityContext"].pop(
        "capabilities"), "keeps its capabilities"),
    ("no seccomp", "production", lambda d: k.pod_spec(find(d, "Deployment", "orders"))["securityContext"].pop(
        "seccompProfile"), "container orders has no seccomp profile"),
    ("service account token", "production", lambda d: k.pod_spec(find(d, "Deployment", "users")).pop(
        "automountServiceAccountToken"), "Deployment/users mounts a service account token"),
    ("hostPath", "dev", lambda d: k.pod_spec(find(d, "Deployment", "gateway")).setdefault("volumes", []).append(
        {"name": "host", "hostPath": {"path": "/"}}), "mounts a hostPath"),
    ("inlined secret by name", "production", lambda d: env(d, "gateway", "SHOP_INTERNAL_SECRET").update(
        value="0123456789abcdef0123", valueFrom=None) or env(d, "gateway", "SHOP_INTERNAL_SECRET").pop("valueFrom"),
     "writes the secret SHOP_INTERNAL_SECRET as a literal value"),
    ("inlined password in a URL", "dev", lambda d: env(d, "users", "SHOP_POSTGRES_URL").update(
        value="postgres://shop:hunter2@postgres:5432") or env(d, "users", "SHOP_POSTGRES_URL").pop("valueFrom"),
     "writes a password in SHOP_POSTGRES_URL"),
    ("a Secret with its values", "dev", lambda d: d.append(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-internal"}, "stringData": {"secret": "x"}}),
     "Secret/shop-internal is written with its values"),
    ("a secret in the ConfigMap", "production", lambda d: find(d, "ConfigMap", "shop-config")["data"].update(
        SHOP_REDIS_URL="rediss://default:hunter2@redis.example.com:6380"), "holds a secret in SHOP_REDIS_URL"),
    ("no PodDisruptionBudget", "production", lambda d: remove(d, "PodDisruptionBudget", "inventory"),
     "Deployment/inventory has no PodDisruptionBudget"),
    ("two PodDisruptionBudgets", "production", lambda d: d.append(
        copy.deepcopy(find(d, "PodDisruptionBudget", "users")) | {"metadata": {"name": "users-again"}}),
     "Deployment/users is selected by 2 PodDisruptionBudgets"),
    ("no NetworkPolicy of its own", "production", lambda d: remove(d, "NetworkPolicy", "orders"),
     "Deployment/orders is matched by no NetworkPolicy"),
    ("a StatefulSet with no NetworkPolicy", "dev", lambda d: remove(d, "NetworkPolicy", "redis"),
     "StatefulSet/redis is matched by no NetworkPolicy"),
    ("no default deny", "dev", lambda d: remove(d, "NetworkPolicy", "shop-default-deny"),
     "no default-deny NetworkPolicy"),
    ("probe on a port not declared", "production", lambda d: container(d, "Deployment", "users")["readinessProbe"][
        "grpc"].update(port=50059), "readinessProbe asks port 50059"),
    ("Service to a port its pods lack", "dev", lambda d: find(d, "Service", "inventory")["spec"]["ports"][0].update(
        targetPort="grcp"), "Service/inventory sends port 50052 to grcp"),
    ("Service selecting nothing", "dev", lambda d: find(d, "Service", "nats")["spec"].update(
        selector={"app.kubernetes.io/name": "natz"}), "Service/nats selects no pod"),
    ("autoscaler on nothing", "production", lambda d: find(d, "HorizontalPodAutoscaler", "gateway")["spec"][
        "scaleTargetRef"].update(name="gatewya"), "scales Deployment/gatewya, which is not rendered"),
]

OVERLAY_CASES: list[tuple[str, str, Callable[[list[dict]], object], str]] = [
    ("one replica in production", "production", lambda d: find(d, "Deployment", "orders")["spec"].update(replicas=1),
     "production runs 1 replica of orders"),
    ("maxUnavailable in production", "production", lambda d: find(d, "PodDisruptionBudget", "gateway").update(
        spec={"maxUnavailable": 1, "selector": find(d, "PodDisruptionBudget", "gateway")["spec"]["selector"]}),
     "PodDisruptionBudget/gateway does not keep minAvailable 1"),
    ("autoscaler down to 1", "production", lambda d: find(d, "HorizontalPodAutoscaler", "gateway")["spec"].update(
        minReplicas=1), "may scale below 2 replicas"),
    ("no gateway autoscaler", "dev", lambda d: remove(d, "HorizontalPodAutoscaler", "gateway"),
     "the gateway has no HorizontalPodAutoscaler"),
    ("a StatefulSet in production", "production", lambda d: d.append(copy.deepcopy(find(k.rendered("dev"),
     "StatefulSet", "postgres"))), "production runs a StatefulSet"),
    ("no PostgreSQL in dev", "dev", lambda d: remove(d, "StatefulSet", "postgres"), "dev has no postgres StatefulSet"),
    ("no volume for NATS", "dev", lambda d: find(d, "StatefulSet", "nats")["spec"].pop("volumeClaimTemplates"),
     "dev's nats keeps no data on a PersistentVolumeClaim"),
    ("no migration Job", "dev", lambda d: remove(d, "Job", "shop-migrate"), "no Job runs `shop migrate`"),
    ("a role missing", "production", lambda d: remove(d, "Deployment", "notifications"),
     "no Deployment for ['notifications']"),
]


@check("the manifests as they are: no policy problem in either overlay")
def clean():
    for overlay in k.OVERLAYS:
        found = k.policy(k.rendered(overlay)) + k.overlay_problems(overlay, k.rendered(overlay))
        assert not found, f"{overlay}: {found}"


@check(f"each rule fails on what it forbids ({len(POLICY_CASES)} ways of breaking the manifests)")
def policy_cases():
    for case, overlay, breaks, wanted in POLICY_CASES:
        expect(k.policy(broken(overlay, breaks)), wanted, case)


@check(f"each overlay's promise fails when broken ({len(OVERLAY_CASES)} ways)")
def overlay_cases():
    for case, overlay, breaks, wanted in OVERLAY_CASES:
        expect(k.overlay_problems(overlay, broken(overlay, breaks)), wanted, case)


@check("a probe on a path the gateway does not route fails")
def route_case():
    docs = broken("production", lambda d: container(d, "Deployment", "gateway")["livenessProbe"]["httpGet"].update(
        path="/healthzz"))
    expect(k.route_problems(docs), "livenessProbe asks /healthzz", "a missing route")


@check("a variable the shop does not read, and a ConfigMap that is not there, fail")
def variable_cases():
    typo = broken("production", lambda d: env(d, "gateway", "SHOP_COOKIE_SECURE").update(name="SHOP_COOKIE_SECRUE"))
    expect(k.variable_problems(typo), "Deployment/gateway sets SHOP_COOKIE_SECRUE", "a misspelt variable")
    in_config = broken("dev", lambda d: find(d, "ConfigMap", "shop-config")["data"].update(SHOP_DB_MAX_CONECTIONS="5"))
    expect(k.variable_problems(in_config), "sets SHOP_DB_MAX_CONECTIONS", "a misspelt ConfigMap key")
    missing = broken("dev", lambda d: remove(d, "ConfigMap", "shop-config"))
    expect(k.variable_problems(missing), "ConfigMap shop-config, which is not rendered", "a missing ConfigMap")
    assert not k.variable_problems(k.rendered("production")), k.variable_problems(k.rendered("production"))


@check("strict schema validation refuses an unknown field, a wrong type and an unknown kind")
def schema_cases():
    typo = broken("production", lambda d: container(d, "Deployment", "users").update(readinesProbe={}))
    expect(k.schema_problems([find(typo, "Deployment", "users")]), "readinesProbe", "an unknown field")
    wrong = broken("production", lambda d: find(d, "Deployment", "orders")["spec"].update(replicas="two"))
    expect(k.schema_problems([find(wrong, "Deployment", "orders")]), "'two' is not of type", "a wrong type")
    port = broken("dev", lambda d: container(d, "Deployment", "inventory")["readinessProbe"]["grpc"].update(
        port="grpc"))
    expect(k.schema_problems([find(port, "Deployment", "inventory")]), "'grpc' is not of type", "a named gRPC port")
    old = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}, "spec": {}}
    expect(k.schema_problems([old]), "no schema for policy/v1beta1", "an API removed in 1.25")


BROKEN_OVERLAY = """\
resources:
  - {base}
images:
  - name: shop
    newTag: latest
patches:
  - target: {{kind: Deployment, name: gateway}}
    patch: |-
      - op: remove
        path: /spec/template/spec/containers/0/readinessProbe
      - op: remove
        path: /spec/template/spec/securityContext/runAsNonRoot
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {{name: SHOP_INTERNAL_SECRET, value: not-so-secret-at-all}}
  - target: {{kind: PodDisruptionBudget, name: orders}}
    patch: |-
      $patch: delete
      apiVersion: policy/v1
      kind: PodDisruptionBudget
      metadata: {{name: orders}}
  - target: {{kind: Deployment, name: users}}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/readinesProbe
        value: {{grpc: {{port: 50051}}}}
"""


@check("a broken overlay on disk, through kustomize, the schemas and the rules")
def broken_overlay():
    with tempfile.TemporaryDirectory() as directory:
        overlay = Path(directory)
        # kustomize takes a relative path only.
        base = os.path.relpath(k.KUBERNETES / "base", overlay)
        (overlay / "kustomization.yaml").write_text(BROKEN_OVERLAY.format(base=base))
        docs = k.render(overlay)
        found = k.policy(docs)
        for wanted in (
            "image shop:latest is not pinned",
            "Deployment/gateway container gateway has no readinessProbe",
            "Deployment/gateway container gateway may run as root",
            "writes the secret SHOP_INTERNAL_SECRET as a literal value",
            "Deployment/orders has no PodDisruptionBudget",
        ):
            expect(found, wanted, "the broken overlay")
        expect(k.schema_problems(docs, ("1.30.0",)), "'readinesProbe' was unexpected", "the broken overlay's schema")
        # An overlay kustomize cannot build fails the check, not passes it.
        (overlay / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
        try:
            k.render(overlay)
        except AssertionError as error:
            assert "kubectl kustomize" in str(error), error
        else:
            raise AssertionError("an overlay with a missing resource rendered")


if __name__ == "__main__":
    sys.exit(check.run())
