"""A small LoRA training loop: AdamW, progress bar, checkpoints every N steps, resume."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file
from tqdm import tqdm

from ..orpheus.tokens import PAD
from .encode import TrainingRow

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100  # label id the loss skips


@dataclass(frozen=True, slots=True)
class TrainConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 2e-4
    batch_size: int = 1
    epochs: int = 1
    max_steps: int | None = None
    checkpoint_every: int = 100
    seed: int = 0

    def total_steps(self, n_rows: int) -> int:
        steps = self.epochs * math.ceil(n_rows / self.batch_size)
        return min(steps, self.max_steps) if self.max_steps is not None else steps


def lora_config(config: TrainConfig) -> LoraConfig:
    """Voice LoRA: all attention + MLP projections, no modules_to_save (vLLM can't serve it)."""
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(LORA_TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )


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


def batches(
    rows: Sequence[TrainingRow], config: TrainConfig, epoch: int
) -> list[list[TrainingRow]]:
    """A seeded shuffle per epoch, so a resumed run sees the same order."""
    order = list(range(len(rows)))
    random.Random(config.seed * 100003 + epoch).shuffle(order)
    size = config.batch_size
    return [[rows[i] for i in order[k : k + size]] for k in range(0, len(order), size)]


def train_lora(
    base: torch.nn.Module,
    rows: Sequence[TrainingRow],
    config: TrainConfig,
    checkpoint_dir: Path,
    resume: bool = False,
) -> PeftModel:
    """Train a voice LoRA on `rows`; return the PEFT model (adapter name `default`)."""
    torch.manual_seed(config.seed)
    model = get_peft_model(base, lora_config(config))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    total = config.total_steps(len(rows))
    step = _resume(model, optimizer, checkpoint_dir) if resume else 0
    per_epoch = math.ceil(len(rows) / config.batch_size)
    progress = tqdm(total=total, initial=step, desc="training LoRA", unit="step")
    while step < total:
        epoch, offset = divmod(step, per_epoch)
        for batch in batches(rows, config, epoch)[offset:]:
            loss = model(**collate(batch)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            if step % config.checkpoint_every == 0 or step == total:
                save_checkpoint(model, optimizer, checkpoint_dir, step, config)
            if step >= total:
                break
    progress.close()
    return model.eval()


def save_checkpoint(
    model: PeftModel, optimizer: torch.optim.Optimizer, root: Path, step: int, config: TrainConfig
) -> Path:
    """`root/step-000123/`: the adapter, the optimizer state and the step."""
    path = root / f"step-{step:06d}"
    model.save_pretrained(str(path), save_embedding_layers=False)
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"step": step, "config": asdict(config)}))
    log.info("checkpoint %s", path)
    return path


def latest_checkpoint(root: Path) -> Path | None:
    done = [p for p in root.glob("step-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: p.name) if done else None


def _resume(model: PeftModel, optimizer: torch.optim.Optimizer, root: Path) -> int:
    path = latest_checkpoint(root)
    if path is None:
        log.warning("--resume: no checkpoint in %s, starting from step 0", root)
        return 0
    set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    step = json.loads((path / "trainer_state.json").read_text())["step"]
    log.info("resumed from %s (step %d)", path, step)
    return step
