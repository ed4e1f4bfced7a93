"""The datasets' data model: labelled texts over a fixed label order, what loading did, and its errors."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLIT_NAMES = {"train": "train", "training": "train", "dev": "validation", "validation": "validation",
               "val": "validation", "valid": "validation", "test": "test"}


class DatasetError(ValueError):
    """Unusable dataset input; the message names the file, the line, the problem and what to do."""

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None, hint: str = ""):
        where = str(path) if path else ""
        if line is not None:
            where += f", line {line}"
        message = f"{where}: {problem}" if where else problem
        super().__init__(f"{message}. {hint}" if hint else message)
        self.path, self.line, self.problem, self.hint = path, line, problem, hint


@dataclass
class LabeledTexts:
    """Texts with their label names, over a fixed label order (the model's output order)."""

    texts: list[str]
    labels: list[list[str]]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def matrix(self) -> np.ndarray:
        """n x L float32 0/1 matrix in `label_names` order."""
        index = {name: i for i, name in enumerate(self.label_names)}
        out = np.zeros((len(self.texts), len(self.label_names)), dtype=np.float32)
        for row, names in enumerate(self.labels):
            for name in names:
                out[row, index[name]] = 1.0
        return out

    @classmethod
    def from_matrix(cls, texts: Sequence[str], matrix: np.ndarray, label_names: Sequence[str]) -> "LabeledTexts":
        """Inverse of `matrix()`: rows of 0/1 (or scores > 0) in `label_names` order."""
        names, matrix = list(label_names), np.asarray(matrix)
        if matrix.shape != (len(texts), len(names)):
            raise ValueError(f"matrix shape {matrix.shape} does not match {len(texts)} texts x {len(names)} labels")
        return cls(list(texts), [[names[j] for j in np.flatnonzero(row > 0)] for row in matrix], names)

    def subset(self, indices: Iterable[int]) -> "LabeledTexts":
        idx = list(indices)
        return LabeledTexts([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.label_names)

    def with_label_names(self, label_names: Sequence[str]) -> "LabeledTexts":
        """The same rows over another label order (e.g. the model's); unknown labels are an error."""
        unknown = sorted({n for row in self.labels for n in row} - set(label_names))
        if unknown:
            raise DatasetError(f"labels {unknown} are not among the known labels {list(label_names)}")
        return LabeledTexts(self.texts, self.labels, list(label_names))


@dataclass
class LoadReport:
    """What loading did: rows read and kept (per file), dropped rows by reason with example lines, warnings."""

    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, dict[str, int]] = field(default_factory=dict)

    def drop(self, reason: str, path: str | Path, line: int) -> None:
        self.dropped[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(f"{Path(str(path)).name}:{line}")

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        text = f"{self.rows_kept} of {self.rows_read} rows kept"
        if self.dropped:
            text += "; dropped: " + ", ".join(
                f"{n} {reason} (e.g. {', '.join(self.examples.get(reason, []))})" for reason, n in self.dropped.items())
        else:
            text += "; nothing dropped"
        return text + "".join(f"\nwarning: {w}" for w in self.warnings)

    def to_json(self) -> dict:
        return {"rows_read": self.rows_read, "rows_kept": self.rows_kept, "dropped": dict(self.dropped),
                "examples": self.examples, "warnings": self.warnings, "files": self.files}


@dataclass
class LoadResult:
    """Loaded splits ("train"/"validation"/"test", or "all" for one file), the label order and the report."""

    splits: dict[str, LabeledTexts]
    label_names: list[str]
    report: LoadReport
