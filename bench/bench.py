"""Helpers of ops/bench.sh (Python 3 standard library only).

  bench.py setup BASE WORKDIR PRODUCTS        the catalogue, the customers, their cookies
  bench.py wrk NAME KIND FILE [EXTRA]         a wrk --latency output to one JSON line (EXTRA: JSON fields to add)
  bench.py oversell BASE COOKIE_FILE STOCKS   orders confirmed x quantity == stock taken
  bench.py pgbench NAME LOGPREFIX OUT [EXTRA] pgbench's output and per-transaction logs to one JSON line
  bench.py report RESULTS.jsonl META.json OUT.json   the table (stdout) and the JSON file
  bench.py ping REDIS_URL NATS_URL            exit 0 when Redis answers and NATS has JetStream
  bench.py forget REDIS_URL PREFIX NATS_URL STREAM   removes the keys under PREFIX and the stream
"""
import glob
import http.client
import json
import re
import socket
import sys
import urllib.parse


class Client:
    """One keep-alive connection with a cookie jar, as a JSON client."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.base = base
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.cookies = {}

    def request(self, method, path, body=None, headers=None, expect=(200, 201, 204)):
        hdrs = {"Accept": "application/json", "Origin": self.base}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        hdrs.update(headers or {})
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=hdrs)
        response = self.conn.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        if response.status not in expect:
            raise SystemExit(f"{method} {path}: HTTP {response.status} {data[:300]!r}")
        return json.loads(data) if data and data[:1] in (b"{", b"[") else None

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


PASSWORD = "correct horse battery"


def customer(base, email):
    client = Client(base)
    client.request("POST", "/users/register", {"name": "Bench Customer", "email": email, "password": PASSWORD})
    client.cookies.clear()
    client.request("POST", "/users/login", {"email": email, "password": PASSWORD})
    return client


def setup(base, work, count):
    """The admin (already registered and made admin by the script) makes
    COUNT products with ample stock plus one hot product; customers for the
    cart page, sign-in and each checkout scenario. Writes WORK/setup.json."""
    count = int(count)
    admin = Client(base)
    admin.request("POST", "/users/login", {"email": "bench@example.com", "password": PASSWORD})
    stocks = {}
    catalogue = []
    for i in range(count):
        made = admin.request("POST", "/products", {"name": f"Bench product {i + 1}", "price_minor": 100 + i, "stock": 1_000_000})
        catalogue.append(made["id"])
        stocks[made["id"]] = 1_000_000
    hot = admin.request("POST", "/products", {"name": "The hot product", "price_minor": 999, "stock": 100_000_000})["id"]
    stocks[hot] = 100_000_000
    cart = customer(base, "cart@example.com")
    for product in catalogue[:3]:
        cart.request("POST", "/cart/items", {"product_id": product, "quantity": 2})
    lines = cart.request("GET", "/cart")["lines"]
    if len(lines) != 3:
        raise SystemExit(f"the cart customer's cart has {len(lines)} lines, not 3")
    signin = Client(base)
    signin.request("POST", "/users/register", {"name": "Bench Sign-in", "email": "signin@example.com", "password": PASSWORD})
    hot_buyer = customer(base, "hot@example.com")
    random_buyer = customer(base, "random@example.com")
    setup = {
        "catalogue": catalogue,
        "hot": hot,
        "product": catalogue[0],
        # Each checkout scenario's products and their stock at the start.
        "stocks": {"hot": {hot: stocks[hot]}, "random": {p: stocks[p] for p in catalogue}},
        "cookies": {"cart": cart.cookie_header(), "hot": hot_buyer.cookie_header(), "random": random_buyer.cookie_header()},
    }
    with open(f"{work}/setup.json", "w") as out:
        json.dump(setup, out)


def to_ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(name, kind, path, extra="{}"):
    text = open(path).read()

    def find(pattern):
        match = re.search(pattern, text, re.M)
        return match.group(1) if match else None

    requests = find(r"^\s*(\d+) requests in")
    errors = find(r"^\s*Socket errors: (.*)$")
    result = {
        "name": name,
        "kind": kind,
        "requests": int(requests) if requests else 0,
        "rate": float(find(r"^Requests/sec:\s*([\d.]+)") or 0),
        "p50_ms": to_ms(find(r"^\s*50%\s+(\S+)") or ""),
        "p99_ms": to_ms(find(r"^\s*99%\s+(\S+)") or ""),
        "non_2xx": int(find(r"^\s*Non-2xx or 3xx responses: (\d+)") or 0),
        "socket_errors": errors,
    }
    result.update(json.loads(extra))
    print(json.dumps(result))


def oversell(base, cookie_file, stocks_file):
    """Every order of the customer (read through GET /orders) against the
    stock now of every product of the run (GET /products/{id}): for each
    product, the units of confirmed orders must be exactly the stock taken.

    One allowance: wrk stops with requests in flight and closes their
    connections, which cancels those checkouts half way; such an order stays
    pending (its stock reserved or not yet) until the recovery pass settles
    it, 30 s later. So stock taken may exceed the confirmed units by at most
    the pending orders' units; never the other way (that is overselling:
    units sold that no stock backs)."""
    client = Client(base)
    for part in open(cookie_file).read().strip().split("; "):
        name, _, value = part.partition("=")
        client.cookies[name] = value
    stocks = {int(k): v for k, v in json.load(open(stocks_file)).items()}
    confirmed, pending, statuses = {}, {}, {}
    path = "/orders?page_size=100"
    while path:
        listing = client.request("GET", path)
        for order in listing["orders"]:
            statuses[order["status"]] = statuses.get(order["status"], 0) + 1
            into = {"confirmed": confirmed, "pending": pending}.get(order["status"])
            for item in order["items"] if into is not None else []:
                into[item["product_id"]] = into.get(item["product_id"], 0) + item["quantity"]
        path = next_page(listing)
    oversold = unexplained = taken_total = 0
    wrong = []
    for product, before in stocks.items():
        taken = before - client.request("GET", f"/products/{product}")["stock"]
        taken_total += taken
        sold, held = confirmed.get(product, 0), pending.get(product, 0)
        if not sold <= taken <= sold + held:
            oversold += max(0, sold - taken)
            unexplained += max(0, taken - sold - held)
            wrong.append({"product": product, "stock_taken": taken, "confirmed_units": sold, "pending_units": held})
    others = {k: v for k, v in statuses.items() if k not in ("confirmed", "pending")}
    result = {
        "orders": sum(statuses.values()),
        "statuses": statuses,
        "confirmed_units": sum(confirmed.values()),
        "pending_units": sum(pending.values()),
        "stock_taken": taken_total,
        "oversold": oversold,
        "taken_without_order": unexplained,
        "mismatches": wrong[:10],
        "ok": not wrong and not others and statuses.get("confirmed", 0) > 0,
    }
    print(json.dumps(result))


def next_page(listing):
    """The path of the orders page after LISTING: by its cursor (keyset
    paging), or by page number from a shop that pages by number."""
    if "next_cursor" in listing:
        cursor = listing["next_cursor"]
        return f"/orders?page_size=100&after={urllib.parse.quote(cursor)}" if cursor else None
    if listing.get("has_next"):
        return f"/orders?page_size=100&page={listing['page'] + 1}"
    return None


def pgbench(name, log_prefix, out_file, extra="{}"):
    text = open(out_file).read()
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", text, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    latencies = []
    for path in glob.glob(log_prefix + "*"):
        for line in open(path):
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000.0)  # microseconds
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else None

    result = {
        "name": name, "kind": "pgbench", "requests": len(latencies), "rate": float(tps.group(1)) if tps else 0.0,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "non_2xx": int(failed.group(1)) if failed else 0, "socket_errors": None,
    }
    result.update(json.loads(extra))
    print(json.dumps(result))


def fmt_rate(rate):
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}"


def fmt_ms(ms):
    if ms is None:
        return "–"
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


MODES = {"embedded": "embedded (SQLite, memory sessions and cache)", "postgres": "PostgreSQL + Redis + NATS JetStream"}


def report(results_file, meta_file, out_file):
    """One table (Markdown) per shop mode, the targets of issue 14 read
    against them, and the JSON file. Each shop row may name a reference row
    measured in the same run; the ratio is shop / reference."""
    meta = json.load(open(meta_file))
    rows = [json.loads(line) for line in open(results_file) if line.strip()]
    by_name = {row["name"]: row for row in rows if row["kind"] in ("reference", "argon2", "pgbench")}
    shop_rows = [row for row in rows if row["kind"] not in ("reference", "argon2", "pgbench")]
    print(f"shop all ({meta['build']}), wrk -t{meta['wrk_threads']}, {meta['seconds']} s per scenario, "
          f"{meta['nproc']} cores ({meta['cpu']}), {meta['date']}, commit {meta['commit']}")
    modes = {m["mode"]: m for m in meta.get("modes", [])}
    for mode, title in MODES.items():
        mode_rows = [row for row in shop_rows if row.get("mode") == mode]
        if not mode_rows:
            print(f"\n{title}: {meta.get('postgres_note') or 'not run'}")
            continue
        print(f"\n{title}\n")
        print("| scenario | shop | p50 | p99 | reference in the same run | reference p99 | ratio |")
        print("|---|---|---|---|---|---|---|")
        for row in mode_rows:
            print(table_row(row, by_name.get(row.get("reference") or "")))
        if mode == "postgres" and "pgbench" in by_name:
            ref = by_name["pgbench"]
            print(f"| {ref['label']} | – | – | – | {fmt_rate(ref['rate'])} TPS, p50 {fmt_ms(ref['p50_ms'])} "
                  f"| {fmt_ms(ref['p99_ms'])} | – |")
        if mode in modes:
            m = modes[mode]
            print(f"| memory / start | RSS {mib(m['rss_idle_kib'])} idle, {mib(m['rss_after_kib'])} after load "
                  f"(peak {mib(m['rss_peak_kib'])}); ready in {m['ready_ms']:.0f} ms | – | – | – | – | – |")
        growth = ", ".join(f"{row['name']} {row['rss_after_kib'] / 1024:.0f}" for row in mode_rows if row.get("rss_after_kib"))
        print(f"\nRSS (MiB) after each scenario: {growth}")
    targets = read_targets({row["name"]: row for row in shop_rows}, modes)
    print("\nIssue 14's targets in this run (never a failure: speed is read, not judged)\n")
    print("| target | this run | holds |")
    print("|---|---|---|")
    for target in targets:
        holds = {True: "yes", False: "no", None: "not measured"}[target["holds"]]
        print(f"| {target['target']} | {target['measured']} | {holds} |")
    with open(out_file, "w") as out:
        json.dump({"meta": meta, "scenarios": shop_rows, "references": list(by_name.values()), "targets": targets},
                  out, indent=2)
        out.write("\n")


def mib(kib):
    return f"{kib / 1024:.1f} MiB" if kib else "–"


def table_row(row, ref):
    unit = row.get("unit", "req/s")
    shop = f"{fmt_rate(row['rate'])} {unit}"
    if row.get("asked_rate"):
        shop += f" (asked {fmt_rate(row['asked_rate'])})"
    if row.get("check"):
        check = row["check"]
        shop += f" ({check['statuses'].get('confirmed', 0)} confirmed, {check['oversold']} oversold)"
    if ref:
        row["reference_rate"] = ref["rate"]
        row["ratio"] = round(row["rate"] / ref["rate"], 3) if ref["rate"] else None
        ref_text = f"{ref['label']}: {fmt_rate(ref['rate'])} {ref.get('unit', 'req/s')}"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "–"
        ref_p99 = fmt_ms(ref.get("p99_ms"))
    else:
        ref_text, ratio, ref_p99 = "–", "–", "–"
    return f"| {row['label']} | {shop} | {fmt_ms(row['p50_ms'])} | {fmt_ms(row['p99_ms'])} | {ref_text} | {ref_p99} | {ratio} |"


def read_targets(rows, modes):
    """Issue 14's targets, each with what this run measured and whether it holds."""

    def ratio(name):
        row = rows.get(name)
        return row.get("ratio") if row else None

    def at_least(target, name, bound):
        value = ratio(name)
        return {"target": target, "measured": "–" if value is None else f"{value:.2f}",
                "holds": None if value is None else value >= bound}

    targets = [
        at_least("cached product JSON ≥ 0.5 of bare axum (embedded)", "product-json", 0.5),
        at_least("cached product JSON ≥ 0.5 of bare axum (PostgreSQL + Redis)", "pg-product-json", 0.5),
    ]
    half = rows.get("paced-half")
    targets.append({"target": "… p99 ≤ 5 ms at half that rate (embedded)",
                    "measured": "–" if not half else f"{fmt_ms(half['p99_ms'])} at {fmt_rate(half['rate'])} req/s",
                    "holds": None if not half or half["p99_ms"] is None else half["p99_ms"] <= 5.0})
    targets.append(at_least("product list HTML (20 items) ≥ 0.3 of bare axum (embedded)", "list-html", 0.3))
    targets.append(at_least("checkout on PostgreSQL, random products ≥ 0.3 of pgbench TPC-B", "pg-checkout-random", 0.3))
    targets.append(at_least("checkout on PostgreSQL, one hot product ≥ 0.15 of pgbench TPC-B", "pg-checkout-hot", 0.15))
    checks = [row["check"] for row in rows.values() if row.get("check")]
    targets.append({"target": "0 oversold in every checkout run",
                    "measured": ", ".join(f"{c['oversold']} of {c['statuses'].get('confirmed', 0)}" for c in checks) or "–",
                    "holds": None if not checks else all(c["oversold"] == 0 for c in checks)})
    for prefix, where in (("", "embedded"), ("pg-", "PostgreSQL")):
        targets.append(at_least(f"sign-in ≥ 0.9 of raw argon2id ({where})", f"{prefix}signin", 0.9))
        alone, during = rows.get(f"{prefix}paced-1000"), rows.get(f"{prefix}paced-1000-signin")
        measured, holds = "–", None
        if alone and during and alone["p99_ms"] and during["p99_ms"] is not None:
            measured = f"{fmt_ms(during['p99_ms'])} during sign-in, {fmt_ms(alone['p99_ms'])} alone"
            holds = during["p99_ms"] <= 2 * alone["p99_ms"]
        targets.append({"target": f"… while cached reads' p99 stays ≤ 2× unloaded ({where})", "measured": measured,
                        "holds": holds})
    for mode, m in modes.items():
        targets.append({"target": f"RSS ≤ 25 MiB idle ({mode})", "measured": mib(m["rss_idle_kib"]),
                        "holds": m["rss_idle_kib"] <= 25 * 1024})
        targets.append({"target": f"RSS ≤ 100 MiB under load ({mode}, the peak)", "measured": mib(m["rss_peak_kib"]),
                        "holds": m["rss_peak_kib"] <= 100 * 1024})
    if "embedded" in modes:
        ready = modes["embedded"]["ready_ms"]
        targets.append({"target": "ready ≤ 100 ms embedded", "measured": f"{ready} ms", "holds": ready <= 100})
    return targets


def host_port(url, default_port):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def redis_command(sock, reader, *args):
    """One command in RESP, its reply parsed (strings, integers, arrays)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(payload.encode())
    return redis_reply(reader)


def redis_reply(reader):
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [redis_reply(reader) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


def redis_connect(url):
    sock = socket.create_connection(host_port(url, 6379), timeout=5)
    return sock, sock.makefile("rb")


def nats_request(url, subject, payload=b""):
    """Connects, checks JetStream is on, and (with a subject) sends one
    request and returns its reply's payload."""
    sock = socket.create_connection(host_port(url, 4222), timeout=5)
    reader = sock.makefile("rb")
    info = reader.readline()
    if not info.startswith(b"INFO ") or not json.loads(info[5:]).get("jetstream"):
        raise RuntimeError("NATS without JetStream")
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.bench 1\r\n')
    if subject:
        sock.sendall(f"PUB {subject} _INBOX.bench {len(payload)}\r\n".encode() + payload + b"\r\n")
    sock.sendall(b"PING\r\n")
    reply = None
    while True:
        line = reader.readline()
        if not line:
            raise RuntimeError("NATS closed the connection")
        if line.startswith(b"MSG "):
            size = int(line.split()[-1])
            reply = reader.read(size + 2)[:-2]
            break
        if line.startswith(b"PONG") and not subject:
            break
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
    sock.close()
    return reply


def ping(redis_url, nats_url):
    try:
        sock, reader = redis_connect(redis_url)
        ok = redis_command(sock, reader, "PING") == "PONG"
        sock.close()
        nats_request(nats_url, None)
    except (OSError, RuntimeError, ValueError):
        ok = False
    sys.exit(0 if ok else 1)


def forget(redis_url, prefix, nats_url, stream):
    """Deletes every Redis key under PREFIX and the JetStream stream."""
    sock, reader = redis_connect(redis_url)
    cursor = "0"
    while True:
        cursor, keys = redis_command(sock, reader, "SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
        if keys:
            redis_command(sock, reader, "DEL", *keys)
        if cursor == "0":
            break
    sock.close()
    reply = json.loads(nats_request(nats_url, f"$JS.API.STREAM.DELETE.{stream}") or b"{}")
    # 10059: no such stream (the shop never made it): nothing to remove.
    if not reply.get("success") and reply.get("error", {}).get("err_code") != 10059:
        raise SystemExit(f"could not delete the stream {stream}: {reply}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    commands = {"setup": setup, "wrk": parse_wrk, "oversell": oversell, "pgbench": pgbench, "report": report,
                "ping": ping, "forget": forget}
    commands[command](*args)
