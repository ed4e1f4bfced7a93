"""Label names: the labels file, raw tokens (names or ids) resolved to names, and checks of the result."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from mlcore.datasets.model import DatasetError, LabeledTexts, LoadReport
from mlcore.datasets.rows import Source, decode_text, text_lines


def read_labels_file(path: str | Path) -> list[str]:
    """Label names from labels.txt (line i = id i) or labels.json ({"labels": [...]} or a list)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("labels file not found", path, hint="Pass an existing file to --labels-file")
    if path.suffix == ".json":
        try:
            doc = json.loads(decode_text(path))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON ({exc.msg})", path, exc.lineno) from None
        names = doc.get("labels") if isinstance(doc, dict) else doc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError('expected {"labels": ["name", ...]}', path, hint="List the label names as strings")
    else:
        lines = text_lines(decode_text(path))
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


def resolve_labels(sources: dict[str, Source], label_names: list[str] | None, report: LoadReport,
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


def check_result(splits: dict[str, LabeledTexts], report: LoadReport, where) -> None:
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
