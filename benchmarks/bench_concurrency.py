"""Trainings sharing one machine: time per optimizer step of one training alone vs two at once, per thread policy.

The workload is small but real: steps/train.py fine-tuning the shipped MiniLM on demo texts (max length 64,
batch 32) for `--steps` optimizer steps, each logging `step=N`; this script timestamps those lines as they
arrive and takes the median step time after the first three. Rows (each: one training alone, then two started
together):
  - `--baseline-ref REF` (e.g. main): that revision's training step as it was (torch on all cores, OpenMP's
    default wait policy, which spins between parallel regions);
  - this tree as it runs by default (short OpenMP spinning, GOMP_SPINCOUNT=1000; threads = cores / training
    processes on the machine);
  - this tree with OpenMP's default spinning (GOMP_SPINCOUNT=300000, what libgomp does unasked);
  - this tree with passive waits (GOMP_SPINCOUNT=0: sleep at once);
  - this tree with one thread per training (OMP_NUM_THREADS=1).
With both cores shared by two trainings, "about proportional" is a slowdown near 2x.

    .venv/bin/python benchmarks/bench_concurrency.py [--steps 30] [--baseline-ref main]

Run it alone on the machine: other work on the same cores is a third training it does not count.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.bench_quality import checkout  # noqa: E402  (the repository is on sys.path now)

STEP_LINE = re.compile(r"^step=(\d+) ")
OPENMP = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def write_data(root: Path, rows: int) -> tuple[Path, Path]:
    from mlcore.datasets import write_split
    from mlcore.datasets.demo import generate_demo

    data = generate_demo(n_rows=rows + 64, seed=3)
    write_split(data.subset(list(range(rows))), root / "train")
    write_split(data.subset(list(range(rows, rows + 64))), root / "validation")
    return root / "train", root / "validation"


def launch(tree: Path, env_extra: dict[str, str], data: tuple[Path, Path], out: Path, steps: int):
    env = {k: v for k, v in os.environ.items() if k not in OPENMP}
    env.update({"PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **env_extra})
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [sys.executable, str(tree / "steps" / "train.py"), "--epochs", "1", "--max-steps", str(steps),
            "--eval-every-steps", "1", "--batch-size", "32", "--max-length", "64", "--progress", "false",
            "--export-onnx", "false", "--train-dir", str(data[0]), "--validation-dir", str(data[1]),
            "--model-dir", str(out / "model"), "--output-data-dir", str(out / "output")]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def step_times(procs: list[subprocess.Popen]) -> list[list[float]]:
    """The arrival time of every `step=N` line, per process (read live, one thread each)."""
    stamps: list[list[float]] = [[] for _ in procs]
    tails: list[list[str]] = [[] for _ in procs]

    def read(i: int) -> None:
        for line in procs[i].stdout:
            tails[i] = (tails[i] + [line])[-20:]
            if STEP_LINE.match(line):
                stamps[i].append(time.monotonic())

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, proc in enumerate(procs):
        if proc.wait() != 0:
            sys.exit(f"a training failed (exit {proc.returncode}):\n{''.join(tails[i])}")
    return stamps


def median_step(stamps: list[float]) -> float:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][3:]  # the first steps warm up
    return statistics.median(gaps)


def measure(name: str, tree: Path, env: dict[str, str], data, root: Path, steps: int) -> dict:
    alone = median_step(step_times([launch(tree, env, data, root / "alone", steps)])[0])
    pair = step_times([launch(tree, env, data, root / f"pair{i}", steps) for i in range(2)])
    together = statistics.mean(median_step(s) for s in pair)
    print(f"{name}: alone {alone:.3f} s/step, two at once {together:.3f} s/step each", flush=True)
    return {"name": name, "alone": alone, "together": together}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--baseline-ref", default=None, help="a git revision measured first (e.g. main)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        root = Path(tmp)
        data = write_data(root / "data", args.rows)
        if args.baseline_ref:
            old = checkout(args.baseline_ref, root / "baseline-tree")
            rows.append(measure(f"{args.baseline_ref}: all cores, OpenMP's default waits", old, {}, data,
                                root / "baseline", args.steps))
        rows.append(measure("this tree, default: GOMP_SPINCOUNT=1000, cores / processes threads", REPO, {}, data,
                            root / "default", args.steps))
        rows.append(measure("this tree, OpenMP's default spinning (GOMP_SPINCOUNT=300000)", REPO,
                            {"GOMP_SPINCOUNT": "300000"}, data, root / "spin", args.steps))
        rows.append(measure("this tree, passive waits (GOMP_SPINCOUNT=0)", REPO, {"GOMP_SPINCOUNT": "0"}, data,
                            root / "passive", args.steps))
        rows.append(measure("this tree: one thread each (OMP_NUM_THREADS=1)", REPO, {"OMP_NUM_THREADS": "1"}, data,
                            root / "one", args.steps))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| training process | alone, s/step | two at once, s/step each | slowdown (proportional: 2x) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['alone']:.3f} | {r['together']:.3f} | {r['together'] / r['alone']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
