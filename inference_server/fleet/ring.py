"""Consistent hash ring keyed by (model, voice) with popularity-sized home sets and bounded load.

A voice's home set is the first r distinct nodes clockwise from its point on a `uhashring`
continuum, so each LoRA stays resident on few nodes and a node leaving only moves the homes it
held. Within the home set a session goes to a node by rendezvous (HRW) hashing of its session
id; bounded load (cap = c x average) passes it on to the next candidate when that node is full.
Pure and deterministic: no I/O, no clocks.
"""

from __future__ import annotations

import math
from bisect import bisect
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from functools import lru_cache
from itertools import islice

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
        ring = HashRing(
            nodes={node: {"vnodes": vnodes} for node in self.node_ids}, hash_fn=point_hash
        )
        self._points: list[int] = ring.runtime._keys  # sorted; uhashring's continuum
        owners = [ring.runtime._ring[point] for point in self._points]
        self._owners = owners + owners  # twice round: a walk is one slice, wherever it starts
        self._walk = lru_cache(maxsize=8192)(self._walk_uncached)

    def __len__(self) -> int:
        return len(self.node_ids)

    def walk(self, model: str, voice: str) -> tuple[str, ...]:
        """Every node once, clockwise from the voice's point."""
        return self._walk(voice_key(model, voice))

    def _walk_uncached(self, key: str) -> tuple[str, ...]:
        """uhashring's `iterate_nodes(key)`: distinct owners of the points clockwise from the
        key's hash. Read in slices that hold every node a few times over, so a walk costs
        a few dict inserts per node, not one Python step per point of the continuum."""
        n_points = len(self._points)
        if not n_points:
            return ()
        start = bisect(self._points, point_hash(key)) % n_points
        seen: dict[str, None] = {}
        window = 8 * len(self.node_ids)
        for begin in range(start, start + n_points, window):
            seen.update(dict.fromkeys(self._owners[begin : min(begin + window, start + n_points)]))
            if len(seen) == len(self.node_ids):
                break
        return tuple(seen)

    def home_set(self, model: str, voice: str, r: int, exclude: Collection[str] = ()) -> list[str]:
        """First r distinct nodes clockwise from the voice, skipping `exclude`d ones."""
        return [node for node in self.walk(model, voice) if node not in exclude][: max(r, 0)]

    def candidates(
        self, model: str, voice: str, session_id: str, r: int, exclude: Collection[str] = ()
    ) -> list[str]:
        """Preference order for a session: its home set by HRW, then the rest of the walk."""
        return list(self.iter_candidates(model, voice, session_id, r, exclude))

    def iter_candidates(
        self, model: str, voice: str, session_id: str, r: int, exclude: Collection[str] = ()
    ) -> Iterator[str]:
        """`candidates`, lazily: a placement usually stops at the first or second node."""
        walk, r = self.walk(model, voice), max(1, r)
        home: list[str] = []
        rest = len(walk)
        for i, node in enumerate(walk):
            if node not in exclude:
                home.append(node)
                if len(home) == r:
                    rest = i + 1
                    break
        yield from rendezvous_order(session_id, home)
        yield from (node for node in islice(walk, rest, None) if node not in exclude)

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
        eligible = [node for node in self.walk(model, voice) if node not in exclude]
        if not eligible:
            return None
        cap = bounded_cap(sum(loads.get(node, 0) for node in eligible), len(eligible), load_factor)
        return self.place_under(
            model, voice, session_id, r, lambda node: loads.get(node, 0), cap, exclude
        )

    def place_under(
        self,
        model: str,
        voice: str,
        session_id: str,
        r: int,
        load_of: Callable[[str], int],
        cap: int,
        exclude: Collection[str] = (),
    ) -> str | None:
        """`place` with its cap already known (a router keeps the fleet's total load between
        heartbeats): the first candidate under `cap`, else the least loaded one."""
        for node in self.iter_candidates(model, voice, session_id, r, exclude):
            if load_of(node) < cap:
                return node
        order = self.candidates(model, voice, session_id, r, exclude)
        return min(order, key=load_of) if order else None  # loads beyond what we know of
