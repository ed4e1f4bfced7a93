"""The workflow's DAG, declared once: parameters, step names and the quality gate.

Both the local runner (`pipelines.local_runner`) and the SageMaker Pipeline
(`pipelines.bertmlc.pipeline`) are built from these declarations, so the two worlds run the
same DAG with the same parameter names and defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlcore.config import DEFAULT_BASE_MODEL, TrainingConfig

_TRAINING_DEFAULTS = TrainingConfig()


@dataclass(frozen=True)
class PipelineParameter:
    """One pipeline parameter: SageMaker type name ("String" | "Integer" | "Float"), default, help."""

    name: str
    type: str
    default: Any
    help: str

    def parse(self, text: str) -> Any:
        """Convert a `name=value` string the way SageMaker would type it; clear error otherwise."""
        try:
            if self.type == "Integer":
                return int(text)
            if self.type == "Float":
                return float(text)
        except ValueError:
            raise ValueError(f"parameter {self.name} is {self.type}: cannot read {text!r}") from None
        return str(text)


PARAMETERS: tuple[PipelineParameter, ...] = (
    PipelineParameter("InputData", "String", "demo",
                      "dataset: 'demo', a local path, an s3:// URI (on AWS) or hf:<name>[:<config>]"),
    PipelineParameter("BaseModel", "String", DEFAULT_BASE_MODEL, "HF checkpoint name or path"),
    PipelineParameter("Epochs", "Float", _TRAINING_DEFAULTS.epochs, "training epochs"),
    PipelineParameter("LearningRate", "Float", _TRAINING_DEFAULTS.learning_rate, "encoder learning rate"),
    PipelineParameter("MaxLength", "Integer", _TRAINING_DEFAULTS.max_length, "max tokens per text"),
    PipelineParameter("F1Threshold", "Float", 0.40, "minimum test macro F1 to register the model"),
    PipelineParameter("RocAucThreshold", "Float", 0.80, "minimum test macro ROC AUC to register the model"),
    PipelineParameter("ModelApprovalStatus", "String", "PendingManualApproval",
                      "status of the registered version: PendingManualApproval | Approved | Rejected"),
    PipelineParameter("ProcessingInstanceType", "String", "ml.m5.xlarge", "instance of the processing steps"),
    PipelineParameter("ProcessingInstanceCount", "Integer", 1, "instances of the processing steps"),
    PipelineParameter("TrainingInstanceType", "String", "ml.g5.xlarge", "instance of the training step"),
    PipelineParameter("TrainingInstanceCount", "Integer", 1, "instances of the training step"),
)
PARAMETERS_BY_NAME = {p.name: p for p in PARAMETERS}

# Which pipeline parameter feeds which training hyperparameter (TrainingConfig field).
HYPERPARAMETER_SOURCES = {
    "base_model": "BaseModel",
    "epochs": "Epochs",
    "learning_rate": "LearningRate",
    "max_length": "MaxLength",
}

# Step names, in DAG order.
PREPROCESS = "PreprocessData"
TRAIN = "TrainModel"
EVALUATE = "EvaluateModel"
CHECK = "CheckModelQuality"
REGISTER = "RegisterModel"
FAIL = "FailModelQuality"
STEPS = (PREPROCESS, TRAIN, EVALUATE, CHECK, REGISTER, FAIL)

MODEL_PACKAGE_GROUP = "bert-multilabel"
ENDPOINT_NAME = "bert-multilabel"
PIPELINE_NAME = "bert-multilabel-pipeline"

# The quality gate: JSON paths into steps/evaluate.py's evaluation.json, with the parameter
# each value must reach (>=). The condition step passes only when all hold.
EVALUATION_REPORT_NAME = "EvaluationReport"
EVALUATION_FILE = "evaluation.json"
QUALITY_GATE = (
    ("multilabel_classification_metrics.f1_macro.value", "F1Threshold"),
    ("multilabel_classification_metrics.roc_auc_macro.value", "RocAucThreshold"),
)


def resolve_parameters(overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults updated with `name=value` overrides; unknown names are an error listing the valid ones."""
    values = {p.name: p.default for p in PARAMETERS}
    for name, text in (overrides or {}).items():
        if name not in PARAMETERS_BY_NAME:
            valid = ", ".join(PARAMETERS_BY_NAME)
            raise ValueError(f"unknown pipeline parameter {name!r}; valid parameters: {valid}")
        values[name] = PARAMETERS_BY_NAME[name].parse(text)
    return values


def json_path_get(document: dict, path: str) -> Any:
    """Resolve a dotted JsonGet path against a parsed JSON document (KeyError names the path)."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path!r}: no key {part!r}")
        node = node[part]
    return node
