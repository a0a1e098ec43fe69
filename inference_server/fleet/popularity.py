"""How often each (model, voice) starts sessions: counted in Redis (shared) or locally.

Counts live in time buckets of `window_s` (Redis's clock when shared); a voice's share is its
starts over the current and previous bucket divided by all starts of the model.
"""

from __future__ import annotations

import time
from collections import Counter

from redis import asyncio as aioredis

TOTAL_FIELD = "\x00total"

# KEYS[1] = counter key prefix; ARGV = voice, window_s, record (1/0)
_COUNT_SCRIPT = """
local now = redis.call('TIME')
local window = tonumber(ARGV[2])
local bucket = math.floor(tonumber(now[1]) / window)
local cur = KEYS[1] .. ':' .. bucket
local prev = KEYS[1] .. ':' .. (bucket - 1)
if ARGV[3] == '1' then
  redis.call('HINCRBY', cur, ARGV[1], 1)
  redis.call('HINCRBY', cur, '\\0total', 1)
  redis.call('EXPIRE', cur, window * 3)
end
local function get(key, field) return tonumber(redis.call('HGET', key, field)) or 0 end
return {get(cur, ARGV[1]) + get(prev, ARGV[1]), get(cur, '\\0total') + get(prev, '\\0total')}
"""


class LocalPopularity:
    """Per-process counts (static membership, or while Redis is unreachable)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self._window_s = window_s
        self._buckets: dict[int, Counter[tuple[str, str]]] = {}

    def record(self, model: str, voice: str) -> tuple[int, int]:
        """Count one session start; return (voice starts, model starts) in the window."""
        bucket = int(time.monotonic() // self._window_s)
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

    async def record(self, model: str, voice: str) -> tuple[int, int]:
        """Count one session start; return (voice starts, model starts) in the window."""
        key = f"{self._prefix}:popularity:{model}"
        voice_count, total = await self._script(keys=[key], args=[voice, self._window_s, 1])
        return int(voice_count), int(total)
