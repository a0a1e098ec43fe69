"""A chunk that keeps going after its text is spoken: how it is bounded and how it is caught.

Two guards, both counted in SegmentMetrics.chunks_overrun:
- length: a chunk's token budget is its text's overrun limit (orpheus/speech_length.py:
  `--overrun-factor` times the estimate, plus a second), so the engine itself stops a
  chunk that runs that far past its text. A budget set lower by the client's `max_tokens`
  is the client's choice, counted apart (chunks_budget_capped).
- loop: the model repeats itself. Over the last `window` frames, the coarse (12 Hz)
  codes are compared with the same frames one period earlier, for every period up to
  `max_period` frames; when `match` of them agree the chunk is cut. Speech never repeats
  its coarse codes that regularly for seconds; a looping model does (greedy tiny-random
  without a repetition penalty falls into 1- to 5-frame cycles within ~150 frames).
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

from ..engine.base import SamplingConfig
from ..orpheus import tokens as T
from ..orpheus.speech_length import overrun_limit_s

LOOP_WINDOW_FRAMES = 32  # 2.7 s of audio judged at once
LOOP_MAX_PERIOD = 16  # frames: a repeated word or short phrase (1.4 s)
LOOP_MATCH = 0.7


class ChunkEnd(Enum):
    SPOKEN = "spoken"  # the model ended it
    LOOP = "loop"  # cut: its codes repeat
    LENGTH = "length"  # stopped at its overrun limit
    MAX_TOKENS = "max_tokens"  # stopped at the client's max_tokens


def chunk_budget(
    text: str, language: str, factor: float, sampling: SamplingConfig
) -> tuple[int, bool]:
    """(token budget, whether the client's max_tokens set it) for a chunk speaking `text`."""
    limit_s = overrun_limit_s(text, language, factor)
    cap = sampling.max_tokens // T.FRAME_TOKENS
    frames = cap if math.isinf(limit_s) else math.ceil(limit_s * 1000.0 / T.FRAME_MS)
    return max(1, min(cap, frames)) * T.FRAME_TOKENS, cap <= frames


class LoopDetector:
    """Watches one chunk's frames for an audio-code loop."""

    def __init__(
        self,
        window: int = LOOP_WINDOW_FRAMES,
        max_period: int = LOOP_MAX_PERIOD,
        match: float = LOOP_MATCH,
    ) -> None:
        self.window, self.max_period, self.match = window, max_period, match
        self._coarse: list[int] = []

    def push(self, frames: list[np.ndarray]) -> bool:
        """Add frames (7 codes each); True once the chunk is looping."""
        if not frames:  # most token batches complete no frame: nothing new to judge
            return False
        self._coarse.extend(int(f[0]) for f in frames)
        span = self.window + self.max_period
        if len(self._coarse) < span:
            return False
        recent = np.asarray(self._coarse[-span:])
        now = recent[self.max_period :]
        return any(
            float(np.mean(now == recent[self.max_period - p : span - p])) >= self.match
            for p in range(1, self.max_period + 1)
        )
