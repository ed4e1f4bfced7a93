"""The report's charts say what happened: a time axis that fits the data, lines that break where no data was
collected, one axis per unit, one line where two would coincide, buckets that fit the traffic; and the data
accounting lists each count once."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from monitoring import plots
from monitoring.operational import capture_throughput, nice_bucket
from monitoring.report import _accounting, _rates

T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)


def test_one_point_gets_an_axis_of_its_own_span_not_years():
    fig, ax = plt.subplots()
    plots._time_axis(ax, [T0 + timedelta(minutes=30)], timedelta(hours=1))  # one 1-hour window, at its middle
    low, high = ax.get_xlim()
    plt.close(fig)
    assert (mdates.num2date(low), mdates.num2date(high)) == (T0 - timedelta(minutes=30), T0 + timedelta(minutes=90))


def test_lines_break_where_no_data_was_collected():
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=40)]
    rows = capture_throughput(times, [1, 1, 1, 1], timedelta(minutes=1))
    marks = plots.gaps(rows, plots._times(rows), timedelta(minutes=1))
    assert marks == [False, False, False, True]  # buckets at 12:00, 12:01, 12:02, 12:40: idle in between
    xs, ys = plots.with_gaps(plots._times(rows), [r["Throughput"] for r in rows], marks)
    assert len(xs) == 5 and math.isnan(ys[3]) and xs[2] < xs[3] < xs[4]

    # scraped intervals: contiguous ones never break, a pause in scraping does
    server = [{"time": (T0 + timedelta(seconds=s)).isoformat(), "seconds": 5.0} for s in (5, 10, 15, 300)]
    assert plots.gaps(server, plots._times(server), timedelta(seconds=5)) == [False, False, False, True]
    uneven = [{"time": (T0 + timedelta(seconds=s)).isoformat(), "seconds": d} for s, d in ((5, 5), (6, 1), (30, 24))]
    assert plots.gaps(uneven, plots._times(uneven), timedelta(seconds=1)) == [False, False, False]


def test_requests_and_texts_per_second_share_one_axis_and_one_line_when_equal():
    single = capture_throughput([T0, T0 + timedelta(seconds=1)], [1, 1], timedelta(seconds=1))
    assert _rates(single) == [("Throughput", "requests/s (one text each)")]
    batched = capture_throughput([T0, T0 + timedelta(seconds=1)], [1, 4], timedelta(seconds=1))
    assert [key for key, _ in _rates(batched)] == ["Throughput", "TextsPerSecond"]


def test_panels_put_each_unit_on_its_own_axis(tmp_path):
    rows = [{"time": (T0 + timedelta(seconds=5 * i)).isoformat(), "seconds": 5.0, "LatencyP50": 2.0 + i,
             "LatencyP90": 4.0 + i, "LatencyP99": 9.0 + i, "CPUUtilization": 50.0, "MemoryRSS": 300.0}
            for i in range(1, 6)]
    seen = {}
    real = plt.subplots

    def spy(*args, **kwargs):
        fig, axes = real(*args, **kwargs)
        seen["axes"] = axes
        return fig, axes

    plt.subplots = spy
    try:
        plots.plot_panels(rows, [("latency (ms)", [("LatencyP50", "p50"), ("LatencyP90", "p90"), ("LatencyP99", "p99")]),
                                 ("memory RSS (MB)", [("MemoryRSS", "RSS")])], "t", tmp_path / "p.png")
    finally:
        plt.subplots = real
    latency, memory = seen["axes"][:, 0]
    assert len(latency.get_lines()) == 3 and len(memory.get_lines()) == 1  # p50/p90/p99 on one scale
    assert latency.get_ylim()[0] == 0 and latency.get_ylim()[1] > 14  # from zero, room above p99 = 14
    assert memory.get_ylim()[1] > 300  # the flat RSS line is not drawn on the frame
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_buckets_fit_the_span_of_the_traffic():
    assert nice_bucket([T0, T0 + timedelta(seconds=20)]) == timedelta(seconds=1)
    assert nice_bucket([T0, T0 + timedelta(hours=2)]) == timedelta(minutes=5)
    assert nice_bucket([T0, T0 + timedelta(days=1)]) == timedelta(hours=1)
    assert nice_bucket([]) == timedelta(seconds=1)


def test_data_accounting_lists_each_count_once():
    data = {"capture": {"files": 2, "lines": 10, "malformed_lines": 1, "texts": 12, "outside_window": 0,
                        "label_mismatch": 0, "served_predictions_differ": 0},
            "ground_truth": {"records": 9, "rejected_lines": 1, "merge": {"counts": {
                "captured_texts": 11, "ground_truth_records": 9, "labelled": 8, "duplicate_capture_ids": 1}}}}
    rows = _accounting(data)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names))
    assert "captured texts" not in names and "ground truth records" not in names  # = texts in window, records
    assert dict(rows)["duplicate capture ids"] == 1 and dict(rows)["ground-truth records"] == 9
