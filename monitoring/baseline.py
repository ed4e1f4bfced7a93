"""The monitor's baselines: quality (the model's evaluation.json), inputs (preprocess statistics.json)
and, optionally, reference score distributions (score_baseline.npz).

A baseline directory holds those files (the processing job's input/baseline channel); locally
`mlops.local_baseline.resolve_local_baseline` assembles one from the model registry and the run
that built the model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlcore.config import EVALUATION_FILE
from mlcore.predictor import THRESHOLDS_FILE

STATISTICS_FILE = "statistics.json"
SCORE_BASELINE_FILE = "score_baseline.npz"
MAX_REFERENCE_ROWS = 5000


class BaselineError(ValueError):
    """A baseline that is missing or unreadable; the message says which file and what to do."""


@dataclass
class Baseline:
    """Label order, decision thresholds, baseline metrics and the drift references."""

    label_names: list[str]
    thresholds: np.ndarray
    evaluation: dict
    statistics: dict | None = None
    reference_scores: np.ndarray | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        entry = self.evaluation.get("multilabel_classification_metrics", {}).get(name)
        return entry.get("value") if isinstance(entry, dict) else None

    def expected_predicted_rates(self) -> tuple[dict[str, float], str] | tuple[None, str]:
        """Per-label share of predicted positives on the baseline test set ((tp+fp)/n), else train prevalence."""
        per_label = self.evaluation.get("multilabel_classification_metrics", {}).get("per_label") or {}
        n = self.evaluation.get("n_samples")
        if n and all(isinstance(per_label.get(l), dict) and "tp" in per_label[l] and "fp" in per_label[l] for l in self.label_names):
            return {l: (per_label[l]["tp"] + per_label[l]["fp"]) / n for l in self.label_names}, "evaluation.json (tp+fp)/n_samples"
        prevalence = train_label_prevalence(self.statistics, self.label_names) if self.statistics else None
        if prevalence:
            return prevalence, "statistics.json train label prevalence"
        return None, "no per-label tp/fp in evaluation.json and no label counts in statistics.json"


def _find(node: Any, predicate, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every (path, value) in a JSON tree for which predicate(path, value) holds."""
    found = []
    if predicate(path, node):
        found.append((path, node))
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_find(value, predicate, path + (str(key),)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_find(value, predicate, path + (str(i),)))
    return found


def _prefer_train(matches: list[tuple[tuple, Any]]) -> Any | None:
    if not matches:
        return None
    for path, value in matches:
        if any(p.lower() == "train" for p in path):
            return value
    return matches[0][1]


def length_reference(statistics: dict | None) -> dict | None:
    """Training text-length stats in characters ({mean, p50, p95, max}) from statistics.json, wherever nested."""
    if not statistics:
        return None
    matches = _find(statistics, lambda path, v: isinstance(v, dict) and "p50" in v and "p95" in v
                    and any("char" in p.lower() for p in path))
    return _prefer_train(matches)


def train_label_prevalence(statistics: dict | None, label_names: Sequence[str]) -> dict[str, float] | None:
    """Per-label share of training rows carrying the label, from statistics.json's per-label counts."""
    if not statistics:
        return None
    counts = _prefer_train(_find(statistics, lambda path, v: isinstance(v, dict) and v and set(label_names) <= set(v)
                                 and all(isinstance(v[l], (int, float)) for l in label_names)))
    rows = _prefer_train(_find(statistics, lambda path, v: isinstance(v, (int, float)) and path
                               and path[-1] in ("train", "rows") and "rows" in "/".join(path)))
    if counts is None or not rows:
        return None
    return {l: float(counts[l]) / float(rows) for l in label_names}


def _thresholds_from_evaluation(evaluation: dict, label_names: list[str]) -> np.ndarray | None:
    per_label = evaluation.get("multilabel_classification_metrics", {}).get("per_label") or {}
    values = [per_label.get(l, {}).get("threshold") for l in label_names]
    if all(isinstance(v, (int, float)) for v in values):
        return np.asarray(values, dtype=np.float32)
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _thresholds(directory: Path, evaluation: dict, eval_path: Path, sources: dict) -> tuple[list[str], np.ndarray]:
    """The label order and decision thresholds: thresholds.json beside evaluation.json, else its per_label ones."""
    thresholds_doc = None
    if (directory / THRESHOLDS_FILE).is_file():
        thresholds_doc = json.loads((directory / THRESHOLDS_FILE).read_text(encoding="utf-8"))
        sources["thresholds"] = str(directory / THRESHOLDS_FILE)
    label_names = list(evaluation.get("labels") or (thresholds_doc or {}).get("labels") or [])
    if not label_names:
        raise BaselineError(f"{eval_path} has no 'labels' list (and no thresholds.json beside it)")
    if thresholds_doc:
        if list(thresholds_doc.get("labels", [])) != label_names:
            raise BaselineError(f"{directory / THRESHOLDS_FILE}: labels differ from {eval_path}'s labels")
        return label_names, np.asarray(thresholds_doc["thresholds"], dtype=np.float32)
    thresholds = _thresholds_from_evaluation(evaluation, label_names)
    if thresholds is None:
        raise BaselineError(f"{eval_path}: per_label thresholds missing and no {THRESHOLDS_FILE} beside it")
    return label_names, thresholds


def _reference_scores(directory: Path, label_names: list[str], eval_path: Path, sources: dict) -> np.ndarray | None:
    """score_baseline.npz's reference scores, when present (its labels must be the baseline's)."""
    if not (directory / SCORE_BASELINE_FILE).is_file():
        return None
    with np.load(directory / SCORE_BASELINE_FILE, allow_pickle=False) as npz:
        ref_labels = [str(x) for x in npz["labels"]]
        if ref_labels != label_names:
            raise BaselineError(f"{directory / SCORE_BASELINE_FILE}: labels differ from {eval_path}'s labels; rebuild it")
        reference = np.asarray(npz["scores"], dtype=np.float32)
    sources["score_baseline"] = str(directory / SCORE_BASELINE_FILE)
    return reference


def load_baseline(directory: str | Path) -> Baseline:
    """Read a baseline directory: evaluation.json is required, the rest optional."""
    directory = Path(directory)
    eval_path = directory / EVALUATION_FILE
    if not eval_path.is_file():
        raise BaselineError(
            f"{eval_path} not found: the baseline needs the deployed model's evaluation.json "
            "(register a model with `mlops run`, or pass --baseline-dir)"
        )
    evaluation = _read_json(eval_path)
    sources = {"evaluation": str(eval_path)}
    label_names, thresholds = _thresholds(directory, evaluation, eval_path, sources)
    statistics = None
    if (directory / STATISTICS_FILE).is_file():
        statistics = json.loads((directory / STATISTICS_FILE).read_text(encoding="utf-8"))
        sources["statistics"] = str(directory / STATISTICS_FILE)
    reference = _reference_scores(directory, label_names, eval_path, sources)
    return Baseline(label_names, thresholds, evaluation, statistics, reference, sources)


def write_score_baseline(directory: str | Path, scores: np.ndarray, label_names: Sequence[str],
                         source: str, seed: int = 0) -> Path:
    """Store reference probabilities (at most MAX_REFERENCE_ROWS rows, sampled) for the score-drift tests."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(label_names) or len(scores) == 0:
        raise BaselineError(f"reference scores must be (n>0, {len(label_names)}), got {scores.shape}")
    if len(scores) > MAX_REFERENCE_ROWS:
        rows = np.random.default_rng(seed).choice(len(scores), MAX_REFERENCE_ROWS, replace=False)
        scores = scores[np.sort(rows)]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SCORE_BASELINE_FILE
    np.savez_compressed(path, labels=np.asarray(list(label_names)), scores=scores, source=np.asarray(source))
    return path
