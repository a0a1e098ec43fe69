"""Scripted stand-ins for the third-party models (LLM, STT): real LiveKit subclasses."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

from livekit import rtc
from livekit.agents import APIConnectOptions, llm, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.voice import io


def llm_tokens(text: str) -> list[str]:
    """Split text into LLM-like tokens: words carrying their leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


class ScriptedLLM(llm.LLM):
    """Streams the next scripted reply token by token after a time-to-first-token."""

    def __init__(
        self,
        replies: Sequence[str],
        *,
        tokens_per_second: float = 40.0,
        ttft: float = 0.15,
    ) -> None:
        super().__init__()
        self._replies = itertools.cycle(replies)
        self.tokens_per_second = tokens_per_second
        self.ttft = ttft
        self.requests: list[llm.ChatContext] = []

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "tests"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.requests.append(chat_ctx)
        return _ScriptedStream(
            self, next(self._replies), chat_ctx=chat_ctx, tools=tools or [], conn=conn_options
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        owner: ScriptedLLM,
        reply: str,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn: APIConnectOptions,
    ) -> None:
        super().__init__(owner, chat_ctx=chat_ctx, tools=tools, conn_options=conn)
        self._owner = owner
        self._reply = reply

    async def _run(self) -> None:
        request_id = utils.shortuuid("scripted_")
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self._owner.ttft
        tokens = llm_tokens(self._reply)
        for token in tokens:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            delta = llm.ChoiceDelta(role="assistant", content=token)
            self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=delta))
            next_at += 1.0 / self._owner.tokens_per_second
        usage = llm.CompletionUsage(
            completion_tokens=len(tokens), prompt_tokens=10, total_tokens=10 + len(tokens)
        )
        self._event_ch.send_nowait(llm.ChatChunk(id=request_id, usage=usage))


class ScriptedSTT(stt.STT):
    """A streaming STT whose speech events the test triggers with `say()`.

    It reports START_OF_SPEECH, interim and final transcripts, then END_OF_SPEECH with
    the speech end time, as a streaming provider does; audio pushed to it is ignored.
    """

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self._streams: list[_ScriptedSpeechStream] = []

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "tests"

    async def _recognize_impl(self, buffer: Any, *, language: Any, conn_options: Any) -> Any:
        raise NotImplementedError("ScriptedSTT is streaming only")

    def stream(
        self,
        *,
        language: Any = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        s = _ScriptedSpeechStream(stt=self, conn_options=conn_options)
        s.opened_at = time.time()  # word times are relative to the stream's audio start
        self._streams.append(s)
        return s

    async def say(
        self, text: str, *, speech_s: float = 0.8, transcription_delay: float = 0.12
    ) -> float:
        """Simulate the user speaking `text` for `speech_s`; returns the speech end time."""
        stream = self._streams[-1]
        stream.emit(stt.SpeechEventType.START_OF_SPEECH)
        words = text.split()
        for i in range(1, len(words)):
            await asyncio.sleep(speech_s / len(words))
            stream.emit(stt.SpeechEventType.INTERIM_TRANSCRIPT, " ".join(words[:i]))
        await asyncio.sleep(speech_s / max(1, len(words)))
        ended = time.time()
        # like a streaming provider: end of speech first, the final transcript shortly after
        stream.emit(stt.SpeechEventType.END_OF_SPEECH, end=ended)
        await asyncio.sleep(transcription_delay)
        stream.emit(stt.SpeechEventType.FINAL_TRANSCRIPT, text, end=ended - stream.opened_at)
        return ended


class _ScriptedSpeechStream(stt.RecognizeStream):
    opened_at = 0.0

    def emit(self, kind: stt.SpeechEventType, text: str | None = None, end: float = 0.0) -> None:
        data = stt.SpeechData(language="en", text=text or "", end_time=end)
        event = stt.SpeechEvent(type=kind, alternatives=[data] if text is not None else [])
        if kind == stt.SpeechEventType.END_OF_SPEECH:
            event.speech_end_time = end  # absolute wall-clock time
        self._event_ch.send_nowait(event)

    async def _run(self) -> None:
        async for _ in self._input_ch:  # audio is ignored: the test scripts the speech
            pass


class SilentMicrophone(io.AudioInput):
    """An `io.AudioInput` yielding 10 ms frames of silence in real time (a muted mic)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__(label="SilentMicrophone")
        self._samples = sample_rate // 100
        self._frame = rtc.AudioFrame(b"\x00\x00" * self._samples, sample_rate, 1, self._samples)

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(0.01)
        return self._frame
