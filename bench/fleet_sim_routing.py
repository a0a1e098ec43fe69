"""The fleet simulator's routing seam: the product's `SessionRouter` on simulated time.

The router, ring, popularity replication and Redis gate are the real classes. Around them:
- `SimRedis`: an in-memory store with the calls the router makes (its two Lua scripts run
  as Python with the same semantics, Redis TIME = simulated time); every round trip is
  counted, and `down` makes each call fail like an unreachable Redis.
- `SimLoop`: an asyncio loop whose `time()` is the simulated clock, so the gate's timeouts
  and its recovery probe run on simulated time, deterministically.
- `SimMembership`: the `Membership` protocol over the simulator's nodes; it publishes loads
  once per heartbeat and freezes (last known view) while Redis is down, as
  `RedisMembership` does.
- `SubsetRing`: the ring over some of the nodes, walked by filtering one `VoiceRing` built
  over every node the simulation will ever have. A node's points on the continuum depend
  on its name alone, so removing nodes never reorders the others: the walk is the same
  one `VoiceRing(subset)` gives (tests/test_fleet_sim.py checks it), without rebuilding
  160 points per node (0.7 s at 1,000 nodes) and re-walking every voice each time the
  membership changes. Placement on it is `VoiceRing`'s own.
- `ViewCache`: the router's per-view state (`_FleetView`) shared by the simulated routers.
Each router reads the simulated clock for its local records and local popularity
(`SessionRouter(clock=...)`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from inference_server.fleet.nodes import NodeInfo
from inference_server.fleet.popularity import _COUNT_SCRIPT, TOTAL_FIELD
from inference_server.fleet.ring import DEFAULT_VNODES, VoiceRing
from inference_server.fleet.router import _CLAIM_SCRIPT, SessionRouter, _FleetView


class SimClock:
    """Simulated seconds; the simulator moves it forward."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class SimLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time: timers fire once the simulation passes them."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self._sim_clock = clock

    def time(self) -> float:
        return self._sim_clock.now


class _Script:
    def __init__(self, store: SimRedis, run: Callable[[list[str], list[Any]], Any]) -> None:
        self._store, self._run = store, run

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        self._store.round_trip("script")
        return self._run(keys, args)


class _Pipeline:
    def __init__(self, store: SimRedis) -> None:
        self._store = store
        self._queued: list[Callable[[], Any]] = []

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: str, nx: bool = False, px: int | None = None) -> None:
        self._queued.append(lambda: self._store.set_nx(key, value) if nx else None)

    def pexpire(self, key: str, ms: int) -> None:
        self._queued.append(lambda: int(key in self._store.data))

    async def execute(self) -> list[Any]:
        self._store.round_trip("pipeline")
        return [op() for op in self._queued]


class SimRedis:
    """The Redis calls `SessionRouter` makes, in memory, each round trip counted by kind."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self.data: dict[str, Any] = {}
        self.ops: Counter[str] = Counter()
        self.down = False
        self._scripts = {_COUNT_SCRIPT: self._count_start, _CLAIM_SCRIPT: self._claim}

    def round_trip(self, kind: str) -> None:
        if self.down:
            self.ops["failed"] += 1
            raise RedisConnectionError("simulated Redis outage")
        self.ops[kind] += 1

    def register_script(self, text: str) -> _Script:
        return _Script(self, self._scripts[text])

    async def delete(self, *keys: str) -> int:
        self.round_trip("delete")
        return sum(self.data.pop(k, None) is not None for k in keys)

    async def ping(self) -> bool:
        self.round_trip("ping")
        return True

    def pipeline(self, transaction: bool = False) -> _Pipeline:
        return _Pipeline(self)

    def set_nx(self, key: str, value: str) -> bool:
        if key in self.data:
            return False
        self.data[key] = value.encode()
        return True

    def _count_start(self, keys: list[str], args: list[Any]) -> list[Any]:
        """popularity._COUNT_SCRIPT: read the owner; count a start for an unowned session."""
        prefix, sticky = keys
        voice, window = args[0], int(args[1])
        bucket = int(self._clock.now // window)
        cur, prev = f"{prefix}:{bucket}", f"{prefix}:{bucket - 1}"
        owner = self.data.get(sticky)
        if owner is None:
            counts = self.data.setdefault(cur, Counter())
            counts[voice] += 1
            counts[TOTAL_FIELD] += 1
            self.data.pop(f"{prefix}:{bucket - 2}", None)  # EXPIRE window*3
        old, new = self.data.get(prev, Counter()), self.data.get(cur, Counter())
        return [old[voice] + new[voice], old[TOTAL_FIELD] + new[TOTAL_FIELD], owner]

    def _claim(self, keys: list[str], args: list[Any]) -> bytes:
        """router._CLAIM_SCRIPT: take the session if it is still where the caller saw it."""
        current = self.data.get(keys[0])
        if current is None or current.decode() == args[0]:
            self.data[keys[0]] = str(args[1]).encode()
            return str(args[1]).encode()
        return current


class SimMembership:
    """`Membership` over simulated nodes: the view the router routes by."""

    def __init__(self, self_id: str = "ingress") -> None:
        self._self_id = self_id
        self._view: list[NodeInfo] = []
        self._by_id: dict[str, NodeInfo] = {}

    @property
    def self_id(self) -> str:
        return self._self_id

    def nodes(self) -> list[NodeInfo]:
        return self._view

    def publish(self, infos: dict[str, NodeInfo]) -> None:
        """One heartbeat round: these registrations are the fleet now."""
        self._by_id = infos
        self._view = sorted(infos.values(), key=lambda n: n.node_id)

    def known(self) -> dict[str, NodeInfo]:
        return self._by_id

    def update_self(self, **changes: Any) -> None:
        return None

    def on_change(self, callback: Callable[[list[NodeInfo]], None]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def deregister(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class SubsetRing(VoiceRing):
    """`VoiceRing(node_ids)` for node_ids within `universe`'s, walked from `universe`'s walk."""

    def __init__(self, universe: VoiceRing, node_ids: Iterable[str]) -> None:
        self.node_ids = tuple(sorted(set(node_ids)))
        self.vnodes = universe.vnodes
        members = frozenset(self.node_ids)

        def walk(key: str) -> tuple[str, ...]:
            return tuple(n for n in universe._walk(key) if n in members)

        self._walk = lru_cache(maxsize=8192)(walk)


class RingCache:
    """Rings for every membership the routers meet, all cut from one universe ring."""

    def __init__(self, universe: Iterable[str], vnodes: int = DEFAULT_VNODES) -> None:
        self.universe = VoiceRing(universe, vnodes)
        self._subsets: dict[frozenset[str], VoiceRing] = {}

    def ring(self, node_ids: Iterable[str]) -> VoiceRing:
        key = frozenset(node_ids)
        ring = self._subsets.get(key)
        if ring is None:
            if len(self._subsets) >= 64:
                self._subsets.pop(next(iter(self._subsets)))
            ring = self._subsets[key] = SubsetRing(self.universe, key)
        return ring


class ViewCache:
    """The routers' `_FleetView`s of the one membership list they all read: built once per
    heartbeat for the fleet, not once per router (each of 1,000 routes a call every few
    heartbeats, so its own cache would rebuild the view on almost every call)."""

    def __init__(self) -> None:
        self._nodes: list[NodeInfo] | None = None
        self._views: dict[str, _FleetView] = {}

    def view(
        self, nodes: list[NodeInfo], model: str, ring_for: Callable[[Iterable[str]], VoiceRing]
    ) -> _FleetView:
        if nodes is not self._nodes:  # `SimMembership.publish` makes a new list
            self._nodes, self._views = nodes, {}
        view = self._views.get(model)
        if view is None:
            view = self._views[model] = _FleetView.of(nodes, model, ring_for)
        return view


class SimRouter(SessionRouter):
    """The product's router; only its ring and view caches are shared (and the ring widened,
    `SubsetRing`)."""

    def __init__(self, *args: Any, rings: RingCache, views: ViewCache, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ring_cache = rings
        self._view_cache = views

    def _ring_for(self, node_ids: Iterable[str]) -> VoiceRing:
        return self._ring_cache.ring(node_ids)

    def _view(self, model: str) -> _FleetView:
        return self._view_cache.view(self._membership.nodes(), model, self._ring_for)


class RoutingSeam:
    """One `SessionRouter` per node (a client may connect to any node), sharing one Redis,
    driven on simulated time; every call runs to completion."""

    def __init__(self, clock: SimClock, model: str, universe: list[str]) -> None:
        self.clock = clock
        self.model = model
        self.loop = SimLoop(clock)
        self.redis = SimRedis(clock)
        self.membership = SimMembership()
        self.rings = RingCache(universe)
        views = ViewCache()
        self.routers = {
            node_id: SimRouter(
                node_id,
                self.membership,
                redis=self.redis,  # type: ignore[arg-type]
                rings=self.rings,
                views=views,
                clock=clock,
            )
            for node_id in universe
        }

    def ring(self, node_ids: Iterable[str]) -> VoiceRing:
        """The ring the routers place on for this membership."""
        return self.rings.ring(node_ids)

    def route(self, ingress: str, voice: str, session_id: str, avoid: Collection[str] = ()) -> str:
        """The owner `ingress`'s router picks for this session."""
        router = self.routers[ingress]
        info = self.loop.run_until_complete(router.route(self.model, voice, session_id, avoid))
        return info.node_id

    def release(self, owner: str, session_id: str) -> None:
        """The owner's router forgets the session when its call ends."""
        self.loop.run_until_complete(self.routers[owner].release(session_id))

    def healthy(self, ingress: str) -> bool:
        return self.routers[ingress].redis_healthy

    def tick(self) -> None:
        """Let due timers (the gates' recovery probes) run at the current simulated time."""
        self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        for router in self.routers.values():
            self.loop.run_until_complete(router.close())
        self.loop.close()
