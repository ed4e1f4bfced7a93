"""`mlops ui`: MLflow's own server over the embedded tracking store of MLOPS_HOME, on loopback, over real HTTP."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest
import requests

from mlcore import tracking
from mlops.cli import main as cli_main
from pipelines import spec
from tests.helpers.servers import free_port, stop, wait_http

PORTS = (18900, 19000)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home with one pipeline run tracked the way the local runner tracks it."""
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from mlops.settings import Settings

    settings = Settings.from_env()
    run = tracking.Run.start(settings.tracking_uri, spec.PIPELINE_NAME, "20261202-120000-abcdef",
                             settings.artifacts_dir.as_uri())
    assert run is not None
    run.log_metrics({"f1_macro": 0.5125})
    run.end()
    return home


def test_mlops_ui_serves_the_tracked_runs(home):
    port = free_port(*PORTS)
    proc = subprocess.Popen([sys.executable, "-m", "mlops.cli", "ui", "--port", str(port)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
        assert "<html" in requests.get(f"http://127.0.0.1:{port}/", timeout=10).text.lower()
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        experiment = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": spec.PIPELINE_NAME},
                                  timeout=10).json()["experiment"]
        runs = requests.post(f"{api}/runs/search", json={"experiment_ids": [experiment["experiment_id"]]},
                             timeout=10).json()["runs"]
        assert [r["info"]["run_name"] for r in runs] == ["20261202-120000-abcdef"]
        assert {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]} == {"f1_macro": 0.5125}
        server_tree = psutil.Process(proc.pid).children(recursive=True)  # MLflow's CLI, uvicorn, job consumers
        assert server_tree
    finally:
        stop(proc)  # SIGTERM, as a supervisor stops it
    # the whole MLflow tree went with it (found left running after the suite: uvicorn and four huey consumers)
    _, left = psutil.wait_procs(server_tree, timeout=15)
    assert not left, [p.cmdline() for p in left]


def test_mlops_ui_says_what_is_wrong(home, monkeypatch, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert cli_main(["ui", "--port", str(busy.getsockname()[1])]) == 2
    assert "is in use: pass --port" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    assert cli_main(["ui"]) == 2
    assert "open that tracking server's own UI" in capsys.readouterr().err
