"""Bounded Redis calls for the session path: a sick Redis costs one short wait, not every start.

Every call runs under one short timeout. The first failure (timeout, refused connection,
any Redis error) marks Redis unhealthy: later calls return None at once, so callers serve
from their local view, until a background ping answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 0.1  # a same-DC Redis answers in ~1 ms; 100 ms of silence is sickness
DEFAULT_PROBE_S = 0.25


class RedisGate:
    """Runs Redis operations under a deadline and skips Redis while it is known to be sick."""

    def __init__(
        self,
        redis: aioredis.Redis,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        probe_s: float = DEFAULT_PROBE_S,
    ) -> None:
        self.redis = redis
        self._timeout_s = timeout_s
        self._probe_s = probe_s
        self._healthy = True
        self._probe: asyncio.Task[None] | None = None
        self._on_recovered: list[Callable[[], Awaitable[None]]] = []

    @property
    def healthy(self) -> bool:
        return self._healthy

    def on_recovered(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` each time Redis answers again after a failure."""
        self._on_recovered.append(callback)

    async def call(self, operation: Callable[[], Awaitable[T]], what: str) -> T | None:
        """`operation()`'s result, or None when Redis is sick or fails now (logged)."""
        if not self._healthy:
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                return await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip(what, exc)
            return None

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None

    def _trip(self, what: str, exc: BaseException) -> None:
        if self._healthy:
            log.warning(
                "redis did not answer %s within %.0f ms (%s): routing from the local view "
                "until it answers again",
                what, self._timeout_s * 1000, type(exc).__name__,
            )  # fmt: skip
        self._healthy = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_for_redis(), name="redis-gate-probe")

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(self._probe_s)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self._timeout_s):
                    await self.redis.ping()
                break
        self._probe = None  # a callback that trips the gate again starts a fresh probe
        self._healthy = True
        log.info("redis answers again: routing records shared through it")
        for callback in self._on_recovered:
            try:
                await callback()
            except Exception:
                log.exception("redis recovery callback failed")
