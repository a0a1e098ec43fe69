"""What a failover's seam did to the listener, read from what the listener got.

A resumed node continues after the frames the listener heard, so the audio after the
seam is a new continuation: it is judged by what was heard, not against another run.
- overlap: audio after the seam that repeats audio heard before it. Blocks of the
  post-seam audio are cross-correlated (normalised) with the pre-seam audio. The
  tiny-random SNAC decoder adds a waveform that does not depend on the codes and repeats
  every 512-sample hop (86% of the signal: unrelated stretches correlate at 0.998), so it
  is removed first (the mean of each hop phase over the whole utterance); what is left
  depends on the codes and is noise-like, so a repeat scores ~1 and the rest far lower.
- missing: the new node's first frame of the chunk in flight must be the one right after
  the frames heard of it (AudioChunk.first_frame vs the frames received), and every frame
  after the seam must come with its 2048 samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 24000
FRAME_SAMPLES = 2048  # one SNAC frame, 85.3 ms
FRAME_MS = 1000.0 * FRAME_SAMPLES / SAMPLE_RATE
HOP = 512  # SNAC's hop: the period of the tiny-random decoder's code-independent waveform
BLOCK = 2048  # one frame of audio matched at once
STEP = 512  # blocks start every 21 ms: the resolution of a repeat's length
# A repeat decodes the same frames: ~1.0. Unrelated tiny-random audio scored at most 0.66
# over 264 blocks (0.78 with 1024-sample blocks), so 0.9 leaves a wide margin both ways.
REPEAT_SCORE = 0.9


@dataclass(frozen=True, slots=True)
class AudioRecord:
    """One AudioChunk as the listener got it."""

    node: int  # 0: the first node, 1: the one resumed on
    chunk_start: int
    chunk_end: int
    first_frame: int
    codes: tuple[int, ...]
    samples: int

    @property
    def frames(self) -> int:
        return len(self.codes) // 7


@dataclass(frozen=True, slots=True)
class Seam:
    repeated_samples: int  # post-seam audio found in the pre-seam audio
    peak_score: float  # best normalised correlation of a post-seam block (1.0 = a repeat)
    heard_frames: int  # frames of the chunk in flight the listener had from the first node
    frame_offset: int  # new node's first frame index - heard_frames (<0 repeat, >0 missing)
    short_samples: int  # post-seam samples missing from frames the new node sent
    ledger_exact: bool  # ResumeFrom.heard_frame_codes == the frames heard of that chunk

    @property
    def overlap_ms(self) -> float:
        return 1000.0 * self.repeated_samples / SAMPLE_RATE

    @property
    def missing_ms(self) -> float:
        return max(0, self.frame_offset) * FRAME_MS + 1000.0 * self.short_samples / SAMPLE_RATE

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"overlap_ms": self.overlap_ms, "missing_ms": self.missing_ms}


def pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16).astype(np.float64)


def find_seam(
    pcm: bytes, at_bytes: int, audio: list[AudioRecord], resume_codes: list[int], chunk_end: int
) -> Seam:
    """The listener switched nodes after `at_bytes` bytes of PCM16 `pcm`, resuming the chunk
    ending at `chunk_end` (ResumeFrom.chunk_end; 0: none) after `resume_codes`."""
    x = code_dependent(pcm16(pcm))
    repeated, peak = repeated_samples(x[: at_bytes // 2], x[at_bytes // 2 :])
    after = [a for a in audio if a.node == 1]
    seam_chunk = chunk_end or (after[0].chunk_end if after else 0)
    heard = [c for a in audio if a.node == 0 and a.chunk_end == seam_chunk for c in a.codes]
    # the new node's first frame: right after those heard of its chunk, or a later chunk's
    # first (a chunk heard whole has nothing left to send)
    expected = len(heard) // 7 if after and after[0].chunk_end == seam_chunk else 0
    return Seam(
        repeated_samples=repeated,
        peak_score=peak,
        heard_frames=len(heard) // 7,
        frame_offset=after[0].first_frame - expected if after else 0,
        short_samples=sum(max(0, a.frames * FRAME_SAMPLES - a.samples) for a in after),
        ledger_exact=list(resume_codes) == heard,
    )


def code_dependent(x: np.ndarray) -> np.ndarray:
    """`x` without its per-hop-phase mean: the part of the audio that the codes decide."""
    n = len(x) // HOP * HOP
    hops = x[:n].reshape(-1, HOP)
    if not len(hops):
        return x
    mean = hops.mean(axis=0)
    return x - np.resize(mean, len(x))


def repeated_samples(
    before: np.ndarray, after: np.ndarray, search_s: float = 4.0
) -> tuple[int, float]:
    """Samples of the first `search_s` of `after` covered by a block that repeats audio of
    the last `search_s` of `before` (scoring >= REPEAT_SCORE), and the best block score.
    A repeat shorter than BLOCK may go unseen; one of BLOCK or more is measured to STEP."""
    n = int(search_s * SAMPLE_RATE)
    region, after = before[-n:], after[:n]
    if len(region) < BLOCK:
        return 0, 0.0
    search = _Search(region)
    starts = range(0, len(after) - BLOCK + 1, STEP)
    scores = [search.best(after[i : i + BLOCK]) for i in starts]
    covered = np.zeros(len(after), dtype=bool)
    for i, score in zip(starts, scores, strict=True):
        covered[i : i + BLOCK] |= score >= REPEAT_SCORE
    return int(covered.sum()), max(scores, default=0.0)


class _Search:
    """Normalised cross-correlation of BLOCK-sample blocks against one region."""

    def __init__(self, region: np.ndarray) -> None:
        self.size = 1 << (len(region) + BLOCK - 1).bit_length()
        self.spectrum = np.fft.rfft(region, self.size)
        self.lags = len(region) - BLOCK + 1
        sums = np.concatenate([[0.0], np.cumsum(np.square(region))])
        self.energy = np.maximum(sums[BLOCK:] - sums[:-BLOCK], 1e-9)[: self.lags]

    def best(self, block: np.ndarray) -> float:
        """Best score of `block` anywhere in the region (0 for a silent block)."""
        norm = float(np.linalg.norm(block))
        if norm < 1e-6:
            return 0.0
        corr = np.fft.irfft(self.spectrum * np.conj(np.fft.rfft(block, self.size)), self.size)
        return float(np.max(corr[: self.lags] / (norm * np.sqrt(self.energy))))
