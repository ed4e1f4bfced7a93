"""Threads of a training process: how many, and the OpenMP wait policy set before torch loads."""
from __future__ import annotations

import os
import subprocess
import sys

from mlcore.modeling import available_cores
from mlcore.threads import openmp_environment, threads_per_process
from tests.helpers.paths import REPO_ROOT


def test_threads_per_process_split_the_cores_between_local_processes():
    cores = available_cores()
    assert threads_per_process(0, {}) == cores
    assert threads_per_process(0, {"LOCAL_WORLD_SIZE": str(cores)}) == 1
    assert threads_per_process(0, {"LOCAL_WORLD_SIZE": str(cores * 4)}) == 1  # never 0
    assert threads_per_process(0, {"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "2"}) == 3  # the user's setting wins
    assert threads_per_process(5, {"OMP_NUM_THREADS": "3"}) == 5  # and the hyperparameter over it
    assert threads_per_process(0, {"OMP_NUM_THREADS": "many"}) == cores


def test_openmp_environment_sets_short_spinning_and_keeps_what_the_user_set():
    env: dict[str, str] = {"LOCAL_WORLD_SIZE": "1"}
    assert openmp_environment(env) == {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": "PASSIVE",
                                       "OMP_NUM_THREADS": str(available_cores())}
    env = {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}
    assert openmp_environment(env) == {}
    assert env == {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}


def test_train_py_sets_them_before_torch_loads():
    """steps/train.py's main() runs openmp_environment before importing torch (OpenMP reads it once, at load)."""
    probe = ("import os, sys; sys.argv = ['train.py', '--epocs']\n"
             "import steps.train as t\n"
             "try:\n    t.main()\nexcept SystemExit:\n    pass\n"
             "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.split()[-2:] == ["1000", "False"], proc.stdout + proc.stderr
