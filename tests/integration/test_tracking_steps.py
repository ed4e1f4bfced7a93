"""The steps' own MLflow logging, as on SageMaker: no run handed in (MLFLOW_RUN_ID), only a tracking URI and an
experiment (what the pipeline sets when it has a tracking server). Training opens a run named after the job and
records its id in the model; evaluation, in another container, finds it there and logs the test metrics into it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers.data import keyword_rows, write_split_dir
from tests.helpers.paths import REPO_ROOT

HPS = ["--epochs", "2", "--batch-size", "16", "--learning-rate", "5e-3", "--head-learning-rate", "5e-3",
       "--max-length", "32", "--progress", "false", "--export-onnx", "false", "--threshold-grid", "5"]


def test_training_and_evaluation_log_into_one_run(tmp_path, tiny_base_model):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "bertmlc-tracked",
           "TRAINING_JOB_NAME": "pipelines-abc123-TrainModel-x1"}
    data = {name: write_split_dir(tmp_path / name, keyword_rows(n, seed=seed))
            for name, n, seed in (("train", 64, 1), ("validation", 32, 2), ("test", 32, 3))}
    train = subprocess.run([sys.executable, str(REPO_ROOT / "steps" / "train.py"), *HPS, "--base-model",
                            str(tiny_base_model), "--train-dir", str(data["train"]), "--validation-dir",
                            str(data["validation"]), "--model-dir", str(tmp_path / "model"), "--output-data-dir",
                            str(tmp_path / "output")], env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads((tmp_path / "model" / "training_summary.json").read_text())  # the artifact's copy
    evaluate = subprocess.run([sys.executable, str(REPO_ROOT / "steps" / "evaluate.py"), "--model-path",
                               str(tmp_path / "model"), "--test-dir", str(data["test"]), "--output-dir",
                               str(tmp_path / "evaluation"), "--bootstrap", "0", "--progress", "false"],
                              env={k: v for k, v in env.items() if k != "TRAINING_JOB_NAME"}, capture_output=True,
                              text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("bertmlc-tracked")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == summary["mlflow_run_id"] and run.info.run_name == "pipelines-abc123-TrainModel-x1"
    assert run.info.status == "FINISHED"  # training ended the run it opened
    evaluation = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert run.data.metrics["f1_macro"] == evaluation["multilabel_classification_metrics"]["f1_macro"]["value"]
    assert run.data.metrics["validation_f1_macro"] == summary["validation"]["f1_macro"]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert run.data.params["learning_rate"] == "0.005"
    # the report and its plots land beside the database, not in ./mlruns of wherever the step ran
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/evaluation.json" in artifacts
    assert list((tmp_path / "mlartifacts").rglob("evaluation.json"))
