"""Audio token ids <-> SNAC codes, at frame granularity.

A frame is 7 tokens: `[L0[j], L1[2j], L2[4j], L2[4j+1], L1[2j+1], L2[4j+2], L2[4j+3]]`.
Positions are counted by token index, never by validity, so an out-of-range token
spoils only its own frame and later frames keep their alignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import tokens as T

# For each frame position: (codebook, index offset inside that codebook's per-frame slots).
_SLOTS = ((0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (2, 2), (2, 3))
_PER_FRAME = (1, 2, 4)  # codes per frame in codebooks 0, 1, 2


@dataclass(slots=True)
class FrameAssembler:
    """Streams token ids in, complete valid frames (7 codes each) out."""

    frames_emitted: int = 0
    frames_dropped: int = 0
    tokens_dropped: int = 0
    _pending: list[int] = field(default_factory=list)
    _valid: bool = True

    def push(self, token_ids: Iterable[int]) -> list[np.ndarray]:
        """Consume tokens; return the frames they complete (each int64 codes of shape (7,))."""
        out: list[np.ndarray] = []
        for tok in token_ids:
            pos = len(self._pending)
            code = tok - T.AUDIO_TOKEN_BASE - pos * T.CODEBOOK_SIZE
            if not 0 <= code < T.CODEBOOK_SIZE:
                self._valid = False
            self._pending.append(code)
            if len(self._pending) == T.FRAME_TOKENS:
                if self._valid:
                    out.append(np.asarray(self._pending, dtype=np.int64))
                    self.frames_emitted += 1
                else:
                    self.frames_dropped += 1
                    self.tokens_dropped += T.FRAME_TOKENS
                self._pending = []
                self._valid = True
        return out

    def finish(self) -> int:
        """Drop a trailing partial frame; return how many tokens it held."""
        partial = len(self._pending)
        if partial:
            self.tokens_dropped += partial
            self.frames_dropped += 1
        self._pending = []
        self._valid = True
        return partial


def frames_to_codes(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack frames (n, 7) into SNAC's three codebooks of lengths n, 2n, 4n."""
    n = len(frames)
    stacked = np.asarray(frames, dtype=np.int64).reshape(n, T.FRAME_TOKENS)
    books = [np.empty((n, k), dtype=np.int64) for k in _PER_FRAME]
    for pos, (book, slot) in enumerate(_SLOTS):
        books[book][:, slot] = stacked[:, pos]
    return books[0].reshape(-1), books[1].reshape(-1), books[2].reshape(-1)


def codes_to_frames(l0: np.ndarray, l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    """Inverse of `frames_to_codes`: three codebooks -> frames of shape (n, 7)."""
    n = len(l0)
    if len(l1) != 2 * n or len(l2) != 4 * n:
        raise ValueError(f"codebook lengths {len(l0)}, {len(l1)}, {len(l2)} are not n, 2n, 4n")
    books = (
        np.asarray(l0).reshape(n, 1),
        np.asarray(l1).reshape(n, 2),
        np.asarray(l2).reshape(n, 4),
    )
    frames = np.empty((n, T.FRAME_TOKENS), dtype=np.int64)
    for pos, (book, slot) in enumerate(_SLOTS):
        frames[:, pos] = books[book][:, slot]
    return frames


def frames_to_token_ids(frames: np.ndarray) -> list[int]:
    """Frames (n, 7) of codes -> the flat audio token ids the model emits."""
    offsets = T.AUDIO_TOKEN_BASE + np.arange(T.FRAME_TOKENS) * T.CODEBOOK_SIZE
    return (
        (np.asarray(frames, dtype=np.int64).reshape(-1, T.FRAME_TOKENS) + offsets).ravel().tolist()
    )
