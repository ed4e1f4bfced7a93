"""The workflow's DAG, declared once: parameters, step names and the quality gate.

Both the local runner (`pipelines.local_runner`) and the SageMaker Pipeline
(`pipelines.bertmlc.pipeline`) are built from these declarations, so the two worlds run the
same DAG with the same parameter names and defaults.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcore.config import DEFAULT_BASE_MODEL, TrainingConfig
from mlcore.config import EVALUATION_FILE as EVALUATION_FILE  # the gate's file, re-exported

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
    PipelineParameter("DataVersion", "String", "none",
                      "label of the data now under InputData (e.g. its export date); a new label makes "
                      "PreprocessData read InputData again instead of reusing a cached result"),
    PipelineParameter("BaseModel", "String", DEFAULT_BASE_MODEL, "HF checkpoint name or path"),
    PipelineParameter("Epochs", "Float", _TRAINING_DEFAULTS.epochs, "training epochs"),
    PipelineParameter("LearningRate", "Float", _TRAINING_DEFAULTS.learning_rate, "encoder learning rate"),
    PipelineParameter("MaxLength", "Integer", _TRAINING_DEFAULTS.max_length, "max tokens per text"),
    PipelineParameter("F1Threshold", "Float", 0.40, "minimum test macro F1 to register the model"),
    PipelineParameter("RocAucThreshold", "Float", 0.80, "minimum test macro ROC AUC to register the model"),
    PipelineParameter("ModelApprovalStatus", "String", "PendingManualApproval",
                      "status of the registered version: PendingManualApproval | Approved | Rejected"),
    PipelineParameter("ProcessingInstanceType", "String", "ml.m5.xlarge",
                      "instance of the processing steps (one each: preprocessing splits the whole dataset)"),
    PipelineParameter("TrainingInstanceType", "String", "ml.g5.xlarge",
                      "instance of the training step, of the kind (GPU or CPU) the pipeline was built for"),
    PipelineParameter("TrainingInstanceCount", "Integer", 1,
                      "instances of the training step (data parallel: torchrun, one process per GPU)"),
)
PARAMETERS_BY_NAME = {p.name: p for p in PARAMETERS}

# The instance types each step's image runs on: SageMaker refuses a start-time value outside a parameter's
# EnumValues, so an override cannot pick an instance the image was not built for. The training image is
# chosen when the pipeline is built, by the kind of its TrainingInstanceType: Hugging Face's training image
# for GPU instances (it has no CPU build), the PyTorch training image for CPU instances.
GPU_TRAINING_INSTANCE_TYPES = (
    "ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g4dn.12xlarge", "ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.4xlarge",
    "ml.g5.12xlarge", "ml.g5.48xlarge", "ml.g6.xlarge", "ml.g6.2xlarge", "ml.g6.12xlarge", "ml.g6.48xlarge",
    "ml.g6e.xlarge", "ml.g6e.12xlarge", "ml.p4d.24xlarge", "ml.p5.48xlarge",
)
CPU_INSTANCE_TYPES = (
    "ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.m5.12xlarge", "ml.c5.xlarge",
    "ml.c5.2xlarge", "ml.c5.4xlarge", "ml.c5.9xlarge", "ml.m6i.xlarge", "ml.m6i.2xlarge", "ml.m6i.4xlarge",
    "ml.c6i.xlarge", "ml.c6i.2xlarge", "ml.c6i.4xlarge", "ml.c6i.8xlarge",
)
# SageMaker accepts at most 16 EnumValues per parameter (aws/sagemaker-python-sdk#2314).
MAX_ENUM_VALUES = 16
# The processing steps run on the CPU build of the inference image.
PROCESSING_INSTANCE_TYPES = CPU_INSTANCE_TYPES


def training_instance_types(instance_type: str) -> tuple[str, ...]:
    """The instance types of `instance_type`'s kind (GPU or CPU): the EnumValues of TrainingInstanceType."""
    for kind in (GPU_TRAINING_INSTANCE_TYPES, CPU_INSTANCE_TYPES):
        if instance_type in kind:
            return kind
    raise ValueError(f"training instance type {instance_type!r} is not supported; GPU: "
                     f"{', '.join(GPU_TRAINING_INSTANCE_TYPES)}; CPU: {', '.join(CPU_INSTANCE_TYPES)}")


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

# AWS resource names: the model package group, the endpoint, the pipeline and the jobs' name prefix.
PROJECT_NAME = "bert-multilabel"
MODEL_PACKAGE_GROUP = PROJECT_NAME
ENDPOINT_NAME = PROJECT_NAME
PIPELINE_NAME = f"{PROJECT_NAME}-pipeline"
BASE_JOB_PREFIX = PROJECT_NAME

# The quality gate: JSON paths into steps/evaluate.py's evaluation.json (EVALUATION_FILE), with the parameter
# each value must reach (>=). The condition step passes only when all hold.
EVALUATION_REPORT_NAME = "EvaluationReport"
QUALITY_GATE = (
    ("multilabel_classification_metrics.f1_macro.value", "F1Threshold"),
    ("multilabel_classification_metrics.roc_auc_macro.value", "RocAucThreshold"),
)


def json_path_get(document: dict, path: str) -> Any:
    """Resolve a dotted JsonGet path against a parsed JSON document (KeyError names the path)."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path!r}: no key {part!r}")
        node = node[part]
    return node


def gate_checks(report: dict, values: Mapping[str, Any]) -> list[dict]:
    """The condition step's comparisons: each QUALITY_GATE metric >= its threshold parameter's value.

    A metric that is not a number (null: undefined) fails its check; KeyError names a path the report lacks.
    """
    checks = []
    for path, param in QUALITY_GATE:
        value, threshold = json_path_get(report, path), values[param]
        passed = isinstance(value, (int, float)) and value >= threshold
        checks.append({"path": path, "value": value, "parameter": param, "threshold": threshold, "passed": passed})
    return checks
