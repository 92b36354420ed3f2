#!/usr/bin/env python3
"""The figures behind the manifests' resource requests and limits.

Starts the five shop roles, as the Deployments run them, from a built binary
on a local PostgreSQL, Redis and NATS JetStream (databases, stream and cache
keys of their own, removed at the end), checks each answers the target its
probes ask, reads every process's RSS at rest, then puts ops/load.sh's
shoppers on the gateway and samples each process's RSS and CPU every second.

    ops/kubernetes/measure-resources.py [SHOP_BIN] [SECONDS] [SHOPPERS]

    SHOP_BIN   default target/release/shop (the image's build)
    SECONDS    how long the load runs (default 60)
    SHOPPERS   ops/load.sh's shoppers at once (default 20)

Environment: SHOP_MEASURE_POSTGRES_URL (postgres://postgres@127.0.0.1:5432),
SHOP_MEASURE_REDIS_URL (redis://127.0.0.1:6379), SHOP_MEASURE_NATS_URL
(nats://127.0.0.1:4222), SHOP_LOAD_VENV (target/test-venv: Locust and
nats-py) and SHOP_LOAD_WAIT (a shopper's thinking time, "0.1-0.5").
docs/kubernetes.md, "Resources", holds the figures it printed.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "release" / "shop")
SECONDS = sys.argv[2] if len(sys.argv) > 2 else "60"
SHOPPERS = sys.argv[3] if len(sys.argv) > 3 else "20"
PG = os.environ.get("SHOP_MEASURE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("SHOP_MEASURE_REDIS_URL", "redis://127.0.0.1:6379")
NATS = os.environ.get("SHOP_MEASURE_NATS_URL", "nats://127.0.0.1:4222")
VENV = Path(os.environ.get("SHOP_LOAD_VENV", ROOT / "target" / "test-venv"))
TAG = f"measure_{secrets.token_hex(4)}"
TICK = os.sysconf("SC_CLK_TCK")
ROLES = ("users", "inventory", "orders", "gateway", "notifications")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid: int, key: str = "VmRSS:") -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(key))
    return int(line.split()[1]) / 1024


def healthy(target: str) -> bool:
    return subprocess.run([BIN, "healthcheck", target], capture_output=True).returncode == 0


def main(run: Path) -> None:
    grpc = {role: free_port() for role in ("users", "inventory", "orders")}
    http, metrics = free_port(), {role: free_port() for role in ROLES}
    common = dict(
        os.environ,
        SHOP_INTERNAL_SECRET=secrets.token_hex(24),
        SHOP_NATS_URL=NATS, SHOP_NATS_STREAM=f"SHOP_TEST_{TAG}", SHOP_NATS_SUBJECT_PREFIX=TAG,
        SHOP_USERS_URL=f"http://127.0.0.1:{grpc['users']}", SHOP_INVENTORY_URL=f"http://127.0.0.1:{grpc['inventory']}",
        SHOP_ORDERS_URL=f"http://127.0.0.1:{grpc['orders']}", SHOP_LOG_FORMAT="json",
        SHOP_POSTGRES_URL=PG, POSTGRES_DB_USERS=f"shop_test_{TAG}_users",
        POSTGRES_DB_INVENTORY=f"shop_test_{TAG}_inventory", POSTGRES_DB_ORDERS=f"shop_test_{TAG}_orders",
        SHOP_NOTIFICATIONS_DATABASE_URL=f"{PG}/shop_test_{TAG}_notifications",
        SHOP_DATA_DIR=str(run / "data"), SHOP_REDIS_URL=REDIS, SHOP_CACHE_PREFIX=f"shop_test:{TAG}:",
    )
    own = {
        "users": {"SHOP_USERS_ADDR": f"127.0.0.1:{grpc['users']}"},
        "inventory": {"SHOP_INVENTORY_ADDR": f"127.0.0.1:{grpc['inventory']}"},
        "orders": {"SHOP_ORDERS_ADDR": f"127.0.0.1:{grpc['orders']}"},
        "gateway": {"SHOP_HTTP_ADDR": f"127.0.0.1:{http}"},
        "notifications": {},
    }
    # What the Deployments' probes ask.
    probes = {
        "users": [f"grpc://127.0.0.1:{grpc['users']}", f"http://127.0.0.1:{metrics['users']}/metrics"],
        "inventory": [f"grpc://127.0.0.1:{grpc['inventory']}", f"http://127.0.0.1:{metrics['inventory']}/metrics"],
        "orders": [f"grpc://127.0.0.1:{grpc['orders']}", f"http://127.0.0.1:{metrics['orders']}/metrics"],
        "gateway": [f"http://127.0.0.1:{http}/healthz", f"http://127.0.0.1:{http}/readyz"],
        "notifications": [f"http://127.0.0.1:{metrics['notifications']}/metrics"],
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        migrate = subprocess.run([BIN, "migrate"], env=common, capture_output=True, text=True)
        assert migrate.returncode == 0, migrate.stderr[-2000:]
        print("shop migrate:", "; ".join(migrate.stdout.split("\n")).strip("; "))
        for role in ROLES:
            env = dict(common, **own[role], SHOP_METRICS_ADDR=f"127.0.0.1:{metrics[role]}", OTEL_SERVICE_NAME=f"shop-{role}")
            log = open(run / f"{role}.log", "w")
            processes[role] = subprocess.Popen([BIN, role], env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.time() + 60
            while not healthy(probes[role][0]):
                assert time.time() < deadline, f"{role} did not answer: {(run / f'{role}.log').read_text()[-2000:]}"
                time.sleep(0.3)
        for role in ROLES:
            print(f"{role}: " + ", ".join(f"{t} {'answers' if healthy(t) else 'DOES NOT ANSWER'}" for t in probes[role]))
        time.sleep(5)
        at_rest = {role: rss_mib(p.pid) for role, p in processes.items()}

        email, password = f"load-{TAG}@example.com", "correct horse battery staple"
        body = json.dumps({"name": "Load Admin", "email": email, "password": password})
        subprocess.run(["curl", "-fsS", "-o", os.devnull, "-H", "Accept: application/json", "-H",
                        "Content-Type: application/json", "--data", body, f"http://127.0.0.1:{http}/users/register"],
                       check=True)
        subprocess.run([BIN, "make-admin", email], env=common, check=True, capture_output=True)

        samples: dict[str, list[tuple[float, float]]] = {role: [] for role in ROLES}
        stop = threading.Event()

        def sample() -> None:
            last, then = {r: cpu_seconds(p.pid) for r, p in processes.items()}, time.time()
            while not stop.wait(1.0):
                now = time.time()
                for role, process in processes.items():
                    used = cpu_seconds(process.pid)
                    samples[role].append(((used - last[role]) / (now - then), rss_mib(process.pid)))
                    last[role] = used
                then = now

        sampler = threading.Thread(target=sample)
        sampler.start()
        began, cpu_before = time.time(), {r: cpu_seconds(p.pid) for r, p in processes.items()}
        load_env = dict(os.environ, SHOP_LOAD_VENV=str(VENV), SHOP_LOAD_ADMIN_EMAIL=email,
                        SHOP_LOAD_ADMIN_PASSWORD=password, SHOP_LOAD_WAIT=os.environ.get("SHOP_LOAD_WAIT", "0.1-0.5"))
        load = subprocess.run([str(ROOT / "ops" / "load.sh"), f"http://127.0.0.1:{http}", SECONDS, SHOPPERS],
                              env=load_env, capture_output=True, text=True)
        elapsed = time.time() - began
        stop.set()
        sampler.join()
        print("\n".join(line for line in load.stdout.splitlines() if line.startswith(("load:", "all requests", "orders"))))
        assert load.returncode == 0, load.stdout[-3000:] + load.stderr[-2000:]
        print(f"\n{'role':14} {'RSS at rest':>11} {'RSS max':>8} {'CPU mean':>9} {'CPU max (1 s)':>14}")
        for role, process in processes.items():
            mean = (cpu_seconds(process.pid) - cpu_before[role]) / elapsed
            peak_cpu = max(c for c, _ in samples[role])
            print(f"{role:14} {at_rest[role]:9.1f}Mi {rss_mib(process.pid, 'VmHWM:'):6.1f}Mi "
                  f"{mean * 1000:8.0f}m {peak_cpu * 1000:13.0f}m")
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for database in ("users", "inventory", "orders", "notifications"):
            subprocess.run(["psql", f"{PG}/postgres", "-qXc", f"DROP DATABASE IF EXISTS shop_test_{TAG}_{database} WITH (FORCE)"])
        subprocess.run(["sh", "-c", f"redis-cli -u '{REDIS}' --scan --pattern 'shop_test:{TAG}:*' | "
                        f"xargs -r redis-cli -u '{REDIS}' del >/dev/null"])
        subprocess.run([str(VENV / "bin" / "python"), "-c", (
            "import asyncio, sys, nats\n"
            "async def main():\n"
            "    client = await nats.connect(sys.argv[1])\n"
            "    try:\n        await client.jetstream().delete_stream(sys.argv[2])\n"
            "    finally:\n        await client.close()\n"
            "asyncio.run(main())"), NATS, f"SHOP_TEST_{TAG}"])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="shop-measure-") as directory:
        main(Path(directory))
