"""`mlops ui`: the MLflow UI over this machine's pipeline runs (MLflow's own server, on loopback).

Every `mlops run` is an MLflow run of the experiment named after the pipeline: its parameters, the
training and validation metrics of each epoch, the test metrics, report and plots of the evaluation,
and the registered version. They live in the embedded tracking store under MLOPS_HOME
(`sqlite:///<MLOPS_HOME>/mlflow.db`, artifacts in `<MLOPS_HOME>/mlartifacts`) unless MLFLOW_TRACKING_URI
names another. Ctrl-C stops the UI.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from mlcore.config import env_value
from mlops.cli import CliError
from mlops.ports import LOOPBACK, port_is_free
from mlops.settings import Settings

ORDER = 15
DEFAULT_PORT = 5000  # MLflow's


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
    try:
        return subprocess.call(ui_command(settings, port))
    except KeyboardInterrupt:
        return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("ui", help="the MLflow UI over this machine's pipeline runs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None,
                        help=f"loopback port (default: $MLOPS_UI_PORT or {DEFAULT_PORT})")
    parser.set_defaults(func=cmd_ui)
