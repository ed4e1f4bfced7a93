"""Prometheus metrics of the model server: requests, errors, latency, batch sizes, CPU, memory."""
from __future__ import annotations

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """One registry per server; CPU and memory are read from psutil at scrape time."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("mlops_requests", "Invocation requests by status code", ["route", "status"],
                                registry=self.registry)
        self.errors = Counter("mlops_request_errors", "Invocation requests answered with an error status",
                              ["route", "status"], registry=self.registry)
        self.latency = Histogram("mlops_request_latency_seconds", "Invocation latency in the server",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("mlops_batch_size", "Texts per model call (after dynamic batching)",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_retries = Counter("mlops_batch_retries", "Batched model calls that raised, after which each "
                                     "request of the batch was predicted alone", registry=self.registry)
        self.texts_per_request = Histogram("mlops_texts_per_request", "Texts per invocation request",
                                           buckets=BATCH_BUCKETS, registry=self.registry)
        self.cpu = Gauge("mlops_process_cpu_percent", "CPU use of the server process since the last scrape",
                         registry=self.registry)
        self.rss = Gauge("mlops_process_resident_memory_bytes", "Resident memory of the server process",
                         registry=self.registry)
        self.capture_dropped = Gauge("mlops_capture_dropped", "Capture records dropped (queue full)",
                                     registry=self.registry)
        self.capture_written = Gauge("mlops_capture_written", "Capture records written", registry=self.registry)
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self._capture = None

    def attach_capture(self, capture) -> None:
        self._capture = capture

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        self.cpu.set(self._process.cpu_percent(None))
        self.rss.set(self._process.memory_info().rss)
        if self._capture is not None:
            self.capture_dropped.set(self._capture.dropped)
            self.capture_written.set(self._capture.written)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
