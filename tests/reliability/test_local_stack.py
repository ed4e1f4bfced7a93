"""The local stack under an operator's hands (issue 13, case 7).

As found: `mlops up` right after a stop failed "port ... is in use" for up to 60 s (TIME_WAIT); a SIGKILLed
`mlops run` stayed "Executing" forever; `mlops serve --model registry:N` left the extracted model in /tmp
at every start.
"""
from __future__ import annotations

import json
import signal
import time

import psutil
import pytest
import requests

from tests.helpers.servers import free_port
from tests.helpers.stack import STACK_PORTS, Up, mlops, mlops_run

pytestmark = pytest.mark.timeout(240)


def test_mlops_up_starts_again_at_once_after_a_stop(home):
    first = Up(home.home).start()
    with requests.Session() as session:  # keep-alive connections: the servers close them, on their side TIME_WAIT
        for _ in range(3):
            session.get(f"{first.url}/ping", timeout=10)
            session.post(f"http://127.0.0.1:{first.lambda_url}/", json={"text": "x"}, timeout=30)
        assert first.stop() == 0, first.output
    again = Up(home.home, endpoint=first.endpoint, lambda_url=first.lambda_url)
    try:
        again.start()
        assert requests.get(f"{again.url}/ping", timeout=10).status_code == 503  # up; nothing Approved yet
    finally:
        again.stop()
    assert "is in use" not in again.output, again.output


def test_a_sigkilled_run_is_marked_failed_on_the_next_cli_start(home):
    run = mlops(home.home, "run", "--input", "demo", "--no-cache")
    runs = home.home / "runs"
    deadline, documents = time.time() + 120, []
    while time.time() < deadline and not documents:
        documents = list(runs.glob("*/run.json"))
        time.sleep(0.1)
    assert documents, "mlops run wrote no run.json"
    children = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    for child in children:  # its step process, if one had started
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    assert json.loads(documents[0].read_text())["status"] == "Executing"
    code, output = mlops_run(home.home, "registry", "list")
    assert code == 0, output
    record = json.loads(documents[0].read_text())
    assert record["status"] == "Failed", record["status"]
    assert f"pid {run.pid}" in record["failure"] and "killed" in record["failure"], record["failure"]
    assert "marked Failed" in output and record["run_id"] in output, output


def test_mlops_serve_removes_the_model_it_extracted_when_it_stops(home, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port(*STACK_PORTS)
    serve = mlops(home.home, "serve", "--model", "registry:1", "--port", str(port), TMPDIR=str(scratch))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and serve.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        assert any(scratch.iterdir()), "the model should be extracted under $TMPDIR while serving"
    finally:
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=60)[0]
    assert serve.returncode == 0, output
    left = {p.relative_to(scratch).as_posix(): p.stat().st_size for p in scratch.rglob("*") if p.is_file()}
    # onnxruntime writes a 51-byte telemetry id (.ses) at import; the model (MBs) must be gone
    assert sum(left.values()) < 4096 and not [p for p in scratch.iterdir() if p.is_dir()], f"left behind: {left}"
