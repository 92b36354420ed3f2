#!/usr/bin/python3
"""A stand-in for Loki: a push receiver that keeps every line it is sent.

  /usr/bin/loki -config.file=/etc/loki/loki.yaml   (compose.yaml's command)
  /usr/bin/loki -health                            (its health check)

POST /loki/api/v1/push takes Loki's JSON push body (what the shop sends,
gzip or not); the protobuf+snappy form is refused with 415, as a reminder that
only JSON is understood here. GET /ready, /metrics, and /standin/lines
(?contains=TEXT&service=NAME: the lines with their labels, as JSON).
"""

import gzip
import json
import sys
import threading

sys.path.insert(0, "/opt/standin")
from receiver import as_json, config_from_args, probe, run_until_stopped, serve_http, text  # noqa: E402

LOCK = threading.Lock()
LINES = []  # dicts: labels, ts, line
PUSHES = {"accepted": 0, "refused": 0}


def post(path, _query, body, headers):
    if path != "/loki/api/v1/push":
        return text("not found\n", 404)
    kind = headers.get("Content-Type", "")
    if not kind.startswith("application/json"):
        with LOCK:
            PUSHES["refused"] += 1
        return text(f"the stand-in reads JSON pushes only, not {kind}\n", 415)
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    try:
        streams = json.loads(body)["streams"]
        lines = [
            {"labels": s["stream"], "ts": ts, "line": line} for s in streams for ts, line in s["values"]
        ]
    except (ValueError, KeyError, TypeError) as error:
        with LOCK:
            PUSHES["refused"] += 1
        return text(f"bad push: {error}\n", 400)
    with LOCK:
        PUSHES["accepted"] += 1
        LINES.extend(lines)
    return 204, "text/plain", b""


def get(path, query, _body, _headers):
    if path == "/ready":
        return text("ready\n")
    if path == "/metrics":
        with LOCK:
            body = f"standin_loki_lines_received {len(LINES)}\nstandin_loki_pushes_refused {PUSHES['refused']}\n"
        return 200, "text/plain; version=0.0.4", body.encode()
    if path == "/standin/lines":
        contains = query.get("contains", [""])[0]
        service = query.get("service", [None])[0]
        with LOCK:
            found = [
                entry
                for entry in LINES
                if contains in entry["line"] and (service is None or entry["labels"].get("service_name") == service)
            ]
        return as_json({"lines": found, "pushes": PUSHES})
    return text("not found\n", 404)


def main():
    if "-health" in sys.argv[1:]:
        sys.exit(probe("http://127.0.0.1:3100/ready"))
    config = config_from_args(sys.argv[1:])
    port = int(config.get("server", {}).get("http_listen_port", 3100))
    serve_http(port, get=get, post=post, name="loki stand-in")
    run_until_stopped()


if __name__ == "__main__":
    main()
