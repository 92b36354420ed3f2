"""What the stand-in receivers share: a threaded HTTP server answering GET
routes with JSON (or text), and reading the real program's YAML config."""

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml


def config_from_args(args, default=None):
    """The file named by -config.file=PATH, as the real Tempo and Loki take
    it; a missing or broken file stops the stand-in as it would stop them."""
    for arg in args:
        if arg.startswith("-config.file=") or arg.startswith("--config.file="):
            with open(arg.split("=", 1)[1], encoding="utf-8") as file:
                return yaml.safe_load(file) or {}
    return default if default is not None else {}


def serve_http(port, get=None, post=None, name="stand-in"):
    """Serves GET and POST by the given functions, each called as
    f(path, query, body, headers) -> (status, content_type, bytes)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, route, body=b""):
            url = urlparse(self.path)
            if route is None:
                status, kind, data = 405, "text/plain", b"method not allowed\n"
            else:
                try:
                    status, kind, data = route(url.path, parse_qs(url.query), body, self.headers)
                except Exception as error:  # a stand-in must keep answering
                    status, kind, data = 500, "text/plain", f"{type(error).__name__}: {error}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._answer(get)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(post, self.rfile.read(length))

        def log_message(self, *_):
            pass  # probes every few seconds would drown the container's log

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"{name}: HTTP on :{port}", file=sys.stderr)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def as_json(value, status=200):
    return status, "application/json", json.dumps(value).encode()


def text(value, status=200):
    return status, "text/plain; charset=utf-8", value.encode()


def probe(url):
    """Exit status for a health command: 0 when URL answers 2xx."""
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=3) as response:
            return 0 if 200 <= response.status < 300 else 1
    except OSError as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1


def run_until_stopped():
    """Blocks until SIGTERM or SIGINT. As PID 1 in a container a process gets
    no default action for them, so without this `podman stop` would wait its
    whole grace period and then kill."""
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
