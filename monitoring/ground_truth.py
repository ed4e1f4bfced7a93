"""Ground truth keyed by inference id: parse user files, store them SageMaker-style, read them back.

Accepted inputs: SageMaker's ground-truth merge records (`{"groundTruthData": {"data": "<json
labels>", "encoding": "JSON"}, "eventMetadata": {"eventId": "<inferenceId>"}, "eventVersion":
"0"}`), JSONL `{"inference_id": ..., "labels": [...]}` and CSV `inference_id,labels` (labels
separated by ';' or '|', or a JSON list). The store is `<dir>/<yyyy>/<mm>/<dd>/<hh>/*.jsonl`
in SageMaker's shape, the hour being when the labels were received (as on S3).
"""
from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from monitoring.capture import MAX_EXAMPLES, hour_of_path

FORMATS = ("auto", "sagemaker", "jsonl", "csv")
ID_KEYS = ("inference_id", "inferenceId", "eventId", "id")


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be ingested at all (missing, empty, wrong header)."""


@dataclass(frozen=True)
class GroundTruth:
    """The true labels of one inference id, when they were received and where they came from."""

    inference_id: str
    labels: tuple[str, ...]
    received: datetime | None
    source: str


@dataclass
class GroundTruthStats:
    """Lines read, records kept, and rejected lines by reason (with file:line examples)."""

    lines: int = 0
    records: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    unknown_labels: Counter = field(default_factory=Counter)
    duplicate_ids: int = 0

    def bad(self, reason: str, where: str, detail: str) -> None:
        self.rejected[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "records": self.records, "rejected_lines": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected), "rejected_examples": list(self.examples),
            "unknown_labels": dict(self.unknown_labels), "duplicate_ids_in_input": self.duplicate_ids,
        }


def decode_labels(value: Any, label_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Label names from a list of names, {"labels": [...]}, a 0/1 vector (needs label_names) or 'a;b'."""
    if isinstance(value, dict):
        if "labels" not in value:
            raise ValueError("object without a 'labels' key")
        value = value["labels"]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return decode_labels(json.loads(stripped), label_names)
        sep = ";" if ";" in stripped else "|" if "|" in stripped else ","
        return tuple(sorted({p.strip() for p in stripped.split(sep) if p.strip()}))
    if not isinstance(value, list):
        raise ValueError(f"labels must be a list of names, got {type(value).__name__}")
    if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v in (0, 1) for v in value):
        if label_names is None:
            raise ValueError("a 0/1 label vector needs the model's label names (none known)")
        if len(value) != len(label_names):
            raise ValueError(f"0/1 label vector has {len(value)} entries, the model has {len(label_names)} labels")
        return tuple(sorted(n for n, v in zip(label_names, value) if v == 1))
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("labels must be non-empty strings")
    return tuple(sorted({v.strip() for v in value}))


def _sagemaker_record(doc: dict, label_names: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    data = doc.get("groundTruthData")
    meta = doc.get("eventMetadata")
    if not isinstance(data, dict) or "data" not in data:
        raise ValueError("groundTruthData.data is missing")
    if not isinstance(meta, dict) or not meta.get("eventId"):
        raise ValueError("eventMetadata.eventId (the inference id) is missing")
    encoding = str(data.get("encoding", "JSON")).upper()
    raw = data["data"]
    if encoding == "JSON":
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"groundTruthData.data is not JSON ({exc.msg})") from None
    elif encoding != "CSV":
        raise ValueError(f"groundTruthData.encoding {encoding!r} not supported (JSON or CSV)")
    return str(meta["eventId"]), decode_labels(raw, label_names)


def _simple_record(doc: dict, label_names: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    key = next((k for k in ID_KEYS if doc.get(k) not in (None, "")), None)
    if key is None:
        raise ValueError(f"no inference id (one of: {', '.join(ID_KEYS)})")
    if "labels" not in doc:
        raise ValueError("no 'labels' field")
    return str(doc[key]), decode_labels(doc["labels"], label_names)


def _detect(path: Path, text: str) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    first = next((l for l in text.splitlines() if l.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"  # per line: SageMaker shape or simple
    if "," in first or "\t" in first:
        return "csv"
    raise GroundTruthError(f"{path}: cannot tell the format (not JSONL, not CSV); pass --format")


def _record(parsed: Any, fmt: str, label_names: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    """(inference id, labels) of one parsed row; ValueError says what is wrong with it."""
    if isinstance(parsed, Exception):
        raise parsed
    if fmt == "csv":
        return _simple_record(parsed, label_names)
    if not isinstance(parsed, dict):
        raise ValueError("line is not a JSON object")
    if "groundTruthData" in parsed or fmt == "sagemaker":
        return _sagemaker_record(parsed, label_names)
    return _simple_record(parsed, label_names)


def _read_text(path: Path, fmt: str) -> str:
    if fmt not in FORMATS:
        raise GroundTruthError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise GroundTruthError(f"ground-truth file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise GroundTruthError(f"{path} is empty")
    return text


def parse_ground_truth(
    path: str | Path, fmt: str = "auto", label_names: Sequence[str] | None = None,
    received: datetime | None = None,
) -> tuple[list[GroundTruth], GroundTruthStats]:
    """Records of one user file; bad lines are counted with their line number, not raised."""
    path = Path(path)
    text = _read_text(path, fmt)
    fmt = _detect(path, text) if fmt == "auto" else fmt
    stats, records, seen = GroundTruthStats(), [], Counter()
    rows = _csv_rows(path, text) if fmt == "csv" else _json_rows(text, fmt)
    for number, parsed in rows:
        stats.lines += 1
        where = f"{path}:{number}"
        try:
            inference_id, labels = _record(parsed, fmt, label_names)
        except ValueError as exc:
            stats.bad("invalid_record", where, str(exc))
            continue
        if label_names is not None:
            stats.unknown_labels.update(name for name in labels if name not in label_names)
        seen[inference_id] += 1
        records.append(GroundTruth(inference_id, labels, received, where))
        stats.records += 1
    stats.duplicate_ids = sum(n - 1 for n in seen.values() if n > 1)
    return records, stats


def _json_rows(text: str, fmt: str):
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"invalid JSON ({exc.msg})")


def _csv_rows(path: Path, text: str):
    first = text.lstrip().splitlines()[0]
    reader = csv.DictReader(io.StringIO(text.lstrip()), delimiter="\t" if "\t" in first and "," not in first else ",")
    header = [h.strip() for h in reader.fieldnames or []]
    if not any(k in header for k in ID_KEYS) or "labels" not in header:
        raise GroundTruthError(
            f"{path}:1: CSV header must name an id column ({' or '.join(ID_KEYS)}) and 'labels'; got {header}"
        )
    for row in reader:
        clean = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in row.items()}
        if None in row:
            yield reader.line_num, ValueError("more fields than the header names (quote labels with commas)")
        else:
            yield reader.line_num, clean


def to_sagemaker(record: GroundTruth) -> dict:
    """The record in SageMaker's ground-truth merge shape."""
    return {
        "groundTruthData": {"data": json.dumps({"labels": list(record.labels)}), "encoding": "JSON"},
        "eventMetadata": {"eventId": record.inference_id},
        "eventVersion": "0",
    }


def store_ground_truth(records: Sequence[GroundTruth], store_dir: str | Path, received: datetime, stem: str = "labels") -> Path:
    """Write records (SageMaker shape) to `<store>/<yyyy>/<mm>/<dd>/<hh>/<stem>-<id>.jsonl`; returns the file."""
    received = received.astimezone(timezone.utc)
    folder = Path(store_dir) / received.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{received.strftime('%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(to_sagemaker(record), separators=(",", ":")) + "\n")
    os.replace(tmp, target)
    return target


def load_ground_truth(store_dir: str | Path, label_names: Sequence[str] | None = None) -> tuple[list[GroundTruth], GroundTruthStats]:
    """Every stored record; received time = the file's yyyy/mm/dd/hh folder, else its modification time."""
    store_dir = Path(store_dir)
    total, records = GroundTruthStats(), []
    if not store_dir.exists():
        return records, total
    files = [store_dir] if store_dir.is_file() else sorted(p for p in store_dir.rglob("*.jsonl") if p.is_file())
    for path in files:
        received = hour_of_path(path) or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        try:
            found, stats = parse_ground_truth(path, "jsonl", label_names, received)
        except GroundTruthError as exc:
            total.bad("unreadable_file", str(path), str(exc))
            continue
        records.extend(found)
        total.lines += stats.lines
        total.records += stats.records
        total.rejected.update(stats.rejected)
        total.unknown_labels.update(stats.unknown_labels)
        total.examples.extend(stats.examples[: MAX_EXAMPLES - len(total.examples)])
    return records, total
