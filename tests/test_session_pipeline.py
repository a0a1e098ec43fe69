"""The session pipeline in-process: real tiny-random engine, real SNAC, real trimmer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np
import pytest

from inference_server.codec.decode_batcher import SnacDecodeBatcher
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.codec.stream_decoder import DecodeWindow
from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus.tokens import SAMPLE_RATE, SAMPLES_PER_FRAME
from inference_server.service.messages import ResponseEncoder
from inference_server.session.events import AudioOut, ProgressOut, SegmentOut
from inference_server.session.options import DEFAULT_SESSION_OPTIONS, SessionOptions
from inference_server.session.synthesis import SynthesisSession, Voice

SILENT_MS = 600
GREEDY_SHORT = SamplingConfig(temperature=0.0, max_tokens=140)


class LeadingSilenceDecoder(SnacDecoder):
    """The real SNAC decode, with the first 600 ms of every chunk scaled to near-silence.

    Random SNAC weights never decode to silence, so this stands in for a stock voice's
    head-of-line silence while every other part of the pipeline stays real.
    """

    def decode_windows(self, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
        out = super().decode_windows(windows)
        silent = SAMPLE_RATE * SILENT_MS // 1000
        for window, samples in zip(windows, out, strict=True):
            start = window.first_frame * SAMPLES_PER_FRAME
            position = start + np.arange(len(samples))
            samples[position < silent] *= 1e-4
        return out


@pytest.fixture(scope="module")
def model_parts() -> tuple:
    return load_causal_lm("tiny-random"), load_tokenizer("tiny-random"), load_snac("random")


async def run_session(
    parts: tuple,
    texts: list[str],
    *,
    trim: bool = True,
    options: SessionOptions | None = None,
    snac_decoder: type[SnacDecoder] = LeadingSilenceDecoder,
    on_event: Callable[[object, TorchEngine], None] = lambda event, engine: None,
    engine_class: type[TorchEngine] = TorchEngine,
    sampling: SamplingConfig = GREEDY_SHORT,
) -> list:
    options = options or SessionOptions(trim_head_silence=trim)
    async with session_on(parts, options, snac_decoder, engine_class, sampling) as (
        session,
        engine,
    ):
        for text in texts:
            session.add_text(text)
        session.end_input()
        events = []
        async for event in session.events():
            on_event(event, engine)
            events.append(event)
        return events


@contextlib.asynccontextmanager
async def session_on(
    parts: tuple,
    options: SessionOptions = DEFAULT_SESSION_OPTIONS,
    snac_decoder: type[SnacDecoder] = SnacDecoder,
    engine_class: type[TorchEngine] = TorchEngine,
    sampling: SamplingConfig = GREEDY_SHORT,
) -> AsyncIterator[tuple[SynthesisSession, TorchEngine]]:
    """A session on its own real engine and decode batcher, both closed on exit."""
    model, tokenizer, snac = parts
    engine = engine_class(model)
    await engine.start()
    decoder = SnacDecodeBatcher(snac_decoder(snac))
    session = SynthesisSession(
        "s",
        Voice("tara"),
        engine=engine,
        tokenizer=tokenizer,
        decoder=decoder,
        sampling=sampling,
        options=options,
    )
    try:
        yield session, engine
    finally:
        await decoder.close()
        await engine.close()


async def test_head_silence_is_trimmed_and_reported(model_parts: tuple) -> None:
    events = await run_session(model_parts, ["Hello there, this is a test."])
    done = [e for e in events if isinstance(e, SegmentOut)]
    assert len(done) == 1
    metrics = done[0].metrics
    assert metrics.head_silence_trimmed_ms == pytest.approx(SILENT_MS, abs=20)
    pcm = np.frombuffer(b"".join(e.pcm for e in events if isinstance(e, AudioOut)), np.int16)
    assert len(pcm) / SAMPLE_RATE * 1000 == pytest.approx(metrics.audio_ms, abs=0.1)
    untrimmed = await run_session(model_parts, ["Hello there, this is a test."], trim=False)
    full_ms = next(e for e in untrimmed if isinstance(e, SegmentOut)).metrics.audio_ms
    assert full_ms - metrics.audio_ms == pytest.approx(metrics.head_silence_trimmed_ms, abs=1)
    # The wire message carries the same figure.
    wire = ResponseEncoder().encode(done[0]).segment_done.metrics
    assert wire.head_silence_trimmed_ms == pytest.approx(metrics.head_silence_trimmed_ms)


async def test_sentences_become_ordered_chunks_with_progress(model_parts: tuple) -> None:
    events = await run_session(model_parts, ["One. ", "Two is here. ", "Three"])
    progress = [e.chars_done for e in events if isinstance(e, ProgressOut)]
    assert progress and progress == sorted(progress)
    assert progress[-1] == len("One. Two is here. Three")
    done = next(e for e in events if isinstance(e, SegmentOut))
    assert done.metrics.text_chunks == len(progress)
    assert done.metrics.tokens_generated > 0 and done.metrics.invalid_tokens_dropped == 0


async def test_next_chunk_starts_generating_before_this_chunk_is_fully_spoken(
    model_parts: tuple,
) -> None:
    sent_at_progress = []

    def note_progress(event: object, engine: TorchEngine) -> None:
        if isinstance(event, ProgressOut):
            stats = engine.stats()  # sent = prefilled + waiting for a prefill
            sent_at_progress.append(stats.prefills + stats.queued_requests)

    await run_session(
        model_parts,
        ["The first sentence is here. The second one follows it. "],
        options=SessionOptions(max_chunk_chars=20, max_audio_ahead_s=0),  # no real-time waits
        snac_decoder=SnacDecoder,
        on_event=note_progress,
    )
    # When chunk k's audio is all out, chunk k+1 has already been sent to the engine
    # (without look-ahead it would be sent only after this progress mark).
    assert len(sent_at_progress) >= 3
    assert sent_at_progress[:-1] == list(range(2, len(sent_at_progress) + 1))


class PromptRecordingEngine(TorchEngine):
    """The real engine, keeping every request's prompt for the test to read."""

    prompts: list[list[int]] = []

    def generate(self, request: GenerationRequest) -> AsyncIterator[list[int]]:
        self.prompts.append(list(request.prompt_ids))
        return super().generate(request)


async def test_unknown_tags_never_reach_the_prompt_and_are_counted(model_parts: tuple) -> None:
    PromptRecordingEngine.prompts = []
    # two chunks: a sentence with a known and an unknown tag, then nothing but bad tags
    text = "Hi <laugh> <whisper> now. <laughs> <<sigh>>"
    events = await run_session(
        model_parts,
        [text],
        options=SessionOptions(max_chunk_chars=30),
        engine_class=PromptRecordingEngine,
    )
    (done,) = [e for e in events if isinstance(e, SegmentOut)]
    assert done.metrics.text_chunks == 2 and done.metrics.tags_removed == 3
    (prompt,) = PromptRecordingEngine.prompts  # the all-tags chunk generated nothing
    spoken = model_parts[1].decode(prompt)
    assert "tara: Hi <laugh> now." in spoken and "whisper" not in spoken
    progress = [e.chars_done for e in events if isinstance(e, ProgressOut)]
    assert progress[-1] == len(text.encode())  # positions still count the client's text


async def test_a_session_is_idle_only_between_turns(model_parts: tuple) -> None:
    """Admission counts the sessions that speak: a new one, and one with text to speak,
    speak; one whose segment is done and that waits for its next text is idle."""
    idle_at: list[tuple[str, bool]] = []
    async with session_on(model_parts) as (session, _):
        assert not session.idle  # just opened: about to speak
        session.add_text("First turn.", "t1")
        session.flush("t1")
        events = session.events()
        async for event in events:
            idle_at.append((type(event).__name__, session.idle))
            if isinstance(event, SegmentOut):
                break
        waiting = asyncio.ensure_future(anext(events))  # the next turn has no text yet
        await asyncio.sleep(0)  # one loop turn: the session reaches its wait for text
        assert session.idle and not waiting.done()
        session.add_text("Second turn.", "t2")
        session.end_input()
        await waiting
        assert not session.idle
        async for _ in events:
            pass
    assert idle_at and not any(idle for _, idle in idle_at)  # never idle while speaking
