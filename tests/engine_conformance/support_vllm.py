"""The engine conformance suite's model, voices and engines (runs in .venv-vllm).

One head_dim-32 tiny-random checkpoint on disk serves both engines, so greedy tokens can
be compared id for id. Its audio-token embeddings share one extra direction `u`, which
lets the `hasty` voice (a LoRA on layer 0's MLP) read "the last token was audio" and push
the hidden state onto the stop token's embedding: after any audio token the stop id
dominates every logit, so only position-constrained sampling keeps it for a frame
boundary. The other voices are random LoRAs that change the tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from inference_server.engine.base import Engine
from inference_server.engine.lora_cache import LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm, write_tiny_random
from inference_server.engine.torch_engine import TorchEngine
from inference_server.engine.vllm_args import VllmEngineConfig
from inference_server.engine.vllm_engine import VllmEngine
from inference_server.engine.vllm_lora import CPU_BASE_ADAPTER
from inference_server.orpheus import tokens as T

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
MAX_LOADED_VOICES = 2  # both engines keep this many LoRA voices (LRU), to test eviction
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK = 8  # also both engines' max LoRA rank
# From support_adapters.BROKEN: weights for another hidden size (vLLM's add_lora accepts
# them, then its engine step dies) and a rank above the limit (vLLM's add_lora refuses).
BROKEN_VOICES = ("wide", "huge")


def write_checkpoint(directory: Path) -> Path:
    """tiny-random (head_dim 32) with a shared direction added to every audio embedding."""
    write_tiny_random(directory)
    weights_file = directory / "model.safetensors"
    state = load_file(str(weights_file))
    embed = state["model.embed_tokens.weight"]
    embed[T.AUDIO_TOKEN_BASE : T.AUDIO_TOKEN_END] += 0.5 * audio_direction(embed.shape[1])
    save_file(state, str(weights_file), {"format": "pt"})
    return directory


def audio_direction(hidden: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(hidden, generator=_gen(7)), dim=0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write_random_voice(model_dir: Path, directory: Path, seed: int) -> Path:
    """A LoRA on every projection with random lora_B (PEFT starts it at zero)."""
    model = get_peft_model(load_causal_lm(str(model_dir)), _lora_config(TARGETS))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=_gen(seed)) * 0.5)
    model.save_pretrained(directory)
    return directory


def write_hasty_voice(model_dir: Path, directory: Path) -> Path:
    """After an audio token, layer 0's MLP writes a large copy of the stop embedding."""
    base = load_causal_lm(str(model_dir))
    hidden = base.config.hidden_size
    stop = base.model.embed_tokens.weight[T.END_OF_SPEECH].detach()
    model = get_peft_model(base, _lora_config(["gate_proj", "up_proj", "down_proj"]))
    mlp = model.base_model.model.model.layers[0].mlp
    with torch.no_grad():
        for proj in (mlp.gate_proj, mlp.up_proj):  # neuron 0 fires on the audio direction
            proj.lora_A["default"].weight.zero_()
            proj.lora_A["default"].weight[0] = audio_direction(hidden) * 4
            proj.lora_B["default"].weight.zero_()
            proj.lora_B["default"].weight[0, 0] = 4
        mlp.down_proj.lora_A["default"].weight.zero_()
        mlp.down_proj.lora_A["default"].weight[0, 0] = 1
        mlp.down_proj.lora_B["default"].weight.zero_()
        mlp.down_proj.lora_B["default"].weight[:, 0] = stop / stop.norm() * 50
    model.save_pretrained(directory)
    return directory


def _lora_config(targets: list[str]) -> LoraConfig:
    return LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets, lora_dropout=0.0)


def torch_engine(checkpoint: Path, voices: dict[str, Path]) -> TorchEngine:
    model = load_causal_lm(str(checkpoint))
    lora = LoraAdapterCache(model, MAX_LOADED_VOICES, locate=voices.__getitem__, max_rank=RANK)
    return TorchEngine(model, lora=lora)


def vllm_engine(checkpoint: Path, voices: dict[str, Path]) -> VllmEngine:
    config = VllmEngineConfig(
        model=str(checkpoint),
        device="cpu",
        quantization=None,
        dtype="float32",  # the torch engine's dtype: greedy ids must agree
        max_model_len=2048,
        max_loras=MAX_LOADED_VOICES,
        max_cpu_loras=MAX_LOADED_VOICES,
        max_lora_rank=RANK,
        max_num_seqs=16,
    )
    return VllmEngine(config, voices.get)


async def resident_voices(engine: Engine) -> frozenset[str]:
    """What the engine's model really holds: PEFT's adapters, or vLLM's LoRA cache."""
    if isinstance(engine, TorchEngine):
        model = engine._model
        return frozenset(model.peft_config) if isinstance(model, PeftModel) else frozenset()
    assert isinstance(engine, VllmEngine)
    names = engine._lora_ids.names(set(await engine._client.list_loras()))
    return names - {CPU_BASE_ADAPTER}


BUILDERS = {"torch": torch_engine, "vllm": vllm_engine}
