"""Is a recorded process still the one running? A pid alone is not an identity (pids are reused, and a dead
child stays a zombie until reaped), so a process is recorded as (pid, start time) and a zombie counts as dead."""
from __future__ import annotations

import os

import psutil


def started_at(pid: int) -> float | None:
    """The process's start time (an identity together with the pid), None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(pid: int | None, started: float | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, given `started`, is the process that started then."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        return started is None or abs(process.create_time() - started) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _reap(pid: int) -> None:
    """Collect a dead child of ours (a zombie otherwise stays in the process table while we run)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
