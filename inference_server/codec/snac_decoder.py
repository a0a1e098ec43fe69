"""Decode many streams' windows with one batched SNAC forward pass per window length."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from snac import SNAC

from ..orpheus.codes import frames_to_codes
from .stream_decoder import DecodeWindow


class SnacDecoder:
    """Owns the SNAC model; turns decode windows into float32 samples in [-1, 1]."""

    def __init__(self, model: SNAC) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device

    def decode_windows(self, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
        """Samples kept by each window, in input order; same-length windows share one pass."""
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, window in enumerate(windows):
            by_length[window.num_frames].append(i)
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(windows)
        for indices in by_length.values():
            audio = self._decode_batch([windows[i].frames for i in indices])
            for row, i in enumerate(indices):
                out[i] = audio[row, windows[i].keep_start : windows[i].keep_end].copy()
        return out

    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Full decode of one sequence of frames (n, 7) -> 2048 * n samples."""
        return self._decode_batch([np.asarray(frames, dtype=np.int64)])[0]

    def _decode_batch(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        books = zip(*(frames_to_codes(frames) for frames in batch), strict=True)
        codes = [torch.from_numpy(np.stack(book)).to(self.device) for book in books]
        with torch.inference_mode():
            audio = self.model.decode(codes)
        return audio[:, 0].float().cpu().numpy()
