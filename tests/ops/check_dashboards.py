#!/usr/bin/env python3
"""The Grafana dashboards and data sources against what the shop exports.

    check_dashboards.py --metrics SMOKE/metrics.txt... [--logs SMOKE/shop.log...]

ops/test.sh runs it after the smoke runs, with each run's /metrics and log.
It checks that:
- the JSON in ops/grafana/dashboards is what ops/grafana/dashboards.py makes;
- every panel has a title and a description, queries Prometheus through the
  $datasource variable (or a provisioned uid) and, in time series, rates over
  $__rate_interval;
- every PromQL expression parses (promtool, through a throw-away rules file);
- every metric name in them is one a shop process exported in a smoke run
  (the union of the metrics.txt files), or Tempo's metrics-generator's or
  Prometheus's own (listed below), or one the smoke runs cannot provoke
  (listed below, and then it must at least be in the Rust sources);
- every label they select, group by or show in a legend exists on those
  metrics (or is one Prometheus adds: job, instance, process);
- the provisioned data sources link as documented: exemplars and log lines to
  Tempo, Tempo to Loki and Prometheus; Loki's trace_id pattern finds the trace
  id in the shop's JSON log lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks, problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "ops/grafana/dashboards"
DATASOURCES = ROOT / "ops/grafana/provisioning/datasources/datasources.yaml"

# Not exported by the shop, but in Prometheus all the same. Tempo's
# metrics-generator remote-writes span metrics and the service graph (with
# the exemplars the Overview shows); Prometheus makes `up` per scrape target.
EXTERNAL_METRICS = {
    "up",
    "traces_spanmetrics_calls_total",
    "traces_spanmetrics_latency_bucket",
    "traces_spanmetrics_latency_count",
    "traces_spanmetrics_latency_sum",
    "traces_spanmetrics_size_total",
    "traces_service_graph_request_total",
    "traces_service_graph_request_failed_total",
    "traces_service_graph_request_server_seconds_bucket",
    "traces_service_graph_request_server_seconds_count",
    "traces_service_graph_request_server_seconds_sum",
    "traces_service_graph_request_client_seconds_bucket",
    "traces_service_graph_request_client_seconds_count",
    "traces_service_graph_request_client_seconds_sum",
    "traces_service_graph_unpaired_spans_total",
    "traces_service_graph_dropped_spans_total",
}
# Exported only when something goes wrong, which a smoke run does not do. A
# name here must still appear in the Rust sources. Initialising such a
# counter at zero at start-up makes it exported always: then drop it here.
NOT_IN_SMOKE_RUNS = {
    "shop_cache_failures_total": "only when Redis fails under the gateway's cache",
    "shop_events_redelivered_total": "only when JetStream redelivers a message",
    "shop_db_query_errors_total": "only when an SQL statement fails",
}
# Labels Prometheus adds at scrape time (ops/prometheus/prometheus.yml).
TARGET_LABELS = {"job", "instance", "process"}
# Grafana's variables, as values promtool can parse.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "atan2", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}

check = Checks("grafana-dashboards")
ARGS = argparse.Namespace(metrics=[], logs=[])


# ------------------------------------------------------------------ exports


def parse_exposition(text: str) -> dict[str, set[str]]:
    """Metric name -> label names, from Prometheus's text format."""
    metrics: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
            for suffix in suffixes.get(kind.strip(), ("",)):
                metrics.setdefault(name + suffix, set())
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            if match:
                labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"', match.group(3) or ""))
                metrics.setdefault(match.group(1), set()).update(labels)
    return metrics


EXPORTED: dict[str, set[str]] = {}


def exported() -> dict[str, set[str]]:
    if not EXPORTED:
        assert ARGS.metrics, "no --metrics files: run after the smoke runs, with their metrics.txt"
        for path in ARGS.metrics:
            for name, labels in parse_exposition(Path(path).read_text()).items():
                EXPORTED.setdefault(name, set()).update(labels)
        assert EXPORTED, f"no metrics in {ARGS.metrics}"
    return EXPORTED


def rust_sources() -> str:
    return "\n".join(path.read_text(errors="replace") for top in ("backend", "web")
                     for path in sorted((ROOT / top).rglob("*.rs")) if "target" not in path.parts)


# -------------------------------------------------------------- dashboards


def load_generator():
    spec = importlib.util.spec_from_file_location("dashboards", ROOT / "ops/grafana/dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # inside a collapsed row


def prometheus_targets():
    """(dashboard, panel, target) for every PromQL query."""
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            if panel.get("type") == "row":
                continue
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid", "")
                if uid in ("${datasource}", "$datasource", "prometheus"):
                    yield name, panel, target


def provisioned_uids() -> set[str]:
    return {source["uid"] for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]}


@check("the dashboards' JSON is what ops/grafana/dashboards.py generates")
def generated():
    rendered = load_generator().render()
    found = [f"{name}: differs; run python3 ops/grafana/dashboards.py" for name, text in rendered.items()
             if not (DASHBOARDS / name).is_file() or (DASHBOARDS / name).read_text() != text]
    found += [f"{path.name} is not generated" for path in DASHBOARDS.glob("*.json") if path.name not in rendered]
    problems(found, "dashboards out of date")


@check("three dashboards with unique uids; every panel has a title, a description and a known datasource")
def structure():
    found, uids = [], set()
    known = provisioned_uids() | {"${datasource}", "$datasource", "-- Grafana --"}
    titles = {dashboard["title"] for dashboard in dashboards().values()}
    for expected in ("Shop / Overview", "Shop / Orders and business", "Shop / Infrastructure"):
        if expected not in titles:
            found.append(f"no dashboard titled {expected!r}")
    for name, dashboard in dashboards().items():
        if dashboard.get("uid") in uids:
            found.append(f"{name}: uid {dashboard.get('uid')} is used twice")
        uids.add(dashboard.get("uid"))
        variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
        if variables.get("datasource", {}).get("query") != "prometheus":
            found.append(f"{name}: no `datasource` variable of Prometheus data sources")
        for panel in panels(dashboard):
            if panel.get("type") == "row":
                continue
            where = f"{name}: panel {panel.get('title')!r}"
            if not panel.get("title"):
                found.append(f"{name}: a panel with no title")
            if not panel.get("description"):
                found.append(f"{where} has no description")
            for source in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                if source and source.get("uid") not in known:
                    found.append(f"{where} uses the unknown datasource uid {source.get('uid')!r}")
            if not panel.get("targets"):
                found.append(f"{where} has no query")
    problems(found, "structure problems")


@check("time series rate over $__rate_interval (so a window always spans several scrapes)")
def rate_interval():
    found = []
    for name, panel, target in prometheus_targets():
        if panel["type"] != "timeseries":
            continue
        for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
            if window != "$__rate_interval":
                found.append(f"{name}: {panel['title']!r} uses [{window}]")
    problems(found, "fixed windows in time series")


def substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@check("every PromQL expression parses (promtool check rules)")
def promql_parses():
    expressions = [(f"{name}: {panel['title']}", substitute(target["expr"]))
                   for name, panel, target in prometheus_targets()]
    assert expressions, "no PromQL in the dashboards"
    leftover = [f"{where}: {expr}" for where, expr in expressions if "$" in expr]
    problems(leftover, "expressions with Grafana variables promtool cannot read")
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard_expression_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as file:
        yaml.safe_dump(rules, file)
        file.flush()
        result = subprocess.run(["promtool", "check", "rules", file.name], capture_output=True, text=True)
    if result.returncode != 0:
        # promtool names the rule by index: say which panel it was.
        detail = result.stdout + result.stderr
        for i, (where, expr) in reversed(list(enumerate(expressions))):  # _17 before _1
            detail = detail.replace(f"dashboard_expression_{i}", f"{where} ({expr})")
        raise AssertionError(f"promtool refused an expression:\n{detail.strip()}")
    print(f"        {len(expressions)} expressions parse")


# --------------------------------------------------------- what PromQL uses


def tokens(expr: str):
    """PromQL's tokens, with strings, numbers and [ranges] folded into one each."""
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" else 1
            yield ("string", expr[i:j + 1])
            i = j + 1
        elif c == "[":
            j = expr.index("]", i)
            yield ("range", expr[i:j + 1])
            i = j + 1
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            j = i + 1
            while j < n and (expr[j].isalnum() or expr[j] == "." or (expr[j] in "+-" and expr[j - 1] in "eE")):
                j += 1
            yield ("number", expr[i:j])
            i = j
        elif c.isalpha() or c in "_:":
            j = i + 1
            while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                j += 1
            yield ("ident", expr[i:j])
            i = j
        elif expr.startswith(("=~", "!~", "!=", "==", ">=", "<="), i):
            yield ("op", expr[i:i + 2])
            i += 2
        else:
            yield ("op", c)
            i += 1


def analyse(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """(metric -> label names it is selected by, labels grouped on)."""
    toks = list(tokens(expr))
    metrics: dict[str, set[str]] = {}
    grouping: set[str] = set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in GROUPING:
            if nxt == "(":
                i += 2
                while i < len(toks) and toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        grouping.add(toks[i][1])
                    i += 1
            i += 1
        elif kind == "ident" and text.lower() in KEYWORDS:
            i += 1
        elif kind == "ident" and (nxt == "(" or nxt in ("by", "without")):
            i += 1  # a function, or an aggregation (`sum by (x) (...)`)
        elif (kind == "ident" and nxt == "{") or text == "{":
            name = text if kind == "ident" else None
            i += 2 if kind == "ident" else 1
            labels = set()
            while i < len(toks) and toks[i][1] != "}":
                if toks[i][0] == "ident" and i + 1 < len(toks) and toks[i + 1][1] in ("=", "!=", "=~", "!~"):
                    labels.add(toks[i][1])
                    if toks[i][1] == "__name__" and i + 2 < len(toks):
                        name = toks[i + 2][1].strip("\"'`")
                i += 1
            labels.discard("__name__")
            metrics.setdefault(name or "", set()).update(labels)
            i += 1
        elif kind == "ident":
            metrics.setdefault(text, set())
            i += 1
        else:
            i += 1
    return metrics, grouping


@check("every metric the dashboards query is one the shop exports (or Tempo's, or listed)")
def metric_names():
    available = exported()
    sources = rust_sources()
    used: dict[str, list[str]] = {}
    for name, panel, target in prometheus_targets():
        for metric in analyse(substitute(target["expr"]))[0]:
            used.setdefault(metric, []).append(f"{name}: {panel['title']!r}")
    found = []
    for metric, where in sorted(used.items()):
        if metric in available or metric in EXTERNAL_METRICS:
            continue
        panels_using = "; ".join(dict.fromkeys(where))
        in_sources = f'"{re.sub(r"_(bucket|sum|count)$", "", metric)}"' in sources
        if metric in NOT_IN_SMOKE_RUNS:
            if not in_sources:
                found.append(f"{metric}: listed as not provoked by the smoke runs, but no Rust source names it "
                             f"(in {panels_using})")
        elif in_sources:
            found.append(f"{metric}: in the sources, but no smoke run exported it: initialise it at start-up, "
                         f"or list it in NOT_IN_SMOKE_RUNS with the reason (in {panels_using})")
        else:
            found.append(f"{metric}: exported by no process; a typo, or renamed? (in {panels_using})")
    for metric, reason in sorted(NOT_IN_SMOKE_RUNS.items()):
        if metric in available:
            print(f"        note: {metric} was exported after all; it can leave NOT_IN_SMOKE_RUNS")
        elif metric in used:
            print(f"        not checked against a smoke run: {metric} ({reason})")
    shop_metrics = {m for m in used if m in available}
    print(f"        {len(used)} metrics used, {len(shop_metrics)} of them seen in "
          f"{len(ARGS.metrics)} smoke run(s)' /metrics")
    problems(found, "unknown metrics")


@check("every label selected, grouped by or shown in a legend exists on the metrics queried")
def label_names():
    available = exported()
    found = []
    for name, panel, target in prometheus_targets():
        metrics, grouping = analyse(substitute(target["expr"]))
        legend = set(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", target.get("legendFormat", "")))
        known = {m: available[m] | TARGET_LABELS for m in metrics if m in available}
        if "up" in metrics:
            known["up"] = set(TARGET_LABELS)
        where = f"{name}: {panel['title']!r}"
        for metric, labels in metrics.items():
            if metric in known:
                found += [f"{where}: {metric} has no label {label!r}" for label in sorted(labels - known[metric])]
        if known and len(known) == len(metrics):  # every metric's labels are known
            union = set().union(*known.values())
            found += [f"{where}: groups by {label!r}, which none of {sorted(metrics)} has"
                      for label in sorted(grouping - union)]
            if not grouping or grouping & {"le"} == grouping:
                shown = union
            else:
                # An aggregation keeps only the labels grouped by (or all but
                # `without` ones); the legend can show no other.
                shown = grouping if re.search(r"\bby\s*\(", target["expr"]) else union
            found += [f"{where}: the legend shows {{{{{label}}}}}, which the query does not keep"
                      for label in sorted(legend - shown)]
    problems(found, "unknown labels")


# ------------------------------------------------------------ data sources


def datasources() -> dict[str, dict]:
    return {source["uid"]: source for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]}


@check("data sources link signals: exemplars -> Tempo, Tempo -> Loki and Prometheus, Loki lines -> Tempo")
def links():
    sources, found = datasources(), []
    if set(sources) != {"prometheus", "tempo", "loki"}:
        found.append(f"data source uids {sorted(sources)}, expected prometheus, tempo, loki")
    prometheus = sources.get("prometheus", {}).get("jsonData", {})
    if {"name": "trace_id", "datasourceUid": "tempo"}.items() > (prometheus.get("exemplarTraceIdDestinations") or [{}])[0].items():
        found.append("Prometheus's exemplarTraceIdDestinations do not send trace_id to tempo")
    tempo = sources.get("tempo", {}).get("jsonData", {})
    logs = tempo.get("tracesToLogsV2", {})
    if logs.get("datasourceUid") != "loki" or not logs.get("filterByTraceID") and "__trace.traceId" not in logs.get("query", ""):
        found.append("Tempo's tracesToLogsV2 does not look the trace id up in loki")
    if logs.get("customQuery") and "$${__trace.traceId}" not in logs.get("query", ""):
        found.append("Tempo's custom logs query must hold $${__trace.traceId} ($$: Grafana expands $ in provisioning)")
    if tempo.get("serviceMap", {}).get("datasourceUid") != "prometheus":
        found.append("Tempo's serviceMap does not read Prometheus")
    if tempo.get("lokiSearch", {}).get("datasourceUid") != "loki":
        found.append("Tempo's lokiSearch does not point at loki")
    derived = sources.get("loki", {}).get("jsonData", {}).get("derivedFields", [])
    if not any(field.get("datasourceUid") == "tempo" and field.get("url") == "$${__value.raw}" for field in derived):
        found.append("Loki has no derived field opening $${__value.raw} in tempo")
    problems(found, "missing links")


@check("Loki's trace_id pattern finds the trace id in the shop's JSON log lines")
def derived_field_matches():
    derived = datasources()["loki"]["jsonData"]["derivedFields"]
    pattern = re.compile(next(field["matcherRegex"] for field in derived if field.get("datasourceUid") == "tempo"))
    # The shape the shop's JSON logs promise (tracing-subscriber's JSON
    # formatter, flattened, with the ids of the current span).
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    contract = json.dumps({"timestamp": "2026-11-25T10:00:00Z", "level": "INFO", "message": "request",
                           "target": "shop_web", "trace_id": trace_id, "span_id": "00f067aa0ba902b7"},
                          separators=(",", ":"))
    match = pattern.search(contract)
    assert match and match.group(1) == trace_id, f"{pattern.pattern} does not take {trace_id} out of {contract}"
    # And the real lines of the smoke runs, where they carry a trace id.
    with_ids = bad = 0
    for path in ARGS.logs:
        for line in Path(path).read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("trace_id"):
                with_ids += 1
                found = pattern.search(line)
                if not found or found.group(1) != record["trace_id"]:
                    bad += 1
                    if bad <= 3:
                        print(f"        no match: {line[:200]}")
    assert not bad, f"{bad} of {with_ids} logged lines with a trace_id did not match {pattern.pattern}"
    print(f"        matched the contract line and {with_ids} smoke log line(s) carrying a trace_id")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", nargs="*", default=[], help="each smoke run's saved /metrics")
    parser.add_argument("--logs", nargs="*", default=[], help="each smoke run's JSON log")
    parser.parse_args(namespace=ARGS)
    return check.run()


if __name__ == "__main__":
    sys.exit(main())
