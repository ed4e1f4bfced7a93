"""SageMaker processing entry script: load a dataset, split it, write the inter-step format.

in:  /opt/ml/processing/input/data (a file or directory of any shape mlcore.datasets reads),
     or --input demo | PATH | hf:<name>[:<config>]; labels from --labels-file, labels.txt beside
     the data, or /opt/ml/processing/input/labels/labels.txt
out: /opt/ml/processing/output/{train,validation,test}/data.jsonl + labels.json,
     /opt/ml/processing/output/statistics/statistics.json
Given split files are kept (dev -> validation); a single file is split with multi-label
stratification. Exit status 2 with a precise message on bad input.
Runs unchanged in a SageMaker Processing container and locally (`python steps/preprocess.py`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mlcore.config import PROCESSING_ROOT
from mlcore.logs import configure_step_logging

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
DEFAULT_INPUT_DIR = PROCESSING_ROOT / "input" / "data"
DEFAULT_LABELS_FILE = PROCESSING_ROOT / "input" / "labels" / "labels.txt"
DEFAULT_OUTPUT_DIR = PROCESSING_ROOT / "output"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-dir", type=Path, default=DEFAULT_INPUT_DIR, help="dataset file or directory")
    parser.add_argument("--input", default=None, help="demo | PATH | hf:<name>[:<config>] (overrides --input-dir)")
    parser.add_argument("--labels-file", type=Path, default=None,
                        help=f"label names, one per line (line i = id i-1); default: labels.txt beside the data, "
                             f"else {DEFAULT_LABELS_FILE} when it exists")
    parser.add_argument("--text-column", default=None, help="name of the text column/key (default: detected)")
    parser.add_argument("--label-column", default=None, help="name of the labels column/key (default: detected)")
    parser.add_argument("--require-labels", action="store_true",
                        help="drop (and count) rows without any label instead of keeping them as negatives")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-rows", type=int, default=0,
                        help="keep at most N rows per split, a seeded random sample (0 = all)")
    parser.add_argument("--data-version", default=None,
                        help="label of the data read (the pipeline's DataVersion, e.g. the schedule's time); recorded "
                             "in statistics.json, and part of the step's cache key")
    args = parser.parse_args(argv)
    for name in ("validation_fraction", "test_fraction"):
        if not 0.0 < getattr(args, name) < 0.5:
            parser.error(f"--{name.replace('_', '-')} must be > 0 and < 0.5, got {getattr(args, name)}")
    if args.max_rows < 0:
        parser.error(f"--max-rows must be >= 0 (0 = all rows), got {args.max_rows}")
    return args


def split_data(result, args) -> tuple[dict, list[str]]:
    """The three splits (given ones kept, a single file split with stratification) and notes on what was done."""
    from mlcore.datasets import DatasetError

    splits, notes = dict(result.splits), []
    if "all" in splits or set(splits) == {"train"}:
        splits = _split_single(splits, "all" in result.splits, args, notes)
    if len(splits.get("train", ())) == 0:
        raise DatasetError(f"no training rows: the source has {', '.join(f'{k} ({len(v)} rows)' for k, v in splits.items())}",
                           args.input or args.input_dir, hint="Provide a train.* file or a single data file")
    for missing in [s for s in ("validation", "test") if len(splits.get(s, ())) == 0]:
        _carve(splits, missing, args, notes)
    if args.max_rows:
        _sample(splits, args, notes)
    for name in SPLITS:
        counts = splits[name].matrix().sum(axis=0)
        absent = [label for label, count in zip(splits[name].label_names, counts) if count == 0]
        if absent:
            notes.append(f"warning: {len(absent)} label(s) have no example in {name}: {', '.join(absent[:10])}")
    for note in notes:
        logger.info(note)
    return {name: splits[name] for name in SPLITS}, notes


def _split_single(splits: dict, one_file: bool, args, notes: list[str]) -> dict:
    """One file (or only a train split): train/validation/test with multi-label stratification."""
    from mlcore.splitting import stratified_split

    data = splits.pop("all") if "all" in splits else splits.pop("train")
    index = stratified_split(data.matrix(), args.validation_fraction, args.test_fraction, args.seed)
    splits = {name: data.subset(rows) for name, rows in index.items()}
    notes.append(f"{'one file' if one_file else 'only a train split'} given: split "
                 f"{len(data)} rows with multi-label stratification (seed {args.seed}): "
                 + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return splits


def _carve(splits: dict, missing: str, args, notes: list[str]) -> None:
    """A missing validation or test split, carved out of train (stratified)."""
    from mlcore.datasets import DatasetError
    from mlcore.splitting import iterative_stratification

    train = splits["train"]
    if len(train) < 2:
        raise DatasetError(f"cannot carve a {missing} split out of {len(train)} training row(s)",
                           args.input or args.input_dir, hint="Provide more rows or a validation/test file")
    fraction = args.validation_fraction if missing == "validation" else args.test_fraction
    assignment = iterative_stratification(train.matrix(), [1 - fraction, fraction], args.seed)
    splits[missing] = train.subset([i for i, a in enumerate(assignment) if a == 1])
    splits["train"] = train.subset([i for i, a in enumerate(assignment) if a == 0])
    notes.append(f"no {missing} rows given: carved {len(splits[missing])} rows out of train "
                 f"(stratified, {fraction:.0%})")


def _sample(splits: dict, args, notes: list[str]) -> None:
    """--max-rows: a seeded random sample of each split that is larger."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    for name in SPLITS:
        if len(splits[name]) > args.max_rows:
            keep = np.sort(rng.choice(len(splits[name]), args.max_rows, replace=False))
            notes.append(f"--max-rows {args.max_rows}: kept {args.max_rows} of {len(splits[name])} {name} rows")
            splits[name] = splits[name].subset(keep.tolist())


def labels_table(stats: dict) -> str:
    """Per-label counts per split as an aligned text table (rarest labels last)."""
    labels = stats["labels"]
    width = max([len(l) for l in labels] + [5])
    lines = [f"{'label':<{width}}  " + "  ".join(f"{s:>10}" for s in SPLITS)]
    rows = sorted(labels, key=lambda l: -stats["splits"]["train"]["label_counts"][l])
    for label in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{stats['splits'][s]['label_counts'][label]:>10}" for s in SPLITS))
    lines.append(f"{'(rows)':<{width}}  " + "  ".join(f"{stats['splits'][s]['rows']:>10}" for s in SPLITS))
    return "\n".join(lines)


def main(argv=None) -> int:
    configure_step_logging()
    args = parse_args(argv)
    from mlcore.datasets import DatasetError, load_source, statistics, write_split

    source = args.input or args.input_dir
    labels_file = args.labels_file
    if labels_file is None and str(source) != "demo" and not str(source).startswith("hf:") \
            and DEFAULT_LABELS_FILE.is_file() and not (Path(source).is_dir() and (Path(source) / "labels.txt").is_file()):
        labels_file = DEFAULT_LABELS_FILE
    try:
        logger.info("loading %s%s", source, f" (labels: {labels_file})" if labels_file else "")
        result = load_source(source, labels_file=labels_file, text_column=args.text_column,
                             label_column=args.label_column, require_labels=args.require_labels)
        logger.info("loaded: %s", result.report.summary())
        splits, notes = split_data(result, args)
    except DatasetError as exc:
        logger.error("%s", exc)
        return 2
    for name in SPLITS:
        write_split(splits[name], args.output_dir / name)
    stats = statistics(splits, result.report)
    stats.update(source=str(source), labels_file=str(labels_file) if labels_file else None, seed=args.seed,
                 fractions={"validation": args.validation_fraction, "test": args.test_fraction},
                 max_rows=args.max_rows or None, data_version=args.data_version, notes=notes)
    (args.output_dir / "statistics").mkdir(parents=True, exist_ok=True)
    (args.output_dir / "statistics" / "statistics.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
    logger.info("%d labels; label counts per split:", len(result.label_names))
    logger.info(labels_table(stats))
    for name in SPLITS:
        s = stats["splits"][name]
        logger.info(f"{name:<10} rows={s['rows']:<6} labels/row={s['labels_per_row']:<6} without labels="
                    f"{s['rows_without_labels']:<5} chars p50/p95={s['length']['chars']['p50']:.0f}/"
                    f"{s['length']['chars']['p95']:.0f}")
    logger.info("wrote %s and statistics/statistics.json", ", ".join(str(args.output_dir / n) for n in SPLITS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
