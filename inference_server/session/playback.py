"""The listener's side of a stream, as the server can know it, and the pacing it implies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """Where sessions read time and wait; tests pass one they move by hand."""

    now: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


REAL_CLOCK = Clock()


class PlaybackClock:
    """How far the audio sent so far is ahead of the listener's real-time playback.

    The listener starts playing at the first audio; when its buffer runs dry it stalls
    and resumes with the next audio, so a late piece costs one gap, not a debt the
    stream carries forever (the same model the benchmarks use to count underruns).
    """

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock
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
        now = self.clock.now()
        if self._origin is None:
            self._origin = now
        else:
            self._origin += max(0.0, self.starving_ms(now)) / 1000.0  # the stall
        self._sent_ms += audio_ms

    def slack_ms(self, now: float | None = None) -> float:
        """Buffered audio at the listener; -inf before the first audio (TTFA is urgent)."""
        if self._origin is None:
            return float("-inf")
        now = self.clock.now() if now is None else now
        return self._sent_ms - 1000.0 * (now - self._origin)

    def starving_ms(self, now: float | None = None) -> float:
        """How long the listener has been waiting with an empty buffer (0 if it is not)."""
        if self._origin is None:
            return 0.0
        return max(0.0, -self.slack_ms(now))


_MIN_WAIT_MS = 1.0  # a shorter excess is rounding, not a reason to wait


class Pacer:
    """The pacing rule: a stream's generation waits while its listener has more than
    `max_ahead_s` of audio buffered (0 = never waits).

    A listener plays in real time, so audio made further ahead buys nothing: it only holds
    CPU and memory now (all of it for a client that stopped reading) and is thrown away
    when the listener interrupts. Before the first audio the slack is -inf: never a wait.
    """

    def __init__(self, playback: PlaybackClock, max_ahead_s: float) -> None:
        self._playback = playback
        self._max_ahead_ms = 1000.0 * max_ahead_s
        self.waited_s = 0.0  # total time this stream was held back

    def wait_s(self) -> float:
        """How long generation must wait now for the listener to come within the limit."""
        if self._max_ahead_ms <= 0:
            return 0.0
        excess_ms = self._playback.slack_ms() - self._max_ahead_ms
        return excess_ms / 1000.0 if excess_ms >= _MIN_WAIT_MS else 0.0

    async def pace(self) -> None:
        while (wait := self.wait_s()) > 0:
            self.waited_s += wait
            await self._playback.clock.sleep(wait)
