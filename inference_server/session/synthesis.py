"""One synthesis session: segments of streamed text in, PCM out, in order.

Input arrives through `add_text` / `flush` / `end_input` while `events()` speaks:
each segment's ready sentence groups are generated one after the other on the
engine (the next one is sent as soon as the previous one's tokens are in), decoded
while they generate, head silence trimmed, and emitted as audio.
Once a segment's first audio is out, its audio keeps at most `max_audio_ahead_s` ahead
of the listener (pacing.Pacer): the engine holds its generation (counting audio made but
not yet sent) and the session holds its audio, so a client that stops reading costs no
more. The session's one `Listener` (audio/listener.py) is what pacing, the stream decoders
of all its chunks, the decode batcher and the node's admission read.
Closing `events()` (client cancel or disconnect) aborts the live engine request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

import numpy as np

from ..audio.head_silence import HeadSilenceTrimmer
from ..audio.listener import REAL_CLOCK, Clock, Listener
from ..audio.pcm import float_to_pcm16
from ..codec.decode_batcher import SnacDecodeBatcher
from ..codec.stream_decoder import DecodeWindow, SnacStreamDecoder
from ..engine.base import Engine, GenerationRequest, SamplingConfig
from ..errors import ClientError
from ..orpheus import tokens as T
from ..orpheus.codes import FrameAssembler, frames_to_token_ids
from ..orpheus.prompt import ContinuityContext, TextTokenizer, build_prompt
from ..orpheus.tags import ORPHEUS_TAGS, filter_tags
from .events import AudioOut, ProgressOut, SegmentMetrics, SegmentOut, SessionEvent
from .options import DEFAULT_SESSION_OPTIONS, SessionOptions
from .overrun import ChunkEnd, LoopDetector, chunk_budget
from .pacing import Pacer
from .resume import FrameLedger, ResumePoint, chunk_sampling, no_frames
from .segment_text import SegmentText, TextSpan

POLL_S = 0.05  # release held decode windows this often while the engine is quiet


# Engine request ids are unique per process, not per session: a session id reused right
# after its previous session was aborted must not collide with that request's pending abort.
_REQUEST_NUMBERS = itertools.count()


class SessionInputError(ClientError):
    """The client broke the session protocol (bad segment ids, text after end...)."""


@dataclass(frozen=True, slots=True)
class Voice:
    name: str
    adapter: str | None = None  # LoRA voice name; None = base voice


class SynthesisSession:
    def __init__(
        self,
        session_id: str,
        voice: Voice,
        *,
        engine: Engine,
        tokenizer: TextTokenizer,
        decoder: SnacDecodeBatcher,
        sampling: SamplingConfig,
        options: SessionOptions = DEFAULT_SESSION_OPTIONS,
        clock: Clock = REAL_CLOCK,
        emotion_tags: Collection[str] = ORPHEUS_TAGS,
    ) -> None:
        """`emotion_tags`: the tags the model performs; any other `<tag>` is removed unspoken."""
        self.session_id = session_id
        self.voice = voice
        self._engine = engine
        self._tokenizer = tokenizer
        self._decoder = decoder
        self._sampling = sampling
        self._options = options
        self._emotion_tags = frozenset(emotion_tags)
        self._segments: deque[SegmentText] = deque()
        self._open: SegmentText | None = None
        self._silent_tail: SegmentText | None = None
        self._segment_numbers = itertools.count()
        self._ended = False
        self._chars = 0
        self._changed = asyncio.Event()
        self._heard = no_frames()  # frames of the resumed chunk the listener already heard
        self.idle = False  # between turns: spoke, and waits for the next segment's text
        self.listener = Listener(clock)
        self.pacer = Pacer(self.listener, options.max_audio_ahead_s)

    @property
    def seed(self) -> int | None:
        return self._sampling.seed

    # ---- input ----------------------------------------------------------------------

    def add_text(self, text: str, segment_id: str = "") -> None:
        self._check_open_input()
        self._chars += len(text)
        if self._chars > self._options.max_session_chars:
            raise SessionInputError(
                f"session text exceeds max_session_chars={self._options.max_session_chars}"
            )
        self._segment_for(segment_id).append(text)
        self._changed.set()

    def flush(self, segment_id: str = "") -> None:
        self._check_open_input()
        self._segment_for(segment_id).close()
        self._open = None
        self._changed.set()

    def end_input(self) -> None:
        if self._open is not None and self._open.text.strip():
            self._open.close()
        elif self._open is not None:
            # An empty trailing segment was never flushed: it ends without a SegmentDone.
            # Closed rather than removed: the speaker may already be waiting on it.
            self._open.close()
            self._silent_tail = self._open
        self._open = None
        self._ended = True
        self._changed.set()

    def resume(self, point: ResumePoint) -> None:
        """Failover: the client resends the segment from byte `point.chars_done` on; the chunk
        in flight (same cut) continues after the frames the listener heard (session/resume)."""
        if self._segments:
            raise SessionInputError("resume must come before any text")
        self._open = SegmentText(
            point.segment_id,
            max_chars=self._options.max_chunk_chars,
            offset=point.chars_done,
            first_end=point.chunk_end,
        )
        self._segments.append(self._open)
        self._heard = point.heard_frames

    def _check_open_input(self) -> None:
        if self._ended:
            raise SessionInputError("input already ended (EndInput was sent)")

    def _segment_for(self, segment_id: str) -> SegmentText:
        if self._open is None:
            seg_id = segment_id or f"seg-{next(self._segment_numbers)}"
            self._open = SegmentText(seg_id, max_chars=self._options.max_chunk_chars)
            self._segments.append(self._open)
        elif segment_id and segment_id != self._open.segment_id:
            raise SessionInputError(
                f"segment {self._open.segment_id!r} is still open; "
                f"flush it before sending text for {segment_id!r}"
            )
        return self._open

    # ---- output ---------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Speak every segment in order; ends after `end_input` once all are spoken."""
        while (segment := await self._next_segment()) is not None:
            async for event in self._speak_segment(segment):
                yield event
            self._segments.popleft()
            self.idle = True  # until the next segment's turn

    async def _next_segment(self) -> SegmentText | None:
        while not self._segments:
            if self._ended:
                return None
            await self._wait_for_input()
        self.idle = False
        return self._segments[0]

    async def _wait_for_input(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _speak_segment(self, segment: SegmentText) -> AsyncIterator[SessionEvent]:
        metrics = SegmentMetrics()
        # resumed mid-segment or after heard audio: the failed node trimmed this segment's head
        head = not (segment.offset or len(self._heard))
        context: ContinuityContext | None = None
        ready_at: float | None = None
        ahead: tuple[TextSpan, _ChunkRun] | None = None  # next chunk, already generating
        try:
            while ahead is not None or not segment.exhausted:
                if ahead is not None:
                    (span, chunk), ahead = ahead, None
                elif (span := segment.next_chunk()) is None:
                    await self._wait_for_input()
                    continue
                else:
                    chunk = self._start_chunk(segment.segment_id, span, context)
                ready_at = ready_at or time.perf_counter()
                first_chunk = head and not metrics.text_chunks
                trimmer = self._trimmer(chunk, first_chunk)
                metrics.text_chunks += 1

                def look_ahead(span: TextSpan = span, chunk: _ChunkRun = chunk) -> None:
                    nonlocal ahead
                    if (following := segment.next_chunk()) is not None:
                        context = self._context(chunk)
                        ahead = following, self._start_chunk(segment.segment_id, following, context)

                async for samples, frames in self._speak_chunk(chunk, look_ahead):
                    chunk.ledger.decoded(frames)  # heard once audio after them goes out
                    chunk.frames_out += len(frames)
                    if trimmer is not None:
                        samples = trimmer.push(samples)
                    if len(samples):
                        if metrics.audio_ms:  # a segment's first audio never waits: TTFA as before
                            await self.pacer.pace()
                        yield self._audio(
                            segment.segment_id, samples, metrics, ready_at, span, chunk.ledger
                        )
                metrics.tokens_generated += chunk.tokens
                metrics.invalid_tokens_dropped += chunk.assembler.tokens_dropped
                metrics.generation_s += chunk.generation_s
                metrics.tags_removed += chunk.tags_removed
                metrics.count_end(chunk.end)
                metrics.add_trimmed(trimmer, first_chunk=first_chunk)
                context = self._context(chunk)
                yield ProgressOut(segment.segment_id, span.end)
        finally:
            if ahead is not None:
                await ahead[1].generation.close()
        if segment is not self._silent_tail:
            yield SegmentOut(segment.segment_id, metrics)

    def _trimmer(self, chunk: _ChunkRun, first_chunk: bool) -> HeadSilenceTrimmer | None:
        """A segment's head silence is cut; a later chunk's down to a natural pause. A chunk
        resumed after heard frames continues their audio: it has no head of its own."""
        if not self._options.trim_head_silence or len(chunk.heard):
            return None
        if first_chunk:
            return HeadSilenceTrimmer(threshold_dbfs=self._options.silence_threshold_dbfs)
        return HeadSilenceTrimmer(
            threshold_dbfs=self._options.silence_threshold_dbfs,
            pre_roll_ms=self._options.chunk_gap_ms,
        )

    def _audio(
        self,
        segment_id: str,
        samples: np.ndarray,
        metrics: SegmentMetrics,
        ready_at: float,
        span: TextSpan,
        ledger: FrameLedger,
    ) -> AudioOut:
        """Account for audio about to go out: segment metrics and the listener."""
        if not metrics.audio_ms:
            metrics.ttfa_ms = 1000.0 * (time.perf_counter() - ready_at)
        audio_ms = 1000.0 * len(samples) / T.SAMPLE_RATE
        metrics.audio_ms += audio_ms
        self.listener.sent(audio_ms)
        first, frames = ledger.take()
        codes = tuple(frames.ravel().tolist())
        return AudioOut(segment_id, float_to_pcm16(samples), span.start, span.end, codes, first)

    def _start_chunk(
        self, segment_id: str, span: TextSpan, context: ContinuityContext | None
    ) -> _ChunkRun:
        """Send the chunk's engine request now; its tokens are read when its turn comes.
        Tags the model does not perform are removed from the text first (orpheus/tags.py);
        span positions still count the client's text."""
        text, tags_removed = filter_tags(span.text, self._emotion_tags)
        heard, self._heard = self._heard, no_frames()  # only a resumed chunk has heard frames
        # Heard frames follow the prompt as output already generated. They are whole frames,
        # so the engine's audio step k (counted from 0) keeps k mod 7 right; at k = 0 the
        # stop is not legal yet, so a resumed chunk adds at least one frame.
        heard_ids = frames_to_token_ids(heard)
        options = self._options
        budget, capped = chunk_budget(
            text, options.language, options.overrun_factor, self._sampling
        )
        if (tags_removed and not any(c.isalnum() for c in text)) or (
            len(heard) and len(heard_ids) >= budget
        ):
            # nothing left once tags are removed, or all of it was heard: only its mark is left
            return _ChunkRun(text, heard, tags_removed, _Generation(_no_tokens()))
        max_new_tokens = max(T.FRAME_TOKENS, budget - len(heard_ids))
        chunk = _ChunkRun(text, heard, tags_removed)

        def hold_s(generated: int) -> float:  # on the engine's thread: reads, never writes
            unsent_frames = generated // T.FRAME_TOKENS - chunk.frames_out
            return self.pacer.wait_s(unsent_frames * T.FRAME_MS)

        request = GenerationRequest(
            request_id=f"{self.session_id}/{next(_REQUEST_NUMBERS)}",
            prompt_ids=build_prompt(self._tokenizer, self.voice.name, text, context) + heard_ids,
            sampling=chunk_sampling(self._sampling, segment_id, span.start, len(heard)),
            max_new_tokens=max_new_tokens,
            adapter=self.voice.adapter,
            session_id=self.session_id,
            hold_s=hold_s,
        )
        chunk.generation = _Generation(self._engine.generate(request))
        chunk.budget = (max_new_tokens, ChunkEnd.MAX_TOKENS if capped else ChunkEnd.LENGTH)
        return chunk

    async def _speak_chunk(
        self, chunk: _ChunkRun, look_ahead: Callable[[], None]
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """Decode the chunk's tokens as they come; `look_ahead()` once they have all come.
        Yields each window's audio with the frames it completes (`DecodeWindow.emitted`).

        The next chunk's request (whose prompt needs this chunk's last frames) then starts
        while this chunk's last windows decode, so its prefill and first frames overlap
        audio the listener already has.
        """
        decoder = SnacStreamDecoder(
            first_emit_frames=self._options.first_chunk_frames,
            listener=self.listener,
            incremental=self._decoder.incremental,
        )
        decoder.prime(chunk.heard)  # the new audio continues the heard frames' audio
        generation = chunk.generation
        race = contextlib.ExitStack()  # open from the request to the session's first audio
        if not self.listener.playing:
            race.enter_context(self._decoder.first_audio_race())
        try:
            while True:
                token_ids = await generation.next(POLL_S)
                if token_ids is _STALLED:
                    windows = decoder.poll()  # the engine is slow: release held frames
                elif token_ids is None:
                    break
                else:
                    chunk.tokens += len(token_ids)
                    frames = chunk.assembler.push(token_ids)
                    chunk.frames.extend(frames)
                    decoder.decode_ms_per_frame = self._decoder.ms_per_frame
                    windows = decoder.push(frames) if frames else []
                    if chunk.loops.push(frames):
                        chunk.end = ChunkEnd.LOOP  # its windows go out, then it is closed
                # One window at a time per stream: frames that arrive meanwhile join the
                # next window, which is what keeps the decode overhead per frame low.
                for window in windows:
                    pcm = await self._decode(window)
                    race.close()
                    yield pcm, window.emitted
                if chunk.end is ChunkEnd.LOOP:
                    break
        finally:
            race.close()
            await generation.close()  # aborts the engine request if it is still live
        chunk.generation_s = time.perf_counter() - generation.started
        chunk.assembler.finish()
        chunk.judge_end()
        look_ahead()
        for window in decoder.finish():
            yield await self._decode(window), window.emitted

    async def _decode(self, window: DecodeWindow) -> np.ndarray:
        return await self._decoder.decode(window, self.listener)

    def _context(self, chunk: _ChunkRun) -> ContinuityContext | None:
        keep = self._options.continuity_frames
        if not keep or not chunk.frames:
            return None
        return ContinuityContext(chunk.text, frames_to_token_ids(np.stack(chunk.frames[-keep:])))


class _ChunkRun:
    """Bookkeeping of one generation chunk."""

    generation: _Generation

    def __init__(
        self,
        text: str,
        heard: np.ndarray,
        tags_removed: int = 0,
        generation: _Generation | None = None,  # set once its request is sent
    ) -> None:
        self.text = text  # as the model reads it: unknown tags removed
        self.tags_removed = tags_removed
        if generation is not None:
            self.generation = generation
        self.tokens = 0
        self.frames_out = 0  # of the frames it generated, those whose audio is decoded
        self.generation_s = 0.0
        self.assembler = FrameAssembler()
        self.heard = heard  # frames the listener heard before a failover (a resumed chunk)
        self.frames: list[np.ndarray] = list(heard)  # all of them, for the continuity context
        self.ledger = FrameLedger(len(heard))
        self.loops = LoopDetector()
        self.budget: tuple[int, ChunkEnd] | None = None  # (max new tokens, what set it)
        self.end = ChunkEnd.SPOKEN

    def judge_end(self) -> None:
        """A generation that used its whole budget was stopped by it, not by the model."""
        if self.end is ChunkEnd.SPOKEN and self.budget and self.tokens >= self.budget[0]:
            self.end = self.budget[1]


_STALLED: list[int] = []  # sentinel: no tokens within the poll interval


async def _no_tokens() -> AsyncIterator[list[int]]:
    """A generation with nothing left to generate."""
    return
    yield


class _Generation:
    """One engine request, started on creation and read in order."""

    def __init__(self, tokens: AsyncIterator[list[int]]) -> None:
        self.started = time.perf_counter()
        self._tokens = tokens
        self._pending: asyncio.Future[list[int] | None] | None = self._read()

    def _read(self) -> asyncio.Future[list[int] | None]:
        return asyncio.ensure_future(anext(self._tokens, None))

    async def next(self, timeout: float) -> list[int] | None:
        """New tokens; None at the end; `_STALLED` if none came within `timeout` seconds."""
        self._pending = self._pending or self._read()
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return _STALLED
        tokens, self._pending = self._pending.result(), None
        return tokens

    async def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await self._tokens.aclose()
