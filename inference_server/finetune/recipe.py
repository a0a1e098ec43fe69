"""The voice recipe and the run's settings: plain data, no torch (a dry run reads them)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# All attention and MLP projections (the talk's recipe: rank 16, alpha 32 on all of them).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINT_PREFIX = "checkpoint-"  # the Trainer's checkpoint directory names


def default_output_dir(name: str) -> Path:
    """Where a run keeps its checkpoints, code cache and report unless --output-dir says."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "orpheus-serving" / "finetune" / name


@dataclass(frozen=True, slots=True)
class TrainConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 2e-4
    lr_schedule: str = "cosine"
    warmup: float = 0.05  # steps, or a fraction of all steps when < 1
    batch_size: int = 1
    grad_accum: int = 1
    epochs: int = 5
    max_steps: int | None = None
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    gradient_checkpointing: bool = False
    device: str = "cpu"
    dtype: str = "fp32"
    seed: int = 0

    def steps_per_epoch(self, n_rows: int) -> int:
        return max(1, math.ceil(math.ceil(n_rows / self.batch_size) / self.grad_accum))

    def total_steps(self, n_rows: int) -> int:
        steps = self.epochs * self.steps_per_epoch(n_rows)
        return min(steps, self.max_steps) if self.max_steps is not None else steps


def lora_settings(config: TrainConfig) -> dict[str, Any]:
    """The adapter's PEFT config: no modules_to_save (vLLM cannot serve it), no bias."""
    return {
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": list(LORA_TARGETS),
        "modules_to_save": None,
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint: the Trainer writes trainer_state.json last."""
    done = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), default=None)
