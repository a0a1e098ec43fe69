"""The listener at the other end of a stream, as the server can know it: one per session.

Everything that schedules work by how much audio a listener has buffered reads this one
model: the stream decoder's window sizes, the decode batcher's lanes and order, the
session's pacing and the node's admission.

The listener starts playing at the first audio; when its buffer runs dry it stalls and
resumes with the next audio, so a late piece costs one gap, not a debt the stream
carries forever (the same model the benchmarks use to count underruns).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from ..orpheus.tokens import FRAME_MS

# A stream's start-up: until this much audio is out (the stream decoder's ramp, 16-frame
# windows), while its listener has less than START_UP_BUFFER_MS buffered, its windows
# decode on a lane of their own.
START_UP_MS = 16 * FRAME_MS
START_UP_BUFFER_MS = 500.0


@dataclass(frozen=True, slots=True)
class Clock:
    """Where listeners read time and sessions wait; tests pass one they move by hand."""

    now: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


REAL_CLOCK = Clock()


class DecodeClass(Enum):
    """How urgent a stream's next audio is, from its listener's point of view."""

    FIRST_AUDIO = "first_audio"  # nothing played yet: this is the stream's TTFA
    START_UP = "start_up"  # its first second or so, while the buffer is still thin
    BULK = "bulk"  # an established stream: ordered by buffer, most starved first


class Listener:
    """How far the audio sent so far is ahead of the listener's real-time playback."""

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock
        self._origin: float | None = None  # when playback would have started, stalls removed
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
            self._origin += self.starving_ms(now) / 1000.0  # the stall
        self._sent_ms += audio_ms

    def buffer_ms(self, now: float | None = None) -> float:
        """Audio buffered at the listener (0 before the first audio; negative while it
        waits for audio: how long it has been waiting)."""
        if self._origin is None:
            return 0.0
        now = self.clock.now() if now is None else now
        return self._sent_ms - 1000.0 * (now - self._origin)

    def starving_ms(self, now: float | None = None) -> float:
        """How long the listener has been waiting with an empty buffer (0 if it is not)."""
        return max(0.0, -self.buffer_ms(now))

    def decode_class(self) -> DecodeClass:
        if not self.playing:
            return DecodeClass.FIRST_AUDIO
        if self._sent_ms < START_UP_MS and self.buffer_ms() < START_UP_BUFFER_MS:
            return DecodeClass.START_UP
        return DecodeClass.BULK
