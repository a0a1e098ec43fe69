"""The Orpheus-3B shape for GPU benchmarks: a random local checkpoint and its roofline.

No download: `write_checkpoint` writes seeded random bf16 weights layer by layer (host
RAM stays around one layer) beside the bundled Llama-3.2 tokenizer. `roofline` is the
memory-bandwidth bound on real-time streams for a GPU (see bench/GPU.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from inference_server.orpheus import tokens as T

STEP_S = 1.0 / T.TOKENS_PER_SECOND  # one batched decode step per 12.19 ms keeps pace

ORPHEUS_3B = {
    "hidden_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 24,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 8192,
    "vocab_size": T.VOCAB_SIZE,
    "tie_word_embeddings": True,
    "rope_theta": 500000.0,
    "max_position_embeddings": 131072,
}

# Memory bandwidth in GB/s (vendor datasheets); `match_gpu` maps device names onto these.
GPU_BANDWIDTH_GBS = {
    "L4": 300,
    "L40S": 864,
    "A10G": 600,
    "A100-40GB": 1555,
    "A100-80GB": 2039,
    "H100-SXM": 3350,
    "H100-PCIe": 2000,
    "RTX-4090": 1008,
}


def match_gpu(device_name: str) -> str | None:
    """Table key for a `torch.cuda.get_device_name()` string or a `--gpu-name` value."""
    name = device_name.upper().replace("_", "-").replace(" ", "-")
    for key in GPU_BANDWIDTH_GBS:
        if name == key.upper():
            return key
    if "A100" in name:
        return "A100-80GB" if "80G" in name else "A100-40GB"
    if "H100" in name:
        return "H100-PCIe" if "PCIE" in name else "H100-SXM"
    if "4090" in name:
        return "RTX-4090"
    for key in ("L40S", "A10G", "L4"):  # L40S before L4: "L4" is a prefix of it
        if any(part == key for part in name.split("-")):
            return key
    return None


# ---- the random Orpheus-3B checkpoint ----------------------------------------------------


def llama_config(dims: dict[str, Any] = ORPHEUS_3B) -> dict[str, Any]:
    """config.json of a Llama with Orpheus' dims and special ids."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **dims,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": T.BOS,
        "eos_token_id": T.END_OF_SPEECH,
        "pad_token_id": T.PAD,
        "torch_dtype": "bfloat16",
    }


def layer_shapes(dims: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of one decoder layer, by HF name suffix."""
    h, i, d = dims["hidden_size"], dims["intermediate_size"], dims["head_dim"]
    q, kv = dims["num_attention_heads"] * d, dims["num_key_value_heads"] * d
    return {
        "self_attn.q_proj.weight": (q, h),
        "self_attn.k_proj.weight": (kv, h),
        "self_attn.v_proj.weight": (kv, h),
        "self_attn.o_proj.weight": (h, q),
        "mlp.gate_proj.weight": (i, h),
        "mlp.up_proj.weight": (i, h),
        "mlp.down_proj.weight": (h, i),
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
    }


def write_checkpoint(directory: Path, dims: dict[str, Any] = ORPHEUS_3B, seed: int = 0) -> Path:
    """Random bf16 safetensors, one shard per layer (host RAM ~ one layer), plus tokenizer."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    write_config(directory, dims)
    gen = torch.Generator().manual_seed(seed)

    def tensor(shape: tuple[int, ...]) -> torch.Tensor:
        if len(shape) == 1:  # norm gains
            return torch.ones(shape, dtype=torch.bfloat16)
        out = torch.empty(shape, dtype=torch.bfloat16)
        for rows in torch.split(out, 8192):  # fp32 scratch stays small even for the embedding
            rows.copy_(torch.randn(rows.shape, generator=gen) * 0.02)
        return out

    layers = dims["num_hidden_layers"]
    shards: list[dict[str, tuple[int, ...]]] = [
        {"model.embed_tokens.weight": (dims["vocab_size"], dims["hidden_size"])},
        *(
            {f"model.layers.{n}.{k}": s for k, s in layer_shapes(dims).items()}
            for n in range(layers)
        ),
        {"model.norm.weight": (dims["hidden_size"],)},
    ]
    weight_map = {}
    for n, shard in enumerate(shards):
        file = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensor(s) for k, s in shard.items()}, str(directory / file), {"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": 2 * param_count(dims)}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (directory / "COMPLETE").write_text(f"random weights, seed {seed}\n")
    return directory


def write_config(directory: Path, dims: dict[str, Any] = ORPHEUS_3B) -> dict[str, Any]:
    """config.json plus the bundled Llama-3.2 tokenizer; returns the config."""
    from inference_server.engine.model_loading import write_tokenizer  # imports torch

    config = llama_config(dims)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    write_tokenizer(directory, model_max_length=dims["max_position_embeddings"])
    return config


def param_count(dims: dict[str, Any]) -> int:
    per_layer = sum(math.prod(s) for s in layer_shapes(dims).values())
    embed = dims["vocab_size"] * dims["hidden_size"]
    return embed + dims["num_hidden_layers"] * per_layer + dims["hidden_size"]


# ---- roofline ----------------------------------------------------------------------------


def weight_bytes_per_step(dims: dict[str, Any], quantization: str) -> int:
    """Bytes of weights one decode step reads: every layer plus the tied lm_head.

    vLLM's fp8 quantizes the linear layers only; lm_head (= the tied embedding) stays bf16.
    """
    linear = sum(math.prod(s) for s in layer_shapes(dims).values() if len(s) == 2)
    rest = param_count(dims) - dims["num_hidden_layers"] * linear
    return (1 if quantization == "fp8" else 2) * dims["num_hidden_layers"] * linear + 2 * rest


def kv_bytes_per_token(dims: dict[str, Any], kv_dtype_bytes: int = 2) -> int:
    return (
        2
        * dims["num_hidden_layers"]
        * dims["num_key_value_heads"]
        * dims["head_dim"]
        * kv_dtype_bytes
    )


def roofline(
    gpu: str, dims: dict[str, Any], quantization: str, mean_context: float
) -> dict[str, Any]:
    """Streams a GPU could keep real time if decode were purely memory-bandwidth bound."""
    bandwidth = GPU_BANDWIDTH_GBS[gpu] * 1e9
    weights = weight_bytes_per_step(dims, quantization)
    kv = kv_bytes_per_token(dims)
    budget = bandwidth * STEP_S  # bytes readable in one real-time step
    streams = max(0, math.floor((budget - weights) / (kv * mean_context)))
    return {
        "gpu": gpu,
        "bandwidth_gbs": GPU_BANDWIDTH_GBS[gpu],
        "weight_bytes_per_step": weights,
        "kv_bytes_per_token": kv,
        "mean_context_tokens": mean_context,
        "step_budget_ms": 1000 * STEP_S,
        "weight_passes_per_step_budget": budget / weights,
        "streams": streams,
        "formula": (
            "streams = (bandwidth * 12.19 ms - weight_bytes) "
            "/ (kv_bytes_per_token * mean_context); "
            "one batched step reads the weights once for all streams plus each stream's KV cache, "
            "and must finish every 1/82.03 s. weight_passes_per_step_budget = bandwidth * 12.19 ms "
            "/ weight_bytes (> 1: batch 1 can be real time)"
        ),
    }
