"""Ground truth: the three input formats, rejected lines, the store, and the merge policies."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from monitoring.capture import read_capture
from monitoring.config import MonitorConfig
from monitoring.ground_truth import (
    GroundTruth,
    GroundTruthError,
    load_ground_truth,
    parse_ground_truth,
    store_ground_truth,
)
from monitoring.merge import merge
from monitoring.synthetic import capture_line, capture_path, write_lines

LABELS = ["a", "b", "c"]
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)


def sm(inference_id: str, data) -> str:
    return json.dumps({"groundTruthData": {"data": json.dumps(data), "encoding": "JSON"},
                       "eventMetadata": {"eventId": inference_id}, "eventVersion": "0"})


def test_sagemaker_shape_and_simple_jsonl_mixed(tmp_path):
    path = tmp_path / "gt.jsonl"
    path.write_text("\n".join([
        sm("r1", ["a", "c"]), sm("r2", {"labels": ["b"]}), sm("r3", [1, 0, 1]),
        json.dumps({"inference_id": "r4", "labels": []}), json.dumps({"inferenceId": "r5", "labels": "b;a"}),
        "{broken", json.dumps({"labels": ["a"]}), sm("r6", [1, 0]), sm("r7", ["zz", "a"]),
    ]) + "\n")
    records, stats = parse_ground_truth(path, label_names=LABELS)
    got = {r.inference_id: r.labels for r in records}
    assert got == {"r1": ("a", "c"), "r2": ("b",), "r3": ("a", "c"), "r4": (), "r5": ("a", "b"), "r7": ("a", "zz")}
    assert stats.lines == 9 and stats.records == 6 and sum(stats.rejected.values()) == 3
    assert stats.unknown_labels == {"zz": 1}
    assert any(e.startswith(f"{path}:6: invalid_record: invalid JSON") for e in stats.examples)
    assert any(f"{path}:7:" in e and "no inference id" in e for e in stats.examples)
    assert any(f"{path}:8:" in e and "3 labels" in e for e in stats.examples)


def test_csv_with_duplicates_and_bad_header(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text('inference_id,labels\nr1,a;b\nr2,\nr1,a;b\nr3,"[""c""]"\n')
    records, stats = parse_ground_truth(path, label_names=LABELS)
    assert [(r.inference_id, r.labels) for r in records] == [("r1", ("a", "b")), ("r2", ()), ("r1", ("a", "b")), ("r3", ("c",))]
    assert stats.duplicate_ids == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("id_of_row,label\nr1,a\n")
    with pytest.raises(GroundTruthError, match=r"bad.csv:1: CSV header must name an id column"):
        parse_ground_truth(bad)
    with pytest.raises(GroundTruthError, match="empty"):
        (tmp_path / "empty.jsonl").write_text("\n")
        parse_ground_truth(tmp_path / "empty.jsonl")


def test_store_round_trip_keeps_received_hour(tmp_path):
    received = datetime(2024, 5, 2, 7, 41, tzinfo=timezone.utc)
    path = store_ground_truth([GroundTruth("r1", ("a",), None, "x"), GroundTruth("r2", (), None, "x")], tmp_path, received)
    assert path.parent == tmp_path / "2024" / "05" / "02" / "07"
    line = json.loads(path.read_text().splitlines()[0])
    assert set(line) == {"groundTruthData", "eventMetadata", "eventVersion"} and line["eventMetadata"]["eventId"] == "r1"
    records, _stats = load_ground_truth(tmp_path, LABELS)
    assert [(r.inference_id, r.labels, r.received) for r in records] == [
        ("r1", ("a",), received.replace(minute=0)), ("r2", (), received.replace(minute=0))]


def _captured(tmp_path, n: int = 8):
    probs = np.random.default_rng(0).random((n, 3))
    lines = [capture_line(f"text {i}", probs[i:i + 1], LABELS, 0.5, T0 + timedelta(minutes=i), inference_id=f"r{i}")
             for i in range(n)]
    lines.append(lines[0])  # the same request captured twice
    write_lines(capture_path(tmp_path / "cap", "ep", T0), lines)
    return read_capture(tmp_path / "cap", until=T0 + timedelta(minutes=6))


def gt(inference_id, labels, received_offset_h=1.0):
    return GroundTruth(inference_id, tuple(labels), T0 + timedelta(hours=received_offset_h), "test")


def test_merge_counts_missing_duplicate_late_unknown_unmatched(tmp_path):
    texts, _, outside = _captured(tmp_path)
    records = [
        gt("r0", ["a"]),
        gt("r1", ["b"]), gt("r1", ["b"], 2),                # identical duplicate -> kept once
        gt("r2", ["a"]), gt("r2", ["c"], 3),                # conflicting -> excluded by default
        gt("r3", ["a"], 30),                                 # late (> 24 h)
        gt("r4", ["zz"]),                                    # unknown label
        gt("r6", ["a"]),                                     # capture outside the window
        gt("nope", ["a"]),                                   # no such inference
    ]
    result = merge(texts, records, LABELS, MonitorConfig(), outside)
    c = result.counts
    assert result.labels == {"r0": ("a",), "r1": ("b",)}
    assert c["captured_texts"] == 6 and c["duplicate_capture_ids"] == 1
    assert c["labelled"] == 2 and c["missing_ground_truth"] == 1  # r5
    assert c["duplicate_identical"] == 1 and c["duplicate_conflicting_ids"] == 1 and c["excluded_conflicting"] == 1
    assert c["late"] == 1 and c["excluded_late"] == 1
    assert c["excluded_unknown_label"] == 1 and result.unknown_labels == {"zz": 1}
    assert c["ground_truth_outside_window"] == 1 and c["ground_truth_unmatched"] == 1
    assert c["ground_truth_records"] == len(records)
    assert result.examples["duplicate_conflicting"] == ["r2: a vs c"]


def test_merge_policies_latest_wins_and_late_included(tmp_path):
    texts, _, outside = _captured(tmp_path)
    records = [gt("r2", ["a"], 1), gt("r2", ["c"], 3), gt("r2", ["b"], 2), gt("r3", ["a"], 30)]
    result = merge(texts, records, LABELS, MonitorConfig(conflicting_labels="latest", include_late_labels=True), outside)
    assert result.labels == {"r2": ("c",), "r3": ("a",)}
    assert result.counts["late"] == 1 and result.counts["excluded_late"] == 0
    with pytest.raises(ValueError, match="conflicting_labels must be one of"):
        MonitorConfig(conflicting_labels="first")
