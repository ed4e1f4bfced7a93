"""Operational metrics: scrape the model server's Prometheus /metrics into latency percentiles,
throughput, CPU and memory over time; throughput from capture timestamps; CloudWatch EMF lines.

Families are found by name (configurable in `MetricNames`): a latency histogram, a request
counter, a batch-size histogram, and the standard process_cpu_seconds_total /
process_resident_memory_bytes of prometheus_client.
"""
from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from prometheus_client.parser import text_string_to_metric_families

from monitoring.config import iso

QUANTILES = (0.5, 0.9, 0.99)
EMF_NAMESPACE = "BertMultilabel/Endpoint"
# CloudWatch units of the EMF metrics we publish.
UNITS = {
    "LatencyP50": "Milliseconds", "LatencyP90": "Milliseconds", "LatencyP99": "Milliseconds",
    "Throughput": "Count/Second", "TextsPerSecond": "Count/Second", "Requests": "Count", "Errors": "Count",
    "CPUUtilization": "Percent", "MemoryRSS": "Megabytes", "MeanBatchSize": "None",
}


class ScrapeError(RuntimeError):
    """The metrics endpoint did not answer or answered something that is not Prometheus text."""


@dataclass
class MetricNames:
    """Substrings that pick the server's metric families (first match wins)."""

    latency: tuple[str, ...] = ("request_latency_seconds", "request_duration_seconds", "latency_seconds", "latency")
    requests: tuple[str, ...] = ("mlops_requests", "requests", "request_count")
    batch: tuple[str, ...] = ("batch_size", "batch")
    texts: tuple[str, ...] = ("texts_per_request",)
    cpu_seconds: str = "process_cpu_seconds_total"  # prometheus_client's process collector (a counter)
    cpu_percent: str = "process_cpu_percent"  # inference/metrics.py: CPU % since the last scrape (a gauge)
    rss: str = "process_resident_memory_bytes"


@dataclass
class Snapshot:
    """One scrape, reduced to what the operational charts need."""

    time: float
    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> cumulative count
    latency_sum: float = 0.0
    latency_count: float = 0.0
    batch_sum: float = 0.0
    batch_count: float = 0.0
    texts: float | None = None
    cpu_seconds: float | None = None
    cpu_percent: float | None = None
    rss_bytes: float | None = None

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["latency_buckets"] = {("+Inf" if math.isinf(k) else repr(k)): v for k, v in self.latency_buckets.items()}
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "Snapshot":
        doc = dict(doc)
        doc["latency_buckets"] = {float(k): float(v) for k, v in doc.get("latency_buckets", {}).items()}
        return cls(**doc)


def _pick(families: dict[str, Any], needles: Iterable[str], kind: str) -> Any | None:
    for needle in needles:
        for name, family in families.items():
            if needle in name and family.type == kind:
                return family
    return None


def parse_metrics(text: str, when: float | None = None, names: MetricNames | None = None) -> Snapshot:
    """Reduce Prometheus exposition text to a Snapshot (request counts, latency buckets, CPU, RSS)."""
    names = names or MetricNames()
    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except Exception as exc:  # the parser raises bare ValueError/IndexError on garbage
        raise ScrapeError(f"not Prometheus text format: {exc}") from None
    snap = Snapshot(time=time.time() if when is None else when)
    latency = _pick(families, names.latency, "histogram")
    if latency is not None:
        _read_latency(snap, latency)
    counter = _pick(families, names.requests, "counter")
    if counter is not None:
        _read_requests(snap, counter)
    elif latency is not None:
        snap.requests = snap.latency_count
    batch = _pick(families, names.batch, "histogram")
    if batch is not None:
        snap.batch_sum, snap.batch_count = _total(batch, "_sum"), _total(batch, "_count")
    texts = _pick(families, names.texts, "histogram")
    if texts is not None:
        snap.texts = _total(texts, "_sum")
    _read_process(snap, families, names)
    return snap


def _total(family: Any, suffix: str) -> float:
    return sum(s.value for s in family.samples if s.name.endswith(suffix))


def _read_latency(snap: Snapshot, family: Any) -> None:
    """Cumulative latency buckets (summed over routes), their sum and count."""
    buckets: Counter = Counter()
    for s in family.samples:
        if s.name.endswith("_bucket"):
            buckets[float(s.labels["le"])] += s.value
        elif s.name.endswith("_sum"):
            snap.latency_sum += s.value
        elif s.name.endswith("_count"):
            snap.latency_count += s.value
    snap.latency_buckets = dict(sorted(buckets.items()))


def _read_requests(snap: Snapshot, family: Any) -> None:
    """Requests, and errors (a 4xx or 5xx status/code label) among them."""
    for s in family.samples:
        if s.name.endswith("_total"):
            snap.requests += s.value
            code = str(s.labels.get("status", s.labels.get("code", "")))
            if code[:1] in ("4", "5"):
                snap.errors += s.value


def _read_process(snap: Snapshot, families: dict[str, Any], names: MetricNames) -> None:
    """The process's CPU seconds, CPU percent and resident memory, wherever they are exposed."""
    for family in families.values():
        for s in family.samples:
            if s.name.endswith(names.cpu_seconds):
                snap.cpu_seconds = s.value
            elif s.name.endswith(names.cpu_percent):
                snap.cpu_percent = s.value
            elif s.name.endswith(names.rss):
                snap.rss_bytes = s.value


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly in its bucket (as PromQL does)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # above the largest finite bucket: its bound is the best estimate
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def interval(prev: Snapshot, cur: Snapshot) -> dict[str, Any]:
    """Metrics of the interval between two scrapes: latency percentiles (ms), throughput, CPU %, RSS MB."""
    dt = cur.time - prev.time
    if dt <= 0:
        raise ValueError("snapshots must be in time order")
    reset = cur.requests < prev.requests or cur.latency_count < prev.latency_count
    base = Snapshot(time=prev.time) if reset else prev  # a restarted server starts its counters at zero
    buckets = {b: cur.latency_buckets.get(b, 0.0) - base.latency_buckets.get(b, 0.0) for b in cur.latency_buckets}
    requests = cur.requests - base.requests
    out: dict[str, Any] = {"time": iso(datetime.fromtimestamp(cur.time, timezone.utc)), "seconds": round(dt, 3),
                           "Requests": requests, "Errors": cur.errors - base.errors,
                           "Throughput": round(requests / dt, 4), "counter_reset": reset}
    batches = cur.batch_count - base.batch_count
    out["MeanBatchSize"] = round((cur.batch_sum - base.batch_sum) / batches, 3) if batches > 0 else None
    if cur.texts is not None:  # texts per request histogram: every text sent
        out["TextsPerSecond"] = round((cur.texts - (base.texts or 0.0)) / dt, 4)
    else:  # else the model-call batch sizes add up to the same texts
        out["TextsPerSecond"] = round((cur.batch_sum - base.batch_sum) / dt, 4) if batches > 0 else None
    for q in QUANTILES:
        value = histogram_quantile(q, buckets)
        out[f"LatencyP{round(q * 100)}"] = None if value is None else round(value * 1000, 3)
    if cur.cpu_percent is not None:  # the server measured CPU % since its previous scrape
        out["CPUUtilization"] = round(cur.cpu_percent, 2)
    elif cur.cpu_seconds is not None and prev.cpu_seconds is not None and not reset:
        out["CPUUtilization"] = round(100.0 * (cur.cpu_seconds - prev.cpu_seconds) / dt, 2)
    else:
        out["CPUUtilization"] = None
    out["MemoryRSS"] = round(cur.rss_bytes / 2**20, 2) if cur.rss_bytes is not None else None
    return out


def scrape(url: str, timeout: float = 5.0, names: MetricNames | None = None) -> Snapshot:
    """GET the /metrics URL and parse it."""
    if not url.startswith(("http://", "https://")):
        raise ScrapeError(f"metrics URL must start with http:// or https://, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise ScrapeError(f"cannot scrape {url}: {exc} (is the model server running?)") from None
    return parse_metrics(body, names=names)


def sample(url: str, out_path: str | Path, interval_s: float, count: int,
           sleep: Callable[[float], None] = time.sleep, progress: bool = False) -> list[dict]:
    """Scrape `count` times, `interval_s` apart; append snapshots to out_path (JSONL); returns the intervals."""
    if count < 2:
        raise ValueError("count must be >= 2 (an interval needs two scrapes)")
    if interval_s <= 0:
        raise ValueError("interval must be > 0 seconds")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    steps: Iterable[int] = range(count)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="scrape", unit="scrape")
    snaps = []
    with open(out_path, "a", encoding="utf-8") as fh:
        for i in steps:
            if i:
                sleep(interval_s)
            snap = scrape(url)
            snaps.append(snap)
            fh.write(json.dumps({"url": url, **snap.to_dict()}) + "\n")
            fh.flush()
    return [interval(a, b) for a, b in zip(snaps, snaps[1:])]


def load_series(path: str | Path) -> list[dict]:
    """Intervals between consecutive snapshots stored by `sample` (per URL, in time order)."""
    series = []
    for snaps in load_snapshots(path).values():
        series.extend(interval(a, b) for a, b in zip(snaps, snaps[1:]) if b.time > a.time)
    return sorted(series, key=lambda r: r["time"])


NICE_BUCKETS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)


def nice_bucket(times: Sequence[datetime], max_buckets: int = 60) -> timedelta:
    """The smallest of 1 s, 5 s, ... 1 d that cuts the span of `times` into at most `max_buckets` buckets: a
    20-second demo gets 1-second buckets, a day of traffic 1-hour ones."""
    span = (max(times) - min(times)).total_seconds() if times else 0.0
    return timedelta(seconds=next((b for b in NICE_BUCKETS_S if span / b <= max_buckets), NICE_BUCKETS_S[-1]))


def capture_throughput(times: Sequence[datetime], batch_sizes: Sequence[int], bucket: timedelta) -> list[dict]:
    """Requests and texts per second in fixed buckets, from capture inference times."""
    if not times:
        return []
    step = bucket.total_seconds()
    counts: dict[float, list[int]] = {}
    for t, b in zip(times, batch_sizes):
        key = math.floor(t.timestamp() / step) * step
        entry = counts.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += b
    return [{"time": iso(datetime.fromtimestamp(k, timezone.utc)), "requests": r, "texts": n,
             "Throughput": round(r / step, 6), "TextsPerSecond": round(n / step, 6)}
            for k, (r, n) in sorted(counts.items())]


def to_emf(metrics: dict[str, Any], dimensions: dict[str, str], timestamp: datetime | float | None = None,
           namespace: str = EMF_NAMESPACE) -> dict:
    """One CloudWatch Embedded Metric Format document (numeric, known metrics only; None values left out)."""
    if not dimensions or not all(isinstance(v, str) and v for v in dimensions.values()):
        raise ValueError("EMF needs at least one dimension with a non-empty string value (e.g. EndpointName)")
    if isinstance(timestamp, datetime):
        ms = int(timestamp.timestamp() * 1000)
    else:
        ms = int((time.time() if timestamp is None else timestamp) * 1000)
    values = {k: float(v) for k, v in metrics.items()
              if k in UNITS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    if not values:
        raise ValueError(f"no publishable metric among {sorted(metrics)}; known: {sorted(UNITS)}")
    return {
        "_aws": {"Timestamp": ms, "CloudWatchMetrics": [{
            "Namespace": namespace, "Dimensions": [sorted(dimensions)],
            "Metrics": [{"Name": k, "Unit": UNITS[k]} for k in values],
        }]},
        **dimensions, **values,
    }


def emf_lines(series: Iterable[dict], dimensions: dict[str, str], namespace: str = EMF_NAMESPACE) -> list[str]:
    """EMF JSON lines for interval rows (their 'time' becomes the timestamp); rows with no value are skipped."""
    lines = []
    for row in series:
        when = datetime.fromisoformat(row["time"].replace("Z", "+00:00")) if row.get("time") else None
        try:
            lines.append(json.dumps(to_emf(row, dimensions, when, namespace), separators=(",", ":")))
        except ValueError:
            continue
    return lines


def load_snapshots(path: str | Path) -> dict[str, list[Snapshot]]:
    """Stored snapshots by URL, each list in time order."""
    path = Path(path)
    by_url: dict[str, list[Snapshot]] = {}
    if not path.is_file():
        return by_url
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            by_url.setdefault(doc.pop("url", ""), []).append(Snapshot.from_dict(doc))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a snapshot ({exc})") from None
    for snaps in by_url.values():
        snaps.sort(key=lambda s: s.time)
    return by_url


def period_latency(snapshots: dict[str, list[Snapshot]]) -> dict[str, Any]:
    """Latency histogram and p50/p90/p99 (ms) over the whole sampled period (last minus first scrape)."""
    total: Counter = Counter()
    for snaps in snapshots.values():
        if not snaps:
            continue
        first, last = snaps[0], snaps[-1]
        reset = last.latency_count < first.latency_count or len(snaps) == 1
        for bound, count in last.latency_buckets.items():
            total[bound] += count - (0.0 if reset else first.latency_buckets.get(bound, 0.0))
    buckets = dict(sorted(total.items()))
    out: dict[str, Any] = {"buckets": buckets, "requests": buckets[max(buckets)] if buckets else 0}
    for q in QUANTILES:
        value = histogram_quantile(q, buckets)
        out[f"LatencyP{round(q * 100)}"] = None if value is None else round(value * 1000, 3)
    return out
