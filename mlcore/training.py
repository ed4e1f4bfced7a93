"""Fine-tune a BERT-family encoder for multi-label classification, fast on CPU and GPU.

Dynamic padding with length-grouped batches (2.5-5x faster than fixed padding on short texts),
separate learning rates for encoder and head, bf16 autocast where the hardware has it,
per-label thresholds tuned on validation, best epoch kept, epoch-level checkpoints for resume.
"""
from __future__ import annotations

import copy
import json
import math
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mlcore.config import TrainingConfig
from mlcore.datasets import LabeledTexts
from mlcore.metrics import quick_scores, tune_thresholds
from mlcore.modeling import (
    available_cores,
    choose_device_and_precision,
    load_classifier,
    parameter_groups,
)
from mlcore.predictor import ModelInfo

CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainingResult:
    """What training produced: tuned thresholds, the validation scores of the kept epoch, timings."""

    thresholds: np.ndarray
    best_epoch: int
    validation: dict
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                           mega_batch_factor: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples: shuffle, sort within mega-batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches: list[np.ndarray] = []
    mega = batch_size * mega_batch_factor
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to `max_length`, unpadded (padding happens per batch)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


def collate(ids: Sequence[list[int]], pad_id: int):
    """Pad a batch to its longest member: input_ids, attention_mask, token_type_ids tensors."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[row, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}


def predict_probabilities(model, encoded: list[list[int]], pad_id: int, batch_size: int, device: str,
                          precision: str, targets: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(sigmoid probabilities in input order, mean BCE loss if `targets` given)."""
    import torch

    model.eval()
    probs = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    order = np.argsort([len(x) for x in encoded], kind="stable")
    loss_sum = 0.0
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], pad_id).items()}
            logits = model(**batch).logits.float()
            if targets is not None:
                y = torch.as_tensor(targets[idx], device=device)
                loss_sum += torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum").item()
            probs[idx] = torch.sigmoid(logits).cpu().numpy()
    n_values = max(1, len(encoded) * model.config.num_labels)
    return probs, loss_sum / n_values


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train(cfg: TrainingConfig, train_data: LabeledTexts, validation: LabeledTexts, model_dir: str | Path,
          checkpoint_dir: str | Path | None = None, log: Callable[[str], None] = print) -> TrainingResult:
    """Fine-tune `cfg.base_model` on `train_data`, select the best epoch on `validation`, save to `model_dir`."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    started = time.time()
    if train_data.label_names != validation.label_names:
        raise ValueError("train and validation splits have different label lists; re-run preprocess on both")
    label_names = train_data.label_names
    if len(train_data) == 0:
        raise ValueError("the training split is empty")
    torch.set_num_threads(cfg.num_threads or available_cores())
    seed_everything(cfg.seed)
    device, precision = choose_device_and_precision(cfg.precision)
    model, tokenizer = load_classifier(cfg.base_model, label_names)
    model.to(device)
    pad_id = tokenizer.pad_token_id or 0

    texts, y_train = train_data.texts, train_data.matrix()
    if cfg.max_train_rows:
        texts, y_train = texts[: cfg.max_train_rows], y_train[: cfg.max_train_rows]
    train_ids = encode(tokenizer, texts, cfg.max_length)
    val_ids = encode(tokenizer, validation.texts, cfg.max_length)
    y_val = validation.matrix()
    lengths = [len(x) for x in train_ids]
    log(f"training on {len(train_ids)} texts, validating on {len(val_ids)}; {len(label_names)} labels; "
        f"device={device} precision={precision} threads={torch.get_num_threads()}; "
        f"mean tokens={np.mean(lengths):.1f}")

    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total_steps = math.ceil(cfg.epochs * steps_per_epoch)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg.learning_rate, cfg.head_learning_rate, cfg.weight_decay)
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)

    state = {"epoch": 0, "step": 0, "history": [], "best_f1": -1.0, "best_epoch": 0}
    best_weights = None
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    if checkpoint and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        best_weights = saved.get("best_weights")
        log(f"resumed from {checkpoint} after epoch {state['epoch']} (step {state['step']})")

    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state["step"], desc="train", unit="step", mininterval=2.0)

    for epoch in range(state["epoch"] + 1, n_epochs + 1):
        model.train()
        rng = np.random.default_rng(cfg.seed + epoch)
        batches = length_grouped_batches(lengths, cfg.batch_size, rng)
        loss_sum, loss_n = 0.0, 0
        for idx in batches:
            if state["step"] >= total_steps:
                break
            batch = {k: v.to(device) for k, v in collate([train_ids[i] for i in idx], pad_id).items()}
            targets = torch.as_tensor(y_train[idx], device=device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(**batch).logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            loss_sum += loss.item()
            loss_n += 1
            if progress:
                progress.update(1)
                progress.set_postfix(loss=f"{loss_sum / loss_n:.4f}", epoch=epoch, refresh=False)
            if cfg.eval_every_steps and state["step"] % cfg.eval_every_steps == 0:
                log(f"step={state['step']} train_loss={loss_sum / loss_n:.4f}")

        probs, val_loss = predict_probabilities(model, val_ids, pad_id, cfg.eval_batch_size, device, precision, y_val)
        thresholds = tune_thresholds(y_val, probs, grid=np.linspace(0.05, 0.95, cfg.threshold_grid))
        scores = quick_scores(y_val, probs, thresholds)
        at_half = quick_scores(y_val, probs, 0.5)["f1_macro"]
        record = {"epoch": epoch, "step": state["step"], "train_loss": loss_sum / max(1, loss_n),
                  "eval_loss": val_loss, "eval_f1_macro_at_0.5": at_half,
                  **{f"eval_{k}": v for k, v in scores.items()}}
        state["history"].append(record)
        if progress:
            progress.clear()
        log(f"epoch={epoch} train_loss={record['train_loss']:.4f}")
        log(" ".join(f"{k}={v:.4f}" for k, v in record.items()
                     if k.startswith("eval_") and isinstance(v, float)))
        f1 = scores["f1_macro"] if scores["f1_macro"] is not None else 0.0
        if f1 > state["best_f1"]:
            state["best_f1"], state["best_epoch"] = f1, epoch
            best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        state["epoch"] = epoch
        if checkpoint:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state, "best_weights": best_weights}, tmp)
            tmp.replace(checkpoint)
        if state["step"] >= total_steps:
            break
    if progress:
        progress.close()

    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.to("cpu")
    probs, _ = predict_probabilities(model, val_ids, pad_id, cfg.eval_batch_size, "cpu", "fp32")
    thresholds = tune_thresholds(y_val, probs, grid=np.linspace(0.05, 0.95, cfg.threshold_grid))
    validation_scores = quick_scores(y_val, probs, thresholds)

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    ModelInfo(label_names, thresholds.astype(np.float32), cfg.max_length).write(model_dir)
    result = TrainingResult(
        thresholds=thresholds, best_epoch=state["best_epoch"], validation=validation_scores,
        history=state["history"], steps=state["step"], wall_seconds=time.time() - started,
        peak_rss_mb=peak_rss_mb(), device=device, precision=precision,
    )
    summary = {k: v for k, v in asdict(result).items() if k != "thresholds"}
    summary["config"] = asdict(cfg)
    summary["labels"] = label_names
    (model_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float))
    return result
