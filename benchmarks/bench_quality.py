"""Quality benchmark on GoEmotions: train on train, tune thresholds on dev, score on test; time per epoch.

Runs the very step scripts of the pipeline (preprocess -> train -> evaluate) and prints test
macro/micro F1, ROC AUC, dev macro-F1, time per epoch, optimizer steps per second and peak memory,
next to the published references. With `--baseline-ref REF` the training step of that git revision
(e.g. `main`) trains on the same preprocessed data in the same run, before this tree's, and both
models are scored by this tree's evaluate.py: one table, old vs new. Each `--variant` adds a row: this
tree trained with other hyperparameters in the same run, so every lever is measured alone against the
first row.

    .venv/bin/python benchmarks/bench_quality.py [--epochs 3] [--baseline-ref main] [--out benchmarks/results/quality]
    .venv/bin/python benchmarks/bench_quality.py --max-rows 3000 --epochs 1 --baseline-ref main   # a quick proxy
    .venv/bin/python benchmarks/bench_quality.py --variant "no dropout:dropout=0" --variant "ASL:loss=asl"

Run it alone on the machine: time per epoch is the point, and other work on the same cores changes it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
    seconds = time.time() - started
    print(f"step wall time: {seconds:.1f} s", flush=True)
    return seconds


def cpu_ticks() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal); [] off Linux."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return []


def cpu_model() -> str:
    """The CPU's model name and its bf16 matrix features (AMX tiles or AVX-512 bf16): bf16 training speed follows them."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    name, flags = fields.get("model name", "?"), set(fields.get("flags", "").split())
    return f"{name} ({', '.join(sorted(flags & {'amx_bf16', 'avx512_bf16'})) or 'no bf16 matrix instructions'})"


def steal_share(before: list[int], after: list[int]) -> str:
    """The share of the machine's CPU time the hypervisor gave to others between two readings (a noisy VM)."""
    if len(before) < 8 or len(after) < 8 or sum(after) == sum(before):
        return "not measured"
    return f"{(after[7] - before[7]) / (sum(after) - sum(before)):.1%}"


def checkout(ref: str, dest: Path) -> Path:
    """steps/ and mlcore/ of git revision `ref`, extracted under `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "steps", "mlcore"], capture_output=True,
                             check=False)
    if archive.returncode:
        sys.exit(f"cannot read {ref!r} from git: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def train_and_score(name: str, tree: Path, args, data_dir: Path, folder: str, train_args: list[str]) -> dict:
    """Train with `tree`'s train.py (its own mlcore) and `train_args` (NAME=VALUE), score with this tree's
    evaluate.py; the numbers of one row."""
    out = args.out / folder
    model_dir, eval_dir = out / "model", out / "evaluation"
    seconds = run([sys.executable, str(tree / "steps" / "train.py"), "--base-model", args.base_model,
                   "--epochs", args.epochs, "--learning-rate", args.learning_rate,
                   "--head-learning-rate", args.head_learning_rate, "--max-length", args.max_length,
                   "--export-onnx", "false", "--train-dir", str(data_dir / "train"),
                   "--validation-dir", str(data_dir / "validation"), "--model-dir", str(model_dir),
                   "--output-data-dir", str(out / "train-output"),
                   *extra_train_args(train_args)], env={"PYTHONPATH": str(tree)})
    run([sys.executable, str(REPO / "steps" / "evaluate.py"), "--model-path", str(model_dir),
         "--test-dir", str(data_dir / "test"), "--output-dir", str(eval_dir)], env={"PYTHONPATH": str(REPO)})
    metrics = json.loads((eval_dir / "evaluation.json").read_text())["multilabel_classification_metrics"]
    summary = json.loads((model_dir / "training_summary.json").read_text())
    return row_of(name, metrics, summary, seconds, model_dir)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`NAME:ARG=VALUE[,ARG=VALUE...]` -> (NAME, [ARG=VALUE, ...])."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip() or not rest.strip():
        sys.exit(f"--variant {text!r}: expected NAME:ARG=VALUE[,ARG=VALUE...], e.g. 'no dropout:dropout=0'")
    pairs = [p.strip() for p in rest.split(",") if p.strip()]
    extra_train_args(pairs)  # checked before hours of training, not after
    return name.strip(), pairs


def extra_train_args(pairs: list[str]) -> list[str]:
    """`NAME=VALUE` pairs as train.py flags (`--name value`)."""
    flags = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            sys.exit(f"--train-arg {pair!r}: expected NAME=VALUE, e.g. freeze_word_embeddings=true")
        flags += [f"--{name.replace('_', '-')}", value]
    return flags


def training_arithmetic(rows: list[dict], data_dir: Path, max_length: int) -> dict:
    """Training's achieved GFLOP/s (forward + backward ~ 3 forward passes per text) against torch's bf16 matmul peak."""
    from arithmetic import bf16_matmul_peak, mean_tokens, ops_per_text
    from transformers import AutoTokenizer

    from mlcore.datasets import read_split
    from mlcore.modeling import available_cores

    model_dir = rows[-1]["model_dir"]
    config = json.loads((model_dir / "config.json").read_text())
    train_texts = read_split(data_dir / "train").texts
    tokens = mean_tokens(AutoTokenizer.from_pretrained(str(model_dir)), train_texts, max_length)
    texts = len(train_texts)
    peak = bf16_matmul_peak(available_cores())
    out = {"bf16_peak_gflops": peak, "mean_tokens": tokens, "train_texts": texts,
           "gflop_per_text": 3 * ops_per_text(config, tokens) / 1e9, "rows": []}
    for r in rows:
        seconds = r["loop_seconds_per_epoch"] or r["seconds_per_epoch"]
        achieved = out["gflop_per_text"] * texts / seconds
        out["rows"].append({"name": r["name"], "texts_per_second": texts / seconds, "gflops": achieved,
                            "share_of_peak": achieved / peak})
    return out


def print_arithmetic(a: dict) -> None:
    print(f"\ntraining arithmetic: {a['train_texts']} texts/epoch, {a['mean_tokens']:.1f} tokens/text, "
          f"{a['gflop_per_text']:.2f} GFLOP/text (forward + backward = 3 forward passes); "
          f"bf16 matmul peak measured {a['bf16_peak_gflops']:.0f} GFLOP/s")
    print("| training | texts/s (training loop) | GFLOP/s | share of the bf16 peak |\n| --- | --- | --- | --- |")
    for r in a["rows"]:
        print(f"| {r['name']} | {r['texts_per_second']:.0f} | {r['gflops']:.0f} | {r['share_of_peak']:.0%} |")


def score_existing(model_dir: Path, data_dir: Path, out: Path) -> dict:
    """A row for a model trained elsewhere (--model-dir): scored by this tree's evaluate.py, its recorded timings."""
    eval_dir = out / "evaluation"
    run([sys.executable, str(REPO / "steps" / "evaluate.py"), "--model-path", str(model_dir),
         "--test-dir", str(data_dir / "test"), "--output-dir", str(eval_dir)], env={"PYTHONPATH": str(REPO)})
    metrics = json.loads((eval_dir / "evaluation.json").read_text())["multilabel_classification_metrics"]
    summary = json.loads((model_dir / "training_summary.json").read_text())
    return row_of(str(model_dir), metrics, summary, summary.get("wall_seconds", float("nan")), model_dir) | {
        "folder": out.name}


def row_of(name: str, metrics: dict, summary: dict, seconds: float, model_dir: Path) -> dict:
    epochs = len(summary["history"])
    timed = [h["train_seconds"] for h in summary["history"] if "train_seconds" in h]  # recorded since accelerate
    return {"name": name, "metrics": metrics, "summary": summary, "train_seconds": seconds, "epochs": epochs,
            # the same measure for every tree: the training step's wall time (load, encode, epochs, export) / epochs
            "seconds_per_epoch": seconds / max(1, epochs), "steps_per_second": summary["steps"] / seconds,
            "loop_seconds_per_epoch": sum(timed) / len(timed) if timed else None, "model_dir": model_dir}


def table(rows: list[dict]) -> str:
    header = ["", *(r["name"] for r in rows)]
    lines = [
        ("test macro F1", [f"{r['metrics']['f1_macro']['value']:.4f} ± {r['metrics']['f1_macro']['standard_deviation']:.4f}"
                           for r in rows]),
        ("test micro F1", [f"{r['metrics']['f1_micro']['value']:.4f}" for r in rows]),
        ("test macro ROC AUC", [f"{r['metrics']['roc_auc_macro']['value']:.4f}" for r in rows]),
        ("dev macro F1 (tuned thresholds)", [f"{r['summary']['validation']['f1_macro']:.4f}" for r in rows]),
        ("best epoch / epochs", [f"{r['summary']['best_epoch']} / {r['epochs']}" for r in rows]),
        ("training step wall time", [f"{r['train_seconds'] / 60:.1f} min ({r['summary']['device']}, "
                                     f"{r['summary']['precision']})" for r in rows]),
        ("time per epoch (step wall time / epochs)", [f"{r['seconds_per_epoch']:.0f} s" for r in rows]),
        ("training loop per epoch (history)", [f"{r['loop_seconds_per_epoch']:.0f} s" if r["loop_seconds_per_epoch"]
                                               else "not recorded" for r in rows]),
        ("optimizer steps / s (step wall time)", [f"{r['steps_per_second']:.2f}" for r in rows]),
        ("training peak RSS", [f"{r['summary']['peak_rss_mb']:.0f} MB" for r in rows]),
    ]
    if len(rows) >= 2:  # each later row against the first, measured in the same run
        first = rows[0]
        lines.append((f"test macro F1, minus {first['name']}", ["", *(
            f"{r['metrics']['f1_macro']['value'] - first['metrics']['f1_macro']['value']:+.4f}" for r in rows[1:])]))
        lines.append((f"time per epoch, / {first['name']}", ["", *(
            f"{r['seconds_per_epoch'] / first['seconds_per_epoch']:.2f}x" for r in rows[1:])]))
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join([k, *v]) + " |" for k, v in lines]
    return "\n".join(out)


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
    parser.add_argument("--baseline-ref", default=None,
                        help="a git revision whose training step also runs on the same data, first (e.g. main)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="score this trained model (a complete model directory) instead of training one; "
                             "--variant rows still train and are measured against it (its time: the wall time "
                             "its training_summary.json recorded)")
    parser.add_argument("--train-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a training hyperparameter for this tree's row only (the lever measured against "
                             "--baseline-ref); repeatable")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:ARG=VALUE[,ARG=VALUE]",
                        help="one more row: this tree trained with these hyperparameters, after the others, in the "
                             "same run (each lever alone against the first row); repeatable")
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables again from what an earlier run left in --out (trains nothing)")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"no dataset at {args.data}: pass --data PATH (a file or directory the loader accepts, e.g. "
                 "GoEmotions' train/dev/test.tsv + labels.txt)")
    data_dir = args.out / "data"
    variants = [parse_variant(v) for v in args.variant]
    if args.report_only:
        rows = rows_from(args.out)
        print(table(rows))
        print_arithmetic(training_arithmetic(rows, data_dir, int(args.max_length)))
        return 0
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores of {cpu_model()}",
          flush=True)
    ticks = cpu_ticks()
    t_pre = run([sys.executable, str(REPO / "steps/preprocess.py"), "--input", str(args.data), "--output-dir",
                 str(data_dir), *(["--max-rows", args.max_rows] if args.max_rows != "0" else [])])
    rows: list[dict] = []

    def keep(row: dict) -> None:  # the summary after every row: an interrupted run still reports what it finished
        rows.append(row)
        save_summary(args.out, rows)

    if args.model_dir:  # the first row, scored on this run's test split; variants train after it
        keep(score_existing(args.model_dir, data_dir, args.out / "given"))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
            if args.baseline_ref:
                keep(train_and_score(f"{args.baseline_ref} (before)", checkout(args.baseline_ref, Path(tmp)),
                                     args, data_dir, "baseline", []))
            keep(train_and_score("this tree", REPO, args, data_dir, "current", args.train_arg))
    for i, (name, pairs) in enumerate(variants, 1):
        keep(train_and_score(name, REPO, args, data_dir, f"variant-{i}", pairs))
    print(f"\npreprocess {t_pre:.0f} s; load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"CPU steal (time the VM's host gave to others) during the run: {steal_share(ticks, cpu_ticks())}")
    print(table(rows))
    arithmetic = training_arithmetic(rows, data_dir, int(args.max_length))
    print_arithmetic(arithmetic)
    print("\n" + "\n".join(f"reference: {k}: {v:.3f}" for k, v in REFERENCES.items()))
    save_summary(args.out, rows, arithmetic)
    return 0


def save_summary(out: Path, rows: list[dict], arithmetic: dict | None = None) -> None:
    """summary.json: each row's name, wall time, scores and folder (what `--report-only` reads), then the arithmetic."""
    saved: list[dict] = [
        {k: v for k, v in r.items() if k not in ("metrics", "summary", "model_dir")} | {
            "test_f1_macro": r["metrics"]["f1_macro"]["value"], "dev_f1_macro": r["summary"]["validation"]["f1_macro"],
            "folder": r.get("folder") or r["model_dir"].parent.name, "model_path": str(r["model_dir"].resolve())}
        for r in rows]
    (out / "summary.json").write_text(json.dumps(saved + ([{"arithmetic": arithmetic}] if arithmetic else []), indent=2))


def rows_from(out: Path) -> list[dict]:
    """The rows of an earlier run in `out`: its summary.json (names, wall times), models and evaluations."""
    saved = [r for r in json.loads((out / "summary.json").read_text()) if "name" in r]
    rows = []
    legacy = ("baseline", "current") if len(saved) == 2 else ("current",)  # summaries written before "folder"
    for i, r in enumerate(saved):
        folder = r.get("folder") or legacy[min(i, len(legacy) - 1)]
        metrics = json.loads((out / folder / "evaluation" / "evaluation.json").read_text())
        model_dir = Path(r["model_path"]) if r.get("model_path") else out / folder / "model"
        rows.append(row_of(r["name"], metrics["multilabel_classification_metrics"],
                           json.loads((model_dir / "training_summary.json").read_text()), r["train_seconds"], model_dir))
    return rows

if __name__ == "__main__":
    sys.exit(main())
