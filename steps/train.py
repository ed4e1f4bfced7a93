"""SageMaker training entry script: fine-tune a BERT-family model for multi-label classification.

Reads the train/validation channels written by preprocess.py. The complete model (HF weights,
tokenizer, tuned thresholds, ONNX exports) goes to SM_OUTPUT_DATA_DIR/model/ (the job's
output.tar.gz: evaluation's torch reference); SM_MODEL_DIR (model.tar.gz, what the endpoint
loads) gets only what the chosen serving backend needs, plus code/ for the Hugging Face inference
toolkit with the ONNX Runtime it needs, so the endpoint starts without network. Hyperparameters
arrive as `--name value` flags.
Runs unchanged in a SageMaker training container, under torchrun (SageMaker's torchrun driver, or
`torchrun --nproc-per-node N steps/train.py ...`: data parallel, process 0 writes everything) and
locally (`python steps/train.py ...`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from mlcore.config import (
    TrainingConfig,
    add_dataclass_arguments,
    dataclass_from_namespace,
    sm_path,
    write_failure_reason,
)
from mlcore.logs import configure_step_logging

logger = logging.getLogger(__name__)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that also puts its error (a bad hyperparameter) in the training job's failure file."""

    def error(self, message):
        write_failure_reason(f"{self.prog}: error: {message}")
        super().error(message)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, TrainingConfig)
    parser.add_argument("--train-dir", type=Path, default=None, help="default: $SM_CHANNEL_TRAIN")
    parser.add_argument("--validation-dir", type=Path, default=None, help="default: $SM_CHANNEL_VALIDATION")
    parser.add_argument("--model-dir", type=Path, default=None, help="default: $SM_MODEL_DIR")
    parser.add_argument("--output-data-dir", type=Path, default=None, help="default: $SM_OUTPUT_DATA_DIR")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="epoch checkpoints for resuming (default: /opt/ml/checkpoints when it exists)")
    parser.add_argument("--export-onnx", choices=["true", "false"], default="true",
                        help="export ONNX (+ int8 when it keeps quality) for fast CPU serving")
    args = parser.parse_args(argv)
    cfg = dataclass_from_namespace(TrainingConfig, args)
    args.train_dir = args.train_dir or sm_path("SM_CHANNEL_TRAIN")
    args.validation_dir = args.validation_dir or sm_path("SM_CHANNEL_VALIDATION")
    args.model_dir = args.model_dir or sm_path("SM_MODEL_DIR")
    args.output_data_dir = args.output_data_dir or sm_path("SM_OUTPUT_DATA_DIR")
    if args.checkpoint_dir is None and sm_path("SM_CHECKPOINT_DIR").is_dir():
        args.checkpoint_dir = sm_path("SM_CHECKPOINT_DIR")
    return cfg, args


FULL_MODEL_DIR = "model"  # under SM_OUTPUT_DATA_DIR: the complete model (torch reference + every export)


def package_for_serving(full_dir: Path, serving_dir: Path, validation, export_onnx: bool = True) -> dict:
    """Export ONNX (int8 where it keeps quality) in `full_dir`, then copy what serving needs to `serving_dir`."""
    from mlcore.packaging import package_serving_model

    if export_onnx:
        try:
            from mlcore.onnx_backend import export_onnx as export

            report = export(full_dir, quantize=True, validation=validation)
            logger.info("onnx export: serving backend %s", report.get("backend"))
        except Exception as exc:  # serving falls back to the PyTorch reference backend
            (full_dir / "serving.json").write_text(json.dumps({"backend": "torch", "onnx_error": str(exc)}))
            logger.warning("ONNX export failed (%s: %s); the model will be served with torch", exc.__class__.__name__, exc)
    else:
        (full_dir / "serving.json").write_text(json.dumps({"backend": "torch", "note": "--export-onnx false"}))
    doc = package_serving_model(full_dir, serving_dir)
    logger.info("serving artifact (%s): %s + code/", doc["backend"], ", ".join(doc["files"]))
    return doc


def open_tracking(cfg: TrainingConfig):
    """Process 0's MLflow run (see mlcore.tracking), with the hyperparameters logged; None when not tracking."""
    from dataclasses import asdict

    from mlcore import tracking

    if os.environ.get("RANK", "0") != "0":  # torchrun's other processes: process 0 logs
        return None
    run = tracking.Run.open(run_name=os.environ.get("TRAINING_JOB_NAME"))
    if run:
        run.log_params(tracking.config_params(asdict(cfg)))
    return run


def main(argv=None) -> int:
    from mlcore.threads import openmp_environment

    openmp_environment()  # before torch is imported: OpenMP reads its settings once
    configure_step_logging()
    cfg, args = parse_args(argv)
    from mlcore import tracking
    from mlcore.datasets import DatasetError, read_split
    from mlcore.modeling import BaseModelError
    from mlcore.training import SUMMARY_FILE, train

    full_dir = args.output_data_dir / FULL_MODEL_DIR
    run = open_tracking(cfg)
    try:
        train_data = read_split(args.train_dir)
        validation = read_split(args.validation_dir)
        result = train(cfg, train_data, validation, full_dir, checkpoint_dir=args.checkpoint_dir,
                       on_epoch=lambda record: tracking.log_epoch(run, record))
    except (DatasetError, BaseModelError, ValueError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        write_failure_reason(f"train.py: error: {exc}")
        if run and run.created:
            run.end("FAILED")
        return 2
    if not result.is_main:  # process 0 of a torchrun job writes the model, the artifact and the history
        return 0
    tracking.record_run(run, full_dir)  # before packaging: the artifact's summary names the run too
    tracking.log_training(run, json.loads((full_dir / SUMMARY_FILE).read_text()))
    package_for_serving(full_dir, Path(args.model_dir), validation, export_onnx=args.export_onnx == "true")
    (args.output_data_dir / "history.json").write_text(json.dumps(result.history, indent=2))
    if run and run.created:
        run.end()
    logger.info("best_epoch=%d train_seconds=%.1f peak_rss_mb=%.0f steps=%d", result.best_epoch,
                result.wall_seconds, result.peak_rss_mb, result.steps)
    logger.info("validation (tuned thresholds): " + " ".join(
        f"{k}={v:.4f}" for k, v in result.validation.items() if isinstance(v, float)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
