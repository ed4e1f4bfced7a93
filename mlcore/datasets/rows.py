"""Reading primitives shared by every format: UTF-8 text, physical lines, label cells, raw rows.

A `RowReader` collects one file's rows and counts what it drops (empty text, duplicates,
unlabelled rows) in the `LoadReport`; label tokens stay raw (names or ids) until `labels.resolve_labels`.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcore.datasets.model import DatasetError, LoadReport

TEXT_COLUMNS = ("text", "comment_text", "comment", "sentence", "content", "body", "review", "message",
                "document", "utterance", "tweet")
LABEL_COLUMNS = ("labels", "label", "emotions", "tags", "categories", "topics", "classes", "label_ids")


@dataclass
class Row:
    text: str
    labels: list[str]  # raw tokens: names or ids
    line: int


@dataclass
class Source:
    """One file (or hf split) read into raw rows; `wide` = label column names for the wide shape."""

    path: str
    rows: list[Row]
    wide: list[str] | None = None


class RowReader:
    """Collects rows of one file, handling drops (empty text, duplicates, unlabelled) and counts."""

    def __init__(self, path: str | Path, report: LoadReport, require_labels: bool, dedupe: bool = True):
        self.path, self.report, self.require_labels, self.dedupe = str(path), report, require_labels, dedupe
        self.rows: list[Row] = []
        self.seen: set = set()
        self.read = 0

    def add(self, line: int, text: Any, labels: list[str] | None, key: Any) -> None:
        self.read += 1
        self.report.rows_read += 1
        text = "" if text is None else str(text).strip()
        if self.dedupe and key in self.seen:
            self.report.drop("duplicate row", self.path, line)
        elif not text:
            self.report.drop("empty text", self.path, line)
        elif labels is None:
            self.report.drop("unlabelled (-1)", self.path, line)
        elif self.require_labels and not labels:
            self.report.drop("no labels", self.path, line)
        else:
            self.rows.append(Row(text, labels, line))
        if self.dedupe:
            self.seen.add(key)

    def done(self, wide: list[str] | None = None) -> Source:
        self.report.files[self.path] = {"rows_read": self.read, "rows_kept": len(self.rows)}
        return Source(self.path, self.rows, wide)


def decode_text(path: Path) -> str:
    """Text of a UTF-8 file (BOM stripped); undecodable bytes are an error with line and byte offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read the file ({exc.strerror})", path) from None
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + bom
        line_start = max(data.rfind(b"\n", 0, start) + 1, bom)
        raise DatasetError(
            f"not valid UTF-8: byte {data[start:start + 1]!r} at byte offset {start - line_start} of the "
            f"line (offset {start} in the file)", path, data.count(b"\n", 0, start) + 1,
            hint="Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)") from None


def text_lines(text: str) -> list[str]:
    """Physical lines split on \\n only (str.splitlines would also split on \\x1c, \\u2028, ... inside texts)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def split_labels(value: Any) -> list[str]:
    """Label tokens from a cell or JSON value: 'a,b', '3', "['a', 'b']", [0, 2], 7 or None."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):  # a Python/JSON list written by pandas
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, (list, tuple)):
            return split_labels(parsed)
    return [t.strip() for t in text.split(",") if t.strip()]
