"""Which node owns a session: sticky record first, else the voice ring with bounded load.

Redis is on the path of every session start, so each start makes at most two bounded
round trips (read the owner and count the start; claim the owner), both through one
`RedisGate`: a frozen, dead or restarted Redis costs one short wait, then starts are routed
from this node's last known view until Redis answers again. The node serving a session
holds its record: it re-asserts it every `keepalive_s` and whenever Redis comes back, so
records lost to a restart or FLUSHALL return within one keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from redis import asyncio as aioredis

from .membership import Membership
from .nodes import NodeInfo
from .popularity import LocalPopularity, RedisPopularity
from .redis_gate import DEFAULT_TIMEOUT_S, RedisGate
from .ring import (
    DEFAULT_LOAD_FACTOR,
    DEFAULT_SPREAD,
    DEFAULT_VNODES,
    VoiceRing,
    bounded_cap,
    replicas_for,
)

logger = logging.getLogger(__name__)

# KEYS[1] = sticky key; ARGV = expected owner ("" = none), new owner, ttl ms. Claims a session
# only if it is still where the caller saw it, so two routers placing or failing it over at
# once agree on one owner.
_CLAIM_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return cur
"""


@dataclass(frozen=True, slots=True)
class _Lookup:
    owner: str | None  # the session's recorded owner
    voice_starts: int
    total_starts: int


@dataclass(frozen=True, slots=True)
class _FleetView:
    """What placement reads of one membership view for one model. Built once per view (a
    heartbeat's loads make a new one), not per session: at 1,000 nodes each of these is a
    pass over every node."""

    serving: dict[str, NodeInfo]  # the nodes serving the model, by id
    ring: VoiceRing  # over `serving`
    unavailable: frozenset[str]  # draining or full: not placed on
    live: dict[str, int]  # heartbeat loads
    loads: tuple[tuple[str, int], ...]  # the same, sorted: a change resets what we placed
    available_live: int  # sum of `live` over the nodes not unavailable

    @classmethod
    def of(
        cls,
        nodes: Iterable[NodeInfo],
        model: str,
        ring_for: Callable[[Iterable[str]], VoiceRing],
    ) -> _FleetView:
        serving = {n.node_id: n for n in nodes if n.serves(model)}
        live = {i: n.live_sessions for i, n in serving.items()}
        unavailable = frozenset(i for i, n in serving.items() if n.draining or n.full)
        return cls(
            serving=serving,
            ring=ring_for(serving),
            unavailable=unavailable,
            live=live,
            loads=tuple(sorted(live.items())),
            available_live=sum(v for i, v in live.items() if i not in unavailable),
        )


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
        keepalive_s: float = 1.0,
        redis_timeout_s: float = DEFAULT_TIMEOUT_S,
        popularity_window_s: int = 60,
        popularity_min_total: int = 20,
        prefix: str = "orpheus",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: where its local records and popularity read time (a simulation's own)."""
        if load_factor <= 1.0:
            raise ValueError(f"load_factor must be > 1, got {load_factor}")
        self.self_id = self_id
        self._membership = membership
        self._gate = RedisGate(redis, redis_timeout_s) if redis is not None else None
        self._vnodes = vnodes
        self._load_factor = load_factor
        self._spread = spread
        self._r_min = r_min
        self._replicas = dict(replicas or {})
        self._ttl_ms = int(sticky_ttl_s * 1000)
        self._keepalive_s = keepalive_s
        self._prefix = prefix
        self._min_total = popularity_min_total
        self._clock = clock
        self._local_popularity = LocalPopularity(popularity_window_s, clock)
        self._popularity = RedisPopularity(redis, prefix, popularity_window_s) if redis else None
        self._claim_script = redis.register_script(_CLAIM_SCRIPT) if redis else None
        self._local_sticky: dict[str, tuple[str, float]] = {}
        self._held: Counter[str] = Counter()  # sessions served here: this node keeps their records
        self._keeper: asyncio.Task[None] | None = None
        self._rings: dict[frozenset[str], VoiceRing] = {}
        self._view_nodes: tuple[NodeInfo, ...] | None = None
        self._views: dict[str, _FleetView] = {}  # by model, for `_view_nodes`
        self._routed: Counter[str] = Counter()  # placed by us since the last load snapshot
        self._load_snapshot: tuple[tuple[str, int], ...] = ()
        if self._gate is not None:
            self._gate.on_recovered(self.refresh_held)

    @property
    def redis_healthy(self) -> bool:
        """False while routing skips a Redis that just failed (no Redis: True)."""
        return self._gate is None or self._gate.healthy

    async def route(
        self, model: str, voice: str, session_id: str, avoid: Collection[str] = ()
    ) -> NodeInfo:
        """The owner of this session (may be this node). `avoid`: nodes known to have failed."""
        if not session_id:
            raise ValueError("session_id must not be empty: it is the routing key")
        view = self._view(model)
        avoided = frozenset(i for i in avoid if i in view.serving)
        if len(avoided) == len(view.serving):
            raise NoNodeAvailable(f"no live node serves model {model or '(default)'!r}")
        found = await self._lookup(model, voice, session_id)
        if found.owner in view.serving and found.owner not in avoided:
            return view.serving[found.owner]
        chosen = self._place(model, voice, session_id, view, found, avoided)
        owner = await self._claim(session_id, chosen, previous=found.owner)
        if owner != chosen and owner in view.serving and owner not in avoided:
            return view.serving[owner]
        self._routed[chosen] += 1
        return view.serving[chosen]

    # -- sessions served here ---------------------------------------------------------------

    def hold(self, session_id: str) -> None:
        """This node serves the session: keep its record alive until `release`."""
        self._held[session_id] += 1
        self._local_sticky[session_id] = (self.self_id, self._expiry())

    async def release(self, session_id: str) -> None:
        """The session ended here: forget its owner (once no call of it is served here)."""
        self._held[session_id] -= 1
        if self._held[session_id] > 0:
            return
        del self._held[session_id]
        self._local_sticky.pop(session_id, None)
        if self._gate is not None:
            key = self._sticky_key(session_id)
            await self._gate.call(lambda: self._gate.redis.delete(key), "a session's release")

    async def refresh_held(self) -> None:
        """Re-assert this node's records of the sessions it serves, in one round trip: a
        record Redis lost (restart, FLUSHALL) is written again, a live one gets a fresh TTL."""
        held = sorted(self._held)
        for session_id in held:
            self._local_sticky[session_id] = (self.self_id, self._expiry())
        if self._gate is None or not held:
            return
        redis = self._gate.redis

        async def reassert() -> list[object]:
            async with redis.pipeline(transaction=False) as pipe:
                for session_id in held:
                    key = self._sticky_key(session_id)
                    pipe.set(key, self.self_id, nx=True, px=self._ttl_ms)
                    pipe.pexpire(key, self._ttl_ms)
                return await pipe.execute()

        replies = await self._gate.call(reassert, "the owner records of held sessions")
        restored = sum(1 for r in (replies or [])[::2] if r)
        if restored:
            logger.info("restored %d owner records redis had lost", restored)

    async def start(self) -> None:
        """Keep held sessions' records alive every `keepalive_s` (with Redis only)."""
        if self._gate is not None and self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_held(), name="router-keepalive")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._gate is not None:
            await self._gate.close()

    def ring(self, model: str = "") -> VoiceRing:
        """The ring over the nodes currently serving `model`."""
        return self._view(model).ring

    async def _keep_held(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive_s)
            await self.refresh_held()

    # -- placement --------------------------------------------------------------------------

    def _view(self, model: str) -> _FleetView:
        """The current membership view for `model`, rebuilt only when the view changes."""
        nodes = tuple(self._membership.nodes())
        if nodes != self._view_nodes:  # element by element: identical records compare at once
            self._views = {}
        self._view_nodes = nodes
        view = self._views.get(model)
        if view is None:
            view = self._views[model] = _FleetView.of(nodes, model, self._ring_for)
        return view

    def _place(
        self,
        model: str,
        voice: str,
        session_id: str,
        view: _FleetView,
        found: _Lookup,
        avoided: frozenset[str] = frozenset(),
    ) -> str:
        """`avoided`: serving nodes that failed this call. They are skipped on the ring of
        all serving nodes, which walks the others in the same order as a ring without them,
        so a retry neither rebuilds the ring nor forgets what was placed since the last
        heartbeat."""
        r = self._replica_count(voice, found, len(view.ring) - len(avoided))
        exclude = view.unavailable | avoided
        eligible = len(view.serving) - len(exclude)
        chosen = None
        if eligible > 0:
            load_of = self._load_of(view)
            total = self._eligible_load(view, avoided, load_of)
            cap = bounded_cap(total, eligible, self._load_factor)
            chosen = view.ring.place_under(model, voice, session_id, r, load_of, cap, exclude)
        if chosen is None:
            raise NoNodeAvailable(
                f"all {len(view.serving) - len(avoided)} nodes serving model "
                f"{model or '(default)'!r} that did not fail are draining or at capacity"
            )
        return chosen

    def _ring_for(self, node_ids: Iterable[str]) -> VoiceRing:
        key = frozenset(node_ids)
        ring = self._rings.get(key)
        if ring is None:
            self._rings = {key: VoiceRing(key, self._vnodes)}  # only the current ring is kept
            ring = self._rings[key]
        return ring

    def _load_of(self, view: _FleetView) -> Callable[[str], int]:
        """Heartbeat loads plus what we placed since that heartbeat (bursts between beats)."""
        if view.loads is not self._load_snapshot and view.loads != self._load_snapshot:
            self._routed.clear()
        self._load_snapshot = view.loads
        live, routed = view.live, self._routed
        return lambda node: live.get(node, 0) + routed.get(node, 0)

    def _eligible_load(
        self, view: _FleetView, avoided: frozenset[str], load_of: Callable[[str], int]
    ) -> int:
        """The load on the nodes placement may pick: the available nodes' total (kept per
        view) plus what we placed on them since, less the few avoided ones."""
        placed = sum(
            n for i, n in self._routed.items() if i in view.live and i not in view.unavailable
        )
        return view.available_live + placed - sum(load_of(i) for i in avoided - view.unavailable)

    def _replica_count(self, voice: str, found: _Lookup, n_nodes: int) -> int:
        if voice in self._replicas:
            return max(1, min(self._replicas[voice], n_nodes))
        share = found.voice_starts / max(found.total_starts, self._min_total)
        return replicas_for(share, n_nodes, self._spread, self._r_min)

    # -- records ----------------------------------------------------------------------------

    def _sticky_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def _expiry(self) -> float:
        return self._clock() + self._ttl_ms / 1000

    async def _lookup(self, model: str, voice: str, session_id: str) -> _Lookup:
        """Owner record and voice popularity: one Redis round trip, else the local view."""
        if self._gate is not None and self._popularity is not None:
            popularity, key = self._popularity, self._sticky_key(session_id)
            shared = await self._gate.call(
                lambda: popularity.count_start(model, voice, key), "a session's owner lookup"
            )
            if shared is not None:  # a record Redis lost (restarted empty) may be known here
                owner, voice_starts, total = shared
                return _Lookup(owner or self._local_owner(session_id), voice_starts, total)
        owner = self._local_owner(session_id)
        counts = self._local_popularity.record(model, voice) if owner is None else (0, 0)
        return _Lookup(owner, *counts)

    def _local_owner(self, session_id: str) -> str | None:
        owner, expiry = self._local_sticky.get(session_id, (None, 0.0))
        return owner if expiry > self._clock() else None

    async def _claim(self, session_id: str, node_id: str, previous: str | None) -> str:
        """Record node_id as owner unless another router got there first; return the owner."""
        self._prune_local()
        self._local_sticky[session_id] = (node_id, self._expiry())
        if self._gate is None or self._claim_script is None:
            return node_id
        script, key = self._claim_script, self._sticky_key(session_id)
        value = await self._gate.call(
            lambda: script(keys=[key], args=[previous or "", node_id, self._ttl_ms]),
            "a session's owner claim",
        )
        if value is None:
            return node_id  # kept locally; the owner's keepalive writes it once Redis is back
        owner = value.decode() if isinstance(value, bytes) else str(value)
        self._local_sticky[session_id] = (owner, self._expiry())
        return owner

    def _prune_local(self) -> None:
        if len(self._local_sticky) < 4096:
            return
        now = self._clock()
        self._local_sticky = {
            s: v for s, v in self._local_sticky.items() if v[1] > now or s in self._held
        }
