"""`hf:<name>[:<config>]` sources through `datasets.load_dataset`, mapped onto train/validation/test."""
from __future__ import annotations

from typing import Any

from mlcore.datasets.labels import check_result, resolve_labels
from mlcore.datasets.model import SPLIT_NAMES, DatasetError, LoadReport, LoadResult
from mlcore.datasets.rows import LABEL_COLUMNS, TEXT_COLUMNS, RowReader, Source
from mlcore.datasets.tables import is_id_column, wide_labels


def _hf_label_kind(feature) -> tuple[str, list[str] | None]:
    """('single'|'multi'|'names', ClassLabel names or None) for an hf label feature."""
    inner = getattr(feature, "feature", None)
    if inner is not None:  # Sequence/List of ClassLabel or Value
        return "multi", list(getattr(inner, "names", None) or []) or None
    names = getattr(feature, "names", None)
    return "single", list(names) if names else None


def load_hf(spec: str, text_column, label_column, label_names, require_labels, report: LoadReport) -> LoadResult:
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
    sources: dict[str, Source] = {}
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
    splits, names = resolve_labels(sources, names, report)
    check_result(splits, report, where)
    return LoadResult(splits, names, report)


def _hf_split(table, where: str, text_column, label_column, require_labels, report) -> tuple[Source, list | None]:
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
    reader = RowReader(where, report, require_labels)
    if label_key is None:  # wide: integer/bool columns other than ids
        wide = [k for k in columns if k != text_key and not is_id_column(k)
                and getattr(features[k], "dtype", "") in ("bool", "int8", "int16", "int32", "int64", "float32",
                                                          "float64")]
        if not wide:
            raise DatasetError(f"no label column found among {columns}", where,
                               hint="Pass --label-column (or use a local file)")
        data = table.select_columns([text_key, *wide]).to_dict()
        for i in range(len(data[text_key])):
            record = [_cell(data[k][i]) for k in wide]
            labels = wide_labels(record, list(range(len(wide))), wide, where, i + 1)
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
