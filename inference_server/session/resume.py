"""Taking a session over after the node speaking it failed (SessionStart.resume).

The chunk that was in flight is cut where the failed node cut it, and generation
continues after the SNAC frames the listener already heard: their audio tokens follow the
chunk's prompt as output already generated, and the stream decoder takes them as left
context only. Nothing heard is generated or sent again, so the seam does not depend on
two nodes sampling the same tokens (they need not: batching changes the numerics).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from ..engine.base import SamplingConfig
from ..orpheus import tokens as T


def no_frames() -> np.ndarray:
    return np.empty((0, T.FRAME_TOKENS), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    segment_id: str
    chars_done: int = 0  # UTF-8 bytes of the segment already spoken
    chunk_end: int = 0  # where the chunk in flight ends (0 = none was in flight)
    heard_frames: np.ndarray = field(default_factory=no_frames)  # (n, 7) codes of that chunk


class FrameLedger:
    """The frames of a chunk whose audio is out, handed to the AudioOut that completes them.

    Frames whose audio the head-silence trimmer still holds (or dropped) wait here and go
    out with the next audio: a frame is the listener's once audio after it was sent."""

    def __init__(self, frames_before: int = 0) -> None:
        self.next_frame = frames_before  # chunk index of the next frame to hand out
        self._pending: list[np.ndarray] = []

    def decoded(self, frames: np.ndarray) -> None:
        self._pending.append(frames)

    def take(self) -> tuple[int, np.ndarray]:
        """(chunk index of the first frame, frames (n, 7)) for audio about to go out."""
        frames = np.concatenate([no_frames(), *self._pending])
        first, self._pending = self.next_frame, []
        self.next_frame += len(frames)
        return first, frames


def chunk_sampling(
    sampling: SamplingConfig, segment_id: str, start: int, heard_frames: int = 0
) -> SamplingConfig:
    """A chunk samples with a seed of its own, derived from the session's seed, the segment
    and where the chunk starts in it (bytes): seeded sessions are reproducible chunk by
    chunk. A resume does not rely on it (it continues from the heard frames), but the
    continuation after `heard_frames` frames gets a seed of its own too: with the chunk's
    seed it would redraw the random numbers of the chunk's first frames, and where the
    distributions are flat (tiny-random weights) that replays those frames' codes."""
    if sampling.seed is None:
        return sampling
    key = f"{sampling.seed}/{segment_id}/{start}".encode()
    if heard_frames:
        key += f"/{heard_frames}".encode()
    seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1
    return replace(sampling, seed=seed)
