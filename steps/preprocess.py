"""SageMaker processing entry script: load a dataset, split it, write the inter-step format.

in:  /opt/ml/processing/input/data (a file or directory of any shape mlcore.datasets reads),
     or --input demo | PATH | hf:<name>[:<config>]
out: /opt/ml/processing/output/{train,validation,test}/data.jsonl + labels.json,
     /opt/ml/processing/output/statistics/statistics.json
Runs unchanged in a SageMaker Processing container and locally (`python steps/preprocess.py`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlcore.config import PROCESSING_ROOT

SPLITS = ("train", "validation", "test")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-dir", type=Path, default=PROCESSING_ROOT / "input" / "data")
    parser.add_argument("--input", default=None, help="demo | PATH | hf:<name>[:<config>] (overrides --input-dir)")
    parser.add_argument("--labels-file", type=Path, default=None,
                        help="label names, one per line (line i = id i); default: labels.txt beside the data or "
                             "/opt/ml/processing/input/labels/labels.txt")
    parser.add_argument("--text-column", default=None)
    parser.add_argument("--label-column", default=None)
    parser.add_argument("--output-dir", type=Path, default=PROCESSING_ROOT / "output")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-rows", type=int, default=0, help="keep at most N rows per split (0 = all)")
    args = parser.parse_args(argv)
    for name in ("validation_fraction", "test_fraction"):
        if not 0.0 < getattr(args, name) < 0.5:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 0.5")
    return args


def split_data(result, args, log=print) -> dict:
    """The three splits: given ones kept (dev -> validation), a single file split with stratification."""
    from mlcore.splitting import iterative_stratification, stratified_split

    splits = dict(result.splits)
    if "all" in splits:
        data = splits.pop("all")
        index = stratified_split(data.matrix(), args.validation_fraction, args.test_fraction, args.seed)
        splits = {name: data.subset(rows) for name, rows in index.items()}
        log(f"split one file with multi-label stratification (seed {args.seed}): "
            + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    if "train" not in splits:
        raise SystemExit(f"error: no training split found (got {sorted(splits)}); provide train.* or a single file")
    for missing in [s for s in ("validation", "test") if s not in splits or len(splits[s]) == 0]:
        train = splits["train"]
        fraction = args.validation_fraction if missing == "validation" else args.test_fraction
        assignment = iterative_stratification(train.matrix(), [1 - fraction, fraction], args.seed)
        splits[missing] = train.subset([i for i, a in enumerate(assignment) if a == 1])
        splits["train"] = train.subset([i for i, a in enumerate(assignment) if a == 0])
        log(f"no {missing} split given: carved {len(splits[missing])} rows out of train (stratified)")
    if args.max_rows:
        splits = {k: v.subset(range(min(len(v), args.max_rows))) for k, v in splits.items()}
    return splits


def main(argv=None) -> int:
    args = parse_args(argv)
    from mlcore.datasets import DatasetError, load_source, statistics, write_split

    source = args.input or args.input_dir
    labels_file = args.labels_file
    default_labels = PROCESSING_ROOT / "input" / "labels" / "labels.txt"
    if labels_file is None and args.input is None and default_labels.exists():
        labels_file = default_labels
    try:
        result = load_source(source, labels_file=labels_file, text_column=args.text_column,
                             label_column=args.label_column)
        splits = split_data(result, args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {source}: {result.report.summary()}")
    for name in SPLITS:
        write_split(splits[name], args.output_dir / name)
    stats = statistics({name: splits[name] for name in SPLITS}, result.report)
    stats["source"] = str(source)
    (args.output_dir / "statistics").mkdir(parents=True, exist_ok=True)
    (args.output_dir / "statistics" / "statistics.json").write_text(json.dumps(stats, indent=2))
    print(f"{len(result.label_names)} labels: {', '.join(result.label_names)}")
    for name in SPLITS:
        s = stats["splits"][name]
        rare = sorted(s["label_counts"].items(), key=lambda kv: kv[1])[:3]
        print(f"{name:<10} rows={s['rows']:<6} labels/row={s['labels_per_row']:<5} without labels={s['rows_without_labels']:<5}"
              f" rarest: {', '.join(f'{k} {v}' for k, v in rare)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
