"""Operational metrics: Prometheus parsing over real HTTP, percentiles, CPU/RSS, and the EMF shape."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from inference.metrics import ServerMetrics
from monitoring import operational as op

PORT = 18511
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _registry():
    reg = CollectorRegistry()
    latency = Histogram("model_request_latency_seconds", "latency", ["route"], buckets=BUCKETS, registry=reg)
    requests = Counter("model_requests", "requests", ["route", "status"], registry=reg)
    batch = Histogram("model_batch_size", "texts per request", buckets=(1, 2, 4, 8, 16, 32), registry=reg)
    cpu = Gauge("process_cpu_seconds_total", "cpu", registry=reg)
    rss = Gauge("process_resident_memory_bytes", "rss", registry=reg)
    return reg, latency, requests, batch, cpu, rss


def test_parse_and_interval_quantiles_match_observations():
    reg, latency, requests, batch, cpu, rss = _registry()
    rng = np.random.default_rng(0)
    first = rng.uniform(0.001, 0.02, 200)
    for v in first:
        latency.labels("/invocations").observe(v)
        requests.labels("/invocations", "200").inc()
        batch.observe(4)
    cpu.set(10.0)
    rss.set(300 * 2**20)
    a = op.parse_metrics(generate_latest(reg).decode(), when=100.0)
    second = rng.uniform(0.06, 0.09, 300)  # the next interval is slower
    for v in second:
        latency.labels("/invocations").observe(v)
        requests.labels("/invocations", "200").inc()
        batch.observe(8)
    for _ in range(5):
        requests.labels("/invocations", "500").inc()
    cpu.set(25.0)
    rss.set(320 * 2**20)
    b = op.parse_metrics(generate_latest(reg).decode(), when=110.0)
    assert a.requests == 200 and b.requests == 505 and b.errors == 5
    row = op.interval(a, b)
    assert row["Requests"] == 305 and row["Throughput"] == pytest.approx(30.5)
    assert row["Errors"] == 5
    assert row["CPUUtilization"] == pytest.approx(150.0) and row["MemoryRSS"] == pytest.approx(320.0)
    assert row["MeanBatchSize"] == pytest.approx(8.0) and row["TextsPerSecond"] == pytest.approx(240.0)
    # Only the second interval's observations count, all inside the (0.05, 0.1] bucket.
    for key in ("LatencyP50", "LatencyP90", "LatencyP99"):
        assert 50.0 < row[key] <= 100.0
    assert row["LatencyP50"] < row["LatencyP90"] < row["LatencyP99"]


def test_histogram_quantile_interpolates_like_promql():
    buckets = {0.1: 10.0, 0.2: 30.0, float("inf"): 40.0}
    assert op.histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert op.histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert op.histogram_quantile(0.99, buckets) == pytest.approx(0.2)  # beyond the last finite bucket
    assert op.histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_counter_reset_after_restart_is_not_negative():
    before = op.Snapshot(time=0, requests=500, latency_buckets={0.1: 500, float("inf"): 500}, latency_count=500, cpu_seconds=50)
    after = op.Snapshot(time=10, requests=20, latency_buckets={0.1: 20, float("inf"): 20}, latency_count=20, cpu_seconds=1)
    row = op.interval(before, after)
    assert row["counter_reset"] and row["Requests"] == 20 and row["CPUUtilization"] is None


def test_scrape_real_http_endpoint_and_store_series(tmp_path):
    reg, latency, requests, *_ = _registry()
    server, _thread = start_http_server(PORT, addr="127.0.0.1", registry=reg)
    try:
        def traffic(_seconds):
            for _ in range(7):
                latency.labels("/invocations").observe(0.02)
                requests.labels("/invocations", "200").inc()
        rows = op.sample(f"http://127.0.0.1:{PORT}/metrics", tmp_path / "ops.jsonl", 0.01, 3, sleep=traffic)
    finally:
        server.shutdown()
        server.server_close()
    assert [r["Requests"] for r in rows] == [7, 7]
    assert all(10.0 < r["LatencyP50"] <= 25.0 for r in rows)
    assert [r["Requests"] for r in op.load_series(tmp_path / "ops.jsonl")] == [7, 7]
    period = op.period_latency(op.load_snapshots(tmp_path / "ops.jsonl"))
    assert period["requests"] == 14
    with pytest.raises(op.ScrapeError, match="is the model server running"):
        op.scrape(f"http://127.0.0.1:{PORT}/metrics", timeout=1)
    with pytest.raises(op.ScrapeError, match="must start with http"):
        op.scrape("localhost:1/metrics")


def test_emf_document_follows_the_cloudwatch_specification():
    when = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    doc = op.to_emf({"LatencyP50": 12.5, "LatencyP99": None, "Throughput": 3, "CPUUtilization": 55.0,
                     "counter_reset": False, "time": "x"}, {"EndpointName": "bert-mlc"}, when)
    meta = doc["_aws"]
    assert meta["Timestamp"] == int(when.timestamp() * 1000)
    [directive] = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == op.EMF_NAMESPACE and directive["Dimensions"] == [["EndpointName"]]
    names = [m["Name"] for m in directive["Metrics"]]
    assert names == ["LatencyP50", "Throughput", "CPUUtilization"]  # None and non-metrics are left out
    assert {m["Unit"] for m in directive["Metrics"]} == {"Milliseconds", "Count/Second", "Percent"}
    for name in names + ["EndpointName"]:
        assert name in doc  # every metric and dimension is a root member, as EMF requires
    assert all(isinstance(doc[n], float) for n in names)
    with pytest.raises(ValueError, match="dimension"):
        op.to_emf({"Throughput": 1}, {})
    series = op.capture_throughput([when, when + timedelta(seconds=5), when + timedelta(seconds=70)], [1, 4, 2], timedelta(minutes=1))
    assert [(r["requests"], r["texts"]) for r in series] == [(2, 5), (1, 2)]
    lines = [json.loads(l) for l in op.emf_lines(series, {"EndpointName": "e"})]
    assert [l["TextsPerSecond"] for l in lines] == pytest.approx([5 / 60, 2 / 60], abs=1e-6)


def test_reads_the_model_servers_own_metrics():
    server = ServerMetrics()
    a = op.parse_metrics(server.render()[0].decode(), when=0.0)
    for status, seconds in ((200, 0.004), (200, 0.012), (400, 0.001)):
        server.observe_request("/invocations", status, seconds)
    server.texts_per_request.observe(5)
    server.texts_per_request.observe(3)
    server.batch_size.observe(8)
    b = op.parse_metrics(server.render()[0].decode(), when=2.0)
    assert (b.requests, b.errors, b.latency_count) == (3, 1, 3)
    assert b.rss_bytes > 10 * 2**20 and b.cpu_percent is not None
    row = op.interval(a, b)
    assert row["Throughput"] == 1.5 and row["TextsPerSecond"] == 4.0 and row["MeanBatchSize"] == 8.0
    assert 3.0 <= row["LatencyP50"] <= 5.0 and row["MemoryRSS"] > 10
