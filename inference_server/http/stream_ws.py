"""`WS /v1/audio/stream`: text in as an LLM produces it, audio out as it is generated.

One WebSocket = one session on the fleet (routed like any gRPC session). Protocol, JSON text
messages unless said otherwise:

client -> server
    {"type": "session.start", "voice": "tara", "model": "", "language": "", "session_id": "",
     "api_key": "...",              (or the Authorization header of the handshake)
     "min_sentences": 2, "max_buffer_delay_ms": 800,   (the sentence gate, as the plugin's)
     "format": "pcm", "seed": 7, "temperature": ..., "max_tokens": ..., ...}
    {"type": "text", "text": "Hel"}   any number, any size: LLM tokens as they come
    {"type": "flush"}                 end of a segment: speak what is held, then start anew
    {"type": "end"}                   no more text: the session ends after the last audio
server -> client
    {"type": "session.started", "session_id", "node_id", "voice", "sample_rate": 24000,
     "format": "pcm", "encoding": "s16le", "channels": 1}
    binary messages: the audio, PCM s16le 24 kHz mono, in order
    {"type": "segment.start", "segment_id", "audio_ms"}   before a segment's first audio
    {"type": "mark", "segment_id", "text", "text_start", "text_end", "audio_start_ms",
     "audio_end_ms", "exact"}                              per sentence (marks.py)
    {"type": "segment.done", "segment_id", "audio_ms", "metrics": {...}}
    {"type": "session.done", "audio_ms"}                    then close 1000
    {"type": "error", "error": {"message", "type", "param", "code"}}   then close with
        4000 + the HTTP status the same error gets from POST /v1/audio/speech (4401, 4404..)
Audio positions (audio_ms) count the audio sent on this socket; text positions are UTF-8
bytes of the segment's text as sent, like the gRPC contract. A flush with no text since the
last one does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..proto import tts_pb2 as pb
from .errors import HttpError, ParamError, http_error_listing_voices
from .gate import SentenceGate
from .marks import SentenceMarks
from .node_client import NodeClient, NodeSession
from .speech import text_pieces
from .speech_schema import language_field, model_name, parse_voice, sampling_fields

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0  # a socket that sends no session.start this long is closed
SAMPLE_RATE = 24000


class _Ended(Exception):
    """The client closed the socket."""


async def serve_stream(ws: WebSocket, node: NodeClient) -> None:
    await ws.accept()
    session: NodeSession | None = None
    authorization = ws.headers.get("authorization")
    try:
        start, gate_options, authorization = await _read_start(ws)
        session = await node.open(
            [pb.SynthesizeRequest(start=start)], authorization, more_input=True
        )
        await ws.send_json(
            {
                "type": "session.started",
                "session_id": session.started.session_id,
                "node_id": session.started.node_id,
                "voice": session.started.voice,
                "sample_rate": SAMPLE_RATE,
                "format": "pcm",
                "encoding": "s16le",
                "channels": 1,
            }
        )
        await _Stream(ws, session, **gate_options).run()
        await ws.close(1000)
    except (_Ended, WebSocketDisconnect):
        pass  # the client left: its session is cancelled below
    except Exception as exc:
        await _fail(
            ws, await http_error_listing_voices(exc, lambda: node.voice_names(authorization))
        )
    finally:
        if session is not None:
            session.cancel()


async def _fail(ws: WebSocket, err: HttpError) -> None:
    log.info("stream: %s %s", err.status, err.message)
    if ws.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):  # the client may be gone already
            await ws.send_json({"type": "error", "error": err.body()["error"]})
            await ws.close(err.ws_close_code, err.message[:120])


async def _read_start(ws: WebSocket) -> tuple[pb.SessionStart, dict, str | None]:
    try:
        msg = await asyncio.wait_for(_receive_json(ws), START_TIMEOUT_S)
    except TimeoutError:
        raise ParamError("type", f"no session.start within {START_TIMEOUT_S:g} s") from None
    if msg.get("type") != "session.start":
        raise ParamError("type", f"first message must be session.start, got {msg.get('type')!r}")
    fmt = msg.get("format", "pcm")
    if fmt != "pcm":
        raise ParamError("format", f"format={fmt!r}: the stream sends pcm (s16le 24 kHz mono)")
    min_sentences = msg.get("min_sentences", 2)
    delay_ms = msg.get("max_buffer_delay_ms", 800)
    if not isinstance(min_sentences, int) or isinstance(min_sentences, bool) or min_sentences < 1:
        raise ParamError("min_sentences", "min_sentences must be an integer >= 1")
    if not isinstance(delay_ms, int | float) or isinstance(delay_ms, bool) or delay_ms <= 0:
        raise ParamError("max_buffer_delay_ms", "max_buffer_delay_ms must be a number > 0")
    session_id = msg.get("session_id") or ""
    if not isinstance(session_id, str):
        raise ParamError("session_id", "session_id must be a string")
    trim = msg.get("trim_head_silence", True)
    if not isinstance(trim, bool):
        raise ParamError("trim_head_silence", "trim_head_silence must be true or false")
    start = pb.SessionStart(
        session_id=session_id,
        voice=parse_voice(msg.get("voice")),
        model=model_name(msg.get("model")),
        language=language_field(msg),
        sampling=pb.SamplingOptions(**sampling_fields(msg)),
        trim_head_silence=trim,
    )
    key = msg.get("api_key")
    authorization = f"Bearer {key}" if isinstance(key, str) and key else None
    gate = {"min_sentences": min_sentences, "max_buffer_delay": delay_ms / 1000.0}
    return start, gate, authorization or ws.headers.get("authorization")


async def _receive_json(ws: WebSocket) -> dict[str, Any]:
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise _Ended
    if message.get("text") is None:
        raise ParamError("type", "send JSON text messages (binary messages are not accepted)")
    try:
        msg = json.loads(message["text"])
    except ValueError:
        raise ParamError("type", "message is not JSON") from None
    if not isinstance(msg, dict):
        raise ParamError("type", "message must be a JSON object")
    return msg


class _Stream:
    """The session after its start: client text through the gate, audio and marks back."""

    def __init__(
        self, ws: WebSocket, session: NodeSession, *, min_sentences: int, max_buffer_delay: float
    ) -> None:
        self.ws = ws
        self.session = session
        self.marks = SentenceMarks()
        self.gate = SentenceGate(
            release=self._release, min_sentences=min_sentences, max_buffer_delay=max_buffer_delay
        )
        self.segment = 0
        self.segment_has_text = False

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the first failure
            await writer
        finally:
            self.gate.close()
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)

    @property
    def segment_id(self) -> str:
        return f"seg-{self.segment}"

    def _release(self, text: str) -> None:
        self.marks.text_sent(self.segment_id, text)
        self.segment_has_text = True
        for piece in text_pieces(text):  # each within the node's message size
            self.session.send(
                pb.SynthesizeRequest(text=pb.TextChunk(text=piece, segment_id=self.segment_id))
            )

    async def _read(self) -> None:
        while True:
            msg = await _receive_json(self.ws)
            kind = msg.get("type")
            if kind == "text":
                text = msg.get("text")
                if not isinstance(text, str):
                    raise ParamError("text", "text message needs a string field text")
                self.gate.push(text)
            elif kind == "flush":
                self._flush()
            elif kind == "end":
                self.gate.flush()
                self.session.end_input()
                return
            else:
                raise ParamError("type", f"unknown message type {kind!r} (text, flush, end)")

    def _flush(self) -> None:
        self.gate.flush()
        if self.segment_has_text:
            self.session.send(pb.SynthesizeRequest(flush=pb.Flush(segment_id=self.segment_id)))
            self.segment += 1
            self.segment_has_text = False

    async def _write(self) -> None:
        at = 0  # samples sent on this socket
        async for response in self.session.responses():
            kind = response.WhichOneof("kind")
            if kind == "audio":
                a = response.audio
                for mark in self.marks.audio(a.segment_id, a.chunk_start, a.chunk_end, at):
                    await self.ws.send_json(mark)
                if a.pcm:
                    await self.ws.send_bytes(a.pcm)
                    at += len(a.pcm) // 2
            elif kind == "progress":
                p = response.progress
                for mark in self.marks.progress(p.segment_id, p.chars_done, at):
                    await self.ws.send_json(mark)
            elif kind == "segment_done":
                done = response.segment_done
                for mark in self.marks.segment_done(done.segment_id, at):
                    await self.ws.send_json(mark)
                await self.ws.send_json(_segment_done(done, at))
        await self.ws.send_json({"type": "session.done", "audio_ms": _ms(at)})


def _segment_done(done: pb.SegmentDone, at: int) -> dict:
    m = done.metrics
    return {
        "type": "segment.done",
        "segment_id": done.segment_id,
        "audio_ms": _ms(at),
        "metrics": {
            "ttfa_ms": round(m.ttfa_ms, 1),
            "audio_ms": round(m.audio_ms, 1),
            "head_silence_trimmed_ms": round(m.head_silence_trimmed_ms, 1),
            "tokens_generated": m.tokens_generated,
            "generation_rtf": round(m.generation_rtf, 3),
            "text_chunks": m.text_chunks,
            "tags_removed": m.tags_removed,
            "chunks_overrun": m.chunks_overrun,
            "chunks_budget_capped": m.chunks_budget_capped,
            "gap_silence_trimmed_ms": round(m.gap_silence_trimmed_ms, 1),
        },
    }


def _ms(samples: int) -> float:
    return round(samples * 1000.0 / SAMPLE_RATE, 1)
