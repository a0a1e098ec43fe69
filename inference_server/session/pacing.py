"""The pacing rule: generation waits while the listener has enough audio buffered."""

from __future__ import annotations

from ..audio.listener import Listener

_MIN_WAIT_MS = 1.0  # a shorter excess is rounding, not a reason to wait


class Pacer:
    """A stream's generation waits while its listener has more than `max_ahead_s` of audio
    buffered (0 = never waits).

    A listener plays in real time, so audio made further ahead buys nothing: it only holds
    CPU and memory now (all of it for a client that stopped reading) and is thrown away
    when the listener interrupts. Before the first audio nothing is buffered: never a wait.
    """

    def __init__(self, listener: Listener, max_ahead_s: float) -> None:
        self._listener = listener
        self._max_ahead_ms = 1000.0 * max_ahead_s
        self.waited_s = 0.0  # total time this stream was held back

    def wait_s(self) -> float:
        """How long generation must wait now for the listener to come within the limit."""
        if self._max_ahead_ms <= 0:
            return 0.0
        excess_ms = self._listener.buffer_ms() - self._max_ahead_ms
        return excess_ms / 1000.0 if excess_ms >= _MIN_WAIT_MS else 0.0

    async def pace(self) -> None:
        while (wait := self.wait_s()) > 0:
            self.waited_s += wait
            await self._listener.clock.sleep(wait)
