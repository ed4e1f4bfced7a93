"""`load_source`: a dataset file, a directory of split files, `hf:<name>[:<config>]` or "demo"."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlcore.datasets.demo import generate_demo
from mlcore.datasets.hf import load_hf
from mlcore.datasets.jsonl import read_jsonl
from mlcore.datasets.labels import check_result, read_labels_file, resolve_labels
from mlcore.datasets.model import SPLIT_NAMES, DatasetError, LoadReport, LoadResult
from mlcore.datasets.rows import Source
from mlcore.datasets.splits import SPLIT_DATA_FILE, SPLIT_LABELS_FILE
from mlcore.datasets.tables import read_table

# File suffix -> the reader of that format (one error for every other suffix).
READERS = {".tsv": read_table, ".csv": read_table, ".txt": read_table, ".jsonl": read_jsonl, ".json": read_jsonl}
DATA_SUFFIXES = tuple(READERS)
LABELS_FILE_NAMES = ("labels.txt", "labels.json")


def _read_file(path: Path, report: LoadReport, text_column, label_column, require_labels) -> Source:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(f"unsupported file type {path.suffix or '(none)'!r}", path,
                           hint="Use .tsv, .csv or .jsonl (or a directory of train/dev/test files)")
    return reader(path, report, text_column, label_column, require_labels)


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
            data_file = _data_file_in(path)
            if data_file is None:
                continue
            path = data_file
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
        data = generate_demo()
        report.rows_read = report.rows_kept = len(data)
        report.files["demo"] = {"rows_read": len(data), "rows_kept": len(data)}
        return LoadResult({"all": data}, data.label_names, report)
    if source_text.startswith("hf:"):
        return load_hf(source_text[3:], text_column, label_column, label_names, require_labels, report)
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
    sources: dict[str, Source] = {}
    for split, file in files.items():
        sources[split] = _read_file(file, report, text_column, label_column, require_labels)
    wides = {tuple(s.wide) if s.wide else None for s in sources.values()}
    if len(wides) > 1:
        raise DatasetError(f"the split files have different label columns: {sorted(map(str, wides))}", path,
                           hint="Give every split file the same columns")
    splits, names = resolve_labels(sources, names, report)
    check_result(splits, report, path)
    return LoadResult(splits, names, report)
