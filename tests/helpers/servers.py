"""Start and stop real servers (subprocesses on loopback ports) for contract tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from mlops import ports


def free_port(start: int, end: int) -> int:
    """A free loopback TCP port in [start, end)."""
    return ports.free_port(range(start, end))


def wait_http(url: str, timeout: float = 60.0, ok=(200,), proc: subprocess.Popen | None = None) -> requests.Response:
    """Poll `url` until it answers one of `ok`; fail early if `proc` exits."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            last = requests.get(url, timeout=2)
            if last.status_code in ok:
                return last
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {ok} within {timeout}s (last: {last and last.status_code})")


def start_model_server(model_dir: Path, port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inference.server", "--model-dir", str(model_dir), "--port", str(port),
         "--host", "127.0.0.1", *extra],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def moto_server(start: int, end: int):
    """A moto server (the local AWS emulator) over real HTTP on a free port in [start, end); yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(start, end), verbose=False)
    server.start()
    try:
        yield "http://%s:%d" % server.get_host_and_port()
    finally:
        server.stop()
