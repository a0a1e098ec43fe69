"""Conversations on this machine, without LiveKit: `text` (typed turns) and `console`
(microphone and speaker). Both record the whole conversation (see recording.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from livekit.agents import AgentSession, CloseEvent, ErrorEvent, llm, stt, tts
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.plugins import silero

from .config import AgentConfig
from .console_audio import MicrophoneInput, SpeakerSink, console_devices
from .endpoints import endpoint
from .latency import TurnLatencyTracker
from .personas import Persona
from .pipeline import PersonaAgent, build_session, build_stt, turn_handling
from .recording import ConversationRecording
from .turn_audio import TurnAudioSink

logger = logging.getLogger("orpheus-agent")


class ModelFailed(RuntimeError):
    """The LLM, STT or TTS failed for good and closed the session; one line names which."""


class SpeechTracker:
    """Collects the session's speech handles so callers can wait until all have played."""

    def __init__(self, session: AgentSession) -> None:
        self.handles: list[SpeechHandle] = []
        session.on("speech_created", lambda ev: self.handles.append(ev.speech_handle))

    async def wait_all(self) -> None:
        while pending := [h for h in self.handles if not h.done()]:
            await asyncio.gather(*pending, return_exceptions=True)


class SessionWatch:
    """Remembers the unrecoverable error that closes a session, and when it closed."""

    def __init__(self, session: AgentSession, config: AgentConfig) -> None:
        self.closed = asyncio.Event()
        self.failure: str | None = None
        self._config = config
        session.on("error", self._on_error)
        session.on("close", self._on_close)

    def _on_error(self, ev: ErrorEvent) -> None:
        if not getattr(ev.error, "recoverable", True):
            self.failure = self._describe(ev)

    def _on_close(self, ev: CloseEvent) -> None:
        if ev.error is not None and self.failure is None:
            self.failure = f"{type(ev.error).__name__}: {ev.error}"
        self.closed.set()

    def _describe(self, ev: ErrorEvent) -> str:
        cause = getattr(ev.error, "error", ev.error)  # the model's exception inside the event
        if isinstance(ev.source, llm.LLM):
            return f"the LLM at {endpoint(self._config, 'llm').shown} failed: {cause}"
        if isinstance(ev.source, stt.STT):
            return f"the STT at {endpoint(self._config, 'stt').shown} failed: {cause}"
        if isinstance(ev.source, tts.TTS):
            return f"the TTS (Orpheus node {self._config.tts_url}) failed: {cause}"
        return f"{type(ev.source).__name__} failed: {cause}"

    def check(self) -> None:
        if self.failure is not None:
            raise ModelFailed(self.failure)


async def run_text(config: AgentConfig, persona: Persona) -> None:
    """Typed turns from stdin; raises ModelFailed when a model fails for good."""
    options = turn_handling(config)
    options["turn_detection"] = "manual"  # typed turns: nothing to detect
    options["interruption"] = {"enabled": False}  # and no one to interrupt a reply
    session = build_session(config, persona, vad_model=None, stt_model=None, turn_options=options)
    recording = ConversationRecording(config.wav_dir, label=persona.name)
    session.output.audio = TurnAudioSink(
        wav_dir=recording.directory, realtime=False, on_turn=recording.add_turn
    )
    await _converse(session, config, persona, recording, _typed_turns)


async def run_console(config: AgentConfig, persona: Persona) -> None:
    """The microphone and the speaker; runs until Ctrl-C. Raises AudioDeviceError first
    when there is no device, ModelFailed when a model fails for good."""
    sd = console_devices()
    vad = silero.VAD.load(min_silence_duration=config.vad_min_silence)
    session = build_session(config, persona, vad_model=vad, stt_model=build_stt(config))
    recording = ConversationRecording(config.wav_dir, label=persona.name)
    mic = MicrophoneInput(sd, on_mic=recording.add_user_audio)
    speaker = SpeakerSink(sd, wav_dir=recording.directory, on_turn=recording.add_turn)
    session.input.audio, session.output.audio = mic, speaker
    try:
        await _converse(session, config, persona, recording, _until_interrupted)
    finally:
        mic.close()


async def _converse(session, config, persona, recording, turns) -> None:
    """Start the session with its outputs already attached (so the greeting is recorded),
    run `turns`, and always close the session and write the conversation."""
    tracker = TurnLatencyTracker(budget_s=config.first_audio_budget)
    tracker.attach(session)
    watch = SessionWatch(session, config)
    speech = SpeechTracker(session)
    print(f"{persona.name} ({persona.voice}); recording to {recording.directory}/", flush=True)
    try:
        await session.start(agent=PersonaAgent(persona))
        await turns(session, persona, speech, watch)
    finally:
        await session.aclose()
        path = recording.close()
        turns = len(recording.turns)
        print(f"conversation: {path} ({turns} agent turn{'s' * (turns != 1)})", flush=True)
    watch.check()


async def _typed_turns(session, persona, speech, watch) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await _played(speech, watch)
        line = await loop.run_in_executor(None, _prompt)
        if line is None:
            return
        if not line.strip():
            continue
        result = session.run(user_input=line.strip())
        await _first(result, watch)
        watch.check()
        for ev in result.events:
            if ev.type == "message" and ev.item.role == "assistant":
                print(f"{persona.name}: {ev.item.text_content}", flush=True)


async def _until_interrupted(session, persona, speech, watch) -> None:
    # explicit handlers: SIGINT may be ignored (started in the background) and SIGTERM
    # (docker stop, kill) should end the conversation just as cleanly
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("talk to the agent; Ctrl-C ends the conversation", flush=True)
    try:
        await _first(stop.wait(), watch)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _played(speech: SpeechTracker, watch: SessionWatch) -> None:
    await _first(speech.wait_all(), watch)
    watch.check()


async def _first(awaitable, watch: SessionWatch) -> None:
    """Wait for `awaitable`, or for the session to close (a model failed) first."""
    task = asyncio.ensure_future(awaitable)
    closed = asyncio.ensure_future(watch.closed.wait())
    await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    if not task.done():
        task.cancel()
    elif task.exception() is not None and watch.failure is None:
        raise task.exception()


def _prompt() -> str | None:
    try:
        return input("you> " if sys.stdin.isatty() else "")  # piped input: no prompts
    except EOFError:
        return None
