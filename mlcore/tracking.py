"""MLflow tracking of a pipeline run: parameters, per-epoch metrics, evaluation metrics and plots, the registered version.

The steps log when MLFLOW_TRACKING_URI is set: locally the runner's `sqlite:///<MLOPS_HOME>/mlflow.db`, on
SageMaker a managed tracking server's ARN (the sagemaker-mlflow plugin signs the calls). Which run:
MLFLOW_RUN_ID (the local runner opens one per pipeline execution), else the run that trained the model (its id
is in the model's training_summary.json), else a new run in MLFLOW_EXPERIMENT_NAME named after the job.
MLflow being unreachable costs the tracking, never the step: each failure is a warning naming the cause.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_ID_KEY = "mlflow_run_id"  # in training_summary.json: the run evaluation logs into
HEADLINE_METRICS = ("f1_macro", "f1_micro", "f1_weighted", "f1_samples", "roc_auc_macro", "roc_auc_micro",
                    "precision_macro", "precision_micro", "recall_macro", "recall_micro", "subset_accuracy",
                    "hamming_loss")


def enabled(env: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if env is None else env).get("MLFLOW_TRACKING_URI"))


def _numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of `values` (None and text dropped: MLflow metrics are numbers)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[prefix + key] = float(value)
    return out


def _experiment_id(client, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, created (with `artifact_location`) when it does not exist yet."""
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def local_artifact_location(tracking_uri: str) -> str | None:
    """For an embedded sqlite store, artifacts beside the database (MLflow's default is ./mlruns of the
    current directory, wherever the step happens to run); None for a server, which keeps its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


class Run:
    """One MLflow run, logged to through the client; every call degrades to a warning when MLflow fails."""

    def __init__(self, client, run_id: str, created: bool = False, tracking_uri: str | None = None):
        self.client, self.run_id, self.created = client, run_id, created
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")

    @classmethod
    def start(cls, tracking_uri: str, experiment: str, run_name: str, artifact_location: str | None = None,
              tags: Mapping[str, Any] | None = None) -> Run | None:
        """A new run of `experiment` at `tracking_uri` (the local runner's, one per pipeline run); None on failure."""
        try:
            import mlflow

            client = mlflow.MlflowClient(tracking_uri)
            run_id = client.create_run(_experiment_id(client, experiment, artifact_location), run_name=run_name,
                                       tags={k: str(v) for k, v in (tags or {}).items()}).info.run_id
        except Exception as exc:  # any MLflow failure: the pipeline runs untracked
            logger.warning("MLflow tracking off: cannot start a run at %s (%s: %s)", tracking_uri,
                           exc.__class__.__name__, exc)
            return None
        return cls(client, run_id, created=True, tracking_uri=tracking_uri)

    def environment(self) -> dict[str, str]:
        """What a step process needs to log into this run."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_RUN_ID": self.run_id}

    @classmethod
    def open(cls, run_id: str | None = None, run_name: str | None = None) -> Run | None:
        """MLFLOW_RUN_ID's run, else `run_id`'s, else a new one named `run_name`; None when tracking is off or fails."""
        if not enabled():
            return None
        try:
            import mlflow

            client = mlflow.MlflowClient()
            run_id = os.environ.get("MLFLOW_RUN_ID") or run_id
            created = not run_id
            if not run_id:
                experiment_id = _experiment_id(client, os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default",
                                               local_artifact_location(os.environ["MLFLOW_TRACKING_URI"]))
                run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
            client.get_run(run_id)
        except Exception as exc:  # any MLflow, plugin or network failure: tracking off, the step goes on
            logger.warning("MLflow tracking off: cannot open a run at %s (%s: %s)",
                           os.environ.get("MLFLOW_TRACKING_URI"), exc.__class__.__name__, exc)
            return None
        logger.info("MLflow run %s at %s", run_id, os.environ.get("MLFLOW_TRACKING_URI"))
        return cls(client, run_id, created)

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        try:
            fn(self.run_id, *args, **kwargs)
        except Exception as exc:  # as in Run.open: a warning, the step goes on
            logger.warning("MLflow: could not %s in run %s (%s: %s)", what, self.run_id, exc.__class__.__name__, exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self._call("log parameters", self.client.log_batch,
                    params=[Param(str(k), str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._call("log metrics", self.client.log_batch,
                   metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._call("set tags", self.client.log_batch, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str) -> None:
        for path in paths:
            self._call(f"upload {path.name}", self.client.log_artifact, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self._call("end the run", self.client.set_terminated, status)


# ----------------------------------------------------------------------------- what the steps log
def log_epoch(run: Run | None, record: Mapping[str, Any]) -> None:
    """One epoch's training and validation metrics (train_loss, eval_f1_macro, ...) at step = epoch."""
    if run:
        run.log_metrics(_numbers({k: v for k, v in record.items() if k not in ("epoch", "step")}),
                        step=int(record["epoch"]))


def log_training(run: Run | None, summary: Mapping[str, Any], history: Iterable[Mapping[str, Any]] = ()) -> None:
    """The kept epoch's tuned validation scores (validation_*), best epoch, steps, time; `history`'s epochs too."""
    if not run:
        return
    for record in history:
        log_epoch(run, record)
    run.log_metrics({**_numbers(summary.get("validation", {}), "validation_"),
                     **_numbers({k: summary.get(k) for k in ("best_epoch", "steps", "wall_seconds", "peak_rss_mb")})})
    run.set_tags({"device": summary.get("device"), "precision": summary.get("precision"),
                  "processes": summary.get("processes", 1)})


def log_evaluation(run: Run | None, evaluation_dir: Path) -> None:
    """The test metrics of evaluation.json (f1_macro, roc_auc_macro, ...), the report and its plots."""
    if not run:
        return
    report = json.loads((evaluation_dir / "evaluation.json").read_text())
    metrics = report["multilabel_classification_metrics"]
    run.log_metrics(_numbers({k: metrics[k]["value"] for k in HEADLINE_METRICS if k in metrics}))
    run.set_tags({"serving_backend": report.get("backend", "")})
    run.log_artifacts([evaluation_dir / "evaluation.json", *sorted(evaluation_dir.glob("*.png"))], "evaluation")


def record_run(run: Run | None, model_dir: Path) -> None:
    """Put the run's id in the model's training_summary.json: evaluation logs into the run that trained the model."""
    if not run:
        return
    path = model_dir / "training_summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), RUN_ID_KEY: run.run_id}, indent=2))


def training_run_id(model_dir: Path) -> str | None:
    """The MLflow run that trained the model in `model_dir` (training_summary.json), if it was tracked."""
    try:
        return json.loads((model_dir / "training_summary.json").read_text()).get(RUN_ID_KEY)
    except (OSError, ValueError):
        return None


def config_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """TrainingConfig fields as run parameters, without the display-only ones."""
    return {k: v for k, v in config.items() if k != "progress"}
