"""What the simulated fleet is asked to say: arrivals, voices and utterance lengths.

Arrivals are Poisson with a diurnal rate (the simulated hour straddles the daily peak);
voices are Zipf over thousands of LoRA adapters; an utterance is a short reply, a longer
answer or a story of up to 20 minutes (generated in chunks on one node, as the product
splits long text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Mix:
    """Utterance kinds: (share, median audio s, lognormal sigma, min s, max s)."""

    kinds: tuple[tuple[str, float, float, float, float, float], ...] = (
        ("reply", 0.70, 3.0, 0.6, 0.5, 20.0),
        ("answer", 0.22, 12.0, 0.5, 4.0, 60.0),
        ("story", 0.08, 300.0, 0.8, 60.0, 1200.0),
    )
    prompt_tokens: int = 60  # "[SOH] voice: text [EOT EOH SOA SOS]" for one chunk of text
    chunk_audio_s: float = 33.0  # 300 chars x 9 tokens/char / 82 tok/s: one chunk's audio

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(audio seconds, kind index) for n utterances."""
        shares = np.array([k[1] for k in self.kinds])
        kind = rng.choice(len(self.kinds), size=n, p=shares / shares.sum())
        audio = np.empty(n)
        for i, (_, _, median, sigma, lo, hi) in enumerate(self.kinds):
            pick = kind == i
            audio[pick] = np.clip(rng.lognormal(math.log(median), sigma, pick.sum()), lo, hi)
        return audio, kind


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Poisson arrivals at `peak_per_s` times a diurnal profile (trough = depth below peak)."""

    peak_per_s: float
    depth: float = 0.6
    start_before_peak_s: float = 1800.0

    def rate(self, t: np.ndarray | float) -> np.ndarray | float:
        phase = 2 * math.pi * (np.asarray(t) - self.start_before_peak_s) / DAY_S
        return self.peak_per_s * (1 - self.depth * (1 - np.cos(phase)) / 2)

    def times(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        """Arrival instants in [0, duration) by thinning a peak-rate Poisson process."""
        n = rng.poisson(self.peak_per_s * duration_s)
        t = np.sort(rng.uniform(0.0, duration_s, n))
        keep = rng.uniform(0.0, 1.0, n) < self.rate(t) / self.peak_per_s
        return t[keep]


def zipf_voices(rng: np.random.Generator, n_voices: int, s: float, n: int) -> np.ndarray:
    """Voice ranks (0 = most popular) for n utterances."""
    weights = 1.0 / np.arange(1, n_voices + 1) ** s
    return rng.choice(n_voices, size=n, p=weights / weights.sum())


def zipf_shares(n_voices: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_voices + 1) ** s
    return weights / weights.sum()


def time_mean_context(mix: Mix, rng: np.random.Generator, n: int = 20_000) -> float:
    """KV context a stream holds, averaged over the time streams are live (for capacity)."""
    from inference_server.orpheus.tokens import TOKENS_PER_SECOND

    audio, _ = mix.sample(rng, n)
    chunk = mix.chunk_audio_s
    full, rest = np.floor(audio / chunk), audio % chunk
    # within a chunk of c seconds the context grows linearly: mean prompt + c/2 * 82 tokens
    ctx_time = full * chunk * (mix.prompt_tokens + chunk / 2 * TOKENS_PER_SECOND)
    ctx_time += rest * (mix.prompt_tokens + rest / 2 * TOKENS_PER_SECOND)
    return float(ctx_time.sum() / audio.sum())
