"""Who is in the fleet: static peers, or Redis registrations kept alive by TTL heartbeats.

Redis layout (prefix "orpheus" by default):
  {prefix}:node:{node_id}  NodeInfo JSON, SET with PX ttl: Redis's clock expires dead nodes.
  {prefix}:nodes           set of node ids that registered (pruned when their key is gone).
  {prefix}:changes         pub/sub channel; a message is only a hint to poll sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from .nodes import NodeInfo

logger = logging.getLogger(__name__)
_STOP_S = 2.0  # how long stopping waits for the heartbeat and hint tasks

ChangeCallback = Callable[[list[NodeInfo]], None]


class Membership(Protocol):
    """The view of the fleet a node routes by."""

    @property
    def self_id(self) -> str: ...

    def nodes(self) -> list[NodeInfo]: ...

    def update_self(self, **changes: Any) -> None: ...

    def on_change(self, callback: ChangeCallback) -> None: ...

    async def start(self) -> None: ...

    async def deregister(self) -> None: ...

    async def stop(self) -> None: ...


def parse_peers(peers: str | Sequence[str]) -> list[tuple[str, str]]:
    """`"a:1,id2=b:2"` -> [(node_id, address)]; the node id defaults to the address."""
    items = peers.split(",") if isinstance(peers, str) else list(peers)
    parsed = []
    for item in (p.strip() for p in items):
        if not item:
            continue
        node_id, _, address = item.rpartition("=")
        parsed.append((node_id or address, address))
    return parsed


def _routing_view(info: NodeInfo) -> NodeInfo:
    """The fields whose change is a membership change (load and resident voices are not)."""
    return info.replace(live_sessions=0, voices=())


class _Watchers:
    def __init__(self) -> None:
        self._callbacks: list[ChangeCallback] = []

    def add(self, callback: ChangeCallback) -> None:
        self._callbacks.append(callback)

    def notify(self, nodes: list[NodeInfo]) -> None:
        for callback in self._callbacks:
            try:
                callback(nodes)
            except Exception:
                logger.exception("membership change callback failed")


class StaticMembership:
    """Fixed peers from `--peers`; this node's own entry reflects its live state."""

    def __init__(self, peers: str | Sequence[str], self_info: NodeInfo | None = None) -> None:
        self._self = self_info
        self._peers = [NodeInfo(node_id=i, address=a) for i, a in parse_peers(peers)]
        if self_info is not None:
            self._peers = [
                p
                for p in self._peers
                if p.node_id != self_info.node_id and p.address != self_info.address
            ]
        ids = [p.node_id for p in self._peers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"--peers lists a node id more than once: {sorted(ids)}")
        self._watchers = _Watchers()

    @property
    def self_id(self) -> str:
        return self._self.node_id if self._self else ""

    def nodes(self) -> list[NodeInfo]:
        mine = [self._self] if self._self is not None else []
        return sorted(mine + self._peers, key=lambda n: n.node_id)

    def update_self(self, **changes: Any) -> None:
        if self._self is None:
            raise RuntimeError("StaticMembership has no self_info to update")
        before = _routing_view(self._self)
        self._self = self._self.replace(**changes)
        if _routing_view(self._self) != before:
            self._watchers.notify(self.nodes())

    def on_change(self, callback: ChangeCallback) -> None:
        self._watchers.add(callback)

    def unlearned(self) -> list[NodeInfo]:
        """Peers whose model is not known yet (fleet/peer_cards.py asks them)."""
        return [p for p in self._peers if not p.models]

    def learn(self, node_id: str, **record: Any) -> None:
        """What peer `node_id` says it serves (its model, language, base voices)."""
        before = [_routing_view(p) for p in self._peers]
        self._peers = [p.replace(**record) if p.node_id == node_id else p for p in self._peers]
        if [_routing_view(p) for p in self._peers] != before:
            self._watchers.notify(self.nodes())

    async def start(self) -> None:
        return None

    async def deregister(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisMembership:
    """Registers this node in Redis with a TTL heartbeat and watches the others by polling.

    When Redis is unreachable the last known membership is kept (and served); the next
    successful heartbeat re-registers this node. When Redis comes back without this node's
    registration (restarted empty, FLUSHALL), peers are kept for one TTL so they can
    re-register before routing forgets them.
    """

    def __init__(
        self,
        redis_url: str,
        self_info: NodeInfo,
        ttl_s: float = 3.0,
        heartbeat_s: float = 1.0,
        prefix: str = "orpheus",
    ) -> None:
        if not 0 < heartbeat_s < ttl_s:
            raise ValueError(f"need 0 < heartbeat_s < ttl_s, got {heartbeat_s} and {ttl_s}")
        self._redis = aioredis.from_url(
            redis_url,
            socket_timeout=heartbeat_s,
            socket_connect_timeout=heartbeat_s,
            retry=None,
        )
        self._self = self_info
        self._ttl_ms = int(ttl_s * 1000)
        self._heartbeat_s = heartbeat_s
        self._prefix = prefix
        self._known: dict[str, NodeInfo] = {}
        self._watchers = _Watchers()
        self._poke = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._registered = False
        self._ever_registered = False  # a registration Redis once held
        self._keep_known_until = 0.0  # monotonic; peers missing from Redis are kept till then
        self.connected = False

    @property
    def self_id(self) -> str:
        return self._self.node_id

    @property
    def redis(self) -> aioredis.Redis:
        """The client, shared with the router for stickiness and popularity."""
        return self._redis

    def nodes(self) -> list[NodeInfo]:
        known = dict(self._known)
        if self._registered:
            known[self._self.node_id] = self._self
        return sorted(known.values(), key=lambda n: n.node_id)

    def update_self(self, **changes: Any) -> None:
        before = _routing_view(self._self)
        self._self = self._self.replace(**changes)
        if _routing_view(self._self) != before:
            self._poke.set()  # publish a routing change (e.g. draining) now, not next beat
            self._watchers.notify(self.nodes())

    def on_change(self, callback: ChangeCallback) -> None:
        self._watchers.add(callback)

    async def start(self) -> None:
        """Register (best effort) and start heartbeating, polling and listening for hints."""
        self._registered = True
        await self._beat()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"membership-{self.self_id}"),
            asyncio.create_task(self._listen(), name=f"membership-hints-{self.self_id}"),
        ]

    async def deregister(self) -> None:
        """Leave the fleet now (drain): stop heartbeating and delete this node's entry."""
        self._registered = False  # before the cancel: the heartbeat must not re-register
        await self._cancel_tasks()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._key(self.self_id))
            await self._redis.srem(self._index, self.self_id)
            await self._redis.publish(self._channel, self.self_id)

    async def stop(self) -> None:
        await self._cancel_tasks()
        await self._redis.aclose()

    # -- internals --------------------------------------------------------------------------

    @property
    def _index(self) -> str:
        return f"{self._prefix}:nodes"

    @property
    def _channel(self) -> str:
        return f"{self._prefix}:changes"

    def _key(self, node_id: str) -> str:
        return f"{self._prefix}:node:{node_id}"

    async def _cancel_tasks(self) -> None:
        """Stop heartbeating and listening, within a bound: on 3.11 a cancel that lands in
        a library's own timeout can be swallowed (gh-86296), and a stopping node must not
        wait on it forever; the loops also end on `_registered` going False."""
        self._poke.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=_STOP_S)
            for task in stuck:
                logger.warning("%s did not stop within %.0fs", task.get_name(), _STOP_S)
        self._tasks = []

    async def _run(self) -> None:
        while self._registered:
            # not wait_for: on 3.11 it swallows a cancel that lands as the poke is set
            # (gh-86296), and deregister() would then wait for this task forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_s):
                    await self._poke.wait()
            self._poke.clear()
            if self._registered:
                await self._beat()

    async def _beat(self) -> None:
        """One heartbeat + poll; on failure keep the last known membership."""
        try:
            if not await self._register() and self._ever_registered:
                self._redis_lost_state()
            self._ever_registered = True
            fresh = await self._poll()
        except (RedisError, OSError) as exc:
            if self.connected:
                logger.warning("redis unreachable, keeping last known membership: %s", exc)
            self.connected = False
            # Idle pooled connections may be dead sockets of a Redis that restarted: drop
            # them, or each would fail one later heartbeat before the pool reconnects.
            with contextlib.suppress(RedisError, OSError):
                await self._redis.connection_pool.disconnect(inuse_connections=False)
            return
        if not self.connected:
            logger.info("redis reachable: %s registered with %d peers", self.self_id, len(fresh))
        self.connected = True
        self._apply(fresh)

    def _redis_lost_state(self) -> None:
        logger.warning(
            "redis lost this node's registration (restarted empty or flushed): %s "
            "re-registered; keeping %d known peers for %.1fs while they re-register",
            self.self_id, len(self._known), self._ttl_ms / 1000,
        )  # fmt: skip
        self._keep_known_until = time.monotonic() + self._ttl_ms / 1000

    async def _register(self) -> bool:
        """Write this node's registration; True if Redis still held the previous one."""
        key = self._key(self.self_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, self._self.to_json(), px=self._ttl_ms, get=True)
            pipe.sadd(self._index, self.self_id)
            previous, _ = await pipe.execute()
        if previous is None or _routing_view(NodeInfo.from_json(previous)) != _routing_view(
            self._self
        ):
            await self._redis.publish(self._channel, self.self_id)
        return previous is not None

    async def _poll(self) -> dict[str, NodeInfo]:
        ids = sorted(i.decode() for i in await self._redis.smembers(self._index))
        values = await self._redis.mget([self._key(i) for i in ids]) if ids else []
        fresh, expired = {}, []
        for node_id, value in zip(ids, values, strict=True):
            if value is None:
                expired.append(node_id)
                continue
            try:
                fresh[node_id] = NodeInfo.from_json(value)
            except ValueError as exc:
                logger.warning("ignoring bad registration of %s: %s", node_id, exc)
        if expired:
            await self._redis.srem(self._index, *expired)
        fresh.pop(self.self_id, None)
        return fresh

    def _apply(self, fresh: dict[str, NodeInfo]) -> None:
        def view(nodes: dict[str, NodeInfo]) -> dict[str, NodeInfo]:
            return {k: _routing_view(v) for k, v in nodes.items()}

        if time.monotonic() < self._keep_known_until:
            fresh = {**self._known, **fresh}
        changed = view(fresh) != view(self._known)
        self._known = fresh
        if changed:
            self._watchers.notify(self.nodes())

    async def _listen(self) -> None:
        """Pub/sub hints: poll as soon as another node announces a change."""
        while self._registered:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message and message.get("data") != self.self_id.encode():
                            self._poke.set()
            except (RedisError, OSError):
                await asyncio.sleep(self._heartbeat_s)
