"""JSON Lines files: one {"text": ..., "labels": [names or ids]} object a line (other key names detected)."""
from __future__ import annotations

import json
from pathlib import Path

from mlcore.datasets.model import DatasetError, LoadReport
from mlcore.datasets.rows import LABEL_COLUMNS, TEXT_COLUMNS, RowReader, Source, decode_text, split_labels, text_lines


def read_jsonl(path: Path, report: LoadReport, text_column=None, label_column=None,
                require_labels=False, dedupe=True) -> Source:
    """Rows of a JSON Lines file: {"text": ..., "labels": [names or ids]} (other key names detected)."""
    text = decode_text(path)
    if text.lstrip().startswith("["):
        raise DatasetError("this is a JSON array, but the loader reads JSON Lines", path, 1,
                           hint="Write one object per line (e.g. `jq -c '.[]' in.json > out.jsonl`)")
    reader = RowReader(path, report, require_labels, dedupe)
    for number, line in enumerate(text_lines(text), start=1):
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
        labels = None if labels == -1 else split_labels([labels] if isinstance(labels, int) else labels)
        reader.add(number, doc[text_key], labels, json.dumps(doc, sort_keys=True))
    return reader.done()
