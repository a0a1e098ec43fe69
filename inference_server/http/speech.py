"""`POST /v1/audio/speech`: one request = one session on the fleet, its audio streamed back.

The response starts with the first audio (which is also when a client's first byte would
come anyway), so every refusal before it (key, voice, model, capacity, draining, a limit on
the text) is a proper HTTP status; after that the audio flows as the node generates it, in
chunked transfer encoding.

stream_format "audio": the bytes of `response_format`. stream_format "sse" (OpenAI's):
    data: {"type": "speech.audio.delta", "audio": "<base64 of response_format bytes>"}
    ...
    data: {"type": "speech.audio.done", "usage": {...}, "orpheus": {...}}
where "orpheus" holds this server's figures: node_id, session_id, voice, model,
ttfa_ms (request received at this front door -> first audio byte sent), node_ttfa_ms
(the node's SegmentMetrics.ttfa_ms), audio_seconds, head_silence_trimmed_ms,
tokens_generated, tags_removed, chunks_overrun, sample_rate. A failure after the stream
began is an "error" event ({"type": "error", "error": {...}}) in sse, and a connection
closed before the final chunk in audio (the client sees a truncated body, never a short
"complete" one).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from ..proto import tts_pb2 as pb
from .encoders import MEDIA_TYPES, SAMPLE_RATE, make_encoder
from .errors import http_error
from .node_client import NodeSession
from .speech_schema import SpeechRequest

log = logging.getLogger(__name__)

# One gRPC message carries at most this much text (the node's --max-message-bytes is 64 KiB
# by default); longer input goes as several TextChunks of the same segment.
TEXT_PIECE_BYTES = 16 * 1024


class StreamBroken(Exception):
    """The audio stream failed after the response began: end the connection uncleanly."""


def session_messages(req: SpeechRequest) -> list[pb.SynthesizeRequest]:
    """SessionStart, the input as TextChunks, EndInput."""
    start = pb.SessionStart(
        session_id=req.session_id,
        voice=req.voice,
        model=req.model,
        language=req.language,
        sampling=pb.SamplingOptions(**req.sampling),
        trim_head_silence=req.trim_head_silence,
    )
    texts = [pb.SynthesizeRequest(text=pb.TextChunk(text=t)) for t in text_pieces(req.input)]
    return [
        pb.SynthesizeRequest(start=start),
        *texts,
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]


def text_pieces(text: str, limit: int = TEXT_PIECE_BYTES) -> list[str]:
    """`text` cut into pieces of at most `limit` UTF-8 bytes, on character boundaries."""
    pieces, piece, size = [], [], 0
    for ch in text:
        n = len(ch.encode())
        if size + n > limit:
            pieces.append("".join(piece))
            piece, size = [], 0
        piece.append(ch)
        size += n
    if piece:
        pieces.append("".join(piece))
    return pieces


@dataclass
class SpeechFigures:
    """What the sse done event reports beside OpenAI's usage."""

    node_id: str
    session_id: str
    voice: str
    model: str
    received_at: float  # time.monotonic() when the request reached this front door
    ttfa_ms: float | None = None
    node_ttfa_ms: float | None = None
    samples: int = 0
    head_silence_trimmed_ms: float = 0.0
    tokens_generated: int = 0
    tags_removed: int = 0
    chunks_overrun: int = 0
    segments: list[str] = field(default_factory=list)

    def audio_sent(self) -> None:
        if self.ttfa_ms is None:
            self.ttfa_ms = (time.monotonic() - self.received_at) * 1000.0

    def observe(self, response: pb.SynthesizeResponse) -> None:
        kind = response.WhichOneof("kind")
        if kind == "audio":
            self.samples += len(response.audio.pcm) // 2
        elif kind == "segment_done":
            m = response.segment_done.metrics
            if self.node_ttfa_ms is None:
                self.node_ttfa_ms = round(m.ttfa_ms, 1)
            self.head_silence_trimmed_ms += m.head_silence_trimmed_ms
            self.tokens_generated += m.tokens_generated
            self.tags_removed += m.tags_removed
            self.chunks_overrun += m.chunks_overrun
            self.segments.append(response.segment_done.segment_id)

    def done_event(self) -> dict:
        return {
            "type": "speech.audio.done",
            # input tokens are counted by the engine, not reported on the wire: 0 here
            "usage": {
                "input_tokens": 0,
                "output_tokens": self.tokens_generated,
                "total_tokens": self.tokens_generated,
            },
            "orpheus": {
                "node_id": self.node_id,
                "session_id": self.session_id,
                "voice": self.voice,
                "model": self.model or None,  # None: the node's default model
                "ttfa_ms": None if self.ttfa_ms is None else round(self.ttfa_ms, 1),
                "node_ttfa_ms": self.node_ttfa_ms,
                "audio_seconds": self.samples / SAMPLE_RATE,
                "head_silence_trimmed_ms": round(self.head_silence_trimmed_ms, 1),
                "tokens_generated": self.tokens_generated,
                "tags_removed": self.tags_removed,  # unknown <tags>, not spoken
                "chunks_overrun": self.chunks_overrun,  # stopped: looping or far too long
                "sample_rate": SAMPLE_RATE,
            },
        }


def response_headers(session: NodeSession) -> dict[str, str]:
    return {
        "X-Orpheus-Node": session.started.node_id,
        "X-Orpheus-Session": session.started.session_id,
        # header values are Latin-1: a voice in any script (유나) travels percent-encoded UTF-8
        "X-Orpheus-Voice": quote(session.started.voice, safe=""),
        "Cache-Control": "no-store",
    }


def media_type(req: SpeechRequest) -> str:
    return "text/event-stream" if req.stream_format == "sse" else MEDIA_TYPES[req.response_format]


async def until_audio(session: NodeSession) -> list[pb.SynthesizeResponse]:
    """The session's responses up to its first audio (raises the node's refusal, if any)."""
    head = []
    async for response in session.responses():
        head.append(response)
        if response.WhichOneof("kind") == "audio" and response.audio.pcm:
            break
    return head


async def _chain(
    head: Iterable[pb.SynthesizeResponse], rest: AsyncIterator[pb.SynthesizeResponse]
) -> AsyncIterator[pb.SynthesizeResponse]:
    for response in head:
        yield response
    async for response in rest:
        yield response


async def audio_body(
    session: NodeSession,
    head: list[pb.SynthesizeResponse],
    req: SpeechRequest,
    figures: SpeechFigures,
) -> AsyncIterator[bytes]:
    """The response body: encoded audio, or sse events carrying it; `head` came first."""
    encoder = make_encoder(req.response_format)
    sse = req.stream_format == "sse"
    try:
        async for response in _chain(head, session.responses()):
            figures.observe(response)
            if response.WhichOneof("kind") == "audio" and (
                data := encoder.encode(response.audio.pcm)
            ):
                figures.audio_sent()
                yield _delta(data) if sse else data
        if data := encoder.finish():
            figures.audio_sent()
            yield _delta(data) if sse else data
        if sse:
            yield _event(figures.done_event())
    except Exception as exc:
        err = http_error(exc)
        log.info("speech %s failed mid-stream: %s %s", figures.session_id, err.status, err.message)
        if not sse:
            raise StreamBroken(err.message) from None
        yield _event({"type": "error", "error": err.body()["error"]})
    finally:
        encoder.close()
        session.cancel()  # no-op once the call ended; stops generation if the client left


def _delta(data: bytes) -> bytes:
    return _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
