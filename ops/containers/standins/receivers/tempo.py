#!/usr/bin/python3
"""A stand-in for Tempo: an OTLP/gRPC trace receiver that keeps every span it
is sent, in memory, and answers what it holds.

  /tempo -config.file=/etc/tempo/tempo.yaml     (compose.yaml's command)

Reads the real config for the OTLP/gRPC endpoint and the HTTP port (3200).
HTTP: /ready, /metrics, /api/traces/<trace id> (the spans of one trace),
/api/search (every trace id with its services). The protobuf is read by hand
(only the fields below), so nothing but grpcio is needed.
"""

import sys
import threading
from concurrent import futures

import grpc

sys.path.insert(0, "/opt/standin")
from receiver import as_json, config_from_args, run_until_stopped, serve_http, text  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOCK = threading.Lock()
SPANS = []  # dicts: trace_id, span_id, parent_span_id, name, kind, service
REQUESTS = {"received": 0, "malformed": 0}


def varint(buf, i):
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def fields(buf):
    """(field number, value) of a protobuf message, in order."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            length, i = varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def service_name(resource):
    for number, attribute in fields(resource):
        if number != 1:  # Resource.attributes: KeyValue
            continue
        key, value = "", ""
        for n, v in fields(attribute):
            if n == 1:
                key = v.decode()
            elif n == 2:  # AnyValue.string_value
                value = next((s.decode() for k, s in fields(v) if k == 1), "")
        if key == "service.name":
            return value
    return ""


def spans_of(request):
    """ExportTraceServiceRequest -> span dicts."""
    for number, resource_spans in fields(request):
        if number != 1:
            continue
        parts = list(fields(resource_spans))
        service = next((service_name(v) for n, v in parts if n == 1), "")
        for scope_spans in (v for n, v in parts if n == 2):
            for span in (v for n, v in fields(scope_spans) if n == 2):
                s = {"service": service, "trace_id": "", "span_id": "", "parent_span_id": "", "name": "", "kind": 0}
                for n, v in fields(span):
                    if n == 1:
                        s["trace_id"] = v.hex()
                    elif n == 2:
                        s["span_id"] = v.hex()
                    elif n == 4:
                        s["parent_span_id"] = v.hex()
                    elif n == 5:
                        s["name"] = v.decode()
                    elif n == 6:
                        s["kind"] = v
                yield s


def export(request, context):
    try:
        spans = list(spans_of(request))
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        with LOCK:
            REQUESTS["malformed"] += 1
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot read the request: {error}")
    with LOCK:
        REQUESTS["received"] += 1
        SPANS.extend(spans)
    return b""  # an empty ExportTraceServiceResponse: everything accepted


class Receiver(grpc.GenericRpcHandler):
    def service(self, details):
        if details.method == EXPORT:
            return grpc.unary_unary_rpc_method_handler(export)  # bytes in, bytes out
        return None


def get(path, query, _body, _headers):
    if path == "/ready":
        return text("ready\n")
    if path == "/metrics":
        with LOCK:
            body = f"standin_tempo_spans_received {len(SPANS)}\nstandin_tempo_requests {REQUESTS['received']}\n"
        return 200, "text/plain; version=0.0.4", body.encode()
    if path.startswith("/api/traces/"):
        trace_id = path.rsplit("/", 1)[1].lower()
        with LOCK:
            spans = [s for s in SPANS if s["trace_id"] == trace_id]
        return as_json({"trace_id": trace_id, "spans": spans}, 200 if spans else 404)
    if path == "/api/search":
        traces = {}
        with LOCK:
            for s in SPANS:
                traces.setdefault(s["trace_id"], set()).add(s["service"])
        return as_json({"traces": [{"trace_id": t, "services": sorted(v)} for t, v in traces.items()]})
    return text("not found\n", 404)


def main():
    config = config_from_args(sys.argv[1:])
    otlp = config.get("distributor", {}).get("receivers", {}).get("otlp", {}).get("protocols", {})
    endpoint = (otlp.get("grpc") or {}).get("endpoint", "0.0.0.0:4317")
    http_port = int(config.get("server", {}).get("http_listen_port", 3200))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[Receiver()])
    server.add_insecure_port(endpoint)
    server.start()
    print(f"tempo stand-in: OTLP/gRPC on {endpoint}", file=sys.stderr)
    serve_http(http_port, get=get, name="tempo stand-in")
    run_until_stopped()


if __name__ == "__main__":
    main()
