"""SageMaker processing entry script: score the model that will serve on the test split.

in:  /opt/ml/processing/model/model.tar.gz (the serving artifact, or a model directory),
     /opt/ml/processing/test/, and optionally /opt/ml/processing/reference/output.tar.gz (the
     training job's output with the complete model/, for the torch reference)
out: /opt/ml/processing/evaluation/evaluation.json (model-quality shape, read by the condition
     step): the metrics of the backend serving will use (serving.json of the artifact), and
     under "reference" the torch model's headline metrics and how many decisions differ;
     + confusion_matrices.png, roc_curves.png, label_confusion.png
Runs unchanged in a SageMaker Processing container and locally (`python steps/evaluate.py`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tarfile
from pathlib import Path

from mlcore.config import EVALUATION_FILE, PROCESSING_ROOT
from mlcore.logs import configure_step_logging

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE = PROCESSING_ROOT / "reference"
REFERENCE_BACKEND = "torch"
REFERENCE_METRICS = ("f1_macro", "f1_micro", "roc_auc_macro", "precision_macro", "recall_macro", "subset_accuracy")
HEADLINE = ("f1_macro", "f1_micro", "roc_auc_macro", "roc_auc_micro", "precision_macro", "recall_macro",
            "subset_accuracy", "hamming_loss")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, default=PROCESSING_ROOT / "model" / "model.tar.gz")
    parser.add_argument("--test-dir", type=Path, default=PROCESSING_ROOT / "test")
    parser.add_argument("--output-dir", type=Path, default=PROCESSING_ROOT / "evaluation")
    parser.add_argument("--backend", default="auto",
                        help="auto (what the artifact serves: serving.json) | torch | torch-bf16 | onnx | onnx-int8")
    parser.add_argument("--reference-model-path", type=Path, default=None,
                        help="complete model (a directory, or the training output.tar.gz holding model/) scored with "
                             "torch beside the serving backend; default: /opt/ml/processing/reference when present")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples for standard deviations (0 = none)")
    parser.add_argument("--progress", choices=["true", "false"], default="true")
    args = parser.parse_args(argv)
    if args.reference_model_path is None and DEFAULT_REFERENCE.exists():
        args.reference_model_path = DEFAULT_REFERENCE
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.bootstrap < 0:
        parser.error(f"--bootstrap must be >= 0 (0 = no standard deviations), got {args.bootstrap}")
    return args


def align_to_model(test, model_labels: list[str]):
    """The test split's 0/1 matrix in the model's label order; unknown test labels are an error."""
    unknown = sorted(set(test.label_names) - set(model_labels))
    used_unknown = sorted({l for row in test.labels for l in row} & set(unknown))
    if used_unknown:
        raise ValueError(f"the test split has labels the model does not know: {used_unknown}; "
                         f"the model knows {model_labels}. Evaluate with the data the model was trained on.")
    return test.with_label_names(model_labels).matrix()


def _fmt(value) -> str:
    return "null" if value is None else f"{value:.4f}"


def reference_model_dir(path: Path) -> Path:
    """The complete model directory inside a reference path: a model dir, a dir holding model/, or output.tar.gz."""
    from mlcore.predictor import extract_model

    if path.is_dir() and not (path / "config.json").exists():
        archives = sorted(path.glob("*.tar.gz"))
        if (path / "model" / "config.json").exists():
            return path / "model"
        if len(archives) == 1:
            path = archives[0]
    root = extract_model(path) if path.is_file() else path
    if (root / "model" / "config.json").exists():
        return root / "model"
    if (root / "config.json").exists():
        return root
    raise FileNotFoundError(f"no model directory in reference {path} (expected config.json, or model/config.json in "
                            "the training job's output.tar.gz)")


def score_reference(path: Path, test, probs, thresholds, args) -> dict:
    """The torch reference on the same texts: headline metrics and how far the serving backend is from it."""
    from mlcore.metrics import quick_scores
    from mlcore.predictor import decide, load_predictor

    reference = load_predictor(reference_model_dir(path), backend=REFERENCE_BACKEND)
    y_true = align_to_model(test, reference.label_names)
    ref_probs = reference.predict_proba(test.texts, batch_size=args.batch_size, progress=args.progress == "true")
    scores = quick_scores(y_true, ref_probs, reference.thresholds)
    changed = int((decide(probs, thresholds) != decide(ref_probs, reference.thresholds)).sum())
    return {"backend": REFERENCE_BACKEND, **{k: scores.get(k) for k in REFERENCE_METRICS},
            "decisions_changed": changed, "decisions": int(probs.size),
            "max_probability_difference": round(float(abs(probs - ref_probs).max()), 6)}


def _load(args):
    """(test split, predictor, backend, y_true in the model's label order) for the serving backend."""
    from mlcore.datasets import read_split
    from mlcore.predictor import extract_model, load_predictor, serving_backend

    test = read_split(args.test_dir)
    model_dir = extract_model(args.model_path)
    backend = serving_backend(model_dir) if args.backend == "auto" else args.backend
    predictor = load_predictor(model_dir, backend=backend)
    return test, predictor, backend, align_to_model(test, predictor.label_names), model_dir


def write_outputs(report: dict, y_true, probs, predictor, out: Path) -> None:
    """evaluation.json and the PNGs beside it."""
    from mlcore.metrics import label_confusion, roc_curves
    from mlcore.plots import plot_confusion_matrices, plot_label_confusion, plot_roc_curves
    from mlcore.predictor import decide

    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION_FILE).write_text(json.dumps(report, indent=2))
    plot_confusion_matrices(report, out / "confusion_matrices.png")
    plot_roc_curves(roc_curves(y_true, probs, predictor.label_names), out / "roc_curves.png")
    plot_label_confusion(label_confusion(y_true, decide(probs, predictor.thresholds), predictor.label_names),
                         out / "label_confusion.png")


def log_headline(report: dict) -> None:
    """The test_<metric>=<value> lines (SageMaker metric definitions read them) and the weakest labels."""
    metrics = report["multilabel_classification_metrics"]
    for key in HEADLINE:
        value, std = metrics[key]["value"], metrics[key]["standard_deviation"]
        logger.info(f"test_{key}={_fmt(value)}" + (f" (± {std:.4f})" if std is not None else ""))
    worst = sorted(((m["f1"] or 0.0, name) for name, m in metrics["per_label"].items()))[:3]
    logger.info("weakest labels: " + ", ".join(f"{name} F1 {f1:.2f}" for f1, name in worst))


def main(argv=None) -> int:
    configure_step_logging()
    args = parse_args(argv)
    from mlcore.datasets import DatasetError
    from mlcore.metrics import multilabel_report

    try:
        test, predictor, backend, y_true, model_dir = _load(args)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    except tarfile.TarError as exc:  # a truncated or non-tar model.tar.gz
        logger.error("cannot unpack the model archive %s (%s); pass a model.tar.gz written by the training step or "
                     "a model directory", args.model_path, " ".join(str(exc).split()))
        return 2
    logger.info("evaluating on %d texts, %d labels, backend %s", len(test), len(predictor.label_names), backend)
    probs = predictor.predict_proba(test.texts, batch_size=args.batch_size, progress=args.progress == "true")
    report = multilabel_report(y_true, probs, predictor.thresholds, predictor.label_names, bootstrap=args.bootstrap)
    report["backend"] = backend
    if args.reference_model_path is not None:
        try:
            report["reference"] = score_reference(args.reference_model_path, test, probs, predictor.thresholds, args)
        except (FileNotFoundError, ValueError, OSError, tarfile.TarError) as exc:
            logger.error("cannot score the reference model %s: %s", args.reference_model_path, exc)
            return 2
        ref = report["reference"]
        logger.info(f"reference (torch): f1_macro={_fmt(ref['f1_macro'])}; {backend} changes "
                    f"{ref['decisions_changed']} of {ref['decisions']} decisions (max probability difference "
                    f"{ref['max_probability_difference']:.4f})")
    write_outputs(report, y_true, probs, predictor, args.output_dir)
    log_headline(report)
    logger.info("wrote %s and plots", args.output_dir / EVALUATION_FILE)
    track(model_dir, args.output_dir)
    return 0


def track(model_dir: Path, evaluation_dir: Path) -> None:
    """The test metrics and plots into the MLflow run of this pipeline run, else of the run that trained the model."""
    from mlcore import tracking

    if tracking.enabled():
        tracking.log_evaluation(tracking.Run.open(tracking.training_run_id(model_dir)), evaluation_dir)


if __name__ == "__main__":
    sys.exit(main())
