"""`mlops ui`: the MLflow UI over this machine's pipeline runs (MLflow's own server, on loopback).

Every `mlops run` is an MLflow run of the experiment named after the pipeline: its parameters, the
training and validation metrics of each epoch, the test metrics, report and plots of the evaluation,
and the registered version. They live in the embedded tracking store under MLOPS_HOME
(`sqlite:///<MLOPS_HOME>/mlflow.db`, artifacts in `<MLOPS_HOME>/mlartifacts`) unless MLFLOW_TRACKING_URI
names another. Ctrl-C stops the UI.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import psutil

from mlcore.config import env_value
from mlops.cli import CliError
from mlops.ports import LOOPBACK, port_is_free
from mlops.settings import Settings

ORDER = 15
DEFAULT_PORT = 5000  # MLflow's
STOP_TIMEOUT_S = 10.0  # MLflow's server stops in about a second


def ui_command(settings: Settings, port: int, host: str = LOOPBACK) -> list[str]:
    """MLflow's server over the settings' tracking store (one worker: a UI for one person)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", str(settings.tracking_uri),
            "--default-artifact-root", settings.artifacts_dir.as_uri(), "--host", host, "--port", str(port),
            "--workers", "1"]


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        port = args.port or env_value("MLOPS_UI_PORT", DEFAULT_PORT)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    settings = Settings.from_env()
    if not str(settings.tracking_uri).startswith("sqlite:"):
        raise CliError(f"MLFLOW_TRACKING_URI is {settings.tracking_uri}: open that tracking server's own UI "
                       "(unset MLFLOW_TRACKING_URI for this machine's runs)")
    if not port_is_free(port):
        raise CliError(f"port {port} is in use: pass --port (or set MLOPS_UI_PORT)")
    settings.home.mkdir(parents=True, exist_ok=True)
    if not (settings.home / "mlflow.db").exists():
        print(f"no runs tracked in {settings.home} yet: `mlops run` records one")
    print(f"MLflow UI for the runs in {settings.home}: http://{LOOPBACK}:{port} (Ctrl-C stops it)", flush=True)
    # MLflow's server is a tree (the CLI, uvicorn, huey job consumers): its own session, so that however this
    # command ends (Ctrl-C, SIGTERM from a supervisor, an error) the whole tree goes with it
    server = subprocess.Popen(ui_command(settings, port), start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_tree(server.pid)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop_tree(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to `pid` and every process it started, SIGKILL to what is left after `timeout`."""
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(pid, signal.SIGTERM)  # the session's group, including children whose parent already exited
    except (ProcessLookupError, PermissionError):
        pass
    for process in tree:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def register(subparsers) -> None:
    parser = subparsers.add_parser("ui", help="the MLflow UI over this machine's pipeline runs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None,
                        help=f"loopback port (default: $MLOPS_UI_PORT or {DEFAULT_PORT})")
    parser.set_defaults(func=cmd_ui)
