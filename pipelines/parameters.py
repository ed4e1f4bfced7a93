"""Pipeline parameters and training hyperparameters, typed and checked the same way for both worlds.

The local runner and `run-pipeline` / `mlops pipeline start` read `NAME=VALUE` overrides of the
parameters declared in `pipelines.spec`, and the training step gets its hyperparameters as
SageMaker passes them (dashed names); an invalid value is a `PipelineError` that names it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from mlcore.config import TrainingConfig, to_hyperparameters
from pipelines import spec
from pipelines.registry import APPROVAL_STATUSES

# Flags of steps/train.py that are not TrainingConfig fields but may be passed as hyperparameters.
TRAIN_SCRIPT_FLAGS = ("export-onnx",)


class PipelineError(ValueError):
    """Invalid parameters or inputs, found before any step runs."""


def parse_assignments(items: Iterable[str] | None, flag: str = "--param") -> dict[str, str]:
    """`NAME=VALUE` strings as a dict; a malformed or repeated item is an error naming the flag."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PipelineError(f"{flag} expects NAME=VALUE, got {item!r} (e.g. {flag} Epochs=1)")
        if name in out:
            raise PipelineError(f"{flag} {name} given twice")
        out[name] = value
    return out


def _typed(param: spec.PipelineParameter, value: Any) -> Any:
    """A typed or string value of `param`, converted the way SageMaker types it."""
    if isinstance(value, str):
        return param.parse(value)
    if param.type == "Integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if param.type == "Float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"parameter {param.name} is {param.type}: got {value!r}")


def resolve_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of `spec.PARAMETERS` updated with typed or string values; checked for sense."""
    values = {p.name: p.default for p in spec.PARAMETERS}
    for name, value in (parameters or {}).items():
        if name not in spec.PARAMETERS_BY_NAME:
            raise PipelineError(
                f"unknown pipeline parameter {name!r}; valid parameters: {', '.join(spec.PARAMETERS_BY_NAME)}"
            )
        try:
            values[name] = _typed(spec.PARAMETERS_BY_NAME[name], value)
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
    check_values(values)
    return values


def check_values(values: Mapping[str, Any]) -> None:
    """Every value in range; one error listing all the problems."""
    problems = []
    if values["Epochs"] <= 0:
        problems.append(f"Epochs must be > 0 (got {values['Epochs']})")
    if values["LearningRate"] <= 0:
        problems.append(f"LearningRate must be > 0 (got {values['LearningRate']})")
    if not 8 <= values["MaxLength"] <= 512:
        problems.append(f"MaxLength must be between 8 and 512 tokens (got {values['MaxLength']})")
    for _, threshold in spec.QUALITY_GATE:
        if not 0.0 <= values[threshold] <= 1.0:
            problems.append(f"{threshold} must be between 0 and 1 (got {values[threshold]})")
    if values["ModelApprovalStatus"] not in APPROVAL_STATUSES:
        problems.append(f"ModelApprovalStatus must be one of {', '.join(APPROVAL_STATUSES)} "
                        f"(got {values['ModelApprovalStatus']!r})")
    if not str(values["InputData"]).strip():
        problems.append("InputData must not be empty: use 'demo', a local path or hf:<name>")
    if problems:
        raise PipelineError("invalid pipeline parameters: " + "; ".join(problems))


def check_hyperparameters(hyperparameters: Mapping[str, Any] | None) -> dict[str, str]:
    """Extra training hyperparameters (TrainingConfig fields, dashes or underscores) as `{dashed: str}`."""
    known = {f.name.replace("_", "-") for f in fields(TrainingConfig)} | set(TRAIN_SCRIPT_FLAGS)
    from_params = {name.replace("_", "-") for name in spec.HYPERPARAMETER_SOURCES}
    out = {}
    for name, value in (hyperparameters or {}).items():
        dashed = name.replace("_", "-")
        if dashed in from_params:
            source = spec.HYPERPARAMETER_SOURCES[dashed.replace("-", "_")]
            raise PipelineError(f"hyperparameter {name!r} comes from the pipeline parameter {source}: set that instead")
        if dashed not in known:
            raise PipelineError(f"unknown training hyperparameter {name!r}; valid: {', '.join(sorted(known - from_params))}")
        out[dashed] = str(value)
    return out


def training_hyperparameters(parameters: Mapping[str, Any], config: TrainingConfig | None = None) -> dict[str, Any]:
    """Hyperparameters of the training step, as SageMaker passes them (dashed names).

    The fields of `spec.HYPERPARAMETER_SOURCES` come from the pipeline parameters (values, or the
    SageMaker Parameter objects); with `config`, every other TrainingConfig field too.
    """
    hps: dict[str, Any] = dict(to_hyperparameters(config)) if config is not None else {}
    hps.update({name.replace("_", "-"): parameters[param] for name, param in spec.HYPERPARAMETER_SOURCES.items()})
    return hps
