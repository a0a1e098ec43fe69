"""The fleet simulator runs the product's router and ring, and its figures add up."""

from __future__ import annotations

import dataclasses

import pytest

from bench.fleet_sim import simulate
from bench.fleet_sim_core import HEARTBEAT_S, REGISTRATION_TTL_S, FleetSim, SimConfig, node_name
from bench.fleet_sim_routing import SubsetRing
from inference_server.fleet.ring import VoiceRing

SMALL = SimConfig(nodes=10, minutes=3.0, warmup_s=30.0, seed=7)


def test_subset_ring_walks_like_a_ring_built_on_the_subset() -> None:
    universe = [node_name(i) for i in range(40)]
    full = VoiceRing(universe)
    for subset in (universe[:30], universe[5:], [n for n in universe if n != node_name(17)]):
        real, cut = VoiceRing(subset), SubsetRing(full, subset)
        assert len(cut) == len(real)
        for voice in range(50):
            assert cut.walk("m", f"voice-{voice}") == real.walk("m", f"voice-{voice}")
            assert cut.place("m", f"voice-{voice}", f"s{voice}", 2, {}) == real.place(
                "m", f"voice-{voice}", f"s{voice}", 2, {}
            )


def _owners(sim: FleetSim) -> dict[str, str]:
    """Each live session's owner as the product's router answers it now."""
    ingress = sim._alive_ids()[0]
    return {
        f"s{session}": sim.seam.route(ingress, f"voice-{voice:05d}", f"s{session}")
        for session, voice, _ in sim.live_sessions()
    }


def test_a_node_failure_moves_only_the_sessions_it_owned() -> None:
    sim = FleetSim(dataclasses.replace(SMALL, events=False, minutes=2.0))
    sim.run()
    before = _owners(sim)
    where = {f"s{s}": node for s, _, node in sim.live_sessions()}
    assert before == where  # the router's records agree with where streams run
    sim._fail(None)
    failed = next(i for i, n in sim.nodes.items() if not n.alive)
    for _ in range(int(REGISTRATION_TTL_S / HEARTBEAT_S) + 1):  # its registration expires
        sim.clock.now += HEARTBEAT_S
        sim._beat(None)
    after = _owners(sim)
    sim.close()
    orphans = {s for s, node in before.items() if node == failed}
    assert orphans, "the failed node served nothing: the test would prove nothing"
    moved = {s for s in before if s in after and after[s] != before[s]}
    assert moved == orphans & set(after)
    assert failed not in after.values()
    change = sim.out.changes[-1]
    assert change["kind"] == "fail" and change["sessions_moved"] == len(orphans)
    # on the ring too, only sessions of voices whose home set held the failed node move
    assert change["ring_changed_outside_its_home_sets"] == 0


@pytest.fixture(scope="module")
def summary() -> dict:
    return simulate(SMALL)


def test_metrics_add_up(summary: dict) -> None:
    counted = summary["sessions_counted"]
    assert counted > 100
    viable = round(summary["viability"] * counted)
    assert viable + summary["underrun"] + summary["rejected"] == counted
    assert 0.0 <= summary["viability"] <= 1.0
    assert 0 < summary["ttfa_p50_ms"] <= summary["ttfa_p99_ms"]
    assert 0.0 <= summary["lora_gpu_hit_rate"] + summary["lora_cpu_hit_rate"] <= 1.0
    disk = summary["lora_disk_loads"]
    assert disk == summary["lora_disk_first_loads"] + summary["lora_disk_reloads"]
    assert 0 <= summary["lora_disk_first_loads_off_home_set"] <= summary["lora_disk_first_loads"]
    # every call looks its owner up, claims it and releases it: about 3 round trips
    assert 2.0 <= summary["redis_route_ops_per_session"] <= 4.0
    assert summary["redis_ops"]["failed"] > 0  # the outage was met, and survived
    kinds = [c["kind"] for c in summary["membership_changes"]]
    assert kinds == ["join", "fail", "redis_down", "fail", "join", "redis_up"]
    for change in summary["membership_changes"]:
        if change["kind"] == "join":
            assert change["sessions_moved"] == 0  # live streams stay where they are
        if change["kind"] in ("join", "fail"):
            assert change["ring_changed_outside_its_home_sets"] == 0
    assert 0 < summary["streams_per_gpu_mean"] <= summary["streams_per_gpu_capacity"]


def test_same_seed_same_figures(summary: dict) -> None:
    again = simulate(SMALL)
    for key in ("runtime_s",):
        again.pop(key), summary.get(key)
    assert {k: v for k, v in summary.items() if k != "runtime_s"} == again
