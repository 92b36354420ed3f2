#!/usr/bin/env python3
"""Writes the shop's Grafana dashboards to ops/grafana/dashboards/*.json.

The dashboards are code so that every panel has the same shape (a title, a
description, the datasource variable, $__rate_interval) and so that a change
reviews as a few lines, not as a diff of Grafana's JSON. After changing this
file run it (`python3 ops/grafana/dashboards.py`) and commit both; ops/test.sh
fails when the JSON and this file disagree (tests/ops/check_dashboards.py),
and checks every metric name in the queries against what the shop exports.

Standard library only: it runs with any python3.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "loki"}
RATE = "$__rate_interval"


# ------------------------------------------------------------------ helpers


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self._newline()
        self.panels.append(
            {"type": "row", "id": self._id(), "title": title, "collapsed": False,
             "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "panels": []}
        )
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self):
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0


def target(expr, legend="", ref="A", exemplar=False, instant=False):
    t = {"datasource": PROMETHEUS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant}
    if exemplar:
        t["exemplar"] = True
    return t


def targets(*queries, exemplar=False):
    """(expr, legend) pairs as targets A, B, C..."""
    return [target(expr, legend, chr(ord("A") + i), exemplar=exemplar) for i, (expr, legend) in enumerate(queries)]


def timeseries(title, description, queries, unit="short", stack=False, bars=False, min0=True,
               thresholds=None, exemplar=False):
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 60 if bars else 10,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        custom["thresholdsStyle"] = {"mode": "line"}
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": PROMETHEUS,
        "targets": targets(*queries, exemplar=exemplar),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title, description, expr, unit="short", decimals=None, thresholds=None, mappings=None, legend="",
         color_mode="value", instant=True):
    defaults = {"unit": unit, "thresholds": {"mode": "absolute",
                                             "steps": thresholds or [{"color": "green", "value": None}]}}
    if decimals is not None:
        defaults["decimals"] = decimals
    if mappings:
        defaults["mappings"] = mappings
    return {
        "type": "stat", "title": title, "description": description, "datasource": PROMETHEUS,
        "targets": [target(expr, legend, instant=instant)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": color_mode, "graphMode": "none", "textMode": "auto", "justifyMode": "auto",
                    "orientation": "auto"},
    }


def logs(title, description, expr):
    return {
        "type": "logs", "title": title, "description": description, "datasource": LOKI,
        "targets": [{"datasource": LOKI, "refId": "A", "expr": expr, "queryType": "range"}],
        "options": {"showTime": True, "wrapLogMessage": True, "prettifyLogMessage": False,
                    "enableLogDetails": True, "sortOrder": "Descending", "dedupStrategy": "none"},
    }


def quantiles(metric, by, legend, where=""):
    """p50, p95 and p99 of a histogram, per `by` labels."""
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{RATE}])))", f"{legend} p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]


def dashboard(uid, title, description, layout, refresh="30s"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["shop"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": refresh,
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "links": [{"type": "dashboards", "tags": ["shop"], "title": "Shop dashboards", "asDropdown": False,
                   "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False}],
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0, "refresh": 1,
            "regex": "", "options": [],
        }]},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "panels": layout.panels,
    }


PERCENT_THRESHOLDS = [{"color": "green", "value": None}, {"color": "orange", "value": 0.01},
                      {"color": "red", "value": 0.05}]
SECONDS_THRESHOLDS = [{"color": "green", "value": None}, {"color": "orange", "value": 0.5},
                      {"color": "red", "value": 1}]
# gRPC codes that mean the server failed, not that the caller asked wrongly
# (the same set as ops/prometheus/alerts.yml, plus time-outs).
SERVER_FAULTS = 'grpc_code=~"INTERNAL|UNKNOWN|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"'


# ------------------------------------------------------------------ overview


def overview():
    lay = Layout()
    lay.row("The gateway at a glance")
    lay.add(stat("Requests per second", "Every HTTP request the gateway answered, over the last 5 minutes.",
                 "sum(rate(http_requests_total[5m]))", unit="reqps", decimals=2), 6, 4)
    lay.add(stat("Server errors", "Share of HTTP answers that were 5xx over the last 5 minutes (alert at 5%).",
                 'sum(rate(http_requests_total{status=~"5.."}[5m])) / clamp_min(sum(rate(http_requests_total[5m])), 1e-9)',
                 unit="percentunit", decimals=2, thresholds=PERCENT_THRESHOLDS), 6, 4)
    lay.add(stat("p95 latency", "95th percentile of HTTP request duration over all routes, last 5 minutes.",
                 "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
                 unit="s", decimals=3, thresholds=SECONDS_THRESHOLDS), 6, 4)
    lay.add(stat("gRPC server failures", "Calls per second the services failed (INTERNAL, UNKNOWN, UNAVAILABLE, "
                 "DATA_LOSS, DEADLINE_EXCEEDED), last 5 minutes; refusals of bad input are not counted.",
                 f"sum(rate(grpc_server_handled_total{{{SERVER_FAULTS}}}[5m])) or vector(0)",
                 unit="reqps", decimals=2, thresholds=[{"color": "green", "value": None},
                                                      {"color": "red", "value": 0.1}]), 6, 4)

    lay.row("HTTP: rate, errors, duration per route")
    lay.add(timeseries("Requests per second by route",
                       "HTTP requests answered per second, by route template (not raw path) and method.",
                       [(f"sum by (method, route) (rate(http_requests_total[{RATE}]))", "{{method}} {{route}}")],
                       unit="reqps"), 12, 8)
    lay.add(timeseries("Answers by status",
                       "HTTP answers per second by status code: 2xx and 3xx are fine, 4xx are the client's "
                       "(bad input, not signed in), 5xx are the shop's.",
                       [(f"sum by (status) (rate(http_requests_total[{RATE}]))", "{{status}}")],
                       unit="reqps", stack=True), 12, 8)
    lay.add(timeseries("Server error ratio by route",
                       "Share of each route's answers that were 5xx. A route with no traffic shows nothing.",
                       [(f'sum by (route) (rate(http_requests_total{{status=~"5.."}}[{RATE}])) / '
                         f"sum by (route) (rate(http_requests_total[{RATE}]))", "{{route}}")],
                       unit="percentunit", thresholds=PERCENT_THRESHOLDS), 12, 8)
    lay.add(timeseries("Client error ratio by route",
                       "Share of each route's answers that were 4xx: validation errors, missing sessions, "
                       "refused cross-site writes, rate limiting. A jump here is usually a client or an attack.",
                       [(f'sum by (route) (rate(http_requests_total{{status=~"4.."}}[{RATE}])) / '
                         f"sum by (route) (rate(http_requests_total[{RATE}]))", "{{route}}")],
                       unit="percentunit"), 12, 8)
    lay.add(timeseries("Latency p50 / p95 / p99 by route",
                       "HTTP request duration quantiles per route template, from the gateway's histogram "
                       "(buckets 5 ms to 10 s, so values above 10 s read as 10 s).",
                       quantiles("http_request_duration_seconds", "route", "{{route}}"),
                       unit="s", thresholds=SECONDS_THRESHOLDS), 24, 9)

    lay.row("gRPC servers: the services' side")
    lay.add(timeseries("Calls per second by method",
                       "gRPC calls each service answered per second, by service and method, whatever the code.",
                       [(f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total[{RATE}]))",
                         "{{grpc_service}}/{{grpc_method}}")], unit="reqps"), 12, 8)
    lay.add(timeseries("Non-OK answers by code",
                       "gRPC answers per second that were not OK, by service and code. NOT_FOUND, "
                       "INVALID_ARGUMENT, FAILED_PRECONDITION and the like are the caller's; INTERNAL, UNKNOWN, "
                       "UNAVAILABLE and DATA_LOSS are the service's.",
                       [(f'sum by (grpc_service, grpc_code) (rate(grpc_server_handled_total{{grpc_code!="OK"}}[{RATE}]))',
                         "{{grpc_service}} {{grpc_code}}")], unit="reqps", stack=True), 12, 8)
    lay.add(timeseries("Server failure ratio by service",
                       "Share of each service's calls that failed on the service's side (INTERNAL, UNKNOWN, "
                       "UNAVAILABLE, DATA_LOSS, DEADLINE_EXCEEDED).",
                       [(f"sum by (grpc_service) (rate(grpc_server_handled_total{{{SERVER_FAULTS}}}[{RATE}])) / "
                         f"sum by (grpc_service) (rate(grpc_server_handled_total[{RATE}]))", "{{grpc_service}}")],
                       unit="percentunit", thresholds=PERCENT_THRESHOLDS), 12, 8)
    lay.add(timeseries("Handling time p95 by method",
                       "95th percentile of the time a service took to answer, by service and method.",
                       [(f"histogram_quantile(0.95, sum by (le, grpc_service, grpc_method) "
                         f"(rate(grpc_server_handling_seconds_bucket[{RATE}])))",
                         "{{grpc_service}}/{{grpc_method}}")], unit="s", thresholds=SECONDS_THRESHOLDS), 12, 8)
    lay.add(timeseries("Handling time p50 / p95 / p99 by service",
                       "Quantiles of gRPC handling time per service, all methods together.",
                       quantiles("grpc_server_handling_seconds", "grpc_service", "{{grpc_service}}"),
                       unit="s", thresholds=SECONDS_THRESHOLDS), 24, 8)

    lay.row("gRPC clients: the callers' side (gateway, orders -> inventory, notifications -> users, orders)")
    lay.add(timeseries("Client calls per second by method",
                       "gRPC calls made per second by the gateway (to every service), by orders (to "
                       "inventory) and by notifications (to users and orders, for each email), by target "
                       "service and method.",
                       [(f"sum by (grpc_service, grpc_method) (rate(grpc_client_handled_total[{RATE}]))",
                         "{{grpc_service}}/{{grpc_method}}")], unit="reqps"), 8, 8)
    lay.add(timeseries("Client-seen failures by code",
                       "Calls per second that came back with a server-side failure, as the caller saw them. "
                       "UNAVAILABLE here and not on the server's side means the call never arrived: the "
                       "service is down or unreachable.",
                       [(f"sum by (grpc_service, grpc_code) (rate(grpc_client_handled_total{{{SERVER_FAULTS}}}[{RATE}]))",
                         "{{grpc_service}} {{grpc_code}}")], unit="reqps", stack=True), 8, 8)
    lay.add(timeseries("Client-seen latency p95 by method",
                       "95th percentile of call duration as the caller measured it: the server's handling "
                       "time plus the network and queueing. A gap to the server's own p95 is time lost between.",
                       [(f"histogram_quantile(0.95, sum by (le, grpc_service, grpc_method) "
                         f"(rate(grpc_client_handling_seconds_bucket[{RATE}])))",
                         "{{grpc_service}}/{{grpc_method}}")], unit="s", thresholds=SECONDS_THRESHOLDS), 8, 8)

    lay.row("Traces: span metrics with exemplars")
    lay.add(timeseries("Server span latency p95 by service (exemplars: click a dot for its trace)",
                       "Computed by Tempo's metrics-generator from the spans the shop sends, and remote-written "
                       "to Prometheus. The shop's own /metrics carry no exemplars; these series do: each dot is "
                       "a real request's trace id, and clicking it opens the trace in Tempo. Empty when traces "
                       "are off (OTEL_EXPORTER_OTLP_ENDPOINT unset).",
                       [(f'histogram_quantile(0.95, sum by (le, service) (rate(traces_spanmetrics_latency_bucket'
                         f'{{span_kind="SPAN_KIND_SERVER"}}[{RATE}])))', "{{service}} p95")],
                       unit="s", exemplar=True), 12, 9)
    lay.add(timeseries("Calls between services (service graph)",
                       "Requests per second from one service to another, as Tempo's service-graph processor "
                       "pairs client and server spans. The same data draws Tempo's service map in Explore.",
                       [(f"sum by (client, server) (rate(traces_service_graph_request_total[{RATE}]))",
                         "{{client}} -> {{server}}")], unit="reqps"), 12, 9)
    lay.add(logs("Recent warnings and errors",
                 "The shop's WARN and ERROR log lines from Loki, newest first. Open a line to see its fields; "
                 "its trace_id links to the trace in Tempo.",
                 '{service_name=~"shop.*", level=~"warn|error"}'), 24, 10)

    return dashboard("shop-overview", "Shop / Overview",
                     "RED metrics of the gateway's HTTP routes and of every gRPC method, server and client side, "
                     "with trace exemplars from Tempo.", lay)


# ---------------------------------------------------------------- business


def business():
    lay = Layout()
    lay.row("In the selected time range")
    lay.add(stat("Orders confirmed", "Orders confirmed (stock reserved) in the selected time range.",
                 'sum(increase(shop_orders_total{outcome="confirmed"}[$__range]))', decimals=0), 5, 4)
    lay.add(stat("Orders rejected", "Orders rejected in the selected time range: not enough stock for one of "
                 "the items, so nothing was reserved.",
                 'sum(increase(shop_orders_total{outcome="rejected"}[$__range]))', decimals=0,
                 thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]), 5, 4)
    lay.add(stat("Revenue", "Sum of the confirmed orders' totals in the selected time range, in the shop's "
                 "currency (prices are kept in minor units, cents; shown here divided by 100).",
                 "sum(increase(shop_revenue_cents_total[$__range])) / 100", decimals=2), 5, 4)
    lay.add(stat("Average order value", "Revenue divided by confirmed orders in the selected time range, in the "
                 "shop's currency.",
                 "sum(increase(shop_revenue_cents_total[$__range])) / 100 / "
                 'sum(increase(shop_orders_total{outcome="confirmed"}[$__range]))', decimals=2), 5, 4)
    lay.add(stat("Active sessions", "Sessions the gateways hold now (signed in or with a cart).",
                 "sum(shop_sessions_active)", decimals=0), 4, 4)

    lay.row("Orders")
    lay.add(timeseries("Orders per minute by outcome",
                       "New orders per minute: confirmed (every item reserved) or rejected (some item short).",
                       [(f"sum by (outcome) (rate(shop_orders_total[{RATE}])) * 60", "{{outcome}}")],
                       unit="short", stack=True, bars=True), 12, 8)
    lay.add(timeseries("Rejection ratio",
                       "Share of new orders rejected for lack of stock. A rise means products run out: see the "
                       "stock-low events below.",
                       [(f'sum(rate(shop_orders_total{{outcome="rejected"}}[{RATE}])) / '
                         f"sum(rate(shop_orders_total[{RATE}]))", "rejected")],
                       unit="percentunit", thresholds=[{"color": "green", "value": None},
                                                       {"color": "red", "value": 0.2}]), 12, 8)
    lay.add(timeseries("Revenue per hour",
                       "Confirmed orders' totals per hour, in the shop's currency (minor units / 100).",
                       [(f"sum(rate(shop_revenue_cents_total[{RATE}])) * 3600 / 100", "revenue per hour")],
                       unit="short"), 12, 8)
    lay.add(timeseries("Checkout latency",
                       "How long placing an order (POST /orders) takes at the gateway: pricing and reserving "
                       "stock through the order and inventory services.",
                       quantiles("http_request_duration_seconds", "method", "POST /orders",
                                 where='route="/orders", method="POST"'),
                       unit="s", thresholds=SECONDS_THRESHOLDS), 12, 8)

    lay.row("Fulfilment and stock")
    lay.add(timeseries("Status changes per minute",
                       "Orders moved to each status per minute (confirmed, shipped, delivered, cancelled, "
                       "rejected), by an admin, a customer cancelling, or the order service itself.",
                       [(f"sum by (status) (rate(shop_order_status_changes_total[{RATE}])) * 60", "{{status}}")],
                       stack=True, bars=True), 12, 8)
    lay.add({**stat("Status changes in the time range", "Orders moved to each status in the selected time range.",
                    "sum by (status) (increase(shop_order_status_changes_total[$__range]))", decimals=0,
                    legend="{{status}}"), "type": "bargauge",
             "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                         "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}}, 12, 8)
    lay.add(timeseries("Stock-low events",
                       "stock.low events raised by inventory: a product's stock fell to the threshold "
                       "(SHOP_LOW_STOCK_THRESHOLD, default 5) or below. Counted per rate interval.",
                       [(f"sum(increase(shop_stock_low_events_total[{RATE}]))", "stock low")],
                       bars=True), 12, 8)
    lay.add(timeseries("Active sessions",
                       "Sessions held by each gateway process: shoppers signed in or with a cart.",
                       [("sum by (process) (shop_sessions_active)", "{{process}}")]), 12, 8)

    lay.row("Cache")
    lay.add(timeseries("Cache hit ratio by kind",
                       "Share of profile and product lookups the gateway answered from its cache (memory or "
                       "Redis) instead of calling a service.",
                       [(f'sum by (kind) (rate(shop_cache_requests_total{{result="hit"}}[{RATE}])) / '
                         f"sum by (kind) (rate(shop_cache_requests_total[{RATE}]))", "{{kind}}")],
                       unit="percentunit"), 12, 8)
    lay.add(timeseries("Cache lookups per second",
                       "Cache lookups per second by kind and result (hit or miss).",
                       [(f"sum by (kind, result) (rate(shop_cache_requests_total[{RATE}]))", "{{kind}} {{result}}")],
                       unit="reqps", stack=True), 12, 8)

    return dashboard("shop-business", "Shop / Orders and business",
                     "Orders by outcome, revenue, status changes, stock-low events, sessions and the cache.", lay)


# ---------------------------------------------------------- infrastructure


def infrastructure():
    lay = Layout()
    lay.row("Targets")
    lay.add(stat("Scrape targets up", "Whether Prometheus reached each target's /metrics at the last scrape: "
                 "the five shop processes, Prometheus, Tempo and Loki.",
                 "up", legend="{{job}} {{process}} {{instance}}", color_mode="background",
                 thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                 mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                                         "1": {"text": "UP", "color": "green"}}}]), 24, 5)

    lay.row("Database")
    lay.add(timeseries("Queries per second by service",
                       "SQL statements run per second by each service's store.",
                       [(f"sum by (service) (rate(shop_db_query_duration_seconds_count[{RATE}]))", "{{service}}")],
                       unit="reqps"), 8, 8)
    lay.add(timeseries("Query latency p95 by query",
                       "95th percentile of statement duration, by service and query name.",
                       [(f"histogram_quantile(0.95, sum by (le, service, query) "
                         f"(rate(shop_db_query_duration_seconds_bucket[{RATE}])))", "{{service}} {{query}}")],
                       unit="s", thresholds=SECONDS_THRESHOLDS), 8, 8)
    lay.add(timeseries("Query errors per second",
                       "Statements that failed, by service and query: lost connections, time-outs, "
                       "serialization failures. Constraint violations the service turns into a 4xx count too.",
                       [(f"sum by (service, query) (rate(shop_db_query_errors_total[{RATE}]))", "{{service}} {{query}}")],
                       unit="reqps", stack=True), 8, 8)
    lay.add(timeseries("Pool connections by state",
                       "Connections in each service's pool, idle or busy, against the pool's maximum "
                       "(SHOP_DB_MAX_CONNECTIONS).",
                       [("sum by (service, state) (shop_db_pool_connections)", "{{service}} {{state}}"),
                        ("sum by (service) (shop_db_pool_max_connections)", "{{service}} max")]), 12, 8)
    lay.add(timeseries("Pool saturation",
                       "Busy connections as a share of each pool's maximum. Near 100%, requests wait for a "
                       "connection: raise SHOP_DB_MAX_CONNECTIONS or find the slow queries.",
                       [('sum by (service) (shop_db_pool_connections{state="busy"}) / '
                         "sum by (service) (shop_db_pool_max_connections)", "{{service}}")],
                       unit="percentunit", thresholds=[{"color": "green", "value": None},
                                                       {"color": "orange", "value": 0.7},
                                                       {"color": "red", "value": 0.9}]), 12, 8)

    lay.row("Events: outbox, relay, NATS")
    lay.add(timeseries("Outbox backlog",
                       "Events written to each service's outbox and not yet published to NATS. It should stay "
                       "near zero; growth means NATS is unreachable or the relay is stuck (alert above 1000).",
                       [("max by (service) (shop_outbox_backlog)", "{{service}}")]), 12, 8)
    lay.add(timeseries("Relay lag",
                       "Age of the oldest unpublished event per service (alert above 60 s).",
                       [("max by (service) (shop_outbox_relay_lag_seconds)", "{{service}}")], unit="s",
                       thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 60}]), 12, 8)
    lay.add(timeseries("Events published per second",
                       "Events the relays published to NATS JetStream per second, by service.",
                       [(f"sum by (service) (rate(shop_outbox_published_total[{RATE}]))", "{{service}}")],
                       unit="reqps", stack=True), 12, 8)
    lay.add(timeseries("Events redelivered per second",
                       "Messages JetStream delivered again to a consumer, because an earlier handling failed "
                       "or was not acknowledged in time. Consumers are idempotent; a steady rate means one keeps "
                       "failing.",
                       [(f"sum by (consumer) (rate(shop_events_redelivered_total[{RATE}]))", "{{consumer}}")],
                       unit="reqps"), 12, 8)

    lay.row("Cache")
    lay.add(timeseries("Cache failures per second",
                       "Redis operations of the gateway's cache that failed, by operation. The gateway then asks "
                       "the service instead, so customers see slower pages, not errors.",
                       [(f"sum by (operation) (rate(shop_cache_failures_total[{RATE}]))", "{{operation}}")],
                       unit="reqps"), 24, 8)

    return dashboard("shop-infrastructure", "Shop / Infrastructure",
                     "Targets, the database (latency, errors, pools), the outbox and its relay, events and "
                     "the cache.", lay)


DASHBOARDS = {"overview.json": overview, "business.json": business, "infrastructure.json": infrastructure}


def render():
    """File name -> the JSON text this file generates."""
    return {name: json.dumps(make(), indent=2, sort_keys=True) + "\n" for name, make in DASHBOARDS.items()}


def main():
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
