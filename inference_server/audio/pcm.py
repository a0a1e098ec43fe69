"""Float samples <-> 16-bit little-endian PCM, the wire format of every audio chunk."""

from __future__ import annotations

import numpy as np

_SCALE = 32767.0  # symmetric: +-1.0 map to +-32767, so the round trip is exact to 1/2 LSB


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Clip to [-1, 1] and encode as signed 16-bit little-endian PCM."""
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return np.rint(x * _SCALE).astype("<i2").tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Decode signed 16-bit little-endian PCM to float32 samples in [-1, 1]."""
    if len(data) % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {len(data)}")
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / _SCALE
    return np.clip(pcm, -1.0, 1.0)
