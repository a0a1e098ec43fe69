"""Decode many streams' windows with batched SNAC forward passes that skip unkept audio."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from snac import SNAC
from torch import nn

from ..orpheus.codes import frames_to_codes
from ..orpheus.tokens import SAMPLES_PER_FRAME
from .snac_kernels import PackedConvTranspose1d, ShiftedDepthwiseConv1d
from .stream_decoder import DecodeWindow


@dataclass(frozen=True, slots=True)
class _Stage:
    """One top-level decoder layer: audio samples per output position, and how far the
    layers after it can see (in samples), i.e. the margin a crop must keep."""

    layer: nn.Module
    samples_per_position: int
    reach_after: int


class SnacDecoder:
    """Owns the SNAC model; turns decode windows into float32 samples in [-1, 1].

    A window decodes its context frames only so that its kept frames see the right
    neighbours. After each decoder layer the activations are cropped to the kept range
    plus what the remaining layers can still see, so the expensive high-rate layers
    (about 90% of the time) run on little more than the kept frames. The kept samples
    are the same as an uncropped decode of the window (tests compare both).
    """

    def __init__(self, model: SNAC) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self._stages = _stages(model)

    def decode_windows(self, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
        """Samples kept by each window, in input order; same-shape windows share one pass."""
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for i, w in enumerate(windows):
            groups[w.shape].append(i)
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(windows)
        for (_, keep_start, keep_end), indices in groups.items():
            audio = self._decode([windows[i].frames for i in indices], keep_start, keep_end)
            for row, i in enumerate(indices):
                out[i] = audio[row].copy()
        return out

    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Full decode of one sequence of frames (n, 7) -> 2048 * n samples."""
        frames = np.asarray(frames, dtype=np.int64)
        return self._decode([frames], 0, len(frames) * SAMPLES_PER_FRAME)[0]

    def _decode(self, batch: Sequence[np.ndarray], keep_start: int, keep_end: int) -> np.ndarray:
        books = zip(*(frames_to_codes(frames) for frames in batch), strict=True)
        codes = [torch.from_numpy(np.stack(book)).to(self.device) for book in books]
        with torch.inference_mode():
            x = self.model.quantizer.from_codes(codes)
            offset = 0  # audio sample at which x's first position starts
            for stage in self._stages:
                x = stage.layer(x)
                step = stage.samples_per_position
                lo = max(0, (keep_start - stage.reach_after - offset) // step)
                hi = min(x.shape[-1], -(-(keep_end + stage.reach_after - offset) // step))
                x = x[..., lo:hi]
                offset += lo * step
        return x[:, 0, keep_start - offset : keep_end - offset].float().cpu().numpy()


def _stages(model: SNAC) -> list[_Stage]:
    layers = list(model.decoder.model)
    scale = int(model.hop_length)  # samples per latent position
    scales, reaches = [], []
    for layer in layers:
        reach, scale = _reach(layer, scale)
        scales.append(scale)
        reaches.append(reach)
    # One extra position of margin per stage guards the rounding in _reach.
    after = [sum(reaches[i + 1 :]) + scales[i] for i in range(len(layers))]
    return [_Stage(*t) for t in zip(layers, scales, after, strict=True)]


def _reach(layer: nn.Module, scale: int) -> tuple[int, int]:
    """Samples either side an output of `layer` can depend on; and its output scale."""
    reach = 0
    for module in layer.modules():
        if isinstance(module, nn.ConvTranspose1d | PackedConvTranspose1d):
            reach += math.ceil(module.kernel_size[0] / module.stride[0]) * scale
            scale //= module.stride[0]
        elif isinstance(module, nn.Conv1d | ShiftedDepthwiseConv1d):
            kernel, dilation = _kernel_and_dilation(module)
            reach += math.ceil((kernel - 1) * dilation / 2) * scale
    return reach, scale


def _kernel_and_dilation(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, ShiftedDepthwiseConv1d):
        return module.weight.shape[-1], module.dilation
    return module.kernel_size[0], module.dilation[0]
