"""Acceptance figures of the ring (deterministic properties, not timings), via bench/bench_ring."""

import json

import pytest

from bench import bench_ring


@pytest.fixture(scope="module")
def figures() -> dict:
    return bench_ring.run()


def test_bounded_load_keeps_max_over_mean_under_1_25(figures: dict) -> None:
    assert figures["voice_ring_bounded_load"]["max_over_mean_sessions"] <= 1.25


def test_voices_stay_on_few_nodes(figures: dict) -> None:
    ours = figures["voice_ring_bounded_load"]["mean_distinct_voices_per_node"]
    plain = figures["uhashring_sessions"]["mean_distinct_voices_per_node"]
    assert plain >= 3 * ours


def test_node_leaving_moves_only_what_it_held(figures: dict) -> None:
    ours = figures["voice_ring_bounded_load"]
    n = figures["params"]["nodes"]
    assert ours["only_leaver_homes_move"]
    assert ours["voice_homes_moved_fraction_mean"] <= 1.1 / n
    assert ours["sessions_moved_fraction_mean"] <= 1.1 / n
    assert figures["uhashring_sessions"]["only_leaver_sessions_move"]


def test_hot_voices_get_wider_home_sets(figures: dict) -> None:
    ours = figures["voice_ring_bounded_load"]
    assert ours["max_home_set_size"] > 1
    assert ours["mean_home_set_size"] < 1.5


def test_main_writes_results_json(tmp_path) -> None:
    out = tmp_path / "ring.json"
    bench_ring.main(["--out", str(out)])
    assert json.loads(out.read_text())["params"]["sessions"] == 10_000
