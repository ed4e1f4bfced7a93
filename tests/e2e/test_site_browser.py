"""The web app: its node unit tests, and a real browser (Debian's Chromium via playwright-core) against the
real local stack: model server -> endpoint proxy -> predict Lambda (Function URL adapter) -> site/server.mjs."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from mlops.cli import main as cli_main
from mlops.commands.demo import start_local_stack
from mlops.local_endpoint import LocalEndpoint
from mlops.settings import Settings
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from pipelines.tarball import make_model_tarball
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import free_port, stop, wait_http

SITE = REPO_ROOT / "site"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("SITE_ARTIFACTS", REPO_ROOT / "test-results"))
MARGIN = 0.1  # texts whose probability is this far from the threshold: the same answer from every backend


def _loud_skip(reason: str) -> None:
    """Skip, and say so in the warnings summary too: a missing browser must never look like a pass."""
    warnings.warn(f"SITE BROWSER TEST NOT RUN: {reason}", stacklevel=2)
    pytest.skip(f"SITE BROWSER TEST NOT RUN: {reason}")


def _node_major() -> int:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().lstrip("v").split(".")[0])


def _require_node() -> None:
    if not shutil.which("node"):
        _loud_skip("node is not installed (apt-get install nodejs, or see site/README.md)")
    if _node_major() < 20:
        _loud_skip(f"node {_node_major()} is too old: the site needs node >= 20")


def _require_site_packages(package: str) -> None:
    """site/node_modules/<package>, installed from package-lock.json (`npm ci`) when missing."""
    if not (SITE / "node_modules" / package).exists():
        if not shutil.which("npm"):
            _loud_skip("site/node_modules is missing and npm is not installed: run `npm ci` in site/")
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SITE, capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            _loud_skip(f"`npm ci` in site/ failed: {proc.stderr[-500:]}")


def _require_browser_tools() -> None:
    _require_node()
    if not CHROMIUM.exists():
        _loud_skip(f"Chromium not found at {CHROMIUM}: `make site-deps` installs it (apt-get install chromium)")
    _require_site_packages("playwright-core")


def test_site_unit_tests_pass():
    _require_node()
    _require_site_packages("@smithy/signature-v4")  # the Netlify function's SigV4 signer
    files = sorted(str(p.relative_to(SITE)) for p in (SITE / "test").glob("*.test.mjs"))
    assert len(files) >= 3, files
    proc = subprocess.run(["node", "--test", *files], cwd=SITE, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
    passed = int(proc.stdout.split("# pass ")[1].split()[0])
    assert passed >= 20, proc.stdout[-2000:]


@pytest.fixture(scope="session")
def keyword_texts(packaged_tiny_model) -> dict:
    """A label the served model learned, with texts on its either side: {"label", "single", "texts": {text: has}}.

    The tiny keyword model learns most labels but, depending on the seed, not always every one (over 10 seeds
    each label was missed by some), so the texts come from what this model answers, not from a fixed label.
    """
    import numpy as np

    from mlcore.predictor import load_predictor
    from tests.helpers.data import KEYWORDS

    predictor = load_predictor(packaged_tiny_model)
    for label, (first, second) in KEYWORDS.items():
        other = next(words for name, words in KEYWORDS.items() if name != label)
        texts = {f"it was an {first} on the table": True, f"the {other[0]} and the {other[1]}": False,
                 f"it is the {second}": True}
        single = f"an {first} and an {second} on the table"
        column = predictor.label_names.index(label)
        threshold = predictor.thresholds[column]
        probs = predictor.predict_proba([*texts, single])
        clear = [p >= threshold + MARGIN if has else p <= threshold - MARGIN
                 for p, has in zip(probs[:, column], [*texts.values(), True])]
        if all(clear) and int(np.argmax(probs[-1])) == column:
            return {"label": label, "single": single, "texts": texts}
    raise AssertionError("the tiny keyword model learned no label: see tests/helpers/models.py's recipe")


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """Checked before the model is trained, so a machine without a browser skips fast."""
    _require_browser_tools()


@pytest.fixture
def stack(browser_tools, tmp_path, monkeypatch, packaged_tiny_model):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    settings = Settings.from_env()
    registry = LocalModelRegistry(settings.registry_dir)
    evaluation = {"multilabel_classification_metrics": {"f1_macro": {"value": 0.9}, "roc_auc_macro": {"value": 0.95}}}
    registry.register(settings.model_package_group, make_model_tarball(packaged_tiny_model, tmp_path / "m.tar.gz"),
                      evaluation)
    assert cli_main(["registry", "approve", "1"]) == 0  # the approval event deploys v1 to the local endpoint
    urls, stop_stack = start_local_stack(settings)
    port = free_port(18200, 18299)
    site = subprocess.Popen(["node", "server.mjs", "--port", str(port)], cwd=SITE,
                            env={**os.environ, "PREDICT_URL": urls["lambda"]})
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc=site, timeout=30)
        yield {"site": f"http://127.0.0.1:{port}", "settings": settings}
    finally:
        stop(site)
        stop_stack()
        LocalEndpoint(settings.home, spec.ENDPOINT_NAME).stop()


def browse(mode: str, site: str, text: str, texts=(), **extra: str) -> dict:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SITE_URL": site, "OUT_DIR": str(ARTIFACTS), "CHROMIUM": str(CHROMIUM), "TEXT": text,
           "TEXTS": "\n".join(texts), **extra}
    proc = subprocess.run(["node", "browser/e2e.mjs", mode], cwd=SITE, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def top_label(card: dict) -> str:
    return max(card["rows"], key=lambda r: r["percent"])["label"]


def _demo_answer() -> str:
    """An answer over the demo dataset's 8 labels (long names: technical_issue, feature_request)."""
    from mlcore.datasets.demo import LABELS as DEMO_LABELS

    scores = {name: round(0.9 - 0.1 * i, 2) for i, name in enumerate(DEMO_LABELS)}
    return json.dumps({"predictions": [{"text_index": 0, "inferenceId": "r:0", "labels": DEMO_LABELS[:2],
                                        "scores": scores, "thresholds": dict.fromkeys(DEMO_LABELS, 0.5)}],
                       "requestId": "r", "model": {"version": "1"}, "latencyMs": {"endpoint": 3.2}})


def test_type_submit_see_labels_then_a_friendly_error_when_the_backend_is_down(stack, keyword_texts):
    label, texts = keyword_texts["label"], keyword_texts["texts"]
    seen = browse("predict", stack["site"], keyword_texts["single"], texts, PHONE_ANSWER=_demo_answer())
    assert seen["problems"] == []  # no console error, no exception, no CSP violation (netlify.toml's headers)
    assert re.fullmatch(r"Model version 1 · [\d.]+ ms at the model", seen["meta"]), seen["meta"]
    assert seen["focus"]["contrast"] >= 3.0 and seen["focus"]["width"] == "3px", seen["focus"]  # WCAG 2.2 focus
    assert seen["loading"] == {"disabled": True, "label": "Classifying…", "busy": "true"}

    [card] = seen["single"]
    assert sorted(r["label"] for r in card["rows"]) == ["a", "b", "c"]  # every label with its bar
    percents = [r["percent"] for r in card["rows"]]
    assert percents == sorted(percents, reverse=True)  # most probable first
    assert top_label(card) == label and label in card["predicted"]  # the keyword model recognises its keywords
    assert all(r["threshold"].startswith("threshold ") and r["tickVisible"] for r in card["rows"])
    assert seen["status"] == "Predicted labels: " + ", ".join(card["predicted"])

    assert seen["multiStatus"] == "Classified 3 texts."
    assert [(label in c["predicted"]) for c in seen["multi"]] == list(texts.values())  # one card per line, in order
    phone = seen["phone"]
    assert phone["overflowPx"] <= 0  # nothing wider than a phone screen
    assert phone["brokenNames"] == []  # "technical_issue" stays whole on a 390 px screen
    assert 0 <= phone["resultTop"] < phone["viewport"], phone  # the results come into view by themselves
    for name in ("site-result.png", "site-multi.png", "site-result-phone.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name

    LocalEndpoint(stack["settings"].home, spec.ENDPOINT_NAME).stop()  # the model server goes away
    shown = browse("error", stack["site"], "an apple")
    assert shown["error"] == "The model is not available right now. Please try again later."
    assert re.fullmatch(r" Reference: [\w-]{8,}", shown["reference"]), shown  # the Lambda's request id
    assert shown["rows"] == 0 and shown["problems"] == []
    assert (ARTIFACTS / "site-error.png").stat().st_size > 5_000


def test_a_correction_made_in_the_site_is_counted_by_the_next_monitor_run(stack, packaged_tiny_model, tmp_path,
                                                                          keyword_texts):
    """Classify a text, tick the right labels, send: the Lambda stores SageMaker ground truth keyed by the text's
    inference id, and `mlops monitor report` scores the model on it (the report's quality section counts it)."""
    label, [text, *_] = keyword_texts["label"], keyword_texts["texts"]
    truth = sorted({"a", "b", "c"} - {label})
    seen = browse("feedback", stack["site"], text, LABELS=",".join(truth))
    assert label in seen["predicted"]  # the model's answer, which the person corrects
    assert seen["problems"] == [] and seen["note"].startswith(f"Thank you: recorded as the true labels ({', '.join(truth)})")
    assert seen["locked"] == 3  # sent once: the choices are locked
    inference_id = seen["inferenceId"]
    assert re.fullmatch(r"[\w-]{8,}:0", inference_id)

    baseline = tmp_path / "baseline"  # the deployed model's labels and thresholds, its offline metrics
    baseline.mkdir()
    shutil.copy(packaged_tiny_model / "thresholds.json", baseline / "thresholds.json")
    labels = json.loads((baseline / "thresholds.json").read_text())["labels"]
    (baseline / "evaluation.json").write_text(json.dumps({"labels": labels, "multilabel_classification_metrics": {
        "f1_macro": {"value": 0.9}, "roc_auc_macro": {"value": 0.95}}}))
    out = tmp_path / "monitor"
    assert cli_main(["monitor", "report", "--baseline-dir", str(baseline), "--output-dir", str(out),
                     "--min-labelled-samples", "1", "--bootstrap", "0", "--quiet"]) == 0
    doc = json.loads((out / "monitoring.json").read_text())
    assert doc["overall"]["labelled"] == 1 and doc["overall"]["quality"]["status"] in ("ok", "violation")
    per_label = doc["overall"]["quality"]["report"]["multilabel_classification_metrics"]["per_label"]
    assert {name: m["support"] for name, m in per_label.items()} == {label: 0, **dict.fromkeys(truth, 1)}
    [row] = [r for r in (json.loads(line) for line in (out / "merged.jsonl").read_text().splitlines())
             if r["labels"] is not None]
    assert row["inference_id"] == inference_id and row["labels"] == truth and sorted(row["predicted"]) == sorted(seen["predicted"])
    html = (out / "report.html").read_text()
    assert "Model quality (1 labelled text)" in html
