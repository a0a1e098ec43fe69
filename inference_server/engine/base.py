"""The engine contract: add a request, stream its new token ids, abort it."""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from ..errors import Unusable
from ..orpheus import tokens as T

GREEDY_TEMPERATURE = 1e-5  # at or below this, sampling is argmax


class AdapterLoadError(Unusable):
    """A LoRA voice's adapter could not be read or does not fit the model."""


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Production defaults from the reference deployment."""

    temperature: float = 0.6
    top_p: float = 0.8
    repetition_penalty: float = 1.1
    max_tokens: int = 2800  # hard cap per text chunk, on top of the text-length budget
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if not math.isfinite(value):  # NaN passes every comparison below
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty < 1:
            raise ValueError(f"repetition_penalty must be >= 1.0, got {self.repetition_penalty}")
        if self.max_tokens < T.FRAME_TOKENS:
            raise ValueError(f"max_tokens must be >= {T.FRAME_TOKENS}, got {self.max_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= GREEDY_TEMPERATURE


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    prompt_ids: Sequence[int]
    sampling: SamplingConfig
    max_new_tokens: int  # this chunk's budget (session/overrun.py: `chunk_budget`)
    adapter: str | None = None  # LoRA voice name; None = base model
    session_id: str = ""
    # Given the tokens generated so far, how long generation may wait before its listener
    # needs more (session/pacing.py); 0 = now. Engines that can hold a row read it.
    hold_s: Callable[[int], float] | None = None


def check_prompt(request: GenerationRequest, vocab_size: int) -> None:
    """Refuse prompt ids the model has no embedding for, before they reach a batch."""
    bad = [t for t in request.prompt_ids if not 0 <= t < vocab_size]
    if bad or not request.prompt_ids:
        raise ValueError(
            f"request {request.request_id!r}: prompt needs 1+ token ids in [0, {vocab_size}); "
            f"got {len(bad)} outside it (e.g. {bad[:3]})"
        )


@dataclass(slots=True)
class EngineStats:
    steps: int = 0
    tokens_generated: int = 0
    prefills: int = 0
    batch_size_sum: int = 0
    live_requests: int = 0
    queued_requests: int = 0
    held_requests: int = 0  # waiting while their listeners have enough audio ahead
    adapters: dict[str, int] = field(default_factory=dict)  # e.g. lora cache hits/misses


class Engine(abc.ABC):
    """Generates Orpheus audio token ids for many concurrent requests."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load weights and start the step loop."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Abort everything and release resources."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[list[int]]:
        """Yield new token ids as they are sampled, stop token excluded.

        Ends at the stop token or the budget. Closing the iterator (or cancelling the
        task consuming it) aborts the request and frees its slot at once.
        """

    @abc.abstractmethod
    def abort(self, request_id: str) -> None:
        """Stop a request; a no-op if it already finished."""

    @abc.abstractmethod
    def live_request_ids(self) -> frozenset[str]:
        """Requests queued or generating right now."""

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...

    def loaded_adapters(self) -> frozenset[str]:
        """LoRA voices resident in memory right now."""
        return frozenset()

    async def prepare(self, adapter: str) -> None:
        """Load a LoRA voice's weights ahead of its first request (a session just opened
        with it); raises what that request would. Without adapters: nothing to do."""
        return None
