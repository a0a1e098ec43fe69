"""Faster CPU forms of SNAC's two hottest layers, with the same arithmetic.

Measured on this 2-core CPU, one thread, the 24 kHz decoder's last block (64 channels
at 24 kHz): `snake` as SNAC writes it allocates four full-size temporaries and takes
8.5 ms per call where the in-place form takes 3.6 ms; oneDNN's dilated depthwise
convolution takes 10-12 ms where seven shifted multiply-adds take 2.6-3.1 ms. Both
give bitwise-equal or 1-ulp results, so streamed and full decodes keep matching the
stock model (tests/test_codec_snac_kernels.py). Snake and the dilated convolutions
are about half of a decode's time.

oneDNN's transposed convolution reorders its weight on every call. For the first
upsampler (1024 -> 512 channels, kernel 16: a 33 MB weight) that is a fixed 25-30 ms
per call whatever the length, most of a small streaming window's decode (a 1-frame
window took 70 ms, 38 of them in this one layer). As a matrix product against a
weight packed once, then an overlap-add, it takes 8 ms at a 1-frame window's 22
positions and 18 ms at a 16-frame window's 82 (42 ms before). The smaller upsamplers'
weights reorder quickly, and there oneDNN is as fast or faster, so they stay.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from snac.layers import Snake1d
from torch import nn


class InPlaceSnake1d(nn.Module):
    """x + sin(alpha x)^2 / alpha, one temporary instead of four.

    The sine is NumPy's: its float32 SIMD sine takes 2.1 ms on 2.1 M values here where
    torch's takes 5.1 ms, and it is as close to a float64 snake (1.1e-6 at most on the
    last block's activations, as torch's is). Sine is most of a snake's time, and snakes
    a third of a decode's.
    """

    def __init__(self, alpha: nn.Parameter) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv_alpha = (self.alpha + 1e-9).reciprocal()
        out = torch.mul(x, self.alpha)
        if out.requires_grad or out.device.type != "cpu":
            out.sin_()
        else:
            values = out.numpy()
            np.sin(values, out=values)
        return out.square_().mul_(inv_alpha).add_(x)


class ShiftedDepthwiseConv1d(nn.Module):
    """A stride-1, 'same'-padded depthwise Conv1d as `kernel` shifted multiply-adds."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.weight = conv.weight  # (channels, 1, kernel)
        self.bias = conv.bias
        self.dilation = conv.dilation[0]
        self.padding = conv.padding[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.valid(F.pad(x, (self.padding, self.padding)))

    def valid(self, padded: torch.Tensor) -> torch.Tensor:
        """The convolution of an already padded input (no padding of its own)."""
        length = padded.shape[-1] - 2 * self.padding
        taps = self.weight[:, 0, :].unsqueeze(-1)  # (channels, kernel, 1)
        out = padded[..., :length] * taps[:, 0]
        for k in range(1, taps.shape[1]):
            start = k * self.dilation
            out.addcmul_(padded[..., start : start + length], taps[:, k])
        if self.bias is not None:
            out.add_(self.bias.unsqueeze(-1))
        return out


class PackedConvTranspose1d(nn.Module):
    """A ConvTranspose1d with kernel = 2 x stride as one packed matrix product plus an
    overlap-add: each input position writes two stride-long blocks of output."""

    def __init__(self, conv: nn.ConvTranspose1d) -> None:
        super().__init__()
        in_channels, out_channels, kernel = conv.weight.shape
        self.kernel_size, self.stride = conv.kernel_size, conv.stride  # read by the crop's reach
        self.padding = conv.padding[0]
        self.output_padding = conv.output_padding[0]
        self.out_channels = out_channels
        self.weight = conv.weight  # kept: the model's parameters and state dict stay SNAC's
        matrix = conv.weight.detach().permute(1, 2, 0).reshape(out_channels * kernel, in_channels)
        self.register_buffer("packed", matrix.contiguous().to_mkldnn(), persistent=False)
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, stride = x.shape[-1], self.stride[0]
        size = (length - 1) * stride - 2 * self.padding + 2 * stride + self.output_padding
        out = self.overlap_add(x)[..., self.padding : self.padding + size]
        return out if self.bias is None else out + self.bias.unsqueeze(-1)

    def overlap_add(self, x: torch.Tensor) -> torch.Tensor:
        """The whole (length + 1) x stride output, before padding crops it and bias."""
        batch, in_channels, length = x.shape
        stride, channels = self.stride[0], self.out_channels
        rows = x.transpose(1, 2).reshape(batch * length, in_channels).to_mkldnn()
        blocks = torch._C._nn.mkldnn_linear(rows, self.packed, None).to_dense()
        blocks = blocks.view(batch, length, channels, 2, stride)
        out = x.new_empty(batch, length + 1, channels, stride)
        out[:, :length] = blocks[:, :, :, 0]
        out[:, length].zero_()
        out[:, 1:] += blocks[:, :, :, 1]
        return out.permute(0, 2, 1, 3).reshape(batch, channels, (length + 1) * stride)


def use_fast_kernels(model: nn.Module) -> int:
    """Swap SNAC's snakes, dilated depthwise convolutions and its big upsampler in place;
    return the count."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            replacement = _fast_form(child)
            if replacement is not None:
                setattr(parent, name, replacement)
                swapped += 1
    return swapped


def _fast_form(module: nn.Module) -> nn.Module | None:
    if isinstance(module, Snake1d):
        return InPlaceSnake1d(module.alpha)
    if _is_dilated_same_depthwise(module):
        return ShiftedDepthwiseConv1d(module)
    if _is_big_double_stride_upsampler(module) and torch.backends.mkldnn.is_available():
        return PackedConvTranspose1d(module)
    return None


PACKED_MIN_WEIGHTS = 1 << 22  # 16 MB of float32: where oneDNN's per-call reorder shows


def _is_big_double_stride_upsampler(module: nn.Module) -> bool:
    return (
        type(module) is nn.ConvTranspose1d
        and module.groups == 1
        and module.dilation == (1,)
        and module.kernel_size[0] == 2 * module.stride[0]
        and module.padding_mode == "zeros"
        and module.weight.numel() >= PACKED_MIN_WEIGHTS
    )


def _is_dilated_same_depthwise(module: nn.Module) -> bool:
    # Dilation 1 stays with oneDNN, which is faster there (2.1 vs 2.5 ms).
    return (
        type(module) is nn.Conv1d
        and module.groups == module.in_channels == module.out_channels
        and module.stride == (1,)
        and module.dilation[0] > 1
        and module.padding_mode == "zeros"
        and isinstance(module.padding, tuple)
        and 2 * module.padding[0] == module.dilation[0] * (module.kernel_size[0] - 1)
    )
