"""Membership against a real redis-server: TTL heartbeats, change detection, Redis outages."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis import asyncio as aioredis
from support_redis import RedisServer

from inference_server.fleet.membership import RedisMembership, StaticMembership, parse_peers
from inference_server.fleet.nodes import NodeInfo

HEARTBEAT_S = 0.2
TTL_S = 0.6


@pytest.fixture
async def fleet(redis_server: RedisServer) -> AsyncIterator[Callable[[str], RedisMembership]]:
    started: list[RedisMembership] = []

    async def join(node_id: str, **fields) -> RedisMembership:
        info = NodeInfo(node_id, f"127.0.0.1:{50000 + len(started)}", **fields)
        member = RedisMembership(redis_server.url, info, ttl_s=TTL_S, heartbeat_s=HEARTBEAT_S)
        await member.start()
        started.append(member)
        return member

    yield join
    for member in started:
        await member.stop()


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until predicate() held; fails the test after timeout_s."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def ids(member: RedisMembership) -> list[str]:
    return [n.node_id for n in member.nodes()]


async def test_nodes_see_each_other_with_full_info(fleet) -> None:
    a = await fleet("a", models=("orpheus",), capacity=4, voices=("tara",))
    b = await fleet("b", role="router")
    await wait_for(lambda: ids(a) == ["a", "b"] and ids(b) == ["a", "b"], 2 * HEARTBEAT_S)
    seen_a = next(n for n in b.nodes() if n.node_id == "a")
    assert seen_a == a.nodes()[0]
    assert seen_a.models == ("orpheus",) and seen_a.voices == ("tara",)
    assert next(n for n in a.nodes() if n.node_id == "b").role == "router"


async def test_registration_expires_by_redis_ttl(fleet, redis_server: RedisServer) -> None:
    a = await fleet("a")
    b = await fleet("b")
    await wait_for(lambda: ids(a) == ["a", "b"], 2 * HEARTBEAT_S)
    client = aioredis.from_url(redis_server.url)
    ttl_ms = await client.pttl("orpheus:node:b")
    assert 0 < ttl_ms <= TTL_S * 1000
    await b.stop()  # b dies without deregistering: only Redis's TTL removes it
    gone_after = await wait_for(lambda: ids(a) == ["a"], TTL_S + 3 * HEARTBEAT_S)
    assert gone_after >= TTL_S - 2 * HEARTBEAT_S
    assert await client.exists("orpheus:node:b") == 0
    await client.aclose()


async def test_change_callback_and_pubsub_hint(fleet) -> None:
    a = await fleet("a")
    changes: list[list[str]] = []
    a.on_change(lambda nodes: changes.append([n.node_id for n in nodes]))
    b = await fleet("b")
    # The pub/sub hint makes a poll at once instead of at its next heartbeat.
    assert await wait_for(lambda: ["a", "b"] in changes, 2 * HEARTBEAT_S) < HEARTBEAT_S
    count = len(changes)
    b.update_self(live_sessions=3)  # load is not a membership change
    await asyncio.sleep(3 * HEARTBEAT_S)
    assert len(changes) == count
    assert next(n for n in a.nodes() if n.node_id == "b").live_sessions == 3
    b.update_self(draining=True)
    await wait_for(lambda: any(n.draining for n in a.nodes()), 2 * HEARTBEAT_S)
    assert len(changes) == count + 1
    await b.deregister()
    await wait_for(lambda: ids(a) == ["a"], HEARTBEAT_S)


async def test_redis_outage_keeps_last_known_then_reregisters(fleet, redis_server) -> None:
    a = await fleet("a")
    b = await fleet("b")
    await wait_for(lambda: ids(a) == ["a", "b"] and a.connected, 2 * HEARTBEAT_S)
    redis_server.stop()
    await wait_for(lambda: not a.connected and not b.connected, 3 * HEARTBEAT_S)
    await asyncio.sleep(TTL_S * 2)  # well past every TTL
    assert ids(a) == ["a", "b"] and ids(b) == ["a", "b"]
    redis_server.start()  # empty: the restarted Redis knows nobody
    client = aioredis.from_url(redis_server.url)
    registered = lambda: a.connected and b.connected  # noqa: E731
    took = await wait_for(registered, 2 * HEARTBEAT_S + 0.1)
    assert took <= 2 * HEARTBEAT_S + 0.1
    assert sorted(m.decode() for m in await client.smembers("orpheus:nodes")) == ["a", "b"]
    await client.aclose()


async def test_static_membership() -> None:
    assert parse_peers("h1:1, x=h2:2,,") == [("h1:1", "h1:1"), ("x", "h2:2")]
    me = NodeInfo("me", "h2:2", capacity=3)
    static = StaticMembership("h1:1,h2:2,h3:3", self_info=me)
    assert [n.node_id for n in static.nodes()] == ["h1:1", "h3:3", "me"]
    changes = []
    static.on_change(changes.append)
    static.update_self(live_sessions=2)
    assert not changes
    static.update_self(draining=True)
    assert len(changes) == 1 and next(n for n in static.nodes() if n.node_id == "me").draining
    with pytest.raises(ValueError, match="more than once"):
        StaticMembership("a=h:1,a=h:2")
    with pytest.raises(ValueError, match="host:port"):
        StaticMembership("nonsense")


def test_heartbeat_must_be_shorter_than_ttl() -> None:
    with pytest.raises(ValueError, match="heartbeat_s"):
        RedisMembership("redis://127.0.0.1:1", NodeInfo("a", "h:1"), ttl_s=1, heartbeat_s=2)


async def test_peers_survive_redis_losing_every_registration(fleet, redis_server) -> None:
    """FLUSHALL (or a restart without persistence): the node that beats first must not route
    as if its peers had left while they have not yet beaten again."""
    a = await fleet("a")
    slow = RedisMembership(
        redis_server.url, NodeInfo("slow", "127.0.0.1:50999"), ttl_s=30, heartbeat_s=10
    )
    await slow.start()
    views: list[list[str]] = []
    a.on_change(lambda nodes: views.append([n.node_id for n in nodes]))
    client = aioredis.from_url(redis_server.url)
    try:
        await wait_for(lambda: "slow" in ids(a), 2 * HEARTBEAT_S)
        await client.flushall()
        deadline = time.monotonic() + 2
        while not await client.exists("orpheus:node:a"):  # `a` beat again and re-registered
            assert time.monotonic() < deadline, "a never re-registered after FLUSHALL"
            await asyncio.sleep(0.02)
        await asyncio.sleep(HEARTBEAT_S)  # and polled the emptied Redis at least once more
        assert "slow" in ids(a) and all("slow" in view for view in views), views
    finally:
        await client.aclose()
        await slow.stop()
