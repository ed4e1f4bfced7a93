"""Model server processes of the local endpoint: start one detached, stop it, find the ones nothing owns.

Each server runs in its own session (process group), so a command that started it may exit (or be killed)
and the server goes on; the endpoint's state.json owns it, as (pid, process start time) (pipelines.liveness). `servers_under(dir)` finds every model server whose model lives under
`dir`, which is how a reaper finds the ones nothing owns (a command killed while it started one).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from pipelines.liveness import alive

STOP_TIMEOUT_S = 30.0  # the server's own grace period (MLOPS_GRACEFUL_TIMEOUT) before SIGKILL
SERVER_MODULE = "inference.server"


def spawn(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start `argv` detached (a new session: its own process group), output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def terminate(pid: int | None, started: float | None = None, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the server's process group (it drains in-flight requests), SIGKILL after `timeout`."""
    if not alive(pid, started):
        return
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and alive(pid, started):
        time.sleep(0.05)
    if alive(pid, started):
        _signal_group(pid, signal.SIGKILL)
        deadline = time.time() + 5
        while time.time() < deadline and alive(pid, started):
            time.sleep(0.05)


def _signal_group(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:  # the leader of its own group: everything it started goes too
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def servers_under(directory: Path) -> list[psutil.Process]:
    """Live model server processes whose --model-dir lies under `directory`."""
    root = str(Path(directory).resolve())
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if SERVER_MODULE not in cmdline or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        model_dirs = [cmdline[i + 1] for i, arg in enumerate(cmdline[:-1]) if arg == "--model-dir"]
        if any(d == root or d.startswith(root + os.sep) for d in model_dirs):
            found.append(process)
    return found
