"""PCM16 wire format: little-endian, clipped, and a round trip within half an LSB."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.audio.pcm import float_to_pcm16, pcm16_to_float


def test_round_trip_is_within_half_an_lsb() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 4801).astype(np.float32)
    data = float_to_pcm16(x)
    assert len(data) == 2 * len(x)
    np.testing.assert_allclose(pcm16_to_float(data), x, atol=0.5 / 32767 + 1e-7)


def test_clips_and_is_little_endian() -> None:
    data = float_to_pcm16(np.array([2.0, -3.0, 1.0, -1.0, 0.0, 0.5], dtype=np.float32))
    assert data[:4] == b"\xff\x7f\x01\x80"  # 32767, -32767 little endian
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32767, 32767, -32767, 0, 16384]
    back = pcm16_to_float(data)
    assert back.dtype == np.float32 and back.min() >= -1.0 and back.max() <= 1.0
    assert pcm16_to_float(b"\x00\x80").tolist() == [-1.0]  # -32768 is clipped to -1


def test_odd_byte_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        pcm16_to_float(b"\x00\x01\x02")
