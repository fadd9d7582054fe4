"""An OTLP/HTTP receiver for the end-to-end test of OpenTelemetry export.

Accepts protobuf `ExportTraceServiceRequest`s on /v1/traces and
`ExportMetricsServiceRequest`s on /v1/metrics (the encoding Conclave's exporter sends),
decodes them with the OpenTelemetry project's own protobuf definitions
(`opentelemetry-proto` from PyPI) and appends one JSON line per span, and per metric data
point, to the output file. Prints `listening on PORT` once bound (port 0 picks one).

    python receiver.py OUTPUT.jsonl [PORT]
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def attributes(items):
    """OTLP key-values as a plain dict of their JSON-mapped values."""
    out = {}
    for item in items:
        value = MessageToDict(item.value)
        out[item.key] = next(iter(value.values()), None) if value else None
    return out


def spans(request, emit):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                emit({
                    "signal": "span",
                    "service": resource.get("service.name"),
                    "name": span.name,
                    "kind": span.kind,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "status_code": span.status.code,
                    "attributes": attributes(span.attributes),
                })


def metrics(request, emit):
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points:
                    record = {
                        "signal": "metric",
                        "service": resource.get("service.name"),
                        "name": metric.name,
                        "kind": kind,
                        "attributes": attributes(point.attributes),
                    }
                    if kind == "histogram":
                        record["count"] = point.count
                    else:
                        record["value"] = point.as_int if point.HasField("as_int") else point.as_double
                    emit(record)


ROUTES = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, spans),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse, metrics),
}


def main():
    output = open(sys.argv[1], "a", buffering=1)
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            route = ROUTES.get(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if route is None or not self.headers.get("Content-Type", "").startswith("application/x-protobuf"):
                self.send_response(404 if route is None else 415)
                self.end_headers()
                return
            request_type, response_type, decode = route
            request = request_type()
            request.ParseFromString(body)
            decode(request, lambda record: output.write(json.dumps(record) + "\n"))
            reply = response_type().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
