"""Conversations on this machine, without LiveKit: `text` (typed turns) and `console`
(microphone and speaker). Both record the whole conversation (see recording.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

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
T = TypeVar("T")


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


Turns = Callable[[AgentSession, Persona, SpeechTracker, SessionWatch], Awaitable[None]]
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _converse(
    session: AgentSession,
    config: AgentConfig,
    persona: Persona,
    recording: ConversationRecording,
    turns: Turns,
) -> None:
    """Start the session with its outputs already attached (so the greeting is recorded),
    run `turns` until they end or Ctrl-C/SIGTERM, then close the session and write the
    conversation, whatever ended it."""
    tracker = TurnLatencyTracker(budget_s=config.first_audio_budget)
    tracker.attach(session)
    watch = SessionWatch(session, config)
    speech = SpeechTracker(session)
    print(f"{persona.name} ({persona.voice}); recording to {recording.directory}/", flush=True)
    ended_by_signal = _end_on_signals()
    try:
        await session.start(agent=PersonaAgent(persona))
        await turns(session, persona, speech, watch)
    except asyncio.CancelledError:
        if not ended_by_signal.is_set():
            raise
        asyncio.current_task().uncancel()  # the cleanup below still awaits
    finally:
        loop = asyncio.get_running_loop()
        for sig in ENDING_SIGNALS:
            loop.remove_signal_handler(sig)
        await session.aclose()
        path = recording.close()
        count = len(recording.turns)
        print(f"conversation: {path} ({count} agent turn{'s' * (count != 1)})", flush=True)
    watch.check()


def _end_on_signals() -> asyncio.Event:
    """Ctrl-C and SIGTERM (docker stop) cancel the conversation's task; the returned event
    tells that cancellation from others. Explicit handlers: a process started in the
    background has SIGINT ignored, and SIGTERM would otherwise kill it unrecorded."""
    ended, task = asyncio.Event(), asyncio.current_task()

    def end() -> None:
        ended.set()
        task.cancel()

    loop = asyncio.get_running_loop()
    for sig in ENDING_SIGNALS:
        loop.add_signal_handler(sig, end)
    return ended


async def _typed_turns(
    session: AgentSession, persona: Persona, speech: SpeechTracker, watch: SessionWatch
) -> None:
    lines = StdinLines()
    while True:
        await _played(speech, watch)
        line = await _first(lines.next(), watch)
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


async def _until_interrupted(
    session: AgentSession, persona: Persona, speech: SpeechTracker, watch: SessionWatch
) -> None:
    print("talk to the agent; Ctrl-C ends the conversation", flush=True)
    await watch.closed.wait()


async def _played(speech: SpeechTracker, watch: SessionWatch) -> None:
    await _first(speech.wait_all(), watch)
    watch.check()


async def _first(awaitable: Awaitable[T], watch: SessionWatch) -> T | None:
    """`awaitable`'s result, or None when the session closes first (a model failed)."""
    task = asyncio.ensure_future(awaitable)
    closed = asyncio.ensure_future(watch.closed.wait())
    try:
        await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        return None
    if task.exception() is not None and watch.failure is None:
        raise task.exception()
    return None if task.exception() is not None else task.result()


class StdinLines:
    """Lines typed on stdin, read by a daemon thread: a pending read never keeps the
    process from exiting (the default executor would wait for it at shutdown). Piped
    input is read from the file descriptor: a daemon thread blocked inside sys.stdin's
    buffer at exit aborts the interpreter."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wanted = threading.Event()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        source = _typed_lines() if sys.stdin.isatty() else _piped_lines(sys.stdin.fileno())
        threading.Thread(target=self._read, args=(source,), name="stdin", daemon=True).start()

    async def next(self) -> str | None:
        """The next line, None at end of input."""
        self._wanted.set()
        return await self._lines.get()

    def _read(self, source: Iterator[str]) -> None:
        line: str | None = ""
        while line is not None:
            self._wanted.wait()  # the prompt shows once the agent has spoken
            self._wanted.clear()
            line = next(source, None)
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)


def _typed_lines() -> Iterator[str]:
    while True:
        try:
            yield input("you> ")  # a terminal: readline editing, outside sys.stdin's buffer
        except EOFError:
            return


def _piped_lines(fd: int) -> Iterator[str]:
    pending = b""
    while chunk := os.read(fd, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line.decode(errors="replace") for line in lines)
    if pending:
        yield pending.decode(errors="replace")
