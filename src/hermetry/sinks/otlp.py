"""The OTLP exporter sink: canonical events → OpenTelemetry traces and metrics over OTLP.

A best-effort exporter of the recorder (``Recorder(exporters=[…])``). On the writer thread it
maps each batch with :class:`~hermetry.sinks.genai.GenAIMapper` into SDK spans
(``ReadableSpan`` with the recorded start/end times and deterministic ids) and metric points
(``MetricsData`` whose times are the events' times), then hands them to its own delivery thread.
Only that thread talks to the collector, so a slow or dead collector never holds up the store or
the agent:

* memory is bounded — at most ``max_queued`` spans + points wait; past that, new ones are
  dropped and counted;
* a failed export is counted (spans / points), never retried by hermetry (the SDK exporter retries
  within its own timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT``);
* ``flush`` waits at most ``min(timeout, flush_timeout_s)`` (1 s by default) — and not at all once
  the collector has failed in this process; what is still undelivered then is counted as dropped
  and the operator is told once, on stderr.

Configuration follows the OpenTelemetry SDK's environment variables (docs/opentelemetry.md):
``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_{ENDPOINT,HEADERS,TIMEOUT,PROTOCOL,COMPRESSION}``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` (``none`` turns a signal off) and
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` (cumulative, delta, lowmemory).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hermetry.model.events import Event
from hermetry.recorder.sink import SinkDisabled
from hermetry.sinks import genai

log = logging.getLogger("hermetry")

PROTOCOLS = ("http/protobuf", "grpc")
FLUSH_TIMEOUT_S = 1.0
MAX_QUEUED = 20_000


@dataclass(frozen=True)
class OTLPConfig:
    """What the OTLP sink sends where (from the ``OTEL_*`` environment, see :meth:`from_env`)."""

    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    traces: bool = True
    metrics: bool = True
    cumulative: bool = True
    flush_timeout_s: float = FLUSH_TIMEOUT_S
    max_queued: int = MAX_QUEUED
    #: cumulative series are sent again this often while nothing changes (``OTEL_METRIC_EXPORT_INTERVAL``,
    #: ms, default 60 s), so a backend behind the collector does not mark a quiet gateway's series stale
    export_interval_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, settings: Mapping[str, Any] | None = None) -> OTLPConfig:
        env = os.environ if env is None else env
        settings = settings or {}

        def protocol(signal: str) -> str:
            value = (env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                     or str(settings.get("protocol") or "http/protobuf")).strip().lower()
            if value not in PROTOCOLS:
                raise SinkDisabled(f"OTLP protocol {value!r} is not supported (use http/protobuf or grpc)")
            return value

        temporality = (env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") or "cumulative").strip().lower()
        flush = settings.get("flush_timeout_s")
        return cls(
            traces_protocol=protocol("TRACES"), metrics_protocol=protocol("METRICS"),
            traces=(env.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower() != "none",
            metrics=(env.get("OTEL_METRICS_EXPORTER") or "otlp").strip().lower() != "none",
            # every hermetry instrument is a synchronous counter or histogram: lowmemory = delta
            cumulative=temporality not in ("delta", "lowmemory"),
            flush_timeout_s=float(flush) if isinstance(flush, int | float) and flush >= 0 else FLUSH_TIMEOUT_S,
            export_interval_s=_interval_s(env.get("OTEL_METRIC_EXPORT_INTERVAL")),
        )


def _interval_s(raw: str | None) -> float:
    try:
        value = float(raw) / 1000 if raw else 60.0
    except ValueError:
        return 60.0
    return value if value > 0 else 60.0


def _span_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise SinkDisabled("OTLP over gRPC needs: pip install 'hermetry[otlp-grpc]'") from exc
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def _metric_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        except ImportError as exc:
            raise SinkDisabled("OTLP over gRPC needs: pip install 'hermetry[otlp-grpc]'") from exc
        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter()


def default_resource() -> Any:
    """``service.name=hermes``, the host and the process — unless ``OTEL_SERVICE_NAME`` or
    ``OTEL_RESOURCE_ATTRIBUTES`` say otherwise (the variables always win)."""
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    from_env = OTELResourceDetector().detect().attributes
    ours: dict[str, Any] = {"service.name": "hermes", "host.name": socket.gethostname(), "process.pid": os.getpid()}
    return Resource.create({k: v for k, v in ours.items() if k not in from_env}, genai.SCHEMA_URL)


class _SDK:
    """The SDK objects the sink builds from plain records (imported on the writer thread)."""

    def __init__(self, resource: Any) -> None:
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        from hermetry import __version__

        self.resource = resource
        self.scope = InstrumentationScope(genai.SCOPE_NAME, __version__, genai.SCHEMA_URL)
        self.kinds = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
        self.sampled = TraceFlags(TraceFlags.SAMPLED)
        self.ok, self.error = Status(StatusCode.UNSET), StatusCode.ERROR
        self.Status, self.SpanContext, self.ReadableSpan = Status, SpanContext, ReadableSpan
        self.m = (AggregationTemporality, Histogram, HistogramDataPoint, Metric, MetricsData, NumberDataPoint,
                  ResourceMetrics, ScopeMetrics, Sum)

    def span(self, r: genai.SpanRecord) -> Any:
        ctx = self.SpanContext(r.trace_id, r.span_id, is_remote=False, trace_flags=self.sampled)
        parent = (self.SpanContext(r.trace_id, r.parent_span_id, is_remote=False, trace_flags=self.sampled)
                  if r.parent_span_id else None)
        status = self.Status(self.error, r.error) if r.error else self.ok
        return self.ReadableSpan(name=r.name, context=ctx, parent=parent, resource=self.resource,
                                 attributes=r.attributes, kind=self.kinds[r.kind], status=status,
                                 start_time=r.start_ns, end_time=r.end_ns, instrumentation_scope=self.scope)

    def metrics(self, series: Sequence[genai.Series], cumulative: bool) -> Any:
        (Temporality, Histogram, HistogramDataPoint, Metric, MetricsData, NumberDataPoint, ResourceMetrics,
         ScopeMetrics, Sum) = self.m
        temporality = Temporality.CUMULATIVE if cumulative else Temporality.DELTA
        by_metric: dict[str, list[genai.Series]] = {}
        for s in series:
            by_metric.setdefault(s.metric.name, []).append(s)
        out = []
        for name, group in by_metric.items():
            d = group[0].metric
            if d.kind == "histogram":
                data: Any = Histogram(data_points=[HistogramDataPoint(
                    attributes=dict(s.attributes), start_time_unix_nano=s.start_ns, time_unix_nano=s.time_ns,
                    count=s.count, sum=s.sum, bucket_counts=list(s.bucket_counts or ()),
                    explicit_bounds=list(d.boundaries), min=s.min, max=s.max) for s in group],
                    aggregation_temporality=temporality)
            else:
                data = Sum(data_points=[NumberDataPoint(
                    attributes=dict(s.attributes), start_time_unix_nano=s.start_ns, time_unix_nano=s.time_ns,
                    value=s.sum) for s in group], aggregation_temporality=temporality,
                    is_monotonic=d.kind == "counter")  # an up-down counter: Prometheus reads a gauge
            out.append(Metric(name=name, description=d.description, unit=d.unit, data=data))
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=self.resource, scope_metrics=[ScopeMetrics(scope=self.scope, metrics=out,
                                                                schema_url=genai.SCHEMA_URL)],
            schema_url=genai.SCHEMA_URL)])


class _Delivery:
    """The one thread that talks to the collector; a bounded queue in front of it."""

    def __init__(self, span_exporter: Any, metric_exporter: Any, max_queued: int, describe: str) -> None:
        self.span_exporter, self.metric_exporter = span_exporter, metric_exporter
        self.max_queued = max_queued
        self.describe = describe
        self.queue: deque[tuple[str, Any, int]] = deque()
        self.queued = 0  # spans + points waiting
        self.inflight: tuple[str, Any, int] | None = None
        self.cond = threading.Condition()
        self.closed = False
        self.failing = False
        self.told = False
        self.delivered = {"spans": 0, "points": 0}
        self.dropped = {"spans": 0, "points": 0}
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._run, name="hermetry-otlp", daemon=True)
        self.thread.start()

    def put(self, kind: str, payload: Any, n: int, *, block: bool = False) -> None:
        """Queue one export; when full, drop it (counted) — or, ``block``: wait for room (a replay,
        which has no agent to protect and would rather be slow than lossy)."""
        with self.cond:
            while block and self.queue and self.queued + n > self.max_queued and not self.closed:
                self.cond.wait(0.1)
            if self.closed or (self.queue and self.queued + n > self.max_queued):
                self._drop(kind, n, "queue full" if not self.closed else "closed")
                return
            self.queue.append((kind, payload, n))
            self.queued += n
            self.cond.notify()

    def _drop(self, kind: str, n: int, why: str) -> None:
        self.dropped[kind] += n
        self.last_error = why
        if not self.told:
            self.told = True
            msg = (f"hermetry: OpenTelemetry export to {self.describe} is failing ({why}); undelivered spans "
                   "and metric points are dropped and counted (hermetry keeps every event in its own store)")
            log.debug(msg)  # the operator reads it on stderr (a logging handler would repeat it)
            try:
                print(msg, file=sys.stderr, flush=True)
            except Exception:
                pass

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if not self.queue:
                    return
                item = self.inflight = self.queue.popleft()
                self.queued -= item[2]
            kind, payload, n = item
            ok, error = False, None
            try:
                if kind == "spans":
                    result = self.span_exporter.export(payload)
                else:
                    result = self.metric_exporter.export(payload)
                ok = getattr(result, "name", str(result)) == "SUCCESS"
                error = None if ok else "the collector refused or did not answer"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            with self.cond:
                if self.inflight is item:  # not already written off by a timed-out flush
                    if ok:
                        self.delivered[kind] += n
                        self.failing = False
                    else:
                        self.failing = True
                        self._drop(kind, n, error or "export failed")
                self.inflight = None
                self.cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while (self.queue or self.inflight) and not self.failing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.05))
            if not self.queue and not self.inflight:
                return True
            # undelivered at the deadline (or the collector already failed): written off, counted
            reason = "collector failing" if self.failing else f"not delivered within {timeout_s:.1f} s"
            for kind, _, n in self.queue:
                self._drop(kind, n, reason)
            self.queue.clear()
            self.queued = 0
            if self.inflight is not None:
                self._drop(self.inflight[0], self.inflight[2], reason)
                self.inflight = None
            return False

    def close(self, timeout_s: float) -> None:
        self.flush(timeout_s)
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        for exporter in (self.span_exporter, self.metric_exporter):
            if exporter is None:
                continue
            try:
                # the SDK's shutdown can wait for an export stuck on a dead collector: off this thread
                threading.Thread(target=exporter.shutdown, daemon=True).start()
            except Exception:
                pass


class OTLPSink:
    """An exporter sink (see :mod:`hermetry.recorder.sink`): traces and metrics over OTLP."""

    name = "otlp"

    def __init__(self, config: OTLPConfig | None = None, *, span_exporter: Any = None, metric_exporter: Any = None,
                 resource: Any = None) -> None:
        try:
            import opentelemetry.sdk  # noqa: F401
        except ImportError as exc:
            raise SinkDisabled("OpenTelemetry export needs: pip install 'hermetry[otlp]'") from exc
        self.config = config or OTLPConfig.from_env()
        self._sdk = _SDK(resource if resource is not None else default_resource())
        if self.config.traces and span_exporter is None:
            span_exporter = _span_exporter(self.config.traces_protocol)
        if self.config.metrics and metric_exporter is None:
            metric_exporter = _metric_exporter(self.config.metrics_protocol)
        self._mapper = genai.GenAIMapper()
        self._aggregator = genai.Aggregator(cumulative=self.config.cumulative)
        self._lock = threading.Lock()  # the aggregator: the writer thread and the heartbeat
        self._recorder_dropped = 0
        self._reported_undelivered = 0
        self._last_points = time.monotonic()
        self._stop = threading.Event()
        describe = getattr(span_exporter, "_endpoint", None) or getattr(metric_exporter, "_endpoint", None) or "OTLP"
        self._delivery = _Delivery(span_exporter if self.config.traces else None,
                                   metric_exporter if self.config.metrics else None,
                                   self.config.max_queued, str(describe))
        if self.config.cumulative and self.config.metrics:
            threading.Thread(target=self._heartbeat, name="hermetry-otlp-heartbeat", daemon=True).start()

    # -- the Sink protocol --

    def write(self, events: Sequence[Event], run: Mapping[str, Any] | None = None) -> int:
        spans, points = self._mapper.map(events)
        dropped = int((run or {}).get("events_dropped") or 0)
        if dropped > self._recorder_dropped:
            points.append(genai.Measurement(genai.DROPPED, dropped - self._recorder_dropped,
                                            ((genai.H_SINK, "recorder"),), time.time_ns()))
            self._recorder_dropped = dropped
        own = self.undelivered
        if own > self._reported_undelivered:  # our own drops, for when the collector is back
            points.append(genai.Measurement(genai.DROPPED, own - self._reported_undelivered,
                                            ((genai.H_SINK, self.name),), time.time_ns()))
            self._reported_undelivered = own
        self.send(spans, points)
        return len(events)

    def send(self, spans: Sequence[genai.SpanRecord], points: Sequence[genai.Measurement], *,
             block: bool = False) -> None:
        """Queue already-mapped records for delivery (``write`` and :func:`replay` use this)."""
        if spans and self.config.traces:
            self._delivery.put("spans", [self._sdk.span(r) for r in spans], len(spans), block=block)
        if points and self.config.metrics:
            with self._lock:
                series = self._aggregator.add(points)
                self._last_points = time.monotonic()
            if series:
                self._delivery.put("points", self._sdk.metrics(series, self.config.cumulative), len(series),
                                   block=block)

    def flush(self, timeout_s: float = 5.0) -> bool:
        return self._delivery.flush(min(timeout_s, self.config.flush_timeout_s))

    def close(self) -> None:
        try:
            spans, points = self._mapper.finish()  # what the mapper still held back (cron sessions)
            self.send(spans, points)
        except Exception:  # noqa: BLE001 - closing must never fail the run
            pass
        self._stop.set()
        self._delivery.close(self.config.flush_timeout_s)

    def _heartbeat(self) -> None:
        """Send the cumulative totals again after ``export_interval_s`` without new points, stamped
        now (a cumulative value holds until it changes)."""
        interval = self.config.export_interval_s
        while not self._stop.wait(interval):
            with self._lock:
                if time.monotonic() - self._last_points < interval:
                    continue
                series = self._aggregator.totals()
                now = time.time_ns()
                for s in series:
                    s.time_ns = max(s.time_ns, now)
            if series and not self._stop.is_set():
                self._delivery.put("points", self._sdk.metrics(series, True), len(series))

    # -- the ledger --

    def stats(self) -> dict[str, Any]:
        d = self._delivery
        return {"delivered_spans": d.delivered["spans"], "delivered_points": d.delivered["points"],
                "dropped_spans": d.dropped["spans"], "dropped_points": d.dropped["points"] + self._aggregator.dropped,
                "last_error": d.last_error, "endpoint": d.describe}

    @property
    def undelivered(self) -> int:
        """Spans and metric points counted as not delivered (the recorder shows this per exporter)."""
        s = self.stats()
        return int(s["dropped_spans"] + s["dropped_points"])


@dataclass(frozen=True)
class ReplayResult:
    """What ``hermetry export --otlp`` sent: events read, spans and points delivered or dropped."""

    events: int
    spans: int
    points: int
    dropped_spans: int
    dropped_points: int
    endpoint: str
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"schema": "hermetry.export_otlp.v1", **dataclasses.asdict(self)}


#: replayed metric points are cut into windows of this much event time (one point per series each)
REPLAY_WINDOW_MS = 60_000.0


def replay(events: Iterable[Event], sink: OTLPSink, *, flush_timeout_s: float = 60.0,
           progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Send recorded history through ``sink``: the same spans and metrics live capture sends, at the
    events' own times. Metric points are cut per minute of event time, so a backend draws the
    history as a time series rather than one point at the end."""
    mapper = sink._mapper
    window: list[Event] = []
    window_end: float | None = None
    n = 0

    def ship() -> None:
        spans, points = mapper.map(window)
        sink.send(spans, points, block=True)
        window.clear()

    for event in events:
        t = _event_time(event)
        if window and (len(window) >= 2_000 or (t is not None and window_end is not None and t >= window_end)):
            ship()
            window_end = None
        if window_end is None and t is not None:
            window_end = (t // REPLAY_WINDOW_MS + 1) * REPLAY_WINDOW_MS
        window.append(event)
        n += 1
        if progress is not None and n % 2_000 == 0:
            progress(n)
    if window:
        ship()
    spans, points = mapper.finish()
    sink.send(spans, points, block=True)
    sink._delivery.flush(flush_timeout_s)
    s = sink.stats()
    return ReplayResult(n, s["delivered_spans"], s["delivered_points"], s["dropped_spans"], s["dropped_points"],
                        s["endpoint"], s["last_error"])


def _event_time(event: Event) -> float | None:
    for name in ("ended_at_ms", "started_at_ms"):
        value = getattr(event, name, None)
        if isinstance(value, int | float):
            return float(value)
    return None


def sink_factory(settings: Mapping[str, Any] | None = None) -> Callable[[], OTLPSink]:
    """A factory the recorder calls on its writer thread (the SDK is imported there, not while
    Hermes starts)."""

    def make() -> OTLPSink:
        return OTLPSink(OTLPConfig.from_env(settings=settings))

    make.sink_name = "otlp"  # type: ignore[attr-defined]
    return make
