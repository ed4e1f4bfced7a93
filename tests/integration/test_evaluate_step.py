"""steps/evaluate.py as SageMaker runs it: a subprocess over a model (directory or model.tar.gz) and a test split."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from mlcore.datasets import read_split
from mlcore.metrics import multilabel_report
from mlcore.predictor import load_predictor
from pipelines.spec import QUALITY_GATE, json_path_get
from tests.helpers.data import keyword_rows, write_split_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "steps" / "evaluate.py"
BOOTSTRAP = 25
HEADLINE = ("f1_macro", "f1_micro", "f1_weighted", "f1_samples", "roc_auc_macro", "roc_auc_micro", "precision_macro",
            "precision_micro", "recall_macro", "recall_micro", "subset_accuracy", "hamming_loss")
PER_LABEL = {"precision", "recall", "f1", "roc_auc", "support", "tp", "fp", "fn", "tn", "threshold"}


def run_evaluate(model_path: Path, test_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--model-path", str(model_path), "--test-dir", str(test_dir),
         "--output-dir", str(output_dir), "--backend", "torch", "--bootstrap", str(BOOTSTRAP), "--progress", "false",
         *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> Path:
    """Keyword texts over labels a, b, c where "c" never occurs: its ROC AUC is undefined (null)."""
    rows = [{"text": r["text"], "labels": [l for l in r["labels"] if l != "c"]} for r in keyword_rows(48, seed=5)]
    return write_split_dir(tmp_path_factory.mktemp("test-split"), rows)


@pytest.fixture(scope="module")
def model_tarball(tmp_path_factory, tiny_model_dir) -> Path:
    """The model directory packed as SageMaker does: its files at the archive root."""
    path = tmp_path_factory.mktemp("packed") / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for item in sorted(tiny_model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    return path


@pytest.fixture(scope="module")
def evaluated_dir(tmp_path_factory, tiny_model_dir, test_split) -> Path:
    out = tmp_path_factory.mktemp("evaluation-dir")
    proc = run_evaluate(tiny_model_dir, test_split, out)
    assert proc.returncode == 0, proc.stderr
    assert "test_f1_macro=" in proc.stdout
    return out


def test_evaluation_json_has_the_documented_shape(evaluated_dir, test_split):
    doc = json.loads((evaluated_dir / "evaluation.json").read_text())
    json.dumps(doc, allow_nan=False)  # strict JSON: undefined values are null, never NaN
    n = len(read_split(test_split))
    assert doc["n_samples"] == n and doc["labels"] == ["a", "b", "c"]
    metrics = doc["multilabel_classification_metrics"]
    for key in HEADLINE:
        assert set(metrics[key]) >= {"value", "standard_deviation"}, key
        assert isinstance(metrics[key]["value"], float), key
        assert 0.0 <= metrics[key]["value"] <= 1.0, key
        assert metrics[key]["standard_deviation"] is not None and metrics[key]["standard_deviation"] >= 0, key
    assert set(metrics["per_label"]) == {"a", "b", "c"}
    for name, m in metrics["per_label"].items():
        assert PER_LABEL <= set(m), name
        assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == n
        assert m["support"] == m["tp"] + m["fn"]
        assert m["threshold"] == 0.5  # from the fixture's thresholds.json
    assert metrics["per_label"]["c"]["support"] == 0 and metrics["per_label"]["c"]["roc_auc"] is None
    assert all(isinstance(metrics["per_label"][n]["roc_auc"], float) for n in ("a", "b"))
    assert metrics["roc_auc_macro"]["labels_excluded"] == ["c"]


def test_quality_gate_paths_resolve_to_numbers(evaluated_dir):
    doc = json.loads((evaluated_dir / "evaluation.json").read_text())
    for path, _parameter in QUALITY_GATE:
        value = json_path_get(doc, path)
        assert isinstance(value, float) and 0.0 <= value <= 1.0, path


def test_numbers_equal_the_report_of_the_same_models_predictions(evaluated_dir, tiny_model_dir, test_split):
    doc = json.loads((evaluated_dir / "evaluation.json").read_text())
    test = read_split(test_split)
    predictor = load_predictor(tiny_model_dir, backend="torch")
    probs = predictor.predict_proba(test.texts, batch_size=64)
    y_true = test.with_label_names(predictor.label_names).matrix()
    expected = multilabel_report(y_true, probs, predictor.thresholds, predictor.label_names, bootstrap=BOOTSTRAP)
    got, want = doc["multilabel_classification_metrics"], expected["multilabel_classification_metrics"]
    for key in HEADLINE:
        assert got[key]["value"] == pytest.approx(want[key]["value"], abs=1e-5), key
        assert got[key]["standard_deviation"] == pytest.approx(want[key]["standard_deviation"], abs=1e-5), key
    for name in predictor.label_names:
        for field in ("tp", "fp", "fn", "tn", "support"):
            assert got["per_label"][name][field] == want["per_label"][name][field], (name, field)
        if want["per_label"][name]["roc_auc"] is None:
            assert got["per_label"][name]["roc_auc"] is None
        else:
            assert got["per_label"][name]["roc_auc"] == pytest.approx(want["per_label"][name]["roc_auc"], abs=1e-5)
    assert got["roc_auc_macro"]["labels_excluded"] == want["roc_auc_macro"]["labels_excluded"] == ["c"]
    # the untrained model is not accidentally perfect: the comparison above is not between constants
    assert not np.allclose(probs, probs[0])


def test_plots_are_written(evaluated_dir):
    for name in ("confusion_matrices.png", "roc_curves.png", "label_confusion.png"):
        path = evaluated_dir / name
        assert path.stat().st_size > 5_000, name
        image = mpimg.imread(path)
        assert image[..., :3].std() > 0.05, name


def test_model_tar_gz_gives_the_same_evaluation(tmp_path, model_tarball, test_split, evaluated_dir):
    out = tmp_path / "evaluation"
    proc = run_evaluate(model_tarball, test_split, out)
    assert proc.returncode == 0, proc.stderr
    packed = json.loads((out / "evaluation.json").read_text())
    unpacked = json.loads((evaluated_dir / "evaluation.json").read_text())
    assert packed == unpacked
    assert (out / "roc_curves.png").exists() and (out / "confusion_matrices.png").exists()


def test_unknown_test_label_exits_2_with_a_clear_message(tmp_path, tiny_model_dir):
    rows = keyword_rows(12, seed=3) + [{"text": "a durian arrived", "labels": ["durian"]}]
    test_dir = write_split_dir(tmp_path / "test", rows, labels=("a", "b", "c", "durian"))
    proc = run_evaluate(tiny_model_dir, test_dir, tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "does not know" in proc.stderr and "durian" in proc.stderr
    assert not (tmp_path / "out" / "evaluation.json").exists()


@pytest.mark.parametrize("case", ["missing model", "corrupt archive", "missing test split", "batch size 0"])
def test_bad_inputs_exit_2_without_traceback(tmp_path, tiny_model_dir, test_split, case):
    model, test_dir, extra = tiny_model_dir, test_split, []
    if case == "missing model":
        model, expected = tmp_path / "nowhere" / "model.tar.gz", ["model not found", "nowhere"]
    elif case == "corrupt archive":
        model = tmp_path / "model.tar.gz"
        model.write_bytes(b"not a tar archive")
        expected = ["cannot unpack the model archive", str(model)]
    elif case == "missing test split":
        test_dir, expected = tmp_path / "no-split", ["no data.jsonl in", "no-split"]
    else:
        extra, expected = ["--batch-size", "0"], ["--batch-size must be >= 1"]
    proc = run_evaluate(model, test_dir, tmp_path / "out", *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(part in proc.stderr for part in expected), proc.stderr
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_test_labels_are_aligned_to_the_model_order_by_name(tmp_path):
    from mlcore.datasets import LabeledTexts
    from steps.evaluate import align_to_model

    test = LabeledTexts(["x", "y", "z"], [["c"], ["a", "c"], []], ["c", "a", "b"])
    np.testing.assert_array_equal(align_to_model(test, ["a", "b", "c"]), [[0, 0, 1], [1, 0, 1], [0, 0, 0]])
    # a label the split declares but never uses is harmless; one it uses is an error
    unused = LabeledTexts(["x"], [["a"]], ["a", "zzz"])
    np.testing.assert_array_equal(align_to_model(unused, ["a", "b"]), [[1, 0]])
    with pytest.raises(ValueError, match=r"does not know: \['zzz'\]"):
        align_to_model(LabeledTexts(["x"], [["zzz"]], ["a", "zzz"]), ["a", "b"])


def test_the_gate_scores_the_backend_that_will_serve_with_the_torch_reference_beside(tiny_classifier, tmp_path):
    """Evaluation of the artifact as the pipeline passes it: model.tar.gz + the training output.tar.gz (model/)."""
    from mlcore.metrics import quick_scores
    from pipelines.tarball import make_model_tarball

    full, artifact = tiny_classifier
    serving = json.loads((artifact / "serving.json").read_text())["backend"]
    assert serving.startswith("onnx")
    model_tar = make_model_tarball(artifact, tmp_path / "model.tar.gz")
    output_tar = tmp_path / "reference" / "output.tar.gz"  # what SageMaker uploads of SM_OUTPUT_DATA_DIR
    output_tar.parent.mkdir()
    with tarfile.open(output_tar, "w:gz") as tar:
        tar.add(full, arcname="model")
    split = write_split_dir(tmp_path / "test", keyword_rows(60, seed=9))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model-path", str(model_tar), "--test-dir", str(split),
                           "--output-dir", str(tmp_path / "out"), "--reference-model-path", str(output_tar.parent),
                           "--bootstrap", "0", "--progress", "false"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert report["backend"] == serving and f"backend {serving}" in proc.stdout
    test = read_split(split)
    y = test.with_label_names(["a", "b", "c"]).matrix()
    served = load_predictor(artifact)
    expected = quick_scores(y, served.predict_proba(test.texts), served.thresholds)
    assert report["multilabel_classification_metrics"]["f1_macro"]["value"] == pytest.approx(expected["f1_macro"])
    reference = load_predictor(full, backend="torch")
    ref_probs = reference.predict_proba(test.texts)
    ref = report["reference"]
    assert ref["backend"] == "torch"
    assert ref["f1_macro"] == pytest.approx(quick_scores(y, ref_probs, reference.thresholds)["f1_macro"])
    assert ref["decisions"] == y.size and 0 <= ref["decisions_changed"] <= y.size
    assert 0 < ref["max_probability_difference"] < 0.2  # int8 moves probabilities a little, never wildly
    assert "reference (torch): f1_macro=" in proc.stdout


def test_an_unreadable_reference_is_a_clear_exit_2(tiny_classifier, tmp_path, test_split):
    _, artifact = tiny_classifier
    (tmp_path / "ref").mkdir()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model-path", str(artifact), "--test-dir", str(test_split),
                           "--output-dir", str(tmp_path / "out"), "--reference-model-path", str(tmp_path / "ref"),
                           "--bootstrap", "0", "--progress", "false"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "cannot score the reference model" in proc.stderr and "Traceback" not in proc.stderr
