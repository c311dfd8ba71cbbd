"""Prometheus metrics, one registry per kernel so tests and processes never share state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from kunde.ops.degradation import DatabaseHealth
from kunde.ops.history import BOUNDS, LoadHistory
from kunde.ops.models import CLASSES, Admission

if TYPE_CHECKING:
    from kunde.store.consumers import ConsumerRunner

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_latency = Histogram(
            "kunde_http_request_duration_seconds", "HTTP request latency by route",
            ["route", "method", "status"], buckets=BUCKETS, registry=self.registry,
        )
        self.events_total = Gauge(
            "kunde_events_total", "Position of the newest event in the log",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "kunde_consumer_lag_events", "Events a consumer has not handled yet",
            ["consumer"], registry=self.registry,
        )
        self.consumer_processed = Counter(
            "kunde_consumer_processed_events", "Events handled by consumers in this process",
            ["consumer"], registry=self.registry,
        )
        self.runner: ConsumerRunner | None = None
        # Admission control and the last hour of load, per process (kunde.ops.admission).
        self.admission = Admission()
        self.history = LoadHistory()
        self.database = DatabaseHealth()
        self.registry.register(LoadCollector(self))


class LoadCollector(Collector):
    """Exposes the running totals of `LoadHistory`: the operations page's figures."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily
                                  | HistogramMetricFamily]:
        h, a = self.m.history, self.m.admission
        requests = CounterMetricFamily(
            "kunde_admission_requests", "Requests by load class and admission outcome",
            labels=["criticality", "outcome"])
        errors = CounterMetricFamily(
            "kunde_admission_errors", "Admitted requests answered with a 5xx, by load class",
            labels=["criticality"])
        latency = HistogramMetricFamily(
            "kunde_admission_latency_seconds", "Latency of admitted requests by load class",
            labels=["criticality"])
        for c in CLASSES:
            requests.add_metric([c.label, "admitted"], h.total_admitted[c])
            requests.add_metric([c.label, "shed"], h.total_shed[c])
            errors.add_metric([c.label], h.total_errors[c])
            cumulative, buckets = 0, []
            for bound, n in zip([*map(str, BOUNDS), "+Inf"], h.total_hist[c], strict=True):
                cumulative += n
                buckets.append((bound, float(cumulative)))
            latency.add_metric([c.label], buckets, h.total_latency[c])
        yield requests
        yield errors
        yield latency
        yield GaugeMetricFamily("kunde_admission_limit", "Adaptive concurrency limit",
                                value=a.limit)
        yield GaugeMetricFamily("kunde_admission_inflight", "Requests in flight",
                                value=a.inflight)
        yield GaugeMetricFamily("kunde_database_up", "1 when the database answers probes",
                                value=1.0 if self.m.database.up else 0.0)
