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


class _Merge:
    """The counters and example ids of one merge, and the policy decisions that feed them."""

    def __init__(self, config: MonitorConfig, label_names: Sequence[str]):
        self.config, self.known = config, set(label_names)
        self.max_delay = timedelta(hours=config.max_label_delay_hours)
        self.counts: Counter = Counter()
        self.unknown: Counter = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def note(self, kind: str, text: str) -> None:
        if len(self.examples[kind]) < MAX_IDS_LISTED:
            self.examples[kind].append(text)

    def unique(self, texts: Sequence[CapturedText]) -> tuple[dict[str, CapturedText], int]:
        """The captured texts by inference id (the first of each), and how many repeats were dropped."""
        unique: dict[str, CapturedText] = {}
        repeats = 0
        for text in texts:
            if text.inference_id in unique:
                repeats += 1
                self.note("duplicate_capture", f"{text.inference_id} ({text.source})")
                continue
            unique[text.inference_id] = text
        return unique, repeats

    def choose(self, inference_id: str, records: list[GroundTruth]) -> GroundTruth | None:
        """The record to use among one id's records: the last of identical ones; conflicting ones by policy."""
        chosen = records[-1]
        distinct = {r.labels for r in records}
        if len(records) > 1 and len(distinct) == 1:
            self.counts["duplicate_identical"] += len(records) - 1
        elif len(distinct) > 1:
            self.counts["duplicate_conflicting_ids"] += 1
            self.note("duplicate_conflicting",
                      f"{inference_id}: " + " vs ".join("|".join(d) or "(none)" for d in sorted(distinct)))
            if self.config.conflicting_labels == "exclude":
                self.counts["excluded_conflicting"] += 1
                return None
            chosen = _latest(records)
        return chosen

    def usable(self, inference_id: str, chosen: GroundTruth, captured: CapturedText) -> bool:
        """False (counted) for labels the model does not know, and for late labels unless they are included."""
        bad = [n for n in chosen.labels if n not in self.known]
        if bad:
            self.unknown.update(bad)
            self.counts["excluded_unknown_label"] += 1
            self.note("unknown_label", f"{inference_id}: {', '.join(bad)} ({chosen.source})")
            return False
        if chosen.received is not None and chosen.received - captured.time > self.max_delay:
            self.counts["late"] += 1
            self.note("late", f"{inference_id}: received {chosen.received.isoformat()} for inference at "
                              f"{captured.time.isoformat()}")
            if not self.config.include_late_labels:
                self.counts["excluded_late"] += 1
                return False
        return True


def merge(
    texts: Sequence[CapturedText], ground_truth: Sequence[GroundTruth], label_names: Sequence[str],
    config: MonitorConfig, outside_window_ids: set[str] | frozenset[str] = frozenset(),
) -> MergeResult:
    """Merge captured texts (one window) with all ground truth; see the module doc for the policies."""
    state = _Merge(config, label_names)
    unique, duplicate_capture = state.unique(texts)
    by_id: dict[str, list[GroundTruth]] = defaultdict(list)
    for record in ground_truth:
        by_id[record.inference_id].append(record)

    labels: dict[str, tuple[str, ...]] = {}
    for inference_id, records in by_id.items():
        if inference_id not in unique:
            if inference_id in outside_window_ids:
                state.counts["ground_truth_outside_window"] += 1
            else:
                state.counts["ground_truth_unmatched"] += 1
                state.note("ground_truth_unmatched", f"{inference_id} ({records[0].source})")
            continue
        chosen = state.choose(inference_id, records)
        if chosen is not None and state.usable(inference_id, chosen, unique[inference_id]):
            labels[inference_id] = chosen.labels

    c = state.counts
    c["captured_texts"] = len(unique)
    c["duplicate_capture_ids"] = duplicate_capture
    c["labelled"] = len(labels)
    c["missing_ground_truth"] = sum(1 for i in unique if i not in by_id)
    c["ground_truth_records"] = len(ground_truth)
    for key in ("late", "excluded_late", "excluded_conflicting", "excluded_unknown_label", "duplicate_identical",
                "duplicate_conflicting_ids", "ground_truth_unmatched", "ground_truth_outside_window"):
        c.setdefault(key, 0)
    return MergeResult(list(unique.values()), labels, dict(c), state.unknown, dict(state.examples))


def _latest(records: Sequence[GroundTruth]) -> GroundTruth:
    """The record received last (ties and unknown times: the one read last)."""
    best_index, best = 0, records[0]
    for i, record in enumerate(records):
        if best.received is None or (record.received is not None and record.received >= best.received):
            best_index, best = i, record
    return records[best_index]
