"""The fast CPU kernels and the cropped decode give the stock SNAC's samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from snac.layers import Snake1d
from torch import nn

from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_kernels import (
    InPlaceSnake1d,
    PackedConvTranspose1d,
    ShiftedDepthwiseConv1d,
    use_fast_kernels,
)
from inference_server.codec.snac_model import load_snac
from inference_server.codec.stream_decoder import DecodeWindow
from inference_server.orpheus.codes import frames_to_codes

SPF = 2048


@pytest.fixture(scope="module")
def stock() -> nn.Module:
    return load_snac("random", seed=0, fast_kernels=False)


@pytest.fixture(scope="module")
def fast() -> nn.Module:
    return load_snac("random", seed=0)


def uncropped(model: nn.Module, frames: np.ndarray) -> np.ndarray:
    """SNAC's own decode of the whole window."""
    codes = [torch.from_numpy(book[None]) for book in frames_to_codes(frames)]
    with torch.inference_mode():
        return model.decode(codes)[0, 0].numpy()


def test_in_place_snake_equals_snac_snake() -> None:
    snake = Snake1d(16)
    with torch.no_grad():
        snake.alpha.uniform_(0.2, 3.0)
    x = torch.randn(2, 16, 500)
    with torch.inference_mode():
        torch.testing.assert_close(InPlaceSnake1d(snake.alpha)(x), snake(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dilation", [3, 9])
def test_shifted_depthwise_equals_conv1d(dilation: int) -> None:
    conv = nn.Conv1d(8, 8, kernel_size=7, dilation=dilation, padding=3 * dilation, groups=8)
    x = torch.randn(3, 8, 300)
    with torch.inference_mode():
        torch.testing.assert_close(ShiftedDepthwiseConv1d(conv)(x), conv(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride", [8, 3])
def test_packed_conv_transpose_equals_conv_transpose(stride: int) -> None:
    conv = nn.ConvTranspose1d(
        32, 16, 2 * stride, stride, padding=-(-stride // 2), output_padding=stride % 2
    )
    x = torch.randn(3, 32, 21)
    with torch.inference_mode():
        torch.testing.assert_close(PackedConvTranspose1d(conv)(x), conv(x), atol=1e-5, rtol=0)


def test_only_the_big_upsampler_is_packed(fast: nn.Module) -> None:
    packed = [m for m in fast.decoder.modules() if isinstance(m, PackedConvTranspose1d)]
    stock_form = [m for m in fast.decoder.modules() if isinstance(m, nn.ConvTranspose1d)]
    assert [m.weight.shape[:2] for m in packed] == [(1024, 512)]
    assert len(stock_form) == 3


def test_only_matching_layers_are_swapped() -> None:
    model = nn.Sequential(
        Snake1d(4),
        nn.Conv1d(4, 4, 7, dilation=3, padding=9, groups=4),  # swapped
        nn.Conv1d(4, 4, 7, padding=3, groups=4),  # dilation 1: oneDNN is faster
        nn.Conv1d(4, 4, 7, dilation=3, padding=3, groups=4),  # not 'same': kept
        nn.Conv1d(4, 8, 7, dilation=3, padding=9, groups=4),  # not depthwise: kept
    )
    assert use_fast_kernels(model) == 2
    assert [type(m).__name__ for m in model] == [
        "InPlaceSnake1d",
        "ShiftedDepthwiseConv1d",
        "Conv1d",
        "Conv1d",
        "Conv1d",
    ]


def test_fast_model_decodes_like_stock(stock: nn.Module, fast: nn.Module) -> None:
    frames = np.random.default_rng(4).integers(0, 4096, (6, 7))
    np.testing.assert_allclose(uncropped(fast, frames), uncropped(stock, frames), atol=2e-6)


@pytest.mark.parametrize(
    ("n", "keep"),
    [(6, (3, 4)), (21, (3, 19)), (5, (0, 3)), (8, (3, 8)), (3, (0, 3)), (1, (0, 1))],
    ids=["one-frame", "sixteen", "stream-start", "finish", "whole", "single"],
)
def test_cropped_window_equals_uncropped_decode(
    stock: nn.Module, fast: nn.Module, n: int, keep: tuple[int, int]
) -> None:
    frames = np.random.default_rng(n).integers(0, 4096, (n, 7))
    window = DecodeWindow(frames, keep[0] * SPF, keep[1] * SPF, keep[0])
    expected = uncropped(stock, frames)[window.keep_start : window.keep_end]
    for model in (stock, fast):
        (got,) = SnacDecoder(model).decode_windows([window])
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2e-6)


def test_windows_with_different_keep_ranges_batch_correctly(fast: nn.Module) -> None:
    rng = np.random.default_rng(7)
    windows = [
        DecodeWindow(rng.integers(0, 4096, (6, 7)), 3 * SPF, 4 * SPF, 3),
        DecodeWindow(rng.integers(0, 4096, (6, 7)), 3 * SPF, 4 * SPF, 9),
        DecodeWindow(rng.integers(0, 4096, (6, 7)), 0, 4 * SPF, 0),
    ]
    decoder = SnacDecoder(fast)
    for window, got in zip(windows, decoder.decode_windows(windows), strict=True):
        expected = uncropped(fast, window.frames)[window.keep_start : window.keep_end]
        np.testing.assert_allclose(got, expected, atol=2e-6)
