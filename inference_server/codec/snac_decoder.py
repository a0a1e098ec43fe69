"""Decode many streams' windows with batched SNAC forward passes that skip unkept audio."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from snac import SNAC
from snac.layers import DecoderBlock
from torch import nn

from ..orpheus.codes import frames_to_codes
from ..orpheus.tokens import CODEBOOK_SIZE, FRAME_TOKENS, SAMPLES_PER_FRAME
from .snac_kernels import PackedConvTranspose1d, ShiftedDepthwiseConv1d
from .snac_stream import StreamingLayer, StreamState, UnsupportedLayer, streaming
from .stream_decoder import DecodeWindow, SnacStreamDecoder


@dataclass(frozen=True, slots=True)
class _Stage:
    """One decoder layer (an upsampling block's layers count one by one): audio samples
    per output position, and how far the layers after it can see (in samples), i.e. the
    margin a crop must keep."""

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

    On CPU a stream's windows (those carrying a `CodecState`) decode incrementally
    instead, each alone: every frame once (codec/snac_stream.py). Batching windows of
    several streams into one call saved nothing on this CPU (4 windows in one call cost
    4 windows' time) while it is what a GPU needs.
    """

    def __init__(self, model: SNAC, *, incremental: bool | None = None) -> None:
        """`incremental`: decode the windows of a stream that carry a `CodecState` with
        `snac_stream`'s per-stream state (each frame decoded once) instead of windowed
        (its context frames again per window). Default: on CPU, where a call costs its
        frames; a GPU decodes many streams' windows in one batched pass instead."""
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self._stages = _stages(model)
        self._latent_channels = model.quantizer.quantizers[0].out_proj.out_channels
        if incremental is None:
            incremental = self.device.type == "cpu"
        self._incremental = _incremental_layers(model) if incremental else None

    @property
    def incremental(self) -> bool:
        """Windows with a `CodecState` decode incrementally (their stream's state kept)."""
        return self._incremental is not None

    def decode_windows(self, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
        """Samples kept by each window, in input order; same-shape windows share one pass
        (a window of an incrementally decoded stream decodes alone)."""
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(windows)
        for i, w in enumerate(windows):
            if w.codec is not None and self._incremental is not None:
                out[i] = self._decode_incremental(w)
            else:
                groups[w.shape].append(i)
        for (_, keep_start, keep_end), indices in groups.items():
            audio = self._decode([windows[i].frames for i in indices], keep_start, keep_end)
            for row, i in enumerate(indices):
                out[i] = audio[row].copy()
        return out

    def warm_up(self, max_frames: int) -> int:
        """Decode one stream of random codes in windows of 1, 2, ... `max_frames` frames
        and return how many windows that was. A thread's first decode of each window shape
        costs up to twice the later ones (torch sets each convolution shape up once per
        process, and again per thread), which a fresh node's first streams would pay."""
        stream = SnacStreamDecoder(min_lead_ms=0, incremental=self.incremental)
        rows = max(max_frames, stream.right_context)
        codes = np.random.default_rng(0).integers(0, CODEBOOK_SIZE, (rows, FRAME_TOKENS))
        windows = stream.push(codes[: stream.right_context])
        for frames in range(1, max_frames + 1):
            windows += stream.push(codes[:frames])
        windows += stream.finish()
        for window in windows:
            self.decode_windows([window])
        return len(windows)

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

    def _decode_incremental(self, window: DecodeWindow) -> np.ndarray:
        assert window.codec is not None and self._incremental is not None
        first = window.frames_start
        state = window.codec.state
        if state is None:
            state = window.codec.state = StreamState.starting_at(
                first, window.keep_start, len(self._stages)
            )
        assert isinstance(state, StreamState)
        new_from = state.origin + state.frames_in  # the stream's next frame not yet decoded
        shift = (first - state.origin) * SAMPLES_PER_FRAME
        start, end = shift + window.keep_start, shift + window.keep_end
        if start != state.handed_out or not first <= new_from <= first + window.num_frames:
            raise RuntimeError(
                f"a stream's windows decode in order: this one keeps samples from {start}, "
                f"the last one ended at {state.handed_out}"
            )
        state.handed_out = end
        with torch.inference_mode():
            provisional = self._advance(state, window.frames[new_from - first :], end)
            audio = self._take(state, provisional, start, end)
        return audio.float().cpu().numpy()

    def _advance(self, state: StreamState, frames: np.ndarray, end: int) -> torch.Tensor:
        """Run the new frames through every layer and commit what they complete; return
        the provisional samples after the committed ones, up to `end`, as a decode of
        the frames so far would end them. Each layer's provisional outputs are cropped to
        what the layers after it need for `end` (`_Stage.reach_after`)."""
        assert self._incremental is not None
        if len(frames):
            books = frames_to_codes(frames)
            x = self.model.quantizer.from_codes([torch.from_numpy(b[None]) for b in books])
        else:
            x = torch.empty(1, self._latent_channels, 0)
        x, done = x.to(self.device), x.shape[-1]
        for i, (stage, layer) in enumerate(zip(self._stages, self._incremental, strict=True)):
            x, done, state.layers[i] = layer.run(state.layers[i], x, done)
            needed = -(-(end + stage.reach_after) // stage.samples_per_position)
            x = x[..., : max(done, needed - state.produced[i])]
            state.produced[i] += done
        state.committed = torch.cat([state.committed.to(x), x[0, 0, :done]])
        state.frames_in += len(frames)
        return x[0, 0, done:]

    def _take(self, state: StreamState, provisional: torch.Tensor, start: int, end: int):
        """Samples [start, end) of the stream: committed ones, then provisional ones."""
        final = state.produced[-1]
        kept = [state.committed[start - state.committed_from : end - state.committed_from]]
        if end > final:
            kept.append(provisional[max(0, start - final) : end - final])
        cut = max(state.committed_from, min(end, final))
        state.committed = state.committed[cut - state.committed_from :]
        state.committed_from = cut
        return torch.cat(kept)


def _layers(model: SNAC) -> list[nn.Module]:
    """The decoder's layers, each upsampling block's own layers one by one: a crop after
    each residual unit, not only after each block, keeps a small window's right edge
    small (block 1's units once ran on 67 positions for the 14 that were kept)."""
    layers: list[nn.Module] = []
    for layer in model.decoder.model:
        layers.extend(layer.block if isinstance(layer, DecoderBlock) else [layer])
    return layers


def _incremental_layers(model: SNAC) -> list[StreamingLayer] | None:
    try:
        return [streaming(layer) for layer in _layers(model)]
    except UnsupportedLayer:
        return None


def _stages(model: SNAC) -> list[_Stage]:
    layers = _layers(model)
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
