"""``hermetry metrics serve``: a Prometheus ``/metrics`` endpoint over the shared telemetry file.

A thin view over :class:`hermetry.analytics.metrics.MetricFold`: a ``prometheus-client`` custom
collector turns each cumulative series into a counter, gauge or histogram family. The names are
the OTLP exporter's after the standard OpenTelemetry → Prometheus translation
(:func:`hermetry.sinks.genai.prometheus_name`: ``gen_ai.client.operation.duration`` →
``gen_ai_client_operation_duration_seconds``, ``hermetry.api_calls`` → ``hermetry_api_calls_total``,
the up-down counter ``hermetry.turns`` → the gauge ``hermetry_turns``, attribute
``gen_ai.request.model`` → label ``gen_ai_request_model``). Besides them, the endpoint's own
health: :data:`HEALTH` (``hermetry_store_up`` …). docs/prometheus.md.

Listens on 127.0.0.1 unless told otherwise. Needs ``pip install 'hermetry[prometheus]'``.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hermetry.analytics.metrics import MetricFold, MetricSnapshot
from hermetry.sinks import genai
from hermetry.stores.reader import Db
from hermetry.stores.rollup_refresh import EVERY_S, RollupRefresher

#: The provisionable Grafana dashboard (docs/grafana.md): ``hermetry metrics grafana`` prints it.
GRAFANA_DASHBOARD = Path(__file__).parent / "grafana" / "hermetry.json"

log = logging.getLogger(__name__)

#: A fresh pass starts no sooner than this many times the last pass took after it (docs/prometheus.md):
#: the endpoint spends at most ~1/(1+BACKOFF) of one core folding the history, however big it is.
BACKOFF = 4.0

DEFAULT_PORT = 9464  # the port OpenTelemetry's Prometheus exporter uses by default
MISSING = "the Prometheus endpoint needs prometheus-client: pip install 'hermetry[prometheus]'"

#: The endpoint's own series (not OpenTelemetry instruments: they describe this reader, not Hermes).
HEALTH = (
    ("hermetry_store_up", "1 when the last pass read the telemetry file (or it does not exist yet: an empty "
                          "history); 0 when it failed — every other figure is then the last good one"),
    ("hermetry_store_read_timestamp_seconds", "when the figures served were read from the file (Unix time)"),
    ("hermetry_metrics_pass_seconds", "how long the last successful pass over the file took"),
    ("hermetry_metrics_pass_rows", "model and tool calls the last successful pass read (new rows only, "
                                   "or the whole history after a rewrite)"),
)


class MetricsUnavailable(Exception):
    """prometheus-client is not installed, or the telemetry file cannot be served."""


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MetricsUnavailable(MISSING) from exc
    return prometheus_client


class TelemetryCollector:
    """A ``prometheus_client`` collector computing every family from the telemetry file.

    The first scrape computes the series; later scrapes are answered at once from the last
    snapshot while a background thread computes a fresh one (at most one at a time, at most every
    ``min_interval_s`` and at most every :data:`BACKOFF` × the last pass's duration) — so a scrape
    never waits for a large history to be folded again, and the figures lag the file by about one
    computation (docs/prometheus.md has the measured cost). A pass that fails (the file became
    unreadable) logs one line and the last good snapshot keeps being served."""

    def __init__(self, db: Db, *, min_interval_s: float = 1.0, keep_rollups: bool = False) -> None:
        self.db = db
        self.fold = MetricFold(db)
        #: with ``keep_rollups`` (``metrics serve``: long-lived, may write) every scrape kicks a
        #: rebuild of the file's dirty rollup hours, in a thread of its own, at most every minute —
        #: the series are folded from raw rows, but every report elsewhere stays fast
        self.rollups = RollupRefresher(db, name="hermetry-metrics-rollups",
                                       every_s=EVERY_S if keep_rollups else math.inf)
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._cached: tuple[float, MetricSnapshot] | None = None
        self._refreshing = False
        self.failing: str | None = None  # the last pass's error, said once until a pass succeeds

    def snapshot(self) -> MetricSnapshot:
        self.rollups.kick()  # returns at once (see keep_rollups)
        with self._lock:
            cached = self._cached
            wait = max(self.min_interval_s, BACKOFF * cached[1].compute_ms / 1000) if cached is not None else 0.0
            if cached is not None and (self._refreshing or time.monotonic() - cached[0] < wait):
                return cached[1]
            if cached is not None:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="hermetry-metrics", daemon=True).start()
                return cached[1]
        fresh = self.fold.update()
        with self._lock:
            self._cached = (time.monotonic(), fresh)
        return fresh

    def _refresh(self) -> None:
        try:
            fresh = self.fold.update()
            with self._lock:
                self._cached = (time.monotonic(), fresh)
                self.failing = None
        except Exception as exc:  # noqa: BLE001 - one line, the last good snapshot stays served
            message = f"{type(exc).__name__}: {exc}"
            if message != self.failing:
                print(f"hermetry metrics: reading {self.db} failed ({message}); serving the last good figures",
                      file=sys.stderr, flush=True)
            with self._lock:
                self.failing = message
                assert self._cached is not None
                self._cached = (time.monotonic(), self._cached[1])  # retry after the usual wait
        finally:
            self._refreshing = False

    def describe(self) -> list[Any]:
        return []  # registering must not read the file

    def collect(self) -> Iterator[Any]:
        snapshot = self.snapshot()
        yield from families(snapshot)
        yield from health_families(snapshot, up=self.failing is None)


def health_families(snapshot: MetricSnapshot, *, up: bool) -> list[Any]:
    """:data:`HEALTH`: is the file readable, and how fresh and costly the figures are."""
    from prometheus_client.core import GaugeMetricFamily

    values = (1.0 if up else 0.0, snapshot.computed_at_ms / 1000, snapshot.compute_ms / 1000, float(snapshot.events))
    return [GaugeMetricFamily(name, doc, value=v) for (name, doc), v in zip(HEALTH, values, strict=True)]


def families(snapshot: MetricSnapshot) -> list[Any]:
    """The snapshot's series as prometheus-client metric families (one per instrument)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    by_metric: dict[str, list[genai.Series]] = {}
    for s in snapshot.series:
        by_metric.setdefault(s.metric.name, []).append(s)
    out: list[Any] = []
    for metric in genai.METRICS:
        group = by_metric.get(metric.name)
        if not group:
            continue
        keys = sorted({k for s in group for k, _ in s.attributes})
        labels = [genai.prometheus_label(k) for k in keys]
        name = genai.prometheus_name(metric)
        doc = f"{metric.description} (OpenTelemetry: {metric.name}, unit {metric.unit})"
        family: Any
        if metric.kind == "counter":
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
        elif metric.kind == "updowncounter":
            family = GaugeMetricFamily(name, doc, labels=labels)
        else:
            family = HistogramMetricFamily(name, doc, labels=labels)
        for s in group:
            attrs = dict(s.attributes)
            values = ["" if attrs.get(k) is None else str(attrs[k]) for k in keys]
            if metric.kind != "histogram":
                family.add_metric(values, s.sum)
            else:
                running, buckets = 0, []
                for bound, n in zip(metric.boundaries, s.bucket_counts or (), strict=False):
                    running += n
                    buckets.append((floatToGoString(bound), running))
                buckets.append(("+Inf", s.count))
                family.add_metric(values, buckets, s.sum)
        out.append(family)
    return out


def exposition(db: Db) -> str:
    """The ``/metrics`` page for ``db``, once (Prometheus text format 0.0.4)."""
    client = _client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(db, min_interval_s=0))
    return str(client.generate_latest(registry).decode())


class MetricsServer:
    """The endpoint, running in this process until :meth:`close` (or forever in ``serve``)."""

    def __init__(self, db: Db, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        client = _client()
        if isinstance(db, str) and "://" in db:
            raise MetricsUnavailable(f"{db.split('://')[0]} stores are not served yet: point --db at a SQLite file")
        self.registry = client.CollectorRegistry(auto_describe=False)
        self.collector = TelemetryCollector(Path(db) if isinstance(db, str) else db, keep_rollups=True)
        self.collector.snapshot()  # a broken file is said at start (StoreError), not per scrape
        self.registry.register(self.collector)
        self._server, self._thread = client.start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port = int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
