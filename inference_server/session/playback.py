"""The listener's side of a stream, as the server can know it."""

from __future__ import annotations

import time


class PlaybackClock:
    """How far the audio sent so far is ahead of the listener's real-time playback.

    The listener starts playing at the first audio; when its buffer runs dry it stalls
    and resumes with the next audio, so a late piece costs one gap, not a debt the
    stream carries forever (the same model the benchmarks use to count underruns).
    """

    def __init__(self) -> None:
        self._origin: float | None = None  # when playback would have started, gaps removed
        self._sent_ms = 0.0

    @property
    def playing(self) -> bool:
        return self._origin is not None

    @property
    def sent_ms(self) -> float:
        """Audio sent so far."""
        return self._sent_ms

    def sent(self, audio_ms: float) -> None:
        now = time.perf_counter()
        if self._origin is None:
            self._origin = now
        else:
            self._origin += max(0.0, self.starving_ms(now)) / 1000.0  # the stall
        self._sent_ms += audio_ms

    def slack_ms(self, now: float | None = None) -> float:
        """Buffered audio at the listener; -inf before the first audio (TTFA is urgent)."""
        if self._origin is None:
            return float("-inf")
        now = time.perf_counter() if now is None else now
        return self._sent_ms - 1000.0 * (now - self._origin)

    def starving_ms(self, now: float | None = None) -> float:
        """How long the listener has been waiting with an empty buffer (0 if it is not)."""
        if self._origin is None:
            return 0.0
        return max(0.0, -self.slack_ms(now))
