"""One modelled GPU node: batched decode at a step time set by its batch, with a LoRA cache.

Between two events on a node the batch is fixed, so every stream advances at a constant
rate: one token per step (or real time once it is `max_ahead_s` ahead, the product's
pacing, taking part in only that share of the steps). Events are stream starts, first
audio, reaching the pacing limit and completion, so the cost is a few events per stream,
not one per token. The listener's buffer ("lead") drains in real time after first audio;
a stream that ever runs it dry is not viable.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from bench.fleet_sim_gpu import GpuSpec
from inference_server.orpheus.tokens import FRAME_TOKENS, TOKENS_PER_SECOND

FRAME_S = FRAME_TOKENS / TOKENS_PER_SECOND  # 85.3 ms of audio per 7-token frame
INF = math.inf


@dataclass(slots=True)
class Stream:
    """One Synthesize call being served (or waiting for a LoRA slot) on this node."""

    session: int
    voice: int
    arrival: float  # when the client sent the text (TTFA starts here)
    total: float  # tokens to generate here
    prompt: int
    chunk_tokens: int  # long text is generated in chunks; the KV context restarts per chunk
    first_window: int  # tokens before the first audio leaves (first frames + lookahead)
    first_audio_s: float  # audio in the first emitted piece
    start_at: float = INF  # decode begins (after the LoRA load and the prefill)
    tokens: float = 0.0
    lead: float = -INF  # listener's buffered audio (s); -inf before first audio
    first_audio_at: float = INF
    underrun: bool = False
    carried_lead: float = 0.0  # failover: audio the listener still had when the node died
    failed_at: float = -INF
    lora_source: str = ""  # where its adapter came from: gpu / cpu / disk / disk_again
    retries: int = 0  # whole-call retries by the client after every node refused
    frame_wait_s: float = 0.0  # how late each frame is when the batch is below real time

    @property
    def context(self) -> float:
        return self.prompt + self.tokens % self.chunk_tokens

    @property
    def playing(self) -> bool:
        return self.lead > -INF

    def starving_ms(self) -> float:
        """What `Listener.starving_ms` (audio/listener.py) would read: the wait for the next
        frame when the buffer is empty (0 while audio is buffered)."""
        return 0.0 if self.lead > 0 else 1000.0 * self.frame_wait_s


@dataclass
class LoraCache:
    """vLLM's two tiers: `gpu_slots` adapters in the batch's slots, an LRU in host memory."""

    gpu_slots: int
    cpu_slots: int
    resident: OrderedDict[int, int] = field(default_factory=OrderedDict)  # voice -> streams
    cpu: OrderedDict[int, None] = field(default_factory=OrderedDict)
    ever_loaded: set[int] = field(default_factory=set)  # to tell a first load from a reload

    def acquire(self, voice: int) -> str | None:
        """'gpu' / 'cpu' / 'disk' (first time here) / 'disk_again' = where the adapter came
        from; None = no free slot."""
        if voice in self.resident:
            self.resident[voice] += 1
            self.resident.move_to_end(voice)
            return "gpu"
        if len(self.resident) >= self.gpu_slots:
            idle = next((v for v, n in self.resident.items() if n == 0), None)
            if idle is None:
                return None
            del self.resident[idle]
        self.resident[voice] = 1
        if voice in self.cpu:
            self.cpu.move_to_end(voice)
            return "cpu"
        self.cpu[voice] = None
        if len(self.cpu) > self.cpu_slots:
            self.cpu.popitem(last=False)
        if voice in self.ever_loaded:
            return "disk_again"  # evicted from host memory since
        self.ever_loaded.add(voice)
        return "disk"

    def release(self, voice: int) -> None:
        self.resident[voice] -= 1


class Node:
    """A GPU node: admitted streams, their progress, and when its next event is due."""

    def __init__(
        self,
        node_id: str,
        gpu: GpuSpec,
        lora: LoraCache,
        max_ahead_s: float,
    ) -> None:
        self.node_id = node_id
        self.gpu = gpu
        self.lora = lora
        self.max_ahead_s = max_ahead_s
        self.streams: list[Stream] = []  # admitted and decoding or about to
        self.waiting: deque[Stream] = deque()  # admitted, waiting for a LoRA slot
        self.last = 0.0
        self.step = gpu.fixed_s
        self.alive = True
        self.version = 0  # bumps on every change: stale heap entries are skipped
        self.busy_stream_s = 0.0  # integral of admitted streams over time

    @property
    def admitted(self) -> int:
        return len(self.streams) + len(self.waiting)

    def clocks(self) -> list[Stream]:
        """The admitted streams' playback state, as `AdmissionPolicy.check` reads it."""
        return [*self.streams, *self.waiting]

    # -- time -------------------------------------------------------------------------------

    def advance(self, now: float) -> list[Stream]:
        """Move every stream to `now`; return the streams that reached first audio."""
        self.busy_stream_s += max(0.0, now - self.last) * self.admitted
        firsts: list[Stream] = []
        rate = 1.0 / self.step  # tokens/s for a stream in every step
        for s in self.streams:
            begin = max(self.last, s.start_at)
            if begin > now:
                continue
            if s.lead == -INF:
                self._before_first_audio(s, begin, now, rate, firsts)
            elif begin < now:
                self._playing(s, now - begin, rate)
        self.last = max(self.last, now)
        return firsts

    def _before_first_audio(
        self, s: Stream, begin: float, now: float, rate: float, firsts: list[Stream]
    ) -> None:
        s.tokens += (now - begin) * rate
        if s.tokens + 1e-6 < min(s.first_window, s.total):
            return
        s.first_audio_at = now
        lead = s.first_audio_s
        if s.failed_at > -INF:  # the listener kept playing what it had while we re-routed
            left = s.carried_lead - (now - s.failed_at)
            s.underrun = s.underrun or left < 0
            lead += max(0.0, left)
        s.lead = lead + (s.tokens - s.first_window) / TOKENS_PER_SECOND
        firsts.append(s)

    def _playing(self, s: Stream, dt: float, rate: float) -> None:
        audio_rate = rate / TOKENS_PER_SECOND  # audio seconds made per second
        if s.lead >= self.max_ahead_s - 1e-9 and audio_rate >= 1.0:
            s.tokens += dt * TOKENS_PER_SECOND  # paced: real time
            return
        gain = audio_rate - 1.0
        to_cap = (self.max_ahead_s - s.lead) / gain if gain > 0 else INF
        if dt <= to_cap:
            s.tokens += dt * rate
            s.lead += dt * gain
        else:
            s.tokens += to_cap * rate + (dt - to_cap) * TOKENS_PER_SECOND
            s.lead = self.max_ahead_s
        if s.lead < 0:
            s.underrun = True
            s.lead = 0.0  # the listener stalls and resumes with the next audio

    # -- batch ------------------------------------------------------------------------------

    def recompute(self, now: float) -> float:
        """Step time for the batch as it is now; returns the node's next event time."""
        active = [s for s in self.streams if s.start_at <= now + 1e-12]
        free_ctx = paced_ctx = free_n = paced_n = 0.0
        for s in active:
            if s.lead >= self.max_ahead_s - 1e-9:
                paced_ctx += s.context
                paced_n += 1
            else:
                free_ctx += s.context
                free_n += 1
        loras = len({s.voice for s in active})
        g = self.gpu
        per_byte = 1.0 / g.bandwidth
        base = g.fixed_s + (g.weights + g.kv_per_token * free_ctx + g.lora * loras) * per_byte
        # a paced stream joins a share 82.03 * step of the steps (all of them if that is >= 1)
        share = TOKENS_PER_SECOND * g.kv_per_token * paced_ctx * per_byte
        step = base / (1.0 - share) if share < 1.0 else INF
        if not active:
            step = g.fixed_s
        elif step * TOKENS_PER_SECOND >= 1.0 or paced_n == 0:
            step = base + g.kv_per_token * paced_ctx * per_byte
        self.step = step
        for s in self.streams:
            s.frame_wait_s = max(0.0, FRAME_TOKENS * step - FRAME_S)
        return self._next_event(now)

    def _next_event(self, now: float) -> float:
        rate = 1.0 / self.step
        gain = rate / TOKENS_PER_SECOND - 1.0
        due = INF
        for s in self.streams:
            if s.start_at > now:
                due = min(due, s.start_at)
                continue
            if s.lead == -INF:
                need = min(s.first_window, s.total) - s.tokens
                due = min(due, now + max(0.0, need) / rate)
                continue
            paced = s.lead >= self.max_ahead_s - 1e-9 and gain >= 0
            speed = TOKENS_PER_SECOND if paced else rate
            due = min(due, now + max(0.0, s.total - s.tokens) / speed)
            if not paced and gain > 0:
                due = min(due, now + (self.max_ahead_s - s.lead) / gain)
        return due

    def finished(self, now: float) -> list[Stream]:
        """Streams that generated all their tokens: they leave the batch."""
        done = [s for s in self.streams if s.lead > -INF and s.tokens >= s.total - 1e-6]
        if done:
            self.streams = [s for s in self.streams if s not in done]
        return done
