"""One dataset loader for every step: TSV/CSV (long or wide), JSONL, hf:<name>, directories, the demo.

Bad input raises `DatasetError` naming file, line and problem; rows that are dropped (empty
text, exact duplicate rows, unlabelled rows) are counted in a `LoadReport`, never lost silently.

Modules by job: `model` (LabeledTexts, LoadReport, errors), `rows` (reading primitives), `tables`
(TSV/CSV), `jsonl`, `hf`, `labels` (labels file, ids -> names), `loader` (`load_source`: files,
directories, "demo"), `splits` (the inter-step format and statistics), `demo` (the demo dataset).
"""
from mlcore.datasets.labels import read_labels_file
from mlcore.datasets.loader import load_source
from mlcore.datasets.model import DatasetError, LabeledTexts, LoadReport, LoadResult
from mlcore.datasets.splits import read_split, statistics, text_length_stats, write_split

__all__ = ["DatasetError", "LabeledTexts", "LoadReport", "LoadResult", "load_source", "read_labels_file",
           "read_split", "statistics", "text_length_stats", "write_split"]
