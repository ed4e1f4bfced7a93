"""One dataset loader for every step: TSV/CSV (long or wide), JSONL, hf:<name>, directories.

Bad input raises `DatasetError` naming file, line and problem; rows that are dropped (empty
text, exact duplicate rows, unlabelled rows) are counted in a `LoadReport`, never lost silently.
"""
from __future__ import annotations

import ast
import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

TEXT_COLUMNS = ("text", "comment_text", "comment", "sentence", "content", "body", "review", "message",
                "document", "utterance", "tweet")
LABEL_COLUMNS = ("labels", "label", "emotions", "tags", "categories", "topics", "classes", "label_ids")
SPLIT_NAMES = {"train": "train", "training": "train", "dev": "validation", "validation": "validation",
               "val": "validation", "valid": "validation", "test": "test"}
DATA_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".txt")
LABELS_FILE_NAMES = ("labels.txt", "labels.json")
SPLIT_DATA_FILE = "data.jsonl"
SPLIT_LABELS_FILE = "labels.json"
_ID_COLUMN = re.compile(r"(?i:(?:.*[_\s.-])?(?:id|ids|idx|index|uuid|guid))|.*[a-z]Id|(?i:unnamed: ?\d+)")
_ID_LIST = re.compile(r"\s*-?\d+(?:\s*,\s*-?\d+)*\s*")
_WIDE_TRUE, _WIDE_FALSE, _WIDE_UNLABELLED = {"1", "1.0", "true"}, {"0", "0.0", "false"}, {"-1", "-1.0"}


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


# ----------------------------------------------------------------------------- raw rows
@dataclass
class _Row:
    text: str
    labels: list[str]  # raw tokens: names or ids
    line: int


@dataclass
class _Source:
    """One file (or hf split) read into raw rows; `wide` = label column names for the wide shape."""

    path: str
    rows: list[_Row]
    wide: list[str] | None = None


class _Reader:
    """Collects rows of one file, handling drops (empty text, duplicates, unlabelled) and counts."""

    def __init__(self, path: str | Path, report: LoadReport, require_labels: bool, dedupe: bool = True):
        self.path, self.report, self.require_labels, self.dedupe = str(path), report, require_labels, dedupe
        self.rows: list[_Row] = []
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
            self.rows.append(_Row(text, labels, line))
        if self.dedupe:
            self.seen.add(key)

    def done(self, wide: list[str] | None = None) -> _Source:
        self.report.files[self.path] = {"rows_read": self.read, "rows_kept": len(self.rows)}
        return _Source(self.path, self.rows, wide)


def _decode(path: Path) -> str:
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


def _lines(text: str) -> list[str]:
    """Physical lines split on \\n only (str.splitlines would also split on \\x1c, \\u2028, ... inside texts)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _split_labels(value: Any) -> list[str]:
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
            return _split_labels(parsed)
    return [t.strip() for t in text.split(",") if t.strip()]


def _is_id_column(name: str) -> bool:
    return not name.strip() or bool(_ID_COLUMN.fullmatch(name.strip()))


def _find_column(header: list[str], wanted: str | None, candidates: Sequence[str], path: Path, kind: str,
                 flag: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if wanted:
        if wanted.strip().lower() not in lowered:
            raise DatasetError(f"no {kind} column named {wanted!r}; the header has {header}", path, 1,
                               hint=f"Pass one of these names to {flag}")
        return lowered.index(wanted.strip().lower())
    return next((lowered.index(name) for name in candidates if name in lowered), None)


def _numeric(cell: str) -> bool:
    return bool(_ID_LIST.fullmatch(cell)) or cell.strip().lower() in _WIDE_TRUE | _WIDE_FALSE


def _looks_like_header(first: list[str], second: list[str] | None, names: set[str], kind: str) -> bool:
    """A known column name in the first row; else, with no number in it: always for CSV (the convention),
    for TSV when the row below has numbers (a wide file). Headerless TSV is GoEmotions' shape."""
    if {c.strip().lower() for c in first} & names:
        return True
    if any(_numeric(c) for c in first):
        return False
    if kind == "CSV":
        return True
    return second is not None and len(second) == len(first) and any(_numeric(c) for c in second[1:])


def _table_records(path: Path, text: str) -> tuple[str, list[tuple[int, list[str]]]]:
    """("TSV"|"CSV", [(first line number, cells)] of every non-blank record); TSV has no quoting."""
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    if path.suffix.lower() == ".txt" and "\t" not in text.split("\n", 1)[0]:
        delimiter = ","
    if delimiter == "\t":  # Reddit/Twitter text is full of quotes: csv quoting would swallow lines
        records = [(i, line.split("\t")) for i, line in enumerate(_lines(text), start=1)]
    else:
        records, reader, start = [], csv.reader(io.StringIO(text, newline="")), 1
        try:
            for record in reader:
                records.append((start, record))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DatasetError(f"cannot parse CSV ({exc})", path, start,
                               hint="Check the quotes of this row: a quote inside a field must be doubled") from None
    return ("TSV" if delimiter == "\t" else "CSV"), [(n, r) for n, r in records if any(c.strip() for c in r)]


def _read_table(path: Path, report: LoadReport, text_column=None, label_column=None,
                require_labels=False) -> _Source:
    """Rows of a TSV/CSV in the long shape (text + labels column) or the wide shape (one 0/1 column per label)."""
    kind, records = _table_records(path, _decode(path))
    if not records:
        raise DatasetError("the file is empty", path, hint="Point to a file with one row per text")
    first_line, first = records[0]
    names = set(TEXT_COLUMNS) | set(LABEL_COLUMNS) | {c.lower() for c in (text_column, label_column) if c}
    has_header = _looks_like_header(first, records[1][1] if len(records) > 1 else None, names, kind)
    if not has_header and (text_column or label_column):
        raise DatasetError(f"--text-column/--label-column name columns, but the first row {first[:4]} is not a "
                           "header", path, first_line, hint="Add a header row or leave the column flags out")
    wide_idx: list[int] = []
    if has_header:
        header = [h.strip() for h in first]
        records = records[1:]
        text_idx = _find_column(header, text_column, TEXT_COLUMNS, path, "text", "--text-column")
        if text_idx is None:
            raise DatasetError(f"no text column found in the header {header}", path, first_line,
                               hint=f"Name it one of {list(TEXT_COLUMNS[:4])} or pass --text-column")
        label_idx = _find_column(header, label_column, LABEL_COLUMNS, path, "label", "--label-column")
        if label_idx is None:  # wide: one 0/1 column per label; id-like columns ignored
            wide_idx = [i for i, h in enumerate(header) if i != text_idx and not _is_id_column(h)]
            if not wide_idx:
                raise DatasetError(
                    f"no label column found in the header {header}", path, first_line,
                    hint="Add a 'labels' column (comma-separated names or ids), one 0/1 column per label, "
                         "or pass --label-column")
    else:
        header = None
        text_idx, label_idx = 0, 1  # GoEmotions' shape: text <TAB> label ids [<TAB> comment id]
        if len(first) < 2:
            raise DatasetError(f"no label column: the first row has a single {kind} column", path, first_line,
                               hint="Expected 'text<TAB>labels[<TAB>id]' without a header, or a header naming "
                                    "the text and label columns")
    expected = len(header) if header else len(first)
    wide_names = [header[i] for i in wide_idx] if wide_idx else None
    reader = _Reader(path, report, require_labels)
    for number, record in records:
        if len(record) != expected:
            raise DatasetError(
                f"{len(record)} columns where {'the header has' if header else 'the first row has'} {expected}",
                path, number, hint="A tab inside the text? Replace it by a space" if kind == "TSV"
                else "An unquoted comma? Quote fields that contain commas")
        if wide_names:
            labels = _wide_labels(record, wide_idx, wide_names, path, number)
        else:
            labels = _split_labels(record[label_idx])
        reader.add(number, record[text_idx], labels, tuple(record))
    return reader.done(wide_names)


def _wide_labels(record: list[str], idx: list[int], names: list[str], path, line) -> list[str] | None:
    """Names of the 1-columns of a wide row; None when every column is -1 (unlabelled, e.g. Jigsaw test)."""
    values = [record[i].strip().lower() for i in idx]
    if values and all(v in _WIDE_UNLABELLED for v in values):
        return None
    for name, value in zip(names, values):
        if value not in _WIDE_TRUE | _WIDE_FALSE:
            raise DatasetError(f"column {name!r} holds {value!r}, but label columns must be 0 or 1", path, line,
                               hint="Fix the value, or pass --label-column if this file has a labels column")
    return [name for name, value in zip(names, values) if value in _WIDE_TRUE]


def _read_jsonl(path: Path, report: LoadReport, text_column=None, label_column=None,
                require_labels=False, dedupe=True) -> _Source:
    """Rows of a JSON Lines file: {"text": ..., "labels": [names or ids]} (other key names detected)."""
    text = _decode(path)
    if text.lstrip().startswith("["):
        raise DatasetError("this is a JSON array, but the loader reads JSON Lines", path, 1,
                           hint="Write one object per line (e.g. `jq -c '.[]' in.json > out.jsonl`)")
    reader = _Reader(path, report, require_labels, dedupe)
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, number,
                               hint="Each line must be one complete JSON object") from None
        if not isinstance(doc, dict):
            raise DatasetError(f"expected a JSON object, got {type(doc).__name__}", path, number,
                               hint='Write rows as {"text": "...", "labels": ["name", ...]}')
        text_key = text_column or next((k for k in TEXT_COLUMNS if k in doc), None)
        if text_key not in doc:
            raise DatasetError(f"no text key {text_column or 'text'!r} (keys: {sorted(doc)})", path, number,
                               hint="Name the text 'text' or pass --text-column")
        label_key = label_column or next((k for k in LABEL_COLUMNS if k in doc), None)
        if label_key not in doc:
            raise DatasetError(f"no labels key {label_column or 'labels'!r} (keys: {sorted(doc)})", path, number,
                               hint='Add "labels": [...] (an empty list for a text with no label) or pass '
                                    "--label-column")
        if isinstance(doc[text_key], (dict, list)):
            raise DatasetError(f"{text_key!r} must be a string, got {type(doc[text_key]).__name__}", path, number)
        labels = doc[label_key]
        if isinstance(labels, bool) or not (labels is None or isinstance(labels, (str, int, list))) or (
                isinstance(labels, list) and not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                     for v in labels)):
            raise DatasetError(f"{label_key!r} must be a list of label names or ids, got {json.dumps(labels)[:80]}",
                               path, number, hint='Write e.g. "labels": ["billing", "urgent"] or [0, 5]')
        labels = None if labels == -1 else _split_labels([labels] if isinstance(labels, int) else labels)
        reader.add(number, doc[text_key], labels, json.dumps(doc, sort_keys=True))
    return reader.done()


def read_labels_file(path: str | Path) -> list[str]:
    """Label names from labels.txt (line i = id i) or labels.json ({"labels": [...]} or a list)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("labels file not found", path, hint="Pass an existing file to --labels-file")
    if path.suffix == ".json":
        try:
            doc = json.loads(_decode(path))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON ({exc.msg})", path, exc.lineno) from None
        names = doc.get("labels") if isinstance(doc, dict) else doc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError('expected {"labels": ["name", ...]}', path, hint="List the label names as strings")
    else:
        lines = _lines(_decode(path))
        while lines and not lines[-1].strip():
            lines.pop()
        blank = next((i for i, line in enumerate(lines, start=1) if not line.strip()), None)
        if blank is not None:
            raise DatasetError("empty line inside the labels file (line i names label id i-1)", path, blank,
                               hint="Remove the empty line or name the label")
        names = lines
    names = [n.strip() for n in names]
    if not names:
        raise DatasetError("the labels file lists no labels", path, hint="Write one label name per line")
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise DatasetError(f"duplicate label names {dupes}", path, hint="Each label must be named once")
    return names


# ----------------------------------------------------------------------------- resolving labels
def _resolve(sources: dict[str, _Source], label_names: list[str] | None, report: LoadReport,
             allow_ids: bool = True) -> tuple[dict[str, LabeledTexts], list[str]]:
    """Map raw label tokens (names or ids) to names; unknown labels are errors with file and line."""
    wide = next((s.wide for s in sources.values() if s.wide), None)
    tokens = {t for s in sources.values() for r in s.rows for t in r.labels}
    if label_names is None:
        if wide is not None:
            label_names = list(wide)
        elif tokens and all(t.isdigit() for t in tokens):
            label_names = [str(i) for i in range(max(int(t) for t in tokens) + 1)]
            report.warnings.append(f"labels are ids and no labels file was given: the label names are the ids "
                                   f"0-{len(label_names) - 1}; pass --labels-file to name them")
        else:
            label_names = sorted(tokens)
    index = {name: i for i, name in enumerate(label_names)}
    splits = {}
    for split, source in sources.items():
        labels = []
        for row in source.rows:
            ids = set()
            for token in row.labels:
                if token in index:
                    ids.add(index[token])
                elif allow_ids and not wide and re.fullmatch(r"-?\d+", token):
                    if not 0 <= int(token) < len(label_names):
                        raise DatasetError(
                            f"label id {token} is out of range: there are {len(label_names)} labels (ids 0-"
                            f"{len(label_names) - 1})", source.path, row.line,
                            hint="Fix the id or add the missing names to the labels file")
                    ids.add(int(token))
                else:
                    shown = ", ".join(label_names[:30]) + (", ..." if len(label_names) > 30 else "")
                    raise DatasetError(f"unknown label {token!r} (known labels: {shown})", source.path, row.line,
                                       hint="Fix the label or add it to the labels file")
            labels.append([label_names[i] for i in sorted(ids)])
        splits[split] = LabeledTexts([r.text for r in source.rows], labels, list(label_names))
    return splits, list(label_names)


def _check_result(splits: dict[str, LabeledTexts], report: LoadReport, where) -> None:
    """Errors for nothing usable; warnings for unseen labels and texts shared between splits."""
    report.rows_kept = sum(len(s) for s in splits.values())
    if report.rows_kept == 0:
        raise DatasetError(f"no usable rows ({report.summary()})", where,
                           hint="Every row was dropped: check the text column")
    if not any(row for s in splits.values() for row in s.labels):
        raise DatasetError("no row has any label", where,
                           hint="Check the label column, the labels file and that label values are not all empty/0")
    names = next(iter(splits.values())).label_names
    seen = {n for s in splits.values() for row in s.labels for n in row}
    unseen = [n for n in names if n not in seen]
    if unseen:
        report.warnings.append(f"{len(unseen)} label(s) never occur: {', '.join(unseen[:10])}")
    if len(splits) > 1:
        texts = {name: set(s.texts) for name, s in splits.items()}
        order = list(texts)
        for i, a in enumerate(order):
            for b in order[i + 1:]:
                shared = len(texts[a] & texts[b])
                if shared:
                    report.warnings.append(f"{shared} text(s) occur in both {a} and {b}")


# ----------------------------------------------------------------------------- public API
def _read_file(path: Path, report: LoadReport, text_column, label_column, require_labels) -> _Source:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path, report, text_column, label_column, require_labels)
    if suffix in (".tsv", ".csv", ".txt"):
        return _read_table(path, report, text_column, label_column, require_labels)
    raise DatasetError(f"unsupported file type {path.suffix or '(none)'!r}", path,
                       hint="Use .tsv, .csv or .jsonl (or a directory of train/dev/test files)")


def _data_file_in(directory: Path) -> Path | None:
    """The one data file of a split directory (data.jsonl as preprocess writes it, or any single data file)."""
    if (directory / SPLIT_DATA_FILE).is_file():
        return directory / SPLIT_DATA_FILE
    files = [p for p in sorted(directory.iterdir()) if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
             and p.name not in LABELS_FILE_NAMES]
    return files[0] if len(files) == 1 else None


def _directory_files(directory: Path, report: LoadReport) -> dict[str, Path]:
    """Split files (train/dev|validation/test, as files or split directories) or the single data file."""
    found: dict[str, Path] = {}
    others: list[str] = []
    for path in sorted(directory.iterdir()):
        split = SPLIT_NAMES.get(path.stem.lower() if path.is_file() else path.name.lower())
        if path.is_dir() and split:
            path = _data_file_in(path)
            if path is None:
                continue
        elif not (path.is_file() and path.suffix.lower() in DATA_SUFFIXES) or path.name in LABELS_FILE_NAMES:
            continue
        if split is None:
            others.append(path.name)
            continue
        if split in found:
            raise DatasetError(f"two files for the {split} split: {found[split]} and {path}", directory,
                               hint="Keep one file per split")
        found[split] = path
    if not found:
        if len(others) != 1:
            raise DatasetError(
                f"expected train/dev(validation)/test files or exactly one data file; found "
                f"{others or 'no .tsv/.csv/.jsonl file'}", directory,
                hint="Name the files train.*, dev.* (or validation.*), test.*, or point to one file")
        return {"all": directory / others[0]}
    if others:
        report.warnings.append(f"ignored {others} in {directory}: not named train/dev/validation/test")
    order = ("train", "validation", "test")
    return {split: found[split] for split in order if split in found}


def load_source(source: str | Path, labels_file: str | Path | None = None, text_column: str | None = None,
                label_column: str | None = None, label_names: Sequence[str] | None = None,
                require_labels: bool = False) -> LoadResult:
    """Load a dataset file, a directory of split files, `hf:<name>[:<config>]` or "demo".

    `label_names` (or a labels file; labels.txt/labels.json beside the data is found) fixes the label
    order and lets label ids be used; `require_labels` drops (and counts) rows with no label.
    """
    report = LoadReport()
    source_text = str(source)
    if source_text == "demo":
        from mlcore.demo_data import generate_demo

        data = generate_demo()
        report.rows_read = report.rows_kept = len(data)
        report.files["demo"] = {"rows_read": len(data), "rows_kept": len(data)}
        return LoadResult({"all": data}, data.label_names, report)
    if source_text.startswith("hf:"):
        return _load_hf(source_text[3:], text_column, label_column, label_names, require_labels, report)
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}", hint="Pass an existing file or directory, 'demo' or hf:<name>")
    if path.is_dir():
        files = _directory_files(path, report)
        if labels_file is None:
            labels_file = next((path / n for n in LABELS_FILE_NAMES if (path / n).is_file()), None)
        if labels_file is None:  # split directories as preprocess writes them carry labels.json
            labels_file = next((f.parent / SPLIT_LABELS_FILE for f in files.values()
                                if f.parent != path and (f.parent / SPLIT_LABELS_FILE).is_file()), None)
    else:
        files = {"all": path}
    names = list(label_names) if label_names else (read_labels_file(labels_file) if labels_file else None)
    sources: dict[str, _Source] = {}
    for split, file in files.items():
        sources[split] = _read_file(file, report, text_column, label_column, require_labels)
    wides = {tuple(s.wide) if s.wide else None for s in sources.values()}
    if len(wides) > 1:
        raise DatasetError(f"the split files have different label columns: {sorted(map(str, wides))}", path,
                           hint="Give every split file the same columns")
    splits, names = _resolve(sources, names, report)
    _check_result(splits, report, path)
    return LoadResult(splits, names, report)


def _hf_label_kind(feature) -> tuple[str, list[str] | None]:
    """('single'|'multi'|'names', ClassLabel names or None) for an hf label feature."""
    inner = getattr(feature, "feature", None)
    if inner is not None:  # Sequence/List of ClassLabel or Value
        return "multi", list(getattr(inner, "names", None) or []) or None
    names = getattr(feature, "names", None)
    return "single", list(names) if names else None


def _load_hf(spec: str, text_column, label_column, label_names, require_labels, report: LoadReport) -> LoadResult:
    """`datasets.load_dataset(name, config)` mapped onto train/validation/test with ClassLabel names."""
    name, _, config = spec.partition(":")
    where = f"hf:{spec}"
    if not name:
        raise DatasetError("empty dataset name", hint="Write hf:<name>[:<config>], e.g. hf:google-research-datasets/go_emotions:raw")
    try:
        import datasets
    except ImportError:
        raise DatasetError("hf: sources need the 'datasets' package", hint="pip install datasets") from None
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # offline: ConnectionError (OfflineModeIsEnabled, LocalEntryNotFoundError), ...
        first = (str(exc).splitlines() or [""])[0][:300]
        offline = isinstance(exc, (ConnectionError, OSError)) or "Hub" in first
        raise DatasetError(
            f"could not load the Hugging Face dataset {name!r}{f' (config {config!r})' if config else ''}: "
            f"{exc.__class__.__name__}: {first}",
            hint=("The Hugging Face Hub is unreachable from here (offline or blocked). " if offline else "")
            + "Download the data where the Hub is reachable (datasets.load_dataset(...).to_json(...) or the raw "
              "files) and pass a local file or directory instead (TSV/CSV/JSONL; train/dev/test files "
              "+ labels.txt)") from None
    if not isinstance(loaded, dict):
        loaded = {"train": loaded}
    sources: dict[str, _Source] = {}
    names = list(label_names) if label_names else None
    for split_name, table in loaded.items():
        split = SPLIT_NAMES.get(split_name.lower())
        if split is None:
            report.warnings.append(f"{where}: ignored split {split_name!r} (not train/validation/test)")
            continue
        source, split_names = _hf_split(table, f"{where}/{split_name}", text_column, label_column,
                                        require_labels, report)
        if split_names and names is None:
            names = split_names
        sources[split] = source
    if not sources:
        raise DatasetError(f"no train/validation/test split among {list(loaded)}", where,
                           hint="Use a local file instead")
    if names is None and any(s.wide for s in sources.values()):
        names = next(s.wide for s in sources.values() if s.wide)
    splits, names = _resolve(sources, names, report)
    _check_result(splits, report, where)
    return LoadResult(splits, names, report)


def _hf_split(table, where: str, text_column, label_column, require_labels, report) -> tuple[_Source, list | None]:
    """Raw rows of one hf split: long (ClassLabel / Sequence(ClassLabel) / strings) or wide (0/1 int columns)."""
    features = table.features
    columns = list(features)
    text_key = text_column or next((k for k in TEXT_COLUMNS if k in features), None)
    if text_key not in features:
        raise DatasetError(f"no text column{f' {text_column!r}' if text_column else ''} among {columns}", where,
                           hint="Pass --text-column")
    label_key = label_column or next((k for k in LABEL_COLUMNS if k in features), None)
    if label_column and label_column not in features:
        raise DatasetError(f"no label column {label_column!r} among {columns}", where, hint="Pass --label-column")
    reader = _Reader(where, report, require_labels)
    if label_key is None:  # wide: integer/bool columns other than ids
        wide = [k for k in columns if k != text_key and not _is_id_column(k)
                and getattr(features[k], "dtype", "") in ("bool", "int8", "int16", "int32", "int64", "float32",
                                                          "float64")]
        if not wide:
            raise DatasetError(f"no label column found among {columns}", where,
                               hint="Pass --label-column (or use a local file)")
        data = table.select_columns([text_key, *wide]).to_dict()
        for i in range(len(data[text_key])):
            record = [_cell(data[k][i]) for k in wide]
            labels = _wide_labels(record, list(range(len(wide))), wide, where, i + 1)
            reader.add(i + 1, data[text_key][i], labels, i)
        return reader.done(wide), None
    kind, names = _hf_label_kind(features[label_key])
    data = table.select_columns([text_key, label_key]).to_dict()
    for i, (text, value) in enumerate(zip(data[text_key], data[label_key]), start=1):
        values = value if isinstance(value, list) else [value]
        if kind == "single" and (value is None or value == -1):  # unlabelled rows (e.g. GLUE test sets)
            reader.add(i, text, None, i)
            continue
        reader.add(i, text, [names[v] if names and isinstance(v, int) and 0 <= v < len(names) else str(v)
                             for v in values if v is not None], i)
    return reader.done(), names


def _cell(value: Any) -> str:
    """An hf wide-label value as a table cell: 1.0 -> '1', True -> '1', None -> ''."""
    if value is None:
        return ""
    if isinstance(value, (bool, float)) and float(value).is_integer():
        return str(int(value))
    return str(value)


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
    source = _read_jsonl(data_file, report, "text", "labels", dedupe=False)  # equal rows may be distinct samples
    if report.dropped:
        raise DatasetError(f"{report.rows_dropped} unusable row(s): {report.summary()}", data_file,
                           hint="Re-run preprocess: its output has no empty texts")
    if not source.rows:
        raise DatasetError("no rows", data_file, hint="Re-run preprocess; every split needs at least one row")
    splits, _ = _resolve({"split": source}, names, report, allow_ids=False)
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
