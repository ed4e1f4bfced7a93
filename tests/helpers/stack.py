"""The local world as a user drives it: `mlops` commands as processes, `mlops up`, the model servers it runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import free_port

STACK_PORTS = (18700, 18800)


def mlops_env(home: Path, **extra: str) -> dict:
    return {**os.environ, "MLOPS_HOME": str(home), **extra}


def mlops(home: Path, *args: str, **extra_env: str) -> subprocess.Popen:
    """Start `mlops ARGS` as its own process (as a user in a shell would); stdout and stderr together."""
    return subprocess.Popen([sys.executable, "-m", "mlops", *args], cwd=REPO_ROOT, env=mlops_env(home, **extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def mlops_run(home: Path, *args: str, timeout: float = 180, **extra_env: str) -> tuple[int, str]:
    """Run `mlops ARGS` to the end: (exit status, output)."""
    proc = mlops(home, *args, **extra_env)
    output = proc.communicate(timeout=timeout)[0]
    return proc.returncode, output


def model_servers(home: Path) -> list[psutil.Process]:
    """The live model server processes whose model lies under `home` (zombies do not count)."""
    from mlops.model_servers import servers_under

    return servers_under(home)


def kill_model_servers(home: Path) -> None:
    for proc in model_servers(home):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@dataclass
class Up:
    """`mlops up --no-site` as a process: the endpoint proxy (which owns the endpoint) and the predict Lambda."""

    home: Path
    endpoint: int = 0
    lambda_url: int = 0
    proc: subprocess.Popen | None = None
    output: str = ""

    def start(self, timeout: float = 180) -> Up:
        self.endpoint = self.endpoint or free_port(*STACK_PORTS)
        self.lambda_url = self.lambda_url or free_port(self.endpoint + 1, STACK_PORTS[1])
        self.proc = mlops(self.home, "up", "--no-site", MLOPS_ENDPOINT_PORT=str(self.endpoint),
                          MLOPS_LAMBDA_PORT=str(self.lambda_url))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlops up exited with {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                requests.get(f"{self.url}/ping", timeout=2)
                requests.get(f"http://127.0.0.1:{self.lambda_url}/", timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise TimeoutError(f"mlops up did not come up within {timeout}s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.endpoint}"

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.output = self.proc.communicate(timeout=90)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output = self.proc.communicate()[0]
        return self.proc.returncode if self.proc else 0

    def invoke(self, texts="an apple", timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/invocations", json={"inputs": texts}, timeout=timeout)

    def serving(self) -> int | None:
        """The model version that answers through the endpoint now (X-Mlops-Model-Version), None if none does."""
        answer = self.invoke()
        return int(answer.headers["X-Mlops-Model-Version"]) if answer.status_code == 200 else None


@dataclass
class Load:
    """Clients sending requests in a loop until stopped (bounded); every answer kept as (start, end, status)."""

    send: object  # a function of the client number -> status code (or an exception)
    clients: int = 16
    limit: int = 5000  # requests per client at most
    answers: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list = field(default_factory=list)

    def _client(self, n: int) -> None:
        for _ in range(self.limit):
            if self._stop.is_set():
                return
            started = time.time()
            try:
                status = self.send(n)
            except requests.RequestException as exc:
                status = exc.__class__.__name__
            self.answers.append((started, time.time(), status))

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def first_ok_after(self, moment: float) -> float | None:
        """When the first request sent after `moment` was answered 200 (None: none was)."""
        done = [end for start, end, status in list(self.answers) if start >= moment and status == 200]
        return min(done) if done else None
