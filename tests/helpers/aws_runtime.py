"""AWS's own serving runtime, offline: the Hugging Face inference image's stack, and SageMaker Runtime before it.

- `start_dlc_endpoint`: a model.tar.gz extracted to `<root>/opt/ml/model` and served as the
  huggingface-pytorch-inference image serves it: the image's entry point (toolkit `serving.main`,
  tests/aws_runtime/dlc/serve.py) under the image's packages (.venv-dlc, `make aws-runtimes`), which
  holds nothing of this project and no onnxruntime; pip has no index and the Hub is offline.
- `runtime_front`: SageMaker Runtime's InvokeEndpoint before it (mlops.runtime_front), so boto3's
  `sagemaker-runtime` client and the predict Lambda call it unchanged.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.helpers.paths import REPO_ROOT

DLC_VENV = REPO_ROOT / ".venv-dlc"
DLC_PYTHON = DLC_VENV / "bin" / "python"
SERVE_SCRIPT = REPO_ROOT / "tests" / "aws_runtime" / "dlc" / "serve.py"


def missing_runtime() -> str | None:
    """Why the image's serving stack cannot run here (None when it can)."""
    if not (DLC_VENV / ".installed").exists():
        return (f"the inference image's packages are not installed in {DLC_VENV}: `make aws-runtimes` builds it "
                "(make test runs it first; see its warnings)")
    if shutil.which("java") is None:
        return "multi-model-server needs Java and `java` is not on PATH: apt-get install default-jre-headless"
    return None


def no_network_env(root: Path) -> dict:
    """An environment with no route to a package index or the Hugging Face Hub, and only the image's packages."""
    return {
        "PATH": f"{DLC_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(root / "tmp"),
        "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    }


@dataclass
class DlcEndpoint:
    """A running image stack: the inference URL, the process group, the log, and its cold start."""

    url: str
    proc: subprocess.Popen
    log: Path
    root: Path
    cold_start_s: float = 0.0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the whole process group (entry point, Java front end, Python workers), then SIGKILL
        whatever is left: multi-model-server's workers do not always exit with the front end."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and group_alive(self.proc.pid):
            time.sleep(0.1)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def extract_artifact(model_tar: Path, root: Path) -> Path:
    """Unpack a model.tar.gz where SageMaker puts it: <root>/opt/ml/model."""
    model_dir = root / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(model_tar, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def start_dlc_endpoint(model_tar: Path, root: Path, port: int, model_env: dict[str, str],
                       timeout: float = 300.0) -> DlcEndpoint:
    """Serve `model_tar` with the image's stack on `port`; returns once a real invocation answers 200.

    `cold_start_s` is from process start to that first 200 (the model loaded and warmed in a worker).
    """
    extract_artifact(model_tar, root)
    for sub in ("etc", "tmp", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = {**no_network_env(root), **model_env,
           "SAGEMAKER_BASE_DIR": str(root / "opt" / "ml"),
           "SAGEMAKER_BIND_TO_PORT": str(port),
           "MMS_CONFIG_FILE": str(root / "etc" / "sagemaker-mms.properties")}
    log = root / "serve.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(DLC_PYTHON), str(SERVE_SCRIPT)], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = DlcEndpoint(f"http://127.0.0.1:{port}", proc, log, root)
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the image's entry point exited with {proc.returncode}:\n{endpoint.log_text()[-4000:]}")
        try:
            answer = requests.post(endpoint.url + "/invocations", json={"inputs": "warm up"}, timeout=30)
            if answer.status_code == 200:
                endpoint.cold_start_s = time.perf_counter() - started
                return endpoint
        except requests.RequestException:
            pass
        time.sleep(0.25)
    endpoint.stop()
    raise TimeoutError(f"the image's stack did not answer within {timeout:.0f}s:\n{endpoint.log_text()[-4000:]}")


@contextmanager
def runtime_front(endpoint_name: str, container_url: str):
    """SageMaker Runtime (InvokeEndpoint) for `endpoint_name` in front of a container; yields its URL."""
    from aiohttp import web

    from mlops.runtime_front import Target, create_front_app

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_front_app(endpoint_name, lambda: Target(container_url)))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
