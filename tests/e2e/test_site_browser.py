"""The web app in a real browser (Debian's Chromium via playwright-core) against the real local stack:
model server -> endpoint proxy -> predict Lambda handler (Function URL adapter) -> site server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.cli import main as cli_main
from mlops.commands.demo import start_local_stack
from mlops.local_endpoint import LocalEndpoint
from mlops.settings import Settings
from pipelines import spec
from pipelines.local_runner import make_model_tarball
from pipelines.registry import LocalModelRegistry
from tests.conftest import REPO_ROOT
from tests.helpers.servers import free_port, stop, wait_http

SITE = REPO_ROOT / "site"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "test-results"


def _missing_browser_tools() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (needed to drive the browser)"
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM}: install Debian's chromium (make test does: apt-get install chromium)"
    if not (SITE / "node_modules" / "playwright-core").exists():
        return "site/node_modules/playwright-core missing: run `npm ci` in site/ (make test does)"
    return None


def test_site_unit_tests_pass():
    if not shutil.which("node"):
        pytest.skip("node is not installed: the site's unit tests (node --test) cannot run")
    proc = subprocess.run(["node", "--test", "test/"], cwd=SITE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


@pytest.fixture
def stack(tmp_path, monkeypatch, trained_tiny_model):
    reason = _missing_browser_tools()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    settings = Settings.from_env()
    registry = LocalModelRegistry(settings.registry_dir)
    evaluation = json.loads(json.dumps({"multilabel_classification_metrics": {
        "f1_macro": {"value": 0.9}, "roc_auc_macro": {"value": 0.95}}}))
    registry.register(settings.model_package_group, make_model_tarball(trained_tiny_model, tmp_path / "m.tar.gz"),
                      evaluation)
    assert cli_main(["registry", "approve", "1"]) == 0
    urls, stop_stack = start_local_stack(settings)
    port = free_port(18200, 18299)
    site = subprocess.Popen([sys.executable, "-m", "mlops.site_server", "--port", str(port),
                             "--predict-url", urls["lambda"]], cwd=REPO_ROOT)
    wait_http(f"http://127.0.0.1:{port}/", proc=site)
    yield {"site": f"http://127.0.0.1:{port}", "settings": settings}
    stop(site)
    stop_stack()
    LocalEndpoint(settings.home, spec.ENDPOINT_NAME).stop()


def browse(mode: str, site: str) -> dict:
    ARTIFACTS.mkdir(exist_ok=True)
    env = {**os.environ, "SITE_URL": site, "OUT_DIR": str(ARTIFACTS), "CHROMIUM": str(CHROMIUM),
           "TEXT": "an apple and a cherry on the table"}
    proc = subprocess.run(["node", "browser/e2e.mjs", mode], cwd=SITE, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_type_submit_see_labels_then_a_friendly_error_when_the_backend_is_down(stack):
    seen = browse("predict", stack["site"])
    assert seen["rows"] == 3  # every label of the model, with its probability bar
    assert "a" in seen["labels"]  # the keyword model recognises "apple"
    assert seen["status"].startswith("Predicted labels:")
    assert (ARTIFACTS / "site-result.png").stat().st_size > 10_000

    LocalEndpoint(stack["settings"].home, spec.ENDPOINT_NAME).stop()  # the model server goes away
    shown = browse("error", stack["site"])
    assert "not available right now" in shown["error"]
