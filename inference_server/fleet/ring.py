"""Consistent hash ring keyed by (model, voice) with popularity-sized home sets and bounded load.

A voice's home set is the first r distinct nodes clockwise from its point on a `uhashring`
continuum, so each LoRA stays resident on few nodes and a node leaving only moves the homes it
held. Within the home set a session goes to a node by rendezvous (HRW) hashing of its session
id; bounded load (cap = c x average) passes it on to the next candidate when that node is full.
Pure and deterministic: no I/O, no clocks.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache

import xxhash
from uhashring import HashRing

DEFAULT_VNODES = 160
DEFAULT_LOAD_FACTOR = 1.25
DEFAULT_SPREAD = 1.5


def point_hash(key: str) -> int:
    """64-bit point on the ring (xxh3: fast, well mixed, stable across processes)."""
    return xxhash.xxh3_64_intdigest(key.encode())


def voice_key(model: str, voice: str) -> str:
    return f"{model}\x1f{voice}"


def replicas_for(share: float, n_nodes: int, spread: float = DEFAULT_SPREAD, r_min: int = 1) -> int:
    """Home set size for a voice with `share` of the sessions: clamp(ceil(share*N*spread))."""
    if n_nodes <= 0:
        return 0
    wanted = math.ceil(max(share, 0.0) * n_nodes * spread)
    return max(min(r_min, n_nodes), min(wanted, n_nodes))


def bounded_cap(total_load: int, n_nodes: int, load_factor: float = DEFAULT_LOAD_FACTOR) -> int:
    """Most sessions a node may hold once one more session is placed.

    Never below ceil(average), so some node always has room (the least loaded one).
    """
    average = (total_load + 1) / n_nodes
    return max(math.ceil(average), math.floor(load_factor * average))


def rendezvous_order(session_id: str, node_ids: Iterable[str]) -> list[str]:
    """Nodes ordered by highest-random-weight for this session (stable under set changes)."""
    return sorted(node_ids, key=lambda node: point_hash(f"{session_id}\x1f{node}"), reverse=True)


class VoiceRing:
    """Immutable ring over a set of node ids; rebuild it when membership changes."""

    def __init__(self, node_ids: Iterable[str], vnodes: int = DEFAULT_VNODES) -> None:
        self.node_ids: tuple[str, ...] = tuple(sorted(set(node_ids)))
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self.vnodes = vnodes
        self._ring = HashRing(
            nodes={node: {"vnodes": vnodes} for node in self.node_ids}, hash_fn=point_hash
        )
        self._walk = lru_cache(maxsize=8192)(self._walk_uncached)

    def __len__(self) -> int:
        return len(self.node_ids)

    def walk(self, model: str, voice: str) -> tuple[str, ...]:
        """Every node once, clockwise from the voice's point."""
        return self._walk(voice_key(model, voice))

    def _walk_uncached(self, key: str) -> tuple[str, ...]:
        if not self.node_ids:
            return ()
        return tuple(self._ring.iterate_nodes(key))

    def home_set(self, model: str, voice: str, r: int, exclude: Collection[str] = ()) -> list[str]:
        """First r distinct nodes clockwise from the voice, skipping `exclude`d ones."""
        return [node for node in self.walk(model, voice) if node not in exclude][: max(r, 0)]

    def candidates(
        self, model: str, voice: str, session_id: str, r: int, exclude: Collection[str] = ()
    ) -> list[str]:
        """Preference order for a session: its home set by HRW, then the rest of the walk."""
        walk = [node for node in self.walk(model, voice) if node not in exclude]
        r = max(1, r)
        return rendezvous_order(session_id, walk[:r]) + walk[r:]

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
        """The first candidate under the bounded-load cap; None if no node is eligible."""
        order = self.candidates(model, voice, session_id, r, exclude)
        if not order:
            return None
        cap = bounded_cap(sum(loads.get(node, 0) for node in order), len(order), load_factor)
        for node in order:
            if loads.get(node, 0) < cap:
                return node
        return min(order, key=lambda node: loads.get(node, 0))  # loads beyond what we know of
