#!/usr/bin/python3
"""A stand-in for Grafana: reads what compose.yaml provisions (every
provisioning YAML and every dashboard JSON must parse, the admin password must
be set) and stops if any is wrong; then answers /api/health on :3000. It
draws nothing: the dashboards' queries are checked elsewhere
(tests/ops/check_dashboards.py)."""

import json
import os
import pathlib
import sys

sys.path.insert(0, "/opt/standin")
from receiver import as_json, run_until_stopped, serve_http, text  # noqa: E402

import yaml  # noqa: E402


def main():
    if not os.environ.get("GF_SECURITY_ADMIN_PASSWORD"):
        sys.exit("grafana stand-in: GF_SECURITY_ADMIN_PASSWORD is not set")
    provisioning = list(pathlib.Path("/etc/grafana/provisioning").rglob("*.y*ml"))
    dashboards = list(pathlib.Path("/etc/grafana/dashboards").rglob("*.json"))
    if not provisioning or not dashboards:
        sys.exit("grafana stand-in: no provisioning or no dashboards mounted")
    for path in provisioning:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    for path in dashboards:
        json.loads(path.read_text(encoding="utf-8"))
    home = os.environ.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home and not os.path.isfile(home):
        sys.exit(f"grafana stand-in: the home dashboard {home} is not there")
    print(f"grafana stand-in: {len(provisioning)} provisioning files, {len(dashboards)} dashboards", file=sys.stderr)

    def get(path, _query, _body, _headers):
        if path == "/api/health":
            return as_json({"database": "ok", "version": "stand-in"})
        return text("not found\n", 404)

    serve_http(3000, get=get, name="grafana stand-in")
    run_until_stopped()


if __name__ == "__main__":
    main()
