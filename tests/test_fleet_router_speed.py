"""The router's fast paths (its per-view cache, the ring's bisect walk and lazy placement)
choose exactly what the straightforward code does: uhashring's own walk, every node's load
summed and the whole candidate list built for each session."""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Collection, Mapping

import pytest
from uhashring import HashRing

from inference_server.fleet.membership import StaticMembership
from inference_server.fleet.nodes import NodeInfo
from inference_server.fleet.ring import (
    DEFAULT_LOAD_FACTOR,
    VoiceRing,
    bounded_cap,
    point_hash,
    rendezvous_order,
)
from inference_server.fleet.router import NoNodeAvailable, SessionRouter, _FleetView, _Lookup


class UhashringWalkRing(VoiceRing):
    """A `VoiceRing` that walks with uhashring's `iterate_nodes` and places by building the
    whole candidate list, as the ring did before its fast paths."""

    def __init__(self, node_ids: Collection[str]) -> None:
        super().__init__(node_ids)
        self._reference = HashRing(
            nodes={n: {"vnodes": self.vnodes} for n in self.node_ids}, hash_fn=point_hash
        )

    def _walk_uncached(self, key: str) -> tuple[str, ...]:
        return tuple(self._reference.iterate_nodes(key)) if self.node_ids else ()

    def place(
        self,
        model: str,
        voice: str,
        session_id: str,
        r: int,
        loads: Mapping[str, int],
        load_factor: float = DEFAULT_LOAD_FACTOR,
        exclude: Collection[str] = (),
    ) -> str | None:
        walk = [n for n in self.walk(model, voice) if n not in exclude]
        r = max(1, r)
        order = rendezvous_order(session_id, walk[:r]) + walk[r:]
        if not order:
            return None
        cap = bounded_cap(sum(loads.get(n, 0) for n in order), len(order), load_factor)
        for node in order:
            if loads.get(node, 0) < cap:
                return node
        return min(order, key=lambda node: loads.get(node, 0))


class StraightforwardRouter(SessionRouter):
    """Places as the router did before its per-view cache: every node visited per session."""

    def _place(
        self,
        model: str,
        voice: str,
        session_id: str,
        view: _FleetView,
        found: _Lookup,
        avoided: frozenset[str] = frozenset(),
    ) -> str:
        nodes = {n.node_id: n for n in self._membership.nodes() if n.serves(model)}
        ring = _reference_ring(frozenset(nodes))
        r = self._replica_count(voice, found, len(ring) - len(set(avoided) & set(nodes)))
        exclude = {i for i, n in nodes.items() if n.draining or n.full} | set(avoided)
        snapshot = tuple(sorted((i, n.live_sessions) for i, n in nodes.items()))
        if snapshot != self._load_snapshot:
            self._load_snapshot = snapshot
            self._routed.clear()
        loads = {i: n.live_sessions + self._routed[i] for i, n in nodes.items()}
        chosen = ring.place(model, voice, session_id, r, loads, self._load_factor, exclude)
        if chosen is None:
            raise NoNodeAvailable("every node is excluded")
        return chosen


@functools.lru_cache(maxsize=4)
def _reference_ring(node_ids: frozenset[str]) -> UhashringWalkRing:
    return UhashringWalkRing(node_ids)


class Fleet(StaticMembership):
    """Peers whose records (loads, draining) a test rewrites, as heartbeats would."""

    def publish(self, nodes: list[NodeInfo]) -> None:
        self._self, self._peers = None, list(nodes)


def _heartbeat(rng: random.Random, n: int, capacity: int) -> list[NodeInfo]:
    return [
        NodeInfo(
            f"node-{i:03d}",
            f"10.0.{i // 250}.{i % 250}:50051",
            models=("m",) if i % 17 else ("other",),
            capacity=capacity,
            live_sessions=rng.randint(0, capacity),
            draining=rng.random() < 0.03,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n_nodes", [7, 60])
async def test_fast_router_chooses_as_the_straightforward_one(n_nodes: int) -> None:
    rng = random.Random(n_nodes)
    fleet, reference_fleet = Fleet([]), Fleet([])
    clock = lambda: 0.0  # noqa: E731 - one popularity window for both routers
    fast = SessionRouter("node-000", fleet, popularity_min_total=5, clock=clock)
    slow = StraightforwardRouter("node-000", reference_fleet, popularity_min_total=5, clock=clock)
    choices = Counter()
    for call in range(1500):
        if call % 40 == 0:
            beat = _heartbeat(rng, n_nodes, capacity=8)
            fleet.publish(beat)
            reference_fleet.publish(beat)
        voice = f"voice-{min(int(rng.paretovariate(1.1)), 300)}"
        session = f"s{call}" if rng.random() < 0.9 else f"s{rng.randrange(max(call, 1))}"
        serving = [n.node_id for n in beat if n.serves("m")]
        avoid = set(rng.sample(serving, rng.choice([0, 0, 0, 1, 2])))
        outcomes = []
        for router in (fast, slow):
            try:
                outcomes.append((await router.route("m", voice, session, avoid)).node_id)
            except NoNodeAvailable:
                outcomes.append(None)
        assert outcomes[0] == outcomes[1], (call, voice, session, avoid)
        choices[outcomes[0]] += 1
    assert len(choices) > n_nodes // 2  # the sequence exercised placement, not one node


@pytest.mark.parametrize("n_nodes", [1, 3, 40, 1000])
def test_bisect_walk_is_uhashrings_walk(n_nodes: int) -> None:
    nodes = [f"node-{i:04d}" for i in range(n_nodes)]
    fast, reference = VoiceRing(nodes), UhashringWalkRing(nodes)
    for voice in range(40 if n_nodes == 1000 else 200):
        assert fast.walk("m", f"voice-{voice}") == reference.walk("m", f"voice-{voice}")


def test_lazy_placement_is_the_whole_list_placement() -> None:
    rng = random.Random(3)
    nodes = [f"node-{i:02d}" for i in range(30)]
    fast, reference = VoiceRing(nodes), UhashringWalkRing(nodes)
    for i in range(2000):
        loads = {n: rng.randint(0, 9) for n in nodes if rng.random() < 0.9}
        exclude = set(rng.sample(nodes, rng.choice([0, 1, 5, 29, 30])))
        args = ("m", f"voice-{i % 50}", f"s{i}", rng.randint(0, 6))
        assert fast.place(*args, loads, 1.25, exclude) == reference.place(
            *args, loads, 1.25, exclude
        )
        assert fast.candidates(*args, exclude) == reference.candidates(*args, exclude)


async def test_view_is_built_once_per_membership_view() -> None:
    rng = random.Random(0)
    fleet = Fleet([])
    fleet.publish(_heartbeat(rng, 20, capacity=8))
    router = SessionRouter("node-000", fleet)
    view = router._view("m")
    await router.route("m", "tara", "s-1")
    assert router._view("m") is view
    fleet.publish(_heartbeat(rng, 20, capacity=8))
    assert router._view("m") is not view
