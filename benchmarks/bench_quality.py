"""Quality benchmark on GoEmotions: train on train, tune thresholds on dev, score on test.

Runs the very step scripts of the pipeline (preprocess -> train -> evaluate) and prints test
macro/micro F1, ROC AUC, training wall time and peak memory, next to the published references.

    .venv/bin/python benchmarks/bench_quality.py [--epochs 3] [--out benchmarks/results/quality]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOEMOTIONS = REPO.parent / "shared" / "datasets" / "goemotions"
REFERENCES = {"GoEmotions paper, BERT-base": 0.46, "monologg bert-base-cased, 10 epochs": 0.503}


def run(cmd: list[str], env: dict | None = None) -> float:
    """Run a step script, streaming its output; return wall seconds (exit on failure)."""
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})})
    if proc.returncode:
        sys.exit(f"step failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=GOEMOTIONS)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality")
    parser.add_argument("--base-model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--learning-rate", default="6e-5")
    parser.add_argument("--head-learning-rate", default="2e-3")
    parser.add_argument("--max-length", default="64")
    parser.add_argument("--max-rows", default="0", help="limit rows per split (0 = all), for a quick check")
    args = parser.parse_args()
    if not (args.data / "train.tsv").exists():
        sys.exit(f"GoEmotions not found at {args.data}: pass --data DIR (train/dev/test.tsv + labels.txt)")

    out = args.out
    py = sys.executable
    data_dir, model_dir, eval_dir = out / "data", out / "model", out / "evaluation"
    t_pre = run([py, str(REPO / "steps/preprocess.py"), "--input", str(args.data), "--output-dir", str(data_dir),
                 *(["--max-rows", args.max_rows] if args.max_rows != "0" else [])])
    t_train = run([py, str(REPO / "steps/train.py"), "--base-model", args.base_model, "--epochs", args.epochs,
                   "--learning-rate", args.learning_rate, "--head-learning-rate", args.head_learning_rate,
                   "--max-length", args.max_length, "--export-onnx", "false",
                   "--train-dir", str(data_dir / "train"), "--validation-dir", str(data_dir / "validation"),
                   "--model-dir", str(model_dir), "--output-data-dir", str(out / "train-output")])
    t_eval = run([py, str(REPO / "steps/evaluate.py"), "--model-path", str(model_dir),
                  "--test-dir", str(data_dir / "test"), "--output-dir", str(eval_dir)])

    metrics = json.loads((eval_dir / "evaluation.json").read_text())["multilabel_classification_metrics"]
    summary = json.loads((model_dir / "training_summary.json").read_text())
    rows = [
        ("test macro F1", f"{metrics['f1_macro']['value']:.4f} ± {metrics['f1_macro']['standard_deviation']:.4f}"),
        ("test micro F1", f"{metrics['f1_micro']['value']:.4f}"),
        ("test macro ROC AUC", f"{metrics['roc_auc_macro']['value']:.4f}"),
        ("test micro ROC AUC", f"{metrics['roc_auc_micro']['value']:.4f}"),
        ("dev macro F1 (tuned thresholds)", f"{summary['validation']['f1_macro']:.4f}"),
        ("best epoch / epochs", f"{summary['best_epoch']} / {args.epochs}"),
        ("training wall time", f"{t_train / 60:.1f} min ({summary['device']}, {summary['precision']})"),
        ("training peak RSS", f"{summary['peak_rss_mb']:.0f} MB"),
        ("preprocess / evaluate wall time", f"{t_pre:.0f} s / {t_eval:.0f} s"),
    ]
    rows += [(f"reference: {k}", f"{v:.3f}") for k, v in REFERENCES.items()]
    width = max(len(k) for k, _ in rows)
    print("\n| metric | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")
    (out / "summary.json").write_text(json.dumps(dict(rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
