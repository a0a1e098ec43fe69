"""Continuous-batching Orpheus engine on plain transformers (CPU or GPU).

Requests join and leave between steps; the model runs in a single worker thread so
the event loop never blocks. Streaming-aware: a request's prefill and first frames
(until it has `ttfa_tokens`, enough for the decoder's first window) run in a small
*fresh* batch that goes first every step; established streams, which already have
audio buffered at their listener, advance together in the *steady* batch and may
skip up to `max_steady_skips` consecutive steps (by default one whole race,
`ttfa_tokens` steps) while fresh requests race to their first audio. Then they
graduate into the steady batch. Measured on tiny-random with 7 steady streams, a
fresh request's first 35 tokens took 1.05x their time alone with whole races and
1.25x when steady streams cut in every 9th step.

Paced: the steady batch steps only while one of its rows' listeners needs more audio
(`GenerationRequest.hold_s`, session/pacing.py); otherwise the step thread sleeps until
the first one will, so the cores go to decoding the audio listeners need now rather than
audio they need in seconds. The batch steps as a whole: a step costs about the same for
one row as for all of them, so rows that could wait ride along.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..errors import OrpheusError
from ..orpheus import tokens as T
from .base import AdapterLoadError, Engine, EngineStats, GenerationRequest, check_prompt
from .kv_batch import PaddedKVBatch
from .legal_head import LegalSliceHead
from .lora_cache import LoraAdapterCache
from .sampling import RowSampler, legal_starts, sample_audio_tokens, sample_legal_tokens

log = logging.getLogger(__name__)

MAX_PACED_SLEEP_S = 0.05  # a paced step thread looks again at least this often


class _Lane:
    """Rows that advance together: one padded KV batch, one forward pass per step."""

    def __init__(self) -> None:
        self.rows: list[_Live] = []
        self.kv = PaddedKVBatch()

    def __bool__(self) -> bool:
        return any(not live.done for live in self.rows)

    def keep(self, keep: list[int]) -> None:
        if len(keep) != len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            self.kv.keep(keep)

    def move(self, rows: list[int], other: _Lane) -> None:
        """Hand `rows` over to `other` (their KV cache goes with them)."""
        for i in rows:
            other.kv.add_layers(*self.kv.row_layers(i))
            other.rows.append(self.rows[i])
        self.keep([i for i in range(len(self.rows)) if i not in rows])


@dataclass(frozen=True, slots=True)
class _StepOutput:
    """One request's share of one step: its new tokens and whether it ended in that step.

    `finished` is decided on the step thread with the tokens, so the loop never reads a
    row's later state when it delivers an earlier step (vLLM's `EngineCoreOutput` does
    the same)."""

    live: _Live
    tokens: list[int]
    finished: bool
    error: BaseException | None = None  # this request alone failed (e.g. in its prefill)


@dataclass(eq=False, slots=True)
class _Live:
    request: GenerationRequest
    sampler: RowSampler
    out: asyncio.Queue[list[int] | BaseException | None] = field(default_factory=asyncio.Queue)
    last_token: int = 0
    generated: int = 0
    done: bool = False

    def hold_s(self) -> float:
        """How long this row may wait before its listener needs more (0 = step it)."""
        hold = self.request.hold_s
        return 0.0 if hold is None or self.done else hold(self.generated)


class TorchEngine(Engine):
    def __init__(
        self,
        model: PreTrainedModel,
        *,
        max_batch: int = 64,
        max_prefills_per_step: int = 4,
        lora: LoraAdapterCache | None = None,
        threads: int | None = 1,
        ttfa_tokens: int = 21,
        max_steady_skips: int | None = None,
        paced: bool = True,
    ) -> None:
        """`threads`: intra-op threads of the step thread (None = torch's default).
        `paced`: honour requests' `hold_s` (the module docstring); False steps regardless.

        One is right on CPU: a decode step is many small ops, and a second OpenMP thread
        fighting the SNAC decoder's threads for the same cores costs more than it gives.
        """
        self._base_model = model
        self._head = LegalSliceHead.install(model)
        self._lora = lora
        self._device = next(model.parameters()).device
        self._max_batch = max_batch
        self._max_prefills = max_prefills_per_step
        self._threads = threads
        self._lock = threading.Lock()
        self._incoming: deque[_Live] = deque()
        self._aborted: set[str] = set()
        self._live: dict[str, _Live] = {}
        # Touched only by the worker thread:
        self._fresh, self._steady = _Lane(), _Lane()
        self._admitting: list[_Live] = []
        self._ttfa_tokens = ttfa_tokens
        self._max_steady_skips = ttfa_tokens if max_steady_skips is None else max_steady_skips
        self._steady_skipped = 0
        self._paced = paced
        self._steady_hold_s = 0.0  # how long the steady batch may wait (0 = step it)
        self._stats = EngineStats()
        self._work = threading.Event()  # set (under _lock) while there is work to step
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Test seam: called on the step thread with each step's outputs before they are
        # posted to the loop, so tests can force an interleaving instead of racing for it.
        self.interleave: Callable[[list[_StepOutput]], None] = lambda outputs: None

    @property
    def _model(self) -> torch.nn.Module:
        return self._lora.model if self._lora is not None else self._base_model

    def loaded_adapters(self) -> frozenset[str]:
        return self._lora.loaded() if self._lora is not None else frozenset()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="torch-engine", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        for rid in list(self._live):
            self.abort(rid)
        if self._thread is not None:
            with self._lock:
                self._stopping = True
                self._work.set()
            await asyncio.to_thread(self._thread.join)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[int]]:
        if request.request_id in self._live:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        check_prompt(request, self._base_model.config.vocab_size)
        if request.adapter is not None:
            await self.prepare(request.adapter)  # disk read off the step thread
        sampler = RowSampler(request.sampling)
        sampler.note_context(request.prompt_ids)
        live = _Live(request, sampler)
        self._live[request.request_id] = live
        with self._lock:
            self._incoming.append(live)
            self._work.set()
        try:
            while (tokens := await self._drain(live)) is not None:
                yield tokens
        finally:
            self.abort(request.request_id)

    async def prepare(self, adapter: str) -> None:
        if self._lora is None:
            raise AdapterLoadError(f"voice {adapter!r} needs LoRA support, which is off")
        await self._lora.prefetch(adapter)

    @staticmethod
    async def _drain(live: _Live) -> list[int] | None:
        """Every token produced since the last call (a slow consumer gets them in one go)."""
        tokens: list[int] = []
        item = await live.out.get()
        while True:
            if isinstance(item, BaseException):
                raise item
            if item is None:
                if tokens:
                    live.out.put_nowait(None)  # end of stream: report it on the next call
                return tokens or None
            tokens += item
            if live.out.empty():
                return tokens
            item = live.out.get_nowait()

    def abort(self, request_id: str) -> None:
        live = self._live.pop(request_id, None)
        if live is not None and not live.done:
            with self._lock:
                self._aborted.add(request_id)
                self._work.set()

    def live_request_ids(self) -> frozenset[str]:
        return frozenset(self._live)

    def stats(self) -> EngineStats:
        if self._lora is not None:
            self._stats.adapters = self._lora.stats()
        self._stats.live_requests = len(self._live)
        self._stats.queued_requests = len(self._incoming)
        return self._stats

    # ---- worker thread -------------------------------------------------------------

    def _run(self) -> None:
        """Step while there is work, without waiting for the event loop between steps.

        Results go to the loop with call_soon_threadsafe; a busy loop (many streams'
        audio to send) therefore delays token delivery, never the next forward pass.
        """
        if self._threads:
            torch.set_num_threads(self._threads)
        loop = self._loop
        assert loop is not None
        sleep_s: float | None = None  # None: until there is work
        while True:
            self._work.wait(sleep_s)
            if self._stopping:
                return
            try:
                outputs = self._step()
            except Exception as exc:  # a model failure must not take the server down
                log.exception("engine step failed; failing %d live requests", len(self._live))
                loop.call_soon_threadsafe(self._fail, self._strand_all(), exc)
                continue
            self.interleave(outputs)
            if outputs:
                loop.call_soon_threadsafe(self._deliver, outputs)
            paced = self._steady_hold_s > 0
            with self._lock:  # close() sets _stopping under this lock: never sleep past it
                if (
                    self._fresh
                    or self._incoming
                    or self._aborted
                    or self._stopping
                    or (self._steady and not paced)
                ):
                    self._work.set()
                else:
                    self._work.clear()
            # A paced batch sleeps until its first listener needs more; new work wakes it.
            sleep_s = min(self._steady_hold_s, MAX_PACED_SLEEP_S) if paced else None

    def _deliver(self, outputs: list[_StepOutput]) -> None:
        """On the loop: hand each request its new tokens, and its end."""
        for output in outputs:
            if output.error is not None:
                output.live.out.put_nowait(_request_error(output.error))
                self._live.pop(output.live.request.request_id, None)
                continue
            if output.tokens:
                output.live.out.put_nowait(output.tokens)
            if output.finished:
                output.live.out.put_nowait(None)
                self._live.pop(output.live.request.request_id, None)

    def _strand_all(self) -> list[_Live]:
        with self._lock:
            lanes = [*self._fresh.rows, *self._steady.rows]
            in_lanes = {id(live) for live in lanes}
            admitting = [live for live in self._admitting if id(live) not in in_lanes]
            stranded = [*lanes, *admitting, *self._incoming]
            self._incoming.clear()
        self._fresh, self._steady, self._admitting = _Lane(), _Lane(), []
        for live in stranded:
            live.done = True
        return stranded

    def _fail(self, stranded: list[_Live], exc: BaseException) -> None:
        """On the loop: every stranded request ends with the failure."""
        for live in stranded:
            live.out.put_nowait(_request_error(exc))
            self._live.pop(live.request.request_id, None)

    def _step(self) -> list[_StepOutput]:
        with self._lock:
            aborted, self._aborted = self._aborted, set()
            if aborted:
                self._incoming = deque(
                    live for live in self._incoming if live.request.request_id not in aborted
                )
            room = self._max_batch - len(self._fresh.rows) - len(self._steady.rows)
            new = [
                self._incoming.popleft()
                for _ in range(min(max(0, room), self._max_prefills, len(self._incoming)))
            ]
        self._drop(aborted)
        emitted: dict[int, tuple[_Live, list[int]]] = {}
        failed: list[_StepOutput] = []
        self._admitting = new  # not in a lane until its prefill succeeds
        with torch.inference_mode():
            for live in new:
                try:
                    self._prefill(live)
                except Exception as exc:  # this prompt alone: the batch goes on
                    log.warning("prefill of %s failed: %r", live.request.request_id, exc)
                    live.done = True
                    failed.append(_StepOutput(live, [], True, exc))
                    continue
                emitted[id(live)] = (live, [])
                self._accept(live, emitted)
            self._admitting = []
            fresh_ran = bool(self._fresh)
            if fresh_ran:
                self._decode(self._fresh, emitted, failed)
                self._graduate()
            # every listener of the batch has enough ahead: it waits
            rows = self._steady.rows if self._paced else ()
            self._steady_hold_s = min((live.hold_s() for live in rows), default=0.0)
            if self._steady_hold_s <= 0 and (
                not fresh_ran or self._steady_skipped >= self._max_steady_skips
            ):
                self._decode(self._steady, emitted, failed)
                self._steady_skipped = 0
            elif self._steady and self._steady_hold_s <= 0:
                self._steady_skipped += 1
        self._drop(set())
        return [*failed, *(_StepOutput(live, toks, live.done) for live, toks in emitted.values())]

    def _prefill(self, live: _Live) -> None:
        ids = torch.tensor([list(live.request.prompt_ids)], dtype=torch.long, device=self._device)
        out, tokens = self._forward_and_sample(
            [live], input_ids=ids, past_key_values=DynamicCache()
        )
        live.last_token = tokens[0]
        self._fresh.kv.add(out.past_key_values, ids.shape[1])
        self._fresh.rows.append(live)
        self._stats.prefills += 1

    def _decode(
        self,
        lane: _Lane,
        emitted: dict[int, tuple[_Live, list[int]]],
        failed: list[_StepOutput],
    ) -> None:
        self._shed_unloadable(lane, failed)
        rows = lane.rows
        if not rows:
            return
        cache, mask, positions = lane.kv.step_inputs()
        ids = torch.tensor([[live.last_token] for live in rows], dtype=torch.long)
        # Finished rows ride along this step (their slot is freed right after).
        out, tokens = self._forward_and_sample(
            rows,
            input_ids=ids.to(self._device),
            attention_mask=mask.to(self._device),
            position_ids=positions.to(self._device),
            past_key_values=cache,
        )
        lane.kv.commit(out.past_key_values)
        self._stats.steps += 1
        self._stats.batch_size_sum += len(rows)
        for live, token in zip(rows, tokens, strict=True):
            if live.done:
                continue
            live.last_token = token
            emitted.setdefault(id(live), (live, []))
            self._accept(live, emitted)

    def _forward_and_sample(
        self, rows: Sequence[_Live], **inputs: object
    ) -> tuple[CausalLMOutputWithPast, list[int]]:
        """One forward pass over `rows` and a token for each; only legal ids are projected
        when the head allows it."""
        samplers = [live.sampler for live in rows]
        kwargs = {"use_cache": True, "logits_to_keep": 1, **inputs, **self._adapter_kwargs(rows)}
        if self._head is None:
            out = self._model(**kwargs)
            return out, sample_audio_tokens(out.logits[:, -1], samplers)
        starts = legal_starts(samplers)
        with self._head.restricted(starts):
            out = self._model(**kwargs)
        return out, sample_legal_tokens(out.logits[:, -1], samplers, starts)

    def _graduate(self) -> None:
        """Fresh rows that have their first audio's tokens join the steady batch."""
        ready = [
            i
            for i, live in enumerate(self._fresh.rows)
            if not live.done and live.generated >= self._ttfa_tokens
        ]
        if ready:
            self._fresh.move(ready, self._steady)

    def _accept(self, live: _Live, emitted: dict[int, tuple[_Live, list[int]]]) -> None:
        """Record the row's freshly sampled `last_token`, or finish the row."""
        token = live.last_token
        if token == T.END_OF_SPEECH:
            live.done = True
            return
        emitted[id(live)][1].append(token)
        live.generated += 1
        self._stats.tokens_generated += 1
        if live.generated >= live.request.max_new_tokens:
            live.done = True

    def _drop(self, aborted: set[str]) -> None:
        """Free the slots of finished and aborted rows."""
        for lane in (self._fresh, self._steady):
            for live in lane.rows:
                if live.request.request_id in aborted:
                    live.done = True
            lane.keep([i for i, live in enumerate(lane.rows) if not live.done])

    def _shed_unloadable(self, lane: _Lane, failed: list[_StepOutput]) -> None:
        """Rows whose voice cannot be attached (its files changed or vanished since they
        joined, and it was evicted) fail alone; the rest of the lane goes on."""
        if self._lora is None:
            return
        broken = self._lora.prepare([live.request.adapter for live in lane.rows])
        if not broken:
            return
        for live in lane.rows:
            error = broken.get(live.request.adapter)  # type: ignore[arg-type]
            if error is not None and not live.done:
                live.done = True
                failed.append(_StepOutput(live, [], True, error))
        lane.keep([i for i, live in enumerate(lane.rows) if live.request.adapter not in broken])

    def _adapter_kwargs(self, rows: Sequence[_Live]) -> dict[str, object]:
        """Per-row LoRA selection for a mixed-voice forward pass (attaches missing adapters)."""
        if self._lora is None:
            return {}
        return self._lora.forward_kwargs(self._lora.resolve([r.request.adapter for r in rows]))


def _request_error(exc: BaseException) -> BaseException:
    """What a failed request raises: our own error kinds as they are (an adapter that will
    not load is the voice's fault, not ours), anything else as a generation failure."""
    return exc if isinstance(exc, OrpheusError) else RuntimeError(f"generation failed: {exc}")
