"""Aligned transcripts: each text chunk's words, timed against the audio pushed for it.

Every `AudioChunk` names the text chunk it speaks (`chunk_start`/`chunk_end`, UTF-8 bytes of
its segment's text). The first audio of a new chunk therefore starts exactly where that
chunk's speech starts: the chunk's first word gets that position. Word times inside a chunk
are estimated from a speaking rate (seconds of audio per character) learned from the chunks
already completed; each completed chunk's real duration measures the estimate's error.

Times are seconds from the start of the stream's audio (all its segments), the clock
LiveKit's transcript synchronizer compares them with (it counts every frame of the stream).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from livekit.agents import tts
from livekit.agents.types import TimedString

from .log import logger
from .proto import tts_pb2 as pb

BYTES_PER_SECOND = 2 * 24000  # PCM16 mono at 24 kHz
# ~15 characters a second (spaces and punctuation included): conversational English, the
# rate used until a chunk has completed in this TTS with its voice
DEFAULT_SECONDS_PER_CHAR = 1.0 / 15.0
_MAX_ERRORS = 256
_WORD = re.compile(r"\S+\s*")


def split_words(text: str) -> list[str]:
    """Words with their trailing whitespace; joined they give `text` back exactly."""
    words = _WORD.findall(text)
    if not words:
        return [text] if text else []
    head = text[: len(text) - len("".join(words))]  # leading whitespace joins the first word
    return [head + words[0], *words[1:]]


@dataclass
class SpeakingRate:
    """Seconds of audio per character of one voice, from the chunks heard so far."""

    seconds: float = 0.0
    chars: int = 0
    # estimated minus real duration of each completed chunk (seconds): the estimate's error
    errors: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_ERRORS))

    def per_char(self) -> float:
        return self.seconds / self.chars if self.chars else DEFAULT_SECONDS_PER_CHAR

    def learn(self, chars: int, estimated_s: float, real_s: float) -> None:
        self.errors.append(estimated_s - real_s)
        self.seconds += real_s
        self.chars += chars


@dataclass
class _Chunk:
    key: tuple[int, int]  # (chunk_start, chunk_end)
    start_s: float  # stream audio position of its first audio: exact
    chars: int
    estimated_s: float


class TranscriptAligner:
    """One stream's timed transcript: words pushed as their chunk's first audio arrives."""

    def __init__(self, emitter: tts.AudioEmitter, rate: SpeakingRate) -> None:
        self._emitter = emitter
        self._rate = rate
        self._texts: dict[str, bytearray] = {}  # segments' text as sent (UTF-8)
        self._text = bytearray()  # the segment being spoken
        self._pushed = 0  # bytes of its text already pushed as transcript
        self._chunk: _Chunk | None = None
        self.position_s = 0.0  # seconds of audio pushed in this stream

    def add_text(self, segment_id: str, text: str) -> None:
        self._texts.setdefault(segment_id, bytearray()).extend(text.encode())

    def start_segment(self, segment_id: str) -> None:
        self._text = self._texts.pop(segment_id, bytearray())
        self._pushed, self._chunk = 0, None

    def on_audio(self, audio: pb.AudioChunk) -> None:
        """Call before pushing `audio.pcm`: a new chunk's words then precede its audio."""
        key = (audio.chunk_start, audio.chunk_end)
        # a resumed node continues the same chunk (same offsets): its words are out already
        if self._chunk is None or self._chunk.key != key:
            self._finish_chunk()
            self._start_chunk(key, audio.chunk_end)
        self.position_s += len(audio.pcm) / BYTES_PER_SECOND

    def end_segment(self) -> None:
        """Text no audio spoke (trailing whitespace, a silent chunk) ends the segment."""
        self._finish_chunk()
        if rest := self._text[self._pushed :]:
            self._push_words(rest.decode(), self.position_s, 0.0)
        self._pushed = len(self._text)

    def _start_chunk(self, key: tuple[int, int], chunk_end: int) -> None:
        # from the last pushed byte, so text of a chunk that yielded no audio is not lost
        text = self._text[self._pushed : chunk_end].decode()
        self._pushed = max(self._pushed, chunk_end)
        chars = len(text.strip())
        estimated = chars * self._rate.per_char()
        self._chunk = _Chunk(key, self.position_s, chars, estimated)
        self._push_words(text, self.position_s, estimated)

    def _finish_chunk(self) -> None:
        if (chunk := self._chunk) is None:
            return
        self._chunk = None
        if not chunk.chars:
            return
        real = self.position_s - chunk.start_s
        self._rate.learn(chunk.chars, chunk.estimated_s, real)
        logger.debug(
            "orpheus chunk of %d chars: %.3f s estimated, %.3f s real",
            chunk.chars,
            chunk.estimated_s,
            real,
        )

    def _push_words(self, text: str, start_s: float, duration_s: float) -> None:
        """Spread `duration_s` over the words by their length; the first starts at `start_s`."""
        words = split_words(text)
        total = sum(len(w.strip()) for w in words) or 1
        t = start_s
        timed: list[TimedString] = []
        for word in words:
            end = t + duration_s * len(word.strip()) / total
            timed.append(TimedString(word, start_time=t, end_time=end))
            t = end
        if timed:
            self._emitter.push_timed_transcript(timed)
