"""Taking a session over after the node speaking it failed (SessionStart.resume).

The chunk that was in flight is cut where the failed node cut it and sampled with the
session's seed, so this node generates the same tokens and so the same audio; the part
of it the listener already has is dropped here instead of being played twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ..engine.base import SamplingConfig


@dataclass(frozen=True, slots=True)
class ResumePoint:
    segment_id: str
    chars_done: int = 0  # UTF-8 bytes of the segment already spoken
    chunk_end: int = 0  # where the chunk in flight ends (0 = none was in flight)
    audio_samples_done: int = 0  # samples of that chunk the listener already has


class AudioSkip:
    """Drops the first `samples` samples passed through `take`."""

    def __init__(self, samples: int = 0) -> None:
        self.left = samples

    def take(self, samples: np.ndarray) -> np.ndarray:
        n = min(self.left, len(samples))
        self.left -= n
        return samples[n:]


def chunk_sampling(sampling: SamplingConfig, segment_id: str, start: int) -> SamplingConfig:
    """A chunk samples with a seed of its own, derived from what a node resuming the session
    knows: the session's seed, the segment and where the chunk starts in it (bytes)."""
    if sampling.seed is None:
        return sampling
    key = f"{sampling.seed}/{segment_id}/{start}".encode()
    seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1
    return replace(sampling, seed=seed)
