"""The local twin of a SageMaker endpoint: model servers per version behind one stable proxy.

Deploying version N starts a model server for N next to the serving one, waits for its /ping,
switches the proxy (an atomic write of state.json that the proxy re-reads), then stops the old
server with SIGTERM, which lets its in-flight requests finish. A version that fails to start
leaves the old one serving.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from mlcore.predictor import extract_model
from mlops.ports import free_port
from pipelines.spec import ENDPOINT_NAME

SWITCH_GRACE_S = 1.0


class DeployError(RuntimeError):
    """A version could not be deployed; the serving version (if any) is untouched."""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class LocalEndpoint:
    """State and processes of one local endpoint under `<home>/endpoints/<name>/`."""

    def __init__(self, home: str | Path, name: str, python: str = sys.executable, capture_dir: Path | None = None):
        self.home, self.name, self.python = Path(home), name, python
        self.dir = self.home / "endpoints" / name
        self.state_path = self.dir / "state.json"
        self.capture_dir = capture_dir or self.home / "capture"

    def state(self) -> dict:
        """{"version", "url", "pid", "port", ...} of the serving server, or {} when none."""
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        if state.get("pid") and not _alive(state["pid"]):
            state["stale"] = True
        return state

    def current_version(self) -> int | None:
        state = self.state()
        return None if not state or state.get("stale") else state.get("version")

    def _write_state(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_path)

    def start_server(self, version: int, model_tar: Path, timeout: float = 180.0) -> dict:
        """Start a detached model server for `version`; returns its state once /ping says ready."""
        version_dir = self.dir / f"v{version}"
        model_dir = version_dir / "model"
        if not (model_dir / "config.json").exists():
            extract_model(model_tar, model_dir)
        port = free_port()
        log_path = version_dir / "server.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [self.python, "-m", "inference.server", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                 "--port", str(port), "--endpoint-name", self.name, "--capture-dir", str(self.capture_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                if proc.poll() is not None:
                    break
                try:
                    ping = requests.get(f"{url}/ping", timeout=2)
                    if ping.status_code == 200:
                        return {"version": version, "url": url, "port": port, "pid": proc.pid,
                                "model_dir": str(model_dir), "log": str(log_path),
                                "deployed_at": datetime.now(timezone.utc).isoformat()}
                    if ping.json().get("status") == "failed":
                        break
                except (requests.ConnectionError, requests.Timeout, ValueError):
                    pass
                time.sleep(0.1)
        except BaseException:  # interrupted while waiting: do not leave the new server behind
            _terminate(proc.pid)
            raise
        _terminate(proc.pid)
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise DeployError(f"version {version} did not become ready (log {log_path}):\n" + "\n".join(tail))

    def deploy(self, version: int, model_tar: Path) -> dict:
        """Blue/green: new server up and ready, switch, then drain and stop the old one."""
        old = self.state()
        if old.get("version") == version and not old.get("stale"):
            return old
        new = self.start_server(version, model_tar)
        new["previous_version"] = old.get("version")
        self._write_state(new)
        if old.get("pid") and old.get("pid") != new["pid"]:
            time.sleep(SWITCH_GRACE_S)  # requests routed just before the switch reach the old server
            _terminate(old["pid"])
        return new

    def stop(self) -> None:
        state = self.state()
        if state.get("pid"):
            _terminate(state["pid"])
        if self.state_path.exists():
            self.state_path.unlink()


def _terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM (the server drains in-flight requests), SIGKILL after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def create_proxy_app(endpoint: LocalEndpoint):
    """The stable endpoint: SageMaker Runtime's InvokeEndpoint (and the container routes) to the serving version."""
    from mlops.runtime_front import Target, create_front_app

    cache = {"mtime": None, "state": {}}

    def resolve() -> Target | None:
        try:
            mtime = endpoint.state_path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime != cache["mtime"]:
            cache["mtime"], cache["state"] = mtime, endpoint.state()
        state = cache["state"]
        return Target(state["url"], state.get("version")) if state.get("url") else None

    def forget() -> None:  # the state may have switched: read it again before the retry
        cache["mtime"] = None

    return create_front_app(endpoint.name, resolve, on_unreachable=forget)


def run_proxy(endpoint: LocalEndpoint, host: str = "127.0.0.1", port: int = 8080) -> None:
    from aiohttp import web

    web.run_app(create_proxy_app(endpoint), host=host, port=port, print=None, shutdown_timeout=10)


def main(argv=None) -> int:
    """python -m mlops.local_endpoint --home H --name N --port P: run the stable proxy."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--home", default=os.environ.get("MLOPS_HOME", ".mlops"))
    parser.add_argument("--name", default=ENDPOINT_NAME)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    run_proxy(LocalEndpoint(args.home, args.name), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
