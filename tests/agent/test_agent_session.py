"""The persona agent end to end without a room: scripted STT/LLM, the real orpheus plugin
and a real `orpheus-server --model tiny-random --snac random` subprocess."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from livekit.agents import AgentSession
from livekit.agents import llm as llm_api
from livekit.agents.voice.speech_handle import SpeechHandle
from scripted_models import ScriptedLLM, ScriptedSTT, SilentMicrophone

from agent.config import AgentConfig
from agent.latency import TurnLatencyTracker, first_reply
from agent.local_session import SpeechTracker
from agent.personas import load_persona
from agent.pipeline import PersonaAgent, build_session, build_tts, turn_handling
from agent.turn_audio import TurnAudioSink

TIMELINE_FIELDS = (
    "user_speech_end_ms",
    "eot_decision_ms",
    "llm_first_token_ms",
    "tts_text_sent_ms",
    "tts_first_audio_ms",
    "first_audio_ms",
)
REPLIES = [
    "Oh, that sounds lovely. <laugh> What did you plant?",
    "Tomatoes are a classic. Basil grows well beside them.",
    "Let me tell you a long story about my grandmother's garden. It had roses, "
    "beans, pumpkins and a very old apple tree. Every autumn we made cider together.",
]
INTERRUPT_BUDGET_S = 1.0
DEPRECATED = "is deprecated"


@pytest.fixture
def persona_file(tmp_path: Path) -> Path:
    # a short greeting keeps tiny-random's noise (its length follows the text) brief
    path = tmp_path / "companion.yaml"
    path.write_text(
        "name: Maya\nvoice: tara\n"
        'greeting: "Hi there! <chuckle> Good to see you."\n'
        "instructions: You are Maya, a warm companion.\n"
        "emotion_guidance: Laugh with <laugh> when something is funny.\n"
    )
    return path


async def _next_speech(speech: SpeechTracker, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(speech.handles) <= count:
        assert time.monotonic() < deadline, "the agent never started a reply"
        await asyncio.sleep(0.02)


async def _wait_live_requests_zero(server, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        live = await asyncio.to_thread(server.metric, "orpheus_engine_live_requests")
        if live == 0:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    return None


async def test_greeting_two_turns_and_interruption(
    inference_server, persona_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # set_level also sets the capture handler's level: the INFO one goes last
    caplog.set_level(logging.WARNING, logger="livekit.agents")  # where deprecations are logged
    caplog.set_level(logging.INFO, logger="orpheus-agent.latency")
    config = AgentConfig(tts_url=inference_server.address)
    persona = load_persona(persona_file)
    stt, llm = ScriptedSTT(), ScriptedLLM(REPLIES, tokens_per_second=40.0, ttft=0.15)
    options = turn_handling(config)
    options["turn_detection"] = "stt"  # the scripted STT reports the user's speech end
    session: AgentSession = build_session(
        config,
        persona,
        vad_model=None,
        stt_model=stt,
        llm_model=llm,
        tts_model=build_tts(config, persona),
        turn_options=options,
    )
    sink = TurnAudioSink(wav_dir=tmp_path / "wav", realtime=True)
    session.input.audio = SilentMicrophone()
    session.output.audio = sink
    tracker = TurnLatencyTracker(budget_s=config.first_audio_budget)
    tracker.attach(session)
    speech = SpeechTracker(session)
    replies: dict[str, llm_api.MetricsReport] = {}  # the framework's own metrics, by speech
    session.on("speech_created", lambda ev: _record_reply_metrics(ev.speech_handle, replies))

    await session.start(agent=PersonaAgent(persona))
    try:
        await _next_speech(speech, 0)
        await speech.wait_all()  # greeting

        for n, text in enumerate(["I spent the afternoon in my garden", "Mostly tomatoes"]):
            await stt.say(text, speech_s=0.8)
            await _next_speech(speech, 1 + n)
            await speech.wait_all()

        # interruption mid-reply: stop as soon as the reply's audio is playing
        await stt.say("Tell me a story", speech_s=0.5)
        await _next_speech(speech, 3)
        deadline = time.monotonic() + 60
        while sink.current is None or not sink.current.frames or len(sink.turns) < 4:
            assert time.monotonic() < deadline, "the third reply never produced audio"
            await asyncio.sleep(0.01)
        assert await asyncio.to_thread(inference_server.metric, "orpheus_engine_live_requests") > 0
        interrupted_turn = sink.turns[-1]
        t_interrupt = time.monotonic()
        await session.interrupt()
        audio_stopped_s = time.monotonic() - t_interrupt
        frames_at_stop = len(interrupted_turn.frames)
        generation_stopped_s = await _wait_live_requests_zero(inference_server, 5.0)
        await asyncio.sleep(0.3)
    finally:
        await session.aclose()

    # audio: greeting + two full replies, then the interrupted one
    assert len(sink.turns) == 4, [t.duration_s for t in sink.turns]
    for turn in sink.turns[:3]:
        assert turn.duration_s > 0.5 and not turn.interrupted
        assert turn.path is not None and turn.path.stat().st_size > 44
    assert interrupted_turn.interrupted
    assert interrupted_turn.played_s < interrupted_turn.duration_s + 0.01
    assert len(interrupted_turn.frames) == frames_at_stop, "audio kept arriving after interrupt"
    assert generation_stopped_s is not None, (
        "server still generating 5 s after the interruption:\n" + inference_server.log()
    )
    print(
        f"\ninterruption: playback stopped {audio_stopped_s * 1000:.0f} ms and server generation "
        f"(orpheus_engine_live_requests == 0) {(audio_stopped_s + generation_stopped_s) * 1000:.0f}"
        " ms after session.interrupt()"
    )
    assert audio_stopped_s + generation_stopped_s <= INTERRUPT_BUDGET_S

    # the replies really followed the scripted LLM and carried the user's words
    user_turns = {m.text_content for r in llm.requests for m in r.messages() if m.role == "user"}
    assert {"I spent the afternoon in my garden", "Mostly tomatoes"} <= user_turns

    # one JSON latency line per agent turn, every field present
    lines = [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "orpheus-agent.latency" and '"agent_turn_latency"' in r.getMessage()
    ]
    assert len(lines) == 4, lines
    for line in lines:
        print(json.dumps(line))
        assert set(TIMELINE_FIELDS) <= line.keys()
        assert {"within_budget", "interrupted", "budget_ms", "trigger"} <= line.keys()
    greeting, first, second, third = lines
    assert greeting["trigger"] == "say" and greeting["first_audio_ms"] > 0
    # 1.8.9 gives a say() no synthesis start time: no TTS milestones rather than guessed ones
    assert greeting["tts_text_sent_ms"] is None and greeting["tts_first_audio_ms"] is None
    for line in (first, second):
        assert line["trigger"] == "user_speech"
        assert all(line[f] is not None for f in TIMELINE_FIELDS), line
        assert line["user_speech_end_ms"] == 0.0
        assert line["eot_decision_ms"] >= 0.3  # the endpointing delay is really waited
        assert line["tts_text_sent_ms"] <= line["tts_first_audio_ms"] <= line["first_audio_ms"]
        assert isinstance(line["within_budget"], bool)
    assert third["interrupted"] is True
    assert third["llm_first_token_ms"] is not None and third["tts_first_audio_ms"] is not None
    for line in (first, second, third):
        # paired with the right user turn: the framework's e2e_latency is the same span
        e2e_ms = replies[line["speech_id"]]["e2e_latency"] * 1000.0
        assert abs(line["first_audio_ms"] - e2e_ms) <= 0.1, (line, e2e_ms)
    summary = tracker.summary()
    assert summary["turns"] == 4 and summary["interrupted"] == 1

    deprecated = [r.getMessage() for r in caplog.records if DEPRECATED in r.getMessage()]
    assert not deprecated, deprecated


def _record_reply_metrics(handle: SpeechHandle, into: dict[str, llm_api.MetricsReport]) -> None:
    def done(h: SpeechHandle) -> None:
        if reply := first_reply(h):
            into[h.id] = reply.metrics

    handle.add_done_callback(done)
