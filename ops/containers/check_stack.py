#!/usr/bin/env python3
"""What the compose stack in Podman must show once ops/smoke.sh has run
against it (run by ops/containers/test.sh):

- Prometheus scrapes every replica of every shop process (--replicas) and
  each is up;
- the Tempo stand-in holds a checkout (the gateway's `POST /orders`) whose
  trace has spans from gateway, users, inventory and orders;
- the Loki stand-in holds JSON log lines carrying that trace id;
- the Mailpit stand-in received the emails the smoke run's orders caused;
- with replicas (--gateways URL,URL,...): a session made through one gateway
  replica is the same session on every other, and a product changed through
  one is seen changed through every other within seconds (the cache
  invalidated by events, not left to expire).

Standard library only. Tempo, Loki and Mailpit are asked from inside their
containers (`podman exec ... wget`): the stack publishes only the gateway and
Prometheus.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

PROCESSES = ["gateway", "users", "inventory", "orders", "notifications"]
TRACED = {"shop-gateway", "shop-users", "shop-inventory", "shop-orders"}


class CheckFailed(Exception):
    pass


def podman():
    return ["podman"] if os.geteuid() == 0 else ["sudo", "-n", "podman"]


def inside(container, url):
    """GET url from inside container, as JSON."""
    result = subprocess.run(
        podman() + ["exec", container, "wget", "-q", "-O", "-", url],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if result.returncode != 0:
        raise CheckFailed(f"{container}: GET {url} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def eventually(what, check, seconds):
    """check() until it returns a value, for at most `seconds`; its last
    CheckFailed is the failure."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except CheckFailed as error:
            if time.monotonic() > deadline:
                raise CheckFailed(f"{what}, after {seconds} s: {error}") from None
        time.sleep(2)


def prometheus_targets_up(prometheus, replicas):
    """Every replica of every shop process is a target of its own (found by
    DNS, ops/prometheus/prometheus.yml), and each is up."""

    def check():
        targets = get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
        shop = [t for t in targets if t["labels"].get("job") == "shop"]
        counts = {name: sum(t["labels"].get("process") == name for t in shop) for name in PROCESSES}
        if any(count != replicas for count in counts.values()) or len(shop) != replicas * len(PROCESSES):
            raise CheckFailed(f"shop targets by process {counts}, not {replicas} of each of {PROCESSES}")
        down = [(t["labels"].get("process"), t["labels"].get("instance"), t["health"], t.get("lastError"))
                for t in shop if t["health"] != "up"]
        if down:
            raise CheckFailed(f"not up: {down}")
        return shop

    shop = eventually("Prometheus' shop targets", check, 60)
    print(f"       Prometheus: {len(shop)} shop targets up, {replicas} of each of {', '.join(PROCESSES)}"
          f" ({', '.join(sorted(t['labels']['instance'] for t in shop))})")


def checkout_trace(tempo):
    def check():
        traces = inside(tempo, "http://127.0.0.1:3200/api/search")["traces"]
        for trace in traces:
            if not TRACED <= set(trace["services"]):
                continue
            spans = inside(tempo, f"http://127.0.0.1:3200/api/traces/{trace['trace_id']}")["spans"]
            if any(s["service"] == "shop-gateway" and s["name"] == "POST /orders" for s in spans):
                return trace["trace_id"], spans
        raise CheckFailed(
            f"no trace with a gateway `POST /orders` and spans from all of {sorted(TRACED)} "
            f"among {len(traces)} traces"
        )

    trace_id, spans = eventually("a checkout's trace in the Tempo stand-in", check, 60)
    per_service = {}
    for span in spans:
        per_service[span["service"]] = per_service.get(span["service"], 0) + 1
    counts = ", ".join(f"{name} {count}" for name, count in sorted(per_service.items()))
    print(f"       Tempo: checkout trace {trace_id}: {len(spans)} spans ({counts})")
    return trace_id


def trace_in_loki(loki, trace_id):
    def check():
        found = inside(loki, f"http://127.0.0.1:3100/standin/lines?contains={trace_id}")
        lines = found["lines"]
        if not lines:
            raise CheckFailed(f"no line contains {trace_id} (pushes: {found['pushes']})")
        for entry in lines:
            try:
                record = json.loads(entry["line"])
            except ValueError:
                raise CheckFailed(f"a line is not JSON: {entry['line'][:200]}") from None
            if record.get("trace_id") != trace_id and trace_id not in json.dumps(record.get("span", {})):
                raise CheckFailed(f"a line names the trace only in passing: {entry['line'][:200]}")
        return lines

    lines = eventually("the checkout's log lines in the Loki stand-in", check, 30)
    services = sorted({entry["labels"].get("service_name", "?") for entry in lines})
    print(f"       Loki: {len(lines)} JSON lines with trace_id {trace_id} (from {', '.join(services)})")


def emails_sent(mailpit):
    def check():
        total = inside(mailpit, "http://127.0.0.1:8025/api/v1/messages")["total"]
        if total == 0:
            raise CheckFailed("no email arrived")
        return total

    total = eventually("emails in the Mailpit stand-in", check, 30)
    print(f"       Mailpit: {total} emails received over SMTP from the notifications process")


def call(base, method, path, body=None, cookie=None):
    """One JSON request; (status, parsed body or None, the session cookie
    the answer set, if any)."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, headers = error.code, error.read(), error.headers
    set_cookie = next(
        (c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or [] if c.startswith("shop_session=")), None
    )
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, set_cookie


def expect(what, got, wanted):
    if got != wanted:
        raise CheckFailed(f"{what}: {got}, not {wanted}")


def across_replicas(gateways, users_container):
    """Sessions and the product cache across gateway replicas."""
    first, others = gateways[0], gateways[1:]
    run = uuid.uuid4().hex[:10]
    email, password = f"replicas-{run}@example.com", "correct horse battery staple"
    status, user, cookie = call(first, "POST", "/users/register", {"name": "Replicas", "email": email, "password": password})
    expect("registering through the first gateway", status, 201)
    if cookie is None:
        raise CheckFailed("registering set no shop_session cookie")
    for other in others:
        status, seen, _ = call(other, "GET", f"/users/{user['id']}", cookie=cookie)
        expect(f"the session made through {first}, at {other}", (status, (seen or {}).get("email")), (200, email))
    status, _, _ = call(others[0], "GET", f"/users/{user['id']}")
    expect("the same account without the cookie", status, 401)

    # An admin (made by the CLI in the users container), signed in through
    # the second gateway, changes a product through the first.
    result = subprocess.run(
        podman() + ["exec", users_container, "shop", "make-admin", email], capture_output=True, text=True, timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise CheckFailed(f"make-admin: {result.stderr.strip()[-300:]}")
    status, _, admin = call(others[0], "POST", "/users/login", {"email": email, "password": password})
    expect("signing in through the second gateway", status, 200)
    status, product, _ = call(others[0], "POST", "/products", {"name": f"Replica kettle {run}", "description": "Steel.",
                                                                  "price_minor": 1000, "stock": 3}, cookie=admin)
    expect("making a product through the second gateway", status, 201)
    path = f"/products/{product['id']}"
    for base in gateways:  # every replica reads it once, so each may cache it
        status, seen, _ = call(base, "GET", path)
        expect(f"the new product at {base}", (status, (seen or {}).get("price_minor")), (200, 1000))
    status, _, _ = call(first, "PUT", path, {"price_minor": 2000}, cookie=admin)
    expect("changing its price through the first gateway, with the second's session", status, 200)

    def changed_everywhere():
        for base in gateways:
            status, seen, _ = call(base, "GET", path)
            if (status, (seen or {}).get("price_minor")) != (200, 2000):
                raise CheckFailed(f"{base} answers {status} with price {(seen or {}).get('price_minor')}")

    eventually("the changed price at every gateway", changed_everywhere, 10)
    print(f"       replicas: a session made through one of {len(gateways)} gateways is valid at every other; "
          "a price changed through one is seen at every other")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--gateways", default="", help="every gateway replica's URL, comma-separated")
    parser.add_argument("--replicas", type=int, default=1, help="containers of each shop process")
    args = parser.parse_args()
    container = lambda service: f"{args.project}_{service}_1"  # noqa: E731
    try:
        prometheus_targets_up(args.prometheus, args.replicas)
        trace_id = checkout_trace(container("tempo"))
        trace_in_loki(container("loki"), trace_id)
        emails_sent(container("mailpit"))
        gateways = [url for url in args.gateways.split(",") if url]
        if len(gateways) > 1:
            across_replicas(gateways, container("users"))
    except (CheckFailed, OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
        print(f"check_stack.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
