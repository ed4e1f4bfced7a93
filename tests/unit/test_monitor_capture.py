"""Reading SageMaker data capture: per-text ids, encodings, time windows, malformed lines counted."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from monitoring.capture import capture_files, hour_of_path, parse_capture_line, read_capture
from monitoring.synthetic import capture_line, capture_path, write_lines

LABELS = ["a", "b", "c"]
T0 = datetime(2024, 5, 1, 10, 15, tzinfo=timezone.utc)


def test_single_and_batch_requests_get_per_text_ids(tmp_path):
    probs = np.array([[0.9, 0.1, 0.6], [0.2, 0.7, 0.1]])
    path = capture_path(tmp_path, "ep", T0)
    write_lines(path, [
        capture_line("one text", probs[:1], LABELS, 0.5, T0, inference_id="req-1"),
        capture_line(["x", "yy"], probs, LABELS, 0.5, T0 + timedelta(minutes=1), inference_id="req-2"),
        capture_line("no id", probs[1:], LABELS, 0.5, T0 + timedelta(minutes=2), event_id="evt-3"),
    ])
    texts, stats, outside = read_capture(tmp_path)
    assert [t.inference_id for t in texts] == ["req-1", "req-2:0", "req-2:1", "evt-3"]
    assert [t.text for t in texts] == ["one text", "x", "yy", "no id"]
    assert texts[2].probabilities == {"a": 0.2, "b": 0.7, "c": 0.1}
    assert texts[2].predicted == ["b"] and texts[1].batch_size == 2
    assert (stats.files, stats.lines, stats.requests, stats.texts) == (1, 3, 3, 4)
    assert not stats.malformed and not outside
    assert hour_of_path(path) == T0.replace(minute=0)


def test_malformed_lines_are_counted_by_reason_with_location(tmp_path):
    good = capture_line("ok", np.array([[0.9, 0.1, 0.1]]), LABELS, 0.5, T0, inference_id="g")
    doc = json.loads(good)
    no_time = json.loads(good)
    del no_time["eventMetadata"]["inferenceTime"]
    mismatch = json.loads(good)
    mismatch["captureData"]["endpointInput"]["data"] = json.dumps({"inputs": ["a", "b"]})
    bad_b64 = json.loads(good)
    bad_b64["captureData"]["endpointOutput"].update(encoding="BASE64", data="%%%not base64")
    as_b64 = json.loads(good)
    as_b64["eventMetadata"]["inferenceId"] = "b64"
    out = as_b64["captureData"]["endpointOutput"]
    out.update(encoding="BASE64", data=base64.b64encode(out["data"].encode()).decode())
    path = tmp_path / "cap.jsonl"
    path.write_text("\n".join([good, "{not json", json.dumps(no_time), json.dumps(mismatch), json.dumps(bad_b64),
                               "", json.dumps(as_b64), json.dumps({"captureData": doc["captureData"]})]) + "\n")
    texts, stats, _ = read_capture(path)
    assert [t.inference_id for t in texts] == ["g", "b64"]
    assert stats.malformed == {"invalid_json": 1, "missing_field": 2, "count_mismatch": 1, "bad_encoding": 1}
    assert stats.lines == 7  # the blank line is not a record
    assert any(e.startswith(f"{path}:2: invalid_json") for e in stats.examples)
    assert any(e.startswith(f"{path}:4: count_mismatch") for e in stats.examples)


def test_time_window_filters_and_counts_outside(tmp_path):
    probs = np.array([[0.9, 0.1, 0.6]])
    for i in range(5):
        when = T0 + timedelta(hours=i)
        write_lines(capture_path(tmp_path, "ep", when), [capture_line(f"t{i}", probs, LABELS, 0.5, when, inference_id=f"r{i}")])
    assert len(capture_files(tmp_path)) == 5
    texts, stats, outside = read_capture(tmp_path, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert [t.inference_id for t in texts] == ["r1", "r2"]  # until is exclusive
    assert outside == {"r0", "r3", "r4"} and stats.outside_window == 3


def test_missing_capture_location_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="capture-dir"):
        read_capture(tmp_path / "nope")


def test_hf_pipeline_output_shape_is_accepted():
    line = json.loads(capture_line("t", np.array([[0.9, 0.1, 0.6]]), LABELS, 0.5, T0, inference_id="x"))
    line["captureData"]["endpointOutput"]["data"] = json.dumps([[{"label": "a", "score": 0.9}, {"label": "b", "score": 0.1}]])
    [text] = parse_capture_line(json.dumps(line))
    assert text.probabilities == {"a": 0.9, "b": 0.1} and text.predicted is None


def test_jsonlines_requests_are_flattened_in_order():
    line = json.loads(capture_line(["x"], np.array([[0.9, 0.1, 0.6]]), LABELS, 0.5, T0, inference_id="jl"))
    line["captureData"]["endpointInput"].update(
        observedContentType="application/jsonlines",
        data='{"inputs": ["first", "second"]}\n"third"\n')
    results = [{"labels": ["a"], "scores": {"a": 0.9, "b": 0.1, "c": 0.2}}] * 3
    line["captureData"]["endpointOutput"].update(
        observedContentType="application/jsonlines", data="".join(json.dumps(r) + "\n" for r in results))
    texts = parse_capture_line(json.dumps(line))
    assert [(t.inference_id, t.text) for t in texts] == [("jl:0", "first"), ("jl:1", "second"), ("jl:2", "third")]
    assert texts[0].probabilities == {"a": 0.9, "b": 0.1, "c": 0.2} and texts[0].predicted == ["a"]
