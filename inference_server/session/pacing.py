"""The pacing rule: a stream's audio runs at most `max_ahead_s` ahead of its listener.

"Ahead" is the audio buffered at the listener plus the audio generated but not yet sent.
Two readers obey the one rule: the engine holds a stream's generation while it is that
far ahead (`wait_s(unsent_ms)`, for engines that can hold a row), and the session holds
its audio while the listener alone has that much buffered (`pace`, for every engine: a
client that stops reading costs no more).
"""

from __future__ import annotations

from ..audio.listener import Listener

_MIN_WAIT_MS = 1.0  # a shorter excess is rounding, not a reason to wait


class Pacer:
    """A listener plays in real time, so audio made further ahead buys nothing: it only
    holds CPU and memory now, time other streams' audio needs, and is thrown away when the
    listener interrupts. Before the first audio nothing is ahead: never a wait.
    `max_ahead_s=0` never waits."""

    def __init__(self, listener: Listener, max_ahead_s: float) -> None:
        self._listener = listener
        self._max_ahead_ms = 1000.0 * max_ahead_s
        self.waited_s = 0.0  # total time this stream's audio was held back by `pace`

    def wait_s(self, unsent_ms: float = 0.0) -> float:
        """How long until the stream, with `unsent_ms` of audio made but not yet sent, is
        back within the limit (0 = go on now)."""
        if self._max_ahead_ms <= 0 or not self._listener.playing:
            return 0.0
        excess_ms = self._listener.buffer_ms() + unsent_ms - self._max_ahead_ms
        return excess_ms / 1000.0 if excess_ms >= _MIN_WAIT_MS else 0.0

    async def pace(self) -> None:
        """Wait while the listener has more than the limit buffered."""
        while (wait := self.wait_s()) > 0:
            self.waited_s += wait
            await self._listener.clock.sleep(wait)
