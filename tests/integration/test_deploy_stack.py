"""`mlops up` as a user runs it: one command brings the endpoint + Lambda up; SIGTERM stops every process."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from mlcore.metrics import multilabel_report
from mlops.local_endpoint import LocalEndpoint
from mlops.settings import Settings
from pipelines import spec
from pipelines.liveness import alive
from pipelines.registry import LocalModelRegistry
from pipelines.tarball import make_model_tarball
from tests.helpers.models import save_tiny_bert
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import free_port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def approved_home(tmp_path, monkeypatch):
    """A home whose registry holds one Approved tiny model that nothing serves yet."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    registry = LocalModelRegistry(settings.registry_dir)
    model_dir = save_tiny_bert(tmp_path / "m1", labels=["a", "b", "c"], seed=1)
    report = multilabel_report(np.eye(3), np.eye(3) * 0.8 + 0.1, 0.5, ["a", "b", "c"], bootstrap=0)
    registry.register(settings.model_package_group, make_model_tarball(model_dir, tmp_path / "m1.tar.gz"), report)
    registry.update_status(settings.model_package_group, 1, "Approved")  # the status only: no deployment
    yield settings
    LocalEndpoint(settings.home, spec.ENDPOINT_NAME).stop()


def _up(settings, *extra: str, **ports: int) -> subprocess.Popen:
    env = {**os.environ, "MLOPS_HOME": str(settings.home), "MLOPS_ENDPOINT_PORT": str(ports["endpoint"]),
           "MLOPS_LAMBDA_PORT": str(ports["lambda_url"]), "ALLOWED_ORIGINS": "http://localhost:18199"}
    return subprocess.Popen([sys.executable, "-m", "mlops", "up", "--no-site", *extra], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_up_serves_the_newest_approved_version_and_sigterm_stops_everything(approved_home):
    settings = approved_home
    endpoint_port = free_port(18100, 18125)
    lambda_port = free_port(endpoint_port + 1, 18150)
    proc = _up(settings, endpoint=endpoint_port, lambda_url=lambda_port)
    try:
        deadline, answer = time.time() + 180, None
        while time.time() < deadline and proc.poll() is None:
            try:
                answer = requests.post(f"http://127.0.0.1:{lambda_port}/", json={"texts": ["apple", "cherry"]},
                                       headers={"Origin": "http://localhost:18199"}, timeout=10)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert answer is not None, f"mlops up did not come up: {proc.stdout.read() if proc.poll() is not None else ''}"
        assert answer.status_code == 200, answer.text
        assert [p["text_index"] for p in answer.json()["predictions"]] == [0, 1]
        assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:18199"
        state = LocalEndpoint(settings.home, spec.ENDPOINT_NAME).state()
        assert state["version"] == 1 and alive(state["pid"])
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert "stopping the stack" in output
    assert not _listening(endpoint_port) and not _listening(lambda_port), "a stack process outlived mlops up"
    assert not alive(state["pid"]), "the model server outlived mlops up"
    assert LocalEndpoint(settings.home, spec.ENDPOINT_NAME).state() == {}


def test_up_refuses_a_taken_port_or_a_bad_one_before_starting_anything(approved_home):
    settings = approved_home
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _up(settings, endpoint=port, lambda_url=free_port(18150, 18199))
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2 and f"port {port} (MLOPS_ENDPOINT_PORT) is in use" in output, output
    assert LocalEndpoint(settings.home, spec.ENDPOINT_NAME).state() == {}, "nothing may be deployed"
    env = {**os.environ, "MLOPS_HOME": str(settings.home), "MLOPS_LAMBDA_PORT": "http"}
    proc = subprocess.run([sys.executable, "-m", "mlops", "up", "--no-site"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "MLOPS_LAMBDA_PORT='http' is not a port number" in proc.stderr + proc.stdout
