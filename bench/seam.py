"""Where a failover's audio seam sits, read from the audio itself.

The utterance the listener heard across a failover is compared with the same session
spoken start to end on a healthy node (same seed, so the same tokens): the audio after
the seam is located in the uninterrupted run by cross-correlation. An offset of 0 means
every sample was heard once; a negative offset is audio heard twice, a positive one is
audio that was never heard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 24000
FRAME_SAMPLES = 2048  # one SNAC frame, 85.3 ms
WINDOW_FRAMES = 4  # audio after the seam matched at once: long enough to be unambiguous


@dataclass(frozen=True, slots=True)
class Seam:
    offset_samples: int  # where the audio after the seam sits in the reference, relative
    before_rel_err: float  # relative RMS error of the audio before the seam vs the reference
    after_rel_err: float  # the same for the audio after it, once aligned
    tail_samples_missing: int  # reference audio past the end of what the listener heard

    @property
    def overlap_ms(self) -> float:
        return 1000.0 * max(0, -self.offset_samples) / SAMPLE_RATE

    @property
    def missing_ms(self) -> float:
        return 1000.0 * max(0, self.offset_samples) / SAMPLE_RATE

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"overlap_ms": self.overlap_ms, "missing_ms": self.missing_ms}


def pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16).astype(np.float64)


def find_seam(heard: bytes, reference: bytes, at_bytes: int, search_s: float = 4.0) -> Seam:
    """`heard` switched nodes after `at_bytes` bytes of PCM16; locate the rest in `reference`."""
    x, ref, at = pcm16(heard), pcm16(reference), at_bytes // 2
    window = x[at : at + WINDOW_FRAMES * FRAME_SAMPLES]
    search = int(search_s * SAMPLE_RATE)
    lo = max(0, at - search)
    region = ref[lo : at + search + len(window)]
    offset = lo + _best_lag(region, window) - at
    after = x[at:]
    aligned = ref[at + offset : at + offset + len(after)]
    return Seam(
        offset_samples=offset,
        before_rel_err=_rel_err(x[:at], ref[:at]),
        after_rel_err=_rel_err(after[: len(aligned)], aligned),
        tail_samples_missing=len(ref) - (at + offset + len(after)),
    )


def _best_lag(region: np.ndarray, window: np.ndarray) -> int:
    """Start in `region` where `window` matches best (normalised cross-correlation)."""
    n = len(region) + len(window)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(region, size) * np.conj(np.fft.rfft(window, size)), size)
    lags = len(region) - len(window) + 1
    energy = np.convolve(np.square(region), np.ones(len(window)), "valid")[:lags]
    score = corr[:lags] / np.sqrt(np.maximum(energy, 1e-9))
    return int(np.argmax(score))


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    if n == 0:
        return 0.0
    return float(np.sqrt(np.mean((a[:n] - b[:n]) ** 2) / max(np.mean(b[:n] ** 2), 1e-9)))
