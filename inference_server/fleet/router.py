"""Which node owns a session: sticky record first, else the voice ring with bounded load."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from .membership import Membership
from .nodes import NodeInfo
from .popularity import LocalPopularity, RedisPopularity
from .ring import DEFAULT_LOAD_FACTOR, DEFAULT_SPREAD, DEFAULT_VNODES, VoiceRing, replicas_for

logger = logging.getLogger(__name__)

# KEYS[1] = sticky key; ARGV = expected owner, new owner, ttl ms. Moves a session only if it
# is still where the caller saw it, so two nodes failing it over at once agree on one owner.
_MOVE_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return cur
"""


class NoNodeAvailable(RuntimeError):
    """No live, non-draining node with room serves the requested model."""


class SessionRouter:
    """Routes sessions to owner nodes; stickiness and popularity shared through Redis if given.

    Without Redis (static membership) or while Redis is unreachable, stickiness and popularity
    are kept in this process and routing uses the last known membership.
    """

    def __init__(
        self,
        self_id: str,
        membership: Membership,
        *,
        redis: aioredis.Redis | None = None,
        vnodes: int = DEFAULT_VNODES,
        load_factor: float = DEFAULT_LOAD_FACTOR,
        spread: float = DEFAULT_SPREAD,
        r_min: int = 1,
        replicas: Mapping[str, int] | None = None,
        sticky_ttl_s: float = 30.0,
        popularity_window_s: int = 60,
        popularity_min_total: int = 20,
        prefix: str = "orpheus",
    ) -> None:
        if load_factor <= 1.0:
            raise ValueError(f"load_factor must be > 1, got {load_factor}")
        self.self_id = self_id
        self._membership = membership
        self._redis = redis
        self._vnodes = vnodes
        self._load_factor = load_factor
        self._spread = spread
        self._r_min = r_min
        self._replicas = dict(replicas or {})
        self._ttl_ms = int(sticky_ttl_s * 1000)
        self._prefix = prefix
        self._min_total = popularity_min_total
        self._local_popularity = LocalPopularity(popularity_window_s)
        self._popularity = RedisPopularity(redis, prefix, popularity_window_s) if redis else None
        self._move = redis.register_script(_MOVE_SCRIPT) if redis else None
        self._local_sticky: dict[str, tuple[str, float]] = {}
        self._rings: dict[frozenset[str], VoiceRing] = {}
        self._routed: Counter[str] = Counter()  # placed by us since the last load snapshot
        self._load_snapshot: tuple[tuple[str, int], ...] = ()

    async def route(
        self, model: str, voice: str, session_id: str, avoid: Collection[str] = ()
    ) -> NodeInfo:
        """The owner of this session (may be this node). `avoid`: nodes known to have failed."""
        if not session_id:
            raise ValueError("session_id must not be empty: it is the routing key")
        nodes = {
            n.node_id: n
            for n in self._membership.nodes()
            if n.serves(model) and n.node_id not in avoid
        }
        if not nodes:
            raise NoNodeAvailable(f"no live node serves model {model or '(default)'!r}")
        sticky = await self._sticky_get(session_id)
        if sticky in nodes:
            return nodes[sticky]
        chosen = await self._place(model, voice, session_id, nodes, new=sticky is None)
        owner = await self._sticky_claim(session_id, chosen, previous=sticky)
        if owner != chosen and owner in nodes:
            return nodes[owner]
        self._routed[chosen] += 1
        return nodes[chosen]

    async def keepalive(self, session_id: str) -> None:
        """Refresh the session's sticky record; call it well inside sticky_ttl_s."""
        if session_id in self._local_sticky:
            owner, _ = self._local_sticky[session_id]
            self._local_sticky[session_id] = (owner, self._expiry())
        if self._redis is not None:
            key = self._sticky_key(session_id)
            try:
                if (
                    not await self._redis.pexpire(key, self._ttl_ms)
                    and session_id in self._local_sticky
                ):
                    # Redis lost the record (restarted empty): put back what we know.
                    owner, _ = self._local_sticky[session_id]
                    await self._redis.set(key, owner, nx=True, px=self._ttl_ms)
            except RedisError as exc:
                logger.debug("keepalive of %s not recorded in redis: %s", session_id, exc)

    async def release(self, session_id: str) -> None:
        """Forget the session's owner (it ended)."""
        self._local_sticky.pop(session_id, None)
        if self._redis is not None:
            try:
                await self._redis.delete(self._sticky_key(session_id))
            except RedisError as exc:
                logger.debug("release of %s not recorded in redis: %s", session_id, exc)

    def ring(self, model: str = "") -> VoiceRing:
        """The ring over the nodes currently serving `model`."""
        return self._ring_for(n.node_id for n in self._membership.nodes() if n.serves(model))

    # -- placement --------------------------------------------------------------------------

    async def _place(
        self, model: str, voice: str, session_id: str, nodes: dict[str, NodeInfo], new: bool
    ) -> str:
        ring = self._ring_for(nodes)
        r = await self._replica_count(model, voice, len(ring), record=new)
        exclude = {i for i, n in nodes.items() if n.draining or n.full}
        chosen = ring.place(
            model, voice, session_id, r, self._loads(nodes), self._load_factor, exclude
        )
        if chosen is None:
            raise NoNodeAvailable(
                f"all {len(nodes)} nodes serving model {model or '(default)'!r} are draining "
                "or at capacity"
            )
        return chosen

    def _ring_for(self, node_ids: Iterable[str]) -> VoiceRing:
        key = frozenset(node_ids)
        ring = self._rings.get(key)
        if ring is None:
            self._rings = {key: VoiceRing(key, self._vnodes)}  # only the current ring is kept
            ring = self._rings[key]
        return ring

    def _loads(self, nodes: dict[str, NodeInfo]) -> dict[str, int]:
        """Heartbeat loads plus what we placed since that heartbeat (bursts between beats)."""
        snapshot = tuple(sorted((i, n.live_sessions) for i, n in nodes.items()))
        if snapshot != self._load_snapshot:
            self._load_snapshot = snapshot
            self._routed.clear()
        return {i: n.live_sessions + self._routed[i] for i, n in nodes.items()}

    async def _replica_count(self, model: str, voice: str, n_nodes: int, record: bool) -> int:
        if voice in self._replicas:
            return max(1, min(self._replicas[voice], n_nodes))
        voice_starts, total = await self._popularity_of(model, voice, record)
        share = voice_starts / max(total, self._min_total)
        return replicas_for(share, n_nodes, self._spread, self._r_min)

    async def _popularity_of(self, model: str, voice: str, record: bool) -> tuple[int, int]:
        if self._popularity is not None and record:
            try:
                return await self._popularity.record(model, voice)
            except RedisError as exc:
                logger.debug("popularity from local counts (redis: %s)", exc)
        return self._local_popularity.record(model, voice)

    # -- stickiness -------------------------------------------------------------------------

    def _sticky_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def _expiry(self) -> float:
        return time.monotonic() + self._ttl_ms / 1000

    async def _sticky_get(self, session_id: str) -> str | None:
        if self._redis is not None:
            try:
                value = await self._redis.get(self._sticky_key(session_id))
                if value is not None:
                    return value.decode()
            except RedisError as exc:
                logger.debug("sticky lookup from local records (redis: %s)", exc)
        owner, expiry = self._local_sticky.get(session_id, (None, 0.0))
        return owner if expiry > time.monotonic() else None

    async def _sticky_claim(self, session_id: str, node_id: str, previous: str | None) -> str:
        """Record node_id as owner unless another router got there first; return the owner."""
        self._prune_local()
        self._local_sticky[session_id] = (node_id, self._expiry())
        if self._redis is None or self._move is None:
            return node_id
        key = self._sticky_key(session_id)
        try:
            if previous is None:
                if await self._redis.set(key, node_id, nx=True, px=self._ttl_ms):
                    return node_id
                value = await self._redis.get(key)
            else:
                value = await self._move(keys=[key], args=[previous, node_id, self._ttl_ms])
        except RedisError as exc:
            logger.debug("sticky owner of %s kept locally (redis: %s)", session_id, exc)
            return node_id
        owner = value.decode() if isinstance(value, bytes) else value
        owner = owner or node_id
        self._local_sticky[session_id] = (owner, self._expiry())
        return owner

    def _prune_local(self) -> None:
        if len(self._local_sticky) < 4096:
            return
        now = time.monotonic()
        self._local_sticky = {s: v for s, v in self._local_sticky.items() if v[1] > now}
