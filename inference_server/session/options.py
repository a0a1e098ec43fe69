"""Per-node session settings (no heavy imports: the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionOptions:
    max_chunk_chars: int = 300
    trim_head_silence: bool = True
    silence_threshold_dbfs: float = -40.0
    continuity_frames: int = 0  # previous chunk's last frames replayed as prompt context
    first_chunk_frames: int = 3  # audio frames in a chunk's first window (85 ms each)
    max_session_chars: int = 200_000
    # generation waits while the listener has more than this buffered (0 = no pacing)
    max_audio_ahead_s: float = 5.0
    # head silence of a segment's later chunks is cut down to this pause, not removed
    chunk_gap_ms: float = 150.0
    # a chunk's budget: this many times the audio its text should take, plus a second
    # (espeak-ng, which the estimate is fitted on, speaks English ~1.3x faster than Orpheus)
    overrun_factor: float = 2.0
    language: str = "en"  # the model's: picks the speech-length estimate's rate


DEFAULT_SESSION_OPTIONS = SessionOptions()
