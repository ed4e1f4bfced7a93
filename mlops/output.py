"""How the CLI prints lists: `--output table` (aligned columns, the default) or `--output json` (for scripts
and `jq`), as `aws` and `sam` do."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Sequence, Union

Column = tuple[str, Union[str, Callable[[dict], Any]]]  # (header, field name or function of the item)

FORMATS = ("table", "json")


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", choices=FORMATS, default="table",
                        help="table (default) or json (a list of objects, for scripts)")


def table(rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns; the first row is the header, underlined."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(items: list[dict], columns: Sequence[Column], fmt: str, title: str | None = None,
         empty: str = "nothing to list") -> None:
    """Print `items` as JSON (all their fields) or as a table of `columns`."""
    if fmt == "json":
        print(json.dumps(items, indent=2, default=str))
        return
    if not items:
        print(empty)
        return
    if title:
        print(title)
    print(table([[header for header, _ in columns]]
                + [[_cell(key(item) if callable(key) else item.get(key)) for _, key in columns] for item in items]))


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
