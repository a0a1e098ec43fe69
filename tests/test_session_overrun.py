"""Speech that ends where the text ends: overrun budgets, loop cuts and later-chunk gaps.

The session runs in-process on the real tiny-random engine and real SNAC. Greedy decoding
without a repetition penalty makes tiny-random fall into audio-code loops (a real model's
failure, not a scripted one); `LeadingSilenceDecoder` puts 600 ms of near-silence at the
head of every chunk, as stock voices do.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from inference_server.codec.decode_batcher import SnacDecodeBatcher
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.engine.base import SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus import tokens as T
from inference_server.orpheus.speech_length import overrun_limit_s, spoken_seconds
from inference_server.session.events import AudioOut, SegmentOut
from inference_server.session.options import SessionOptions
from inference_server.session.overrun import LoopDetector, chunk_budget
from inference_server.session.synthesis import SynthesisSession, Voice
from tests.test_session_pipeline import SILENT_MS, model_parts, run_session  # noqa: F401

LOOPING = SamplingConfig(temperature=0.0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def never_stopping_parts() -> tuple:
    """tiny-random whose stop token's logit is always 0: greedy decoding picks it only if all
    4,096 codes score below 0, which random weights never do. So it never ends a chunk."""
    model, tokenizer, snac = (
        load_causal_lm("tiny-random"),
        load_tokenizer("tiny-random"),
        load_snac(),
    )
    with torch.no_grad():
        model.get_output_embeddings().weight[T.END_OF_SPEECH] = 0.0
    return model, tokenizer, snac


STORY = (
    "Once upon a time, in a village by the sea, there lived an old fisherman who "
    "talked to his cat every single morning about the weather and the waves."
)
HELLO = "Hello there, this is a test."


def test_the_estimate_follows_language_punctuation_and_tags() -> None:
    hello = spoken_seconds("Hello there", "en")
    assert spoken_seconds("Hello there. Hello there.", "en") > 2 * hello
    assert spoken_seconds("Hello there <laugh>", "en") == pytest.approx(hello + 1.0)
    # one Hangul syllable carries more sound than one Latin letter
    assert spoken_seconds("안녕하세요", "ko") > spoken_seconds("hello", "en")
    assert spoken_seconds("Hello there", "xx") == hello  # unknown: English's rate
    assert overrun_limit_s("Hello there", "en", 0) == float("inf")


def test_the_budget_is_the_overrun_limit_unless_max_tokens_is_lower() -> None:
    budget, capped = chunk_budget(STORY, "en", 2.0, SamplingConfig())
    limit_frames = overrun_limit_s(STORY, "en", 2.0) * 1000 / T.FRAME_MS
    assert budget % T.FRAME_TOKENS == 0 and not capped
    assert budget / T.FRAME_TOKENS == pytest.approx(limit_frames, abs=1)
    assert chunk_budget(STORY, "en", 2.0, SamplingConfig(max_tokens=70)) == (70, True)
    assert chunk_budget(STORY, "en", 0, SamplingConfig(max_tokens=700)) == (700, True)


def test_loops_are_found_and_varied_codes_are_not() -> None:
    rng = np.random.default_rng(0)
    assert not LoopDetector().push(list(rng.integers(0, 4096, (200, 7))))
    cycle = rng.integers(0, 4096, (5, 7))
    looping = np.concatenate([rng.integers(0, 4096, (20, 7)), np.tile(cycle, (12, 1))])
    looping[30::10, 0] += 1  # a real loop is not exact: one coarse code in 10 differs
    detector = LoopDetector()
    found = [detector.push([frame]) for frame in looping]
    assert found.index(True) >= 20 + 32  # judged over a whole window of looping audio


async def speak_together(
    parts: tuple, options: SessionOptions, *sessions: tuple[str, SamplingConfig]
) -> list[list]:
    """Each (text, sampling) as its own session, all in one engine's batches."""
    model, tokenizer, snac = parts
    engine, decoder = TorchEngine(model), SnacDecodeBatcher(SnacDecoder(snac))
    await engine.start()

    async def speak(number: int, text: str, sampling: SamplingConfig) -> list:
        session = SynthesisSession(
            f"s{number}", Voice("tara"), engine=engine, tokenizer=tokenizer,
            decoder=decoder, sampling=sampling, options=options,
        )  # fmt: skip
        session.add_text(text)
        session.end_input()
        return [event async for event in session.events()]

    try:
        return await asyncio.gather(*(speak(i, *s) for i, s in enumerate(sessions)))
    finally:
        await decoder.close()
        await engine.close()


async def test_a_chunk_that_never_stops_is_cut_at_its_limit_and_its_neighbour_is_intact(
    never_stopping_parts: tuple,
) -> None:
    options = SessionOptions(trim_head_silence=False, max_audio_ahead_s=0)
    short = SamplingConfig(temperature=0.0, max_tokens=140)
    endless, plain = await speak_together(
        never_stopping_parts, options, (HELLO, LOOPING), ("Hello there.", short)
    )
    budget, capped = chunk_budget(HELLO, "en", options.overrun_factor, LOOPING)
    assert not capped and budget < LOOPING.max_tokens / 2  # the text's limit, not max_tokens
    cut = next(e for e in endless if isinstance(e, SegmentOut)).metrics
    assert (cut.chunks_overrun, cut.chunks_budget_capped) == (1, 0)
    assert cut.tokens_generated == budget
    assert cut.audio_ms == pytest.approx(budget / T.FRAME_TOKENS * T.FRAME_MS, abs=3 * T.FRAME_MS)
    done = next(e for e in plain if isinstance(e, SegmentOut)).metrics
    pcm = b"".join(e.pcm for e in plain if isinstance(e, AudioOut))
    assert done.audio_ms == pytest.approx(len(pcm) / 2 / T.SAMPLE_RATE * 1000, abs=0.1)
    assert (done.chunks_overrun, done.chunks_budget_capped) == (0, 1)  # its max_tokens=140


async def test_later_chunks_keep_a_natural_gap_not_their_600_ms_of_silence(
    model_parts: tuple,  # noqa: F811
) -> None:
    gap_ms = 150.0
    options = SessionOptions(max_chunk_chars=20, chunk_gap_ms=gap_ms, max_audio_ahead_s=0)
    texts = ["First sentence here.", " Second one follows.", " And a third one."]
    events = await run_session(model_parts, texts, options=options)
    metrics = next(e for e in events if isinstance(e, SegmentOut)).metrics
    assert metrics.text_chunks == 3
    assert metrics.head_silence_trimmed_ms == pytest.approx(SILENT_MS, abs=20)
    assert metrics.gap_silence_trimmed_ms == pytest.approx(2 * (SILENT_MS - gap_ms), abs=40)
    # the pause left at each later chunk's start is the configured gap
    for chunk_start in sorted({e.chunk_start for e in events if isinstance(e, AudioOut)})[1:]:
        pcm = b"".join(
            e.pcm for e in events if isinstance(e, AudioOut) and e.chunk_start == chunk_start
        )
        head = np.abs(np.frombuffer(pcm, np.int16)) > 0.01 * 32767
        assert 1000 * np.argmax(head) / T.SAMPLE_RATE == pytest.approx(gap_ms, abs=15)
