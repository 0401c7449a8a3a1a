"""An OTLP/HTTP receiver for tests: what a collector would get, decoded with the official protobufs.

``OTLPReceiver`` listens on loopback, accepts ``POST /v1/traces`` and ``/v1/metrics``
(``application/x-protobuf``, gzip or not), decodes them with ``opentelemetry-proto`` and keeps
plain dicts: :meth:`OTLPReceiver.spans` and :meth:`OTLPReceiver.points`. ``mode="hang"`` accepts
and never answers (a slow collector). ``protocol="grpc"`` serves OTLP/gRPC instead (the
collector's ``TraceService`` / ``MetricsService`` from ``opentelemetry-proto``'s stubs, on
``grpcio``), decoded the same way. Needs ``opentelemetry-proto`` (and, for gRPC, ``grpcio``:
hermetry's dev extra)::

    with OTLPReceiver() as rx:
        env = {"HERMETRY_OTLP": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}
        ...
        spans = rx.wait_for(lambda r: len(r.spans()) >= 3)
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}


class OTLPReceiver:
    """A loopback OTLP/HTTP endpoint that records what it receives (``mode``: "ok" or "hang")."""

    def __init__(self, mode: str = "ok", *, protocol: str = "http/protobuf") -> None:
        self.mode = mode
        self.protocol = protocol
        self.requests: list[tuple[str, bytes]] = []
        self._spans: list[dict[str, Any]] = []
        self._points: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if receiver.mode == "hang":
                    receiver._stop.wait()
                    return
                receiver._receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._grpc: Any = None
        if protocol == "grpc":
            self._grpc, self.port = self._grpc_server()
        else:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._server.daemon_threads = True
            self.port = int(self._server.server_address[1])
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.endpoint = f"http://127.0.0.1:{self.port}"  # http://: an insecure gRPC channel too

    def _grpc_server(self) -> tuple[Any, int]:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's name
                if receiver.mode == "hang":
                    receiver._stop.wait()
                receiver._receive("/v1/traces", request.SerializeToString())
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                if receiver.mode == "hang":
                    receiver._stop.wait()
                receiver._receive("/v1/metrics", request.SerializeToString())
                return metrics_service_pb2.ExportMetricsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        return server, int(port)

    def __enter__(self) -> OTLPReceiver:
        if self._grpc is not None:
            self._grpc.start()
        else:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            return
        self._server.shutdown()
        self._server.server_close()

    def _receive(self, path: str, body: bytes) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        with self._lock:
            self.requests.append((path, body))
            if path.endswith("/v1/traces"):
                req = ExportTraceServiceRequest.FromString(body)
                for rs in req.resource_spans:
                    resource = _attrs(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            self._spans.append({
                                "name": s.name, "kind": _KINDS.get(s.kind, str(s.kind)),
                                "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                "parent_span_id": s.parent_span_id.hex() or None,
                                "start_ns": s.start_time_unix_nano, "end_ns": s.end_time_unix_nano,
                                "attributes": _attrs(s.attributes), "status": _STATUS.get(s.status.code),
                                "status_message": s.status.message, "resource": resource,
                                "scope": ss.scope.name, "schema_url": ss.schema_url or rs.schema_url,
                            })
            elif path.endswith("/v1/metrics"):
                req = ExportMetricsServiceRequest.FromString(body)
                for rm in req.resource_metrics:
                    resource = _attrs(rm.resource.attributes)
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            kind = m.WhichOneof("data")
                            data = getattr(m, kind)
                            for p in data.data_points:
                                point = {"metric": m.name, "unit": m.unit, "type": kind,
                                         "temporality": data.aggregation_temporality,
                                         "attributes": _attrs(p.attributes), "start_ns": p.start_time_unix_nano,
                                         "time_ns": p.time_unix_nano, "resource": resource}
                                if kind == "histogram":
                                    point.update(count=p.count, sum=p.sum, bucket_counts=list(p.bucket_counts),
                                                 explicit_bounds=list(p.explicit_bounds))
                                else:
                                    point["value"] = p.as_double if p.HasField("as_double") else p.as_int
                                    point["monotonic"] = getattr(data, "is_monotonic", None)
                                self._points.append(point)

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)

    def points(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._points)

    def wait_for(self, condition: Callable[[OTLPReceiver], bool], timeout: float = 15.0) -> bool:
        """Poll until ``condition(self)`` holds (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return True
            time.sleep(0.02)
        return condition(self)
