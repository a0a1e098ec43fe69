"""An LRU of PEFT LoRA adapters attached to one model, for mixed-voice batches.

Disk reads happen in a worker thread (`prefetch`); attaching the weights to the model
happens in the step thread (`resolve`), between forward passes, so the model is never
mutated while a forward pass runs and a new voice costs other streams at most the
attach time of one step. Once the first adapter is attached the base model is wrapped
in a `PeftModel`; forward passes must then go through `model` with `forward_kwargs`.

An adapter that does not fit the model (rank, layer sizes, target modules: see
`adapter_fit`) is refused when read, before it can join a batch; a failed attach is
rolled back, leaving the model as it was.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file

from .adapter_fit import AdapterFit, adapter_problem
from .base import AdapterLoadError

log = logging.getLogger(__name__)

__all__ = ["AdapterLoadError", "LoraAdapterCache", "StagedAdapter", "read_adapter"]

BASE_ADAPTER = "__base__"  # PEFT's row name for "no adapter" in mixed batches
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

AdapterLocator = Callable[[str], Path]


@dataclass(frozen=True, slots=True)
class StagedAdapter:
    """An adapter read from disk, ready to attach."""

    name: str
    config: LoraConfig
    state: dict[str, torch.Tensor]


def read_adapter(name: str, path: Path, fit: AdapterFit | None = None) -> StagedAdapter:
    """Read a PEFT LoRA adapter directory (config + safetensors) into memory; with `fit`,
    refuse one that does not fit the model."""
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not (config_file.is_file() and weights_file.is_file()):
        raise AdapterLoadError(
            f"voice {name!r}: {path} lacks {ADAPTER_CONFIG} or {ADAPTER_WEIGHTS}"
        )
    try:
        config = LoraConfig.from_pretrained(str(path))
        state = load_file(str(weights_file))
    except Exception as exc:
        raise AdapterLoadError(f"voice {name!r}: cannot read adapter in {path}: {exc}") from exc
    if config.modules_to_save:
        raise AdapterLoadError(
            f"voice {name!r}: adapter uses modules_to_save={config.modules_to_save}; "
            "voice LoRAs must be trained without it"
        )
    problem = adapter_problem(
        config.to_dict(), {key: list(t.shape) for key, t in state.items()}, fit
    )
    if problem:
        raise AdapterLoadError(f"voice {name!r} cannot be used: {problem}")
    config.inference_mode = True
    return StagedAdapter(name, config, state)


class LoraAdapterCache:
    """Keeps at most `max_loaded` adapters attached; never evicts one the current batch needs."""

    def __init__(
        self,
        model: torch.nn.Module,
        max_loaded: int,
        locate: AdapterLocator | None = None,
        *,
        max_rank: int = 64,
    ) -> None:
        """`max_rank`: adapters of a higher rank are refused (`--max-lora-rank`)."""
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be >= 1, got {max_loaded}")
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        self.fit = AdapterFit.of_model(base, max_rank)
        self._model = model
        self.max_loaded = max_loaded
        self._locate = locate
        self._loaded: OrderedDict[str, None] = OrderedDict()  # LRU order, oldest first
        self._staged: dict[str, StagedAdapter] = {}
        self._lock = threading.Lock()  # guards _staged (prefetch threads vs step thread)
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._stale: set[str] = set()  # changed on disk; detach when no batch needs them
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        if isinstance(model, PeftModel):
            self._loaded.update((name, None) for name in model.peft_config)

    @property
    def model(self) -> torch.nn.Module:
        """The model to run: the base model until the first adapter, then the PeftModel."""
        return self._model

    @property
    def wrapped(self) -> bool:
        return isinstance(self._model, PeftModel)

    def loaded(self) -> frozenset[str]:
        """Adapters attached to the model right now."""
        return frozenset(self._loaded)

    def forward_kwargs(self, adapter_names: Sequence[str]) -> dict[str, Any]:
        """Extra forward() kwargs for a batch whose rows use `adapter_names` (from `resolve`)."""
        return {"adapter_names": list(adapter_names)} if self.wrapped else {}

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "loaded": len(self._loaded),
        }

    async def prefetch(self, name: str, path: Path | None = None) -> None:
        """Read `name` from disk in a worker thread so the next `resolve` only attaches it.

        Raises `AdapterLoadError` when the adapter is unreadable; concurrent calls share one read.
        """
        with self._lock:
            if name in self._loaded or name in self._staged:
                self.hits += 1
                return
        pending = self._inflight.get(name)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[name] = future
        try:
            staged = await asyncio.to_thread(read_adapter, name, path or self._path(name), self.fit)
            with self._lock:
                self._staged[name] = staged
                # Sessions warm their voice as they open; ones that never speak must not
                # pile adapters up in memory: keep the newest `max_loaded` read ahead.
                while len(self._staged) > self.max_loaded:
                    del self._staged[next(iter(self._staged))]
                self.misses += 1
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[name]

    def resolve(self, names: Sequence[str | None]) -> list[str]:
        """Per-row adapter names for one forward pass; attach missing adapters first.

        Call it from the step thread between forward passes. An adapter that was not
        prefetched is read synchronously (a miss that stalls this step).
        """
        needed = list(dict.fromkeys(n for n in names if n is not None))
        self._drop_stale(keep=set(needed))
        for name in needed:
            if name in self._loaded:
                self._loaded.move_to_end(name)
            else:
                self._attach(self._take_staged(name))
        self._evict(keep=set(needed))
        return [BASE_ADAPTER if n is None else n for n in names]

    def prepare(self, names: Sequence[str | None]) -> dict[str, AdapterLoadError]:
        """Attach every adapter `names` need that can be attached; return the others, each
        with why. A later `resolve` of the rest attaches nothing, so it cannot fail."""
        needed = list(dict.fromkeys(n for n in names if n is not None))
        self._drop_stale(keep=set(needed))
        failed: dict[str, AdapterLoadError] = {}
        for name in needed:
            if name not in self._loaded:
                try:
                    self._attach(self._take_staged(name))
                except AdapterLoadError as exc:
                    failed[name] = exc
        return failed

    def invalidate(self, names: Iterable[str]) -> None:
        """Forget `names` (their files changed or vanished) so their next use reloads them.

        Safe from any thread (e.g. as a `VoiceRegistry` listener): loaded adapters are
        detached by the next `resolve` that does not need them.
        """
        with self._lock:
            for name in names:
                self._staged.pop(name, None)
                self._stale.add(name)

    def _drop_stale(self, keep: set[str]) -> None:
        with self._lock:
            if not self._stale:
                return
            stale, self._stale = self._stale - keep, self._stale & keep
        for name in stale:
            if name in self._loaded:
                self._detach(name)

    def _path(self, name: str) -> Path:
        if self._locate is None:
            raise AdapterLoadError(f"voice {name!r}: no adapter path and no locator configured")
        return self._locate(name)

    def _take_staged(self, name: str) -> StagedAdapter:
        with self._lock:
            staged = self._staged.pop(name, None)
        if staged is None:
            staged = read_adapter(name, self._path(name), self.fit)
            self.misses += 1
        return staged

    def _attach(self, staged: StagedAdapter) -> None:
        try:
            self._inject(staged)
        except Exception as exc:
            self._roll_back(staged.name)  # else its half-made layers break every later batch
            if isinstance(exc, AdapterLoadError):
                raise
            raise AdapterLoadError(f"voice {staged.name!r} cannot be used: {exc}") from exc
        self._model.eval()
        self._loaded[staged.name] = None
        log.info("attached LoRA voice %r (%d loaded)", staged.name, len(self._loaded))

    def _inject(self, staged: StagedAdapter) -> None:
        if isinstance(self._model, PeftModel):
            self._model.add_adapter(staged.name, staged.config, low_cpu_mem_usage=True)
        else:
            self._model = PeftModel(
                self._model, staged.config, adapter_name=staged.name, low_cpu_mem_usage=True
            )
        result = set_peft_model_state_dict(
            self._model, staged.state, adapter_name=staged.name, low_cpu_mem_usage=True
        )
        missing = [k for k in result.missing_keys if "lora_" in k and f".{staged.name}." in k]
        if missing:
            raise AdapterLoadError(
                f"voice {staged.name!r}: adapter is missing {len(missing)} weights "
                f"(e.g. {missing[0]}); was it trained for this model?"
            )

    def _roll_back(self, name: str) -> None:
        """Remove what a failed attach of `name` left in the model."""
        model = self._model
        if isinstance(model, PeftModel) and name in model.peft_config:
            if self._loaded:
                model.delete_adapter(name)
            else:  # it was the first: back to the bare base model
                self._model = model.unload()
        self._model.eval()

    def _evict(self, keep: set[str]) -> None:
        excess = len(self._loaded) - self.max_loaded
        victims = [n for n in self._loaded if n not in keep][: max(0, excess)]
        for name in victims:
            self._detach(name)
            self.evictions += 1
        if len(self._loaded) > self.max_loaded:
            log.warning(
                "batch needs %d LoRA voices, above max_loaded=%d; evicting once they finish",
                len(self._loaded),
                self.max_loaded,
            )

    def _detach(self, name: str) -> None:
        assert isinstance(self._model, PeftModel)
        if len(self._loaded) == 1:
            # PEFT cannot hold zero adapters: go back to the bare base model.
            self._model = self._model.unload()
        else:
            # PEFT re-activates a remaining adapter (toggling requires_grad), which is
            # refused on inference tensors outside inference mode, whoever evicts
            with torch.inference_mode():
                self._model.delete_adapter(name)
        del self._loaded[name]
        log.info("evicted LoRA voice %r", name)
