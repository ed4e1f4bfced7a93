"""One dataset loader for every step: TSV/CSV (long or wide), JSONL, hf:<name>, directories.

Bad input raises `DatasetError` naming file, line and problem; rows that are dropped (empty
text, duplicates of nothing) are counted in a `LoadReport`, never lost silently.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

TEXT_COLUMNS = ("text", "comment_text", "sentence", "content", "body", "review", "message", "document")
LABEL_COLUMNS = ("labels", "label", "emotions", "tags", "categories", "topics", "classes")
SPLIT_NAMES = {"train": "train", "dev": "validation", "validation": "validation", "val": "validation",
               "valid": "validation", "test": "test"}
DATA_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".txt")
LABELS_FILE_NAMES = ("labels.txt", "labels.json")
SPLIT_DATA_FILE = "data.jsonl"
SPLIT_LABELS_FILE = "labels.json"


class DatasetError(ValueError):
    """Unusable dataset input; the message names the file, the line and what to do."""

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None):
        where = f"{path}" if path else ""
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {problem}" if where else problem)
        self.path, self.line, self.problem = path, line, problem


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
        names = list(label_names)
        return cls(list(texts), [[names[j] for j in np.flatnonzero(row)] for row in np.asarray(matrix)], names)

    def subset(self, indices: Iterable[int]) -> "LabeledTexts":
        idx = list(indices)
        return LabeledTexts([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.label_names)

    def with_label_names(self, label_names: Sequence[str]) -> "LabeledTexts":
        unknown = sorted({n for row in self.labels for n in row} - set(label_names))
        if unknown:
            raise DatasetError(f"labels {unknown} are not among the known labels {list(label_names)}")
        return LabeledTexts(self.texts, self.labels, list(label_names))


@dataclass
class LoadReport:
    """What loading did: rows read and kept per file, dropped rows by reason (with first lines)."""

    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def drop(self, reason: str, path: Path, line: int) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(f"{path.name}:{line}")

    def summary(self) -> str:
        text = f"{self.rows_kept} of {self.rows_read} rows kept"
        if self.dropped:
            text += "; dropped: " + ", ".join(
                f"{n} {reason} (e.g. {', '.join(self.examples.get(reason, []))})" for reason, n in self.dropped.items()
            )
        return text + "".join(f"\nwarning: {w}" for w in self.warnings)

    def to_json(self) -> dict:
        return {"rows_read": self.rows_read, "rows_kept": self.rows_kept, "dropped": dict(self.dropped),
                "examples": self.examples, "warnings": self.warnings}


@dataclass
class LoadResult:
    splits: dict[str, LabeledTexts]
    label_names: list[str]
    report: LoadReport


# ----------------------------------------------------------------------------- raw rows
@dataclass
class _Row:
    text: str
    labels: list[str]  # raw tokens: names or ids
    line: int


def _decode_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file (BOM stripped); undecodable bytes are an error with line and byte offset."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        raise DatasetError(
            f"bytes are not valid UTF-8 at byte {column} of the line (byte {exc.start} of the file: "
            f"{data[exc.start:exc.start + 4]!r}); re-save the file as UTF-8", path, line,
        ) from None


def _split_labels(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [t.strip() for t in str(value).split(",") if t.strip()]


def _find_column(header: list[str], wanted: str | None, candidates: Sequence[str], path: Path, kind: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if wanted:
        if wanted.lower() not in lowered:
            raise DatasetError(f"no {kind} column named {wanted!r}; columns are {header}", path, 1)
        return lowered.index(wanted.lower())
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    return None


def _looks_like_header(first: list[str], text_column: str | None, label_column: str | None) -> bool:
    lowered = {c.strip().lower() for c in first}
    names = set(TEXT_COLUMNS) | set(LABEL_COLUMNS) | {c.lower() for c in (text_column, label_column) if c}
    return bool(lowered & names)


def _read_table(path: Path, report: LoadReport, text_column=None, label_column=None) -> tuple[list[_Row], list[str] | None]:
    """Rows of a TSV/CSV; returns (rows, wide label names or None for the long shape)."""
    lines = _decode_lines(path)
    if not lines:
        raise DatasetError("the file is empty", path)
    if path.suffix == ".csv":
        records = []
        reader = csv.reader(io.StringIO("\n".join(lines) + "\n"))
        start = 1
        try:
            for record in reader:
                records.append((start, record))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DatasetError(f"cannot parse CSV: {exc}", path, reader.line_num) from None
    else:  # TSV: tabs only, no quoting (Reddit text is full of quotes)
        records = [(i + 1, line.split("\t")) for i, line in enumerate(lines)]
    records = [(n, r) for n, r in records if any(c.strip() for c in r)]
    first_line, first = records[0]
    has_header = _looks_like_header(first, text_column, label_column)
    wide_names = None
    if has_header:
        header = [h.strip() for h in first]
        records = records[1:]
        text_idx = _find_column(header, text_column, TEXT_COLUMNS, path, "text")
        if text_idx is None:
            raise DatasetError(f"no text column found among {header}; name it 'text' or pass --text-column", path, 1)
        label_idx = _find_column(header, label_column, LABEL_COLUMNS, path, "label")
        if label_idx is None:  # wide: one 0/1 column per label
            wide_idx = [i for i, h in enumerate(header) if i != text_idx and not _is_id_column(h)]
            if not wide_idx:
                raise DatasetError(
                    f"no label column found among {header}: add a 'labels' column (comma-separated names or "
                    "ids) or one 0/1 column per label", path, 1)
            wide_names = [header[i] for i in wide_idx]
    else:
        header = None
        text_idx, label_idx = 0, 1  # GoEmotions' shape: text <TAB> labels [<TAB> id]
        if len(first) < 2:
            raise DatasetError(
                "no label column: expected 'text<TAB>labels' (or a header naming the text and label columns)",
                path, first_line)
    expected = len(header) if header else len(first)
    rows: list[_Row] = []
    for number, record in records:
        report.rows_read += 1
        if len(record) != expected:
            raise DatasetError(
                f"{len(record)} columns where {'the header has' if header else 'the first row has'} {expected}"
                f"{' (a tab inside the text?)' if path.suffix != '.csv' else ' (an unquoted comma?)'}", path, number)
        text = record[text_idx].strip()
        if wide_names is not None:
            labels = []
            for name, i in zip(wide_names, wide_idx):
                value = record[i].strip()
                if value not in {"0", "1", "0.0", "1.0", ""}:
                    raise DatasetError(f"column {name!r} holds {value!r}; label columns must be 0 or 1", path, number)
                if value in {"1", "1.0"}:
                    labels.append(name)
        else:
            labels = _split_labels(record[label_idx])
        if not text:
            report.drop("empty text", path, number)
            continue
        rows.append(_Row(text, labels, number))
    return rows, wide_names


def _is_id_column(name: str) -> bool:
    n = name.strip().lower()
    return n == "id" or n.endswith("_id") or n.endswith(" id") or n == "idx"


def _read_jsonl(path: Path, report: LoadReport, text_column=None, label_column=None) -> list[_Row]:
    text_key, label_key = text_column or "text", label_column or "labels"
    rows = []
    for number, line in enumerate(_decode_lines(path), start=1):
        if not line.strip():
            continue
        report.rows_read += 1
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, number) from None
        if not isinstance(doc, dict):
            raise DatasetError("expected a JSON object like {\"text\": ..., \"labels\": [...]}", path, number)
        if text_key not in doc:
            raise DatasetError(f"no {text_key!r} key (keys: {sorted(doc)})", path, number)
        labels = doc.get(label_key, doc.get("label"))
        if labels is not None and not isinstance(labels, (list, str, int)):
            raise DatasetError(f"{label_key!r} must be a list of names or ids, got {type(labels).__name__}", path, number)
        text = str(doc[text_key] or "").strip()
        if not text:
            report.drop("empty text", path, number)
            continue
        rows.append(_Row(text, _split_labels([labels] if isinstance(labels, int) else labels), number))
    return rows


def read_labels_file(path: Path) -> list[str]:
    """Label names from labels.txt (line i = id i) or labels.json ({"labels": [...]} or a list)."""
    if path.suffix == ".json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        names = doc["labels"] if isinstance(doc, dict) else doc
    else:
        names = [line.strip() for line in _decode_lines(path) if line.strip()]
    if not names:
        raise DatasetError("the labels file lists no labels", path)
    dupes = [n for n, c in Counter(names).items() if c > 1]
    if dupes:
        raise DatasetError(f"duplicate label names {dupes}", path)
    return [str(n) for n in names]


# ----------------------------------------------------------------------------- public API
def _read_file(path: Path, report: LoadReport, text_column, label_column) -> tuple[list[_Row], list[str] | None]:
    if path.suffix in (".jsonl", ".json"):
        return _read_jsonl(path, report, text_column, label_column), None
    if path.suffix in (".tsv", ".csv", ".txt"):
        return _read_table(path, report, text_column, label_column)
    raise DatasetError(f"unsupported file type {path.suffix!r}: use .tsv, .csv or .jsonl", path)


def _resolve_labels(files: dict[str, tuple[Path, list[_Row]]], label_names: list[str] | None,
                    wide: list[str] | None) -> tuple[dict[str, LabeledTexts], list[str]]:
    """Map raw label tokens (names or ids) to names; unknown labels are errors with file and line."""
    all_tokens = {t for _, rows in files.values() for r in rows for t in r.labels}
    if label_names is None:
        if wide is not None:
            label_names = wide
        elif all_tokens and all(t.isdigit() for t in all_tokens):
            label_names = [str(i) for i in range(max(int(t) for t in all_tokens) + 1)]
        else:
            label_names = sorted(all_tokens)
    index = set(label_names)
    splits = {}
    for split, (path, rows) in files.items():
        labels = []
        for r in rows:
            names = []
            for token in r.labels:
                if token in index:
                    names.append(token)
                elif token.isdigit() and wide is None:
                    if int(token) >= len(label_names):
                        raise DatasetError(
                            f"label id {token} is out of range: there are {len(label_names)} labels (ids 0-"
                            f"{len(label_names) - 1})", path, r.line)
                    names.append(label_names[int(token)])
                else:
                    raise DatasetError(f"unknown label {token!r}; known labels: {', '.join(label_names)}", path, r.line)
            labels.append(sorted(set(names), key=label_names.index))
        splits[split] = LabeledTexts([r.text for r in rows], labels, list(label_names))
    return splits, list(label_names)


def _split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in DATA_SUFFIXES and path.stem.lower() in SPLIT_NAMES and path.name not in LABELS_FILE_NAMES:
            split = SPLIT_NAMES[path.stem.lower()]
            if split in found:
                raise DatasetError(f"two files for the {split} split: {found[split].name} and {path.name}", directory)
            found[split] = path
    return found


def load_source(source: str | Path, labels_file: str | Path | None = None, text_column: str | None = None,
                label_column: str | None = None, label_names: Sequence[str] | None = None) -> LoadResult:
    """Load a dataset file, a directory of split files, `hf:<name>[:<config>]` or "demo"."""
    report = LoadReport()
    source_text = str(source)
    if source_text == "demo":
        from mlcore.demo_data import generate_demo

        data = generate_demo()
        report.rows_read = report.rows_kept = len(data)
        return LoadResult({"all": data}, data.label_names, report)
    if source_text.startswith("hf:"):
        return _load_hf(source_text[3:], text_column, label_column, report)
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    names = list(label_names) if label_names else None
    if path.is_dir():
        files = _split_files(path)
        if not files:
            candidates = [p for p in sorted(path.iterdir()) if p.suffix in DATA_SUFFIXES and p.name not in LABELS_FILE_NAMES]
            if len(candidates) != 1:
                raise DatasetError(
                    f"expected train/dev(validation)/test files or exactly one data file; found "
                    f"{[p.name for p in candidates] or 'none'}", path)
            files = {"all": candidates[0]}
        if labels_file is None:
            labels_file = next((path / n for n in LABELS_FILE_NAMES if (path / n).exists()), None)
    else:
        files = {"all": path}
    if labels_file is not None and names is None:
        names = read_labels_file(Path(labels_file))
    raw: dict[str, tuple[Path, list[_Row]]] = {}
    wide_seen: list[str] | None = None
    for split, file in files.items():
        rows, wide = _read_file(file, report, text_column, label_column)
        if wide is not None:
            if wide_seen is not None and wide != wide_seen:
                raise DatasetError(f"label columns {wide} differ from the other split's {wide_seen}", file, 1)
            wide_seen = wide
        raw[split] = (file, rows)
    splits, names = _resolve_labels(raw, names, wide_seen)
    report.rows_kept = sum(len(s) for s in splits.values())
    if report.rows_kept == 0:
        raise DatasetError(f"no usable rows ({report.summary()})", path)
    if not any(row for s in splits.values() for row in s.labels):
        raise DatasetError("no row has any label: check the label column (or the labels file)", path)
    return LoadResult(splits, names, report)


def _load_hf(spec: str, text_column, label_column, report: LoadReport) -> LoadResult:
    """`datasets.load_dataset(name, config)` mapped onto train/validation/test with label names."""
    name, _, config = spec.partition(":")
    try:
        import datasets
    except ImportError:
        raise DatasetError("hf: sources need the 'datasets' package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as exc:  # offline: ConnectionError / DatasetNotFoundError / OfflineModeIsEnabled
        raise DatasetError(
            f"could not load Hugging Face dataset {spec!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}). "
            "The Hub may be unreachable from this machine: download the data elsewhere and pass a local "
            "file or directory instead (TSV/CSV/JSONL)."
        ) from None
    splits: dict[str, LabeledTexts] = {}
    names: list[str] | None = None
    for split_name, table in ds.items():
        features = table.features
        text_key = text_column or next((k for k in TEXT_COLUMNS if k in features), None)
        label_key = label_column or next((k for k in LABEL_COLUMNS if k in features), None)
        if text_key is None or label_key is None:
            raise DatasetError(f"hf:{spec} split {split_name}: cannot find text/label columns in {list(features)}; "
                               "pass --text-column and --label-column")
        feature = features[label_key]
        inner = getattr(feature, "feature", feature)
        names = list(getattr(inner, "names", None) or names or [])
        texts, labels = [], []
        for number, row in enumerate(table, start=1):
            report.rows_read += 1
            text = str(row[text_key] or "").strip()
            if not text:
                report.drop("empty text", Path(f"hf:{spec}/{split_name}"), number)
                continue
            value = row[label_key]
            ids = value if isinstance(value, list) else [value]
            texts.append(text)
            labels.append([names[i] if names else str(i) for i in ids])
        if not names:
            names = sorted({l for row in labels for l in row})
        splits[SPLIT_NAMES.get(split_name, split_name)] = LabeledTexts(texts, labels, names)
    report.rows_kept = sum(len(s) for s in splits.values())
    return LoadResult(splits, names or [], report)


def write_split(data: LabeledTexts, directory: str | Path) -> Path:
    """Write the inter-step format: data.jsonl + labels.json (the model's label order)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / SPLIT_DATA_FILE, "w", encoding="utf-8") as fh:
        for text, labels in zip(data.texts, data.labels):
            fh.write(json.dumps({"text": text, "labels": labels}, ensure_ascii=False) + "\n")
    (directory / SPLIT_LABELS_FILE).write_text(json.dumps({"labels": data.label_names}, indent=1))
    return directory


def read_split(directory: str | Path) -> LabeledTexts:
    """Read a split written by preprocess (data.jsonl + labels.json), validating every row."""
    directory = Path(directory)
    data_file, labels_path = directory / SPLIT_DATA_FILE, directory / SPLIT_LABELS_FILE
    if not data_file.exists():
        raise DatasetError(f"no {SPLIT_DATA_FILE} in {directory}: point to a split directory written by preprocess")
    names = read_labels_file(labels_path) if labels_path.exists() else None
    report = LoadReport()
    rows = _read_jsonl(data_file, report)
    splits, names = _resolve_labels({"split": (data_file, rows)}, names, None)
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
    """Data statistics written by preprocess: rows and label counts per split, lengths, drops."""
    out = {"labels": next(iter(splits.values())).label_names, "splits": {}}
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
        out["load_report"] = report.to_json()
    return out

