"""The local twin of a SageMaker endpoint: model servers per version behind one stable proxy.

Deploying version N starts a model server for N next to the serving one, waits for its /ping,
switches the proxy (an atomic write of state.json that the proxy re-reads), then stops the old
server with SIGTERM, which lets its in-flight requests finish. A version that fails to start
leaves the old one serving.

Every transition (deploy, restart, revive, stop, reap) holds the endpoint's file lock
(`endpoints/<name>/endpoint.lock`, `filelock`) and re-reads state.json under it, so two commands never
switch at once; a process killed mid-transition releases the lock with its death, and the next transition
reaps the model server it left behind (`reap_orphans`). A command that changes what should serve leaves a
re-drive request (a file in `redrive/`) before it waits for the lock, removed only once a decision was
carried out: whoever holds the lock decides again when its switch ends, and the request of a command that
was killed stays for the next one (`mlops.local_deploy.converge`), as the deploy Lambda re-drives on AWS.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import requests
from filelock import FileLock

from mlcore.predictor import extract_model
from mlops import model_servers
from mlops.ports import free_port
from pipelines.liveness import alive, started_at

SWITCH_GRACE_S = 1.0
LOCK_TIMEOUT_S = 900.0  # a switch waits for the one in progress (its server start and the old one's drain)
REDRIVE_DIR = "redrive"


class DeployError(RuntimeError):
    """A version could not be deployed; the serving version (if any) is untouched."""


class Superseded(RuntimeError):
    """The version being started is no longer the one to serve (the registry changed meanwhile): not switched."""


class LocalEndpoint:
    """State and processes of one local endpoint under `<home>/endpoints/<name>/`."""

    def __init__(self, home: str | Path, name: str, python: str = sys.executable, capture_dir: Path | None = None):
        self.home, self.name, self.python = Path(home).resolve(), name, python
        self.dir = self.home / "endpoints" / name
        self.state_path = self.dir / "state.json"
        self.capture_dir = capture_dir or self.home / "capture"
        self.dir.mkdir(parents=True, exist_ok=True)
        # one lock object per path in this process (re-entrant here), an flock between processes
        self.lock = FileLock(self.dir / "endpoint.lock", timeout=LOCK_TIMEOUT_S, is_singleton=True)

    # ----- state
    def state(self) -> dict:
        """{"version", "url", "pid", "port", ...} of the serving server (+ "stale" when it died), or {} when none."""
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        if state.get("pid") and not alive(state["pid"], state.get("pid_started")):
            state["stale"] = True
        return state

    def current_version(self) -> int | None:
        """The version the endpoint is set to serve (its server may have died: `health()` says)."""
        return self.state().get("version")

    def health(self) -> str:
        """"serving" (its model server lives), "dead" (a version is set, its server is gone) or "none"."""
        state = self.state()
        return "none" if not state else "dead" if state.get("stale") else "serving"

    def _write_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_path)

    # ----- re-drive requests: "decide again once the switch in progress ends"
    def request_redrive(self, group: str, cause: str) -> Path:
        """Leave a request (one file each, never overwritten) that the lock holder, or the next one, decides on."""
        directory = self.dir / REDRIVE_DIR
        directory.mkdir(exist_ok=True)
        path = directory / f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        tmp = directory / f".{path.name}.tmp"
        tmp.write_text(json.dumps({"group": group, "cause": cause, "pid": os.getpid(),
                                   "at": datetime.now(timezone.utc).isoformat()}))
        os.replace(tmp, path)
        return path

    def pending_redrives(self) -> list[Path]:
        """The requests not decided on yet (removed by `clear_redrives` once a decision has been carried out)."""
        return sorted((self.dir / REDRIVE_DIR).glob("*.json"))

    def redrive_pending(self) -> bool:
        return bool(self.pending_redrives())

    @staticmethod
    def clear_redrives(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    # ----- processes
    def start_server(self, version: int, model_tar: Path, timeout: float = 180.0) -> dict:
        """Start a detached model server for `version`; returns its state once /ping says ready."""
        version_dir = self.dir / f"v{version}"
        model_dir = version_dir / "model"
        if not (model_dir / "config.json").exists():
            extract_model(model_tar, model_dir)
        port = free_port()
        log_path = version_dir / "server.log"
        proc = model_servers.spawn(
            [self.python, "-m", model_servers.SERVER_MODULE, "--model-dir", str(model_dir), "--host", "127.0.0.1",
             "--port", str(port), "--endpoint-name", self.name, "--capture-dir", str(self.capture_dir)], log_path)
        started = started_at(proc.pid)
        url = f"http://127.0.0.1:{port}"
        try:
            if _wait_ready(url, proc, timeout):
                return {"version": version, "url": url, "port": port, "pid": proc.pid, "pid_started": started,
                        "model_dir": str(model_dir), "log": str(log_path),
                        "deployed_at": datetime.now(timezone.utc).isoformat()}
        except BaseException:  # interrupted while waiting: do not leave the new server behind
            model_servers.terminate(proc.pid, started)
            raise
        model_servers.terminate(proc.pid, started)
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise DeployError(f"version {version} did not become ready (log {log_path}):\n" + "\n".join(tail))

    def deploy(self, version: int, model_tar: Path, still_wanted: Callable[[], bool] | None = None) -> dict:
        """Blue/green: new server up and ready, switch, then drain and stop the old one. When `still_wanted()`
        says no once the new server is ready (the registry changed while it started), the switch is not made
        and Superseded is raised."""
        with self.lock:
            self.reap_orphans()
            old = self.state()
            if old.get("version") == version and not old.get("stale"):
                return old
            new = self.start_server(version, model_tar)
            if still_wanted is not None and not still_wanted():
                model_servers.terminate(new["pid"], new["pid_started"])
                raise Superseded(f"version {version} was superseded while its server started: not switched")
            return self._switch(old, {**new, "previous_version": old.get("version")})

    def _switch(self, old: dict, new: dict) -> dict:
        self._write_state(new)
        if old.get("pid") and old.get("pid") != new["pid"]:
            if not old.get("stale"):
                time.sleep(SWITCH_GRACE_S)  # requests routed just before the switch reach the old server
            model_servers.terminate(old["pid"], old.get("pid_started"))
        return new

    def restart(self, reason: str = "restart") -> dict:
        """A new server for the version set to serve (blue/green when the old one lives); {} when none is set."""
        with self.lock:
            self.reap_orphans()
            old = self.state()
            if not old.get("version"):
                return {}
            new = self.start_server(old["version"], Path(old["model_dir"]))
            restarts = old.get("restarts", 0) + 1
            last = {"at": new["deployed_at"], "reason": reason, "previous_pid": old.get("pid")}
            return self._switch(old, {**new, "previous_version": old.get("previous_version"), "restarts": restarts,
                                      "last_restart": last})

    def revive(self, reason: str) -> dict | None:
        """Restart the set version's server if it died (None when it lives or none is set)."""
        with self.lock:
            state = self.state()
            return self.restart(reason) if state.get("stale") else None

    def reap_orphans(self) -> list[int]:
        """Stop every model server of this endpoint that state.json does not own (left by a killed command)."""
        with self.lock:
            owner = self.state().get("pid")
            orphans = [p for p in model_servers.servers_under(self.dir) if p.pid != owner]
            for process in orphans:
                model_servers.terminate(process.pid, process.create_time())
            return [p.pid for p in orphans]

    def stop(self) -> None:
        with self.lock:
            state = self.state()
            self.state_path.unlink(missing_ok=True)
            if state.get("pid"):
                model_servers.terminate(state["pid"], state.get("pid_started"))
            self.reap_orphans()


def _wait_ready(url: str, proc, timeout: float) -> bool:
    """Poll /ping until 200 (True), or until the server exits, reports a failed load, or `timeout` (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            ping = requests.get(f"{url}/ping", timeout=2)
            if ping.status_code == 200:
                return True
            if ping.json().get("status") == "failed":
                return False
        except (requests.ConnectionError, requests.Timeout, ValueError):
            pass
        time.sleep(0.1)
    return False


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
