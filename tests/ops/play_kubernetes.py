#!/usr/bin/env python3
"""The shop's rendered Kubernetes pods started for real by `podman kube play`,
and their probes asked.

The dev overlay is rendered (kubectl kustomize); its five Deployments, the
migration Job's pod, the ConfigMap and the Secrets the pods reference are
played by Podman with what a cluster would enforce and Podman can: the
image's user 10001, runAsNonRoot, a read-only root filesystem, every
capability dropped, no privilege escalation, seccomp RuntimeDefault, the
notifications' emptyDir, env from the ConfigMap and from Secrets by key.

What is changed, and why: the pods share the host's network (Podman 4.3 has
no Service DNS), so every address and port is rewritten to a free one on
127.0.0.1 (the probes' ports with them), and PostgreSQL, Redis and NATS are
the local test servers, with databases, stream and keys of this run's own.
The image is the built shop binary with its C libraries on an empty root,
run as the Dockerfile's user (no registry is reachable for debian:bookworm-slim;
the container test in ops/containers/test.sh builds the Dockerfile itself).

Checked: the migration pod exits 0; each container runs read-only as
10001:10001 with no capability; then every readiness, liveness and start-up
probe of every container answers (gRPC health SERVING, HTTP 2xx), asked from
the host with `shop healthcheck` because Podman without systemd runs no
probe by itself; the gateway's home page is served through the services.

    tests/ops/play_kubernetes.py [SHOP_BIN]   (default: SHOP_IMAGE_BIN, else
                                              target/release/shop)

Uses a Podman storage of its own under a temp dir (so nothing another run
does to the machine's images touches it), ops/containers/containers.conf
(unless CONTAINERS_CONF is set), and SHOP_TEST_POSTGRES_URL,
SHOP_TEST_REDIS_URL and SHOP_TEST_NATS_URL (default: the local servers).
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kubernetes as k  # noqa: E402
from checks import Checks, problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# A release build, as the image has: a debug build reads web/templates from
# the source tree, which the image does not hold.
BIN = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SHOP_IMAGE_BIN", ROOT / "target" / "release" / "shop"))
PG = os.environ.get("SHOP_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("SHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
NATS = os.environ.get("SHOP_TEST_NATS_URL", "nats://127.0.0.1:4222")
TAG = f"kplay{secrets.token_hex(4)}"
IMAGE = f"localhost/shop-kube-play:{TAG}"
ROLES = ("users", "inventory", "orders", "gateway", "notifications")
WORK = Path(tempfile.mkdtemp(prefix="shop-kube-play-"))

check = Checks("kubernetes-play")
state: dict = {}


def podman(*args: str, check_status: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    # A storage of its own (vfs: nothing mounted, so removing the directory
    # removes it all), beside whatever else this machine's Podman runs.
    command = ["podman", "--root", str(WORK / "storage"), "--runroot", str(WORK / "run"), "--storage-driver", "vfs",
               *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check_status:
        assert done.returncode == 0, f"{' '.join(args[:3])}: {done.stderr.strip()[-2000:]}"
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(target: str) -> bool:
    return subprocess.run([str(BIN), "healthcheck", target], capture_output=True).returncode == 0


# ------------------------------------------------------------ the image


def make_image() -> None:
    """The shop binary and the C libraries it links, on an empty root, with
    the Dockerfile's user, working directory and entrypoint."""
    libraries = []
    for line in subprocess.run(["ldd", str(BIN)], capture_output=True, text=True, check=True).stdout.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            libraries.append(Path(path))
    tar_path = WORK / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:

        def add_dir(name: str, uid: int = 0) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, uid
            tar.addfile(info)

        def add_text(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, fileobj=io.BytesIO(data))

        for directory in ("etc", "tmp", "usr", "usr/local", "usr/local/bin", "var", "var/lib", "proc", "sys", "dev"):
            add_dir(directory)
        add_dir("var/lib/shop", 10001)
        add_text("etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nshop:x:10001:10001::/nonexistent:/sbin/nologin\n")
        add_text("etc/group", "root:x:0:\nshop:x:10001:\n")
        tar.add(BIN.resolve(), "usr/local/bin/shop")
        for library in libraries:
            tar.add(library.resolve(), str(library).lstrip("/"))
    podman("import", "--change", "USER 10001:10001", "--change", "WORKDIR /var/lib/shop",
           "--change", 'ENTRYPOINT ["/usr/local/bin/shop"]', "--change", "ENV PATH=/usr/local/bin",
           str(tar_path), IMAGE)


# ------------------------------------------------------------ the manifests


def rewrite(docs: list[dict]) -> tuple[list[dict], dict, list[dict], dict]:
    """The dev overlay's shop pods for one host: free ports, local servers,
    names of this run's own. Returns the Deployments, the ConfigMap, the
    migration pod and the probe targets of each role."""
    ports = {role: free_port() for role in ("users", "inventory", "orders")}
    ports["gateway"] = free_port()
    metrics = {role: free_port() for role in ROLES}
    state.update(ports=ports, metrics=metrics)
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "ConfigMap", "Job")}

    config = copy.deepcopy(by_name["shop-config"])
    config["data"].update(
        SHOP_USERS_URL=f"http://127.0.0.1:{ports['users']}",
        SHOP_INVENTORY_URL=f"http://127.0.0.1:{ports['inventory']}",
        SHOP_ORDERS_URL=f"http://127.0.0.1:{ports['orders']}",
        POSTGRES_DB_USERS=f"shop_test_{TAG}_users", POSTGRES_DB_INVENTORY=f"shop_test_{TAG}_inventory",
        POSTGRES_DB_ORDERS=f"shop_test_{TAG}_orders",
        SHOP_NOTIFICATIONS_DATABASE_URL=f"{PG}/shop_test_{TAG}_notifications",
        SHOP_NATS_STREAM=f"SHOP_TEST_{TAG}", SHOP_NATS_SUBJECT_PREFIX=TAG, SHOP_CACHE_PREFIX=f"shop_test:{TAG}:",
        OTEL_TRACES_EXPORTER="none",
    )
    config["data"].pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    # Each pod's own, in its env: Podman 4.3 lets envFrom win over env (a
    # cluster does the opposite), so the shared one must go.
    config["data"].pop("SHOP_METRICS_ADDR", None)

    def for_host(pod: dict, role: str | None) -> None:
        pod["hostNetwork"] = True
        for container in pod["containers"]:
            container["image"] = IMAGE
            if role is None:
                continue
            number = {"grpc": ports.get(role), "http": ports.get(role), "metrics": metrics[role]}
            for port in container.get("ports", []):
                port["containerPort"] = number[port["name"]]
            for variable in container["env"]:
                if variable["name"].endswith("_ADDR"):
                    variable["value"] = f"127.0.0.1:{ports[role]}"
            container["env"].append({"name": "SHOP_METRICS_ADDR", "value": f"127.0.0.1:{metrics[role]}"})
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                for handler in (container.get(probe) or {}).values():
                    if isinstance(handler, dict) and "port" in handler:
                        # A name as its new number, a number (gRPC) as the role's port.
                        handler["port"] = number.get(handler["port"], number["grpc"])
            # Podman 4.3 turns declared ports into port mappings, which host
            # networking refuses; the probes name their numbers now.
            container.pop("ports", None)

    deployments = []
    for role in ROLES:
        deployment = copy.deepcopy(by_name[role])
        for_host(deployment["spec"]["template"]["spec"], role)
        deployments.append(deployment)
    job = by_name["shop-migrate"]
    migrate = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shop-migrate", "labels": job["spec"]["template"]["metadata"]["labels"]},
        "spec": copy.deepcopy(job["spec"]["template"]["spec"]) | {"restartPolicy": "Never"},
    }
    for_host(migrate["spec"], None)

    targets = {}
    for deployment in deployments:
        role = deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        asks = set()
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container[probe]
            if "grpc" in spec:
                asks.add(f"grpc://127.0.0.1:{spec['grpc']['port']}")
            else:
                asks.add(f"http://127.0.0.1:{spec['httpGet']['port']}{spec['httpGet']['path']}")
        targets[role] = sorted(asks)
    return deployments, config, migrate, targets


def make_secrets() -> None:
    """The Secrets the pods reference, as `kubectl create secret` would make
    them. Podman 4.3 reads a secretKeyRef's secret as a JSON map of keys to
    base64 values, while its own `kube play` of a Secret stores the YAML: so
    each is made with `podman secret create` from that map."""
    values = {
        "shop-internal": {"secret": secrets.token_hex(24)},
        "shop-postgres": {"url": PG},
        "shop-redis": {"url": REDIS},
        "shop-nats": {"url": NATS},
    }
    for name, data in values.items():
        secret = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        path = WORK / f"secret-{name}.json"
        path.write_text(json.dumps(secret))
        podman("secret", "create", name, str(path))


# ------------------------------------------------------------ the checks


@check("an image of the built shop binary (podman import)")
def image():
    assert BIN.is_file(), f"no shop binary at {BIN}: build it first (cargo build --release -p shop)"
    make_image()


# `kube play` makes this network (in the machine-wide configuration) even
# for pods on the host's network; removed at the end if this run made it.
KUBE_NETWORK = "podman-default-kube-network"


@check("the Secrets and the migration Job's pod: shop migrate exits 0")
def migration():
    state["kube_network_was_there"] = podman("network", "exists", KUBE_NETWORK, check_status=False).returncode == 0
    deployments, config, migrate, targets = rewrite(k.render(k.KUBERNETES / "overlays" / "dev"))
    state.update(deployments=deployments, targets=targets)
    (WORK / "config.yaml").write_text(yaml.safe_dump(config))
    (WORK / "migrate.yaml").write_text(yaml.safe_dump(migrate))
    make_secrets()
    podman("kube", "play", "--configmap", str(WORK / "config.yaml"), str(WORK / "migrate.yaml"))
    deadline = time.time() + 120
    while True:
        status = podman("inspect", "shop-migrate-migrate", "--format", "{{.State.Status}} {{.State.ExitCode}}").stdout
        if status.startswith("exited"):
            break
        assert time.time() < deadline, "the migration pod did not finish in 120 s"
        time.sleep(0.5)
    logs = podman("logs", "shop-migrate-migrate", check_status=False)
    assert status.split() == ["exited", "0"], f"shop migrate: {status}\n{logs.stdout}{logs.stderr}"
    assert "notifications: migrated" in logs.stdout, logs.stdout


@check("the five Deployments played: read-only root, user 10001, no capability")
def play():
    assert "deployments" in state, "nothing to play: the migration check failed"
    (WORK / "shop.yaml").write_text(yaml.safe_dump_all(state["deployments"]))
    podman("kube", "play", "--configmap", str(WORK / "config.yaml"), str(WORK / "shop.yaml"), timeout=300)
    found = []
    for role in ROLES:
        name = f"{role}-pod-0-{role}"
        shape = podman("inspect", name, "--format",
                       "{{.HostConfig.ReadonlyRootfs}}|{{.Config.User}}|{{.HostConfig.CapDrop}}|{{.HostConfig.CapAdd}}",
                       check_status=False)
        if shape.returncode != 0:
            found.append(f"{name}: {shape.stderr.strip()}")
            continue
        readonly, user, dropped, added = shape.stdout.strip().split("|")
        if readonly != "true":
            found.append(f"{name}: the root filesystem is writable")
        if user not in ("10001", "10001:10001"):
            found.append(f"{name} runs as {user!r}")
        if "CAP_NET_BIND_SERVICE" not in dropped or added not in ("[]", ""):
            found.append(f"{name} keeps capabilities: dropped {dropped}, added {added}")
    problems(found, "pods not as the manifests say")


@check("every probe of every pod answers (gRPC SERVING, HTTP 2xx)")
def probes():
    assert "targets" in state, "nothing was played"
    deadline = time.time() + 90
    waiting = {role: list(asks) for role, asks in state["targets"].items()}
    while any(waiting.values()) and time.time() < deadline:
        for role, asks in waiting.items():
            waiting[role] = [target for target in asks if not healthy(target)]
        time.sleep(0.5)
    found = []
    for role, asks in waiting.items():
        for target in asks:
            logs = podman("logs", "--tail", "5", f"{role}-pod-0-{role}", check_status=False)
            found.append(f"{role}: {target} does not answer; its log ends:\n{logs.stdout}{logs.stderr}")
    problems(found, "probes that do not answer")
    print("        " + "; ".join(f"{role}: {', '.join(asks)}" for role, asks in state["targets"].items()))


@check("the gateway serves the home page through the services")
def home_page():
    assert "ports" in state, "nothing was played"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{state['ports']['gateway']}/", timeout=10) as answer:
            assert b"<html" in answer.read().lower(), "no HTML page"
    except urllib.error.HTTPError as error:
        logs = podman("logs", "--tail", "5", "gateway-pod-0-gateway", check_status=False)
        raise AssertionError(f"GET / answered {error.code}; the gateway's log ends:\n{logs.stdout}{logs.stderr}") from None


def clean_up() -> None:
    """Every pod, secret and image of this run; its databases, stream and keys."""
    for manifest in ("shop.yaml", "migrate.yaml"):
        if (WORK / manifest).exists():
            podman("kube", "down", str(WORK / manifest), check_status=False, timeout=120)
    # Only what this run made, by name: never `podman system reset`, which
    # would also remove the machine's networks, another run's among them.
    podman("pod", "rm", "--force", *(f"{role}-pod-0" for role in ROLES), "shop-migrate", check_status=False)
    podman("secret", "rm", "shop-internal", "shop-postgres", "shop-redis", "shop-nats", check_status=False)
    podman("rmi", "--all", "--force", check_status=False)  # this run's storage only: the image, Podman's pause
    if state.get("kube_network_was_there") is False:
        podman("network", "rm", KUBE_NETWORK, check_status=False)
    for database in ("users", "inventory", "orders", "notifications"):
        subprocess.run(["psql", f"{PG}/postgres", "-qXc", f"DROP DATABASE IF EXISTS shop_test_{TAG}_{database} WITH (FORCE)"],
                       capture_output=True)
    subprocess.run(["sh", "-c", f"redis-cli -u '{REDIS}' --scan --pattern 'shop_test:{TAG}:*' | "
                    f"xargs -r redis-cli -u '{REDIS}' del"], capture_output=True)
    try:
        import asyncio

        import nats

        async def delete_stream() -> None:
            client = await nats.connect(NATS, connect_timeout=5, max_reconnect_attempts=0)
            try:
                await client.jetstream().delete_stream(f"SHOP_TEST_{TAG}")
            finally:
                await client.close()

        asyncio.run(delete_stream())
    except Exception as error:  # noqa: BLE001 - a stream that was never made, or no nats-py
        print(f"    (NATS stream SHOP_TEST_{TAG} not deleted: {error})")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "ops" / "containers" / "containers.conf"))
    if not shutil.which("podman"):
        print("kubernetes-play: no podman here (ops/containers/test.sh installs it)")
        sys.exit(1)
    try:
        status = check.run()
    finally:
        clean_up()
    sys.exit(status)
