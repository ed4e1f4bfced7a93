"""The inter-step split format (data.jsonl + labels.json) and the statistics preprocess writes."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.datasets.jsonl import read_jsonl
from mlcore.datasets.labels import read_labels_file, resolve_labels
from mlcore.datasets.model import DatasetError, LabeledTexts, LoadReport

SPLIT_DATA_FILE = "data.jsonl"
SPLIT_LABELS_FILE = "labels.json"


def write_split(data: LabeledTexts, directory: str | Path) -> Path:
    """Write the inter-step format: data.jsonl (one {"text", "labels"} a line) + labels.json (label order)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    known = set(data.label_names)
    with open(directory / SPLIT_DATA_FILE, "w", encoding="utf-8", newline="\n") as fh:
        for text, labels in zip(data.texts, data.labels):
            unknown = [l for l in labels if l not in known]
            if unknown:
                raise DatasetError(f"labels {unknown} are not in the label list {data.label_names}")
            fh.write(json.dumps({"text": text, "labels": labels}, ensure_ascii=False) + "\n")
    (directory / SPLIT_LABELS_FILE).write_text(json.dumps({"labels": data.label_names}, ensure_ascii=False, indent=1),
                                               encoding="utf-8")
    return directory


def read_split(directory: str | Path) -> LabeledTexts:
    """Read a split written by preprocess (data.jsonl + labels.json), validating every row."""
    directory = Path(directory)
    data_file, labels_path = directory / SPLIT_DATA_FILE, directory / SPLIT_LABELS_FILE
    for needed in (data_file, labels_path):
        if not needed.is_file():
            raise DatasetError(f"no {needed.name} in {directory}",
                               hint="Point to a split directory written by preprocess (data.jsonl + labels.json)")
    names = read_labels_file(labels_path)
    report = LoadReport()
    source = read_jsonl(data_file, report, "text", "labels", dedupe=False)  # equal rows may be distinct samples
    if report.dropped:
        raise DatasetError(f"{report.rows_dropped} unusable row(s): {report.summary()}", data_file,
                           hint="Re-run preprocess: its output has no empty texts")
    if not source.rows:
        raise DatasetError("no rows", data_file, hint="Re-run preprocess; every split needs at least one row")
    splits, _ = resolve_labels({"split": source}, names, report, allow_ids=False)
    return splits["split"]


def text_length_stats(texts: Sequence[str]) -> dict:
    """Length statistics (characters and whitespace tokens): mean, p50, p95, max."""
    out = {}
    for unit, values in (("chars", [len(t) for t in texts]), ("tokens", [len(t.split()) for t in texts])):
        arr = np.asarray(values or [0])
        out[unit] = {"mean": round(float(arr.mean()), 2), "p50": float(np.percentile(arr, 50)),
                     "p95": float(np.percentile(arr, 95)), "max": int(arr.max())}
    return out


def statistics(splits: dict[str, LabeledTexts], report: LoadReport | None = None) -> dict:
    """Data statistics written by preprocess: rows and label counts per split, lengths, drops by reason."""
    out: dict[str, Any] = {"labels": next(iter(splits.values())).label_names, "splits": {}}
    for name, data in splits.items():
        counts = data.matrix().sum(axis=0) if len(data) else np.zeros(len(data.label_names))
        out["splits"][name] = {
            "rows": len(data),
            "label_counts": {l: int(c) for l, c in zip(data.label_names, counts)},
            "rows_without_labels": int(sum(1 for row in data.labels if not row)),
            "labels_per_row": round(float(np.mean([len(r) for r in data.labels])) if len(data) else 0.0, 3),
            "length": text_length_stats(data.texts),
        }
    if report is not None:
        out["dropped"] = dict(report.dropped)
        out["load_report"] = report.to_json()
    return out
