"""This node's one account of its work: draining or not, sessions served here, calls forwarded.

The service, the fleet dispatch and the server (drain, health, membership) share one
instance, so "idle", "live" and "draining" cannot disagree between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

LoadListener = Callable[[int], None]  # called with the number of sessions served here


class NodeState:
    """Draining flag, live sessions (served here), routed calls and the idle event."""

    def __init__(self) -> None:
        self.draining = False
        self.live: dict[str, Any] = {}  # session id -> the session served on this node
        self._routing: Counter[str] = Counter()  # session id -> calls this node routes now
        self.idle = asyncio.Event()  # set while nothing is served or forwarded here
        self.idle.set()
        self._load_listeners: list[LoadListener] = []

    def add_load_listener(self, listener: LoadListener) -> None:
        self._load_listeners.append(listener)

    def start_draining(self) -> None:
        self.draining = True
        self._notify()  # health and membership turn away new sessions at once

    def session_opened(self, session_id: str, session: Any) -> None:
        self.live[session_id] = session
        self._changed()

    def session_closed(self, session_id: str) -> None:
        self.live.pop(session_id, None)
        self._changed()

    @contextlib.contextmanager
    def routing(self, session_id: str) -> Iterator[None]:
        """Counts a call this node routes (to its owner, maybe this node) while inside."""
        self._routing[session_id] += 1
        self.idle.clear()
        try:
            yield
        finally:
            self._routing[session_id] -= 1
            if self._routing[session_id] <= 0:
                del self._routing[session_id]
            self._update_idle()

    def is_routing(self, session_id: str) -> bool:
        return session_id in self._routing

    @property
    def forwarded(self) -> int:
        """Calls routed from here whose session is not served here (forwarded, or still
        choosing an owner)."""
        return sum(1 for s in self._routing if s not in self.live)

    @property
    def busy(self) -> int:
        """Sessions a stop would cut now: served here or forwarded from here."""
        return len(self.live) + self.forwarded

    def _changed(self) -> None:
        self._update_idle()
        self._notify()

    def _update_idle(self) -> None:
        if self.live or self._routing:
            self.idle.clear()
        else:
            self.idle.set()

    def _notify(self) -> None:
        for listener in self._load_listeners:
            try:
                listener(len(self.live))
            except Exception:
                log.exception("load listener failed")
