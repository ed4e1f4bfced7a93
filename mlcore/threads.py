"""CPU threads of a training process: how many, and how idle threads wait.

torch's OpenMP threads (GNU libgomp in the PyPI wheels) spin on their core between parallel regions,
~300,000 turns by default: two trainings sharing 2 cores then spin against each other and each ran
3-4x slower per step (benchmarks/bench_concurrency.py). Passive waits (sleep at once) make sharing
about proportional but cost a training alone ~25% per step (every short gap between parallel regions
becomes a sleep and a wake). GOMP_SPINCOUNT=1000 (~10 us), what libgomp itself uses once it knows its
threads outnumber the cores, keeps both: alone as fast as the default, two at once about 2x. Other
OpenMP runtimes ignore GOMP_SPINCOUNT and get OMP_WAIT_POLICY=PASSIVE. One inter-op thread: the
training loop has no inter-op parallelism.

`openmp_environment()` must run before torch is imported (OpenMP reads its variables once, when the
library loads): steps/train.py calls it first thing. `configure_threads()` runs in the process.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping

from mlcore.modeling import available_cores

WAIT_POLICY = "PASSIVE"  # OpenMP runtimes other than GNU's
SPIN_COUNT = "1000"  # GNU libgomp: spin this many turns, then sleep


def local_processes(env: MutableMapping[str, str] | None = None) -> int:
    """Training processes on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    env = os.environ if env is None else env
    try:
        return max(1, int(env.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        return 1


def threads_per_process(requested: int = 0, env: MutableMapping[str, str] | None = None) -> int:
    """Intra-op threads: `requested`, else OMP_NUM_THREADS, else this machine's cores / its training processes."""
    env = os.environ if env is None else env
    if requested > 0:
        return requested
    try:
        from_env = int(env.get("OMP_NUM_THREADS") or 0)
    except ValueError:
        from_env = 0
    return from_env if from_env > 0 else max(1, available_cores() // local_processes(env))


def openmp_environment(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set (where unset) GOMP_SPINCOUNT, OMP_WAIT_POLICY and OMP_NUM_THREADS for this process; returns what it set."""
    env = os.environ if env is None else env
    wanted = {"GOMP_SPINCOUNT": SPIN_COUNT, "OMP_WAIT_POLICY": WAIT_POLICY,
              "OMP_NUM_THREADS": str(threads_per_process(0, env))}
    added = {k: v for k, v in wanted.items() if not env.get(k)}
    env.update(added)
    return added


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads (see `threads_per_process`) and one inter-op thread; returns the count."""
    import torch

    threads = threads_per_process(requested)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started in this process
        pass
    return threads
