"""Pacing and the stalled-reader watch, on a clock the test moves by hand.

Time only passes when the code under test sleeps on the test clock, so every decision
(wait or not, stalled or not) is deterministic; the session test runs the real
tiny-random engine and the real SNAC decoder.
"""

from __future__ import annotations

import asyncio

import pytest

from inference_server.audio.listener import Clock, Listener
from inference_server.codec.decode_batcher import SnacDecodeBatcher
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.engine.base import SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.service.read_stall import ReadStall
from inference_server.session.events import AudioOut, SegmentOut
from inference_server.session.options import SessionOptions
from inference_server.session.pacing import Pacer
from inference_server.session.synthesis import SynthesisSession, Voice


class HandClock:
    """Frozen until a sleep on it: the sleep moves time by exactly what was asked."""

    def __init__(self, log: list | None = None) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []
        self._log = log if log is not None else []
        self.clock = Clock(now=lambda: self.t, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._log.append(("sleep", seconds))
        self.t += seconds
        await asyncio.sleep(0)


def test_the_pacer_never_holds_back_a_first_audio_and_waits_off_the_excess() -> None:
    hand = HandClock()
    listener = Listener(hand.clock)
    pacer = Pacer(listener, max_ahead_s=2.0)
    assert pacer.wait_s() == 0.0  # nothing sent yet: the first audio is urgent
    listener.sent(5000.0)
    assert pacer.wait_s() == pytest.approx(3.0)
    hand.t += 1.0  # the listener played one second
    assert pacer.wait_s() == pytest.approx(2.0)
    asyncio.run(pacer.pace())
    assert listener.buffer_ms() == pytest.approx(2000.0) and pacer.waited_s == pytest.approx(2.0)


def test_max_ahead_zero_is_no_pacing() -> None:
    listener = Listener(HandClock().clock)
    listener.sent(60_000.0)
    assert Pacer(listener, max_ahead_s=0.0).wait_s() == 0.0


async def test_a_write_pending_past_the_limit_is_a_stall_and_idle_time_is_not() -> None:
    hand = HandClock()
    stall = ReadStall(limit_s=30.0, clock=hand.clock)
    watch = asyncio.create_task(stall.watch())
    hand.t += 3600.0  # an hour without a write in progress: waiting for text, not a stall
    await asyncio.sleep(0)
    assert not watch.done()
    with stall.writing():
        hand.t += 29.0  # this write completes in time
    with stall.writing():
        error = await watch  # the watch sleeps the whole limit on this one
    assert hand.sleeps == [30.0]
    assert stall.error is error and "--max-stalled-read" in str(error)


@pytest.fixture(scope="module")
def model_parts() -> tuple:
    return load_causal_lm("tiny-random"), load_tokenizer("tiny-random"), load_snac("random")


async def speak(parts: tuple, max_ahead_s: float) -> tuple[SynthesisSession, list]:
    """Two segments through a real session on a hand clock. Returns the session and a log,
    in order, of each event with the listener's buffer just before it, and of each sleep."""
    model, tokenizer, snac = parts
    log: list = []
    hand = HandClock(log)
    # Time moves only when the session sleeps on the hand clock, while the engine's own
    # pacing waits on real time: this checks the session's side of the rule (the one every
    # engine gets) with an engine that does not hold; tests/test_engine_pacing.py the other.
    engine = TorchEngine(model, paced=False)
    await engine.start()
    decoder = SnacDecodeBatcher(SnacDecoder(snac))
    session = SynthesisSession(
        "paced",
        Voice("tara"),
        engine=engine,
        tokenizer=tokenizer,
        decoder=decoder,
        sampling=SamplingConfig(temperature=0.0, max_tokens=280),  # 3.4 s per chunk
        options=SessionOptions(max_audio_ahead_s=max_ahead_s, trim_head_silence=False),
        clock=hand.clock,
    )
    session.add_text("One two three four five six seven eight nine.", "a")
    session.flush("a")
    session.add_text("Ten eleven twelve.", "b")
    session.end_input()
    try:
        async for event in session.events():
            ms = 1000 * len(event.pcm) / 2 / 24000 if isinstance(event, AudioOut) else 0.0
            log.append((event, session.listener.buffer_ms() - ms))
    finally:
        await decoder.close()
        await engine.close()
    return session, log


def first_audio(log: list) -> dict[str, int]:
    """Segment id -> index in `log` of its first audio."""
    firsts: dict[str, int] = {}
    for i, (event, _) in enumerate(log):
        if isinstance(event, AudioOut):
            firsts.setdefault(event.segment_id, i)
    return firsts


async def test_generation_stays_within_max_ahead_and_first_audio_never_waits(
    model_parts: tuple,
) -> None:
    session, log = await speak(model_parts, 1.0)
    sleeps = [s for kind, s in log if kind == "sleep"]
    assert sleeps and session.pacer.waited_s == pytest.approx(sum(sleeps))
    firsts = first_audio(log)
    for i, (event, slack) in enumerate(log):
        if isinstance(event, AudioOut) and i not in firsts.values():
            assert slack < 1001.0  # sent only once the listener was within 1 s (+1 ms)
    assert all(kind != "sleep" for kind, _ in log[: firsts["a"]])  # TTFA as before
    # Segment b's first audio goes out while the listener holds more than 1 s: no wait.
    assert log[firsts["b"]][1] > 1001.0
    done_a = next(i for i, (e, _) in enumerate(log) if isinstance(e, SegmentOut))
    assert all(kind != "sleep" for kind, _ in log[done_a : firsts["b"]])


async def test_pacing_changes_when_audio_is_made_not_what_is_made(model_parts: tuple) -> None:
    _, paced = await speak(model_parts, 1.0)
    _, free = await speak(model_parts, 0.0)

    def samples(log: list) -> dict[str, int]:
        out: dict[str, int] = {}
        for event, _ in log:
            if isinstance(event, AudioOut):
                out[event.segment_id] = out.get(event.segment_id, 0) + len(event.pcm) // 2
        return out

    assert samples(paced) == samples(free)
    assert not [s for kind, s in free if kind == "sleep"]


def test_audio_made_but_not_sent_counts_as_ahead_and_nothing_is_ahead_before_first_audio() -> None:
    hand = HandClock()
    listener = Listener(hand.clock)
    pacer = Pacer(listener, max_ahead_s=2.0)
    assert pacer.wait_s(unsent_ms=9000.0) == 0.0  # before the first audio: never a hold
    listener.sent(1500.0)
    assert pacer.wait_s() == 0.0
    assert pacer.wait_s(unsent_ms=1000.0) == pytest.approx(0.5)  # 1.5 s + 1 s made
    hand.t += 0.5
    assert pacer.wait_s(unsent_ms=1000.0) == 0.0
