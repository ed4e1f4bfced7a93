"""Fine-tune a BERT-family encoder for multi-label classification, fast on CPU and GPU.

Dynamic padding with length-grouped batches (2.5-5x faster than fixed padding on short texts),
separate learning rates for encoder and head, bf16 autocast where the hardware has it,
per-label thresholds tuned on validation, best epoch kept, epoch-level checkpoints for resume.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.config import TrainingConfig
from mlcore.datasets import LabeledTexts
from mlcore.metrics import quick_scores, tune_thresholds
from mlcore.modeling import available_cores, choose_device_and_precision, load_classifier, parameter_groups
from mlcore.predictor import ModelInfo

logger = logging.getLogger(__name__)

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
    sizes = np.asarray(lengths)
    batches: list[np.ndarray] = []
    mega = batch_size * mega_batch_factor
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-sizes[chunk], kind="stable")]
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


@dataclass
class _Progress:
    """Where training stands; saved in (and restored from) the epoch checkpoint as a dict."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0


@dataclass
class _Encoded:
    """Token ids (unpadded) and 0/1 targets of the training and validation texts."""

    train_ids: list[list[int]]
    y_train: np.ndarray
    val_ids: list[list[int]]
    y_val: np.ndarray


class _Trainer:
    """One fine-tuning run of `train`: the model, the optimizer and schedule, the progress, each job a method."""

    def __init__(self, cfg: TrainingConfig, label_names: list[str], device: str, precision: str):
        import torch
        from transformers import get_linear_schedule_with_warmup

        self.cfg, self.device, self.precision, self.torch = cfg, device, precision, torch
        self.model, self.tokenizer = load_classifier(cfg.base_model, label_names)
        self.model.to(device)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.progress = _Progress()
        self.best_weights: dict | None = None
        self.bar: Any = None  # the tqdm progress bar, when cfg.progress
        self.total_steps = self.n_epochs = 0
        self._schedule = get_linear_schedule_with_warmup

    def encode(self, train_data: LabeledTexts, validation: LabeledTexts) -> _Encoded:
        texts, y_train = train_data.texts, train_data.matrix()
        if self.cfg.max_train_rows:
            texts, y_train = texts[: self.cfg.max_train_rows], y_train[: self.cfg.max_train_rows]
        return _Encoded(encode(self.tokenizer, texts, self.cfg.max_length), y_train,
                        encode(self.tokenizer, validation.texts, self.cfg.max_length), validation.matrix())

    def plan(self, n_train: int) -> None:
        """Steps and epochs to run (epochs may be fractional, max_steps caps), the optimizer and schedule."""
        cfg = self.cfg
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        self.total_steps = math.ceil(cfg.epochs * steps_per_epoch)
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.n_epochs = math.ceil(self.total_steps / steps_per_epoch)
        self.optimizer = self.torch.optim.AdamW(
            parameter_groups(self.model, cfg.learning_rate, cfg.head_learning_rate, cfg.weight_decay)
        )
        self.scheduler = self._schedule(self.optimizer, int(cfg.warmup_ratio * self.total_steps), self.total_steps)

    def resume(self, checkpoint: Path | None) -> None:
        if not (checkpoint and checkpoint.exists()):
            return
        saved = self.torch.load(checkpoint, map_location=self.device, weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.progress = _Progress(**saved["state"])
        self.best_weights = saved.get("best_weights")
        logger.info("resumed from %s after epoch %d (step %d)", checkpoint, self.progress.epoch, self.progress.step)

    def save_checkpoint(self, checkpoint: Path) -> None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        self.torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "state": asdict(self.progress),
                         "best_weights": self.best_weights}, tmp)
        tmp.replace(checkpoint)

    def train_epoch(self, epoch: int, data: _Encoded, lengths: list[int]) -> float:
        """One pass over length-grouped batches (stopping at total_steps); the mean training loss."""
        torch, cfg = self.torch, self.cfg
        self.model.train()
        rng = np.random.default_rng(cfg.seed + epoch)
        loss_sum, loss_n = 0.0, 0
        for idx in length_grouped_batches(lengths, cfg.batch_size, rng):
            if self.progress.step >= self.total_steps:
                break
            batch = {k: v.to(self.device) for k, v in collate([data.train_ids[i] for i in idx], self.pad_id).items()}
            targets = torch.as_tensor(data.y_train[idx], device=self.device)
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits = self.model(**batch).logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.progress.step += 1
            loss_sum += loss.item()
            loss_n += 1
            self._show(loss_sum / loss_n, epoch)
        return loss_sum / max(1, loss_n)

    def _show(self, mean_loss: float, epoch: int) -> None:
        if self.bar:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", epoch=epoch, refresh=False)
        if self.cfg.eval_every_steps and self.progress.step % self.cfg.eval_every_steps == 0:
            logger.info("step=%d train_loss=%.4f", self.progress.step, mean_loss)

    def validate(self, epoch: int, train_loss: float, data: _Encoded) -> None:
        """Score the epoch on validation (thresholds tuned), log the metric lines, keep the best weights."""
        probs, val_loss = predict_probabilities(self.model, data.val_ids, self.pad_id, self.cfg.eval_batch_size,
                                                self.device, self.precision, data.y_val)
        thresholds = tune_thresholds(data.y_val, probs, grid=np.linspace(0.05, 0.95, self.cfg.threshold_grid))
        scores = quick_scores(data.y_val, probs, thresholds)
        at_half = quick_scores(data.y_val, probs, 0.5)["f1_macro"]
        record = {"epoch": epoch, "step": self.progress.step, "train_loss": train_loss,
                  "eval_loss": val_loss, "eval_f1_macro_at_0.5": at_half,
                  **{f"eval_{k}": v for k, v in scores.items()}}
        self.progress.history.append(record)
        if self.bar:
            self.bar.clear()
        logger.info("epoch=%d train_loss=%.4f", epoch, record["train_loss"])
        logger.info(" ".join(f"{k}={v:.4f}" for k, v in record.items()
                             if k.startswith("eval_") and isinstance(v, float)))
        f1 = scores["f1_macro"] if scores["f1_macro"] is not None else 0.0
        if f1 > self.progress.best_f1:
            self.progress.best_f1, self.progress.best_epoch = f1, epoch
            self.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def run(self, data: _Encoded, checkpoint: Path | None) -> None:
        """The epochs still to run (after a resume), each trained, validated and checkpointed."""
        lengths = [len(x) for x in data.train_ids]
        if self.cfg.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total_steps, initial=self.progress.step, desc="train", unit="step",
                            mininterval=2.0)
        for epoch in range(self.progress.epoch + 1, self.n_epochs + 1):
            train_loss = self.train_epoch(epoch, data, lengths)
            self.validate(epoch, train_loss, data)
            self.progress.epoch = epoch
            if checkpoint:
                self.save_checkpoint(checkpoint)
            if self.progress.step >= self.total_steps:
                break
        if self.bar:
            self.bar.close()

    def finish(self, data: _Encoded, label_names: list[str], model_dir: Path) -> tuple[np.ndarray, dict]:
        """The best epoch's weights on CPU, thresholds tuned again in fp32, the model directory written."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.to("cpu")
        probs, _ = predict_probabilities(self.model, data.val_ids, self.pad_id, self.cfg.eval_batch_size, "cpu", "fp32")
        thresholds = tune_thresholds(data.y_val, probs, grid=np.linspace(0.05, 0.95, self.cfg.threshold_grid))
        model_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(model_dir)
        self.tokenizer.save_pretrained(model_dir)
        ModelInfo(label_names, thresholds.astype(np.float32), self.cfg.max_length).write(model_dir)
        return thresholds, quick_scores(data.y_val, probs, thresholds)


def train(cfg: TrainingConfig, train_data: LabeledTexts, validation: LabeledTexts, model_dir: str | Path,
          checkpoint_dir: str | Path | None = None) -> TrainingResult:
    """Fine-tune `cfg.base_model` on `train_data`, select the best epoch on `validation`, save to `model_dir`."""
    import torch

    started = time.time()
    if train_data.label_names != validation.label_names:
        raise ValueError("train and validation splits have different label lists; re-run preprocess on both")
    label_names = train_data.label_names
    if len(train_data) == 0:
        raise ValueError("the training split is empty")
    torch.set_num_threads(cfg.num_threads or available_cores())
    seed_everything(cfg.seed)
    device, precision = choose_device_and_precision(cfg.precision)
    trainer = _Trainer(cfg, label_names, device, precision)
    data = trainer.encode(train_data, validation)
    logger.info("training on %d texts, validating on %d; %d labels; device=%s precision=%s threads=%d; "
                "mean tokens=%.1f", len(data.train_ids), len(data.val_ids), len(label_names), device, precision,
                torch.get_num_threads(), np.mean([len(x) for x in data.train_ids]))
    trainer.plan(len(data.train_ids))
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    trainer.resume(checkpoint)
    trainer.run(data, checkpoint)
    model_dir = Path(model_dir)
    thresholds, validation_scores = trainer.finish(data, label_names, model_dir)
    result = TrainingResult(
        thresholds=thresholds, best_epoch=trainer.progress.best_epoch, validation=validation_scores,
        history=trainer.progress.history, steps=trainer.progress.step, wall_seconds=time.time() - started,
        peak_rss_mb=peak_rss_mb(), device=device, precision=precision,
    )
    summary = {k: v for k, v in asdict(result).items() if k != "thresholds"}
    summary["config"] = asdict(cfg)
    summary["labels"] = label_names
    (model_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float))
    return result
