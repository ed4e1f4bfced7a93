"""Fine-tune a BERT-family encoder for multi-label classification, in one process or data-parallel (torchrun).

Length-grouped batches with dynamic padding (mlcore.batching), separate learning rates for encoder
and head, bf16 autocast where the hardware has it, per-label thresholds tuned on validation, the best
epoch kept, an epoch checkpoint to resume from (spot interruptions: SageMaker restores
/opt/ml/checkpoints). Under `torchrun --nproc-per-node N` (SageMaker's torchrun driver) every
global batch is split between the N processes (gloo on CPU, nccl on GPU) and gradients are averaged,
so N processes take the steps one process takes; process 0 alone writes the checkpoint and the model.

Why accelerate and not transformers.Trainer: accelerate brings what one process lacked (the process
group from torchrun's environment with the right backend, device per local rank, DDP wrapping,
gathering results) and leaves the loop ours. The loop is what is tuned here: our length grouping,
two learning rates, thresholds tuned on every epoch's validation scores, an fp32 re-tune of the kept
epoch. With Trainer each of these becomes an override (sampler, optimizer, compute_metrics, model
selection), its checkpoint format and random stream change, and one process no longer trains the
model the earlier code trained; with accelerate it still does, step for step (benchmarks/bench_quality.py
--baseline-ref compares them).
"""
from __future__ import annotations

import copy
import functools
import json
import logging
import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.batching import collate, encode, length_grouped_batches, scoring_batches, shard
from mlcore.config import TrainingConfig
from mlcore.datasets import LabeledTexts
from mlcore.losses import class_balanced_weights, get_loss, rdrop
from mlcore.metrics import fit_thresholds, quick_scores
from mlcore.modeling import choose_device_and_precision, load_classifier, make_optimizer, use_fast_training_attention
from mlcore.predictor import ModelInfo
from mlcore.threads import configure_threads

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainingResult:
    """What training produced: tuned thresholds, the validation scores of the kept epoch, timings.

    On processes other than 0 (which write nothing) `thresholds` is empty and `validation` is {}.
    """

    thresholds: np.ndarray
    best_epoch: int
    validation: dict
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    processes: int = 1
    threads: int = 1
    is_main: bool = True


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _score_batch(model, ids: list[list[int]], pad_id: int, device, precision: str,
                 targets: np.ndarray | None) -> tuple[np.ndarray, float]:
    """(sigmoid probabilities, summed BCE loss or 0) of one batch."""
    import torch

    batch = {k: v.to(device) for k, v in collate(ids, pad_id).items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(**batch).logits.float()
    loss = 0.0
    if targets is not None:
        y = torch.as_tensor(targets, device=device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum").item()
    return torch.sigmoid(logits).cpu().numpy(), loss


def predict_probabilities(model, encoded: list[list[int]], pad_id: int, batch_size: int, device, precision: str,
                          targets: np.ndarray | None = None, rank: int = 0, world: int = 1,
                          gather: Callable[[list], list] | None = None) -> tuple[np.ndarray, float]:
    """(sigmoid probabilities in input order, mean BCE loss if `targets` given).

    With `world` > 1 each process scores every world-th batch and `gather` (all processes' lists
    concatenated) brings the parts together, so every process gets the whole result.
    """
    import torch

    model.eval()
    parts = []
    with torch.inference_mode():
        for idx in scoring_batches(encoded, batch_size)[rank::world]:
            probs, loss = _score_batch(model, [encoded[i] for i in idx], pad_id, device, precision,
                                       None if targets is None else targets[idx])
            parts.append((idx, probs, loss))
    if world > 1 and gather is not None:
        parts = gather(parts)
    out = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    loss_sum = 0.0
    for idx, probs, loss in parts:
        out[idx] = probs
        loss_sum += loss
    return out, loss_sum / max(1, len(encoded) * model.config.num_labels)


class _Trainer:
    """One fine-tuning run of `train`: the model, the optimizer and schedule, the progress, each job a method."""

    def __init__(self, cfg: TrainingConfig, label_names: list[str], accelerator, precision: str):
        import torch
        from transformers import get_linear_schedule_with_warmup

        from mlcore.cpu_dropout import use_cpu_dropout

        self.cfg, self.accelerator, self.precision, self.torch = cfg, accelerator, precision, torch
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.is_main = accelerator.is_main_process
        self.passes = 2 if cfg.rdrop_alpha else 1  # R-drop: every row twice in one forward
        self.loss: Callable  # set by `encode`: it takes the label weights from the training positives
        self.model, self.tokenizer = load_classifier(
            cfg.base_model, label_names, dropout=_rate_override(cfg.dropout),
            attention_dropout=_rate_override(cfg.attention_dropout))
        self.attention = use_fast_training_attention(self.model, self.device.type)
        self.cpu_dropouts = use_cpu_dropout(self.model, self.device.type)
        if cfg.freeze_word_embeddings:
            self.model.get_input_embeddings().weight.requires_grad_(False)
        self.model.to(self.device)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.progress = _Progress()
        self.best_weights: dict | None = None
        self.ema: Any = None  # torch's AveragedModel of the weights, when cfg.ema_decay
        self.bar: Any = None  # the tqdm progress bar, when cfg.progress (process 0)
        self.on_epoch: Callable[[dict], None] | None = None
        self.total_steps = self.n_epochs = 0
        self._schedule = get_linear_schedule_with_warmup

    def encode(self, train_data: LabeledTexts, validation: LabeledTexts) -> _Encoded:
        texts, y_train = train_data.texts, train_data.matrix()
        if self.cfg.max_train_rows:
            texts, y_train = texts[: self.cfg.max_train_rows], y_train[: self.cfg.max_train_rows]
        self.loss = self._make_loss(y_train)
        return _Encoded(encode(self.tokenizer, texts, self.cfg.max_length), y_train,
                        encode(self.tokenizer, validation.texts, self.cfg.max_length), validation.matrix())

    def _make_loss(self, y_train: np.ndarray) -> Callable:
        """The configured loss with its label weights (from the training positives) and R-drop around it."""
        cfg, loss = self.cfg, get_loss(self.cfg.loss)
        if cfg.class_balance_beta:
            weight = self.torch.as_tensor(class_balanced_weights(y_train.sum(axis=0), cfg.class_balance_beta),
                                          device=self.device)
            loss = functools.partial(loss, weight=weight)
        return rdrop(loss, cfg.rdrop_alpha) if cfg.rdrop_alpha else loss

    def plan(self, n_train: int) -> None:
        """Steps and epochs to run (epochs may be fractional, max_steps caps), the optimizer and schedule.

        A step is one global batch of `batch_size` rows, however many processes share it.
        """
        cfg = self.cfg
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        self.total_steps = math.ceil(cfg.epochs * steps_per_epoch)
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.n_epochs = math.ceil(self.total_steps / steps_per_epoch)
        self.optimizer = make_optimizer(self.model, cfg.learning_rate, cfg.head_learning_rate, cfg.weight_decay,
                                        self.device.type, cfg.layer_lr_decay)
        self.scheduler = self._schedule(self.optimizer, int(cfg.warmup_ratio * self.total_steps), self.total_steps)
        if cfg.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # parameters only: BERT's buffers are integer position/type ids, which an average cannot lerp
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)

    def resume(self, checkpoint: Path | None) -> None:
        """Every process loads the checkpoint (before DDP wrapping), so all start from the same state."""
        if not (checkpoint and checkpoint.exists()):
            return
        # to CPU first (load_state_dict moves to the parameters' device): torch cannot map storages to "cpu:0"
        saved = self.torch.load(checkpoint, map_location="cpu", weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.progress = _Progress(**saved["state"])
        self.best_weights = saved.get("best_weights") if self.is_main else None
        if self.ema is not None and saved.get("ema") is not None:
            self.ema.load_state_dict(saved["ema"])
        logger.info("resumed from %s after epoch %d (step %d)", checkpoint, self.progress.epoch, self.progress.step)

    def distribute(self) -> None:
        """accelerate's prepare: DDP wrapping across the processes (a no-op wrapper for one process)."""
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)

    def save_checkpoint(self, checkpoint: Path) -> None:
        """Process 0 writes model, optimizer, schedule, progress and the best weights, atomically."""
        if not self.is_main:
            return
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        self.torch.save({"model": self.accelerator.unwrap_model(self.model).state_dict(),
                         "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "state": asdict(self.progress), "best_weights": self.best_weights,
                         "ema": self.ema.state_dict() if self.ema is not None else None}, tmp)
        tmp.replace(checkpoint)

    def _step(self, rows: np.ndarray, weight: float, data: _Encoded) -> float:
        """Forward, backward (DDP averages the gradients), clip, optimizer and schedule step; the weighted loss."""
        torch = self.torch
        ids = [data.train_ids[i] for i in rows] * self.passes
        batch = {k: v.to(self.device) for k, v in collate(ids, self.pad_id).items()}
        targets = torch.as_tensor(data.y_train[rows], device=self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.model(**batch).logits
        loss = self.loss(logits.float(), targets)
        if weight != 1.0:
            loss = loss * weight
        self.accelerator.backward(loss)
        self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.accelerator.unwrap_model(self.model))
        return loss.item()

    def train_epoch(self, epoch: int, data: _Encoded, lengths: list[int]) -> tuple[float, int]:
        """One pass over length-grouped batches (stopping at total_steps): (mean loss of the global batches, rows here)."""
        self.model.train()
        rng = np.random.default_rng(self.cfg.seed + epoch)
        loss_sum, loss_n, rows = 0.0, 0, 0
        for batch in length_grouped_batches(lengths, self.cfg.batch_size, rng):
            if self.progress.step >= self.total_steps:
                break
            part = shard(batch, self.rank, self.world)
            loss_sum += self._step(part.rows, part.weight, data)
            loss_n += 1
            rows += len(part.rows) if part.weight else 0
            self.progress.step += 1
            self._show(loss_sum / loss_n, epoch)
        mean = loss_sum / max(1, loss_n)
        if self.world > 1:  # each process's weighted mean; their average is the global batches' mean loss
            mean = self.accelerator.reduce(self.torch.tensor(mean, device=self.device), "mean").item()
        return mean, rows

    def _show(self, mean_loss: float, epoch: int) -> None:
        if self.bar:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", epoch=epoch, refresh=False)
        if self.is_main and self.cfg.eval_every_steps and self.progress.step % self.cfg.eval_every_steps == 0:
            logger.info("step=%d train_loss=%.4f", self.progress.step, mean_loss)

    def scored_model(self):
        """The weights validation scores and the model directory keeps: the moving average when cfg.ema_decay.

        Never the DDP wrapper: its forward would broadcast buffers, a collective the processes' unequal numbers
        of scoring batches would leave waiting.
        """
        return self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)

    def validate(self, record: dict, data: _Encoded) -> None:
        """Score the epoch on validation (thresholds tuned), log the metric lines, keep the best weights."""
        from accelerate.utils import gather_object

        probs, val_loss = predict_probabilities(self.scored_model(), data.val_ids, self.pad_id,
                                                self.cfg.eval_batch_size, self.device, self.precision, data.y_val,
                                                self.rank, self.world, gather_object)
        thresholds, shrink = fit_thresholds(data.y_val, probs, self.threshold_grid(), self.cfg.threshold_shrink)
        scores = quick_scores(data.y_val, probs, thresholds)
        record.update({"eval_loss": val_loss, "eval_f1_macro_at_0.5": quick_scores(data.y_val, probs, 0.5)["f1_macro"],
                       **{f"eval_{k}": v for k, v in scores.items()}, "threshold_shrink": shrink})
        self.progress.history.append(record)
        self._log_epoch(record)
        f1 = scores["f1_macro"] if scores["f1_macro"] is not None else 0.0
        if f1 > self.progress.best_f1:
            self.progress.best_f1, self.progress.best_epoch = f1, record["epoch"]
            if self.is_main:
                state = self.scored_model().state_dict()
                self.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in state.items()})

    def _log_epoch(self, record: dict) -> None:
        """The lines SageMaker's metric definitions scrape (process 0), and the epoch's record to `on_epoch`."""
        if not self.is_main:
            return
        if self.bar:
            self.bar.clear()
        logger.info("epoch=%d train_loss=%.4f", record["epoch"], record["train_loss"])
        logger.info(" ".join(f"{k}={v:.4f}" for k, v in record.items()
                             if k.startswith("eval_") and isinstance(v, float)))
        if self.on_epoch:
            self.on_epoch(record)

    def run(self, data: _Encoded, checkpoint: Path | None) -> None:
        """The epochs still to run (after a resume), each trained, validated and checkpointed."""
        lengths = [len(x) for x in data.train_ids]
        if self.cfg.progress and self.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total_steps, initial=self.progress.step, desc="train", unit="step",
                            mininterval=2.0)
        for epoch in range(self.progress.epoch + 1, self.n_epochs + 1):
            started, first_step = time.perf_counter(), self.progress.step
            train_loss, rows = self.train_epoch(epoch, data, lengths)
            seconds = time.perf_counter() - started
            if self.world > 1:
                logger.info("process %d/%d: epoch %d trained on %d rows", self.rank, self.world, epoch, rows)
            self.validate({"epoch": epoch, "step": self.progress.step, "train_loss": train_loss,
                           "train_seconds": seconds, "train_steps_per_second": (self.progress.step - first_step)
                           / max(seconds, 1e-9)}, data)
            self.progress.epoch = epoch
            if checkpoint:
                self.save_checkpoint(checkpoint)
            if self.progress.step >= self.total_steps:
                break
        if self.bar:
            self.bar.close()

    def finish(self, data: _Encoded, label_names: list[str], model_dir: Path) -> tuple[np.ndarray, dict]:
        """Process 0: the best epoch's weights on CPU, thresholds tuned again in fp32, the model directory written."""
        import torch

        model = self.accelerator.unwrap_model(self.model)
        # the best epoch's weights; without one (no validation scored), what validation would have scored
        model.load_state_dict(self.best_weights if self.best_weights is not None else self.scored_model().state_dict())
        model.to("cpu")
        probs, _ = predict_probabilities(model, data.val_ids, self.pad_id, self.cfg.eval_batch_size,
                                         torch.device("cpu"), "fp32")
        thresholds, shrink = fit_thresholds(data.y_val, probs, self.threshold_grid(), self.cfg.threshold_shrink)
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(model_dir)
        self.tokenizer.save_pretrained(model_dir)
        ModelInfo(label_names, thresholds.astype(np.float32), self.cfg.max_length).write(model_dir)
        return thresholds, {**quick_scores(data.y_val, probs, thresholds), "threshold_shrink": shrink}

    def threshold_grid(self) -> np.ndarray:
        return np.linspace(0.05, 0.95, self.cfg.threshold_grid)


def _rate_override(rate: float) -> float | None:
    """A dropout hyperparameter as load_classifier takes it: negative (keep the checkpoint's) is None."""
    return rate if rate >= 0 else None


def check_config(cfg: TrainingConfig) -> None:
    """Hyperparameters outside their range are a ValueError naming the flag, before any model is loaded."""
    get_loss(cfg.loss)
    for flag, rate in (("--dropout", cfg.dropout), ("--attention-dropout", cfg.attention_dropout)):
        if not rate < 1:
            raise ValueError(f"{flag} {rate}: a rate must be below 1 (negative keeps the checkpoint's)")
    if not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"--ema-decay {cfg.ema_decay}: must be in [0, 1) (0 = no moving average)")
    if not 0 <= cfg.class_balance_beta < 1:
        raise ValueError(f"--class-balance-beta {cfg.class_balance_beta}: must be in [0, 1) (0 = every label alike)")
    if not cfg.rdrop_alpha >= 0:
        raise ValueError(f"--rdrop-alpha {cfg.rdrop_alpha}: must be >= 0 (0 = off)")
    if not 0 < cfg.layer_lr_decay <= 1:
        raise ValueError(f"--layer-lr-decay {cfg.layer_lr_decay}: must be in (0, 1] (1 = one rate for all layers)")


def _check_inputs(train_data: LabeledTexts, validation: LabeledTexts) -> list[str]:
    if train_data.label_names != validation.label_names:
        raise ValueError("train and validation splits have different label lists; re-run preprocess on both")
    if len(train_data) == 0:
        raise ValueError("the training split is empty")
    return train_data.label_names


def _accelerator(device: str):
    """accelerate's Accelerator: torchrun's process group (gloo on CPU, nccl on GPU) when launched by torchrun."""
    from accelerate import Accelerator

    return Accelerator(cpu=device == "cpu")


def train(cfg: TrainingConfig, train_data: LabeledTexts, validation: LabeledTexts, model_dir: str | Path,
          checkpoint_dir: str | Path | None = None, on_epoch: Callable[[dict], None] | None = None) -> TrainingResult:
    """Fine-tune `cfg.base_model` on `train_data`, select the best epoch on `validation`, save to `model_dir`.

    Under torchrun every process calls this; process 0 writes `model_dir` and the checkpoint and calls
    `on_epoch(record)` after each epoch's validation.
    """
    started = time.time()
    check_config(cfg)
    label_names = _check_inputs(train_data, validation)
    device, precision = choose_device_and_precision(cfg.precision)
    accelerator = _accelerator(device)
    threads = configure_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    trainer = _Trainer(cfg, label_names, accelerator, precision)
    trainer.on_epoch = on_epoch
    data = trainer.encode(train_data, validation)
    logger.info("training on %d texts, validating on %d; %d labels; device=%s precision=%s processes=%d threads=%d; "
                "attention=%s; CpuDropout modules=%d; mean tokens=%.1f", len(data.train_ids), len(data.val_ids),
                len(label_names), trainer.device.type, precision, trainer.world, threads, trainer.attention, trainer.cpu_dropouts,
                np.mean([len(x) for x in data.train_ids]))
    trainer.plan(len(data.train_ids))
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    trainer.resume(checkpoint)
    trainer.distribute()
    trainer.run(data, checkpoint)
    result = TrainingResult(
        thresholds=np.zeros(0, dtype=np.float32), best_epoch=trainer.progress.best_epoch, validation={},
        history=trainer.progress.history, steps=trainer.progress.step, device=trainer.device.type,
        precision=precision, processes=trainer.world, threads=threads, is_main=trainer.is_main,
    )
    if trainer.is_main:
        result.thresholds, result.validation = trainer.finish(data, label_names, Path(model_dir))
    result.wall_seconds, result.peak_rss_mb = time.time() - started, peak_rss_mb()
    if trainer.is_main:
        summary = {k: v for k, v in asdict(result).items() if k not in ("thresholds", "is_main")}
        summary["config"] = asdict(cfg)
        summary["labels"] = label_names
        (Path(model_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float))
    accelerator.wait_for_everyone()
    return result
