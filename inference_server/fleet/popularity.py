"""How often each (model, voice) starts sessions: counted in Redis (shared) or locally.

Counts live in time buckets of `window_s` (Redis's clock when shared); a voice's share is its
starts over the current and previous bucket divided by all starts of the model.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from redis import asyncio as aioredis

TOTAL_FIELD = "\x00total"

# KEYS[1] = counter key prefix, KEYS[2] = the session's sticky key; ARGV = voice, window_s.
# One round trip reads the session's owner and counts a start only for a session with none.
_COUNT_SCRIPT = """
local owner = redis.call('GET', KEYS[2])
local now = redis.call('TIME')
local window = tonumber(ARGV[2])
local bucket = math.floor(tonumber(now[1]) / window)
local cur = KEYS[1] .. ':' .. bucket
local prev = KEYS[1] .. ':' .. (bucket - 1)
if owner == false then
  redis.call('HINCRBY', cur, ARGV[1], 1)
  redis.call('HINCRBY', cur, '\\0total', 1)
  redis.call('EXPIRE', cur, window * 3)
end
local function get(key, field) return tonumber(redis.call('HGET', key, field)) or 0 end
return {get(cur, ARGV[1]) + get(prev, ARGV[1]), get(cur, '\\0total') + get(prev, '\\0total'), owner}
"""


class LocalPopularity:
    """Per-process counts (static membership, or while Redis is unreachable)."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._buckets: dict[int, Counter[tuple[str, str]]] = {}

    def record(self, model: str, voice: str) -> tuple[int, int]:
        """Count one session start; return (voice starts, model starts) in the window."""
        bucket = int(self._clock() // self._window_s)
        for old in [b for b in self._buckets if b < bucket - 1]:
            del self._buckets[old]
        current = self._buckets.setdefault(bucket, Counter())
        current[(model, voice)] += 1
        current[(model, TOTAL_FIELD)] += 1
        recent = [self._buckets.get(bucket - 1, Counter()), current]
        return (
            sum(c[(model, voice)] for c in recent),
            sum(c[(model, TOTAL_FIELD)] for c in recent),
        )


class RedisPopularity:
    """Fleet-wide counts in Redis, bucketed by Redis's clock."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "orpheus", window_s: int = 60) -> None:
        self._redis = redis
        self._prefix = prefix
        self._window_s = int(window_s)
        self._script = redis.register_script(_COUNT_SCRIPT)

    async def count_start(
        self, model: str, voice: str, sticky_key: str
    ) -> tuple[str | None, int, int]:
        """The session's recorded owner, and (voice starts, model starts) in the window; a
        session without an owner counts as a new start."""
        key = f"{self._prefix}:popularity:{model}"
        voice_count, total, owner = await self._script(
            keys=[key, sticky_key], args=[voice, self._window_s]
        )
        return (owner.decode() if owner else None), int(voice_count), int(total)
