"""LoRA training on the transformers `Trainer`.

The Trainer (on accelerate) already does what a one-GPU voice fine-tune needs and keeps
it working across releases: mixed precision (bf16/fp16 autocast, fp16 grad scaling),
gradient accumulation, cosine/linear schedules with warmup, gradient checkpointing,
per-epoch eval, and checkpoints that hold the adapter, optimizer, scheduler, RNG state
and log history, so `--resume` skips the batches already seen and continues bit for bit.
This module only lays our rows out for it and reports progress.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..orpheus.tokens import PAD
from .encode import TrainingRow
from .recipe import CHECKPOINT_PREFIX, TrainConfig, latest_checkpoint, lora_settings

log = logging.getLogger(__name__)
# The Trainer asks the model under its pre-5.2x name on every step: noise for our users.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

IGNORE = -100  # label id the loss skips
# Test hook: send ourselves a real SIGINT after this optimizer step (as a user's Ctrl-C).
SIGINT_AFTER_STEP_ENV = "ORPHEUS_FINETUNE_SIGINT_AFTER_STEP"


def lora_config(config: TrainConfig) -> LoraConfig:
    return LoraConfig(**lora_settings(config))


def collate(rows: Sequence[TrainingRow]) -> dict[str, torch.Tensor]:
    """Right-pad a batch; the loss covers only the audio ids and the end tokens."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, row.prompt_len : n] = ids[i, row.prompt_len : n]
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def training_arguments(
    config: TrainConfig, checkpoint_dir: Path, has_eval: bool
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_schedule,
        warmup_steps=config.warmup,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        bf16=config.dtype == "bf16",
        fp16=config.dtype == "fp16",
        use_cpu=config.device == "cpu",
        **_checkpointing(config.gradient_checkpointing),
        eval_strategy="epoch" if has_eval else "no",
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=config.keep_checkpoints,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,  # LossBar below is the progress bar
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_pin_memory=False,
    )


def _checkpointing(enabled: bool) -> dict[str, Any]:
    """Activation checkpointing, by the name this transformers release uses (5.2x renamed it)."""
    if not enabled:
        return {}
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


class LossBar(TrainerCallback):
    """One tqdm bar: steps, ETA, the last train loss and the last eval loss."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar = tqdm(
            total=state.max_steps, initial=state.global_step, desc="training LoRA", unit="step"
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        for key, short in (("loss", "loss"), ("eval_loss", "eval"), ("epoch", "epoch")):
            if logs and key in logs:
                self.postfix[short] = f"{logs[key]:.3f}" if short != "epoch" else f"{logs[key]:.2f}"
        if self.bar is not None:
            self.bar.set_postfix(self.postfix, refresh=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class SigintAfterStep(TrainerCallback):
    """Deliver a real SIGINT to this process once step `step` is done (tests' Ctrl-C)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@dataclass(frozen=True, slots=True)
class TrainResult:
    model: PeftModel
    steps: int
    resumed_from: Path | None
    log_history: list[dict[str, float]]


def train_lora(
    base: torch.nn.Module,
    train_rows: Sequence[TrainingRow],
    eval_rows: Sequence[TrainingRow],
    config: TrainConfig,
    checkpoint_dir: Path,
    resume: bool = False,
) -> TrainResult:
    """Train a voice LoRA on `train_rows`; the PEFT model's adapter is named `default`."""
    torch.manual_seed(config.seed)  # the LoRA init
    model = get_peft_model(base, lora_config(config))
    trainer = Trainer(
        model=model,
        args=training_arguments(config, checkpoint_dir, bool(eval_rows)),
        train_dataset=list(train_rows),
        eval_dataset=list(eval_rows) or None,
        data_collator=collate,
        callbacks=[LossBar(), *_test_hooks()],
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    start = latest_checkpoint(checkpoint_dir) if resume else None
    if resume and start is None:
        log.warning("--resume: no checkpoint in %s, starting from step 0", checkpoint_dir)
    elif start is not None:
        log.info("resumed from %s (step %s)", start, start.name.removeprefix(CHECKPOINT_PREFIX))
    trainer.train(resume_from_checkpoint=str(start) if start else None)
    model.eval()
    return TrainResult(model, trainer.state.global_step, start, list(trainer.state.log_history))


def _test_hooks() -> list[TrainerCallback]:
    step = os.environ.get(SIGINT_AFTER_STEP_ENV)
    return [SigintAfterStep(int(step))] if step else []
