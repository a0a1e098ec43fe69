"""Ring placement figures: our (model, voice) ring with bounded load vs plain uhashring sessions.

16 nodes, 1,000 voices with Zipf(1.1) popularity, 10,000 live sessions placed one by one with
popularity observed online (as `SessionRouter` does). Writes bench/results/ring.json.
Run: python -m bench.bench_ring
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from uhashring import HashRing

from inference_server.fleet.ring import (
    DEFAULT_LOAD_FACTOR,
    DEFAULT_SPREAD,
    DEFAULT_VNODES,
    VoiceRing,
    point_hash,
    replicas_for,
)

MODEL = "orpheus"
RESULTS = Path(__file__).parent / "results" / "ring.json"


@dataclass(frozen=True)
class Workload:
    nodes: tuple[str, ...]
    voices: tuple[str, ...]
    sessions: tuple[tuple[str, str], ...]  # (session_id, voice) in arrival order


def zipf_workload(n_nodes: int, n_voices: int, n_sessions: int, s: float, seed: int) -> Workload:
    rng = random.Random(seed)
    voices = tuple(f"voice-{i:04d}" for i in range(n_voices))
    weights = [1.0 / (rank + 1) ** s for rank in range(n_voices)]
    picks = rng.choices(voices, weights=weights, k=n_sessions)
    sessions = tuple((f"session-{i:05d}", voice) for i, voice in enumerate(picks))
    return Workload(tuple(f"node-{i:02d}" for i in range(n_nodes)), voices, sessions)


def place_ours(
    work: Workload, ring: VoiceRing, spread: float, load_factor: float, min_total: int
) -> tuple[dict[str, str], dict[str, int]]:
    """Session -> node with online popularity; also the final replica count per voice."""
    loads: Counter[str] = Counter()
    live: Counter[str] = Counter()
    owner: dict[str, str] = {}
    for session_id, voice in work.sessions:
        live[voice] += 1
        share = live[voice] / max(sum(loads.values()) + 1, min_total)
        r = replicas_for(share, len(ring), spread)
        node = ring.place(MODEL, voice, session_id, r, loads, load_factor)
        owner[session_id] = node
        loads[node] += 1
    total = len(work.sessions)
    replicas = {v: replicas_for(live[v] / max(total, min_total), len(ring), spread) for v in live}
    return owner, replicas


def place_uhashring(work: Workload, nodes: Sequence[str], vnodes: int) -> dict[str, str]:
    ring = HashRing(nodes={n: {"vnodes": vnodes} for n in nodes}, hash_fn=point_hash)
    return {session_id: ring.get_node(session_id) for session_id, _ in work.sessions}


def spread_figures(work: Workload, owner: dict[str, str]) -> dict[str, float]:
    voice_of = dict(work.sessions)
    loads = Counter(owner.values())
    voices_on: dict[str, set[str]] = defaultdict(set)
    for session_id, node in owner.items():
        voices_on[node].add(voice_of[session_id])
    counts = [loads.get(n, 0) for n in work.nodes]
    mean = sum(counts) / len(counts)
    return {
        "max_over_mean_sessions": max(counts) / mean,
        "min_over_mean_sessions": min(counts) / mean,
        "mean_distinct_voices_per_node": sum(len(voices_on[n]) for n in work.nodes)
        / len(work.nodes),
    }


def departure_ours(
    work: Workload,
    ring: VoiceRing,
    owner: dict[str, str],
    replicas: dict[str, int],
    load_factor: float,
) -> dict[str, float]:
    """Each node leaving in turn: voice homes and (sticky) sessions that move."""
    n = len(work.nodes)
    home_fracs, session_fracs, only_held = [], [], True
    for leaver in work.nodes:
        smaller = VoiceRing([x for x in work.nodes if x != leaver], ring.vnodes)
        moved = total = 0
        for voice, r in replicas.items():
            before = set(ring.home_set(MODEL, voice, r))
            after = set(smaller.home_set(MODEL, voice, min(r, n - 1)))
            gone = before - after
            only_held &= gone <= {leaver}
            moved += len(gone)
            total += len(before)
        home_fracs.append(moved / total)
        # Live sessions are sticky: only the leaver's sessions are re-placed (failover).
        loads = Counter(node for node in owner.values() if node != leaver)
        voice_of = dict(work.sessions)
        moved_sessions = 0
        for session_id, node in owner.items():
            if node != leaver:
                continue
            voice = voice_of[session_id]
            r = min(replicas[voice], n - 1)
            loads[smaller.place(MODEL, voice, session_id, r, loads, load_factor)] += 1
            moved_sessions += 1
        session_fracs.append(moved_sessions / len(owner))
    return {
        "voice_homes_moved_fraction_mean": sum(home_fracs) / n,
        "voice_homes_moved_fraction_max": max(home_fracs),
        "only_leaver_homes_move": only_held,
        "sessions_moved_fraction_mean": sum(session_fracs) / n,
        "sessions_moved_fraction_max": max(session_fracs),
    }


def departure_uhashring(work: Workload, owner: dict[str, str], vnodes: int) -> dict[str, float]:
    n = len(work.nodes)
    fracs, only_held = [], True
    for leaver in work.nodes:
        after = place_uhashring(work, [x for x in work.nodes if x != leaver], vnodes)
        moved = [s for s in owner if owner[s] != after[s]]
        only_held &= all(owner[s] == leaver for s in moved)
        fracs.append(len(moved) / len(owner))
    return {
        "sessions_moved_fraction_mean": sum(fracs) / n,
        "sessions_moved_fraction_max": max(fracs),
        "only_leaver_sessions_move": only_held,
    }


def run(
    n_nodes: int = 16,
    n_voices: int = 1000,
    n_sessions: int = 10_000,
    zipf_s: float = 1.1,
    seed: int = 0,
    vnodes: int = DEFAULT_VNODES,
    spread: float = DEFAULT_SPREAD,
    load_factor: float = DEFAULT_LOAD_FACTOR,
    min_total: int = 100,
) -> dict:
    work = zipf_workload(n_nodes, n_voices, n_sessions, zipf_s, seed)
    ring = VoiceRing(work.nodes, vnodes)
    owner, replicas = place_ours(work, ring, spread, load_factor, min_total)
    plain = place_uhashring(work, work.nodes, vnodes)
    ours = spread_figures(work, owner) | departure_ours(work, ring, owner, replicas, load_factor)
    ours["mean_home_set_size"] = sum(replicas.values()) / len(replicas)
    ours["max_home_set_size"] = max(replicas.values())
    baseline = spread_figures(work, plain) | departure_uhashring(work, plain, vnodes)
    return {
        "params": {
            "nodes": n_nodes,
            "voices": n_voices,
            "sessions": n_sessions,
            "zipf_s": zipf_s,
            "seed": seed,
            "vnodes": vnodes,
            "spread": spread,
            "load_factor": load_factor,
            "popularity_min_total": min_total,
        },
        "voice_ring_bounded_load": ours,
        "uhashring_sessions": baseline,
        "distinct_voices_ratio_uhashring_over_ours": baseline["mean_distinct_voices_per_node"]
        / ours["mean_distinct_voices_per_node"],
        "one_over_n": 1 / n_nodes,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
