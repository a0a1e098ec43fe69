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
    tokens_per_char: float = 9.0
    max_session_chars: int = 200_000
    # generation waits while the listener has more than this buffered (0 = no pacing)
    max_audio_ahead_s: float = 5.0
    # head silence of a segment's later chunks is cut down to this pause, not removed
    chunk_gap_ms: float = 150.0
    # a chunk is cut when its audio runs this many times past the text's estimate
    overrun_factor: float = 3.0


DEFAULT_SESSION_OPTIONS = SessionOptions()
