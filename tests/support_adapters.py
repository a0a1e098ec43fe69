"""Real PEFT LoRA voices written by tests, good ones and the ways one can be broken.

A broken voice is a real adapter that went wrong the way they do in the field: its config
from another training run (rank mismatch), trained for another architecture (target
modules the model does not have), for another model size (other hidden size), or of a
rank above the node's `--max-lora-rank`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from inference_server.engine.model_loading import load_causal_lm, write_tiny_random

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OVER_RANK = 32  # above the `--max-lora-rank` the tests give nodes
RANK_LIMIT = 16


def write_voice(directory: Path, seed: int, *, model: str = "tiny-random", rank: int = 8) -> Path:
    """A LoRA on every projection with random lora_B (PEFT starts it at zero)."""
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, lora_dropout=0.0)
    peft_model = get_peft_model(load_causal_lm(model), config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(directory)
    return directory


def _edit_config(directory: Path, **changes: object) -> None:
    file = directory / "adapter_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))


def write_rank_mismatch(directory: Path, model: str) -> Path:
    """Rank-8 weights under a config that says rank 4."""
    write_voice(directory, seed=11, model=model)
    _edit_config(directory, r=4, lora_alpha=4)
    return directory


def write_alien(directory: Path, model: str) -> Path:
    """An adapter for a fused-attention architecture (Phi-3 style `qkv_proj`)."""
    write_voice(directory, seed=12, model=model)
    _edit_config(directory, target_modules=["qkv_proj", "o_proj"])
    weights = directory / "adapter_model.safetensors"
    state = load_file(str(weights))
    fused = {k.replace("q_proj", "qkv_proj"): v for k, v in state.items() if "self_attn" in k}
    save_file({k: v for k, v in fused.items() if "k_proj" not in k and "v_proj" not in k},
              str(weights))  # fmt: skip
    return directory


def write_other_size(directory: Path, model: str) -> Path:
    """Trained on a tiny-random twice (or half) as wide as `model`."""
    width = 16 if _head_dim(model) == 32 else 32
    other = write_tiny_random(directory.parent / f".model-hd{width}", head_dim=width)
    return write_voice(directory, seed=13, model=str(other))


def write_over_rank(directory: Path, model: str) -> Path:
    return write_voice(directory, seed=14, model=model, rank=OVER_RANK)


def _head_dim(model: str) -> int:
    if model == "tiny-random":
        return 16
    return json.loads((Path(model) / "config.json").read_text())["head_dim"]


# voice name -> (writer, what the refusal must say)
BROKEN: dict[str, tuple[Callable[[Path, str], Path], str]] = {
    "rankmix": (write_rank_mismatch, "config says r=4 but its weights have rank 8"),
    "alien": (write_alien, "targets qkv_proj, which the model does not have"),
    "wide": (write_other_size, "trained for another model size"),
    "huge": (write_over_rank, f"rank {OVER_RANK} is greater than --max-lora-rank {RANK_LIMIT}"),
}
