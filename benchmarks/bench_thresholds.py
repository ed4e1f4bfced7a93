"""Threshold strategies on models already trained: per-label thresholds vs thresholds shrunk toward a shared one.

For each model of a `bench_quality.py` output folder (its summary.json rows, or --model-dir), predicts the
validation and test splits once (torch, fp32) and prints test macro-F1 with thresholds fitted on validation
only, by each strategy: per-label (shrink 0, what training wrote before `threshold_shrink`), a fixed shrink, and
the shrink chosen by 2-fold cross-validation on validation (the default, `mlcore.metrics.fit_thresholds`).
Validation decides everything; test is scored once per strategy, for the table.

    .venv/bin/python benchmarks/bench_thresholds.py --out benchmarks/results/quality-cpudropout [--out ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_quality import rows_from  # noqa: E402

from mlcore.datasets import read_split  # noqa: E402
from mlcore.metrics import choose_threshold_shrink, quick_scores, tune_thresholds  # noqa: E402
from mlcore.predictor import load_predictor  # noqa: E402

GRID = np.linspace(0.05, 0.95, 37)  # TrainingConfig.threshold_grid's default
FIXED = (10.0, 40.0, 160.0)


def models_of(out: Path) -> list[tuple[str, Path, Path]]:
    """(row name, model dir, data dir) of each row of a bench_quality run (its `rows_from`)."""
    return [(f"{out.name}: {r['name']}", r["model_dir"], out / "data") for r in rows_from(out)]


def score(name: str, model_dir: Path, data_dir: Path) -> dict:
    predictor = load_predictor(model_dir, backend="torch")
    dev, test = read_split(data_dir / "validation"), read_split(data_dir / "test")
    y_dev, y_test = (s.with_label_names(predictor.label_names).matrix() for s in (dev, test))
    p_dev, p_test = (predictor.predict_proba(s.texts, 128) for s in (dev, test))
    chosen = choose_threshold_shrink(y_dev, p_dev, GRID)
    row = {"model": name, "chosen_shrink": chosen}
    for label, k in [("per-label", 0.0), *((f"shrink {k:g}", k) for k in FIXED), ("chosen on dev", chosen)]:
        thresholds = tune_thresholds(y_dev, p_dev, GRID, shrink=k)
        row[label] = quick_scores(y_test, p_test, thresholds)["f1_macro"]
    row["stored thresholds"] = quick_scores(y_test, p_test, predictor.thresholds)["f1_macro"]
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, action="append", default=[], help="a bench_quality.py output folder")
    parser.add_argument("--model-dir", type=Path, help="one model, with --data (a preprocessed data folder)")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "thresholds.json")
    args = parser.parse_args()
    targets = [m for out in args.out for m in models_of(out)]
    if args.model_dir:
        if not args.data:
            parser.error("--model-dir needs --data (bench_quality.py's <out>/data)")
        targets.append((str(args.model_dir), args.model_dir, args.data))
    if not targets:
        parser.error("nothing to score: pass --out (a bench_quality.py folder) or --model-dir with --data")
    rows = [score(*t) for t in targets]
    columns = ["stored thresholds", "per-label", *(f"shrink {k:g}" for k in FIXED), "chosen on dev"]
    print("\ntest macro-F1 by threshold strategy (thresholds fitted on validation only)")
    print("| model | " + " | ".join(columns) + " | shrink chosen | chosen minus per-label |")
    print("|" + " --- |" * (len(columns) + 3))
    for r in rows:
        print(f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in columns)
              + f" | {r['chosen_shrink']:g} | {r['chosen on dev'] - r['per-label']:+.4f} |")
    gains = [r["chosen on dev"] - r["per-label"] for r in rows]
    print(f"chosen minus per-label: mean {np.mean(gains):+.4f}, min {min(gains):+.4f}, max {max(gains):+.4f} "
          f"over {len(rows)} models")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
