"""Who gets in: a node admits a session only while it has a slot and keeps real time.

Capacity alone does not say whether a node can take one more stream: on a busy node
every stream slows down together. Two things do say it, both about the sessions that are
speaking (a session waiting for its next text between turns costs nothing):
- their number against `realtime_streams`, how many streams this node was measured to
  keep real time at once (bench/bench_capacity.py): one more would push them below it;
- their listeners (audio/listener.py): when at least half of the streams that are
  playing have left their listener waiting longer than `starving_ms`, the node is
  behind real time already (the measure that needs no measurement).
A refused client retries on another node (the plugin and the router do).
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
    realtime_streams: int = 0  # speaking streams kept real time at once (0 = not measured)

    def check(
        self, listeners: Collection[Listener], speaking: Collection[Listener] | None = None
    ) -> None:
        """Raise Overloaded when a new session must go elsewhere. `listeners`: every live
        session's; `speaking`: of those, the sessions not idle between turns (default all)."""
        if len(listeners) >= self.capacity:
            raise Overloaded(
                f"node at capacity ({self.capacity} concurrent sessions)",
            )
        speaking = listeners if speaking is None else speaking
        if self.realtime_streams and len(speaking) >= self.realtime_streams:
            raise Overloaded(
                f"node keeps {self.realtime_streams} streams real time (--realtime-streams) "
                f"and {len(speaking)} are speaking; retry on another node",
            )
        if self.starving_ms <= 0:
            return
        load = self.load(speaking)
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
