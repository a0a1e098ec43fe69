"""Aligned transcripts against a real tiny-random node: each chunk's words arrive with the
audio frame where that chunk's audio begins, timed by the stream's audio position."""

from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, ModelSettings, tts
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    USERDATA_TIMED_TRANSCRIPT,
    TimedString,
)
from livekit.agents.utils import aio
from livekit.plugins import orpheus
from livekit.plugins.orpheus.transcript import SpeakingRate, TranscriptAligner, split_words
from plugin_support import ScriptedLLM as ScriptedTextSource
from support_server import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripted_models import ScriptedLLM

from agent.turn_audio import TurnAudioSink

MAX_TOKENS = 140  # 20 SNAC frames per chunk: tiny-random never stops, so ~1.7 s each
SNAC_FRAME_S = 2048 / 24000  # 85 ms: the acceptance tolerance
# short sentences and --max-chunk-chars 40: the server cuts several text chunks per segment
SENTENCES = ["Hello there, my friend.", "How are you doing today?", "The garden looks great."]
TEXT = " ".join(SENTENCES)


@pytest.fixture(scope="module")
def chunking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    server = ServerProcess(log, extra_args=("--max-chunk-chars", "40")).start()
    yield server
    server.stop()


@dataclass
class Batch:
    """Transcripts LiveKit attached to one frame, and where that frame sits in the audio."""

    words: list[TimedString]
    frame_start_s: float
    frame_end_s: float


def batches(frames: list[rtc.AudioFrame]) -> list[Batch]:
    out, position = [], 0.0
    for frame in frames:
        if words := frame.userdata.get(USERDATA_TIMED_TRANSCRIPT):
            out.append(Batch(list(words), position, position + frame.duration))
        position += frame.duration
    return out


def assert_aligned(found: list[Batch], text: str, audio_s: float) -> None:
    words = [w for b in found for w in b.words]
    assert "".join(words) == text  # every word once, in order
    assert words[0].start_time == 0.0
    # chunk starts are exact and in order; word times inside a chunk are in order (estimated,
    # so a chunk's last words may run past the next chunk's real start)
    firsts = [b.words[0].start_time for b in found]
    assert firsts == sorted(firsts)
    for b in found:
        assert [w.start_time for w in b.words] == sorted(w.start_time for w in b.words)
    assert all(w.start_time <= w.end_time <= audio_s + SNAC_FRAME_S for w in words)
    for b in found:
        # a batch is one chunk's words, pushed just before the chunk's first audio: LiveKit
        # attaches it to the frame holding that audio, so its first word starts in that frame
        start = b.words[0].start_time
        assert b.frame_start_s - SNAC_FRAME_S <= start <= b.frame_end_s + SNAC_FRAME_S, (
            start,
            b.frame_start_s,
            b.frame_end_s,
        )


def report(t: orpheus.TTS, label: str) -> None:
    errors = list(t.speaking_rate().errors)
    if errors:  # tiny-random's chunk durations do not follow the text: see the README
        print(
            f"\n{label}: {len(errors)} chunks, estimate - real duration: "
            f"median {statistics.median(errors):+.3f} s, max |e| {max(map(abs, errors)):.3f} s"
        )


async def test_synthesize_aligned(chunking_server) -> None:
    async with orpheus.TTS(base_url=chunking_server.address, max_tokens=MAX_TOKENS) as t:
        assert t.capabilities.aligned_transcript
        frames = [ev.frame async for ev in t.synthesize(TEXT)]
        report(t, "synthesize")
    found = batches(frames)
    assert len(found) >= 2, "expected several text chunks"
    assert_aligned(found, TEXT, sum(f.duration for f in frames))


async def test_stream_aligned(chunking_server) -> None:
    # (livekit-agents 1.8.9 drops text pushed after a flush: a stream is one segment)
    async with orpheus.TTS(
        base_url=chunking_server.address, max_tokens=MAX_TOKENS, min_sentences=1
    ) as t:
        stream = t.stream()
        await ScriptedTextSource(tokens_per_second=400).run(stream.push_text, TEXT)
        stream.end_input()
        events = [ev async for ev in stream]
        await stream.aclose()
        report(t, "stream")
    assert len({ev.segment_id for ev in events}) == 1
    found = batches([ev.frame for ev in events])
    assert len(found) >= 2, "expected several text chunks"
    assert_aligned(found, TEXT, sum(ev.frame.duration for ev in events))


async def test_failover_resume_pushes_each_word_once(
    server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livekit.plugins.orpheus")
    primary, backup = server_factory(), server_factory()
    address = f"{primary.address},{backup.address}"
    async with orpheus.TTS(base_url=address, max_tokens=MAX_TOKENS) as t:
        stream = t.stream()
        stream.push_text(TEXT)  # one chunk (default --max-chunk-chars): the backup continues it
        stream.end_input()
        events: list[tts.SynthesizedAudio] = []
        async for ev in stream:
            events.append(ev)
            if len(events) == 1:
                primary.kill()
        await stream.aclose()
    assert_aligned(
        batches([ev.frame for ev in events]), TEXT, sum(e.frame.duration for e in events)
    )


class TranscriptAgent(Agent):
    """The default nodes, recording what passes: audio frames and the published transcript."""

    def __init__(self) -> None:
        super().__init__(instructions="Talk.")
        self.frames: list[rtc.AudioFrame] = []
        self.published: list[str] = []

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterable[rtc.AudioFrame]:
        async for frame in Agent.default.tts_node(self, text, model_settings):
            self.frames.append(frame)
            yield frame

    async def transcription_node(
        self, text: AsyncIterable[str | TimedString], model_settings: ModelSettings
    ) -> AsyncIterable[str | TimedString]:
        async for delta in text:
            self.published.append(delta)
            yield delta


async def test_agent_session_publishes_aligned_transcript(chunking_server) -> None:
    agent = TranscriptAgent()
    session = AgentSession(
        llm=ScriptedLLM([TEXT], tokens_per_second=400.0, ttft=0.0),
        tts=orpheus.TTS(base_url=chunking_server.address, max_tokens=MAX_TOKENS),
        use_tts_aligned_transcript=True,
    )
    session.output.audio = TurnAudioSink(realtime=False)
    await session.start(agent=agent)
    try:
        await session.generate_reply(user_input="Hi")
    finally:
        await session.aclose()
    # what LiveKit published is our timed words, each with its stream audio position
    assert all(isinstance(d, TimedString) for d in agent.published)
    assert "".join(agent.published) == TEXT
    found = batches(agent.frames)
    assert [w for b in found for w in b.words] == agent.published
    assert [w.start_time for w in agent.published] == [w.start_time for b in found for w in b.words]
    assert_aligned(found, TEXT, sum(f.duration for f in agent.frames))


async def test_each_sentence_starts_at_the_audio_position_of_its_first_audio(
    chunking_server,
) -> None:
    """The acceptance at sample level: the raw responses of a real node, through the plugin's
    own session, into the aligner and LiveKit's real AudioEmitter. Each chunk's first word
    starts where the chunk's first audio sample sits in the stream (LiveKit's frames are up to
    200 ms, so the test above can only place it within the frame that carries it)."""
    t = orpheus.TTS(base_url=chunking_server.address, max_tokens=MAX_TOKENS)
    session = t._new_session(t._opts, DEFAULT_API_CONNECT_OPTIONS)
    await session.open()
    session.send_text(TEXT, "seg")
    session.send_flush("seg")
    session.send_end_input()
    responses = [r async for r in session.responses()]
    await session.aclose()
    await t.aclose()

    events: aio.Chan[tts.SynthesizedAudio] = aio.Chan()
    emitter = tts.AudioEmitter(label="strict", dst_ch=events)
    emitter.initialize(
        request_id="strict", sample_rate=24000, num_channels=1, mime_type="audio/pcm", stream=True
    )
    emitter.start_segment(segment_id="seg")
    aligner = TranscriptAligner(emitter, SpeakingRate())
    aligner.add_text("seg", TEXT)
    aligner.start_segment("seg")
    first_sample: dict[tuple[int, int], int] = {}  # text chunk -> samples before its audio
    samples = 0
    for r in responses:
        if r.WhichOneof("kind") == "audio" and r.audio.pcm:
            first_sample.setdefault((r.audio.chunk_start, r.audio.chunk_end), samples)
            aligner.on_audio(r.audio)
            emitter.push(r.audio.pcm)
            samples += len(r.audio.pcm) // 2
    aligner.end_segment()
    emitter.end_segment()
    emitter.end_input()
    await emitter.join()
    events.close()
    words = [
        w
        for ev in [ev async for ev in events]
        for w in ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])
    ]
    assert "".join(words) == TEXT and len(first_sample) >= 2
    spoken, pushed = TEXT.encode(), 0
    for (_, chunk_end), sample in sorted(first_sample.items()):
        first_word = split_words(spoken[pushed:chunk_end].decode())[0]
        pushed = chunk_end
        at = sample / 24000  # where the chunk's first audio sample sits in the stream
        starting = [w for w in words if abs(w.start_time - at) <= 0.5 / 24000]
        assert [str(w) for w in starting] == [first_word], (at, first_word, starting)
