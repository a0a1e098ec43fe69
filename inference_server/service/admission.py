"""Who gets in: a node admits a session only while it has a slot and keeps real time.

Capacity alone does not say whether a node can take one more stream: on a busy node
every stream slows down together. The live sessions' listeners (audio/listener.py) do say it: when
at least half of the streams that are playing have left their listener waiting longer
than `starving_ms`, the node is behind real time, and one more stream would make every
stream worse. A refused client retries on another node (the plugin and the router do).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..audio.listener import Listener
from ..config import DEFAULT_STARVING_MS
from ..errors import Overloaded


@dataclass(frozen=True, slots=True)
class StreamLoad:
    playing: int  # streams past their first audio
    starving: int  # of those, listeners waiting for audio longer than starving_ms


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    capacity: int  # concurrent sessions
    starving_ms: float = DEFAULT_STARVING_MS  # 0 = admit on capacity alone

    def check(self, listeners: Collection[Listener]) -> None:
        """Raise Overloaded when a new session must go elsewhere."""
        if len(listeners) >= self.capacity:
            raise Overloaded(
                f"node at capacity ({self.capacity} concurrent sessions)",
            )
        if self.starving_ms <= 0:
            return
        load = self.load(listeners)
        if load.starving and 2 * load.starving >= load.playing:
            raise Overloaded(
                f"node is behind real time ({load.starving} of {load.playing} playing streams "
                f"have waited over {self.starving_ms:.0f} ms for audio); retry on another node",
            )

    def load(self, listeners: Collection[Listener]) -> StreamLoad:
        """How many streams play, and how many of them leave their listener waiting."""
        playing = [listener for listener in listeners if listener.playing]
        threshold = self.starving_ms or DEFAULT_STARVING_MS
        return StreamLoad(len(playing), sum(x.starving_ms() > threshold for x in playing))
