"""Streaming removal of the near-silence Orpheus voices put at the start of a segment.

Loudness is the RMS of consecutive `window_ms` windows, in dBFS relative to a
full-scale amplitude of 1.0. The default threshold of -40 dBFS sits between the
codec's near-silence (about -60 to -50 dBFS) and speech (voiced windows about -30 to
-15 dBFS), with one window of pre-roll kept before the onset so soft consonants
that start just below the threshold survive. The cut gets a short linear fade-in so
it never clicks; a segment that starts loud is passed through untouched.
"""

from __future__ import annotations

import numpy as np

from ..orpheus.tokens import SAMPLE_RATE


class HeadSilenceTrimmer:
    """Drops a segment's leading near-silence; passes everything from the speech onset on."""

    def __init__(
        self,
        threshold_dbfs: float = -40.0,
        window_ms: float = 10.0,
        fade_ms: float = 5.0,
        sample_rate: int = SAMPLE_RATE,
        *,
        pre_roll_ms: float = 10.0,
        max_trim_ms: float = 2000.0,
    ) -> None:
        if window_ms <= 0 or fade_ms < 0 or pre_roll_ms < 0 or max_trim_ms < 0:
            raise ValueError("window_ms must be > 0; fade_ms, pre_roll_ms, max_trim_ms >= 0")
        self.threshold_dbfs = threshold_dbfs
        self.sample_rate = sample_rate
        self._window = max(1, round(window_ms * sample_rate / 1000))
        self._fade = round(fade_ms * sample_rate / 1000)
        self._pre_roll = round(pre_roll_ms * sample_rate / 1000)
        self._max_trim = round(max_trim_ms * sample_rate / 1000)
        self._threshold_ms = (10.0 ** (threshold_dbfs / 20.0)) ** 2  # mean-square threshold
        self.reset()

    def reset(self) -> None:
        """Start a new segment."""
        self._held = np.empty(0, dtype=np.float32)
        self._scanned = 0  # samples of `_held` already judged silent
        self._trimmed = 0
        self._passing = False
        self._fade_pos = self._fade  # no fade unless a cut happens
        self.all_silent = False  # set by flush() when the whole segment was silence

    @property
    def trimmed_samples(self) -> int:
        return self._trimmed

    @property
    def trimmed_ms(self) -> float:
        return 1000.0 * self._trimmed / self.sample_rate

    @property
    def in_speech(self) -> bool:
        return self._passing

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Samples to send now: nothing while still silent, then everything (faded at the cut)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._passing:
            return self._apply_fade(x)
        self._held = np.concatenate([self._held, x])
        onset = self._find_onset()
        if onset is None:
            self._discard_judged()
            return np.empty(0, dtype=np.float32)
        cut = max(0, onset - self._pre_roll)
        self._trimmed += cut
        if self._trimmed:  # something was cut away: fade in so the new start never clicks
            self._fade_pos = 0
        rest, self._held, self._passing = self._held[cut:], self._held[:0], True
        return self._apply_fade(rest)

    def flush(self) -> np.ndarray:
        """End of a still-silent segment: nothing is sent, all of it counts as trimmed."""
        if not self._passing:
            self._trimmed += len(self._held)
            self._held = self._held[:0]
            self.all_silent = True
        return np.empty(0, dtype=np.float32)

    def _find_onset(self) -> int | None:
        """Index in `_held` where speech starts (or the trim cap is hit), else None."""
        while self._scanned + self._window <= len(self._held):
            if self._trimmed + self._scanned >= self._max_trim:
                return self._scanned + self._pre_roll  # cap: stop trimming here
            window = self._held[self._scanned : self._scanned + self._window]
            if float(np.mean(np.square(window, dtype=np.float64))) >= self._threshold_ms:
                return self._scanned
            self._scanned += self._window
        return None

    def _discard_judged(self) -> None:
        # Keep only the pre-roll of what is already judged silent, so holding stays O(window).
        drop = self._scanned - self._pre_roll
        if drop > 0:
            self._held = self._held[drop:]
            self._scanned -= drop
            self._trimmed += drop

    def _apply_fade(self, x: np.ndarray) -> np.ndarray:
        if self._fade_pos >= self._fade or not len(x):
            return x
        n = min(self._fade - self._fade_pos, len(x))
        ramp = np.arange(self._fade_pos + 1, self._fade_pos + n + 1, dtype=np.float32) / (
            self._fade + 1
        )
        self._fade_pos += n
        out = x.copy()
        out[:n] *= ramp
        return out
