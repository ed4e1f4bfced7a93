"""Synthetic capture traffic in SageMaker's data-capture shape, for demos and tests of the monitor.

`capture_line` builds one captured request exactly as the model server records it;
`shifted_scores` makes a drifted copy of reference probabilities.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from monitoring.config import iso


def capture_line(texts: Sequence[str] | str, probabilities: np.ndarray, label_names: Sequence[str],
                 thresholds: np.ndarray | float, when: datetime, inference_id: str | None = None,
                 event_id: str | None = None) -> str:
    """One capture JSONL line: request {"inputs": ...}, response [{labels, probabilities}] per text."""
    batch = not isinstance(texts, str)
    items = list(texts) if batch else [texts]
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    decisions = probabilities >= np.asarray(thresholds, dtype=np.float64)
    results = [{"labels": [n for n, d in zip(label_names, row_d) if d],
                "probabilities": {n: round(float(p), 6) for n, p in zip(label_names, row_p)}}
               for row_p, row_d in zip(probabilities, decisions)]
    meta = {"eventId": event_id or str(uuid.uuid4()), "inferenceTime": iso(when)}
    if inference_id:
        meta["inferenceId"] = inference_id
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                              "data": json.dumps({"inputs": items if batch else items[0]}), "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": json.dumps(results), "encoding": "JSON"},
        },
        "eventMetadata": meta,
        "eventVersion": "0",
    })


def capture_path(root: str | Path, endpoint: str, when: datetime, name: str = "capture") -> Path:
    """`<root>/<endpoint>/<yyyy>/<mm>/<dd>/<hh>/<name>.jsonl` for the hour of `when`."""
    return Path(root) / endpoint / when.astimezone(timezone.utc).strftime("%Y/%m/%d/%H") / f"{name}.jsonl"


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)
    return path


def beta_scores(n: int, rates: Sequence[float], rng: np.random.Generator, concentration: float = 4.0) -> np.ndarray:
    """Probabilities whose per-label mean is `rates` (Beta distributed), shape (n, len(rates))."""
    rates = np.clip(np.asarray(rates, dtype=np.float64), 0.01, 0.99)
    return rng.beta(rates * concentration, (1 - rates) * concentration, size=(n, len(rates))).astype(np.float32)


def shifted_scores(scores: np.ndarray, shift: float, labels: Sequence[int]) -> np.ndarray:
    """Copy of `scores` with the chosen label columns pushed up by `shift` in logit space."""
    out = np.array(scores, dtype=np.float64)
    logits = np.log(np.clip(out[:, labels], 1e-6, 1 - 1e-6) / np.clip(1 - out[:, labels], 1e-6, 1))
    out[:, labels] = 1 / (1 + np.exp(-(logits + shift)))
    return out.astype(np.float32)
