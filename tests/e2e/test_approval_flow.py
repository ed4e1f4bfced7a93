"""End to end, locally: approve v1 -> served through the Lambda; approve v2 under load -> no request
fails and answers switch to v2; reject v2 -> back on v1. Same handlers as on AWS."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests

from mlcore.metrics import multilabel_report
from mlcore.predictor import load_predictor
from mlops.cli import main as cli_main
from mlops.commands.demo import start_local_stack
from mlops.local_endpoint import LocalEndpoint
from mlops.settings import Settings
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from pipelines.tarball import make_model_tarball
from tests.helpers.models import save_tiny_bert

TEXTS = ["an apple and a banana", "coconut cherry"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    settings = Settings.from_env()
    registry = LocalModelRegistry(settings.registry_dir)
    models = {}
    for version, seed in ((1, 1), (2, 2)):
        model_dir = save_tiny_bert(tmp_path / f"m{version}", labels=["a", "b", "c"], seed=seed)
        tarball = make_model_tarball(model_dir, tmp_path / f"m{version}.tar.gz")
        evaluation = multilabel_report(np.eye(3)[[0, 1, 2, 0]], np.eye(3)[[0, 1, 2, 0]] * 0.8 + 0.1, 0.5,
                                       ["a", "b", "c"], bootstrap=0)
        registry.register(settings.model_package_group, tarball, evaluation)
        models[version] = load_predictor(model_dir, backend="torch").predict_proba(TEXTS)
    yield settings, models
    LocalEndpoint(settings.home, spec.ENDPOINT_NAME).stop()


def scores(lambda_url: str) -> np.ndarray:
    r = requests.post(lambda_url, json={"texts": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    return np.array([[p["scores"][l] for l in "abc"] for p in r.json()["predictions"]])


def serving(answer: np.ndarray, models: dict) -> int:
    return min(models, key=lambda v: np.abs(models[v] - answer).max())


def test_approve_serve_switch_under_load_and_roll_back(home):
    settings, models = home
    assert np.abs(models[1] - models[2]).max() > 1e-3, "the two versions must answer differently"

    assert cli_main(["registry", "approve", "1"]) == 0
    urls, stop = start_local_stack(settings)
    try:
        first = scores(urls["lambda"])
        assert serving(first, models) == 1 and np.allclose(first, models[1], atol=1e-4)

        answers: list[tuple[int, int | None]] = []  # (status, version that answered)
        done = threading.Event()

        def load():  # until told to stop, at most 120 s: a count bound ran out before a slow deployment ended
            give_up = time.time() + 120
            while not done.is_set() and time.time() < give_up:
                r = requests.post(urls["lambda"], json={"text": TEXTS[0]}, timeout=30)
                version = None
                if r.status_code == 200:
                    got = np.array([r.json()["predictions"][0]["scores"][l] for l in "abc"])
                    version = min(models, key=lambda v: np.abs(models[v][0] - got).max())
                answers.append((r.status_code, version))

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(0.3)
        assert cli_main(["registry", "approve", "2"]) == 0  # returns once v2 serves and v1 is stopped
        switched_at = len(answers)
        deadline = time.time() + 30
        while len(answers) < switched_at + 30 and loader.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        done.set()
        loader.join(60)
        statuses = {status for status, _ in answers}
        assert statuses == {200}, f"{len(answers)} requests, statuses {statuses}"
        versions = [v for _, v in answers]
        assert versions[0] == 1 and versions[-1] == 2, (f"{len(answers)} requests, {switched_at} before the "
                                                        f"approval returned: {versions}")
        flips = sum(a != b for a, b in zip(versions, versions[1:]))
        assert flips == 1, f"answers must switch once from v1 to v2, not flap: {versions}"
        assert switched_at >= 10, "the load must overlap the deployment"
        print(f"{len(answers)} requests under load, {switched_at} while v2 was deployed, switch at "
              f"request {versions.index(2)}")
        assert serving(scores(urls["lambda"]), models) == 2

        assert cli_main(["registry", "reject", "2", "--reason", "worse on slice X"]) == 0
        assert serving(scores(urls["lambda"]), models) == 1
        assert LocalEndpoint(settings.home, spec.ENDPOINT_NAME).current_version() == 1
    finally:
        stop()


def test_a_version_that_fails_to_start_leaves_the_old_one_serving(home, tmp_path):
    settings, _models = home
    assert cli_main(["registry", "approve", "1"]) == 0
    registry = LocalModelRegistry(settings.registry_dir)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    registry.register(settings.model_package_group, make_model_tarball(broken, tmp_path / "broken.tar.gz"),
                      multilabel_report(np.eye(3), np.eye(3), 0.5, ["a", "b", "c"], bootstrap=0))
    assert cli_main(["registry", "approve", "3"]) == 2
    assert LocalEndpoint(settings.home, spec.ENDPOINT_NAME).current_version() == 1
    url = LocalEndpoint(settings.home, spec.ENDPOINT_NAME).state()["url"]
    assert requests.post(f"{url}/invocations", json={"inputs": "apple"}, timeout=10).status_code == 200
