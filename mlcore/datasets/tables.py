"""TSV/CSV files: header or not (GoEmotions' headerless TSV), long (a labels column) or wide (one 0/1 column per label)."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlcore.datasets.model import DatasetError, LoadReport
from mlcore.datasets.rows import LABEL_COLUMNS, TEXT_COLUMNS, RowReader, Source, decode_text, split_labels, text_lines

_ID_COLUMN = re.compile(r"(?i:(?:.*[_\s.-])?(?:id|ids|idx|index|uuid|guid))|.*[a-z]Id|(?i:unnamed: ?\d+)")
_ID_LIST = re.compile(r"\s*-?\d+(?:\s*,\s*-?\d+)*\s*")
_WIDE_TRUE, _WIDE_FALSE, _WIDE_UNLABELLED = {"1", "1.0", "true"}, {"0", "0.0", "false"}, {"-1", "-1.0"}


def is_id_column(name: str) -> bool:
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
        records = [(i, line.split("\t")) for i, line in enumerate(text_lines(text), start=1)]
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


@dataclass
class _Columns:
    """Where the text and labels are: a labels column (`label_idx`) or wide 0/1 columns (`wide_idx`)."""

    header: list[str] | None
    text_idx: int
    label_idx: int | None
    wide_idx: list[int] = field(default_factory=list)

    @property
    def wide_names(self) -> list[str] | None:
        return [self.header[i] for i in self.wide_idx] if self.header and self.wide_idx else None


def _header_columns(header: list[str], text_column, label_column, path: Path, line: int) -> _Columns:
    """Columns named by the header (or the flags); without a labels column, the wide shape."""
    text_idx = _find_column(header, text_column, TEXT_COLUMNS, path, "text", "--text-column")
    if text_idx is None:
        raise DatasetError(f"no text column found in the header {header}", path, line,
                           hint=f"Name it one of {list(TEXT_COLUMNS[:4])} or pass --text-column")
    label_idx = _find_column(header, label_column, LABEL_COLUMNS, path, "label", "--label-column")
    if label_idx is not None:
        return _Columns(header, text_idx, label_idx)
    wide_idx = [i for i, h in enumerate(header) if i != text_idx and not is_id_column(h)]  # id-like columns ignored
    if not wide_idx:
        raise DatasetError(
            f"no label column found in the header {header}", path, line,
            hint="Add a 'labels' column (comma-separated names or ids), one 0/1 column per label, "
                 "or pass --label-column")
    return _Columns(header, text_idx, None, wide_idx)


def _columns(records: list[tuple[int, list[str]]], kind: str, path: Path, text_column, label_column) -> _Columns:
    """The columns of a table from its first row: a header, or GoEmotions' headerless text <TAB> labels [<TAB> id]."""
    first_line, first = records[0]
    names = set(TEXT_COLUMNS) | set(LABEL_COLUMNS) | {c.lower() for c in (text_column, label_column) if c}
    if _looks_like_header(first, records[1][1] if len(records) > 1 else None, names, kind):
        return _header_columns([h.strip() for h in first], text_column, label_column, path, first_line)
    if text_column or label_column:
        raise DatasetError(f"--text-column/--label-column name columns, but the first row {first[:4]} is not a "
                           "header", path, first_line, hint="Add a header row or leave the column flags out")
    if len(first) < 2:
        raise DatasetError(f"no label column: the first row has a single {kind} column", path, first_line,
                           hint="Expected 'text<TAB>labels[<TAB>id]' without a header, or a header naming "
                                "the text and label columns")
    return _Columns(None, 0, 1)


def read_table(path: Path, report: LoadReport, text_column=None, label_column=None,
               require_labels=False) -> Source:
    """Rows of a TSV/CSV in the long shape (text + labels column) or the wide shape (one 0/1 column per label)."""
    kind, records = _table_records(path, decode_text(path))
    if not records:
        raise DatasetError("the file is empty", path, hint="Point to a file with one row per text")
    columns = _columns(records, kind, path, text_column, label_column)
    header = columns.header
    if header:
        records = records[1:]
    expected = len(header) if header else len(records[0][1])
    wide_names = columns.wide_names
    reader = RowReader(path, report, require_labels)
    for number, record in records:
        if len(record) != expected:
            raise DatasetError(
                f"{len(record)} columns where {'the header has' if header else 'the first row has'} {expected}",
                path, number, hint="A tab inside the text? Replace it by a space" if kind == "TSV"
                else "An unquoted comma? Quote fields that contain commas")
        labels: list[str] | None
        if columns.label_idx is not None:
            labels = split_labels(record[columns.label_idx])
        else:
            labels = wide_labels(record, columns.wide_idx, wide_names or [], path, number)
        reader.add(number, record[columns.text_idx], labels, tuple(record))
    return reader.done(wide_names)


def wide_labels(record: list[str], idx: list[int], names: list[str], path, line) -> list[str] | None:
    """Names of the 1-columns of a wide row; None when every column is -1 (unlabelled, e.g. Jigsaw test)."""
    values = [record[i].strip().lower() for i in idx]
    if values and all(v in _WIDE_UNLABELLED for v in values):
        return None
    for name, value in zip(names, values):
        if value not in _WIDE_TRUE | _WIDE_FALSE:
            raise DatasetError(f"column {name!r} holds {value!r}, but label columns must be 0 or 1", path, line,
                               hint="Fix the value, or pass --label-column if this file has a labels column")
    return [name for name, value in zip(names, values) if value in _WIDE_TRUE]
