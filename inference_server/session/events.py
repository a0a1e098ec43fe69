"""What a session emits, independent of the wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .overrun import ChunkEnd

if TYPE_CHECKING:
    from ..audio.head_silence import HeadSilenceTrimmer


@dataclass(slots=True)
class SegmentMetrics:
    ttfa_ms: float = 0.0  # first chunk of text ready -> first audio out
    tokens_generated: int = 0
    audio_ms: float = 0.0
    head_silence_trimmed_ms: float = 0.0
    generation_s: float = 0.0
    invalid_tokens_dropped: int = 0
    text_chunks: int = 0
    tags_removed: int = 0  # unknown or malformed <tags> not spoken (orpheus/tags.py)
    chunks_overrun: int = 0  # cut: looping, or past their text's overrun limit (overrun.py)
    chunks_budget_capped: int = 0  # stopped by the client's max_tokens
    gap_silence_trimmed_ms: float = 0.0  # later chunks' head silence cut to --chunk-gap-ms

    def count_end(self, end: ChunkEnd) -> None:
        if end in (ChunkEnd.LOOP, ChunkEnd.LENGTH):
            self.chunks_overrun += 1
        elif end is ChunkEnd.MAX_TOKENS:
            self.chunks_budget_capped += 1

    def add_trimmed(self, trimmer: HeadSilenceTrimmer | None, *, first_chunk: bool) -> None:
        if trimmer is None:
            return
        if first_chunk:
            self.head_silence_trimmed_ms += trimmer.trimmed_ms
        else:
            self.gap_silence_trimmed_ms += trimmer.trimmed_ms

    @property
    def generation_rtf(self) -> float:
        return self.generation_s * 1000.0 / self.audio_ms if self.audio_ms else 0.0


@dataclass(frozen=True, slots=True)
class AudioOut:
    segment_id: str
    pcm: bytes  # PCM16LE mono 24 kHz
    chunk_start: int = 0  # the text chunk it speaks: UTF-8 bytes of the segment
    chunk_end: int = 0
    # the SNAC frames whose audio this completes, 7 codes each, flat (AudioChunk.frame_codes)
    frame_codes: tuple[int, ...] = ()
    first_frame: int = 0  # index of the first of them within the text chunk


@dataclass(frozen=True, slots=True)
class ProgressOut:
    segment_id: str
    chars_done: int


@dataclass(frozen=True, slots=True)
class SegmentOut:
    segment_id: str
    metrics: SegmentMetrics


SessionEvent = AudioOut | ProgressOut | SegmentOut
