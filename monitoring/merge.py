"""Join captured texts with their ground truth by inference id, counting every record that is not used.

Policies (from MonitorConfig): identical duplicates count once; conflicting duplicates are
excluded (or the latest received wins); ground truth received more than
`max_label_delay_hours` after the inference is late (excluded unless `include_late_labels`);
labels the model does not know exclude the record. All of these are counted in `counts`.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Sequence

from monitoring.capture import CapturedText
from monitoring.config import MonitorConfig
from monitoring.ground_truth import GroundTruth

MAX_IDS_LISTED = 20


@dataclass
class MergeResult:
    """Captured texts (deduplicated by id), the labels usable for quality, and what was left out."""

    texts: list[CapturedText]
    labels: dict[str, tuple[str, ...]]
    counts: dict[str, int] = field(default_factory=dict)
    unknown_labels: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def labelled(self) -> list[tuple[CapturedText, tuple[str, ...]]]:
        return [(t, self.labels[t.inference_id]) for t in self.texts if t.inference_id in self.labels]

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "unknown_labels": dict(self.unknown_labels), "examples": self.examples}


def merge(
    texts: Sequence[CapturedText], ground_truth: Sequence[GroundTruth], label_names: Sequence[str],
    config: MonitorConfig, outside_window_ids: set[str] | frozenset[str] = frozenset(),
) -> MergeResult:
    """Merge captured texts (one window) with all ground truth; see the module doc for the policies."""
    examples: dict[str, list[str]] = defaultdict(list)

    def note(kind: str, text: str) -> None:
        if len(examples[kind]) < MAX_IDS_LISTED:
            examples[kind].append(text)

    unique: dict[str, CapturedText] = {}
    duplicate_capture = 0
    for text in texts:
        if text.inference_id in unique:
            duplicate_capture += 1
            note("duplicate_capture", f"{text.inference_id} ({text.source})")
            continue
        unique[text.inference_id] = text

    by_id: dict[str, list[GroundTruth]] = defaultdict(list)
    for record in ground_truth:
        by_id[record.inference_id].append(record)

    known = set(label_names)
    labels: dict[str, tuple[str, ...]] = {}
    unknown = Counter()
    c = Counter()
    max_delay = timedelta(hours=config.max_label_delay_hours)
    for inference_id, records in by_id.items():
        if inference_id not in unique:
            if inference_id in outside_window_ids:
                c["ground_truth_outside_window"] += 1
            else:
                c["ground_truth_unmatched"] += 1
                note("ground_truth_unmatched", f"{inference_id} ({records[0].source})")
            continue
        chosen = records[-1]
        distinct = {r.labels for r in records}
        if len(records) > 1 and len(distinct) == 1:
            c["duplicate_identical"] += len(records) - 1
        elif len(distinct) > 1:
            c["duplicate_conflicting_ids"] += 1
            note("duplicate_conflicting", f"{inference_id}: " + " vs ".join("|".join(d) or "(none)" for d in sorted(distinct)))
            if config.conflicting_labels == "exclude":
                c["excluded_conflicting"] += 1
                continue
            chosen = _latest(records)
        bad = [n for n in chosen.labels if n not in known]
        if bad:
            unknown.update(bad)
            c["excluded_unknown_label"] += 1
            note("unknown_label", f"{inference_id}: {', '.join(bad)} ({chosen.source})")
            continue
        captured = unique[inference_id]
        if chosen.received is not None and chosen.received - captured.time > max_delay:
            c["late"] += 1
            note("late", f"{inference_id}: received {chosen.received.isoformat()} for inference at {captured.time.isoformat()}")
            if not config.include_late_labels:
                c["excluded_late"] += 1
                continue
        labels[inference_id] = chosen.labels

    c["captured_texts"] = len(unique)
    c["duplicate_capture_ids"] = duplicate_capture
    c["labelled"] = len(labels)
    c["missing_ground_truth"] = sum(1 for i in unique if i not in by_id)
    c["ground_truth_records"] = len(ground_truth)
    for key in ("late", "excluded_late", "excluded_conflicting", "excluded_unknown_label", "duplicate_identical",
                "duplicate_conflicting_ids", "ground_truth_unmatched", "ground_truth_outside_window"):
        c.setdefault(key, 0)
    return MergeResult(list(unique.values()), labels, dict(c), unknown, dict(examples))


def _latest(records: Sequence[GroundTruth]) -> GroundTruth:
    """The record received last (ties and unknown times: the one read last)."""
    best_index, best = 0, records[0]
    for i, record in enumerate(records):
        if best.received is None or (record.received is not None and record.received >= best.received):
            best_index, best = i, record
    return records[best_index]
