"""The `vllm` engine: vLLM v1 `AsyncLLM` behind our `Engine` interface (CUDA only).

vLLM is an optional extra (`pip install .[vllm]`) and is imported only in `load_vllm_api`.
Everything that translates between our types and vLLM's (engine args, sampling params,
LoRA ids, DELTA outputs) is a plain function here so it is tested without vLLM.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..orpheus import tokens as T
from .base import Engine, EngineStats, GenerationRequest, SamplingConfig

log = logging.getLogger(__name__)

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # ranks vLLM's LoRA kernels accept
AUDIO_AND_STOP_IDS = [*range(T.AUDIO_TOKEN_BASE, T.AUDIO_TOKEN_END), T.END_OF_SPEECH]
_INT32_MAX = 2**31 - 1

AdapterLocator = Callable[[str], Path | None]


@dataclass(frozen=True, slots=True)
class VllmEngineConfig:
    """The vLLM knobs we expose; `engine_args` turns them into `AsyncEngineArgs` kwargs."""

    model: str
    max_model_len: int = 4096  # always set: Orpheus' config allows far more than we use
    quantization: str | None = "fp8"
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
    constrain_audio_tokens: bool = True  # allow only audio ids + end_of_speech
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


def config_from_server(flags: ServerFlags) -> VllmEngineConfig:
    """Typed vLLM config from the server's flags; LoRA is enabled only with a voices dir."""
    quantization = None if str(flags.quantization).lower() in ("", "none") else flags.quantization
    return VllmEngineConfig(
        model=flags.model,
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
    """The server's `--engine vllm` entry point: the engine and the checkpoint's tokenizer."""
    from .model_loading import TINY_RANDOM, load_tokenizer

    if flags.model == TINY_RANDOM:
        raise ValueError("--engine vllm needs a local checkpoint directory, not tiny-random")

    def locate(name: str) -> Path | None:
        try:
            return voices.resolve(name).adapter_path
        except LookupError:
            return None

    return VllmEngine(config_from_server(flags), locate), load_tokenizer(flags.model)


def engine_args(config: VllmEngineConfig) -> dict[str, Any]:
    """`AsyncEngineArgs(**engine_args(config))`."""
    args = asdict(config)
    extra = args.pop("extra")
    args.pop("constrain_audio_tokens")
    if not config.enable_lora:
        for key in ("max_loras", "max_cpu_loras", "max_lora_rank"):
            args.pop(key)
    return {**args, "tokenizer": config.model, **extra}


def sampling_kwargs(
    sampling: SamplingConfig, max_new_tokens: int, *, constrain: bool = True
) -> dict[str, Any]:
    """`SamplingParams` kwargs (minus `output_kind`) for one chunk: token ids only, no text."""
    kwargs: dict[str, Any] = {
        "temperature": 0.0 if sampling.greedy else sampling.temperature,
        "top_p": 1.0 if sampling.greedy else sampling.top_p,
        "repetition_penalty": sampling.repetition_penalty,
        "max_tokens": min(max_new_tokens, sampling.max_tokens),
        "stop_token_ids": [T.END_OF_SPEECH],
        "detokenize": False,
        "skip_special_tokens": False,
        "seed": sampling.seed,
    }
    if constrain:
        kwargs["allowed_token_ids"] = AUDIO_AND_STOP_IDS
    return kwargs


def lora_int_id(name: str) -> int:
    """A stable positive int32 id for a voice: the same in every call, process and node."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _INT32_MAX + 1


class LoraIds:
    """Hands out `lora_int_id`s and refuses the (rare) case of two voices sharing one."""

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
    """The few vLLM entry points we use, injectable so translation is testable without vLLM."""

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
            "--engine vllm needs vLLM on a CUDA machine: pip install 'orpheus-serving[vllm]' "
            "(it cannot run on CPU; use --engine torch there)"
        ) from exc
    return VllmApi(
        make_client=lambda kw: AsyncLLM.from_engine_args(AsyncEngineArgs(**kw)),
        sampling_params=SamplingParams,
        lora_request=LoRARequest,
        delta=RequestOutputKind.DELTA,
    )


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
        self._recent_loras: dict[str, None] = {}  # LRU of voices sent to vLLM
        self._live: set[str] = set()
        self._aborts: set[asyncio.Task[None]] = set()
        self._stats = EngineStats()

    async def start(self) -> None:
        self._api = self._api or load_vllm_api()
        self._client = self._api.make_client(engine_args(self.config))

    async def close(self) -> None:
        for request_id in list(self._live):
            await self._client.abort(request_id)
        if self._client is not None and hasattr(self._client, "shutdown"):
            self._client.shutdown()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[int]]:
        api = self._require_started()
        params = api.sampling_params(
            **sampling_kwargs(
                request.sampling,
                request.max_new_tokens,
                constrain=self.config.constrain_audio_tokens,
            ),
            output_kind=api.delta,
        )
        lora = self._lora_request(request.adapter)
        tokens = DeltaTokens(min(request.max_new_tokens, request.sampling.max_tokens))
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
                    self._stats.tokens_generated += len(new)
                    yield new
                if finished or tokens.done:
                    break
        finally:
            self._live.discard(request.request_id)
            if not finished:  # cancelled, closed, or our budget ended it first
                await self._client.abort(request.request_id)

    def abort(self, request_id: str) -> None:
        if request_id in self._live and self._client is not None:
            task = asyncio.get_running_loop().create_task(self._client.abort(request_id))
            self._aborts.add(task)
            task.add_done_callback(self._aborts.discard)

    def live_request_ids(self) -> frozenset[str]:
        return frozenset(self._live)

    def stats(self) -> EngineStats:
        self._stats.live_requests = len(self._live)
        return self._stats

    def has_adapter(self, name: str) -> bool:
        return (
            self.config.enable_lora and self._locate is not None and self._locate(name) is not None
        )

    def _require_started(self) -> VllmApi:
        if self._api is None or self._client is None:
            raise RuntimeError("VllmEngine.generate called before start()")
        return self._api

    def _lora_request(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        path = self._locate(adapter) if self._locate and self.config.enable_lora else None
        if path is None:
            raise ValueError(f"voice {adapter!r} is not a LoRA voice this engine can load")
        assert self._api is not None
        lora_id = self._lora_ids.id_for(adapter)
        self._recent_loras.pop(adapter, None)
        self._recent_loras[adapter] = None
        while len(self._recent_loras) > self.config.max_cpu_loras:
            del self._recent_loras[next(iter(self._recent_loras))]
        return self._api.lora_request(adapter, lora_id, str(path))
