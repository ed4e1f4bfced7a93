"""Where a training step's time goes: the step of `mlcore/training.py` per precision, against the matmul peaks.

Runs the trainer's own step (`_Trainer._step`: forward under autocast, loss, backward, clipping, fused AdamW,
schedule) on real batches of a dataset's training split (length-grouped as training groups them), then
profiles a few steps with torch's profiler and splits the step into its matrix products (`aten::mm`, `addmm`,
`bmm`) and everything else. With the matmul peak of each precision measured in the same run, it prints what
a target for N epochs needs: the step time it allows, and the time the matmuls alone take at the peak.

    .venv/bin/python benchmarks/bench_train_step.py                       # GoEmotions, MiniLM, batch 32, 3 epochs
    .venv/bin/python benchmarks/bench_train_step.py --data DIR --base-model PATH --target-minutes 10
    .venv/bin/python benchmarks/bench_train_step.py --variant "frozen word embeddings:freeze_word_embeddings=true"

Each `--variant NAME:ARG=VALUE[,...]` (bench_quality.py's syntax, training hyperparameters) adds a row: the step
with those settings, at the first precision.

Run it alone on the machine: it measures time.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GOEMOTIONS = REPO.parent / "shared" / "datasets" / "goemotions"
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


def matmul_peak(threads: int, dtype: str, tries: int = 3) -> float:
    """GFLOP/s of torch's matmul in `dtype` on FFN-shaped matrices (arithmetic.py), the best of `tries` one-second
    measurements: a peak, so a second the VM's host took elsewhere must not lower it."""
    from arithmetic import torch_matmul_peak

    return max(torch_matmul_peak(threads, dtype) for _ in range(tries))


def measure(name: str, precision: str, extra: list[str], args, train) -> dict:
    """ms per step (min over repeats of `steps` steps) and the profiled split of a step, for one precision and
    `extra` train.py flags."""
    from torch.profiler import ProfilerActivity, profile

    from mlcore.batching import length_grouped_batches
    from mlcore.config import TrainingConfig, parse_config
    from mlcore.training import _accelerator, _Trainer, seed_everything

    cfg = parse_config(TrainingConfig, ["--base-model", args.base_model, "--batch-size", str(args.batch_size),
                                        "--max-length", str(args.max_length), "--precision", precision,
                                        "--progress", "false", *extra])
    seed_everything(cfg.seed)
    trainer = _Trainer(cfg, train.label_names, _accelerator("cpu"), precision)
    data = trainer.encode(train, train)
    trainer.plan(len(data.train_ids))
    trainer.distribute()
    trainer.model.train()
    batches = list(length_grouped_batches([len(x) for x in data.train_ids], cfg.batch_size, np.random.default_rng(0)))
    epoch_padded = float(np.mean([max(len(data.train_ids[i]) for i in b) for b in batches]))
    needed = args.warmup + args.repeats * args.steps + args.profile_steps
    batches = (batches * math.ceil(needed / len(batches)))[:needed]
    tokens = [max(len(data.train_ids[i]) for i in b) for b in batches]
    step = iter(batches)
    for _ in range(args.warmup):
        trainer._step(next(step), 1.0, data)
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for _ in range(args.steps):
            trainer._step(next(step), 1.0, data)
        runs.append((time.perf_counter() - started) / args.steps)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            trainer._step(next(step), 1.0, data)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in ops)
    matmul_us = sum(e.self_cpu_time_total for e in ops if e.key in MATMUL_OPS)
    top = [(e.key, e.self_cpu_time_total / total_us) for e in ops[:args.top]]
    padded = float(np.mean(tokens[-args.profile_steps:]))
    return {"name": name, "precision": precision, "ms_per_step": min(runs) * 1000, "runs_ms": [r * 1000 for r in runs],
            "profiled_ms_per_step": total_us / 1000 / args.profile_steps,
            "matmul_ms_per_step": matmul_us / 1000 / args.profile_steps, "matmul_share": matmul_us / total_us,
            "profiled_padded_tokens": padded, "epoch_padded_tokens": epoch_padded, "top_ops": top}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=GOEMOTIONS, help="a dataset the loader accepts (its train split)")
    parser.add_argument("--base-model", default=None, help="default: the training default (MiniLM-L6)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=8, help="operators listed per precision")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:ARG=VALUE[,ARG=VALUE]")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--target-minutes", type=float, default=10.0, help="the training-time target to size")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train-step.json")
    args = parser.parse_args()

    from arithmetic import ops_per_text
    from bench_quality import extra_train_args, parse_variant

    from mlcore.config import TrainingConfig
    from mlcore.datasets import load_source
    from mlcore.modeling import available_cores, cpu_supports_bf16, resolve_base_model

    if not args.data.exists():
        sys.exit(f"no dataset at {args.data}: pass --data DIR (GoEmotions is looked for beside the repository)")
    args.base_model = args.base_model or TrainingConfig().base_model
    train = load_source(args.data).splits.get("train")
    if train is None:
        sys.exit(f"{args.data} has no train split")
    threads = available_cores()
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_base_model(args.base_model)).to_dict()
    precisions = [p for p in args.precisions.split(",") if p != "bf16" or cpu_supports_bf16()]
    steps_per_epoch = math.ceil(len(train.texts) / args.batch_size)
    total_steps = math.ceil(args.epochs * steps_per_epoch)
    budget_ms = args.target_minutes * 60_000 / total_steps
    print(f"{len(train.texts)} training texts, batch {args.batch_size}: {total_steps} steps for {args.epochs:g} epochs; "
          f"{args.target_minutes:g} min allows {budget_ms:.0f} ms per step (validation and export not counted); "
          f"{threads} threads", flush=True)
    runs = [(p, p, []) for p in precisions]
    for text in args.variant:
        name, pairs = parse_variant(text)
        runs.append((name, precisions[0], extra_train_args(pairs)))
    rows, peaks = [], {}
    for name, precision, extra in runs:
        if precision not in peaks:
            peaks[precision] = matmul_peak(threads, precision)
        peak = peaks[precision]
        row = measure(name, precision, extra, args, train)
        flops = 3 * ops_per_text(config, row["profiled_padded_tokens"]) * args.batch_size
        row.update({"peak_gflops": peak, "matmul_gflops": flops / (row["matmul_ms_per_step"] / 1000) / 1e9,
                    "matmul_at_peak_ms": flops / (peak * 1e9) * 1000,
                    "epochs_minutes": row["ms_per_step"] * total_steps / 60_000})
        epoch_flops = 3 * ops_per_text(config, row["epoch_padded_tokens"]) * args.batch_size * total_steps
        row["epochs_matmul_at_peak_minutes"] = epoch_flops / (peak * 1e9) / 60
        rows.append(row)
        print(f"{name}: {row['ms_per_step']:.0f} ms/step (repeats {', '.join(f'{r:.0f}' for r in row['runs_ms'])})",
              flush=True)
    base = rows[0]["ms_per_step"]
    print(f"\n| step | ms/step | vs {rows[0]['name']} | {args.epochs:g} epochs at this rate | matmuls ms/step "
          "(profiled) | share of the step | matmul GFLOP/s | peak GFLOP/s (this run) | matmuls alone at the peak "
          "| everything else (profiled) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        other = r["profiled_ms_per_step"] - r["matmul_ms_per_step"]
        print(f"| {r['name']} | {r['ms_per_step']:.0f} | {r['ms_per_step'] / base:.2f}x | "
              f"{r['epochs_minutes']:.1f} min | {r['matmul_ms_per_step']:.0f} | {r['matmul_share']:.0%} | "
              f"{r['matmul_gflops']:.0f} | {r['peak_gflops']:.0f} | {r['matmul_at_peak_ms']:.0f} ms | {other:.0f} ms |")
    for r in rows:
        print(f"\n{r['name']}, operators by self time (profiled, {r['profiled_padded_tokens']:.1f} padded tokens "
              "per row): " + ", ".join(f"{k} {share:.0%}" for k, share in r["top_ops"]))
    best = min(rows, key=lambda r: r["matmul_at_peak_ms"])
    print(f"\n{args.target_minutes:g} min needs <= {budget_ms:.0f} ms per step; the matmuls alone at the {best['precision']} "
          f"peak take {best['matmul_at_peak_ms']:.0f} ms ({best['matmul_at_peak_ms'] / budget_ms:.0%} of it): "
          f"{best['epochs_matmul_at_peak_minutes']:.1f} min for {args.epochs:g} epochs of batches padded to "
          f"{best['epoch_padded_tokens']:.1f} tokens on average")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"budget_ms_per_step": budget_ms, "total_steps": total_steps, "rows": rows},
                                   indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
